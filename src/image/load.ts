/**
 * `pivot load`: images from a docker-archive (what `docker save` writes), an
 * OCI archive (a tarred OCI image layout) or an OCI layout directory.
 *
 * An archive is read in one pass: every regular file that could be a blob is
 * streamed into the store, hashed on the way (files under blobs/<alg>/<hex>
 * must match their name), small metadata files are kept in memory. Then the
 * images are assembled, every layer unpacked and verified against its
 * diff_id, and only then are the images tagged: a bad archive tags nothing.
 */
import { createReadStream } from "node:fs";
import { join, posix } from "node:path";
import { open, realpath, stat } from "../util/fs-async.ts";
import { isDigest, type ParsedDigest, parseDigest } from "./digest.ts";
import { ImageError, InvalidImageError, LayerUnpackError } from "./errors.ts";
import { formatReference, type ImageReference, parseReference } from "./reference.ts";
import type { ImageStore, StoredImage } from "./store.ts";
import { TarFormatError, TarReader } from "./tar.ts";
import {
  ANNOTATION_REF_NAME,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MAX_CONFIG_SIZE,
  MAX_MANIFEST_SIZE,
  MediaType,
} from "./types.ts";
import { cleanPath, detectCompression } from "./unpack.ts";

const CONTAINERD_NAME = "io.containerd.image.name";
const MAX_METADATA = 16 << 20;

export interface LoadOptions {
  /** Shown in errors instead of the path. */
  archiveName?: string;
  /** Reports progress ("blob", "layer", "image") for long loads. */
  onProgress?: (event: { phase: string; detail: string }) => void;
}

export interface LoadResult {
  format: "docker-archive" | "oci-archive" | "oci-layout";
  images: StoredImage[];
}

interface ArchiveContents {
  /** Cleaned member path → stored blob. */
  blobs: Map<string, { digest: string; size: number }>;
  /** Small JSON members by path. */
  metadata: Map<string, Buffer>;
  /** Symlink members: path → cleaned target path. */
  links: Map<string, string>;
}

/** Loads images from a docker-archive or OCI archive file, or an OCI layout directory. */
export async function loadImages(
  store: ImageStore,
  source: string,
  options: LoadOptions = {},
): Promise<LoadResult> {
  const name = options.archiveName ?? source;
  const st = await stat(source);
  if (st.isDirectory()) return loadLayoutDir(store, source, name, options);
  const contents = await readArchive(store, createReadStream(source), name, options);
  if (contents.metadata.has("manifest.json") && !contents.metadata.has("index.json")) {
    return {
      format: "docker-archive",
      images: await assembleDocker(store, contents, name, options),
    };
  }
  if (contents.metadata.has("index.json")) {
    // Docker 25+ writes both; the OCI index is the richer description.
    return { format: "oci-archive", images: await assembleOci(store, contents, name, options) };
  }
  throw new InvalidImageError(
    name,
    "neither a docker-archive (no manifest.json) nor an OCI archive (no index.json)",
    "create archives with `docker save`, `podman save` or `skopeo copy ... oci-archive:FILE`",
  );
}

