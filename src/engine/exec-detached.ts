// A detached exec (`pivot exec -d`) under conmon's exec mode, as podman runs one: conmon has the
// runtime start the process, holds it as a subreaper, writes its exit code and runs
// `pivot exec-cleanup ID EXECID`, which reports Docker's exec_die and removes the exec's directory.
// Without conmon (or rootless) the runtime starts it alone, and its end is nobody's to see.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Process } from "../oci/spec.ts";
import { emitContainerEvent } from "./container-events.ts";
import { runtimeCommandOf } from "./container-runtime.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { startConmonExec } from "./monitor.ts";
import { engineCommand } from "./restart-state.ts";

/**
 * Whether a detached exec runs under conmon: it is installed, and the engine is not rootless
 * (its exec runs outside the user namespace, where the exit command would have to enter it).
 */
export function execUnderConmon(ctx: EngineContext): boolean {
  return !ctx.rootless && ctx.conmonPath !== null;
}

/** <container>/exec/<execId>: the exec's process.json and conmon's files, the container's own untouched. */
function execDir(ctx: Pick<EngineContext, "containers">, id: string, execId: string): string {
  return join(ctx.containers.dir(id), "exec", execId);
}

/** conmon's exit command for an exec: `pivot exec-cleanup ID EXECID`. */
function execExitCommand(ctx: EngineContext, id: string, execId: string): string[] {
  return engineCommand(ctx, ["exec-cleanup", id, execId]);
}

/** Starts PROC in container R under conmon; resolves once it runs (rejects with the runtime's error). */
export async function startDetachedExec(
  ctx: EngineContext,
  r: ContainerRecord,
  proc: Process,
  execId: string,
): Promise<void> {
  const dir = execDir(ctx, r.id, execId);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(join(dir, "process.json"), JSON.stringify(proc), { mode: 0o600 });
    await startConmonExec({
      conmon: ctx.conmonPath!,
      id: r.id,
      execId,
      dir,
      runtime: runtimeCommandOf(ctx, r),
      exitCommand: execExitCommand(ctx, r.id, execId),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true }); // it never ran: there is no end to report
    throw err;
  }
}

const ID = /^[0-9a-f]{64}$/;

/**
 * The exit command: exec_die with the exit code conmon wrote, then the exec's directory goes.
 * Nothing is reported when the process never ran (no exit file) or the container is gone. Never
 * throws: conmon, its caller, has no one to tell.
 */
export function execEnded(ctx: EngineContext, id: string, execId: string): void {
  if (!ID.test(id) || !ID.test(execId)) return; // never a path outside the store
  const dir = execDir(ctx, id, execId);
  try {
    const exitCode = readFileSync(join(dir, "exit"), "utf8").trim();
    if (/^\d+$/.test(exitCode))
      emitContainerEvent(ctx, id, "exec_die", { execID: execId, exitCode });
  } catch {}
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {}
}
