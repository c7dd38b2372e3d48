// The engine's events (`pivot events`, `Engine.events()`): what happened to containers, images,
// volumes and networks, in Docker's shape (its API's events/messages). There is no daemon to
// broadcast them: as podman's file backend, every pivot process appends one JSON line per event
// to <runRoot>/events/events.jsonl, and a reader follows that file. The run root is a tmpfs
// (/run/pivot): the events go with a reboot, as Docker's go with its daemon. The file starts over
// past 1 MiB, the previous one kept as events.jsonl.1 (read first by `--since`); one process
// renames it (events.jsonl.lock), the others keep appending to it or to the new one.
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { readLines } from "../util/line-follower.ts";
import type { EngineContext } from "./context.ts";

export type EventType = "container" | "image" | "volume" | "network";

/** One event, as Docker's API gives it (the legacy status/id/from of container events too). */
export interface EngineEvent {
  Type: EventType;
  /** create, start, die, kill, stop, pause, unpause, rename, destroy; pull, tag, delete...; */
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "local";
  /** Seconds since the epoch. */
  time: number;
  /** Nanoseconds since the epoch (milliseconds' precision here). */
  timeNano: number;
  status?: string;
  id?: string;
  from?: string;
}

/** Past this size the file starts over (the previous one kept as .1). */
const MAX_FILE_BYTES = 1 << 20;

export function eventsFile(runRoot: string): string {
  return join(runRoot, "events", "events.jsonl");
}

/**
 * Records an event. Never fails the operation it reports: an event that cannot be written is a
 * warning. One write of one line: appends of other processes never land inside it.
 */
export function emitEvent(
  ctx: Pick<EngineContext, "runRoot" | "warn">,
  type: EventType,
  action: string,
  actorId: string,
  attributes: Record<string, string> = {},
): void {
  const now = Date.now();
  const event: EngineEvent = {
    Type: type,
    Action: action,
    Actor: { ID: actorId, Attributes: attributes },
    scope: "local",
    time: Math.floor(now / 1000),
    timeNano: now * 1_000_000,
  };
  if (type === "container") {
    event.status = action;
    event.id = actorId;
    if (attributes.image !== undefined) event.from = attributes.image;
  }
  const file = eventsFile(ctx.runRoot);
  let written: { ino: number; size: number };
  try {
    written = appendLine(file, `${JSON.stringify(event)}\n`);
  } catch (err) {
    ctx.warn(`the ${type} ${action} event was not recorded in ${file}: ${(err as Error).message}`);
    return;
  }
  if (written.size <= MAX_FILE_BYTES) return;
  try {
    startOver(file, written.ino);
  } catch (err) {
    ctx.warn(`the event file ${file} could not start over: ${(err as Error).message}`);
  }
}

/** Appends LINE in one write; the inode and size of the file it went to, just after. */
function appendLine(file: string, line: string): { ino: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, "a", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    fd = openSync(file, "a", 0o600);
  }
  try {
    writeSync(fd, line);
    // Of this descriptor, not the path: another process may have renamed the file meanwhile.
    const { ino, size } = fstatSync(fd);
    return { ino, size };
  } finally {
    closeSync(fd);
  }
}

/** A lock older than this was left by a process killed while starting over (which takes µs). */
const STALE_LOCK_MS = 10_000;

/**
 * Renames the full file (inode INO) to FILE.1, once: every writer whose line went past the limit
 * comes here, and two renames in a row would put the new file, just begun by a third writer,
 * over the full one (its events lost). One process at a time, under a lock file created
 * exclusively, and only while the path still holds the full file; a writer that finds the lock
 * taken leaves the start-over to its holder.
 */
function startOver(file: string, ino: number): void {
  const lock = `${file}.lock`;
  let fd: number;
  try {
    fd = openSync(lock, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > STALE_LOCK_MS) rmSync(lock, { force: true }); // the next full write takes it
    return;
  }
  try {
    const now = statSync(file, { throwIfNoEntry: false });
    if (now?.ino === ino && now.size > MAX_FILE_BYTES) renameSync(file, `${file}.1`);
  } finally {
    closeSync(fd);
    rmSync(lock, { force: true });
  }
}

/** A container's event attributes: its image and name, then its labels (Docker's). */
export function containerAttributes(
  r: { name: string; image: string; labels: Record<string, string> },
  more: Record<string, string> = {},
): Record<string, string> {
  return { ...r.labels, image: r.image, name: r.name, ...more };
}

