// `pivot events` and Engine.events(): what happens to containers, recorded by every pivot process
// and read back live or from --since. Root, real containers under conmon and attached.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import { withFileLock } from "../../src/image/lock.ts";
import { IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine;

beforeAll(async () => {
  if (!isRoot || !hasConmon) return;
  t = await makeTestEngine();
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
}, 120_000);

afterEach(() => {
  if (!t) return;
  const ids = pivot(["ps", "-aq"]).stdout.split("\n").filter(Boolean);
  if (ids.length) pivot(["rm", "-f", ...ids]);
}, 60_000);

const pivot = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

/** `pivot events` replaying what was recorded from SINCE until now, with more flags. */
const recorded = (since: string, ...flags: string[]) =>
  pivot(["events", "--since", since, "--until", "0s", ...flags]);

interface Event {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  status?: string;
  timeNano: number;
}

/** `pivot events ARGS --format json` in the background; `stop()` ends it and returns its events. */
function follow(args: string[] = []) {
  const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, "events", "--format", "json", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  return {
    /** Waits until `count` events have come (or 20 s), then ends the follower. */
    async stop(count: number): Promise<Event[]> {
      for (let i = 0; i < 400 && out.split("\n").filter(Boolean).length < count; i++)
        await Bun.sleep(50);
      child.kill("SIGTERM");
      await exited;
      expect(err).toBe("");
      return out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Event);
    },
  };
}

/** A command that exits (0) on SIGTERM, at once: not PID 1's default of ignoring it. */
const EXITS_ON_TERM = ["sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"];

/** The state.json of container ID's last run. */
const runState = (id: string): { runId: string; monitorPid: number } =>
  JSON.parse(readFileSync(join(t.root, "containers", id, "state.json"), "utf8"));

/** Waits (10 s at most) for conmon of NAME's last run to exit: it waits for its exit hook. */
function exitHookDone(name: string): void {
  const id = pivot(["inspect", "-f", "{{.Id}}", name]).stdout.trim();
  const stat = `/proc/${runState(id).monitorPid}/stat`;
  const alive = () => existsSync(stat) && !/\) [ZX] /.test(readFileSync(stat, "utf8"));
  for (let i = 0; i < 200 && alive(); i++) Bun.sleepSync(50);
  expect(alive()).toBe(false);
}

/** NAME's events recorded since SINCE: each action, with its signal or exit code if any. */
const runEvents = (since: string, name: string) =>
  recorded(
    since,
    "--filter",
    `container=${name}`,
    "--format",
    "{{.Action}}{{with .Actor.Attributes.signal}} {{.}}{{end}}{{with .Actor.Attributes.exitCode}} {{.}}{{end}}",
  )
    .stdout.split("\n")
    .filter(Boolean);

/**
 * NAME's exec events since SINCE, as [action, execID, exitCode], once COUNT have come (10 s at
 * most: a detached exec's exec_die comes from conmon's exit command).
 */
function execEvents(since: string, name: string, count: number): string[][] {
  let rows: string[][] = [];
  for (let i = 0; i < 200; i++) {
    rows = recorded(
      since,
      "--filter",
      `container=${name}`,
      "--filter",
      "event=exec_create",
      "--filter",
      "event=exec_start",
      "--filter",
      "event=exec_die",
      "--format",
      "{{.Action}}|{{.Actor.Attributes.execID}}|{{.Actor.Attributes.exitCode}}",
    )
      .stdout.split("\n")
      .filter(Boolean)
      .map((l) => l.split("|"));
    if (rows.length >= count) break;
    Bun.sleepSync(50);
  }
  return rows;
}

/** The exec directories left in NAME's container directory, after 5 s at most for them to go. */
function execDirsLeft(name: string): string[] {
  const id = pivot(["inspect", "-f", "{{.Id}}", name]).stdout.trim();
  const dir = join(t.root, "containers", id, "exec");
  const left = () => (existsSync(dir) ? readdirSync(dir) : []);
  for (let i = 0; i < 100 && left().length > 0; i++) Bun.sleepSync(50);
  return left();
}

