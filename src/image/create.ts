/**
 * Making new images in the store from layer archives: `importRootfs` turns a
 * plain root filesystem tarball into a one-layer image (what `pivot import`
 * does); `createImage` writes config and manifest for layers already stored.
 */
import { createReadStream } from "node:fs";
import { InvalidReferenceError } from "./errors.ts";
import { formatReference, parseReference } from "./reference.ts";
import type { ImageStore, LayerRecord, StoredImage } from "./store.ts";
import type { Descriptor } from "./types.ts";
import { hostPlatform, type ImageConfig, type ImageManifest, MediaType } from "./types.ts";
import { detectCompression } from "./unpack.ts";

export interface ImageLayer {
  /** The layer archive blob as stored. */
  descriptor: Descriptor;
  diffId: string;
}

export interface CreateImageOptions {
  layers: ImageLayer[];
  /** Runtime settings (Env, Cmd, ...) and other config fields to carry. */
  config?: Partial<Omit<ImageConfig, "rootfs">>;
  /** References to tag the image with (busybox:latest, ...). */
  refs?: string[];
  /** created_by of the history entries, one per layer (default "pivot"). */
  createdBy?: string[];
}

/** Writes config and manifest for stored layers and records the image under `refs`. */
export async function createImage(
  store: ImageStore,
  options: CreateImageOptions,
): Promise<StoredImage> {
  const created = options.config?.created ?? new Date().toISOString();
  const platform = hostPlatform();
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...options.config,
    created,
    rootfs: { type: "layers", diff_ids: options.layers.map((l) => l.diffId) },
    history:
      options.config?.history ??
      options.layers.map((_, i) => ({ created, created_by: options.createdBy?.[i] ?? "pivot" })),
  };
  const configDesc = await store.putJson(config, MediaType.ociConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: configDesc,
    layers: options.layers.map((l) => ({
      mediaType: l.descriptor.mediaType,
      digest: l.descriptor.digest,
      size: l.descriptor.size,
    })),
  };
  const manifestDesc = await store.putJson(manifest, MediaType.ociManifest);
  await store.addImage(manifestDesc, options.refs ?? []);
  return store.resolve(manifestDesc.digest);
}

export interface ImportOptions {
  refs?: string[];
  config?: Partial<Omit<ImageConfig, "rootfs">>;
  /** Shown in errors instead of the path. */
  archiveName?: string;
  /** Comment for the history entry (like `docker import --message`). */
  message?: string;
}

/**
 * Imports a root filesystem tarball (uncompressed, gzip or zstd) as a
 * one-layer image. The archive is stored as given and unpacked (and so
 * checked) before the image is recorded: a hostile or broken tarball leaves
 * an unused blob at worst, which garbage collection removes.
 */
export async function importRootfs(
  store: ImageStore,
  source: string | AsyncIterable<Uint8Array>,
  options: ImportOptions = {},
): Promise<StoredImage> {
  const archiveName = options.archiveName ?? (typeof source === "string" ? source : "<stdin>");
  // Names are checked before the tarball is read: a bad one must not leave a stored layer behind.
  const refs = (options.refs ?? []).map((r) => {
    const ref = parseReference(r);
    if (ref.digest !== undefined) {
      throw new InvalidReferenceError(
        r,
        "an imported image is named by a tag; a digest would claim content it does not have",
        "give NAME[:TAG]",
      );
    }
    return formatReference(ref);
  });
  const input = typeof source === "string" ? createReadStream(source) : source;
  let head: Buffer | undefined;
  async function* sniff(): AsyncGenerator<Uint8Array> {
    for await (const chunk of input) {
      if (head === undefined) head = Buffer.from(chunk.subarray(0, 8));
      yield chunk;
    }
  }
  const blob = await store.putBlob(sniff(), {}, archiveName);
  const compression = detectCompression(head ?? Buffer.alloc(0));
  const mediaType =
    compression === "gzip"
      ? MediaType.ociLayerGzip
      : compression === "zstd"
        ? MediaType.ociLayerZstd
        : MediaType.ociLayer;
  const layer: LayerRecord = await store.importLayer(blob.digest, mediaType, archiveName);
  const created = new Date().toISOString();
  const image = await createImage(store, {
    layers: [
      { descriptor: { mediaType, digest: blob.digest, size: blob.size }, diffId: layer.diffId },
    ],
    config: {
      ...options.config,
      created,
      history: [
        {
          created,
          created_by: "pivot import",
          ...(options.message ? { comment: options.message } : {}),
        },
      ],
    },
    refs,
  });
  // Docker's import: its names' `tag` events, then `import`.
  store.onEvent?.("import", image.id, { name: image.id });
  return image;
}
