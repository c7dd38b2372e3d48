// Shared helpers for tests: busybox bundles, a private runtime root, the CLIs as subprocesses.
import { spawnSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSpec } from "../src/oci/default-spec.ts";
import type { Spec } from "../src/oci/spec.ts";

export const REPO = join(import.meta.dir, "..");
export const BUN = process.execPath;
export const RUNTIME_CLI = join(REPO, "bin/pivot-runtime.ts");
export const PIVOT_CLI = join(REPO, "bin/pivot.ts");

export const isRoot = process.getuid?.() === 0;

/** A scratch directory removed by the returned cleanup. */
export function tempDir(prefix = "pivot-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Builds a busybox root filesystem in DIR from Debian's busybox-static. */
export function makeBusyboxRootfs(dir: string): void {
  const r = spawnSync(join(REPO, "scripts/make-busybox-rootfs.sh"), [dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`make-busybox-rootfs failed: ${r.stderr}`);
}

/** Writes a bundle (rootfs + config.json) with the default spec, changed by `edit`. */
export function makeBundle(dir: string, edit: (spec: Spec) => void = () => {}): string {
  mkdirSync(dir, { recursive: true });
  makeBusyboxRootfs(join(dir, "rootfs"));
  const spec = defaultSpec({ args: ["true"] });
  spec.process!.terminal = false;
  edit(spec);
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
  return dir;
}

/** Gives the container's process CAP in its bounding, effective and permitted sets. */
export function addCapability(spec: Spec, cap: string): void {
  const caps = spec.process!.capabilities!;
  for (const set of ["bounding", "effective", "permitted"] as const)
    caps[set] = [...(caps[set] ?? []), cap];
}

export function writeSpec(bundle: string, spec: Spec): void {
  writeFileSync(join(bundle, "config.json"), JSON.stringify(spec, null, 2));
}

export function readSpec(bundle: string): Spec {
  return JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as Spec;
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `pivot-runtime --root ROOT ARGS...` and waits for it. Output goes through files, not
 * pipes: a detached container inherits stdout and would keep a pipe open for its whole life.
 */
/**
 * A command run as another user (setpriv with the user's groups) in a clean environment: only
 * `env` is set. Output goes through files, not pipes: a detached container started by the command
 * would hold a pipe open for its whole life.
 */
export function runAsUser(
  user: { uid: number | string; gid?: number | string },
  command: string[],
  options: { env: Record<string, string | undefined>; cwd: string; timeoutMs?: number },
): CliResult {
  const dir = mkdtempSync(join(tmpdir(), "pivot-as-user-"));
  const out = openSync(join(dir, "out"), "w");
  const err = openSync(join(dir, "err"), "w");
  try {
    const r = spawnSync(
      "setpriv",
      [
        `--reuid=${user.uid}`,
        `--regid=${user.gid ?? user.uid}`,
        "--init-groups",
        "env",
        "-i",
        ...Object.entries(options.env)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${v}`),
        ...command,
      ],
      { stdio: ["ignore", out, err], timeout: options.timeoutMs ?? 60_000, cwd: options.cwd },
    );
    return {
      status: r.status ?? -1,
      stdout: readFileSync(join(dir, "out"), "utf8"),
      stderr: readFileSync(join(dir, "err"), "utf8"),
    };
  } finally {
    closeSync(out);
    closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function runtime(
  root: string,
  args: string[],
  /** wrapper: a command that runs the runtime, e.g. one that installs a seccomp filter first. */
  options: { timeoutMs?: number; wrapper?: string[] } = {},
): CliResult {
  const dir = mkdtempSync(join(tmpdir(), "pivot-cli-"));
  const outPath = join(dir, "out");
  const errPath = join(dir, "err");
  const out = openSync(outPath, "w");
  const err = openSync(errPath, "w");
  try {
    const [program, ...rest] = [...(options.wrapper ?? []), BUN];
    const r = spawnSync(program!, [...rest, RUNTIME_CLI, "--root", root, ...args], {
      stdio: ["ignore", out, err],
      timeout: options.timeoutMs ?? 30_000,
    });
    return {
      status: r.status ?? -1,
      stdout: readFileSync(outPath, "utf8"),
      stderr: readFileSync(errPath, "utf8"),
    };
  } finally {
    closeSync(out);
    closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `pivot --root ROOT ARGS...` and waits for it, 30 seconds at most unless `timeoutMs` says
 * otherwise. `input` is written to its stdin, else stdin is /dev/null; `uid` runs it as that
 * user, with the group of the same number.
 */
export function pivotCli(
  root: string,
  args: string[],
  options: { input?: string; uid?: number; timeoutMs?: number } = {},
): CliResult {
  const r = spawnSync(BUN, [PIVOT_CLI, "--root", root, ...args], {
    encoding: "utf8",
    timeout: options.timeoutMs ?? 30_000,
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
    ...(options.input !== undefined
      ? { input: options.input }
      : { stdio: ["ignore", "pipe", "pipe"] as ("ignore" | "pipe")[] }),
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Force-deletes every container under ROOT, then removes ROOT. A create that a timed-out test
 * left running may still be writing its state: look again a few times before giving up.
 */
export function cleanupRoot(root: string): void {
  for (let attempt = 0; attempt < 5; attempt++) {
    let dirs: string[] = [];
    try {
      dirs = readdirSync(root).filter((d) => !d.startsWith("."));
    } catch {
      break;
    }
    if (dirs.length === 0) break;
    for (const id of dirs) runtime(root, ["delete", "--force", id]);
    Bun.sleepSync(200);
  }
  rmSync(root, { recursive: true, force: true });
}

/** Mount points in this (the host's) mount namespace. */
export function hostMountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ")[4]!);
}

export function rm(path: string): void {
  rmSync(path, { recursive: true, force: true });
}
