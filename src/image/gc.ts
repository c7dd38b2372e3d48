/**
 * Garbage collection and disk usage of the image store.
 *
 * What is kept: everything reachable from index.json (manifests, the
 * manifests of an index, configs, layer blobs, the unpacked layers named by
 * the configs' diff_ids), from `pivot build`'s cache records (the images
 * of cached steps, build-cache.ts) and from the records of running builds
 * (their untagged intermediate images, build-runs.ts), the layers the caller says are in use (containers:
 * the engine passes the layers of every container it has, running or not),
 * the layers of any overlay mounted from this store (a container being
 * created has its mount before its record), and content newer than the mark
 * of another live process writing to the store (a load or import not yet
 * tagged). Everything else goes: blobs, unpacked layers and their short links.
 *
 * Collection holds the index lock, so no image is tagged meanwhile; each
 * layer is removed under its own lock by renaming it to a temporary name
 * first (a killed collection leaves a leftover the next open removes, never
 * half a layer under its real name).
 */

import { closeSync, constants, openSync, type Stats } from "node:fs";
import { join } from "node:path";
import { lstat, readdir, readFile, readlink, rename, rm, stat, unlink } from "../util/fs-async.ts";
import { listBuildCacheRecords } from "./build-cache.ts";
import { runningBuildImages } from "./build-runs.ts";
import { openDirAt } from "./layer-lookup.ts";
import { isAlive, withFileLock } from "./lock.ts";
import { ImageStore, type StoredImage, WRITER_LINGER_MS } from "./store.ts";
import { type ImageIndex, type ImageManifest, isIndexMediaType } from "./types.ts";

export interface GcOptions {
  /** diff_ids of layers in use outside the index (containers' root filesystems). */
  keepLayers?: Iterable<string>;
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
}

export interface GcResult {
  /** Digests of removed blobs. */
  blobs: string[];
  /** diff_ids of removed layers. */
  layers: string[];
  /** Bytes freed (apparent sizes: blob files plus unpacked trees). */
  freed: number;
  /** Unreferenced content kept because another process may be about to use it. */
  deferred: number;
}

/** The blobs and layers an image needs, from the store's own files. */
export async function imageContent(
  store: ImageStore,
  manifestDigest: string,
  mediaType?: string,
): Promise<{ blobs: Set<string>; layers: Set<string> }> {
  const blobs = new Set<string>();
  const layers = new Set<string>();
  const walk = async (digest: string, type: string | undefined, depth: number): Promise<void> => {
    if (depth > 4 || !(await store.hasBlob(digest))) return;
    blobs.add(digest);
    let body: ImageManifest & ImageIndex;
    try {
      body = await store.readJson<ImageManifest & ImageIndex>(digest, "manifest");
    } catch {
      return;
    }
    if (
      isIndexMediaType(type) ||
      isIndexMediaType(body.mediaType) ||
      Array.isArray(body.manifests)
    ) {
      for (const m of body.manifests ?? []) await walk(m.digest, m.mediaType, depth + 1);
      return;
    }
    if (body.config?.digest) {
      blobs.add(body.config.digest);
      try {
        const config = await store.readJson<{ rootfs?: { diff_ids?: string[] } }>(
          body.config.digest,
          "image config",
        );
        for (const d of config.rootfs?.diff_ids ?? []) layers.add(d);
      } catch {}
    }
    for (const l of body.layers ?? []) blobs.add(l.digest);
  };
  await walk(manifestDigest, mediaType, 0);
  return { blobs, layers };
}

/** Start times (ms) of other live processes writing to the store. */
async function liveWriters(store: ImageStore): Promise<number[]> {
  const out: number[] = [];
  const dir = join(store.root, "writers");
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid || !isAlive(Number(m[1]))) continue;
    const st = await stat(join(dir, name)).catch(() => null);
    // Active recently: protect what it wrote since the start of its burst of writes.
    if (!st || Date.now() - st.mtimeMs > WRITER_LINGER_MS) continue;
    const since = Number((await readFile(join(dir, name), "utf8").catch(() => "")).trim());
    out.push(Number.isFinite(since) && since > 0 ? since : st.mtimeMs);
  }
  return out;
}

/** diff_ids of the layers of overlays mounted from this store (lowerdir=l/<link>:...). */
export async function mountedLayerLinks(store: ImageStore): Promise<Set<string>> {
  const links = new Set<string>();
  const info = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  for (const line of info.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const [fstype, , opts] = line.slice(sep + 3).split(" ");
    if (fstype !== "overlay" || opts === undefined) continue;
    const lower = /(?:^|,)lowerdir=([^,]*)/.exec(opts)?.[1];
    for (const dir of lower?.split(":") ?? []) {
      const m = /(?:^|\/)l\/([0-9a-f]{16})$/.exec(dir);
      if (m && (dir.startsWith("l/") || dir.startsWith(join(store.root, "l/")))) links.add(m[1]!);
    }
  }
  return links;
}

