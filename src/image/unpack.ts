/**
 * Streaming, verifying, hostile-input-safe layer unpacking.
 *
 * The layer is unpacked into a fresh, empty directory that only this code
 * writes to, so an in-memory model of what was created so far is exact. Every
 * entry's path is cleaned (leading `/` dropped, `..` refused) and every parent
 * directory is checked against that model: a parent that is a symlink or a
 * non-directory is refused, so nothing is ever written through a symlink and
 * nothing lands outside the layer directory. Final components are created with
 * O_CREAT|O_EXCL|O_NOFOLLOW (or mkdir/symlink/link/mknod, which never follow a
 * final symlink) after whatever was there is removed.
 *
 * OCI whiteouts become OverlayFS's: `.wh.NAME` a 0/0 character device NAME,
 * `.wh..wh..opq` the trusted.overlay.opaque=y xattr on its directory.
 */
import { constants, createReadStream } from "node:fs";
import { basename, dirname, join } from "node:path";
import { pipeline, type Readable, type Transform } from "node:stream";
import * as zlib from "node:zlib";
import { inUserNamespace } from "../runtime/userns.ts";
import {
  chmod,
  chown,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  rename,
  rm,
  symlink,
  utimes,
} from "../util/fs-async.ts";
import { startupOver } from "../util/jit.ts";
import { Digester } from "./digest.ts";
import { DigestMismatchError, ImageError, LayerUnpackError } from "./errors.ts";
import { lsetxattr, mknod } from "./helpers.ts";
import { type TarEntry, TarFormatError, TarReader } from "./tar.ts";
import { overlayOpaqueXattr } from "./xattr.ts";

export const WHITEOUT_PREFIX = ".wh.";
export const WHITEOUT_OPAQUE = ".wh..wh..opq";
export const OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque";

export { overlayOpaqueXattr } from "./xattr.ts";

export type Compression = "gzip" | "zstd" | "none";

export interface UnpackOptions {
  /** How the archive is named in errors (a path, or `image X layer N`). */
  archiveName?: string;
  /** Expected digest of the uncompressed tar (the layer's diff_id). */
  diffId?: string;
  /** Expected digest of the archive as given (compressed). */
  digest?: string;
  /** OCI/Docker layer media type; checked against the detected compression. */
  mediaType?: string;
  /**
   * Called with the temporary directory after a successful unpack, before it
   * is renamed into place (to add metadata beside the unpacked tree).
   */
  finalize?: (tempDir: string, result: UnpackResult) => Promise<void>;
  /**
   * Put the tree in this subdirectory of the destination (e.g. "diff"), so
   * that metadata can sit beside it and the whole appears at once.
   */
  subdir?: string;
  /**
   * Whether `.wh.` names are whiteouts and opaque markers (a layer; the default). False for plain
   * files (`pivot cp`), where such a name is a file like any other and must not delete one beside it.
   */
  whiteouts?: boolean;
  /**
   * Whether device nodes, setuid/setgid bits and file capabilities are kept (the default). False
   * where a container's files land on the host (`pivot cp` out): there they would grant what the
   * container's author chose (a world-writable disk, a setuid-root shell), so device nodes are
   * left out, the bits cleared and security.capability dropped.
   */
  privileges?: boolean;
  /**
   * Every entry's owner instead of the archive's (moby's ChownOpts): `pivot cp` out gives the
   * copied files to the user who runs it, `pivot cp -a` in to the container's user.
   */
  owner?: { uid: number; gid: number };
}

export interface UnpackResult {
  /** sha256 of the uncompressed tar stream. */
  diffId: string;
  /** sha256 of the archive as read. */
  digest: string;
  compression: Compression;
  /** Bytes of the uncompressed tar stream. */
  size: number;
  /** Bytes of the archive as read. */
  compressedSize: number;
  entries: number;
  /** Extended attributes present in the layer but not applied (e.g. trusted.*). */
  ignoredXattrs: string[];
  /**
   * The directories made opaque (`.wh..wh..opq`), relative to the layer's root ("" for the root
   * itself), as the layer ends: reading the layer unmounted needs them, and Node has no getxattr.
   */
  opaqueDirs: string[];
}

/**
 * Unpacks a layer archive (gzip, zstd or uncompressed tar) into `dest`, which
 * must not exist. The tree is built in a temporary sibling directory and
 * renamed to `dest` only when everything, digests included, checked out; on
 * any failure the temporary directory is removed and a LayerUnpackError
 * naming the archive and entry is thrown.
 */
