// The cgroup resource model, the v1 and v2 writers and the stats reader, against fake
// directory trees (the real v2 controllers are not available on the test machine).
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { applyPlan, planResources } from "../../src/cgroups/apply.ts";
import {
  ACC_MKNOD,
  ACC_READ,
  ACC_WRITE,
  compileDeviceFilter,
  DEV_BLOCK,
  DEV_CHAR,
  decodeInstructions,
  deviceFilterInstructions,
  encodeInstructions,
} from "../../src/cgroups/devicefilter.ts";
import {
  checkUnenforcedDevices,
  type DeviceState,
  deviceMode,
  deviceRules,
  evaluateDeviceRules,
  v1DeviceWrites,
} from "../../src/cgroups/devices.ts";
import { parseCgroupMounts } from "../../src/cgroups/hierarchy.ts";
import { type Layout, layoutOf } from "../../src/cgroups/layout.ts";
import { Cgroup, kernelHasCloneIntoCgroup, resolveCgroupPaths } from "../../src/cgroups/manager.ts";
import {
  type CgroupResources,
  checkResources,
  mergeResources,
} from "../../src/cgroups/resources.ts";
import { parseCpuList, readOomKills, readStats } from "../../src/cgroups/stats.ts";
import { blkioToIoWeight, sharesToWeight, swapToV2 } from "../../src/cgroups/v2.ts";
import { ConfigError } from "../../src/errors.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A temporary tree: relative path → content (a trailing "/" makes a directory). */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "pivot-cgtree-"));
  dirs.push(root);
  for (const [rel, content] of Object.entries(files)) {
    if (rel.endsWith("/")) {
      mkdirSync(join(root, rel), { recursive: true });
      continue;
    }
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), content);
  }
  return root;
}

const read = (path: string) => readFileSync(path, "utf8");

function v2Layout(root: string, controllers: string[], rel = "parent/ctr"): Layout {
  return {
    controllers: new Map(
      controllers.map((c) => [c, { version: 2 as const, dir: join(root, rel), mountPoint: root }]),
    ),
    unified: { dir: join(root, rel), mountPoint: root },
  };
}

function v1Layout(root: string, controllers: string[]): Layout {
  return {
    controllers: new Map(
      controllers.map((c) => [
        c,
        { version: 1 as const, dir: join(root, c, "ctr"), mountPoint: join(root, c) },
      ]),
    ),
  };
}

const writesOf = (r: CgroupResources, layout: Layout, root: string) =>
  planResources(r, layout, { update: true }).writes.map((w) => [
    w.path.slice(root.length + 1),
    w.value,
  ]);

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("hierarchy and layout", () => {
  const mountinfo = [
    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755",
    "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu",
    "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
    "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices",
    "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
  ].join("\n");

  test("a hybrid host puts each controller where it is bound", () => {
    const host = parseCgroupMounts(mountinfo, () => "hugetlb pids");
    expect(host.mode).toBe("hybrid");
    const own = new Map([
      ["memory", "/process_api/abc"],
      ["unified", "/"],
    ]);
    const paths = resolveCgroupPaths("pivot-x", host, own);
    expect(paths.memory).toBe("/sys/fs/cgroup/memory/process_api/abc/pivot-x");
    expect(paths.cpu).toBe("/sys/fs/cgroup/cpu/pivot-x");
    const layout = layoutOf(host, paths);
    expect(layout.controllers.get("memory")).toMatchObject({ version: 1 });
    expect(layout.controllers.get("hugetlb")).toMatchObject({
      version: 2,
      dir: "/sys/fs/cgroup/unified/pivot-x",
    });
    expect(layout.controllers.get("pids")?.version).toBe(2);
    expect(layout.unified?.dir).toBe("/sys/fs/cgroup/unified/pivot-x");
  });

  test("the container's process joins v1 hierarchies itself and is created in the v2 one", () => {
    const host = parseCgroupMounts(mountinfo, () => "hugetlb pids");
    const paths = resolveCgroupPaths("pivot-x", host, new Map());
    const cgroup = new Cgroup(paths, host);
    expect(cgroup.joinPlan(true)).toEqual({
      selfJoin: [
        "/sys/fs/cgroup/cpu/pivot-x",
        "/sys/fs/cgroup/memory/pivot-x",
        "/sys/fs/cgroup/devices/pivot-x",
      ],
      createIn: "/sys/fs/cgroup/unified/pivot-x",
      byRuntime: [],
    });
    // Before Linux 5.7 (no CLONE_INTO_CGROUP) the runtime moves it into the v2 cgroup.
    expect(cgroup.joinPlan(false).byRuntime).toEqual(["/sys/fs/cgroup/unified/pivot-x"]);
    // A hierarchy this host does not have (an old record's): the runtime moves it, whatever it was.
    const old = new Cgroup({ ...paths, "name=gone": "/sys/fs/cgroup/gone/pivot-x" }, host);
    expect(old.joinPlan(true).byRuntime).toEqual(["/sys/fs/cgroup/gone/pivot-x"]);
    expect(old.joinPlan(true).createIn).toBe("/sys/fs/cgroup/unified/pivot-x");
    expect(kernelHasCloneIntoCgroup("5.6.19")).toBe(false);
    expect(kernelHasCloneIntoCgroup("5.7.0")).toBe(true);
    expect(kernelHasCloneIntoCgroup("6.18.44-fc-v657")).toBe(true);
    expect(kernelHasCloneIntoCgroup("4.19.0-27-amd64")).toBe(false);
  });

  test("an absolute cgroupsPath starts at each hierarchy's root", () => {
    const host = parseCgroupMounts(mountinfo, () => "");
    const paths = resolveCgroupPaths("/pivot/a", host, new Map([["memory", "/deep"]]));
    expect(paths.memory).toBe("/sys/fs/cgroup/memory/pivot/a");
  });

  test("the systemd form is refused with a clear error", () => {
    const host = parseCgroupMounts(mountinfo, () => "");
    expect(() => resolveCgroupPaths("system.slice:pivot:abc", host, new Map())).toThrow(
      /systemd form \(slice:prefix:name\).*systemd cgroup driver/,
    );
  });
});

