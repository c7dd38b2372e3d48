import { describe, expect, test } from "bun:test";
import {
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { importRootfs } from "../../src/image/create.ts";
import { digestOfBuffer, webCryptoDigest } from "../../src/image/digest.ts";
import {
  AmbiguousImageError,
  DigestMismatchError,
  ImageNotFoundError,
  LayerUnpackError,
} from "../../src/image/errors.ts";
import { ImageStore } from "../../src/image/store.ts";
import { ANNOTATION_REF_NAME, MediaType } from "../../src/image/types.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { storeForEachTest } from "../fixtures/image-store.ts";
import { buildTar, sha256 } from "../fixtures/image-tar.ts";

let root: string;
let store: ImageStore;

storeForEachTest("pivot-store-", (s) => ({ dir: root, store } = s));

const base = buildTar([
  { name: "bin/", type: "dir" },
  { name: "bin/hello", content: "hello\n", mode: 0o755 },
]);
const top = buildTar([{ name: "etc/motd", content: "welcome\n" }]);

describe("layout", () => {
  test("open creates an OCI image layout", () => {
    expect(JSON.parse(readFileSync(join(root, "oci-layout"), "utf8"))).toEqual({
      imageLayoutVersion: "1.0.0",
    });
    const index = JSON.parse(readFileSync(join(root, "index.json"), "utf8"));
    expect(index).toEqual({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] });
    for (const d of ["blobs/sha256", "layers/sha256", "l", "tmp", "locks"]) {
      expect(existsSync(join(root, d))).toBe(true);
    }
  });

  test("opening twice keeps the index", async () => {
    await buildTestImage(store, [base], { refs: ["busybox"] });
    const again = await ImageStore.open(root);
    expect((await again.listImages())[0]!.names).toEqual(["docker.io/library/busybox:latest"]);
  });
});

describe("blobs", () => {
  test("stored under blobs/sha256/<hex>, verified, idempotent", async () => {
    const data = Buffer.from("some content");
    const r = await store.putBlob(data, { digest: sha256(data), size: data.length });
    expect(r).toEqual({ digest: sha256(data), size: data.length });
    expect(readFileSync(join(root, "blobs/sha256", sha256(data).slice(7)), "utf8")).toBe(
      "some content",
    );
    expect(await store.putBlob(data, { digest: sha256(data) })).toEqual(r);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  });

  test("streams are hashed while written", async () => {
    async function* chunks() {
      for (let i = 0; i < 100; i++) yield Buffer.alloc(10_000, i);
    }
    const r = await store.putBlob(chunks());
    expect(r.size).toBe(1_000_000);
    const whole = Buffer.concat(Array.from({ length: 100 }, (_, i) => Buffer.alloc(10_000, i)));
    expect(r.digest).toBe(sha256(whole));
    expect(await store.hasBlob(r.digest)).toBe(true);
  });

  test("wrong digest: refused, nothing kept", async () => {
    const wrong = `sha256:${"0".repeat(64)}`;
    await expect(store.putBlob(Buffer.from("x"), { digest: wrong }, "layer 1")).rejects.toThrow(
      DigestMismatchError,
    );
    await expect(store.putBlob(Buffer.from("x"), { digest: wrong })).rejects.toThrow(
      /expected sha256:0{64}, got sha256:/,
    );
    expect(readdirSync(join(root, "blobs/sha256"))).toEqual([]);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  });

  test("wrong size: refused early, nothing kept", async () => {
    const data = Buffer.alloc(5000);
    await expect(store.putBlob(data, { digest: sha256(data), size: 10 })).rejects.toThrow(
      /more than 10 bytes/,
    );
    await expect(store.putBlob(data, { size: 6000 })).rejects.toThrow(/6000 bytes/);
    expect(readdirSync(join(root, "blobs/sha256"))).toEqual([]);
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  });

  test("a corrupted JSON blob is detected on read", async () => {
    const desc = await store.putJson({ a: 1 }, "application/json");
    await writeFile(store.blobPath(desc.digest), '{"a":2}');
    await expect(store.readJson(desc.digest, "config")).rejects.toThrow(/digest mismatch/);
  });
});

