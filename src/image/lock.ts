/**
 * Advisory locks between processes (a lock file holding the owner's PID, created with O_EXCL,
 * which fails if the path exists; a lock whose owner is dead is taken over) and
 * within one process (a promise chain per path, so callers in one process queue without
 * polling).
 */
import {
  closeSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { link, readFile, rename, unlink } from "../util/fs-async.ts";

const inProcess = new Map<string, Promise<unknown>>();
/** Lock paths whose leftovers this process has already looked for. */
const swept = new Set<string>();

export interface LockOptions {
  /** Give up after this long (default 10 minutes). */
  timeoutMs?: number;
  /** What is being locked, for the timeout error. */
  what?: string;
}

export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const previous = inProcess.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => {
    release = resolve;
  });
  const chained = previous.then(() => mine);
  inProcess.set(lockPath, chained);
  try {
    await previous.catch(() => {});
    await acquire(lockPath, options);
    try {
      return await fn();
    } finally {
      try {
        unlinkSync(lockPath);
      } catch {}
    }
  } finally {
    release();
    if (inProcess.get(lockPath) === chained) inProcess.delete(lockPath);
  }
}

async function acquire(lockPath: string, options: LockOptions): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
  let delay = 10;
  if (!swept.has(lockPath)) {
    swept.add(lockPath);
    removeLeftovers(lockPath);
  }
  for (;;) {
    if (tryCreate(lockPath)) return;
    await breakIfStale(lockPath);
    if (Date.now() > deadline) {
      const owner = await readFile(lockPath, "utf8").catch(() => "?");
      throw new Error(
        `timed out waiting for the lock on ${options.what ?? lockPath} (${lockPath}, held by PID ${owner.trim()})\n  hint: if no other pivot process is running, remove ${lockPath}`,
      );
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

/**
 * Takes the lock if it is free: the lock file is created exclusively (O_EXCL) and the PID written
 * into it. One file operation, where writing a private file and linking it into place took three
 * (each 0.2-1 ms on an ext4 under load, and `pivot run` takes two locks). A process killed between
 * the create and the write leaves an empty lock, which breakIfStale takes over once it is
 * EMPTY_LOCK_STALE_MS old (one stopped there that long, e.g. by Ctrl-Z in that microsecond, loses
 * its lock: the price of one file operation instead of three). Synchronous: node:fs/promises would send each call through its thread
 * pool (~0.1 ms apiece here).
 */
function tryCreate(lockPath: string): boolean {
  let fd: number;
  try {
    fd = openSync(lockPath, "wx", 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } catch (e) {
    // Ours, and empty: not left for others to wait out.
    try {
      unlinkSync(lockPath);
    } catch {}
    throw e;
  } finally {
    closeSync(fd);
  }
  return true;
}

/** An empty lock file, as older versions could leave when killed, is stale after this long. */
const EMPTY_LOCK_STALE_MS = 2000;

/** Removes a lock file whose owner process no longer exists. */
export async function breakIfStale(
  lockPath: string,
  /** Tests only: runs between the judgement and the move, where another process may act. */
  beforeMove?: () => void,
): Promise<void> {
  // The lock judged: its text and its identity (inode and modification time), read from one open
  // file, so that what is moved aside below can be told from a lock taken since.
  let judged: { text: string; id: string; mtimeMs: number };
  try {
    judged = readLockFile(lockPath);
  } catch {
    return;
  }
  const { text } = judged;
  const pid = Number.parseInt(text, 10);
  if (text === "") {
    if (Date.now() - judged.mtimeMs < EMPTY_LOCK_STALE_MS) return;
  } else if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) {
    return;
  }
  // Move it aside first so that two processes breaking the same stale lock do
  // not remove a fresh lock the other one just took.
  const aside = `${lockPath}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  beforeMove?.();
  try {
    await rename(lockPath, aside);
  } catch {
    return;
  }
  let moved: { text: string; id: string } | null = null;
  try {
    moved = readLockFile(aside);
  } catch {}
  if (moved?.id !== judged.id || moved.text !== judged.text) {
    // We moved someone's fresh lock (an empty one reads like the stale one did: the identity
    // tells them apart; a freed inode reused within the clock tick of the stale lock's write
    // reads like the stale one's: its text tells them apart): put it back unless somebody took
    // the path since.
    await link(aside, lockPath).catch(() => {});
    await unlink(aside).catch(() => {});
    return;
  }
  await unlink(aside).catch(() => {});
  // Its owner died: it may have died between writing its private file and unlinking it too.
  removeLeftovers(lockPath);
}

/** A lock file's text and identity (inode, modification time in ns), from one open file. */
function readLockFile(path: string): { text: string; id: string; mtimeMs: number } {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd, { bigint: true });
    const buf = Buffer.alloc(64);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return {
      text: buf.subarray(0, n).toString("utf8"),
      id: `${st.dev}:${st.ino}:${st.mtimeNs}`,
      mtimeMs: Number(st.mtimeNs / 1_000_000n),
    };
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes the private files of dead processes next to a lock: `LOCK.stale-PID-RAND` (breakIfStale's)
 * and `LOCK.PID-RAND` (left by earlier versions, which linked such a file into place).
 * A live process's are kept: it may be about to link or read it.
 */
function removeLeftovers(lockPath: string): void {
  const dir = dirname(lockPath);
  const base = basename(lockPath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(`${base}.`)) continue;
    const m = /^(?:stale-)?(\d+)-[0-9a-z]+$/.exec(name.slice(base.length + 1));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid <= 0 || pid === process.pid || isAlive(pid)) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {}
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie answers kill(0) until its parent reaps it, which an orphan's new parent (a PID 1
  // that does not reap promptly) may never do: it holds nothing any more.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return true; // no /proc to ask: trust kill(0)
  }
}