async function readArchive(
  store: ImageStore,
  input: AsyncIterable<Uint8Array>,
  archive: string,
  options: LoadOptions,
): Promise<ArchiveContents> {
  const contents: ArchiveContents = { blobs: new Map(), metadata: new Map(), links: new Map() };
  const reader = new TarReader(input);
  try {
    for (;;) {
      const entry = await reader.next();
      if (entry === null) break;
      let path: string;
      try {
        path = cleanPath(entry.path);
      } catch (e) {
        throw new LayerUnpackError(archive, entry.path, (e as Error).message);
      }
      if (entry.type === "symlink" || entry.type === "hardlink") {
        const target =
          entry.type === "symlink" && !entry.linkname.startsWith("/")
            ? posix.normalize(posix.join(posix.dirname(path), entry.linkname))
            : entry.linkname;
        contents.links.set(path, target.replace(/^\/+/, ""));
        continue;
      }
      if (entry.type !== "file") continue;
      if (/^(manifest|index|repositories)\.json$|^oci-layout$|^repositories$/.test(path)) {
        if (entry.size > MAX_METADATA) {
          throw new LayerUnpackError(
            archive,
            entry.path,
            `metadata file of ${entry.size} bytes is too large`,
          );
        }
        const parts: Buffer[] = [];
        for await (const c of reader.body()) parts.push(Buffer.from(c));
        contents.metadata.set(path, Buffer.concat(parts));
        continue;
      }
      const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(path);
      let expected: string | undefined;
      if (m) {
        expected = `${m[1]}:${m[2]}`;
        parseDigest(expected);
      }
      options.onProgress?.({ phase: "blob", detail: path });
      try {
        const blob = await store.putBlob(
          reader.body(),
          expected ? { digest: expected, size: entry.size } : { size: entry.size },
          `${archive}, entry ${JSON.stringify(entry.path)}`,
        );
        contents.blobs.set(path, blob);
      } catch (e) {
        if (e instanceof ImageError && !(e instanceof LayerUnpackError)) {
          throw new LayerUnpackError(archive, entry.path, e.message.split("\n")[0]!, { cause: e });
        }
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof TarFormatError)
      throw new LayerUnpackError(archive, e.entry, e.message, { cause: e });
    throw e;
  }
  return contents;
}

function resolveMember(
  contents: ArchiveContents,
  path: string,
): { digest: string; size: number } | undefined {
  let p = posix.normalize(path).replace(/^\/+/, "");
  for (let hops = 0; hops < 16; hops++) {
    const blob = contents.blobs.get(p);
    if (blob) return blob;
    const next = contents.links.get(p);
    if (next === undefined) return undefined;
    p = next;
  }
  return undefined;
}

function parseJson<T>(data: Buffer, what: string): T {
  try {
    return JSON.parse(data.toString("utf8")) as T;
  } catch (e) {
    throw new InvalidImageError(what, `not valid JSON (${(e as Error).message})`);
  }
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

async function assembleDocker(
  store: ImageStore,
  contents: ArchiveContents,
  archive: string,
  options: LoadOptions,
): Promise<StoredImage[]> {
  const entries = parseJson<DockerManifestEntry[]>(
    contents.metadata.get("manifest.json")!,
    `${archive}: manifest.json`,
  );
  if (!Array.isArray(entries))
    throw new InvalidImageError(`${archive}: manifest.json`, "is not a list");
  // Every entry's shape and names checked before any layer is unpacked.
  const tagsOf = entries.map((e, i) => checkDockerEntry(e, i, archive));
  const pending: { manifest: Descriptor; refs: string[] }[] = [];
  for (const [n, e] of entries.entries()) {
    const config = resolveMember(contents, e.Config);
    if (!config)
      throw new InvalidImageError(
        archive,
        `config ${JSON.stringify(e.Config)} named in manifest.json is missing`,
      );
    const cfg = await store.readJson<ImageConfig>(config.digest, `${archive}: image config`);
    const diffIds = cfg?.rootfs?.diff_ids ?? [];
    if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === "string" && isDigest(d))) {
      throw new InvalidImageError(
        `${archive}: config ${e.Config}`,
        `rootfs.diff_ids is not a list of digests (${JSON.stringify(diffIds).slice(0, 200)})`,
        "the archive is corrupt or was not written by docker save",
      );
    }
    if (diffIds.length !== e.Layers.length) {
      throw new InvalidImageError(
        archive,
        `config ${e.Config} has ${diffIds.length} diff_ids but manifest.json lists ${e.Layers.length} layers`,
      );
    }
    const layers: Descriptor[] = [];
    for (const [i, lp] of e.Layers.entries()) {
      const blob = resolveMember(contents, lp);
      if (!blob)
        throw new InvalidImageError(
          archive,
          `layer ${JSON.stringify(lp)} named in manifest.json is missing`,
        );
      const head = Buffer.alloc(8);
      const fh = await open(store.blobPath(blob.digest));
      try {
        await fh.read(head, 0, 8, 0);
      } finally {
        await fh.close();
      }
      const c = detectCompression(head);
      const mediaType =
        c === "gzip"
          ? MediaType.ociLayerGzip
          : c === "zstd"
            ? MediaType.ociLayerZstd
            : MediaType.ociLayer;
      await store.ensureLayer(blob.digest, diffIds[i]!, mediaType, `${archive}, layer ${lp}`);
      options.onProgress?.({ phase: "layer", detail: diffIds[i]! });
      layers.push({ mediaType, digest: blob.digest, size: blob.size });
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
      layers,
    };
    const desc = await store.putJson(manifest, MediaType.ociManifest);
    pending.push({ manifest: desc, refs: tagsOf[n]! });
  }
  const images: StoredImage[] = [];
  for (const p of pending) {
    // Docker's load: one `load` event an image, no `tag` for the names it sets.
    await store.addImage(p.manifest, p.refs, { tagEvents: false });
    const image = await store.resolve(p.manifest.digest);
    store.onEvent?.("load", image.id, { name: image.id });
    images.push(image);
    options.onProgress?.({ phase: "image", detail: p.refs[0] ?? p.manifest.digest });
  }
  return images;
}

