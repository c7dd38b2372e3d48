// The launcher client: starts the C launcher, sends it a plan, and answers its events.
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import { LaunchError, PivotError } from "../errors.ts";
import { childProcess } from "../util/child-process.ts";
import { os } from "../util/lazy-require.ts";
import { diagnoseExecEnoent } from "./diagnose.ts";
import { PROC_BIND_DESTINATIONS } from "./linux.ts";
import { type BunFileSink, bunPipes, type PipedStdio, pipedStdioOf } from "./piped-stdio.ts";
import type { Plan } from "./plan.ts";
import {
  dropSealedCopy,
  execPathOf,
  keepSealedCopy,
  noteLauncherStart,
  wantsSealedCopyReport,
} from "./sealed-copy.ts";
import { signalName } from "./signals.ts";
import { procStat } from "./state.ts";
import type { Trace } from "./trace.ts";
import {
  type Arg,
  Event,
  encodeMessage,
  encodeMessages,
  type Message,
  MessageReader,
  Op,
  Reply,
  SyncPoint,
} from "./wire.ts";

let foundLauncher: string | undefined;

/**
 * Where the built launcher lives: $PIVOT_LAUNCHER, native/build next to the sources (or to a
 * bundle in dist/), or, for the compiled single binary, beside it or in ../native/build.
 */
export function launcherPath(): string {
  const fromEnv = process.env.PIVOT_LAUNCHER;
  if (fromEnv) return fromEnv;
  // Looked for once per process: a run asks twice (the seccomp cache, the spawn).
  foundLauncher ??= findLauncher();
  return foundLauncher;
}

