// `pivot build`: a Dockerfile's instructions run one by one as the classic `docker build` does:
// each RUN in a container of the image so far, committed as a layer; COPY and ADD into a created
// (never started) container's root, committed; the other instructions change the config only
// (an empty-layer history entry). Every step makes an image; the intermediate ones and every
// build container are removed at the end, whether the build succeeded, failed or was cancelled.
// Each step is first looked up in the build cache (src/image/build-cache.ts, keys from
// cache-key.ts): a hit reuses the image an earlier build's step made, and the first miss ends the
// cache for the rest of the stage, as the classic builder's. Cached images are kept by their
// records, out of index.json.
import { realpathSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { join, posix, resolve } from "node:path";
import { PivotError } from "../../errors.ts";
import {
  readBuildCacheRecord,
  recordImage,
  writeBuildCacheRecord,
} from "../../image/build-cache.ts";
import {
  BUILD_RUN_LABEL,
  type BuildRun,
  buildRunDir,
  newBuildRun,
  removeBuildRun,
  writeBuildRun,
} from "../../image/build-runs.ts";
import { createImage } from "../../image/create.ts";
import { ImageNotFoundError, LayerUnpackError } from "../../image/errors.ts";
import {
  isMountPoint,
  mountImageRootfs,
  mountOverlay,
  unmountOverlay,
} from "../../image/overlay.ts";
import { parseReference } from "../../image/reference.ts";
import type { ImageStore, StoredImage } from "../../image/store.ts";
import {
  type Descriptor,
  type HistoryEntry,
  type ImageConfig,
  MediaType,
} from "../../image/types.ts";
import { findProgram } from "../../runtime/userns.ts";
import { randomHex } from "../../util/random.ts";
import type { EngineContext } from "../context.ts";
import type { Engine } from "../engine.ts";
import { EngineError } from "../errors.ts";
import { extractTar, kindAt, resolveInRoot } from "../files.ts";
import { healthHistoryText } from "../health-config.ts";
import { collectEngineGarbage } from "../images.ts";
import { stepKey } from "./cache-key.ts";
import {
  CONFIG_INSTRUCTIONS,
  configChange,
  envMap,
  HEALTHCHECK_FLAGS,
  healthcheck,
  type RuntimeConfig,
} from "./config-steps.ts";
import { IgnoreRules, readContextFile, resolveSources } from "./context.ts";
import { ARCHIVE_HEAD, chmodTree, chownIds, ensureDir, isArchiveHead } from "./copy-files.ts";
import { contentHead, fileContent, type SpooledSource, spoolSources } from "./copy-sources.ts";
import {
  DockerfileError,
  expandWord,
  expandWords,
  type Instruction,
  type Lookup,
  parseDockerfile,
  splitWords,
} from "./dockerfile.ts";
import { removeDeadBuilds } from "./leftovers.ts";
import { Spool } from "./spool.ts";

export interface BuildOptions {
  /** The build context directory. */
  context: string;
  /** The Dockerfile's path (default CONTEXT/Dockerfile); relative paths from the current directory. */
  dockerfile?: string;
  /** The Dockerfile itself (`-f -`: read from stdin), instead of a file. */
  dockerfileText?: string;
  /** Names for the image (-t), none: untagged. */
  tag?: string | string[];
  /** --build-arg values for the Dockerfile's ARGs. */
  buildArgs?: Record<string, string>;
  /**
   * The network of RUN containers: "bridge" (the default, as Docker's; rootless: pasta or
   * slirp4netns if installed, else none), "none", "host", a network's name.
   */
  network?: string;
  /** Nothing written to onOutput (`-q`). */
  quiet?: boolean;
  /** The step lines and RUN's output, as `docker build` prints them. */
  onOutput?: (text: string) => void;
  /** Cancels the build (Ctrl-C): a running RUN is killed, everything made is removed. */
  signal?: AbortSignal;
  /** The stage to build (`--target NAME`): the instructions after it are not run. */
  target?: string;
  /**
   * Runs every step (`--no-cache`): the build cache is not looked up (what the steps make is
   * still recorded in it for the next builds).
   */
  noCache?: boolean;
}

/** A failure Docker reports as is: a RUN's non-zero exit, a cancel. */
export class BuildError extends EngineError {}

const KNOWN = new Set([
  "FROM",
  "RUN",
  "COPY",
  "ADD",
  "ENV",
  "ARG",
  "WORKDIR",
  "USER",
  "CMD",
  "ENTRYPOINT",
  "EXPOSE",
  "LABEL",
  "VOLUME",
  "STOPSIGNAL",
  "SHELL",
  "MAINTAINER",
  "HEALTHCHECK",
]);
const UNSUPPORTED: Record<string, string> = {
  ONBUILD: "ONBUILD triggers are not supported by pivot build",
};

/** Build args every RUN gets without an ARG line, as Docker's (left out of the history). */
const PROXY_ARGS = new Set(
  ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"].flatMap((n) => [
    n,
    n.toLowerCase(),
  ]),
);

const shortId = (id: string) => id.replace(/^sha256:/, "").slice(0, 12);

/** Builds the image; resolves with it once tagged. */
export async function build(
  engine: Engine,
  ctx: EngineContext,
  options: BuildOptions,
): Promise<StoredImage> {
  const b = new Builder(engine, ctx, options);
  try {
    return await b.run();
  } finally {
    await b.cleanup();
  }
}

