// Docker's run options for the process and its kernel view: --ulimit, --device, --sysctl,
// --shm-size, --pid/--ipc/--uts host, --cpuset-cpus/--cpuset-mems, --oom-score-adj. Parsing the
// flags, and what each adds to the OCI config (applyProcessOptions, called by buildSpec).
import { lstatSync, readdirSync, readFileSync, type Stats, statSync } from "node:fs";
import { join } from "node:path";
import { devMounts } from "../oci/default-spec.ts";
import type { Device, DeviceCgroupRule, Mount, Spec } from "../oci/spec.ts";
import { sysctlProblem } from "../oci/sysctl.ts";
import { ContainerConfigError, parseSize } from "./config.ts";
import type { ContainerOptions, DeviceMapping, Ulimit } from "./types.ts";

// ---- --ulimit ----

/** Docker's --ulimit names and the rlimits they set. */
const ULIMITS: Record<string, string> = {
  core: "RLIMIT_CORE",
  cpu: "RLIMIT_CPU",
  data: "RLIMIT_DATA",
  fsize: "RLIMIT_FSIZE",
  locks: "RLIMIT_LOCKS",
  memlock: "RLIMIT_MEMLOCK",
  msgqueue: "RLIMIT_MSGQUEUE",
  nice: "RLIMIT_NICE",
  nofile: "RLIMIT_NOFILE",
  nproc: "RLIMIT_NPROC",
  rss: "RLIMIT_RSS",
  rtprio: "RLIMIT_RTPRIO",
  rttime: "RLIMIT_RTTIME",
  sigpending: "RLIMIT_SIGPENDING",
  stack: "RLIMIT_STACK",
};

/** RLIM_INFINITY as the config writes it (a uint64; JSON.parse reads it as 2^64). */
const UNLIMITED = 2 ** 64;

/** --ulimit NAME=SOFT[:HARD] (a single value sets both; -1 is unlimited). */
export function parseUlimitFlag(value: string): Ulimit {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(value.trim());
  const name = m?.[1];
  if (!m || name === undefined || !(name in ULIMITS)) {
    throw new ContainerConfigError(`invalid --ulimit "${value}"`, {
      hint: `use NAME=SOFT[:HARD] (-1 for unlimited), NAME one of ${Object.keys(ULIMITS).join(", ")}`,
    });
  }
  const soft = Number(m[2]);
  const hard = m[3] === undefined ? soft : Number(m[3]);
  const limited = (v: number) => (v === -1 ? Number.POSITIVE_INFINITY : v);
  if (soft < -1 || hard < -1 || limited(soft) > limited(hard)) {
    throw new ContainerConfigError(
      `invalid --ulimit "${value}": the soft limit must not be above the hard one`,
      { hint: "e.g. --ulimit nofile=1024:2048 (-1 for unlimited)" },
    );
  }
  return { name, soft, hard };
}

function rlimitValue(v: number): number {
  return v === -1 ? UNLIMITED : v;
}

// ---- --device ----

/** --device HOST[:CONTAINER][:PERMISSIONS] (permissions: some of r, w, m; default rwm). */
export function parseDeviceFlag(value: string): DeviceMapping {
  const parts = value.split(":");
  const isPermissions = (s: string | undefined) => s !== undefined && /^[rwm]{1,3}$/.test(s);
  let permissions = "rwm";
  if (parts.length > 1 && isPermissions(parts[parts.length - 1])) permissions = parts.pop()!;
  const [hostPath = "", containerPath = hostPath, ...rest] = parts;
  if (rest.length > 0 || !hostPath.startsWith("/") || !containerPath.startsWith("/")) {
    throw new ContainerConfigError(`invalid --device "${value}"`, {
      hint: "use HOST[:CONTAINER][:PERMISSIONS] with absolute paths, e.g. --device /dev/fuse or --device /dev/sdb:/dev/xvdc:r",
    });
  }
  return { hostPath, containerPath, permissions };
}

/** What the config needs of one device node on the host. */
export interface HostDevice {
  /** Its path on the host. */
  path: string;
  type: "c" | "b";
  major: number;
  minor: number;
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
}

/** Linux's encoding of a device number: major in bits 8-19 and 32-43, minor in 0-7 and 20-31. */
function deviceNumbers(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn)),
  };
}

function deviceOf(path: string, st: Stats): HostDevice | null {
  const type = st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : null;
  if (type === null) return null;
  return {
    path,
    type,
    ...deviceNumbers(st.rdev),
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
  };
}

/**
 * The device nodes a --device host path names: itself, or, for a directory, every device below
 * it (as Docker does: --device /dev/snd). Symlinks are followed for the path given, not inside
 * a directory.
 */
