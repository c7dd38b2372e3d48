// Where each mount of a container comes from: the container's mount table (mountinfo) matched
// against its config (root.path, mounts[i], devices, masked and read-only paths). Pure functions:
// the engine passes richer descriptions (image layers, volumes, generated files) through the
// context's hooks.
import type { Mount, Spec } from "../oci/spec.ts";
import {
  isReadOnly,
  type MountInfo,
  mountTree,
  overlayDirs,
  type Propagation,
} from "./mountinfo.ts";
import { DEFAULT_DEVICES, joinInRoot, resolveSource } from "./plan.ts";

export type OriginKind =
  | "rootfs"
  | "mount"
  | "cgroup"
  | "device"
  | "masked"
  | "readonly"
  | "submount"
  | "other";

/** A layer of an overlay root filesystem, top first. */
export interface LayerOrigin {
  /** "upper" (the container's writable layer) or "layer N" (N = 1 for the image's bottom layer). */
  name: string;
  /** The directory as the overlay options name it. */
  dir: string;
  diffId?: string;
  /** The image history's created_by for this layer. */
  createdBy?: string;
}

export interface MountOrigin {
  kind: OriginKind;
  /** One line for people. */
  text: string;
  /** The config.json mounts index, for kind "mount", "cgroup" and "submount". */
  index?: number;
  /** The masked or read-only path, or the device path. */
  path?: string;
  /** Host path behind a bind mount. */
  hostPath?: string;
  /** Named volume behind a bind mount (engine). */
  volume?: string;
  /** Generated file (engine): /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  generated?: string;
  /** Overlay root filesystems: the layers, top first. */
  layers?: LayerOrigin[];
}

export interface ProvenanceContext {
  spec: Spec;
  /** The root filesystem's host path. */
  rootfs: string;
  /** The bundle, for relative bind sources. */
  bundle: string;
  /** Device nodes are bind mounts of the host's (a new user namespace). */
  devicesBound?: boolean;
  /** A richer description of mounts[index] (the engine's volumes and generated files). */
  describeMount?: (m: Mount, index: number, base: MountOrigin) => MountOrigin;
  /** A richer description of the root filesystem (the engine's image layers). */
  describeRoot?: (mount: MountInfo, base: MountOrigin) => MountOrigin;
}

export interface ExplainedMount extends MountInfo {
  depth: number;
  readOnly: boolean;
  origin: MountOrigin;
}

export interface MountReport {
  mounts: ExplainedMount[];
  /** Mounts of the host (this process's namespace) that the container does not have. */
  hostOnly: MountInfo[];
}

function isBind(m: Mount): boolean {
  const opts = m.options ?? [];
  return m.type === "bind" || opts.includes("bind") || opts.includes("rbind");
}

/** The runtime-level description of config.json's mounts[index]. */
export function configMountOrigin(m: Mount, index: number, bundle: string): MountOrigin {
  const at = `mounts[${index}]`;
  if (isBind(m)) {
    const hostPath = resolveSource(m.source ?? "", bundle);
    const recursive = (m.options ?? []).includes("rbind");
    return {
      kind: "mount",
      index,
      hostPath,
      text: `${at}: ${recursive ? "recursive " : ""}bind of host path ${hostPath}`,
    };
  }
  const type = m.type ?? "";
  const what =
    type === "tmpfs"
      ? "a new tmpfs"
      : type === "proc" || type === "sysfs" || type === "devpts" || type === "mqueue"
        ? `pseudo filesystem ${type}`
        : type === "cgroup" || type === "cgroup2"
          ? "cgroup filesystem"
          : `${type} filesystem from ${m.source ?? type}`;
  return { kind: "mount", index, text: `${at}: ${what}` };
}

interface Claim {
  origin: MountOrigin;
  /** Matches only a mount of these filesystem types, if given. */
  fsTypes?: string[];
}

