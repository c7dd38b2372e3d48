// Image commands of the engine CLI: images, image inspect/ls/rm/prune/tag/save/load/import, tag,
// rmi, load, save, import, system df and info.

import { createWriteStream, readFileSync } from "node:fs";
import { mkdtemp, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Engine } from "../engine/engine.ts";
import {
  collectEngineGarbage,
  imageUsage,
  inspectImage,
  pruneBuilder,
  pruneImages,
  removeImage,
  systemDf,
} from "../engine/images.ts";
import { isRootlessEngine } from "../engine/rootless.ts";
import { formatError } from "../errors.ts";
import { importRootfs } from "../image/create.ts";
import { imageSize, layerSize } from "../image/gc.ts";
import { imageHistory } from "../image/history.ts";
import { loadImages } from "../image/load.ts";
import { rootfsDriver } from "../image/overlay.ts";
import { familiarString, parseReference } from "../image/reference.ts";
import { resolveSaveItems, type SaveFormat, saveImages } from "../image/save.ts";
import { parseIdMap } from "../runtime/userns.ts";
import { tty } from "../util/lazy-require.ts";
import { boolFlag, type FlagSpec, flag, type Parsed, parseArgs, UsageError } from "./args.ts";
import { renderInspect } from "./inspect-format.ts";
import { writeErr, writeOut } from "./output.ts";

