// The engine's config building: pure functions from image config and options to an OCI config.
import { describe, expect, test } from "bun:test";
import {
  ALL_CAPABILITIES,
  boundingCapabilities,
  buildSpec,
  DEFAULT_CAPABILITIES,
  hostsFile,
  mergeEnv,
  ociMount,
  ociResources,
  parseEnvFile,
  parseMountFlag,
  parseSecurityOpts,
  parseSize,
  parseTmpfsFlag,
  parseVolumeFlag,
  resolvConf,
  resolveArgs,
  resolveCapabilities,
  resolveUser,
  type SpecInput,
} from "../../src/engine/config.ts";
import { formatLogLines, logTimestamp, parseLogLine } from "../../src/engine/monitor.ts";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "app:x:1000:1000:App:/home/app:/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
].join("\n");
const GROUP = [
  "root:x:0:",
  "app:x:1000:",
  "audio:x:29:app",
  "video:x:44:app,root",
  "staff:x:50:",
].join("\n");

describe("resolveArgs: Docker's entrypoint and cmd rules", () => {
  const image = { Entrypoint: ["/entry"], Cmd: ["--default"] };
  test("image defaults", () => {
    expect(resolveArgs(image, { image: "x" })).toEqual(["/entry", "--default"]);
  });
  test("a command replaces Cmd only", () => {
    expect(resolveArgs(image, { image: "x", cmd: ["--mine"] })).toEqual(["/entry", "--mine"]);
  });
  test("--entrypoint replaces the entrypoint and drops the image's Cmd", () => {
    expect(resolveArgs(image, { image: "x", entrypoint: "sh" })).toEqual(["sh"]);
    expect(resolveArgs(image, { image: "x", entrypoint: "sh", cmd: ["-c", "true"] })).toEqual([
      "sh",
      "-c",
      "true",
    ]);
  });
  test("an empty --entrypoint clears it", () => {
    expect(resolveArgs(image, { image: "x", entrypoint: "", cmd: ["ls"] })).toEqual(["ls"]);
  });
  test("nothing to run is an error with a hint", () => {
    expect(() => resolveArgs({}, { image: "x" })).toThrow(/no command specified/);
  });
});

describe("environment", () => {
  test("later layers replace earlier keys in place; bare keys come from the lookup", () => {
    expect(
      mergeEnv(
        [
          ["PATH=/bin", "A=1"],
          ["A=2", "B=x=y", "FROMHOST", "MISSING"],
        ],
        (k) => (k === "FROMHOST" ? "h" : undefined),
      ),
    ).toEqual(["PATH=/bin", "A=2", "B=x=y", "FROMHOST=h"]);
  });
  test("env files: comments and blank lines skipped", () => {
    expect(parseEnvFile("# c\nA=1\n\n  B=two words\r\nC\n")).toEqual(["A=1", "B=two words", "C"]);
  });
});

describe("resolveUser: names from the image's /etc/passwd and /etc/group", () => {
  test("default root", () => {
    expect(resolveUser(undefined, PASSWD, GROUP)).toEqual({
      uid: 0,
      gid: 0,
      additionalGids: [44],
      home: "/root",
    });
  });
  test("a name gives uid, primary gid, supplementary groups and home", () => {
    expect(resolveUser("app", PASSWD, GROUP)).toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [29, 44],
      home: "/home/app",
    });
  });
  test("user:group by names and numbers", () => {
    expect(resolveUser("app:staff", PASSWD, GROUP)).toMatchObject({ uid: 1000, gid: 50 });
    expect(resolveUser("1000:7", PASSWD, GROUP)).toMatchObject({ uid: 1000, gid: 7 });
    expect(resolveUser("4242", PASSWD, GROUP)).toEqual({
      uid: 4242,
      gid: 0,
      additionalGids: [],
      home: "/",
    });
  });
  test("unknown names are errors; no passwd file means numbers only", () => {
    expect(() => resolveUser("ghost", PASSWD, GROUP)).toThrow(/unable to find user ghost/);
    expect(() => resolveUser("app:ghosts", PASSWD, GROUP)).toThrow(/unable to find group ghosts/);
    expect(() => resolveUser("app", undefined, undefined)).toThrow(/unable to find user app/);
    expect(resolveUser("5:6", undefined, undefined)).toMatchObject({ uid: 5, gid: 6 });
  });
});

