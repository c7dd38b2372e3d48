import { describe, expect, test } from "bun:test";
import { ConfigError, NotSupportedError } from "../../src/errors.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Spec } from "../../src/oci/spec.ts";
import { parseConfig } from "../../src/oci/validate.ts";
import { MOUNT_ATTR, MS, PROC_BIND_DESTINATIONS, Rlimit } from "../../src/runtime/linux.ts";
import {
  bindAttributes,
  type ContainerPlanInput,
  capabilityMask,
  compileContainerPlan,
  compileExecPlan,
  type FileKind,
  parseMountOptions,
} from "../../src/runtime/plan.ts";
import { KernelFs, Op, SyncPoint } from "../../src/runtime/wire.ts";

function input(
  edit: (s: Spec) => void = () => {},
  files: Record<string, FileKind> = {},
): ContainerPlanInput {
  const spec = defaultSpec({ args: ["echo", "hi"] });
  spec.process!.terminal = false;
  edit(spec);
  return {
    spec,
    rootfs: "/b/rootfs",
    bundle: "/b",
    execFifo: "/run/x/exec.fifo",
    waitForInit: false,
    host: { kindOf: (p) => files[p] ?? "missing" },
  };
}

const ops = (plan: { steps: { op: number }[] }) => plan.steps.map((s) => s.op);

