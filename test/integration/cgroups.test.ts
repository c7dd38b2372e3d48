// Resource limits against the real kernel: this machine's v1 controllers (and, on a hybrid
// host, the v2 hierarchy for what it holds). Every container is force-deleted afterwards, and
// no cgroup directory may remain.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { hostCgroups } from "../../src/cgroups/hierarchy.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Spec } from "../../src/oci/spec.ts";
import { attachDeviceFilter } from "../../src/runtime/cgroup-devices.ts";
import {
  addCapability,
  BUN,
  cleanupRoot,
  isRoot,
  makeBusyboxRootfs,
  REPO,
  RUNTIME_CLI,
  rm,
  runtime,
  tempDir,
} from "../helpers.ts";

if (!isRoot) throw new Error("the cgroup integration tests run real containers and need root");

const host = hostCgroups();
let work: string;
let root: string;
let rootfs: string;
let counter = 0;
const prefix = `cg-${process.pid}-`;
const nextId = (name: string) => `${prefix}${name}-${++counter}`;

/** Controllers enabled at the v2 root: applying v2 limits enables more; put it back after. */
const v2Root = host.hierarchies.find((h) => h.version === 2)?.mountPoint;
const v2RootControl = () =>
  v2Root ? readFileSync(`${v2Root}/cgroup.subtree_control`, "utf8").trim().split(/\s+/) : [];
let v2RootBefore: string[] = [];

beforeAll(() => {
  v2RootBefore = v2RootControl();
  work = tempDir("pivot-cgroups-");
  root = join(work, "state");
  rootfs = join(work, "rootfs");
  makeBusyboxRootfs(rootfs);
});

/** Every directory under /sys/fs/cgroup whose name carries this run's prefix. */
function leftoverCgroups(): string[] {
  const found: string[] = [];
  const visit = (dir: string, depth: number) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name.includes(prefix)) found.push(join(dir, e.name));
      else if (depth < 4) visit(join(dir, e.name), depth + 1);
    }
  };
  visit("/sys/fs/cgroup", 0);
  return found;
}

afterAll(() => {
  cleanupRoot(root);
  rm(work);
  for (const c of v2RootControl())
    if (c && !v2RootBefore.includes(c)) writeFileSync(`${v2Root}/cgroup.subtree_control`, `-${c}`);
  expect(leftoverCgroups()).toEqual([]);
});

/** A bundle of its own for one container: the shared busybox rootfs, the default spec with ARGS. */
function bundle(args: string[], edit: (s: Spec) => void = () => {}): string {
  const dir = join(work, `bundle-${++counter}`);
  mkdirSync(dir);
  const spec = defaultSpec({ args });
  spec.process!.terminal = false;
  spec.root = { path: rootfs };
  edit(spec);
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
  return dir;
}

function resources(s: Spec): NonNullable<NonNullable<Spec["linux"]>["resources"]> {
  s.linux ??= {};
  s.linux.resources ??= {};
  return s.linux.resources;
}

/** The container's cgroup directories, from its recorded state. */
function cgroupPaths(id: string): Record<string, string> {
  return JSON.parse(readFileSync(join(root, id, "state.json"), "utf8")).cgroupPaths;
}

/** The directory of the hierarchy holding CONTROLLER. */
function dirOf(id: string, controller: string): string {
  const h =
    host.hierarchies.find((x) => x.version === 1 && x.controllers.includes(controller)) ??
    host.hierarchies.find((x) => x.version === 2 && x.controllers.includes(controller));
  if (!h) throw new Error(`no ${controller} hierarchy on this host`);
  return cgroupPaths(id)[h.name]!;
}

const cat = (path: string) => readFileSync(path, "utf8").trim();

