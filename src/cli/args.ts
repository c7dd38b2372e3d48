// A small command-line parser with runc's conventions: --flag value, --flag=value, -f value,
// single-dash long flags (-bundle), repeated flags, and "--" ending the flags.
import { PivotError } from "../errors.ts";

export interface FlagSpec {
  /** Long name without dashes, e.g. "bundle". */
  name: string;
  /** Short or alternative names, e.g. ["b"]. */
  aliases?: string[];
  /** Takes a value (otherwise a boolean). */
  value?: boolean;
  /** May repeat; values are collected. */
  multiple?: boolean;
}

export interface Parsed {
  flags: Map<string, string[]>;
  positionals: string[];
  /** Everything after "--", or after the positionals when stopAfter is reached. */
  rest: string[];
}

export class UsageError extends PivotError {}

/**
 * Parses argv. Flags may come before or between positionals; once `stopAfter` positionals
 * are read, the remaining words are `rest` untouched (exec's command and its own flags).
 */
export function parseArgs(
  argv: readonly string[],
  specs: readonly FlagSpec[],
  stopAfter = Number.POSITIVE_INFINITY,
): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(s.name, s);
    for (const a of s.aliases ?? []) byName.set(a, s);
  }
  const flags = new Map<string, string[]>();
  const positionals: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const word = argv[i]!;
    if (positionals.length >= stopAfter) break;
    if (word === "--") {
      i++;
      break;
    }
    if (word.startsWith("-") && word !== "-") {
      const body = word.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const name = eq >= 0 ? body.slice(0, eq) : body;
      const spec = byName.get(name);
      if (!spec) throw new UsageError(`unknown flag ${word}`);
      let value: string;
      if (spec.value) {
        if (eq >= 0) value = body.slice(eq + 1);
        else {
          if (i + 1 >= argv.length) throw new UsageError(`flag ${word} needs a value`);
          value = argv[++i]!;
        }
      } else {
        value = eq >= 0 ? body.slice(eq + 1) : "true";
      }
      const list = flags.get(spec.name) ?? [];
      if (!spec.multiple) list.length = 0;
      list.push(value);
      flags.set(spec.name, list);
      continue;
    }
    positionals.push(word);
  }
  return { flags, positionals, rest: argv.slice(i) };
}

export function flag(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return v ? v[v.length - 1] : undefined;
}

export function boolFlag(p: Parsed, name: string): boolean {
  const v = flag(p, name);
  return v !== undefined && v !== "false" && v !== "0";
}

export function intFlag(p: Parsed, name: string): number | undefined {
  const v = flag(p, name);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new UsageError(`flag --${name} needs a whole number, got "${v}"`);
  return Number(v);
}
