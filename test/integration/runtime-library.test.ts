// Runtime as a library (what the engine and Node programs use): run without an exec fifo, the
// container seen "created" until it is started, and a run whose process dies before its start.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fchmodSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import {
  HostLauncher,
  mountSteps,
  runHostSteps,
  unmountStep,
} from "../../src/runtime/host-plan.ts";
import { launcherPath } from "../../src/runtime/launcher.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { Trace } from "../../src/runtime/trace.ts";
import { cleanupRoot, isRoot, makeBundle, rm, tempDir } from "../helpers.ts";

if (!isRoot) throw new Error("the integration tests run real containers and need root");

let work: string;
let root: string;
let bundle: string;
let counter = 0;
const nextId = () => `lib-${process.pid}-${++counter}`;

beforeAll(() => {
  work = tempDir();
  root = join(work, "state");
  bundle = makeBundle(join(work, "bundle"), (s) => {
    s.process!.args = ["sh", "-c", "exit 7"];
  });
});

afterAll(() => {
  cleanupRoot(root);
  rm(work);
});

describe("Runtime.run", () => {
  test("the container is created, with no exec fifo, until run starts it; the exit code comes back; nothing is left", async () => {
    const runtime = new Runtime({ root, warn: () => {} });
    const id = nextId();
    let seen: { status: string; files: string[]; alive: boolean } | null = null;
    const code = await runtime.run(id, {
      bundle,
      stdio: ["ignore", "ignore", "ignore"],
      onCreated: async (pid) => {
        seen = {
          status: new Runtime({ root }).state(id).status,
          files: readdirSync(join(root, id)),
          alive: existsSync(`/proc/${pid}`),
        };
      },
    });
    expect(code).toBe(7);
    expect(seen!).toEqual({ status: "created", files: ["state.json"], alive: true });
    expect(existsSync(join(root, id))).toBe(false);
  });

  test("a process killed before its start fails the run, which leaves nothing behind", async () => {
    const runtime = new Runtime({ root, warn: () => {} });
    const id = nextId();
    let initPid = 0;
    let cgroupDirs: string[] = [];
    const run = runtime.run(id, {
      bundle,
      stdio: ["ignore", "ignore", "ignore"],
      onCreated: async (pid) => {
        initPid = pid;
        cgroupDirs = Object.values(runtime.cgroupOf(id).paths);
        process.kill(pid, "SIGKILL");
        // Until the launcher has reported the exit.
        for (let i = 0; i < 200 && existsSync(`/proc/${pid}/stat`); i++) await Bun.sleep(5);
        await Bun.sleep(50);
      },
    });
    await expect(run).rejects.toThrow("was killed by SIGKILL before it could be started");
    expect(initPid).toBeGreaterThan(0);
    expect(existsSync(join(root, id))).toBe(false);
    expect(cgroupDirs.length).toBeGreaterThan(0);
    expect(cgroupDirs.filter((d) => existsSync(d))).toEqual([]);
  });
});

