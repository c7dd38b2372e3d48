import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { LayerUnpackError } from "../../src/image/errors.ts";
import { lgetxattrs } from "../../src/image/helpers.ts";
import {
  cleanPath,
  overlayOpaqueXattr,
  type UnpackOptions,
  unpackLayer,
} from "../../src/image/unpack.ts";
import { buildTar, type FixtureEntry, sha256 } from "../fixtures/image-tar.ts";

let work: string;
let dest: string;
let outside: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "pivot-unpack-"));
  dest = join(work, "layers", "layer1");
  outside = join(work, "outside");
  await mkdir(join(work, "layers"));
  await mkdir(outside);
  await writeFile(join(outside, "secret"), "original");
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function unpackBuffer(data: Buffer, options: UnpackOptions = {}) {
  const archive = join(work, "layer.tar");
  await writeFile(archive, data);
  return unpackLayer(archive, dest, options);
}

/** Unpacks and expects a LayerUnpackError; checks nothing was left behind. */
async function expectRejected(
  data: Buffer,
  why: RegExp,
  entry?: string,
  options: UnpackOptions = {},
): Promise<LayerUnpackError> {
  let err: unknown;
  try {
    await unpackBuffer(data, options);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LayerUnpackError);
  const e = err as LayerUnpackError;
  expect(e.message).toMatch(why);
  expect(e.archive).toBe(join(work, "layer.tar"));
  expect(e.message).toContain(join(work, "layer.tar"));
  expect(e.message).toContain("hint:");
  if (entry !== undefined) {
    expect(e.entry).toBe(entry);
    expect(e.message).toContain(JSON.stringify(entry));
  }
  // No half layer: neither the destination nor a temporary directory remains.
  expect(readdirSync(join(work, "layers"))).toEqual([]);
  expectOutsideUntouched();
  return e;
}

function expectOutsideUntouched(): void {
  expect(readdirSync(outside)).toEqual(["secret"]);
  expect(readFileSync(join(outside, "secret"), "utf8")).toBe("original");
  expect(lstatSync(join(outside, "secret")).nlink).toBe(1);
  expect(readdirSync(work).sort()).toEqual(
    existsSync(join(work, "layer.tar"))
      ? ["layer.tar", "layers", "outside"]
      : ["layers", "outside"],
  );
}

describe("cleanPath", () => {
  test("drops leading slashes and dots, refuses ..", () => {
    expect(cleanPath("./a/./b/")).toBe("a/b");
    expect(cleanPath("/etc/passwd")).toBe("etc/passwd");
    expect(cleanPath("//a//b")).toBe("a/b");
    expect(cleanPath("./")).toBe("");
    expect(() => cleanPath("../a")).toThrow(/'\.\.'/);
    expect(() => cleanPath("a/../../b")).toThrow(/'\.\.'/);
    expect(() => cleanPath("a/..")).toThrow(/'\.\.'/);
    expect(() => cleanPath("a\0b")).toThrow(/NUL/);
  });
});

