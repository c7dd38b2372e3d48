// Benchmark: the engine (`pivot run --rm`) against podman, containerd's ctr and a bare runc, the
// library path against a shell loop of crun, and the memory of an idle detached container's monitor.
//
//   bun bench/engine.ts [--runs N] [--warmup N] [--lib-rounds N] [--lib-count N] [--monitor-runs N]
//                       [--no-compiled] [--skip cli,lib,monitor] [--out FILE]
//
// 1. cli: one container running /bin/true, interleaved (the order shuffled every round), measured
//    by bench/measure.c (wall time; cpu and peak RSS of the command's process tree):
//      runc      `runc run --bundle B ID` of a busybox bundle: the reference unit
//      pivot     `pivot run --rm --network none IMAGE true` run from the sources (bun bin/pivot.ts)
//      pivot-bin the same sources compiled by scripts/build-binary.sh (dist/pivot, what setup
//                installs as /usr/local/bin/pivot), to show what start-up costs
//      podman    `podman run --rm --network none` (runc, overlay, cgroupfs, file events, private
//                --root/--runroot), entered into the cgroup namespace below with `nsenter -m -C`
//      ctr       `ctr run --rm` against a containerd started here (runc shim v2, overlayfs)
//    The image is the same busybox root filesystem (scripts/make-busybox-rootfs.sh, no network),
//    imported with `pivot import` and `podman import`, and into containerd as an OCI archive
//    copied by skopeo from Pivot's store (an OCI layout).
// 2. lib: COUNT sequential /bin/true containers from this one Bun process, through the Runtime
//    (src/runtime/runtime.ts, the same bundle) and through the Engine (src/engine/engine.ts, the
//    image: create + startAttached + wait, and Engine.run + wait as `pivot run` does), against a
//    shell loop of COUNT `crun run` of the bundle (and of `runc run`); the crun loop runs in a
//    mount and cgroup namespace made once (`unshare -m -C`, entered with `nsenter -m -C`) with a
//    tmpfs over /sys/fs/cgroup/unified (crun 1.8 refuses this hybrid host) and the v1
//    hierarchies mounted again, as bench/floor.ts's loop does in a namespace of its own.
// 3. monitor: the memory of the process that watches an idle detached container (`sleep`):
//    pivot's (conmon), podman's (conmon) and containerd's shim.
//
// Cgroups: every one nests under this process's own cgroup (<own>) in every hierarchy, one level
// down, named after this process (NEST = pivot-bench-engine-PID), except podman's, two down:
//   runc, runtime-lib, runc loop   <own>/NEST-runc, NEST-lib, NEST-runc-loop: a relative
//                                  cgroupsPath, resolved against the runtime's own cgroup (ours)
//   crun loop                      <own>/NEST-crun-loop: "/NEST-crun-loop" from the root of the
//                                  loop's cgroup namespace, whose hierarchies are mounted again
//                                  (crun 1.8 puts even a relative path at the root); made before
//                                  the loops, so the remounts (~50 ms) are not timed
//   pivot, pivot-bin, engine-lib,  <own>/pivot-ID: the engine gives no cgroupsPath and the runtime
//   engine-run, monitor            nests its default, pivot-ID, under its caller's cgroup (ours)
//   ctr                            <own>/NEST-ctr-ID: `ctr run --cgroup NEST-ctr-ID`, relative,
//                                  resolved by runc against the shim's cgroup, which is
//                                  containerd's, ours (containerd is started here)
//   podman                         <own>/NEST-podman/libpod-ID and conmon in <own>/NEST-podman/conmon:
//                                  with cgroupfs, podman puts the container in the --cgroup-parent
//                                  and moves conmon to PARENT/conmon, both from the root of each v1
//                                  hierarchy (a relative parent nests the container under conmon's
//                                  cgroup instead), so every podman command runs in a mount and
//                                  cgroup namespace made here once, whose hierarchies (cgroup2 too)
//                                  are mounted again with our cgroup as their root, with
//                                  --cgroup-parent /NEST-podman; podman adds the libpod-ID level
// Everything else lives in a temporary directory; containers, containerd, the namespace's holder,
// mounts, cgroups and the directory are removed at the end, also on failure or a signal.
// A script, never a timed test: the numbers depend on the machine and its load.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.ts";
import { Runtime } from "../src/runtime/runtime.ts";
import {
  type BenchSpec,
  BUN,
  buildMeasure,
  CgroupNamespace,
  Containerd,
  cleanupOnSignals,
  f1,
  f2,
  IMAGE,
  inCgroupNamespace,
  killAndWait,
  loadAverage,
  machineFacts,
  makeRootfs,
  median,
  memoryOf,
  must,
  Podman,
  parseSamples,
  pidsWithArg,
  REPO,
  removeOwnCgroups,
  requireTools,
  run,
  shuffle,
  sleep,
  trueSpec,
  unmountUnder,
  version,
  writeBundleConfig,
} from "./common.ts";