function rootOrigin(ctx: ProvenanceContext, mount: MountInfo): MountOrigin {
  const ro = ctx.spec.root?.readonly ? ", remounted read-only (root.readonly)" : "";
  const base: MountOrigin = {
    kind: "rootfs",
    hostPath: ctx.rootfs,
    text: `root filesystem: root.path ${ctx.rootfs}${ro}`,
  };
  if (mount.fsType === "overlay") {
    const dirs = overlayDirs(mount);
    const layers: LayerOrigin[] = [];
    if (dirs.upper) layers.push({ name: "upper", dir: dirs.upper });
    dirs.lower.forEach((dir, i) => {
      layers.push({ name: `layer ${dirs.lower.length - i}`, dir });
    });
    base.layers = layers;
    base.text = `root filesystem: overlay at root.path ${ctx.rootfs}${ro}`;
  }
  return ctx.describeRoot ? ctx.describeRoot(mount, base) : base;
}

/**
 * Matches each mount of the container's mountinfo (read from its init) to what put it there.
 * Mounts on one mount point are matched to claims in mount order (the lower one first).
 */
export function explainMounts(mounts: readonly MountInfo[], ctx: ProvenanceContext): MountReport {
  const claims = new Map<string, Claim[]>();
  const claim = (path: string, c: Claim) => {
    const list = claims.get(path) ?? [];
    list.push(c);
    claims.set(path, list);
  };
  const specMounts = ctx.spec.mounts ?? [];
  const cgroupDests: { dest: string; index: number }[] = [];
  const recursiveBinds: { dest: string; index: number; source: string }[] = [];
  specMounts.forEach((m, i) => {
    const dest = joinInRoot(m.destination);
    const base = configMountOrigin(m, i, ctx.bundle);
    const origin = ctx.describeMount ? ctx.describeMount(m, i, base) : base;
    if (m.type === "cgroup" && !isBind(m)) cgroupDests.push({ dest, index: i });
    if (isBind(m) && (m.options ?? []).includes("rbind")) {
      recursiveBinds.push({ dest, index: i, source: base.hostPath ?? "" });
    }
    claim(dest, { origin });
  });
  if (ctx.devicesBound) {
    const devices = [
      ...DEFAULT_DEVICES.map((d) => ({ path: d.path, text: "default device" })),
      ...(ctx.spec.linux?.devices ?? []).map((d, j) => ({
        path: d.path,
        text: `linux.devices[${j}]`,
      })),
    ];
    for (const d of devices) {
      claim(joinInRoot(d.path), {
        origin: {
          kind: "device",
          path: d.path,
          hostPath: d.path,
          text: `${d.text} ${d.path}, bound from the host's (no mknod in a user namespace)`,
        },
      });
    }
  }
  for (const p of ctx.spec.linux?.maskedPaths ?? []) {
    claim(joinInRoot(p), {
      origin: { kind: "masked", path: p, text: `masked path ${p} (linux.maskedPaths)` },
    });
  }
  for (const p of ctx.spec.linux?.readonlyPaths ?? []) {
    claim(joinInRoot(p), {
      origin: {
        kind: "readonly",
        path: p,
        text: `read-only path ${p} (linux.readonlyPaths): bound onto itself read-only`,
      },
    });
  }

  const out: ExplainedMount[] = [];
  for (const { mount, depth } of mountTree(mounts)) {
    let origin: MountOrigin | undefined;
    if (depth === 0 && mount.mountPoint === "/") origin = rootOrigin(ctx, mount);
    if (!origin) {
      const list = claims.get(mount.mountPoint);
      const at = list?.findIndex((c) => !c.fsTypes || c.fsTypes.includes(mount.fsType)) ?? -1;
      if (list && at >= 0) {
        origin = { ...list[at]!.origin };
        list.splice(at, 1);
        const sm = origin.index !== undefined ? specMounts[origin.index] : undefined;
        if (origin.kind === "mount" && sm?.type === "cgroup" && mount.fsType === "tmpfs") {
          origin.text += ": a tmpfs holding the container's cgroup hierarchies";
        }
        if (origin.kind === "masked") {
          origin.text +=
            mount.root === "/null" || mount.root.endsWith("/null")
              ? ": /dev/null bound over the file"
              : ": an empty read-only tmpfs over the directory";
        }
      }
    }
    if (!origin) origin = inferredOrigin(mount, cgroupDests, recursiveBinds);
    out.push({ ...mount, depth, readOnly: isReadOnly(mount), origin });
  }
  return { mounts: out, hostOnly: [] };
}

