// `--network slirp4netns` for rootless containers, as podman's: user-mode networking. The
// container gets its own network namespace (made by the runtime, owned by the container's user
// namespace); between the runtime's create and start, slirp4netns, started by the engine as the
// user, joins it by the init's pid, makes tap0 (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3)
// and carries its traffic through ordinary sockets of the user's in the host's namespace.
// Published ports are forwards added through its API socket (add_hostfwd): slirp4netns listens on
// the host port itself, so the host port must be one the user may bind.
//
// Lifetime: slirp4netns's tap fd keeps the namespace alive, so it must be ended. Its --exit-fd is
// the read end of a FIFO whose only writer is the container's monitor (conmon, or the attached
// pivot process): when the monitor goes, for whatever reason, slirp4netns exits. The engine also
// ends it (by pid, checked against its start time) wherever it releases a container's network:
// the exit hook, stop, rm -f, a failed start, the next start; and recovery ends one left by a
// container that no longer runs (recover() in recovery.ts), if the exit FIFO could not.
import type { ChildProcess } from "node:child_process";
import {
  closeSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { join } from "node:path";
import type { PortMapping } from "../network/ports.ts";
import { freeHostPort, hostPortFree } from "../network/ports.ts";
import { procStat } from "../runtime/state.ts";
import { findProgram } from "../runtime/userns.ts";
import { childProcess } from "../util/child-process.ts";
import { net } from "../util/lazy-require.ts";
import { readJson, writeJsonAtomic } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { EngineError } from "./errors.ts";
import type { ContainerOptions } from "./types.ts";

/** slirp4netns's fixed addresses (its defaults with --configure). */
export const SLIRP = {
  address: "10.0.2.100",
  cidr: "10.0.2.0/24",
  gateway: "10.0.2.2",
  dns: "10.0.2.3",
  mtu: 65520,
  device: "tap0",
} as const;

/** `--network slirp4netns[:OPT=V,...]` options, podman's names. */
export interface SlirpOptions {
  /** allow_host_loopback=true: the container reaches the host's 127.0.0.1 as 10.0.2.2. */
  allowHostLoopback: boolean;
  mtu: number;
}

/** Whether the container asks for slirp4netns. */
export function isSlirp(o: ContainerOptions): boolean {
  const n = o.network;
  return n === "slirp4netns" || (n?.startsWith("slirp4netns:") ?? false);
}

/** Parses `slirp4netns[:allow_host_loopback=true,mtu=N]`; an unknown option is an error. */
export function slirpOptions(network: string): SlirpOptions {
  const out: SlirpOptions = { allowHostLoopback: false, mtu: SLIRP.mtu };
  const colon = network.indexOf(":");
  if (colon < 0) return out;
  for (const item of network.slice(colon + 1).split(",")) {
    if (!item) continue;
    const [k, v = ""] = item.split("=", 2) as [string, string?];
    if (k === "allow_host_loopback" && (v === "true" || v === "false")) {
      out.allowHostLoopback = v === "true";
    } else if (k === "mtu" && /^\d+$/.test(v) && Number(v) >= 68 && Number(v) <= 65521) {
      out.mtu = Number(v);
    } else {
      throw new EngineError(
        `--network ${network}: unknown or invalid slirp4netns option "${item}"`,
        {
          hint: "options: allow_host_loopback=true|false, mtu=68..65521 (e.g. --network slirp4netns:allow_host_loopback=true)",
        },
      );
    }
  }
  return out;
}

/** The lowest port a user may bind (net.ipv4.ip_unprivileged_port_start; 1024 if unreadable). */
export function unprivilegedPortStart(
  read: () => string = () => readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"),
): number {
  try {
    const n = Number(read().trim());
    return Number.isInteger(n) && n >= 0 ? n : 1024;
  } catch {
    return 1024;
  }
}

/**
 * -p for a user-mode network (slirp4netns, pasta), checked at create: the host port is bound by
 * slirp4netns or pasta itself, as the user, so a port below net.ipv4.ip_unprivileged_port_start
 * is refused here rather than at start.
 */
export function checkUnprivilegedPorts(
  ports: readonly PortMapping[],
  start = unprivilegedPortStart(),
): void {
  for (const m of ports) {
    if (m.hostPort !== 0 && m.hostPort < start) {
      throw new EngineError(
        `-p ${m.hostPort}:${m.containerPort}: host port ${m.hostPort} is below ${start}, which a rootless container cannot bind (net.ipv4.ip_unprivileged_port_start = ${start})`,
        {
          hint: `publish on a port from ${start} up (-p ${m.hostPort + 8000 <= 65535 ? m.hostPort + 8000 : 8080}:${m.containerPort}), or, as root, lower it: sysctl net.ipv4.ip_unprivileged_port_start=${m.hostPort}`,
        },
      );
    }
  }
}

/** -p for slirp4netns, checked at create: unprivileged host ports, IPv4 host addresses only. */
export function checkSlirpPorts(ports: readonly PortMapping[], start = unprivilegedPortStart()) {
  checkUnprivilegedPorts(ports, start);
  for (const m of ports) {
    if (m.hostIP.includes(":")) {
      throw new EngineError(
        `-p ${m.hostIP}: IPv6 host addresses are not supported with slirp4netns`,
        {
          hint: "publish on an IPv4 address, or on every address (-p HOSTPORT:PORT), or use --network pasta, which forwards IPv6",
        },
      );
    }
  }
}

/** What the engine keeps of a container's slirp4netns, in <runRoot>/slirp4netns/<id>.json. */
interface SlirpState {
  pid: number;
  startTime: string;
  /** The engine process that started it (pid and start time), busy starting the container. */
  starter?: ProcessId;
  socket: string;
  /** The forwards in place, with the host ports chosen for -p without one. */
  ports: PortMapping[];
}

function stateDir(ctx: EngineContext): string {
  return join(ctx.runRoot, "slirp4netns");
}

/** A process as the engine records it: its pid and start time (a reused pid is not it). */
export interface ProcessId {
  pid: number;
  startTime: string;
}

/** This process, to record as the starter of a network helper. */
export function thisProcess(): ProcessId {
  return { pid: process.pid, startTime: procStat(process.pid)?.startTime ?? "" };
}

/** Whether a recorded process still runs (not a zombie, the same start time). */
export function processAlive(p: ProcessId | undefined): boolean {
  if (!p || p.pid <= 0) return false;
  const st = procStat(p.pid);
  return st !== null && st.state !== "Z" && st.state !== "X" && st.startTime === p.startTime;
}

/** The containers with a helper's state (DIR/<id>.json), and the process that started each. */
export function helperStates(dir: string): { id: string; starter?: ProcessId }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const m = /^([0-9a-f]{64})\.json$/.exec(n);
    if (!m) return [];
    const s = readJson<{ starter?: ProcessId }>(join(dir, n));
    return [{ id: m[1]!, ...(s?.starter ? { starter: s.starter } : {}) }];
  });
}

