// The engine: images become containers (an overlay root filesystem over shared layers, a
// generated OCI config, /etc/hosts, /etc/hostname and /etc/resolv.conf bound in, volumes), run by
// the Runtime library, attached (this process monitors) or detached (conmon monitors).
//
// State lives in files, one directory per container (the layout: container-store.ts); status is
// derived from them and the runtime's own state, never cached (container-runtime.ts).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type { Cgroup } from "../cgroups/manager.ts";
import { createImage } from "../image/create.ts";
import { layerHistory, readFileInLayers } from "../image/layer-lookup.ts";
import {
  isMountPoint,
  mountOverlay,
  type OverlayPlan,
  planOverlay,
  unmountOverlay,
} from "../image/overlay.ts";
import type { ImageStore, StoredImage } from "../image/store.ts";
import { type ImageConfig, MediaType } from "../image/types.ts";
import type { NetworkManager } from "../network/attach.ts";
import type { PortMapping } from "../network/ports.ts";
import type { Mount, Process, Spec } from "../oci/spec.ts";
import { parseConfig } from "../oci/validate.ts";
import type { HostFacts, Plan } from "../runtime/plan.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { parseSignal } from "../runtime/signals.ts";
import { procStat } from "../runtime/state.ts";
import { defaultSeccompProfile } from "../security/seccomp-default.ts";
import {
  addHostLines,
  buildSpec,
  containerResolvConf,
  hostnameOf,
  hostsFile,
  mergeEnv,
  ociMount,
  parseSecurityOpts,
  publishExposed,
  resolveArgs,
  resolveUser,
} from "./config.ts";
import {
  connectNetwork,
  disconnectNetwork,
  joinedContainer,
  joinNetworkOf,
  networkOf,
} from "./container-network.ts";
import {
  cgroupOfRun,
  cgroupPathsOf,
  monitorAlive,
  releaseCgroups,
  rt,
  runtimeCommandOf,
  type Status,
  status,
} from "./container-runtime.ts";
import {
  type ContainerRecord,
  type RunState,
  randomName,
  readJson,
  writeJsonAtomic,
} from "./container-store.ts";
import { createContext, type EngineContext, type EngineOptions } from "./context.ts";
import { EngineError } from "./errors.ts";
import {
  type Change,
  copyTarget,
  extractTar,
  kindAt,
  layerTree,
  resolveInRoot,
  scanOpaque,
  tarCreate,
  upperChanges,
} from "./files.ts";
import { addInit } from "./init.ts";
import { LogWriter, type ReadLogsOptions, readLogs, startConmon } from "./monitor.ts";
import type { OciRuntimeCli } from "./oci-runtime.ts";
import { attachHelper, consoleHelper, TTY_DETACHED, type TtyHelper } from "./tty.ts";
import type {
  ContainerInfo,
  ContainerOptions,
  LogEntry,
  MountSpec,
  StatsSample,
  TopResult,
  VolumeInfo,
} from "./types.ts";
import type { VolumeStore } from "./volumes.ts";

export type { EngineOptions } from "./context.ts";
export { EngineError } from "./errors.ts";

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

export interface ExecOptions {
  cmd: string[];
  env?: string[];
  user?: string;
  workdir?: string;
  detach?: boolean;
  stdin?: boolean;
  /** A pseudo-terminal (`exec -t`): output comes as one stream, on stdout. */
  tty?: boolean;
  privileged?: boolean;
  stdio?: "pipe" | "inherit" | "ignore";
}

export interface AttachResult {
  id: string;
  /** The detach keys were typed: the container runs on. */
  detached: boolean;
  /** The container's exit code, once it has exited. */
  exitCode: number | null;
}

/** pivot-tty in console mode, and the socket it listens on. */
interface TtyConsole extends TtyHelper {
  socket: string;
}

/**
 * Once the process has exited: the helper sees the terminal close when the last process holding
 * it is gone; it is ended if that takes long, or at once if the launch failed.
 */
