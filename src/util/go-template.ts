// The part of Go's text/template that `docker inspect --format` scripts use, over JSON-like data:
// {{.A.B}}, {{.}}, {{$}}, {{$var}}, {{$v := ...}}, "strings", numbers, (sub-pipelines) and
// (...).Field, pipelines with |, Go's functions (and or not eq ne lt le gt ge len index slice print
// printf println) and Docker's (json join split lower upper title pad truncate), and
// {{if}}/{{else if}}/{{else}}/{{with}}/{{range [$k, $v :=] ...}} ... {{end}}, with {{- and -}}.
//
// Objects are Go structs unless marked as Go maps (asGoMap), as Docker's inspect types have them:
// a struct's field is matched exactly, else ignoring case (so .State.Pid also finds the state.pid
// of Pivot's own fields), and a missing one is an error, as in Docker (its fallback to the raw
// JSON runs with missingkey=error); a map's key is matched exactly, and a missing one is
// `<no value>` (Go's default missingkey), or the map's zero value through `index`
// ({{index .Config.Labels "nope"}} is "", as for Docker's map[string]string). JSON's null prints
// as Go's nil pointer, <nil>, or as a nil list or map ([], map[]) where withNilKinds says so.

export class TemplateError extends Error {}

type Value = unknown;

type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; pipe: Pipeline; decl?: string }
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
  | { kind: "ident"; name: string }
  | { kind: "pipe"; pipe: Pipeline; path: string[] };

// ---- parsing ----

interface Token {
  text: string;
  /** Whitespace came before it: `(...) .X` is two arguments, `(...).X` a field of the result. */
  spaced: boolean;
}

