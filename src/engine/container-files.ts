// A container's files as commands see them: cp in and out, export, diff and commit, over the
// helpers of files.ts (paths resolved inside its root, tar streams, the upper dir's changes).
import { spawnSync } from "node:child_process";
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, join, posix, resolve } from "node:path";
import type { Readable } from "node:stream";
import { createImage } from "../image/create.ts";
import { withFileLock } from "../image/lock.ts";
import { isMountPoint, mountOverlay, unmountOverlay } from "../image/overlay.ts";
import { familiarString, parseReference } from "../image/reference.ts";
import type { StoredImage } from "../image/store.ts";
import { type ImageConfig, MediaType } from "../image/types.ts";
import type { Spec } from "../oci/spec.ts";
import { overlayDirs, parseMountinfo, unescapeMountField } from "../runtime/mountinfo.ts";
import { emitContainerEvent } from "./container-events.ts";
import { cgroupOfRun, monitorAlive, rt, status } from "./container-runtime.ts";
import { readJson } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import {
  type Change,
  copyTarget,
  extractTar,
  kindAt,
  layerTree,
  pathInRoot,
  resolveInRoot,
  scanOpaque,
  tarCreate,
  upperChanges,
} from "./files.ts";
import { inspect } from "./inspect.ts";
import { inUserNamespaceOf } from "./rootless.ts";

/**
 * The container's root filesystem: a running container's as its processes see it (volumes and
 * mounts included, through /proc/PID/root), or without them (`withMounts` false) its overlay as
 * mounted on the host (root) or in its monitor's mount namespace (rootless); otherwise the
 * overlay, mounted for the while.
 */
async function rootView(
  ctx: EngineContext,
  id: string,
  withMounts = true,
  /** Times the overlay was found mounted or the container started while this waited. */
  retries = 0,
): Promise<{ root: string; release: () => Promise<void> }> {
  const st = status(ctx, id);
  const live = st.status !== "exited" && st.status !== "created" && st.pid > 0;
  const again = () => rootView(ctx, id, withMounts, retries + 1);
  if (live && ctx.rootless) {
    const view = rootlessRunningView(ctx, id, st.pid, withMounts);
    // Frozen as root's are when it has a freezer of its own: a delegated cgroup v2 subtree, or v1
    // directories the user owns (its cgroup.freeze or freezer.state are then the user's). Without
    // a cgroup nothing can freeze it (docs/security.md, "What it does not cover").
    if (!withMounts || !cgroupOfRun(ctx, id)?.hasFreezer()) return view;
    return frozenView(ctx, id, st.pid, view.root, again, retries);
  }
  if (withMounts && live)
    return frozenView(ctx, id, st.pid, `/proc/${st.pid}/root`, again, retries);
  const r = ctx.containers.load(id);
  if (live) {
    // Without its mounts (export): the overlay as mounted on the host, unlocked; GNU tar walks it
    // through O_NOFOLLOW descriptors, so the running container's swaps cannot lead it out.
    if (await isMountPoint(r.overlay.target))
      return { root: r.overlay.target, release: async () => {} };
    throw new EngineError(
      `the root filesystem of running container ${r.name} is not mounted on the host`,
      {
        hint: "stop it and export it then (`pivot stop NAME`), or stream its files with `pivot cp NAME:/ -`",
      },
    );
  }
  // The container's lock is held until release: a start meanwhile would run its processes on the
  // overlay this copies into or out of by path, unfrozen, and a directory swapped for a symlink
  // there would send the copy onto the host (an absolute link resolves against the host's root).
  const unlock = await holdLock(ctx, id);
  try {
    // Started while this waited for the lock: through /proc/PID/root, frozen.
    const now = status(ctx, id);
    if (now.status !== "exited" && now.status !== "created" && now.pid > 0) {
      unlock();
      if (retries >= 2) {
        throw new EngineError(
          `the root filesystem of container ${r.name} changed state while this waited for it`,
          { hint: "run the command again" },
        );
      }
      return rootView(ctx, id, withMounts, retries + 1);
    }
    // Mounted here if need be: a start mounts it too, and an attached run's create leaves it for
    // the container's launcher to mount (create.ts), both under the lock held here.
    const mounted = await isMountPoint(r.overlay.target);
    // A process ending mid-copy (the CLI exits on SIGINT and SIGTERM) unmounts it on its way
    // out, where nothing asynchronous runs: it stayed mounted until the container's next start.
    // Lazily: export's tar, in it, ends once this process is gone.
    const unmountOnExit = () => {
      spawnSync("umount", ["-l", r.overlay.target], { stdio: "ignore" });
    };
    if (!mounted) {
      await mountOverlay(r.overlay);
      process.on("exit", unmountOnExit);
    }
    return {
      root: r.overlay.target,
      release: async () => {
        process.off("exit", unmountOnExit);
        try {
          if (!mounted) await unmountOverlay(r.overlay.target).catch(() => {});
        } finally {
          unlock();
        }
      },
    };
  } catch (err) {
    unlock();
    throw err;
  }
}