/** The containers with slirp4netns state in the run root, and who started each. */
export function slirpStates(ctx: EngineContext): { id: string; starter?: ProcessId }[] {
  return helperStates(stateDir(ctx));
}

function stateFile(ctx: EngineContext, id: string): string {
  return join(stateDir(ctx), `${id}.json`);
}

/** The API socket: short (sun_path holds 107 bytes), under the run root. */
function socketPath(ctx: EngineContext, id: string): string {
  return join(stateDir(ctx), `${id.slice(0, 12)}.sock`);
}

/** The published ports in place for a running container (host ports as chosen), else null. */
export function slirpPorts(ctx: EngineContext, id: string): PortMapping[] | null {
  const s = readJson<SlirpState>(stateFile(ctx, id));
  return s && alive(s) ? s.ports : null;
}

function alive(s: SlirpState): boolean {
  return processAlive(s);
}

/**
 * Starts a container's user-mode network (slirp4netns or pasta) for its created, not yet started
 * init PID. `exitPipe`: the monitor holds its write end; the network ends when it is gone.
 */
export type StartUserModeNetwork = (
  ctx: EngineContext,
  id: string,
  options: ContainerOptions,
  pid: number,
  exitPipe: ExitPipe,
) => Promise<void>;

/**
 * The monitor's end of a user-mode network's exit FIFO (slirp4netns's --exit-fd, pasta's
 * watcher): a FIFO opened read-write (which does not block), given to the monitor; `readEnd`
 * opens the end slirp4netns polls, `blockingReadEnd` one whose read blocks until every writer is
 * gone (then reads end of file), `close` the engine's copies.
 */
