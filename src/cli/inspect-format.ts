// `inspect --format` of containers, images, volumes and networks, as Docker's: without it the
// objects as an indented JSON array; "json", one JSON line each; else a Go template rendered over
// each (src/util/go-template.ts: a field is a JSON key, matched exactly, else ignoring case; a
// container's object has Docker's fields, .State.ExitCode, .Config.Env, ..., then Pivot's own).
import {
  asGoMap,
  parseGoTemplate,
  renderGoTemplate,
  TemplateError,
  withNilKinds,
} from "../util/go-template.ts";
import { UsageError } from "./args.ts";

const HINT =
  "fields are inspect's JSON keys (Docker's names): e.g. --format '{{.State.Pid}}', '{{json .Config.Env}}', '{{index .Config.Labels \"KEY\"}}', '{{range $p, $b := .NetworkSettings.Ports}}{{$p}} {{end}}', or --format json";

/** What `renderInspect` shows: a container's object marks its Go maps itself (docker-inspect.ts). */
export type InspectKind = "container" | "image" | "volume" | "network";

/** A field that is a Go map or list in Docker's type, by its path; `zero` is a map's for `index`. */
interface GoKind {
  path: readonly string[];
  kind: "map" | "list";
  zero?: unknown;
}

/**
 * The maps (and lists, for their nil) among the fields of the objects that are not containers:
 * a missing key of one prints <no value>, as in Docker's templates (map[string]string's zero
 * through `index`: ""), where a missing field stays an error. Images: Docker's ImageInspect
 * Config and GraphDriver; volumes: Docker's Labels and Options, and Pivot's own; networks:
 * Pivot's objects, whose labels Docker's Labels.
 */
const GO_KINDS: Record<Exclude<InspectKind, "container">, readonly GoKind[]> = {
  image: [
    { path: ["Config", "Labels"], kind: "map", zero: "" },
    { path: ["Config", "ExposedPorts"], kind: "map" },
    { path: ["Config", "Volumes"], kind: "map" },
    { path: ["Config", "Env"], kind: "list" },
    { path: ["Config", "Cmd"], kind: "list" },
    { path: ["Config", "Entrypoint"], kind: "list" },
    { path: ["GraphDriver", "Data"], kind: "map", zero: "" },
  ],
  volume: [
    { path: ["Labels"], kind: "map", zero: "" },
    { path: ["Options"], kind: "map", zero: "" },
    { path: ["labels"], kind: "map", zero: "" },
    { path: ["options"], kind: "map", zero: "" },
  ],
  network: [{ path: ["labels"], kind: "map", zero: "" }],
};

/** Marks OBJ's Go maps (and its nil maps and lists) as GO_KINDS says for KIND. */
function markGoKinds(obj: unknown, kind: InspectKind): void {
  if (kind === "container") return;
  const nils = new Map<object, Record<string, "map" | "list">>();
  for (const f of GO_KINDS[kind]) {
    let parent: unknown = obj;
    for (const k of f.path.slice(0, -1))
      parent = parent && typeof parent === "object" ? (parent as Record<string, unknown>)[k] : null;
    if (!parent || typeof parent !== "object") continue;
    const name = f.path[f.path.length - 1]!;
    const value = (parent as Record<string, unknown>)[name];
    if (value === null) nils.set(parent, { ...nils.get(parent), [name]: f.kind });
    else if (f.kind === "map" && value && typeof value === "object") asGoMap(value, f.zero);
  }
  for (const [parent, kinds] of nils) withNilKinds(parent, kinds);
}

export function renderInspect(
  objects: readonly unknown[],
  format: string | undefined,
  /** The objects' kind, or each one's (`pivot inspect` of names of several kinds). */
  kind: InspectKind | readonly InspectKind[],
): string {
  if (format === undefined) return `${JSON.stringify(objects, null, 2)}\n`;
  if (format === "json") return objects.map((o) => `${JSON.stringify(o)}\n`).join("");
  try {
    const template = parseGoTemplate(format);
    return objects
      .map((o, i) => {
        markGoKinds(o, typeof kind === "string" ? kind : kind[i]!);
        return `${renderGoTemplate(template, o)}\n`;
      })
      .join("");
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    throw new UsageError(`--format ${JSON.stringify(format)}: ${err.message}`, { hint: HINT });
  }
}
