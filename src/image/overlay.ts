/**
 * OverlayFS root filesystems for containers: an image's unpacked layers are
 * the read-only lowerdirs (top layer first), the container's own upperdir
 * takes its writes (copy-on-write) and the workdir is overlay's scratch space.
 *
 * Lower layers are named by their short links under <store>/l/ and mounted
 * with the store root as working directory (as Docker's overlay2 does), so
 * 128 layers and more fit in mount(2)'s one-page option string.
 *
 * Hosts without OverlayFS get a fallback, chosen once per process by
 * rootfsDriver() and recorded in each plan: fuse-overlayfs (Debian's package;
 * same lowerdir/upperdir/workdir layout, the same whiteouts, so diff and
 * commit work unchanged) when it and /dev/fuse are there, else "copy": the
 * layers copied bottom to top into the container's own directory (whiteouts
 * and opaque directories applied), writes going straight into it.
 * PIVOT_STORAGE_DRIVER=overlay|fuse-overlayfs|copy forces one.
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
} from "node:fs";
import { delimiter, join, resolve } from "node:path";
import { LaunchError } from "../errors.ts";
import { type HostLauncher, mountSteps, runHostSteps, unmountStep } from "../runtime/host-plan.ts";
import { escapeMountField, unescapeMountField } from "../runtime/mountinfo.ts";
import { inUserNamespace } from "../runtime/userns.ts";
import { childProcess } from "../util/child-process.ts";
import { lstat, mkdir, readdir, readFile, rm, writeFile } from "../util/fs-async.ts";
import { kernelAtLeast } from "../util/kernel.ts";
import { OverlayError } from "./errors.ts";
import { runHelper } from "./helpers.ts";
import type { ImageStore, LayerRecord, StoredImage } from "./store.ts";
import { overlayOpaqueXattr } from "./xattr.ts";

/** mount(2) copies at most one page of option data. */
export const MAX_MOUNT_OPTIONS = 4095;

/** How a container's root filesystem is made from the image's layers. */
export type RootfsDriver = "overlay" | "fuse-overlayfs" | "copy";

export const ROOTFS_DRIVERS: readonly RootfsDriver[] = ["overlay", "fuse-overlayfs", "copy"];

export interface OverlayPlan {
  /** Absent in plans of older versions: overlay. */
  driver?: RootfsDriver;
  /** The image's layers, top first, as they appear in the options (below the init layer). */
  lowerdirs: string[];
  /** The store's init layer, mounted above the image's layers (absent in older plans). */
  initdir?: string;
  upperdir: string;
  workdir: string;
  /** Where the merged root filesystem is mounted. */
  target: string;
  /** Directory the relative lowerdirs are relative to; mount from here. */
  cwd: string;
  /** The `-o` option string for `mount -t overlay`. */
  options: string;
  /** Mounted with `volatile` (see volatileOverlay). */
  volatile?: boolean;
}

/**
 * The plan of a container whose writable layer is thrown away when it exits (`--rm`): the overlay
 * is mounted `volatile`, so the kernel never syncs the upper filesystem for it, where a plain
 * overlay syncs it at unmount (0.7–136 ms measured here, the host's whole root filesystem, dirty
 * pages of other programs included; 0.2 ms volatile). After a crash such an upper directory is
 * not to be trusted, which does not matter for a container that is removed anyway.
 */
export function volatileOverlay(plan: OverlayPlan): OverlayPlan {
  // overlay's volatile option came with Linux 5.10.
  if ((plan.driver ?? "overlay") !== "overlay" || !kernelAtLeast(5, 10)) return plan;
  return { ...plan, options: `${plan.options},volatile`, volatile: true };
}

/**
 * Plans the overlay for a container: `layers` bottom first (as in the image
 * config), upper/work/merged under `containerDir`. An image without layers
 * gets an empty lowerdir in the container directory.
 */