describe("unpacking well-formed layers", () => {
  const entries: FixtureEntry[] = [
    { name: "./", type: "dir", mode: 0o755, mtime: 1_600_000_000 },
    { name: "bin/", type: "dir", mode: 0o755, mtime: 1_600_000_001 },
    {
      name: "bin/tool",
      content: "#!/bin/sh\necho hi\n",
      mode: 0o4755,
      uid: 0,
      gid: 0,
      mtime: 1_600_000_002,
    },
    { name: "bin/alias", type: "hardlink", linkname: "bin/tool" },
    {
      name: "bin/sh",
      type: "symlink",
      linkname: "/bin/busybox",
      uid: 5,
      gid: 6,
      mtime: 1_600_000_003,
    },
    { name: "home/user/", type: "dir", mode: 0o2750, uid: 1000, gid: 1000, mtime: 1_600_000_004 },
    {
      name: "home/user/file",
      content: "data",
      mode: 0o640,
      uid: 1000,
      gid: 100,
      mtime: 1_600_000_005,
    },
    { name: "tmp/", type: "dir", mode: 0o1777 },
    { name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 },
    { name: "dev/loop0", type: "block", mode: 0o660, devmajor: 7, devminor: 0, gid: 6 },
    { name: "run/fifo", type: "fifo", mode: 0o600 },
    {
      name: "bin/ping",
      content: "ELF",
      mode: 0o755,
      pax: {
        "SCHILY.xattr.security.capability": Buffer.from(
          "0100000200200000000000000000000000000000",
          "hex",
        ),
        "SCHILY.xattr.user.note": "hello",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
      },
    },
    { name: `deep/${"d".repeat(120)}/${"f".repeat(150)}`, content: "pax long name" },
    { name: `gnu/${"g".repeat(200)}`, content: "gnu long name", gnuLongNames: true },
    { name: "gnu/longlink", type: "symlink", linkname: `/${"t".repeat(180)}`, gnuLongNames: true },
    { name: "frac", content: "x", pax: { mtime: "1600000000.5" } },
  ];

  for (const compression of ["none", "gzip", "zstd"] as const) {
    test(`${compression}: types, ownership, modes, times, xattrs, long names`, async () => {
      const tar = buildTar(entries);
      let data = tar;
      if (compression === "gzip") data = zlib.gzipSync(tar);
      if (compression === "zstd") {
        const z = zlib as unknown as { zstdCompressSync?: (b: Buffer) => Buffer };
        if (!z.zstdCompressSync) return; // runtime without zstd: covered by the error test
        data = z.zstdCompressSync(tar);
      }
      const result = await unpackBuffer(data, { diffId: sha256(tar), digest: sha256(data) });
      expect(result.compression).toBe(compression);
      expect(result.diffId).toBe(sha256(tar));
      expect(result.size).toBe(tar.length);
      expect(result.ignoredXattrs).toEqual(["trusted.overlay.redirect"]);

      const st = (p: string) => lstatSync(join(dest, p));
      expect(readFileSync(join(dest, "bin/tool"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(st("bin/tool").mode & 0o7777).toBe(0o4755);
      expect(st("bin/tool").mtimeMs).toBe(1_600_000_002_000);
      expect(st("bin/alias").ino).toBe(st("bin/tool").ino);
      expect(st("bin/tool").nlink).toBe(2);
      expect(st("bin/sh").isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dest, "bin/sh"))).toBe("/bin/busybox");
      expect([st("bin/sh").uid, st("bin/sh").gid]).toEqual([5, 6]);
      expect(st("bin/sh").mtimeMs).toBe(1_600_000_003_000);
      expect(st("home/user").mode & 0o7777).toBe(0o2750);
      expect([st("home/user").uid, st("home/user").gid]).toEqual([1000, 1000]);
      expect(st("home/user").mtimeMs).toBe(1_600_000_004_000);
      expect(st("bin").mtimeMs).toBe(1_600_000_001_000);
      expect(st(".").mtimeMs).toBe(1_600_000_000_000);
      expect([st("home/user/file").uid, st("home/user/file").gid]).toEqual([1000, 100]);
      expect(st("home/user/file").mode & 0o7777).toBe(0o640);
      expect(st("tmp").mode & 0o7777).toBe(0o1777);
      expect(st("dev/null").isCharacterDevice()).toBe(true);
      expect(st("dev/null").rdev).toBe(0x103);
      expect(st("dev/null").mode & 0o7777).toBe(0o666);
      expect(st("dev/loop0").isBlockDevice()).toBe(true);
      expect(st("dev/loop0").gid).toBe(6);
      expect(st("run/fifo").isFIFO()).toBe(true);
      const xattrs = await lgetxattrs(join(dest, "bin/ping"));
      expect(xattrs.get("security.capability")?.toString("hex")).toBe(
        "0100000200200000000000000000000000000000",
      );
      expect(xattrs.get("user.note")?.toString()).toBe("hello");
      expect(xattrs.has("trusted.overlay.redirect")).toBe(false);
      expect(readFileSync(join(dest, `deep/${"d".repeat(120)}/${"f".repeat(150)}`), "utf8")).toBe(
        "pax long name",
      );
      expect(readFileSync(join(dest, `gnu/${"g".repeat(200)}`), "utf8")).toBe("gnu long name");
      expect(readlinkSync(join(dest, "gnu/longlink"))).toBe(`/${"t".repeat(180)}`);
      expect(st("frac").mtimeMs).toBe(1_600_000_000_500);
      expect(readdirSync(join(work, "layers"))).toEqual(["layer1"]);
    });
  }

  test("OCI whiteouts become overlay whiteouts", async () => {
    const tar = buildTar([
      { name: "etc/", type: "dir" },
      { name: "etc/.wh.motd", content: "" },
      { name: "var/lib/.wh..wh..opq" },
      { name: "var/lib/keep", content: "k" },
      { name: ".wh.root-file" },
      { name: "etc/.wh..wh.plnk", content: "" },
    ]);
    await unpackBuffer(tar);
    const wh = lstatSync(join(dest, "etc/motd"));
    expect(wh.isCharacterDevice()).toBe(true);
    expect(wh.rdev).toBe(0);
    expect(lstatSync(join(dest, "root-file")).isCharacterDevice()).toBe(true);
    expect(existsSync(join(dest, "etc/.wh.motd"))).toBe(false);
    expect(existsSync(join(dest, "etc/.wh..wh.plnk"))).toBe(false);
    expect(existsSync(join(dest, "var/lib/.wh..wh..opq"))).toBe(false);
    const x = await lgetxattrs(join(dest, "var/lib"));
    expect(x.get("trusted.overlay.opaque")?.toString()).toBe("y");
    expect(readFileSync(join(dest, "var/lib/keep"), "utf8")).toBe("k");
  });

  test("finalize and subdir put metadata beside the tree", async () => {
    const tar = buildTar([{ name: "a", content: "1" }]);
    await unpackBuffer(tar, {
      subdir: "diff",
      finalize: async (temp, result) => writeFile(join(temp, "layer.json"), JSON.stringify(result)),
    });
    expect(readFileSync(join(dest, "diff/a"), "utf8")).toBe("1");
    expect(JSON.parse(readFileSync(join(dest, "layer.json"), "utf8")).diffId).toBe(sha256(tar));
  });

  test("an archive without end-of-archive blocks is accepted", async () => {
    await unpackBuffer(buildTar([{ name: "a", content: "1" }], { end: false }));
    expect(readFileSync(join(dest, "a"), "utf8")).toBe("1");
  });

  test("absolute member names land inside the layer", async () => {
    const tar = buildTar([
      { name: `/${outside.slice(1)}/secret`, content: "pwned" },
      { name: "/etc/x", content: "x" },
    ]);
    await unpackBuffer(tar);
    expect(readFileSync(join(dest, outside.slice(1), "secret"), "utf8")).toBe("pwned");
    expect(readFileSync(join(dest, "etc/x"), "utf8")).toBe("x");
    expectOutsideUntouched();
  });

  test("duplicate entries: the later one wins", async () => {
    await unpackBuffer(
      buildTar([
        { name: "a", content: "first" },
        { name: "a", content: "second", mode: 0o600 },
      ]),
    );
    expect(readFileSync(join(dest, "a"), "utf8")).toBe("second");
    expect(lstatSync(join(dest, "a")).mode & 0o777).toBe(0o600);
  });

  test("a file replaces a directory (recursively)", async () => {
    await unpackBuffer(
      buildTar([
        { name: "d/", type: "dir" },
        { name: "d/sub/x", content: "x" },
        { name: "d", content: "now a file" },
      ]),
    );
    expect(readFileSync(join(dest, "d"), "utf8")).toBe("now a file");
  });

  test("a directory replaces a file, and children go beneath it", async () => {
    await unpackBuffer(
      buildTar([
        { name: "f", content: "file" },
        { name: "f/", type: "dir" },
        { name: "f/y", content: "y" },
      ]),
    );
    expect(lstatSync(join(dest, "f")).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, "f/y"), "utf8")).toBe("y");
  });

  test("a file replacing a symlink to outside does not write through it", async () => {
    await unpackBuffer(
      buildTar([
        { name: "s", type: "symlink", linkname: join(outside, "secret") },
        { name: "s", content: "pwned" },
      ]),
    );
    expect(readFileSync(join(dest, "s"), "utf8")).toBe("pwned");
    expect(lstatSync(join(dest, "s")).isSymbolicLink()).toBe(false);
    expectOutsideUntouched();
  });

  test("a hardlink to a symlink pointing outside links the symlink, not its target", async () => {
    await unpackBuffer(
      buildTar([
        { name: "s", type: "symlink", linkname: join(outside, "secret") },
        { name: "h", type: "hardlink", linkname: "s" },
      ]),
    );
    expect(lstatSync(join(dest, "h")).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(dest, "h")).ino).toBe(lstatSync(join(dest, "s")).ino);
    expectOutsideUntouched();
  });

  test("a whiteout replacing an earlier entry of the same layer", async () => {
    await unpackBuffer(
      buildTar([{ name: "x/", type: "dir" }, { name: "x/y", content: "y" }, { name: ".wh.x" }]),
    );
    expect(lstatSync(join(dest, "x")).isCharacterDevice()).toBe(true);
  });
});

