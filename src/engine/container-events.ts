// The events of a container's start and end that come in groups, as Docker's: its volumes'
// `mount` before its `start`; `oom` (when the OOM killer ended it), `die`, then its volumes'
// `unmount`. Apart from events.ts (the file and its reader): the OOM check reads the cgroup.
import { closeSync, openSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { containerAttributes, emitEvent } from "./events.ts";

type EventContext = Pick<EngineContext, "runRoot" | "warn">;

/**
 * A container event with its attributes (image, name, labels) and MORE: `top`, `update`, `attach`,
 * `export`... Its record is read for them; a container removed meanwhile has none to report.
 */
export function emitContainerEvent(
  ctx: Pick<EngineContext, "runRoot" | "warn" | "containers">,
  id: string,
  action: string,
  more: Record<string, string> = {},
): void {
  let r: ContainerRecord;
  try {
    r = ctx.containers.load(id);
  } catch {
    return;
  }
  emitEvent(ctx, "container", action, id, containerAttributes(r, more));
}

/** Docker's volume `mount` event attributes of each of R's volumes (none for binds or tmpfs). */
export function volumeMountAttributes(
  id: string,
  r: Pick<ContainerRecord, "volumes" | "options" | "inheritedMounts">,
): { name: string; attributes: Record<string, string> }[] {
  if (r.volumes.length === 0) return [];
  const specs = [...(r.options.mounts ?? []), ...(r.inheritedMounts ?? [])];
  return r.volumes.map((v) => {
    const spec = specs.find((m) => m.type === "volume" && m.target === v.target);
    return {
      name: v.name,
      attributes: {
        container: id,
        destination: v.target,
        driver: "local",
        // A volume's propagation is Docker's "" (only binds have one, rprivate by default).
        propagation: "",
        "read/write": String(!spec?.readOnly),
      },
    };
  });
}

/** A start: its volumes' `mount` events, then `start`. */
export function emitStartEvents(ctx: EventContext, id: string, r: ContainerRecord): void {
  for (const v of volumeMountAttributes(id, r))
    emitEvent(ctx, "volume", "mount", v.name, v.attributes);
  emitEvent(ctx, "container", "start", id, containerAttributes(r));
}

/** The mark of run RUNID's end reported: <container>/ended-<runId>. */
function runEndMark(ctx: Pick<EngineContext, "containers">, id: string, runId: string): string {
  return join(ctx.containers.dir(id), `ended-${runId}`);
}

/**
 * Whether this process is the one to report the end of run RUNID: `stop` (which sees the exit
 * first, and reports it before its own `stop`, as Docker's order is), the exit hook (conmon's
 * `pivot container-cleanup`, or the attached monitor) and `rm -f` may each come to it, and one
 * run has one `die`. The first to create the mark wins; a container gone meanwhile was reported
 * by its removal. Any other failure reports it rather than lose it.
 */
function claimRunEnd(ctx: Pick<EngineContext, "containers">, id: string, runId: string): boolean {
  try {
    closeSync(openSync(runEndMark(ctx, id, runId), "wx", 0o600));
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== "EEXIST" && code !== "ENOENT";
  }
}

/** The run's end is written (its die and unmounts): the mark says so, for a `stop` waiting. */
function markRunEndReported(
  ctx: Pick<EngineContext, "containers">,
  id: string,
  runId: string,
): void {
  try {
    writeFileSync(runEndMark(ctx, id, runId), "reported\n");
  } catch {}
}

/**
 * Waits (up to MS) until the process that claimed run RUNID's end has written it, so that a
 * `stop` which lost the claim to the exit hook still comes after the die, as Docker's does. A
 * mark gone (the container removed, or started again) counts as written; a claimer killed before
 * it wrote leaves the wait to its limit.
 */
export async function runEndReported(
  ctx: Pick<EngineContext, "containers">,
  id: string,
  runId: string,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    let text: string;
    try {
      text = readFileSync(runEndMark(ctx, id, runId), "utf8");
    } catch {
      return;
    }
    if (text !== "") return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A new start: the mark of the last run's end goes (no other reporter of it is left). */
export function forgetRunEnd(ctx: Pick<EngineContext, "containers">, id: string): void {
  const runId = ctx.containers.runState(id)?.runId;
  if (runId === undefined) return;
  try {
    unlinkSync(runEndMark(ctx, id, runId));
  } catch {}
}

/**
 * A run's end: `oom` if the OOM killer ended it (exit code 137 and a kill counted in its cgroup,
 * still there until the runtime's delete), `die` with its exit code, then its volumes' `unmount`;
 * once per run (RUNID, when given): nothing, and false, if another process claimed it first.
 */
export async function emitExitEvents(
  ctx: Pick<EngineContext, "runRoot" | "warn" | "containers">,
  id: string,
  r: ContainerRecord,
  exitCode: number | null,
  runId: string | undefined,
): Promise<boolean> {
  // Looked at before the claim: from the claim to the last event nothing waits, so a process
  // killed in between (it would leave the run without a die) has the shortest window to be in.
  const oom = exitCode === 137 && (await oomKilled(ctx, id));
  if (runId !== undefined && !claimRunEnd(ctx, id, runId)) return false;
  if (oom) emitEvent(ctx, "container", "oom", id, containerAttributes(r));
  emitEvent(ctx, "container", "die", id, {
    ...containerAttributes(r),
    ...(exitCode !== null ? { exitCode: String(exitCode) } : {}),
  });
  for (const v of r.volumes)
    emitEvent(ctx, "volume", "unmount", v.name, { container: id, driver: "local" });
  if (runId !== undefined) markRunEndReported(ctx, id, runId);
  return true;
}

/**
 * Whether the OOM killer killed a process of the container's last run (its cgroup's memory
 * events: memory.oom_control on v1, memory.events on v2). False when the cgroup is gone (an
 * attached run's runtime deleted it already) or has no memory controller.
 */
async function oomKilled(ctx: Pick<EngineContext, "containers">, id: string): Promise<boolean> {
  const paths = ctx.containers.runState(id)?.cgroupPaths;
  if (!paths) return false;
  try {
    const [{ Cgroup }, { readOomKills }] = await Promise.all([
      import("../cgroups/manager.ts"),
      import("../cgroups/stats.ts"),
    ]);
    return (readOomKills(new Cgroup(paths).layout()) ?? 0) > 0;
  } catch {
    return false; // not an event worth failing the cleanup for
  }
}
