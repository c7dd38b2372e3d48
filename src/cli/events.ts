// `pivot events`: the engine's events as Docker prints them, or through --format; the events to
// come, and with --since (or --until alone) the recorded ones before them; until --until, else
// until interrupted.
import type { Engine } from "../engine/engine.ts";
import { type EngineEvent, EVENT_FILTER_KEYS, type EventType } from "../engine/events.ts";
import { parseGoDuration } from "../engine/health-config.ts";
import { logTimestamp } from "../engine/monitor.ts";
import { asGoMap, renderGoTemplate } from "../util/go-template.ts";
import { boolFlag, flag, type Parsed, parseArgs, UsageError } from "./args.ts";
import { BatchedOutput } from "./output.ts";

const SPECS = [
  { name: "since", value: true },
  { name: "until", value: true },
  { name: "filter", aliases: ["f"], value: true, multiple: true },
  { name: "format", value: true },
  { name: "help" },
];

const TYPES: readonly EventType[] = ["container", "image", "volume", "network"];

/**
 * A time flag as Docker takes it: a Go duration ago (10s, 1h30m, 1.5h, 500ms), Unix seconds
 * (with a fraction), or an RFC 3339 time. "0" is Unix time 0, as Docker's; "0s" is now.
 */
export function parseTimeFlag(name: string, value: string): Date {
  const ago = value === "0" ? null : parseGoDuration(value);
  const date =
    ago !== null
      ? new Date(Date.now() - ago / 1_000_000)
      : new Date(/^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : value);
  if (Number.isNaN(date.getTime())) {
    throw new UsageError(`--${name} ${value}: not a time`, {
      hint: "e.g. 10m (ten minutes ago), 1764410000 (Unix seconds) or 2026-11-29T10:00:00Z",
    });
  }
  return date;
}

/** --filter KEY=VALUE flags, checked against Docker's keys. */
export function parseEventFilters(values: readonly string[]): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    const key = eq > 0 ? v.slice(0, eq) : "";
    if (!(EVENT_FILTER_KEYS as readonly string[]).includes(key)) {
      throw new UsageError(`--filter ${v}: not a filter of events`, {
        hint: `use KEY=VALUE with a key of: ${EVENT_FILTER_KEYS.join(", ")}`,
      });
    }
    const value = v.slice(eq + 1);
    if (key === "type" && !(TYPES as readonly string[]).includes(value)) {
      throw new UsageError(`--filter type=${value}: no such type of event`, {
        hint: `the types are ${TYPES.join(", ")}`,
      });
    }
    filters[key] = [...(filters[key] ?? []), value];
  }
  return filters;
}

/** Docker's line: time, type, action, actor, and its attributes sorted by name. */
export function formatEvent(e: EngineEvent): string {
  const attrs = Object.entries(e.Actor.Attributes)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  const ms = Math.round(e.timeNano / 1e6); // milliseconds are what is recorded
  const time = logTimestamp(new Date(ms), BigInt((ms % 1000) * 1e6));
  return `${time} ${e.Type} ${e.Action} ${e.Actor.ID}${attrs ? ` (${attrs})` : ""}\n`;
}

/**
 * E through a --format template, as Docker's events.Message: Attributes is a Go map (a key it
 * lacks is <no value>, no error), and status, id and from are fields of every event, "" where
 * unset (a volume's, an image's), as Go's zero values (json leaves them out, as omitempty does).
 */
export function renderEventTemplate(template: string, e: EngineEvent): string {
  const data = { ...e, Actor: { ...e.Actor, Attributes: asGoMap({ ...e.Actor.Attributes }) } };
  // Under the Go names templates use: not enumerable, so json (and the case-blind lookup of
  // the JSON names) does not see them.
  for (const [key, goName] of [
    ["status", "Status"],
    ["id", "ID"],
    ["from", "From"],
  ] as const) {
    if (data[key] === undefined)
      Object.defineProperty(data, goName, { value: "", enumerable: false });
  }
  return `${renderGoTemplate(template, data as never)}\n`;
}

export async function eventsCommand(engine: Engine, args: string[]): Promise<number> {
  const p: Parsed = parseArgs(args, SPECS);
  if (boolFlag(p, "help")) {
    new BatchedOutput().write(
      1,
      "usage: pivot events [--since TIME] [--until TIME] [--filter KEY=VALUE]... [--format TEMPLATE|json]\n",
    );
    return 0;
  }
  if (p.positionals.length || p.rest.length)
    throw new UsageError("pivot events takes no arguments, only flags");
  const since = flag(p, "since");
  const until = flag(p, "until");
  const format = flag(p, "format");
  const filters = parseEventFilters(p.flags.get("filter") ?? []);
  const render =
    format === undefined
      ? formatEvent
      : format === "json" || format === "{{json .}}"
        ? (e: EngineEvent) => `${JSON.stringify(e)}\n`
        : (e: EngineEvent) => renderEventTemplate(format, e);
  const output = new BatchedOutput();
  try {
    for await (const e of engine.events({
      ...(since !== undefined ? { since: parseTimeFlag("since", since) } : {}),
      ...(until !== undefined ? { until: parseTimeFlag("until", until) } : {}),
      filters,
    })) {
      // A reader that went away (`events | head -1`) ends the command.
      if (!output.write(1, render(e))) return 0;
    }
  } finally {
    output.flush();
  }
  return 0;
}
