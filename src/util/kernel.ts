// The running kernel's version, for features that came with a release.
import { readFileSync } from "node:fs";

let running: string | undefined;

/** This kernel's release, e.g. "6.18.44-fc-v657" (uname -r), read once; node:os costs more to load. */
export function runningRelease(): string {
  running ??= readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  return running;
}

/** Whether `kernelRelease` (default: this kernel's) is at least major.minor. */
export function kernelAtLeast(
  major: number,
  minor: number,
  kernelRelease = runningRelease(),
): boolean {
  const [have = 0, haveMinor = 0] = kernelRelease.split(/[.-]/).map((n) => Number.parseInt(n, 10));
  return have > major || (have === major && haveMinor >= minor);
}
