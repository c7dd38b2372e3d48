// The iptables rules Pivot writes and the look-ups and removals behind the Firewall class
// (firewall.ts), which loads this module only when it has rules to look up or write: a
// container without a network never needs it.
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
  // Internal networks: nothing enters or leaves the bridge through the host. (Every rule is
  // written as iptables-save prints it, options in its order, so that Firewall.sync can compare.)
  for (const n of networks.filter((n) => n.internal)) {
    lines.push(`-A ${c1} -i ${n.bridge} ! -o ${n.bridge} -j DROP`);
    lines.push(`-A ${c1} ! -i ${n.bridge} -o ${n.bridge} -j DROP`);
  }
  // Docker's two stages: traffic leaving a network's bridge for another network's bridge is dropped.
  for (const n of networks) lines.push(`-A ${c1} -i ${n.bridge} ! -o ${n.bridge} -j ${c2}`);
  for (const n of networks) lines.push(`-A ${c2} -o ${n.bridge} -j DROP`);
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** The chains Pivot owns, by table: PREFIX-FORWARD and the isolation pair; PREFIX-POSTROUTING. */
export function ownChains(chainPrefix: string): { filter: string[]; nat: string[] } {
  return {
    filter: [`${chainPrefix}-FORWARD`, `${chainPrefix}-ISOLATION`, `${chainPrefix}-ISOLATION-2`],
    nat: [`${chainPrefix}-POSTROUTING`],
  };
}

/** How many jumps to Pivot's chains the hooks have, and whether FORWARD's first rule is one. */
export interface Jumps {
  forward: number;
  forwardFirst: boolean;
  postrouting: number;
}

/** Pivot's chains as the kernel has them: each chain's -A lines (absent: no chain), the jumps. */
export interface Installed {
  chains: Map<string, string[]>;
  jumps: Jumps;
}

/**
 * Reads Pivot's chains and the jumps to them out of `iptables-save` (all tables: one exec, as
 * cheap as one `iptables -C` here, ~2.5 ms).
 */
export function parseInstalled(chainPrefix: string, save: string): Installed {
  const own = ownChains(chainPrefix);
  const mine = new Set([...own.filter, ...own.nat]);
  const chains = new Map<string, string[]>();
  const jumps: Jumps = { forward: 0, forwardFirst: false, postrouting: 0 };
  let table = "";
  let forwardSeen = 0;
  for (const line of save.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1).trim();
    else if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0]!;
      if (mine.has(name)) chains.set(name, []);
    } else if (line.startsWith("-A ")) {
      const chain = line.split(" ")[1]!;
      if (mine.has(chain)) chains.get(chain)?.push(line);
      else if (table === "filter" && chain === "FORWARD") {
        forwardSeen++;
        if (line === `-A FORWARD -j ${own.filter[0]}`) {
          jumps.forward++;
          if (forwardSeen === 1) jumps.forwardFirst = true;
        }
      } else if (table === "nat" && chain === "POSTROUTING") {
        if (line === `-A POSTROUTING -j ${own.nat[0]}`) jumps.postrouting++;
      }
    }
  }
  return { chains, jumps };
}

/**
 * Pivot's rules while containers are on networks, chain by chain, as `iptables-save` prints
 * them. Isolation covers every network, as before; networks in ACTIVE (those with containers)
 * get the forward accepts the firewall plugin gave each container (out of the bridge: from the
 * subnet, anything else dropped; into it: replies), and, unless internal, the masquerade the bridge plugin's ipMasq gave each
 * container (from the subnet, leaving by another interface, not multicast).
 */
