/**
 * `pivot push`: an image from the store to a registry.
 *
 * Each blob (layers, then the config) is checked with HEAD and skipped if
 * the repository has it; otherwise mounted from another repository of the
 * same registry that has it (the image's other names there, or ones given),
 * else uploaded: in one PUT, or in PATCH chunks for blobs over `chunkSize`.
 * A broken upload starts over in a new session, with backoff. The manifest
 * goes last, as the very bytes stored (so its digest is unchanged), under
 * the tag and any extra tags. `pushIndex` puts several platform images
 * under one tag as an OCI index.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { ImageError } from "../image/errors.ts";
import { formatReference, type ImageReference, parseReference } from "../image/reference.ts";
import type { ImageStore, StoredImage } from "../image/store.ts";
import { type Descriptor, type ImageIndex, MediaType, type Platform } from "../image/types.ts";
import { repositoryScope } from "./auth.ts";
import { type ClientOptions, RegistryClient } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { isTransientNetworkError } from "./http.ts";
import { type ProgressReporter, QuietProgress, shortId } from "./progress.ts";
import { runBounded } from "./pull.ts";

export interface PushOptions extends ClientOptions {
  /** Blobs uploaded at once (default 3). */
  concurrency?: number;
  progress?: ProgressReporter;
  /**
   * Blobs larger than this are uploaded in PATCH chunks of this size; others
   * in a single PUT. Default: always a single PUT.
   */
  chunkSize?: number;
  /** Repositories of the destination registry to mount blobs from. */
  mountFrom?: string[];
  /** More tags to point at the pushed manifest. */
  tags?: string[];
}

export type BlobPushStatus = "exists" | "mounted" | "pushed";

export interface PushResult {
  reference: string;
  /** The manifest's digest. */
  digest: string;
  size: number;
  blobs: { digest: string; status: BlobPushStatus }[];
}

/** Pushes image `source` (a name or ID in the store) to `destination` (default: source's name). */
export async function pushImage(
  store: ImageStore,
  source: string,
  destination?: string | ImageReference,
  options: PushOptions = {},
): Promise<PushResult> {
  const image = await store.resolve(source);
  const dest =
    destination === undefined
      ? parseReference(source)
      : typeof destination === "string"
        ? parseReference(destination)
        : destination;
  const client = new RegistryClient(dest.domain, options);
  const progress = options.progress ?? new QuietProgress();
  try {
    return await pushWith(client, store, image, dest, options, progress);
  } finally {
    progress.close();
    client.close();
  }
}

async function pushWith(
  client: RegistryClient,
  store: ImageStore,
  image: StoredImage,
  dest: ImageReference,
  options: PushOptions,
  progress: ProgressReporter,
): Promise<PushResult> {
  const repo = dest.path;
  const full = formatReference(dest);
  progress.message(`The push refers to repository [${dest.name}]`);
  const mountFrom = [
    ...(options.mountFrom ?? []),
    ...image.names
      .map((n) => parseReference(n))
      .filter((r) => r.domain === dest.domain && r.path !== repo)
      .map((r) => r.path),
  ].filter((v, i, a) => a.indexOf(v) === i);

  const blobs: Descriptor[] = [...image.layers.map((l) => l.descriptor), image.manifest.config];
  const unique = blobs.filter((b, i) => blobs.findIndex((x) => x.digest === b.digest) === i);
  const statuses = new Map<string, BlobPushStatus>();
  for (const b of unique) progress.status(shortId(b.digest), "Preparing", b.size);
  const controller = new AbortController();
  await runBounded(unique, options.concurrency ?? 3, controller, async (b) => {
    const status = await pushBlob(client, store, repo, b, mountFrom, options, progress);
    statuses.set(b.digest, status);
  });

  const data = await store.readBlob(image.manifestDigest);
  const mediaType = image.manifest.mediaType ?? MediaType.ociManifest;
  const targets = [dest.digest ?? dest.tag ?? "latest", ...(options.tags ?? [])];
  let digest = image.manifestDigest;
  for (const t of targets) {
    if (t.includes(":") && t !== image.manifestDigest) {
      throw new RegistryError(
        dest.domain,
        `cannot push ${image.manifestDigest} as ${dest.name}@${t}: a digest names exactly one content`,
        { hint: "push to a tag instead" },
      );
    }
    digest = await client.putManifest(repo, t, data, mediaType);
  }
  const last = targets[0]!;
  progress.message(`${last}: digest: ${digest} size: ${data.length}`);
  return {
    reference: full,
    digest,
    size: data.length,
    blobs: unique.map((b) => ({ digest: b.digest, status: statuses.get(b.digest) ?? "pushed" })),
  };
}

