// The engine with networks: `pivot run -p` and `--network NAME` on real containers (busybox
// images built locally). Traffic only to loopback and between the test's containers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Engine } from "../../src/engine/engine.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { freeHostPort } from "../../src/network/ports.ts";
import { IMAGE, mountsUnder, runCollect } from "../fixtures/engine.ts";
import {
  hostOutput,
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

const cli = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

beforeAll(async () => {
  if (!ready) return;
  // Test-only names (pvtTAG, 10.216.B.0/24, ...), so nothing collides with a real Pivot.
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
    const attached = engine.networks.attachments(c.id)[0];
    expect(attached?.network).toBe(`pvt${tag}`);
    // inspect's NetworkSettings, as Docker's templates read them.
    const ip = cli([
      "inspect",
      "-f",
      "{{.NetworkSettings.IPAddress}} {{range $n, $s := .NetworkSettings.Networks}}{{$n}} {{$s.IPAddress}}/{{$s.IPPrefixLen}} {{$s.Gateway}}{{end}}",
      c.id,
    ]);
    expect(ip.stdout).toBe(
      `${attached!.ip} pvt${tag} ${attached!.ip}/${attached!.prefixLength} ${attached!.gateway}\n`,
    );
    await engine.stop(c.id, { timeout: 1 });
    // conmon's exit hook (another process) released the port and the namespace.
    for (let i = 0; i < 100 && engine.networks.sandboxes().includes(c.id); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(engine.networks.sandboxes()).not.toContain(c.id);
    expect(await fetch(`http://127.0.0.1:${port}/`).catch((e) => e as Error)).toBeInstanceOf(Error);
    await engine.remove(c.id);
  }, 60_000);

  test("ps (the engine's recovery) puts back Pivot's rules removed behind its back", async () => {
    const c = await engine.run({
      image: IMAGE,
      name: `rules-${tag}`,
      cmd: ["sleep", "100"],
      network: "bridge",
      detach: true,
    });
    const P = `PVT${tag}`;
    const ours = () =>
      hostOutput("iptables-save", [])
        .split("\n")
        .filter((l) => l.includes(`-j ${P}-`) || l.startsWith(`-A ${P}-POSTROUTING`));
    const installed = ours();
    expect(installed).toContain(`-A FORWARD -j ${P}-FORWARD`);
    expect(installed.filter((l) => l.includes("MASQUERADE"))).toHaveLength(1);
    // A firewall's reload, or iptables -F, while the container runs.
    spawnSync("iptables", ["-w", "-D", "FORWARD", "-j", `${P}-FORWARD`]);
    spawnSync("iptables", ["-w", "-t", "nat", "-D", "POSTROUTING", "-j", `${P}-POSTROUTING`]);
    spawnSync("iptables", ["-w", "-t", "nat", "-F", `${P}-POSTROUTING`]);
    expect(ours().filter((l) => l.includes("MASQUERADE"))).toEqual([]);
    await engine.list();
    expect(ours().sort()).toEqual(installed.sort());
    await engine.remove(c.id, { force: true });
  }, 60_000);

  test("--network NAME: containers reach each other by name and alias; -p needs a network", async () => {
    expect(cli(["network", "create", NET]).status).toBe(0);
    expect(cli(["network", "ls"]).stdout).toContain(NET);
    // Its labels are a Go map for --format, as Docker's: a missing key is <no value>.
    expect(cli(["network", "inspect", "-f", "{{.Labels.nope}}", NET])).toEqual({
      status: 0,
      stdout: "<no value>\n",
      stderr: "",
    });
    const srv = await engine.run({
      image: IMAGE,
      name: `srv-${tag}`,
      cmd: ["sh", "-c", "while true; do echo via-engine | nc -l -p 7000; done"],
      network: NET,
      networkAliases: ["db"],
      detach: true,
    });
    /** What the server answers to a client on NET that asks for it by NAME. */
    const answer = async (name: string) => {
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
      return out.trim();
    };
    for (const name of [`srv-${tag}`, "db"]) expect(await answer(name)).toBe("via-engine");
    const inUse = cli(["network", "rm", NET]);
    expect(inUse.status).not.toBe(0);
    expect(inUse.stderr).toContain(`network "${NET}" has 1 active endpoint (srv-${tag})`);
    // -f is no way round it, as Docker's (its -f only skips a network that does not exist): it
    // detached the running container, whose record still said it was connected.
    const forced = cli(["network", "rm", "-f", NET]);
    expect(forced).toMatchObject({ status: 1, stdout: "" });
    expect(forced.stderr).toContain(`network "${NET}" has 1 active endpoint (srv-${tag})`);
    expect(cli(["network", "ls"]).stdout).toContain(NET);
    expect(engine.networks.attachments(srv.id).map((a) => a.network)).toEqual([NET]);
    expect(await answer(`srv-${tag}`)).toBe("via-engine");
    await engine.remove(srv.id, { force: true });
    await expect(
      engine.create({
        image: IMAGE,
        publish: [{ hostIP: "", hostPort: 1, containerPort: 1, protocol: "tcp" }],
      }),
    ).rejects.toThrow("need a network");
    // Each name in turn, as Docker's: a missing one fails the command, the next is removed; with
    // -f a missing one is skipped in silence.
    const missing = `pvt${tag}-none`;
    const both = cli(["network", "rm", missing, NET]);
    expect(both).toMatchObject({ status: 1, stdout: `${NET}\n` });
    expect(both.stderr).toContain(`network "${missing}" not found`);
    expect(cli(["network", "ls"]).stdout).not.toContain(NET);
    expect(cli(["network", "rm", "-f", missing])).toEqual({ status: 0, stdout: "", stderr: "" });
  }, 60_000);

  // The network's ADD runs while the runtime creates the container (start.ts): whichever of the
  // two fails, the other is waited for and everything of the run goes.
  describe("a start whose ADD or create fails leaves nothing", () => {
    /**
     * An engine on the same root and names whose bridge plugin is BRIDGE (a shell script, which
     * gets the container's id logged in DIR/ids first).
     */
    const withBridge = (dir: string, bridge: string): Engine => {
      mkdirSync(dir, { recursive: true });
      for (const p of ["host-local", "portmap", "loopback"])
        symlinkSync(`/usr/lib/cni/${p}`, join(dir, p));
      const log = `echo "$CNI_CONTAINERID" >> ${join(dir, "ids")}\n`;
      writeFileSync(join(dir, "bridge"), bridge.replace("\n", `\n${log}`), { mode: 0o755 });
      return new Engine({
        root: t.root,
        warn: () => {},
        network: { ...engine.networks.settings, cniPath: [dir] },
      });
    };
    /** No sandbox, namespace, address, veth, overlay mount or cgroup of the test's containers. */
    const nothingLeft = (e: Engine, dir: string) => {
      const ids = [...new Set(readFileSync(join(dir, "ids"), "utf8").trim().split("\n"))];
      const run = e.networks.settings.runDir;
      expect(e.networks.sandboxes()).toEqual([]);
      expect(existsSync(join(run, "netns")) ? readdirSync(join(run, "netns")) : []).toEqual([]);
      const ipam = join(run, "ipam", `pvt${tag}`);
      const held = existsSync(ipam) ? readdirSync(ipam).filter((f) => /^\d/.test(f)) : [];
      expect(held).toEqual([]);
      const links = hostOutput("ip", ["-o", "link", "show", "master", `pvt${tag}0`]);
      expect(links.trim()).toBe("");
      expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
      expect(ids.length).toBeGreaterThan(0);
      const cgroups = readdirSync("/sys/fs/cgroup").flatMap((h) => {
        const dir = join("/sys/fs/cgroup", h);
        return [dir, ...(existsSync(dir) ? readdirSync(dir).map((d) => join(dir, d)) : [])];
      });
      expect(cgroups.filter((d) => ids.some((id) => d.includes(id)))).toEqual([]);
    };

    test("the bridge plugin's ADD fails (attached --rm, and detached)", async () => {
      const dir = join(t.root, "cni-add-fails");
      const failing = withBridge(
        dir,
        // ADD fails after a while, so the runtime's create is under way; DEL is the real one.
        `#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then\n  sleep 0.3\n  echo '{"cniVersion":"1.0.0","code":11,"msg":"test: this bridge refuses"}'\n  exit 1\nfi\nexec /usr/lib/cni/bridge\n`,
      );
      const name = `addfail-${tag}`;
      await expect(
        failing.run({ image: IMAGE, name, cmd: ["true"], network: "bridge", autoRemove: true }),
      ).rejects.toThrow(/this bridge refuses/);
      expect((await failing.list({ all: true })).map((c) => c.name)).not.toContain(name);
      nothingLeft(failing, dir);
      const d = `addfail-d-${tag}`;
      await expect(
        failing.run({
          image: IMAGE,
          name: d,
          cmd: ["sleep", "100"],
          network: "bridge",
          detach: true,
        }),
      ).rejects.toThrow(/this bridge refuses/);
      const kept = (await failing.list({ all: true })).find((c) => c.name === d);
      expect(kept?.state.running).toBe(false);
      nothingLeft(failing, dir);
      await failing.remove(d, { force: true });
    }, 60_000);

    test("the runtime's create fails while the ADD runs", async () => {
      const dir = join(t.root, "cni-add-slow");
      const slow = withBridge(
        dir,
        // ADD succeeds, but only after the create has failed: the undo waits for it.
        `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && sleep 0.3\nexec /usr/lib/cni/bridge\n`,
      );
      const name = `createfail-${tag}`;
      await expect(
        slow.run({
          image: IMAGE,
          name,
          cmd: ["/no/such/program"],
          network: "bridge",
          autoRemove: true,
        }),
      ).rejects.toThrow(/no\/such\/program/);
      expect((await slow.list({ all: true })).map((c) => c.name)).not.toContain(name);
      nothingLeft(slow, dir);
    }, 60_000);
  });

  test("after the networks are removed, nothing of theirs is left on the host", async () => {
    // No veth left on the test's bridges (a veth's host end has no name of the test's: looked
    // for while the bridges are there, not by counting the host's veths, which other tests
    // running at the same time add and remove).
    for (const n of engine.networks.listNetworks())
      expect(hostOutput("ip", ["-o", "link", "show", "master", n.bridge]).trim()).toBe("");
    for (const n of engine.networks.listNetworks()) await engine.networks.removeNetwork(n.name);
    // Only the test's own traces (names, its subnets): the host's other state is not the test's.
    const now = hostState();
    for (const trace of t.traces)
      expect(now.split("\n").filter((l) => l.includes(trace))).toEqual([]);
  });
});
