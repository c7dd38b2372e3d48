// The rootless engine (issue #7): `pivot` as an ordinary user, in a user namespace mapping it to
// root and its /etc/subuid range to 1..65536. A throwaway user is made for these tests (useradd,
// a subordinate range no one else has) and removed afterwards with everything it left, even
// when a test fails. The commands run through setpriv with a clean environment: HOME and
// XDG_RUNTIME_DIR are private directories the test makes (no logind here).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
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
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeHostPort } from "../../src/network/ports.ts";
import { makeBusyboxTar, mountsUnder } from "../fixtures/engine.ts";
import { BUN, PIVOT_CLI, pivotCli, runAsUser } from "../helpers.ts";

if (process.getuid?.() !== 0)
  throw new Error("the rootless engine tests make a user and run real containers: they need root");

const IMAGE = "localhost/rootless:test";
const COUNT = 65536;
const user = `pivrl${process.pid % 100000}`;
const bare = `pivnr${process.pid % 100000}`; // a user without subordinate ids
let uid = -1;
let gid = -1;
let sub = -1;
let work: string;
let home: string;
let xdg: string;
let rootStore: string;
let counter = 0;

const sh = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

/** The first range of COUNT ids from 200000 up that no line of /etc/subuid or subgid touches. */
function freeRange(): number {
  const taken: [number, number][] = [];
  for (const f of ["/etc/subuid", "/etc/subgid"]) {
    for (const line of (existsSync(f) ? readFileSync(f, "utf8") : "").split("\n")) {
      const [, s, c] = line.split(":");
      if (s && c) taken.push([Number(s), Number(s) + Number(c)]);
    }
  }
  for (let start = 200000; ; start += COUNT) {
    if (!taken.some(([a, b]) => start < b && start + COUNT > a)) return start;
  }
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "pivot-rootless-"));
  chmodSync(work, 0o711); // the user reaches its own directories in it, nothing else
  sub = freeRange();
  sh("useradd", ["--system", "--no-create-home", "--user-group", "-s", "/bin/false", user]);
  sh("usermod", ["--add-subuids", `${sub}-${sub + COUNT - 1}`, user]);
  sh("usermod", ["--add-subgids", `${sub}-${sub + COUNT - 1}`, user]);
  uid = Number(sh("id", ["-u", user]).trim());
  gid = Number(sh("id", ["-g", user]).trim());
  home = join(work, "home");
  xdg = join(work, "xdg");
  for (const d of [home, xdg, join(work, "data")]) {
    mkdirSync(d, { mode: 0o700 });
    chownSync(d, uid, gid);
  }
  // The image: busybox plus /owned, a directory and a file of uid/gid 1000, and a file of the
  // highest id the namespace maps.
  const tar = join(work, "rootfs.tar");
  makeBusyboxTar(tar, (rootfs) => {
    mkdirSync(join(rootfs, "owned"));
    writeFileSync(join(rootfs, "owned/f"), "a thousand\n");
    writeFileSync(join(rootfs, "owned/top"), "the last id\n");
    chownSync(join(rootfs, "owned"), 1000, 1000);
    chownSync(join(rootfs, "owned/f"), 1000, 1000);
    chownSync(join(rootfs, "owned/top"), COUNT, COUNT);
  });
  chmodSync(tar, 0o644);
  const beyond = join(work, "beyond.tar");
  makeBusyboxTar(beyond, (rootfs) => {
    writeFileSync(join(rootfs, "far"), "");
    chownSync(join(rootfs, "far"), COUNT + 1, 0);
  });
  chmodSync(beyond, 0o644);
  // Root's own engine state beside it, which the user must not reach.
  rootStore = mkdtempSync(join(tmpdir(), "pivot-rootless-root-"));
  const imported = pivotCli(rootStore, ["import", tar, "localhost/root-only"]);
  if (imported.status !== 0) throw new Error(`root's import failed: ${imported.stderr}`);
}, 120_000);