function usage(): never {
  process.stderr.write(
    "usage: bun bench/engine.ts [--runs N] [--warmup N] [--lib-rounds N] [--lib-count N] [--monitor-runs N] [--no-compiled] [--skip cli,lib,monitor] [--out FILE]\n",
  );
  process.exit(2);
}

function parseCli(argv: string[]) {
  const o = {
    runs: 20,
    warmup: 2,
    libRounds: 3,
    libCount: 100,
    monitorRuns: 3,
    compiled: true,
    skip: new Set<string>(),
    out: undefined as string | undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => argv[++i] ?? usage();
    const int = () => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0) usage();
      return n;
    };
    if (a === "--runs") o.runs = int();
    else if (a === "--warmup") o.warmup = int();
    else if (a === "--lib-rounds") o.libRounds = int();
    else if (a === "--lib-count") o.libCount = int();
    else if (a === "--monitor-runs") o.monitorRuns = int();
    else if (a === "--no-compiled") o.compiled = false;
    else if (a === "--skip") for (const s of next().split(",")) o.skip.add(s);
    else if (a === "--out") o.out = next();
    else usage();
  }
  return o;
}

const opts = parseCli(process.argv.slice(2));
requireTools([
  "runc",
  "crun",
  "podman",
  "conmon",
  "containerd",
  "ctr",
  "containerd-shim-runc-v2",
  "skopeo",
  "cc",
  "unshare",
  "nsenter",
]);

const work = mkdtempSync(join(tmpdir(), "pivot-bench-engine-"));
/** NEST in the header: the prefix of every cgroup of ours, in this process's own cgroup. */
const parent = `pivot-bench-engine-${process.pid}`;
const pivotRoot = join(work, "pivot");
const launcher = join(REPO, "native/build/pivot-launcher");
process.env.PIVOT_LAUNCHER ??= launcher;
// This checkout's sources (what /usr/local/bin/pivot runs for /work/main), so a snapshot of a
// commit can be measured while the working tree changes.
const pivotCmd = [BUN, join(REPO, "bin/pivot.ts")];
const podman = new Podman(work);
// The measuring helper runs podman with this environment (containers.conf: ulimits, CNI).
process.env.CONTAINERS_CONF = podman.env.CONTAINERS_CONF;
// podman's namespace: "/" of each hierarchy there is our own cgroup (see the header).
const podmanNs = new CgroupNamespace("cgroup2");
const podmanParent = `/${parent}-podman`;
// The crun loop's: the same, with cgroup2 hidden under a tmpfs.
const crunNs = new CgroupNamespace("tmpfs");
const ctrd = new Containerd(work, parent);
let engine: Engine | null = null;
let cleaned = false;
const loads: number[] = [];
const notes: string[] = [];