describe("images and tags", () => {
  test("a manifest or config changed on disk is refused when the image is read, naming the file", async () => {
    const img = await buildTestImage(store, [base], { refs: ["busybox"] });
    for (const digest of [img.manifestDigest, img.id]) {
      const path = join(root, "blobs/sha256", digest.slice("sha256:".length));
      const good = readFileSync(path);
      writeFileSync(path, Buffer.concat([good, Buffer.from(" ")]));
      try {
        // A fresh store: a name resolved before is remembered while index.json is unchanged.
        const fresh = await ImageStore.open(root);
        await expect(fresh.resolve("busybox")).rejects.toThrow(DigestMismatchError);
        await expect(fresh.resolve("busybox")).rejects.toThrow(path);
      } finally {
        writeFileSync(path, good);
      }
    }
    expect((await (await ImageStore.open(root)).resolve("busybox")).id).toBe(img.id);
  });

  test("resolve by name, full name, ID, ID prefix, manifest digest, name@digest", async () => {
    const img = await buildTestImage(store, [base, top], { refs: ["busybox", "alice/app:1"] });
    expect(img.names.sort()).toEqual(["docker.io/alice/app:1", "docker.io/library/busybox:latest"]);
    expect(img.layers.map((l) => l.diffId)).toEqual([sha256(base), sha256(top)]);
    for (const q of [
      "busybox",
      "busybox:latest",
      "docker.io/library/busybox",
      "alice/app:1",
      img.id,
      img.id.slice(7, 19),
      img.manifestDigest,
      `busybox@${img.manifestDigest}`,
    ]) {
      expect((await store.resolve(q)).id).toBe(img.id);
    }
    await expect(store.resolve("busybox:2")).rejects.toThrow(ImageNotFoundError);
    await expect(store.resolve("alice/app")).rejects.toThrow(/not found in the image store at/);
    // By name, only that image is read, and it comes back as listImages has it: every name.
    const other = await buildTestImage(store, [top], { refs: ["other"] });
    const byName = await store.resolve("alice/app:1");
    expect(byName).toEqual((await store.listImages()).find((i) => i.id === img.id)!);
    expect((await store.resolve("other")).id).toBe(other.id);
  });

  test("index.json uses org.opencontainers.image.ref.name, one entry per tag", async () => {
    const img = await buildTestImage(store, [base], { refs: ["busybox:1", "busybox:2"] });
    const index = JSON.parse(readFileSync(join(root, "index.json"), "utf8"));
    expect(
      index.manifests
        .map((d: { annotations: Record<string, string> }) => d.annotations[ANNOTATION_REF_NAME])
        .sort(),
    ).toEqual(["docker.io/library/busybox:1", "docker.io/library/busybox:2"]);
    for (const d of index.manifests) {
      expect(d.digest).toBe(img.manifestDigest);
      expect(d.mediaType).toBe(MediaType.ociManifest);
      expect(d.size).toBe(readFileSync(store.blobPath(img.manifestDigest)).length);
    }
  });

  test("moving a tag leaves the old image untagged; untag keeps the image", async () => {
    const a = await buildTestImage(store, [base], { refs: ["app"] });
    const b = await buildTestImage(store, [top], { refs: ["app"] });
    const images = await store.listImages();
    expect(images.length).toBe(2);
    expect(images.find((i) => i.id === a.id)!.names).toEqual([]);
    expect(images.find((i) => i.id === b.id)!.names).toEqual(["docker.io/library/app:latest"]);
    await store.tag(a.id, "app:old");
    expect((await store.resolve("app:old")).id).toBe(a.id);
    await store.untag("app:old");
    await expect(store.resolve("app:old")).rejects.toThrow(ImageNotFoundError);
    expect((await store.resolve(a.id)).names).toEqual([]);
    await expect(store.untag("nothing:here")).rejects.toThrow(ImageNotFoundError);
  });

  test("an ambiguous ID prefix is an error", async () => {
    const ids = [];
    for (let i = 0; i < 40; i++) {
      ids.push((await buildTestImage(store, [buildTar([{ name: `f${i}`, content: `${i}` }])])).id);
    }
    const prefixes = new Map<string, number>();
    for (const id of ids) prefixes.set(id[7]!, (prefixes.get(id[7]!) ?? 0) + 1);
    const shared = [...prefixes].find(([, n]) => n > 1)![0];
    await expect(store.resolve(shared)).rejects.toThrow(AmbiguousImageError);
  });
});

