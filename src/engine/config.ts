// Building a container's OCI config from an image config and `docker run`-style options.
// Pure functions only: everything they need (the image's /etc/passwd, the host's resolv.conf)
// is passed in, so they are unit-tested without containers.
import { PivotError } from "../errors.ts";
import type { ImageConfig } from "../image/types.ts";
import {
  BASE_HOSTS,
  checkResolvOptions,
  checkWord,
  parseAddHost,
  type ResolvOptions,
  resolvConfContent,
} from "../network/dnsfiles.ts";
import type { PortMapping } from "../network/ports.ts";
import { devMounts, READONLY_PATHS } from "../oci/default-spec.ts";
import type { Mount, Seccomp, Spec } from "../oci/spec.ts";
import { OCI_VERSION } from "../oci/spec.ts";
import type { ContainerOptions, MountSpec } from "./types.ts";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Docker's default capabilities (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** Every capability up to CAP_CHECKPOINT_RESTORE (Linux 5.9), for --privileged and "ALL". */
export const ALL_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

/** Docker's masked paths for unprivileged containers, in its order. Not runc's `spec` list
 *  (oci/default-spec.ts): Docker adds /proc/interrupts and /sys/devices/virtual/powercap. */
const MASKED_PATHS = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/interrupts",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

export class ContainerConfigError extends PivotError {}

// ---- command, environment ----

/** Docker's rules: --entrypoint replaces the image's and drops its Cmd; a given cmd replaces Cmd. */
export function resolveArgs(image: ImageConfig["config"], options: ContainerOptions): string[] {
  const cfg = image ?? {};
  let entrypoint = cfg.Entrypoint ?? [];
  let cmd = cfg.Cmd ?? [];
  if (options.entrypoint !== undefined) {
    entrypoint =
      typeof options.entrypoint === "string"
        ? options.entrypoint === ""
          ? []
          : [options.entrypoint]
        : (options.entrypoint ?? []);
    cmd = [];
  }
  if (options.cmd !== undefined && options.cmd.length > 0) cmd = options.cmd;
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new ContainerConfigError("no command specified", {
      hint: "the image has no Entrypoint or Cmd: give a command after the image name",
    });
  }
  return args;
}

/** Splits "KEY=VALUE" (or "KEY", taken from `lookup`) into a pair; undefined drops it. */
function envPair(
  entry: string,
  lookup: (key: string) => string | undefined,
): [string, string] | undefined {
  const eq = entry.indexOf("=");
  if (eq === 0) throw new ContainerConfigError(`invalid environment variable "${entry}"`);
  if (eq < 0) {
    const v = lookup(entry);
    return v === undefined ? undefined : [entry, v];
  }
  return [entry.slice(0, eq), entry.slice(eq + 1)];
}

/** Merges environments in order, later keys replacing earlier ones in place. */
export function mergeEnv(
  layers: (readonly string[])[],
  lookup: (key: string) => string | undefined = () => undefined,
): string[] {
  const map = new Map<string, string>();
  for (const layer of layers) {
    for (const entry of layer) {
      const pair = envPair(entry, lookup);
      if (pair) map.set(pair[0], pair[1]);
    }
  }
  return [...map].map(([k, v]) => `${k}=${v}`);
}

/** Parses an --env-file: KEY=VALUE lines, # comments, a bare KEY takes the caller's value. */
export function parseEnvFile(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "").replace(/^\s+/, "");
    if (line === "" || line.startsWith("#")) continue;
    out.push(line);
  }
  return out;
}

// ---- users ----

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || line.startsWith("#")) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0]!, uid, gid, home: f[5]! });
  }
  return out;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 4 || line.startsWith("#")) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0]!, gid, members: f[3]!.split(",").filter(Boolean) });
  }
  return out;
}

const NUMERIC = /^\d+$/;

const NAME_LOOKUP = {
  user: { file: "/etc/passwd", numeric: "UID[:GID]" },
  group: { file: "/etc/group", numeric: "GID" },
} as const;

/** The entry of a user or group name in the image's /etc/passwd or /etc/group. */
function findByName<T extends { name: string }>(
  entries: readonly T[],
  name: string,
  kind: keyof typeof NAME_LOOKUP,
): T {
  const entry = entries.find((e) => e.name === name);
  if (entry) return entry;
  const { file, numeric } = NAME_LOOKUP[kind];
  throw new ContainerConfigError(
    `unable to find ${kind} ${name}: no matching entries in the image's ${file}`,
    { hint: `use a numeric ${numeric}, or a ${kind} that exists in the image` },
  );
}

