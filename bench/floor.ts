// Benchmark: the kernel floor of the library path. How long do N sequential /bin/true containers
// of bench/engine.ts's bundle take when a small C program (bench/floor.c) does exactly what the
// bundle's config asks and nothing else, against Pivot's Runtime.run from this Bun process and a
// shell loop of `crun run`?
//
//   bun bench/floor.ts [--count N] [--rounds N] [--out FILE]      (as root)
//
// Arms, interleaved (the order shuffled every round), COUNT containers each:
//   floor-full      floor.c's loop in one process: cgroups in every hierarchy, the six namespaces,
//                   the mounts, devices, pivot_root, masks, read-only paths, rlimits, capabilities
//   floor-full-once the same, floor.c spawned from this Bun process once per container
//                   (Bun.spawnSync), as a minimal launcher driven from Bun would be
//   floor-no-cgroup floor-full without the container's cgroups
//   floor-ns-only   clone into the six namespaces and exec /bin/true in the host's root
//   floor-bare      fork and exec /bin/true (the process alone)
//   runtime-lib     Pivot's Runtime.run of the bundle (src/runtime/runtime.ts), as bench/engine.ts
//   crun-loop       `sh -c 'for ...; do crun run ...; done'` of the bundle, inside `unshare -m -C`
//                   with a tmpfs over /sys/fs/cgroup/unified (crun 1.8 refuses this hybrid host)
//                   and the v1 hierarchies mounted again in the new cgroup namespace, so that crun's
//                   cgroups nest under this process's own cgroup as Pivot's and floor's do
//
// Every container's cgroup nests under this process's own cgroup, in pivot-bench-floor-PID/
// (floor/c, pivot/c, crun/c). Everything is removed at the end, also on failure or a signal:
// the child being run (by pid, its process group for the crun loop), the cgroups, mounts under
// the temporary directory, the directory. A script, never a timed test.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { hostCgroups, parseProcCgroup } from "../src/cgroups/hierarchy.ts";
import { Runtime } from "../src/runtime/runtime.ts";
import {
  BUN,
  buildMeasure,
  cleanupOnSignals,
  f1,
  f2,
  inCgroupNamespace,
  loadAverage,
  machineFacts,
  makeRootfs,
  median,
  must,
  parseSamples,
  REPO,
  removeCgroupTree,
  requireTools,
  shuffle,
  sleep,
  trueSpec,
  unmountUnder,
  version,
  writeBundleConfig,
} from "./common.ts";

function usage(): never {
  process.stderr.write("usage: bun bench/floor.ts [--count N] [--rounds N] [--out FILE]\n");
  process.exit(2);
}

function parseCli(argv: string[]) {
  const o = { count: 50, rounds: 3, out: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => argv[++i] ?? usage();
    const int = () => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 1) usage();
      return n;
    };
    if (a === "--count") o.count = int();
    else if (a === "--rounds") o.rounds = int();
    else if (a === "--out") o.out = next();
    else usage();
  }
  return o;
}

const opts = parseCli(process.argv.slice(2));
requireTools(["crun", "cc", "unshare"]);

const work = mkdtempSync(join(tmpdir(), "pivot-bench-floor-"));
const nest = `pivot-bench-floor-${process.pid}`;
process.env.PIVOT_LAUNCHER ??= join(REPO, "native/build/pivot-launcher");

// Where this process sits in each hierarchy; every container's cgroup goes below NEST there.
const host = hostCgroups();
const own = parseProcCgroup(readFileSync("/proc/self/cgroup", "utf8"));
const bases = host.hierarchies.map((h) => ({
  h,
  base: join(h.mountPoint, own.get(h.name) ?? "/", nest),
}));

/** The child being waited for (floor's loop, or the crun loop's measuring helper). */
let current: { pid: number; group: boolean } | null = null;
let runtime: Runtime | null = null;
let cleaned = false;
const loads: number[] = [];

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  if (current) {
    try {
      process.kill(current.group ? -current.pid : current.pid, "SIGKILL");
    } catch {}
    sleep(100);
  }
  // A Runtime.run cut short leaves its state (and maybe a container) behind.
  const rtRoot = join(work, "state", "runtime");
  if (runtime && existsSync(rtRoot))
    for (const id of readdirSync(rtRoot)) {
      try {
        await runtime.delete(id, true);
      } catch {}
    }
  // Kills what is left in our cgroups (only our containers are there), then removes them.
  for (const { base } of bases) removeCgroupTree(base);
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
}

cleanupOnSignals(cleanup);

/** user+sys of this process and its reaped children, in ms (from /proc/self/stat). */
function selfCpuMs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
}

