// pivot: the daemonless, Docker-style engine's command line, a thin layer over src/engine.
import { closeSync, createWriteStream, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { parseEnvFile, parseMountFlag, parseTmpfsFlag, parseVolumeFlag } from "../engine/config.ts";
import { Engine, EngineError } from "../engine/engine.ts";
import { parseLogOptFlags } from "../engine/log-config.ts";
import {
  parseDeviceFlag,
  parseNamespaceMode,
  parsePidMode,
  parseSysctlFlag,
  parseUlimitFlag,
} from "../engine/process-options.ts";
import {
  ensurePrivateDirs,
  isRootlessEngine,
  joinUserNamespaceCommand,
  rootlessPaths,
  rootlessRunRoot,
  runInUserNamespace,
  userNamespaceCommand,
} from "../engine/rootless.ts";
import type { ContainerOptions, MountSpec } from "../engine/types.ts";
import { dockerVolume } from "../engine/volumes.ts";
import { formatError, PivotError } from "../errors.ts";
import { ImageNotFoundError } from "../image/errors.ts";
import { parsePublish } from "../network/ports.ts";
import type { Plan } from "../runtime/plan.ts";
import { childProcess } from "../util/child-process.ts";
import { os } from "../util/lazy-require.ts";
import { compiledBinary, compiledCommand } from "../util/self.ts";
import { PIVOT_VERSION } from "../version.ts";
import {
  boolFlag,
  type FlagSpec,
  flag,
  intFlag,
  type Parsed,
  parseArgs,
  UsageError,
} from "./args.ts";
import {
  CONTAINER_USAGE,
  IMAGE_COMMANDS,
  IMAGE_USAGE,
  NETWORK_USAGE,
  REGISTRY_COMMANDS,
  REGISTRY_USAGE,
} from "./command-groups.ts";
import { HEALTH_FLAGS, healthOptions } from "./health-flags.ts";
import { renderInspect } from "./inspect-format.ts";
import { longWorkAhead, noteCommandLine, startupOver, wantsTheJit } from "./jit.ts";
import { BatchedOutput, writeErr, writeOut } from "./output.ts";
import { RESOURCE_FLAGS, resourceOptions } from "./resource-flags.ts";

/** --trace's tables, loaded only when asked for: every command would pay for them. */
const traceModule = () => import("../runtime/trace.ts");

/**
 * SIGINT, SIGTERM and SIGHUP end the process normally (with 128 + the signal), so that the exit
 * handlers of cp, export and commit run: they thaw, unmount or resume the container, which a
 * signal's default action would leave frozen, mounted or paused.
 */
function exitNormallyOnSignals(): void {
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const)
    process.once(sig, () => process.exit(code));
}

/**
 * Loaded on use, as the image, network and registry commands are: `pivot run` needs none of it
 * (ps, stats, top, rename, pause, prune; their table and filter code, node:readline).
 */
const containers = () => import("./containers.ts");

const GLOBAL_FLAGS: FlagSpec[] = [
  { name: "root", value: true },
  { name: "run-root", value: true },
  { name: "debug", aliases: ["D"] },
  { name: "help" },
  { name: "version", aliases: ["v"] },
  { name: "trace" },
];

const CONTAINER_FLAGS: FlagSpec[] = [
  ...RESOURCE_FLAGS,
  ...HEALTH_FLAGS,
  { name: "interactive", aliases: ["i"] },
  { name: "tty", aliases: ["t"] },
  { name: "rm" },
  { name: "name", value: true },
  { name: "env", aliases: ["e"], value: true, multiple: true },
  { name: "env-file", value: true, multiple: true },
  { name: "workdir", aliases: ["w"], value: true },
  { name: "user", aliases: ["u"], value: true },
  { name: "entrypoint", value: true },
  { name: "hostname", aliases: ["h"], value: true },
  { name: "volume", aliases: ["v"], value: true, multiple: true },
  { name: "mount", value: true, multiple: true },
  { name: "tmpfs", value: true, multiple: true },
  { name: "read-only" },
  { name: "label", aliases: ["l"], value: true, multiple: true },
  { name: "cap-add", value: true, multiple: true },
  { name: "cap-drop", value: true, multiple: true },
  { name: "privileged" },
  { name: "init" },
  { name: "security-opt", value: true, multiple: true },
  { name: "stop-signal", value: true },
  { name: "stop-timeout", value: true },
  { name: "network", aliases: ["net"], value: true },
  { name: "publish", aliases: ["p"], value: true, multiple: true },
  { name: "network-alias", value: true, multiple: true },
  { name: "ip", value: true },
  { name: "publish-all", aliases: ["P"] },
  { name: "add-host", value: true, multiple: true },
  { name: "dns", value: true, multiple: true },
  { name: "dns-search", value: true, multiple: true },
  { name: "dns-option", value: true, multiple: true },
  { name: "pull", value: true },
  { name: "runtime", value: true },
  { name: "volumes-from", value: true, multiple: true },
  { name: "ulimit", value: true, multiple: true },
  { name: "device", value: true, multiple: true },
  { name: "sysctl", value: true, multiple: true },
  { name: "shm-size", value: true },
  { name: "pid", value: true },
  { name: "ipc", value: true },
  { name: "uts", value: true },
  { name: "group-add", value: true, multiple: true },
  { name: "oom-score-adj", value: true },
  { name: "log-driver", value: true },
  { name: "log-opt", value: true, multiple: true },
  { name: "cidfile", value: true },
  { name: "dry-run" },
  { name: "trace" },
  { name: "format", value: true },
  { name: "help" },
];

const RUN_FLAGS: FlagSpec[] = [
  ...CONTAINER_FLAGS,
  { name: "detach", aliases: ["d"] },
  { name: "detach-keys", value: true },
];

