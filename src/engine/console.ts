// Terminals of attached containers and `exec -t`: pivot-tty in console mode (tty.ts) listening on
// a socket for the runtime's pty master, joined to this process's terminal or to the handle's
// streams and the log.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { EngineContext } from "./context.ts";
import type { LogWriter } from "./monitor.ts";
import { drainPipe } from "./pipes.ts";
import { consoleHelper, type TtyHelper } from "./tty.ts";

/** pivot-tty in console mode, and the socket it listens on. */
export interface TtyConsole extends TtyHelper {
  socket: string;
}

/** Starts pivot-tty listening on a console socket for the runtime's pty master. */
export async function openConsole(
  ctx: EngineContext,
  id: string,
  runId: string,
  stdio: "pipe" | "inherit" | "ignore",
  stdin: boolean,
): Promise<TtyConsole> {
  const dir = join(ctx.runRoot, "tty");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, `${id.slice(0, 12)}-${runId}.sock`);
  const helper = await consoleHelper(socket, {
    stdio: stdio === "inherit" ? "inherit" : "pipe",
    stdin: stdin && stdio !== "ignore",
  });
  return { ...helper, socket };
}

/** The terminal's output (stdout and stderr in one) to `out` and the log; `stdin` to it. */
export function wireConsole(
  tty: TtyConsole,
  stdin: Readable | null,
  out: Writable | null,
  log: LogWriter | null,
): Promise<unknown> {
  const src = tty.child.stdout;
  const drained = src
    ? drainPipe(src, (chunk) => {
        log?.write("stdout", chunk);
        out?.write(chunk);
      })
    : null;
  if (stdin && tty.child.stdin) {
    stdin.pipe(tty.child.stdin);
    tty.child.stdin.on("error", () => {});
  }
  return Promise.all([tty.exited, drained]);
}

/**
 * Once the process has exited: the helper sees the terminal close when the last process holding
 * it is gone; it is ended if that takes long, or at once if the launch failed.
 */
export async function closeConsole(tty: TtyConsole, result: Promise<unknown>): Promise<void> {
  const failed = await result.then(
    () => false,
    () => true,
  );
  if (!failed) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([tty.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
  if (tty.child.exitCode === null && tty.child.signalCode === null) tty.child.kill("SIGTERM");
  await tty.exited;
  rmSync(tty.socket, { force: true });
}
