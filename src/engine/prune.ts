// `pivot container prune` and `pivot volume prune`, and the volumes containers use.
import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { runningBuildContainers } from "../image/build-runs.ts";
import type { EngineContext } from "./context.ts";
import { list } from "./inspect.ts";
import { remove } from "./lifecycle.ts";
import type { ContainerInfo, VolumeInfo } from "./types.ts";

/** Bytes of the files (not directories) under `path`, as Docker counts reclaimed space. */
function diskUsage(path: string): number {
  let total = 0;
  const walk = (p: string) => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) {
      total += st.size;
      return;
    }
    let names: string[] = [];
    try {
      names = readdirSync(p);
    } catch {}
    for (const n of names) walk(join(p, n));
  };
  walk(path);
  return total;
}

/**
 * Removes every container that is not running or paused (`pivot container prune`) and is no
 * running build's (build-runs.ts), optionally
 * only those `filter` accepts; returns their ids and the bytes their writable layers held.
 */
export async function prune(
  ctx: EngineContext,
  filter: (c: ContainerInfo) => boolean = () => true,
): Promise<{ removed: string[]; reclaimed: number }> {
  const removed: string[] = [];
  let reclaimed = 0;
  // A running build's COPY and ADD containers are created, never started: still its own.
  const building = runningBuildContainers(await ctx.images());
  for (const c of await list(ctx, { all: true })) {
    if (c.state.running || !filter(c) || building.has(c.name)) continue;
    const size = diskUsage(c.rootfs.upperdir);
    try {
      await remove(ctx, c.id);
      removed.push(c.id);
      reclaimed += size;
    } catch (err) {
      ctx.warn((err as Error).message);
    }
  }
  return { removed, reclaimed };
}

/**
 * Removes volumes no container uses (`pivot volume prune`): anonymous ones, and named ones too
 * with `all`, as Docker 23+ does. Returns their names and the bytes they held.
 */
export function pruneVolumes(
  ctx: EngineContext,
  options: { all?: boolean; filter?: (v: VolumeInfo) => boolean } = {},
): { removed: string[]; reclaimed: number } {
  const used = new Set<string>();
  for (const id of ctx.containers.ids()) {
    try {
      for (const v of ctx.containers.load(id).volumes) used.add(v.name);
    } catch {}
  }
  const removed: string[] = [];
  let reclaimed = 0;
  for (const v of ctx.volumes.list()) {
    if (used.has(v.name) || (!v.anonymous && !options.all)) continue;
    if (options.filter && !options.filter(v)) continue;
    const size = diskUsage(v.mountpoint);
    try {
      ctx.volumes.remove(v.name);
      removed.push(v.name);
      reclaimed += size;
    } catch (err) {
      ctx.warn((err as Error).message);
    }
  }
  return { removed, reclaimed };
}

/** Removes a volume (`pivot volume rm`), refused while a container refers to it. */
export function removeVolume(ctx: EngineContext, name: string): void {
  const users = ctx.containers
    .ids()
    .map((id) => ctx.containers.load(id))
    .filter((r) => r.volumes.some((v) => v.name === name))
    .map((r) => r.name);
  ctx.volumes.remove(name, users);
}