class Builder {
  private readonly out: (text: string) => void;
  private store!: ImageStore;
  private context!: string;
  private escape = "\\";
  /** Manifest digests of the images this build made; all but the result go at the end. */
  private readonly made: string[] = [];
  /** The manifests of the images this build made or took from the cache (listedId lists them). */
  private readonly listable = new Map<string, Descriptor>();
  /** This build's record of running builds (build-runs.ts), null until it starts. */
  private record: BuildRun | null = null;
  /** Containers this build made that still exist. */
  private readonly containers = new Set<string>();
  /** Directories of image roots mounted for COPY --from (unmounted and removed by cleanup). */
  private readonly mountDirs = new Set<string>();
  /** The build's directory under the engine's tmp (workDir), null until used. */
  private work: string | null = null;
  /** The image so far (null before FROM). */
  private image: StoredImage | null = null;
  /** ARGs declared before the first FROM (usable in FROM lines). */
  private readonly globalArgs = new Map<string, string | undefined>();
  /** ARGs declared in the stage. */
  private readonly args = new Map<string, string | undefined>();
  private readonly usedBuildArgs = new Set<string>();
  private shell = ["/bin/sh", "-c"];
  private cmdSet = false;
  /** The finished stages' images, by name (lower case) and by index ("0", "1", ...). */
  private readonly stages = new Map<string, StoredImage>();
  /** The current stage's names (its index, and its AS name). */
  private stageNames: string[] = [];
  private ignore!: IgnoreRules;
  private result: StoredImage | null = null;
  /** Whether the stage still looks steps up in the build cache (until its first miss). */
  private useCache = false;
  /** What the next step's cache key starts from: the image so far's id ("scratch" at first). */
  private parent = "";

  constructor(
    private readonly engine: Engine,
    private readonly ctx: EngineContext,
    private readonly options: BuildOptions,
  ) {
    const write = options.onOutput ?? (() => {});
    this.out = options.quiet ? () => {} : write;
  }

  async run(): Promise<StoredImage> {
    const o = this.options;
    try {
      this.context = realpathSync(o.context);
    } catch {
      throw new EngineError(`the build context ${o.context} does not exist`, {
        hint: "give the directory holding the Dockerfile and the files it copies",
      });
    }
    if (!statSync(this.context).isDirectory())
      throw new EngineError(`the build context ${o.context} is not a directory`);
    const file =
      o.dockerfileText !== undefined
        ? "the Dockerfile"
        : o.dockerfile
          ? resolve(o.dockerfile)
          : join(this.context, "Dockerfile");
    let text: string | null;
    const hint = "give its path with -f, or put a Dockerfile in the build context";
    try {
      // The context's own Dockerfile is the untrusted repository's: a regular file inside the
      // context only (not a fifo, a device, a symlink onto the host). -f names what the user chose.
      text =
        o.dockerfileText ??
        (o.dockerfile ? await readFile(file, "utf8") : readContextFile(this.context, "Dockerfile"));
    } catch (err) {
      if (err instanceof DockerfileError) throw err;
      throw new EngineError(`cannot read the Dockerfile ${file}: ${(err as Error).message}`, {
        hint,
      });
    }
    if (text === null)
      throw new EngineError(
        `cannot read the Dockerfile ${file}: no such file in the build context`,
        {
          hint,
        },
      );
    const { instructions, escapeChar } = parseDockerfile(text);
    this.escape = escapeChar;
    this.check(instructions, file);
    this.ignore = IgnoreRules.read(this.context);
    this.store = await this.ctx.images();
    // What builds killed before their cleanup left (their process provably gone), then this
    // build's own record: while it runs, its images are kept by collection and by prune.
    await removeDeadBuilds(this.engine, this.store);
    this.record = newBuildRun(randomHex(8));
    await writeBuildRun(this.store, this.record);
    const tags = o.tag === undefined ? [] : Array.isArray(o.tag) ? o.tag : [o.tag];
    // A bad name fails now, not after the build.
    for (const t of tags) parseReference(t);
    for (const [i, inst] of instructions.entries()) {
      this.aborted();
      if (
        inst.keyword === "FROM" &&
        o.target !== undefined &&
        this.stageNames.includes(o.target.toLowerCase())
      )
        break;
      this.out(`Step ${i + 1}/${instructions.length} : ${inst.original}\n`);
      try {
        await this.step(inst);
      } catch (err) {
        throw stepError(inst, err);
      }
      if (this.image) this.out(` ---> ${shortId(this.image.id)}\n`);
    }
    // A cancel during the last step (a COPY or ADD runs to its end): nothing tagged or kept.
    this.aborted();
    const unused = Object.keys(o.buildArgs ?? {}).filter(
      (k) => !this.usedBuildArgs.has(k) && !PROXY_ARGS.has(k),
    );
    if (unused.length > 0)
      this.out(`[Warning] One or more build-args [${unused.join(" ")}] were not consumed\n`);
    const image = this.image!;
    // A cached result another build listed may be out of index.json again: tag resolves it there.
    await this.listedId();
    for (const t of tags) await this.store.tag(image.manifestDigest, t);
    this.result = await this.store.resolve(image.manifestDigest);
    this.out(`Successfully built ${shortId(image.id)}\n`);
    for (const t of tags) this.out(`Successfully tagged ${t}\n`);
    return this.result;
  }

