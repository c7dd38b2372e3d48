// The `pivot` commands beyond run/exec: --runtime (runc), --init (tini), ps --filter/--format,
// stats, top, pause/unpause, rename, container/volume prune, and errors people can act on.
// Root, real containers under conmon, images built without network.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findInit } from "../../src/engine/init.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { IMAGE, makeTestEngine, mountsUnder, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

const RUNC = "/usr/sbin/runc";
const hasConmon = findConmon() !== null;
const hasRunc = existsSync(RUNC);
const hasInit = findInit() !== null;

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot || !hasConmon) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-cmd-scratch-"));
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 120_000);

// Whatever a failed test left goes before the next one.
afterEach(() => {
  if (!t) return;
  const ids = pivot(["ps", "-aq"]).stdout.split("\n").filter(Boolean);
  if (ids.length) pivot(["rm", "-f", "-v", ...ids]);
}, 120_000);

const pivot = (args: string[], options: { input?: string; uid?: number } = {}) =>
  pivotCli(t.root, args, { ...options, timeoutMs: 60_000 });

/** Container cgroup directories (pivot-<id>) in the memory hierarchy, or the unified one. */
function pivotCgroups(): string[] {
  const out: string[] = [];
  for (const h of ["memory", "pids", "unified", ""]) {
    const dir = join("/sys/fs/cgroup", h);
    try {
      out.push(...readdirSync(dir).filter((e) => /^pivot-[0-9a-f]{64}$/.test(e)));
    } catch {}
  }
  return out.sort();
}

