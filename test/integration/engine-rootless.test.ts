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
import {
  ROOTLESS_IMAGE,
  rootlessUserForFile,
  SUBORDINATE_COUNT,
  sh,
  until,
} from "../fixtures/rootless-user.ts";
import { pivotCli } from "../helpers.ts";

const IMAGE = ROOTLESS_IMAGE;
const COUNT = SUBORDINATE_COUNT;
const bare = `pivnr${process.pid % 100000}`; // a user without subordinate ids
let rootStore: string;
let counter = 0;

// The user and its image, imported by the first test: busybox plus /owned, a directory and a file
// of uid/gid 1000, and a file of the highest id the namespace maps.
const u = rootlessUserForFile("pivrl", {
  importImage: false,
  image: (rootfs) => {
    writeFileSync(join(rootfs, "owned/top"), "the last id\n");
    chownSync(join(rootfs, "owned/top"), COUNT, COUNT);
  },
});

beforeAll(() => {
  u.dir("data");
  const beyond = join(u.work, "beyond.tar");
  makeBusyboxTar(beyond, (rootfs) => {
    writeFileSync(join(rootfs, "far"), "");
    chownSync(join(rootfs, "far"), COUNT + 1, 0);
  });
  chmodSync(beyond, 0o644);
  // Root's own engine state beside it, which the user must not reach.
  rootStore = mkdtempSync(join(tmpdir(), "pivot-rootless-root-"));
  const imported = pivotCli(rootStore, ["import", u.imageTar, "localhost/root-only"]);
  if (imported.status !== 0) throw new Error(`root's import failed: ${imported.stderr}`);
}, 120_000);

afterAll(() => {
  // The user's processes, files and range go with it (rootlessUserForFile); root's state and
  // the user without a range here.
  if (rootStore) rmSync(rootStore, { recursive: true, force: true });
  spawnSync("userdel", [bare]);
  spawnSync("groupdel", [bare]);
}, 60_000);

const runRoot = () => join(u.xdg, "pivot");

