// Containers on networks: a named network namespace per container, CNI ADD/DEL/CHECK through
// each network's plugin list, published ports, /etc/hosts and /etc/resolv.conf, and recovery
// of whatever a crash left half done. All state changes happen under one lock file, so
// concurrent pivot processes see each other's attachments (ports, names, addresses).
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { PivotError } from "../errors.ts";
import { isAlive, withFileLock } from "../image/lock.ts";
import type { CniResult, NetworkConfList } from "./cni.ts";
import {
  checkResolvOptions,
  checkWord,
  type HostsEntry,
  hostsContent,
  parseAddHost,
  type ResolvOptions,
  resolvConfContent,
} from "./dnsfiles.ts";
import { Firewall } from "./firewall.ts";
import {
  type CreateNetworkOptions,
  DEFAULT_SETTINGS,
  inSubnet,
  type NetworkDef,
  NetworkError,
  type NetworkSettings,
  NetworkStore,
} from "./networks.ts";
import {
  formatMapping,
  freeHostPort,
  hostPortProblem,
  notHostAddress,
  PortError,
  type PortMapping,
  portsClash,
} from "./ports.ts";

export interface Attachment {
  network: string;
  networkId: string;
  ifName: string;
  /** "adding" until every plugin's ADD succeeded; an "adding" entry of a dead process is undone. */
  state: "adding" | "ready";
  /** The process doing the ADD. */
  pid: number;
  aliases: string[];
  ports: PortMapping[];
  /** --ip */
  staticIP?: string;
  /** The exact list ADD ran with: DEL and CHECK use it even if the network changed or went. */
  conflist: NetworkConfList;
  result?: CniResult;
  ip?: string;
  prefixLength?: number;
  gateway?: string;
  mac?: string;
}

export interface SandboxOptions {
  /** The container's name, resolvable by peers on user-defined networks. */
  name?: string;
  hostname?: string;
  /** An existing network namespace to use instead of a new one (e.g. --network container:X). */
  netns?: string;
  /** Files to keep up to date (written in place: they are bind-mounted into the container). */
  hostsPath?: string;
  resolvConfPath?: string;
  /** --add-host NAME:IP */
  addHosts?: string[];
  /** --dns, --dns-search, --dns-option */
  dns?: ResolvOptions;
}

interface SandboxRecord {
  id: string;
  name: string;
  hostname: string;
  netns: string;
  /** Whether Pivot created the namespace (and removes it). */
  ownNetns: boolean;
  hostsPath?: string;
  resolvConfPath?: string;
  addHosts: string[];
  dns?: ResolvOptions;
  attachments: Attachment[];
}

export interface ConnectOptions {
  aliases?: string[];
  ports?: PortMapping[];
  /** A fixed IPv4 address inside the network's subnet. */
  ip?: string;
  /** Interface name in the container (default: the first free ethN). */
  ifName?: string;
}

export interface AttachmentInfo {
  network: string;
  ifName: string;
  ip: string;
  prefixLength: number;
  gateway: string;
  mac: string;
  aliases: string[];
  ports: PortMapping[];
}

export interface NetworkInspect extends NetworkDef {
  bridgeExists: boolean;
  conflist: NetworkConfList;
  containers: { id: string; name: string; ifName: string; ip: string; mac: string }[];
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

// Running the plugins and making namespaces, on first use: constructing a manager and reading
// its state (`pivot ps`, inspect; every command that loads the engine) must not load them.
const cni = () => import("./cni.ts");
const netnsOps = () => import("./netns.ts");

function info(a: Attachment): AttachmentInfo {
  return {
    network: a.network,
    ifName: a.ifName,
    ip: a.ip ?? "",
    prefixLength: a.prefixLength ?? 0,
    gateway: a.gateway ?? "",
    mac: a.mac ?? "",
    aliases: a.aliases,
    ports: a.ports,
  };
}

/** The host's resolv.conf; behind systemd-resolved's stub, the file with the real upstreams. */
export function hostResolvConf(): string {
  let text = "";
  try {
    text = readFileSync("/etc/resolv.conf", "utf8");
  } catch {}
  if (/^nameserver\s+127\.0\.0\.53\b/m.test(text)) {
    try {
      return readFileSync("/run/systemd/resolve/resolv.conf", "utf8");
    } catch {}
  }
  return text;
}

export class NetworkManager {
  readonly settings: NetworkSettings;
  readonly store: NetworkStore;
  readonly firewall: Firewall;
  private readonly warn: (m: string) => void;
  /**
   * Told of each change, in Docker's terms (the engine records them as its events): a network's
   * create and destroy, a container's connect and disconnect. ATTRIBUTES: the network's name and
   * type, and the container's id for connect and disconnect.
   */
  onEvent?: (action: string, networkId: string, attributes: Record<string, string>) => void;

