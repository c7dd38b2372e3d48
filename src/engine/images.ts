// Image housekeeping that needs to know the containers: rmi, image prune, system df, and garbage
// collection that keeps every layer a container (running or not) still uses.

import { join } from "node:path";
import { buildCacheUsage, pruneBuildCache } from "../image/build-cache.ts";
import { runningBuildImages } from "../image/build-runs.ts";
import { parseDigest } from "../image/digest.ts";
import { collectGarbage, type GcResult, imageSize, layerSize, treeSize } from "../image/gc.ts";
import { rootfsDriver } from "../image/overlay.ts";
import { formatReference, parseReference } from "../image/reference.ts";
import type { ImageStore, StoredImage } from "../image/store.ts";
import { readdir } from "../util/fs-async.ts";
import type { Engine } from "./engine.ts";
import { EngineError } from "./errors.ts";
import type { ContainerInfo } from "./types.ts";

export interface ImageUsage {
  images: StoredImage[];
  containers: ContainerInfo[];
  /** Containers by the image ID they were created from. */
  byImage: Map<string, ContainerInfo[]>;
  /** diff_ids of the layers under the containers' root filesystems. */
  containerLayers: Set<string>;
}

/** Images, containers, and which layers the containers use (from their lowerdirs). */
export async function imageUsage(engine: Engine): Promise<ImageUsage> {
  const store = await engine.images();
  const images = await store.listImages();
  const containers = await engine.list({ all: true });
  const byLink = new Map<string, string>();
  for (const hex of await readdir(join(store.root, "layers", "sha256")).catch(
    () => [] as string[],
  )) {
    if (/^[0-9a-f]{64}$/.test(hex)) byLink.set(hex.slice(0, 16), `sha256:${hex}`);
  }
  const byImage = new Map<string, ContainerInfo[]>();
  const containerLayers = new Set<string>();
  for (const c of containers) {
    byImage.set(c.imageId, [...(byImage.get(c.imageId) ?? []), c]);
    for (const dir of c.rootfs.lowerdirs) {
      const m = /\/l\/([0-9a-f]{16})$/.exec(dir);
      const diffId = m ? byLink.get(m[1]!) : undefined;
      if (diffId) containerLayers.add(diffId);
    }
  }
  return { images, containers, byImage, containerLayers };
}

/** Garbage collection keeping the layers of every container. */
export async function collectEngineGarbage(
  engine: Engine,
  options: { dryRun?: boolean } = {},
): Promise<GcResult> {
  const usage = await imageUsage(engine);
  return collectGarbage(await engine.images(), {
    keepLayers: usage.containerLayers,
    ...(options.dryRun ? { dryRun: true } : {}),
  });
}

export type RemoveEvent = { Untagged: string } | { Deleted: string };

function shortId(id: string): string {
  return parseDigest(id).hex.slice(0, 12);
}

function display(name: string): string {
  try {
    return formatReference(parseReference(name)).replace(/^docker\.io\/(library\/)?/, "");
  } catch {
    return name;
  }
}

/**
 * `pivot rmi`: a name of an image with several names is untagged; the last name, or an image ID,
 * removes the image, refused while a container uses it unless `force`. Blobs and layers nothing
 * uses any more are collected afterwards (unless `noPrune`); layers of containers stay.
 */
