/**
 * `pivot save`: images as a docker-archive (what `docker save` wrote before
 * Docker 25: manifest.json, repositories, <config hex>.json and uncompressed
 * <diff_id hex>.tar layers, which every loader reads) or an OCI archive (a
 * tarred OCI image layout with blobs as stored and index.json entries named by
 * org.opencontainers.image.ref.name). Both load into docker, podman, skopeo
 * and Pivot. The archive is produced as a stream; layers written uncompressed
 * are checked against their diff_id on the way, so a corrupt store fails the
 * save instead of producing a bad archive.
 */
import { createReadStream } from "node:fs";
import type { Transform } from "node:stream";
import { pipeline } from "node:stream";
import * as zlib from "node:zlib";
import { open, stat } from "../util/fs-async.ts";
import { Digester, parseDigest } from "./digest.ts";
import { DigestMismatchError, ImageError } from "./errors.ts";
import { layerSize } from "./gc.ts";
import { formatReference, parseReference } from "./reference.ts";
import type { ImageStore, StoredImage } from "./store.ts";
import { ANNOTATION_REF_NAME, type Descriptor, MediaType } from "./types.ts";
import { detectCompression } from "./unpack.ts";

export type SaveFormat = "docker-archive" | "oci-archive";

export interface SaveOptions {
  format?: SaveFormat;
  /** Called for each member written ("layer", "blob", "config", ...). */
  onProgress?: (event: { phase: string; detail: string }) => void;
}

/** One image to save and the names to record for it (full references; may be empty). */
export interface SaveItem {
  image: StoredImage;
  names: string[];
}

/**
 * Resolves references (names, IDs) to images; a name saves under that name
 * only, an ID under all of the image's names (as docker save does).
 */
export async function resolveSaveItems(store: ImageStore, refs: string[]): Promise<SaveItem[]> {
  const items: SaveItem[] = [];
  for (const ref of refs) {
    const image = await store.resolve(ref);
    let names = image.names;
    try {
      const full = formatReference(parseReference(ref));
      if (image.names.includes(full)) names = [full];
    } catch {}
    const same = items.find((i) => i.image.manifestDigest === image.manifestDigest);
    if (same) same.names = [...new Set([...same.names, ...names])];
    else items.push({ image, names: [...names] });
  }
  return items;
}

/** The archive as a stream of bytes. */
export async function* saveImages(
  store: ImageStore,
  items: SaveItem[],
  options: SaveOptions = {},
): AsyncGenerator<Uint8Array> {
  const format = options.format ?? "docker-archive";
  if (format === "oci-archive") yield* ociArchive(store, items, options);
  else if (format === "docker-archive") yield* dockerArchive(store, items, options);
  else
    throw new ImageError(`unknown archive format "${format}"`, {
      hint: "use docker-archive or oci-archive",
    });
  // Docker's save event, one an image, once the archive is written whole.
  for (const { image } of items) store.onEvent?.("save", image.id, { name: image.id });
}

// ---- tar writing ----

const BLOCK = 512;
const MTIME = Math.floor(Date.UTC(2000, 0, 1) / 1000);

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

/** A ustar header for a regular file (or directory) of `size` bytes. */
export function tarHeader(name: string, size: number, type: "file" | "dir" = "file"): Buffer {
  const h = Buffer.alloc(BLOCK);
  let prefix = "";
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf("/", 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100)
      throw new ImageError(`archive member name too long: ${name}`);
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  h.write(base, 0, 100, "utf8");
  h.write(octal(type === "dir" ? 0o755 : 0o644, 8), 100, "ascii");
  h.write(octal(0, 8), 108, "ascii");
  h.write(octal(0, 8), 116, "ascii");
  if (size < 8 ** 11) h.write(octal(size, 12), 124, "ascii");
  else {
    // Base-256 for files of 8 GiB and more (GNU and PAX readers accept it).
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  h.write(octal(MTIME, 12), 136, "ascii");
  h.fill(0x20, 148, 156);
  h.write(type === "dir" ? "5" : "0", 156, "ascii");
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  h.write("root", 265, "ascii");
  h.write("root", 297, "ascii");
  if (prefix) h.write(prefix, 345, 155, "utf8");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return h;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

async function* member(
  name: string,
  size: number,
  body: AsyncIterable<Uint8Array> | Uint8Array,
): AsyncGenerator<Uint8Array> {
  yield tarHeader(name, size);
  let written = 0;
  if (body instanceof Uint8Array) {
    written = body.length;
    yield body;
  } else {
    for await (const chunk of body) {
      written += chunk.length;
      if (written > size)
        throw new ImageError(`archive member ${name} is longer than ${size} bytes`);
      yield chunk;
    }
  }
  if (written !== size)
    throw new ImageError(`archive member ${name}: ${written} bytes instead of ${size}`);
  yield padding(size);
}

function end(): Buffer {
  return Buffer.alloc(BLOCK * 2);
}

// ---- OCI archive ----

async function* ociArchive(
  store: ImageStore,
  items: SaveItem[],
  options: SaveOptions,
): AsyncGenerator<Uint8Array> {
  const written = new Set<string>();
  yield tarHeader("blobs/", 0, "dir");
  yield tarHeader("blobs/sha256/", 0, "dir");
  const blob = async function* (d: Descriptor, what: string): AsyncGenerator<Uint8Array> {
    if (written.has(d.digest)) return;
    written.add(d.digest);
    const { algorithm, hex } = parseDigest(d.digest);
    const size = (await stat(store.blobPath(d.digest))).size;
    options.onProgress?.({ phase: what, detail: d.digest });
    yield* member(`blobs/${algorithm}/${hex}`, size, createReadStream(store.blobPath(d.digest)));
  };
  const manifests: Descriptor[] = [];
  for (const { image, names } of items) {
    for (const l of image.layers) yield* blob(l.descriptor, "layer");
    yield* blob(image.manifest.config, "config");
    const size = (await stat(store.blobPath(image.manifestDigest))).size;
    const desc: Descriptor = {
      mediaType: image.manifest.mediaType ?? MediaType.ociManifest,
      digest: image.manifestDigest,
      size,
    };
    yield* blob(desc, "manifest");
    if (names.length === 0) manifests.push(desc);
    for (const n of names) manifests.push({ ...desc, annotations: { [ANNOTATION_REF_NAME]: n } });
  }
  const layout = Buffer.from(`${JSON.stringify({ imageLayoutVersion: "1.0.0" })}`);
  yield* member("oci-layout", layout.length, layout);
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }),
  );
  yield* member("index.json", index.length, index);
  yield end();
}

