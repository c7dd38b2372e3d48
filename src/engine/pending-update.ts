// `pivot update`'s two files, kept in step across a crash. container.json, renamed into place
// whole, is where an update is decided: its options and, while config.json has yet to follow,
// the linux.resources config.json is to get (`pendingResources`). config.json is written next,
// then the mark goes. A pivot killed between the renames leaves the mark, and whoever next holds
// the container's lock to use config.json (a start, a restart, the next update) finishes the
// update first: the two never disagree where config.json is read.
import { join } from "node:path";
import type { Spec } from "../oci/spec.ts";
import { type ContainerRecord, readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";

/** Finishes an update R's record says is pending (its lock held); returns the record without it. */
export function finishPendingUpdate(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
): ContainerRecord {
  if (r.pendingResources === undefined) return r;
  const dir = ctx.containers.dir(id);
  const file = join(dir, "config.json");
  const spec = readJson<Spec>(file);
  if (spec?.linux) {
    spec.linux.resources = r.pendingResources;
    writeJsonAtomic(file, spec);
  }
  const { pendingResources: _written, ...done } = r;
  writeJsonAtomic(join(dir, "container.json"), done);
  return done;
}
