// A container's cgroup: one directory per hierarchy, created, joined, frozen and removed together.
// Its limits, device rules and statistics are in limits.ts, which only create, update and stats load.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, normalize } from "node:path";
import { NotSupportedError, PivotError } from "../errors.ts";
import type { CgroupJoin } from "../runtime/plan.ts";
import { kernelAtLeast } from "../util/kernel.ts";
import { type Hierarchy, type HostCgroups, hostCgroups, parseProcCgroup } from "./hierarchy.ts";
import { type Layout, layoutOf } from "./layout.ts";

/** Whether systemd manages this host (what sd_booted checks). */
export function systemdRunning(): boolean {
  return existsSync("/run/systemd/system");
}

export interface CgroupPaths {
  /** Hierarchy name → absolute directory of the container's cgroup in it. */
  [hierarchy: string]: string;
}

/**
 * Where a container's cgroup goes in each hierarchy. A relative cgroupsPath (and the default)
 * nests under the calling process's own cgroup, so a runtime started in a limited cgroup
 * cannot escape it; an absolute one is taken from the hierarchy's root.
 */
export function resolveCgroupPaths(
  cgroupsPath: string,
  host: HostCgroups,
  own: Map<string, string>,
): CgroupPaths {
  if (cgroupsPath.includes(":") && !cgroupsPath.startsWith("/")) {
    throw new NotSupportedError(
      `linux.cgroupsPath "${cgroupsPath}" is in the systemd form (slice:prefix:name), which needs the systemd cgroup driver`,
      {
        hint: `Pivot writes cgroupfs itself and has no systemd driver${systemdRunning() ? "" : " (and systemd is not running on this host)"}; use a path such as /pivot/ID, or a relative one to nest under the caller's cgroup`,
      },
    );
  }
  const rel = normalize(`/${cgroupsPath}`);
  if (rel.split("/").includes(".."))
    throw new PivotError(`cgroupsPath "${cgroupsPath}" escapes the hierarchy`);
  const out: CgroupPaths = {};
  for (const h of host.hierarchies) {
    const base = cgroupsPath.startsWith("/") ? "/" : (own.get(h.name) ?? "/");
    out[h.name] = join(h.mountPoint, base, rel);
  }
  return out;
}

function write(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new PivotError(`writing "${value.trim()}" to ${path} failed (${code})`, { cause: err });
  }
}

/** clone3's CLONE_INTO_CGROUP came with Linux 5.7. */
export function kernelHasCloneIntoCgroup(kernelRelease?: string): boolean {
  return kernelAtLeast(5, 7, kernelRelease);
}

/**
 * cpuset's cpus and mems start empty in v1; a task cannot join until they are copied from the
 * parent (itself initialised first, up to a cgroup that has them). Returns the directory's values,
 * or null where there are no cpuset files. Each file is read once.
 */
