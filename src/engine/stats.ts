// A running container's processes and resource usage: `pivot top` and `pivot stats`.
import { readFileSync } from "node:fs";
import { cgroupStats } from "../cgroups/limits.ts";
import type { Cgroup } from "../cgroups/manager.ts";
import { childProcess } from "../util/child-process.ts";
import { os } from "../util/lazy-require.ts";
import { emitContainerEvent } from "./container-events.ts";
import { cgroupOfRun, status } from "./container-runtime.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import type { StatsSample, TopResult } from "./types.ts";

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
  return os().cpus().length || 1;
}

/**
 * The cgroup of the container's run, which these commands read. A rootless container without
 * delegated cgroups has none: said, rather than an empty list or zeros that look like facts.
 */
function ownCgroup(ctx: EngineContext, id: string, what: string): Cgroup {
  const cg = cgroupOfRun(ctx, id);
  if (cg && Object.keys(cg.paths).length > 0) return cg;
  const name = ctx.containers.load(id).name;
  throw new EngineError(`cannot ${what}: container ${name} has no cgroup of its own`, {
    hint: `a rootless container gets one only where cgroups are delegated to its user (cgroup v2, e.g. systemd's Delegate=yes); \`pivot exec ${name} ps\` lists its processes from inside`,
  });
}

/**
 * The container's processes as `ps` shows them (`pivot top`): ps runs on the host with
 * `psArgs` (default -ef) and only rows of the container's processes are kept, as Docker does.
 */
export function top(ctx: EngineContext, ref: string, psArgs: string[] = ["-ef"]): TopResult {
  const id = ctx.containers.resolveId(ref);
  const st = status(ctx, id);
  if (st.status !== "running" && st.status !== "paused")
    throw new EngineError(`container ${ref} is not running`, {
      hint: `start it with \`pivot start ${ref}\``,
    });
  const pids = new Set(ownCgroup(ctx, id, "list its processes").pids());
  const r = childProcess().spawnSync("ps", psArgs, { encoding: "utf8" });
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
  emitContainerEvent(ctx, id, "top");
  return { titles, processes };
}

/** One reading of a running container's resource usage (`pivot stats`). */
export function stats(ctx: EngineContext, ref: string): StatsSample {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  const st = status(ctx, id);
  const sample: StatsSample = {
    id,
    name: r.name,
    read: Date.now(),
    cpuTotal: 0,
    systemCpu: hostCpuTime(),
    onlineCpus: onlineCpus(),
    memoryUsage: 0,
    memoryLimit: os().totalmem(),
    netRx: 0,
    netTx: 0,
    blockRead: 0,
    blockWrite: 0,
    pids: 0,
  };
  if (st.status !== "running" && st.status !== "paused") return sample;
  const cg = ownCgroup(ctx, id, "read its resource usage");
  const s = cgroupStats(cg);
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
