// User namespace id maps and rootless mode: who writes the maps, with what, and where state goes.
//
// Root writes /proc/PID/uid_map and gid_map itself. An unprivileged caller may write only a map of
// its own uid (and gid, after "deny" in /proc/PID/setgroups); anything else goes through the
// setuid helpers newuidmap and newgidmap (Debian's uidmap package), which check /etc/subuid and
// /etc/subgid. The decisions are pure functions, unit-tested without root.
import {
  accessSync,
  existsSync,
  constants as fsConstants,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError, PivotError } from "../errors.ts";
import type { IdMapping } from "../oci/spec.ts";
import { childProcess } from "../util/child-process.ts";
import { os } from "../util/lazy-require.ts";

/** The user running the runtime. */
export interface Caller {
  uid: number;
  gid: number;
  /** The login name, for /etc/subuid and /etc/subgid (which may also name the uid). */
  name?: string;
}

export function currentCaller(): Caller {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  // The name is read from /etc/passwd only when asked: only the subordinate id files need it
  // (id maps through newuidmap), not every create.
  let name: string | undefined | null = null;
  return {
    uid,
    gid,
    get name() {
      if (name === null) name = userName(uid);
      return name;
    },
  };
}

/** The login name of a uid, from /etc/passwd (newuidmap reads the same), else getpwuid. */
export function userName(uid: number): string | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f.length >= 3 && f[2] === String(uid)) return f[0];
    }
  } catch {}
  try {
    const info = os().userInfo();
    // Bun answers from $USER, which may be unset or another user's.
    if (info.uid === uid && info.username && info.username !== "unknown") return info.username;
  } catch {}
  // A uid without a passwd entry: subordinate id files can still name it by number.
  return undefined;
}

export function isRootless(caller: Caller): boolean {
  return caller.uid !== 0;
}

/** How the runtime writes a new user namespace's id maps. */
export interface IdMapMethod {
  uid: "write" | "newuidmap";
  gid: "write" | "newgidmap";
  /**
   * "deny" goes to /proc/PID/setgroups before gid_map: the kernel requires it of an unprivileged
   * writer. The container's processes then cannot call setgroups, so no SetGroups step is planned.
   */
  denySetgroups: boolean;
}

function onlyOwnId(maps: readonly IdMapping[], id: number): boolean {
  return maps.length === 1 && maps[0]!.hostID === id && maps[0]!.size === 1;
}

/** As runc: root writes every map; others write a map of their own id, and use the helpers else. */
export function idMapMethod(
  uidMappings: readonly IdMapping[],
  gidMappings: readonly IdMapping[],
  caller: Caller,
): IdMapMethod {
  if (!isRootless(caller)) return { uid: "write", gid: "write", denySetgroups: false };
  const gidWrite = onlyOwnId(gidMappings, caller.gid);
  return {
    uid: onlyOwnId(uidMappings, caller.uid) ? "write" : "newuidmap",
    gid: gidWrite ? "write" : "newgidmap",
    denySetgroups: gidWrite,
  };
}

export interface SubordinateRange {
  start: number;
  count: number;
}

