// A container after its start: wait, kill, stop, pause/unpause, the cleanup after its process
// exits (conmon's exit command, or the attached monitor) and remove. Starting is in start.ts.
import { existsSync, renameSync, rmSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { isMountPoint, unmountOverlay } from "../image/overlay.ts";
import { HostLauncher } from "../runtime/host-plan.ts";
import { parseSignal } from "../runtime/signals.ts";
import { emitExitEvents, runEndReported } from "./container-events.ts";
import { disconnectNetwork } from "./container-network.ts";
import { monitorAlive, releaseCgroups, rt, type Status, status } from "./container-runtime.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import { markManualStop, readRestartState } from "./restart-state.ts";
import { volumeUsers } from "./volumes-from.ts";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Removes a file that is most often not there: one unlink, where rmSync's force stats first. */
function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/**
 * After the container's process has exited (conmon's exit command, or the attached monitor):
 * the runtime's state goes, the overlay is unmounted, and --rm containers are removed.
 */
export async function cleanup(
  ctx: EngineContext,
  ref: string,
  options: CleanupOptions = {},
): Promise<void> {
  let id: string;
  try {
    id = ctx.containers.resolveId(ref);
  } catch {
    return;
  }
  await ctx.containers.withLock(id, () => cleanupLocked(ctx, id, options));
}

export interface CleanupOptions {
  keepOnFailure?: boolean;
  /** Only if the container's latest start is this one. */
  runId?: string;
  /** The exit code, known to the attached monitor that wrote it. */
  exitCode?: number;
  /** The caller (the attached monitor) saw the container's process exit: nothing to stop. */
  exited?: boolean;
  /** The caller kept `exitCode` in <root>/exits already (an attached --rm run, before this). */
  exitCodeKept?: boolean;
}

/**
 * Whether the overlay is still mounted on TARGET: an overlay has a device of its own, so TARGET's
 * differs from its parent directory's. Two stats, where isMountPoint reads and searches
 * /proc/self/mountinfo (~0.08 ms more of a --rm run's end here, more with many mounts).
 */
async function overlayMountedOn(target: string): Promise<boolean> {
  try {
    return statSync(target).dev !== statSync(dirname(target)).dev;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    return isMountPoint(target);
  }
}

/** A launcher for the unmount, started ahead; none if it cannot start (the unmount says why). */
function startedAhead(): HostLauncher | undefined {
  try {
    return new HostLauncher();
  } catch {
    return undefined;
  }
}

export async function cleanupLocked(
  ctx: EngineContext,
  id: string,
  options: CleanupOptions,
): Promise<void> {
  if (!existsSync(join(ctx.containers.dir(id), "container.json"))) return;
  const run = ctx.containers.runState(id);
  if (options.runId !== undefined && run?.runId !== options.runId) return;
  const r = ctx.containers.load(id);
  // A run's end (its monitor's exit hook or the attached monitor), not a failed start's undoing.
  if (options.runId !== undefined) {
    // The monitor's exit file, or the code an attached --rm run kept before its removal.
    const exitCode =
      options.exitCode ?? ctx.containers.exitCode(id) ?? ctx.containers.removedExitCode(id);
    // An attached --rm run's end has no other reporter (no exit file for `stop` to see; `rm -f`
    // finds it gone under this lock): no mark to claim, a file creation less on its way out.
    const contested = !options.exitCodeKept;
    await emitExitEvents(ctx, id, r, exitCode, contested ? options.runId : undefined);
  }
  // The launcher that unmounts the overlay starts now, its start-up overlapping the runtime's
  // delete (disposed of if the overlay turns out not to be mounted).
  // Only if the overlay is still mounted: an attached run's launcher has unmounted it already.
  const overlayMounted =
    (r.overlay.driver ?? "overlay") === "overlay"
      ? await overlayMountedOn(r.overlay.target)
      : undefined;
  const unmounter = overlayMounted ? startedAhead() : undefined;
  // What this hold has found already, not looked up again by the release.
  const known: Known = { cgroupPaths: run?.cgroupPaths, overlayMounted };
  try {
    const runtime = rt(ctx, id, r);
    if (runtime.store.exists(id))
      await runtime.delete(id, true).catch((e) => ctx.warn((e as Error).message));
    if (r.options.autoRemove && !options.keepOnFailure) {
      // The removal releases the cgroups and the network and unmounts, as below.
      await removeLocked(ctx, id, {
        force: true,
        record: r,
        ...(options.exitCode !== undefined ? { exitCode: options.exitCode } : {}),
        ...(options.exited ? { exited: true } : {}),
        ...(options.exitCodeKept ? { exitCodeKept: true } : {}),
        ...(unmounter ? { unmounter } : {}),
        known,
      });
      return;
    }
    await releaseRun(ctx, id, r, unmounter, known);
  } finally {
    unmounter?.dispose();
  }
}

/**
 * What cleanupLocked found under the lock its removal or release still holds: state.json's
 * cgroup directories and whether the overlay is mounted (undefined: not looked at).
 */
interface Known {
  cgroupPaths: Record<string, string> | undefined;
  overlayMounted: boolean | undefined;
}

/**
 * What a run holds once its runtime state is gone: cgroups, network, the overlay mount. The
 * network's DEL (tens of ms: the plugins, the kernel deleting the veth) and the unmount need
 * nothing of each other, so they run at once (--trace marks each as it ends); both are done
 * when this returns.
 */
async function releaseRun(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  unmounter?: HostLauncher,
  known?: Known,
): Promise<void> {
  releaseCgroups(ctx, id, known ? known.cgroupPaths : ctx.containers.runState(id)?.cgroupPaths);
  const network = disconnectNetwork(ctx, r).then(() =>
    ctx.trace?.mark("engine: cgroups and network released"),
  );
  try {
    if (known?.overlayMounted !== false)
      await unmountOverlay(r.overlay.target, unmounter ? { launcher: unmounter } : {}).catch(() =>
        unmountOverlay(r.overlay.target, { lazy: true }),
      );
    ctx.trace?.mark("engine: root filesystem unmounted");
  } finally {
    await network; // disconnectNetwork warns rather than rejects
  }
}

/**
 * Resolves with the exit code once the container has exited. A container with a restart policy
 * counts as exited when a run ends, restarted or not (Docker's `wait`); one waiting for its
 * restart when the wait begins is waited for through its next run.
 */
export async function wait(ctx: EngineContext, ref: string, pollMs = 50): Promise<number> {
  let id: string;
  try {
    id = ctx.containers.resolveId(ref);
  } catch (err) {
    // A full id of a container removed (--rm) since it exited: its code was kept.
    const code = /^[0-9a-f]{64}$/.test(ref) ? ctx.containers.removedExitCode(ref) : null;
    if (code !== null) return code;
    throw err;
  }
  let skipRun: string | undefined;
  for (let first = true; ; first = false) {
    let st: Status | null = null;
    try {
      st = status(ctx, id);
    } catch {}
    if (st?.status === "exited") return st.exitCode ?? 255;
    if (st?.status === "restarting") {
      const run = readRestartState(ctx, id).pending?.runId;
      if (first) skipRun = run;
      else if (run !== skipRun) return st.exitCode ?? 255;
    }
    if (!st || !existsSync(join(ctx.containers.dir(id), "container.json"))) {
      // Removed meanwhile, by its own --rm cleanup or `rm -f`: the exit code was kept aside.
      const code = ctx.containers.removedExitCode(id);
      if (code !== null) return code;
      throw new EngineError(`container ${ref} was removed while waiting`);
    }
    if (st.status === "created") throw new EngineError(`container ${ref} is not started`);
    await sleep(pollMs);
  }
}

/**
 * Sends a signal to the container's init (`pivot kill`, default SIGKILL). For a container with
 * a restart policy it is a manual stop, as Docker's: no restart after it, and a pending one is
 * cancelled.
 */
export function kill(ctx: EngineContext, ref: string, signal: string | number = "SIGKILL"): void {
  const id = ctx.containers.resolveId(ref);
  const before = status(ctx, id);
  parseSignal(signal);
  // Before the signal, and status read again after it: a restart that got past its last check
  // has a running process by then, which gets the signal.
  const restartable = markManualStop(ctx, id);
  const st = restartable ? status(ctx, id) : before;
  if (st.status !== "running" && st.status !== "paused") {
    if (before.status === "restarting" || (restartable && exitHookPending(ctx, id))) return;
    throw new EngineError(`container ${ref} is not running`);
  }
  rt(ctx, id).kill(id, signal);
  emitEvent(ctx, "container", "kill", id, {
    ...containerAttributes(ctx.containers.load(id)),
    signal: String(parseSignal(signal)),
  });
}

/** conmon is still running the exit hook of the container's last run. */
function exitHookPending(ctx: EngineContext, id: string): boolean {
  const rs = ctx.containers.runState(id);
  return rs?.monitor === "conmon" && monitorAlive(rs.monitorPid, rs.monitorStart);
}

/** The stop signal, then SIGKILL to every process after `timeout` seconds (`pivot stop`). */
export async function stop(
  ctx: EngineContext,
  ref: string,
  options: { timeout?: number; signal?: string } = {},
): Promise<void> {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  // First: the exit hook of this run, or a restart already waiting, will not start it again.
  markManualStop(ctx, id, r);
  if (status(ctx, id).status !== "running" && status(ctx, id).status !== "paused") return;
  const runId = ctx.containers.runState(id)?.runId;
  const timeout = options.timeout ?? r.options.stopTimeout ?? 10;
  const attributes = containerAttributes(r);
  // Docker's sequence: kill (the stop signal), kill (9) after the timeout, die, then stop.
  const killed = (signal: string) =>
    emitEvent(ctx, "container", "kill", id, { ...attributes, signal: String(parseSignal(signal)) });
  try {
    if (status(ctx, id).status === "paused") rt(ctx, id).resume(id);
    rt(ctx, id).kill(id, options.signal ?? r.stopSignal);
    killed(options.signal ?? r.stopSignal);
  } catch {}
  let exited = await exitWithin(ctx, id, timeout * 1000);
  if (exited === null) {
    try {
      rt(ctx, id).kill(id, "SIGKILL", true);
      killed("SIGKILL");
    } catch {}
    exited = await exitWithin(ctx, id, 10_000);
  }
  // The run's die, unless its exit hook (another process, started by conmon as the run ends)
  // reported it already: reported here, it comes before the stop, as Docker's does.
  // Its exit hook may have claimed it first: the stop waits (a little) for that die to be written.
  if (exited !== null && !(await emitExitEvents(ctx, id, r, exited.exitCode, runId)) && runId)
    await runEndReported(ctx, id, runId, 2000);
  emitEvent(ctx, "container", "stop", id, attributes);
}

/** The container's status once it has exited, polled for up to MS; null if it has not. */
async function exitWithin(ctx: EngineContext, id: string, ms: number): Promise<Status | null> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    // An attached --rm run removes its container as it ends: gone is exited (with the code kept
    // for `wait`), not "created" until the deadline.
    if (!existsSync(join(ctx.containers.dir(id), "container.json")))
      return { status: "exited", exitCode: ctx.containers.removedExitCode(id), pid: 0 };
    const st = status(ctx, id);
    if (st.status === "exited") return st;
    await sleep(50);
  }
  return null;
}