function under(path: string, dir: string): boolean {
  return dir === "/" ? path !== "/" : path.startsWith(`${dir}/`);
}

function inferredOrigin(
  mount: MountInfo,
  cgroupDests: { dest: string; index: number }[],
  recursiveBinds: { dest: string; index: number; source: string }[],
): MountOrigin {
  const cg = cgroupDests.find(
    (c) =>
      under(mount.mountPoint, c.dest) &&
      !mount.mountPoint.slice(c.dest.length + 1).includes("/") &&
      (mount.fsType === "cgroup" || mount.fsType === "cgroup2"),
  );
  if (cg) {
    const name = mount.mountPoint.slice(cg.dest.length + 1);
    return {
      kind: "cgroup",
      index: cg.index,
      hostPath: mount.root,
      text: `mounts[${cg.index}] (cgroup): the container's own cgroup ${mount.root} of hierarchy ${name}, bound read-${mount.options.includes("ro") ? "only" : "write"}`,
    };
  }
  const rb = recursiveBinds
    .filter((b) => under(mount.mountPoint, b.dest))
    .sort((a, b) => b.dest.length - a.dest.length)[0];
  if (rb) {
    return {
      kind: "submount",
      index: rb.index,
      hostPath: `${rb.source}${mount.mountPoint.slice(rb.dest === "/" ? 0 : rb.dest.length)}`,
      text: `submount of the host path ${rb.source}, carried in by the recursive bind mounts[${rb.index}]`,
    };
  }
  const how =
    mount.propagation === "slave" || mount.propagation === "shared+slave"
      ? "propagated from the host after the container started (slave mount), or mounted inside"
      : "mounted inside the container after it started";
  return { kind: "other", text: `not in the config: ${how}` };
}

/**
 * Mounts of the host that the container does not have: those whose filesystem and subtree
 * (device and root) appear in no mount of the container.
 */
export function hostOnlyMounts(host: readonly MountInfo[], container: readonly MountInfo[]) {
  const seen = new Set(container.map((m) => `${m.device} ${m.root}`));
  return host.filter((m) => !seen.has(`${m.device} ${m.root}`));
}

function propagationText(m: MountInfo): string {
  const p: Propagation = m.propagation;
  if (p === "shared") return `shared:${m.peerGroup}`;
  if (p === "slave") return `slave of ${m.master}`;
  if (p === "shared+slave") return `shared:${m.peerGroup}, slave of ${m.master}`;
  return p;
}

/** The report as a tree, indented by parent, with each mount's origin under it. */
export function renderMountReport(report: MountReport, title: string): string {
  const lines = [title, ""];
  for (const m of report.mounts) {
    const pad = "  ".repeat(m.depth);
    const source = m.root !== "/" ? `${m.source}[${m.root}]` : m.source;
    lines.push(
      `${pad}${m.mountPoint}  ${m.fsType} ${source}  ${m.readOnly ? "ro" : "rw"}  (${propagationText(m)})`,
    );
    lines.push(`${pad}    <- ${m.origin.text}`);
    for (const l of m.origin.layers ?? []) {
      const what = l.diffId
        ? `${l.diffId.slice(0, 19)}  ${l.createdBy ?? ""}`.trimEnd()
        : l.name === "upper"
          ? "the container's writable layer"
          : "";
      lines.push(`${pad}       ${l.name.padEnd(8)} ${l.dir}${what ? `  ${what}` : ""}`);
    }
  }
  lines.push("", `host mounts the container does not have (${report.hostOnly.length}):`);
  for (const m of report.hostOnly) {
    lines.push(
      `  ${m.mountPoint}  ${m.fsType} ${m.root !== "/" ? `${m.source}[${m.root}]` : m.source}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