  /** Refuses what cannot be built before anything is made. */
  private check(instructions: Instruction[], file: string): void {
    if (instructions.length === 0) throw new DockerfileError(`${file} has no instructions`);
    let froms = 0;
    for (const inst of instructions) {
      const at = `${file}, line ${inst.line}`;
      if (UNSUPPORTED[inst.keyword])
        throw new DockerfileError(`${inst.keyword} (${at}): ${UNSUPPORTED[inst.keyword]}`, {
          hint: "remove the instruction",
        });
      if (!KNOWN.has(inst.keyword))
        throw new DockerfileError(`unknown instruction ${inst.keyword} (${at})`, {
          hint: "check its spelling; pivot build knows FROM RUN COPY ADD ENV ARG WORKDIR USER CMD ENTRYPOINT EXPOSE LABEL VOLUME STOPSIGNAL SHELL HEALTHCHECK",
        });
      if (inst.keyword === "FROM") froms++;
      else if (froms === 0 && inst.keyword !== "ARG")
        throw new DockerfileError(`${inst.keyword} before FROM (${at})`, {
          hint: "a Dockerfile starts with FROM (only ARG may come before it)",
        });
      for (const f of Object.keys(inst.flags)) {
        const allowed =
          inst.keyword === "COPY"
            ? ["chown", "chmod", "from"]
            : inst.keyword === "ADD"
              ? ["chown", "chmod"]
              : inst.keyword === "HEALTHCHECK"
                ? HEALTHCHECK_FLAGS
                : [];
        if (!allowed.includes(f))
          throw new DockerfileError(
            `${inst.keyword} --${f} (${at}) is not supported by pivot build`,
            inst.keyword === "HEALTHCHECK"
              ? {
                  hint: `HEALTHCHECK's options are ${HEALTHCHECK_FLAGS.map((n) => `--${n}`).join(" ")}`,
                }
              : {},
          );
      }
      // A bad HEALTHCHECK fails the build before anything is made, as an unknown flag does.
      if (inst.keyword === "HEALTHCHECK") {
        try {
          healthcheck(inst);
        } catch (err) {
          throw stepError(inst, err);
        }
      }
    }
    if (froms === 0) throw new DockerfileError(`${file} has no FROM instruction`);
    const target = this.options.target?.toLowerCase();
    if (
      target !== undefined &&
      !instructions.some(
        (i) =>
          i.keyword === "FROM" && /\s+as\s+(\S+)\s*$/i.exec(i.args)?.[1]?.toLowerCase() === target,
      )
    )
      throw new DockerfileError(`${file} has no stage named ${this.options.target}`, {
        hint: "--target names a stage of a FROM ... AS NAME line",
      });
  }

  private aborted(): void {
    if (this.options.signal?.aborted) throw new BuildError("the build was cancelled");
  }

  /** ENV first, then the stage's ARGs (the global ones before FROM). */
  private lookup(): Lookup {
    if (this.image === null) return (n) => this.globalArgs.get(n);
    const env = envMap(this.config().Env);
    return (n) => (env.has(n) ? env.get(n) : this.args.get(n));
  }

  private expand(text: string): string {
    return expandWord(text.trim(), this.lookup(), this.escape);
  }

  private config(): RuntimeConfig {
    return this.image?.config.config ?? {};
  }

  private async step(inst: Instruction): Promise<void> {
    switch (inst.keyword) {
      case "FROM":
        return this.from(inst);
      case "ARG":
        return this.arg(inst);
      case "RUN":
        return this.runStep(inst);
      case "COPY":
      case "ADD":
        return this.copy(inst);
      case "WORKDIR":
        return this.workdir(inst);
      case "SHELL": {
        if (!inst.json || inst.json.length === 0)
          throw new DockerfileError(
            'SHELL needs the JSON form: SHELL ["executable", "parameters"]',
          );
        this.shell = inst.json;
        return this.configStep(inst, {});
      }
      case "CMD":
        this.cmdSet = true;
        return this.configStep(inst, this.change(inst));
      case "ENTRYPOINT":
        // A new entrypoint drops the base image's CMD, unless this stage set one already.
        return this.configStep(inst, {
          ...this.change(inst),
          ...(this.cmdSet ? {} : { Cmd: null }),
        });
      case "MAINTAINER":
        return this.configStep(inst, {}, { author: inst.args });
      default:
        if (CONFIG_INSTRUCTIONS.has(inst.keyword)) return this.configStep(inst, this.change(inst));
        throw new DockerfileError(`unknown instruction ${inst.keyword}`);
    }
  }

  /** The config fields a config-only instruction sets (config-steps.ts). */
  private change(inst: Instruction): Partial<RuntimeConfig> {
    return configChange(inst, this.config(), this.lookup(), this.shell, this.escape);
  }

