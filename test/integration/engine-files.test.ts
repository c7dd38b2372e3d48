// A container's files: cp both ways (symlinks resolved inside the container only), diff from the
// upper directory, export, commit into a new image.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemDf } from "../../src/engine/images.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import type { MountSpec } from "../../src/engine/types.ts";
import { importRootfs } from "../../src/image/create.ts";
import {
  IMAGE,
  makeBusyboxTar,
  makeTestEngine,
  mountsUnder,
  runCollect,
  type TestEngine,
} from "../fixtures/engine.ts";
import { BUN, isRoot, REPO } from "../helpers.ts";

const hasConmon = findConmon() !== null;
let t: TestEngine;
let host: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  host = mkdtempSync(join(tmpdir(), "pivot-files-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (host) rmSync(host, { recursive: true, force: true });
});

/** A container that made files, symlinks pointing out of it, deleted /bin/vi; stopped. */
async function prepared(name: string): Promise<string> {
  const r = await runCollect(t.engine, {
    image: IMAGE,
    name,
    cmd: [
      "sh",
      "-c",
      "mkdir -p /data/sub && echo inside > /data/sub/f && ln -s /etc /data/etclink && " +
        `ln -s ../../../../../../../../${host.slice(1)} /data/up && ln -s / /data/rootlink && ` +
        "rm /bin/vi && echo motd > /etc/motd",
    ],
  });
  expect(r.code).toBe(0);
  return r.id;
}

/** The paths under `dir`, symlinks listed, never followed. */
function treeFiles(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const n of readdirSync(join(dir, rel))) {
    const r = rel ? `${rel}/${n}` : n;
    out.push(r);
    if (lstatSync(join(dir, r)).isDirectory()) out.push(...treeFiles(dir, r));
  }
  return out;
}

/**
 * A running container whose test/fixtures/path-swapper swaps PATH with a symlink to the host's
 * TARGET as fast as it can (after `prepare`, a shell command), ready; its image made in the test.
 */
async function runSwapper(
  name: string,
  path: string,
  target: string,
  prepare = "true",
  edit: (rootfs: string) => void = () => {},
  mounts: MountSpec[] = [],
): Promise<string> {
  const swapper = join(host, "path-swapper");
  if (!existsSync(swapper)) {
    const cc = spawnSync(
      "cc",
      ["-static", "-O2", "-o", swapper, join(REPO, "test/fixtures/path-swapper.c")],
      { encoding: "utf8" },
    );
    expect(cc.stderr).toBe("");
  }
  const tar = join(host, `${name}.tar`);
  makeBusyboxTar(tar, (rootfs) => {
    copyFileSync(swapper, join(rootfs, "path-swapper"));
    chmodSync(join(rootfs, "path-swapper"), 0o755);
    edit(rootfs);
  });
  await importRootfs(await t.engine.images(), tar, {
    refs: [`localhost/${name}:test`],
    config: { config: { Cmd: ["sh", "-c", `${prepare} && exec /path-swapper ${path} ${target}`] } },
  });
  rmSync(tar);
  const c = await t.engine.run({ image: `localhost/${name}:test`, name, detach: true, mounts });
  const upper = t.engine.inspect(c.id).rootfs.upperdir;
  for (let i = 0; i < 250 && !existsSync(join(upper, "tmp/swapper-ready")); i++)
    await Bun.sleep(20);
  expect(existsSync(join(upper, "tmp/swapper-ready"))).toBe(true);
  return c.id;
}

