// pivot-runtime `update` and `events`: runc's flags and output formats.
import { readFileSync } from "node:fs";
import { cgroupOomKills, cgroupStats } from "../cgroups/limits.ts";
import { systemdRunning } from "../cgroups/manager.ts";
import type { CgroupResources } from "../cgroups/resources.ts";
import { NotSupportedError, PivotError } from "../errors.ts";
import type { Runtime } from "../runtime/runtime.ts";
import {
  boolFlag,
  type FlagSpec,
  flag,
  intFlag,
  type Parsed,
  parseArgs,
  UsageError,
} from "./args.ts";
import { writeErr, writeOut } from "./output.ts";

const UPDATE_FLAGS: FlagSpec[] = [
  { name: "resources", aliases: ["r"], value: true },
  { name: "blkio-weight", value: true },
  { name: "cpu-period", value: true },
  { name: "cpu-quota", value: true },
  { name: "cpu-burst", value: true },
  { name: "cpu-share", aliases: ["cpu-shares"], value: true },
  { name: "cpu-rt-period", value: true },
  { name: "cpu-rt-runtime", value: true },
  { name: "cpu-idle", value: true },
  { name: "cpuset-cpus", value: true },
  { name: "cpuset-mems", value: true },
  { name: "memory", value: true },
  { name: "memory-reservation", value: true },
  { name: "memory-swap", value: true },
  { name: "kernel-memory", value: true },
  { name: "kernel-memory-tcp", value: true },
  { name: "pids-limit", value: true },
  { name: "l3-cache-schema", value: true },
  { name: "mem-bw-schema", value: true },
];

/** --systemd-cgroup asks for the systemd cgroup driver, which Pivot does not have. */
export function checkSystemdCgroupFlag(enabled: boolean, command: string): void {
  if (!enabled || (command !== "create" && command !== "run")) return;
  throw new NotSupportedError(
    "--systemd-cgroup: the systemd cgroup driver (cgroupsPath slice:prefix:name) is not supported",
    {
      hint: `Pivot writes cgroupfs itself${systemdRunning() ? "" : ", and systemd is not running on this host"}; drop the flag and use a cgroupsPath such as /pivot/ID`,
    },
  );
}

function oneId(p: Parsed, command: string): string {
  const id = p.positionals[0];
  if (id === undefined || p.positionals.length > 1)
    throw new UsageError(`${command} needs exactly one container id`, {
      hint: `usage: pivot-runtime ${command} [flags] ID`,
    });
  return id;
}

/**
 * A memory size as runc takes it (docker/go-units RAMInBytes): bytes, or a number with a
 * binary suffix k, m, g, t or p (optionally followed by "b" or "ib"); "-1" is unlimited.
 */
export function parseMemorySize(value: string, name = "memory"): number {
  if (value === "-1") return -1;
  const m = /^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(value);
  if (!m) throw new UsageError(`--${name} "${value}" is not a size such as 512m, 1g or 1048576`);
  const power = m[2] ? "kmgtp".indexOf(m[2].toLowerCase()) + 1 : 0;
  return Math.trunc(Number(m[1]) * 1024 ** power);
}

/** A Go duration, as runc's --interval takes it: "5s", "500ms", "1m30s". */
export function parseDuration(value: string, name = "interval"): number {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    re.lastIndex = at;
    const m = re.exec(value);
    if (!m) break;
    total += Number(m[1]) * units[m[2]!]!;
    at = re.lastIndex;
  }
  if (value === "" || at !== value.length)
    throw new UsageError(`--${name} "${value}" is not a duration such as 5s or 500ms`);
  return total;
}

function uintFlag(p: Parsed, name: string): number | undefined {
  const v = intFlag(p, name);
  if (v !== undefined && v < 0) throw new UsageError(`--${name} must not be negative`);
  return v;
}

