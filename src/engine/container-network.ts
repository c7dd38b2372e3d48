// A container's network: the network it names (checked at create), its namespace wired to it
// before its process starts and released after, and --network container:NAME.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PortMapping } from "../network/ports.ts";
import type { Spec } from "../oci/spec.ts";
import { dnsOptionsOf, hostnameOf } from "./config.ts";
import { status } from "./container-runtime.ts";
import { type ContainerRecord, readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import { isPasta, pastaPorts, pastaStates, startPasta, stopPasta } from "./pasta.ts";
import { releaseAbandonedStarts } from "./recovery.ts";
import {
  isSlirp,
  processAlive,
  type StartUserModeNetwork,
  slirpPorts,
  slirpStates,
  startSlirp,
  stopSlirp,
} from "./slirp4netns.ts";
import type { ContainerOptions } from "./types.ts";

/**
 * Whether the container's network is user-mode (rootless): slirp4netns or pasta, started by the
 * engine between the runtime's create and start, ended through the monitor's exit FIFO.
 */
export function isUserModeNetwork(o: ContainerOptions): boolean {
  return isSlirp(o) || isPasta(o);
}

/** Starts the container's slirp4netns or pasta for its created init PID. */
export const startUserModeNetwork: StartUserModeNetwork = (ctx, id, options, pid, exitPipe) =>
  (isPasta(options) ? startPasta : startSlirp)(ctx, id, options, pid, exitPipe);

/**
 * The containers with a slirp4netns or pasta recorded in the run root (state left until the
 * engine ends it), each with whether the engine process that started it still runs: while it
 * does, it may be starting the container (an attached run's pivot, before its state.json).
 */
export function userModeNetworkStates(ctx: EngineContext): Map<string, { starting: boolean }> {
  const out = new Map<string, { starting: boolean }>();
  for (const s of [...slirpStates(ctx), ...pastaStates(ctx)]) {
    const starting = processAlive(s.starter) || (out.get(s.id)?.starting ?? false);
    out.set(s.id, { starting });
  }
  return out;
}

/**
 * Ends the container's slirp4netns and pasta by their recorded pid and start time, with their
 * state, watcher, socket and link: what recovery does for a container that no longer runs, whose
 * record may be gone.
 */
export async function stopUserModeNetwork(ctx: EngineContext, id: string): Promise<void> {
  await stopSlirp(ctx, id).catch((e) => ctx.warn((e as Error).message));
  await stopPasta(ctx, id).catch((e) => ctx.warn((e as Error).message));
}

/** The ports a running slirp4netns or pasta forwards (host ports as chosen), else null. */
export function userModePorts(
  ctx: EngineContext,
  id: string,
  options: ContainerOptions,
): PortMapping[] | null {
  if (isPasta(options)) return pastaPorts(ctx, id);
  if (isSlirp(options)) return slirpPorts(ctx, id);
  return null;
}

/**
 * --network container:NAME at create: the container it names (which must exist), with the
 * options that belong to that container's network refused, as Docker refuses them.
 */
export function joinedContainer(ctx: EngineContext, o: ContainerOptions): ContainerRecord | null {
  const n = o.network;
  if (!n?.startsWith("container:")) return null;
  const ref = n.slice("container:".length);
  const conflicts = [
    o.publish?.length || o.publishAll ? "-p/-P" : "",
    o.ip ? "--ip" : "",
    o.networkAliases?.length ? "--network-alias" : "",
    o.addHosts?.length ? "--add-host" : "",
    dnsOptionsOf(o) ? "--dns/--dns-search/--dns-option" : "",
    o.hostname !== undefined ? "--hostname" : "",
  ].filter(Boolean);
  if (conflicts.length > 0)
    throw new EngineError(`${conflicts.join(", ")} cannot be used with --network ${n}`, {
      hint: `the network, names and ports are ${ref}'s: set them on ${ref}`,
    });
  let id: string;
  try {
    id = ctx.containers.resolveId(ref);
  } catch (err) {
    throw new EngineError(`--network ${n}: no such container ${ref}`, {
      hint: "create and start that container first",
      cause: err,
    });
  }
  return ctx.containers.load(id);
}

/**
 * --network container:NAME at start: config.json gets the other container's network namespace
 * (its bound sandbox when it is on a network, else its init's /proc/PID/ns/net); that
 * container must be running. A container on the host's network shares the host's.
 */
export function joinNetworkOf(ctx: EngineContext, r: ContainerRecord): void {
  const n = r.options.network;
  if (!n?.startsWith("container:")) return;
  const ref = n.slice("container:".length);
  const other = joinedContainer(ctx, { ...r.options, hostname: undefined });
  const st = other ? status(ctx, other.id) : null;
  if (!other || !st || (st.status !== "running" && st.status !== "paused") || st.pid <= 0)
    throw new EngineError(`cannot join the network of container ${ref}: it is not running`, {
      hint: `start it first: pivot start ${ref}`,
    });
  const file = join(ctx.containers.dir(r.id), "config.json");
  const spec = readJson<Spec>(file);
  if (!spec?.linux?.namespaces) throw new EngineError(`container ${r.name} has no config.json`);
  const namespaces = spec.linux.namespaces.filter((x) => x.type !== "network");
  const on = other.options.network;
  if (on !== "host") {
    const bound = ctx.networks.netnsPath(other.id);
    const own = on !== undefined && on !== "none" && !on.startsWith("container:");
    const path = own && existsSync(bound) ? bound : `/proc/${st.pid}/ns/net`;
    namespaces.splice(1, 0, { type: "network", path });
  }
  spec.linux.namespaces = namespaces;
  writeJsonAtomic(file, spec);
}

/**
 * The network a container joins: null for none/host; "bridge" means the default network
 * (created on first use). Throws if the network does not exist.
 */
export async function networkOf(
  ctx: EngineContext,
  o: ContainerOptions,
  dryRun = false,
): Promise<string | null> {
  const n = o.network;
  // slirp4netns: a namespace of the container's own, wired by slirp4netns at start (start.ts).
  if (isSlirp(o)) {
    if (o.ip || o.networkAliases?.length)
      throw new EngineError("--ip and --network-alias need a network, not slirp4netns", {
        hint: "slirp4netns gives every container 10.0.2.100; drop --ip and --network-alias",
      });
    return null;
  }
  // pasta: the same, wired by pasta at start; the container has the host's addresses.
  if (isPasta(o)) {
    if (o.ip || o.networkAliases?.length)
      throw new EngineError("--ip and --network-alias need a network, not pasta", {
        hint: "pasta gives the container the host's addresses; drop --ip and --network-alias",
      });
    return null;
  }
  if (n === undefined || n === "none" || n === "host") {
    if (o.publish?.length || o.ip || o.networkAliases?.length)
      throw new EngineError("-p, --ip and --network-alias need a network", {
        hint: "add --network bridge (the default network) or --network NAME",
      });
    return null;
  }
  if (n.startsWith("container:")) return null; // joinNetworkOf: another container's
  if (n === "bridge" || n === ctx.networks.settings.defaultNetwork)
    return dryRun
      ? ctx.networks.settings.defaultNetwork
      : (await ctx.networks.defaultNetwork()).name;
  return ctx.networks.store.get(n).name;
}

/**
 * A fresh network namespace for the container, made now (the runtime's create joins it), and
 * its connection to the network (CNI ADD), which runs meanwhile: the process needs the network
 * only once it is released. The caller awaits `connected` before the runtime's start, and on any
 * failure undoes the start, whose removeSandbox waits for a connect under way (the network lock).
 * A failed connect leaves the namespace to that undo: removed now, it would fail the create that
 * is joining it with an error that hides the connect's. `connected` never rejects unhandled.
 */
export async function connectNetwork(
  ctx: EngineContext,
  r: ContainerRecord,
): Promise<{ connected: Promise<void>; connecting: boolean }> {
  const network = await networkOf(ctx, r.options);
  if (!network) return { connected: Promise.resolve(), connecting: false };
  const dir = ctx.containers.dir(r.id);
  await ctx.networks.removeSandbox(r.id); // whatever a crash left
  // Ports and addresses that a start killed before its process (a Created container) would hold
  // until the next `ps`.
  if (r.options.publish?.length || r.options.ip) await releaseAbandonedStarts(ctx, r.id);
  await ctx.networks.createSandbox(r.id, {
    name: r.name,
    hostname: hostnameOf(r.id, r.options),
    hostsPath: join(dir, "hosts"),
    resolvConfPath: join(dir, "resolv.conf"),
    addHosts: r.options.addHosts ?? [],
    ...(dnsOptionsOf(r.options) ? { dns: dnsOptionsOf(r.options)! } : {}),
  });
  ctx.trace?.mark("engine: network namespace made");
  const connected = (async () => {
    await ctx.networks.connect(r.id, network, {
      aliases: r.options.networkAliases ?? [],
      ports: r.options.publish ?? [],
      ...(r.options.ip ? { ip: r.options.ip } : {}),
    });
    ctx.trace?.mark("engine: network connected (beside the runtime's create)");
  })();
  connected.catch(() => {});
  return { connected, connecting: true };
}

/** Releases the container's address, veth, port and NAT rules, and its namespace. */
export async function disconnectNetwork(ctx: EngineContext, r: ContainerRecord): Promise<void> {
  if (isSlirp(r.options)) {
    await stopSlirp(ctx, r.id).catch((e) => ctx.warn((e as Error).message));
    return;
  }
  if (isPasta(r.options)) {
    await stopPasta(ctx, r.id).catch((e) => ctx.warn((e as Error).message));
    return;
  }
  const n = r.options.network;
  if (n === undefined || n === "none" || n === "host" || n.startsWith("container:")) return;
  await ctx.networks.removeSandbox(r.id).catch((e) => ctx.warn((e as Error).message));
}
