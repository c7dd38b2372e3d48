/**
 * Which layer of an OverlayFS stack provides a path, and what the layers below hold: shadowed
 * versions, whiteouts (0/0 character devices) and opaque directories (trusted.overlay.opaque=y).
 *
 * `explainLayers` is a pure function of what each layer holds along the path; `walkLayer` reads
 * that from a layer directory on the host without ever following a symlink: each directory is
 * opened with O_NOFOLLOW|O_DIRECTORY through /proc/self/fd of its parent, so a layer that changes
 * under us (a running container's upper layer) cannot send the walk outside it.
 */
import {
  closeSync,
  constants,
  lstatSync,
  openSync,
  readFileSync,
  readlinkSync,
  type Stats,
} from "node:fs";
import { childProcess } from "../util/child-process.ts";
import type { ImageConfig } from "./types.ts";
import { overlayOpaqueXattr } from "./xattr.ts";

export type EntryType =
  | "file"
  | "directory"
  | "symlink"
  | "whiteout"
  | "char-device"
  | "block-device"
  | "fifo"
  | "socket";

export interface LayerEntry {
  type: EntryType;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Directories: marked opaque (trusted.overlay.opaque=y), so lower layers do not show through. */
  opaque?: boolean;
  /** Symlinks: the target. */
  target?: string;
}

/**
 * What one layer holds along a path of n components: entry k is the layer's entry for the first
 * k+1 components, or null. After a null or a non-directory, the rest is null.
 */
export type LayerWalk = (LayerEntry | null)[];

export type LayerState = "provides" | "merged" | "shadowed" | "whiteout" | "absent";

export interface LayerVerdict {
  state: LayerState;
  /** The layer's entry for the path itself, if it has one. */
  entry: LayerEntry | null;
  /** Why, for people. */
  reason: string;
}

export interface LayersExplained {
  verdicts: LayerVerdict[];
  /** Index (top first) of the layer whose entry is visible; -1 if the path does not exist. */
  provider: number;
  /** If the path does not exist: the layer whose whiteout (or opaque directory) removed it. */
  removedBy: number;
}

/** The type of a file from its (l)stat: "file", "directory", "symlink", "char-device", … */
export function fileType(st: Stats): Exclude<EntryType, "whiteout"> {
  return st.isDirectory()
    ? "directory"
    : st.isSymbolicLink()
      ? "symlink"
      : st.isCharacterDevice()
        ? "char-device"
        : st.isBlockDevice()
          ? "block-device"
          : st.isFIFO()
            ? "fifo"
            : st.isSocket()
              ? "socket"
              : "file";
}

export function entryFromStats(st: Stats): LayerEntry {
  // In a layer, a 0/0 character device is a whiteout.
  const type: EntryType = st.isCharacterDevice() && st.rdev === 0 ? "whiteout" : fileType(st);
  return { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size };
}

/**
 * Decides, from each layer's walk (layers top first, upper layer included), which layer provides
 * the path of `components`, as OverlayFS resolves it: the topmost entry wins; a whiteout removes
 * what is below; a directory merges with the directories below unless it is opaque; a
 * non-directory hides everything below; anything under a removed, opaque or non-directory ancestor
 * is hidden.
 */