describe.skipIf(!isRoot)("engine: files", () => {
  test("cp out: a directory into a directory, a file under a new name; symlinks come as symlinks", async () => {
    await prepared("files-out");
    const out = join(host, "out");
    mkdirSync(out);
    await t.engine.copyFrom("files-out", "/data", out);
    expect(readFileSync(join(out, "data/sub/f"), "utf8")).toBe("inside\n");
    expect(readlinkSync(join(out, "data/etclink"))).toBe("/etc");
    // Through a symlink in the container: resolved inside it (/data/etclink/motd is /etc/motd).
    await t.engine.copyFrom("files-out", "/data/etclink/motd", join(out, "m"));
    expect(readFileSync(join(out, "m"), "utf8")).toBe("motd\n");
    await t.engine.remove("files-out");
  });

  test("cp never follows a container's symlink out onto the host", async () => {
    await prepared("files-escape");
    writeFileSync(join(host, "secret"), "host secret\n");
    // /data/up points at the host directory by a path of ..s: inside the container it is /<host>.
    await expect(
      t.engine.copyFrom("files-escape", "/data/up/secret", join(host, "leak")),
    ).rejects.toThrow(/no such file/);
    expect(existsSync(join(host, "leak"))).toBe(false);
    // Into the container through the same link: resolved inside, where that directory is missing.
    writeFileSync(join(host, "in.txt"), "from the host\n");
    await expect(
      t.engine.copyTo("files-escape", join(host, "in.txt"), "/data/up/"),
    ).rejects.toThrow(/not a directory in the container/);
    expect(readFileSync(join(host, "secret"), "utf8")).toBe("host secret\n");
    const inside = t.engine.inspect("files-escape").rootfs.upperdir;
    // A symlink to / in the container is the container's root, not the host's.
    await t.engine.copyTo("files-escape", join(host, "in.txt"), "/data/rootlink/tmp/x.txt");
    expect(readFileSync(join(inside, "tmp/x.txt"), "utf8")).toBe("from the host\n");
    expect(existsSync("/tmp/x.txt")).toBe(false);
    await t.engine.remove("files-escape");
  });

  test("cp out onto the host leaves out the container's device nodes, setuid/setgid bits and file capabilities", async () => {
    // A hostile image's author would otherwise choose a world-writable disk device or a
    // setuid-root shell in the operator's directory.
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-privileges",
      cmd: [
        "sh",
        "-c",
        "mkdir /app && cp /bin/busybox /app/suid && chmod 6755 /app/suid && " +
          "mknod -m 666 /app/disk b 7 0 && mknod -m 666 /app/null c 1 3 && ln /app/disk /app/disk2 && " +
          "mkfifo /app/fifo && echo plain > /app/plain",
      ],
    });
    expect(r.code).toBe(0);
    const out = join(host, "privileges-out");
    mkdirSync(out);
    await t.engine.copyFrom(r.id, "/app", out);
    expect(lstatSync(join(out, "app/suid")).mode & 0o7777).toBe(0o755);
    for (const n of ["disk", "disk2", "null"]) expect(existsSync(join(out, "app", n))).toBe(false);
    expect(lstatSync(join(out, "app/fifo")).isFIFO()).toBe(true);
    expect(readFileSync(join(out, "app/plain"), "utf8")).toBe("plain\n");
    // The tar stream keeps them: it is the caller's to extract.
    const { stream } = await t.engine.archive(r.id, "/app");
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const listing = spawnSync("tar", ["-tv"], { input: Buffer.concat(chunks), encoding: "utf8" });
    expect(listing.stdout).toMatch(/^-rwsr-sr-x .* app\/suid$/m);
    expect(listing.stdout).toMatch(/^b.* app\/disk$/m);
    await t.engine.remove(r.id);
  });

  test("cp's owners as Docker's: out, the caller's (-a: the container's); in, kept (-a: the container's user)", async () => {
    // Files copied out would otherwise belong to whatever ids the container's author chose, on
    // the host; `cp -a` is Docker's archive mode.
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-owners",
      user: "0:0",
      cmd: [
        "sh",
        "-c",
        "mkdir /own && echo x > /own/f && ln -s f /own/l && chown -hR 1234:2345 /own",
      ],
    });
    expect(r.code).toBe(0);
    const owners = (path: string) => {
      const st = lstatSync(path);
      return `${st.uid}:${st.gid}`;
    };
    const me = `${process.getuid!()}:${process.getgid!()}`;
    const out = join(host, "owners-out");
    mkdirSync(out);
    await t.engine.copyFrom(r.id, "/own", out);
    for (const n of ["own", "own/f", "own/l"]) expect(owners(join(out, n))).toBe(me);
    const kept = join(host, "owners-out-a");
    mkdirSync(kept);
    await t.engine.copyFrom(r.id, "/own", kept, { archive: true });
    for (const n of ["own", "own/f", "own/l"]) expect(owners(join(kept, n))).toBe("1234:2345");

    // In: a host file of 4321:5432 into a container whose user is 1000:1001.
    const c = await t.engine.create({ image: IMAGE, name: "files-owners-in", user: "1000:1001" });
    const src = join(host, "owners-in.txt");
    writeFileSync(src, "in\n");
    spawnSync("chown", ["4321:5432", src]);
    const upper = t.engine.inspect(c.id).rootfs.upperdir;
    await t.engine.copyTo(c.id, src, "/tmp/kept.txt");
    expect(owners(join(upper, "tmp/kept.txt"))).toBe("4321:5432");
    await t.engine.copyTo(c.id, src, "/tmp/user.txt", { archive: true });
    expect(owners(join(upper, "tmp/user.txt"))).toBe("1000:1001");
    const tar = spawnSync("tar", [
      "-C",
      host,
      "--numeric-owner",
      "-cf",
      "-",
      "owners-in.txt",
    ]).stdout;
    await t.engine.extractArchive(
      c.id,
      "/tmp",
      (async function* () {
        yield tar;
      })(),
      { archive: true },
    );
    expect(owners(join(upper, "tmp/owners-in.txt"))).toBe("1000:1001");
    await t.engine.remove(c.id);
    await t.engine.remove(r.id);
  });

  test("cp copies names that start with .wh. as they are: not as whiteouts deleting files beside them", async () => {
    // A layer's whiteout names mean nothing to cp: a container's /data/.wh.keep must not delete
    // the host's keep where it is copied, nor a host's .wh.motd the container's /etc/motd.
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-wh",
      cmd: ["sh", "-c", "mkdir /data && echo wh > /data/.wh.keep && echo motd > /etc/motd"],
    });
    expect(r.code).toBe(0);
    const out = join(host, "wh-out");
    mkdirSync(join(out, "data"), { recursive: true });
    writeFileSync(join(out, "data/keep"), "precious\n");
    await t.engine.copyFrom(r.id, "/data", out);
    expect(readFileSync(join(out, "data/keep"), "utf8")).toBe("precious\n");
    expect(readFileSync(join(out, "data/.wh.keep"), "utf8")).toBe("wh\n");
    writeFileSync(join(host, ".wh.motd"), "in\n");
    await t.engine.copyTo(r.id, join(host, ".wh.motd"), "/etc/");
    const upper = t.engine.inspect(r.id).rootfs.upperdir;
    expect(readFileSync(join(upper, "etc/motd"), "utf8")).toBe("motd\n");
    expect(readFileSync(join(upper, "etc/.wh.motd"), "utf8")).toBe("in\n");
    await t.engine.remove(r.id);
  });

  test.skipIf(!hasConmon)(
    "cp into a stopped container: a start meanwhile waits for the copy, so the container cannot swap the copy's directory for a symlink to the host",
    async () => {
      const hostDir = join(host, "started-target");
      mkdirSync(hostDir);
      // Started, the container replaces the directory cp extracts into with a symlink to the host.
      const r = await runCollect(t.engine, {
        image: IMAGE,
        name: "files-started",
        cmd: [
          "sh",
          "-c",
          `mkdir -p /data/dir; for d in /data/dir/.pivot-cp-*; do if [ -d "$d" ]; then rm -rf "$d"; ln -s ${hostDir} "$d"; fi; done`,
        ],
      });
      expect(r.code).toBe(0);
      const upper = t.engine.inspect(r.id).rootfs.upperdir;
      const src = join(host, "started-src");
      mkdirSync(src);
      writeFileSync(join(src, "first"), "1\n");
      writeFileSync(join(src, "second"), "2\n");
      const tar = spawnSync("tar", ["-C", src, "-cf", "-", "first", "second"]).stdout;
      let started: Promise<unknown> | undefined;
      async function* stream() {
        yield tar.subarray(0, 1024); // "first": header and content
        started = t.engine.start(r.id).then(() => t.engine.wait(r.id));
        const stage = () =>
          readdirSync(join(upper, "data/dir")).find((n) => n.startsWith(".pivot-cp-"));
        for (let i = 0; i < 75; i++) {
          const name = stage();
          if (name && lstatSync(join(upper, "data/dir", name)).isSymbolicLink()) break;
          await Bun.sleep(20);
        }
        yield tar.subarray(1024);
      }
      await t.engine.extractArchive(r.id, "/data/dir", stream()).catch(() => {});
      await started;
      expect(readdirSync(hostDir)).toEqual([]);
      await t.engine.remove(r.id, { force: true });
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "cp into a running container: another container sharing its volume is frozen too, so it cannot swap the copy's directory for a symlink to the host",
    async () => {
      const hostDir = join(host, "shared-target");
      mkdirSync(hostDir);
      const volume = "files-shared";
      // The swapper shares the volume with the container copied into, and swaps its /vol/dir.
      const swapper = await runSwapper(
        "files-shared-swapper",
        "/vol/dir",
        hostDir,
        "mkdir -p /vol/dir",
        () => {},
        [{ type: "volume", source: volume, target: "/vol" }],
      );
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-shared-copied",
        cmd: ["sleep", "100"],
        detach: true,
        mounts: [{ type: "volume", source: volume, target: "/vol" }],
      });
      try {
        writeFileSync(join(host, "shared.txt"), "from the host\n");
        // Frozen with /vol/dir a symlink (to a directory the container does not have), the copy
        // is refused; frozen with it a directory, it is made there.
        let copied = 0;
        for (let i = 0; i < 100; i++) {
          await t.engine
            .copyTo(c.id, join(host, "shared.txt"), "/vol/dir/")
            .then(() => copied++)
            .catch(() => {});
        }
        expect(copied).toBeGreaterThan(0);
        // Both thawed after.
        expect(t.engine.inspect(swapper).state.status).toBe("running");
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        expect(readdirSync(hostDir)).toEqual([]);
      } finally {
        await t.engine.remove(c.id, { force: true });
        await t.engine.remove(swapper, { force: true });
        t.engine.removeVolume(volume);
      }
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "two copies out of one running container: the second waits, and the container stays frozen until the last one ends",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-two-copies",
        // 4 MB: more than a pipe holds, so tar is still copying until its stream is read.
        cmd: [
          "sh",
          "-c",
          "head -c 4000000 /dev/zero > /big.tmp && mv /big.tmp /big && exec sleep 100",
        ],
        detach: true,
      });
      const drain = async (stream: AsyncIterable<unknown>) => {
        for await (const _ of stream);
      };
      try {
        const upper = t.engine.inspect(c.id).rootfs.upperdir;
        for (let i = 0; i < 250 && !existsSync(join(upper, "big")); i++) await Bun.sleep(20);
        const first = await t.engine.archive(c.id, "/big");
        expect(t.engine.inspect(c.id).state.status).toBe("paused");
        let secondReady = false;
        const second = t.engine.archive(c.id, "/big").then((a) => {
          secondReady = true;
          return a;
        });
        await Bun.sleep(300);
        // Before: it found the container paused, neither froze nor would thaw it, and went on.
        expect(secondReady).toBe(false);
        await drain(first.stream);
        const { stream } = await second;
        // Before: the first copy's end thawed it under the second one.
        expect(t.engine.inspect(c.id).state.status).toBe("paused");
        await drain(stream);
        for (let i = 0; i < 100 && t.engine.inspect(c.id).state.status !== "running"; i++)
          await Bun.sleep(20);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        await t.engine.remove(c.id, { force: true });
      }
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "cp out of a path the container made a symlink loop of fails, and leaves the container thawed (stopped: unlocked, unmounted)",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-loop",
        cmd: ["sh", "-c", "ln -s /loop-b /loop-a && ln -s /loop-a /loop-b && exec sleep 100"],
        detach: true,
      });
      try {
        const upper = t.engine.inspect(c.id).rootfs.upperdir;
        for (let i = 0; i < 250 && !existsSync(join(upper, "loop-b")); i++) await Bun.sleep(20);
        await expect(t.engine.archive(c.id, "/loop-a/x")).rejects.toThrow(/too many symlinks/);
        await expect(t.engine.copyFrom(c.id, "/loop-a/x", host)).rejects.toThrow(
          /too many symlinks/,
        );
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        await t.engine.stop(c.id, { timeout: 0 });
        const target = t.engine.inspect(c.id).rootfs.merged;
        // Unmounted by its monitor's exit hook, after the stop.
        for (let i = 0; i < 250 && mountsUnder(target).length > 0; i++) await Bun.sleep(20);
        expect(mountsUnder(target)).toEqual([]);
        await expect(t.engine.archive(c.id, "/loop-a/x")).rejects.toThrow(/too many symlinks/);
        expect(mountsUnder(target)).toEqual([]);
        // Its lock is free: a start does not wait for it.
        await t.engine.start(c.id);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        await t.engine.remove(c.id, { force: true });
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "cp into a container without volumes freezes no other container (the /etc files the engine binds are shared with none)",
    async () => {
      // A container with a writable bind of a directory above the engine's own files.
      const other = await t.engine.run({
        image: IMAGE,
        name: "files-wide-bind",
        cmd: ["sleep", "100"],
        detach: true,
        mounts: [{ type: "bind", source: t.root, target: "/engine" }],
      });
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-plain",
        cmd: ["sleep", "100"],
        detach: true,
      });
      try {
        const { stream } = await t.engine.archive(c.id, "/etc/passwd");
        try {
          expect(t.engine.inspect(c.id).state.status).toBe("paused");
          expect(t.engine.inspect(other.id).state.status).toBe("running");
        } finally {
          for await (const _ of stream);
        }
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        await t.engine.remove(c.id, { force: true });
        await t.engine.remove(other.id, { force: true });
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "a cp out that fails on the host (no space left) thaws the container all the same",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-full",
        cmd: ["sleep", "100"],
        detach: true,
      });
      const full = join(host, "full");
      mkdirSync(full);
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", full]).status).toBe(0);
      try {
        for (let i = 0; i < 100 && t.engine.inspect(c.id).state.status !== "running"; i++)
          await Bun.sleep(20);
        await expect(t.engine.copyFrom(c.id, "/bin", full)).rejects.toThrow(/space/);
        for (let i = 0; i < 100 && t.engine.inspect(c.id).state.status !== "running"; i++)
          await Bun.sleep(20);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        spawnSync("umount", [full]);
        await t.engine.remove(c.id, { force: true });
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "cp into and out of a running container reaches its volumes (through /proc/PID/root)",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-running",
        cmd: ["sleep", "100"],
        detach: true,
        mounts: [{ type: "volume", target: "/vol" }],
      });
      writeFileSync(join(host, "v.txt"), "volume file\n");
      await t.engine.copyTo(c.id, join(host, "v.txt"), "/vol/");
      const ex = await t.engine.exec(c.id, { cmd: ["cat", "/vol/v.txt"] });
      let text = "";
      ex.stdout?.on("data", (d: Buffer) => {
        text += d.toString();
      });
      expect(await ex.wait()).toBe(0);
      expect(text).toBe("volume file\n");
      await t.engine.copyFrom(c.id, "/vol/v.txt", join(host, "back.txt"));
      expect(readFileSync(join(host, "back.txt"), "utf8")).toBe("volume file\n");
      await t.engine.remove(c.id, { force: true, volumes: true });
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "a running container is frozen while its files are copied, so none of its processes can swap a checked path for a symlink; thawed after",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-frozen",
        cmd: ["sh", "-c", "echo data > /tmp/f; exec sleep 100"],
        detach: true,
      });
      try {
        for (let i = 0; i < 100 && t.engine.inspect(c.id).state.status !== "running"; i++)
          await Bun.sleep(20);
        // archive() has resolved the path and made the stream; nothing is read yet.
        const { stream } = await t.engine.archive(c.id, "/etc/hostname");
        expect(t.engine.inspect(c.id).state.status).toBe("paused");
        for await (const _ of stream) {
          // Drained: the copy ends, the container is thawed.
        }
        await Bun.sleep(50);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        // Into the container too; a container paused by hand stays paused.
        writeFileSync(join(host, "frozen-in.txt"), "in\n");
        t.engine.pause(c.id);
        await t.engine.copyTo(c.id, join(host, "frozen-in.txt"), "/tmp/");
        expect(t.engine.inspect(c.id).state.status).toBe("paused");
        t.engine.unpause(c.id);
        await t.engine.copyTo(c.id, join(host, "frozen-in.txt"), "/tmp/again.txt");
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        // Every early end thaws it: a destination that is not a directory, a reader that stops
        // (the stream destroyed; the CLI piped into head).
        await expect(
          t.engine.copyFrom(c.id, "/bin", join(host, "missing-dir", "x")),
        ).rejects.toThrow(/is not a directory/);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        const early = await t.engine.archive(c.id, "/bin");
        expect(t.engine.inspect(c.id).state.status).toBe("paused");
        early.stream.destroy();
        for (let i = 0; i < 100 && t.engine.inspect(c.id).state.status !== "running"; i++)
          await Bun.sleep(20);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
        const piped = spawnSync(
          "bash",
          [
            "-c",
            `${BUN} ${join(REPO, "bin/pivot.ts")} --root ${t.root} cp ${c.id}:/bin - | head -c 10 | wc -c`,
          ],
          { encoding: "utf8", timeout: 30_000 },
        );
        expect(piped.stdout.trim()).toBe("10");
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        await t.engine.remove(c.id, { force: true });
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "exec -u never reads a host file through a symlink the running container swaps in for its /etc/passwd",
    async () => {
      const hostPasswd = join(host, "host-passwd");
      writeFileSync(hostPasswd, "evil:x:4242:4242::/:/bin/sh\n");
      // /etc/passwd is, by turns, the container's and a symlink to the host's file.
      const id = await runSwapper("files-passwd-swapper", "/etc/passwd", hostPasswd, "true", (r) =>
        appendFileSync(join(r, "etc/passwd"), "evil:x:1000:1000::/:/bin/sh\n"),
      );
      try {
        const uids = new Set<string>();
        // 40 tries at least; more while the container's own user has not been seen (under load
        // the swapper can hold the symlink in place through many tries).
        for (let i = 0; i < 40 || (i < 200 && !uids.has("1000")); i++) {
          let out = "";
          try {
            const ex = await t.engine.exec(id, { user: "evil", cmd: ["id", "-u"] });
            ex.stdout?.on("data", (d: Buffer) => {
              out += d.toString();
            });
            await ex.wait();
          } catch {
            continue; // the symlink seen where /etc/passwd is: no such user
          }
          uids.add(out.trim());
        }
        expect(uids.has("4242")).toBe(false);
        expect(uids.has("1000")).toBe(true);
      } finally {
        await t.engine.remove(id, { force: true });
      }
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "diff of a running container never lists a host directory through a symlink it swaps in for one of its directories",
    async () => {
      const hostDir = join(host, "listed");
      mkdirSync(hostDir);
      writeFileSync(join(hostDir, "host-only-name"), "");
      const id = await runSwapper(
        "files-diff-swapper",
        "/data/dir",
        hostDir,
        "mkdir -p /data/dir && touch /data/dir/inside",
      );
      try {
        let sawInside = false;
        for (let i = 0; i < 200; i++) {
          const paths = (await t.engine.diff(id)).map((c) => c.path);
          expect(paths.filter((p) => p.includes("host-only-name"))).toEqual([]);
          sawInside ||= paths.includes("/data/dir/inside");
        }
        expect(sawInside).toBe(true);
      } finally {
        await t.engine.remove(id, { force: true });
      }
    },
    60_000,
  );

  test("create never follows an image's symlinks onto the host: -w, -u's /etc/passwd, a volume's content", async () => {
    // An image whose /a, /etc/passwd and /vol are symlinks to host paths, absolute or climbing.
    const hostDir = join(host, "create-target");
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, "host-file"), "host\n");
    writeFileSync(join(hostDir, "passwd"), "evil:x:4242:4242::/:/bin/sh\n");
    const up = "../".repeat(20);
    const tar = join(host, "create-links.tar");
    makeBusyboxTar(tar, (rootfs) => {
      symlinkSync(hostDir, join(rootfs, "a"));
      symlinkSync(`${up}${hostDir.slice(1)}`, join(rootfs, "vol"));
      rmSync(join(rootfs, "etc/passwd"));
      symlinkSync(join(hostDir, "passwd"), join(rootfs, "etc/passwd"));
    });
    await importRootfs(await t.engine.images(), tar, {
      refs: ["localhost/create-links:test"],
      config: { config: { Cmd: ["true"] } },
    });
    rmSync(tar);
    const image = "localhost/create-links:test";
    // create (the root mounted) and an attached run (read from the layers, unmounted).
    const c = await t.engine.create({
      image,
      name: "files-create-links",
      workdir: "/a/made-by-w",
      mounts: [{ type: "volume", source: "files-create-links", target: "/vol" }],
    });
    expect(existsSync(join(hostDir, "made-by-w"))).toBe(false);
    expect(readdirSync(t.engine.inspectVolume("files-create-links").mountpoint)).toEqual([]);
    await t.engine.remove(c.id, { volumes: true });
    t.engine.removeVolume("files-create-links");
    for (const run of [
      () => t.engine.create({ image, name: "files-create-user", user: "evil" }),
      () => runCollect(t.engine, { image, name: "files-run-user", user: "evil", cmd: ["true"] }),
    ])
      await expect(run()).rejects.toThrow(/evil/);
    // The link's target is not in the container: its working directory cannot be made there.
    await expect(
      runCollect(t.engine, {
        image,
        name: "files-run-w",
        workdir: "/a/made-by-run",
        cmd: ["true"],
      }),
    ).rejects.toThrow(/made-by-run/);
    expect(existsSync(join(hostDir, "made-by-run"))).toBe(false);
    await t.engine.remove("files-run-w", { force: true }).catch(() => {});
  });

  test.skipIf(!hasConmon)(
    "commit --pause=false never copies host files through a symlink the running container swaps in for one of its directories",
    async () => {
      const hostDir = join(host, "committed-host");
      mkdirSync(hostDir);
      writeFileSync(join(hostDir, "host-secret"), "secret\n");
      const id = await runSwapper(
        "files-commit-swapper",
        "/data/dir",
        hostDir,
        "mkdir -p /data/dir && echo inside > /data/dir/inside",
      );
      try {
        const store = await t.engine.images();
        let committed = 0;
        for (let i = 0; i < 30; i++) {
          const image = await t.engine.commit(id, { pause: false }).catch(() => null);
          if (image === null) continue;
          committed++;
          const layers = await store.ensureImageLayers(image);
          expect(
            treeFiles(layers.at(-1)!.diffPath).filter((f) => f.includes("host-secret")),
          ).toEqual([]);
        }
        expect(committed).toBeGreaterThan(0);
      } finally {
        await t.engine.remove(id, { force: true });
      }
    },
    120_000,
  );

  test.skipIf(!hasConmon)(
    "system df never measures a host directory through a symlink the running container swaps in for one of its directories",
    async () => {
      const hostDir = join(host, "measured");
      mkdirSync(hostDir);
      const huge = 1024 ** 4; // sparse: one TiB of size, no blocks
      spawnSync("truncate", ["-s", String(huge), join(hostDir, "huge")]);
      const id = await runSwapper("files-df-swapper", "/data/dir", hostDir, "mkdir -p /data/dir");
      try {
        for (let i = 0; i < 100; i++) {
          const df = await systemDf(t.engine);
          const size = df.containers.find((c) => c.id === id)?.size;
          expect(size).toBeDefined();
          expect(size!).toBeLessThan(huge);
        }
      } finally {
        await t.engine.remove(id, { force: true });
      }
    },
    60_000,
  );

  test("diff of a deep tree takes time in proportion to it (a container nesting 1500 directories made it take a minute)", async () => {
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-deep",
      cmd: [
        "sh",
        "-c",
        "cd /tmp && i=0 && while [ $i -lt 1500 ]; do mkdir d && cd d || exit 3; i=$((i+1)); done; echo x > f",
      ],
    });
    expect(r.code).toBe(0);
    try {
      const started = performance.now();
      const changes = await t.engine.diff(r.id);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(changes.length).toBe(1502);
      expect(changes[0]).toEqual({ kind: "C", path: "/tmp" });
      expect(changes.at(-1)).toEqual({ kind: "A", path: `/tmp${"/d".repeat(1500)}/f` });
    } finally {
      await t.engine.remove(r.id);
    }
  }, 60_000);

  test("diff: A, C, D from the upper directory, mount points left out", async () => {
    const id = await prepared("files-diff");
    const changes = (await t.engine.diff(id)).map((c) => `${c.kind} ${c.path}`);
    expect(changes).toContain("D /bin/vi");
    expect(changes).toContain("C /bin");
    expect(changes).toContain("A /data/sub/f");
    expect(changes).toContain("A /etc/motd");
    expect(changes).not.toContain("A /etc/hosts");
    expect(changes).not.toContain("A /etc/hostname");
    await t.engine.remove(id);
  });

  test("a container that writes nothing leaves its upper directory empty, and diff shows nothing", async () => {
    // The mount points (/etc/hosts, /etc/hostname, /etc/resolv.conf, /proc, /sys, /dev) come
    // from the store's init layer, not from a copy-up into each container's upper directory.
    const r = await runCollect(t.engine, { image: IMAGE, name: "files-untouched", cmd: ["true"] });
    expect(r.code).toBe(0);
    const info = t.engine.inspect(r.id);
    expect(readdirSync(info.rootfs.upperdir)).toEqual([]);
    expect(await t.engine.diff(r.id)).toEqual([]);
    await t.engine.remove(r.id);
  });

  test("export: the root filesystem as tar; CLI cp to - gives a tar stream", async () => {
    const id = await prepared("files-export");
    const tarPath = join(host, "export.tar");
    const r = spawnSync(BUN, [
      join(REPO, "bin/pivot.ts"),
      "--root",
      t.root,
      "export",
      "-o",
      tarPath,
      id,
    ]);
    expect(r.status).toBe(0);
    const list = spawnSync("tar", ["-tf", tarPath], { encoding: "utf8" }).stdout.split("\n");
    expect(list).toContain("./data/sub/f");
    expect(list).toContain("./bin/sh");
    expect(list).not.toContain("./bin/vi");
    const cp = spawnSync(BUN, [
      join(REPO, "bin/pivot.ts"),
      "--root",
      t.root,
      "cp",
      `${id}:/data`,
      "-",
    ]);
    expect(cp.status).toBe(0);
    const names = spawnSync("tar", ["-t"], { input: cp.stdout, encoding: "utf8" }).stdout;
    expect(names.split("\n")).toContain("data/sub/f");
    await t.engine.remove(id);
  }, 30_000);

  test("an interrupted cp or export of a stopped container (SIGTERM) leaves its root filesystem unmounted", async () => {
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-int-stopped",
      cmd: ["true"],
    });
    const merged = t.engine.inspect(r.id).rootfs.merged;
    try {
      expect(mountsUnder(merged)).toEqual([]);
      const fifo = join(host, "export-fifo");
      spawnSync("mkfifo", [fifo]);
      for (const args of [
        ["cp", "-", `${r.id}:/tmp`],
        ["export", "-o", fifo, r.id],
      ]) {
        // cp reads a tar stream that never ends; export writes to a FIFO nobody reads.
        const child = Bun.spawn([BUN, join(REPO, "bin/pivot.ts"), "--root", t.root, ...args], {
          stdin: "pipe",
          stdout: "ignore",
          stderr: "ignore",
        });
        for (let i = 0; i < 500 && mountsUnder(merged).length === 0; i++) await Bun.sleep(10);
        expect(mountsUnder(merged).length).toBeGreaterThan(0);
        await Bun.sleep(100);
        child.kill("SIGTERM");
        await child.exited;
        expect(child.exitCode).toBe(143);
        expect(mountsUnder(merged)).toEqual([]);
      }
      rmSync(fifo);
    } finally {
      await t.engine.remove(r.id, { force: true });
    }
  }, 30_000);

  test.skipIf(!hasConmon)(
    "an interrupted commit (Ctrl-C while the container is paused) leaves it running",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "files-commit-int",
        // Enough for the layer's copy to take a while.
        cmd: ["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=400 2>/dev/null; exec sleep 100"],
        detach: true,
      });
      try {
        const upper = t.engine.inspect(c.id).rootfs.upperdir;
        for (let i = 0; i < 500; i++) {
          if (t.engine.inspect(c.id).state.status !== "running") break;
          if (existsSync(join(upper, "big")) && lstatSync(join(upper, "big")).size >= 400 << 20)
            break;
          await Bun.sleep(20);
        }
        const child = Bun.spawn(
          [BUN, join(REPO, "bin/pivot.ts"), "--root", t.root, "commit", c.id],
          {
            stdout: "ignore",
            stderr: "ignore",
          },
        );
        let sawPaused = false;
        for (let i = 0; i < 1000 && child.exitCode === null; i++) {
          if (t.engine.inspect(c.id).state.status === "paused") {
            sawPaused = true;
            child.kill("SIGINT");
            break;
          }
          await Bun.sleep(5);
        }
        await child.exited;
        expect(sawPaused).toBe(true);
        expect(t.engine.inspect(c.id).state.status).toBe("running");
      } finally {
        await t.engine.remove(c.id, { force: true });
        for (const n of existsSync(join(t.root, "tmp")) ? readdirSync(join(t.root, "tmp")) : [])
          rmSync(join(t.root, "tmp", n), { recursive: true, force: true });
      }
    },
    60_000,
  );

  test("commit: a new image with the changes (deletions as whiteouts), runnable", async () => {
    const id = await prepared("files-commit");
    const image = await t.engine.commit(id, { ref: "localhost/committed:test", message: "m" });
    expect(image.layers.length).toBe(2);
    expect(image.config.history?.at(-1)?.comment).toBe("m");
    const r = await runCollect(t.engine, {
      image: "localhost/committed:test",
      cmd: [
        "sh",
        "-c",
        "cat /data/sub/f /etc/motd; [ -e /bin/vi ] || echo no-vi; readlink /data/etclink",
      ],
      autoRemove: true,
    });
    expect(r.stdout).toBe("inside\nmotd\nno-vi\n/etc\n");
    await t.engine.remove(id);
    expect(lstatSync(t.root).isDirectory()).toBe(true);
  }, 30_000);

  test("commit never writes through the container's symlinks named like the whiteout markers it makes", async () => {
    // A deletion is committed as an empty .wh.NAME file beside it, an opaque directory as an
    // empty .wh..wh..opq in it: a container's own symlinks of those names point at host files.
    const victim = join(host, "whiteout-victim");
    writeFileSync(victim, "precious\n");
    const opaqueVictim = join(host, "opaque-victim");
    writeFileSync(opaqueVictim, "precious\n");
    const r = await runCollect(t.engine, {
      image: IMAGE,
      name: "files-wh-links",
      cmd: [
        "sh",
        "-c",
        `rm /bin/vi && ln -s ${victim} /bin/.wh.vi && ` +
          `rm -rf /usr/bin && mkdir /usr/bin && ln -s ${opaqueVictim} /usr/bin/.wh..wh..opq`,
      ],
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const image = await t.engine
      .commit(r.id, { ref: "localhost/wh-links:committed" })
      .catch(() => null);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(readFileSync(opaqueVictim, "utf8")).toBe("precious\n");
    // The deletion is still committed: /bin/vi is a whiteout in the new layer.
    const layers = await (await t.engine.images()).ensureImageLayers(image!);
    expect(lstatSync(join(layers.at(-1)!.diffPath, "bin/vi")).isCharacterDevice()).toBe(true);
    await t.engine.remove(r.id);
  });

  test("commit and diff never touch the host through an image's volume path climbing with ..", async () => {
    // An image's Volumes are hostile: "/../../<host dir>/empty" is /<host dir>/empty inside the
    // container, but joined onto the upper directory (or the layer's copy) it climbs onto the host.
    const victim = join(host, "victim");
    mkdirSync(join(victim, "empty"), { recursive: true });
    writeFileSync(join(victim, "empty-file"), "");
    const tar = join(host, "climbing.tar");
    makeBusyboxTar(tar);
    const store = await t.engine.images();
    const climb = "/..".repeat(30);
    await importRootfs(store, tar, {
      refs: ["localhost/climbing-volume:test"],
      config: {
        config: {
          Cmd: ["true"],
          Volumes: { [`${climb}${victim}/empty`]: {}, [`${climb}${victim}/empty-file`]: {} },
        },
      },
    });
    rmSync(tar);
    const r = await runCollect(t.engine, { image: "localhost/climbing-volume:test" });
    expect(r.code).toBe(0);
    await t.engine.commit(r.id, { ref: "localhost/climbing-volume:committed" });
    expect(lstatSync(join(victim, "empty")).isDirectory()).toBe(true);
    expect(lstatSync(join(victim, "empty-file")).isFile()).toBe(true);
    // Inside the container the mount points are at /<host dir>/empty...: placeholders, no change.
    const changes = (await t.engine.diff(r.id)).map((c) => `${c.kind} ${c.path}`);
    expect(changes).not.toContain(`A ${victim}/empty`);
    expect(changes).not.toContain(`A ${victim}/empty-file`);
    await t.engine.remove(r.id, { volumes: true });
  }, 30_000);
});
