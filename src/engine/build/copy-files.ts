// COPY and ADD's work in a build container's root: the destination made inside it (symlinks
// resolved inside), owners from --chown, --chmod, and ADD's archive detection (from the bytes
// copied).
import { chmod, lstat } from "node:fs/promises";
import { join } from "node:path";
import { kindAt, mkdirInRoot, readFileInRoot, resolveInRoot } from "../files.ts";
import { DockerfileError } from "./dockerfile.ts";

/**
 * --chown=USER[:GROUP]: ids, or names from the image's /etc/passwd and /etc/group (in ROOT).
 * Without a group the gid is the uid, as Docker documents; without --chown, root.
 */
export function chownIds(
  root: string,
  chown: string | undefined,
  where: string,
): { uid: number; gid: number } {
  if (chown === undefined) return { uid: 0, gid: 0 };
  const [u = "", g] = chown.split(":");
  const entry = (file: string, name: string): string[] | undefined =>
    readFileInRoot(root, file)
      ?.split("\n")
      .map((l) => l.split(":"))
      .find((f) => f[0] === name && /^\d+$/.test(f[2] ?? ""));
  const fail = (name: string, file: string): never => {
    throw new DockerfileError(`${where}: --chown=${chown}: no ${name} in the image's /${file}`, {
      hint: "give numeric ids (--chown=1000:1000), or a user the image has",
    });
  };
  const uid = /^\d+$/.test(u)
    ? Number(u)
    : u === ""
      ? 0
      : Number((entry("etc/passwd", u) ?? fail(u, "etc/passwd"))[2]);
  if (g === undefined || g === "") return { uid, gid: uid };
  const gid = /^\d+$/.test(g)
    ? Number(g)
    : Number((entry("etc/group", g) ?? fail(g, "etc/group"))[2]);
  return { uid, gid };
}

/** How many leading bytes isArchiveHead needs. */
export const ARCHIVE_HEAD = 262;

/** Whether a file starting with HEAD is a tar archive: gzip or zstd magic, or "ustar" at 257. */
export function isArchiveHead(head: Buffer): boolean {
  if (head.length >= 4 && head[0] === 0x1f && head[1] === 0x8b) return true;
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return true;
  return head.length >= 262 && head.subarray(257, 262).toString("latin1") === "ustar";
}

/** mkdir -p DEST in ROOT, symlinks on the way resolved inside it; the directory's host path. */
export function ensureDir(root: string, dest: string, where: string): string {
  const host = resolveInRoot(root, dest, true);
  mkdirInRoot(root, host.slice(root.length));
  if (kindAt(host) !== "dir")
    throw new DockerfileError(`${where}: ${dest} is not a directory in the image`, {
      hint: "copy to a directory, or give the destination without a trailing /",
    });
  return host;
}

/** --chmod: MODE (octal) on NAMES under DIR, symlinks left alone (their mode means nothing). */
export async function chmodTree(dir: string, names: string[], mode: string): Promise<void> {
  for (const n of names) {
    const p = join(dir, n);
    const st = await lstat(p).catch(() => null);
    if (st && !st.isSymbolicLink()) await chmod(p, Number.parseInt(mode, 8));
  }
}
