// pivot ps (--filter, --format), stats, top, rename, pause/unpause, container prune, volume
// prune: Docker's flags and output, over the Engine.

import { createInterface } from "node:readline";
import type { Engine } from "../engine/engine.ts";
import {
  filtersNeedAll,
  humanSize,
  matchesFilters,
  PS_DEFAULT_FORMAT,
  PS_FIELDS,
  parseFilters,
  parseTemplate,
  psFields,
  renderTemplate,
  STATS_DEFAULT_FORMAT,
  STATS_TITLES,
  statsFields,
} from "../engine/listing.ts";
import type { StatsSample } from "../engine/types.ts";
import { formatError } from "../errors.ts";
import { tty } from "../util/lazy-require.ts";
import { boolFlag, type FlagSpec, flag, type Parsed, parseArgs, UsageError } from "./args.ts";
import { writeErr, writeOut } from "./output.ts";
import { RESOURCE_FLAGS, resourceOptions } from "./resource-flags.ts";

export { CONTAINER_USAGE } from "./command-groups.ts";

/** Parses flags; combined short boolean flags (-aq) are split first, as Docker does. */
function parse(args: string[], specs: FlagSpec[], positionals = Number.POSITIVE_INFINITY): Parsed {
  const bools = new Set(specs.filter((s) => !s.value).flatMap((s) => s.aliases ?? []));
  const out: string[] = [];
  for (const [i, w] of args.entries()) {
    if (w === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (/^-[A-Za-z]{2,}$/.test(w) && [...w.slice(1)].every((c) => bools.has(c)))
      out.push(...[...w.slice(1)].map((c) => `-${c}`));
    else out.push(w);
  }
  return parseArgs(out, specs, positionals);
}

function multi(p: Parsed, name: string): string[] {
  return p.flags.get(name) ?? [];
}

function all(p: Parsed): string[] {
  return [...p.positionals, ...p.rest];
}

/** `ps`: Docker's filters and format. */
export async function psCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [
    { name: "all", aliases: ["a"] },
    { name: "quiet", aliases: ["q"] },
    { name: "no-trunc" },
    { name: "filter", aliases: ["f"], value: true, multiple: true },
    { name: "format", value: true },
    { name: "last", aliases: ["n"], value: true },
    { name: "latest", aliases: ["l"] },
  ]);
  const filters = parseFilters(multi(p, "filter"));
  const showAll = boolFlag(p, "all") || filtersNeedAll(filters);
  const everything = await engine.list({ all: true });
  let list = everything.filter(
    (c) => (showAll || c.state.running) && matchesFilters(c, filters, everything),
  );
  const last = flag(p, "last");
  if (last !== undefined) list = everything.slice(0, Number(last));
  if (boolFlag(p, "latest")) list = everything.slice(0, 1);
  const trunc = !boolFlag(p, "no-trunc");
  if (boolFlag(p, "quiet")) {
    for (const c of list) writeOut(`${trunc ? c.id.slice(0, 12) : c.id}\n`);
    return 0;
  }
  const tpl = parseTemplate(flag(p, "format") ?? PS_DEFAULT_FORMAT, PS_FIELDS);
  const now = Date.now();
  writeOut(
    renderTemplate(
      tpl,
      list.map((c) => ({ fields: psFields(c, { trunc, now }), labels: c.labels })),
      PS_FIELDS,
    ),
  );
  return 0;
}