export function planOverlay(
  storeRoot: string,
  layers: LayerRecord[],
  containerDir: string,
  target: string = join(containerDir, "merged"),
  driver: RootfsDriver = rootfsDriver().driver,
  /** The store's init layer (ImageStore.initLayer), relative to the store root; copy has none. */
  initdir?: string,
): OverlayPlan {
  const init = driver === "copy" ? undefined : initdir;
  const lowerdirs =
    layers.length === 0
      ? [join(containerDir, "empty")]
      : layers.map((l) => `l/${l.link}`).reverse();
  for (const dir of [...lowerdirs, containerDir, target]) {
    if (/[,:\n]/.test(dir) || dir.includes("\\")) {
      throw new OverlayError(
        target,
        `path ${JSON.stringify(dir)} contains ',', ':' or '\\', which overlay mount options cannot carry`,
        "use a store root and container directory without those characters",
      );
    }
  }
  const upperdir = join(containerDir, "upper");
  const workdir = join(containerDir, "work");
  // In a user namespace (the rootless engine) overlay keeps its attributes in user.overlay.*.
  const lowers = init === undefined ? lowerdirs : [init, ...lowerdirs];
  const options = `lowerdir=${lowers.join(":")},upperdir=${upperdir},workdir=${workdir}${driver === "overlay" && inUserNamespace() ? ",userxattr" : ""}`;
  // fuse-overlayfs reads its options from argv (no page limit); copy mounts nothing.
  if (driver === "overlay" && options.length > MAX_MOUNT_OPTIONS) {
    throw new OverlayError(
      target,
      `the mount options for ${layers.length} layers are ${options.length} bytes, over the ${MAX_MOUNT_OPTIONS}-byte limit`,
      "flatten the image (export and import it) or use a shorter container directory",
    );
  }
  const plan: OverlayPlan = { lowerdirs, upperdir, workdir, target, cwd: storeRoot, options };
  if (init !== undefined) plan.initdir = init;
  if (driver !== "overlay") plan.driver = driver;
  return plan;
}

let chosen: { driver: RootfsDriver; reason: string } | undefined;

/**
 * The driver for new containers, decided once per process: PIVOT_STORAGE_DRIVER if set, else
 * overlay when the kernel has OverlayFS, else fuse-overlayfs when it is installed and /dev/fuse
 * is usable, else copy. `reason` says why, for `pivot system info` and warnings.
 */
export function rootfsDriver(): { driver: RootfsDriver; reason: string } {
  const forced = process.env.PIVOT_STORAGE_DRIVER;
  if (forced) {
    if (!(ROOTFS_DRIVERS as readonly string[]).includes(forced)) {
      throw new OverlayError(
        "PIVOT_STORAGE_DRIVER",
        `unknown storage driver ${JSON.stringify(forced)}`,
        `use one of ${ROOTFS_DRIVERS.join(", ")}`,
      );
    }
    return { driver: forced as RootfsDriver, reason: "PIVOT_STORAGE_DRIVER" };
  }
  if (chosen) return chosen;
  if (overlaySupportedSync()) chosen = { driver: "overlay", reason: "the kernel has OverlayFS" };
  else if (findFuseOverlayfs() !== null && fuseUsable())
    chosen = {
      driver: "fuse-overlayfs",
      reason: "the kernel has no OverlayFS; fuse-overlayfs and /dev/fuse are there",
    };
  else
    chosen = {
      driver: "copy",
      reason:
        "the kernel has no OverlayFS and fuse-overlayfs is missing (apt-get install fuse-overlayfs): each container gets a copy of the layers",
    };
  return chosen;
}

function overlaySupportedSync(): boolean {
  try {
    if (/\toverlay$/m.test(readFileSync("/proc/filesystems", "utf8"))) return true;
    const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    return /\/overlay\.ko/.test(readFileSync(`/lib/modules/${release}/modules.dep`, "utf8"));
  } catch {
    return false;
  }
}

