// Restart policies (`pivot run --restart`): on-failure with a retry limit, always, unless-stopped,
// a stop or kill that ends the restarts for good, `rm -f` of a restarting container leaving
// nothing, attached runs, the boot hook, and the errors. Root, real containers under conmon.
// Every wait polls with a generous deadline: a restart takes a conmon exit hook, a backoff and a
// new conmon, which on a loaded 2-core machine is seconds, not milliseconds.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import type { ContainerInfo } from "../../src/engine/types.ts";
import { IMAGE, makeTestEngine, mountsUnder, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;
const RUNC = "/usr/sbin/runc";

let t: TestEngine;

beforeAll(async () => {
  if (!isRoot || !hasConmon) return;
  t = await makeTestEngine();
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
}, 120_000);

// Whatever a failed test left goes before the next one, restart loops included.
afterEach(async () => {
  if (!t) return;
  const ids = pivot(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean);
  if (ids.length) pivot(["rm", "-f", "-v", ...ids]);
  await until("no process of a removed container is left", () =>
    ids.every((id) => processesOf(id).length === 0),
  ).catch(() => {});
}, 120_000);

const pivot = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 60_000 });

function inspect(name: string): ContainerInfo {
  const r = pivot(["inspect", name]);
  if (r.status !== 0) throw new Error(`pivot inspect ${name}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as ContainerInfo[])[0]!;
}

function runD(args: string[]): string {
  const r = pivot(["run", "-d", ...args]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return r.stdout.trim();
}

/** Polls `cond` until it holds, 60 s at most; `what` names it in the timeout's error. */
async function until(what: string, cond: () => boolean, deadlineMs = 60_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (cond()) return;
    if (Date.now() > end)
      throw new Error(`timed out after ${deadlineMs / 1000} s waiting: ${what}`);
    await Bun.sleep(100);
  }
}

/** Live processes whose command line names the container: its conmon, its exit hook. */
function processesOf(id: string): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmd.includes(id)) out.push({ pid: Number(e), cmd });
    } catch {}
  }
  return out;
}

const conmonsOf = (id: string) =>
  processesOf(id).filter((p) => p.cmd.split(" ")[0]!.endsWith("conmon"));

/** The container is exited and nothing that could start it again (conmon, exit hook) is alive. */
async function settled(id: string): Promise<ContainerInfo> {
  let info: ContainerInfo | null = null;
  await until(`container ${id.slice(0, 12)} exited with no process left`, () => {
    if (processesOf(id).length > 0) return false;
    info = inspect(id);
    return info.state.status === "exited";
  });
  return info!;
}

/** The restart the container's exit hook waits to make (restart.json), if any. */
function pendingOf(id: string): { pid: number } | null {
  try {
    const s = JSON.parse(readFileSync(join(t.root, "containers", id, "restart.json"), "utf8"));
    return (s as { pending?: { pid: number } }).pending ?? null;
  } catch {
    return null;
  }
}

/** Every thread of the process is stopped (state T), so none is halfway through a lock. */
function allStopped(pid: number): boolean {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`);
    return tasks.every((task) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
    });
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}

/** Container cgroup directories (pivot-<id>) in the memory hierarchy, or the unified one. */
function pivotCgroups(): string[] {
  const out: string[] = [];
  for (const h of ["memory", "pids", "unified", ""]) {
    try {
      out.push(...readdirSync(join("/sys/fs/cgroup", h)).filter((e) => e.startsWith("pivot-")));
    } catch {}
  }
  return out;
}

