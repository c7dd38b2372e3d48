// Confinement against the real kernel: seccomp, capabilities, no_new_privs, user namespaces and
// escape attempts through crafted bundles. Every test asserts the effect, from inside and outside.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Seccomp, Spec } from "../../src/oci/spec.ts";
import { launcherPath } from "../../src/runtime/launcher.ts";
import { Capability } from "../../src/runtime/linux.ts";
import { defaultSeccompProfile } from "../../src/security/seccomp-default.ts";
import { addCapability, runAsUser } from "../helpers.ts";

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

  test("a filter loaded before the wait for start (noNewPrivileges) does not break that wait", () => {
    // The runtime's own wait (run: the Start sync point) must not need what the filter kills.
    const r = run(["echo", "hello"], (s) => {
      s.process!.noNewPrivileges = true;
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["getpid"], action: "SCMP_ACT_KILL_PROCESS" }],
      };
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello\n");
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

  test("without CAP_SYS_ADMIN, mount fails inside and cannot undo a read-only or masked path", () => {
    // Each attempt on its own line with its exit status; busybox reports EPERM from mount(2) as
    // "permission denied (are you root?)" and from umount2(2) as "Operation not permitted".
    const attempts = [
      "mount -t tmpfs none /mnt",
      "mount -o remount,rw /proc/sys",
      "mount -t proc proc /mnt",
      "mount --bind /proc /mnt",
      "umount /proc/keys",
      "umount -l /proc/sys",
    ];
    const r = run([
      "sh",
      "-c",
      `mkdir -p /mnt; ${attempts.map((a) => `${a}; echo "$?"`).join("; ")}; (: > /proc/sys/kernel/hostname) 2>/dev/null && echo SYS-WRITABLE; stat -c %t:%T /proc/keys`,
    ]);
    expect(r.stdout).toBe(`${attempts.map(() => "1\n").join("")}1:3\n`);
    expect(r.stderr.match(/mount: permission denied \(are you root\?\)/g)?.length).toBe(4);
    expect(r.stderr).toContain("can't unmount /proc/keys: Operation not permitted");
    expect(r.stderr).toContain("can't unmount /proc/sys: Operation not permitted");
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
    // (Mount points under the work directory only: other suites mount on this host concurrently.)
    expect(hostMountsUnder(work)).toEqual([]);
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

  // From the working directory, climb ".." (physically) as far as it goes: the container's root
  // if the directory is inside it, the top of some other tree if not.
  const whereIsCwd =
    'for i in $(seq 40); do cd -P .. 2>/dev/null; done; [ "$(stat -c %d:%i .)" = "$(stat -c %d:%i /)" ] && echo INSIDE > /out/where || echo OUTSIDE > /out/where';

  /** Runs whereIsCwd with cwd /proc/self/fd/FD; "run" or "create"+"start" (the exec fifo path). */
  function cwdThroughFd(fd: number, mode: "run" | "create", denyGetcwd: boolean): string {
    const out = join(work, `cwd-out-${mode}-${fd}`);
    mkdirSync(out, { recursive: true });
    rmSync(join(out, "where"), { force: true });
    configure(["sh", "-c", whereIsCwd], (s) => {
      s.process!.cwd = `/proc/self/fd/${fd}`;
      s.mounts!.push({ destination: "/out", type: "bind", source: out, options: ["rbind"] });
      // As the runtime-tools suite's profile does: the check after chdir cannot use getcwd.
      // Without noNewPrivileges the filter is loaded before the user switch, so before chdir.
      if (denyGetcwd) {
        s.linux!.seccomp = errnoRule(["getcwd"], 1);
        s.process!.noNewPrivileges = false;
      }
    });
    const id = `sec-cwd-${process.pid}-${++counter}`;
    try {
      if (mode === "run") {
        const r = cli(["run", "--bundle", bundle, id]);
        if (r.status !== 0) return r.stderr;
      } else {
        const c = cli(["create", "--bundle", bundle, id]);
        if (c.status !== 0) return c.stderr;
        expect(cli(["start", id]).status).toBe(0);
        for (let i = 0; i < 500 && !cli(["state", id]).stdout.includes('"stopped"'); i++)
          Bun.sleepSync(10);
      }
      return readFileSync(join(out, "where"), "utf8").trim();
    } finally {
      cli(["delete", "--force", id]);
    }
  }

  for (const denyGetcwd of [false, true]) {
    test(`a cwd of /proc/self/fd/N cannot reach the host${denyGetcwd ? " (getcwd denied by seccomp)" : ""}`, () => {
      // The init holds the host's /proc (to reopen the exec fifo) and, on cgroup v2, held its
      // cgroup directory (clone3) until exec: each was a way out through "..". Either chdir fails
      // at create, or the working directory is inside the container.
      for (const mode of ["run", "create"] as const) {
        for (let fd = 3; fd <= 12; fd++) {
          const where = cwdThroughFd(fd, mode, denyGetcwd);
          if (where !== "INSIDE")
            expect(where).toContain(`chdir to the working directory /proc/self/fd/${fd}`);
        }
      }
    }, 60_000);
  }

  for (const denyGetcwd of [false, true]) {
    test(`a preserved fd of the root filesystem's own directory, opened on the host, is no way out${denyGetcwd ? " (getcwd denied by seccomp)" : ""}`, () => {
      // rootfs/tmp through the host's mount: the same inode as the container's /tmp, but ".."
      // from it climbs the host's tree. Only the mount tells the two apart.
      const out = join(work, `cwd-preserved-${denyGetcwd}`);
      mkdirSync(out, { recursive: true });
      rmSync(join(out, "where"), { force: true });
      configure(["sh", "-c", whereIsCwd], (s) => {
        s.process!.cwd = "/proc/self/fd/3";
        s.mounts!.push({ destination: "/out", type: "bind", source: out, options: ["rbind"] });
        if (denyGetcwd) {
          s.linux!.seccomp = errnoRule(["getcwd"], 1);
          s.process!.noNewPrivileges = false;
        }
      });
      const fd = openSync(join(bundle, "rootfs", "tmp"), "r");
      try {
        const id = `sec-cwd-${process.pid}-${++counter}`;
        const r = spawnSync(
          process.execPath,
          [CLI, "--root", root, "run", "--preserve-fds", "1", "--bundle", bundle, id],
          { encoding: "utf8", stdio: ["ignore", "pipe", "pipe", fd], timeout: 30_000 },
        );
        cli(["delete", "--force", id]);
        if (r.status === 0) expect(readFileSync(join(out, "where"), "utf8").trim()).toBe("INSIDE");
        else expect(r.stderr).toContain("chdir to the working directory /proc/self/fd/3");
      } finally {
        closeSync(fd);
      }
    });
  }

  test("with getcwd denied by seccomp, an ordinary working directory still works", () => {
    const r = run(["sh", "-c", "echo ok"], (s) => {
      s.process!.cwd = "/tmp";
      s.linux!.seccomp = errnoRule(["getcwd"], 1);
      s.process!.noNewPrivileges = false;
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("ok\n");
  });
});

describe("escapes through /proc and the kernel", () => {
  const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
  /** The files a dynamic program loads (its loader and libraries, by ldd); none for a static one. */
  const sharedLibraries = (program: string): string[] => {
    const r = spawnSync("ldd", [program], { encoding: "utf8" });
    return [...(r.stdout ?? "").matchAll(/(?:=> )?(\/\S+) \(0x/g)].map((m) => m[1]!);
  };

  /** A fresh busybox bundle under the work directory. */
  function freshBundle(name: string): string {
    const dir = join(work, name);
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    return dir;
  }

  async function waitUntil(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
    for (let waited = 0; !ok(); waited += 20) {
      if (waited > ms) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(20);
    }
  }

  test("a process inside cannot reach the binary of a joining `exec` through /proc/PID/exe, nor write it through #!/proc/self/exe (CVE-2019-5736)", async () => {
    const attacker = join(work, "exe-attacker");
    const cc = spawnSync(
      "cc",
      ["-static", "-O2", "-o", attacker, join(REPO, "test/fixtures/exe-attacker.c")],
      { encoding: "utf8" },
    );
    expect(cc.stderr).toBe("");
    const dir = freshBundle("exe-join");
    const rootfs = join(dir, "rootfs");
    copyFileSync(attacker, join(rootfs, "exe-attacker"));
    chmodSync(join(rootfs, "exe-attacker"), 0o755);
    // The CVE's image: a program whose interpreter is the process's own binary, which, for a
    // process `exec` starts, is the launcher until it execs.
    writeFileSync(join(rootfs, "evilsh"), "#!/proc/self/exe\n", { mode: 0o755 });
    // ... and, as any glibc image does, the dynamic loader and libraries a dynamic launcher needs,
    // so that the launcher can run there as the container's program (a static one always can).
    // Without them a dynamic launcher would fail to start there, which once hid the hole.
    for (const lib of sharedLibraries(launcherPath())) {
      mkdirSync(join(rootfs, lib, ".."), { recursive: true });
      copyFileSync(lib, join(rootfs, lib));
    }
    // The joining processes run a copy of the launcher, so that a regression overwrites the copy,
    // not the build other tests use; the copy and the bun binary running the runtime are hashed.
    const launcherCopy = join(work, "pivot-launcher-copy");
    copyFileSync(launcherPath(), launcherCopy);
    chmodSync(launcherCopy, 0o755);
    const binaries = [launcherCopy, realpathSync(process.execPath)];
    const before = binaries.map(sha256);
    const env = { ...process.env, PIVOT_LAUNCHER: launcherCopy };
    const pr = (args: string[], stdio: "pipe" | "ignore" = "pipe"): Result => {
      const r = spawnSync(process.execPath, [CLI, "--root", root, ...args], {
        encoding: "utf8",
        env,
        stdio: stdio === "pipe" ? ["pipe", "pipe", "pipe"] : "ignore",
        input: stdio === "pipe" ? "" : undefined,
        timeout: 30_000,
      });
      return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    };
    const log = () => {
      const f = join(rootfs, "tmp/attacker.log");
      return existsSync(f) ? readFileSync(f, "utf8") : "";
    };
    configure(["/exe-attacker", "60"], undefined, dir);
    const id = `sec-exe-join-${process.pid}`;
    let evilStderr = "";
    try {
      expect(pr(["create", "--bundle", dir, id], "ignore").status).toBe(0);
      expect(pr(["start", id]).status).toBe(0);
      await waitUntil("the attacker", () => existsSync(join(rootfs, "tmp/attacker-ready")));
      // Each `exec` is a process joining the container while it still runs the launcher; the
      // attacker must have seen at least one of them (and been refused) for the test to count.
      for (let i = 0; i < 10 && !/^DENIED /m.test(log()); i++) {
        expect(pr(["exec", id, "/bin/true"]).status).toBe(0);
      }
      // The CVE's exec: /evilsh runs the launcher again as the container's program. It takes its
      // stdin for a control socket and waits there for a plan while stdin stays open: long enough
      // for the attacker to find it, open its exe and try to write it once it has exited.
      const evil = spawn(process.execPath, [CLI, "--root", root, "exec", id, "/evilsh"], {
        env,
        stdio: ["pipe", "ignore", "pipe"],
      });
      evil.stderr!.on("data", (d: Buffer) => {
        evilStderr += d.toString();
      });
      const evilEnded = new Promise((resolve) => evil.on("close", resolve));
      await waitUntil("the attacker to open the exec'd launcher", () => /^OPENED /m.test(log()));
      evil.stdin!.end();
      await evilEnded;
      await waitUntil("the attacker to try writing it", () =>
        /^(WROTE|WRITE_FAILED|REOPEN_FAILED) /m.test(log()),
      );
      writeFileSync(join(rootfs, "tmp/attacker-stop"), "");
      await waitUntil("the attacker to stop", () => log().includes("DONE"));
    } finally {
      pr(["delete", "--force", id]);
    }
    // The joining process is non-dumpable until it execs: /proc/PID/exe is refused.
    expect(log()).toMatch(/^DENIED \d+ Permission denied$/m);
    // The launcher run as the container's (dumpable) program is its sealed copy: the attacker
    // opened that memfd, never a host file, and could not write it.
    const opened = [...log().matchAll(/^OPENED \d+ (.*)$/gm)].map((m) => m[1]);
    expect(opened.length).toBeGreaterThan(0);
    for (const link of opened) expect(link).toBe("/memfd:pivot-launcher (deleted)");
    expect(log()).toMatch(/^(WRITE_FAILED|REOPEN_FAILED) \/memfd:pivot-launcher/m);
    expect(log()).not.toMatch(/OPEN_WRONLY|WROTE/);
    expect(evilStderr).not.toContain("    at "); // no stack trace
    expect(binaries.map(sha256)).toEqual(before);
  }, 120_000);

  test("where no executable memfd may be made (vm.memfd_noexec=2), create fails naming the sysctl, and leaves nothing", () => {
    // The sysctl belongs to a pid namespace (6.3+): raised in a throwaway one, never on the host.
    if (!existsSync("/proc/sys/vm/memfd_noexec"))
      throw new Error("this kernel has no vm.memfd_noexec");
    configure(["true"]);
    const id = `sec-noexec-${process.pid}`;
    const r = spawnSync(
      "unshare",
      [
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        'echo 2 > /proc/sys/vm/memfd_noexec && exec "$@"',
        "sh",
        process.execPath,
        CLI,
        "--root",
        root,
        "run",
        "--bundle",
        bundle,
        id,
      ],
      { encoding: "utf8", input: "", timeout: 30_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("vm.memfd_noexec is 2");
    expect(r.stderr).toContain("sysctl vm.memfd_noexec=1");
    expect(r.stderr).not.toContain("    at ");
    expect(existsSync(join(root, id))).toBe(false);
    expect(readFileSync("/proc/sys/vm/memfd_noexec", "utf8").trim()).not.toBe("2");
  });

  /**
   * Inside: each path with its type and device numbers, whether it opens for writing, and the
   * mount table. Nothing is written: `: >` only opens.
   */
  // runc's masked paths; which exist depends on the kernel's configuration (this VM has no
  // /proc/kcore), so the expectations follow the host's procfs and sysfs.
  const maskedFiles = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
  ].filter((f) => existsSync(f));
  const maskedDirs = ["/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware"].filter((f) =>
    existsSync(f),
  );
  const readonlyPaths = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
  ].filter((f) => existsSync(f));
  const writeProbes = ["/proc/sysrq-trigger", "/proc/sys/kernel/hostname"].filter((f) =>
    existsSync(f),
  );
  const probe = [
    `for f in ${[...maskedFiles, ...maskedDirs, ...writeProbes].join(" ")}; do`,
    '  [ -e "$f" ] || { echo "$f missing"; continue; }',
    '  echo "$f $(stat -c "%F %t:%T" "$f") entries=$(ls -A "$f" 2>/dev/null | wc -l)"',
    '  if [ -f "$f" ] || [ -c "$f" ]; then (: > "$f") 2>/dev/null && echo "$f WRITABLE"; fi',
    "done",
    "echo ---",
    "cat /proc/self/mountinfo",
  ].join("\n");

  /** Mount point → super/mount options, from mountinfo text. */
  function mountOptions(mountinfo: string): Map<string, string> {
    const m = new Map<string, string>();
    for (const line of mountinfo.trim().split("\n")) {
      const f = line.split(" ");
      m.set(f[4]!, `${f[5]} ${f.slice(f.indexOf("-") + 1).join(" ")}`);
    }
    return m;
  }

  /** The checks both a plain and a symlinked /proc must pass; PROC is where procfs landed. */
  function expectMaskedAndReadonly(out: string, proc: string): void {
    const [files, mountinfo] = out.split("---\n");
    const mounts = mountOptions(mountinfo!);
    // Masked files are /dev/null (character device 1:3), masked directories an empty tmpfs.
    expect(maskedFiles.length + maskedDirs.length).toBeGreaterThan(2);
    for (const f of maskedFiles)
      expect(files).toContain(`${f} character special file 1:3 entries=1`);
    for (const d of maskedDirs) {
      expect(files).toContain(`${d} directory 0:0 entries=0`);
      expect(mounts.get(d.replace(/^\/proc/, proc))).toMatch(/^ro,.* tmpfs /);
    }
    expect(files).not.toContain("missing");
    // Read-only paths do not open for writing; their mounts are read-only.
    expect(writeProbes).toContain("/proc/sys/kernel/hostname");
    for (const f of writeProbes) expect(files).not.toContain(`${f} WRITABLE`);
    expect(readonlyPaths).toContain("/proc/sys");
    for (const p of readonlyPaths)
      expect(mounts.get(p.replace(/^\/proc/, proc))).toMatch(/^ro[, ]/);
    // Only the masked files, /dev/null, open for writing: what is written there goes nowhere.
    expect(files!.match(/WRITABLE/g)?.length ?? 0).toBe(maskedFiles.length);
  }

  test("the default spec masks and write-protects what runc's does", () => {
    const ours = baseSpec.linux!;
    const runcSpec = spawnSync(
      "sh",
      ["-c", 'cd "$1" && runc spec && cat config.json', "sh", work],
      {
        encoding: "utf8",
      },
    );
    if (runcSpec.status === 0) {
      rmSync(join(work, "config.json"));
      const theirs = (JSON.parse(runcSpec.stdout) as Spec).linux!;
      for (const p of theirs.maskedPaths ?? []) expect(ours.maskedPaths).toContain(p);
      for (const p of theirs.readonlyPaths ?? []) expect(ours.readonlyPaths).toContain(p);
    }
    for (const p of ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"])
      expect(ours.maskedPaths).toContain(p);
    for (const p of ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/irq"])
      expect(ours.readonlyPaths).toContain(p);
    const r = run(["sh", "-c", probe]);
    expect(r.status).toBe(0);
    expectMaskedAndReadonly(r.stdout, "/proc");
  });

  test("a rootfs whose /proc or /sys is a symlink is refused, as runc does: procfs through a link chain a later mount hides would escape the masks", () => {
    // The attack: /proc -> /dev/pp -> /realproc. procfs landed on /realproc, the fresh /dev tmpfs
    // hid /dev/pp, and every masked and read-only /proc path then failed to resolve and was
    // skipped: a writable, unmasked procfs (core_pattern) for the container's root.
    const chain = freshBundle("proc-chain");
    rmSync(join(chain, "rootfs/proc"), { recursive: true });
    mkdirSync(join(chain, "rootfs/realproc"));
    symlinkSync("/dev/pp", join(chain, "rootfs/proc"));
    symlinkSync("/realproc", join(chain, "rootfs/dev/pp"));
    const sys = freshBundle("sys-link");
    rmSync(join(sys, "rootfs/sys"), { recursive: true });
    mkdirSync(join(sys, "rootfs/elsewhere"));
    symlinkSync("/elsewhere", join(sys, "rootfs/sys"));
    for (const [dir, dest] of [
      [chain, "/proc"],
      [sys, "/sys"],
    ] as const) {
      const r = run(
        ["sh", "-c", "cat /realproc/sys/kernel/core_pattern; echo RAN"],
        undefined,
        dir,
      );
      expect(r.status).not.toBe(0);
      expect(r.stdout).not.toContain("RAN");
      expect(r.stderr).toContain(`open mount point ${dest} inside`);
      expect(r.stderr).toContain("a component of the path is a symlink");
    }
    // (Only under the work directory: other suites mount and unmount on this host concurrently.)
    expect(hostMountsUnder(work)).toEqual([]);
  });

  test("without a fresh /dev, an image's /dev/null that is not the null device is never bound over a masked path", () => {
    // The attack: /dev/null -> /proc/sys/kernel/core_pattern; masking /proc/timer_list then bound
    // a writable core_pattern there, outside the read-only /proc/sys.
    const dir = freshBundle("devnull-link");
    rmSync(join(dir, "rootfs/dev/null"), { force: true });
    symlinkSync("/proc/sys/kernel/core_pattern", join(dir, "rootfs/dev/null"));
    const r = run(
      ["sh", "-c", "cat /proc/timer_list > /proc/timer_list && echo WROTE"],
      (s) => {
        s.mounts = s.mounts!.filter((m) => !m.destination.startsWith("/dev"));
      },
      dir,
    );
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain("WROTE");
    expect(r.stderr).toContain("the container's /dev/null is not the null device");
    expect(hostMountsUnder(work)).toEqual([]);
  });

  test("a masked path that is a symlink to a file masks the file it points to inside the container", () => {
    const dir = freshBundle("mask-file-link");
    writeFileSync(join(dir, "rootfs/etc/real"), "real contents\n");
    symlinkSync("/etc/real", join(dir, "rootfs/etc/link"));
    const r = run(
      ["sh", "-c", "echo link=$(cat /etc/link) real=$(cat /etc/real)"],
      (s) => {
        s.linux!.maskedPaths = [...s.linux!.maskedPaths!, "/etc/link"];
      },
      dir,
    );
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
      status: 0,
      stdout: "link= real=\n",
      stderr: "",
    });
  });

  test("masked and read-only paths that are symlinks out of the rootfs protect the link's target inside, never a host path", () => {
    const hostSecret = join(work, "host-secret");
    const hostRo = join(work, "host-ro");
    for (const d of [hostSecret, hostRo]) {
      mkdirSync(d);
      writeFileSync(join(d, "data"), "host data\n");
    }
    const dir = freshBundle("mask-links");
    // As an image could ship them: the masked path absolute, the read-only one climbing with ../.
    symlinkSync(hostSecret, join(dir, "rootfs/etc/secret"));
    symlinkSync(`../../../../../../../..${hostRo}`, join(dir, "rootfs/etc/ro"));
    for (const d of [hostSecret, hostRo]) mkdirSync(join(dir, "rootfs", d), { recursive: true });
    writeFileSync(join(dir, "rootfs", hostSecret, "data"), "container secret\n");
    const r = run(
      [
        "sh",
        "-c",
        `ls -A /etc/secret | wc -l; touch /etc/ro/new 2>&1; echo rc=$?; grep -c " ${hostSecret} " /proc/self/mountinfo`,
      ],
      (s) => {
        s.linux!.maskedPaths = [...s.linux!.maskedPaths!, "/etc/secret"];
        s.linux!.readonlyPaths = [...s.linux!.readonlyPaths!, "/etc/ro"];
      },
      dir,
    );
    // Inside: the link's target (within the rootfs) is masked, the other read-only.
    expect(r.stdout).toBe("0\ntouch: /etc/ro/new: Read-only file system\nrc=1\n1\n");
    // On the host: both directories untouched, nothing mounted.
    expect(readFileSync(join(hostSecret, "data"), "utf8")).toBe("host data\n");
    expect(readdirSync(hostRo)).toEqual(["data"]);
    // (Only under the work directory: other suites mount and unmount on this host concurrently.)
    expect(hostMountsUnder(work)).toEqual([]);
  });

  test("host processes are neither visible nor signalable, and the host's mount table is not readable", () => {
    const host = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const hostPid = host.pid!;
      const r = run([
        "sh",
        "-c",
        [
          `kill -0 ${hostPid}; kill -9 ${hostPid}; kill -0 ${process.pid}; kill -9 -1`,
          "echo ---; ls /proc | grep -E '^[0-9]+$'",
          "echo ---; cat /proc/1/cmdline | tr '\\0' ' '; echo",
          "echo ---; cat /proc/1/mountinfo",
          "echo ---; cat /proc/self/mountinfo",
        ].join("; "),
      ]);
      const [kills, pids, cmdline, initMounts, selfMounts] = r.stdout.split("---\n");
      // The host's pids do not exist in the container's PID namespace.
      expect(r.stderr).toContain(`can't kill pid ${hostPid}: No such process`);
      expect(r.stderr).toContain(`can't kill pid ${process.pid}: No such process`);
      expect(kills).toBe("");
      expect(() => process.kill(hostPid, 0)).not.toThrow();
      expect(host.exitCode).toBeNull();
      // /proc lists the container's own processes only: the shell (PID 1) and its children.
      const seen = pids!.trim().split("\n").map(Number);
      expect(seen).toContain(1);
      expect(Math.max(...seen)).toBeLessThan(20);
      expect(cmdline!.trim()).toStartWith("sh -c kill -0");
      // The mount table is the container's: the same for PID 1 and itself, and none of the
      // host's own mount points (everything outside /proc, /dev and /sys, e.g. /run/netns).
      expect(initMounts).toBe(selfMounts!);
      const inside = [...mountOptions(initMounts!).keys()];
      const hostOnly = [
        ...mountOptions(readFileSync("/proc/self/mountinfo", "utf8")).keys(),
      ].filter((p) => p !== "/" && !/^\/(proc|dev|sys)(\/|$)/.test(p));
      expect(hostOnly.length).toBeGreaterThan(0);
      for (const p of hostOnly) expect(inside).not.toContain(p);
      for (const p of inside) expect(p).toMatch(/^\/($|proc|dev|sys)/);
    } finally {
      host.kill("SIGKILL");
    }
  });

  test("kernel modules cannot be loaded: no CAP_SYS_MODULE by default, and Docker's seccomp profile refuses it even with the capability", () => {
    // A kernel built without module support (this VM: no /proc/modules) has no init_module at
    // all: ENOSYS comes before any permission check, so only the seccomp filter's EPERM shows.
    const modular = existsSync("/proc/modules");
    const modules = modular ? readFileSync("/proc/modules", "utf8") : "";
    const script = "grep ^CapBnd /proc/self/status; echo junk > /tmp/m.ko; insmod /tmp/m.ko";
    const sysModule = 1n << BigInt(Capability.CAP_SYS_MODULE!);
    const plain = run(["sh", "-c", script]);
    expect(BigInt(`0x${statusField(plain.stdout, "CapBnd")}`) & sysModule).toBe(0n);
    expect(plain.status).not.toBe(0);
    expect(plain.stderr).toContain(
      modular ? "Operation not permitted" : "kernel does not support requested operation",
    );
    // With CAP_SYS_MODULE granted but Docker's default profile built for the usual capabilities
    // (an engine keeping its profile while a user adds the capability by hand), the filter
    // answers init_module and finit_module with EPERM.
    const withCap = run(["sh", "-c", script], (s) => {
      const caps = [...s.process!.capabilities!.bounding!, "CAP_SYS_MODULE"];
      s.process!.capabilities = { bounding: caps, effective: caps, permitted: caps };
      s.linux!.seccomp = defaultSeccompProfile({
        capabilities: baseSpec.process!.capabilities!.bounding!,
      });
    });
    expect(BigInt(`0x${statusField(withCap.stdout, "CapBnd")}`) & sysModule).toBe(sysModule);
    expect(withCap.status).not.toBe(0);
    expect(withCap.stderr).toContain("Operation not permitted");
    if (modular) expect(readFileSync("/proc/modules", "utf8")).toBe(modules);
  });
});

describe("bind attributes and mounts onto kernel filesystems", () => {
  /** Runs `mount -t tmpfs` on DIR (on the host) for the test, unmounting it afterwards. */
  function withHostTmpfs<T>(dir: string, body: () => T): T {
    mkdirSync(dir, { recursive: true });
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]).status).toBe(0);
    try {
      return body();
    } finally {
      spawnSync("umount", ["-l", dir]);
    }
  }

  const probe = (dirs: string[]) =>
    dirs
      .map((d) => `if touch ${d}/f 2>/dev/null; then echo "${d} rw"; else echo "${d} ro"; fi`)
      .join("; ");

  test("bind,ro and rbind,ro are read-only inside, an rbind's submounts too; a plain rbind stays writable", () => {
    const ro = join(work, "attr-ro");
    const rro = join(work, "attr-rro");
    const rw = join(work, "attr-rw");
    for (const d of [ro, rro, rw]) mkdirSync(d);
    const r = withHostTmpfs(join(rro, "sub"), () =>
      withHostTmpfs(join(rw, "sub"), () =>
        run(
          [
            "sh",
            "-c",
            `${probe(["/ro", "/rro", "/rro/sub", "/rw", "/rw/sub"])}; grep -E ' /(rro|rw)/sub ' /proc/self/mountinfo | cut -d' ' -f5,6 | cut -d, -f1`,
          ],
          (s) => {
            s.mounts!.push(
              { destination: "/ro", type: "bind", source: ro, options: ["bind", "ro"] },
              { destination: "/rro", type: "bind", source: rro, options: ["rbind", "ro"] },
              { destination: "/rw", type: "bind", source: rw, options: ["rbind", "nosuid"] },
            );
          },
        ),
      ),
    );
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    expect(r.stdout).toBe(
      "/ro ro\n/rro ro\n/rro/sub ro\n/rw rw\n/rw/sub rw\n/rro/sub ro\n/rw/sub rw\n",
    );
    expect(hostMountsUnder(work)).toEqual([]);
  });

  /** A bundle whose rootfs has /dev as a symlink to /proc (the attack). */
  function devToProcBundle(name: string): string {
    const dir = join(work, name);
    mkdirSync(dir);
    makeRootfs(join(dir, "rootfs"));
    rmSync(join(dir, "rootfs/dev"), { recursive: true, force: true });
    symlinkSync("/proc", join(dir, "rootfs/dev"));
    return dir;
  }

  /** cgroup directories whose name contains FRAGMENT (a container's id), a few levels deep. */
  function cgroupsNamed(fragment: string): string[] {
    const found: string[] = [];
    const visit = (dir: string, depth: number) => {
      if (depth > 5) return;
      let names: string[] = [];
      try {
        names = readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return;
      }
      for (const n of names) {
        if (n.includes(fragment)) found.push(join(dir, n));
        visit(join(dir, n), depth + 1);
      }
    };
    visit("/sys/fs/cgroup", 0);
    return found;
  }

  test("an image whose /dev is a symlink to /proc is refused: the /dev tmpfs would hide procfs and skip the masks; nothing is left behind", () => {
    const dir = devToProcBundle("dev-to-proc");
    configure(["sh", "-c", "echo RAN; cat /proc/sys/kernel/core_pattern"], undefined, dir);
    const id = `sec-${process.pid}-devproc`;
    const r = cli(["create", "--bundle", dir, id]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(
      `mount point /dev inside ${join(dir, "rootfs")} is on procfs (it resolves to /proc): a mount there would hide the kernel's own files: permission denied`,
    );
    expect(r.stderr).toContain("hint: a symlink in the root filesystem (such as /dev -> /proc)");
    // Nothing left: no state (only the cache of compiled seccomp filters), no cgroup, no mount.
    expect(readdirSync(root).filter((f) => f !== "@seccomp")).toEqual([]);
    expect(cgroupsNamed(id)).toEqual([]);
    expect(hostMountsUnder(work)).toEqual([]);
    // The same with run: the program never runs.
    const ran = run(["sh", "-c", "echo RAN"], undefined, dir);
    expect(ran.status).not.toBe(0);
    expect(ran.stdout).not.toContain("RAN");
    expect(ran.stderr).toContain("is on procfs");
  });

  test("a bind onto /proc/uptime (lxcfs's kind) works; onto /proc/sys/kernel/core_pattern or /proc/sysrq-trigger it is refused", () => {
    const fake = join(work, "fake-uptime");
    writeFileSync(fake, "4242.00 1.00\n");
    const ok = run(["cat", "/proc/uptime"], (s) => {
      s.mounts!.push({
        destination: "/proc/uptime",
        type: "bind",
        source: fake,
        options: ["bind", "ro"],
      });
    });
    expect({ status: ok.status, stdout: ok.stdout, stderr: ok.stderr }).toEqual({
      status: 0,
      stdout: "4242.00 1.00\n",
      stderr: "",
    });
    for (const dest of ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"]) {
      const r = run(["sh", "-c", "echo RAN"], (s) => {
        s.mounts!.push({ destination: dest, type: "bind", source: fake, options: ["bind"] });
      });
      expect(r.status).not.toBe(0);
      expect(r.stdout).not.toContain("RAN");
      if (!existsSync(dest)) {
        // A kernel without it (this VM's has no CONFIG_MAGIC_SYSRQ): nothing can be created there.
        expect(r.stderr).toContain(`create ${dest} inside`);
        continue;
      }
      expect(r.stderr).toContain(`mount point ${dest} inside`);
      expect(r.stderr).toContain(`is on procfs (it resolves to ${dest})`);
      expect(r.stderr).toContain("hint:");
    }
    expect(readFileSync(fake, "utf8")).toBe("4242.00 1.00\n");
    expect(hostMountsUnder(work)).toEqual([]);
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
    return runAsUser({ uid, gid }, [process.execPath, CLI, ...args], {
      env: { HOME: home, XDG_RUNTIME_DIR: xdg, PATH: process.env.PATH },
      cwd,
      timeoutMs: 30_000,
    });
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
      addCapability(s, "CAP_CHOWN");
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

  test("an id-mapped rbind,ro is read-only with its submounts, set on the copy before it is attached", () => {
    const dir = usernsBundle("idmap-ro-bundle");
    const data = join(work, "idmap-ro-data");
    mkdirSync(join(data, "sub"), { recursive: true });
    expect(
      spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", join(data, "sub")]).status,
    ).toBe(0);
    try {
      const r = run(
        [
          "sh",
          "-c",
          "for d in /data /data/sub; do if touch $d/f 2>/dev/null; then echo $d rw; else echo $d ro; fi; done",
        ],
        (s) => {
          inUserns(s);
          s.mounts!.push({
            destination: "/data",
            type: "bind",
            source: data,
            options: ["rbind", "ro", "idmap"],
          });
        },
        dir,
      );
      expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
        status: 0,
        stdout: "/data ro\n/data/sub ro\n",
        stderr: "",
      });
    } finally {
      spawnSync("umount", ["-l", join(data, "sub")]);
    }
    expect(hostMountsUnder(work)).toEqual([]);
  });

  test("an id-mapped bind of a shared host mount sends nothing back, whatever rootfsPropagation says: a mount made under it stays in the container", () => {
    const dir = usernsBundle("idmap-shared-bundle");
    const shared = join(work, "idmap-shared");
    mkdirSync(join(shared, "x"), { recursive: true });
    // A shared mount point of its own, as on a systemd host, whatever this host's / is.
    expect(spawnSync("mount", ["--bind", shared, shared]).status).toBe(0);
    expect(spawnSync("mount", ["--make-shared", shared]).status).toBe(0);
    // The host mount's peer group: the container's copy may receive from it, never belong to it.
    const hostLine = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((l) => l.split(" ")[4] === shared)!;
    const group = / shared:(\d+)/.exec(hostLine)![1];
    try {
      for (const rootfsPropagation of [
        undefined,
        "rslave",
        "slave",
        "shared",
        "rshared",
        "private",
      ]) {
        const r = run(
          [
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k inside /vol/x && grep ' /vol ' /proc/self/mountinfo",
          ],
          (s) => {
            inUserns(s);
            if (rootfsPropagation) s.linux!.rootfsPropagation = rootfsPropagation;
            // Root of its user namespace may mount a tmpfs in its own mount namespace.
            addCapability(s, "CAP_SYS_ADMIN");
            s.mounts!.push({
              destination: "/vol",
              type: "bind",
              source: shared,
              options: ["rbind", "idmap"],
            });
          },
          dir,
        );
        expect({ rootfsPropagation, stderr: r.stderr }).toEqual({ rootfsPropagation, stderr: "" });
        // The container's copy is a slave of the host's peer group, never a member of it (a
        // shared rootfsPropagation makes it shared too, in a peer group of the container's own).
        expect(r.stdout).toContain("idmapped");
        expect(r.stdout).toContain(` master:${group} `);
        expect(r.stdout).not.toContain(` shared:${group} `);
        expect({ rootfsPropagation, host: hostMountsUnder(shared) }).toEqual({
          rootfsPropagation,
          host: [shared],
        });
      }
    } finally {
      for (const m of hostMountsUnder(shared).reverse()) spawnSync("umount", ["-l", m]);
    }
    expect(hostMountsUnder(shared)).toEqual([]);
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
