// The part of Go's text/template that `docker inspect --format` scripts use, over JSON-like data:
// {{.A.B}} (names matched exactly, else ignoring case, so Docker's .State.Pid finds state.pid),
// {{.}}, {{$}}, {{$var}}, "strings", numbers, pipelines with |, the functions json, index, len,
// join, lower, upper, split, title, printf (%s %d %v %q), and {{if}}/{{else}}/{{with}}/
// {{range [$k, $v :=] ...}} ... {{end}}, with {{- and -}} trimming.

export class TemplateError extends Error {}

type Value = unknown;

type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; pipe: Pipeline }
  | { kind: "if" | "with"; pipe: Pipeline; body: Node[]; else: Node[] }
  | {
      kind: "range";
      pipe: Pipeline;
      keyVar?: string;
      valueVar?: string;
      body: Node[];
      else: Node[];
    };

/** Commands joined by |: each command's result is the last argument of the next. */
type Pipeline = Command[];
type Command = Arg[];
type Arg =
  | { kind: "field"; base: "dot" | { variable: string }; path: string[] }
  | { kind: "string"; value: string }
  | { kind: "number"; value: number }
  | { kind: "bool"; value: boolean }
  | { kind: "ident"; name: string };

// ---- parsing ----

function tokenize(action: string): string[] {
  const tokens: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|:=|\||,|[^\s|,"`]+)/gy;
  for (let m = re.exec(action); m; m = re.exec(action)) tokens.push(m[1]!);
  if (action.slice(re.lastIndex).trim() !== "" && tokens.join("") === "")
    throw new TemplateError(`cannot read "${action}"`);
  return tokens;
}

function parseArg(token: string): Arg {
  if (token.startsWith('"')) return { kind: "string", value: JSON.parse(token) as string };
  if (token.startsWith("`")) return { kind: "string", value: token.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(token)) return { kind: "number", value: Number(token) };
  if (token === "true" || token === "false") return { kind: "bool", value: token === "true" };
  if (token === ".") return { kind: "field", base: "dot", path: [] };
  if (token.startsWith(".")) return { kind: "field", base: "dot", path: token.slice(1).split(".") };
  if (token.startsWith("$")) {
    const [name, ...path] = token.split(".");
    return { kind: "field", base: { variable: name! }, path };
  }
  if (/^[A-Za-z_]\w*$/.test(token)) return { kind: "ident", name: token };
  throw new TemplateError(`unexpected "${token}"`);
}

function parsePipeline(tokens: string[]): Pipeline {
  if (tokens.length === 0) throw new TemplateError("missing value in an action");
  const commands: Command[] = [[]];
  for (const t of tokens) {
    if (t === "|") commands.push([]);
    else commands[commands.length - 1]!.push(parseArg(t));
  }
  if (commands.some((c) => c.length === 0)) throw new TemplateError("empty command in a pipeline");
  return commands;
}

export function parseGoTemplate(source: string): Node[] {
  // Split into text and actions, applying {{- and -}} trimming.
  const pieces: ({ text: string } | { action: string })[] = [];
  const re = /\{\{(-\s)?([\s\S]*?)(\s-)?\}\}/g;
  let last = 0;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    let text = source.slice(last, m.index);
    if (m[1]) text = text.replace(/\s+$/, "");
    pieces.push({ text });
    pieces.push({ action: m[2]!.trim() });
    last = m.index + m[0].length;
    if (m[3]) {
      const rest = source.slice(last);
      last += rest.length - rest.replace(/^\s+/, "").length;
    }
  }
  if (source.slice(last).includes("{{")) throw new TemplateError("unclosed action {{");
  pieces.push({ text: source.slice(last) });

  let at = 0;
  /** Nodes up to {{end}} or {{else}} (returned as `stop`), or the end at top level. */
  const parseList = (top: boolean): { nodes: Node[]; stop: "end" | "else" | null } => {
    const nodes: Node[] = [];
    while (at < pieces.length) {
      const p = pieces[at++]!;
      if ("text" in p) {
        if (p.text) nodes.push({ kind: "text", text: p.text });
        continue;
      }
      if (p.action.startsWith("/*")) continue; // a comment
      const tokens = tokenize(p.action);
      const [head, ...rest] = tokens;
      if (head === "end" || head === "else") {
        if (top) throw new TemplateError(`unexpected {{${head}}}`);
        return { nodes, stop: head };
      }
      if (head === "if" || head === "with" || head === "range") {
        let keyVar: string | undefined;
        let valueVar: string | undefined;
        let pipeTokens = rest;
        const assign = rest.indexOf(":=");
        if (head === "range" && assign > 0) {
          const vars = rest.slice(0, assign).filter((t) => t !== ",");
          if (vars.length === 2) [keyVar, valueVar] = vars;
          else valueVar = vars[0];
          pipeTokens = rest.slice(assign + 1);
        }
        const pipe = parsePipeline(pipeTokens);
        const body = parseList(false);
        if (body.stop === null) throw new TemplateError(`{{${head}}} without {{end}}`);
        let elseNodes: Node[] = [];
        if (body.stop === "else") {
          const e = parseList(false);
          if (e.stop !== "end") throw new TemplateError(`{{${head}}} without {{end}}`);
          elseNodes = e.nodes;
        }
        if (head === "range") {
          nodes.push({
            kind: "range",
            pipe,
            ...(keyVar ? { keyVar } : {}),
            ...(valueVar ? { valueVar } : {}),
            body: body.nodes,
            else: elseNodes,
          });
        } else nodes.push({ kind: head, pipe, body: body.nodes, else: elseNodes });
        continue;
      }
      nodes.push({ kind: "action", pipe: parsePipeline(tokens) });
    }
    if (!top) return { nodes, stop: null };
    return { nodes, stop: null };
  };
  return parseList(true).nodes;
}