function findLauncher(): string {
  const here = dirname(decodeURIComponent(new URL(import.meta.url).pathname));
  for (const candidate of [
    join(here, "../../native/build/pivot-launcher"),
    join(here, "../native/build/pivot-launcher"),
    join(dirname(process.execPath), "pivot-launcher"),
    join(dirname(process.execPath), "../native/build/pivot-launcher"),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  return join(here, "../../native/build/pivot-launcher");
}

let errnoNames: Map<number, string> | undefined;

export function errnoName(errno: number): string {
  errnoNames ??= new Map(
    Object.entries(os().constants.errno).map(([name, value]) => [value as number, name]),
  );
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

const errnoText: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EEXIST: "file exists",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EINVAL: "invalid argument",
  EBUSY: "device or resource busy",
  ELOOP: "too many levels of symbolic links",
  EXDEV: "path resolves outside the root filesystem",
  ENOSPC: "no space left on device",
  ETIMEDOUT: "timed out",
  ECANCELED: "failed",
  ENAMETOOLONG: "name too long",
  EROFS: "read-only file system",
  ENODEV: "no such device",
  ENOSYS: "not supported by this kernel",
};

/** Steps that mount onto a path inside the root filesystem (and check where it landed). */
const MOUNT_IN_ROOT_OPS: ReadonlySet<number> = new Set([
  Op.MountInRoot,
  Op.MountInRootNoSymlinks,
  Op.BindInRoot,
  Op.MoveMountInRoot,
]);

function hintFor(errnoName: string, stepOp: number, detail = ""): string | undefined {
  if (MOUNT_IN_ROOT_OPS.has(stepOp) && errnoName === "EACCES") {
    const onKernelFs = / is on (procfs|sysfs)\b/.exec(detail);
    if (onKernelFs?.[1] === "procfs")
      return `a symlink in the root filesystem (such as /dev -> /proc) leads the destination onto procfs, or the config mounts over a file of /proc: only binds onto ${[...PROC_BIND_DESTINATIONS].join(", ")} (the files lxcfs provides) and fresh proc mounts may land there; fix the image's symlink or the mount's destination`;
    if (onKernelFs?.[1] === "sysfs")
      return "a symlink in the root filesystem leads the destination onto sysfs: only destinations the config itself puts under /sys, and fresh sysfs and proc mounts, may land there; fix the image's symlink or the mount's destination";
  }
  if (stepOp === Op.FindExecutable || stepOp === Op.Exec) {
    if (errnoName === "ENOENT")
      return "check process.args[0] and the PATH in process.env; the program must exist inside the root filesystem";
    if (errnoName === "EACCES") return "the program is not executable by the container's user";
  }
  if (stepOp === Op.ForkSetup && errnoName === "EAGAIN")
    return "the container's cgroup is at its pids limit (pids.max), or the host at its process limit";
  if (stepOp === Op.ForkSetup && errnoName === "ENOENT")
    return "the container's cgroup is gone: the container may have exited";
  if (stepOp === Op.ForkSetup && errnoName === "EBUSY")
    return "the cgroup v2 directory has controllers enabled for children, so no process may join it (the no-internal-processes rule)";
  if (stepOp === Op.Chdir && errnoName === "ENOENT")
    return "process.cwd must exist inside the root filesystem";
  if (stepOp === Op.Chdir && errnoName === "ENOTDIR")
    return "process.cwd (-w, or the image's WorkingDir) names a file in the root filesystem: give a directory";
  if (stepOp === Op.Chdir && errnoName === "EXDEV")
    return "process.cwd must be a directory inside the root filesystem, not a path through /proc/self/fd";
  if (errnoName === "EXDEV") return "a mount destination must stay inside the root filesystem";
  if (errnoName === "EROFS") {
    return "the destination is on a read-only filesystem: create the mount point in the image, or mount a writable filesystem above it";
  }
  if (errnoName === "ELOOP")
    return "a symbolic link on the path loops, or points through a /proc magic link";
  if (errnoName === "EPERM")
    return "this needs privileges the runtime lacks here (run as root, or check the user namespace mappings)";
  return undefined;
}

export type StdioSpec = "inherit" | "ignore" | "pipe" | number;

/**
 * Called at each sync point; throw to abort the launch. A returned string is passed on as the hook
 * state; an array passes the hook state and then the seccomp listener state.
 */
export type SyncHandler = (
  point: number,
  pid: number,
) => Promise<string | string[] | undefined> | string | string[] | undefined;

export interface LaunchOptions {
  /** The container's stdin, stdout and stderr: "inherit", "ignore", "pipe", or file descriptors. */
  stdio?: StdioSpec[];
  /** Extra fds passed to the container as 3, 4, ... (--preserve-fds). */
  preservedFds?: number[];
  onSync: SyncHandler;
  /** --trace: the launcher reports the time after every step, and sync points are marked. */
  trace?: Trace;
}

/** The part of Bun's API the launch uses (not imported: library code must load under Node). */
interface BunSubprocess {
  readonly pid: number;
  readonly stdio: readonly (number | null | undefined)[];
  /** With "pipe" at those indexes of stdio: a FileSink, ReadableStreams (async iterable). */
  readonly stdin: BunFileSink | number | null | undefined;
  readonly stdout: AsyncIterable<Uint8Array> | number | null | undefined;
  readonly stderr: AsyncIterable<Uint8Array> | number | null | undefined;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: number | string): void;
  unref(): void;
}
interface ControlReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
  cancel(): Promise<void>;
}
interface BunApi {
  spawn(cmd: string[], options: { argv0?: string; stdio: (string | number)[] }): BunSubprocess;
  file(fd: number): { stream(): { getReader(): ControlReader } };
}

/**
 * Bun's API when running under Bun: Bun.spawn starts a process in ~1 ms, child_process in ~10,
 * and its pipes are web streams, where node:child_process's load node:stream and node:net (~2.5
 * ms of start-up).
 */
function bunApi(): BunApi | undefined {
  return (globalThis as { Bun?: BunApi }).Bun;
}

