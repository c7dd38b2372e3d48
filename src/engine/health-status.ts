// A container's health, the pure part: Docker's rule for what one check's result does to the
// status (moby daemon/health.go handleProbeResult), the output kept, and what ps shows.
import {
  type HealthConfig,
  healthTimings,
  MAX_LOG_ENTRIES,
  MAX_OUTPUT_BYTES,
} from "./health-config.ts";

export type HealthStatus = "starting" | "healthy" | "unhealthy";

/** One check, as Docker's State.Health.Log lists it. */
export interface HealthResult {
  Start: string;
  End: string;
  /** The check's exit code; -1 when it could not run or exceeded its timeout. */
  ExitCode: number;
  Output: string;
}

/** Docker's State.Health. */
export interface HealthState {
  Status: HealthStatus;
  FailingStreak: number;
  Log: HealthResult[];
}

/** A run's health before its first check (Docker keeps the log of the runs before). */
export function startingHealth(log: HealthResult[] = []): HealthState {
  return { Status: "starting", FailingStreak: 0, Log: log };
}

/**
 * The health after RESULT, Docker's rule: a success makes it healthy and clears the streak; a
 * failure while starting within the start period (from STARTED_AT, the run's start) counts for
 * nothing; any other failure adds to the streak, which at `retries` makes it unhealthy. The log
 * keeps the last 5 results.
 */
export function nextHealth(
  prev: HealthState,
  result: HealthResult,
  h: HealthConfig,
  startedAt: string,
): HealthState {
  const { retries, startPeriodMs } = healthTimings(h);
  const Log = [...prev.Log, result].slice(-MAX_LOG_ENTRIES);
  if (result.ExitCode === 0) return { Status: "healthy", FailingStreak: 0, Log };
  if (
    prev.Status === "starting" &&
    Date.parse(result.Start) - Date.parse(startedAt) < startPeriodMs
  )
    return { ...prev, Log };
  const FailingStreak = prev.FailingStreak + 1;
  return { Status: FailingStreak >= retries ? "unhealthy" : prev.Status, FailingStreak, Log };
}

/** A check's output as Docker keeps it: the first 4096 bytes, "..." after when there was more. */
export class LimitedOutput {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  private truncated = false;

  write(chunk: Uint8Array): void {
    const room = MAX_OUTPUT_BYTES - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.subarray(0, Math.max(0, room));
    if (kept.length === 0) return;
    this.chunks.push(kept);
    this.size += kept.length;
  }

  text(): string {
    const out = Buffer.concat(this.chunks).toString("utf8");
    return this.truncated ? `${out}...` : out;
  }
}

/** What `ps` adds to "Up 5 seconds": " (healthy)", " (unhealthy)", " (health: starting)". */
export function healthSuffix(status: HealthStatus | undefined): string {
  if (status === undefined) return "";
  return status === "starting" ? " (health: starting)" : ` (${status})`;
}