/** `stats`: a table refreshed every second until interrupted, or one reading (--no-stream). */
export async function statsCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [
    { name: "no-stream" },
    { name: "all", aliases: ["a"] },
    { name: "no-trunc" },
    { name: "format", value: true },
  ]);
  const named = all(p);
  const tpl = parseTemplate(flag(p, "format") ?? STATS_DEFAULT_FORMAT, STATS_TITLES);
  const pick = async () => {
    if (named.length) return named.map((r) => engine.resolveId(r));
    const list = await engine.list({ all: boolFlag(p, "all") });
    return list.map((c) => c.id);
  };
  const previous = new Map<string, StatsSample>();
  const readAll = async () => {
    const out: { prev: StatsSample | null; cur: StatsSample }[] = [];
    for (const id of await pick()) {
      let cur: StatsSample;
      try {
        cur = engine.stats(id);
      } catch (err) {
        if (named.length) throw err;
        continue; // removed meanwhile
      }
      out.push({ prev: previous.get(id) ?? null, cur });
      previous.set(id, cur);
    }
    return out;
  };
  const render = (rows: { prev: StatsSample | null; cur: StatsSample }[]) =>
    renderTemplate(
      tpl,
      rows.map((r) => ({ fields: statsFields(r.prev, r.cur) })),
      STATS_TITLES,
    );
  // CPU % needs two readings: the first is taken half a second before the one shown.
  await readAll();
  await new Promise((r) => setTimeout(r, 500));
  if (boolFlag(p, "no-stream")) {
    writeOut(render(await readAll()));
    return 0;
  }
  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    while (!stop) {
      const text = render(await readAll());
      // Clear the screen and write the table at the top, as docker stats does.
      writeOut(tty().isatty(1) ? `\x1b[2J\x1b[H${text}` : text);
      for (let i = 0; i < 10 && !stop; i++) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}

/** `top CONTAINER [ps options]`. */
export function topCommand(engine: Engine, args: string[]): number {
  const [ref, ...psArgs] = args;
  if (!ref) throw new UsageError("usage: pivot top CONTAINER [PS OPTIONS]");
  const r = engine.top(ref, psArgs.length ? psArgs : undefined);
  const lines = [r.titles.join("\t"), ...r.processes.map((row) => row.join("\t"))];
  const cells = lines.map((l) => l.split("\t"));
  const widths = r.titles.map((_, i) => Math.max(...cells.map((c) => (c[i] ?? "").length)));
  for (const row of cells) {
    writeOut(
      `${row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i]! + 4) : c)).join("")}\n`,
    );
  }
  return 0;
}

export async function renameCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [], 2);
  const [ref, name] = p.positionals;
  if (!ref || !name) throw new UsageError("usage: pivot rename CONTAINER NEW_NAME");
  await engine.rename(ref, name);
  return 0;
}