/** Freezes every process of a running container (`pivot pause`). */
export function pause(ctx: EngineContext, ref: string): void {
  const id = ctx.containers.resolveId(ref);
  const st = status(ctx, id);
  if (st.status !== "running")
    throw new EngineError(`container ${ref} is not running (${st.status})`, {
      hint: st.status === "paused" ? "`pivot unpause` resumes it" : "",
    });
  rt(ctx, id).pause(id);
  emitEvent(ctx, "container", "pause", id, containerAttributes(ctx.containers.load(id)));
}

/** Thaws a paused container (`pivot unpause`). */
export function unpause(ctx: EngineContext, ref: string): void {
  const id = ctx.containers.resolveId(ref);
  const st = status(ctx, id);
  if (st.status !== "paused") throw new EngineError(`container ${ref} is not paused`);
  rt(ctx, id).resume(id);
  emitEvent(ctx, "container", "unpause", id, containerAttributes(ctx.containers.load(id)));
}

/** Removes a container: its runtime state, overlay, directory, name, and (volumes) its anonymous volumes. */
export async function remove(
  ctx: EngineContext,
  ref: string,
  options: { force?: boolean; volumes?: boolean } = {},
): Promise<void> {
  const id = ctx.containers.resolveId(ref);
  await ctx.containers.withLock(id, () => removeLocked(ctx, id, options));
}

