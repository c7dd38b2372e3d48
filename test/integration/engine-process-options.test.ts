// `pivot run`'s process and namespace options, in real containers: --ulimit, --oom-score-adj,
// --group-add, --shm-size, --device, --sysctl, --pid/--ipc/--uts host, --cpuset-cpus, --cidfile.
// Root; images built without network (test/fixtures/engine.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { IMAGE, makeTestEngine, runCollect, type TestEngine } from "../fixtures/engine.ts";
import { isRoot, pivotCli, rm, tempDir } from "../helpers.ts";

const RUNC = "/usr/sbin/runc";

if (!isRoot) throw new Error("the integration tests run real containers and need root");

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  t = await makeTestEngine();
  scratch = tempDir();
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rm(scratch);
}, 120_000);

// Whatever a failed test left goes before the next one.
afterEach(async () => {
  for (const c of await t.engine.list({ all: true })) {
    await t.engine.remove(c.id, { force: true, volumes: true }).catch(() => {});
  }
});

/** Runs `sh -c SCRIPT` attached and removed after; its output and exit code. */
const sh = (script: string, options: Record<string, unknown> = {}) =>
  runCollect(t.engine, {
    image: IMAGE,
    cmd: ["sh", "-c", script],
    autoRemove: true,
    network: "none",
    ...options,
  });