export function explainLayers(
  components: readonly string[],
  walks: readonly LayerWalk[],
  names: readonly string[] = walks.map((_, i) => `layer ${i}`),
): LayersExplained {
  const n = components.length;
  const prefix = (k: number) => `/${components.slice(0, k + 1).join("/")}`;
  const verdicts: LayerVerdict[] = [];
  let provider = -1;
  let removedBy = -1;
  /** Set once nothing below can show through: why. */
  let hiddenWhy: string | null = null;
  walks.forEach((walk, i) => {
    const entry = n === 0 ? null : (walk[n - 1] ?? null);
    if (hiddenWhy !== null) {
      const state: LayerState = !entry
        ? "absent"
        : entry.type === "whiteout"
          ? "whiteout"
          : "shadowed";
      verdicts.push({
        state,
        entry,
        reason: entry ? `not visible: ${hiddenWhy}` : "nothing at this path",
      });
      return;
    }
    // The ancestors in this layer.
    let opaqueAncestor = -1;
    for (let k = 0; k < n - 1; k++) {
      const a = walk[k] ?? null;
      if (!a) {
        verdicts.push({ state: "absent", entry: null, reason: `no ${prefix(k)} in this layer` });
        return;
      }
      if (a.type === "whiteout") {
        hiddenWhy = `${prefix(k)} is deleted by a whiteout in ${names[i]}`;
        if (provider < 0) removedBy = i;
        verdicts.push({ state: "whiteout", entry: null, reason: `whiteout of ${prefix(k)}` });
        return;
      }
      if (a.type !== "directory") {
        hiddenWhy = `${prefix(k)} is a ${a.type} in ${names[i]}`;
        if (provider < 0) removedBy = i;
        verdicts.push({
          state: "absent",
          entry: null,
          reason: `${prefix(k)} is a ${a.type} here, so nothing can be under it`,
        });
        return;
      }
      if (a.opaque) opaqueAncestor = k;
    }
    if (n === 0) {
      // The root directory: every layer's root merges.
      verdicts.push({
        state: provider < 0 ? "provides" : "merged",
        entry: null,
        reason: provider < 0 ? "the root directory" : "merged into the root directory",
      });
      if (provider < 0) provider = i;
      return;
    }
    if (!entry) {
      verdicts.push({ state: "absent", entry: null, reason: "nothing at this path" });
    } else if (entry.type === "whiteout") {
      verdicts.push({
        state: "whiteout",
        entry,
        reason:
          provider < 0
            ? "a whiteout (0/0 character device): the path is deleted here"
            : "a whiteout (0/0 character device) below the visible entry",
      });
      hiddenWhy = `deleted by the whiteout in ${names[i]}`;
      if (provider < 0) removedBy = i;
    } else if (provider < 0) {
      provider = i;
      verdicts.push({
        state: "provides",
        entry,
        reason:
          entry.type === "directory"
            ? entry.opaque
              ? "the visible directory; opaque, so lower layers do not show through"
              : "the visible directory (its metadata); lower directories merge into it"
            : `the visible ${entry.type}`,
      });
      if (entry.type !== "directory") {
        hiddenWhy = `${names[i]} provides it`;
      } else if (entry.opaque) {
        hiddenWhy = `the directory in ${names[i]} is opaque`;
      }
    } else if (entry.type === "directory" && verdicts[provider]?.entry?.type === "directory") {
      verdicts.push({
        state: "merged",
        entry,
        reason: entry.opaque
          ? "merged into the visible directory; opaque, so layers below do not show through"
          : "its contents merge into the visible directory",
      });
      if (entry.opaque) hiddenWhy = `the directory in ${names[i]} is opaque`;
    } else {
      verdicts.push({
        state: "shadowed",
        entry,
        reason: `not visible: ${names[provider]} provides it`,
      });
      hiddenWhy = `${names[provider]} provides it`;
    }
    if (hiddenWhy === null && opaqueAncestor >= 0) {
      hiddenWhy = `${prefix(opaqueAncestor)} is opaque in ${names[i]}`;
      if (provider < 0) removedBy = i;
    }
  });
  return { verdicts, provider, removedBy };
}

/** Whether the directory open as `fd` has trusted.overlay.opaque=y (getfattr, from attr). */
function isOpaque(fd: number): boolean {
  const r = childProcess().spawnSync(
    "getfattr",
    ["--absolute-names", "--only-values", "-n", overlayOpaqueXattr(), "/proc/self/fd/3"],
    { stdio: ["ignore", "pipe", "ignore", fd], encoding: "utf8" },
  );
  return r.status === 0 && r.stdout.trim() === "y";
}

/** Opens `name` in the directory open as `dirFd`, only if it is a directory and not a symlink. */
export function openDirAt(dirFd: number, name: string): number | null {
  try {
    return openSync(
      `/proc/self/fd/${dirFd}/${name}`,
      constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW,
    );
  } catch {
    return null;
  }
}