async function closeConsole(tty: TtyConsole, result: Promise<unknown>): Promise<void> {
  const failed = await result.then(
    () => false,
    () => true,
  );
  if (!failed) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([tty.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
  if (tty.child.exitCode === null && tty.child.signalCode === null) tty.child.kill("SIGTERM");
  await tty.exited;
  rmSync(tty.socket, { force: true });
}

/** A started container: its streams (attached, stdio "pipe") and its exit. */
export class ContainerHandle {
  private exited: Promise<number> | null = null;
  constructor(
    readonly id: string,
    readonly name: string,
    readonly stdin: Writable | null,
    readonly stdout: Readable | null,
    readonly stderr: Readable | null,
    private readonly waitFor: () => Promise<number>,
  ) {}
  /** Resolves with the exit code (128+N for signal N) once the container has exited. */
  wait(): Promise<number> {
    this.exited ??= this.waitFor();
    return this.exited;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Mount points in this mount namespace. */
function mountPoints(): string[] {
  let text = "";
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {}
  return text
    .split("\n")
    .map((l) =>
      (l.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    )
    .filter((p) => p !== "");
}

/** The host's CPU time so far, in ns (/proc/stat's cpu line, in USER_HZ ticks of 10 ms). */
function hostCpuTime(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const ticks = line
      .trim()
      .split(/\s+/)
      .slice(1, 8)
      .reduce((a, b) => a + Number(b), 0);
    return ticks * 10_000_000;
  } catch {
    return 0;
  }
}

function onlineCpus(): number {
  return cpus().length || 1;
}

/** Bytes of the files (not directories) under `path`, as Docker counts reclaimed space. */
function diskUsage(path: string): number {
  let total = 0;
  const walk = (p: string) => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) {
      total += st.size;
      return;
    }
    let names: string[] = [];
    try {
      names = readdirSync(p);
    } catch {}
    for (const n of names) walk(join(p, n));
  };
  walk(path);
  return total;
}

/** Follows `rel` inside `root` without following symlinks; null if a component is a symlink or missing. */
function pathInRoot(root: string, rel: string): string | null {
  let cur = root;
  for (const part of rel.split("/").filter((p) => p && p !== ".")) {
    if (part === "..") return null;
    cur = join(cur, part);
    try {
      if (lstatSync(cur).isSymbolicLink()) return null;
    } catch {
      return null;
    }
  }
  return cur;
}

function readFileInRoot(root: string, rel: string): string | undefined {
  const p = pathInRoot(root, rel);
  if (!p) return undefined;
  try {
    if (!lstatSync(p).isFile()) return undefined;
    return readFileSync(p, "utf8");
  } catch {
    return undefined;
  }
}

/** mkdir -p inside the root filesystem, stopping at a symlink (the runtime resolves it inside). */
function mkdirInRoot(root: string, rel: string, uid = 0, gid = 0): void {
  let cur = root;
  for (const part of rel.split("/").filter((p) => p && p !== ".")) {
    if (part === "..") return;
    cur = join(cur, part);
    try {
      if (!lstatSync(cur).isDirectory()) return;
    } catch {
      mkdirSync(cur, { mode: 0o755 });
      lchownSync(cur, uid, gid);
    }
  }
}

export class Engine {
  readonly root: string;
  readonly runRoot: string;
  readonly runtime: Runtime;
  readonly volumes: VolumeStore;
  readonly networks: NetworkManager;
  private readonly ctx: EngineContext;

  constructor(options: EngineOptions = {}) {
    this.ctx = createContext(options);
    this.root = this.ctx.root;
    this.runRoot = this.ctx.runRoot;
    this.runtime = this.ctx.runtime;
    this.volumes = this.ctx.volumes;
    this.networks = this.ctx.networks;
  }

  /** Whether detached containers can run (conmon was found). */
  get hasConmon(): boolean {
    return this.ctx.conmonPath !== null;
  }

  /** The image store (opened on first use). */
  images(): Promise<ImageStore> {
    return this.ctx.images();
  }

  // Shared with the modules through the context (context.ts, container-store.ts,
  // container-runtime.ts, container-network.ts).
  private get containersDir(): string {
    return this.ctx.containers.containersDir;
  }
  private get namesDir(): string {
    return this.ctx.containers.namesDir;
  }
  private get warn(): (message: string) => void {
    return this.ctx.warn;
  }
  private get conmonPath(): string | null {
    return this.ctx.conmonPath;
  }
  private get cliCommand(): string[] {
    return this.ctx.cliCommand;
  }
  private dir(id: string): string {
    return this.ctx.containers.dir(id);
  }
  private ids(): string[] {
    return this.ctx.containers.ids();
  }
  private load(id: string): ContainerRecord {
    return this.ctx.containers.load(id);
  }
  private runState(id: string): RunState | null {
    return this.ctx.containers.runState(id);
  }
  private claimName(name: string, id: string): void {
    this.ctx.containers.claimName(name, id);
  }
  private nameOwner(name: string): string | null {
    return this.ctx.containers.nameOwner(name);
  }
  private releaseName(name: string, id: string): void {
    this.ctx.containers.releaseName(name, id);
  }
  private withLock<T>(id: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    return this.ctx.containers.withLock(id, fn, timeoutMs);
  }
  private rt(id: string): Runtime | OciRuntimeCli {
    return rt(this.ctx, id);
  }
  private status(id: string): Status {
    return status(this.ctx, id);
  }
  private runtimeCommandOf(r: ContainerRecord): string[] {
    return runtimeCommandOf(this.ctx, r);
  }
  private cgroupPathsOf(id: string): { cgroupPaths?: Record<string, string> } {
    return cgroupPathsOf(this.ctx, id);
  }
  private cgroupOfRun(id: string): Cgroup | null {
    return cgroupOfRun(this.ctx, id);
  }
  private releaseCgroups(id: string): void {
    releaseCgroups(this.ctx, id);
  }
  private joinedContainer(o: ContainerOptions): ContainerRecord | null {
    return joinedContainer(this.ctx, o);
  }
  private networkOf(o: ContainerOptions, dryRun = false): Promise<string | null> {
    return networkOf(this.ctx, o, dryRun);
  }
  private connectNetwork(r: ContainerRecord): Promise<void> {
    return connectNetwork(this.ctx, r);
  }
  private disconnectNetwork(r: ContainerRecord): Promise<void> {
    return disconnectNetwork(this.ctx, r);
  }
  private joinNetworkOf(r: ContainerRecord): void {
    joinNetworkOf(this.ctx, r);
  }

  // ---- lookup ----

  /** Finds a container by full id, name, or unique id prefix. */
  resolveId(ref: string): string {
    return this.ctx.containers.resolveId(ref);
  }
  inspect(ref: string): ContainerInfo {
    const id = this.resolveId(ref);
    const r = this.load(id);
    const st = this.status(id);
    const rs = this.runState(id);
    return {
      id,
      name: r.name,
      image: r.image,
      imageId: r.imageId,
      created: r.created,
      command: r.command,
      options: r.options,
      state: {
        status: st.status,
        running: st.status === "running" || st.status === "paused",
        pid: st.pid,
        exitCode: st.exitCode,
        startedAt: rs?.startedAt ?? null,
        finishedAt:
          st.status === "exited" ? (rs?.finishedAt ?? this.ctx.containers.exitTime(id)) : null,
        monitor: rs?.monitor ?? null,
        monitorPid: rs?.monitorPid ?? 0,
      },
      rootfs: {
        lowerdirs: r.overlay.lowerdirs.map((l) => (l.startsWith("/") ? l : join(r.overlay.cwd, l))),
        upperdir: r.overlay.upperdir,
        workdir: r.overlay.workdir,
        merged: r.overlay.target,
      },
      volumes: r.volumes,
      labels: r.labels,
      dir: this.dir(id),
      logPath: join(this.dir(id), "ctr.log"),
      ports: this.publishedPorts(id, r),
    };
  }

  /** Published ports: the host ports chosen while on a network, else as configured. */
  private publishedPorts(id: string, r: ContainerRecord): PortMapping[] {
    if (!r.options.publish?.length) return [];
    const attached = this.networks.attachments(id);
    return attached.length > 0 ? attached.flatMap((a) => a.ports) : r.options.publish;
  }

  /** Containers, newest first; running ones only unless `all`. Exited --rm containers are removed. */
  async list(options: { all?: boolean } = {}): Promise<ContainerInfo[]> {
    await this.recover();
    const out: ContainerInfo[] = [];
    for (const id of this.ids()) {
      let info: ContainerInfo;
      try {
        info = this.inspect(id);
      } catch {
        continue;
      }
      if (info.state.status === "exited" && info.options.autoRemove) {
        await this.remove(id, { force: true }).catch(() => {});
        continue;
      }
      if (options.all || info.state.running) out.push(info);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  // ---- recovery ----

  /**
   * Cleans what crashed pivot processes, killed monitors and reboots leave (`ps` runs it first):
   * directories of creates and removes that died half-way (their lock is free), and exited
   * containers whose monitor did not clean up: runtime state, cgroups, overlay mount, network.
   * Returns the ids it cleaned.
   */
  async recover(): Promise<string[]> {
    const cleaned: string[] = [];
    let entries: string[];
    try {
      entries = readdirSync(this.containersDir);
    } catch {
      return cleaned;
    }
    for (const e of entries) {
      const removing = /^\.removing-([0-9a-f]{64})$/.exec(e);
      const id = removing ? removing[1]! : /^[0-9a-f]{64}$/.test(e) ? e : null;
      if (!id) continue;
      if (!removing && existsSync(join(this.dir(id), "container.json"))) continue;
      if (await this.recoverOrphan(id, join(this.containersDir, e))) cleaned.push(id);
    }
    const mounted = new Set(mountPoints());
    const known = new Set<string>();
    for (const id of this.ids()) {
      known.add(id);
      let r: ContainerRecord;
      let st: Status;
      try {
        r = this.load(id);
        st = this.status(id);
      } catch {
        continue;
      }
      if (st.status !== "exited") continue;
      const rs = this.runState(id);
      if (rs && monitorAlive(rs.monitorPid, rs.monitorStart)) continue; // its cleanup is coming
      const stale =
        mounted.has(r.overlay.target) ||
        this.rt(id).store.exists(id) ||
        Object.values(rs?.cgroupPaths ?? {}).some((p) => existsSync(p));
      if (!stale) continue;
      await this.withLock(id, () => this.cleanupLocked(id, {}), 2000).catch((err) =>
        this.warn(`cleaning up container ${id.slice(0, 12)}: ${(err as Error).message}`),
      );
      cleaned.push(id);
    }
    // Runtime state of containers the engine no longer has (a remove that died half-way).
    for (const id of this.runtime.store.ids()) {
      if (known.has(id) || existsSync(join(this.dir(id), "container.json"))) continue;
      await this.withLock(id, () => this.runtime.delete(id, true), 100).catch(() => {});
    }
    return cleaned;
  }

  /**
   * Removes a container directory without container.json (a create that died) or one renamed
   * for removal (a remove that died), if no live process holds the container's lock.
   */
  private async recoverOrphan(id: string, path = this.dir(id)): Promise<boolean> {
    return this.withLock(
      id,
      async () => {
        if (path === this.dir(id) && existsSync(join(path, "container.json"))) return false;
        if (!existsSync(path)) return false;
        for (const m of mountPoints()
          .filter((p) => p.startsWith(`${path}/`))
          .reverse()) {
          await unmountOverlay(m).catch(() => unmountOverlay(m, { lazy: true }));
        }
        if (this.runtime.store.exists(id)) await this.runtime.delete(id, true).catch(() => {});
        rmSync(path, { recursive: true, force: true });
        try {
          for (const n of readdirSync(this.namesDir)) {
            if (this.nameOwner(n) === id) unlinkSync(join(this.namesDir, n));
          }
        } catch {}
        return true;
      },
      100,
    ).catch(() => false);
  }

  // ---- create ----

  /** Creates a container (`pivot create`): its root filesystem, config and /etc files. */
  async create(options: ContainerOptions): Promise<ContainerInfo> {
    const id = randomBytes(32).toString("hex");
    // Under the container's lock: a directory without container.json whose lock is free was
    // left by a create that crashed (recover() cleans it).
    return this.withLock(id, () => this.createLocked(options, id));
  }

  private async createLocked(options: ContainerOptions, id: string): Promise<ContainerInfo> {
    const store = await this.images();
    const image = await store.resolve(options.image);
    let name = options.name;
    if (name !== undefined) {
      const owner = this.nameOwner(name);
      if (owner && !existsSync(join(this.dir(owner), "container.json")))
        await this.recoverOrphan(owner);
      this.claimName(name, id);
    } else {
      for (let i = 0; ; i++) {
        name = randomName();
        try {
          this.claimName(name, id);
          break;
        } catch (err) {
          if (i > 20) throw err;
        }
      }
    }
    const dir = this.dir(id);
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    const createdVolumes: string[] = [];
    let overlay: OverlayPlan | null = null;
    try {
      const layers = await store.ensureImageLayers(image);
      overlay = planOverlay(store.root, layers, dir);
      await mountOverlay(overlay);
      const merged = overlay.target;
      const c = await this.compose(options, {
        id,
        name: name!,
        dir,
        image,
        merged,
        readEtc: (rel) => readFileInRoot(merged, rel),
        createdVolumes,
      });
      writeJsonAtomic(join(dir, "config.json"), c.spec);
      const imageConfig: ImageConfig["config"] = image.config.config ?? {};
      const history = layerHistory(image.config);
      const record: ContainerRecord = {
        id,
        name: name!,
        image: options.image,
        imageId: image.id,
        created: new Date().toISOString(),
        options: c.options,
        command: c.command,
        stopSignal: options.stopSignal ?? imageConfig.StopSignal ?? "SIGTERM",
        overlay,
        volumes: c.volumes,
        labels: { ...(imageConfig.Labels ?? {}), ...(options.labels ?? {}) },
        layers: layers.map((l, i) => ({
          diffId: l.diffId,
          link: l.link,
          ...(history[i] !== undefined ? { createdBy: history[i] } : {}),
        })),
      };
      writeJsonAtomic(join(dir, "container.json"), record);
      return this.inspect(id);
    } catch (err) {
      if (overlay) await unmountOverlay(overlay.target, { lazy: true }).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
      this.releaseName(name!, id);
      for (const v of createdVolumes) {
        try {
          this.volumes.remove(v);
        } catch {}
      }
      throw err;
    }
  }

  /**
   * Image + options → the OCI config, shared by `create` and the dry run. With `merged` (create),
   * volumes are made and filled, bind sources, the working directory and the /etc files created;
   * without it (dry run), nothing is: volume paths are where create would put them.
   */
  private async compose(
    options: ContainerOptions,
    ctx: {
      id: string;
      name: string;
      dir: string;
      image: StoredImage;
      merged: string | null;
      readEtc: (rel: string) => string | undefined;
      createdVolumes: string[];
    },
  ): Promise<{
    spec: Spec;
    options: ContainerOptions;
    command: string[];
    volumes: ContainerRecord["volumes"];
  }> {
    const { id, dir, merged } = ctx;
    const imageConfig: ImageConfig["config"] = ctx.image.config.config ?? {};
    const security = parseSecurityOpts(options.securityOpt ?? [], (p) => readFileSync(p, "utf8"));
    const userSpec = options.user ?? imageConfig.User;
    const user = resolveUser(userSpec, ctx.readEtc("etc/passwd"), ctx.readEtc("etc/group"));
    const opts: ContainerOptions = { ...options, name: ctx.name };
    const joined = this.joinedContainer(opts);
    if (joined) opts.hostname = hostnameOf(joined.id, joined.options); // Docker's rule
    if (opts.publishAll)
      opts.publish = publishExposed(opts.publish ?? [], imageConfig.ExposedPorts);
    const extraHosts = addHostLines(opts.addHosts ?? []);
    const command = resolveArgs(imageConfig, opts);
    // Volumes: the user's, then the image's own that nothing covers (anonymous).
    const specs: MountSpec[] = [...(options.mounts ?? [])];
    for (const target of Object.keys(imageConfig.Volumes ?? {})) {
      const t = target.replace(/\/+$/, "") || "/";
      if (!specs.some((m) => m.target === t)) specs.push({ type: "volume", target: t });
    }
    const mounts: Mount[] = [];
    const volumes: ContainerRecord["volumes"] = [];
    for (const m of specs) {
      if (m.type === "tmpfs") {
        mounts.push(ociMount(m));
      } else if (m.type === "bind") {
        if (merged !== null && !existsSync(m.source!)) {
          if (m.mustExist) {
            throw new EngineError(`bind source path does not exist: ${m.source}`, {
              hint: "create it first, or use -v HOST:CONTAINER, which creates a missing directory",
            });
          }
          mkdirSync(m.source!, { recursive: true });
        }
        mounts.push(ociMount(m));
      } else if (merged === null) {
        const volName = m.source ?? "(new anonymous volume)";
        volumes.push({ name: volName, target: m.target, anonymous: !m.source });
        mounts.push(ociMount(m, join(this.volumes.root, volName, "_data")));
      } else {
        const { info, created } = this.volumes.create(m.source, { anonymous: !m.source });
        if (created && !m.source) ctx.createdVolumes.push(info.name);
        if (created && !m.noCopy) this.copyUp(merged, m.target, info.mountpoint);
        volumes.push({ name: info.name, target: m.target, anonymous: !m.source });
        mounts.push(ociMount(m, info.mountpoint));
      }
    }
    const workdir = options.workdir ?? imageConfig.WorkingDir;
    if (workdir && merged !== null) mkdirInRoot(merged, workdir, user.uid, user.gid);
    const hostname = hostnameOf(id, opts);
    if (merged !== null) {
      writeFileSync(join(dir, "hostname"), `${hostname}\n`);
      writeFileSync(join(dir, "hosts"), hostsFile(hostname, extraHosts));
      let hostResolv = "";
      try {
        hostResolv = readFileSync("/etc/resolv.conf", "utf8");
      } catch {}
      writeFileSync(join(dir, "resolv.conf"), containerResolvConf(hostResolv, opts));
    }
    // --network container:NAME: the other container's /etc files, as Docker binds them.
    const etcDir = joined ? this.dir(joined.id) : dir;
    const network = await this.networkOf(opts, merged === null);
    const spec: Spec = buildSpec({
      imageConfig,
      options: opts,
      id,
      user,
      rootfs: "merged",
      ...(network ? { netns: this.networks.netnsPath(id) } : {}),
      etcFiles: {
        hosts: join(etcDir, "hosts"),
        hostname: join(etcDir, "hostname"),
        resolvConf: join(etcDir, "resolv.conf"),
      },
      mounts,
      defaultSeccomp: (caps) => defaultSeccompProfile({ capabilities: caps }),
      security,
    });
    if (opts.init) addInit(spec);
    // Another runtime gets a cgroup path of its own, known to `stats`.
    if (opts.runtime) spec.linux!.cgroupsPath = `/pivot-${id}`;
    return { spec, options: opts, command, volumes };
  }

  /**
   * `pivot create|run --dry-run`: the container compiled as create would (image → OCI config →
   * launch plan), creating nothing: no container directory, overlay mount, volume, network or
   * cgroup. The image's layers are unpacked into the store if they are not yet.
   */
  async dryRun(
    options: ContainerOptions,
    attached = false,
  ): Promise<{ id: string; dir: string; spec: Spec; plan: Plan }> {
    const store = await this.images();
    const image = await store.resolve(options.image);
    const id = randomBytes(32).toString("hex");
    const dir = this.dir(id);
    const layers = await store.ensureImageLayers(image);
    const overlay = planOverlay(store.root, layers, dir);
    const top = [...layers].reverse().map((l) => l.diffPath);
    const c = await this.compose(options, {
      id,
      name: options.name ?? randomName(),
      dir,
      image,
      merged: null,
      readEtc: (rel) => readFileInLayers(top, rel),
      createdVolumes: [],
    });
    const spec = parseConfig(JSON.stringify(c.spec), join(dir, "config.json"));
    // What does not exist yet would be made by create: the /etc files, volumes, bind sources.
    const host: HostFacts = {
      kindOf(path) {
        if (path.startsWith(`${dir}/`)) return "file";
        try {
          return statSync(path).isDirectory() ? "directory" : "file";
        } catch {
          return "directory";
        }
      },
    };
    const { plan } = this.runtime.planContainer(id, { bundle: dir }, attached, {
      spec,
      bundle: dir,
      rootfs: overlay.target,
      host,
    });
    return { id, dir, spec, plan };
  }

  /** Fills a new volume with the image's content at `target` (as Docker does). */
  private copyUp(merged: string, target: string, into: string): void {
    const src = pathInRoot(merged, target);
    if (!src) return;
    try {
      if (!lstatSync(src).isDirectory()) return;
    } catch {
      return;
    }
    const r = spawnSync("cp", ["-a", "--", `${src}/.`, `${into}/`], { encoding: "utf8" });
    if (r.status !== 0) this.warn(`copying ${target} into its volume failed: ${r.stderr.trim()}`);
  }

  // ---- start / run ----

  private async prepareStart(id: string): Promise<ContainerRecord> {
    const r = this.load(id);
    const st = this.status(id);
    if (st.status === "running" || st.status === "paused") {
      throw new EngineError(`container ${r.name} is already running`);
    }
    rmSync(join(this.dir(id), "exit"), { force: true });
    rmSync(join(this.dir(id), "state.json"), { force: true });
    if (!(await isMountPoint(r.overlay.target))) await mountOverlay(r.overlay);
    if (this.rt(id).store.exists(id)) await this.rt(id).delete(id, true);
    await this.connectNetwork(r);
    this.joinNetworkOf(r);
    return r;
  }

  /** Starts a created or exited container detached, under conmon (`pivot start`). */
  async start(ref: string): Promise<ContainerHandle> {
    const id = this.resolveId(ref);
    return this.withLock(id, () => this.startLocked(id));
  }

  /**
   * Starts a container under conmon and joins this terminal to it before its process starts
   * (`pivot run -it`, `pivot start -ai`): the detach keys leave it running, as `pivot attach`.
   */
  async startAndAttach(
    ref: string,
    options: { detachKeys?: string; stdio?: "inherit" | "pipe" } = {},
  ): Promise<AttachResult> {
    const id = this.resolveId(ref);
    const r = this.load(id);
    let helper: TtyHelper | null = null;
    await this.withLock(id, () =>
      this.startLocked(id, async () => {
        helper = await attachHelper(join(this.dir(id), "attach"), {
          ctl: join(this.dir(id), "ctl"),
          stdin: r.options.stdin ?? false,
          stdio: options.stdio ?? "inherit",
          ...(options.detachKeys !== undefined ? { detachKeys: options.detachKeys } : {}),
        });
      }),
    ).catch((err) => {
      (helper as TtyHelper | null)?.child.kill("SIGTERM");
      throw err;
    });
    const code = await (helper as TtyHelper | null)!.exited;
    if (code === TTY_DETACHED) return { id, detached: true, exitCode: null };
    return { id, detached: false, exitCode: await this.wait(id) };
  }

  private async startLocked(
    id: string,
    beforeStart?: () => Promise<void>,
  ): Promise<ContainerHandle> {
    const r = await this.prepareStart(id);
    const runId = randomBytes(8).toString("hex");
    if (!this.conmonPath) {
      throw new EngineError("detached containers need conmon, which is not installed", {
        hint: "install it (apt-get install conmon), or run the container attached (without -d)",
      });
    }
    const dir = this.dir(id);
    const pidFile = join(dir, "pidfile");
    const conmonPidFile = join(dir, "conmon.pid");
    rmSync(pidFile, { force: true });
    const socketDir = join(this.runRoot, "socket");
    mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    try {
      const pid = await startConmon({
        conmon: this.conmonPath,
        id,
        name: r.name,
        bundle: dir,
        runtime: this.runtimeCommandOf(r),
        pidFile,
        conmonPidFile,
        logPath: join(dir, "ctr.log"),
        persistDir: dir,
        socketDir,
        tty: r.options.tty ?? false,
        stdin: r.options.stdin ?? false,
        exitCommand: [
          ...this.cliCommand,
          "--root",
          this.root,
          "--run-root",
          this.runRoot,
          "container-cleanup",
          id,
          runId,
        ],
      });
      const conmonPid = Number(readFileSync(conmonPidFile, "utf8").trim());
      writeJsonAtomic(join(dir, "state.json"), {
        runId,
        startedAt: new Date().toISOString(),
        monitor: "conmon",
        monitorPid: conmonPid,
        monitorStart: procStat(conmonPid)?.startTime ?? "",
        pid,
        ...this.cgroupPathsOf(id),
      } satisfies RunState);
      await beforeStart?.();
      await this.rt(id).start(id);
    } catch (err) {
      await this.cleanupLocked(id, { keepOnFailure: true }).catch(() => {});
      throw err;
    }
    return new ContainerHandle(id, r.name, null, null, null, () => this.wait(id));
  }

  /**
   * Creates and starts a container. Detached: under conmon, returns once started. Attached: this
   * process monitors it; the handle has its streams (stdio "pipe") and its exit.
   */
  async run(options: RunOptions): Promise<ContainerHandle> {
    const { detach, stdio, ...containerOptions } = options;
    const info = await this.create(containerOptions);
    if (detach) {
      try {
        return await this.start(info.id);
      } catch (err) {
        if (options.autoRemove) await this.remove(info.id, { force: true }).catch(() => {});
        throw err;
      }
    }
    return this.startAttached(info.id, stdio ?? "pipe");
  }

  /** Starts a container with this process as its monitor (`pivot start -a`, `pivot run`). */
  async startAttached(
    ref: string,
    stdio: "pipe" | "inherit" | "ignore" = "pipe",
  ): Promise<ContainerHandle> {
    const id = this.resolveId(ref);
    const r = await this.withLock(id, () => this.prepareStart(id));
    const runId = randomBytes(8).toString("hex");
    const dir = this.dir(id);
    const log = new LogWriter(join(dir, "ctr.log"));
    const wantStdin = r.options.stdin ?? false;
    const outs = {
      stdout: stdio === "pipe" ? new PassThrough() : null,
      stderr: stdio === "pipe" ? new PassThrough() : null,
    };
    const stdinStream = wantStdin && stdio === "pipe" ? new PassThrough() : null;
    let streamsDone: Promise<unknown> = Promise.resolve();
    // -t: pivot-tty receives the pty master and joins it to this process's terminal or to pipes.
    let tty: TtyConsole | null = null;
    if (r.options.tty) {
      try {
        tty = await this.openConsole(id, runId, stdio, wantStdin);
      } catch (err) {
        log.close();
        await this.cleanup(id, { keepOnFailure: true }).catch(() => {});
        if (r.options.autoRemove) await this.remove(id, { force: true }).catch(() => {});
        throw err;
      }
      streamsDone = this.wireConsole(tty, stdinStream, outs.stdout, log);
    }
    let started!: () => void;
    const startedP = new Promise<void>((res) => {
      started = res;
    });
    const me = procStat(process.pid)?.startTime ?? "";
    const runP = this.rt(id).run(id, {
      bundle: dir,
      ...(tty
        ? { consoleSocket: tty.socket, stdio: ["ignore", "ignore", "ignore"] }
        : {
            stdio: [
              wantStdin ? (stdio === "inherit" ? "inherit" : "pipe") : "ignore",
              "pipe",
              "pipe",
            ],
          }),
      onLaunch: (child) => {
        if (tty) return;
        const waits: Promise<unknown>[] = [];
        for (const name of ["stdout", "stderr"] as const) {
          const src = child[name];
          if (!src) continue;
          src.on("data", (chunk: Buffer) => {
            log.write(name, chunk);
            if (stdio === "inherit") process[name].write(chunk);
            else outs[name]?.write(chunk);
          });
          waits.push(finished(src).catch(() => {}));
        }
        streamsDone = Promise.all(waits);
        if (stdinStream && child.stdin) {
          stdinStream.pipe(child.stdin);
          child.stdin.on("error", () => {});
        }
      },
      onStart: (pid) => {
        writeJsonAtomic(join(dir, "state.json"), {
          runId,
          startedAt: new Date().toISOString(),
          monitor: "inline",
          monitorPid: process.pid,
          monitorStart: me,
          pid,
          ...this.cgroupPathsOf(id),
        } satisfies RunState);
        started();
      },
    });
    const exited = (async () => {
      let code: number;
      try {
        code = await runP;
      } finally {
        if (tty) await closeConsole(tty, runP);
        await streamsDone;
        outs.stdout?.end();
        outs.stderr?.end();
        log.close();
      }
      writeFileSync(join(dir, "exit"), String(code));
      const rs = this.runState(id);
      if (rs)
        writeJsonAtomic(join(dir, "state.json"), { ...rs, finishedAt: new Date().toISOString() });
      await this.cleanup(id, { runId });
      return code;
    })();
    try {
      await Promise.race([startedP, exited]);
    } catch (err) {
      await this.cleanup(id, { keepOnFailure: true }).catch(() => {});
      if (r.options.autoRemove) await this.remove(id, { force: true }).catch(() => {});
      throw err;
    }
    exited.catch(() => {});
    return new ContainerHandle(id, r.name, stdinStream, outs.stdout, outs.stderr, () => exited);
  }

  /** Starts pivot-tty listening on a console socket for the runtime's pty master. */
  private async openConsole(
    id: string,
    runId: string,
    stdio: "pipe" | "inherit" | "ignore",
    stdin: boolean,
  ): Promise<TtyConsole> {
    const dir = join(this.runRoot, "tty");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const socket = join(dir, `${id.slice(0, 12)}-${runId}.sock`);
    const helper = await consoleHelper(socket, {
      stdio: stdio === "inherit" ? "inherit" : "pipe",
      stdin: stdin && stdio !== "ignore",
    });
    return { ...helper, socket };
  }

  /** The terminal's output (stdout and stderr in one) to `out` and the log; `stdin` to it. */
  private wireConsole(
    tty: TtyConsole,
    stdin: Readable | null,
    out: Writable | null,
    log: LogWriter | null,
  ): Promise<unknown> {
    const src = tty.child.stdout;
    src?.on("data", (chunk: Buffer) => {
      log?.write("stdout", chunk);
      out?.write(chunk);
    });
    if (stdin && tty.child.stdin) {
      stdin.pipe(tty.child.stdin);
      tty.child.stdin.on("error", () => {});
    }
    return Promise.all([tty.exited, src ? finished(src).catch(() => {}) : null]);
  }

  /**
   * After the container's process has exited (conmon's exit command, or the attached monitor):
   * the runtime's state goes, the overlay is unmounted, and --rm containers are removed.
   */
  async cleanup(
    ref: string,
    options: { keepOnFailure?: boolean; runId?: string } = {},
  ): Promise<void> {
    let id: string;
    try {
      id = this.resolveId(ref);
    } catch {
      return;
    }
    await this.withLock(id, () => this.cleanupLocked(id, options));
  }

  private async cleanupLocked(
    id: string,
    options: { keepOnFailure?: boolean; runId?: string },
  ): Promise<void> {
    if (!existsSync(join(this.dir(id), "container.json"))) return;
    if (options.runId !== undefined && this.runState(id)?.runId !== options.runId) return;
    const r = this.load(id);
    if (this.rt(id).store.exists(id))
      await this.rt(id)
        .delete(id, true)
        .catch((e) => this.warn((e as Error).message));
    this.releaseCgroups(id);
    await this.disconnectNetwork(r);
    if (r.options.autoRemove && !options.keepOnFailure) {
      await this.removeLocked(id, { force: true });
      return;
    }
    await unmountOverlay(r.overlay.target).catch(() =>
      unmountOverlay(r.overlay.target, { lazy: true }),
    );
  }

  // ---- stop / kill / wait / remove ----

  /** Resolves with the exit code once the container has exited. */
  async wait(ref: string, pollMs = 50): Promise<number> {
    let id: string;
    try {
      id = this.resolveId(ref);
    } catch (err) {
      // A full id of a container removed (--rm) since it exited: its code was kept.
      const code = /^[0-9a-f]{64}$/.test(ref) ? this.ctx.containers.removedExitCode(ref) : null;
      if (code !== null) return code;
      throw err;
    }
    for (;;) {
      let st: Status | null = null;
      try {
        st = this.status(id);
      } catch {}
      if (st?.status === "exited") return st.exitCode ?? 255;
      if (!st || !existsSync(join(this.dir(id), "container.json"))) {
        // Removed meanwhile, by its own --rm cleanup or `rm -f`: the exit code was kept aside.
        const code = this.ctx.containers.removedExitCode(id);
        if (code !== null) return code;
        throw new EngineError(`container ${ref} was removed while waiting`);
      }
      if (st.status === "created") throw new EngineError(`container ${ref} is not started`);
      await sleep(pollMs);
    }
  }

  /** Sends a signal to the container's init (`pivot kill`, default SIGKILL). */
  kill(ref: string, signal: string | number = "SIGKILL"): void {
    const id = this.resolveId(ref);
    const st = this.status(id);
    if (st.status !== "running" && st.status !== "paused") {
      throw new EngineError(`container ${ref} is not running`);
    }
    parseSignal(signal);
    this.rt(id).kill(id, signal);
  }

  /** The stop signal, then SIGKILL to every process after `timeout` seconds (`pivot stop`). */
  async stop(ref: string, options: { timeout?: number; signal?: string } = {}): Promise<void> {
    const id = this.resolveId(ref);
    const r = this.load(id);
    if (this.status(id).status !== "running" && this.status(id).status !== "paused") return;
    const timeout = options.timeout ?? r.options.stopTimeout ?? 10;
    try {
      if (this.status(id).status === "paused") this.rt(id).resume(id);
      this.rt(id).kill(id, options.signal ?? r.stopSignal);
    } catch {}
    const deadline = Date.now() + timeout * 1000;
    while (Date.now() < deadline) {
      if (this.status(id).status === "exited") return;
      await sleep(50);
    }
    try {
      this.rt(id).kill(id, "SIGKILL", true);
    } catch {}
    for (let i = 0; i < 200 && this.status(id).status !== "exited"; i++) await sleep(50);
  }

  /** Removes a container: its runtime state, overlay, directory, name, and (volumes) its anonymous volumes. */
  async remove(ref: string, options: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const id = this.resolveId(ref);
    await this.withLock(id, () => this.removeLocked(id, options));
  }

  private async removeLocked(
    id: string,
    options: { force?: boolean; volumes?: boolean },
  ): Promise<void> {
    if (!existsSync(join(this.dir(id), "container.json"))) return;
    const r = this.load(id);
    const st = this.status(id);
    if (st.status === "running" || st.status === "paused") {
      if (!options.force) {
        throw new EngineError(`cannot remove container ${r.name}: it is ${st.status}`, {
          hint: `stop it first (\`pivot stop ${r.name}\`), or use \`pivot rm -f\``,
        });
      }
      try {
        this.rt(id).kill(id, "SIGKILL", true);
      } catch {}
    }
    if (this.rt(id).store.exists(id))
      await this.rt(id)
        .delete(id, true)
        .catch(() => {});
    this.releaseCgroups(id);
    await this.disconnectNetwork(r);
    // Conmon, if alive, writes the exit file and runs cleanup; the directory goes regardless.
    await unmountOverlay(r.overlay.target).catch(() =>
      unmountOverlay(r.overlay.target, { lazy: true }),
    );
    const gone = join(this.containersDir, `.removing-${id}`);
    this.ctx.containers.keepExitCode(id);
    try {
      renameSync(this.dir(id), gone);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // removed meanwhile
      throw err;
    }
    this.releaseName(r.name, id);
    rmSync(gone, { recursive: true, force: true });
    if (options.volumes || r.options.autoRemove) {
      for (const v of r.volumes) {
        if (!v.anonymous) continue;
        try {
          this.volumes.remove(v.name);
        } catch {}
      }
    }
  }

  // ---- logs / exec ----

  /** The container's output (`pivot logs`), following it with `follow` until it exits. */
  logs(ref: string, options: Omit<ReadLogsOptions, "done"> = {}): AsyncGenerator<LogEntry> {
    const id = this.resolveId(ref);
    return readLogs(join(this.dir(id), "ctr.log"), {
      ...options,
      done: () => {
        try {
          return this.status(id).status === "exited";
        } catch {
          return true;
        }
      },
    });
  }

  /** Runs another process in a running container (`pivot exec`). */
  async exec(ref: string, options: ExecOptions): Promise<ContainerHandle> {
    const id = this.resolveId(ref);
    const r = this.load(id);
    const st = this.status(id);
    if (st.status !== "running") {
      throw new EngineError(`container ${r.name} is not running (${st.status})`, {
        hint: `start it with \`pivot start ${r.name}\``,
      });
    }
    const spec = readJson<Spec>(join(this.dir(id), "config.json"));
    const base = spec?.process;
    if (!base) throw new EngineError(`the config of container ${r.name} is missing`);
    const tty = (options.tty ?? false) && !options.detach;
    const proc: Process = {
      terminal: tty,
      user: base.user,
      args: options.cmd,
      env: mergeEnv(
        [base.env ?? [], tty ? ["TERM=xterm"] : [], options.env ?? []],
        (k) => process.env[k],
      ),
      cwd: options.workdir ?? base.cwd,
      noNewPrivileges: base.noNewPrivileges ?? false,
      ...(base.capabilities ? { capabilities: structuredClone(base.capabilities) } : {}),
    };
    if (options.user !== undefined) {
      const merged = r.overlay.target;
      const u = resolveUser(
        options.user,
        readFileInRoot(merged, "etc/passwd"),
        readFileInRoot(merged, "etc/group"),
      );
      proc.user = {
        uid: u.uid,
        gid: u.gid,
        ...(u.additionalGids.length ? { additionalGids: u.additionalGids } : {}),
      };
    }
    if (options.cmd.length === 0) throw new EngineError("exec needs a command");
    const stdio = options.stdio ?? "pipe";
    const outs = {
      stdout: stdio === "pipe" && !options.detach ? new PassThrough() : null,
      stderr: stdio === "pipe" && !options.detach ? new PassThrough() : null,
    };
    const stdinStream = options.stdin && stdio === "pipe" ? new PassThrough() : null;
    let streamsDone: Promise<unknown> = Promise.resolve();
    let term: TtyConsole | null = null;
    if (tty) {
      term = await this.openConsole(id, randomBytes(8).toString("hex"), stdio, !!options.stdin);
      streamsDone = this.wireConsole(term, stdinStream, outs.stdout, null);
    }
    const result = this.rt(id).exec(id, {
      process: proc,
      detach: options.detach ?? false,
      ...(term ? { consoleSocket: term.socket } : {}),
      stdio:
        options.detach || term
          ? ["ignore", "ignore", "ignore"]
          : [
              options.stdin ? (stdio === "inherit" ? "inherit" : "pipe") : "ignore",
              stdio === "inherit" ? "inherit" : "pipe",
              stdio === "inherit" ? "inherit" : "pipe",
            ],
      onLaunch: (child) => {
        if (term) return;
        const waits: Promise<unknown>[] = [];
        for (const name of ["stdout", "stderr"] as const) {
          const src = child[name];
          const dst = outs[name];
          if (!src) continue;
          if (dst) src.pipe(dst);
          else src.resume();
          waits.push(finished(src).catch(() => {}));
        }
        streamsDone = Promise.all(waits);
        if (stdinStream && child.stdin) {
          stdinStream.pipe(child.stdin);
          child.stdin.on("error", () => {});
        }
      },
    });
    const exited = (async () => {
      try {
        const { exitCode } = await result;
        return exitCode;
      } finally {
        if (term) {
          await closeConsole(term, result);
          await streamsDone;
          outs.stdout?.end();
          outs.stderr?.end();
        }
        await streamsDone;
      }
    })();
    if (options.detach) await exited;
    exited.catch(() => {});
    return new ContainerHandle(id, r.name, stdinStream, outs.stdout, outs.stderr, () => exited);
  }

  /**
   * Joins this process's terminal (or pipes) to a detached container's stdio through conmon's
   * attach socket (`pivot attach`). Resolves when the container exits (with its code) or when the
   * user types the detach keys (default Ctrl-P Ctrl-Q; "" for none).
   */
  async attach(
    ref: string,
    options: { detachKeys?: string; noStdin?: boolean; stdio?: "inherit" | "pipe" } = {},
  ): Promise<AttachResult> {
    const id = this.resolveId(ref);
    const r = this.load(id);
    const st = this.status(id);
    const rs = this.runState(id);
    if (st.status !== "running" || rs?.monitor !== "conmon") {
      throw new EngineError(
        st.status === "running"
          ? `container ${r.name} is attached to another pivot process`
          : `container ${r.name} is not running (${st.status})`,
        { hint: st.status === "running" ? "" : `start it with \`pivot start ${r.name}\`` },
      );
    }
    const helper = await attachHelper(join(this.dir(id), "attach"), {
      ctl: join(this.dir(id), "ctl"),
      stdin: !options.noStdin && (r.options.stdin ?? false),
      stdio: options.stdio ?? "inherit",
      ...(options.detachKeys !== undefined ? { detachKeys: options.detachKeys } : {}),
    });
    const code = await helper.exited;
    if (code === TTY_DETACHED) return { id, detached: true, exitCode: null };
    if (code !== 0) throw new EngineError(`attaching to container ${r.name} failed`);
    return { id, detached: false, exitCode: await this.wait(id) };
  }

  // ---- files: cp, export, diff, commit ----

  /**
   * The container's root filesystem: a running container's as its processes see it (volumes and
   * mounts included, through /proc/PID/root); otherwise the overlay, mounted for the while.
   */
  private async rootView(
    id: string,
    withMounts = true,
  ): Promise<{ root: string; release: () => Promise<void> }> {
    const st = this.status(id);
    if (withMounts && st.status !== "exited" && st.status !== "created" && st.pid > 0) {
      return { root: `/proc/${st.pid}/root`, release: async () => {} };
    }
    const r = this.load(id);
    const mounted = await isMountPoint(r.overlay.target);
    if (!mounted) await mountOverlay(r.overlay);
    return {
      root: r.overlay.target,
      release: async () => {
        const now = this.status(id).status;
        if (!mounted && now !== "running" && now !== "paused")
          await unmountOverlay(r.overlay.target).catch(() => {});
      },
    };
  }

  /**
   * A tar stream of `path` in the container (`pivot cp CONTAINER:PATH -`), its symlinks resolved
   * inside the container; `name` is the archive's top entry.
   */
  async archive(ref: string, path: string): Promise<{ stream: Readable; name: string }> {
    const id = this.resolveId(ref);
    const view = await this.rootView(id);
    const host = resolveInRoot(view.root, path, /\/\.?$/.test(path));
    if (kindAt(host) === null) {
      await view.release();
      throw new EngineError(`no such file or directory in the container: ${path}`);
    }
    const top = host === resolve(view.root);
    const name = top ? "." : host.slice(host.lastIndexOf("/") + 1);
    const stream = tarCreate(top ? host : dirname(host), [name], () => void view.release());
    return { stream, name };
  }

  /** Extracts a tar stream into the directory `path` of the container (`pivot cp - CONTAINER:DIR`). */
  async extractArchive(ref: string, path: string, tar: AsyncIterable<Uint8Array>): Promise<void> {
    const id = this.resolveId(ref);
    const view = await this.rootView(id);
    try {
      const host = resolveInRoot(view.root, path, true);
      if (kindAt(host) !== "dir")
        throw new EngineError(`${path} is not a directory in the container`);
      await extractTar(tar, host, null);
    } finally {
      await view.release();
    }
  }

  /** `pivot cp CONTAINER:SRC DEST`: into DEST if it is a directory, else as DEST. */
  async copyFrom(ref: string, src: string, dest: string): Promise<void> {
    const { stream, name } = await this.archive(ref, src);
    const t = copyTarget(dest);
    if (kindAt(t.dir) !== "dir") {
      stream.destroy();
      throw new EngineError(`${t.dir} is not a directory`);
    }
    if (t.name === null) await extractTar(stream, t.dir, null);
    else await extractTar(stream, join(t.dir, t.name), name === "." ? "" : name);
  }

  /** `pivot cp SRC CONTAINER:DEST`: symlinks in DEST resolve inside the container only. */
  async copyTo(ref: string, src: string, dest: string): Promise<void> {
    const id = this.resolveId(ref);
    if (kindAt(src) === null) throw new EngineError(`no such file or directory: ${src}`);
    const abs = resolve(src);
    const view = await this.rootView(id);
    try {
      const host = resolveInRoot(view.root, dest, true);
      if (dest.endsWith("/") && kindAt(host) !== "dir")
        throw new EngineError(`${dest} is not a directory in the container`);
      const t = copyTarget(host);
      if (kindAt(t.dir) !== "dir") {
        throw new EngineError(`the parent of ${dest} is not a directory in the container`);
      }
      const name = abs === "/" ? "." : abs.slice(abs.lastIndexOf("/") + 1);
      const stream = tarCreate(abs === "/" ? abs : dirname(abs), [name]);
      if (t.name === null) await extractTar(stream, t.dir, null);
      else await extractTar(stream, join(t.dir, t.name), name === "." ? "" : name);
    } finally {
      await view.release();
    }
  }

  /** The container's root filesystem as a tar stream, without its volumes (`pivot export`). */
  async export(ref: string): Promise<Readable> {
    const id = this.resolveId(ref);
    const view = await this.rootView(id, false);
    return tarCreate(view.root, ["."], () => void view.release());
  }

  /** What changed against the image: A added, C changed, D deleted (`pivot diff`). */
  async diff(ref: string): Promise<Change[]> {
    const info = this.inspect(ref);
    const opaque = await scanOpaque(info.rootfs.upperdir);
    const skip = this.mountPlaceholders(info.id);
    const all = upperChanges(info.rootfs.upperdir, info.rootfs.lowerdirs, opaque).filter(
      (c) => !skip.has(c.path),
    );
    // A directory copied up only to hold a mount point changed nothing.
    return all.filter(
      (c) =>
        c.kind !== "C" ||
        kindAt(join(info.rootfs.upperdir, c.path)) !== "dir" ||
        all.some((o) => o.path.startsWith(`${c.path}/`)),
    );
  }

  /**
   * Mount points the runtime created in the upper directory (/etc/hosts, volume targets, ...): empty
   * files and directories at the config's mount destinations, left out of diff and commit.
   */
  private mountPlaceholders(id: string): Set<string> {
    const r = this.load(id);
    const spec = readJson<Spec>(join(this.dir(id), "config.json"));
    const out = new Set<string>();
    for (const m of spec?.mounts ?? []) {
      const p = join(r.overlay.upperdir, m.destination);
      try {
        const st = lstatSync(p);
        if ((st.isFile() && st.size === 0) || (st.isDirectory() && readdirSync(p).length === 0))
          out.add(m.destination.replace(/\/+$/, ""));
      } catch {}
    }
    return out;
  }

  /**
   * A new image from the container: its image's layers plus one made of the upper directory
   * (whiteouts as `.wh.` files), tagged `ref` (`pivot commit`). A running container is paused
   * meanwhile.
   */
  async commit(
    containerRef: string,
    options: {
      ref?: string;
      message?: string;
      author?: string;
      config?: Partial<NonNullable<ImageConfig["config"]>>;
      pause?: boolean;
    } = {},
  ): Promise<StoredImage> {
    const id = this.resolveId(containerRef);
    const r = this.load(id);
    const store = await this.images();
    const base = await store.resolve(r.imageId);
    const paused = (options.pause ?? true) && this.status(id).status === "running";
    if (paused) this.rt(id).pause(id);
    const tmp = join(this.root, "tmp");
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    let tree: string | null = null;
    try {
      const opaque = await scanOpaque(r.overlay.upperdir);
      tree = await layerTree(r.overlay.upperdir, tmp, opaque);
      for (const p of this.mountPlaceholders(id))
        rmSync(join(tree, p), { recursive: true, force: true });
      if (paused) {
        this.rt(id).resume(id);
      }
      const blob = await store.putBlob(tarCreate(tree, ["."]), {}, `the layer of ${r.name}`);
      const layer = await store.importLayer(
        blob.digest,
        MediaType.ociLayer,
        `the layer of ${r.name}`,
      );
      const created = new Date().toISOString();
      return await createImage(store, {
        layers: [
          ...base.layers,
          {
            descriptor: { mediaType: MediaType.ociLayer, digest: blob.digest, size: blob.size },
            diffId: layer.diffId,
          },
        ],
        config: {
          ...base.config,
          created,
          ...(options.author ? { author: options.author } : {}),
          config: { ...(base.config.config ?? {}), ...(options.config ?? {}) },
          history: [
            ...(base.config.history ?? []),
            {
              created,
              created_by: `pivot commit ${r.name}`,
              ...(options.message ? { comment: options.message } : {}),
              ...(options.author ? { author: options.author } : {}),
            },
          ],
        },
        refs: options.ref ? [options.ref] : [],
      });
    } finally {
      if (paused && this.status(id).status === "paused") this.rt(id).resume(id);
      if (tree) rmSync(tree, { recursive: true, force: true });
    }
  }

  // ---- pause, rename, top, stats, prune ----

  /** Freezes every process of a running container (`pivot pause`). */
  pause(ref: string): void {
    const id = this.resolveId(ref);
    const st = this.status(id);
    if (st.status !== "running")
      throw new EngineError(`container ${ref} is not running (${st.status})`, {
        hint: st.status === "paused" ? "`pivot unpause` resumes it" : "",
      });
    this.rt(id).pause(id);
  }

  /** Thaws a paused container (`pivot unpause`). */
  unpause(ref: string): void {
    const id = this.resolveId(ref);
    const st = this.status(id);
    if (st.status !== "paused") throw new EngineError(`container ${ref} is not paused`);
    this.rt(id).resume(id);
  }

  /** Gives a container another name (`pivot rename`); its hostname stays. */
  async rename(ref: string, newName: string): Promise<void> {
    const id = this.resolveId(ref);
    await this.withLock(id, async () => {
      const r = this.load(id);
      if (r.name === newName) return;
      const owner = this.nameOwner(newName);
      if (owner && !existsSync(join(this.dir(owner), "container.json")))
        await this.recoverOrphan(owner);
      this.claimName(newName, id);
      writeJsonAtomic(join(this.dir(id), "container.json"), {
        ...r,
        name: newName,
        options: { ...r.options, name: newName },
      } satisfies ContainerRecord);
      this.releaseName(r.name, id);
    });
  }

  /**
   * The container's processes as `ps` shows them (`pivot top`): ps runs on the host with
   * `psArgs` (default -ef) and only rows of the container's processes are kept, as Docker does.
   */
  top(ref: string, psArgs: string[] = ["-ef"]): TopResult {
    const id = this.resolveId(ref);
    const st = this.status(id);
    if (st.status !== "running" && st.status !== "paused")
      throw new EngineError(`container ${ref} is not running`, {
        hint: `start it with \`pivot start ${ref}\``,
      });
    const pids = new Set(this.cgroupOfRun(id)?.pids() ?? []);
    const r = spawnSync("ps", psArgs, { encoding: "utf8" });
    if (r.status !== 0)
      throw new EngineError(`ps ${psArgs.join(" ")} failed: ${r.stderr.trim()}`, {
        hint: "the arguments are ps(1)'s; the output needs a PID column",
      });
    const lines = r.stdout.split("\n").filter((l) => l.trim() !== "");
    const titles = (lines[0] ?? "").trim().split(/\s+/);
    const pidCol = titles.indexOf("PID");
    if (pidCol < 0)
      throw new EngineError(`ps ${psArgs.join(" ")} has no PID column`, {
        hint: "use ps options that show the PID, e.g. -ef or aux",
      });
    const processes: string[][] = [];
    for (const line of lines.slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (!pids.has(Number(fields[pidCol]))) continue;
      // The last column (the command) keeps its spaces.
      const row = fields.slice(0, titles.length - 1);
      row.push(fields.slice(titles.length - 1).join(" "));
      processes.push(row);
    }
    return { titles, processes };
  }

  /** One reading of a running container's resource usage (`pivot stats`). */
  stats(ref: string): StatsSample {
    const id = this.resolveId(ref);
    const r = this.load(id);
    const st = this.status(id);
    const sample: StatsSample = {
      id,
      name: r.name,
      read: Date.now(),
      cpuTotal: 0,
      systemCpu: hostCpuTime(),
      onlineCpus: onlineCpus(),
      memoryUsage: 0,
      memoryLimit: totalmem(),
      netRx: 0,
      netTx: 0,
      blockRead: 0,
      blockWrite: 0,
      pids: 0,
    };
    if (st.status !== "running" && st.status !== "paused") return sample;
    const cg = this.cgroupOfRun(id);
    if (!cg) return sample;
    const s = cg.stats();
    sample.cpuTotal = s.cpu.usage?.total ?? 0;
    const mem = s.memory;
    const inactive = mem.raw?.total_inactive_file ?? mem.raw?.inactive_file ?? 0;
    sample.memoryUsage = Math.max(0, (mem.usage?.usage ?? 0) - inactive);
    const limit = mem.usage?.limit ?? 0;
    if (limit > 0 && limit < sample.memoryLimit) sample.memoryLimit = limit;
    for (const e of s.blkio.ioServiceBytesRecursive ?? []) {
      if (e.op?.toLowerCase() === "read") sample.blockRead += e.value ?? 0;
      if (e.op?.toLowerCase() === "write") sample.blockWrite += e.value ?? 0;
    }
    sample.pids = s.pids.current ?? cg.pids().length;
    if (st.pid > 0) {
      try {
        for (const line of readFileSync(`/proc/${st.pid}/net/dev`, "utf8").split("\n").slice(2)) {
          const [ifname, rest] = line.split(":");
          if (!rest || ifname?.trim() === "lo") continue;
          const f = rest.trim().split(/\s+/).map(Number);
          sample.netRx += f[0] ?? 0;
          sample.netTx += f[8] ?? 0;
        }
      } catch {}
    }
    return sample;
  }

  /**
   * Removes every container that is not running or paused (`pivot container prune`), optionally
   * only those `filter` accepts; returns their ids and the bytes their writable layers held.
   */
  async prune(
    filter: (c: ContainerInfo) => boolean = () => true,
  ): Promise<{ removed: string[]; reclaimed: number }> {
    const removed: string[] = [];
    let reclaimed = 0;
    for (const c of await this.list({ all: true })) {
      if (c.state.running || !filter(c)) continue;
      const size = diskUsage(c.rootfs.upperdir);
      try {
        await this.remove(c.id);
        removed.push(c.id);
        reclaimed += size;
      } catch (err) {
        this.warn((err as Error).message);
      }
    }
    return { removed, reclaimed };
  }

  /**
   * Removes volumes no container uses (`pivot volume prune`): anonymous ones, and named ones too
   * with `all`, as Docker 23+ does. Returns their names and the bytes they held.
   */
  pruneVolumes(options: { all?: boolean; filter?: (v: VolumeInfo) => boolean } = {}): {
    removed: string[];
    reclaimed: number;
  } {
    const used = new Set<string>();
    for (const id of this.ids()) {
      try {
        for (const v of this.load(id).volumes) used.add(v.name);
      } catch {}
    }
    const removed: string[] = [];
    let reclaimed = 0;
    for (const v of this.volumes.list()) {
      if (used.has(v.name) || (!v.anonymous && !options.all)) continue;
      if (options.filter && !options.filter(v)) continue;
      const size = diskUsage(v.mountpoint);
      try {
        this.volumes.remove(v.name);
        removed.push(v.name);
        reclaimed += size;
      } catch (err) {
        this.warn((err as Error).message);
      }
    }
    return { removed, reclaimed };
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
    const users = this.ids()
      .map((id) => this.load(id))
      .filter((r) => r.volumes.some((v) => v.name === name))
      .map((r) => r.name);
    this.volumes.remove(name, users);
  }
}
