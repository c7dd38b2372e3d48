// The compiled binary's JIT policy (src/util/jit.ts, src/cli/jit.ts): scaled up for a command's
// start-up, normal again before long work in JavaScript. Observed through Bun.unsafe.setJITPolicy,
// replaced by a recorder for the test.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isShortCommand } from "../../src/cli/jit.ts";
import { unpackLayer } from "../../src/image/unpack.ts";
import { buildTar } from "../fixtures/image-tar.ts";

type Unsafe = { setJITPolicy: (scale: number) => void };
const unsafe = Bun.unsafe as unknown as Unsafe;
const original = unsafe.setJITPolicy;
let calls: number[];
let work: string;

beforeEach(() => {
  calls = [];
  unsafe.setJITPolicy = (scale: number) => {
    calls.push(scale);
  };
  work = mkdtempSync(join(tmpdir(), "pivot-jit-"));
});

afterEach(() => {
  unsafe.setJITPolicy = original;
  rmSync(work, { recursive: true, force: true });
});

test("unpacking a layer sets the normal policy, whichever command asked for it", async () => {
  const tar = join(work, "layer.tar");
  writeFileSync(tar, buildTar([{ name: "etc/x", content: "x\n" }]));
  await unpackLayer(tar, join(work, "layer"));
  expect(calls).toContain(1);
});

test("short commands keep the scaled policy; the ones moving data through JavaScript do not", () => {
  for (const c of ["create", "start", "stop", "rm", "ps", "inspect", "run", "exec"])
    expect(`${c}: ${isShortCommand(c)}`).toBe(`${c}: true`);
  for (const c of ["pull", "push", "load", "save", "import", "export", "commit", "cp", "logs"])
    expect(`${c}: ${isShortCommand(c)}`).toBe(`${c}: false`);
});
