// Validation of config.json: every problem is reported with the JSON path of the field.
import { ConfigError } from "../errors.ts";
import { RLIMIT_UNLIMITED_FROM } from "./rlimit.ts";
import { HOOK_KINDS, type Spec } from "./spec.ts";
import { sysctlProblem } from "./sysctl.ts";

type Json = unknown;

const NAMESPACE_TYPES = new Set([
  "pid",
  "network",
  "mount",
  "ipc",
  "uts",
  "user",
  "cgroup",
  "time",
]);

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

/** Small typed accessors that throw ConfigError naming the path. */
class Checker {
  object(v: Json, path: string): Record<string, Json> {
    if (!isObject(v)) throw new ConfigError(path, `must be an object, got ${describe(v)}`);
    return v;
  }
  string(v: Json, path: string): string {
    if (typeof v !== "string") throw new ConfigError(path, `must be a string, got ${describe(v)}`);
    return v;
  }
  optString(v: Json, path: string): void {
    if (v !== undefined) this.string(v, path);
  }
  integer(
    v: Json,
    path: string,
    min = Number.MIN_SAFE_INTEGER,
    max = Number.MAX_SAFE_INTEGER,
  ): number {
    if (typeof v !== "number" || !Number.isInteger(v)) {
      throw new ConfigError(path, `must be an integer, got ${describe(v)}`);
    }
    if (v < min || v > max)
      throw new ConfigError(path, `must be between ${min} and ${max}, got ${v}`);
    return v;
  }
  optInteger(v: Json, path: string, min?: number, max?: number): void {
    if (v !== undefined) this.integer(v, path, min, max);
  }
  boolean(v: Json, path: string): void {
    if (v !== undefined && typeof v !== "boolean") {
      throw new ConfigError(path, `must be a boolean, got ${describe(v)}`);
    }
  }
  array(v: Json, path: string): Json[] {
    if (!Array.isArray(v)) throw new ConfigError(path, `must be an array, got ${describe(v)}`);
    return v;
  }
  stringArray(v: Json, path: string): void {
    if (v === undefined) return;
    this.array(v, path).forEach((s, i) => {
      this.string(s, `${path}[${i}]`);
    });
  }
  absolutePath(v: Json, path: string): string {
    const s = this.string(v, path);
    if (!s.startsWith("/")) throw new ConfigError(path, `must be an absolute path, got "${s}"`);
    return s;
  }
}

const c = new Checker();

/** Parses config.json text; syntax errors name the line and column. */
export function parseConfig(text: string, file = "config.json"): Spec {
  let raw: Json;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ConfigError(file, `is not valid JSON (${detail})`, "fix the syntax error and retry");
  }
  return validateSpec(raw);
}

/** Checks the structure and values of a config; returns it typed. */
export function validateSpec(raw: Json): Spec {
  const spec = c.object(raw, "(config)");
  const version = c.string(spec.ociVersion, "ociVersion");
  if (!/^1\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version)) {
    throw new ConfigError(
      "ociVersion",
      `"${version}" is not supported`,
      "Pivot implements runtime-spec 1.x; set ociVersion to a 1.x version such as 1.2.0",
    );
  }
  if (spec.root === undefined) {
    throw new ConfigError(
      "root",
      "is missing",
      'add "root": {"path": "rootfs"} naming the root filesystem',
    );
  }
  const root = c.object(spec.root, "root");
  c.string(root.path, "root.path");
  if (root.path === "") throw new ConfigError("root.path", "must not be empty");
  c.boolean(root.readonly, "root.readonly");
  if (spec.process !== undefined) validateProcess(spec.process, "process");
  c.optString(spec.hostname, "hostname");
  c.optString(spec.domainname, "domainname");
  if (spec.mounts !== undefined) {
    c.array(spec.mounts, "mounts").forEach((m, i) => {
      validateMount(m, `mounts[${i}]`);
    });
  }
  if (spec.hooks !== undefined) validateHooks(spec.hooks);
  if (spec.annotations !== undefined) {
    const a = c.object(spec.annotations, "annotations");
    for (const [k, v] of Object.entries(a)) c.string(v, `annotations.${k}`);
  }
  if (spec.linux !== undefined) validateLinux(spec.linux);
  return spec as unknown as Spec;
}

