// `--network pasta` for rootless containers, as podman's: user-mode networking through pasta
// (the passt package). The container gets its own network namespace (made by the runtime, owned
// by the container's user namespace); between the runtime's create and start, pasta, started by
// the engine as the user, joins it, makes an interface named and addressed as the host's
// (--config-net: the host's addresses, routes and gateway, IPv4 and IPv6 as the host has them)
// and carries its traffic through ordinary sockets of the user's in the host's namespace.
// Published ports are pasta's own forwards (-t/-u at start): pasta listens on the host port.
//
// Lifetime: pasta forks to the background once the namespace is configured, and quits by itself
// when its target namespace's file is deleted (it watches the file's directory with inotify). So
// the engine gives it the namespace as a symlink to /proc/PID/ns/net in a directory of its own,
// and removes the link wherever it releases the container's network (the exit hook, stop, rm -f,
// a failed start, the next start), with SIGTERM/SIGKILL by pid and start time behind it. pasta
// has no --exit-fd: the backstop for a monitor that dies without cleaning up (SIGKILL of conmon
// or of the attached pivot) is a watcher, `sh` blocked reading the monitor's exit FIFO, which
// gets end of file when the monitor is gone and removes the link. Where both are gone (the
// watcher killed too, or the engine killed between pasta's start and the watcher's), recovery
// (recover() in recovery.ts) ends pasta of a container that no longer runs.
import type { ChildProcess } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { join } from "node:path";
import type { PortMapping } from "../network/ports.ts";
import { freeHostPort, hostPortFree } from "../network/ports.ts";
import { procStat } from "../runtime/state.ts";
import { findProgram } from "../runtime/userns.ts";
import { childProcess } from "../util/child-process.ts";
import { readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import {
  checkUnprivilegedPorts,
  helperStates,
  type ProcessId,
  processAlive,
  type StartUserModeNetwork,
  thisProcess,
} from "./slirp4netns.ts";
import type { ContainerOptions } from "./types.ts";

/** The address pasta answers DNS on in the container (--dns-forward), as podman's. */
export const PASTA_DNS = "169.254.1.1";

/** Whether the container asks for pasta. */
export function isPasta(o: ContainerOptions): boolean {
  const n = o.network;
  return n === "pasta" || (n?.startsWith("pasta:") ?? false);
}

/**
 * The pasta options `--network pasta:OPTIONS` may give: an allow-list, by long name, with the
 * short letter and whether a value follows. Network settings only (addresses, routes, DNS, MTU,
 * forwarding, protocols, logging detail); anything else is refused, among it what the engine sets
 * itself or what would change how pasta runs and ends (ENGINE_OWNED), passt-only options, and any
 * option of a newer pasta not listed here. Long options by their full names only: getopt_long
 * takes any prefix that picks one option, and which one a prefix picks depends on pasta's version.
 * (No name here is a prefix of an ENGINE_OWNED one, so an older pasta without it cannot read it
 * as one: engine-pasta.test.ts checks.)
 */
const USER_OPTIONS: Readonly<Record<string, { short?: string; value: boolean }>> = {
  debug: { short: "d", value: false },
  trace: { value: false },
  quiet: { short: "q", value: false },
  stderr: { short: "e", value: false },
  "ns-ifname": { short: "I", value: true },
  pcap: { short: "p", value: true },
  mtu: { short: "m", value: true },
  address: { short: "a", value: true },
  netmask: { short: "n", value: true },
  "mac-addr": { short: "M", value: true },
  gateway: { short: "g", value: true },
  interface: { short: "i", value: true },
  outbound: { short: "o", value: true },
  "outbound-if4": { value: true },
  "outbound-if6": { value: true },
  dns: { short: "D", value: true },
  search: { short: "S", value: true },
  hostname: { short: "H", value: true },
  fqdn: { value: true },
  "dhcp-dns": { value: false },
  "dhcp-search": { value: false },
  "dns-forward": { value: true },
  "dns-host": { value: true },
  "no-tcp": { value: false },
  "no-udp": { value: false },
  "no-icmp": { value: false },
  "no-dhcp": { value: false },
  "no-dhcpv6": { value: false },
  "no-ndp": { value: false },
  "no-ra": { value: false },
  "no-splice": { value: false },
  "splice-only": { value: false },
  freebind: { value: false },
  "no-map-gw": { value: false },
  "map-host-loopback": { value: true },
  "map-guest-addr": { value: true },
  "host-lo-to-ns-lo": { value: false },
  "ipv4-only": { short: "4", value: false },
  "ipv6-only": { short: "6", value: false },
  "tcp-ports": { short: "t", value: true },
  "udp-ports": { short: "u", value: true },
  "tcp-ns": { short: "T", value: true },
  "udp-ns": { short: "U", value: true },
  "config-net": { value: false },
  "no-copy-routes": { value: false },
  "no-copy-addrs": { value: false },
  "ns-mac-addr": { value: true },
};

/**
 * pasta options the engine sets itself (how pasta runs and when it ends, which namespaces, its
 * pid and log files) or that make it do something else (help, version, passt's), by long name
 * with their short letter: refused as "set by the engine", their abbreviations too.
 */
const ENGINE_OWNED: Readonly<Record<string, string | undefined>> = {
  foreground: "f",
  pid: "P",
  "log-file": "l",
  "log-size": undefined,
  userns: undefined,
  netns: undefined,
  "netns-only": undefined,
  "no-netns-quit": undefined,
  runas: undefined,
  help: "h",
  version: undefined,
  socket: "s",
  "socket-path": undefined,
  fd: "F",
  "one-off": "1",
  "vhost-user": undefined,
  "print-capabilities": undefined,
  "repair-path": undefined,
  "migrate-exit": undefined,
  "migrate-no-linger": undefined,
  stats: undefined,
};

// The short names, built on first use: a table built with flatMap at load cost every pivot command
// ~1 ms (the first flatMap of a process compiles it), pasta or not.
let shortNames:
  | {
      user: Map<string, { long: string; value: boolean }>;
      owned: Map<string, string>;
    }
  | undefined;
function shortOptionNames(): NonNullable<typeof shortNames> {
  shortNames ??= {
    user: new Map(
      Object.entries(USER_OPTIONS).flatMap(([long, o]) =>
        o.short ? [[o.short, { long, value: o.value }] as const] : [],
      ),
    ),
    owned: new Map(
      Object.entries(ENGINE_OWNED).flatMap(([long, short]) =>
        short ? [[short, long] as const] : [],
      ),
    ),
  };
  return shortNames;
}

/** For tests: the options let through, and the ones the engine owns. */
export { ENGINE_OWNED as PASTA_ENGINE_OWNED, USER_OPTIONS as PASTA_USER_OPTIONS };

/**
 * Reads the user's pasta options as pasta's getopt_long would (`--name`, `--name=VALUE`,
 * `--name VALUE`; short options clustered, `-4t80`, where one that takes a value takes the rest
 * of its word, or the next item) and returns the long name of each; throws on anything not in
 * USER_OPTIONS, an option missing its value (it would take the engine's next option as its own),
 * or a word that is no option's value (pasta would take it for a command, and `--` ends options).
 */
function readPastaOptions(network: string, items: readonly string[]): string[] {
  const refuse = (message: string, hint?: string) =>
    new EngineError(`--network ${network}: ${message}`, {
      hint:
        hint ??
        "pass pasta's network options only, by their full names (e.g. --network pasta:--ipv4-only or pasta:-I,tap0); publish ports with -p",
    });
  // An abbreviation is named with the option it may stand for.
  const owned = (given: string, long: string) =>
    refuse(
      `pasta option ${given}${given.startsWith("--") && given !== `--${long}` ? ` (--${long})` : ""} is set by the engine and cannot be given`,
    );
  const names: string[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    const needValue = (given: string) => {
      if (i + 1 >= items.length) throw refuse(`pasta option ${given} needs a value`);
      i++;
    };
    if (item.startsWith("--") && item.length > 2) {
      const eq = item.indexOf("=");
      const name = item.slice(2, eq < 0 ? undefined : eq);
      const given = `--${name}`;
      const o = Object.hasOwn(USER_OPTIONS, name) ? USER_OPTIONS[name]! : null;
      if (!o) {
        // getopt takes a prefix of a long name for it: any prefix of an owned one may be it.
        const own = Object.keys(ENGINE_OWNED).find((l) => name.length >= 2 && l.startsWith(name));
        if (own) throw owned(given, own);
        if (name && Object.keys(USER_OPTIONS).some((l) => l.startsWith(name)))
          throw refuse(`pasta option ${given}: give the option's full name`);
        throw refuse(`${given} is not one of the pasta options pivot passes on`);
      }
      if (eq >= 0 && !o.value) throw refuse(`pasta option ${given} takes no value`);
      if (eq < 0 && o.value) needValue(given);
      names.push(name);
      continue;
    }
    if (item.startsWith("-") && item.length > 1 && item !== "--") {
      for (let j = 1; j < item.length; j++) {
        const letter = item[j]!;
        const own = shortOptionNames().owned.get(letter);
        if (own) throw owned(`-${letter}`, own);
        const o = shortOptionNames().user.get(letter);
        if (!o) throw refuse(`-${letter} is not one of the pasta options pivot passes on`);
        names.push(o.long);
        if (!o.value) continue;
        if (j + 1 === item.length) needValue(`-${letter}`);
        break; // the rest of the word is its value
      }
      continue;
    }
    throw refuse(
      item === "--"
        ? "-- is not one of the pasta options pivot passes on"
        : `"${item}" is not the value of an option (pasta would take it for a command or PID)`,
    );
  }
  return names;
}

/** `--network pasta[:OPT,OPT...]`: pasta's own options, comma-separated, as podman's. */
export interface PastaOptions {
  /** Passed to pasta as given, after the engine's. */
  extra: string[];
  /** `--map-gw` (podman's, not pasta's): leave out --no-map-gw. */
  mapGateway: boolean;
}

/** Parses `pasta[:OPT,...]`; an option not in USER_OPTIONS is an error (readPastaOptions). */
export function pastaOptions(network: string): PastaOptions {
  const out: PastaOptions = { extra: [], mapGateway: false };
  const colon = network.indexOf(":");
  if (colon < 0) return out;
  for (const item of network.slice(colon + 1).split(",")) {
    if (!item) continue;
    if (item === "--map-gw") out.mapGateway = true;
    else out.extra.push(item);
  }
  readPastaOptions(network, out.extra);
  return out;
}

/** -p for pasta, checked at create: pasta binds the host port as the user (IPv6 works). */
export function checkPastaPorts(ports: readonly PortMapping[]): void {
  checkUnprivilegedPorts(ports);
}

/** One forward for pasta's -t/-u: `[ADDR/]HOSTPORT:PORT`. */
export function pastaForward(m: PortMapping): string {
  return `${m.hostIP ? `${m.hostIP}/` : ""}${m.hostPort}:${m.containerPort}`;
}

/**
 * pasta's command line, podman's choices: --config-net (the host's addresses and routes), the
 * published ports as -t/-u, no other forwarding either way (-t/-u/-T/-U none unless given), DNS
 * forwarded from 169.254.1.1 to the host's first resolver, the host's loopback not reachable
 * through the gateway (--no-map-gw) unless pasta:--map-gw; then the user's options.
 */
export function pastaArgs(
  options: PastaOptions,
  ports: readonly PortMapping[],
  paths: { pidFile: string; logFile: string; userns: string; netns: string },
): string[] {
  const args = [
    "--config-net",
    "--dns-forward",
    PASTA_DNS,
    "--pid",
    paths.pidFile,
    "--log-file",
    paths.logFile,
  ];
  if (!options.mapGateway) args.push("--no-map-gw");
  for (const m of ports) args.push(m.protocol === "udp" ? "-u" : "-t", pastaForward(m));
  const given = new Set(readPastaOptions("pasta", options.extra));
  for (const m of ports) given.add(m.protocol === "udp" ? "udp-ports" : "tcp-ports");
  if (!given.has("tcp-ports")) args.push("-t", "none");
  if (!given.has("udp-ports")) args.push("-u", "none");
  if (!given.has("tcp-ns")) args.push("-T", "none");
  if (!given.has("udp-ns")) args.push("-U", "none");
  args.push(...options.extra, "--userns", paths.userns, "--netns", paths.netns);
  return args;
}

/** What the engine keeps of a container's pasta, in <runRoot>/pasta/<id>.json. */
interface PastaState {
  pid: number;
  startTime: string;
  /** The engine process that started it (pid and start time), busy starting the container. */
  starter?: ProcessId;
  /** The watcher holding the monitor's exit FIFO (sh), 0 before it is started. */
  watcherPid: number;
  watcherStart: string;
  /** The forwards in place, with the host ports chosen for -p without one. */
  ports: PortMapping[];
}

function stateDir(ctx: EngineContext): string {
  return join(ctx.runRoot, "pasta");
}

function stateFile(ctx: EngineContext, id: string): string {
  return join(stateDir(ctx), `${id}.json`);
}

/** The containers with pasta state in the run root, and who started each. */
export function pastaStates(ctx: EngineContext): { id: string; starter?: ProcessId }[] {
  return helperStates(stateDir(ctx));
}

/**
 * The directory holding the namespace link pasta watches: one per container, so the only
 * deletion pasta sees there is its own link's (it reads one inotify event at a time).
 */
function linkDir(ctx: EngineContext, id: string): string {
  return join(stateDir(ctx), id.slice(0, 12));
}

/** The published ports in place for a running container (host ports as chosen), else null. */
export function pastaPorts(ctx: EngineContext, id: string): PortMapping[] | null {
  const s = readJson<PastaState>(stateFile(ctx, id));
  return s && alive(s.pid, s.startTime) ? s.ports : null;
}

function alive(pid: number, startTime: string): boolean {
  return processAlive({ pid, startTime });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits up to `graceMs` for a process to end on its own, then SIGTERM, then SIGKILL; a pid
 * reused by another process (another start time) is left alone.
 */
async function endProcess(pid: number, startTime: string, graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs + 4000;
  let sent: "" | "TERM" | "KILL" = "";
  while (alive(pid, startTime) && Date.now() < deadline) {
    const left = deadline - Date.now();
    const next = left < 2000 ? "KILL" : left < 4000 ? "TERM" : "";
    if (next && next !== sent) {
      sent = next;
      try {
        process.kill(pid, `SIG${next}`);
      } catch {}
    }
    await sleep(10);
  }
}

function pastaBinary(): string {
  const bin = findProgram("pasta");
  if (!bin) {
    throw new EngineError("pasta is not installed: --network pasta needs it", {
      hint: "as root: apt-get install passt (or use --network slirp4netns, none or host)",
    });
  }
  return bin;
}

/** The last lines of pasta's log, without its complaints about a missing syslog. */
function logTail(path: string): string {
  try {
    return readFileSync(path, "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("Failed to send") && !/^pasta .*version/.test(l))
      .slice(-3)
      .join("; ");
  } catch {
    return "";
  }
}

/**
 * Runs pasta and resolves once its first process has exited 0: the namespace is configured and
 * the daemon, in the background, has written its pid. Whatever fails, no pasta is left.
 */
async function launch(bin: string, args: string[], logPath: string, pidFile: string) {
  const log = openSync(logPath, "a", 0o600);
  let child: ChildProcess;
  try {
    child = childProcess().spawn(bin, args, { stdio: ["ignore", log, log], detached: true });
  } finally {
    closeSync(log);
  }
  const daemon = (): { pid: number; startTime: string } | null => {
    try {
      const pid = Number(readFileSync(pidFile, "utf8").trim());
      const st = pid > 0 ? procStat(pid) : null;
      return st && st.state !== "Z" ? { pid, startTime: st.startTime } : null;
    } catch {
      return null;
    }
  };
  const result = await new Promise<{ code: number | null; why: string }>((resolve) => {
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {}
      resolve({ code: null, why: "did not set up the network within 20 s" });
    }, 20_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, why: `could not be started (${err.message})` });
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, why: `exited (${signal ?? `code ${code}`}) while setting up` });
    });
  });
  const d = daemon();
  if (result.code === 0 && d) return d;
  if (d) await endProcess(d.pid, d.startTime, 0);
  const detail = logTail(logPath);
  const tun = /\/dev\/net\/tun|tap device/i.test(detail);
  throw new EngineError(
    `pasta ${result.code === 0 ? "exited without a running daemon" : result.why}${detail ? `: ${detail}` : ""}`,
    {
      hint: tun
        ? "/dev/net/tun must be usable by every user (mode 0666, as udev makes it): as root, chmod 0666 /dev/net/tun (scripts/setup.sh does)"
        : /bind/i.test(detail)
          ? "is a published host port in use? pick another, or stop what listens there"
          : `its log: ${logPath}`,
    },
  );
}

