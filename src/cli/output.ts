// The commands' output, on fd 1 and 2 without process.stdout and process.stderr (see
// util/write-fd.ts for why). Streams of bytes (export, cp) still use them.
import { writeAllSync } from "../util/write-fd.ts";

export const writeOut = (text: string): void => {
  writeAllSync(1, text);
};
export const writeErr = (text: string): void => {
  writeAllSync(2, text);
};

/**
 * Many small pieces of output to fd 1 and 2 (log lines), in the order given, written in batches
 * of up to 64 KiB: one write per line made `logs` of a large log slow, and process.stdout ignored
 * back-pressure (it buffered the whole log in memory for a slow reader). A batch goes out when it
 * is full, when the other fd is written to, or once the caller waits for more (a timer: `logs -f`
 * shows each line as it comes). `write` returns false once the reader has gone away (EPIPE).
 */
export class BatchedOutput {
  private fd = 1;
  private parts: string[] = [];
  private size = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readerGone = false;

  write(fd: 1 | 2, text: string): boolean {
    if (this.readerGone) return false;
    if (fd !== this.fd) this.flush();
    this.fd = fd;
    this.parts.push(text);
    this.size += text.length;
    if (this.size >= 64 * 1024) return this.flush();
    this.timer ??= setTimeout(() => this.flush(), 0);
    return true;
  }

  /** Writes what is pending; false if the reader has gone away. */
  flush(): boolean {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.size > 0 && !this.readerGone) {
      if (!writeAllSync(this.fd, this.parts.join(""))) this.readerGone = true;
    }
    this.parts = [];
    this.size = 0;
    return !this.readerGone;
  }
}
