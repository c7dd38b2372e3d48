// An attached run's create may leave its overlay for the container's launcher to mount
// (src/engine/create.ts, mountAtStart). What must hold around that: a cp or export racing the
// run never mounts a second overlay on the same upper directory (it waits for the container's
// lock), and an image of many layers is not read layer by layer with a process per directory.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  busyboxLayer,
  IMAGE,
  makeTestEngine,
  runCollect,
  type TestEngine,
} from "../fixtures/engine.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";
import { isRoot } from "../helpers.ts";

let t: TestEngine;
let bin: string;
const MANY = "localhost/many-layers:12";

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  bin = mkdtempSync(join(tmpdir(), "pivot-deferred-"));
  const layers = [busyboxLayer(bin, () => {})];
  for (let i = 1; i < 12; i++)
    layers.push(
      buildTar([
        { name: "etc/", type: "dir", mode: 0o755 },
        { name: `etc/f${i}`, content: `${i}\n` },
        { name: "app/", type: "dir", mode: 0o755 },
        { name: `app/f${i}`, content: `${i}\n` },
      ]),
    );
  await buildTestImage(await t.engine.images(), layers, {
    refs: [MANY],
    config: { config: { Cmd: ["true"], WorkingDir: "/app", Env: ["PATH=/bin"] } },
  });
}, 60_000);

afterAll(async () => {
  await t?.cleanup();
  if (bin) rmSync(bin, { recursive: true, force: true });
});

/** A process that exports the first container to appear in ROOT, as soon as its record is there. */
function racer(root: string): string {
  return `
import { existsSync, mkdirSync, readFileSync, watch } from "node:fs";
import { Engine } from ${JSON.stringify(join(import.meta.dir, "../../src/engine/engine.ts"))};
const root = ${JSON.stringify(root)};
const e = new Engine({ root, warn: () => {} });
await e.images();
const count = (id) => readFileSync("/proc/self/mountinfo", "utf8").split("\\n")
  .filter((l) => l.split(" ")[4] === root + "/containers/" + id + "/merged").length;
let max = 0;
mkdirSync(root + "/containers", { recursive: true });
watch(root + "/containers", async (_event, name) => {
  if (!name || !/^[0-9a-f]{64}$/.test(name)) return;
  const t0 = performance.now();
  while (!existsSync(root + "/containers/" + name + "/container.json") && performance.now() - t0 < 2000) {}
  try {
    const s = await e.export(name);
    for await (const _ of s) max = Math.max(max, count(name));
    max = Math.max(max, count(name));
  } catch (err) {
    console.log("EXPORT FAILED " + err.message);
  }
  console.log("MAX " + max);
  process.exit(0);
});
console.log("READY");
`;
}

test.skipIf(!isRoot)(
  "an export racing an attached run's start waits for it: one overlay on the upper directory",
  async () => {
    const script = join(bin, "racer.ts");
    writeFileSync(script, racer(t.root));
    const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const ready = new Promise<void>((res) =>
      child.stdout!.on("data", (d: Buffer) => {
        out += d;
        if (out.includes("READY")) res();
      }),
    );
    const done = new Promise<void>((res) => child.on("exit", () => res()));
    try {
      await ready;
      const r = await runCollect(t.engine, { image: IMAGE, cmd: ["sleep", "1"], autoRemove: true });
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      await done;
    } finally {
      child.kill("SIGKILL");
    }
    expect(out).not.toContain("EXPORT FAILED");
    expect(Number(/MAX (\d+)/.exec(out)?.[1] ?? "-1")).toBe(1);
  },
  60_000,
);

test.skipIf(!isRoot)(
  "an attached run of a 12-layer image starts no process per layer to read it",
  async () => {
    // getfattr, counted: reading the layers unmounted costs one per directory of a layer with
    // another below (the opaque marker).
    writeFileSync(
      join(bin, "getfattr"),
      `#!/bin/sh\necho x >> ${bin}/count\nexec /usr/bin/getfattr "$@"\n`,
    );
    chmodSync(join(bin, "getfattr"), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const r = await runCollect(t.engine, { image: MANY, autoRemove: true });
      expect(r.code).toBe(0);
    } finally {
      process.env.PATH = path;
    }
    const count = existsSync(join(bin, "count"))
      ? readFileSync(join(bin, "count"), "utf8").split("\n").filter(Boolean).length
      : 0;
    expect(count).toBe(0);
  },
  60_000,
);

test.skipIf(!isRoot)(
  "the container's launcher failing to mount the overlay: the engine's error and hint, nothing left",
  async () => {
    // The store's init layer made a file: overlay refuses the lowerdir, in the launcher.
    const init = join(t.root, "init");
    rmSync(init, { recursive: true, force: true });
    writeFileSync(init, "not a directory");
    try {
      const before = (await t.engine.list({ all: true })).length;
      const err = await t.engine.run({ image: IMAGE, cmd: ["true"], autoRemove: true }).then(
        () => null,
        (e: unknown) => e as Error & { hint?: string },
      );
      expect(err?.message).toContain(`overlay ${t.root}/containers/`);
      expect(err?.message).toContain("mount failed");
      expect(err?.hint).toBeDefined();
      expect((await t.engine.list({ all: true })).length).toBe(before);
      expect(readFileSync("/proc/self/mountinfo", "utf8").includes(`${t.root}/containers/`)).toBe(
        false,
      );
    } finally {
      rmSync(init, { force: true });
    }
  },
  60_000,
);