/** The fuse-overlayfs program on PATH, or null. */
export function findFuseOverlayfs(): string | null {
  for (const dir of (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    const p = join(dir, "fuse-overlayfs");
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

function fuseUsable(): boolean {
  try {
    accessSync("/dev/fuse", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether the running kernel has OverlayFS (possibly as a module not yet loaded). */
export async function overlaySupported(): Promise<boolean> {
  const fs = await readFile("/proc/filesystems", "utf8").catch(() => "");
  if (/\toverlay$/m.test(fs)) return true;
  const release = await readFile("/proc/sys/kernel/osrelease", "utf8").catch(() => "");
  const modules = await readFile(`/lib/modules/${release.trim()}/modules.dep`, "utf8").catch(
    () => "",
  );
  return /\/overlay\.ko/.test(modules);
}

/**
 * Creates upper, work and target directories and mounts the overlay (fuse-overlayfs: the same
 * with FUSE; copy: fills the target once, later calls do nothing).
 */
export async function mountOverlay(plan: OverlayPlan, launcher?: HostLauncher): Promise<void> {
  makeOverlayDirs(plan);
  if (plan.driver === "copy") return copyRootfs(plan);
  // overlay leaves this behind after a volatile mount and refuses the next mount while it is
  // there (Documentation/filesystems/overlayfs.rst, "Volatile mount").
  if (plan.volatile)
    rmSync(join(plan.workdir, "work/incompat/volatile"), { recursive: true, force: true });
  if (plan.driver === "fuse-overlayfs") {
    const program = findFuseOverlayfs();
    if (program === null) {
      throw new OverlayError(
        plan.target,
        "fuse-overlayfs is not installed, and this container's root filesystem uses it",
        "apt-get install fuse-overlayfs",
      );
    }
    try {
      // allow_other: the container's users are not root; fuse-overlayfs checks permissions itself.
      await runHelper(program, ["-o", `${plan.options},allow_other`, plan.target], {
        cwd: plan.cwd,
      });
    } catch (e) {
      throw new OverlayError(
        plan.target,
        `fuse-overlayfs failed: ${(e as Error).message.split("\n")[0]}`,
        "check that /dev/fuse exists and that you are root",
      );
    }
    return;
  }
  try {
    await runHostSteps(
      mountSteps(
        { source: "overlay", target: plan.target, fstype: "overlay", data: plan.options },
        plan.cwd,
      ),
      launcher,
    );
  } catch (e) {
    if (!(e instanceof LaunchError)) throw e; // the launcher did not run: its own error says why
    throw await overlayMountError(plan.target, e, plan);
  }
}

/**
 * A launcher's failed overlay mount as the error people can act on (mountOverlay's, and the
 * engine's when the container's own launcher mounted it: Runtime's mountFirst).
 */
export async function overlayMountError(
  target: string,
  e: LaunchError,
  plan?: OverlayPlan,
): Promise<OverlayError> {
  // A layer gone from the store (removed by hand, a damaged store): the mount says only ENOENT.
  const missing =
    e.code === "ENOENT" && plan
      ? [...(plan.initdir ? [plan.initdir] : []), ...plan.lowerdirs]
          .map((d) => resolve(plan.cwd, d))
          .find((d) => !existsSync(d))
      : undefined;
  if (missing) {
    return new OverlayError(
      target,
      `mount failed: its lower layer ${missing} is missing from the store`,
      "the image's layers were removed or damaged: remove this container (`pivot rm`), then pull or load its image again",
    );
  }
  const supported = await overlaySupported();
  return new OverlayError(
    target,
    `mount failed: ${launcherReason(e)}`,
    !supported
      ? "this kernel has no OverlayFS; load the overlay module (modprobe overlay)"
      : e.code === "EINVAL"
        ? "overlay writes why to the kernel log (`dmesg | tail`); check that upperdir and workdir are on one filesystem that supports overlay upper layers (not overlay itself)"
        : "check that upperdir and workdir are on one filesystem that supports overlay upper layers (not overlay itself), and that you are root",
  );
}

/**
 * The directories an overlay is mounted with: upper, work, the target (and the empty lower
 * directory of an image without layers). Made by mountOverlay; alone, for a mount made elsewhere
 * (the engine hands an attached run's overlay to the container's launcher: Runtime's mountFirst).
 */
export function makeOverlayDirs(plan: OverlayPlan): void {
  // Synchronous calls: node:fs/promises sends each through a thread pool (~0.1 ms here).
  for (const d of [plan.upperdir, plan.workdir, plan.target]) {
    mkdirSync(d, { recursive: true, mode: 0o755 });
  }
  if (plan.lowerdirs.length === 1 && plan.lowerdirs[0]!.endsWith("/empty")) {
    mkdirSync(plan.lowerdirs[0]!, { recursive: true, mode: 0o755 });
  }
}

/** The why of a launcher error ("step N (what) failed: what: why"), the what being ours already. */
function launcherReason(e: unknown): string {
  const first = (e as Error).message.split("\n")[0] ?? "";
  return first.split(": ").at(-1) ?? first;
}

/** Unmounts an overlay; an already unmounted target is not an error. */
export async function unmountOverlay(
  target: string,
  options: { lazy?: boolean; launcher?: HostLauncher } = {},
): Promise<void> {
  if (!(await isMountPoint(target))) return;
  try {
    await runHostSteps([unmountStep(target, options)], options.launcher);
  } catch (e) {
    throw new OverlayError(
      target,
      `unmount failed: ${launcherReason(e)}`,
      "a process may still use the root filesystem; stop it, or unmount lazily",
    );
  }
}

/** The marker of a complete copy (driver "copy"), beside the target. */
function copyMarker(plan: OverlayPlan): string {
  return `${plan.target}.complete`;
}

/**
 * Driver "copy": the layers copied bottom to top into the target with `cp -a` (owners, modes,
 * times, xattrs, hardlinks within a layer, device nodes kept; reflinks where the filesystem has
 * them). Before each layer: what it replaces is removed (so cp never writes through a symlink
 * or into a file hardlinked elsewhere), its whiteouts delete, its opaque directories empty the
 * directory below. The copy is done once; a marker file says it is complete.
 */
async function copyRootfs(plan: OverlayPlan): Promise<void> {
  if (existsSync(copyMarker(plan))) return;
  await rm(plan.target, { recursive: true, force: true });
  await mkdir(plan.target, { recursive: true, mode: 0o755 });
  // Real paths: the short links are symlinks, which getfattr -h would not descend.
  const lowers = plan.lowerdirs
    .map((l) => realpathSync(l.startsWith("/") ? l : join(plan.cwd, l)))
    .reverse();
  for (const layer of lowers) {
    const opaque = opaqueDirs(layer);
    const whiteouts: string[] = [];
    const prepare = async (rel: string): Promise<void> => {
      for (const name of await readdir(join(layer, rel))) {
        const r = rel ? `${rel}/${name}` : name;
        const st = await lstat(join(layer, r));
        const dest = join(plan.target, r);
        const have = await lstat(dest).catch(() => null);
        if (st.isDirectory()) {
          if (have && !have.isDirectory()) await rm(dest, { force: true });
          else if (have && opaque.has(r)) {
            for (const child of await readdir(dest))
              await rm(join(dest, child), { recursive: true, force: true });
          }
          await prepare(r);
        } else {
          if (have) await rm(dest, { recursive: true, force: true });
          if (st.isCharacterDevice() && st.rdev === 0) whiteouts.push(dest);
        }
      }
    };
    await prepare("");
    const cp = childProcess().spawnSync(
      "cp",
      ["-a", "--reflink=auto", "--", `${layer}/.`, `${plan.target}/`],
      {
        encoding: "utf8",
      },
    );
    if (cp.status !== 0) {
      throw new OverlayError(
        plan.target,
        `copying layer ${layer} failed: ${(cp.stderr || String(cp.error)).trim().split("\n")[0]}`,
        "check the free space of the store's filesystem",
      );
    }
    for (const w of whiteouts) await rm(w, { force: true });
  }
  await writeFile(copyMarker(plan), "");
}

/** Directories of a layer marked opaque (trusted.overlay.opaque=y), relative to it. */
function opaqueDirs(layer: string): Set<string> {
  const r = childProcess().spawnSync(
    "getfattr",
    ["-R", "-h", "--absolute-names", "-n", overlayOpaqueXattr(), "--", layer],
    { encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "ignore"] },
  );
  const out = new Set<string>();
  let file: string | null = null;
  for (const line of (r.stdout ?? "").split("\n")) {
    if (line.startsWith("# file: ")) file = line.slice(8);
    else if (file !== null && line.startsWith(`${overlayOpaqueXattr()}="y"`)) {
      if (file.startsWith(`${layer}/`)) out.add(file.slice(layer.length + 1));
      file = null;
    }
  }
  return out;
}

/** Whether `path` is a mount point in this process's mount namespace. */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = readFileSync("/proc/self/mountinfo", "utf8");
  // Most often not mounted: the path, escaped as mountinfo escapes it, is nowhere in the text.
  if (!info.includes(` ${escapeMountField(path)} `)) return false;
  for (const line of info.split("\n")) {
    const field = line.split(" ")[4];
    if (field !== undefined && unescapeMountField(field) === path) return true;
  }
  return false;
}

/**
 * Unpacks the image's layers if needed and mounts its root filesystem for a
 * container under `containerDir` (upper/, work/, merged/). Returns the plan;
 * unmount with unmountOverlay(plan.target).
 */
export async function mountImageRootfs(
  store: ImageStore,
  image: StoredImage,
  containerDir: string,
): Promise<OverlayPlan> {
  const layers = await store.ensureImageLayers(image);
  const plan = planOverlay(store.root, layers, containerDir);
  await mountOverlay(plan);
  return plan;
}
