// The cgroup v1 writer: linux.resources → writes into the per-controller directories.
import { ConfigError } from "../errors.ts";
import type { CgroupResources, CgroupWrite, FsView } from "./resources.ts";
import { int, THROTTLES } from "./resources.ts";

export interface WriterContext {
  fs: FsView;
  /** Changing a running container (`update`), not setting up a new one. */
  update: boolean;
  warn: (message: string) => void;
}

const F = "linux.resources";

function readBig(fs: FsView, path: string): bigint | undefined {
  const text = fs.read(path)?.trim();
  return text && /^\d+$/.test(text) ? BigInt(text) : undefined;
}

export function v1Memory(r: CgroupResources, dir: string, ctx: WriterContext): CgroupWrite[] {
  const m = r.memory ?? {};
  const out: CgroupWrite[] = [];
  const limit = m.limit ?? 0;
  let swap = m.swap ?? 0;
  const memsw = `${dir}/memory.memsw.limit_in_bytes`;
  const hasMemsw = ctx.fs.exists(memsw);
  // Unlimited memory without a swap value: unlimited memory+swap too.
  if (limit === -1 && swap === 0 && hasMemsw) swap = -1;
  if (swap !== 0 && !hasMemsw)
    throw new ConfigError(
      `${F}.memory.swap`,
      "cannot be applied: swap accounting is off on this host (no memory.memsw.limit_in_bytes)",
      "boot the kernel with swapaccount=1, or leave memory.swap out",
    );
  if (ctx.update && m.checkBeforeUpdate && limit > 0) {
    const usage = readBig(ctx.fs, `${dir}/memory.usage_in_bytes`);
    if (usage !== undefined && usage >= BigInt(limit))
      throw new ConfigError(
        `${F}.memory.limit`,
        `${limit} is not above the container's current memory usage (${usage}); checkBeforeUpdate refuses it`,
      );
  }
  const limitWrite: CgroupWrite = {
    path: `${dir}/memory.limit_in_bytes`,
    value: int(limit),
    field: `${F}.memory.limit`,
    hint: "the limit must be above the current usage, and not above memory.swap (memory+swap)",
  };
  const swapWrite: CgroupWrite = {
    path: memsw,
    value: int(swap),
    field: `${F}.memory.swap`,
    hint: "memory.swap counts memory+swap: it must be at least memory.limit",
  };
  if (limit !== 0 && swap !== 0) {
    // Order the two so that memory ≤ memory+swap holds after each write.
    const current = readBig(ctx.fs, limitWrite.path) ?? 0n;
    if (swap === -1 || current < BigInt(swap)) out.push(swapWrite, limitWrite);
    else out.push(limitWrite, swapWrite);
  } else {
    if (limit !== 0) out.push(limitWrite);
    if (swap !== 0) out.push(swapWrite);
  }
  if (m.reservation !== undefined && m.reservation !== 0)
    out.push({
      path: `${dir}/memory.soft_limit_in_bytes`,
      value: int(m.reservation),
      field: `${F}.memory.reservation`,
    });
  // Kernel memory limits: deprecated, but v1 kernels still take them (crun writes them too).
  // Where the files are gone (kmem accounting compiled out), say so instead of failing.
  for (const [value, file, name] of [
    [m.kernel, "memory.kmem.limit_in_bytes", "kernel"],
    [m.kernelTCP, "memory.kmem.tcp.limit_in_bytes", "kernelTCP"],
  ] as const) {
    if (value === undefined || value === 0) continue;
    if (ctx.fs.exists(`${dir}/${file}`))
      out.push({ path: `${dir}/${file}`, value: int(value), field: `${F}.memory.${name}` });
    else ctx.warn(`linux.resources.memory.${name} is ignored: this kernel has no ${file}`);
  }
  if (m.disableOOMKiller !== undefined)
    out.push({
      path: `${dir}/memory.oom_control`,
      value: m.disableOOMKiller ? "1" : "0",
      field: `${F}.memory.disableOOMKiller`,
    });
  if (m.swappiness !== undefined && m.swappiness !== -1) {
    if (m.swappiness > 100)
      throw new ConfigError(`${F}.memory.swappiness`, `${m.swappiness} is out of range (0..100)`);
    out.push({
      path: `${dir}/memory.swappiness`,
      value: int(m.swappiness),
      field: `${F}.memory.swappiness`,
    });
  }
  if (m.useHierarchy !== undefined && !ctx.update)
    out.push({
      path: `${dir}/memory.use_hierarchy`,
      value: m.useHierarchy ? "1" : "0",
      field: `${F}.memory.useHierarchy`,
      hint: "recent kernels only have hierarchical accounting",
    });
  return out;
}