function tokenize(action: string): Token[] {
  const tokens: Token[] = [];
  const re = /(\s*)("(?:[^"\\]|\\.)*"|`[^`]*`|:=|\||,|\(|\)|[^\s|,"`()]+)/gy;
  let end = 0;
  for (let m = re.exec(action); m; m = re.exec(action)) {
    tokens.push({ text: m[2]!, spaced: m[1] !== "" });
    end = re.lastIndex;
  }
  const left = action.slice(end).trim();
  if (left !== "") throw new TemplateError(`cannot read "${left}" in "${action}"`);
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

/** A pipeline from tokens[at], up to the end or (inside parentheses) a ")". */
function parsePipeline(tokens: Token[], at = 0, inParens = false): { pipe: Pipeline; at: number } {
  const commands: Command[] = [[]];
  while (at < tokens.length) {
    const t = tokens[at]!;
    if (t.text === ")") {
      if (inParens) break;
      throw new TemplateError('unexpected ")"');
    }
    at++;
    if (t.text === "|") commands.push([]);
    else if (t.text === "(") {
      const inner = parsePipeline(tokens, at, true);
      if (tokens[inner.at]?.text !== ")") throw new TemplateError('unclosed "("');
      at = inner.at + 1;
      let path: string[] = [];
      const next = tokens[at];
      if (next && !next.spaced && /^\.\w/.test(next.text)) {
        path = next.text.slice(1).split(".");
        at++;
      }
      commands[commands.length - 1]!.push({ kind: "pipe", pipe: inner.pipe, path });
    } else commands[commands.length - 1]!.push(parseArg(t.text));
  }
  if (commands.length === 1 && commands[0]!.length === 0)
    throw new TemplateError("missing value in an action");
  if (commands.some((c) => c.length === 0)) throw new TemplateError("empty command in a pipeline");
  return { pipe: commands, at };
}

function wholePipeline(tokens: Token[]): Pipeline {
  return parsePipeline(tokens).pipe;
}

export function parseGoTemplate(source: string): Node[] {
  // Split into text and actions, applying {{- and -}} trimming.
  // Each {{ up to the first }} after it, found with indexOf: a regular expression searched again
  // from every {{ of a template without }} (120 KB of {{ took 17 s).
  const pieces: ({ text: string } | { action: string })[] = [];
  let last = 0;
  for (let open = source.indexOf("{{"); open >= 0; open = source.indexOf("{{", last)) {
    const close = source.indexOf("}}", open + 2);
    if (close < 0) throw new TemplateError("unclosed action {{");
    let inner = source.slice(open + 2, close);
    let text = source.slice(last, open);
    if (/^-\s/.test(inner)) {
      text = text.replace(/\s+$/, "");
      inner = inner.slice(2);
    }
    const trimRight = /\s-$/.test(inner);
    if (trimRight) inner = inner.slice(0, -2);
    pieces.push({ text });
    pieces.push({ action: inner.trim() });
    last = close + 2;
    if (trimRight) {
      const rest = source.slice(last);
      last += rest.length - rest.replace(/^\s+/, "").length;
    }
  }
  pieces.push({ text: source.slice(last) });

  let at = 0;
  /** Nodes up to {{end}} or {{else ...}} (returned as `stop`, with else's tokens), or the end. */
  const parseList = (
    top: boolean,
  ): { nodes: Node[]; stop: "end" | "else" | null; elseTokens: Token[] } => {
    const nodes: Node[] = [];
    while (at < pieces.length) {
      const p = pieces[at++]!;
      if ("text" in p) {
        if (p.text) nodes.push({ kind: "text", text: p.text });
        continue;
      }
      if (p.action.startsWith("/*")) continue; // a comment
      const tokens = tokenize(p.action);
      const [first, ...rest] = tokens;
      const head = first?.text;
      if (head === "end" || head === "else") {
        if (top) throw new TemplateError(`unexpected {{${head}}}`);
        return { nodes, stop: head, elseTokens: rest };
      }
      if (head === "if" || head === "with" || head === "range") {
        nodes.push(parseBlock(head, rest));
        continue;
      }
      if (tokens.length >= 2 && head!.startsWith("$") && tokens[1]!.text === ":=") {
        nodes.push({ kind: "action", pipe: wholePipeline(tokens.slice(2)), decl: head! });
        continue;
      }
      nodes.push({ kind: "action", pipe: wholePipeline(tokens) });
    }
    return { nodes, stop: null, elseTokens: [] };
  };
  /** {{if|with|range ...}} up to its {{end}}; {{else if ...}} is an if inside the else. */
  const parseBlock = (head: "if" | "with" | "range", rest: Token[]): Node => {
    let keyVar: string | undefined;
    let valueVar: string | undefined;
    let pipeTokens = rest;
    const assign = rest.findIndex((t) => t.text === ":=");
    if (head === "range" && assign > 0) {
      const vars = rest
        .slice(0, assign)
        .map((t) => t.text)
        .filter((t) => t !== ",");
      if (vars.length === 2) [keyVar, valueVar] = vars;
      else valueVar = vars[0];
      pipeTokens = rest.slice(assign + 1);
    }
    const pipe = wholePipeline(pipeTokens);
    const body = parseList(false);
    if (body.stop === null) throw new TemplateError(`{{${head}}} without {{end}}`);
    let elseNodes: Node[] = [];
    if (body.stop === "else") {
      const [elseHead, ...elseRest] = body.elseTokens;
      if (elseHead && (elseHead.text === "if" || elseHead.text === "with")) {
        // {{else if X}} ... {{end}}: the nested block takes the one {{end}}.
        elseNodes = [parseBlock(elseHead.text, elseRest)];
      } else {
        if (elseHead) throw new TemplateError(`unexpected "${elseHead.text}" after {{else}}`);
        const e = parseList(false);
        if (e.stop !== "end") throw new TemplateError(`{{${head}}} without {{end}}`);
        elseNodes = e.nodes;
      }
    }
    if (head === "range") {
      return {
        kind: "range",
        pipe,
        ...(keyVar ? { keyVar } : {}),
        ...(valueVar ? { valueVar } : {}),
        body: body.nodes,
        else: elseNodes,
      };
    }
    return { kind: head, pipe, body: body.nodes, else: elseNodes };
  };
  return parseList(true).nodes;
}

// ---- evaluation ----

interface Scope {
  dot: Value;
  vars: Map<string, Value>;
}

/** Objects that are Go maps (a missing key is no error), with their zero value for `index`. */
const goMaps = new WeakMap<object, Value>();

/**
 * Marks OBJ as a Go map rather than a struct (see the top of this file): a missing key is
 * `<no value>` in a field chain and ZERO through `index` ("" for Docker's map[string]string).
 */
export function asGoMap<T extends object>(obj: T, zero?: Value): T {
  goMaps.set(obj, zero);
  return obj;
}

/** A nil list or map, as a field's null reads when the object says which it is (withNilKinds). */
const NIL_LIST: readonly never[] = Object.freeze([]);
const NIL_MAP: object = asGoMap(Object.freeze({}));
const nilKinds = new WeakMap<object, Readonly<Record<string, "list" | "map">>>();

/**
 * Says which of OBJ's fields are Go lists or maps: their null (Go's nil) then prints as Go prints
 * a nil list or map, `[]` and `map[]`, where another null (a nil pointer) prints `<nil>`; json
 * still gives `null`.
 */
export function withNilKinds<T extends object>(
  obj: T,
  kinds: Readonly<Record<string, "list" | "map">>,
): T {
  nilKinds.set(obj, kinds);
  return obj;
}

function field(obj: Record<string, Value>, key: string): Value {
  const v = obj[key];
  if (v !== null) return v;
  const kind = nilKinds.get(obj)?.[key];
  return kind === "list" ? NIL_LIST : kind === "map" ? NIL_MAP : null;
}

function lookup(value: Value, name: string, shown: string): Value {
  // A missing map key's <no value>, further down the chain: still <no value>, as in Go.
  if (value === undefined) return undefined;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TemplateError(
      `can't evaluate field ${name} in ${shown}: ${value === null ? "it is nil" : "not an object"}`,
    );
  }
  const obj = value as Record<string, Value>;
  if (goMaps.has(obj)) return Object.hasOwn(obj, name) ? obj[name] : undefined;
  if (Object.hasOwn(obj, name)) return field(obj, name);
  const lower = name.toLowerCase();
  const key = Object.keys(obj).find((k) => k.toLowerCase() === lower);
  if (key !== undefined) return field(obj, key);
  throw new TemplateError(
    `can't evaluate field ${name} in ${shown}: it has ${Object.keys(obj).join(", ") || "no fields"}`,
  );
}

