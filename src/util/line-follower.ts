// Reading a file of lines that another process appends to, as `tail -F` does: a chunk at a time
// (a file of gigabytes is never held whole), from its start, its end or its last N lines (found
// reading backwards), and, when following, on into the new file renamed into its place when the
// writer starts over (a log at its size limit, a rotated event file). Container logs and the
// engine's events are both read through it.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

export interface ReadLinesOptions {
  /** Where to begin: the start (default), the end (only what comes next), or the last N lines. */
  from?: "start" | "end" | { lastLines: number };
  /** Keep reading as the file grows, until `done()` is true. */
  follow?: boolean;
  /** Checked before each look at the file; once true, what is there is read and the end comes. */
  done?: () => boolean;
  /** Poll interval while following, ms. */
  pollMs?: number;
}

/** Bytes read at a time. */
const CHUNK = 1 << 20;
const NEWLINE = 0x0a;

/** The open file: its descriptor, inode and how far it has been read. */
interface OpenFile {
  fd: number;
  ino: number;
  offset: number;
}

function openFile(path: string): OpenFile | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null; // not written yet
  }
  return { fd, ino: fstatSync(fd).ino, offset: 0 };
}

/**
 * Where the last `lines` complete lines of the file start: just after the (lines+1)th newline
 * from the end, or 0 when the file has no more lines than that.
 */
export function tailOffset(fd: number, size: number, lines: number): number {
  let wanted = lines + 1;
  const buf = Buffer.alloc(Math.min(CHUNK, size));
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - buf.length);
    const n = readSync(fd, buf, 0, end - start, start);
    for (let i = n - 1; i >= 0; i--) {
      if (buf[i] === NEWLINE && --wanted === 0) return start + i + 1;
    }
    end = start;
  }
  return 0;
}

/** The complete lines of a file, without their newlines; an unfinished last line waits for its end. */
export async function* readLines(
  path: string,
  options: ReadLinesOptions = {},
): AsyncGenerator<string> {
  let file = openFile(path);
  const from = options.from ?? "start";
  if (file && from !== "start") {
    const size = fstatSync(file.fd).size;
    // From the end: after the last newline, so that a line being written is read whole.
    file.offset = tailOffset(file.fd, size, from === "end" ? 0 : from.lastLines);
  }
  /** An unfinished line's bytes, until its newline comes. */
  let rest: Buffer = Buffer.alloc(0);
  let buf: Buffer | undefined;

  /** The lines of the next chunk of the open file (null at its end). */
  const readChunk = (): string[] | null => {
    if (!file) return null;
    buf ??= Buffer.allocUnsafe(CHUNK);
    const n = readSync(file.fd, buf, 0, CHUNK, file.offset);
    if (n === 0) return null;
    file.offset += n;
    const data = rest.length ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n);
    const lastNewline = data.lastIndexOf(NEWLINE);
    // Copied: `data` may be the chunk's buffer, which the next read overwrites.
    rest = Buffer.from(data.subarray(lastNewline + 1));
    return lastNewline < 0 ? [] : data.subarray(0, lastNewline).toString().split("\n");
  };

  /** At the end of the open file: the path holds another file now, or this one shrank. */
  const switchIfReplaced = (): boolean => {
    const now = openFile(path);
    if (!now) return false;
    if (file && now.ino === file.ino) {
      const truncated = fstatSync(file.fd).size < file.offset;
      closeSync(now.fd);
      if (!truncated) return false;
      file.offset = 0;
    } else {
      if (file) closeSync(file.fd);
      file = now; // a file that appeared, or a new one in the old one's place: from its start
    }
    rest = Buffer.alloc(0);
    return true;
  };

  /** Everything there is to read now, the file's replacements included. */
  async function* drain(): AsyncGenerator<string> {
    for (;;) {
      let lines = readChunk();
      while (lines) {
        yield* lines;
        lines = readChunk();
      }
      if (!switchIfReplaced()) return;
    }
  }

  try {
    for (;;) {
      const done = options.done?.() ?? true;
      yield* drain();
      if (!options.follow || done) {
        // Done after the last read: what was written before it.
        if (options.follow && done) yield* drain();
        return;
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? 100));
    }
  } finally {
    if (file) closeSync(file.fd);
  }
}
