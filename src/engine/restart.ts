// Restart policies without a daemon. The container's exit hook (`pivot container-cleanup ID RUNID`,
// run by conmon when the process exits, or spawned by an attached `pivot run`) is the only
// process that exists when a container exits, so it is what restarts it:
//   1. under the container's lock: the run is still the container's latest (RUNID), the policy,
//      the exit code, RestartCount and the manual-stop mark decide (Docker's rules,
//      restart-state.ts); the usual cleanup runs; a restart is recorded as pending with this
//      process's pid, so status says "restarting" while it lives;
//   2. it leaves its conmon: conmon is a subreaper that waits for all its descendants, so a new
//      conmon started from under it would keep the old one alive, one more per restart. The old
//      one has written the exit code and the log and only waits for this hook, so it is killed;
//   3. the backoff passes (checking every 100 ms for a stop, a removal or a start by hand);
//   4. under the lock again, still pending and not stopped: a start under a new conmon, whose own
//      exit hook takes over. The manual-stop mark is read once more after the runtime's create
//      and before the process is released: a stop that came meanwhile gets no new run; and again
//      after the release: a stop that came between that check and the release may have found
//      the init not yet able to take a signal, so the run is ended (SIGKILL) and a start that
//      failed because of it is no "restart failed".
// `pivot start --all-restartable` is the boot hook (there is no daemon to start containers when
// the machine starts); `ps` and recovery never start anything.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "../runtime/state.ts";
import { monitorAlive, rt } from "./container-runtime.ts";
import { type ContainerRecord, type RunState, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { list } from "./inspect.ts";
import { cleanup, cleanupLocked } from "./lifecycle.ts";
import {
  isManuallyStopped,
  nextBackoff,
  type PendingRestart,
  policyOf,
  readRestartState,
  shouldRestart,
  writeRestartState,
} from "./restart-state.ts";
import { start, startLocked } from "./start.ts";

class RestartCancelled extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The exit hook of run `runId` (conmon's exit command): the cleanup, then, if the restart policy
 * says so, a restart after the backoff. Resolves once the container is started again or left
 * exited.
 */
export async function afterExit(ctx: EngineContext, ref: string, runId: string): Promise<void> {
  let id: string;
  let r: ContainerRecord;
  try {
    id = ctx.containers.resolveId(ref);
    r = ctx.containers.load(id);
  } catch {
    return;
  }
  const policy = policyOf(r.options);
  if (!policy) return cleanup(ctx, id, { runId });
  const decided = await ctx.containers.withLock(id, async () => {
    const rs = ctx.containers.runState(id);
    if (!existsSync(join(ctx.containers.dir(id), "container.json")) || rs?.runId !== runId)
      return null; // removed, or started again since: that start owns it now
    const exitCode = ctx.containers.exitCode(id) ?? 255;
    const finishedAt = rs.finishedAt ?? ctx.containers.exitTime(id) ?? new Date().toISOString();
    const before = readRestartState(ctx, id);
    const backoffMs = nextBackoff(
      before.backoffMs,
      Date.parse(finishedAt) - Date.parse(rs.startedAt),
    );
    const restart = shouldRestart(policy, exitCode, before.count, isManuallyStopped(ctx, id));
    await cleanupLocked(ctx, id, { runId });
    const pending: PendingRestart | null = restart
      ? {
          runId,
          exitCode,
          finishedAt,
          delayMs: backoffMs,
          pid: process.pid,
          pidStart: procStat(process.pid)?.startTime ?? "",
        }
      : null;
    // A failed restart's reason stays until a start succeeds (or one by hand): the failed run's
    // own exit hook comes here after the restart that recorded it.
    writeRestartState(ctx, id, {
      count: before.count + (restart ? 1 : 0),
      backoffMs,
      ...(pending ? { pending } : {}),
      ...(before.error ? { error: before.error } : {}),
    });
    return pending ? { pending, rs } : null;
  });
  if (!decided) return;
  leaveConmon(decided.rs);
  await restartAfterBackoff(ctx, id, decided.pending, decided.rs);
}

/**
 * Ends the conmon this hook runs under (see the header), so the next one is not its child: the
 * run's conmon, if it is this process's parent (or a near ancestor, should a wrapper sit between).
 */
function leaveConmon(rs: RunState): void {
  if (rs.monitor !== "conmon" || !monitorAlive(rs.monitorPid, rs.monitorStart)) return;
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1 && pid !== rs.monitorPid; depth++) pid = parentOf(pid);
  if (pid !== rs.monitorPid) return;
  try {
    process.kill(rs.monitorPid, "SIGKILL");
  } catch {}
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

/** The restart is still this process's to make: not stopped, removed, or started by hand. */
function stillPending(ctx: EngineContext, id: string, p: PendingRestart): boolean {
  if (!existsSync(join(ctx.containers.dir(id), "container.json"))) return false;
  if (isManuallyStopped(ctx, id)) return false;
  const now = readRestartState(ctx, id).pending;
  return (
    now?.runId === p.runId && now.pid === p.pid && ctx.containers.runState(id)?.runId === p.runId
  );
}

/**
 * Drops the pending mark if it is still this process's. `started`: the restart's start succeeded,
 * which forgets an earlier failure; `error`: why it failed; neither: given up (a stop, a removal,
 * a start by hand), an earlier failure's reason kept.
 */
function clearPending(
  ctx: EngineContext,
  id: string,
  p: PendingRestart,
  outcome: { started?: boolean; error?: string } = {},
): void {
  if (!existsSync(join(ctx.containers.dir(id), "container.json"))) return;
  const s = readRestartState(ctx, id);
  if (s.pending?.runId !== p.runId || s.pending.pid !== p.pid) return;
  const error = outcome.error ?? (outcome.started ? undefined : s.error);
  writeRestartState(ctx, id, {
    count: s.count,
    backoffMs: s.backoffMs,
    ...(error ? { error } : {}),
  });
}

async function restartAfterBackoff(
  ctx: EngineContext,
  id: string,
  p: PendingRestart,
  exited: RunState,
): Promise<void> {
  const deadline = Date.now() + p.delayMs;
  for (;;) {
    if (!stillPending(ctx, id, p)) {
      await ctx.containers.withLock(id, async () => clearPending(ctx, id, p)).catch(() => {});
      return;
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(left, 100));
  }
  await ctx.containers.withLock(id, async () => {
    if (!stillPending(ctx, id, p)) {
      clearPending(ctx, id, p);
      return;
    }
    try {
      await startLocked(
        ctx,
        id,
        async () => {
          if (isManuallyStopped(ctx, id)) throw new RestartCancelled("stopped by hand");
        },
        true,
      );
      // A stop or kill between that check and the release found the new run's init still in its
      // launcher stage (PID 1 of its namespace, no handler: any signal but SIGKILL is dropped), so
      // its signal may not have ended it: end it here; its own exit hook sees the mark.
      if (isManuallyStopped(ctx, id)) endStoppedRun(ctx, id);
      clearPending(ctx, id, p, { started: true });
    } catch (err) {
      // It stays exited with the code of its last run; a failed start says why in inspect,
      // unless a stop or kill came meanwhile (a SIGKILL of the new run's init fails the start).
      if (existsSync(ctx.containers.dir(id))) forgetFailedRun(ctx, id, p, exited);
      const cancelled = err instanceof RestartCancelled || isManuallyStopped(ctx, id);
      clearPending(
        ctx,
        id,
        p,
        cancelled ? {} : { error: `restart failed: ${(err as Error).message}` },
      );
    }
  });
}

/**
 * After a restart's start failed (its cleanup done by startLocked): the container is again the
 * run that exited. The failed run's conmon, if it got that far, is ended before it writes an
 * exit code (137, its init killed by the cleanup) or runs an exit hook that would take the
 * failed run for the latest one (a restart of its own, restart.json rewritten); a hook it
 * already started finds its run stale.
 */
function forgetFailedRun(
  ctx: EngineContext,
  id: string,
  p: PendingRestart,
  exited: RunState,
): void {
  const dir = ctx.containers.dir(id);
  const failed = ctx.containers.runState(id);
  if (failed && failed.runId !== p.runId && failed.monitor === "conmon") {
    try {
      if (monitorAlive(failed.monitorPid, failed.monitorStart))
        process.kill(failed.monitorPid, "SIGKILL");
    } catch {}
    for (let i = 0; i < 200 && monitorAlive(failed.monitorPid, failed.monitorStart); i++)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  writeFileSync(join(dir, "exit"), String(p.exitCode));
  writeJsonAtomic(join(dir, "state.json"), {
    ...exited,
    finishedAt: exited.finishedAt ?? p.finishedAt,
  } satisfies RunState);
}

/** A run started by the policy after a stop by hand: SIGKILL to its processes (as `rm -f`). */
function endStoppedRun(ctx: EngineContext, id: string): void {
  try {
    rt(ctx, id).kill(id, "SIGKILL", true);
  } catch {
    try {
      rt(ctx, id).kill(id, "SIGKILL");
    } catch (err) {
      ctx.warn(`ending ${id.slice(0, 12)}'s restart after a stop: ${(err as Error).message}`);
    }
  }
}

/**
 * The boot hook (`pivot start --all-restartable`): what Docker's daemon does when it starts.
 * Starts every exited container whose policy asks for it: always (even after a manual stop),
 * unless-stopped (unless stopped by hand), on-failure (a non-zero last exit with retries left,
 * unless stopped by hand). Each is a start by hand: RestartCount goes back to zero.
 */
export async function startRestartable(
  ctx: EngineContext,
): Promise<{ started: string[]; failed: { id: string; error: Error }[] }> {
  const started: string[] = [];
  const failed: { id: string; error: Error }[] = [];
  for (const c of await list(ctx, { all: true })) {
    const policy = policyOf(c.options);
    if (!policy || c.state.status !== "exited") continue;
    const go =
      policy.policy === "always" ||
      shouldRestart(
        policy,
        c.state.exitCode ?? 255,
        readRestartState(ctx, c.id).count,
        isManuallyStopped(ctx, c.id),
      );
    if (!go) continue;
    try {
      await start(ctx, c.id);
      started.push(c.id);
    } catch (err) {
      failed.push({ id: c.id, error: err as Error });
    }
  }
  return { started, failed };
}
