// The running kernel's version, for features that came with a release.
import { os } from "./lazy-require.ts";

/** Whether `kernelRelease` (default: this kernel's, e.g. "6.18.44-fc-v657") is at least major.minor. */
export function kernelAtLeast(
  major: number,
  minor: number,
  kernelRelease = os().release(),
): boolean {
  const [have = 0, haveMinor = 0] = kernelRelease.split(/[.-]/).map((n) => Number.parseInt(n, 10));
  return have > major || (have === major && haveMinor >= minor);
}