const USAGE = `pivot ${PIVOT_VERSION}: run containers from images, Docker-style, without a daemon

usage: pivot [--root DIR] COMMAND [flags] [args]

containers:
  run [flags] IMAGE [CMD...]   create and start a container (-d, -i, --rm, --name, -e, --env-file,
                               -w, -u, --entrypoint, --hostname, -v, --mount, --tmpfs, --read-only,
                               -l, --memory, --cpus, --pids-limit, --cap-add, --cap-drop,
                               --privileged, --security-opt, --stop-signal, --stop-timeout, --network,
                               --init, --runtime PATH (another OCI runtime: runc, crun),
                               --restart no|on-failure[:MAX]|always|unless-stopped,
                               --health-cmd CMD, --health-interval|--health-timeout|
                               --health-start-period|--health-start-interval DURATION,
                               --health-retries N, --no-healthcheck,
                               --volumes-from CONTAINER[:ro|rw],
                               --ulimit NAME=SOFT[:HARD], --device HOST[:CTR][:rwm],
                               --sysctl K=V, --shm-size, --pid host|container:NAME, --ipc|--uts host, --group-add,
                               --cpuset-cpus, --cpuset-mems, --oom-score-adj, --cidfile FILE,
                               --log-driver k8s-file|json-file|none,
                               --log-opt max-size=SIZE (the log starts over when full))
                               networking: --network none|host|bridge|NAME|container:NAME
                               (default none), -p [IP:][HOSTPORT:]PORT[/udp], -P (every
                               EXPOSEd port on a free host port), --ip, --network-alias,
                               --add-host NAME:IP, --dns IP, --dns-search D, --dns-option O;
                               rootless: --network none|host|pasta[:OPTS]|slirp4netns[:OPTS]
  create [flags] IMAGE [CMD...]  create a container without starting it
  start [-a] CONTAINER...      start containers (detached; -a: attached, waits for the exit)
  start --all-restartable      the boot hook: start what the restart policies ask for at boot
  stop [-t SECONDS] [-s SIGNAL] CONTAINER...   stop signal, then SIGKILL after the timeout
  kill [-s SIGNAL] CONTAINER...   send a signal (default KILL)
  rm [-f] [-v] CONTAINER...    remove containers (-f: even running; -v: their anonymous volumes)
  logs [-f] [--tail N] [--since TIME] [-t] CONTAINER   the container's output
  events [--since T] [--until T] [--filter K=V] [--format T|json]   what happens to containers
                               (create, start, die, kill, stop, pause, rename, destroy...), volumes,
                               networks, images; past ones from --since; filters: type= container=
                               image= event= label= volume= network=
  inspect [--type T] NAME...   details as JSON: a container, else an image, volume or network
  port CONTAINER [PORT[/PROTO]]   published ports (80/tcp -> 0.0.0.0:32768)
  exec [-d] [-i] [-e K=V] [-u USER] [-w DIR] CONTAINER CMD...   run a command in a container
  wait CONTAINER...            wait for exits and print the codes
  attach [--detach-keys KEYS] [--no-stdin] CONTAINER   join a detached container's terminal
                               (Ctrl-P Ctrl-Q detaches)
  cp CONTAINER:SRC DEST|-      copy out of a container (- : a tar stream on stdout); the files
                               are yours (-a: the container's owners kept)
  cp SRC|- CONTAINER:DEST      copy into a container (symlinks resolve inside it only); owners
                               kept (-a: the container's user gets them)
  diff CONTAINER               changes against the image (A added, C changed, D deleted)
  export [-o FILE] CONTAINER   the root filesystem as a tar stream
  commit [-m MSG] [-a AUTHOR] CONTAINER [REPOSITORY[:TAG]]   a new image with the changes
  run|create --dry-run [--format text|json|shell] IMAGE   print the launch plan; create nothing
  run|create --trace ...   where the time goes: the engine's and the runtime's steps, to stderr
${CONTAINER_USAGE}
debugging:
  debug mounts [--format json] CONTAINER   the mount tree with each mount's origin
  debug path [--format json] CONTAINER PATH   which layer or mount provides PATH
volumes:
  volume create [NAME] | volume ls [-q] | volume inspect NAME... | volume rm NAME...
${IMAGE_USAGE}
${NETWORK_USAGE}
${REGISTRY_USAGE}
rootless (run as a user other than root): images and containers in ~/.local/share/pivot, run
  state in $XDG_RUNTIME_DIR/pivot, in a user namespace over your /etc/subuid range
  unshare [CMD...]             a command (default a shell) in that user namespace
global flags: --root DIR (default /var/lib/pivot), --run-root DIR, --debug, --trace
`;

/** Expands combined short boolean flags (-dit → -d -i -t, Docker's convention) before the first positional. */
function expandShortFlags(argv: string[], specs: FlagSpec[]): string[] {
  const bools = new Set<string>();
  const valued = new Set<string>();
  for (const s of specs) {
    for (const n of [s.name, ...(s.aliases ?? [])]) (s.value ? valued : bools).add(n);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w === "--" || !w.startsWith("-") || w === "-") {
      out.push(...argv.slice(i));
      break;
    }
    if (/^-[A-Za-z]{2,}$/.test(w) && [...w.slice(1)].every((c) => bools.has(c))) {
      for (const c of w.slice(1)) out.push(`-${c}`);
      continue;
    }
    out.push(w);
    if (!w.includes("=") && valued.has(w.replace(/^--?/, "")) && i + 1 < argv.length)
      out.push(argv[++i]!);
  }
  return out;
}

/** Parses flags up to the first positional (the image or container), leaving the rest as-is. */
/** Parses already done, by the argument list: `run --trace` is looked for before dispatch. */
const parsedBefore = new WeakMap<
  string[],
  { specs: FlagSpec[]; positionals: number; parsed: Parsed }
>();

function parseCommand(args: string[], specs: FlagSpec[], positionals = 1): Parsed {
  const before = parsedBefore.get(args);
  if (before && before.specs === specs && before.positionals === positionals) return before.parsed;
  const parsed = parseArgs(expandShortFlags(args, specs), specs, positionals);
  parsedBefore.set(args, { specs, positionals, parsed });
  return parsed;
}

function multi(p: Parsed, name: string): string[] {
  return p.flags.get(name) ?? [];
}

