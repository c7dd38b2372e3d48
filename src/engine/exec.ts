// Reaching a container's processes and output: exec (another process in it), attach (conmon's
// attach socket) and logs (its ctr.log).
import { join } from "node:path";
import type { Process, Spec } from "../oci/spec.ts";
import { stream } from "../util/lazy-require.ts";
import { randomHex } from "../util/random.ts";
import { mergeEnv, resolveUser } from "./config.ts";
import { closeConsole, openConsole, type TtyConsole, wireConsole } from "./console.ts";
import { rt, status } from "./container-runtime.ts";
import { readJson } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import { type AttachResult, ContainerHandle } from "./handle.ts";
import { wait } from "./lifecycle.ts";
import { logConfigOf } from "./log-config.ts";
import { type ReadLogsOptions, readLogs } from "./log-reader.ts";
import { drainPipe, feedStdin, writeToStream } from "./pipes.ts";
import { readFileInRoot } from "./root-paths.ts";
import { attachHelper, TTY_DETACHED } from "./tty.ts";
import type { LogEntry } from "./types.ts";

export interface ExecOptions {
  cmd: string[];
  env?: string[];
  user?: string;
  workdir?: string;
  detach?: boolean;
  stdin?: boolean;
  /** A pseudo-terminal (`exec -t`): output comes as one stream, on stdout. */
  tty?: boolean;
  privileged?: boolean;
  stdio?: "pipe" | "inherit" | "ignore";
  /** The process's host pid once forked (Pivot's runtime only; health checks kill on timeout). */
  onPid?: (pid: number) => void;
}

/** The container's output (`pivot logs`), following it with `follow` until it exits. */
export function logs(
  ctx: EngineContext,
  ref: string,
  options: Omit<ReadLogsOptions, "done"> = {},
): AsyncGenerator<LogEntry> {
  const id = ctx.containers.resolveId(ref);
  if (logConfigOf(ctx.containers.load(id).options).driver === "none") {
    // Docker's words: its none driver keeps nothing to read either.
    throw new EngineError(
      `container ${id.slice(0, 12)} has no log: configured logging driver does not support reading`,
      { hint: "it was created with --log-driver none; `pivot attach` shows its output live" },
    );
  }
  return readLogs(join(ctx.containers.dir(id), "ctr.log"), {
    ...options,
    done: () => {
      try {
        return status(ctx, id).status === "exited";
      } catch {
        return true;
      }
    },
  });
}

