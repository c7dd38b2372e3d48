// The engine with real containers: a private root in a temp dir, busybox images built locally.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../../src/engine/engine.ts";
import { findConmon } from "../../src/engine/monitor.ts";
import { Trace } from "../../src/runtime/trace.ts";
import {
  CONFIGURED,
  IMAGE,
  makeTestEngine,
  mountsUnder,
  runCollect,
  type TestEngine,
} from "../fixtures/engine.ts";
import { isRoot } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine;
let engine: Engine;
let hostDir: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  engine = t.engine;
  hostDir = mkdtempSync(join(tmpdir(), "pivot-engine-bind-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (hostDir) rmSync(hostDir, { recursive: true, force: true });
});

/** The overlay super options of the mount at `target` (lowerdir, upperdir, workdir). */
function overlayOptions(target: string): Record<string, string> {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f[4] !== target) continue;
    const dash = f.indexOf("-");
    const out: Record<string, string> = {};
    for (const o of (f[dash + 3] ?? "").split(",")) {
      const eq = o.indexOf("=");
      if (eq > 0) out[o.slice(0, eq)] = o.slice(eq + 1);
      else out[o] = "";
    }
    return out;
  }
  return {};
}

describe.skipIf(!isRoot)("engine: attached containers", () => {
  test("run echo: output on the handle's stdout, exit 0", async () => {
    const r = await runCollect(engine, { image: IMAGE, cmd: ["echo", "hi"], autoRemove: true });
    expect(r).toMatchObject({ code: 0, stdout: "hi\n", stderr: "" });
  });

  test("exit codes: the process's code, 128+N for a signal", async () => {
    const a = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "echo oops >&2; exit 7"],
    });
    expect(a.code).toBe(7);
    expect(a.stderr).toBe("oops\n");
    expect(engine.inspect(a.id).state).toMatchObject({ status: "exited", exitCode: 7 });
    await engine.remove(a.id);
    // SIGKILL from inside is ignored by a PID 1; from the engine it is not.
    const b = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], autoRemove: true });
    engine.kill(b.id, "KILL");
    expect(await b.wait()).toBe(137);
    // Removed (--rm) without an exit record written first: the removal keeps the code for wait.
    expect(existsSync(join(engine.root, "containers", b.id))).toBe(false);
    expect(await engine.wait(b.id)).toBe(137);
  });

  test("an attached run's state.json names the container's cgroups (recovery removes them by it)", async () => {
    const c = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], autoRemove: true });
    try {
      const state = JSON.parse(
        readFileSync(join(engine.root, "containers", c.id, "state.json"), "utf8"),
      ) as { cgroupPaths?: Record<string, string> };
      const fromRuntime = engine.runtime.store.load(c.id).cgroupPaths;
      expect(Object.keys(fromRuntime).length).toBeGreaterThan(0);
      expect(state.cgroupPaths).toEqual(fromRuntime);
      for (const p of Object.values(fromRuntime)) expect(existsSync(p)).toBe(true);
    } finally {
      engine.kill(c.id, "KILL");
      await c.wait();
    }
  });

  test("-e, -w, -u: environment, working directory (created), user by name and by number", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", 'echo "$FOO|$EMPTY|$(pwd)|$(id -u):$(id -g)|$HOME|$HOSTNAME"'],
      env: ["FOO=bar baz", "EMPTY="],
      workdir: "/work/dir",
      user: "nobody",
      hostname: "box",
      autoRemove: true,
    });
    expect(r.stdout).toBe("bar baz||/work/dir|65534:65534|/nonexistent|box\n");
    const n = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "echo $(id -u):$(id -g)"],
      user: "1234:5678",
      autoRemove: true,
    });
    expect(n.stdout).toBe("1234:5678\n");
    await expect(engine.run({ image: IMAGE, cmd: ["true"], user: "nosuchuser" })).rejects.toThrow(
      /unable to find user nosuchuser/,
    );
  });

  test("the image config sets the defaults: Entrypoint, Cmd, Env, WorkingDir, User, Volumes, Labels", async () => {
    const r = await runCollect(engine, { image: CONFIGURED });
    expect(r.stdout).toBe("hello from /srv/app as 65534:65534\n");
    const info = engine.inspect(r.id);
    expect(info.labels["org.example.role"]).toBe("test");
    expect(info.volumes).toHaveLength(1);
    expect(info.volumes[0]).toMatchObject({ target: "/data", anonymous: true });
    const anon = info.volumes[0]!.name;
    expect(engine.listVolumes().map((v) => v.name)).toContain(anon);
    // A cmd replaces Cmd and keeps the Entrypoint; an entrypoint replaces both.
    const c = await runCollect(engine, {
      image: CONFIGURED,
      cmd: ["echo cmd $GREETING"],
      autoRemove: true,
    });
    expect(c.stdout).toBe("cmd hello\n");
    const e = await runCollect(engine, {
      image: CONFIGURED,
      entrypoint: "echo",
      cmd: ["plain"],
      user: "root",
      autoRemove: true,
    });
    expect(e.stdout).toBe("plain\n");
    await engine.remove(r.id, { volumes: true });
    expect(engine.listVolumes().map((v) => v.name)).not.toContain(anon);
  });

  test("/etc/hostname, /etc/hosts and /etc/resolv.conf are generated and bound in", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: [
        "sh",
        "-c",
        "cat /etc/hostname; grep -c localhost /etc/hosts; grep 127.0.1.1 /etc/hosts; grep -c nameserver /etc/resolv.conf",
      ],
      hostname: "named",
      autoRemove: true,
    });
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("named");
    expect(Number(lines[1])).toBeGreaterThan(0);
    expect(lines[2]).toBe("127.0.1.1\tnamed");
    expect(Number(lines[3])).toBeGreaterThan(0);
  });

  test("stdin: -i passes input to the container", async () => {
    const r = await runCollect(
      engine,
      { image: IMAGE, cmd: ["sh", "-c", "tr a-z A-Z"], stdin: true, autoRemove: true },
      "shout\n",
    );
    expect(r.stdout).toBe("SHOUT\n");
  });

  test("exec into an attached container: its stdout and stderr streams end, read to the end", async () => {
    const c = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], autoRemove: true });
    c.stdout?.resume();
    c.stderr?.resume();
    try {
      const ex = await engine.exec(c.id, {
        cmd: ["sh", "-c", "echo out; echo err >&2"],
        stdin: true,
      });
      ex.stdin?.end("ignored\n");
      const readAll = async (s: NodeJS.ReadableStream | null) => {
        let text = "";
        for await (const chunk of s ?? []) text += chunk.toString();
        return text;
      };
      // A reader that waits for the end (for await, stream.finished) must get it.
      const all = Promise.all([readAll(ex.stdout), readAll(ex.stderr), ex.wait()]);
      const outcome = await Promise.race([all, Bun.sleep(5000).then(() => "never ended")]);
      expect(outcome).toEqual(["out\n", "err\n", 0]);
    } finally {
      engine.kill(c.id, "KILL");
      await c.wait();
    }
  });

  test("a bind volume is shared both ways; :ro makes it read-only", async () => {
    writeFileSync(join(hostDir, "from-host"), "host data\n");
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "cat /mnt/from-host && echo container data > /mnt/from-container"],
      mounts: [{ type: "bind", source: hostDir, target: "/mnt" }],
      autoRemove: true,
    });
    expect(r).toMatchObject({ code: 0, stdout: "host data\n" });
    expect(readFileSync(join(hostDir, "from-container"), "utf8")).toBe("container data\n");
    const ro = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "touch /mnt/nope"],
      mounts: [{ type: "bind", source: hostDir, target: "/mnt", readOnly: true }],
      autoRemove: true,
    });
    expect(ro.code).not.toBe(0);
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(existsSync(join(hostDir, "nope"))).toBe(false);
  });

  test("a named volume persists across containers", async () => {
    const w = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "echo kept > /vol/file"],
      mounts: [{ type: "volume", source: "keep", target: "/vol" }],
      autoRemove: true,
    });
    expect(w.code).toBe(0);
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["cat", "/other/file"],
      mounts: [{ type: "volume", source: "keep", target: "/other" }],
      autoRemove: true,
    });
    expect(r.stdout).toBe("kept\n");
    expect(engine.inspectVolume("keep").name).toBe("keep");
    engine.removeVolume("keep");
    expect(() => engine.inspectVolume("keep")).toThrow(/no such volume/);
  });

  test("a new named volume is filled with the image's content at its path", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "cat /etc/passwd | head -1"],
      mounts: [{ type: "volume", source: "etcvol", target: "/etc" }],
      autoRemove: true,
    });
    expect(r.stdout).toBe("root:x:0:0:root:/root:/bin/sh\n");
    engine.removeVolume("etcvol");
  });

  test("--read-only: the root filesystem refuses writes; a --tmpfs stays writable", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "touch /rootfile; echo $?; touch /scratch/ok && echo tmpfs ok"],
      readOnly: true,
      mounts: [{ type: "tmpfs", target: "/scratch" }],
      autoRemove: true,
    });
    expect(r.stdout).toBe("1\ntmpfs ok\n");
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  test("--rm leaves no overlay mount, upper directory or name behind", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      name: "gone",
      cmd: ["sh", "-c", "echo x > /in-upper"],
      autoRemove: true,
    });
    expect(r.code).toBe(0);
    expect(existsSync(join(t.root, "containers", r.id))).toBe(false);
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
    expect(() => engine.inspect("gone")).toThrow(/no such container/);
    expect(existsSync(join(t.root, "run", "runtime", r.id))).toBe(false);
    // The name is free again.
    const again = await runCollect(engine, {
      image: IMAGE,
      name: "gone",
      cmd: ["true"],
      autoRemove: true,
    });
    expect(again.code).toBe(0);
  });

  test("a name in use is refused with a hint", async () => {
    const info = await engine.create({ image: IMAGE, name: "taken", cmd: ["true"] });
    await expect(engine.create({ image: IMAGE, name: "taken", cmd: ["true"] })).rejects.toThrow(
      /already in use/,
    );
    await engine.remove(info.id);
    expect(mountsUnder(info.dir)).toEqual([]);
  });

  test("--cap-drop and --security-opt no-new-privileges reach the process", async () => {
    const r = await runCollect(engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"],
      capDrop: ["ALL"],
      capAdd: ["CHOWN"],
      securityOpt: ["no-new-privileges"],
      autoRemove: true,
    });
    expect(r.stdout).toContain("CapBnd:\t0000000000000001");
    expect(r.stdout).toMatch(/NoNewPrivs:\t1/);
    expect(r.stdout).toMatch(/Seccomp:\t2/);
  });

  test("an attached run's overlay is mounted by the container's own launcher, on the host, and gone after", async () => {
    // No volume to fill and no working directory to make: create leaves the mount to the launcher
    // that runs the container (one process fewer); it is still the host's mount while it runs.
    const trace = new Trace();
    const traced = new Engine({ root: t.root, warn: () => {}, trace });
    const c = await traced.run({ image: IMAGE, cmd: ["sleep", "30"], autoRemove: true });
    try {
      const merged = traced.inspect(c.id).rootfs.merged;
      expect(overlayOptions(merged).lowerdir).toStartWith("init:l/");
      const steps = trace.render("run");
      expect(steps).toContain("root filesystem planned (mounted by the container's launcher)");
      expect(steps).toContain(`mount overlay on ${merged}`);
    } finally {
      traced.kill(c.id, "KILL");
      await c.wait();
    }
    expect(mountsUnder(join(t.root, "containers"))).toEqual([]);
  });
});