describe("checking linux.resources", () => {
  test("names the offending field", () => {
    expect(configError(() => checkResources({ memory: { limit: "1g" } })).jsonPath).toBe(
      "linux.resources.memory.limit",
    );
    expect(configError(() => checkResources({ cpu: { idle: 3 } })).jsonPath).toBe(
      "linux.resources.cpu.idle",
    );
    expect(
      configError(() => checkResources({ devices: [{ allow: true, access: "rwx" }] })).jsonPath,
    ).toBe("linux.resources.devices[0].access");
    expect(
      configError(() => checkResources({ hugepageLimits: [{ pageSize: "2M", limit: 1 }] }))
        .jsonPath,
    ).toBe("linux.resources.hugepageLimits[0].pageSize");
    expect(configError(() => checkResources({ unified: { "../escape": "1" } })).jsonPath).toBe(
      'linux.resources.unified["../escape"]',
    );
  });

  test("accepts a full, valid set", () => {
    const r = {
      memory: { limit: 1 << 20, swap: 2 << 20, swappiness: 10, disableOOMKiller: false },
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: "0", idle: 0 },
      pids: { limit: 10 },
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }] },
      devices: [{ allow: false, access: "rwm" }],
    };
    expect(checkResources(r)).toEqual(r);
  });
});

