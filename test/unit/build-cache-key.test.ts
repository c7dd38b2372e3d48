// The build cache's keys (src/engine/build/cache-key.ts) and the checks of its records
// (src/image/build-cache.ts): what changes a COPY's key, the digest of its spooled tar streams
// (copy-sources.ts: content, mode, names, link targets, the files .dockerignore leaves in) and
// what does not (mtimes, ignored files); special files are never read; the spool holds what was
// digested; a record is only a well-formed one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stepKey } from "../../src/engine/build/cache-key.ts";
import { type ContextSource, IgnoreRules, resolveSources } from "../../src/engine/build/context.ts";
import { spoolSources } from "../../src/engine/build/copy-sources.ts";
import { Spool } from "../../src/engine/build/spool.ts";
import { parseRecord } from "../../src/image/build-cache.ts";
import { TarReader } from "../../src/image/tar.ts";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pivot-cache-key-"));
  mkdirSync(join(dir, "src/sub"), { recursive: true });
  writeFileSync(join(dir, "src/a.txt"), "a\n");
  writeFileSync(join(dir, "src/sub/b.txt"), "b\n");
  writeFileSync(join(dir, "src/notes.md"), "ignored\n");
  symlinkSync("a.txt", join(dir, "src/link"));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ignore = new IgnoreRules(["**/*.md"]);

/** The content digest of SOURCES in ROOT, as a COPY step's key has it (spooled, then dropped). */
async function sourcesDigest(
  root: string,
  sources: ContextSource[],
  rules: IgnoreRules,
): Promise<string> {
  const spool = await Spool.create(dir);
  try {
    return (await spoolSources(root, sources, rules, spool)).digest;
  } finally {
    await spool.close();
  }
}

const digest = () =>
  sourcesDigest(dir, resolveSources(dir, "src", ignore, "COPY (line 2)"), ignore);

describe("stepKey", () => {
  test("64 hex, the same for the same parent and parts, another for any difference", () => {
    const k = stepKey("sha256:aa", ["RUN", ["/bin/sh", "-c", "make"], [["V", "1"]]]);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(stepKey("sha256:aa", ["RUN", ["/bin/sh", "-c", "make"], [["V", "1"]]])).toBe(k);
    expect(stepKey("sha256:bb", ["RUN", ["/bin/sh", "-c", "make"], [["V", "1"]]])).not.toBe(k);
    expect(stepKey("sha256:aa", ["RUN", ["/bin/sh", "-c", "make"], [["V", "2"]]])).not.toBe(k);
    expect(stepKey("sha256:aa", ["RUN", ["/bin/sh", "-c", "make "], [["V", "1"]]])).not.toBe(k);
    // Parts are JSON: no two lists of words join into the same key.
    expect(stepKey("p", ["RUN", ["a b"]])).not.toBe(stepKey("p", ["RUN", ["a", "b"]]));
  });
});

