// The one resource model: linux.resources of the runtime-spec, checked, merged for `update`,
// and the vocabulary shared by the v1 and v2 writers (a list of file writes).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import type { DeviceCgroupRule, Resources } from "../oci/spec.ts";

export interface WeightDevice {
  major: number;
  minor: number;
  weight?: number;
  leafWeight?: number;
}

export interface ThrottleDevice {
  major: number;
  minor: number;
  rate: number;
}

export interface BlockIO {
  weight?: number;
  leafWeight?: number;
  weightDevice?: WeightDevice[];
  throttleReadBpsDevice?: ThrottleDevice[];
  throttleWriteBpsDevice?: ThrottleDevice[];
  throttleReadIOPSDevice?: ThrottleDevice[];
  throttleWriteIOPSDevice?: ThrottleDevice[];
}

/** linux.resources with blockIO spelled out. */
export interface CgroupResources extends Omit<Resources, "blockIO" | "pids"> {
  blockIO?: BlockIO;
  pids?: { limit?: number };
}

/** One write into a cgroup file: the whole of what applying resources does. */
export interface CgroupWrite {
  /** Absolute path of the cgroup file. */
  path: string;
  value: string;
  /** The config field the value comes from, named in errors, e.g. "linux.resources.memory.limit". */
  field: string;
  /** A missing file is not an error (knobs only some kernels have). */
  optional?: boolean;
  /** On EINVAL, retry once after the other writes (inter-dependent knobs: period and quota). */
  retryOnInvalid?: boolean;
  /** Read the file back and fail if the kernel clamped the value (cpu.shares). */
  verify?: boolean;
  /** Said with the error when the write fails. */
  hint?: string;
}

/** What the writers may look at: the real file system, or a fake tree in tests. */
export interface FsView {
  exists(path: string): boolean;
  /** The file's text, or undefined when it cannot be read. */
  read(path: string): string | undefined;
  /** Names in a directory ([] when it cannot be read). */
  list(dir: string): string[];
}

export const realFs: FsView = {
  exists: (path) => existsSync(path),
  read(path) {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  },
  list(dir) {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  },
};

/** Formats an integer for a cgroup file without exponent notation (large values). */
export function int(n: number): string {
  return BigInt(Math.trunc(n)).toString();
}

/**
 * The devices runc allows every container, appended after the config's rules. Like runc since
 * 2020 (commit 60e21ec2), not the host's /dev/console (5:1): a container's console is a pty.
 */
export const DEFAULT_ALLOWED_DEVICES: readonly (DeviceCgroupRule & { path?: string })[] = [
  { allow: true, type: "c", major: null, minor: null, access: "m" },
  { allow: true, type: "b", major: null, minor: null, access: "m" },
  { allow: true, type: "c", major: 1, minor: 3, access: "rwm", path: "/dev/null" },
  { allow: true, type: "c", major: 1, minor: 8, access: "rwm", path: "/dev/random" },
  { allow: true, type: "c", major: 1, minor: 7, access: "rwm", path: "/dev/full" },
  { allow: true, type: "c", major: 5, minor: 0, access: "rwm", path: "/dev/tty" },
  { allow: true, type: "c", major: 1, minor: 5, access: "rwm", path: "/dev/zero" },
  { allow: true, type: "c", major: 1, minor: 9, access: "rwm", path: "/dev/urandom" },
  { allow: true, type: "c", major: 136, minor: null, access: "rwm" }, // /dev/pts/*
  { allow: true, type: "c", major: 5, minor: 2, access: "rwm" }, // /dev/ptmx
  { allow: true, type: "c", major: 10, minor: 200, access: "rwm" }, // /dev/net/tun
];

// ---- checking ------------------------------------------------------------------------------

const BASE = "linux.resources";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class Checker {
  obj(v: unknown, path: string): Record<string, unknown> | undefined {
    if (v === undefined) return undefined;
    if (!isObject(v)) throw new ConfigError(path, "must be an object");
    return v;
  }
  arr(v: unknown, path: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw new ConfigError(path, "must be an array");
    return v;
  }
  int(v: unknown, path: string, min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY) {
    if (v === undefined) return;
    if (typeof v !== "number" || !Number.isInteger(v))
      throw new ConfigError(path, `must be a whole number, got ${JSON.stringify(v)}`);
    if (v < min || v > max) throw new ConfigError(path, `${v} is out of range (${min}..${max})`);
  }
  str(v: unknown, path: string) {
    if (v !== undefined && typeof v !== "string")
      throw new ConfigError(path, `must be a string, got ${JSON.stringify(v)}`);
  }
  bool(v: unknown, path: string) {
    if (v !== undefined && typeof v !== "boolean")
      throw new ConfigError(path, `must be true or false, got ${JSON.stringify(v)}`);
  }
}

