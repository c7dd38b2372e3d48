// COPY's read of the build context (src/engine/build/context-tar.ts): a tar stream made from file
// descriptors. What it archives (types, hard links, long names, the owner COPY gives), that GNU
// tar reads it, and that a context changed after it was listed (a directory swapped for a
// symlink out of it) fails the read instead of archiving what is outside.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  linkSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { descriptorTar, openFileBelow } from "../../src/engine/build/context-tar.ts";
import { TarReader } from "../../src/image/tar.ts";

let dir: string;
let context: string;
let outside: string;
const longName = `${"d".repeat(60)}/${"f".repeat(80)}.txt`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pivot-context-tar-"));
  context = join(dir, "context");
  outside = join(dir, "outside");
  mkdirSync(join(context, "src/sub"), { recursive: true });
  mkdirSync(join(context, "d".repeat(60)));
  mkdirSync(outside);
  writeFileSync(join(outside, "secret"), "host secret\n");
  writeFileSync(join(context, "src/a.txt"), "a\n");
  writeFileSync(join(context, "src/sub/b.txt"), "b".repeat(1000));
  linkSync(join(context, "src/a.txt"), join(context, "src/hard"));
  symlinkSync("../../outside/secret", join(context, "src/link"));
  writeFileSync(join(context, longName), "long\n");
  spawnSync("mkfifo", [join(context, "src/fifo")]);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function bytesOf(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function entriesOf(tar: Buffer) {
  const reader = new TarReader(
    (async function* () {
      yield tar;
    })(),
  );
  const out: {
    path: string;
    type: string;
    uid: number;
    gid: number;
    link: string;
    body: string;
  }[] = [];
  for (;;) {
    const e = await reader.next();
    if (e === null) break;
    let body = "";
    for await (const c of reader.body()) body += c.toString();
    out.push({ path: e.path, type: e.type, uid: e.uid, gid: e.gid, link: e.linkname, body });
  }
  return out;
}

describe("descriptorTar", () => {
  test("archives directories, files, hard links, symlinks (never followed), fifos and long names, owned as COPY says; GNU tar reads it", async () => {
    const names = [
      "src",
      "src/a.txt",
      "src/fifo",
      "src/hard",
      "src/link",
      "src/sub",
      "src/sub/b.txt",
    ];
    const tar = await bytesOf(descriptorTar(context, "", names, { uid: 1234, gid: 2345 }));
    const entries = await entriesOf(tar);
    expect(entries.map((e) => [e.path, e.type])).toEqual([
      ["src", "directory"],
      ["src/a.txt", "file"],
      ["src/fifo", "fifo"],
      ["src/hard", "hardlink"],
      ["src/link", "symlink"],
      ["src/sub", "directory"],
      ["src/sub/b.txt", "file"],
    ]);
    expect(entries.every((e) => e.uid === 1234 && e.gid === 2345)).toBe(true);
    expect(entries.find((e) => e.path === "src/hard")?.link).toBe("src/a.txt");
    expect(entries.find((e) => e.path === "src/link")?.link).toBe("../../outside/secret");
    expect(entries.find((e) => e.path === "src/sub/b.txt")?.body).toBe("b".repeat(1000));
    expect(tar.includes("host secret")).toBe(false);
    const listed = spawnSync("tar", ["-tvf", "-", "--numeric-owner"], {
      input: tar,
      encoding: "utf8",
    });
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(/^hrw.* 1234\/2345 .* src\/hard link to src\/a\.txt$/m);

    const long = await entriesOf(
      await bytesOf(descriptorTar(context, "", ["d".repeat(60), longName], { uid: 0, gid: 0 })),
    );
    expect(long.map((e) => e.path)).toEqual(["d".repeat(60), longName]);
    expect(long[1]?.body).toBe("long\n");
  });

  test("a directory swapped for a symlink out of the context after it was listed fails the read; nothing outside is archived", async () => {
    const root = join(dir, "swapped");
    mkdirSync(join(root, "a"), { recursive: true });
    writeFileSync(join(root, "a/secret"), "mine\n");
    // Listed as a/ and a/secret; then a is swapped for a symlink to the host's directory.
    renameSync(join(root, "a"), join(root, "a.old"));
    symlinkSync(outside, join(root, "a"));
    const read = async (base: string, names: string[]) => {
      const chunks: Buffer[] = [];
      try {
        for await (const c of descriptorTar(root, base, names, { uid: 0, gid: 0 }))
          chunks.push(Buffer.from(c));
      } catch (err) {
        return { err: (err as Error).message, bytes: Buffer.concat(chunks) };
      }
      return { err: null, bytes: Buffer.concat(chunks) };
    };
    for (const [base, names] of [
      ["", ["a/secret"]], // a file below the swapped directory, listed by its path
      ["a", ["secret"]], // COPY a/ . : the source directory itself swapped
    ] as const) {
      const r = await read(base, [...names]);
      expect(r.err).toContain("changed while it was read");
      expect(r.bytes.includes("host secret")).toBe(false);
    }
    await expect(openFileBelow(root, "a/secret")).rejects.toThrow("changed while it was read");
    // GNU tar, given the same names, follows the symlink: what this module replaced.
    const gnu = spawnSync("tar", ["-C", root, "--no-recursion", "-cf", "-", "a/secret"]);
    expect(gnu.stdout.includes("host secret")).toBe(true);
  });
});
