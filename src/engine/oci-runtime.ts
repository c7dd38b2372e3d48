// Another OCI runtime binary (runc, crun; `pivot run --runtime PATH`), driven through its command
// line as podman drives it: conmon runs `RUNTIME create`, the engine calls start, state, kill,
// pause, resume, exec and delete. It offers the subset of the Runtime class the engine uses, so
// the engine calls either without knowing which.
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PivotError } from "../errors.ts";
import type { Process, Resources } from "../oci/spec.ts";
import type { StdioSpec } from "../runtime/launcher.ts";
import { type PipedStdio, pipedStdioOf } from "../runtime/piped-stdio.ts";
import { parseSignal } from "../runtime/signals.ts";
import { childProcess } from "../util/child-process.ts";

export class OciRuntimeError extends PivotError {}

export interface OciExecOptions {
  process: Process;
  detach?: boolean;
  consoleSocket?: string;
  stdio?: StdioSpec[];
  onLaunch?: (pipes: PipedStdio) => void;
}

export interface OciRunOptions {
  bundle: string;
  consoleSocket?: string;
  stdio?: StdioSpec[];
  onLaunch?: (pipes: PipedStdio) => void;
  /** Another runtime's cgroups are not known here: the caller finds them (cgroupPathsOf). */
  onStart?: (pid: number, cgroupPaths?: Record<string, string>) => void;
  /** Not offered: `RUNTIME run` has no moment between create and start. */
  onCreated?: (pid: number) => Promise<void>;
  /** Ignored (Pivot's own launcher does it; the engine passes it only to that): cleanup unmounts. */
  unmountAfterExit?: string;
}

/** The exit code of a child: its status, or 128+N for signal N. */
function codeOf(status: number | null, signal: NodeJS.Signals | null): number {
  if (status !== null) return status;
  return signal ? 128 + parseSignal(signal) : 255;
}

export class OciRuntimeCli {
  /** Same shape as Runtime.store, for the one question the engine asks of it. */
  readonly store: { root: string; exists: (id: string) => boolean };

  /** `path`: the runtime binary; `root`: its state directory (its --root). */
  constructor(
    readonly path: string,
    readonly root: string,
  ) {
    this.store = { root, exists: (id) => existsSync(join(root, id)) };
    if (!existsSync(path)) {
      throw new OciRuntimeError(`OCI runtime ${path} does not exist`, {
        hint: "give the path of an installed runtime binary, e.g. --runtime /usr/sbin/runc",
      });
    }
  }

  /** The command conmon runs: the binary and its --root. */
  command(): string[] {
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    return [this.path, "--root", this.root];
  }

  private call(args: string[], what: string): string {
    const r = childProcess().spawnSync(this.path, ["--root", this.root, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    if (r.error) throw new OciRuntimeError(`${what}: ${this.path}: ${r.error.message}`);
    if (r.status !== 0) {
      const msg = (r.stderr || r.stdout).trim().split("\n").pop() ?? "";
      throw new OciRuntimeError(`${what}: ${this.path} failed: ${msg || `exit ${r.status}`}`);
    }
    return r.stdout;
  }

  state(id: string): { status: string; pid: number } {
    const s = JSON.parse(this.call(["state", id], `state of ${id}`)) as {
      status?: string;
      pid?: number;
    };
    return { status: s.status ?? "unknown", pid: s.pid ?? 0 };
  }

  async start(id: string): Promise<void> {
    this.call(["start", id], `start ${id}`);
  }

  kill(id: string, signal: string | number = "SIGTERM", all = false): void {
    const sig = String(parseSignal(signal));
    this.call(["kill", ...(all ? ["--all"] : []), id, sig], `kill ${id}`);
  }

  async delete(id: string, force = false): Promise<void> {
    if (!this.store.exists(id)) return;
    this.call(["delete", ...(force ? ["--force"] : []), id], `delete ${id}`);
  }

  pause(id: string): void {
    this.call(["pause", id], `pause ${id}`);
  }

  resume(id: string): void {
    this.call(["resume", id], `resume ${id}`);
  }

  /** Changes a running container's limits (`RUNTIME update --resources FILE`, as runc takes them). */
  async update(id: string, resources: Resources): Promise<void> {
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const file = join(this.root, `.update-${id}-${process.pid}.json`);
    writeFileSync(file, JSON.stringify(resources), { mode: 0o600 });
    try {
      this.call(["update", "--resources", file, id], `update ${id}`);
    } finally {
      rmSync(file, { force: true });
    }
  }

  /** The pids of the container's processes (`RUNTIME ps --format json`). */
  pids(id: string): number[] {
    const out = this.call(["ps", "--format", "json", id], `ps ${id}`).trim();
    return out ? (JSON.parse(out) as number[]) : [];
  }

  /** `RUNTIME exec --process FILE [-d] [--console-socket S] ID`; resolves with the exit code. */
  async exec(id: string, o: OciExecOptions): Promise<{ pid: number; exitCode: number }> {
    const dir = join(this.root, ".exec");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${id.slice(0, 12)}-${process.pid}-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(o.process));
    const args = ["--root", this.root, "exec", "--process", file];
    if (o.detach) args.push("--detach");
    if (o.consoleSocket) args.push("--console-socket", o.consoleSocket);
    args.push(id);
    try {
      const child = childProcess().spawn(this.path, args, {
        stdio: o.stdio ?? ["ignore", "pipe", "pipe"],
      });
      o.onLaunch?.(pipedStdioOf(child));
      const code = await new Promise<number>((res, rej) => {
        child.on("error", rej);
        child.on("close", (status, signal) => res(codeOf(status, signal)));
      });
      return { pid: child.pid ?? 0, exitCode: code };
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * `RUNTIME run -b BUNDLE ID` with this process as the monitor; resolves with the exit code.
   * The state goes with `delete --force` once it has exited.
   */
  async run(id: string, o: OciRunOptions): Promise<number> {
    if (o.onCreated) {
      throw new OciRuntimeError(
        `an attached container on slirp4netns or pasta cannot run with --runtime ${this.path}`,
        { hint: "run it detached (-d, under conmon), or with Pivot's own runtime" },
      );
    }
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const args = ["--root", this.root, "run", "--bundle", o.bundle];
    if (o.consoleSocket) args.push("--console-socket", o.consoleSocket);
    args.push(id);
    const child = childProcess().spawn(this.path, args, {
      stdio: o.stdio ?? ["ignore", "pipe", "pipe"],
    });
    o.onLaunch?.(pipedStdioOf(child));
    let exited = false;
    const result = new Promise<number>((res, rej) => {
      child.on("error", rej);
      child.on("close", (status, signal) => {
        exited = true;
        res(codeOf(status, signal));
      });
    });
    // The runtime does not say when the process has started: its state shows the pid.
    if (o.onStart) {
      const onStart = o.onStart;
      void (async () => {
        for (let i = 0; i < 2000 && !exited; i++) {
          try {
            const s = this.state(id);
            if (s.pid > 0 && s.status !== "creating") {
              onStart(s.pid);
              return;
            }
          } catch {}
          await new Promise((r) => setTimeout(r, 5));
        }
        if (exited) onStart(0);
      })();
    }
    try {
      return await result;
    } finally {
      await this.delete(id, true).catch(() => {});
    }
  }
}
