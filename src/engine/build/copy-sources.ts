// COPY and ADD's sources, read once: each source's tar stream (descriptorTar, through O_NOFOLLOW
// descriptors) is written to the step's spool and digested from the same members and bytes as it
// is written. The digest is the step's cache key; on a miss the spooled streams are what is
// applied. Owners are root's here: the step's --chown is given to the extraction.
import { basename, dirname } from "node:path";
import { TarReader } from "../../image/tar.ts";
import { ContentDigest } from "./cache-key.ts";
import { type ContextSource, type IgnoreRules, listTree } from "./context.ts";
import { descriptorTar } from "./context-tar.ts";
import type { Segment, Spool } from "./spool.ts";

/** A source as spooled: its tar stream's place, and the names in it (a directory's tree). */
export interface SpooledSource {
  source: ContextSource;
  segment: Segment;
  /** The names the stream holds, relative to where it is extracted. */
  names: string[];
}

const ROOT = { uid: 0, gid: 0 };

/** Spools SOURCES (resolved in ROOT; directories walked under IGNORE); their content digest. */
export async function spoolSources(
  root: string,
  sources: ContextSource[],
  ignore: IgnoreRules,
  spool: Spool,
): Promise<{ digest: string; spooled: SpooledSource[] }> {
  const digest = new ContentDigest();
  const spooled: SpooledSource[] = [];
  for (const source of sources) {
    digest.source(source.rel, source.kind);
    let base: string;
    let names: string[];
    if (source.kind === "dir") {
      base = source.rel;
      names = listTree(root, source.rel, ignore);
    } else {
      base = dirname(source.rel) === "." ? "" : dirname(source.rel);
      names = [basename(source.rel)];
    }
    const segment = await spool.write(descriptorTar(root, base, names, ROOT, digest));
    spooled.push({ source, segment, names });
  }
  return { digest: digest.digest(), spooled };
}

/** The content of the single file a file source's stream holds (ADD's local archive). */
export async function* fileContent(spool: Spool, s: SpooledSource): AsyncGenerator<Uint8Array> {
  const reader = new TarReader(spool.read(s.segment));
  const entry = await reader.next();
  if (entry === null || entry.type !== "file") return;
  yield* reader.body();
}

/** The first LENGTH bytes (fewer if the file is shorter) of a file source's content. */
export async function contentHead(spool: Spool, s: SpooledSource, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let have = 0;
  for await (const chunk of fileContent(spool, s)) {
    parts.push(Buffer.from(chunk));
    have += chunk.length;
    if (have >= length) break;
  }
  return Buffer.concat(parts).subarray(0, length);
}