/** The resources `update` changes: from --resources FILE (or -), else from the flags. */
export function updatePatch(p: Parsed): CgroupResources {
  for (const name of ["l3-cache-schema", "mem-bw-schema"])
    if (flag(p, name) !== undefined)
      throw new NotSupportedError(`--${name}: Intel RDT is not supported by this runtime`);
  const file = flag(p, "resources");
  if (file !== undefined) {
    let text: string;
    try {
      text = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
    } catch (err) {
      throw new PivotError(
        `cannot read --resources ${file} (${(err as NodeJS.ErrnoException).code})`,
      );
    }
    try {
      return JSON.parse(text) as CgroupResources;
    } catch (err) {
      throw new PivotError(`--resources ${file} is not valid JSON (${(err as Error).message})`);
    }
  }
  const r: CgroupResources = {};
  const memory: NonNullable<CgroupResources["memory"]> = {};
  const cpu: NonNullable<CgroupResources["cpu"]> = {};
  const mem = (name: string) => {
    const v = flag(p, name);
    return v === undefined ? undefined : parseMemorySize(v, name);
  };
  const set = <T extends object, K extends keyof T>(o: T, k: K, v: T[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set(memory, "limit", mem("memory"));
  set(memory, "reservation", mem("memory-reservation"));
  set(memory, "swap", mem("memory-swap"));
  set(memory, "kernel", mem("kernel-memory"));
  set(memory, "kernelTCP", mem("kernel-memory-tcp"));
  set(cpu, "shares", uintFlag(p, "cpu-share"));
  set(cpu, "quota", intFlag(p, "cpu-quota"));
  set(cpu, "period", uintFlag(p, "cpu-period"));
  set(cpu, "burst", uintFlag(p, "cpu-burst"));
  set(cpu, "realtimePeriod", uintFlag(p, "cpu-rt-period"));
  set(cpu, "realtimeRuntime", intFlag(p, "cpu-rt-runtime"));
  set(cpu, "idle", intFlag(p, "cpu-idle"));
  set(cpu, "cpus", flag(p, "cpuset-cpus") || undefined);
  set(cpu, "mems", flag(p, "cpuset-mems") || undefined);
  if (Object.keys(memory).length) r.memory = memory;
  if (Object.keys(cpu).length) r.cpu = cpu;
  const pids = intFlag(p, "pids-limit");
  if (pids !== undefined) r.pids = { limit: pids };
  const weight = uintFlag(p, "blkio-weight");
  if (weight) r.blockIO = { weight };
  return r;
}

export async function updateCommand(args: string[], runtime: Runtime): Promise<number> {
  const p = parseArgs(args, UPDATE_FLAGS);
  const id = oneId(p, "update");
  await runtime.update(id, updatePatch(p));
  return 0;
}

function emit(event: { type: string; id: string; data?: unknown }): void {
  writeOut(`${JSON.stringify(event)}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `events`: with --stats, one "stats" event; else a stats event every --interval (default 5s)
 * and an "oom" event whenever the OOM killer kills in the container, until it stops.
 * OOM kills are polled (memory.oom_control's oom_kill on v1, memory.events on v2) every 100 ms:
 * v1's eventfd notification is out of Node's reach.
 */
export async function eventsCommand(args: string[], runtime: Runtime): Promise<number> {
  const p = parseArgs(args, [{ name: "interval", value: true }, { name: "stats" }]);
  const id = oneId(p, "events");
  const interval = parseDuration(flag(p, "interval") ?? "5s");
  if (interval <= 0) throw new UsageError("--interval must be greater than 0");
  if (runtime.state(id).status === "stopped")
    throw new PivotError(`container "${id}" is not running`);
  const cgroup = runtime.cgroupOf(id);
  if (boolFlag(p, "stats")) {
    emit({ type: "stats", id, data: cgroupStats(cgroup) });
    return 0;
  }
  let kills = cgroupOomKills(cgroup) ?? 0;
  let due = Date.now() + interval;
  for (;;) {
    await sleep(Math.min(100, interval));
    let status: string;
    try {
      status = runtime.state(id).status;
    } catch {
      return 0; // deleted
    }
    const now = cgroupOomKills(cgroup);
    if (now !== undefined && now > kills) emit({ type: "oom", id });
    if (now !== undefined) kills = now;
    if (status === "stopped") return 0;
    if (Date.now() >= due) {
      due += interval * Math.max(1, Math.ceil((Date.now() - due) / interval));
      try {
        emit({ type: "stats", id, data: cgroupStats(cgroup) });
      } catch (err) {
        writeErr(`pivot-runtime: events: ${(err as Error).message}\n`);
      }
    }
  }
}