function containerOptions(p: Parsed, image: string, cmd: string[]): ContainerOptions {
  const o: ContainerOptions = { image };
  if (cmd.length) o.cmd = cmd;
  const name = flag(p, "name");
  if (name !== undefined) o.name = name;
  const env: string[] = [];
  for (const file of multi(p, "env-file")) env.push(...parseEnvFile(readFileSync(file, "utf8")));
  env.push(...multi(p, "env"));
  if (env.length) o.env = env;
  const simple: [keyof ContainerOptions, string][] = [
    ["workdir", "workdir"],
    ["user", "user"],
    ["hostname", "hostname"],
    ["stopSignal", "stop-signal"],
  ];
  for (const [key, f] of simple) {
    const v = flag(p, f);
    if (v !== undefined) (o as unknown as Record<string, unknown>)[key] = v;
  }
  const entrypoint = flag(p, "entrypoint");
  if (entrypoint !== undefined) o.entrypoint = entrypoint;
  if (boolFlag(p, "interactive")) o.stdin = true;
  if (boolFlag(p, "tty")) o.tty = true;
  if (boolFlag(p, "rm")) o.autoRemove = true;
  if (boolFlag(p, "read-only")) o.readOnly = true;
  if (boolFlag(p, "privileged")) o.privileged = true;
  if (boolFlag(p, "init")) o.init = true;
  Object.assign(o, resourceOptions(p));
  const stopTimeout = intFlag(p, "stop-timeout");
  if (stopTimeout !== undefined) o.stopTimeout = stopTimeout;
  const healthcheck = healthOptions(p);
  if (healthcheck !== undefined) o.healthcheck = healthcheck;
  const mounts: MountSpec[] = [
    ...multi(p, "volume").map(parseVolumeFlag),
    ...multi(p, "mount").map(parseMountFlag),
    ...multi(p, "tmpfs").map(parseTmpfsFlag),
  ];
  if (mounts.length) o.mounts = mounts;
  if (multi(p, "volumes-from").length) o.volumesFrom = multi(p, "volumes-from");
  const labels: Record<string, string> = {};
  for (const l of multi(p, "label")) {
    const eq = l.indexOf("=");
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
  }
  if (Object.keys(labels).length) o.labels = labels;
  if (multi(p, "cap-add").length) o.capAdd = multi(p, "cap-add");
  if (multi(p, "cap-drop").length) o.capDrop = multi(p, "cap-drop");
  if (multi(p, "security-opt").length) o.securityOpt = multi(p, "security-opt");
  const network = flag(p, "network");
  if (network !== undefined) o.network = network;
  const publish = multi(p, "publish").flatMap(parsePublish);
  if (publish.length) o.publish = publish;
  if (multi(p, "network-alias").length) o.networkAliases = multi(p, "network-alias");
  const ip = flag(p, "ip");
  if (ip !== undefined) o.ip = ip;
  if (boolFlag(p, "publish-all")) o.publishAll = true;
  if (multi(p, "add-host").length) o.addHosts = multi(p, "add-host");
  if (multi(p, "dns").length) o.dns = multi(p, "dns");
  if (multi(p, "dns-search").length) o.dnsSearch = multi(p, "dns-search");
  if (multi(p, "dns-option").length) o.dnsOptions = multi(p, "dns-option");
  const pull = flag(p, "pull");
  if (pull !== undefined && pull !== "never" && pull !== "missing" && pull !== "always") {
    throw new UsageError(`--pull ${pull}: use always, missing or never`);
  }
  const runtime = flag(p, "runtime");
  if (runtime !== undefined && runtime !== "pivot") {
    if (!runtime.startsWith("/"))
      throw new UsageError(`--runtime ${runtime}: give the runtime binary's absolute path`, {
        hint: "e.g. --runtime /usr/sbin/runc; without --runtime, Pivot's own runtime runs it",
      });
    o.runtime = runtime;
  }
  addProcessOptions(p, o);
  return o;
}

/**
 * --ulimit, --device, --sysctl, --shm-size, --pid, --ipc, --uts, --group-add, --oom-score-adj,
 * --log-driver, --log-opt.
 */