  private async from(inst: Instruction): Promise<void> {
    const words = expandWords(inst.args, (n) => this.globalArgs.get(n), this.escape);
    if (words.length !== 1 && !(words.length === 3 && words[1]!.toUpperCase() === "AS"))
      throw new DockerfileError(`FROM needs IMAGE [AS NAME], got "${inst.args}"`);
    // The stage before ends: its image can be copied from, or built on, by its name or index.
    if (this.image !== null) for (const n of this.stageNames) this.stages.set(n, this.image);
    const index = String(this.stageCount());
    this.stageNames = [index, ...(words[2] ? [words[2].toLowerCase()] : [])];
    this.args.clear();
    this.shell = ["/bin/sh", "-c"];
    this.cmdSet = false;
    // Each stage looks its steps up in the cache until its first miss.
    this.useCache = this.options.noCache !== true;
    const ref = words[0]!;
    const stage = this.stages.get(ref.toLowerCase());
    if (stage) {
      this.image = stage;
    } else if (ref === "scratch") {
      this.image = await this.makeImage({ layers: [], config: null, history: [] });
      // A new empty image each time (its date): the key starts from what it is instead.
      this.parent = "scratch";
      return;
    } else {
      this.image = await this.localImage(ref, "FROM");
      await this.noteUse(this.image);
    }
    this.parent = this.image.id;
  }

  /**
   * A step through the build cache: KEY's step (PARTS from the image so far) is looked up while
   * the stage uses the cache, and a hit (its image in the store) becomes the image so far without
   * running anything (` ---> Using cache`); else MAKE runs, and the image it made is recorded
   * under the key, unless the build was cancelled meanwhile or SAME (asked after MAKE) says the
   * step's inputs changed while it ran.
   */
  private async cached(
    parts: unknown[] | null,
    make: () => Promise<void>,
    same?: () => Promise<boolean>,
  ): Promise<void> {
    // No key (sources that could not be read whole): a miss, not recorded.
    const key = parts === null ? null : stepKey(this.parent, parts);
    if (this.useCache && key !== null) {
      const hit = await this.cacheHit(key);
      if (hit !== null) {
        this.image = hit;
        this.parent = hit.id;
        this.out(" ---> Using cache\n");
        return;
      }
    }
    // The first miss ends the cache for the rest of the stage, as Docker's.
    this.useCache = false;
    await make();
    const image = this.image!;
    this.parent = image.id;
    if (key === null || this.options.signal?.aborted) return;
    if (same !== undefined && !(await same())) return;
    await writeBuildCacheRecord(this.store, key, image);
  }

  /**
   * The image KEY's record names, listed in index.json for the rest of the build (RUN's and
   * COPY's containers are created from it by id; cleanup takes it out again if it was not there),
   * null when there is no record or its image is not in the store whole: a miss.
   */
  private async cacheHit(key: string): Promise<StoredImage | null> {
    const record = readBuildCacheRecord(this.store, key);
    if (record === null) return null;
    // Checked whole before it is listed: a manifest listed without its config (a collection cut
    // short) broke every listing of the store, this build's tag and cleanup among them.
    const image = await recordImage(this.store, record);
    if (image === null) return null;
    const digest = record.manifest.digest;
    // Recorded as this build's before it is listed: a prune meanwhile leaves it.
    await this.noteImage(record.manifest);
    const listed = (await this.store.readIndex()).manifests.some((d) => d.digest === digest);
    if (!listed) {
      // Named as listed by this build before it is: a dead build's sweep takes it out again.
      await this.noteMade(digest);
      try {
        // Refused when the manifest's blob is gone.
        await this.store.addImage(record.manifest);
      } catch {
        return null;
      }
    }
    try {
      await this.store.ensureImageLayers(image);
    } catch {
      return null;
    }
    return image;
  }

  /**
   * The id of the image so far, for a container created from it (engine.run, engine.create look
   * it up in index.json): a cached image another build listed is taken out again by that
   * build's cleanup, maybe while this build still uses it (its cache record keeps it in the
   * store), and an image this build made may have been pruned from index.json in the moment
   * before this build's record named it (its blobs are kept meanwhile: see gc.ts's writers), so
   * it is listed again, as this build's, first.
   */
  private async listedId(): Promise<string> {
    const image = this.image!;
    const desc = this.listable.get(image.manifestDigest);
    if (
      desc !== undefined &&
      !(await this.store.readIndex()).manifests.some((d) => d.digest === desc.digest)
    ) {
      await this.noteMade(desc.digest);
      await this.store.addImage(desc);
    }
    return image.id;
  }

  /**
   * DIGEST is listed by this build (made, or listed again for it): its cleanup takes it out, and
   * its record says so, for a dead build's sweep (which leaves what it did not list).
   */
  private async noteMade(digest: string): Promise<void> {
    if (!this.made.includes(digest)) this.made.push(digest);
    const record = this.record!;
    if (record.made.includes(digest)) return;
    record.made.push(digest);
    await writeBuildRun(this.store, record);
  }

  /**
   * Names DESC's image in this build's record (kept while the build runs) and as listable;
   * MADE: the build made it (listed it), which its cleanup and a dead build's sweep take out.
   */
  private async noteImage(desc: Descriptor, made = false): Promise<void> {
    this.listable.set(desc.digest, desc);
    const record = this.record!;
    const known = record.images.some((d) => d.digest === desc.digest);
    if (made && !this.made.includes(desc.digest)) this.made.push(desc.digest);
    if (known && (!made || record.made.includes(desc.digest))) return;
    if (!known) record.images.push(desc);
    if (made && !record.made.includes(desc.digest)) record.made.push(desc.digest);
    await writeBuildRun(this.store, record);
  }

