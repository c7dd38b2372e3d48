/**
 * OverlayFS root filesystems for containers: an image's unpacked layers are
 * the read-only lowerdirs (top layer first), the container's own upperdir
 * takes its writes (copy-on-write) and the workdir is overlay's scratch space.
 *
 * Lower layers are named by their short links under <store>/l/ and mounted
 * with the store root as working directory (as Docker's overlay2 does), so
 * 128 layers and more fit in mount(2)'s one-page option string.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { OverlayError } from "./errors.ts";
import { runHelper } from "./helpers.ts";
import type { ImageStore, LayerRecord, StoredImage } from "./store.ts";

/** mount(2) copies at most one page of option data. */
export const MAX_MOUNT_OPTIONS = 4095;

export interface OverlayPlan {
  /** Lower directories as they appear in the options, top layer first. */
  lowerdirs: string[];
  upperdir: string;
  workdir: string;
  /** Where the merged root filesystem is mounted. */
  target: string;
  /** Directory the relative lowerdirs are relative to; mount from here. */
  cwd: string;
  /** The `-o` option string for `mount -t overlay`. */
  options: string;
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
): OverlayPlan {
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
  const options = `lowerdir=${lowerdirs.join(":")},upperdir=${upperdir},workdir=${workdir}`;
  if (options.length > MAX_MOUNT_OPTIONS) {
    throw new OverlayError(
      target,
      `the mount options for ${layers.length} layers are ${options.length} bytes, over the ${MAX_MOUNT_OPTIONS}-byte limit`,
      "flatten the image (export and import it) or use a shorter container directory",
    );
  }
  return { lowerdirs, upperdir, workdir, target, cwd: storeRoot, options };
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

/** Creates upper, work and target directories and mounts the overlay. */
export async function mountOverlay(plan: OverlayPlan): Promise<void> {
  for (const d of [plan.upperdir, plan.workdir, plan.target]) {
    await mkdir(d, { recursive: true, mode: 0o755 });
  }
  if (plan.lowerdirs.length === 1 && plan.lowerdirs[0]!.endsWith("/empty")) {
    await mkdir(plan.lowerdirs[0]!, { recursive: true, mode: 0o755 });
  }
  try {
    await runHelper("mount", ["-t", "overlay", "overlay", "-o", plan.options, plan.target], {
      cwd: plan.cwd,
    });
  } catch (e) {
    const supported = await overlaySupported();
    throw new OverlayError(
      plan.target,
      `mount failed: ${(e as Error).message.split("\n")[0]}`,
      supported
        ? "check that upperdir and workdir are on one filesystem that supports overlay upper layers (not overlay itself), and that you are root"
        : "this kernel has no OverlayFS; load the overlay module (modprobe overlay)",
    );
  }
}

/** Unmounts an overlay; an already unmounted target is not an error. */
export async function unmountOverlay(
  target: string,
  options: { lazy?: boolean } = {},
): Promise<void> {
  if (!(await isMountPoint(target))) return;
  try {
    await runHelper("umount", options.lazy ? ["-l", target] : [target]);
  } catch (e) {
    throw new OverlayError(
      target,
      `unmount failed: ${(e as Error).message.split("\n")[0]}`,
      "a process may still use the root filesystem; stop it, or unmount lazily",
    );
  }
}

/** Whether `path` is a mount point in this process's mount namespace. */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of info.split("\n")) {
    const field = line.split(" ")[4];
    if (field !== undefined && unescapeMountPath(field) === path) return true;
  }
  return false;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
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
