// The engine's remaining network options on real containers (busybox images built locally):
// --network container:NAME, --add-host, --dns/--dns-search/--dns-option, -P with `pivot port`
// and inspect, and a port conflict's error. Traffic only to loopback and the test's containers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Engine } from "../../src/engine/engine.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { createImage } from "../../src/image/create.ts";
import { IMAGE, runCollect } from "../fixtures/engine.ts";
import {
  hostState,
  httpBody,
  makeNetworkTestEngine,
  type NetworkTestEngine,
} from "../fixtures/network.ts";
import { isRoot, pivotCli } from "../helpers.ts";

const ready = isRoot && findConmon() !== null;
const tag = `o${process.pid % 100000}`;
const NET = `pvt${tag}-net`;
const EXPOSED = "localhost/busybox:exposed";
let t: NetworkTestEngine;
let engine: Engine;

const cli = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

beforeAll(async () => {
  if (!ready) return;
  // Test-only names (pvtTAG, 10.218.B.0/24, ...), so nothing collides with a real Pivot or
  // another test on this host.
  t = await makeNetworkTestEngine(tag, 218);
  engine = t.engine;
  // An image whose config EXPOSEs 80/tcp: the busybox layer with another config.
  const store = await engine.images();
  const base = await store.resolve(IMAGE);
  await createImage(store, {
    layers: base.layers,
    config: {
      ...base.config,
      config: { ...(base.config.config ?? {}), ExposedPorts: { "80/tcp": {} } },
    },
    refs: [EXPOSED],
  });
  await engine.networks.createNetwork(NET);
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
}, 120_000);

const HTTPD = (text: string, port: number) =>
  `mkdir -p /tmp/www && echo ${text} > /tmp/www/index.html && exec httpd -f -p ${port} -h /tmp/www`;

async function execOut(ref: string, cmd: string[]): Promise<string> {
  const h = await engine.exec(ref, { cmd });
  let out = "";
  h.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await h.wait();
  return out;
}

