// The `pivot` command line over the engine, as a subprocess, with real containers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import { IMAGE, makeTestEngine, mountsUnder, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-cli-scratch-"));
  chmodSync(scratch, 0o755); // readable by the container's user nobody
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const pivot = (args: string[], input?: string) => pivotCli(t.root, args, { input });

describe.skipIf(!isRoot)("pivot CLI", () => {
  test("run --rm: output and exit code pass through", () => {
    const r = pivot(["run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    expect(r).toEqual({ status: 5, stdout: "out\n", stderr: "err\n" });
  });

  test("run flags: -e, --env-file, -w, -u, -v, --hostname, -l, combined -i", () => {
    const envFile = join(scratch, "env");
    writeFileSync(envFile, "# settings\nFROM_FILE=yes\n");
    writeFileSync(join(scratch, "in"), "bound\n");
    const r = pivot(
      [
        "run",
        "--rm",
        "-i",
        "-e",
        "A=1",
        "--env-file",
        envFile,
        "-w",
        "/w",
        "-u",
        "nobody",
        "-v",
        `${scratch}:/mnt:ro`,
        "--hostname",
        "clihost",
        "-l",
        "k=v",
        IMAGE,
        "sh",
        "-c",
        'read line; echo "$line|$A|$FROM_FILE|$(pwd)|$(id -u)|$(hostname)|$(cat /mnt/in)"',
      ],
      "typed\n",
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("typed|1|yes|/w|65534|clihost|bound\n");
    expect(r.status).toBe(0);
  });

  test("system info: the store and run roots; as root, not rootless and no id mappings", () => {
    const r = pivot(["system", "info"]);
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.slice(0, 4)).toEqual([
      `Root: ${t.root}`,
      `Run Root: ${join(t.root, "run")}`,
      "Rootless: false",
      "ID Mappings: none (the host's ids)",
    ]);
    expect(lines[4]).toStartWith("Storage Driver: ");
  });

  test("errors are one line with a hint, exit 125", () => {
    const missing = pivot(["run", "--pull", "never", "--rm", "localhost/nope:1", "true"]);
    expect(missing.status).toBe(125);
    expect(missing.stderr).toMatch(/not found/);
    expect(missing.stderr).toMatch(/hint:/);
    const created = pivot(["create", "--name", "dup", IMAGE, "true"]);
    expect(created.status).toBe(0);
    expect(created.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const dup = pivot(["create", "--name", "dup", IMAGE, "true"]);
    expect(dup.status).toBe(125);
    expect(dup.stderr).toMatch(/name "dup" is already in use/);
    expect(pivot(["rm", "dup"]).status).toBe(0);
    const bad = pivot(["run", "--rm", "-v", "relative/path:/x", IMAGE, "true"]);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/invalid volume name/);
  });

  test("volume create, ls, inspect, rm; a named volume persists across runs", () => {
    expect(pivot(["volume", "create", "clivol"]).stdout).toBe("clivol\n");
    expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).toContain("clivol");
    const info = JSON.parse(pivot(["volume", "inspect", "clivol"]).stdout) as {
      mountpoint: string;
    }[];
    expect(info[0]!.mountpoint).toBe(join(t.root, "volumes", "clivol", "_data"));
    expect(
      pivot(["run", "--rm", "-v", "clivol:/v", IMAGE, "sh", "-c", "echo 42 > /v/n"]).status,
    ).toBe(0);
    expect(readFileSync(join(info[0]!.mountpoint, "n"), "utf8")).toBe("42\n");
    expect(pivot(["run", "--rm", "-v", "clivol:/v", IMAGE, "cat", "/v/n"]).stdout).toBe("42\n");
    expect(pivot(["volume", "rm", "clivol"]).status).toBe(0);
    expect(pivot(["volume", "inspect", "clivol"]).status).toBe(125);
  });

  test("rm -f from another shell of an attached run: the run ends quietly with 137; nothing left", async () => {
    // Twice: as it comes, and with the attached pivot stopped (SIGSTOP) while rm -f runs, so
    // it records the exit only after the container's directory is gone (the order a rootless
    // run always had: ENOENT on <dir>/exit and exit 125).
    for (const pauseMonitor of [false, true]) {
      const name = pauseMonitor ? "attached-paused" : "attached";
      const out = join(scratch, `${name}.out`);
      const err = join(scratch, `${name}.err`);
      const [o, e] = [openSync(out, "w"), openSync(err, "w")];
      let child: ChildProcess;
      try {
        child = spawn(
          BUN,
          [
            PIVOT_CLI,
            "--root",
            t.root,
            "run",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            "echo started; exec sleep 600",
          ],
          { stdio: ["ignore", o, e] },
        );
      } finally {
        closeSync(o);
        closeSync(e);
      }
      const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
      try {
        for (let i = 0; i < 400 && !readFileSync(out, "utf8").includes("started"); i++)
          await Bun.sleep(50);
        expect(readFileSync(out, "utf8")).toBe("started\n");
        const id = (JSON.parse(pivot(["inspect", name]).stdout) as { id: string }[])[0]!.id;
        const dir = join(t.root, "containers", id);
        const state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as {
          monitorPid: number;
          cgroupPaths?: Record<string, string>;
        };
        expect(state.monitorPid).toBe(child.pid!); // the attached pivot is the monitor
        if (pauseMonitor) process.kill(child.pid!, "SIGSTOP");
        const rm = pivot(["rm", "-f", name]);
        expect(rm).toEqual({ status: 0, stdout: `${name}\n`, stderr: "" });
        expect(existsSync(dir)).toBe(false);
        if (pauseMonitor) process.kill(child.pid!, "SIGCONT");
        expect(await exited).toBe(137);
        // Docker keeps a removed container's exit code a while for `wait`; so does Pivot.
        expect(pivot(["wait", id]).stdout).toBe("137\n");
        expect(readFileSync(out, "utf8")).toBe("started\n");
        expect(readFileSync(err, "utf8")).toBe("");
        expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
        expect(mountsUnder(dir)).toEqual([]);
        for (const p of Object.values(state.cgroupPaths ?? {})) expect(existsSync(p)).toBe(false);
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(child.pid!, "SIGCONT");
            process.kill(child.pid!, "SIGKILL");
          } catch {}
          await exited;
        }
        pivot(["rm", "-f", name]);
      }
    }
  }, 60_000);

  test.skipIf(!hasConmon)("run -d, ps, logs, exec, stop, ps -a, rm", () => {
    const run = pivot(["run", "-d", "--name", "web", IMAGE, "sh", "-c", "echo ready; sleep 30"]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const id = run.stdout.trim();
    const ps = pivot(["ps"]);
    expect(ps.stdout).toMatch(/CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+NAMES/);
    expect(ps.stdout).toContain(id.slice(0, 12));
    expect(ps.stdout).toMatch(/Up .* web\n/);
    let logs = "";
    for (let i = 0; i < 50 && logs !== "ready\n"; i++) {
      logs = pivot(["logs", "web"]).stdout;
      if (logs !== "ready\n") Bun.sleepSync(50);
    }
    expect(logs).toBe("ready\n");
    expect(pivot(["logs", "-t", "web"]).stdout).toMatch(/^\d{4}-\d\d-\d\dT\S+ ready\n$/);
    const ex = pivot(["exec", "-e", "X=from-exec", "web", "sh", "-c", "echo $X; exit 3"]);
    expect(ex).toEqual({ status: 3, stdout: "from-exec\n", stderr: "" });
    expect(pivot(["stop", "-t", "1", "web"]).status).toBe(0);
    expect(pivot(["ps", "-a"]).stdout).toMatch(/Exited \(137\) .* web\n/);
    expect(pivot(["ps", "-q"]).stdout).toBe("");
    expect(pivot(["wait", "web"]).stdout).toBe("137\n");
    expect(pivot(["inspect", "web"]).stdout).toContain(`"exitCode": 137`);
    expect(pivot(["rm", "web"]).stdout).toBe("web\n");
    expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
  });

  test.skipIf(!hasConmon)(
    "logs -f follows: a line shows while the container runs, the next once written, and it ends when the container does",
    async () => {
      // The container prints its second line only once told to, after the first was seen.
      const program = "echo first; until [ -e /tmp/go ]; do sleep 0.1; done; echo second";
      expect(pivot(["run", "-d", "--name", "ticker", IMAGE, "sh", "-c", program]).status).toBe(0);
      const follower = spawn(BUN, [PIVOT_CLI, "--root", t.root, "logs", "-f", "ticker"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      follower.stdout!.on("data", (d) => {
        out += d;
      });
      let exitCode: number | null | undefined;
      const exited = new Promise<void>((resolve) =>
        follower.on("exit", (code) => {
          exitCode = code;
          resolve();
        }),
      );
      try {
        for (let i = 0; i < 200 && !out.includes("first\n") && exitCode === undefined; i++)
          await Bun.sleep(50);
        expect({ exitCode, out }).toEqual({ exitCode: undefined, out: "first\n" });
        expect(pivot(["exec", "ticker", "touch", "/tmp/go"]).status).toBe(0);
        await exited;
        expect({ exitCode, out }).toEqual({ exitCode: 0, out: "first\nsecond\n" });
      } finally {
        follower.kill("SIGKILL");
        pivot(["rm", "-f", "ticker"]);
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "restart runs the container again, its log kept; logs --tail and --since pick the last and the recent lines",
    async () => {
      const run = pivot(["run", "-d", "--name", "again", IMAGE, "sh", "-c", "echo up; sleep 30"]);
      expect(run.status).toBe(0);
      const logsAre = async (want: string) => {
        let logs = "";
        for (let i = 0; i < 100 && logs !== want; i++) {
          logs = pivot(["logs", "again"]).stdout;
          if (logs !== want) await Bun.sleep(50);
        }
        expect(logs).toBe(want);
      };
      try {
        await logsAre("up\n");
        const state = () => JSON.parse(pivot(["inspect", "again"]).stdout)[0].state;
        const before = state();
        expect(pivot(["restart", "-t", "1", "again"])).toEqual({
          status: 0,
          stdout: "again\n",
          stderr: "",
        });
        await logsAre("up\nup\n");
        expect(pivot(["ps", "-q", "--no-trunc"]).stdout).toBe(run.stdout);
        const after = state();
        expect(after.running).toBe(true);
        expect(after.pid).not.toBe(before.pid);
        expect(pivot(["logs", "--tail", "1", "again"]).stdout).toBe("up\n");
        expect(pivot(["logs", "--tail", "0", "again"]).stdout).toBe("");
        const stamped = pivot(["logs", "-t", "again"]).stdout.trim().split("\n");
        expect(stamped).toHaveLength(2);
        const secondTime = stamped[1]!.split(" ")[0]!;
        expect(pivot(["logs", "-t", "--since", secondTime, "again"]).stdout).toBe(
          `${stamped[1]}\n`,
        );
      } finally {
        pivot(["rm", "-f", "again"]);
      }
    },
    30_000,
  );

  test("logs of a long log through a pipe: all of it, in order, to a slow reader; `| head -1` ends it", () => {
    const lines = 200_000;
    const cli = `${BUN} ${PIVOT_CLI} --root ${t.root}`;
    const shell = (script: string) => {
      const r = spawnSync("bash", ["-c", `set -o pipefail; ${script}`], {
        encoding: "utf8",
        timeout: 60_000,
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    try {
      // stderr's lines first; the pause lets the monitor log them all before stdout's begin.
      const program = `seq 1 ${lines} >&2; sleep 0.5; seq 1 ${lines}`;
      expect(
        shell(`${cli} run --name longlog ${IMAGE} sh -c '${program}' >/dev/null 2>&1`).status,
      ).toBe(0);
      // The reader starts late: the pipe fills, and the writer waits instead of buffering the log.
      const all = shell(`${cli} logs longlog 2>/dev/null | (sleep 0.5; md5sum)`);
      const expected = spawnSync("sh", ["-c", `seq 1 ${lines} | md5sum`], { encoding: "utf8" });
      expect(all).toEqual({ status: 0, stdout: expected.stdout, stderr: "" });
      // stderr's lines come out first, each line on the fd it was logged from.
      const both = shell(`${cli} logs longlog 2>&1 | sed -n '1p;${lines}p;${lines + 1}p;$p'`);
      expect(both).toEqual({ status: 0, stdout: `1\n${lines}\n1\n${lines}\n`, stderr: "" });
      const head = shell(`${cli} logs longlog 2>/dev/null | head -1`);
      expect(head).toEqual({ status: 0, stdout: "1\n", stderr: "" });
    } finally {
      pivot(["rm", "-f", "longlog"]);
    }
  });
});
