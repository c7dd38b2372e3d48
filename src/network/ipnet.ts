// IPv4 subnets: parsing, overlap, and picking a free one from a pool.
import { PivotError } from "../errors.ts";

export interface Subnet4 {
  /** The network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

export function parseIPv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.1.2.0/24" → its network; "10.1.2.3/24" is accepted only with `loose` (host bits set). */
export function parseSubnet4(text: string, loose = false): Subnet4 | null {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) return null;
  const ip = parseIPv4(m[1]!);
  const prefix = Number(m[2]);
  if (ip === null || prefix > 32) return null;
  const base = (ip & maskOf(prefix)) >>> 0;
  if (!loose && base !== ip) return null;
  return { base, prefix };
}

export function formatSubnet4(s: Subnet4): string {
  return `${formatIPv4(s.base)}/${s.prefix}`;
}

export function subnetSize(s: Subnet4): number {
  return 2 ** (32 - s.prefix);
}

export function overlaps(a: Subnet4, b: Subnet4): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const m = maskOf(p);
  return (a.base & m) >>> 0 === (b.base & m) >>> 0;
}

export function contains(s: Subnet4, ip: number): boolean {
  return (ip & maskOf(s.prefix)) >>> 0 === s.base;
}

/** The Nth address of a subnet (1 = the first host address, the usual gateway). */
export function nthAddress(s: Subnet4, n: number): number {
  return (s.base + n) >>> 0;
}

/**
 * The first subnet of `prefix` length inside `pool` that overlaps none of `taken`, or null.
 * Candidates go in address order so choices are predictable.
 */
export function pickFreeSubnet(pool: Subnet4, prefix: number, taken: Subnet4[]): Subnet4 | null {
  if (prefix < pool.prefix) return null;
  const step = 2 ** (32 - prefix);
  const count = 2 ** (prefix - pool.prefix);
  for (let i = 0; i < count; i++) {
    const candidate = { base: (pool.base + i * step) >>> 0, prefix };
    if (!taken.some((t) => overlaps(t, candidate))) return candidate;
  }
  return null;
}

export function mustParseSubnet4(text: string, what: string): Subnet4 {
  const s = parseSubnet4(text);
  if (!s) {
    const loose = parseSubnet4(text, true);
    throw new PivotError(`${what}: "${text}" is not an IPv4 subnet`, {
      hint: loose
        ? `did you mean ${formatSubnet4(loose)}? (host bits must be zero)`
        : "write it as ADDRESS/PREFIX, e.g. 172.30.5.0/24",
    });
  }
  if (s.prefix > 30) {
    throw new PivotError(`${what}: ${text} is too small for containers`, {
      hint: "use a prefix of /30 or shorter",
    });
  }
  return s;
}
