// Paths inside a container's root filesystem, resolved without ever following a symlink out onto
// the host: what create needs (/etc/passwd, the working directory), kept apart from files.ts's tar
// streams and layers so that `pivot run` does not load those (nor the image unpacker they use).
import {
  closeSync,
  constants,
  fstatSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  type Stats,
} from "node:fs";
import { join } from "node:path";
import { PivotError } from "../errors.ts";

export class FilesError extends PivotError {}

const MAX_SYMLINKS = 40;

/**
 * Resolves `path` (absolute, as the container sees it) to a host path under `root`, resolving
 * symlinks as the container would: absolute targets start again at `root`, `..` stops at `root`.
 * The last component is followed only with `followFinal`. Missing components are kept as given.
 */
export function resolveInRoot(root: string, path: string, followFinal = false): string {
  let todo = path.split("/").filter((p) => p !== "" && p !== ".");
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === "..") {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let st: Stats | null = null;
    try {
      st = lstatSync(host);
    } catch {}
    if (st?.isSymbolicLink() && (todo.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) throw new FilesError(`too many symlinks in ${path}`);
      const target = readlinkSync(host);
      if (target.startsWith("/")) done.length = 0;
      todo = [...target.split("/").filter((p) => p !== "" && p !== "."), ...todo];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** The kind of what is at a host path, not following a symlink there. */
export function kindAt(path: string): "dir" | "file" | "symlink" | "other" | null {
  try {
    const st = lstatSync(path);
    return st.isDirectory()
      ? "dir"
      : st.isSymbolicLink()
        ? "symlink"
        : st.isFile()
          ? "file"
          : "other";
  } catch {
    return null;
  }
}

// Image content is hostile input: these walk a path in a root filesystem without following any
// symlink (create reads /etc/passwd and makes the working directory with them).

/** Follows `rel` inside `root` without following symlinks; null if a component is a symlink or missing. */
export function pathInRoot(root: string, rel: string): string | null {
  let cur = root;
  for (const part of rel.split("/").filter((p) => p && p !== ".")) {
    if (part === "..") return null;
    cur = join(cur, part);
    try {
      if (lstatSync(cur).isSymbolicLink()) return null;
    } catch {
      return null;
    }
  }
  return cur;
}

/** The most readFileInRoot reads: /etc/passwd and /etc/group are small. */
const MAX_ETC_FILE = 16 << 20;

/**
 * A regular file in the root filesystem, read through file descriptors: each directory opened
 * O_NOFOLLOW below the one before (through /proc/self/fd), the file O_NOFOLLOW|O_NONBLOCK and
 * checked with fstat. A running container (`exec -u`) may swap a component for a symlink to the
 * host, or the file for a fifo or device, at any moment: a path checked first and opened after
 * would then read the host's file or hang.
 */
export function readFileInRoot(root: string, rel: string): string | undefined {
  const parts = rel.split("/").filter((p) => p && p !== ".");
  if (parts.length === 0 || parts.includes("..")) return undefined;
  const fds: number[] = [];
  try {
    fds.push(openSync(root, constants.O_RDONLY | constants.O_DIRECTORY));
    for (const part of parts.slice(0, -1)) {
      fds.push(
        openSync(
          `/proc/self/fd/${fds.at(-1)}/${part}`,
          constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW,
        ),
      );
    }
    const fd = openSync(
      `/proc/self/fd/${fds.at(-1)}/${parts.at(-1)}`,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
    fds.push(fd);
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_ETC_FILE) return undefined;
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString("utf8");
  } catch {
    return undefined;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** mkdir -p inside the root filesystem, stopping at a symlink (the runtime resolves it inside). */
export function mkdirInRoot(root: string, rel: string, uid = 0, gid = 0): void {
  let cur = root;
  for (const part of rel.split("/").filter((p) => p && p !== ".")) {
    if (part === "..") return;
    cur = join(cur, part);
    try {
      if (!lstatSync(cur).isDirectory()) return;
    } catch {
      mkdirSync(cur, { mode: 0o755 });
      lchownSync(cur, uid, gid);
    }
  }
}
