// Benchmark: the start-up of runtime binaries, side by side in one run. Each command here does
// little beyond starting, parsing its arguments and answering, so its time is the fixed cost that
// each of containerd's and conmon's several runtime invocations per container pays.
//
//   bun bench/startup.ts [--runs N] [--warmup N] [--bin NAME=PATH]... [--out FILE]
//
// Arms: crun and runc (when installed), every --bin (a pivot-runtime binary or a link to the
// multicall binary named pivot-runtime; default: this checkout's dist/pivot-runtime), and two
// floors, compiled here with scripts/build-binary.sh's flags: bun-empty, a program that does
// nothing, and bun-builtins, one that only loads node:fs and node:path, which every
// pivot-runtime command needs (they ignore their arguments). Each floor runs twice: as compiled,
// and with JavaScriptCore's JIT off (`-nojit`), as pivot-runtime's front door runs Pivot's
// program: the floor of any pivot-runtime command. Commands:
//   version  `--version`
//   state    `state ID` of a container that does not exist (its error path)
//   list     `list` of an empty --root
// Arms and commands are shuffled in every round. Reports the median wall and cpu (user+sys, from
// wait4's rusage via bench/measure.c) per arm and command, and ratios to crun.
// A script, never a timed test: the numbers depend on the machine and its load.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BUN,
  buildMeasure,
  f1,
  f2,
  loadAverage,
  machineFacts,
  median,
  must,
  parseSamples,
  REPO,
  run,
  type Sample,
  shuffle,
  version,
} from "./common.ts";

const COMMANDS = {
  version: ["--version"],
  state: ["state", "pivot-bench-missing"],
  list: ["list"],
} as const;
type Command = keyof typeof COMMANDS;

interface Arm {
  name: string;
  path: string;
  /** Added to the environment (the -nojit floors). */
  env?: Record<string, string>;
}

function usage(): never {
  process.stderr.write(
    "usage: bun bench/startup.ts [--runs N] [--warmup N] [--bin NAME=PATH]... [--out FILE]\n",
  );
  process.exit(2);
}

function parseCli(argv: string[]) {
  let runs = 40;
  let warmup = 3;
  let out: string | undefined;
  const bins: Arm[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage();
    i++;
    if (flag === "--runs") runs = Number(value);
    else if (flag === "--warmup") warmup = Number(value);
    else if (flag === "--out") out = value;
    else if (flag === "--bin") {
      const eq = value.indexOf("=");
      if (eq <= 0) usage();
      bins.push({ name: value.slice(0, eq), path: value.slice(eq + 1) });
    } else usage();
  }
  if (!(runs > 0) || !(warmup >= 0)) usage();
  if (bins.length === 0) bins.push({ name: "pivot", path: join(REPO, "dist/pivot-runtime") });
  return { runs, warmup, out, bins };
}

function main(): void {
  const { runs, warmup, out, bins } = parseCli(process.argv.slice(2));
  const arms: Arm[] = [];
  for (const peer of ["runc", "crun"]) {
    const found = run("sh", ["-c", `command -v ${peer}`]).stdout.trim();
    if (found) arms.push({ name: peer, path: found });
  }
  for (const bin of bins) {
    if (!existsSync(bin.path))
      throw new Error(`bench: ${bin.path} does not exist (build it first)`);
    arms.push(bin);
  }
  const work = mkdtempSync(join(tmpdir(), "pivot-bench-startup-"));
  try {
    arms.push(...buildFloors(work));
    const measure = buildMeasure(work);
    const samples = new Map<string, Sample[]>();
    const loads: number[] = [];
    for (let round = 0; round < warmup + runs; round++) {
      loads.push(loadAverage());
      const jobs = shuffle(
        arms.flatMap((arm) =>
          (Object.keys(COMMANDS) as Command[]).map((command) => ({ arm, command })),
        ),
      );
      for (const { arm, command } of jobs) {
        // Each arm gets its own empty --root; the commands never create anything in it.
        const root = join(work, `root-${arm.name}`);
        const args =
          command === "version" ? [...COMMANDS[command]] : ["--root", root, ...COMMANDS[command]];
        const r = run(
          measure,
          [join(work, "pid"), join(work, "err"), arm.path, ...args],
          arm.env ? { env: { ...process.env, ...arm.env } } : {},
        );
        const [sample] = parseSamples(r.stdout);
        if (!sample)
          throw new Error(`bench: measure printed nothing for ${arm.name} ${command}: ${r.stderr}`);
        if (round < warmup) continue;
        const key = `${arm.name} ${command}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
      }
    }
    const report = formatReport(arms, samples, loads, runs, warmup);
    process.stdout.write(report);
    if (out) writeFileSync(out, report);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The two floor programs (see the top), compiled into WORK. */
function buildFloors(work: string): Arm[] {
  const sources: Record<string, string> = {
    "bun-empty": "process.exitCode = 0;\n",
    "bun-builtins": [
      'import { readFileSync } from "node:fs";',
      'import { join } from "node:path";',
      "if (process.argv.length > 99) console.log(readFileSync, join);",
      "",
    ].join("\n"),
  };
  return Object.entries(sources).flatMap(([name, source]) => {
    const entry = join(work, `${name}.ts`);
    const path = join(work, name);
    writeFileSync(entry, source);
    // As scripts/build-binary.sh compiles Pivot.
    must(BUN, [
      "build",
      entry,
      "--compile",
      "--bytecode",
      "--format=esm",
      "--no-compile-autoload-dotenv",
      "--no-compile-autoload-bunfig",
      "--outfile",
      path,
    ]);
    return [
      { name, path },
      { name: `${name}-nojit`, path, env: { BUN_JSC_useJIT: "0" } },
    ];
  });
}

function formatReport(
  arms: Arm[],
  samples: Map<string, Sample[]>,
  loads: number[],
  runs: number,
  warmup: number,
): string {
  const wall = (key: string) => median((samples.get(key) ?? []).map((s) => s.wallNs / 1e6));
  const cpu = (key: string) =>
    median((samples.get(key) ?? []).map((s) => (s.userUs + s.sysUs) / 1e3));
  const lines = [
    ...machineFacts(loads),
    `versions: ${arms.map((a) => `${a.name} = ${a.path} (${version(a.path, ["--version"])})`).join("; ")}`,
    `runs: ${runs} per arm and command (+${warmup} warm-up), shuffled in every round`,
    "",
    "| arm | command | wall ms | cpu ms | wall ÷ crun | cpu ÷ crun |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const command of Object.keys(COMMANDS) as Command[]) {
    for (const arm of arms) {
      const key = `${arm.name} ${command}`;
      const crunKey = `crun ${command}`;
      const ratio = (f: (k: string) => number) =>
        samples.has(crunKey) ? f2(f(key) / f(crunKey)) : "–";
      lines.push(
        `| ${arm.name} | ${command} | ${f1(wall(key))} | ${f1(cpu(key))} | ${ratio(wall)} | ${ratio(cpu)} |`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

main();
