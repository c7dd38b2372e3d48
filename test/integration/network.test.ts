// Networking against the real kernel and Debian's CNI plugins: busybox containers run by
// pivot-runtime join network namespaces prepared by NetworkManager. Traffic goes only to
// loopback and to these containers. Everything is removed afterwards, and the host's links,
// addresses, routes and firewall rules are compared with what they were before.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { NetworkManager } from "../../src/network/attach.ts";
import { createNetns, removeNetns } from "../../src/network/netns.ts";
import type { NetworkSettings } from "../../src/network/networks.ts";
import {
  freeHostPort,
  PortError,
  type PortMapping,
  parsePublish,
} from "../../src/network/ports.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Mount, Spec } from "../../src/oci/spec.ts";
import { hostOutput, subnetBlock, subnetTraces } from "../fixtures/network.ts";
import {
  BUN,
  cleanupRoot,
  isRoot,
  makeBusyboxRootfs,
  REPO,
  rm,
  runtime,
  tempDir,
} from "../helpers.ts";

if (!isRoot)
  throw new Error("the networking tests create namespaces, bridges and rules: run as root");

const tag = String(process.pid % 100000);
let work: string;
let root: string;
let rootfs: string;
let settings: Partial<NetworkSettings>;
let manager: NetworkManager;
let before: Record<string, string>;
let ipForwardBefore: string;
const NET_A = `pvt${tag}-a`;
/** The test's subnets: 10.213.B.0/24 ... and 10.214.B.0/24 ... (B by pid: subnetBlock). */
const B = subnetBlock;
const NET_B = `pvt${tag}-b`;

/** What names the test's things: its bridges, chains, container ids, subnets. */
const traces = () => [
  `pvt${tag}`,
  `PVT${tag}`,
  `-${tag}-`,
  ...subnetTraces(213),
  ...subnetTraces(214),
];

/**
 * What must be the same before and after: the lines of the host's links, addresses, routes and
 * rules that name the test's things, and the namespace mounts under its directory. Only those:
 * other tests (other engineers') change the rest of the host meanwhile.
 */
function hostSnapshot(): Record<string, string> {
  const mine = (text: string) =>
    text
      .split("\n")
      .filter((l) => traces().some((t) => l.includes(t)))
      .join("\n");
  const run = (cmd: string, args: string[]) => mine(hostOutput(cmd, args));
  return {
    links: run("ip", ["-o", "link"]),
    addresses: run("ip", ["-o", "addr"]),
    routes: run("ip", ["route", "show", "table", "all"]),
    routes6: run("ip", ["-6", "route", "show", "table", "all"]),
    iptables: run("iptables-save", []),
    ip6tables: run("ip6tables-save", []),
    nft: run("nft", ["list", "ruleset"]),
    nsMounts: readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .filter((l) => l.includes(" nsfs ") && (l.split(" ")[4] ?? "").startsWith(`${work}/`))
      .map((l) => l.split(" ").slice(3, 5).join(" "))
      .join("\n"),
  };
}

let counter = 0;
const nextId = (name: string) => `${name}-${tag}-${++counter}`;

interface ContainerOptions {
  netns?: string;
  hostsPath?: string;
  resolvConfPath?: string;
  mounts?: Mount[];
}

/** Writes a bundle whose config.json uses the shared rootfs. */
function bundle(id: string, args: string[], o: ContainerOptions): string {
  const dir = join(work, "bundles", id);
  mkdirSync(dir, { recursive: true });
  const spec: Spec = defaultSpec({ args });
  spec.process!.terminal = false;
  spec.root = { path: rootfs, readonly: true };
  const ns = spec.linux!.namespaces!.filter((n) => n.type !== "network");
  ns.push(o.netns ? { type: "network", path: o.netns } : { type: "network" });
  spec.linux!.namespaces = ns;
  const binds: Mount[] = [];
  if (o.hostsPath)
    binds.push({
      destination: "/etc/hosts",
      type: "bind",
      source: o.hostsPath,
      options: ["rbind", "ro"],
    });
  if (o.resolvConfPath)
    binds.push({
      destination: "/etc/resolv.conf",
      type: "bind",
      source: o.resolvConfPath,
      options: ["rbind", "ro"],
    });
  spec.mounts = [...spec.mounts!, ...binds, ...(o.mounts ?? [])];
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
  return dir;
}

function startDetached(id: string, args: string[], o: ContainerOptions = {}): void {
  const r = runtime(root, ["run", "--detach", "--bundle", bundle(id, args, o), id]);
  if (r.status !== 0) throw new Error(`starting ${id} failed: ${r.stderr}`);
}