function addProcessOptions(p: Parsed, o: ContainerOptions): void {
  const ulimits = multi(p, "ulimit").map(parseUlimitFlag);
  if (ulimits.length) o.ulimits = ulimits;
  const devices = multi(p, "device").map(parseDeviceFlag);
  if (devices.length) o.devices = devices;
  const sysctls = multi(p, "sysctl").map(parseSysctlFlag);
  if (sysctls.length) o.sysctls = Object.fromEntries(sysctls);
  const shmSize = flag(p, "shm-size");
  if (shmSize !== undefined) o.shmSize = shmSize;
  const pid = flag(p, "pid");
  if (pid !== undefined) o.pid = parsePidMode(pid);
  for (const ns of ["ipc", "uts"] as const) {
    const mode = flag(p, ns);
    if (mode !== undefined) o[ns] = parseNamespaceMode(ns, mode);
  }
  if (multi(p, "group-add").length) o.groupAdd = multi(p, "group-add");
  const oomScoreAdj = intFlag(p, "oom-score-adj");
  if (oomScoreAdj !== undefined) o.oomScoreAdj = oomScoreAdj;
  const logDriver = flag(p, "log-driver");
  // Checked with the rest of the options when the container is created (log-config.ts).
  if (logDriver !== undefined) o.logDriver = logDriver as ContainerOptions["logDriver"];
  if (multi(p, "log-opt").length) o.logOptions = parseLogOptFlags(multi(p, "log-opt"));
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) {
    writeOut(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join("")}\n`);
  }
}

/** Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the container while attached. */
function proxySignals(engine: Engine, id: string, held: HeldSignals | null = null): () => void {
  const sigs = FORWARDED_SIGNALS;
  const handler = (sig: NodeJS.Signals) => {
    try {
      engine.kill(id, sig);
    } catch (err) {
      // The container ended meanwhile (the same Ctrl-C reached it): nothing to forward to.
      if (err instanceof EngineError && / is not running$/.test(err.message)) return;
      // Anything else (the manual-stop mark not written, the runtime's kill failing): said on one
      // line, and the run goes on, as Docker's client goes on when its kill request fails.
      const why = err instanceof Error ? err.message : String(err);
      writeErr(
        `pivot: forwarding ${sig} to container ${id.slice(0, 12)} failed: ${why.split("\n")[0]}\n`,
      );
    }
  };
  for (const s of sigs) process.on(s, handler);
  // Those that came while it was being made, now that it runs.
  if (held) {
    held.stop();
    for (const sig of held.take()) handler(sig);
  }
  return () => {
    for (const s of sigs) process.off(s, handler);
  };
}

/** `run --trace` or `create --trace` (`pivot --trace COMMAND` traces any command). */
function commandWantsTrace(command: string, args: string[]): boolean {
  if (command !== "run" && command !== "create") return false;
  try {
    return boolFlag(parseCommand(args, command === "run" ? RUN_FLAGS : CONTAINER_FLAGS), "trace");
  } catch {
    return false; // dispatch reports the usage error
  }
}

export async function main(argv: string[]): Promise<number> {
  const mainAt = performance.now();
  noteCommandLine(argv);
  let debug = false;
  try {
    const global = parseArgs(argv, GLOBAL_FLAGS, 1);
    debug = boolFlag(global, "debug");
    if (boolFlag(global, "version")) {
      writeOut(`pivot version ${PIVOT_VERSION}\n`);
      return 0;
    }
    const command = global.positionals[0];
    if (!command || boolFlag(global, "help") || command === "help") {
      writeOut(USAGE);
      return command || boolFlag(global, "help") ? 0 : 1;
    }
    // Rootless: the command runs again in a user namespace of the caller's (src/engine/rootless.ts),
    // except those that reach into running containers' namespaces, which the plain user owns.
    if ((process.geteuid?.() ?? 0) !== 0) {
      const outside = OUTSIDE_USER_NAMESPACE.has(command);
      // The namespace's needs first (subordinate ids, newuidmap), then the directories.
      let enter = outside ? null : userNamespaceCommand([...selfCommand(), ...argv]);
      ensurePrivateDirs(rootlessDirs(global));
      // cp and export of a running container: in its monitor's user namespace instead, which
      // has a capability over the container's (its child) and over the monitor's mount namespace.
      const monitor = enter ? runningMonitor(global, command) : 0;
      if (monitor > 0) enter = joinUserNamespaceCommand(monitor, [...selfCommand(), ...argv]);
      if (enter) return await runInUserNamespace(enter);
    }
    if (command === "unshare") return await unshareCommand(global.rest);
    const trace =
      boolFlag(global, "trace") || commandWantsTrace(command, global.rest)
        ? new (await traceModule()).Trace(mainAt)
        : undefined;
    const engine = new Engine({
      ...(flag(global, "root") ? { root: flag(global, "root")! } : {}),
      ...(flag(global, "run-root") ? { runRoot: flag(global, "run-root")! } : {}),
      ...(trace ? { trace } : {}),
    });
    if (wantsTheJit(command, global.rest)) longWorkAhead();
    try {
      return await dispatch(engine, command, global.rest);
    } finally {
      if (trace) writeErr(trace.render(`pivot ${command}`));
    }
  } catch (err) {
    writeErr(`pivot: ${formatError(err)}\n`);
    if (!debug && !(err instanceof PivotError) && !(err as { hint?: string }).hint)
      writeErr("  hint: `pivot --debug ...` shows where it failed\n");
    // --debug: the stack, and the stack of each cause.
    let e: unknown = err;
    for (let depth = 0; debug && e instanceof Error && depth < 8; depth++) {
      writeErr(`${depth ? "caused by: " : ""}${e.stack ?? e.message}\n`);
      e = e.cause;
    }
    return 125;
  }
}

/**
 * Rootless commands that run as the plain user, outside the user namespace: each pivot command
 * enters a namespace of its own, which has no capability over another's (a detached container's),
 * while the user owns them all.
 */
const OUTSIDE_USER_NAMESPACE = new Set(["exec", "debug"]);

/**
 * Rootless `cp` and `export`: the pid of the monitor (conmon, or the attached pivot) of the
 * running container they name, else 0 (stopped, unknown, a usage error: the command, run in a
 * namespace of its own, reports it). Read as the plain user, who owns the state.
 */
function runningMonitor(global: Parsed, command: string): number {
  if (command !== "cp" && command !== "export") return 0;
  try {
    let ref: string | undefined;
    if (command === "cp") {
      const p = parseCommand(global.rest, [{ name: "archive", aliases: ["a"] }], 2);
      const ends = p.positionals.map(splitContainerPath).filter((e) => e !== null);
      if (ends.length !== 1) return 0;
      ref = ends[0]!.container;
    } else {
      ref = parseCommand(global.rest, [{ name: "output", aliases: ["o"], value: true }])
        .positionals[0];
    }
    if (!ref) return 0;
    const engine = new Engine({
      ...(flag(global, "root") ? { root: flag(global, "root")! } : {}),
      ...(flag(global, "run-root") ? { runRoot: flag(global, "run-root")! } : {}),
    });
    const st = engine.inspect(ref).state;
    const live = st.status === "running" || st.status === "paused";
    return live && st.pid > 0 && st.monitorPid > 0 ? st.monitorPid : 0;
  } catch {
    return 0;
  }
}

/** The rootless engine's directories: --root and --run-root, else the per-user ones. */
function rootlessDirs(global: Parsed): string[] {
  const root = flag(global, "root") ?? rootlessPaths().root;
  const runRoot =
    flag(global, "run-root") ?? (flag(global, "root") ? join(root, "run") : rootlessRunRoot());
  return [root, runRoot];
}

/** This program, to run again in the rootless user namespace. */
function selfCommand(): string[] {
  const binary = compiledBinary();
  return binary ? [compiledCommand(binary, "pivot")] : [process.execPath, process.argv[1]!];
}

/** `pivot unshare [CMD...]`: a command (default: a shell) in the rootless user namespace. */
async function unshareCommand(args: string[]): Promise<number> {
  if (!isRootlessEngine()) {
    throw new EngineError("pivot unshare is for rootless use: root needs no user namespace", {
      hint: "run it as the user whose files under ~/.local/share/pivot you want to reach",
    });
  }
  const cmd = args.length > 0 ? args : [process.env.SHELL || "/bin/sh"];
  const child = childProcess().spawn(cmd[0]!, cmd.slice(1), { stdio: "inherit" });
  return await new Promise<number>((res, rej) => {
    child.on("error", (err) =>
      rej(new EngineError(`pivot unshare: cannot run ${cmd[0]}: ${err.message}`)),
    );
    child.on("exit", (code, signal) =>
      res(code ?? (signal ? 128 + (os().constants.signals[signal] ?? 0) : 1)),
    );
  });
}

function needArg(p: Parsed, what: string, command: string): string {
  const v = p.positionals[0];
  if (v === undefined) {
    throw new UsageError(`${command} needs ${what}`, {
      hint: `run \`pivot --help\` for the usage of ${command}`,
    });
  }
  return v;
}

