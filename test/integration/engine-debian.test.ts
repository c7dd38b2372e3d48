// The engine with a real distribution: Debian bookworm minbase from debootstrap (built once per
// machine by scripts/make-debian-image.sh into /var/cache/pivot-test, imported into a private
// root), through the library and the `pivot` command. What busybox cannot show: dpkg's database
// after unpacking (owners, modes, hardlinks, symlinks), bash, users and groups from the image,
// volumes filled from a real /etc, useradd's changes in the upper layer only, signals to bash.
// Containers have no network but loopback: nothing here talks to a mirror.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  type Stats,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import { DEBIAN, DEBIAN_SETUP_TIMEOUT_MS, makeDebianEngine } from "../fixtures/debian.ts";
import { mountsUnder, runCollect, type TestEngine } from "../fixtures/engine.ts";
import { isRoot, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine & { tarball: string };
let host: string;
/** The image's one layer directory, as unpacked in the store. */
let layer: string;

beforeAll(
  async () => {
    if (!isRoot) return;
    t = await makeDebianEngine();
    host = mkdtempSync(join(tmpdir(), "pivot-debian-"));
    chmodSync(host, 0o755);
    const probe = await t.engine.create({ image: DEBIAN, cmd: ["true"] });
    expect(probe.rootfs.lowerdirs).toHaveLength(1);
    layer = probe.rootfs.lowerdirs[0]!;
    await t.engine.remove(probe.id);
  },
  { timeout: DEBIAN_SETUP_TIMEOUT_MS },
);

afterAll(async () => {
  await t?.cleanup();
  if (host) rmSync(host, { recursive: true, force: true });
});

const pivot = (args: string[], input?: string) =>
  pivotCli(t.root, args, { input, timeoutMs: 60_000 });

/** `pivot run --rm ARGS...`, which must succeed; its stdout. */
function run(args: string[], input?: string): string {
  const r = pivot(["run", "--rm", ...(input !== undefined ? ["-i"] : []), ...args], input);
  if (r.status !== 0) throw new Error(`pivot run ${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

interface Entry {
  /** find's %y letters: f d l c b p s. */
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds. */
  mtime: number;
  /** Symlink target. */
  link?: string;
  /** Hardlink: the path this entry is a link to (tar), or the inode (find). */
  hardlinkTo?: string;
  inode?: number;
  nlink?: number;
  /** Device major,minor. */
  dev?: string;
}

/** "-rwsr-xr-x" → 0o4755. */
function modeOf(s: string): number {
  let m = 0;
  const bit = (i: number, c: string, v: number) => {
    if (s[i] === c) m |= v;
  };
  bit(1, "r", 0o400);
  bit(2, "w", 0o200);
  bit(4, "r", 0o40);
  bit(5, "w", 0o20);
  bit(7, "r", 0o4);
  bit(8, "w", 0o2);
  const special = (i: number, exec: number, set: number, on: string, off: string) => {
    if (s[i] === "x" || s[i] === on) m |= exec;
    if (s[i] === on || s[i] === off) m |= set;
  };
  special(3, 0o100, 0o4000, "s", "S");
  special(6, 0o10, 0o2000, "s", "S");
  special(9, 0o1, 0o1000, "t", "T");
  return m;
}

/** The tarball's entries, by absolute path, as GNU tar lists them (times in UTC). */
function tarEntries(tarball: string): Map<string, Entry> {
  const r = spawnSync("tar", ["--numeric-owner", "--full-time", "-tvzf", tarball], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    env: { ...process.env, TZ: "UTC" },
  });
  if (r.status !== 0) throw new Error(`tar -tvzf ${tarball}: ${r.stderr}`);
  const out = new Map<string, Entry>();
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const m = /^(\S)(\S{9}) (\d+)\/(\d+) +(\S+) (\S+) (\d\d):(\d\d):(\d\d)\S* +(\S.*)$/.exec(line);
    if (!m) throw new Error(`unexpected tar listing line: ${line}`);
    let rest = m[10]!;
    const e: Entry = {
      type: { "-": "f", h: "f", d: "d", l: "l", c: "c", b: "b", p: "p" }[m[1]!] ?? m[1]!,
      mode: modeOf(m[1]! + m[2]!),
      uid: Number(m[3]),
      gid: Number(m[4]),
      size: m[1] === "c" || m[1] === "b" ? 0 : Number(m[5]),
      mtime: Date.parse(`${m[6]}T${m[7]}:${m[8]}:${m[9]}Z`) / 1000,
    };
    if (m[1] === "c" || m[1] === "b") e.dev = m[5];
    if (m[1] === "l") [rest, e.link] = rest.split(" -> ") as [string, string];
    if (m[1] === "h") {
      const [path, to] = rest.split(" link to ") as [string, string];
      rest = path;
      e.hardlinkTo = to.replace(/^\.\//, "/");
    }
    out.set(rest.replace(/^\./, "").replace(/\/$/, "") || "/", e);
  }
  return out;
}

const FIND_FORMAT = "%y\\t%m\\t%U\\t%G\\t%i\\t%n\\t%s\\t%T@\\t%p\\t%l\\n";

/** Parses `find -printf FIND_FORMAT` output. */
function findEntries(text: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const line of text.split("\n").filter(Boolean)) {
    const [type, mode, uid, gid, inode, nlink, size, mtime, path, link] = line.split("\t");
    out.set(path!, {
      type: type!,
      mode: Number.parseInt(mode!, 8),
      uid: Number(uid),
      gid: Number(gid),
      inode: Number(inode),
      nlink: Number(nlink),
      size: Number(size),
      mtime: Math.floor(Number(mtime)),
      ...(type === "l" ? { link } : {}),
    });
  }
  return out;
}

function typeOf(st: Stats): string {
  if (st.isFile()) return "f";
  if (st.isDirectory()) return "d";
  if (st.isSymbolicLink()) return "l";
  if (st.isCharacterDevice()) return "c";
  if (st.isBlockDevice()) return "b";
  if (st.isFIFO()) return "p";
  return "s";
}

/** Differences between what tar packed and what is there (`got`), as readable lines. */
function compareEntry(path: string, want: Entry, got: Entry | undefined): string[] {
  if (!got) return [`${path}: missing`];
  const bad: string[] = [];
  const diff = (what: string, a: unknown, b: unknown) => {
    if (a !== b) bad.push(`${path}: ${what} ${String(a)} in the tarball, ${String(b)} here`);
  };
  diff("type", want.type, got.type);
  if (want.type !== "l") diff("mode", want.mode.toString(8), got.mode.toString(8));
  diff("owner", `${want.uid}:${want.gid}`, `${got.uid}:${got.gid}`);
  if (want.type === "l") diff("symlink target", want.link, got.link);
  if (want.type === "f" && !want.hardlinkTo) diff("size", want.size, got.size);
  if (want.type !== "d" && !want.hardlinkTo) diff("mtime", want.mtime, got.mtime);
  if (want.dev !== undefined) diff("device", want.dev, got.dev);
  return bad;
}

/** The same record for a path of the layer directory on the host. */
function layerEntry(path: string): Entry | undefined {
  let st: Stats;
  try {
    st = lstatSync(join(layer, path));
  } catch {
    return undefined;
  }
  const rdev = Number(st.rdev);
  return {
    type: typeOf(st),
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    mtime: Math.floor(st.mtimeMs / 1000),
    ...(st.isSymbolicLink() ? { link: readlinkSync(join(layer, path)) } : {}),
    ...(st.isCharacterDevice() || st.isBlockDevice()
      ? { dev: `${(rdev >> 8) & 0xfff},${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}` }
      : {}),
  };
}

describe.skipIf(!isRoot)("engine: a Debian bookworm minbase image", () => {
  test("it is Debian 12: debian_version, os-release; bash is its command, dash its /bin/sh", () => {
    const out = run([
      DEBIAN,
      "bash",
      "-c",
      'cat /etc/debian_version; . /etc/os-release; echo "$ID $VERSION_CODENAME $VERSION_ID"; ' +
        'echo "$PRETTY_NAME"; readlink -f /bin/sh; ls /sys/class/net',
    ]).split("\n");
    expect(out[0]).toMatch(/^12\.\d+$/);
    expect(out[1]).toBe("debian bookworm 12");
    expect(out[2]).toBe("Debian GNU/Linux 12 (bookworm)");
    expect(out[3]).toBe("/usr/bin/dash");
    expect(out[4]).toBe("lo"); // --network none: loopback only, no way to a mirror
    // The image's command is bash: it reads the script from stdin.
    expect(run([DEBIAN], 'echo "$BASH_VERSION|$0"\n')).toMatch(
      /^5\.2\.\d+\(\d+\)-release\|bash\n$/,
    );
  });

  test("dpkg's database is intact: every package installed, --verify and --audit find nothing, apt resolves offline", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's ${field} format
    const format = "'${db:Status-Abbrev}|${Package}|${Version}\\n'";
    const out = run([
      DEBIAN,
      "bash",
      "-c",
      `dpkg-query -W -f=${format} && echo '--' && ` +
        "dpkg --verify && dpkg --audit && echo verified && dpkg -l bash | tail -1 && " +
        "apt-get check -q && apt-cache policy dpkg",
    ]);
    const [query, rest] = out.split("--\n") as [string, string];
    const packages = query.split("\n").filter(Boolean);
    expect(packages.length).toBeGreaterThan(60);
    expect(packages.filter((p) => !p.startsWith("ii |"))).toEqual([]);
    const names = packages.map((p) => p.split("|")[1]);
    for (const essential of ["base-files", "bash", "coreutils", "dpkg", "apt", "libc6", "passwd"]) {
      expect(names).toContain(essential);
    }
    // --verify checks every installed file's md5sum and presence; nothing is printed when all match.
    expect(rest).toStartWith("verified\nii  bash ");
    expect(rest).toContain("Building dependency tree");
    expect(rest).toContain("/var/lib/dpkg/status"); // the only version table: no lists, no network
  });

  test("unpacked as packed: each entry's type, mode (setuid, setgid, sticky), owner, size, mtime, symlink target, hardlinks and device numbers", async () => {
    const want = tarEntries(t.tarball);
    const r = await runCollect(t.engine, {
      image: DEBIAN,
      cmd: [
        "bash",
        "-c",
        `cut -d' ' -f5 /proc/self/mountinfo; echo --; find / -xdev -printf '${FIND_FORMAT}'`,
      ],
      autoRemove: true,
    });
    expect(r.code).toBe(0);
    const [mountText, findText] = r.stdout.split("--\n") as [string, string];
    const mountPoints = mountText.split("\n").filter((m) => m && m !== "/");
    const hidden = (p: string) => mountPoints.some((m) => p === m || p.startsWith(`${m}/`));
    const got = findEntries(findText);
    const bad: string[] = [];
    let inContainer = 0;
    let inLayer = 0;
    for (const [path, entry] of want) {
      if (hidden(path)) {
        // Under /dev, /proc, ... or a file mounted over: the layer directory has it.
        bad.push(...compareEntry(path, entry, layerEntry(path)));
        inLayer++;
        continue;
      }
      const here = got.get(path);
      bad.push(...compareEntry(path, entry, here));
      if (entry.hardlinkTo && here) {
        const target = got.get(entry.hardlinkTo);
        if (here.inode !== target?.inode || here.nlink !== 2) {
          bad.push(`${path}: not a hardlink of ${entry.hardlinkTo} (nlink ${here.nlink})`);
        }
      }
      inContainer++;
    }
    // The root filesystem adds nothing but mount points.
    bad.push(
      ...[...got.keys()]
        .filter((p) => !want.has(p) && !hidden(p))
        .map((p) => `${p}: not in the tarball`),
    );
    expect(bad).toEqual([]);
    expect(inContainer).toBeGreaterThan(5000);
    // What the checks above covered: setuid root, setgid shadow, sticky /tmp, a hardlink,
    // merged /usr, a device node under /dev.
    expect(got.get("/usr/bin/passwd")).toMatchObject({ mode: 0o4755, uid: 0, gid: 0 });
    expect(got.get("/usr/bin/chage")).toMatchObject({ mode: 0o2755, uid: 0, gid: 42 });
    expect(got.get("/tmp")).toMatchObject({ type: "d", mode: 0o1777 });
    expect(want.get("/usr/bin/perl5.36.0")?.hardlinkTo).toBe("/usr/bin/perl");
    expect(got.get("/bin")).toMatchObject({ type: "l", link: "usr/bin" });
    expect(want.get("/dev/null")).toMatchObject({ type: "c", dev: "1,3" });
    expect(inLayer).toBeGreaterThan(5);
  });

  test("users and groups come from the image's /etc/passwd and /etc/group", () => {
    expect(run(["-u", "nobody", DEBIAN, "id"])).toBe(
      "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n",
    );
    expect(run(["-u", "www-data", DEBIAN, "bash", "-c", 'id; echo "$HOME"'])).toBe(
      "uid=33(www-data) gid=33(www-data) groups=33(www-data)\n/var/www\n",
    );
    expect(run(["-u", "www-data:mail", DEBIAN, "id"])).toBe(
      "uid=33(www-data) gid=8(mail) groups=8(mail)\n",
    );
    // A uid the image does not know: group root, as Docker does.
    expect(run(["-u", "1000", DEBIAN, "id"])).toBe("uid=1000 gid=0(root) groups=0(root)\n");
    const missing = pivot(["run", "--rm", "-u", "nosuch", DEBIAN, "id"]);
    expect(missing.status).toBe(125);
    expect(missing.stderr).toContain("unable to find user nosuch");
  });

  test("useradd and writes into /usr and /etc land in the upper layer only: diff, the image, a second container, commit", async () => {
    const r = await runCollect(t.engine, {
      image: DEBIAN,
      name: "edited",
      cmd: [
        "bash",
        "-c",
        "useradd -m -G mail,staff -s /bin/bash alice && " +
          "printf '#!/bin/sh\\necho hello from /usr/local\\n' > /usr/local/bin/hello && " +
          "chmod 755 /usr/local/bin/hello && echo changed >> /etc/issue && rm /usr/bin/perl5.36.0",
      ],
    });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const d = pivot(["diff", "edited"]);
    expect(d.status).toBe(0);
    const changes = d.stdout.split("\n").filter(Boolean);
    for (const c of [
      "C /etc/passwd",
      "C /etc/shadow",
      "C /etc/group",
      "C /etc/gshadow",
      "C /etc/issue",
      "A /home/alice",
      "A /home/alice/.bashrc",
      "A /usr/local/bin/hello",
      "D /usr/bin/perl5.36.0",
    ]) {
      expect(changes).toContain(c);
    }
    // The engine's own mounts over /etc/hostname, /etc/hosts and /etc/resolv.conf are no change.
    expect(changes.filter((c) => /\/etc\/(hostname|hosts|resolv\.conf)$/.test(c))).toEqual([]);
    // The upper directory holds the changes; the image's layer is as unpacked.
    const upper = t.engine.inspect("edited").rootfs.upperdir;
    expect(readFileSync(join(upper, "etc/passwd"), "utf8")).toContain(
      "alice:x:1000:1000::/home/alice:/bin/bash\n",
    );
    expect(lstatSync(join(upper, "usr/bin/perl5.36.0")).isCharacterDevice()).toBe(true); // whiteout
    expect(readFileSync(join(layer, "etc/passwd"), "utf8")).not.toContain("alice");
    expect(readFileSync(join(layer, "etc/issue"), "utf8")).toBe("Debian GNU/Linux 12 \\n \\l\n\n");
    expect(existsSync(join(layer, "usr/local/bin/hello"))).toBe(false);
    expect(existsSync(join(layer, "home/alice"))).toBe(false);
    expect(lstatSync(join(layer, "usr/bin/perl5.36.0")).nlink).toBe(2);
    // Another container from the image sees none of it.
    const other = pivot([
      "run",
      "--rm",
      DEBIAN,
      "bash",
      "-c",
      "id alice; ls -A /usr/local/bin /home; test -x /usr/bin/perl5.36.0 && echo perl; grep -c alice /etc/passwd",
    ]);
    expect(other.stderr).toBe("id: 'alice': no such user\n");
    expect(other.stdout).toBe("/home:\n\n/usr/local/bin:\nperl\n0\n");
    // Committed, the new user is one -u resolves, with the supplementary groups useradd gave.
    expect(pivot(["commit", "edited", "localhost/debian:alice"]).status).toBe(0);
    expect(
      run(["-u", "alice", "localhost/debian:alice", "bash", "-c", 'id; echo "$HOME"; hello']),
    ).toBe(
      "uid=1000(alice) gid=1000(alice) groups=1000(alice),8(mail),50(staff)\n/home/alice\nhello from /usr/local\n",
    );
    await t.engine.remove("edited");
  });

  test("a new named volume at /etc/apt is filled from the image, then kept as the containers left it", () => {
    expect(run(["-v", "aptconf:/etc/apt", DEBIAN, "cat", "/etc/apt/sources.list"])).toBe(
      readFileSync(join(layer, "etc/apt/sources.list"), "utf8"),
    );
    // The copy keeps names, types, modes, owners, sizes and times.
    const vol = t.engine.inspectVolume("aptconf").mountpoint;
    const walk = (dir: string, rel = ""): string[] =>
      readdirSync(join(dir, rel))
        .sort()
        .flatMap((n) => {
          const p = join(rel, n);
          const st = lstatSync(join(dir, p));
          const line = `${p} ${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? "" : `${st.size} ${Math.floor(st.mtimeMs)}`}`;
          return st.isDirectory() ? [line, ...walk(dir, p)] : [line];
        });
    const image = walk(join(layer, "etc/apt"));
    expect(image.length).toBeGreaterThan(5);
    expect(walk(vol)).toEqual(image);
    // Changed by one container, the volume is not filled again for the next.
    run([
      "-v",
      "aptconf:/etc/apt",
      DEBIAN,
      "bash",
      "-c",
      "rm /etc/apt/sources.list && echo 'APT::Pivot-Test \"kept\";' > /etc/apt/apt.conf.d/99pivot",
    ]);
    expect(
      run([
        "-v",
        "aptconf:/etc/apt",
        DEBIAN,
        "bash",
        "-c",
        "test -e /etc/apt/sources.list || echo no sources.list; apt-config shell V APT::Pivot-Test",
      ]),
    ).toBe("no sources.list\nV='kept'\n");
    // Without the volume: the image's /etc/apt.
    expect(
      run([
        DEBIAN,
        "bash",
        "-c",
        "test -e /etc/apt/sources.list && apt-config shell V APT::Pivot-Test",
      ]),
    ).toBe("");
    expect(pivot(["volume", "rm", "aptconf"]).status).toBe(0);
  });

  test("a bind mount is shared both ways; owners show with the image's names", () => {
    const dir = join(host, "bind");
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, "from-host"), "host data\n");
    chownSync(join(dir, "from-host"), 65534, 65534);
    const out = run([
      "-u",
      "www-data",
      "-v",
      `${dir}:/srv/shared`,
      DEBIAN,
      "bash",
      "-c",
      "stat -c '%U:%G %s' /srv/shared/from-host && cat /srv/shared/from-host && " +
        "echo container data > /srv/shared/from-container",
    ]);
    expect(out).toBe("nobody:nogroup 10\nhost data\n");
    expect(readFileSync(join(dir, "from-container"), "utf8")).toBe("container data\n");
    const st = lstatSync(join(dir, "from-container"));
    expect([st.uid, st.gid]).toEqual([33, 33]);
  });

  test("--read-only with --tmpfs /tmp: mktemp works, the rest refuses writes", () => {
    const r = pivot([
      "run",
      "--rm",
      "--read-only",
      "--tmpfs",
      "/tmp",
      DEBIAN,
      "bash",
      "-c",
      'f=$(mktemp) && echo ok > "$f" && cat "$f" && echo "$f" && stat -f -c %T /tmp; ' +
        "touch /etc/x; echo $?; mktemp -p /var/tmp; echo $?",
    ]);
    expect(r.status).toBe(0);
    const [ok, path, fs, touch, mk] = r.stdout.split("\n");
    expect(ok).toBe("ok");
    expect(path).toMatch(/^\/tmp\/tmp\.\w{10}$/);
    expect(fs).toBe("tmpfs");
    expect([touch, mk]).toEqual(["1", "1"]);
    expect(r.stderr).toContain("touch: cannot touch '/etc/x': Read-only file system");
    expect(r.stderr).toContain(
      "mktemp: failed to create file via template '/var/tmp/tmp.XXXXXXXXXX': Read-only file system",
    );
  });

  test("--init: tini is PID 1, bash its child; the exit code passes", () => {
    const r = pivot([
      "run",
      "--rm",
      "--init",
      DEBIAN,
      "bash",
      "-c",
      'tr "\\0" " " < /proc/1/cmdline; echo; echo $$; exit 3',
    ]);
    expect(r.status).toBe(3);
    const [cmdline, pid] = r.stdout.split("\n");
    expect(cmdline).toStartWith("/sbin/docker-init -- bash -c ");
    expect(Number(pid)).toBeGreaterThan(1);
  });

  test("export: the container's root filesystem as tar, /etc/debian_version and its changes in it", async () => {
    const r = await runCollect(t.engine, {
      image: DEBIAN,
      name: "exported",
      cmd: ["bash", "-c", "echo exported > /etc/motd"],
    });
    expect(r.code).toBe(0);
    const out = join(host, "exported.tar");
    expect(pivot(["export", "-o", out, "exported"])).toMatchObject({ status: 0, stderr: "" });
    const list = spawnSync("tar", ["--numeric-owner", "-tvf", out], {
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    expect(list.status).toBe(0);
    // Lines: mode owner size date time path [-> target | link to target]; paths without ./
    const byPath = new Map(
      list.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const path = /^\S+ \S+ +\S+ \S+ \S+ +(\S.*)$/.exec(l)?.[1] ?? l;
          return [path.split(/ -> | link to /)[0]!.replace(/^\.?\/?/, ""), l] as const;
        }),
    );
    expect(byPath.has("etc/debian_version")).toBe(true);
    expect(byPath.get("usr/bin/passwd")).toMatch(/^-rwsr-xr-x 0\/0 /);
    expect(byPath.size).toBeGreaterThan(5000);
    const member = list.stdout.includes(" ./etc/") ? "./" : "";
    const file = (p: string) =>
      spawnSync("tar", ["-xOf", out, `${member}${p}`], { encoding: "utf8" }).stdout;
    expect(file("etc/debian_version")).toBe(
      readFileSync(join(layer, "etc/debian_version"), "utf8"),
    );
    expect(file("etc/motd")).toBe("exported\n");
    await t.engine.remove("exported");
  });
});

describe.skipIf(!isRoot || !hasConmon)("engine: Debian containers under conmon", () => {
  async function execOut(ref: string, cmd: string[], user?: string) {
    const ex = await t.engine.exec(ref, { cmd, ...(user ? { user } : {}) });
    let out = "";
    ex.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    return { code: await ex.wait(), out };
  }

  test("exec into a running container: its PID 1, the image's users, writes in its upper layer", async () => {
    const c = await t.engine.run({
      image: DEBIAN,
      name: "sleeper",
      cmd: ["sleep", "infinity"],
      detach: true,
      stopTimeout: 1,
    });
    const ex = await execOut(
      "sleeper",
      [
        "bash",
        "-c",
        'tr "\\0" " " < /proc/1/cmdline; echo; echo $$; id -un; touch /usr/local/share/by-exec',
      ],
      "root",
    );
    expect(ex.code).toBe(0);
    const [cmdline, pid, user] = ex.out.split("\n");
    expect(cmdline).toBe("sleep infinity ");
    expect(Number(pid)).toBeGreaterThan(1);
    expect(user).toBe("root");
    expect(await execOut("sleeper", ["id"], "www-data")).toEqual({
      code: 0,
      out: "uid=33(www-data) gid=33(www-data) groups=33(www-data)\n",
    });
    const info = t.engine.inspect(c.id);
    expect(existsSync(join(info.rootfs.upperdir, "usr/local/share/by-exec"))).toBe(true);
    expect(existsSync(join(layer, "usr/local/share/by-exec"))).toBe(false);
    await t.engine.remove(c.id, { force: true });
    expect(mountsUnder(info.dir)).toEqual([]);
  });

  test("stop: bash as PID 1 ignoring SIGTERM gets SIGKILL when the timeout ends", async () => {
    const c = await t.engine.run({
      image: DEBIAN,
      cmd: ["bash", "-c", "trap '' TERM; echo ready; while :; do sleep 0.2; done"],
      detach: true,
      stopTimeout: 2,
    });
    let ready = false;
    for (let i = 0; i < 100 && !ready; i++) {
      for await (const e of t.engine.logs(c.id)) if (e.text === "ready\n") ready = true;
      if (!ready) await Bun.sleep(50);
    }
    expect(ready).toBe(true);
    // The kernel agrees that PID 1 ignores SIGTERM (signal 15: bit 14 of SigIgn).
    const status = await execOut(c.id, ["grep", "^SigIgn:", "/proc/1/status"]);
    expect(BigInt(`0x${status.out.split("\t")[1]!.trim()}`) & 0x4000n).toBe(0x4000n);
    const t0 = Date.now();
    await t.engine.stop(c.id);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(8000);
    expect(t.engine.inspect(c.id).state).toMatchObject({ status: "exited", exitCode: 137 });
    await t.engine.remove(c.id);
  });

  test("--init: SIGTERM reaches bash, tini's child, which exits at once with its trap's code", async () => {
    const c = await t.engine.run({
      image: DEBIAN,
      cmd: ["bash", "-c", "trap 'exit 42' TERM; echo ready; sleep infinity & wait"],
      init: true,
      detach: true,
      stopTimeout: 20,
    });
    let ready = false;
    for (let i = 0; i < 100 && !ready; i++) {
      for await (const e of t.engine.logs(c.id)) if (e.text === "ready\n") ready = true;
      if (!ready) await Bun.sleep(50);
    }
    expect(ready).toBe(true);
    const t0 = Date.now();
    await t.engine.stop(c.id);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(t.engine.inspect(c.id).state).toMatchObject({ status: "exited", exitCode: 42 });
    await t.engine.remove(c.id);
  });
});