export function v1Cpu(r: CgroupResources, dir: string): CgroupWrite[] {
  const c = r.cpu ?? {};
  const out: CgroupWrite[] = [];
  const f = `${F}.cpu`;
  if (c.shares)
    out.push({
      path: `${dir}/cpu.shares`,
      value: int(c.shares),
      field: `${f}.shares`,
      verify: true,
    });
  const quotaSet = c.quota !== undefined && c.quota !== 0;
  if (c.period)
    out.push({
      path: `${dir}/cpu.cfs_period_us`,
      value: int(c.period),
      field: `${f}.period`,
      retryOnInvalid: quotaSet,
      hint: "the period must be 1000..1000000 µs, and fit the parent's quota",
    });
  if (c.burst !== undefined)
    out.push({
      path: `${dir}/cpu.cfs_burst_us`,
      value: int(c.burst),
      field: `${f}.burst`,
      retryOnInvalid: quotaSet,
      hint: "the burst must not exceed the quota",
    });
  if (quotaSet)
    out.push({
      path: `${dir}/cpu.cfs_quota_us`,
      value: int(c.quota!),
      field: `${f}.quota`,
      hint: "the quota must be at least 1000 µs, and fit the parent's quota",
    });
  if (c.idle !== undefined)
    out.push({ path: `${dir}/cpu.idle`, value: int(c.idle), field: `${f}.idle` });
  if (c.realtimePeriod)
    out.push({
      path: `${dir}/cpu.rt_period_us`,
      value: int(c.realtimePeriod),
      field: `${f}.realtimePeriod`,
      retryOnInvalid: !!c.realtimeRuntime,
    });
  if (c.realtimeRuntime)
    out.push({
      path: `${dir}/cpu.rt_runtime_us`,
      value: int(c.realtimeRuntime),
      field: `${f}.realtimeRuntime`,
      hint: "the runtime must fit in the parent's realtime budget",
    });
  return out;
}

/** cpuset: the same files on v1 and v2. */
export function cpusetWrites(r: CgroupResources, dir: string): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const hint = "the CPUs and memory nodes must exist and be allowed in the parent cgroup";
  if (r.cpu?.cpus)
    out.push({ path: `${dir}/cpuset.cpus`, value: r.cpu.cpus, field: `${F}.cpu.cpus`, hint });
  if (r.cpu?.mems)
    out.push({ path: `${dir}/cpuset.mems`, value: r.cpu.mems, field: `${F}.cpu.mems`, hint });
  return out;
}

/** pids: the same file on v1 and v2. A limit of 0 leaves the value alone; below 0 is unlimited. */
export function pidsWrites(r: CgroupResources, dir: string): CgroupWrite[] {
  const limit = r.pids?.limit;
  if (limit === undefined || limit === 0) return [];
  return [
    { path: `${dir}/pids.max`, value: limit > 0 ? int(limit) : "max", field: `${F}.pids.limit` },
  ];
}

