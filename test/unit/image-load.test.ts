import { describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { InvalidImageError, LayerUnpackError } from "../../src/image/errors.ts";
import { loadImages } from "../../src/image/load.ts";
import { resolveSaveItems, saveImages } from "../../src/image/save.ts";
import { ImageStore, type StoredImage } from "../../src/image/store.ts";
import { MediaType } from "../../src/image/types.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { storeForEachTest } from "../fixtures/image-store.ts";
import { buildTar, type FixtureEntry, sha256 } from "../fixtures/image-tar.ts";

let work: string;
let store: ImageStore;

storeForEachTest("pivot-load-", (s) => ({ dir: work, store } = s), "store");

const layer1 = buildTar([
  { name: "bin/", type: "dir" },
  { name: "bin/sh", content: "shell", mode: 0o755 },
]);
const layer2 = buildTar([{ name: "etc/hostname", content: "box\n" }]);

function dockerArchive(options: { layers?: Buffer[]; tags?: string[] } = {}): Buffer {
  const layers = options.layers ?? [layer1, layer2, layer1];
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: layers.map(sha256) },
    }),
  );
  const configName = `${sha256(config).slice(7)}.json`;
  const entries: FixtureEntry[] = [];
  const seen = new Map<string, string>();
  const layerPaths: string[] = [];
  for (const [i, l] of layers.entries()) {
    const id = `${String(i).repeat(2)}${sha256(l).slice(9)}`;
    const path = `${id}/layer.tar`;
    entries.push({ name: `${id}/`, type: "dir" });
    const first = seen.get(sha256(l));
    // docker save writes a repeated layer as a symlink to the first copy.
    if (first) entries.push({ name: path, type: "symlink", linkname: `../${first}` });
    else {
      entries.push({ name: path, content: l });
      seen.set(sha256(l), path);
    }
    layerPaths.push(path);
  }
  entries.push({ name: configName, content: config });
  entries.push({
    name: "manifest.json",
    content: JSON.stringify([
      {
        Config: configName,
        RepoTags: options.tags ?? ["busybox:latest", "example.com/b:1"],
        Layers: layerPaths,
      },
    ]),
  });
  entries.push({ name: "repositories", content: "{}" });
  return buildTar(entries);
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** Tars the OCI layout part of a store (what an oci-archive is). */
function ociArchiveOf(root: string): Buffer {
  const files = [
    "oci-layout",
    "index.json",
    ...walk(join(root, "blobs")).map((p) => relative(root, p)),
  ];
  return buildTar(files.map((f) => ({ name: f, content: readFileSync(join(root, f)) })));
}

