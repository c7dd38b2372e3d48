/**
 * A streaming reader of tar archives (POSIX ustar, PAX extended headers, GNU
 * long names and base-256 numbers), written for hostile input: every length is
 * bounded, every header checksummed, and nothing is interpreted here beyond
 * the format. Paths are returned raw; making them safe is the unpacker's job.
 */

export class TarFormatError extends Error {
  /** The entry being read when the problem was found, if any. */
  readonly entry: string | undefined;
  constructor(reason: string, entry?: string) {
    super(reason);
    this.name = "TarFormatError";
    this.entry = entry;
  }
}

export type TarEntryType =
  | "file"
  | "hardlink"
  | "symlink"
  | "chardev"
  | "blockdev"
  | "directory"
  | "fifo";

export interface TarEntry {
  /** Member name as stored (PAX `path` or GNU long name applied). */
  path: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content that follow (0 for all but regular files). */
  size: number;
  /** Seconds since the epoch, possibly fractional (PAX). */
  mtime: number;
  atime: number | undefined;
  /** Target of a symlink or hardlink. */
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` / `LIBARCHIVE.xattr.*`. */
  xattrs: Map<string, Buffer>;
}

const BLOCK = 512;
/** Upper bound for PAX and GNU long-name bodies (they are held in memory). */
const MAX_META_SIZE = 1 << 20;
/** Upper bound for any entry size (8 EiB would overflow a JS number). */
const MAX_SAFE_SIZE = Number.MAX_SAFE_INTEGER;

export class TarReader {
  private readonly source: AsyncIterator<Uint8Array>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private sourceDone = false;
  /** Unread content + padding of the current entry. */
  private remaining = 0;
  private padding = 0;
  private globalPax = new Map<string, Buffer>();
  private ended = false;
  private current: string | undefined;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  /** Reads the next entry's header; null at the end of the archive. */
  async next(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.skipRest();
    let pax = new Map<string, Buffer>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.readExact(BLOCK, true);
      if (block === null) {
        // EOF without the end-of-archive blocks: accepted, as GNU tar does,
        // unless we are inside a chain of extension headers.
        if (pax.size > 0 || longName !== undefined || longLink !== undefined) {
          throw new TarFormatError("archive ends after an extended header", this.current);
        }
        this.ended = true;
        return null;
      }
      if (isZero(block)) {
        this.ended = true;
        return null;
      }
      const raw = parseHeader(block, this.current);
      this.current = longName ?? paxString(pax, "path") ?? raw.name;
      if (raw.typeflag === "x" || raw.typeflag === "g") {
        const body = await this.readMeta(raw.size, "PAX extended header");
        const records = parsePax(body, this.current);
        if (raw.typeflag === "g") {
          for (const [k, v] of records) this.globalPax.set(k, v);
        } else {
          for (const [k, v] of records) pax.set(k, v);
        }
        continue;
      }
      if (raw.typeflag === "L" || raw.typeflag === "K") {
        const body = await this.readMeta(raw.size, "GNU long name");
        const nul = body.indexOf(0);
        const text = body.subarray(0, nul >= 0 ? nul : body.length).toString("utf8");
        if (raw.typeflag === "L") longName = text;
        else longLink = text;
        continue;
      }
      const merged = new Map([...this.globalPax, ...pax]);
      pax = new Map();
      const entry = this.makeEntry(raw, merged, longName, longLink);
      this.current = entry.path;
      this.remaining = entry.size;
      this.padding = (BLOCK - (entry.size % BLOCK)) % BLOCK;
      return entry;
    }
  }

  /** The current entry's content, in chunks. Must be read before next() (or is skipped). */
  async *body(): AsyncGenerator<Buffer> {
    while (this.remaining > 0) {
      if (this.buffered === 0) {
        if (!(await this.pull())) {
          throw new TarFormatError(
            `archive is truncated: ${this.remaining} bytes of content missing`,
            this.current,
          );
        }
      }
      const head = this.chunks[0]!;
      const n = Math.min(head.length, this.remaining);
      const piece = head.subarray(0, n);
      this.consume(n);
      this.remaining -= n;
      yield piece;
    }
  }

  /** Drains whatever follows the end of the archive (so it can be hashed). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }

  private makeEntry(
    raw: RawHeader,
    pax: Map<string, Buffer>,
    longName: string | undefined,
    longLink: string | undefined,
  ): TarEntry {
    const path = paxString(pax, "path") ?? longName ?? raw.name;
    const linkname = paxString(pax, "linkpath") ?? longLink ?? raw.linkname;
    if (pax.has("GNU.sparse.major") || pax.has("GNU.sparse.size") || raw.typeflag === "S") {
      throw new TarFormatError("sparse files are not supported", path);
    }
    let type: TarEntryType;
    switch (raw.typeflag) {
      case "0":
      case "\0":
      case "7":
        type = raw.typeflag === "\0" && path.endsWith("/") ? "directory" : "file";
        break;
      case "1":
        type = "hardlink";
        break;
      case "2":
        type = "symlink";
        break;
      case "3":
        type = "chardev";
        break;
      case "4":
        type = "blockdev";
        break;
      case "5":
        type = "directory";
        break;
      case "6":
        type = "fifo";
        break;
      default:
        throw new TarFormatError(`unsupported entry type ${JSON.stringify(raw.typeflag)}`, path);
    }
    const num = (key: string, fallback: number): number => {
      const v = paxString(pax, key);
      if (v === undefined) return fallback;
      if (!/^-?[0-9]+(\.[0-9]*)?$/.test(v)) {
        throw new TarFormatError(`PAX record ${key}=${JSON.stringify(v)} is not a number`, path);
      }
      return Number(v);
    };
    let size = num("size", raw.size);
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_SAFE_SIZE) {
      throw new TarFormatError(`invalid size ${size}`, path);
    }
    // Like Go's archive/tar: these types carry no content, whatever size says.
    if (type !== "file") size = 0;
    const uid = num("uid", raw.uid);
    const gid = num("gid", raw.gid);
    for (const [what, id] of [
      ["uid", uid],
      ["gid", gid],
    ] as const) {
      if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) {
        throw new TarFormatError(`invalid ${what} ${id}`, path);
      }
    }
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) {
      if (k.startsWith("SCHILY.xattr.")) {
        xattrs.set(k.slice("SCHILY.xattr.".length), v);
      } else if (k.startsWith("LIBARCHIVE.xattr.")) {
        let name: string;
        try {
          name = decodeURIComponent(k.slice("LIBARCHIVE.xattr.".length));
        } catch {
          throw new TarFormatError(`malformed PAX record ${JSON.stringify(k)}`, path);
        }
        xattrs.set(name, Buffer.from(v.toString("latin1"), "base64"));
      }
    }
    const atime = paxString(pax, "atime");
    return {
      path,
      type,
      mode: raw.mode & 0o7777,
      uid,
      gid,
      size,
      mtime: num("mtime", raw.mtime),
      atime: atime === undefined ? undefined : num("atime", 0),
      linkname,
      uname: paxString(pax, "uname") ?? raw.uname,
      gname: paxString(pax, "gname") ?? raw.gname,
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs,
    };
  }

  private async skipRest(): Promise<void> {
    if (this.remaining > 0) for await (const _ of this.body());
    if (this.padding > 0) {
      const pad = await this.readExact(this.padding, false);
      if (pad === null) throw new TarFormatError("archive is truncated", this.current);
      this.padding = 0;
    }
  }

  private async readMeta(size: number, what: string): Promise<Buffer> {
    if (size > MAX_META_SIZE) {
      throw new TarFormatError(
        `${what} of ${size} bytes is larger than ${MAX_META_SIZE}`,
        this.current,
      );
    }
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    const body = await this.readExact(padded, false);
    if (body === null) throw new TarFormatError(`archive is truncated in a ${what}`, this.current);
    return body.subarray(0, size);
  }

  /** Exactly n bytes; null if the source ends first (and eofOk on a clean boundary). */
  private async readExact(n: number, eofOk: boolean): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.pull())) {
        if (eofOk && this.buffered === 0) return null;
        throw new TarFormatError(
          `archive is truncated (${this.buffered} of ${n} bytes of a block)`,
          this.current,
        );
      }
    }
    if (n === 0) return Buffer.alloc(0);
    const head = this.chunks[0]!;
    let out: Buffer;
    if (head.length >= n) {
      out = head.subarray(0, n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      for (const c of this.chunks) {
        const take = Math.min(c.length, n - off);
        c.copy(out, off, 0, take);
        off += take;
        if (off === n) break;
      }
    }
    this.consume(n);
    return out;
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const head = this.chunks[0]!;
      if (head.length <= n) {
        n -= head.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = head.subarray(n);
        n = 0;
      }
    }
  }

  private async pull(): Promise<boolean> {
    if (this.sourceDone) return false;
    const r = await this.source.next();
    if (r.done) {
      this.sourceDone = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value)
      ? r.value
      : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }
}

interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function cstring(b: Buffer, start: number, end: number): string {
  const field = b.subarray(start, end);
  const nul = field.indexOf(0);
  return field.subarray(0, nul >= 0 ? nul : field.length).toString("utf8");
}

function parseNumber(b: Buffer, start: number, end: number, what: string, entry?: string): number {
  const field = b.subarray(start, end);
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement, first byte's top bit is the marker.
    if (field[0] === 0xff) throw new TarFormatError(`negative ${what}`, entry);
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + field[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} is too large`, entry);
    }
    return v;
  }
  const text = field
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .replace(/^[ ]+/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new TarFormatError(
      `header field ${what} is not an octal number (${JSON.stringify(text)})`,
      entry,
    );
  }
  return Number.parseInt(text, 8);
}

