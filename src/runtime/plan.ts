// The plan compiler: a container's config becomes the ordered steps the launcher replays.
//
// It is a pure function of its input. What it needs to know about the host (is a bind source a
// file or a directory?) comes in through the HostFacts interface, so it is unit-tested without
// root and without touching the filesystem.
import { ConfigError, NotSupportedError } from "../errors.ts";
import { rlimitArg, rlimitText } from "../oci/rlimit.ts";
import type {
  Device,
  Hook,
  IdMapping,
  Mount,
  Namespace,
  NamespaceType,
  Process,
  Spec,
} from "../oci/spec.ts";
import { rejectSecurityModules } from "../security/lsm.ts";
import { type CompiledSeccomp, compileSeccomp, rejectNotifyForExec } from "../security/seccomp.ts";
import {
  type CachedSeccompFilter,
  SeccompCache,
  type SeccompProgramReport,
} from "../security/seccomp-cache.ts";
import {
  Capability,
  CloneFlag,
  MOUNT_ATTR,
  MountOptionFlags,
  MS,
  NamespaceProcName,
  PROC_BIND_DESTINATIONS,
  PropagationFlags,
  Rlimit,
  S_IFBLK,
  S_IFCHR,
  S_IFIFO,
} from "./linux.ts";
import { type Caller, type IdMapMethod, idMapMethod, isRootless } from "./userns.ts";
import { type Arg, KernelFs, Op, type OpCode, SyncPoint } from "./wire.ts";

export interface PlanStep {
  op: OpCode;
  args: Arg[];
  /** One line for people: what this step does. */
  text: string;
}

export type FileKind = "directory" | "file" | "missing";

/** What the compiler may ask about the host. */
export interface HostFacts {
  kindOf(path: string): FileKind;
}

/** How a container's view of cgroups is built: one entry per mount under /sys/fs/cgroup. */
export interface CgroupMountSource {
  /** Name of the directory under the cgroup mount point, e.g. "memory" or "unified". */
  name: string;
  /** The host directory of the container's cgroup in that hierarchy (bound in read-only). */
  hostPath: string;
}

/**
 * How the setup process enters the container's cgroup. A process moved into a cgroup by another
 * takes the kernel's cgroup threadgroup lock, whose first taker waits for an RCU grace period
 * (8-25 ms measured here, more than the rest of a container's start); a single-threaded process
 * moving itself through a v1 tasks file (on kernels that skip the lock for the calling thread, as
 * this host's 6.18 does; older ones take it, and the move is then only as fast as the runtime's),
 * or one created in its cgroup v2 with clone3, does not.
 */
export interface CgroupJoin {
  /** cgroup v1 directories the setup process joins itself (Op.JoinCgroup), before any namespace. */
  selfJoin: string[];
  /** The cgroup v2 directory the setup process is created in (CLONE_INTO_CGROUP). */
  createIn?: string;
  /** Directories the runtime moves the setup process into at the SetupChildCreated sync point. */
  byRuntime: string[];
}

/** umount2(2)'s UMOUNT_NOFOLLOW: a symlink at the target is not followed. */
const UMOUNT_NOFOLLOW = 8;

export interface ContainerPlanInput {
  spec: Spec;
  /** The absolute path of the root filesystem. */
  rootfs: string;
  /** The bundle directory, for relative bind-mount sources. */
  bundle: string;
  /**
   * The exec fifo the init waits on until `start`; null: the init waits at SyncPoint.Start for
   * the process that created it (`run` starts the container itself, no other process needs a fifo).
   */
  execFifo: string | null;
  /** The launcher waits for init and reports its exit (for `run`). */
  waitForInit: boolean;
  /** With waitForInit: a mount of the caller's the launcher unmounts once the init has exited. */
  unmountAfterExit?: string;
  consoleSocket?: string;
  noPivot?: boolean;
  /** Keep the caller's session keyring instead of giving the container a new one (--no-new-keyring). */
  noNewKeyring?: boolean;
  /** The container id, naming its session keyring. */
  id?: string;
  /** The container's cgroup directories, for a "cgroup" mount in a v1 or hybrid host. */
  cgroupMounts?: CgroupMountSource[];
  /** How the setup process joins the container's cgroup (none: it stays in the caller's). */
  cgroupJoin?: CgroupJoin;
  /** Who runs the runtime (default: root). Not root: rootless mode, see userns.ts. */
  caller?: Caller;
  host: HostFacts;
  /**
   * Compiled seccomp filters: a hit loads the cached BPF, a miss exports it for next time. With
   * linux.seccomp's key in that cache (`SeccompCache.key`, computed by the caller: it is async;
   * null: this profile is not cached).
   */
  seccompCache?: { cache: SeccompCache; key: string | null };
}

export interface Plan {
  steps: PlanStep[];
  /** A new user namespace is created: the TypeScript side writes id maps at SetupChildCreated. */
  newUserNamespace: boolean;
  /** With a new user namespace: how the runtime writes its id maps. */
  idMaps?: IdMapMethod;
  /** Things the plan leaves out or changes, for the user to read. */
  warnings: string[];
  /** The program the plan executes, as seen from the host, for explaining exec failures. */
  program?: ProgramInfo;
  /** The seccomp profile uses SCMP_ACT_NOTIFY: the BeforePivot reply carries the listener state. */
  seccompListener?: CompiledSeccomp;
  /** The plan exports its seccomp filter (Op.SeccompExport): where Event.SeccompProgram goes. */
  seccompExport?: (report: SeccompProgramReport) => void;
}

/** A process's seccomp filter: a profile libseccomp builds (and exports, for the cache), or a
 *  cached BPF program. */
type SeccompSetup =
  | { compiled: CompiledSeccomp; export: boolean }
  | { cached: CachedSeccompFilter };

const NON_DUMPABLE_TEXT = "make the process non-dumpable until it execs the program";
const CONSOLE_SLOT = 1;
const LISTENER_SLOT = 2;
const FIFO_SLOT = 0;
/** Holds the directory under a tmpcopyup tmpfs while it is copied (one mount at a time). */
const COPYUP_SLOT = 3;
/** Id-mapped mounts, opened by the launcher before the setup process: slots from here on. */
const IDMAP_SLOT_BASE = 4;
/** The launcher's MAX_SLOTS. */
const SLOT_COUNT = 64;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The devices every container gets when /dev is a fresh mount (runtime-spec "Default Devices"). */
export const DEFAULT_DEVICES = [
  { path: "/dev/null", major: 1, minor: 3 },
  { path: "/dev/zero", major: 1, minor: 5 },
  { path: "/dev/full", major: 1, minor: 7 },
  { path: "/dev/random", major: 1, minor: 8 },
  { path: "/dev/urandom", major: 1, minor: 9 },
  { path: "/dev/tty", major: 5, minor: 0 },
];

