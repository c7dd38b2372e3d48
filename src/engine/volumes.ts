// Named volumes: <root>/volumes/<name>/_data, with volume.json beside it (as Docker lays them out).
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { PivotError } from "../errors.ts";
import { randomHex } from "../util/random.ts";
import type { DockerVolume, VolumeInfo } from "./types.ts";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export class VolumeError extends PivotError {}

/** A volume's record with its driver's fields: the local driver's, with no options. */
function withDriver(
  stored: Omit<VolumeInfo, "driver" | "scope" | "options"> & { options?: Record<string, string> },
): VolumeInfo {
  return { ...stored, driver: "local", scope: "local", options: stored.options ?? {} };
}

/**
 * V as Docker's `volume inspect` prints it: its fields (CreatedAt in RFC 3339 to the second, as
 * Go's time.RFC3339), then Pivot's own, as a container's inspect has them.
 */
export function dockerVolume(v: VolumeInfo): DockerVolume {
  return {
    CreatedAt: v.created.replace(/\.\d+Z$/, "Z"),
    Driver: v.driver,
    Labels: v.labels,
    Mountpoint: v.mountpoint,
    Name: v.name,
    Options: v.options,
    Scope: v.scope,
    ...v,
  };
}

export class VolumeStore {
  constructor(
    readonly root: string,
    /** Told of each volume made and removed (the engine records them as its events). */
    private readonly onEvent?: (action: "create" | "destroy", name: string) => void,
  ) {}

  dir(name: string): string {
    if (!NAME.test(name) || name.length > 255) {
      throw new VolumeError(`invalid volume name "${name}"`, {
        hint: "volume names use letters, digits and _ . - and start with a letter or digit",
      });
    }
    return join(this.root, name);
  }

  /** Creates a volume; an existing one is returned as it is (as `docker volume create` does). */
  create(
    name?: string,
    options: { labels?: Record<string, string>; anonymous?: boolean } = {},
  ): { info: VolumeInfo; created: boolean } {
    const volName = name ?? randomHex(32);
    const dir = this.dir(volName);
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    try {
      mkdirSync(dir, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // Another process may be creating it right now: wait for its volume.json.
      for (let i = 0; i < 200 && !existsSync(join(dir, "volume.json")); i++) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
      return { info: this.inspect(volName), created: false };
    }
    mkdirSync(join(dir, "_data"), { mode: 0o755 });
    const info: VolumeInfo = withDriver({
      name: volName,
      mountpoint: join(dir, "_data"),
      created: new Date().toISOString(),
      labels: options.labels ?? {},
      anonymous: options.anonymous ?? false,
    });
    const tmp = join(dir, `.volume.json.${process.pid}`);
    writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
    renameSync(tmp, join(dir, "volume.json"));
    this.onEvent?.("create", volName);
    return { info, created: true };
  }

  exists(name: string): boolean {
    return existsSync(join(this.dir(name), "volume.json"));
  }

  inspect(name: string): VolumeInfo {
    try {
      return withDriver(JSON.parse(readFileSync(join(this.dir(name), "volume.json"), "utf8")));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new VolumeError(`no such volume: ${name}`, {
          hint: "`pivot volume ls` lists the volumes; `pivot volume create NAME` makes one",
        });
      }
      throw err;
    }
  }

  list(): VolumeInfo[] {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return [];
    }
    const out: VolumeInfo[] = [];
    for (const name of names) {
      if (!NAME.test(name)) continue;
      try {
        out.push(this.inspect(name));
      } catch {
        // Being created or removed.
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Removes a volume; `inUseBy` names the containers using it (then it is refused). */
  remove(name: string, inUseBy: string[] = []): void {
    this.inspect(name);
    if (inUseBy.length > 0) {
      throw new VolumeError(
        `volume ${name} is in use by container${inUseBy.length > 1 ? "s" : ""} ${inUseBy.join(", ")}`,
        { hint: "remove the containers first (`pivot rm`)" },
      );
    }
    const dir = this.dir(name);
    const gone = join(this.root, `.removing-${name}-${process.pid}`);
    renameSync(dir, gone);
    rmSync(gone, { recursive: true, force: true });
    this.onEvent?.("destroy", name);
  }
}
