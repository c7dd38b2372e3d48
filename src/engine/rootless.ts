// The rootless engine: `pivot` run by an ordinary user, as podman's rootless mode.
//
// Image layers hold files of many owners; a user may own only its own uid on the host. So, as
// podman does, the engine works inside a user namespace that maps root to the user and 1..N to
// the user's subordinate ids from /etc/subuid and /etc/subgid (newuidmap/newgidmap write the
// maps): there it is root over those ids. Layers are unpacked with their owners shifted into
// the subordinate range (a file of uid 33 is host uid SUB+32), the container's overlay is
// mounted in the namespace's own mount namespace (allowed since Linux 5.11, with `userxattr`),
// and the runtime creates each container in a user namespace nested in it with the identity
// map, so container ids are the namespace's ids and the files show with the image's owners.
//
// Unlike podman, which keeps one namespace alive in a pause process, each `pivot` command enters
// a fresh one (`unshare --user --mount`, util-linux) that ends with it: mounts never outlive the
// processes using them, and nothing stays behind. A detached container's monitor (conmon) keeps
// the namespace it was started in. Two namespaces of one user are siblings and have no
// capability over each other's namespaces, so the commands that reach into a running
// container's namespaces (exec, debug, top) run outside, as the plain user, who owns them all.
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { hostCgroups } from "../cgroups/hierarchy.ts";
import { Cgroup } from "../cgroups/manager.ts";
import type { IdMapping, Spec } from "../oci/spec.ts";
import {
  findProgram,
  inUserNamespace,
  parseIdMap,
  subordinateRanges,
  undelegatedCgroupDirs,
  userName,
} from "../runtime/userns.ts";
import { childProcess } from "../util/child-process.ts";
import { os } from "../util/lazy-require.ts";
import type { Engine } from "./engine.ts";
import { EngineError } from "./errors.ts";
import { checkPastaPorts, isPasta, pastaOptions } from "./pasta.ts";
import { checkSlirpPorts, isSlirp, slirpOptions } from "./slirp4netns.ts";
import type { ContainerOptions } from "./types.ts";

/** Set in the environment of the pivot process that runs in the user namespace. */
export const ROOTLESS_ENV = "_PIVOT_ROOTLESS";

/**
 * Whether the engine runs rootless: as a user other than root, or as root of the user namespace
 * a rootless pivot entered (and in the processes it starts: conmon, its exit command).
 */
export function isRootlessEngine(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((process.geteuid?.() ?? 0) !== 0) return true;
  return env[ROOTLESS_ENV] === "1" && inUserNamespace();
}

/** The host uid and gid of the caller: its own, or, in the user namespace, what root maps to. */
export function hostIds(): { uid: number; gid: number } {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  if (!inUserNamespace()) return { uid, gid };
  const outer = (file: string, id: number) =>
    parseIdMap(readFileSync(file, "utf8")).find((l) => id >= l.inner && id < l.inner + l.count);
  const u = outer("/proc/self/uid_map", uid);
  const g = outer("/proc/self/gid_map", gid);
  return {
    uid: u ? u.outer + uid - u.inner : uid,
    gid: g ? g.outer + gid - g.inner : gid,
  };
}

/**
 * Whether this process is rootless and outside the engine's user namespace: a plain user's
 * program using the library (`new Engine()`), or the CLI's own commands that run outside it
 * (exec, debug). The namespace cannot be entered from here: unshare(CLONE_NEWUSER) refuses a
 * multi-threaded process, which every Node and Bun process is.
 */
export function outsideUserNamespace(): boolean {
  return (process.geteuid?.() ?? 0) !== 0;
}

/**
 * The one error of an Engine method that needs the user namespace (it mounts, or reads or
 * writes files of the subordinate ids), called outside it: refused before it touches anything.
 */
export function needsUserNamespaceError(method: string): EngineError {
  return new EngineError(
    `Engine.${method} needs the rootless engine's user namespace, which this process is not in (a running Node or Bun process cannot enter one: it has threads)`,
    {
      hint: "run the program under `pivot unshare` (e.g. `pivot unshare bun app.ts`), which starts it in a user namespace as the pivot command does; or run the pivot command itself (`pivot create`, `pivot export`, ...)",
    },
  );
}