/**
 * A process in the user and network namespaces of PID that pasta may open (see startPasta):
 * `nsenter --user --net -t PID cat`, resolved once it runs cat in both namespaces.
 */
async function nsHelper(pid: number): Promise<ChildProcess> {
  const nsenter = findProgram("nsenter");
  if (!nsenter) throw new EngineError("nsenter is not installed (util-linux): pasta needs it");
  const child = childProcess().spawn(
    nsenter,
    [
      "--user",
      "--net",
      "--preserve-credentials",
      "-t",
      String(pid),
      "--",
      findProgram("cat") ?? "cat",
    ],
    { stdio: ["pipe", "ignore", "pipe"] },
  );
  let err = "";
  child.stderr?.on("data", (d) => {
    err += d.toString();
  });
  child.stdin?.on("error", () => {});
  const ns = (p: number, t: string) => {
    try {
      return readlinkSync(`/proc/${p}/ns/${t}`);
    } catch {
      return null;
    }
  };
  const want = [ns(pid, "user"), ns(pid, "net")];
  const deadline = Date.now() + 5000;
  for (;;) {
    const h = child.pid ?? 0;
    let comm = "";
    try {
      comm = readFileSync(`/proc/${h}/comm`, "utf8").trim();
    } catch {}
    if (comm === "cat" && want[0] !== null && ns(h, "user") === want[0] && ns(h, "net") === want[1])
      return child;
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new EngineError(
        `entering the container's namespaces for pasta failed${err.trim() ? `: ${err.trim()}` : ""}`,
      );
    }
    await sleep(5);
  }
}

