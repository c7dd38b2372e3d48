// pivot-runtime: an OCI runtime with runc's command line.

import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatError, PivotError } from "../errors.ts";
import type { Process } from "../oci/spec.ts";
import { OCI_VERSION } from "../oci/spec.ts";
import type { Plan } from "../runtime/plan.ts";
import { Runtime } from "../runtime/runtime.ts";
import { childProcess } from "../util/child-process.ts";
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
import { writeErr, writeOut } from "./output.ts";

/** --trace's tables, loaded only when asked for: every command would pay for them. */
const traceModule = () => import("../runtime/trace.ts");

const GLOBAL_FLAGS: FlagSpec[] = [
  { name: "root", value: true },
  { name: "log", value: true },
  { name: "log-format", value: true },
  { name: "debug" },
  { name: "systemd-cgroup" },
  { name: "rootless", value: true },
  { name: "criu", value: true },
  { name: "help", aliases: ["h"] },
  { name: "version", aliases: ["v"] },
  { name: "trace" },
];

const CREATE_FLAGS: FlagSpec[] = [
  { name: "bundle", aliases: ["b"], value: true },
  { name: "pid-file", value: true },
  { name: "console-socket", value: true },
  { name: "no-pivot" },
  { name: "no-new-keyring" },
  { name: "preserve-fds", value: true },
  { name: "detach", aliases: ["d"] },
  { name: "keep" },
  { name: "no-subreaper" },
  { name: "dry-run" },
  { name: "format", aliases: ["f"], value: true },
  { name: "trace" },
];

const EXEC_FLAGS: FlagSpec[] = [
  { name: "process", aliases: ["p"], value: true },
  { name: "tty", aliases: ["t"] },
  { name: "console-socket", value: true },
  { name: "detach", aliases: ["d"] },
  { name: "pid-file", value: true },
  { name: "cwd", value: true },
  { name: "env", aliases: ["e"], value: true, multiple: true },
  { name: "user", aliases: ["u"], value: true },
  { name: "additional-gids", aliases: ["g"], value: true, multiple: true },
  { name: "cap", aliases: ["c"], value: true, multiple: true },
  { name: "no-new-privs" },
  { name: "preserve-fds", value: true },
  { name: "process-label", value: true },
  { name: "apparmor", value: true },
  { name: "cgroup", value: true, multiple: true },
  { name: "ignore-paused" },
];

const USAGE = `pivot-runtime ${PIVOT_VERSION}: an OCI container runtime (runc-compatible command line)

usage: pivot-runtime [global flags] COMMAND [flags] [args]

commands:
  create ID   create a container from a bundle (--bundle, --pid-file, --console-socket, --no-pivot, --preserve-fds)
              --dry-run [--format text|json|shell] prints the launch plan instead of running it
              --trace prints where the time goes, step by step, to stderr (also on run)
  start ID    start the process of a created container
  run ID      create, start and wait (--detach to return at once); exits with the process's code
  state ID    print the container's state as JSON
  kill ID [SIGNAL]   send a signal (default TERM; --all for every process)
  delete ID   remove a stopped container (--force: any container)
  exec ID CMD...     run a process in the container (--process FILE, --tty, --detach, --env, --cwd, --user, --cap)
  list        list containers (--format json, --quiet)
  ps ID       list the container's processes (--format json)
  pause ID / resume ID   freeze and thaw the container
  update ID   change resource limits (--resources FILE|-, --memory, --memory-swap, --cpu-quota, --cpu-period, --cpu-share, --cpuset-cpus, --pids-limit, ...)
  events ID   resource usage as JSON: once with --stats, else every --interval (default 5s) with OOM events
  spec        write a default config.json (--rootless, --bundle)
  features    print the features this runtime supports, as JSON
  debug mounts ID [--format json]   the container's mount tree, each mount with its origin in the
              config (root.path, mounts[i], devices, masked and read-only paths)

global flags: --root DIR (default /run/pivot-runtime; not root: $XDG_RUNTIME_DIR/pivot-runtime), --log FILE, --log-format text|json, --debug,
  --trace (a table of wall times per step, to stderr)
`;

