// --ulimit, --device, --sysctl, --shm-size, --pid/--ipc/--uts, --cpuset-*, --oom-score-adj,
// --group-add: parsing, and what each adds to the engine's OCI config (pure, no containers).
import { describe, expect, test } from "bun:test";
import {
  buildSpec,
  ContainerConfigError,
  resolveUser,
  type SpecInput,
} from "../../src/engine/config.ts";
import {
  applyProcessOptions,
  type HostCpusets,
  type HostDevice,
  parseDeviceFlag,
  parseNamespaceMode,
  parsePidMode,
  parseSysctlFlag,
  parseUlimitFlag,
} from "../../src/engine/process-options.ts";
import type { ContainerOptions } from "../../src/engine/types.ts";
import { resourcePatch } from "../../src/engine/update.ts";

/**
 * The engine's config for OPTIONS, with --device nodes from `devices` instead of the host, on a
 * host of CPUs 0-3 and memory node 0.
 */
function specWith(
  options: Omit<ContainerOptions, "image">,
  devices: HostDevice[] = [],
  host: HostCpusets = { cpus: "0-3", mems: "0" },
) {
  const input: SpecInput = {
    imageConfig: { Cmd: ["sh"] },
    options: { image: "img", ...options },
    id: "0123456789abcdef".repeat(4),
    user: { uid: 0, gid: 0, additionalGids: [], home: "/root" },
    rootfs: "merged",
    etcFiles: { hosts: "/c/hosts", hostname: "/c/hostname", resolvConf: "/c/resolv.conf" },
    mounts: [],
    security: { noNewPrivileges: false, seccomp: "unconfined" },
  };
  const spec = buildSpec(input);
  applyProcessOptions(
    spec,
    input.options,
    (hostPath) => devices.filter((d) => d.path === hostPath || d.path.startsWith(`${hostPath}/`)),
    () => host,
  );
  return spec;
}

function configError(f: () => unknown): ContainerConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ContainerConfigError) return err;
    throw err;
  }
  throw new Error("expected a ContainerConfigError");
}

describe("--ulimit", () => {
  test("NAME=SOFT[:HARD], -1 unlimited, as rlimits (unlimited is 2^64-1 in the config)", () => {
    expect(parseUlimitFlag("nofile=1024:2048")).toEqual({ name: "nofile", soft: 1024, hard: 2048 });
    expect(parseUlimitFlag("nproc=50")).toEqual({ name: "nproc", soft: 50, hard: 50 });
    const spec = specWith({
      ulimits: [parseUlimitFlag("nofile=10:20"), parseUlimitFlag("core=-1")],
    });
    expect(spec.process!.rlimits).toEqual([
      { type: "RLIMIT_NOFILE", soft: 10, hard: 20 },
      { type: "RLIMIT_CORE", soft: 2 ** 64, hard: 2 ** 64 },
    ]);
    // What a runtime reads back: the uint64 text.
    expect(JSON.stringify(spec.process!.rlimits![1])).toContain("18446744073709552000");
  });

  test("unknown names, bad numbers and a soft limit above the hard one are refused", () => {
    expect(configError(() => parseUlimitFlag("files=1")).hint).toContain("nofile");
    expect(() => parseUlimitFlag("nofile=a")).toThrow(ContainerConfigError);
    expect(configError(() => parseUlimitFlag("nofile=20:10")).message).toContain(
      "the soft limit must not be above the hard one",
    );
    expect(parseUlimitFlag("core=100:-1")).toEqual({ name: "core", soft: 100, hard: -1 });
    expect(() => parseUlimitFlag("core=-1:100")).toThrow(ContainerConfigError);
  });
});

