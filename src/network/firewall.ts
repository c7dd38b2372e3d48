// iptables rules Pivot owns, and removing what the CNI plugins leave behind once nobody uses it.
// Pivot's own: per network with containers, the outbound masquerade and the forward accepts
// (Docker's way: one rule per network, not the plugins' per-container chains), and the isolation
// between networks; written in one iptables-restore batch, only when they change, and removed
// with the last container. The plugins (portmap; the bridge and firewall plugins of attachments
// made before Pivot did this itself) keep their shared chains (CNI-FORWARD, CNI-HOSTPORT-*)
// forever, and iptables-nft keeps the nftables tables it created: Pivot removes those only when
// they are empty.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { Installed, NftTable } from "./firewall-rules.ts";
import type { NetworkDef } from "./networks.ts";

// The rules and the iptables/nft calls, on first use: constructing a Firewall and asking
// `nothingInstalled` (every `pivot ps`, every manager) must not load them.
const loadRules = () => import("./firewall-rules.ts");

/**
 * What Pivot last did (absent: unknown, e.g. after a crash mid-write). Only "nothing installed"
 * is trusted, to spare the look-up when no container is on a network; otherwise the kernel's
 * rules are looked up and compared every time.
 */
interface FirewallState {
  /** Whether the chains and the jumps to them exist. */
  installed: boolean;
  /** The boot it was written in: a record of another boot (iptables-persistent may have put
   * back rules saved with Pivot's in them) is unknown. */
  bootId: string;
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

export class Firewall {
  readonly chain: string;
  readonly chain2: string;

  constructor(
    readonly chainPrefix: string,
    /** Where the tables that existed before Pivot's first rule are recorded. */
    private readonly beforeFile: string,
    /** Where what Pivot installed is recorded, so that an unchanged set of rules costs nothing. */
    private readonly stateFile: string,
  ) {
    this.chain = `${chainPrefix}-ISOLATION`;
    this.chain2 = `${chainPrefix}-ISOLATION-2`;
  }

  /** Records which nftables tables exist before Pivot adds anything (once, until `cleanup`). */
  async recordBefore(): Promise<void> {
    const { nftTables } = await loadRules();
    try {
      readFileSync(this.beforeFile);
      return;
    } catch {}
    const tables = await nftTables();
    writeFileSync(this.beforeFile, `${JSON.stringify({ tables })}\n`);
  }

  private readState(): FirewallState | null {
    try {
      const s = JSON.parse(readFileSync(this.stateFile, "utf8")) as FirewallState;
      return typeof s.installed === "boolean" && s.bootId === bootId() ? s : null;
    } catch {
      return null;
    }
  }

  private writeState(s: Omit<FirewallState, "bootId">): void {
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ ...s, bootId: bootId() })}\n`);
    renameSync(tmp, this.stateFile);
  }

  /**
   * Whether Pivot's record says nothing of its rules is installed (this boot): then a sync with
   * no container on a network, or a recovery with nothing to repair, costs no iptables call.
   */
  nothingInstalled(): boolean {
    return this.readState()?.installed === false;
  }

  /** For tests: called after a batch was written, before it is recorded (a crash there). */
  onWritten?: () => void;

  /** Pivot's chains and the jumps to them, as the kernel has them now. */
  async installed(): Promise<Installed> {
    const { mustExec, parseInstalled } = await loadRules();
    return parseInstalled(this.chainPrefix, await mustExec("iptables-save", []));
  }

  /**
   * Makes Pivot's rules those for NETWORKS with containers on the networks in ACTIVE: the
   * kernel's rules are looked up (one iptables-save) and one iptables-restore transaction
   * writes them when they differ, jumps included (so a flushed FORWARD, a firewall reload or
   * a stranger's rule put before the jump is repaired by the next sync); with ACTIVE empty, the
   * chains and the jumps to them go. Returns whether anything was written.
   */
  async sync(networks: NetworkDef[], active: ReadonlySet<string>): Promise<boolean> {
    const state = this.readState();
    if (active.size === 0 && state?.installed === false) return false; // nothing to look up
    const { execTool, firewallRules, HostCommandError, ownRules, removalRules, upToDate } =
      await loadRules();
    let have = await this.installed();
    if (active.size === 0) {
      const j = have.jumps;
      if (have.chains.size === 0 && j.forward === 0 && j.postrouting === 0) {
        this.writeState({ installed: false });
        return false;
      }
      // Unknown while the batch runs: a crash then leaves the next sync to look.
      rmSync(this.stateFile, { force: true });
      const r = await execTool(
        "iptables-restore",
        ["-w", "--noflush"],
        removalRules(this.chainPrefix, j),
      );
      // Another chain jumps to one of ours, or the rules changed meanwhile: one chain at a time.
      if (r.status !== 0) await this.removeOwnChains();
      this.onWritten?.();
      this.writeState({ installed: false });
      return true;
    }
    const want = ownRules(this.chainPrefix, networks, active);
    for (let attempt = 0; ; attempt++) {
      if (upToDate(have, want)) {
        if (!state?.installed) this.writeState({ installed: true });
        return false;
      }
      if (have.chains.size === 0) await this.recordBefore();
      // Unknown while the batch runs (as for a removal): a crash after it must not leave a
      // record saying nothing is installed, which would spare the next removal its look-up.
      if (attempt === 0) rmSync(this.stateFile, { force: true });
      const batch = firewallRules(this.chainPrefix, networks, active, have.jumps);
      const r = await execTool("iptables-restore", ["-w", "--noflush"], batch);
      if (r.status === 0) break;
      // The jumps changed between the look-up and the batch (a -D found nothing): once more.
      if (attempt > 0) throw new HostCommandError("iptables-restore --noflush", r.status, r.stderr);
      have = await this.installed();
    }
    this.onWritten?.();
    this.writeState({ installed: true });
    return true;
  }

  /** Removes Pivot's chains one by one with every jump to them, whichever of them exist. */
  private async removeOwnChains(): Promise<void> {
    const { deleteChain, ownChains } = await loadRules();
    const own = ownChains(this.chainPrefix);
    for (const c of own.filter) await deleteChain("filter", c);
    for (const c of own.nat) await deleteChain("nat", c);
  }

  /**
   * Called when Pivot has no container on any network: removes Pivot's chains, then the
   * plugins' shared chains that are empty, then nftables tables that did not exist before and
   * are empty now.
   */
  async cleanup(): Promise<void> {
    const r = await loadRules();
    const { chainRules, deleteChain, deleteIfEmpty, deleteRule, execTool, jumpsTo } = r;
    const { nftTableIsEmpty, nftTables } = r;
    rmSync(this.stateFile, { force: true });
    await this.removeOwnChains();
    this.writeState({ installed: false });

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