async function pushBlob(
  client: RegistryClient,
  store: ImageStore,
  repo: string,
  desc: Descriptor,
  mountFrom: string[],
  options: PushOptions,
  progress: ProgressReporter,
): Promise<BlobPushStatus> {
  const id = shortId(desc.digest);
  const scopes = [repositoryScope(repo, ["pull", "push"])]; // one token for the whole push
  if ((await client.blobExists(repo, desc.digest, scopes)) !== undefined) {
    progress.status(id, "Layer already exists");
    return "exists";
  }
  const path = store.blobPath(desc.digest);
  const st = await stat(path).catch(() => undefined);
  if (!st) {
    throw new ImageError(`blob ${desc.digest} of the image is not in the store at ${store.root}`, {
      hint: "pull or load the image again",
    });
  }
  let location: string | undefined;
  for (const from of mountFrom) {
    const r = await client.startUpload(repo, { digest: desc.digest, from });
    if (r === "mounted") {
      progress.status(id, `Mounted from ${from}`);
      return "mounted";
    }
    location = r; // the registry could not mount; it opened an upload instead
    break;
  }
  const size = st.size;
  const attempts = (options.retry?.retries ?? 4) + 1;
  for (let attempt = 1; ; attempt++) {
    location ??= await client.startUpload(repo);
    progress.status(id, "Pushing", size);
    let sent = 0;
    const counted = (start: number, end?: number) =>
      async function* () {
        sent = start;
        const rs = createReadStream(path, end === undefined ? { start } : { start, end: end - 1 });
        for await (const chunk of rs as AsyncIterable<Buffer>) {
          sent += chunk.length;
          progress.bytes(id, sent);
          yield chunk;
        }
      };
    try {
      if (options.chunkSize !== undefined && options.chunkSize > 0 && size > options.chunkSize) {
        await client.putBlobChunked(
          repo,
          location,
          { digest: desc.digest, size },
          (start, end) => counted(start, end)(),
          options.chunkSize,
        );
      } else {
        await client.putBlobMonolithic(repo, location, { digest: desc.digest, size }, counted(0));
      }
      progress.status(id, "Pushed");
      return "pushed";
    } catch (e) {
      const cause = (e as { cause?: unknown }).cause ?? e;
      const transient =
        isTransientNetworkError(cause) ||
        (e instanceof RegistryError && e.status !== undefined && e.status >= 500);
      await client.cancelUpload(repo, location);
      location = undefined;
      if (!transient || attempt >= attempts) throw e;
      progress.status(id, `Retrying (attempt ${attempt + 1} of ${attempts})`);
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** (attempt - 1))));
    }
  }
}

export interface IndexEntry {
  /** An image in the store (name or ID). */
  image: string;
  /** Its platform; default from its config (os, architecture, variant). */
  platform?: Platform;
}

/**
 * Pushes several images (one per platform) and an OCI index listing them
 * under `destination`'s tag. Returns the index's digest.
 */
export async function pushIndex(
  store: ImageStore,
  destination: string,
  entries: IndexEntry[],
  options: PushOptions = {},
): Promise<PushResult> {
  const dest = parseReference(destination);
  const client = new RegistryClient(dest.domain, options);
  const progress = options.progress ?? new QuietProgress();
  try {
    const manifests: Descriptor[] = [];
    const blobs: PushResult["blobs"] = [];
    for (const e of entries) {
      const image = await store.resolve(e.image);
      const byDigest = parseReference(`${dest.name}@${image.manifestDigest}`);
      const r = await pushWith(client, store, image, byDigest, { ...options, tags: [] }, progress);
      blobs.push(...r.blobs);
      const platform: Platform = e.platform ?? {
        os: image.config.os,
        architecture: image.config.architecture,
        ...(image.config.variant ? { variant: image.config.variant } : {}),
      };
      manifests.push({
        mediaType: image.manifest.mediaType ?? MediaType.ociManifest,
        digest: image.manifestDigest,
        size: r.size,
        platform,
      });
    }
    const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
    const data = Buffer.from(JSON.stringify(index));
    let digest = "";
    for (const t of [dest.tag ?? "latest", ...(options.tags ?? [])]) {
      digest = await client.putManifest(dest.path, t, data, MediaType.ociIndex);
    }
    progress.message(`${dest.tag ?? "latest"}: digest: ${digest} size: ${data.length}`);
    store.onEvent?.("push", formatReference(dest), { name: formatReference(dest) });
    return { reference: formatReference(dest), digest, size: data.length, blobs };
  } finally {
    progress.close();
    client.close();
  }
}
