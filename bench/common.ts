// Shared parts of bench/engine.ts and bench/network.ts: statistics, machine facts, the busybox
// image imported into Pivot and podman (private roots), and the clean-up helpers. Not part of Pivot.
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";

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
  options: { env?: NodeJS.ProcessEnv } = {},
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

export function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
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
  /** The full command line of `podman ARGS`. */
  argv(args: string[]): string[] {
    return ["podman", ...this.base, ...args];
  }
  run(args: string[]): Result {
    return run("podman", [...this.base, ...args], { env: this.env });
  }
  must(args: string[]): string {
    return must("podman", [...this.base, ...args], { env: this.env });
  }
  /** Removes every container (conmon processes of our runroot killed), then the mounts. */
  cleanup(): void {
    if (!existsSync(join(this.dir, "root"))) return;
    this.run(["rm", "--all", "--force", "--time", "0"]);
    killAndWait(pidsWithArg(join(this.dir, "runroot")));
  }
}

// ---------- clean-up ----------

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** Mount points of the host's cgroup hierarchies. */
export function cgroupMounts(): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const type = line.slice(sep + 3).split(" ")[0]!;
    if (type === "cgroup" || type === "cgroup2") out.push(line.split(" ")[4]!);
  }
  return out;
}

/** rmdir a cgroup and its children, deepest first, killing what is left in it (ours). */
export function removeCgroupTree(dir: string): void {
  for (const child of subdirs(dir)) removeCgroupTree(join(dir, child));
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      try {
        for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n"))
          if (pid) process.kill(Number(pid), "SIGKILL");
      } catch {}
      sleep(20);
    }
  }
  process.stderr.write(`bench: could not remove cgroup ${dir}\n`);
}

/** Removes the cgroup NAME (a path below the root) in every hierarchy. */
export function removeCgroups(name: string): void {
  for (const m of cgroupMounts()) removeCgroupTree(join(m, name));
}

/** Unmounts whatever is mounted under DIR, deepest first. */
export function unmountUnder(dir: string): void {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ")[4]!)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync("umount", ["-l", p]);
}

/** Pids of processes whose command line contains MARK (a path of ours). */
export function pidsWithArg(mark: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(mark)) out.push(Number(name));
    } catch {}
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after TIMEOUTMS, to processes we started (by pid). */
export function killAndWait(pids: number[], timeoutMs = 5_000): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {}
  }
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline) sleep(50);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}

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

/** A private containerd (own config, root, state, socket), as test/integration/clients.test.ts. */
export class Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly ns: string;
  private pid = 0;
  private readonly startedAt = Date.now() - 1000;
  private readonly runDirExisted = existsSync("/run/containerd");
  constructor(work: string, ns: string) {
    this.dir = join(work, "containerd");
    this.socket = join(this.dir, "containerd.sock");
    this.ns = ns;
  }
  start(): void {
    mkdirSync(this.dir, { recursive: true });
    const config = join(this.dir, "config.toml");
    writeFileSync(
      config,
      [
        "version = 2",
        `root = "${this.dir}/root"`,
        `state = "${this.dir}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]",
        `  address = "${this.socket}"`,
        "[ttrpc]",
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${this.dir}/opt"`,
        "",
      ].join("\n"),
    );
    const log = join(this.dir, "containerd.log");
    const p = spawn("sh", ["-c", `exec containerd --config "$0" >"$1" 2>&1`, config, log], {
      stdio: "ignore",
      detached: true,
    });
    p.unref();
    this.pid = p.pid ?? 0;
    const deadline = Date.now() + 20_000;
    while (run("ctr", ["--address", this.socket, "version"]).status !== 0) {
      if (Date.now() > deadline) throw new Error("containerd did not answer");
      sleep(100);
    }
  }
  argv(args: string[]): string[] {
    return ["ctr", "--address", this.socket, "-n", this.ns, ...args];
  }
  must(args: string[]): string {
    return must("ctr", this.argv(args).slice(1));
  }
  /** Pid of the shim serving container ID. */
  shimPid(id: string): number {
    return (
      pidsWithArg(this.socket).find((pid) => {
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        return argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(id);
      }) ?? 0
    );
  }
  cleanup(): void {
    if (!this.pid) return;
    const ctr = (args: string[]) => run("ctr", this.argv(args).slice(1));
    for (const id of ctr(["container", "list", "--quiet"]).stdout.split("\n").filter(Boolean)) {
      ctr(["task", "kill", "-s", "SIGKILL", id]);
      for (let i = 0; i < 50 && ctr(["task", "delete", id]).status !== 0; i++) sleep(100);
      ctr(["container", "delete", id]);
    }
    killAndWait([this.pid]);
    // Shims outlive containerd while their tasks run; they name our socket on their command line.
    killAndWait(pidsWithArg(this.socket));
    removeCgroups(this.ns);
    unmountUnder(this.dir);
    // containerd 1.6 keeps shim sockets and fifos under /run/containerd whatever the config says.
    for (const sub of subdirs("/run/containerd/fifo")) {
      const fifoDir = join("/run/containerd/fifo", sub);
      try {
        if (statSync(fifoDir).mtimeMs < this.startedAt) continue;
        spawnSync("rm", ["-rf", fifoDir]);
      } catch {}
    }
    // runc's state root for our namespace; then, only if empty, what containerd created there
    // (another containerd may have started meanwhile).
    try {
      rmdirSync(join("/run/containerd/runc", this.ns));
    } catch {}
    if (!this.runDirExisted)
      for (const sub of ["s", "fifo", "runc", ""]) {
        try {
          rmdirSync(join("/run/containerd", sub));
        } catch {}
      }
    this.pid = 0;
  }
}
