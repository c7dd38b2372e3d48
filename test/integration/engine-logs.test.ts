// Container logs with --log-driver and --log-opt: a size limit under both monitors (conmon for
// -d, the pivot process for an attached run), `logs -f` going on when the log starts over, the
// none driver, and mistakes refused before anything exists. Root, real containers.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
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

/** A shell loop printing `count` numbered lines of ~40 bytes, then "end". */
const printLines = (count: number, pause = "") =>
  `i=0; while [ $i -lt ${count} ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); ${pause} done; echo end`;

const logPathOf = (name: string) => pivot(["inspect", "-f", "{{.LogPath}}", name]).stdout.trim();

/** Waits until the container has exited (pivot wait), so that its whole output is logged. */
function waitFor(name: string): void {
  expect(pivot(["wait", name]).status).toBe(0);
}

describe.skipIf(!isRoot || !hasConmon)("pivot logs: --log-driver and --log-opt", () => {
  test("max-size under conmon (-d): the log starts over and never exceeds the limit", () => {
    const r = pivot([
      "run",
      "-d",
      "--name",
      "big",
      "--log-opt",
      "max-size=4k",
      IMAGE,
      "sh",
      "-c",
      printLines(300),
    ]);
    expect(r.status).toBe(0);
    waitFor("big");
    // 301 lines of ~80 bytes in the log's format: ~24 KB without the limit.
    expect(statSync(logPathOf("big")).size).toBeLessThanOrEqual(4096);
    const lines = pivot(["logs", "big"]).stdout.trimEnd().split("\n");
    expect(lines.at(-1)).toBe("end");
    expect(lines.at(-2)).toBe("line-299-xxxxxxxxxxxxxxxxxxxxxxxx");
    expect(lines[0]).not.toBe("line-0-xxxxxxxxxxxxxxxxxxxxxxxx"); // the start is gone
    expect(lines.length).toBeLessThan(60);
    expect(pivot(["logs", "--tail", "2", "big"]).stdout).toBe(
      "line-299-xxxxxxxxxxxxxxxxxxxxxxxx\nend\n",
    );
    expect(pivot(["inspect", "-f", "{{json .HostConfig.LogConfig}}", "big"]).stdout.trim()).toBe(
      '{"Type":"k8s-file","Config":{"max-size":"4k"}}',
    );
  }, 60_000);

  test("max-size under conmon (-d): a restarted container's log still never exceeds the limit", () => {
    // conmon 2.1.6 counts from 0 at each start: the third run took the log past 4k.
    const r = pivot([
      "run",
      "-d",
      "--name",
      "again",
      "--log-opt",
      "max-size=4k",
      IMAGE,
      "sh",
      "-c",
      printLines(20),
    ]);
    expect(r.status).toBe(0);
    waitFor("again");
    const path = logPathOf("again");
    expect(statSync(path).size).toBeGreaterThan(1024); // ~1.6k a run
    for (let run = 2; run <= 3; run++) {
      expect(pivot(["start", "again"]).status).toBe(0);
      waitFor("again");
      expect(statSync(path).size).toBeLessThanOrEqual(4096);
      // The run before is kept while there is room for it (the second run), as Docker's.
      const ends = pivot(["logs", "again"]).stdout.match(/^end$/gm)?.length;
      expect(ends).toBe(run === 2 ? 2 : 1);
    }
  }, 60_000);

  test("max-size attached: the pivot process's own log writer keeps the same limit", () => {
    const r = pivot([
      "run",
      "--name",
      "att",
      "--log-driver",
      "json-file",
      "--log-opt",
      "max-size=4k",
      IMAGE,
      "sh",
      "-c",
      printLines(300),
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout.split("\n").length).toBe(302); // the terminal gets everything
    expect(statSync(logPathOf("att")).size).toBeLessThanOrEqual(4096);
    const lines = pivot(["logs", "att"]).stdout.trimEnd().split("\n");
    expect(lines.at(-1)).toBe("end");
    expect(lines[0]).not.toBe("line-0-xxxxxxxxxxxxxxxxxxxxxxxx");
    // json-file is taken for k8s-file, and inspect says what was asked, as podman's does.
    expect(pivot(["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "att"]).stdout.trim()).toBe(
      "json-file",
    );
  }, 60_000);

  test("logs -f follows the log into its new file when it starts over", async () => {
    const r = pivot([
      "run",
      "-d",
      "--name",
      "follow",
      "--log-opt",
      "max-size=2k",
      IMAGE,
      "sh",
      "-c",
      printLines(150, "usleep 10000;"),
    ]);
    expect(r.status).toBe(0);
    const follower = spawn(BUN, [PIVOT_CLI, "--root", t.root, "logs", "-f", "follow"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    follower.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => follower.kill("SIGKILL"), 45_000);
      follower.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0); // ended with the container, not by the timer
    const lines = out.trimEnd().split("\n");
    // The log started over ~4 times (150 lines of ~80 bytes in 2 KB files): the follower still
    // saw the last lines, in order, each once.
    expect(lines.at(-1)).toBe("end");
    expect(lines).toContain("line-149-xxxxxxxxxxxxxxxxxxxxxxxx");
    const numbers = lines.slice(0, -1).map((l) => Number(/^line-(\d+)-/.exec(l)?.[1]));
    expect(numbers.every((n, i) => i === 0 || n > numbers[i - 1]!)).toBe(true);
    expect(numbers.length).toBeGreaterThan(100); // it kept up, rather than only the last file
  }, 60_000);

  test("logs --since takes Docker's times: Go durations (1h30m), Unix seconds, RFC 3339", () => {
    expect(pivot(["run", "--name", "since", IMAGE, "echo", "hello"]).status).toBe(0);
    expect(pivot(["logs", "--since", "1h30m", "since"]).stdout).toBe("hello\n");
    expect(pivot(["logs", "--since", "1.5h", "since"]).stdout).toBe("hello\n");
    expect(pivot(["logs", "--since", "0", "since"]).stdout).toBe("hello\n");
    const later = new Date(Date.now() + 3_600_000).toISOString();
    expect(pivot(["logs", "--since", later, "since"]).stdout).toBe("");
    const bad = pivot(["logs", "--since", "soon", "since"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--since soon: not a time");
  }, 60_000);

  test("--log-driver none: no log file, `logs` says why, the output still reaches an attached run", () => {
    const d = pivot(["run", "-d", "--name", "quiet", "--log-driver", "none", IMAGE, "echo", "hi"]);
    expect(d.status).toBe(0);
    waitFor("quiet");
    expect(existsSync(logPathOf("quiet"))).toBe(false);
    const logs = pivot(["logs", "quiet"]);
    expect(logs.status).not.toBe(0);
    expect(logs.stderr).toContain("configured logging driver does not support reading");
    const a = pivot(["run", "--name", "quiet2", "--log-driver", "none", IMAGE, "echo", "attached"]);
    expect(a).toEqual({ status: 0, stdout: "attached\n", stderr: "" });
    expect(existsSync(logPathOf("quiet2"))).toBe(false);
  }, 60_000);

  test("mistaken log flags are refused before anything exists", () => {
    const cases: [string[], string][] = [
      [["--log-driver", "syslog"], 'unknown log driver "syslog"'],
      [["--log-opt", "max-file=3"], "only one log file is kept"],
      [["--log-opt", "compress=true"], 'unknown log option "compress"'],
      [["--log-opt", "max-size=0"], "must be above 0"],
      [["--log-opt", "max-size=lots"], 'invalid size "lots"'],
      [["--log-opt", "max-size"], 'invalid --log-opt "max-size"'],
      [
        ["--log-driver", "none", "--log-opt", "max-size=1m"],
        "the none log driver takes no options",
      ],
    ];
    for (const [flags, message] of cases) {
      const r = pivot(["run", "-d", ...flags, IMAGE, "true"]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(message);
    }
    expect(pivot(["ps", "-aq"]).stdout).toBe("");
    expect(readdirSync(join(t.root, "containers"))).toEqual([]);
  }, 60_000);
});