export function validateProcess(raw: Json, path: string): void {
  const p = c.object(raw, path);
  c.boolean(p.terminal, `${path}.terminal`);
  if (p.consoleSize !== undefined) {
    const cs = c.object(p.consoleSize, `${path}.consoleSize`);
    c.integer(cs.height, `${path}.consoleSize.height`, 0, 65535);
    c.integer(cs.width, `${path}.consoleSize.width`, 0, 65535);
  }
  if (p.user === undefined) throw new ConfigError(`${path}.user`, "is missing");
  const user = c.object(p.user, `${path}.user`);
  c.integer(user.uid, `${path}.user.uid`, 0, 0xfffffffe);
  c.integer(user.gid, `${path}.user.gid`, 0, 0xfffffffe);
  c.optInteger(user.umask, `${path}.user.umask`, 0, 0o777);
  if (user.additionalGids !== undefined) {
    c.array(user.additionalGids, `${path}.user.additionalGids`).forEach((g, i) => {
      c.integer(g, `${path}.user.additionalGids[${i}]`, 0, 0xfffffffe);
    });
  }
  if (p.args === undefined) {
    throw new ConfigError(`${path}.args`, "is missing", 'name the program to run, e.g. ["sh"]');
  }
  c.stringArray(p.args, `${path}.args`);
  if ((p.args as string[]).length === 0) {
    throw new ConfigError(`${path}.args`, "must name a program to run", 'e.g. "args": ["sh"]');
  }
  c.stringArray(p.env, `${path}.env`);
  if (p.env !== undefined) {
    (p.env as string[]).forEach((e, i) => {
      if (!e.includes("="))
        throw new ConfigError(`${path}.env[${i}]`, `"${e}" is not of the form NAME=value`);
    });
  }
  if (p.cwd === undefined) throw new ConfigError(`${path}.cwd`, "is missing", 'e.g. "cwd": "/"');
  c.absolutePath(p.cwd, `${path}.cwd`);
  c.boolean(p.noNewPrivileges, `${path}.noNewPrivileges`);
  c.optInteger(p.oomScoreAdj, `${path}.oomScoreAdj`, -1000, 1000);
  if (p.capabilities !== undefined) {
    const caps = c.object(p.capabilities, `${path}.capabilities`);
    for (const set of ["bounding", "effective", "inheritable", "permitted", "ambient"]) {
      c.stringArray(caps[set], `${path}.capabilities.${set}`);
    }
  }
  if (p.rlimits !== undefined) {
    c.array(p.rlimits, `${path}.rlimits`).forEach((r, i) => {
      const rl = c.object(r, `${path}.rlimits[${i}]`);
      c.string(rl.type, `${path}.rlimits[${i}].type`);
      rlimitValue(rl.soft, `${path}.rlimits[${i}].soft`);
      rlimitValue(rl.hard, `${path}.rlimits[${i}].hard`);
    });
  }
  c.optString(p.apparmorProfile, `${path}.apparmorProfile`);
  c.optString(p.selinuxLabel, `${path}.selinuxLabel`);
}

/**
 * An rlimit value: a uint64 in the config. Docker and podman write RLIM_INFINITY as
 * 18446744073709551615, which JSON.parse rounds to 2^64: values from 2^63 up mean unlimited
 * (rlimitArg). Between 2^53 and 2^63 a number is not exact once parsed: refused.
 */
function rlimitValue(v: Json, path: string): void {
  if (typeof v === "number" && Number.isInteger(v) && v >= RLIMIT_UNLIMITED_FROM) return;
  if (typeof v === "number" && Number.isInteger(v) && v > Number.MAX_SAFE_INTEGER) {
    throw new ConfigError(
      path,
      `${v} is too large to be read exactly`,
      "use at most 9007199254740991, or 18446744073709551615 for unlimited",
    );
  }
  c.integer(v, path, 0);
}

function validateMount(raw: Json, path: string): void {
  const m = c.object(raw, path);
  c.absolutePath(m.destination, `${path}.destination`);
  c.optString(m.source, `${path}.source`);
  c.optString(m.type, `${path}.type`);
  c.stringArray(m.options, `${path}.options`);
  if (m.uidMappings !== undefined) validateIdMappings(m.uidMappings, `${path}.uidMappings`);
  if (m.gidMappings !== undefined) validateIdMappings(m.gidMappings, `${path}.gidMappings`);
}

function validateHooks(raw: Json): void {
  const hooks = c.object(raw, "hooks");
  for (const kind of HOOK_KINDS) {
    if (hooks[kind] === undefined) continue;
    c.array(hooks[kind], `hooks.${kind}`).forEach((h, i) => {
      const at = `hooks.${kind}[${i}]`;
      const hook = c.object(h, at);
      c.absolutePath(hook.path, `${at}.path`);
      c.stringArray(hook.args, `${at}.args`);
      c.stringArray(hook.env, `${at}.env`);
      c.optInteger(hook.timeout, `${at}.timeout`, 1);
    });
  }
}