describe("container plan", () => {
  test("orders the process structure: launcher, setup child, init", () => {
    const plan = compileContainerPlan(input());
    const o = ops(plan);
    const fork = o.indexOf(Op.ForkSetup);
    const unshare = o.indexOf(Op.Unshare);
    const forkInit = o.indexOf(Op.ForkInit);
    const pivot = o.indexOf(Op.PivotRoot);
    const wait = o.indexOf(Op.WaitExecFifo);
    const exec = o.indexOf(Op.Exec);
    expect(o.indexOf(Op.MakeFifo)).toBeLessThan(fork);
    expect(fork).toBeLessThan(unshare);
    expect(unshare).toBeLessThan(forkInit);
    expect(forkInit).toBeLessThan(pivot);
    expect(pivot).toBeLessThan(wait);
    expect(wait).toBe(exec - 1);
    expect(exec).toBe(o.length - 1);
  });

  test("run (no exec fifo): the init waits at the Start sync point, then startContainer hooks, then exec", () => {
    const base = input();
    base.spec.hooks = { startContainer: [{ path: "/bin/hook" }] };
    const plan = compileContainerPlan({ ...base, execFifo: null, waitForInit: true });
    const o = ops(plan);
    expect(o).not.toContain(Op.MakeFifo);
    expect(o).not.toContain(Op.WaitExecFifo);
    const start = plan.steps.findIndex((s) => s.op === Op.Sync && s.args[0] === SyncPoint.Start);
    expect(start).toBeGreaterThan(o.indexOf(Op.PivotRoot));
    expect(o[start + 1]).toBe(Op.RunHook);
    expect(o[start + 2]).toBe(Op.Exec);
  });

  test("run with poststart hooks asks the launcher to report the exec; create and hookless runs do not", () => {
    const withHooks = input();
    withHooks.spec.hooks = { poststart: [{ path: "/bin/hook" }] };
    const run = { execFifo: null, waitForInit: true };
    expect(ops(compileContainerPlan({ ...withHooks, ...run }))).toContain(Op.ReportExec);
    expect(ops(compileContainerPlan(withHooks))).not.toContain(Op.ReportExec);
    expect(ops(compileContainerPlan({ ...input(), ...run }))).not.toContain(Op.ReportExec);
  });

  const setupSync = (plan: { steps: { op: number; args: unknown[] }[] }) =>
    plan.steps.findIndex((s) => s.op === Op.Sync && s.args[0] === SyncPoint.SetupChildCreated);

  test("the setup process joins its cgroups itself, before any namespace, and does not stop", () => {
    const plan = compileContainerPlan({
      ...input(),
      cgroupJoin: {
        selfJoin: ["/sys/fs/cgroup/memory/c", "/sys/fs/cgroup/pids/c"],
        createIn: "/sys/fs/cgroup/unified/c",
        byRuntime: [],
      },
    });
    const o = ops(plan);
    const fork = o.indexOf(Op.ForkSetup);
    expect(plan.steps[fork]!.args).toEqual([0, "/sys/fs/cgroup/unified/c"]);
    const joins = plan.steps.filter((s) => s.op === Op.JoinCgroup).map((s) => s.args);
    expect(joins).toEqual([["/sys/fs/cgroup/memory/c"], ["/sys/fs/cgroup/pids/c"]]);
    expect(o.indexOf(Op.JoinCgroup)).toBe(fork + 1);
    expect(o.lastIndexOf(Op.JoinCgroup)).toBeLessThan(o.indexOf(Op.Unshare));
    // Nothing is left for the runtime to do while the setup process runs.
    expect(setupSync(plan)).toBe(-1);
  });

  test("cgroups the process cannot join itself: the setup process waits for the runtime", () => {
    const plan = compileContainerPlan({
      ...input(),
      cgroupJoin: { selfJoin: [], byRuntime: ["/sys/fs/cgroup/c"] },
    });
    const o = ops(plan);
    expect(plan.steps[o.indexOf(Op.ForkSetup)]!.args).toEqual([0, ""]);
    expect(o).not.toContain(Op.JoinCgroup);
    expect(setupSync(plan)).toBeGreaterThan(o.indexOf(Op.ForkSetup));
    expect(setupSync(plan)).toBeLessThan(o.indexOf(Op.Unshare));
  });

  test("a new user namespace waits for its id maps, cgroups or not", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces!.push({ type: "user" });
        s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
        s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      }),
    );
    const sync = setupSync(plan);
    expect(sync).toBeGreaterThan(-1);
    expect(plan.steps[sync]!.text).toContain("writes id maps");
    expect(plan.steps[sync]!.text).not.toContain("cgroup");
  });

  test("creates the namespaces the config lists, in one unshare", () => {
    const plan = compileContainerPlan(input());
    const unshare = plan.steps.find((s) => s.op === Op.Unshare)!;
    // pid, network, ipc, uts, mount, cgroup
    expect(unshare.args[0]).toBe(
      0x20000000 | 0x40000000 | 0x08000000 | 0x04000000 | 0x00020000 | 0x02000000,
    );
  });

  test("a new network namespace gets its loopback brought up; a joined one is left as it is", () => {
    expect(ops(compileContainerPlan(input()))).toContain(Op.LoopbackUp);
    const joined = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces = [{ type: "mount" }, { type: "network", path: "/var/run/netns/x" }];
        delete s.hostname;
      }),
    );
    expect(ops(joined)).not.toContain(Op.LoopbackUp);
  });

  test("joins namespaces given by path instead of creating them", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces = [{ type: "mount" }, { type: "network", path: "/var/run/netns/x" }];
        delete s.hostname;
      }),
    );
    const join = plan.steps.find((s) => s.op === Op.JoinNamespace)!;
    expect(join.args).toEqual(["/var/run/netns/x", 0x40000000]);
    const unshare = plan.steps.find((s) => s.op === Op.Unshare)!;
    expect(unshare.args[0]).toBe(0x00020000);
  });

  test("a new user namespace: unshare user first, sync for maps, then become its root", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces!.push({ type: "user" });
        s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
        s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      }),
    );
    expect(plan.newUserNamespace).toBe(true);
    const o = ops(plan);
    const userUnshare = plan.steps.findIndex(
      (s) => s.op === Op.Unshare && s.args[0] === 0x10000000,
    );
    expect(userUnshare).toBeGreaterThan(-1);
    expect(o[userUnshare + 1]).toBe(Op.Sync);
    expect(o[userUnshare + 2]).toBe(Op.BecomeNamespaceRoot);
    // Devices cannot be created with mknod in a user namespace: they are bound from the host.
    expect(o).not.toContain(Op.MknodInRoot);
  });

  test("a user namespace without mappings is a config error", () => {
    expect(() =>
      compileContainerPlan(input((s) => s.linux!.namespaces!.push({ type: "user" }))),
    ).toThrow(ConfigError);
  });

  test("the root mount is made a slave before anything is mounted, and the rootfs bound onto itself", () => {
    const plan = compileContainerPlan(input());
    const firstMount = plan.steps.findIndex((s) => s.op === Op.Mount || s.op === Op.MountInRoot);
    const prop = plan.steps.findIndex((s) => s.op === Op.Propagation);
    expect(prop).toBeLessThan(firstMount);
    expect(plan.steps[prop]!.args).toEqual(["/", MS.SLAVE | MS.REC]);
    expect(plan.steps[firstMount]!.args).toEqual([
      "/b/rootfs",
      "/b/rootfs",
      "",
      MS.BIND | MS.REC,
      "",
    ]);
  });

  test("rprivate rootfsPropagation makes the root private instead", () => {
    const plan = compileContainerPlan(input((s) => (s.linux!.rootfsPropagation = "rprivate")));
    expect(plan.steps.find((s) => s.op === Op.Propagation)!.args).toEqual([
      "/",
      MS.PRIVATE | MS.REC,
    ]);
  });

  test("a shared or slave rootfsPropagation comes first, then the mount holding the rootfs is made private; --no-pivot stays rslave", () => {
    const props = (rootfsPropagation: string, noPivot = false) => {
      const base = input((s) => (s.linux!.rootfsPropagation = rootfsPropagation));
      const plan = compileContainerPlan({ ...base, noPivot });
      const firstMount = plan.steps.findIndex((s) => s.op === Op.Mount);
      return plan.steps
        .slice(0, firstMount)
        .filter((s) => s.op === Op.Propagation || s.op === Op.PrivateMountOf)
        .map((s) => [s.op === Op.Propagation ? "propagation" : "private mount of", ...s.args]);
    };
    expect(props("rshared")).toEqual([
      ["propagation", "/", MS.SHARED | MS.REC],
      ["private mount of", "/b/rootfs"],
    ]);
    expect(props("shared")).toEqual([
      ["propagation", "/", MS.SHARED],
      ["private mount of", "/b/rootfs"],
    ]);
    expect(props("slave")).toEqual([
      ["propagation", "/", MS.SLAVE],
      ["private mount of", "/b/rootfs"],
    ]);
    expect(props("rslave")).toEqual([["propagation", "/", MS.SLAVE | MS.REC]]);
    expect(props("rshared", true)).toEqual([["propagation", "/", MS.SLAVE | MS.REC]]);
  });

  test("mounts are resolved inside the root, with flags and data split", () => {
    const plan = compileContainerPlan(input());
    const dev = plan.steps.find((s) => s.op === Op.MountInRoot && s.args[1] === "/dev")!;
    expect(dev.args).toEqual([
      "/b/rootfs",
      "/dev",
      "tmpfs",
      "tmpfs",
      MS.NOSUID | MS.STRICTATIME,
      "mode=755,size=65536k",
      // Not on procfs nor sysfs: an image's /dev -> /proc is refused by the launcher.
      0,
    ]);
  });

  test("destinations with .. cannot climb above the root", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.mounts!.push({ destination: "/../../etc/x", type: "tmpfs", source: "tmpfs" });
      }, {}),
    );
    expect(plan.steps.some((s) => s.op === Op.MountInRoot && s.args[1] === "/etc/x")).toBe(true);
  });

  test("a read-only bind is one step: its destination is resolved once, no remount by path follows", () => {
    const plan = compileContainerPlan(
      input(
        (s) => {
          s.mounts!.push(
            {
              destination: "/etc/hosts",
              type: "bind",
              source: "hosts",
              options: ["bind", "ro", "nosuid"],
            },
            {
              destination: "/data",
              type: "bind",
              source: "/srv/data",
              options: ["rbind", "ro", "noatime", "rprivate"],
            },
          );
        },
        { "/b/hosts": "file", "/srv/data": "directory" },
      ),
    );
    const i = plan.steps.findIndex((s) => s.op === Op.BindInRoot && s.args[2] === "/b/hosts");
    expect(plan.steps[i - 1]!.op).toBe(Op.TouchInRoot);
    // (rootfs, dest, source, recursive, attributes set, cleared, kernel filesystems allowed)
    expect(plan.steps[i]!.args).toEqual([
      "/b/rootfs",
      "/etc/hosts",
      "/b/hosts",
      0,
      MOUNT_ATTR.RDONLY | MOUNT_ATTR.NOSUID,
      0,
      0,
    ]);
    expect(plan.steps[i]!.text).toBe("bind /b/hosts on /etc/hosts (ro,nosuid)");
    // Recursive: the attributes reach the submounts (AT_RECURSIVE); the propagation is set
    // through the same fd, after the attach.
    const data = plan.steps.find((s) => s.op === Op.BindInRoot && s.args[1] === "/data")!;
    expect(data.args).toEqual([
      "/b/rootfs",
      "/data",
      "/srv/data",
      1,
      MOUNT_ATTR.RDONLY | MOUNT_ATTR.NOATIME,
      MOUNT_ATTR._ATIME,
      0,
      MS.PRIVATE | MS.REC,
    ]);
    expect(data.text).toBe(
      "bind /srv/data on /data with its submounts (ro,noatime, submounts too), then make it rprivate",
    );
    // Nothing else names either destination after its bind: no second lookup of the path.
    for (const dest of ["/etc/hosts", "/data"]) {
      const bind = plan.steps.findIndex((s) => s.op === Op.BindInRoot && s.args[1] === dest);
      const later = plan.steps.slice(bind + 1).filter((s) => s.args[1] === dest);
      expect(later).toEqual([]);
    }
    expect(
      plan.steps.some((s) => (Number(s.args[4]) & MS.REMOUNT) !== 0 && s.args[1] !== "/"),
    ).toBe(false);
  });

  test("bind attributes are added to the source's, never cleared; an atime mode replaces the source's", () => {
    expect(bindAttributes(0)).toEqual({ set: 0, clear: 0 });
    const rw = parseMountOptions(["rbind", "rw", "suid", "dev", "exec", "nodev"]).flags;
    expect(bindAttributes(rw)).toEqual({ set: MOUNT_ATTR.NODEV, clear: 0 });
    expect(bindAttributes(MS.RELATIME)).toEqual({
      set: MOUNT_ATTR.RELATIME,
      clear: MOUNT_ATTR._ATIME,
    });
    expect(bindAttributes(MS.NOATIME | MS.STRICTATIME | MS.NOEXEC)).toEqual({
      set: MOUNT_ATTR.STRICTATIME | MOUNT_ATTR.NOEXEC,
      clear: MOUNT_ATTR._ATIME,
    });
  });

  test("mounts may land on procfs or sysfs only where the policy says: fresh proc and sysfs, lxcfs's files, the config's own /sys", () => {
    const plan = compileContainerPlan(
      input(
        (s) => {
          s.mounts!.push(
            { destination: "/proc/uptime", type: "bind", source: "/l/uptime", options: ["bind"] },
            {
              destination: "/proc/sys/kernel/core_pattern",
              type: "bind",
              source: "/l/uptime",
              options: ["bind"],
            },
            { destination: "/proc/sysrq-trigger", type: "bind", source: "/l/uptime" },
            { destination: "/sys/fs/bpf", type: "bind", source: "/srv/data", options: ["rbind"] },
            { destination: "/proc/meminfo", type: "tmpfs", source: "tmpfs" },
          );
        },
        { "/l/uptime": "file", "/srv/data": "directory" },
      ),
    );
    // Per step on the destination: "mkdir"/"touch", or the KernelFs bits the mount allows.
    const allowed = (dest: string) =>
      plan.steps
        .filter((s) => s.args[1] === dest)
        .map((s) =>
          s.op === Op.MkdirInRoot ? "mkdir" : s.op === Op.TouchInRoot ? "touch" : s.args[6],
        );
    expect(allowed("/proc")).toEqual(["mkdir", KernelFs.Proc | KernelFs.Sys]);
    expect(allowed("/sys")).toEqual(["mkdir", KernelFs.Proc | KernelFs.Sys]);
    expect(allowed("/proc/uptime")).toEqual(["touch", KernelFs.Proc]);
    expect(allowed("/proc/sys/kernel/core_pattern")).toEqual(["touch", 0]);
    expect(allowed("/proc/sysrq-trigger")).toEqual(["touch", 0]);
    expect(allowed("/sys/fs/bpf")).toEqual(["mkdir", KernelFs.Sys]);
    expect(allowed("/sys/fs/cgroup")).toEqual(["mkdir", KernelFs.Sys]);
    expect(allowed("/dev")).toEqual(["mkdir", 0]);
    expect(allowed("/dev/pts")).toEqual(["mkdir", 0]);
    // The list is for binds (lxcfs): a tmpfs there would hide the file's procfs directory entry.
    expect(allowed("/proc/meminfo")).toEqual(["mkdir", 0]);
    for (const p of ["/proc/cpuinfo", "/proc/meminfo", "/proc/uptime", "/proc/loadavg"])
      expect(PROC_BIND_DESTINATIONS.has(p)).toBe(true);
  });

  test("a missing bind source is reported with its JSON path", () => {
    expect(() =>
      compileContainerPlan(
        input((s) =>
          s.mounts!.push({
            destination: "/data",
            type: "bind",
            source: "/nope",
            options: ["bind"],
          }),
        ),
      ),
    ).toThrow(/mounts\[7\]\.source/);
  });

  test("default devices and /dev links are created when /dev is a fresh tmpfs", () => {
    const plan = compileContainerPlan(input());
    const nodes = plan.steps.filter((s) => s.op === Op.MknodInRoot).map((s) => s.args[1]);
    expect(nodes.sort()).toEqual([
      "/dev/full",
      "/dev/null",
      "/dev/random",
      "/dev/tty",
      "/dev/urandom",
      "/dev/zero",
    ]);
    const links = plan.steps
      .filter((s) => s.op === Op.SymlinkInRoot)
      .map((s) => `${s.args[1]}->${s.args[2]}`);
    expect(links).toContain("/dev/ptmx->pts/ptmx");
    expect(links).toContain("/dev/fd->/proc/self/fd");
  });

  test("tmpcopyup: the directory is opened before the tmpfs covers it, copied after", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.mounts!.push({
          destination: "/etc",
          type: "tmpfs",
          source: "tmpfs",
          options: ["nosuid", "tmpcopyup", "size=1m"],
        });
      }),
    );
    const at = (op: number) => plan.steps.findIndex((s) => s.op === op && s.args.includes("/etc"));
    const mount = plan.steps.find((s) => s.op === Op.MountInRoot && s.args[1] === "/etc")!;
    expect(mount.args[5]).toBe("size=1m");
    expect(at(Op.OpenDirInRoot)).toBeGreaterThan(at(Op.MkdirInRoot));
    expect(at(Op.OpenDirInRoot)).toBeLessThan(plan.steps.indexOf(mount));
    expect(at(Op.CopyDirInRoot)).toBe(plan.steps.indexOf(mount) + 1);
  });

  test("a device fileMode with type bits (podman sends S_IFCHR|0644) keeps the permissions", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.devices = [
          { path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o20644 },
        ];
      }),
    );
    const node = plan.steps.find((s) => s.op === Op.MknodInRoot && s.args[1] === "/dev/fuse")!;
    expect(node.args[2]).toBe(0o20644);
    // ... and validation accepts it.
    const spec = defaultSpec({ args: ["true"] });
    spec.linux!.devices = [
      { path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o20644 },
    ];
    expect(() => parseConfig(JSON.stringify(spec), "config.json")).not.toThrow();
  });

  test("masked and read-only paths come after pivot_root", () => {
    const plan = compileContainerPlan(input());
    const pivot = plan.steps.findIndex((s) => s.op === Op.PivotRoot);
    const mask = plan.steps.findIndex((s) => s.op === Op.MaskPath);
    const ro = plan.steps.findIndex((s) => s.op === Op.ReadonlyPath);
    expect(mask).toBeGreaterThan(pivot);
    expect(ro).toBeGreaterThan(pivot);
  });

  test("a read-only root is remounted read-only", () => {
    const plan = compileContainerPlan(input((s) => (s.root!.readonly = true)));
    expect(
      plan.steps.some(
        (s) =>
          s.op === Op.MountInRoot && s.args[1] === "/" && (Number(s.args[4]) & MS.RDONLY) !== 0,
      ),
    ).toBe(true);
  });

  test("--no-pivot moves the root instead of pivot_root", () => {
    const plan = compileContainerPlan({ ...input(), noPivot: true });
    expect(ops(plan)).toContain(Op.MoveRoot);
    expect(ops(plan)).not.toContain(Op.PivotRoot);
  });

  test("hooks: prestart/createRuntime at the BeforePivot sync, createContainer before pivot, startContainer after the fifo", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.hooks = {
          createContainer: [{ path: "/bin/cc" }],
          startContainer: [{ path: "/bin/sc", args: ["sc", "x"], timeout: 5 }],
        };
      }),
    );
    const o = ops(plan);
    const sync2 = plan.steps.findIndex(
      (s) => s.op === Op.Sync && s.args[0] === SyncPoint.BeforePivot,
    );
    const cc = plan.steps.findIndex((s) => s.op === Op.RunHook && s.args[1] === "/bin/cc");
    const sc = plan.steps.findIndex((s) => s.op === Op.RunHook && s.args[1] === "/bin/sc");
    expect(sync2).toBeLessThan(cc);
    expect(cc).toBeLessThan(o.indexOf(Op.PivotRoot));
    expect(sc).toBeGreaterThan(o.indexOf(Op.WaitExecFifo));
    expect(plan.steps[sc]!.args).toEqual([5, "/bin/sc", 2, "sc", "x"]);
  });

  test("credentials: bounding set before the user switch, capabilities after, exec last", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.process!.user = { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 0o22 };
      }),
    );
    const o = ops(plan);
    expect(o.indexOf(Op.SetBoundingSet)).toBeLessThan(o.indexOf(Op.SetUser));
    expect(o.indexOf(Op.SetGroups)).toBeLessThan(o.indexOf(Op.SetUser));
    expect(o.indexOf(Op.SetUser)).toBeLessThan(o.indexOf(Op.SetCapabilities));
    expect(plan.steps.find((s) => s.op === Op.SetGroups)!.args).toEqual([10, 20]);
    expect(plan.steps.find((s) => s.op === Op.SetUser)!.args).toEqual([1000, 1000]);
    expect(plan.steps.find((s) => s.op === Op.Umask)!.args).toEqual([0o22]);
  });

  test("ambient capabilities are limited to permitted and inheritable ones", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.process!.capabilities = {
          permitted: ["CAP_KILL", "CAP_CHOWN"],
          inheritable: ["CAP_KILL"],
          ambient: ["CAP_KILL", "CAP_CHOWN"],
        };
      }),
    );
    const caps = plan.steps.find((s) => s.op === Op.SetCapabilities)!;
    expect(caps.args[3]).toBe(1n << 5n);
  });

  test("an unknown capability names the field", () => {
    expect(() =>
      compileContainerPlan(input((s) => (s.process!.capabilities!.bounding = ["CAP_FLY"]))),
    ).toThrow(/process\.capabilities\.bounding\[0\]: unknown capability "CAP_FLY"/);
  });

  test("the program is looked up in the container's PATH before reporting ready", () => {
    const plan = compileContainerPlan(input((s) => (s.process!.env = ["PATH=/opt/bin:/bin"])));
    const find = plan.steps.find((s) => s.op === Op.FindExecutable)!;
    expect(find.args).toEqual(["echo", "/opt/bin:/bin"]);
    expect(ops(plan).indexOf(Op.FindExecutable)).toBeLessThan(ops(plan).indexOf(Op.WaitExecFifo));
  });

  test("run mode asks the launcher to wait for init", () => {
    expect(ops(compileContainerPlan({ ...input(), waitForInit: true }))[0]).toBe(Op.WaitForInit);
    expect(ops(compileContainerPlan(input()))).not.toContain(Op.WaitForInit);
  });

  test("unmountAfterExit: a launcher step before the setup process, only when it waits for init", () => {
    const run = compileContainerPlan({
      ...input(),
      waitForInit: true,
      unmountAfterExit: "/m/merged",
    });
    const step = run.steps.find((s) => s.op === Op.UnmountAfterExit)!;
    expect(step.args).toEqual(["/m/merged", 8]); // UMOUNT_NOFOLLOW
    expect(ops(run).indexOf(Op.UnmountAfterExit)).toBeLessThan(ops(run).indexOf(Op.ForkSetup));
    const create = compileContainerPlan({ ...input(), unmountAfterExit: "/m/merged" });
    expect(ops(create)).not.toContain(Op.UnmountAfterExit);
  });

  test("a terminal needs a console socket", () => {
    expect(() => compileContainerPlan(input((s) => (s.process!.terminal = true)))).toThrow(
      /console-socket/,
    );
    const plan = compileContainerPlan({
      ...input((s) => (s.process!.terminal = true)),
      consoleSocket: "/tmp/c.sock",
    });
    expect(ops(plan)).toContain(Op.ConnectSocket);
    expect(ops(plan)).toContain(Op.SetupTerminal);
  });

  test("hostname needs a uts namespace", () => {
    expect(() =>
      compileContainerPlan(input((s) => (s.linux!.namespaces = [{ type: "mount" }]))),
    ).toThrow(/uts namespace/);
  });

  test("an unlimited rlimit (2^64-1 in the config) is RLIM_INFINITY for setrlimit", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.process!.rlimits = [
          { type: "RLIMIT_CORE", soft: 2 ** 64, hard: 2 ** 64 },
          { type: "RLIMIT_NOFILE", soft: 512, hard: 1024 },
        ];
      }),
    );
    const steps = plan.steps.filter((st) => st.op === Op.SetRlimit);
    expect(steps.map((st) => st.args)).toEqual([
      [Rlimit.RLIMIT_CORE!, -1n, -1n],
      [Rlimit.RLIMIT_NOFILE!, 512n, 1024n],
    ]);
    expect(steps[0]!.text).toBe("setrlimit RLIMIT_CORE soft unlimited hard unlimited");
  });

  test("sysctl keys become /proc/sys paths", () => {
    const plan = compileContainerPlan(
      input((s) => (s.linux!.sysctl = { "net.ipv4.ip_forward": "1" })),
    );
    expect(plan.steps.find((s) => s.op === Op.WriteFile)!.args).toEqual([
      "/proc/sys/net/ipv4/ip_forward",
      "1",
    ]);
  });

  test("unknown rlimits are config errors", () => {
    expect(() =>
      compileContainerPlan(
        input((s) => (s.process!.rlimits = [{ type: "RLIMIT_FOO", soft: 1, hard: 1 }])),
      ),
    ).toThrow(/process\.rlimits\[0\]\.type/);
  });

  test("recursive mount attributes are refused clearly, not ignored", () => {
    expect(() =>
      compileContainerPlan(
        input((s) =>
          s.mounts!.push({ destination: "/x", type: "tmpfs", source: "tmpfs", options: ["rro"] }),
        ),
      ),
    ).toThrow(NotSupportedError);
  });

  test("without a mount namespace, mounts and a read-only root are left out with warnings; the process is chrooted", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces = [{ type: "pid" }];
        delete s.hostname;
        s.root!.readonly = true;
      }),
    );
    const o = ops(plan);
    expect(o).not.toContain(Op.MountInRoot);
    expect(o).not.toContain(Op.PivotRoot);
    expect(plan.steps.find((s) => s.op === Op.Chroot)!.args).toEqual(["/b/rootfs"]);
    expect(plan.warnings.join("\n")).toMatch(/mounts: ignored.*\n.*root\.readonly: ignored/);
  });

  test("a mount namespace joined by path gets the root filesystem set up in it", () => {
    const plan = compileContainerPlan(
      input((s) => {
        s.linux!.namespaces = [{ type: "mount", path: "/proc/42/ns/mnt" }, { type: "uts" }];
      }),
    );
    expect(ops(plan)).toContain(Op.PivotRoot);
    expect(plan.warnings).toEqual([]);
  });

  test("every step has a description for people", () => {
    for (const step of compileContainerPlan(input()).steps)
      expect(step.text.length).toBeGreaterThan(3);
  });
});

