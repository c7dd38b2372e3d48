// Benchmark: what cgroup set-up costs a container's start, pivot-runtime and runc side by side.
//
//   bun bench/cgroups.ts [--runs N] [--trace-runs N] [--pivot COMMAND] [--out FILE]
//
// Arms, each a `run` of a busybox bundle whose process is /bin/true, interleaved and shuffled in
// every round: runc and pivot-runtime without linux.resources (the cgroup is still created,
// joined and removed, and the default device rules written), the same with limits (memory limit
// and reservation, cpu shares, quota and period, cpuset cpus and mems, pids), and pivot-runtime
// with the limits and the eBPF device program forced (PIVOT_CGROUP_DEVICES=bpf: on this hybrid
// host the program goes to the container's directory in /sys/fs/cgroup/unified).
// Wall time and cpu time (user+sys of the whole process tree) per `run`, measured by
// bench/measure.c as in bench/runtime.ts. Then pivot-runtime `--trace run` of each pivot arm:
// the median time of each cgroup row, counted from the previous row of the same process (the
// runtime's marks and the launcher's steps overlap in time since the launcher is spawned before
// resources are applied).
//
// pivot-runtime is, by default, the current sources compiled as scripts/build-binary.sh does
// (into the temporary directory; PIVOT_LAUNCHER points at native/build). Every container's cgroup
// nests under this process's own cgroup in every hierarchy: the relative cgroupsPath
// pivot-bench-cg-PID/ARM-N, which runc 1.1 and pivot-runtime both resolve against their own cgroup
// (ours), so <own>/pivot-bench-cg-PID/ARM-N for every arm. It is removed at the end with
// everything else, also on failure or a signal. A script, never a timed test: the numbers depend
// on the machine and its load.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BenchSpec,
  BUN,
  buildMeasure,
  cleanupOnSignals,
  loadAverage,
  machineFacts,
  median,
  must,
  parseSamples,
  REPO,
  removeOwnCgroups,
  requireTools,
  shuffle,
  trueSpec,
  version,
  writeBundleConfig,
} from "./common.ts";

const MiB = 1024 * 1024;

function usage(): never {
  process.stderr.write(
    "usage: bun bench/cgroups.ts [--runs N] [--trace-runs N] [--pivot COMMAND] [--out FILE]\n",
  );
  process.exit(2);
}

let runs = 20;
let traceRuns = 10;
let pivotCommand: string[] | undefined;
let out: string | undefined;
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const next = () => argv[++i] ?? usage();
    const a = argv[i]!;
    if (a === "--runs") runs = Number(next());
    else if (a === "--trace-runs") traceRuns = Number(next());
    else if (a === "--pivot") pivotCommand = next().split(/\s+/);
    else if (a === "--out") out = next();
    else usage();
  }
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(traceRuns) || traceRuns < 0) usage();
}
requireTools(["runc", "cc"]);

type Config = "none" | "limits";
interface Arm {
  name: string;
  command: string[];
  config: Config;
  env: Record<string, string>;
  root: string;
  bundle: string;
  pivot: boolean;
}

const work = mkdtempSync(join(tmpdir(), "pivot-bench-cg-"));
const cgroupParent = `pivot-bench-cg-${process.pid}`;
let measure = "";
let spec: BenchSpec;
const pidFile = join(work, "container.pid");
const errFile = join(work, "stderr");
const arms: Arm[] = [];
const ids = new Map<Arm, string[]>();
/** Runs that failed: reported with the results. */
const failures: string[] = [];
let cleaned = false;

function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const arm of arms) {
    for (const id of ids.get(arm) ?? []) {
      if (!existsSync(join(arm.root, id))) continue;
      spawnSync(
        arm.command[0]!,
        [...arm.command.slice(1), "--root", arm.root, "delete", "-f", id],
        {
          stdio: "ignore",
          env: { ...process.env, ...arm.env },
        },
      );
    }
  }
  // Kills what is left in our cgroups (only our containers), then removes them.
  removeOwnCgroups(cgroupParent);
  rmSync(work, { recursive: true, force: true });
}

cleanupOnSignals(cleanup);

/** Table cells: "–" where there is no number. */
const f1 = (x: number) => (Number.isNaN(x) ? "–" : x.toFixed(1));
const f2 = (x: number) => (Number.isNaN(x) ? "–" : x.toFixed(2));

