/** Several processes unpacking the same layers, and a process killed mid-unpack. */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ImageStore } from "../../src/image/store.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar, type FixtureEntry } from "../fixtures/image-tar.ts";

const worker = join(import.meta.dir, "../fixtures/image-worker.ts");
let root: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "pivot-conc-"));
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await rm(root, { recursive: true, force: true });
});

function run(
  storeRoot: string,
  ref: string,
): { child: ChildProcess; done: Promise<{ code: number | null; out: string }> } {
  const child = spawn(process.execPath, [worker, storeRoot, ref], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  const done = new Promise<{ code: number | null; out: string }>((resolve) =>
    child.on("close", (code) => resolve({ code, out })),
  );
  return { child, done };
}

function bigLayer(files: number, size: number): Buffer {
  const entries: FixtureEntry[] = [];
  for (let i = 0; i < files; i++) {
    entries.push({ name: `data/f${i}`, content: Buffer.alloc(size, i % 251) });
  }
  return buildTar(entries);
}

test("two processes loading images that share layers unpack each layer once", async () => {
  const store = await ImageStore.open(join(root, "store"));
  const shared = bigLayer(300, 4096);
  await buildTestImage(store, [shared, buildTar([{ name: "a", content: "a" }])], { refs: ["a"] });
  await buildTestImage(store, [shared, buildTar([{ name: "b", content: "b" }])], { refs: ["b"] });
  const results = await Promise.all([
    run(store.root, "a").done,
    run(store.root, "b").done,
    run(store.root, "a").done,
  ]);
  for (const r of results) expect(r.code).toBe(0);
  const paths = results.map((r) => JSON.parse(r.out.trim()) as string[]);
  expect(paths[0]![0]).toBe(paths[1]![0]!);
  expect(readdirSync(join(store.root, "layers/sha256")).length).toBe(3);
  expect(
    readdirSync(join(store.root, "layers/sha256")).every((n) => /^[0-9a-f]{64}$/.test(n)),
  ).toBe(true);
  expect(readdirSync(join(store.root, "locks"))).toEqual([]);
  expect(readdirSync(join(store.root, "tmp"))).toEqual([]);
  expect(readFileSync(join(paths[0]![0]!, "data/f7")).length).toBe(4096);
});

test("a process killed mid-unpack leaves a store the next command repairs", async () => {
  const store = await ImageStore.open(join(root, "store"));
  const layer = bigLayer(3000, 16_384);
  const img = await buildTestImage(store, [layer], { refs: ["big"] });
  const { child, done } = run(store.root, "big");
  const layersDir = join(store.root, "layers/sha256");
  const deadline = Date.now() + 20_000;
  while (!readdirSync(layersDir).some((n) => n.startsWith(".tmp-")) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  await done;
  expect(readdirSync(layersDir).some((n) => n.startsWith(".tmp-"))).toBe(true);
  expect(await store.hasLayer(img.layers[0]!.diffId)).toBe(false);

  // Opening leaves it (readers do not list the store); the next write, the unpack, sweeps it.
  const again = await ImageStore.open(store.root);
  expect(readdirSync(layersDir).some((n) => n.startsWith(".tmp-"))).toBe(true);
  const [l] = await again.ensureImageLayers(await again.resolve("big"));
  expect(readdirSync(layersDir).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
  expect(existsSync(join(l!.diffPath, "data/f2999"))).toBe(true);
  expect(readdirSync(join(store.root, "locks"))).toEqual([]);
}, 60_000);
