// --init: a small init as the container's PID 1 (Docker's docker-init is tini), which reaps
// orphaned processes and passes signals to the command, its child. Debian's tini package ships
// a static build, bound read-only into the container at /sbin/docker-init as Docker does.
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { PivotError } from "../errors.ts";
import type { Spec } from "../oci/spec.ts";

/** Where the init is in the container. */
export const INIT_PATH = "/sbin/docker-init";

/** The init binary on the host: $PIVOT_INIT, else tini-static (or docker-init) in the usual places. */
export function findInit(): string | null {
  const env = process.env.PIVOT_INIT;
  if (env) return existsSync(env) ? env : null;
  const dirs = [
    "/usr/bin",
    "/usr/local/bin",
    "/usr/libexec/docker",
    ...(process.env.PATH ?? "").split(delimiter),
  ];
  for (const name of ["tini-static", "docker-init"]) {
    for (const d of dirs) {
      if (d && existsSync(join(d, name))) return join(d, name);
    }
  }
  return null;
}

/** Makes the init PID 1 of `spec`, with the command as its child. */
export function addInit(spec: Spec, init: string | null = findInit()): void {
  if (!init) {
    throw new PivotError("--init needs tini, which is not installed", {
      hint: "install it (apt-get install tini, which has the static tini-static), or set PIVOT_INIT to a static init binary",
    });
  }
  spec.mounts = [
    ...(spec.mounts ?? []),
    { destination: INIT_PATH, type: "bind", source: init, options: ["rbind", "ro", "rprivate"] },
  ];
  spec.process!.args = [INIT_PATH, "--", ...(spec.process!.args ?? [])];
}
