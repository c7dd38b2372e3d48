// State that is never lost: 50 `pivot run -d` at once, kill -9 of pivot processes and of the
// containers' monitors (conmon), and a simulated reboot (overlay unmounted, runtime state dir
// removed). Root, real containers, under conmon.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import { withFileLock } from "../../src/image/lock.ts";
import { IMAGE, makeTestEngine, mountsUnder, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli, RUNTIME_CLI } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine;
/** Pids of pivot CLI processes this file started. */
const started = new Set<number>();

beforeAll(async () => {
  if (!isRoot || !hasConmon) return;
  t = await makeTestEngine();
}, 120_000);

/** conmon pids of this root's containers (conmon.pid in each container directory). */
function conmonPids(): number[] {
  const dir = join(t.root, "containers");
  const out: number[] = [];
  for (const e of existsSync(dir) ? readdirSync(dir) : []) {
    try {
      out.push(Number(readFileSync(join(dir, e, "conmon.pid"), "utf8").trim()));
    } catch {}
  }
  return out.filter((p) => p > 0);
}

/** Whether `pid` is a conmon whose command line names this test's root. */
function isOurConmon(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmd.startsWith(`${findConmon()}\0`) && cmd.includes(t.root);
  } catch {
    return false;
  }
}

function killOurConmons(): number {
  let n = 0;
  for (const pid of conmonPids()) {
    if (!isOurConmon(pid)) continue;
    try {
      process.kill(pid, "SIGKILL");
      n++;
    } catch {}
  }
  return n;
}

afterAll(async () => {
  if (!t) return;
  for (const pid of started) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  killOurConmons();
  await t.cleanup();
}, 120_000);

const pivot = (args: string[]) => pivotCli(t.root, args, { timeoutMs: 120_000 });

/** Starts a pivot CLI process; resolves with its status and output. */
function pivotAsync(
  args: string[],
  onSpawn?: (pid: number) => void,
): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (child.pid) {
      started.add(child.pid);
      onSpawn?.(child.pid);
    }
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("close", (status, signal) => {
      if (child.pid) started.delete(child.pid);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

interface Info {
  id: string;
  name: string;
  state: { status: string; exitCode: number | null; pid: number; monitorPid: number };
}

function inspectAll(): Info[] {
  const ids = pivot(["ps", "-a", "-q", "--no-trunc"]).stdout.split("\n").filter(Boolean);
  if (ids.length === 0) return [];
  const r = pivot(["inspect", ...ids]);
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout) as Info[];
}

/** Cgroup directories named after a container, in any hierarchy. */
function cgroupDirsOf(id: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      if (e.includes(id)) out.push(p);
      else if (depth < 4 && !e.includes(".")) {
        try {
          if (readdirSync(p).includes("cgroup.procs")) walk(p, depth + 1);
        } catch {}
      }
    }
  };
  walk("/sys/fs/cgroup", 0);
  return out;
}

/** The init's pid of container `id` as the runtime's `state` reports it. */
function runtimePid(runtimeRoot: string, id: string): number {
  const r = spawnSync(BUN, [RUNTIME_CLI, "--root", runtimeRoot, "state", id], { encoding: "utf8" });
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}

function removeAll(): void {
  const ids = pivot(["ps", "-a", "-q", "--no-trunc"]).stdout.split("\n").filter(Boolean);
  if (ids.length) expect(pivot(["rm", "-f", ...ids]).status).toBe(0);
  expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
}

