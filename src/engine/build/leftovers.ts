// What a `pivot build` killed before its cleanup ran (SIGKILL, a crash) left behind: its build
// containers (a RUN's may still run), the mounts and spools in its directory under tmp, its
// untagged intermediate images, found from its record of running builds
// (src/image/build-runs.ts). Only builds whose process is provably gone are touched: the same
// pid with another start time, or no such process; a live build's record is left alone. Of what
// a dead record names, only containers labelled with its id, and untagged images no container
// uses, are removed.
// `pivot build` sweeps before it starts (where the leftovers came from), and `image prune` and
// `system prune` before they prune (what a user runs to reclaim space); nothing else does, so
// that readers of the store (`pivot images`, `run`) never write to it.
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import {
  BUILD_RUN_LABEL,
  buildRunDir,
  listBuildRuns,
  removeBuildRun,
  runningBuildImages,
} from "../../image/build-runs.ts";
import { unmountOverlay } from "../../image/overlay.ts";
import type { ImageStore } from "../../image/store.ts";
import type { Engine } from "../engine.ts";

/** Mount points at or below DIR, deepest first (mountinfo's octal escapes decoded). */
export function mountsBelow(dir: string): string[] {
  let info: string;
  try {
    info = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  const points = info
    .split("\n")
    .map((l) =>
      (l.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    )
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
  return points.sort((a, b) => b.length - a.length);
}

/**
 * Removes what dead builds left (see the module comment); returns their ids. A build whose
 * directory still holds a mount that would not go keeps its record, for a later try.
 */
export async function removeDeadBuilds(engine: Engine, store: ImageStore): Promise<string[]> {
  const runs = listBuildRuns(store);
  if (runs.every((r) => r.alive)) return [];
  // An image a live build also uses (a cache hit both listed) stays listed for it.
  const live = new Set(runningBuildImages(store).map((d) => d.digest));
  const removed: string[] = [];
  for (const { run, alive } of runs) {
    if (alive) continue;
    for (const name of run.containers) {
      // Only a container that carries the build's id: a user's container may be named
      // pivot-build-..., and the record may name anything.
      let labels: Record<string, string>;
      try {
        labels = engine.inspect(name).labels;
      } catch {
        continue; // gone already
      }
      if (labels[BUILD_RUN_LABEL] !== run.id) continue;
      await engine.remove(name, { force: true, volumes: true }).catch(() => {});
    }
    const dir = buildRunDir(store, run.id);
    for (const m of mountsBelow(dir)) await unmountOverlay(m, { lazy: true }).catch(() => {});
    if (mountsBelow(dir).length > 0) continue;
    await rm(dir, { recursive: true, force: true });
    // The images containers use, the build's own gone: one the build listed may have been
    // tagged by its id and used, or untagged again, meanwhile.
    const used = new Set((await engine.list({ all: true })).map((c) => c.imageId));
    for (const d of run.images) {
      // Only what it listed itself: a cache hit listed already may be a user's untagged image.
      if (!run.made.includes(d.digest) || live.has(d.digest)) continue;
      // Named meanwhile (tagged by its id, or the build's tagged result): it is someone's image.
      const image = await store.resolve(d.digest).catch(() => null);
      if (image === null || image.names.length > 0 || used.has(image.id)) continue;
      // No event, as the build's own cleanup: an intermediate image is never announced.
      await store.removeManifest(d.digest, { events: false }).catch(() => {});
    }
    removeBuildRun(store, run.id);
    removed.push(run.id);
  }
  return removed;
}