export async function removeImage(
  engine: Engine,
  ref: string,
  options: { force?: boolean; noPrune?: boolean } = {},
): Promise<{ events: RemoveEvent[]; gc: GcResult | null }> {
  const store = await engine.images();
  const image = await store.resolve(ref);
  let byName: string | undefined;
  try {
    const full = formatReference(parseReference(ref));
    if (image.names.includes(full)) byName = full;
  } catch {}
  const events: RemoveEvent[] = [];
  if (byName !== undefined && image.names.length > 1) {
    await store.untag(byName);
    events.push({ Untagged: display(byName) });
    return { events, gc: null };
  }
  if (byName === undefined && image.names.length > 1 && !options.force) {
    throw new EngineError(
      `conflict: unable to delete ${shortId(image.id)} (must be forced): the image is referenced in ${image.names.length} repositories`,
      {
        hint: `remove the names one by one (\`pivot rmi ${display(image.names[0]!)}\`), or use -f`,
      },
    );
  }
  const users = (await imageUsage(engine)).byImage.get(image.id) ?? [];
  if (users.length > 0 && !options.force) {
    const c = users[0]!;
    throw new EngineError(
      `conflict: unable to remove image ${byName ? display(byName) : shortId(image.id)}: container ${c.id.slice(0, 12)} (${c.name}, ${c.state.status}) uses it`,
      {
        hint: `remove the container first (\`pivot rm ${c.name}\`), or use \`pivot rmi -f\`, which keeps the layers the container needs`,
      },
    );
  }
  const names = await store.removeManifest(image.manifestDigest);
  for (const n of names) events.push({ Untagged: display(n) });
  events.push({ Deleted: image.id });
  const gc = options.noPrune ? null : await collectEngineGarbage(engine);
  return { events, gc };
}

/**
 * The images prune keeps whatever its options (what a build cache record is used by): tagged
 * ones, those containers use, and those running builds made.
 */
async function keptImages(store: ImageStore, usage: ImageUsage): Promise<StoredImage[]> {
  const kept = (await store.listImages()).filter(
    (i) => i.names.length > 0 || usage.byImage.has(i.id),
  );
  for (const d of runningBuildImages(store)) {
    const image = await store.inspectManifest(d).catch(() => null);
    if (image !== null) kept.push(image);
  }
  return kept;
}

/**
 * `pivot builder prune`: the build cache's dangling records (those no kept image was built
 * through, as `system prune` removes), or with `all` every record; then collection frees the
 * images only they held (out of index.json: no image prune would find them), as Docker's
 * builder prune reclaims their space. Returns the keys removed.
 */
export async function pruneBuilder(
  engine: Engine,
  options: { all?: boolean } = {},
): Promise<string[]> {
  const store = await engine.images();
  const usage = await imageUsage(engine);
  const removed = await pruneBuildCache(
    store,
    options.all ? { all: true } : { danglingOf: await keptImages(store, usage) },
  );
  // The images only those records held (out of index.json), their blobs and layers, go now:
  // the records were what kept them.
  if (removed.length > 0) await collectGarbage(store, { keepLayers: usage.containerLayers });
  return removed;
}

/**
 * `pivot image prune`: untagged images (all unused ones with `all`) no container and no running
 * build uses (after removing what killed builds left), and the build cache's records whose image
 * is gone. The build cache as Docker's: `all` (`image prune -a`, `system prune -a`) empties it;
 * `buildCache: "dangling"` (`system prune`) removes the records no kept image (tagged, used by a
 * container or a running build) was built through. Collection then frees their images.
 */
export async function pruneImages(
  engine: Engine,
  options: { all?: boolean; buildCache?: "dangling" } = {},
): Promise<{ deleted: { id: string; names: string[] }[]; buildCache: string[]; gc: GcResult }> {
  const store = await engine.images();
  // What killed builds left (their containers, mounts, intermediate images) goes first; the
  // images of running builds stay (their intermediates are untagged, and still needed).
  const { removeDeadBuilds } = await import("./build/leftovers.ts");
  await removeDeadBuilds(engine, store);
  const building = new Set(runningBuildImages(store).map((d) => d.digest));
  const usage = await imageUsage(engine);
  const deleted: { id: string; names: string[] }[] = [];
  for (const img of usage.images) {
    if (usage.byImage.has(img.id) || building.has(img.manifestDigest)) continue;
    if (!options.all && img.names.length > 0) continue;
    const names = await store.removeManifest(img.manifestDigest).catch(() => null);
    if (names !== null) deleted.push({ id: img.id, names });
  }
  const buildCache = await pruneBuildCache(
    store,
    options.all
      ? { all: true }
      : options.buildCache === "dangling"
        ? { danglingOf: await keptImages(store, usage) }
        : {},
  );
  const gc = await collectGarbage(store, { keepLayers: usage.containerLayers });
  // Records whose image the collection took after all (another process's, or written meanwhile).
  buildCache.push(...(await pruneBuildCache(store)));
  return { deleted, buildCache, gc };
}