describe("v1 writer", () => {
  const all = ["memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "hugetlb"];

  test("memory, cpu, cpuset, pids in the controllers' own directories", () => {
    const root = tree({
      "memory/ctr/memory.limit_in_bytes": "9223372036854771712\n",
      "memory/ctr/memory.memsw.limit_in_bytes": "9223372036854771712\n",
    });
    const r: CgroupResources = {
      memory: { limit: 20 << 20, reservation: 10 << 20, swappiness: 0, disableOOMKiller: true },
      cpu: { shares: 512, quota: 25000, period: 50000, cpus: "0-1", mems: "0" },
      pids: { limit: 32 },
    };
    expect(writesOf(r, v1Layout(root, all), root)).toEqual([
      ["memory/ctr/memory.limit_in_bytes", "20971520"],
      ["memory/ctr/memory.soft_limit_in_bytes", "10485760"],
      ["memory/ctr/memory.oom_control", "1"],
      ["memory/ctr/memory.swappiness", "0"],
      ["cpu/ctr/cpu.shares", "512"],
      ["cpu/ctr/cpu.cfs_period_us", "50000"],
      ["cpu/ctr/cpu.cfs_quota_us", "25000"],
      ["cpuset/ctr/cpuset.cpus", "0-1"],
      ["cpuset/ctr/cpuset.mems", "0"],
      ["pids/ctr/pids.max", "32"],
    ]);
  });

  test("kernel memory limits go to the kmem files where the kernel still has them", () => {
    const withKmem = tree({
      "memory/ctr/memory.kmem.limit_in_bytes": "9223372036854771712\n",
      "memory/ctr/memory.kmem.tcp.limit_in_bytes": "9223372036854771712\n",
    });
    const r: CgroupResources = { memory: { kernel: 50 << 20, kernelTCP: 40 << 20 } };
    expect(writesOf(r, v1Layout(withKmem, all), withKmem)).toEqual([
      ["memory/ctr/memory.kmem.limit_in_bytes", "52428800"],
      ["memory/ctr/memory.kmem.tcp.limit_in_bytes", "41943040"],
    ]);
    const without = tree({ "memory/ctr/memory.limit_in_bytes": "9223372036854771712\n" });
    expect(writesOf(r, v1Layout(without, all), without)).toEqual([]);
  });

  test("memory and memory+swap are written in an order the kernel accepts", () => {
    const root = tree({
      "memory/ctr/memory.limit_in_bytes": "104857600\n",
      "memory/ctr/memory.memsw.limit_in_bytes": "209715200\n",
    });
    const layout = v1Layout(root, ["memory"]);
    // Raising both: memory+swap first.
    expect(writesOf({ memory: { limit: 300 << 20, swap: 600 << 20 } }, layout, root)).toEqual([
      ["memory/ctr/memory.memsw.limit_in_bytes", "629145600"],
      ["memory/ctr/memory.limit_in_bytes", "314572800"],
    ]);
    // Lowering both below the current memory limit: memory first.
    expect(writesOf({ memory: { limit: 10 << 20, swap: 20 << 20 } }, layout, root)).toEqual([
      ["memory/ctr/memory.limit_in_bytes", "10485760"],
      ["memory/ctr/memory.memsw.limit_in_bytes", "20971520"],
    ]);
    // Unlimited memory: unlimited memory+swap too.
    expect(writesOf({ memory: { limit: -1 } }, layout, root)).toEqual([
      ["memory/ctr/memory.memsw.limit_in_bytes", "-1"],
      ["memory/ctr/memory.limit_in_bytes", "-1"],
    ]);
  });

  test("swap without swap accounting is an error naming the field", () => {
    const root = tree({ "memory/ctr/memory.limit_in_bytes": "1\n" });
    const e = configError(() =>
      planResources({ memory: { limit: 1 << 20, swap: 2 << 20 } }, v1Layout(root, ["memory"])),
    );
    expect(e.jsonPath).toBe("linux.resources.memory.swap");
    expect(e.message).toContain("swap accounting");
  });

  test("blkio uses BFQ's files when CFQ's are gone", () => {
    const root = tree({ "blkio/ctr/blkio.bfq.weight": "100\n" });
    const r: CgroupResources = {
      blockIO: {
        weight: 300,
        weightDevice: [{ major: 8, minor: 0, weight: 200 }],
        throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
        throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 100 }],
      },
    };
    expect(writesOf(r, v1Layout(root, ["blkio"]), root)).toEqual([
      ["blkio/ctr/blkio.bfq.weight", "300"],
      ["blkio/ctr/blkio.bfq.weight_device", "8:0 200"],
      ["blkio/ctr/blkio.throttle.read_bps_device", "8:0 1048576"],
      ["blkio/ctr/blkio.throttle.write_iops_device", "8:16 100"],
    ]);
  });

  test("devices: deny all, then runc's default list", () => {
    const root = tree({});
    const plan = planResources(
      { devices: [{ allow: false, access: "rwm" }] },
      v1Layout(root, ["devices"]),
    );
    const values = plan.writes.map((w) => `${w.path.split("/").pop()} ${w.value}`);
    expect(values).toEqual([
      "devices.deny a",
      "devices.allow c *:* m",
      "devices.allow b *:* m",
      "devices.allow c 1:3 rwm",
      "devices.allow c 1:8 rwm",
      "devices.allow c 1:7 rwm",
      "devices.allow c 5:0 rwm",
      "devices.allow c 1:5 rwm",
      "devices.allow c 1:9 rwm",
      "devices.allow c 136:* rwm",
      "devices.allow c 5:2 rwm",
      "devices.allow c 10:200 rwm",
    ]);
  });

  test("a controller the host lacks is an error naming the field", () => {
    const root = tree({});
    const e = configError(() =>
      planResources({ network: { classID: 0x100001 } }, v1Layout(root, ["memory"])),
    );
    expect(e.jsonPath).toBe("linux.resources.network.classID");
    expect(e.message).toContain("no net_cls controller");
  });

  test("unified needs cgroup v2", () => {
    const root = tree({});
    const e = configError(() =>
      planResources({ unified: { "memory.high": "1000000" } }, v1Layout(root, ["memory"])),
    );
    expect(e.jsonPath).toBe('linux.resources.unified["memory.high"]');
  });
});

