// The periodic health checks without a daemon: each start of a container with a check starts
// `pivot-timer` (native/timer.c), a small C program with no policy, detached, which runs
// `pivot healthcheck run --timer RUNID ID` every interval for as long as the container's init
// (pid + start time) lives, and ends the moment it does (a pidfd). What it runs decides the rest
// through its exit code: TIMER_FAST asks for the start interval next (Docker's: while starting,
// within the start period), TIMER_STOP ends the timer (the container stopped, restarted, or was
// removed). The timer holds <dir>/health-timer.pid (a flock, its pid inside) while it runs, so a
// second timer of the container waits for the first to end: recovery starts one for a running
// container whose timer is gone (a pivot killed before it started it, a timer killed by hand).
// docs/architecture.md "Health checks" has the reasoning.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { procStat } from "../runtime/state.ts";
import { childProcess } from "../util/child-process.ts";
import type { ContainerRecord, RunState } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { healthTimings } from "./health-config.ts";
import { healthcheckOf } from "./health-record.ts";
import type { HealthState } from "./health-status.ts";

/** The timer's lock, with its pid inside, in the container's directory. */
const TIMER_FILE = "health-timer.pid";

/** `healthcheck run --timer`'s exit codes, which pivot-timer is told to act on. */
export const TIMER_FAST = 10;
export const TIMER_STOP = 11;

/** The timer's path: $PIVOT_TIMER, else native/build/pivot-timer; null when not built. */
export function timerPath(): string | null {
  const fromEnv = process.env.PIVOT_TIMER;
  if (fromEnv) return fromEnv;
  const here = dirname(decodeURIComponent(new URL(import.meta.url).pathname));
  const candidates = [
    join(here, "../../native/build/pivot-timer"),
    join(dirname(process.execPath), "pivot-timer"),
    join(dirname(process.execPath), "../native/build/pivot-timer"),
  ];
  return candidates.find((c) => existsSync(c)) ?? null;
}

/**
 * Starts the periodic checks of run RS of container R, if it has a check: the timer, detached,
 * watching the run's init. Nothing to stop later: it ends with the init. A timer that cannot be
 * started (not built) is a warning; the container runs without periodic checks.
 */
export function startHealthTimer(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  rs: RunState | null,
): void {
  const h = healthcheckOf(r);
  if (h === null || rs === null || rs.pid <= 0) return;
  const start = procStat(rs.pid)?.startTime;
  if (!start) return;
  const timer = timerPath();
  if (timer === null) {
    ctx.warn(
      "native/build/pivot-timer is not built: the container's health check will not run by itself (`make -C native`, or set PIVOT_TIMER)",
    );
    return;
  }
  const t = healthTimings(h);
  // Docker's first wait: the start interval while a start period runs, else the interval.
  const first = t.startPeriodMs > 0 ? t.startIntervalMs : t.intervalMs;
  const check = [
    ...ctx.cliCommand,
    "--root",
    ctx.root,
    "--run-root",
    ctx.runRoot,
    "healthcheck",
    "run",
    "--timer",
    rs.runId,
    id,
  ];
  const lock = join(ctx.containers.dir(id), TIMER_FILE);
  const args = [
    rs.pid,
    start,
    lock,
    first,
    t.intervalMs,
    TIMER_FAST,
    t.startIntervalMs,
    TIMER_STOP,
  ];
  const child = childProcess().spawn(timer, [...args.map(String), "--", ...check], {
    detached: true,
    stdio: "ignore",
  });
  child.on("error", (err) => ctx.warn(`the health check timer did not start: ${err.message}`));
  child.unref();
}

/**
 * What the timer does after a check of run RUN_ID (Docker's monitor loop): TIMER_FAST while the
 * container is starting within its start period, else 0 (the interval).
 */
export function timerNext(h: HealthState, startedAt: string, startPeriodMs: number): number {
  const inStartPeriod = Date.now() - Date.parse(startedAt) < startPeriodMs;
  return h.Status === "starting" && inStartPeriod ? TIMER_FAST : 0;
}

/** Whether the timer of run RUN_ID of container ID runs: the pid in its lock, that command line. */
export function timerRuns(ctx: EngineContext, id: string, runId: string): boolean {
  try {
    const pid = Number(readFileSync(join(ctx.containers.dir(id), TIMER_FILE), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) return false;
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return (
      (argv[0] ?? "").endsWith("pivot-timer") &&
      argv.includes("--timer") &&
      argv.includes(runId) &&
      argv.includes(id) &&
      procStat(pid)?.state !== "Z"
    );
  } catch {
    return false;
  }
}

/**
 * Recovery's part: a running container with a check whose timer is gone gets one. A timer
 * started meanwhile by its start only waits for the other's lock, so there is never more than one
 * at work.
 */
export function ensureHealthTimer(ctx: EngineContext, id: string, r: ContainerRecord): void {
  if (healthcheckOf(r) === null) return;
  const rs = ctx.containers.runState(id);
  if (rs === null || timerRuns(ctx, id, rs.runId)) return;
  startHealthTimer(ctx, id, r, rs);
}