function runD(args: string[]): string {
  const r = pivot(["run", "-d", ...args]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return r.stdout.trim();
}

describe.skipIf(!isRoot || !hasConmon)("pivot: more commands", () => {
  test.skipIf(!hasRunc)(
    "--runtime runc: attached --rm works and leaves nothing behind",
    () => {
      const before = pivotCgroups();
      const r = pivot(["run", "--runtime", RUNC, "--rm", IMAGE, "echo", "hi"]);
      expect(r).toEqual({ status: 0, stdout: "hi\n", stderr: "" });
      expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
      expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
      expect(readdirSync(join(t.root, "containers"))).toEqual([]);
      const state = join(t.root, "run", "oci", "runc");
      expect(existsSync(state) ? readdirSync(state).filter((e) => !e.startsWith(".")) : []).toEqual(
        [],
      );
      expect(pivotCgroups()).toEqual(before);
      // The exit code passes through.
      expect(pivot(["run", "--runtime", RUNC, "--rm", IMAGE, "sh", "-c", "exit 6"]).status).toBe(6);
    },
    60_000,
  );

  test.skipIf(!hasRunc)(
    "--runtime runc, detached under conmon: exec, stats, pause, stop, rm",
    () => {
      const id = runD(["--runtime", RUNC, "--name", "viarunc", IMAGE, "sleep", "300"]);
      // runc holds its state, not pivot-runtime.
      expect(existsSync(join(t.root, "run", "oci", "runc", id))).toBe(true);
      expect(existsSync(join(t.root, "run", "runtime", id))).toBe(false);
      const ex = pivot(["exec", "viarunc", "sh", "-c", "echo in; exit 4"]);
      expect(ex).toEqual({ status: 4, stdout: "in\n", stderr: "" });
      expect(
        pivot(["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "viarunc"]).stdout,
      ).toBe("viarunc 1\n");
      expect(pivot(["pause", "viarunc"]).status).toBe(0);
      expect(pivot(["ps", "--format", "{{.Names}} {{.State}}"]).stdout).toBe("viarunc paused\n");
      expect(pivot(["unpause", "viarunc"]).status).toBe(0);
      expect(pivot(["stop", "-t", "1", "viarunc"]).status).toBe(0);
      // sleep as PID 1 ignores SIGTERM: SIGKILL after the timeout.
      expect(pivot(["wait", "viarunc"]).stdout).toBe("137\n");
      expect(pivot(["rm", "viarunc"]).status).toBe(0);
      expect(existsSync(join(t.root, "run", "oci", "runc", id))).toBe(false);
      expect(pivotCgroups().some((c) => c.includes(id))).toBe(false);
      expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
    },
    60_000,
  );

  test.skipIf(!hasInit)(
    "--init: tini is PID 1, the command its child; signals and exit codes pass",
    () => {
      const r = pivot(["run", "--rm", "--init", IMAGE, "ps", "-o", "pid,ppid,args"]);
      expect(r.status).toBe(0);
      const rows = r.stdout
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => l.trim().split(/\s+/));
      expect(rows[0]!.slice(0, 3)).toEqual(["1", "0", "/sbin/docker-init"]);
      expect(rows.some((row) => row[1] === "1" && row[2] === "ps")).toBe(true);
      expect(pivot(["run", "--rm", "--init", IMAGE, "sh", "-c", "exit 7"]).status).toBe(7);
      // A shell as PID 1 ignores SIGTERM; under tini it gets it and dies at once.
      runD(["--init", "--name", "initd", IMAGE, "sh", "-c", "sleep 300 & wait"]);
      const started = Date.now();
      expect(pivot(["stop", "-t", "20", "initd"]).status).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(pivot(["rm", "initd"]).status).toBe(0);
    },
    60_000,
  );

  test("ps --filter and --format", () => {
    const a = runD(["--name", "fa", "-l", "tier=web", IMAGE, "sleep", "300"]);
    const b = runD(["--name", "fb", "-l", "tier=db", IMAGE, "sleep", "300"]);
    expect(pivot(["run", "--name", "fc", IMAGE, "sh", "-c", "exit 3"]).status).toBe(3);
    expect(pivot(["create", "--name", "fd", IMAGE, "true"]).status).toBe(0);
    const names = (args: string[]) =>
      pivot(["ps", ...args, "--format", "{{.Names}}"])
        .stdout.split("\n")
        .filter(Boolean)
        .sort();
    expect(names([])).toEqual(["fa", "fb"]);
    expect(names(["-a"])).toEqual(["fa", "fb", "fc", "fd"]);
    expect(names(["--filter", "status=exited"])).toEqual(["fc"]);
    expect(names(["--filter", "status=created"])).toEqual(["fd"]);
    expect(names(["-a", "--filter", "exited=3"])).toEqual(["fc"]);
    expect(names(["--filter", "label=tier"])).toEqual(["fa", "fb"]);
    expect(names(["--filter", "label=tier=db"])).toEqual(["fb"]);
    expect(names(["-a", "--filter", "name=f[ab]"])).toEqual(["fa", "fb"]);
    expect(names(["-a", "--filter", `id=${a.slice(0, 8)}`])).toEqual(["fa"]);
    expect(names(["-a", "--filter", `ancestor=${IMAGE}`])).toEqual(["fa", "fb", "fc", "fd"]);
    expect(names(["-a", "--filter", "ancestor=localhost/other:1"])).toEqual([]);
    // Same key twice: either; different keys: both.
    expect(names(["-a", "--filter", "name=fa", "--filter", "name=fc"])).toEqual(["fa", "fc"]);
    expect(names(["-a", "--filter", "label=tier", "--filter", "status=running"])).toEqual([
      "fa",
      "fb",
    ]);
    expect(pivot(["ps", "-aq", "--no-trunc", "--filter", "name=fb"]).stdout).toBe(`${b}\n`);

    const line = pivot([
      "ps",
      "--filter",
      "name=fa",
      "--format",
      '{{.ID}} {{.Image}} {{.Command}} {{.Status}} {{.Label "tier"}}',
    ]);
    expect(line.stdout).toMatch(
      new RegExp(`^${a.slice(0, 12)} localhost/busybox:test "sleep 300" Up \\d+ seconds? web\\n$`),
    );
    const table = pivot([
      "ps",
      "-a",
      "--filter",
      "name=f[cd]",
      "--format",
      "table {{.Names}}\\t{{.State}}",
    ]);
    expect(table.stdout.split("\n")).toEqual([
      expect.stringMatching(/^NAMES +STATE$/),
      expect.stringMatching(/^f[cd] +(exited|created)$/),
      expect.stringMatching(/^f[cd] +(exited|created)$/),
      "",
    ]);
    const json = pivot(["ps", "--filter", "name=fb", "--format", "json"]).stdout;
    const obj = JSON.parse(json) as Record<string, string>;
    expect(obj.ID).toBe(b.slice(0, 12));
    expect(obj.Names).toBe("fb");
    expect(obj.State).toBe("running");
    expect(obj.Labels).toBe("tier=db");
    // Mistakes are named, with the fields to use.
    const bad = pivot(["ps", "--format", "{{.Nope}}"]);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/unknown field \.Nope.*\n {2}hint: fields: \{\{\.ID\}\}/);
    expect(pivot(["ps", "--filter", "colour=red"]).stderr).toMatch(/invalid filter "colour"/);
    expect(pivot(["rm", "-f", "fa", "fb", "fc", "fd"]).status).toBe(0);
  }, 60_000);

  test("stats --no-stream and live; top", async () => {
    runD(["--name", "st", "--memory", "64m", IMAGE, "sh", "-c", "while :; do :; done"]);
    const once = pivot(["stats", "--no-stream"]);
    expect(once.status).toBe(0);
    const [head, row, end] = once.stdout.split("\n");
    expect(head).toMatch(
      /^CONTAINER ID +NAME +CPU % +MEM USAGE \/ LIMIT +MEM % +NET I\/O +BLOCK I\/O +PIDS$/,
    );
    expect(row).toMatch(
      /^[0-9a-f]{12} +st +\d+\.\d\d% +[\d.]+[KMG]?i?B \/ 64MiB +\d+\.\d\d% +\S+ \/ \S+ +\S+ \/ \S+ +1$/,
    );
    expect(end).toBe("");
    // A busy loop uses CPU.
    const cpu = pivot(["stats", "--no-stream", "--format", "{{.CPUPerc}}", "st"]).stdout.trim();
    expect(Number.parseFloat(cpu)).toBeGreaterThan(5);

    // Live: a table every second until interrupted.
    const child = spawn(BUN, [PIVOT_CLI, "--root", t.root, "stats"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const closed = new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    for (let i = 0; i < 100 && (out.match(/CONTAINER ID/g) ?? []).length < 3; i++)
      await Bun.sleep(100);
    child.kill("SIGINT");
    expect(await closed).toBe(0);
    expect((out.match(/CONTAINER ID/g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect((out.match(/ st /g) ?? []).length).toBeGreaterThanOrEqual(3);

    const top = pivot(["top", "st"]);
    expect(top.status).toBe(0);
    const lines = top.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^UID +PID +PPID +C +STIME +TTY +TIME +CMD$/);
    expect(lines.length).toBe(2);
    expect(lines[1]).toMatch(/sh -c while :; do :; done$/);
    const custom = pivot(["top", "st", "-o", "pid,comm"]).stdout.trim().split("\n");
    expect(custom[0]).toMatch(/^PID +COMMAND$/);
    expect(custom[1]).toMatch(/^\d+ +sh$/);
    expect(pivot(["rm", "-f", "st"]).status).toBe(0);
    expect(pivot(["top", "st"]).stderr).toMatch(/no such container: st/);
  }, 30_000);

  test("pause, unpause; rename", () => {
    runD(["--name", "pz", IMAGE, "sleep", "300"]);
    expect(pivot(["pause", "pz"])).toEqual({ status: 0, stdout: "pz\n", stderr: "" });
    expect(pivot(["ps", "--format", "{{.Status}}"]).stdout).toMatch(
      /^Up \d+ seconds? \(Paused\)\n$/,
    );
    expect(pivot(["pause", "pz"]).stderr).toMatch(
      /is not running \(paused\)\n {2}hint: `pivot unpause`/,
    );
    expect(pivot(["unpause", "pz"])).toEqual({ status: 0, stdout: "pz\n", stderr: "" });
    expect(pivot(["ps", "--filter", "status=running", "--format", "{{.Names}}"]).stdout).toBe(
      "pz\n",
    );

    expect(pivot(["create", "--name", "other", IMAGE, "true"]).status).toBe(0);
    const taken = pivot(["rename", "pz", "other"]);
    expect(taken.status).toBe(125);
    expect(taken.stderr).toMatch(/name "other" is already in use/);
    expect(pivot(["rename", "pz", "renamed"])).toEqual({ status: 0, stdout: "", stderr: "" });
    expect(pivot(["ps", "--format", "{{.Names}}"]).stdout).toBe("renamed\n");
    expect(pivot(["inspect", "pz"]).status).toBe(125);
    // The old name is free again.
    expect(pivot(["create", "--name", "pz", IMAGE, "true"]).status).toBe(0);
    expect(pivot(["exec", "renamed", "true"]).status).toBe(0);
    expect(pivot(["rm", "-f", "renamed", "pz", "other"]).status).toBe(0);
  }, 60_000);

  test("container prune and volume prune", () => {
    runD(["--name", "keep", IMAGE, "sleep", "300"]);
    const exited = pivot(["run", "--name", "gone1", "-v", "/anon", IMAGE, "true"]);
    expect(exited.status).toBe(0);
    expect(pivot(["create", "--name", "gone2", "-l", "x=1", IMAGE, "true"]).status).toBe(0);
    expect(pivot(["volume", "create", "named"]).status).toBe(0);
    // Without -f it asks; "n" keeps everything.
    const asked = pivot(["container", "prune"], { input: "n\n" });
    expect(asked.stdout).toBe(
      "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
    );
    expect(pivot(["ps", "-aq"]).stdout.split("\n").filter(Boolean).length).toBe(3);
    // A label filter.
    const some = pivot(["container", "prune", "-f", "--filter", "label=x"]);
    expect(some.stdout).toMatch(/^Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space: \d/);
    const ids = pivot(["ps", "-aq", "--no-trunc"]).stdout;
    const pruned = pivot(["container", "prune", "-f"]);
    expect(pruned.status).toBe(0);
    expect(pruned.stdout).toMatch(
      /^Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space: \S+\n$/,
    );
    expect(ids).toContain(pruned.stdout.split("\n")[1]!);
    expect(pivot(["ps", "-a", "--format", "{{.Names}}"]).stdout).toBe("keep\n");

    // The anonymous volume of the removed container is unused now; "named" is kept without -a.
    const vols = () => pivot(["volume", "ls", "-q"]).stdout.split("\n").filter(Boolean);
    expect(vols().length).toBe(2);
    const vp = pivot(["volume", "prune", "-f"]);
    expect(vp.stdout).toMatch(/^Deleted Volumes:\n[0-9a-f]{64}\n\nTotal reclaimed space: \S+\n$/);
    expect(vols()).toEqual(["named"]);
    expect(pivot(["volume", "prune", "-f"]).stdout).toBe("Total reclaimed space: 0B\n");
    expect(pivot(["volume", "prune", "-f", "-a"]).stdout).toBe(
      "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n",
    );
    expect(pivot(["rm", "-f", "keep"]).status).toBe(0);
  }, 60_000);

  test("errors people can act on: one line and a hint; --debug adds the detail", () => {
    const lines = (s: string) => s.split("\n").filter(Boolean);
    // An image that is not here.
    const img = pivot(["run", "--pull", "never", "--rm", "localhost/nothere:1", "true"]);
    expect(img.status).toBe(125);
    expect(lines(img.stderr)).toEqual([
      expect.stringMatching(/^pivot: .*localhost\/nothere:1.*not found/),
      expect.stringMatching(/^ {2}hint: .*pivot pull.*pivot import/),
    ]);
    // A name in use.
    expect(pivot(["create", "--name", "dupe", IMAGE, "true"]).status).toBe(0);
    const dup = pivot(["run", "--name", "dupe", IMAGE, "true"]);
    expect(lines(dup.stderr)).toEqual([
      expect.stringMatching(
        /^pivot: the container name "dupe" is already in use by container [0-9a-f]{12}$/,
      ),
      expect.stringMatching(
        /^ {2}hint: remove that container \(`pivot rm dupe`\) or choose another name$/,
      ),
    ]);
    expect(pivot(["rm", "dupe"]).status).toBe(0);
    // Ports.
    const port = pivot(["run", "--rm", "--network", "bridge", "-p", "99999:80", IMAGE, "true"]);
    expect(port.status).toBe(125);
    expect(lines(port.stderr)).toEqual([
      expect.stringMatching(/^pivot: invalid host port "99999"/),
      expect.stringMatching(/^ {2}hint: /),
    ]);
    const noNet = pivot(["run", "--rm", "-p", "8080:80", IMAGE, "true"]);
    expect(lines(noNet.stderr)).toEqual([
      "pivot: -p, --ip and --network-alias need a network",
      expect.stringMatching(/^ {2}hint: add --network bridge/),
    ]);
    // Volumes: a bad name, a missing --mount source, a volume in use.
    const vname = pivot(["run", "--rm", "-v", "bad name:/x", IMAGE, "true"]);
    expect(lines(vname.stderr)).toEqual([
      expect.stringMatching(/^pivot: invalid volume name/),
      expect.stringMatching(/^ {2}hint: /),
    ]);
    const missing = join(scratch, "not-there");
    const src = pivot([
      "run",
      "--rm",
      "--mount",
      `type=bind,source=${missing},target=/x`,
      IMAGE,
      "true",
    ]);
    expect(lines(src.stderr)).toEqual([
      `pivot: bind source path does not exist: ${missing}`,
      expect.stringMatching(/^ {2}hint: create it first, or use -v/),
    ]);
    expect(existsSync(missing)).toBe(false);
    expect(pivot(["ps", "-aq"]).stdout).toBe("");
    expect(pivot(["create", "--name", "vuser", "-v", "busy:/data", IMAGE, "true"]).status).toBe(0);
    const inUse = pivot(["volume", "rm", "busy"]);
    expect(lines(inUse.stderr)).toEqual([
      "pivot: volume busy is in use by container vuser",
      expect.stringMatching(/^ {2}hint: remove the containers first/),
    ]);
    expect(pivot(["rm", "-v", "vuser"]).status).toBe(0);
    expect(pivot(["volume", "rm", "busy"]).status).toBe(0);
    // A user without subordinate ids: the rootless engine says what to add (engine-rootless.test.ts).
    const user = pivot(["ps"], { uid: 65534 });
    expect(user.status).toBe(125);
    expect(lines(user.stderr)).toEqual([
      expect.stringMatching(/^pivot: \/etc\/subuid has no range for nobody: /),
      expect.stringMatching(/^ {2}hint: as root: usermod --add-subuids 100000-165535 /),
    ]);
    // --debug: the stack too.
    const dbg = pivot(["--debug", "run", "--pull", "never", "--rm", "localhost/nothere:1", "true"]);
    expect(dbg.stderr).toMatch(/^pivot: .*not found.*\n {2}hint: .*\n\w*Error: .*\n +at /);
    expect(lines(img.stderr).some((l) => /^\s+at /.test(l))).toBe(false);
  }, 60_000);
});