describe("devices", () => {
  test("a privileged config allows everything", () => {
    const state = evaluateDeviceRules(deviceRules([{ allow: true, access: "rwm" }]));
    expect(state.defaultAllow).toBe(true);
    expect(v1DeviceWrites(state, "/d").map((w) => w.value)).toEqual(["a"]);
  });

  test("later rules remove access from earlier ones", () => {
    const state = evaluateDeviceRules(
      deviceRules([
        { allow: false, access: "rwm" },
        { allow: true, type: "c", major: 4, minor: 1, access: "rwm" },
        { allow: false, type: "c", major: 4, minor: 1, access: "w" },
        { allow: false, type: "c", major: 1, minor: 3, access: "rwm" },
      ]),
    );
    expect(state.exceptions.get("c 4:1")).toBe("rm");
    // The default /dev/null rule comes after, so it is allowed again.
    expect(state.exceptions.get("c 1:3")).toBe("rwm");
  });

  test("no rules at all means only the defaults", () => {
    const state = evaluateDeviceRules(deviceRules(undefined));
    expect(state.defaultAllow).toBe(false);
    expect(state.exceptions.size).toBe(11);
  });

  test("punching a hole in a wildcard rule is refused", () => {
    const e = configError(() =>
      evaluateDeviceRules(
        deviceRules([
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 4, access: "rw" },
          { allow: false, type: "c", major: 4, minor: 1, access: "w" },
        ]),
      ),
    );
    expect(e.jsonPath).toBe("linux.resources.devices[2]");
  });

  test("an empty access makes the rule a no-op (as in runc)", () => {
    const state = evaluateDeviceRules(deviceRules([{ allow: true }]));
    expect(state.defaultAllow).toBe(false);
  });

  test("a linux.devices entry replaces the default rule for its path", () => {
    const rules = deviceRules([], [{ type: "c", path: "/dev/null", major: 1, minor: 3 }]);
    expect(rules.some((r) => r.major === 1 && r.minor === 3)).toBe(false);
  });

  test("no devices controller at all: deny-all and allow rules pass, specific denies are refused", () => {
    expect(() =>
      checkUnenforcedDevices(
        deviceRules([
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 10, minor: 229, access: "rwm" },
        ]),
      ),
    ).not.toThrow();
    const e = configError(() =>
      checkUnenforcedDevices(
        deviceRules([
          { allow: true, access: "rwm" },
          { allow: false, type: "b", major: 8, minor: 0, access: "rwm" },
        ]),
      ),
    );
    expect(e.jsonPath).toBe("linux.resources.devices[1]");
    expect(e.message).toContain("eBPF");
  });

  test("where the rules are enforced: v1 controller, else an eBPF program on v2, or forced", () => {
    const root = "/cg";
    const hybrid: Layout = {
      ...v1Layout(root, ["devices"]),
      unified: { dir: "/u/c", mountPoint: "/u" },
    };
    expect(deviceMode(hybrid)).toBe("v1");
    expect(deviceMode(hybrid, "bpf")).toBe("bpf");
    expect(deviceMode(v2Layout(root, ["memory"]))).toBe("bpf");
    expect(deviceMode(v1Layout(root, ["memory"]))).toBe("none");
    expect(() => deviceMode(v1Layout(root, ["devices"]), "bpf")).toThrow(/cgroup v2/);
    expect(() => deviceMode(v2Layout(root, []), "v1")).toThrow(/v1 devices/);
    expect(() => deviceMode(hybrid, "ebpf")).toThrow(/not a device controller/);
  });

  test("with the eBPF program, planResources writes no device files and refuses nothing", () => {
    const root = "/cg";
    const rules = {
      devices: [
        { allow: true, access: "rwm" },
        { allow: false, type: "b", major: 8, minor: 0, access: "rwm" },
      ],
    };
    const plan = planResources(checkResources(rules), v1Layout(root, ["devices"]), {
      devices: "bpf",
    });
    expect(plan.writes).toEqual([]);
    expect(planResources(checkResources(rules), v2Layout(root, ["pids"])).writes).toEqual([]);
  });
});

/**
 * A BPF interpreter for the instructions the device filter uses, so the program's verdicts can
 * be checked against the v1 controller's rules without a kernel.
 */
function runFilter(
  program: Uint8Array,
  type: number,
  access: number,
  major: number,
  minor: number,
): number {
  const insns = decodeInstructions(program);
  const ctx = [((access << 16) | type) >>> 0, major >>> 0, minor >>> 0];
  const r = new Array<number>(11).fill(0);
  for (let pc = 0, steps = 0; pc < insns.length && steps < 10000; pc++, steps++) {
    const { code, dst, src, off, imm } = insns[pc]!;
    const k = imm >>> 0;
    switch (code) {
      case 0x61:
        if (src !== 1 || off % 4 !== 0) throw new Error(`bad load at ${pc}`);
        r[dst] = ctx[off / 4]!;
        break;
      case 0x54:
        r[dst] = (r[dst]! & k) >>> 0;
        break;
      case 0x74:
        r[dst] = r[dst]! >>> k;
        break;
      case 0xb4:
        r[dst] = k;
        break;
      case 0xbc:
        r[dst] = r[src]!;
        break;
      case 0x16:
        if (r[dst] === k) pc += off;
        break;
      case 0x56:
        if (r[dst] !== k) pc += off;
        break;
      case 0x5e:
        if (r[dst] !== r[src]) pc += off;
        break;
      case 0x95:
        return r[0]!;
      default:
        throw new Error(`unexpected opcode 0x${code.toString(16)} at ${pc}`);
    }
  }
  throw new Error("the program ran off its end");
}