class Logger {
  constructor(
    private readonly file: string | undefined,
    private readonly format: string,
    private readonly debugEnabled: boolean,
  ) {}

  private write(level: string, msg: string): void {
    if (!this.file) return;
    const time = new Date().toISOString();
    const line =
      this.format === "json"
        ? JSON.stringify({ level, msg, time })
        : `time="${time}" level=${level} msg=${JSON.stringify(msg)}`;
    try {
      appendFileSync(this.file, `${line}\n`);
    } catch {
      // Logging must never make a command fail.
    }
  }

  error(msg: string): void {
    this.write("error", msg);
  }
  warn(msg: string): void {
    this.write("warning", msg);
    writeErr(`pivot-runtime: warning: ${msg}\n`);
  }
  debug(msg: string): void {
    if (this.debugEnabled) this.write("debug", msg);
  }
}

function needId(p: Parsed, command: string): string {
  const id = p.positionals[0];
  if (id === undefined)
    throw new UsageError(`${command} needs a container id`, {
      hint: `usage: pivot-runtime ${command} ID`,
    });
  return id;
}

function parseUser(value: string): { uid: number; gid: number } {
  const [u, g] = value.split(":");
  if (!/^\d+$/.test(u ?? "") || (g !== undefined && !/^\d+$/.test(g))) {
    throw new UsageError(`--user "${value}" must be UID[:GID] in numbers`);
  }
  return { uid: Number(u), gid: g === undefined ? 0 : Number(g) };
}