/** `update [flags] CONTAINER...`: limits and the restart policy, as `docker update`. */
export async function updateCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, RESOURCE_FLAGS);
  const refs = all(p);
  if (refs.length === 0) throw new UsageError("update needs at least one container");
  const changes = resourceOptions(p);
  let failed = 0;
  for (const ref of refs) {
    try {
      await engine.update(ref, changes);
      writeOut(`${ref}\n`);
    } catch (err) {
      writeErr(`pivot: ${formatError(err)}\n`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

export function pauseCommand(engine: Engine, command: "pause" | "unpause", args: string[]) {
  const refs = all(parse(args, []));
  if (refs.length === 0) throw new UsageError(`${command} needs at least one container`);
  let failed = 0;
  for (const ref of refs) {
    try {
      if (command === "pause") engine.pause(ref);
      else engine.unpause(ref);
      writeOut(`${ref}\n`);
    } catch (err) {
      writeErr(`pivot: ${formatError(err)}\n`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

/** Docker's confirmation before pruning, unless -f. */
export async function confirm(warning: string): Promise<boolean> {
  writeOut(`WARNING! ${warning}\nAre you sure you want to continue? [y/N] `);
  const rl = createInterface({ input: process.stdin });
  const line = await new Promise<string>((res) => {
    rl.once("line", res);
    rl.once("close", () => res(""));
  });
  rl.close();
  return /^y(es)?$/i.test(line.trim());
}

function labelFilter(p: Parsed): (labels: Record<string, string>) => boolean {
  const filters = multi(p, "filter").map((f) => {
    const m = /^label(!?)=(.*)$/.exec(f);
    if (!m) {
      throw new UsageError(`invalid filter "${f}"`, {
        hint: "prune filters: label=KEY, label=KEY=VALUE, label!=KEY",
      });
    }
    const eq = m[2]!.indexOf("=");
    const key = eq < 0 ? m[2]! : m[2]!.slice(0, eq);
    const value = eq < 0 ? null : m[2]!.slice(eq + 1);
    return { negate: m[1] === "!", key, value };
  });
  return (labels) =>
    filters.every((f) => {
      const has = f.key in labels && (f.value === null || labels[f.key] === f.value);
      return f.negate ? !has : has;
    });
}

/** `container prune`. */
export async function containerPruneCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [
    { name: "force", aliases: ["f"] },
    { name: "filter", value: true, multiple: true },
  ]);
  const match = labelFilter(p);
  if (!boolFlag(p, "force") && !(await confirm("This will remove all stopped containers.")))
    return 0;
  const r = await engine.prune((c) => match(c.labels));
  if (r.removed.length) writeOut(`Deleted Containers:\n${r.removed.join("\n")}\n\n`);
  writeOut(`Total reclaimed space: ${humanSize(r.reclaimed)}\n`);
  return 0;
}

/**
 * `system prune [-a] [--volumes] [-f]`: stopped containers, networks no container uses, dangling
 * images and build cache (-a: every image no container uses, all the build cache) and, with
 * --volumes, unused anonymous volumes.
 */
export async function systemPruneCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [
    { name: "all", aliases: ["a"] },
    { name: "volumes" },
    { name: "force", aliases: ["f"] },
  ]);
  const every = boolFlag(p, "all");
  const volumes = boolFlag(p, "volumes");
  const what = [
    "all stopped containers",
    "all networks not used by at least one container",
    ...(volumes ? ["all anonymous volumes not used by at least one container"] : []),
    every ? "all images without at least one container associated to them" : "all dangling images",
    every ? "all build cache" : "all dangling build cache",
  ];
  if (!boolFlag(p, "force") && !(await confirm(`This will remove:\n  - ${what.join("\n  - ")}\n`)))
    return 0;
  const removed = await engine.prune();
  if (removed.removed.length) writeOut(`Deleted Containers:\n${removed.removed.join("\n")}\n\n`);
  const networks = await engine.networks.pruneNetworks();
  if (networks.length) writeOut(`Deleted Networks:\n${networks.join("\n")}\n\n`);
  let reclaimed = removed.reclaimed;
  if (volumes) {
    const v = engine.pruneVolumes({ all: false });
    if (v.removed.length) writeOut(`Deleted Volumes:\n${v.removed.join("\n")}\n\n`);
    reclaimed += v.reclaimed;
  }
  const { pruneImages } = await import("../engine/images.ts");
  // The build cache as Docker's: -a all of it, else the dangling records (those no kept image
  // was built through).
  const images = await pruneImages(engine, { all: every, buildCache: "dangling" });
  if (images.deleted.length)
    writeOut(`Deleted Images:\n${images.deleted.map((d) => d.id).join("\n")}\n\n`);
  if (images.buildCache.length)
    writeOut(`Deleted build cache objects:\n${images.buildCache.join("\n")}\n\n`);
  reclaimed += images.gc.freed;
  writeOut(`Total reclaimed space: ${humanSize(reclaimed)}\n`);
  return 0;
}

/** `volume prune`. */
export async function volumePruneCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parse(args, [
    { name: "force", aliases: ["f"] },
    { name: "all", aliases: ["a"] },
    { name: "filter", value: true, multiple: true },
  ]);
  const match = labelFilter(p);
  const every = boolFlag(p, "all");
  if (
    !boolFlag(p, "force") &&
    !(await confirm(
      every
        ? "This will remove all local volumes not used by at least one container."
        : "This will remove anonymous local volumes not used by at least one container.",
    ))
  )
    return 0;
  const r = engine.pruneVolumes({ all: every, filter: (v) => match(v.labels) });
  if (r.removed.length) writeOut(`Deleted Volumes:\n${r.removed.join("\n")}\n\n`);
  writeOut(`Total reclaimed space: ${humanSize(r.reclaimed)}\n`);
  return 0;
}