/** The v1 controller's verdict for the same state. */
function v1Verdict(
  state: DeviceState,
  type: "b" | "c",
  access: string,
  major: number,
  minor: number,
): boolean {
  const matches = [...state.exceptions].filter(([key]) => {
    const [t, mm] = key.split(" ");
    const [ma, mi] = mm!.split(":");
    return (
      t === type && (ma === "*" || Number(ma) === major) && (mi === "*" || Number(mi) === minor)
    );
  });
  if (state.defaultAllow) return !matches.some(([, a]) => [...access].some((p) => a.includes(p)));
  return matches.some(([, a]) => [...access].every((p) => a.includes(p)));
}

describe("eBPF device program", () => {
  const bits = (a: string) =>
    (a.includes("m") ? ACC_MKNOD : 0) |
    (a.includes("r") ? ACC_READ : 0) |
    (a.includes("w") ? ACC_WRITE : 0);
  const check = (state: DeviceState) => {
    const program = compileDeviceFilter(state);
    for (const type of ["b", "c"] as const)
      for (const access of ["r", "w", "m", "rw"])
        for (const [major, minor] of [
          [1, 3],
          [1, 5],
          [4, 1],
          [4, 7],
          [8, 0],
          [136, 2],
          [10, 200],
          [7, 0],
        ] as const) {
          const got = runFilter(
            program,
            type === "b" ? DEV_BLOCK : DEV_CHAR,
            bits(access),
            major,
            minor,
          );
          expect({ type, access, major, minor, allowed: got === 1 }).toEqual({
            type,
            access,
            major,
            minor,
            allowed: v1Verdict(state, type, access, major, minor),
          });
        }
  };

  test("runc's defaults: /dev/null is allowed, a disk is not, mknod of anything is", () => {
    const state = evaluateDeviceRules(deviceRules(undefined));
    const program = compileDeviceFilter(state);
    expect(runFilter(program, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3)).toBe(1);
    expect(runFilter(program, DEV_BLOCK, ACC_READ, 8, 0)).toBe(0);
    expect(runFilter(program, DEV_BLOCK, ACC_MKNOD, 8, 0)).toBe(1);
    expect(runFilter(program, DEV_CHAR, ACC_READ, 136, 5)).toBe(1);
    check(state);
  });

  test("allow lists, deny lists and partial access agree with the v1 controller", () => {
    check(
      evaluateDeviceRules(
        deviceRules([
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 4, minor: 1, access: "rwm" },
          { allow: false, type: "c", major: 4, minor: 1, access: "w" },
          { allow: true, type: "b", major: 7, access: "r" },
        ]),
      ),
    );
    // A deny list: an open for reading and writing is refused when writing is.
    const deny = evaluateDeviceRules([
      { allow: true, type: "a", major: -1, minor: -1, access: "rwm" },
      { allow: false, type: "c", major: 1, minor: 3, access: "w" },
      { allow: false, type: "b", major: 8, minor: -1, access: "rwm" },
    ]);
    check(deny);
    const program = compileDeviceFilter(deny);
    expect(runFilter(program, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3)).toBe(0);
    expect(runFilter(program, DEV_CHAR, ACC_READ, 1, 3)).toBe(1);
    check(evaluateDeviceRules(deviceRules([{ allow: true, access: "rwm" }])));
    check({ defaultAllow: false, exceptions: new Map() });
  });

  test("the instructions: runc's layout, forward jumps only, 8 bytes each in host order", () => {
    const state = evaluateDeviceRules([
      { allow: false, type: "a", major: -1, minor: -1, access: "rwm" },
      { allow: true, type: "c", major: 1, minor: 3, access: "rwm" },
    ]);
    const insns = deviceFilterInstructions(state);
    expect(insns.map((i) => i.code)).toEqual([
      0x61, 0x54, 0x61, 0x74, 0x61, 0x61, 0x56, 0x56, 0x56, 0xb4, 0x95, 0xb4, 0x95,
    ]);
    for (const i of insns) expect(i.off).toBeGreaterThanOrEqual(0);
    const le = encodeInstructions(insns, true);
    expect([...le.subarray(0, 8)]).toEqual([0x61, 0x12, 0, 0, 0, 0, 0, 0]);
    expect([...le.subarray(6 * 8, 7 * 8)]).toEqual([0x56, 0x02, 4, 0, 2, 0, 0, 0]);
    expect(decodeInstructions(encodeInstructions(insns, false), false)).toEqual(insns);
  });
});

