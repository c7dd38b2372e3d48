// The runtime's record of each container: <root>/<id>/state.json, plus the exec fifo.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { ContainerIdError, PivotError } from "../errors.ts";
import type { ContainerStatus, NamespaceType, Spec } from "../oci/spec.ts";

export const DEFAULT_ROOT = "/run/pivot-runtime";

/** What the runtime keeps about a container between commands. */
export interface ContainerRecord {
  id: string;
  /** Host pid of the container's init; 0 while creating. */
  pid: number;
  /** The init's start time (field 22 of /proc/PID/stat), to tell it from a reused pid. */
  pidStartTime: string;
  bundle: string;
  rootfs: string;
  created: string;
  annotations: Record<string, string>;
  /** Hierarchy → directory of the container's cgroup. */
  cgroupPaths: Record<string, string>;
  namespaces: NamespaceType[];
  /** The config's hooks and process defaults, kept for poststop hooks and exec. */
  spec: Spec;
  /** Set by `run` once it has released the init (`start` removes the exec fifo instead). */
  started?: boolean;
  /** Made by `run`: the init waits for that process to start it (SyncPoint.Start), no exec fifo. */
  startedByRun?: boolean;
}

const ID_PATTERN = /^[A-Za-z0-9_+\-.]+$/;

/** Container ids become directory names: allow only a safe alphabet, as runc does. */
export function validateId(id: string): void {
  if (id === "") throw new ContainerIdError("container id must not be empty");
  if (id.length > 255)
    throw new ContainerIdError(`container id is too long (${id.length} characters, at most 255)`);
  if (!ID_PATTERN.test(id) || id === "." || id === "..") {
    throw new ContainerIdError(`invalid container id "${id}"`, {
      hint: "use letters, digits and _ + - . only",
    });
  }
}

export class StateStore {
  constructor(readonly root: string = DEFAULT_ROOT) {}

  dir(id: string): string {
    validateId(id);
    return join(this.root, id);
  }

  execFifo(id: string): string {
    return join(this.dir(id), "exec.fifo");
  }

  /** Claims the id atomically: fails if a container with this id exists. */
  claim(id: string): string {
    const dir = this.dir(id);
    try {
      mkdirSync(this.root, { recursive: true, mode: 0o711 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new PivotError(`cannot create the state directory ${this.root} (${code})`, {
        hint:
          process.geteuid?.() === 0
            ? "pass another directory with --root"
            : "not running as root: set XDG_RUNTIME_DIR to a directory of yours, or pass --root DIR",
      });
    }
    try {
      mkdirSync(dir, { mode: 0o711 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") {
        throw new ContainerIdError(`container "${id}" already exists`, {
          hint: `choose another id, or remove it with \`delete ${id}\``,
        });
      }
      throw err;
    }
    return dir;
  }

  save(record: ContainerRecord): void {
    const dir = this.dir(record.id);
    const tmp = join(dir, `.state.json.${process.pid}`);
    writeFileSync(tmp, JSON.stringify(record));
    renameSync(tmp, join(dir, "state.json"));
  }

  load(id: string): ContainerRecord {
    const dir = this.dir(id);
    let text: string;
    try {
      text = readFileSync(join(dir, "state.json"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new ContainerIdError(`container "${id}" does not exist`, {
          hint: "`list` shows the containers there are",
        });
      }
      throw err;
    }
    let record: ContainerRecord;
    try {
      record = JSON.parse(text) as ContainerRecord;
    } catch {
      throw new PivotError(
        `the state of container "${id}" (${join(dir, "state.json")}) is corrupt`,
        {
          hint: `remove it with \`delete --force ${id}\``,
        },
      );
    }
    return record;
  }

  exists(id: string): boolean {
    return existsSync(join(this.dir(id), "state.json"));
  }

  remove(id: string): void {
    const dir = this.dir(id);
    // What the runtime puts there, directly; anything else (a crashed writer's temporary file)
    // falls back to a recursive removal.
    for (const name of ["state.json", "exec.fifo"]) {
      try {
        unlinkSync(join(dir, name));
      } catch {}
    }
    try {
      rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        rmSync(dir, { recursive: true, force: true });
    }
  }

  ids(): string[] {
    try {
      return readdirSync(this.root).filter(
        (name) => ID_PATTERN.test(name) && existsSync(join(this.root, name, "state.json")),
      );
    } catch {
      return [];
    }
  }
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), and the process state letter. */
export function procStat(pid: number): { startTime: string; state: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: rest[0] ?? "", startTime: rest[19] ?? "" };
}

/** Is the container's init still the same live process? */
export function initAlive(record: ContainerRecord): boolean {
  if (record.pid <= 0) return false;
  const stat = procStat(record.pid);
  if (!stat || stat.startTime !== record.pidStartTime) return false;
  return stat.state !== "Z" && stat.state !== "X";
}

/**
 * Whether the container's process was released: `run` records it; for `create`, the exec fifo
 * exists from before the init's pid is recorded until `start` releases the init and removes it.
 */
export function hasStarted(record: ContainerRecord, fifoPath: string): boolean {
  if (record.startedByRun) return record.started === true;
  return record.pid > 0 && !existsSync(fifoPath);
}

/** The status as runtime.md defines it, derived from the process and the exec fifo. */

export function deriveStatus(
  record: ContainerRecord,
  fifoPath: string,
  frozen: () => boolean,
): ContainerStatus {
  if (record.pid <= 0) return "creating";
  if (!initAlive(record)) return "stopped";
  // `run`'s container is created until that run starts it; otherwise until `start` opens the fifo.
  if (!hasStarted(record, fifoPath)) return "created";
  if (frozen()) return "paused";
  return "running";
}