function ok(args: string[]): string {
  const r = runtime(root, args);
  if (r.status !== 0) throw new Error(`pivot-runtime ${args.join(" ")}: ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** run -d: a container that keeps running; deleted by `using`'s caller in finally. */
function startDetached(id: string, dir: string): void {
  ok(["run", "--detach", "--bundle", dir, id]);
}

function forceDelete(id: string): void {
  runtime(root, ["delete", "--force", id]);
}

function stats(id: string) {
  const lines = ok(["events", "--stats", id]).trim().split("\n");
  expect(lines).toHaveLength(1);
  const event = JSON.parse(lines[0]!);
  expect(event).toMatchObject({ type: "stats", id });
  return event.data;
}

function dead(pid: number): boolean {
  try {
    return /^State:\s+[ZX]/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const MiB = 1024 * 1024;
const hasV1 = (c: string) =>
  host.hierarchies.some((h) => h.version === 1 && h.controllers.includes(c));

describe("limits are written and enforced", () => {
  test("memory limit: written, and an allocation above it is OOM-killed (exit 137)", () => {
    const id = nextId("oom");
    const dir = bundle(
      ["sh", "-c", 'x=$(head -c 104857600 /dev/zero | tr "\\0" a); echo survived'],
      (s) => {
        resources(s).memory = { limit: 20 * MiB };
      },
    );
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).toBe(137);
    expect(r.stdout).not.toContain("survived");
  });

  test("memory limit in the cgroup file; events streams an oom event, then ends when the container stops", async () => {
    const id = nextId("oomev");
    const dir = bundle(
      ["sh", "-c", 'sleep 1; x=$(head -c 104857600 /dev/zero | tr "\\0" a)'],
      (s) => {
        resources(s).memory = { limit: 20 * MiB };
      },
    );
    try {
      ok(["create", "--bundle", dir, id]);
      expect(cat(`${dirOf(id, "memory")}/memory.limit_in_bytes`)).toBe(String(20 * MiB));
      const events = spawn(
        BUN,
        [RUNTIME_CLI, "--root", root, "events", "--interval", "200ms", id],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      events.stdout.on("data", (d) => {
        out += d;
      });
      const exited = new Promise<number | null>((resolve) => events.on("exit", resolve));
      await sleep(300);
      ok(["start", id]);
      const timeout = setTimeout(() => events.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timeout);
      expect(code).toBe(0);
      const lines = out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines).toContainEqual({ type: "oom", id });
      const first = lines.find((e) => e.type === "stats");
      expect(first.data.memory.usage.limit).toBe(20 * MiB);
      expect(JSON.parse(ok(["state", id])).status).toBe("stopped");
    } finally {
      forceDelete(id);
    }
  }, 30_000);

  test("pids.limit makes fork fail inside the container", () => {
    const id = nextId("pids");
    const dir = bundle(
      ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait"],
      (s) => {
        resources(s).pids = { limit: 6 };
      },
    );
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("can't fork");
  });

  test("cpu quota: written to cpu.cfs_quota_us, and a busy loop gets throttled", async () => {
    const id = nextId("cpu");
    const dir = bundle(["sh", "-c", "while :; do :; done"], (s) => {
      resources(s).cpu = { quota: 10000, period: 100000, shares: 512 };
    });
    try {
      startDetached(id, dir);
      const cpu = dirOf(id, "cpu");
      expect(cat(`${cpu}/cpu.cfs_quota_us`)).toBe("10000");
      expect(cat(`${cpu}/cpu.cfs_period_us`)).toBe("100000");
      expect(cat(`${cpu}/cpu.shares`)).toBe("512");
      await sleep(600);
      const s = stats(id);
      expect(s.cpu.throttling.throttledPeriods).toBeGreaterThan(0);
      expect(s.cpu.usage.total).toBeGreaterThan(0);
    } finally {
      forceDelete(id);
    }
  });

  test("devices: deny all, then runc's default list; a disallowed device cannot be opened", () => {
    if (!hasV1("devices")) return;
    const id = nextId("dev");
    const dir = bundle(
      [
        "sh",
        "-c",
        "cat /sys/fs/cgroup/devices/devices.list; head -c 1 /dev/mem > /dev/null && echo OPENED",
      ],
      (s) => {
        s.linux!.devices = [{ type: "c", path: "/dev/mem", major: 1, minor: 1, fileMode: 0o600 }];
      },
    );
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.stdout.split("\n")).toEqual(
      expect.arrayContaining(["c *:* m", "b *:* m", "c 1:3 rwm", "c 136:* rwm", "c 10:200 rwm"]),
    );
    expect(r.stdout).not.toContain("a *:* rwm");
    expect(r.stdout).not.toContain("OPENED");
    expect(r.stderr).toContain("Operation not permitted");
  });

  test("a value the kernel clamps is an error naming the field, and nothing is left behind", () => {
    const id = nextId("clamp");
    const dir = bundle(["true"], (s) => {
      resources(s).cpu = { shares: 1 };
    });
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("linux.resources.cpu.shares");
    expect(r.stderr).toContain("minimum allowed is 2");
    expect(existsSync(join(root, id))).toBe(false);
    expect(leftoverCgroups().filter((d) => d.includes(id))).toEqual([]);
  });

  test("a huge page size the host lacks is an error naming the field", () => {
    const id = nextId("huge");
    const dir = bundle(["true"], (s) => {
      resources(s).hugepageLimits = [{ pageSize: "64KB", limit: 0 }];
    });
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("linux.resources.hugepageLimits[0]");
  });

  test("the systemd cgroupsPath form is refused with a clear error", () => {
    const id = nextId("sd");
    const dir = bundle(["true"], (s) => {
      s.linux!.cgroupsPath = "system.slice:pivot:abc";
    });
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("systemd form (slice:prefix:name)");
    expect(r.stderr).toContain("systemd cgroup driver");
    const flag = runtime(root, [
      "--systemd-cgroup",
      "run",
      "--bundle",
      bundle(["true"]),
      nextId("sd"),
    ]);
    expect(flag.status).toBe(1);
    expect(flag.stderr).toContain("--systemd-cgroup");
  });

  test.skipIf(!hasV1("cpuset"))(
    "a cgroupsPath three new levels deep: v1 cpuset.cpus and mems are copied down to the container's",
    () => {
      const id = nextId("deep");
      const levels = [`${prefix}a`, "b", id];
      const dir = bundle(["true"], (s) => {
        s.linux!.cgroupsPath = levels.join("/");
      });
      // This process's own directory in each hierarchy: a relative cgroupsPath starts there.
      const ownCgroup = new Map(
        readFileSync("/proc/self/cgroup", "utf8")
          .trim()
          .split("\n")
          .map((l) => l.split(":"))
          .map((f) => [f[1] === "" ? "unified" : f[1]!, f.slice(2).join(":")]),
      );
      const cpuset = host.hierarchies.find(
        (h) => h.version === 1 && h.controllers.includes("cpuset"),
      )!;
      const base = join(cpuset.mountPoint, ownCgroup.get(cpuset.name)!);
      try {
        ok(["create", "--bundle", dir, id]);
        for (let depth = 1; depth <= levels.length; depth++) {
          const level = join(base, ...levels.slice(0, depth));
          expect([depth, cat(`${level}/cpuset.cpus`), cat(`${level}/cpuset.mems`)]).toEqual([
            depth,
            cat(`${base}/cpuset.cpus`),
            cat(`${base}/cpuset.mems`),
          ]);
        }
        ok(["start", id]);
      } finally {
        forceDelete(id);
        // delete removes the container's own directories; the two made above it are ours.
        for (let depth = levels.length - 1; depth >= 1; depth--) {
          for (const h of host.hierarchies) {
            const level = join(
              h.mountPoint,
              ownCgroup.get(h.name) ?? "/",
              ...levels.slice(0, depth),
            );
            if (existsSync(level)) rmdirSync(level);
          }
        }
      }
    },
  );

  test("the container runs under a 1 MiB memory limit (only the launcher joins before exec)", () => {
    const id = nextId("tiny");
    const dir = bundle(["sh", "-c", "echo small"], (s) => {
      resources(s).memory = { limit: 1 * MiB };
    });
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("small\n");
    expect(r.status).toBe(0);
  });
});

describe("cgroup v2 on this host", () => {
  const unified = host.hierarchies.find((h) => h.version === 2);
  const hugetlbOnV2 = !!unified?.controllers.includes("hugetlb") && !hasV1("hugetlb");

  test("hugepage limits go through the v2 writer into the unified hierarchy", () => {
    if (!hugetlbOnV2 || !unified) return;
    const id = nextId("hugetlb");
    const dir = bundle(["sleep", "10"], (s) => {
      resources(s).hugepageLimits = [{ pageSize: "2MB", limit: 4 * MiB }];
      resources(s).unified = { "hugetlb.2MB.rsvd.max": String(2 * MiB) };
    });
    try {
      startDetached(id, dir);
      const v2 = cgroupPaths(id).unified!;
      expect(cat(`${v2}/hugetlb.2MB.max`)).toBe(String(4 * MiB));
      expect(cat(`${v2}/hugetlb.2MB.rsvd.max`)).toBe(String(2 * MiB));
      expect(stats(id).hugetlb["2MB"]).toEqual({ failcnt: 0 });
    } finally {
      forceDelete(id);
    }
  });

  test("unified keys for a controller bound to v1 are refused, naming the key", () => {
    if (!unified || !hasV1("memory")) return;
    const id = nextId("unified");
    const dir = bundle(["true"], (s) => {
      resources(s).unified = { "memory.high": "1000000" };
    });
    const r = runtime(root, ["run", "--bundle", dir, id]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('linux.resources.unified["memory.high"]');
    expect(r.stderr).toContain("bound to cgroup v1");
  });
});

/** Runs FN with the eBPF device program forced (PIVOT_CGROUP_DEVICES=bpf) for the CLI it starts. */
function withBpfDevices<T>(fn: () => T): T {
  const before = process.env.PIVOT_CGROUP_DEVICES;
  process.env.PIVOT_CGROUP_DEVICES = "bpf";
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.PIVOT_CGROUP_DEVICES;
    else process.env.PIVOT_CGROUP_DEVICES = before;
  }
}

describe("cgroup v2 device program (eBPF), forced with PIVOT_CGROUP_DEVICES=bpf", () => {
  const unified = host.hierarchies.find((h) => h.version === 2);
  /** A disk (8:0, no such device here) and a loop device (7:0) made inside, opened for reading. */
  const probe = [
    "mknod /dev/d8 b 8 0 && mknod /dev/d7 b 7 0 || exit 9",
    "echo x > /dev/null && echo NULL_OK",
    // In a subshell: a failed redirection of ":" ends the shell that runs it.
    "(: < /dev/d8) && echo D8_OPENED",
    "(: < /dev/d7) && echo D7_OPENED",
    "true",
  ].join("; ");
  const withMknod = (s: Spec) => addCapability(s, "CAP_MKNOD");

  test("the default rules: /dev/null opens, a mknod'ed disk does not (EPERM); the v1 controller is left alone", () => {
    if (!unified) return;
    const id = nextId("bpfdev");
    const dir = bundle(
      ["sh", "-c", `${probe}; cat /sys/fs/cgroup/devices/devices.list`],
      withMknod,
    );
    const plan = withBpfDevices(() => runtime(root, ["create", "--dry-run", "--bundle", dir, id]));
    expect(plan.stdout).toContain("attach the eBPF device program (deny every device but 11 rules");
    const r = withBpfDevices(() => runtime(root, ["run", "--bundle", dir, id]));
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("NULL_OK");
    expect(r.stdout).not.toContain("D8_OPENED");
    expect(r.stdout).not.toContain("D7_OPENED");
    expect(r.stderr).toContain("can't open /dev/d8: Operation not permitted");
    // The program alone decides: the v1 devices cgroup keeps what it inherited.
    if (hasV1("devices")) expect(r.stdout).toContain("a *:* rwm");
  });

  test("a rule allowing the device opens it (and only it)", () => {
    if (!unified || !existsSync("/dev/loop0")) return;
    const id = nextId("bpfallow");
    const dir = bundle(["sh", "-c", probe], (s) => {
      withMknod(s);
      resources(s).devices = [{ allow: true, type: "b", major: 7, minor: 0, access: "r" }];
    });
    const r = withBpfDevices(() => runtime(root, ["run", "--bundle", dir, id]));
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("D7_OPENED");
    expect(r.stdout).not.toContain("D8_OPENED");
    expect(r.stderr).toContain("can't open /dev/d8: Operation not permitted");
  });

  test("update with a device rule replaces the program: the old one no longer denies", () => {
    if (!unified || !existsSync("/dev/loop0")) return;
    const id = nextId("bpfupd");
    const dir = bundle(
      ["sh", "-c", "mknod /dev/d7 b 7 0; mknod /dev/d8 b 8 0; sleep 30"],
      withMknod,
    );
    const open = (dev: string) =>
      runtime(root, ["exec", id, "sh", "-c", `(: < ${dev}) && echo OPENED`]);
    try {
      withBpfDevices(() => startDetached(id, dir));
      expect(open("/dev/d7").stderr).toContain("Operation not permitted");
      const file = join(work, `${id}.json`);
      writeFileSync(
        file,
        JSON.stringify({ devices: [{ allow: true, type: "b", major: 7, minor: 0, access: "r" }] }),
      );
      withBpfDevices(() => ok(["update", "--resources", file, id]));
      // Both programs would have to allow it, were the old one still attached.
      expect(open("/dev/d7").stdout).toContain("OPENED");
      expect(open("/dev/d8").stderr).toContain("Operation not permitted");
      const recorded = JSON.parse(readFileSync(join(root, id, "state.json"), "utf8")).spec.linux
        .resources;
      expect(recorded.devices).toContainEqual({
        allow: true,
        type: "b",
        major: 7,
        minor: 0,
        access: "r",
      });
    } finally {
      forceDelete(id);
    }
  });

  test("a program the kernel rejects fails with the verifier's log, naming the step", async () => {
    if (!unified) return;
    const dir = join(unified.mountPoint, `${prefix}bad`);
    mkdirSync(dir);
    try {
      // r0 = 1 without an exit: the verifier refuses to run off the end.
      const program = new Uint8Array([0xb4, 0, 0, 0, 1, 0, 0, 0]);
      const err = await attachDeviceFilter({
        dir,
        program,
        license: "Apache",
        summary: "bad",
      }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toContain("attach the eBPF device program");
      expect(err?.message).toContain("the verifier says");
    } finally {
      rmdirSync(dir);
    }
  });
});

describe("update", () => {
  test("update changes a live container's limits, and records them", () => {
    const id = nextId("upd");
    const dir = bundle(["sleep", "30"], (s) => {
      resources(s).memory = { limit: 20 * MiB };
      resources(s).pids = { limit: 20 };
      resources(s).cpu = { quota: 20000, period: 100000 };
    });
    try {
      startDetached(id, dir);
      ok(["update", "--memory", "30m", "--pids-limit", "40", "--cpu-quota", "50000", id]);
      expect(cat(`${dirOf(id, "memory")}/memory.limit_in_bytes`)).toBe(String(30 * MiB));
      expect(cat(`${dirOf(id, "pids")}/pids.max`)).toBe("40");
      expect(cat(`${dirOf(id, "cpu")}/cpu.cfs_quota_us`)).toBe("50000");
      expect(cat(`${dirOf(id, "cpu")}/cpu.cfs_period_us`)).toBe("100000");
      // --resources from a file.
      const file = join(work, `${id}.json`);
      writeFileSync(file, JSON.stringify({ memory: { limit: 40 * MiB, reservation: 10 * MiB } }));
      ok(["update", "--resources", file, id]);
      expect(cat(`${dirOf(id, "memory")}/memory.limit_in_bytes`)).toBe(String(40 * MiB));
      expect(cat(`${dirOf(id, "memory")}/memory.soft_limit_in_bytes`)).toBe(String(10 * MiB));
      const recorded = JSON.parse(readFileSync(join(root, id, "state.json"), "utf8")).spec.linux
        .resources;
      expect(recorded.memory).toEqual({ limit: 40 * MiB, reservation: 10 * MiB });
      expect(recorded.pids).toEqual({ limit: 40 });
      const s = stats(id);
      expect(s.memory.usage.limit).toBe(40 * MiB);
      expect(s.pids.limit).toBe(40);
    } finally {
      forceDelete(id);
    }
  });

  test("update --resources - reads stdin; an impossible value fails naming the field", () => {
    const id = nextId("upd2");
    const dir = bundle(["sleep", "30"], (s) => {
      resources(s).memory = { limit: 20 * MiB };
    });
    try {
      startDetached(id, dir);
      const child = Bun.spawnSync([BUN, RUNTIME_CLI, "--root", root, "update", "-r", "-", id], {
        stdin: Buffer.from(JSON.stringify({ cpu: { shares: 256 } })),
      });
      expect(child.exitCode).toBe(0);
      expect(cat(`${dirOf(id, "cpu")}/cpu.shares`)).toBe("256");
      if (existsSync(`${dirOf(id, "memory")}/memory.memsw.limit_in_bytes`)) {
        const bad = runtime(root, ["update", "--memory-swap", "1m", id]);
        expect(bad.status).toBe(1);
        expect(bad.stderr).toContain("linux.resources.memory.swap");
      }
      const usage = runtime(root, ["update", "--memory", "20x", id]);
      expect(usage.status).toBe(2);
      expect(usage.stderr).toContain("not a size");
    } finally {
      forceDelete(id);
    }
  });

  test("update refuses a stopped container", () => {
    const id = nextId("upd3");
    try {
      ok(["run", "--detach", "--bundle", bundle(["true"]), id]);
      const deadline = Date.now() + 5000;
      while (JSON.parse(ok(["state", id])).status !== "stopped" && Date.now() < deadline);
      const r = runtime(root, ["update", "--memory", "30m", id]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("stopped");
    } finally {
      forceDelete(id);
    }
  });
});

describe("pause, events, ps, kill --all, delete --force", () => {
  test("pause freezes a counting loop (state says paused), resume restarts it", async () => {
    const id = nextId("pause");
    const counter = `/count-${id}`;
    const dir = bundle(["sh", "-c", `i=0; while :; do i=$((i+1)); echo $i > ${counter}; done`]);
    const count = () => Number(readFileSync(join(rootfs, counter), "utf8").trim() || "0");
    try {
      startDetached(id, dir);
      await waitFor("the counter", () => existsSync(join(rootfs, counter)) && count() > 0);
      ok(["pause", id]);
      expect(JSON.parse(ok(["state", id])).status).toBe("paused");
      if (hasV1("freezer")) expect(cat(`${dirOf(id, "freezer")}/freezer.state`)).toBe("FROZEN");
      await sleep(50);
      const frozenAt = count();
      await sleep(300);
      expect(count()).toBe(frozenAt);
      ok(["resume", id]);
      expect(JSON.parse(ok(["state", id])).status).toBe("running");
      await waitFor("the counter to move again", () => count() > frozenAt);
    } finally {
      forceDelete(id);
      rm(join(rootfs, counter));
    }
  });

  test("a process in a sub-cgroup of the container's: ps lists it, delete --force kills it and removes both", async () => {
    const id = nextId("subcg");
    const dir = bundle(["sh", "-c", "sleep 300 & sleep 300 & wait"]);
    try {
      startDetached(id, dir);
      await waitFor(
        "three processes",
        () => JSON.parse(ok(["ps", "--format", "json", id])).length === 3,
      );
      // One of the sleeps moves into a cgroup below the container's, in every hierarchy.
      const sleeper = Number(JSON.parse(ok(["ps", "--format", "json", id]))[1]);
      const dirs = Object.values(cgroupPaths(id));
      const subs = dirs.map((d) => join(d, "sub"));
      for (const sub of subs) {
        mkdirSync(sub);
        if (existsSync(join(sub, "cpuset.cpus"))) {
          writeFileSync(join(sub, "cpuset.cpus"), cat(join(sub, "..", "cpuset.cpus")));
          writeFileSync(join(sub, "cpuset.mems"), cat(join(sub, "..", "cpuset.mems")));
        }
        writeFileSync(join(sub, "cgroup.procs"), String(sleeper));
      }
      expect(JSON.parse(ok(["ps", "--format", "json", id])).sort()).toContain(sleeper);
      ok(["delete", "--force", id]);
      expect(dead(sleeper)).toBe(true);
      expect([...subs, ...dirs].filter((d) => existsSync(d))).toEqual([]);
    } finally {
      forceDelete(id);
    }
  });

  test("events --stats prints one stats event with numbers", async () => {
    const id = nextId("stats");
    const dir = bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"], (s) => {
      resources(s).memory = { limit: 50 * MiB };
      resources(s).pids = { limit: 30 };
    });
    try {
      startDetached(id, dir);
      await waitFor(
        "three processes",
        () => JSON.parse(ok(["ps", "--format", "json", id])).length === 3,
      );
      const s = stats(id);
      expect(s.cpu.usage.total).toBeGreaterThan(0);
      expect(s.memory.usage.usage).toBeGreaterThan(0);
      expect(s.memory.usage.limit).toBe(50 * MiB);
      expect(s.memory.usage.max).toBeGreaterThanOrEqual(s.memory.usage.usage);
      expect(s.pids).toEqual({ current: 3, limit: 30 });
      expect(s).toHaveProperty("blkio");
      expect(s.network_interfaces).toBeNull();
      // The stream form prints the same, every interval.
      const events = spawn(BUN, [RUNTIME_CLI, "--root", root, "events", "--interval", "100ms", id]);
      let out = "";
      events.stdout.on("data", (d) => {
        out += d;
      });
      await waitFor("two stats events", () => out.split("\n").filter(Boolean).length >= 2);
      events.kill();
      expect(JSON.parse(out.split("\n")[0]!).type).toBe("stats");
    } finally {
      forceDelete(id);
    }
  });

  /** As the host sees each process: "N:controllers:/path", "0::/path" for cgroup v2. */
  function expectInContainerCgroups(id: string, pids: number[]): void {
    const paths = cgroupPaths(id);
    for (const pid of pids) {
      const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n");
      for (const [name, cgroupDir] of Object.entries(paths)) {
        const h = host.hierarchies.find((x) => x.name === name)!;
        const key = h.version === 2 ? "" : name;
        const line = lines.find((l) => l.split(":")[1] === key);
        expect(`${pid} ${name}: ${line?.split(":")[2]}`).toBe(
          `${pid} ${name}: ${cgroupDir.slice(h.mountPoint.length)}`,
        );
      }
    }
  }

  test("the init and an exec'd process are in the container's cgroup in every hierarchy", () => {
    const id = nextId("member");
    const dir = bundle(["sleep", "30"]);
    const pidFile = join(work, `${id}.exec.pid`);
    try {
      startDetached(id, dir);
      ok(["exec", "--detach", "--pid-file", pidFile, id, "sleep", "30"]);
      const init = JSON.parse(ok(["state", id])).pid;
      expectInContainerCgroups(id, [init, Number(readFileSync(pidFile, "utf8"))]);
    } finally {
      forceDelete(id);
    }
  });

  test("where clone3 is filtered (ENOSYS, as Docker's seccomp profile does), they still are", () => {
    // The launcher creates the setup process in its cgroup v2 with clone3; without it, the
    // process is forked and moves itself. The whole runtime runs under the filter here.
    const noClone3 = join(work, "no-clone3");
    const cc = spawnSync(
      "cc",
      ["-O2", "-o", noClone3, join(REPO, "test/fixtures/no-clone3.c"), "-lseccomp"],
      { encoding: "utf8" },
    );
    expect(cc.stderr).toBe("");
    const id = nextId("noclone3");
    const dir = bundle(["sleep", "30"]);
    const pidFile = join(work, `${id}.exec.pid`);
    const filtered = (args: string[]) => {
      const r = runtime(root, args, { wrapper: [noClone3] });
      if (r.status !== 0)
        throw new Error(`pivot-runtime ${args.join(" ")}: ${r.status}\n${r.stderr}`);
      return r.stdout;
    };
    try {
      filtered(["run", "--detach", "--bundle", dir, id]);
      filtered(["exec", "--detach", "--pid-file", pidFile, id, "sleep", "30"]);
      const init = JSON.parse(ok(["state", id])).pid;
      expectInContainerCgroups(id, [init, Number(readFileSync(pidFile, "utf8"))]);
    } finally {
      forceDelete(id);
    }
  });

  test("ps lists and kill --all signals every process of the cgroup, even paused", async () => {
    const id = nextId("killall");
    const dir = bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"]);
    try {
      startDetached(id, dir);
      const paths = cgroupPaths(id);
      await waitFor(
        "three processes",
        () => JSON.parse(ok(["ps", "--format", "json", id])).length === 3,
      );
      const pids: number[] = JSON.parse(ok(["ps", "--format", "json", id]));
      const procs = cat(`${dirOf(id, "pids")}/cgroup.procs`)
        .split("\n")
        .map(Number);
      expect(pids.sort()).toEqual(procs.sort());
      // Even paused: kill --all thaws after signalling, or v1-frozen processes would not die.
      ok(["pause", id]);
      ok(["kill", "--all", id, "KILL"]);
      await waitFor("every process to die", () => pids.every(dead));
      await waitFor("stopped", () => JSON.parse(ok(["state", id])).status === "stopped");
      ok(["delete", id]);
      for (const d of Object.values(paths)) expect(existsSync(d)).toBe(false);
    } finally {
      forceDelete(id);
    }
  });

  test("delete --force kills every process in the cgroup (even paused) and removes it", async () => {
    const id = nextId("force");
    const dir = bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"]);
    startDetached(id, dir);
    const paths = cgroupPaths(id);
    await waitFor(
      "three processes",
      () => JSON.parse(ok(["ps", "--format", "json", id])).length === 3,
    );
    const pids: number[] = JSON.parse(ok(["ps", "--format", "json", id]));
    ok(["pause", id]);
    ok(["delete", "--force", id]);
    // Dead: gone, or a zombie until the host's init reaps the container's init.
    for (const p of pids) expect(dead(p)).toBe(true);
    for (const d of Object.values(paths)) expect(existsSync(d)).toBe(false);
    expect(existsSync(join(root, id))).toBe(false);
  });
});
