// Docker's health checks: HEALTHCHECK built into an image's config (inherited, overridden, in the
// history and the build cache), the run flags over it, `pivot healthcheck run` inside a running
// container, and the periodic checks' scheduler, which never outlives its container.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DockerInspect } from "../../src/engine/docker-inspect.ts";
import { buildContext } from "../fixtures/build-context.ts";
import { IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-health-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterEach(async () => {
  if (!t) return;
  for (const c of await t.engine.list({ all: true }))
    await t.engine.remove(c.id, { force: true }).catch(() => {});
});

const cli = (args: string[], timeoutMs = 60_000) => pivotCli(t.root, args, { timeoutMs });

/** Builds DOCKERFILE (its context has nothing else) as TAG through the CLI. */
function build(name: string, tag: string, dockerfile: string) {
  const dir = buildContext(scratch, name, { Dockerfile: dockerfile });
  return cli(["build", "-t", tag, dir], 120_000);
}

async function imageConfig(ref: string) {
  const image = await (await t.engine.images()).resolve(ref);
  return image.config;
}

describe.skipIf(!isRoot)("HEALTHCHECK in pivot build", () => {
  test("the config's Healthcheck and Docker's history line; inherited, overridden, NONE; cached", async () => {
    const first = build(
      "hc1",
      "localhost/hc:one",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const one = await imageConfig("localhost/hc:one");
    expect(one.config?.Healthcheck).toEqual({
      Test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
      Interval: 300_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 3,
    });
    expect(one.history?.at(-1)).toMatchObject({
      created_by:
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" \'\\x03\'}',
      empty_layer: true,
    });

    // The same step again comes from the build cache; another interval is another key.
    const again = build(
      "hc1",
      "localhost/hc:one",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(again.stdout).toContain("Using cache");
    const other = build(
      "hc1b",
      "localhost/hc:oneb",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=4m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(other.status).toBe(0);
    expect(other.stdout).not.toContain("Using cache");
    expect((await imageConfig("localhost/hc:oneb")).config?.Healthcheck?.Interval).toBe(240e9);

    // Inherited from the base image.
    expect(build("hc2", "localhost/hc:two", 'FROM localhost/hc:one\nCMD ["sh"]\n').status).toBe(0);
    expect((await imageConfig("localhost/hc:two")).config?.Healthcheck).toEqual(
      one.config?.Healthcheck,
    );
    // A later HEALTHCHECK replaces it whole (its options are not merged).
    const exec = build(
      "hc3",
      "localhost/hc:three",
      'FROM localhost/hc:one\nHEALTHCHECK CMD ["/bin/true"]\n',
    );
    expect(exec.status).toBe(0);
    expect((await imageConfig("localhost/hc:three")).config?.Healthcheck).toEqual({
      Test: ["CMD", "/bin/true"],
    });
    expect(
      build("hc4", "localhost/hc:none", "FROM localhost/hc:one\nHEALTHCHECK NONE\n").status,
    ).toBe(0);
    expect((await imageConfig("localhost/hc:none")).config?.Healthcheck).toEqual({
      Test: ["NONE"],
    });
  }, 300_000);

  test("RUN containers run no health check (Docker's builder turns it off): nothing it does lands in a layer", async () => {
    const base = build(
      "hcrun1",
      "localhost/hc:checks",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=50ms --start-period=1m --start-interval=50ms CMD touch /check-ran\n`,
    );
    expect(base.status).toBe(0);
    const dir = buildContext(scratch, "hcrun2", {
      Dockerfile: "FROM localhost/hc:checks\nRUN sleep 2\n",
    });
    const r = cli(["build", "--network", "none", "-t", "localhost/hc:run", dir], 120_000);
    expect(r.status).toBe(0);
    const look = cli(["run", "--rm", "localhost/hc:run", "ls", "/check-ran"]);
    expect(look.stderr).toContain("No such file");
    expect(look.status).not.toBe(0);
  }, 120_000);

  test("an unknown option or form fails the build before any step, naming the line", () => {
    const flag = build(
      "hc5",
      "localhost/hc:bad",
      `FROM ${IMAGE}\nHEALTHCHECK --every=5s CMD true\n`,
    );
    expect(flag.status).toBe(1);
    expect(flag.stderr).toContain("HEALTHCHECK --every");
    expect(flag.stderr).toContain("line 2");
    expect(flag.stderr).toContain("--interval --timeout --start-period --start-interval --retries");
    expect(flag.stdout).not.toContain("Step 1/2");
    const form = build("hc6", "localhost/hc:bad", `FROM ${IMAGE}\nHEALTHCHECK RUN true\n`);
    expect(form.status).toBe(1);
    expect(form.stdout).not.toContain("Step 1/2");
    expect(form.stderr).toContain(
      'HEALTHCHECK (line 2): unknown type "RUN" in HEALTHCHECK (try CMD)',
    );
  }, 120_000);
});

/** `pivot inspect NAME`'s object. */
function inspectOf(name: string) {
  const r = cli(["inspect", name]);
  expect(r.status).toBe(0);
  return (JSON.parse(r.stdout) as DockerInspect[])[0]!;
}

const psStatus = (name: string) =>
  cli(["ps", "-a", "--filter", `name=^${name}$`, "--format", "{{.Status}}"]).stdout.trim();

const psNames = (filter: string) =>
  cli(["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
    .stdout.trim()
    .split("\n")
    .filter(Boolean)
    .sort();

describe.skipIf(!isRoot)("health check flags and pivot healthcheck run", () => {
  test("--health-* override the image's HEALTHCHECK field by field; --no-healthcheck; bad values refused", async () => {
    expect(
      build(
        "hcflags",
        "localhost/hc:flags",
        `FROM ${IMAGE}\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD true\n`,
      ).status,
    ).toBe(0);
    expect(
      cli([
        "create",
        "--name",
        "over",
        "--health-interval",
        "2s",
        "--health-start-period=1m",
        "localhost/hc:flags",
      ]).status,
    ).toBe(0);
    expect(inspectOf("over").Config.Healthcheck).toEqual({
      Test: ["CMD-SHELL", "true"],
      Interval: 2_000_000_000,
      Timeout: 3_000_000_000,
      StartPeriod: 60_000_000_000,
      Retries: 3,
    });
    // Created, never started: no State.Health yet (Docker's), and health=none in ps.
    expect(inspectOf("over").State.Health).toBeUndefined();
    expect(cli(["create", "--name", "off", "--no-healthcheck", "localhost/hc:flags"]).status).toBe(
      0,
    );
    // moby's merge: the unset fields still come from the image; Test NONE turns it off.
    expect(inspectOf("off").Config.Healthcheck).toEqual({
      Test: ["NONE"],
      Interval: 300_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 3,
    });
    expect(cli(["create", "--name", "plain", IMAGE]).status).toBe(0);
    expect(inspectOf("plain").Config.Healthcheck).toBeUndefined();
    for (const [flags, message] of [
      [
        ["--no-healthcheck", "--health-cmd", "true"],
        "--no-healthcheck conflicts with --health-* options",
      ],
      [["--health-interval", "5"], '--health-interval: invalid duration "5"'],
      [["--health-timeout", "-1s"], "--health-timeout cannot be negative"],
      [["--health-start-interval", "10us"], "--health-start-interval cannot be less than 1ms"],
      [["--health-retries", "-1"], "--health-retries cannot be negative"],
    ] as const) {
      const r = cli(["create", ...flags, IMAGE]);
      expect(r.stderr).toContain(message);
      expect(r.status).toBe(125);
    }
    const none = cli(["healthcheck", "run", "off"]);
    expect(none.status).toBe(125);
    expect(none.stderr).toContain("container off has no health check");
    const stopped = cli(["healthcheck", "run", "over"]);
    expect(stopped.status).toBe(125);
    expect(stopped.stderr).toContain("container over is not running (created)");
  }, 120_000);

  test("starting, unhealthy after --health-retries failures, healthy on a success: inspect's State.Health, ps STATUS and --filter health=", () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const check = "test -e /tmp/ok && echo fine || { echo bad >&2; exit 1; }";
    expect(
      cli([
        "run",
        "-d",
        "--name",
        "web",
        "--health-cmd",
        check,
        "--health-retries",
        "2",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    expect(cli(["run", "-d", "--name", "nocheck", IMAGE, "sleep", "1000"]).status).toBe(0);
    expect(inspectOf("web").State.Health).toEqual({
      Status: "starting",
      FailingStreak: 0,
      Log: [],
    });
    expect(psStatus("web")).toMatch(/^Up \d+ seconds? \(health: starting\)$/);
    expect(psNames("health=starting")).toEqual(["web"]);
    expect(psNames("health=none")).toEqual(["nocheck"]);

    const first = cli(["healthcheck", "run", "web"]);
    expect([first.status, first.stdout]).toEqual([1, "starting\n"]);
    const second = cli(["healthcheck", "run", "web"]);
    expect([second.status, second.stdout]).toEqual([1, "unhealthy\n"]);
    const sick = inspectOf("web").State.Health!;
    expect(sick.Status).toBe("unhealthy");
    expect(sick.FailingStreak).toBe(2);
    expect(sick.Log.map((l) => [l.ExitCode, l.Output])).toEqual([
      [1, "bad\n"],
      [1, "bad\n"],
    ]);
    expect(Date.parse(sick.Log[0]!.End)).toBeGreaterThanOrEqual(Date.parse(sick.Log[0]!.Start));
    expect(psStatus("web")).toMatch(/\(unhealthy\)$/);
    expect(psNames("health=unhealthy")).toEqual(["web"]);

    expect(cli(["exec", "web", "touch", "/tmp/ok"]).status).toBe(0);
    const ok = cli(["healthcheck", "run", "web"]);
    expect([ok.status, ok.stdout]).toEqual([0, ""]);
    const well = inspectOf("web").State.Health!;
    expect([well.Status, well.FailingStreak, well.Log.at(-1)!.Output]).toEqual([
      "healthy",
      0,
      "fine\n",
    ]);
    expect(psStatus("web")).toMatch(/^Up \d+ seconds? \(healthy\)$/);
    expect(psNames("health=healthy")).toEqual(["web"]);
    expect(psNames("health=unhealthy")).toEqual([]);
    // The log keeps the last 5 results.
    for (let i = 0; i < 3; i++) expect(cli(["healthcheck", "run", "web"]).status).toBe(0);
    expect(inspectOf("web").State.Health!.Log).toHaveLength(5);
    const bad = cli(["ps", "--filter", "health=sick"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('invalid filter "health=sick"');
    // Each change of status is Docker's event.
    const events = cli([
      "events",
      "--since",
      since,
      "--until",
      new Date().toISOString(),
      "--format",
      "json",
    ]);
    const health = events.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { Action: string; Actor: { Attributes: { name: string } } })
      .filter((e) => e.Action.startsWith("health_status") && e.Actor.Attributes.name === "web");
    expect(health.map((e) => e.Action)).toEqual([
      "health_status: unhealthy",
      "health_status: healthy",
    ]);
  }, 120_000);

  test("the timeout kills the check and its children; output kept to 4 KiB; the start period forgives failures", () => {
    expect(
      cli([
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 300 | cat",
        "--health-timeout",
        "500ms",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    const began = Date.now();
    const r = cli(["healthcheck", "run", "slow"]);
    expect(r.status).toBe(1);
    expect(Date.now() - began).toBeLessThan(10_000);
    const log = inspectOf("slow").State.Health!.Log;
    expect([log[0]!.ExitCode, log[0]!.Output]).toEqual([
      -1,
      "Health check exceeded timeout (500ms)",
    ]);
    // Nothing of the check is left in the container: its sleep was in its process group.
    const ps = cli(["exec", "slow", "ps", "-o", "args"]);
    expect(ps.stdout).not.toContain("sleep 300");

    expect(
      cli([
        "run",
        "-d",
        "--name",
        "loud",
        "--health-cmd",
        "head -c 5000 /dev/zero | tr '\\0' a",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    expect(cli(["healthcheck", "run", "loud"]).status).toBe(0);
    const out: string = inspectOf("loud").State.Health!.Log[0]!.Output;
    expect(out).toBe(`${"a".repeat(4096)}...`);

    expect(
      cli([
        "run",
        "-d",
        "--name",
        "boot",
        "--health-cmd",
        "exit 1",
        "--health-start-period",
        "1h",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    for (let i = 0; i < 4; i++) expect(cli(["healthcheck", "run", "boot"]).status).toBe(1);
    const boot = inspectOf("boot").State.Health!;
    expect([boot.Status, boot.FailingStreak, boot.Log.length]).toEqual(["starting", 0, 4]);
  }, 120_000);

  test("concurrent checks each count once (the record is locked and renamed into place)", async () => {
    expect(
      cli([
        "run",
        "-d",
        "--name",
        "busy",
        "--health-cmd",
        "exit 3",
        "--health-retries",
        "100",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    const runs = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<number>((resolve) => {
            const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, "healthcheck", "run", "busy"], {
              stdio: "ignore",
            });
            child.on("close", (code) => resolve(code ?? -1));
          }),
      ),
    );
    expect(runs).toEqual([1, 1, 1, 1]);
    const h = inspectOf("busy").State.Health!;
    expect([h.Status, h.FailingStreak, h.Log.length]).toEqual(["starting", 4, 4]);
    expect(h.Log.every((l) => l.ExitCode === 3)).toBe(true);

    // A check waits for the record's lock (held here, by this live process) before it counts.
    const lock = join(t.root, "containers", inspectOf("busy").Id, "health.lock");
    writeFileSync(lock, `${process.pid}\n`);
    let done = false;
    const waiting = new Promise<number>((resolve) => {
      const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, "healthcheck", "run", "busy"], {
        stdio: "ignore",
      });
      child.on("close", (code) => {
        done = true;
        resolve(code ?? -1);
      });
    });
    try {
      await new Promise((r) => setTimeout(r, 2000));
      expect(done).toBe(false);
      expect(inspectOf("busy").State.Health!.FailingStreak).toBe(4);
    } finally {
      rmSync(lock, { force: true });
    }
    expect(await waiting).toBe(1);
    expect(inspectOf("busy").State.Health!.FailingStreak).toBe(5);
  }, 120_000);
});

/** The live pivot-timer processes of this test's engine (by their command line), not zombies. */
function timers(id = ""): number[] {
  const out: number[] = [];
  for (const n of readdirSync("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const cmd = readFileSync(`/proc/${n}/cmdline`, "utf8").split("\0");
      if (!cmd[0]?.endsWith("pivot-timer") || !cmd.includes(t.root)) continue;
      if (id && !cmd.includes(id)) continue;
      const stat = readFileSync(`/proc/${n}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") continue;
      out.push(Number(n));
    } catch {}
  }
  return out;
}

async function until(what: string, test: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const idOf = (name: string) => inspectOf(name).Id;

describe.skipIf(!isRoot)("periodic checks: pivot-timer", () => {
  afterAll(() => {
    // Whatever a failed test left: this engine's timers only, by pid.
    for (const pid of timers()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
  });

  test("the start interval while starting in the start period, then the interval; one small timer per run", async () => {
    const run = cli([
      "run",
      "-d",
      "--name",
      "tick",
      "--health-cmd",
      "test -e /tmp/ok",
      "--health-interval",
      "1h",
      "--health-start-period",
      "1m",
      "--health-start-interval",
      "200ms",
      IMAGE,
      "sleep",
      "1000",
    ]);
    expect(run.status).toBe(0);
    const id = idOf("tick");
    expect(timers(id)).toHaveLength(1);
    // Checks every 200 ms although the interval is an hour: it is starting, in its start period.
    await until("three checks", () => (inspectOf("tick").State.Health?.Log.length ?? 0) >= 3);
    expect(inspectOf("tick").State.Health!.Status).toBe("starting");
    expect(inspectOf("tick").State.Health!.FailingStreak).toBe(0);
    expect(cli(["exec", "tick", "touch", "/tmp/ok"]).status).toBe(0);
    await until("healthy", () => inspectOf("tick").State.Health!.Status === "healthy");
    // Healthy: the next check is an hour away.
    const checks = inspectOf("tick").State.Health!.Log.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(inspectOf("tick").State.Health!.Log.length).toBe(checks);
    const [timer] = timers(id);
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${timer}/status`, "utf8"))![1]);
    expect(rss).toBeLessThan(2048); // kB
    expect(cli(["stop", "-t", "1", "tick"]).status).toBe(0);
    await until("the timer's end after stop", () => timers(id).length === 0, 5000);
  }, 120_000);

  test("pivot-timer: a second timer on the same lock waits; both end with the watched process", async () => {
    const watched = spawn("sleep", ["60"], { stdio: "ignore" });
    const dir = mkdtempSync(join(scratch, "timer-"));
    const ticks = join(dir, "ticks");
    const start = readFileSync(`/proc/${watched.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]!;
    const timer = join(import.meta.dir, "../../native/build/pivot-timer");
    const args = [
      String(watched.pid),
      start,
      join(dir, "lock"),
      "50",
      "50",
      "10",
      "50",
      "11",
      "--",
    ];
    const tick = ["sh", "-c", `echo $PPID >> ${ticks}`];
    const both = [spawn(timer, [...args, ...tick]), spawn(timer, [...args, ...tick])];
    const ended = both.map((c) => new Promise<number | null>((r) => c.on("close", r)));
    try {
      await until(
        "ticks",
        () => existsSync(ticks) && readFileSync(ticks, "utf8").split("\n").length > 10,
      );
      expect(new Set(readFileSync(ticks, "utf8").trim().split("\n")).size).toBe(1);
      // The pid in the lock is the one that ticks.
      expect(readFileSync(join(dir, "lock"), "utf8").trim()).toBe(
        readFileSync(ticks, "utf8").split("\n")[0]!,
      );
    } finally {
      watched.kill("SIGKILL");
    }
    expect(await Promise.all(ended)).toEqual([0, 0]);
  }, 60_000);

  test("a timer that is gone (killed, or never started by a killed pivot) comes back with the next ps; never two", async () => {
    expect(
      cli([
        "run",
        "-d",
        "--name",
        "lost",
        "--health-cmd",
        "echo ok",
        "--health-interval",
        "300ms",
        IMAGE,
        "sleep",
        "1000",
      ]).status,
    ).toBe(0);
    const id = idOf("lost");
    await until("a first check", () => (inspectOf("lost").State.Health?.Log.length ?? 0) > 0);
    expect(timers(id)).toHaveLength(1);
    // ps with the timer alive adds none.
    expect(cli(["ps"]).status).toBe(0);
    expect(cli(["ps"]).status).toBe(0);
    expect(timers(id)).toHaveLength(1);
    process.kill(timers(id)[0]!, "SIGKILL");
    await until("the killed timer's end", () => timers(id).length === 0, 5000);
    const before = inspectOf("lost").State.Health!.Log.at(-1)!.End;
    expect(cli(["ps"]).status).toBe(0);
    await until("a new timer", () => timers(id).length === 1, 5000);
    await until("checks again", () => inspectOf("lost").State.Health!.Log.at(-1)!.End !== before);
    expect(cli(["ps"]).status).toBe(0);
    expect(timers(id)).toHaveLength(1);
    expect(cli(["rm", "-f", "lost"]).status).toBe(0);
    await until("no timer after rm -f", () => timers(id).length === 0, 5000);
  }, 120_000);

  test("the timer ends with its container: kill, rm -f, its own exit, a restart (one timer for the new run), an attached run, SIGKILL of conmon and the container", async () => {
    const fast = ["--health-cmd", "true", "--health-interval", "300ms"];
    expect(cli(["run", "-d", "--name", "k", ...fast, IMAGE, "sleep", "1000"]).status).toBe(0);
    const k = idOf("k");
    await until("a healthy k", () => inspectOf("k").State.Health?.Status === "healthy");
    expect(cli(["kill", "k"]).status).toBe(0);
    await until("k's timer gone after kill", () => timers(k).length === 0, 5000);
    // started again: a timer for the new run only.
    expect(cli(["start", "k"]).status).toBe(0);
    expect(timers(k)).toHaveLength(1);
    expect(cli(["restart", "-t", "1", "k"]).status).toBe(0);
    await until("one timer after restart", () => timers(k).length === 1, 5000);
    expect(cli(["rm", "-f", "k"]).status).toBe(0);
    await until("k's timer gone after rm -f", () => timers(k).length === 0, 5000);

    expect(cli(["run", "-d", "--name", "brief", ...fast, IMAGE, "sleep", "2"]).status).toBe(0);
    const brief = idOf("brief");
    expect(timers(brief)).toHaveLength(1);
    await until("brief's exit", () => inspectOf("brief").State.Status === "exited", 10_000);
    await until("brief's timer gone after its exit", () => timers(brief).length === 0, 5000);

    // Restarted by its policy (the exit hook starts the new run): never two timers at once.
    expect(
      cli([
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        ...fast,
        IMAGE,
        "sh",
        "-c",
        "sleep 1; exit 1",
      ]).status,
    ).toBe(0);
    const again = idOf("again");
    let most = 0;
    await until(
      "two restarts",
      () => {
        most = Math.max(most, timers(again).length);
        return inspectOf("again").RestartCount >= 2;
      },
      30_000,
    );
    expect(most).toBe(1);
    expect(cli(["rm", "-f", "again"]).status).toBe(0);
    await until("again's timer gone after rm -f", () => timers(again).length === 0, 5000);

    const attached = cli(["run", "--name", "fg", ...fast, IMAGE, "sleep", "1"]);
    expect(attached.status).toBe(0);
    expect(timers(idOf("fg"))).toEqual([]);

    expect(cli(["run", "-d", "--name", "hard", ...fast, IMAGE, "sleep", "1000"]).status).toBe(0);
    const hard = inspectOf("hard");
    expect(timers(hard.Id)).toHaveLength(1);
    // Everything of the container killed at once, as a crash would: its monitor, then its init.
    process.kill(hard.state.monitorPid, "SIGKILL");
    process.kill(hard.State.Pid, "SIGKILL");
    await until("hard's timer gone", () => timers(hard.Id).length === 0, 5000);
    expect(cli(["ps", "-a"]).status).toBe(0); // recovery
    expect(timers()).toEqual([]);
  }, 120_000);
});
