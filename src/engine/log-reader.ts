// Reading a container's log (`pivot logs`): conmon's k8s-file lines, from the start or the last
// N, following the file as it grows and into the new file when the log starts over at its size
// limit (util/line-follower.ts does the reading).
import { readLines } from "../util/line-follower.ts";
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

/** Reads a k8s-file log, optionally following it. */
export async function* readLogs(
  path: string,
  options: ReadLogsOptions = {},
): AsyncGenerator<LogEntry> {
  const sinceMs = options.since?.getTime();
  const lines = readLines(path, {
    ...(options.tail !== undefined && options.tail >= 0
      ? { from: { lastLines: options.tail } }
      : {}),
    ...(options.follow ? { follow: true } : {}),
    ...(options.done ? { done: options.done } : {}),
    ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
  });
  for await (const line of lines) {
    const e = parseLogLine(line);
    if (!e) continue;
    if (sinceMs !== undefined && Date.parse(e.time) < sinceMs) continue;
    yield e;
  }
}
