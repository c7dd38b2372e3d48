/**
 * Running builds: `<root>/builds/<id>`, one file per `pivot build` in progress, naming its process
 * (pid and /proc start time, so that a pid reused by another process does not keep a dead build
 * alive), the images it has made so far (its untagged intermediates, a stage's result) and the
 * containers it creates. While the build's process lives, garbage collection keeps those images
 * (gc.ts: they are roots) and `image prune` leaves them; once it is gone (SIGKILL: no cleanup
 * ran), the record tells what it left, for the engine to remove (src/engine/build/leftovers.ts).
 * A record is written by temporary file, fsync and rename; it is read as untrusted (every field
 * checked; its directory under tmp is derived from the id, never read from the file).
 */
import { readdirSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "../runtime/state.ts";
import { isDigest } from "./digest.ts";
import type { ImageStore } from "./store.ts";
import { type Descriptor, manifestDescriptorOf } from "./types.ts";

export interface BuildRun {
  /** 16 hex characters: the record's file name, and the name of the build's directory in tmp. */
  id: string;
  pid: number;
  /** Field 22 of /proc/PID/stat when the build started. */
  startTime: string;
  /** The manifests of the images the build made or listed (cache hits), in order. */
  images: Descriptor[];
  /**
   * The manifests of the images it builds on but did not make (FROM's, COPY --from's): kept
   * while it runs, as its own are, and never removed for it once it is dead.
   */
  uses: Descriptor[];
  /**
   * Of `images`, the digests the build put into index.json (made, or a cache hit it listed),
   * each named before it is listed: all that a dead build's sweep may take out again. A cache
   * hit that was listed already (a user's untagged image) is not the build's to remove.
   */
  made: string[];
  /** The names of the containers it created (pivot-build-<12 hex>). */
  containers: string[];
}

/**
 * The label a build puts on each container it creates, its value the build's id: a killed
 * build's record names containers, and only those that carry its id are removed for it (anyone
 * may name a container pivot-build-..., and a record names whatever it holds).
 */
export const BUILD_RUN_LABEL = "io.pivot.build.run";

const ID = /^[0-9a-f]{16}$/;
const CONTAINER = /^pivot-build-[0-9a-f]{12}$/;
const MAX_RECORD = 1 << 20;

function runsDir(store: ImageStore): string {
  return join(store.root, "builds");
}

/** The build's own directory under the store's tmp (spools, COPY --from's mounts). */
export function buildRunDir(store: ImageStore, id: string): string {
  if (!ID.test(id)) throw new Error(`build id ${id} is not 16 hex characters`);
  return join(store.root, "tmp", `build-${id}`);
}

/** A record for this process's new build (not written yet). */
export function newBuildRun(id: string): BuildRun {
  const stat = procStat(process.pid);
  if (stat === null) throw new Error(`cannot read /proc/${process.pid}/stat`);
  return {
    id,
    pid: process.pid,
    startTime: stat.startTime,
    images: [],
    uses: [],
    made: [],
    containers: [],
  };
}

/** Writes (or rewrites) RUN's record. */
export async function writeBuildRun(store: ImageStore, run: BuildRun): Promise<void> {
  const { mkdir } = await import("node:fs/promises");
  await mkdir(runsDir(store), { recursive: true, mode: 0o700 });
  await store.writeFileAtomic(join(runsDir(store), run.id), `${JSON.stringify(run)}\n`);
}

export function removeBuildRun(store: ImageStore, id: string): void {
  if (!ID.test(id)) return;
  try {
    unlinkSync(join(runsDir(store), id));
  } catch {}
}

/** Whether RUN's process still runs: the same pid with the same start time, not a zombie. */
export function buildRunAlive(run: BuildRun): boolean {
  const st = procStat(run.pid);
  return st !== null && st.startTime === run.startTime && st.state !== "Z" && st.state !== "X";
}

/** A record's text, checked field by field; null when it is not a well-formed record. */
export function parseBuildRun(id: string, text: string): BuildRun | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const r = v as Partial<Record<keyof BuildRun, unknown>>;
  if (
    !ID.test(id) ||
    r.id !== id ||
    typeof r.pid !== "number" ||
    !Number.isSafeInteger(r.pid) ||
    r.pid <= 0 ||
    typeof r.startTime !== "string" ||
    !/^\d+$/.test(r.startTime) ||
    !Array.isArray(r.images) ||
    !(r.uses === undefined || Array.isArray(r.uses)) ||
    !(r.made === undefined || Array.isArray(r.made)) ||
    !Array.isArray(r.containers)
  )
    return null;
  const images = parseDescriptors(r.images);
  // A record of before `uses` has none.
  const uses = parseDescriptors(r.uses ?? []);
  if (images === null || uses === null) return null;
  // A record of before `made` listed only what the build made or listed.
  const made = (r.made as unknown[] | undefined) ?? images.map((d) => d.digest);
  if (!made.every((d) => typeof d === "string" && d.startsWith("sha256:") && isDigest(d)))
    return null;
  const containers = r.containers as unknown[];
  if (!containers.every((c) => typeof c === "string" && CONTAINER.test(c))) return null;
  return {
    id,
    pid: r.pid,
    startTime: r.startTime,
    images,
    uses,
    made: made as string[],
    containers: containers as string[],
  };
}

/** A record's list of manifest descriptors, each checked; null when one is not well-formed. */
function parseDescriptors(list: unknown[]): Descriptor[] | null {
  const out: Descriptor[] = [];
  for (const value of list) {
    const d = manifestDescriptorOf(value);
    if (d === null) return null;
    out.push(d);
  }
  return out;
}

/** Every well-formed record, with whether its build still runs. */
export function listBuildRuns(store: ImageStore): { run: BuildRun; alive: boolean }[] {
  let names: string[];
  try {
    names = readdirSync(runsDir(store));
  } catch {
    return [];
  }
  const out: { run: BuildRun; alive: boolean }[] = [];
  for (const n of names.sort()) {
    if (!ID.test(n)) continue;
    let text: string;
    try {
      const buf = readFileSync(join(runsDir(store), n));
      if (buf.length > MAX_RECORD) continue;
      text = buf.toString("utf8");
    } catch {
      continue;
    }
    const run = parseBuildRun(n, text);
    if (run !== null) out.push({ run, alive: buildRunAlive(run) });
  }
  return out;
}

/**
 * The manifests of the images running builds have made, and of those they build on: roots of
 * collection, kept by prune.
 */
export function runningBuildImages(store: ImageStore): Descriptor[] {
  return listBuildRuns(store).flatMap(({ run, alive }) =>
    alive ? [...run.images, ...run.uses] : [],
  );
}

/** The names of the containers running builds have created (COPY's are never started). */
export function runningBuildContainers(store: ImageStore): Set<string> {
  return new Set(listBuildRuns(store).flatMap(({ run, alive }) => (alive ? run.containers : [])));
}