/** Checks the shape and ranges of linux.resources, naming the offending field. */
export function checkResources(r: unknown, base = BASE): CgroupResources {
  const c = new Checker();
  if (r === undefined || r === null) return {};
  const res = c.obj(r, base)!;
  const mem = c.obj(res.memory, `${base}.memory`);
  if (mem) {
    for (const k of ["limit", "reservation", "swap", "kernel", "kernelTCP"])
      c.int(mem[k], `${base}.memory.${k}`, -1);
    c.int(mem.swappiness, `${base}.memory.swappiness`, -1);
    for (const k of ["disableOOMKiller", "useHierarchy", "checkBeforeUpdate"])
      c.bool(mem[k], `${base}.memory.${k}`);
  }
  const cpu = c.obj(res.cpu, `${base}.cpu`);
  if (cpu) {
    c.int(cpu.shares, `${base}.cpu.shares`, 0);
    c.int(cpu.quota, `${base}.cpu.quota`, -1);
    c.int(cpu.burst, `${base}.cpu.burst`, 0);
    c.int(cpu.period, `${base}.cpu.period`, 0);
    c.int(cpu.realtimeRuntime, `${base}.cpu.realtimeRuntime`, -1);
    c.int(cpu.realtimePeriod, `${base}.cpu.realtimePeriod`, 0);
    c.int(cpu.idle, `${base}.cpu.idle`, 0, 1);
    c.str(cpu.cpus, `${base}.cpu.cpus`);
    c.str(cpu.mems, `${base}.cpu.mems`);
  }
  const pids = c.obj(res.pids, `${base}.pids`);
  if (pids) c.int(pids.limit, `${base}.pids.limit`);
  const bio = c.obj(res.blockIO, `${base}.blockIO`);
  if (bio) {
    c.int(bio.weight, `${base}.blockIO.weight`, 0, 1000);
    c.int(bio.leafWeight, `${base}.blockIO.leafWeight`, 0, 1000);
    c.arr(bio.weightDevice, `${base}.blockIO.weightDevice`).forEach((d, i) => {
      const p = `${base}.blockIO.weightDevice[${i}]`;
      const o = c.obj(d, p) ?? {};
      c.int(o.major, `${p}.major`, 0);
      c.int(o.minor, `${p}.minor`, 0);
      if (o.major === undefined || o.minor === undefined)
        throw new ConfigError(p, "needs major and minor");
      c.int(o.weight, `${p}.weight`, 0, 1000);
      c.int(o.leafWeight, `${p}.leafWeight`, 0, 1000);
    });
    for (const k of THROTTLES) {
      c.arr(bio[k], `${base}.blockIO.${k}`).forEach((d, i) => {
        const p = `${base}.blockIO.${k}[${i}]`;
        const o = c.obj(d, p) ?? {};
        for (const f of ["major", "minor", "rate"]) {
          if (o[f] === undefined) throw new ConfigError(p, `needs ${f}`);
          c.int(o[f], `${p}.${f}`, 0);
        }
      });
    }
  }
  c.arr(res.hugepageLimits, `${base}.hugepageLimits`).forEach((h, i) => {
    const p = `${base}.hugepageLimits[${i}]`;
    const o = c.obj(h, p) ?? {};
    c.str(o.pageSize, `${p}.pageSize`);
    if (typeof o.pageSize !== "string" || !/^\d+[KMG]B$/.test(o.pageSize))
      throw new ConfigError(`${p}.pageSize`, `must be like "2MB" or "1GB", got ${o.pageSize}`);
    c.int(o.limit, `${p}.limit`, 0);
    if (o.limit === undefined) throw new ConfigError(`${p}.limit`, "is missing");
  });
  c.arr(res.devices, `${base}.devices`).forEach((d, i) => {
    const p = `${base}.devices[${i}]`;
    const o = c.obj(d, p) ?? {};
    if (typeof o.allow !== "boolean") throw new ConfigError(`${p}.allow`, "must be true or false");
    if (o.type !== undefined && !["a", "b", "c"].includes(o.type as string))
      throw new ConfigError(`${p}.type`, `must be "a", "b" or "c", got ${JSON.stringify(o.type)}`);
    if (o.major !== null) c.int(o.major, `${p}.major`, -1);
    if (o.minor !== null) c.int(o.minor, `${p}.minor`, -1);
    c.str(o.access, `${p}.access`);
    if (typeof o.access === "string" && !/^[rwm]*$/.test(o.access))
      throw new ConfigError(`${p}.access`, `must combine r, w and m, got "${o.access}"`);
  });
  const net = c.obj(res.network, `${base}.network`);
  if (net) {
    c.int(net.classID, `${base}.network.classID`, 0, 0xffffffff);
    c.arr(net.priorities, `${base}.network.priorities`).forEach((e, i) => {
      const p = `${base}.network.priorities[${i}]`;
      const o = c.obj(e, p) ?? {};
      c.str(o.name, `${p}.name`);
      c.int(o.priority, `${p}.priority`, 0);
    });
  }
  const rdma = c.obj(res.rdma, `${base}.rdma`);
  if (rdma) {
    for (const [dev, v] of Object.entries(rdma)) {
      const p = `${base}.rdma.${dev}`;
      const o = c.obj(v, p) ?? {};
      c.int(o.hcaHandles, `${p}.hcaHandles`, 0);
      c.int(o.hcaObjects, `${p}.hcaObjects`, 0);
    }
  }
  const unified = c.obj(res.unified, `${base}.unified`);
  if (unified) {
    for (const [k, v] of Object.entries(unified)) {
      const p = `${base}.unified["${k}"]`;
      c.str(v, p);
      if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/i.test(k) || k.includes(".."))
        throw new ConfigError(p, "is not a cgroup file name such as memory.high");
    }
  }
  return res as CgroupResources;
}

