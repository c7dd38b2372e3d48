// The build cache's keys (the records are src/image/build-cache.ts's): a step's key is the sha256
// of its parent (the image id the step starts from, "scratch" for FROM scratch) and what the step
// does, as the classic `docker build` compares them: the instruction after build-arg substitution,
// RUN's command with the ARG values in its environment, the config change of ENV, LABEL, CMD...,
// and for COPY and ADD a digest of the sources' names, types, modes, sizes, contents and link
// targets (not their mtimes, nor their owners: they are copied as root's, or --chown's, which is
// in the key).
import type { Hash } from "node:crypto";
import { createHash } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { lstat, open, readlink } from "node:fs/promises";
import { join } from "node:path";
import { type ContextSource, type IgnoreRules, listTree } from "./context.ts";

/** Bumped when what a key covers changes: older records then simply miss. */
const KEY_VERSION = "pivot-build-cache/2";

/** The key of a step from PARENT doing PARTS (any JSON): 64 hex characters. */
export function stepKey(parent: string, parts: unknown[]): string {
  return createHash("sha256")
    .update(JSON.stringify([KEY_VERSION, parent, ...parts]))
    .digest("hex");
}

/**
 * A digest of what COPY or ADD would read of SOURCES (resolved in ROOT by resolveSources; a
 * directory with its tree as listTree lists it under IGNORE): each entry's path, type,
 * permission bits (setuid, setgid, sticky too), and its content (a file's bytes, a symlink's
 * target, a device's numbers; a second name of a file already listed in the same source, as tar
 * archives it, names the first). Nothing is followed: symlinks are read as links, and a file is
 * opened O_NOFOLLOW|O_NONBLOCK and read only when it is still the regular file lstat saw, so a
 * fifo, a device or a link swapped in is never read. Null when an entry changed while it was
 * read, or could not be read: such a step is not cached.
 */
export async function sourcesDigest(
  root: string,
  sources: ContextSource[],
  ignore: IgnoreRules,
): Promise<string | null> {
  const hash = createHash("sha256");
  for (const src of sources) {
    const names = src.kind === "dir" ? ["", ...listTree(root, src.rel, ignore)] : [""];
    const links = new Map<string, string>();
    hash.update(`${JSON.stringify(["source", src.rel, names.length])}\n`);
    for (const n of names) {
      const rel = n === "" ? src.rel : src.rel === "" ? n : `${src.rel}/${n}`;
      if (!(await entryDigest(hash, root, rel, n, links))) return null;
    }
  }
  return hash.digest("hex");
}

/** Feeds HASH the record of the entry ROOT/REL (NAME within its source); false: unstable. */
async function entryDigest(
  hash: Hash,
  root: string,
  rel: string,
  name: string,
  links: Map<string, string>,
): Promise<boolean> {
  const path = join(root, rel);
  const st = await lstat(path).catch(() => null);
  if (st === null) return false;
  const perm = (st.mode & 0o7777).toString(8);
  // One JSON line an entry: names and link targets may hold newlines, which joined as plain text
  // let a link's target and the next entry's name trade characters (the same key for two trees).
  const put = (...content: (string | number)[]) =>
    hash.update(`${JSON.stringify([name, typeOf(st), perm, ...content])}\n`);
  if (st.isSymbolicLink()) {
    // Its bytes (tar archives them): read as UTF-8, targets that are not would be alike.
    const target = await readlink(path, { encoding: "buffer" }).catch(() => null);
    if (target === null) return false;
    put(target.toString("hex"));
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    put(st.rdev);
  } else if (st.isFile()) {
    const id = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 ? links.get(id) : undefined;
    if (first !== undefined) {
      put("link", first);
      return true;
    }
    if (st.nlink > 1) links.set(id, name);
    const content = await fileDigest(path, st);
    if (content === null) return false;
    put(content);
  } else put();
  return true;
}

function typeOf(st: Stats): string {
  if (st.isDirectory()) return "dir";
  if (st.isFile()) return "file";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  return "other";
}

/** The size and sha256 of the regular file at PATH that lstat saw as ST (null: not it). */
async function fileDigest(path: string, st: Stats): Promise<string | null> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const now = await fh.stat();
    if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) return null;
    const h = createHash("sha256");
    const buf = new Uint8Array(1 << 20);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      h.update(buf.subarray(0, bytesRead));
    }
    return `${size}\0${h.digest("hex")}`;
  } finally {
    await fh.close();
  }
}
