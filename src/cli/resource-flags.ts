// The flags `run`/`create` and `update` share: a container's limits and its restart policy,
// parsed once for both (update changes what run set).
import { parseRestartPolicy } from "../engine/restart-state.ts";
import type { UpdateOptions } from "../engine/update.ts";
import { type FlagSpec, flag, intFlag, type Parsed } from "./args.ts";

export const RESOURCE_FLAGS: FlagSpec[] = [
  { name: "memory", aliases: ["m"], value: true },
  { name: "memory-swap", value: true },
  { name: "cpus", value: true },
  { name: "cpu-shares", aliases: ["c"], value: true },
  { name: "cpuset-cpus", value: true },
  { name: "cpuset-mems", value: true },
  { name: "pids-limit", value: true },
  { name: "restart", value: true },
];

/** The limits and restart policy the flags give (only those given). */
export function resourceOptions(p: Parsed): UpdateOptions {
  const o: UpdateOptions = {};
  for (const [key, name] of [
    ["memory", "memory"],
    ["memorySwap", "memory-swap"],
    ["cpus", "cpus"],
    ["cpusetCpus", "cpuset-cpus"],
    ["cpusetMems", "cpuset-mems"],
  ] as const) {
    const v = flag(p, name);
    if (v !== undefined) o[key] = v;
  }
  const cpuShares = intFlag(p, "cpu-shares");
  if (cpuShares !== undefined) o.cpuShares = cpuShares;
  const pids = intFlag(p, "pids-limit");
  if (pids !== undefined) o.pidsLimit = pids;
  const restart = flag(p, "restart");
  if (restart !== undefined) o.restart = parseRestartPolicy(restart);
  return o;
}
