// Monitors and logs. A detached container runs under conmon (podman's monitor): it holds the
// container's stdio, writes the log, records the exit code and runs an exit command. An attached
// container is monitored by the pivot process itself, which writes the same log format.
// Logs use conmon's k8s-file format: "<RFC 3339 time> <stdout|stderr> <F|P> <text>" per line,
// F for a full line (its newline dropped), P for a partial one.
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { delimiter, join } from "node:path";
import { PivotError } from "../errors.ts";
import { childProcess } from "../util/child-process.ts";
import type { LogConfig } from "./log-config.ts";
import type { LogEntry } from "./types.ts";

export class MonitorError extends PivotError {}

/** Where conmon is: $PIVOT_CONMON, else the usual places, else PATH. */
export function findConmon(): string | null {
  const env = process.env.PIVOT_CONMON;
  if (env) return existsSync(env) ? env : null;
  const candidates = [
    "/usr/bin/conmon",
    "/usr/libexec/podman/conmon",
    "/usr/local/bin/conmon",
    "/usr/local/libexec/podman/conmon",
    ...(process.env.PATH ?? "").split(delimiter).map((d) => join(d, "conmon")),
  ];
  return candidates.find((c) => c && existsSync(c)) ?? null;
}

export interface ConmonOptions {
  conmon: string;
  id: string;
  name: string;
  /** The bundle (config.json); conmon also puts its attach socket and fifos here. */
  bundle: string;
  /** The runtime command (program and leading arguments, e.g. its --root). */
  runtime: string[];
  /** `--runtime PATH`: another OCI runtime, named when it fails. */
  otherRuntime?: string;
  /** Written by the runtime's create: the container's init pid. */
  pidFile: string;
  /** Written by conmon: its own pid. */
  conmonPidFile: string;
  logPath: string;
  /** --log-driver and --log-opt max-size (log-config.ts). */
  log: LogConfig;
  /** conmon writes the exit code to <persistDir>/exit. */
  persistDir: string;
  /** Where conmon links attach sockets (short paths). */
  socketDir: string;
  tty: boolean;
  stdin: boolean;
  /** Run when the container has exited (the engine's cleanup). */
  exitCommand?: string[];
  /** Descriptors conmon holds for its life, from fd 4 up (slirp4netns's exit FIFO). */
  extraFds?: number[];
}

/**
 * The --log-size-max for conmon when the log at PATH may already hold a run's lines (a restarted
 * container's). conmon before 2.1.9 (Debian 12 has 2.1.6) counts from 0 at each start, whatever
 * the file holds: the log grew to what it held plus MAX. Given what is left instead, its first
 * start-over comes in time, and the files after it are held to that smaller size (a later conmon,
 * which counts what the file holds, starts over earlier): the limit is never passed. With less
 * than half of MAX left, the log starts over now (it would after a few lines) and gets all of it.
 */
export function conmonLogSizeMax(path: string, max: number): number {
  let held = 0;
  try {
    held = statSync(path).size;
  } catch {
    return max; // no log yet
  }
  if (held === 0) return max;
  if (max - held >= max / 2) return max - held;
  try {
    // As LogWriter starts over: a new empty file renamed into place (a follower sees it).
    closeSync(openSync(`${path}.new`, "w", 0o640));
    renameSync(`${path}.new`, path);
  } catch {}
  return max;
}

/**
 * Starts conmon, which runs `RUNTIME create` for the container and stays as its monitor.
 * Resolves with the container's init pid once it is created (and waits for `start`).
 */
export function startConmon(o: ConmonOptions): Promise<number> {
  const [runtimePath, ...runtimeArgs] = o.runtime;
  const args = [
    "--api-version",
    "1",
    "-c",
    o.id,
    "-u",
    o.id,
    "-n",
    o.name,
    "-r",
    runtimePath!,
    "-b",
    o.bundle,
    "-p",
    o.pidFile,
    "-P",
    o.conmonPidFile,
    "-l",
    o.log.driver === "none" ? "none" : `k8s-file:${o.logPath}`,
    "--persist-dir",
    o.persistDir,
    "--socket-dir-path",
    o.socketDir,
    "--log-level",
    "error",
  ];
  if (o.log.maxSize !== undefined && o.log.driver === "k8s-file")
    args.push("--log-size-max", String(conmonLogSizeMax(o.logPath, o.log.maxSize)));
  for (const a of runtimeArgs) args.push("--runtime-arg", a);
  if (o.tty) args.push("-t");
  // Input stays open for the next `pivot attach` when one detaches (Docker's -d -i).
  if (o.stdin) args.push("-i", "--leave-stdin-open");
  pushExitCommand(args, o.exitCommand);
  return runConmon({
    conmon: o.conmon,
    args,
    // conmon writes a file "oom" into its working directory when the OOM killer strikes (and
    // another into --persist-dir): the container's directory, never the caller's.
    cwd: o.persistDir,
    ...(o.extraFds ? { extraFds: o.extraFds } : {}),
    failed: (detail) => new MonitorError(`creating the container failed: ${detail}`),
    exitedEarly: (stderr) =>
      new MonitorError(
        `conmon exited before the container was created${stderr ? `: ${stderr}` : ""}`,
        // Another runtime (--runtime PATH) that failed without a word, as /bin/false does.
        o.otherRuntime
          ? {
              hint: `the OCI runtime ${o.otherRuntime} failed to create it: check that \`${o.otherRuntime} --version\` runs, or leave out --runtime`,
            }
          : {},
      ),
  });
}