describe("the content digest of spooled sources", () => {
  test("content, mode, names and link targets change it; mtimes and ignored files do not", async () => {
    const base = await digest();
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(await digest()).toBe(base);

    utimesSync(join(dir, "src/a.txt"), new Date(2000, 0, 1), new Date(2000, 0, 1));
    utimesSync(join(dir, "src/sub"), new Date(2000, 0, 1), new Date(2000, 0, 1));
    expect(await digest()).toBe(base);
    writeFileSync(join(dir, "src/notes.md"), "still ignored, changed\n");
    expect(await digest()).toBe(base);

    writeFileSync(join(dir, "src/sub/b.txt"), "B\n");
    expect(await digest()).not.toBe(base);
    writeFileSync(join(dir, "src/sub/b.txt"), "b\n");
    expect(await digest()).toBe(base);

    chmodSync(join(dir, "src/a.txt"), 0o4755);
    expect(await digest()).not.toBe(base);
    chmodSync(join(dir, "src/a.txt"), 0o644);
    expect(await digest()).toBe(base);

    renameSync(join(dir, "src/sub/b.txt"), join(dir, "src/sub/c.txt"));
    expect(await digest()).not.toBe(base);
    renameSync(join(dir, "src/sub/c.txt"), join(dir, "src/sub/b.txt"));
    expect(await digest()).toBe(base);

    // A symlink is its target, never followed.
    unlinkSync(join(dir, "src/link"));
    symlinkSync("sub/b.txt", join(dir, "src/link"));
    expect(await digest()).not.toBe(base);
    unlinkSync(join(dir, "src/link"));
    symlinkSync("a.txt", join(dir, "src/link"));
    expect(await digest()).toBe(base);

    // A second name of a file is archived as a hard link: another copy.
    linkSync(join(dir, "src/a.txt"), join(dir, "src/hard"));
    const linked = await digest();
    unlinkSync(join(dir, "src/hard"));
    writeFileSync(join(dir, "src/hard"), "a\n");
    expect(await digest()).not.toBe(linked);
    unlinkSync(join(dir, "src/hard"));
    expect(await digest()).toBe(base);
  });

  test("a fifo is hashed as what it is, never opened (that would block); a link out counts as its target", async () => {
    const ctx = join(dir, "special");
    mkdirSync(ctx);
    expect(spawnSync("mkfifo", [join(ctx, "pipe")]).status).toBe(0);
    symlinkSync("/etc/passwd", join(ctx, "passwd"));
    const none = new IgnoreRules([]);
    const sources = resolveSources(ctx, ".", none, "COPY (line 2)");
    const first = await sourcesDigest(ctx, sources, none);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    // The link's target is what counts (read with readlink, not followed).
    unlinkSync(join(ctx, "passwd"));
    symlinkSync("/etc/group", join(ctx, "passwd"));
    expect(await sourcesDigest(ctx, sources, none)).not.toBe(first);
    unlinkSync(join(ctx, "passwd"));
    symlinkSync("/etc/passwd", join(ctx, "passwd"));
    expect(await sourcesDigest(ctx, sources, none)).toBe(first);
    rmSync(ctx, { recursive: true });
  });

  test("names and link targets with newlines cannot shift one entry into the next", async () => {
    // A link to "x\ny" then a file "z", against a link to "x" then a file "y\nz": another file
    // name in the image, so another key (joined as text, the two read the same).
    const none = new IgnoreRules([]);
    const make = (name: string, target: string, file: string) => {
      const ctx = join(dir, name);
      mkdirSync(join(ctx, "c"), { recursive: true });
      symlinkSync(target, join(ctx, "c/a"));
      writeFileSync(join(ctx, "c", file), "q\n");
      return sourcesDigest(ctx, resolveSources(ctx, "c", none, "COPY (line 2)"), none);
    };
    const one = await make("nl-1", "x\ny", "z");
    const two = await make("nl-2", "x", "y\nz");
    expect(one).toMatch(/^[0-9a-f]{64}$/);
    expect(two).toMatch(/^[0-9a-f]{64}$/);
    expect(one).not.toBe(two);
  });

  test("a link target that is not UTF-8 counts as its bytes", async () => {
    // Read as a string, both targets were U+FFFD: tar archives the bytes, two different links.
    const none = new IgnoreRules([]);
    const ctx = join(dir, "bytes");
    mkdirSync(ctx);
    symlinkSync(Buffer.from([0xff]), join(ctx, "l"));
    const sources = resolveSources(ctx, "l", none, "COPY (line 2)");
    const ff = await sourcesDigest(ctx, sources, none);
    unlinkSync(join(ctx, "l"));
    symlinkSync(Buffer.from([0xfe]), join(ctx, "l"));
    expect(await sourcesDigest(ctx, sources, none)).not.toBe(ff);
  });
});

describe("the spool", () => {
  test("holds the bytes that were digested: a source changed after it was read changes neither; the spool file is already unlinked", async () => {
    const ctx = join(dir, "spooled");
    mkdirSync(ctx);
    writeFileSync(join(ctx, "f.txt"), "first\n");
    const none = new IgnoreRules([]);
    const sources = resolveSources(ctx, "f.txt", none, "COPY (line 2)");
    const spool = await Spool.create(ctx);
    try {
      // Unlinked at once: a killed build leaves no spool file behind.
      expect(readdirSync(ctx)).toEqual(["f.txt"]);
      const { digest, spooled } = await spoolSources(ctx, sources, none, spool);
      writeFileSync(join(ctx, "f.txt"), "other\n");
      const reader = new TarReader(spool.read(spooled[0]!.segment));
      const entry = await reader.next();
      expect(entry?.path).toBe("f.txt");
      let body = "";
      for await (const c of reader.body()) body += c.toString();
      expect(body).toBe("first\n");
      // The key is that of the content spooled: the same as the first content's, read again.
      writeFileSync(join(ctx, "f.txt"), "first\n");
      expect(await sourcesDigest(ctx, sources, none)).toBe(digest);
    } finally {
      await spool.close();
    }
  });
});

describe("parseRecord", () => {
  const good = {
    manifest: {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${"a".repeat(64)}`,
      size: 500,
    },
    id: `sha256:${"b".repeat(64)}`,
  };
  test("a well-formed record", () => {
    expect(parseRecord("k", JSON.stringify(good))).toEqual({ key: "k", ...good });
  });
  test("anything else is no record: a bad digest, an index, a path, a size, no id", () => {
    const bad = [
      "not json",
      "null",
      JSON.stringify({ ...good, id: "sha256:../../etc" }),
      JSON.stringify({ ...good, manifest: { ...good.manifest, digest: "sha256:../../../x" } }),
      JSON.stringify({ ...good, manifest: { ...good.manifest, digest: `md5:${"a".repeat(32)}` } }),
      JSON.stringify({
        ...good,
        manifest: { ...good.manifest, mediaType: "application/vnd.oci.image.index.v1+json" },
      }),
      JSON.stringify({ ...good, manifest: { ...good.manifest, size: -1 } }),
      JSON.stringify({ manifest: good.manifest }),
    ];
    for (const text of bad) expect(parseRecord("k", text)).toBeNull();
  });
});