export class ExitPipe {
  private constructor(
    readonly path: string,
    readonly writeFd: number,
  ) {}

  static create(dir: string): ExitPipe {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, "network.exit");
    rmSync(path, { force: true });
    const r = childProcess().spawnSync("mkfifo", ["-m", "600", path], { encoding: "utf8" });
    if (r.status !== 0) throw new EngineError(`mkfifo ${path} failed: ${r.stderr?.trim()}`);
    return new ExitPipe(path, openSync(path, fsConstants.O_RDWR));
  }

  readEnd(): number {
    return openSync(this.path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  }

  /** Does not block: the engine's write end is open until `close`. */
  blockingReadEnd(): number {
    return openSync(this.path, fsConstants.O_RDONLY);
  }

  close(): void {
    try {
      closeSync(this.writeFd);
    } catch {}
    rmSync(this.path, { force: true });
  }
}

function slirpBinary(): string {
  const bin = findProgram("slirp4netns");
  if (!bin) {
    throw new EngineError("slirp4netns is not installed: --network slirp4netns needs it", {
      hint: "as root: apt-get install slirp4netns (or use --network none or host)",
    });
  }
  return bin;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs slirp4netns and resolves once it has written its ready fd (tap0 configured). */
async function launch(
  bin: string,
  args: string[],
  logPath: string,
  exitPipe: ExitPipe,
): Promise<ChildProcess> {
  const log = openSync(logPath, "a", 0o600);
  const exitRead = exitPipe.readEnd();
  let child: ChildProcess;
  try {
    child = childProcess().spawn(bin, args, {
      stdio: ["ignore", log, log, "pipe", exitRead],
      detached: true,
    });
  } finally {
    closeSync(log);
    closeSync(exitRead);
  }
  const readLog = () => {
    try {
      return readFileSync(logPath, "utf8").trim().split("\n").slice(-3).join("; ");
    } catch {
      return "";
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const ready = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
      const fail = (why: string) => {
        clearTimeout(timer);
        ready.destroy();
        const detail = readLog();
        const tun = /\/dev\/net\/tun.*(Permission denied|Operation not permitted)/.test(detail);
        reject(
          new EngineError(`slirp4netns ${why}${detail ? `: ${detail}` : ""}`, {
            hint: tun
              ? "/dev/net/tun must be usable by every user (mode 0666, as udev makes it): as root, chmod 0666 /dev/net/tun (scripts/setup.sh does)"
              : `its log: ${logPath}`,
          }),
        );
      };
      const timer = setTimeout(() => fail("did not set up the network within 20 s"), 20_000);
      ready.on("data", () => {
        clearTimeout(timer);
        ready.destroy();
        resolve();
      });
      ready.on("error", () => {});
      child.on("error", (err) => fail(`could not be started (${err.message})`));
      child.on("exit", (code, signal) =>
        fail(`exited (${signal ?? `code ${code}`}) while setting up`),
      );
    });
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch {}
    throw err;
  }
  return child;
}

/**
 * Starts slirp4netns for the container whose init (created, not yet started) is PID: tap0
 * configured, then each published port forwarded. `exitPipe`: the monitor holds its write end.
 */
