// Confinement against the real kernel: seccomp, capabilities, no_new_privs, user namespaces and
// escape attempts through crafted bundles. Every test asserts the effect, from inside and outside.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Seccomp, Spec } from "../../src/oci/spec.ts";
import { Capability } from "../../src/runtime/linux.ts";
import { defaultSeccompProfile } from "../../src/security/seccomp-default.ts";

const REPO = join(import.meta.dir, "../..");
const CLI = join(REPO, "bin/pivot-runtime.ts");

if (process.getuid?.() !== 0)
  throw new Error("the security tests run real containers and need root");

let work: string;
let root: string;
let bundle: string;
let baseSpec: Spec;
let counter = 0;

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], timeout = 30_000): Result {
  const r = spawnSync(process.execPath, [CLI, "--root", root, ...args], {
    encoding: "utf8",
    input: "",
    timeout,
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function makeRootfs(dir: string): void {
  const r = spawnSync("sh", [join(REPO, "scripts/make-busybox-rootfs.sh"), dir], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`make-busybox-rootfs failed: ${r.stderr}`);
}

/** Writes the bundle's config: the `spec` default with these args, changed by `edit`. */
function configure(args: string[], edit: (s: Spec) => void = () => {}, dir = bundle): void {
  const spec = structuredClone(baseSpec);
  spec.process!.args = args;
  edit(spec);
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
}

/** `run` a container with these args (deleted afterwards by `run` itself). */
function run(args: string[], edit?: (s: Spec) => void, dir = bundle): Result {
  configure(args, edit, dir);
  return cli(["run", "--bundle", dir, `sec-${process.pid}-${++counter}`]);
}

/** A /proc/self/status field, e.g. "CapEff". */
function statusField(out: string, name: string): string {
  const m = new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(out);
  if (!m) throw new Error(`no ${name} in:\n${out}`);
  return m[1]!;
}

function capHex(names: string[]): string {
  let mask = 0n;
  for (const n of names) mask |= 1n << BigInt(Capability[n]!);
  return mask.toString(16).padStart(16, "0");
}

const SIGSYS = 31;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "pivot-security-"));
  // Container root in a user namespace is an unprivileged host uid: it must reach the bundle.
  chmodSync(work, 0o755);
  root = join(work, "state");
  bundle = join(work, "bundle");
  mkdirSync(bundle);
  makeRootfs(join(bundle, "rootfs"));
  const r = cli(["spec", "--bundle", bundle]);
  if (r.status !== 0) throw new Error(`spec failed: ${r.stderr}`);
  baseSpec = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as Spec;
  baseSpec.process!.terminal = false;
  baseSpec.root!.readonly = false;
});