// ---- docker-archive ----

async function* dockerArchive(
  store: ImageStore,
  items: SaveItem[],
  options: SaveOptions,
): AsyncGenerator<Uint8Array> {
  const written = new Set<string>();
  const manifest: { Config: string; RepoTags: string[] | null; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, names } of items) {
    const layers: string[] = [];
    for (const l of image.layers) {
      const file = `${parseDigest(l.diffId).hex}.tar`;
      layers.push(file);
      if (written.has(file)) continue;
      written.add(file);
      options.onProgress?.({ phase: "layer", detail: l.diffId });
      const size = await uncompressedSize(store, l.descriptor.digest, l.diffId);
      yield* member(file, size, verified(uncompressed(store, l.descriptor.digest), l.diffId, file));
    }
    const configFile = `${parseDigest(image.id).hex}.json`;
    if (!written.has(configFile)) {
      written.add(configFile);
      const data = await store.readBlob(image.id);
      yield* member(configFile, data.length, data);
    }
    const tags: string[] = [];
    for (const n of names) {
      const ref = parseReference(n);
      if (ref.tag === undefined) continue;
      const repo = familiar(ref.name);
      tags.push(`${repo}:${ref.tag}`);
      repositories[repo] = {
        ...repositories[repo],
        [ref.tag]: parseDigest(image.layers.at(-1)?.diffId ?? image.id).hex,
      };
    }
    manifest.push({ Config: configFile, RepoTags: tags.length ? tags : null, Layers: layers });
  }
  const m = Buffer.from(JSON.stringify(manifest));
  yield* member("manifest.json", m.length, m);
  if (Object.keys(repositories).length > 0) {
    const r = Buffer.from(JSON.stringify(repositories));
    yield* member("repositories", r.length, r);
  }
  yield end();
}

/** docker.io/library/busybox → busybox, docker.io/alice/app → alice/app (as docker save writes). */
function familiar(name: string): string {
  return name.replace(/^docker\.io\/library\/(?=[^/]+$)/, "").replace(/^docker\.io\//, "");
}

async function compressionOf(store: ImageStore, digest: string) {
  const head = Buffer.alloc(8);
  const fh = await open(store.blobPath(digest));
  try {
    await fh.read(head, 0, 8, 0);
  } finally {
    await fh.close();
  }
  return detectCompression(head);
}

/** The layer blob's content, decompressed. */
async function* uncompressed(store: ImageStore, digest: string): AsyncGenerator<Uint8Array> {
  const compression = await compressionOf(store, digest);
  const source = createReadStream(store.blobPath(digest), { highWaterMark: 1 << 20 });
  if (compression === "none") {
    yield* source;
    return;
  }
  let transform: Transform;
  if (compression === "gzip") transform = zlib.createGunzip({ chunkSize: 256 << 10 });
  else {
    const create = (zlib as unknown as { createZstdDecompress?: () => Transform })
      .createZstdDecompress;
    if (typeof create !== "function")
      throw new ImageError("saving zstd layers as a docker-archive needs zstd in node:zlib", {
        hint: "use Bun or Node >= 22.15, or save as an oci-archive (layers as stored)",
      });
    transform = create();
  }
  pipeline(source, transform, () => {});
  yield* transform;
}

/** Passes a layer's bytes through, checking them against its diff_id at the end. */
async function* verified(
  source: AsyncIterable<Uint8Array>,
  diffId: string,
  what: string,
): AsyncGenerator<Uint8Array> {
  const d = new Digester(parseDigest(diffId).algorithm);
  for await (const chunk of source) {
    d.update(chunk);
    yield chunk;
  }
  const actual = d.digest();
  if (actual !== diffId)
    throw new DigestMismatchError(
      `layer ${what}`,
      diffId,
      actual,
      "the store is corrupt: remove the image and load or pull it again",
    );
}

/** Uncompressed size: from the unpacked layer's record, else by decompressing once. */
async function uncompressedSize(
  store: ImageStore,
  digest: string,
  diffId: string,
): Promise<number> {
  const recorded = await layerSize(store, diffId, -1);
  if (recorded >= 0) return recorded;
  let n = 0;
  for await (const chunk of uncompressed(store, digest)) n += chunk.length;
  return n;
}
