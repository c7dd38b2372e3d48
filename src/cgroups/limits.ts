// A container cgroup's limits (linux.resources), device rules and statistics. Apart from
// manager.ts so that the commands that only find, signal, freeze or remove a cgroup (state, kill,
// start, delete, which a shim runs for every container) do not load the resource code.
import type { Device, Resources } from "../oci/spec.ts";
import { applyPlan, applyPlanOrRestore, planResources } from "./apply.ts";
import { type DeviceFilter, deviceFilter } from "./devicefilter.ts";
import { type DeviceMode, deviceMode, deviceRules, evaluateDeviceRules } from "./devices.ts";
import type { Cgroup } from "./manager.ts";
import { type CgroupResources, checkResources, mergeResources } from "./resources.ts";
import { type CgroupStats, readOomKills, readStats } from "./stats.ts";

/**
 * How a container's device rules are enforced: by the layout, or as $PIVOT_CGROUP_DEVICES (bpf
 * or v1) forces (see deviceMode).
 */
export function cgroupDeviceMode(cgroup: Cgroup): DeviceMode {
  if (Object.keys(cgroup.paths).length === 0) return "none";
  return deviceMode(cgroup.layout(), process.env.PIVOT_CGROUP_DEVICES);
}

/**
 * Where device rules are enforced by an eBPF program: the program for linux.resources.devices
 * (and runc's defaults), compiled for the container's v2 directory; else null. Attached by the
 * launcher before any process joins the cgroup (Op.AttachDeviceFilter).
 */
export function cgroupDeviceFilter(
  cgroup: Cgroup,
  resources: unknown,
  linuxDevices: readonly Device[] = [],
): DeviceFilter | null {
  if (cgroupDeviceMode(cgroup) !== "bpf") return null;
  return filterFor(cgroup, checkResources(resources), linuxDevices);
}

function filterFor(
  cgroup: Cgroup,
  r: CgroupResources,
  linuxDevices: readonly Device[],
): DeviceFilter {
  const state = evaluateDeviceRules(deviceRules(r.devices, linuxDevices));
  return deviceFilter(state, cgroup.layout().unified!.dir);
}

/**
 * Applies linux.resources to a new (still empty) cgroup, device rules included: with none in the
 * config, the container gets runc's default device list only. With an eBPF device program the
 * rules are left to it (cgroupDeviceFilter).
 */
export function applyResources(
  cgroup: Cgroup,
  resources: unknown,
  options: { linuxDevices?: readonly Device[]; warn?: (message: string) => void } = {},
): void {
  const devices = cgroupDeviceMode(cgroup);
  applyPlan(planResources(checkResources(resources), cgroup.layout(), { ...options, devices }));
}

/**
 * `update`: merges the changes into the container's resources, writes the result and returns it
 * for the container's record. New device rules are appended where an eBPF program enforces them:
 * the caller attaches the returned program, which replaces the old one (with the v1 controller
 * they are ignored, with a warning).
 */
export function updateResources(
  cgroup: Cgroup,
  current: Resources | undefined,
  patch: unknown,
  warn: (message: string) => void = () => {},
  linuxDevices: readonly Device[] = [],
): { resources: Resources; deviceFilter: DeviceFilter | null } {
  const changes = checkResources(patch, "resources");
  const bpf = cgroupDeviceMode(cgroup) === "bpf";
  const merged = mergeResources(checkResources(current), changes, warn, bpf);
  // Compiled first: a bad rule fails the update before anything is written.
  const filter = bpf && changes.devices?.length ? filterFor(cgroup, merged, linuxDevices) : null;
  // All or nothing: a value the kernel refuses puts back what was written before it.
  applyPlanOrRestore(planResources(merged, cgroup.layout(), { update: true, warn }));
  return { resources: merged as Resources, deviceFilter: filter };
}

export function cgroupStats(cgroup: Cgroup): CgroupStats {
  return readStats(cgroup.layout());
}

/** The OOM killer's kill count in the cgroup, or undefined without a memory controller. */
export function cgroupOomKills(cgroup: Cgroup): number | undefined {
  return readOomKills(cgroup.layout());
}