/**
 * Starts pasta for the container whose init (created, not yet started) is PID: its namespace
 * configured, each published port forwarded; then the watcher on the monitor's exit FIFO.
 */
export const startPasta: StartUserModeNetwork = async (ctx, id, options, pid, exitPipe) => {
  const bin = pastaBinary();
  const opts = pastaOptions(options.network ?? "pasta");
  await stopPasta(ctx, id); // whatever an earlier run left
  const ports: PortMapping[] = [];
  for (const m of options.publish ?? []) {
    if (m.hostPort === 0) {
      // udp4 probes only: a free IPv4 port for a UDP forward on an IPv6 address is good enough.
      const probe = m.protocol === "udp" && m.hostIP.includes(":") ? "" : m.hostIP;
      ports.push({ ...m, hostPort: await freeHostPort(m.protocol, probe) });
      continue;
    }
    // pasta fails on a TCP port it cannot bind at all, but takes one bound on one address family
    // only, and any UDP port: refused here, as slirp4netns's are.
    if (!(await hostPortFree(m))) {
      throw new EngineError(
        `-p ${pastaForward(m)}/${m.protocol}: host port ${m.hostPort}/${m.protocol} is already in use`,
        { hint: "pick another host port, or stop what listens there" },
      );
    }
    ports.push(m);
  }
  mkdirSync(stateDir(ctx), { recursive: true, mode: 0o700 });
  const dir = linkDir(ctx, id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // pasta drops its capabilities before it opens the namespaces, and the created init is not
  // dumpable (the launcher's, until it execs), so /proc/PID/ns/* is refused to it. A helper
  // enters them first (nsenter, which keeps the engine's capabilities) and execs cat, dumpable
  // again: pasta opens the helper's. The link pasta watches points there: only its name matters
  // once pasta is running. The helper ends when its stdin, this process's pipe, closes.
  const cdir = ctx.containers.dir(id);
  const logPath = join(cdir, "pasta.log");
  const pidFile = join(cdir, "pasta.pid");
  const link = join(dir, "netns");
  let daemon: { pid: number; startTime: string };
  let helper: ChildProcess | null = null;
  try {
    helper = await nsHelper(pid);
    symlinkSync(`/proc/${helper.pid}/ns/net`, link);
    rmSync(logPath, { force: true });
    rmSync(pidFile, { force: true });
    const args = pastaArgs(opts, ports, {
      pidFile,
      logFile: logPath,
      userns: `/proc/${helper.pid}/ns/user`,
      netns: link,
    });
    daemon = await launch(bin, args, logPath, pidFile);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    helper?.stdin?.destroy();
    helper?.kill("SIGKILL");
    rmSync(pidFile, { force: true });
  }
  const state: PastaState = {
    ...daemon,
    starter: thisProcess(),
    watcherPid: 0,
    watcherStart: "",
    ports,
  };
  writeJsonAtomic(stateFile(ctx, id), state);
  // The backstop: sh blocked reading the exit FIFO, whose only writer is the monitor; end of
  // file (the monitor gone, however it went) removes the link, and pasta quits.
  const fifo = exitPipe.blockingReadEnd();
  try {
    const watcher = childProcess().spawn(
      findProgram("sh") ?? "/bin/sh",
      ["-c", 'read -r _ <&3; rm -f -- "$1"', "pivot-pasta-watch", link],
      { stdio: ["ignore", "ignore", "ignore", fifo], detached: true },
    );
    await new Promise<void>((resolve, reject) => {
      watcher.once("spawn", resolve);
      watcher.once("error", (err) =>
        reject(new EngineError(`starting pasta's watcher failed: ${err.message}`)),
      );
    });
    watcher.unref();
    state.watcherPid = watcher.pid!;
    state.watcherStart = procStat(watcher.pid!)?.startTime ?? "";
    writeJsonAtomic(stateFile(ctx, id), state);
  } finally {
    closeSync(fifo);
  }
};

/**
 * Ends the container's pasta if it still runs (its link removed, then SIGTERM and SIGKILL by pid
 * and start time) and its watcher, and removes their state. Idempotent.
 */
export async function stopPasta(ctx: EngineContext, id: string): Promise<void> {
  const file = stateFile(ctx, id);
  const s = readJson<PastaState>(file);
  const dir = linkDir(ctx, id);
  rmSync(join(dir, "netns"), { force: true }); // pasta sees it go and quits
  if (s) {
    await endProcess(s.pid, s.startTime, 1000);
    await endProcess(s.watcherPid, s.watcherStart, 0);
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(file, { force: true });
}
