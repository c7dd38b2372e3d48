// The engine's side of a container's stdio pipes (PipedStdio): its output read chunk by chunk, a
// caller's stdin stream fed in with back-pressure. No node:stream here: `pivot run` pays for it
// only when a library caller asks for streams.
import type { Readable, Writable } from "node:stream";
import type { StdinPipe } from "../runtime/piped-stdio.ts";

/**
 * Reads `src` to its end, handing each chunk to `onChunk`: awaited when it returns a promise (the
 * container waits meanwhile); `false` stops the reading and closes this end of the pipe, so that
 * the container's next write to it fails (SIGPIPE), as in a shell pipeline whose reader is gone.
 * A read error ends it too.
 */
export async function drainPipe(
  src: AsyncIterable<Uint8Array>,
  onChunk: (chunk: Buffer) => Promise<void> | boolean | undefined | void,
): Promise<void> {
  try {
    for await (const chunk of src) {
      const buf = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const next = onChunk(buf);
      if (next === false) break; // leaving the loop cancels the stream: the pipe is closed
      if (typeof next === "object") await next; // a promise: the caller is not ready yet
    }
  } catch {
    // The pipe broke (the container is gone): what was read has been handed on.
  }
}

/** Writes to a caller's stream; a promise while its buffer is full (resolved on drain or close). */
export function writeToStream(to: Writable, chunk: Buffer): Promise<void> | undefined {
  if (to.write(chunk) || to.destroyed) return undefined;
  return new Promise((resolve) => {
    to.once("drain", resolve);
    to.once("close", resolve);
  });
}

/** Feeds a caller's stdin stream into the container's stdin pipe, which ends when it ends. */
export function feedStdin(from: Readable, to: StdinPipe): void {
  from.on("data", (chunk: Buffer) => {
    const flushed = to.write(chunk);
    if (flushed) {
      from.pause();
      void flushed.then(() => from.resume());
    }
  });
  from.on("end", () => to.end());
  from.on("error", () => to.end());
}
