// An attached run's create may leave its overlay for the container's launcher to mount
// (src/engine/create.ts, mountAtStart). What must hold around that: a cp or export racing the
// run never mounts a second overlay on the same upper directory (it waits for the container's
// lock), and an image of many layers is not read layer by layer with a process per directory.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../../src/engine/engine.ts";
import { Trace } from "../../src/runtime/trace.ts";
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
const OPAQUE = "localhost/opaque-etc:2";
const MOVING = "localhost/moving:latest";
const MOVING_NEXT = "localhost/moving:next";

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
  // Two layers: busybox with a user "lower"; above it an opaque /etc without a passwd, which
  // hides the lower one (overlay shows no /etc/passwd at all).
  const lower = busyboxLayer(bin, (rootfs) => {
    writeFileSync(
      join(rootfs, "etc/passwd"),
      "root:x:0:0:root:/root:/bin/sh\nlower:x:4242:4242::/:/bin/sh\n",
    );
  });
  const upper = buildTar([
    { name: "etc/", type: "dir", mode: 0o755 },
    { name: "etc/.wh..wh..opq" },
    { name: "etc/motd", content: "hello\n" },
  ]);
  await buildTestImage(await t.engine.images(), [lower, upper], {
    refs: [OPAQUE],
    config: { config: { Cmd: ["sh", "-c", "id -u; ls /etc"], Env: ["PATH=/bin"] } },
  });
  // Two images for a tag that moves from one to the other during a create.
  const store = await t.engine.images();
  await buildTestImage(store, [busyboxLayer(bin, (r) => writeFileSync(join(r, "marker"), "A\n"))], {
    refs: [MOVING],
    config: { config: { Cmd: ["cat", "/marker"], Env: ["PATH=/bin"] } },
  });
  await buildTestImage(
    store,
    [
      busyboxLayer(bin, (r) => {
        writeFileSync(join(r, "marker"), "B\n");
        writeFileSync(
          join(r, "etc/passwd"),
          "root:x:0:0:root:/root:/bin/sh\nbuser:x:2222:2222::/:/bin/sh\n",
        );
      }),
    ],
    {
      refs: [MOVING_NEXT],
      config: {
        config: { Cmd: ["sh", "-c", "id -u; cat /marker"], User: "buser", Env: ["PATH=/bin"] },
      },
    },
  );
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

test.skipIf(!isRoot)(
  "a many-layer image read unmounted honours an opaque directory as overlay does",
  async () => {
    // The unpacker recorded the opaque /etc (layer.json): the run defers its mount and reads
    // /etc/passwd from the layers, where the upper layer's opaque /etc hides the lower one's.
    const trace = new Trace();
    const traced = new Engine({ root: t.root, warn: () => {}, trace });
    const root = await runCollect(traced, { image: OPAQUE, autoRemove: true });
    expect({ code: root.code, stdout: root.stdout }).toEqual({
      code: 0,
      stdout: "0\nhostname\nhosts\nmotd\nresolv.conf\n",
    });
    expect(trace.render("run")).toContain(
      "root filesystem planned (mounted by the container's launcher)",
    );
    await expect(traced.run({ image: OPAQUE, user: "lower", autoRemove: true })).rejects.toThrow(
      /unable to find user lower/,
    );
    // The same through the mounted overlay (a volume makes create mount it): the same answer.
    await expect(
      t.engine.run({
        image: OPAQUE,
        user: "lower",
        mounts: [{ type: "volume", target: "/v" }],
        autoRemove: true,
      }),
    ).rejects.toThrow(/unable to find user lower/);
  },
  60_000,
);

test.skipIf(!isRoot)(
  "layers unpacked before their opaque directories were recorded: the overlay is mounted at create",
  async () => {
    // layer.json without opaqueDirs, as older versions wrote it: reading such layers unmounted
    // would take a getfattr per directory, so create mounts the overlay itself.
    const store = await t.engine.images();
    const image = await store.resolve(OPAQUE);
    const files = image.layers.map((l) =>
      join(t.root, "layers", "sha256", l.diffId.slice("sha256:".length), "layer.json"),
    );
    const saved = files.map((f) => readFileSync(f, "utf8"));
    try {
      // No record, then a record made under the other mode's attribute (rootless's
      // user.overlay.opaque, which an overlay mounted as root does not honour).
      for (const edit of [
        (meta: Record<string, unknown>) => delete meta.opaqueDirs,
        (meta: Record<string, unknown>) => {
          meta.opaqueXattr = "user.overlay.opaque";
        },
      ]) {
        for (const [i, f] of files.entries()) {
          const meta = JSON.parse(saved[i]!);
          edit(meta);
          writeFileSync(f, JSON.stringify(meta));
        }
        const trace = new Trace();
        const traced = new Engine({ root: t.root, warn: () => {}, trace });
        const r = await runCollect(traced, { image: OPAQUE, autoRemove: true });
        expect(r.code).toBe(0);
        const steps = trace.render("run");
        expect(steps).toContain("engine: name claimed, root filesystem mounted");
        expect(steps).not.toContain("mounted by the container's launcher");
      }
    } finally {
      for (const [i, f] of files.entries()) writeFileSync(f, saved[i]!);
    }
  },
  60_000,
);

test.skipIf(!isRoot)(
  "a tag moved while an attached run is created: its config and its files are of one image",
  async () => {
    // The image is looked up once for the whole create (found in review: a second lookup gave
    // one image's config over the other's files).
    const store = await t.engine.images();
    const original = store.ensureImageLayers.bind(store);
    let moved = false;
    store.ensureImageLayers = async (image) => {
      const out = await original(image);
      if (!moved) {
        moved = true;
        await store.tag(MOVING_NEXT, MOVING);
      }
      return out;
    };
    try {
      const r = await runCollect(t.engine, { image: MOVING, autoRemove: true }).catch(
        (e: Error) => ({ code: -1, stdout: "", stderr: e.message }),
      );
      expect(moved).toBe(true);
      expect({ stdout: r.stdout, stderr: r.stderr }).toEqual({ stdout: "A\n", stderr: "" });
    } finally {
      store.ensureImageLayers = original;
    }
  },
  60_000,
);
