// Real clients drive pivot-runtime: containerd (ctr and the runc shim v2) and podman (through conmon).
//
// Each client runs with private state in a scratch directory: containerd is started here with its own
// config, root, state and socket; podman gets its own --root, --runroot and --tmpdir. Images are built
// from Debian's busybox-static (no network). Containers get no network but loopback. Afterwards the
// clients are stopped, and their cgroups, mounts and directories removed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Containerd } from "../fixtures/containerd.ts";
import {
  cgroupDirs,
  killAndWait,
  pidsWithArg,
  removeCgroups,
  sleep,
  subdirs,
  unmountUnder,
} from "../fixtures/host.ts";
import { BUN, isRoot, makeBusyboxRootfs, REPO, rm, tempDir } from "../helpers.ts";

if (!isRoot) throw new Error("the client tests run real containers and need root");

for (const tool of ["containerd", "ctr", "containerd-shim-runc-v2", "podman", "conmon", "script"]) {
  if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
    throw new Error(
      `${tool} is not installed: run scripts/setup.sh (it installs containerd and podman)`,
    );
}

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; output goes through files (a detached container may inherit it). */
function sh(
  cmd: string,
  args: string[],
  options: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {},
): Result {
  const dir = tempDir("pivot-client-out-");
  const out = openSync(join(dir, "out"), "w");
  const err = openSync(join(dir, "err"), "w");
  try {
    const r = spawnSync(cmd, args, {
      stdio: [options.input === undefined ? "ignore" : "pipe", out, err],
      ...(options.input === undefined ? {} : { input: options.input }),
      timeout: options.timeoutMs ?? 60_000,
      env: options.env ?? process.env,
    });
    return {
      status: r.status ?? -1,
      stdout: readFileSync(join(dir, "out"), "utf8"),
      stderr: readFileSync(join(dir, "err"), "utf8"),
    };
  } finally {
    closeSync(out);
    closeSync(err);
    rm(dir);
  }
}

/** Starts a command in the background; the promise resolves with its result. */
function shAsync(cmd: string, args: string[]): Promise<Result> {
  const dir = tempDir("pivot-client-out-");
  const out = openSync(join(dir, "out"), "w");
  const err = openSync(join(dir, "err"), "w");
  const p = spawn(cmd, args, { stdio: ["ignore", out, err] });
  return new Promise((resolve) => {
    p.on("exit", (code, signal) => {
      closeSync(out);
      closeSync(err);
      const r = {
        status: code ?? (signal ? 128 : -1),
        stdout: readFileSync(join(dir, "out"), "utf8"),
        stderr: readFileSync(join(dir, "err"), "utf8"),
      };
      rm(dir);
      resolve(r);
    });
  });
}

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Runs a command with a pty as its terminal (script from bsdutils); INPUT is typed into it. */
function withTty(cmd: string, args: string[], input?: string): Result {
  const line = [cmd, ...args].map(quote).join(" ");
  return sh("script", ["-qec", line, "/dev/null"], input === undefined ? {} : { input });
}

function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): void {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    sleep(50);
  }
}

function parentOf(pid: number): { pid: number; comm: string } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
  return { pid: ppid, comm: readFileSync(`/proc/${ppid}/comm`, "utf8").trim() };
}

/** Is the process frozen by its cgroup's freezer (v1 freezer.state, or v2 cgroup.freeze)? */
function frozen(pid: number): boolean {
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("freezer"));
  if (v1 && existsSync("/sys/fs/cgroup/freezer")) {
    const path = v1.split(":").slice(2).join(":");
    return readFileSync(`/sys/fs/cgroup/freezer${path}/freezer.state`, "utf8").trim() === "FROZEN";
  }
  const v2 = lines.find((l) => l.startsWith("0::"))!.slice(3);
  const base = existsSync("/sys/fs/cgroup/unified") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
  return readFileSync(`${base}${v2}/cgroup.freeze`, "utf8").trim() === "1";
}

