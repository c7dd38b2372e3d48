// The container lifecycle of runtime.md: create, start, state, kill, delete, plus run and exec.
import {
  closeSync,
  constants as fsConstants,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { hostCgroups } from "../cgroups/hierarchy.ts";
import { Cgroup } from "../cgroups/manager.ts";
import { ConfigError, PivotError } from "../errors.ts";
import type { ContainerStatus, Process, Spec, State } from "../oci/spec.ts";
import { OCI_VERSION } from "../oci/spec.ts";
import type { SeccompCache } from "../security/seccomp-cache.ts";
import { writeAllSync } from "../util/write-fd.ts";
import { runHooks, runHooksWarnOnly } from "./hooks.ts";
import type { LaunchSession, StdioSpec } from "./launcher.ts";
import type { PipedStdio } from "./piped-stdio.ts";
import type { CgroupJoin, CgroupMountSource, FileKind, HostFacts, Plan } from "./plan.ts";
import { parseSignal } from "./signals.ts";
import {
  type ContainerRecord,
  deriveStatus,
  hasStarted,
  initAlive,
  procStat,
  StateStore,
  validateId,
} from "./state.ts";
import type { Trace } from "./trace.ts";
import {
  checkIdMapHelpers,
  currentCaller,
  defaultStateRoot,
  inUserNamespace,
  isRootless,
  undelegatedCgroupDirs,
  writeIdMaps,
} from "./userns.ts";
import { SyncPoint } from "./wire.ts";

/** The launcher client alone, imported ahead of the rest so the launcher starts sooner. */
let launcherModule: Promise<typeof import("./launcher.ts")> | undefined;
/** Creating and exec'ing containers: loaded on first use (see launching.ts), once. */
let launchingModule: Promise<typeof import("./launching.ts")> | undefined;
const launching = () => {
  launchingModule ??= import("./launching.ts");
  return launchingModule;
};

export interface RuntimeOptions {
  /** Where container state lives (runc's --root). */
  root?: string;
  /** Receives warnings (failed poststart/poststop hooks, leftovers that could not be removed). */
  warn?: (message: string) => void;
  /** --trace: marks where create, start, run and delete spend their time. */
  trace?: Trace;
}

export interface CreateOptions {
  bundle: string;
  /**
   * BUNDLE/config.json's content, when the caller has it in memory (the engine, which has just
   * written it): validated as the file would be, not read and parsed again.
   */
  spec?: Spec;
  pidFile?: string;
  consoleSocket?: string;
  noPivot?: boolean;
  /** Keep the caller's session keyring (runc's --no-new-keyring). */
  noNewKeyring?: boolean;
  preserveFds?: number;
  /** The container's stdio; defaults to the caller's. */
  stdio?: StdioSpec[];
  /**
   * Called once the launcher is spawned, with the caller's ends of the "pipe" stdio entries.
   * `run` resolves when the process has exited, as a child process's "exit" event: output still in
   * the pipes arrives after that; read a pipe to its end to have all of it.
   */
  onLaunch?: (pipes: PipedStdio) => void;
  /** `run` only: called once the container's process has been started, with its cgroups. */
  onStart?: (pid: number, cgroupPaths: Record<string, string>) => void;
  /** `run` only: awaited between create and start, with the init's pid (e.g. to wire its network). */
  onCreated?: (pid: number) => Promise<void>;
  /**
   * A mount the launcher makes in the caller's namespace before anything else: the engine's overlay
   * at root.path, when nothing needed it mounted before (one launcher process fewer than mounting
   * it ahead). Relative paths in `data` are resolved from `cwd`. A failed create leaves it mounted:
   * the caller unmounts it (or `unmountAfterExit` does, after the exit).
   */
  mountFirst?: { source: string; target: string; fstype: string; data: string; cwd: string };
  /**
   * `run` only: a mount of the caller's namespace that the launcher unmounts once the container's
   * process has exited, before the exit is reported (the engine's overlay: one process fewer than
   * unmounting it afterwards). Best effort: a mount still there is the caller's to unmount.
   */
  unmountAfterExit?: string;
}

export interface ExecOptions {
  process: Process;
  detach?: boolean;
  pidFile?: string;
  consoleSocket?: string;
  preserveFds?: number;
  stdio?: StdioSpec[];
  /** Called once the launcher is spawned, with the caller's ends of the "pipe" stdio entries. */
  onLaunch?: (pipes: PipedStdio) => void;
  /**
   * Called with the process's host pid once it is forked (a new session's leader: the health
   * checks' timeout kills its process group).
   */
  onPid?: (pid: number) => void;
}

const realHost: HostFacts = {
  kindOf(path: string): FileKind {
    try {
      return statSync(path).isDirectory() ? "directory" : "file";
    } catch {
      return "missing";
    }
  },
};

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Writes a file atomically (temporary file, then rename), as containerd expects of pid files. */
function writeAtomic(path: string, content: string): void {
  const tmp = join(dirname(path), `.${process.pid}.tmp`);
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

export class Runtime {
  readonly store: StateStore;
  private readonly warn: (message: string) => void;

  private readonly trace: Trace | undefined;
  private seccompCacheOf: SeccompCache | null | undefined;

  /**
   * Compiled seccomp filters, in ROOT/@seccomp (not a container id, so never one's directory);
   * PIVOT_SECCOMP_CACHE=0 turns the cache off.
   */
  private async seccompCache(): Promise<SeccompCache | null> {
    if (this.seccompCacheOf === undefined) {
      const { SeccompCache, launcherPath } = await launching();
      this.seccompCacheOf =
        process.env.PIVOT_SECCOMP_CACHE === "0"
          ? null
          : new SeccompCache(join(this.store.root, "@seccomp"), launcherPath());
    }
    return this.seccompCacheOf;
  }

  constructor(options: RuntimeOptions = {}) {
    // Not root: $XDG_RUNTIME_DIR/pivot-runtime (rootless mode).
    this.store = new StateStore(options.root ?? defaultStateRoot());
    this.trace = options.trace;
    this.warn = options.warn ?? ((m) => writeAllSync(2, `warning: ${m}\n`));
  }

  /** Reads and validates BUNDLE/config.json (or validates its content, given in memory). */
  async loadBundle(
    bundle: string,
    inMemory?: Spec,
  ): Promise<{ spec: Spec; bundle: string; rootfs: string }> {
    const { parseConfig, validateSpec } = await launching();
    const dir = resolve(bundle);
    const configPath = join(dir, "config.json");
    let spec: Spec;
    if (inMemory) spec = validateSpec(inMemory);
    else {
      let text: string;
      try {
        text = readFileSync(configPath, "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new PivotError(`cannot read ${configPath} (${code})`, {
          hint:
            code === "ENOENT"
              ? "pass the bundle directory with --bundle, or create config.json with `spec`"
              : undefined,
        });
      }
      spec = parseConfig(text, configPath);
    }
    const rootPath = spec.root!.path;
    const rootfs = isAbsolute(rootPath) ? rootPath : resolve(dir, rootPath);
    if (!isAbsolute(rootPath) && relative(dir, rootfs).startsWith("..")) {
      throw new ConfigError(
        "root.path",
        `"${rootPath}" leaves the bundle directory ${dir}`,
        "a relative root.path must stay inside the bundle",
      );
    }
    if (realHost.kindOf(rootfs) !== "directory") {
      throw new ConfigError(
        "root.path",
        `the root filesystem ${rootfs} is not a directory`,
        "create it, or fix root.path",
      );
    }
    // Without symlinks, as runc does (EvalSymlinks): the launcher walks the path up to the mount
    // holding it (Op.PrivateMountOf), and a symlink on the way would make it walk the wrong tree.
    return { spec, bundle: dir, rootfs: realpathSync(rootfs) };
  }

  stateOf(record: ContainerRecord, status?: ContainerStatus): State {
    const s = status ?? this.status(record);
    const state: State = {
      ociVersion: OCI_VERSION,
      id: record.id,
      status: s,
      bundle: record.bundle,
    };
    if (s !== "stopped" && record.pid > 0) state.pid = record.pid;
    if (Object.keys(record.annotations).length) state.annotations = record.annotations;
    return state;
  }

  status(record: ContainerRecord): ContainerStatus {
    return deriveStatus(record, this.store.execFifo(record.id), () =>
      new Cgroup(record.cgroupPaths).isFrozen(),
    );
  }

  /** `create`: set the container up; its process waits until `start`. */
  async create(id: string, options: CreateOptions): Promise<ContainerRecord> {
    const { session, record } = await this.createSession(id, options, false);
    session.detach();
    return record;
  }

  /**
   * Compiles a container's launch plan without creating anything: the first half of `create`,
   * and all of `create --dry-run`. Config errors surface here, before any state exists.
   */
  async planContainer(
    id: string,
    options: CreateOptions,
    waitForInit = false,
    /** A config already in memory (the engine's dry run) instead of BUNDLE/config.json. */
    loaded?: { spec: Spec; bundle: string; rootfs: string; host?: HostFacts },
  ): Promise<{
    plan: Plan;
    spec: Spec;
    bundle: string;
    rootfs: string;
    cgroup: Cgroup;
    cgroupJoin: CgroupJoin;
  }> {
    validateId(id);
    const { compileContainerPlan, cgroupDeviceFilter, deviceFilterStep, mountSteps, chdirStep } =
      await launching();
    const seccompCache = await this.seccompCache();
    const { spec, bundle, rootfs } =
      loaded ?? (await this.loadBundle(options.bundle, options.spec));
    this.trace?.mark(
      options.spec && !loaded
        ? "config validated (given in memory, as written to config.json)"
        : "config.json loaded and validated",
    );
    if (!spec.process)
      throw new ConfigError("process", "is missing; the container needs a process to run");
    let cgroup = Cgroup.forContainer(spec.linux?.cgroupsPath ?? `pivot-${id}`, hostCgroups());
    const caller = currentCaller();
    // Rootless: cgroups only where they are delegated to the caller, else none (as runc). Root of a
    // user namespace (the rootless engine's) has no more say over the host's cgroups than its user.
    const unprivileged = isRootless(caller) || inUserNamespace();
    const undelegated = unprivileged ? undelegatedCgroupDirs(cgroup.paths) : [];
    if (undelegated.length > 0) cgroup = new Cgroup({});
    const cgroupJoin = cgroup.joinPlan();
    this.trace?.mark("cgroup hierarchies found, paths resolved");
    const seccompCacheKey = seccompCache ? await seccompCache.key(spec.linux?.seccomp) : null;
    const plan = compileContainerPlan({
      spec,
      rootfs,
      bundle,
      // `run` (waitForInit) starts the container itself: the init waits at SyncPoint.Start.
      execFifo: waitForInit ? null : this.store.execFifo(id),
      waitForInit,
      ...(options.consoleSocket ? { consoleSocket: options.consoleSocket } : {}),
      noPivot: options.noPivot ?? false,
      noNewKeyring: options.noNewKeyring ?? false,
      ...(waitForInit && options.unmountAfterExit
        ? { unmountAfterExit: options.unmountAfterExit }
        : {}),
      id,
      cgroupMounts: cgroupMountSources(cgroup),
      cgroupJoin,
      caller,
      host: loaded?.host ?? realHost,
      ...(seccompCache ? { seccompCache: { cache: seccompCache, key: seccompCacheKey } } : {}),
    });
    if (plan.idMaps) {
      checkIdMapHelpers(spec.linux!.uidMappings!, spec.linux!.gidMappings!, plan.idMaps, caller);
    }
    if (undelegated.length > 0) {
      plan.warnings.push(
        `cgroups: ${undelegated[0]} is not writable by ${isRootless(caller) ? `uid ${caller.uid}` : "root of this user namespace"} (not delegated): the container runs without a cgroup of its own, so ${spec.linux?.resources ? "linux.resources are not applied and " : ""}pause, stats, update and kill --all do not work`,
      );
    }
    // cgroup v2 device rules: an eBPF program, attached by the launcher before anything joins
    // the cgroup (the first step). Rootless callers cannot load one (it needs CAP_SYS_ADMIN).
    const filter = unprivileged
      ? null
      : cgroupDeviceFilter(cgroup, spec.linux?.resources, spec.linux?.devices ?? []);
    if (filter) plan.steps.unshift(deviceFilterStep(filter));
    const m = options.mountFirst;
    if (m) plan.steps.unshift(...mountSteps(m, m.cwd), chdirStep(process.cwd()));
    this.trace?.mark(`plan compiled (${plan.steps.length} steps)`);
    return { plan, spec, bundle, rootfs, cgroup, cgroupJoin };
  }

  private async createSession(
    id: string,
    options: CreateOptions,
    waitForInit: boolean,
  ): Promise<{ session: LaunchSession; record: ContainerRecord }> {
    // The launcher client first (small), so the launcher's exec overlaps loading the rest.
    launcherModule ??= import("./launcher.ts");
    const { spawnLauncher } = await launcherModule;
    // The launcher starts up (exec, dynamic linking) while the config is read and compiled; it
    // waits for its plan.
    const s = spawnLauncher({
      ...(this.trace ? { trace: this.trace } : {}),
      ...(options.stdio ? { stdio: options.stdio } : {}),
      preservedFds: Array.from({ length: options.preserveFds ?? 0 }, (_, i) => 3 + i),
    });
    let planned: Awaited<ReturnType<Runtime["planContainer"]>>;
    let listenerState: Awaited<ReturnType<typeof launching>>["listenerState"];
    try {
      ({ listenerState } = await launching());
      planned = await this.planContainer(id, options, waitForInit);
      this.store.claim(id);
    } catch (err) {
      s.detach(); // it reads the end of its plan and exits
      throw err;
    }
    const { plan, spec, bundle, rootfs, cgroup, cgroupJoin } = planned;
    for (const warning of plan.warnings) this.warn(warning);
    const record: ContainerRecord = {
      id,
      pid: 0,
      pidStartTime: "",
      bundle,
      rootfs,
      created: new Date().toISOString(),
      annotations: spec.annotations ?? {},
      cgroupPaths: cgroup.paths,
      namespaces: (spec.linux?.namespaces ?? []).map((n) => n.type),
      spec,
      ...(waitForInit ? { startedByRun: true } : {}),
    };
    let savedPid = 0;
    let session: LaunchSession | null = null;
    // No paths: a rootless container without delegated cgroups.
    const hasCgroup = Object.keys(cgroup.paths).length > 0;
    try {
      session = s;
      // The record first, with its cgroup paths: a runtime killed from here on leaves state that
      // `delete --force` (and the engine's recovery) can find and remove, never a bare cgroup.
      this.store.save(record);
      this.trace?.mark("state saved");
      if (hasCgroup) {
        cgroup.create();
        this.trace?.mark("cgroup created");
        // Before the plan goes out: the setup process joins the cgroup on its own, and must not
        // find it half-configured (v1 device rules deny everything for a moment while written).
        (await launching()).applyResources(cgroup, spec.linux?.resources, {
          linuxDevices: spec.linux?.devices ?? [],
          warn: this.warn,
        });
        this.trace?.mark("cgroup resources applied");
      }
      s.sendPlan(plan, async (point, pid) => {
        if (point === SyncPoint.SetupChildCreated) {
          if (plan.idMaps) {
            writeIdMaps(pid, spec.linux!.uidMappings!, spec.linux!.gidMappings!, plan.idMaps);
          }
          cgroup.join(pid, cgroupJoin.byRuntime);
          return undefined;
        }
        // BeforePivot: the init exists; hooks see its pid.
        record.pid = s.initPid;
        record.pidStartTime = s.initStartTime;
        this.store.save(record);
        savedPid = record.pid;
        // As crun and the runtime-tools suite expect: the hooks see the state "created".
        const state = this.stateOf(record, "created");
        await runHooks(spec.hooks?.prestart, state, "prestart");
        await runHooks(spec.hooks?.createRuntime, state, "createRuntime");
        const created = JSON.stringify(this.stateOf(record, "created"));
        if (!plan.seccompListener) return created;
        // The seccomp agent is told of a container still being created, as runc does.
        const creating = this.stateOf(record, "creating");
        return [created, listenerState(plan.seccompListener, s.initPid, creating, OCI_VERSION)];
      });
      options.onLaunch?.(s.pipes);
      await s.whenReady();
      this.trace?.mark(
        `ready: the init waits ${waitForInit ? "to be started" : "on the exec fifo"}`,
      );
      // Saved at BeforePivot already, when the plan has that sync point (hooks). A `run` with
      // nothing to do between create and start (no onCreated) saves the pid with the started mark
      // right after the release instead: one write and rename fewer (~1 ms on an ext4 /run), and
      // a record that says pid 0 for that moment, which `delete --force` handles by the cgroup.
      // Without a cgroup (rootless, undelegated) the pid is the only way to the process: saved.
      if (savedPid !== s.initPid) {
        record.pid = s.initPid;
        record.pidStartTime = s.initStartTime;
        if (!waitForInit || options.onCreated || !hasCgroup) this.store.save(record);
      }
      if (options.pidFile) writeAtomic(resolve(options.pidFile), String(record.pid));
      this.trace?.mark("state saved, pid file written");
      return { session: s, record };
    } catch (err) {
      await this.destroyPartial(record, cgroup, session);
      throw err;
    }
  }

  /** Undo a failed create: the process, the cgroup and the state directory. */
  private async destroyPartial(
    record: ContainerRecord,
    cgroup: Cgroup,
    session: LaunchSession | null,
  ): Promise<void> {
    // Only the same process: an init that failed may be reaped already (by the launcher, or,
    // once that has exited, by whoever inherited it) and its pid another process's.
    const [pid, startTime] = session?.initPid
      ? [session.initPid, session.initStartTime]
      : [record.pid, record.pidStartTime];
    if (pid > 0 && startTime !== "" && procStat(pid)?.startTime === startTime) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    if (session) {
      session.killLauncher("SIGKILL");
      // A setup process still waiting at a sync point ends when the control socket closes.
      session.detach();
      await session.whenLauncherExited();
    }
    this.killCgroupAndWait(cgroup);
    try {
      cgroup.destroy();
    } catch (err) {
      this.warn((err as Error).message);
    }
    this.store.remove(record.id);
  }

  /** `start`: release the process created by `create`. */
  async start(id: string): Promise<void> {
    const record = this.store.load(id);
    const status = this.status(record);
    if (status !== "created") {
      throw new PivotError(`cannot start container "${id}": it is ${status}`, {
        hint:
          status === "stopped" ? `remove it with \`delete ${id}\` and create it again` : undefined,
      });
    }
    if (record.startedByRun) {
      throw new PivotError(`cannot start container "${id}": the \`run\` that created it starts it`);
    }
    const hooks = (record.spec.hooks?.poststart?.length ?? 0) > 0;
    this.releaseExecFifo(record, hooks);
    this.trace?.mark(
      hooks ? "start: exec fifo released, program exec'd" : "start: exec fifo released",
    );
    // Nothing to save: the fifo, gone now, was the record of not having started (hasStarted).
    await this.runPoststartHooks(record);
  }

  /** `run`'s start: the init waits at SyncPoint.Start for this process's answer. */
  private async startRun(record: ContainerRecord, session: LaunchSession): Promise<void> {
    session.startInit();
    this.trace?.mark("start: the init released");
    // runtime-spec: poststart hooks run after the process is executed (the plan has ReportExec).
    if (record.spec.hooks?.poststart?.length) await session.whenExecuted();
    record.started = true;
    this.store.save(record);
    await this.runPoststartHooks(record);
  }

  /** After the release, the state saying running: the poststart hooks. */
  private async runPoststartHooks(record: ContainerRecord): Promise<void> {
    await runHooksWarnOnly(
      record.spec.hooks?.poststart,
      this.stateOf(record, "running"),
      "poststart",
      this.warn,
    );
    this.trace?.mark("start: poststart hooks run");
  }

  /** Releases the init waiting on the exec fifo; with untilExec, returns once it has exec'd its
   *  program (or ended): its end of the fifo is close-on-exec. */
  private releaseExecFifo(record: ContainerRecord, untilExec: boolean): void {
    const fifo = this.store.execFifo(record.id);
    const fd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      const buf = Buffer.alloc(1);
      // The init writes its byte as soon as it is scheduled after this open: poll from 20 µs
      // up to 1 ms rather than sleeping a whole millisecond first.
      for (let wait = 0.02; ; wait = Math.min(wait * 2, 1)) {
        // Alive before the read: an init that writes its byte, execs and exits (as /bin/true
        // does) between a read and a later check must not count as one that never started.
        const alive = initAlive(record);
        try {
          if (readSync(fd, buf, 0, 1, null) === 1) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        }
        if (!alive) {
          throw new PivotError(`container "${record.id}" exited before it could be started`, {
            hint: `\`delete ${record.id}\` removes it`,
          });
        }
        sleep(wait);
      }
      for (let wait = 0.02; untilExec; wait = Math.min(wait * 2, 1)) {
        const alive = initAlive(record);
        try {
          if (readSync(fd, buf, 0, 1, null) === 0) break; // end of file: exec'd
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        }
        if (!alive) break;
        sleep(wait);
      }
    } finally {
      closeSync(fd);
    }
    unlinkSync(fifo);
  }

  state(id: string): State {
    return this.stateOf(this.store.load(id));
  }

  list(): { record: ContainerRecord; state: State }[] {
    const out: { record: ContainerRecord; state: State }[] = [];
    for (const id of this.store.ids()) {
      try {
        const record = this.store.load(id);
        out.push({ record, state: this.stateOf(record) });
      } catch {
        // Removed meanwhile.
      }
    }
    return out;
  }

  kill(id: string, signal: string | number = "SIGTERM", all = false): void {
    const record = this.store.load(id);
    const sig = parseSignal(signal);
    const status = this.status(record);
    // "container not running" is runc's wording: containerd's shim matches it to treat the
    // kill of an exited process as done.
    const notRunning = () => new PivotError(`cannot kill container "${id}": container not running`);
    if (status === "stopped" && !all) throw notRunning();
    // Without a cgroup (rootless, not delegated) the init is all that can be named: with a PID
    // namespace of its own, SIGKILL to it ends every process in it.
    if (all && Object.keys(record.cgroupPaths).length > 0) {
      new Cgroup(record.cgroupPaths).signalAll(sig);
      return;
    }
    if (all && status === "stopped") return;
    // A container still being created has no pid yet: kill(0) would signal our own process group.
    if (record.pid <= 0) throw notRunning();
    try {
      process.kill(record.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") throw notRunning();
      throw err;
    }
  }

  /** `delete`: remove a stopped container (or, with force, any container). */
  async delete(id: string, force = false): Promise<void> {
    let record: ContainerRecord;
    try {
      record = this.store.load(id);
    } catch (err) {
      if (!force) throw err;
      // As runc: `delete --force` of a missing container succeeds (podman always calls it, even
      // after a failed create), and removes a half-written one (a crash during create leaves a
      // directory without state.json) or one whose state is unreadable.
      this.store.remove(id);
      return;
    }
    await this.deleteRecord(record, force);
  }

  /** `delete` of a loaded record (`run` has its own in memory). */
  private async deleteRecord(record: ContainerRecord, force: boolean): Promise<void> {
    const id = record.id;
    const status = this.status(record);
    // runtime.md: deleting a container that is not stopped MUST fail (runc deletes created ones).
    if (status !== "stopped" && !force) {
      throw new PivotError(`cannot delete container "${id}": it is ${status}`, {
        hint: `stop it with \`kill ${id}\` first, or use \`delete --force ${id}\``,
      });
    }
    const cgroup = new Cgroup(record.cgroupPaths);
    if (status !== "stopped") {
      if (status === "paused") cgroup.freeze(false);
      try {
        // pid 0 (a create that died half-way) would be kill(0): our own process group.
        if (record.pid > 0) process.kill(record.pid, "SIGKILL");
      } catch {}
    }
    this.killCgroupAndWait(cgroup, record);
    try {
      cgroup.destroy();
    } catch (err) {
      this.warn((err as Error).message);
    }
    if (hasStarted(record, this.store.execFifo(id)) || status === "stopped") {
      await runHooksWarnOnly(
        record.spec.hooks?.poststop,
        this.stateOf(record, "stopped"),
        "poststop",
        this.warn,
      );
    }
    this.store.remove(id);
  }

  /** Kills whatever is left in the cgroup and waits (up to 5 s) for the init and the cgroup to empty. */
  private killCgroupAndWait(cgroup: Cgroup, record?: ContainerRecord): void {
    const deadline = Date.now() + 5000;
    for (;;) {
      const pids = cgroup.pids();
      const initLeft = record ? initAlive(record) : false;
      if (pids.length === 0 && !initLeft) return;
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      if (Date.now() > deadline) {
        this.warn(`processes ${pids.join(", ")} did not exit after SIGKILL`);
        return;
      }
      sleep(2);
    }
  }

  /** `run`: create, start, wait for the exit, delete. Returns the exit code (128+N for signal N). */
  async run(id: string, options: CreateOptions & { detach?: boolean }): Promise<number> {
    if (options.detach) {
      await this.create(id, options);
      await this.start(id);
      return 0;
    }
    const { session, record } = await this.createSession(id, options, true);
    const { exitCodeOf } = await launching();
    let code: number;
    try {
      await options.onCreated?.(record.pid);
      await this.startRun(record, session);
      options.onStart?.(record.pid, record.cgroupPaths);
      code = exitCodeOf(await session.whenExited());
      this.trace?.mark("exit: the launcher reported the process's exit");
    } catch (err) {
      session.startInit(false); // an init still waiting is told to end
      await this.delete(id, true).catch(() => {});
      throw err;
    }
    await this.deleteRecord(record, true);
    this.trace?.mark("deleted: cgroup and state removed");
    return code;
  }

  /** `exec`: run another process in a running container. Returns its exit code (0 when detached). */
  async exec(id: string, options: ExecOptions): Promise<{ pid: number; exitCode: number }> {
    const record = this.store.load(id);
    const status = this.status(record);
    if (status !== "running" && status !== "created") {
      throw new PivotError(`cannot exec in container "${id}": it is ${status}`);
    }
    // As create's: the launcher starts up (exec, its sealed copy) while the plan is compiled.
    launcherModule ??= import("./launcher.ts");
    const session = (await launcherModule).spawnLauncher({
      ...(options.stdio ? { stdio: options.stdio } : {}),
      preservedFds: Array.from({ length: options.preserveFds ?? 0 }, (_, i) => 3 + i),
    });
    let plan: Plan;
    let cgroup: Cgroup;
    let cgroupJoin: CgroupJoin;
    let exitCodeOf: (waitStatus: number) => number;
    try {
      const loaded = await launching();
      exitCodeOf = loaded.exitCodeOf;
      loaded.validateProcess(options.process, "process");
      cgroup = new Cgroup(record.cgroupPaths);
      cgroupJoin = cgroup.joinPlan();
      plan = loaded.compileExecPlan({
        cgroupJoin,
        initPid: record.pid,
        namespaces: record.namespaces,
        process: options.process,
        waitForExit: !options.detach,
        seccomp: record.spec.linux?.seccomp,
        denySetgroups: record.namespaces.includes("user") && setgroupsDenied(record.pid),
        ...(options.consoleSocket ? { consoleSocket: options.consoleSocket } : {}),
      });
    } catch (err) {
      session.detach(); // it reads the end of its plan and exits
      throw err;
    }
    session.sendPlan(plan, (_point, pid) => {
      cgroup.join(pid, cgroupJoin.byRuntime);
      return undefined;
    });
    if (options.onPid) session.initPidKnown().then(options.onPid, () => {});
    options.onLaunch?.(session.pipes);
    if (options.detach) {
      await session.whenClosed();
      if (options.pidFile) writeAtomic(resolve(options.pidFile), String(session.initPid));
      session.detach();
      return { pid: session.initPid, exitCode: 0 };
    }
    const status2 = await session.whenExited();
    return { pid: session.initPid, exitCode: exitCodeOf(status2) };
  }

  pause(id: string): void {
    const record = this.store.load(id);
    const status = this.status(record);
    if (status !== "running")
      throw new PivotError(`cannot pause container "${id}": it is ${status}`);
    new Cgroup(record.cgroupPaths).freeze(true);
  }

  resume(id: string): void {
    const record = this.store.load(id);
    const status = this.status(record);
    if (status !== "paused")
      throw new PivotError(`cannot resume container "${id}": it is ${status}`);
    new Cgroup(record.cgroupPaths).freeze(false);
  }

  pids(id: string): number[] {
    const record = this.store.load(id);
    return new Cgroup(record.cgroupPaths).pids();
  }

  /** `update`: changes the resource limits of a container that is not stopped, and records them. */
  async update(id: string, resources: unknown): Promise<void> {
    const record = this.store.load(id);
    const status = this.status(record);
    if (status === "stopped")
      throw new PivotError(`cannot update container "${id}": it is stopped`);
    const linux = { ...record.spec.linux };
    const { updateResources, attachDeviceFilter } = await launching();
    const updated = updateResources(
      new Cgroup(record.cgroupPaths),
      linux.resources,
      resources,
      this.warn,
      linux.devices ?? [],
    );
    // New device rules on cgroup v2: the launcher replaces the container's eBPF program.
    if (updated.deviceFilter) await attachDeviceFilter(updated.deviceFilter);
    linux.resources = updated.resources;
    record.spec = { ...record.spec, linux };
    this.store.save(record);
  }

  /** The container's cgroup, for statistics and events. */
  cgroupOf(id: string): Cgroup {
    return new Cgroup(this.store.load(id).cgroupPaths);
  }
}

/** The container's own cgroup directories, for a "cgroup" mount on a v1 or hybrid host. */
function cgroupMountSources(cgroup: Cgroup): CgroupMountSource[] | undefined {
  const host = hostCgroups();
  if (host.mode === "v2") return undefined;
  // A container without a cgroup (rootless, not delegated) gets the tmpfs alone.
  return host.hierarchies
    .filter((h) => cgroup.paths[h.name] !== undefined)
    .map((h) => ({
      name: h.version === 2 ? "unified" : h.mountPoint.split("/").pop()!,
      hostPath: cgroup.paths[h.name]!,
    }));
}

/** Whether the user namespace of a process denies setgroups (/proc/PID/setgroups). */
function setgroupsDenied(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/setgroups`, "utf8").trim() === "deny";
  } catch {
    return false;
  }
}