export function v1Blkio(r: CgroupResources, dir: string, ctx: WriterContext): CgroupWrite[] {
  const b = r.blockIO ?? {};
  const out: CgroupWrite[] = [];
  const f = `${F}.blockIO`;
  // CFQ's blkio.weight is gone from recent kernels; BFQ has its own files.
  const bfq = !ctx.fs.exists(`${dir}/blkio.weight`) && ctx.fs.exists(`${dir}/blkio.bfq.weight`);
  const weightFile = bfq ? "blkio.bfq.weight" : "blkio.weight";
  const weightDeviceFile = bfq ? "blkio.bfq.weight_device" : "blkio.weight_device";
  const hint = "the kernel needs the CFQ or BFQ I/O scheduler for weights";
  if (b.weight)
    out.push({ path: `${dir}/${weightFile}`, value: int(b.weight), field: `${f}.weight`, hint });
  if (b.leafWeight)
    out.push({
      path: `${dir}/blkio.leaf_weight`,
      value: int(b.leafWeight),
      field: `${f}.leafWeight`,
      hint: "leaf weights went away with the CFQ scheduler",
    });
  (b.weightDevice ?? []).forEach((d, i) => {
    if (d.weight)
      out.push({
        path: `${dir}/${weightDeviceFile}`,
        value: `${d.major}:${d.minor} ${d.weight}`,
        field: `${f}.weightDevice[${i}].weight`,
        hint,
      });
    if (d.leafWeight)
      out.push({
        path: `${dir}/blkio.leaf_weight_device`,
        value: `${d.major}:${d.minor} ${d.leafWeight}`,
        field: `${f}.weightDevice[${i}].leafWeight`,
        hint: "leaf weights went away with the CFQ scheduler",
      });
  });
  const files: Record<(typeof THROTTLES)[number], string> = {
    throttleReadBpsDevice: "blkio.throttle.read_bps_device",
    throttleWriteBpsDevice: "blkio.throttle.write_bps_device",
    throttleReadIOPSDevice: "blkio.throttle.read_iops_device",
    throttleWriteIOPSDevice: "blkio.throttle.write_iops_device",
  };
  for (const k of THROTTLES) {
    (b[k] ?? []).forEach((d, i) => {
      out.push({
        path: `${dir}/${files[k]}`,
        value: `${d.major}:${d.minor} ${int(d.rate)}`,
        field: `${f}.${k}[${i}]`,
        hint: "the device must be a block device (not a partition) that exists on the host",
      });
    });
  }
  return out;
}

/** hugetlb: v1 names the limit limit_in_bytes, v2 max; both have a .rsvd variant on recent kernels. */
export function hugetlbWrites(r: CgroupResources, dir: string, suffix: string): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  (r.hugepageLimits ?? []).forEach((h, i) => {
    const field = `${F}.hugepageLimits[${i}]`;
    const hint = `this host has no ${h.pageSize} huge pages (see /sys/kernel/mm/hugepages)`;
    out.push({ path: `${dir}/hugetlb.${h.pageSize}.${suffix}`, value: int(h.limit), field, hint });
    out.push({
      path: `${dir}/hugetlb.${h.pageSize}.rsvd.${suffix}`,
      value: int(h.limit),
      field,
      optional: true,
    });
  });
  return out;
}

export function v1NetCls(r: CgroupResources, dir: string): CgroupWrite[] {
  const id = r.network?.classID;
  if (id === undefined) return [];
  return [{ path: `${dir}/net_cls.classid`, value: int(id), field: `${F}.network.classID` }];
}

export function v1NetPrio(r: CgroupResources, dir: string): CgroupWrite[] {
  return (r.network?.priorities ?? []).map((p, i) => ({
    path: `${dir}/net_prio.ifpriomap`,
    value: `${p.name} ${int(p.priority)}`,
    field: `${F}.network.priorities[${i}]`,
  }));
}

/** rdma: the same file on v1 and v2. */
export function rdmaWrites(r: CgroupResources, dir: string): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  for (const [dev, l] of Object.entries(r.rdma ?? {})) {
    const parts = [dev];
    if (l.hcaHandles !== undefined) parts.push(`hca_handle=${int(l.hcaHandles)}`);
    if (l.hcaObjects !== undefined) parts.push(`hca_object=${int(l.hcaObjects)}`);
    if (parts.length > 1)
      out.push({ path: `${dir}/rdma.max`, value: parts.join(" "), field: `${F}.rdma.${dev}` });
  }
  return out;
}
