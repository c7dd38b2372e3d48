// `--trace`: where the time of a create or run goes, as a table of wall times.
//
// The runtime marks the points it passes (config loaded, plan compiled, launcher spawned, sync
// points, ready, start, exit, delete). With Op.Trace in the plan's stream, the launcher reports the
// time after every step it runs (Event.Trace), in whichever process runs it; those steps are
// grouped into phases (namespaces, mounts, pivot_root, ...). Everything is on one clock, this
// process's performance.now(): Op.Trace carries it, and the launcher reports its monotonic clock
// shifted onto it (a wall clock would drift from it by ~0.3 ms per second this process lives).
import type { Plan } from "./plan.ts";
import { Op, SyncPoint } from "./wire.ts";

/** Event.Trace's step index for "the launcher's main() began" and "the plan was read". */
export const TRACE_LAUNCHER_MAIN = -1;
export const TRACE_PLAN_READ = -2;

interface Entry {
  at: number;
  what: string;
  /** Launcher steps of one phase that follow each other are shown as one row. */
  phase?: string;
}

const PHASES: [string, number[]][] = [
  ["launcher: cgroup v2 device program (eBPF)", [Op.AttachDeviceFilter]],
  [
    "launcher: exec fifo, console socket",
    [Op.WaitForInit, Op.ReportExec, Op.UnmountAfterExit, Op.MakeFifo, Op.ConnectSocket],
  ],
  ["launcher: fork the setup process", [Op.ForkSetup]],
  ["setup: join the cgroup", [Op.JoinCgroup]],
  ["setup: namespaces", [Op.JoinNamespace, Op.Unshare, Op.TimeOffsets, Op.BecomeNamespaceRoot]],
  ["setup: fork the init", [Op.ForkInit]],
  ["init: session, hostname", [Op.NewSession, Op.SetHostname, Op.SetDomainname]],
  [
    "init: mounts, devices",
    [
      Op.Propagation,
      Op.PrivateMountOf,
      Op.Mount,
      Op.MountInRoot,
      Op.MountInRootNoSymlinks,
      Op.BindInRoot,
      Op.MkdirInRoot,
      Op.TouchInRoot,
      Op.MknodInRoot,
      Op.SymlinkInRoot,
    ],
  ],
  ["init: hooks", [Op.RunHook]],
  ["init: pivot_root", [Op.PivotRoot, Op.MoveRoot]],
  ["init: sysctl, oom_score_adj", [Op.WriteFile]],
  ["init: masked and read-only paths", [Op.MaskPath, Op.ReadonlyPath]],
  [
    "init: rlimits, credentials, capabilities, find the program",
    [
      Op.SetRlimit,
      Op.SetupTerminal,
      Op.SetGroups,
      Op.SetUser,
      Op.SetCapabilities,
      Op.SetBoundingSet,
      Op.NoNewPrivileges,
      Op.Umask,
      Op.Chdir,
      Op.FindExecutable,
    ],
  ],
  [
    "init: seccomp filter",
    [
      Op.SeccompInit,
      Op.SeccompArch,
      Op.SeccompAttr,
      Op.SeccompRule,
      Op.SeccompExport,
      Op.SeccompLoad,
      Op.SeccompLoadProgram,
    ],
  ],
  ["init: wait for start (exec fifo), then exec", [Op.WaitExecFifo]],
];
const phaseOf = new Map<number, string>();
for (const [name, ops] of PHASES) for (const op of ops) phaseOf.set(op, name);

/** The index of the plan's first ForkSetup (its length if none: a host plan), cached per plan. */
const forkAt = new WeakMap<Plan, number>();
function firstFork(plan: Plan): number {
  let at = forkAt.get(plan);
  if (at === undefined) {
    at = plan.steps.findIndex((s) => s.op === Op.ForkSetup);
    if (at < 0) at = plan.steps.length;
    forkAt.set(plan, at);
  }
  return at;
}

export class Trace {
  private readonly entries: Entry[] = [];

