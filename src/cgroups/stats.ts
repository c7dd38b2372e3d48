// Usage statistics of a container's cgroup, in the shape `runc events` prints (types/events.go),
// read from v1 or v2 files, whichever hierarchy holds each controller.
import type { Layout } from "./layout.ts";
import { type FsView, realFs } from "./resources.ts";

export interface MemoryEntry {
  limit: number;
  usage?: number;
  max?: number;
  failcnt: number;
}

export interface BlkioEntry {
  major?: number;
  minor?: number;
  op?: string;
  value?: number;
}

export interface CgroupStats {
  cpu: {
    usage?: {
      total?: number;
      percpu?: number[];
      percpu_kernel?: number[];
      percpu_user?: number[];
      kernel: number;
      user: number;
    };
    throttling?: { periods?: number; throttledPeriods?: number; throttledTime?: number };
  };
  cpuset: {
    cpus?: number[];
    cpu_exclusive: number;
    mems?: number[];
    mem_hardwall: number;
    mem_exclusive: number;
    memory_migrate: number;
    memory_spread_page: number;
    memory_spread_slab: number;
    memory_pressure: number;
    sched_load_balance: number;
    sched_relax_domain_level: number;
  };
  memory: {
    cache?: number;
    usage?: MemoryEntry;
    swap?: MemoryEntry;
    kernel?: MemoryEntry;
    kernelTCP?: MemoryEntry;
    raw?: Record<string, number>;
  };
  pids: { current?: number; limit?: number };
  blkio: {
    ioServiceBytesRecursive?: BlkioEntry[];
    ioServicedRecursive?: BlkioEntry[];
  };
  hugetlb: Record<string, { usage?: number; max?: number; failcnt: number }>;
  intel_rdt: Record<string, never>;
  network_interfaces: null;
}

/** "unlimited" as v2 reports it, in runc's numbers (math.MaxUint64). */
const UNLIMITED = 2 ** 64 - 1;

function numberOf(text: string | undefined): number | undefined {
  const t = text?.trim();
  if (t === undefined || t === "") return undefined;
  if (t === "max") return UNLIMITED;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** "key value" lines → record of numbers. */
export function parseKeyValues(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? "").split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^-?\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

/** "0-3,5" → [0, 1, 2, 3, 5]. */
export function parseCpuList(text: string | undefined): number[] {
  const out: number[] = [];
  for (const part of (text ?? "").trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let i = lo; i <= hi; i++) out.push(i);
  }
  return out;
}

/** Drops zero numbers, empty arrays and empty objects, as Go's omitempty does, keeping `keep` keys. */
function compact<T extends object>(o: T, keep: string[] = []): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const empty =
      v === undefined ||
      v === 0 ||
      (Array.isArray(v) && v.length === 0) ||
      (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
    if (!empty || keep.includes(k)) out[k] = v;
  }
  return out as T;
}