// ---- evaluation ----

interface Scope {
  dot: Value;
  vars: Map<string, Value>;
}

function lookup(value: Value, name: string, shown: string): Value {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TemplateError(`can't evaluate field ${name} in ${shown}: not an object`);
  }
  const obj = value as Record<string, Value>;
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  const key = Object.keys(obj).find((k) => k.toLowerCase() === lower);
  if (key !== undefined) return obj[key];
  throw new TemplateError(
    `can't evaluate field ${name} in ${shown}: it has ${Object.keys(obj).join(", ") || "no fields"}`,
  );
}

/** A value as Go's fmt prints it (%v). */
export function goString(v: Value): string {
  if (v === null || v === undefined) return "<no value>";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `[${v.map(goString).join(" ")}]`;
  const entries = Object.entries(v as Record<string, Value>).sort(([a], [b]) => (a < b ? -1 : 1));
  return `map[${entries.map(([k, x]) => `${k}:${goString(x)}`).join(" ")}]`;
}

function truthy(v: Value): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v as object).length > 0;
  return true;
}

function printf(format: string, args: Value[]): string {
  let i = 0;
  return format.replace(/%([%sdvq])/g, (_, verb: string) => {
    if (verb === "%") return "%";
    const v = args[i++];
    if (verb === "d") return String(Math.trunc(Number(v)));
    if (verb === "q") return JSON.stringify(goString(v));
    return goString(v);
  });
}

