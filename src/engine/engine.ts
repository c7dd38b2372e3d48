// The engine: images become containers (an overlay root filesystem over shared layers, a
// generated OCI config, /etc/hosts, /etc/hostname and /etc/resolv.conf bound in, volumes), run by
// the Runtime library, attached (this process monitors) or detached (conmon monitors).
//
// `Engine` is the public API and only delegates; each job is a module of its own, working on the
// shared `EngineContext` (context.ts):
//   container-store.ts    the files of a container on disk (the layout is described there), names, locks
//   container-runtime.ts  which OCI runtime runs a container, its status, its cgroups
//   container-network.ts  its network namespace, --network container:NAME
//   create.ts             create, the dry run, rename
//   start.ts              start detached (conmon) or attached (this process monitors)
//   lifecycle.ts          wait, kill, stop, pause, unpause, cleanup, remove
//   exec.ts               exec, attach, logs
//   inspect.ts            inspect, list
//   docker-inspect.ts     inspectDocker: inspect in docker inspect's shape (`pivot inspect`)
//   recovery.ts           what crashes and reboots leave behind
//   restart.ts            restart policies: the exit hook restarts, the boot hook (restart-state.ts: rules, files)
//   container-files.ts    cp, export, diff, commit
//   stats.ts              top, stats
//   prune.ts              container and volume prune, volume removal
//   build/                `pivot build`: Dockerfile parsing, the build context, the builder
import type { Readable } from "node:stream";
import type { ImageStore, StoredImage } from "../image/store.ts";
import type { NetworkManager } from "../network/attach.ts";
import type { Spec } from "../oci/spec.ts";
import type { Plan } from "../runtime/plan.ts";
import type { Runtime } from "../runtime/runtime.ts";
import type { BuildOptions } from "./build/builder.ts";
import type * as containerFiles from "./container-files.ts";
import type { CopyOptions } from "./container-files.ts";
import { createContext, type EngineContext, type EngineOptions } from "./context.ts";
import * as creating from "./create.ts";
import type { DockerInspect } from "./docker-inspect.ts";
import {
  containerAttributes,
  type EngineEvent,
  type EventsOptions,
  emitEvent,
  readEvents,
} from "./events.ts";
import type * as execModule from "./exec.ts";
import type { Change } from "./files.ts";
import type { AttachResult, ContainerHandle } from "./handle.ts";
import type { HealthState } from "./health-status.ts";
import * as inspecting from "./inspect.ts";
import * as lifecycle from "./lifecycle.ts";
import type { ReadLogsOptions } from "./log-reader.ts";
import * as pruning from "./prune.ts";
import * as recovery from "./recovery.ts";
import { outsideUserNamespace, refuseOutsideUserNamespace } from "./rootless.ts";
import * as starting from "./start.ts";
import * as stats from "./stats.ts";
import type {
  ContainerInfo,
  ContainerOptions,
  LogEntry,
  StatsSample,
  TopResult,
  VolumeInfo,
} from "./types.ts";
import type { UpdateOptions } from "./update.ts";
import type { VolumeStore } from "./volumes.ts";

export type { BuildOptions } from "./build/builder.ts";
export type { CommitOptions, CopyOptions } from "./container-files.ts";
export type { EngineOptions } from "./context.ts";
export { EngineError } from "./errors.ts";
export type { ExecOptions } from "./exec.ts";
export { type AttachResult, ContainerHandle } from "./handle.ts";

// Loaded on use: `pivot run` needs none of them (files: tar streams and the layer unpacker; exec:
// exec, attach and logs; restart: restart policies' hooks).
const files = () => import("./container-files.ts");
const execing = () => import("./exec.ts");
const dockerInspecting = () => import("./docker-inspect.ts");
const restarting = () => import("./restart.ts");
const health = () => import("./health.ts");

export interface RunOptions extends ContainerOptions {
  /** Return once started, under conmon (`pivot run -d`). */
  detach?: boolean;
  /**
   * Attached containers: "pipe" (default) puts stdin/stdout/stderr streams on the handle,
   * "inherit" copies output to this process's stdout/stderr (and reads its stdin with `stdin`),
   * "ignore" keeps output in the log only.
   */
  stdio?: "pipe" | "inherit" | "ignore";
}

export class Engine {
  readonly root: string;
  readonly runRoot: string;
  readonly runtime: Runtime;
  readonly volumes: VolumeStore;
  private readonly ctx: EngineContext;

  constructor(options: EngineOptions = {}) {
    this.ctx = createContext(options);
    this.root = this.ctx.root;
    this.runRoot = this.ctx.runRoot;
    this.runtime = this.ctx.runtime;
    this.volumes = this.ctx.volumes;
    // Rootless outside the user namespace (a plain user's program): what needs it is refused.
    if (this.ctx.rootless && outsideUserNamespace()) refuseOutsideUserNamespace(this);
  }

