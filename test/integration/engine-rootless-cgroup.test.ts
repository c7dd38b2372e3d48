// A rootless container in a delegated cgroup v2 subtree (issue #7). The runtime gives a rootless
// container a cgroup only where the nearest existing ancestor of every one of its cgroup
// directories is writable by the user; on a hybrid host (v1 controllers, as this test machine)
// the v1 hierarchies never are, so a delegated v2 subtree alone would not do. The test therefore
// makes what a pure cgroup v2 host with systemd's Delegate=yes gives a user: a cgroup2 directory
// (in the host's real cgroup2 hierarchy) chowned to the test user, and runs each pivot command
// in a private mount namespace where that hierarchy alone is mounted at /sys/fs/cgroup, started
// from a process in the delegated directory (relative cgroup paths nest under the caller's, as
// under a user's systemd). On a pure v2 host the hierarchy is already the only one there.
// What cannot be tested here: resource limits, since every controller but hugetlb is bound to
// a v1 hierarchy on this host (the runtime refuses them, asserted below).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostCgroups } from "../../src/cgroups/hierarchy.ts";
import { mountsUnder } from "../fixtures/engine.ts";
import {
  makeRootlessUser,
  ROOTLESS_IMAGE,
  type RootlessUser,
  requireRoot,
  until,
} from "../fixtures/rootless-user.ts";
import { BUN, type CliResult, PIVOT_CLI } from "../helpers.ts";

requireRoot();

const host = hostCgroups();
const unified = host.hierarchies.find((h) => h.version === 2);
/** The delegated directory's name under the cgroup2 root. */
const DELEGATED = `pivot-test-delegated-${process.pid}`;
const delegated = unified ? join(unified.mountPoint, DELEGATED) : "";
let u: RootlessUser | undefined;

beforeAll(() => {
  if (!unified) return;
  u = makeRootlessUser("pivcg");
  // What systemd's Delegate=yes hands a user: the directory and the files that move processes
  // and enable controllers (cgroups(7), "Cgroups v2 delegation").
  mkdirSync(delegated);
  for (const f of ["", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"])
    chownSync(join(delegated, f), u.uid, u.gid);
}, 120_000);

/** The cgroup directories under the delegated one, deepest first. */
function cgroupsUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    out.push(...cgroupsUnder(join(dir, e.name)), join(dir, e.name));
  }
  return out;
}

afterAll(() => {
  u?.remove(); // the user's processes first: a cgroup with processes cannot be removed
  for (let i = 0; i < 50 && delegated && existsSync(delegated); i++) {
    for (const d of [...cgroupsUnder(delegated), delegated]) {
      try {
        rmdirSync(d);
      } catch {}
    }
    if (existsSync(delegated)) Bun.sleepSync(100);
  }
}, 60_000);

/**
 * `pivot ARGS` as the user on a "cgroup v2 host": a private mount namespace with the host's
 * cgroup2 hierarchy alone at /sys/fs/cgroup, from a process moved into the delegated directory.
 * Output through files: a detached container's conmon would hold a pipe.
 */
function v2(args: string[]): CliResult {
  const user = u!;
  const dir = mkdtempSync(join(tmpdir(), "pivot-cg-out-"));
  const out = openSync(join(dir, "out"), "w");
  const err = openSync(join(dir, "err"), "w");
  try {
    const r = spawnSync("unshare", v2Args(args), {
      stdio: ["ignore", out, err],
      cwd: user.work,
      timeout: 60_000,
    });
    return {
      status: r.status ?? -1,
      stdout: readFileSync(join(dir, "out"), "utf8"),
      stderr: readFileSync(join(dir, "err"), "utf8"),
    };
  } finally {
    closeSync(out);
    closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** unshare's arguments for v2(ARGS). */
function v2Args(args: string[]): string[] {
  const user = u!;
  const remount =
    host.mode === "v2"
      ? ""
      : "umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && ";
  const script = `set -e; ${remount}echo $$ > /sys/fs/cgroup/${DELEGATED}/cgroup.procs; exec "$@"`;
  return [
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    script,
    "sh",
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--init-groups",
    "env",
    "-i",
    ...Object.entries(user.env).map(([k, v]) => `${k}=${v}`),
    BUN,
    PIVOT_CLI,
    ...args,
  ];
}

/** v2(ARGS) in the background, its stdin and stdout pipes (stderr inherited). */
function v2Background(args: string[]): ChildProcess {
  return spawn("unshare", v2Args(args), {
    stdio: ["pipe", "pipe", "inherit"],
    cwd: u!.work,
  });
}

/** The exit code of CHILD, once it ends. */
const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on("exit", (code) => resolve(code));
  });

