// Shared parts of bench/engine.ts and bench/network.ts: statistics, machine facts, the busybox
// image imported into Pivot and podman (private roots), and the clean-up helpers. Not part of Pivot.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { Containerd as SharedContainerd } from "../test/fixtures/containerd.ts";
import { killAndWait, pidsWithArg } from "../test/fixtures/host.ts";

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