export async function unpackLayer(
  source: string | AsyncIterable<Uint8Array>,
  dest: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  startupOver(); // long work in JavaScript: the compiled binary's normal JIT policy
  const archive = options.archiveName ?? (typeof source === "string" ? source : "<stream>");
  const temp = join(
    dirname(dest),
    `.tmp-${basename(dest)}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`,
  );
  await mkdir(temp, { mode: 0o700 });
  try {
    const tree = options.subdir ? join(temp, options.subdir) : temp;
    if (options.subdir) await mkdir(tree, { mode: 0o755 });
    const result = await applyLayer(source, tree, { ...options, archiveName: archive });
    if (options.finalize) await options.finalize(temp, result);
    try {
      await rename(temp, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        throw new LayerUnpackError(archive, undefined, `destination ${dest} already exists`, {
          hint: "another process unpacked the same layer; use the existing one",
          cause: e,
        });
      }
      throw e;
    }
    return result;
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Applies a layer archive to the existing, empty directory `dir`. On failure
 * the directory is left as it is: callers use unpackLayer, which removes it.
 */
export async function applyLayer(
  source: string | AsyncIterable<Uint8Array>,
  dir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const archive = options.archiveName ?? (typeof source === "string" ? source : "<stream>");
  const fail = (
    entry: string | undefined,
    reason: string,
    extra: { hint?: string; cause?: unknown } = {},
  ) => new LayerUnpackError(archive, entry, reason, extra);

  const compressed = new Digester();
  const uncompressed = new Digester();
  const streams: (Readable | Transform)[] = [];
  let compression: Compression = "none";
  let applier: Applier | undefined;
  try {
    let raw: AsyncIterable<Uint8Array>;
    if (typeof source === "string") {
      const rs = createReadStream(source, { highWaterMark: 256 << 10 });
      streams.push(rs);
      raw = rs;
    } else {
      raw = source;
    }
    const peeked = await peek(tap(raw, compressed), 6);
    compression = detectCompression(peeked.head);
    checkMediaType(options.mediaType, compression, fail);
    const tarStream = tap(decompress(peeked.stream, compression, streams), uncompressed);
    const reader = new TarReader(tarStream);
    applier = new Applier(dir, archive, {
      whiteouts: options.whiteouts ?? true,
      privileges: options.privileges ?? true,
      ...(options.owner ? { owner: options.owner } : {}),
    });
    for (;;) {
      const entry = await reader.next();
      if (entry === null) break;
      await applier.apply(entry, reader);
    }
    await reader.drain();
    await applier.finish();
  } catch (e) {
    if (e instanceof LayerUnpackError) throw e;
    if (e instanceof TarFormatError)
      throw fail(e.entry ?? applier?.currentEntry, e.message, { cause: e });
    if (e instanceof ImageError)
      throw fail(applier?.currentEntry, e.message.split("\n")[0]!, { hint: e.hint, cause: e });
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === "string" && err.code.startsWith("Z_")) {
      throw fail(
        applier?.currentEntry,
        `${compression} stream is corrupt or truncated (${err.message})`,
        { cause: e },
      );
    }
    // In a user namespace (rootless), an owner the namespace does not map cannot be set.
    if (err.code === "EINVAL" && err.syscall?.endsWith("chown") && inUserNamespace()) {
      throw fail(
        applier?.currentEntry,
        "its owner is beyond the ids this user namespace maps (root and your /etc/subuid range)",
        {
          hint: "as root, give the user a larger range in /etc/subuid and /etc/subgid (65536 ids cover most images)",
          cause: e,
        },
      );
    }
    if (err.code === "ENOSPC") {
      throw fail(applier?.currentEntry, "no space left on the device", {
        hint: "free disk space and try again",
        cause: e,
      });
    }
    throw fail(applier?.currentEntry, err.message ?? String(e), { cause: e });
  } finally {
    for (const s of streams) s.destroy();
  }
  const result: UnpackResult = {
    diffId: uncompressed.digest(),
    digest: compressed.digest(),
    compression,
    size: uncompressed.size,
    compressedSize: compressed.size,
    entries: applier.count,
    ignoredXattrs: [...applier.ignoredXattrs],
    opaqueDirs: await applier.opaqueDirs(),
  };
  if (options.digest !== undefined && options.digest !== result.digest) {
    throw fail(
      undefined,
      new DigestMismatchError("archive", options.digest, result.digest).message.split("\n")[0]!,
    );
  }
  if (options.diffId !== undefined && options.diffId !== result.diffId) {
    throw fail(
      undefined,
      `diff_id mismatch: the image config says ${options.diffId}, the uncompressed layer is ${result.diffId}`,
    );
  }
  return result;
}

async function* tap(
  source: AsyncIterable<Uint8Array>,
  digester: Digester,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    digester.update(chunk);
    yield chunk;
  }
}