  /**
   * Names IMAGE, which the build builds on but did not make (FROM's, COPY --from's), in its
   * record: a prune keeps it while the build runs (an `image prune -a` before the build's first
   * image took a FROM image away, and the step's container could not be created), and a dead
   * build's sweep never removes it. Listable too: one pruned in the moment before the record
   * named it is listed again before use (listedId), as the build's own are.
   */
  private async noteUse(image: StoredImage): Promise<void> {
    const desc = this.descriptorOf(image);
    this.listable.set(desc.digest, desc);
    const record = this.record!;
    if ([...record.images, ...record.uses].some((d) => d.digest === desc.digest)) return;
    record.uses.push(desc);
    await writeBuildRun(this.store, record);
  }

  /** The manifest descriptor of IMAGE, an image of the store. */
  private descriptorOf(image: StoredImage): Descriptor {
    return {
      mediaType: image.manifest.mediaType ?? MediaType.ociManifest,
      digest: image.manifestDigest,
      size: statSync(this.store.blobPath(image.manifestDigest)).size,
    };
  }

  /** A build container's NAME, recorded before it is created (a killed build's is found). */
  private async noteContainer(name: string): Promise<void> {
    this.containers.add(name);
    this.record!.containers.push(name);
    await writeBuildRun(this.store, this.record!);
  }

  /** A build container's labels: its build's id, which a killed build's removal checks. */
  private containerLabels(): Record<string, string> {
    return { [BUILD_RUN_LABEL]: this.record!.id };
  }

  /** Stages started so far (each has its index among the names). */
  private stageCount(): number {
    return [...this.stages.keys()].filter((k) => /^\d+$/.test(k)).length;
  }

  /** An image of the local store (FROM, COPY --from): never pulled. */
  private async localImage(ref: string, what: string): Promise<StoredImage> {
    try {
      return await this.store.resolve(ref);
    } catch (err) {
      if (!(err instanceof ImageNotFoundError)) throw err;
      throw new DockerfileError(`${what}: image ${ref} is not in the local store`, {
        hint: `pivot build never pulls: pull it first (\`pivot pull ${ref}\`) or load it (\`pivot load\`)`,
      });
    }
  }

