/**
 * `pivot build`'s cache records: `<root>/build-cache/<key>`, one file per cached step, naming the
 * image (manifest descriptor and image id) the step made. The key is the sha256 of the step's
 * parent and instruction (src/engine/build/cache-key.ts). A record is written by temporary file,
 * fsync and rename (a reader sees it whole or not at all) and removed by unlink.
 *
 * The images a record names are roots of garbage collection (gc.ts): they stay in the store,
 * blobs and unpacked layers, while the record does, though they are not in index.json (not in
 * `pivot images`). A record is trusted only as far as the image it names is in the store: its
 * digest is checked as a digest, the image is read from the store's own blobs, and its config
 * digest must be the id recorded; anything else is a miss, and prune removes it.
 */
import { readdirSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { isDigest } from "./digest.ts";
import type { ImageStore, StoredImage } from "./store.ts";
import { type Descriptor, MediaType, manifestDescriptorOf } from "./types.ts";

/** What a record holds. */
export interface BuildCacheRecord {
  /** The record's key (64 hex, its file name). */
  key: string;
  /** The image's manifest, as in index.json. */
  manifest: Descriptor;
  /** The image id (config digest). */
  id: string;
}

const KEY = /^[0-9a-f]{64}$/;
const MAX_RECORD = 4096;

/** The records' directory. */
export function buildCacheDir(store: ImageStore): string {
  return join(store.root, "build-cache");
}

/** The record of KEY, null when there is none or it is not a well-formed record. */
export function readBuildCacheRecord(store: ImageStore, key: string): BuildCacheRecord | null {
  if (!KEY.test(key)) return null;
  let text: string;
  try {
    const buf = readFileSync(join(buildCacheDir(store), key));
    if (buf.length > MAX_RECORD) return null;
    text = buf.toString("utf8");
  } catch {
    return null;
  }
  return parseRecord(key, text);
}

/** A record's text, checked field by field (it is a file anyone with access to the store wrote). */
export function parseRecord(key: string, text: string): BuildCacheRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const r = v as { manifest?: unknown; id?: unknown };
  const manifest = manifestDescriptorOf(r.manifest);
  if (
    manifest === null ||
    typeof r.id !== "string" ||
    !r.id.startsWith("sha256:") ||
    !isDigest(r.id)
  )
    return null;
  return { key, manifest, id: r.id };
}

/** Every well-formed record (the others are left to prune). */
export function listBuildCacheRecords(store: ImageStore): BuildCacheRecord[] {
  let names: string[];
  try {
    names = readdirSync(buildCacheDir(store));
  } catch {
    return [];
  }
  const out: BuildCacheRecord[] = [];
  for (const n of names.sort()) {
    const r = readBuildCacheRecord(store, n);
    if (r !== null) out.push(r);
  }
  return out;
}

/** Records that KEY's step made IMAGE (which must be in the store). */
export async function writeBuildCacheRecord(
  store: ImageStore,
  key: string,
  image: StoredImage,
): Promise<void> {
  if (!KEY.test(key)) throw new Error(`build cache key ${key} is not 64 hex characters`);
  const { mkdir, stat } = await import("node:fs/promises");
  await mkdir(buildCacheDir(store), { recursive: true, mode: 0o700 });
  const size = (await stat(store.blobPath(image.manifestDigest))).size;
  const manifest: Descriptor = {
    mediaType: image.manifest.mediaType ?? MediaType.ociManifest,
    digest: image.manifestDigest,
    size,
  };
  await store.writeFileAtomic(
    join(buildCacheDir(store), key),
    `${JSON.stringify({ manifest, id: image.id })}\n`,
  );
}

/** Removes KEY's record (none: nothing). */
export function removeBuildCacheRecord(store: ImageStore, key: string): void {
  if (!KEY.test(key)) return;
  try {
    unlinkSync(join(buildCacheDir(store), key));
  } catch {}
}

/**
 * The image a record names, read from the store's blobs (whether or not index.json lists it),
 * null when it is not there whole: its manifest or config missing, its config not the id
 * recorded, a layer neither unpacked nor stored.
 */
export async function recordImage(
  store: ImageStore,
  record: BuildCacheRecord,
): Promise<StoredImage | null> {
  try {
    if (!(await store.hasBlob(record.manifest.digest))) return null;
    const image = await store.inspectManifest(record.manifest);
    if (image.id !== record.id || image.manifestDigest !== record.manifest.digest) return null;
    for (const l of image.layers) {
      if (!(await store.hasLayer(l.diffId)) && !(await store.hasBlob(l.descriptor.digest)))
        return null;
    }
    return image;
  } catch {
    return null;
  }
}

/** A record, the image it names (null: not in the store whole), and whether it is in use. */
export interface BuildCacheEntry {
  record: BuildCacheRecord;
  image: StoredImage | null;
  /**
   * Its image is, or is an ancestor of, an image that is kept (KEPT: tagged, used by a container,
   * made by a running build): the cache of how a kept image was built. Otherwise the record is
   * dangling, as `docker builder prune` calls it.
   */
  used: boolean;
}

/** Whether image A is B or an ancestor of it: A's layers and history begin B's. */
export function isAncestorImage(a: StoredImage, b: StoredImage): boolean {
  if (a.layers.length > b.layers.length) return false;
  if (a.layers.some((l, i) => l.diffId !== b.layers[i]!.diffId)) return false;
  const ha = a.config.history ?? [];
  const hb = b.config.history ?? [];
  if (ha.length > hb.length) return false;
  const same = (x: object, y: object) => {
    const fx = x as Record<string, unknown>;
    const fy = y as Record<string, unknown>;
    return ["created", "created_by", "empty_layer", "comment", "author"].every(
      (k) => fx[k] === fy[k],
    );
  };
  return ha.every((h, i) => same(h, hb[i]!));
}

/** Every well-formed record with its image and whether an image of KEPT descends from it. */
export async function buildCacheUsage(
  store: ImageStore,
  kept: StoredImage[],
): Promise<BuildCacheEntry[]> {
  const out: BuildCacheEntry[] = [];
  for (const record of listBuildCacheRecords(store)) {
    const image = await recordImage(store, record);
    const used = image !== null && kept.some((k) => isAncestorImage(image, k));
    out.push({ record, image, used });
  }
  return out;
}

/**
 * Removes records: `all`, every one (the build cache emptied); else those whose image is gone,
 * which are not well-formed records, and with `danglingOf` those no image of it descends from
 * (buildCacheUsage's `used`). Returns the keys removed. Temporary files of writers that died are
 * the store's leftovers (removeLeftovers).
 */
export async function pruneBuildCache(
  store: ImageStore,
  options: { all?: boolean; danglingOf?: StoredImage[] } = {},
): Promise<string[]> {
  let names: string[];
  try {
    names = readdirSync(buildCacheDir(store));
  } catch {
    return [];
  }
  const kept = options.danglingOf;
  const removed: string[] = [];
  for (const n of names.sort()) {
    if (!KEY.test(n)) continue;
    const r = readBuildCacheRecord(store, n);
    const image = r === null ? null : await recordImage(store, r);
    const keep =
      !options.all &&
      image !== null &&
      (kept === undefined || kept.some((k) => isAncestorImage(image, k)));
    if (keep) continue;
    try {
      unlinkSync(join(buildCacheDir(store), n));
      removed.push(n);
    } catch {}
  }
  return removed;
}
