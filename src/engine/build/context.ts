// The build context: a directory of the user's that a Dockerfile's COPY and ADD read from. Its
// content is untrusted (a cloned repository): sources are resolved inside it only, `..` cannot
// leave it, symlinks are copied as symlinks, never followed out of it, and .dockerignore applies.
import { lstatSync, readdirSync } from "node:fs";
import { join, posix } from "node:path";
import { kindAt, readFileInRoot, resolveInRoot } from "../root-paths.ts";
import { DockerfileError } from "./dockerfile.ts";

/** .dockerignore: paths relative to the context; `!` lines re-include; the last match wins. */
export class IgnoreRules {
  private readonly rules: { re: Glob; negate: boolean }[];

  constructor(patterns: string[]) {
    this.rules = patterns.map((p) => {
      const negate = p.startsWith("!");
      const body = posix.normalize((negate ? p.slice(1) : p).trim()).replace(/^\/+|\/+$/g, "");
      return { re: globMatcher(body), negate };
    });
  }

  /** Reads CONTEXT/.dockerignore (none: nothing ignored). */
  static read(context: string): IgnoreRules {
    const text = readContextFile(context, ".dockerignore") ?? "";
    const lines = text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    return new IgnoreRules(lines);
  }

  get hasExceptions(): boolean {
    return this.rules.some((r) => r.negate);
  }

  /** Whether REL (relative to the context, no leading slash) is left out, or a parent of it. */
  ignores(rel: string): boolean {
    const parts = rel.split("/");
    const prefixes = parts.map((_, k) => parts.slice(0, k + 1).join("/"));
    let ignored = false;
    for (const r of this.rules) {
      // A pattern matching a parent directory matches everything under it.
      for (const prefix of prefixes) {
        if (r.re.test(prefix)) {
          ignored = !r.negate;
          break;
        }
      }
    }
    return ignored;
  }
}

/**
 * The context's file NAME (.dockerignore, the Dockerfile), null when there is none. Symlinks on
 * the way resolve inside the context, never onto the host; only a regular file is read, through
 * O_NOFOLLOW|O_NONBLOCK descriptors: a fifo would block the build for ever, a device (a link to
 * /dev/zero) be read until memory runs out.
 */
export function readContextFile(context: string, name: string): string | null {
  const host = resolveInRoot(context, `/${name}`, true);
  const kind = kindAt(host);
  if (kind === null) return null;
  const text = kind === "file" ? readFileInRoot(context, host.slice(context.length)) : undefined;
  if (text === undefined)
    throw new DockerfileError(`${name} is not a regular file of the build context (${kind})`, {
      hint: `make ${name} a file of at most 16 MiB (a symlink to one in the build context)`,
    });
  return text;
}

/** A glob matcher: `test(path)` says whether the whole of PATH matches. */
export interface Glob {
  test(path: string): boolean;
}

/** A glob's tokens: a character (a literal's code, else a test), `*`, `**`, `**` + `/`. */
type GlobToken =
  | { t: "char"; code: number; match: ((c: string) => boolean) | null }
  /** `*`: any run of characters but `/`; `**`: any run; `**` + `/`: nothing, or anything ending in `/`. */
  | { t: "star" | "any" | "dirs" };

const SLASH = 0x2f;

/**
 * A glob (`*`, `?`, `[...]`, `**` across directories) as a matcher of whole paths. The patterns
 * are the untrusted repository's (.dockerignore, COPY's wildcards): they are matched by stepping
 * the set of positions in the pattern through the path, in time linear in both, never by a
 * backtracking regular expression (`*a*a*a*a*a*a*a*ab` against a long name would run for ages).
 */
export function globMatcher(glob: string): Glob {
  const tokens: GlobToken[] = [];
  const literal = (ch: string): GlobToken => ({ t: "char", code: ch.charCodeAt(0), match: null });
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      i++;
      if (glob[i + 1] === "/") {
        i++;
        tokens.push({ t: "dirs" });
      } else tokens.push({ t: "any" });
    } else if (c === "*") tokens.push({ t: "star" });
    else if (c === "?") tokens.push({ t: "char", code: -1, match: (ch) => ch !== "/" });
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) tokens.push(literal("["));
      else {
        tokens.push({ t: "char", code: -1, match: charClass(glob.slice(i + 1, end)) });
        i = end;
      }
    } else if (c === "\\" && i + 1 < glob.length) tokens.push(literal(glob[++i]!));
    else tokens.push(literal(c));
  }
  // No wildcard: a plain comparison.
  if (tokens.every((t) => t.t === "char" && t.match === null)) {
    const plain = tokens.map((t) => String.fromCharCode(t.t === "char" ? t.code : 0)).join("");
    return { test: (path) => path === plain };
  }
  // The positions so far and next (each at most once: `seen` holds the generation that added it).
  const size = tokens.length + 1;
  let cur = new Int32Array(size);
  let next = new Int32Array(size);
  const seen = new Uint32Array(size);
  let gen = 0;
  // Adds position K to LIST (of length LEN), and those reachable from it without a character.
  const add = (list: Int32Array, len: number, k: number): number => {
    for (; k < size && seen[k] !== gen; k++) {
      seen[k] = gen;
      list[len++] = k;
      if (k === tokens.length || tokens[k]!.t === "char") break;
    }
    return len;
  };
  const step = () => {
    if (++gen === 0xffffffff) {
      seen.fill(0);
      gen = 1;
    }
  };
  return {
    test(path: string): boolean {
      step();
      let len = add(cur, 0, 0);
      for (let i = 0; i < path.length; i++) {
        const code = path.charCodeAt(i);
        step();
        let n = 0;
        for (let j = 0; j < len; j++) {
          const k = cur[j]!;
          const tok = tokens[k];
          if (tok === undefined) continue;
          if (tok.t === "char") {
            if (tok.match === null ? tok.code === code : tok.match(path[i]!))
              n = add(next, n, k + 1);
          } else if (tok.t === "any") n = add(next, n, k);
          else if (tok.t === "star") {
            if (code !== SLASH) n = add(next, n, k);
          } else {
            n = add(next, n, k);
            if (code === SLASH) n = add(next, n, k + 1);
          }
        }
        if (n === 0) return false;
        [cur, next] = [next, cur];
        len = n;
      }
      for (let j = 0; j < len; j++) if (cur[j] === tokens.length) return true;
      return false;
    },
  };
}