/** The containers named by a command: the positional and everything after it. */
function targets(p: Parsed, command: string): string[] {
  const all = [...p.positionals, ...p.rest];
  if (all.length === 0) throw new UsageError(`${command} needs at least one container`);
  return all;
}

async function dispatch(engine: Engine, command: string, args: string[]): Promise<number> {
  switch (command) {
    case "run":
    case "create": {
      const p = parseCommand(args, command === "run" ? RUN_FLAGS : CONTAINER_FLAGS);
      if (boolFlag(p, "help")) {
        writeOut(USAGE);
        return 0;
      }
      const image = needArg(p, "an image", command);
      // An attached run: a signal before its container runs is held for it, not the end of this
      // process half-way through making it.
      const held =
        command === "run" && !boolFlag(p, "detach") && !boolFlag(p, "dry-run")
          ? holdSignals()
          : null;
      try {
        return await createOrRun(engine, command, p, image, args, held);
      } finally {
        held?.stop();
      }
    }
    case "start": {
      const p = parseCommand(args, [
        { name: "attach", aliases: ["a"] },
        { name: "interactive", aliases: ["i"] },
        { name: "all-restartable" },
      ]);
      if (boolFlag(p, "all-restartable")) {
        // The boot hook: no daemon starts containers when the machine starts.
        const r = await engine.startRestartable();
        for (const id of r.started) writeOut(`${id}\n`);
        for (const f of r.failed)
          writeErr(`pivot: starting ${f.id.slice(0, 12)}: ${formatError(f.error)}\n`);
        return r.failed.length ? 1 : 0;
      }
      const ids = targets(p, command);
      if (boolFlag(p, "attach")) {
        if (ids.length !== 1) throw new UsageError("start -a takes one container");
        const c = await engine.startAttached(ids[0]!, "inherit");
        startupOver();
        const unproxy = proxySignals(engine, c.id);
        try {
          return await c.wait();
        } finally {
          unproxy();
        }
      }
      for (const ref of ids) {
        await engine.start(ref);
        writeOut(`${ref}\n`);
      }
      return 0;
    }
    case "stop":
    case "restart": {
      const p = parseCommand(args, [
        { name: "time", aliases: ["t", "timeout"], value: true },
        { name: "signal", aliases: ["s"], value: true },
      ]);
      const timeout = intFlag(p, "time");
      for (const ref of targets(p, command)) {
        const options = {
          ...(timeout !== undefined ? { timeout } : {}),
          ...(flag(p, "signal") ? { signal: flag(p, "signal")! } : {}),
        };
        if (command === "restart") await engine.restart(ref, options);
        else await engine.stop(ref, options);
        writeOut(`${ref}\n`);
      }
      return 0;
    }
    case "kill": {
      const p = parseCommand(args, [{ name: "signal", aliases: ["s"], value: true }]);
      for (const ref of targets(p, command)) {
        engine.kill(ref, flag(p, "signal") ?? "SIGKILL");
        writeOut(`${ref}\n`);
      }
      return 0;
    }
    case "rm": {
      const p = parseCommand(args, [
        { name: "force", aliases: ["f"] },
        { name: "volumes", aliases: ["v"] },
      ]);
      let failed = 0;
      for (const ref of targets(p, command)) {
        try {
          await engine.remove(ref, {
            force: boolFlag(p, "force"),
            volumes: boolFlag(p, "volumes"),
          });
          writeOut(`${ref}\n`);
        } catch (err) {
          writeErr(`pivot: ${formatError(err)}\n`);
          failed++;
        }
      }
      return failed ? 1 : 0;
    }
    case "ps":
      return (await containers()).psCommand(engine, args);
    case "stats":
      return (await containers()).statsCommand(engine, args);
    case "top":
      return (await containers()).topCommand(engine, args);
    case "rename":
      return (await containers()).renameCommand(engine, args);
    case "update":
      return (await containers()).updateCommand(engine, args);
    case "pause":
    case "unpause":
      return (await containers()).pauseCommand(engine, command, args);
    case "container": {
      // Docker's long forms: container prune, container ls, container rm ...
      const [sub, ...rest] = args;
      if (sub === "prune") return (await containers()).containerPruneCommand(engine, rest);
      if (sub === "ls" || sub === "list") return (await containers()).psCommand(engine, rest);
      if (!sub || sub === "container" || sub.startsWith("-"))
        throw new UsageError("usage: pivot container COMMAND", {
          hint: "e.g. pivot container prune, pivot container ls",
        });
      return dispatch(engine, sub, rest);
    }
    case "logs": {
      const p = parseCommand(args, [
        { name: "follow", aliases: ["f"] },
        { name: "tail", aliases: ["n"], value: true },
        { name: "since", value: true },
        { name: "timestamps", aliases: ["t"] },
      ]);
      const ref = needArg(p, "a container", command);
      const tailText = flag(p, "tail");
      const since = flag(p, "since");
      // Docker's times, as `pivot events` takes them (Go durations, Unix seconds, RFC 3339).
      const sinceDate =
        since === undefined
          ? undefined
          : (await import("./events.ts")).parseTimeFlag("since", since);
      const ts = boolFlag(p, "timestamps");
      const output = new BatchedOutput();
      try {
        for await (const e of engine.logs(ref, {
          follow: boolFlag(p, "follow"),
          ...(tailText !== undefined && tailText !== "all" ? { tail: Number(tailText) } : {}),
          ...(sinceDate ? { since: sinceDate } : {}),
        })) {
          // A reader that went away (`logs -f | head`) ends the command, as docker's does.
          if (!output.write(e.stream === "stdout" ? 1 : 2, ts ? `${e.time} ${e.text}` : e.text))
            return 0;
        }
      } finally {
        // The lines read so far go out before an error that ended the reading.
        output.flush();
      }
      return 0;
    }
    case "inspect": {
      const p = parseCommand(args, [
        { name: "format", aliases: ["f"], value: true },
        { name: "type", value: true },
      ]);
      const { inspectAny } = await import("./inspect-any.ts");
      const found = [];
      for (const ref of targets(p, command))
        found.push(await inspectAny(engine, ref, flag(p, "type")));
      writeOut(
        renderInspect(
          found.map((f) => f.object),
          flag(p, "format"),
          found.map((f) => f.kind),
        ),
      );
      return 0;
    }
    case "port": {
      const p = parseCommand(args, [], 2);
      const ref = needArg(p, "a container", command);
      const want = p.positionals[1];
      let ports = engine.inspect(ref).ports ?? [];
      if (want !== undefined) {
        const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(want);
        if (!m) throw new UsageError(`invalid port "${want}"`, { hint: "e.g. 80 or 53/udp" });
        ports = ports.filter(
          (x) => x.containerPort === Number(m[1]) && x.protocol === (m[2] ?? "tcp"),
        );
        if (ports.length === 0)
          throw new EngineError(`no public port ${want} published for ${ref}`, {
            hint: `\`pivot port ${ref}\` lists what it publishes`,
          });
      }
      for (const x of ports) {
        const host = `${x.hostIP || "0.0.0.0"}:${x.hostPort || "(chosen at start)"}`;
        writeOut(
          want !== undefined ? `${host}\n` : `${x.containerPort}/${x.protocol} -> ${host}\n`,
        );
      }
      return 0;
    }
    case "exec": {
      const specs: FlagSpec[] = [
        { name: "detach", aliases: ["d"] },
        { name: "interactive", aliases: ["i"] },
        { name: "tty", aliases: ["t"] },
        { name: "env", aliases: ["e"], value: true, multiple: true },
        { name: "user", aliases: ["u"], value: true },
        { name: "workdir", aliases: ["w"], value: true },
        { name: "privileged" },
      ];
      const p = parseCommand(args, specs);
      const ref = needArg(p, "a container", command);
      if (p.rest.length === 0) throw new UsageError("exec needs a command after the container");
      const c = await engine.exec(ref, {
        cmd: p.rest,
        env: multi(p, "env"),
        ...(flag(p, "user") ? { user: flag(p, "user")! } : {}),
        ...(flag(p, "workdir") ? { workdir: flag(p, "workdir")! } : {}),
        detach: boolFlag(p, "detach"),
        stdin: boolFlag(p, "interactive"),
        tty: boolFlag(p, "tty"),
        stdio: "inherit",
      });
      startupOver();
      return await c.wait();
    }
    case "cp": {
      const p = parseCommand(args, [{ name: "archive", aliases: ["a"] }], 2);
      const [src, dest] = p.positionals;
      if (!src || !dest)
        throw new UsageError(
          "usage: pivot cp CONTAINER:SRC DEST|-  or  pivot cp SRC|- CONTAINER:DEST",
        );
      const s = splitContainerPath(src);
      const d = splitContainerPath(dest);
      const archive = boolFlag(p, "archive");
      // The container is frozen while its files are copied: an interrupted cp exits normally, so
      // that its exit handler thaws it (a signal's default action would leave it frozen).
      exitNormallyOnSignals();
      if (s && !d) {
        if (dest === "-") {
          const { stream } = await engine.archive(s.container, s.path);
          await (await import("node:stream/promises")).pipeline(stream, process.stdout);
        } else await engine.copyFrom(s.container, s.path, dest, { archive });
        return 0;
      }
      if (d && !s) {
        if (src === "-")
          await engine.extractArchive(d.container, d.path, process.stdin, { archive });
        else await engine.copyTo(d.container, src, d.path, { archive });
        return 0;
      }
      throw new UsageError(
        "cp copies between a container and this machine: one of SRC and DEST is CONTAINER:PATH",
      );
    }
    case "export": {
      const p = parseCommand(args, [{ name: "output", aliases: ["o"], value: true }]);
      // A stopped container's root filesystem is mounted for the while: an interrupted export
      // exits normally, so that its exit handler unmounts it (as cp's does).
      exitNormallyOnSignals();
      const stream = await engine.export(needArg(p, "a container", command));
      const out = flag(p, "output");
      const { pipeline } = await import("node:stream/promises");
      await pipeline(stream, out ? createWriteStream(out) : process.stdout);
      return 0;
    }
    case "diff": {
      const p = parseCommand(args, []);
      for (const c of await engine.diff(needArg(p, "a container", command)))
        writeOut(`${c.kind} ${c.path}\n`);
      return 0;
    }
    case "commit": {
      const p = parseCommand(
        args,
        [
          { name: "message", aliases: ["m"], value: true },
          { name: "author", aliases: ["a"], value: true },
          { name: "pause", aliases: ["p"], value: true },
        ],
        2,
      );
      const [ref, tag] = p.positionals;
      if (!ref)
        throw new UsageError(
          "usage: pivot commit [-m MESSAGE] [-a AUTHOR] CONTAINER [REPOSITORY[:TAG]]",
        );
      // The container is paused while its layer is copied: an interrupted commit exits
      // normally, so that its exit handler resumes it (as cp's does).
      exitNormallyOnSignals();
      const image = await engine.commit(ref, {
        ...(tag ? { ref: tag } : {}),
        ...(flag(p, "message") ? { message: flag(p, "message")! } : {}),
        ...(flag(p, "author") ? { author: flag(p, "author")! } : {}),
        pause: flag(p, "pause") !== "false",
      });
      writeOut(`${image.id}\n`);
      return 0;
    }
    case "attach": {
      const p = parseCommand(args, [
        { name: "detach-keys", value: true },
        { name: "no-stdin" },
        { name: "sig-proxy", value: true },
      ]);
      const ref = needArg(p, "a container", command);
      const keys = flag(p, "detach-keys");
      const r = await engine.attach(ref, {
        noStdin: boolFlag(p, "no-stdin"),
        ...(keys !== undefined ? { detachKeys: keys } : {}),
      });
      return r.detached ? 0 : (r.exitCode ?? 0);
    }
    case "wait": {
      const p = parseCommand(args, []);
      let last = 0;
      for (const ref of targets(p, command)) {
        last = await engine.wait(ref);
        writeOut(`${last}\n`);
      }
      return 0;
    }
    case "healthcheck": {
      const { healthcheckCommand } = await import("./health.ts");
      return healthcheckCommand(engine, args);
    }
    case "build": {
      const { buildCommand } = await import("./build.ts");
      return buildCommand(engine, args);
    }
    case "debug":
      return debugCommand(engine, args);
    case "volume":
      return volumeCommand(engine, args);
    case "network": {
      // Each command group's code is loaded when one of its commands runs (command-groups.ts).
      const { networkCommand } = await import("./network.ts");
      return networkCommand(engine.networks, args, (ref) => engine.resolveId(ref));
    }
    case "events":
      return (await import("./events.ts")).eventsCommand(engine, args);
    case "container-cleanup": {
      // conmon's exit command: unmount and, for --rm containers, remove; with a restart
      // policy, restart after the backoff (this process waits for it).
      const p = parseCommand(args, [], 2);
      const runId = p.positionals[1];
      await engine.cleanup(needArg(p, "a container", command), runId ? { runId } : {});
      return 0;
    }
    case "exec-cleanup": {
      // conmon's exit command for `exec -d`: exec_die with the exit code, the exec's files removed.
      const p = parseCommand(args, [], 2);
      const execId = p.positionals[1];
      await engine.execCleanup(needArg(p, "a container", command), execId ?? "");
      return 0;
    }
    default:
      if (IMAGE_COMMANDS.includes(command)) {
        const { imageCommand } = await import("./images.ts");
        return imageCommand(engine, command, args);
      }
      if ((REGISTRY_COMMANDS as readonly string[]).includes(command)) {
        const { registryCommand } = await import("./registry.ts");
        return registryCommand(command, args, () => engine.images());
      }
      throw new UsageError(`unknown command "${command}"`, {
        hint: "run `pivot --help` for the list of commands",
      });
  }
}