/**
 * Resolves "user", "uid", "user:group", "uid:gid" (names looked up in the image's /etc/passwd and
 * /etc/group, as Docker does), with the user's supplementary groups and home directory.
 */
export function resolveUser(
  spec: string | undefined,
  passwd: string | undefined,
  group: string | undefined,
  /** --group-add: more groups, by name (looked up in `group`) or id. */
  groupAdd: readonly string[] = [],
): ResolvedUser {
  const users = parsePasswd(passwd ?? "");
  const groups = parseGroup(group ?? "");
  const [userPart = "", groupPart] = (spec ?? "").split(":", 2);
  let uid = 0;
  let gid = 0;
  let home = "/";
  let name: string | undefined;
  if (userPart === "" || NUMERIC.test(userPart)) {
    uid = userPart === "" ? 0 : Number(userPart);
    const entry = users.find((u) => u.uid === uid);
    if (entry) {
      gid = entry.gid;
      home = entry.home;
      name = entry.name;
    } else if (uid === 0) home = "/root";
  } else {
    const entry = findByName(users, userPart, "user");
    uid = entry.uid;
    gid = entry.gid;
    home = entry.home;
    name = entry.name;
  }
  if (groupPart !== undefined && groupPart !== "") {
    gid = NUMERIC.test(groupPart) ? Number(groupPart) : findByName(groups, groupPart, "group").gid;
  }
  const memberOf =
    name === undefined
      ? []
      : groups.filter((g) => g.members.includes(name) && g.gid !== gid).map((g) => g.gid);
  const added = groupAdd.map((g) =>
    NUMERIC.test(g) ? Number(g) : findByName(groups, g, "group").gid,
  );
  const additionalGids = [...new Set([...memberOf, ...added])];
  return { uid, gid, additionalGids, home: home || "/" };
}

// ---- sizes, volumes, mounts ----