/** write(2) all of buf to a (non-blocking) socket, waiting briefly while its buffer is full. */
function writeAllSync(fd: number, buf: Buffer): void {
  let at = 0;
  while (at < buf.length) {
    try {
      at += writeSync(fd, buf, at, buf.length - at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** One running launcher: resolves readiness, the init's pid and its exit. */
export class LaunchSession {
  /** The launcher as a node ChildProcess: set when started through node:child_process. */
  readonly child: ChildProcess | undefined;
  /** The launcher when started with Bun.spawn. */
  private readonly bunChild: BunSubprocess | undefined;
  /** The caller's ends of the container's "pipe" stdio entries. */
  readonly pipes: PipedStdio;
  initPid = 0;
  /** The init's start time (/proc/PID/stat), read when its pid arrives: with the pid it names
   *  that one process, whose pid may be another's once it is reaped. "" if gone by then. */
  initStartTime = "";
  /** The control socket: a node stream (node:child_process), or a plain fd (Bun.spawn). */
  private readonly control: Duplex | undefined;
  private controlFd = -1;
  private controlReader: ControlReader | undefined;
  private onSync: SyncHandler;
  private readonly trace: Trace | undefined;
  private readonly reader = new MessageReader();
  private queue: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private readonly readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** The init reached SyncPoint.Start and waits for startInit(). */
  private initWaitsForStart = false;
  /** Event.Executed came (plans with Op.ReportExec). */
  private executed = false;
  private readonly executedWaiters: (() => void)[] = [];
  private readonly exitWaiters: {
    resolve: (status: number) => void;
    reject: (e: Error) => void;
  }[] = [];
  private readonly closeWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private ready = false;
  private exitStatus: number | null = null;
  private closed = false;
  private closing = false;
  /**
   * The init's pid comes from the setup process, the init's own events (a later sync point,
   * Ready) from the init: under load the init's can arrive first. Those wait for the pid.
   */
  private readonly initPidWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  /** The launcher's file (what it runs is its sealed copy; see keepSealedCopy), and its
   *  identity (device, inode, size, mtime) when this launcher was started. */
  private readonly launcherBinary: string;
  private readonly launcherFileId: string | null;
  /** Op.ReportSealedCopy was sent, and its answer not yet received. */
  private sealedCopyAsked = false;

  /** The plan: given at once, or later with sendPlan (a launcher spawned ahead of it). */
  private plan: Plan | undefined;

  constructor(plan: Plan | undefined, options: LaunchOptions) {
    this.onSync = options.onSync;
    this.trace = options.trace;
    const stdio = options.stdio ?? ["inherit", "inherit", "inherit"];
    const preserved = options.preservedFds ?? [];
    const controlFd = 3 + preserved.length;
    const path = launcherPath();
    this.launcherBinary = path;
    this.launcherFileId = noteLauncherStart(path);
    if (!existsSync(path)) {
      throw new PivotError(`the launcher ${path} does not exist`, {
        hint: "build it with `make -C native` (the setup script does this), or set PIVOT_LAUNCHER",
      });
    }
    const execPath = execPathOf(path, this.launcherFileId, controlFd);
    const bun = bunApi();
    if (bun) {
      const spawn = (file: string) =>
        bun.spawn([file, String(controlFd)], {
          argv0: path,
          stdio: [...stdio.slice(0, 3), ...preserved, "pipe"],
        });
      let proc: BunSubprocess;
      try {
        try {
          proc = spawn(execPath);
        } catch (err) {
          if (execPath === path) throw err;
          dropSealedCopy(); // the copy would not start: from the file, which makes its own
          proc = spawn(path);
        }
      } catch (err) {
        throw new PivotError(`could not start the launcher ${path}: ${(err as Error).message}`, {
          hint: "build it with `make -C native` (the setup script does this)",
        });
      }
      this.bunChild = proc;
      this.pipes = bunPipes(proc);
      const fd = proc.stdio[controlFd];
      if (typeof fd !== "number")
        throw new PivotError("could not open the control socket to the launcher");
      this.controlFd = fd;
      this.trace?.mark("launcher spawned (spawn() returned)");
      void this.readControl(bun, fd);
      if (plan) this.sendPlan(plan);
      return;
    }
    this.child = childProcess().spawn(execPath, [String(controlFd)], {
      argv0: path,
      stdio: [...stdio.slice(0, 3), ...preserved, "pipe"],
    });
    this.pipes = pipedStdioOf(this.child);
    const control = this.child.stdio[controlFd];
    if (!control) throw new PivotError("could not open the control socket to the launcher");
    this.control = control as Duplex;
    this.child.on("error", (err) => {
      this.fail(
        new PivotError(`could not start the launcher ${launcherPath()}: ${err.message}`, {
          hint: "build it with `make -C native` (the setup script does this)",
        }),
      );
    });
    this.control.on("data", (chunk: Buffer) => this.onData(chunk));
    this.control.on("close", () => this.controlEnded());
    this.control.on("error", () => {});
    this.trace?.mark("launcher spawned (spawn() returned)");
    if (plan) this.sendPlan(plan);
  }

  /**
   * Sends the plan, in one write. A launcher spawned without one (spawnLauncher) starts up
   * meanwhile and waits for it; dropped without one (detach), it reads the end and exits.
   */
  sendPlan(plan: Plan, onSync?: SyncHandler): void {
    if (this.plan) throw new PivotError("the launcher has its plan already");
    this.plan = plan;
    if (onSync) this.onSync = onSync;
    const messages: { code: number; args: readonly Arg[] }[] = [];
    // The launcher ties its clock to this process's performance.now() with it (both monotonic;
    // a wall clock drifts from performance.now() by ~0.3 ms per second a process lives).
    if (this.trace) messages.push({ code: Op.Trace, args: [Math.round(performance.now() * 1000)] });
    // Until this process holds a sealed copy of this launcher, a launcher after its first one
    // reports its own.
    if (wantsSealedCopyReport(this.launcherBinary)) {
      messages.push({ code: Op.ReportSealedCopy, args: [] });
      this.sealedCopyAsked = true;
    }
    for (const step of plan.steps) messages.push({ code: step.op, args: step.args });
    messages.push({ code: Op.End, args: [] });
    this.send(encodeMessages(messages));
  }

  /** Bun.spawn path: reads the control socket until every holder of its other end is gone. */
  private async readControl(bun: BunApi, fd: number): Promise<void> {
    const reader = bun.file(fd).stream().getReader();
    this.controlReader = reader;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || !value) break;
        this.onData(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      }
    } catch {
      // Cancelled by detach(), or a read error: treated as the end.
    }
    if (this.controlReader !== reader) return; // detached
    this.controlEnded();
  }

  private onData(chunk: Buffer): void {
    let messages: Message[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const m of messages) {
      // Not queued: a queued event from the init may be waiting for it.
      if (m.code === Event.SealedCopy) {
        // Once, and only when asked; a report that does not parse only costs the shared copy.
        if (!this.sealedCopyAsked) continue;
        this.sealedCopyAsked = false;
        try {
          const [dev, ino, seals] = m.args.map((a) => BigInt(a as number | bigint));
          keepSealedCopy(this.launcherBinary, this.launcherFileId, this.launcherPid, {
            dev: dev!,
            ino: ino!,
            seals: seals!,
          });
        } catch {}
        continue;
      }
      if (m.code === Event.InitPid) {
        this.initPid = m.args[0] as number;
        this.initStartTime = procStat(this.initPid)?.startTime ?? "";
        for (const w of this.initPidWaiters.splice(0)) w.resolve();
        continue;
      }
      // A handler that throws must fail the launch, not stall every event after it.
      this.queue = this.queue
        .then(() => this.handle(m))
        .catch((err: unknown) => this.fail(asError(err)));
    }
  }

  /** The init's pid (an exec's process) once it is forked; rejects if the launch fails first. */
  initPidKnown(): Promise<number> {
    return this.whenInitPid().then(() => this.initPid);
  }

  /** Resolves once the init's pid is known; rejects if the launch fails or ends first. */
  private whenInitPid(): Promise<void> {
    if (this.initPid > 0) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing)
      return Promise.reject(new PivotError("the launcher exited without reporting the init's pid"));
    return new Promise((resolve, reject) => this.initPidWaiters.push({ resolve, reject }));
  }

  /** The control socket reached its end: nothing more will arrive (queued events still run). */
  private controlEnded(): void {
    this.closing = true;
    const err =
      this.failure ?? new PivotError("the launcher exited without reporting the init's pid");
    for (const w of this.initPidWaiters.splice(0)) w.reject(err);
    this.queue = this.queue
      .then(() => this.onClose())
      .catch((err: unknown) => this.fail(asError(err)));
  }

  private send(buf: Buffer): void {
    if (this.control) {
      this.control.write(buf);
      return;
    }
    if (this.controlFd < 0) return;
    try {
      writeAllSync(this.controlFd, buf);
    } catch {
      // The launcher is gone; its close is reported by the reader.
    }
  }

  private async handle(m: Message): Promise<void> {
    if (this.failure) return;
    switch (m.code) {
      case Event.Sync: {
        const [point, pid] = m.args as number[];
        try {
          // Every sync point but the first is the init's: its pid must be known by then.
          if (point !== SyncPoint.SetupChildCreated) await this.whenInitPid();
          this.trace?.sync(point!, false);
          if (point === SyncPoint.Start) {
            // The init is ready (as after Event.Ready on the fifo path) and waits for startInit().
            this.initWaitsForStart = true;
            this.markReady();
            break;
          }
          const reply = await this.onSync(point!, pid!);
          const args = reply === undefined ? [] : Array.isArray(reply) ? reply : [reply];
          this.send(encodeMessage(Reply.Continue, args));
          this.trace?.sync(point!, true);
        } catch (err) {
          this.send(encodeMessage(Reply.Abort, []));
          this.fail(err as Error);
        }
        break;
      }
      case Event.Trace:
        if (this.plan)
          this.trace?.launcherStep(this.plan, m.args[0] as number, m.args[1] as number);
        break;
      case Event.Ready:
        try {
          await this.whenInitPid();
        } catch (err) {
          this.fail(err as Error);
          break;
        }
        this.markReady();
        break;
      case Event.Executed:
        this.markExecuted();
        break;
      case Event.Exited:
        this.exitStatus = m.args[0] as number;
        this.initWaitsForStart = false; // killed while it waited
        for (const w of this.exitWaiters.splice(0)) w.resolve(this.exitStatus);
        break;
      case Event.SeccompProgram: {
        const [flags, hex, version, library] = m.args as [number, string, string, string];
        this.plan?.seccompExport?.({ flags, hex, version, library });
        break;
      }
      case Event.Error: {
        const [step, errno, detail] = m.args as [number, number, string];
        this.fail(this.launchError(step, errno, detail));
        break;
      }
      default:
        this.fail(new PivotError(`unknown event ${m.code} from the launcher`));
    }
  }

  /**
   * Answers an init waiting at SyncPoint.Start (a plan without an exec fifo): go on to exec its
   * program, or (go = false) end. Sent at once, not after the caller's next await.
   */
  startInit(go = true): void {
    if (!this.initWaitsForStart) {
      if (!go) return;
      if (this.exitStatus === null && !this.closed)
        throw new PivotError("the container's init is not waiting to be started");
      throw new PivotError(
        `the container's process ${this.exitStatus === null ? "ended" : howItEnded(this.exitStatus)} before it could be started`,
        endHint(this.exitStatus),
      );
    }
    this.initWaitsForStart = false;
    this.send(encodeMessage(go ? Reply.Continue : Reply.Abort, []));
    this.trace?.sync(SyncPoint.Start, true);
  }

  /**
   * Resolves once the init has exec'd its program or ended (plans with Op.ReportExec), or the
   * launcher is gone; never rejects: what follows (poststart hooks) runs either way.
   */
  whenExecuted(): Promise<void> {
    if (this.executed || this.closed || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.executedWaiters.push(resolve));
  }

  private markExecuted(): void {
    this.executed = true;
    for (const w of this.executedWaiters.splice(0)) w();
  }

  private markReady(): void {
    this.ready = true;
    for (const w of this.readyWaiters.splice(0)) w.resolve();
  }

  private launchError(stepIndex: number, errno: number, detail: string): LaunchError {
    const step = this.plan?.steps[stepIndex];
    const name = errnoName(errno);
    const why = errnoText[name] ?? name;
    const what = step ? `step ${stepIndex + 1} (${step.text})` : "launcher";
    const program = this.plan?.program;
    let diagnosis: string | undefined;
    try {
      if (step?.op === Op.Exec && name === "ENOENT" && program) {
        diagnosis = diagnoseExecEnoent(program.rootfs, program.name, program.path, program.cwd);
      }
    } catch {
      // The explanation is a bonus; the error itself must still be reported.
    }
    const hint = diagnosis ?? hintFor(name, step?.op ?? -1, detail);
    return new LaunchError(`${what} failed: ${detail}: ${why}`, stepIndex, errno, {
      code: name,
      ...(hint ? { hint } : {}),
    });
  }

  private onClose(): void {
    this.closed = true;
    this.markExecuted();
    if (!this.failure) for (const w of this.closeWaiters.splice(0)) w.resolve();
    if (!this.ready) {
      for (const w of this.readyWaiters.splice(0)) {
        w.reject(
          this.failure ??
            new PivotError(
              `the container's init ${this.exitStatus === null ? "exited" : howItEnded(this.exitStatus)} during setup without reporting an error`,
              endHint(this.exitStatus),
            ),
        );
      }
    }
    if (this.exitStatus === null) {
      const err =
        this.failure ?? new PivotError("the launcher exited without reporting the process's exit");
      for (const w of this.exitWaiters.splice(0)) w.reject(err);
    }
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.markExecuted();
    for (const w of this.initPidWaiters.splice(0)) w.reject(this.failure);
    for (const w of this.readyWaiters.splice(0)) w.reject(this.failure);
    for (const w of this.exitWaiters.splice(0)) w.reject(this.failure);
    for (const w of this.closeWaiters.splice(0)) w.reject(this.failure);
  }

  /** Resolves once the init reports it waits on the exec fifo (or has exec'd, for exec plans). */
  whenReady(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ready) return Promise.resolve();
    if (this.closed)
      return Promise.reject(new PivotError("the launcher exited before the container was ready"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Resolves with the raw wait status of the init (plans with WaitForInit only). */
  whenExited(): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.exitStatus !== null) return Promise.resolve(this.exitStatus);
    if (this.closed)
      return Promise.reject(
        new PivotError("the launcher exited without reporting the process's exit"),
      );
    return new Promise((resolve, reject) => this.exitWaiters.push({ resolve, reject }));
  }

  /** Resolves when every process holding the control socket is gone (or has exec'd) without an error. */
  whenClosed(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => this.closeWaiters.push({ resolve, reject }));
  }

  /** The launcher's pid. */
  get launcherPid(): number {
    return this.bunChild?.pid ?? this.child?.pid ?? 0;
  }

  /** Signals the launcher process itself. */
  killLauncher(signal: NodeJS.Signals): void {
    try {
      if (this.bunChild) this.bunChild.kill(signal);
      else this.child?.kill(signal);
    } catch {
      // Gone already.
    }
  }

  /** Resolves when the launcher process itself has exited. */
  whenLauncherExited(): Promise<number | null> {
    if (this.bunChild) {
      const p = this.bunChild;
      return p.exited.then(() => p.exitCode);
    }
    const child = this.child!;
    if (child.exitCode !== null || child.signalCode !== null)
      return Promise.resolve(child.exitCode);
    return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  /** Stop listening so the event loop can end (the container keeps running). */
  detach(): void {
    if (this.bunChild) {
      const reader = this.controlReader;
      this.controlReader = undefined;
      reader?.cancel().catch(() => {});
      if (this.controlFd >= 0) {
        try {
          closeSync(this.controlFd);
        } catch {}
        this.controlFd = -1;
      }
      this.bunChild.unref();
      return;
    }
    this.control?.destroy();
    this.child?.unref();
  }
}

/** Starts the launcher on a plan. */
export function launch(plan: Plan, options: LaunchOptions): LaunchSession {
  return new LaunchSession(plan, options);
}

/**
 * Starts the launcher before its plan is ready, so that its start-up (exec, dynamic linking)
 * overlaps the runtime's own work; `sendPlan` hands it the plan.
 */
export function spawnLauncher(options: Omit<LaunchOptions, "onSync">): LaunchSession {
  return new LaunchSession(undefined, {
    onSync: () => {
      throw new PivotError("a sync point before the plan's sync handler was set");
    },
    ...options,
  });
}

/** The exit code a shell would show for a wait status: the code, or 128 + signal. */
export function exitCodeOf(waitStatus: number): number {
  const signal = waitStatus & 0x7f;
  if (signal === 0) return (waitStatus >> 8) & 0xff;
  return 128 + signal;
}

/** "was killed by SIGKILL", "exited with status 1": a wait status in words. */
function howItEnded(waitStatus: number): string {
  const signal = waitStatus & 0x7f;
  return signal === 0
    ? `exited with status ${(waitStatus >> 8) & 0xff}`
    : `was killed by ${signalName(signal)}`;
}

/** SIGSYS is what a seccomp filter's kill actions send. */
function endHint(waitStatus: number | null): { hint?: string } {
  if (waitStatus !== null && (waitStatus & 0x7f) === os().constants.signals.SIGSYS)
    return { hint: "a seccomp filter killed it: check linux.seccomp in the config" };
  return {};
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