/**
 * The Engine members left to work outside the user namespace: an allow-list; every other method
 * is refused there (refuseOutsideUserNamespace). They only read (hasConmon, resolveId, inspect,
 * inspectDocker, list, which then only reads, logs, events, top, stats, listVolumes, inspectVolume;
 * images() is for reading there: writing a layer sets owners the user cannot), or were tested
 * outside it in engine-rootless-library.test.ts (exec, which the CLI runs outside too, stop,
 * kill, wait, rename, createVolume).
 */
export const OUTSIDE_USER_NAMESPACE_OK = [
  "hasConmon",
  // The network manager, reachable as before (a field then, a getter now that it is made on use).
  "networks",
  "images",
  "resolveId",
  "inspect",
  "inspectDocker",
  "list",
  "logs",
  "events",
  "top",
  "stats",
  "listVolumes",
  "inspectVolume",
  "exec",
  "stop",
  "kill",
  "wait",
  "rename",
  "createVolume",
] as const satisfies readonly (keyof Engine)[];

/**
 * The Engine methods refused outside the user namespace: they mount the container's overlay,
 * write or read files of the subordinate ids (which the plain user may not touch, or sees partly),
 * or compile the container's id maps from the namespace's; or they change a container and were
 * not tested outside it (attach, pause, unpause). A method in neither list is refused too;
 * engine-rootless.test.ts fails on it, so whoever adds one decides.
 */
export const NEEDS_USER_NAMESPACE = [
  "create",
  "dryRun",
  "start",
  // stop, then start, which needs the namespace
  "restart",
  "startAndAttach",
  "runAndAttach",
  "run",
  "startAttached",
  "cleanup",
  // a detached exec's exit command: the rootless engine runs its exec -d without conmon
  "execCleanup",
  "startRestartable",
  "remove",
  "recover",
  "archive",
  "extractArchive",
  "copyFrom",
  "copyTo",
  "export",
  "diff",
  "commit",
  "build",
  "healthcheckRun",
  "healthcheckTimer",
  "prune",
  "attach",
  "pruneVolumes",
  "removeVolume",
  "pause",
  "unpause",
  "update",
] as const satisfies readonly (keyof Engine)[];

/** Those of NEEDS_USER_NAMESPACE that return no promise: refused with a throw. */
const NEEDS_USER_NAMESPACE_SYNC: ReadonlySet<string> = new Set<
  (typeof NEEDS_USER_NAMESPACE)[number]
>(["pruneVolumes", "removeVolume", "pause", "unpause"]);

/**
 * Makes each method of `engine` not in OUTSIDE_USER_NAMESPACE_OK (Engine's own: its base class's
 * prototype) fail at once with needsUserNamespaceError (a rejected promise, or a throw for the
 * synchronous ones and getters), before it touches anything: outside the namespace they would
 * fail halfway (a mount refused after the container's directory was made, a removal stopped by
 * the first file of a subordinate id).
 */
export function refuseOutsideUserNamespace(engine: Engine): void {
  const allowed = new Set<string>(OUTSIDE_USER_NAMESPACE_OK);
  let proto = Object.getPrototypeOf(engine) as object;
  while (Object.getPrototypeOf(proto) !== Object.prototype) proto = Object.getPrototypeOf(proto);
  for (const method of Object.getOwnPropertyNames(proto)) {
    if (method === "constructor" || allowed.has(method)) continue;
    const d = Object.getOwnPropertyDescriptor(proto, method)!;
    const refused = () => {
      throw needsUserNamespaceError(method);
    };
    if (d.get || d.set) {
      Object.defineProperty(engine, method, { get: refused, set: refused, configurable: true });
    } else if (typeof d.value === "function") {
      Object.defineProperty(engine, method, {
        value: NEEDS_USER_NAMESPACE_SYNC.has(method)
          ? refused
          : () => Promise.reject(needsUserNamespaceError(method)),
        configurable: true,
      });
    }
  }
}