afterAll(() => {
  try {
    const list = cli(["list", "--quiet"]);
    for (const id of list.stdout.split("\n").filter(Boolean)) cli(["delete", "--force", id]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

const errnoRule = (names: string[], errnoRet: number): Seccomp => ({
  defaultAction: "SCMP_ACT_ALLOW",
  syscalls: [{ names, action: "SCMP_ACT_ERRNO", errnoRet }],
});

describe("seccomp", () => {
  test("a blocked syscall returns the configured errno", () => {
    const r = run(["sh", "-c", "mkdir /made-here; echo status=$?; ls -d /made-here"], (s) => {
      // EOPNOTSUPP: not an error mkdir could give by itself.
      s.linux!.seccomp = errnoRule(["mkdir", "mkdirat"], 95);
    });
    expect(r.stderr).toContain("Operation not supported");
    expect(r.stdout).toContain("status=1");
    expect(existsSync(join(bundle, "rootfs/made-here"))).toBe(false);
  });

  test("defaultAction with defaultErrnoRet applies to every syscall not listed", () => {
    // Docker's allow-list without mkdir and mkdirat, and ENOSYS (38) as the default errno.
    const profile = defaultSeccompProfile({
      capabilities: baseSpec.process!.capabilities!.bounding,
    });
    for (const rule of profile.syscalls!) {
      rule.names = rule.names.filter((n) => n !== "mkdir" && n !== "mkdirat");
    }
    profile.defaultErrnoRet = 38;
    const r = run(["sh", "-c", "uname -s; mkdir /tmp/d; echo mkdir=$?"], (s) => {
      s.linux!.seccomp = profile;
    });
    expect(r.stdout).toBe("Linux\nmkdir=1\n");
    expect(r.stderr).toContain("Function not implemented");
  });

  test("a second container with the same profile loads the cached filter, which still blocks", () => {
    // A profile no other test uses, so the first run compiles it with libseccomp and exports it.
    const profile: Seccomp = {
      defaultAction: "SCMP_ACT_ALLOW",
      flags: ["SECCOMP_FILTER_FLAG_LOG"],
      syscalls: [{ names: ["mkdir", "mkdirat", "rmdir"], action: "SCMP_ACT_ERRNO", errnoRet: 94 }],
    };
    const script = "grep ^Seccomp: /proc/self/status; mkdir /tmp/c; echo status=$?";
    const cached = () => {
      const dir = join(root, "@seccomp");
      return existsSync(dir) ? readdirSync(dir).length : 0;
    };
    const counts = [cached()];
    const results = [1, 2].map(() => {
      configure(["sh", "-c", script], (s) => {
        s.linux!.seccomp = profile;
      });
      const r = cli(["--trace", "run", "--bundle", bundle, `sec-${process.pid}-${++counter}`]);
      counts.push(cached());
      return r;
    });
    expect(counts).toEqual([counts[0]!, counts[0]! + 1, counts[0]! + 1]);
    for (const r of results) {
      expect(r.stdout).toBe("Seccomp:\t2\nstatus=1\n");
      expect(r.stderr).toContain("Socket type not supported"); // ESOCKTNOSUPPORT (94)
    }
    // The first builds it with libseccomp (many steps), the second loads the exported program.
    expect(results[0]!.stderr).toMatch(/init: seccomp filter \(\d+ steps/);
    expect(results[0]!.stderr).not.toContain("load the cached seccomp filter");
    expect(results[1]!.stderr).toContain(
      "init: seccomp filter: load the cached seccomp filter (3 rules",
    );
    expect(results[1]!.stderr).toContain("flags 0x2)"); // SECCOMP_FILTER_FLAG_LOG, kept
  });

  test("SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL and SCMP_ACT_TRAP end the process with SIGSYS", () => {
    for (const action of ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"]) {
      const r = run(["uname", "-a"], (s) => {
        s.linux!.seccomp = {
          defaultAction: "SCMP_ACT_ALLOW",
          syscalls: [{ names: ["uname"], action }],
        };
      });
      expect({ action, status: r.status, stdout: r.stdout }).toEqual({
        action,
        status: 128 + SIGSYS,
        stdout: "",
      });
    }
  });

  test("SCMP_ACT_LOG allows the call; an unknown syscall name is skipped", () => {
    const r = run(["uname", "-s"], (s) => {
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [
          { names: ["uname"], action: "SCMP_ACT_LOG" },
          { names: ["no_such_syscall_in_any_kernel"], action: "SCMP_ACT_KILL" },
        ],
      };
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("Linux\n");
  });

  test("argument conditions match on the syscall's arguments", () => {
    // personality(PER_LINUX32) is refused, personality(PER_LINUX) is not.
    const r = run(
      ["sh", "-c", "linux32 true; echo linux32=$?; linux64 true; echo linux64=$?"],
      (s) => {
        s.linux!.seccomp = {
          defaultAction: "SCMP_ACT_ALLOW",
          syscalls: [
            {
              names: ["personality"],
              action: "SCMP_ACT_ERRNO",
              errnoRet: 13,
              args: [{ index: 0, value: 8, op: "SCMP_CMP_EQ" }],
            },
          ],
        };
      },
    );
    expect(r.stdout).toBe("linux32=1\nlinux64=0\n");
    expect(r.stderr).toContain("Permission denied");
  });

  test("the filter is installed with and without noNewPrivileges, also for a non-root user", () => {
    for (const nnp of [true, false]) {
      const r = run(
        ["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/x"],
        (s) => {
          s.process!.noNewPrivileges = nnp;
          s.process!.user = { uid: 1000, gid: 1000 };
          s.linux!.seccomp = errnoRule(["mkdir", "mkdirat"], 95);
        },
      );
      expect(statusField(r.stdout, "Seccomp")).toBe("2");
      expect(statusField(r.stdout, "NoNewPrivs")).toBe(nnp ? "1" : "0");
      expect(r.stderr).toContain("Operation not supported");
    }
  });

  test("Docker's default profile runs ordinary programs and refuses what the capabilities do not cover", () => {
    const caps = ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID"];
    const script =
      "echo hi | sha256sum | cut -c1-8; ps -o pid | wc -l; mount -t tmpfs t /tmp && echo MOUNTED";
    const withProfile = (profileCaps: string[]) =>
      run(["sh", "-c", script], (s) => {
        s.process!.capabilities = {
          bounding: caps,
          effective: caps,
          permitted: caps,
        };
        s.linux!.seccomp = defaultSeccompProfile({ capabilities: profileCaps });
      });
    // The profile made for a container without CAP_SYS_ADMIN: mount(2) is refused with EPERM.
    const without = withProfile(caps.filter((c) => c !== "CAP_SYS_ADMIN"));
    expect(without.stdout).toContain("98ea6e4f\n");
    expect(without.stdout).not.toContain("MOUNTED");
    expect(without.stderr).toContain("permission denied");
    // The profile made for the container's real capabilities allows it.
    const withAdmin = withProfile(caps);
    expect(withAdmin.stdout).toContain("MOUNTED");
  });

  test("an exec'd process gets the container's filter", () => {
    // The container must not keep the test's stdout pipe open while it sleeps.
    configure(["sh", "-c", "exec sleep 30 </dev/null >/dev/null 2>&1"], (s) => {
      s.linux!.seccomp = errnoRule(["mkdir", "mkdirat"], 95);
    });
    const id = `sec-exec-${process.pid}`;
    try {
      expect(cli(["run", "--detach", "--bundle", bundle, id]).status).toBe(0);
      const r = cli(["exec", id, "sh", "-c", "grep ^Seccomp: /proc/self/status; mkdir /tmp/e"]);
      expect(statusField(r.stdout, "Seccomp")).toBe("2");
      expect(r.stderr).toContain("Operation not supported");
    } finally {
      cli(["delete", "--force", id]);
    }
  }, 30_000);

  test("SCMP_ACT_NOTIFY hands the notification fd to the listener, which answers the call", async () => {
    const agent = join(work, "seccomp-agent");
    const cc = spawnSync("cc", ["-o", agent, join(REPO, "test/fixtures/seccomp-agent.c")], {
      encoding: "utf8",
    });
    expect(cc.stderr).toBe("");
    const socket = join(work, "agent.sock");
    const out = join(work, "agent.out");
    // The agent answers every notified call with ENOLINK (67).
    const child = spawn(agent, [socket, out, "67"], { stdio: "ignore" });
    try {
      for (let i = 0; i < 200 && !existsSync(socket); i++) await Bun.sleep(10);
      const r = run(["sh", "-c", "mkdir /tmp/n; echo mkdir=$?; uname -s"], (s) => {
        s.linux!.seccomp = {
          defaultAction: "SCMP_ACT_ALLOW",
          listenerPath: socket,
          listenerMetadata: "pivot-test",
          syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_NOTIFY" }],
        };
      });
      expect(r.stdout).toBe("mkdir=1\nLinux\n");
      expect(r.stderr).toContain("Link has been severed");
      if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
      const [stateLine, ...calls] = readFileSync(out, "utf8").trim().split("\n");
      const state = JSON.parse(stateLine!);
      expect(state).toMatchObject({
        fds: ["seccompFd"],
        metadata: "pivot-test",
        state: { status: "creating", bundle: bundle },
      });
      expect(state.pid).toBe(state.state.pid);
      expect(calls.length).toBeGreaterThan(0);
    } finally {
      child.kill("SIGKILL");
    }
  }, 30_000);

  test("a malformed profile fails create, naming the entry, and leaves nothing behind", () => {
    const r = run(["true"], (s) => {
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [
          { names: ["read"], action: "SCMP_ACT_ALLOW" },
          { names: ["write"], action: "SCMP_ACT_EXPLODE" },
        ],
      };
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("linux.seccomp.syscalls[1].action");
    // Only the cache of compiled filters (of earlier tests) is there.
    expect(readdirSync(root).filter((f) => f !== "@seccomp")).toEqual([]);
  });
});

describe("capabilities and no_new_privs", () => {
  test("CapEff, CapPrm and CapBnd match the config; NoNewPrivs is 1 when asked", () => {
    const bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"];
    const effective = ["CAP_CHOWN", "CAP_KILL"];
    const r = run(["cat", "/proc/self/status"], (s) => {
      s.process!.noNewPrivileges = true;
      s.process!.capabilities = { bounding, effective, permitted: effective, inheritable: [] };
    });
    expect(statusField(r.stdout, "CapBnd")).toBe(capHex(bounding));
    expect(statusField(r.stdout, "CapEff")).toBe(capHex(effective));
    expect(statusField(r.stdout, "CapPrm")).toBe(capHex(effective));
    expect(statusField(r.stdout, "CapInh")).toBe(capHex([]));
    expect(statusField(r.stdout, "NoNewPrivs")).toBe("1");
  });

  test("ambient capabilities survive the switch to a non-root user", () => {
    const caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
    const r = run(["cat", "/proc/self/status"], (s) => {
      s.process!.user = { uid: 1000, gid: 1000 };
      s.process!.capabilities = {
        bounding: caps,
        effective: caps,
        permitted: caps,
        inheritable: caps,
        ambient: caps,
      };
    });
    expect(statusField(r.stdout, "Uid")).toBe("1000");
    expect(statusField(r.stdout, "CapAmb")).toBe(capHex(caps));
    expect(statusField(r.stdout, "CapEff")).toBe(capHex(caps));
  });

  test("NoNewPrivs is 0 when not asked", () => {
    const r = run(["cat", "/proc/self/status"], (s) => {
      s.process!.noNewPrivileges = false;
    });
    expect(statusField(r.stdout, "NoNewPrivs")).toBe("0");
  });

  test("without CAP_SYS_ADMIN, mount fails inside and cannot undo a read-only path", () => {
    const r = run([
      "sh",
      "-c",
      "mount -t tmpfs t /tmp && echo MOUNTED; mount -o remount,rw /proc/sys && echo REMOUNTED; umount /proc/kcore && echo UNMASKED; true",
    ]);
    expect(r.stdout).toBe("");
    expect(statusField(readFileSync("/proc/self/status", "utf8"), "CapEff")).not.toBe("0");
  });

  test("an unknown capability is a config error naming it", () => {
    const r = run(["true"], (s) => {
      s.process!.capabilities!.bounding = ["CAP_CHOWN", "CAP_FLY"];
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("process.capabilities.bounding[1]");
    expect(r.stderr).toContain("CAP_FLY");
  });
});

describe("user namespaces", () => {
  test("container root is mapped to an unprivileged host range", () => {
    // A root filesystem owned by the mapped range, as an image unpacked for it would be.
    const dir = join(work, "userns-bundle");
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    expect(spawnSync("chown", ["-hR", "100000:100000", join(dir, "rootfs")]).status).toBe(0);
    const shared = join(work, "userns-out");
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const r = run(
      ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /out/made-by-root"],
      (s) => {
        s.linux!.namespaces!.push({ type: "user" });
        s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
        // Written to /proc/self before the init turns non-dumpable (then /proc/self is host root's).
        s.process!.oomScoreAdj = 100;
        s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
        // A cgroup mount and sysfs of the host are not the user namespace's to mount.
        s.mounts = s.mounts!.filter(
          (m) => m.destination !== "/sys/fs/cgroup" && m.destination !== "/sys",
        );
        s.mounts.push({
          destination: "/out",
          type: "bind",
          source: shared,
          options: ["rbind", "rw"],
        });
      },
      dir,
    );
    expect(r.stderr).toBe("");
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/).join(" "));
    expect(lines).toEqual(["0 100000 65536", "0 100000 65536", "0"]);
    // The file root made inside belongs to the mapped host ids.
    const st = statSync(join(shared, "made-by-root"));
    expect([st.uid, st.gid]).toEqual([100000, 100000]);
  });
});

describe("escape attempts with crafted bundles", () => {
  /** A fresh bundle whose rootfs has `evil` as a symlink pointing at `target`. */
  function evilBundle(name: string, target: string): string {
    const dir = join(work, name);
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    symlinkSync(target, join(dir, "rootfs/evil"));
    return dir;
  }

  test("a bind mount destination that is an absolute symlink out of the rootfs stays inside", () => {
    const hostTarget = join(work, "host-target-abs");
    mkdirSync(hostTarget);
    const source = join(work, "bind-source");
    mkdirSync(source, { recursive: true });
    writeFileSync(join(source, "marker"), "from the bind source\n");
    const dir = evilBundle("evil-abs", hostTarget);
    const before = readFileSync("/proc/self/mountinfo", "utf8");
    const r = run(
      ["sh", "-c", `cat /evil/marker; ls ${hostTarget}`],
      (s) => {
        s.mounts!.push({ destination: "/evil", type: "bind", source, options: ["rbind", "ro"] });
      },
      dir,
    );
    // Inside, /evil -> HOSTTARGET resolves within the container's root, where the bind landed.
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("from the bind source\nmarker\n");
    expect(statSync(join(dir, "rootfs", hostTarget)).isDirectory()).toBe(true);
    // On the host, the target is untouched and nothing was mounted on it.
    expect(readdirSync(hostTarget)).toEqual([]);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).toBe(before);
  });

  test("a destination that climbs out with ../ and a tmpfs mount through it stay inside", () => {
    const hostTarget = join(work, "host-target-rel");
    mkdirSync(hostTarget);
    writeFileSync(join(hostTarget, "keep"), "host data\n");
    const dir = evilBundle("evil-rel", `../../../../../../../..${hostTarget}`);
    const r = run(
      ["sh", "-c", "echo written > /evil/keep; cat /evil/keep"],
      (s) => {
        s.mounts!.push({
          destination: "/evil",
          type: "tmpfs",
          source: "tmpfs",
          options: ["size=1m"],
        });
      },
      dir,
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("written\n");
    expect(readFileSync(join(hostTarget, "keep"), "utf8")).toBe("host data\n");
  });

  test("a file bind mount through a symlinked parent directory cannot replace a host file", () => {
    const hostDir = join(work, "host-etc");
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, "passwd"), "host passwd\n");
    const source = join(work, "fake-passwd");
    writeFileSync(source, "container passwd\n");
    const dir = evilBundle("evil-file", hostDir);
    const r = run(
      ["cat", "/evil/passwd"],
      (s) => {
        s.mounts!.push({
          destination: "/evil/passwd",
          type: "bind",
          source,
          options: ["bind", "ro"],
        });
      },
      dir,
    );
    expect(r.stdout).toBe("container passwd\n");
    expect(readFileSync(join(hostDir, "passwd"), "utf8")).toBe("host passwd\n");
  });

  test("a created container's init cannot be opened through /proc/1/exe by another process", () => {
    const id = `sec-exe-${process.pid}`;
    configure(["true"]);
    try {
      const created = spawnSync(
        process.execPath,
        [CLI, "--root", root, "create", "--bundle", bundle, id],
        {
          stdio: "ignore",
          timeout: 30_000,
        },
      );
      expect(created.status).toBe(0);
      // Until `start`, PID 1 runs the launcher: a process exec'd into the container (root, default
      // capabilities) must not reach the host binary through /proc/1/exe or /proc/1/fd.
      const r = cli([
        "exec",
        id,
        "sh",
        "-c",
        "readlink /proc/1/exe && echo LINK; head -c4 /proc/1/exe >/dev/null && echo READ; for f in /proc/1/fd/*; do head -c1 $f >/dev/null 2>&1 && echo FD $f; done; true",
      ]);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("Permission denied");
      expect(r.stderr).not.toContain("pivot-launcher");
    } finally {
      cli(["delete", "--force", id]);
    }
  }, 30_000);

  test("no descriptor of the runtime leaks into the container", () => {
    const r = run(["ls", "/proc/self/fd"]);
    // ls's own directory fd is the only one beyond stdio.
    expect(r.stdout.trim().split("\n").map(Number).sort()).toEqual([0, 1, 2, 3]);
  });

  test("a cwd of /proc/self/fd/N cannot reach the host", () => {
    for (const fd of [3, 4, 5, 6, 7, 8]) {
      const r = run(["sh", "-c", "pwd; ls .. | head -3"], (s) => {
        s.process!.cwd = `/proc/self/fd/${fd}`;
      });
      // Either chdir fails at create (no such directory fd is open in the init), or the cwd is
      // something inside the container.
      if (r.status === 0) expect(r.stdout).not.toContain(work);
      else expect(r.stderr).toContain(`chdir to the working directory /proc/self/fd/${fd}`);
    }
  });
});

describe("rootless mode", () => {
  // An unprivileged user made for these tests (a system account: no subordinate ids of its own),
  // removed afterwards with the /etc/subuid and /etc/subgid lines it was given.
  const user = `pivotrl${process.pid % 100000}`;
  const SUB = "300000-365535";
  let uid = -1;
  let gid = -1;
  let home: string;
  let xdg: string;

  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(() => {
    sh("useradd", ["--system", "--no-create-home", "--user-group", "-s", "/bin/false", user]);
    uid = Number(sh("id", ["-u", user]).trim());
    gid = Number(sh("id", ["-g", user]).trim());
    home = join(work, "rootless-home");
    xdg = join(work, "rootless-xdg");
    for (const d of [home, xdg]) {
      mkdirSync(d, { mode: 0o700 });
      sh("chown", [`${uid}:${gid}`, d]);
    }
  });

  afterAll(() => {
    // The user's containers first (its processes would keep userdel from working).
    const list = asUser(["list", "--quiet"]);
    for (const id of list.stdout.split("\n").filter(Boolean)) asUser(["delete", "--force", id]);
    spawnSync("usermod", ["--del-subuids", SUB, "--del-subgids", SUB, user]);
    spawnSync("userdel", [user]);
    spawnSync("groupdel", [user]);
  });

  /**
   * pivot-runtime as the test user, with its own HOME and XDG_RUNTIME_DIR and no --root. Output
   * goes through files: a detached container would hold a pipe open for its whole life.
   */
  function asUser(args: string[], cwd = work): Result {
    const out = join(work, `as-user-${++counter}`);
    const fd = openSync(out, "w");
    const errFd = openSync(`${out}.err`, "w");
    const r = spawnSync(
      "setpriv",
      [
        `--reuid=${uid}`,
        `--regid=${gid}`,
        "--init-groups",
        "env",
        "-i",
        `HOME=${home}`,
        `XDG_RUNTIME_DIR=${xdg}`,
        `PATH=${process.env.PATH}`,
        process.execPath,
        CLI,
        ...args,
      ],
      { stdio: ["ignore", fd, errFd], timeout: 30_000, cwd },
    );
    closeSync(fd);
    closeSync(errFd);
    const result = {
      status: r.status ?? -1,
      stdout: readFileSync(out, "utf8"),
      stderr: readFileSync(`${out}.err`, "utf8"),
    };
    rmSync(out);
    rmSync(`${out}.err`);
    return result;
  }

  /** What the user's state directory holds ($XDG_RUNTIME_DIR/pivot-runtime). */
  function stateEntries(): string[] {
    const dir = join(xdg, "pivot-runtime");
    return existsSync(dir) ? readdirSync(dir) : [];
  }

  /** A busybox bundle owned by the test user, with the config `spec --rootless` writes. */
  function userBundle(name: string, args: string[], edit: (s: Spec) => void = () => {}): string {
    const dir = join(work, name);
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    sh("chown", ["-R", `${uid}:${gid}`, dir]);
    const r = asUser(["spec", "--rootless", "--bundle", dir]);
    if (r.status !== 0) throw new Error(`spec --rootless failed: ${r.stderr}`);
    const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Spec;
    spec.process!.terminal = false;
    spec.process!.args = args;
    edit(spec);
    writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
    return dir;
  }

  /** Directories named NAME under any cgroup hierarchy (the container's would be pivot-ID). */
  function cgroupDirsNamed(name: string): string[] {
    const r = spawnSync("find", ["/sys/fs/cgroup", "-maxdepth", "6", "-name", name], {
      encoding: "utf8",
    });
    return r.stdout.split("\n").filter(Boolean);
  }

  test("an unprivileged user runs a busybox container from `spec --rootless`: uid 0 inside, its files owned by the user, nothing left behind", () => {
    const dir = userBundle(
      "rootless-bundle",
      ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /made-inside"],
      (s) => {
        s.root!.readonly = false;
      },
    );
    const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Spec;
    expect(spec.linux!.uidMappings).toEqual([{ containerID: 0, hostID: uid, size: 1 }]);
    expect(spec.linux!.gidMappings).toEqual([{ containerID: 0, hostID: gid, size: 1 }]);
    const id = `rootless-${process.pid}`;
    const r = asUser(["run", "--bundle", dir, id]);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/).join(" "));
    expect(lines).toEqual(["0", "0", `0 ${uid} 1`, `0 ${gid} 1`]);
    const st = statSync(join(dir, "rootfs/made-inside"));
    expect([st.uid, st.gid]).toEqual([uid, gid]);
    // This host's cgroups are not delegated to the user: said once, and skipped.
    expect(r.stderr).toContain("not delegated");
    expect(r.stderr).toContain(`uid ${uid}`);
    // State went to $XDG_RUNTIME_DIR/pivot-runtime, and `run` removed it; no cgroup was made.
    expect(stateEntries()).toEqual([]);
    expect(cgroupDirsNamed(`pivot-${id}`)).toEqual([]);
  }, 30_000);

  test("create, exec, kill and delete work rootless", () => {
    const dir = userBundle("rootless-lifecycle", ["sleep", "30"]);
    const id = `rootless-lc-${process.pid}`;
    const created = asUser(["create", "--bundle", dir, id]);
    expect(created.stderr).toContain("not delegated");
    expect(created.status).toBe(0);
    try {
      expect(existsSync(join(xdg, "pivot-runtime", id, "state.json"))).toBe(true);
      expect(asUser(["start", id]).status).toBe(0);
      const e = asUser(["exec", id, "sh", "-c", "id -u; cat /proc/1/cmdline | tr '\\0' ' '"]);
      expect(e.stderr).toBe("");
      expect(e.stdout).toBe("0\nsleep 30 ");
      expect(asUser(["kill", id, "KILL"]).status).toBe(0);
    } finally {
      const d = asUser(["delete", "--force", id]);
      expect(d.status).toBe(0);
    }
    expect(existsSync(join(xdg, "pivot-runtime", id))).toBe(false);
  }, 30_000);

  test("several id ranges go through newuidmap/newgidmap, within the user's /etc/subuid and /etc/subgid ranges", () => {
    const edit = (s: Spec) => {
      s.root!.readonly = false;
      s.linux!.uidMappings = [
        { containerID: 0, hostID: uid, size: 1 },
        { containerID: 1, hostID: 300000, size: 65536 },
      ];
      s.linux!.gidMappings = [
        { containerID: 0, hostID: gid, size: 1 },
        { containerID: 1, hostID: 300000, size: 65536 },
      ];
      s.process!.user.additionalGids = [10];
      for (const set of ["bounding", "effective", "permitted"] as const)
        s.process!.capabilities![set]!.push("CAP_CHOWN");
    };
    const args = [
      "sh",
      "-c",
      "cat /proc/self/uid_map /proc/self/gid_map; id -G; touch /by-1000; chown 1000:2000 /by-1000",
    ];
    const dir = userBundle("rootless-ranges", args, edit);
    // Without subordinate ids: a clear error naming the file, and nothing left behind.
    const refused = asUser(["run", "--bundle", dir, `rootless-r0-${process.pid}`]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain("linux.uidMappings[1]");
    expect(refused.stderr).toContain(`/etc/subuid has no range for ${user}`);
    expect(refused.stderr).toContain(`${user}:100000:65536`);
    expect(stateEntries()).toEqual([]);

    sh("usermod", ["--add-subuids", SUB, "--add-subgids", SUB, user]);
    const r = asUser(["run", "--bundle", dir, `rootless-r1-${process.pid}`]);
    expect(r.stderr).not.toMatch(/pivot-runtime: (?!warning)|chown/);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/).join(" "));
    expect(lines).toEqual([
      `0 ${uid} 1`,
      "1 300000 65536",
      `0 ${gid} 1`,
      "1 300000 65536",
      // newgidmap leaves setgroups allowed: additionalGids apply.
      "0 10",
    ]);
    // Container uid 1000 is host uid 300000 + 999; gid 2000 is 301999.
    const st = statSync(join(dir, "rootfs/by-1000"));
    expect([st.uid, st.gid]).toEqual([300999, 301999]);
  }, 30_000);

  test("a container without a user namespace is refused with a hint", () => {
    const dir = userBundle("rootless-no-userns", ["true"], (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "user");
    });
    const r = asUser(["run", "--bundle", dir, `rootless-nu-${process.pid}`]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("needs a user namespace");
    expect(r.stderr).toContain("spec --rootless");
  });
});

describe("id-mapped bind mounts", () => {
  /** A bundle for a container whose root is host uid/gid 100000 (its rootfs chowned to it). */
  function usernsBundle(name: string): string {
    const dir = join(work, name);
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    expect(spawnSync("chown", ["-hR", "100000:100000", join(dir, "rootfs")]).status).toBe(0);
    return dir;
  }

  const inUserns = (s: Spec) => {
    s.linux!.namespaces!.push({ type: "user" });
    s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.mounts = s.mounts!.filter(
      (m) => m.destination !== "/sys/fs/cgroup" && m.destination !== "/sys",
    );
  };

  test("a host directory owned by uid 1000 appears as root's inside, and files made there belong to 1000 on the host", () => {
    const dir = usernsBundle("idmap-bundle");
    const data = join(work, "idmap-data");
    mkdirSync(data);
    writeFileSync(join(data, "from-host"), "hello\n");
    expect(spawnSync("chown", ["-R", "1000:1000", data]).status).toBe(0);
    const r = run(
      [
        "sh",
        "-c",
        "stat -c %u:%g /data /data/from-host; cat /data/from-host; echo made > /data/made-inside && stat -c %u:%g /data/made-inside",
      ],
      (s) => {
        inUserns(s);
        s.mounts!.push({
          destination: "/data",
          type: "bind",
          source: data,
          options: ["bind", "rw"],
          // Verbatim as the helper user namespace's maps (as runc): an id 1000 on disk is seen
          // as host id 100000, the container's root.
          uidMappings: [{ containerID: 1000, hostID: 100000, size: 1 }],
          gidMappings: [{ containerID: 1000, hostID: 100000, size: 1 }],
        });
      },
      dir,
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("0:0\n0:0\nhello\n0:0\n");
    const st = statSync(join(data, "made-inside"));
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
    // The host sees the directory as it was: the mapping exists only on the container's mount.
    expect(statSync(data).uid).toBe(1000);
    expect(hostMountsUnder(work)).toEqual([]);
  });

  test('"idmap" without mappings takes the container\'s: a root-owned host directory needs no chown', () => {
    const dir = usernsBundle("idmap-own-bundle");
    const data = join(work, "idmap-root-data");
    mkdirSync(join(data, "sub"), { recursive: true });
    writeFileSync(join(data, "sub/file"), "x");
    expect(spawnSync("chown", ["-R", "0:0", data]).status).toBe(0);
    expect(spawnSync("chown", ["-R", "7:7", join(data, "sub")]).status).toBe(0);
    const cmd = "stat -c %u:%g /plain /plain/sub /mapped /mapped/sub /mapped/sub/file";
    const r = run(
      ["sh", "-c", cmd],
      (s) => {
        inUserns(s);
        s.mounts!.push(
          { destination: "/plain", type: "bind", source: data, options: ["rbind", "ro"] },
          { destination: "/mapped", type: "bind", source: data, options: ["rbind", "ridmap"] },
        );
      },
      dir,
    );
    expect(r.stderr).toBe("");
    // Unmapped host ids show as the overflow id 65534; id-mapped, they keep their numbers.
    expect(r.stdout).toBe("65534:65534\n65534:65534\n0:0\n7:7\n7:7\n");
  });

  test("clear errors: not a bind mount, one of the two mappings missing, idmap without a user namespace", () => {
    const tmpfsIdmap = run(["true"], (s) => {
      s.mounts!.push({ destination: "/x", type: "tmpfs", source: "tmpfs", options: ["idmap"] });
    });
    expect(tmpfsIdmap.status).not.toBe(0);
    expect(tmpfsIdmap.stderr).toContain("bind mounts only");
    const half = run(["true"], (s) => {
      s.mounts!.push({
        destination: "/x",
        type: "bind",
        source: work,
        options: ["bind"],
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      });
    });
    expect(half.status).not.toBe(0);
    expect(half.stderr).toContain("gidMappings: is missing or empty");
    const noUserns = run(["true"], (s) => {
      s.mounts!.push({ destination: "/x", type: "bind", source: work, options: ["idmap"] });
    });
    expect(noUserns.status).not.toBe(0);
    expect(noUserns.stderr).toContain("no user namespace");
  });
});

/** Mount points of this (the host's) mount namespace under DIR: containers must leave none. */
function hostMountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(dir));
}