/** Reads at least n bytes (or all there is) and returns them plus a stream that replays them. */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Buffer; stream: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const first: Uint8Array[] = [];
  let have = 0;
  let done = false;
  while (have < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    first.push(r.value);
    have += r.value.length;
  }
  const head = Buffer.concat(first);
  async function* replay(): AsyncGenerator<Uint8Array> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, stream: replay() };
}

export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) {
    throw new ImageError("bzip2-compressed layers are not supported", {
      hint: "recompress the layer with gzip or zstd",
    });
  }
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58) {
    throw new ImageError("xz-compressed layers are not supported", {
      hint: "recompress the layer with gzip or zstd",
    });
  }
  return "none";
}

function checkMediaType(
  mediaType: string | undefined,
  compression: Compression,
  fail: (entry: string | undefined, reason: string) => Error,
): void {
  if (mediaType === undefined) return;
  const says: Compression | undefined = /gzip/.test(mediaType)
    ? "gzip"
    : /zstd/.test(mediaType)
      ? "zstd"
      : /tar$/.test(mediaType)
        ? "none"
        : undefined;
  // Docker's media type for layers says gzip even for uncompressed ones that
  // docker save writes, so only a contradiction between two compressions counts.
  if (says !== undefined && says !== "none" && compression !== "none" && says !== compression) {
    throw fail(undefined, `media type ${mediaType} says ${says} but the data is ${compression}`);
  }
}

function decompress(
  source: AsyncIterable<Uint8Array>,
  compression: Compression,
  streams: (Readable | Transform)[],
): AsyncIterable<Uint8Array> {
  if (compression === "none") return source;
  let transform: Transform;
  if (compression === "gzip") {
    transform = zlib.createGunzip({ chunkSize: 128 << 10 });
  } else {
    const create = (zlib as unknown as { createZstdDecompress?: () => Transform })
      .createZstdDecompress;
    if (typeof create !== "function") {
      throw new ImageError(
        `zstd-compressed layers need a runtime whose node:zlib has zstd (Node >= 22.15 or Bun); this is Node ${process.versions.node}`,
        { hint: "run pivot with a newer Node or with Bun, or use gzip layers" },
      );
    }
    transform = create();
  }
  streams.push(transform);
  // pipeline() wires errors both ways: a failing source destroys the transform
  // with its error, which the consumer's iteration then throws.
  pipeline(
    (async function* () {
      yield* source;
    })(),
    transform,
    () => {},
  );
  return transform;
}

type Kind = "dir" | "file" | "symlink" | "other";

/** Cleans a member name: drops leading `/`, `.` components; refuses `..` and NUL. */
export function cleanPath(name: string): string {
  if (name.includes("\0")) throw new Error("name contains a NUL byte");
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new Error("name contains a '..' component");
    }
    parts.push(part);
  }
  return parts.join("/");
}

const ALLOWED_XATTR = /^(user\.|security\.capability$|system\.posix_acl_(access|default)$)/;
/**
 * overlayfs's own attributes (trusted.overlay.* rootful, user.overlay.* under the rootless mount's
 * userxattr) and fuse-overlayfs's (user.fuseoverlayfs.*): from a layer they would make directories
 * opaque, files whiteouts, lookups redirected, so they are never applied (containers/storage drops
 * them too). Opaque directories come only from `.wh..wh..opq` entries.
 */
const OVERLAY_XATTR = /^(trusted\.overlay\.|user\.overlay\.|user\.fuseoverlayfs\.)/;

class Applier {
  readonly dir: string;
  readonly archive: string;
  /** Relative path → kind of everything created so far ("" is the root). */
  private readonly model = new Map<string, Kind>([["", "dir"]]);
  /** Directory times to set at the end, deepest first (children change them). */
  private readonly dirTimes = new Map<string, [number, number]>();
  readonly ignoredXattrs = new Set<string>();
  /** Device nodes left out (rootless, or privileges not kept): links to them are left out too. */
  private readonly skipped = new Set<string>();
  /** Directories given the opaque marker, by relative path (forgotten when removed). */
  private readonly opaque = new Set<string>();
  count = 0;
  currentEntry: string | undefined;