/**
 * The running container `id` (init `pid`) frozen, with the running containers that share a volume
 * or bind mount's directory with it, while its files are copied through `root`; `release` thaws
 * them. `again` looks again when it changed state while this waited for the lock.
 */
async function frozenView(
  ctx: EngineContext,
  id: string,
  pid: number,
  root: string,
  again: () => Promise<{ root: string; release: () => Promise<void> }>,
  retries: number,
): Promise<{ root: string; release: () => Promise<void> }> {
  // A process of the container could swap a checked directory for a symlink before the copy
  // uses the path through /proc/PID/root, where an absolute link resolves against the host's
  // root (CVE-2018-15664): the container stays frozen while its files are copied, as podman
  // and Docker's fix do, and so do the running containers that share a volume or a bind
  // mount's directory with it, which could swap one of its directories just the same.
  // One frozen copy at a time, engine-wide: a second one finds the containers paused, so it
  // neither freezes nor thaws them, and the first one's thaw let them run during its copy.
  const unlockFrozen = await holdFrozenCopyLock(ctx);
  const frozen: string[] = [];
  const thaw = () => {
    process.off("exit", thaw);
    for (const f of frozen) {
      try {
        if (status(ctx, f).status === "paused") rt(ctx, f).resume(f);
      } catch {}
    }
    frozen.length = 0;
    unlockFrozen();
  };
  // A process ending mid-copy (the CLI exits on SIGINT and SIGTERM) thaws them on its way out.
  process.on("exit", thaw);
  try {
    // Looked at again with the lock held: another copy may have had it paused meanwhile, or it
    // stopped (then its overlay, as for a stopped container).
    const now = status(ctx, id);
    if (now.pid !== pid || (now.status !== "running" && now.status !== "paused")) {
      thaw();
      if (retries >= 2) {
        throw new EngineError(`container ${id.slice(0, 12)} changed state while this waited`, {
          hint: "run the command again",
        });
      }
      return again();
    }
    if (now.status === "running") {
      rt(ctx, id).pause(id);
      frozen.push(id);
    }
    for (const other of sharingContainers(ctx, id)) {
      try {
        if (status(ctx, other).status !== "running") continue;
        rt(ctx, other).pause(other);
        frozen.push(other);
      } catch {
        // Stopped meanwhile: nothing of it runs.
        if (status(ctx, other).status === "running")
          throw new EngineError(
            `container ${ctx.containers.load(other).name}, which shares a volume or bind mount with ${ctx.containers.load(id).name}, could not be frozen for the copy`,
            { hint: "pause or stop it (`pivot pause`), then copy again" },
          );
      }
    }
  } catch (err) {
    thaw();
    throw err;
  }
  return { root, release: async () => thaw() };
}

/** Takes the container's lock and keeps it until the function returned is called. */
function holdLock(ctx: EngineContext, id: string): Promise<() => void> {
  // No short timeout: another cp or export of the container may hold it for a long copy.
  return holdUntilCalled((fn) => ctx.containers.withLock(id, fn));
}

/**
 * The lock of copies (and commits) that freeze running containers: held from the freeze to the
 * thaw, so that no other one thaws them mid-copy. The function returned releases it.
 */
