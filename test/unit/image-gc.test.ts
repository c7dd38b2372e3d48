import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { collectGarbage, imageSize } from "../../src/image/gc.ts";
import { ImageStore } from "../../src/image/store.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { storeForEachTest } from "../fixtures/image-store.ts";
import { buildTar, sha256 } from "../fixtures/image-tar.ts";

let root: string;
let store: ImageStore;

storeForEachTest("pivot-gc-", (s) => ({ dir: root, store } = s));

const base = buildTar([
  { name: "bin/", type: "dir" },
  { name: "bin/hello", content: "hello\n", mode: 0o755 },
]);
const mid = buildTar([{ name: "etc/motd", content: "welcome\n" }]);
const other = buildTar([{ name: "etc/other", content: "other\n" }]);

function blobs(): string[] {
  return readdirSync(join(root, "blobs/sha256")).sort();
}
function layers(): string[] {
  return readdirSync(join(root, "layers/sha256")).sort();
}

describe("garbage collection", () => {
  test("keeps what tagged and untagged images use; removes the rest with its short links", async () => {
    const a = await buildTestImage(store, [base, mid], { refs: ["a:1"] });
    const b = await buildTestImage(store, [base, other], { refs: ["b:1"] });
    await store.ensureImageLayers(a);
    await store.ensureImageLayers(b);
    // An untagged image (moved tag) is still an image: kept.
    await buildTestImage(store, [base], { refs: ["a:1"], cmd: ["true"] });
    const before = { blobs: blobs(), layers: layers() };
    let r = await collectGarbage(store);
    expect(r.blobs).toEqual([]);
    expect(r.layers).toEqual([]);
    expect(blobs()).toEqual(before.blobs);

    await store.removeManifest(b.manifestDigest);
    r = await collectGarbage(store);
    // b's manifest, config and its own layer blob; the shared base layer stays.
    expect(r.blobs.sort()).toEqual([b.manifestDigest, b.id, b.layers[1]!.descriptor.digest].sort());
    expect(r.layers).toEqual([sha256(other)]);
    expect(r.freed).toBeGreaterThan(0);
    expect(layers()).toEqual([sha256(base).slice(7), sha256(mid).slice(7)].sort());
    expect(existsSync(join(root, "l", sha256(other).slice(7, 23)))).toBe(false);
    expect(existsSync(join(root, "l", sha256(base).slice(7, 23)))).toBe(true);
    // What remains still resolves and unpacks.
    const again = await store.resolve(a.id);
    expect((await store.ensureImageLayers(again)).length).toBe(2);
  });

  test("keepLayers (a container's layers) survive the removal of their image", async () => {
    const a = await buildTestImage(store, [base, mid], { refs: ["a:1"] });
    await store.ensureImageLayers(a);
    await store.removeManifest(a.manifestDigest);
    let r = await collectGarbage(store, { keepLayers: [sha256(base), sha256(mid)] });
    expect(r.layers).toEqual([]);
    expect(layers().length).toBe(2);
    // Blobs go: a container needs the unpacked trees only.
    expect(blobs()).toEqual([]);
    r = await collectGarbage(store);
    expect(r.layers.sort()).toEqual([sha256(base), sha256(mid)].sort());
    expect(layers()).toEqual([]);
    expect(readdirSync(join(root, "l"))).toEqual([]);
  });

  test("dry run removes nothing", async () => {
    const a = await buildTestImage(store, [base], { refs: ["a:1"] });
    await store.ensureImageLayers(a);
    await store.removeManifest(a.manifestDigest);
    const r = await collectGarbage(store, { dryRun: true });
    expect(r.layers).toEqual([sha256(base)]);
    expect(layers().length).toBe(1);
    expect(blobs().length).toBe(3);
  });

  test("content newer than another live writer's mark is kept (a load not tagged yet)", async () => {
    const a = await buildTestImage(store, [base], { refs: ["a:1"] });
    await store.ensureImageLayers(a);
    await store.removeManifest(a.manifestDigest);
    // PID 1 is alive: it stands for another pivot process in the middle of a load.
    await writeFile(join(root, "writers", "1"), `${Date.now() - 60_000}\n`);
    let r = await collectGarbage(store);
    expect(r.blobs).toEqual([]);
    expect(r.layers).toEqual([]);
    expect(r.deferred).toBe(4);
    // A dead writer's mark protects nothing (and the next process to write sweeps it; so does
    // the garbage collection of a process that has not written yet).
    await rm(join(root, "writers", "1"));
    await writeFile(join(root, "writers", `${2 ** 22 + 7}`), "0\n");
    r = await collectGarbage(store);
    expect(r.layers).toEqual([sha256(base)]);
    await collectGarbage(await ImageStore.open(root));
    expect(readdirSync(join(root, "writers"))).toEqual([`${process.pid}`]);
  });

  test("imageSize sums the uncompressed layer sizes", async () => {
    const a = await buildTestImage(store, [base, mid]);
    await store.ensureImageLayers(a);
    expect(await imageSize(store, a)).toBe(base.length + mid.length);
  });
});