/** The ranges /etc/subuid or /etc/subgid grants a user (lines "name-or-id:start:count"). */
export function subordinateRanges(text: string, caller: Caller): SubordinateRange[] {
  const out: SubordinateRange[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(":");
    if (fields.length !== 3 || line.trim().startsWith("#")) continue;
    const [who, start, count] = fields as [string, string, string];
    if (who !== caller.name && who !== String(caller.uid)) continue;
    if (!/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
    out.push({ start: Number(start), count: Number(count) });
  }
  return out;
}

/**
 * The first mapping newuidmap/newgidmap would refuse: host ids outside the caller's own id and
 * its subordinate ranges. Returns its index, or -1 when all are allowed.
 */
export function firstUncoveredMapping(
  maps: readonly IdMapping[],
  ownId: number,
  ranges: readonly SubordinateRange[],
): number {
  return maps.findIndex((m) => {
    if (m.hostID === ownId && m.size === 1) return false;
    return !ranges.some((r) => m.hostID >= r.start && m.hostID + m.size <= r.start + r.count);
  });
}

/** Finds a program in PATH (and the usual system directories), as execvp would. */
export function findProgram(name: string, path = process.env.PATH ?? ""): string | null {
  for (const dir of [...path.split(":"), "/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {}
  }
  return null;
}

const SUBID_FILES = { newuidmap: "/etc/subuid", newgidmap: "/etc/subgid" } as const;

/**
 * Before anything is created: the helpers exist and the subordinate id files grant every range,
 * so a missing setup fails `create` with the file to edit rather than half-way through.
 */
export function checkIdMapHelpers(
  uidMappings: readonly IdMapping[],
  gidMappings: readonly IdMapping[],
  method: IdMapMethod,
  caller: Caller,
  readFile: (path: string) => string = (p) => readFileSync(p, "utf8"),
  find: (name: string) => string | null = findProgram,
): void {
  const checks = [
    { helper: method.uid, maps: uidMappings, own: caller.uid, field: "linux.uidMappings" },
    { helper: method.gid, maps: gidMappings, own: caller.gid, field: "linux.gidMappings" },
  ] as const;
  const who = caller.name ?? String(caller.uid);
  for (const { helper, maps, own, field } of checks) {
    if (helper === "write") continue;
    if (!find(helper)) {
      throw new PivotError(
        `${field} maps more than your own ${helper === "newuidmap" ? "uid" : "gid"} (${own}), which needs ${helper}, and it is not installed`,
        {
          hint: "install it (Debian and Ubuntu: apt-get install uidmap), or map only your own id with size 1",
        },
      );
    }
    const file = SUBID_FILES[helper];
    let text = "";
    try {
      text = readFile(file);
    } catch {}
    const ranges = subordinateRanges(text, caller);
    const bad = firstUncoveredMapping(maps, own, ranges);
    if (bad < 0) continue;
    const m = maps[bad]!;
    const granted = ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(", ");
    throw new ConfigError(
      `${field}[${bad}]`,
      `host ids ${m.hostID}-${m.hostID + m.size - 1} are not ${who}'s to map: ${file} ${granted ? `grants ${who} only ${granted}` : `has no range for ${who}`}`,
      `as root, add a line such as "${who}:100000:65536" to ${file} (see subuid(5)), or change ${field}`,
    );
  }
}

function mapText(maps: readonly IdMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join("");
}

function mapArgs(maps: readonly IdMapping[]): string[] {
  return maps.flatMap((m) => [String(m.containerID), String(m.hostID), String(m.size)]);
}

function runHelper(helper: string, pid: number, maps: readonly IdMapping[]): void {
  const path = findProgram(helper);
  if (!path)
    throw new PivotError(`${helper} is not installed`, {
      hint: "install it (Debian and Ubuntu: apt-get install uidmap)",
    });
  const r = childProcess().spawnSync(path, [String(pid), ...mapArgs(maps)], { encoding: "utf8" });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit status ${r.status}`).trim();
    const file = SUBID_FILES[helper as keyof typeof SUBID_FILES];
    throw new PivotError(`${helper} ${pid} ${mapArgs(maps).join(" ")} failed: ${why}`, {
      hint: `${file} must grant the host ids to this user, and ${path} must be setuid root`,
    });
  }
}

/** Writes the id maps of the process's new user namespace, as `idMapMethod` decided. */
export function writeIdMaps(
  pid: number,
  uidMappings: readonly IdMapping[],
  gidMappings: readonly IdMapping[],
  method: IdMapMethod,
): void {
  const step = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (err instanceof PivotError) throw err;
      throw new PivotError(
        `writing the user namespace ${what} of process ${pid} failed: ${(err as Error).message}`,
        {
          hint: "check linux.uidMappings and linux.gidMappings: host ids must exist and ranges must not overlap",
        },
      );
    }
  };
  if (method.uid === "write")
    step("uid map", () => writeFileSync(`/proc/${pid}/uid_map`, mapText(uidMappings)));
  else runHelper("newuidmap", pid, uidMappings);
  if (method.denySetgroups)
    step("setgroups policy", () => writeFileSync(`/proc/${pid}/setgroups`, "deny"));
  if (method.gid === "write")
    step("gid map", () => writeFileSync(`/proc/${pid}/gid_map`, mapText(gidMappings)));
  else runHelper("newgidmap", pid, gidMappings);
}

/**
 * Where container state lives by default: /run/pivot-runtime for root; for anyone else
 * $XDG_RUNTIME_DIR/pivot-runtime, as runc uses $XDG_RUNTIME_DIR/runc.
 */
export function defaultStateRoot(
  uid = process.geteuid?.() ?? 0,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (uid === 0) return "/run/pivot-runtime";
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg) return join(xdg, "pivot-runtime");
  return `/run/user/${uid}/pivot-runtime`;
}

/**
 * The cgroup directories an unprivileged caller cannot create: the nearest existing ancestor of
 * each must be writable (delegated to it, as systemd does for user@.service on cgroup v2).
 */
export function undelegatedCgroupDirs(paths: Record<string, string>): string[] {
  const out: string[] = [];
  for (const dir of Object.values(paths)) {
    let d = dir;
    while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
    try {
      accessSync(d, fsConstants.W_OK);
      if (d === dir) accessSync(join(d, "cgroup.procs"), fsConstants.W_OK);
    } catch {
      out.push(d);
    }
  }
  return out;
}

/** One line of /proc/PID/uid_map or gid_map: ids [inner, inner+count) are [outer, outer+count) outside. */
export interface IdMapLine {
  inner: number;
  outer: number;
  count: number;
}

export function parseIdMap(text: string): IdMapLine[] {
  const out: IdMapLine[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3 || !f.every((x) => /^\d+$/.test(x))) continue;
    out.push({ inner: Number(f[0]), outer: Number(f[1]), count: Number(f[2]) });
  }
  return out;
}

/** The initial user namespace's map: every id is itself. */
function isInitialMap(map: readonly IdMapLine[]): boolean {
  return (
    map.length === 1 && map[0]!.inner === 0 && map[0]!.outer === 0 && map[0]!.count === 4294967295
  );
}

let userNamespaceCache: boolean | undefined;

/**
 * Whether this process is in a user namespace other than the host's (its uid_map is not the
 * identity over every id): root there has no capability over the host's cgroups, trusted.*
 * xattrs or device numbers, whatever its uid says.
 */
export function inUserNamespace(): boolean {
  if (userNamespaceCache === undefined) {
    try {
      userNamespaceCache = !isInitialMap(parseIdMap(readFileSync("/proc/self/uid_map", "utf8")));
    } catch {
      userNamespaceCache = false;
    }
  }
  return userNamespaceCache;
}

/**
 * The xattr prefix of overlayfs's own attributes (opaque directories): `trusted.overlay.` for the
 * host's root; `user.overlay.` for anyone else, who cannot set trusted.* — in a user namespace
 * overlay is mounted with `userxattr` (Linux 5.11+) and reads them there.
 */
export function overlayXattrPrefix(): "trusted.overlay." | "user.overlay." {
  return (process.geteuid?.() ?? 0) !== 0 || inUserNamespace()
    ? "user.overlay."
    : "trusted.overlay.";
}
