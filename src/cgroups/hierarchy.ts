// Finding the host's cgroup hierarchies (v1, v2 or hybrid) and the caller's own place in them.
import { existsSync, readFileSync } from "node:fs";
import { unescapeMountField } from "../runtime/mountinfo.ts";

export type CgroupMode = "v1" | "v2" | "hybrid";

export interface Hierarchy {
  /** "unified" for cgroup2, else the controller list of the v1 mount, e.g. "cpu,cpuacct" or "name=systemd". */
  name: string;
  version: 1 | 2;
  /** Where it is mounted on the host, e.g. /sys/fs/cgroup/memory. */
  mountPoint: string;
  /** Controllers this hierarchy manages (for v2, those enabled at its root). */
  controllers: string[];
}

export interface HostCgroups {
  mode: CgroupMode;
  hierarchies: Hierarchy[];
}

/** Parses /proc/self/mountinfo text into the cgroup hierarchies mounted on the host. */
export function parseCgroupMounts(
  mountinfo: string,
  readControllers: (dir: string) => string = readV2Controllers,
): HostCgroups {
  const hierarchies: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const line of mountinfo.split("\n")) {
    // Most lines are other filesystems: only "... - cgroup ..." and "... - cgroup2 ..." are split.
    const sep = line.indexOf(" - cgroup");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    const fstype = right[0];
    const mountPoint = unescapeMountField(left[4] ?? "");
    if (fstype === "cgroup2") {
      if (seen.has("unified")) continue;
      seen.add("unified");
      const controllers = readControllers(mountPoint).split(/\s+/).filter(Boolean);
      hierarchies.push({ name: "unified", version: 2, mountPoint, controllers });
    } else if (fstype === "cgroup") {
      const superOptions = (right[2] ?? "").split(",");
      const controllers = superOptions.filter(
        (o) =>
          o !== "rw" &&
          o !== "ro" &&
          !o.startsWith("release_agent") &&
          o !== "clone_children" &&
          o !== "xattr" &&
          o !== "noprefix" &&
          o !== "cpuset_v2_mode",
      );
      const name = controllers.join(",");
      if (seen.has(name)) continue;
      seen.add(name);
      hierarchies.push({
        name,
        version: 1,
        mountPoint,
        controllers: controllers.filter((c) => !c.startsWith("name=")),
      });
    }
  }
  const hasV1 = hierarchies.some((h) => h.version === 1);
  const hasV2 = hierarchies.some((h) => h.version === 2);
  return { mode: hasV1 && hasV2 ? "hybrid" : hasV2 ? "v2" : "v1", hierarchies };
}

function readV2Controllers(dir: string): string {
  try {
    return readFileSync(`${dir}/cgroup.controllers`, "utf8");
  } catch {
    return "";
  }
}

/** Parses /proc/PID/cgroup: hierarchy name ("unified" for the 0:: line) → path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    out.set(controllers === "" ? "unified" : controllers, path);
  }
  return out;
}

let cachedHost: HostCgroups | null = null;

export function hostCgroups(): HostCgroups {
  cachedHost ??= parseCgroupMounts(readFileSync("/proc/self/mountinfo", "utf8"));
  return cachedHost;
}

/**
 * Whether the host accounts swap per cgroup, so that a memory+swap limit can be applied: v1's
 * memory.memsw.limit_in_bytes in the memory hierarchy, or v2's memory.swap.max in this process's
 * own cgroup (the root cgroup has none). Docker's default swap limit depends on it.
 */
export function swapAccounted(host: HostCgroups = hostCgroups()): boolean {
  const memory = host.hierarchies.find((h) => h.controllers.includes("memory"));
  if (!memory) return false;
  if (memory.version === 1) return existsSync(`${memory.mountPoint}/memory.memsw.limit_in_bytes`);
  const own = parseProcCgroup(readFileSync("/proc/self/cgroup", "utf8")).get("unified") ?? "/";
  return own !== "/" && existsSync(`${memory.mountPoint}${own}/memory.swap.max`);
}