function readNumbers(text: string | undefined): number[] {
  return (text ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
}

export function readStats(layout: Layout, fs: FsView = realFs): CgroupStats {
  const place = (name: string) => layout.controllers.get(name);
  const stats: CgroupStats = {
    cpu: {},
    cpuset: {
      cpu_exclusive: 0,
      mem_hardwall: 0,
      mem_exclusive: 0,
      memory_migrate: 0,
      memory_spread_page: 0,
      memory_spread_slab: 0,
      memory_pressure: 0,
      sched_load_balance: 0,
      sched_relax_domain_level: 0,
    },
    memory: {},
    pids: {},
    blkio: {},
    hugetlb: {},
    intel_rdt: {},
    network_interfaces: null,
  };

  // cpu usage: v1 cpuacct, else v2's cpu.stat (present even without the cpu controller).
  const acct = place("cpuacct");
  const v2dir = layout.unified?.dir;
  if (acct?.version === 1) {
    const d = acct.dir;
    let user = numberOf(fs.read(`${d}/cpuacct.usage_user`));
    let kernel = numberOf(fs.read(`${d}/cpuacct.usage_sys`));
    if (user === undefined || kernel === undefined) {
      // cpuacct.stat counts USER_HZ (100) ticks.
      const s = parseKeyValues(fs.read(`${d}/cpuacct.stat`));
      user = (s.user ?? 0) * 1e7;
      kernel = (s.system ?? 0) * 1e7;
    }
    const percpuUser: number[] = [];
    const percpuKernel: number[] = [];
    for (const line of (fs.read(`${d}/cpuacct.usage_all`) ?? "").split("\n").slice(1)) {
      const [, u, k] = line.trim().split(/\s+/);
      if (u === undefined || k === undefined) continue;
      percpuUser.push(Number(u));
      percpuKernel.push(Number(k));
    }
    stats.cpu.usage = compact(
      {
        total: numberOf(fs.read(`${d}/cpuacct.usage`)) ?? 0,
        percpu: readNumbers(fs.read(`${d}/cpuacct.usage_percpu`)),
        percpu_kernel: percpuKernel,
        percpu_user: percpuUser,
        kernel,
        user,
      },
      ["kernel", "user"],
    );
  } else if (v2dir) {
    const s = parseKeyValues(fs.read(`${v2dir}/cpu.stat`));
    stats.cpu.usage = compact(
      {
        total: (s.usage_usec ?? 0) * 1000,
        kernel: (s.system_usec ?? 0) * 1000,
        user: (s.user_usec ?? 0) * 1000,
      },
      ["kernel", "user"],
    );
  }
  const cpu = place("cpu");
  if (cpu) {
    const s = parseKeyValues(fs.read(`${cpu.dir}/cpu.stat`));
    const throttling = compact({
      periods: s.nr_periods ?? 0,
      throttledPeriods: s.nr_throttled ?? 0,
      throttledTime: cpu.version === 1 ? (s.throttled_time ?? 0) : (s.throttled_usec ?? 0) * 1000,
    });
    if (Object.keys(throttling).length) stats.cpu.throttling = throttling;
  }

  const cpuset = place("cpuset");
  if (cpuset) {
    const d = cpuset.dir;
    const cpus = fs.read(`${d}/cpuset.cpus`)?.trim() || fs.read(`${d}/cpuset.cpus.effective`);
    const mems = fs.read(`${d}/cpuset.mems`)?.trim() || fs.read(`${d}/cpuset.mems.effective`);
    const flag = (file: string) => numberOf(fs.read(`${d}/${file}`)) ?? 0;
    stats.cpuset = compact(
      {
        ...stats.cpuset,
        cpus: parseCpuList(cpus),
        mems: parseCpuList(mems),
        ...(cpuset.version === 1
          ? {
              cpu_exclusive: flag("cpuset.cpu_exclusive"),
              mem_hardwall: flag("cpuset.mem_hardwall"),
              mem_exclusive: flag("cpuset.mem_exclusive"),
              memory_migrate: flag("cpuset.memory_migrate"),
              memory_spread_page: flag("cpuset.memory_spread_page"),
              memory_spread_slab: flag("cpuset.memory_spread_slab"),
              memory_pressure: flag("cpuset.memory_pressure"),
              sched_load_balance: flag("cpuset.sched_load_balance"),
              sched_relax_domain_level: flag("cpuset.sched_relax_domain_level"),
            }
          : {}),
      },
      Object.keys(stats.cpuset),
    );
  }

  const mem = place("memory");
  if (mem?.version === 1) {
    const d = mem.dir;
    const entry = (prefix: string): MemoryEntry | undefined => {
      const usage = numberOf(fs.read(`${d}/${prefix}.usage_in_bytes`));
      if (usage === undefined) return undefined;
      return compact(
        {
          limit: numberOf(fs.read(`${d}/${prefix}.limit_in_bytes`)) ?? 0,
          usage,
          max: numberOf(fs.read(`${d}/${prefix}.max_usage_in_bytes`)) ?? 0,
          failcnt: numberOf(fs.read(`${d}/${prefix}.failcnt`)) ?? 0,
        },
        ["limit", "failcnt"],
      );
    };
    const raw = parseKeyValues(fs.read(`${d}/memory.stat`));
    stats.memory = compact({
      cache: raw.cache ?? 0,
      usage: entry("memory"),
      swap: entry("memory.memsw"),
      kernel: entry("memory.kmem"),
      kernelTCP: entry("memory.kmem.tcp"),
      raw,
    });
  } else if (mem?.version === 2) {
    const d = mem.dir;
    const events = parseKeyValues(fs.read(`${d}/memory.events`));
    const usage = numberOf(fs.read(`${d}/memory.current`)) ?? 0;
    const limit = numberOf(fs.read(`${d}/memory.max`)) ?? UNLIMITED;
    const swapUsage = numberOf(fs.read(`${d}/memory.swap.current`));
    const swapLimit = numberOf(fs.read(`${d}/memory.swap.max`));
    const raw = parseKeyValues(fs.read(`${d}/memory.stat`));
    stats.memory = compact({
      cache: raw.file ?? 0,
      usage: compact(
        {
          limit,
          usage,
          max: numberOf(fs.read(`${d}/memory.peak`)) ?? 0,
          failcnt: events.max ?? 0,
        },
        ["limit", "failcnt"],
      ),
      // As runc does for v1 compatibility: swap counts memory+swap.
      swap:
        swapUsage === undefined
          ? undefined
          : compact(
              {
                limit:
                  swapLimit === undefined || swapLimit === UNLIMITED || limit === UNLIMITED
                    ? UNLIMITED
                    : swapLimit + limit,
                usage: swapUsage + usage,
                failcnt: 0,
              },
              ["limit", "failcnt"],
            ),
      raw,
    });
  }

  const pids = place("pids");
  if (pids) {
    const limit = numberOf(fs.read(`${pids.dir}/pids.max`));
    stats.pids = compact({
      current: numberOf(fs.read(`${pids.dir}/pids.current`)) ?? 0,
      limit: limit === UNLIMITED ? 0 : (limit ?? 0),
    });
  }

  const blkio = place("blkio");
  const io = place("io");
  if (blkio?.version === 1) {
    const d = blkio.dir;
    const pick = (name: string) =>
      [`blkio.bfq.${name}`, `blkio.${name}`, `blkio.throttle.${name}`]
        .map((f) => fs.read(`${d}/${f}`))
        .find((t) => t !== undefined && t.trim() !== "" && t.trim() !== "Total 0");
    const entries = (text: string | undefined): BlkioEntry[] => {
      const out: BlkioEntry[] = [];
      for (const line of (text ?? "").split("\n")) {
        const [dev, op, value] = line.trim().split(/\s+/);
        const m = /^(\d+):(\d+)$/.exec(dev ?? "");
        if (!m || op === undefined || value === undefined) continue;
        out.push(compact({ major: Number(m[1]), minor: Number(m[2]), op, value: Number(value) }));
      }
      return out;
    };
    stats.blkio = compact({
      ioServiceBytesRecursive: entries(pick("io_service_bytes_recursive")),
      ioServicedRecursive: entries(pick("io_serviced_recursive")),
    });
  } else if (io?.version === 2) {
    const bytes: BlkioEntry[] = [];
    const ops: BlkioEntry[] = [];
    for (const line of (fs.read(`${io.dir}/io.stat`) ?? "").split("\n")) {
      const [dev, ...kvs] = line.trim().split(/\s+/);
      const m = /^(\d+):(\d+)$/.exec(dev ?? "");
      if (!m) continue;
      const v = Object.fromEntries(kvs.map((kv) => kv.split("=") as [string, string]));
      const at = { major: Number(m[1]), minor: Number(m[2]) };
      bytes.push(compact({ ...at, op: "Read", value: Number(v.rbytes ?? 0) }));
      bytes.push(compact({ ...at, op: "Write", value: Number(v.wbytes ?? 0) }));
      ops.push(compact({ ...at, op: "Read", value: Number(v.rios ?? 0) }));
      ops.push(compact({ ...at, op: "Write", value: Number(v.wios ?? 0) }));
    }
    stats.blkio = compact({ ioServiceBytesRecursive: bytes, ioServicedRecursive: ops });
  }

  const huge = place("hugetlb");
  if (huge) {
    const d = huge.dir;
    const v1 = huge.version === 1;
    for (const name of fs.list(d)) {
      const m = /^hugetlb\.(\d+[KMG]B)\.(usage_in_bytes|current)$/.exec(name);
      if (!m) continue;
      const size = m[1]!;
      const failcnt = v1
        ? (numberOf(fs.read(`${d}/hugetlb.${size}.failcnt`)) ?? 0)
        : (parseKeyValues(fs.read(`${d}/hugetlb.${size}.events`)).max ?? 0);
      stats.hugetlb[size] = compact(
        {
          usage: numberOf(fs.read(`${d}/${name}`)) ?? 0,
          max: v1 ? (numberOf(fs.read(`${d}/hugetlb.${size}.max_usage_in_bytes`)) ?? 0) : 0,
          failcnt,
        },
        ["failcnt"],
      );
    }
  }
  return stats;
}

/** How many processes the OOM killer has killed in the cgroup (v1 memory.oom_control, v2 memory.events). */
export function readOomKills(layout: Layout, fs: FsView = realFs): number | undefined {
  const mem = layout.controllers.get("memory");
  if (!mem) return undefined;
  const file = mem.version === 1 ? "memory.oom_control" : "memory.events";
  const text = fs.read(`${mem.dir}/${file}`);
  if (text === undefined) return undefined;
  return parseKeyValues(text).oom_kill ?? 0;
}