describe("the launcher's sealed copy (CVE-2019-5736)", () => {
  const COPY = "/memfd:pivot-launcher (deleted)";
  const linkOf = (path: string) => {
    try {
      return readlinkSync(path);
    } catch {
      return "";
    }
  };
  /** This process's fds that are a sealed copy of the launcher. */
  const heldCopies = () =>
    readdirSync("/proc/self/fd")
      .map(Number)
      .filter((fd) => linkOf(`/proc/self/fd/${fd}`) === COPY);
  /** Processes whose parent is this one and whose exe is a copy of the launcher. */
  const launchers = () =>
    readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        const stat = linkOf(`/proc/${p}/exe`) === COPY && readFileSync(`/proc/${p}/stat`, "utf8");
        return stat && Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === process.pid;
      });

  test("later launchers run from the one copy this process keeps; containers see none of it", async () => {
    const runtime = new Runtime({ root, warn: () => {} });
    // A copy is kept from a process's second launcher on (earlier tests may have started them).
    for (let i = 0; i < 2; i++)
      expect(await runtime.run(nextId(), { bundle, stdio: ["ignore", "ignore", "ignore"] })).toBe(
        7,
      );
    const held = heldCopies();
    expect(held.length).toBe(1);
    const copy = fstatSync(held[0]!);
    const fdsFile = join(work, "container-fds");
    const fdsBundle = makeBundle(join(work, "fds-bundle"), (s) => {
      s.process!.args = ["sh", "-c", "ls /proc/self/fd"];
    });
    const out = openSync(fdsFile, "w");
    let seen: { dev: number; ino: number }[] = [];
    try {
      const code = await runtime.run(nextId(), {
        bundle: fdsBundle,
        stdio: ["ignore", out, "ignore"],
        // Before the start: the launcher waits for the container's exit then.
        onCreated: async () => {
          seen = launchers().map((p) => {
            const st = statSync(`/proc/${p}/exe`);
            return { dev: st.dev, ino: st.ino };
          });
        },
      });
      expect(code).toBe(0);
    } finally {
      closeSync(out);
    }
    // One launcher, running this process's copy: no second copy was made for it.
    expect(seen).toEqual([{ dev: copy.dev, ino: copy.ino }]);
    expect(heldCopies()).toEqual(held);
    // ls's own fd for the directory aside, the container has its stdio and nothing else.
    expect(readFileSync(fdsFile, "utf8").split("\n").filter(Boolean)).toEqual(["0", "1", "2", "3"]);
  });

  test("the kept copy's mode cannot change (F_SEAL_EXEC), and stdio slots over its fd number do not break a launch", async () => {
    const runtime = new Runtime({ root, warn: () => {} });
    for (let i = 0; i < 2; i++)
      expect(await runtime.run(nextId(), { bundle, stdio: ["ignore", "ignore", "ignore"] })).toBe(
        7,
      );
    const [copyFd] = heldCopies();
    expect(copyFd).toBeGreaterThan(3);
    // What a container reaching the copy through /proc/PID/exe could try: a chmod of the file.
    const reopened = openSync(`/proc/self/fd/${copyFd}`, "r");
    try {
      expect(() => fchmodSync(reopened, 0o644)).toThrow(/EPERM|not permitted/);
    } finally {
      closeSync(reopened);
    }
    expect(fstatSync(copyFd!).mode & 0o111).not.toBe(0);
    // The launcher's control socket (fd 3 + preserved fds) on the copy's number, then the copy
    // among the preserved fds: the child's slots would cover it, so the launcher starts from the
    // file instead.
    for (const preserveFds of [copyFd! - 3, copyFd! - 2]) {
      const code = await runtime.run(nextId(), {
        bundle,
        stdio: ["ignore", "ignore", "ignore"],
        preserveFds,
      });
      expect(code).toBe(7);
    }
    expect(heldCopies()).toEqual([copyFd!]);
  });

  test("a rebuilt launcher is not run from the copy of the old one", async () => {
    const runtime = new Runtime({ root, warn: () => {} });
    const binary = join(work, "pivot-launcher-rebuilt");
    copyFileSync(launcherPath(), binary);
    chmodSync(binary, 0o755);
    const before = process.env.PIVOT_LAUNCHER;
    process.env.PIVOT_LAUNCHER = binary;
    /** The inode of the copy the run's launcher runs from. */
    const runAndSee = async () => {
      let seen: number[] = [];
      const code = await runtime.run(nextId(), {
        bundle,
        stdio: ["ignore", "ignore", "ignore"],
        onCreated: async () => {
          seen = launchers().map((p) => statSync(`/proc/${p}/exe`).ino);
        },
      });
      expect(code).toBe(7);
      expect(seen.length).toBe(1);
      return seen[0]!;
    };
    try {
      await runAndSee(); // makes the copy of this binary, which this process keeps
      const first = await runAndSee();
      expect(await runAndSee()).toBe(first);
      expect(heldCopies().map((fd) => fstatSync(fd).ino)).toEqual([first]);
      // The "rebuild": the same bytes written again, a new modification time.
      writeFileSync(binary, readFileSync(binary));
      const afterRebuild = await runAndSee();
      expect(afterRebuild).not.toBe(first);
      expect(await runAndSee()).toBe(afterRebuild);
      expect(heldCopies().map((fd) => fstatSync(fd).ino)).toEqual([afterRebuild]);
    } finally {
      if (before === undefined) delete process.env.PIVOT_LAUNCHER;
      else process.env.PIVOT_LAUNCHER = before;
    }
  });
});

describe("stdio pipes through the library", () => {
  // Under Bun the launcher starts with Bun.spawn and its pipes are web streams; the same
  // PipedStdio is what node:child_process gives under Node.
  test("stdin goes in, stdout and stderr come out apart and whole (4 MiB through a slow reader)", async () => {
    const pipeBundle = makeBundle(join(work, "pipe-bundle"), (s) => {
      s.process!.args = [
        "sh",
        "-c",
        "read line; echo \"got $line\"; echo oops >&2; head -c 4194304 /dev/zero | tr '\\0' x",
      ];
    });
    const runtime = new Runtime({ root, warn: () => {} });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const drains: Promise<void>[] = [];
    const read = async (src: AsyncIterable<Uint8Array>, into: Buffer[], slow: boolean) => {
      for await (const chunk of src) {
        into.push(Buffer.from(chunk));
        // A reader slower than the writer: the container waits on the full pipe, nothing is lost.
        if (slow && into.length % 16 === 0) await Bun.sleep(1);
      }
    };
    const code = await runtime.run(nextId(), {
      bundle: pipeBundle,
      stdio: ["pipe", "pipe", "pipe"],
      onLaunch: (pipes) => {
        expect(pipes.stdin && pipes.stdout && pipes.stderr).toBeTruthy();
        drains.push(read(pipes.stdout!, out, true), read(pipes.stderr!, err, false));
        pipes.stdin!.write(Buffer.from("hello\n"));
        pipes.stdin!.end();
      },
    });
    await Promise.all(drains);
    expect(code).toBe(0);
    const text = Buffer.concat(out).toString();
    expect(text.startsWith("got hello\n")).toBe(true);
    const rest = text.slice("got hello\n".length);
    expect(rest.length).toBe(4194304);
    expect(/^x+$/.test(rest)).toBe(true);
    expect(Buffer.concat(err).toString()).toBe("oops\n");
  });
});

