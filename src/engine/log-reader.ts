// Reading a container's log (`pivot logs`): conmon's k8s-file lines, from the start or the last
// N, following the file as it grows. A log is read a chunk at a time (a log of gigabytes is never
// held whole; --tail finds its start reading backwards from the end), and a follower keeps the
// file open and goes on in the new file when the log starts over at its size limit (a new file
// renamed into its place, by conmon or by LogWriter), as `tail -F` does.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parseLogLine } from "./monitor.ts";
import type { LogEntry } from "./types.ts";

export interface ReadLogsOptions {
  /** Only the last N lines. */
  tail?: number;
  /** Only entries at or after this time. */
  since?: Date;
  /** Keep reading as the log grows, until `done()` is true. */
  follow?: boolean;
  done?: () => boolean;
  /** Poll interval while following, ms. */
  pollMs?: number;
}

/** Bytes read at a time. */
const CHUNK = 1 << 20;
const NEWLINE = 0x0a;

/** The open log: its descriptor, inode and how far it has been read. */
interface OpenLog {
  fd: number;
  ino: number;
  offset: number;
}

function openLog(path: string): OpenLog | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null; // not written yet: a container that printed nothing has no log
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

/** Reads a k8s-file log, optionally following it. */
export async function* readLogs(
  path: string,
  options: ReadLogsOptions = {},
): AsyncGenerator<LogEntry> {
  const sinceMs = options.since?.getTime();
  let log = openLog(path);
  if (log && options.tail !== undefined && options.tail >= 0) {
    log.offset = tailOffset(log.fd, fstatSync(log.fd).size, options.tail);
  }
  /** An unfinished line's bytes, until its newline comes. */
  let rest: Buffer = Buffer.alloc(0);
  let buf: Buffer | undefined;

  /** The entries of the next chunk of the open file (none at its end). */
  const readChunk = (): LogEntry[] | null => {
    if (!log) return null;
    buf ??= Buffer.allocUnsafe(CHUNK);
    const n = readSync(log.fd, buf, 0, CHUNK, log.offset);
    if (n === 0) return null;
    log.offset += n;
    const data = rest.length ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n);
    const lastNewline = data.lastIndexOf(NEWLINE);
    // Copied: `data` may be the chunk's buffer, which the next read must not share.
    rest = Buffer.from(data.subarray(lastNewline + 1));
    if (lastNewline < 0) return [];
    const out: LogEntry[] = [];
    for (const line of data.subarray(0, lastNewline).toString().split("\n")) {
      const e = parseLogLine(line);
      if (!e) continue;
      if (sinceMs !== undefined && Date.parse(e.time) < sinceMs) continue;
      out.push(e);
    }
    return out;
  };

  /** At the end of the open file: the log's path holds another file now, or this one shrank. */
  const switchIfReplaced = (): boolean => {
    const now = openLog(path);
    if (!now) return false;
    if (log && now.ino === log.ino) {
      const truncated = fstatSync(log.fd).size < log.offset;
      closeSync(now.fd);
      if (!truncated) return false;
      log.offset = 0;
    } else {
      if (log) closeSync(log.fd);
      log = now;
    }
    rest = Buffer.alloc(0);
    return true;
  };

  /** Everything there is to read now, the file's replacements included. */
  async function* drain(): AsyncGenerator<LogEntry> {
    for (;;) {
      let entries = readChunk();
      while (entries) {
        yield* entries;
        entries = readChunk();
      }
      if (!switchIfReplaced()) return;
    }
  }

  try {
    for (;;) {
      const done = options.done?.() ?? true;
      yield* drain();
      if (!options.follow || done) {
        // Ended after the last read: what it wrote before it ended.
        if (options.follow && done) yield* drain();
        return;
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? 100));
    }
  } finally {
    if (log) closeSync(log.fd);
  }
}
