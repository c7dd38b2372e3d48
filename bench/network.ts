// Benchmark: Pivot's networks. TCP throughput (iperf3) container to container on a Pivot bridge
// network, host to a published port on 127.0.0.1, and host to the container's address, against
// plain loopback; and the time network set-up adds to a container start, beside podman's.
//
//   bun bench/network.ts [--rounds N] [--seconds S] [--runs N] [--warmup N] [--skip tput,setup]
//                        [--compiled] [--out FILE]
//
// --compiled: the set-up arms run this checkout's dist/pivot (scripts/build-binary.sh, what setup
// installs) instead of `bun bin/pivot.ts`, the sources.
//
// Throughput: the containers are busybox `sleep` containers on the default network, started
// detached through the Engine library; iperf3 is the host's /usr/bin/iperf3 run in a container's
// network namespace with `nsenter --net=<the container's netns>` (the same veth, bridge and NAT
// path the container's own processes take; only the mount namespace differs). Server `iperf3 -s -1`,
// client `iperf3 -c ADDR -t S -J`, the receiver's rate; arms shuffled every round:
//   loopback    host → host 127.0.0.1
//   c2c         container B → container A's address (veth, bridge, veth)
//   published   host → 127.0.0.1:HOSTPORT, published with -p 127.0.0.1:HOSTPORT:5201 (portmap DNAT)
//   host-to-ctr host → container A's address (the bridge, no NAT)
// Set-up time: `pivot run --rm --network none|bridge IMAGE true` and `podman run --rm --network
// none|bridge` (podman's default bridge network, CNI: bridge, host-local, portmap, firewall,
// tuning), interleaved; the difference of the medians is what the network costs.
//
// Cgroups nest under this process's own cgroup (<own>) in every hierarchy: Pivot's containers in
// <own>/pivot-ID (the engine gives no cgroupsPath; the runtime nests its default under its
// caller's cgroup, ours), podman's in <own>/pivot-bench-net-PID/libpod-ID with conmon in
// <own>/pivot-bench-net-PID/conmon. podman (cgroupfs) makes both from the root of each v1
// hierarchy, so every podman command runs in a mount and cgroup namespace made here once
// (`nsenter -m -C`, for the none and bridge arms alike), whose hierarchies are mounted again with
// our own cgroup as their root, with --cgroup-parent /pivot-bench-net-PID.
//
// Traffic goes only to loopback and to this script's own containers. Pivot's default network gets
// names of its own (bridge pvbNNNNN0, chains PVBNNNNN-*, 10.217.0.0/24), recorded in its run
// directory so the `pivot` command uses them too. At the end every container, network, bridge,
// namespace, firewall chain and table this run created, ip_forward, the cgroup namespace's holder,
// mounts, cgroups and the temporary directory are put back or removed, also on failure or a signal.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.ts";
import { freeHostPort } from "../src/network/ports.ts";
import {
  BUN,
  CgroupNamespace,
  f1,
  f2,
  IMAGE,
  killAndWait,
  loadAverage,
  machineFacts,
  makeRootfs,
  median,
  must,
  Podman,
  REPO,
  removeOwnCgroups,
  requireTools,
  run,
  shuffle,
  unmountUnder,
  version,
} from "./common.ts";

function usage(): never {
  process.stderr.write(
    "usage: bun bench/network.ts [--rounds N] [--seconds S] [--runs N] [--warmup N] [--skip tput,setup] [--compiled] [--out FILE]\n",
  );
  process.exit(2);
}

function parseCli(argv: string[]) {
  const o = {
    rounds: 5,
    seconds: 3,
    runs: 12,
    warmup: 2,
    skip: new Set<string>(),
    out: undefined as string | undefined,
    compiled: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => argv[++i] ?? usage();
    const int = () => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0) usage();
      return n;
    };
    if (a === "--rounds") o.rounds = int();
    else if (a === "--seconds") o.seconds = Math.min(int(), 10);
    else if (a === "--runs") o.runs = int();
    else if (a === "--warmup") o.warmup = int();
    else if (a === "--skip") for (const s of next().split(",")) o.skip.add(s);
    else if (a === "--out") o.out = next();
    else if (a === "--compiled") o.compiled = true;
    else usage();
  }
  return o;
}

const opts = parseCli(process.argv.slice(2));
requireTools(["iperf3", "nsenter", "unshare", "podman", "conmon", "iptables", "nft", "ip"]);