describe("v2 writer", () => {
  test("conversions match runc's", () => {
    expect(sharesToWeight(1024)).toBe(100);
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(262144)).toBe(10000);
    expect(sharesToWeight(512)).toBe(59);
    expect(blkioToIoWeight(10)).toBe(1);
    expect(blkioToIoWeight(1000)).toBe(10000);
    expect(blkioToIoWeight(500)).toBe(4950);
    expect(swapToV2(300, 100)).toBe(200);
    expect(swapToV2(0, -1)).toBe(-1);
    expect(swapToV2(-1, 100)).toBe(-1);
    expect(() => swapToV2(50, 100)).toThrow(/below memory.limit/);
    expect(() => swapToV2(50, 0)).toThrow(/without memory.limit/);
  });

  test("memory, cpu, pids, io, hugetlb, cpuset and unified into the fake tree", () => {
    const root = tree({
      "cgroup.subtree_control": "",
      "parent/cgroup.subtree_control": "memory",
      "parent/ctr/memory.max": "max\n",
      "parent/ctr/memory.swap.max": "max\n",
      "parent/ctr/memory.low": "0\n",
      "parent/ctr/memory.high": "max\n",
      "parent/ctr/cpu.weight": "100\n",
      "parent/ctr/cpu.max": "max 100000\n",
      "parent/ctr/cpu.max.burst": "0\n",
      "parent/ctr/cpu.idle": "0\n",
      "parent/ctr/cpuset.cpus": "\n",
      "parent/ctr/pids.max": "max\n",
      "parent/ctr/io.weight": "default 100\n",
      "parent/ctr/io.max": "\n",
      "parent/ctr/hugetlb.2MB.max": "max\n",
    });
    const controllers = ["memory", "cpu", "cpuset", "pids", "io", "hugetlb"];
    const layout = v2Layout(root, controllers);
    const r: CgroupResources = {
      memory: { limit: 64 << 20, swap: 96 << 20, reservation: 32 << 20 },
      cpu: { shares: 1024, quota: 20000, period: 100000, burst: 1000, idle: 0, cpus: "0" },
      pids: { limit: 100 },
      blockIO: { weight: 1000, throttleWriteBpsDevice: [{ major: 8, minor: 0, rate: 4096 }] },
      hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }],
      unified: { "memory.high": "50000000" },
    };
    const plan = planResources(r, layout);
    expect(plan.enable.map((e) => e.controller)).toEqual(controllers);
    applyPlan(plan);
    const ctr = join(root, "parent/ctr");
    expect(read(`${ctr}/memory.max`)).toBe("67108864");
    expect(read(`${ctr}/memory.swap.max`)).toBe("33554432");
    expect(read(`${ctr}/memory.low`)).toBe("33554432");
    expect(read(`${ctr}/memory.high`)).toBe("50000000");
    expect(read(`${ctr}/cpu.weight`)).toBe("100");
    expect(read(`${ctr}/cpu.max`)).toBe("20000 100000");
    expect(read(`${ctr}/cpu.max.burst`)).toBe("1000");
    expect(read(`${ctr}/cpuset.cpus`)).toBe("0");
    expect(read(`${ctr}/pids.max`)).toBe("100");
    expect(read(`${ctr}/io.weight`)).toBe("10000");
    expect(read(`${ctr}/io.max`)).toBe("8:0 wbps=4096");
    expect(read(`${ctr}/hugetlb.2MB.max`)).toBe("4194304");
    // Controllers are enabled from the mount point down to the container's parent (a fake
    // file keeps only the last write).
    expect(read(join(root, "cgroup.subtree_control"))).toBe("+hugetlb");
    expect(read(join(root, "parent/cgroup.subtree_control"))).toBe("+hugetlb");
  });

  test("a controller already enabled is left alone", () => {
    const root = tree({
      "cgroup.subtree_control": "cpu",
      "parent/cgroup.subtree_control": "memory pids",
      "parent/ctr/pids.max": "max\n",
    });
    applyPlan(planResources({ pids: { limit: 7 } }, v2Layout(root, ["pids"])));
    expect(read(join(root, "cgroup.subtree_control"))).toBe("+pids");
    expect(read(join(root, "parent/cgroup.subtree_control"))).toBe("memory pids");
    expect(read(join(root, "parent/ctr/pids.max"))).toBe("7");
  });

  test("a missing swap.max is fine only for 'max' or '0'", () => {
    const root = tree({ "parent/ctr/memory.max": "max\n" });
    const layout = v2Layout(root, ["memory"]);
    const ok = planResources({ memory: { limit: 1 << 20, swap: 1 << 20 } }, layout);
    expect(ok.writes[0]).toMatchObject({ value: "0", optional: true });
    applyPlan({ enable: [], writes: ok.writes });
    expect(read(join(root, "parent/ctr/memory.max"))).toBe("1048576");
    // Real swap: the file must be there (a fake tree cannot refuse to create it).
    const bad = planResources({ memory: { limit: 1 << 20, swap: 4 << 20 } }, layout);
    expect(bad.writes[0]).toMatchObject({
      path: join(root, "parent/ctr/memory.swap.max"),
      value: "3145728",
      field: "linux.resources.memory.swap",
    });
    expect(bad.writes[0]?.optional).toBe(false);
  });

  test("io uses BFQ's weight as is when the file exists", () => {
    const root = tree({ "parent/ctr/io.bfq.weight": "default 100\n" });
    expect(writesOf({ blockIO: { weight: 300 } }, v2Layout(root, ["io"]), root)).toEqual([
      ["parent/ctr/io.bfq.weight", "300"],
    ]);
  });

  test("what v2 cannot do is an error naming the field", () => {
    const root = tree({});
    const layout = v2Layout(root, ["memory", "cpu", "io"]);
    const field = (r: CgroupResources) => configError(() => planResources(r, layout)).jsonPath;
    expect(field({ memory: { swappiness: 60 } })).toBe("linux.resources.memory.swappiness");
    expect(field({ memory: { disableOOMKiller: true } })).toBe(
      "linux.resources.memory.disableOOMKiller",
    );
    expect(field({ cpu: { realtimeRuntime: 1000 } })).toBe("linux.resources.cpu.realtimeRuntime");
    expect(field({ blockIO: { leafWeight: 100 } })).toBe("linux.resources.blockIO.leafWeight");
    expect(field({ network: { classID: 1 } })).toBe("linux.resources.network.classID");
    expect(field({ unified: { "pids.max": "10" } })).toBe('linux.resources.unified["pids.max"]');
  });

  test("hybrid: unified keys for a controller bound to v1 are refused", () => {
    const root = tree({});
    const layout: Layout = {
      controllers: new Map([
        ["memory", { version: 1, dir: join(root, "memory/ctr"), mountPoint: join(root, "memory") }],
        [
          "hugetlb",
          { version: 2, dir: join(root, "unified/ctr"), mountPoint: join(root, "unified") },
        ],
      ]),
      unified: { dir: join(root, "unified/ctr"), mountPoint: join(root, "unified") },
    };
    const e = configError(() => planResources({ unified: { "memory.high": "1" } }, layout));
    expect(e.message).toContain("bound to cgroup v1");
    const plan = planResources({ hugepageLimits: [{ pageSize: "2MB", limit: 0 }] }, layout);
    expect(plan.enable).toEqual([
      expect.objectContaining({ controller: "hugetlb", mountPoint: join(root, "unified") }),
    ]);
  });

  test("EBUSY while enabling a controller explains the no-internal-processes rule", () => {
    // A directory where cgroup.subtree_control should be makes the write fail (EISDIR), standing in for EBUSY.
    const root = tree({ "cgroup.subtree_control/": "" });
    const plan = planResources({ pids: { limit: 5 } }, v2Layout(root, ["pids"]));
    expect(() => applyPlan(plan)).toThrow(/cannot enable the pids controller/);
  });
});

