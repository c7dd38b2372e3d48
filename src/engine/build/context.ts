// The build context: a directory of the user's that a Dockerfile's COPY and ADD read from. Its
// content is untrusted (a cloned repository): sources are resolved inside it only, `..` cannot
// leave it, symlinks are copied as symlinks, never followed out of it, and .dockerignore applies.
import type { Hash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { childProcess } from "../../util/child-process.ts";
import { kindAt, resolveInRoot } from "../root-paths.ts";
import { DockerfileError } from "./dockerfile.ts";

/** .dockerignore: paths relative to the context; `!` lines re-include; the last match wins. */
export class IgnoreRules {
  private readonly rules: { re: RegExp; negate: boolean }[];

  constructor(patterns: string[]) {
    this.rules = patterns.map((p) => {
      const negate = p.startsWith("!");
      const body = posix.normalize((negate ? p.slice(1) : p).trim()).replace(/^\/+|\/+$/g, "");
      return { re: globRegExp(body), negate };
    });
  }

  /** Reads CONTEXT/.dockerignore (none: nothing ignored). */
  static read(context: string): IgnoreRules {
    let text = "";
    try {
      text = readFileSync(join(context, ".dockerignore"), "utf8");
    } catch {}
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
    let ignored = false;
    for (const r of this.rules) {
      // A pattern matching a parent directory matches everything under it.
      for (let k = 1; k <= parts.length; k++) {
        if (r.re.test(parts.slice(0, k).join("/"))) {
          ignored = !r.negate;
          break;
        }
      }
    }
    return ignored;
  }
}

/** A glob (`*`, `?`, `[...]`, `**` across directories) as an anchored regular expression. */
export function globRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      // `**/` matches zero or more directories.
      i++;
      if (glob[i + 1] === "/") {
        i++;
        re += "(?:.*/)?";
      } else re += ".*";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += `[${glob
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else if (c === "\\" && i + 1 < glob.length) re += `\\${glob[++i]}`;
    else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
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
        const re = globRegExp(part);
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

/**
 * A tar stream of NAMES (relative to DIR, listed one by one: no recursion), owned by UID:GID as
 * COPY makes its files (Docker: root unless --chown), symlinks archived as symlinks.
 */
export async function* contextTar(
  dir: string,
  names: string[],
  owner: { uid: number; gid: number },
  /** Fed the archive's bytes: the history's content hash (`COPY file:HASH in /dst`). */
  hash?: Hash,
): AsyncGenerator<Uint8Array> {
  const child = childProcess().spawn(
    "tar",
    [
      "-C",
      dir,
      "--numeric-owner",
      `--owner=${owner.uid}`,
      `--group=${owner.gid}`,
      "--no-recursion",
      "--null",
      "--verbatim-files-from",
      "-T",
      "-",
      "-cf",
      "-",
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  child.stdin.on("error", () => {});
  child.stdin.end(names.map((n) => `${n}\0`).join(""));
  let read = false;
  try {
    for await (const chunk of child.stdout) {
      hash?.update(chunk as Uint8Array);
      yield chunk as Uint8Array;
    }
    read = true;
  } finally {
    // A reader that stopped early (a failed extraction): tar would block on its pipe forever.
    if (!read && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  const code = await closed;
  if (code !== 0)
    throw new DockerfileError(
      `reading the build context failed: ${stderr.trim() || `tar exited with ${code}`}`,
    );
}