afterAll(() => {
  // Everything the user runs, by pid (its containers, conmon, cleanup hooks), then its files.
  for (let i = 0; i < 20 && userPids().length > 0; i++) {
    for (const pid of userPids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    Bun.sleepSync(100);
  }
  if (work) {
    for (const m of mountsUnder(work).reverse()) spawnSync("umount", ["-l", m]);
    rmSync(work, { recursive: true, force: true });
  }
  if (rootStore) rmSync(rootStore, { recursive: true, force: true });
  if (sub > 0) {
    spawnSync("usermod", [
      "--del-subuids",
      `${sub}-${sub + COUNT - 1}`,
      "--del-subgids",
      `${sub}-${sub + COUNT - 1}`,
      user,
    ]);
  }
  for (const u of [user, bare]) {
    spawnSync("userdel", [u]);
    spawnSync("groupdel", [u]);
  }
}, 60_000);

/** Pids of the test user's processes (ps; zombies included, they go with their parent). */
function userPids(): number[] {
  if (uid < 0) return [];
  const r = spawnSync("ps", ["-o", "pid=", "-u", String(uid)], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * `pivot ARGS` as USER with a clean environment (HOME, XDG_RUNTIME_DIR, PATH only). Output goes
 * through files: a detached container's monitor would hold a pipe open for its whole life.
 */
function asUser(
  args: string[],
  options: { who?: string; env?: Record<string, string | undefined> } = {},
): Result {
  const env = {
    HOME: home,
    XDG_RUNTIME_DIR: xdg,
    PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    ...options.env,
  };
  return runAsUser({ uid: options.who ?? user }, [BUN, PIVOT_CLI, ...args], { env, cwd: work });
}

function ok(args: string[]): string {
  const r = asUser(args);
  if (r.status !== 0) throw new Error(`pivot ${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

const store = () => join(home, ".local/share/pivot");
const runRoot = () => join(xdg, "pivot");

/** /proc/PID/status's Uid: or Gid: line as its four ids. */
function statusIds(pid: number, field: "Uid" | "Gid"): number[] {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`))!;
  return line.split(/\s+/).slice(1, 5).map(Number);
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe("rootless engine", () => {
  // Whatever a failed test left running goes before the next one.
  afterEach(() => {
    if (!existsSync(store())) return;
    const ids = asUser(["ps", "-aq"]).stdout.split("\n").filter(Boolean);
    if (ids.length > 0) asUser(["rm", "-f", ...ids]);
  }, 60_000);

  test("pivot import as the user: the store is in ~/.local/share/pivot, owners shifted into the user's subordinate ids", () => {
    ok(["import", join(work, "rootfs.tar"), IMAGE]);
    expect(ok(["images"])).toContain("localhost/rootless");
    expect(statSync(store()).uid).toBe(uid);
    expect(statSync(store()).mode & 0o777).toBe(0o700);
    const layers = join(store(), "layers/sha256");
    const layer = readdirSync(layers).find((d) => !d.startsWith("."))!;
    const diff = join(layers, layer, "diff");
    // Container root is the user; container uid N > 0 is host uid SUB+N-1.
    expect(statSync(join(diff, "bin")).uid).toBe(uid);
    expect(statSync(join(diff, "owned/f")).uid).toBe(sub + 999);
    expect(statSync(join(diff, "owned/f")).gid).toBe(sub + 999);
    expect(statSync(join(diff, "owned/top")).uid).toBe(sub + COUNT - 1);
    // pivot unshare: the user's view in the namespace, the image's own owners.
    const r = asUser(["unshare", "stat", "-c", "%u:%g", join(diff, "owned/f")]);
    expect(r.stdout.trim()).toBe("1000:1000");
  });

  test("pivot run --rm: uid 0 inside, the image's owners, a nested user namespace; the cgroup warning; nothing left", () => {
    const r = asUser([
      "run",
      "--rm",
      IMAGE,
      "sh",
      "-c",
      "id -u; id -g; cat /proc/self/uid_map; stat -c %u:%g /owned/f /owned/top; touch /owned/new && stat -c %u /owned/new",
    ]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.slice(0, 2)).toEqual(["0", "0"]);
    expect(lines[2]!.trim().split(/\s+/)).toEqual(["0", "0", "1"]);
    expect(lines[3]!.trim().split(/\s+/)).toEqual(["1", "1", String(COUNT)]);
    expect(lines.slice(4)).toEqual(["1000:1000", `${COUNT}:${COUNT}`, "0"]);
    expect(r.stderr).toContain("not delegated");
    expect(readdirSync(join(store(), "containers"))).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
    expect(mountsUnder(work)).toEqual([]);
  });

  test("detached: the process is the user outside, a bind-mounted directory gets the user's files; ps, exec, logs, stop, rm; nothing leaks", async () => {
    const data = join(work, "data");
    const id = ok([
      "run",
      "-d",
      "--name",
      "sleeper",
      "-v",
      `${data}:/data`,
      IMAGE,
      "sh",
      "-c",
      "touch /data/made-inside; mkdir /data/dir; echo started; exec sleep 600",
    ]).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const info = JSON.parse(ok(["inspect", "sleeper"]));
    const pid = (Array.isArray(info) ? info[0] : info).state.pid as number;
    expect(pid).toBeGreaterThan(0);
    await until("the bind-mounted file", () => existsSync(join(data, "dir")));
    // From the host: the container's root is the user, all four ids.
    expect(statusIds(pid, "Uid")).toEqual([uid, uid, uid, uid]);
    expect(statusIds(pid, "Gid")).toEqual([gid, gid, gid, gid]);
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toEqual(["sleep", "600", ""]);
    for (const f of ["made-inside", "dir"]) {
      expect(statSync(join(data, f)).uid).toBe(uid);
      expect(statSync(join(data, f)).gid).toBe(gid);
    }
    // The overlay is mounted in the namespaces of the container and its monitor, not the host's.
    expect(mountsUnder(work)).toEqual([]);

    const ps = ok(["ps"]);
    expect(ps).toContain("sleeper");
    expect(ps).toContain("Up ");
    const exec = asUser(["exec", "sleeper", "sh", "-c", "id -u; stat -c %u /owned/f"]);
    expect(exec.status).toBe(0);
    expect(exec.stdout.trim().split("\n")).toEqual(["0", "1000"]);
    expect(ok(["logs", "sleeper"])).toContain("started");
    // cp runs in its monitor's user namespace (the test below): the file as the container has it.
    expect(ok(["cp", "sleeper:/etc/passwd", "-"])).toContain("root:");
    // Without a cgroup of its own there is nothing to read: said, not an empty table.
    for (const args of [
      ["top", "sleeper"],
      ["stats", "--no-stream", "sleeper"],
    ]) {
      const r = asUser(args);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("container sleeper has no cgroup of its own");
    }

    ok(["stop", "-t", "1", "sleeper"]);
    expect(ok(["ps", "-a"])).toMatch(/sleeper/);
    expect(ok(["ps", "-a", "--format", "{{.Status}}"])).toMatch(/^Exited \(137\)/);
    ok(["rm", "sleeper"]);
    expect(ok(["ps", "-aq"]).trim()).toBe("");
    // conmon's exit hook may still be finishing: then nothing of the user runs.
    await until("the user's processes to end", () => userPids().length === 0);
    expect(readdirSync(join(store(), "containers"))).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
    expect(mountsUnder(work)).toEqual([]);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  test("cp out of and into a running container, export; its symlinks never reach the host's files", async () => {
    const out = join(work, "cpout");
    const secret = join(work, "secret");
    const src = join(work, "cpsrc");
    try {
      for (const d of [out, join(src, "dir")]) mkdirSync(d, { recursive: true });
      writeFileSync(secret, "host-secret\n", { mode: 0o600 });
      writeFileSync(join(src, "file"), "from the host\n");
      writeFileSync(join(src, "dir/inner"), "inner\n");
      for (const p of [
        out,
        secret,
        src,
        join(src, "file"),
        join(src, "dir"),
        join(src, "dir/inner"),
      ])
        chownSync(p, uid, gid);
      // Links out of the container: relative with .. past its root, and absolute, to a file and
      // to directories of the host the user can read and write.
      ok([
        "run",
        "-d",
        "--name",
        "files",
        IMAGE,
        "sh",
        "-c",
        `mkdir -p /d/sub && echo deep > /d/sub/f && echo top > /d/top && ln -s /../../../..${secret} /etc/x && ln -s ${secret} /etc/abs && ln -s /../../../..${work} /w && ln -s ${out} /o && ln -s /../../../../etc /hostetc && echo ready && exec sleep 600`,
      ]);
      await until("the container's files", () => ok(["logs", "files"]).includes("ready"), 20_000);
      expect(mountsUnder(work)).toEqual([]);

      // Out: a file and a directory to host paths, and both as tar streams.
      ok(["cp", "files:/d/top", join(out, "top")]);
      expect(readFileSync(join(out, "top"), "utf8")).toBe("top\n");
      expect(statSync(join(out, "top")).uid).toBe(uid);
      ok(["cp", "files:/d", join(out, "d")]);
      expect(readFileSync(join(out, "d/sub/f"), "utf8")).toBe("deep\n");
      ok(["cp", "files:/owned", out]);
      expect(statSync(join(out, "owned/f")).uid).toBe(sub + 999); // the image's 1000
      const tarOf = (args: string[]) => {
        const file = join(out, `stream-${++counter}.tar`);
        writeFileSync(file, ok(args), "latin1");
        return file;
      };
      const list = (file: string) =>
        sh("tar", ["-tvf", file, "--numeric-owner"]).trim().split("\n");
      const passwd = tarOf(["cp", "files:/etc/passwd", "-"]);
      expect(sh("tar", ["-xOf", passwd, "passwd"])).toContain("root:");
      const dir = list(tarOf(["cp", "files:/owned", "-"]));
      expect(dir.some((l) => / 1000\/1000 .* owned\/f$/.test(l))).toBe(true);

      // In: a file and a directory, in the container's upper layer, root's inside.
      ok(["cp", join(src, "file"), "files:/d/"]);
      ok(["cp", join(src, "dir"), "files:/copied"]);
      const seen = asUser([
        "exec",
        "files",
        "sh",
        "-c",
        "cat /d/file /copied/inner; stat -c %u:%g /d/file /copied /copied/inner; ls -a /d",
      ]);
      expect(seen.status).toBe(0);
      const lines = seen.stdout.trim().split("\n");
      expect(lines.slice(0, 5)).toEqual(["from the host", "inner", "0:0", "0:0", "0:0"]);
      expect(lines.slice(5).some((l) => l.startsWith(".pivot-cp-"))).toBe(false);
      const upper = JSON.parse(ok(["inspect", "files"]));
      const upperdir = (Array.isArray(upper) ? upper[0] : upper).rootfs.upperdir as string;
      expect(readFileSync(join(upperdir, "d/file"), "utf8")).toBe("from the host\n");
      expect(statSync(join(upperdir, "d/file")).uid).toBe(uid); // container root is the user

      // Symlinks resolve inside the container: never the host's files, read or written.
      for (const path of ["/etc/x", "/etc/abs", "/w/secret", "/hostetc/shadow"]) {
        const r = asUser(["cp", `files:${path}/.`, "-"]);
        expect(r.stdout).not.toContain("host-secret");
        expect(r.stdout).not.toContain(readFileSync("/etc/shadow", "utf8").split("\n")[0]!);
        const f = asUser(["cp", `files:${path}`, join(out, "leak")]);
        // The link itself, or what it names inside the container (its own /etc/shadow).
        if (
          f.status === 0 &&
          !lstatSync(join(out, "leak"), { throwIfNoEntry: false })?.isSymbolicLink()
        ) {
          const got = readFileSync(join(out, "leak"), "utf8");
          expect(got).not.toContain("host-secret");
          expect(got).not.toBe(readFileSync("/etc/shadow", "utf8"));
        }
        rmSync(join(out, "leak"), { force: true });
      }
      for (const dest of ["files:/w/planted", "files:/o/", "files:/hostetc/", "files:/etc/x"]) {
        asUser(["cp", join(src, "file"), dest]);
      }
      expect(existsSync(join(work, "planted"))).toBe(false);
      expect(existsSync(join(out, "file"))).toBe(false);
      expect(existsSync("/etc/file")).toBe(false);
      expect(readFileSync(secret, "utf8")).toBe("host-secret\n");
      // /hostetc/ is the container's /etc; /etc/x names a missing file in the container.
      const inside = asUser(["exec", "files", "sh", "-c", "cat /etc/file; readlink /etc/x"]);
      expect(inside.stdout).toBe(`from the host\n/../../../..${secret}\n`);
      // export joins the monitor's namespace too (engine-rootless-files.test.ts): the links as links.
      const exported = join(out, "files.tar");
      ok(["export", "-o", exported, "files"]);
      expect(list(exported).some((l) => l.endsWith(` ./etc/x -> /../../../..${secret}`))).toBe(
        true,
      );
      expect(readFileSync(exported, "latin1")).not.toContain("host-secret");

      ok(["rm", "-f", "files"]);
      await until("the user's processes to end", () => userPids().length === 0);
      expect(mountsUnder(work)).toEqual([]);
      expect(readdirSync(join(store(), "containers"))).toEqual([]);
    } finally {
      asUser(["rm", "-f", "files"]);
      for (const p of [out, secret, src]) rmSync(p, { recursive: true, force: true });
    }
  }, 120_000);

  test("rm -f of a running container, diff and commit as the user", async () => {
    ok([
      "run",
      "--name",
      "changer",
      IMAGE,
      "sh",
      "-c",
      "rm -rf /owned; mkdir /owned; echo new > /owned/only; rm /bin/vi",
    ]);
    const diff = ok(["diff", "changer"]);
    expect(diff).toContain("D /bin/vi");
    expect(diff).toContain("A /owned/only");
    ok(["commit", "changer", "localhost/rootless:changed"]);
    // The committed layer's opaque /owned hides the image's files (user.overlay.opaque).
    const r = asUser([
      "run",
      "--rm",
      "localhost/rootless:changed",
      "sh",
      "-c",
      "ls /owned; ls /bin/vi || true",
    ]);
    expect(r.stdout.trim().split("\n")[0]).toBe("only");
    expect(r.stderr).toContain("/bin/vi");
    ok(["rm", "changer"]);
    ok(["run", "-d", "--name", "doomed", IMAGE, "sleep", "600"]);
    ok(["rm", "-f", "doomed"]);
    ok(["rmi", "localhost/rootless:changed"]);
    expect(ok(["ps", "-aq"]).trim()).toBe("");
    await until("the user's processes to end", () => userPids().length === 0);
    expect(mountsUnder(work)).toEqual([]);
  });

  test("what a rootless container cannot have is refused, with what to do", () => {
    const cases: [string[], string, string][] = [
      [["-p", "8080:80"], "-p/--publish needs a network", "root"],
      [["--network", "bridge"], "cannot join a network", "--network slirp4netns"],
      [["--network", "container:x"], "not supported rootless", "--network slirp4netns"],
      [["--memory", "64m"], "resource limits need a cgroup", "delegate"],
      [["--pids-limit", "10"], "--pids-limit", "delegate"],
    ];
    for (const [flags, message, hint] of cases) {
      const r = asUser(["run", "--rm", ...flags, IMAGE, "true"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(new RegExp(`hint: .*${hint.replace(/[-/]/g, "\\$&")}`));
    }
    expect(readdirSync(join(store(), "containers"))).toEqual([]);
  });

  test("--network host works rootless (the host's /sys bound read-only)", () => {
    const r = asUser(["run", "--rm", "--network", "host", IMAGE, "sh", "-c", "ls /sys/class/net"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("lo");
  });

  /** The user's slirp4netns processes (pgrep by uid and name). */
  const slirpPids = () =>
    userPids().filter((pid) => {
      try {
        // Not a zombie: slirp4netns's own child, which made tap0, is reaped shortly after.
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "slirp4netns" && state !== "Z";
      } catch {
        return false;
      }
    });
  /** Nothing of a slirp4netns left: no process of the user, no API socket or state, no mount. */
  const noSlirpLeft = async () => {
    await until("the user's processes to end", () => userPids().length === 0, 30_000);
    const dir = join(runRoot(), "slirp4netns");
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    expect(mountsUnder(work)).toEqual([]);
  };

  test("--network slirp4netns: tap0 with 10.0.2.100/24, a default route via 10.0.2.2, DNS 10.0.2.3", async () => {
    const r = asUser([
      "run",
      "--rm",
      "--network",
      "slirp4netns",
      IMAGE,
      "sh",
      "-c",
      "ip -4 -o addr show tap0; ip route; ip -o link show tap0; cat /etc/resolv.conf; ls /sys/class/net",
    ]);
    expect(r.stderr).not.toContain("slirp4netns"); // no error, and sandboxed (no warning)
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/tap0\s+inet 10\.0\.2\.100\/24/);
    expect(r.stdout).toMatch(/^default via 10\.0\.2\.2 dev tap0/m);
    expect(r.stdout).toContain("mtu 65520");
    expect(r.stdout).toMatch(/^nameserver 10\.0\.2\.3$/m);
    expect(r.stdout).toMatch(/^tap0$/m); // its own sysfs: the namespace is the container's
    // --dns replaces slirp4netns's resolver.
    const dns = asUser([
      "run",
      "--rm",
      "--network",
      "slirp4netns",
      "--dns",
      "192.0.2.53",
      IMAGE,
      "cat",
      "/etc/resolv.conf",
    ]);
    expect(dns.stdout).toContain("nameserver 192.0.2.53");
    expect(dns.stdout).not.toContain("10.0.2.3");
    await noSlirpLeft();
  }, 60_000);

  test("-p HOSTPORT:80 with slirp4netns: httpd in the container answers on the host's 127.0.0.1:HOSTPORT; nothing left after rm -f", async () => {
    const port = await freeHostPort("tcp"); // free now: parallel runs never share one
    ok([
      "run",
      "-d",
      "--name",
      "web",
      "--network",
      "slirp4netns",
      "-p",
      `${port}:80`,
      IMAGE,
      "sh",
      "-c",
      "mkdir -p /www && echo hello from slirp4netns > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    expect(slirpPids().length).toBe(1);
    let body = "";
    const end = Date.now() + 30_000;
    while (Date.now() < end) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/index.html`, {
          signal: AbortSignal.timeout(2000),
        });
        body = await res.text();
        if (res.ok) break;
      } catch {}
      await Bun.sleep(100);
    }
    expect(body).toBe("hello from slirp4netns\n");
    expect(ok(["port", "web"])).toContain(`80/tcp -> 0.0.0.0:${port}`);
    // The CLI that started it is gone: slirp4netns lives on beside conmon.
    expect(ok(["exec", "web", "wget", "-qO-", "http://127.0.0.1/index.html"])).toBe(
      "hello from slirp4netns\n",
    );
    ok(["rm", "-f", "web"]);
    await noSlirpLeft();
    // The port is free again.
    await expect(
      fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }),
    ).rejects.toThrow();
  }, 90_000);

  test("slirp4netns ends with a detached container that exits on its own, and with stop", async () => {
    ok(["run", "-d", "--name", "brief", "--network", "slirp4netns", IMAGE, "sh", "-c", "sleep 1"]);
    await noSlirpLeft();
    expect(ok(["ps", "-a", "--filter", "name=brief", "--format", "{{.Status}}"])).toMatch(
      /^Exited \(0\)/,
    );
    ok(["start", "brief"]);
    ok(["rm", "-f", "brief"]);
    ok([
      "run",
      "-d",
      "--name",
      "long",
      "--network",
      "slirp4netns",
      "-p",
      `${await freeHostPort("tcp")}:80`,
      IMAGE,
      "sleep",
      "600",
    ]);
    expect(slirpPids().length).toBe(1);
    ok(["stop", "-t", "1", "long"]);
    await noSlirpLeft();
    ok(["rm", "long"]);
  }, 90_000);

  test("slirp4netns:allow_host_loopback=true: the container reaches the host's 127.0.0.1 as 10.0.2.2", async () => {
    // A server of the test's own on the host's loopback (busybox httpd in a child process).
    const www = join(work, "host-www");
    mkdirSync(www, { recursive: true });
    writeFileSync(join(www, "index.html"), "from the host\n");
    const port = await freeHostPort("tcp", "127.0.0.1");
    const server = Bun.spawn(
      ["/bin/busybox", "httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", www],
      {
        stdio: ["ignore", "ignore", "ignore"],
      },
    );
    try {
      const wget = `for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -qO- http://10.0.2.2:${port}/index.html && exit 0; sleep 0.5; done; exit 1`;
      const open = asUser([
        "run",
        "--rm",
        "--network",
        "slirp4netns:allow_host_loopback=true",
        IMAGE,
        "sh",
        "-c",
        wget,
      ]);
      if (open.stdout !== "from the host\n")
        throw new Error(`no answer from the host: ${open.stderr}`);
      expect(open.status).toBe(0);
      // The default (--disable-host-loopback): refused.
      const shut = asUser([
        "run",
        "--rm",
        "--network",
        "slirp4netns",
        IMAGE,
        "sh",
        "-c",
        `timeout 5 wget -qO- http://10.0.2.2:${port}/index.html; echo exit $?`,
      ]);
      expect(shut.stdout).toMatch(/^exit [1-9]/m);
      expect(shut.stdout).not.toContain("from the host");
      expect(shut.stderr).not.toContain("Segmentation");
    } finally {
      server.kill("SIGKILL");
      await server.exited;
    }
    await noSlirpLeft();
  }, 90_000);

  test("slirp4netns refusals: a privileged host port, --ip, a bad option; bridge and -p without it", () => {
    const cases: [string[], string, string][] = [
      [["--network", "slirp4netns", "-p", "80:80"], "host port 80 is below 1024", "-p 8080:80"],
      [["--network", "slirp4netns", "--ip", "10.0.2.5"], "--ip needs a network", "slirp4netns"],
      [
        ["--network", "slirp4netns:bogus=1"],
        'unknown or invalid slirp4netns option "bogus=1"',
        "allow_host_loopback",
      ],
      [["--network", "bridge", "-p", "8080:80"], "cannot join a network", "--network slirp4netns"],
      [["-p", "8080:80"], "-p/--publish needs a network", "slirp4netns"],
    ];
    for (const [flags, message, hint] of cases) {
      const r = asUser(["run", "--rm", ...flags, IMAGE, "true"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(new RegExp(`hint: .*${hint.replace(/[-/]/g, "\\$&")}`));
    }
    expect(readdirSync(join(store(), "containers"))).toEqual([]);
    expect(slirpPids()).toEqual([]);
  });

  test("errors people can act on: no /etc/subuid range, an owner beyond it, XDG_RUNTIME_DIR unset", () => {
    sh("useradd", ["--system", "--no-create-home", "--user-group", "-s", "/bin/false", bare]);
    const noRange = asUser(["images"], { who: bare, env: { HOME: join(work, "bare-home") } });
    expect(noRange.status).toBe(125);
    expect(noRange.stderr).toContain(`/etc/subuid has no range for ${bare}`);
    expect(noRange.stderr).toContain(
      `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${bare}`,
    );
    const beyond = asUser(["import", join(work, "beyond.tar"), "localhost/beyond"]);
    expect(beyond.status).toBe(125);
    expect(beyond.stderr).toContain(
      'entry "./far": its owner is beyond the ids this user namespace maps',
    );
    expect(beyond.stderr).toContain("hint: as root, give the user a larger range in /etc/subuid");
    const noXdg = asUser(["ps"], { env: { XDG_RUNTIME_DIR: undefined } });
    expect(noXdg.status).toBe(125);
    expect(noXdg.stderr).toContain("XDG_RUNTIME_DIR is not set");
    expect(noXdg.stderr).toContain("hint: set it");
  });

  test("the user never reaches root's engine state, nor the other way round", () => {
    for (const args of [
      ["--root", rootStore, "images"],
      ["--root", rootStore, "ps", "-a"],
      ["--root", rootStore, "exec", "x", "true"],
    ]) {
      const r = asUser(args);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(`${rootStore} belongs to uid 0, not to you`);
    }
    // Root's store is root's only (0700), and untouched: the user's image is not in it.
    expect(statSync(rootStore).mode & 0o777).toBe(0o700);
    const images = pivotCli(rootStore, ["images"]).stdout;
    expect(images).toContain("localhost/root-only");
    expect(images).not.toContain("localhost/rootless");
    // And the user's store has no image of root's.
    expect(ok(["images"])).not.toContain("root-only");
  });

  // The exit hook runs under conmon as the user, in the namespace conmon was started in; the
  // boot hook enters one of its own.
  test("restart policies as the user: on-failure:2 runs three times; always stops for good; the boot hook; an attached run", async () => {
    const inspectAs = (name: string) => {
      const info = JSON.parse(ok(["inspect", name]));
      return (Array.isArray(info) ? info[0] : info) as {
        id: string;
        restartCount: number;
        state: { status: string; exitCode: number | null; error?: string };
      };
    };
    /** Exited, and nothing of the user's left that could start it again (conmon, exit hook). */
    const settledAs = async (name: string) => {
      await until(
        `${name} exited with no process of the user left`,
        () => userPids().length === 0 && inspectAs(name).state.status === "exited",
        60_000,
      );
      return inspectAs(name);
    };
    ok([
      "run",
      "-d",
      "--name",
      "flaky",
      "--restart",
      "on-failure:2",
      IMAGE,
      "sh",
      "-c",
      "echo run; exit 3",
    ]);
    const flaky = await settledAs("flaky");
    expect(flaky.state.exitCode).toBe(3);
    expect(flaky.state.error).toBeUndefined();
    expect(flaky.restartCount).toBe(2);
    expect(ok(["logs", "flaky"])).toBe("run\nrun\nrun\n");
    expect(ok(["ps", "-a", "--filter", "name=flaky", "--format", "{{.Status}}"])).toMatch(
      /^Exited \(3\) /,
    );

    const loop = ok([
      "run",
      "-d",
      "--name",
      "loop",
      "--restart",
      "always",
      IMAGE,
      "sh",
      "-c",
      "echo tick",
    ]).trim();
    await until("RestartCount 2", () => inspectAs("loop").restartCount >= 2, 60_000);
    expect(ok(["stop", "-t", "2", "loop"])).toBe("loop\n");
    const stopped = await settledAs("loop");
    expect(stopped.state.error).toBeUndefined();
    await Bun.sleep(1000);
    expect(inspectAs("loop").state.status).toBe("exited");
    expect(inspectAs("loop").restartCount).toBe(stopped.restartCount);
    expect(userPids()).toEqual([]);

    // The boot hook: always is started again (even after a stop by hand), on-failure:2 with no
    // retries left is not.
    expect(ok(["start", "--all-restartable"])).toBe(`${loop}\n`);
    await until(
      "a restart after the boot hook's start",
      () => inspectAs("loop").restartCount >= 1,
      60_000,
    );
    expect(inspectAs("flaky").state.status).toBe("exited");
    expect(ok(["stop", "-t", "2", "loop"])).toBe("loop\n");
    await settledAs("loop");
    // An attached run: the first run's code; its exit hook, a process of the inner pivot's, goes
    // on in that namespace after it, and the restart is a rootless container as the first run.
    const att = asUser([
      ...["run", "--name", "att", "--restart", "on-failure:1", IMAGE],
      ...["sh", "-c", "echo x; sleep 2; exit 4"],
    ]);
    expect(att).toEqual({ status: 4, stdout: "x\n", stderr: att.stderr });
    await until(
      "the attached run's restart running",
      () => {
        const info = inspectAs("att");
        return info.restartCount === 1 && info.state.status === "running";
      },
      60_000,
    );
    const pid = (JSON.parse(ok(["inspect", "att"]))[0] as { state: { pid: number } }).state.pid;
    expect(statusIds(pid, "Uid")).toEqual([uid, uid, uid, uid]);
    const attInfo = await settledAs("att");
    expect(attInfo.state.exitCode).toBe(4);
    expect(ok(["logs", "att"])).toBe("x\nx\n");
    ok(["rm", "flaky", "loop", "att"]);
    expect(mountsUnder(work)).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
  }, 240_000);

  test("system info as the user: rootless, the per-user roots, the user namespace's id mappings", () => {
    const lines = ok(["system", "info"]).split("\n");
    expect(lines.slice(0, 6)).toEqual([
      `Root: ${store()}`,
      `Run Root: ${runRoot()}`,
      "Rootless: true",
      "ID Mappings (container -> host, size):",
      `  UID: 0 -> ${uid} (1), 1 -> ${sub} (${COUNT})`,
      `  GID: 0 -> ${gid} (1), 1 -> ${sub} (${COUNT})`,
    ]);
  });

  test("pivot unshare removes the user's whole store (files of subordinate ids) without root", () => {
    ok(["rmi", IMAGE]);
    ok(["unshare", "rm", "-rf", store(), runRoot()]);
    expect(existsSync(store())).toBe(false);
    expect(existsSync(runRoot())).toBe(false);
    expect(userPids()).toEqual([]);
  });
});