describe("exec plan", () => {
  test("joins the container's namespaces, user first and mount last", () => {
    const spec = defaultSpec({ args: ["ps"] });
    const plan = compileExecPlan({
      initPid: 42,
      namespaces: ["pid", "mount", "network", "user"],
      process: { ...spec.process!, terminal: false },
      waitForExit: true,
    });
    const joins = plan.steps.filter((s) => s.op === Op.JoinNamespace).map((s) => s.args[0]);
    expect(joins).toEqual([
      "/proc/42/ns/user",
      "/proc/42/ns/net",
      "/proc/42/ns/pid",
      "/proc/42/ns/mnt",
    ]);
    expect(ops(plan)).not.toContain(Op.WaitExecFifo);
    expect(ops(plan).at(-1)).toBe(Op.Exec);
  });

  test("joins the container's cgroups before its namespaces", () => {
    const spec = defaultSpec({ args: ["ps"] });
    const plan = compileExecPlan({
      initPid: 42,
      namespaces: ["pid", "mount", "cgroup"],
      process: { ...spec.process!, terminal: false },
      waitForExit: true,
      cgroupJoin: {
        selfJoin: ["/sys/fs/cgroup/memory/c"],
        createIn: "/sys/fs/cgroup/unified/c",
        byRuntime: [],
      },
    });
    const o = ops(plan);
    expect(plan.steps[o.indexOf(Op.ForkSetup)]!.args).toEqual([0, "/sys/fs/cgroup/unified/c"]);
    expect(o.indexOf(Op.JoinCgroup)).toBeLessThan(o.indexOf(Op.JoinNamespace));
    expect(o).not.toContain(Op.Sync);
  });
});

describe("mount options", () => {
  test("flags, clearing flags, propagation and data", () => {
    const o = parseMountOptions(["ro", "nosuid", "suid", "rslave", "size=1m", "mode=755"]);
    expect(o.flags).toBe(MS.RDONLY);
    expect(o.propagation).toEqual([MS.SLAVE | MS.REC]);
    expect(o.data).toEqual(["size=1m", "mode=755"]);
  });
});

test("capability masks", () => {
  expect(capabilityMask(["CAP_CHOWN", "cap_kill"], "x")).toBe(1n | (1n << 5n));
  expect(capabilityMask(undefined, "x")).toBe(0n);
});