describe("docker-archive", () => {
  test("loads tags, config (same image ID as docker), layers incl. symlinked duplicates", async () => {
    const file = join(work, "image.tar");
    const data = dockerArchive();
    await writeFile(file, data);
    const progress: string[] = [];
    const result = await loadImages(store, file, { onProgress: (e) => progress.push(e.phase) });
    expect(result.format).toBe("docker-archive");
    expect(result.images.length).toBe(1);
    const img = result.images[0]!;
    expect(img.names.sort()).toEqual(["docker.io/library/busybox:latest", "example.com/b:1"]);
    expect((await store.resolve("busybox")).id).toBe(img.id);
    expect(img.layers.map((l) => l.diffId)).toEqual([
      sha256(layer1),
      sha256(layer2),
      sha256(layer1),
    ]);
    const layers = await store.ensureImageLayers(img);
    expect(readFileSync(join(layers[0]!.diffPath, "bin/sh"), "utf8")).toBe("shell");
    expect(readFileSync(join(layers[1]!.diffPath, "etc/hostname"), "utf8")).toBe("box\n");
    expect(readdirSync(join(store.root, "layers/sha256")).length).toBe(2);
    expect(progress).toContain("layer");
    expect(progress.at(-1)).toBe("image");
  });

  test("a load is one `load` event an image, as Docker's, not a `tag` a name", async () => {
    const file = join(work, "image.tar");
    await writeFile(file, dockerArchive());
    const events: string[] = [];
    store.onEvent = (action, id, attributes) => events.push(`${action} ${id} ${attributes.name}`);
    const img = (await loadImages(store, file)).images[0]!;
    expect(events).toEqual([`load ${img.id} ${img.id}`]);
  });

  test("a save is one `save` event an image once the archive is written, as Docker's", async () => {
    const file = join(work, "image.tar");
    await writeFile(file, dockerArchive());
    const img = (await loadImages(store, file)).images[0]!;
    const events: string[] = [];
    store.onEvent = (action, id) => events.push(`${action} ${id}`);
    const items = await resolveSaveItems(store, ["busybox"]);
    let bytes = 0;
    for await (const chunk of saveImages(store, items)) {
      bytes += chunk.length;
      expect(events).toEqual([]); // not before the end
    }
    expect(bytes).toBeGreaterThan(0);
    expect(events).toEqual([`save ${img.id}`]);
  });

  test("a hostile layer fails the load and tags nothing", async () => {
    const evil = buildTar([{ name: "../../../etc/evil", content: "x" }]);
    const file = join(work, "evil.tar");
    await writeFile(file, dockerArchive({ layers: [layer1, evil], tags: ["evil:1"] }));
    let err: unknown;
    try {
      await loadImages(store, file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LayerUnpackError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain('entry "../../../etc/evil"');
    expect(await store.listImages()).toEqual([]);
    expect(readdirSync(join(store.root, "layers/sha256"))).toEqual([sha256(layer1).slice(7)]);
  });

  test("a layer that does not match its diff_id fails the load", async () => {
    const file = join(work, "bad.tar");
    const tar = dockerArchive({ layers: [layer1] });
    // Swap the layer content for another layer of the same length.
    const other = buildTar([
      { name: "bin/", type: "dir" },
      { name: "bin/sh", content: "SHELL", mode: 0o755 },
    ]);
    const i = tar.indexOf(layer1);
    other.copy(tar, i);
    await writeFile(file, tar);
    await expect(loadImages(store, file)).rejects.toThrow(/diff_id mismatch/);
    expect(await store.listImages()).toEqual([]);
  });
});

describe("malformed archive metadata", () => {
  /** A docker-archive of one layer with this config and manifest.json. */
  function archive(config: unknown, manifest: unknown): Buffer {
    return buildTar([
      { name: "c.json", content: JSON.stringify(config) },
      { name: "l.tar", content: layer1 },
      { name: "manifest.json", content: JSON.stringify(manifest) },
    ]);
  }
  const config = { rootfs: { type: "layers", diff_ids: [sha256(layer1)] } };

  test("manifest.json entries of the wrong shape are refused, naming the entry, unpacking nothing", async () => {
    const cases: [unknown, unknown, RegExp][] = [
      [config, [{ Config: "c.json" }], /entry 1: has no Layers list/],
      [config, [{ Config: 5, Layers: ["l.tar"] }], /entry 1: has no Config file name/],
      [config, [null], /entry 1: is not an object/],
      [
        config,
        [{ Config: "c.json", Layers: ["l.tar"], RepoTags: "a:b" }],
        /entry 1: has a RepoTags/,
      ],
      [
        config,
        [{ Config: "c.json", Layers: ["l.tar"], RepoTags: ["A B"] }],
        /entry 1: RepoTags: invalid image reference "A B"/,
      ],
      [
        config,
        [{ Config: "c.json", Layers: ["l.tar"], RepoTags: [`busybox@${sha256(layer2)}`] }],
        /entry 1: RepoTags: .* has a digest, not a tag/,
      ],
      [
        { rootfs: { diff_ids: [5] } },
        [{ Config: "c.json", Layers: ["l.tar"] }],
        /config c.json: rootfs.diff_ids is not a list of digests/,
      ],
      [
        { rootfs: { diff_ids: ["sha256:../../x"] } },
        [{ Config: "c.json", Layers: ["l.tar"] }],
        /config c.json: rootfs.diff_ids is not a list of digests/,
      ],
    ];
    const file = join(work, "bad.tar");
    for (const [cfg, manifest, message] of cases) {
      await writeFile(file, archive(cfg, manifest));
      const err = await loadImages(store, file).catch((e: Error) => e);
      expect(err).toBeInstanceOf(InvalidImageError);
      expect((err as Error).message).toContain(`${file}: `);
      expect((err as Error).message).toMatch(message);
    }
    expect(await store.listImages()).toEqual([]);
    expect(readdirSync(join(store.root, "layers/sha256"))).toEqual([]);
  });

  test("index.json entries of an OCI archive with a bad digest or size are refused", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1], { refs: ["app:1"] });
    const good = {
      mediaType: MediaType.ociManifest,
      digest: src.manifestDigest,
      size: readFileSync(other.blobPath(src.manifestDigest)).length,
    };
    const cases: [unknown, RegExp][] = [
      [
        { ...good, digest: "sha256:../../../etc/passwd" },
        /invalid digest "sha256:..\/..\/..\/etc\/passwd"/,
      ],
      [{ ...good, digest: 7 }, /has no digest/],
      [
        { ...good, size: good.size + 1 },
        new RegExp(`says ${good.size + 1} bytes; the blob has ${good.size}`),
      ],
      [{ ...good, mediaType: undefined }, /has no mediaType/],
      [null, /has no digest/],
    ];
    const file = join(work, "oci.tar");
    for (const [entry, message] of cases) {
      await writeFile(
        join(other.root, "index.json"),
        JSON.stringify({ schemaVersion: 2, manifests: [entry] }),
      );
      await writeFile(file, ociArchiveOf(other.root));
      const err = await loadImages(store, file).catch((e: Error) => e);
      expect(err).toBeInstanceOf(InvalidImageError);
      expect((err as Error).message).toContain(`${file}: index.json`);
      expect((err as Error).message).toMatch(message);
    }
    await writeFile(join(other.root, "index.json"), "null");
    await writeFile(file, ociArchiveOf(other.root));
    await expect(loadImages(store, file)).rejects.toThrow(/not an OCI image index/);
    expect(await store.listImages()).toEqual([]);
  });
});

