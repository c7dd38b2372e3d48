// Pivot's own iptables rules (src/network/firewall.ts) in a network namespace this test makes:
// nothing of the host's rules is read or changed. Each step runs Firewall.sync in a process
// that entered the namespace (test/fixtures/firewall-netns.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createNetns, removeNetns } from "../../src/network/netns.ts";
import type { NetworkDef } from "../../src/network/networks.ts";
import { BUN, isRoot, REPO, rm, tempDir } from "../helpers.ts";

if (!isRoot) throw new Error("the firewall tests create a network namespace: run as root");

const P = "PVTFW";
let work: string;
let ns: string;
let counter = 0;

const net = (name: string, subnet: string, internal = false): NetworkDef => ({
  name,
  id: `id-${name}`,
  driver: "bridge",
  bridge: `pv-${name}`,
  subnet,
  gateway: subnet.replace(/0\/24$/, "1"),
  internal,
  labels: {},
  created: "",
});
const NETS = [
  net("a", "100.64.1.0/24"),
  net("b", "100.64.2.0/24", true),
  net("c", "100.64.3.0/24"),
];

/** A command in the test's namespace; throws unless it succeeds. */
function inNs(cmd: string, args: string[], input?: string): string {
  const r = spawnSync("nsenter", [`--net=${ns}`, cmd, ...args], {
    encoding: "utf8",
    ...(input !== undefined ? { input } : {}),
  });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** The namespace's rules, without comments and counters. */
const save = () =>
  inNs("iptables-save", [])
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ""));

/** Firewall.sync once per step (ids of the networks with containers); whether each wrote. */
function sync(dir: string, ...steps: string[][]): boolean[] {
  const config = {
    prefix: P,
    dir,
    networks: NETS,
    steps: steps.map((active) => ({ active: active.map((n) => `id-${n}`) })),
  };
  const out = inNs(BUN, [join(REPO, "test/fixtures/firewall-netns.ts"), JSON.stringify(config)]);
  return out
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { wrote: boolean }).wrote);
}

/** Firewall.sync of ACTIVE killed after its batch, before it records it. */
function crash(dir: string, active: string[]): void {
  const config = {
    prefix: P,
    dir,
    networks: NETS,
    steps: [{ active: active.map((n) => `id-${n}`), crash: true }],
  };
  const r = spawnSync(
    "nsenter",
    [`--net=${ns}`, BUN, join(REPO, "test/fixtures/firewall-netns.ts"), JSON.stringify(config)],
    { encoding: "utf8" },
  );
  expect(r.signal).toBe("SIGKILL");
}