export function ownRules(
  chainPrefix: string,
  networks: NetworkDef[],
  active: ReadonlySet<string>,
): Map<string, string[]> {
  const [fwd, c1, c2] = ownChains(chainPrefix).filter as [string, string, string];
  const post = ownChains(chainPrefix).nat[0]!;
  const used = networks.filter((n) => active.has(n.id));
  const iso = isolationRules(chainPrefix, networks).split("\n");
  const forward = [`-A ${fwd} -j ${c1}`];
  for (const n of used) {
    forward.push(`-A ${fwd} -o ${n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    // Out of the bridge only from the subnet (the firewall plugin accepted `-s <container IP>`):
    // a container may forge sources (CAP_NET_RAW), which would leave the host un-masqueraded.
    forward.push(`-A ${fwd} -s ${n.subnet} -i ${n.bridge} -j ACCEPT`);
    forward.push(`-A ${fwd} ! -s ${n.subnet} -i ${n.bridge} -j DROP`);
  }
  return new Map([
    [fwd, forward],
    [c1, iso.filter((l) => l.startsWith(`-A ${c1} `))],
    [c2, iso.filter((l) => l.startsWith(`-A ${c2} `))],
    [
      post,
      used
        .filter((n) => !n.internal)
        .map((n) => `-A ${post} -s ${n.subnet} ! -d 224.0.0.0/4 ! -o ${n.bridge} -j MASQUERADE`),
    ],
  ]);
}

/** Whether the kernel has exactly WANT in Pivot's chains, FORWARD's jump first, one of each. */
export function upToDate(have: Installed, want: Map<string, string[]>): boolean {
  const j = have.jumps;
  if (j.forward !== 1 || !j.forwardFirst || j.postrouting !== 1) return false;
  for (const [chain, lines] of want) {
    const got = have.chains.get(chain);
    if (!got || got.join("\n") !== lines.join("\n")) return false;
  }
  return true;
}

/**
 * Pivot's rules (ownRules) as an iptables-restore --noflush input: a chain declared there is
 * flushed, so the batch replaces the chains' contents atomically. The jumps are made right in
 * the same batch from what the kernel has (JUMPS): FORWARD's is first (where the firewall
 * plugin put its), moved there if something went before it; POSTROUTING's appended, as the
 * bridge plugin's were; one of each.
 */
export function firewallRules(
  chainPrefix: string,
  networks: NetworkDef[],
  active: ReadonlySet<string>,
  jumps: Jumps,
): string {
  const own = ownChains(chainPrefix);
  const rules = ownRules(chainPrefix, networks, active);
  const lines = ["*filter", ...own.filter.map((c) => `:${c} - [0:0]`)];
  for (const c of own.filter) lines.push(...rules.get(c)!);
  if (jumps.forward !== 1 || !jumps.forwardFirst) {
    for (let i = 0; i < jumps.forward; i++) lines.push(`-D FORWARD -j ${own.filter[0]}`);
    lines.push(`-I FORWARD -j ${own.filter[0]}`);
  }
  lines.push("COMMIT", "*nat", ...own.nat.map((c) => `:${c} - [0:0]`));
  for (const c of own.nat) lines.push(...rules.get(c)!);
  for (let i = 1; i < jumps.postrouting; i++) lines.push(`-D POSTROUTING -j ${own.nat[0]}`);
  if (jumps.postrouting === 0) lines.push(`-A POSTROUTING -j ${own.nat[0]}`);
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/**
 * Removes the jumps to Pivot's chains (as many as JUMPS counts) and the chains, as one
 * iptables-restore --noflush input.
 */
export function removalRules(
  chainPrefix: string,
  jumps: Jumps = { forward: 1, forwardFirst: true, postrouting: 1 },
): string {
  const own = ownChains(chainPrefix);
  const table = (name: string, hook: string, n: number, chains: string[]) => [
    `*${name}`,
    ...Array.from({ length: n }, () => `-D ${hook} -j ${chains[0]}`),
    ...chains.map((c) => `:${c} - [0:0]`),
    ...chains.map((c) => `-X ${c}`),
    "COMMIT",
  ];
  return [
    ...table("filter", "FORWARD", jumps.forward, own.filter),
    ...table("nat", "POSTROUTING", jumps.postrouting, own.nat),
    "",
  ].join("\n");
}

async function ipt(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return execTool("iptables", ["-w", ...args]);
}

/** The rules of a chain as `iptables -S` prints them (-A lines), or null if it does not exist. */
export async function chainRules(table: string, chain: string): Promise<string[] | null> {
  const r = await ipt(["-t", table, "-S", chain]);
  if (r.status !== 0) return null;
  return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
}

export async function deleteRule(table: string, line: string): Promise<void> {
  const args = splitRule(line);
  args[0] = "-D";
  await ipt(["-t", table, ...args]);
}

/** The rules jumping to CHAIN, each with its 1-based position in its own chain. */
export async function jumpsTo(
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
export async function deleteChain(table: string, chain: string): Promise<void> {
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
export async function deleteIfEmpty(table: string, chain: string): Promise<boolean> {
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

export interface NftTable {
  family: string;
  name: string;
}

export async function nftTables(): Promise<NftTable[] | null> {
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
export async function nftTableIsEmpty(t: NftTable): Promise<boolean> {
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

// For the Firewall class, which has this module as its one lazy import.
export { execTool, HostCommandError, mustExec };
