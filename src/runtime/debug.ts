// `debug mounts`: a running container's mount table, read from its init's /proc, with where each
// mount comes from.
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from "node:fs";
import { PivotError } from "../errors.ts";
import { lstatAt, openDirAt, readlinkAt } from "../image/layer-lookup.ts";
import { type MountInfo, parseMountinfo } from "./mountinfo.ts";
import {
  explainMounts,
  hostOnlyMounts,
  type MountReport,
  type ProvenanceContext,
} from "./provenance.ts";
import type { Runtime } from "./runtime.ts";
import type { ContainerRecord } from "./state.ts";

/** The mount table of a process as it sees it (its root, its mount namespace). */
export function readMountinfo(pid: number | "self"): MountInfo[] {
  return parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, "utf8"));
}

/** The container's record, if its init is alive (so its mount namespace exists). */
export function liveContainer(runtime: Runtime, id: string, what: string): ContainerRecord {
  const record = runtime.store.load(id);
  const status = runtime.status(record);
  if (status === "stopped" || status === "creating" || record.pid <= 0) {
    throw new PivotError(`cannot ${what} of container "${id}": it is ${status}`, {
      hint: "its mount namespace exists only while its process runs; a dry run (`create --dry-run`) shows the mounts it would get",
    });
  }
  return record;
}

/** The context for matching a runtime container's mounts with its config. */
export function recordContext(record: ContainerRecord): ProvenanceContext {
  const userNs = (record.spec.linux?.namespaces ?? []).find((n) => n.type === "user");
  return {
    spec: record.spec,
    rootfs: record.rootfs,
    bundle: record.bundle,
    devicesBound: userNs !== undefined && !userNs.path,
  };
}

/** The container's mounts, each with its origin, and the host's mounts it does not have. */
export function containerMountReport(
  record: ContainerRecord,
  extend: (ctx: ProvenanceContext) => ProvenanceContext = (c) => c,
): MountReport {
  const mounts = readMountinfo(record.pid);
  const report = explainMounts(mounts, extend(recordContext(record)));
  report.hostOnly = hostOnlyMounts(readMountinfo("self"), mounts);
  return report;
}

export interface ResolvedPath {
  /** The path as asked. */
  asked: string;
  /** The path with every symlink before the last component resolved, inside the container. */
  path: string;
  /** Its components (empty for "/"). */
  components: string[];
  /** The last component's lstat, if it exists (a symlink there is not followed). */
  stat: Stats | null;
  /** Symlinks followed on the way, in order. */
  symlinks: { at: string; target: string }[];
  /** Why the path does not exist, if it does not. */
  missing?: string;
}

const MAX_SYMLINKS = 40;

/**
 * Resolves `path` inside the root directory `root` (e.g. /proc/PID/root) as the container sees
 * it: ".." stops at the root, absolute symlink targets start again at the root. Never leaves the
 * root: each directory is opened with O_NOFOLLOW|O_DIRECTORY relative to its parent's descriptor,
 * and symlinks are read and resolved here, not by the kernel. The last component is not followed.
 */
export function resolveInRoot(root: string, path: string): ResolvedPath {
  const rootFd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  const stack: { name: string; fd: number }[] = [];
  const symlinks: { at: string; target: string }[] = [];
  const here = () => `/${stack.map((s) => s.name).join("/")}`;
  const join2 = (name: string) => (stack.length ? `${here()}/${name}` : `/${name}`);
  const close = (fd: number) => {
    try {
      closeSync(fd);
    } catch {}
  };
  let queue = path.split("/").filter((c) => c !== "" && c !== ".");
  const done = (stat: Stats | null, extra: string[] = [], missing?: string): ResolvedPath => {
    const components = [...stack.map((s) => s.name), ...extra];
    for (const s of stack) close(s.fd);
    close(rootFd);
    return {
      asked: path,
      path: `/${components.join("/")}`,
      components,
      stat,
      symlinks,
      ...(missing !== undefined ? { missing } : {}),
    };
  };
  try {
    if (queue.length === 0) return done(fstatSync(rootFd));
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === "..") {
        const top = stack.pop();
        if (top) close(top.fd);
        if (queue.length === 0) return done(lstatAt(stack.at(-1)?.fd ?? rootFd, "."));
        continue;
      }
      const dirFd = stack.at(-1)?.fd ?? rootFd;
      const st = lstatAt(dirFd, name);
      const rest = queue.filter((c) => c !== "..");
      if (!st) return done(null, [name, ...rest], `${join2(name)} does not exist`);
      if (st.isSymbolicLink() && queue.length > 0) {
        if (symlinks.length >= MAX_SYMLINKS)
          return done(null, [name, ...rest], `too many symlinks (over ${MAX_SYMLINKS})`);
        const target = readlinkAt(dirFd, name) ?? "";
        symlinks.push({ at: join2(name), target });
        if (target.startsWith("/")) {
          for (const s of stack.splice(0)) close(s.fd);
        }
        queue = [...target.split("/").filter((c) => c !== "" && c !== "."), ...queue];
        continue;
      }
      if (queue.length === 0) {
        stack.push({ name, fd: -1 });
        const r = done(st);
        return r;
      }
      if (!st.isDirectory()) {
        return done(null, [name, ...rest], `${join2(name)} is not a directory`);
      }
      const fd = openDirAt(dirFd, name);
      if (fd === null) return done(null, [name, ...rest], `${join2(name)} changed while resolving`);
      stack.push({ name, fd });
    }
    return done(lstatAt(stack.at(-1)?.fd ?? rootFd, "."));
  } catch (err) {
    for (const s of stack) close(s.fd);
    close(rootFd);
    throw err;
  }
}