describe("volumes, mounts, tmpfs", () => {
  test("-v forms: bind, named, anonymous, options", () => {
    expect(parseVolumeFlag("/host:/ctr")).toEqual({
      type: "bind",
      source: "/host",
      target: "/ctr",
    });
    expect(parseVolumeFlag("data:/var/lib/data:ro")).toEqual({
      type: "volume",
      source: "data",
      target: "/var/lib/data",
      readOnly: true,
    });
    expect(parseVolumeFlag("/cache")).toEqual({ type: "volume", target: "/cache" });
    expect(parseVolumeFlag("/h:/c:ro,rshared")).toMatchObject({
      readOnly: true,
      propagation: "rshared",
    });
  });
  test("-v errors", () => {
    expect(() => parseVolumeFlag("rel/path:/c")).toThrow(/invalid volume name/);
    expect(() => parseVolumeFlag("/h:c")).toThrow(/must be absolute/);
    expect(() => parseVolumeFlag("/h:/c:bogus")).toThrow(/unknown volume option/);
    expect(() => parseVolumeFlag("/h:/a/../b")).toThrow(/must not contain/);
  });
  test("--mount", () => {
    expect(parseMountFlag("type=bind,source=/h,target=/c,readonly")).toEqual({
      type: "bind",
      source: "/h",
      target: "/c",
      readOnly: true,
      mustExist: true,
    });
    expect(parseMountFlag("type=volume,src=v,dst=/d")).toEqual({
      type: "volume",
      source: "v",
      target: "/d",
    });
    expect(parseMountFlag("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777")).toEqual({
      type: "tmpfs",
      target: "/t",
      tmpfsSize: 1048576,
      tmpfsMode: 0o1777,
    });
    expect(() => parseMountFlag("type=bind,source=rel,target=/c")).toThrow(/absolute source/);
    expect(() => parseMountFlag("type=nfs,target=/c")).toThrow(/unsupported type/);
    expect(() => parseMountFlag("source=/x")).toThrow(/target is required/);
  });
  test("OCI mounts", () => {
    expect(ociMount({ type: "bind", source: "/h", target: "/c", readOnly: true })).toEqual({
      destination: "/c",
      type: "bind",
      source: "/h",
      options: ["rbind", "rprivate", "ro"],
    });
    expect(ociMount({ type: "volume", source: "v", target: "/d" }, "/vols/v/_data").source).toBe(
      "/vols/v/_data",
    );
    expect(ociMount(parseTmpfsFlag("/run:size=64m,exec"))).toEqual({
      destination: "/run",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "nodev", "size=64m"],
    });
  });
  test("sizes", () => {
    expect(parseSize("512m")).toBe(512 * 1024 * 1024);
    expect(parseSize("1g")).toBe(1024 ** 3);
    expect(parseSize("1.5k")).toBe(1536);
    expect(parseSize("100")).toBe(100);
    expect(() => parseSize("lots")).toThrow(/invalid size/);
  });
});