function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  try {
    const ids = run(pivotCmd[0]!, [...pivotCmd.slice(1), "--root", pivotRoot, "ps", "-a", "-q"]);
    for (const id of ids.stdout.split("\n").filter(Boolean))
      run(pivotCmd[0]!, [...pivotCmd.slice(1), "--root", pivotRoot, "rm", "-f", id]);
    // conmon processes of our detached containers name our root on their command line.
    killAndWait(pidsWithArg(pivotRoot));
  } catch {}
  try {
    podman.cleanup();
  } catch {}
  podmanNs.stop();
  try {
    ctrd.cleanup();
  } catch {}
  for (const r of ["runc", "runc-loop", "crun-loop"]) {
    const root = join(work, "state", r);
    if (!existsSync(root)) continue;
    for (const id of run("ls", [root]).stdout.split("\n").filter(Boolean)) {
      const del = `${r.startsWith("crun") ? "crun" : "runc"} --root ${root} delete --force ${id}`;
      // crun where it ran: in its namespace, or a new one like it if that one is gone.
      const [cmd, ...args] = !r.startsWith("crun")
        ? ["sh", "-c", del]
        : crunNs.pid
          ? crunNs.argv(["sh", "-c", del])
          : inCgroupNamespace("tmpfs", del);
      run(cmd!, args);
    }
  }
  crunNs.stop();
  // Kills what is left in our cgroups (only our containers and monitors), then removes them.
  removeOwnCgroups(parent);
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
}

cleanupOnSignals(cleanup);

// ---------- set-up ----------

let measure = "";
const pidFile = join(work, "container.pid");
const errFile = join(work, "stderr");

/**
 * A bundle of the busybox root filesystem running /bin/true, in cgroup <own>/PARENT-NAME: the
 * relative path PARENT-NAME, or "/PARENT-NAME" for a runtime run in a cgroup namespace of ours
 * (ROOTED), whose root is our own cgroup.
 */
function makeBundle(name: string, rootfs: string, template: BenchSpec, rooted = false): string {
  const dir = join(work, "bundle", name);
  writeBundleConfig(dir, template, rootfs, `${rooted ? "/" : ""}${parent}-${name}`);
  return dir;
}

interface Sample {
  wallMs: number;
  cpuMs: number;
  rssMiB: number;
}

/** Runs ARGV under the measuring helper (a subreaper): wall, cpu of the tree, peak RSS. */
function measured(argv: string[]): Sample {
  writeFileSync(errFile, "");
  const r = spawnSync(measure, [pidFile, errFile, ...argv], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`measure failed: ${r.stderr}`);
  const s = parseSamples(r.stdout)[0];
  if (s?.status !== 0)
    throw new Error(
      `${argv.join(" ")} exited with ${s?.status}: ${readFileSync(errFile, "utf8").trim()}`,
    );
  return { wallMs: s.wallNs / 1e6, cpuMs: (s.userUs + s.sysUs) / 1e3, rssMiB: s.maxRssKb / 1024 };
}

/** user+sys of this process and its reaped children, in ms (from /proc/self/stat). */
function selfCpuMs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 (utime, stime, cutime, cstime) are 11-14 after the state field; clock ticks.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
}

const lines: string[] = [];
const versions: string[] = [];