export const startSlirp: StartUserModeNetwork = async (ctx, id, options, pid, exitPipe) => {
  const bin = slirpBinary();
  const opts = slirpOptions(options.network ?? "slirp4netns");
  await stopSlirp(ctx, id); // whatever an earlier run left
  mkdirSync(stateDir(ctx), { recursive: true, mode: 0o700 });
  const socket = socketPath(ctx, id);
  rmSync(socket, { force: true });
  const logPath = join(ctx.containers.dir(id), "slirp4netns.log");
  rmSync(logPath, { force: true });
  const base = [
    "--configure",
    `--mtu=${opts.mtu}`,
    ...(opts.allowHostLoopback ? [] : ["--disable-host-loopback"]),
    "--api-socket",
    socket,
    "--ready-fd=3",
    "--exit-fd=4",
  ];
  const target = [String(pid), SLIRP.device];
  // --enable-sandbox (a mount namespace with only /etc and /run, capabilities dropped) and
  // --enable-seccomp where they work; without, if slirp4netns cannot set them up here.
  let child: ChildProcess;
  try {
    child = await launch(
      bin,
      [...base, "--enable-sandbox", "--enable-seccomp", ...target],
      logPath,
      exitPipe,
    );
  } catch (err) {
    const m = (err as Error).message;
    if (!m.includes("while setting up") || m.includes("/dev/net/tun")) throw err;
    ctx.warn(`slirp4netns runs without --enable-sandbox/--enable-seccomp: ${m}`);
    child = await launch(bin, [...base, ...target], logPath, exitPipe);
  }
  child.removeAllListeners("exit");
  child.unref();
  const state: SlirpState = {
    pid: child.pid!,
    startTime: procStat(child.pid!)?.startTime ?? "",
    starter: thisProcess(),
    socket,
    ports: [],
  };
  writeJsonAtomic(stateFile(ctx, id), state);
  // The API socket exists once ready was written (slirp4netns >= 0.4).
  for (const m of options.publish ?? []) {
    const hostPort = m.hostPort || (await freeHostPort(m.protocol, m.hostIP));
    const mapping = { ...m, hostPort };
    if (m.hostPort !== 0 && !(await hostPortFree(mapping))) {
      throw new EngineError(
        `-p ${formatPort(mapping)}: host port ${hostPort}/${m.protocol} is already in use`,
        { hint: "pick another host port, or stop what listens there" },
      );
    }
    await addHostForward(socket, mapping);
    state.ports.push(mapping);
    writeJsonAtomic(stateFile(ctx, id), state);
  }
};

function formatPort(m: PortMapping): string {
  return `${m.hostIP ? `${m.hostIP}:` : ""}${m.hostPort}:${m.containerPort}/${m.protocol}`;
}

/** One request to slirp4netns's API socket; resolves with its `return`, or throws its error. */
export function slirpApi(socket: string, request: object, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net().createConnection(socket);
    let buf = "";
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new EngineError(`slirp4netns's API (${socket}) did not answer`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      conn.destroy();
      let reply: { return?: unknown; error?: { desc?: string } };
      try {
        reply = JSON.parse(buf) as typeof reply;
      } catch {
        reject(new EngineError(`slirp4netns's API sent an unreadable reply: ${buf.trim()}`));
        return;
      }
      if (reply.error) reject(new EngineError(`slirp4netns: ${reply.error.desc ?? "error"}`));
      else resolve(reply.return);
    };
    conn.on("connect", () => conn.write(JSON.stringify(request)));
    conn.on("data", (d) => {
      buf += d.toString();
      try {
        JSON.parse(buf);
        finish();
      } catch {}
    });
    conn.on("end", () => {
      if (buf) finish();
    });
    conn.on("error", (err) => {
      clearTimeout(timer);
      reject(new EngineError(`slirp4netns's API (${socket}): ${err.message}`));
    });
  });
}

async function addHostForward(socket: string, m: PortMapping): Promise<void> {
  try {
    await slirpApi(socket, {
      execute: "add_hostfwd",
      arguments: {
        proto: m.protocol,
        host_addr: m.hostIP || "0.0.0.0",
        host_port: m.hostPort,
        guest_addr: SLIRP.address,
        guest_port: m.containerPort,
      },
    });
  } catch (err) {
    throw new EngineError(
      `-p ${formatPort(m)}: forwarding the port failed: ${(err as Error).message}`,
      {
        hint: "is the host port in use, or the host address not one of this host's?",
        cause: err,
      },
    );
  }
}

/**
 * Ends the container's slirp4netns (SIGTERM, SIGKILL after 2 s) if it still runs, and removes
 * its socket and state. Idempotent; a pid reused by another process is left alone.
 */
export async function stopSlirp(ctx: EngineContext, id: string): Promise<void> {
  const file = stateFile(ctx, id);
  const s = readJson<SlirpState>(file);
  if (s && alive(s)) {
    try {
      process.kill(s.pid, "SIGTERM");
    } catch {}
    const deadline = Date.now() + 5000;
    let killed = false;
    while (alive(s) && Date.now() < deadline) {
      if (!killed && Date.now() > deadline - 3000) {
        killed = true;
        try {
          process.kill(s.pid, "SIGKILL");
        } catch {}
      }
      await sleep(10);
    }
  }
  rmSync(socketPath(ctx, id), { force: true });
  rmSync(file, { force: true });
}
