// `pivot build`: the command line of Engine.build, as `docker build` (the classic builder's output).
import { readFileSync } from "node:fs";
import { BuildError } from "../engine/build/builder.ts";
import { DockerfileError } from "../engine/build/dockerfile.ts";
import type { Engine } from "../engine/engine.ts";
import { formatError } from "../errors.ts";
import { boolFlag, type FlagSpec, flag, parseArgs, UsageError } from "./args.ts";
import { writeErr, writeOut } from "./output.ts";

const BUILD_FLAGS: FlagSpec[] = [
  { name: "tag", aliases: ["t"], value: true, multiple: true },
  { name: "file", aliases: ["f"], value: true },
  { name: "build-arg", value: true, multiple: true },
  { name: "network", value: true },
  { name: "quiet", aliases: ["q"] },
  { name: "target", value: true },
  { name: "no-cache" },
  { name: "help" },
  // Accepted for docker's command lines: intermediate containers are always removed.
  { name: "rm" },
  { name: "force-rm" },
];

const USAGE =
  "usage: pivot build [-t NAME[:TAG]]... [-f DOCKERFILE|-] [--build-arg K=V]... [--target STAGE] [--network bridge|none|host|NAME] [--no-cache] [-q] CONTEXT";

export async function buildCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parseArgs(args, BUILD_FLAGS, 1);
  if (boolFlag(p, "help")) {
    writeOut(`${USAGE}\n`);
    return 0;
  }
  const context = p.positionals[0];
  if (context === undefined || p.rest.length > 0) throw new UsageError(USAGE);
  if (context === "-" || /^[a-z]+:\/\//i.test(context))
    throw new UsageError(`pivot build reads a local directory as the context, not ${context}`, {
      hint: "give the path of the directory holding the Dockerfile (pivot build -t app .)",
    });
  const buildArgs: Record<string, string> = {};
  for (const a of p.flags.get("build-arg") ?? []) {
    const eq = a.indexOf("=");
    // A bare NAME takes this process's value, as docker does (and is skipped when unset).
    if (eq < 0) {
      const v = process.env[a];
      if (v !== undefined) buildArgs[a] = v;
    } else buildArgs[a.slice(0, eq)] = a.slice(eq + 1);
  }
  const quiet = boolFlag(p, "quiet");
  const file = flag(p, "file");
  const network = flag(p, "network");
  const target = flag(p, "target");
  const tags = p.flags.get("tag") ?? [];
  // Ctrl-C: the running RUN is killed and everything the build made is removed before exiting.
  const cancel = new AbortController();
  let signalled: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled === null) writeErr("\ncancelling the build: removing what it made...\n");
    signalled ??= sig;
    cancel.abort();
  };
  const sigs: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of sigs) process.on(s, onSignal);
  try {
    const image = await engine.build({
      context,
      ...(file === "-"
        ? { dockerfileText: readFileSync(0, "utf8") }
        : file !== undefined
          ? { dockerfile: file }
          : {}),
      ...(tags.length > 0 ? { tag: tags } : {}),
      buildArgs,
      ...(network !== undefined ? { network } : {}),
      ...(target !== undefined ? { target } : {}),
      ...(boolFlag(p, "no-cache") ? { noCache: true } : {}),
      quiet,
      onOutput: writeOut,
      signal: cancel.signal,
    });
    if (quiet) writeOut(`${image.id}\n`);
    return 0;
  } catch (err) {
    if (signalled !== null) {
      writeErr("the build was cancelled\n");
      return signalled === "SIGINT" ? 130 : 143;
    }
    // The Dockerfile's own failures (a RUN's exit, a bad instruction) exit 1, as docker build's.
    if (err instanceof BuildError || err instanceof DockerfileError) {
      writeErr(`pivot: ${formatError(err)}\n`);
      return 1;
    }
    throw err;
  } finally {
    for (const s of sigs) process.off(s, onSignal);
  }
}