/** The limits arm's linux.resources: what `docker run -m 256m --cpus 0.5 ...` would set. */
const LIMITS = {
  memory: { limit: 256 * MiB, reservation: 128 * MiB },
  cpu: { shares: 512, quota: 50000, period: 100000, cpus: "0", mems: "0" },
  pids: { limit: 512 },
};

function writeConfig(arm: Arm, cgroupName: string): void {
  writeBundleConfig(
    arm.bundle,
    spec,
    join(work, "rootfs"),
    // Relative: below the runtime's own cgroup, which is ours.
    `${cgroupParent}/${cgroupName}`,
    (s) => {
      if (arm.config === "limits") s.linux.resources = { ...s.linux.resources, ...LIMITS };
    },
  );
}

function addArm(name: string, command: string[], config: Config, pivot: boolean, env = {}): void {
  const root = join(work, "root", name);
  const bundle = join(work, "bundle", name);
  mkdirSync(root, { recursive: true });
  mkdirSync(bundle, { recursive: true });
  const arm = { name, command, config, env, root, bundle, pivot };
  arms.push(arm);
  ids.set(arm, []);
}

interface Sample {
  wallMs: number;
  cpuMs: number;
}

function runOnce(arm: Arm, i: number, trace = false): { sample: Sample; stderr: string } {
  const id = `c${i}-${arm.name}${trace ? "-t" : ""}`;
  ids.get(arm)!.push(id);
  writeConfig(arm, `${arm.name}-${i}${trace ? "-t" : ""}`);
  writeFileSync(errFile, "");
  const args = [
    ...arm.command,
    "--root",
    arm.root,
    ...(trace ? ["--trace"] : []),
    "run",
    "--bundle",
    arm.bundle,
    id,
  ];
  const r = spawnSync(measure, [pidFile, errFile, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...arm.env },
  });
  const stderr = readFileSync(errFile, "utf8");
  const s = parseSamples(r.stdout)[0];
  if (r.status !== 0 || s?.status !== 0)
    throw new Error(`${arm.name} run failed (${s?.status}): ${r.stderr}${stderr.trim()}`);
  return { sample: { wallMs: s.wallNs / 1e6, cpuMs: (s.userUs + s.sysUs) / 1e3 }, stderr };
}