describe.skipIf(!isRoot || !hasConmon)("engine: state that is never lost", () => {
  test("50 concurrent `pivot run -d`: all succeed, all are in ps -a", async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        pivotAsync(["run", "-d", "--name", `par${i}`, "-l", "batch=par", IMAGE, "sleep", "300"]),
      ),
    );
    for (const r of results) {
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    }
    const ids = new Set(results.map((r) => r.stdout.trim()));
    expect(ids.size).toBe(50);
    const listed = pivot(["ps", "-a", "-q", "--no-trunc"]).stdout.split("\n").filter(Boolean);
    expect(new Set(listed)).toEqual(ids);
    const infos = inspectAll();
    expect(infos.map((i) => i.state.status)).toEqual(Array(50).fill("running"));
    expect(new Set(infos.map((i) => i.name))).toEqual(
      new Set(Array.from({ length: 50 }, (_, i) => `par${i}`)),
    );
    removeAll();
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
    for (const id of ids) expect(cgroupDirsOf(id)).toEqual([]);
  }, 240_000);

  test("kill -9 of pivot processes mid-run and of every monitor: ps -a tells the truth, nothing is left", async () => {
    // Ten runs, their pivot processes killed at staggered moments (some before, some during,
    // some after the create), plus two that finish.
    const killed = Array.from({ length: 10 }, (_, i) =>
      pivotAsync(["run", "-d", "--name", `crash${i}`, IMAGE, "sleep", "300"], (pid) => {
        setTimeout(
          () => {
            try {
              process.kill(pid, "SIGKILL");
            } catch {}
          },
          150 + i * 60,
        );
      }),
    );
    const ok = [0, 1].map((i) =>
      pivotAsync(["run", "-d", "--name", `ok${i}`, IMAGE, "sleep", "300"]),
    );
    const all = await Promise.all([...killed, ...ok]);
    for (const r of all.slice(10)) expect(r.status).toBe(0);
    expect(killOurConmons()).toBeGreaterThanOrEqual(2);
    await Bun.sleep(200);

    // A create and a remove that died half-way (made by hand, deterministically): a directory
    // without container.json, its overlay mounted, its name claimed and a stale lock of a dead
    // process; a directory renamed for removal.
    const orphan = "f".repeat(64);
    const odir = join(t.root, "containers", orphan);
    mkdirSync(join(odir, "merged"), { recursive: true });
    expect(spawnSync("mount", ["-t", "tmpfs", "tmpfs", join(odir, "merged")]).status).toBe(0);
    symlinkSync(orphan, join(t.root, "names", "orphan"));
    const dead = spawnSync("true").pid;
    writeFileSync(join(t.root, "locks", `container-${orphan}.lock`), `${dead}\n`);
    mkdirSync(join(t.root, "containers", `.removing-${"e".repeat(64)}`, "upper"), {
      recursive: true,
    });

    // Every container is listed with a status that matches its processes.
    const infos = inspectAll();
    expect(infos.length).toBeGreaterThanOrEqual(2);
    for (const c of infos) {
      if (c.state.status === "running") {
        expect(c.state.pid).toBeGreaterThan(0);
        expect(existsSync(`/proc/${c.state.pid}`)).toBe(true);
      } else expect(["created", "exited"]).toContain(c.state.status);
    }
    // No half-created container is left behind: every directory has its container.json.
    const dirs = readdirSync(join(t.root, "containers"));
    for (const d of dirs)
      expect(existsSync(join(t.root, "containers", d, "container.json"))).toBe(true);
    expect(mountsUnder(odir)).toEqual([]);
    expect(pivot(["create", "--name", "orphan", IMAGE, "true"]).status).toBe(0);
    // Names of killed creates can be used again.
    for (let i = 0; i < 10; i++) {
      const name = `crash${i}`;
      if (!infos.some((c) => c.name === name)) {
        expect(pivot(["create", "--name", name, IMAGE, "true"]).status).toBe(0);
      }
    }

    // Their monitors are gone: stopping them leaves an exit code nobody recorded.
    const running = infos.filter((c) => c.state.status === "running");
    expect(running.length).toBeGreaterThanOrEqual(2);
    expect(pivot(["kill", ...running.map((c) => c.id)]).status).toBe(0);
    for (let i = 0; i < 100; i++) {
      if (running.every((c) => !existsSync(`/proc/${c.state.pid}`))) break;
      await Bun.sleep(20);
    }
    const ps = pivot(["ps", "-a"]).stdout;
    for (const c of running)
      expect(ps).toMatch(new RegExp(`${c.id.slice(0, 12)}.*Exited \\(255\\)`));
    // ps cleaned up after them: no overlay mount, no runtime state, no cgroup.
    for (const c of running) {
      expect(mountsUnder(join(t.root, "containers", c.id))).toEqual([]);
      expect(existsSync(join(t.root, "run", "runtime", c.id))).toBe(false);
      expect(cgroupDirsOf(c.id)).toEqual([]);
    }
    // The killed monitors' exit time is unknown: no "ago" without a time.
    expect(ps).not.toContain("Exited (255)  ago");
    removeAll();
    expect(mountsUnder(t.root)).toEqual([]);
    expect(readdirSync(join(t.root, "containers"))).toEqual([]);
    expect(readdirSync(join(t.root, "names"))).toEqual([]);
    // conmon's attach-socket links, left by the killed monitors, went with their containers.
    expect(readdirSync(join(t.root, "run", "socket"))).toEqual([]);
  }, 120_000);

  test("a start that died after the runtime made the process, before state.json: ps undoes it, the container stays Created", async () => {
    // What such a start leaves, made deterministically: a created container whose process the
    // runtime created and started (as conmon or the attached run does), no state.json of the
    // engine's beside it, and its lock free (the dead starter's).
    const id = pivot(["create", "--name", "halfway", IMAGE, "sleep", "300"]).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const runtimeRoot = join(t.root, "run", "runtime");
    const bundle = join(t.root, "containers", id);
    let pid = 0;
    try {
      for (const args of [
        ["create", "--bundle", bundle, id],
        ["start", id],
      ]) {
        const r = spawnSync(BUN, [RUNTIME_CLI, "--root", runtimeRoot, ...args], {
          stdio: "ignore",
          timeout: 30_000,
        });
        expect(r.status).toBe(0);
      }
      pid = runtimePid(runtimeRoot, id);
      expect(existsSync(`/proc/${pid}`)).toBe(true);
      expect(cgroupDirsOf(id).length).toBeGreaterThan(0);

      const ps = pivot(["ps", "-a"]).stdout;
      expect(ps).toMatch(/Created +halfway\n/);
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await Bun.sleep(20);
      expect(existsSync(`/proc/${pid}`)).toBe(false);
      expect(existsSync(join(runtimeRoot, id))).toBe(false);
      expect(cgroupDirsOf(id)).toEqual([]);
      expect(mountsUnder(bundle)).toEqual([]);
      // And it starts as any created container does.
      expect(pivot(["start", "halfway"]).status).toBe(0);
      expect(pivot(["ps", "-q", "--no-trunc"]).stdout).toBe(`${id}\n`);
    } finally {
      expect(pivot(["rm", "-f", "halfway"]).status).toBe(0);
    }
    expect(mountsUnder(bundle)).toEqual([]);
    expect(cgroupDirsOf(id)).toEqual([]);
  }, 60_000);

  test("a run --rm that died before its start completed: ps removes what it left; a create --rm stays", async () => {
    // Made deterministically: two created --rm containers with free locks, one marked as a run's
    // (as `pivot run` writes it before it starts the container under the same lock), with a
    // process the runtime created for it (its init waiting on the exec fifo, its cgroups made).
    const kept = pivot(["create", "--rm", "--name", "kept", IMAGE, "true"]).stdout.trim();
    const id = pivot(["create", "--rm", "--name", "byrun", IMAGE, "sleep", "300"]).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const recordPath = join(t.root, "containers", id, "container.json");
    const record = JSON.parse(readFileSync(recordPath, "utf8")) as Record<string, unknown>;
    writeFileSync(recordPath, JSON.stringify({ ...record, createdByRun: true }));
    const runtimeRoot = join(t.root, "run", "runtime");
    const bundle = join(t.root, "containers", id);
    const r = spawnSync(
      BUN,
      [RUNTIME_CLI, "--root", runtimeRoot, "create", "--bundle", bundle, id],
      {
        stdio: "ignore",
        timeout: 30_000,
      },
    );
    expect(r.status).toBe(0);
    const pid = runtimePid(runtimeRoot, id);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    expect(mountsUnder(bundle).length).toBeGreaterThan(0);

    const ps = pivot(["ps", "-a"]).stdout;
    expect(ps).toMatch(/Created +kept\n/);
    expect(ps).not.toContain("byrun");
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await Bun.sleep(20);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(join(runtimeRoot, id))).toBe(false);
    expect(existsSync(bundle)).toBe(false);
    expect(mountsUnder(bundle)).toEqual([]);
    expect(cgroupDirsOf(id)).toEqual([]);
    // Its name is free again.
    expect(pivot(["create", "--name", "byrun", IMAGE, "true"]).status).toBe(0);
    expect(pivot(["rm", "byrun", kept]).status).toBe(0);

    // The same for real: runs killed at staggered moments. Whatever each had done, once their
    // containers' processes have ended, ps leaves nothing of them.
    const runs = Array.from({ length: 6 }, (_, i) =>
      pivotAsync(["run", "--rm", "--name", `rmrun${i}`, IMAGE, "sleep", "1"], (p) => {
        setTimeout(
          () => {
            try {
              process.kill(p, "SIGKILL");
            } catch {}
          },
          120 + i * 50,
        );
      }),
    );
    await Promise.all(runs);
    await Bun.sleep(1500);
    pivot(["ps", "-a"]);
    expect(pivot(["ps", "-a", "--format", "{{.Names}}"]).stdout).not.toContain("rmrun");
    expect(readdirSync(join(t.root, "containers"))).toEqual([]);
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
    expect(readdirSync(join(t.root, "names"))).toEqual([]);
  }, 60_000);

  test("an attached start in that same window, alive (stopped there), is left alone by ps", async () => {
    // The attached pivot is stopped (SIGSTOP) while the runtime has the process and state.json
    // is not written yet; it holds the container's lock, so ps must not take it for a dead start.
    const runtimeRoot = join(t.root, "run", "runtime");
    const containers = join(t.root, "containers");
    const list = () => (existsSync(containers) ? readdirSync(containers) : []);
    const existing = new Set(list());
    let caught = false;
    for (let attempt = 0; attempt < 5 && !caught; attempt++) {
      const name = `window${attempt}`;
      let pid = 0;
      const run = pivotAsync(
        ["run", "--name", name, IMAGE, "sh", "-c", "sleep 1; echo done"],
        (p) => {
          pid = p;
        },
      );
      let id = "";
      for (let i = 0; i < 5000 && !caught; i++) {
        id ||= list().find((d) => !existing.has(d) && /^[0-9a-f]{64}$/.test(d)) ?? "";
        if (
          id &&
          existsSync(join(runtimeRoot, id, "state.json")) &&
          !existsSync(join(containers, id, "state.json"))
        ) {
          process.kill(pid, "SIGSTOP");
          // Still in the window once stopped: state.json was not written meanwhile.
          caught = !existsSync(join(containers, id, "state.json"));
          if (!caught) process.kill(pid, "SIGCONT");
          break;
        }
        Bun.sleepSync(1);
      }
      if (caught) {
        try {
          expect(pivot(["ps", "-a"]).status).toBe(0);
          expect(existsSync(join(runtimeRoot, id))).toBe(true);
        } finally {
          process.kill(pid, "SIGCONT");
        }
      }
      const r = await run;
      expect(r.status).toBe(0);
      expect(r.stdout).toBe("done\n");
      if (id) existing.add(id);
      expect(pivot(["rm", "-f", name]).status).toBe(0);
    }
    expect(caught).toBe(true);
  }, 120_000);

  test("an attached run --rm killed after its container exited, before its removal: ps removes it, wait gives the code", async () => {
    const containers = join(t.root, "containers");
    const list = () => (existsSync(containers) ? readdirSync(containers) : []);
    const existing = new Set(list());
    let pid = 0;
    const run = pivotAsync(["run", "--rm", IMAGE, "sh", "-c", "sleep 1; exit 3"], (p) => {
      pid = p;
    });
    // Running: state.json written, and the run's hold of the container's lock released.
    let id = "";
    for (let i = 0; i < 2000 && !(id && existsSync(join(containers, id, "state.json"))); i++) {
      id ||= list().find((d) => !existing.has(d) && /^[0-9a-f]{64}$/.test(d)) ?? "";
      await Bun.sleep(5);
    }
    expect(id).not.toBe("");
    // The container's lock held here: after the exit, the run's removal waits for it, and the run
    // is killed there (as a kill -9 or a crash in the middle of the removal would end it).
    await withFileLock(join(t.root, "locks", `container-${id}.lock`), async () => {
      const init = (
        JSON.parse(readFileSync(join(containers, id, "state.json"), "utf8")) as {
          pid: number;
        }
      ).pid;
      for (let i = 0; i < 1000 && existsSync(`/proc/${init}`); i++) await Bun.sleep(10);
      await Bun.sleep(500); // its output drained, the removal waiting for the lock
      process.kill(pid, "SIGKILL");
      await run;
    });
    expect(pivot(["ps", "-a", "-q", "--no-trunc"]).stdout).not.toContain(id);
    expect(existsSync(join(containers, id))).toBe(false);
    const w = pivot(["wait", id]);
    expect({ status: w.status, stdout: w.stdout }).toEqual({ status: 0, stdout: "3\n" });
  }, 60_000);

  test("a simulated reboot: overlay unmounted, runtime state gone; ps -a tells the truth, start and rm work", async () => {
    const id = pivot(["run", "-d", "--name", "boot", IMAGE, "sleep", "300"]).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const before = (JSON.parse(pivot(["inspect", id]).stdout) as Info[])[0]!;
    expect(before.state.status).toBe("running");
    expect(cgroupDirsOf(id).length).toBeGreaterThan(0);
    // What a reboot does: every process dies, mounts and /run are gone.
    killOurConmons();
    process.kill(before.state.pid, "SIGKILL");
    for (let i = 0; i < 100 && existsSync(`/proc/${before.state.pid}`); i++) await Bun.sleep(20);
    for (const m of mountsUnder(join(t.root, "containers", id)).reverse()) {
      expect(spawnSync("umount", [m]).status).toBe(0);
    }
    rmSync(join(t.root, "run"), { recursive: true, force: true });

    const ps = pivot(["ps", "-a"]);
    expect(ps.status).toBe(0);
    expect(ps.stdout).toMatch(/Exited \(255\) .* boot\n/);
    expect(pivot(["ps", "-q"]).stdout).toBe("");
    // The cgroup the runtime could no longer delete is gone too.
    expect(cgroupDirsOf(id)).toEqual([]);
    // It can run again, and be removed.
    expect(pivot(["start", "boot"]).status).toBe(0);
    expect(pivot(["ps", "-q", "--no-trunc"]).stdout).toBe(`${id}\n`);
    expect(pivot(["rm", "-f", "boot"]).status).toBe(0);
    expect(mountsUnder(t.root)).toEqual([]);
    expect(cgroupDirsOf(id)).toEqual([]);
    expect(readdirSync(join(t.root, "containers"))).toEqual([]);
  }, 60_000);
});
