// Device access rules: the config's rules plus runc's defaults, reduced to a final state the way
// the v1 devices controller evaluates them, then written as a deny-all (or allow-all) and the
// exceptions. cgroup v2 has no devices controller: the same state becomes an eBPF program
// (devicefilter.ts) that the launcher attaches to the container's v2 directory.
import { ConfigError, PivotError } from "../errors.ts";
import type { Device, DeviceCgroupRule } from "../oci/spec.ts";
import type { Layout } from "./layout.ts";
import { type CgroupWrite, DEFAULT_ALLOWED_DEVICES } from "./resources.ts";

export interface DeviceRule {
  allow: boolean;
  type: "a" | "b" | "c";
  /** -1 for any. */
  major: number;
  /** -1 for any. */
  minor: number;
  /** Some of "rwm"; empty makes the rule a no-op (as in runc). */
  access: string;
  /** The config field, or undefined for a default rule. */
  field?: string;
}

export interface DeviceState {
  /** true: everything is allowed but the exceptions (a deny list); false: an allow list. */
  defaultAllow: boolean;
  /** "c 1:3" (with * for any) → access. Insertion order is kept. */
  exceptions: Map<string, string>;
}

const PERMS = "rwm";

function permsOf(s: string): string {
  return [...PERMS].filter((p) => s.includes(p)).join("");
}

function union(a: string, b: string): string {
  return permsOf(a + b);
}

function minus(a: string, b: string): string {
  return [...a].filter((p) => !b.includes(p)).join("");
}

function intersect(a: string, b: string): string {
  return [...a].filter((p) => b.includes(p)).join("");
}

function num(n: number): string {
  return n < 0 ? "*" : String(n);
}

export function ruleKey(type: string, major: number, minor: number): string {
  return `${type} ${num(major)}:${num(minor)}`;
}

function describe(r: DeviceRule): string {
  return r.type === "a" ? "all devices" : `${ruleKey(r.type, r.major, r.minor)} ${r.access}`;
}

/** The rules to apply: the config's, then runc's defaults (minus those a linux.devices entry of the same path replaces). */
export function deviceRules(
  rules: readonly DeviceCgroupRule[] | undefined,
  linuxDevices: readonly Device[] = [],
  base = "linux.resources.devices",
): DeviceRule[] {
  const out: DeviceRule[] = (rules ?? []).map((r, i) => ({
    allow: r.allow,
    type: (r.type ?? "a") as DeviceRule["type"],
    major: r.major ?? -1,
    minor: r.minor ?? -1,
    access: permsOf(r.access ?? ""),
    field: `${base}[${i}]`,
  }));
  const paths = new Set(linuxDevices.map((d) => d.path));
  for (const d of DEFAULT_ALLOWED_DEVICES) {
    if (d.path && paths.has(d.path)) continue;
    out.push({
      allow: d.allow,
      type: d.type as DeviceRule["type"],
      major: d.major ?? -1,
      minor: d.minor ?? -1,
      access: d.access ?? "",
    });
  }
  return out;
}

/**
 * Evaluates rules in order, starting (as runc does) from an allow list with nothing on it, so a
 * config without rules gets only the defaults. A rule of type "a" resets the state; a rule that agrees with the
 * default removes access from the exceptions. Removing access that a wildcard exception grants
 * would be silently ignored by the kernel, so it is an error here (as in runc).
 */
