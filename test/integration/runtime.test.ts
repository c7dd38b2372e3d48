// pivot-runtime against the real kernel: real containers, asserted from inside and outside.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { Spec } from "../../src/oci/spec.ts";
import {
  addCapability,
  BUN,
  cleanupRoot,
  hostMountPoints,
  isRoot,
  makeBundle,
  REPO,
  RUNTIME_CLI,
  readSpec,
  rm,
  runtime,
  tempDir,
  writeSpec,
} from "../helpers.ts";

if (!isRoot) throw new Error("the integration tests run real containers and need root");

let work: string;
let root: string;
let bundle: string;
let counter = 0;
const nextId = (name: string) => `${name}-${process.pid}-${++counter}`;

beforeAll(() => {
  work = tempDir();
  root = join(work, "state");
  bundle = makeBundle(join(work, "bundle"));
});

afterAll(() => {
  cleanupRoot(root);
  rm(work);
});

let baseSpec: Spec | null = null;

/** Writes the bundle's config for one test: the default spec with ARGS, changed by EDIT. */
function withArgs(args: string[], edit: (s: Spec) => void = () => {}): void {
  baseSpec ??= readSpec(bundle);
  const spec = JSON.parse(JSON.stringify(baseSpec)) as Spec;
  spec.process!.args = args;
  edit(spec);
  writeSpec(bundle, spec);
}

/**
 * The bundle runs ARGS with a host directory, work/NAME (created if missing), bound at
 * /signals: the test's way to talk to the container. Returns the directory.
 */
function withSignals(name: string, args: string[]): string {
  const signals = join(work, name);
  mkdirSync(signals, { recursive: true });
  withArgs(args, (s) => {
    s.mounts!.push({ destination: "/signals", type: "bind", source: signals, options: ["rbind"] });
  });
  return signals;
}

function run(args: string[], edit?: (s: Spec) => void) {
  withArgs(args, edit);
  return runtime(root, ["run", "--bundle", bundle, nextId("run")]);
}

function cgroupDirsNamed(fragment: string): string[] {
  const out: string[] = [];
  const visit = (dir: string, depth: number) => {
    if (depth > 5) return;
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.includes(fragment)) out.push(join(dir, e));
      visit(join(dir, e), depth + 1);
    }
  };
  visit("/sys/fs/cgroup", 0);
  return out;
}