describe("OCI archive and layout", () => {
  test("an OCI archive written from another store loads with its names", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1, layer2], {
      refs: ["alice/app:2", "localhost:5000/x"],
    });
    const file = join(work, "oci.tar");
    await writeFile(file, ociArchiveOf(other.root));
    const result = await loadImages(store, file);
    expect(result.format).toBe("oci-archive");
    const img = await store.resolve("alice/app:2");
    expect(img.id).toBe(src.id);
    expect(img.manifestDigest).toBe(src.manifestDigest);
    expect((await store.resolve("localhost:5000/x")).id).toBe(src.id);
    expect(await store.hasLayer(sha256(layer2))).toBe(true);
  });

  test("a name@digest annotation whose digest is not the entry's leaves the image untagged", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1], { refs: ["app:1"] });
    const indexPath = join(other.root, "index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    const lie = `docker.io/library/app@${sha256(layer2)}`;
    index.manifests[0].annotations = { "io.containerd.image.name": lie };
    await writeFile(indexPath, JSON.stringify(index));
    const result = await loadImages(store, other.root);
    expect(result.images[0]!.id).toBe(src.id);
    expect(result.images[0]!.names).toEqual([]);
    expect((await store.listImages())[0]!.names).toEqual([]);
  });

  test("an OCI layout directory loads; a bare tag name leaves the image untagged", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1], { refs: ["app:1"] });
    const indexPath = join(other.root, "index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    index.manifests[0].annotations["org.opencontainers.image.ref.name"] = "latest";
    await writeFile(indexPath, JSON.stringify(index));
    const result = await loadImages(store, other.root);
    expect(result.format).toBe("oci-layout");
    expect(result.images[0]!.id).toBe(src.id);
    expect(result.images[0]!.names).toEqual([]);
  });

  test("a blob whose content does not match its name is refused", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1], { refs: ["app:1"] });
    const blob = other.blobPath(src.layers[0]!.descriptor.digest);
    const data = readFileSync(blob);
    data[data.length - 20] = data[data.length - 20]! ^ 0xff;
    await writeFile(blob, data);
    const file = join(work, "oci.tar");
    await writeFile(file, ociArchiveOf(other.root));
    let err: unknown;
    try {
      await loadImages(store, file);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/digest mismatch/);
    expect((err as Error).message).toContain(
      `entry "blobs/sha256/${src.layers[0]!.descriptor.digest.slice(7)}"`,
    );
    expect(await store.listImages()).toEqual([]);
  });

  test("a manifest over the manifest size limit in an OCI archive is refused unread", async () => {
    const other = await ImageStore.open(join(work, "other"));
    const src = await buildTestImage(other, [layer1]);
    const big = Buffer.from(
      JSON.stringify({ ...src.manifest, annotations: { padding: "x".repeat(5 << 20) } }),
    );
    await writeFile(join(other.root, "blobs/sha256", sha256(big).slice(7)), big);
    await writeFile(
      join(other.root, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(big), size: big.length }],
      }),
    );
    const file = join(work, "oci.tar");
    await writeFile(file, ociArchiveOf(other.root));
    const err = await loadImages(store, file).catch((e: Error) => e);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect((err as Error).message).toContain(`manifest ${sha256(big)}`);
    expect((err as Error).message).toContain("too large");
    expect(await store.listImages()).toEqual([]);
  });

  test("an archive that is neither format", async () => {
    const file = join(work, "plain.tar");
    await writeFile(file, buildTar([{ name: "hello", content: "x" }]));
    await expect(loadImages(store, file)).rejects.toThrow(
      /neither a docker-archive .* nor an OCI archive/,
    );
  });
});