/** Apparent size of a tree (hardlinked files counted once); 0 if it is missing. */
export async function treeSize(path: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const count = (st: Stats) => {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    total += st.size;
  };
  // Each directory is opened O_NOFOLLOW below its parent: a running container's upper directory
  // or volume changes meanwhile, and one of its directories swapped for a symlink must not have
  // a host tree (or all of /) walked and counted.
  const walk = async (dirFd: number): Promise<void> => {
    for (const n of await readdir(`/proc/self/fd/${dirFd}`).catch(() => [] as string[])) {
      const st = await lstat(`/proc/self/fd/${dirFd}/${n}`).catch(() => null);
      if (st === null) continue;
      if (!st.isDirectory()) {
        count(st);
        continue;
      }
      const child = openDirAt(dirFd, n);
      if (child === null) continue;
      try {
        await walk(child);
      } finally {
        closeSync(child);
      }
    }
  };
  const st = await lstat(path).catch(() => null);
  if (st === null) return 0;
  if (!st.isDirectory()) return st.size;
  let top: number;
  try {
    top = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch {
    return 0;
  }
  try {
    await walk(top);
  } finally {
    closeSync(top);
  }
  return total;
}

/** Removes what nothing uses. See the module comment for what is kept. */
export async function collectGarbage(
  store: ImageStore,
  options: GcOptions = {},
): Promise<GcResult> {
  const result: GcResult = { blobs: [], layers: [], freed: 0, deferred: 0 };
  store.prepareForWrites();
  const keepLinks = await mountedLayerLinks(store);
  await withFileLock(
    store.lockPath("index"),
    async () => {
      const index = await store.readIndex();
      const blobs = new Set<string>();
      const layers = new Set<string>(options.keepLayers ?? []);
      // The images of index.json, those `pivot build`'s cache records name (build-cache.ts), and
      // those running builds have made (build-runs.ts: their intermediates are untagged).
      const roots = [
        ...index.manifests,
        ...listBuildCacheRecords(store).map((r) => r.manifest),
        ...runningBuildImages(store),
      ];
      for (const d of roots) {
        const c = await imageContent(store, d.digest, d.mediaType);
        for (const b of c.blobs) blobs.add(b);
        for (const l of c.layers) layers.add(l);
      }
      const writers = await liveWriters(store);
      const since = writers.length ? Math.min(...writers) - 2000 : Number.POSITIVE_INFINITY;
      // Blobs.
      const blobRoot = join(store.root, "blobs");
      for (const alg of await readdir(blobRoot).catch(() => [] as string[])) {
        for (const hex of await readdir(join(blobRoot, alg)).catch(() => [] as string[])) {
          const digest = `${alg}:${hex}`;
          if (blobs.has(digest)) continue;
          const path = join(blobRoot, alg, hex);
          const st = await stat(path).catch(() => null);
          if (!st) continue;
          if (st.mtimeMs >= since) {
            result.deferred++;
            continue;
          }
          if (!options.dryRun) await unlink(path).catch(() => {});
          result.blobs.push(digest);
          result.freed += st.size;
        }
      }
      // Unpacked layers.
      const layerRoot = join(store.root, "layers", "sha256");
      for (const hex of await readdir(layerRoot).catch(() => [] as string[])) {
        if (!/^[0-9a-f]{64}$/.test(hex)) continue;
        const diffId = `sha256:${hex}`;
        if (layers.has(diffId) || keepLinks.has(ImageStore.linkName(diffId))) continue;
        const meta = await stat(join(layerRoot, hex, "layer.json")).catch(() => null);
        if (meta && meta.mtimeMs >= since) {
          result.deferred++;
          continue;
        }
        const size = await treeSize(join(layerRoot, hex, "diff"));
        if (!options.dryRun) await removeLayer(store, diffId);
        result.layers.push(diffId);
        result.freed += size;
      }
      // Short links whose layer is gone.
      if (!options.dryRun) {
        const linkDir = join(store.root, "l");
        for (const name of await readdir(linkDir).catch(() => [] as string[])) {
          const target = await readlink(join(linkDir, name)).catch(() => null);
          if (target === null) continue;
          if (!(await stat(join(linkDir, target)).catch(() => null)))
            await unlink(join(linkDir, name)).catch(() => {});
        }
      }
    },
    { what: "the image index" },
  );
  return result;
}

async function removeLayer(store: ImageStore, diffId: string): Promise<void> {
  const hex = diffId.slice("sha256:".length);
  await withFileLock(
    store.lockPath(`layer-${hex}`),
    async () => {
      const dir = store.layerDir(diffId);
      // The temporary name is one the store's opening sweeps if this process dies mid-removal.
      const temp = join(
        store.root,
        "layers",
        "sha256",
        `.tmp-${hex}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
      );
      try {
        await rename(dir, temp);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw e;
      }
      await unlink(join(store.root, "l", ImageStore.linkName(diffId))).catch(() => {});
      await rm(temp, { recursive: true, force: true });
    },
    { what: `layer ${diffId}` },
  );
}

/** Size of an image: the sum of its layers' uncompressed sizes (as `docker images` shows). */
export async function imageSize(store: ImageStore, image: StoredImage): Promise<number> {
  let total = 0;
  for (const l of image.layers) total += await layerSize(store, l.diffId, l.descriptor.size);
  return total;
}

/** A layer's uncompressed size from layer.json, else the blob size given. */
export async function layerSize(store: ImageStore, diffId: string, fallback = 0): Promise<number> {
  try {
    const meta = JSON.parse(await readFile(join(store.layerDir(diffId), "layer.json"), "utf8")) as {
      size?: number;
    };
    return typeof meta.size === "number" ? meta.size : fallback;
  } catch {
    return fallback;
  }
}