describe("layers", () => {
  test("unpacked once, keyed by diff_id, with a short link", async () => {
    const img = await buildTestImage(store, [base, top]);
    const layers = await Promise.all([store.ensureImageLayers(img), store.ensureImageLayers(img)]);
    expect(layers[0]!.map((l) => l.diffPath)).toEqual(layers[1]!.map((l) => l.diffPath));
    const [l0, l1] = layers[0]!;
    expect(l0!.diffPath).toBe(join(root, "layers/sha256", sha256(base).slice(7), "diff"));
    expect(readFileSync(join(l0!.diffPath, "bin/hello"), "utf8")).toBe("hello\n");
    expect(readFileSync(join(l1!.diffPath, "etc/motd"), "utf8")).toBe("welcome\n");
    expect(l0!.link).toBe(sha256(base).slice(7, 23));
    expect(readlinkSync(join(root, "l", l0!.link))).toBe(
      `../layers/sha256/${sha256(base).slice(7)}/diff`,
    );
    expect(realpathSync(join(root, "l", l0!.link))).toBe(l0!.diffPath);
    expect(readdirSync(join(root, "layers/sha256")).sort()).toEqual(
      [sha256(base).slice(7), sha256(top).slice(7)].sort(),
    );
    const meta = JSON.parse(
      readFileSync(join(root, "layers/sha256", sha256(base).slice(7), "layer.json"), "utf8"),
    );
    expect(meta.size).toBe(base.length);
  });

  test("layers are shared between images", async () => {
    const a = await buildTestImage(store, [base, top], { refs: ["a"] });
    const b = await buildTestImage(store, [base], { refs: ["b"] });
    await store.ensureImageLayers(a);
    await store.ensureImageLayers(b);
    expect(readdirSync(join(root, "layers/sha256")).length).toBe(2);
  });

  test("a layer whose diff_id does not match leaves nothing", async () => {
    const gz = zlib.gzipSync(base);
    const blob = await store.putBlob(gz);
    const bogus = sha256(top);
    let err: unknown;
    try {
      await store.ensureLayer(blob.digest, bogus, MediaType.ociLayerGzip, "image x layer 1");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LayerUnpackError);
    expect((err as Error).message).toContain("image x layer 1");
    expect((err as Error).message).toContain("diff_id mismatch");
    expect(readdirSync(join(root, "layers/sha256"))).toEqual([]);
    expect(await store.hasLayer(bogus)).toBe(false);
  });

  test("leftovers of dead processes are removed at a process's first write, live ones kept; opening and reading leave them", async () => {
    const dead = 2 ** 22 + 12345; // above the default pid_max, never a live process
    await writeFile(join(root, "tmp", `blob-${dead}-abc`), "partial");
    await mkdir(join(root, "layers/sha256", `.tmp-${"a".repeat(64)}-${dead}-xyz`, "diff"), {
      recursive: true,
    });
    await mkdir(join(root, "layers/sha256", `import${dead}xq1`));
    await writeFile(join(root, "tmp", `blob-${process.pid}-live`), "in flight");
    const store = await ImageStore.open(root);
    // A reader (pivot run, images, inspect) lists nothing: the cost would grow with the store.
    expect(readdirSync(join(root, "tmp")).length).toBe(2);
    expect(readdirSync(join(root, "layers/sha256")).length).toBe(2);
    await store.putBlob(Buffer.from("a write"));
    expect(readdirSync(join(root, "tmp"))).toEqual([`blob-${process.pid}-live`]);
    expect(readdirSync(join(root, "layers/sha256"))).toEqual([]);
  });
});

describe("short links", () => {
  test("l/ removed by hand is made again by the next run's layer lookup", async () => {
    const img = await buildTestImage(store, [base], { refs: ["busybox"] });
    const [first] = await store.ensureImageLayers(img);
    rmSync(join(root, "l"), { recursive: true, force: true });
    const fresh = await ImageStore.open(root);
    const [again] = await fresh.ensureImageLayers(await fresh.resolve("busybox"));
    expect(again!.link).toBe(first!.link);
    expect(realpathSync(join(root, "l", again!.link))).toBe(realpathSync(again!.diffPath));
  });
});

