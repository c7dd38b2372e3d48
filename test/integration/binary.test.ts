// The compiled binary (scripts/build-binary.sh), as setup installs it: one program serving both
// commands by the name it runs as, started by two front doors that turn the JIT off, and deaf to
// the directory it is run in. Both commands run as
// root wherever their caller stands (containerd runs the runtime in the bundle's directory, people
// run `pivot` in any project's), so a bunfig.toml or .env there must not change what they do:
// Bun's compiled programs read both by default, and a bunfig.toml `preload` runs that directory's
// code, a .env's PIVOT_LAUNCHER picks the program the runtime executes as root.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { isRoot, makeBundle, REPO, tempDir } from "../helpers.ts";

function readlinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

const dir = tempDir("pivot-binary-");
const bin = join(dir, "bin");
const bundle = join(dir, "bundle");
const sleepBundle = join(dir, "sleep-bundle");
const root = join(dir, "root");
const hostile = join(dir, "hostile");
const preloadRan = join(hostile, "preload-ran");
const fakeLauncherRan = join(hostile, "fake-launcher-ran");
const id = `binary-${process.pid}`;

function runBinary(name: string, args: string[], cwd: string) {
  const r = spawnSync(join(bin, name), args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

beforeAll(() => {
  const built = spawnSync(join(REPO, "scripts/build-binary.sh"), [bin], { encoding: "utf8" });
  if (built.status !== 0) throw new Error(`build-binary.sh failed: ${built.stderr}`);
  // The launcher is looked for beside the binary.
  symlinkSync(join(REPO, "native/build/pivot-launcher"), join(bin, "pivot-launcher"));
  symlinkSync("pivot.bin", join(bin, "something-else"));
  symlinkSync("pivot", join(bin, "docker"));
  symlinkSync("pivot-runtime", join(bin, "runc"));
  makeBundle(bundle);
  makeBundle(sleepBundle, (spec) => {
    spec.process!.args = ["sleep", "30"];
  });
  mkdirSync(hostile);
  writeFileSync(join(hostile, "bunfig.toml"), 'preload = ["./evil.js"]\n');
  writeFileSync(
    join(hostile, "evil.js"),
    `require("node:fs").writeFileSync(${JSON.stringify(preloadRan)}, "ran");\n`,
  );
  const fakeLauncher = join(hostile, "fake-launcher");
  writeFileSync(fakeLauncher, `#!/bin/sh\ntouch ${fakeLauncherRan}\nexit 1\n`);
  chmodSync(fakeLauncher, 0o755);
  writeFileSync(join(hostile, ".env"), `PIVOT_LAUNCHER=${fakeLauncher}\n`);
}, 120_000);

afterAll(() => {
  for (const c of [id, `${id}-jit-0`, `${id}-jit-1`])
    runBinary("pivot-runtime", ["--root", root, "delete", "--force", c], dir);
  rmSync(dir, { recursive: true, force: true });
});

describe("the compiled binary", () => {
  test("serves each command by the name it runs as", () => {
    const runtime = runBinary("pivot-runtime", ["--version"], dir);
    expect(runtime.status).toBe(0);
    expect(runtime.stdout).toStartWith("pivot-runtime version ");
    const engine = runBinary("pivot", ["--version"], dir);
    expect(engine.status).toBe(0);
    expect(engine.stdout).toStartWith("pivot version ");
    const other = runBinary("something-else", ["--version"], dir);
    expect(other.status).toBe(2);
    expect(other.stderr).toContain("run me as pivot or pivot-runtime");
    // The front doors run their command whatever name they are installed under.
    const runc = runBinary("runc", ["--version"], dir);
    expect(runc.status).toBe(0);
    expect(runc.stdout).toStartWith("pivot-runtime version ");
    const docker = runBinary("docker", ["--version"], dir);
    expect(docker.status).toBe(0);
    expect(docker.stdout).toStartWith("pivot version ");
  });

  // pivot-runtime is native/front-door.c, which runs the program with JavaScriptCore's JIT off:
  // the environment of a `run` in progress shows what the program started with.
  async function environmentOfRun(name: string, env: NodeJS.ProcessEnv): Promise<string[]> {
    const child = spawn(
      join(bin, "pivot-runtime"),
      ["--root", root, "run", "--bundle", sleepBundle, name],
      { cwd: dir, env, stdio: "ignore" },
    );
    const exited = new Promise((res) => child.on("exit", res));
    try {
      for (let i = 0; i < 200; i++) {
        const st = runBinary("pivot-runtime", ["--root", root, "state", name], dir);
        if (st.status === 0 && JSON.parse(st.stdout).status === "running") break;
        await Bun.sleep(50);
      }
      return readFileSync(`/proc/${child.pid}/environ`, "utf8").split("\0");
    } finally {
      runBinary("pivot-runtime", ["--root", root, "kill", name, "KILL"], dir);
      await exited;
      runBinary("pivot-runtime", ["--root", root, "delete", "--force", name], dir);
    }
  }

  test.skipIf(!isRoot)(
    "pivot-runtime runs the program with the JIT off, unless its caller chose",
    async () => {
      const { BUN_JSC_useJIT: _, ...callerEnv } = process.env;
      const jitless = await environmentOfRun(`${id}-jit-0`, callerEnv);
      expect(jitless).toContain("BUN_JSC_useJIT=0");
      const chosen = await environmentOfRun(`${id}-jit-1`, { ...callerEnv, BUN_JSC_useJIT: "1" });
      expect(chosen).toContain("BUN_JSC_useJIT=1");
      expect(chosen).not.toContain("BUN_JSC_useJIT=0");
    },
    60_000,
  );

  /** The environment `pivot ARGS` runs with once its program has started and had `settle` ms. */
  async function environmentOfPivot(args: string[], settle: (env: string[]) => boolean) {
    const child = spawn(join(bin, "pivot"), ["--root", root, ...args], {
      cwd: dir,
      env: (({ BUN_JSC_useJIT: _, ...rest }) => rest)(process.env),
      stdio: ["pipe", "ignore", "ignore"],
    });
    const exited = new Promise((res) => child.on("exit", res));
    try {
      let env: string[] = [];
      for (let i = 0; i < 200; i++) {
        await Bun.sleep(50);
        const exe = readlinkOrNull(`/proc/${child.pid}/exe`);
        if (exe !== join(bin, "pivot.bin")) continue; // still the door
        env = readFileSync(`/proc/${child.pid}/environ`, "utf8").split("\0");
        if (settle(env)) break;
      }
      return env;
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
  }

  test.skipIf(!isRoot)(
    "pivot runs short commands with the JIT off, and runs long ones again with it",
    async () => {
      let polls = 0;
      // events (short) follows until killed: after a second it still runs as the door began it.
      const short = await environmentOfPivot(["events"], () => ++polls >= 20);
      expect(short).toContain("BUN_JSC_useJIT=0");
      expect(short).toContain("PIVOT_DOOR_JIT_OFF=1");
      // import (long) reads its tarball from the open stdin: by then it runs again, JIT on.
      const long = await environmentOfPivot(
        ["import", "-", "jit-test:1"],
        (env) => !env.includes("PIVOT_DOOR_JIT_OFF=1"),
      );
      expect(long.length).toBeGreaterThan(1);
      expect(long).not.toContain("BUN_JSC_useJIT=0");
      expect(long).not.toContain("PIVOT_DOOR_JIT_OFF=1");
      // A run that pulls runs again before the pull, with its arguments: here the pull fails.
      const pulled = runBinary(
        "pivot",
        ["--root", root, "run", "--rm", "--pull", "always", "BAD/Name", "true"],
        dir,
      );
      expect(pulled.status).toBe(125);
      expect(pulled.stderr).toContain(
        "image BAD/Name is not in the local store and pulling it failed",
      );
    },
    60_000,
  );

  test.skipIf(!isRoot)(
    "pivot keeps the descriptors its caller passed beyond 0-2 for a long command (/dev/fd/N)",
    () => {
      // `pivot import <(...)`, `pivot load -i /dev/fd/3`: Bun marks every inherited descriptor
      // close-on-exec at start, so a run again with the JIT would lose them.
      const src = join(dir, "fd-rootfs");
      mkdirSync(src, { recursive: true });
      writeFileSync(join(src, "hello"), "hi\n");
      const tar = join(dir, "fd-rootfs.tar");
      expect(spawnSync("tar", ["-C", src, "-cf", tar, "."]).status).toBe(0);
      const fd = openSync(tar, "r");
      try {
        const r = spawnSync(
          join(bin, "pivot"),
          ["--root", root, "import", "/dev/fd/3", "fd-test:1"],
          { cwd: dir, encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe", fd] },
        );
        expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
        expect(r.stdout).toStartWith("sha256:");
      } finally {
        closeSync(fd);
      }
    },
    60_000,
  );

  test.skipIf(!isRoot)(
    "ignores a bunfig.toml and a .env in the directory it runs in",
    () => {
      const version = runBinary("pivot", ["--version"], hostile);
      expect(version.status).toBe(0);
      const run = runBinary(
        "pivot-runtime",
        ["--root", root, "run", "--bundle", bundle, id],
        hostile,
      );
      expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
      expect(existsSync(preloadRan)).toBe(false);
      expect(existsSync(fakeLauncherRan)).toBe(false);
    },
    60_000,
  );
});
