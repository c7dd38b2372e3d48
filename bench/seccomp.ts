// Benchmark: what a Docker-default-sized seccomp profile costs `pivot-runtime run` of /bin/true.
//
//   bun bench/seccomp.ts [--runs N] [--warmup N] [--runtime COMMAND] [--out FILE]
//
// Arms, interleaved (their order shuffled every round), each with its own --root:
//   none             no linux.seccomp
//   x86_64           Docker's default profile (defaultSeccompProfile) for x86_64 only
//   x86_64+x86+x32   the same profile with Docker's architectures for amd64
// and the two profiles again with PIVOT_SECCOMP_CACHE=0 ("nocache"): without the runtime's cache
// of compiled filters, every container has libseccomp build and load the BPF program; with it,
// only the first container of a profile does and the others load the stored program.
// Wall time around the command; cpu time is user+sys of its whole process tree (wait4's rusage,
// bench/measure.c, a subreaper, so the container's init is counted too). Medians.
// Every container's cgroup is <own>/pivot-bench-seccomp-PID/c below this process's own cgroup in
// every hierarchy (a relative cgroupsPath, which the runtime resolves against its own cgroup,
// ours; one container at a time); containers, cgroups and the temporary directory are removed at
// the end, also on failure or a signal.
// As root. A script, never a timed test: the numbers depend on the machine and its load.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import type { Seccomp, Spec } from "../src/oci/spec.ts";
import { defaultSeccompProfile } from "../src/security/seccomp-default.ts";
import { cleanupOnSignals, removeOwnCgroups } from "./common.ts";

const REPO = join(import.meta.dir, "..");

function usage(): never {
  process.stderr.write(
    "usage: bun bench/seccomp.ts [--runs N] [--warmup N] [--runtime COMMAND] [--out FILE]\n",
  );
  process.exit(2);
}

let runs = 20;
let warmup = 2;
let out: string | undefined;
let runtime: string[] = existsSync("/usr/local/bin/pivot-runtime")
  ? ["/usr/local/bin/pivot-runtime"]
  : [join(REPO, "node_modules/.bin/bun"), join(REPO, "bin/pivot-runtime.ts")];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const next = () => argv[++i] ?? usage();
  if (argv[i] === "--runs") runs = Number(next());
  else if (argv[i] === "--warmup") warmup = Number(next());
  else if (argv[i] === "--runtime") runtime = next().split(/\s+/);
  else if (argv[i] === "--out") out = next();
  else usage();
}
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(warmup) || warmup < 0) usage();
if (process.getuid?.() !== 0) throw new Error("bench/seccomp.ts runs containers: run it as root");

interface Arm {
  name: string;
  cache: boolean;
  root: string;
  bundle: string;
  wallMs: number[];
  cpuMs: number[];
}

const work = mkdtempSync(join(tmpdir(), "pivot-bench-seccomp-"));
const cgroupParent = `pivot-bench-seccomp-${process.pid}`;
const arms: Arm[] = [];
let cleaned = false;

/** Removes every container, the cgroups and the temporary directory. Safe to call twice. */
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const arm of arms) {
    const list = spawnSync(runtime[0]!, [...runtime.slice(1), "--root", arm.root, "list", "-q"], {
      encoding: "utf8",
    });
    for (const id of (list.stdout ?? "").split("\n").filter(Boolean))
      spawnSync(runtime[0]!, [...runtime.slice(1), "--root", arm.root, "delete", "--force", id]);
  }
  // Kills what is left in our cgroups (only our containers), then removes them.
  removeOwnCgroups(cgroupParent);
  rmSync(work, { recursive: true, force: true });
}

cleanupOnSignals(cleanup);

