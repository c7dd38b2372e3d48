// /proc/PID/mountinfo (proc(5)): parsing, propagation from the optional fields, and the tree by
// parent id. Pure functions: the callers read the file.

export type Propagation = "shared" | "slave" | "shared+slave" | "private" | "unbindable";

export interface MountInfo {
  /** Mount id, unique in the system (field 1). */
  id: number;
  /** Id of the parent mount; the root of the namespace points at a mount outside it. */
  parentId: number;
  /** st_dev of the filesystem, "major:minor". */
  device: string;
  /** The directory of the filesystem mounted here ("/" unless a bind mount of a subtree). */
  root: string;
  /** Where it is mounted, relative to the reading process's root. */
  mountPoint: string;
  /** Per-mount options (ro, nosuid, relatime, ...). */
  options: string[];
  /** The optional fields: shared:N, master:N, propagate_from:N, unbindable. */
  optionalFields: string[];
  fsType: string;
  /** The filesystem's source ("none" when the kernel shows none). */
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
  propagation: Propagation;
  /** Peer group of a shared mount. */
  peerGroup?: number;
  /** Peer group this slave mount receives from. */
  master?: number;
}

/** Undoes the kernel's octal escapes (\040 for a space, \011, \012, \134). */
export function unescapeMountField(s: string): string {
  if (!s.includes("\\")) return s;
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** A path as mountinfo writes it: space, tab, newline and backslash in octal. */
export function escapeMountField(s: string): string {
  return s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

/** The propagation type given by a mount's optional fields. */
export function propagationOf(fields: readonly string[]): {
  propagation: Propagation;
  peerGroup?: number;
  master?: number;
} {
  let peerGroup: number | undefined;
  let master: number | undefined;
  let unbindable = false;
  for (const f of fields) {
    const [tag, value] = f.split(":");
    if (tag === "shared") peerGroup = Number(value);
    else if (tag === "master") master = Number(value);
    else if (tag === "unbindable") unbindable = true;
  }
  const propagation: Propagation =
    peerGroup !== undefined && master !== undefined
      ? "shared+slave"
      : peerGroup !== undefined
        ? "shared"
        : master !== undefined
          ? "slave"
          : unbindable
            ? "unbindable"
            : "private";
  return {
    propagation,
    ...(peerGroup !== undefined ? { peerGroup } : {}),
    ...(master !== undefined ? { master } : {}),
  };
}

/** Parses one line of mountinfo; null for a blank or malformed line. */
export function parseMountinfoLine(line: string): MountInfo | null {
  const f = line.trim().split(" ");
  const dash = f.indexOf("-", 6);
  if (f.length < 10 || dash < 0 || dash + 3 > f.length) return null;
  const id = Number(f[0]);
  const parentId = Number(f[1]);
  if (!Number.isInteger(id) || !Number.isInteger(parentId)) return null;
  const optionalFields = f.slice(6, dash);
  return {
    id,
    parentId,
    device: f[2]!,
    root: unescapeMountField(f[3]!),
    mountPoint: unescapeMountField(f[4]!),
    options: f[5]!.split(","),
    optionalFields,
    fsType: f[dash + 1]!,
    source: unescapeMountField(f[dash + 2]!),
    superOptions: (f[dash + 3] ?? "").split(",").filter((o) => o !== ""),
    ...propagationOf(optionalFields),
  };
}

/** Parses a whole mountinfo file, in the kernel's order (mount order). */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const m = parseMountinfoLine(line);
    if (m) out.push(m);
  }
  return out;
}

/** Read-only: by the per-mount flag, or by the superblock's. */
export function isReadOnly(m: MountInfo): boolean {
  return m.options.includes("ro") || m.superOptions.includes("ro");
}

export interface TreeNode<T extends MountInfo = MountInfo> {
  mount: T;
  /** 0 for a root (its parent is not in the list), then one more per level. */
  depth: number;
}

/**
 * The mounts in tree order: each root (a mount whose parent is not in the list), then its children
 * depth first, children in mount order. Mounts in a cycle (never in a real file) are left out.
 */
export function mountTree<T extends MountInfo>(mounts: readonly T[]): TreeNode<T>[] {
  const ids = new Set(mounts.map((m) => m.id));
  const children = new Map<number, T[]>();
  for (const m of mounts) {
    if (!ids.has(m.parentId) || m.parentId === m.id) continue;
    const list = children.get(m.parentId) ?? [];
    list.push(m);
    children.set(m.parentId, list);
  }
  const out: TreeNode<T>[] = [];
  const seen = new Set<number>();
  const visit = (m: T, depth: number) => {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    out.push({ mount: m, depth });
    for (const c of children.get(m.id) ?? []) visit(c, depth + 1);
  };
  for (const m of mounts) if (!ids.has(m.parentId) || m.parentId === m.id) visit(m, 0);
  return out;
}

/**
 * The mount that provides `path` in the container's view: of the mounts on the longest mount point
 * that is a prefix of the path, the one on top (stacked mounts are children of the one below).
 */
export function mountOfPath<T extends MountInfo>(mounts: readonly T[], path: string): T | null {
  let longest = -1;
  let candidates: T[] = [];
  for (const m of mounts) {
    const p = m.mountPoint;
    if (!(p === "/" || path === p || path.startsWith(`${p}/`))) continue;
    if (p.length > longest) {
      longest = p.length;
      candidates = [m];
    } else if (p.length === longest) candidates.push(m);
  }
  const below = new Set(candidates.map((m) => m.parentId));
  return candidates.find((m) => !below.has(m.id)) ?? candidates[candidates.length - 1] ?? null;
}

/** The layers of an overlay mount from its super options (lowerdir top first). */
export function overlayDirs(m: MountInfo): { lower: string[]; upper?: string; work?: string } {
  const out: { lower: string[]; upper?: string; work?: string } = { lower: [] };
  for (const o of m.superOptions) {
    const eq = o.indexOf("=");
    if (eq < 0) continue;
    const [key, value] = [o.slice(0, eq), o.slice(eq + 1)];
    if (key === "lowerdir") out.lower = value.split(":").filter((d) => d !== "");
    else if (key === "upperdir") out.upper = value;
    else if (key === "workdir") out.work = value;
  }
  return out;
}
