/**
 * The content-addressed image store. Its root (default /var/lib/pivot) is an
 * OCI image layout that skopeo (`oci:/var/lib/pivot:docker.io/library/busybox:latest`)
 * and umoci can read, plus Pivot's own directories beside it:
 *
 *   oci-layout                       {"imageLayoutVersion": "1.0.0"}
 *   index.json                       one descriptor per tag (annotation
 *                                    org.opencontainers.image.ref.name = full
 *                                    reference), untagged images without it
 *   blobs/sha256/<hex>               manifests, configs, layer archives
 *   layers/sha256/<hex>/diff/        a layer unpacked, keyed by diff_id,
 *   layers/sha256/<hex>/layer.json   shared read-only by every image using it
 *   l/<16 hex>                       short symlinks to layers' diff dirs, so that
 *                                    overlay mount options stay under a page
 *   tmp/, locks/                     in-flight writes and lock files
 *
 * Blobs are verified while written and appear atomically (temporary file,
 * fsync, rename). Layers are unpacked once, under a per-layer lock, into a
 * temporary directory renamed into place. Leftovers of killed processes are
 * removed by the next process that writes to the store.
 */
import {
  chmodSync,
  closeSync,
  createReadStream,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { open, rename, rm, stat, unlink } from "../util/fs-async.ts";
import { Digester, digestOfBuffer, parseDigest } from "./digest.ts";
import {
  AmbiguousImageError,
  BlobNotFoundError,
  DigestMismatchError,
  ImageNotFoundError,
  InvalidImageError,
  InvalidReferenceError,
} from "./errors.ts";
import { isAlive, withFileLock } from "./lock.ts";
import { formatReference, type ImageReference, parseReference } from "./reference.ts";
import {
  ANNOTATION_REF_NAME,
  type Descriptor,
  hostPlatform,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  isIndexMediaType,
  isManifestMediaType,
  MAX_CONFIG_SIZE,
  MAX_MANIFEST_SIZE,
  MediaType,
  type Platform,
} from "./types.ts";
import type { UnpackResult } from "./unpack.ts";
import { overlayOpaqueXattr } from "./xattr.ts";

export const DEFAULT_STORE_ROOT = "/var/lib/pivot";

export interface LayerRecord {
  diffId: string;
  /** The unpacked tree, to be used read-only (an overlay lowerdir). */
  diffPath: string;
  /** Short name under <root>/l/ linking to diffPath. */
  link: string;
  /** Bytes of the uncompressed layer tar. */
  size: number;
  /**
   * Its opaque directories, relative to diffPath ("" its root), as the unpacker recorded them in
   * layer.json (overlay's marker is an xattr, which Node cannot read); absent for older layers.
   */
  opaqueDirs?: string[];
}

/** An image as found in the store: manifest, config and layers, bottom first. */
export interface StoredImage {
  /** The image ID: the digest of its config, as Docker shows it. */
  id: string;
  manifestDigest: string;
  manifest: ImageManifest;
  config: ImageConfig;
  /** Full references (docker.io/library/busybox:latest) that point at this image. */
  names: string[];
  layers: { descriptor: Descriptor; diffId: string }[];
}

const BLOB_TEMP = /^blob-(\d+)-[a-z0-9]+$/;
const INIT_TEMP = /^init-(\d+)-[a-z0-9]+$/;

/** The init layer's directory (see ImageStore.initLayer), relative to the store root. */
export const INIT_LAYER = "init";
/** What the init layer holds: the mount points every container of the engine gets. */
const INIT_LAYER_DIRS = ["dev", "etc", "proc", "sys"];
const INIT_LAYER_FILES = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];
const LAYER_TEMP = /^(?:\.tmp-[0-9a-z]+-(\d+)-[a-z0-9]+|import(\d+)x[a-z0-9]+)$/;

/** How long a writer's mark protects its content after its last write. */
export const WRITER_LINGER_MS = 60_000;
/** This process's writer marks (see beginWrite), by path. */
const writers = new Map<
  string,
  { active: number; since: number; last: number; timer: ReturnType<typeof setInterval> | undefined }
>();
let exitHook = false;

export class ImageStore {
  readonly root: string;
  /**
   * Told of what happens to images, in Docker's terms (the engine records them as its events):
   * tag, untag and delete with the image's id; pull and push with the reference.
   */
  onEvent?: (action: string, id: string, attributes: Record<string, string>) => void;

  private constructor(root: string) {
    this.root = root;
  }

  /**
   * Opens (creating if needed) the store at `root`. Leftovers of dead processes are removed by
   * this process's first write (beginWrite), not here: `pivot run` and the other readers would
   * list the store's temporary and layer directories at every start, a cost that grows with it.
   */
  static async open(root: string = DEFAULT_STORE_ROOT): Promise<ImageStore> {
    const store = new ImageStore(root);
    await store.init();
    return store;
  }