describe("overlayfs's own xattrs in a layer are dropped", () => {
  // The rootless overlay is mounted with userxattr, so user.overlay.* on a layer's file would be
  // read as overlayfs's (opaque, redirect, origin, whiteout ...); trusted.overlay.* likewise
  // rootful, user.fuseoverlayfs.* under fuse-overlayfs. Only .wh..wh..opq makes a directory opaque.
  const own = [
    "user.overlay.opaque",
    "user.overlay.redirect",
    "user.overlay.origin",
    "user.overlay.whiteout",
    "trusted.overlay.opaque",
    "trusted.overlay.redirect",
    "user.fuseoverlayfs.opaque",
  ];

  test("as PAX SCHILY.xattr and LIBARCHIVE.xattr records, on directories and files", async () => {
    const schily = Object.fromEntries(own.map((n) => [`SCHILY.xattr.${n}`, "y"]));
    const libarchive = Object.fromEntries(
      own.map((n) => [
        `LIBARCHIVE.xattr.${encodeURIComponent(n)}`,
        Buffer.from("y").toString("base64"),
      ]),
    );
    const result = await unpackBuffer(
      buildTar([
        { name: "usr/", type: "dir", pax: { ...schily, "SCHILY.xattr.user.keep": "1" } },
        { name: "var/", type: "dir", pax: libarchive },
        { name: "usr/file", content: "f", pax: { ...schily, "SCHILY.xattr.user.keep": "2" } },
        // A later entry for the same directory does not bring them in either.
        { name: "usr/", type: "dir", pax: { "SCHILY.xattr.user.overlay.opaque": "y" } },
      ]),
    );
    for (const path of ["usr", "var", "usr/file"]) {
      const names = [...(await lgetxattrs(join(dest, path))).keys()];
      expect(names.filter((n) => /^(user|trusted)\.(overlay|fuseoverlayfs)\./.test(n))).toEqual([]);
    }
    // Other user.* xattrs are applied as before.
    expect((await lgetxattrs(join(dest, "usr/file"))).get("user.keep")?.toString()).toBe("2");
    expect(result.ignoredXattrs.sort()).toEqual([...own].sort());
  });

  test("the opaque directories are recorded as the layer ends (a replaced one is not)", async () => {
    // a/ is marked, then replaced by a file and made a directory again: not opaque any more.
    const result = await unpackBuffer(
      buildTar([
        { name: "etc/", type: "dir" },
        { name: "etc/.wh..wh..opq" },
        { name: ".wh..wh..opq" },
        { name: "a/", type: "dir" },
        { name: "a/.wh..wh..opq" },
        { name: "a", content: "now a file" },
        { name: "a/", type: "dir" },
        { name: "b/c/", type: "dir" },
        { name: "b/c/.wh..wh..opq" },
      ]),
    );
    expect(result.opaqueDirs).toEqual(["", "b/c", "etc"]);
    // What was recorded is what overlay reads.
    for (const d of result.opaqueDirs)
      expect((await lgetxattrs(join(dest, d))).get(overlayOpaqueXattr())?.toString()).toBe("y");
    expect((await lgetxattrs(join(dest, "a"))).has(overlayOpaqueXattr())).toBe(false);
  });

  test("a .wh..wh..opq entry still makes its directory opaque", async () => {
    await unpackBuffer(
      buildTar([
        { name: "d/", type: "dir", pax: { "SCHILY.xattr.trusted.overlay.opaque": "n" } },
        { name: "d/.wh..wh..opq" },
      ]),
    );
    expect((await lgetxattrs(join(dest, "d"))).get(overlayOpaqueXattr())?.toString()).toBe("y");
  });
});