/** A value as Go's fmt prints it (%v): a missing map key is <no value>, JSON's null <nil>. */
export function goString(v: Value): string {
  if (v === undefined) return "<no value>";
  if (v === null) return "<nil>";
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

/** Go's name of a value's type, for fmt's %!verb(type=value). */
function goType(v: Value): string {
  if (v === undefined || v === null) return "<nil>";
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float64";
  return Array.isArray(v) ? "[]interface {}" : "map[string]interface {}";
}

/** Go's Sprintf for the verbs scripts use: %s %v %d %q %t %x %X %f %%, with flags and width. */
function printf(whole: string, args: Value[]): string {
  let i = 0;
  const directive = /%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])/g;
  // Go reads a width or precision digit by digit and gives up past 1e6 (fmt's parsenum): the
  // rest of the format is not read, and %!(NOVERB) stands for it.
  let format = whole;
  let noVerb = "";
  for (const m of whole.matchAll(directive)) {
    if (tooLarge(m[2]) || tooLarge(m[3])) {
      format = whole.slice(0, m.index);
      noVerb = "%!(NOVERB)";
      break;
    }
  }
  const out = `${format.replace(
    directive,
    (_, flags: string, width: string | undefined, precision: string | undefined, verb: string) => {
      if (verb === "%") return "%";
      if (i >= args.length) return `%!${verb}(MISSING)`;
      const v = args[i++];
      const isNumber = typeof v === "number";
      let text: string;
      switch (verb) {
        case "s":
        case "v":
          text = goString(v);
          if (precision !== undefined && verb === "s") text = text.slice(0, Number(precision));
          break;
        case "q":
          text = typeof v === "string" ? JSON.stringify(v) : `%!q(${goType(v)}=${goString(v)})`;
          break;
        case "d":
          text =
            isNumber && Number.isInteger(v)
              ? `${flags.includes("+") && v >= 0 ? "+" : ""}${v}`
              : `%!d(${goType(v)}=${goString(v)})`;
          break;
        case "t":
          text = typeof v === "boolean" ? String(v) : `%!t(${goType(v)}=${goString(v)})`;
          break;
        case "x":
        case "X": {
          const hex =
            isNumber && Number.isInteger(v)
              ? v.toString(16)
              : typeof v === "string"
                ? Buffer.from(v).toString("hex")
                : `%!${verb}(${goType(v)}=${goString(v)})`;
          text = verb === "X" ? hex.toUpperCase() : hex;
          break;
        }
        case "f": {
          // toFixed stops at 100 digits (a RangeError past them).
          const p = precision === undefined ? 6 : Number(precision);
          text = isNumber
            ? v.toFixed(Math.min(p, 100)) +
              (p > 100 && Number.isFinite(v) ? "0".repeat(p - 100) : "")
            : `%!f(${goType(v)}=${goString(v)})`;
          break;
        }
        default:
          text = `%!${verb}(${goType(v)}=${goString(v)})`;
      }
      const w = width === undefined ? 0 : Number(width);
      if (text.length >= w) return text;
      if (flags.includes("-")) return text.padEnd(w);
      if (flags.includes("0") && isNumber) {
        const sign = /^[-+]/.test(text) ? text[0]! : "";
        return sign + text.slice(sign.length).padStart(w - sign.length, "0");
      }
      return text.padStart(w);
    },
  )}${noVerb}`;
  if (i < args.length) {
    const extra = args.slice(i).map((v) => `${goType(v)}=${goString(v)}`);
    return `${out}%!(EXTRA ${extra.join(", ")})`;
  }
  return out;
}