function runOnce(id: string, args: string[], o: ContainerOptions = {}) {
  return runtime(root, ["run", "--bundle", bundle(id, args, o), id], { timeoutMs: 30_000 });
}

/** A container with a sandbox (own netns, hosts, resolv.conf) connected to NETWORKS. */
async function sandbox(
  id: string,
  networks: {
    name: string;
    aliases?: string[];
    ports?: PortMapping[];
  }[],
) {
  const files = join(work, "files", id);
  const hostsPath = join(files, "hosts");
  const resolvConfPath = join(files, "resolv.conf");
  const { netns } = await manager.createSandbox(id, {
    name: id.replace(/-\d+-\d+$/, ""),
    hostname: id.slice(0, 12),
    hostsPath,
    resolvConfPath,
    dns: { nameservers: [] }, // no resolver: names come from /etc/hosts only, nothing leaves
  });
  const ips: Record<string, string> = {};
  for (const n of networks) {
    const a = await manager.connect(id, n.name, {
      ...(n.aliases ? { aliases: n.aliases } : {}),
      ...(n.ports ? { ports: n.ports } : {}),
    });
    ips[n.name] = a.ip;
  }
  return { netns, hostsPath, resolvConfPath, ips };
}

/** A command under sh: the container's PID 1 ignores SIGTERM, so `timeout` must not be PID 1. */
function sh(command: string): string[] {
  return ["sh", "-c", `${command}; exit $?`];
}