/**
 * The rootless engine's directories (podman: ~/.local/share/containers and
 * $XDG_RUNTIME_DIR/containers): images, containers and volumes in $XDG_DATA_HOME/pivot (default
 * ~/.local/share/pivot); run state in $XDG_RUNTIME_DIR/pivot, or /run/user/UID/pivot when that
 * directory is the user's. `runRoot` is null when neither exists (`rootlessRunRoot` explains).
 */
export function rootlessPaths(env: NodeJS.ProcessEnv = process.env): {
  root: string;
  runRoot: string | null;
} {
  const dataHome =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
      ? env.XDG_DATA_HOME
      : env.HOME
        ? join(env.HOME, ".local/share")
        : null;
  if (dataHome === null) {
    throw new EngineError("neither XDG_DATA_HOME nor HOME is set: no place for your images", {
      hint: "set HOME (or XDG_DATA_HOME), or pass --root DIR",
    });
  }
  const xdg = env.XDG_RUNTIME_DIR;
  let runRoot: string | null = null;
  if (xdg && isAbsolute(xdg)) runRoot = join(xdg, "pivot");
  else {
    const fallback = `/run/user/${hostIds().uid}`;
    try {
      if (statSync(fallback).uid === (process.geteuid?.() ?? 0)) runRoot = join(fallback, "pivot");
    } catch {}
  }
  return { root: join(dataHome, "pivot"), runRoot };
}

/** The run-state directory of a rootless engine, or an error saying how to get one. */
export function rootlessRunRoot(env: NodeJS.ProcessEnv = process.env): string {
  const { runRoot } = rootlessPaths(env);
  if (runRoot !== null) return runRoot;
  throw new EngineError(
    "XDG_RUNTIME_DIR is not set: a rootless pivot keeps its run state (runtime state, sockets) there",
    {
      hint: "set it to a directory only you can use, on a tmpfs if you can: mkdir -m 700 /tmp/run-$(id -u) && export XDG_RUNTIME_DIR=/tmp/run-$(id -u) (or pass --run-root DIR); logind sets it to /run/user/UID at login",
    },
  );
}

/**
 * The `unshare` command that runs ARGV in a new user and mount namespace mapping root to the
 * caller and 1..N to its first subordinate range, after checking what it needs: errors name the
 * missing piece and the command that adds it.
 */
export function userNamespaceCommand(
  argv: string[],
  readFile: (path: string) => string = (p) => readFileSync(p, "utf8"),
  find: (name: string) => string | null = findProgram,
): string[] {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  const name = userName(uid);
  const who = name ?? String(uid);
  const caller = name === undefined ? { uid, gid } : { uid, gid, name };
  for (const helper of ["newuidmap", "newgidmap"]) {
    if (!find(helper)) {
      throw new EngineError(
        `${helper} is not installed: a rootless pivot maps your subordinate ids (/etc/subuid, /etc/subgid) with it`,
        { hint: "as root: apt-get install uidmap (Debian and Ubuntu; shadow-utils elsewhere)" },
      );
    }
  }
  const unshare = find("unshare");
  if (!unshare) {
    throw new EngineError("unshare (util-linux) is not installed", {
      hint: "as root: apt-get install util-linux",
    });
  }
  const ranges: { file: string; start: number; count: number }[] = [];
  for (const file of ["/etc/subuid", "/etc/subgid"]) {
    let text = "";
    try {
      text = readFile(file);
    } catch {}
    const r = subordinateRanges(text, caller)[0];
    if (!r) {
      throw new EngineError(
        `${file} has no range for ${who}: a rootless container maps its users other than root to subordinate ids`,
        {
          hint: `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${who} (pick a range no other user has; see subuid(5))`,
        },
      );
    }
    ranges.push({ file, ...r });
  }
  const [u, g] = ranges as [(typeof ranges)[0], (typeof ranges)[0]];
  return [
    unshare,
    "--user",
    "--mount",
    "--map-root-user",
    `--map-users=${u.start},1,${u.count}`,
    `--map-groups=${g.start},1,${g.count}`,
    "--",
    ...argv,
  ];
}

