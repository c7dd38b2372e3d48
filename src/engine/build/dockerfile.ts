// Dockerfile text → instructions, and the variable substitution Docker applies to their words.
// Pure functions: the builder (builder.ts) decides what each instruction does.
import { PivotError } from "../../errors.ts";

export class DockerfileError extends PivotError {}

export interface Instruction {
  /** Upper-case keyword: RUN, COPY, ... */
  keyword: string;
  /** The line the instruction starts on (1-based). */
  line: number;
  /** Leading `--name=value` flags (COPY --from, --chown; FROM --platform; HEALTHCHECK --interval). */
  flags: Record<string, string>;
  /** The arguments after the keyword and flags, continuation lines joined. */
  args: string;
  /** The arguments as a JSON array of strings (exec form), when they are one. */
  json: string[] | null;
  /** The instruction as written (continuations joined), for messages and history. */
  original: string;
}

/** Instructions whose leading `--flag=value` words are flags, not arguments. */
const FLAGGED = new Set(["FROM", "COPY", "ADD", "RUN", "HEALTHCHECK"]);

/**
 * Splits a Dockerfile into instructions: `#` comment lines dropped (inside continuations too),
 * lines ending with the escape character (`\`, or `` ` `` after `# escape=``) joined with the next,
 * blank lines skipped.
 */
export function parseDockerfile(text: string): { instructions: Instruction[]; escapeChar: string } {
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  let esc = "\\";
  // Parser directives: only at the very top, before any other comment or instruction.
  for (const l of lines) {
    const m = /^\s*#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(l);
    if (!m) break;
    if (m[1]!.toLowerCase() === "escape") {
      if (m[2] !== "\\" && m[2] !== "`")
        throw new DockerfileError(`invalid escape directive "${m[2]}": it must be \\ or \``);
      esc = m[2]!;
    }
  }
  const continued = new RegExp(`${esc === "\\" ? "\\\\" : "`"}[ \\t]*$`);
  const out: Instruction[] = [];
  let buf: string | null = null;
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed.startsWith("#")) continue;
    if (trimmed === "") {
      if (buf === null) continue;
      // A blank line inside a continuation is skipped, as Docker does (with a warning).
      if (i < lines.length - 1) continue;
    }
    if (buf === null) {
      buf = "";
      start = i + 1;
    }
    if (continued.test(raw)) {
      buf += raw.replace(continued, "");
      if (i < lines.length - 1) continue;
    } else {
      buf += raw;
    }
    const inst = parseInstruction(buf.trim(), start);
    if (inst) out.push(inst);
    buf = null;
  }
  return { instructions: out, escapeChar: esc };
}

function parseInstruction(text: string, line: number): Instruction | null {
  if (text === "") return null;
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text)!;
  const keyword = m[1]!.toUpperCase();
  let rest = m[2]!;
  const flags: Record<string, string> = {};
  if (FLAGGED.has(keyword)) {
    for (;;) {
      const f = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?\s*/.exec(rest);
      if (!f) break;
      flags[f[1]!] = f[2] ?? "true";
      rest = rest.slice(f[0].length);
    }
  }
  return { keyword, line, flags, args: rest.trim(), json: parseJsonArray(rest), original: text };
}

/** The exec form: a JSON array of strings, else null (shell form). */
export function parseJsonArray(text: string): string[] | null {
  const t = text.trim();
  if (!t.startsWith("[")) return null;
  try {
    const v: unknown = JSON.parse(t);
    if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v;
  } catch {}
  return null;
}

/** Looks a variable up: ENV first, then ARG (undefined: not set). */
export type Lookup = (name: string) => string | undefined;

/**
 * Splits on unquoted whitespace, keeping quotes and escapes in the words: `a="b c" d` → [`a="b c"`,
 * `d`]; expandWord removes them after.
 */