function holdFrozenCopyLock(ctx: EngineContext): Promise<() => void> {
  const dir = join(ctx.root, "locks");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return holdUntilCalled((fn) =>
    withFileLock(join(dir, "frozen-copies.lock"), fn, { what: "the copies of running containers" }),
  );
}

/** Runs `lock` with a function that waits until the returned release is called (once). */
function holdUntilCalled(lock: (fn: () => Promise<void>) => Promise<void>): Promise<() => void> {
  return new Promise((resolve, reject) => {
    let unlock!: () => void;
    const held = new Promise<void>((r) => {
      unlock = r;
    });
    lock(async () => {
      resolve(unlock);
      await held;
    }).catch(reject);
  });
}

/**
 * The other containers that can write where `id`'s volumes and bind mounts are: a writable bind
 * mount (a volume is one, of its directory; --volumes-from's too) whose host directory is one of
 * `id`'s, or inside or around one, as their configs say.
 */
function sharingContainers(ctx: EngineContext, id: string): string[] {
  // The /etc files the engine writes in a container's directory (--network container: binds
  // another's): files, shared with no container that could swap anything cp goes through, and
  // every container has them, so that all containers were read, and any one with a writable bind
  // of a directory above the engine's root frozen, for every cp.
  const engineEtcFile = (source: string) =>
    dirname(dirname(source)) === resolve(ctx.containers.containersDir) &&
    ["hosts", "hostname", "resolv.conf"].includes(basename(source));
  const binds = (cid: string, writableOnly: boolean): string[] =>
    (readJson<Spec>(join(ctx.containers.dir(cid), "config.json"))?.mounts ?? [])
      .filter(
        (m) =>
          m.type === "bind" &&
          m.source !== undefined &&
          !(writableOnly && (m.options ?? []).includes("ro")) &&
          !engineEtcFile(resolve(m.source)),
      )
      .map((m) => resolve(m.source!));
  const within = (a: string, b: string) => a === b || a.startsWith(b === "/" ? "/" : `${b}/`);
  const mine = binds(id, false);
  if (mine.length === 0) return [];
  return ctx.containers
    .ids()
    .filter(
      (other) =>
        other !== id &&
        binds(other, true).some((b) => mine.some((m) => within(b, m) || within(m, b))),
    );
}

/**
 * A running rootless container's files. The CLI runs rootless `cp` and `export` of a running
 * container in its monitor's user namespace (rootless.ts `joinUserNamespaceCommand`), the
 * parent of the container's, in the host's mount namespace: the kernel then allows its
 * /proc/PID/root (a capability in the container's user namespace) and the monitor's
 * /proc/PID/root (a capability in the user namespace owning the monitor's mount namespace, where
 * the overlay is mounted). Any other namespace is a sibling the kernel refuses. With the mounts
 * (cp): the container's root; without (export): the overlay at its mount point in the monitor's
 * mount namespace, seen through the monitor's /proc/PID/root.
 */
function rootlessRunningView(
  ctx: EngineContext,
  id: string,
  pid: number,
  withMounts: boolean,
): { root: string; release: () => Promise<void> } {
  const rs = ctx.containers.runState(id);
  const monitor = rs && monitorAlive(rs.monitorPid, rs.monitorStart) ? rs.monitorPid : 0;
  if (monitor === 0 || !inUserNamespaceOf(monitor)) {
    throw new EngineError(
      "this rootless pivot cannot reach into the running container's files: it is not in the user namespace of the container's monitor",
      {
        hint: "use the pivot command (pivot cp/export), which joins it; if the container was just (re)started or stopped, run it again",
      },
    );
  }
  const release = async () => {};
  if (withMounts) return { root: `/proc/${pid}/root`, release };
  const { target, upperdir } = ctx.containers.load(id).overlay;
  if (!overlayMountedIn(monitor, target, upperdir)) {
    throw new EngineError(
      "the running container's root filesystem is not mounted in its monitor's mount namespace",
      {
        hint: "stop it and export it then (`pivot stop NAME`), or stream its files with `pivot cp NAME:/ -`",
      },
    );
  }
  return { root: `/proc/${monitor}/root${target}`, release };
}