/** CONTAINER:PATH (Docker's rule: a local path with a colon starts with / or .). */
function splitContainerPath(arg: string): { container: string; path: string } | null {
  if (arg.startsWith("/") || arg.startsWith(".")) return null;
  const colon = arg.indexOf(":");
  if (colon <= 0) return null;
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) || "/" };
}

/**
 * --cidfile FILE: made before the container (refused if it exists, as Docker does, so two runs
 * cannot share one), the container's id written into it once created (before a run's start,
 * which may fail and leave it Created, as Docker's does), removed if creating fails or the
 * container is gone after all (a --rm run whose start failed).
 */
function reserveCidfile(path: string | undefined, exists: (id: string) => boolean) {
  let fd: number | undefined;
  if (path !== undefined) {
    try {
      fd = openSync(path, "wx", 0o644);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new EngineError(
        code === "EEXIST"
          ? `the container id file ${path} exists already`
          : `cannot create the container id file ${path}: ${(err as Error).message}`,
        {
          hint:
            code === "EEXIST"
              ? "make sure the container it names is gone, then delete the file (or choose another)"
              : "give a path in a directory that exists and is writable",
        },
      );
    }
  }
  let written: string | undefined;
  const write = (id: string) => {
    if (fd === undefined || written !== undefined) return;
    writeSync(fd, id);
    closeSync(fd);
    written = id;
  };
  return {
    write,
    /** Runs CREATE; its container's id goes into the file, or the file goes if it fails. */
    async whileCreating<T extends { id: string }>(create: () => Promise<T>): Promise<T> {
      try {
        const c = await create();
        write(c.id);
        return c;
      } catch (err) {
        if (fd !== undefined && written === undefined) {
          closeSync(fd);
          rmSync(path!, { force: true });
        } else if (written !== undefined && !exists(written)) {
          rmSync(path!, { force: true });
        }
        throw err;
      }
    },
  };
}