/** Checks entry `i` of a docker-archive's manifest.json; returns its tags, as full references. */
function checkDockerEntry(e: DockerManifestEntry, i: number, archive: string): string[] {
  const what = `${archive}: manifest.json entry ${i + 1}`;
  const refuse = (reason: string): never => {
    throw new InvalidImageError(
      what,
      reason,
      "the archive is corrupt or was not written by docker save",
    );
  };
  if (e === null || typeof e !== "object" || Array.isArray(e)) refuse("is not an object");
  if (typeof e.Config !== "string") refuse("has no Config file name");
  if (!Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === "string"))
    refuse("has no Layers list of file names");
  const tags = e.RepoTags ?? [];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === "string"))
    refuse("has a RepoTags that is not a list of names");
  return tags.map((t) => {
    let ref: ImageReference;
    try {
      ref = parseReference(t);
    } catch (err) {
      throw new InvalidImageError(what, `RepoTags: ${(err as Error).message.split("\n")[0]}`);
    }
    // A name@digest would claim a manifest digest this image does not have.
    if (ref.digest !== undefined) refuse(`RepoTags: ${JSON.stringify(t)} has a digest, not a tag`);
    return formatReference(ref);
  });
}

/** The reference an OCI index entry names, if it names a full one. */
function refOf(d: Descriptor): string | undefined {
  const candidates = [d.annotations?.[CONTAINERD_NAME], d.annotations?.[ANNOTATION_REF_NAME]];
  for (const c of candidates) {
    if (c === undefined) continue;
    // A bare tag ("latest", as skopeo writes by default) names no repository.
    if (/^[\w][\w.-]{0,127}$/.test(c) && !c.includes(".") && !c.includes("/")) continue;
    try {
      const ref = parseReference(c);
      // containerd names an image pulled by digest name@digest; any other digest is a lie.
      if (ref.digest !== undefined && ref.digest !== d.digest) continue;
      return formatReference(ref);
    } catch {
      /* not a reference */
    }
  }
  return undefined;
}

async function assembleOci(
  store: ImageStore,
  contents: ArchiveContents,
  archive: string,
  options: LoadOptions,
): Promise<StoredImage[]> {
  const index = parseJson<ImageIndex>(
    contents.metadata.get("index.json")!,
    `${archive}: index.json`,
  );
  if (index === null || index.schemaVersion !== 2 || !Array.isArray(index.manifests)) {
    throw new InvalidImageError(`${archive}: index.json`, "not an OCI image index");
  }
  return assembleFromIndex(store, index, archive, options);
}