/** A `[...]` class's content (`!` or `^` first negates, `a-z` ranges, `\\` escapes): never `/`. */
function charClass(body: string): (c: string) => boolean {
  const negate = body.startsWith("!") || body.startsWith("^");
  const chars = [...(negate ? body.slice(1) : body)];
  const ranges: [string, string][] = [];
  for (let i = 0; i < chars.length; i++) {
    let lo = chars[i]!;
    if (lo === "\\" && i + 1 < chars.length) lo = chars[++i]!;
    let hi = lo;
    if (chars[i + 1] === "-" && i + 2 < chars.length) {
      hi = chars[i + 2]!;
      if (hi === "\\" && i + 3 < chars.length) hi = chars[++i + 2]!;
      i += 2;
    }
    ranges.push([lo, hi]);
  }
  return (c) => c !== "/" && ranges.some(([lo, hi]) => c >= lo && c <= hi) !== negate;
}

export interface ContextSource {
  /** Relative to the context ("" is the context itself). */
  rel: string;
  kind: "dir" | "file" | "symlink" | "other";
}

/**
 * The sources a COPY or ADD names (wildcards allowed), inside the context: `..` may not leave it,
 * symlinks on the way resolve inside it (as in a container's root), a source that is itself a
 * symlink is copied as the link.
 */
export function resolveSources(
  context: string,
  source: string,
  ignore: IgnoreRules,
  where: string,
  /** What CONTEXT is, for messages: "the build context", "--from=builder". */
  rootName = "the build context",
): ContextSource[] {
  const clean = posix.normalize(`/${source}`);
  if (posix.normalize(source).split("/")[0] === "..") {
    throw new DockerfileError(`${where}: forbidden path outside the build context: ${source}`, {
      hint: "COPY and ADD read only the files under the build context directory",
    });
  }
  const wildcard = /[*?[]/.test(clean);
  const found: ContextSource[] = [];
  if (!wildcard) {
    const host = resolveInRoot(context, clean, false);
    const rel = host.slice(context.length).replace(/^\/+/, "");
    const kind = kindAt(host);
    if (kind !== null && (rel === "" || !ignore.ignores(rel))) found.push({ rel, kind });
  } else {
    // Each component matched in turn against the directory so far.
    let dirs = [""];
    const parts = clean.split("/").filter((p) => p !== "");
    parts.forEach((part, idx) => {
      const last = idx === parts.length - 1;
      const next: string[] = [];
      for (const d of dirs) {
        const host = resolveInRoot(context, `/${d}`, true);
        let names: string[] = [];
        try {
          names = /[*?[]/.test(part) ? readdirSync(host).sort() : [part];
        } catch {}
        const re = globMatcher(part);
        for (const n of names) {
          if (!re.test(n)) continue;
          const rel = d ? `${d}/${n}` : n;
          const at = resolveInRoot(context, `/${rel}`, !last);
          const relAt = at.slice(context.length).replace(/^\/+/, "");
          const kind = kindAt(at);
          if (kind === null || ignore.ignores(relAt)) continue;
          if (last) found.push({ rel: relAt, kind });
          else if (kind === "dir") next.push(relAt);
        }
      }
      dirs = next;
    });
  }
  if (found.length === 0) {
    throw new DockerfileError(
      `${where}: ${source}: no such file or directory in ${rootName}${wildcard ? " (no file matches)" : ""}`,
      {
        hint:
          rootName === "the build context"
            ? "give a path relative to the build context directory (and not left out by .dockerignore)"
            : `give a path that exists in ${rootName}`,
      },
    );
  }
  return found;
}

/**
 * The entries under the context directory REL, relative to it (depth first, parents before
 * children), without what .dockerignore leaves out; symlinks are listed, never followed.
 */
export function listTree(context: string, rel: string, ignore: IgnoreRules): string[] {
  const out: string[] = [];
  const walk = (sub: string) => {
    const dir = join(context, rel, sub);
    for (const n of readdirSync(dir).sort()) {
      const child = sub ? `${sub}/${n}` : n;
      const fromContext = rel ? `${rel}/${child}` : child;
      const isDir = lstatSync(join(dir, n)).isDirectory();
      if (ignore.ignores(fromContext)) {
        // A directory left out may hold a `!` exception.
        if (!isDir || !ignore.hasExceptions) continue;
        const before = out.length;
        walk(child);
        if (out.length > before) out.splice(before, 0, child);
        continue;
      }
      out.push(child);
      if (isDir) walk(child);
    }
  };
  walk("");
  return out;
}
