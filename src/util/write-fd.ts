// Writing to a file descriptor without a stream. Under Bun, the first use of process.stdout or
// process.stderr builds a stream and loads its machinery: ~14 ms of cpu in the compiled binary,
// more than most commands take. It also makes a pipe non-blocking and buffers, so its output and
// a later writeSync could come out of order; whatever writes to fd 1 or 2 goes through here.
import { writeSync } from "node:fs";

/** Writes all of `data` to `fd`; a reader that went away (EPIPE) ends the write quietly. */
export function writeAllSync(fd: number, data: string | Uint8Array): void {
  const buf = typeof data === "string" ? Buffer.from(data) : data;
  for (let at = 0; at < buf.length; ) {
    try {
      at += writeSync(fd, buf, at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE") return;
      if (code !== "EAGAIN") throw err;
    }
  }
}
