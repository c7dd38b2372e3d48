// Starting a container: detached under conmon (`pivot start`, `run -d`), joined to this terminal
// through conmon's attach socket (`run -it`, `start -ai`), or attached with this process as its
// monitor (`pivot run`, `start -a`, the library's default).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LaunchError } from "../errors.ts";
import { isMountPoint, mountOverlay, overlayMountError } from "../image/overlay.ts";
import { procStat } from "../runtime/state.ts";
import { stream } from "../util/lazy-require.ts";
import { randomHex } from "../util/random.ts";
import { writeAllSync } from "../util/write-fd.ts";
import { closeConsole, openConsole, type TtyConsole, wireConsole } from "./console.ts";
import { emitStartEvents, forgetRunEnd } from "./container-events.ts";
import {
  connectNetwork,
  isUserModeNetwork,
  joinNetworkOf,
  startUserModeNetwork,
} from "./container-network.ts";
import { cgroupPathsOf, monitorAlive, rt, runtimeCommandOf, status } from "./container-runtime.ts";
import { type ContainerRecord, type RunState, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { composedSpec, createLocked, newContainerId, rootToMount } from "./create.ts";
import { EngineError } from "./errors.ts";
import { type AttachResult, ContainerHandle } from "./handle.ts";
import { startHealthTimer } from "./health-timer.ts";
import { cleanup, cleanupLocked, removeLocked, wait } from "./lifecycle.ts";
import { logConfigOf } from "./log-config.ts";
import { LogWriter, startConmon } from "./monitor.ts";
import { finishPendingUpdate } from "./pending-update.ts";
import { joinPidNamespaceOf } from "./pid-namespace.ts";
import { drainPipe, feedStdin } from "./pipes.ts";
import {
  beginManualStart,
  checkRestartOptions,
  exitCommand,
  policyOf,
  spawnExitCommand,
} from "./restart-state.ts";
import { ExitPipe } from "./slirp4netns.ts";
import { attachHelper, TTY_DETACHED, type TtyHelper } from "./tty.ts";
import type { ContainerOptions } from "./types.ts";

/** A container ready for the runtime's create; its network is connected once `connected` is. */
interface Prepared {
  r: ContainerRecord;
  /** Awaited before the runtime's start (connectNetwork): the ADD runs beside the create. */
  connected: Promise<void>;
  /** A network is being connected (false: `connected` is resolved already). */
  connecting: boolean;
}

async function prepareStart(
  ctx: EngineContext,
  id: string,
  restart = false,
  created?: ContainerRecord,
): Promise<Prepared> {
  if (created) {
    // Just created, its lock held since: never started, no exit or run state, no runtime state,
    // its overlay mounted; only the network is left to do.
    const { connected, connecting } = await connectNetwork(ctx, created);
    joinNetworkOf(ctx, created);
    joinPidNamespaceOf(ctx, created);
    return { r: created, connected, connecting };
  }
  // An update killed between its record and config.json: finished before config.json is used.
  const r = finishPendingUpdate(ctx, id, ctx.containers.load(id));
  const st = status(ctx, id);
  if (st.status === "running" || st.status === "paused") {
    throw new EngineError(`container ${r.name} is already running`);
  }
  // A start by hand, not by the restart policy: RestartCount and the manual stop are forgotten.
  if (!restart) beginManualStart(ctx, id, r.name);
  forgetRunEnd(ctx, id);
  rmSync(join(ctx.containers.dir(id), "exit"), { force: true });
  rmSync(join(ctx.containers.dir(id), "state.json"), { force: true });
  if (!(await isMountPoint(r.overlay.target))) await mountOverlay(r.overlay);
  if (rt(ctx, id).store.exists(id)) await rt(ctx, id).delete(id, true);
  const { connected, connecting } = await connectNetwork(ctx, r);
  joinNetworkOf(ctx, r);
  joinPidNamespaceOf(ctx, r);
  return { r, connected, connecting };
}

/**
 * What a failed start reports: a failed network connect if there was one (the create that ran
 * beside it may have failed too, or been aborted for it), else ERR. Waits for a connect under
 * way.
 */
function causeOf(err: unknown, connected: Promise<void>): Promise<unknown> {
  return connected.then(
    () => err,
    (networkErr: unknown) => networkErr,
  );
}

/** Starts a created or exited container detached, under conmon (`pivot start`). */
export async function start(ctx: EngineContext, ref: string): Promise<ContainerHandle> {
  const id = ctx.containers.resolveId(ref);
  return ctx.containers.withLock(id, () => startLocked(ctx, id));
}

/**
 * Starts a container under conmon and joins this terminal to it before its process starts
 * (`pivot start -ai`): the detach keys leave it running, as `pivot attach`.
 */
export async function startAndAttach(
  ctx: EngineContext,
  ref: string,
  options: AttachOptions = {},
): Promise<AttachResult> {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  let helper: TtyHelper | null = null;
  await ctx.containers
    .withLock(id, () =>
      startLocked(ctx, id, async () => {
        helper = await attachTo(ctx, id, r, options);
      }),
    )
    .catch((err) => {
      (helper as TtyHelper | null)?.child.kill("SIGTERM");
      throw err;
    });
  return attachedEnd(ctx, id, helper!);
}

/**
 * Creates a container and starts it under conmon with this terminal joined (`pivot run -it`),
 * under one hold of its lock, as `runDetached`: a run that dies in between leaves a Created
 * container marked as a run's, which recovery removes if it is --rm. `onCreated` gets the id
 * before the start (the CLI forwards signals to it).
 */
export async function runAndAttach(
  ctx: EngineContext,
  options: ContainerOptions,
  attach: AttachOptions = {},
  onCreated?: (id: string) => void,
): Promise<AttachResult> {
  checkRestartOptions(options, () => ctx.conmonPath !== null);
  const id = newContainerId();
  let helper: TtyHelper | null = null;
  await ctx.containers.withLock(id, async () => {
    const r = await createLocked(ctx, options, id, true);
    onCreated?.(id);
    try {
      await startLocked(ctx, id, async () => {
        helper = await attachTo(ctx, id, r, attach);
      });
    } catch (err) {
      (helper as TtyHelper | null)?.child.kill("SIGTERM");
      // The start is undone already (the container is Created); --rm goes on to remove it.
      if (options.autoRemove) await removeLocked(ctx, id, { force: true }).catch(() => {});
      throw err;
    }
  });
  return attachedEnd(ctx, id, helper!);
}

interface AttachOptions {
  detachKeys?: string;
  stdio?: "inherit" | "pipe";
}

/** pivot-tty in attach mode on the container's conmon socket (before its process is released). */
function attachTo(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  options: AttachOptions,
): Promise<TtyHelper> {
  const dir = ctx.containers.dir(id);
  return attachHelper(join(dir, "attach"), {
    ctl: join(dir, "ctl"),
    stdin: r.options.stdin ?? false,
    stdio: options.stdio ?? "inherit",
    ...(options.detachKeys !== undefined ? { detachKeys: options.detachKeys } : {}),
  });
}

/** Until the terminal detaches (the container runs on) or the container exits (its code). */
async function attachedEnd(
  ctx: EngineContext,
  id: string,
  helper: TtyHelper,
): Promise<AttachResult> {
  const code = await helper.exited;
  if (code === TTY_DETACHED) return { id, detached: true, exitCode: null };
  return { id, detached: false, exitCode: await wait(ctx, id) };
}

/**
 * Starts a container under conmon, its lock held; `restart`: by its restart policy (restart.ts),
 * whose `beforeStart` check runs after the runtime's create and before the process is released.
 */
export async function startLocked(
  ctx: EngineContext,
  id: string,
  beforeStart?: () => Promise<void>,
  restart = false,
): Promise<ContainerHandle> {
  // Before anything is prepared: a refused start leaves no network behind.
  if (!ctx.conmonPath) {
    throw new EngineError("detached containers need conmon, which is not installed", {
      hint: "install it (apt-get install conmon), or run the container attached (without -d)",
    });
  }
  const { r, connected } = await prepareStart(ctx, id, restart);
  const runId = randomHex(8);
  const dir = ctx.containers.dir(id);
  const pidFile = join(dir, "pidfile");
  const conmonPidFile = join(dir, "conmon.pid");
  rmSync(pidFile, { force: true });
  rmSync(conmonPidFile, { force: true }); // this start's conmon only (forgetFailedStart)
  const socketDir = join(ctx.runRoot, "socket");
  mkdirSync(socketDir, { recursive: true, mode: 0o700 });
  // slirp4netns (pasta's watcher) ends when conmon, the only writer of its exit FIFO, is gone.
  let slirp: ExitPipe | null = null;
  try {
    if (isUserModeNetwork(r.options)) slirp = ExitPipe.create(dir);
    const pid = await startConmon({
      conmon: ctx.conmonPath,
      id,
      name: r.name,
      bundle: dir,
      runtime: runtimeCommandOf(ctx, r),
      ...(r.options.runtime ? { otherRuntime: r.options.runtime } : {}),
      pidFile,
      conmonPidFile,
      logPath: join(dir, "ctr.log"),
      log: logConfigOf(r.options),
      persistDir: dir,
      socketDir,
      tty: r.options.tty ?? false,
      stdin: r.options.stdin ?? false,
      exitCommand: exitCommand(ctx, id, runId),
      ...(slirp ? { extraFds: [slirp.writeFd] } : {}),
    });
    const conmonPid = Number(readFileSync(conmonPidFile, "utf8").trim());
    writeJsonAtomic(join(dir, "state.json"), {
      runId,
      startedAt: new Date().toISOString(),
      monitor: "conmon",
      monitorPid: conmonPid,
      monitorStart: procStat(conmonPid)?.startTime ?? "",
      pid,
      ...cgroupPathsOf(ctx, id),
    } satisfies RunState);
    await connected; // the ADD ran while conmon had the runtime create the container
    if (slirp) await startUserModeNetwork(ctx, id, r.options, pid, slirp);
    await beforeStart?.();
    await rt(ctx, id).start(id);
  } catch (err) {
    const cause = await causeOf(err, connected);
    await cleanupLocked(ctx, id, { keepOnFailure: true }).catch(() => {});
    forgetFailedStart(ctx, id, runId);
    throw cause;
  } finally {
    slirp?.close();
  }
  startHealthTimer(ctx, id, r, ctx.containers.runState(id));
  emitStartEvents(ctx, id, r);
  return new ContainerHandle(id, r.name, null, null, null, () => wait(ctx, id));
}

/**
 * A detached start that failed once conmon ran (a port in use, a failed connect or start, a
 * runtime whose create failed): its conmon is ended before it records an exit code for a process
 * that never ran (or, its runtime having failed, before this start returns), and the run's state
 * goes, so the container stays Created, as Docker's does, not Exited (137). Its exit hook, if
 * conmon started it, finds no run of its own.
 */
function forgetFailedStart(ctx: EngineContext, id: string, runId: string): void {
  const dir = ctx.containers.dir(id);
  const rs = ctx.containers.runState(id);
  let conmon: { pid: number; start: string } | null = null;
  if (rs?.runId === runId) conmon = { pid: rs.monitorPid, start: rs.monitorStart };
  else if (!rs) {
    // No state.json yet: conmon.pid, if conmon got that far, checked by its command line.
    const pid = Number(readText(join(dir, "conmon.pid")).trim());
    if (pid > 0 && readText(`/proc/${pid}/cmdline`).includes(id))
      conmon = { pid, start: procStat(pid)?.startTime ?? "" };
  } else return; // another run's state (a restart's previous run): not this start's
  if (conmon) {
    const { pid, start } = conmon;
    try {
      if (monitorAlive(pid, start)) process.kill(pid, "SIGKILL");
    } catch {}
    for (let i = 0; i < 200 && monitorAlive(pid, start); i++)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  for (const f of ["state.json", "exit", "pidfile", "conmon.pid"])
    rmSync(join(dir, f), { force: true });
}

/** A file's text, "" if it cannot be read. */
function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** Starts a container with this process as its monitor (`pivot start -a`). */
export async function startAttached(
  ctx: EngineContext,
  ref: string,
  stdio: "pipe" | "inherit" | "ignore" = "pipe",
): Promise<ContainerHandle> {
  const id = ctx.containers.resolveId(ref);
  // The lock is held until state.json says who runs the container (runPrepared): a start that
  // dies before that leaves a free lock, which recovery takes to undo it.
  return ctx.containers.withLock(id, async () =>
    runPrepared(ctx, id, await prepareStart(ctx, id), stdio),
  );
}

/**
 * Creates a container and starts it with this process as its monitor (`pivot run`, the library's
 * `Engine.run`), its lock held from the create to the start as a created container's start would
 * take it: nothing can have touched it in between, so the start skips what a stopped container's
 * needs (its exit and run state, a remount, the runtime's leftovers).
 */
export async function runAttached(
  ctx: EngineContext,
  options: ContainerOptions,
  stdio: "pipe" | "inherit" | "ignore" = "pipe",
  onCreated?: (id: string) => void,
): Promise<ContainerHandle> {
  checkRestartOptions(options, () => ctx.conmonPath !== null);
  const id = newContainerId();
  return ctx.containers.withLock(id, async () => {
    const record = await createLocked(ctx, options, id, true, true);
    onCreated?.(id);
    return runPrepared(ctx, id, await prepareStart(ctx, id, false, record), stdio);
  });
}

/**
 * Creates a container and starts it under conmon (`pivot run -d`), its lock held from the create
 * to the start: a run that dies in between leaves a free lock on a Created container marked as a
 * run's, which recovery removes if it is --rm (nobody else would ever start or remove it).
 */
export async function runDetached(
  ctx: EngineContext,
  options: ContainerOptions,
  onCreated?: (id: string) => void,
): Promise<ContainerHandle> {
  checkRestartOptions(options, () => ctx.conmonPath !== null);
  const id = newContainerId();
  return ctx.containers.withLock(id, async () => {
    await createLocked(ctx, options, id, true);
    try {
      onCreated?.(id);
      return await startLocked(ctx, id);
    } catch (err) {
      // The start is undone already (the container is Created); --rm goes on to remove it.
      if (options.autoRemove) await removeLocked(ctx, id, { force: true }).catch(() => {});
      throw err;
    }
  });
}

/**
 * The attached monitor's record of the exit: the exit file and the run's finish time. False if
 * the container was removed meanwhile (its directory renamed away by `rm -f`).
 */
function recordExit(ctx: EngineContext, id: string, code: number): boolean {
  const dir = ctx.containers.dir(id);
  try {
    writeFileSync(join(dir, "exit"), String(code));
    const rs = ctx.containers.runState(id);
    if (rs)
      writeJsonAtomic(join(dir, "state.json"), { ...rs, finishedAt: new Date().toISOString() });
    return true;
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === "ENOENT" &&
      !existsSync(join(dir, "container.json"))
    )
      return false;
    throw err;
  }
}

/**
 * An attached --rm container has exited: removed at once, with no exit record written first (an
 * exit file and a state.json: three file operations on a directory about to go, ~0.5-3 ms on
 * ext4). Its code is kept for `pivot wait` before the removal begins, not by it: a `wait` that
 * finds the directory renamed away must find the code, and so must one after this process was
 * killed during the removal (recovery removes the container then, with no exit file to keep).
 * The record is written only if the container stays: its removal failed.
 */
async function removeAfterExit(
  ctx: EngineContext,
  id: string,
  runId: string,
  code: number,
): Promise<void> {
  ctx.trace?.mark("engine: output drained");
  ctx.containers.keepExitCode(id, code);
  try {
    await cleanup(ctx, id, { runId, exited: true, exitCode: code, exitCodeKept: true });
  } catch (err) {
    recordExit(ctx, id, code);
    throw err;
  }
  if (
    existsSync(join(ctx.containers.dir(id), "container.json")) &&
    ctx.containers.runState(id)?.runId === runId
  ) {
    recordExit(ctx, id, code); // not removed (kept on a failure): its exit is known
  }
}

/** A start that failed before the container ran, undone under the lock its caller holds. */
async function undoStart(ctx: EngineContext, id: string, r: ContainerRecord): Promise<void> {
  await cleanupLocked(ctx, id, { keepOnFailure: true }).catch(() => {});
  if (r.options.autoRemove) await removeLocked(ctx, id, { force: true }).catch(() => {});
}

/**
 * Runs a prepared container with this process as its monitor; called with the container's lock
 * held, it returns once state.json is written (or the start failed), and the lock can go.
 */
async function runPrepared(
  ctx: EngineContext,
  id: string,
  { r, connected, connecting }: Prepared,
  stdio: "pipe" | "inherit" | "ignore",
): Promise<ContainerHandle> {
  const runId = randomHex(8);
  const dir = ctx.containers.dir(id);
  const log = new LogWriter(join(dir, "ctr.log"), logConfigOf(r.options));
  const wantStdin = r.options.stdin ?? false;
  const outs = {
    stdout: stdio === "pipe" ? new (stream().PassThrough)() : null,
    stderr: stdio === "pipe" ? new (stream().PassThrough)() : null,
  };
  const stdinStream = wantStdin && stdio === "pipe" ? new (stream().PassThrough)() : null;
  let streamsDone: Promise<unknown> = Promise.resolve();
  // -t: pivot-tty receives the pty master and joins it to this process's terminal or to pipes.
  let tty: TtyConsole | null = null;
  if (r.options.tty) {
    try {
      tty = await openConsole(ctx, id, runId, stdio, wantStdin);
    } catch (err) {
      log.close();
      await undoStart(ctx, id, r);
      throw err;
    }
    streamsDone = wireConsole(tty, stdinStream, outs.stdout, log);
  }
  let started!: () => void;
  const startedP = new Promise<void>((res) => {
    started = res;
  });
  const me = procStat(process.pid)?.startTime ?? "";
  ctx.trace?.mark("engine: monitor ready (log, streams)");
  // slirp4netns or pasta: started between create and start; this process holds the writer of
  // their exit FIFO.
  const slirp = isUserModeNetwork(r.options) ? ExitPipe.create(dir) : null;
  // Between the runtime's create and start: the network's ADD, which ran during the create, is
  // waited for; slirp4netns or pasta are started. Another OCI runtime has no such hook (and
  // refuses one): there the ADD is waited for before its run.
  // Nothing to wait for (no network, or one joined: none, host, container:NAME): no hook, and
  // the runtime saves its record once fewer (a write and a rename, ~0.3-1 ms on ext4).
  const viaHook = (!r.options.runtime || slirp !== null) && (connecting || slirp !== null);
  const onCreated = async (pid: number) => {
    await connected;
    if (slirp) await startUserModeNetwork(ctx, id, r.options, pid, slirp);
  };
  // Pivot's runtime takes the config composed by this process's create in memory, and mounts the
  // overlay that create left for it, first thing in the launcher that runs the container.
  const spec = r.options.runtime ? undefined : composedSpec(r);
  const toMount = r.options.runtime ? undefined : rootToMount(r);
  const runP = (viaHook ? Promise.resolve() : connected)
    .then(() =>
      rt(ctx, id).run(id, {
        ...(viaHook ? { onCreated } : {}),
        // Pivot's own runtime unmounts the overlay as the container exits, in the launcher that
        // ran it: no launcher of its own for the unmount afterwards (cleanup finds it done).
        ...(!r.options.runtime && (r.overlay.driver ?? "overlay") === "overlay"
          ? { unmountAfterExit: r.overlay.target }
          : {}),
        bundle: dir,
        ...(spec ? { spec } : {}),
        ...(toMount
          ? {
              mountFirst: {
                source: "overlay",
                target: toMount.target,
                fstype: "overlay",
                data: toMount.options,
                cwd: toMount.cwd,
              },
            }
          : {}),
        ...(tty
          ? { consoleSocket: tty.socket, stdio: ["ignore", "ignore", "ignore"] }
          : {
              stdio: [
                wantStdin ? (stdio === "inherit" ? "inherit" : "pipe") : "ignore",
                "pipe",
                "pipe",
              ],
            }),
        onLaunch: (pipes) => {
          if (tty) return;
          const waits: Promise<unknown>[] = [];
          for (const name of ["stdout", "stderr"] as const) {
            const src = pipes[name];
            if (!src) continue;
            waits.push(
              drainPipe(src, (chunk) => {
                log.write(name, chunk);
                // This process's stdout gone (`pivot run IMAGE yes | head -1`): the container's
                // stdout is closed too, and its writer ends on SIGPIPE as it would in the shell,
                // rather than running on with every byte going to the log.
                if (stdio === "inherit") return writeAllSync(name === "stdout" ? 1 : 2, chunk);
                outs[name]?.write(chunk);
                return undefined;
              }),
            );
          }
          streamsDone = Promise.all(waits);
          if (stdinStream && pipes.stdin) feedStdin(stdinStream, pipes.stdin);
        },
        onStart: (pid, cgroupPaths?: Record<string, string>) => {
          writeJsonAtomic(join(dir, "state.json"), {
            runId,
            startedAt: new Date().toISOString(),
            monitor: "inline",
            monitorPid: process.pid,
            monitorStart: me,
            pid,
            // Pivot's runtime hands its record's paths over; another runtime's are looked up.
            ...(cgroupPaths ? { cgroupPaths } : cgroupPathsOf(ctx, id)),
          } satisfies RunState);
          started();
        },
      }),
    )
    .catch(async (err: unknown) => {
      throw await causeOf(err, connected);
    });
  const exited = (async () => {
    let code: number;
    try {
      code = await runP;
    } catch (err) {
      slirp?.close();
      throw err;
    } finally {
      if (tty) await closeConsole(tty, runP);
      await streamsDone;
      outs.stdout?.end();
      outs.stderr?.end();
      log.close();
    }
    if (r.options.autoRemove && !policyOf(r.options)) {
      await removeAfterExit(ctx, id, runId, code).finally(() => slirp?.close());
      return code;
    }
    if (!recordExit(ctx, id, code)) {
      // Removed meanwhile (`rm -f` from elsewhere killed it and took its directory): nothing is
      // left to record or clean up, and the run ends with the code, as Docker's attached run.
      // The removal found no exit file yet: the code is kept for `pivot wait ID` here.
      ctx.containers.keepExitCode(id, code);
      slirp?.close();
      return code;
    }
    ctx.trace?.mark("engine: output drained, exit recorded");
    // With a restart policy, the exit hook restarts it under conmon, in a process of its own.
    if (policyOf(r.options)) spawnExitCommand(ctx, id, runId);
    else await cleanup(ctx, id, { runId, exitCode: code });
    slirp?.close();
    return code;
  })();
  try {
    await Promise.race([startedP, exited]);
  } catch (err) {
    await undoStart(ctx, id, r);
    // The overlay's mount by the container's launcher: the hints of the engine's own mount.
    if (
      toMount &&
      err instanceof LaunchError &&
      err.message.includes(`(mount overlay on ${toMount.target})`)
    )
      throw await overlayMountError(toMount.target, err, toMount);
    throw err;
  }
  exited.catch(() => {});
  startHealthTimer(ctx, id, r, ctx.containers.runState(id));
  emitStartEvents(ctx, id, r);
  return new ContainerHandle(id, r.name, stdinStream, outs.stdout, outs.stderr, () => exited);
}