function validateIdMappings(raw: Json, path: string): void {
  c.array(raw, path).forEach((m, i) => {
    const map = c.object(m, `${path}[${i}]`);
    c.integer(map.containerID, `${path}[${i}].containerID`, 0, 0xffffffff);
    c.integer(map.hostID, `${path}[${i}].hostID`, 0, 0xffffffff);
    c.integer(map.size, `${path}[${i}].size`, 1, 0xffffffff);
  });
}

function validateLinux(raw: Json): void {
  const linux = c.object(raw, "linux");
  if (linux.namespaces !== undefined) {
    const seen = new Set<string>();
    c.array(linux.namespaces, "linux.namespaces").forEach((n, i) => {
      const ns = c.object(n, `linux.namespaces[${i}]`);
      const type = c.string(ns.type, `linux.namespaces[${i}].type`);
      if (!NAMESPACE_TYPES.has(type)) {
        throw new ConfigError(
          `linux.namespaces[${i}].type`,
          `unknown namespace type "${type}"`,
          `use one of ${[...NAMESPACE_TYPES].join(", ")}`,
        );
      }
      if (seen.has(type))
        throw new ConfigError(`linux.namespaces[${i}]`, `namespace "${type}" is listed twice`);
      seen.add(type);
      if (ns.path !== undefined) c.absolutePath(ns.path, `linux.namespaces[${i}].path`);
    });
  }
  if (linux.uidMappings !== undefined) validateIdMappings(linux.uidMappings, "linux.uidMappings");
  if (linux.gidMappings !== undefined) validateIdMappings(linux.gidMappings, "linux.gidMappings");
  if (linux.devices !== undefined) {
    c.array(linux.devices, "linux.devices").forEach((d, i) => {
      const at = `linux.devices[${i}]`;
      const dev = c.object(d, at);
      const type = c.string(dev.type, `${at}.type`);
      if (!["c", "b", "u", "p"].includes(type)) {
        throw new ConfigError(`${at}.type`, `unknown device type "${type}"`, "use c, b, u or p");
      }
      c.absolutePath(dev.path, `${at}.path`);
      if (type !== "p") {
        c.integer(dev.major, `${at}.major`, 0);
        c.integer(dev.minor, `${at}.minor`, 0);
      }
      // podman sends the type bits too (S_IFCHR | 0644), as Go's os.FileMode does; runc accepts them.
      c.optInteger(dev.fileMode, `${at}.fileMode`, 0, 0o177777);
      c.optInteger(dev.uid, `${at}.uid`, 0);
      c.optInteger(dev.gid, `${at}.gid`, 0);
    });
  }
  c.optString(linux.cgroupsPath, "linux.cgroupsPath");
  if (linux.rootfsPropagation !== undefined) {
    const p = c.string(linux.rootfsPropagation, "linux.rootfsPropagation");
    if (
      ![
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
        "runbindable",
      ].includes(p)
    ) {
      throw new ConfigError("linux.rootfsPropagation", `unknown propagation "${p}"`);
    }
  }
  if (linux.sysctl !== undefined) {
    const s = c.object(linux.sysctl, "linux.sysctl");
    const namespaces = new Set(
      Array.isArray(linux.namespaces)
        ? linux.namespaces.map((n) => (n as { type: string }).type)
        : [],
    );
    for (const [k, v] of Object.entries(s)) {
      c.string(v, `linux.sysctl.${k}`);
      const problem = sysctlProblem(k, namespaces, "the hostname field");
      if (problem) {
        throw new ConfigError(
          `linux.sysctl.${k}`,
          problem,
          "only sysctls of the ipc (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*), network (net.*) or uts namespace can be set, and only when the container has that namespace",
        );
      }
    }
  }
  c.stringArray(linux.maskedPaths, "linux.maskedPaths");
  c.stringArray(linux.readonlyPaths, "linux.readonlyPaths");
  if (linux.timeOffsets !== undefined) {
    const t = c.object(linux.timeOffsets, "linux.timeOffsets");
    for (const [clock, v] of Object.entries(t)) {
      if (clock !== "monotonic" && clock !== "boottime") {
        throw new ConfigError(
          `linux.timeOffsets.${clock}`,
          "unknown clock",
          "use monotonic or boottime",
        );
      }
      const o = c.object(v, `linux.timeOffsets.${clock}`);
      c.optInteger(o.secs, `linux.timeOffsets.${clock}.secs`);
      c.optInteger(o.nanosecs, `linux.timeOffsets.${clock}.nanosecs`, 0, 999_999_999);
    }
  }
  if (linux.resources !== undefined) c.object(linux.resources, "linux.resources");
  if (linux.seccomp !== undefined) c.object(linux.seccomp, "linux.seccomp");
}