describe("capabilities and security options", () => {
  test("defaults, drops, adds, ALL", () => {
    expect(resolveCapabilities()).toEqual(DEFAULT_CAPABILITIES);
    expect(resolveCapabilities(["NET_ADMIN"], ["chown"])).toContain("CAP_NET_ADMIN");
    expect(resolveCapabilities(["NET_ADMIN"], ["chown"])).not.toContain("CAP_CHOWN");
    expect(resolveCapabilities(["CHOWN"], ["ALL"])).toEqual(["CAP_CHOWN"]);
    expect(resolveCapabilities(["ALL"]).length).toBeGreaterThan(38);
    expect(() => resolveCapabilities(["FLY"])).toThrow(/unknown capability/);
  });
  test("--privileged and ALL give the bounding set's capabilities, not those the host lacks", () => {
    // A host (a container) without CAP_SYS_RESOURCE, bit 24.
    const bounding = boundingCapabilities("Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n");
    expect(bounding).toEqual(ALL_CAPABILITIES.filter((c) => c !== "CAP_SYS_RESOURCE"));
    expect(resolveCapabilities([], [], true, bounding)).toEqual(bounding);
    expect(resolveCapabilities(["ALL"], ["CHOWN"], false, bounding)).not.toContain(
      "CAP_SYS_RESOURCE",
    );
    expect(boundingCapabilities("CapBnd:\t0000000000000005\n")).toEqual([
      "CAP_CHOWN",
      "CAP_DAC_READ_SEARCH",
    ]);
    expect(boundingCapabilities("")).toEqual(ALL_CAPABILITIES);
  });
  test("--security-opt", () => {
    expect(parseSecurityOpts(["no-new-privileges"], () => "")).toEqual({
      noNewPrivileges: true,
      seccomp: "default",
    });
    expect(parseSecurityOpts(["seccomp=unconfined"], () => "").seccomp).toBe("unconfined");
    const profile = parseSecurityOpts(["seccomp=/p.json"], () =>
      JSON.stringify({
        defaultAction: "SCMP_ACT_ALLOW",
        archMap: [{ architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86"] }],
        syscalls: [{ names: ["mkdir"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
      }),
    ).seccomp;
    expect(profile).toEqual({
      defaultAction: "SCMP_ACT_ALLOW",
      architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
      syscalls: [{ names: ["mkdir"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
    });
    expect(() => parseSecurityOpts(["bogus"], () => "")).toThrow(/unknown --security-opt/);
  });
});

describe("/etc files", () => {
  test("hosts names the container", () => {
    expect(hostsFile("box")).toContain("127.0.0.1\tlocalhost\n");
    expect(hostsFile("box")).toContain("127.0.1.1\tbox\n");
  });
  test("resolv.conf drops loopback nameservers, falling back to public ones", () => {
    expect(resolvConf("nameserver 127.0.0.53\nsearch lan\n", false)).toBe(
      "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
    );
    expect(resolvConf("nameserver 10.0.0.1\n", false)).toBe("nameserver 10.0.0.1\n");
    expect(resolvConf("nameserver 127.0.0.53\n", true)).toBe("nameserver 127.0.0.53\n");
  });
});

describe("buildSpec", () => {
  const base: SpecInput = {
    imageConfig: {
      Cmd: ["serve"],
      Env: ["PATH=/app/bin:/bin", "MODE=prod"],
      WorkingDir: "/app",
      Labels: { a: "1" },
    },
    options: { image: "img", env: ["MODE=dev"], labels: { b: "2" } },
    id: "0123456789abcdef".repeat(4),
    user: { uid: 1000, gid: 1000, additionalGids: [29], home: "/home/app" },
    rootfs: "merged",
    etcFiles: { hosts: "/c/hosts", hostname: "/c/hostname", resolvConf: "/c/resolv.conf" },
    mounts: [ociMount({ type: "bind", source: "/h", target: "/app/data" })],
    defaultSeccomp: (caps) => ({
      defaultAction: "SCMP_ACT_ERRNO",
      syscalls: [{ names: caps, action: "x" }],
    }),
    security: { noNewPrivileges: false, seccomp: "default" },
  };
  test("process from the image config and options", () => {
    const spec = buildSpec(base);
    expect(spec.process).toMatchObject({
      terminal: false,
      args: ["serve"],
      cwd: "/app",
      user: { uid: 1000, gid: 1000, additionalGids: [29] },
      noNewPrivileges: false,
    });
    expect(spec.process!.env).toEqual([
      "PATH=/app/bin:/bin",
      "HOSTNAME=0123456789ab",
      "MODE=dev",
      "HOME=/home/app",
    ]);
    expect(spec.process!.capabilities!.bounding).toEqual(DEFAULT_CAPABILITIES);
    expect(spec.hostname).toBe("0123456789ab");
    expect(spec.root).toEqual({ path: "merged", readonly: false });
    expect(spec.annotations).toMatchObject({ a: "1", b: "2" });
  });
  test("mounts: defaults, then /etc files, then volumes", () => {
    const dests = buildSpec(base).mounts!.map((m) => m.destination);
    expect(dests.slice(0, 7)).toEqual([
      "/proc",
      "/dev",
      "/dev/pts",
      "/sys",
      "/sys/fs/cgroup",
      "/dev/mqueue",
      "/dev/shm",
    ]);
    expect(dests.slice(7)).toEqual([
      "/etc/resolv.conf",
      "/etc/hostname",
      "/etc/hosts",
      "/app/data",
    ]);
  });
  test("a user mount on /etc/hosts replaces the generated one", () => {
    const spec = buildSpec({
      ...base,
      mounts: [ociMount({ type: "bind", source: "/x", target: "/etc/hosts" })],
    });
    expect(spec.mounts!.filter((m) => m.destination === "/etc/hosts").map((m) => m.source)).toEqual(
      ["/x"],
    );
  });
  test("namespaces, resources, seccomp", () => {
    const spec = buildSpec({
      ...base,
      options: {
        ...base.options,
        memory: "64m",
        cpus: 1.5,
        pidsLimit: 100,
        readOnly: true,
        tty: true,
      },
    });
    expect(spec.linux!.namespaces!.map((n) => n.type)).toEqual([
      "pid",
      "network",
      "ipc",
      "uts",
      "mount",
      "cgroup",
    ]);
    expect(spec.linux!.resources).toMatchObject({
      memory: { limit: 64 * 1024 * 1024 },
      cpu: { quota: 150000, period: 100000 },
      pids: { limit: 100 },
    });
    expect(spec.root!.readonly).toBe(true);
    expect(spec.process!.terminal).toBe(true);
    expect(spec.process!.env).toContain("TERM=xterm");
    expect(spec.linux!.seccomp!.syscalls![0]!.names).toEqual(DEFAULT_CAPABILITIES);
    expect(spec.linux!.maskedPaths).toContain("/proc/kcore");
  });
  test("--network host shares the host's network namespace", () => {
    const spec = buildSpec({ ...base, options: { ...base.options, network: "host" } });
    expect(spec.linux!.namespaces!.map((n) => n.type)).not.toContain("network");
  });
  test("--privileged: all capabilities, no seccomp, no masked paths, devices allowed", () => {
    const spec = buildSpec({ ...base, options: { ...base.options, privileged: true } });
    expect(spec.process!.capabilities!.bounding).toContain("CAP_SYS_ADMIN");
    expect(spec.linux!.seccomp).toBeUndefined();
    expect(spec.linux!.maskedPaths).toBeUndefined();
    expect(spec.linux!.resources!.devices).toEqual([{ allow: true, access: "rwm" }]);
  });
  test("seccomp=unconfined leaves the filter out", () => {
    const spec = buildSpec({ ...base, security: { noNewPrivileges: true, seccomp: "unconfined" } });
    expect(spec.linux!.seccomp).toBeUndefined();
    expect(spec.process!.noNewPrivileges).toBe(true);
  });
});

describe("logs in conmon's k8s-file format", () => {
  test("lines are F, an unfinished one P; they parse back", () => {
    const text = formatLogLines("stdout", "one\ntwo\npart", "T");
    expect(text).toBe("T stdout F one\nT stdout F two\nT stdout P part\n");
    expect(text.split("\n").filter(Boolean).map(parseLogLine)).toEqual([
      { time: "T", stream: "stdout", text: "one\n" },
      { time: "T", stream: "stdout", text: "two\n" },
      { time: "T", stream: "stdout", text: "part" },
    ]);
    expect(parseLogLine("T stderr F ")).toEqual({ time: "T", stream: "stderr", text: "\n" });
    expect(parseLogLine("garbage")).toBeNull();
  });
  test("a chunk is formatted as its lines one by one would be, whatever it holds", () => {
    const byLine = (text: string): string => {
      const parts = text.split("\n");
      return parts
        .map((p, i) =>
          i < parts.length - 1 ? `T$& stdout F ${p}\n` : p ? `T$& stdout P ${p}\n` : "",
        )
        .join("");
    };
    const pieces = ["a", "\n", "é", "$&", " ", "\r", "line two"];
    let seed = 7;
    for (let n = 0; n < 300; n++) {
      let chunk = "";
      for (let k = (n % 9) + 1; k > 0; k--) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        chunk += pieces[seed % pieces.length];
      }
      expect(formatLogLines("stdout", chunk, "T$&")).toBe(byLine(chunk));
    }
    expect(formatLogLines("stdout", "", "T")).toBe("");
  });
  test("timestamps are RFC 3339 with nanoseconds, parseable by Date", () => {
    const ts = logTimestamp(new Date("2024-01-02T03:04:05.678Z"));
    expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.678000000[+-]\d\d:\d\d$/);
    expect(Date.parse(ts)).toBe(Date.parse("2024-01-02T03:04:05.678Z"));
  });
});

describe("resource errors say what to give", () => {
  test("--memory below Docker's 6MB minimum is refused (the container's setup was killed without a word)", () => {
    expect(() => ociResources({ memory: "100k" })).toThrow(
      "--memory 100k is below the minimum of 6MB",
    );
    try {
      ociResources({ memory: "1m" });
    } catch (err) {
      expect((err as { hint?: string }).hint).toBe(
        "give at least 6m (as Docker requires), or no --memory for no limit",
      );
    }
    expect(ociResources({ memory: "6m" })?.memory?.limit).toBe(6 * 1024 * 1024);
  });

  test("--memory-swap as Docker's: never without --memory, never below it; -1 or equal is fine", () => {
    expect(() => ociResources({ memorySwap: "64m" })).toThrow(
      "--memory-swap needs a memory limit (--memory) as well",
    );
    expect(() => ociResources({ memory: "64m", memorySwap: "32m" })).toThrow(
      "--memory-swap 32m is below --memory 64m",
    );
    expect(ociResources({ memory: "64m", memorySwap: "64m" })?.memory?.swap).toBe(64 * 1024 * 1024);
    expect(ociResources({ memory: "64m", memorySwap: -1 })?.memory?.swap).toBe(-1);
    expect(ociResources({ memory: "64m" })?.memory?.swap).toBeUndefined();
  });

  test("an invalid --cpus and an unreadable seccomp profile come with a hint", () => {
    let hint: string | undefined;
    try {
      ociResources({ cpus: "abc" });
    } catch (err) {
      hint = (err as { hint?: string }).hint;
    }
    expect(hint).toBe("give a number of CPUs greater than 0, e.g. 0.5 or 2");
    hint = undefined;
    try {
      parseSecurityOpts(["seccomp=/profile.json"], () => "not json");
    } catch (err) {
      hint = (err as { hint?: string }).hint;
    }
    expect(hint).toBe(
      "give the path of a seccomp profile in Docker's JSON format, or seccomp=unconfined",
    );
  });
});
