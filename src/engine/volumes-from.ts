// --volumes-from CONTAINER[:ro|:rw]: the volumes and bind mounts of another container, at the same
// places, as Docker mounts them (its tmpfs mounts are its own), those it got by --volumes-from
// itself included (its record's inheritedMounts). Read-only where that container has them
// read-only, unless :ro or :rw says otherwise. An anonymous volume stays anonymous: the `rm -v`
// of the last container that uses it removes it (volumeUsers), as Docker's does.
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import type { MountSpec } from "./types.ts";

/** The mounts --volumes-from REFS adds beside OWN (the container's own -v/--mount/--tmpfs). */
export function volumesFromMounts(
  ctx: EngineContext,
  refs: readonly string[],
  own: readonly MountSpec[],
): MountSpec[] {
  const out: MountSpec[] = [];
  const taken = new Map(own.map((m) => [m.target, "this container's own mounts"]));
  for (const arg of refs) {
    const m = /^(.+?)(?::(ro|rw))?$/.exec(arg);
    const ref = m?.[1] ?? arg;
    const mode = m?.[2];
    let id: string;
    try {
      id = ctx.containers.resolveId(ref);
    } catch (err) {
      throw new EngineError(`--volumes-from ${arg}: no such container ${ref}`, {
        hint: "give the name or id of an existing container (pivot ps -a)",
        cause: err,
      });
    }
    const donor = ctx.containers.load(id);
    const readOnly = (was: boolean | undefined) =>
      mode === "ro" ? true : mode === "rw" ? false : (was ?? false);
    // Its own -v/--mount, and what its own --volumes-from gave it.
    const donorSpecs = [...(donor.options.mounts ?? []), ...(donor.inheritedMounts ?? [])];
    const theirs: MountSpec[] = [
      ...donorSpecs
        .filter((x) => x.type === "bind")
        .map((x) => ({ ...x, readOnly: readOnly(x.readOnly) })),
      ...donor.volumes.map((v) => {
        const spec = donorSpecs.find((x) => x.type === "volume" && x.target === v.target);
        // The volume exists already: mounted as it is, never filled again from an image.
        return {
          type: "volume" as const,
          source: v.name,
          target: v.target,
          readOnly: readOnly(spec?.readOnly),
          noCopy: true,
        };
      }),
    ];
    for (const x of theirs) {
      const other = taken.get(x.target);
      if (other !== undefined) {
        throw new EngineError(`duplicate mount point ${x.target}: from ${ref} and from ${other}`, {
          hint: "mount each path once: drop the -v/--mount for it, or one of the --volumes-from",
        });
      }
      taken.set(x.target, `--volumes-from ${ref}`);
      out.push(x);
    }
  }
  return out;
}

/** The names of the containers whose record names volume NAME (one being removed is not listed). */
export function volumeUsers(ctx: EngineContext, name: string, except?: string): string[] {
  const users: string[] = [];
  for (const id of ctx.containers.ids()) {
    if (id === except) continue;
    let r: ContainerRecord;
    try {
      r = ctx.containers.load(id);
    } catch {
      continue; // being created or removed
    }
    if (r.volumes.some((v) => v.name === name)) users.push(r.name);
  }
  return users;
}
