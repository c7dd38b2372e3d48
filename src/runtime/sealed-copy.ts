// The sealed copy of the launcher a process keeps, so that its later launchers start from it.
import { closeSync, fstatSync, openSync, statSync } from "node:fs";

/**
 * A sealed copy of the launcher that this process holds. Every launcher runs from a sealed memfd
 * copy of itself (CVE-2019-5736; run_from_sealed_copy in native/launcher.c) and makes one unless
 * its binary already is one: a launcher started from this copy skips that exec (~1.2 ms of a
 * launcher's start). From a process's second launcher on, a launcher is asked for the device,
 * inode and seals of its copy (Op.ReportSealedCopy); its /proc/PID/exe is then opened and kept
 * only if it is that very file (a pid another process has taken meanwhile yields nothing) and the
 * copy carries F_SEAL_EXEC: a copy shared by launchers must not have its mode changed by a
 * container that reaches it through /proc/PID/exe (Linux 6.3+; older kernels: no shared copy).
 * Used while the launcher's file is the one that launcher was started from and the fd still is
 * that copy, and only where the new launcher's stdio slots do not cover the fd's number.
 */
interface SealedCopy {
  path: string;
  /** The launcher file's identity when the launcher that made the copy was started. */
  fileId: string;
  fd: number;
  dev: bigint;
  ino: bigint;
}
let sealedCopy: SealedCopy | undefined;
/** Launchers this process has started: a copy is kept from the second on (a command that starts
 *  one launcher, as most CLI commands do, would keep it for nothing: ~0.35 ms cold). */
let launchersStarted = 0;

/**
 * A launcher from `path` is being started: its file's identity, where a copy is held or may be
 * kept (null for a process's first launcher, which needs none).
 */
export function noteLauncherStart(path: string): string | null {
  const fileId = launchersStarted > 0 ? fileIdOf(path) : null;
  launchersStarted++;
  return fileId;
}

/** Whether a launcher from `path` is to report its copy (Op.ReportSealedCopy). */
export function wantsSealedCopyReport(path: string): boolean {
  return launchersStarted > 1 && sealedCopy?.path !== path;
}

/** fcntl's F_SEAL_EXEC: the copy's mode (its exec bits) cannot change. */
const F_SEAL_EXEC = 0x20;

function fileIdOf(path: string): string | null {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return null;
  }
}

/** Whether `fd` is the copy (that device and inode) and still executable. */
function isTheCopy(fd: number, dev: bigint, ino: bigint): boolean {
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === dev && st.ino === ino && (st.mode & 0o111n) !== 0n;
  } catch {
    return false;
  }
}

/** Lets go of the copy; its fd is closed only if it still is the copy (the number may be reused). */
export function dropSealedCopy(): void {
  const copy = sealedCopy;
  sealedCopy = undefined;
  if (copy && isTheCopy(copy.fd, copy.dev, copy.ino)) closeSync(copy.fd);
}

/**
 * What to exec for the launcher at `path` (file identity `fileId`): the sealed copy, if held and
 * usable. The child's fds up to `highestSlot` are its stdio, preserved fds and control socket,
 * set up before the exec resolves /proc/self/fd/N: a copy there would be covered.
 */
export function execPathOf(path: string, fileId: string | null, highestSlot: number): string {
  const copy = sealedCopy;
  if (copy?.path !== path || copy.fd <= highestSlot) return path;
  if (fileId === copy.fileId && isTheCopy(copy.fd, copy.dev, copy.ino))
    return `/proc/self/fd/${copy.fd}`;
  dropSealedCopy(); // the launcher was rebuilt or replaced, or the fd is no longer the copy
  return path;
}

/** Event.SealedCopy from a launcher started from `path` (identity `fileId`): keep its copy. */
export function keepSealedCopy(
  path: string,
  fileId: string | null,
  pid: number,
  report: { dev: bigint; ino: bigint; seals: bigint },
): void {
  if (sealedCopy?.path === path || pid <= 0 || fileId === null || fileIdOf(path) !== fileId) return;
  if ((report.seals & BigInt(F_SEAL_EXEC)) === 0n) return; // its mode could change: not shared
  let fd = -1;
  try {
    fd = openSync(`/proc/${pid}/exe`, "r");
    if (isTheCopy(fd, report.dev, report.ino)) {
      // One copy: of the launcher this process started last ($PIVOT_LAUNCHER may name another).
      dropSealedCopy();
      sealedCopy = { path, fileId, fd, dev: report.dev, ino: report.ino };
      return;
    }
  } catch {}
  if (fd >= 0) closeSync(fd);
}