  private arg(inst: Instruction): void | Promise<void> {
    const words = splitWords(inst.args, this.escape);
    if (words.length === 0) throw new DockerfileError("ARG needs a NAME[=DEFAULT]");
    const lookup = this.lookup();
    const scope = this.image === null ? this.globalArgs : this.args;
    for (const w of words) {
      const eq = w.indexOf("=");
      const name = eq < 0 ? w : w.slice(0, eq);
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name))
        throw new DockerfileError(`ARG: invalid name "${name}"`);
      const given = this.options.buildArgs?.[name];
      if (given !== undefined) this.usedBuildArgs.add(name);
      const fallback =
        eq >= 0
          ? expandWord(w.slice(eq + 1), lookup, this.escape)
          : this.image !== null
            ? this.globalArgs.get(name)
            : undefined;
      scope.set(name, given ?? fallback);
    }
    if (this.image === null) return;
    return this.configStep(inst, {});
  }

  /** A step that changes the config only: a new image with an empty-layer history entry. */
  private async configStep(
    inst: Instruction,
    change: Partial<RuntimeConfig> & { Cmd?: string[] | null },
    extra: { author?: string } = {},
    cache = true,
  ): Promise<void> {
    const make = async () => this.configImage(inst, change, extra);
    // The new config is the parent's with CHANGE: the key is the change and the history entry.
    if (cache) return this.cached(["config", inst.keyword, change, extra, createdByOf(inst)], make);
    return make();
  }

  private async configImage(
    inst: Instruction,
    change: Partial<RuntimeConfig> & { Cmd?: string[] | null },
    extra: { author?: string },
  ): Promise<void> {
    const base = this.image!;
    this.image = await this.makeImage({
      layers: base.layers,
      config: base.config,
      runtime: { ...(base.config.config ?? {}), ...change },
      history: [
        ...(base.config.history ?? []),
        { created_by: createdByOf(inst), empty_layer: true },
      ],
      ...extra,
    });
  }

  private async makeImage(o: {
    layers: StoredImage["layers"];
    config: ImageConfig | null;
    runtime?: RuntimeConfig;
    history: HistoryEntry[];
    author?: string;
  }): Promise<StoredImage> {
    const created = new Date().toISOString();
    const { rootfs: _, ...rest } = o.config ?? ({} as Partial<ImageConfig>);
    const image = await createImage(this.store, {
      layers: o.layers,
      config: {
        ...rest,
        created,
        ...(o.author ? { author: o.author } : {}),
        config: o.runtime ?? o.config?.config ?? {},
        history: o.history.map((h) => ({ created: h.created ?? created, ...h })),
      },
    });
    await this.noteImage(this.descriptorOf(image), true);
    return image;
  }

  /** RUN: the command in a container of the image so far, its changes committed as a layer. */
  private async runStep(inst: Instruction): Promise<void> {
    const cmd = inst.json ?? [...this.shell, inst.args];
    if (cmd.length === 0 || cmd[0] === "") throw new DockerfileError("RUN needs a command");
    const env = envMap(this.config().Env);
    // Sorted as Docker's history and cache key have them (`|2 A=1 B=2`), not in declaration order.
    const argEnv = [...this.args]
      .filter(([k, v]) => v !== undefined && !env.has(k))
      .sort(([ka, va], [kb, vb]) =>
        Buffer.compare(Buffer.from(`${ka}=${va}`), Buffer.from(`${kb}=${vb}`)),
      );
    // Docker's predefined proxy ARGs reach RUN without an ARG line, and stay out of the history.
    const proxies = Object.entries(this.options.buildArgs ?? {}).filter(
      ([k]) => PROXY_ARGS.has(k) && !env.has(k) && !this.args.has(k),
    );
    const argPrefix =
      argEnv.length > 0
        ? `|${argEnv.length} ${argEnv.map(([k, v]) => `${k}=${v}`).join(" ")} `
        : "";
    const shown = inst.json ? cmd.join(" ") : `${this.shell.join(" ")} ${inst.args}`;
    // Docker's key: the command and the ARG values in its environment (not the proxy ones).
    return this.cached(["RUN", cmd, argEnv], () =>
      this.runNow(inst, cmd, shown, argEnv, proxies, argPrefix),
    );
  }

  private async runNow(
    inst: Instruction,
    cmd: string[],
    shown: string,
    argEnv: [string, string | undefined][],
    proxies: [string, string][],
    argPrefix: string,
  ): Promise<void> {
    const name = `pivot-build-${randomHex(6)}`;
    let id: string | undefined;
    let code: number;
    const onAbort = () => {
      if (id) {
        try {
          this.engine.kill(id, "SIGKILL");
        } catch {}
      }
    };
    this.options.signal?.addEventListener("abort", onAbort);
    try {
      await this.noteContainer(name);
      const handle = await this.engine.run({
        image: await this.listedId(),
        name,
        cmd,
        entrypoint: [],
        labels: this.containerLabels(),
        env: [...argEnv, ...proxies].map(([k, v]) => `${k}=${v}`),
        network: this.options.network ?? this.defaultNetwork(),
        // The image's HEALTHCHECK is not run during RUN (Docker's builder: withoutHealthcheck).
        healthcheck: { Test: ["NONE"] },
        stdio: "pipe",
      });
      id = handle.id;
      this.containers.delete(name);
      this.containers.add(id);
      this.out(` ---> Running in ${id.slice(0, 12)}\n`);
      if (this.options.signal?.aborted) onAbort();
      const pump = (s: NodeJS.ReadableStream | null) =>
        s
          ? new Promise<void>((res) => {
              s.setEncoding("utf8");
              s.on("data", (d: string) => this.out(d));
              s.on("end", res);
              s.on("error", () => res());
              s.on("close", res);
            })
          : Promise.resolve();
      const [exit] = await Promise.all([handle.wait(), pump(handle.stdout), pump(handle.stderr)]);
      code = exit;
    } finally {
      this.options.signal?.removeEventListener("abort", onAbort);
    }
    this.aborted();
    if (code !== 0)
      throw new BuildError(`The command '${shown}' returned a non-zero code: ${code}`, {
        hint: `the RUN instruction on line ${inst.line} failed; its output is above`,
      });
    await this.commitStep(id!, `${argPrefix}${shown}`);
    this.out(`Removing intermediate container ${id!.slice(0, 12)}\n`);
  }

  /**
   * RUN's network unless --network: Docker's bridge; rootless, where a bridge needs root, the
   * user-mode network podman's rootless builds use (pasta, else slirp4netns), else none.
   */
  private defaultNetwork(): string {
    if (!this.ctx.rootless) return "bridge";
    return findProgram("pasta") ? "pasta" : findProgram("slirp4netns") ? "slirp4netns" : "none";
  }

  /** Commits container ID as the step's layer, under history entry CREATED_BY, and removes it. */
  private async commitStep(id: string, createdBy: string): Promise<void> {
    const committed = await this.engine.commit(id, { pause: false });
    await this.noteImage(this.descriptorOf(committed), true);
    await this.removeContainer(id);
    // commit's history entry names the container: relabeled as the instruction.
    const history = [...(committed.config.history ?? [])];
    const last = history.pop();
    this.image = await this.makeImage({
      layers: committed.layers,
      config: committed.config,
      history: [...history, { created: last?.created, created_by: createdBy }],
    });
  }

  private async removeContainer(id: string): Promise<void> {
    await this.engine.remove(id, { force: true, volumes: true });
    this.containers.delete(id);
  }

  /**
   * A container of the image so far, created (never started) with its root filesystem mounted
   * for FN; then committed as a layer (when FN changed anything, unless `always`), and removed.
   */
  private async withRoot(
    fn: (root: string) => Promise<void>,
    createdBy: () => string,
    always = false,
  ): Promise<void> {
    const name = `pivot-build-${randomHex(6)}`;
    await this.noteContainer(name);
    const info = await this.engine.create({
      image: await this.listedId(),
      name,
      cmd: ["/bin/sh"],
      entrypoint: [],
      labels: this.containerLabels(),
      network: "none",
    });
    this.containers.delete(name);
    this.containers.add(info.id);
    await this.ctx.containers.withLock(info.id, async () => {
      const plan = this.ctx.containers.load(info.id).overlay;
      if (!(await isMountPoint(plan.target))) await mountOverlay(plan);
      try {
        await fn(plan.target);
      } finally {
        await unmountOverlay(plan.target);
      }
    });
    if (!always && (await this.engine.diff(info.id)).length === 0) {
      await this.removeContainer(info.id);
      return;
    }
    await this.commitStep(info.id, createdBy());
  }

  /** WORKDIR: the config's working directory, the directory made if missing. */
  private async workdir(inst: Instruction): Promise<void> {
    const given = this.expand(inst.args);
    if (given === "") throw new DockerfileError("WORKDIR needs a path");
    const dir = posix.resolve(this.config().WorkingDir || "/", given);
    return this.cached(["WORKDIR", dir, createdByOf(inst)], () => this.workdirNow(inst, dir));
  }

  private async workdirNow(inst: Instruction, dir: string): Promise<void> {
    // create makes the working directory, as the RUN containers' creates will.
    await this.configStep(inst, { WorkingDir: dir }, {}, false);
    const configOnly = this.image!;
    await this.withRoot(
      async () => {},
      () => `/bin/sh -c #(nop) WORKDIR ${dir}`,
    );
    if (this.image !== configOnly) {
      // The layer replaces the config-only image: its history entry is the WORKDIR's.
      const h = [...(this.image!.config.history ?? [])];
      h.splice(h.length - 2, 1);
      this.image = await this.makeImage({
        layers: this.image!.layers,
        config: this.image!.config,
        history: h,
      });
    }
  }

  /**
   * COPY and ADD (local files only): sources from the context, or COPY --from's image, into the
   * root, owned by root or --chown's ids. The sources are read once, into a spool; the step's key
   * is the digest of the spooled streams, and a miss applies those very streams: the cache can
   * only record the content it copied (a context changed meanwhile cannot put other content under
   * this content's key). For --from, a stage rebuilt with the same files hits.
   */
  private async copy(inst: Instruction): Promise<void> {
    const words = inst.json ?? splitWords(inst.args, this.escape);
    if (words.length < 2)
      throw new DockerfileError(`${inst.keyword} needs SOURCE... DESTINATION`, {
        hint: `${inst.keyword} file.txt /app/`,
      });
    const lookup = this.lookup();
    const expanded = words.map((w) =>
      inst.json ? expandVars(w, lookup) : expandWord(w, lookup, this.escape),
    );
    const destGiven = expanded.pop()!;
    const where = `${inst.keyword} (line ${inst.line})`;
    for (const s of expanded) {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s))
        throw new DockerfileError(`${where}: ${s}: URLs are not supported by pivot build`, {
          hint: "download the file into the build context first",
        });
    }
    const chmod = inst.flags.chmod;
    if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod))
      throw new DockerfileError(`${where}: --chmod=${chmod} is not an octal mode`);
    const from = inst.flags.from;
    const spool = await Spool.create(await this.workDir());
    try {
      const read = (root: string, ignore: IgnoreRules, rootName: string) =>
        spoolSources(
          root,
          expanded.flatMap((s) => resolveSources(root, s, ignore, where, rootName)),
          ignore,
          spool,
        );
      let spooled: Awaited<ReturnType<typeof spoolSources>>;
      if (from === undefined) {
        spooled = await read(this.context, this.ignore, "the build context");
      } else {
        // COPY --from=STAGE|IMAGE: that image's files, its root mounted for the while.
        let image = this.stages.get(from.toLowerCase());
        if (image === undefined) {
          image = await this.localImage(from, `${where} --from`);
          await this.noteUse(image);
        }
        spooled = await this.withImageRoot(image, (root) =>
          read(root, new IgnoreRules([]), `--from=${from}`),
        );
      }
      const { digest } = spooled;
      return await this.cached(
        [inst.keyword, inst.flags, "content", digest, expanded, destGiven],
        () => this.applyCopy(inst, spool, spooled.spooled, digest, expanded, destGiven),
      );
    } finally {
      await spool.close();
    }
  }

  /** COPY/ADD's miss: the spooled SOURCES (of content DIGEST) applied into a new layer. */
  private async applyCopy(
    inst: Instruction,
    spool: Spool,
    sources: SpooledSource[],
    digest: string,
    expanded: string[],
    destGiven: string,
  ): Promise<void> {
    // Cancelled while the sources were read: nothing more is made.
    this.aborted();
    const where = `${inst.keyword} (line ${inst.line})`;
    const chmod = inst.flags.chmod;
    const workdir = this.config().WorkingDir || "/";
    const dest = posix.resolve(workdir, destGiven) + (/\/\.?$/.test(destGiven) ? "/" : "");
    // ADD's local archives, told from the bytes copied (not from a second read of the context).
    const archives = new Set<SpooledSource>();
    if (inst.keyword === "ADD") {
      for (const s of sources) {
        if (s.source.kind === "file" && isArchiveHead(await contentHead(spool, s, ARCHIVE_HEAD)))
          archives.add(s);
      }
    }
    const intoDir =
      archives.size > 0 ||
      dest.endsWith("/") ||
      expanded.length > 1 ||
      /[*?[]/.test(expanded.join(" ")) ||
      sources.some((s) => s.source.kind === "dir");
    if (sources.length > 1 && !dest.endsWith("/"))
      throw new DockerfileError(
        `${where}: when copying several sources, the destination must be a directory ending with /`,
        { hint: `${inst.keyword} a b ${destGiven}/` },
      );
    const kinds = new Set(sources.map((s) => (s.source.kind === "dir" ? "dir" : "file")));
    const label = sources.length > 1 ? "multi" : [...kinds][0]!;
    await this.withRoot(
      async (root) => {
        const owner = chownIds(root, inst.flags.chown, where);
        const copyOne = async (src: SpooledSource, target: string, asName: string | null) => {
          if (archives.has(src)) {
            // ADD's local archive: its content (owners as archived) into the directory.
            try {
              await extractTar(fileContent(spool, src), target, null);
              return;
            } catch (err) {
              // Not a tar archive after all (no entry read): copied as it is, as Docker does. A
              // tar archive that is malformed or hostile (`..`, a file through a symlink) fails
              // the build, as Docker's: it was copied as a plain file, silently.
              if (!(err instanceof LayerUnpackError) || err.entry !== undefined) throw err;
            }
          }
          const tar = spool.read(src.segment);
          const name = src.names[0]!;
          if (src.source.kind === "dir" || asName === null)
            await extractTar(tar, target, null, false, owner);
          else await extractTar(tar, join(target, asName), name, false, owner);
          if (chmod === undefined) return;
          if (src.source.kind === "dir") await chmodTree(target, src.names, chmod);
          else if (src.source.kind === "file") await chmodTree(target, [asName ?? name], chmod);
        };
        if (intoDir) {
          const target = ensureDir(root, dest, where);
          for (const s of sources) await copyOne(s, target, null);
          return;
        }
        // One file: into DEST if it is a directory, else as DEST.
        const host = resolveInRoot(root, dest, true);
        if (kindAt(host) === "dir") {
          await copyOne(sources[0]!, host, null);
          return;
        }
        const parent = ensureDir(root, posix.dirname(dest), where);
        await copyOne(sources[0]!, parent, posix.basename(dest));
      },
      () => `/bin/sh -c #(nop) ${inst.keyword} ${label}:${digest} in ${dest} `,
      // A layer even when nothing changed (an empty directory copied): a history row per COPY.
      true,
    );
  }

  /**
   * The build's own directory under the engine's tmp (spools, COPY --from's mounts), made at
   * first use and removed by cleanup.
   */
  private async workDir(): Promise<string> {
    if (this.work === null) {
      // Named after the build's record: a killed build's directory is found from it.
      const dir = buildRunDir(this.store, this.record!.id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      this.work = dir;
    }
    return this.work;
  }

  /** FN with IMAGE's root filesystem mounted (for reading) in a directory of the build's. */
  private async withImageRoot<T>(image: StoredImage, fn: (root: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(await this.workDir(), "from-"));
    this.mountDirs.add(dir);
    try {
      const plan = await mountImageRootfs(this.store, image, dir);
      try {
        return await fn(plan.target);
      } finally {
        await unmountOverlay(plan.target);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      this.mountDirs.delete(dir);
    }
  }

  /** Removes the build's containers and its intermediate images; keeps the result. */
  async cleanup(): Promise<void> {
    for (const dir of this.mountDirs) {
      await unmountOverlay(join(dir, "merged"), { lazy: true }).catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
    if (this.work !== null) await rm(this.work, { recursive: true, force: true }).catch(() => {});
    for (const c of [...this.containers]) {
      await this.engine.remove(c, { force: true, volumes: true }).catch(() => {});
    }
    const keep = this.result?.manifestDigest;
    let removed = 0;
    for (const d of this.made) {
      if (d === keep) continue;
      // Named meanwhile (someone tagged an intermediate image by its id): it is theirs now.
      const image = await this.store.resolve(d).catch(() => null);
      if (image === null || image.names.length > 0) continue;
      // No event: Docker's classic builder keeps its intermediates, never announced either.
      await this.store.removeManifest(d, { events: false }).catch(() => {});
      removed++;
    }
    // The record goes before the collection: it would keep the images just taken out.
    if (this.record !== null) removeBuildRun(this.store, this.record.id);
    if (removed > 0) await collectEngineGarbage(this.engine).catch(() => {});
  }
}

/** An error of step INST, saying which: Docker's own messages (BuildError) go as they are. */
function stepError(inst: Instruction, err: unknown): unknown {
  if (err instanceof BuildError || !(err instanceof PivotError)) return err;
  if (err.message.includes(`line ${inst.line}`)) return err;
  const Kind = err instanceof DockerfileError ? DockerfileError : EngineError;
  return new Kind(`${inst.keyword} (line ${inst.line}): ${err.message}`, {
    ...(err.hint ? { hint: err.hint } : {}),
    cause: err,
  });
}

/** The history entry of a config-only instruction (HEALTHCHECK's is its config, as Docker's). */
function createdByOf(inst: Instruction): string {
  const text =
    inst.keyword === "HEALTHCHECK"
      ? healthHistoryText(healthcheck(inst))
      : inst.original.replace(/\s+/g, " ");
  return `/bin/sh -c #(nop)  ${text}`;
}

/** $VAR and ${VAR} in a JSON-form word (no quotes to remove). */
function expandVars(word: string, lookup: Lookup): string {
  return expandWord(word.replace(/(["'\\])/g, "\\$1"), lookup);
}