  /**
   * Settings: the defaults, then those recorded in RUNDIR/settings.json by the first manager
   * that changed anything there (so a later process on the same runDir, e.g. the engine's exit
   * hook, uses the same bridge names and chains), then SETTINGS.
   */
  constructor(settings: Partial<NetworkSettings> = {}, warn?: (m: string) => void) {
    const runDir = settings.runDir ?? DEFAULT_SETTINGS.runDir;
    let saved: Partial<NetworkSettings> = {};
    try {
      saved = JSON.parse(readFileSync(join(runDir, "settings.json"), "utf8"));
    } catch {}
    this.settings = { ...DEFAULT_SETTINGS, ...saved, ...settings };
    this.store = new NetworkStore(this.settings);
    this.firewall = new Firewall(
      this.settings.chainPrefix,
      join(this.settings.runDir, "firewall-before.json"),
      join(this.settings.runDir, "firewall-state.json"),
    );
    this.warn = warn ?? ((m) => process.stderr.write(`warning: ${m}\n`));
  }

  // ---- state files ----

  private get containersDir(): string {
    return join(this.settings.runDir, "containers");
  }

  /** Where Pivot binds a container's own network namespace. */
  netnsPath(id: string): string {
    return join(this.settings.runDir, "netns", id);
  }

  private recordPath(id: string): string {
    return join(this.containersDir, `${id}.json`);
  }

  private load(id: string): SandboxRecord | null {
    try {
      return JSON.parse(readFileSync(this.recordPath(id), "utf8")) as SandboxRecord;
    } catch {
      return null;
    }
  }

  private save(r: SandboxRecord): void {
    mkdirSync(this.containersDir, { recursive: true, mode: 0o700 });
    const tmp = join(this.containersDir, `.${r.id}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(r, null, 2)}\n`);
    renameSync(tmp, this.recordPath(r.id));
  }

