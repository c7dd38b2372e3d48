// Failing runs, creates and starts leave nothing behind: no volume, network namespace, veth,
// address, port rule, run state or monitor, with real containers (busybox images built locally).
// Traffic only to loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Engine } from "../../src/engine/engine.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { importRootfs } from "../../src/image/create.ts";
import { freeHostPort, type PortMapping } from "../../src/network/ports.ts";
import { IMAGE, makeBusyboxTar, mountsUnder, runCollect } from "../fixtures/engine.ts";
import { makeNetworkTestEngine, type NetworkTestEngine, subnetBlock } from "../fixtures/network.ts";
import { BUN, isRoot, pivotCli, REPO } from "../helpers.ts";

const ready = isRoot && findConmon() !== null;
const tag = `f${process.pid % 100000}`;
const SUBNET_N = 221;
let t: NetworkTestEngine;
let engine: Engine;
let scratch: string;

const cli = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

beforeAll(async () => {
  if (!ready) return;
  t = await makeNetworkTestEngine(tag, SUBNET_N);
  engine = t.engine;
  scratch = mkdtempSync(join(tmpdir(), "pivot-failures-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Veths on the test's default bridge: one per container connected to it. */
function bridgePorts(): string {
  return spawnSync("ip", ["-o", "link", "show", "master", `pvt${tag}0`], {
    encoding: "utf8",
  }).stdout.trim();
}

/** Processes whose command line names the container (its conmon, its runtime). */
function processesOf(id: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "utf8").includes(id)) out.push(Number(p));
    } catch {}
  }
  return out;
}