describe.skipIf(!ready)("engine: network options", () => {
  for (const mode of [NET, "none"]) {
    test(`--network container:NAME shares the interfaces of a container on ${mode}`, async () => {
      const a = await engine.run({
        image: IMAGE,
        name: `a-${mode}-${tag}`,
        cmd: ["sh", "-c", HTTPD("shared-ns", 8080)],
        network: mode,
        detach: true,
      });
      const mine = await execOut(a.id, ["sh", "-c", "readlink /proc/self/ns/net; ip addr"]);
      expect(mine).toContain("lo");
      if (mode === NET) expect(mine).toContain("10.218.");
      const script = `readlink /proc/self/ns/net; ip addr; echo ===; for i in $(seq ${mode === NET ? 50 : 1}); do wget -qO- http://127.0.0.1:8080/index.html && break; sleep 0.1; done; echo ===; hostname; cat /etc/hosts`;
      const b = await runCollect(engine, {
        image: IMAGE,
        cmd: ["sh", "-c", script],
        network: `container:a-${mode}-${tag}`,
        autoRemove: true,
      });
      expect(b.code).toBe(0);
      const [addr, body, rest] = b.stdout.split("===\n");
      expect(addr).toBe(mine);
      // Under --network none, lo stays down (the engine's none sandbox does not bring it up),
      // so the server is reachable on 127.0.0.1 only on a network; the namespace is shared.
      if (mode === NET) expect(body).toBe("shared-ns\n");
      // The other container's hostname and hosts file, as Docker's container: mode.
      expect(rest!.split("\n")[0]).toBe(a.id.slice(0, 12));
      expect(rest).toContain(a.id.slice(0, 12));
      await engine.remove(a.id, { force: true });
    }, 60_000);
  }

  test("--network container:NAME: the other must run; its own network options are refused", async () => {
    const stopped = await engine.create({ image: IMAGE, name: `idle-${tag}`, cmd: ["true"] });
    const joiner = await engine.create({
      image: IMAGE,
      cmd: ["true"],
      network: `container:idle-${tag}`,
    });
    await expect(engine.start(joiner.id)).rejects.toThrow("is not running");
    await expect(
      engine.create({
        image: IMAGE,
        network: `container:idle-${tag}`,
        addHosts: ["x:10.0.0.1"],
      }),
    ).rejects.toThrow("--add-host cannot be used with --network container:");
    const r = cli(["run", "--network", "container:nosuch", IMAGE, "true"]);
    expect(r.status).toBe(125);
    expect(r.stderr).toContain("no such container nosuch");
    await engine.remove(joiner.id, { force: true });
    await engine.remove(stopped.id, { force: true });
  }, 60_000);

  test("--add-host and --dns/--dns-search/--dns-option write /etc/hosts and /etc/resolv.conf", async () => {
    for (const network of ["none", NET]) {
      const r = cli([
        "run",
        "--rm",
        "--network",
        network,
        "--add-host",
        "db.example:192.0.2.10",
        "--add-host",
        "cache:192.0.2.11",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        IMAGE,
        "sh",
        "-c",
        "cat /etc/hosts; echo ===; cat /etc/resolv.conf",
      ]);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const [hosts, resolv] = r.stdout.split("===\n");
      expect(hosts).toContain("192.0.2.10\tdb.example\n");
      expect(hosts).toContain("192.0.2.11\tcache\n");
      expect(resolv).toBe("search example.test\nnameserver 192.0.2.53\noptions ndots:2\n");
    }
    const bad = cli(["run", "--rm", "--add-host", "nocolon", IMAGE, "true"]);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toContain('invalid --add-host "nocolon"');
  }, 60_000);

  test("-P publishes the EXPOSEd port; pivot port and inspect show it; a conflict is refused", async () => {
    const name = `web-${tag}`;
    const r = cli([
      "run",
      "-d",
      "--name",
      name,
      "--network",
      NET,
      "-P",
      EXPOSED,
      "sh",
      "-c",
      HTTPD("published-all", 80),
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const ports = engine.inspect(name).ports ?? [];
    expect(ports).toHaveLength(1);
    const p = ports[0]!;
    expect(p).toMatchObject({ hostIP: "", containerPort: 80, protocol: "tcp" });
    expect(p.hostPort).toBeGreaterThan(0);
    expect(await httpBody(`http://127.0.0.1:${p.hostPort}/index.html`)).toBe("published-all\n");
    expect(cli(["port", name]).stdout).toBe(`80/tcp -> 0.0.0.0:${p.hostPort}\n`);
    expect(cli(["port", name, "80/tcp"]).stdout).toBe(`0.0.0.0:${p.hostPort}\n`);
    expect(cli(["ps", "--format", "{{.Ports}}"]).stdout).toContain(`0.0.0.0:${p.hostPort}->80/tcp`);
    const none = cli(["port", name, "81"]);
    expect(none.status).toBe(125);
    expect(none.stderr).toContain("no public port 81 published");
    // The same host port again: one clear line naming the container that has it.
    const clash = cli([
      "run",
      "--rm",
      "--network",
      NET,
      "-p",
      `127.0.0.1:${p.hostPort}:80`,
      IMAGE,
      "true",
    ]);
    expect(clash.status).toBe(125);
    expect(clash.stderr).toContain(
      `host port 127.0.0.1:${p.hostPort}->80/tcp is already published by container ${name}`,
    );
    await engine.remove(name, { force: true });
  }, 60_000);

  test("after the networks are removed, nothing of the test's is left on the host", async () => {
    for (const c of await engine.list({ all: true })) await engine.remove(c.id, { force: true });
    for (const n of engine.networks.listNetworks()) await engine.networks.removeNetwork(n.name);
    const now = hostState();
    for (const trace of t.traces)
      expect(now.split("\n").filter((l) => l.includes(trace))).toEqual([]);
    // Every sandbox (namespace, veth, address, port rules) of the test's containers went too.
    expect(engine.networks.sandboxes()).toEqual([]);
  }, 60_000);
});