/**
 * Whether the overlay with upper directory `upperdir` is what the process `pid` sees at `target`
 * (the topmost mount there, so nothing hides it): the monitor's mount namespace, read from its
 * mountinfo, before its /proc/PID/root is read.
 */
function overlayMountedIn(pid: number, target: string, upperdir: string): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, "utf8");
  } catch {
    return false;
  }
  const at = parseMountinfo(text).filter((m) => m.mountPoint === target);
  const top = at[at.length - 1];
  const upper = top?.fsType === "overlay" ? overlayDirs(top).upper : undefined;
  return upper !== undefined && unescapeMountField(upper) === upperdir;
}

/**
 * A tar stream of `path` in the container (`pivot cp CONTAINER:PATH -`), its symlinks resolved
 * inside the container; `name` is the archive's top entry.
 */
export async function archive(
  ctx: EngineContext,
  ref: string,
  path: string,
): Promise<{ stream: Readable; name: string }> {
  const id = ctx.containers.resolveId(ref);
  const view = await rootView(ctx, id);
  try {
    // Throws on the container's symlink loops: released then, or it stayed frozen (or locked).
    const host = resolveInRoot(view.root, path, /\/\.?$/.test(path));
    if (kindAt(host) === null)
      throw new EngineError(`no such file or directory in the container: ${path}`);
    const top = host === resolve(view.root);
    const name = top ? "." : host.slice(host.lastIndexOf("/") + 1);
    const stream = tarCreate(top ? host : dirname(host), [name], () => void view.release());
    emitContainerEvent(ctx, id, "archive-path");
    return { stream, name };
  } catch (err) {
    await view.release();
    throw err;
  }
}

/**
 * `pivot cp`'s owners, as Docker's. Without -a, files copied out belong to the user who runs the
 * command (Docker's client extracts them without chown) and files copied in keep the owners they
 * have on this machine; with -a (archive mode), files copied out keep the container's owners and
 * files copied in go to the container's user (its process.user), as Docker's daemon does.
 */
export interface CopyOptions {
  archive?: boolean;
}

/** The container's user, who gets what `cp -a` copies in. */
function containerUser(ctx: EngineContext, id: string): { uid: number; gid: number } {
  const user = readJson<Spec>(join(ctx.containers.dir(id), "config.json"))?.process?.user;
  return { uid: user?.uid ?? 0, gid: user?.gid ?? 0 };
}