describe("--device", () => {
  const loop: HostDevice = {
    path: "/dev/loop-control",
    type: "c",
    major: 10,
    minor: 237,
    mode: 0o600,
    uid: 0,
    gid: 0,
  };
  const snd = [
    { path: "/dev/snd/controlC0", type: "c", major: 116, minor: 0, mode: 0o660, uid: 0, gid: 29 },
    { path: "/dev/snd/pcmC0D0p", type: "c", major: 116, minor: 16, mode: 0o660, uid: 0, gid: 29 },
  ] satisfies HostDevice[];

  test("HOST[:CONTAINER][:PERMISSIONS]", () => {
    expect(parseDeviceFlag("/dev/fuse")).toEqual({
      hostPath: "/dev/fuse",
      containerPath: "/dev/fuse",
      permissions: "rwm",
    });
    expect(parseDeviceFlag("/dev/sdb:/dev/xvdc:r")).toEqual({
      hostPath: "/dev/sdb",
      containerPath: "/dev/xvdc",
      permissions: "r",
    });
    expect(parseDeviceFlag("/dev/sdb:rw").permissions).toBe("rw");
    for (const bad of ["dev/fuse", "/dev/a:b", "/a:/b:/c", "/a:/b:rwx"])
      expect(() => parseDeviceFlag(bad)).toThrow(ContainerConfigError);
  });

  test("a node: linux.devices and a cgroup rule with its permissions, after the deny-all", () => {
    const spec = specWith({ devices: [parseDeviceFlag("/dev/loop-control:/dev/lc:r")] }, [loop]);
    expect(spec.linux!.devices).toEqual([
      { type: "c", path: "/dev/lc", major: 10, minor: 237, fileMode: 0o600, uid: 0, gid: 0 },
    ]);
    expect(spec.linux!.resources!.devices).toEqual([
      { allow: false, access: "rwm" },
      { allow: true, type: "c", major: 10, minor: 237, access: "r" },
    ]);
  });

  test("a directory: every device below it, under the container path", () => {
    const spec = specWith({ devices: [parseDeviceFlag("/dev/snd:/dev/sound")] }, snd);
    expect(spec.linux!.devices!.map((d) => d.path)).toEqual([
      "/dev/sound/controlC0",
      "/dev/sound/pcmC0D0p",
    ]);
    expect(spec.linux!.resources!.devices!.filter((r) => r.allow).length).toBe(2);
  });
});

describe("--sysctl", () => {
  test("NAME=VALUE (slashes as dots), checked against the container's namespaces", () => {
    expect(parseSysctlFlag("net.ipv4.ip_forward=1")).toEqual(["net.ipv4.ip_forward", "1"]);
    expect(parseSysctlFlag("net/ipv4/ping_group_range=0 0")).toEqual([
      "net.ipv4.ping_group_range",
      "0 0",
    ]);
    expect(() => parseSysctlFlag("=1")).toThrow(ContainerConfigError);
    expect(() => parseSysctlFlag("net..x=1")).toThrow(ContainerConfigError);
    const spec = specWith({ sysctls: { "net.ipv4.ip_forward": "1", "kernel.shmmax": "1024" } });
    expect(spec.linux!.sysctl).toEqual({ "net.ipv4.ip_forward": "1", "kernel.shmmax": "1024" });
  });

  test("the host kernel's sysctls, and a namespace shared with the host, are refused", () => {
    expect(configError(() => specWith({ sysctls: { "vm.swappiness": "1" } })).message).toContain(
      "would change the host's kernel",
    );
    expect(
      configError(() => specWith({ network: "host", sysctls: { "net.ipv4.ip_forward": "1" } }))
        .message,
    ).toContain("network namespace, which this container shares with the host");
    expect(
      configError(() => specWith({ ipc: "host", sysctls: { "kernel.shmmax": "1" } })).message,
    ).toContain("ipc namespace");
  });
});