describe("hostile and broken layers are refused and leave nothing", () => {
  test("'..' in a member name", async () => {
    await expectRejected(
      buildTar([{ name: "../outside/secret", content: "pwned" }]),
      /'\.\.'/,
      "../outside/secret",
    );
  });

  test("'..' in the middle of a name", async () => {
    await expectRejected(
      buildTar([
        { name: "ok", content: "1" },
        { name: "a/../../../outside/x", content: "pwned" },
      ]),
      /'\.\.'/,
      "a/../../../outside/x",
    );
  });

  test("'..' in a PAX path overriding a harmless header name", async () => {
    await expectRejected(
      buildTar([{ name: "harmless", content: "pwned", pax: { path: "../../outside/secret" } }]),
      /'\.\.'/,
      "../../outside/secret",
    );
  });

  test("'..' in a GNU long name", async () => {
    const name = `${"../".repeat(40)}outside/secret`;
    await expectRejected(
      buildTar([{ name, content: "pwned", gnuLongNames: true }]),
      /'\.\.'/,
      name,
    );
  });

  test("write through a symlink to an absolute outside directory", async () => {
    await expectRejected(
      buildTar([
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/secret", content: "pwned" },
      ]),
      /parent "link" is a symlink/,
      "link/secret",
    );
  });

  test("write through a relative symlink escaping upwards", async () => {
    await expectRejected(
      buildTar([
        { name: "a/", type: "dir" },
        { name: "a/up", type: "symlink", linkname: "../../../outside" },
        { name: "a/up/new", content: "pwned" },
      ]),
      /parent "a\/up" is a symlink/,
      "a/up/new",
    );
  });

  test("directory entry through a symlink", async () => {
    await expectRejected(
      buildTar([
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/newdir/", type: "dir" },
      ]),
      /is a symlink/,
      "link/newdir/",
    );
  });

  test("whiteout through a symlink", async () => {
    await expectRejected(
      buildTar([{ name: "link", type: "symlink", linkname: outside }, { name: "link/.wh.secret" }]),
      /is a symlink/,
      "link/.wh.secret",
    );
  });

  test("opaque marker through a symlink", async () => {
    await expectRejected(
      buildTar([
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/.wh..wh..opq" },
      ]),
      /is a symlink/,
    );
  });

  test("write beneath a regular file", async () => {
    await expectRejected(
      buildTar([
        { name: "f", content: "x" },
        { name: "f/child", content: "y" },
      ]),
      /parent "f" is not a directory/,
      "f/child",
    );
  });

  test("hardlink pointing outside with ..", async () => {
    await expectRejected(
      buildTar([{ name: "h", type: "hardlink", linkname: "../outside/secret" }]),
      /hardlink target .*'\.\.'/,
      "h",
    );
  });

  test("hardlink with an absolute target outside the layer", async () => {
    await expectRejected(
      buildTar([{ name: "h", type: "hardlink", linkname: join(outside, "secret") }]),
      /not an earlier entry of this layer/,
      "h",
    );
  });

  test("hardlink through a symlinked directory", async () => {
    await expectRejected(
      buildTar([
        { name: "link", type: "symlink", linkname: outside },
        { name: "h", type: "hardlink", linkname: "link/secret" },
      ]),
      /not an earlier entry/,
      "h",
    );
  });

  test("hardlink to a directory", async () => {
    await expectRejected(
      buildTar([
        { name: "d/", type: "dir" },
        { name: "h", type: "hardlink", linkname: "d" },
      ]),
      /is a directory/,
      "h",
    );
  });

  test("truncated gzip stream", async () => {
    const gz = zlib.gzipSync(buildTar([{ name: "a", content: "x".repeat(100_000) }]));
    const e = await expectRejected(
      gz.subarray(0, Math.floor(gz.length / 2)),
      /gzip stream is corrupt or truncated|truncated/,
    );
    expect(e.message).toMatch(/unexpected end|truncated/);
  });

  test("corrupt gzip stream", async () => {
    const gz = Buffer.from(
      zlib.gzipSync(buildTar([{ name: "a", content: "hello world ".repeat(5000) }])),
    );
    for (let i = 20; i < 60; i++) gz[i] = gz[i]! ^ 0x5a;
    await expectRejected(gz, /corrupt|checksum|truncated/);
  });

  test("truncated tar content names the entry", async () => {
    const tar = buildTar([
      { name: "ok", content: "1" },
      { name: "big", content: "y".repeat(5000) },
    ]);
    await expectRejected(tar.subarray(0, 2048), /truncated/, "big");
  });

  test("a header whose checksum is wrong", async () => {
    const tar = buildTar([
      { name: "ok", content: "1" },
      { name: "second", content: "2" },
    ]);
    tar[1024 + 10] = 0x41; // corrupt the second header's name
    await expectRejected(tar, /checksum mismatch/, "ok");
  });

  test("not a tar at all", async () => {
    await expectRejected(Buffer.from("this is not a tar archive\n".repeat(40)), /checksum|octal/);
  });

  test("diff_id mismatch removes the layer", async () => {
    const tar = buildTar([{ name: "a", content: "1" }]);
    const e = await expectRejected(tar, /diff_id mismatch/, undefined, {
      diffId: `sha256:${"0".repeat(64)}`,
    });
    expect(e.message).toContain(`the image config says sha256:${"0".repeat(64)}`);
    expect(e.message).toContain(sha256(tar));
  });

  test("compressed digest mismatch removes the layer", async () => {
    const gz = zlib.gzipSync(buildTar([{ name: "a", content: "1" }]));
    await expectRejected(gz, /digest mismatch/, undefined, { digest: `sha256:${"1".repeat(64)}` });
  });

  test("an oversized PAX header", async () => {
    const tar = buildTar([{ name: "a", content: "1", pax: { comment: "z".repeat(2 << 20) } }]);
    await expectRejected(tar, /PAX extended header .* larger than/);
  });

  test("a whiteout naming nothing", async () => {
    await expectRejected(buildTar([{ name: "dir/.wh." }]), /whiteout names no file/, "dir/.wh.");
  });

  test("sparse and unknown entry types", async () => {
    await expectRejected(buildTar([{ name: "s", type: "S" }]), /sparse/, "s");
    await expectRejected(buildTar([{ name: "v", type: "V" }]), /unsupported entry type/, "v");
  });

  test("bzip2 data", async () => {
    await expectRejected(Buffer.concat([Buffer.from("BZh91AY&SY"), Buffer.alloc(600)]), /bzip2/);
  });

  test("media type contradicting the data", async () => {
    const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]);
    let err: unknown;
    try {
      await unpackBuffer(zstdMagic, { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/says gzip but the data is zstd/);
    expect(readdirSync(join(work, "layers"))).toEqual([]);
  });

  test("the destination already exists", async () => {
    await mkdir(dest);
    writeFileSync(join(dest, "keep"), "k");
    let err: unknown;
    try {
      await unpackBuffer(buildTar([{ name: "a", content: "1" }]));
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/already exists/);
    expect(readdirSync(join(work, "layers"))).toEqual(["layer1"]);
    expect(readdirSync(dest)).toEqual(["keep"]);
  });

  test("the unpacked tree matches GNU tar's view of the same archive", async () => {
    const tar = buildTar([
      { name: "a/", type: "dir" },
      { name: "a/b", content: "bee", mode: 0o600 },
      { name: "a/c", type: "symlink", linkname: "b" },
    ]);
    await unpackBuffer(tar);
    const listing = execFileSync("tar", ["-tvf", join(work, "layer.tar")], { encoding: "utf8" });
    expect(listing).toContain("a/c -> b");
    expect(readFileSync(join(dest, "a/c"), "utf8")).toBe("bee");
  });
});