describe.skipIf(!isRoot || !hasConmon)("engine: detached containers under conmon", () => {
  test("-d, logs, exec, stop (SIGKILL after the timeout), rm", async () => {
    const c = await engine.run({
      image: IMAGE,
      name: "ticker",
      cmd: ["sh", "-c", "echo started; echo to-stderr >&2; while true; do sleep 0.1; done"],
      detach: true,
      stopTimeout: 1,
    });
    expect(c.stdout).toBeNull();
    const info = engine.inspect("ticker");
    expect(info.state).toMatchObject({ status: "running", running: true, monitor: "conmon" });
    expect((await engine.list()).map((x) => x.id)).toContain(c.id);
    // Logs: written by conmon, read back.
    let logs: string[] = [];
    for (let i = 0; i < 50 && logs.length < 2; i++) {
      logs = [];
      for await (const e of engine.logs("ticker")) logs.push(`${e.stream}:${e.text}`);
      await Bun.sleep(50);
    }
    expect(logs).toEqual(["stdout:started\n", "stderr:to-stderr\n"]);
    // exec into it: same namespaces, same root filesystem.
    const ex = await engine.exec("ticker", {
      cmd: ["sh", "-c", "echo $$; cat /etc/hostname; touch /made-by-exec"],
    });
    let out = "";
    ex.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    expect(await ex.wait()).toBe(0);
    const [pid, hostname] = out.split("\n");
    expect(Number(pid)).toBeGreaterThan(1);
    expect(hostname).toBe(c.id.slice(0, 12));
    expect(existsSync(join(info.rootfs.upperdir, "made-by-exec"))).toBe(true);
    // sh as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout.
    const t0 = Date.now();
    await engine.stop("ticker");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(engine.inspect("ticker").state).toMatchObject({ status: "exited", exitCode: 137 });
    expect(await engine.wait("ticker")).toBe(137);
    // conmon's exit command unmounted the root filesystem.
    for (let i = 0; i < 100 && mountsUnder(info.rootfs.merged).length; i++) await Bun.sleep(50);
    expect(mountsUnder(info.rootfs.merged)).toEqual([]);
    await engine.remove("ticker");
    expect(existsSync(info.dir)).toBe(false);
  });

  test("the exit code is recorded by the monitor; start runs an exited container again", async () => {
    const c = await engine.run({
      image: IMAGE,
      cmd: ["sh", "-c", "echo run; exit 3"],
      detach: true,
    });
    expect(await engine.wait(c.id)).toBe(3);
    await engine.start(c.id);
    expect(await engine.wait(c.id)).toBe(3);
    const lines: string[] = [];
    for await (const e of engine.logs(c.id)) lines.push(e.text);
    expect(lines).toEqual(["run\n", "run\n"]);
    await engine.remove(c.id);
  });

  test("--rm: the monitor's exit hook removes a detached container", async () => {
    const c = await engine.run({ image: IMAGE, cmd: ["true"], detach: true, autoRemove: true });
    const dir = join(t.root, "containers", c.id);
    for (let i = 0; i < 200 && existsSync(dir); i++) await Bun.sleep(50);
    expect(existsSync(dir)).toBe(false);
    expect(mountsUnder(dir)).toEqual([]);
  });

  test("two containers share the image's layers (same lowerdirs) with their own upper dirs", async () => {
    const a = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], detach: true });
    const b = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], detach: true });
    const ia = engine.inspect(a.id);
    const ib = engine.inspect(b.id);
    const oa = overlayOptions(ia.rootfs.merged);
    const ob = overlayOptions(ib.rootfs.merged);
    expect(oa.lowerdir).toBeDefined();
    expect(oa.lowerdir).toBe(ob.lowerdir!);
    expect(ia.rootfs.lowerdirs).toEqual(ib.rootfs.lowerdirs);
    expect(oa.upperdir).toBe(ia.rootfs.upperdir);
    expect(ob.upperdir).toBe(ib.rootfs.upperdir);
    expect(oa.upperdir).not.toBe(ob.upperdir!);
    await engine.remove(a.id, { force: true });
    await engine.remove(b.id, { force: true });
    expect(readdirSync(join(t.root, "containers")).filter((n) => !n.startsWith("."))).not.toContain(
      a.id,
    );
    expect(mountsUnder(ia.rootfs.merged)).toEqual([]);
  });

  test("--rm: the overlay is volatile (never synced, it is thrown away); a kept container's is not", async () => {
    const kept = await engine.run({ image: IMAGE, cmd: ["sleep", "30"], detach: true });
    const gone = await engine.run({
      image: IMAGE,
      cmd: ["sleep", "30"],
      detach: true,
      autoRemove: true,
    });
    try {
      // This kernel shows the option as fsync=volatile; older ones as volatile.
      const volatile = (o: Record<string, string>) => o.fsync === "volatile" || "volatile" in o;
      expect(volatile(overlayOptions(engine.inspect(kept.id).rootfs.merged))).toBe(false);
      expect(volatile(overlayOptions(engine.inspect(gone.id).rootfs.merged))).toBe(true);
    } finally {
      await engine.remove(kept.id, { force: true });
      await engine.remove(gone.id, { force: true });
    }
  });
});
