// --pid container:NAME: the container runs in another container's PID namespace (to see and
// debug its processes, as `docker run --pid container:NAME` does). Checked at create; the
// namespace's path goes into config.json at each start, from that container's running init.
import { join } from "node:path";
import type { Spec } from "../oci/spec.ts";
import { status } from "./container-runtime.ts";
import { type ContainerRecord, readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import type { ContainerOptions } from "./types.ts";

const PREFIX = "container:";

/** The container --pid container:NAME names (which must exist), or null for other modes. */
export function pidNamespaceDonor(ctx: EngineContext, o: ContainerOptions): ContainerRecord | null {
  if (!o.pid?.startsWith(PREFIX)) return null;
  const ref = o.pid.slice(PREFIX.length);
  let id: string;
  try {
    id = ctx.containers.resolveId(ref);
  } catch (err) {
    throw new EngineError(`--pid ${o.pid}: no such container ${ref}`, {
      hint: "create and start that container first",
      cause: err,
    });
  }
  return ctx.containers.load(id);
}

/**
 * At start: config.json joins the PID namespace of the container --pid names, through its init's
 * /proc/PID/ns/pid; that container must be running.
 */
export function joinPidNamespaceOf(ctx: EngineContext, r: ContainerRecord): void {
  const donor = pidNamespaceDonor(ctx, r.options);
  if (!donor) return;
  const ref = r.options.pid!.slice(PREFIX.length);
  const st = status(ctx, donor.id);
  if ((st.status !== "running" && st.status !== "paused") || st.pid <= 0) {
    throw new EngineError(`cannot join the PID namespace of container ${ref}: it is not running`, {
      hint: `start it first: pivot start ${ref}`,
    });
  }
  const file = join(ctx.containers.dir(r.id), "config.json");
  const spec = readJson<Spec>(file);
  if (!spec?.linux?.namespaces) throw new EngineError(`container ${r.name} has no config.json`);
  spec.linux.namespaces = spec.linux.namespaces.map((n) =>
    n.type === "pid" ? { type: "pid", path: `/proc/${st.pid}/ns/pid` } : n,
  );
  writeJsonAtomic(file, spec);
}