/** Parses Docker's sizes: "512m", "1g", "100k", "1048576" (bytes). */
export function parseSize(value: string | number): number {
  if (typeof value === "number") return value;
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(value.trim());
  if (!m) {
    throw new ContainerConfigError(`invalid size "${value}"`, {
      hint: "use a number of bytes or a suffix: 512m, 1g",
    });
  }
  const mult: Record<string, number> = {
    "": 1,
    b: 1,
    k: 1024,
    m: 1024 ** 2,
    g: 1024 ** 3,
    t: 1024 ** 4,
  };
  return Math.floor(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}

const PROPAGATIONS = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

function checkTarget(target: string, what: string): string {
  if (!target.startsWith("/")) {
    throw new ContainerConfigError(`${what}: the container path "${target}" must be absolute`);
  }
  if (target.split("/").includes("..")) {
    throw new ContainerConfigError(`${what}: the container path "${target}" must not contain ".."`);
  }
  return target.replace(/\/+$/, "") || "/";
}

/**
 * Parses a -v/--volume value: HOST-PATH:CTR[:OPTS] (a bind), NAME:CTR[:OPTS] (a named volume) or
 * CTR (an anonymous volume). OPTS: ro, rw, z/Z (ignored), a propagation mode, nocopy.
 */
export function parseVolumeFlag(value: string): MountSpec {
  const parts = value.split(":");
  if (parts.length > 3 || parts.some((p) => p === "")) {
    throw new ContainerConfigError(`invalid volume specification "${value}"`, {
      hint: "use HOST-PATH:CONTAINER-PATH[:ro], NAME:CONTAINER-PATH[:ro] or CONTAINER-PATH",
    });
  }
  if (parts.length === 1) {
    return { type: "volume", target: checkTarget(parts[0]!, `--volume ${value}`) };
  }
  const [source, target, opts = ""] = parts as [string, string, string?];
  const spec: MountSpec = {
    type: source.startsWith("/") ? "bind" : "volume",
    source,
    target: checkTarget(target, `--volume ${value}`),
  };
  if (spec.type === "volume" && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(source)) {
    throw new ContainerConfigError(`invalid volume name "${source}" in "${value}"`, {
      hint: "a bind mount needs an absolute host path; a volume name uses [A-Za-z0-9_.-]",
    });
  }
  for (const o of opts.split(",").filter(Boolean)) {
    if (o === "ro" || o === "readonly") spec.readOnly = true;
    else if (o === "rw") spec.readOnly = false;
    else if (o === "z" || o === "Z") continue;
    else if (o === "nocopy") spec.noCopy = true;
    else if (PROPAGATIONS.includes(o)) spec.propagation = o;
    else throw new ContainerConfigError(`unknown volume option "${o}" in "${value}"`);
  }
  return spec;
}

/** Parses a --mount value: type=bind|volume|tmpfs,source=,target=,readonly,bind-propagation=,... */
export function parseMountFlag(value: string): MountSpec {
  let type: MountSpec["type"] = "volume";
  const spec: Partial<MountSpec> = {};
  for (const field of value.split(",")) {
    const eq = field.indexOf("=");
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const val = eq < 0 ? undefined : field.slice(eq + 1);
    switch (key) {
      case "type":
        if (val !== "bind" && val !== "volume" && val !== "tmpfs") {
          throw new ContainerConfigError(`--mount: unsupported type "${val}"`, {
            hint: "use type=bind, type=volume or type=tmpfs",
          });
        }
        type = val;
        break;
      case "source":
      case "src":
        spec.source = val;
        break;
      case "target":
      case "destination":
      case "dst":
        spec.target = val;
        break;
      case "readonly":
      case "ro":
        spec.readOnly = val === undefined || val === "true" || val === "1";
        break;
      case "bind-propagation":
        if (!val || !PROPAGATIONS.includes(val))
          throw new ContainerConfigError(`--mount: invalid bind-propagation "${val}"`);
        spec.propagation = val;
        break;
      case "volume-nocopy":
        spec.noCopy = val === undefined || val === "true";
        break;
      case "tmpfs-size":
        spec.tmpfsSize = parseSize(val ?? "");
        break;
      case "tmpfs-mode":
        spec.tmpfsMode = Number.parseInt(val ?? "", 8);
        break;
      default:
        throw new ContainerConfigError(`--mount: unknown field "${key}" in "${value}"`);
    }
  }
  if (!spec.target) throw new ContainerConfigError(`--mount ${value}: target is required`);
  const out: MountSpec = { ...spec, type, target: checkTarget(spec.target, `--mount ${value}`) };
  if (type === "bind" && !out.source?.startsWith("/")) {
    throw new ContainerConfigError(`--mount ${value}: a bind mount needs an absolute source path`);
  }
  // Docker's --mount, unlike -v, does not create a missing host path.
  if (type === "bind") out.mustExist = true;
  if (type === "tmpfs" && out.source) {
    throw new ContainerConfigError(`--mount ${value}: a tmpfs mount takes no source`);
  }
  return out;
}

/** Parses a --tmpfs value: CTR[:OPTIONS] (mount(8) options, e.g. size=64m,mode=1777). */
export function parseTmpfsFlag(value: string): MountSpec {
  const colon = value.indexOf(":");
  const target = colon < 0 ? value : value.slice(0, colon);
  const opts =
    colon < 0
      ? []
      : value
          .slice(colon + 1)
          .split(",")
          .filter(Boolean);
  return { type: "tmpfs", target: checkTarget(target, `--tmpfs ${value}`), tmpfsOptions: opts };
}

/** Binds with shared propagation: their source must be on a shared mount, and the root shared. */
export function sharedBinds(mounts: readonly MountSpec[]): MountSpec[] {
  return mounts.filter(
    (m) => m.type === "bind" && (m.propagation === "shared" || m.propagation === "rshared"),
  );
}

/**
 * linux.rootfsPropagation, as Docker sets it: "shared" when a bind is shared (the container's
 * mounts under it then reach the host's peer group), else left to the runtime's rslave.
 */
export function rootfsPropagationFor(mounts: readonly MountSpec[]): "shared" | undefined {
  return sharedBinds(mounts).length > 0 ? "shared" : undefined;
}

/** The OCI mount for a bind, a volume (already resolved to its host directory) or a tmpfs. */
export function ociMount(m: MountSpec, hostPath?: string): Mount {
  if (m.type === "tmpfs") {
    const options = ["nosuid", "nodev", "noexec"];
    const extra = m.tmpfsOptions ?? [];
    for (const o of extra) {
      if (o === "exec") options.splice(options.indexOf("noexec"), 1);
      else if (!options.includes(o)) options.push(o);
    }
    if (m.tmpfsSize !== undefined) options.push(`size=${m.tmpfsSize}`);
    if (m.tmpfsMode !== undefined) options.push(`mode=${m.tmpfsMode.toString(8)}`);
    if (m.readOnly) options.push("ro");
    return { destination: m.target, type: "tmpfs", source: "tmpfs", options };
  }
  const options = ["rbind", m.propagation ?? "rprivate"];
  if (m.readOnly) options.push("ro");
  return { destination: m.target, type: "bind", source: hostPath ?? m.source!, options };
}

// ---- resources, security ----

export interface Resources {
  memory?: string | number;
  memorySwap?: string | number;
  cpus?: number | string;
  cpuShares?: number;
  pidsLimit?: number;
}

/** Docker's smallest --memory (6 MiB). */
const MIN_MEMORY = 6 * 1024 * 1024;

export function ociResources(r: Resources): NonNullable<Spec["linux"]>["resources"] {
  const out: NonNullable<NonNullable<Spec["linux"]>["resources"]> = {
    devices: [{ allow: false, access: "rwm" }],
  };
  if (r.memorySwap !== undefined && r.memory === undefined) {
    // Docker's rule: it was silently ignored here.
    throw new ContainerConfigError("--memory-swap needs a memory limit (--memory) as well", {
      hint: "give --memory too, e.g. --memory 256m --memory-swap 512m (memory+swap)",
    });
  }
  if (r.memory !== undefined) {
    out.memory = { limit: parseSize(r.memory) };
    // Docker's minimum: below it the container's setup is killed, and says nothing of why.
    if (out.memory.limit! > 0 && out.memory.limit! < MIN_MEMORY) {
      throw new ContainerConfigError(`--memory ${r.memory} is below the minimum of 6MB`, {
        hint: "give at least 6m (as Docker requires), or no --memory for no limit",
      });
    }
    if (r.memorySwap !== undefined) {
      const swap = r.memorySwap === -1 || r.memorySwap === "-1" ? -1 : parseSize(r.memorySwap);
      if (swap !== -1 && out.memory.limit! > 0 && swap < out.memory.limit!) {
        throw new ContainerConfigError(
          `--memory-swap ${r.memorySwap} is below --memory ${r.memory}: it is memory and swap together`,
          {
            hint: "give at least the memory limit (no swap), -1 for unlimited swap, or leave it out",
          },
        );
      }
      out.memory.swap = swap;
    }
  }
  if (r.cpus !== undefined) {
    const cpus = Number(r.cpus);
    if (!(cpus > 0)) {
      throw new ContainerConfigError(`invalid --cpus "${r.cpus}"`, {
        hint: "give a number of CPUs greater than 0, e.g. 0.5 or 2",
      });
    }
    out.cpu = { period: 100000, quota: Math.round(cpus * 100000) };
  }
  if (r.cpuShares !== undefined) out.cpu = { ...out.cpu, shares: r.cpuShares };
  if (r.pidsLimit !== undefined && r.pidsLimit > 0) out.pids = { limit: r.pidsLimit };
  return out;
}

function capName(c: string): string {
  const up = c.toUpperCase();
  return up === "ALL" ? up : up.startsWith("CAP_") ? up : `CAP_${up}`;
}

/**
 * The capabilities in a bounding set (the CapBnd line of /proc/PID/status): what --privileged and
 * --cap-add ALL give, as podman's do. A host that lacks some (Pivot in a container without
 * CAP_SYS_RESOURCE) cannot grant them: asking for every one made the runtime's capset fail.
 */
export function boundingCapabilities(status: string): string[] {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  if (!m) return [...ALL_CAPABILITIES];
  const mask = BigInt(`0x${m[1]}`);
  return ALL_CAPABILITIES.filter((_, bit) => ((mask >> BigInt(bit)) & 1n) === 1n);
}

/**
 * Docker's capability arithmetic: defaults (or all, privileged), minus drops, plus adds. "All"
 * is `all`, the capabilities the engine can grant (its bounding set).
 */
export function resolveCapabilities(
  capAdd: readonly string[] = [],
  capDrop: readonly string[] = [],
  privileged = false,
  all: readonly string[] = ALL_CAPABILITIES,
): string[] {
  if (privileged) return [...all];
  const adds = capAdd.map(capName);
  const drops = capDrop.map(capName);
  for (const c of [...adds, ...drops]) {
    if (c !== "ALL" && !ALL_CAPABILITIES.includes(c)) {
      throw new ContainerConfigError(`unknown capability "${c}"`);
    }
  }
  let caps = drops.includes("ALL") ? [] : DEFAULT_CAPABILITIES.filter((c) => !drops.includes(c));
  if (adds.includes("ALL")) caps = all.filter((c) => !drops.includes(c) || adds.includes(c));
  for (const c of adds) if (c !== "ALL" && !caps.includes(c)) caps.push(c);
  return caps;
}

export interface SecurityOptions {
  noNewPrivileges: boolean;
  /** "default", "unconfined", or a profile read from a file. */
  seccomp: "default" | "unconfined" | Seccomp;
}

/** Parses --security-opt values; `readFile` reads a seccomp profile path. */
export function parseSecurityOpts(
  values: readonly string[],
  readFile: (path: string) => string,
): SecurityOptions {
  const out: SecurityOptions = { noNewPrivileges: false, seccomp: "default" };
  for (const v of values) {
    const [key = "", val] = v.includes("=")
      ? [v.slice(0, v.indexOf("=")), v.slice(v.indexOf("=") + 1)]
      : v.split(":", 2);
    if (key === "no-new-privileges") out.noNewPrivileges = val === undefined || val === "true";
    else if (key === "seccomp") {
      if (val === "unconfined") out.seccomp = "unconfined";
      else if (!val) throw new ContainerConfigError(`--security-opt ${v}: missing profile`);
      else {
        let parsed: Seccomp;
        try {
          parsed = JSON.parse(readFile(val)) as Seccomp;
        } catch (err) {
          throw new ContainerConfigError(
            `--security-opt ${v}: cannot read the seccomp profile (${(err as Error).message})`,
            {
              hint: "give the path of a seccomp profile in Docker's JSON format, or seccomp=unconfined",
            },
          );
        }
        out.seccomp = seccompFromProfile(parsed);
      }
    } else if (key === "label" || key === "apparmor") {
      // No LSM support in the engine yet; accepted as Docker does on hosts without them.
    } else {
      throw new ContainerConfigError(`unknown --security-opt "${v}"`, {
        hint: "supported: no-new-privileges, seccomp=PATH|unconfined",
      });
    }
  }
  return out;
}

/** A seccomp profile as given to --security-opt: OCI form, or Docker's (archMap, no includes). */
function seccompFromProfile(
  p: Seccomp & { archMap?: { architecture: string; subArchitectures?: string[] }[] },
): Seccomp {
  const out: Seccomp = { defaultAction: p.defaultAction };
  if (p.defaultErrnoRet !== undefined) out.defaultErrnoRet = p.defaultErrnoRet;
  if (p.architectures) out.architectures = p.architectures;
  else if (p.archMap) {
    out.architectures = p.archMap.flatMap((a) => [a.architecture, ...(a.subArchitectures ?? [])]);
  }
  if (p.flags) out.flags = p.flags;
  if (p.syscalls) {
    out.syscalls = p.syscalls.map((s) => {
      const r: NonNullable<Seccomp["syscalls"]>[number] = { names: s.names, action: s.action };
      if (s.errnoRet !== undefined) r.errnoRet = s.errnoRet;
      if (s.args) r.args = s.args;
      return r;
    });
  }
  return out;
}

// ---- /etc files ----

export function hostsFile(hostname: string, extra: readonly string[] = []): string {
  return [...BASE_HOSTS, `127.0.1.1\t${hostname}`, ...extra, ""].join("\n");
}

/** The container's resolv.conf from the host's: loopback nameservers cannot be reached from
 *  another network namespace, so they are dropped (and Google's DNS used if none is left), as
 *  Docker does. With the host's network, the file is kept as it is. */
export function resolvConf(hostText: string, hostNetwork: boolean): string {
  if (hostNetwork) return hostText;
  const lines = hostText.split("\n").filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  if (!lines.some((l) => /^\s*nameserver\s/.test(l))) {
    lines.push("nameserver 8.8.8.8", "nameserver 8.8.4.4");
  }
  return `${lines.join("\n")}\n`;
}

// ---- the OCI config ----

export interface SpecInput {
  imageConfig: ImageConfig["config"];
  options: ContainerOptions;
  /** The container's id (hostname default: its first 12 characters). */
  id: string;
  user: ResolvedUser;
  /** Root filesystem path as it goes into root.path. */
  rootfs: string;
  /** Bind sources for /etc/hosts, /etc/hostname and /etc/resolv.conf. */
  etcFiles: { hosts: string; hostname: string; resolvConf: string };
  /** A network namespace to join (a container on a network: set up before it starts). */
  netns?: string;
  /** User and image volumes, resolved to host paths (bind/volume) or tmpfs mounts. */
  mounts: Mount[];
  /** The capabilities the engine can grant (its bounding set); default every one. */
  hostCapabilities?: readonly string[];
  /** Docker's default seccomp profile for the given capabilities, when seccomp is "default". */
  defaultSeccomp?: (capabilities: string[]) => Seccomp;
  security: SecurityOptions;
}

export function hostnameOf(id: string, options: ContainerOptions): string {
  return options.hostname ?? id.slice(0, 12);
}

/** The OCI config of a container (what `docker run` hands to runc, minus networking). */
export function buildSpec(input: SpecInput): Spec {
  const { options, imageConfig } = input;
  const cfg = imageConfig ?? {};
  const hostname = hostnameOf(input.id, options);
  const hostNetwork = options.network === "host";
  const privileged = options.privileged ?? false;
  const caps = resolveCapabilities(
    options.capAdd,
    options.capDrop,
    privileged,
    input.hostCapabilities,
  );
  const env = mergeEnv(
    [
      [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`],
      options.tty ? ["TERM=xterm"] : [],
      cfg.Env ?? [],
      options.env ?? [],
    ],
    (k) => process.env[k],
  );
  if (!env.some((e) => e.startsWith("HOME="))) env.push(`HOME=${input.user.home}`);
  const labels = { ...(cfg.Labels ?? {}), ...(options.labels ?? {}) };
  const sortedMounts = [...input.mounts].sort(
    (a, b) => a.destination.split("/").length - b.destination.split("/").length,
  );
  const etcBind = (destination: string, source: string): Mount => ({
    destination,
    type: "bind",
    source,
    options: ["rbind", "rprivate"],
  });
  const userDests = new Set(sortedMounts.map((m) => m.destination));
  const etcMounts = [
    etcBind("/etc/resolv.conf", input.etcFiles.resolvConf),
    etcBind("/etc/hostname", input.etcFiles.hostname),
    etcBind("/etc/hosts", input.etcFiles.hosts),
  ].filter((m) => !userDests.has(m.destination));
  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: options.tty ?? false,
      user: {
        uid: input.user.uid,
        gid: input.user.gid,
        ...(input.user.additionalGids.length ? { additionalGids: input.user.additionalGids } : {}),
      },
      args: resolveArgs(imageConfig, options),
      env,
      cwd: options.workdir ?? (cfg.WorkingDir || "/"),
      capabilities: {
        bounding: [...caps],
        effective: [...caps],
        permitted: [...caps],
      },
      noNewPrivileges: input.security.noNewPrivileges,
    },
    root: { path: input.rootfs, readonly: options.readOnly ?? false },
    hostname,
    mounts: [
      {
        destination: "/proc",
        type: "proc",
        source: "proc",
        options: ["nosuid", "noexec", "nodev"],
      },
      devMounts.dev(),
      devMounts.pts(),
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", privileged ? "rw" : "ro"],
      },
      {
        destination: "/sys/fs/cgroup",
        type: "cgroup",
        source: "cgroup",
        options: ["nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro"],
      },
      devMounts.mqueue(),
      devMounts.shm(),
      ...etcMounts,
      ...sortedMounts,
    ],
    annotations: {
      ...labels,
      "io.pivot.container.id": input.id,
      ...(options.name ? { "io.pivot.container.name": options.name } : {}),
    },
    linux: {
      resources: ociResources(options),
      namespaces: [
        { type: "pid" },
        ...(hostNetwork
          ? []
          : [{ type: "network" as const, ...(input.netns ? { path: input.netns } : {}) }]),
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "cgroup" },
      ],
      ...(privileged ? {} : { maskedPaths: [...MASKED_PATHS], readonlyPaths: [...READONLY_PATHS] }),
    },
  };
  if (privileged) spec.linux!.resources!.devices = [{ allow: true, access: "rwm" }];
  const seccomp = input.security.seccomp;
  if (!privileged && seccomp !== "unconfined") {
    if (seccomp === "default") {
      if (input.defaultSeccomp) spec.linux!.seccomp = input.defaultSeccomp(caps);
    } else spec.linux!.seccomp = seccomp;
  }
  return spec;
}

// ---- networking options ----

/**
 * -P: the image's ExposedPorts ("80/tcp", "53/udp", "8000-8002") added to PUBLISH with host
 * port 0 (a free one is chosen when the container is connected) on every host address, as -p
 * without a host address does. Ports -p already publishes are left as they are.
 */
export function publishExposed(
  publish: readonly PortMapping[],
  exposed: Record<string, object> | undefined,
): PortMapping[] {
  const out = [...publish];
  for (const key of Object.keys(exposed ?? {})) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(key.trim());
    if (!m) continue;
    const protocol = (m[3] ?? "tcp").toLowerCase();
    if (protocol !== "tcp" && protocol !== "udp") continue; // portmap: tcp and udp only
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let p = lo; p <= hi && p <= 65535; p++) {
      if (p < 1 || out.some((o) => o.containerPort === p && o.protocol === protocol)) continue;
      out.push({ hostIP: "", hostPort: 0, containerPort: p, protocol });
    }
  }
  return out;
}

/** --add-host NAME:IP entries as /etc/hosts lines (refused with a hint when malformed). */
export function addHostLines(addHosts: readonly string[]): string[] {
  return addHosts.map((h) => {
    try {
      const e = parseAddHost(h);
      return `${e.ip}\t${e.names.join(" ")}`;
    } catch (err) {
      throw new PivotError((err as Error).message, { hint: "e.g. --add-host db:10.0.0.5" });
    }
  });
}

/**
 * --hostname, --network-alias, --dns, --dns-search and --dns-option, which end up in /etc/hosts,
 * /etc/hostname and resolv.conf: one word each (an address for --dns), so that none adds a line.
 */
export function checkNameOptions(o: ContainerOptions): void {
  try {
    if (o.hostname !== undefined) {
      checkWord(o.hostname, "--hostname");
      if (o.hostname.length > 64)
        throw new Error(`invalid --hostname ${o.hostname}: longer than 64 characters`);
    }
    for (const a of o.networkAliases ?? []) checkWord(a, "--network-alias");
    const dns = dnsOptionsOf(o);
    if (dns) checkResolvOptions(dns);
  } catch (err) {
    throw new PivotError((err as Error).message, {
      hint: "e.g. --hostname web, --network-alias db, --dns 10.0.0.2, --dns-search example.com, --dns-option ndots:2",
    });
  }
}

/** --dns, --dns-search, --dns-option as the network library's resolv.conf options. */
export function dnsOptionsOf(o: ContainerOptions): ResolvOptions | undefined {
  if (!o.dns?.length && !o.dnsSearch?.length && !o.dnsOptions?.length) return undefined;
  return {
    ...(o.dns?.length ? { nameservers: o.dns } : {}),
    ...(o.dnsSearch?.length ? { search: o.dnsSearch } : {}),
    ...(o.dnsOptions?.length ? { options: o.dnsOptions } : {}),
  };
}

/**
 * A container's resolv.conf: the host's (see `resolvConf`), or with --dns/--dns-search/
 * --dns-option, those replacing the host's nameservers, search domains and options. (On a
 * network, the network library rewrites it at start with the same options.)
 */
export function containerResolvConf(hostText: string, o: ContainerOptions): string {
  const host = o.network === "host";
  const dns = dnsOptionsOf(o);
  if (!dns) return resolvConf(hostText, host);
  if (host && !dns.nameservers) {
    // The host's network reaches the host's loopback resolvers: keep them.
    const ns = [...hostText.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!);
    return resolvConfContent(hostText, { ...dns, nameservers: ns });
  }
  return resolvConfContent(hostText, dns);
}
