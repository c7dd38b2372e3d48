// Health checks of running containers (`pivot healthcheck run`, podman's command; the periodic
// checks run it too): the test exec'd in the container as `pivot exec` does, killed at its
// timeout, its result recorded (health-record.ts).
import { status } from "./container-runtime.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { exec } from "./exec.ts";
import { formatGoDuration, type HealthConfig, healthTimings } from "./health-config.ts";
import { healthcheckOf, recordHealth } from "./health-record.ts";
import { type HealthResult, type HealthState, LimitedOutput } from "./health-status.ts";
import { TIMER_STOP, timerNext } from "./health-timer.ts";

/**
 * Runs the container's check once and records the result; resolves with whether the check
 * passed and the health after it. Refused when the container has no check or is not running.
 */
export async function runHealthcheck(
  ctx: EngineContext,
  ref: string,
): Promise<{ passed: boolean; health: HealthState }> {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  const h = healthcheckOf(r);
  if (h === null)
    throw new EngineError(`container ${r.name} has no health check`, {
      hint: "give one with --health-cmd at create, or build its image with HEALTHCHECK",
    });
  const st = status(ctx, id).status;
  const rs = ctx.containers.runState(id);
  if (st !== "running" || rs === null)
    throw new EngineError(`container ${r.name} is not running (${st})`, {
      hint: `start it with \`pivot start ${r.name}\``,
    });
  const result = await probe(ctx, id, h);
  const health = await recordHealth(ctx, id, r, rs, h, result);
  return { passed: result.ExitCode === 0, health };
}

/** The test's argv: CMD-SHELL through /bin/sh -c, CMD as given. */
function testArgv(h: HealthConfig): string[] {
  const [kind, ...rest] = h.Test ?? [];
  return kind === "CMD-SHELL" ? ["/bin/sh", "-c", rest.join(" ")] : rest;
}

/** One check: its output (stdout and stderr, 4 KiB kept), exit code, times; -1 on a timeout. */
async function probe(ctx: EngineContext, id: string, h: HealthConfig): Promise<HealthResult> {
  const { timeoutMs } = healthTimings(h);
  const start = new Date();
  const output = new LimitedOutput();
  let pid = 0;
  let timedOut = false;
  // The check is its session's leader: its process group goes, children included.
  const killCheck = () => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {}
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let code: number;
  try {
    const expired = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        if (pid > 0) killCheck();
        resolve("timeout");
      }, timeoutMs);
    });
    const c = await exec(ctx, id, {
      cmd: testArgv(h),
      stdio: "pipe",
      onPid: (p) => {
        pid = p;
        if (timedOut) killCheck();
      },
    });
    for (const s of [c.stdout, c.stderr]) s?.on("data", (d: Uint8Array) => output.write(d));
    // A check whose output a child that left its process group still holds ends at the timeout.
    const ended = await Promise.race([c.wait(), expired]);
    code = ended === "timeout" ? -1 : ended;
  } catch (err) {
    return {
      Start: start.toISOString(),
      End: new Date().toISOString(),
      ExitCode: -1,
      Output: (err as Error).message,
    };
  } finally {
    clearTimeout(timer);
  }
  return {
    Start: start.toISOString(),
    End: new Date().toISOString(),
    ExitCode: timedOut ? -1 : code,
    Output: timedOut
      ? `Health check exceeded timeout (${formatGoDuration(timeoutMs * 1_000_000)})`
      : output.text(),
  };
}

/**
 * One check for the timer (`healthcheck run --timer RUNID`): its exit code for pivot-timer.
 * TIMER_STOP once the container is gone, stopped or started again (a later run has its own
 * timer); a paused container's check is skipped; a check that could not be recorded is retried
 * at the next interval.
 */
export async function timerCheck(ctx: EngineContext, ref: string, runId: string): Promise<number> {
  const current = (): { id: string; status: string } | null => {
    try {
      const id = ctx.containers.resolveId(ref);
      if (ctx.containers.runState(id)?.runId !== runId) return null;
      return { id, status: status(ctx, id).status };
    } catch {
      return null;
    }
  };
  const before = current();
  if (before === null || (before.status !== "running" && before.status !== "paused"))
    return TIMER_STOP;
  if (before.status === "paused") return 0;
  const r = ctx.containers.load(before.id);
  const h = healthcheckOf(r);
  const rs = ctx.containers.runState(before.id);
  if (h === null || rs === null) return TIMER_STOP;
  try {
    const { health } = await runHealthcheck(ctx, before.id);
    return timerNext(health, rs.startedAt, healthTimings(h).startPeriodMs);
  } catch {
    return current()?.status === "running" ? 0 : TIMER_STOP;
  }
}
