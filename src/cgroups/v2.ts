// The cgroup v2 writer: linux.resources → writes into the container's unified directory.
// cpuset, pids, hugetlb and rdma share their formats with v1 (see v1.ts).
import { ConfigError } from "../errors.ts";
import type { CgroupResources, CgroupWrite } from "./resources.ts";
import { int, THROTTLES } from "./resources.ts";
import type { WriterContext } from "./v1.ts";

const F = "linux.resources";

/** cpu.shares (2..262144, default 1024) → cpu.weight (1..10000, default 100), as runc converts. */
export function sharesToWeight(shares: number): number {
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  const exponent = (l * l + 125 * l) / 612 - 7 / 34;
  return Math.ceil(10 ** exponent);
}

/** blkio weight (10..1000) → io.weight (1..10000). */
export function blkioToIoWeight(weight: number): number {
  return 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * v1's memory.swap counts memory+swap; v2's memory.swap.max counts swap alone.
 * Returns the memory.swap.max value: -1 for max, 0 for "leave alone", else bytes.
 */
export function swapToV2(swap: number, limit: number): number {
  const field = `${F}.memory.swap`;
  if (limit === -1 && swap === 0) return -1;
  if (swap === -1 || swap === 0) return swap;
  if (limit === -1) return swap;
  if (limit === 0) throw new ConfigError(field, "cannot be set without memory.limit on cgroup v2");
  if (swap < limit)
    throw new ConfigError(field, `${swap} is below memory.limit ${limit}; it counts memory+swap`);
  return swap - limit;
}

function max(n: number): string {
  return n < 0 ? "max" : int(n);
}

export function v2Memory(r: CgroupResources, dir: string, ctx: WriterContext): CgroupWrite[] {
  const m = r.memory ?? {};
  const out: CgroupWrite[] = [];
  const limit = m.limit ?? 0;
  const swapValue = m.swap ?? 0;
  if (m.disableOOMKiller)
    throw new ConfigError(
      `${F}.memory.disableOOMKiller`,
      "cannot be applied: cgroup v2 has no way to turn the OOM killer off",
      "leave it out, or set memory.oom.group through linux.resources.unified",
    );
  if (m.swappiness !== undefined && m.swappiness !== -1)
    throw new ConfigError(
      `${F}.memory.swappiness`,
      "cannot be applied: cgroup v2 has no per-cgroup swappiness",
    );
  if (m.kernel !== undefined || m.kernelTCP !== undefined)
    ctx.warn("linux.resources.memory.kernel and kernelTCP are obsolete and ignored");
  if (ctx.update && m.checkBeforeUpdate && limit > 0) {
    const usage = ctx.fs.read(`${dir}/memory.current`)?.trim();
    if (usage && /^\d+$/.test(usage) && BigInt(usage) >= BigInt(limit))
      throw new ConfigError(
        `${F}.memory.limit`,
        `${limit} is not above the container's current memory usage (${usage}); checkBeforeUpdate refuses it`,
      );
  }
  const swap = swapToV2(swapValue, limit);
  // memory and memory+swap equal: no swap at all.
  const swapText = swap !== 0 ? max(swap) : swapValue > 0 ? "0" : "";
  if (swapText !== "")
    out.push({
      path: `${dir}/memory.swap.max`,
      value: swapText,
      field: `${F}.memory.swap`,
      // Without swap accounting the file is missing; "max" and "0" are then what it is anyway.
      optional: swapText === "max" || swapText === "0",
      hint: "swap accounting is off on this host",
    });
  if (limit !== 0)
    out.push({
      path: `${dir}/memory.max`,
      value: max(limit),
      field: `${F}.memory.limit`,
    });
  if (m.reservation !== undefined && m.reservation !== 0)
    out.push({
      path: `${dir}/memory.low`,
      value: max(m.reservation),
      field: `${F}.memory.reservation`,
    });
  return out;
}

export function v2Cpu(r: CgroupResources, dir: string): CgroupWrite[] {
  const c = r.cpu ?? {};
  const out: CgroupWrite[] = [];
  const f = `${F}.cpu`;
  if (c.realtimePeriod || c.realtimeRuntime)
    throw new ConfigError(
      c.realtimeRuntime ? `${f}.realtimeRuntime` : `${f}.realtimePeriod`,
      "cannot be applied: cgroup v2 has no realtime CPU bandwidth control",
    );
  if (c.idle !== undefined)
    out.push({ path: `${dir}/cpu.idle`, value: int(c.idle), field: `${f}.idle` });
  if (c.shares)
    out.push({
      path: `${dir}/cpu.weight`,
      value: int(sharesToWeight(c.shares)),
      field: `${f}.shares`,
    });
  const quotaSet = (c.quota !== undefined && c.quota !== 0) || !!c.period;
  if (c.burst !== undefined)
    out.push({
      path: `${dir}/cpu.max.burst`,
      value: int(c.burst),
      field: `${f}.burst`,
      retryOnInvalid: quotaSet,
      hint: "the burst must not exceed the quota",
    });
  if (quotaSet) {
    const quota = c.quota !== undefined && c.quota > 0 ? int(c.quota) : "max";
    out.push({
      path: `${dir}/cpu.max`,
      value: `${quota} ${int(c.period || 100000)}`,
      field: c.quota ? `${f}.quota` : `${f}.period`,
      hint: "the quota must be at least 1000 µs and the period 1000..1000000 µs",
    });
  }
  return out;
}

export function v2Io(r: CgroupResources, dir: string, ctx: WriterContext): CgroupWrite[] {
  const b = r.blockIO ?? {};
  const out: CgroupWrite[] = [];
  const f = `${F}.blockIO`;
  const bfq = ctx.fs.exists(`${dir}/io.bfq.weight`);
  if (b.leafWeight)
    throw new ConfigError(`${f}.leafWeight`, "cannot be applied: cgroup v2 has no leaf weights");
  if (b.weight) {
    out.push(
      bfq
        ? { path: `${dir}/io.bfq.weight`, value: int(b.weight), field: `${f}.weight` }
        : { path: `${dir}/io.weight`, value: int(blkioToIoWeight(b.weight)), field: `${f}.weight` },
    );
  }
  (b.weightDevice ?? []).forEach((d, i) => {
    if (d.leafWeight)
      throw new ConfigError(
        `${f}.weightDevice[${i}].leafWeight`,
        "cannot be applied: cgroup v2 has no leaf weights",
      );
    if (!d.weight) return;
    const field = `${f}.weightDevice[${i}].weight`;
    out.push(
      bfq
        ? { path: `${dir}/io.bfq.weight`, value: `${d.major}:${d.minor} ${int(d.weight)}`, field }
        : {
            path: `${dir}/io.weight`,
            value: `${d.major}:${d.minor} ${int(blkioToIoWeight(d.weight))}`,
            field,
          },
    );
  });
  const keys: Record<(typeof THROTTLES)[number], string> = {
    throttleReadBpsDevice: "rbps",
    throttleWriteBpsDevice: "wbps",
    throttleReadIOPSDevice: "riops",
    throttleWriteIOPSDevice: "wiops",
  };
  for (const k of THROTTLES) {
    (b[k] ?? []).forEach((d, i) => {
      out.push({
        path: `${dir}/io.max`,
        value: `${d.major}:${d.minor} ${keys[k]}=${d.rate === 0 ? "max" : int(d.rate)}`,
        field: `${f}.${k}[${i}]`,
        hint: "the device must be a block device (not a partition) that exists on the host",
      });
    });
  }
  return out;
}

/** linux.resources.unified: file → value, written last so it overrides the translated values. */
export function v2Unified(r: CgroupResources, dir: string): CgroupWrite[] {
  return Object.entries(r.unified ?? {}).map(([key, value]) => ({
    path: `${dir}/${key}`,
    value,
    field: `${F}.unified["${key}"]`,
    hint: "the file must exist in the container's cgroup and accept the value",
  }));
}
