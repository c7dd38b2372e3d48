// The engine with networks: `pivot run -p` and `--network NAME` on real containers (busybox
// images built locally). Traffic only to loopback and between the test's containers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Engine } from "../../src/engine/engine.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { freeHostPort } from "../../src/network/ports.ts";
import { IMAGE, runCollect } from "../fixtures/engine.ts";
import {
  hostState,
  httpBody,
  makeNetworkTestEngine,
  type NetworkTestEngine,
} from "../fixtures/network.ts";
import { isRoot, pivotCli } from "../helpers.ts";

const ready = isRoot && findConmon() !== null;
const tag = `e${process.pid % 100000}`;
const NET = `pvt${tag}-app`;
let t: NetworkTestEngine;
let engine: Engine;
let before = "";

const cli = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

beforeAll(async () => {
  if (!ready) return;
  before = hostState();
  // Test-only names (pvtTAG, 10.216.0.0/24, ...), so nothing collides with a real Pivot.
  t = await makeNetworkTestEngine(tag, 216);
  engine = t.engine;
});

afterAll(async () => {
  await t?.cleanup();
});

describe.skipIf(!ready)("engine: networks", () => {
  test("run -d --network bridge -p 127.0.0.1:PORT:80 httpd, fetched from the host", async () => {
    const port = await freeHostPort("tcp", "127.0.0.1");
    const c = await engine.run({
      image: IMAGE,
      name: `web-${tag}`,
      cmd: [
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo engine-ok > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www",
      ],
      network: "bridge",
      publish: [{ hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" }],
      detach: true,
    });
    expect(await httpBody(`http://127.0.0.1:${port}/index.html`)).toBe("engine-ok\n");
    expect(engine.networks.attachments(c.id)[0]?.network).toBe(`pvt${tag}`);
    await engine.stop(c.id, { timeout: 1 });
    // conmon's exit hook (another process) released the port and the namespace.
    for (let i = 0; i < 100 && engine.networks.sandboxes().includes(c.id); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(engine.networks.sandboxes()).not.toContain(c.id);
    expect(await fetch(`http://127.0.0.1:${port}/`).catch((e) => e as Error)).toBeInstanceOf(Error);
    await engine.remove(c.id);
  }, 60_000);

  test("--network NAME: containers reach each other by name and alias; -p needs a network", async () => {
    expect(cli(["network", "create", NET]).status).toBe(0);
    expect(cli(["network", "ls"]).stdout).toContain(NET);
    const srv = await engine.run({
      image: IMAGE,
      name: `srv-${tag}`,
      cmd: ["sh", "-c", "while true; do echo via-engine | nc -l -p 7000; done"],
      network: NET,
      networkAliases: ["db"],
      detach: true,
    });
    for (const name of [`srv-${tag}`, "db"]) {
      let out = "";
      for (let i = 0; i < 50 && !out.includes("via-engine"); i++) {
        const r = await runCollect(engine, {
          image: IMAGE,
          cmd: ["sh", "-c", `timeout 5 nc ${name} 7000; true`],
          network: NET,
          autoRemove: true,
        });
        out = r.stdout;
        if (!out) await new Promise((r) => setTimeout(r, 100));
      }
      expect(out.trim()).toBe("via-engine");
    }
    const inUse = cli(["network", "rm", NET]);
    expect(inUse.status).not.toBe(0);
    expect(inUse.stderr).toContain("is in use");
    await engine.remove(srv.id, { force: true });
    await expect(
      engine.create({
        image: IMAGE,
        publish: [{ hostIP: "", hostPort: 1, containerPort: 1, protocol: "tcp" }],
      }),
    ).rejects.toThrow("need a network");
    expect(cli(["network", "rm", NET]).status).toBe(0);
  }, 60_000);

  test("after the networks are removed, nothing of theirs is left on the host", async () => {
    for (const n of engine.networks.listNetworks()) await engine.networks.removeNetwork(n.name);
    // (test/integration/network.test.ts compares the whole host state; this one only looks for
    // its own traces, so that it holds while other tests change the host at the same time.)
    const now = hostState();
    for (const trace of t.traces)
      expect(now.split("\n").filter((l) => l.includes(trace))).toEqual([]);
    const veths = (s: string) => s.split("\n").filter((l) => /^\d+: veth/.test(l)).length;
    expect(veths(now)).toBeLessThanOrEqual(veths(before));
  });
});
