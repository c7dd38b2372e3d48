// Creating a container (`pivot create`): its name, an overlay over the image's layers, the OCI
// config composed from the image and the options (volumes, bind sources, working directory,
// /etc/hosts, hostname and resolv.conf, network, --init), and container.json. The dry run goes
// through the same composition with the side effects off. Renaming shares the name claim.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { swapAccounted } from "../cgroups/hierarchy.ts";
import {
  layerHistory,
  type OpaqueSource,
  readFileInLayers,
  wouldCreateInLayers,
} from "../image/layer-lookup.ts";
import {
  makeOverlayDirs,
  mountOverlay,
  type OverlayPlan,
  planOverlay,
  rootfsDriver,
  unmountOverlay,
  volatileOverlay,
} from "../image/overlay.ts";
import type { LayerRecord, StoredImage } from "../image/store.ts";
import type { ImageConfig } from "../image/types.ts";
import type { Mount, Spec } from "../oci/spec.ts";
import { parseConfig } from "../oci/validate.ts";
import { HostLauncher } from "../runtime/host-plan.ts";
import { mountOfPath, parseMountinfo } from "../runtime/mountinfo.ts";
import type { HostFacts, Plan } from "../runtime/plan.ts";
import { defaultSeccompProfile } from "../security/seccomp-default.ts";
import { childProcess } from "../util/child-process.ts";
import { randomHex } from "../util/random.ts";
import {
  addHostLines,
  boundingCapabilities,
  buildSpec,
  checkNameOptions,
  containerResolvConf,
  hostnameOf,
  hostsFile,
  ociMount,
  parseSecurityOpts,
  parseSize,
  publishExposed,
  resolveArgs,
  resolveUser,
  rootfsPropagationFor,
  sharedBinds,
} from "./config.ts";
import { joinedContainer, networkOf } from "./container-network.ts";
import { type ContainerRecord, jsonText, randomName, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import { checkHealthConfig, mergeHealthcheck } from "./health-config.ts";
import { addInit } from "./init.ts";
import { inspect } from "./inspect.ts";
import { logConfigOf } from "./log-config.ts";
import { isPasta, PASTA_DNS } from "./pasta.ts";
import { pidNamespaceDonor } from "./pid-namespace.ts";
import { applyProcessOptions } from "./process-options.ts";
import { recoverNameOwner } from "./recovery.ts";
import { checkRestartOptions } from "./restart-state.ts";
import { mkdirInRoot, pathInRoot, readFileInRoot } from "./root-paths.ts";
import { addRootlessUserNamespace, checkRootlessOptions } from "./rootless.ts";
import { isSlirp, SLIRP } from "./slirp4netns.ts";
import type { ContainerInfo, ContainerOptions, MountSpec } from "./types.ts";
import { volumesFromMounts, volumeUsers } from "./volumes-from.ts";

/** Creates a container (`pivot create`): its root filesystem, config and /etc files. */
export async function create(
  ctx: EngineContext,
  options: ContainerOptions,
): Promise<ContainerInfo> {
  checkRestartOptions(options, () => ctx.conmonPath !== null);
  const id = newContainerId();
  // Under the container's lock: a directory without container.json whose lock is free was
  // left by a create that crashed (recover() cleans it).
  await ctx.containers.withLock(id, () => createLocked(ctx, options, id));
  return inspect(ctx, id);
}

/**
 * The configs this process composed, by the record of the container they were written for: the
 * runtime gets them in memory instead of reading and parsing config.json back (~0.5 ms of a run).
 * Only while the file is still the one written: --network container:NAME rewrites it at start.
 */
const composedSpecs = new WeakMap<ContainerRecord, { spec: Spec; file: string; written: string }>();

/** The config composed for `r` by this process's create, if config.json is still that one. */
export function composedSpec(r: ContainerRecord): Spec | undefined {
  const c = composedSpecs.get(r);
  return c && c.written !== "" && fileIdentity(c.file) === c.written ? c.spec : undefined;
}

/** A file's inode, size and change time: another file renamed over it, or a write, changes them. */
function fileIdentity(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.ctimeMs}`;
  } catch {
    return "";
  }
}

export function newContainerId(): string {
  return randomHex(32);
}

/**
 * Creates the container `id`, its lock held (`run` keeps holding it to start the container).
 * The options' restart policy is checked by the caller.
 */
export async function createLocked(
  ctx: EngineContext,
  options: ContainerOptions,
  id: string,
  /** A run's create, which its start follows under the same lock (ContainerRecord.createdByRun). */
  byRun = false,
  /**
   * An attached run's create, whose start follows in this process through Pivot's own runtime:
   * the overlay may be left for the container's launcher to mount (rootToMount), when nothing here
   * needs to write into it (no volume to fill, no working directory to make).
   */
  mountAtStart = false,
): Promise<ContainerRecord> {
  logConfigOf(options); // a mistaken --log-opt is refused before anything exists
  const overlayDriver = rootfsDriver().driver === "overlay";
  if (options.healthcheck) checkHealthConfig(options.healthcheck); // Docker's daemon's checks
  // /etc/passwd and the working directory are then read from the layers: an image of one layer,
  // or one whose layers were unpacked with their opaque directories recorded (layer.json), else
  // each directory's marker is a getfattr process (a 12-layer image took 60 ms so). Resolved here
  // (the CLI has resolved it already: memoized); its layers looked up (unpacked if need be).
  // The image and its layers are looked up once, here, for all of create: a tag moved meanwhile
  // (a pull, a tag) must not give the container one image's config over another's files.
  let found: { image: StoredImage; layers: LayerRecord[] } | undefined;
  let deferrable =
    mountAtStart &&
    overlayDriver &&
    !options.runtime &&
    !(options.mounts ?? []).some((m) => m.type === "volume");
  if (deferrable) {
    const store = await ctx.images();
    const image = await store.resolve(options.image);
    found = { image, layers: await store.ensureImageLayers(image) };
    deferrable = found.layers.length <= 1 || found.layers.every((l) => l.opaqueDirs !== undefined);
  }
  // The launcher that mounts the overlay starts first: its start-up overlaps finding the image,
  // the name, the directories and the layers (disposed of on every path that does not use it).
  // None when the mount can wait for the container's launcher: one process fewer per run.
  const mounter = overlayDriver && !deferrable ? new HostLauncher() : undefined;
  try {
    const r = await createMounted(ctx, options, id, byRun, mounter, deferrable, found);
    emitEvent(ctx, "container", "create", id, containerAttributes(r));
    return r;
  } finally {
    mounter?.dispose();
  }
}

/**
 * The overlays left unmounted by an attached run's create (createLocked's mountAtStart), by the
 * record of their container: its start hands the mount to the container's launcher.
 */
const unmountedRoots = new WeakMap<ContainerRecord, OverlayPlan>();

/** The overlay `r`'s start must mount, once: left unmounted by this process's create. */
export function rootToMount(r: ContainerRecord): OverlayPlan | undefined {
  const plan = unmountedRoots.get(r);
  unmountedRoots.delete(r);
  return plan;
}

async function createMounted(
  ctx: EngineContext,
  options: ContainerOptions,
  id: string,
  byRun: boolean,
  mounter: HostLauncher | undefined,
  deferrable: boolean,
  /** The image and its layers, when createLocked looked them up already. */
  found?: { image: StoredImage; layers: LayerRecord[] },
): Promise<ContainerRecord> {
  const store = await ctx.images();
  const image = found?.image ?? (await store.resolve(options.image));
  ctx.trace?.mark("engine: image resolved");
  let name = options.name;
  if (name !== undefined) {
    await recoverNameOwner(ctx, name);
    ctx.containers.claimName(name, id);
  } else {
    for (let i = 0; ; i++) {
      name = randomName();
      try {
        ctx.containers.claimName(name, id);
        break;
      } catch (err) {
        if (i > 20) throw err;
      }
    }
  }
  const dir = ctx.containers.dir(id);
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const createdVolumes: string[] = [];
  let overlay: OverlayPlan | null = null;
  try {
    const layers = found?.layers ?? (await store.ensureImageLayers(image));
    overlay = planOverlay(store.root, layers, dir, undefined, undefined, store.initLayer());
    if (options.autoRemove) overlay = volatileOverlay(overlay);
    const plan = overlay;
    // The merged view's layers, top first, to read it unmounted: the init layer, the image's.
    // Opaque markers matter only in an image layer with another below (the init layer has none):
    // the ones the unpacker recorded, else read from the directories.
    const top = [...layers].reverse();
    const layerDirs = [
      ...(plan.initdir ? [join(plan.cwd, plan.initdir)] : []),
      ...top.map((l) => l.diffPath),
    ];
    const readOpaque: OpaqueSource[] = [
      ...(plan.initdir ? [false] : []),
      ...top.map((l, i) =>
        i === top.length - 1 ? false : l.opaqueDirs ? new Set(l.opaqueDirs) : true,
      ),
    ];
    let mounted = false;
    const mountRoot = async () => {
      if (mounted) return;
      await mountOverlay(plan, mounter);
      mounted = true;
    };
    if (deferrable) makeOverlayDirs(plan);
    else await mountRoot();
    ctx.trace?.mark(
      deferrable
        ? "engine: name claimed, root filesystem planned (mounted by the container's launcher)"
        : "engine: name claimed, root filesystem mounted",
    );
    const merged = overlay.target;
    const c = await compose(ctx, options, {
      id,
      name: name!,
      dir,
      image,
      merged,
      readEtc: (rel) =>
        mounted ? readFileInRoot(merged, rel) : readFileInLayers(layerDirs, rel, readOpaque),
      rootForWrites: async (rel) => {
        // Unmounted: mounted now only if the write has something to do.
        if (!mounted && rel !== undefined && !wouldCreateInLayers(layerDirs, rel, readOpaque))
          return false;
        await mountRoot();
        return true;
      },
      createdVolumes,
    });
    // A plain write: the directory is new and locked, and container.json, written last and
    // atomically, is what marks the container as created (recover() removes one without it).
    const configFile = join(dir, "config.json");
    writeFileSync(configFile, jsonText(c.spec));
    const imageConfig: ImageConfig["config"] = image.config.config ?? {};
    const history = layerHistory(image.config);
    const healthcheck = mergeHealthcheck(options.healthcheck, imageConfig.Healthcheck);
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
      ...(c.inheritedMounts.length ? { inheritedMounts: c.inheritedMounts } : {}),
      labels: { ...(imageConfig.Labels ?? {}), ...(options.labels ?? {}) },
      layers: layers.map((l, i) => ({
        diffId: l.diffId,
        link: l.link,
        ...(history[i] !== undefined ? { createdBy: history[i] } : {}),
      })),
      ...(byRun ? { createdByRun: true } : {}),
      ...(healthcheck !== undefined ? { healthcheck } : {}),
    };
    writeJsonAtomic(join(dir, "container.json"), record);
    if (!mounted) unmountedRoots.set(record, plan);
    composedSpecs.set(record, {
      spec: c.spec,
      file: configFile,
      written: fileIdentity(configFile),
    });
    ctx.trace?.mark("engine: config composed, container created");
    return record;
  } catch (err) {
    if (overlay) await unmountOverlay(overlay.target, { lazy: true }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    ctx.containers.releaseName(name!, id);
    // The volumes this create made, named ones too (`-v NAME:/path`), unless another container
    // took a named one meanwhile: a failed create leaves nothing behind.
    for (const v of createdVolumes) {
      try {
        ctx.volumes.remove(v, volumeUsers(ctx, v));
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
async function compose(
  ctx: EngineContext,
  options: ContainerOptions,
  c: {
    id: string;
    name: string;
    dir: string;
    image: StoredImage;
    merged: string | null;
    readEtc: (rel: string) => string | undefined;
    /**
     * Makes the root filesystem writable at `merged` before compose writes into it (mounted, if
     * it was left unmounted); with REL, the directory compose would make, it may answer false:
     * there is nothing to make, and nothing was mounted. Absent: mounted already.
     */
    rootForWrites?: (rel?: string) => Promise<boolean>;
    createdVolumes: string[];
  },
): Promise<{
  spec: Spec;
  options: ContainerOptions;
  command: string[];
  volumes: ContainerRecord["volumes"];
  inheritedMounts: MountSpec[];
}> {
  const { id, dir, merged } = c;
  if (ctx.rootless) checkRootlessOptions(options);
  else if (isSlirp(options) || isPasta(options))
    throw new EngineError(
      `--network ${options.network}: ${isSlirp(options) ? "slirp4netns" : "pasta"} is for rootless containers`,
      { hint: "as root, use --network bridge (or a network of yours) for a network and -p" },
    );
  const imageConfig: ImageConfig["config"] = c.image.config.config ?? {};
  const security = parseSecurityOpts(options.securityOpt ?? [], (p) => readFileSync(p, "utf8"));
  const userSpec = options.user ?? imageConfig.User;
  const user = resolveUser(
    userSpec,
    c.readEtc("etc/passwd"),
    c.readEtc("etc/group"),
    options.groupAdd,
  );
  const opts: ContainerOptions = { ...options, name: c.name };
  const joined = joinedContainer(ctx, opts);
  if (joined) opts.hostname = hostnameOf(joined.id, joined.options); // Docker's rule
  if (opts.uts === "host") opts.hostname = hostUtsHostname(options.hostname);
  pidNamespaceDonor(ctx, opts); // --pid container:NAME: that container must exist
  if (opts.publishAll) opts.publish = publishExposed(opts.publish ?? [], imageConfig.ExposedPorts);
  const extraHosts = addHostLines(opts.addHosts ?? []);
  checkNameOptions(opts);
  // Docker's default: --memory alone allows as much swap again (memory+swap twice the memory),
  // where the host accounts swap; without it a container could swap without bound.
  if (opts.memory !== undefined && opts.memorySwap === undefined && !ctx.rootless) {
    const memory = parseSize(opts.memory);
    if (memory > 0 && swapAccounted()) opts.memorySwap = 2 * memory;
  }
  const command = resolveArgs(imageConfig, opts);
  // Volumes: the user's and those of --volumes-from, then the image's own that nothing covers
  // (anonymous).
  const inheritedMounts = volumesFromMounts(ctx, options.volumesFrom ?? [], options.mounts ?? []);
  const inherited = new Set(inheritedMounts);
  const specs: MountSpec[] = [...(options.mounts ?? []), ...inheritedMounts];
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
        // Made as Docker makes it, and never removed, even if this create fails: another create
        // (or any program) may have found it made and be using it by now, and nothing can tell
        // (an rmdir of an empty directory cannot see a process about to use it). mkdir -p takes
        // a directory made meanwhile by another create as made.
        try {
          mkdirSync(m.source!, { recursive: true });
        } catch (err) {
          // Node's "ENOTDIR: not a directory, mkdir '/x'": the why, without the call.
          const why = (err as Error).message.replace(/^E[A-Z]+: /, "").split(", ")[0];
          throw new EngineError(
            `cannot create the bind mount source ${m.source} for ${m.target}: ${why}`,
            {
              hint: "-v creates a missing source directory: give a path whose parents are directories (not files, not /proc or /sys), or create it first",
              cause: err,
            },
          );
        }
      }
      mounts.push(ociMount(m));
    } else if (merged === null) {
      const volName = m.source ?? "(new anonymous volume)";
      volumes.push({ name: volName, target: m.target, anonymous: !m.source });
      mounts.push(ociMount(m, join(ctx.volumes.root, volName, "_data")));
    } else {
      const { info, created } = ctx.volumes.create(m.source, { anonymous: !m.source });
      if (created) c.createdVolumes.push(info.name);
      if (created && !m.noCopy) {
        await c.rootForWrites?.();
        copyUp(ctx, merged, m.target, info.mountpoint);
      }
      // Another container's anonymous volume (--volumes-from) stays anonymous: the rm -v of the
      // last container using it removes it.
      const anonymous = !m.source || (inherited.has(m) && info.anonymous);
      volumes.push({ name: info.name, target: m.target, anonymous });
      mounts.push(ociMount(m, info.mountpoint));
    }
  }
  const workdir = options.workdir ?? imageConfig.WorkingDir;
  if (workdir && merged !== null && ((await c.rootForWrites?.(workdir)) ?? true))
    mkdirInRoot(merged, workdir, user.uid, user.gid);
  const hostname = hostnameOf(id, opts);
  if (merged !== null) {
    writeFileSync(join(dir, "hostname"), `${hostname}\n`);
    writeFileSync(join(dir, "hosts"), hostsFile(hostname, extraHosts));
    let hostResolv = "";
    try {
      hostResolv = readFileSync("/etc/resolv.conf", "utf8");
    } catch {}
    // slirp4netns, pasta: their DNS forwarder (10.0.2.3, 169.254.1.1) unless --dns, with the
    // host's search and options.
    const forwarder = isSlirp(opts) ? SLIRP.dns : isPasta(opts) ? PASTA_DNS : null;
    const resolvOpts = forwarder && !opts.dns?.length ? { ...opts, dns: [forwarder] } : opts;
    writeFileSync(join(dir, "resolv.conf"), containerResolvConf(hostResolv, resolvOpts));
  }
  // --network container:NAME: the other container's /etc files, as Docker binds them.
  const etcDir = joined ? ctx.containers.dir(joined.id) : dir;
  const network = await networkOf(ctx, opts, merged === null);
  const spec: Spec = buildSpec({
    imageConfig,
    options: opts,
    id,
    user,
    rootfs: "merged",
    ...(network ? { netns: ctx.networks.netnsPath(id) } : {}),
    etcFiles: {
      hosts: join(etcDir, "hosts"),
      hostname: join(etcDir, "hostname"),
      resolvConf: join(etcDir, "resolv.conf"),
    },
    mounts,
    hostCapabilities: boundingCapabilities(readFileSync("/proc/self/status", "utf8")),
    defaultSeccomp: (caps) => defaultSeccompProfile({ capabilities: caps }),
    security,
  });
  const rootfsPropagation = rootfsPropagationFor(specs);
  if (rootfsPropagation) {
    if (merged !== null) for (const m of sharedBinds(specs)) checkSharedSource(m);
    spec.linux!.rootfsPropagation = rootfsPropagation;
  }
  applyProcessOptions(spec, opts);
  if (opts.init) addInit(spec);
  if (ctx.rootless) addRootlessUserNamespace(spec, opts.network === "host");
  // Another runtime gets a cgroup path of its own, known to `stats`.
  if (opts.runtime) spec.linux!.cgroupsPath = `/pivot-${id}`;
  return { spec, options: opts, command, volumes, inheritedMounts };
}

/** --uts host: the host's hostname, for /etc/hostname and HOSTNAME (as Docker's). */
function hostUtsHostname(asked: string | undefined): string {
  if (asked !== undefined) {
    throw new EngineError("--hostname does not go with --uts host", {
      hint: "with --uts host the container has the host's hostname",
    });
  }
  return readFileSync("/proc/sys/kernel/hostname", "utf8").trim();
}

/**
 * A shared bind propagates only through a shared mount: one whose source lies on a private or
 * slave mount would silently keep the container's mounts to itself (Docker refuses it too).
 */
function checkSharedSource(m: MountSpec): void {
  const source = realpathSync(m.source!);
  const holder = mountOfPath(parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8")), source);
  if (holder?.propagation === "shared" || holder?.propagation === "shared+slave") return;
  const at = holder?.mountPoint ?? "/";
  throw new EngineError(
    `${m.source}:${m.target}:${m.propagation}: ${m.source} is on the mount ${at}, which is not shared, so nothing would propagate`,
    {
      hint: `make it shared (\`mount --make-shared ${at}\`, or bind the directory onto itself and make that shared), or use rslave`,
    },
  );
}

