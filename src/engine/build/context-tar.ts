// COPY and ADD's read of the build context: a tar stream made here from file descriptors, each
// directory opened O_NOFOLLOW below the one before (through /proc/self/fd), so that a context
// changed while the build reads it (a directory swapped for a symlink to /etc) can make the read
// fail but never lead outside the context. GNU tar, given the entries' paths, followed symlinks in
// their leading components.
import { closeSync, constants, lstatSync, openSync, readlinkSync, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { DockerfileError } from "./dockerfile.ts";

const BLOCK = 512;
const CHUNK = 1 << 20;
const NOFOLLOW_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const NOFOLLOW_FILE =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** What one archive member says about itself. */
export interface MemberHeader {
  name: string;
  /** tar's type flag: "0" file, "1" hard link, "2" symlink, "3" char, "4" block, "5" dir, "6" fifo. */
  type: "0" | "1" | "2" | "3" | "4" | "5" | "6";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: Buffer;
  devmajor?: number;
  devminor?: number;
}

function octalField(h: Buffer, value: number, at: number, width: number): boolean {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 8 ** (width - 1)) return false;
  h.write(`${value.toString(8).padStart(width - 1, "0")}\0`, at, width, "ascii");
  return true;
}

/** One PAX record: "LEN key=value\n", LEN counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function padTo(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** A ustar header block, preceded by a PAX extended header when a field does not fit. */
export function memberHeader(m: MemberHeader): Buffer {
  const name = Buffer.from(m.name);
  const pax: Buffer[] = [];
  const h = Buffer.alloc(BLOCK);
  if (name.length <= 100) name.copy(h, 0);
  else {
    pax.push(paxRecord("path", name));
    name.subarray(0, 100).copy(h, 0);
  }
  octalField(h, m.mode & 0o7777, 100, 8);
  if (!octalField(h, m.uid, 108, 8)) pax.push(paxRecord("uid", Buffer.from(String(m.uid))));
  if (!octalField(h, m.gid, 116, 8)) pax.push(paxRecord("gid", Buffer.from(String(m.gid))));
  if (!octalField(h, m.size, 124, 12)) {
    pax.push(paxRecord("size", Buffer.from(String(m.size))));
    octalField(h, 0, 124, 12);
  }
  const mtime = Math.max(0, Math.floor(m.mtime));
  if (!octalField(h, mtime, 136, 12)) pax.push(paxRecord("mtime", Buffer.from(String(mtime))));
  h.write(m.type, 156, "ascii");
  if (m.linkname) {
    if (m.linkname.length <= 100) m.linkname.copy(h, 157);
    else pax.push(paxRecord("linkpath", m.linkname));
  }
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  octalField(h, m.devmajor ?? 0, 329, 8);
  octalField(h, m.devminor ?? 0, 337, 8);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  if (pax.length === 0) return h;
  const body = Buffer.concat(pax);
  const x = memberHeader({
    name: "././@PaxHeader",
    type: "0",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime,
  });
  x.write("x", 156, "ascii");
  // The type changed after the checksum: computed again.
  x.fill(0x20, 148, 156);
  let xsum = 0;
  for (const b of x) xsum += b;
  x.write(`${xsum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return Buffer.concat([x, body, padTo(body.length), h]);
}

function changed(name: string, why: string): DockerfileError {
  return new DockerfileError(
    `reading the build context failed: ${name} changed while it was read (${why})`,
    { hint: "build from a context nothing else writes to meanwhile" },
  );
}

/** The directory ROOT/REL, opened O_NOFOLLOW component by component below ROOT. */
function openDirBelow(root: string, rel: string): number {
  let fd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  for (const part of rel.split("/").filter((p) => p !== "" && p !== ".")) {
    let next: number;
    try {
      next = openSync(`/proc/self/fd/${fd}/${part}`, NOFOLLOW_DIR);
    } catch (err) {
      closeSync(fd);
      throw changed(rel, (err as NodeJS.ErrnoException).code ?? String(err));
    }
    closeSync(fd);
    fd = next;
  }
  return fd;
}

/** The file ROOT/REL opened for reading, through descriptors (never a symlink on the way). */
export async function openFileBelow(root: string, rel: string) {
  const slash = rel.lastIndexOf("/");
  const dir = openDirBelow(root, slash < 0 ? "" : rel.slice(0, slash));
  try {
    return await open(`/proc/self/fd/${dir}/${rel.slice(slash + 1)}`, NOFOLLOW_FILE).catch(
      (err: NodeJS.ErrnoException) => {
        throw changed(rel, err.code ?? String(err));
      },
    );
  } finally {
    closeSync(dir);
  }
}

/** Told each member and the bytes of its content as they are archived (the cache key's digest). */
export interface TarObserver {
  member(m: MemberHeader): void;
  data(chunk: Uint8Array): void;
}

/**
 * A tar stream of NAMES (relative to the directory ROOT/BASE, parents before their children, as
 * listTree lists them), owned by OWNER as COPY makes its files, symlinks archived as symlinks,
 * files linked to one archived before as hard links, sockets left out (as GNU tar does). Each
 * entry is reached through its parent's descriptor and opened O_NOFOLLOW: what changed since it
 * was listed fails the stream, what was swapped for a symlink is never followed.
 */
export async function* descriptorTar(
  root: string,
  base: string,
  names: readonly string[],
  owner: { uid: number; gid: number },
  /** Told what is archived, member by member, from the very headers and bytes emitted. */
  observe?: TarObserver,
): AsyncGenerator<Uint8Array> {
  const header = (m: MemberHeader): Buffer => {
    observe?.member(m);
    return memberHeader(m);
  };
  const baseFd = openDirBelow(root, base);
  // The directories open now, deepest last: names come parents first, depth first.
  const dirs: { rel: string; fd: number }[] = [{ rel: "", fd: baseFd }];
  const seen = new Map<string, string>(); // dev:ino of a multiply linked file -> its name
  try {
    for (const name of names) {
      const slash = name.lastIndexOf("/");
      const parent = slash < 0 ? "" : name.slice(0, slash);
      const leaf = name.slice(slash + 1);
      while (dirs.length > 1 && dirs.at(-1)!.rel !== parent) closeSync(dirs.pop()!.fd);
      if (dirs.at(-1)!.rel !== parent) {
        // Not below the last directory (listTree's order puts it there): opened from the base.
        dirs.push({ rel: parent, fd: openDirBelow(root, base ? `${base}/${parent}` : parent) });
      }
      const at = `/proc/self/fd/${dirs.at(-1)!.fd}/${leaf}`;
      // lstat through the parent's descriptor: the last component is never followed.
      let st: Stats;
      try {
        st = lstatSync(at);
      } catch (err) {
        throw changed(name, (err as NodeJS.ErrnoException).code ?? String(err));
      }
      const common = {
        name,
        mode: st.mode,
        uid: owner.uid,
        gid: owner.gid,
        mtime: st.mtimeMs / 1000,
      };
      if (st.isDirectory()) {
        let dfd: number;
        try {
          dfd = openSync(at, NOFOLLOW_DIR);
        } catch (err) {
          throw changed(name, (err as NodeJS.ErrnoException).code ?? String(err));
        }
        dirs.push({ rel: name, fd: dfd });
        yield header({ ...common, type: "5", size: 0 });
        continue;
      }
      if (st.isSymbolicLink()) {
        let target: Buffer;
        try {
          target = readlinkSync(at, { encoding: "buffer" });
        } catch (err) {
          throw changed(name, (err as NodeJS.ErrnoException).code ?? String(err));
        }
        yield header({ ...common, type: "2", size: 0, linkname: target });
        continue;
      }
      if (st.isSocket()) continue;
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? seen.get(key) : undefined;
      if (first !== undefined) {
        yield header({ ...common, type: "1", size: 0, linkname: Buffer.from(first) });
        continue;
      }
      if (st.nlink > 1) seen.set(key, name);
      if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
        const type = st.isFIFO() ? "6" : st.isCharacterDevice() ? "3" : "4";
        const rdev = BigInt(st.rdev);
        const devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
        const devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
        yield header({ ...common, type, size: 0, devmajor, devminor });
        continue;
      }
      // A regular file: opened again to read, and checked to be the one looked at.
      const fh = await open(at, NOFOLLOW_FILE).catch((err: NodeJS.ErrnoException) => {
        throw changed(name, err.code ?? String(err));
      });
      try {
        const now = await fh.stat();
        if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev)
          throw changed(name, "no longer the file listed");
        yield header({ ...common, type: "0", size: now.size });
        let left = now.size;
        while (left > 0) {
          const buf = Buffer.alloc(Math.min(CHUNK, left));
          const { bytesRead } = await fh.read(buf, 0, buf.length, now.size - left);
          if (bytesRead === 0) throw changed(name, "it shrank");
          left -= bytesRead;
          const chunk = buf.subarray(0, bytesRead);
          observe?.data(chunk);
          yield chunk;
        }
        const pad = padTo(now.size);
        if (pad.length > 0) yield pad;
      } finally {
        await fh.close();
      }
    }
    yield Buffer.alloc(BLOCK * 2);
  } finally {
    for (const d of dirs) closeSync(d.fd);
  }
}
