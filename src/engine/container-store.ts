// The engine's containers on disk, one directory per container, every file written by temporary
// file + rename:
//   <root>/containers/<id>/container.json   what the container is (written once at create)
//   <root>/containers/<id>/state.json       its latest start: monitor, pid, times
//   <root>/containers/<id>/exit             its exit code, written by the monitor
//   <root>/containers/<id>/config.json      the OCI config (the directory is the bundle)
//   <root>/containers/<id>/{upper,work,merged}, hosts, hostname, resolv.conf, ctr.log
//   <root>/containers/<id>/restart.json, manually-stopped   restart policies (restart-state.ts)
//   <root>/names/<name> → <id>              a symlink: created atomically, so names are unique
//   <root>/locks/container-<id>.lock        start, cleanup and remove of one container serialized
//   <root>/exits/<id>                       the exit code of a removed container, for `wait`
// Status is derived from these and the runtime's own state, never cached (container-runtime.ts).
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { withFileLock } from "../image/lock.ts";
import type { OverlayPlan } from "../image/overlay.ts";
import type { HealthConfig } from "../image/types.ts";
import type { Resources } from "../oci/spec.ts";
import { randomBytesArray, randomHex } from "../util/random.ts";
import { EngineError } from "./errors.ts";
import type { ContainerOptions, MountSpec } from "./types.ts";

/** What the engine keeps about a container (container.json). */
export interface ContainerRecord {
  id: string;
  name: string;
  image: string;
  imageId: string;
  created: string;
  options: ContainerOptions;
  command: string[];
  stopSignal: string;
  overlay: OverlayPlan;
  volumes: { name: string; target: string; anonymous: boolean }[];
  /** The mounts --volumes-from gave it, as resolved at create (a later --volumes-from of it
   *  gets them too). Absent: none, or a record of an older version. */
  inheritedMounts?: MountSpec[];
  labels: Record<string, string>;
  /** The image's layers, bottom first, with their history (absent in records of older versions). */
  layers?: { diffId: string; link: string; createdBy?: string }[];
  /**
   * Created by a run (`pivot run`, `Engine.run`), which starts it under the same hold of its lock:
   * still Created with the lock free, that run died before the start (recovery removes it if --rm).
   */
  createdByRun?: boolean;
  /** Its health check: the options' over the image's (Docker's Config.Healthcheck); absent: none. */
  healthcheck?: HealthConfig;
  /**
   * The linux.resources an update decided and config.json has yet to get (its writer was killed
   * in between): the next start or update writes them first (pending-update.ts).
   */
  pendingResources?: Resources;
}

export interface RunState {
  /** Names this start: the monitor's cleanup of an earlier run must not touch a later one. */
  runId: string;
  startedAt: string;
  monitor: "conmon" | "inline";
  monitorPid: number;
  monitorStart: string;
  pid: number;
  finishedAt?: string;
  /** The container's cgroup directories, so they can go even when the runtime's state is lost. */
  cgroupPaths?: Record<string, string>;
}

/** 2^64: what JSON.parse makes of 18446744073709551615 (RLIM_INFINITY, --ulimit NAME=-1). */
const UINT64_MAX_READ = 2 ** 64;

/**
 * VALUE as JSON text (indented, with a final newline) in which 2^64 is written back as
 * 18446744073709551615: JSON.stringify wrote 18446744073709552000, out of a uint64's range, and
 * runc and crun refused such a config.json (process.rlimits of --ulimit NAME=-1).
 */
export function jsonText(value: unknown): string {
  const mark = `pivot-uint64-max-${randomHex(8)}`;
  const text = JSON.stringify(value, (_key, v) => (v === UINT64_MAX_READ ? mark : v), 2);
  return `${text.replaceAll(`"${mark}"`, "18446744073709551615")}\n`;
}