export function hostDevicesAt(path: string): HostDevice[] {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ContainerConfigError(`--device ${path}: ${(err as Error).message}`, {
      hint: "give the path of a device node on this host (ls -l /dev)",
    });
  }
  if (!st.isDirectory()) {
    const dev = deviceOf(path, st);
    if (!dev) {
      throw new ContainerConfigError(`--device ${path} is not a device node`, {
        hint: "give a character or block device (ls -l /dev), or bind a file with -v",
      });
    }
    return [dev];
  }
  const out: HostDevice[] = [];
  // As Docker's walk: what cannot be read, or is gone meanwhile, is passed over.
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(dir, name);
      let s: Stats;
      try {
        s = lstatSync(p);
      } catch {
        continue;
      }
      if (s.isDirectory()) walk(p);
      else {
        const dev = deviceOf(p, s);
        if (dev) out.push(dev);
      }
    }
  };
  walk(path);
  // Docker refuses it too: the container would run without the devices asked for.
  if (out.length === 0) {
    throw new ContainerConfigError(`--device ${path}: no device node in this directory`, {
      hint: "give a device node, or a directory holding some (e.g. --device /dev/snd)",
    });
  }
  return out;
}

/** The config's device nodes and cgroup rules for --device entries. */
export function deviceEntries(
  mappings: readonly DeviceMapping[],
  lookup: (hostPath: string) => HostDevice[] = hostDevicesAt,
): { devices: Device[]; rules: DeviceCgroupRule[] } {
  const devices: Device[] = [];
  const rules: DeviceCgroupRule[] = [];
  for (const m of mappings) {
    for (const d of lookup(m.hostPath)) {
      // A directory's devices keep their place under the container path.
      const path = m.containerPath + d.path.slice(m.hostPath.replace(/\/+$/, "").length);
      devices.push({
        type: d.type,
        path,
        major: d.major,
        minor: d.minor,
        fileMode: d.mode,
        uid: d.uid,
        gid: d.gid,
      });
      rules.push({
        allow: true,
        type: d.type,
        major: d.major,
        minor: d.minor,
        access: m.permissions,
      });
    }
  }
  return { devices, rules };
}

// ---- --sysctl ----

/** --sysctl NAME=VALUE. */
export function parseSysctlFlag(value: string): [string, string] {
  const eq = value.indexOf("=");
  const name = eq > 0 ? value.slice(0, eq).trim() : "";
  if (!/^[a-z0-9_]+(?:[./][A-Za-z0-9_-]+)+$/.test(name)) {
    throw new ContainerConfigError(`invalid --sysctl "${value}"`, {
      hint: "use NAME=VALUE, e.g. --sysctl net.ipv4.ip_forward=1",
    });
  }
  return [name.replaceAll("/", "."), value.slice(eq + 1)];
}

// ---- --cpuset-cpus, --cpuset-mems ----

/** The host's CPUs and memory nodes as cpuset lists ("0-3"), null where unknown. */
export interface HostCpusets {
  cpus: string | null;
  mems: string | null;
}

export function hostCpusets(): HostCpusets {
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8").trim() || null;
    } catch {
      return null;
    }
  };
  return {
    cpus: read("/sys/devices/system/cpu/online"),
    // Without NUMA support there is node 0.
    mems: read("/sys/devices/system/node/online") ?? "0",
  };
}

/** The numbers of a cpuset list ("0-2,5" → 0, 1, 2, 5). */
function listMembers(list: string): number[] {
  const out: number[] = [];
  for (const part of list.split(",")) {
    const [from, to = from] = part.split("-").map(Number) as [number, number?];
    for (let n = from; n <= to!; n++) out.push(n);
  }
  return out;
}

// ---- namespaces ----

/** --ipc, --uts: "host" or "private" (the default). */
export function parseNamespaceMode(flagName: string, value: string): "host" | "private" {
  if (value === "host" || value === "private") return value;
  if (value === "") return "private";
  throw new ContainerConfigError(
    `--${flagName} ${value}: ${value.startsWith("container:") ? "joining another container's namespace is not supported yet" : "unknown mode"}`,
    { hint: `use --${flagName} host (the host's namespace) or leave it out (a new one)` },
  );
}

/** --pid: "host", "private" (the default) or "container:NAME". */
export function parsePidMode(value: string): NonNullable<ContainerOptions["pid"]> {
  if (value.startsWith("container:") && value.length > "container:".length) {
    return value as `container:${string}`;
  }
  return parseNamespaceMode("pid", value);
}

// ---- the config ----

/**
 * Adds to SPEC (buildSpec's, whose namespaces are already chosen) what these options ask for.
 * `lookup` finds --device nodes on the host (tests give their own).
 */
