// Terminals for containers through native/tty.c (pivot-tty): Node cannot receive the pty master
// over the console socket (SCM_RIGHTS) nor speak conmon's SOCK_SEQPACKET attach socket, so a small
// helper process joins the user's terminal (or pipes) to the container's.
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { PivotError } from "../errors.ts";
import { childProcess } from "../util/child-process.ts";

/** pivot-tty's exit status when the user typed the detach keys. */
export const TTY_DETACHED = 3;

export function ttyHelperPath(): string {
  const fromEnv = process.env.PIVOT_TTY;
  if (fromEnv) return fromEnv;
  const here = dirname(decodeURIComponent(new URL(import.meta.url).pathname));
  const candidates = [
    join(here, "../../native/build/pivot-tty"),
    join(here, "../native/build/pivot-tty"),
    join(dirname(process.execPath), "pivot-tty"),
    join(dirname(process.execPath), "../native/build/pivot-tty"),
  ];
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new PivotError(`the terminal helper ${candidates[0]} does not exist`, {
      hint: "build it with `make -C native` (the setup script does this), or set PIVOT_TTY",
    });
  }
  return found;
}

export interface TtyHelper {
  child: ChildProcess;
  /** Resolves with pivot-tty's exit status (0: the terminal closed; TTY_DETACHED; 1: an error). */
  exited: Promise<number>;
}

function track(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.on("error", () => resolve(1));
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** Starts pivot-tty and resolves once it reports ready on fd 3 (listening, or connected). */
function startHelper(args: string[], stdio: ("inherit" | "pipe" | "ignore")[]): Promise<TtyHelper> {
  const child = childProcess().spawn(ttyHelperPath(), [...args, "--ready-fd", "3"], {
    stdio: [...stdio, "pipe"],
  });
  const exited = track(child);
  return new Promise((resolve, reject) => {
    const ready = child.stdio[3] as NodeJS.ReadableStream;
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    ready.once("data", () => resolve({ child, exited }));
    ready.on("error", () => {});
    // The ready line can still be unread when the exit is seen (a helper told to detach by
    // stdin at once reports ready and exits): only a helper whose pipe closed without it failed.
    const readyClosed = new Promise((done) => ready.once("close", done));
    void exited.then(async (code) => {
      await readyClosed;
      reject(
        new PivotError(
          `the terminal helper exited (${code})${stderr.trim() ? `: ${stderr.trim()}` : ""}`,
        ),
      );
    });
  });
}

/**
 * Listens on `socketPath` for the runtime's pty master (console mode). Resolves once the socket
 * listens. stdio "inherit" uses this process's terminal (raw mode); "pipe" gives streams.
 */
export function consoleHelper(
  socketPath: string,
  options: { stdio: "inherit" | "pipe"; stdin: boolean },
): Promise<TtyHelper> {
  const s = options.stdio;
  return startHelper(
    ["console", socketPath, ...(options.stdin ? [] : ["--no-stdin"])],
    [options.stdin ? s : "ignore", s, s === "pipe" ? "pipe" : "inherit"],
  );
}

/**
 * Attaches to conmon's attach socket (attach mode); `ctl` is conmon's control fifo (resize).
 * Resolves once connected.
 */
export function attachHelper(
  socketPath: string,
  options: { ctl?: string; detachKeys?: string; stdin: boolean; stdio?: "inherit" | "pipe" },
): Promise<TtyHelper> {
  const args = ["attach", socketPath];
  if (options.ctl) args.push("--ctl", options.ctl);
  if (options.detachKeys !== undefined) args.push("--detach-keys", options.detachKeys);
  if (!options.stdin) args.push("--no-stdin");
  const s = options.stdio ?? "inherit";
  return startHelper(args, [options.stdin ? s : "ignore", s, s]);
}
