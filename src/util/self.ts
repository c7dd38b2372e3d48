// How Pivot runs itself: from the TypeScript sources under Bun (or Node), or as the compiled
// single binary (scripts/build-binary.sh), where import.meta.url is virtual (/$bunfs/...) and
// process.execPath is the binary, which serves each command by the name it runs as.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

/** The compiled binary's path, or null when running from the sources. */
export function compiledBinary(): string | null {
  return import.meta.url.includes("/$bunfs/") || import.meta.url.includes("/~BUN/")
    ? process.execPath
    : null;
}

/**
 * The command that runs Pivot's command NAME (e.g. "pivot-runtime") with the compiled binary: its
 * link of that name beside it (build-binary.sh makes them), else NAME on PATH.
 */
export function compiledCommand(binary: string, name: string): string {
  const beside = join(dirname(binary), name);
  return existsSync(beside) ? beside : name;
}