const DEV_SYMLINKS: [string, string][] = [
  ["/dev/fd", "/proc/self/fd"],
  ["/dev/stdin", "/proc/self/fd/0"],
  ["/dev/stdout", "/proc/self/fd/1"],
  ["/dev/stderr", "/proc/self/fd/2"],
  ["/dev/ptmx", "pts/ptmx"],
];

class StepList {
  readonly steps: PlanStep[] = [];
  add(op: OpCode, args: Arg[], text: string): void {
    this.steps.push({ op, args, text });
  }
}

export interface ProgramInfo {
  /** The root filesystem on the host (for exec: /proc/PID/root). */
  rootfs: string;
  name: string;
  path: string;
  cwd: string;
}

function programInfo(rootfs: string, process: Process): ProgramInfo {
  return {
    rootfs,
    name: process.args?.[0] ?? "",
    path: envValue(process.env ?? [], "PATH") ?? DEFAULT_PATH,
    cwd: process.cwd,
  };
}

export interface ParsedMountOptions {
  flags: number;
  propagation: number[];
  data: string[];
  /** "idmap" or "ridmap" (the runtime-spec's id-mapped mount options): the last one given. */
  idmap?: "idmap" | "ridmap";
}

/** Splits mount options into mount(2) flags, propagation changes and filesystem data. */
export function parseMountOptions(
  options: readonly string[] = [],
  where = "mount",
): ParsedMountOptions {
  let flags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  let idmap: "idmap" | "ridmap" | undefined;
  for (const opt of options) {
    if (opt === "idmap" || opt === "ridmap") {
      idmap = opt;
      continue;
    }
    const flag = MountOptionFlags[opt];
    if (flag) {
      flags = flag[0] ? flags | flag[1] : flags & ~flag[1];
      continue;
    }
    const prop = PropagationFlags[opt];
    if (prop !== undefined) {
      propagation.push(prop);
      continue;
    }
    if (
      /^r(ro|rw|nosuid|suid|nodev|dev|noexec|exec|atime|noatime|relatime|strictatime|nodiratime|diratime|nosymfollow|symfollow)$/.test(
        opt,
      )
    ) {
      throw new NotSupportedError(`${where}: mount option "${opt}" is not supported yet`, {
        hint: "use the non-recursive form of the option, or leave it out",
      });
    }
    data.push(opt);
  }
  return idmap ? { flags, propagation, data, idmap } : { flags, propagation, data };
}

function namespaceMap(spec: Spec): Map<NamespaceType, Namespace> {
  const map = new Map<NamespaceType, Namespace>();
  for (const ns of spec.linux?.namespaces ?? []) map.set(ns.type, ns);
  return map;
}

/** The capability names of a set as a 64-bit mask; unknown names are a config error. */
export function capabilityMask(names: readonly string[] | undefined, jsonPath: string): bigint {
  let mask = 0n;
  (names ?? []).forEach((name, i) => {
    const bit = Capability[name.toUpperCase()];
    if (bit === undefined) {
      throw new ConfigError(
        `${jsonPath}[${i}]`,
        `unknown capability "${name}"`,
        "capability names look like CAP_NET_ADMIN",
      );
    }
    mask |= 1n << BigInt(bit);
  });
  return mask;
}

function envValue(env: readonly string[], name: string): string | undefined {
  for (let i = env.length - 1; i >= 0; i--) {
    const e = env[i]!;
    if (e.startsWith(`${name}=`)) return e.slice(name.length + 1);
  }
  return undefined;
}