  private all(): SandboxRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.containersDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith(".json") && !n.startsWith("."))
      .flatMap((n) => {
        const r = this.load(n.slice(0, -5));
        return r ? [r] : [];
      });
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    mkdirSync(this.settings.runDir, { recursive: true, mode: 0o755 });
    const file = join(this.settings.runDir, "settings.json");
    if (!existsSync(file)) {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(this.settings, null, 2)}\n`);
      renameSync(tmp, file);
    }
    return withFileLock(join(this.settings.runDir, "lock"), fn, { what: "Pivot's networks" });
  }

  // ---- networks ----

  async createNetwork(name: string, options: CreateNetworkOptions = {}): Promise<NetworkDef> {
    return this.locked(async () => {
      const def = await this.store.define(name, options, name === this.settings.defaultNetwork);
      this.store.save(def);
      try {
        await this.syncFirewall(this.all()); // the isolation covers the new network too
      } catch (err) {
        // Not defined without its isolation: the rules were not written (one transaction).
        this.store.delete(def.name);
        throw err;
      }
      this.onEvent?.("create", def.id, { name: def.name, type: def.driver });
      return def;
    });
  }

  /** The default network, created on first use. */
  async defaultNetwork(): Promise<NetworkDef> {
    const found = this.store.find(this.settings.defaultNetwork);
    if (found) return found;
    try {
      return await this.createNetwork(this.settings.defaultNetwork);
    } catch (err) {
      const again = this.store.find(this.settings.defaultNetwork);
      if (again) return again; // created concurrently
      throw err;
    }
  }

  listNetworks(): NetworkDef[] {
    return this.store.list();
  }

  inspectNetwork(ref: string): NetworkInspect {
    const def = this.store.get(ref);
    const containers: NetworkInspect["containers"] = [];
    for (const r of this.all()) {
      for (const a of r.attachments) {
        if (a.networkId === def.id && a.state === "ready")
          containers.push({
            id: r.id,
            name: r.name,
            ifName: a.ifName,
            ip: a.ip ? `${a.ip}/${a.prefixLength}` : "",
            mac: a.mac ?? "",
          });
      }
    }
    return {
      ...def,
      bridgeExists: existsSync(`/sys/class/net/${def.bridge}`),
      conflist: this.store.conflist(def),
      containers,
    };
  }

  /**
   * Removes a network: its bridge, IPAM state and rules. Refused while containers use it, even
   * with `force`, as Docker's ("has active endpoints"): detaching them here would leave their
   * records saying they are connected. `force` only means that a network that does not exist is
   * no error (Docker's `network rm -f`). Returns whether a network was removed.
   */
  async removeNetwork(ref: string, options: { force?: boolean } = {}): Promise<boolean> {
    return this.locked(async () => {
      if (options.force && this.store.find(ref) === null) return false;
      const def = this.store.get(ref);
      const users = this.all().filter((r) => r.attachments.some((a) => a.networkId === def.id));
      if (users.length > 0) {
        const n = users.length;
        throw new NetworkError(
          `error while removing network: network "${def.name}" has ${n} active endpoint${n > 1 ? "s" : ""} (${users.map((u) => u.name || u.id).join(", ")})`,
          {
            hint: `stop or remove those containers, or disconnect them (pivot network disconnect ${def.name} CONTAINER), first; -f does not remove a network in use, as Docker's does not`,
          },
        );
      }
      await this.store.removeResources(def);
      this.store.delete(def.name);
      this.onEvent?.("destroy", def.id, { name: def.name, type: def.driver });
      await this.afterChange([], true);
      return true;
    });
  }

  /** Removes every network no container uses, except the default one. Returns their names. */
  async pruneNetworks(): Promise<string[]> {
    const removed: string[] = [];
    await this.locked(async () => {
      const used = new Set(this.all().flatMap((r) => r.attachments.map((a) => a.networkId)));
      for (const def of this.store.list()) {
        if (def.default || def.name === this.settings.defaultNetwork || used.has(def.id)) continue;
        await this.store.removeResources(def);
        this.store.delete(def.name);
        this.onEvent?.("destroy", def.id, { name: def.name, type: def.driver });
        removed.push(def.name);
      }
      await this.afterChange([], true);
    });
    return removed;
  }

  // ---- containers ----

  /**
   * Prepares a container's network namespace (a new one bound under runDir/netns, with lo up,
   * unless `options.netns` names an existing one) and writes its resolv.conf and hosts files.
   * Returns the namespace path for config.json's {"type": "network", "path": ...}.
   */
  async createSandbox(id: string, options: SandboxOptions = {}): Promise<{ netns: string }> {
    if (!ID_RE.test(id)) throw new PivotError(`invalid container id "${id}"`);
    for (const h of options.addHosts ?? []) parseAddHost(h);
    for (const [v, what] of [
      [options.name, "container name"],
      [options.hostname, "hostname"],
    ] as const)
      if (v !== undefined) checkWord(v, what);
    if (options.dns) checkResolvOptions(options.dns);
    return this.locked(async () => {
      const existing = this.load(id);
      if (existing && existing.attachments.length > 0)
        throw new PivotError(`container ${id} already has a network sandbox`, {
          hint: "remove it first (removeSandbox)",
        });
      const ownNetns = !options.netns;
      const netns = options.netns ?? this.netnsPath(id);
      const record: SandboxRecord = {
        id,
        name: options.name ?? id,
        hostname: options.hostname ?? id.slice(0, 12),
        netns,
        ownNetns,
        addHosts: options.addHosts ?? [],
        attachments: [],
      };
      if (options.hostsPath) record.hostsPath = options.hostsPath;
      if (options.resolvConfPath) record.resolvConfPath = options.resolvConfPath;
      if (options.dns) record.dns = options.dns;
      // The record first: a crash after it leaves a namespace `recover` knows about.
      this.save(record);
      // With lo up (no loopback plugin: it would be one more Go program to exec).
      if (ownNetns) await (await netnsOps()).createNetns(netns);
      this.writeFiles(record);
      return { netns };
    });
  }

  /** Connects a container (its sandbox must exist) to a network, publishing PORTS. */
  async connect(
    id: string,
    network: string,
    options: ConnectOptions = {},
  ): Promise<AttachmentInfo> {
    return this.locked(async () => {
      const record = this.load(id);
      if (!record)
        throw new PivotError(`container ${id} has no network sandbox`, {
          hint: "call createSandbox first",
        });
      for (const a of options.aliases ?? []) checkWord(a, "network alias");
      const def = this.store.get(network);
      const stale = record.attachments.find((a) => a.networkId === def.id);
      if (stale?.state === "ready")
        throw new NetworkError(`container ${record.name} is already connected to ${def.name}`);
      if (stale) await this.detachLocked(record, stale); // a crashed ADD: undo it first
      if (options.ip && !inSubnet(def, options.ip))
        throw new NetworkError(
          `address ${options.ip} is not in ${def.name}'s subnet ${def.subnet}`,
        );
      const ports = await this.resolvePorts(record.id, options.ports ?? []);
      const { addNetworkList, containerAddresses } = await cni();
      await this.store.removeBrokenBridge(def);
      const used = new Set(record.attachments.map((a) => a.ifName));
      let ifName = options.ifName;
      if (!ifName) {
        let i = 0;
        while (used.has(`eth${i}`)) i++;
        ifName = `eth${i}`;
      } else if (used.has(ifName)) {
        throw new NetworkError(`interface ${ifName} is already used in container ${record.name}`);
      }
      const attachment: Attachment = {
        network: def.name,
        networkId: def.id,
        ifName,
        state: "adding",
        pid: process.pid,
        aliases: options.aliases ?? [],
        ports,
        // portmap only with ports: without any it has nothing to do, but its DEL runs iptables.
        conflist: this.store.conflist(def, ports.length > 0),
      };
      if (options.ip) attachment.staticIP = options.ip;
      record.attachments.push(attachment);
      this.save(record);
      // The network's rules while the plugins run: neither needs the other before the
      // container's process starts. Both settle before anything else touches either.
      const [added, synced] = await Promise.allSettled([
        addNetworkList(attachment.conflist, this.rtOf(record, attachment), {
          cniPath: this.settings.cniPath,
          onResult: (_i, r) => {
            attachment.result = r;
            this.save(record);
          },
        }),
        this.syncFirewall(this.all()),
      ]);
      try {
        if (added.status === "rejected") throw added.reason;
        if (synced.status === "rejected") throw synced.reason;
        const result = added.value;
        const addr = containerAddresses(result).find((a) => a.family === 4);
        if (!addr) throw new NetworkError(`network ${def.name} gave container ${id} no address`);
        attachment.ip = addr.address;
        attachment.prefixLength = addr.prefixLength;
        attachment.gateway = addr.gateway ?? "";
        attachment.mac = addr.mac ?? "";
        attachment.state = "ready";
        this.save(record);
      } catch (err) {
        try {
          await this.detachLocked(record, attachment);
          await this.afterChange([]);
        } catch (cleanupErr) {
          this.warn(`undoing the failed connect: ${(cleanupErr as Error).message}`);
        }
        throw err;
      }
      await this.afterChange([def.id], false, false); // the rules were written beside the ADD
      this.onEvent?.("connect", def.id, { container: id, name: def.name, type: def.driver });
      return info(attachment);
    });
  }

  /** Disconnects a container from a network: DEL releases its address, veth and rules. */
  async disconnect(id: string, network: string): Promise<void> {
    await this.locked(async () => {
      const record = this.load(id);
      const def = this.store.find(network);
      const a = record?.attachments.find((x) =>
        def ? x.networkId === def.id : x.network === network,
      );
      if (!record || !a)
        throw new NetworkError(`container ${id} is not connected to network ${network}`);
      await this.detachLocked(record, a);
      await this.afterChange([a.networkId]);
    });
  }

  /** CNI CHECK of every attachment of a container: throws if a plugin finds something wrong. */
  async check(id: string): Promise<void> {
    const record = this.load(id);
    if (!record) throw new PivotError(`container ${id} has no network sandbox`);
    const { checkNetworkList, containerAddresses } = await cni();
    for (const a of record.attachments) {
      if (a.state !== "ready" || !a.result) continue;
      const v6 = containerAddresses(a.result).some((x) => x.family === 6);
      await checkNetworkList(a.conflist, this.rtOf(record, a), a.result, {
        cniPath: this.settings.cniPath,
        // portmap before 1.2 checks IPv6 rules it never made for an IPv4-only container
        // (containernetworking/plugins#819); its IPv4 rules were checked before that error.
        ignore: (e) => !v6 && e.plugin === "portmap" && /could not check ipv6/.test(e.msg),
      });
    }
  }

  /**
   * Everything of a container goes: DEL on every network (address, veth, NAT and port rules),
   * its namespace if Pivot made it, its record. Idempotent: safe after a crash, or twice.
   */
  async removeSandbox(id: string): Promise<void> {
    await this.locked(async () => {
      const record = this.load(id);
      const networks: string[] = [];
      // The rules as they are without this container, while DEL runs: neither needs the other.
      // Handled at once: a failure before the DEL ends would otherwise be an unhandled rejection
      // (which ends a Bun process) even though it is awaited below.
      const rules = this.syncFirewall(this.all().filter((r) => r.id !== id));
      rules.catch(() => {});
      try {
        for (const a of [...(record?.attachments ?? [])]) {
          networks.push(a.networkId);
          await this.detachLocked(record!, a);
        }
      } catch (err) {
        // The container is still recorded on the network whose DEL failed: its rules come back.
        await rules.catch(() => {});
        await this.syncFirewall(this.all()).catch((e) => this.warn((e as Error).message));
        throw err;
      }
      const netns = !record ? this.netnsPath(id) : record.ownNetns ? record.netns : null;
      rmSync(this.recordPath(id), { force: true });
      // The namespace's unmount, beside the hosts files (the rules are written by then).
      // Both settle before the lock goes; the first failure is the error.
      const { removeNetns } = await netnsOps();
      const settled = await Promise.allSettled([
        netns ? removeNetns(netns) : null,
        rules.then(() => this.afterChange(networks, false, false)),
      ]);
      for (const s of settled) if (s.status === "rejected") throw s.reason;
    });
  }

  /** The attachments of a container (ready ones), e.g. for inspect and `pivot port`. */
  attachments(id: string): AttachmentInfo[] {
    return (this.load(id)?.attachments ?? []).filter((a) => a.state === "ready").map(info);
  }

  /** Ids of containers with network state. */
  sandboxes(): string[] {
    return this.all().map((r) => r.id);
  }

  /**
   * Repairs what crashed processes left: attachments stuck in "adding" are DELeted, namespaces
   * without a record are removed, and Pivot's rules are made what the attachments need (looked
   * up in the kernel: someone may have flushed them), gone if no container is on a network.
   */
  async recover(): Promise<void> {
    if (this.idle()) return;
    await this.locked(async () => {
      const touched: string[] = [];
      for (const r of this.all()) {
        for (const a of [...r.attachments]) {
          if (a.state === "adding" && (a.pid === process.pid || !isAlive(a.pid))) {
            touched.push(a.networkId);
            await this.detachLocked(r, a);
          }
        }
      }
      const dir = join(this.settings.runDir, "netns");
      let files: string[] = [];
      try {
        files = readdirSync(dir);
      } catch {}
      for (const f of files) {
        if (!this.load(f)) await (await netnsOps()).removeNetns(join(dir, f));
      }
      await this.afterChange(touched);
    });
  }

  /**
   * Whether there is nothing for `recover` to look at: no state at all, or no sandbox, no
   * namespace and a record saying none of Pivot's rules is installed. Then it takes no lock and
   * makes no iptables call (the engine's recovery, which `pivot ps` runs, calls it every time).
   */
  private idle(): boolean {
    if (!existsSync(this.settings.runDir)) return true;
    const entries = (dir: string) => {
      try {
        return readdirSync(dir).filter((n) => !n.startsWith("."));
      } catch {
        return [];
      }
    };
    return (
      entries(this.containersDir).length === 0 &&
      entries(join(this.settings.runDir, "netns")).length === 0 &&
      this.firewall.nothingInstalled()
    );
  }

  /** The text of a container's /etc/hosts, as written to its hostsPath. */
  hostsFor(id: string): string {
    const record = this.load(id);
    if (!record) throw new PivotError(`container ${id} has no network sandbox`);
    return this.hostsOf(record, this.all());
  }

  resolvConfFor(id: string): string {
    const record = this.load(id);
    return resolvConfContent(hostResolvConf(), record?.dns ?? {});
  }

  // ---- internals ----

  private rtOf(record: SandboxRecord, a: Attachment) {
    const capabilityArgs: Record<string, unknown> = {};
    if (a.ports.length > 0) capabilityArgs.portMappings = a.ports;
    if (a.staticIP) capabilityArgs.ips = [a.staticIP];
    return { containerId: record.id, netns: record.netns, ifName: a.ifName, capabilityArgs };
  }

  /** DEL of one attachment (plugins' DEL is idempotent), then it is dropped from the record. */
  private async detachLocked(record: SandboxRecord, a: Attachment): Promise<void> {
    const rt = this.rtOf(record, a);
    const [{ delNetworkList }, { netnsExists }] = await Promise.all([cni(), netnsOps()]);
    // A namespace that is gone took the veth with it; the plugins still release the rest.
    if (!netnsExists(record.netns)) rt.netns = "";
    try {
      await delNetworkList(a.conflist, rt, a.result ?? null, { cniPath: this.settings.cniPath });
    } catch (err) {
      throw new NetworkError(
        `disconnecting ${record.name} from ${a.network} failed: ${(err as Error).message}`,
        { hint: "fix the cause and run the command again: DEL is retried", cause: err },
      );
    }
    record.attachments = record.attachments.filter((x) => x !== a);
    this.save(record);
    // Not for the undoing of a connect that never completed.
    if (a.state === "ready")
      this.onEvent?.("disconnect", a.networkId, {
        container: record.id,
        name: a.network,
        type: "bridge",
      });
  }

  /**
   * After attachments changed: refresh hosts files of the affected networks and Pivot's rules
   * (a network's rules come with its first container and go with its last; Pivot's chains go
   * with the last container anywhere). When a network goes (`gc`) and no container is left
   * anywhere, the plugins' idle shared chains and the nftables tables go too. Not on every
   * container removal: that cleanup costs ~300 ms of iptables calls, which the next container
   * start would pay again to recreate them. RULES false: the caller synced them already.
   */
  private async afterChange(networkIds: string[], gc = false, rules = true): Promise<void> {
    const all = this.all();
    const ids = new Set(networkIds);
    for (const r of all) {
      if (r.hostsPath && r.attachments.some((a) => ids.has(a.networkId))) this.writeHosts(r, all);
    }
    if (!rules) return;
    const active = await this.syncFirewall(all);
    if (active.size === 0 && gc) await this.firewall.cleanup();
  }

  /** Pivot's rules for the networks that have containers now; returns those networks' ids. */
  private async syncFirewall(all: SandboxRecord[]): Promise<Set<string>> {
    const active = new Set(all.flatMap((r) => r.attachments.map((a) => a.networkId)));
    await this.firewall.sync(this.store.list(), active);
    return active;
  }

  /** Removes Pivot's chains and idle CNI chains now if no container is on any network. */
  async cleanupFirewall(): Promise<void> {
    await this.locked(() => this.afterChange([], true));
  }

  private writeFiles(record: SandboxRecord): void {
    if (record.resolvConfPath) {
      mkdirSync(dirname(record.resolvConfPath), { recursive: true });
      writeFileSync(record.resolvConfPath, resolvConfContent(hostResolvConf(), record.dns ?? {}));
    }
    this.writeHosts(record, this.all());
  }

  /** Rewrites a hosts file in place (same inode: it is bind-mounted into the container). */
  private writeHosts(record: SandboxRecord, all: SandboxRecord[]): void {
    if (!record.hostsPath) return;
    mkdirSync(dirname(record.hostsPath), { recursive: true });
    writeFileSync(record.hostsPath, this.hostsOf(record, all));
  }

  private hostsOf(record: SandboxRecord, all: SandboxRecord[]): string {
    const ready = record.attachments.filter((a) => a.state === "ready" && a.ip);
    const names = [record.hostname, record.name].filter((n, i, a) => n && a.indexOf(n) === i);
    const self: HostsEntry[] = ready.length > 0 ? [{ ip: ready[0]!.ip!, names }] : [];
    if (ready.length === 0) self.push({ ip: "127.0.1.1", names });
    const peers: HostsEntry[] = [];
    const defs = new Map(this.store.list().map((d) => [d.id, d]));
    for (const mine of ready) {
      const def = defs.get(mine.networkId);
      if (!def || def.default) continue; // as Docker's default bridge: no names
      for (const other of all) {
        if (other.id === record.id) continue;
        const theirs = other.attachments.find(
          (a) => a.networkId === mine.networkId && a.state === "ready" && a.ip,
        );
        if (!theirs) continue;
        peers.push({
          ip: theirs.ip!,
          names: [other.name, ...theirs.aliases, other.id.slice(0, 12)],
        });
      }
    }
    return hostsContent({ self, peers, extra: record.addHosts.map(parseAddHost) });
  }

  /** Fills in host ports chosen by the kernel and refuses ports another container or process has. */
  private async resolvePorts(id: string, ports: PortMapping[]): Promise<PortMapping[]> {
    const taken: { m: PortMapping; owner: string }[] = [];
    for (const r of this.all()) {
      if (r.id === id) continue;
      for (const a of r.attachments) for (const m of a.ports) taken.push({ m, owner: r.name });
    }
    const out: PortMapping[] = [];
    for (const p of ports) {
      const m = { ...p };
      // The networks are IPv4: the portmap plugin skips a mapping of another family, so the
      // container ran with `pivot port` showing a port nothing forwarded.
      if (m.hostIP.includes(":"))
        throw new PortError(
          `-p [${m.hostIP}]:${m.hostPort || ""}:${m.containerPort}: IPv6 host addresses are not supported on Pivot's networks (IPv4)`,
          {
            hint: "publish on an IPv4 address (127.0.0.1, or none for all); rootless networks (pasta) take [::1]",
          },
        );
      if (m.hostPort === 0) {
        for (let tries = 0; ; tries++) {
          m.hostPort = await freeHostPort(m.protocol, m.hostIP).catch((err) => {
            throw (err as NodeJS.ErrnoException).code === "EADDRNOTAVAIL" ? notHostAddress(m) : err;
          });
          if (![...taken.map((t) => t.m), ...out].some((t) => portsClash(t, m))) break;
          if (tries > 20) throw new PortError("could not find a free host port");
        }
      }
      const hit = taken.find((t) => portsClash(t.m, m));
      if (hit)
        throw new PortError(
          `host port ${formatMapping(m)} is already published by container ${hit.owner}`,
          { hint: "choose another host port" },
        );
      if (out.some((o) => portsClash(o, m)))
        throw new PortError(`host port ${m.hostPort}/${m.protocol} is published twice`);
      const problem = await hostPortProblem(m);
      if (problem === "EADDRNOTAVAIL") throw notHostAddress(m);
      if (problem !== null)
        throw new PortError(
          `host port ${m.hostIP || "0.0.0.0"}:${m.hostPort}/${m.protocol} is in use by another program on the host`,
          { hint: "stop that program or choose another host port" },
        );
      out.push(m);
    }
    return out;
  }
}

/** Whether the host has the CNI plugins Pivot uses. */
export async function cniPluginsInstalled(cniPath = DEFAULT_SETTINGS.cniPath): Promise<boolean> {
  for (const dir of cniPath) {
    if (
      ["bridge", "host-local", "portmap", "firewall", "loopback"].every((p) =>
        existsSync(join(dir, p)),
      )
    )
      return true;
  }
  return false;
}