  // Opening, resolving a name and finding its layers unpacked use synchronous calls: each is a
  // stat or a read of a small file, which node:fs/promises sends through a thread pool (about
  // 0.1 ms each against 2-5 µs, measured here), and `pivot run` makes dozens of them.
  private async init(): Promise<void> {
    // index.json is made last: an existing one means the directories below were made.
    if (existsSync(join(this.root, "index.json"))) return;
    this.makeDirectories();
    const layout = join(this.root, "oci-layout");
    if (!existsSync(layout)) {
      await this.writeFileAtomic(layout, `${JSON.stringify({ imageLayoutVersion: "1.0.0" })}\n`);
    }
    const index = join(this.root, "index.json");
    if (!existsSync(index)) {
      await withFileLock(this.lockPath("index"), async () => {
        if (!(await exists(index)))
          await this.writeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] });
      });
    }
  }

  private makeDirectories(): void {
    for (const d of ["blobs/sha256", "layers/sha256", "l", "tmp", "locks", "writers"]) {
      mkdirSync(join(this.root, d), { recursive: true, mode: 0o700 });
    }
  }

  /** Whether this process has prepared the store for its writes (prepareForWrites). */
  private preparedForWrites = false;

  /**
   * Before this process's first write (beginWrite, updateIndex, garbage collection): the store's
   * directories (one removed by hand is made again) and what crashed writers left behind.
   */
  prepareForWrites(): void {
    if (this.preparedForWrites) return;
    this.preparedForWrites = true;
    this.makeDirectories();
    this.removeLeftoversSync();
  }

  /** Removes temporary files and directories whose owner process is gone. */
  async removeLeftovers(): Promise<string[]> {
    return this.removeLeftoversSync();
  }

  private removeLeftoversSync(): string[] {
    const removed: string[] = [];
    const list = (dir: string): string[] => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    };
    const sweep = (dir: string, pattern: RegExp) => {
      for (const name of list(dir)) {
        const m = pattern.exec(name);
        if (m && !isAlive(Number(m[1] ?? m[2]))) {
          rmSync(join(dir, name), { recursive: true, force: true });
          removed.push(join(dir, name));
        }
      }
    };
    sweep(join(this.root, "tmp"), BLOB_TEMP);
    sweep(join(this.root, "tmp"), INIT_TEMP);
    sweep(join(this.root, "layers/sha256"), LAYER_TEMP);
    sweep(join(this.root, "writers"), /^(\d+)$/);
    sweep(this.root, /^index\.json\.tmp-(\d+)-[a-z0-9]+$/);
    sweep(join(this.root, "build-cache"), /^[0-9a-f]{64}\.tmp-(\d+)-[a-z0-9]+$/);
    sweep(join(this.root, "builds"), /^[0-9a-f]{16}\.tmp-(\d+)-[a-z0-9]+$/);
    return removed;
  }

  /**
   * Marks this process as writing to the store: `writers/<pid>` holds
   * the start of the current burst of writes (ms) and its mtime is the last
   * activity (refreshed every 10 s while a write runs). Garbage collection in
   * another process keeps content newer than that start while the writer is
   * alive and active within WRITER_LINGER_MS, since it may belong to a load,
   * pull or import that is not tagged yet. Returns the function ending it.
   */
  beginWrite(): () => void {
    this.prepareForWrites();
    const path = join(this.root, "writers", String(process.pid));
    let w = writers.get(path);
    const now = Date.now();
    if (w === undefined) {
      w = { active: 0, since: now, last: 0, timer: undefined };
      writers.set(path, w);
    }
    if (w.active === 0 && now - w.last > WRITER_LINGER_MS) w.since = now;
    w.active++;
    const state = w;
    const touch = () => {
      state.last = Date.now();
      try {
        writeFileSync(path, `${state.since}\n`, { mode: 0o644 });
      } catch {}
    };
    touch();
    state.timer ??= setInterval(touch, 10_000);
    state.timer.unref?.();
    if (!exitHook) {
      exitHook = true;
      process.on("exit", () => {
        for (const p of writers.keys()) {
          try {
            unlinkSync(p);
          } catch {}
        }
      });
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      state.active--;
      touch();
      if (state.active === 0 && state.timer !== undefined) {
        clearInterval(state.timer);
        state.timer = undefined;
      }
    };
  }

  /** Runs `fn` as one write (see beginWrite). */
  async writing<T>(fn: () => Promise<T>): Promise<T> {
    const end = this.beginWrite();
    try {
      return await fn();
    } finally {
      end();
    }
  }

  // ---- blobs ----

  blobPath(digest: string): string {
    const d = parseDigest(digest);
    return join(this.root, "blobs", d.algorithm, d.hex);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /**
   * Stores content, hashing it while it is written. With `expected`, content
   * of another digest or size is refused (and nothing is kept). Returns the
   * digest and size.
   */
  async putBlob(
    source: Uint8Array | AsyncIterable<Uint8Array>,
    expected: { digest?: string; size?: number } = {},
    what = "blob",
  ): Promise<{ digest: string; size: number }> {
    return this.writing(() => this.putBlobNow(source, expected, what));
  }

  private async putBlobNow(
    source: Uint8Array | AsyncIterable<Uint8Array>,
    expected: { digest?: string; size?: number },
    what: string,
  ): Promise<{ digest: string; size: number }> {
    const algorithm = expected.digest ? parseDigest(expected.digest).algorithm : "sha256";
    if (expected.digest && (await this.hasBlob(expected.digest))) {
      // Content-addressed: the same digest is the same content. Drain a stream source.
      if (!(source instanceof Uint8Array)) for await (const _ of source);
      const st = await stat(this.blobPath(expected.digest));
      return { digest: expected.digest, size: st.size };
    }
    const temp = join(this.root, "tmp", `blob-${process.pid}-${randomSuffix()}`);
    const digester = new Digester(algorithm);
    const fh = await open(temp, "wx", 0o644);
    let ok = false;
    try {
      const write = async (chunk: Uint8Array) => {
        digester.update(chunk);
        if (expected.size !== undefined && digester.size > expected.size) {
          throw new DigestMismatchError(
            what,
            `${expected.digest ?? "content"} of ${expected.size} bytes`,
            `more than ${expected.size} bytes`,
          );
        }
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      };
      if (source instanceof Uint8Array) await write(source);
      else for await (const chunk of source) await write(chunk);
      await fh.sync();
      await fh.close();
      const digest = digester.digest();
      if (expected.digest !== undefined && digest !== expected.digest) {
        throw new DigestMismatchError(what, expected.digest, digest);
      }
      if (expected.size !== undefined && digester.size !== expected.size) {
        throw new DigestMismatchError(what, `${expected.size} bytes`, `${digester.size} bytes`);
      }
      await rename(temp, this.blobPath(digest));
      ok = true;
      return { digest, size: digester.size };
    } finally {
      await fh.close().catch(() => {});
      if (!ok) await unlink(temp).catch(() => {});
    }
  }

  /** Stores a JSON document as a blob and returns its descriptor. */
  async putJson(value: unknown, mediaType: string): Promise<Descriptor> {
    const data = Buffer.from(JSON.stringify(value));
    const { digest, size } = await this.putBlob(data);
    return { mediaType, digest, size };
  }

  /**
   * A blob's bytes. With `maxSize`, a bigger blob is refused before it is read (a manifest or
   * config from a hostile archive must not be able to fill memory).
   */
  async readBlob(digest: string, maxSize?: number, what = "blob"): Promise<Buffer> {
    const path = this.blobPath(digest);
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT")
        throw new BlobNotFoundError(digest, this.root);
      throw e;
    }
    try {
      const size = fstatSync(fd).size;
      if (maxSize !== undefined && size > maxSize) {
        throw new InvalidImageError(
          `${what} ${digest}`,
          `is ${size} bytes, too large (the limit is ${maxSize})`,
          "this is not an image Pivot can use; get it from a trusted source",
        );
      }
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Reads and verifies a small blob (at most `maxSize` bytes) and parses it as JSON. */
  async readJson<T>(digest: string, what: string, maxSize = MAX_CONFIG_SIZE): Promise<T> {
    const data = await this.readBlob(digest, maxSize, what);
    const actual = await digestOfBuffer(data, parseDigest(digest).algorithm);
    if (actual !== digest) {
      throw new DigestMismatchError(
        `${what} ${this.blobPath(digest)}`,
        digest,
        actual,
        "the store is corrupt: remove the image and load it again",
      );
    }
    try {
      return JSON.parse(data.toString("utf8")) as T;
    } catch (e) {
      throw new InvalidImageError(`${what} ${digest}`, `not valid JSON (${(e as Error).message})`);
    }
  }

  openBlob(digest: string): AsyncIterable<Uint8Array> {
    return createReadStream(this.blobPath(digest));
  }

  // ---- index (tags) ----

  async readIndex(): Promise<ImageIndex> {
    const path = join(this.root, "index.json");
    let parsed: ImageIndex;
    try {
      parsed = JSON.parse(readFileSync(path, "utf8")) as ImageIndex;
    } catch (e) {
      throw new InvalidImageError(
        path,
        `cannot read the store's index (${(e as Error).message})`,
        "the store is corrupt; restore index.json or remove the store",
      );
    }
    if (parsed.schemaVersion !== 2 || !Array.isArray(parsed.manifests)) {
      throw new InvalidImageError(path, "not an OCI image index");
    }
    return parsed;
  }

  private async writeIndex(index: ImageIndex): Promise<void> {
    await this.writeFileAtomic(
      join(this.root, "index.json"),
      `${JSON.stringify(index, null, 2)}\n`,
    );
  }

  /** Read-modify-write of index.json under the store's index lock. */
  async updateIndex(fn: (index: ImageIndex) => void | Promise<void>): Promise<void> {
    this.prepareForWrites();
    await withFileLock(
      this.lockPath("index"),
      async () => {
        const index = await this.readIndex();
        await fn(index);
        await this.writeIndex(index);
      },
      { what: "the image index" },
    );
  }

  /**
   * Records an image (its manifest must be stored) under the given
   * references. A reference already pointing elsewhere is moved; an image left
   * with no reference stays as an untagged entry, like Docker's <none>.
   */
  async addImage(
    manifest: Descriptor,
    refs: (string | ImageReference)[] = [],
    /** tagEvents false: a pull or a load names the image, which has its own event (Docker's). */
    options: { tagEvents?: boolean } = {},
  ): Promise<void> {
    if (!(await this.hasBlob(manifest.digest)))
      throw new BlobNotFoundError(manifest.digest, this.root);
    const names = refs.map((r) =>
      typeof r === "string" ? formatReference(parseReference(r)) : formatReference(r),
    );
    const plain: Descriptor = {
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.size,
    };
    if (manifest.platform) plain.platform = manifest.platform;
    await this.updateIndex((index) => {
      const movedAway: Descriptor[] = [];
      index.manifests = index.manifests.filter((d) => {
        const name = d.annotations?.[ANNOTATION_REF_NAME];
        if (name !== undefined && names.includes(name)) {
          if (d.digest !== manifest.digest) movedAway.push(d);
          return false;
        }
        // The untagged entry of this image goes when it gets a name.
        return !(name === undefined && d.digest === manifest.digest && names.length > 0);
      });
      for (const name of names) {
        index.manifests.push({ ...plain, annotations: { [ANNOTATION_REF_NAME]: name } });
      }
      if (!index.manifests.some((d) => d.digest === manifest.digest)) index.manifests.push(plain);
      // An image whose last name moved elsewhere stays, untagged.
      for (const old of movedAway) {
        if (!index.manifests.some((d) => d.digest === old.digest)) {
          const { annotations: _, ...untagged } = old;
          index.manifests.push(untagged);
        }
      }
    });
    if (this.onEvent && names.length && options.tagEvents !== false) {
      const id = await this.imageIdOf(manifest.digest);
      for (const name of names) this.onEvent("tag", id, { name });
    }
  }

  /** An image's id (its config's digest, as Docker's), read from its manifest. */
  private async imageIdOf(manifestDigest: string): Promise<string> {
    try {
      return (await this.readJson<{ config: Descriptor }>(manifestDigest, "manifest")).config
        .digest;
    } catch {
      return manifestDigest; // an index or an unreadable manifest: named by what there is
    }
  }

  /** Adds reference `target` to the image that `source` names. */
  async tag(source: string, target: string): Promise<void> {
    const image = await this.resolve(source);
    const ref = parseReference(target);
    if (ref.digest !== undefined)
      throw new InvalidReferenceError(target, "a tag cannot contain a digest");
    await this.addImage(
      {
        mediaType: image.manifest.mediaType ?? MediaType.ociManifest,
        digest: image.manifestDigest,
        size: (await stat(this.blobPath(image.manifestDigest))).size,
      },
      [ref],
    );
  }

  /** Removes one reference. The image stays (untagged) if nothing else names it. */
  async untag(reference: string): Promise<void> {
    const name = formatReference(parseReference(reference));
    let found = false;
    let untagged = "";
    await this.updateIndex((index) => {
      const entry = index.manifests.find((d) => d.annotations?.[ANNOTATION_REF_NAME] === name);
      if (!entry) return;
      found = true;
      index.manifests = index.manifests.filter((d) => d !== entry);
      if (!index.manifests.some((d) => d.digest === entry.digest)) {
        const { annotations: _, ...plain } = entry;
        index.manifests.push(plain);
      }
      untagged = entry.digest;
    });
    if (!found) throw new ImageNotFoundError(reference, this.root);
    if (this.onEvent && untagged) this.onEvent("untag", await this.imageIdOf(untagged), { name });
  }

  /**
   * Removes an image (every index entry of manifest `digest`, tagged or not).
   * Its blobs and layers stay until garbage collection. Returns the names it had.
   */
  async removeManifest(
    digest: string,
    /** events false: a build's intermediate image, never announced, goes without a `delete`. */
    options: { events?: boolean } = {},
  ): Promise<string[]> {
    const names: string[] = [];
    let found = false;
    await this.updateIndex((index) => {
      index.manifests = index.manifests.filter((d) => {
        if (d.digest !== digest) return true;
        found = true;
        const name = d.annotations?.[ANNOTATION_REF_NAME];
        if (name !== undefined) names.push(name);
        return false;
      });
    });
    if (!found) throw new ImageNotFoundError(digest, this.root);
    if (this.onEvent && options.events !== false) {
      const id = await this.imageIdOf(digest);
      for (const n of names) this.onEvent("untag", id, { name: n });
      this.onEvent("delete", id, {});
    }
    return names;
  }

  /** All images, one per manifest, with their names. */
  async listImages(): Promise<StoredImage[]> {
    const index = await this.readIndex();
    const byDigest = new Map<string, string[]>();
    for (const d of index.manifests) {
      const names = byDigest.get(d.digest) ?? [];
      const name = d.annotations?.[ANNOTATION_REF_NAME];
      if (name !== undefined) names.push(name);
      byDigest.set(d.digest, names);
    }
    const out: StoredImage[] = [];
    for (const [digest, names] of byDigest) {
      const desc = index.manifests.find((d) => d.digest === digest)!;
      out.push({ ...(await this.loadImage(desc)), names });
    }
    return out;
  }

  /**
   * Finds an image by reference (busybox, busybox:1, name@sha256:...), by
   * image ID or manifest digest (sha256:...), or by a unique ID prefix.
   */
  async resolve(input: string): Promise<StoredImage> {
    // The common case, a name: only that image is read, so a store of many images stays fast.
    const named = await this.resolveName(input);
    if (named) return named;
    const images = await this.listImages();
    if (/^sha256:[0-9a-f]{64}$/.test(input)) {
      const hit = images.find((i) => i.id === input || i.manifestDigest === input);
      if (hit) return hit;
      throw new ImageNotFoundError(input, this.root);
    }
    let ref: ImageReference | undefined;
    try {
      ref = parseReference(input);
    } catch (e) {
      if (!/^[0-9a-f]{1,64}$/.test(input)) throw e;
    }
    if (ref !== undefined) {
      if (ref.digest !== undefined) {
        const hit =
          images.find(
            (i) =>
              i.manifestDigest === ref.digest &&
              (i.names.some((n) => n.startsWith(`${ref.name}:`)) || ref.tag === undefined),
          ) ?? images.find((i) => i.manifestDigest === ref.digest);
        if (hit) return hit;
      } else {
        const full = formatReference(ref);
        const hit = images.find((i) => i.names.includes(full));
        if (hit) return hit;
      }
    }
    if (/^[0-9a-f]{1,64}$/.test(input)) {
      const matches = images.filter((i) => parseDigest(i.id).hex.startsWith(input));
      const ids = [...new Set(matches.map((m) => m.id))];
      if (ids.length === 1) return matches[0]!;
      if (ids.length > 1) throw new AmbiguousImageError(input, ids);
    }
    throw new ImageNotFoundError(input, this.root);
  }

  /** A reference by name (no digest) found in index.json; null when it is not one, or not there. */
  private async resolveName(input: string): Promise<StoredImage | null> {
    if (input.startsWith("sha256:")) return null;
    let full: string;
    try {
      const ref = parseReference(input);
      if (ref.digest !== undefined) return null;
      full = formatReference(ref);
    } catch {
      return null;
    }
    // The same name resolved again while index.json is the same file (it is only ever replaced
    // by a rename, so its inode and time change with every write): the image found then.
    // `pivot run` resolves its image twice, to pull it if missing and to create the container.
    let version = "";
    try {
      const st = statSync(join(this.root, "index.json"));
      version = `${st.ino}:${st.mtimeMs}:${st.ctimeMs}:${st.size}`;
    } catch {}
    const seen = this.resolved.get(full);
    if (version !== "" && seen?.version === version) return seen.image;
    const index = await this.readIndex();
    const named = index.manifests.find((d) => d.annotations?.[ANNOTATION_REF_NAME] === full);
    if (!named) return null;
    // As listImages: every name of that manifest, read through its first descriptor.
    const same = index.manifests.filter((d) => d.digest === named.digest);
    const names = same.flatMap((d) => {
      const name = d.annotations?.[ANNOTATION_REF_NAME];
      return name === undefined ? [] : [name];
    });
    const image = { ...(await this.loadImage(same[0]!)), names };
    if (version !== "") this.resolved.set(full, { version, image });
    return image;
  }

  /** Images found by name (resolveName), with the version of index.json they were read from. */
  private readonly resolved = new Map<string, { version: string; image: StoredImage }>();

  /** Reads the image a manifest (or index) descriptor describes, whether or not it is tagged. */
  async inspectManifest(desc: Descriptor): Promise<StoredImage> {
    return { ...(await this.loadImage(desc)), names: [] };
  }

  private async loadImage(desc: Descriptor): Promise<Omit<StoredImage, "names">> {
    let manifestDigest = desc.digest;
    let manifest = await this.readJson<ImageManifest & ImageIndex>(
      manifestDigest,
      "manifest",
      MAX_MANIFEST_SIZE,
    );
    if (
      isIndexMediaType(desc.mediaType) ||
      isIndexMediaType(manifest.mediaType) ||
      Array.isArray(manifest.manifests)
    ) {
      const chosen = selectPlatform(manifest.manifests, hostPlatform());
      if (!chosen) {
        throw new InvalidImageError(
          `image index ${desc.digest}`,
          `has no manifest for ${hostPlatform().os}/${hostPlatform().architecture}`,
          "load an image built for this machine's architecture",
        );
      }
      manifestDigest = chosen.digest;
      manifest = await this.readJson<ImageManifest & ImageIndex>(
        manifestDigest,
        "manifest",
        MAX_MANIFEST_SIZE,
      );
    }
    if (!manifest.config || !Array.isArray(manifest.layers)) {
      throw new InvalidImageError(`manifest ${manifestDigest}`, "has no config or layers");
    }
    const config = await this.readJson<ImageConfig>(manifest.config.digest, "image config");
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== manifest.layers.length) {
      throw new InvalidImageError(
        `image ${manifest.config.digest}`,
        `the manifest lists ${manifest.layers.length} layers but the config ${diffIds.length} diff_ids`,
      );
    }
    return {
      id: manifest.config.digest,
      manifestDigest,
      manifest,
      config,
      layers: manifest.layers.map((descriptor, i) => ({ descriptor, diffId: diffIds[i]! })),
    };
  }

  // ---- layers ----

  layerDir(diffId: string): string {
    const d = parseDigest(diffId);
    return join(this.root, "layers", d.algorithm, d.hex);
  }

  static linkName(diffId: string): string {
    return parseDigest(diffId).hex.slice(0, 16);
  }

  async hasLayer(diffId: string): Promise<boolean> {
    return existsSync(join(this.layerDir(diffId), "layer.json"));
  }

  async getLayer(diffId: string): Promise<LayerRecord> {
    const dir = this.layerDir(diffId);
    const meta = JSON.parse(readFileSync(join(dir, "layer.json"), "utf8")) as {
      size: number;
      opaqueDirs?: unknown;
      opaqueXattr?: unknown;
    };
    const link = ImageStore.linkName(diffId);
    this.ensureLink(diffId);
    const opaque = meta.opaqueDirs;
    return {
      diffId,
      diffPath: join(dir, "diff"),
      link,
      size: meta.size,
      // Recorded by the unpacker since session 7 (absent in layers unpacked before), under the
      // attribute it set: root's trusted.overlay.opaque, or user.overlay.opaque rootless, which
      // only an overlay mounted the same way honours. Another's record is no record.
      ...(Array.isArray(opaque) &&
      opaque.every((d) => typeof d === "string") &&
      meta.opaqueXattr === overlayOpaqueXattr()
        ? { opaqueDirs: opaque as string[] }
        : {}),
    };
  }

  /**
   * Makes sure the layer with `diffId` is unpacked, unpacking blob `digest`
   * (verified against diffId) if not. Concurrent callers, in this process or
   * others, unpack it once.
   */
  async ensureLayer(
    digest: string,
    diffId: string,
    mediaType?: string,
    archiveName?: string,
  ): Promise<LayerRecord> {
    if (await this.hasLayer(diffId)) return this.getLayer(diffId);
    const endWrite = this.beginWrite();
    return withFileLock(
      this.lockPath(`layer-${parseDigest(diffId).hex}`),
      async () => {
        if (await this.hasLayer(diffId)) return this.getLayer(diffId);
        const dir = this.layerDir(diffId);
        // A directory without layer.json cannot be produced by rename; remove anything odd.
        await rm(dir, { recursive: true, force: true });
        if (!(await this.hasBlob(digest))) throw new BlobNotFoundError(digest, this.root);
        await (await unpacker()).unpackLayer(this.blobPath(digest), dir, {
          archiveName: archiveName ?? `layer ${digest}`,
          diffId,
          digest,
          ...(mediaType ? { mediaType } : {}),
          subdir: "diff",
          finalize: async (temp: string, result: UnpackResult) => {
            await this.writeFileAtomic(
              join(temp, "layer.json"),
              `${JSON.stringify({ diffId, digest, size: result.size, compression: result.compression, ignoredXattrs: result.ignoredXattrs, opaqueDirs: result.opaqueDirs, opaqueXattr: overlayOpaqueXattr() })}\n`,
            );
          },
        });
        return this.getLayer(diffId);
      },
      { what: `layer ${diffId}` },
    ).finally(endWrite);
  }

  /**
   * Stores a layer blob that arrives as a stream (a registry download) and
   * unpacks it while it arrives: each chunk goes to a temporary blob file and
   * into the unpacker. Blob and layer appear only when the whole stream
   * matched `digest`, `size` and `diffId`; on any failure neither is kept,
   * and an error of the source itself (a network error, a digest mismatch
   * the source detected) is thrown as it is. A layer that is unpacked
   * already is not unpacked again; its blob is still stored.
   */
  async putLayerStream(
    source: AsyncIterable<Uint8Array>,
    expected: { digest: string; size?: number; diffId: string; mediaType?: string },
    archiveName?: string,
  ): Promise<LayerRecord> {
    const { digest } = expected;
    const what = archiveName ?? `layer ${digest}`;
    const endWrite = this.beginWrite();
    try {
      return await this.putLayerStreamNow(source, expected, what);
    } finally {
      endWrite();
    }
  }

  private async putLayerStreamNow(
    source: AsyncIterable<Uint8Array>,
    expected: { digest: string; size?: number; diffId: string; mediaType?: string },
    what: string,
  ): Promise<LayerRecord> {
    const { digest, diffId } = expected;
    const blobOnly = async () => {
      await this.putBlob(
        source,
        { digest, ...(expected.size !== undefined ? { size: expected.size } : {}) },
        what,
      );
      return this.getLayer(diffId);
    };
    if (await this.hasLayer(diffId)) return blobOnly();
    return withFileLock(
      this.lockPath(`layer-${parseDigest(diffId).hex}`),
      async () => {
        if (await this.hasLayer(diffId)) return blobOnly();
        const temp = join(this.root, "tmp", `blob-${process.pid}-${randomSuffix()}`);
        const digester = new Digester(parseDigest(digest).algorithm);
        const fh = await open(temp, "wx", 0o644);
        let sourceError: unknown;
        let ended = false;
        let draining = false;
        const it = source[Symbol.asyncIterator]();
        // Reads are serialized, so that every chunk is hashed once and in order,
        // whether the unpacker or the drain after a failed unpack takes it.
        let chain: Promise<unknown> = Promise.resolve();
        const read = (): Promise<IteratorResult<Uint8Array>> => {
          const next = chain.then(async () => {
            if (ended) return { done: true, value: undefined } as IteratorResult<Uint8Array>;
            let r: IteratorResult<Uint8Array>;
            try {
              r = await it.next();
            } catch (e) {
              sourceError ??= e;
              throw e;
            }
            if (r.done) {
              ended = true;
              return r;
            }
            digester.update(r.value);
            if (expected.size !== undefined && digester.size > expected.size) {
              sourceError ??= new DigestMismatchError(
                what,
                `${digest} of ${expected.size} bytes`,
                `more than ${expected.size} bytes`,
              );
              throw sourceError;
            }
            if (!draining) {
              let off = 0;
              while (off < r.value.length) {
                const { bytesWritten } = await fh.write(r.value, off, r.value.length - off);
                off += bytesWritten;
              }
            }
            return r;
          });
          chain = next.catch(() => {});
          return next;
        };
        let checked: { error: DigestMismatchError | undefined } | undefined;
        const check = () => {
          if (checked === undefined) {
            const actual = digester.digest();
            checked = {
              error:
                actual !== digest
                  ? new DigestMismatchError(what, digest, actual)
                  : expected.size !== undefined && digester.size !== expected.size
                    ? new DigestMismatchError(
                        what,
                        `${expected.size} bytes`,
                        `${digester.size} bytes`,
                      )
                    : undefined,
            };
          }
          return checked.error;
        };
        async function* teed(): AsyncGenerator<Uint8Array> {
          for (;;) {
            const r = await read();
            if (r.done) break;
            yield r.value;
          }
          sourceError ??= check();
          if (sourceError !== undefined) throw sourceError;
        }
        let blobStored = false;
        try {
          await rm(this.layerDir(diffId), { recursive: true, force: true });
          await (await unpacker()).unpackLayer(teed(), this.layerDir(diffId), {
            archiveName: what,
            diffId,
            digest,
            ...(expected.mediaType ? { mediaType: expected.mediaType } : {}),
            subdir: "diff",
            finalize: async (dir: string, r: UnpackResult) => {
              if (!ended) throw new Error("the layer stream was not read to its end");
              await fh.sync();
              await fh.close();
              await rename(temp, this.blobPath(digest));
              blobStored = true;
              await this.writeFileAtomic(
                join(dir, "layer.json"),
                `${JSON.stringify({ diffId, digest, size: r.size, compression: r.compression, ignoredXattrs: r.ignoredXattrs, opaqueDirs: r.opaqueDirs, opaqueXattr: overlayOpaqueXattr() })}\n`,
              );
            },
          });
        } catch (e) {
          if (sourceError !== undefined) throw sourceError;
          // The unpacker refused the content (corrupt gzip, bad tar). If the
          // bytes are not the ones announced, that is the better diagnosis:
          // read the rest (hashing only) and compare digests.
          if (!ended) {
            draining = true;
            try {
              while (!(await read()).done);
            } catch {
              throw sourceError ?? e;
            }
          }
          const mismatch = sourceError ?? check();
          if (mismatch !== undefined) {
            (mismatch as { cause?: unknown }).cause ??= e;
            throw mismatch;
          }
          throw e;
        } finally {
          if (!ended) await it.return?.()?.catch(() => {});
          await fh.close().catch(() => {});
          if (!blobStored) await unlink(temp).catch(() => {});
        }
        return this.getLayer(diffId);
      },
      { what: `layer ${diffId}` },
    );
  }

  /** Unpacks every layer of an image; returns them bottom first. */
  async ensureImageLayers(image: StoredImage): Promise<LayerRecord[]> {
    const out: LayerRecord[] = [];
    for (const [i, { descriptor, diffId }] of image.layers.entries()) {
      out.push(
        await this.ensureLayer(
          descriptor.digest,
          diffId,
          descriptor.mediaType,
          `image ${image.id} layer ${i + 1}/${image.layers.length} (${descriptor.digest})`,
        ),
      );
    }
    return out;
  }

  /**
   * Unpacks blob `digest` whose diff_id is not known beforehand (a tarball
   * being imported): the tree is built under a temporary name, then moved to
   * its diff_id's place unless that layer exists already.
   */
  async importLayer(
    digest: string,
    mediaType?: string,
    archiveName?: string,
  ): Promise<LayerRecord> {
    return this.writing(() => this.importLayerNow(digest, mediaType, archiveName));
  }

  private async importLayerNow(
    digest: string,
    mediaType?: string,
    archiveName?: string,
  ): Promise<LayerRecord> {
    const temp = join(this.root, "layers", "sha256", `import${process.pid}x${randomSuffix()}`);
    try {
      const result = await (await unpacker()).unpackLayer(this.blobPath(digest), temp, {
        archiveName: archiveName ?? `layer ${digest}`,
        digest,
        ...(mediaType ? { mediaType } : {}),
        subdir: "diff",
        finalize: async (dir: string, r: UnpackResult) => {
          await this.writeFileAtomic(
            join(dir, "layer.json"),
            `${JSON.stringify({ diffId: r.diffId, digest, size: r.size, compression: r.compression, ignoredXattrs: r.ignoredXattrs, opaqueDirs: r.opaqueDirs, opaqueXattr: overlayOpaqueXattr() })}\n`,
          );
        },
      });
      const diffId = result.diffId;
      return await withFileLock(
        this.lockPath(`layer-${parseDigest(diffId).hex}`),
        async () => {
          if (!(await this.hasLayer(diffId))) {
            await rm(this.layerDir(diffId), { recursive: true, force: true });
            await rename(temp, this.layerDir(diffId));
          }
          return this.getLayer(diffId);
        },
        { what: `layer ${diffId}` },
      );
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }

  /**
   * The init layer: one read-only layer shared by every container, mounted above the image's
   * layers, that holds the mount points the engine binds into each container (/etc/hostname,
   * /etc/hosts, /etc/resolv.conf, as empty files) and the directories the runtime mounts on
   * (/dev, /proc, /sys). Without it the runtime makes them in each container's upper directory at
   * every first start (a copy-up of /etc and three new files: ~1 ms on this host, as many to
   * remove, and entries in `diff`). Docker's overlay driver makes such a layer per container
   * ("-init"); its content is the same for every image, so a store has one. Made on first use,
   * whole (renamed into place); returns its path relative to the store root.
   */
  initLayer(): string {
    if (existsSync(join(this.root, INIT_LAYER))) return INIT_LAYER;
    this.prepareForWrites();
    const temp = join(this.root, "tmp", `init-${process.pid}-${randomSuffix()}`);
    try {
      // Modes set explicitly: under a umask of 077 the container's /etc would be root's alone.
      mkdirSync(temp);
      chmodSync(temp, 0o755);
      for (const d of INIT_LAYER_DIRS) {
        mkdirSync(join(temp, d));
        chmodSync(join(temp, d), 0o755);
      }
      for (const f of INIT_LAYER_FILES) {
        writeFileSync(join(temp, f), "");
        chmodSync(join(temp, f), 0o644);
      }
      renameSync(temp, join(this.root, INIT_LAYER));
    } catch (e) {
      rmSync(temp, { recursive: true, force: true });
      // Another process made it first.
      const code = (e as NodeJS.ErrnoException).code;
      if (!((code === "ENOTEMPTY" || code === "EEXIST") && existsSync(join(this.root, INIT_LAYER))))
        throw e;
    }
    return INIT_LAYER;
  }

  private ensureLink(diffId: string): void {
    const name = ImageStore.linkName(diffId);
    const path = join(this.root, "l", name);
    const target = join(
      "..",
      "layers",
      parseDigest(diffId).algorithm,
      parseDigest(diffId).hex,
      "diff",
    );
    let current: string;
    try {
      current = readlinkSync(path); // there already, for every layer but a new one
    } catch {
      try {
        symlinkSync(target, path);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // l/ removed by hand: opening the store no longer makes it (prepareForWrites does).
        if (code === "ENOENT") {
          this.prepareForWrites();
          symlinkSync(target, path);
          return;
        }
        if (code !== "EEXIST") throw e;
      }
      current = readlinkSync(path);
    }
    if (current !== target) {
      throw new InvalidImageError(
        path,
        `short link ${name} already points to ${current}, not ${target}`,
        "two layers share a 64-bit ID prefix; remove one of the images",
      );
    }
  }

  // ---- helpers ----

  lockPath(name: string): string {
    return join(this.root, "locks", `${name}.lock`);
  }

  /** Writes a file by temporary file, fsync and rename. */
  async writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
    const temp = `${path}.tmp-${process.pid}-${randomSuffix()}`;
    const fh = await open(temp, "wx", 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(temp, path);
    } catch (e) {
      await unlink(temp).catch(() => {});
      throw e;
    }
  }
}

/** Picks the manifest for `want` from an index (exact variant match preferred). */
export function selectPlatform(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const candidates = manifests.filter(
    (m) =>
      isManifestMediaType(m.mediaType) &&
      (!m.platform || (m.platform.os === want.os && m.platform.architecture === want.architecture)),
  );
  return candidates.find((m) => m.platform?.variant === want.variant) ?? candidates[0];
}

function randomSuffix(): string {
  return Math.random().toString(36).slice(2, 10);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The layer unpacker (tar, gzip and zstd), loaded when a layer is unpacked: a store that only
 * resolves images and finds their layers unpacked (`pivot run`) does not load it.
 */
function unpacker(): Promise<typeof import("./unpack.ts")> {
  return import("./unpack.ts");
}
