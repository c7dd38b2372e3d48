// Network definitions, stored one JSON file per network, and the CNI configuration list each one
// becomes: bridge (+ host-local IPAM), then portmap for a container that publishes ports.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PivotError } from "../errors.ts";
import { randomHex } from "../util/random.ts";
import type { NetworkConfList } from "./cni.ts";
import { CNI_VERSION, DEFAULT_CNI_PATH } from "./cni-defaults.ts";
import {
  contains,
  formatIPv4,
  formatSubnet4,
  mustParseSubnet4,
  nthAddress,
  overlaps,
  parseIPv4,
  parseSubnet4,
  pickFreeSubnet,
  type Subnet4,
  subnetSize,
} from "./ipnet.ts";

// `ip`, on first use: reading the definitions (every network manager) runs no command.
const execTool = async (cmd: string, args: string[]) =>
  (await import("./exec.ts")).execTool(cmd, args);

export interface NetworkSettings {
  /** Network definitions (`<name>.json`). Default /var/lib/pivot/networks. */
  configDir: string;
  /** Runtime state that dies with a reboot, as network namespaces do: ipam/, netns/, attachments/. */
  runDir: string;
  /** CNI plugin directories. */
  cniPath: string[];
  /** The network containers join when none is named (Docker's "bridge"). */
  defaultNetwork: string;
  defaultBridge: string;
  /** Candidates for the default network's subnet, the first one free on this host wins. */
  defaultSubnets: string[];
  /** User-defined networks get the first free `subnetPrefix` block of these pools. */
  subnetPools: string[];
  subnetPrefix: number;
  /** Bridges of user-defined networks are named PREFIX + 12 hex digits of the network id. */
  bridgePrefix: string;
  /** iptables chains Pivot owns: PREFIX-ISOLATION and PREFIX-ISOLATION-2. */
  chainPrefix: string;
}

export const DEFAULT_SETTINGS: NetworkSettings = {
  configDir: "/var/lib/pivot/networks",
  runDir: "/run/pivot/network",
  cniPath: DEFAULT_CNI_PATH,
  defaultNetwork: "pivot",
  defaultBridge: "pivot0",
  defaultSubnets: ["172.30.0.0/16", "10.30.0.0/16", "192.168.130.0/24"],
  subnetPools: ["172.31.0.0/16", "10.31.0.0/16"],
  subnetPrefix: 24,
  bridgePrefix: "pv-",
  chainPrefix: "PIVOT",
};

export interface NetworkDef {
  name: string;
  /** 64 hex digits, as Docker's network ids. */
  id: string;
  driver: "bridge";
  bridge: string;
  subnet: string;
  gateway: string;
  /** No outbound NAT, no route out, and traffic leaving the bridge is dropped. */
  internal: boolean;
  mtu?: number;
  labels: Record<string, string>;
  created: string;
  /** The default network: containers on it do not resolve each other by name (as Docker's). */
  default?: boolean;
}