async function assembleFromIndex(
  store: ImageStore,
  index: ImageIndex,
  archive: string,
  options: LoadOptions,
): Promise<StoredImage[]> {
  const pending: { manifest: Descriptor; refs: string[] }[] = [];
  for (const d of index.manifests) {
    checkLayoutDescriptor(d, `${archive}: index.json`);
    if (!(await store.hasBlob(d.digest))) {
      throw new InvalidImageError(archive, `manifest ${d.digest} named in index.json is missing`);
    }
    // What is recorded in the store's index.json must be true of the blob.
    const { size } = await stat(store.blobPath(d.digest));
    if (size !== d.size || typeof d.mediaType !== "string") {
      throw new InvalidImageError(
        `${archive}: index.json`,
        size !== d.size
          ? `the entry for ${d.digest} says ${d.size} bytes; the blob has ${size}`
          : `the entry for ${d.digest} has no mediaType`,
        "the archive is corrupt",
      );
    }
    // Registering the descriptor lets the store pick the platform of an index.
    const manifestDesc: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
    const ref = refOf(d);
    pending.push({ manifest: manifestDesc, refs: ref ? [ref] : [] });
  }
  const images: StoredImage[] = [];
  const probes: StoredImage[] = [];
  // Unpack (and so verify) everything before anything is tagged.
  for (const p of pending) {
    const probe = await loadUnregistered(store, p.manifest);
    await store.ensureImageLayers(probe);
    for (const l of probe.layers) options.onProgress?.({ phase: "layer", detail: l.diffId });
    probes.push(probe);
  }
  for (const [i, p] of pending.entries()) {
    // Docker's load: one `load` event an image, no `tag` for the names it sets.
    await store.addImage(p.manifest, p.refs, { tagEvents: false });
    store.onEvent?.("load", probes[i]!.id, { name: probes[i]!.id });
    // Not store.resolve(digest): an entry naming an image index resolves to none by that digest.
    images.push({ ...probes[i]!, names: p.refs });
    options.onProgress?.({ phase: "image", detail: p.refs[0] ?? p.manifest.digest });
  }
  return images;
}

/** Reads an image by manifest descriptor without it being in the index. */
async function loadUnregistered(store: ImageStore, desc: Descriptor): Promise<StoredImage> {
  return store.inspectManifest(desc);
}

async function loadLayoutDir(
  store: ImageStore,
  dir: string,
  archive: string,
  options: LoadOptions,
): Promise<LoadResult> {
  const root = await realpath(dir);
  const layout = await readLayoutFile(root, "oci-layout", archive).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  });
  if (layout === undefined) {
    throw new InvalidImageError(
      archive,
      "is a directory without an oci-layout file",
      "give an OCI image layout directory or an archive file",
    );
  }
  const index = parseJson<ImageIndex>(
    await readLayoutFile(root, "index.json", archive),
    `${archive}/index.json`,
  );
  if (index === null || index.schemaVersion !== 2 || !Array.isArray(index.manifests)) {
    throw new InvalidImageError(`${archive}/index.json`, "not an OCI image index");
  }
  // Copy the blobs reachable from the index, each verified against its digest and size.
  const copy = async (d: Descriptor, maxSize?: number): Promise<void> => {
    const { algorithm, hex } = checkLayoutDescriptor(d, archive, maxSize);
    const name = `blobs/${algorithm}/${hex}`;
    const path = await layoutMember(root, name, archive);
    options.onProgress?.({ phase: "blob", detail: d.digest });
    await store.putBlob(
      createReadStream(path),
      { digest: d.digest, size: d.size },
      `${archive}: blob ${d.digest}`,
    );
  };
  // Each blob once: an index may name the same manifest (or index) many times, at every level.
  const walked = new Set<string>();
  const walk = async (d: Descriptor): Promise<void> => {
    if (walked.has(d.digest)) return;
    walked.add(d.digest);
    await copy(d, MAX_MANIFEST_SIZE);
    const body = await store.readJson<ImageManifest & ImageIndex>(
      d.digest,
      `${archive}: manifest`,
      MAX_MANIFEST_SIZE,
    );
    if (Array.isArray(body.manifests)) {
      for (const m of body.manifests) {
        try {
          await walk(m);
        } catch (e) {
          // Layouts often carry one platform of a multi-platform index; a
          // missing platform only matters if it is ours (resolve says so).
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        }
      }
    } else if (body.config) {
      if (!walked.has(body.config.digest)) {
        walked.add(body.config.digest);
        await copy(body.config, MAX_CONFIG_SIZE);
      }
      if (!Array.isArray(body.layers)) {
        throw new InvalidImageError(`${archive}: manifest ${d.digest}`, "has no layers list");
      }
      for (const l of body.layers) {
        if (walked.has(l.digest)) continue;
        walked.add(l.digest);
        await copy(l);
      }
    }
  };
  for (const d of index.manifests) await walk(d);
  return { format: "oci-layout", images: await assembleFromIndex(store, index, archive, options) };
}