/** Runs another process in a running container (`pivot exec`). */
export async function exec(
  ctx: EngineContext,
  ref: string,
  options: ExecOptions,
): Promise<ContainerHandle> {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  const st = status(ctx, id);
  if (st.status !== "running") {
    throw new EngineError(`container ${r.name} is not running (${st.status})`, {
      hint: `start it with \`pivot start ${r.name}\``,
    });
  }
  const spec = readJson<Spec>(join(ctx.containers.dir(id), "config.json"));
  const base = spec?.process;
  if (!base) throw new EngineError(`the config of container ${r.name} is missing`);
  const tty = (options.tty ?? false) && !options.detach;
  const proc: Process = {
    terminal: tty,
    user: base.user,
    args: options.cmd,
    env: mergeEnv(
      [base.env ?? [], tty ? ["TERM=xterm"] : [], options.env ?? []],
      (k) => process.env[k],
    ),
    cwd: options.workdir ?? base.cwd,
    noNewPrivileges: base.noNewPrivileges ?? false,
    ...(base.capabilities ? { capabilities: structuredClone(base.capabilities) } : {}),
  };
  if (options.user !== undefined) {
    const merged = r.overlay.target;
    const u = resolveUser(
      options.user,
      readFileInRoot(merged, "etc/passwd"),
      readFileInRoot(merged, "etc/group"),
    );
    proc.user = {
      uid: u.uid,
      gid: u.gid,
      ...(u.additionalGids.length ? { additionalGids: u.additionalGids } : {}),
    };
  }
  if (options.cmd.length === 0) throw new EngineError("exec needs a command");
  const stdio = options.stdio ?? "pipe";
  const outs = {
    stdout: stdio === "pipe" && !options.detach ? new (stream().PassThrough)() : null,
    stderr: stdio === "pipe" && !options.detach ? new (stream().PassThrough)() : null,
  };
  const stdinStream = options.stdin && stdio === "pipe" ? new (stream().PassThrough)() : null;
  let streamsDone: Promise<unknown> = Promise.resolve();
  let term: TtyConsole | null = null;
  if (tty) {
    term = await openConsole(ctx, id, randomHex(8), stdio, !!options.stdin);
    streamsDone = wireConsole(term, stdinStream, outs.stdout, null);
  }
  // Docker's exec events: exec_create and exec_start name the command; exec_die its exit code.
  const execId = randomHex(32);
  const attributes = containerAttributes(r, { execID: execId });
  const command = options.cmd.join(" ");
  emitEvent(ctx, "container", `exec_create: ${command}`, id, attributes);
  emitEvent(ctx, "container", `exec_start: ${command}`, id, attributes);
  if (options.detach) {
    const detached = await import("./exec-detached.ts");
    if (detached.execUnderConmon(ctx)) {
      await detached.startDetachedExec(ctx, r, proc, execId);
      return new ContainerHandle(id, r.name, null, null, null, () => Promise.resolve(0));
    }
  }
  const result = rt(ctx, id).exec(id, {
    process: proc,
    detach: options.detach ?? false,
    ...(term ? { consoleSocket: term.socket } : {}),
    ...(options.onPid ? { onPid: options.onPid } : {}),
    stdio:
      options.detach || term
        ? ["ignore", "ignore", "ignore"]
        : [
            options.stdin ? (stdio === "inherit" ? "inherit" : "pipe") : "ignore",
            stdio === "inherit" ? "inherit" : "pipe",
            stdio === "inherit" ? "inherit" : "pipe",
          ],
    onLaunch: (pipes) => {
      if (term) return;
      const waits: Promise<unknown>[] = [];
      for (const name of ["stdout", "stderr"] as const) {
        const src = pipes[name];
        const dst = outs[name];
        if (!src) continue;
        waits.push(drainPipe(src, (chunk) => (dst ? writeToStream(dst, chunk) : undefined)));
      }
      streamsDone = Promise.all(waits);
      if (stdinStream && pipes.stdin) feedStdin(stdinStream, pipes.stdin);
    },
  });
  const exited = (async () => {
    try {
      const { exitCode } = await result;
      // Without conmon, a detached exec's end is nobody's to see: no exec_die then.
      if (!options.detach)
        emitEvent(ctx, "container", "exec_die", id, { ...attributes, exitCode: String(exitCode) });
      return exitCode;
    } finally {
      if (term) await closeConsole(term, result);
      await streamsDone;
      // Ended here, with or without a terminal: the output is copied chunk by chunk (drainPipe),
      // not piped, so nothing else ends them.
      outs.stdout?.end();
      outs.stderr?.end();
    }
  })();
  if (options.detach) await exited;
  exited.catch(() => {});
  return new ContainerHandle(id, r.name, stdinStream, outs.stdout, outs.stderr, () => exited);
}

/**
 * Joins this process's terminal (or pipes) to a detached container's stdio through conmon's
 * attach socket (`pivot attach`). Resolves when the container exits (with its code) or when the
 * user types the detach keys (default Ctrl-P Ctrl-Q; "" for none).
 */
export async function attach(
  ctx: EngineContext,
  ref: string,
  options: { detachKeys?: string; noStdin?: boolean; stdio?: "inherit" | "pipe" } = {},
): Promise<AttachResult> {
  const id = ctx.containers.resolveId(ref);
  const r = ctx.containers.load(id);
  const st = status(ctx, id);
  const rs = ctx.containers.runState(id);
  if (st.status !== "running" || rs?.monitor !== "conmon") {
    throw new EngineError(
      st.status === "running"
        ? `container ${r.name} is attached to another pivot process`
        : `container ${r.name} is not running (${st.status})`,
      { hint: st.status === "running" ? "" : `start it with \`pivot start ${r.name}\`` },
    );
  }
  const helper = await attachHelper(join(ctx.containers.dir(id), "attach"), {
    ctl: join(ctx.containers.dir(id), "ctl"),
    stdin: !options.noStdin && (r.options.stdin ?? false),
    stdio: options.stdio ?? "inherit",
    ...(options.detachKeys !== undefined ? { detachKeys: options.detachKeys } : {}),
  });
  emitEvent(ctx, "container", "attach", id, containerAttributes(r));
  const code = await helper.exited;
  if (code === TTY_DETACHED) {
    emitEvent(ctx, "container", "detach", id, containerAttributes(r));
    return { id, detached: true, exitCode: null };
  }
  if (code !== 0) throw new EngineError(`attaching to container ${r.name} failed`);
  return { id, detached: false, exitCode: await wait(ctx, id) };
}
