// /etc/hosts and /etc/resolv.conf for containers: their own names, their peers on user-defined
// networks, and the host's resolvers that can be reached from a container.
import { net } from "../util/lazy-require.ts";

export interface HostsEntry {
  ip: string;
  names: string[];
}

export interface HostsInput {
  /** The container's own addresses and names (hostname first). */
  self: HostsEntry[];
  /** Peers on the container's user-defined networks. */
  peers: HostsEntry[];
  /** --add-host entries (NAME:IP). */
  extra?: HostsEntry[];
}

/** The lines every container's /etc/hosts starts with: localhost and the IPv6 names, as Docker's. */
export const BASE_HOSTS: readonly string[] = [
  "127.0.0.1\tlocalhost",
  "::1\tlocalhost ip6-localhost ip6-loopback",
  "fe00::0\tip6-localnet",
  "ff00::0\tip6-mcastprefix",
  "ff02::1\tip6-allnodes",
  "ff02::2\tip6-allrouters",
];

/** The text of a container's /etc/hosts. A name appears once: self, then extra, then peers. */
export function hostsContent(input: HostsInput): string {
  const lines = [...BASE_HOSTS];
  const seen = new Set<string>(["localhost"]);
  const add = (e: HostsEntry) => {
    const names = e.names.filter((n) => n && !seen.has(n));
    if (names.length === 0) return;
    for (const n of names) seen.add(n);
    lines.push(`${e.ip}\t${names.join(" ")}`);
  };
  for (const e of input.self) add(e);
  for (const e of input.extra ?? []) add(e);
  for (const e of input.peers) add(e);
  return `${lines.join("\n")}\n`;
}

/**
 * A word written into /etc/hosts or resolv.conf (a name, an alias, a search domain, an option):
 * whitespace would end the field or the line there (a newline adds a line of the caller's
 * choosing: another nameserver, another host), '#' and ';' would start a comment.
 */
export function checkWord(value: string, what: string): void {
  if (value === "" || /[\s#;\x00-\x1f\x7f]/.test(value))
    throw new Error(
      `invalid ${what} ${JSON.stringify(value)}: it must be one word, without spaces, line breaks, '#' or ';'`,
    );
}

/** An IPv4 or IPv6 address, as written (net.isIP). */
export function isIPAddress(text: string): boolean {
  return net().isIP(text) !== 0;
}

/** Parses --add-host NAME:IP (IPv6 addresses may contain colons: split at the first). */
export function parseAddHost(text: string): HostsEntry {
  const i = text.indexOf(":");
  const name = i > 0 ? text.slice(0, i) : "";
  const ip = i > 0 ? text.slice(i + 1).replace(/^\[(.*)\]$/, "$1") : "";
  if (!name || !ip || /[\s#;\x00-\x1f\x7f]/.test(name) || !isIPAddress(ip))
    throw new Error(`invalid --add-host "${text}": expected NAME:IP, e.g. db:10.0.0.5`);
  return { ip, names: [name] };
}

/** --dns (addresses), --dns-search and --dns-option (one word each): refused otherwise. */
export function checkResolvOptions(opts: ResolvOptions): void {
  for (const n of opts.nameservers ?? [])
    if (!isIPAddress(n)) throw new Error(`invalid --dns ${JSON.stringify(n)}: not an IP address`);
  for (const s of opts.search ?? []) checkWord(s, "--dns-search");
  for (const o of opts.options ?? []) checkWord(o, "--dns-option");
}

export interface ResolvOptions {
  /** --dns: replaces the host's nameservers (an empty list means no nameserver at all). */
  nameservers?: string[];
  search?: string[];
  options?: string[];
}

function isLoopback(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1" || ip === "0:0:0:0:0:0:0:1";
}

/**
 * The text of a container's /etc/resolv.conf from the host's: nameservers on loopback (e.g.
 * systemd-resolved's 127.0.0.53) are unreachable from another network namespace and dropped;
 * search domains and options are kept. If no nameserver is left, none is written (the
 * container then resolves only through /etc/hosts) rather than inventing a public resolver.
 */
export function resolvConfContent(hostText: string, opts: ResolvOptions = {}): string {
  const nameservers: string[] = [];
  let search: string[] = [];
  let options: string[] = [];
  for (const raw of hostText.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [key, ...values] = line.split(/\s+/);
    if (key === "nameserver" && values[0] && !isLoopback(values[0])) nameservers.push(values[0]);
    else if (key === "search" || key === "domain") search = values;
    else if (key === "options") options = [...options, ...values];
  }
  const ns = opts.nameservers ?? nameservers;
  const out: string[] = [];
  const s = opts.search ?? search;
  if (s.length > 0) out.push(`search ${s.join(" ")}`);
  for (const n of ns) out.push(`nameserver ${n}`);
  const o = opts.options ?? options;
  if (o.length > 0) out.push(`options ${o.join(" ")}`);
  return out.length ? `${out.join("\n")}\n` : "";
}
