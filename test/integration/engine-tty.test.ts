// Terminals: `pivot run -it`, `exec -it` and `attach` driven through a real pty (Python's pty
// module plays the person at the keyboard), window sizes, Ctrl-C, Ctrl-P Ctrl-Q; the library's
// tty with pipes; `wait` on a detached --rm container.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import { IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli, REPO } from "../helpers.ts";

const DRIVER = join(REPO, "test/fixtures/pty-drive.py");
const hasConmon = findConmon() !== null;
const hasPython = spawnSync("python3", ["-c", "import pty"]).status === 0;

let t: TestEngine;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
});

afterAll(async () => {
  await t?.cleanup();
});

type Step =
  | { expect: string; timeout?: number }
  | { send: string }
  | { resize: [number, number] }
  | { sleep: number };

interface Driven {
  exit: number | null;
  output: string;
  failed: unknown;
}

/** Runs `pivot ARGS` under a pty of rows×cols and plays the steps. */
function drive(
  args: string[],
  steps: Step[],
  options: { rows?: number; cols?: number; env?: Record<string, string> } = {},
): Driven {
  const r = spawnSync("python3", [DRIVER], {
    input: JSON.stringify({
      cmd: [BUN, PIVOT_CLI, "--root", t.root, ...args],
      rows: options.rows ?? 24,
      cols: options.cols ?? 80,
      steps,
      exitTimeout: 20,
    }),
    encoding: "utf8",
    timeout: 90_000,
    env: { ...process.env, ...options.env },
  });
  if (r.status !== 0) throw new Error(`pty driver failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Driven;
}

const pivot = (args: string[]) => pivotCli(t.root, args);

const CTRL_C = "\u0003";
const CTRL_P_Q = "\u0010\u0011";

/** A session that checks the size, resizes, interrupts a command and exits with 5. */
const session: Step[] = [
  { expect: "# " },
  { send: "stty size\r" },
  { expect: "30 100" },
  { resize: [40, 120] },
  { sleep: 0.3 },
  { send: "stty size; tty; echo $TERM\r" },
  { expect: "40 120\\r\\n/dev/pts/\\d+\\r\\nxterm" },
  { send: "sleep 100\r" },
  { sleep: 0.5 },
  { send: CTRL_C },
  { expect: "# " },
  { send: "echo $((6*7))\r" },
  { expect: "42" },
  { send: "exit 5\r" },
];

describe.skipIf(!isRoot || !hasPython)("engine: terminals", () => {
  test.skipIf(!hasConmon)(
    "run -it --rm (under conmon): the pty's size follows the terminal, Ctrl-C reaches the container, the exit code comes back, nothing is left",
    () => {
      const r = drive(["run", "-it", "--rm", "--name", "tty-rm", IMAGE, "sh"], session, {
        rows: 30,
        cols: 100,
      });
      expect(r.failed).toBeNull();
      expect(r.exit).toBe(5);
      expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
    },
    60_000,
  );

  test("run -it without conmon: this process monitors, the console socket's master goes through pivot-tty", () => {
    const r = drive(["run", "-it", "--rm", IMAGE, "sh"], session, {
      rows: 30,
      cols: 100,
      env: { PIVOT_CONMON: "/nonexistent" },
    });
    expect(r.failed).toBeNull();
    expect(r.exit).toBe(5);
  }, 60_000);

  test.skipIf(!hasConmon)(
    "Ctrl-P Ctrl-Q detaches from run -it; attach joins again; the container's exit ends attach with its code",
    () => {
      const a = drive(
        ["run", "-it", "--name", "tty-detach", IMAGE, "sh"],
        [{ expect: "# " }, { send: "echo one$((1+1))\r" }, { expect: "one2" }, { send: CTRL_P_Q }],
      );
      expect(a.failed).toBeNull();
      expect(a.exit).toBe(0);
      expect(pivot(["inspect", "tty-detach"]).stdout).toContain('"status": "running"');
      const b = drive(
        ["attach", "tty-detach"],
        [
          { sleep: 0.5 },
          { send: "stty size; echo two$((1+1))\r" },
          { expect: "33 77\\r\\ntwo2" },
          { send: "exit 4\r" },
        ],
        { rows: 33, cols: 77 },
      );
      expect(b.failed).toBeNull();
      expect(b.exit).toBe(4);
      expect(pivot(["inspect", "tty-detach"]).stdout).toContain('"exitCode": 4');
      expect(pivot(["rm", "tty-detach"]).status).toBe(0);
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "exec -it: a shell on a new pty of the terminal's size; -t alone gives a terminal without input",
    () => {
      expect(pivot(["run", "-d", "--name", "tty-exec", IMAGE, "sleep", "1000"]).status).toBe(0);
      const r = drive(
        ["exec", "-it", "tty-exec", "sh"],
        [
          { expect: "# " },
          { send: "stty size; tty; echo $TERM\r" },
          { expect: "25 90\\r\\n/dev/pts/\\d+\\r\\nxterm" },
          { send: "exit 3\r" },
        ],
        { rows: 25, cols: 90 },
      );
      expect(r.failed).toBeNull();
      expect(r.exit).toBe(3);
      const plain = pivot(["exec", "-t", "tty-exec", "sh", "-c", "tty; exit 6"]);
      expect(plain.status).toBe(6);
      expect(plain.stdout).toMatch(/^\/dev\/pts\/\d+\r\n$/);
      expect(pivot(["rm", "-f", "tty-exec"]).status).toBe(0);
    },
    60_000,
  );

  test("library: tty with pipes (the handle's stdout carries the terminal's output)", async () => {
    const c = await t.engine.run({
      image: IMAGE,
      cmd: ["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; read x; echo got-$x; exit 2"],
      tty: true,
      stdin: true,
      autoRemove: true,
    });
    let out = "";
    c.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    c.stdin?.write("hello\n");
    expect(await c.wait()).toBe(2);
    expect(out).toContain("is-a-tty\r\n");
    expect(out).toContain("got-hello\r\n");
    expect(existsSync(join(t.root, "run/tty"))).toBe(true);
  }, 30_000);
});

describe.skipIf(!isRoot || !hasConmon)("engine: wait", () => {
  test("wait on a detached --rm container returns its exit code even when cleanup removed it first", async () => {
    for (let i = 0; i < 5; i++) {
      const c = await t.engine.run({
        image: IMAGE,
        cmd: ["sh", "-c", `exit ${10 + i}`],
        detach: true,
        autoRemove: true,
      });
      if (i % 2) await new Promise((r) => setTimeout(r, 1500)); // removed before wait starts
      expect(await t.engine.wait(c.id)).toBe(10 + i);
    }
  }, 60_000);
});