const LAUNCHER_ROW = /^(launcher:|setup:|init:|sync point:)/;
/** The rows where cgroup work happens (deleting also removes the state directory). */
const CGROUP_ROW =
  /^(cgroup |sync SetupChildCreated: runtime done|sync point: launcher resumes \(wait while the runtime joins|launcher: cgroup v2 device|deleted:)/;

/** The cgroup rows of a --trace table: name → ms since the previous row of the same process. */
function cgroupRows(table: string): Map<string, number> {
  const rows: { at: number; what: string }[] = [];
  for (const line of table.split("\n")) {
    const m = /^\s+([\d.]+)\s+([\d.]+)\s{2}(.*)$/.exec(line);
    if (m) rows.push({ at: Number(m[1]), what: m[3]! });
  }
  const out = new Map<string, number>();
  let lastRuntime = 0;
  let lastLauncher = 0;
  for (const r of rows) {
    const launcher = LAUNCHER_ROW.test(r.what);
    const since = launcher ? lastLauncher || lastRuntime : lastRuntime;
    if (CGROUP_ROW.test(r.what)) {
      // The eBPF row names the directory: keep the phase only.
      const name = r.what.replace(/: attach the eBPF.*/, "");
      out.set(name, r.at - since);
    }
    if (r.what === "run done") out.set("total (run done)", r.at);
    if (launcher) lastLauncher = r.at;
    else lastRuntime = r.at;
  }
  return out;
}

function report(
  results: Map<Arm, Sample[]>,
  traces: Map<Arm, Map<string, number>[]>,
  loads: number[],
): string {
  const lines: string[] = [];
  lines.push(
    ...machineFacts(loads),
    `versions: ${version("runc", ["--version"])}; bun ${process.versions.bun ?? "?"}; pivot-runtime = ${arms.find((a) => a.pivot)?.command.join(" ")}`,
    `limits: ${JSON.stringify(LIMITS)}`,
    `runs: ${runs} per arm (+1 warm-up), shuffled in every round; --trace runs: ${traceRuns} per pivot arm`,
    `failed runs: ${failures.length ? failures.join("; ") : "none"}`,
    "",
    "| arm | wall ms | cpu ms | wall − same runtime without limits | cpu − same runtime without limits |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const arm of arms) {
    const s = results.get(arm) ?? [];
    const wall = median(s.map((x) => x.wallMs));
    const cpu = median(s.map((x) => x.cpuMs));
    const base = arms.find((a) => a.pivot === arm.pivot && a.config === "none")!;
    const bs = results.get(base) ?? [];
    const dw = arm === base ? Number.NaN : wall - median(bs.map((x) => x.wallMs));
    const dc = arm === base ? Number.NaN : cpu - median(bs.map((x) => x.cpuMs));
    lines.push(`| ${arm.name} | ${f1(wall)} | ${f1(cpu)} | ${f1(dw)} | ${f1(dc)} |`);
  }
  const traced = arms.filter((a) => a.pivot && (traces.get(a)?.length ?? 0) > 0);
  if (traced.length) {
    const names: string[] = [];
    for (const a of traced)
      for (const t of traces.get(a)!)
        for (const k of t.keys()) if (!names.includes(k)) names.push(k);
    lines.push(
      "",
      "pivot-runtime --trace run, median ms of each cgroup row (from the previous row of the same process):",
      "",
      `| row | ${traced.map((a) => a.name).join(" | ")} |`,
      `| --- |${traced.map(() => " ---: |").join("")}`,
    );
    for (const n of names) {
      const cells = traced.map((a) => f2(median(traces.get(a)!.flatMap((t) => t.get(n) ?? []))));
      lines.push(`| ${n} | ${cells.join(" | ")} |`);
    }
  }
  return `${lines.join("\n")}\n`;
}

try {
  measure = buildMeasure(work);
  must(join(REPO, "scripts/make-busybox-rootfs.sh"), [join(work, "rootfs")]);
  let pivot = pivotCommand;
  if (!pivot) {
    const bin = join(work, "pivot-runtime");
    const multicall = join(REPO, "bin/pivot-multicall.ts");
    must(BUN, ["build", multicall, "--compile", "--bytecode", "--format=esm", "--outfile", bin], {
      timeoutMs: 600_000,
    });
    pivot = [bin];
  }
  process.env.PIVOT_LAUNCHER ??= join(REPO, "native/build/pivot-launcher");
  spec = trueSpec(pivot, work);

  addArm("runc", ["runc"], "none", false);
  addArm("runc-limits", ["runc"], "limits", false);
  addArm("pivot", pivot, "none", true);
  addArm("pivot-limits", pivot, "limits", true);
  addArm("pivot-limits-bpf", pivot, "limits", true, { PIVOT_CGROUP_DEVICES: "bpf" });

  const results = new Map<Arm, Sample[]>();
  const traces = new Map<Arm, Map<string, number>[]>();
  const loads: number[] = [];
  for (let i = 0; i <= runs; i++) {
    for (const arm of shuffle([...arms])) {
      let sample: Sample;
      try {
        sample = runOnce(arm, i).sample;
      } catch (err) {
        // Counted and reported, not hidden; the container is removed at the end.
        failures.push(`${arm.name}: ${(err as Error).message.split("\n")[0]}`);
        if (failures.length > 10) throw err;
        continue;
      }
      if (i > 0) results.set(arm, [...(results.get(arm) ?? []), sample]);
    }
    loads.push(loadAverage());
    process.stderr.write(`\rbench: ${i + 1}/${runs + 1}`);
    if (out && i > 0) writeFileSync(out, report(results, traces, loads));
  }
  for (let i = 0; i < traceRuns; i++) {
    for (const arm of shuffle(arms.filter((a) => a.pivot))) {
      const { stderr } = runOnce(arm, i, true);
      traces.set(arm, [...(traces.get(arm) ?? []), cgroupRows(stderr)]);
    }
    loads.push(loadAverage());
  }
  process.stderr.write("\n");
  const text = report(results, traces, loads);
  if (out) writeFileSync(out, text);
  cleanup();
  process.stdout.write(text);
} catch (err) {
  cleanup();
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
}