function parseHeader(block: Buffer, previous: string | undefined): RawHeader {
  const expected = parseNumber(block, 148, 156, "checksum", previous);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (expected !== unsigned && expected !== signed) {
    throw new TarFormatError(
      `header checksum mismatch${previous === undefined ? " in the first header" : " after this entry"} (not a tar archive, or corrupt)`,
      previous,
    );
  }
  let name = cstring(block, 0, 100);
  const magic = block.subarray(257, 263).toString("latin1");
  if (magic === "ustar\0") {
    const prefix = cstring(block, 345, 500);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const entry = name;
  return {
    name,
    mode: parseNumber(block, 100, 108, "mode", entry),
    uid: parseNumber(block, 108, 116, "uid", entry),
    gid: parseNumber(block, 116, 124, "gid", entry),
    size: parseNumber(block, 124, 136, "size", entry),
    mtime: parseNumber(block, 136, 148, "mtime", entry),
    typeflag: String.fromCharCode(block[156]!),
    linkname: cstring(block, 157, 257),
    uname: cstring(block, 265, 297),
    gname: cstring(block, 297, 329),
    devmajor: parseNumber(block, 329, 337, "devmajor", entry),
    devminor: parseNumber(block, 337, 345, "devminor", entry),
  };
}

function parsePax(body: Buffer, entry: string | undefined): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // trailing NUL padding written by some tools
    const space = body.indexOf(0x20, pos);
    if (space < 0) throw new TarFormatError("malformed PAX record (no length)", entry);
    const lenText = body.subarray(pos, space).toString("latin1");
    if (!/^[0-9]+$/.test(lenText)) throw new TarFormatError("malformed PAX record length", entry);
    const len = Number.parseInt(lenText, 10);
    const end = pos + len;
    if (len <= space - pos + 1 || end > body.length || body[end - 1] !== 0x0a) {
      throw new TarFormatError("malformed PAX record (bad length)", entry);
    }
    const record = body.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError("malformed PAX record (no key)", entry);
    const key = record.subarray(0, eq).toString("utf8");
    out.set(key, Buffer.from(record.subarray(eq + 1)));
    pos = end;
  }
  return out;
}

function paxString(pax: Map<string, Buffer>, key: string): string | undefined {
  const v = pax.get(key);
  // An empty value deletes the (global) record.
  return v === undefined || v.length === 0 ? undefined : v.toString("utf8");
}
