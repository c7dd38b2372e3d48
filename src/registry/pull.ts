/**
 * `pivot pull`: an image from a registry into the store.
 *
 * The manifest (through an index, for the wanted platform) and the config
 * come first and are checked; then the layers are fetched in parallel, a
 * bounded number at a time, each unpacked while it streams in and verified
 * (blob digest and size, diff_id) before blob and layer appear in the store.
 * Layers the store has are skipped. Only when every layer is in does the
 * manifest get stored and the reference recorded: a failed pull tags nothing
 * and leaves no partial blob or layer (finished layers stay, complete and
 * verified, for the next attempt).
 */
import { Digester, parseDigest } from "../image/digest.ts";
import { InvalidImageError } from "../image/errors.ts";
import { formatReference, type ImageReference, parseReference } from "../image/reference.ts";
import type { ImageStore, StoredImage } from "../image/store.ts";
import {
  type Descriptor,
  hostPlatform,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from "../image/types.ts";
import { type ClientOptions, type ManifestResponse, RegistryClient } from "./client.ts";
import { RegistryError, UnsupportedMediaTypeError } from "./errors.ts";
import {
  CONFIG_MEDIA_TYPES,
  formatPlatform,
  indexPlatforms,
  LAYER_MEDIA_TYPES,
  MAX_CONFIG_SIZE,
  type ParsedManifest,
  parseManifest,
  parsePlatform,
  selectManifest,
} from "./manifest.ts";
import { type ProgressReporter, QuietProgress, shortId } from "./progress.ts";

export interface PullOptions extends ClientOptions {
  /** os/arch[/variant] or a Platform; default the host's. */
  platform?: string | Platform;
  /** Layers downloaded at once (default 3, as Docker). */
  concurrency?: number;
  progress?: ProgressReporter;
}

export interface PullResult {
  image: StoredImage;
  /** The full reference pulled (docker.io/library/busybox:latest). */
  reference: string;
  /** The digest of what the reference points at (an index or a manifest). */
  digest: string;
  /** The platform manifest's digest (equal to digest without an index). */
  manifestDigest: string;
  layers: { digest: string; status: "exists" | "pulled" | "unpacked" }[];
}

export async function pullImage(
  store: ImageStore,
  reference: string | ImageReference,
  options: PullOptions = {},
): Promise<PullResult> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  const progress = options.progress ?? new QuietProgress();
  const want =
    typeof options.platform === "string"
      ? parsePlatform(options.platform)
      : (options.platform ?? hostPlatform());
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  const client = new RegistryClient(ref.domain, { ...options, signal: controller.signal });
  const repo = ref.path;
  const tagOrDigest = ref.digest ?? ref.tag ?? "latest";
  const full = formatReference(ref);
  try {
    progress.message(`${ref.digest ? ref.digest : tagOrDigest}: Pulling from ${repo}`);
    const top = await fetchManifest(client, store, repo, tagOrDigest);
    let chosen = top;
    if (top.parsed.kind === "index") {
      const desc = selectManifest(top.parsed.index, want);
      if (!desc) {
        throw new RegistryError(
          ref.domain,
          `${full} has no image for ${formatPlatform(want)}; it has ${indexPlatforms(top.parsed.index).join(", ") || "no platform images"}`,
          { hint: "pick one of its platforms with --platform" },
        );
      }
      chosen = await fetchManifest(client, store, repo, desc.digest);
      if (chosen.parsed.kind !== "manifest") {
        throw new InvalidImageError(
          `${full}: index entry ${desc.digest}`,
          "is an index, not an image manifest",
        );
      }
    }
    if (chosen.parsed.kind !== "manifest") throw new Error("unreachable");
    const manifest = chosen.parsed.manifest;
    checkMediaTypes(ref.domain, full, manifest);

    const config = await fetchConfig(client, store, repo, manifest.config);
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
      throw new InvalidImageError(
        `${full}: config ${manifest.config.digest}`,
        `the manifest lists ${manifest.layers.length} layers but the config ${Array.isArray(diffIds) ? diffIds.length : 0} diff_ids`,
      );
    }
    if (top.parsed.kind === "manifest" && config.os && config.architecture) {
      const p = { os: config.os, architecture: config.architecture };
      if (
        options.platform !== undefined &&
        (p.os !== want.os || p.architecture !== want.architecture)
      ) {
        progress.message(
          `Warning: the image is for ${formatPlatform(p)}, not the requested ${formatPlatform(want)}`,
        );
      }
    }

    const layers = manifest.layers.map((descriptor, i) => ({
      descriptor,
      diffId: diffIds[i]!,
      index: i,
    }));
    const statuses: PullResult["layers"] = layers.map((l) => ({
      digest: l.descriptor.digest,
      status: "exists" as const,
    }));
    for (const l of layers)
      progress.status(shortId(l.descriptor.digest), "Waiting", l.descriptor.size);

    await runBounded(layers, options.concurrency ?? 3, controller, async (l) => {
      const id = shortId(l.descriptor.digest);
      const name = `${full} layer ${l.index + 1}/${layers.length} (${l.descriptor.digest})`;
      const haveBlob = await store.hasBlob(l.descriptor.digest);
      const haveLayer = await store.hasLayer(l.diffId);
      if (haveBlob && haveLayer) {
        progress.status(id, "Already exists");
        return;
      }
      if (haveBlob) {
        progress.status(id, "Extracting");
        await store.ensureLayer(l.descriptor.digest, l.diffId, l.descriptor.mediaType, name);
        statuses[l.index]!.status = "unpacked";
        progress.status(id, "Pull complete");
        return;
      }
      progress.status(id, "Downloading", l.descriptor.size);
      const stream = client.blobStream(repo, l.descriptor, (n) => progress.bytes(id, n));
      await store.putLayerStream(
        stream,
        {
          digest: l.descriptor.digest,
          size: l.descriptor.size,
          diffId: l.diffId,
          mediaType: l.descriptor.mediaType,
        },
        name,
      );
      statuses[l.index]!.status = "pulled";
      progress.status(id, "Pull complete");
    });

    // Everything is in: now the manifest (and index) and the name.
    await store.putBlob(
      chosen.data,
      { digest: chosen.digest, size: chosen.data.length },
      `manifest of ${full}`,
    );
    if (top !== chosen)
      await store.putBlob(
        top.data,
        { digest: top.digest, size: top.data.length },
        `index of ${full}`,
      );
    const desc: Descriptor = {
      mediaType: chosen.mediaType,
      digest: chosen.digest,
      size: chosen.data.length,
    };
    if (config.os && config.architecture) {
      desc.platform = { os: config.os, architecture: config.architecture };
      if (config.variant) desc.platform.variant = config.variant;
    }
    // Docker's pull is one `pull` event, no `tag` for the name it sets.
    await store.addImage(desc, [ref], { tagEvents: false });
    progress.message(`Digest: ${top.digest}`);
    const anyNew = statuses.some((s) => s.status !== "exists");
    progress.message(
      `Status: ${anyNew ? "Downloaded newer image" : "Image is up to date"} for ${full}`,
    );
    const image = await store.inspectManifest(desc);
    store.onEvent?.("pull", full, { name: full });
    return {
      image: { ...image, names: [full] },
      reference: full,
      digest: top.digest,
      manifestDigest: chosen.digest,
      layers: statuses,
    };
  } finally {
    options.signal?.removeEventListener("abort", onOuterAbort);
    progress.close();
    client.close();
  }
}

