// Which directory holds each controller of a container's cgroup: on a v1 host one directory per
// hierarchy, on v2 the one unified directory, on a hybrid host whichever has the controller
// (a controller bound to a v1 hierarchy is never available in the v2 one).
import type { HostCgroups } from "./hierarchy.ts";

export interface ControllerPlace {
  version: 1 | 2;
  /** The container's cgroup directory in that hierarchy. */
  dir: string;
  /** Where the hierarchy is mounted (v2: the controllers are enabled from here down). */
  mountPoint: string;
}

export interface Layout {
  /** Controller name (v1 names for v1 hierarchies, v2 names for the unified one) → place. */
  controllers: Map<string, ControllerPlace>;
  /** The container's directory in the v2 hierarchy, when the host has one. */
  unified?: { dir: string; mountPoint: string };
}

export function layoutOf(host: HostCgroups, paths: Record<string, string>): Layout {
  const controllers = new Map<string, ControllerPlace>();
  let unified: Layout["unified"];
  for (const h of host.hierarchies) {
    const dir = paths[h.name];
    if (dir === undefined) continue;
    if (h.version === 2) unified = { dir, mountPoint: h.mountPoint };
  }
  for (const h of host.hierarchies) {
    const dir = paths[h.name];
    if (dir === undefined || h.version !== 1) continue;
    for (const c of h.controllers)
      if (!controllers.has(c)) controllers.set(c, { version: 1, dir, mountPoint: h.mountPoint });
  }
  for (const h of host.hierarchies) {
    const dir = paths[h.name];
    if (dir === undefined || h.version !== 2) continue;
    for (const c of h.controllers) {
      // v1 names of the v2 controllers, so a lookup by either finds v1 first.
      if (c === "io" && controllers.has("blkio")) continue;
      if (!controllers.has(c)) controllers.set(c, { version: 2, dir, mountPoint: h.mountPoint });
    }
  }
  return unified ? { controllers, unified } : { controllers };
}
