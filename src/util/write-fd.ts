// Writing to a file descriptor without a stream. Under Bun, the first use of process.stdout or
// process.stderr builds a stream and loads its machinery: ~14 ms of cpu in the compiled binary,
// more than most commands take. It also makes a pipe non-blocking and buffers, so its output and
// a later writeSync could come out of order; whatever writes to fd 1 or 2 goes through here.
import { writeSync } from "node:fs";

// Something to wait on for a few milliseconds (Atomics.wait with nothing ever notifying it).
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `data` to `fd`; a reader that went away (EPIPE) ends the write quietly and
 * returns false, so that a long output (`logs | head`) can stop there. A
 * non-blocking fd (O_NONBLOCK is on the open pipe, not the fd: process.stdout here, or any Bun
 * or Node process sharing the pipe, may have set it) whose reader is behind fails with EAGAIN:
 * the write waits for it, 50 µs at first (a fast reader is not slowed), doubling up to 16 ms,
 * rather than spinning a cpu at 100% for as long as the reader is behind.
 */
export function writeAllSync(fd: number, data: string | Uint8Array): boolean {
  const buf = typeof data === "string" ? Buffer.from(data) : data;
  let wait = 0;
  for (let at = 0; at < buf.length; ) {
    try {
      at += writeSync(fd, buf, at);
      wait = 0;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE") return false;
      if (code !== "EAGAIN") throw err;
      wait = Math.min(wait * 2 || 0.05, 16);
      Atomics.wait(pause, 0, 0, wait);
    }
  }
  return true;
}