try {
  const measure = join(work, "measure");
  const cc = spawnSync("cc", ["-O2", "-o", measure, join(REPO, "bench/measure.c")], {
    encoding: "utf8",
  });
  if (cc.status !== 0) throw new Error(`building bench/measure.c failed: ${cc.stderr}`);
  const rootfs = join(work, "rootfs");
  const mk = spawnSync("sh", [join(REPO, "scripts/make-busybox-rootfs.sh"), rootfs], {
    encoding: "utf8",
  });
  if (mk.status !== 0) throw new Error(`make-busybox-rootfs failed: ${mk.stderr}`);
  const specDir = join(work, "spec");
  mkdirSync(specDir);
  const sp = spawnSync(runtime[0]!, [...runtime.slice(1), "spec", "--bundle", specDir], {
    encoding: "utf8",
  });
  if (sp.status !== 0) throw new Error(`spec failed: ${sp.stderr}`);
  const base = JSON.parse(readFileSync(join(specDir, "config.json"), "utf8")) as Spec;
  base.process!.terminal = false;
  base.process!.args = ["/bin/true"];
  base.root = { path: rootfs, readonly: true };
  // Relative: below the runtime's own cgroup, which is ours.
  base.linux!.cgroupsPath = `${cgroupParent}/c`;
  const docker = defaultSeccompProfile({ capabilities: base.process!.capabilities!.bounding! });
  const x86_64 = { ...docker, architectures: ["SCMP_ARCH_X86_64"] };
  const rules = docker.syscalls?.reduce((n, s) => n + s.names.length, 0) ?? 0;
  const all = (docker.architectures ?? []).map((a) => a.replace("SCMP_ARCH_", "").toLowerCase());
  const defs: [string, Seccomp | undefined, boolean][] = [
    ["none", undefined, true],
    ["x86_64", x86_64, true],
    [all.join("+"), docker, true],
    ["x86_64 nocache", x86_64, false],
    [`${all.join("+")} nocache`, docker, false],
  ];
  for (const [name, seccomp, cache] of defs) {
    const dir = join(work, `arm${arms.length}`);
    mkdirSync(join(dir, "bundle"), { recursive: true });
    const spec = structuredClone(base);
    if (seccomp) spec.linux!.seccomp = seccomp;
    else delete spec.linux!.seccomp;
    writeFileSync(join(dir, "bundle/config.json"), JSON.stringify(spec));
    arms.push({
      name,
      cache,
      root: join(dir, "state"),
      bundle: join(dir, "bundle"),
      wallMs: [],
      cpuMs: [],
    });
  }

  let n = 0;
  const once = (arm: Arm): { wallMs: number; cpuMs: number } => {
    const id = `bs-${process.pid}-${++n}`;
    const r = spawnSync(
      measure,
      [
        join(work, "pid"),
        join(work, "err"),
        ...runtime,
        "--root",
        arm.root,
        "run",
        "--bundle",
        arm.bundle,
        id,
      ],
      {
        encoding: "utf8",
        env: { ...process.env, ...(arm.cache ? {} : { PIVOT_SECCOMP_CACHE: "0" }) },
      },
    );
    const [wall, user, sys, , status] = r.stdout.trim().split(/\s+/).map(Number);
    if (r.status !== 0 || status !== 0) {
      const err = existsSync(join(work, "err")) ? readFileSync(join(work, "err"), "utf8") : "";
      throw new Error(`${arm.name}: run failed (status ${status}): ${r.stderr}${err}`);
    }
    return { wallMs: wall! / 1e6, cpuMs: (user! + sys!) / 1e3 };
  };

  for (let round = 0; round < warmup + runs; round++) {
    const order = [...arms].sort(() => Math.random() - 0.5);
    for (const arm of order) {
      const s = once(arm);
      if (round >= warmup) {
        arm.wallMs.push(s.wallMs);
        arm.cpuMs.push(s.cpuMs);
      }
    }
    process.stderr.write(`round ${round + 1}/${warmup + runs}\n`);
  }

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const none = arms[0]!;
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const lines = [
    `date: ${new Date().toISOString()}`,
    `machine: ${cpus().length} × ${cpus()[0]?.model.trim()}; load average at the end: ${load}`,
    `runtime: ${runtime.join(" ")}`,
    `profile: Docker's default for the spec's capabilities, ${docker.syscalls?.length} rules naming ${rules} syscalls`,
    `runs: ${runs} per arm (+${warmup} warm-up), interleaved, order shuffled every round`,
    "",
    "| arm | wall ms | cpu ms | wall − none | cpu − none |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...arms.map((a) => {
      const w = median(a.wallMs);
      const c = median(a.cpuMs);
      const dw = w - median(none.wallMs);
      const dc = c - median(none.cpuMs);
      const sign = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(1);
      return `| ${a.name} | ${w.toFixed(1)} | ${c.toFixed(1)} | ${a === none ? "" : sign(dw)} | ${a === none ? "" : sign(dc)} |`;
    }),
  ];
  const report = `${lines.join("\n")}\n`;
  process.stdout.write(report);
  if (out) writeFileSync(out, report);
} finally {
  cleanup();
}
