// Named network namespaces: a new namespace bind-mounted on a file (as `ip netns add` does, but
// under Pivot's own directory), so it outlives any process and CNI DEL can always enter it.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { PivotError } from "../errors.ts";
import { runHostSteps, unmountStep } from "../runtime/host-plan.ts";
import { CloneFlag, MS } from "../runtime/linux.ts";
import { Op } from "../runtime/wire.ts";

/** Whether PATH is a mount point (of a namespace file) in our mount namespace. */
export function isMountPoint(path: string): boolean {
  const text = readFileSync("/proc/self/mountinfo", "utf8");
  const escaped = path.replace(
    /[ \t\n\\]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );
  return text.split("\n").some((l) => l.split(" ")[4] === escaped);
}

/**
 * Creates a network namespace bound to PATH with `lo` up; an existing one is kept (idempotent).
 * One launcher run does it (unshare, lo up, bind /proc/self/ns/net on PATH, ~2 ms here): where
 * unshare(1) and the CNI loopback plugin were two execs, the second a Go program (~25 ms).
 */
export async function createNetns(path: string): Promise<void> {
  if (isMountPoint(path)) return;
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  writeFileSync(path, "", { mode: 0o444 }); // the bind mount's target
  try {
    // lo before the bind: a failure leaves no mount, and the namespace dies with the launcher.
    await runHostSteps([
      { op: Op.Unshare, args: [CloneFlag.network], text: "unshare a network namespace" },
      { op: Op.LoopbackUp, args: [], text: "bring the loopback interface up" },
      {
        op: Op.Mount,
        args: ["/proc/self/ns/net", path, "", MS.BIND, ""],
        text: `bind the network namespace on ${path}`,
      },
    ]);
  } catch (err) {
    rmSync(path, { force: true });
    throw new PivotError(`creating network namespace ${path} failed: ${(err as Error).message}`, {
      hint: "Pivot needs root (CAP_SYS_ADMIN) to create network namespaces",
      cause: err,
    });
  }
}

/** Unmounts and removes a namespace file; the namespace goes once nothing else holds it. */
export async function removeNetns(path: string): Promise<void> {
  if (isMountPoint(path)) {
    try {
      await runHostSteps([unmountStep(path)]);
    } catch (err) {
      // Lazy: a process entering it right now keeps it busy only as long as it stays.
      if (isMountPoint(path))
        await runHostSteps([unmountStep(path, { lazy: true })]).catch((lazy) => {
          throw new PivotError(
            `unmounting network namespace ${path} failed: ${(lazy as Error).message}`,
            { cause: err },
          );
        });
    }
  }
  rmSync(path, { force: true });
}

export function netnsExists(path: string): boolean {
  try {
    statSync(path);
  } catch {
    return false;
  }
  return isMountPoint(path);
}