export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}-${randomHex(4)}`;
  writeFileSync(tmp, jsonText(value));
  renameSync(tmp, path);
}

export function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

const ADJECTIVES = [
  "brave",
  "calm",
  "eager",
  "fancy",
  "gentle",
  "happy",
  "jolly",
  "keen",
  "lucid",
  "mellow",
  "nifty",
  "quiet",
  "swift",
  "witty",
  "zen",
];
const NOUNS = [
  "curie",
  "darwin",
  "euler",
  "fermi",
  "gauss",
  "hopper",
  "kepler",
  "lovelace",
  "noether",
  "pascal",
  "ritchie",
  "turing",
  "wozniak",
  "yonath",
  "zuse",
];

export function randomName(): string {
  const b = randomBytesArray(3);
  return `${ADJECTIVES[b[0]! % ADJECTIVES.length]}_${NOUNS[b[1]! % NOUNS.length]}_${b[2]!.toString(16).padStart(2, "0")}`;
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The per-container files under <root>: records, names, locks and kept exit codes. */
export class ContainerStore {
  readonly containersDir: string;
  readonly namesDir: string;

  constructor(readonly root: string) {
    this.containersDir = join(root, "containers");
    this.namesDir = join(root, "names");
  }

  dir(id: string): string {
    return join(this.containersDir, id);
  }

  /** Finds a container by full id, name, or unique id prefix. */
  resolveId(ref: string): string {
    if (/^[0-9a-f]{64}$/.test(ref) && existsSync(join(this.dir(ref), "container.json"))) return ref;
    if (NAME_PATTERN.test(ref)) {
      try {
        const id = readlinkSync(join(this.namesDir, ref.replace(/^\//, "")));
        if (existsSync(join(this.dir(id), "container.json"))) return id;
      } catch {}
    }
    if (/^[0-9a-f]{1,64}$/.test(ref)) {
      const hits = this.ids().filter((id) => id.startsWith(ref));
      if (hits.length === 1) return hits[0]!;
      if (hits.length > 1) {
        throw new EngineError(`"${ref}" matches ${hits.length} containers`, {
          hint: "give more characters of the id, or the name",
        });
      }
    }
    throw new EngineError(`no such container: ${ref}`, {
      hint: "`pivot ps -a` lists the containers",
    });
  }

  ids(): string[] {
    try {
      return readdirSync(this.containersDir).filter(
        (n) => /^[0-9a-f]{64}$/.test(n) && existsSync(join(this.dir(n), "container.json")),
      );
    } catch {
      return [];
    }
  }

  load(id: string): ContainerRecord {
    const r = readJson<ContainerRecord>(join(this.dir(id), "container.json"));
    if (!r) throw new EngineError(`no such container: ${id}`);
    return r;
  }

  runState(id: string): RunState | null {
    return readJson<RunState>(join(this.dir(id), "state.json"));
  }

  /** The recorded exit code; `dir` reads it from a container directory moved aside for removal. */
  exitCode(id: string, dir = this.dir(id)): number | null {
    try {
      const text = readFileSync(join(dir, "exit"), "utf8").trim();
      return text === "" ? null : Number(text);
    } catch {
      return null;
    }
  }

  exitTime(id: string): string | null {
    try {
      return lstatSync(join(this.dir(id), "exit")).mtime.toISOString();
    } catch {
      return null;
    }
  }

  // ---- names ----

  claimName(name: string, id: string): void {
    if (!NAME_PATTERN.test(name)) {
      throw new EngineError(`invalid container name "${name}"`, {
        hint: "names use letters, digits and _ . - and start with a letter or digit",
      });
    }
    mkdirSync(this.namesDir, { recursive: true, mode: 0o700 });
    const link = join(this.namesDir, name);
    try {
      symlinkSync(id, link);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let owner = "";
      try {
        owner = readlinkSync(link);
      } catch {}
      if (
        owner &&
        !existsSync(join(this.dir(owner), "container.json")) &&
        !existsSync(this.dir(owner))
      ) {
        // A name left behind by a container that is gone (a crash mid-remove): take it over.
        unlinkSync(link);
        this.claimName(name, id);
        return;
      }
      throw new EngineError(
        `the container name "${name}" is already in use by container ${owner.slice(0, 12)}`,
        { hint: `remove that container (\`pivot rm ${name}\`) or choose another name` },
      );
    }
  }

  nameOwner(name: string): string | null {
    try {
      return readlinkSync(join(this.namesDir, name));
    } catch {
      return null;
    }
  }

  releaseName(name: string, id: string): void {
    const link = join(this.namesDir, name);
    try {
      if (readlinkSync(link) === id) unlinkSync(link);
    } catch {}
  }

  /** Serializes start, cleanup and remove of one container, across processes. */
  withLock<T>(id: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    const dir = join(this.root, "locks");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return withFileLock(join(dir, `container-${id}.lock`), fn, {
      what: `container ${id}`,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  }

  // ---- exit codes of removed containers ----

  /** The exit code of a removed container, kept for a while in <root>/exits/<id>. */
  removedExitCode(id: string): number | null {
    try {
      const text = readFileSync(join(this.root, "exits", id), "utf8").trim();
      return text === "" ? null : Number(text);
    } catch {
      return null;
    }
  }

  /**
   * Keeps the exit code of a container being removed (`code`, else its exit file's), for `wait`;
   * drops ones older than 10 minutes, looking at most once a minute (exits/.swept's time): every
   * removal listing them all made a run of N --rm containers cost N² lstat calls.
   */
  keepExitCode(id: string, code: number | null = this.exitCode(id)): void {
    const dir = join(this.root, "exits");
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (code !== null) writeFileSync(join(dir, id), String(code));
      const now = Date.now();
      const mark = join(dir, ".swept");
      try {
        if (lstatSync(mark).mtimeMs > now - 60_000) return;
      } catch {}
      writeFileSync(mark, "");
      const old = now - 10 * 60_000;
      for (const n of readdirSync(dir)) {
        try {
          if (lstatSync(join(dir, n)).mtimeMs < old) rmSync(join(dir, n), { force: true });
        } catch {}
      }
    } catch {}
  }
}
