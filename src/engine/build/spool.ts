// A COPY or ADD step's tar streams, written once to a temporary file before the step's cache key
// is looked up: the key is the digest of these bytes, and on a miss these same bytes are applied,
// so what the cache records is what was copied. A file, not memory: a context may hold gigabytes.
// It is unlinked as soon as it is open, so not even a killed build leaves it behind.
import { constants } from "node:fs";
import { type FileHandle, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { randomHex } from "../../util/random.ts";

/** Where one stream lies in the spool. */
export interface Segment {
  start: number;
  length: number;
}

const CHUNK = 1 << 20;

export class Spool {
  private size = 0;

  private constructor(private readonly fh: FileHandle) {}

  /** A new, empty spool file in DIR (private to this process: created 0600, then unlinked). */
  static async create(dir: string): Promise<Spool> {
    const path = join(dir, `spool-${randomHex(8)}`);
    const fh = await open(
      path,
      constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    await unlink(path).catch(async (err) => {
      await fh.close();
      throw err;
    });
    return new Spool(fh);
  }

  /** Appends the whole of STREAM; where it lies. */
  async write(stream: AsyncIterable<Uint8Array>): Promise<Segment> {
    const start = this.size;
    for await (const chunk of stream) {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await this.fh.write(
          chunk,
          done,
          chunk.length - done,
          this.size + done,
        );
        done += bytesWritten;
      }
      this.size += chunk.length;
    }
    return { start, length: this.size - start };
  }

  /** The bytes of SEGMENT, a chunk at a time. */
  async *read(segment: Segment): AsyncGenerator<Uint8Array> {
    let at = segment.start;
    const end = segment.start + segment.length;
    while (at < end) {
      const buf = Buffer.alloc(Math.min(CHUNK, end - at));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, at);
      if (bytesRead === 0) throw new Error(`the build's spool file ended at ${at} of ${end}`);
      at += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}