function initCpuset(dir: string): { cpus: string; mems: string } | null {
  const cpusPath = join(dir, "cpuset.cpus");
  const memsPath = join(dir, "cpuset.mems");
  let cpus: string;
  let mems: string;
  try {
    cpus = readFileSync(cpusPath, "utf8").trim();
    mems = readFileSync(memsPath, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  if (cpus !== "" && mems !== "") return { cpus, mems };
  const parent = initCpuset(dirname(dir));
  if (!parent) return null;
  if (cpus === "") write(cpusPath, parent.cpus);
  if (mems === "") write(memsPath, parent.mems);
  return { cpus: cpus || parent.cpus, mems: mems || parent.mems };
}

export class Cgroup {
  /** The host's hierarchies, read (from /proc/self/mountinfo) when first needed: `delete` and
   *  `state` of a record's cgroup do not need them (~0.5 ms of those commands). */
  private hostFacts: HostCgroups | undefined;

  constructor(
    readonly paths: CgroupPaths,
    host?: HostCgroups,
  ) {
    this.hostFacts = host;
  }

  private get host(): HostCgroups {
    this.hostFacts ??= hostCgroups();
    return this.hostFacts;
  }

  static forContainer(cgroupsPath: string, host: HostCgroups = hostCgroups()): Cgroup {
    const own = parseProcCgroup(readFileSync("/proc/self/cgroup", "utf8"));
    return new Cgroup(resolveCgroupPaths(cgroupsPath, host, own), host);
  }

  private hierarchy(name: string): Hierarchy | undefined {
    return this.host.hierarchies.find((h) => h.name === name);
  }

  /** Creates the directories (idempotent). */
  create(): void {
    for (const [name, dir] of Object.entries(this.paths)) {
      mkdirSync(dir, { recursive: true });
      if (this.hierarchy(name)?.controllers.includes("cpuset")) initCpuset(dir);
    }
  }

  /** Which directory holds each controller. */
  layout(): Layout {
    return layoutOf(this.host, this.paths);
  }

  /** Moves a process (which this runtime started) into every hierarchy. */
  join(pid: number, dirs: string[] = Object.values(this.paths)): void {
    for (const dir of dirs) write(join(dir, "cgroup.procs"), String(pid));
  }

  /**
   * How a new container process enters these directories without being moved by the runtime
   * (see CgroupJoin): it joins each v1 hierarchy itself, and is created in the v2 one.
   */
  joinPlan(cloneIntoCgroup = kernelHasCloneIntoCgroup()): CgroupJoin {
    const plan: CgroupJoin = { selfJoin: [], byRuntime: [] };
    for (const [name, dir] of Object.entries(this.paths)) {
      // A hierarchy this host no longer has (an old record): moved by the runtime, which works
      // on either version.
      const version = this.hierarchy(name)?.version;
      if (version === 1) plan.selfJoin.push(dir);
      else if (version === 2 && cloneIntoCgroup && plan.createIn === undefined) plan.createIn = dir;
      else plan.byRuntime.push(dir);
    }
    return plan;
  }

  /**
   * The pids of every process in the cgroup. Every member is in each of the container's
   * hierarchies (it is joined to all, the first one first), so the first hierarchy whose
   * directory exists answers, as runc reads one.
   */
  pids(): number[] {
    const pids = new Set<number>();
    for (const dir of Object.values(this.paths)) {
      const dirs = walk(dir);
      for (const d of dirs) {
        try {
          for (const line of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) {
            if (line) pids.add(Number(line));
          }
        } catch {
          // The directory went away meanwhile.
        }
      }
      if (dirs.length > 0) break;
    }
    return [...pids];
  }

  /**
   * Sends a signal to every process in the cgroup, as runc does: SIGKILL through cgroup.kill
   * where v2 has it; else freeze, signal each, thaw, so that nothing forks out of reach in
   * between and a paused container's processes receive it (v1 frozen tasks do not die).
   */
  signalAll(signal: number): void {
    const freezer = this.freezerDir();
    // cgroup.kill also kills v2-frozen tasks; v1-frozen ones only die once thawed.
    if (signal === 9 && freezer?.version !== 1) {
      for (const [name, dir] of Object.entries(this.paths)) {
        if (this.hierarchy(name)?.version !== 2 || !existsSync(join(dir, "cgroup.kill"))) continue;
        try {
          writeFileSync(join(dir, "cgroup.kill"), "1");
          return;
        } catch {
          // Fall back to signalling one by one.
        }
      }
    }
    if (freezer) {
      try {
        this.freeze(true);
      } catch {
        // Signal anyway.
      }
    }
    for (const pid of this.pids()) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone meanwhile.
      }
    }
    if (freezer) this.freeze(false);
  }

  /** Whether `freeze` can work: a v1 freezer directory or a v2 cgroup.freeze among its paths. */
  hasFreezer(): boolean {
    return this.freezerDir() !== null;
  }

  /**
   * The v1 freezer's directory (the one with freezer.state), else a v2 one (with cgroup.freeze).
   * Told by the files, which only a cgroup with that freezer has: no need for the host's facts.
   */
  private freezerDir(): { dir: string; version: 1 | 2 } | null {
    for (const dir of Object.values(this.paths)) {
      if (existsSync(join(dir, "freezer.state"))) return { dir, version: 1 };
    }
    for (const dir of Object.values(this.paths)) {
      if (existsSync(join(dir, "cgroup.freeze"))) return { dir, version: 2 };
    }
    return null;
  }

  freeze(frozen: boolean): void {
    const f = this.freezerDir();
    if (!f)
      throw new PivotError("no freezer is available for this container's cgroup", {
        hint: "pause needs the v1 freezer controller or cgroup v2",
      });
    if (f.version === 1) write(join(f.dir, "freezer.state"), frozen ? "FROZEN" : "THAWED");
    else write(join(f.dir, "cgroup.freeze"), frozen ? "1" : "0");
    // The v1 freezer passes through FREEZING and v2 reports "frozen 1" in cgroup.events only
    // once every task stopped: wait for it, as runc does, so `state` right after says paused.
    const deadline = Date.now() + 2000;
    while (frozen && !this.freezeComplete(f)) {
      if (Date.now() > deadline) {
        throw new PivotError(`the cgroup ${f.dir} did not finish freezing within 2 seconds`, {
          hint: "a process may be stuck in an uninterruptible sleep; try again, or resume it",
        });
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }

  private freezeComplete(f: { dir: string; version: 1 | 2 }): boolean {
    try {
      if (f.version === 1)
        return readFileSync(join(f.dir, "freezer.state"), "utf8").trim() === "FROZEN";
      return /^frozen 1$/m.test(readFileSync(join(f.dir, "cgroup.events"), "utf8"));
    } catch {
      return true;
    }
  }

  isFrozen(): boolean {
    const f = this.freezerDir();
    if (!f) return false;
    try {
      if (f.version === 1)
        return readFileSync(join(f.dir, "freezer.state"), "utf8").trim() === "FROZEN";
      return readFileSync(join(f.dir, "cgroup.freeze"), "utf8").trim() === "1";
    } catch {
      return false;
    }
  }

  /** Removes the directories, deepest first. Fails if processes remain. */
  destroy(): void {
    const errors: string[] = [];
    for (const dir of Object.values(this.paths)) {
      // Usually a leaf: one rmdir. Sub-cgroups the container made, deepest first.
      try {
        rmdirSync(dir);
        continue;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      }
      for (const d of walk(dir).reverse()) {
        try {
          rmdirSync(d);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== "ENOENT") errors.push(`${d} (${code})`);
        }
      }
    }
    if (errors.length)
      throw new PivotError(`could not remove cgroup ${errors.join(", ")}`, {
        hint: "processes may still be running in it",
      });
  }
}

/** The directory and every sub-directory beneath it, parents first. */
function walk(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    let links: number;
    try {
      links = statSync(d).nlink;
    } catch {
      return;
    }
    out.push(d);
    // A cgroup directory's link count is 2 plus its sub-directories (kernfs keeps it so, as
    // ext4 and tmpfs do): a leaf, the usual case, needs no listing. Where directories count 1
    // (btrfs), it is listed.
    if (links === 2) return;
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) visit(join(d, e.name));
  };
  visit(dir);
  return out;
}
