// `pivot update`: a container's limits and restart policy changed after create, as `docker update`
// does: applied to its cgroup at once when it runs (through its runtime's `update`, which puts the
// old limits back if the kernel refuses one of the new), and kept in its record and config.json
// for every later start, the record first, whole (pending-update.ts: a crash between the two
// files is finished by the next start).
import { join } from "node:path";
import type { Resources, Spec } from "../oci/spec.ts";
import { ociResources, parseSize } from "./config.ts";
import { rt, status } from "./container-runtime.ts";
import { type ContainerRecord, readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import { finishPendingUpdate } from "./pending-update.ts";
import { applyProcessOptions } from "./process-options.ts";
import { checkRestartOptions } from "./restart-state.ts";
import type { ContainerOptions } from "./types.ts";

/** What `update` may change: the resource options of `run`, and the restart policy. */
export type UpdateOptions = Pick<
  ContainerOptions,
  | "memory"
  | "memorySwap"
  | "cpus"
  | "cpuShares"
  | "cpusetCpus"
  | "cpusetMems"
  | "pidsLimit"
  | "restart"
>;

const RESOURCE_KEYS = [
  "memory",
  "memorySwap",
  "cpus",
  "cpuShares",
  "cpusetCpus",
  "cpusetMems",
  "pidsLimit",
] as const;

/**
 * The cgroup resources that CHANGES set, as linux.resources fields (no device rules), computed by
 * the same code as at create so that `update --cpus 2` means what `run --cpus 2` does.
 */
export function resourcePatch(changes: UpdateOptions): Resources {
  const asked: ContainerOptions = { image: "" };
  for (const k of RESOURCE_KEYS) {
    if (changes[k] !== undefined) (asked as unknown as Record<string, unknown>)[k] = changes[k];
  }
  const spec = { process: {}, linux: { resources: ociResources(asked) } } as unknown as Spec;
  applyProcessOptions(spec, asked);
  const { devices: _rules, ...patch } = spec.linux!.resources!;
  // --pids-limit 0 or -1: no limit, as docker update's -1 (run's leaves pids out; here that was
  // no change at all, while container.json said there was no limit).
  if (changes.pidsLimit !== undefined && changes.pidsLimit <= 0) patch.pids = { limit: -1 };
  return patch;
}

export async function update(
  ctx: EngineContext,
  ref: string,
  changes: UpdateOptions,
): Promise<void> {
  const store = ctx.containers;
  const id = store.resolveId(ref);
  if (!RESOURCE_KEYS.some((k) => changes[k] !== undefined) && changes.restart === undefined) {
    throw new EngineError("pivot update: nothing to change", {
      hint: "give at least one of --memory, --memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --cpuset-mems, --pids-limit, --restart",
    });
  }
  await store.withLock(id, async () => {
    const r = finishPendingUpdate(ctx, id, store.load(id));
    const options: ContainerOptions = { ...r.options };
    for (const [k, v] of Object.entries(changes)) {
      if (v !== undefined) (options as unknown as Record<string, unknown>)[k] = v;
    }
    checkRestartOptions(options, () => ctx.conmonPath !== null);
    // --memory-swap alone: the memory+swap limit goes with the memory limit the container has
    // (computed alone, it set nothing, while container.json said it had changed).
    const asked: UpdateOptions = { ...changes };
    if (changes.memorySwap !== undefined && changes.memory === undefined) {
      if (r.options.memory === undefined) {
        throw new EngineError(`--memory-swap needs a memory limit: container ${r.name} has none`, {
          hint: "give --memory too, e.g. pivot update --memory 256m --memory-swap 512m",
        });
      }
      asked.memory = r.options.memory;
    }
    // --memory alone keeps the memory+swap limit (since 2x --memory by default): a memory limit
    // above it is refused here, as Docker refuses it, rather than by the kernel half-way.
    const swapNow = r.options.memorySwap;
    if (changes.memory !== undefined && changes.memorySwap === undefined && swapNow !== undefined) {
      const swap = swapNow === -1 || swapNow === "-1" ? -1 : parseSize(swapNow);
      if (swap > 0 && parseSize(changes.memory) > swap) {
        throw new EngineError(
          `--memory ${changes.memory} is above container ${r.name}'s memory+swap limit (${swap} bytes)`,
          {
            hint: "update the swap limit at the same time: --memory-swap (memory and swap together), or -1 for unlimited swap",
          },
        );
      }
    }
    const patch = resourcePatch(asked);
    const dir = store.dir(id);
    let pendingResources: Resources | undefined;
    if (Object.keys(patch).length > 0) {
      const st = status(ctx, id);
      // Running (or paused): its cgroup now, all or nothing; the runtime checks and records the
      // merged limits. Refused, nothing of the update is recorded either.
      if (st.status === "running" || st.status === "paused") {
        await rt(ctx, id).update(id, patch);
      }
      // Every later start: config.json's resources.
      const linux = readJson<Spec>(join(dir, "config.json"))?.linux;
      if (linux) {
        const base = linux.resources ?? {};
        pendingResources = {
          ...base,
          ...patch,
          ...(patch.memory ? { memory: { ...base.memory, ...patch.memory } } : {}),
          ...(patch.cpu ? { cpu: { ...base.cpu, ...patch.cpu } } : {}),
        };
      }
    }
    // The commit: one rename of the whole record, then config.json follows (pending-update.ts).
    const committed: ContainerRecord = {
      ...r,
      options,
      ...(pendingResources ? { pendingResources } : {}),
    };
    writeJsonAtomic(join(dir, "container.json"), committed);
    finishPendingUpdate(ctx, id, committed);
    emitEvent(ctx, "container", "update", id, containerAttributes(committed));
  });
}