/** A destination inside the container, absolute and normalised: no "." or "..", never above "/". */
export function joinInRoot(dest: string): string {
  const parts: string[] = [];
  for (const part of dest.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

function hookArgs(hook: Hook): Arg[] {
  const args = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
  return [hook.timeout ?? 0, hook.path, args.length, ...args, ...(hook.env ?? [])];
}

/** A mount source as the host sees it: relative sources are relative to the bundle. */
export function resolveSource(source: string, bundle: string): string {
  return source.startsWith("/") ? source : `${bundle.replace(/\/$/, "")}/${source}`;
}

function idMapText(maps: readonly IdMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join("");
}

function idMapSummary(maps: readonly IdMapping[]): string {
  return maps
    .map((m) =>
      m.size === 1
        ? `${m.containerID}->${m.hostID}`
        : `${m.containerID}-${m.containerID + m.size - 1}->${m.hostID}-${m.hostID + m.size - 1}`,
    )
    .join(",");
}

/**
 * Id-mapped bind mounts (mounts[].uidMappings/gidMappings, options "idmap"/"ridmap"): the launcher
 * opens each source as a detached, id-mapped mount while it is still the host's root (the
 * container's root cannot id-map a host filesystem), and the init attaches it later. As runc: the
 * mappings are written verbatim as the uid_map and gid_map of a helper user namespace, so an id
 * X on disk appears as the host id that "X" maps to (with the container's own mappings, an id
 * on disk shows as the same id inside the container); "idmap" without mappings takes the
 * container's. Returns the slot of each such mount, by its index in mounts.
 */
function compileIdmappedMounts(
  out: StepList,
  input: ContainerPlanInput,
  newUserNs: boolean,
): Map<number, number> {
  const slots = new Map<number, number>();
  const { spec } = input;
  (spec.mounts ?? []).forEach((m, i) => {
    const at = `mounts[${i}]`;
    const opts = parseMountOptions(m.options, at);
    if (!opts.idmap && !m.uidMappings && !m.gidMappings) return;
    if ((opts.flags & MS.BIND) === 0 && m.type !== "bind") {
      throw new NotSupportedError(`${at}: id-mapped mounts are supported for bind mounts only`, {
        hint: 'add "bind" or "rbind" to the options, or leave out idmap and the mappings',
      });
    }
    if (isRootless(input.caller ?? { uid: 0, gid: 0 })) {
      throw new NotSupportedError(
        `${at}: an id-mapped mount needs CAP_SYS_ADMIN over the source's filesystem, which a rootless runtime does not have`,
        {
          hint: "run pivot-runtime as root, or leave out idmap and the mappings (files then show with their host owners, mapped through the container's user namespace)",
        },
      );
    }
    let uid = m.uidMappings;
    let gid = m.gidMappings;
    if (!uid && !gid) {
      if (!newUserNs) {
        throw new ConfigError(
          `${at}.options`,
          `"${opts.idmap}" without uidMappings and gidMappings takes the container's user namespace mappings, but the container creates no user namespace`,
          "give the mount uidMappings and gidMappings, or add a user namespace with mappings to linux",
        );
      }
      uid = spec.linux?.uidMappings;
      gid = spec.linux?.gidMappings;
    }
    if (!uid?.length || !gid?.length) {
      throw new ConfigError(
        `${at}.${uid?.length ? "gidMappings" : "uidMappings"}`,
        "is missing or empty; an id-mapped mount needs both uidMappings and gidMappings",
      );
    }
    if (!m.source) throw new ConfigError(`${at}.source`, "is missing; a bind mount needs a source");
    const slot = IDMAP_SLOT_BASE + slots.size;
    if (slot >= SLOT_COUNT) {
      throw new NotSupportedError(
        `${at}: more than ${SLOT_COUNT - IDMAP_SLOT_BASE} id-mapped mounts in one container`,
      );
    }
    const source = resolveSource(m.source, input.bundle);
    const recursiveBind = (opts.flags & MS.REC) !== 0;
    const recursiveIdmap = opts.idmap === "ridmap";
    // The copy is made in the host's mount table, where a shared source's copy joins its peer
    // group: it becomes private where the first step makes everything private, else a slave, so
    // the container's mounts under it never reach the host, whatever rootfsPropagation says (a
    // plain bind made in a user namespace is turned into a slave by the kernel the same way); its
    // own options apply after the move.
    const initial = initialRootPropagation(input);
    const treePropagation = initial === (MS.PRIVATE | MS.REC) ? MS.PRIVATE : MS.SLAVE;
    // Its options (ro, nosuid, ...) are set on the copy before it is attached: no remount by path.
    const attrs = bindAttributes(opts.flags);
    const flags = flagNames(opts.flags & ~(MS.BIND | MS.REC | MS.REMOUNT));
    out.add(
      Op.OpenIdmappedTree,
      [
        slot,
        source,
        recursiveBind ? 1 : 0,
        recursiveIdmap ? 1 : 0,
        idMapText(uid),
        idMapText(gid),
        treePropagation,
        attrs.set,
        attrs.clear,
      ],
      `open ${source}${recursiveBind ? " and its submounts" : ""} as a detached mount, id-mapped${recursiveIdmap ? " recursively" : ""} (uids ${idMapSummary(uid)}, gids ${idMapSummary(gid)})${flags ? `, ${flags}${recursiveBind ? " with its submounts" : ""}` : ""}`,
    );
    slots.set(i, slot);
  });
  return slots;
}

/**
 * What the copied mount table gets first, as runc does: the root propagation the config asks for,
 * by default rslave (the host's mounts still reach the container, nothing goes back). A shared
 * one keeps the host's peer groups, through which a bidirectional (rshared) volume sends the
 * container's mounts back to the host. --no-pivot moves the root filesystem onto /, a move that
 * must never propagate: there it stays rslave.
 */
function initialRootPropagation(input: ContainerPlanInput): number {
  const rootProp = input.spec.linux?.rootfsPropagation;
  const asked = rootProp === undefined ? undefined : PropagationFlags[rootProp];
  return asked === undefined || (input.noPivot && asked & MS.SHARED) ? MS.SLAVE | MS.REC : asked;
}

/** Mount steps for one entry of config.json's mounts; `idmapSlot` holds it if it is id-mapped. */
function compileMount(
  out: StepList,
  m: Mount,
  index: number,
  input: ContainerPlanInput,
  idmapSlot?: number,
): void {
  const at = `mounts[${index}]`;
  const dest = joinInRoot(m.destination);
  const { rootfs } = input;
  const opts = parseMountOptions(m.options, at);
  const type = m.type ?? "";
  const isBind = (opts.flags & MS.BIND) !== 0 || type === "bind";
  if (isBind) {
    if (!m.source) throw new ConfigError(`${at}.source`, "is missing; a bind mount needs a source");
    const source = resolveSource(m.source, input.bundle);
    const kind = input.host.kindOf(source);
    if (kind === "missing") {
      throw new ConfigError(
        `${at}.source`,
        `bind mount source ${source} does not exist`,
        "create it or fix the path",
      );
    }
    if (kind === "directory") out.add(Op.MkdirInRoot, [rootfs, dest, 0o755], `mkdir -p ${dest}`);
    else out.add(Op.TouchInRoot, [rootfs, dest], `create file ${dest} as a mount point`);
    const recursive = (opts.flags & MS.REC) !== 0;
    const kernelFs = kernelFsAllowed(dest, type, true);
    const props = opts.propagation.map((p) => propagationName(p));
    const propText = props.length ? `, then make it ${props.join(", then ")}` : "";
    if (idmapSlot !== undefined) {
      // Its attributes were set on the detached copy (OpenIdmappedTree), before it is attached.
      out.add(
        Op.MoveMountInRoot,
        [idmapSlot, rootfs, dest, kernelFs, ...opts.propagation],
        `attach the id-mapped mount of ${source} on ${dest}${propText}`,
      );
    } else {
      // One step, the destination opened once: a read-only remount by path, a second lookup,
      // could land elsewhere if the rootfs changed in between (a directory of a volume shared
      // with another container swapped for a symlink), and leave this bind writable.
      const attrs = bindAttributes(opts.flags);
      const flags = flagNames(opts.flags & ~(MS.BIND | MS.REC | MS.REMOUNT));
      out.add(
        Op.BindInRoot,
        [
          rootfs,
          dest,
          source,
          recursive ? 1 : 0,
          attrs.set,
          attrs.clear,
          kernelFs,
          ...opts.propagation,
        ],
        `bind ${source} on ${dest}${recursive ? " with its submounts" : ""}${flags ? ` (${flags}${recursive ? ", submounts too" : ""})` : ""}${propText}`,
      );
    }
    return;
  } else if (type === "cgroup" && input.cgroupMounts) {
    compileCgroupMount(out, dest, opts, input);
    return;
  } else if (type === "cgroup") {
    // A v2-only host: the container's cgroup namespace root, as cgroup2.
    out.add(Op.MkdirInRoot, [rootfs, dest, 0o755], `mkdir -p ${dest}`);
    out.add(
      Op.MountInRoot,
      [
        rootfs,
        dest,
        "cgroup2",
        "cgroup2",
        opts.flags & ~MS.REMOUNT,
        "",
        kernelFsAllowed(dest, type, false),
      ],
      `mount cgroup2 on ${dest}`,
    );
  } else {
    if (!type)
      throw new ConfigError(`${at}.type`, "is missing; only bind mounts may leave out the type");
    // "tmpcopyup" (runc's and crun's extension, which podman uses for --tmpfs and --read-only) is
    // no filesystem option: a tmpfs gets a copy of what the directory held before.
    const copyUp = opts.data.includes("tmpcopyup") && type === "tmpfs";
    const data = opts.data.filter((d) => d !== "tmpcopyup");
    out.add(Op.MkdirInRoot, [rootfs, dest, 0o755], `mkdir -p ${dest}`);
    if (copyUp) {
      out.add(
        Op.OpenDirInRoot,
        [COPYUP_SLOT, rootfs, dest],
        `open ${dest} to copy its contents onto the tmpfs`,
      );
    }
    // procfs and sysfs where the path says, never where a symlink in the image points: a proc
    // mounted through links that later mounts hide would escape maskedPaths and readonlyPaths.
    const strict = type === "proc" || type === "sysfs";
    out.add(
      strict ? Op.MountInRootNoSymlinks : Op.MountInRoot,
      [
        rootfs,
        dest,
        m.source ?? type,
        type,
        opts.flags & ~MS.REMOUNT,
        data.join(","),
        kernelFsAllowed(dest, type, false),
      ],
      `mount ${type} on ${dest}${opts.flags ? ` (${flagNames(opts.flags)})` : ""}${data.length ? ` [${data.join(",")}]` : ""}`,
    );
    if (copyUp) {
      out.add(
        Op.CopyDirInRoot,
        [COPYUP_SLOT, rootfs, dest],
        `copy the former contents of ${dest} onto the tmpfs (tmpcopyup)`,
      );
    }
  }
  for (const prop of opts.propagation) {
    out.add(
      Op.MountInRoot,
      [rootfs, dest, "", "", prop, "", kernelFsAllowed(dest, type, false)],
      `set propagation of ${dest} to ${propagationName(prop)}`,
    );
  }
}

/**
 * The kernel filesystems a mount's target may turn out to be on (KernelFs bits); the launcher
 * checks the opened target, where symlinks of the image have been followed. procfs: a fresh proc
 * or sysfs (mounted where the path says, no symlink on the way), and a bind onto one of
 * PROC_BIND_DESTINATIONS. sysfs: the same fresh mounts, and a destination the config itself puts
 * under /sys (the cgroup mount, a host directory of /sys bound in). Anything else found there got
 * there through a symlink in the image (/dev -> /proc): it would hide procfs, and the masked and
 * read-only paths would then protect the wrong files, or none.
 */
function kernelFsAllowed(dest: string, type: string, bind: boolean): number {
  if (!bind && (type === "proc" || type === "sysfs")) return KernelFs.Proc | KernelFs.Sys;
  let allowed = 0;
  if (bind && PROC_BIND_DESTINATIONS.has(dest)) allowed |= KernelFs.Proc;
  if (dest === "/sys" || dest.startsWith("/sys/")) allowed |= KernelFs.Sys;
  return allowed;
}

/**
 * A bind's mount(2) flags as mount_setattr attributes. They are added to what the source's mount
 * has (a nosuid host mount stays nosuid), as restrictions: "rw", "suid", "dev" and "exec" clear
 * nothing. An atime mode replaces the source's (its mask cleared, the mode set).
 */
export function bindAttributes(flags: number): { set: number; clear: number } {
  let set = 0;
  let clear = 0;
  if (flags & MS.RDONLY) set |= MOUNT_ATTR.RDONLY;
  if (flags & MS.NOSUID) set |= MOUNT_ATTR.NOSUID;
  if (flags & MS.NODEV) set |= MOUNT_ATTR.NODEV;
  if (flags & MS.NOEXEC) set |= MOUNT_ATTR.NOEXEC;
  if (flags & MS.NODIRATIME) set |= MOUNT_ATTR.NODIRATIME;
  if (flags & MS.NOSYMFOLLOW) set |= MOUNT_ATTR.NOSYMFOLLOW;
  // The kernel's order: strictatime wins over noatime, which wins over relatime.
  const atime =
    flags & MS.STRICTATIME
      ? MOUNT_ATTR.STRICTATIME
      : flags & MS.NOATIME
        ? MOUNT_ATTR.NOATIME
        : flags & MS.RELATIME
          ? MOUNT_ATTR.RELATIME
          : undefined;
  if (atime !== undefined) {
    set |= atime;
    clear |= MOUNT_ATTR._ATIME;
  }
  return { set, clear };
}

/** On a v1 or hybrid host: a tmpfs with the container's own cgroup directories bound in. */
function compileCgroupMount(
  out: StepList,
  dest: string,
  opts: ParsedMountOptions,
  input: ContainerPlanInput,
): void {
  const { rootfs } = input;
  out.add(Op.MkdirInRoot, [rootfs, dest, 0o755], `mkdir -p ${dest}`);
  const kernelFs = kernelFsAllowed(dest, "tmpfs", false);
  out.add(
    Op.MountInRoot,
    [rootfs, dest, "tmpfs", "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=755", kernelFs],
    `mount tmpfs on ${dest} to hold the cgroup hierarchies`,
  );
  const ro = opts.flags & MS.RDONLY;
  for (const cg of input.cgroupMounts ?? []) {
    const target = `${dest}/${cg.name}`;
    out.add(Op.MkdirInRoot, [rootfs, target, 0o755], `mkdir -p ${target}`);
    const attrs = bindAttributes(MS.NOSUID | MS.NODEV | MS.NOEXEC | ro);
    out.add(
      Op.BindInRoot,
      [rootfs, target, cg.hostPath, 0, attrs.set, attrs.clear, kernelFsAllowed(target, "", true)],
      `bind the container's cgroup ${cg.hostPath} on ${target} (nosuid,nodev,noexec${ro ? ",ro" : ""})`,
    );
  }
  if (ro) {
    out.add(
      Op.MountInRoot,
      [
        rootfs,
        dest,
        "",
        "",
        MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC,
        "mode=755",
        kernelFs,
      ],
      `remount ${dest} read-only`,
    );
  }
}

function flagNames(flags: number): string {
  const names: string[] = [];
  for (const [name, [set, bit]] of Object.entries(MountOptionFlags)) {
    if (set && bit !== (MS.BIND | MS.REC) && (flags & bit) === bit) names.push(name);
  }
  return names.join(",");
}

function propagationName(flags: number): string {
  for (const [name, value] of Object.entries(PropagationFlags)) if (value === flags) return name;
  return String(flags);
}

/** Device nodes: in a user namespace, where mknod is not allowed, the host's nodes are bound in. */
function compileDevices(
  out: StepList,
  devices: readonly Device[],
  rootfs: string,
  newUserNs: boolean,
): void {
  const seen = new Set<string>();
  // Later entries (from config.json) win over the defaults.
  for (const dev of [...devices].reverse()) {
    const path = joinInRoot(dev.path);
    if (seen.has(path)) continue;
    seen.add(path);
    if (newUserNs) {
      out.add(Op.TouchInRoot, [rootfs, path], `create ${path} as a mount point`);
      out.add(
        Op.MountInRoot,
        [rootfs, path, dev.path, "", MS.BIND, "", kernelFsAllowed(path, "", true)],
        `bind host device ${dev.path} on ${path}`,
      );
      continue;
    }
    const typeBits = dev.type === "b" ? S_IFBLK : dev.type === "p" ? S_IFIFO : S_IFCHR;
    // fileMode may carry type bits (podman sends S_IFCHR | 0644): the type comes from dev.type.
    const perm = (dev.fileMode ?? 0o666) & 0o7777;
    const mode = typeBits | perm;
    out.add(
      Op.MknodInRoot,
      [rootfs, path, mode, dev.major ?? 0, dev.minor ?? 0, dev.uid ?? 0, dev.gid ?? 0],
      `mknod ${path} ${dev.type} ${dev.major ?? 0}:${dev.minor ?? 0} mode ${perm.toString(8)}`,
    );
  }
}

/** Credentials, capabilities and the final exec: shared by containers and `exec`. */
export function compileProcessCredentials(
  out: { add: StepList["add"] },
  process: Process,
  jsonPath = "process",
  setgroups = true,
): void {
  const caps = process.capabilities;
  if (caps) {
    out.add(
      Op.SetBoundingSet,
      [capabilityMask(caps.bounding, `${jsonPath}.capabilities.bounding`)],
      `keep capabilities ${(caps.bounding ?? []).join(",") || "(none)"} in the bounding set`,
    );
  }
  const groups = process.user.additionalGids ?? [];
  // Where setgroups is denied (an unprivileged user wrote the gid map), the process keeps none.
  if (setgroups) out.add(Op.SetGroups, groups, `set supplementary groups [${groups.join(",")}]`);
  out.add(
    Op.SetUser,
    [process.user.uid, process.user.gid],
    `become uid ${process.user.uid} gid ${process.user.gid}`,
  );
  if (process.user.umask !== undefined)
    out.add(Op.Umask, [process.user.umask], `umask ${process.user.umask.toString(8)}`);
  out.add(Op.Chdir, [process.cwd], `chdir ${process.cwd}`);
  if (process.noNewPrivileges) out.add(Op.NoNewPrivileges, [], "set no_new_privs");
  if (caps) {
    const permitted = capabilityMask(caps.permitted, `${jsonPath}.capabilities.permitted`);
    const inheritable = capabilityMask(caps.inheritable, `${jsonPath}.capabilities.inheritable`);
    // The kernel raises an ambient capability only if it is permitted and inheritable; like runc,
    // the others are left out rather than failing the container.
    const ambient =
      capabilityMask(caps.ambient, `${jsonPath}.capabilities.ambient`) & permitted & inheritable;
    out.add(
      Op.SetCapabilities,
      [
        capabilityMask(caps.effective, `${jsonPath}.capabilities.effective`),
        permitted,
        inheritable,
        ambient,
      ],
      `set capabilities: effective ${(caps.effective ?? []).join(",") || "(none)"}`,
    );
  }
}

/** The steps that build a seccomp filter with libseccomp and load it, or load a cached one. */
function compileSeccompSteps(out: { add: StepList["add"] }, setup: SeccompSetup): void {
  if ("cached" in setup) {
    const c = setup.cached;
    out.add(
      Op.SeccompLoadProgram,
      [c.flags, c.program],
      `load the cached seccomp filter (${c.rules} rules, default ${c.defaultText}; ${c.program.length / 8} BPF instructions from libseccomp ${c.libseccomp}, flags 0x${c.flags.toString(16)})`,
    );
    return;
  }
  const seccomp = setup.compiled;
  const listener = seccomp.usesNotify && seccomp.listenerPath !== undefined;
  out.add(
    Op.SeccompInit,
    [seccomp.defaultAction],
    `start a seccomp filter with default action ${seccomp.defaultText}`,
  );
  for (const a of seccomp.attributes) {
    out.add(
      Op.SeccompAttr,
      [a.attribute, a.value, a.optional ? 1 : 0],
      `seccomp filter attribute: ${a.text}`,
    );
  }
  for (const arch of seccomp.architectures) {
    out.add(Op.SeccompArch, [arch], `seccomp filter architecture ${arch}`);
  }
  for (const rule of seccomp.rules) {
    const conditions = rule.conditions.flatMap((c) => [
      c.index,
      c.op,
      BigInt.asIntN(64, c.value),
      BigInt.asIntN(64, c.valueTwo),
    ]);
    out.add(
      Op.SeccompRule,
      [rule.syscall, rule.action, rule.conditions.length, ...conditions],
      `seccomp rule: ${rule.text}`,
    );
  }
  if (setup.export) out.add(Op.SeccompExport, [], "export the seccomp filter for the cache");
  out.add(
    Op.SeccompLoad,
    [listener ? LISTENER_SLOT : -1],
    `load the seccomp filter (${seccomp.rules.length} rules, default ${seccomp.defaultText})${listener ? ` and send its notification fd to ${seccomp.listenerPath}` : ""}`,
  );
}

function rejectUnsupported(spec: Spec): void {
  rejectSecurityModules(spec.process, spec.linux);
}

/** The order in which the setup child joins and creates namespaces: the user namespace first. */
const NAMESPACE_ORDER: readonly NamespaceType[] = [
  "user",
  "ipc",
  "uts",
  "network",
  "pid",
  "mount",
  "cgroup",
  "time",
];

/** Compiles a container's config into its launch plan. */
export function compileContainerPlan(input: ContainerPlanInput): Plan {
  const { spec, rootfs } = input;
  const warnings: string[] = [];
  const process = spec.process;
  if (!process)
    throw new ConfigError("process", "is missing; the container needs a process to run");
  if (!process.args || process.args.length === 0)
    throw new ConfigError("process.args", "must name a program to run");
  rejectUnsupported(spec);
  // A cached filter of the same profile skips validating and compiling it (it was, when cached).
  const cache = input.seccompCache?.cache;
  const cacheKey = input.seccompCache?.key ?? null;
  const cached = cache && cacheKey ? cache.lookup(cacheKey) : null;
  const seccomp = cached ? null : compileSeccomp(spec.linux?.seccomp);
  const exportKey = seccomp && cacheKey && SeccompCache.cacheable(seccomp) ? cacheKey : null;
  const seccompSetup: SeccompSetup | null = cached
    ? { cached }
    : seccomp
      ? { compiled: seccomp, export: exportKey !== null }
      : null;
  const ns = namespaceMap(spec);
  const out = new StepList();
  const newNs = (t: NamespaceType) => ns.has(t) && !ns.get(t)!.path;
  const newUserNs = newNs("user");
  if (newUserNs && !(spec.linux?.uidMappings?.length && spec.linux?.gidMappings?.length)) {
    throw new ConfigError(
      "linux.uidMappings",
      "a new user namespace needs uidMappings and gidMappings",
    );
  }
  const caller = input.caller ?? { uid: 0, gid: 0 };
  if (isRootless(caller) && !ns.has("user")) {
    throw new ConfigError(
      "linux.namespaces",
      `pivot-runtime runs as uid ${caller.uid}, not root: the container needs a user namespace`,
      'add {"type": "user"} with linux.uidMappings and gidMappings (`pivot-runtime spec --rootless` writes a config with them), or run as root',
    );
  }
  const idMaps = newUserNs
    ? idMapMethod(spec.linux!.uidMappings!, spec.linux!.gidMappings!, caller)
    : undefined;
  if (idMaps?.denySetgroups && (process.user.additionalGids ?? []).length > 0) {
    throw new ConfigError(
      "process.user.additionalGids",
      `cannot be set: uid ${caller.uid} maps only its own gid, which the kernel allows only with setgroups denied in the container`,
      "map more gids (a range in /etc/subgid, written by newgidmap), or leave additionalGids out",
    );
  }
  if (spec.hostname && !ns.has("uts")) {
    throw new ConfigError(
      "hostname",
      "setting a hostname needs a uts namespace",
      'add {"type": "uts"} to linux.namespaces',
    );
  }
  if (spec.linux?.timeOffsets && !newNs("time")) {
    throw new ConfigError(
      "linux.timeOffsets",
      "time offsets need a new time namespace",
      'add {"type": "time"} to linux.namespaces',
    );
  }

  // 1. In the launcher: resources that must be opened from the host's view.
  if (input.waitForInit)
    out.add(Op.WaitForInit, [], "wait for the container's init and report its exit");
  if (input.waitForInit && input.unmountAfterExit) {
    out.add(
      Op.UnmountAfterExit,
      [input.unmountAfterExit, UMOUNT_NOFOLLOW],
      `unmount ${input.unmountAfterExit} once the init has exited (left for the caller if busy)`,
    );
  }
  // runtime-spec: poststart hooks run after the user's process is executed. `start` sees that on
  // the exec fifo; `run`, which has none, asks the launcher.
  if (input.waitForInit && input.execFifo === null && (spec.hooks?.poststart?.length ?? 0) > 0)
    out.add(Op.ReportExec, [], "report when the init has exec'd its program (poststart hooks)");
  if (input.execFifo !== null) {
    out.add(Op.MakeFifo, [FIFO_SLOT, input.execFifo], `create the exec fifo ${input.execFifo}`);
  }
  if (process.terminal) {
    if (!input.consoleSocket) {
      throw new ConfigError(
        "process.terminal",
        "is true, but no --console-socket was given",
        "pass --console-socket PATH, or set terminal to false",
      );
    }
    out.add(
      Op.ConnectSocket,
      [CONSOLE_SLOT, input.consoleSocket],
      `connect to the console socket ${input.consoleSocket}`,
    );
  }
  if (seccomp?.usesNotify && seccomp.listenerPath) {
    out.add(
      Op.ConnectSocket,
      [LISTENER_SLOT, seccomp.listenerPath],
      `connect to the seccomp listener ${seccomp.listenerPath}`,
    );
  }
  const idmapSlots = ns.has("mount")
    ? compileIdmappedMounts(out, input, newUserNs)
    : new Map<number, number>();
  compileForkSetup(out, input.cgroupJoin);
  compileOomScoreAdj(out, process);

  // 2. In the setup process: join and create namespaces.
  for (const type of NAMESPACE_ORDER) {
    const n = ns.get(type);
    if (n?.path)
      out.add(
        Op.JoinNamespace,
        [n.path, CloneFlag[nsKey(type)]],
        `join the ${type} namespace ${n.path}`,
      );
  }
  if (newUserNs) out.add(Op.Unshare, [CloneFlag.user], "create a user namespace");
  if (needsSetupSync(newUserNs, input.cgroupJoin)) {
    const work = [
      ...(newUserNs ? ["writes id maps"] : []),
      ...(input.cgroupJoin?.byRuntime.length ? ["joins the cgroup"] : []),
    ];
    out.add(Op.Sync, [SyncPoint.SetupChildCreated], `wait while the runtime ${work.join(" and ")}`);
  }
  if (newUserNs) out.add(Op.BecomeNamespaceRoot, [], "become root in the new user namespace");
  let flags = 0;
  const created: string[] = [];
  for (const type of NAMESPACE_ORDER) {
    if (type !== "user" && newNs(type)) {
      flags |= CloneFlag[nsKey(type)];
      created.push(type);
    }
  }
  if (flags) out.add(Op.Unshare, [flags], `create namespaces: ${created.join(", ")}`);
  if (spec.linux?.timeOffsets) {
    const t = spec.linux.timeOffsets;
    out.add(
      Op.TimeOffsets,
      [
        t.monotonic?.secs ?? 0,
        t.monotonic?.nanosecs ?? 0,
        t.boottime?.secs ?? 0,
        t.boottime?.nanosecs ?? 0,
      ],
      "set the time namespace offsets",
    );
  }
  out.add(Op.ForkInit, [], "fork the container's init (PID 1 in a new PID namespace)");

  // 3. In init: the filesystem.
  out.add(Op.NewSession, [], "start a new session");
  if (!input.noNewKeyring) {
    const name = `_ses.${input.id ?? "pivot"}`;
    out.add(Op.NewSessionKeyring, [name], `join a new session keyring ${name}`);
  }
  // A new network namespace starts with lo down; runc and crun bring it up, and so does Pivot.
  if (newNs("network")) out.add(Op.LoopbackUp, [], "bring the loopback interface up");
  // Early, so that hooks running in the container's namespaces see the container's names.
  if (spec.hostname !== undefined && spec.hostname !== "") {
    out.add(Op.SetHostname, [spec.hostname], `set hostname ${spec.hostname}`);
  }
  if (spec.domainname) {
    out.add(Op.SetDomainname, [spec.domainname], `set domainname ${spec.domainname}`);
  }
  const hooks = spec.hooks ?? {};
  // The root filesystem is set up in the container's mount namespace, new or joined by path
  // (as runc does); without one, the process is only chrooted.
  if (ns.has("mount")) {
    const initialProp = initialRootPropagation(input);
    out.add(
      Op.Propagation,
      ["/", initialProp],
      initialProp === (MS.SLAVE | MS.REC)
        ? "make every mount a slave, so nothing propagates to the host"
        : `make / ${propagationName(initialProp)}, as linux.rootfsPropagation asks`,
    );
    if (initialProp !== (MS.SLAVE | MS.REC) && initialProp !== (MS.PRIVATE | MS.REC)) {
      // That can leave shared the mount holding the root filesystem: pivot_root refuses a new
      // root whose parent mount is shared, and the root's bind mount would reach the host. The
      // launcher finds that mount in the container's own mount table (a joined namespace's, with
      // whatever is stacked on its path), as runc does.
      out.add(
        Op.PrivateMountOf,
        [rootfs],
        `make the mount holding the root filesystem ${rootfs} private`,
      );
    }
    out.add(
      Op.Mount,
      [rootfs, rootfs, "", MS.BIND | MS.REC, ""],
      `bind the root filesystem ${rootfs} onto itself`,
    );
    (spec.mounts ?? []).forEach((m, i) => {
      compileMount(out, m, i, input, idmapSlots.get(i));
    });
    const devIsFresh = (spec.mounts ?? []).some(
      (m) =>
        joinInRoot(m.destination) === "/dev" &&
        m.type !== "bind" &&
        !(m.options ?? []).includes("bind") &&
        !(m.options ?? []).includes("rbind"),
    );
    const defaults: Device[] = devIsFresh
      ? DEFAULT_DEVICES.map((d) => ({ ...d, type: "c", fileMode: 0o666, uid: 0, gid: 0 }))
      : [];
    compileDevices(out, [...defaults, ...(spec.linux?.devices ?? [])], rootfs, newUserNs);
    if (devIsFresh) {
      for (const [link, target] of DEV_SYMLINKS) {
        out.add(Op.SymlinkInRoot, [rootfs, link, target], `symlink ${link} -> ${target}`);
      }
    }
  } else if ((spec.mounts ?? []).length > 0) {
    // runc and crun would mount into the host's mount table here, where the mounts outlive the
    // container; Pivot leaves the host's mount table alone and says so.
    warnings.push(
      'mounts: ignored, because the container shares the host\'s mount namespace (add {"type": "mount"} to linux.namespaces to have them)',
    );
  }
  // The runtime's part at this point is the hooks and the seccomp listener's state; the reply also
  // carries the state the in-container hooks read. With none of them, the round trip is skipped.
  const hookCount =
    (hooks.prestart?.length ?? 0) +
    (hooks.createRuntime?.length ?? 0) +
    (hooks.createContainer?.length ?? 0) +
    (hooks.startContainer?.length ?? 0);
  if (hookCount > 0 || seccomp?.usesNotify) {
    out.add(
      Op.Sync,
      [SyncPoint.BeforePivot],
      "wait while the runtime runs prestart and createRuntime hooks",
    );
  }
  for (const [i, hook] of (hooks.createContainer ?? []).entries()) {
    out.add(Op.RunHook, hookArgs(hook), `run createContainer hook ${i} (${hook.path})`);
  }
  if (ns.has("mount")) {
    if (input.noPivot)
      out.add(Op.MoveRoot, [rootfs], `move ${rootfs} onto / and chroot (--no-pivot)`);
    else out.add(Op.PivotRoot, [rootfs], `pivot_root into ${rootfs}`);
    const rootProp = spec.linux?.rootfsPropagation;
    if (rootProp)
      out.add(
        Op.Propagation,
        ["/", PropagationFlags[rootProp]!],
        `set / propagation to ${rootProp}`,
      );
  } else {
    out.add(Op.Chroot, [rootfs], `chroot into ${rootfs} (no mount namespace: no pivot_root)`);
  }
  for (const [key, value] of Object.entries(spec.linux?.sysctl ?? {})) {
    out.add(
      Op.WriteFile,
      [`/proc/sys/${key.replace(/\./g, "/")}`, value],
      `sysctl ${key}=${value}`,
    );
  }
  for (const path of spec.linux?.maskedPaths ?? []) out.add(Op.MaskPath, [path], `mask ${path}`);
  for (const path of spec.linux?.readonlyPaths ?? [])
    out.add(Op.ReadonlyPath, [path], `make ${path} read-only`);
  if (spec.root?.readonly && !ns.has("mount")) {
    warnings.push(
      "root.readonly: ignored, because the container shares the host's mount namespace",
    );
  } else if (spec.root?.readonly) {
    out.add(
      Op.MountInRoot,
      ["/", "/", "", "", MS.BIND | MS.REMOUNT | MS.RDONLY, "", 0],
      "remount the root filesystem read-only",
    );
  }
  compileProcessSetup(
    out,
    process,
    { hooks: hooks.startContainer ?? [], byFifo: input.execFifo !== null },
    seccompSetup,
    false,
    !idMaps?.denySetgroups,
  );
  return {
    steps: out.steps,
    newUserNamespace: newUserNs,
    ...(idMaps ? { idMaps } : {}),
    warnings,
    program: programInfo(rootfs, process),
    ...(seccomp?.usesNotify ? { seccompListener: seccomp } : {}),
    ...(exportKey && seccomp
      ? { seccompExport: (r: SeccompProgramReport) => cache!.store(exportKey, seccomp, r) }
      : {}),
  };
}

/** Forks the setup process, in the container's cgroup v2 if it can be created there. */
function compileForkSetup(out: StepList, join: CgroupJoin | undefined): void {
  if (join?.createIn) {
    out.add(
      Op.ForkSetup,
      [0, join.createIn],
      `fork the setup process inside the cgroup ${join.createIn}`,
    );
  } else {
    out.add(Op.ForkSetup, [0, ""], "fork the setup process");
  }
  for (const dir of join?.selfJoin ?? []) {
    out.add(Op.JoinCgroup, [dir], `join the cgroup ${dir}`);
  }
}

/** The runtime acts at SetupChildCreated: id maps for a new user namespace, cgroups left to it. */
function needsSetupSync(newUserNs: boolean, join: CgroupJoin | undefined): boolean {
  return newUserNs || (join?.byRuntime.length ?? 0) > 0;
}

/**
 * oom_score_adj, written by the setup process for the processes it forks (they inherit it): there
 * it is still the host's root. Later, in a user namespace, the process is no longer dumpable after
 * its uid changes, so its /proc/self belongs to the host's root and is closed to it.
 */
function compileOomScoreAdj(out: StepList, process: Process): void {
  if (process.oomScoreAdj === undefined) return;
  out.add(
    Op.WriteFile,
    ["/proc/self/oom_score_adj", String(process.oomScoreAdj)],
    `set oom_score_adj ${process.oomScoreAdj} (inherited by the processes forked next)`,
  );
}

/**
 * The tail every process shares: rlimits, terminal, credentials, seccomp, then wait/exec.
 *
 * The seccomp filter goes where runc puts it (libcontainer/standard_init_linux.go): without
 * noNewPrivileges, loading a filter needs CAP_SYS_ADMIN, so it is loaded before the user switch and
 * the capability sets; with noNewPrivileges, as late as possible, after the program is found and
 * before the wait for `start`, so a filter that cannot be loaded fails `create`, not `start`.
 */
function compileProcessSetup(
  out: StepList,
  process: Process,
  /** A container's init waits to be started (on the exec fifo, or at SyncPoint.Start), then runs
   *  the startContainer hooks; null for `exec`, whose process runs at once. */
  start: { hooks: Hook[]; byFifo: boolean } | null,
  seccomp: SeccompSetup | null,
  nonDumpable = false,
  setgroups = true,
): void {
  // Until execve, this process runs the launcher: not dumpable, other processes of the container
  // cannot open it through /proc/PID/exe (to overwrite it later, the CVE-2019-5736 class) or its
  // fds.
  if (!nonDumpable) out.add(Op.SetDumpable, [0], NON_DUMPABLE_TEXT);
  for (const [i, rl] of (process.rlimits ?? []).entries()) {
    const resource = Rlimit[rl.type];
    if (resource === undefined) {
      throw new ConfigError(
        `process.rlimits[${i}].type`,
        `unknown rlimit "${rl.type}"`,
        "names look like RLIMIT_NOFILE",
      );
    }
    out.add(
      Op.SetRlimit,
      [resource, rlimitArg(rl.soft), rlimitArg(rl.hard)],
      `setrlimit ${rl.type} soft ${rlimitText(rl.soft)} hard ${rlimitText(rl.hard)}`,
    );
  }
  if (process.terminal) {
    out.add(
      Op.SetupTerminal,
      [CONSOLE_SLOT, process.consoleSize?.height ?? 0, process.consoleSize?.width ?? 0],
      "open a pty, send its master to the console socket and make it the terminal",
    );
  }
  if (seccomp && !process.noNewPrivileges) compileSeccompSteps(out, seccomp);
  compileProcessCredentials(out, process, "process", setgroups);
  const env = process.env ?? [];
  const path = envValue(env, "PATH") ?? DEFAULT_PATH;
  const args = process.args ?? [];
  out.add(Op.FindExecutable, [args[0]!, path], `find ${args[0]} in PATH`);
  if (seccomp && process.noNewPrivileges) compileSeccompSteps(out, seccomp);
  if (start !== null) {
    if (start.byFifo)
      out.add(Op.WaitExecFifo, [FIFO_SLOT], "report ready and wait for `start` (the exec fifo)");
    else out.add(Op.Sync, [SyncPoint.Start], "report ready and wait for the runtime to start it");
    for (const [i, hook] of start.hooks.entries()) {
      out.add(Op.RunHook, hookArgs(hook), `run startContainer hook ${i} (${hook.path})`);
    }
  }
  out.add(Op.Exec, [args.length, ...args, ...env], `exec ${args.join(" ")}`);
}

function nsKey(type: NamespaceType): keyof typeof CloneFlag {
  return type;
}

export interface ExecPlanInput {
  /** The container init's pid: its namespaces are joined. */
  initPid: number;
  /** Namespace types the container has (from its config). */
  namespaces: NamespaceType[];
  process: Process;
  waitForExit: boolean;
  consoleSocket?: string;
  /** The container's linux.seccomp: an exec'd process gets the same filter. */
  seccomp?: unknown;
  /** The container's user namespace denies setgroups (its gid map was written unprivileged). */
  denySetgroups?: boolean;
  /** How the process joins the container's cgroup (none: it stays in the caller's). */
  cgroupJoin?: CgroupJoin;
}

/** Compiles `exec`: join the container's namespaces, then run a process as configured. */
export function compileExecPlan(input: ExecPlanInput): Plan {
  const { process } = input;
  if (!process.args || process.args.length === 0)
    throw new ConfigError("process.args", "must name a program to run");
  rejectSecurityModules(process, undefined);
  const seccomp = compileSeccomp(input.seccomp);
  rejectNotifyForExec(seccomp);
  const out = new StepList();
  if (input.waitForExit) out.add(Op.WaitForInit, [], "wait for the process and report its exit");
  if (process.terminal) {
    if (!input.consoleSocket)
      throw new ConfigError("process.terminal", "is true, but no --console-socket was given");
    out.add(
      Op.ConnectSocket,
      [CONSOLE_SLOT, input.consoleSocket],
      `connect to the console socket ${input.consoleSocket}`,
    );
  }
  compileForkSetup(out, input.cgroupJoin);
  compileOomScoreAdj(out, process);
  // The mount namespace last: each /proc/<init>/ns path is opened as it is joined, and once in
  // the container's mount namespace, /proc is the container's.
  const order = [...NAMESPACE_ORDER.filter((t) => t !== "mount"), "mount" as const];
  for (const type of order) {
    if (!input.namespaces.includes(type)) continue;
    const path = `/proc/${input.initPid}/ns/${NamespaceProcName[type]}`;
    out.add(Op.JoinNamespace, [path, CloneFlag[type]], `join the container's ${type} namespace`);
  }
  if (needsSetupSync(false, input.cgroupJoin)) {
    out.add(Op.Sync, [SyncPoint.SetupChildCreated], "wait while the runtime joins the cgroup");
  }
  // The process is in the container's PID namespace from its fork on: non-dumpable already then.
  out.add(Op.SetDumpable, [0], NON_DUMPABLE_TEXT);
  out.add(Op.ForkInit, [], "fork the process inside the container's PID namespace");
  out.add(Op.NewSession, [], "start a new session");
  if (input.denySetgroups && (process.user.additionalGids ?? []).length > 0) {
    throw new ConfigError(
      "process.user.additionalGids",
      "cannot be set: the container's user namespace denies setgroups (its gid map was written without newgidmap)",
    );
  }
  compileProcessSetup(
    out,
    process,
    null,
    seccomp ? { compiled: seccomp, export: false } : null,
    true,
    !input.denySetgroups,
  );
  return {
    steps: out.steps,
    newUserNamespace: false,
    warnings: [],
    program: programInfo(`/proc/${input.initPid}/root`, process),
  };
}