export interface DiskUsage {
  images: {
    id: string;
    names: string[];
    created: string | null;
    size: number;
    sharedSize: number;
    uniqueSize: number;
    containers: number;
  }[];
  containers: { id: string; name: string; image: string; status: string; size: number }[];
  volumes: { name: string; size: number; links: number }[];
  /** The build cache's records: the step's key, the image it names, whether it is used. */
  buildCache: { key: string; id: string; created: string | null; used: boolean }[];
  totals: {
    images: { total: number; active: number; size: number; reclaimable: number };
    containers: { total: number; active: number; size: number; reclaimable: number };
    volumes: { total: number; active: number; size: number; reclaimable: number };
    /**
     * The records (active: used, see BuildCacheEntry), the layers their images hold (each once),
     * and of those the ones only dangling records hold: what `system prune` frees of the cache.
     */
    buildCache: { total: number; active: number; size: number; reclaimable: number };
  };
}

/**
 * `pivot system df`: images (size = their layers' uncompressed sizes; shared = the part in layers
 * other images also have, unique = the rest), containers (their upper directories), volumes, and
 * the build cache (its records; the layers of their images; reclaimable: held by dangling records
 * only, as `system prune` would free them).
 */
export async function systemDf(engine: Engine): Promise<DiskUsage> {
  const store = await engine.images();
  const usage = await imageUsage(engine);
  const layerUsers = new Map<string, number>();
  for (const img of usage.images) {
    for (const d of new Set(img.layers.map((l) => l.diffId)))
      layerUsers.set(d, (layerUsers.get(d) ?? 0) + 1);
  }
  const sizes = new Map<string, number>();
  const sizeOf = async (diffId: string, fallback: number) => {
    let s = sizes.get(diffId);
    if (s === undefined) {
      s = await layerSize(store, diffId, fallback);
      sizes.set(diffId, s);
    }
    return s;
  };
  const images: DiskUsage["images"] = [];
  const activeLayers = new Set<string>(usage.containerLayers);
  for (const img of usage.images) {
    let shared = 0;
    let unique = 0;
    const seen = new Set<string>();
    for (const l of img.layers) {
      if (seen.has(l.diffId)) continue;
      seen.add(l.diffId);
      const s = await sizeOf(l.diffId, l.descriptor.size);
      if ((layerUsers.get(l.diffId) ?? 0) > 1) shared += s;
      else unique += s;
    }
    const containers = usage.byImage.get(img.id)?.length ?? 0;
    if (containers > 0) for (const l of img.layers) activeLayers.add(l.diffId);
    images.push({
      id: img.id,
      names: img.names,
      created: img.config.created ?? null,
      size: await imageSize(store, img),
      sharedSize: shared,
      uniqueSize: unique,
      containers,
    });
  }
  let imagesSize = 0;
  let reclaimable = 0;
  for (const [diffId, s] of sizes) {
    imagesSize += s;
    if (!activeLayers.has(diffId)) reclaimable += s;
  }
  const containers: DiskUsage["containers"] = [];
  let cSize = 0;
  let cReclaim = 0;
  for (const c of usage.containers) {
    const size = await treeSize(c.rootfs.upperdir);
    containers.push({ id: c.id, name: c.name, image: c.image, status: c.state.status, size });
    cSize += size;
    if (!c.state.running) cReclaim += size;
  }
  const volumeUsers = new Map<string, number>();
  for (const c of usage.containers)
    for (const v of c.volumes) volumeUsers.set(v.name, (volumeUsers.get(v.name) ?? 0) + 1);
  const volumes: DiskUsage["volumes"] = [];
  let vSize = 0;
  let vReclaim = 0;
  for (const v of engine.listVolumes()) {
    const size = await treeSize(v.mountpoint);
    const links = volumeUsers.get(v.name) ?? 0;
    volumes.push({ name: v.name, size, links });
    vSize += size;
    if (links === 0) vReclaim += size;
  }
  const kept = await keptImages(store, usage);
  const cache = await buildCacheUsage(store, kept);
  const keptLayers = new Set<string>();
  for (const img of kept) for (const l of img.layers) keptLayers.add(l.diffId);
  for (const e of cache) if (e.used) for (const l of e.image!.layers) keptLayers.add(l.diffId);
  const cacheLayers = new Map<string, boolean>(); // diff_id -> reclaimable
  for (const e of cache) {
    for (const l of e.image?.layers ?? []) {
      await sizeOf(l.diffId, l.descriptor.size);
      cacheLayers.set(l.diffId, !keptLayers.has(l.diffId));
    }
  }
  let cacheSize = 0;
  let cacheReclaim = 0;
  for (const [diffId, free] of cacheLayers) {
    cacheSize += sizes.get(diffId) ?? 0;
    if (free) cacheReclaim += sizes.get(diffId) ?? 0;
  }
  return {
    images,
    containers,
    volumes,
    buildCache: cache.map((e) => ({
      key: e.record.key,
      id: e.record.id,
      created: e.image?.config.created ?? null,
      used: e.used,
    })),
    totals: {
      images: {
        total: usage.images.length,
        active: images.filter((i) => i.containers > 0).length,
        size: imagesSize,
        reclaimable,
      },
      containers: {
        total: containers.length,
        active: usage.containers.filter((c) => c.state.running).length,
        size: cSize,
        reclaimable: cReclaim,
      },
      volumes: {
        total: volumes.length,
        active: volumes.filter((v) => v.links > 0).length,
        size: vSize,
        reclaimable: vReclaim,
      },
      buildCache: {
        total: cache.length,
        active: cache.filter((e) => e.used).length,
        size: cacheSize,
        reclaimable: cacheReclaim,
      },
    },
  };
}