describe("update", () => {
  test("merges changes into the container's resources", () => {
    const current: CgroupResources = {
      memory: { limit: 100, swap: 200 },
      cpu: { quota: 1000, period: 100000 },
      blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1 }] },
      unified: { "memory.high": "5" },
      devices: [{ allow: false, access: "rwm" }],
    };
    const warnings: string[] = [];
    const merged = mergeResources(
      current,
      {
        memory: { limit: 300 },
        cpu: { quota: 2000 },
        blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 2 }] },
        unified: { "pids.max": "3" },
        devices: [{ allow: true, access: "rwm" }],
      },
      (m) => warnings.push(m),
    );
    expect(merged).toEqual({
      memory: { limit: 300, swap: 200 },
      cpu: { quota: 2000, period: 100000 },
      blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 2 }] },
      unified: { "memory.high": "5", "pids.max": "3" },
      devices: [{ allow: false, access: "rwm" }],
    });
    expect(warnings[0]).toContain("device rules cannot be updated");
    expect(mergeResources({ memory: { limit: 1, swap: 2 } }, { memory: { limit: -1 } })).toEqual({
      memory: { limit: -1 },
    });
  });

  test("with an eBPF device program, new device rules are appended to the container's", () => {
    const warnings: string[] = [];
    const merged = mergeResources(
      { devices: [{ allow: true, type: "c", major: 10, minor: 229, access: "rwm" }] },
      { devices: [{ allow: true, type: "b", major: 7, minor: 0, access: "r" }] },
      (m) => warnings.push(m),
      true,
    );
    expect(merged.devices).toEqual([
      { allow: true, type: "c", major: 10, minor: 229, access: "rwm" },
      { allow: true, type: "b", major: 7, minor: 0, access: "r" },
    ]);
    expect(warnings).toEqual([]);
  });
});

