// node:child_process, loaded on first use. Under Bun, importing it costs several milliseconds of
// start-up (it brings in the stream machinery), which commands that start no process
// (state, start, delete, kill, ...) should not pay.
import { createRequire } from "node:module";

let loaded: typeof import("node:child_process") | undefined;

export function childProcess(): typeof import("node:child_process") {
  loaded ??= createRequire(import.meta.url)(
    "node:child_process",
  ) as typeof import("node:child_process");
  return loaded;
}