export interface EventsOptions {
  /** Past events from then on (else only the ones to come, unless `until` is given). */
  since?: Date;
  /** Stop at this time (else follow until the caller stops); alone, past events up to it too. */
  until?: Date;
  /** Docker's --filter: key → values (OR within a key, AND across keys). */
  filters?: Record<string, string[]>;
  /** Poll interval while following, ms. */
  pollMs?: number;
}

/** The engine's events, as they come (and from `since`, the recorded ones before them). */
export async function* readEvents(
  runRoot: string,
  options: EventsOptions = {},
): AsyncGenerator<EngineEvent> {
  const file = eventsFile(runRoot);
  const sinceNano = options.since ? options.since.getTime() * 1_000_000 : undefined;
  const untilNano = options.until ? options.until.getTime() * 1_000_000 : undefined;
  const untilPassed = () => untilNano !== undefined && Date.now() * 1_000_000 > untilNano;
  const wanted = (e: EngineEvent | null): e is EngineEvent =>
    e !== null &&
    (sinceNano === undefined || e.timeNano >= sinceNano) &&
    (untilNano === undefined || e.timeNano <= untilNano) &&
    matchesEventFilters(e, options.filters ?? {});
  // Docker replays its recorded events with --since, and with --until alone too (all of them up
  // to it); with neither, only the ones to come.
  const replay = sinceNano !== undefined || untilNano !== undefined;
  if (replay) {
    for await (const line of readLines(`${file}.1`)) {
      const e = parseEvent(line);
      if (wanted(e)) yield e;
    }
  }
  const lines = readLines(file, {
    from: replay ? "start" : "end",
    follow: true,
    done: untilPassed,
    ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
  });
  for await (const line of lines) {
    const e = parseEvent(line);
    if (wanted(e)) yield e;
  }
}

function parseEvent(line: string): EngineEvent | null {
  try {
    const e = JSON.parse(line) as EngineEvent;
    return typeof e?.Type === "string" && typeof e.timeNano === "number" ? e : null;
  } catch {
    return null; // a line torn by a crash mid-write
  }
}

/** The filter keys `pivot events` takes, as Docker's. */
export const EVENT_FILTER_KEYS = [
  "container",
  "event",
  "image",
  "label",
  "network",
  "type",
  "volume",
] as const;

/**
 * What an image filter matches of reference REF, as Docker's: the reference, and it without its
 * tag or digest, in full and in Docker's short form (busybox for docker.io/library/busybox).
 */
function imageFilterNames(ref: string): string[] {
  const noDigest = ref.split("@")[0]!;
  const colon = noDigest.lastIndexOf(":");
  const name = colon > noDigest.lastIndexOf("/") ? noDigest.slice(0, colon) : noDigest;
  return [ref, name, name.replace(/^docker\.io\/(library\/)?/, "")];
}

/** Docker's event filters: OR within a key, AND across keys. */
export function matchesEventFilters(e: EngineEvent, filters: Record<string, string[]>): boolean {
  const attrs = e.Actor.Attributes;
  // Docker's fuzzy match: the id or the name, whole or a prefix of it.
  const actorIs = (type: EventType, v: string) =>
    e.Type === type && (e.Actor.ID.startsWith(v) || attrs.name?.startsWith(v) === true);
  const imageIs = (ref: string | undefined, v: string) =>
    ref !== undefined && imageFilterNames(ref).includes(v);
  for (const [key, values] of Object.entries(filters)) {
    if (values.length === 0) continue;
    const one = (v: string): boolean => {
      switch (key) {
        case "type":
          return e.Type === v;
        case "event":
          return e.Action === v || e.Action.startsWith(`${v}:`); // exec_start: CMD
        case "container":
          return actorIs("container", v);
        case "image":
          return e.Type === "container"
            ? imageIs(attrs.image, v) || imageIs(e.from, v)
            : e.Type === "image" &&
                (e.Actor.ID === v || e.Actor.ID.startsWith(v) || imageIs(attrs.name, v));
        case "volume":
          return actorIs("volume", v);
        case "network":
          return actorIs("network", v);
        case "label": {
          const eq = v.indexOf("=");
          return eq < 0 ? Object.hasOwn(attrs, v) : attrs[v.slice(0, eq)] === v.slice(eq + 1);
        }
        default:
          return false;
      }
    };
    if (!values.some(one)) return false;
  }
  return true;
}