const work = mkdtempSync(join(tmpdir(), "pivot-bench-net-"));
const tag = `${process.pid % 100000}`;
/** podman's --cgroup-parent, in its namespace: <own>/pivot-bench-net-PID on the host. */
const parent = `pivot-bench-net-${process.pid}`;
const pivotRoot = join(work, "pivot");
// This checkout's sources (what /usr/local/bin/pivot runs for /work/main), so a snapshot of a
// commit can be measured while the working tree changes.
const pivotCmd = opts.compiled ? [join(REPO, "dist/pivot")] : [BUN, join(REPO, "bin/pivot.ts")];
const netSettings = {
  defaultNetwork: `pvb${tag}`,
  defaultBridge: `pvb${tag}0`,
  defaultSubnets: ["10.217.0.0/24", "192.168.217.0/24"],
  subnetPools: ["10.217.16.0/20"],
  chainPrefix: `PVB${tag}`,
};
const podman = new Podman(work);
const podmanNs = new CgroupNamespace("cgroup2");
const PODMAN_BRIDGE = "cni-podman0";
const loads: number[] = [];
const servers: ChildProcess[] = [];
let engine: Engine | null = null;

// ---------- host state, for the clean-up ----------

const links = () =>
  new Set(
    run("ip", ["-o", "link"])
      .stdout.split("\n")
      .map((l) => l.split(": ")[1]?.split("@")[0] ?? "")
      .filter(Boolean),
  );
const nftTables = () =>
  new Set(
    run("nft", ["list", "tables"])
      .stdout.split("\n")
      .map((l) => l.trim())
      .filter(Boolean),
  );
const chains = (table: string) =>
  new Set(
    run("iptables", ["-t", table, "-S"])
      .stdout.split("\n")
      .filter((l) => l.startsWith("-N "))
      .map((l) => l.slice(3)),
  );
const listDir = (d: string) => {
  try {
    return new Set(readdirSync(d));
  } catch {
    return new Set<string>();
  }
};
const before = {
  ipForward: readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim(),
  links: links(),
  tables: nftTables(),
  filter: chains("filter"),
  nat: chains("nat"),
  cniNetworks: listDir("/var/lib/cni/networks"),
  netns: listDir("/run/netns"),
  dirs: new Set(
    ["/var/lib/cni/networks", "/var/lib/cni", "/run/netns"].filter((d) => existsSync(d)),
  ),
};
const leftovers: string[] = [];

/** Removes an iptables chain this run created (CNI's shared chains) if it is empty. */
function dropChainIfEmpty(table: string, chain: string): void {
  const rules = run("iptables", ["-t", table, "-S", chain]);
  if (rules.status !== 0) return;
  if (rules.stdout.split("\n").some((l) => l.startsWith("-A "))) {
    leftovers.push(`iptables -t ${table} chain ${chain} has rules (another CNI user?): left`);
    return;
  }
  for (const l of run("iptables", ["-t", table, "-S"]).stdout.split("\n")) {
    if (l.startsWith("-A ") && l.endsWith(`-j ${chain}`))
      run("iptables", ["-t", table, ...l.replace(/^-A /, "-D ").split(" ")]);
  }
  run("iptables", ["-t", table, "-X", chain]);
}

let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  killAndWait(servers.flatMap((s) => (s.pid ? [s.pid] : [])));
  if (engine) {
    for (const c of await engine.list({ all: true }).catch(() => []))
      await engine.remove(c.id, { force: true }).catch(() => {});
    for (const n of engine.networks.listNetworks())
      await engine.networks.removeNetwork(n.name, { force: true }).catch(() => {});
  }
  try {
    podman.cleanup();
  } catch {}
  podmanNs.stop();
  if (!before.links.has(PODMAN_BRIDGE) && links().has(PODMAN_BRIDGE))
    run("ip", ["link", "del", PODMAN_BRIDGE]);
  // What the CNI plugins keep after the last DEL (podman's, and Pivot's if it left any).
  for (const c of [...chains("filter")].filter((c) => !before.filter.has(c)))
    if (c.startsWith("CNI-")) dropChainIfEmpty("filter", c);
  for (const c of [...chains("nat")].filter((c) => !before.nat.has(c)))
    if (c.startsWith("CNI-")) dropChainIfEmpty("nat", c);
  // Tables iptables-nft created for this run: removed if nothing is left in them.
  for (const t of [...nftTables()].filter((t) => !before.tables.has(t))) {
    const body = run("nft", ["list", ...t.split(" ")]).stdout;
    const hasRules = body
      .split("\n")
      .map((l) => l.trim())
      .some((l) => l && !/^(table|chain|type|policy|}|$)/.test(l));
    if (hasRules) leftovers.push(`nft ${t} has rules: left`);
    else run("nft", ["delete", ...t.split(" ")]);
  }
  for (const d of listDir("/var/lib/cni/networks"))
    if (!before.cniNetworks.has(d)) rmSync(join("/var/lib/cni/networks", d), { recursive: true });
  // The directories themselves, if this run's plugins created them and they are empty.
  for (const d of ["/var/lib/cni/networks", "/var/lib/cni", "/run/netns"]) {
    if (before.dirs.has(d)) continue;
    try {
      rmdirSync(d);
    } catch {}
  }
  writeFileSync("/proc/sys/net/ipv4/ip_forward", before.ipForward);
  // Kills what is left in our cgroups (only our containers and monitors), then removes them.
  removeOwnCgroups(parent);
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
  for (const l of links()) if (!before.links.has(l)) leftovers.push(`link ${l} left`);
  for (const n of listDir("/run/netns")) if (!before.netns.has(n)) leftovers.push(`netns ${n}`);
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------- iperf3 ----------