/** The pids of the conmons whose command line names EXECID (an exec's, by its -u). */
function conmonsOf(execId: string): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
        return argv[0]?.endsWith("conmon") && argv.includes(execId);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Whether every conmon of EXECID has exited (5 s at most). */
function conmonsGone(execId: string): boolean {
  for (let i = 0; i < 100 && conmonsOf(execId).length > 0; i++) Bun.sleepSync(50);
  return conmonsOf(execId).length === 0;
}

/** The actions of one container's events, in order. */
const actionsOf = (events: Event[], name: string) =>
  events.filter((e) => e.Actor.Attributes.name === name).map((e) => e.Action);

describe.skipIf(!isRoot || !hasConmon)("pivot events", () => {
  test("a container's life, live: attached --rm, detached with pause, rename, stop and rm", async () => {
    // Before the follower: recorded, but not for a reader of what is to come.
    expect(pivot(["run", "--rm", "--name", "ev-before", IMAGE, "true"]).status).toBe(0);
    const f = follow();
    await Bun.sleep(1000); // the follower is reading the file's end by then
    expect(pivot(["run", "--rm", "--name", "ev-once", IMAGE, "sh", "-c", "exit 4"]).status).toBe(4);
    expect(pivot(["run", "-d", "--name", "ev-long", IMAGE, "sleep", "60"]).status).toBe(0);
    for (const cmd of [["pause"], ["unpause"], ["rename", "ev-long"]]) {
      const [verb, ...rest] = cmd as [string, ...string[]];
      const args = verb === "rename" ? [verb, ...rest, "ev-renamed"] : [verb, "ev-long"];
      expect(pivot(args).status).toBe(0);
    }
    expect(pivot(["stop", "-t", "1", "ev-renamed"]).status).toBe(0);
    expect(pivot(["wait", "ev-renamed"]).status).toBe(0);
    expect(pivot(["rm", "ev-renamed"]).status).toBe(0);
    const events = await f.stop(14);
    expect(actionsOf(events, "ev-before")).toEqual([]);
    expect(actionsOf(events, "ev-once")).toEqual(["create", "start", "die", "destroy"]);
    const once = events.filter((e) => e.Actor.Attributes.name === "ev-once");
    expect(once.find((e) => e.Action === "die")?.Actor.Attributes.exitCode).toBe("4");
    expect(once.every((e) => e.Type === "container" && e.Actor.Attributes.image === IMAGE)).toBe(
      true,
    );
    expect(once.every((e) => e.status === e.Action)).toBe(true); // Docker's legacy fields
    expect(actionsOf(events, "ev-long")).toEqual(["create", "start", "pause", "unpause"]);
    const renamed = actionsOf(events, "ev-renamed");
    // sleep ignores SIGTERM as PID 1: the stop kills it after the timeout, then its die, stop.
    expect(renamed).toEqual(["rename", "kill", "kill", "die", "stop", "destroy"]);
    const kills = events.filter((e) => e.Action === "kill").map((e) => e.Actor.Attributes.signal);
    expect(kills).toEqual(["15", "9"]);
    const rename = events.find((e) => e.Action === "rename");
    expect(rename?.Actor.Attributes.oldName).toBe("ev-long");
    // In the order they happened.
    const times = events.map((e) => e.timeNano);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  }, 90_000);

  test("rm -f of a running container: kill (9), die (137), destroy, as Docker's; once each", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-rmf", IMAGE, "sleep", "60"]).status).toBe(0);
    expect(pivot(["rm", "-f", "ev-rmf"]).status).toBe(0);
    Bun.sleepSync(500); // conmon's exit hook, had it anything to report
    const lines = recorded(
      started,
      "--filter",
      "container=ev-rmf",
      "--format",
      "{{.Action}} {{.Actor.Attributes.signal}} {{.Actor.Attributes.exitCode}}",
    ).stdout;
    expect(lines).toBe(
      "create <no value> <no value>\nstart <no value> <no value>\nkill 9 <no value>\ndie <no value> 137\ndestroy <no value> <no value>\n",
    );
  }, 60_000);

  test("restart: kill, die, stop, start, then restart, as Docker's, every time", () => {
    for (let i = 0; i < 5; i++) {
      const started = new Date().toISOString();
      const name = `ev-restart-${i}`;
      expect(pivot(["run", "-d", "--name", name, IMAGE, ...EXITS_ON_TERM]).status).toBe(0);
      expect(pivot(["restart", name]).status).toBe(0);
      // The first run's exit hook, had it a die of its own to report, has by the next run's.
      expect(pivot(["kill", name]).status).toBe(0);
      exitHookDone(name);
      expect(runEvents(started, name)).toEqual([
        "create",
        "start",
        "kill 15",
        "die 0",
        "stop",
        "start",
        "restart",
        "kill 9",
        "die 137",
      ]);
    }
  }, 90_000);

  test("stop: kill (15), die, then stop, as Docker's, every time; one die per run", () => {
    for (let i = 0; i < 10; i++) {
      const started = new Date().toISOString();
      const name = `ev-stop-${i}`;
      expect(pivot(["run", "-d", "--name", name, IMAGE, ...EXITS_ON_TERM]).status).toBe(0);
      expect(pivot(["stop", name]).status).toBe(0);
      // Reported by whichever of stop and the exit hook came first; never by both.
      exitHookDone(name);
      expect(runEvents(started, name)).toEqual(["create", "start", "kill 15", "die 0", "stop"]);
    }
  }, 120_000);

  test("stop of a container that ignores its stop signal: kill 15, kill 9, die 137, stop", () => {
    const started = new Date().toISOString();
    const ignores = ["sh", "-c", 'trap "" TERM; sleep 60'];
    expect(pivot(["run", "-d", "--name", "ev-deaf", IMAGE, ...ignores]).status).toBe(0);
    expect(pivot(["stop", "-t", "1", "ev-deaf"]).status).toBe(0);
    exitHookDone("ev-deaf");
    expect(runEvents(started, "ev-deaf")).toEqual([
      "create",
      "start",
      "kill 15",
      "kill 9",
      "die 137",
      "stop",
    ]);
  }, 60_000);

  test("stop reports the die itself when the exit hook is late, and the hook does not repeat it", async () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-late", IMAGE, ...EXITS_ON_TERM]).status).toBe(0);
    const id = pivot(["inspect", "-f", "{{.Id}}", "ev-late"]).stdout.trim();
    // The exit hook cleans up under the container's lock: held here, the hook waits for it.
    await withFileLock(join(t.root, "locks", `container-${id}.lock`), async () => {
      expect(pivot(["stop", "ev-late"]).status).toBe(0);
      expect(runEvents(started, "ev-late")).toEqual([
        "create",
        "start",
        "kill 15",
        "die 0",
        "stop",
      ]);
    });
    exitHookDone("ev-late");
    expect(runEvents(started, "ev-late")).toEqual(["create", "start", "kill 15", "die 0", "stop"]);
  }, 60_000);

  test("stop that loses the run's end to the exit hook waits for the hook's die before its stop", async () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-second", IMAGE, ...EXITS_ON_TERM]).status).toBe(0);
    const id = pivot(["inspect", "-f", "{{.Id}}", "ev-second"]).stdout.trim();
    const dir = join(t.root, "containers", id);
    const { runId } = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as {
      runId: string;
    };
    // The exit hook's claim, made first and not yet written: what the CI once raced into.
    const mark = join(dir, `ended-${runId}`);
    writeFileSync(mark, "");
    const stopping = spawn(BUN, [PIVOT_CLI, "--root", t.root, "stop", "ev-second"], {
      stdio: "ignore",
    });
    const stopped = new Promise<number | null>((res) => stopping.on("exit", res));
    await Bun.sleep(800);
    const written = Date.now() * 1e6;
    writeFileSync(mark, "reported\n"); // the claimer has written its die (here: nothing)
    expect(await stopped).toBe(0);
    const events = JSON.parse(
      `[${recorded(started, "--filter", "container=ev-second", "--format", "json").stdout.trim().split("\n").join(",")}]`,
    ) as Event[];
    const stop = events.find((e) => e.Action === "stop");
    expect(stop).toBeDefined();
    expect(stop!.timeNano).toBeGreaterThanOrEqual(written);
  }, 60_000);

  test("--since replays what was recorded, --until ends the command; filters and formats", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "--rm", "--name", "ev-past", "-l", "team=a", IMAGE, "true"]).status).toBe(
      0,
    );
    expect(pivot(["run", "--rm", "--name", "ev-other", IMAGE, "true"]).status).toBe(0);
    const past = (args: string[]) => recorded(started, ...args);
    const byName = past(["--filter", "container=ev-past", "--format", "{{.Action}}"]);
    expect(byName).toEqual({ status: 0, stdout: "create\nstart\ndie\ndestroy\n", stderr: "" });
    const dies = past(["--filter", "event=die", "--format", "{{.Actor.Attributes.name}}"]);
    expect(dies.stdout).toBe("ev-past\nev-other\n");
    const labelled = past([
      "--filter",
      "label=team=a",
      "--filter",
      "event=start",
      "--format",
      "{{.ID}}",
    ]);
    expect(labelled.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
    const anyTeam = past([
      "--filter",
      "label=team",
      "--filter",
      "event=create",
      "--format",
      "{{.Actor.Attributes.name}}",
    ]);
    expect(anyTeam.stdout).toBe("ev-past\n");
    // Docker's default line: time, type, action, id, sorted attributes.
    const line = past(["--filter", "container=ev-past", "--filter", "event=create"]).stdout;
    expect(line).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d container create [0-9a-f]{64} \(image=localhost\/busybox:test, name=ev-past, team=a\)\n$/,
    );
    expect(past(["--filter", "type=volume"]).stdout).toBe("");
  }, 60_000);

  test("Engine.events(): the library reads the same events, and stops when the caller does", async () => {
    const since = new Date();
    expect(pivot(["run", "--rm", "--name", "ev-lib", IMAGE, "true"]).status).toBe(0);
    const seen: string[] = [];
    for await (const e of t.engine.events({ since, filters: { container: ["ev-lib"] } })) {
      seen.push(e.Action);
      if (e.Action === "destroy") break; // a following reader ends when its caller stops
    }
    expect(seen).toEqual(["create", "start", "die", "destroy"]);
  }, 60_000);

  test("volumes, networks and images have their events too", () => {
    const started = new Date().toISOString();
    expect(pivot(["volume", "create", "ev-vol"]).status).toBe(0);
    expect(pivot(["volume", "rm", "ev-vol"]).status).toBe(0);
    expect(pivot(["network", "create", "ev-net"]).status).toBe(0);
    const run = pivot(["run", "--rm", "--network", "ev-net", IMAGE, "true"]);
    expect(run.status).toBe(0);
    expect(pivot(["network", "rm", "ev-net"]).status).toBe(0);
    expect(pivot(["tag", IMAGE, "localhost/ev-image:1"]).status).toBe(0);
    expect(pivot(["rmi", "localhost/ev-image:1"]).status).toBe(0);
    const past = (type: string) =>
      recorded(
        started,
        "--filter",
        `type=${type}`,
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
      ).stdout;
    // A volume's attributes have no name (Docker's: the driver): Go's <no value> for the key.
    expect(past("volume").split("\n").filter(Boolean)).toEqual([
      "create <no value>",
      "destroy <no value>",
    ]);
    expect(past("network").split("\n").filter(Boolean)).toEqual([
      "create ev-net",
      "connect ev-net",
      "disconnect ev-net",
      "destroy ev-net",
    ]);
    expect(past("image").split("\n").filter(Boolean)).toEqual([
      "tag localhost/ev-image:1",
      "untag localhost/ev-image:1",
    ]);
    // The actor of a volume event is its name; of an image event, the image's id.
    const ids = recorded(
      started,
      "--filter",
      "type=volume",
      "--filter",
      "type=image",
      "--format",
      "{{.Type}} {{.Actor.ID}}",
    ).stdout;
    expect(ids).toContain("volume ev-vol\n");
    const imageId = pivot(["image", "inspect", "-f", "{{.Id}}", IMAGE]).stdout.trim();
    expect(ids).toContain(`image ${imageId}\n`);
  }, 60_000);

  test("exec: exec_create and exec_start name the command, exec_die has its exit code, one execID", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-exec", IMAGE, "sleep", "60"]).status).toBe(0);
    expect(pivot(["exec", "ev-exec", "sh", "-c", "exit 7"]).status).toBe(7);
    expect(pivot(["exec", "ev-exec", "true"]).status).toBe(0);
    const r = recorded(
      started,
      "--filter",
      "container=ev-exec",
      "--filter",
      "event=exec_create",
      "--filter",
      "event=exec_start",
      "--filter",
      "event=exec_die",
      "--format",
      "{{.Action}}|{{.Actor.Attributes.execID}}|{{.Actor.Attributes.exitCode}}",
    );
    const rows = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.split("|"));
    expect(rows.map((x) => x[0])).toEqual([
      "exec_create: sh -c exit 7",
      "exec_start: sh -c exit 7",
      "exec_die",
      "exec_create: true",
      "exec_start: true",
      "exec_die",
    ]);
    expect(new Set(rows.slice(0, 3).map((x) => x[1])).size).toBe(1);
    expect(rows[0]![1]).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[2]![2]).toBe("7");
  }, 60_000);

  test("exec -d: exec_die when the process ends, its exit code, one execID; its directory goes", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-execd", IMAGE, "sleep", "60"]).status).toBe(0);
    const r = pivot(["exec", "-d", "ev-execd", "sh", "-c", "exit 3"]);
    expect([r.status, r.stdout, r.stderr]).toEqual([0, "", ""]);
    const rows = execEvents(started, "ev-execd", 3);
    expect(rows.map((x) => x[0])).toEqual([
      "exec_create: sh -c exit 3",
      "exec_start: sh -c exit 3",
      "exec_die",
    ]);
    expect(new Set(rows.map((x) => x[1])).size).toBe(1);
    expect(rows[2]![2]).toBe("3");
    expect(execDirsLeft("ev-execd")).toEqual([]);
  }, 60_000);

  test("exec -d of a long sleep, the container stopped: its exec_die (137), no conmon or directory left", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-execstop", IMAGE, ...EXITS_ON_TERM]).status).toBe(0);
    expect(pivot(["exec", "-d", "ev-execstop", "sleep", "300"]).status).toBe(0);
    const execId = execEvents(started, "ev-execstop", 2)[0]![1]!;
    expect(conmonsOf(execId).length).toBe(1); // the exec's monitor, holding the sleep
    expect(pivot(["stop", "ev-execstop"]).status).toBe(0);
    const die = execEvents(started, "ev-execstop", 3)[2]!;
    expect(die).toEqual(["exec_die", execId, "137"]);
    expect(execDirsLeft("ev-execstop")).toEqual([]);
    expect(conmonsGone(execId)).toBe(true);
  }, 60_000);

  test("rm -f with an exec -d running: no conmon of the exec is left", () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-execrm", IMAGE, "sleep", "60"]).status).toBe(0);
    expect(pivot(["exec", "-d", "ev-execrm", "sleep", "300"]).status).toBe(0);
    const execId = execEvents(started, "ev-execrm", 2)[0]![1]!;
    expect(conmonsOf(execId).length).toBe(1);
    expect(pivot(["rm", "-f", "ev-execrm"]).status).toBe(0);
    expect(conmonsGone(execId)).toBe(true);
  }, 60_000);

  test("cp, export, top, update and commit: Docker's container events, commit's with its image", () => {
    const started = new Date().toISOString();
    const dir = mkdtempSync(join(tmpdir(), "pivot-ev-files-"));
    try {
      writeFileSync(join(dir, "in"), "x\n");
      expect(pivot(["run", "-d", "--name", "ev-files", IMAGE, "sleep", "60"]).status).toBe(0);
      expect(pivot(["cp", join(dir, "in"), "ev-files:/tmp/"]).status).toBe(0);
      expect(pivot(["cp", "ev-files:/tmp/in", join(dir, "out")]).status).toBe(0);
      expect(pivot(["export", "-o", join(dir, "rootfs.tar"), "ev-files"]).status).toBe(0);
      expect(pivot(["top", "ev-files"]).status).toBe(0);
      expect(pivot(["update", "--pids-limit", "50", "ev-files"]).status).toBe(0);
      const commit = pivot(["commit", "-m", "a note", "ev-files", "ev-commit"]);
      expect(commit.status).toBe(0);
      const actions = recorded(
        started,
        "--filter",
        "container=ev-files",
        "--format",
        "{{.Action}}",
      ).stdout;
      expect(actions).toBe(
        "create\nstart\nextract-to-dir\narchive-path\nexport\ntop\nupdate\ncommit\n",
      );
      const attrs = recorded(
        started,
        "--filter",
        "event=commit",
        "--format",
        "{{.Actor.Attributes.comment}}|{{.Actor.Attributes.imageID}}|{{.Actor.Attributes.imageRef}}|{{.Actor.Attributes.name}}",
      ).stdout;
      // Docker's short form of the name given: docker.io/library/ev-commit:latest.
      expect(attrs).toBe(`a note|${commit.stdout.trim()}|ev-commit:latest|ev-files\n`);
    } finally {
      pivot(["rmi", "-f", "ev-commit"]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  test("attach and detach: the detach keys end an attach with a detach event", async () => {
    const started = new Date().toISOString();
    expect(pivot(["run", "-d", "-i", "--name", "ev-attach", IMAGE, "sleep", "60"]).status).toBe(0);
    const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, "attach", "ev-attach"], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await Bun.sleep(1000); // attached by then
    child.stdin.write("\x10\x11"); // Ctrl-P Ctrl-Q, Docker's default detach keys
    expect(await exited).toBe(0);
    expect(err).toBe("");
    const actions = recorded(started, "--filter", "container=ev-attach", "--format", "{{.Action}}");
    expect(actions.stdout).toBe("create\nstart\nattach\ndetach\n");
  }, 60_000);

  test("attach with the detach keys already waiting on stdin detaches at once, every time", () => {
    expect(pivot(["run", "-d", "-i", "--name", "ev-quick", IMAGE, "sleep", "60"]).status).toBe(0);
    // The terminal helper reports ready and exits at once: its exit can be seen before its ready
    // line is read, which once made attach fail with "the terminal helper exited (3)".
    for (let i = 0; i < 5; i++) {
      const r = pivotCli(t.root, ["attach", "ev-quick"], { input: "\x10\x11", timeoutMs: 30_000 });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    }
    expect(pivot(["inspect", "--format", "{{.State.Status}}", "ev-quick"]).stdout).toBe(
      "running\n",
    );
  }, 60_000);

  test("a volume is mounted before its container starts and unmounted after it dies", () => {
    const started = new Date().toISOString();
    expect(pivot(["volume", "create", "ev-mounted"]).status).toBe(0);
    try {
      const run = pivot([
        "run",
        "-d",
        "--name",
        "ev-vols",
        "-v",
        "ev-mounted:/data:ro",
        IMAGE,
        "true",
      ]);
      expect(run.status).toBe(0);
      const id = run.stdout.trim();
      expect(pivot(["wait", "ev-vols"]).stdout).toBe("0\n");
      // The exit hook's die and unmount, written just after the exit file `wait` reads.
      const events = () =>
        recorded(
          started,
          "--format",
          "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}",
        )
          .stdout.split("\n")
          .filter((l) => l.includes(" ev-mounted ") || l.includes(id));
      for (let i = 0; i < 40 && !events().some((l) => l.includes("unmount")); i++)
        Bun.sleepSync(50);
      const lines = events();
      expect(lines.map((l) => l.split(" ").slice(0, 2).join(" "))).toEqual([
        "volume create",
        "container create",
        "volume mount",
        "container start",
        "container die",
        "volume unmount",
      ]);
      expect(JSON.parse(lines[2]!.split(" ").slice(3).join(" "))).toEqual({
        container: id,
        destination: "/data",
        driver: "local",
        propagation: "",
        "read/write": "false",
      });
      expect(JSON.parse(lines[5]!.split(" ").slice(3).join(" "))).toEqual({
        container: id,
        driver: "local",
      });
    } finally {
      pivot(["rm", "-f", "ev-vols"]);
      pivot(["volume", "rm", "ev-mounted"]);
    }
  }, 60_000);

  test("an OOM kill: oom, then die with 137, as Docker's", () => {
    const started = new Date().toISOString();
    const hog = 'sleep 0.2; x=$(head -c 104857600 /dev/zero | tr "\\0" a)';
    // Run from a directory of its own: conmon writes a file "oom" into its working directory when
    // the OOM killer strikes, which must be the container's, never the caller's.
    const caller = mkdtempSync(join(tmpdir(), "pivot-ev-oom-"));
    try {
      const args = ["run", "-d", "--name", "ev-oom", "--memory", "20m", IMAGE, "sh", "-c", hog];
      const run = spawnSync(BUN, [PIVOT_CLI, "--root", t.root, ...args], { cwd: caller });
      expect(run.status).toBe(0);
      expect(pivot(["wait", "ev-oom"]).stdout).toBe("137\n");
      expect(readdirSync(caller)).toEqual([]);
    } finally {
      rmSync(caller, { recursive: true, force: true });
    }
    const actions = () =>
      recorded(
        started,
        "--filter",
        "container=ev-oom",
        "--format",
        "{{.Action}} {{.Actor.Attributes.exitCode}}",
      ).stdout;
    for (let i = 0; i < 40 && !actions().includes("die"); i++) Bun.sleepSync(50);
    expect(actions()).toBe("create <no value>\nstart <no value>\noom <no value>\ndie 137\n");
    // A kill by a signal is no OOM: die alone.
    const killed = new Date().toISOString();
    expect(pivot(["run", "-d", "--name", "ev-killed", IMAGE, "sleep", "60"]).status).toBe(0);
    expect(pivot(["kill", "ev-killed"]).status).toBe(0);
    expect(pivot(["wait", "ev-killed"]).stdout).toBe("137\n");
    Bun.sleepSync(500);
    const kill = recorded(killed, "--filter", "container=ev-killed", "--format", "{{.Action}}");
    expect(kill.stdout).toBe("create\nstart\nkill\ndie\n");
  }, 60_000);

  test("bad flags are refused with what to do", () => {
    for (const [args, message] of [
      [["--filter", "colour=red"], "not a filter of events"],
      [["--filter", "type=pod"], "no such type of event"],
      [["--since", "yesterday"], "--since yesterday: not a time"],
      [["extra"], "takes no arguments"],
    ] as [string[], string][]) {
      const r = pivot(["events", ...args]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(message);
    }
  }, 30_000);
});