/** Whether Go's fmt refuses DIGITS as a width or precision (parsenum's tooLarge). */
function tooLarge(digits: string | undefined): boolean {
  let n = 0;
  for (const c of digits ?? "") {
    if (n > 1e6) return true;
    n = n * 10 + (c.charCodeAt(0) - 48);
  }
  return false;
}

/** Go's eq/lt/...: basic values of one kind (numbers, strings, booleans). */
function comparable(name: string, a: Value, b: Value): void {
  const basic = (v: Value) => ["string", "number", "boolean"].includes(typeof v);
  if (!basic(a) || !basic(b))
    throw new TemplateError(`error calling ${name}: invalid type for comparison`);
  if (typeof a !== typeof b)
    throw new TemplateError(`error calling ${name}: incompatible types for comparison`);
}

function ordered(name: string, test: (a: number | string, b: number | string) => boolean) {
  return ([a, b]: Value[]): Value => {
    comparable(name, a, b);
    if (typeof a === "boolean")
      throw new TemplateError(`error calling ${name}: invalid type for comparison`);
    return test(a as number | string, b as number | string);
  };
}

/** Go's Sprint: a space between two operands when neither is a string. */
function sprint(args: Value[]): string {
  let out = "";
  args.forEach((v, i) => {
    if (i > 0 && typeof v !== "string" && typeof args[i - 1] !== "string") out += " ";
    out += goString(v);
  });
  return out;
}