export function splitWords(text: string, esc = "\\"): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === null && /\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
      continue;
    }
    inWord = true;
    cur += c;
    if (c === esc && quote !== "'" && i + 1 < text.length) {
      cur += text[++i];
    } else if (quote === null && (c === "'" || c === '"')) {
      quote = c;
    } else if (c === quote) {
      quote = null;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/**
 * Docker's word processing: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}` (and
 * `-`/`+` without the colon) replaced from `lookup` (unset: empty), single quotes literal, double
 * quotes and the escape character removed.
 */
export function expandWord(word: string, lookup: Lookup, esc = "\\"): string {
  let out = "";
  let i = 0;
  const variable = (): string => {
    // At the character after `$`.
    if (word[i] === "{") {
      const close = matchingBrace(word, i);
      if (close < 0) throw new DockerfileError(`missing '}' in "${word}"`);
      const body = word.slice(i + 1, close);
      i = close + 1;
      const m = /^([a-zA-Z_][a-zA-Z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body);
      if (!m) throw new DockerfileError(`bad substitution \${${body}} in "${word}"`);
      const value = lookup(m[1]!);
      const op = m[2];
      if (op === undefined) return value ?? "";
      const alt = () => expandWord(m[3]!, lookup, esc);
      const set = op.startsWith(":") ? value !== undefined && value !== "" : value !== undefined;
      return op.endsWith("-") ? (set ? value! : alt()) : set ? alt() : "";
    }
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(word.slice(i));
    if (!m) return "$";
    i += m[0].length;
    return lookup(m[0]) ?? "";
  };
  while (i < word.length) {
    const c = word[i++]!;
    if (c === esc) {
      if (i < word.length) out += word[i++];
      continue;
    }
    if (c === "'") {
      const end = word.indexOf("'", i);
      if (end < 0) throw new DockerfileError(`unmatched ' in "${word}"`);
      out += word.slice(i, end);
      i = end + 1;
      continue;
    }
    if (c === '"') {
      while (i < word.length && word[i] !== '"') {
        const d = word[i++]!;
        if (d === esc && i < word.length && /["$`\\]/.test(word[i]!)) out += word[i++];
        else if (d === "$") out += variable();
        else out += d;
      }
      if (i >= word.length) throw new DockerfileError(`unmatched " in "${word}"`);
      i++;
      continue;
    }
    if (c === "$") {
      out += variable();
      continue;
    }
    out += c;
  }
  return out;
}

function matchingBrace(word: string, open: number): number {
  let depth = 0;
  for (let j = open; j < word.length; j++) {
    if (word[j] === "{") depth++;
    else if (word[j] === "}" && --depth === 0) return j;
  }
  return -1;
}

/** Each whitespace-separated word expanded (COPY sources, EXPOSE ports, VOLUME paths, ...). */
export function expandWords(text: string, lookup: Lookup, esc = "\\"): string[] {
  return splitWords(text, esc).map((w) => expandWord(w, lookup, esc));
}

/**
 * ENV and LABEL arguments: `K=V [K2=V2...]` (values expanded, quotes removed), or the legacy
 * `K V with spaces` form (ENV only; one pair, the rest of the line its value).
 */
export function parseKeyValues(
  text: string,
  lookup: Lookup,
  what: "ENV" | "LABEL",
): [string, string][] {
  const words = splitWords(text);
  if (words.length === 0) throw new DockerfileError(`${what} needs at least one KEY=VALUE`);
  if (!words[0]!.includes("=")) {
    if (what === "LABEL" || words.length < 2)
      throw new DockerfileError(`${what} needs KEY=VALUE pairs, got "${text}"`);
    const value = text.trim().slice(words[0]!.length).trim();
    return [[expandWord(words[0]!, lookup), expandWord(value, lookup)]];
  }
  return words.map((w) => {
    const eq = w.indexOf("=");
    if (eq <= 0) throw new DockerfileError(`${what} needs KEY=VALUE, got "${w}"`);
    return [expandWord(w.slice(0, eq), lookup), expandWord(w.slice(eq + 1), lookup)];
  });
}
