// Benchmark: pivot-runtime against runc and crun on this machine, interleaved in one run.
//
//   bun bench/runtime.ts [--runs N] [--warmup N] [--pivot NAME=COMMAND]... [--no-ns-pivot]
//                        [--json FILE] [--out FILE]
// The report goes to stdout at the end; --out FILE also gets it after every round, and --json FILE
// the raw samples, so an interrupted run keeps its results.
//
// Three scenarios, each on a busybox bundle:
//   run  `RUNTIME run --bundle B ID` of /bin/true (create + start + wait + delete in one command)
//   seq  what containerd's shim and podman's conmon issue, for /bin/true: create --bundle B
//        --pid-file F ID; start ID; state ID; wait for the container's exit; delete ID
//   exec `RUNTIME exec --process P ID` of /bin/true in a container running `sleep` (one per arm,
//        made at the start): what each Kubernetes exec probe or `kubectl exec` costs
// For each, the median wall time and the median cpu time (user+sys of the whole process tree:
// wait4's rusage, including the container's init, reaped by a subreaper as a shim would) and
// the peak RSS (the largest single process of the tree), with ratios to runc and crun.
//
// crun 1.8 refuses a hybrid cgroup host whose cgroup2 is mounted at /sys/fs/cgroup/unified, and
// puts even a relative cgroupsPath at the root of each hierarchy. So crun runs in a private mount
// and cgroup namespace, made once at the start (`unshare -m -C`, never on the host), where that
// mount is unmounted and the v1 hierarchies are mounted again with this process's own cgroup as
// their root; every command enters it with `nsenter -m -C`. runc and pivot-runtime are timed the
// same way there: the "-ns" arms. Ratios to crun compare arms of the same kind.
//
// Each runtime uses its own --root in a temporary directory. Every container's cgroup nests under
// this process's own cgroup in every hierarchy, at the same depth for all arms:
// <own>/pivot-bench-PID/ARM-N-SCENARIO (a relative cgroupsPath for the plain arms, which runc and
// pivot-runtime resolve against their own cgroup, ours; "/pivot-bench-PID/..." from the
// namespace's root, our own cgroup, for the -ns arms). Containers, the namespace's holder, the
// cgroups and the directory are removed at the end, also on failure or a signal.
// A script, never a timed test: the numbers depend on the machine and its load.
import { spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BenchSpec,
  BUN,
  buildMeasure,
  CgroupNamespace,
  cgroupMountInfo,
  cleanupOnSignals,
  f1,
  f2,
  loadAverage,
  machineFacts,
  median,
  must,
  parseSamples,
  REPO,
  removeOwnCgroups,
  requireTools,
  type Sample,
  shuffle,
  trueSpec,
  version,
  writeBundleConfig,
} from "./common.ts";

interface Arm {
  name: string;
  /** The runtime command (program and leading args). */
  command: string[];
  /** Run in the private mount and cgroup namespace (`cgns`), /sys/fs/cgroup/unified unmounted. */
  ns: boolean;
  root: string;
  bundle: string;
}

type Scenario = "run" | "seq" | "exec";
const SCENARIOS: Scenario[] = ["run", "seq", "exec"];
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
      command: existsSync(installed) ? [installed] : [BUN, join(REPO, "bin/pivot-runtime.ts")],
    });
  }
  return { runs, warmup, json, out, nsPivot, pivots };
}

const UNIFIED = "/sys/fs/cgroup/unified";
const hybridUnified = cgroupMountInfo().some(
  (m) => m.mountPoint === UNIFIED && m.type === "cgroup2",
);

/** The -ns arms' namespace: cgroup hierarchies mounted again (our cgroup their root), no cgroup2. */
const cgns = new CgroupNamespace("unmount");

/** The command line of one runtime invocation, entering the -ns arms' namespace for -ns arms. */
function invocation(arm: Arm, args: string[]): string[] {
  const cmd = [...arm.command, "--root", arm.root, ...args];
  return arm.ns ? cgns.argv(cmd) : cmd;
}

const opts = parseCli(process.argv.slice(2));
requireTools(["runc", "crun", "cc", "unshare", "nsenter"]);

const work = mkdtempSync(join(tmpdir(), "pivot-bench-"));
/** The directory of every container's cgroup, in this process's own cgroup. */
const cgroupParent = `pivot-bench-${process.pid}`;
let measure = "";
let spec: BenchSpec;
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
      const [cmd, ...args] = arm.ns && !cgns.pid ? [] : invocation(arm, ["delete", "--force", id]);
      if (cmd) spawnSync(cmd, args, { stdio: "ignore" });
    }
  }
  cgns.stop();
  // Kills what is left in our cgroups (only our containers), then removes them.
  removeOwnCgroups(cgroupParent);
  rmSync(work, { recursive: true, force: true });
}

cleanupOnSignals(cleanup);

/** The bundle's config; its cgroup <own>/pivot-bench-PID/CGROUPNAME (see the header). */
function writeConfig(arm: Arm, cgroupName: string): void {
  const path = `${cgroupParent}/${cgroupName}`;
  writeBundleConfig(arm.bundle, spec, join(work, "rootfs"), arm.ns ? `/${path}` : path);
}

/** The exec scenario's container of ARM: its id. */
const execTarget = (arm: Arm) => `exec-${arm.name}`;
let execProcess = "";

