// A cache of compiled seccomp filters. libseccomp turns a profile into classic BPF in the container's
// init (Op.SeccompInit ... Op.SeccompLoad): for Docker's default profile that is ~380 plan steps
// and tens of milliseconds per container. The first container of a profile also exports the BPF
// (Op.SeccompExport, Event.SeccompProgram); it is stored here, and later containers with the same
// profile load it as it is (Op.SeccompLoadProgram), without libseccomp, and without validating and
// compiling the profile again.
//
// Policy lives here. An entry is keyed by a hash of the profile as given (JSON; it was validated
// when the entry was made, and compileSeccomp is a function of it alone), the kernel release, the
// architecture and the launcher binary (path, inode, size, mtime). The entry records libseccomp's
// library file (inode, size, mtime), or the launcher's when libseccomp is linked into it (the
// static launcher native/Makefile builds): an upgraded libseccomp misses and compiles afresh. Profiles
// with SCMP_ACT_NOTIFY are never cached (the notification fd comes from libseccomp's load).
// The directory is the runtime's state root: on tmpfs (/run) it is emptied by a reboot.
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { digestOfBuffer } from "../image/digest.ts";
import { runningRelease } from "../util/kernel.ts";
import { randomHex } from "../util/random.ts";
import type { CompiledSeccomp } from "./seccomp.ts";

/** What a cached filter carries into the plan. */
export interface CachedSeccompFilter {
  /** The kernel's SECCOMP_FILTER_FLAG_* bits libseccomp would have loaded it with. */
  flags: number;
  /** struct sock_filter[] as bytes. */
  program: Uint8Array;
  /** For people: the profile's rule count and default action. */
  rules: number;
  defaultText: string;
  libseccomp: string;
}

/** What the launcher reported after Op.SeccompExport. */
export interface SeccompProgramReport {
  flags: number;
  hex: string;
  version: string;
  library: string;
}

interface Entry {
  v: 1;
  flags: number;
  program: string; // base64
  rules: number;
  defaultText: string;
  libseccomp: { version: string; path: string; ino: number; size: number; mtimeMs: number };
}

function fileId(path: string): { ino: number; size: number; mtimeMs: number } | null {
  try {
    const st = statSync(path);
    return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return null;
  }
}

export class SeccompCache {
  private launcherIdOf: string | null | undefined;
  constructor(
    readonly dir: string,
    private readonly launcher: string,
  ) {}

  /** The launcher binary's identity, part of every key; looked up only when a profile is keyed. */
  private get launcherId(): string | null {
    if (this.launcherIdOf === undefined) {
      const id = fileId(this.launcher);
      this.launcherIdOf = id ? `${this.launcher}:${id.ino}:${id.size}:${id.mtimeMs}` : null;
    }
    return this.launcherIdOf;
  }

  /**
   * The key of a profile (linux.seccomp as given), or null if it cannot be cached: SHA-256 by
   * Bun's hasher (synchronous) or Web Crypto (digestOfBuffer), as importing node:crypto costs
   * ~4 ms of start-up under Bun.
   */
  async key(raw: unknown): Promise<string | null> {
    if (raw === undefined || raw === null || this.launcherId === null) return null;
    let text: string;
    try {
      text = JSON.stringify(raw);
    } catch {
      return null; // e.g. a BigInt in a config built in memory
    }
    // os.release() and os.arch() as they were, without loading node:os (~0.3 ms).
    const input = `pivot-seccomp-v1\0${runningRelease()}\0${process.arch}\0${this.launcherId}\0${text}`;
    return (await digestOfBuffer(Buffer.from(input), "sha256")).slice("sha256:".length);
  }

  private path(key: string): string {
    return join(this.dir, `${key}.json`);
  }

  /** The cached filter of a key, if there is one and libseccomp is still the one that made it. */
  lookup(key: string): CachedSeccompFilter | null {
    let e: Entry;
    try {
      e = JSON.parse(readFileSync(this.path(key), "utf8")) as Entry;
    } catch {
      return null;
    }
    if (e?.v !== 1 || typeof e.program !== "string" || typeof e.flags !== "number") return null;
    const lib = fileId(e.libseccomp.path);
    if (
      !lib ||
      lib.ino !== e.libseccomp.ino ||
      lib.size !== e.libseccomp.size ||
      lib.mtimeMs !== e.libseccomp.mtimeMs
    ) {
      return null;
    }
    const program = Buffer.from(e.program, "base64");
    if (program.length === 0 || program.length % 8 !== 0) return null;
    return {
      flags: e.flags,
      program,
      rules: e.rules,
      defaultText: e.defaultText,
      libseccomp: e.libseccomp.version,
    };
  }

  /** Whether a compiled profile may be cached. */
  static cacheable(seccomp: CompiledSeccomp): boolean {
    return !seccomp.usesNotify;
  }

  /** Stores what the launcher exported for a key; failures only cost the cache. */
  store(key: string, seccomp: CompiledSeccomp, report: SeccompProgramReport): void {
    // No library file: libseccomp is linked into the launcher (static), whose file is the one
    // to watch (its identity is part of the key as well).
    const library = report.library === "" ? this.launcher : report.library;
    if (!library.startsWith("/") || !/^([0-9a-f]{16})+$/.test(report.hex)) return;
    const lib = fileId(library);
    if (!lib) return;
    const entry: Entry = {
      v: 1,
      flags: report.flags,
      program: Buffer.from(report.hex, "hex").toString("base64"),
      rules: seccomp.rules.length,
      defaultText: seccomp.defaultText,
      libseccomp: { version: report.version, path: library, ...lib },
    };
    const tmp = `${this.path(key)}.tmp-${process.pid}-${randomHex(4)}`;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
      renameSync(tmp, this.path(key));
    } catch {
      rmSync(tmp, { force: true });
    }
  }
}
