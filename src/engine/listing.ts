// `pivot ps --filter/--format` and `pivot stats`: Docker's filters, its Go-template-like format
// ({{.ID}} {{.Names}} ..., a `table` prefix, `json`), and its column text. Pure functions.
import { PivotError } from "../errors.ts";
import { familiarString, parseReference } from "../image/reference.ts";
import { healthSuffix } from "./health-status.ts";
import type { ContainerInfo, StatsSample } from "./types.ts";

export class FormatError extends PivotError {}

/** KEY=VALUE filters; one key given twice matches either value, different keys must all match. */
export type Filters = Map<string, string[]>;

const FILTER_KEYS = [
  "status",
  "name",
  "label",
  "ancestor",
  "id",
  "exited",
  "before",
  "since",
  "health",
];
/** Docker's health filter values; none: no health check. */
const HEALTH_FILTERS = ["starting", "healthy", "unhealthy", "none"];
const STATUSES = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

export function parseFilters(args: string[]): Filters {
  const out: Filters = new Map();
  for (const a of args) {
    const eq = a.indexOf("=");
    const key = (eq < 0 ? a : a.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? "" : a.slice(eq + 1);
    if (!FILTER_KEYS.includes(key)) {
      throw new FormatError(`invalid filter "${key}"`, {
        hint: `filters: ${FILTER_KEYS.map((k) => `${k}=`).join(", ")}`,
      });
    }
    if (key === "status" && !STATUSES.includes(value)) {
      throw new FormatError(`invalid filter "status=${value}"`, {
        hint: `statuses: ${STATUSES.join(", ")}`,
      });
    }
    if (key === "health" && !HEALTH_FILTERS.includes(value)) {
      throw new FormatError(`invalid filter "health=${value}"`, {
        hint: `health: ${HEALTH_FILTERS.join(", ")}`,
      });
    }
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

/** A reference in its short form with the tag: busybox:latest, localhost/app:1. */
function normalRef(ref: string): string {
  try {
    const r = parseReference(ref);
    const s = familiarString(r);
    return r.digest || /:[^/]+$/.test(s) ? s : `${s}:latest`;
  } catch {
    return ref;
  }
}

function imageMatches(c: ContainerInfo, want: string): boolean {
  const id = c.imageId.replace(/^sha256:/, "");
  const w = want.replace(/^sha256:/, "");
  if (/^[0-9a-f]{4,64}$/.test(w) && id.startsWith(w)) return true;
  return normalRef(c.image) === normalRef(want);
}

/** Whether a container passes the filters. `all` (the containers of `ps -a`) resolves before/since. */
export function matchesFilters(c: ContainerInfo, f: Filters, all: ContainerInfo[] = []): boolean {
  const any = (key: string, test: (v: string) => boolean) => {
    const vs = f.get(key);
    return !vs || vs.some(test);
  };
  const created = (ref: string) =>
    all.find((o) => o.id.startsWith(ref) || o.name === ref)?.created ?? null;
  return (
    any("status", (v) => c.state.status === v) &&
    any("name", (v) => {
      try {
        return new RegExp(v).test(c.name);
      } catch {
        return c.name.includes(v);
      }
    }) &&
    any("id", (v) => c.id.startsWith(v)) &&
    any("label", (v) => {
      const eq = v.indexOf("=");
      if (eq < 0) return v in c.labels;
      return c.labels[v.slice(0, eq)] === v.slice(eq + 1);
    }) &&
    any("ancestor", (v) => imageMatches(c, v)) &&
    any("health", (v) => (c.state.health ?? "none") === v) &&
    any("exited", (v) => c.state.status === "exited" && c.state.exitCode === Number(v)) &&
    any("before", (v) => {
      const t = created(v);
      return t !== null && c.created < t;
    }) &&
    any("since", (v) => {
      const t = created(v);
      return t !== null && c.created > t;
    })
  );
}

/** Whether filters ask for stopped containers too (Docker lists them without -a then). */
export function filtersNeedAll(f: Filters): boolean {
  return f.has("exited") || (f.get("status") ?? []).some((s) => s !== "running" && s !== "paused");
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? "" : "s"}`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? "" : "s"}`;
  return `${Math.round(h / 24)} days`;
}

/** " 2 seconds ago", or nothing when the time is unknown (a monitor killed before it recorded it). */
function since(iso: string | null, now: number): string {
  return iso ? ` ${ago(iso, now)} ago` : "";
}

/** Docker's STATUS column: Up 5 minutes, Exited (0) 2 seconds ago, Restarting (1) 1 second ago, Created. */
export function statusText(c: ContainerInfo, now = Date.now()): string {
  switch (c.state.status) {
    case "running":
      return `Up ${ago(c.state.startedAt, now)}${healthSuffix(c.state.health)}`;
    case "paused":
      return `Up ${ago(c.state.startedAt, now)} (Paused)`;
    case "restarting":
      return `Restarting (${c.state.exitCode ?? "?"})${since(c.state.finishedAt, now)}`;
    case "exited":
      return `Exited (${c.state.exitCode ?? "?"})${since(c.state.finishedAt, now)}`;
    default:
      return "Created";
  }
}

function imageDisplay(ref: string): string {
  try {
    return familiarString(parseReference(ref));
  } catch {
    return ref;
  }
}

/** The fields `--format` can name, with Docker's column titles. */
export const PS_FIELDS: Record<string, string> = {
  ID: "CONTAINER ID",
  Image: "IMAGE",
  Command: "COMMAND",
  CreatedAt: "CREATED AT",
  RunningFor: "CREATED",
  Ports: "PORTS",
  State: "STATE",
  Status: "STATUS",
  Names: "NAMES",
  Labels: "LABELS",
  Mounts: "MOUNTS",
  Networks: "NETWORKS",
};

/** The values of a container's `--format` fields, as `docker ps` prints them. */
export function psFields(
  c: ContainerInfo,
  options: { trunc?: boolean; now?: number } = {},
): Record<string, string> {
  const trunc = options.trunc ?? true;
  let cmd = c.command.join(" ");
  if (trunc && cmd.length > 20) cmd = `${cmd.slice(0, 19)}…`;
  const ports = (c.ports ?? c.options.publish ?? [])
    .map((p) => `${p.hostIP || "0.0.0.0"}:${p.hostPort}->${p.containerPort}/${p.protocol}`)
    .join(", ");
  return {
    ID: trunc ? c.id.slice(0, 12) : c.id,
    Image: imageDisplay(c.image),
    Command: JSON.stringify(cmd),
    CreatedAt: `${c.created.slice(0, 10)} ${c.created.slice(11, 19)} +0000 UTC`,
    RunningFor: `${ago(c.created, options.now)} ago`,
    Ports: ports,
    State: c.state.status,
    Status: statusText(c, options.now),
    Names: c.name,
    Labels: Object.entries(c.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(","),
    Mounts: c.volumes.map((v) => v.name).join(","),
    Networks: c.options.network ?? "none",
  };
}

/** A parsed `--format` template: literal text and {{.Field}} / {{.Label "k"}} / {{json .}}. */
interface Template {
  table: boolean;
  json: boolean;
  parts: ({ text: string } | { field: string; arg?: string; json?: boolean })[];
}

export function parseTemplate(format: string, known: Record<string, string>): Template {
  let f = format;
  if (f === "json") return { table: false, json: true, parts: [] };
  let table = false;
  if (f === "table" || f.startsWith("table ")) {
    table = true;
    f = f.slice(5).trimStart();
  }
  // Docker turns the two characters \t and \n into a tab and a newline.
  f = f.replace(/\\t/g, "\t").replace(/\\n/g, "\n");
  const parts: Template["parts"] = [];
  const re = /\{\{\s*(json\s+)?\.(\w*)(?:\s+"([^"]*)")?\s*\}\}/g;
  let last = 0;
  for (let m = re.exec(f); m; m = re.exec(f)) {
    if (m.index > last) parts.push({ text: f.slice(last, m.index) });
    const field = m[2] ?? "";
    if (field === "" && m[1]) parts.push({ field: "", json: true });
    else if (field === "Label") parts.push({ field, arg: m[3] ?? "" });
    else if (!(field in known)) {
      throw new FormatError(`unknown field .${field} in --format`, {
        hint: `fields: ${Object.keys(known)
          .map((k) => `{{.${k}}}`)
          .join(" ")}, {{.Label "KEY"}}, {{json .}}; or --format json, --format table ...`,
      });
    } else parts.push({ field, ...(m[1] ? { json: true } : {}) });
    last = m.index + m[0].length;
  }
  if (/\{\{/.test(f.slice(last))) {
    throw new FormatError(`cannot read the --format template at "${f.slice(last)}"`, {
      hint: "use {{.Field}}, e.g. --format '{{.ID}} {{.Names}}'",
    });
  }
  if (last < f.length) parts.push({ text: f.slice(last) });
  if (table && parts.length === 0) {
    for (const [i, k] of Object.keys(known).slice(0, 7).entries()) {
      if (i) parts.push({ text: "\t" });
      parts.push({ field: k });
    }
  }
  return { table, json: false, parts };
}

/** Renders rows with a template; a table gets a header and tab-separated columns aligned. */
export function renderTemplate(
  tpl: Template,
  rows: { fields: Record<string, string>; labels?: Record<string, string> }[],
  titles: Record<string, string>,
): string {
  if (tpl.json) return rows.map((r) => `${JSON.stringify(r.fields)}\n`).join("");
  const one = (r: (typeof rows)[number] | null) =>
    tpl.parts
      .map((p) => {
        if ("text" in p) return p.text;
        if (!r) return p.field === "Label" ? (p.arg ?? "").toUpperCase() : (titles[p.field] ?? "");
        if (p.field === "") return JSON.stringify(r.fields);
        if (p.field === "Label") return r.labels?.[p.arg ?? ""] ?? "";
        const v = r.fields[p.field] ?? "";
        return p.json ? JSON.stringify(v) : v;
      })
      .join("");
  const lines = [...(tpl.table ? [one(null)] : []), ...rows.map((r) => one(r))];
  if (!tpl.table) return lines.map((l) => `${l}\n`).join("");
  return alignTabs(lines);
}

/** Aligns tab-separated cells into columns three spaces apart (Go's tabwriter, as Docker). */
export function alignTabs(lines: string[]): string {
  const cells = lines.map((l) => l.split("\t"));
  const widths: number[] = [];
  for (const row of cells)
    row.forEach((c, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  return cells
    .map(
      (row) =>
        `${row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i]! + 3) : c)).join("")}\n`,
    )
    .join("");
}

/** Bytes as Docker prints them: 1.5MiB for memory (binary), 1.5MB for I/O (decimal). */
export function humanSize(n: number, binary = false): string {
  const base = binary ? 1024 : 1000;
  const units = binary ? ["B", "KiB", "MiB", "GiB", "TiB"] : ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  const text = v >= 100 || i === 0 ? String(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2);
  return `${text.replace(/\.0+$/, "")}${units[i]}`;
}

/** CPU % between two readings of one container, as Docker computes it. */
export function cpuPercent(prev: StatsSample | null, cur: StatsSample): number {
  if (!prev) return 0;
  const cpuDelta = cur.cpuTotal - prev.cpuTotal;
  const sysDelta = cur.systemCpu - prev.systemCpu;
  if (cpuDelta <= 0 || sysDelta <= 0) return 0;
  return (cpuDelta / sysDelta) * cur.onlineCpus * 100;
}

export const STATS_TITLES: Record<string, string> = {
  ID: "CONTAINER ID",
  Container: "CONTAINER",
  Name: "NAME",
  CPUPerc: "CPU %",
  MemUsage: "MEM USAGE / LIMIT",
  MemPerc: "MEM %",
  NetIO: "NET I/O",
  BlockIO: "BLOCK I/O",
  PIDs: "PIDS",
};

/** The columns of `docker stats` for one reading (and the previous one, for CPU %). */
export function statsFields(prev: StatsSample | null, cur: StatsSample): Record<string, string> {
  const memPerc = cur.memoryLimit > 0 ? (cur.memoryUsage / cur.memoryLimit) * 100 : 0;
  return {
    ID: cur.id.slice(0, 12),
    Container: cur.id.slice(0, 12),
    Name: cur.name,
    CPUPerc: `${cpuPercent(prev, cur).toFixed(2)}%`,
    MemUsage: `${humanSize(cur.memoryUsage, true)} / ${humanSize(cur.memoryLimit, true)}`,
    MemPerc: `${memPerc.toFixed(2)}%`,
    NetIO: `${humanSize(cur.netRx)} / ${humanSize(cur.netTx)}`,
    BlockIO: `${humanSize(cur.blockRead)} / ${humanSize(cur.blockWrite)}`,
    PIDs: String(cur.pids),
  };
}

export const STATS_DEFAULT_FORMAT =
  "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/** Docker's columns without PORTS (`{{.Ports}}` shows them). */
export const PS_DEFAULT_FORMAT =
  "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