/** lstat of `name` in the directory open as `dirFd` (the last component is never followed). */
export function lstatAt(dirFd: number, name: string): Stats | null {
  try {
    // An absent name (the init layer's /etc/passwd) is no exception (~0.05 ms of `pivot run`).
    return lstatSync(`/proc/self/fd/${dirFd}/${name}`, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

export function readlinkAt(dirFd: number, name: string): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${dirFd}/${name}`);
  } catch {
    return null;
  }
}

/**
 * Where a layer's opaque markers come from: read from each directory (true: a getfattr process
 * each, as Node has no getxattr), none to read (false: a layer known to have none, or the bottom
 * one, where an opaque directory hides nothing), or the set of its opaque directories' relative
 * paths that the unpacker recorded (LayerRecord.opaqueDirs).
 */
export type OpaqueSource = boolean | ReadonlySet<string>;

/** A name as it is on disk: a lone surrogate is written as U+FFFD (UTF-8 has no other way). */
function wellFormed(name: string): string {
  return Buffer.from(name, "utf8").toString("utf8");
}

/** What the layer directory `dir` holds along `components`, read without following symlinks. */
export function walkLayer(
  dir: string,
  components: readonly string[],
  opaque: OpaqueSource = true,
): LayerWalk {
  const out: LayerWalk = components.map(() => null);
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return out;
  }
  try {
    for (let k = 0; k < components.length; k++) {
      const name = components[k]!;
      const st = lstatAt(fd, name);
      if (!st) break;
      const entry = entryFromStats(st);
      if (entry.type === "symlink") entry.target = readlinkAt(fd, name) ?? "";
      out[k] = entry;
      if (entry.type !== "directory") break;
      const next = openDirAt(fd, name);
      if (next === null) break;
      closeSync(fd);
      fd = next;
      if (opaque === true) entry.opaque = isOpaque(fd);
      // As the name is on disk: a lone surrogate is written as U+FFFD.
      else if (opaque !== false)
        entry.opaque = opaque.has(wellFormed(components.slice(0, k + 1).join("/")));
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * The history's created_by of each layer, bottom first, aligned with rootfs.diff_ids: history
 * entries with empty_layer made no layer. Undefined where the history does not say.
 */
export function layerHistory(config: ImageConfig): (string | undefined)[] {
  const made = (config.history ?? []).filter((h) => !h.empty_layer);
  return config.rootfs.diff_ids.map((_, i) => made[i]?.created_by);
}

/**
 * Whether `mkdir -p REL` in the merged view of `layers` (directories, top first) would create a
 * directory, as the engine's mkdirInRoot does it on a mounted root: walking the components, one is
 * missing before any that is not a directory (or a ".."), where it stops. Read without mounting.
 */
export function wouldCreateInLayers(
  layers: readonly string[],
  rel: string,
  /** Per layer, where its opaque markers come from (walkLayer); default: read each. */
  opaque: readonly OpaqueSource[] = [],
): boolean {
  const all = rel.split("/").filter((c) => c !== "" && c !== ".");
  const stop = all.indexOf("..");
  const components = stop < 0 ? all : all.slice(0, stop);
  const walks = layers.map((dir, i) => walkLayer(dir, components, opaque[i] ?? true));
  for (let k = 1; k <= components.length; k++) {
    const r = explainLayers(
      components.slice(0, k),
      walks.map((w) => w.slice(0, k)),
    );
    if (r.provider < 0) return true;
    if (r.verdicts[r.provider]?.entry?.type !== "directory") return false;
  }
  return false;
}

/**
 * A regular file of the merged view of `layers` (directories, top first), read without mounting
 * them: from the layer that provides it, only if no component of the path is a symlink (as the
 * engine reads /etc/passwd from a mounted root filesystem).
 */
export function readFileInLayers(
  layers: readonly string[],
  rel: string,
  /** Per layer, where its opaque markers come from (walkLayer); default: read each. */
  opaque: readonly OpaqueSource[] = [],
): string | undefined {
  const components = rel.split("/").filter((c) => c !== "" && c !== ".");
  if (components.includes("..") || components.length === 0) return undefined;
  const r = explainLayers(
    components,
    layers.map((dir, i) => walkLayer(dir, components, opaque[i] ?? true)),
  );
  if (r.provider < 0 || r.verdicts[r.provider]?.entry?.type !== "file") return undefined;
  // Every component was seen to be a directory (not a symlink) in this layer, which is read-only.
  try {
    return readFileSync(`${layers[r.provider]}/${components.join("/")}`, "utf8");
  } catch {
    return undefined;
  }
}