  constructor(
    dir: string,
    archive: string,
    private readonly keep: {
      whiteouts: boolean;
      privileges: boolean;
      owner?: { uid: number; gid: number };
    } = {
      whiteouts: true,
      privileges: true,
    },
  ) {
    this.dir = dir;
    this.archive = archive;
  }

  private fail(reason: string, hint?: string, cause?: unknown): LayerUnpackError {
    return new LayerUnpackError(this.archive, this.currentEntry, reason, {
      ...(hint ? { hint } : {}),
      cause,
    });
  }

  private abs(rel: string): string {
    return rel === "" ? this.dir : join(this.dir, rel);
  }

  async apply(archived: TarEntry, reader: TarReader): Promise<void> {
    const owner = this.keep.owner;
    const entry = owner ? { ...archived, uid: owner.uid, gid: owner.gid } : archived;
    this.currentEntry = entry.path;
    this.count++;
    let rel: string;
    try {
      rel = cleanPath(entry.path);
    } catch (e) {
      throw this.fail((e as Error).message, "a layer must never reach outside its own directory");
    }
    const name = rel.slice(rel.lastIndexOf("/") + 1);
    const parent = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";

    if (this.keep.whiteouts && name.startsWith(WHITEOUT_PREFIX)) {
      await this.ensureParents(rel);
      if (name === WHITEOUT_OPAQUE) {
        await lsetxattr(this.abs(parent), overlayOpaqueXattr(), Buffer.from("y"));
        this.opaque.add(parent);
        return;
      }
      if (name.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // aufs metadata
      const target = name.slice(WHITEOUT_PREFIX.length);
      if (target === "" || target === "." || target === "..") {
        throw this.fail("whiteout names no file");
      }
      const rt = parent === "" ? target : `${parent}/${target}`;
      await this.removeExisting(rt);
      await mknod(this.abs(rt), "c", 0, 0, 0);
      await lchown(this.abs(rt), entry.uid, entry.gid);
      this.model.set(rt, "other");
      return;
    }

    if (rel === "") {
      if (entry.type !== "directory") throw this.fail("the archive root is not a directory");
      await this.applyDirMeta("", entry);
      return;
    }

    await this.ensureParents(rel);
    const existing = this.model.get(rel);
    if (entry.type === "directory" && existing === "dir") {
      await this.applyDirMeta(rel, entry);
      return;
    }
    if (existing !== undefined) await this.removeExisting(rel);
    const path = this.abs(rel);

    switch (entry.type) {
      case "directory":
        await mkdir(path, { mode: 0o700 });
        this.model.set(rel, "dir");
        await this.applyDirMeta(rel, entry);
        return;
      case "file": {
        const fh = await open(
          path,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        this.model.set(rel, "file");
        try {
          for await (const chunk of reader.body()) {
            let off = 0;
            while (off < chunk.length) {
              const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
              off += bytesWritten;
            }
          }
          await fh.chown(entry.uid, entry.gid);
          await fh.chmod(this.keep.privileges ? entry.mode : entry.mode & ~0o6000);
        } finally {
          await fh.close();
        }
        break;
      }
      case "symlink":
        if (entry.linkname === "") throw this.fail("symlink has an empty target");
        await symlink(entry.linkname, path);
        this.model.set(rel, "symlink");
        await lchown(path, entry.uid, entry.gid);
        break;
      case "hardlink": {
        let target: string;
        try {
          target = cleanPath(entry.linkname);
        } catch (e) {
          throw this.fail(
            `hardlink target ${JSON.stringify(entry.linkname)}: ${(e as Error).message}`,
            "a layer must never reach outside its own directory",
          );
        }
        if (this.skipped.has(target)) return; // a link to a device node left out
        const kind = this.model.get(target);
        if (kind === undefined || target === "") {
          throw this.fail(
            `hardlink target ${JSON.stringify(entry.linkname)} is not an earlier entry of this layer`,
          );
        }
        if (kind === "dir")
          throw this.fail(`hardlink target ${JSON.stringify(entry.linkname)} is a directory`);
        // link(2) does not follow a symlink target: linking to a symlink links the symlink itself.
        await link(this.abs(target), path);
        this.model.set(rel, kind);
        return; // the inode already has its metadata
      }
      case "chardev":
      case "blockdev":
      case "fifo":
        // In a user namespace (rootless) the kernel refuses device nodes: they are left out,
        // as podman does; a container gets its /dev from the runtime anyway.
        if (entry.type !== "fifo" && (inUserNamespace() || !this.keep.privileges)) {
          this.skipped.add(rel);
          return;
        }
        await mknod(
          path,
          entry.type === "fifo" ? "p" : entry.type === "chardev" ? "c" : "b",
          entry.mode,
          entry.devmajor,
          entry.devminor,
        );
        this.model.set(rel, "other");
        await lchown(path, entry.uid, entry.gid);
        await chmod(path, entry.mode);
        break;
    }
    await this.applyXattrs(rel, entry);
    await lutimes(path, entry.atime ?? entry.mtime, entry.mtime);
  }

  /** Creates missing parents of `rel` as plain directories; refuses non-directory parents. */
  private async ensureParents(rel: string): Promise<void> {
    const parts = rel.split("/");
    let cur = "";
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur === "" ? parts[i]! : `${cur}/${parts[i]}`;
      const kind = this.model.get(cur);
      if (kind === "dir") continue;
      if (kind === undefined) {
        await mkdir(this.abs(cur), { mode: 0o755 });
        this.model.set(cur, "dir");
        continue;
      }
      throw this.fail(
        `parent ${JSON.stringify(cur)} is ${kind === "symlink" ? "a symlink" : "not a directory"}; writing beneath it is refused`,
        "a layer must not write through symlinks or non-directories",
      );
    }
  }

  /** Removes what an earlier entry created at `rel` (recursively for directories). */
  private async removeExisting(rel: string): Promise<void> {
    const kind = this.model.get(rel);
    if (kind === undefined) return;
    // rm never follows symlinks, neither the final one nor inside the tree.
    await rm(this.abs(rel), { recursive: kind === "dir", force: true });
    this.model.delete(rel);
    this.opaque.delete(rel); // a directory made again later is a new one, without the marker
    if (kind === "dir") {
      const prefix = `${rel}/`;
      for (const key of this.model.keys()) if (key.startsWith(prefix)) this.model.delete(key);
      for (const key of this.opaque) if (key.startsWith(prefix)) this.opaque.delete(key);
      for (const key of this.dirTimes.keys()) if (key.startsWith(prefix)) this.dirTimes.delete(key);
      this.dirTimes.delete(rel);
    }
  }

  private async applyDirMeta(rel: string, entry: TarEntry): Promise<void> {
    const path = this.abs(rel);
    await chown(path, entry.uid, entry.gid);
    await chmod(path, entry.mode);
    await this.applyXattrs(rel, entry);
    this.dirTimes.set(rel, [entry.atime ?? entry.mtime, entry.mtime]);
  }

  private async applyXattrs(rel: string, entry: TarEntry): Promise<void> {
    for (const [name, value] of entry.xattrs) {
      if (name === "security.capability" && !this.keep.privileges) {
        this.ignoredXattrs.add(name);
        continue;
      }
      if (!ALLOWED_XATTR.test(name) || OVERLAY_XATTR.test(name)) {
        this.ignoredXattrs.add(name);
        continue;
      }
      try {
        await lsetxattr(this.abs(rel), name, value);
      } catch (e) {
        // user.* cannot be set on symlinks and device nodes; report rather than fail.
        if (name.startsWith("user.") && entry.type !== "file" && entry.type !== "directory") {
          this.ignoredXattrs.add(name);
          continue;
        }
        throw e;
      }
    }
  }

  /**
   * The opaque directories as the layer ends: every marked one that no later entry removed (a
   * directory made again is a new one, without the marker; removeExisting forgets them), and
   * still a directory.
   */
  async opaqueDirs(): Promise<string[]> {
    const out: string[] = [];
    for (const rel of this.opaque) {
      const st = await lstat(this.abs(rel)).catch(() => null);
      if (st?.isDirectory()) out.push(rel);
    }
    return out.sort();
  }

  async finish(): Promise<void> {
    this.currentEntry = undefined;
    const dirs = [...this.dirTimes.entries()].sort(
      (a, b) => b[0].split("/").length - a[0].split("/").length,
    );
    for (const [rel, [atime, mtime]] of dirs) {
      if (this.model.get(rel) === "dir") await utimes(this.abs(rel), atime, mtime);
    }
  }
}
