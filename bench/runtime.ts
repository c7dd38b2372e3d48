// Benchmark: pivot-runtime against runc and crun on this machine, interleaved in one run.
//
//   bun bench/runtime.ts [--runs N] [--warmup N] [--pivot NAME=COMMAND]... [--no-ns-pivot]
//                        [--json FILE] [--out FILE]
// The report goes to stdout at the end; --out FILE also gets it after every round, and --json FILE
// the raw samples, so an interrupted run keeps its results.
//
// Two scenarios, each on a busybox bundle whose process is /bin/true:
//   run  `RUNTIME run --bundle B ID` (create + start + wait + delete in one command)
//   seq  what containerd's shim and podman's conmon issue: create --bundle B --pid-file F ID;
//        start ID; state ID; wait for the container's exit; delete ID
// For each, the median wall time and the median cpu time (user+sys of the whole process tree:
// wait4's rusage, including the container's init, reaped by a subreaper as a shim would) and
// the peak RSS (the largest single process of the tree), with ratios to runc and crun.
//
// crun 1.8 refuses a hybrid cgroup host whose cgroup2 is mounted at /sys/fs/cgroup/unified, so
// crun runs inside a private mount namespace where that mount is unmounted (`unshare -m`,
// never on the host), and runc (and pivot-runtime) are timed the same way there: the "-ns"
// arms. Ratios to crun compare arms of the same kind.
//
// Each runtime uses its own --root in a temporary directory; every container gets an explicit
// cgroupsPath under /pivot-bench-PID, and everything is removed at the end, even on failure.
// A script, never a timed test: the numbers depend on the machine and its load.
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";

const REPO = join(import.meta.dir, "..");

interface Arm {
  name: string;
  /** The runtime command (program and leading args). */
  command: string[];
  /** Run inside a private mount namespace with /sys/fs/cgroup/unified unmounted. */
  ns: boolean;
  root: string;
  bundle: string;
}

interface Sample {
  wallNs: number;
  userUs: number;
  sysUs: number;
  maxRssKb: number;
  status: number;
}

type Scenario = "run" | "seq";
const SEQ_STEPS = ["create", "start", "state", "wait", "delete"] as const;

function usage(): never {
  process.stderr.write(
    "usage: bun bench/runtime.ts [--runs N] [--warmup N] [--pivot NAME=COMMAND]... [--no-ns-pivot] [--json FILE] [--out FILE]\n",
  );
  process.exit(2);
}

function parseCli(argv: string[]) {
  let runs = 30;
  let warmup = 2;
  let json: string | undefined;
  let out: string | undefined;
  let nsPivot = true;
  const pivots: { name: string; command: string[] }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => argv[++i] ?? usage();
    if (a === "--runs") runs = Number(next());
    else if (a === "--warmup") warmup = Number(next());
    else if (a === "--json") json = next();
    else if (a === "--out") out = next();
    else if (a === "--no-ns-pivot") nsPivot = false;
    else if (a === "--pivot") {
      const v = next();
      const eq = v.indexOf("=");
      if (eq <= 0) usage();
      pivots.push({ name: v.slice(0, eq), command: v.slice(eq + 1).split(/\s+/) });
    } else usage();
  }
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(warmup) || warmup < 0) usage();
  if (pivots.length === 0) {
    const installed = "/usr/local/bin/pivot-runtime";
    pivots.push({
      name: "pivot",
      command: existsSync(installed)
        ? [installed]
        : [join(REPO, "node_modules/.bin/bun"), join(REPO, "bin/pivot-runtime.ts")],
    });
  }
  return { runs, warmup, json, out, nsPivot, pivots };
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : `(${cmd} failed: ${r.stderr.trim()})`;
}

/** Mount points of the host's cgroup hierarchies. */
function cgroupMounts(): { mountPoint: string; type: string }[] {
  const out: { mountPoint: string; type: string }[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const type = line.slice(sep + 3).split(" ")[0]!;
    if (type === "cgroup" || type === "cgroup2")
      out.push({ mountPoint: line.split(" ")[4]!, type });
  }
  return out;
}