/** Docker's sizes: decimal units, 4 significant digits (4.261MB). */
export function humanSize(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

function ago(iso: string | null | undefined): string {
  if (!iso) return "N/A";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (Number.isNaN(s)) return "N/A";
  if (s < 60) return `${s} second${s === 1 ? "" : "s"} ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? "" : "s"} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? "" : "s"} ago`;
  const d = Math.round(h / 24);
  if (d < 14) return `${d} days ago`;
  if (d < 60) return `${Math.round(d / 7)} weeks ago`;
  if (d < 730) return `${Math.round(d / 30)} months ago`;
  return `${Math.round(d / 365)} years ago`;
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) {
    writeOut(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join("")}\n`);
  }
}

/** A full name split as `docker images` shows it: [repository, tag]. */
function repoTag(name: string): [string, string] {
  try {
    const ref = parseReference(name);
    const repo = familiarString({ ...ref, tag: undefined, digest: undefined } as typeof ref);
    return [repo, ref.tag ?? "<none>"];
  } catch {
    return [name, "<none>"];
  }
}

function parse(args: string[], specs: FlagSpec[], positionals = Number.POSITIVE_INFINITY): Parsed {
  return parseArgs(args, [...specs, { name: "help" }], positionals);
}

function all(p: Parsed): string[] {
  return [...p.positionals, ...p.rest];
}

function progressTo(quiet: boolean) {
  if (quiet || !tty().isatty(2)) return undefined;
  return (e: { phase: string; detail: string }) =>
    writeErr(`${e.phase}: ${e.detail.slice(0, 80)}\n`);
}

/**
 * A prune's flags (-a, -f) and, unless -f, Docker's question, as container, volume and system
 * prune ask it: `{ all }` to go on, null when the answer is no.
 */
async function confirmedPrune(
  args: string[],
  question: { all: string; dangling: string },
): Promise<{ all: boolean } | null> {
  const p = parse(args, [
    { name: "all", aliases: ["a"] },
    { name: "force", aliases: ["f"] },
  ]);
  const all = boolFlag(p, "all");
  const { confirm } = await import("./containers.ts");
  if (!boolFlag(p, "force") && !(await confirm(all ? question.all : question.dangling)))
    return null;
  return { all };
}

export async function imageCommand(
  engine: Engine,
  command: string,
  args: string[],
): Promise<number> {
  if (command === "builder") {
    // Docker's `builder`: the build cache (`prune`) and `build`.
    const sub = args[0];
    if (sub === "build") return (await import("./build.ts")).buildCommand(engine, args.slice(1));
    if (sub !== "prune")
      throw new UsageError(`unknown builder command "${sub ?? ""}"`, {
        hint: "use builder prune [-a] [-f] or builder build",
      });
    const confirmed = await confirmedPrune(args.slice(1), {
      all: "This will remove all build cache.",
      dangling: "This will remove all dangling build cache.",
    });
    if (!confirmed) return 0;
    const removed = await pruneBuilder(engine, confirmed);
    if (removed.length) writeOut(`Deleted build cache objects:\n${removed.join("\n")}\n\n`);
    writeOut(`Total: ${removed.length} build cache record${removed.length === 1 ? "" : "s"}\n`);
    return 0;
  }
  if (command === "image") {
    const sub = args[0];
    const rest = args.slice(1);
    switch (sub) {
      case "ls":
      case "list":
        return imageCommand(engine, "images", rest);
      case "rm":
        return imageCommand(engine, "rmi", rest);
      case "tag":
      case "load":
      case "save":
      case "import":
      case "history":
        return imageCommand(engine, sub, rest);
      // Docker's `image pull`, `image push` and `image build`: the same commands.
      case "pull":
      case "push":
        return (await import("./registry.ts")).registryCommand(sub, rest, () => engine.images());
      case "build":
        return (await import("./build.ts")).buildCommand(engine, rest);
      case "inspect": {
        const p = parse(rest, [{ name: "format", aliases: ["f"], value: true }]);
        const refs = all(p);
        if (refs.length === 0) throw new UsageError("image inspect needs an image");
        const out = [];
        for (const r of refs) out.push(await inspectImage(engine, r));
        writeOut(renderInspect(out, flag(p, "format"), "image"));
        return 0;
      }
      case "prune": {
        const confirmed = await confirmedPrune(rest, {
          all: "This will remove all images without at least one container associated to them.",
          dangling: "This will remove all dangling images.",
        });
        if (!confirmed) return 0;
        const r = await pruneImages(engine, confirmed);
        if (r.deleted.length) writeOut("Deleted Images:\n");
        for (const d of r.deleted) {
          for (const n of d.names) writeOut(`untagged: ${repoTag(n).join(":")}\n`);
          writeOut(`deleted: ${d.id}\n`);
        }
        if (r.buildCache.length)
          writeOut(`Deleted build cache objects:\n${r.buildCache.join("\n")}\n`);
        writeOut(`\nTotal reclaimed space: ${humanSize(r.gc.freed)}\n`);
        return 0;
      }
      case "gc": {
        const p = parse(rest, [{ name: "dry-run" }]);
        const r = await collectEngineGarbage(engine, { dryRun: boolFlag(p, "dry-run") });
        writeOut(
          `${boolFlag(p, "dry-run") ? "would remove" : "removed"} ${r.blobs.length} blobs and ${r.layers.length} layers, ${humanSize(r.freed)}${r.deferred ? ` (${r.deferred} kept: another process is writing to the store)` : ""}\n`,
        );
        return 0;
      }
      default:
        throw new UsageError(`unknown image command "${sub ?? ""}"`, {
          hint: "use image ls, inspect, rm, tag, prune, gc, load, save, import, pull, push or build",
        });
    }
  }
  switch (command) {
    case "images": {
      const p = parse(args, [
        { name: "all", aliases: ["a"] },
        { name: "quiet", aliases: ["q"] },
        { name: "no-trunc" },
        { name: "digests" },
        { name: "format", value: true },
      ]);
      const store = await engine.images();
      const usage = await imageUsage(engine);
      const filter = p.positionals[0];
      const trunc = !boolFlag(p, "no-trunc");
      const format = flag(p, "format") ?? "table";
      if (format !== "table" && format !== "json")
        throw new UsageError(`unknown --format "${format}"`, { hint: "use table or json" });
      const rows: string[][] = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]];
      const json: Record<string, string>[] = [];
      const ids: string[] = [];
      const images = [...usage.images].sort((a, b) =>
        (b.config.created ?? "").localeCompare(a.config.created ?? ""),
      );
      for (const img of images) {
        const id = trunc ? img.id.slice(7, 19) : img.id;
        const size = humanSize(await imageSize(store, img));
        const names = img.names.length ? img.names.map(repoTag) : [["<none>", "<none>"]];
        for (const [repo, tag] of names) {
          if (filter !== undefined) {
            const [frepo, ftag] = filter.includes(":") ? repoTag(filter) : [repoTag(filter)[0], ""];
            if (repo !== frepo || (ftag && tag !== ftag)) continue;
          }
          if (!ids.includes(id)) ids.push(id);
          rows.push([repo!, tag!, id, ago(img.config.created), size]);
          json.push({
            Containers: String(usage.byImage.get(img.id)?.length ?? 0),
            CreatedAt: img.config.created ?? "",
            CreatedSince: ago(img.config.created),
            Digest: img.manifestDigest,
            ID: id,
            Repository: repo!,
            Size: size,
            Tag: tag!,
          });
        }
      }
      if (boolFlag(p, "quiet")) for (const id of ids) writeOut(`${id}\n`);
      else if (format === "json") for (const j of json) writeOut(`${JSON.stringify(j)}\n`);
      else printTable(rows);
      return 0;
    }
    case "history": {
      const p = parse(args, [
        { name: "no-trunc" },
        { name: "quiet", aliases: ["q"] },
        { name: "human", aliases: ["H"], value: true },
        { name: "format", value: true },
      ]);
      const ref = all(p)[0];
      if (!ref) throw new UsageError("history needs an image");
      const format = flag(p, "format") ?? "table";
      if (format !== "table" && format !== "json")
        throw new UsageError(`unknown --format "${format}"`, { hint: "use table or json" });
      const human = flag(p, "human") !== "false";
      const trunc = !boolFlag(p, "no-trunc");
      const store = await engine.images();
      const image = await store.resolve(ref);
      const sizes: number[] = [];
      for (const l of image.layers) sizes.push(await layerSize(store, l.diffId, l.descriptor.size));
      const rows = imageHistory(image.id, image.config, sizes);
      const shortId = (id: string) => (trunc && id.startsWith("sha256:") ? id.slice(7, 19) : id);
      if (boolFlag(p, "quiet")) {
        for (const r of rows) writeOut(`${shortId(r.id)}\n`);
        return 0;
      }
      if (format === "json") {
        for (const r of rows) writeOut(`${JSON.stringify(r)}\n`);
        return 0;
      }
      const table = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]];
      for (const r of rows) {
        const by = r.createdBy.replace(/\s+/g, " ");
        table.push([
          shortId(r.id),
          human ? ago(r.created || undefined) : r.created,
          trunc && by.length > 45 ? `${by.slice(0, 44)}…` : by,
          human ? humanSize(r.size) : String(r.size),
          r.comment,
        ]);
      }
      printTable(table);
      return 0;
    }
    case "tag": {
      const p = parse(args, []);
      const [source, target] = all(p);
      if (!source || !target) throw new UsageError("usage: pivot tag SOURCE_IMAGE TARGET_IMAGE");
      await (await engine.images()).tag(source, target);
      return 0;
    }
    case "rmi": {
      const p = parse(args, [{ name: "force", aliases: ["f"] }, { name: "no-prune" }]);
      const refs = all(p);
      if (refs.length === 0) throw new UsageError("rmi needs at least one image");
      let failed = 0;
      for (const ref of refs) {
        try {
          const r = await removeImage(engine, ref, {
            force: boolFlag(p, "force"),
            noPrune: boolFlag(p, "no-prune"),
          });
          for (const e of r.events) {
            if ("Untagged" in e) writeOut(`Untagged: ${e.Untagged}\n`);
            else writeOut(`Deleted: ${e.Deleted}\n`);
          }
        } catch (err) {
          writeErr(`pivot: ${formatError(err)}\n`);
          failed++;
        }
      }
      return failed ? 1 : 0;
    }
    case "load": {
      const p = parse(args, [
        { name: "input", aliases: ["i"], value: true },
        { name: "quiet", aliases: ["q"] },
      ]);
      const input = flag(p, "input") ?? p.positionals[0] ?? "-";
      const store = await engine.images();
      let source = input;
      let temp: string | undefined;
      if (input === "-") {
        if (tty().isatty(0))
          throw new UsageError("load reads an archive from stdin, which is a terminal", {
            hint: "use `pivot load -i FILE` or `pivot load < FILE`",
          });
        temp = await mkdtemp(join(store.root, "tmp", "load-"));
        source = join(temp, "archive.tar");
        await pipeline(process.stdin, createWriteStream(source));
      }
      try {
        const progress = progressTo(boolFlag(p, "quiet"));
        const r = await loadImages(store, source, {
          archiveName: input === "-" ? "<stdin>" : input,
          ...(progress ? { onProgress: progress } : {}),
        });
        for (const img of r.images) {
          if (img.names.length === 0) writeOut(`Loaded image ID: ${img.id}\n`);
          for (const n of img.names) writeOut(`Loaded image: ${repoTag(n).join(":")}\n`);
        }
      } finally {
        if (temp) await rm(temp, { recursive: true, force: true });
      }
      return 0;
    }
    case "save": {
      const p = parse(args, [
        { name: "output", aliases: ["o"], value: true },
        { name: "format", value: true },
      ]);
      const refs = all(p);
      if (refs.length === 0) throw new UsageError("save needs at least one image");
      const format = (flag(p, "format") ?? "docker-archive") as SaveFormat;
      if (format !== "docker-archive" && format !== "oci-archive")
        throw new UsageError(`unknown --format "${format}"`, {
          hint: "use docker-archive or oci-archive",
        });
      const out = flag(p, "output");
      if (!out && tty().isatty(1))
        throw new UsageError("refusing to write an archive to a terminal", {
          hint: "use -o FILE or redirect the output",
        });
      const store = await engine.images();
      const items = await resolveSaveItems(store, refs);
      const stream = Readable.from(saveImages(store, items, { format }));
      if (out) {
        const temp = `${out}.tmp-${process.pid}`;
        try {
          await pipeline(stream, createWriteStream(temp, { mode: 0o644 }));
          await rename(temp, out);
        } catch (err) {
          await rm(temp, { force: true });
          throw err;
        }
      } else await pipeline(stream, process.stdout);
      return 0;
    }
    case "import": {
      const p = parse(
        args,
        [
          { name: "message", aliases: ["m"], value: true },
          { name: "change", aliases: ["c"], value: true, multiple: true },
        ],
        2,
      );
      const [file, ref] = p.positionals;
      if (!file) throw new UsageError("usage: pivot import [-m MESSAGE] TARBALL|- [REFERENCE]");
      const config = importConfig(p.flags.get("change") ?? []);
      const store = await engine.images();
      const message = flag(p, "message");
      const image = await importRootfs(store, file === "-" ? process.stdin : file, {
        refs: ref ? [ref] : [],
        config: { config },
        ...(message ? { message } : {}),
      });
      writeOut(`${image.id}\n`);
      return 0;
    }
    case "system": {
      const sub = args[0];
      if (sub === "info") {
        const d = rootfsDriver();
        const store = await engine.images();
        const usage = await imageUsage(engine);
        writeOut(
          [
            `Root: ${store.root}`,
            `Run Root: ${engine.runRoot}`,
            ...rootlessInfo(),
            `Storage Driver: ${d.driver} (${d.reason})`,
            `Images: ${usage.images.length}`,
            `Containers: ${usage.containers.length} (running: ${usage.containers.filter((c) => c.state.running).length})`,
            "",
          ].join("\n"),
        );
        return 0;
      }
      if (sub === "prune") {
        const { systemPruneCommand } = await import("./containers.ts");
        return systemPruneCommand(engine, args.slice(1));
      }
      if (sub === "events")
        return (await import("./events.ts")).eventsCommand(engine, args.slice(1));
      if (sub !== "df")
        throw new UsageError(`unknown system command "${sub ?? ""}"`, {
          hint: "use system df, system info, system prune or system events",
        });
      const p = parse(args.slice(1), [
        { name: "verbose", aliases: ["v"] },
        { name: "format", value: true },
      ]);
      const df = await systemDf(engine);
      const format = flag(p, "format") ?? "table";
      if (format === "json") {
        writeOut(`${JSON.stringify(df, null, 2)}\n`);
        return 0;
      }
      if (format !== "table")
        throw new UsageError(`unknown --format "${format}"`, { hint: "use table or json" });
      const pct = (part: number, whole: number) =>
        whole > 0 ? ` (${Math.round((part / whole) * 100)}%)` : "";
      const t = df.totals;
      printTable([
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [
          "Images",
          String(t.images.total),
          String(t.images.active),
          humanSize(t.images.size),
          `${humanSize(t.images.reclaimable)}${pct(t.images.reclaimable, t.images.size)}`,
        ],
        [
          "Containers",
          String(t.containers.total),
          String(t.containers.active),
          humanSize(t.containers.size),
          `${humanSize(t.containers.reclaimable)}${pct(t.containers.reclaimable, t.containers.size)}`,
        ],
        [
          "Local Volumes",
          String(t.volumes.total),
          String(t.volumes.active),
          humanSize(t.volumes.size),
          `${humanSize(t.volumes.reclaimable)}${pct(t.volumes.reclaimable, t.volumes.size)}`,
        ],
        [
          "Build Cache",
          String(t.buildCache.total),
          String(t.buildCache.active),
          humanSize(t.buildCache.size),
          humanSize(t.buildCache.reclaimable),
        ],
      ]);
      if (boolFlag(p, "verbose")) {
        writeOut("\nImages space usage:\n\n");
        const rows = [
          [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
          ],
        ];
        for (const i of df.images) {
          for (const [repo, tag] of i.names.length
            ? i.names.map(repoTag)
            : [["<none>", "<none>"]]) {
            rows.push([
              repo!,
              tag!,
              i.id.slice(7, 19),
              ago(i.created),
              humanSize(i.size),
              humanSize(i.sharedSize),
              humanSize(i.uniqueSize),
              String(i.containers),
            ]);
          }
        }
        printTable(rows);
        writeOut("\nContainers space usage:\n\n");
        const crows = [["CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"]];
        for (const c of df.containers)
          crows.push([c.id.slice(0, 12), c.image, humanSize(c.size), c.status, c.name]);
        printTable(crows);
        writeOut("\nLocal Volumes space usage:\n\n");
        const vrows = [["VOLUME NAME", "LINKS", "SIZE"]];
        for (const v of df.volumes) vrows.push([v.name, String(v.links), humanSize(v.size)]);
        printTable(vrows);
        // SHARED: a kept image was built through the record (its layers are that image's too).
        writeOut(`\nBuild cache usage: ${humanSize(t.buildCache.size)}\n\n`);
        const brows = [["CACHE ID", "IMAGE ID", "CREATED", "SHARED"]];
        for (const b of df.buildCache)
          brows.push([b.key.slice(0, 12), b.id.slice(7, 19), ago(b.created), String(b.used)]);
        printTable(brows);
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/**
 * `import -c`: the Dockerfile instructions `docker import --change` takes that make sense here
 * (CMD, ENTRYPOINT as JSON or shell form, ENV, WORKDIR, USER, LABEL, STOPSIGNAL). Default: Cmd sh.
 */
function importConfig(changes: string[]): Record<string, unknown> {
  const c: Record<string, unknown> = {
    Cmd: ["sh"],
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
  };
  const words = (v: string) => {
    if (v.trim().startsWith("[")) {
      try {
        return JSON.parse(v) as string[];
      } catch {}
    }
    return ["/bin/sh", "-c", v];
  };
  for (const ch of changes) {
    const m = /^\s*(\w+)\s+(.*)$/s.exec(ch);
    if (!m) throw new UsageError(`--change ${JSON.stringify(ch)}: not an instruction`);
    const [, op, value] = m as unknown as [string, string, string];
    switch (op.toUpperCase()) {
      case "CMD":
        c.Cmd = words(value);
        break;
      case "ENTRYPOINT":
        c.Entrypoint = words(value);
        break;
      case "ENV": {
        const eq = value.indexOf("=");
        const kv = eq > 0 ? value : value.replace(/\s+/, "=");
        c.Env = [...(c.Env as string[]), kv];
        break;
      }
      case "WORKDIR":
        c.WorkingDir = value;
        break;
      case "USER":
        c.User = value;
        break;
      case "STOPSIGNAL":
        c.StopSignal = value;
        break;
      case "LABEL": {
        const eq = value.indexOf("=");
        c.Labels = {
          ...(c.Labels as Record<string, string> | undefined),
          [eq < 0 ? value : value.slice(0, eq)]:
            eq < 0 ? "" : value.slice(eq + 1).replace(/^"|"$/g, ""),
        };
        break;
      }
      default:
        throw new UsageError(`--change ${op}: not supported`, {
          hint: "use CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL or STOPSIGNAL",
        });
    }
  }
  return c;
}

/**
 * `system info`'s rootless lines (podman info's `rootless` and `idMappings`): whether the engine
 * runs rootless and, if so, its user namespace's maps, container id -> host id (size).
 */
function rootlessInfo(): string[] {
  if (!isRootlessEngine()) return ["Rootless: false", "ID Mappings: none (the host's ids)"];
  const map = (file: string) => {
    try {
      return parseIdMap(readFileSync(file, "utf8"))
        .map((l) => `${l.inner} -> ${l.outer} (${l.count})`)
        .join(", ");
    } catch (err) {
      return `unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
  };
  return [
    "Rootless: true",
    "ID Mappings (container -> host, size):",
    `  UID: ${map("/proc/self/uid_map")}`,
    `  GID: ${map("/proc/self/gid_map")}`,
  ];
}
