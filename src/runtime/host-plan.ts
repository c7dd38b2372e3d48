// Short plans that the launcher runs in the caller's own namespaces, as the host's root: the
// engine's overlay mounts and unmounts, and `update`'s eBPF device program. A mount through the
// launcher costs about 1.5 ms of wall time against 5-9 ms for spawning mount(8) or umount(8),
// which read fstab and mtab and load libmount (measured here).

import { PivotError } from "../errors.ts";
import { type LaunchSession, launch, spawnLauncher } from "./launcher.ts";
import type { Plan, PlanStep } from "./plan.ts";
import { Op } from "./wire.ts";

/** umount2(2)'s MNT_DETACH: detach now, free the mount once nothing uses it. */
export const MNT_DETACH = 2;
/** umount2(2)'s UMOUNT_NOFOLLOW: a symlink at the target is not followed. */
export const UMOUNT_NOFOLLOW = 8;

const HOST_STDIO = ["ignore", "ignore", "inherit"] as const;

function noSyncPoint(): never {
  throw new PivotError("internal error: a host plan has no sync point");
}

/**
 * A launcher started before its host plan is known, so that its start-up (exec, dynamic linking,
 * ~1 ms) overlaps the caller's own work: the engine starts one as it begins creating a container
 * (the overlay mount follows) and as it begins removing one (the unmount follows). Its owner
 * passes it to runHostSteps, or calls dispose() on every path that does not.
 */
export class HostLauncher {
  private session: LaunchSession | null = spawnLauncher({ stdio: [...HOST_STDIO] });

  /** The session, once: null after it was taken or disposed of. */
  take(): LaunchSession | null {
    const s = this.session;
    this.session = null;
    return s;
  }

  /** Lets an unused launcher go: it reads the end of its plan and exits. */
  dispose(): void {
    this.take()?.detach();
  }
}

/**
 * Runs the steps in a launcher of their own (`launcher`'s, if given and not used yet) and resolves
 * once it has done them all.
 */
export async function runHostSteps(steps: PlanStep[], launcher?: HostLauncher): Promise<void> {
  const plan: Plan = { steps, newUserNamespace: false, warnings: [] };
  const warm = launcher?.take();
  let session: LaunchSession;
  if (warm) {
    session = warm;
    session.sendPlan(plan, noSyncPoint);
  } else {
    session = launch(plan, { stdio: [...HOST_STDIO], onSync: noSyncPoint });
  }
  try {
    await session.whenClosed();
  } finally {
    await session.whenLauncherExited();
  }
}

/** The launcher's working directory back to `dir` (after mountSteps changed it). */
export function chdirStep(dir: string): PlanStep {
  return { op: Op.Chdir, args: [dir], text: `chdir ${dir}` };
}

/**
 * mount(2) of a filesystem on a host path. Relative paths in `data` (overlay's lowerdir short
 * links) are resolved from `cwd`, where the launcher changes directory first.
 */
export function mountSteps(
  m: { source: string; target: string; fstype: string; flags?: number; data?: string },
  cwd?: string,
): PlanStep[] {
  return [
    ...(cwd ? [{ op: Op.Chdir, args: [cwd], text: `chdir ${cwd}` }] : []),
    {
      op: Op.Mount,
      args: [m.source, m.target, m.fstype, m.flags ?? 0, m.data ?? ""],
      text: `mount ${m.fstype} on ${m.target}`,
    },
  ];
}

export function unmountStep(target: string, options: { lazy?: boolean } = {}): PlanStep {
  return {
    op: Op.Unmount,
    args: [target, UMOUNT_NOFOLLOW | (options.lazy ? MNT_DETACH : 0)],
    text: `unmount ${target}${options.lazy ? " (lazily)" : ""}`,
  };
}