describe("the process", () => {
  test("--ulimit, --oom-score-adj, --group-add and --shm-size are what the process has", async () => {
    const r = await sh(
      "ulimit -n; ulimit -H -n; ulimit -c; cat /proc/self/oom_score_adj; id -G; df -k /dev/shm | tail -1",
      {
        ulimits: [
          { name: "nofile", soft: 512, hard: 1024 },
          { name: "core", soft: -1, hard: -1 },
        ],
        oomScoreAdj: 300,
        groupAdd: ["nogroup", "4242"],
        shmSize: "16m",
      },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [nofile, nofileHard, core, oom, groups, shm] = r.stdout.trim().split("\n");
    expect([nofile, nofileHard, core, oom]).toEqual(["512", "1024", "unlimited", "300"]);
    expect(groups!.split(" ").sort()).toEqual(["0", "4242", "65534"]);
    expect(shm!.split(/\s+/)[1]).toBe("16384");
  });

  test("--ulimit given twice for one limit: the last one counts, as Docker's", () => {
    const r = pivotCli(t.root, [
      "run",
      "--rm",
      "--network",
      "none",
      "--ulimit",
      "nofile=100",
      "--ulimit",
      "nofile=200:300",
      IMAGE,
      "sh",
      "-c",
      "ulimit -n; ulimit -H -n",
    ]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("200\n300\n");
  });

  test.skipIf(!existsSync(RUNC))(
    "--ulimit NAME=-1 under --runtime runc: config.json says 18446744073709551615, which runc reads",
    async () => {
      const r = await sh("ulimit -c; ulimit -H -c", {
        runtime: RUNC,
        ulimits: [{ name: "core", soft: -1, hard: -1 }],
      });
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("unlimited\nunlimited\n");
    },
  );

  test("--cpuset-cpus confines the process to those CPUs", async () => {
    const r = await sh("grep Cpus_allowed_list /proc/self/status", { cpusetCpus: "0" });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("Cpus_allowed_list:\t0");
  });
});

describe("devices", () => {
  test("--device: the node appears where asked, and the cgroup allows only its permissions", async () => {
    const script =
      "ls -l /dev/lc; (exec 3</dev/lc) && echo read-ok; (exec 4>/dev/lc) || echo write-refused";
    const readOnly = await sh(script, {
      devices: [{ hostPath: "/dev/loop-control", containerPath: "/dev/lc", permissions: "r" }],
    });
    expect(readOnly.stdout).toMatch(/^crw-------\s+1 root\s+root\s+10,\s+237 .* \/dev\/lc\n/);
    expect(readOnly.stdout).toContain("read-ok\nwrite-refused\n");
    expect(readOnly.stderr).toContain("Operation not permitted");
    const readWrite = await sh("(exec 4>/dev/lc) && echo write-ok", {
      devices: [{ hostPath: "/dev/loop-control", containerPath: "/dev/lc", permissions: "rwm" }],
    });
    expect(readWrite.stdout).toBe("write-ok\n");
    const without = await sh("ls /dev/lc /dev/loop-control 2>&1; true");
    expect(without.stdout).toContain("No such file or directory");
  });

  test("--device DIRECTORY without device nodes is refused, as Docker's, not run without them", () => {
    const empty = join(scratch, "no-devices");
    mkdirSync(empty);
    writeFileSync(join(empty, "file"), "");
    // /dev/fd: a symlink to a directory of symlinks, some gone by the time they are looked at.
    for (const dir of [empty, "/dev/fd"]) {
      const r = pivotCli(t.root, [
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        dir,
        IMAGE,
        "true",
      ]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(`--device ${dir}: no device node in this directory`);
    }
    expect(readdirSync(join(t.root, "containers")).filter((n) => !n.startsWith("."))).toEqual([]);
  });
});

describe("sysctls", () => {
  test("--sysctl sets the container's own network and IPC values; the host's stay", async () => {
    const hostForward = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const hostShmmax = readFileSync("/proc/sys/kernel/shmmax", "utf8");
    const flipped = hostForward.trim() === "1" ? "0" : "1";
    const r = await sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax", {
      sysctls: { "net.ipv4.ip_forward": flipped, "kernel.shmmax": "123456" },
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${flipped}\n123456\n`);
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostForward);
    expect(readFileSync("/proc/sys/kernel/shmmax", "utf8")).toBe(hostShmmax);
  });

  test("a sysctl of the host's kernel is refused before anything is created", async () => {
    const containers = readdirSync(join(t.root, "containers")).length;
    const r = pivotCli(t.root, ["run", "--rm", "--sysctl", "vm.swappiness=1", IMAGE, "true"]);
    expect(r.status).toBe(125);
    expect(r.stderr).toContain(
      '--sysctl vm.swappiness: "vm.swappiness" is not in a namespace of its own',
    );
    const hostNet = pivotCli(t.root, [
      "run",
      "--rm",
      "--network",
      "host",
      "--sysctl",
      "net.ipv4.ip_forward=1",
      IMAGE,
      "true",
    ]);
    expect(hostNet.stderr).toContain("which this container shares with the host");
    expect(readdirSync(join(t.root, "containers")).length).toBe(containers);
    expect(await t.engine.list({ all: true })).toEqual([]);
  });
});

describe("namespaces", () => {
  test("--pid host sees the host's processes; --uts host has its hostname; --ipc host its IPC namespace", async () => {
    const r = await sh(
      "cat /proc/1/comm; hostname; cat /etc/hostname; echo $HOSTNAME; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid",
      { pid: "host", uts: "host", ipc: "host" },
    );
    expect(r.stderr).toBe("");
    const hostname = readFileSync("/proc/sys/kernel/hostname", "utf8").trim();
    expect(r.stdout.split("\n")).toEqual([
      readFileSync("/proc/1/comm", "utf8").trim(),
      hostname,
      hostname,
      hostname,
      readlinkSync("/proc/self/ns/ipc"),
      readlinkSync("/proc/self/ns/pid"),
      "",
    ]);
    const own = await sh("cat /proc/1/comm; readlink /proc/self/ns/ipc");
    expect(own.stdout.split("\n")[0]).toBe("sh"); // its own PID 1: the shell
    expect(own.stdout.split("\n")[1]).not.toBe(readlinkSync("/proc/self/ns/ipc"));
  });
});

describe("--pid container:NAME", () => {
  test("joins a running container's PID namespace; a stopped or missing one is refused", async () => {
    const donor = await t.engine.run({
      image: IMAGE,
      name: "pid-donor",
      cmd: ["sleep", "60"],
      detach: true,
      network: "none",
    });
    const r = await sh("cat /proc/1/cmdline; echo; ps -o pid,comm", {
      pid: "container:pid-donor",
    });
    expect(r.stderr).toBe("");
    const [cmdline, , ...ps] = r.stdout.split("\n");
    expect(cmdline).toBe("sleep\u000060\u0000");
    // Its PID 1 is the donor's sleep, and this container's own ps is in the same list.
    const rows = ps.map((l) => l.trim().split(/\s+/));
    expect(rows).toContainEqual(["1", "sleep"]);
    expect(rows.some(([pid, comm]) => comm === "ps" && pid !== "1")).toBe(true);
    await t.engine.stop(donor.id, { timeout: 0 });
    const stopped = pivotCli(t.root, [
      "run",
      "--rm",
      "--pid",
      "container:pid-donor",
      IMAGE,
      "true",
    ]);
    expect(stopped.status).toBe(125);
    expect(stopped.stderr).toContain(
      "cannot join the PID namespace of container pid-donor: it is not running",
    );
    const missing = pivotCli(t.root, ["run", "--rm", "--pid", "container:nosuch", IMAGE, "true"]);
    expect(missing.stderr).toContain("--pid container:nosuch: no such container nosuch");
    expect((await t.engine.list({ all: true })).map((c) => c.name)).toEqual(["pid-donor"]);
  });
});

describe("pivot update", () => {
  /** The container's memory limit and pids.max as it sees them (cgroup v1 or v2). */
  async function limitsIn(ref: string): Promise<string> {
    const c = await t.engine.exec(ref, {
      cmd: [
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
      ],
      stdio: "pipe",
    });
    let out = "";
    c.stdout?.on("data", (d: Buffer) => {
      out += d;
    });
    expect(await c.wait()).toBe(0);
    return out;
  }

  /** The container's memory+swap limit as it sees it (cgroup v1's memory.memsw). */
  async function memswIn(ref: string): Promise<string> {
    const c = await t.engine.exec(ref, {
      cmd: ["cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"],
      stdio: "pipe",
    });
    let out = "";
    c.stdout?.on("data", (d: Buffer) => {
      out += d;
    });
    expect(await c.wait()).toBe(0);
    return out.trim();
  }

  test("limits change at once in a running container and stay for its next start; so does the policy", async () => {
    const c = await t.engine.run({
      image: IMAGE,
      name: "updated",
      cmd: ["sleep", "60"],
      detach: true,
      network: "none",
      memory: "64m",
      pidsLimit: 20,
    });
    expect(await limitsIn(c.id)).toBe(`${64 * 1024 * 1024}\n20\n`);
    const r = pivotCli(t.root, [
      "update",
      "--memory",
      "128m",
      "--pids-limit",
      "50",
      "--restart",
      "on-failure:3",
      "updated",
    ]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("updated\n");
    expect(await limitsIn(c.id)).toBe(`${128 * 1024 * 1024}\n50\n`);
    expect(t.engine.inspect("updated").restartPolicy).toEqual({
      name: "on-failure",
      maximumRetryCount: 3,
    });
    await t.engine.stop("updated", { timeout: 0 });
    await t.engine.start("updated");
    expect(await limitsIn(c.id)).toBe(`${128 * 1024 * 1024}\n50\n`);
  });

  test.skipIf(!existsSync("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"))(
    "--memory-swap alone changes the memory+swap limit (at once and for the next start); without a memory limit it is refused",
    async () => {
      await t.engine.run({
        image: IMAGE,
        name: "swap-updated",
        cmd: ["sleep", "60"],
        detach: true,
        network: "none",
        memory: "64m",
        memorySwap: "64m",
      });
      expect(await memswIn("swap-updated")).toBe(String(64 * 1024 * 1024));
      const r = pivotCli(t.root, ["update", "--memory-swap", "128m", "swap-updated"]);
      expect(r.stderr).toBe("");
      expect(await memswIn("swap-updated")).toBe(String(128 * 1024 * 1024));
      await t.engine.stop("swap-updated", { timeout: 0 });
      await t.engine.start("swap-updated");
      expect(await memswIn("swap-updated")).toBe(String(128 * 1024 * 1024));
      expect((await limitsIn("swap-updated")).split("\n")[0]).toBe(String(64 * 1024 * 1024));
      await t.engine.run({
        image: IMAGE,
        name: "no-memory-limit",
        cmd: ["sleep", "60"],
        detach: true,
        network: "none",
      });
      const refused = pivotCli(t.root, ["update", "--memory-swap", "128m", "no-memory-limit"]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain("--memory-swap needs a memory limit");
      expect(t.engine.inspect("no-memory-limit").options.memorySwap).toBeUndefined();
    },
  );

  test.skipIf(!existsSync("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"))(
    "--memory alone allows as much swap again (memory+swap twice the memory), as Docker's; update --memory above that is refused",
    async () => {
      // Without it, a container limited to 64m could swap without bound.
      const c = await t.engine.run({
        image: IMAGE,
        name: "swap-default",
        cmd: ["sleep", "60"],
        detach: true,
        network: "none",
        memory: "64m",
      });
      expect(await memswIn(c.id)).toBe(String(128 * 1024 * 1024));
      const shown = pivotCli(t.root, ["inspect", "--format", "{{.HostConfig.MemorySwap}}", c.id]);
      expect(shown.stdout.trim()).toBe(String(128 * 1024 * 1024));
      const above = pivotCli(t.root, ["update", "--memory", "256m", "swap-default"]);
      expect(above.status).toBe(1);
      expect(above.stderr).toContain("is above container swap-default's memory+swap limit");
      expect((await limitsIn(c.id)).split("\n")[0]).toBe(String(64 * 1024 * 1024));
      const both = pivotCli(t.root, ["update", "--memory", "256m", "--memory-swap", "512m", c.id]);
      expect(both.stderr).toBe("");
      expect((await limitsIn(c.id)).split("\n")[0]).toBe(String(256 * 1024 * 1024));
    },
  );

  test("--pids-limit -1 (or 0) lifts the limit, as docker update's does, at once and for the next start", async () => {
    await t.engine.run({
      image: IMAGE,
      name: "pids-unlimited",
      cmd: ["sleep", "60"],
      detach: true,
      network: "none",
      pidsLimit: 20,
    });
    const r = pivotCli(t.root, ["update", "--pids-limit", "-1", "pids-unlimited"]);
    expect(r.stderr).toBe("");
    expect((await limitsIn("pids-unlimited")).split("\n")[1]).toBe("max");
    await t.engine.stop("pids-unlimited", { timeout: 0 });
    await t.engine.start("pids-unlimited");
    expect((await limitsIn("pids-unlimited")).split("\n")[1]).toBe("max");
  });

  test.skipIf(!existsSync(RUNC))(
    "a container of another runtime (--runtime runc) is updated through its `update`",
    async () => {
      const c = await t.engine.run({
        image: IMAGE,
        name: "updated-runc",
        cmd: ["sleep", "60"],
        detach: true,
        network: "none",
        runtime: RUNC,
        pidsLimit: 20,
      });
      await t.engine.update("updated-runc", { pidsLimit: 44 });
      expect((await limitsIn(c.id)).split("\n")[1]).toBe("44");
    },
  );

  test("CPUs this host does not have are refused, as Docker does, before anything changes (update was half applied)", async () => {
    await t.engine.run({
      image: IMAGE,
      name: "cpuset-checked",
      cmd: ["sleep", "60"],
      detach: true,
      network: "none",
      memory: "64m",
    });
    const r = pivotCli(t.root, [
      "update",
      "--memory",
      "128m",
      "--cpuset-cpus",
      "99",
      "cpuset-checked",
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--cpuset-cpus 99: CPU 99 is not available");
    // Nothing of it applied: the memory limit is the one recorded.
    expect((await limitsIn("cpuset-checked")).split("\n")[0]).toBe(String(64 * 1024 * 1024));
    expect(t.engine.inspect("cpuset-checked").options.memory).toBe("64m");
    const created = pivotCli(t.root, ["run", "--rm", "--cpuset-mems", "0,7", IMAGE, "true"]);
    expect(created.status).toBe(125);
    expect(created.stderr).toContain("--cpuset-mems 0,7: memory node 7 is not available");
    expect((await t.engine.list({ all: true })).map((c) => c.name)).toEqual(["cpuset-checked"]);
  });

  test("a value the kernel refuses leaves the old limits, in the cgroup and in the records (the memory limit written before it stayed)", async () => {
    const c = await t.engine.run({
      image: IMAGE,
      name: "refused",
      cmd: ["sleep", "60"],
      detach: true,
      network: "none",
      memory: "64m",
      pidsLimit: 20,
    });
    const config = join(t.root, "containers", c.id, "config.json");
    const configBefore = readFileSync(config, "utf8");
    // --cpus 0.001 is a CFS quota of 100 µs, below the kernel's 1 ms: written after the memory
    // limits (the order of the cgroup writes), and refused.
    const r = pivotCli(t.root, [
      "update",
      "--memory",
      "128m",
      "--pids-limit",
      "50",
      "--cpus",
      "0.001",
      "refused",
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('linux.resources.cpu.quota: writing "100" to ');
    expect(r.stderr).not.toContain("could not all be put back");
    expect(await limitsIn(c.id)).toBe(`${64 * 1024 * 1024}\n20\n`);
    const { options } = t.engine.inspect("refused");
    expect([options.memory, options.pidsLimit, options.cpus]).toEqual(["64m", 20, undefined]);
    expect(readFileSync(config, "utf8")).toBe(configBefore);
    await t.engine.stop("refused", { timeout: 0 });
    await t.engine.start("refused");
    expect(await limitsIn(c.id)).toBe(`${64 * 1024 * 1024}\n20\n`);
  });

  test("an update killed between its record and config.json is finished by the next start", async () => {
    const c = await t.engine.create({
      image: IMAGE,
      name: "half-updated",
      cmd: ["sleep", "60"],
      network: "none",
      pidsLimit: 20,
    });
    // What `pivot update --pids-limit 33` leaves when killed after its commit (container.json,
    // with the resources config.json is to get) and before config.json.
    const dir = join(t.root, "containers", c.id);
    const record = JSON.parse(readFileSync(join(dir, "container.json"), "utf8"));
    const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(spec.linux.resources.pids).toEqual({ limit: 20 });
    record.options.pidsLimit = 33;
    record.pendingResources = { ...spec.linux.resources, pids: { limit: 33 } };
    writeFileSync(join(dir, "container.json"), JSON.stringify(record));
    await t.engine.start("half-updated");
    expect((await limitsIn(c.id)).split("\n")[1]).toBe("33");
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).linux.resources.pids).toEqual(
      {
        limit: 33,
      },
    );
    expect(JSON.parse(readFileSync(join(dir, "container.json"), "utf8"))).not.toHaveProperty(
      "pendingResources",
    );
    expect(t.engine.inspect("half-updated").options.pidsLimit).toBe(33);
  });

  test("a created container gets the new limits when it starts; nothing to change, or a conflict, is an error", async () => {
    await t.engine.create({ image: IMAGE, name: "later", cmd: ["sleep", "60"], network: "none" });
    await t.engine.update("later", { pidsLimit: 33 });
    await t.engine.start("later");
    expect((await limitsIn("later")).split("\n")[1]).toBe("33");
    expect(pivotCli(t.root, ["update", "later"]).stderr).toContain("nothing to change");
    await t.engine.create({
      image: IMAGE,
      name: "removed-on-exit",
      autoRemove: true,
      network: "none",
    });
    const conflict = pivotCli(t.root, ["update", "--restart", "always", "removed-on-exit"]);
    expect(conflict.status).toBe(1);
    expect(conflict.stderr).toContain("Conflicting options: --restart and --rm");
    expect(t.engine.inspect("removed-on-exit").restartPolicy.name).toBe("no");
  });
});

describe("--cidfile", () => {
  test("the id is written once the container exists; an existing file is refused; a failed create leaves none", () => {
    const cidfile = join(scratch, "cid");
    const r = pivotCli(t.root, ["run", "--cidfile", cidfile, "--name", "cid-test", IMAGE, "true"]);
    expect(r.stderr).toBe("");
    const id = readFileSync(cidfile, "utf8");
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(pivotCli(t.root, ["inspect", "cid-test"]).stdout).toContain(id);
    const again = pivotCli(t.root, ["run", "--rm", "--cidfile", cidfile, IMAGE, "true"]);
    expect(again.status).toBe(125);
    expect(again.stderr).toContain(`the container id file ${cidfile} exists already`);
    expect(readFileSync(cidfile, "utf8")).toBe(id);
    const failed = join(scratch, "cid-failed");
    const bad = pivotCli(t.root, ["create", "--cidfile", failed, "--user", "nosuch", IMAGE]);
    expect(bad.status).toBe(125);
    expect(existsSync(failed)).toBe(false);
    writeFileSync(cidfile, ""); // left for the scratch directory's removal
  });

  test("a run whose start fails keeps the id of the container it created, as Docker's; a --rm one's goes with it", () => {
    for (const detach of [[], ["-d"]]) {
      const cidfile = join(scratch, `cid-start-failed${detach.join("")}`);
      const r = pivotCli(t.root, ["run", ...detach, "--cidfile", cidfile, IMAGE, "/nonexistent"]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain("/nonexistent");
      const ids = pivotCli(t.root, ["ps", "-a", "-q", "--no-trunc"]).stdout.trim().split("\n");
      expect(ids).toHaveLength(1);
      expect(readFileSync(cidfile, "utf8")).toBe(ids[0]!);
      pivotCli(t.root, ["rm", "-f", ids[0]!]);
      const removed = join(scratch, `cid-rm-failed${detach.join("")}`);
      const rm = pivotCli(t.root, [
        "run",
        "--rm",
        ...detach,
        "--cidfile",
        removed,
        IMAGE,
        "/nonexistent",
      ]);
      expect(rm.status).not.toBe(0);
      expect(pivotCli(t.root, ["ps", "-a", "-q"]).stdout).toBe("");
      expect(existsSync(removed)).toBe(false);
    }
  });
});