/** `run` and `create` once their flags are parsed; `held`: an attached run's held signals. */
async function createOrRun(
  engine: Engine,
  command: string,
  p: Parsed,
  image: string,
  args: string[],
  held: HeldSignals | null,
): Promise<number> {
  const options = containerOptions(p, image, p.rest);
  if (boolFlag(p, "dry-run")) {
    // Nothing is pulled either: the image must be in the store.
    await ensureImage(engine, image, "never");
    const attached = command === "run" && !boolFlag(p, "detach");
    const { plan } = await engine.dryRun(options, attached);
    for (const w of plan.warnings) writeErr(`pivot: warning: ${w}\n`);
    writeOut(
      await renderPlan(plan, flag(p, "format") ?? "text", `pivot ${command} ${args.join(" ")}`),
    );
    return 0;
  }
  // A pull is long and can be interrupted: a signal then ends this process, as it would have.
  await (held
    ? held.whilePulling(() => ensureImage(engine, image, flag(p, "pull") ?? "missing"))
    : ensureImage(engine, image, flag(p, "pull") ?? "missing"));
  const cidfile = reserveCidfile(flag(p, "cidfile"), (id) => {
    try {
      engine.inspect(id);
      return true;
    } catch {
      return false;
    }
  });
  if (command === "create") {
    const info = await cidfile.whileCreating(() => engine.create(options));
    writeOut(`${info.id}\n`);
    return 0;
  }
  if (boolFlag(p, "detach")) {
    const c = await cidfile.whileCreating(() =>
      engine.run({ ...options, detach: true }, cidfile.write),
    );
    writeOut(`${c.id}\n`);
    return 0;
  }
  if (options.tty && engine.hasConmon) {
    // -t: under conmon with this terminal attached, so the detach keys leave it running.
    const keys = flag(p, "detach-keys");
    let unproxy = () => {};
    try {
      const r = await cidfile.whileCreating(() =>
        engine.runAndAttach(options, keys !== undefined ? { detachKeys: keys } : {}, (id) => {
          cidfile.write(id);
          unproxy = proxySignals(engine, id, held);
        }),
      );
      return r.detached ? 0 : (r.exitCode ?? 0);
    } finally {
      unproxy();
    }
  }
  const c = await cidfile.whileCreating(() =>
    engine.run({ ...options, stdio: "inherit" }, cidfile.write),
  );
  // The container runs: what is left is its output, pumped through JavaScript.
  startupOver();
  const unproxy = proxySignals(engine, c.id, held);
  try {
    return await c.wait();
  } finally {
    unproxy();
  }
}

/** The signals an attached run forwards to its container. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
];

interface HeldSignals {
  /** Runs PULL with signals ending this process again (a pull is long, and stops safely). */
  whilePulling<T>(pull: () => Promise<T>): Promise<T>;
  /** The signals held so far, in order, taken out (to be forwarded). */
  take(): NodeJS.Signals[];
  stop(): void;
}

/**
 * Holds the signals that reach an attached `run` before its container runs: forwarded to it
 * once it runs (proxySignals), as Docker's client forwards them, instead of ending this process
 * half-way through the create (what that leaves is released only by a later command).
 */
