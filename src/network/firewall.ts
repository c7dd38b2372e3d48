// iptables rules Pivot owns (isolation between networks), and removing what the CNI plugins
// leave behind once nobody uses it: the plugins delete their per-container rules on DEL, but
// keep their shared chains (CNI-FORWARD, CNI-HOSTPORT-*) forever, and iptables-nft keeps the
// nftables tables it created. Pivot removes those only when they are empty.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { execTool, HostCommandError, mustExec } from "./exec.ts";
import type { NetworkDef } from "./networks.ts";

/** Splits one line of `iptables -S` into arguments (double quotes, backslash escapes). */
export function splitRule(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inQuote = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else if (c === '"') {
      inQuote = !inQuote;
      has = true;
    } else if (c === " " && !inQuote) {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** The isolation rules for a set of networks, as an iptables-restore --noflush input. */
export function isolationRules(chainPrefix: string, networks: NetworkDef[]): string {
  const c1 = `${chainPrefix}-ISOLATION`;
  const c2 = `${chainPrefix}-ISOLATION-2`;
  const lines = ["*filter", `:${c1} - [0:0]`, `:${c2} - [0:0]`];
  // Internal networks: nothing enters or leaves the bridge through the host.
  for (const n of networks.filter((n) => n.internal)) {
    lines.push(`-A ${c1} -i ${n.bridge} ! -o ${n.bridge} -j DROP`);
    lines.push(`-A ${c1} -o ${n.bridge} ! -i ${n.bridge} -j DROP`);
  }
  // Docker's two stages: traffic leaving a network's bridge for another network's bridge is dropped.
  for (const n of networks) lines.push(`-A ${c1} -i ${n.bridge} ! -o ${n.bridge} -j ${c2}`);
  for (const n of networks) lines.push(`-A ${c2} -o ${n.bridge} -j DROP`);
  lines.push("COMMIT", "");
  return lines.join("\n");
}

async function ipt(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return execTool("iptables", ["-w", ...args]);
}

/** The rules of a chain as `iptables -S` prints them (-A lines), or null if it does not exist. */
async function chainRules(table: string, chain: string): Promise<string[] | null> {
  const r = await ipt(["-t", table, "-S", chain]);
  if (r.status !== 0) return null;
  return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
}

async function deleteRule(table: string, line: string): Promise<void> {
  const args = splitRule(line);
  args[0] = "-D";
  await ipt(["-t", table, ...args]);
}

/** The rules jumping to CHAIN, each with its 1-based position in its own chain. */
async function jumpsTo(
  table: string,
  chain: string,
): Promise<{ line: string; chain: string; position: number }[]> {
  const all = await execTool("iptables-save", ["-t", table]);
  const count = new Map<string, number>();
  const out: { line: string; chain: string; position: number }[] = [];
  for (const line of all.stdout.split("\n")) {
    if (!line.startsWith("-A ")) continue;
    const from = line.split(" ")[1]!;
    const position = (count.get(from) ?? 0) + 1;
    count.set(from, position);
    if (from !== chain && line.endsWith(` -j ${chain}`)) out.push({ line, chain: from, position });
  }
  return out;
}

/** Deletes a chain Pivot owns: the jumps to it, its rules, the chain. */
async function deleteChain(table: string, chain: string): Promise<void> {
  for (const j of await jumpsTo(table, chain)) await deleteRule(table, j.line);
  await ipt(["-t", table, "-F", chain]);
  const r = await ipt(["-t", table, "-X", chain]);
  if (r.status !== 0 && !/No chain|does not exist/i.test(r.stderr)) {
    throw new HostCommandError(`iptables -t ${table} -X ${chain}`, r.status, r.stderr);
  }
}

/**
 * Deletes a shared chain only if it is empty, without ever flushing it: the jumps to it go,
 * then `-X`, which the kernel refuses for a chain with rules (another process may have added
 * one since we looked); then the jumps are put back where they were. Returns whether it went.
 */
async function deleteIfEmpty(table: string, chain: string): Promise<boolean> {
  const jumps = await jumpsTo(table, chain);
  for (const j of jumps) await deleteRule(table, j.line);
  const r = await ipt(["-t", table, "-X", chain]);
  if (r.status === 0 || /No chain|does not exist/i.test(r.stderr)) return true;
  for (const j of jumps) {
    const args = splitRule(j.line);
    args.splice(0, 2, "-I", j.chain, String(j.position));
    await ipt(["-t", table, ...args]);
  }
  return false;
}

interface NftTable {
  family: string;
  name: string;
}

async function nftTables(): Promise<NftTable[] | null> {
  let r: Awaited<ReturnType<typeof execTool>>;
  try {
    r = await execTool("nft", ["-j", "list", "tables"]);
  } catch {
    return null; // nft not installed
  }
  if (r.status !== 0) return null;
  const parsed = JSON.parse(r.stdout || "{}") as { nftables?: { table?: NftTable }[] };
  return (parsed.nftables ?? []).flatMap((o) =>
    o.table ? [{ family: o.table.family, name: o.table.name }] : [],
  );
}

/** An nftables table with no rules, no sets and only base chains that accept by default. */
async function nftTableIsEmpty(t: NftTable): Promise<boolean> {
  const r = await execTool("nft", ["-j", "list", "table", t.family, t.name]);
  if (r.status !== 0) return false;
  const parsed = JSON.parse(r.stdout || "{}") as { nftables?: Record<string, unknown>[] };
  for (const o of parsed.nftables ?? []) {
    if ("metainfo" in o || "table" in o) continue;
    if ("chain" in o) {
      const c = o.chain as { hook?: string; policy?: string };
      if (c.hook && (c.policy === undefined || c.policy === "accept")) continue;
    }
    return false;
  }
  return true;
}

export class Firewall {
  readonly chain: string;
  readonly chain2: string;

  constructor(
    readonly chainPrefix: string,
    /** Where the tables that existed before Pivot's first rule are recorded. */
    private readonly beforeFile: string,
  ) {
    this.chain = `${chainPrefix}-ISOLATION`;
    this.chain2 = `${chainPrefix}-ISOLATION-2`;
  }

  /** Records which nftables tables exist before Pivot adds anything (once, until `cleanup`). */
  async recordBefore(): Promise<void> {
    try {
      readFileSync(this.beforeFile);
      return;
    } catch {}
    const tables = await nftTables();
    writeFileSync(this.beforeFile, `${JSON.stringify({ tables })}\n`);
  }

  /** Writes the isolation chains for NETWORKS (atomically: one iptables-restore transaction). */
  async sync(networks: NetworkDef[]): Promise<void> {
    await mustExec(
      "iptables-restore",
      ["-w", "--noflush"],
      isolationRules(this.chainPrefix, networks),
    );
  }

  /**
   * Called when Pivot has no container on any network: removes Pivot's chains, then the
   * plugins' shared chains that are empty, then nftables tables that did not exist before and
   * are empty now.
   */
  async cleanup(): Promise<void> {
    await deleteChain("filter", this.chain);
    await deleteChain("filter", this.chain2);

    // The firewall plugin: once its containers are gone, CNI-FORWARD holds only jumps to admin
    // chains; those that are empty go (an empty admin chain changes nothing), then CNI-FORWARD
    // if nothing else is in it.
    const fwd = await chainRules("filter", "CNI-FORWARD");
    if (fwd) {
      for (const line of fwd) {
        if (!/--comment "CNI firewall plugin admin overrides"/.test(line)) continue;
        const admin = line.split(" -j ").pop()!;
        const rules = await chainRules("filter", admin);
        if (rules && rules.length > 0) continue;
        await deleteRule("filter", line);
        await deleteIfEmpty("filter", admin);
      }
      await deleteIfEmpty("filter", "CNI-FORWARD");
    }

    // portmap: CNI-HOSTPORT-DNAT is empty once no port is published; SETMARK and MASQ (one
    // fixed rule each) only serve it.
    const dnat = await chainRules("nat", "CNI-HOSTPORT-DNAT");
    if (dnat && dnat.length === 0 && (await deleteIfEmpty("nat", "CNI-HOSTPORT-DNAT"))) {
      const setmarkUsers = (await jumpsTo("nat", "CNI-HOSTPORT-SETMARK")).length;
      if (setmarkUsers === 0) await deleteChain("nat", "CNI-HOSTPORT-SETMARK");
      await deleteChain("nat", "CNI-HOSTPORT-MASQ");
    }

    let before: { tables: NftTable[] | null } | null = null;
    try {
      before = JSON.parse(readFileSync(this.beforeFile, "utf8"));
    } catch {}
    const now = await nftTables();
    if (before?.tables && now) {
      const existed = new Set(before.tables.map((t) => `${t.family} ${t.name}`));
      for (const t of now) {
        // Only tables iptables-nft manages (ip/ip6 filter/nat/mangle/raw), never nft's own.
        if (!["ip", "ip6"].includes(t.family)) continue;
        if (!["filter", "nat", "mangle", "raw", "security"].includes(t.name)) continue;
        if (existed.has(`${t.family} ${t.name}`)) continue;
        if (await nftTableIsEmpty(t)) await execTool("nft", ["delete", "table", t.family, t.name]);
      }
    }
    rmSync(this.beforeFile, { force: true });
  }
}