function ok(args: string[]): string {
  const r = v2(args);
  if (r.status !== 0) throw new Error(`pivot ${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** The cgroup v2 path of a process (its 0:: line), as the host sees it. */
const cgroupOf = (pid: number) =>
  readFileSync(`/proc/${pid}/cgroup`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("0::"))
    ?.slice(3);
const procsOf = (dir: string) =>
  readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
const frozen = (dir: string) =>
  /^frozen 1$/m.test(readFileSync(join(dir, "cgroup.events"), "utf8"));

describe.skipIf(!unified)("rootless containers in a delegated cgroup v2 subtree", () => {
  test("run -d: the container's processes in its own cgroup under the delegated one (exec too); top, stats, pause; removed with it", async () => {
    const user = u!;
    const r = v2([
      "run",
      "-d",
      "--name",
      "cg",
      ROOTLESS_IMAGE,
      "sh",
      "-c",
      "echo up; exec sleep 600",
    ]);
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain("not delegated");
    const id = r.stdout.trim();
    const info = JSON.parse(ok(["inspect", "cg"]));
    const pid = (Array.isArray(info) ? info[0] : info).state.pid as number;
    const mine = join(delegated, `pivot-${id}`);
    // The cgroup is the user's (made by root of its user namespace), the init is in it.
    expect(cgroupOf(pid)).toBe(`/${DELEGATED}/pivot-${id}`);
    expect(statSync(mine).uid).toBe(user.uid);
    expect(procsOf(mine)).toEqual([pid]);
    // exec, run as the plain user outside the namespace, joins the same cgroup.
    ok(["exec", "-d", "cg", "sleep", "500"]);
    await until("the exec'd process in the cgroup", () => procsOf(mine).length === 2);
    const execPid = procsOf(mine).find((p) => p !== pid)!;
    expect(readFileSync(`/proc/${execPid}/cmdline`, "utf8")).toBe("sleep\u0000500\u0000");
    // The container sees its own cgroup as the root (a cgroup namespace).
    expect(ok(["exec", "cg", "sh", "-c", "grep ^0:: /proc/self/cgroup"]).trim()).toBe("0::/");

    // What needs a cgroup works: top, stats, pause through cgroup.freeze.
    const top = ok(["top", "cg"]);
    expect(top).toContain(String(pid));
    expect(top).toContain("sleep 600");
    expect(ok(["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "cg"]).trim()).toBe(
      "cg 2",
    );
    ok(["pause", "cg"]);
    expect(frozen(mine)).toBe(true);
    expect(ok(["ps", "--format", "{{.Names}} {{.Status}}"])).toMatch(/^cg .*Paused/m);
    ok(["unpause", "cg"]);
    expect(frozen(mine)).toBe(false);

    ok(["rm", "-f", "cg"]);
    await until("the container's cgroup to go", () => !existsSync(mine));
    await until("the user's processes to end", () => user.pids().length === 0);
    expect(cgroupsUnder(delegated)).toEqual([]);
    expect(mountsUnder(user.work)).toEqual([]);
  }, 120_000);

  // As root's containers are (engine-files.test.ts): none of its processes can swap a path cp
  // resolved for a symlink before cp uses it. A rootless container without a cgroup cannot be
  // frozen (docs/security.md).
  test("cp out of and into a running container freezes it (its own cgroup.freeze) while it copies; thawed after", async () => {
    const user = u!;
    const id = ok([
      "run",
      "-d",
      "--name",
      "cgcp",
      ROOTLESS_IMAGE,
      "sh",
      "-c",
      "dd if=/dev/zero of=/tmp/big bs=1M count=8 2>/dev/null; echo ready; exec sleep 600",
    ]).trim();
    const mine = join(delegated, `pivot-${id}`);
    const copies: ChildProcess[] = [];
    try {
      await until("the container's file", () => ok(["logs", "cgcp"]).includes("ready"));
      expect(frozen(mine)).toBe(false);
      // Out: the tar stream is not read, so the copy waits on a full pipe, frozen.
      const out = v2Background(["cp", "cgcp:/tmp/big", "-"]);
      copies.push(out);
      out.stdin!.end();
      await until("the container frozen by cp", () => frozen(mine));
      let bytes = 0;
      out.stdout!.on("data", (d: Buffer) => {
        bytes += d.length;
      });
      expect(await exitOf(out)).toBe(0);
      expect(bytes).toBeGreaterThan(8 * 1024 * 1024);
      await until("the container thawed", () => !frozen(mine));
      // In: a tar on stdin, not written yet, so the copy waits for it, frozen.
      const src = user.dir("cp-in");
      writeFileSync(join(src, "in.txt"), "into-frozen\n");
      const tar = spawnSync("tar", ["-C", src, "-cf", "-", "in.txt"]).stdout;
      const into = v2Background(["cp", "-", "cgcp:/tmp"]);
      copies.push(into);
      await until("the container frozen by cp", () => frozen(mine));
      into.stdin!.end(tar);
      expect(await exitOf(into)).toBe(0);
      await until("the container thawed", () => !frozen(mine));
      expect(ok(["exec", "cgcp", "cat", "/tmp/in.txt"])).toBe("into-frozen\n");
      expect(ok(["ps", "--format", "{{.Names}} {{.Status}}"])).toMatch(/^cgcp Up/m);
    } finally {
      // A copy left waiting (a failed test) ends on its closed pipes, and thaws the container.
      for (const c of copies) {
        c.stdout?.destroy();
        c.stdin?.destroy();
      }
      v2(["rm", "-f", "cgcp"]);
    }
    await until("the container's cgroup to go", () => !existsSync(mine));
    await until("the user's processes to end", () => user.pids().length === 0);
  }, 120_000);

  test("an attached run --rm: its own cgroup, mounted in the container, gone after; limits the host's v2 lacks are refused", () => {
    const user = u!;
    const r = v2([
      "run",
      "--rm",
      ROOTLESS_IMAGE,
      "sh",
      "-c",
      "grep ^0:: /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs",
    ]);
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain("not delegated");
    // Its own cgroup namespace, and its cgroup mounted at /sys/fs/cgroup (not the empty tmpfs of a
    // container without one), holding its processes: the init (1) and cat.
    const [line, ...procs] = r.stdout.trim().split("\n");
    expect(line).toBe("0::/");
    expect(procs).toContain("1");
    expect(cgroupsUnder(delegated)).toEqual([]);
    // Delegated, so the engine lets a limit through; this host's v2 hierarchy has no memory
    // controller (it is v1's here), and the runtime says so before anything runs.
    if (!unified!.controllers.includes("memory")) {
      const limited = v2(["run", "--rm", "--memory", "64m", ROOTLESS_IMAGE, "true"]);
      expect(limited.status).toBe(125);
      expect(limited.stderr).toContain("no memory or memory (v2) controller");
    }
    expect(cgroupsUnder(delegated)).toEqual([]);
    expect(v2(["ps", "-aq"]).stdout.trim()).toBe("");
    expect(readdirSync(join(user.store, "containers"))).toEqual([]);
  }, 120_000);
});