export interface CreateNetworkOptions {
  subnet?: string;
  gateway?: string;
  internal?: boolean;
  labels?: Record<string, string>;
  /** Bridge name (default PREFIX + id). */
  bridge?: string;
  mtu?: number;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
const IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/;

export class NetworkError extends PivotError {}

/** The host's IPv4 addresses' subnets and routes, which container subnets must not overlap. */
export async function hostSubnets(): Promise<{ subnet: Subnet4; where: string }[]> {
  const out: { subnet: Subnet4; where: string }[] = [];
  const addr = await execTool("ip", ["-j", "-4", "addr", "show"]);
  if (addr.status === 0) {
    for (const link of JSON.parse(addr.stdout || "[]") as {
      ifname: string;
      addr_info?: { local: string; prefixlen: number }[];
    }[]) {
      for (const a of link.addr_info ?? []) {
        const s = parseSubnet4(`${a.local}/${a.prefixlen}`, true);
        if (s)
          out.push({ subnet: s, where: `address ${a.local}/${a.prefixlen} of ${link.ifname}` });
      }
    }
  }
  const routes = await execTool("ip", ["-j", "-4", "route", "show", "table", "all"]);
  if (routes.status === 0) {
    for (const r of JSON.parse(routes.stdout || "[]") as {
      dst: string;
      dev?: string;
      type?: string;
    }[]) {
      if (r.dst === "default" || (r.type && r.type !== "unicast")) continue;
      const s = parseSubnet4(r.dst.includes("/") ? r.dst : `${r.dst}/32`, true);
      if (s) out.push({ subnet: s, where: `route ${r.dst}${r.dev ? ` dev ${r.dev}` : ""}` });
    }
  }
  return out;
}

/** The MTU of the interface of the default route (what outbound traffic has to fit), if any. */
export async function defaultRouteMtu(): Promise<number | undefined> {
  const r = await execTool("ip", ["-j", "-4", "route", "show", "default"]);
  if (r.status !== 0) return undefined;
  const dev = (JSON.parse(r.stdout || "[]") as { dev?: string }[])[0]?.dev;
  if (!dev) return undefined;
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${dev}/mtu`, "utf8").trim());
    return Number.isFinite(mtu) && mtu > 0 ? mtu : undefined;
  } catch {
    return undefined;
  }
}

export class NetworkStore {
  constructor(readonly settings: NetworkSettings) {}

  private file(name: string): string {
    return join(this.settings.configDir, `${name}.json`);
  }

  list(): NetworkDef[] {
    let names: string[];
    try {
      names = readdirSync(this.settings.configDir);
    } catch {
      return [];
    }
    const out: NetworkDef[] = [];
    for (const f of names.sort()) {
      if (!f.endsWith(".json") || f.startsWith(".")) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.settings.configDir, f), "utf8")) as NetworkDef);
      } catch {}
    }
    return out;
  }

  /** A network by name, id or unique id prefix. */
  find(ref: string): NetworkDef | null {
    const all = this.list();
    const byName = all.find((n) => n.name === ref);
    if (byName) return byName;
    if (/^[0-9a-f]{3,64}$/.test(ref)) {
      const byId = all.filter((n) => n.id.startsWith(ref));
      if (byId.length === 1) return byId[0]!;
      if (byId.length > 1)
        throw new NetworkError(`network id prefix "${ref}" is ambiguous`, {
          hint: "give more digits or the name",
        });
    }
    return null;
  }

  get(ref: string): NetworkDef {
    const n = this.find(ref);
    if (!n)
      throw new NetworkError(`network "${ref}" not found`, {
        hint: "`pivot network ls` lists networks; `pivot network create NAME` makes one",
      });
    return n;
  }

  save(def: NetworkDef): void {
    mkdirSync(this.settings.configDir, { recursive: true, mode: 0o700 });
    const tmp = join(this.settings.configDir, `.${def.name}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(def, null, 2)}\n`);
    renameSync(tmp, this.file(def.name));
  }

  delete(name: string): void {
    rmSync(this.file(name), { force: true });
  }

  /**
   * A new definition (not yet saved): validates the name, picks or checks the subnet against the
   * host's addresses and routes and the other networks, derives gateway and bridge name.
   */
  async define(
    name: string,
    options: CreateNetworkOptions = {},
    isDefault = false,
  ): Promise<NetworkDef> {
    if (!NAME_RE.test(name))
      throw new NetworkError(`invalid network name "${name}"`, {
        hint: "use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 64)",
      });
    if (this.find(name)?.name === name)
      throw new NetworkError(`network "${name}" already exists`, {
        hint: `remove it with \`pivot network rm ${name}\` or choose another name`,
      });
    const existing = this.list();
    const id = randomHex(32);
    const bridge =
      options.bridge ??
      (isDefault ? this.settings.defaultBridge : `${this.settings.bridgePrefix}${id.slice(0, 12)}`);
    if (!IFNAME_RE.test(bridge))
      throw new NetworkError(`invalid bridge name "${bridge}"`, {
        hint: "an interface name has at most 15 letters, digits, '_', '.' or '-'",
      });
    const clash = existing.find((n) => n.bridge === bridge);
    if (clash)
      throw new NetworkError(`bridge ${bridge} is already used by network "${clash.name}"`);

    const host = await hostSubnets();
    // Routes through our own bridges are our networks' subnets: those are checked by name below.
    const ours = new Set(existing.map((n) => n.bridge));
    const hostTaken = host.filter((h) => !ours.has(/ dev (\S+)$/.exec(h.where)?.[1] ?? ""));
    const netTaken = existing.map((n) => ({
      subnet: mustParseSubnet4(n.subnet, `network ${n.name}`),
      where: `network "${n.name}"`,
    }));
    let subnet: Subnet4;
    if (options.subnet) {
      subnet = mustParseSubnet4(options.subnet, "subnet");
      const hit = [...netTaken, ...hostTaken].find((t) => overlaps(t.subnet, subnet));
      if (hit)
        throw new NetworkError(`subnet ${options.subnet} overlaps ${hit.where}`, {
          hint: "choose another subnet, or leave --subnet out to get a free one",
        });
    } else {
      const taken = [...netTaken, ...hostTaken].map((t) => t.subnet);
      const candidates = isDefault
        ? this.settings.defaultSubnets.map((s) => {
            const c = mustParseSubnet4(s, "default subnet");
            return taken.some((t) => overlaps(t, c)) ? null : c;
          })
        : this.settings.subnetPools.map((p) =>
            pickFreeSubnet(mustParseSubnet4(p, "subnet pool"), this.settings.subnetPrefix, taken),
          );
      const found = candidates.find((c) => c !== null);
      if (!found)
        throw new NetworkError("no free subnet left in the address pools", {
          hint: `all of ${(isDefault ? this.settings.defaultSubnets : this.settings.subnetPools).join(", ")} overlap the host's routes or other networks; give --subnet, or remove unused networks (\`pivot network prune\`)`,
        });
      subnet = found;
    }
    let gateway: string;
    if (options.gateway) {
      const g = parseIPv4(options.gateway);
      const broadcast = subnet.base + subnetSize(subnet) - 1;
      if (g === null || !contains(subnet, g) || g === subnet.base || g === broadcast)
        throw new NetworkError(
          `gateway ${options.gateway} is not a host address of ${formatSubnet4(subnet)}`,
        );
      gateway = options.gateway;
    } else {
      gateway = formatIPv4(nthAddress(subnet, 1));
    }
    const def: NetworkDef = {
      name,
      id,
      driver: "bridge",
      bridge,
      subnet: formatSubnet4(subnet),
      gateway,
      internal: options.internal ?? false,
      labels: options.labels ?? {},
      created: new Date().toISOString(),
    };
    const mtu = options.mtu ?? (await defaultRouteMtu());
    if (mtu) def.mtu = mtu;
    if (isDefault) def.default = true;
    return def;
  }

  /** Host-local's state directory: one directory per network name below it. */
  get ipamDir(): string {
    return join(this.settings.runDir, "ipam");
  }

  /**
   * The CNI configuration list of a network, for a container that publishes ports (PORTS) or
   * not. No ipMasq and no firewall plugin: their per-container chains and rules cost ~10
   * iptables calls per ADD and DEL; Pivot's Firewall does the same per network instead.
   */
  conflist(def: NetworkDef, ports = true): NetworkConfList {
    const bridge: Record<string, unknown> = {
      type: "bridge",
      bridge: def.bridge,
      isGateway: true,
      ipMasq: false,
      hairpinMode: true,
      capabilities: { ips: true },
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: def.subnet, gateway: def.gateway }]],
        routes: def.internal ? [] : [{ dst: "0.0.0.0/0" }],
        dataDir: this.ipamDir,
      },
    };
    if (def.mtu) bridge.mtu = def.mtu;
    return {
      cniVersion: CNI_VERSION,
      name: def.name,
      plugins: [
        bridge as NetworkConfList["plugins"][number],
        ...(ports ? [{ type: "portmap", capabilities: { portMappings: true }, snat: true }] : []),
      ],
    };
  }

  /**
   * Deletes the network's bridge if it has no port and the MAC 00:00:00:00:00:00. That is a
   * bridge whose first ADD failed before the bridge plugin fixed its MAC (host-local refusing
   * `--ip` = the gateway, a plugin killed): it had its veth's MAC until the undo deleted the
   * veth. The plugin's next ADD sets that MAC back and fails ("could not set bridge's mac:
   * invalid argument", containernetworking/plugins#620) for every container after. With no port
   * it serves nothing; the next ADD makes it afresh. Two sysfs reads when it is fine.
   */
  async removeBrokenBridge(def: NetworkDef): Promise<void> {
    const dir = `/sys/class/net/${def.bridge}`;
    try {
      if (readFileSync(join(dir, "address"), "utf8").trim() !== "00:00:00:00:00:00") return;
      if (readdirSync(join(dir, "brif")).length > 0) return;
    } catch {
      return; // no such bridge (yet)
    }
    const r = await execTool("ip", ["link", "del", def.bridge]);
    if (r.status !== 0 && !/Cannot find device|does not exist/i.test(r.stderr))
      throw new NetworkError(`removing bridge ${def.bridge} (no MAC) failed: ${r.stderr.trim()}`);
  }

  /** Removes what a network leaves on the host: its bridge and its IPAM state. Idempotent. */
  async removeResources(def: NetworkDef): Promise<void> {
    const r = await execTool("ip", ["link", "del", def.bridge]);
    if (r.status !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) {
      throw new NetworkError(`removing bridge ${def.bridge} failed: ${r.stderr.trim()}`);
    }
    rmSync(join(this.ipamDir, def.name), { recursive: true, force: true });
  }
}

/** Whether an IPv4 address is inside a network's subnet. */
export function inSubnet(def: NetworkDef, ip: string): boolean {
  const s = parseSubnet4(def.subnet);
  const n = parseIPv4(ip);
  return s !== null && n !== null && contains(s, n);
}