export interface ConmonExecOptions {
  conmon: string;
  /** The container's id. */
  id: string;
  execId: string;
  /**
   * The exec's own directory: its process.json, pid and exit files, attach socket and fifos, and
   * conmon's working directory; none of the container's own files are touched.
   */
  dir: string;
  /** The runtime command (program and leading arguments, e.g. its --root). */
  runtime: string[];
  /** Run when the process has exited, conmon's exit file written. */
  exitCommand: string[];
}

/**
 * Starts conmon in exec mode (podman's detached exec): it has the runtime run `exec --detach
 * --process <dir>/process.json`, holds the process as a subreaper, writes its exit code to
 * <dir>/exit and runs the exit command. Resolves with the process's pid once it runs.
 */
export function startConmonExec(o: ConmonExecOptions): Promise<number> {
  const [runtimePath, ...runtimeArgs] = o.runtime;
  const args = [
    "--api-version",
    "1",
    "-c",
    o.id,
    "-u",
    o.execId,
    "-r",
    runtimePath!,
    "-b",
    o.dir,
    "-p",
    join(o.dir, "pid"),
    "--exit-dir",
    o.dir,
    "--persist-dir",
    o.dir,
    // The attach socket in the exec's directory itself: no link in the socket directory to remove.
    "--full-attach",
    // Docker discards a detached exec's output.
    "-l",
    "none",
    "--log-level",
    "error",
    "-e",
    "--exec-process-spec",
    join(o.dir, "process.json"),
  ];
  for (const a of runtimeArgs) args.push("--runtime-arg", a);
  pushExitCommand(args, o.exitCommand);
  return runConmon({
    conmon: o.conmon,
    args,
    cwd: o.dir,
    // The runtime's own words, as the in-process runtime's error reads.
    failed: (detail) => {
      const [message, hint] = detail.split(/\n\s*hint: /);
      return new MonitorError(message!.trim(), hint ? { hint: hint.trim() } : {});
    },
    exitedEarly: (stderr) =>
      new MonitorError(`conmon exited before the exec ran${stderr ? `: ${stderr}` : ""}`),
  });
}

/** --exit-command CMD and an --exit-command-arg for each of its arguments. */
function pushExitCommand(args: string[], command: string[] | undefined): void {
  if (!command?.length) return;
  const [cmd, ...rest] = command;
  args.push("--exit-command", cmd!);
  for (const a of rest) args.push("--exit-command-arg", a);
}

interface ConmonRun {
  conmon: string;
  args: string[];
  cwd: string;
  extraFds?: number[];
  /** The runtime failed: its message (conmon's, else conmon's stderr). */
  failed: (detail: string) => Error;
  /** conmon exited without a word on its sync pipe: its stderr. */
  exitedEarly: (stderr: string) => Error;
}

/**
 * Runs conmon (it daemonizes) and reads its sync pipe: resolves with the pid it reports once the
 * runtime has run, rejects with the runtime's message.
 */
function runConmon(o: ConmonRun): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(o.conmon, o.args, {
      stdio: ["ignore", "ignore", "pipe", "pipe", ...(o.extraFds ?? [])],
      env: { ...process.env, _OCI_SYNCPIPE: "3" },
      cwd: o.cwd,
      detached: true,
    });
    let stderr = "";
    let buf = "";
    let settled = false;
    const done = (err: Error | null, pid = 0) => {
      if (settled) return;
      settled = true;
      sync.destroy();
      child.stderr?.destroy();
      child.unref();
      if (err) reject(err);
      else resolve(pid);
    };
    child.on("error", (err) =>
      done(
        new MonitorError(`cannot start conmon (${o.conmon}): ${err.message}`, {
          hint: "install it: apt-get install conmon",
        }),
      ),
    );
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const sync = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    sync.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let msg: { data?: number; message?: string };
      try {
        msg = JSON.parse(buf.slice(0, nl)) as { data?: number; message?: string };
      } catch {
        done(new MonitorError(`conmon sent an unreadable message: ${buf.slice(0, nl)}`));
        return;
      }
      if (typeof msg.data === "number" && msg.data > 0) done(null, msg.data);
      else {
        const detail = (msg.message ?? stderr).trim().replace(/^pivot-runtime: /, "");
        done(o.failed(detail || "(no message)"));
      }
    });
    sync.on("error", () => {});
    sync.on("close", () => {
      if (!settled) done(o.exitedEarly(stderr.trim()));
    });
  });
}