describe("host launchers started ahead of their plan", () => {
  test("one runs the host plan it is given later; one never used exits once disposed of, and lets its process end", async () => {
    const target = join(work, "host-mount");
    mkdirSync(target);
    const mounted = () => readFileSync("/proc/self/mountinfo", "utf8").includes(` ${target} `);
    const used = new HostLauncher();
    try {
      await runHostSteps(
        mountSteps({ source: "tmpfs", target, fstype: "tmpfs", data: "size=1m" }),
        used,
      );
      expect(mounted()).toBe(true);
      // Taken: a second use starts a launcher of its own.
      await runHostSteps([unmountStep(target)], used);
      expect(mounted()).toBe(false);
    } finally {
      if (mounted()) await runHostSteps([unmountStep(target, { lazy: true })]);
    }
    // A process that starts one and disposes of it ends at once, and so does its launcher.
    const script = join(work, "dispose.ts");
    writeFileSync(
      script,
      `import { HostLauncher } from ${JSON.stringify(join(import.meta.dir, "../../src/runtime/host-plan.ts"))};
const session = new HostLauncher().take()!;
console.log(session.launcherPid);
session.detach(); // what dispose() does with an unused one`,
    );
    const started = Date.now();
    const r = Bun.spawnSync([process.execPath, script], { timeout: 10_000 });
    expect({ code: r.exitCode, stderr: r.stderr.toString() }).toEqual({ code: 0, stderr: "" });
    expect(Date.now() - started).toBeLessThan(5000);
    const launcher = Number(r.stdout.toString().trim());
    expect(launcher).toBeGreaterThan(0);
    for (let i = 0; i < 100 && existsSync(`/proc/${launcher}/stat`); i++) await Bun.sleep(10);
    const state = existsSync(`/proc/${launcher}/stat`)
      ? readFileSync(`/proc/${launcher}/stat`, "utf8")
      : "gone";
    expect(state === "gone" || / Z /.test(state)).toBe(true);
  });
});

describe("unmountAfterExit", () => {
  test("the launcher unmounts the caller's mount once the container has exited, before run returns", async () => {
    const target = join(work, "after-exit");
    mkdirSync(target, { recursive: true });
    const mounted = () => readFileSync("/proc/self/mountinfo", "utf8").includes(` ${target} `);
    // The process waits for a file the test makes once it has looked: a process that ends at once
    // can be gone, and the mount with it, before onStart runs.
    const waiting = makeBundle(join(work, "waiting-bundle"), (s) => {
      s.root!.readonly = false;
      s.process!.args = ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.01; done; exit 7"];
    });
    await runHostSteps(mountSteps({ source: "tmpfs", target, fstype: "tmpfs", data: "size=1m" }));
    try {
      expect(mounted()).toBe(true);
      const runtime = new Runtime({ root, warn: () => {} });
      let whileRunning = false;
      const code = await runtime.run(nextId(), {
        bundle: waiting,
        stdio: ["ignore", "ignore", "ignore"],
        unmountAfterExit: target,
        onStart: () => {
          whileRunning = mounted();
          writeFileSync(join(waiting, "rootfs/tmp/go"), "");
        },
      });
      expect(code).toBe(7);
      expect(whileRunning).toBe(true);
      expect(mounted()).toBe(false);
    } finally {
      if (mounted()) await runHostSteps([unmountStep(target, { lazy: true })]);
    }
  });
});

describe("--trace through the library", () => {
  test("the launcher's steps are on this process's clock: after the plan is sent, before the runtime hears of them", async () => {
    // The launcher reports its monotonic clock shifted onto this process's performance.now() (a
    // wall clock drifts from it, and can be set); its steps fall between the runtime's marks.
    const trace = new Trace();
    const runtime = new Runtime({ root, warn: () => {}, trace });
    expect(await runtime.run(nextId(), { bundle, stdio: ["ignore", "ignore", "ignore"] })).toBe(7);
    const rows = trace
      .render("run")
      .split("\n")
      .map((l) => /^ *([0-9.]+) +[0-9.]* +(.*)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ at: Number(m[1]), what: m[2]! }));
    const at = (what: string) => rows.find((r) => r.what.startsWith(what))?.at;
    const initDone = at("init: rlimits, credentials");
    const heard = at("sync Start: event received");
    const planRead = at("launcher: plan read");
    const planSent = at("cgroup resources applied");
    expect(initDone).toBeDefined();
    expect(heard).toBeDefined();
    expect(initDone!).toBeLessThanOrEqual(heard!);
    expect(planRead!).toBeGreaterThanOrEqual(planSent!);
  });
});