/** The process for `exec`: from --process FILE, else the container's own process with the command and flags applied. */
function execProcess(p: Parsed, runtime: Runtime, id: string): Process {
  const file = flag(p, "process");
  if (file) {
    const text = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
    try {
      return JSON.parse(text) as Process;
    } catch (err) {
      throw new PivotError(`--process ${file} is not valid JSON (${(err as Error).message})`);
    }
  }
  if (p.rest.length === 0) throw new UsageError("exec needs a command, or --process FILE");
  const base = runtime.store.load(id).spec.process;
  const proc: Process = {
    terminal: boolFlag(p, "tty"),
    user: { uid: base?.user.uid ?? 0, gid: base?.user.gid ?? 0 },
    args: p.rest,
    env: [...(base?.env ?? []), ...(p.flags.get("env") ?? [])],
    cwd: flag(p, "cwd") ?? base?.cwd ?? "/",
    noNewPrivileges: boolFlag(p, "no-new-privs") || (base?.noNewPrivileges ?? false),
  };
  if (base?.capabilities) proc.capabilities = structuredClone(base.capabilities);
  const user = flag(p, "user");
  if (user) proc.user = parseUser(user);
  const gids = p.flags.get("additional-gids");
  if (gids) proc.user.additionalGids = gids.map(Number);
  for (const cap of p.flags.get("cap") ?? []) {
    proc.capabilities = proc.capabilities ?? {};
    const caps = proc.capabilities;
    for (const set of ["bounding", "effective", "permitted", "ambient"] as const) {
      caps[set] = [...(caps[set] ?? []), cap];
    }
  }
  return proc;
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows)
    writeOut(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 4))).join("")}\n`);
}

/** --dry-run output: numbered steps, JSON, or an equivalent shell script. */
async function renderPlan(plan: Plan, format: string, title: string): Promise<string> {
  const { renderPlanJson, renderPlanShell, renderPlanText } = await import("../runtime/explain.ts");
  if (format === "json") return renderPlanJson(plan);
  if (format === "shell") return renderPlanShell(plan, title);
  if (format === "text") return renderPlanText(plan);
  throw new UsageError(`unknown --format "${format}"`, { hint: "use text, json or shell" });
}

export async function main(argv: string[]): Promise<number> {
  const mainAt = performance.now();
  const global = parseArgs(argv, GLOBAL_FLAGS, 1);
  const log = new Logger(
    flag(global, "log"),
    flag(global, "log-format") ?? "text",
    boolFlag(global, "debug"),
  );
  if (boolFlag(global, "version")) {
    writeOut(`pivot-runtime version ${PIVOT_VERSION}\nspec: ${OCI_VERSION}\n`);
    return 0;
  }
  const command = global.positionals[0];
  if (!command || boolFlag(global, "help") || command === "help") {
    writeOut(USAGE);
    return command || boolFlag(global, "help") ? 0 : 1;
  }
  const args = global.rest;
  // --trace: a global flag, or one of create's and run's.
  const trace =
    boolFlag(global, "trace") ||
    ((command === "create" || command === "run") && args.includes("--trace"))
      ? new (await traceModule()).Trace(mainAt)
      : undefined;
  const runtime = new Runtime({
    ...(flag(global, "root") ? { root: flag(global, "root")! } : {}),
    warn: (m) => log.warn(m),
    ...(trace ? { trace } : {}),
  });
  log.debug(`${command} ${args.join(" ")}`);
  try {
    if (boolFlag(global, "systemd-cgroup")) {
      const { checkSystemdCgroupFlag } = await import("./cgroups.ts");
      checkSystemdCgroupFlag(true, command);
    }
    return await dispatch(command, args, runtime);
  } catch (err) {
    const message = formatError(err);
    log.error(message.split("\n")[0]!);
    writeErr(`pivot-runtime: ${message}\n`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    if (trace) {
      trace.mark(`${command} done`);
      writeErr(trace.render(`pivot-runtime --trace ${command}`));
    }
  }
}

async function dispatch(command: string, args: string[], runtime: Runtime): Promise<number> {
  switch (command) {
    case "create":
    case "run": {
      const p = parseArgs(args, CREATE_FLAGS);
      const id = needId(p, command);
      const options = {
        bundle: flag(p, "bundle") ?? process.cwd(),
        ...(flag(p, "pid-file") ? { pidFile: flag(p, "pid-file")! } : {}),
        ...(flag(p, "console-socket") ? { consoleSocket: flag(p, "console-socket")! } : {}),
        noPivot: boolFlag(p, "no-pivot"),
        noNewKeyring: boolFlag(p, "no-new-keyring"),
        preserveFds: intFlag(p, "preserve-fds") ?? 0,
      };
      if (boolFlag(p, "dry-run")) {
        const { plan } = await runtime.planContainer(id, options, command === "run");
        writeOut(
          await renderPlan(
            plan,
            flag(p, "format") ?? "text",
            `container ${id}, bundle ${options.bundle}`,
          ),
        );
        return 0;
      }
      if (command === "create") {
        await runtime.create(id, options);
        return 0;
      }
      return await runtime.run(id, { ...options, detach: boolFlag(p, "detach") });
    }
    case "start":
      await runtime.start(needId(parseArgs(args, []), command));
      return 0;
    case "state": {
      // The runtime-spec state plus what runc and crun print beside it (rootfs, created, owner,
      // pid 0 once stopped): clients decode this output into runc's struct.
      const record = runtime.store.load(needId(parseArgs(args, []), command));
      const { annotations, ...state } = runtime.stateOf(record);
      const out = {
        ...state,
        pid: state.pid ?? 0,
        rootfs: record.rootfs,
        created: record.created,
        owner: "",
        ...(annotations ? { annotations } : {}),
      };
      writeOut(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }
    case "kill": {
      const p = parseArgs(args, [
        { name: "all", aliases: ["a"] },
        { name: "signal", value: true },
      ]);
      runtime.kill(needId(p, command), p.positionals[1] ?? "SIGTERM", boolFlag(p, "all"));
      return 0;
    }
    case "delete": {
      const p = parseArgs(args, [{ name: "force", aliases: ["f"] }]);
      await runtime.delete(needId(p, command), boolFlag(p, "force"));
      return 0;
    }
    case "list": {
      const p = parseArgs(args, [
        { name: "format", aliases: ["f"], value: true },
        { name: "quiet", aliases: ["q"] },
      ]);
      const all = runtime.list();
      if (boolFlag(p, "quiet")) {
        for (const c of all) writeOut(`${c.state.id}\n`);
      } else if (flag(p, "format") === "json") {
        const out = all.map(({ record, state }) => ({
          ociVersion: state.ociVersion,
          id: state.id,
          pid: state.pid ?? 0,
          status: state.status,
          bundle: state.bundle,
          rootfs: record.rootfs,
          created: record.created,
          annotations: state.annotations ?? {},
          owner: "root",
        }));
        writeOut(`${JSON.stringify(out)}\n`);
      } else {
        const rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]];
        for (const { record, state } of all) {
          rows.push([
            state.id,
            String(state.pid ?? 0),
            state.status,
            state.bundle,
            record.created,
            "root",
          ]);
        }
        printTable(rows);
      }
      return 0;
    }
    case "ps": {
      const p = parseArgs(args, [{ name: "format", aliases: ["f"], value: true }], 1);
      const id = needId(p, command);
      const pids = runtime.pids(id);
      if (flag(p, "format") === "json") {
        writeOut(`${JSON.stringify(pids)}\n`);
        return 0;
      }
      const psArgs = p.rest.length ? p.rest : ["-ef"];
      const ps = childProcess().spawnSync("ps", psArgs, { encoding: "utf8" });
      if (ps.status !== 0)
        throw new PivotError(`ps ${psArgs.join(" ")} failed: ${ps.stderr.trim()}`);
      const lines = ps.stdout.split("\n");
      const header = lines[0] ?? "";
      const pidColumn = header.trim().split(/\s+/).indexOf("PID");
      writeOut(`${header}\n`);
      for (const line of lines.slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (pidColumn >= 0 && pids.includes(Number(cols[pidColumn]))) writeOut(`${line}\n`);
      }
      return 0;
    }
    case "exec": {
      const p = parseArgs(args, EXEC_FLAGS, 1);
      const id = needId(p, command);
      const proc = execProcess(p, runtime, id);
      const result = await runtime.exec(id, {
        process: proc,
        detach: boolFlag(p, "detach"),
        ...(flag(p, "pid-file") ? { pidFile: flag(p, "pid-file")! } : {}),
        ...(flag(p, "console-socket") ? { consoleSocket: flag(p, "console-socket")! } : {}),
        preserveFds: intFlag(p, "preserve-fds") ?? 0,
      });
      return result.exitCode;
    }
    case "pause":
      runtime.pause(needId(parseArgs(args, []), command));
      return 0;
    case "resume":
      runtime.resume(needId(parseArgs(args, []), command));
      return 0;
    case "spec": {
      const p = parseArgs(args, [
        { name: "bundle", aliases: ["b"], value: true },
        { name: "rootless" },
      ]);
      const target = join(flag(p, "bundle") ?? process.cwd(), "config.json");
      if (existsSync(target))
        throw new PivotError(`${target} already exists`, {
          hint: "remove it first, or pass another --bundle",
        });
      writeFileSync(
        target,
        `${JSON.stringify((await import("../oci/default-spec.ts")).defaultSpec({ rootless: boolFlag(p, "rootless") }), null, 2)}\n`,
      );
      return 0;
    }
    case "features": {
      const { features } = await import("../runtime/features.ts");
      writeOut(`${JSON.stringify(features(), null, 2)}\n`);
      return 0;
    }
    case "debug": {
      const p = parseArgs(args.slice(1), [{ name: "format", aliases: ["f"], value: true }]);
      if (args[0] !== "mounts") {
        throw new UsageError(`unknown debug command "${args[0] ?? ""}"`, {
          hint: "usage: pivot-runtime debug mounts ID",
        });
      }
      const id = needId(p, "debug mounts");
      const { containerMountReport, liveContainer } = await import("../runtime/debug.ts");
      const { renderMountReport } = await import("../runtime/provenance.ts");
      const record = liveContainer(runtime, id, "show the mounts");
      const report = containerMountReport(record);
      writeOut(
        flag(p, "format") === "json"
          ? `${JSON.stringify(report, null, 2)}\n`
          : renderMountReport(
              report,
              `mounts of container ${id}, as its init (pid ${record.pid}) sees them:`,
            ),
      );
      return 0;
    }
    case "update":
      return (await import("./cgroups.ts")).updateCommand(args, runtime);
    case "events":
      return await (await import("./cgroups.ts")).eventsCommand(args, runtime);
    case "checkpoint":
    case "restore":
      throw new PivotError(`"${command}" is not supported yet`);
    default:
      throw new UsageError(`unknown command "${command}"`, {
        hint: "run `pivot-runtime --help` for the list of commands",
      });
  }
}