const FUNCTIONS: Record<string, (args: Value[]) => Value> = {
  // Docker's (github.com/docker/cli/templates).
  json: ([v]) => (v === NIL_LIST || v === NIL_MAP ? "null" : JSON.stringify(v ?? null)),
  join: ([list, sep]) => (Array.isArray(list) ? list.map(goString).join(String(sep ?? "")) : ""),
  split: ([s, sep]) => String(s).split(String(sep)),
  lower: ([s]) => goString(s).toLowerCase(),
  upper: ([s]) => goString(s).toUpperCase(),
  title: ([s]) =>
    goString(s).replace(/(^|[^\p{L}\p{N}_'])(\p{L})/gu, (_, a, c) => a + c.toUpperCase()),
  pad: ([s, prefix, suffix]) => {
    const text = goString(s);
    if (text === "") return text;
    // Go's strings.Repeat panics on a negative count: the call's error.
    if (!(Number(prefix) >= 0 && Number(suffix) >= 0))
      throw new TemplateError("error calling pad: strings: negative Repeat count");
    return " ".repeat(Number(prefix)) + text + " ".repeat(Number(suffix));
  },
  truncate: ([s, length]) => {
    const text = goString(s);
    const n = Number(length);
    if (text.length < n) return text;
    // Go's source[:length] with a negative length: out of range, the call's error.
    if (!(n >= 0))
      throw new TemplateError(`error calling truncate: slice bounds out of range [:${length}]`);
    return text.slice(0, n);
  },
  // Go's own.
  len: ([v]) => {
    if (v === null) return 0; // a nil list or map
    if (typeof v === "string" || Array.isArray(v)) return v.length;
    if (v && typeof v === "object") return Object.keys(v).length;
    throw new TemplateError(`error calling len: len of ${goType(v)}`);
  },
  index: ([v, ...keys]) => {
    let cur = v;
    for (const k of keys) {
      if (Array.isArray(cur)) {
        const i = Number(k);
        if (!Number.isInteger(i) || i < 0 || i >= cur.length)
          throw new TemplateError(`error calling index: index out of range: ${goString(k)}`);
        cur = cur[i];
      } else if (cur && typeof cur === "object") {
        const obj = cur as Record<string, Value>;
        const key = String(k);
        cur = Object.hasOwn(obj, key) ? obj[key] : goMaps.get(obj);
      } else throw new TemplateError(`error calling index: index of ${goString(cur)}`);
    }
    return cur;
  },
  slice: ([v, ...bounds]) => {
    if (typeof v !== "string" && !Array.isArray(v))
      throw new TemplateError(`error calling slice: can't slice item of type ${goType(v)}`);
    const [from = 0, to = v.length] = bounds.map(Number);
    if (from < 0 || to > v.length || from > to)
      throw new TemplateError(`error calling slice: index out of range: ${from}:${to}`);
    return v.slice(from, to);
  },
  printf: ([format, ...args]) => printf(String(format), args),
  print: (args) => sprint(args),
  println: (args) => `${args.map(goString).join(" ")}\n`,
  not: ([v]) => !truthy(v),
  // Go's and/or: the first empty (and) or non-empty (or) argument, else the last.
  and: (args) => args.find((v) => !truthy(v)) ?? args[args.length - 1],
  or: (args) => args.find((v) => truthy(v)) ?? args[args.length - 1],
  eq: ([a, ...bs]) => {
    if (bs.length === 0)
      throw new TemplateError("error calling eq: missing argument for comparison");
    return bs.some((b) => {
      comparable("eq", a, b);
      return a === b;
    });
  },
  ne: ([a, b]) => {
    comparable("ne", a, b);
    return a !== b;
  },
  lt: ordered("lt", (a, b) => a < b),
  le: ordered("le", (a, b) => a <= b),
  gt: ordered("gt", (a, b) => a > b),
  ge: ordered("ge", (a, b) => a >= b),
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
    case "pipe": {
      let cur = evalPipeline(arg.pipe, scope);
      let shown = "(...)";
      for (const name of arg.path) {
        cur = lookup(cur, name, shown);
        shown = `${shown}.${name}`;
      }
      return cur;
    }
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
      case "action": {
        const v = evalPipeline(n.pipe, scope);
        if (n.decl) scope.vars.set(n.decl, v);
        else out += goString(v);
        break;
      }
      case "if":
      case "with": {
        // A block's variables end with it.
        const vars = new Map(scope.vars);
        const v = evalPipeline(n.pipe, { ...scope, vars });
        if (truthy(v)) out += render(n.body, { dot: n.kind === "with" ? v : scope.dot, vars });
        else out += render(n.else, { dot: scope.dot, vars: new Map(scope.vars) });
        break;
      }
      case "range": {
        const v = evalPipeline(n.pipe, scope);
        const entries: [Value, Value][] = Array.isArray(v)
          ? v.map((x, i) => [i, x])
          : v && typeof v === "object"
            ? Object.entries(v as Record<string, Value>).sort(([a], [b]) => (a < b ? -1 : 1))
            : [];
        if (entries.length === 0) out += render(n.else, { ...scope, vars: new Map(scope.vars) });
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