describe("hostile OCI layout directories", () => {
  /** A layout with one image (one layer), for a test to tamper with. */
  async function layout(): Promise<{ root: string; image: StoredImage }> {
    const other = await ImageStore.open(join(work, "layout"));
    const image = await buildTestImage(other, [layer1], { refs: ["app:1"] });
    return { root: other.root, image };
  }

  async function loadError(source: string): Promise<Error> {
    try {
      await loadImages(store, source);
    } catch (e) {
      return e as Error;
    }
    throw new Error("the load succeeded");
  }

  async function storeIsEmpty(): Promise<void> {
    expect(await store.listImages()).toEqual([]);
    expect(readdirSync(join(store.root, "tmp"))).toEqual([]);
  }

  test("a blob that is a symlink out of the layout is refused, not read", async () => {
    const { root, image } = await layout();
    const digest = image.layers[0]!.descriptor.digest;
    const blob = join(root, "blobs/sha256", digest.slice(7));
    // Elsewhere on the host: the same bytes (so only where they are read from is wrong).
    const outside = join(work, "host-file");
    renameSync(blob, outside);
    symlinkSync(outside, blob);
    const err = await loadError(root);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect(err.message).toContain(`blobs/sha256/${digest.slice(7)}`);
    expect(err.message).toContain("outside the layout");
    expect(await store.hasBlob(digest)).toBe(false);
    await storeIsEmpty();
  });

  // A device node needs root (mknod); a link to one out of the layout is refused as above.
  const asRoot = process.getuid?.() === 0;

  test.skipIf(!asRoot)(
    "a blob that is not a regular file (a device) is refused before reading",
    async () => {
      const { root, image } = await layout();
      const digest = image.layers[0]!.descriptor.digest;
      const blob = join(root, "blobs/sha256", digest.slice(7));
      rmSync(blob);
      // Inside the layout, a /dev/zero (whose bytes never end).
      execFileSync("mknod", [join(root, "zero"), "c", "1", "5"]);
      symlinkSync("../../zero", blob);
      const err = await loadError(root);
      expect(err).toBeInstanceOf(InvalidImageError);
      expect(err.message).toContain("not a regular file");
      await storeIsEmpty();
    },
  );

  test("a descriptor without a valid size is refused (its blob's length is unbounded)", async () => {
    const { root } = await layout();
    const indexPath = join(root, "index.json");
    const index = JSON.parse(await readFile(indexPath, "utf8"));
    delete index.manifests[0].size;
    await writeFile(indexPath, JSON.stringify(index));
    const err = await loadError(root);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect(err.message).toContain(index.manifests[0].digest);
    expect(err.message).toContain("size");
    await storeIsEmpty();
  });

  test("an index.json that is too large is refused before it is read", async () => {
    const { root } = await layout();
    const indexPath = join(root, "index.json");
    const index = await readFile(indexPath, "utf8");
    await writeFile(indexPath, `${" ".repeat(17 << 20)}${index}`);
    const err = await loadError(root);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect(err.message).toContain("index.json");
    expect(err.message).toContain("too large");
    await storeIsEmpty();
  });

  test.skipIf(!asRoot)("an index.json that is a device is refused", async () => {
    const { root } = await layout();
    rmSync(join(root, "index.json"));
    execFileSync("mknod", [join(root, "index.json"), "c", "1", "5"]);
    const err = await loadError(root);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect(err.message).toContain("not a regular file");
    await storeIsEmpty();
  });

  test("an index naming the same manifest many times is walked once per blob", async () => {
    const { root, image } = await layout();
    const indexPath = join(root, "index.json");
    const top = JSON.parse(await readFile(indexPath, "utf8")).manifests[0];
    const manifest = { mediaType: top.mediaType, digest: top.digest, size: top.size };
    // Two levels of 40 entries: 1600 walks of the manifest without a visited set.
    const inner = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: Array(40).fill(manifest),
      }),
    );
    await writeFile(join(root, "blobs/sha256", sha256(inner).slice(7)), inner);
    const innerDesc = { mediaType: MediaType.ociIndex, digest: sha256(inner), size: inner.length };
    await writeFile(
      indexPath,
      JSON.stringify({ schemaVersion: 2, manifests: Array(40).fill(innerDesc) }),
    );
    const blobs: string[] = [];
    const result = await loadImages(store, root, {
      onProgress: (e) => e.phase === "blob" && blobs.push(e.detail),
    });
    expect(result.images[0]!.id).toBe(image.id);
    // inner index, manifest, config, layer
    expect(blobs.length).toBe(4);
  });

  test("a manifest blob over the manifest size limit is refused", async () => {
    const { root, image } = await layout();
    const big = Buffer.from(
      JSON.stringify({
        ...image.manifest,
        annotations: { padding: "x".repeat(5 << 20) },
      }),
    );
    await writeFile(join(root, "blobs/sha256", sha256(big).slice(7)), big);
    await writeFile(
      join(root, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(big), size: big.length }],
      }),
    );
    const err = await loadError(root);
    expect(err).toBeInstanceOf(InvalidImageError);
    expect(err.message).toContain(sha256(big));
    expect(err.message).toContain("too large");
    await storeIsEmpty();
    expect(await store.hasBlob(sha256(big))).toBe(false);
  });
});
