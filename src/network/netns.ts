// Named network namespaces: a new namespace bind-mounted on a file (as `ip netns add` does, but
// under Pivot's own directory), so it outlives any process and CNI DEL can always enter it.
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { PivotError } from "../errors.ts";
import { execTool } from "./exec.ts";

/** Whether PATH is a mount point (of a namespace file) in our mount namespace. */
export function isMountPoint(path: string): boolean {
  const text = readFileSync("/proc/self/mountinfo", "utf8");
  const escaped = path.replace(
    /[ \t\n\\]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );
  return text.split("\n").some((l) => l.split(" ")[4] === escaped);
}

/** Creates a network namespace bound to PATH; an existing one is kept (idempotent). */
export async function createNetns(path: string): Promise<void> {
  if (isMountPoint(path)) return;
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  // unshare(1) enters a new network namespace and binds it on the (existing, empty) file.
  writeFileSync(path, "", { mode: 0o444 });
  const r = await execTool("unshare", [`--net=${path}`, "true"]);
  if (r.status !== 0) {
    rmSync(path, { force: true });
    throw new PivotError(`creating network namespace ${path} failed: ${r.stderr.trim()}`, {
      hint: "Pivot needs root (CAP_SYS_ADMIN) to create network namespaces",
    });
  }
}

/** Unmounts and removes a namespace file; the namespace goes once nothing else holds it. */
export async function removeNetns(path: string): Promise<void> {
  if (isMountPoint(path)) {
    const r = await execTool("umount", [path]);
    if (r.status !== 0 && isMountPoint(path)) {
      // Lazy: a process entering it right now keeps it busy only as long as it stays.
      const lazy = await execTool("umount", ["-l", path]);
      if (lazy.status !== 0)
        throw new PivotError(`unmounting network namespace ${path} failed: ${lazy.stderr.trim()}`);
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