/** RFC 3339 with nanoseconds and the local offset, as conmon writes it. */
export function logTimestamp(date = new Date(), nanos?: bigint): string {
  const off = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + off * 60_000);
  const base = local.toISOString().slice(0, 19);
  const ns = (nanos ?? BigInt(date.getMilliseconds()) * 1_000_000n).toString().padStart(9, "0");
  const sign = off >= 0 ? "+" : "-";
  const hh = String(Math.floor(Math.abs(off) / 60)).padStart(2, "0");
  const mm = String(Math.abs(off) % 60).padStart(2, "0");
  return `${base}.${ns}${sign}${hh}:${mm}`;
}

/**
 * Formats a chunk of output as k8s-file lines: each finished line "F", an unfinished last one "P".
 * One replaceAll over the chunk, not a loop over its lines: the engine runs JavaScript without the
 * JIT (src/cli/jit.ts), where a loop over the lines of `yes` took 2-4x as long as with it.
 */
export function formatLogLines(stream: "stdout" | "stderr", text: string, time: string): string {
  if (text === "") return "";
  const finished = `${time} ${stream} F `;
  const lastBreak = text.lastIndexOf("\n");
  const whole = text.slice(0, lastBreak + 1); // the finished lines, each ending in "\n"
  const rest = text.slice(lastBreak + 1);
  // split and join, not replaceAll: a replacement string's "$" would be a pattern.
  let out =
    whole === "" ? "" : `${finished}${whole.slice(0, -1).split("\n").join(`\n${finished}`)}\n`;
  if (rest !== "") out += `${time} ${stream} P ${rest}\n`;
  return out;
}

/** Parses one k8s-file line. */
export function parseLogLine(line: string): LogEntry | null {
  const a = line.indexOf(" ");
  const b = line.indexOf(" ", a + 1);
  const c = line.indexOf(" ", b + 1);
  if (a < 0 || b < 0) return null;
  const stream = line.slice(a + 1, b);
  if (stream !== "stdout" && stream !== "stderr") return null;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  const text = c < 0 ? "" : line.slice(c + 1);
  return { time: line.slice(0, a), stream, text: tag === "P" ? text : `${text}\n` };
}

/**
 * The attached monitor's ctr.log, in conmon's format, opened at the first output: a container
 * that prints nothing (a --rm job's common case) costs no file (readLogs reads a missing log as
 * empty). If the log cannot be opened then (the container removed meanwhile), the output still
 * reaches the streams. With a size limit it starts over as conmon's does: a line that would take
 * the file past the limit goes to a new file renamed over the old one.
 */
export class LogWriter {
  private fd = -1;
  private failed = false;
  /** Bytes in the file: what it held when opened, plus what this writer added. */
  private size = 0;
  /**
   * A decoder a stream: a read of the pipe may end inside a UTF-8 character, whose first bytes
   * wait for the rest (decoded a read at a time, each half became U+FFFD; conmon logs bytes).
   */
  private readonly decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  constructor(
    private readonly path: string,
    private readonly config: LogConfig = { driver: "k8s-file" },
  ) {
    if (config.driver === "none") this.failed = true; // nothing is ever written
  }
  write(stream: "stdout" | "stderr", chunk: Buffer | string): void {
    if (this.failed) return;
    const decoded =
      typeof chunk === "string" ? chunk : this.decoders[stream].decode(chunk, { stream: true });
    const text = formatLogLines(stream, decoded, logTimestamp());
    if (!text) return;
    if (this.fd < 0 && !this.open("a")) return;
    const max = this.config.maxSize;
    if (max === undefined) {
      writeSync(this.fd, text);
      return;
    }
    const size = Buffer.byteLength(text);
    if (this.size + size <= max) {
      writeSync(this.fd, text); // all of it fits: no line can be the one that starts over
      this.size += size;
      return;
    }
    // Line by line, as conmon checks: each line is whole in one file or the other.
    for (const line of text.split(/(?<=\n)/)) {
      const bytes = Buffer.byteLength(line);
      if (this.size > 0 && this.size + bytes > max && !this.startOver()) return;
      writeSync(this.fd, line);
      this.size += bytes;
    }
  }
  close(): void {
    // A character the output ended inside of: its bytes as U+FFFD, as they are.
    for (const stream of ["stdout", "stderr"] as const) {
      const rest = this.decoders[stream].decode();
      if (rest) this.write(stream, rest);
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.failed = true; // nothing more is written
  }
  private open(flags: "a" | "w", path = this.path): boolean {
    try {
      this.fd = openSync(path, flags, 0o640);
      this.size = flags === "a" ? fstatSync(this.fd).size : 0;
      return true;
    } catch {
      this.failed = true;
      return false;
    }
  }
  /** A new, empty file in the log's place (a reader following the log sees its inode change). */
  private startOver(): boolean {
    const fresh = `${this.path}.new`;
    closeSync(this.fd);
    this.fd = -1;
    if (!this.open("w", fresh)) return false;
    try {
      renameSync(fresh, this.path);
      return true;
    } catch {
      this.close();
      return false;
    }
  }
}
