// Shared parts of the benchmarks: statistics, machine facts, the busybox image imported into Pivot
// and podman (private roots), where their cgroups go, and the clean-up helpers. Not part of Pivot.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { hostCgroups, parseProcCgroup } from "../src/cgroups/hierarchy.ts";
import { Containerd as SharedContainerd } from "../test/fixtures/containerd.ts";
import { killAndWait, pidsWithArg, removeCgroupTree } from "../test/fixtures/host.ts";

export const REPO = join(import.meta.dir, "..");
export const BUN = join(REPO, "node_modules/.bin/bun");
export const IMAGE = "localhost/busybox:bench";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export const f1 = (x: number) => x.toFixed(1);
export const f2 = (x: number) => x.toFixed(2);

export interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (output collected, 2 minutes at most). */
export function run(
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Result {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    env: options.env ?? process.env,
    timeout: options.timeoutMs ?? 120_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Runs a command that must succeed; returns its stdout. */
export function must(
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): string {
  const r = run(cmd, args, options);
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** The first line of a command's output, or a note that it failed. */
export function version(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  return r.status === 0 ? (r.stdout.trim().split("\n")[0] ?? "") : `(${cmd} failed)`;
}

export function requireTools(tools: string[]): void {
  if (process.getuid?.() !== 0) {
    process.stderr.write("bench: run me as root (containers need it)\n");
    process.exit(1);
  }
  const missing = tools.filter((t) => run("sh", ["-c", `command -v ${t}`]).status !== 0);
  if (missing.length > 0) {
    process.stderr.write(`bench: missing ${missing.join(", ")} (apt-get install them)\n`);
    process.exit(1);
  }
}

/** Runs CLEANUP on SIGINT, SIGTERM and SIGHUP, then exits 130. */
export function cleanupOnSignals(cleanup: () => void | Promise<void>): void {
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      process.stderr.write(`bench: ${sig}, cleaning up\n`);
      Promise.resolve()
        .then(cleanup)
        .finally(() => process.exit(130));
    });
  }
}