/**
 * `pivot create|run --dry-run`: the container compiled as create would (image → OCI config →
 * launch plan), creating nothing: no container directory, overlay mount, volume, network or
 * cgroup. The image's layers are unpacked into the store if they are not yet.
 */
export async function dryRun(
  ctx: EngineContext,
  options: ContainerOptions,
  attached = false,
): Promise<{ id: string; dir: string; spec: Spec; plan: Plan }> {
  checkRestartOptions(options, () => true);
  const store = await ctx.images();
  const image = await store.resolve(options.image);
  const id = randomHex(32);
  const dir = ctx.containers.dir(id);
  const layers = await store.ensureImageLayers(image);
  const overlay = planOverlay(store.root, layers, dir);
  const top = [...layers].reverse().map((l) => l.diffPath);
  const c = await compose(ctx, options, {
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
  const { plan } = await ctx.runtime.planContainer(id, { bundle: dir }, attached, {
    spec,
    bundle: dir,
    rootfs: overlay.target,
    host,
  });
  return { id, dir, spec, plan };
}

/** Fills a new volume with the image's content at `target` (as Docker does). */
function copyUp(ctx: EngineContext, merged: string, target: string, into: string): void {
  const src = pathInRoot(merged, target);
  if (!src) return;
  try {
    if (!lstatSync(src).isDirectory()) return;
  } catch {
    return;
  }
  const r = childProcess().spawnSync("cp", ["-a", "--", `${src}/.`, `${into}/`], {
    encoding: "utf8",
  });
  if (r.status !== 0) ctx.warn(`copying ${target} into its volume failed: ${r.stderr.trim()}`);
}

/** Gives a container another name (`pivot rename`); its hostname stays. */
export async function rename(ctx: EngineContext, ref: string, newName: string): Promise<void> {
  const store = ctx.containers;
  const id = store.resolveId(ref);
  await store.withLock(id, async () => {
    const r = store.load(id);
    if (r.name === newName) return;
    await recoverNameOwner(ctx, newName);
    store.claimName(newName, id);
    writeJsonAtomic(join(store.dir(id), "container.json"), {
      ...r,
      name: newName,
      options: { ...r.options, name: newName },
    } satisfies ContainerRecord);
    store.releaseName(r.name, id);
    emitEvent(ctx, "container", "rename", id, {
      ...containerAttributes({ ...r, name: newName }),
      oldName: r.name,
    });
  });
}
