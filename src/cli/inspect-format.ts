// `inspect --format` of containers, images, volumes and networks, as Docker's: without it the
// objects as an indented JSON array; "json", one JSON line each; else a Go template rendered over
// each (src/util/go-template.ts: a field is a JSON key, matched exactly, else ignoring case; a
// container's object has Docker's fields, .State.ExitCode, .Config.Env, ..., then Pivot's own).
import { parseGoTemplate, renderGoTemplate, TemplateError } from "../util/go-template.ts";
import { UsageError } from "./args.ts";

const HINT =
  "fields are inspect's JSON keys (Docker's names): e.g. --format '{{.State.Pid}}', '{{json .Config.Env}}', '{{index .Config.Labels \"KEY\"}}', '{{range $p, $b := .NetworkSettings.Ports}}{{$p}} {{end}}', or --format json";

export function renderInspect(objects: readonly unknown[], format: string | undefined): string {
  if (format === undefined) return `${JSON.stringify(objects, null, 2)}\n`;
  if (format === "json") return objects.map((o) => `${JSON.stringify(o)}\n`).join("");
  try {
    const template = parseGoTemplate(format);
    return objects.map((o) => `${renderGoTemplate(template, o)}\n`).join("");
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    throw new UsageError(`--format ${JSON.stringify(format)}: ${err.message}`, { hint: HINT });
  }
}