describe("importRootfs", () => {
  for (const gzip of [false, true]) {
    test(`imports a ${gzip ? "gzip" : "plain"} rootfs tarball as a one-layer image`, async () => {
      const tar = buildTar([
        { name: "./", type: "dir" },
        { name: "./etc/", type: "dir" },
        { name: "./etc/os-release", content: "ID=test\n" },
      ]);
      const file = join(root, "rootfs.tar");
      await writeFile(file, gzip ? zlib.gzipSync(tar) : tar);
      const img = await importRootfs(store, file, { refs: ["myroot:v1"], message: "imported" });
      expect(img.names).toEqual(["docker.io/library/myroot:v1"]);
      expect(img.layers.length).toBe(1);
      expect(img.layers[0]!.diffId).toBe(sha256(tar));
      expect(img.layers[0]!.descriptor.mediaType).toBe(
        gzip ? MediaType.ociLayerGzip : MediaType.ociLayer,
      );
      expect(img.config.history?.[0]?.comment).toBe("imported");
      const [layer] = await store.ensureImageLayers(img);
      expect(readFileSync(join(layer!.diffPath, "etc/os-release"), "utf8")).toBe("ID=test\n");
      expect(readdirSync(join(root, "layers/sha256"))).toEqual([sha256(tar).slice(7)]);
    });
  }

  test("an import is its names' tag events, then import, as Docker's", async () => {
    const file = join(root, "rootfs.tar");
    await writeFile(file, buildTar([{ name: "etc/os-release", content: "ID=test\n" }]));
    const events: string[] = [];
    store.onEvent = (action, id, attributes) => events.push(`${action} ${id} ${attributes.name}`);
    const img = await importRootfs(store, file, { refs: ["myroot:v1"] });
    expect(events).toEqual([
      `tag ${img.id} docker.io/library/myroot:v1`,
      `import ${img.id} ${img.id}`,
    ]);
  });

  test("a bad or digest reference is refused before the tarball is read; nothing is stored", async () => {
    const file = join(root, "rootfs.tar");
    await writeFile(file, buildTar([{ name: "etc/os-release", content: "ID=test\n" }]));
    for (const [ref, message] of [
      ["Bad Name", /invalid image reference "Bad Name"/],
      [`app@${sha256(base)}`, /named by a tag; a digest would claim/],
    ] as const) {
      await expect(importRootfs(store, file, { refs: [ref] })).rejects.toThrow(message);
    }
    expect(readdirSync(join(root, "blobs/sha256"))).toEqual([]);
    expect(readdirSync(join(root, "layers/sha256"))).toEqual([]);
    expect(await store.listImages()).toEqual([]);
  });

  test("a hostile rootfs tarball is refused and leaves no layer", async () => {
    const file = join(root, "evil.tar");
    await writeFile(file, buildTar([{ name: "../../escape", content: "x" }]));
    await expect(importRootfs(store, file, { refs: ["evil"] })).rejects.toThrow(
      /evil\.tar, entry "\.\.\/\.\.\/escape"/,
    );
    expect(readdirSync(join(root, "layers/sha256"))).toEqual([]);
    expect(await store.listImages()).toEqual([]);
  });
});

describe("whole-buffer digests without node:crypto", () => {
  // digestOfBuffer verifies manifests and configs on every `pivot run`: Bun's hasher under Bun,
  // Web Crypto under Node. Both must give what node:crypto gives, views into larger buffers too.
  const { createHash } = require("node:crypto") as typeof import("node:crypto");
  const big = Buffer.from(`${"x".repeat(100)}the manifest${"y".repeat(100)}`);
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["a buffer", Buffer.from('{"schemaVersion":2}')],
    ["a view at an offset", big.subarray(100, 112)],
  ];
  for (const [what, data] of cases) {
    for (const algorithm of ["sha256", "sha512"] as const) {
      test(`${what}, ${algorithm}`, async () => {
        const want = `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
        expect(await digestOfBuffer(data, algorithm)).toBe(want);
        expect(await webCryptoDigest(data, algorithm)).toBe(want);
      });
    }
  }
});