const UNIFIED = "/sys/fs/cgroup/unified";
const hybridUnified = cgroupMounts().some((m) => m.mountPoint === UNIFIED && m.type === "cgroup2");

/** The command line of one runtime invocation, wrapped in a private mount namespace for -ns arms. */
function invocation(arm: Arm, args: string[]): string[] {
  const cmd = [...arm.command, "--root", arm.root, ...args];
  if (!arm.ns || !hybridUnified) return cmd;
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `umount ${UNIFIED} && exec "$0" "$@"`,
    ...cmd,
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

const opts = parseCli(process.argv.slice(2));
if (process.getuid?.() !== 0) {
  process.stderr.write("bench: run me as root (containers need it)\n");
  process.exit(1);
}
for (const tool of ["runc", "crun", "cc", "unshare"]) {
  if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
    process.stderr.write(`bench: ${tool} is missing (apt-get install -y runc crun)\n`);
    process.exit(1);
  }
}

const work = mkdtempSync(join(tmpdir(), "pivot-bench-"));
const cgroupParent = `pivot-bench-${process.pid}`;
const measure = join(work, "measure");
const pidFile = join(work, "container.pid");
const errFile = join(work, "stderr");
const arms: Arm[] = [];
/** Every container id handed to a runtime, for the clean-up. */
const ids = new Map<Arm, string[]>();
let cleaned = false;

function addArm(name: string, command: string[], ns: boolean): void {
  const root = join(work, "root", name);
  const bundle = join(work, "bundle", name);
  mkdirSync(root, { recursive: true });
  mkdirSync(bundle, { recursive: true });
  arms.push({ name, command, ns, root, bundle });
  ids.set(arms[arms.length - 1]!, []);
}

/** Removes every container, the temporary directory and the cgroups. Safe to call twice. */
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const arm of arms) {
    for (const id of ids.get(arm) ?? []) {
      if (!existsSync(join(arm.root, id))) continue;
      const [cmd, ...args] = invocation(arm, ["delete", "--force", id]);
      spawnSync(cmd!, args, { stdio: "ignore" });
    }
  }
  for (const { mountPoint } of cgroupMounts()) removeCgroupTree(join(mountPoint, cgroupParent));
  rmSync(work, { recursive: true, force: true });
}

/** rmdir a cgroup and its children, deepest first, killing what is left in it (our containers). */
function removeCgroupTree(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const child = join(dir, e);
    try {
      if (statSync(child).isDirectory()) removeCgroupTree(child);
    } catch {}
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      try {
        for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) {
          if (pid) process.kill(Number(pid), "SIGKILL");
        }
      } catch {}
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  process.stderr.write(`bench: could not remove cgroup ${dir}\n`);
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    cleanup();
    process.exit(130);
  });
}

function writeConfig(arm: Arm, cgroupName: string): void {
  const spec = JSON.parse(readFileSync(join(work, "config.json"), "utf8"));
  spec.root.path = join(work, "rootfs");
  spec.linux.cgroupsPath = `/${cgroupParent}/${cgroupName}`;
  writeFileSync(join(arm.bundle, "config.json"), JSON.stringify(spec));
}

function parseSamples(stdout: string): Sample[] {
  return stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [wall, user, sys, rss, status] = line.split(" ").map(Number);
      return { wallNs: wall!, userUs: user!, sysUs: sys!, maxRssKb: rss!, status: status! };
    });
}