async function until<T>(what: string, fn: () => Promise<T | null>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function removeEverything(): Promise<void> {
  cleanupRoot(root);
  for (const id of manager.sandboxes())
    await manager.removeSandbox(id).catch((e) => console.error(`removeSandbox ${id}: ${e}`));
  await manager.recover().catch(() => {});
  for (const n of manager.listNetworks()) await manager.removeNetwork(n.name, { force: true });
}

beforeAll(async () => {
  ipForwardBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
  work = tempDir("pivot-net-");
  before = hostSnapshot();
  root = join(work, "state");
  rootfs = join(work, "rootfs");
  makeBusyboxRootfs(rootfs);
  mkdirSync(join(rootfs, "www"));
  writeFileSync(join(rootfs, "www", "index.html"), `hello from pivot ${tag}\n`);
  writeFileSync(join(rootfs, "etc", "nsswitch.conf"), "hosts: files\n");
  writeFileSync(join(rootfs, "etc", "hosts"), "");
  writeFileSync(join(rootfs, "etc", "resolv.conf"), "");
  // For the UDP test: the host's /usr (node) is bound read-only over /usr.
  symlinkSync("usr/lib", join(rootfs, "lib"));
  symlinkSync("usr/lib64", join(rootfs, "lib64"));
  settings = {
    configDir: join(work, "networks"),
    runDir: join(work, "run"),
    defaultNetwork: `pvt${tag}`,
    defaultBridge: `pvt${tag}0`,
    defaultSubnets: [`10.213.${B}.0/24`, `10.214.${B}.0/24`],
    subnetPools: [`10.213.${B + 16}.0/20`, `10.214.${B + 16}.0/20`],
    chainPrefix: `PVT${tag}`,
  };
  manager = new NetworkManager(settings);
  await manager.defaultNetwork();
  await manager.createNetwork(NET_A, { bridge: `pvt${tag}a` });
  await manager.createNetwork(NET_B, { bridge: `pvt${tag}b` });
});

afterAll(async () => {
  try {
    await removeEverything();
  } finally {
    rm(work);
    writeFileSync("/proc/sys/net/ipv4/ip_forward", ipForwardBefore);
  }
});

describe("networks", () => {
  test("create picks free subnets; inspect shows the CNI list; bad requests are refused", async () => {
    const a = manager.inspectNetwork(NET_A);
    const b = manager.inspectNetwork(NET_B);
    const d = manager.inspectNetwork(`pvt${tag}`);
    expect(d.default).toBe(true);
    expect(new Set([a.subnet, b.subnet, d.subnet]).size).toBe(3);
    expect(a.conflist.plugins.map((p) => p.type)).toEqual(["bridge", "portmap"]);
    expect(manager.listNetworks().map((n) => n.name)).toContain(NET_B);
    await expect(manager.createNetwork(NET_A)).rejects.toThrow("already exists");
    await expect(manager.createNetwork(`pvt${tag}-c`, { subnet: a.subnet })).rejects.toThrow(
      `overlaps network "${NET_A}"`,
    );
    // The host's own address range is never handed out.
    const eth = spawnSync("ip", ["-j", "-4", "route", "show", "table", "all"], {
      encoding: "utf8",
    });
    const hostRoute = (JSON.parse(eth.stdout) as { dst: string; type?: string }[]).find(
      (r) => r.dst !== "default" && r.dst.includes("/") && !r.dst.startsWith("10.21"),
    );
    if (hostRoute)
      await expect(manager.createNetwork(`pvt${tag}-c`, { subnet: hostRoute.dst })).rejects.toThrow(
        /overlaps (route|address)/,
      );
    await expect(manager.createNetwork("bad name")).rejects.toThrow("invalid network name");
  });

  test("a network whose rules cannot be written is not defined", async () => {
    const failing = new NetworkManager(settings);
    failing.firewall.sync = async () => {
      throw new Error("test: iptables-restore refused the rules");
    };
    const name = `pvt${tag}-nofw`;
    await expect(failing.createNetwork(name, { bridge: `pvt${tag}n` })).rejects.toThrow(
      "refused the rules",
    );
    expect(manager.listNetworks().map((n) => n.name)).not.toContain(name);
  });
});

describe("containers", () => {
  test("a container without a network namespace path has only lo", () => {
    const r = runOnce(nextId("none"), ["ip", "-o", "link"]);
    expect(r.stderr).toBe("");
    const links = r.stdout.trim().split("\n");
    expect(links.length).toBe(1);
    expect(links[0]).toContain(": lo:");
  });

  test("a sandbox without networks has lo, up, and nothing else", async () => {
    const id = nextId("lo");
    const { netns } = await manager.createSandbox(id);
    const r = runOnce(id, ["sh", "-c", "ip -o link; ip -o addr"], { netns });
    expect(r.stdout).toContain("1: lo: <LOOPBACK,UP,LOWER_UP>");
    expect(r.stdout).toContain("inet 127.0.0.1/8");
    expect(r.stdout).not.toContain("eth0");
    await manager.removeSandbox(id);
    expect(readdirSync(join(work, "run", "netns"))).not.toContain(id);
  });

  test("busybox httpd published on 127.0.0.1 answers a fetch from the host", async () => {
    const port = await freeHostPort("tcp", "127.0.0.1");
    const id = nextId("web");
    const sb = await sandbox(id, [
      {
        name: `pvt${tag}`,
        ports: [{ hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" }],
      },
    ]);
    expect(sb.ips[`pvt${tag}`]).toMatch(/^10\.21|^192\.168\.213\./);
    startDetached(id, ["httpd", "-f", "-p", "80", "-h", "/www"], sb);
    const body = await until("httpd", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/index.html`);
      return res.ok ? await res.text() : null;
    });
    expect(body).toBe(`hello from pivot ${tag}\n`);
    expect(manager.attachments(id)[0]?.ports).toEqual([
      { hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" },
    ]);
    // CHECK agrees that everything is in place.
    await manager.check(id);

    // The same host port again: refused, naming the container that has it.
    const other = nextId("web2");
    await manager.createSandbox(other);
    const clash = await manager
      .connect(other, `pvt${tag}`, {
        ports: [{ hostIP: "", hostPort: port, containerPort: 80, protocol: "tcp" }],
      })
      .catch((e) => e as Error);
    expect(clash).toBeInstanceOf(PortError);
    expect((clash as Error).message).toContain("already published by container web");
    // A port a host program listens on: refused too.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const busy = (srv.address() as { port: number }).port;
    const inUse = await manager
      .connect(other, `pvt${tag}`, {
        ports: [{ hostIP: "127.0.0.1", hostPort: busy, containerPort: 80, protocol: "tcp" }],
      })
      .catch((e) => e as Error);
    srv.close();
    expect((inUse as Error).message).toContain("in use by another program");
    await manager.removeSandbox(other);

    // Removing the container releases the port: the fetch fails, a new publish succeeds.
    runtime(root, ["delete", "--force", id]);
    await manager.removeSandbox(id);
    const after = await fetch(`http://127.0.0.1:${port}/`).catch((e) => e as Error);
    expect(after).toBeInstanceOf(Error);
  }, 60_000);

  test("containers on a user-defined network reach each other by name and alias over TCP", async () => {
    const srvId = nextId("srv");
    const srv = await sandbox(srvId, [{ name: NET_A, aliases: ["db"] }]);
    startDetached(srvId, ["sh", "-c", "while true; do echo hello-tcp | nc -l -p 5000; done"], srv);
    const cliId = nextId("cli");
    const cli = await sandbox(cliId, [{ name: NET_A }]);
    // The server's hosts file, written before the client existed, now has the client.
    expect(readFileSync(srv.hostsPath, "utf8")).toContain(`${cli.ips[NET_A]}\tcli`);
    expect(readFileSync(cli.hostsPath, "utf8")).toContain(`${srv.ips[NET_A]}\tsrv db`);
    for (const name of ["srv", "db"]) {
      const out = await until(`nc ${name}`, async () => {
        const r = runOnce(nextId("nc"), sh(`timeout 5 nc ${name} 5000`), cli);
        return r.stdout.includes("hello-tcp") ? r.stdout : null;
      });
      expect(out.trim()).toBe("hello-tcp");
    }
    await manager.removeSandbox(cliId);
    expect(readFileSync(srv.hostsPath, "utf8")).not.toContain("\tcli");
  }, 60_000);

  test("UDP between containers by name", async () => {
    const usr: Mount = {
      destination: "/usr",
      type: "bind",
      source: "/usr",
      options: ["rbind", "ro"],
    };
    const server = `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>s.send("pong:"+m,r.port,r.address));s.bind(5001);`;
    const client = `const dns=require("dns"),s=require("dgram").createSocket("udp4");dns.lookup("udpsrv",4,(e,a)=>{if(e)throw e;const t=setInterval(()=>s.send("ping",5001,a),200);s.on("message",m=>{console.log(m.toString()+" from "+a);clearInterval(t);s.close()})});setTimeout(()=>process.exit(3),8000).unref();`;
    const srvId = nextId("udpsrv");
    const udpPort = await freeHostPort("udp", "127.0.0.1");
    const srv = await sandbox(srvId, [
      {
        name: NET_A,
        ports: [{ hostIP: "127.0.0.1", hostPort: udpPort, containerPort: 5001, protocol: "udp" }],
      },
    ]);
    startDetached(srvId, ["/usr/bin/node", "-e", server], { ...srv, mounts: [usr] });
    const cliId = nextId("udpcli");
    const cli = await sandbox(cliId, [{ name: NET_A }]);
    const r = runOnce(nextId("udp"), ["/usr/bin/node", "-e", client], { ...cli, mounts: [usr] });
    expect(r.stdout.trim()).toBe(`pong:ping from ${srv.ips[NET_A]}`);

    // The same server through its published UDP port on the host's loopback.
    const sock = createSocket("udp4");
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => sock.send("host", udpPort, "127.0.0.1"), 200);
      sock.on("message", (m) => {
        clearInterval(timer);
        resolve(m.toString());
      });
      setTimeout(() => {
        clearInterval(timer);
        reject(new Error("no UDP reply through the published port"));
      }, 8000);
    }).finally(() => sock.close());
    expect(reply).toBe("pong:host");
  }, 60_000);

  test("two networks cannot reach each other", async () => {
    const aId = nextId("iso-a");
    const a = await sandbox(aId, [{ name: NET_A }]);
    startDetached(aId, ["sh", "-c", "while true; do echo from-a | nc -l -p 5002; done"], a);
    const bId = nextId("iso-b");
    const b = await sandbox(bId, [{ name: NET_B }]);
    // Same network: reachable (so the failure below is isolation, not a broken server).
    const same = await until("same-network nc", async () => {
      const r = runOnce(nextId("nc"), sh(`timeout 5 nc ${a.ips[NET_A]} 5002`), a);
      return r.stdout.includes("from-a") ? r.stdout : null;
    });
    expect(same.trim()).toBe("from-a");
    const cross = runOnce(nextId("nc"), sh(`timeout 3 nc ${a.ips[NET_A]} 5002`), b);
    expect(cross.stdout).not.toContain("from-a");
    expect(cross.status).not.toBe(0);
    // B's hosts file does not know A's containers either.
    expect(readFileSync(b.hostsPath, "utf8")).not.toContain("iso-a");
  }, 60_000);

  test("a crash in the middle of ADD is repaired by the next command", async () => {
    const id = nextId("crash");
    const fake = join(work, "cni-crash");
    mkdirSync(fake);
    for (const p of ["bridge", "host-local", "loopback"])
      symlinkSync(`/usr/lib/cni/${p}`, join(fake, p));
    // portmap runs last: this one does its work, then kills the pivot process that ran it.
    writeFileSync(
      join(fake, "portmap"),
      "#!/bin/sh\n/usr/lib/cni/portmap >/dev/null\nkill -9 $PPID\nsleep 5\n",
      { mode: 0o755 },
    );
    const r = spawnSync(
      BUN,
      [
        join(REPO, "test/fixtures/network-crash.ts"),
        JSON.stringify({ ...settings, cniPath: [fake] }),
        id,
        NET_A,
      ],
      { encoding: "utf8" },
    );
    expect(r.signal).toBe("SIGKILL");
    // Left behind: a veth on the bridge, an address, port rules.
    const leftovers = spawnSync("iptables-save", ["-t", "nat"], { encoding: "utf8" }).stdout;
    expect(leftovers).toContain(`id: \\"${id}\\"`);
    // The next connect of that container undoes the half-done one first.
    await manager.connect(id, NET_A);
    await manager.removeSandbox(id);
    const after = spawnSync("iptables-save", ["-t", "nat"], { encoding: "utf8" }).stdout;
    expect(after).not.toContain(id);
    // And recover() alone does it for a crash nobody retries.
    const id2 = nextId("crash");
    spawnSync(
      BUN,
      [
        join(REPO, "test/fixtures/network-crash.ts"),
        JSON.stringify({ ...settings, cniPath: [fake] }),
        id2,
        NET_A,
      ],
      { encoding: "utf8" },
    );
    await manager.recover();
    expect(manager.attachments(id2)).toEqual([]);
    await manager.removeSandbox(id2);
    expect(spawnSync("iptables-save", ["-t", "nat"], { encoding: "utf8" }).stdout).not.toContain(
      id2,
    );
  }, 60_000);

  test("rules that fail to be written while DEL runs are removeSandbox's error, not an unhandled one", () => {
    const fake = join(work, "cni-slow-del");
    mkdirSync(fake);
    const result = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"x"}],"ips":[{"address":"10.213.${B + 2}.2/24","gateway":"10.213.${B + 2}.1","interface":0}]}`;
    writeFileSync(
      join(fake, "bridge"),
      `#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then echo '${result}'; exit 0; fi\nsleep 0.5\n`,
      { mode: 0o755 },
    );
    const own = join(work, "sync-fails");
    const r = spawnSync(
      BUN,
      [
        join(REPO, "test/fixtures/network-sync-fails.ts"),
        JSON.stringify({
          configDir: join(own, "networks"),
          runDir: join(own, "run"),
          cniPath: [fake],
          subnetPools: [`10.213.${B + 2}.0/24`],
          chainPrefix: `PVT${tag}F`,
        }),
        nextId("syncfail"),
        `pvt${tag}f`,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    expect(r.stderr).not.toContain("error:");
    expect(r.stdout).toContain("removeSandbox rejected: test: iptables-restore refused the rules");
    expect(r.stdout).toContain("done");
    expect(r.status).toBe(0);
  }, 60_000);

  test("port ranges, a fixed address, an internal network, prune", async () => {
    const p0 = await freeHostPort("tcp", "127.0.0.1");
    const ports = parsePublish(`127.0.0.1:${p0}-${p0 + 1}:80-81`);
    const id = nextId("range");
    const subnet = manager.inspectNetwork(NET_B).subnet;
    const fixed = subnet.replace(/\.0\/\d+$/, ".200");
    const files = join(work, "files", id);
    const { netns } = await manager.createSandbox(id, { hostsPath: join(files, "hosts") });
    const a = await manager.connect(id, NET_B, { ports, ip: fixed });
    expect(a.ip).toBe(fixed);
    startDetached(id, sh("httpd -p 80 -h /www && exec httpd -f -p 81 -h /www"), { netns });
    for (const port of [p0, p0 + 1]) {
      const body = await until(`httpd on ${port}`, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/index.html`);
        return res.ok ? await res.text() : null;
      });
      expect(body).toBe(`hello from pivot ${tag}\n`);
    }
    // The fixed address is taken now.
    const other = nextId("dup");
    await manager.createSandbox(other);
    await expect(manager.connect(other, NET_B, { ip: fixed })).rejects.toThrow();
    await expect(manager.connect(other, NET_B, { ip: "10.99.99.99" })).rejects.toThrow("is not in");
    await manager.removeSandbox(other);

    // Internal: no route out, no masquerade for its containers.
    const internal = `pvt${tag}-int`;
    await manager.createNetwork(internal, { internal: true, bridge: `pvt${tag}i` });
    const iid = nextId("int");
    const sb = await sandbox(iid, [{ name: internal }]);
    const routes = runOnce(nextId("ip"), ["ip", "route"], sb);
    expect(routes.stdout).not.toContain("default");
    expect(routes.stdout).toContain(manager.inspectNetwork(internal).subnet);
    const nat = spawnSync("iptables-save", ["-t", "nat"], { encoding: "utf8" }).stdout;
    expect(nat).not.toContain(`-s ${manager.inspectNetwork(internal).subnet} `);
    expect(nat).toContain(`-s ${subnet} `); // the non-internal one is masqueraded

    // prune removes networks nobody uses, and only those.
    const spare = `pvt${tag}-spare`;
    await manager.createNetwork(spare, { bridge: `pvt${tag}s` });
    const pruned = await manager.pruneNetworks();
    expect(pruned).toContain(spare);
    expect(pruned).not.toContain(NET_B);
    expect(pruned).not.toContain(internal);
    expect(pruned).not.toContain(`pvt${tag}`); // the default network stays
    runtime(root, ["delete", "--force", id]);
    await manager.removeSandbox(id);
    await manager.removeSandbox(iid);
    await manager.removeNetwork(internal);
    expect(manager.listNetworks().map((n) => n.name)).not.toContain(internal);
  }, 60_000);
});

describe("a failed first ADD", () => {
  test("does not leave the network's bridge unusable for the containers after it", async () => {
    // host-local refuses the gateway as --ip after the bridge plugin made the bridge and its
    // veth; the undo deletes the veth, and the bridge, never given its own MAC, is left with
    // 00:00:00:00:00:00, on which the plugin's next ADD failed ("could not set bridge's mac").
    const name = `pvt${tag}-mac`;
    const def = await manager.createNetwork(name, { bridge: `pvt${tag}m` });
    try {
      const first = nextId("gw");
      await manager.createSandbox(first);
      await expect(manager.connect(first, name, { ip: def.gateway })).rejects.toThrow("gateway");
      await manager.removeSandbox(first);
      const next = nextId("mac");
      await manager.createSandbox(next);
      try {
        const a = await manager.connect(next, name);
        expect(a.ip).toStartWith(def.subnet.replace(/\.0\/\d+$/, "."));
      } finally {
        await manager.removeSandbox(next);
      }
    } finally {
      await manager.removeNetwork(name);
    }
  }, 60_000);
});

describe("-p on an address the host does not have", () => {
  test("is refused as such, not as a port in use", async () => {
    const id = nextId("notmine");
    await manager.createSandbox(id);
    try {
      // 203.0.113.0/24 is TEST-NET-3: no address of this host.
      for (const spec of ["203.0.113.9:38080:80", "203.0.113.9::80", "203.0.113.9:38080:80/udp"]) {
        const err = await manager.connect(id, NET_A, { ports: parsePublish(spec) }).catch((e) => e);
        expect(err).toBeInstanceOf(PortError);
        expect(String(err.message)).toContain("203.0.113.9 in -p is not an address of this host");
      }
      expect(manager.attachments(id)).toEqual([]);
    } finally {
      await manager.removeSandbox(id);
    }
  });

  test("an IPv6 host address is refused: the networks are IPv4 (the container ran, its port forwarded by nothing)", async () => {
    const id = nextId("v6port");
    await manager.createSandbox(id);
    try {
      for (const spec of ["[::1]:38082:80", "[::]::80"]) {
        const err = await manager.connect(id, NET_A, { ports: parsePublish(spec) }).catch((e) => e);
        expect(err).toBeInstanceOf(PortError);
        expect(String(err.message)).toContain("IPv6 host addresses are not supported");
      }
      expect(manager.attachments(id)).toEqual([]);
    } finally {
      await manager.removeSandbox(id);
    }
  });
});

describe("Pivot's rules per network", () => {
  test("a network's rules come with its first container and go with its last", async () => {
    const net = `pvt${tag}-c`;
    const bridge = `pvt${tag}c`;
    await manager.createNetwork(net, { bridge });
    const subnet = manager.inspectNetwork(net).subnet;
    const masq = `-A PVT${tag}-POSTROUTING -s ${subnet} ! -d 224.0.0.0/4 ! -o ${bridge} -j MASQUERADE`;
    const accept = `-A PVT${tag}-FORWARD -s ${subnet} -i ${bridge} -j ACCEPT`;
    const save = () => hostOutput("iptables-save", []);
    expect(save()).not.toContain(masq);
    // A container on another network keeps Pivot's chains (they go with the last container on
    // any network), whatever other tests left running.
    const keeper = nextId("keeper");
    await sandbox(keeper, [{ name: NET_A }]);
    const one = nextId("first");
    await sandbox(one, [{ name: net }]);
    expect(save()).toContain(masq);
    expect(save()).toContain(accept);
    expect(save()).toContain(`-A FORWARD -j PVT${tag}-FORWARD`);
    const two = nextId("second");
    await sandbox(two, [{ name: net }]);
    await manager.removeSandbox(one);
    expect(save()).toContain(masq);
    await manager.removeSandbox(two);
    expect(save()).not.toContain(masq);
    expect(save()).not.toContain(accept);
    // Isolation still covers the network without containers.
    expect(save()).toContain(`-A PVT${tag}-ISOLATION-2 -o ${bridge} -j DROP`);
    await manager.removeNetwork(net);
    expect(save()).not.toContain(bridge);
    await manager.removeSandbox(keeper);
  }, 60_000);

  test("jumps removed behind Pivot's back come back at the next connect or removal", async () => {
    const jumps = () =>
      hostOutput("iptables-save", [])
        .split("\n")
        .filter(
          (l) =>
            l === `-A FORWARD -j PVT${tag}-FORWARD` ||
            l === `-A POSTROUTING -j PVT${tag}-POSTROUTING`,
        );
    const both = [`-A FORWARD -j PVT${tag}-FORWARD`, `-A POSTROUTING -j PVT${tag}-POSTROUTING`];
    const remove = () => {
      spawnSync("iptables", ["-w", "-D", "FORWARD", "-j", `PVT${tag}-FORWARD`]);
      spawnSync("iptables", [
        "-w",
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        "-j",
        `PVT${tag}-POSTROUTING`,
      ]);
      expect(jumps()).toEqual([]);
    };
    const x = nextId("jx");
    const y = nextId("jy");
    await sandbox(x, [{ name: NET_A }]);
    await sandbox(y, [{ name: NET_B }]);
    expect(jumps()).toEqual(both);
    // (iptables -F FORWARD, a firewall's reload): x restarts.
    remove();
    await manager.removeSandbox(x);
    expect(jumps()).toEqual(both);
    await sandbox(x, [{ name: NET_A }]);
    expect(jumps()).toEqual(both);
    // A container joining a network that has one already: the same rules, but no jumps.
    remove();
    const z = nextId("jz");
    await sandbox(z, [{ name: NET_A }]);
    expect(jumps()).toEqual(both);
    for (const id of [x, y, z]) await manager.removeSandbox(id);
  }, 60_000);

  test("portmap runs only for a container that publishes ports", async () => {
    const fake = join(work, "cni-log");
    mkdirSync(fake);
    for (const p of ["bridge", "host-local", "loopback"])
      symlinkSync(`/usr/lib/cni/${p}`, join(fake, p));
    const log = join(work, "portmap.log");
    writeFileSync(log, "");
    writeFileSync(
      join(fake, "portmap"),
      `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID" >> ${log}\nexec /usr/lib/cni/portmap\n`,
      { mode: 0o755 },
    );
    const logged = new NetworkManager({ ...settings, cniPath: [fake] });
    const plain = nextId("noports");
    await logged.createSandbox(plain);
    await logged.connect(plain, NET_A);
    await logged.removeSandbox(plain);
    expect(readFileSync(log, "utf8")).toBe("");
    const pub = nextId("ports");
    await logged.createSandbox(pub);
    const port = await freeHostPort("tcp", "127.0.0.1");
    await logged.connect(pub, NET_A, {
      ports: [{ hostIP: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" }],
    });
    await logged.removeSandbox(pub);
    expect(readFileSync(log, "utf8")).toBe(`ADD ${pub}\nDEL ${pub}\n`);
  }, 60_000);

  test("a sandbox has lo up without the loopback plugin, and 127.0.0.1 answers in it", async () => {
    const fake = join(work, "cni-lo");
    mkdirSync(fake);
    for (const p of ["bridge", "host-local", "portmap"])
      symlinkSync(`/usr/lib/cni/${p}`, join(fake, p));
    const log = join(work, "loopback.log");
    writeFileSync(log, "");
    writeFileSync(
      join(fake, "loopback"),
      `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID" >> ${log}\nexec /usr/lib/cni/loopback\n`,
      { mode: 0o755 },
    );
    const logged = new NetworkManager({ ...settings, cniPath: [fake] });
    const id = nextId("lo");
    const { netns } = await logged.createSandbox(id);
    await logged.connect(id, NET_A);
    const link = spawnSync("nsenter", [`--net=${netns}`, "ip", "-o", "link", "show", "lo"], {
      encoding: "utf8",
    });
    expect(link.stdout).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    // A container in it: a server on 127.0.0.1 answers its own client.
    const r = runOnce(
      nextId("lo-nc"),
      sh(
        "httpd -p 127.0.0.1:5004 -h /www && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 5004",
      ),
      { netns },
    );
    expect(r.stdout).toContain(`hello from pivot ${tag}\n`);
    await logged.removeSandbox(id);
    expect(readFileSync(log, "utf8")).toBe("");
  }, 60_000);

  test("traffic leaving the network is masqueraded (to a namespace of this test)", async () => {
    // "outside": a namespace behind a veth of the host's, 10.213.B+1.0/30, routed, not bridged.
    const outside = join(work, "outside-netns");
    const hostIf = `pvt${tag}o`;
    await createNetns(outside);
    let server: ChildProcess | null = null;
    try {
      const ip = (args: string[]) => {
        const r = spawnSync("ip", args, { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
      };
      const inside = (args: string[]) => {
        const r = spawnSync("nsenter", [`--net=${outside}`, "ip", ...args], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`ip ${args.join(" ")} in ${outside}: ${r.stderr}`);
      };
      // No route back to the containers' subnet: only a masqueraded connection gets an answer.
      const code = `require("net").createServer((s)=>s.end(s.remoteAddress+"\\n")).listen(5003,"0.0.0.0",()=>console.log("up"))`;
      server = spawn("nsenter", [`--net=${outside}`, BUN, "-e", code], { stdio: "pipe" });
      await new Promise<void>((resolve, reject) => {
        server!.stdout!.once("data", () => resolve());
        server!.once("exit", (c) => reject(new Error(`the outside server exited (${c})`)));
      });
      // The peer goes into the namespace by the pid of the server in it (nsenter execs bun).
      ip(["link", "add", hostIf, "type", "veth", "peer", "name", `${hostIf}x`]);
      ip(["link", "set", `${hostIf}x`, "netns", String(server.pid)]);
      ip(["addr", "add", `10.213.${B + 1}.1/30`, "dev", hostIf]);
      ip(["link", "set", hostIf, "up"]);
      inside(["addr", "add", `10.213.${B + 1}.2/30`, "dev", `${hostIf}x`]);
      inside(["link", "set", `${hostIf}x`, "up"]);
      const id = nextId("out");
      const sb = await sandbox(id, [{ name: NET_A }]);
      const r = runOnce(nextId("nc"), sh(`timeout 5 nc 10.213.${B + 1}.2 5003`), sb);
      expect(r.stdout.trim()).toBe(`10.213.${B + 1}.1`);
      await manager.removeSandbox(id);
    } finally {
      server?.kill("SIGKILL");
      spawnSync("ip", ["link", "del", hostIf]);
      await removeNetns(outside);
    }
  }, 60_000);
});

describe("cleanup", () => {
  test("network rm is refused while in use, with force too; afterwards nothing is left on the host", async () => {
    const id = nextId("last");
    await sandbox(id, [{ name: NET_B }]);
    await expect(manager.removeNetwork(NET_B, { force: true })).rejects.toThrow(/active endpoint/);
    await expect(manager.removeNetwork(NET_B)).rejects.toThrow(
      /has \d+ active endpoints? \(.*last/,
    );
    // The last container gone: none of Pivot's chains or rules are left, networks or not.
    cleanupRoot(root);
    for (const sid of manager.sandboxes()) await manager.removeSandbox(sid);
    expect(hostOutput("iptables-save", [])).not.toContain(`PVT${tag}`);
    // No veth left on the test's bridges (a veth's host end has no name of the test's).
    for (const n of manager.listNetworks())
      expect(hostOutput("ip", ["-o", "link", "show", "master", n.bridge]).trim()).toBe("");
    await removeEverything();
    expect(manager.listNetworks()).toEqual([]);
    expect(readdirSync(join(work, "run", "netns"))).toEqual([]);
    const now = hostSnapshot();
    for (const key of Object.keys(before))
      expect(`${key}:\n${now[key]}`).toBe(`${key}:\n${before[key]}`);
  }, 60_000);
});