describe("isolation", () => {
  test("the container has its own mount table, and the host does not see its mounts", () => {
    withArgs(["sleep", "100"]);
    const id = nextId("mounts");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      const r = runtime(root, ["exec", id, "cat", "/proc/self/mountinfo"]);
      expect(r.status).toBe(0);
      const inside = r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ")[4]!);
      expect(inside[0]).toBe("/");
      expect(inside).toContain("/proc");
      expect(inside).toContain("/dev/pts");
      // None of the host's own mounts is visible inside: the old root is gone after pivot_root.
      const host = hostMountPoints();
      expect(inside.filter((m) => m.startsWith("/mnt/") || m === join(bundle, "rootfs"))).toEqual(
        [],
      );
      // While the container runs, the host sees none of its mounts (all are under the rootfs).
      expect(host.filter((m) => m.startsWith(work))).toEqual([]);
      expect(host).not.toContain("/dev/mqueue");
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("the process is PID 1 in its own PID namespace and sees only its own processes", () => {
    const r = run(["sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l"]);
    expect(r.status).toBe(0);
    const [pid, count] = r.stdout.trim().split("\n");
    expect(pid).toBe("1");
    // sh and the three commands of the pipeline.
    expect(Number(count)).toBeLessThanOrEqual(4);
  });

  test("hostname and domainname are set in a new UTS namespace", () => {
    const hostBefore = readFileSync("/proc/sys/kernel/hostname", "utf8");
    const r = run(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], (s) => {
      s.hostname = "box-one";
      s.domainname = "example.test";
    });
    expect(r.stdout).toBe("box-one\nexample.test\n");
    expect(readFileSync("/proc/sys/kernel/hostname", "utf8")).toBe(hostBefore);
  });

  test("a new network namespace has only lo, and it is up (a server on 127.0.0.1 answers)", () => {
    const r = run([
      "sh",
      "-c",
      "ls /sys/class/net; cat /sys/class/net/lo/flags; (echo hello | nc -l -p 7777 &) ; sleep 0.2; nc 127.0.0.1 7777 </dev/null",
    ]);
    const [interfaces, flags, reply] = r.stdout.trim().split("\n");
    expect(interfaces).toBe("lo");
    // IFF_UP (0x1) | IFF_LOOPBACK (0x8)
    expect(Number(flags) & 0x1).toBe(1);
    expect(reply).toBe("hello");
  });

  test("the default devices exist and work", () => {
    const r = run([
      "sh",
      "-c",
      "echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls -l /dev/null /dev/ptmx /dev/fd",
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("4\n");
    expect(r.stdout).toMatch(/crw-rw-rw-\s+1 root\s+root\s+1,\s+3 .*\/dev\/null/);
    expect(r.stdout).toContain("/dev/ptmx -> pts/ptmx");
  });

  test("masked paths are hidden and read-only paths refuse writes", () => {
    const r = run([
      "sh",
      "-c",
      "wc -c < /proc/timer_list; grep -c ' /proc/acpi ' /proc/self/mountinfo; echo 1 > /proc/sys/kernel/domainname && echo WROTE || echo REFUSED",
    ]);
    expect(r.stdout).toBe("0\n1\nREFUSED\n");
  });
});

describe("filesystems", () => {
  test("a read-only root refuses writes; a tmpfs mount stays writable", () => {
    const r = run(
      ["sh", "-c", "touch /file 2>&1 && echo WROTE; touch /dev/shm/ok && echo SHM-OK"],
      (s) => {
        s.root!.readonly = true;
      },
    );
    expect(r.stdout).toContain("Read-only file system");
    expect(r.stdout).not.toContain("WROTE");
    expect(r.stdout).toContain("SHM-OK");
  });

  test("a writable root accepts writes", () => {
    const r = run(["sh", "-c", "echo data > /written && cat /written && rm /written"], (s) => {
      s.root!.readonly = false;
    });
    expect(r.stdout).toBe("data\n");
  });

  test("a bind mount is shared both ways", () => {
    const shared = join(work, "shared");
    mkdirSync(shared, { recursive: true });
    writeFileSync(join(shared, "from-host"), "hello from the host\n");
    const r = run(
      ["sh", "-c", "cat /data/from-host && echo hello from inside > /data/from-container"],
      (s) => {
        s.mounts!.push({
          destination: "/data",
          type: "bind",
          source: shared,
          options: ["rbind", "rw"],
        });
      },
    );
    expect(r.stdout).toBe("hello from the host\n");
    expect(readFileSync(join(shared, "from-container"), "utf8")).toBe("hello from inside\n");
  });

  test("a read-only bind mount refuses writes", () => {
    const shared = join(work, "ro-data");
    mkdirSync(shared, { recursive: true });
    const r = run(["sh", "-c", "touch /data/x 2>&1 || true"], (s) => {
      s.mounts!.push({
        destination: "/data",
        type: "bind",
        source: shared,
        options: ["rbind", "ro"],
      });
    });
    expect(r.stdout).toContain("Read-only file system");
    expect(existsSync(join(shared, "x"))).toBe(false);
  });

  test("a file can be bound over a file (as /etc/hosts is)", () => {
    const hosts = join(work, "hosts");
    writeFileSync(hosts, "127.0.0.1 pivot-test-host\n");
    const r = run(["cat", "/etc/hosts"], (s) => {
      s.mounts!.push({
        destination: "/etc/hosts",
        type: "bind",
        source: hosts,
        options: ["bind", "ro"],
      });
    });
    expect(r.stdout).toBe("127.0.0.1 pivot-test-host\n");
  });

  test("a mount destination that is a symlink out of the root stays inside the root", () => {
    const target = join(work, "host-target");
    mkdirSync(target, { recursive: true });
    const rootfs = join(bundle, "rootfs");
    spawnSync("ln", ["-sfn", target, join(rootfs, "escape")]);
    try {
      const r = run(["sh", "-c", "touch /escape/inside && echo ok"], (s) => {
        s.root!.readonly = false;
        s.mounts!.push({ destination: "/escape", type: "tmpfs", source: "tmpfs" });
      });
      expect(r.status).toBe(0);
      expect(readdirSync(target)).toEqual([]);
    } finally {
      rm(join(rootfs, "escape"));
      rm(join(rootfs, work.slice(1)));
    }
  });
});

describe("process", () => {
  test("exit codes pass through", () => {
    expect(run(["sh", "-c", "exit 3"]).status).toBe(3);
    expect(run(["true"]).status).toBe(0);
  });

  test("death by signal becomes 128+N", async () => {
    // PID 1 ignores signals sent from inside its namespace, so the signal comes from outside.
    withArgs(["sleep", "100"]);
    const id = nextId("signal");
    const proc = spawn(BUN, [RUNTIME_CLI, "--root", root, "run", "--bundle", bundle, id], {
      stdio: "ignore",
    });
    const exited = new Promise<number>((resolve) => proc.on("exit", (code) => resolve(code ?? -1)));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !runtime(root, ["state", id]).stdout.includes('"running"'))
      await Bun.sleep(10);
    expect(runtime(root, ["kill", id, "KILL"]).status).toBe(0);
    expect(await exited).toBe(137);
  });

  test("user, groups, cwd and env are applied", () => {
    const r = run(["sh", "-c", "id -u; id -g; id -G; pwd; echo $GREETING; umask"], (s) => {
      s.process!.user = { uid: 1000, gid: 1001, additionalGids: [2000], umask: 0o27 };
      s.process!.cwd = "/tmp";
      s.process!.env = ["PATH=/bin", "GREETING=hi"];
    });
    expect(r.stdout).toBe("1000\n1001\n1001 2000\n/tmp\nhi\n0027\n");
  });

  test("rlimits are applied", () => {
    const r = run(["sh", "-c", "ulimit -n"], (s) => {
      s.process!.rlimits = [{ type: "RLIMIT_NOFILE", soft: 123, hard: 456 }];
    });
    expect(r.stdout.trim()).toBe("123");
  });

  test("an rlimit of 18446744073709551615, as Docker and podman write unlimited, is unlimited", () => {
    withArgs(["sh", "-c", "ulimit -c; ulimit -H -c"], (s) => {
      s.process!.rlimits = [{ type: "RLIMIT_CORE", soft: 424242, hard: 424242 }];
    });
    // The exact text of the uint64, which JSON.stringify of a number cannot write.
    const file = join(bundle, "config.json");
    writeFileSync(file, readFileSync(file, "utf8").replaceAll("424242", "18446744073709551615"));
    const r = runtime(root, ["run", "--bundle", bundle, nextId("unlimited")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("unlimited\nunlimited\n");
  });

  test("capabilities from the config are what the process has", () => {
    const r = run([
      "sh",
      "-c",
      "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    ]);
    // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10)
    const mask = ((1n << 29n) | (1n << 5n) | (1n << 10n)).toString(16).padStart(16, "0");
    expect(r.stdout).toContain(`CapEff:\t${mask}`);
    expect(r.stdout).toContain(`CapBnd:\t${mask}`);
    expect(r.stdout).toContain("NoNewPrivs:\t1");
  });

  test("a script with CRLF line endings: the error explains why exec says 'no such file'", () => {
    const scriptPath = join(bundle, "rootfs", "crlf.sh");
    writeFileSync(scriptPath, "#!/bin/sh\r\necho hi\r\n");
    chmodSync(scriptPath, 0o755);
    try {
      const r = run(["/crlf.sh"]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain("exec /crlf.sh");
      expect(r.stderr).toContain("hint: /crlf.sh has Windows line endings (CRLF)");
    } finally {
      rm(scriptPath);
    }
  });

  test("a missing program fails at create with a clear error, leaving nothing behind", () => {
    withArgs(["/no/such/program"]);
    const id = nextId("missing");
    const r = runtime(root, ["create", "--bundle", bundle, id]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("/no/such/program");
    expect(r.stderr).toContain("no such file or directory");
    expect(r.stderr).toContain("hint:");
    expect(existsSync(join(root, id))).toBe(false);
    expect(cgroupDirsNamed(id)).toEqual([]);
  });
});

describe("lifecycle across separate processes", () => {
  test("create → created, start → running, exit → stopped, delete → gone", async () => {
    // The process waits for a file the test creates through a bind mount, then exits.
    const signals = withSignals("lifecycle-signals", [
      "sh",
      "-c",
      "echo started > /signals/started; while [ ! -e /signals/go ]; do sleep 0.02; done",
    ]);
    const id = nextId("life");
    const pidFile = join(work, `${id}.pid`);
    expect(runtime(root, ["create", "--bundle", bundle, "--pid-file", pidFile, id]).status).toBe(0);
    const state1 = JSON.parse(runtime(root, ["state", id]).stdout);
    expect(state1.status).toBe("created");
    expect(state1.pid).toBe(Number(readFileSync(pidFile, "utf8")));
    expect(state1.bundle).toBe(bundle);
    expect(state1.ociVersion).toMatch(/^1\./);
    // The user process has not started yet.
    await Bun.sleep(100);
    expect(existsSync(join(signals, "started"))).toBe(false);
    // A created container is not stopped: delete refuses it (runtime.md), delete --force would not.
    const early = runtime(root, ["delete", id]);
    expect(early.status).not.toBe(0);
    expect(early.stderr).toContain("it is created");

    expect(runtime(root, ["start", id]).status).toBe(0);
    expect(JSON.parse(runtime(root, ["state", id]).stdout).status).toBe("running");
    // Starting twice is an error.
    expect(runtime(root, ["start", id]).stderr).toContain("it is running");
    // Deleting a running container needs --force.
    const del = runtime(root, ["delete", id]);
    expect(del.status).not.toBe(0);
    expect(del.stderr).toContain("--force");

    writeFileSync(join(signals, "go"), "");
    const deadline = Date.now() + 10_000;
    let status = "";
    while (Date.now() < deadline) {
      status = JSON.parse(runtime(root, ["state", id]).stdout).status;
      if (status === "stopped") break;
      await Bun.sleep(20);
    }
    expect(status).toBe("stopped");
    expect(readFileSync(join(signals, "started"), "utf8")).toBe("started\n");
    expect(runtime(root, ["delete", id]).status).toBe(0);
    expect(runtime(root, ["state", id]).stderr).toContain("does not exist");
    expect(cgroupDirsNamed(id)).toEqual([]);
  });

  test("kill sends a signal; list shows containers", () => {
    withArgs(["sleep", "100"]);
    const id = nextId("kill");
    expect(runtime(root, ["run", "--detach", "--bundle", bundle, id]).status).toBe(0);
    const list = JSON.parse(runtime(root, ["list", "--format", "json"]).stdout) as {
      id: string;
      status: string;
    }[];
    expect(list.find((c) => c.id === id)?.status).toBe("running");
    expect(runtime(root, ["list"]).stdout).toMatch(new RegExp(`${id}\\s+\\d+\\s+running`));
    expect(runtime(root, ["kill", id, "KILL"]).status).toBe(0);
    const deadline = Date.now() + 5000;
    while (
      Date.now() < deadline &&
      JSON.parse(runtime(root, ["state", id]).stdout).status !== "stopped"
    )
      Bun.sleepSync(10);
    expect(JSON.parse(runtime(root, ["state", id]).stdout).status).toBe("stopped");
    expect(runtime(root, ["delete", id]).status).toBe(0);
  });

  test("delete --force removes a running container and its processes", () => {
    withArgs(["sh", "-c", "sleep 100 & sleep 100; true"]);
    const id = nextId("force");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    const pids = JSON.parse(runtime(root, ["ps", "--format", "json", id]).stdout) as number[];
    expect(pids.length).toBe(3);
    expect(runtime(root, ["delete", "--force", id]).status).toBe(0);
    for (const pid of pids)
      expect(
        existsSync(`/proc/${pid}/stat`) &&
          !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z"),
      ).toBe(false);
    expect(cgroupDirsNamed(id)).toEqual([]);
  });

  test("exec runs a process inside the running container", () => {
    withArgs(["sleep", "100"], (s) => {
      s.hostname = "exec-box";
    });
    const id = nextId("exec");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      const r = runtime(root, [
        "exec",
        id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 7",
      ]);
      expect(r.stdout).toBe("exec-box\nsleep 100 ");
      expect(r.status).toBe(7);
      const pidFile = join(work, `${id}.exec.pid`);
      const d = runtime(root, ["exec", "--detach", "--pid-file", pidFile, id, "sleep", "50"]);
      expect(d.status).toBe(0);
      expect(Number(readFileSync(pidFile, "utf8"))).toBeGreaterThan(0);
      expect(
        (JSON.parse(runtime(root, ["ps", "--format", "json", id]).stdout) as number[]).length,
      ).toBe(2);
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("pause and resume freeze the container", () => {
    withArgs(["sleep", "100"]);
    const id = nextId("pause");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      expect(runtime(root, ["pause", id]).status).toBe(0);
      expect(JSON.parse(runtime(root, ["state", id]).stdout).status).toBe("paused");
      expect(runtime(root, ["resume", id]).status).toBe(0);
      expect(JSON.parse(runtime(root, ["state", id]).stdout).status).toBe("running");
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("a create killed (SIGKILL) at any moment leaves nothing that delete --force does not remove", async () => {
    // A runtime killed between making the cgroup and recording it would leave a cgroup nobody
    // knows of: the record is written first. Kills spread over a whole create's duration.
    withArgs(["sleep", "30"]);
    const timed = nextId("killed");
    const t0 = performance.now();
    expect(runtime(root, ["create", "--bundle", bundle, timed]).status).toBe(0);
    const took = performance.now() - t0;
    expect(runtime(root, ["delete", "--force", timed]).status).toBe(0);
    for (let i = 0; i < 30; i++) {
      const id = nextId("killed");
      const child = spawn(BUN, [RUNTIME_CLI, "--root", root, "create", "--bundle", bundle, id], {
        stdio: "ignore",
      });
      const killer = setTimeout(() => child.kill("SIGKILL"), took * (0.2 + (0.85 * i) / 29));
      await new Promise((resolve) => child.on("close", resolve));
      clearTimeout(killer);
      const del = runtime(root, ["delete", "--force", id]);
      expect(del.stderr).toBe("");
      expect(del.status).toBe(0);
      expect(existsSync(join(root, id))).toBe(false);
      expect(cgroupDirsNamed(id)).toEqual([]);
    }
  }, 120_000);

  test("20 containers created concurrently", async () => {
    withArgs(["sleep", "100"]);
    const ids = Array.from({ length: 20 }, () => nextId("many"));
    try {
      const codes = await Promise.all(
        ids.map(
          (id) =>
            new Promise<number>((resolve) => {
              const p = spawn(
                BUN,
                [RUNTIME_CLI, "--root", root, "create", "--bundle", bundle, id],
                { stdio: "ignore" },
              );
              p.on("exit", (code) => resolve(code ?? -1));
            }),
        ),
      );
      expect(codes).toEqual(ids.map(() => 0));
      const states = ids.map((id) => JSON.parse(runtime(root, ["state", id]).stdout).status);
      expect(states).toEqual(ids.map(() => "created"));
      const pids = new Set(ids.map((id) => JSON.parse(runtime(root, ["state", id]).stdout).pid));
      expect(pids.size).toBe(20);
    } finally {
      for (const id of ids) runtime(root, ["delete", "--force", id]);
    }
    for (const id of ids) expect(existsSync(join(root, id))).toBe(false);
  }, 120_000);
});

describe("terminal and namespaces", () => {
  test("process.terminal: the pty master goes to the console socket; the process has a controlling terminal of the given size", async () => {
    const receiver = join(work, "console-receiver");
    const cc = spawnSync("cc", ["-o", receiver, join(REPO, "test/fixtures/console-receiver.c")], {
      encoding: "utf8",
    });
    expect(cc.stderr).toBe("");
    const socketPath = join(work, "console.sock");
    rm(socketPath);
    const listener = spawn(receiver, [socketPath], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    listener.stdout.on("data", (d) => (out += d));
    listener.stderr.on("data", (d) => (err += d));
    const done = new Promise((resolve) => listener.on("exit", resolve));
    try {
      while (!err.includes("listening")) await Bun.sleep(5);
      withArgs(["sh", "-c", "tty; stty size; echo $TERM"], (s) => {
        s.process!.terminal = true;
        s.process!.consoleSize = { height: 33, width: 120 };
      });
      const r = runtime(root, [
        "run",
        "--console-socket",
        socketPath,
        "--bundle",
        bundle,
        nextId("tty"),
      ]);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      await done;
      expect(err).toMatch(/received \/dev\/pts\/\d+/);
      expect(out.replace(/\r/g, "")).toMatch(/^\/dev\/pts\/\d+\n33 120\nxterm\n$/);
    } finally {
      listener.kill();
    }
  });

  test("each container joins a session keyring of its own, unless --no-new-keyring", () => {
    withArgs(["sh", "-c", "grep -o '_ses\\.[^:]*' /proc/keys || true"], (s) => {
      s.linux!.maskedPaths = [];
    });
    const id = nextId("keys");
    const own = runtime(root, ["run", "--bundle", bundle, id]);
    expect(own.stdout.split("\n")).toContain(`_ses.${id}`);
    const id2 = nextId("keys");
    const shared = runtime(root, ["run", "--no-new-keyring", "--bundle", bundle, id2]);
    expect(shared.stdout).not.toContain(`_ses.${id2}`);
  });

  test("a new time namespace applies linux.timeOffsets", () => {
    const hostUptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    const r = run(["cat", "/proc/uptime"], (s) => {
      s.linux!.namespaces!.push({ type: "time" });
      s.linux!.timeOffsets = { boottime: { secs: 86400 * 365 }, monotonic: { secs: 1000 } };
    });
    expect(r.stderr).toBe("");
    const inside = Number(r.stdout.split(" ")[0]);
    expect(inside - hostUptime).toBeGreaterThan(86400 * 365 - 60);
  });

  test("sysctl values are written inside the container's namespaces", () => {
    const hostValue = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const r = run(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax"], (s) => {
      s.linux!.sysctl = {
        "net.ipv4.ip_forward": hostValue.trim() === "1" ? "0" : "1",
        "kernel.msgmax": "12345",
      };
      s.linux!.readonlyPaths = [];
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${hostValue.trim() === "1" ? "0" : "1"}\n12345\n`);
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostValue);
  });

  test("a sysctl named with slashes (net/ipv4/ip_forward), as runc takes it, is written too", () => {
    const hostValue = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const want = hostValue.trim() === "1" ? "0" : "1";
    const r = run(["cat", "/proc/sys/net/ipv4/ip_forward"], (s) => {
      s.linux!.sysctl = { "net/ipv4/ip_forward": want };
      s.linux!.readonlyPaths = [];
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${want}\n`);
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostValue);
  });
});

describe("hooks", () => {
  test("prestart, createRuntime, poststart and poststop hooks run with the state on stdin", () => {
    const log = join(work, "hooks.log");
    rm(log);
    const script = join(work, "hook.sh");
    writeFileSync(script, `#!/bin/sh\nstate=$(cat)\necho "$1 $state" >> ${log}\n`);
    chmodSync(script, 0o755);
    const hook = (name: string) => ({ path: script, args: [script, name] });
    const r = run(["true"], (s) => {
      s.hooks = {
        prestart: [hook("prestart")],
        createRuntime: [hook("createRuntime")],
        poststart: [hook("poststart")],
        poststop: [hook("poststop")],
      };
    });
    expect(r.status).toBe(0);
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines.map((l) => l.split(" ")[0])).toEqual([
      "prestart",
      "createRuntime",
      "poststart",
      "poststop",
    ]);
    const state = JSON.parse(lines[0]!.slice("prestart ".length));
    expect(state.status).toBe("created");
    expect(state.pid).toBeGreaterThan(0);
    expect(state.bundle).toBe(bundle);
  });

  test("createContainer and startContainer hooks run inside the container's namespaces", () => {
    const log = join(work, "inner-hooks.log");
    rm(log);
    const r = run(["true"], (s) => {
      s.root!.readonly = false;
      s.hooks = {
        // createContainer runs before pivot_root: host paths resolve, hostname is the container's.
        createContainer: [
          { path: "/bin/sh", args: ["sh", "-c", `echo create $(hostname) >> ${log}`] },
        ],
        // startContainer runs after pivot_root: paths resolve in the container.
        startContainer: [{ path: "/bin/sh", args: ["sh", "-c", "echo start > /started"] }],
      };
      s.hostname = "hooked";
      s.process!.args = ["cat", "/started"];
    });
    expect(r.stdout).toBe("start\n");
    expect(readFileSync(log, "utf8")).toBe("create hooked\n");
  });

  test("run starts its own container without an exec fifo: created (to others too) until then, and `start` is refused", () => {
    const log = join(work, "run-start.log");
    rm(log);
    const script = join(work, "run-start-hook.sh");
    // Each hook asks another pivot-runtime process about the container, as a shim would.
    writeFileSync(
      script,
      `#!/bin/sh
id=$(cat | sed 's/.*"id":"\\([^"]*\\)".*/\\1/')
cli="${BUN} ${RUNTIME_CLI} --root ${root}"
status=$($cli state "$id" | sed -n 's/.*"status": *"\\([a-z]*\\)".*/\\1/p')
echo "$1 status=$status files=$(ls ${root}/$id | tr '\\n' ' ')" >> ${log}
if [ "$1" = createRuntime ]; then $cli start "$id" 2>> ${log}; echo "start exit=$?" >> ${log}; fi
`,
    );
    chmodSync(script, 0o755);
    const hook = (name: string) => ({ path: script, args: [script, name] });
    // Alive long enough for the poststart hook to see it running.
    const r = run(["sleep", "1"], (s) => {
      s.hooks = { createRuntime: [hook("createRuntime")], poststart: [hook("poststart")] };
    });
    expect(r.status).toBe(0);
    const lines = readFileSync(log, "utf8")
      .split("\n")
      .map((l) => l.trimEnd());
    expect(lines[0]).toBe("createRuntime status=created files=state.json");
    expect(lines[1]).toContain("the `run` that created it starts it");
    expect(lines[2]).toBe("start exit=1");
    expect(lines[3]).toBe("poststart status=running files=state.json");
  });

  test("poststart hooks run after the process is executed (run, and create + start)", () => {
    const log = join(work, "poststart-exe.log");
    rm(log);
    const script = join(work, "poststart-exe.sh");
    // What the container's pid runs when the hook is called: the program, not the launcher.
    writeFileSync(
      script,
      `#!/bin/sh\npid=$(cat | sed 's/.*"pid":\\([0-9]*\\).*/\\1/')\nreadlink /proc/$pid/exe >> ${log}\n`,
    );
    chmodSync(script, 0o755);
    const edit = (s: Spec) => {
      // A slow startContainer hook keeps the init from exec'ing for a while after the release.
      s.hooks = {
        startContainer: [{ path: "/bin/sleep", args: ["sleep", "0.3"] }],
        poststart: [{ path: script, args: [script] }],
      };
    };
    expect(run(["sleep", "1"], edit).status).toBe(0);
    withArgs(["sleep", "1"], edit);
    const id = nextId("poststart");
    try {
      expect(runtime(root, ["create", "--bundle", bundle, id]).status).toBe(0);
      expect(runtime(root, ["start", id]).status).toBe(0);
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
    const exes = readFileSync(log, "utf8").trim().split("\n");
    expect(exes).toHaveLength(2);
    for (const exe of exes) expect(exe).toEndWith("/bin/busybox");
  });

  test("delete runs poststop hooks for a started container, not for one never started", () => {
    const log = join(work, "poststop-started.log");
    rm(log);
    withArgs(["sleep", "30"], (s) => {
      s.hooks = {
        poststop: [{ path: "/bin/sh", args: ["sh", "-c", `cat >> ${log}; echo >> ${log}`] }],
      };
    });
    const neverStarted = nextId("nostart");
    const started = nextId("started");
    try {
      expect(runtime(root, ["create", "--bundle", bundle, neverStarted]).status).toBe(0);
      expect(runtime(root, ["create", "--bundle", bundle, started]).status).toBe(0);
      expect(runtime(root, ["start", started]).status).toBe(0);
      // Each answer comes from a separate process, from what `start` left on disk.
      expect(JSON.parse(runtime(root, ["state", started]).stdout).status).toBe("running");
      expect(JSON.parse(runtime(root, ["state", neverStarted]).stdout).status).toBe("created");
      expect(runtime(root, ["delete", "--force", neverStarted]).status).toBe(0);
      expect(runtime(root, ["delete", "--force", started]).status).toBe(0);
    } finally {
      runtime(root, ["delete", "--force", neverStarted]);
      runtime(root, ["delete", "--force", started]);
    }
    const states = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(states.map((s) => [s.id, s.status])).toEqual([[started, "stopped"]]);
  });

  test("a hook that outlives its timeout is killed and fails create", () => {
    withArgs(["true"], (s) => {
      s.hooks = { createRuntime: [{ path: "/bin/sleep", args: ["sleep", "30"], timeout: 1 }] };
    });
    const id = nextId("hooktime");
    const started = Date.now();
    const r = runtime(root, ["create", "--bundle", bundle, id]);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.stderr).toContain("createRuntime hook 0 (/bin/sleep) timed out after 1 seconds");
    expect(existsSync(join(root, id))).toBe(false);
  });

  test("a failing prestart hook fails create and leaves nothing behind", () => {
    withArgs(["true"], (s) => {
      s.hooks = { prestart: [{ path: "/bin/false" }] };
    });
    const id = nextId("hookfail");
    const r = runtime(root, ["create", "--bundle", bundle, id]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("prestart hook 0 (/bin/false) exited with status 1");
    expect(existsSync(join(root, id))).toBe(false);
    expect(cgroupDirsNamed(id)).toEqual([]);
  });

  test("a failed create signals its init only while the pid is still that process's", () => {
    // The hook kills the init, waits until it has been reaped, then has a decoy take its pid
    // (ns_last_pid) and fails create: the clean-up must leave the decoy alone.
    const log = join(work, "decoy.log");
    const script = join(work, "decoy-hook.sh");
    writeFileSync(
      script,
      `#!/bin/sh
pid=$(sed -n 's/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p')
echo "init $pid" > ${log}
kill -9 "$pid"
i=0; while [ -e /proc/$pid ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
sleep 0.05 # a later clock tick than the init's start time
n=0
while [ $n -lt 50 ]; do
  echo $((pid - 1)) > /proc/sys/kernel/ns_last_pid
  sleep 1000 </dev/null >/dev/null 2>&1 &
  if [ $! -eq "$pid" ]; then echo "decoy $!" >> ${log}; exit 1; fi
  kill $!; n=$((n+1))
done
echo "no decoy" >> ${log}
exit 1
`,
      { mode: 0o755 },
    );
    withArgs(["true"], (s) => {
      s.hooks = { prestart: [{ path: script }] };
    });
    const id = nextId("decoy");
    let decoy = 0;
    try {
      const r = runtime(root, ["create", "--bundle", bundle, id]);
      const lines = readFileSync(log, "utf8").trim().split("\n");
      decoy = Number(lines.find((l) => l.startsWith("decoy "))?.slice(6) ?? 0);
      expect(lines).toEqual([lines[0]!, `decoy ${lines[0]!.slice(5)}`]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain("prestart hook 0");
      expect(readFileSync(`/proc/${decoy}/cmdline`, "utf8")).toBe("sleep\u00001000\u0000");
      expect(existsSync(join(root, id))).toBe(false);
    } finally {
      if (decoy > 0) spawnSync("kill", ["-9", String(decoy)]);
    }
  });
});

describe("bad input", () => {
  test("config.json syntax errors name the file; nothing is left behind", () => {
    const bad = join(work, "bad-bundle");
    mkdirSync(join(bad, "rootfs"), { recursive: true });
    writeFileSync(join(bad, "config.json"), '{"ociVersion": "1.0.0",');
    const id = nextId("bad");
    const r = runtime(root, ["create", "--bundle", bad, id]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${bad}/config.json: is not valid JSON`);
    expect(existsSync(join(root, id))).toBe(false);
  });

  test("wrong types name the JSON path", () => {
    withArgs(["true"], (s) => {
      (s.process as unknown as Record<string, unknown>).cwd = 5;
    });
    const r = runtime(root, ["create", "--bundle", bundle, nextId("type")]);
    expect(r.stderr).toContain("process.cwd: must be a string, got a number");
  });

  test("an unsupported ociVersion is refused", () => {
    withArgs(["true"], (s) => {
      s.ociVersion = "2.0.0";
    });
    const r = runtime(root, ["create", "--bundle", bundle, nextId("ver")]);
    expect(r.stderr).toContain('ociVersion: "2.0.0" is not supported');
  });

  test("a root path escaping the bundle is refused", () => {
    withArgs(["true"], (s) => {
      s.root!.path = "../../..";
    });
    const r = runtime(root, ["create", "--bundle", bundle, nextId("esc")]);
    expect(r.stderr).toContain("root.path");
    expect(r.stderr).toContain("leaves the bundle");
  });

  test("invalid and duplicate ids are refused", () => {
    withArgs(["sleep", "100"]);
    for (const id of ["../x", "a/b", "x".repeat(300)]) {
      const r = runtime(root, ["create", "--bundle", bundle, id]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/container id/);
    }
    const id = nextId("dup");
    const first = runtime(root, ["create", "--bundle", bundle, id]);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    try {
      const again = runtime(root, ["create", "--bundle", bundle, id]);
      expect(again.status).not.toBe(0);
      expect(again.stderr).toContain("already exists");
      // The first container is untouched by the failed duplicate.
      expect(JSON.parse(runtime(root, ["state", id]).stdout).status).toBe("created");
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("start, kill, delete and state of unknown ids say so", () => {
    for (const cmd of [["start"], ["kill"], ["delete"], ["state"]]) {
      const r = runtime(root, [...cmd, "no-such-container"]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('container "no-such-container" does not exist');
    }
  });

  test("--log with --log-format json records the error for containerd", () => {
    const logFile = join(work, "runtime.log");
    const r = spawnSync(
      BUN,
      [RUNTIME_CLI, "--root", root, "--log", logFile, "--log-format", "json", "start", "nope"],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(1);
    const entry = JSON.parse(readFileSync(logFile, "utf8").trim().split("\n").at(-1)!);
    expect(entry.level).toBe("error");
    expect(entry.msg).toContain('container "nope" does not exist');
  });
});

describe("dry run", () => {
  test("create --dry-run prints the plan and creates nothing", () => {
    withArgs(["true"]);
    const id = nextId("dry");
    const r = runtime(root, ["create", "--dry-run", "--bundle", bundle, id]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`pivot_root into ${bundle}/rootfs`);
    expect(existsSync(join(root, id))).toBe(false);
    expect(cgroupDirsNamed(id)).toEqual([]);
    expect(hostMountPoints().filter((m) => m.startsWith(work))).toEqual([]);
    const json = JSON.parse(
      runtime(root, ["create", "--dry-run", "--format", "json", "--bundle", bundle, id]).stdout,
    );
    expect(json.steps.at(-1).op).toBe("Exec");
  });

  test("--format shell is a script that reproduces the container by hand, with the same mount table", () => {
    // The runtime's container: its mount table, seen through exec.
    withArgs(["sleep", "100"], (s) => {
      s.hostname = "by-hand";
    });
    const id = nextId("shell");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      const fromRuntime = mountSet(
        runtime(root, ["exec", id, "cat", "/proc/self/mountinfo"]).stdout,
      );
      // The script for the same container (its cgroup directories exist while it runs).
      withArgs(["sh", "-c", "echo $(hostname) $$; cat /proc/self/mountinfo"], (s) => {
        s.hostname = "by-hand";
      });
      const script = join(work, "by-hand.sh");
      writeFileSync(
        script,
        runtime(root, ["create", "--dry-run", "--format", "shell", "--bundle", bundle, id]).stdout,
      );
      const r = spawnSync("sh", [script], { encoding: "utf8" });
      expect(r.stderr).toBe("");
      const [line, ...mountinfo] = r.stdout.trim().split("\n");
      expect(line).toBe("by-hand 1");
      expect(mountSet(mountinfo.join("\n"))).toEqual(fromRuntime);
      expect(fromRuntime.length).toBeGreaterThan(20);
      // The script's mounts lived in its own mount namespace.
      expect(hostMountPoints().filter((m) => m.startsWith(work))).toEqual([]);
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });
});

/** A mount table as sorted "destination type options" lines (ids and sources differ between runs). */
function mountSet(mountinfo: string): string[] {
  const keep = new Set(["ro", "rw", "nosuid", "nodev", "noexec"]);
  return mountinfo
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(" ");
      const sep = fields.indexOf("-");
      const options = fields[5]!
        .split(",")
        .filter((o) => keep.has(o))
        .sort()
        .join(",");
      return `${fields[4]} ${fields[sep + 1]} ${options}`;
    })
    .sort();
}

describe("commands", () => {
  test("spec writes a valid default config; features lists what is supported", () => {
    const dir = tempDir();
    try {
      expect(runtime(root, ["spec", "--bundle", dir]).status).toBe(0);
      const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      expect(spec.root.path).toBe("rootfs");
      expect(runtime(root, ["spec", "--bundle", dir]).stderr).toContain("already exists");
    } finally {
      rm(dir);
    }
    const f = JSON.parse(runtime(root, ["features"]).stdout);
    expect(f.linux.namespaces).toContain("time");
    expect(f.hooks).toContain("createContainer");
  });

  test("--version", () => {
    expect(runtime(root, ["--version"]).stdout).toMatch(
      /^pivot-runtime version \d+\.\d+\.\d+\nspec: 1\./,
    );
  });
});

/** Waits until the container's state says STATUS (10 seconds at most); returns the last status. */
async function waitForStatus(id: string, status: string): Promise<string> {
  let seen = "";
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(20)) {
    seen = JSON.parse(runtime(root, ["state", id]).stdout || "{}").status;
    if (seen === status) break;
  }
  return seen;
}

describe("command-line flags, each shown by its effect", () => {
  test("create -b (short for --bundle), then kill with a signal number: 10 is SIGUSR1", async () => {
    const signals = withSignals("kill-number", [
      "sh",
      "-c",
      "trap 'echo USR1 > /signals/got; exit 0' USR1; trap 'echo TERM > /signals/got; exit 0' TERM; while true; do sleep 0.05; done",
    ]);
    rm(join(signals, "got"));
    const id = nextId("killnum");
    try {
      const c = runtime(root, ["create", "-b", bundle, id]);
      expect(c.stderr).toBe("");
      expect(JSON.parse(runtime(root, ["state", id]).stdout).bundle).toBe(bundle);
      expect(runtime(root, ["start", id]).status).toBe(0);
      expect(await waitForStatus(id, "running")).toBe("running");
      // Give sh time to install its traps before the signal.
      await Bun.sleep(200);
      expect(runtime(root, ["kill", id, "10"]).status).toBe(0);
      expect(await waitForStatus(id, "stopped")).toBe("stopped");
      expect(readFileSync(join(signals, "got"), "utf8")).toBe("USR1\n");
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("--preserve-fds N hands the runtime's descriptors 3..3+N-1 to the process, and no more", () => {
    const files = [0, 1, 2].map((i) => {
      const f = join(work, `preserved-${i}`);
      writeFileSync(f, `content of fd ${3 + i}\n`);
      return f;
    });
    withArgs(["sh", "-c", "cat <&3; cat <&4; (cat <&5) 2>/dev/null || echo fd 5 is closed"]);
    const fds = files.map((f) => openSync(f, "r"));
    const id = nextId("preserve");
    try {
      const r = spawnSync(
        BUN,
        [RUNTIME_CLI, "--root", root, "run", "--preserve-fds", "2", "--bundle", bundle, id],
        { encoding: "utf8", stdio: ["ignore", "pipe", "pipe", ...fds], timeout: 30_000 },
      );
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("content of fd 3\ncontent of fd 4\nfd 5 is closed\n");
      expect(r.status).toBe(0);
    } finally {
      for (const fd of fds) closeSync(fd);
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("--no-pivot: the rootfs is moved onto / and chrooted into; the container still sees only its own root", () => {
    const marker = join(work, "no-pivot-marker");
    writeFileSync(marker, "host file\n");
    withArgs([
      "sh",
      "-c",
      `cat /etc/passwd | head -1; cat ${marker} 2>/dev/null || echo no host file; awk '$5 == "/"' /proc/self/mountinfo | wc -l`,
    ]);
    const id = nextId("nopivot");
    const dry = runtime(root, ["create", "--dry-run", "--no-pivot", "--bundle", bundle, id]);
    expect(dry.stdout).toContain("(--no-pivot)");
    expect(dry.stdout).not.toContain("pivot_root into");
    const r = runtime(root, ["run", "--no-pivot", "--bundle", bundle, id]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      `${readFileSync(join(bundle, "rootfs/etc/passwd"), "utf8").split("\n")[0]}\nno host file\n1\n`,
    );
    expect(r.status).toBe(0);
    expect(hostMountPoints().filter((m) => m.startsWith(work))).toEqual([]);
  });

  test("exec --cwd, --env, --user, --cap and --no-new-privs shape the exec'd process", () => {
    withArgs(["sleep", "100"], (s) => {
      s.process!.noNewPrivileges = false;
    });
    const id = nextId("execflags");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      const show =
        "pwd; echo $GREETING; id -u; id -g; grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status";
      const plain = runtime(root, ["exec", id, "sh", "-c", show]);
      expect(plain.stderr).toBe("");
      const defaults = capMask([29, 5, 10]);
      expect(plain.stdout).toBe(
        `/\n\n0\n0\nCapEff:\t${defaults}\nCapBnd:\t${defaults}\nNoNewPrivs:\t0\n`,
      );
      const shaped = runtime(root, [
        "exec",
        "--cwd",
        "/tmp",
        "--env",
        "GREETING=hello",
        "--cap",
        "CAP_SYS_ADMIN",
        "--no-new-privs",
        id,
        "sh",
        "-c",
        show,
      ]);
      expect(shaped.stderr).toBe("");
      const withAdmin = capMask([29, 5, 10, 21]);
      expect(shaped.stdout).toBe(
        `/tmp\nhello\n0\n0\nCapEff:\t${withAdmin}\nCapBnd:\t${withAdmin}\nNoNewPrivs:\t1\n`,
      );
      const user = runtime(root, ["exec", "--user", "1000:1001", id, "sh", "-c", "id -u; id -g"]);
      expect(user.stdout).toBe("1000\n1001\n");
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("exec --process FILE runs the process the file describes", () => {
    withArgs(["sleep", "100"]);
    const id = nextId("execproc");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
    try {
      const file = join(work, `${id}.process.json`);
      writeFileSync(
        file,
        JSON.stringify({
          terminal: false,
          user: { uid: 12, gid: 34, additionalGids: [56] },
          args: ["sh", "-c", "pwd; echo $FROM_FILE; id -u; id -G; exit 5"],
          env: ["PATH=/bin", "FROM_FILE=yes"],
          cwd: "/etc",
        }),
      );
      const r = runtime(root, ["exec", "--process", file, id]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("/etc\nyes\n12\n34 56\n");
      expect(r.status).toBe(5);
    } finally {
      runtime(root, ["delete", "--force", id]);
    }
  });

  test("--log FILE with --log-format text writes logfmt lines; --debug adds the command line", () => {
    const logFile = join(work, "text.log");
    rm(logFile);
    const cli = (extra: string[]) =>
      spawnSync(
        BUN,
        [RUNTIME_CLI, "--root", root, "--log", logFile, "--log-format", "text", ...extra],
        { encoding: "utf8" },
      );
    expect(cli(["state", "no-such-text"]).status).toBe(1);
    const quiet = readFileSync(logFile, "utf8").trim().split("\n");
    expect(quiet).toHaveLength(1);
    expect(quiet[0]).toMatch(
      /^time="[^"]+" level=error msg="container \\"no-such-text\\" does not exist"$/,
    );
    rm(logFile);
    expect(cli(["--debug", "state", "no-such-debug"]).status).toBe(1);
    const lines = readFileSync(logFile, "utf8").trim().split("\n");
    expect(lines[0]).toMatch(/^time="[^"]+" level=debug msg="state no-such-debug"$/);
    expect(lines[1]).toContain('level=error msg="container \\"no-such-debug\\" does not exist"');
    rm(logFile);
  });
});

/** /proc/PID/status's capability mask of these capability numbers. */
function capMask(bits: number[]): string {
  return bits
    .reduce((m, b) => m | (1n << BigInt(b)), 0n)
    .toString(16)
    .padStart(16, "0");
}

/** Mount points and their fields from a mountinfo text: destination → [options, optional fields, fstype]. */
function mountsByPoint(
  mountinfo: string,
): Map<string, { options: string[]; tags: string[]; type: string }> {
  const out = new Map<string, { options: string[]; tags: string[]; type: string }>();
  for (const line of mountinfo.split("\n").filter(Boolean)) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    out.set(f[4]!, { options: f[5]!.split(","), tags: f.slice(6, sep), type: f[sep + 1]! });
  }
  return out;
}

describe("config fields, each shown by its effect", () => {
  test("process.oomScoreAdj is the process's oom_score_adj", () => {
    const r = run(["cat", "/proc/self/oom_score_adj"], (s) => {
      s.process!.oomScoreAdj = 345;
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("345\n");
  });

  test("bind mount options nosuid, nodev, noexec reach the mount, and noexec refuses to run a program", () => {
    const dir = join(work, "noexec-data");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "prog.sh"), "#!/bin/sh\necho RAN\n");
    chmodSync(join(dir, "prog.sh"), 0o755);
    const show = "grep ' /data ' /proc/self/mountinfo; /data/prog.sh 2>&1; /data2/prog.sh";
    const r = run(["sh", "-c", show], (s) => {
      s.mounts!.push(
        {
          destination: "/data",
          type: "bind",
          source: dir,
          options: ["rbind", "nosuid", "nodev", "noexec", "relatime"],
        },
        { destination: "/data2", type: "bind", source: dir, options: ["rbind"] },
      );
    });
    const [line, refused, ran] = r.stdout.trim().split("\n");
    const options = line!.split(" ")[5]!.split(",");
    expect(options).toEqual(expect.arrayContaining(["nosuid", "nodev", "noexec", "relatime"]));
    expect(refused).toContain("Permission denied");
    // The same directory without the options runs it.
    expect(ran).toBe("RAN");
  });

  test("the default mounts are of their types inside: proc, sysfs, devpts, mqueue, cgroup, tmpfs", () => {
    const r = run(["sh", "-c", "cat /proc/self/mountinfo; ls /sys/fs/cgroup"]);
    expect(r.status).toBe(0);
    const mounts = mountsByPoint(
      r.stdout
        .split("\n")
        .filter((l) => l.includes(" - "))
        .join("\n"),
    );
    expect(mounts.get("/proc")?.type).toBe("proc");
    expect(mounts.get("/sys")?.type).toBe("sysfs");
    expect(mounts.get("/sys")?.options).toContain("ro");
    expect(mounts.get("/dev")?.type).toBe("tmpfs");
    expect(mounts.get("/dev/pts")?.type).toBe("devpts");
    expect(mounts.get("/dev/shm")?.type).toBe("tmpfs");
    expect(mounts.get("/dev/mqueue")?.type).toBe("mqueue");
    // The cgroup mount: cgroup2 on a unified host, else a tmpfs with one cgroup mount per hierarchy.
    const cgroups = [...mounts.entries()].filter(([p]) => p.startsWith("/sys/fs/cgroup"));
    expect(cgroups.some(([, m]) => m.type === "cgroup" || m.type === "cgroup2")).toBe(true);
    for (const [, m] of cgroups) expect(m.options).toContain("ro");
    // The host's hierarchies are what the container sees there.
    const hostHierarchies = readdirSync("/sys/fs/cgroup").filter((e) => !e.includes("."));
    for (const h of hostHierarchies) expect(r.stdout.split("\n")).toContain(h);
  });

  test("the default /dev set and a device from linux.devices, with its mode and owner", () => {
    const r = run(
      [
        "sh",
        "-c",
        "for d in null zero full random urandom tty ptmx mine; do stat -c '%n %F %t:%T %a %u:%g' /dev/$d; done; " +
          "for l in fd stdin stdout stderr; do echo /dev/$l $(readlink /dev/$l); done; " +
          "stat -c '%n %F' /dev/shm /dev/pts; (echo x > /dev/full) 2>&1; head -c 8 /dev/urandom | wc -c; echo to-mine > /dev/mine && echo WROTE",
      ],
      (s) => {
        s.linux!.devices = [
          { path: "/dev/mine", type: "c", major: 1, minor: 3, fileMode: 0o602, uid: 7, gid: 8 },
        ];
      },
    );
    expect(r.stdout.split("\n")).toEqual([
      "/dev/null character special file 1:3 666 0:0",
      "/dev/zero character special file 1:5 666 0:0",
      "/dev/full character special file 1:7 666 0:0",
      "/dev/random character special file 1:8 666 0:0",
      "/dev/urandom character special file 1:9 666 0:0",
      "/dev/tty character special file 5:0 666 0:0",
      "/dev/ptmx symbolic link 0:0 777 0:0",
      "/dev/mine character special file 1:3 602 7:8",
      "/dev/fd /proc/self/fd",
      "/dev/stdin /proc/self/fd/0",
      "/dev/stdout /proc/self/fd/1",
      "/dev/stderr /proc/self/fd/2",
      "/dev/shm directory",
      "/dev/pts directory",
      expect.stringContaining("No space left on device"),
      "8",
      "WROTE",
      "",
    ]);
  });

  test("a namespace given by path is joined: the second container has the first one's UTS and network namespaces", () => {
    withArgs(["sleep", "100"], (s) => {
      s.hostname = "ns-owner";
    });
    const owner = nextId("nsowner");
    expect(runtime(root, ["run", "-d", "--bundle", bundle, owner]).status).toBe(0);
    try {
      const pid = JSON.parse(runtime(root, ["state", owner]).stdout).pid as number;
      const r = run(
        ["sh", "-c", "hostname; for n in uts net ipc; do readlink /proc/self/ns/$n; done"],
        (s) => {
          delete s.hostname;
          s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
            n.type === "uts" || n.type === "network"
              ? { type: n.type, path: `/proc/${pid}/ns/${n.type === "network" ? "net" : n.type}` }
              : n,
          );
        },
      );
      expect(r.stderr).toBe("");
      const ns = (name: string) => readlinkSync(`/proc/${pid}/ns/${name}`);
      const lines = r.stdout.split("\n");
      expect(lines.slice(0, 3)).toEqual(["ns-owner", ns("uts"), ns("net")]);
      // A namespace not given by path is the container's own.
      expect(lines[3]).toMatch(/^ipc:\[\d+\]$/);
      expect(lines[3]).not.toBe(ns("ipc"));
    } finally {
      runtime(root, ["delete", "--force", owner]);
    }
  });
});

describe("mount propagation", () => {
  /** A host directory that is a shared mount point of its own, with the subdirectories the tests mount on. */
  function sharedSource(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, "from-host"), { recursive: true });
    mkdirSync(join(dir, "from-container"), { recursive: true });
    expect(spawnSync("mount", ["--bind", dir, dir]).status).toBe(0);
    expect(spawnSync("mount", ["--make-shared", dir]).status).toBe(0);
    return dir;
  }
  const unmountAll = (dir: string) => {
    for (let i = 0; i < 5 && hostMountPoints().some((m) => m.startsWith(dir)); i++)
      spawnSync("umount", ["-R", "-l", dir]);
  };

  test("slave and private bind mounts: a host mount reaches the slave, not the private one", () => {
    const src = sharedSource("propagation-in");
    withArgs(["sleep", "100"], (s) => {
      for (const [dest, prop] of [
        ["/slave", "rslave"],
        ["/private", "rprivate"],
        ["/shared", "rshared"],
      ] as const)
        s.mounts!.push({ destination: dest, type: "bind", source: src, options: ["rbind", prop] });
    });
    const id = nextId("prop");
    try {
      expect(runtime(root, ["run", "-d", "--bundle", bundle, id]).status).toBe(0);
      const mounts = mountsByPoint(
        runtime(root, ["exec", id, "cat", "/proc/self/mountinfo"]).stdout,
      );
      expect(mounts.get("/slave")?.tags.some((t) => t.startsWith("master:"))).toBe(true);
      expect(mounts.get("/slave")?.tags.some((t) => t.startsWith("shared:"))).toBe(false);
      expect(mounts.get("/private")?.tags).toEqual([]);
      expect(mounts.get("/shared")?.tags.some((t) => t.startsWith("shared:"))).toBe(true);
      // A mount made on the host after the container started.
      expect(
        spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", join(src, "from-host")])
          .status,
      ).toBe(0);
      writeFileSync(join(src, "from-host", "file"), "made on the host\n");
      const r = runtime(root, [
        "exec",
        id,
        "sh",
        "-c",
        "for d in slave shared private; do echo $d: $(cat /$d/from-host/file 2>/dev/null || echo absent); done",
      ]);
      expect(r.stdout).toBe("slave: made on the host\nshared: made on the host\nprivate: absent\n");
    } finally {
      runtime(root, ["delete", "--force", id]);
      unmountAll(src);
    }
  });

  test("an rshared bind under a shared rootfsPropagation is bidirectional: the container's mount reaches the host, its own mounts do not", () => {
    for (const rootfsPropagation of ["shared", "rshared"]) {
      const src = sharedSource(`propagation-out-${rootfsPropagation}`);
      const before = hostMountPoints();
      try {
        const r = run(
          [
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /vol/from-container && echo made inside > /vol/from-container/file",
          ],
          (s) => {
            s.linux!.rootfsPropagation = rootfsPropagation;
            s.mounts!.push({
              destination: "/vol",
              type: "bind",
              source: src,
              options: ["rbind", "rshared"],
            });
            addCapability(s, "CAP_SYS_ADMIN");
          },
        );
        expect({ rootfsPropagation, status: r.status, stderr: r.stderr }).toEqual({
          rootfsPropagation,
          status: 0,
          stderr: "",
        });
        // The container is gone; its tmpfs lives on in the host's mount table.
        expect(readFileSync(join(src, "from-container", "file"), "utf8")).toBe("made inside\n");
        const added = hostMountPoints().filter((m) => !before.includes(m));
        expect(added).toEqual([join(src, "from-container")]);
      } finally {
        unmountAll(src);
      }
    }
  });

  test("rshared with the root filesystem on a mount stacked over another: the mount that holds it is the one made private", () => {
    const stack = join(work, "stacked");
    mkdirSync(join(stack, "sub"), { recursive: true });
    const before = hostMountPoints();
    try {
      // A mount at stack/sub, then one over stack that hides it; the rootfs lives in the top one.
      expect(
        spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "lower", join(stack, "sub")]).status,
      ).toBe(0);
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=64m", "upper", stack]).status).toBe(0);
      const rootfs = join(stack, "sub", "rootfs");
      mkdirSync(rootfs, { recursive: true });
      expect(spawnSync("cp", ["-a", `${join(bundle, "rootfs")}/.`, rootfs]).status).toBe(0);
      const r = run(["sh", "-c", "echo ran"], (s) => {
        s.root = { path: rootfs };
        s.linux!.rootfsPropagation = "rshared";
      });
      expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
        status: 0,
        stdout: "ran\n",
        stderr: "",
      });
      expect(hostMountPoints().filter((m) => !before.includes(m))).toEqual([
        join(stack, "sub"),
        stack,
      ]);
    } finally {
      spawnSync("umount", [stack]);
      spawnSync("umount", [join(stack, "sub")]);
    }
    expect(hostMountPoints().filter((m) => !before.includes(m))).toEqual([]);
  });

  test("rshared with root.path through a symlink onto a shared mount: that mount is made private, nothing reaches the host", () => {
    const hold = join(work, "propagation-hold");
    mkdirSync(join(hold, "b"), { recursive: true });
    const before = hostMountPoints();
    expect(spawnSync("mount", ["--bind", hold, hold]).status).toBe(0);
    expect(spawnSync("mount", ["--make-shared", hold]).status).toBe(0);
    try {
      const rootfs = join(hold, "b", "rootfs");
      mkdirSync(rootfs);
      expect(spawnSync("cp", ["-a", `${join(bundle, "rootfs")}/.`, rootfs]).status).toBe(0);
      const link = join(work, "propagation-link");
      symlinkSync(join(hold, "b"), link);
      const r = run(["sh", "-c", "echo ran"], (s) => {
        s.root = { path: join(link, "rootfs") };
        s.linux!.rootfsPropagation = "rshared";
      });
      expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
        status: 0,
        stdout: "ran\n",
        stderr: "",
      });
      // The container's proc, dev, sys and cgroup mounts would have landed under hold.
      expect(hostMountPoints().filter((m) => !before.includes(m))).toEqual([hold]);
    } finally {
      for (let i = 0; i < 5 && hostMountPoints().some((m) => m.startsWith(hold)); i++)
        spawnSync("umount", ["-R", "-l", hold]);
    }
    expect(hostMountPoints().filter((m) => !before.includes(m))).toEqual([]);
  });

  test("rootfsPropagation: the container's / becomes shared when asked, and is not shared by default", () => {
    const rootTags = (prop?: string) => {
      const r = run(["cat", "/proc/self/mountinfo"], (s) => {
        if (prop) s.linux!.rootfsPropagation = prop;
      });
      expect(r.stderr).toBe("");
      return mountsByPoint(r.stdout).get("/")!.tags;
    };
    expect(rootTags().some((t) => t.startsWith("shared:"))).toBe(false);
    expect(rootTags("rshared").some((t) => t.startsWith("shared:"))).toBe(true);
    expect(rootTags("private")).toEqual([]);
  });
});

describe("bad input, more", () => {
  test("a config without root or without process is refused, naming the JSON path; nothing is left behind", () => {
    for (const [field, expected] of [
      ["root", "root: is missing"],
      ["process", "process: is missing"],
    ] as const) {
      withArgs(["true"], (s) => {
        delete (s as unknown as Record<string, unknown>)[field];
      });
      const id = nextId("missing-field");
      const r = runtime(root, ["create", "--bundle", bundle, id]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(expected);
      expect(existsSync(join(root, id))).toBe(false);
    }
  });

  test("an empty id and the id / are refused", () => {
    withArgs(["true"]);
    for (const id of ["", "/"]) {
      const r = runtime(root, ["create", "--bundle", bundle, id]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/container id/);
    }
  });

  test("a create that fails after the container's process exists leaves no state, cgroup, mount or process", () => {
    const pidFile = join(work, "late-failure.pid");
    rm(pidFile);
    withArgs(["true"], (s) => {
      s.hooks = {
        // Records the container's pid (from the state on stdin), then the next hook fails.
        createRuntime: [
          {
            path: "/bin/sh",
            args: ["sh", "-c", `sed 's/.*"pid":\\([0-9]*\\).*/\\1/' > ${pidFile}`],
          },
        ],
        createContainer: [{ path: "/bin/false" }],
      };
    });
    const id = nextId("late");
    const r = runtime(root, ["create", "--bundle", bundle, id]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("createContainer hook 0 (/bin/false)");
    const pid = Number(readFileSync(pidFile, "utf8"));
    expect(pid).toBeGreaterThan(0);
    // Gone, or a zombie the host's init has yet to reap.
    const alive =
      existsSync(`/proc/${pid}/stat`) &&
      !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    expect(alive).toBe(false);
    expect(existsSync(join(root, id))).toBe(false);
    expect(cgroupDirsNamed(id)).toEqual([]);
    expect(hostMountPoints().filter((m) => m.startsWith(work))).toEqual([]);
    expect(runtime(root, ["state", id]).stderr).toContain("does not exist");
  });
});