  /** Networks: create, list, connect (made on first use). */
  get networks(): NetworkManager {
    return this.ctx.networks;
  }

  /** Whether detached containers can run (conmon was found). */
  get hasConmon(): boolean {
    return this.ctx.conmonPath !== null;
  }

  /** The image store (opened on first use). */
  images(): Promise<ImageStore> {
    return this.ctx.images();
  }

  // ---- lookup ----

  /** Finds a container by full id, name, or unique id prefix. */
  resolveId(ref: string): string {
    return this.ctx.containers.resolveId(ref);
  }

  inspect(ref: string): ContainerInfo {
    return inspecting.inspect(this.ctx, ref);
  }

  /**
   * The container as `docker inspect` shows it (Docker's names: Id, State.ExitCode, Config.Env,
   * HostConfig.RestartPolicy, ...), followed by inspect()'s own fields: what `pivot inspect` prints.
   */
  inspectDocker(ref: string): Promise<DockerInspect> {
    return dockerInspecting().then((m) => m.inspectDocker(this.ctx, ref));
  }

  /** Containers, newest first; running ones only unless `all`. Exited --rm containers are removed. */
  list(options: { all?: boolean } = {}): Promise<ContainerInfo[]> {
    return inspecting.list(this.ctx, options);
  }

  // ---- recovery ----

  /**
   * Cleans what crashed pivot processes, killed monitors and reboots leave (`ps` runs it first).
   * Returns the ids it cleaned.
   */
  recover(): Promise<string[]> {
    return recovery.recover(this.ctx);
  }

  // ---- create ----

  /** Creates a container (`pivot create`): its root filesystem, config and /etc files. */
  create(options: ContainerOptions): Promise<ContainerInfo> {
    return creating.create(this.ctx, options);
  }

  /**
   * `pivot create|run --dry-run`: the container compiled as create would (image → OCI config →
   * launch plan), creating nothing.
   */
  dryRun(
    options: ContainerOptions,
    attached = false,
  ): Promise<{ id: string; dir: string; spec: Spec; plan: Plan }> {
    return creating.dryRun(this.ctx, options, attached);
  }

  // ---- start / run ----

  /** Starts a created or exited container detached, under conmon (`pivot start`). */
  start(ref: string): Promise<ContainerHandle> {
    return starting.start(this.ctx, ref);
  }

  /**
   * Starts a container under conmon and joins this terminal to it before its process starts
   * (`pivot run -it`, `pivot start -ai`): the detach keys leave it running, as `pivot attach`.
   */
  startAndAttach(
    ref: string,
    options: { detachKeys?: string; stdio?: "inherit" | "pipe" } = {},
  ): Promise<AttachResult> {
    return starting.startAndAttach(this.ctx, ref, options);
  }

  /**
   * Creates and starts a container. Detached: under conmon, returns once started. Attached: this
   * process monitors it; the handle has its streams (stdio "pipe") and its exit. `onCreated`
   * gets its id once it exists, before the start (which may fail and leave it Created).
   */
  async run(options: RunOptions, onCreated?: (id: string) => void): Promise<ContainerHandle> {
    const { detach, stdio, ...containerOptions } = options;
    if (!detach)
      return starting.runAttached(this.ctx, containerOptions, stdio ?? "pipe", onCreated);
    return starting.runDetached(this.ctx, containerOptions, onCreated);
  }

  /**
   * Creates a container and starts it under conmon with this terminal joined (`pivot run -it`),
   * under one hold of its lock; `onCreated` gets its id before the start.
   */
  runAndAttach(
    options: ContainerOptions,
    attach: { detachKeys?: string; stdio?: "inherit" | "pipe" } = {},
    onCreated?: (id: string) => void,
  ): Promise<AttachResult> {
    return starting.runAndAttach(this.ctx, options, attach, onCreated);
  }

  /** Starts a created container with this process as its monitor (`pivot start -a`). */
  startAttached(
    ref: string,
    stdio: "pipe" | "inherit" | "ignore" = "pipe",
  ): Promise<ContainerHandle> {
    return starting.startAttached(this.ctx, ref, stdio);
  }

  /**
   * After the container's process has exited (conmon's exit command, or the attached monitor):
   * the runtime's state goes, the overlay is unmounted, and --rm containers are removed. The exit
   * hook of a run (`runId`) of a container with a restart policy then restarts it as the policy
   * says, after the backoff (resolving once it is started again or left exited).
   */
  cleanup(ref: string, options: { keepOnFailure?: boolean; runId?: string } = {}): Promise<void> {
    if (options.runId !== undefined && !options.keepOnFailure)
      return restarting().then((m) => m.afterExit(this.ctx, ref, options.runId!));
    return lifecycle.cleanup(this.ctx, ref, options);
  }

