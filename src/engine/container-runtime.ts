// A container's OCI runtime (Pivot's in-process, or another binary with `--runtime PATH`), the
// status derived from its files, monitor and runtime, and the cgroup directories of its runs.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Cgroup } from "../cgroups/manager.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { procStat } from "../runtime/state.ts";
import { type ContainerRecord, readJson } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { OciRuntimeCli } from "./oci-runtime.ts";
import { pendingRestart } from "./restart-state.ts";
import type { ContainerStatus } from "./types.ts";

export type Status = { status: ContainerStatus; exitCode: number | null; pid: number };

export function monitorAlive(pid: number, start: string): boolean {
  if (pid <= 0) return false;
  const st = procStat(pid);
  return st !== null && st.startTime === start && st.state !== "Z" && st.state !== "X";
}

/**
 * The runtime of a container: Pivot's in-process, or the OCI runtime binary given with
 * `runtime` (--runtime PATH), through its command line, with its state in <runRoot>/oci/<name>.
 */
export function rt(
  ctx: EngineContext,
  id: string,
  record?: ContainerRecord,
): Runtime | OciRuntimeCli {
  const path = (record ?? readJson<ContainerRecord>(join(ctx.containers.dir(id), "container.json")))
    ?.options.runtime;
  return path ? ociRuntime(ctx, path) : ctx.runtime;
}

function ociRuntime(ctx: EngineContext, path: string): OciRuntimeCli {
  let rt = ctx.ociRuntimes.get(path);
  if (!rt) {
    const name = path.replace(/\/+$/, "").split("/").pop() || "oci";
    rt = new OciRuntimeCli(path, join(ctx.runRoot, "oci", name));
    ctx.ociRuntimes.set(path, rt);
  }
  return rt;
}

/** The runtime command conmon runs for a container. */
export function runtimeCommandOf(ctx: EngineContext, r: ContainerRecord): string[] {
  const runtime = rt(ctx, r.id);
  if (runtime instanceof OciRuntimeCli) return runtime.command();
  return [...ctx.runtimeCommand, "--root", ctx.runtime.store.root];
}

/**
 * The container's status, from the exit file, its monitor and the runtime; "restarting" while
 * its exit hook waits to start it again, or is starting it (restart-state.ts).
 */
export function status(ctx: EngineContext, id: string): Status {
  const exit = ctx.containers.exitCode(id);
  if (exit !== null) {
    if (pendingRestart(ctx, id)) return { status: "restarting", exitCode: exit, pid: 0 };
    return { status: "exited", exitCode: exit, pid: 0 };
  }
  const rs = ctx.containers.runState(id);
  if (!rs) {
    const pending = pendingRestart(ctx, id); // a restart between its start's first steps
    if (pending) return { status: "restarting", exitCode: pending.exitCode, pid: 0 };
    return { status: "created", exitCode: null, pid: 0 };
  }
  let rtStatus: string | null = null;
  try {
    rtStatus = rt(ctx, id).state(id).status;
  } catch {}
  if (rtStatus === "paused") return { status: "paused", exitCode: null, pid: rs.pid };
  if (rtStatus === "running" || rtStatus === "created")
    return { status: "running", exitCode: null, pid: rs.pid };
  if (monitorAlive(rs.monitorPid, rs.monitorStart)) {
    // The process has exited (or is about to be created); the monitor writes the exit file.
    return { status: "running", exitCode: null, pid: rs.pid };
  }
  // Neither the process nor its monitor is there, and no exit code was recorded: exited, unless
  // a restart is removing the last run's files.
  const pending = pendingRestart(ctx, id);
  if (pending) return { status: "restarting", exitCode: pending.exitCode, pid: 0 };
  return { status: "exited", exitCode: rs.finishedAt ? null : 255, pid: 0 };
}

/** The cgroup directories of a created container, for its state.json. */
export function cgroupPathsOf(
  ctx: EngineContext,
  id: string,
): { cgroupPaths?: Record<string, string> } {
  try {
    const runtime = rt(ctx, id);
    const paths =
      runtime instanceof OciRuntimeCli
        ? Cgroup.forContainer(`/pivot-${id}`).paths
        : runtime.store.load(id).cgroupPaths;
    return { cgroupPaths: paths };
  } catch {
    return {};
  }
}

/** The cgroup of a container's current run (from state.json; the runtime's when missing). */
export function cgroupOfRun(ctx: EngineContext, id: string): Cgroup | null {
  const paths = ctx.containers.runState(id)?.cgroupPaths ?? cgroupPathsOf(ctx, id).cgroupPaths;
  return paths ? new Cgroup(paths) : null;
}

/**
 * Removes the cgroup directories of the container's last run (`paths`, from its state.json) if
 * they are still there: the runtime's delete removes them, but not when its state is gone (a
 * reboot, or a runtime state directory removed); processes left in them are killed first.
 */
export function releaseCgroups(
  ctx: EngineContext,
  id: string,
  paths: Record<string, string> | undefined,
): void {
  if (!paths || !Object.values(paths).some((p) => existsSync(p))) return;
  try {
    const cg = new Cgroup(paths);
    for (let i = 0; i < 100 && cg.pids().length > 0; i++) {
      cg.signalAll(9);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
    cg.destroy();
  } catch (err) {
    ctx.warn(`removing the cgroup of container ${id.slice(0, 12)}: ${(err as Error).message}`);
  }
}