function holdSignals(): HeldSignals {
  const pending: NodeJS.Signals[] = [];
  let exitOnSignal = false;
  const exitBy = (sig: NodeJS.Signals) => process.exit(128 + (os().constants.signals[sig] ?? 0));
  const onSignal = (sig: NodeJS.Signals) => {
    if (exitOnSignal) exitBy(sig);
    pending.push(sig);
  };
  for (const sig of FORWARDED_SIGNALS) process.on(sig, onSignal);
  return {
    async whilePulling(pull) {
      const first = pending.shift();
      if (first) exitBy(first);
      exitOnSignal = true;
      try {
        return await pull();
      } finally {
        exitOnSignal = false;
      }
    },
    take: () => pending.splice(0),
    stop() {
      for (const sig of FORWARDED_SIGNALS) process.off(sig, onSignal);
    },
  };
}

/** --pull: "always" pulls, "missing" (the default) pulls an image not in the store, "never" does not. */
async function ensureImage(engine: Engine, image: string, policy: string): Promise<void> {
  const store = await engine.images();
  if (policy !== "always") {
    try {
      await store.resolve(image);
      return;
    } catch (err) {
      if (!(err instanceof ImageNotFoundError)) throw err;
      if (policy === "never") {
        throw new EngineError(
          `image ${image} is not in the local store (not found; --pull never)`,
          {
            hint: `pull it: \`pivot pull ${image}\` (or --pull missing); without network, \`pivot load\` a saved image or \`pivot import\` a root filesystem; \`pivot images\` lists what is here`,
            cause: err,
          },
        );
      }
    }
  }
  try {
    longWorkAhead(); // a pull: nothing exists yet that running again with the JIT would lose
    const { pullImage } = await import("../registry/index.ts");
    await pullImage(store, image);
  } catch (err) {
    throw new EngineError(
      `image ${image} is not in the local store${policy === "always" ? "" : ","} and pulling it failed: ${formatError(err).split("\n")[0]}`,
      {
        hint: "pull it with `pivot pull`, or import a root filesystem with `pivot import TARBALL NAME`",
      },
    );
  }
}

/** --dry-run output: numbered steps, JSON, or an equivalent shell script. */
async function renderPlan(plan: Plan, format: string, title: string): Promise<string> {
  const { renderPlanJson, renderPlanShell, renderPlanText } = await import("../runtime/explain.ts");
  if (format === "json") return renderPlanJson(plan);
  if (format === "shell") return renderPlanShell(plan, title);
  if (format === "text") return renderPlanText(plan);
  throw new UsageError(`unknown --format "${format}"`, { hint: "use text, json or shell" });
}

/** `debug mounts CONTAINER`, `debug path CONTAINER PATH`. */
async function debugCommand(engine: Engine, args: string[]): Promise<number> {
  const sub = args[0];
  const p = parseCommand(args.slice(1), [{ name: "format", aliases: ["f"], value: true }], 2);
  const format = flag(p, "format") ?? "text";
  if (format !== "text" && format !== "json") {
    throw new UsageError(`unknown --format "${format}"`, { hint: "use text or json" });
  }
  const ref = needArg(p, "a container", `debug ${sub ?? ""}`.trim());
  const { engineMountReport, explainPath, renderPathReport } = await import("../engine/debug.ts");
  const { renderMountReport } = await import("../runtime/provenance.ts");
  switch (sub) {
    case "mounts": {
      const r = await engineMountReport(engine, ref);
      writeOut(
        format === "json"
          ? `${JSON.stringify(r, null, 2)}\n`
          : renderMountReport(
              r,
              `mounts of container ${r.name} (${r.id.slice(0, 12)}), as its init (pid ${r.pid}) sees them:`,
            ),
      );
      return 0;
    }
    case "path": {
      const path = p.positionals[1] ?? p.rest[0];
      if (path === undefined) throw new UsageError("usage: pivot debug path CONTAINER PATH");
      const r = await explainPath(engine, ref, path);
      writeOut(format === "json" ? `${JSON.stringify(r, null, 2)}\n` : renderPathReport(r));
      return 0;
    }
    default:
      throw new UsageError(`unknown debug command "${sub ?? ""}"`, {
        hint: "use debug mounts CONTAINER or debug path CONTAINER PATH",
      });
  }
}

function volumeCommand(engine: Engine, args: string[]): number | Promise<number> {
  const sub = args[0];
  if (sub === "prune") return containers().then((m) => m.volumePruneCommand(engine, args.slice(1)));
  // inspect's -f is --format, rm's --force, as Docker's.
  const inspecting = sub === "inspect";
  const p = parseCommand(args.slice(1), [
    { name: "quiet", aliases: ["q"] },
    { name: "label", aliases: ["l"], value: true, multiple: true },
    { name: "force", aliases: inspecting ? [] : ["f"] },
    { name: "format", aliases: inspecting ? ["f"] : [], value: true },
  ]);
  const names = [...p.positionals, ...p.rest];
  switch (sub) {
    case "create": {
      const labels: Record<string, string> = {};
      for (const l of multi(p, "label")) {
        const eq = l.indexOf("=");
        labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
      }
      const v = engine.createVolume(names[0], labels);
      writeOut(`${v.name}\n`);
      return 0;
    }
    case "ls": {
      const list = engine.listVolumes();
      if (boolFlag(p, "quiet")) {
        for (const v of list) writeOut(`${v.name}\n`);
        return 0;
      }
      const rows = [["DRIVER", "VOLUME NAME"]];
      for (const v of list) rows.push(["local", v.name]);
      printTable(rows);
      return 0;
    }
    case "inspect": {
      if (names.length === 0) throw new UsageError("volume inspect needs a volume name");
      writeOut(
        renderInspect(
          names.map((n) => dockerVolume(engine.inspectVolume(n))),
          flag(p, "format"),
          "volume",
        ),
      );
      return 0;
    }
    case "rm": {
      if (names.length === 0) throw new UsageError("volume rm needs a volume name");
      for (const n of names) {
        engine.removeVolume(n);
        writeOut(`${n}\n`);
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown volume command "${sub ?? ""}"`, {
        hint: "use volume create, ls, inspect or rm",
      });
  }
}
