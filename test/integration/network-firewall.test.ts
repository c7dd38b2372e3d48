// Pivot's own iptables rules (src/network/firewall.ts) in a network namespace this test makes:
// nothing of the host's rules is read or changed. Each step runs Firewall.sync in a process
// that entered the namespace (test/fixtures/firewall-netns.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
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
});