export function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/** Lines about the machine for the report. */
export function machineFacts(loads: number[]): string[] {
  return [
    `date: ${new Date().toISOString()}`,
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, kernel ${version("uname", ["-r"])}`,
    `load average (1 min) during the run: min ${f2(Math.min(...loads))}, median ${f2(median(loads))}, max ${f2(Math.max(...loads))}`,
  ];
}

// ---------- measuring runtimes ----------

/** Compiles bench/measure.c into WORK/measure and returns its path. */
export function buildMeasure(work: string): string {
  const measure = join(work, "measure");
  must("cc", ["-O2", "-o", measure, join(REPO, "bench/measure.c")]);
  return measure;
}

/** One command timed by bench/measure.c: wall time, cpu of its process tree, peak RSS, status. */
export interface Sample {
  wallNs: number;
  userUs: number;
  sysUs: number;
  maxRssKb: number;
  status: number;
}

/** bench/measure.c's output: a line per command. */
export function parseSamples(stdout: string): Sample[] {
  return stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [wall, user, sys, rss, status] = line.split(" ").map(Number);
      return { wallNs: wall!, userUs: user!, sysUs: sys!, maxRssKb: rss!, status: status! };
    });
}

/** A runtime config: what `pivot-runtime spec` writes, running /bin/true without a terminal. */
export interface BenchSpec {
  ociVersion: string;
  process: { terminal: boolean; args: string[] };
  root: { path: string };
  linux: { cgroupsPath: string; resources?: Record<string, unknown> };
}

/** The config of bundles that run /bin/true: `RUNTIME spec` (RUNTIME a command line) in DIR. */
export function trueSpec(runtime: string[], dir: string): BenchSpec {
  must(runtime[0]!, [...runtime.slice(1), "spec", "--bundle", dir]);
  const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as BenchSpec;
  spec.process.terminal = false;
  spec.process.args = ["/bin/true"];
  // crun 1.8 refuses versions it does not know (1.2.0 among them); every runtime accepts 1.0.2.
  spec.ociVersion = "1.0.2";
  return spec;
}

/** Writes BUNDLE/config.json: SPEC with root ROOTFS, in cgroup CGROUPSPATH, changed by `edit`. */
export function writeBundleConfig(
  bundle: string,
  spec: BenchSpec,
  rootfs: string,
  cgroupsPath: string,
  edit: (spec: BenchSpec) => void = () => {},
): void {
  const copy = structuredClone(spec);
  copy.root.path = rootfs;
  copy.linux.cgroupsPath = cgroupsPath;
  edit(copy);
  mkdirSync(bundle, { recursive: true });
  writeFileSync(join(bundle, "config.json"), JSON.stringify(copy));
}

// ---------- images ----------

/** Builds the busybox root filesystem (Debian's busybox-static, no network) and its tarball. */
export function makeRootfs(work: string): { rootfs: string; tar: string } {
  const rootfs = join(work, "rootfs");
  must(join(REPO, "scripts/make-busybox-rootfs.sh"), [rootfs]);
  const tar = join(work, "busybox.tar");
  must("tar", ["-C", rootfs, "-cf", tar, "."]);
  return { rootfs, tar };
}

/** podman with private storage and state, runc, cgroupfs, file events, CNI networks. */
export class Podman {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly base: string[];
  /** What every podman command is run through (nsenter into a CgroupNamespace), if anything. */
  private prefix: string[] = [];
  constructor(work: string, extraConf: string[] = []) {
    this.dir = join(work, "podman");
    mkdirSync(this.dir, { recursive: true });
    const conf = join(this.dir, "containers.conf");
    // Rootful podman asks for nofile and nproc 1048576, which this host (no CAP_SYS_RESOURCE)
    // refuses; netavark is not installed, so CNI (Debian's plugins) is the network backend.
    writeFileSync(
      conf,
      [
        "[containers]",
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
        "[network]",
        'network_backend = "cni"',
        ...extraConf,
        "",
      ].join("\n"),
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
    this.base = [
      "--root",
      join(this.dir, "root"),
      "--runroot",
      join(this.dir, "runroot"),
      "--tmpdir",
      join(this.dir, "tmp"),
      "--network-config-dir",
      join(this.dir, "networks"),
      "--storage-driver",
      "overlay",
      // podman's default OCI runtime here is crun 1.8, which refuses this hybrid cgroup host.
      "--runtime",
      "runc",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
    ];
  }
  /**
   * Runs every podman command from here on in NS: with the cgroupfs manager podman puts conmon in
   * `<--cgroup-parent>/conmon` from the root of each v1 hierarchy (and the container's cgroup in
   * the parent, from the root too; a relative parent nests the container under conmon's cgroup),
   * so only a cgroup namespace whose hierarchies are mounted again keeps them under ours.
   */
  enter(ns: CgroupNamespace): void {
    this.prefix = ns.argv([]);
  }
  /** The full command line of `podman ARGS`. */
  argv(args: string[]): string[] {
    return [...this.prefix, "podman", ...this.base, ...args];
  }
  run(args: string[]): Result {
    const [cmd, ...rest] = this.argv(args);
    return run(cmd!, rest, { env: this.env });
  }
  must(args: string[]): string {
    const [cmd, ...rest] = this.argv(args);
    return must(cmd!, rest, { env: this.env });
  }
  /** Removes every container (conmon processes of our runroot killed), then the mounts. */
  cleanup(): void {
    if (!existsSync(join(this.dir, "root"))) return;
    const args = ["rm", "--all", "--force", "--time", "0"];
    // On the host if the namespace is gone (its containers then keep what is left of it).
    if (this.run(args).status !== 0 && this.prefix.length > 0)
      run("podman", [...this.base, ...args], { env: this.env });
    killAndWait(pidsWithArg(join(this.dir, "runroot")));
  }
}

// ---------- where the cgroups go ----------

// A benchmark's cgroups nest under the benchmark process's own cgroup in every hierarchy (on this
// host "/" in most v1 hierarchies, /process_api/<hash> in memory): a relative cgroupsPath, which
// Pivot and runc 1.1 (libcontainer's cgroupfs manager) and so containerd's runc shim resolve
// against the cgroup of the runtime's own process, a child of ours. crun 1.8 puts even a relative
// path at the root of each hierarchy and podman 4.3 (cgroupfs) moves conmon to a cgroup it names
// from the root: they run in a CgroupNamespace, where each hierarchy is mounted again with our
// own cgroup as its root.

/** Each hierarchy's directory NAME in this process's own cgroup (where our relative cgroupsPath NAME goes). */
export function ownCgroupDirs(name: string): string[] {
  const own = parseProcCgroup(readFileSync("/proc/self/cgroup", "utf8"));
  return hostCgroups().hierarchies.map((h) => join(h.mountPoint, own.get(h.name) ?? "/", name));
}

/**
 * Removes NAME and every NAME-* in this process's own cgroup, in every hierarchy, deepest first,
 * killing what is left in them (only our containers and their monitors are there).
 */
export function removeOwnCgroups(name: string): void {
  for (const dir of ownCgroupDirs(name)) {
    const parent = join(dir, "..");
    let entries: string[] = [];
    try {
      entries = readdirSync(parent);
    } catch {}
    for (const e of entries)
      if (e === name || e.startsWith(`${name}-`)) removeCgroupTree(join(parent, e));
  }
}

const UNIFIED = "/sys/fs/cgroup/unified";

/**
 * What becomes of the cgroup2 mount at /sys/fs/cgroup/unified in a CgroupNamespace: mounted again
 * like the v1 hierarchies ("cgroup2"), hidden under a tmpfs ("tmpfs"), or unmounted ("unmount");
 * crun 1.8 refuses this hybrid host while it is there.
 */
export type UnifiedMount = "cgroup2" | "tmpfs" | "unmount";

/**
 * Shell commands that, run by `unshare -m -C --propagation private` (a new mount and cgroup
 * namespace whose root is the caller's cgroup in every hierarchy), mount each v1 hierarchy again
 * at its mount point, so that its root there is our own cgroup, and the cgroup2 mount as UNIFIED says.
 */
export function remountCgroups(unified: UnifiedMount): string[] {
  const cmds = hostCgroups()
    .hierarchies.filter((h) => h.version === 1)
    .map((h) => {
      const o = h.name.startsWith("name=") ? `none,${h.name}` : h.name;
      return `umount ${h.mountPoint} && mount -t cgroup -o ${o} cgroup ${h.mountPoint}`;
    });
  if (hostCgroups().hierarchies.some((h) => h.mountPoint === UNIFIED))
    cmds.push(
      unified === "cgroup2"
        ? `umount ${UNIFIED} && mount -t cgroup2 cgroup2 ${UNIFIED}`
        : unified === "tmpfs"
          ? `mount -t tmpfs tmpfs ${UNIFIED}`
          : `umount ${UNIFIED}`,
    );
  return cmds;
}

/** `unshare` arguments of a new mount and cgroup namespace with the cgroups mounted again (remountCgroups). */
export function inCgroupNamespace(unified: UnifiedMount, script: string): string[] {
  return [
    "unshare",
    "-m",
    "-C",
    "--propagation",
    "private",
    "sh",
    "-c",
    [...remountCgroups(unified), script].join(" && "),
  ];
}

/**
 * A private mount and cgroup namespace, made once, in which the cgroup hierarchies are mounted
 * again with this process's own cgroup as their root (remountCgroups): "/X" there is X below our
 * own cgroup on the host. Commands enter it with `nsenter -m -C` (argv). It is held by a process
 * of ours (`cat` reading a pipe from this process, in a session of its own so a terminal's ^C
 * leaves it to the clean-up), which ends when stop() closes the pipe or this process dies;
 * the namespace, and every mount made in it, goes with the last process in it.
 */
export class CgroupNamespace {
  private holder: ChildProcess | null = null;
  constructor(readonly unified: UnifiedMount) {}

  get pid(): number {
    return this.holder?.pid ?? 0;
  }

  /** Makes the namespace; resolves when its mounts are in place. */
  start(): Promise<void> {
    const [cmd, ...args] = inCgroupNamespace(this.unified, "echo ready && exec cat >/dev/null");
    const holder = spawn(cmd!, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
    this.holder = holder;
    return new Promise((resolve, reject) => {
      let out = "";
      let err = "";
      holder.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("ready")) resolve();
      });
      holder.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
      });
      holder.on("error", reject);
      holder.on("exit", (code) =>
        reject(new Error(`the cgroup namespace's holder exited (${code}): ${err.trim()}`)),
      );
    });
  }

  /** The command line of CMD run in the namespace. */
  argv(cmd: string[]): string[] {
    if (!this.pid) throw new Error("the cgroup namespace is not started");
    return ["nsenter", "-t", String(this.pid), "-m", "-C", "--", ...cmd];
  }

  /** Ends the holder (the namespace lasts while processes of ours are still in it). */
  stop(): void {
    const holder = this.holder;
    if (!holder?.pid) return;
    this.holder = null;
    holder.stdin?.end();
    killAndWait([holder.pid]);
    holder.stdout?.destroy();
    holder.stderr?.destroy();
    holder.unref();
  }
}

// ---------- clean-up (shared with the tests) ----------

export {
  cgroupMountInfo,
  cgroupMounts,
  killAndWait,
  pidsWithArg,
  removeCgroups,
  removeCgroupTree,
  sleep,
  unmountUnder,
} from "../test/fixtures/host.ts";

/** Memory of one process: RSS and its anonymous part (status), PSS (smaps_rollup), in KiB. */
export function memoryOf(pid: number): { rss: number; anon: number; pss: number; comm: string } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (re: RegExp, text: string) => Number(re.exec(text)?.[1] ?? Number.NaN);
  let pss = Number.NaN;
  try {
    pss = kb(/^Pss:\s+(\d+) kB/m, readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  } catch {}
  return {
    rss: kb(/^VmRSS:\s+(\d+) kB/m, status),
    anon: kb(/^RssAnon:\s+(\d+) kB/m, status),
    pss,
    comm: readFileSync(`/proc/${pid}/comm`, "utf8").trim(),
  };
}

/** The private containerd of test/integration/clients.test.ts, with `must` for ctr commands. */
export class Containerd extends SharedContainerd {
  must(args: string[]): string {
    return must("ctr", this.argv(args).slice(1));
  }
}