export function evaluateDeviceRules(
  rules: readonly DeviceRule[],
  start: DeviceState = { defaultAllow: false, exceptions: new Map() },
): DeviceState {
  const state: DeviceState = {
    defaultAllow: start.defaultAllow,
    exceptions: new Map(start.exceptions),
  };
  for (const r of rules) {
    if (r.access === "") continue;
    if (r.type === "a") {
      state.defaultAllow = r.allow;
      state.exceptions.clear();
      continue;
    }
    const key = ruleKey(r.type, r.major, r.minor);
    if (r.allow !== state.defaultAllow) {
      state.exceptions.set(key, union(state.exceptions.get(key) ?? "", r.access));
      continue;
    }
    for (const partial of [
      ruleKey(r.type, -1, r.minor),
      ruleKey(r.type, r.major, -1),
      ruleKey(r.type, -1, -1),
    ]) {
      if (partial === key) continue;
      const granted = state.exceptions.get(partial) ?? "";
      if (intersect(granted, r.access) !== "") {
        throw new ConfigError(
          r.field ?? "linux.resources.devices",
          `${r.allow ? "allowing" : "denying"} ${describe(r)} would punch a hole in the rule "${partial} ${granted}", which the devices controller cannot do`,
          "list the devices one by one instead of with a wildcard",
        );
      }
    }
    const left = minus(state.exceptions.get(key) ?? "", r.access);
    if (left === "") state.exceptions.delete(key);
    else state.exceptions.set(key, left);
  }
  return state;
}

/** The writes that put a fresh v1 devices cgroup into the state. */
export function v1DeviceWrites(state: DeviceState, dir: string): CgroupWrite[] {
  const field = "linux.resources.devices";
  const reset: CgroupWrite = state.defaultAllow
    ? {
        path: `${dir}/devices.allow`,
        value: "a",
        field,
        hint: "a cgroup cannot allow all devices when its parent does not",
      }
    : { path: `${dir}/devices.deny`, value: "a", field };
  const writes = [reset];
  const file = state.defaultAllow ? "devices.deny" : "devices.allow";
  for (const [key, access] of state.exceptions) {
    writes.push({ path: `${dir}/${file}`, value: `${key} ${access}`, field });
  }
  return writes;
}

/**
 * How a container's device rules are enforced: "v1", the v1 devices controller; "bpf", an eBPF
 * program attached to its cgroup v2 directory (where no v1 hierarchy has the devices
 * controller: a v2-only host); "none", neither exists. PIVOT_CGROUP_DEVICES=bpf (or v1) forces
 * one, e.g. to exercise the eBPF program on a hybrid host, where the kernel runs it next to the
 * v1 controller (which Pivot then leaves as created, so the program alone decides).
 */
export type DeviceMode = "v1" | "bpf" | "none";

export function deviceMode(layout: Layout, force?: string): DeviceMode {
  const v1 = layout.controllers.get("devices")?.version === 1;
  if (force === undefined || force === "") return v1 ? "v1" : layout.unified ? "bpf" : "none";
  if (force === "bpf") {
    if (!layout.unified)
      throw new PivotError("PIVOT_CGROUP_DEVICES=bpf needs a cgroup v2 hierarchy", {
        hint: "this host has cgroup v1 only; unset PIVOT_CGROUP_DEVICES",
      });
    return "bpf";
  }
  if (force === "v1") {
    if (!v1)
      throw new PivotError("PIVOT_CGROUP_DEVICES=v1 needs the v1 devices controller", {
        hint: "unset PIVOT_CGROUP_DEVICES to use the eBPF device program",
      });
    return "v1";
  }
  throw new PivotError(`PIVOT_CGROUP_DEVICES="${force}" is not a device controller`, {
    hint: "use bpf or v1, or unset it to choose by the host's hierarchies",
  });
}

/**
 * Without a devices controller (no v1 one, no v2 hierarchy) device rules are not enforced.
 * Allow rules cost nothing to honor and the default deny-all is documented as unenforced; a
 * config that denies specific devices would silently not be protected, so it is refused.
 */
export function checkUnenforcedDevices(rules: readonly DeviceRule[]): void {
  for (const r of rules) {
    if (r.allow || r.access === "" || r.type === "a" || r.field === undefined) continue;
    throw new ConfigError(
      r.field,
      `denying ${describe(r)} cannot be enforced: this host has neither the v1 devices controller nor a cgroup v2 hierarchy for an eBPF device program`,
      "remove the rule (devices the container has no node for stay out of reach unless it can mknod)",
    );
  }
}