describe.skipIf(!isRoot || !hasConmon)("restart policies", () => {
  test("on-failure:2 with exit 3: three runs, then exited (3) with RestartCount 2; logs accumulate", async () => {
    const id = runD([
      "--name",
      "flaky",
      "--restart",
      "on-failure:2",
      IMAGE,
      "sh",
      "-c",
      "echo run; exit 3",
    ]);
    // wait returns at the first exit, restarted or not (Docker's wait).
    expect(pivot(["wait", "flaky"])).toEqual({ status: 0, stdout: "3\n", stderr: "" });
    const info = await settled(id);
    expect(info.state.exitCode).toBe(3);
    expect(info.restartCount).toBe(2);
    expect(info.restartPolicy).toEqual({ name: "on-failure", maximumRetryCount: 2 });
    expect(info.options.restart).toEqual({ policy: "on-failure", maxRetries: 2 });
    expect(pivot(["logs", "flaky"]).stdout).toBe("run\nrun\nrun\n");
    expect(pivot(["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).stdout).toMatch(
      /^flaky Exited \(3\) /,
    );
    expect(pivot(["wait", "flaky"]).stdout).toBe("3\n");
    // on-failure does not restart a clean exit.
    const ok = runD(["--restart", "on-failure", IMAGE, "true"]);
    expect((await settled(ok)).restartCount).toBe(0);
  }, 120_000);

  test("always restarts an exit 0 (RestartCount grows, no chain of conmons); stop ends it for good", async () => {
    const id = runD(["--name", "loop", "--restart", "always", IMAGE, "sh", "-c", "echo tick"]);
    const seen = new Set<string>();
    await until("RestartCount 3", () => {
      // Never a chain of conmons: each restart's conmon replaces the last one (two for a moment
      // while a new conmon forks into the background).
      expect(conmonsOf(id).length).toBeLessThanOrEqual(2);
      const info = inspect(id);
      seen.add(info.state.status);
      return info.restartCount >= 3;
    });
    // Between two runs it is listed without -a, as Docker's restarting containers are.
    const states = pivot(["ps", "--format", "{{.Names}} {{.State}}"]).stdout;
    expect(states).toMatch(/^loop (running|restarting)\n$/);
    expect([...seen].every((s) => ["running", "restarting", "exited"].includes(s))).toBe(true);
    expect(pivot(["stop", "-t", "2", "loop"])).toEqual({ status: 0, stdout: "loop\n", stderr: "" });
    const info = await settled(id);
    expect(info.state.restarting).toBe(false);
    expect(info.state.running).toBe(false);
    const count = info.restartCount;
    // One line per run: the first and every restart made (one cancelled by the stop was
    // counted, as Docker counts it, but not run).
    const ticks = pivot(["logs", "loop"])
      .stdout.split("\n")
      .filter((l) => l === "tick").length;
    expect(ticks).toBeGreaterThanOrEqual(3);
    expect(ticks).toBeLessThanOrEqual(count + 1);
    // Nothing is left that could start it: no conmon, no exit hook; it stays exited.
    expect(processesOf(id)).toEqual([]);
    expect(inspect(id).state.status).toBe("exited");
    expect(inspect(id).restartCount).toBe(count);
    // A start by hand forgets the stop and the count, and the policy applies again.
    expect(pivot(["start", "loop"]).status).toBe(0);
    await until("a restart after the start by hand", () => inspect(id).restartCount >= 1);
    expect(pivot(["stop", "loop"]).status).toBe(0);
    expect((await settled(id)).state.status).toBe("exited");
  }, 180_000);

  test("unless-stopped restarts any exit; kill ends it for good", async () => {
    const id = runD([
      "--name",
      "svc",
      "--restart",
      "unless-stopped",
      IMAGE,
      "sh",
      "-c",
      "echo up; sleep 1; exit 0",
    ]);
    await until("RestartCount 1 and running", () => {
      const info = inspect(id);
      return info.restartCount >= 1 && info.state.status === "running";
    });
    expect(pivot(["kill", "svc"])).toEqual({ status: 0, stdout: "svc\n", stderr: "" });
    const info = await settled(id);
    expect([0, 137]).toContain(info.state.exitCode!);
    expect(processesOf(id)).toEqual([]);
    expect(inspect(id).state.status).toBe("exited");
    expect(pivot(["logs", "svc"]).stdout).toMatch(/^(up\n){2,}$/);
  }, 180_000);

  test("a manual-stop mark that cannot be written fails stop, kill and rm -f before any signal", async () => {
    const id = runD(["--name", "ro", "--restart", "always", IMAGE, "sleep", "1000"]);
    await until("running", () => inspect(id).state.status === "running");
    const pid = inspect(id).state.pid;
    const dir = join(t.root, "containers", id);
    const mark = join(dir, "manually-stopped");
    // The container's directory read-only (EROFS), as a full or read-only filesystem would be.
    const sh = (cmd: string[]) => Bun.spawnSync(cmd, { stderr: "pipe" });
    expect(sh(["mount", "--bind", dir, dir]).exitCode).toBe(0);
    try {
      expect(sh(["mount", "-o", "remount,bind,ro", dir]).exitCode).toBe(0);
      for (const args of [
        ["stop", "-t", "1", "ro"],
        ["kill", "ro"],
        ["kill", "-s", "TERM", "ro"],
        ["rm", "-f", "ro"],
      ]) {
        const r = pivot(args);
        expect(r.stdout).toBe("");
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(
          `pivot: cannot mark container ro as stopped by hand: ${mark}: EROFS (read-only file system)\n  hint: nothing was signalled`,
        );
        // Not half-stopped: the same process runs on, under the same conmon.
        const info = inspect(id);
        expect(info.state.status).toBe("running");
        expect(info.state.pid).toBe(pid);
        expect(conmonsOf(id).length).toBe(1);
      }
    } finally {
      sh(["umount", dir]);
    }
    expect(pivot(["stop", "-t", "1", "ro"])).toEqual({ status: 0, stdout: "ro\n", stderr: "" });
    const info = await settled(id);
    expect(info.restartCount).toBe(0);
  }, 120_000);

  // The window between the exit hook's last check of the manual-stop mark (after the runtime's
  // create) and the runtime's start, pinned: the container runs under a wrapper of runc whose
  // `start`, once armed, waits for the test. A stop or kill lands there, while the new run's init
  // is still the runtime's, waiting to exec; then the start goes on.
  async function gated(
    during: (id: string, gate: string) => Promise<void> | void,
    after: (id: string, gate: string) => Promise<void>,
  ): Promise<void> {
    const gate = mkdtempSync(join(tmpdir(), "pivot-gate-"));
    const wrapper = join(gate, "runc");
    writeFileSync(
      wrapper,
      `#!/bin/sh
for a in "$@"; do
  if [ "$a" = start ] && [ -e ${gate}/armed ]; then
    rm -f ${gate}/armed; touch ${gate}/at-start
    while [ ! -e ${gate}/go ]; do sleep 0.05; done
    break
  fi
done
exec ${RUNC} "$@"
`,
    );
    chmodSync(wrapper, 0o755);
    try {
      // Runs of a second until /g/stay exists; from then on a run stays.
      const id = runD([
        ...["--runtime", wrapper, "--name", "gated", "--restart", "always", "-v", `${gate}:/g`],
        ...[IMAGE, "sh", "-c", "echo run >> /g/runs; [ -e /g/stay ] && exec sleep 1000; sleep 1"],
      ]);
      await until("a first restart", () => inspect(id).restartCount >= 1);
      writeFileSync(join(gate, "stay"), "");
      writeFileSync(join(gate, "armed"), "");
      await until("the restart's start held at the gate", () => existsSync(join(gate, "at-start")));
      await during(id, gate);
      writeFileSync(join(gate, "go"), "");
      await after(id, gate);
    } finally {
      writeFileSync(join(gate, "go"), "");
      pivot(["rm", "-f", "gated"]);
      rmSync(gate, { recursive: true, force: true });
    }
  }

  test.skipIf(!existsSync(RUNC))(
    "a stop whose signal the new run's init did not take, in that window: the run is ended",
    async () => {
      // Pivot's launcher stage is PID 1 of its namespace with no handler: a SIGTERM from stop or
      // kill -s TERM is dropped there, leaving only the mark. That state, made directly.
      await gated(
        (id) => writeFileSync(join(t.root, "containers", id, "manually-stopped"), ""),
        async (id) => {
          const info = await settled(id);
          expect(info.state.status).toBe("exited");
          expect(info.state.exitCode).toBe(137);
          expect(info.state.error).toBeUndefined();
          expect(processesOf(id)).toEqual([]);
        },
      );
    },
    180_000,
  );

  test.skipIf(!existsSync(RUNC))(
    'pivot kill in that window: no run, and no "restart failed" for a manual stop',
    async () => {
      let conmon = 0;
      await gated(
        (id) => {
          // The new run's conmon frozen, so its exit hook cannot overwrite what this hook records.
          conmon = (
            JSON.parse(readFileSync(join(t.root, "containers", id, "state.json"), "utf8")) as {
              monitorPid: number;
            }
          ).monitorPid;
          signal(conmon, "SIGSTOP");
          expect(pivot(["kill", "gated"])).toEqual({ status: 0, stdout: "gated\n", stderr: "" });
        },
        async (id) => {
          try {
            await until("the restart given up", () => pendingOf(id) === null);
            const s = JSON.parse(
              readFileSync(join(t.root, "containers", id, "restart.json"), "utf8"),
            ) as { error?: string };
            expect(s.error).toBeUndefined();
          } finally {
            signal(conmon, "SIGCONT");
          }
          const info = await settled(id);
          expect(info.state.status).toBe("exited");
          expect(info.state.error).toBeUndefined();
          expect(processesOf(id)).toEqual([]);
        },
      );
    },
    180_000,
  );

  test.skipIf(!existsSync(RUNC))(
    '"restart failed" stays in inspect after the failed run\'s own exit hook, until a start by hand',
    async () => {
      // A runc whose `start` fails once armed: the restart's create succeeds under a new conmon,
      // its start fails, and that conmon's exit hook runs after the failure was recorded.
      const gate = mkdtempSync(join(tmpdir(), "pivot-gate-"));
      const wrapper = join(gate, "runc");
      writeFileSync(
        wrapper,
        `#!/bin/sh
for a in "$@"; do
  if [ "$a" = start ] && [ -e ${gate}/armed ]; then
    rm -f ${gate}/armed; echo "start refused by the test" >&2; exit 1
  fi
done
exec ${RUNC} "$@"
`,
      );
      chmodSync(wrapper, 0o755);
      try {
        const id = runD([
          ...["--runtime", wrapper, "--name", "nostart", "--restart", "on-failure:1"],
          ...[IMAGE, "sh", "-c", "sleep 1; exit 3"],
        ]);
        writeFileSync(join(gate, "armed"), "");
        await until("the restart's start refused", () => !existsSync(join(gate, "armed")));
        const info = await settled(id);
        expect(info.state.error).toStartWith("restart failed: ");
        expect(info.state.error).toContain("start refused by the test");
        // Exited with the code of its last run, and no more restarts (the failed run's conmon
        // wrote no 137 and restarted nothing).
        expect(info.state.exitCode).toBe(3);
        expect(info.restartCount).toBe(1);
        // Its status is Docker's: the error is in inspect only.
        expect(pivot(["ps", "-a", "--format", "{{.Status}}"]).stdout).toMatch(/^Exited \(3\) /);
        // A start by hand forgets it.
        expect(pivot(["start", "nostart"]).status).toBe(0);
        expect(inspect(id).state.error).toBeUndefined();
        expect(pivot(["rm", "-f", "nostart"]).status).toBe(0);
        await until("no process of the removed container", () => processesOf(id).length === 0);
      } finally {
        pivot(["rm", "-f", "nostart"]);
        rmSync(gate, { recursive: true, force: true });
      }
    },
    180_000,
  );

  test("rm -f of a restarting container leaves no mount, cgroup, conmon, exit hook or state", async () => {
    const id = runD(["--name", "crashy", "--restart", "always", IMAGE, "sh", "-c", "exit 1"]);
    // The exit hook waiting out the backoff, frozen (SIGSTOP): "restarting" holds still.
    let waiter = 0;
    try {
      await until("the exit hook waiting to restart it, frozen", () => {
        const pending = pendingOf(id);
        if (!pending || inspect(id).restartCount < 2) return false;
        signal(pending.pid, "SIGSTOP");
        waiter = pending.pid;
        // Stopped for sure, still the one the restart waits for, and not holding the lock.
        let stopped = false; // SIGSTOP takes effect asynchronously, thread by thread
        for (let i = 0; i < 100 && !stopped; i++) {
          stopped = allStopped(pending.pid);
          if (!stopped) Bun.sleepSync(10);
        }
        let lockOwner = "";
        try {
          lockOwner = readFileSync(join(t.root, "locks", `container-${id}.lock`), "utf8").trim();
        } catch {}
        if (
          stopped &&
          pendingOf(id)?.pid === pending.pid &&
          lockOwner !== String(pending.pid) &&
          inspect(id).state.status === "restarting"
        )
          return true;
        signal(pending.pid, "SIGCONT");
        waiter = 0;
        return false;
      });
      expect(pivot(["ps", "--format", "{{.Names}} {{.Status}}"]).stdout).toMatch(
        /^crashy Restarting \(1\) \d+ seconds? ago\n$/,
      );
      expect(inspect(id).state).toMatchObject({ running: true, restarting: true, exitCode: 1 });
      // Without -f it is refused, as Docker refuses it.
      const refused = pivot(["rm", "crashy"]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain("cannot remove container crashy: it is restarting");
      expect(pivot(["rm", "-f", "crashy"])).toEqual({ status: 0, stdout: "crashy\n", stderr: "" });
    } finally {
      // Thawed, the hook finds the container gone and ends without starting anything.
      if (waiter) signal(waiter, "SIGCONT");
    }
    await until("no process of the removed container", () => processesOf(id).length === 0);
    expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
    expect(existsSync(join(t.root, "containers", id))).toBe(false);
    expect(existsSync(join(t.root, "run", "runtime", id))).toBe(false);
    expect(pivotCgroups().filter((c) => c.includes(id))).toEqual([]);
    expect(readdirSync(join(t.root, "locks")).filter((l) => l.includes(id))).toEqual([]);
  }, 180_000);

  test("attached run: the first run's output and code; restarts go on under conmon", async () => {
    const r = pivot([
      "run",
      "--name",
      "att",
      "--restart",
      "on-failure:1",
      IMAGE,
      "sh",
      "-c",
      "echo x; exit 4",
    ]);
    expect(r).toEqual({ status: 4, stdout: "x\n", stderr: "" });
    const id = inspect("att").id;
    await until("the restart", () => inspect(id).restartCount === 1); // see the library test below
    const info = await settled(id);
    expect(info.restartCount).toBe(1);
    expect(info.state.exitCode).toBe(4);
    expect(pivot(["logs", "att"]).stdout).toBe("x\nx\n");
    expect(mountsUnder(join(t.root, "containers", id))).toEqual([]);
  }, 120_000);

  test("attached run: a signal it cannot forward is said on stderr, and the run goes on", async () => {
    const proc = Bun.spawn(
      [
        ...[BUN, PIVOT_CLI, "--root", t.root, "run", "--name", "sig", "--restart", "on-failure:1"],
        ...[
          IMAGE,
          "sh",
          "-c",
          "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 1; done",
        ],
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    let stderr = "";
    const errDone = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr) stderr += decoder.decode(chunk);
    })();
    const stdout = new Response(proc.stdout).text();
    const sh = (cmd: string[]) => Bun.spawnSync(cmd, { stderr: "pipe" });
    let dir = "";
    try {
      await until("running", () => pivot(["logs", "sig"]).stdout === "ready\n");
      const { id, state } = inspect("sig");
      dir = join(t.root, "containers", id);
      // The manual-stop mark cannot be written (EROFS): kill fails, so the forward does.
      expect(sh(["mount", "--bind", dir, dir]).exitCode).toBe(0);
      expect(sh(["mount", "-o", "remount,bind,ro", dir]).exitCode).toBe(0);
      proc.kill("SIGTERM");
      await until("the failed forward on stderr", () => stderr.includes("\n"), 30_000);
      expect(stderr).toBe(
        `pivot: forwarding SIGTERM to container ${id.slice(0, 12)} failed: cannot mark container sig as stopped by hand: ${join(dir, "manually-stopped")}: EROFS (read-only file system)\n`,
      );
      expect(inspect("sig").state).toMatchObject({ status: "running", pid: state.pid });
      sh(["umount", dir]);
      dir = "";
      // The next one is forwarded: the trap runs, and the stop by hand ends the restarts.
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(7);
      await errDone;
      expect(stderr.split("\n").filter(Boolean).length).toBe(1);
      expect(await stdout).toBe("ready\ngot TERM\n");
      const info = await settled(id);
      expect(info.restartCount).toBe(0);
      expect(info.state.exitCode).toBe(7);
    } finally {
      if (dir) sh(["umount", dir]);
      proc.kill("SIGKILL");
    }
  }, 120_000);

  test("library: restart in the options, an attached handle's wait, and the --rm conflict", async () => {
    const c = await t.engine.run({
      image: IMAGE,
      cmd: ["sh", "-c", "exit 5"],
      restart: { policy: "on-failure", maxRetries: 1 },
      stdio: "ignore",
    });
    expect(await c.wait()).toBe(5);
    // The exit hook is a process this one spawned: until it has exec'd, nothing names the
    // container, so wait for its restart before waiting for quiet.
    await until("the restart", () => inspect(c.id).restartCount === 1);
    const info = await settled(c.id);
    expect(info.restartCount).toBe(1);
    expect(info.state.exitCode).toBe(5);
    await expect(
      t.engine.create({ image: IMAGE, autoRemove: true, restart: { policy: "always" } }),
    ).rejects.toThrow("Conflicting options: --restart and --rm");
    await expect(
      t.engine.create({ image: IMAGE, restart: { policy: "always", maxRetries: 2 } }),
    ).rejects.toThrow("can only be used with on-failure");
  }, 120_000);

  test("the boot hook starts what Docker's daemon would start at its start", async () => {
    const always = runD(["--name", "b-always", "--restart", "always", IMAGE, "sleep", "1000"]);
    const unless = runD([
      "--name",
      "b-unless",
      "--restart",
      "unless-stopped",
      IMAGE,
      "sleep",
      "1000",
    ]);
    const failed = runD([
      "--name",
      "b-failed",
      "--restart",
      "on-failure:1",
      IMAGE,
      "sh",
      "-c",
      "exit 2",
    ]);
    const plain = runD(["--name", "b-plain", IMAGE, "true"]);
    expect(pivot(["stop", "-t", "1", "b-always", "b-unless"]).status).toBe(0);
    for (const id of [always, unless, failed, plain]) await settled(id);
    const r = pivot(["start", "--all-restartable"]);
    expect(r).toEqual({ status: 0, stdout: `${always}\n`, stderr: "" });
    const info = inspect("b-always");
    expect(info.state.status).toBe("running");
    expect(info.restartCount).toBe(0);
    for (const name of ["b-unless", "b-failed", "b-plain"])
      expect(inspect(name).state.status).toBe("exited");
  }, 180_000);

  test("--restart with --rm and invalid policies are refused, creating nothing", () => {
    const cases: [string[], string][] = [
      [["--rm", "--restart", "always"], "pivot: Conflicting options: --restart and --rm\n"],
      [["--restart", "sometimes"], 'pivot: invalid restart policy: unknown policy "sometimes"\n'],
      [["--restart", "always:3"], "can only be used with on-failure, not always"],
      [["--restart", "on-failure:x"], "the maximum retry count must be a whole number"],
      [["--restart", "on-failure:-1"], "the maximum retry count cannot be negative"],
      [["--restart", ":2"], "no policy before the colon"],
    ];
    for (const [flags, message] of cases) {
      for (const command of ["run", "create"]) {
        const r = pivot([command, ...(command === "run" ? ["-d"] : []), ...flags, IMAGE, "true"]);
        expect(r.status).toBe(125);
        expect(r.stdout).toBe("");
        expect(r.stderr).toContain(message);
        expect(r.stderr).toContain("  hint: ");
      }
    }
    expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
  });
});