/** Creates and starts ARM's exec target, running `sleep` for the whole benchmark. */
function startExecTarget(arm: Arm): void {
  const id = execTarget(arm);
  ids.get(arm)!.push(id);
  const bundle = `${arm.bundle}-exec`;
  mkdirSync(bundle, { recursive: true });
  const path = `${cgroupParent}/${arm.name}-exec`;
  writeBundleConfig(bundle, spec, join(work, "rootfs"), arm.ns ? `/${path}` : path, (s) => {
    s.process.args = ["sleep", "3600"];
  });
  for (const args of [
    ["create", "--bundle", bundle, id],
    ["start", id],
  ]) {
    const [cmd, ...rest] = invocation(arm, args);
    // stderr to a file: the container inherits it, and would hold a pipe open for its whole life.
    const err = openSync(errFile, "w");
    const r = spawnSync(cmd!, rest, { stdio: ["ignore", "ignore", err] });
    closeSync(err);
    if (r.status !== 0)
      throw new Error(
        `${arm.name}: ${args[0]} of the exec target failed: ${readFileSync(errFile, "utf8").trim()}`,
      );
  }
}

/** One measured scenario for one arm: the samples of its commands, in order. */
function measureOnce(arm: Arm, scenario: Scenario, iteration: number): Sample[] {
  rmSync(pidFile, { force: true });
  writeFileSync(errFile, "");
  if (scenario === "exec") {
    const args = invocation(arm, ["exec", "--process", execProcess, execTarget(arm)]);
    return checked(
      arm,
      scenario,
      spawnSync(measure, [pidFile, errFile, ...args], { encoding: "utf8" }),
    );
  }
  const id = `b${iteration}-${arm.name}-${scenario}`;
  ids.get(arm)!.push(id);
  writeConfig(arm, `${arm.name}-${iteration}-${scenario}`);
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
  return checked(
    arm,
    scenario,
    spawnSync(measure, [pidFile, errFile, ...args], { encoding: "utf8" }),
  );
}

/** The samples of a measure run, which must have succeeded in every step. */
function checked(arm: Arm, scenario: Scenario, r: ReturnType<typeof spawnSync>): Sample[] {
  if (r.status !== 0) throw new Error(`measure failed: ${r.stderr}`);
  const samples = parseSamples(String(r.stdout));
  const failed = samples.findIndex((s) => s.status !== 0);
  if (failed >= 0 || samples.length !== (scenario === "seq" ? SEQ_STEPS.length : 1)) {
    const step = scenario === "seq" ? SEQ_STEPS[failed] : scenario;
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

/** The report so far, in Markdown. */
function report(done: number): string {
  const lines: string[] = [];
  lines.push(
    ...machineFacts(loads),
    `cgroups: ${hybridUnified ? "hybrid (cgroup2 at /sys/fs/cgroup/unified; -ns arms in a private mount and cgroup namespace without it)" : "no hybrid unified mount"}; containers below ${cgroupParent} in this process's own cgroup`,
    `versions: ${version("runc", ["--version"])}; ${version("crun", ["--version"])}; bun ${process.versions.bun ?? "?"}`,
    `pivot commands: ${opts.pivots.map((p) => `${p.name} = ${p.command.join(" ")}`).join("; ")}`,
    `runs: ${done} per arm and scenario (+${opts.warmup} warm-up), arms and scenarios shuffled in every round`,
    "",
  );
  for (const scenario of SCENARIOS) {
    const sum = new Map(arms.map((a) => [a.name, summarize(results.get(key(a, scenario)) ?? [])]));
    const runcPlain = sum.get("runc")!;
    const runcNs = sum.get("runc-ns")!;
    const crunNs = sum.get("crun-ns")!;
    lines.push(
      {
        run: "### `run` of /bin/true",
        seq: "### create, start, state, wait, delete (containerd/podman sequence)",
        exec: "### `exec` of /bin/true in a running container",
      }[scenario],
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
  measure = buildMeasure(work);
  must(join(REPO, "scripts/make-busybox-rootfs.sh"), [join(work, "rootfs")]);
  spec = trueSpec(opts.pivots[0]!.command, work);
  await cgns.start();

  addArm("runc", ["runc"], false);
  for (const p of opts.pivots) addArm(p.name, p.command, false);
  addArm("runc-ns", ["runc"], true);
  addArm("crun-ns", ["crun"], true);
  if (opts.nsPivot) for (const p of opts.pivots) addArm(`${p.name}-ns`, p.command, true);
  execProcess = join(work, "exec-process.json");
  writeFileSync(
    execProcess,
    JSON.stringify({
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ["/bin/true"],
      env: ["PATH=/bin:/usr/bin"],
      cwd: "/",
    }),
  );
  for (const arm of arms) startExecTarget(arm);

  const total = opts.warmup + opts.runs;
  for (let i = 0; i < total; i++) {
    const tasks = shuffle(arms.flatMap((arm) => SCENARIOS.map((s) => ({ arm, s }))));
    for (const { arm, s } of tasks) {
      const samples = measureOnce(arm, s, i);
      if (i >= opts.warmup) {
        const k = key(arm, s);
        results.set(k, [...(results.get(k) ?? []), samples]);
      }
    }
    loads.push(loadAverage());
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