const FUNCTIONS: Record<string, (args: Value[]) => Value> = {
  json: ([v]) => JSON.stringify(v ?? null),
  len: ([v]) => {
    if (typeof v === "string" || Array.isArray(v)) return v.length;
    if (v && typeof v === "object") return Object.keys(v).length;
    throw new TemplateError("len of a value that has no length");
  },
  index: ([v, ...keys]) => {
    let cur = v;
    for (const k of keys) {
      if (Array.isArray(cur)) cur = cur[Number(k)];
      else if (cur && typeof cur === "object") cur = (cur as Record<string, Value>)[String(k)];
      else throw new TemplateError(`index of ${goString(cur)}`);
    }
    return cur;
  },
  join: ([list, sep]) => (Array.isArray(list) ? list.map(goString).join(String(sep ?? "")) : ""),
  split: ([s, sep]) => String(s).split(String(sep)),
  lower: ([s]) => goString(s).toLowerCase(),
  upper: ([s]) => goString(s).toUpperCase(),
  title: ([s]) => goString(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  printf: ([format, ...args]) => printf(String(format), args),
  print: (args) => args.map(goString).join(""),
  println: (args) => `${args.map(goString).join(" ")}\n`,
  not: ([v]) => !truthy(v),
  eq: ([a, ...bs]) => bs.some((b) => a === b),
  ne: ([a, b]) => a !== b,
};

function evalArg(arg: Arg, scope: Scope): Value {
  switch (arg.kind) {
    case "string":
    case "number":
    case "bool":
      return arg.value;
    case "ident":
      if (!(arg.name in FUNCTIONS)) throw new TemplateError(`function "${arg.name}" not defined`);
      return FUNCTIONS[arg.name]!([]);
    case "field": {
      let cur: Value;
      let shown: string;
      if (arg.base === "dot") {
        cur = scope.dot;
        shown = ".";
      } else {
        if (!scope.vars.has(arg.base.variable))
          throw new TemplateError(`undefined variable ${arg.base.variable}`);
        cur = scope.vars.get(arg.base.variable);
        shown = arg.base.variable;
      }
      for (const name of arg.path) {
        cur = lookup(cur, name, shown);
        shown = `${shown === "." ? "" : shown}.${name}`;
      }
      return cur;
    }
  }
}

function evalPipeline(pipe: Pipeline, scope: Scope): Value {
  let result: Value;
  pipe.forEach((command, i) => {
    const [head, ...rest] = command;
    const piped = i > 0 ? [result] : [];
    if (head!.kind === "ident") {
      const f = FUNCTIONS[head!.name];
      if (!f) throw new TemplateError(`function "${head!.name}" not defined`);
      result = f([...rest.map((a) => evalArg(a, scope)), ...piped]);
    } else {
      if (rest.length > 0 || piped.length > 0)
        throw new TemplateError("only a function takes arguments");
      result = evalArg(head!, scope);
    }
  });
  return result;
}

function render(nodes: Node[], scope: Scope): string {
  let out = "";
  for (const n of nodes) {
    switch (n.kind) {
      case "text":
        out += n.text;
        break;
      case "action":
        out += goString(evalPipeline(n.pipe, scope));
        break;
      case "if":
      case "with": {
        const v = evalPipeline(n.pipe, scope);
        if (truthy(v)) out += render(n.body, n.kind === "with" ? { ...scope, dot: v } : scope);
        else out += render(n.else, scope);
        break;
      }
      case "range": {
        const v = evalPipeline(n.pipe, scope);
        const entries: [Value, Value][] = Array.isArray(v)
          ? v.map((x, i) => [i, x])
          : v && typeof v === "object"
            ? Object.entries(v as Record<string, Value>).sort(([a], [b]) => (a < b ? -1 : 1))
            : [];
        if (entries.length === 0) out += render(n.else, scope);
        for (const [k, x] of entries) {
          const vars = new Map(scope.vars);
          if (n.keyVar) vars.set(n.keyVar, k);
          if (n.valueVar) vars.set(n.valueVar, x);
          out += render(n.body, { dot: x, vars });
        }
        break;
      }
    }
  }
  return out;
}

/** Renders TEMPLATE (Go's text/template syntax) over DATA. */
export function renderGoTemplate(template: string | Node[], data: Value): string {
  const nodes = typeof template === "string" ? parseGoTemplate(template) : template;
  return render(nodes, { dot: data, vars: new Map([["$", data]]) });
}
