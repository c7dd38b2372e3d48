#!/usr/bin/env bun
// One entry point for Pivot's commands, chosen by the name it runs as (argv[0]): the compiled
// program (scripts/build-binary.sh, dist/pivot.bin) is run by its front doors, dist/pivot and
// dist/pivot-runtime, under each command's name. Each command's code is loaded only when that
// command runs.
import { basename } from "node:path";

const name = basename(process.argv0);
if (name === "pivot-runtime" || name.startsWith("pivot-runtime.")) {
  const { main } = await import("../src/cli/runtime.ts");
  process.exitCode = await main(process.argv.slice(2));
} else if (name === "pivot" || name.startsWith("pivot.")) {
  const { main } = await import("../src/cli/engine.ts");
  process.exitCode = await main(process.argv.slice(2));
} else {
  process.stderr.write(
    `${name}: run me as pivot or pivot-runtime (through the front doors pivot and pivot-runtime beside me)\n`,
  );
  process.exitCode = 2;
}