export async function removeLocked(
  ctx: EngineContext,
  id: string,
  options: {
    force?: boolean;
    volumes?: boolean;
    /** container.json, read already by the caller under the same lock. */
    record?: ContainerRecord;
    /** The exit code, when the caller knows it (the attached monitor). */
    exitCode?: number;
    /** A launcher started ahead for the unmount (the caller disposes of it). */
    unmounter?: HostLauncher;
    /** The caller saw the container's process exit (CleanupOptions.exited). */
    exited?: boolean;
    /** `exitCode` is in <root>/exits already (CleanupOptions.exitCodeKept). */
    exitCodeKept?: boolean;
    /** What cleanupLocked read under this hold of the lock. */
    known?: Known;
  },
): Promise<void> {
  if (!existsSync(join(ctx.containers.dir(id), "container.json"))) return;
  const r = options.record ?? ctx.containers.load(id);
  // Processes its init left behind are killed with the cgroup (the runtime's delete, releaseRun).
  const st = options.exited ? null : status(ctx, id);
  if (st && (st.status === "running" || st.status === "paused" || st.status === "restarting")) {
    if (!options.force) {
      throw new EngineError(`cannot remove container ${r.name}: it is ${st.status}`, {
        hint: `stop it first (\`pivot stop ${r.name}\`), or use \`pivot rm -f\``,
      });
    }
    markManualStop(ctx, id, r);
    let killed = false;
    try {
      rt(ctx, id).kill(id, "SIGKILL", true);
      killed = true;
    } catch {}
    const runtime = rt(ctx, id, r);
    if (runtime.store.exists(id)) await runtime.delete(id, true).catch(() => {});
    // Docker's rm -f: kill, die, destroy. The run's own end (conmon's exit hook, an attached
    // monitor) finds the container gone under this lock, and reports nothing.
    if (killed) {
      emitEvent(ctx, "container", "kill", id, containerAttributes(r, { signal: "9" }));
      await emitExitEvents(ctx, id, r, 137, ctx.containers.runState(id)?.runId);
    }
  }
  const runtime = rt(ctx, id, r);
  if (runtime.store.exists(id)) await runtime.delete(id, true).catch(() => {});
  // Conmon, if alive, writes the exit file and runs cleanup; the directory goes regardless.
  await releaseRun(ctx, id, r, options.unmounter, options.known);
  const gone = join(ctx.containers.containersDir, `.removing-${id}`);
  try {
    renameSync(ctx.containers.dir(id), gone);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // removed meanwhile
    throw err;
  }
  // Kept for `wait` after the rename: an exit file its monitor wrote before came along; one it
  // writes after fails (the directory is gone), and that monitor keeps the code itself.
  if (!options.exitCodeKept)
    ctx.containers.keepExitCode(id, options.exitCode ?? ctx.containers.exitCode(id, gone));
  ctx.containers.releaseName(r.name, id);
  rmSync(gone, { recursive: true, force: true });
  // conmon's link to the attach socket, which it removes only when it exits normally.
  unlinkIfPresent(join(ctx.runRoot, "socket", id));
  ctx.trace?.mark("engine: container directory removed");
  emitEvent(ctx, "container", "destroy", id, containerAttributes(r));
  if (options.volumes || r.options.autoRemove) {
    for (const v of r.volumes) {
      if (!v.anonymous) continue;
      // Not one another container uses (--volumes-from): Docker leaves it to the last one's rm -v.
      try {
        ctx.volumes.remove(v.name, volumeUsers(ctx, v.name, id));
      } catch {}
    }
  }
}