  /** `mainAt`: when the command's main() began (ms since the time origin). */
  constructor(mainAt: number = performance.now()) {
    this.entries.push({ at: mainAt, what: "main() reached: runtime start-up and module loading" });
  }

  /** The runtime reached a point. */
  mark(what: string): void {
    this.entries.push({ at: performance.now(), what });
  }

  /** A sync point: the launcher's event received (the runtime acts), or the reply sent. */
  sync(point: number, done: boolean): void {
    const name = Object.entries(SyncPoint).find(([, v]) => v === point)?.[0] ?? String(point);
    const what =
      point === SyncPoint.SetupChildCreated
        ? "id maps, cgroup join"
        : point === SyncPoint.Start
          ? "started"
          : "hooks";
    this.mark(
      done ? `sync ${name}: runtime done (${what}), reply sent` : `sync ${name}: event received`,
    );
  }

  /** A launcher report (Event.Trace): a step of the plan done, at `us` on this process's
   *  performance.now() clock (Op.Trace tied the launcher's clock to it). */
  launcherStep(plan: Plan, step: number, us: number): void {
    const at = us / 1000;
    if (step === TRACE_LAUNCHER_MAIN) {
      this.entries.push({ at, what: "launcher: main() reached (exec of the launcher)" });
      return;
    }
    if (step === TRACE_PLAN_READ) {
      this.entries.push({ at, what: `launcher: plan read (${plan.steps.length} steps)` });
      return;
    }
    const s = plan.steps[step];
    if (!s) return;
    if (s.op === Op.Sync) {
      this.entries.push({ at, what: `sync point: launcher resumes (${s.text})` });
      return;
    }
    // Before the setup process is forked, every step runs in the launcher, in the caller's
    // namespaces (the engine's overlay mount, Runtime's mountFirst), whatever its op.
    const inLauncher = step < firstFork(plan);
    const phase = phaseOf.get(s.op) ?? "init: other steps";
    this.entries.push({
      at,
      what: s.text,
      phase: inLauncher && !phase.startsWith("launcher:") ? "launcher: host steps" : phase,
    });
  }

  /** The table: when each row ended (ms since process start), how long it took, what it was. */
  render(title: string): string {
    const sorted = [...this.entries].sort((a, b) => a.at - b.at);
    const rows: { at: number; took: number; what: string }[] = [];
    let prev = 0;
    for (let i = 0; i < sorted.length; ) {
      const e = sorted[i]!;
      let j = i + 1;
      if (e.phase) while (j < sorted.length && sorted[j]!.phase === e.phase) j++;
      const group = sorted.slice(i, j);
      const last = group[group.length - 1]!;
      let what = e.phase ?? e.what;
      if (group.length > 1) {
        let slowest = 0;
        let slowestAt = 0;
        group.forEach((g, k) => {
          const took = g.at - (k === 0 ? prev : group[k - 1]!.at);
          if (took > slowest) {
            slowest = took;
            slowestAt = k;
          }
        });
        what += ` (${group.length} steps; slowest ${slowest.toFixed(2)}: ${group[slowestAt]!.what})`;
      } else if (e.phase) {
        what += `: ${e.what}`;
      }
      rows.push({ at: last.at, took: last.at - prev, what });
      prev = last.at;
      i = j;
    }
    // The "at" column as wide as its widest value: a library process lives long (100 s and more).
    const atWidth = Math.max(9, ...rows.map((r) => r.at.toFixed(2).length));
    const lines = [
      `${title} (wall time in ms; "at" counts from the start of this process)`,
      `${"at".padStart(atWidth)} ${"took".padStart(8)}  step`,
      `${(0).toFixed(2).padStart(atWidth)} ${"".padStart(8)}  process start`,
    ];
    for (const r of rows) {
      lines.push(
        `${r.at.toFixed(2).padStart(atWidth)} ${r.took.toFixed(2).padStart(8)}  ${r.what}`,
      );
    }
    return `${lines.join("\n")}\n`;
  }
}
