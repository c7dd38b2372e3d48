// Files of a container: paths resolved inside its root only (symlinks never followed out onto the
// host), tar streams in and out (`pivot cp`, `pivot export`), the upper directory's changes
// (`pivot diff`) and a layer made of them (`pivot commit`).
import {
  closeSync,
  constants,
  lstatSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  type Stats,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { lstatAt, openDirAt } from "../image/layer-lookup.ts";
import {
  applyLayer,
  overlayOpaqueXattr,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
} from "../image/unpack.ts";
import { lstat, mkdir, rm } from "../util/fs-async.ts";
import { FilesError, kindAt } from "./root-paths.ts";

export {
  FilesError,
  kindAt,
  mkdirInRoot,
  pathInRoot,
  readFileInRoot,
  resolveInRoot,
} from "./root-paths.ts";

import { childProcess } from "../util/child-process.ts";
import { randomHex } from "../util/random.ts";

/**
 * A tar stream (GNU tar, numeric owners, xattrs) of `names` in `dir`; symlinks are archived as
 * symlinks, never followed. `onEnd` runs when tar has exited (or failed).
 */
export function tarCreate(
  dir: string,
  names: string[],
  onEnd: (err: Error | null) => void = () => {},
): Readable {
  const child = childProcess().spawn(
    "tar",
    ["-C", dir, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", "-", "--", ...names],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  // Read from the start: a child's unread output can be lost once it has exited (seen under Bun).
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  const drained = new Promise<void>((r) => child.stdout.on("end", r));
  // onEnd once, however the stream ends: it releases what the caller holds (a frozen container).
  let ended = false;
  const finish = (err: Error | null) => {
    if (ended) return;
    ended = true;
    onEnd(err);
  };
  child.on("error", (err) => {
    out.destroy(err);
    finish(err);
  });
  child.on("close", async (code) => {
    const err =
      code === 0 ? null : new FilesError(`tar failed: ${stderr.trim() || `exit ${code}`}`);
    await drained;
    if (err) out.destroy(err);
    else out.end();
    finish(err);
  });
  // A reader that stops early (destroyed the stream, a closed pipe): tar would block on its full
  // pipe forever and onEnd never run; it is killed, which ends the stream.
  out.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return out;
}

/**
 * Moves `src` to `dst`, merging directories into existing directories (as `docker cp` does);
 * anything else at `dst` (a file, a symlink — never followed) is replaced.
 */
export function moveInto(src: string, dst: string): void {
  const s = kindAt(src);
  const d = kindAt(dst);
  if (s === "dir" && d === "dir") {
    for (const n of readdirSync(src)) moveInto(join(src, n), join(dst, n));
    rmSync(src, { recursive: true, force: true });
    return;
  }
  if (d !== null) rmSync(dst, { recursive: d === "dir", force: true });
  renameSync(src, dst);
}

/**
 * Extracts a tar stream with the image unpacker's safe extraction (no `..`, no writing through
 * symlinks, O_NOFOLLOW) into a new directory beside `dst`, then moves the entry named `from` to
 * `dst` (merging directories). With `from` null, every top-level entry goes into the directory
 * `dst`.
 */
export async function extractTar(
  tar: string | AsyncIterable<Uint8Array>,
  dst: string,
  from: string | null,
  /** A container's files landing on the host: no device nodes, setuid/setgid bits, capabilities. */
  onHost = false,
  /** Every file's owner instead of the archive's (UnpackOptions.owner). */
  owner?: { uid: number; gid: number },
): Promise<void> {
  const stageParent = from === null ? dst : dirname(dst);
  const stage = join(stageParent, `.pivot-cp-${randomHex(6)}`);
  await mkdir(stage, { mode: 0o700 });
  try {
    // Copied files, not a layer: a `.wh.` name is a file, not a whiteout.
    await applyLayer(tar, stage, {
      archiveName: "the copied files",
      whiteouts: false,
      privileges: !onHost,
      ...(owner ? { owner } : {}),
    });
    if (from === null) {
      for (const n of readdirSync(stage)) moveInto(join(stage, n), join(dst, n));
    } else {
      if (kindAt(join(stage, from)) === null) throw new FilesError(`${from} is not in the archive`);
      moveInto(join(stage, from), dst);
    }
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** Docker's `cp` rule: into DEST when it is a directory, else as DEST. */
export function copyTarget(dest: string): { dir: string; name: string | null } {
  if (kindAt(dest) === "dir") return { dir: dest, name: null };
  return { dir: dirname(dest), name: basename(dest) };
}

// ---- changes in the upper directory ----

export interface Change {
  /** A added, C changed, D deleted (Docker's letters). */
  kind: "A" | "C" | "D";
  path: string;
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function inLowers(lowers: string[], rel: string): boolean {
  for (const l of lowers) {
    try {
      lstatSync(join(l, rel));
      return true;
    } catch {}
  }
  return false;
}

/**
 * The container's changes against its image, from the overlay's upper directory. A running
 * container changes it meanwhile: each directory is opened O_NOFOLLOW below the one before, so
 * one swapped for a symlink to the host is not followed, and an entry gone meanwhile is skipped.
 */
export function upperChanges(upper: string, lowers: string[], opaque: Set<string>): Change[] {
  const out: Change[] = [];
  // `hidden`: an opaque directory at or above `rel` hides the lower layers there; passed down the
  // walk (looking at every ancestor again for each entry made diff cubic in a tree's depth).
  const walk = (dirFd: number, rel: string, hidden: boolean) => {
    let names: string[];
    try {
      names = readdirSync(`/proc/self/fd/${dirFd}`).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatAt(dirFd, n);
      if (st === null) continue;
      if (isWhiteout(st)) {
        out.push({ kind: "D", path: `/${r}` });
        continue;
      }
      const existed = !hidden && inLowers(lowers, r);
      out.push({ kind: existed ? "C" : "A", path: `/${r}` });
      if (!st.isDirectory()) continue;
      const child = openDirAt(dirFd, n);
      if (child === null) continue;
      try {
        walk(child, r, hidden || opaque.has(join(upper, r)));
      } finally {
        closeSync(child);
      }
    }
  };
  let top: number;
  try {
    top = openSync(upper, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return out;
  }
  try {
    walk(top, "", false);
  } finally {
    closeSync(top);
  }
  return out;
}

/**
 * Copies the tree `src` into the new directory `dst` as it is (owners, modes, xattrs, hardlinks,
 * devices) with GNU tar at both ends: tar walks `src` through O_NOFOLLOW file descriptors, where
 * `cp -a` goes by path names, which a running container that swaps one of its directories for a
 * symlink meanwhile (`commit --pause=false`) would send onto the host's files.
 */
function copyTree(src: string, dst: string): Promise<void> {
  const opts = ["--numeric-owner", "--xattrs", "--xattrs-include=*"];
  const run = (args: string[], stdin: "ignore" | "pipe", stdout: "ignore" | "pipe") => {
    const child = childProcess().spawn("tar", args, { stdio: [stdin, stdout, "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const done = new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stderr: stderr.trim() }));
    });
    return { child, done };
  };
  // --ignore-failed-read: a running container's file gone meanwhile is left out, as it is gone.
  const reader = run(
    ["-C", src, ...opts, "--ignore-failed-read", "-cf", "-", "."],
    "ignore",
    "pipe",
  );
  const writer = run(["-C", dst, ...opts, "-xpf", "-"], "pipe", "ignore");
  reader.child.stdout?.pipe(writer.child.stdin!);
  return Promise.all([reader.done, writer.done]).then(([r, w]) => {
    // tar exits 1 for files that changed while it read them (a running container's).
    if ((r.code ?? 2) > 1 || w.code !== 0) {
      throw new FilesError(
        `copying ${src} to ${dst} failed: ${r.stderr || w.stderr || "tar failed"}`,
        {
          hint: "pause the container while it is committed (the default), or check the disk space",
        },
      );
    }
  });
}

/**
 * A copy of the upper directory in the OCI layer form: whiteouts (character devices 0/0) become
 * empty `.wh.NAME` files. Returns the directory (under `tmp`), to be archived with tarCreate.
 */
export async function layerTree(upper: string, tmp: string, opaque: Set<string>): Promise<string> {
  const dir = join(tmp, `layer-${randomHex(6)}`);
  await mkdir(dir, { mode: 0o700 });
  try {
    await copyTree(upper, dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  // A marker replaces whatever the container put at its name: a symlink there (to a host file)
  // would be written through. rm never follows it; O_EXCL fails on one made meanwhile.
  const mark = (path: string) => {
    rmSync(path, { recursive: true, force: true });
    writeFileSync(path, "", { flag: "wx" });
  };
  const walk = async (rel: string) => {
    for (const n of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(dir, r)).catch(() => null);
      if (st === null) continue; // a container's .wh. name, replaced by a marker already
      if (isWhiteout(st)) {
        rmSync(join(dir, r));
        mark(join(dir, rel, `${WHITEOUT_PREFIX}${n}`));
      } else if (st.isDirectory()) {
        if (opaque.has(join(upper, r))) mark(join(dir, r, WHITEOUT_OPAQUE));
        await walk(r);
      }
    }
  };
  await walk("");
  return dir;
}

/**
 * The opaque directories of `upper` (overlayfs's trusted.overlay.opaque=y, user.overlay.opaque
 * rootless), read with getfattr.
 */
export function scanOpaque(upper: string): Promise<Set<string>> {
  return new Promise((resolve) => {
    const out = new Set<string>();
    const child = childProcess().spawn(
      "getfattr",
      ["-R", "-P", "--absolute-names", "-n", overlayOpaqueXattr(), "--", upper],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    let text = "";
    child.stdout.on("data", (d: Buffer) => {
      text += d.toString();
    });
    child.on("error", () => resolve(out));
    child.on("close", () => {
      let file: string | null = null;
      for (const line of text.split("\n")) {
        if (line.startsWith("# file: ")) file = line.slice(8);
        else if (file && line.startsWith(`${overlayOpaqueXattr()}="y"`)) out.add(file);
      }
      resolve(out);
    });
  });
}