  /**
   * The boot hook (`pivot start --all-restartable`, for a systemd unit or `@reboot`): starts the
   * exited containers Docker's daemon would start when it starts (always; unless-stopped and
   * on-failure unless stopped by hand, on-failure after a failure with retries left).
   */
  startRestartable(): Promise<{ started: string[]; failed: { id: string; error: Error }[] }> {
    return restarting().then((m) => m.startRestartable(this.ctx));
  }

  // ---- stop / kill / wait / remove ----

  /** Resolves with the exit code once the container has exited. */
  wait(ref: string, pollMs = 50): Promise<number> {
    return lifecycle.wait(this.ctx, ref, pollMs);
  }

  /** Sends a signal to the container's init (`pivot kill`, default SIGKILL). */
  kill(ref: string, signal: string | number = "SIGKILL"): void {
    lifecycle.kill(this.ctx, ref, signal);
  }

  /** The stop signal, then SIGKILL to every process after `timeout` seconds (`pivot stop`). */
  stop(ref: string, options: { timeout?: number; signal?: string } = {}): Promise<void> {
    return lifecycle.stop(this.ctx, ref, options);
  }

  /** Stops, then starts the container (`pivot restart`): Docker's `restart` event after both. */
  async restart(ref: string, options: { timeout?: number; signal?: string } = {}): Promise<void> {
    await this.stop(ref, options);
    const handle = await this.start(ref);
    const r = this.ctx.containers.load(handle.id);
    emitEvent(this.ctx, "container", "restart", handle.id, containerAttributes(r));
  }

  /** Removes a container: its runtime state, overlay, directory, name, and (volumes) its anonymous volumes. */
  remove(ref: string, options: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    return lifecycle.remove(this.ctx, ref, options);
  }

  // ---- logs / exec / attach ----

  /** The container's output (`pivot logs`), following it with `follow` until it exits. */
  async *logs(ref: string, options: Omit<ReadLogsOptions, "done"> = {}): AsyncGenerator<LogEntry> {
    yield* (await execing()).logs(this.ctx, ref, options);
  }

  /**
   * The engine's events (`pivot events`), Docker's: what happens to containers from now on, and
   * with `since` the recorded ones before; it ends at `until`, else when the caller stops reading.
   */
  async *events(options: EventsOptions = {}): AsyncGenerator<EngineEvent> {
    yield* readEvents(this.ctx.runRoot, options);
  }

  /** Runs another process in a running container (`pivot exec`). */
  async exec(ref: string, options: execModule.ExecOptions): Promise<ContainerHandle> {
    return (await execing()).exec(this.ctx, ref, options);
  }

  /**
   * A detached exec's end (conmon's exit command, `pivot exec-cleanup`): exec_die with its exit
   * code, unless the container is gone, then the exec's directory goes. Never throws.
   */
  async execCleanup(id: string, execId: string): Promise<void> {
    (await import("./exec-detached.ts")).execEnded(this.ctx, id, execId);
  }

  /**
   * Joins this process's terminal (or pipes) to a detached container's stdio through conmon's
   * attach socket (`pivot attach`). Resolves when the container exits (with its code) or when the
   * user types the detach keys (default Ctrl-P Ctrl-Q; "" for none).
   */
  attach(
    ref: string,
    options: { detachKeys?: string; noStdin?: boolean; stdio?: "inherit" | "pipe" } = {},
  ): Promise<AttachResult> {
    return execing().then((m) => m.attach(this.ctx, ref, options));
  }

  // ---- files: cp, export, diff, commit ----

  /**
   * A tar stream of `path` in the container (`pivot cp CONTAINER:PATH -`), its symlinks resolved
   * inside the container; `name` is the archive's top entry.
   */
  archive(ref: string, path: string): Promise<{ stream: Readable; name: string }> {
    return files().then((m) => m.archive(this.ctx, ref, path));
  }

  /** Extracts a tar stream into the directory `path` of the container (`pivot cp - CONTAINER:DIR`). */
  extractArchive(
    ref: string,
    path: string,
    tar: AsyncIterable<Uint8Array>,
    options: CopyOptions = {},
  ): Promise<void> {
    return files().then((m) => m.extractArchive(this.ctx, ref, path, tar, options));
  }

  /** `pivot cp CONTAINER:SRC DEST`: into DEST if it is a directory, else as DEST. */
  copyFrom(ref: string, src: string, dest: string, options: CopyOptions = {}): Promise<void> {
    return files().then((m) => m.copyFrom(this.ctx, ref, src, dest, options));
  }