let work: string;
/** A wrapper as scripts/setup.sh installs in /usr/local/bin, for this checkout. */
let runtimeBin: string;
let rootfs: string;
/** The busybox root filesystem as one tar: the image's layer, and podman's import. */
let layerTar: string;
/** Hosts without CAP_SYS_RESOURCE (a nested container) cannot raise rlimits above their own. */
let canRaiseRlimits: boolean;

beforeAll(() => {
  work = tempDir("pivot-clients-");
  runtimeBin = join(work, "pivot-runtime");
  writeFileSync(runtimeBin, `#!/bin/sh\nexec ${BUN} ${join(REPO, "bin/pivot-runtime.ts")} "$@"\n`, {
    mode: 0o755,
  });
  rootfs = join(work, "rootfs");
  makeBusyboxRootfs(rootfs);
  layerTar = join(work, "layer.tar");
  const tar = sh("tar", ["-C", rootfs, "-cf", layerTar, "."]);
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]!;
  canRaiseRlimits = ((BigInt(`0x${capEff}`) >> 24n) & 1n) === 1n;
});

afterAll(() => {
  unmountUnder(work);
  rm(work);
});

describe("containerd (ctr with the runc shim v2, --runc-binary pivot-runtime)", () => {
  const ns = `pivot-test-${process.pid}`;
  let ctrd: Containerd;
  let runcRoot: string;
  let n = 0;
  const nextId = (name: string) => `${name}-${++n}`;
  const image = "localhost/busybox:test";

  const ctr = (args: string[], options: { timeoutMs?: number; input?: string } = {}) =>
    sh("ctr", ctrArgs(args), options);
  const ctrArgs = (args: string[]) => ctrd.argv(args).slice(1);
  const runFlags = () => ["--runc-binary", runtimeBin, "--runc-root", runcRoot];

  function taskPid(id: string): number {
    const line = ctr(["task", "ls"])
      .stdout.split("\n")
      .find((l) => l.split(/\s+/)[0] === id);
    return Number(line?.split(/\s+/)[1] ?? 0);
  }
  const taskStatus = (id: string) => ctrd.taskStatus(id);
  function removeContainer(id: string): void {
    ctr(["task", "kill", "-s", "SIGKILL", id]);
    waitFor(`${id} to stop`, () => ["STOPPED", ""].includes(taskStatus(id)), 10_000);
    ctr(["task", "delete", id]);
    ctr(["container", "delete", id]);
  }

  beforeAll(() => {
    ctrd = new Containerd(work, ns);
    ctrd.start();
    const dir = ctrd.dir;
    runcRoot = join(dir, "runc");

    // A one-layer image in docker-archive form: the layer, its config and a manifest.
    const img = join(dir, "image");
    mkdirSync(img);
    const layer = readFileSync(layerTar);
    writeFileSync(join(img, "layer.tar"), layer);
    const diffId = `sha256:${createHash("sha256").update(layer).digest("hex")}`;
    const configJson = JSON.stringify({
      architecture: process.arch === "arm64" ? "arm64" : "amd64",
      os: "linux",
      config: { Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"] },
      rootfs: { type: "layers", diff_ids: [diffId] },
      history: [{ created_by: "pivot client tests: busybox-static" }],
    });
    const configName = `${createHash("sha256").update(configJson).digest("hex")}.json`;
    writeFileSync(join(img, configName), configJson);
    writeFileSync(
      join(img, "manifest.json"),
      JSON.stringify([{ Config: configName, RepoTags: [image], Layers: ["layer.tar"] }]),
    );
    const archive = join(dir, "busybox.tar");
    const tar = sh("tar", ["-C", img, "-cf", archive, "manifest.json", configName, "layer.tar"]);
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
    const imported = ctr(["images", "import", archive]);
    if (imported.status !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
  }, 60_000);

  afterAll(() => {
    ctrd?.cleanup();
  }, 60_000);

  test("ctr run --rm prints the output and exits 0", () => {
    const r = ctr(["run", "--rm", ...runFlags(), image, nextId("echo"), "echo", "hi"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hi\n");
    expect(r.status).toBe(0);
  }, 60_000);

  test("exit codes pass through: a code, and 128+N for a signal", async () => {
    const coded = ctr(["run", "--rm", ...runFlags(), image, nextId("exit"), "sh", "-c", "exit 7"]);
    expect(coded.status).toBe(7);
    const id = nextId("signal");
    const running = shAsync(
      "ctr",
      ctrArgs(["run", "--rm", ...runFlags(), image, id, "sleep", "100"]),
    );
    waitFor(`${id} to run`, () => taskStatus(id) === "RUNNING");
    expect(ctr(["task", "kill", "-s", "SIGKILL", id]).status).toBe(0);
    expect((await running).status).toBe(137);
  }, 60_000);

  test("run -d, task exec, task ps, pause and resume, kill and delete", () => {
    const id = nextId("detached");
    const started = ctr(["run", "-d", ...runFlags(), image, id, "sleep", "1000"]);
    expect(started.stderr).toBe("");
    expect(started.status).toBe(0);
    try {
      expect(taskStatus(id)).toBe("RUNNING");
      const pid = taskPid(id);
      // The container's init is the shim's child: it reaped the launcher's orphan as a subreaper.
      expect(parentOf(pid).comm).toBe("containerd-shim");
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toBe("sleep\u00001000\u0000");

      const exec = ctr([
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in $(readlink /proc/1/exe) as $$; exit 3",
      ]);
      expect(exec.stdout).toMatch(/^in \/bin\/busybox as \d+\n$/);
      expect(exec.status).toBe(3);

      expect(ctr(["task", "exec", "-d", "--exec-id", "e2", id, "sleep", "500"]).status).toBe(0);
      const ps = ctr(["task", "ps", id]);
      expect(ps.status).toBe(0);
      const pids = ps.stdout
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((l) => Number(l.split(/\s+/)[0]));
      expect(pids).toContain(pid);
      expect(pids.length).toBe(2);
      expect(ps.stdout).toContain("ExecID:e2");

      expect(ctr(["task", "pause", id]).status).toBe(0);
      expect(taskStatus(id)).toBe("PAUSED");
      waitFor("the freezer to freeze the container", () => frozen(pid), 5000);
      expect(ctr(["task", "resume", id]).status).toBe(0);
      expect(taskStatus(id)).toBe("RUNNING");
      waitFor("the freezer to thaw the container", () => !frozen(pid), 5000);

      // sleep as PID 1 ignores SIGTERM (no handler): the task keeps running, as with runc.
      expect(ctr(["task", "kill", "-s", "SIGKILL", id]).status).toBe(0);
      waitFor(`${id} to stop`, () => taskStatus(id) === "STOPPED");
      // Killing a stopped task is "already finished" (the shim matches runc's wording), not an error.
      const again = ctr(["task", "kill", id]);
      expect(again.stderr).toContain("process already finished");
      expect(ctr(["task", "delete", id]).status).toBe(0);
      expect(ctr(["container", "delete", id]).status).toBe(0);
      expect(existsSync(join(runcRoot, ns, id))).toBe(false);
    } finally {
      removeContainer(id);
    }
  }, 60_000);

  test("ctr run -t gives the container a terminal that carries input and the exit code", () => {
    const tty = withTty("ctr", [
      ...ctrArgs(["run", "--rm", "-t", ...runFlags(), image, nextId("tty")]),
      "sh",
      "-c",
      "tty; exit 3",
    ]);
    expect(tty.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(tty.status).toBe(3);
    const typed = withTty(
      "ctr",
      ctrArgs(["run", "--rm", "-t", ...runFlags(), image, nextId("typed"), "sh"]),
      "echo typed-$((6*7))\nexit 4\n",
    );
    expect(typed.stdout).toContain("typed-42");
    expect(typed.status).toBe(4);
  }, 60_000);

  test("task exec -t in a running container", () => {
    const id = nextId("exec-tty");
    expect(ctr(["run", "-d", ...runFlags(), image, id, "sleep", "1000"]).status).toBe(0);
    try {
      const r = withTty("ctr", ctrArgs(["task", "exec", "-t", "--exec-id", "t1", id, "tty"]));
      expect(r.stdout).toMatch(/\/dev\/pts\/\d+/);
      expect(r.status).toBe(0);
    } finally {
      removeContainer(id);
    }
  }, 60_000);

  test("a failed create reaches ctr with pivot-runtime's message (from the json --log)", () => {
    const id = nextId("missing");
    const r = ctr(["run", "--rm", ...runFlags(), image, id, "/no/such/program"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("OCI runtime create failed");
    expect(r.stderr).toContain("/no/such/program");
    expect(r.stderr).toContain("no such file or directory");
    ctr(["container", "delete", id]);
    expect(existsSync(join(runcRoot, ns, id))).toBe(false);
  }, 60_000);

  test("nothing is left behind: state, cgroups, processes", () => {
    expect(ctr(["task", "ls", "--quiet"]).stdout.trim()).toBe("");
    expect(readdirSync(join(runcRoot, ns))).toEqual([]);
    // containerd names cgroups /NAMESPACE/ID; pivot-runtime removes each container's own.
    for (const d of cgroupDirs(ns)) expect(subdirs(d)).toEqual([]);
    expect(pidsWithArg(runcRoot)).toEqual([]);
  }, 30_000);
});

describe("podman (conmon, --runtime pivot-runtime)", () => {
  const parent = `pivot-podman-test-${process.pid}`;
  let dir: string;
  /** Private storage and state: podman's defaults are under /var/lib/containers and /run. */
  let storage: string[];
  let base: string[];
  let runFlags: string[];
  const image = "localhost/busybox:test";
  let n = 0;
  const nextName = (name: string) => `${name}-${++n}`;

  const podman = (args: string[], options: { timeoutMs?: number; input?: string } = {}) =>
    sh("podman", [...base, ...args], options);
  const inspect = (name: string, format: string) =>
    podman(["inspect", name, "--format", format]).stdout.trim();

  beforeAll(() => {
    dir = join(work, "podman");
    mkdirSync(dir);
    storage = [
      "--root",
      join(dir, "root"),
      "--runroot",
      join(dir, "runroot"),
      "--tmpdir",
      join(dir, "tmp"),
      "--network-config-dir",
      join(dir, "networks"),
      "--storage-driver",
      "vfs",
    ];
    base = [
      "--runtime",
      runtimeBin,
      ...storage,
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
    ];
    runFlags = [
      "--network",
      "none",
      "--cgroup-parent",
      `/${parent}`,
      // podman asks for nofile and nproc 1048576; without CAP_SYS_RESOURCE runc and crun fail too.
      ...(canRaiseRlimits ? [] : ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]),
    ];
    const imported = podman(["import", layerTar, image], { timeoutMs: 120_000 });
    if (imported.status !== 0) throw new Error(`podman import failed: ${imported.stderr}`);
  }, 120_000);

  afterAll(() => {
    if (!base) return;
    podman(["rm", "--all", "--force", "--time", "0"], { timeoutMs: 60_000 });
    // conmon processes name our runroot on their command line.
    killAndWait(pidsWithArg(join(dir, "runroot")));
    removeCgroups(parent);
    unmountUnder(dir);
  }, 90_000);

  test("podman run --rm prints the output and exits 0", () => {
    const r = podman(["run", "--rm", ...runFlags, image, "echo", "hi"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hi\n");
    expect(r.status).toBe(0);
  }, 60_000);

  test("exit codes pass through: a code, and 128+N for a signal", () => {
    expect(podman(["run", "--rm", ...runFlags, image, "sh", "-c", "exit 42"]).status).toBe(42);
    const name = nextName("signal");
    expect(podman(["run", "-d", "--name", name, ...runFlags, image, "sleep", "100"]).status).toBe(
      0,
    );
    expect(podman(["kill", "--signal", "KILL", name]).status).toBe(0);
    const waited = podman(["wait", name]);
    expect(waited.stdout.trim()).toBe("137");
    expect(podman(["rm", name]).status).toBe(0);
  }, 60_000);

  test("run -d, exec, pause and unpause, stop and rm", () => {
    const name = nextName("detached");
    const started = podman([
      "run",
      "-d",
      "--name",
      name,
      ...runFlags,
      image,
      "sh",
      "-c",
      'trap "exit 9" TERM; while true; do sleep 0.1; done',
    ]);
    expect(started.status).toBe(0);
    try {
      expect(inspect(name, "{{.State.Status}}")).toBe("running");
      const pid = Number(inspect(name, "{{.State.Pid}}"));
      // The init is conmon's child: conmon, a subreaper, reaped the launcher's orphan.
      expect(parentOf(pid).comm).toBe("conmon");

      const exec = podman(["exec", name, "sh", "-c", "echo in $(cat /proc/1/comm); exit 5"]);
      expect(exec.stdout).toBe("in sh\n");
      expect(exec.status).toBe(5);
      expect(podman(["exec", "-d", name, "sleep", "300"]).status).toBe(0);
      const top = podman(["top", name, "args"]);
      expect(top.stdout).toContain("sleep 300");

      expect(podman(["pause", name]).status).toBe(0);
      expect(inspect(name, "{{.State.Status}}")).toBe("paused");
      waitFor("the freezer to freeze the container", () => frozen(pid), 5000);
      expect(podman(["unpause", name]).status).toBe(0);
      expect(inspect(name, "{{.State.Status}}")).toBe("running");
      waitFor("the freezer to thaw the container", () => !frozen(pid), 5000);

      // SIGTERM (podman kill ID 15) reaches the trap; the exit code is the script's.
      const stopped = podman(["stop", "--time", "10", name]);
      expect(stopped.stderr).toBe("");
      expect(stopped.status).toBe(0);
      expect(inspect(name, "{{.State.Status}} {{.State.ExitCode}}")).toBe("exited 9");
      expect(podman(["start", name]).status).toBe(0);
      expect(inspect(name, "{{.State.Status}}")).toBe("running");
    } finally {
      const removed = podman(["rm", "--force", "--time", "0", name]);
      expect(removed.stderr).toBe("");
      expect(removed.status).toBe(0);
    }
  }, 90_000);

  test("podman run -it and exec -it get a terminal that carries input and the exit code", () => {
    // The short sleep: podman 4.3 sometimes loses the output of a process that exits at once
    // (seen about once in 15 runs, with this session's and with older Pivot binaries alike).
    const tty = withTty("podman", [
      ...base,
      "run",
      "--rm",
      "-it",
      ...runFlags,
      image,
      "sh",
      "-c",
      "tty; sleep 0.2; exit 3",
    ]);
    expect(tty.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(tty.status).toBe(3);
    const typed = withTty(
      "podman",
      [...base, "run", "--rm", "-it", ...runFlags, image, "sh"],
      "echo typed-$((6*7))\nexit 4\n",
    );
    expect(typed.stdout).toContain("typed-42");
    expect(typed.status).toBe(4);

    const name = nextName("exec-tty");
    expect(podman(["run", "-d", "--name", name, ...runFlags, image, "sleep", "1000"]).status).toBe(
      0,
    );
    try {
      const r = withTty("podman", [
        ...base,
        "exec",
        "-it",
        name,
        "sh",
        "-c",
        "tty; sleep 0.2; exit 6",
      ]);
      expect(r.stdout).toMatch(/\/dev\/pts\/\d+/);
      expect(r.status).toBe(6);
    } finally {
      podman(["rm", "--force", "--time", "0", name]);
    }
  }, 90_000);

  test("--read-only and --tmpfs: tmpfs mounts with tmpcopyup keep the directory's files", () => {
    const ro = podman([
      "run",
      "--rm",
      "--read-only",
      ...runFlags,
      image,
      "sh",
      "-c",
      "touch /x 2>/dev/null && echo root-writable; touch /tmp/y && echo tmp-ok; stat -c %a /tmp",
    ]);
    expect(ro.stderr).toBe("");
    expect(ro.stdout).toBe("tmp-ok\n1777\n");
    expect(ro.status).toBe(0);
    const tmpfs = podman([
      "run",
      "--rm",
      "--tmpfs",
      "/etc",
      ...runFlags,
      image,
      "sh",
      "-c",
      "grep -c . /etc/passwd; grep ' /etc ' /proc/mounts | cut -d' ' -f3",
    ]);
    expect(tmpfs.stderr).toBe("");
    expect(tmpfs.stdout).toBe("2\ntmpfs\n");
    expect(tmpfs.status).toBe(0);
  }, 60_000);

  test("--privileged: the host's devices, with their modes", () => {
    const r = podman([
      "run",
      "--rm",
      "--privileged",
      ...runFlags,
      image,
      "sh",
      "-c",
      "stat -c '%A %t:%T' /dev/null /dev/zero",
    ]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("crw-rw-rw- 1:3\ncrw-rw-rw- 1:5\n");
    expect(r.status).toBe(0);
  }, 60_000);

  test("a failed create is reported with pivot-runtime's message, and its cleanup is quiet", () => {
    const r = podman(["run", "--rm", ...runFlags, image, "/no/such/program"]);
    expect(r.status).toBe(127);
    expect(r.stderr).toContain("/no/such/program");
    expect(r.stderr).toContain("no such file or directory");
    // podman then calls `delete --force` on a container that is gone: no complaint.
    expect(r.stderr).not.toContain("does not exist");
  }, 60_000);

  test("containers.conf naming pivot-runtime as the default runtime (as README.md shows)", () => {
    const conf = join(dir, "containers.conf");
    writeFileSync(
      conf,
      [
        "[containers]",
        ...(canRaiseRlimits ? [] : ['default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]']),
        "[engine]",
        'runtime = "pivot"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        "[engine.runtimes]",
        `pivot = ["${runtimeBin}"]`,
        "",
      ].join("\n"),
    );
    // The same storage and state flags as the other tests, but no --runtime and no cgroup flags.
    const env = { ...process.env, CONTAINERS_CONF: conf };
    const info = sh("podman", [...storage, "info", "--format", "{{.Host.OCIRuntime.Path}}"], {
      env,
    });
    expect(info.stdout.trim()).toBe(runtimeBin);
    const r = sh(
      "podman",
      [
        ...storage,
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        `/${parent}`,
        image,
        "echo",
        "configured",
      ],
      { env },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("configured\n");
    expect(r.status).toBe(0);
  }, 60_000);

  test("podman info reads the runtime's --version", () => {
    const r = podman(["info", "--format", "{{.Host.OCIRuntime.Version}}"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("pivot-runtime version");
  }, 60_000);

  test("nothing is left behind: containers, cgroups", () => {
    expect(podman(["ps", "--all", "--quiet"]).stdout.trim()).toBe("");
    // podman calls the runtime without --root: its containers were in the default root. Their
    // bundles are in our podman --root.
    const list = sh(runtimeBin, ["list", "--format", "json"]);
    expect(list.status).toBe(0);
    const bundles = (JSON.parse(list.stdout) as { bundle: string }[]).map((c) => c.bundle);
    expect(bundles.filter((b) => b.startsWith(`${dir}/`))).toEqual([]);
    // Under the cgroup parent only conmon's own cgroup (podman's business) may remain.
    for (const d of cgroupDirs(parent))
      expect(subdirs(d).filter((s) => s !== "conmon")).toEqual([]);
  }, 30_000);
});