describe("stats", () => {
  test("v1 files in runc's event format", () => {
    const root = tree({
      "cpuacct/ctr/cpuacct.usage": "3000000\n",
      "cpuacct/ctr/cpuacct.usage_percpu": "1000000 2000000 \n",
      "cpuacct/ctr/cpuacct.usage_user": "2000000\n",
      "cpuacct/ctr/cpuacct.usage_sys": "1000000\n",
      "cpuacct/ctr/cpuacct.usage_all": "cpu user system\n0 600000 400000\n1 1400000 600000\n",
      "cpu/ctr/cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n",
      "memory/ctr/memory.usage_in_bytes": "1048576\n",
      "memory/ctr/memory.max_usage_in_bytes": "2097152\n",
      "memory/ctr/memory.limit_in_bytes": "20971520\n",
      "memory/ctr/memory.failcnt": "3\n",
      "memory/ctr/memory.stat": "cache 4096\nrss 8192\n",
      "memory/ctr/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
      "pids/ctr/pids.current": "3\n",
      "pids/ctr/pids.max": "max\n",
      "blkio/ctr/blkio.throttle.io_service_bytes_recursive":
        "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
      "blkio/ctr/blkio.throttle.io_serviced_recursive": "8:0 Read 1\nTotal 1\n",
      "cpuset/ctr/cpuset.cpus": "0-1\n",
      "cpuset/ctr/cpuset.mems": "0\n",
      "cpuset/ctr/cpuset.sched_load_balance": "1\n",
    });
    const layout = v1Layout(root, ["cpu", "cpuacct", "memory", "pids", "blkio", "cpuset"]);
    const s = readStats(layout);
    expect(s.cpu).toEqual({
      usage: {
        total: 3000000,
        percpu: [1000000, 2000000],
        percpu_kernel: [400000, 600000],
        percpu_user: [600000, 1400000],
        kernel: 1000000,
        user: 2000000,
      },
      throttling: { periods: 10, throttledPeriods: 4, throttledTime: 123456 },
    });
    expect(s.memory.usage).toEqual({ limit: 20971520, usage: 1048576, max: 2097152, failcnt: 3 });
    expect(s.memory.cache).toBe(4096);
    expect(s.memory.raw).toEqual({ cache: 4096, rss: 8192 });
    expect(s.pids).toEqual({ current: 3 });
    expect(s.blkio.ioServiceBytesRecursive).toEqual([
      // Zero values are left out, as Go's omitempty does in runc's output.
      { major: 8, op: "Read", value: 4096 },
      { major: 8, op: "Write" },
    ]);
    expect(s.cpuset.cpus).toEqual([0, 1]);
    expect(s.cpuset.sched_load_balance).toBe(1);
    expect(readOomKills(layout)).toBe(2);
    const json = JSON.parse(JSON.stringify(s));
    expect(Object.keys(json)).toEqual([
      "cpu",
      "cpuset",
      "memory",
      "pids",
      "blkio",
      "hugetlb",
      "intel_rdt",
      "network_interfaces",
    ]);
  });

  test("v2 files in the same format", () => {
    const root = tree({
      "ctr/cpu.stat":
        "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 5\nnr_throttled 2\nthrottled_usec 700\n",
      "ctr/memory.current": "1048576\n",
      "ctr/memory.max": "max\n",
      "ctr/memory.peak": "2097152\n",
      "ctr/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
      "ctr/memory.stat": "anon 8192\nfile 4096\n",
      "ctr/memory.swap.current": "0\n",
      "ctr/memory.swap.max": "max\n",
      "ctr/pids.current": "2\n",
      "ctr/pids.max": "10\n",
      "ctr/io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
      "ctr/hugetlb.2MB.current": "2097152\n",
      "ctr/hugetlb.2MB.max": "4194304\n",
      "ctr/hugetlb.2MB.events": "max 1\n",
    });
    const layout = v2Layout(root, ["cpu", "memory", "pids", "io", "hugetlb"], "ctr");
    const s = readStats(layout);
    expect(s.cpu.usage).toEqual({ total: 3000000, kernel: 1000000, user: 2000000 });
    expect(s.cpu.throttling).toEqual({ periods: 5, throttledPeriods: 2, throttledTime: 700000 });
    expect(s.memory.usage).toEqual({
      limit: 2 ** 64 - 1,
      usage: 1048576,
      max: 2097152,
      failcnt: 4,
    });
    expect(s.memory.cache).toBe(4096);
    expect(s.pids).toEqual({ current: 2, limit: 10 });
    expect(s.blkio.ioServiceBytesRecursive).toEqual([
      { major: 8, op: "Read", value: 4096 },
      { major: 8, op: "Write", value: 8192 },
    ]);
    expect(s.hugetlb["2MB"]).toEqual({ usage: 2097152, failcnt: 1 });
    expect(readOomKills(layout)).toBe(1);
  });

  test("cpu lists", () => {
    expect(parseCpuList("0-2,5,7-8\n")).toEqual([0, 1, 2, 5, 7, 8]);
    expect(parseCpuList("")).toEqual([]);
  });
});