  /** `pivot cp SRC CONTAINER:DEST`: symlinks in DEST resolve inside the container only. */
  copyTo(ref: string, src: string, dest: string, options: CopyOptions = {}): Promise<void> {
    return files().then((m) => m.copyTo(this.ctx, ref, src, dest, options));
  }

  /** The container's root filesystem as a tar stream, without its volumes (`pivot export`). */
  export(ref: string): Promise<Readable> {
    return files().then((m) => m.exportRootfs(this.ctx, ref));
  }

  /** What changed against the image: A added, C changed, D deleted (`pivot diff`). */
  diff(ref: string): Promise<Change[]> {
    return files().then((m) => m.diff(this.ctx, ref));
  }

  /**
   * A new image from the container: its image's layers plus one made of the upper directory
   * (whiteouts as `.wh.` files), tagged `ref` (`pivot commit`). A running container is paused
   * meanwhile.
   */
  commit(containerRef: string, options: containerFiles.CommitOptions = {}): Promise<StoredImage> {
    return files().then((m) => m.commit(this.ctx, containerRef, options));
  }

  /**
   * Builds an image from a Dockerfile (`pivot build`): each RUN in a container of the image so
   * far, committed as a layer; intermediate images and containers are removed at the end.
   */
  build(options: BuildOptions): Promise<StoredImage> {
    return import("./build/builder.ts").then((m) => m.build(this, this.ctx, options));
  }

  /**
   * Runs a running container's health check once and records it (`pivot healthcheck run`):
   * whether it passed, and the health after it (Docker's State.Health).
   */
  healthcheckRun(ref: string): Promise<{ passed: boolean; health: HealthState }> {
    return health().then((m) => m.runHealthcheck(this.ctx, ref));
  }

  /** The periodic check of run RUN_ID (pivot-timer's command): the timer's exit code. */
  healthcheckTimer(ref: string, runId: string): Promise<number> {
    return health().then((m) => m.timerCheck(this.ctx, ref, runId));
  }

  // ---- pause, rename, top, stats, prune ----

  /** Freezes every process of a running container (`pivot pause`). */
  pause(ref: string): void {
    lifecycle.pause(this.ctx, ref);
  }

  /** Thaws a paused container (`pivot unpause`). */
  unpause(ref: string): void {
    lifecycle.unpause(this.ctx, ref);
  }

  /**
   * Changes a container's limits or restart policy (`pivot update`): at once in its cgroup if it
   * runs, and for every later start.
   */
  async update(ref: string, changes: UpdateOptions): Promise<void> {
    const { update } = await import("./update.ts");
    return update(this.ctx, ref, changes);
  }

  /** Gives a container another name (`pivot rename`); its hostname stays. */
  rename(ref: string, newName: string): Promise<void> {
    return creating.rename(this.ctx, ref, newName);
  }

  /**
   * The container's processes as `ps` shows them (`pivot top`): ps runs on the host with
   * `psArgs` (default -ef) and only rows of the container's processes are kept, as Docker does.
   */
  top(ref: string, psArgs: string[] = ["-ef"]): TopResult {
    return stats.top(this.ctx, ref, psArgs);
  }

  /** One reading of a running container's resource usage (`pivot stats`). */
  stats(ref: string): StatsSample {
    return stats.stats(this.ctx, ref);
  }

  /**
   * Removes every container that is not running or paused (`pivot container prune`), optionally
   * only those `filter` accepts; returns their ids and the bytes their writable layers held.
   */
  prune(
    filter: (c: ContainerInfo) => boolean = () => true,
  ): Promise<{ removed: string[]; reclaimed: number }> {
    return pruning.prune(this.ctx, filter);
  }

  /**
   * Removes volumes no container uses (`pivot volume prune`): anonymous ones, and named ones too
   * with `all`, as Docker 23+ does. Returns their names and the bytes they held.
   */
  pruneVolumes(options: { all?: boolean; filter?: (v: VolumeInfo) => boolean } = {}): {
    removed: string[];
    reclaimed: number;
  } {
    return pruning.pruneVolumes(this.ctx, options);
  }

  // ---- volumes ----

  createVolume(name?: string, labels: Record<string, string> = {}): VolumeInfo {
    return this.volumes.create(name, { labels }).info;
  }

  listVolumes(): VolumeInfo[] {
    return this.volumes.list();
  }

  inspectVolume(name: string): VolumeInfo {
    return this.volumes.inspect(name);
  }

  removeVolume(name: string): void {
    pruning.removeVolume(this.ctx, name);
  }
}