/** Starts `iperf3 -s -1` (in network namespace NETNS if given) and waits until it listens. */
function iperfServer(port: number, netns: string | null, bind?: string): Promise<ChildProcess> {
  const args = [
    "iperf3",
    "-s",
    "-1",
    "--forceflush",
    "-p",
    String(port),
    ...(bind ? ["-B", bind] : []),
  ];
  const p = spawn(
    netns ? "nsenter" : args[0]!,
    netns ? [`--net=${netns}`, ...args] : args.slice(1),
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  servers.push(p);
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`iperf3 server: no answer (${out})`)), 10_000);
    p.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Server listening")) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    p.on("exit", () => reject(new Error(`iperf3 server exited: ${out}`)));
  });
}

/** iperf3 client for S seconds; the receiver's rate in Gbit/s. */
async function iperfClient(addr: string, port: number, netns: string | null): Promise<number> {
  const args = ["iperf3", "-c", addr, "-p", String(port), "-t", String(opts.seconds), "-J"];
  const r = await new Promise<{ status: number; stdout: string }>((resolve) => {
    const p = spawn(
      netns ? "nsenter" : args[0]!,
      netns ? [`--net=${netns}`, ...args] : args.slice(1),
      {
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    let stdout = "";
    p.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    p.on("exit", (code) => resolve({ status: code ?? -1, stdout }));
  });
  const json = JSON.parse(r.stdout) as {
    error?: string;
    end?: { sum_received?: { bits_per_second: number } };
  };
  if (r.status !== 0 || !json.end?.sum_received)
    throw new Error(`iperf3 -c ${addr}:${port} failed: ${json.error ?? r.status}`);
  return json.end.sum_received.bits_per_second / 1e9;
}

const lines: string[] = [];
const versions: string[] = [];

try {
  const { tar } = makeRootfs(work);
  await podmanNs.start();
  podman.enter(podmanNs);
  must(pivotCmd[0]!, [...pivotCmd.slice(1), "--root", pivotRoot, "import", tar, IMAGE]);
  podman.must(["import", tar, IMAGE]);
  engine = new Engine({ root: pivotRoot, warn: () => {}, network: netSettings });
  // Defines the default network and records these settings for the `pivot` command.
  await engine.networks.createNetwork(netSettings.defaultNetwork);
  versions.push(
    `versions: ${version("iperf3", ["--version"])}; ${version("podman", ["--version"])} (CNI backend); ${version("dpkg-query", ["-W", "containernetworking-plugins"]).replace("\t", " ")}; ${version("iptables", ["--version"])}; bun ${process.versions.bun}`,
    `pivot: ${pivotCmd.join(" ")} in ${REPO} (${process.env.PIVOT_BENCH_COMMIT ?? version("git", ["-C", REPO, "rev-parse", "--short", "HEAD"])})`,
  );

  // ---------- throughput ----------
  if (!opts.skip.has("tput")) {
    const hostPort = await freeHostPort("tcp", "127.0.0.1");
    const start = async (name: string, publish: boolean) => {
      const h = await engine!.run({
        image: IMAGE,
        name: `${name}-${tag}`,
        cmd: ["sleep", "1000"],
        network: "bridge",
        detach: true,
        ...(publish
          ? {
              publish: [
                { hostIP: "127.0.0.1", hostPort, containerPort: 5201, protocol: "tcp" as const },
              ],
            }
          : {}),
      });
      const ip = engine!.networks.attachments(h.id)[0]?.ip;
      if (!ip) throw new Error(`${name}: no address`);
      return { netns: engine!.networks.netnsPath(h.id), ip };
    };
    const srv = await start("srv", true);
    const cli = await start("cli", false);
    const loPort = await freeHostPort("tcp", "127.0.0.1");
    const arms: Record<string, () => Promise<number>> = {
      loopback: async () => {
        const s = await iperfServer(loPort, null, "127.0.0.1");
        return iperfClient("127.0.0.1", loPort, null).finally(() => killAndWait([s.pid!]));
      },
      c2c: async () => {
        const s = await iperfServer(5201, srv.netns);
        return iperfClient(srv.ip, 5201, cli.netns).finally(() => killAndWait([s.pid!]));
      },
      published: async () => {
        const s = await iperfServer(5201, srv.netns);
        return iperfClient("127.0.0.1", hostPort, null).finally(() => killAndWait([s.pid!]));
      },
      "host-to-ctr": async () => {
        const s = await iperfServer(5201, srv.netns);
        return iperfClient(srv.ip, 5201, null).finally(() => killAndWait([s.pid!]));
      },
    };
    const samples = new Map<string, number[]>(Object.keys(arms).map((a) => [a, []]));
    for (let i = 0; i < opts.rounds; i++) {
      for (const arm of shuffle(Object.keys(arms))) samples.get(arm)!.push(await arms[arm]!());
      loads.push(loadAverage());
      process.stderr.write(`\rbench: throughput ${i + 1}/${opts.rounds}`);
    }
    process.stderr.write("\n");
    const lo = median(samples.get("loopback")!);
    lines.push(
      `### TCP throughput, iperf3 -t ${opts.seconds}, one stream (${opts.rounds} rounds, arms shuffled)`,
      "",
      "| path | Gbit/s (median) | min–max | ÷ loopback |",
      "| --- | ---: | ---: | ---: |",
    );
    for (const [arm, xs] of samples)
      lines.push(
        `| ${arm} | ${f2(median(xs))} | ${f2(Math.min(...xs))}–${f2(Math.max(...xs))} | ${f2(median(xs) / lo)} |`,
      );
    lines.push("");
    for (const c of await engine.list({ all: true })) await engine.remove(c.id, { force: true });
  }

  // ---------- set-up time ----------
  if (!opts.skip.has("setup")) {
    const pivotRun = (net: string) => [
      ...pivotCmd,
      "--root",
      pivotRoot,
      "run",
      "--rm",
      "--network",
      net,
      IMAGE,
      "true",
    ];
    const podmanRun = (net: string) =>
      podman.argv([
        "run",
        "--rm",
        "--network",
        net,
        "--cgroup-parent",
        `/${parent}`,
        IMAGE,
        "true",
      ]);
    const arms: Record<string, string[]> = {
      "pivot none": pivotRun("none"),
      "pivot bridge": pivotRun("bridge"),
      "podman none": podmanRun("none"),
      "podman bridge": podmanRun("bridge"),
    };
    const samples = new Map<string, number[]>(Object.keys(arms).map((a) => [a, []]));
    const total = opts.warmup + opts.runs;
    for (let i = 0; i < total; i++) {
      for (const arm of shuffle(Object.keys(arms))) {
        const [cmd, ...args] = arms[arm]!;
        const t0 = performance.now();
        const r = spawnSync(cmd!, args, { env: podman.env, encoding: "utf8" });
        const ms = performance.now() - t0;
        if (r.status !== 0) throw new Error(`${arm} failed (${r.status}): ${r.stderr}`);
        if (i >= opts.warmup) samples.get(arm)!.push(ms);
      }
      loads.push(loadAverage());
      process.stderr.write(`\rbench: set-up ${i + 1}/${total}`);
    }
    process.stderr.write("\n");
    const med = (arm: string) => median(samples.get(arm)!);
    lines.push(
      `### Network set-up in a container start: run --rm IMAGE true (N = ${opts.runs}, +${opts.warmup} warm-up, interleaved)`,
      "",
      "| arm | wall ms (median) | min–max |",
      "| --- | ---: | ---: |",
    );
    for (const [arm, xs] of samples)
      lines.push(`| ${arm} | ${f1(med(arm))} | ${f1(Math.min(...xs))}–${f1(Math.max(...xs))} |`);
    const dPivot = med("pivot bridge") - med("pivot none");
    const dPodman = med("podman bridge") - med("podman none");
    lines.push(
      "",
      `Added by the network (median bridge − median none): pivot ${f1(dPivot)} ms, podman ${f1(dPodman)} ms (pivot ÷ podman ${f2(dPivot / dPodman)}).`,
      "",
    );
  }
} catch (err) {
  await cleanup();
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  for (const l of leftovers) process.stderr.write(`bench: leftover: ${l}\n`);
  process.exit(1);
}
await cleanup();

const out = [
  "```",
  ...machineFacts(loads),
  ...versions,
  ...leftovers.map((l) => `leftover: ${l}`),
  "```",
  "",
  ...lines,
].join("\n");
process.stdout.write(`${out}\n`);
if (opts.out) writeFileSync(opts.out, `${out}\n`);