/** Who runs this command (root of the user namespace for the rootless engine: the user). */
function caller(): { uid: number; gid: number } {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** Extracts a tar stream into the directory `path` of the container (`pivot cp - CONTAINER:DIR`). */
export async function extractArchive(
  ctx: EngineContext,
  ref: string,
  path: string,
  tar: AsyncIterable<Uint8Array>,
  options: CopyOptions = {},
): Promise<void> {
  const id = ctx.containers.resolveId(ref);
  const view = await rootView(ctx, id);
  try {
    const host = resolveInRoot(view.root, path, true);
    if (kindIn(view.root, host) !== "dir")
      throw new EngineError(`${path} is not a directory in the container`);
    await extractTar(tar, host, null, false, options.archive ? containerUser(ctx, id) : undefined);
    emitContainerEvent(ctx, id, "extract-to-dir");
  } finally {
    await view.release();
  }
}

/** kindAt of a path resolved in `root`, the root itself followed (/proc/PID/root is a link). */
function kindIn(root: string, host: string): ReturnType<typeof kindAt> {
  return host === resolve(root) ? kindAt(`${host}/`) : kindAt(host);
}

/**
 * `pivot cp CONTAINER:SRC DEST`: into DEST if it is a directory, else as DEST; without device
 * nodes, setuid/setgid bits or file capabilities, which the container's author chose (the tar stream
 * of `pivot cp CONTAINER:SRC -` keeps them), owned by the caller unless `archive` (CopyOptions).
 */
export async function copyFrom(
  ctx: EngineContext,
  ref: string,
  src: string,
  dest: string,
  options: CopyOptions = {},
): Promise<void> {
  // Checked before the container is frozen for the copy.
  const t = copyTarget(dest);
  if (kindAt(t.dir) !== "dir") throw new EngineError(`${t.dir} is not a directory`);
  const { stream, name } = await archive(ctx, ref, src);
  const owner = options.archive ? undefined : caller();
  try {
    if (t.name === null) await extractTar(stream, t.dir, null, true, owner);
    else await extractTar(stream, join(t.dir, t.name), name === "." ? "" : name, true, owner);
  } catch (err) {
    // Unread, tar would block on its pipe and the container stay frozen (or locked): ended.
    stream.destroy();
    throw err;
  }
}

/**
 * `pivot cp SRC CONTAINER:DEST`: symlinks in DEST resolve inside the container only; the files keep
 * their owners, or go to the container's user with `archive` (CopyOptions).
 */
export async function copyTo(
  ctx: EngineContext,
  ref: string,
  src: string,
  dest: string,
  options: CopyOptions = {},
): Promise<void> {
  const id = ctx.containers.resolveId(ref);
  if (kindAt(src) === null) throw new EngineError(`no such file or directory: ${src}`);
  const abs = resolve(src);
  const view = await rootView(ctx, id);
  try {
    const host = resolveInRoot(view.root, dest, true);
    if (dest.endsWith("/") && kindIn(view.root, host) !== "dir")
      throw new EngineError(`${dest} is not a directory in the container`);
    const t = kindIn(view.root, host) === "dir" ? { dir: host, name: null } : copyTarget(host);
    if (kindIn(view.root, t.dir) !== "dir") {
      throw new EngineError(`the parent of ${dest} is not a directory in the container`);
    }
    const name = abs === "/" ? "." : abs.slice(abs.lastIndexOf("/") + 1);
    const stream = tarCreate(abs === "/" ? abs : dirname(abs), [name]);
    const owner = options.archive ? containerUser(ctx, id) : undefined;
    try {
      if (t.name === null) await extractTar(stream, t.dir, null, false, owner);
      else await extractTar(stream, join(t.dir, t.name), name === "." ? "" : name, false, owner);
    } catch (err) {
      stream.destroy(); // tar, unread, would block on its pipe for ever
      throw err;
    }
    emitContainerEvent(ctx, id, "extract-to-dir");
  } finally {
    await view.release();
  }
}

/** The container's root filesystem as a tar stream, without its volumes (`pivot export`). */
export async function exportRootfs(ctx: EngineContext, ref: string): Promise<Readable> {
  const id = ctx.containers.resolveId(ref);
  const view = await rootView(ctx, id, false);
  const stream = tarCreate(view.root, ["."], () => void view.release());
  emitContainerEvent(ctx, id, "export");
  return stream;
}

/** What changed against the image: A added, C changed, D deleted (`pivot diff`). */
export async function diff(ctx: EngineContext, ref: string): Promise<Change[]> {
  const info = inspect(ctx, ref);
  const opaque = await scanOpaque(info.rootfs.upperdir);
  const skip = mountPlaceholders(ctx, info.id);
  const all = upperChanges(info.rootfs.upperdir, info.rootfs.lowerdirs, opaque).filter(
    (c) => !skip.has(c.path),
  );
  // A directory copied up only to hold a mount point changed nothing.
  return all.filter((c) => {
    if (c.kind !== "C") return true;
    const inUpper = pathInRoot(info.rootfs.upperdir, c.path);
    return (
      inUpper === null ||
      kindAt(inUpper) !== "dir" ||
      all.some((o) => o.path.startsWith(`${c.path}/`))
    );
  });
}

/**
 * Mount points the runtime created in the upper directory (/etc/hosts, volume targets, ...): empty
 * files and directories at the config's mount destinations, left out of diff and commit.
 */
function mountPlaceholders(ctx: EngineContext, id: string): Set<string> {
  const r = ctx.containers.load(id);
  const spec = readJson<Spec>(join(ctx.containers.dir(id), "config.json"));
  const out = new Set<string>();
  for (const m of spec?.mounts ?? []) {
    // As the container sees it: `..` stops at its root (an image's Volumes are hostile input),
    // and a symlink the container made on the way is not followed onto the host.
    const destination = posix.resolve("/", m.destination);
    const p = pathInRoot(r.overlay.upperdir, destination);
    if (p === null) continue;
    try {
      const st = lstatSync(p);
      if ((st.isFile() && st.size === 0) || (st.isDirectory() && readdirSync(p).length === 0))
        out.add(destination);
    } catch {}
  }
  return out;
}

export interface CommitOptions {
  ref?: string;
  message?: string;
  author?: string;
  config?: Partial<NonNullable<ImageConfig["config"]>>;
  pause?: boolean;
}

/**
 * A new image from the container: its image's layers plus one made of the upper directory
 * (whiteouts as `.wh.` files), tagged `ref` (`pivot commit`). A running container is paused
 * meanwhile.
 */
export async function commit(
  ctx: EngineContext,
  containerRef: string,
  options: CommitOptions = {},
): Promise<StoredImage> {
  const id = ctx.containers.resolveId(containerRef);
  const r = ctx.containers.load(id);
  const store = await ctx.images();
  const base = await store.resolve(r.imageId);
  // Frozen as the copies are, under their lock (holdFrozenCopyLock): a cp ending meanwhile must
  // not thaw it, nor this commit thaw what a cp froze. Looked at again once the lock is held.
  const unlockFrozen =
    (options.pause ?? true) && status(ctx, id).status === "running"
      ? await holdFrozenCopyLock(ctx)
      : null;
  const paused = unlockFrozen !== null && status(ctx, id).status === "running";
  // Resumed once the layer is copied, or on the way out of a process ending meanwhile (the CLI
  // exits on SIGINT and SIGTERM): it stayed paused.
  let frozen = paused;
  const thaw = () => {
    process.off("exit", onExit);
    try {
      if (!frozen) return;
      frozen = false;
      if (status(ctx, id).status === "paused") rt(ctx, id).resume(id);
    } finally {
      unlockFrozen?.(); // after the resume: the next copy must find it running, and freeze it
    }
  };
  const onExit = () => {
    try {
      thaw();
    } catch {}
  };
  if (paused) {
    process.on("exit", onExit);
    try {
      rt(ctx, id).pause(id);
    } catch (err) {
      process.off("exit", onExit);
      unlockFrozen?.();
      throw err;
    }
  } else unlockFrozen?.();
  const tmp = join(ctx.root, "tmp");
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  let tree: string | null = null;
  try {
    const opaque = await scanOpaque(r.overlay.upperdir);
    tree = await layerTree(r.overlay.upperdir, tmp, opaque);
    for (const p of mountPlaceholders(ctx, id)) {
      const inTree = pathInRoot(tree, p);
      if (inTree !== null) rmSync(inTree, { recursive: true, force: true });
    }
    thaw();
    const blob = await store.putBlob(tarCreate(tree, ["."]), {}, `the layer of ${r.name}`);
    const layer = await store.importLayer(
      blob.digest,
      MediaType.ociLayer,
      `the layer of ${r.name}`,
    );
    const created = new Date().toISOString();
    const image = await createImage(store, {
      layers: [
        ...base.layers,
        {
          descriptor: { mediaType: MediaType.ociLayer, digest: blob.digest, size: blob.size },
          diffId: layer.diffId,
        },
      ],
      config: {
        ...base.config,
        created,
        ...(options.author ? { author: options.author } : {}),
        config: { ...(base.config.config ?? {}), ...(options.config ?? {}) },
        history: [
          ...(base.config.history ?? []),
          {
            created,
            created_by: `pivot commit ${r.name}`,
            ...(options.message ? { comment: options.message } : {}),
            ...(options.author ? { author: options.author } : {}),
          },
        ],
      },
      refs: options.ref ? [options.ref] : [],
    });
    // Docker's: the comment, the new image's id and the name it was given (as Docker shows it).
    emitEvent(ctx, "container", "commit", id, {
      ...containerAttributes(r),
      comment: options.message ?? "",
      imageID: image.id,
      imageRef: options.ref ? familiarString(parseReference(options.ref)) : "",
    });
    return image;
  } finally {
    thaw();
    if (tree) rmSync(tree, { recursive: true, force: true });
  }
}