/**
 * A manifest by tag or digest. By tag, a HEAD asks for the digest first
 * (HEADs do not count against Docker Hub's pull limit): if the store has
 * that content, it is used without downloading.
 */
async function fetchManifest(
  client: RegistryClient,
  store: ImageStore,
  repo: string,
  reference: string,
): Promise<ManifestResponse> {
  let digest: string | undefined = reference.includes(":") ? reference : undefined;
  if (digest === undefined) {
    const head = await client.headManifest(repo, reference).catch(() => undefined);
    if (head?.digest && /^sha256:[0-9a-f]{64}$/.test(head.digest)) digest = head.digest;
  }
  if (digest !== undefined && (await store.hasBlob(digest))) {
    const data = await store.readBlob(digest);
    const d = new Digester(parseDigest(digest).algorithm);
    d.update(data);
    if (d.digest() === digest) {
      try {
        const parsed: ParsedManifest = parseManifest(data);
        return { data, digest, mediaType: parsed.mediaType, parsed };
      } catch {
        // Not usable locally: fetch it.
      }
    }
  }
  return client.getManifest(repo, reference);
}

async function fetchConfig(
  client: RegistryClient,
  store: ImageStore,
  repo: string,
  desc: Descriptor,
): Promise<ImageConfig> {
  if (await store.hasBlob(desc.digest)) {
    return store.readJson<ImageConfig>(desc.digest, "image config");
  }
  const data = await client.getBlob(repo, desc, MAX_CONFIG_SIZE);
  let config: ImageConfig;
  try {
    config = JSON.parse(data.toString("utf8")) as ImageConfig;
  } catch (e) {
    throw new InvalidImageError(
      `image config ${desc.digest}`,
      `not valid JSON (${(e as Error).message})`,
    );
  }
  if (
    !config ||
    typeof config !== "object" ||
    !config.rootfs ||
    !Array.isArray(config.rootfs.diff_ids)
  ) {
    throw new InvalidImageError(`image config ${desc.digest}`, "has no rootfs.diff_ids");
  }
  for (const id of config.rootfs.diff_ids) parseDigest(id);
  await store.putBlob(
    data,
    { digest: desc.digest, size: desc.size },
    `image config ${desc.digest}`,
  );
  return config;
}

function checkMediaTypes(registry: string, full: string, manifest: ImageManifest): void {
  if (!CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) {
    throw new UnsupportedMediaTypeError(
      registry,
      `${full}: config`,
      manifest.config.mediaType,
      "this is not a container image (an OCI artifact such as a Helm chart or a signature?)",
    );
  }
  for (const l of manifest.layers) {
    if (!LAYER_MEDIA_TYPES.includes(l.mediaType)) {
      throw new UnsupportedMediaTypeError(
        registry,
        `${full}: layer ${l.digest}`,
        l.mediaType,
        "Pivot unpacks tar layers, uncompressed or compressed with gzip or zstd",
      );
    }
  }
}

/**
 * Runs `fn` over `items`, at most `limit` at a time. The first failure aborts
 * the others (through `controller`) and is thrown once all have stopped.
 */
export async function runBounded<T>(
  items: T[],
  limit: number,
  controller: AbortController,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
          controller.abort(e);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed) throw firstError;
}