try {
  measure = buildMeasure(work);
  const { rootfs, tar } = makeRootfs(work);
  await podmanNs.start();
  podman.enter(podmanNs);
  must(pivotCmd[0]!, [...pivotCmd.slice(1), "--root", pivotRoot, "import", tar, IMAGE]);
  podman.must(["import", tar, IMAGE]);
  ctrd.start();
  const ociArchive = join(work, "busybox-oci.tar");
  must("skopeo", ["copy", "-q", `oci:${pivotRoot}:${IMAGE}`, `oci-archive:${ociArchive}:${IMAGE}`]);
  ctrd.must(["images", "import", ociArchive]);

  const template = trueSpec([BUN, join(REPO, "bin/pivot-runtime.ts")], work);

  let pivotBin: string | null = null;
  if (opts.compiled) {
    // What setup installs as /usr/local/bin/pivot: the multicall binary of this checkout.
    must("bash", [join(REPO, "scripts/build-binary.sh")]);
    pivotBin = join(REPO, "dist/pivot");
  }
  const docker = run("docker", ["info"]).status === 0;
  if (!docker) notes.push("docker: no Docker engine runs on this machine (not measured)");

  versions.push(
    `versions: ${version("podman", ["--version"])}; ${version("ctr", ["--version"])}; ${version("runc", ["--version"])}; ${version("crun", ["--version"])}; ${version("conmon", ["--version"])}; bun ${process.versions.bun}`,
    `pivot: ${pivotCmd.join(" ")} in ${REPO} (${process.env.PIVOT_BENCH_COMMIT ?? version("git", ["-C", REPO, "rev-parse", "--short", "HEAD"])})${pivotBin ? "; pivot-bin: dist/pivot from scripts/build-binary.sh (as installed)" : ""}`,
    `cgroups: in this process's own cgroup, ${parent}-* (runc, runtime-lib, the loops, ctr) and pivot-ID (Pivot's engine) one level down, podman's libpod-ID two (${parent}-podman/, podman run in a cgroup namespace of ours)`,
  );

  // ---------- 1. cli ----------
  if (!opts.skip.has("cli")) {
    const runcRoot = join(work, "state", "runc");
    mkdirSync(runcRoot, { recursive: true });
    const runcBundle = makeBundle("runc", rootfs, template);
    let n = 0;
    const arms: Record<string, () => string[]> = {
      runc: () => ["runc", "--root", runcRoot, "run", "--bundle", runcBundle, `r${++n}`],
      pivot: () => [
        ...pivotCmd,
        "--root",
        pivotRoot,
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "true",
      ],
      ...(pivotBin
        ? {
            "pivot-bin": () => [
              pivotBin,
              "--root",
              pivotRoot,
              "run",
              "--rm",
              "--network",
              "none",
              IMAGE,
              "true",
            ],
          }
        : {}),
      podman: () =>
        podman.argv([
          "run",
          "--rm",
          "--network",
          "none",
          "--cgroup-parent",
          podmanParent,
          IMAGE,
          "true",
        ]),
      ctr: () => {
        const id = `c${++n}`;
        return ctrd.argv(["run", "--rm", "--cgroup", `${parent}-ctr-${id}`, IMAGE, id, "true"]);
      },
    };
    const samples = new Map<string, Sample[]>(Object.keys(arms).map((a) => [a, []]));
    const total = opts.warmup + opts.runs;
    for (let i = 0; i < total; i++) {
      for (const arm of shuffle(Object.keys(arms))) {
        const s = measured(arms[arm]!());
        if (i >= opts.warmup) samples.get(arm)!.push(s);
      }
      loads.push(loadAverage());
      process.stderr.write(`\rbench: cli ${i + 1}/${total}`);
    }
    process.stderr.write("\n");
    const med = (arm: string, k: keyof Sample) => median(samples.get(arm)!.map((s) => s[k]));
    const runcWall = med("runc", "wallMs");
    const podmanWall = med("podman", "wallMs");
    const ctrWall = med("ctr", "wallMs");
    lines.push(
      `### One container: /bin/true, --rm (N = ${opts.runs} per arm, +${opts.warmup} warm-up, interleaved)`,
      "",
      "| arm | wall ms (median) | min–max | cpu ms | peak RSS MiB | ÷ runc | ÷ podman | ÷ ctr |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const arm of Object.keys(arms)) {
      const w = med(arm, "wallMs");
      const ws = samples.get(arm)!.map((s) => s.wallMs);
      lines.push(
        `| ${arm} | ${f1(w)} | ${f1(Math.min(...ws))}–${f1(Math.max(...ws))} | ${f1(med(arm, "cpuMs"))}${arm === "ctr" ? "*" : ""} | ${f1(med(arm, "rssMiB"))} | ${f2(w / runcWall)} | ${f2(w / podmanWall)} | ${f2(w / ctrWall)} |`,
      );
    }
    lines.push(
      "",
      "\\* ctr: the client's own cpu only; containerd and the shim (not its children) are not counted.",
      "",
    );
  }

  // ---------- 2. lib ----------
  if (!opts.skip.has("lib")) {
    const count = opts.libCount;
    const libBundle = makeBundle("lib", rootfs, template);
    const crunBundle = makeBundle("crun-loop", rootfs, template, true);
    const runcBundle = makeBundle("runc-loop", rootfs, template);
    const runtime = new Runtime({ root: join(work, "state", "runtime-lib"), warn: () => {} });
    await crunNs.start();
    engine = new Engine({ root: pivotRoot, warn: () => {} });
    const loop = (rt: string, bundle: string, round: number, ns: boolean): string[] => {
      const root = join(work, "state", `${rt}-loop`);
      mkdirSync(root, { recursive: true });
      const body = `for i in $(seq 1 ${count}); do ${rt} --root ${root} run --bundle ${bundle} l${round}-$i || exit 1; done`;
      // crun 1.8 refuses a hybrid host, and puts a cgroupsPath at the root of each hierarchy: it
      // runs in a mount and cgroup namespace where the cgroup2 mount is hidden under a tmpfs and
      // the v1 hierarchies are mounted again with our own cgroup as their root.
      return ns ? crunNs.argv(["sh", "-c", body]) : ["sh", "-c", body];
    };
    interface LibSample {
      wallMs: number;
      cpuMs: number;
      phases?: { create: number[]; start: number[]; exit: number[] };
    }
    const arms: Record<string, (round: number) => Promise<LibSample>> = {
      "runtime-lib": async (round) => {
        const cpu0 = selfCpuMs();
        const t0 = performance.now();
        for (let i = 0; i < count; i++) {
          const code = await runtime.run(`rt${round}-${i}`, {
            bundle: libBundle,
            stdio: ["ignore", "ignore", "ignore"],
          });
          if (code !== 0) throw new Error(`Runtime.run exited with ${code}`);
        }
        return { wallMs: performance.now() - t0, cpuMs: selfCpuMs() - cpu0 };
      },
      "engine-lib": async () => {
        const phases = { create: [] as number[], start: [] as number[], exit: [] as number[] };
        const cpu0 = selfCpuMs();
        const t0 = performance.now();
        for (let i = 0; i < count; i++) {
          const a = performance.now();
          const info = await engine!.create({
            image: IMAGE,
            cmd: ["/bin/true"],
            autoRemove: true,
            network: "none",
          });
          const b = performance.now();
          const h = await engine!.startAttached(info.id, "ignore");
          const c = performance.now();
          const code = await h.wait();
          if (code !== 0) throw new Error(`Engine container exited with ${code}`);
          phases.create.push(b - a);
          phases.start.push(c - b);
          phases.exit.push(performance.now() - c);
        }
        return { wallMs: performance.now() - t0, cpuMs: selfCpuMs() - cpu0, phases };
      },
      // Engine.run: what `pivot run` does, create and start under one hold of the container's lock.
      "engine-run": async () => {
        const cpu0 = selfCpuMs();
        const t0 = performance.now();
        for (let i = 0; i < count; i++) {
          const h = await engine!.run({
            image: IMAGE,
            cmd: ["/bin/true"],
            autoRemove: true,
            network: "none",
            stdio: "ignore",
          });
          const code = await h.wait();
          if (code !== 0) throw new Error(`Engine container exited with ${code}`);
        }
        return { wallMs: performance.now() - t0, cpuMs: selfCpuMs() - cpu0 };
      },
      "crun-loop": async (round) => {
        const s = measured(loop("crun", crunBundle, round, true));
        return { wallMs: s.wallMs, cpuMs: s.cpuMs };
      },
      "runc-loop": async (round) => {
        const s = measured(loop("runc", runcBundle, round, false));
        return { wallMs: s.wallMs, cpuMs: s.cpuMs };
      },
    };
    // Warm-up: module loading, the image's layers, the first cgroups.
    await runtime.run("rt-warm", { bundle: libBundle, stdio: ["ignore", "ignore", "ignore"] });
    await (await engine.run({ image: IMAGE, cmd: ["true"], autoRemove: true, stdio: "ignore" }))
      .wait()
      .then((c) => (c === 0 ? c : Promise.reject(new Error(`warm-up exited ${c}`))));
    const samples = new Map<string, LibSample[]>(Object.keys(arms).map((a) => [a, []]));
    for (let round = 0; round < opts.libRounds; round++) {
      for (const arm of shuffle(Object.keys(arms))) {
        samples.get(arm)!.push(await arms[arm]!(round));
        loads.push(loadAverage());
      }
      process.stderr.write(`\rbench: lib ${round + 1}/${opts.libRounds}`);
    }
    process.stderr.write("\n");
    const med = (arm: string, k: "wallMs" | "cpuMs") => median(samples.get(arm)!.map((s) => s[k]));
    const crunWall = med("crun-loop", "wallMs");
    const crunCpu = med("crun-loop", "cpuMs");
    lines.push(
      `### The library path: ${count} sequential /bin/true containers (${opts.libRounds} rounds per arm, interleaved)`,
      "",
      `| arm | wall s per ${count} (median) | ms per container | cpu ms per container | wall ÷ crun loop | cpu ÷ crun loop |`,
      "| --- | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const arm of Object.keys(arms)) {
      const w = med(arm, "wallMs");
      const c = med(arm, "cpuMs");
      lines.push(
        `| ${arm} | ${f2(w / 1000)} | ${f1(w / count)} | ${f1(c / count)} | ${f2(w / crunWall)} | ${f2(c / crunCpu)} |`,
      );
    }
    const ph = samples.get("engine-lib")!.flatMap((s) => (s.phases ? [s.phases] : []));
    const phase = (k: "create" | "start" | "exit") => f1(median(ph.flatMap((p) => p[k])));
    lines.push(
      "",
      `engine-lib per container, median ms: create ${phase("create")} (image resolved, overlay mounted, config written); startAttached ${phase("start")} (until the process runs); exit ${phase("exit")} (until wait() resolves: exit, runtime delete, overlay unmounted, container removed).`,
      "",
    );
  }

  // ---------- 3. monitor ----------
  if (!opts.skip.has("monitor")) {
    const rows = new Map<string, { rss: number; anon: number; pss: number; comm: string }[]>([
      ["pivot", []],
      ["podman", []],
      ["ctr", []],
    ]);
    for (let i = 0; i < opts.monitorRuns; i++) {
      const id = must(pivotCmd[0]!, [
        ...pivotCmd.slice(1),
        "--root",
        pivotRoot,
        "run",
        "-d",
        "--name",
        `mon${i}`,
        IMAGE,
        "sleep",
        "1000",
      ]).trim();
      const state = JSON.parse(
        readFileSync(join(pivotRoot, "containers", id, "state.json"), "utf8"),
      ) as { monitorPid: number };
      podman.must([
        "run",
        "-d",
        "--name",
        `mon${i}`,
        "--network",
        "none",
        "--cgroup-parent",
        podmanParent,
        IMAGE,
        "sleep",
        "1000",
      ]);
      const conmon = Number(
        podman.must(["inspect", "--format", "{{.State.ConmonPid}}", `mon${i}`]),
      );
      ctrd.must([
        "run",
        "-d",
        "--cgroup",
        `${parent}-ctr-mon${i}`,
        IMAGE,
        `mon${i}`,
        "sleep",
        "1000",
      ]);
      // Idle for a while, then read.
      sleep(2000);
      rows.get("pivot")!.push(memoryOf(state.monitorPid));
      rows.get("podman")!.push(memoryOf(conmon));
      rows.get("ctr")!.push(memoryOf(ctrd.shimPid(`mon${i}`)));
      run(pivotCmd[0]!, [...pivotCmd.slice(1), "--root", pivotRoot, "rm", "-f", id]);
      podman.run(["rm", "--force", "--time", "0", `mon${i}`]);
      ctrd.must(["task", "kill", "-s", "SIGKILL", `mon${i}`]);
      for (
        let k = 0;
        k < 50 && run("ctr", ctrd.argv(["task", "rm", `mon${i}`]).slice(1)).status;
        k++
      )
        sleep(100);
      ctrd.must(["container", "rm", `mon${i}`]);
      loads.push(loadAverage());
    }
    lines.push(
      `### Monitor of an idle detached container (\`sleep 1000\`; ${opts.monitorRuns} containers each, medians; KiB)`,
      "",
      "| engine | monitor process | RSS | anonymous RSS | PSS |",
      "| --- | --- | ---: | ---: | ---: |",
    );
    for (const [engineName, r] of rows) {
      lines.push(
        `| ${engineName} | ${r[0]?.comm ?? "?"} | ${median(r.map((x) => x.rss))} | ${median(r.map((x) => x.anon))} | ${median(r.map((x) => x.pss))} |`,
      );
    }
    lines.push("");
  }
} catch (err) {
  cleanup();
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
}
cleanup();

const out = ["```", ...machineFacts(loads), ...versions, ...notes, "```", "", ...lines].join("\n");
process.stdout.write(`${out}\n`);
if (opts.out) writeFileSync(opts.out, `${out}\n`);