export function applyProcessOptions(
  spec: Spec,
  options: ContainerOptions,
  lookup?: (hostPath: string) => HostDevice[],
  host: () => HostCpusets = hostCpusets,
): void {
  const proc = spec.process!;
  const linux = spec.linux!;
  linux.resources ??= {};
  const resources = linux.resources;
  if (options.ulimits?.length) {
    // One limit given twice: the last one counts, as Docker's (a map by name). Both in the
    // config had the runtime lower the hard limit, then fail to raise it again.
    const byName = new Map(options.ulimits.map((u) => [u.name, u]));
    proc.rlimits = [...byName.values()].map((u) => ({
      type: ULIMITS[u.name]!,
      soft: rlimitValue(u.soft),
      hard: rlimitValue(u.hard),
    }));
  }
  if (options.oomScoreAdj !== undefined) {
    const adj = options.oomScoreAdj;
    if (!Number.isInteger(adj) || adj < -1000 || adj > 1000) {
      throw new ContainerConfigError(`invalid --oom-score-adj ${adj}`, {
        hint: "give an integer from -1000 (never killed) to 1000 (killed first)",
      });
    }
    proc.oomScoreAdj = adj;
  }
  const shared = new Set((["pid", "ipc", "uts"] as const).filter((ns) => options[ns] === "host"));
  if (shared.size) {
    linux.namespaces = linux.namespaces!.filter((n) => !shared.has(n.type as "pid"));
    // The host's hostname: a UTS namespace of its own is what a hostname needs.
    if (shared.has("uts")) delete spec.hostname;
    // The host's IPC namespace: its POSIX shared memory too, as Docker binds it.
    if (shared.has("ipc")) {
      spec.mounts = spec.mounts!.map(
        (m): Mount =>
          m.destination === "/dev/shm"
            ? {
                destination: "/dev/shm",
                type: "bind",
                source: "/dev/shm",
                options: ["rbind", "rprivate"],
              }
            : m,
      );
    }
  }
  if (options.shmSize !== undefined) {
    if (shared.has("ipc")) {
      throw new ContainerConfigError("--shm-size does not go with --ipc host", {
        hint: "with --ipc host the container uses the host's /dev/shm",
      });
    }
    const bytes = parseSize(options.shmSize);
    if (!(bytes > 0)) {
      throw new ContainerConfigError(`invalid --shm-size ${options.shmSize}`, {
        hint: "give a size greater than 0, e.g. 256m",
      });
    }
    const shm = devMounts.shm();
    shm.options = [...shm.options!.filter((o) => !o.startsWith("size=")), `size=${bytes}`];
    spec.mounts = spec.mounts!.map((m) => (m.destination === "/dev/shm" ? shm : m));
  }
  const sysctls = Object.entries(options.sysctls ?? {});
  if (sysctls.length) {
    const namespaces = new Set(linux.namespaces!.filter((n) => !n.path).map((n) => n.type));
    // A network namespace joined by path is still the container's own (its network's).
    if (linux.namespaces!.some((n) => n.type === "network")) namespaces.add("network");
    for (const [key] of sysctls) {
      const problem = sysctlProblem(key, namespaces, "--hostname");
      if (problem) {
        throw new ContainerConfigError(`--sysctl ${key}: ${problem}`, {
          hint: "a container may set only its own namespaces' sysctls: net.* (not with --network host), kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* (not with --ipc host)",
        });
      }
    }
    linux.sysctl = Object.fromEntries(sysctls);
  }
  if (options.cpusetCpus !== undefined || options.cpusetMems !== undefined) {
    const list = /^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$/;
    for (const [name, v] of [
      ["--cpuset-cpus", options.cpusetCpus],
      ["--cpuset-mems", options.cpusetMems],
    ] as const) {
      if (v !== undefined && !list.test(v)) {
        throw new ContainerConfigError(`invalid ${name} "${v}"`, {
          hint: `a list of numbers and ranges, e.g. ${name} 0-1,3`,
        });
      }
    }
    // As Docker: refused here, not by the cgroup once the container starts (or, for update,
    // once its other limits are written already).
    const available = host();
    for (const [name, v, have, what] of [
      ["--cpuset-cpus", options.cpusetCpus, available.cpus, "CPU"],
      ["--cpuset-mems", options.cpusetMems, available.mems, "memory node"],
    ] as const) {
      if (v === undefined || have === null || !list.test(have)) continue;
      const known = new Set(listMembers(have));
      const missing = [...new Set(listMembers(v))].filter((n) => !known.has(n));
      if (missing.length > 0) {
        throw new ContainerConfigError(
          `${name} ${v}: ${what}${missing.length > 1 ? "s" : ""} ${missing.join(",")} ${missing.length > 1 ? "are" : "is"} not available`,
          { hint: `this host has ${what}s ${have}` },
        );
      }
    }
    resources.cpu = {
      ...resources.cpu,
      ...(options.cpusetCpus !== undefined ? { cpus: options.cpusetCpus } : {}),
      ...(options.cpusetMems !== undefined ? { mems: options.cpusetMems } : {}),
    };
  }
  if (options.devices?.length) {
    const { devices, rules } = deviceEntries(options.devices, lookup);
    linux.devices = [...(linux.devices ?? []), ...devices];
    resources.devices = [...(resources.devices ?? []), ...rules];
  }
}
