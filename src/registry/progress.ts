/**
 * Progress of pulls and pushes, as an interface the CLI (or any caller)
 * implements or picks from: per-layer bars redrawn in place on a terminal
 * (like `docker pull`), one plain line per state change otherwise, nothing
 * at all when quiet.
 */

export interface ProgressReporter {
  /** A line about the whole operation: "Pulling from library/busybox", "Digest: sha256:…". */
  message(text: string): void;
  /** A layer (or config, blob) enters a state: "Waiting", "Downloading", "Already exists". */
  status(id: string, status: string, total?: number): void;
  /** Bytes done so far of a layer in a transfer state. */
  bytes(id: string, current: number): void;
  /** Flushes; no more calls follow. */
  close(): void;
}

/** Reports nothing (quiet mode; also the default of the library). */
export class QuietProgress implements ProgressReporter {
  message(): void {}
  status(): void {}
  bytes(): void {}
  close(): void {}
}

interface Writable {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** One line per message and per state change; for logs and pipes. */
export class LineProgress implements ProgressReporter {
  private readonly out: Writable;
  private readonly totals = new Map<string, number | undefined>();
  constructor(out: Writable) {
    this.out = out;
  }
  message(text: string): void {
    this.out.write(`${text}\n`);
  }
  status(id: string, status: string, total?: number): void {
    if (total !== undefined) this.totals.set(id, total);
    const size = this.totals.get(id);
    const sized = /^(Downloading|Pushing|Uploading)/.test(status) && size !== undefined;
    this.out.write(`${id}: ${status}${sized ? ` (${formatBytes(size)})` : ""}\n`);
  }
  bytes(): void {}
  close(): void {}
}

interface Row {
  id: string;
  status: string;
  total: number | undefined;
  current: number;
}

/** Bars redrawn in place with ANSI cursor movements; for terminals. */
export class TtyProgress implements ProgressReporter {
  private readonly out: Writable;
  private readonly rows: Row[] = [];
  private drawn = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly intervalMs: number;
  constructor(out: Writable, options: { intervalMs?: number } = {}) {
    this.out = out;
    this.intervalMs = options.intervalMs ?? 100;
  }
  message(text: string): void {
    this.draw(`${text}\n`);
  }
  status(id: string, status: string, total?: number): void {
    let row = this.rows.find((r) => r.id === id);
    if (!row) {
      row = { id, status, total, current: 0 };
      this.rows.push(row);
    }
    row.status = status;
    if (total !== undefined) row.total = total;
    this.schedule(true);
  }
  bytes(id: string, current: number): void {
    const row = this.rows.find((r) => r.id === id);
    if (!row) return;
    row.current = current;
    this.schedule(false);
  }
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.draw("");
  }
  private schedule(now: boolean): void {
    if (now) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.draw("");
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw("");
    }, this.intervalMs);
  }
  /** Moves up over the bars, writes `above` (messages scroll above the bars), redraws them. */
  private draw(above: string): void {
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A\r` : "";
    if (above) s += above.replace(/\n/g, "\x1b[K\n");
    const width = Math.max(40, this.out.columns ?? 80);
    for (const row of this.rows) s += `\x1b[2K${renderRow(row, width)}\n`;
    this.drawn = this.rows.length;
    this.out.write(s);
  }
}

export function renderRow(row: Row, width = 80): string {
  const head = `${row.id}: ${row.status}`;
  if (!/^(Downloading|Pushing|Extracting)/.test(row.status) || !row.total) {
    return head.slice(0, width - 1);
  }
  const numbers = `${formatBytes(row.current)}/${formatBytes(row.total)}`;
  // "head [bar] numbers" within width-1 columns; on a narrow terminal the bar goes first.
  const room = width - 1 - head.length - numbers.length - 4;
  if (room < 10) return `${head} ${numbers}`.slice(0, width - 1);
  const barWidth = Math.min(50, room);
  const done = Math.min(barWidth, Math.floor((row.current / row.total) * barWidth));
  const bar = `[${"=".repeat(Math.max(0, done - 1))}${done > 0 ? ">" : ""}${" ".repeat(barWidth - done)}]`;
  return `${head} ${bar} ${numbers}`;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)}${units[u]}`;
}

/**
 * The reporter for a stream (default: stderr): bars on a terminal, lines
 * otherwise, nothing when quiet.
 */
export function createProgress(
  options: { quiet?: boolean; out?: Writable; tty?: boolean } = {},
): ProgressReporter {
  if (options.quiet) return new QuietProgress();
  const out = options.out ?? process.stderr;
  const tty = options.tty ?? (out.isTTY === true && process.env.TERM !== "dumb");
  return tty ? new TtyProgress(out) : new LineProgress(out);
}

/** The 12-character short ID Docker shows for layers. */
export function shortId(digest: string): string {
  const colon = digest.indexOf(":");
  return digest.slice(colon + 1, colon + 13);
}