/** `pivot image inspect`: Docker's essentials. */
export async function inspectImage(engine: Engine, ref: string): Promise<Record<string, unknown>> {
  const store = await engine.images();
  const image = await store.resolve(ref);
  const layers = await Promise.all(
    image.layers.map(async (l) => ({ ...l, path: store.layerDir(l.diffId) })),
  );
  const repos = image.names.map(display);
  const c = image.config;
  return {
    Id: image.id,
    RepoTags: repos,
    RepoDigests: [
      ...new Set(
        image.names.map((n) => `${display(n).replace(/:[^:/@]+$/, "")}@${image.manifestDigest}`),
      ),
    ],
    Parent: "",
    Comment: c.history?.at(-1)?.comment ?? "",
    Created: c.created ?? null,
    Author: c.author ?? "",
    Config: {
      User: c.config?.User ?? "",
      ExposedPorts: c.config?.ExposedPorts ?? null,
      Env: c.config?.Env ?? null,
      Cmd: c.config?.Cmd ?? null,
      Entrypoint: c.config?.Entrypoint ?? null,
      Volumes: c.config?.Volumes ?? null,
      WorkingDir: c.config?.WorkingDir ?? "",
      Labels: c.config?.Labels ?? null,
      StopSignal: c.config?.StopSignal ?? "",
    },
    Architecture: c.architecture,
    ...(c.variant ? { Variant: c.variant } : {}),
    Os: c.os,
    Size: await imageSize(store, image),
    GraphDriver: {
      Name: rootfsDriver().driver,
      Data: {
        LowerDir: [...layers]
          .reverse()
          .map((l) => join(l.path, "diff"))
          .join(":"),
      },
    },
    RootFS: { Type: "layers", Layers: image.layers.map((l) => l.diffId) },
    Manifest: {
      Digest: image.manifestDigest,
      MediaType: image.manifest.mediaType ?? "application/vnd.oci.image.manifest.v1+json",
      Layers: image.layers.map((l) => l.descriptor),
    },
    History: c.history ?? [],
  };
}
