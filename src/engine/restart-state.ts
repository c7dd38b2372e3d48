// Restart policies (`--restart`): the policy, Docker's rules and backoff, and what is kept between
// two runs of a container, in its directory:
//   restart.json       RestartCount, the current backoff, the restart waiting to happen (pending)
//   manually-stopped   `pivot stop`, `kill` or `rm -f` ended it: no restart until the next start
// The process that restarts (the exit hook, restart.ts) writes restart.json under the container's
// lock; stop and kill only create manually-stopped, which the hook reads under the lock before it
// decides and again just before it releases a new run's process, so a stop never loses against a
// restart. Nothing here starts anything: status, inspect and start use it without a cycle.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "../runtime/state.ts";
import { childProcess } from "../util/child-process.ts";
import { type ContainerRecord, readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import type { ContainerOptions, RestartPolicy } from "./types.ts";

export const RESTART_POLICIES: readonly RestartPolicy["policy"][] = [
  "no",
  "on-failure",
  "always",
  "unless-stopped",
];

/** Docker's backoff: 100 ms before the first restart, doubled each time, at most a minute. */
export const BACKOFF_FIRST_MS = 100;
export const BACKOFF_MAX_MS = 60_000;
/** A run this long puts the backoff back to its first step (Docker's 10 s). */
export const BACKOFF_RESET_AFTER_MS = 10_000;

const POLICY_HINT = "use no, always, unless-stopped or on-failure[:MAX-RETRIES]";

/** `--restart` text: no, always, unless-stopped, on-failure, on-failure:N (Docker's format). */
export function parseRestartPolicy(text: string): RestartPolicy {
  const colon = text.indexOf(":");
  const name = colon < 0 ? text : text.slice(0, colon);
  if (colon === 0) {
    throw new EngineError(`invalid restart policy "${text}": no policy before the colon`, {
      hint: POLICY_HINT,
    });
  }
  const policy: RestartPolicy = { policy: (name || "no") as RestartPolicy["policy"] };
  if (colon >= 0) {
    const count = text.slice(colon + 1);
    if (!/^-?\d+$/.test(count)) {
      throw new EngineError(
        `invalid restart policy "${text}": the maximum retry count must be a whole number`,
        { hint: "e.g. --restart on-failure:3" },
      );
    }
    policy.maxRetries = Number(count);
  }
  checkPolicy(policy);
  return policy;
}

function checkPolicy(p: RestartPolicy): void {
  if (!RESTART_POLICIES.includes(p.policy)) {
    throw new EngineError(`invalid restart policy: unknown policy "${p.policy}"`, {
      hint: POLICY_HINT,
    });
  }
  const max = p.maxRetries ?? 0;
  if (!Number.isInteger(max) || max < 0) {
    throw new EngineError(
      `invalid restart policy: the maximum retry count cannot be negative (${max})`,
      { hint: "on-failure:N restarts at most N times; on-failure or on-failure:0 has no limit" },
    );
  }
  if (max !== 0 && p.policy !== "on-failure") {
    throw new EngineError(
      `invalid restart policy: a maximum retry count can only be used with on-failure, not ${p.policy}`,
      { hint: `use --restart on-failure:${max}, or --restart ${p.policy} without a count` },
    );
  }
}

/** Refuses what Docker refuses at create: a bad policy, --restart with --rm; and no conmon. */
/** `hasConmon` is asked only for a restart policy (finding conmon searches PATH). */
export function checkRestartOptions(options: ContainerOptions, hasConmon: () => boolean): void {
  if (!options.restart) return;
  checkPolicy(options.restart);
  if (options.restart.policy === "no") return;
  if (options.autoRemove) {
    throw new EngineError("Conflicting options: --restart and --rm", {
      hint: "a container restarted when it exits is never removed when it exits: drop one of them",
    });
  }
  if (!hasConmon()) {
    throw new EngineError("restart policies need conmon, which is not installed", {
      hint: "install it (apt-get install conmon); conmon's exit hook is what restarts a container",
    });
  }
}

/** The container's policy, or null for none ("no"). */
export function policyOf(options: ContainerOptions): RestartPolicy | null {
  const p = options.restart;
  return p && p.policy !== "no" ? p : null;
}

/**
 * Docker's rule (moby's restartmanager): always and unless-stopped restart on any exit,
 * on-failure on a non-zero one while fewer than maxRetries restarts were made (0: no limit);
 * nothing restarts after a manual stop.
 */
export function shouldRestart(
  p: RestartPolicy,
  exitCode: number,
  restartCount: number,
  manuallyStopped: boolean,
): boolean {
  if (manuallyStopped) return false;
  switch (p.policy) {
    case "always":
    case "unless-stopped":
      return true;
    case "on-failure": {
      const max = p.maxRetries ?? 0;
      return exitCode !== 0 && (max === 0 || restartCount < max);
    }
    default:
      return false;
  }
}

/** The wait before the next restart: 100 ms doubled at each exit up to a minute, reset by a 10 s run. */
export function nextBackoff(previousMs: number, ranMs: number): number {
  if (previousMs <= 0 || ranMs >= BACKOFF_RESET_AFTER_MS) return BACKOFF_FIRST_MS;
  return Math.min(previousMs * 2, BACKOFF_MAX_MS);
}

/** A restart decided by an exit hook, waiting for its backoff (or being started). */
export interface PendingRestart {
  /** The run that exited. */
  runId: string;
  exitCode: number;
  finishedAt: string;
  delayMs: number;
  /** The process that waits and restarts (pid + start time, so a reused pid does not count). */
  pid: number;
  pidStart: string;
}

export interface RestartState {
  /** Restarts made by the policy since the last manual start (Docker's RestartCount). */
  count: number;
  /** The current backoff step (0: none yet). */
  backoffMs: number;
  pending?: PendingRestart;
  /** Why the last restart failed. */
  error?: string;
}

function statePath(ctx: EngineContext, id: string): string {
  return join(ctx.containers.dir(id), "restart.json");
}

function stopPath(ctx: EngineContext, id: string): string {
  return join(ctx.containers.dir(id), "manually-stopped");
}

export function readRestartState(ctx: EngineContext, id: string): RestartState {
  return readJson<RestartState>(statePath(ctx, id)) ?? { count: 0, backoffMs: 0 };
}

/** Written under the container's lock only. */
export function writeRestartState(ctx: EngineContext, id: string, s: RestartState): void {
  writeJsonAtomic(statePath(ctx, id), s);
}

export function isManuallyStopped(ctx: EngineContext, id: string): boolean {
  return existsSync(stopPath(ctx, id));
}

/**
 * `pivot stop`, `kill`, `rm -f`: no more restarts for a container with a policy, including one
 * already decided. Returns whether the container has a policy. Throws an EngineError if the mark
 * cannot be made (ENOSPC, EROFS, ...): without it the exit hook would start the container again,
 * so callers make it before they signal anything and stop there.
 */
export function markManualStop(ctx: EngineContext, id: string, r?: ContainerRecord): boolean {
  let record = r;
  if (!record) {
    try {
      record = ctx.containers.load(id);
    } catch {
      return false;
    }
  }
  const policy = policyOf(record.options);
  if (!policy) return false;
  const path = stopPath(ctx, id);
  try {
    writeFileSync(path, `${new Date().toISOString()}\n`);
  } catch (err) {
    // The mark is the file's existence (its text is only the time): created but not filled
    // (ENOSPC on the write) still counts.
    if (existsSync(path)) return true;
    const e = err as NodeJS.ErrnoException;
    const why = e.code
      ? `${e.code} (${e.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "")})`
      : e.message;
    throw new EngineError(
      `cannot mark container ${record.name} as stopped by hand: ${path}: ${why}`,
      {
        hint: `nothing was signalled: without this mark its restart policy (${policy.policy}) would start it again. Make ${ctx.containers.dir(id)} writable (free space on its filesystem, or remount it read-write) and run the command again`,
        ...(e.code ? { code: e.code } : {}),
        cause: err,
      },
    );
  }
  return true;
}

/** The restart waiting to happen, if its process is alive and no manual stop came since. */
export function pendingRestart(ctx: EngineContext, id: string): PendingRestart | null {
  const p = readJson<RestartState>(statePath(ctx, id))?.pending;
  if (!p || isManuallyStopped(ctx, id)) return null;
  const st = procStat(p.pid);
  if (!st || st.startTime !== p.pidStart || st.state === "Z" || st.state === "X") return null;
  return p;
}

/**
 * A start by hand (`pivot start`, `run`, `restart`): refused while a restart is pending; it forgets
 * the manual stop and puts RestartCount and the backoff back to zero, as Docker's does.
 */
export function beginManualStart(ctx: EngineContext, id: string, name: string): void {
  if (pendingRestart(ctx, id)) {
    throw new EngineError(`container ${name} is restarting`, {
      hint: `its restart policy starts it again after a backoff; \`pivot stop ${name}\` ends the restarts, then \`pivot start ${name}\` starts it now`,
    });
  }
  rmSync(stopPath(ctx, id), { force: true });
  rmSync(statePath(ctx, id), { force: true });
}

/** `pivot ARGS` on this engine's store, for a process of its own (conmon's exit commands). */
export function engineCommand(ctx: EngineContext, args: string[]): string[] {
  return [...ctx.cliCommand, "--root", ctx.root, "--run-root", ctx.runRoot, ...args];
}

/** conmon's exit hook for a run: `pivot container-cleanup ID RUNID`. */
export function exitCommand(ctx: EngineContext, id: string, runId: string): string[] {
  return engineCommand(ctx, ["container-cleanup", id, runId]);
}

/**
 * The exit hook of an attached run with a restart policy, run as its own process so it outlives
 * the attached `pivot run` (which returns with the first run's code, as Docker's client does).
 */
export function spawnExitCommand(ctx: EngineContext, id: string, runId: string): void {
  const [cmd, ...args] = exitCommand(ctx, id, runId);
  try {
    const child = childProcess().spawn(cmd!, args, { detached: true, stdio: "ignore" });
    child.on("error", (err) => ctx.warn(`the exit hook of ${id.slice(0, 12)}: ${err.message}`));
    child.unref();
  } catch (err) {
    ctx.warn(`the exit hook of ${id.slice(0, 12)}: ${(err as Error).message}`);
  }
}