/** Runs ARGV to completion (tracked in `current` for the clean-up); returns stdout and stderr. */
function runChild(argv: string[], group = false): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      detached: group,
    });
    if (child.pid === undefined) return reject(new Error(`could not start ${argv[0]}`));
    current = { pid: child.pid, group };
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      current = null;
      if (code === 0) resolve({ out, err });
      else reject(new Error(`${argv.join(" ")} failed (${code ?? signal}): ${err.trim()}`));
    });
  });
}

interface Sample {
  wallMs: number;
  cpuMs: number;
}

const lines: string[] = [];
const facts: string[] = [];

try {
  // ---------- set-up ----------
  const floor = join(work, "floor");
  must("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", floor, join(REPO, "bench/floor.c")]);
  const measure = buildMeasure(work);
  const { rootfs } = makeRootfs(work);
  for (const { base } of bases) mkdirSync(base, { recursive: true });

  // The bundle of bench/engine.ts: `pivot-runtime spec`, /bin/true, no terminal; ociVersion 1.1.0,
  // which crun 1.8 knows. Pivot's cgroup: NEST/pivot/c below its own (a relative cgroupsPath).
  const template = trueSpec([BUN, join(REPO, "bin/pivot-runtime.ts")], work);
  template.ociVersion = "1.1.0";
  const rtBundle = join(work, "bundle", "runtime");
  writeBundleConfig(rtBundle, template, rootfs, `${nest}/pivot/c`);
  // crun's: /NEST/crun/c from the root of the cgroup namespace the loop runs in (this process's
  // cgroup), so the same place below our own cgroup.
  const crunBundle = join(work, "bundle", "crun");
  writeBundleConfig(crunBundle, template, rootfs, `/${nest}/crun/c`);
  const crunRoot = join(work, "state", "crun");
  mkdirSync(crunRoot, { recursive: true });
  const crunLoop = (round: string, n: number): string[] =>
    inCgroupNamespace(
      "tmpfs",
      `for i in $(seq 1 ${n}); do crun --root ${crunRoot} run --bundle ${crunBundle} c${round}-$i || exit 1; done`,
    );

  // floor.c's hierarchies: every one Pivot uses here, the container's cgroup NEST/floor/c.
  const cgArgs = bases.flatMap(({ h, base }) => [
    "--cg",
    `${h.version}:${basename(h.mountPoint)}:${join(base, "floor")}`,
  ]);
  const floorArgv = (mode: string, n: number) => [
    floor,
    mode,
    "--count",
    String(n),
    "--rootfs",
    rootfs,
    ...cgArgs,
  ];
  /** floor's own report of its loop. */
  const floorLoop = async (mode: string, n: number): Promise<Sample> => {
    const { out } = await runChild(floorArgv(mode, n));
    const [wall, user, sys] = out.trim().split(" ").map(Number);
    return { wallMs: wall! / 1e6, cpuMs: (user! + sys!) / 1e3 };
  };

  runtime = new Runtime({ root: join(work, "state", "runtime"), warn: () => {} });
  const rt = runtime;
  let seq = 0;

  const arms: Record<string, { what: string; run: (n: number) => Promise<Sample> }> = {
    "floor-full": {
      what: "floor.c, everything the config asks, one process for all",
      run: (n) => floorLoop("full", n),
    },
    "floor-full-once": {
      what: "the same, floor.c spawned from Bun per container",
      run: async (n) => {
        const argv = floorArgv("full", 1);
        const cpu0 = selfCpuMs();
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
          if (r.exitCode !== 0)
            throw new Error(`floor (once) failed (${r.exitCode}): ${r.stderr.toString().trim()}`);
        }
        return { wallMs: performance.now() - t0, cpuMs: selfCpuMs() - cpu0 };
      },
    },
    "floor-no-cgroup": {
      what: "floor-full without the container's cgroups",
      run: (n) => floorLoop("full-no-cgroup", n),
    },
    "floor-ns-only": {
      what: "clone into the six namespaces, exec in the host's root",
      run: (n) => floorLoop("ns-only", n),
    },
    "floor-bare": {
      what: "fork and exec, no namespaces",
      run: (n) => floorLoop("bare", n),
    },
    "runtime-lib": {
      what: "Pivot's `Runtime.run` from this Bun process",
      run: async (n) => {
        const cpu0 = selfCpuMs();
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const code = await rt.run(`rt${++seq}`, {
            bundle: rtBundle,
            stdio: ["ignore", "ignore", "ignore"],
          });
          if (code !== 0) throw new Error(`Runtime.run exited with ${code}`);
        }
        return { wallMs: performance.now() - t0, cpuMs: selfCpuMs() - cpu0 };
      },
    },
    "crun-loop": {
      what: "a shell loop of `crun run` (bench/measure.c: wall, cpu of the tree)",
      run: async (n) => {
        const { out } = await runChild(
          [measure, join(work, "pid"), join(work, "err"), ...crunLoop(String(++seq), n)],
          true,
        );
        const s = parseSamples(out)[0];
        if (s?.status !== 0)
          throw new Error(
            `crun loop exited with ${s?.status}: ${readFileSync(join(work, "err"), "utf8").trim()}`,
          );
        return { wallMs: s.wallNs / 1e6, cpuMs: (s.userUs + s.sysUs) / 1e3 };
      },
    },
  };

  // Warm-up, not counted: modules, the first cgroups, page cache.
  for (const arm of Object.keys(arms)) await arms[arm]!.run(3);

  const samples = new Map<string, Sample[]>(Object.keys(arms).map((a) => [a, []]));
  for (let round = 0; round < opts.rounds; round++) {
    for (const arm of shuffle(Object.keys(arms))) {
      samples.get(arm)!.push(await arms[arm]!.run(opts.count));
      loads.push(loadAverage());
    }
    process.stderr.write(`\rbench: round ${round + 1}/${opts.rounds}`);
  }
  process.stderr.write("\n");

  // Where floor-full's time goes: one more loop, timed phase by phase (not in the table).
  const phases = (await runChild([...floorArgv("full", opts.count), "--phases"])).err
    .trim()
    .split("\n")
    .map((l) => {
      const sp = l.indexOf(" ");
      return { ms: Number(l.slice(0, sp)), name: l.slice(sp + 1) };
    });
  loads.push(loadAverage());

  const per = (arm: string, k: keyof Sample) =>
    median(samples.get(arm)!.map((s) => s[k])) / opts.count;
  const crunWall = per("crun-loop", "wallMs");
  const crunCpu = per("crun-loop", "cpuMs");
  lines.push(
    `### ${opts.count} sequential /bin/true containers (${opts.rounds} rounds per arm, interleaved)`,
    "",
    "| arm | what | ms per container (median wall) | min–max | cpu ms per container | wall ÷ crun loop | same round | cpu ÷ crun loop |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const [arm, { what }] of Object.entries(arms)) {
    const ws = samples.get(arm)!.map((s) => s.wallMs / opts.count);
    const w = per(arm, "wallMs");
    const c = per(arm, "cpuMs");
    // The ratio within each round (the arms ran minutes apart at most), then its median.
    const paired = median(
      samples.get(arm)!.map((s, r) => s.wallMs / samples.get("crun-loop")![r]!.wallMs),
    );
    lines.push(
      `| ${arm} | ${what} | ${f2(w)} | ${f2(Math.min(...ws))}–${f2(Math.max(...ws))} | ${f2(c)} | ${f2(w / crunWall)} | ${f2(paired)} | ${f2(c / crunCpu)} |`,
    );
  }
  const rtWall = per("runtime-lib", "wallMs");
  const rtCpu = per("runtime-lib", "cpuMs");
  const flWall = per("floor-full", "wallMs");
  const flCpu = per("floor-full", "cpuMs");
  lines.push(
    "",
    "wall ÷ crun loop: of the medians; same round: the median over the rounds of the ratio within a round. cpu: this process and its reaped children (/proc/self/stat, 10 ms ticks over the whole loop) for floor-full-once and runtime-lib; floor.c's getrusage for the floor loops; bench/measure.c for the crun loop.",
    "",
    `A third of the crun loop: ${f2(crunWall / 3)} ms per container; the kernel floor (floor-full): ${f2(flWall)} ms, ${f2(flWall / crunWall)} of the crun loop.`,
    `Runtime.run above the floor: ${f2(rtWall - flWall)} ms wall (${f1((100 * (rtWall - flWall)) / rtWall)}% of its ${f2(rtWall)} ms), ${f2(rtCpu - flCpu)} ms cpu per container.`,
    "",
    `Where floor-full's time goes (one more loop of ${opts.count}, \`--phases\`: mean ms per container, each phase ending at a clock_gettime in the parent or the child; ${f2(phases.reduce((a, p) => a + p.ms, 0))} ms in all):`,
    "",
    "| phase | ms |",
    "| --- | ---: |",
    ...phases.map((p) => `| ${p.name} | ${p.ms.toFixed(3)} |`),
    "",
  );
  facts.push(
    `versions: ${version("crun", ["--version"])}; ${version("cc", ["--version"])}; bun ${process.versions.bun}; pivot ${process.env.PIVOT_BENCH_COMMIT ?? version("git", ["-C", REPO, "rev-parse", "--short", "HEAD"])}`,
    `cgroups: ${host.mode}; ${host.hierarchies.map((h) => basename(h.mountPoint)).join(", ")}; below ${nest} in this process's own cgroup`,
  );
} catch (err) {
  await cleanup();
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
}
await cleanup();

const out = ["```", ...machineFacts(loads), ...facts, "```", "", ...lines].join("\n");
process.stdout.write(`${out}\n`);
if (opts.out) await Bun.write(opts.out, `${out}\n`);