describe("namespaces, /dev/shm, cpusets, oom_score_adj", () => {
  const types = (spec: ReturnType<typeof specWith>) => spec.linux!.namespaces!.map((n) => n.type);

  test("--pid/--ipc/--uts host leave the namespace out; --uts host drops the hostname field", () => {
    expect(types(specWith({}))).toEqual(["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    const spec = specWith({ pid: "host", ipc: "host", uts: "host" });
    expect(types(spec)).toEqual(["network", "mount", "cgroup"]);
    expect(spec.hostname).toBeUndefined();
    // The host's POSIX shared memory with its IPC namespace, as Docker binds it.
    expect(spec.mounts!.find((m) => m.destination === "/dev/shm")).toEqual({
      destination: "/dev/shm",
      type: "bind",
      source: "/dev/shm",
      options: ["rbind", "rprivate"],
    });
    expect(parseNamespaceMode("pid", "private")).toBe("private");
    expect(parsePidMode("container:db")).toBe("container:db");
    expect(parsePidMode("host")).toBe("host");
    expect(() => parsePidMode("container:")).toThrow(ContainerConfigError);
    expect(configError(() => parseNamespaceMode("ipc", "container:db")).message).toContain(
      "not supported yet",
    );
    // Joined at start (its path then): a PID namespace entry of its own until then.
    expect(types(specWith({ pid: "container:db" }))).toContain("pid");
    expect(() => parseNamespaceMode("ipc", "shareable")).toThrow(ContainerConfigError);
  });

  test("--shm-size sets the /dev/shm tmpfs's size; not with --ipc host", () => {
    const shm = specWith({ shmSize: "16m" }).mounts!.find((m) => m.destination === "/dev/shm");
    expect(shm?.options).toContain(`size=${16 * 1024 * 1024}`);
    expect(shm?.options?.filter((o) => o.startsWith("size="))).toHaveLength(1);
    expect(() => specWith({ shmSize: "16m", ipc: "host" })).toThrow(/--ipc host/);
    expect(() => specWith({ shmSize: "0" })).toThrow(ContainerConfigError);
  });

  test("--cpuset-cpus/--cpuset-mems join the cpu resources; --oom-score-adj the process", () => {
    const spec = specWith({ cpus: 0.5, cpusetCpus: "0-1,3", cpusetMems: "0", oomScoreAdj: -500 });
    expect(spec.linux!.resources!.cpu).toEqual({
      period: 100000,
      quota: 50000,
      cpus: "0-1,3",
      mems: "0",
    });
    expect(spec.process!.oomScoreAdj).toBe(-500);
    expect(() => specWith({ cpusetCpus: "0-" })).toThrow(/--cpuset-cpus/);
    // What the host does not have, as Docker refuses it.
    expect(() => specWith({ cpusetCpus: "2-5" })).toThrow(
      "--cpuset-cpus 2-5: CPUs 4,5 are not available",
    );
    expect(() => specWith({ cpusetMems: "1" })).toThrow("--cpuset-mems 1: memory node 1 is not");
    expect(() => specWith({ cpusetCpus: "7" }, [], { cpus: null, mems: null })).not.toThrow();
    expect(() => specWith({ oomScoreAdj: 1001 })).toThrow(/--oom-score-adj/);
  });

  test("--group-add: names from the image's /etc/group, and ids", () => {
    const group = "root:x:0:\naudio:x:29:app\nvideo:x:44:\n";
    const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    expect(resolveUser("app", passwd, group, ["video", "4242"]).additionalGids).toEqual([
      29, 44, 4242,
    ]);
    expect(() => resolveUser("app", passwd, group, ["nosuch"])).toThrow(
      /unable to find group nosuch/,
    );
  });
});

describe("pivot update's resources", () => {
  test("the same linux.resources fields as run's flags, without device rules", () => {
    expect(resourcePatch({ cpus: 2, memory: "64m" })).toEqual({
      memory: { limit: 64 * 1024 * 1024 },
      cpu: { period: 100000, quota: 200000 },
    });
    expect(resourcePatch({ cpusetCpus: "0", pidsLimit: 7 })).toEqual({
      cpu: { cpus: "0" },
      pids: { limit: 7 },
    });
    expect(resourcePatch({ restart: { policy: "always" } })).toEqual({});
    expect(() => resourcePatch({ cpus: 0 })).toThrow(/--cpus/);
  });
});