/** One measured scenario for one arm: the samples of its commands, in order. */
function measureOnce(arm: Arm, scenario: Scenario, iteration: number): Sample[] {
  const id = `b${iteration}-${arm.name}-${scenario}`;
  ids.get(arm)!.push(id);
  writeConfig(arm, `${arm.name}-${iteration}-${scenario}`);
  rmSync(pidFile, { force: true });
  writeFileSync(errFile, "");
  const args =
    scenario === "run"
      ? invocation(arm, ["run", "--bundle", arm.bundle, id])
      : [
          ...invocation(arm, ["create", "--bundle", arm.bundle, "--pid-file", pidFile, id]),
          "---",
          ...invocation(arm, ["start", id]),
          "---",
          ...invocation(arm, ["state", id]),
          "---",
          "@wait",
          "---",
          ...invocation(arm, ["delete", id]),
        ];
  const r = spawnSync(measure, [pidFile, errFile, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`measure failed: ${r.stderr}`);
  const samples = parseSamples(r.stdout);
  const failed = samples.findIndex((s) => s.status !== 0);
  if (failed >= 0 || samples.length !== (scenario === "run" ? 1 : SEQ_STEPS.length)) {
    const step = scenario === "run" ? "run" : SEQ_STEPS[failed];
    throw new Error(
      `${arm.name} ${scenario} (${step}) failed with status ${samples[failed]?.status}: ${readFileSync(errFile, "utf8").trim()}`,
    );
  }
  return samples;
}

const results = new Map<string, Sample[][]>();
const key = (arm: Arm, scenario: Scenario) => `${arm.name}/${scenario}`;
const loads: number[] = [];

// ---------- report ----------

interface Summary {
  wallMs: number;
  cpuMs: number;
  rssMiB: number;
  steps: { wallMs: number; cpuMs: number }[];
}

function summarize(runs: Sample[][]): Summary {
  const wall = runs.map((r) => r.reduce((a, s) => a + s.wallNs, 0) / 1e6);
  const cpu = runs.map((r) => r.reduce((a, s) => a + s.userUs + s.sysUs, 0) / 1e3);
  const rss = runs.map((r) => Math.max(...r.map((s) => s.maxRssKb)) / 1024);
  const steps = (runs[0] ?? []).map((_, j) => ({
    wallMs: median(runs.map((r) => r[j]!.wallNs / 1e6)),
    cpuMs: median(runs.map((r) => (r[j]!.userUs + r[j]!.sysUs) / 1e3)),
  }));
  return { wallMs: median(wall), cpuMs: median(cpu), rssMiB: median(rss), steps };
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
/** The report so far, in Markdown. */
function report(done: number): string {
  const lines: string[] = [];
  const firstLine = (s: string) => s.split("\n")[0] ?? s;
  lines.push(
    `date: ${new Date().toISOString()}`,
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, kernel ${sh("uname", ["-r"])}`,
    `cgroups: ${hybridUnified ? "hybrid (cgroup2 at /sys/fs/cgroup/unified; -ns arms unmount it in a private mount namespace)" : "no hybrid unified mount"}`,
    `versions: ${firstLine(sh("runc", ["--version"]))}; ${firstLine(sh("crun", ["--version"]))}; bun ${process.versions.bun ?? "?"}`,
    `pivot commands: ${opts.pivots.map((p) => `${p.name} = ${p.command.join(" ")}`).join("; ")}`,
    `runs: ${done} per arm and scenario (+${opts.warmup} warm-up), arms and scenarios shuffled in every round`,
    `load average (1 min) during the run: min ${f2(Math.min(...loads))}, median ${f2(median(loads))}, max ${f2(Math.max(...loads))}`,
    "",
  );
  for (const scenario of ["run", "seq"] as Scenario[]) {
    const sum = new Map(arms.map((a) => [a.name, summarize(results.get(key(a, scenario)) ?? [])]));
    const runcPlain = sum.get("runc")!;
    const runcNs = sum.get("runc-ns")!;
    const crunNs = sum.get("crun-ns")!;
    lines.push(
      scenario === "run"
        ? "### `run` of /bin/true"
        : "### create, start, state, wait, delete (containerd/podman sequence)",
      "",
      "| arm | wall ms | cpu ms | peak RSS MiB | wall ÷ runc | cpu ÷ runc | wall ÷ crun | cpu ÷ crun |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const arm of arms) {
      const s = sum.get(arm.name)!;
      const runc = arm.ns ? runcNs : runcPlain;
      // Plain arms are compared with crun through runc: (x / runc) / (crun-ns / runc-ns).
      const crunWall = arm.ns ? crunNs.wallMs : (crunNs.wallMs / runcNs.wallMs) * runcPlain.wallMs;
      const crunCpu = arm.ns ? crunNs.cpuMs : (crunNs.cpuMs / runcNs.cpuMs) * runcPlain.cpuMs;
      lines.push(
        `| ${arm.name} | ${f1(s.wallMs)} | ${f1(s.cpuMs)} | ${f1(s.rssMiB)} | ${f2(s.wallMs / runc.wallMs)} | ${f2(s.cpuMs / runc.cpuMs)} | ${f2(s.wallMs / crunWall)} | ${f2(s.cpuMs / crunCpu)} |`,
      );
    }
    lines.push("");
    if (scenario === "seq") {
      lines.push(
        "Median per step, wall / cpu ms (wait: from `state` returning until the container's process is reaped; its cpu is the container process's own):",
        "",
        `| arm | ${SEQ_STEPS.join(" | ")} |`,
        `| --- |${SEQ_STEPS.map(() => " ---: |").join("")}`,
      );
      for (const arm of arms) {
        const s = sum.get(arm.name)!;
        lines.push(
          `| ${arm.name} | ${s.steps.map((st) => `${f1(st.wallMs)} / ${f1(st.cpuMs)}`).join(" | ")} |`,
        );
      }
      lines.push("");
    }
  }
  return `${lines.join("\n")}\n`;
}

try {
  const cc = spawnSync("cc", ["-O2", "-o", measure, join(REPO, "bench/measure.c")], {
    encoding: "utf8",
  });
  if (cc.status !== 0) throw new Error(`building bench/measure.c failed: ${cc.stderr}`);
  const mk = spawnSync(join(REPO, "scripts/make-busybox-rootfs.sh"), [join(work, "rootfs")], {
    encoding: "utf8",
  });
  if (mk.status !== 0) throw new Error(`make-busybox-rootfs failed: ${mk.stderr}`);
  const specRun = spawnSync(
    opts.pivots[0]!.command[0]!,
    [...opts.pivots[0]!.command.slice(1), "spec", "--bundle", work],
    {
      encoding: "utf8",
    },
  );
  if (specRun.status !== 0) throw new Error(`pivot-runtime spec failed: ${specRun.stderr}`);
  const spec = JSON.parse(readFileSync(join(work, "config.json"), "utf8"));
  spec.process.terminal = false;
  spec.process.args = ["/bin/true"];
  // crun 1.8 refuses versions it does not know (1.2.0 among them); every runtime accepts 1.0.2.
  spec.ociVersion = "1.0.2";
  writeFileSync(join(work, "config.json"), JSON.stringify(spec, null, 2));

  addArm("runc", ["runc"], false);
  for (const p of opts.pivots) addArm(p.name, p.command, false);
  addArm("runc-ns", ["runc"], true);
  addArm("crun-ns", ["crun"], true);
  if (opts.nsPivot) for (const p of opts.pivots) addArm(`${p.name}-ns`, p.command, true);

  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    const tasks = shuffle(
      arms.flatMap((arm) => (["run", "seq"] as Scenario[]).map((s) => ({ arm, s }))),
    );
    for (const { arm, s } of tasks) {
      const samples = measureOnce(arm, s, i);
      if (i >= opts.warmup) {
        const k = key(arm, s);
        results.set(k, [...(results.get(k) ?? []), samples]);
      }
    }
    loads.push(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]));
    process.stderr.write(`\rbench: ${i + 1}/${total}`);
    // Results so far survive an interrupted run.
    if (i >= opts.warmup) {
      if (opts.out) writeFileSync(opts.out, report(i + 1 - opts.warmup));
      if (opts.json)
        writeFileSync(opts.json, JSON.stringify(Object.fromEntries(results.entries())));
    }
  }
  process.stderr.write("\n");
} catch (err) {
  cleanup();
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
}
cleanup();

process.stdout.write(report(opts.runs));