/**
 * The digest and size of a descriptor from a layout, checked before its blob is opened: the
 * size bounds the read (a blob without one could be endless), `maxSize` the JSON documents
 * that are read whole into memory.
 */
function checkLayoutDescriptor(d: Descriptor, archive: string, maxSize?: number): ParsedDigest {
  const shown = typeof d?.digest === "string" ? d.digest : JSON.stringify(d?.digest);
  if (d === null || typeof d !== "object" || typeof d.digest !== "string") {
    throw new InvalidImageError(archive, `a descriptor has no digest (${shown})`);
  }
  let parsed: ParsedDigest;
  try {
    parsed = parseDigest(d.digest);
  } catch (e) {
    throw new InvalidImageError(archive, `descriptor ${shown}: ${(e as Error).message}`);
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new InvalidImageError(
      archive,
      `descriptor ${shown} has no valid size (${JSON.stringify(d.size)})`,
      "every OCI descriptor must give its blob's size in bytes; the layout is corrupt or was not written by an OCI tool",
    );
  }
  if (maxSize !== undefined && d.size > maxSize) {
    throw new InvalidImageError(
      archive,
      `descriptor ${shown} is ${d.size} bytes, too large (the limit is ${maxSize})`,
      "this is not an image Pivot can use",
    );
  }
  return parsed;
}

/**
 * The real path of `name` inside the layout at `root` (a real path), if that is a regular file
 * inside it: a blob that links elsewhere on the host, or is a device or a FIFO (reads that never
 * end, or never start), is refused before it is opened. ENOENT is thrown as it is.
 */
async function layoutMember(root: string, name: string, archive: string): Promise<string> {
  const path = await realpath(join(root, name));
  if (path !== root && !path.startsWith(`${root}/`)) {
    throw new InvalidImageError(
      `${archive}/${name}`,
      `is a link to ${path}, outside the layout`,
      "a layout's files must be inside its directory; copy the blob there instead of linking it",
    );
  }
  const st = await stat(path);
  if (!st.isFile()) {
    throw new InvalidImageError(
      `${archive}/${name}`,
      "is not a regular file",
      "a layout's blobs and index.json must be plain files",
    );
  }
  return path;
}

/** A small file of the layout (index.json, oci-layout), read whole after the checks above. */
async function readLayoutFile(root: string, name: string, archive: string): Promise<Buffer> {
  const path = await layoutMember(root, name, archive);
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    if (size > MAX_METADATA) {
      throw new InvalidImageError(
        `${archive}/${name}`,
        `is ${size} bytes, too large (the limit is ${MAX_METADATA})`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
