// process.rlimits values: uint64 in the config, where 18446744073709551615 (RLIM_INFINITY) means
// unlimited, as Docker and podman write it. JSON.parse rounds that to 2^64.

/** From here up a parsed value means unlimited (2^63: no finite limit is that large). */
export const RLIMIT_UNLIMITED_FROM = 2 ** 63;

/** A validated rlimit value as the launcher's setrlimit argument (an int64: -1 is RLIM_INFINITY). */
export function rlimitArg(value: number): bigint {
  return value >= RLIMIT_UNLIMITED_FROM ? -1n : BigInt(value);
}

/** A value for people: "unlimited", or the number. */
export function rlimitText(value: number): string {
  return value >= RLIMIT_UNLIMITED_FROM ? "unlimited" : String(value);
}
