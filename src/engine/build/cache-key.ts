// The build cache's keys (the records are src/image/build-cache.ts's): a step's key is the sha256
// of its parent (the image id the step starts from, "scratch" for FROM scratch) and what the step
// does, as the classic `docker build` compares them: the instruction after build-arg substitution,
// RUN's command with the ARG values in its environment, the config change of ENV, LABEL, CMD...,
// and for COPY and ADD a digest of the tar streams that are applied (names, types, modes, sizes,
// contents, link targets and hard links as archived; not mtimes, nor owners: they are copied as
// root's, or --chown's, which is in the key).
import { createHash } from "node:crypto";
import type { MemberHeader, TarObserver } from "./context-tar.ts";

/** Bumped when what a key covers changes: older records then simply miss. */
const KEY_VERSION = "pivot-build-cache/3";

/** The key of a step from PARENT doing PARTS (any JSON): 64 hex characters. */
export function stepKey(parent: string, parts: unknown[]): string {
  return createHash("sha256")
    .update(JSON.stringify([KEY_VERSION, parent, ...parts]))
    .digest("hex");
}

const TYPES: Record<MemberHeader["type"], string> = {
  "0": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

/**
 * The digest of what COPY or ADD applies, fed by the tar writer (descriptorTar's observer) with
 * the very members and bytes it archives, so the key is that of the content copied, never of a
 * second read: each source's path, then per member its name, type, permission bits (setuid,
 * setgid, sticky too), size, link target's bytes (a symlink's, or the first name of a hard link),
 * device numbers, then its content. mtimes and owners are left out.
 */
export class ContentDigest implements TarObserver {
  private readonly hash = createHash("sha256");

  /** A source of the step begins (its path as resolved, and its kind). */
  source(rel: string, kind: string): void {
    this.line(["source", rel, kind]);
  }

  member(m: MemberHeader): void {
    // One JSON line a member, then exactly SIZE bytes of content: names and link targets with
    // newlines cannot make two trees read alike.
    this.line([
      m.name,
      TYPES[m.type],
      (m.mode & 0o7777).toString(8),
      m.size,
      m.linkname?.toString("hex") ?? null,
      m.devmajor ?? null,
      m.devminor ?? null,
    ]);
  }

  data(chunk: Uint8Array): void {
    this.hash.update(chunk);
  }

  /** The digest (64 hex); the object is spent. */
  digest(): string {
    return this.hash.digest("hex");
  }

  private line(fields: unknown[]): void {
    this.hash.update(`${JSON.stringify(fields)}\n`);
  }
}
