// Reading the merged view of layers without mounting them: what mkdir -p would create
// (wouldCreateInLayers), as the engine decides whether an attached run's create must mount.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileInLayers, wouldCreateInLayers } from "../../src/image/layer-lookup.ts";
import { isRoot } from "../helpers.ts";

let work: string;
let top: string;
let bottom: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), "pivot-layers-"));
  top = join(work, "top");
  bottom = join(work, "bottom");
  mkdirSync(join(bottom, "srv/app"), { recursive: true });
  mkdirSync(join(bottom, "etc"), { recursive: true });
  writeFileSync(join(bottom, "etc/passwd"), "root:x:0:0::/:/bin/sh\n");
  writeFileSync(join(bottom, "file"), "x");
  mkdirSync(join(top, "etc"), { recursive: true });
  symlinkSync("/srv", join(top, "link"));
});

afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

test("a path that exists as directories in any layer: nothing to create", () => {
  expect(wouldCreateInLayers([top, bottom], "/srv/app")).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/etc")).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/")).toBe(false);
});

test("a missing component: created", () => {
  expect(wouldCreateInLayers([top, bottom], "/srv/app/new")).toBe(true);
  expect(wouldCreateInLayers([top, bottom], "/nowhere")).toBe(true);
});

test("a symlink, a file or a '..' on the way stops mkdir -p: nothing created", () => {
  expect(wouldCreateInLayers([top, bottom], "/link/new")).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/file/new")).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/srv/../new")).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/gone/../new")).toBe(true);
});

test.skipIf(!isRoot)("a whiteout in an upper layer removes what is below", () => {
  expect(spawnSync("mknod", [join(top, "srv"), "c", "0", "0"]).status).toBe(0);
  expect(wouldCreateInLayers([top, bottom], "/srv/app")).toBe(true);
  expect(readFileInLayers([top, bottom], "etc/passwd", [false, false])).toBe(
    "root:x:0:0::/:/bin/sh\n",
  );
});

test("recorded opaque directories are matched by their names on disk (a lone surrogate is U+FFFD)", () => {
  // A name with a lone surrogate is written as U+FFFD; the unpacker records it so.
  mkdirSync(join(bottom, "\ufffd/x"), { recursive: true });
  mkdirSync(join(top, "\ud800"), { recursive: true });
  expect(wouldCreateInLayers([top, bottom], "/\ud800/x", [false, false])).toBe(false);
  expect(wouldCreateInLayers([top, bottom], "/\ud800/x", [new Set(["\ufffd"]), false])).toBe(true);
});
