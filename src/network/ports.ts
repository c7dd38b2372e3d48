// Published ports: Docker's -p syntax, conflicts between containers, and ports in use on the host.
import { PivotError } from "../errors.ts";
import { dgram, net } from "../util/lazy-require.ts";
import { parseIPv4 } from "./ipnet.ts";

export type Protocol = "tcp" | "udp";

/** One host port forwarded to one container port (portmap's runtimeConfig entry). */
export interface PortMapping {
  /** "" or "0.0.0.0" for every host address. */
  hostIP: string;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}

export class PortError extends PivotError {}

function parsePort(text: string, what: string, spec: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new PortError(`invalid ${what} "${text}" in -p ${spec}`, {
      hint: "ports are numbers from 1 to 65535",
    });
  return Number(text);
}

function parseRange(text: string, what: string, spec: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) throw new PortError(`invalid ${what} "${text}" in -p ${spec}`);
  const lo = parsePort(m[1]!, what, spec);
  const hi = m[2] === undefined ? lo : parsePort(m[2], what, spec);
  if (hi < lo) throw new PortError(`${what} range ${text} ends before it starts in -p ${spec}`);
  return [lo, hi];
}

/**
 * Parses `-p [hostIP:][hostPort:]containerPort[/tcp|/udp]`, with ranges (`8000-8009:80-89`).
 * A missing host port is 0: a free one is chosen when the container is connected.
 */
export function parsePublish(spec: string): PortMapping[] {
  let rest = spec.trim();
  let protocol: Protocol = "tcp";
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== "tcp" && p !== "udp")
      throw new PortError(`unsupported protocol "${p}" in -p ${spec}`, { hint: "use tcp or udp" });
    protocol = p;
    rest = rest.slice(0, slash);
  }
  let hostIP = "";
  // [::1]:8080:80 for IPv6 host addresses.
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(.*)$/.exec(rest);
  let parts: string[];
  if (v6) {
    hostIP = v6[1]!;
    parts = v6[2]!.split(":");
    if (parts.length === 1) parts.unshift("");
  } else {
    parts = rest.split(":");
    if (parts.length === 3) hostIP = parts.shift()!;
  }
  if (parts.length > 2 || parts.some((p, i) => p === "" && i === parts.length - 1))
    throw new PortError(`invalid port specification "${spec}"`, {
      hint: "use [hostIP:]hostPort:containerPort[/tcp|udp], e.g. 127.0.0.1:8080:80",
    });
  if (hostIP && !v6 && parseIPv4(hostIP) === null)
    throw new PortError(`invalid host address "${hostIP}" in -p ${spec}`);
  const [c0, c1] = parseRange(parts[parts.length - 1]!, "container port", spec);
  let h0 = 0;
  let h1 = 0;
  if (parts.length === 2 && parts[0] !== "") [h0, h1] = parseRange(parts[0]!, "host port", spec);
  if (h0 !== 0 && h1 - h0 !== c1 - c0)
    throw new PortError(`host and container port ranges differ in size in -p ${spec}`);
  const out: PortMapping[] = [];
  for (let i = 0; i <= c1 - c0; i++) {
    out.push({ hostIP, hostPort: h0 === 0 ? 0 : h0 + i, containerPort: c0 + i, protocol });
  }
  return out;
}

function anyAddress(ip: string): boolean {
  return ip === "" || ip === "0.0.0.0" || ip === "::";
}

/** Whether two mappings claim the same host port (same protocol, same or wildcard address). */
export function portsClash(a: PortMapping, b: PortMapping): boolean {
  return (
    a.protocol === b.protocol &&
    a.hostPort === b.hostPort &&
    (a.hostIP === b.hostIP || anyAddress(a.hostIP) || anyAddress(b.hostIP))
  );
}

export function formatMapping(m: PortMapping): string {
  return `${m.hostIP || "0.0.0.0"}:${m.hostPort}->${m.containerPort}/${m.protocol}`;
}

/** Tries to bind the port on the host: a process listening there would be shadowed by the DNAT. */
export async function hostPortFree(m: PortMapping): Promise<boolean> {
  return (await hostPortProblem(m)) === null;
}

/**
 * Why the port cannot be bound on the host (the bind's errno code: EADDRINUSE when a program
 * has it, EADDRNOTAVAIL when the address is not the host's), or null when it is free.
 */
export function hostPortProblem(m: PortMapping): Promise<string | null> {
  const host = anyAddress(m.hostIP) ? undefined : m.hostIP;
  const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? "EADDRINUSE";
  return new Promise((resolve) => {
    if (m.protocol === "udp") {
      const s = dgram().createSocket(host?.includes(":") ? "udp6" : "udp4");
      s.once("error", (err) => {
        s.close();
        resolve(code(err));
      });
      s.bind({ port: m.hostPort, ...(host ? { address: host } : {}), exclusive: true }, () =>
        s.close(() => resolve(null)),
      );
      return;
    }
    const srv = net().createServer();
    srv.once("error", (err) => resolve(code(err)));
    srv.listen({ port: m.hostPort, ...(host ? { host } : {}), exclusive: true }, () =>
      srv.close(() => resolve(null)),
    );
  });
}

/** The error for a host address that is not one of the host's (-p 203.0.113.9:80:80). */
export function notHostAddress(m: PortMapping): PortError {
  return new PortError(`host address ${m.hostIP} in -p is not an address of this host`, {
    hint: "publish on one of the host's addresses (`ip addr`), or leave the address out for all of them",
  });
}

/** A free host port chosen by the kernel (for -P and for -p without a host port). */
export function freeHostPort(protocol: Protocol, hostIP = ""): Promise<number> {
  const host = anyAddress(hostIP) ? undefined : hostIP;
  return new Promise((resolve, reject) => {
    if (protocol === "udp") {
      const s = dgram().createSocket("udp4");
      s.once("error", reject);
      s.bind({ port: 0, ...(host ? { address: host } : {}) }, () => {
        const port = s.address().port;
        s.close(() => resolve(port));
      });
      return;
    }
    const srv = net().createServer();
    srv.once("error", reject);
    srv.listen({ port: 0, ...(host ? { host } : {}) }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