export const THROTTLES = [
  "throttleReadBpsDevice",
  "throttleWriteBpsDevice",
  "throttleReadIOPSDevice",
  "throttleWriteIOPSDevice",
] as const;

// ---- merging, for `update` -----------------------------------------------------------------

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function upsert<T extends { major: number; minor: number }>(
  list: T[] | undefined,
  items: T[] | undefined,
  combine: (old: T, next: T) => T,
): T[] | undefined {
  if (!items?.length) return list;
  const out = [...(list ?? [])];
  for (const it of items) {
    const i = out.findLastIndex((d) => d.major === it.major && d.minor === it.minor);
    if (i >= 0) out[i] = combine(out[i]!, it);
    else out.push(it);
  }
  return out;
}

/**
 * `update`: the container's resources with the given changes applied. Fields the patch leaves
 * out keep their values; per-device entries are replaced by major:minor; unified keys and hugepage
 * limits are merged by name. Device rules are appended to the container's (the result is
 * evaluated from the start, as at create) where an eBPF program enforces them (`devices`);
 * with the v1 devices controller they cannot change on a running container and are kept.
 */
export function mergeResources(
  current: CgroupResources,
  patch: CgroupResources,
  warn: (m: string) => void = () => {},
  devices = false,
): CgroupResources {
  const out: CgroupResources = structuredClone(current);
  if (patch.memory) {
    const { kernel, kernelTCP, ...rest } = patch.memory;
    if (kernel !== undefined || kernelTCP !== undefined)
      warn("kernel memory limits are obsolete and ignored");
    out.memory = { ...out.memory, ...defined(rest) };
    // Unlimited memory without a swap value means unlimited swap too (runc's rule).
    if (rest.limit === -1 && rest.swap === undefined) delete out.memory.swap;
  }
  if (patch.cpu) out.cpu = { ...out.cpu, ...defined(patch.cpu) };
  if (patch.pids?.limit !== undefined) out.pids = { limit: patch.pids.limit };
  if (patch.blockIO) {
    const b = patch.blockIO;
    const o: BlockIO = { ...out.blockIO };
    if (b.weight !== undefined) o.weight = b.weight;
    if (b.leafWeight !== undefined) o.leafWeight = b.leafWeight;
    const wd = upsert(o.weightDevice, b.weightDevice, (old, next) => ({
      ...old,
      ...defined(next),
    }));
    if (wd) o.weightDevice = wd;
    for (const k of THROTTLES) {
      const list = upsert(o[k], b[k], (_old, next) => next);
      if (list) o[k] = list;
    }
    out.blockIO = o;
  }
  if (patch.hugepageLimits?.length) {
    const list = [...(out.hugepageLimits ?? [])];
    for (const h of patch.hugepageLimits) {
      const i = list.findIndex((x) => x.pageSize === h.pageSize);
      if (i >= 0) list[i] = h;
      else list.push(h);
    }
    out.hugepageLimits = list;
  }
  if (patch.network) out.network = { ...out.network, ...defined(patch.network) };
  if (patch.rdma) out.rdma = { ...out.rdma, ...patch.rdma };
  if (patch.unified) out.unified = { ...out.unified, ...patch.unified };
  if (patch.devices?.length && devices) out.devices = [...(out.devices ?? []), ...patch.devices];
  else if (patch.devices?.length)
    warn("device rules cannot be updated on a running container; ignored");
  return out;
}