describe.skipIf(!ready)("engine: what a failure leaves", () => {
  // The bind source directory it made stays, as Docker's does: another create may have found it
  // made and use it by now (removing it took the directory from under that one).
  test("a run whose bind source cannot be created removes the named volume it made, keeps the bind source directory it made, and says which source failed", () => {
    const vol = `failvol${tag}`;
    const kept = `keptvol${tag}`;
    expect(cli(["volume", "create", kept]).status).toBe(0);
    const r = cli([
      "run",
      "--rm",
      "-v",
      `${vol}:/data`,
      "-v",
      `${kept}:/kept`,
      "-v",
      `${scratch}/made/by/run:/made`,
      "-v",
      "/etc/hostname/sub:/x",
      IMAGE,
      "true",
    ]);
    expect(r.status).toBe(125);
    expect(r.stderr).toBe(
      "pivot: cannot create the bind mount source /etc/hostname/sub for /x: not a directory\n" +
        "  hint: -v creates a missing source directory: give a path whose parents are directories (not files, not /proc or /sys), or create it first\n",
    );
    const volumes = cli(["volume", "ls", "-q"]).stdout.split("\n");
    expect(volumes).not.toContain(vol);
    expect(volumes).toContain(kept); // not made by the failed run: stays
    expect(readdirSync(join(scratch, "made", "by", "run"))).toEqual([]);
    expect(cli(["ps", "-aq"]).stdout).toBe("");
    expect(readdirSync(join(t.root, "names"))).toEqual([]);
    expect(cli(["volume", "rm", kept]).status).toBe(0);
  }, 60_000);

  test("run -d -p with the host port in use: the container stays Created (not Exited 137), its conmon ended, nothing of its network left", async () => {
    const port = await freeHostPort("tcp", "127.0.0.1");
    const holder: Server = createServer();
    await new Promise<void>((res) => holder.listen(port, "127.0.0.1", () => res()));
    try {
      const portsBefore = bridgePorts();
      const err = await engine
        .run({
          image: IMAGE,
          name: `busy-${tag}`,
          cmd: ["sleep", "100"],
          network: "bridge",
          publish: [{ hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" }],
          detach: true,
        })
        .then(
          () => null,
          (e: Error) => e,
        );
      expect(err?.message).toBe(
        `host port 127.0.0.1:${port}/tcp is in use by another program on the host`,
      );
      const info = engine.inspect(`busy-${tag}`);
      // Give a conmon that was not ended the time to record its exit.
      await new Promise((r) => setTimeout(r, 500));
      expect(engine.inspect(info.id).state.status).toBe("created");
      const dir = join(t.root, "containers", info.id);
      expect(existsSync(join(dir, "state.json"))).toBe(false);
      expect(existsSync(join(dir, "exit"))).toBe(false);
      expect(processesOf(info.id)).toEqual([]);
      expect(engine.networks.sandboxes()).not.toContain(info.id);
      expect(bridgePorts()).toBe(portsBefore);
      expect(mountsUnder(dir)).toEqual([]);
      await engine.remove(info.id, { force: true });
      expect(existsSync(dir)).toBe(false);
    } finally {
      await new Promise((r) => holder.close(r));
    }
  }, 60_000);

  test("an attached run killed after its network was connected, before its process: ps releases the namespace, veth and address; it stays Created", async () => {
    const portsBefore = bridgePorts();
    await withStalledRun(`stalled-${tag}`, [], async (id) => {
      const listed = await engine.list({ all: true });
      expect(listed.find((c) => c.id === id)?.state.status).toBe("created");
      expect(engine.networks.sandboxes()).not.toContain(id);
      expect(mountsUnder(join(t.root, "run", "network", "netns"))).toEqual([]);
      expect(bridgePorts()).toBe(portsBefore);
    });
  }, 60_000);

  test("the host port of such a killed run is free for the next run at once, without a ps first", async () => {
    const port = await freeHostPort("tcp", "127.0.0.1");
    const publish = [
      { hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" as const },
    ];
    await withStalledRun(`stalled-port-${tag}`, publish, async (id) => {
      // Before: "host port ... is already published by container stalled-port-..." until a ps.
      const next = await runCollect(engine, {
        image: IMAGE,
        cmd: ["echo", "published"],
        network: "bridge",
        publish,
        autoRemove: true,
      });
      expect(next).toMatchObject({ code: 0, stdout: "published\n" });
      expect(engine.networks.sandboxes()).not.toContain(id);
      expect(engine.inspect(id).state.status).toBe("created");
    });
  }, 60_000);
});

/**
 * An attached run (in another process) whose runtime never makes the process, killed with
 * SIGKILL once its network is connected: then `check(id)`, then the container is removed.
 */
async function withStalledRun(
  name: string,
  publish: PortMapping[],
  check: (id: string) => Promise<void>,
): Promise<void> {
  const runtimePid = join(scratch, `${name}.pid`);
  const runtime = join(scratch, `${name}-runtime`);
  writeFileSync(
    runtime,
    `#!/bin/sh\ncase " $* " in *" run "*) echo $$ > ${runtimePid}; exec sleep 60;; esac\nexit 1\n`,
  );
  chmodSync(runtime, 0o755);
  const script = join(scratch, `${name}.ts`);
  writeFileSync(
    script,
    `import { Engine } from ${JSON.stringify(join(REPO, "src/engine/engine.ts"))};
const engine = new Engine({
  root: ${JSON.stringify(t.root)},
  warn: () => {},
  network: ${JSON.stringify(networkSettings())},
});
await engine.run(${JSON.stringify({ image: IMAGE, name, cmd: ["true"], network: "bridge", publish, runtime, stdio: "ignore" })});
`,
  );
  const child: ChildProcess = spawn(BUN, [script], { stdio: "ignore" });
  let id = "";
  try {
    for (let i = 0; i < 300 && !existsSync(runtimePid); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(runtimePid)).toBe(true);
    id = engine.inspect(name).id;
    for (let i = 0; i < 200 && engine.networks.attachments(id).length === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(engine.networks.attachments(id)).toHaveLength(1);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    process.kill(Number(readFileSync(runtimePid, "utf8")), "SIGKILL");
    await check(id);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    try {
      process.kill(Number(readFileSync(runtimePid, "utf8")), "SIGKILL");
    } catch {}
    if (id) await engine.remove(id, { force: true }).catch(() => {});
  }
}

describe.skipIf(!ready)("engine: a working directory that is a file", () => {
  test("run --rm -w /etc/passwd: the error says what to give; nothing is left", () => {
    const r = cli(["run", "--rm", "-w", "/etc/passwd", IMAGE, "true"]);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(
      /^pivot: step \d+ \(chdir \/etc\/passwd\) failed: chdir to the working directory \/etc\/passwd: not a directory\n {2}hint: process\.cwd \(-w, or the image's WorkingDir\) names a file in the root filesystem: give a directory\n$/,
    );
    expect(cli(["ps", "-aq"]).stdout).toBe("");
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
  }, 60_000);
});

describe.skipIf(!ready)("engine: another OCI runtime that fails", () => {
  test("run -d --runtime /bin/false: says which runtime failed and what to do; the container stays Created, nothing runs or is mounted", async () => {
    const r = cli([
      "run",
      "-d",
      "--name",
      `false-${tag}`,
      "--runtime",
      "/bin/false",
      IMAGE,
      "true",
    ]);
    expect(r.status).toBe(125);
    expect(r.stderr).toBe(
      "pivot: conmon exited before the container was created\n" +
        "  hint: the OCI runtime /bin/false failed to create it: check that `/bin/false --version` runs, or leave out --runtime\n",
    );
    const id = engine.inspect(`false-${tag}`).id;
    expect(engine.inspect(id).state.status).toBe("created");
    // conmon runs its exit hook even for a create that failed: the hook finds no run and ends.
    for (let i = 0; i < 100 && processesOf(id).length > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(processesOf(id)).toEqual([]);
    expect(mountsUnder(join(t.root, "containers", id))).toEqual([]);
    expect(cli(["rm", id]).status).toBe(0);
  }, 60_000);
});

describe.skipIf(!ready)("engine: a start whose image layer is gone", () => {
  test("start and start -a say which layer is missing and what to do; nothing is left mounted", async () => {
    const ref = `localhost/layer-gone-${tag}:1`;
    const tar = join(scratch, "gone.tar");
    makeBusyboxTar(tar, (rootfs) => writeFileSync(join(rootfs, "marker"), `${tag}\n`));
    await importRootfs(await engine.images(), tar, {
      refs: [ref],
      config: { config: { Cmd: ["true"], Env: ["PATH=/bin"] } },
    });
    rmSync(tar);
    const run = cli(["run", "--name", `gone-${tag}`, ref]);
    expect(run.status).toBe(0);
    const r = JSON.parse(
      readFileSync(
        join(t.root, "containers", engine.inspect(`gone-${tag}`).id, "container.json"),
        "utf8",
      ),
    ) as { id: string; overlay: { lowerdirs: string[]; cwd: string; target: string } };
    const layer = realpathSync(join(r.overlay.cwd, r.overlay.lowerdirs[0]!));
    renameSync(layer, `${layer}.aside`);
    try {
      for (const args of [["start"], ["start", "-a"]]) {
        const failed = cli([...args, `gone-${tag}`]);
        expect(failed.status).toBe(125);
        expect(failed.stderr).toBe(
          `pivot: overlay ${r.overlay.target}: mount failed: its lower layer ${join(r.overlay.cwd, r.overlay.lowerdirs[0]!)} is missing from the store\n` +
            "  hint: the image's layers were removed or damaged: remove this container (`pivot rm`), then pull or load its image again\n",
        );
        expect(mountsUnder(join(t.root, "containers", r.id))).toEqual([]);
        expect(processesOf(r.id)).toEqual([]);
      }
    } finally {
      renameSync(`${layer}.aside`, layer);
    }
    expect(cli(["rm", "-f", `gone-${tag}`]).status).toBe(0);
    expect(cli(["rmi", ref]).status).toBe(0);
  }, 60_000);
});

/** The test engine's network settings (makeNetworkTestEngine's), for an engine in another process. */
function networkSettings(): Record<string, unknown> {
  return {
    defaultNetwork: `pvt${tag}`,
    defaultBridge: `pvt${tag}0`,
    defaultSubnets: [
      `10.${SUBNET_N}.${subnetBlock}.0/24`,
      `10.${SUBNET_N}.${subnetBlock + 1}.0/24`,
    ],
    subnetPools: [`10.${SUBNET_N}.${subnetBlock + 16}.0/20`],
    chainPrefix: `PVT${tag}`,
  };
}