/** /proc/PID/status's Uid: or Gid: line as its four ids. */
function statusIds(pid: number, field: "Uid" | "Gid"): number[] {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`))!;
  return line.split(/\s+/).slice(1, 5).map(Number);
}

describe("rootless engine", () => {
  // Whatever a failed test left running goes before the next one.
  afterEach(() => u.removeContainers(), 60_000);

  test("pivot import as the user: the store is in ~/.local/share/pivot, owners shifted into the user's subordinate ids", () => {
    u.ok(["import", u.imageTar, IMAGE]);
    expect(u.ok(["images"])).toContain("localhost/rootless");
    expect(statSync(u.store).uid).toBe(u.uid);
    expect(statSync(u.store).mode & 0o777).toBe(0o700);
    const layers = join(u.store, "layers/sha256");
    const layer = readdirSync(layers).find((d) => !d.startsWith("."))!;
    const diff = join(layers, layer, "diff");
    // Container root is the user; container uid N > 0 is host uid SUB+N-1.
    expect(statSync(join(diff, "bin")).uid).toBe(u.uid);
    expect(statSync(join(diff, "owned/f")).uid).toBe(u.sub + 999);
    expect(statSync(join(diff, "owned/f")).gid).toBe(u.sub + 999);
    expect(statSync(join(diff, "owned/top")).uid).toBe(u.sub + COUNT - 1);
    // pivot unshare: the user's view in the namespace, the image's own owners.
    const r = u.pivot(["unshare", "stat", "-c", "%u:%g", join(diff, "owned/f")]);
    expect(r.stdout.trim()).toBe("1000:1000");
  });

  test("pivot run --rm: uid 0 inside, the image's owners, a nested user namespace; the cgroup warning; nothing left", () => {
    const r = u.pivot([
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
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
    expect(mountsUnder(u.work)).toEqual([]);
  });

  test("detached: the process is the user outside, a bind-mounted directory gets the user's files; ps, exec, logs, stop, rm; nothing leaks", async () => {
    const data = join(u.work, "data");
    const id = u
      .ok([
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
      ])
      .trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const info = JSON.parse(u.ok(["inspect", "sleeper"]));
    const pid = (Array.isArray(info) ? info[0] : info).state.pid as number;
    expect(pid).toBeGreaterThan(0);
    await until("the bind-mounted file", () => existsSync(join(data, "dir")), 10_000);
    // From the host: the container's root is the user, all four ids.
    expect(statusIds(pid, "Uid")).toEqual([u.uid, u.uid, u.uid, u.uid]);
    expect(statusIds(pid, "Gid")).toEqual([u.gid, u.gid, u.gid, u.gid]);
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toEqual(["sleep", "600", ""]);
    for (const f of ["made-inside", "dir"]) {
      expect(statSync(join(data, f)).uid).toBe(u.uid);
      expect(statSync(join(data, f)).gid).toBe(u.gid);
    }
    // The overlay is mounted in the namespaces of the container and its monitor, not the host's.
    expect(mountsUnder(u.work)).toEqual([]);

    const ps = u.ok(["ps"]);
    expect(ps).toContain("sleeper");
    expect(ps).toContain("Up ");
    const exec = u.pivot(["exec", "sleeper", "sh", "-c", "id -u; stat -c %u /owned/f"]);
    expect(exec.status).toBe(0);
    expect(exec.stdout.trim().split("\n")).toEqual(["0", "1000"]);
    expect(u.ok(["logs", "sleeper"])).toContain("started");
    // cp runs in its monitor's user namespace (the test below): the file as the container has it.
    expect(u.ok(["cp", "sleeper:/etc/passwd", "-"])).toContain("root:");
    // Without a cgroup of its own there is nothing to read: said, not an empty table.
    for (const args of [
      ["top", "sleeper"],
      ["stats", "--no-stream", "sleeper"],
    ]) {
      const r = u.pivot(args);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("container sleeper has no cgroup of its own");
    }

    u.ok(["stop", "-t", "1", "sleeper"]);
    expect(u.ok(["ps", "-a"])).toMatch(/sleeper/);
    expect(u.ok(["ps", "-a", "--format", "{{.Status}}"])).toMatch(/^Exited \(137\)/);
    u.ok(["rm", "sleeper"]);
    expect(u.ok(["ps", "-aq"]).trim()).toBe("");
    // conmon's exit hook may still be finishing: then nothing of the user runs.
    await until("the user's processes to end", () => u.pids().length === 0, 10_000);
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
    expect(mountsUnder(u.work)).toEqual([]);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  test("cp out of and into a running container, export; its symlinks never reach the host's files", async () => {
    const out = join(u.work, "cpout");
    const secret = join(u.work, "secret");
    const src = join(u.work, "cpsrc");
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
        chownSync(p, u.uid, u.gid);
      // Links out of the container: relative with .. past its root, and absolute, to a file and
      // to directories of the host the user can read and write.
      u.ok([
        "run",
        "-d",
        "--name",
        "files",
        IMAGE,
        "sh",
        "-c",
        `mkdir -p /d/sub && echo deep > /d/sub/f && echo top > /d/top && ln -s /../../../..${secret} /etc/x && ln -s ${secret} /etc/abs && ln -s /../../../..${u.work} /w && ln -s ${out} /o && ln -s /../../../../etc /hostetc && echo ready && exec sleep 600`,
      ]);
      await until("the container's files", () => u.ok(["logs", "files"]).includes("ready"), 20_000);
      expect(mountsUnder(u.work)).toEqual([]);

      // Out: a file and a directory to host paths, and both as tar streams.
      u.ok(["cp", "files:/d/top", join(out, "top")]);
      expect(readFileSync(join(out, "top"), "utf8")).toBe("top\n");
      expect(statSync(join(out, "top")).uid).toBe(u.uid);
      u.ok(["cp", "files:/d", join(out, "d")]);
      expect(readFileSync(join(out, "d/sub/f"), "utf8")).toBe("deep\n");
      // The files are the caller's, the user's (Docker's); -a keeps the image's 1000.
      u.ok(["cp", "files:/owned", out]);
      expect(statSync(join(out, "owned/f")).uid).toBe(u.uid);
      u.ok(["cp", "-a", "files:/owned", join(out, "owned-a")]);
      expect(statSync(join(out, "owned-a/f")).uid).toBe(u.sub + 999);
      const tarOf = (args: string[]) => {
        const file = join(out, `stream-${++counter}.tar`);
        writeFileSync(file, u.ok(args), "latin1");
        return file;
      };
      const list = (file: string) =>
        sh("tar", ["-tvf", file, "--numeric-owner"]).trim().split("\n");
      const passwd = tarOf(["cp", "files:/etc/passwd", "-"]);
      expect(sh("tar", ["-xOf", passwd, "passwd"])).toContain("root:");
      const dir = list(tarOf(["cp", "files:/owned", "-"]));
      expect(dir.some((l) => / 1000\/1000 .* owned\/f$/.test(l))).toBe(true);

      // In: a file and a directory, in the container's upper layer, root's inside.
      u.ok(["cp", join(src, "file"), "files:/d/"]);
      u.ok(["cp", join(src, "dir"), "files:/copied"]);
      const seen = u.pivot([
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
      const upper = JSON.parse(u.ok(["inspect", "files"]));
      const upperdir = (Array.isArray(upper) ? upper[0] : upper).rootfs.upperdir as string;
      expect(readFileSync(join(upperdir, "d/file"), "utf8")).toBe("from the host\n");
      expect(statSync(join(upperdir, "d/file")).uid).toBe(u.uid); // container root is the user
      // cp -a in: the container's user gets them (its 1000, the user's subordinate id outside).
      u.ok(["create", "--name", "files-a", "-u", "1000:1000", IMAGE, "true"]);
      u.ok(["cp", "-a", join(src, "file"), "files-a:/a"]);
      const createdA = JSON.parse(u.ok(["inspect", "files-a"]));
      const upperA = (Array.isArray(createdA) ? createdA[0] : createdA).rootfs.upperdir as string;
      expect(statSync(join(upperA, "a")).uid).toBe(u.sub + 999);
      u.ok(["rm", "files-a"]);

      // Symlinks resolve inside the container: never the host's files, read or written.
      for (const path of ["/etc/x", "/etc/abs", "/w/secret", "/hostetc/shadow"]) {
        const r = u.pivot(["cp", `files:${path}/.`, "-"]);
        expect(r.stdout).not.toContain("host-secret");
        expect(r.stdout).not.toContain(readFileSync("/etc/shadow", "utf8").split("\n")[0]!);
        const f = u.pivot(["cp", `files:${path}`, join(out, "leak")]);
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
        u.pivot(["cp", join(src, "file"), dest]);
      }
      expect(existsSync(join(u.work, "planted"))).toBe(false);
      expect(existsSync(join(out, "file"))).toBe(false);
      expect(existsSync("/etc/file")).toBe(false);
      expect(readFileSync(secret, "utf8")).toBe("host-secret\n");
      // /hostetc/ is the container's /etc; /etc/x names a missing file in the container.
      const inside = u.pivot(["exec", "files", "sh", "-c", "cat /etc/file; readlink /etc/x"]);
      expect(inside.stdout).toBe(`from the host\n/../../../..${secret}\n`);
      // export joins the monitor's namespace too (engine-rootless-files.test.ts): the links as links.
      const exported = join(out, "files.tar");
      u.ok(["export", "-o", exported, "files"]);
      expect(list(exported).some((l) => l.endsWith(` ./etc/x -> /../../../..${secret}`))).toBe(
        true,
      );
      expect(readFileSync(exported, "latin1")).not.toContain("host-secret");

      u.ok(["rm", "-f", "files"]);
      await until("the user's processes to end", () => u.pids().length === 0, 10_000);
      expect(mountsUnder(u.work)).toEqual([]);
      expect(readdirSync(join(u.store, "containers"))).toEqual([]);
    } finally {
      u.pivot(["rm", "-f", "files"]);
      u.pivot(["rm", "-f", "files-a"]);
      for (const p of [out, secret, src]) rmSync(p, { recursive: true, force: true });
    }
  }, 120_000);

  test("rm -f of a running container, diff and commit as the user", async () => {
    u.ok([
      "run",
      "--name",
      "changer",
      IMAGE,
      "sh",
      "-c",
      "rm -rf /owned; mkdir /owned; echo new > /owned/only; rm /bin/vi",
    ]);
    const diff = u.ok(["diff", "changer"]);
    expect(diff).toContain("D /bin/vi");
    expect(diff).toContain("A /owned/only");
    u.ok(["commit", "changer", "localhost/rootless:changed"]);
    // The committed layer's opaque /owned hides the image's files (user.overlay.opaque).
    const r = u.pivot([
      "run",
      "--rm",
      "localhost/rootless:changed",
      "sh",
      "-c",
      "ls /owned; ls /bin/vi || true",
    ]);
    expect(r.stdout.trim().split("\n")[0]).toBe("only");
    expect(r.stderr).toContain("/bin/vi");
    u.ok(["rm", "changer"]);
    u.ok(["run", "-d", "--name", "doomed", IMAGE, "sleep", "600"]);
    u.ok(["rm", "-f", "doomed"]);
    u.ok(["rmi", "localhost/rootless:changed"]);
    expect(u.ok(["ps", "-aq"]).trim()).toBe("");
    await until("the user's processes to end", () => u.pids().length === 0, 10_000);
    expect(mountsUnder(u.work)).toEqual([]);
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
      const r = u.pivot(["run", "--rm", ...flags, IMAGE, "true"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(new RegExp(`hint: .*${hint.replace(/[-/]/g, "\\$&")}`));
    }
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
  });

  test("--network host works rootless (the host's /sys bound read-only)", () => {
    const r = u.pivot(["run", "--rm", "--network", "host", IMAGE, "sh", "-c", "ls /sys/class/net"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("lo");
  });

  /**
   * The user's slirp4netns processes, not zombies: slirp4netns's own child, which made tap0, is
   * reaped shortly after.
   */
  const slirpPids = () => u.livePids(["slirp4netns"]);
  /** Nothing of a slirp4netns left: no process of the user, no API socket or state, no mount. */
  const noSlirpLeft = async () => {
    await until("the user's processes to end", () => u.pids().length === 0, 30_000);
    const dir = join(runRoot(), "slirp4netns");
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    expect(mountsUnder(u.work)).toEqual([]);
  };

  test("--network slirp4netns: tap0 with 10.0.2.100/24, a default route via 10.0.2.2, DNS 10.0.2.3", async () => {
    const r = u.pivot([
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
    const dns = u.pivot([
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
    u.ok([
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
    expect(u.ok(["port", "web"])).toContain(`80/tcp -> 0.0.0.0:${port}`);
    // The CLI that started it is gone: slirp4netns lives on beside conmon.
    expect(u.ok(["exec", "web", "wget", "-qO-", "http://127.0.0.1/index.html"])).toBe(
      "hello from slirp4netns\n",
    );
    u.ok(["rm", "-f", "web"]);
    await noSlirpLeft();
    // The port is free again.
    await expect(
      fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }),
    ).rejects.toThrow();
  }, 90_000);

  test("slirp4netns ends with a detached container that exits on its own, and with stop", async () => {
    u.ok([
      "run",
      "-d",
      "--name",
      "brief",
      "--network",
      "slirp4netns",
      IMAGE,
      "sh",
      "-c",
      "sleep 1",
    ]);
    await noSlirpLeft();
    expect(u.ok(["ps", "-a", "--filter", "name=brief", "--format", "{{.Status}}"])).toMatch(
      /^Exited \(0\)/,
    );
    u.ok(["start", "brief"]);
    u.ok(["rm", "-f", "brief"]);
    u.ok([
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
    u.ok(["stop", "-t", "1", "long"]);
    await noSlirpLeft();
    u.ok(["rm", "long"]);
  }, 90_000);

  test("slirp4netns:allow_host_loopback=true: the container reaches the host's 127.0.0.1 as 10.0.2.2", async () => {
    // A server of the test's own on the host's loopback (busybox httpd in a child process).
    const www = join(u.work, "host-www");
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
      const open = u.pivot([
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
      const shut = u.pivot([
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
      const r = u.pivot(["run", "--rm", ...flags, IMAGE, "true"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(new RegExp(`hint: .*${hint.replace(/[-/]/g, "\\$&")}`));
    }
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
    expect(slirpPids()).toEqual([]);
  });

  test("errors people can act on: no /etc/subuid range, an owner beyond it, XDG_RUNTIME_DIR unset", () => {
    sh("useradd", ["--system", "--no-create-home", "--user-group", "-s", "/bin/false", bare]);
    const noRange = u.pivot(["images"], { user: bare, env: { HOME: join(u.work, "bare-home") } });
    expect(noRange.status).toBe(125);
    expect(noRange.stderr).toContain(`/etc/subuid has no range for ${bare}`);
    expect(noRange.stderr).toContain(
      `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${bare}`,
    );
    const beyond = u.pivot(["import", join(u.work, "beyond.tar"), "localhost/beyond"]);
    expect(beyond.status).toBe(125);
    expect(beyond.stderr).toContain(
      'entry "./far": its owner is beyond the ids this user namespace maps',
    );
    expect(beyond.stderr).toContain("hint: as root, give the user a larger range in /etc/subuid");
    const noXdg = u.pivot(["ps"], { env: { XDG_RUNTIME_DIR: undefined } });
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
      const r = u.pivot(args);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(`${rootStore} belongs to uid 0, not to you`);
    }
    // Root's store is root's only (0700), and untouched: the user's image is not in it.
    expect(statSync(rootStore).mode & 0o777).toBe(0o700);
    const images = pivotCli(rootStore, ["images"]).stdout;
    expect(images).toContain("localhost/root-only");
    expect(images).not.toContain("localhost/rootless");
    // And the user's store has no image of root's.
    expect(u.ok(["images"])).not.toContain("root-only");
  });

  // The exit hook runs under conmon as the user, in the namespace conmon was started in; the
  // boot hook enters one of its own.
  test("restart policies as the user: on-failure:2 runs three times; always stops for good; the boot hook; an attached run", async () => {
    const inspectAs = (name: string) => {
      const info = JSON.parse(u.ok(["inspect", name]));
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
        () => u.pids().length === 0 && inspectAs(name).state.status === "exited",
        60_000,
      );
      return inspectAs(name);
    };
    u.ok([
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
    expect(u.ok(["logs", "flaky"])).toBe("run\nrun\nrun\n");
    expect(u.ok(["ps", "-a", "--filter", "name=flaky", "--format", "{{.Status}}"])).toMatch(
      /^Exited \(3\) /,
    );

    const loop = u
      .ok(["run", "-d", "--name", "loop", "--restart", "always", IMAGE, "sh", "-c", "echo tick"])
      .trim();
    await until("RestartCount 2", () => inspectAs("loop").restartCount >= 2, 60_000);
    expect(u.ok(["stop", "-t", "2", "loop"])).toBe("loop\n");
    const stopped = await settledAs("loop");
    expect(stopped.state.error).toBeUndefined();
    await Bun.sleep(1000);
    expect(inspectAs("loop").state.status).toBe("exited");
    expect(inspectAs("loop").restartCount).toBe(stopped.restartCount);
    expect(u.pids()).toEqual([]);

    // The boot hook: always is started again (even after a stop by hand), on-failure:2 with no
    // retries left is not.
    expect(u.ok(["start", "--all-restartable"])).toBe(`${loop}\n`);
    await until(
      "a restart after the boot hook's start",
      () => inspectAs("loop").restartCount >= 1,
      60_000,
    );
    expect(inspectAs("flaky").state.status).toBe("exited");
    expect(u.ok(["stop", "-t", "2", "loop"])).toBe("loop\n");
    await settledAs("loop");
    // An attached run: the first run's code; its exit hook, a process of the inner pivot's, goes
    // on in that namespace after it, and the restart is a rootless container as the first run.
    const att = u.pivot([
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
    const pid = (JSON.parse(u.ok(["inspect", "att"]))[0] as { state: { pid: number } }).state.pid;
    expect(statusIds(pid, "Uid")).toEqual([u.uid, u.uid, u.uid, u.uid]);
    const attInfo = await settledAs("att");
    expect(attInfo.state.exitCode).toBe(4);
    expect(u.ok(["logs", "att"])).toBe("x\nx\n");
    u.ok(["rm", "flaky", "loop", "att"]);
    expect(mountsUnder(u.work)).toEqual([]);
    expect(readdirSync(join(runRoot(), "runtime")).filter((d) => d !== "@seccomp")).toEqual([]);
  }, 240_000);

  test("system info as the user: rootless, the per-user roots, the user namespace's id mappings", () => {
    const lines = u.ok(["system", "info"]).split("\n");
    expect(lines.slice(0, 6)).toEqual([
      `Root: ${u.store}`,
      `Run Root: ${runRoot()}`,
      "Rootless: true",
      "ID Mappings (container -> host, size):",
      `  UID: 0 -> ${u.uid} (1), 1 -> ${u.sub} (${COUNT})`,
      `  GID: 0 -> ${u.gid} (1), 1 -> ${u.sub} (${COUNT})`,
    ]);
  });

  test("pivot unshare removes the user's whole store (files of subordinate ids) without root", () => {
    u.ok(["rmi", IMAGE]);
    u.ok(["unshare", "rm", "-rf", u.store, runRoot()]);
    expect(existsSync(u.store)).toBe(false);
    expect(existsSync(runRoot())).toBe(false);
    expect(u.pids()).toEqual([]);
  });
});