/** A fresh state directory (a fresh Pivot on the same kernel rules). */
function stateDir(): string {
  const dir = join(work, `state-${++counter}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const rulesOf = (chain: string) => save().filter((l) => l.startsWith(`-A ${chain} `));

beforeAll(async () => {
  work = tempDir("pivot-fw-");
  ns = join(work, "netns");
  await createNetns(ns);
});

afterAll(async () => {
  await removeNetns(ns);
  rm(work);
});

describe("Pivot's rules", () => {
  test("written once; an unchanged set of networks writes nothing; the last container removes them", () => {
    const dir = stateDir();
    expect(sync(dir, ["a", "b"], ["a", "b"], ["a"], [], [])).toEqual([
      true,
      false,
      true,
      true,
      false,
    ]);
    expect(save().filter((l) => l.includes(P))).toEqual([]);
  });

  test("jumps removed behind Pivot's back are put back, FORWARD's first, even with no change of networks", () => {
    const dir = stateDir();
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    inNs("iptables", ["-D", "FORWARD", "-j", `${P}-FORWARD`]);
    inNs("iptables", ["-t", "nat", "-D", "POSTROUTING", "-j", `${P}-POSTROUTING`]);
    // The same networks: the rules are the same, the jumps are not.
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    expect(rulesOf("FORWARD")).toEqual([`-A FORWARD -j ${P}-FORWARD`]);
    expect(rulesOf("POSTROUTING")).toEqual([`-A POSTROUTING -j ${P}-POSTROUTING`]);
    // A flushed FORWARD (iptables -F, a firewall's reload) and a rule put before Pivot's jump.
    inNs("iptables", ["-F", "FORWARD"]);
    inNs("iptables", ["-t", "nat", "-F", "POSTROUTING"]);
    inNs("iptables", ["-A", "FORWARD", "-s", "100.64.9.9/32", "-j", "DROP"]);
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    expect(rulesOf("FORWARD")).toEqual([
      `-A FORWARD -j ${P}-FORWARD`,
      "-A FORWARD -s 100.64.9.9/32 -j DROP",
    ]);
    inNs("iptables", ["-I", "FORWARD", "-s", "100.64.9.8/32", "-j", "DROP"]);
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    expect(rulesOf("FORWARD")[0]).toBe(`-A FORWARD -j ${P}-FORWARD`);
    expect(rulesOf("FORWARD").filter((l) => l.includes(P))).toHaveLength(1);
    // Doubled jumps become one of each.
    inNs("iptables", ["-A", "FORWARD", "-j", `${P}-FORWARD`]);
    inNs("iptables", ["-t", "nat", "-A", "POSTROUTING", "-j", `${P}-POSTROUTING`]);
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    expect(rulesOf("FORWARD").filter((l) => l.includes(P))).toHaveLength(1);
    expect(rulesOf("POSTROUTING")).toEqual([`-A POSTROUTING -j ${P}-POSTROUTING`]);
    // A chain's rules flushed: refilled.
    inNs("iptables", ["-t", "nat", "-F", `${P}-POSTROUTING`]);
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    expect(rulesOf(`${P}-POSTROUTING`)).toHaveLength(1);
    expect(sync(dir, [])).toEqual([true]);
    expect(save().filter((l) => l.includes(P))).toEqual([]);
    inNs("iptables", ["-F", "FORWARD"]);
  });

  test("a kill between the batch and its record leaves the next sync to look", () => {
    const dir = stateDir();
    // Nothing installed, recorded; then a first container's rules written, the writer killed.
    expect(sync(dir, ["a"], [])).toEqual([true, true]);
    crash(dir, ["a"]);
    expect(rulesOf(`${P}-POSTROUTING`)).toHaveLength(1);
    // The record does not say "nothing installed": the last container's removal removes them.
    expect(sync(dir, [])).toEqual([true]);
    expect(save().filter((l) => l.includes(P))).toEqual([]);
    // A kill after a removal's batch: the next container's rules and jumps, once each.
    expect(sync(dir, ["a", "b"])).toEqual([true]);
    crash(dir, []);
    expect(sync(dir, ["b"])).toEqual([true]);
    expect(rulesOf("FORWARD")).toEqual([`-A FORWARD -j ${P}-FORWARD`]);
    expect(sync(dir, [])).toEqual([true]);
  });

  test("a record of another boot is not trusted", () => {
    const dir = stateDir();
    expect(sync(dir, ["a"])).toEqual([true]);
    // As after a reboot that put saved rules back (iptables-persistent), Pivot's among them,
    // with a record from the boot before saying nothing was installed.
    writeFileSync(
      join(dir, "firewall-state.json"),
      `${JSON.stringify({ installed: false, bootId: "another boot" })}\n`,
    );
    expect(sync(dir, [])).toEqual([true]);
    expect(save().filter((l) => l.includes(P))).toEqual([]);
  });

  test("a container's packets from outside its subnet are not forwarded (FORWARD policy DROP in the test's namespace)", async () => {
    // ns routes between a bridge with network a's subnet, where a "container" namespace is, and
    // an "outside" namespace at 100.64.9.2/30; its FORWARD policy is DROP (as on hosts where
    // Pivot's accepts matter). The container sends UDP from its address and from a spoofed one
    // (as CAP_NET_RAW could); the outside sees only the first, masqueraded.
    const cns = join(work, "container-netns");
    const ons = join(work, "outside-netns");
    await createNetns(cns);
    await createNetns(ons);
    const dir = stateDir();
    let listener: ReturnType<typeof spawn> | null = null;
    try {
      const inside = (path: string, args: string[]) => {
        const r = spawnSync("nsenter", [`--net=${path}`, "ip", ...args], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`ip ${args.join(" ")} in ${path}: ${r.stderr}`);
      };
      inside(ns, ["link", "add", "name", "pv-a", "type", "bridge"]);
      inside(ns, ["addr", "add", "100.64.1.1/24", "dev", "pv-a"]);
      inside(ns, ["link", "set", "pv-a", "up"]);
      inside(ns, ["link", "add", "name", "ch", "type", "veth", "peer", "name", "c0"]);
      inside(ns, ["link", "set", "c0", "netns", cns]);
      inside(ns, ["link", "set", "ch", "master", "pv-a", "up"]);
      inside(ns, ["link", "add", "name", "oh", "type", "veth", "peer", "name", "o0"]);
      inside(ns, ["link", "set", "o0", "netns", ons]);
      inside(ns, ["addr", "add", "100.64.9.1/30", "dev", "oh"]);
      inside(ns, ["link", "set", "oh", "up"]);
      inside(cns, ["addr", "add", "100.64.1.2/24", "dev", "c0"]);
      inside(cns, ["addr", "add", "100.64.7.7/32", "dev", "c0"]);
      inside(cns, ["link", "set", "c0", "up"]);
      inside(cns, ["route", "add", "default", "via", "100.64.1.1", "src", "100.64.1.2"]);
      inside(ons, ["addr", "add", "100.64.9.2/30", "dev", "o0"]);
      inside(ons, ["link", "set", "o0", "up"]);
      inNs("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
      inNs("iptables", ["-P", "FORWARD", "DROP"]);
      expect(sync(dir, ["a"])).toEqual([true]);
      const code = `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>console.log(m+" from "+r.address));s.bind(5005,"100.64.9.2",()=>console.log("up"))`;
      listener = spawn("nsenter", [`--net=${ons}`, BUN, "-e", code], { stdio: "pipe" });
      let heard = "";
      await new Promise<void>((resolve, reject) => {
        listener!.stdout!.on("data", (d: Buffer) => {
          heard += d.toString();
          if (heard.includes("up")) resolve();
        });
        listener!.once("exit", (c) => reject(new Error(`the listener exited (${c})`)));
      });
      for (const from of ["100.64.1.2", "100.64.7.7"]) {
        const send = `const s=require("dgram").createSocket("udp4");s.bind(0,"${from}",()=>{let n=0;const t=setInterval(()=>{s.send("${from}",5005,"100.64.9.2");if(++n===5){clearInterval(t);s.close()}},50)})`;
        const r = spawnSync("nsenter", [`--net=${cns}`, BUN, "-e", send], { encoding: "utf8" });
        expect(r.status).toBe(0);
      }
      await new Promise((r) => setTimeout(r, 300));
      expect(heard).toContain("100.64.1.2 from 100.64.9.1");
      expect(heard).not.toContain("100.64.7.7 from");
    } finally {
      listener?.kill("SIGKILL");
      sync(dir, []);
      spawnSync("nsenter", [`--net=${ns}`, "iptables", "-P", "FORWARD", "ACCEPT"]);
      spawnSync("nsenter", [`--net=${ns}`, "ip", "link", "del", "pv-a"]);
      spawnSync("nsenter", [`--net=${ns}`, "ip", "link", "del", "oh"]);
      spawnSync("nsenter", [`--net=${ns}`, "ip", "link", "del", "ch"]);
      await removeNetns(cns);
      await removeNetns(ons);
    }
  }, 30_000);
});
