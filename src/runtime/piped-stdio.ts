// The caller's ends of a container's "pipe" stdio entries, the same whether the launcher was
// started by Bun.spawn (web streams, a FileSink) or by node:child_process (node streams).
import type { ChildProcess } from "node:child_process";

/**
 * The caller's ends of the container's "pipe" stdio entries, whichever way the launcher started
 * (Bun.spawn under Bun, node:child_process under Node): null where the entry is not "pipe".
 */
export interface PipedStdio {
  /** The container's stdin: each write goes out at once; end() closes it. */
  stdin: StdinPipe | null;
  /**
   * The container's output, chunk by chunk; the iteration ends when every writer has closed it.
   * Read it, or ask for "ignore" or a file descriptor instead of "pipe": under Bun, output nobody
   * reads is buffered in memory without limit (node streams would stop the writer instead).
   */
  stdout: AsyncIterable<Uint8Array> | null;
  stderr: AsyncIterable<Uint8Array> | null;
}

export interface StdinPipe {
  /** A promise when the pipe could not take the chunk at once: wait for it before the next. */
  write(chunk: Uint8Array): Promise<void> | undefined;
  end(): void;
}

/** A node ChildProcess's pipes as PipedStdio (the launcher under Node, another OCI runtime). */
export function pipedStdioOf(child: ChildProcess): PipedStdio {
  const stdin = child.stdin;
  // A container that closed its stdin makes writes fail with EPIPE: not the caller's error.
  stdin?.on("error", () => {});
  return {
    stdin: stdin
      ? {
          write: (chunk) => {
            if (stdin.write(chunk) || stdin.destroyed) return undefined;
            return new Promise((resolve) => {
              stdin.once("drain", resolve);
              stdin.once("close", resolve);
            });
          },
          end: () => void stdin.end(),
        }
      : null,
    stdout: child.stdout ?? null,
    stderr: child.stderr ?? null,
  };
}

/** Bun's FileSink (a Bun.spawn stdin pipe). */
export interface BunFileSink {
  /** A promise when the pipe could not take all of it: rejected (EPIPE) once the reader is gone. */
  write(chunk: Uint8Array): number | Promise<number>;
  flush(): unknown;
  end(): unknown;
}

/** A FileSink's flush and end may return a promise, rejected once the reader is gone. */
function ignoreRejection(result: unknown): void {
  if (result instanceof Promise) result.catch(noop);
}

function noop(): void {}

/** A Bun.spawn child's pipes as PipedStdio. */
export function bunPipes(proc: {
  stdin: BunFileSink | number | null | undefined;
  stdout: AsyncIterable<Uint8Array> | number | null | undefined;
  stderr: AsyncIterable<Uint8Array> | number | null | undefined;
}): PipedStdio {
  const sink = typeof proc.stdin === "object" && proc.stdin !== null ? proc.stdin : null;
  const stream = (s: AsyncIterable<Uint8Array> | number | null | undefined) =>
    typeof s === "object" && s !== null ? s : null;
  return {
    stdin: sink
      ? {
          // Flushed at each write: an interactive session's input must not wait in a buffer.
          write: (chunk) => {
            try {
              // Pending when the pipe is full: rejected, unhandled, when the reader goes first.
              const pending = [sink.write(chunk), sink.flush()].filter(
                (p): p is Promise<unknown> => p instanceof Promise,
              );
              if (pending.length)
                return Promise.all(pending.map((p) => p.then(noop, noop))).then(noop);
            } catch {
              // The container closed its stdin.
            }
            return undefined;
          },
          end: () => {
            try {
              ignoreRejection(sink.end());
            } catch {}
          },
        }
      : null,
    stdout: stream(proc.stdout),
    stderr: stream(proc.stderr),
  };
}
