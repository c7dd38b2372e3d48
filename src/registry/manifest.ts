/**
 * Manifests and indexes as registries serve them: OCI and Docker schema 2
 * media types, validation of what Pivot relies on, and platform selection
 * from an index (os, architecture, variant; the host's by default).
 */
import { parseDigest } from "../image/digest.ts";
import {
  type Descriptor,
  hostPlatform,
  type ImageIndex,
  type ImageManifest,
  MediaType,
  type Platform,
} from "../image/types.ts";

// Registries must not make us buffer more than these (the store refuses bigger ones too).
export { MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE } from "../image/types.ts";

export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
];

export const CONFIG_MEDIA_TYPES: readonly string[] = [MediaType.ociConfig, MediaType.dockerConfig];

export const LAYER_MEDIA_TYPES: readonly string[] = [
  MediaType.ociLayer,
  MediaType.ociLayerGzip,
  MediaType.ociLayerZstd,
  MediaType.dockerLayerGzip,
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

const SCHEMA1 = [
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

export type ParsedManifest =
  | { kind: "index"; mediaType: string; index: ImageIndex }
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest };

/** Why a document is not usable; the caller turns this into an error naming the registry. */
export class ManifestFormatError extends Error {
  readonly mediaType: string | undefined;
  constructor(message: string, mediaType?: string) {
    super(message);
    this.mediaType = mediaType;
  }
}

/**
 * Parses a manifest or index. The media type is the response's Content-Type
 * unless that is generic, then the document's own `mediaType` field; a
 * document without either is told apart by its fields, as the OCI spec allows.
 */
export function parseManifest(data: Uint8Array, contentType?: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(data).toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new ManifestFormatError(`not valid JSON (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ManifestFormatError("not a JSON object");
  }
  const header = contentType?.split(";")[0]?.trim().toLowerCase();
  const field = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  let mediaType =
    header &&
    header !== "application/json" &&
    header !== "text/plain" &&
    header !== "application/octet-stream"
      ? header
      : field;
  if (mediaType === undefined) {
    if (Array.isArray(doc.manifests)) mediaType = MediaType.ociIndex;
    else if (doc.config !== undefined && Array.isArray(doc.layers))
      mediaType = MediaType.ociManifest;
    else if (doc.schemaVersion === 1) mediaType = SCHEMA1[0]!;
    else
      throw new ManifestFormatError(
        "neither a manifest nor an index (no mediaType, config or manifests)",
      );
  }
  if (SCHEMA1.includes(mediaType) || doc.schemaVersion === 1) {
    throw new ManifestFormatError("Docker schema 1 manifests are not supported", mediaType);
  }
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    throw new ManifestFormatError(`unknown manifest media type ${mediaType}`, mediaType);
  }
  if (field !== undefined && field !== mediaType) {
    throw new ManifestFormatError(
      `the registry says ${mediaType} but the document says ${field}`,
      mediaType,
    );
  }
  if (doc.schemaVersion !== 2)
    throw new ManifestFormatError(`schemaVersion ${String(doc.schemaVersion)} (want 2)`);
  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    if (!Array.isArray(doc.manifests)) throw new ManifestFormatError("an index without manifests");
    for (const d of doc.manifests) checkDescriptor(d, "index entry");
    return { kind: "index", mediaType, index: doc as unknown as ImageIndex };
  }
  checkDescriptor(doc.config, "config");
  if (!Array.isArray(doc.layers)) throw new ManifestFormatError("a manifest without layers");
  for (const d of doc.layers) checkDescriptor(d, "layer");
  return { kind: "manifest", mediaType, manifest: doc as unknown as ImageManifest };
}

function checkDescriptor(d: unknown, what: string): void {
  const desc = d as Descriptor;
  if (desc === null || typeof desc !== "object")
    throw new ManifestFormatError(`${what} is not a descriptor`);
  if (typeof desc.mediaType !== "string") throw new ManifestFormatError(`${what} has no mediaType`);
  if (typeof desc.size !== "number" || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new ManifestFormatError(`${what} ${String(desc.digest)} has no valid size`);
  }
  try {
    parseDigest(String(desc.digest));
  } catch (e) {
    throw new ManifestFormatError(`${what}: ${(e as Error).message.split("\n")[0]}`);
  }
}

// ---- platforms ----

const ARCH_ALIASES: Record<string, string> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  aarch64: "arm64",
  armhf: "arm",
  armel: "arm",
  i386: "386",
  i686: "386",
};

/** Normalizes like containerd: aarch64 → arm64, arm64's default variant v8, arm's v7. */
export function normalizePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture] ?? p.architecture;
  let variant = p.variant;
  if (architecture === "arm64" && (variant === undefined || variant === "8")) variant = "v8";
  if (architecture === "arm" && variant === undefined) variant = "v7";
  if (architecture === "arm" && /^[5-8]$/.test(variant ?? "")) variant = `v${variant}`;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  const out: Platform = { os: p.os.toLowerCase(), architecture };
  if (variant !== undefined) out.variant = variant;
  return out;
}

/** Parses `linux/arm64`, `linux/arm/v7`, `arm64` (os linux). */
export function parsePlatform(spec: string): Platform {
  const parts = spec.split("/");
  if (parts.length === 1 && parts[0])
    return normalizePlatform({ os: "linux", architecture: parts[0] });
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new Error(
      `invalid platform ${JSON.stringify(spec)}: write OS/ARCH[/VARIANT], e.g. linux/arm64`,
    );
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return normalizePlatform(p);
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x).join("/");
}

/**
 * The best manifest of an index for `want` (default: this machine): same os
 * and architecture; the same variant preferred, else for arm the highest lower
 * variant the machine can run (v7 runs v6 and v5); entries of other media
 * types (attestations, artifacts) are skipped.
 */
export function selectManifest(
  index: ImageIndex,
  want: Platform = hostPlatform(),
): Descriptor | undefined {
  const w = normalizePlatform(want);
  const candidates: { d: Descriptor; rank: number }[] = [];
  for (const d of index.manifests) {
    if (d.mediaType !== MediaType.ociManifest && d.mediaType !== MediaType.dockerManifest) continue;
    if (d.platform === undefined) {
      // An index without platforms: a single-platform image, lowest preference.
      candidates.push({ d, rank: 100 });
      continue;
    }
    const p = normalizePlatform(d.platform);
    if (p.os !== w.os || p.architecture !== w.architecture) continue;
    if (p.variant === w.variant) {
      candidates.push({ d, rank: 0 });
      continue;
    }
    const have = Number(p.variant?.slice(1) ?? Number.NaN);
    const can = Number(w.variant?.slice(1) ?? Number.NaN);
    if (w.architecture === "arm" && have <= can) candidates.push({ d, rank: 10 + (can - have) });
    else if (w.variant === undefined || p.variant === undefined) candidates.push({ d, rank: 50 });
  }
  candidates.sort((a, b) => a.rank - b.rank);
  return candidates[0]?.d;
}

/** Platforms an index offers, for the error when none fits. */
export function indexPlatforms(index: ImageIndex): string[] {
  return index.manifests
    .filter((d) => d.platform && d.platform.os !== "unknown")
    .map((d) => formatPlatform(d.platform!));
}