/**
 * Runs the command `userNamespaceCommand` made (this program again), with stdio and signals passed
 * through, and returns its exit code. SIGINT from the terminal reaches both processes; the inner
 * one handles it, so it is not forwarded twice.
 */
export async function runInUserNamespace(command: string[]): Promise<number> {
  const [cmd, ...args] = command;
  const child = childProcess().spawn(cmd!, args, {
    stdio: "inherit",
    env: { ...process.env, [ROOTLESS_ENV]: "1" },
  });
  const forward = ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"] as const;
  const handlers = forward.map((sig) => {
    const h = () => {
      try {
        child.kill(sig);
      } catch {}
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  const ignoreInt = () => {};
  process.on("SIGINT", ignoreInt);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (code, signal) => {
        resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
      });
    });
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    process.off("SIGINT", ignoreInt);
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return os().constants.signals[signal] ?? 1;
}

/**
 * Creates the rootless engine's directories, the user's only (0700), before entering the user
 * namespace; existing ones must be the user's: a rootless pivot never works in anyone else's
 * state (root's /var/lib/pivot among them), whatever its permissions.
 */
export function ensurePrivateDirs(dirs: string[]): void {
  const uid = process.geteuid?.() ?? 0;
  for (const d of dirs) {
    try {
      if (!existsSync(d)) mkdirSync(d, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new EngineError(`cannot create ${d}: ${(err as NodeJS.ErrnoException).code}`, {
        hint: "a rootless pivot keeps its state in directories of yours: pass --root/--run-root to one you can write, or leave them out (~/.local/share/pivot, $XDG_RUNTIME_DIR/pivot)",
      });
    }
    const owner = statSync(d).uid;
    if (owner !== uid) {
      throw new EngineError(
        `${d} belongs to uid ${owner}, not to you (uid ${uid}): a rootless pivot works only in its own directories`,
        {
          hint: "leave out --root/--run-root (~/.local/share/pivot, $XDG_RUNTIME_DIR/pivot), or pass directories of yours; root's containers are root's (sudo pivot ...)",
        },
      );
    }
  }
}

/**
 * What a rootless container cannot have, refused before anything is created: networks (the CNI
 * bridge, its veths and iptables rules are the host's, root's) other than slirp4netns and pasta
 * (user-mode networking, slirp4netns.ts, pasta.ts), published ports without one of them or below
 * the first unprivileged port, and resource limits when the cgroups are not delegated (the
 * runtime would run it without a cgroup).
 */
export function checkRootlessOptions(options: ContainerOptions): void {
  const net = options.network ?? "none";
  const hint =
    "rootless containers get --network slirp4netns or --network pasta (user-mode networking; -p HOSTPORT:PORT publishes a port), none (loopback only, the default) or host; bridge networks need root: run it as root (sudo pivot ...)";
  const slirp = isSlirp(options);
  const pasta = isPasta(options);
  if (slirp) slirpOptions(net);
  else if (pasta) pastaOptions(net);
  else if (net !== "none" && net !== "host") {
    const what = net.startsWith("container:")
      ? `--network ${net}: joining another container's network namespace is not supported rootless`
      : `--network ${net}: a rootless container cannot join a network (it needs root for the CNI bridge, veth pairs and iptables)`;
    throw new EngineError(what, { hint });
  }
  const userMode = slirp || pasta;
  const networkOnly: [string, unknown, boolean][] = [
    ["-p/--publish", options.publish?.length ? options.publish : undefined, userMode],
    ["-P/--publish-all", options.publishAll || undefined, userMode],
    ["--ip", options.ip, false],
    ["--network-alias", options.networkAliases?.length ? options.networkAliases : undefined, false],
  ];
  for (const [flag, value, allowed] of networkOnly) {
    if (value !== undefined && !allowed) {
      throw new EngineError(
        slirp
          ? `${flag} needs a network, which a rootless container cannot join (slirp4netns gives every container 10.0.2.100)`
          : pasta
            ? `${flag} needs a network, which a rootless container cannot join (pasta gives the container the host's addresses)`
            : `${flag} needs a network, which a rootless container cannot join`,
        {
          hint: userMode
            ? `drop it; -p works with --network ${slirp ? "slirp4netns" : "pasta"}`
            : hint,
        },
      );
    }
  }
  if (slirp) checkSlirpPorts(options.publish ?? []);
  if (pasta) checkPastaPorts(options.publish ?? []);
  const limits: [string, unknown][] = [
    ["--memory", options.memory],
    ["--memory-swap", options.memorySwap],
    ["--cpus", options.cpus],
    ["--cpu-shares", options.cpuShares],
    ["--pids-limit", options.pidsLimit],
  ];
  const asked = limits.filter(([, v]) => v !== undefined).map(([f]) => f);
  if (asked.length === 0) return;
  const undelegated = undelegatedCgroupDirs(
    Cgroup.forContainer("pivot-rootless-probe", hostCgroups()).paths,
  );
  if (undelegated.length === 0) return;
  throw new EngineError(
    `${asked.join(", ")}: resource limits need a cgroup, and ${undelegated[0]} is not delegated to you, so a rootless container runs without one`,
    {
      hint: "drop the limit, run it as root, or delegate a cgroup v2 subtree to your user (systemd: Delegate=yes for user@.service)",
    },
  );
}

/**
 * The container's user namespace: nested in the engine's, with the identity map over every id
 * the engine's namespace has (root = the user, 1..N = its subordinate ids), so the image's owners
 * are the container's and device nodes are bound from the host instead of created.
 */
export function addRootlessUserNamespace(spec: Spec, hostNetwork: boolean): void {
  // One line per line of the engine's map: the kernel maps each range through a single one.
  const identity = (file: string): IdMapping[] =>
    parseIdMap(readFileSync(file, "utf8"))
      .sort((a, b) => a.inner - b.inner)
      .map((l) => ({ containerID: l.inner, hostID: l.inner, size: l.count }));
  const linux = spec.linux!;
  if (!linux.namespaces?.some((n) => n.type === "user")) {
    linux.namespaces = [{ type: "user" }, ...(linux.namespaces ?? [])];
  }
  linux.uidMappings = identity("/proc/self/uid_map");
  linux.gidMappings = identity("/proc/self/gid_map");
  // sysfs may be mounted only by a user namespace owning the network namespace: with the host's
  // network, /sys is the host's, bound read-only (as runc's rootless config does).
  if (hostNetwork) {
    for (const m of spec.mounts ?? []) {
      if (m.destination === "/sys" && m.type === "sysfs") {
        m.type = "bind";
        m.source = "/sys";
        m.options = ["rbind", "nosuid", "noexec", "nodev", "ro"];
      }
    }
  }
}

/**
 * The command that runs ARGV in the user namespace of the process `pid` (a running container's
 * monitor: conmon, or the attached pivot), staying in the host's mount namespace: `nsenter
 * --user --preserve-credentials` (util-linux; a multi-threaded process cannot join a user
 * namespace itself). The user owns that namespace (it is a child of the host's, made by a pivot
 * of theirs), so the kernel lets them in; it maps the same ids as every namespace the rootless
 * engine makes, so nothing is gained there that `pivot unshare` does not give.
 */
export function joinUserNamespaceCommand(
  pid: number,
  argv: string[],
  find: (name: string) => string | null = findProgram,
): string[] {
  const nsenter = find("nsenter");
  if (!nsenter) {
    throw new EngineError("nsenter (util-linux) is not installed", {
      hint: "as root: apt-get install util-linux; or stop the container first",
    });
  }
  return [nsenter, "--user", "--preserve-credentials", `--target=${pid}`, "--", ...argv];
}

/** Whether this process is in the user namespace of the process `pid`. */
export function inUserNamespaceOf(pid: number): boolean {
  try {
    const mine = statSync("/proc/self/ns/user");
    const theirs = statSync(`/proc/${pid}/ns/user`);
    return mine.dev === theirs.dev && mine.ino === theirs.ino;
  } catch {
    return false;
  }
}
