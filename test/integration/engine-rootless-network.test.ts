// Rootless user-mode networks (issue #7): `--network pasta` (podman's rootless networking since
// slirp4netns: the host's addresses and routes in the container, IPv4 and IPv6, ports forwarded
// by pasta's -t/-u), and the backstops that end slirp4netns and pasta when the container's
// monitor dies without cleaning up (SIGKILL), recovery (pivot ps) ending what those backstops
// missed, and an attached run removed from elsewhere. Host ports are chosen free at run time. The
// throwaway user comes from test/fixtures/rootless-user.ts; whatever it runs is removed by pid.
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeHostPort, hostPortFree } from "../../src/network/ports.ts";
import { makeBusyboxTar, mountsUnder } from "../fixtures/engine.ts";
import { ROOTLESS_IMAGE, rootlessUserForFile, until } from "../fixtures/rootless-user.ts";
import { PIVOT_CLI, pivotCli } from "../helpers.ts";

const IMAGE = ROOTLESS_IMAGE;

const u = rootlessUserForFile("pivnw");

// pasta runs as passt.avx2 where the CPU has AVX2 (pasta execs it).
const pastaPids = () => u.livePids(["pasta", "pasta.avx2", "passt", "passt.avx2"]);
const slirpPids = () => u.livePids(["slirp4netns"]);
/** pasta's watchers: sh blocked on the monitor's exit FIFO (named by $0). */
const watcherPids = () =>
  u.pids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("pivot-pasta-watch");
    } catch {
      return false;
    }
  });

const runRoot = () => join(u.xdg, "pivot");

/** Nothing of a user-mode network left: no process of the user, no state, no mount. */
async function nothingLeft(): Promise<void> {
  await until("the user's processes to end", () => u.pids().length === 0, 30_000);
  for (const d of ["slirp4netns", "pasta"]) {
    const dir = join(runRoot(), d);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  }
  expect(mountsUnder(u.work)).toEqual([]);
}

/** The first line a TCP server at HOST:PORT sends, or the error. */
function firstLine(host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\n")) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.split("\n")[0]!);
      }
    });
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on("end", () => {
      clearTimeout(timer);
      if (buf.includes("\n")) resolve(buf.split("\n")[0]!);
      else reject(new Error(`${host}:${port} closed the connection with "${buf}"`));
    });
  });
}

/** Retries `firstLine` until it answers (the server in the container may not listen yet). */
async function answer(host: string, port: number, ms = 20_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await firstLine(host, port);
    } catch (err) {
      if (Date.now() > end) throw err;
      await Bun.sleep(100);
    }
  }
}

/** The host's default route (IPv4 or IPv6): its interface, gateway and the interface's address. */
function hostDefault(family: 4 | 6): { dev: string; gateway: string; address: string } | null {
  const routes = JSON.parse(
    spawnSync("ip", ["-j", `-${family}`, "route", "show", "default"], { encoding: "utf8" })
      .stdout || "[]",
  ) as { dev: string; gateway?: string }[];
  const r = routes.find((x) => x.gateway);
  if (!r?.gateway) return null;
  const links = JSON.parse(
    spawnSync("ip", ["-j", `-${family}`, "addr", "show", "dev", r.dev, "scope", "global"], {
      encoding: "utf8",
    }).stdout || "[]",
  ) as { addr_info: { local: string }[] }[];
  const address = links[0]?.addr_info[0]?.local;
  return address ? { dev: r.dev, gateway: r.gateway, address } : null;
}

/** The container's id (for its state.json: the monitor's pid). */
const idOf = (name: string) => (JSON.parse(u.ok(["inspect", name])) as { id: string }[])[0]!.id;
const monitorPid = (name: string): number =>
  (
    JSON.parse(readFileSync(join(u.store, "containers", idOf(name), "state.json"), "utf8")) as {
      monitorPid: number;
    }
  ).monitorPid;

describe("rootless --network pasta", () => {
  afterEach(() => u.removeContainers(), 60_000);

  test("the host's addresses and routes in the container, IPv4 and IPv6; DNS through 169.254.1.1; nothing left", async () => {
    const v4 = hostDefault(4);
    const v6 = hostDefault(6);
    if (!v4) throw new Error("this test needs an IPv4 default route on the host");
    const r = u.pivot([
      "run",
      "--rm",
      "--network",
      "pasta",
      IMAGE,
      "sh",
      "-c",
      "ip -o addr show scope global; ip route; ip -6 route; cat /etc/resolv.conf; ls /sys/class/net",
    ]);
    expect(r.stderr).not.toContain("pasta"); // no error, no warning but the cgroup one
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${v4.dev}    inet ${v4.address}/`);
    expect(r.stdout).toMatch(new RegExp(`^default via ${v4.gateway} dev ${v4.dev}`, "m"));
    // IPv6 as pasta provides it: the host's global address and default route, where it has one.
    if (v6) {
      expect(r.stdout).toContain(`${v6.dev}    inet6 ${v6.address}/`);
      expect(r.stdout).toMatch(new RegExp(`^default via ${v6.gateway} dev ${v6.dev}`, "m"));
    }
    expect(r.stdout).toMatch(/^nameserver 169\.254\.1\.1$/m);
    expect(r.stdout).toMatch(new RegExp(`^${v4.dev}$`, "m")); // its own sysfs
    // pasta:--ipv4-only, one of pasta's own options passed through: no IPv6 address.
    const only4 = u.pivot([
      "run",
      "--rm",
      "--network",
      "pasta:--ipv4-only",
      "--dns",
      "192.0.2.53",
      IMAGE,
      "sh",
      "-c",
      "ip -o addr show scope global; cat /etc/resolv.conf",
    ]);
    expect(only4.status).toBe(0);
    expect(only4.stdout).toContain(`inet ${v4.address}/`);
    expect(only4.stdout).not.toContain("inet6");
    expect(only4.stdout).toContain("nameserver 192.0.2.53"); // --dns replaces pasta's forwarder
    expect(only4.stdout).not.toContain("169.254.1.1");
    await nothingLeft();
  }, 90_000);

  test("-p HOST:PORT (IPv4 and IPv6), ADDR:HOST:PORT, PORT and /udp: nc in the container answers the host; pivot port; nothing left after rm -f", async () => {
    const both = await freeHostPort("tcp");
    const local = await freeHostPort("tcp", "127.0.0.1");
    const udp = await freeHostPort("udp");
    u.ok([
      "run",
      "-d",
      "--name",
      "web",
      "--network",
      "pasta",
      "-p",
      `${both}:80`,
      "-p",
      `127.0.0.1:${local}:81`,
      "-p",
      "82",
      "-p",
      `${udp}:53/udp`,
      IMAGE,
      "sh",
      "-c",
      "nc -ll -p 80 -e echo hello on 80 & nc -ll -p 81 -e echo hello on 81 & exec nc -ll -p 82 -e echo hello on 82",
    ]);
    expect(pastaPids().length).toBe(1);
    expect(watcherPids().length).toBe(1);
    // pasta listens on the host's ports itself; a port without an address on IPv4 and IPv6.
    expect(await answer("127.0.0.1", both)).toBe("hello on 80");
    if (hostDefault(6)) expect(await answer("::1", both)).toBe("hello on 80");
    expect(await answer("127.0.0.1", local)).toBe("hello on 81");
    const ports = u.ok(["port", "web"]);
    expect(ports).toContain(`80/tcp -> 0.0.0.0:${both}`);
    expect(ports).toContain(`81/tcp -> 127.0.0.1:${local}`);
    const chosen = Number(/^82\/tcp -> 0\.0\.0\.0:(\d+)$/m.exec(ports)?.[1]);
    expect(chosen).toBeGreaterThan(0);
    expect(await answer("127.0.0.1", chosen)).toBe("hello on 82");
    // The UDP forward: pasta holds the host's UDP port (busybox has no UDP server to answer).
    expect(ports).toContain(`53/udp -> 0.0.0.0:${udp}`);
    expect(
      await hostPortFree({ hostIP: "", hostPort: udp, containerPort: 53, protocol: "udp" }),
    ).toBe(false);
    // From inside, through the container's own loopback.
    expect(u.ok(["exec", "web", "nc", "127.0.0.1", "80"]).trim()).toBe("hello on 80");
    u.ok(["rm", "-f", "web"]);
    await nothingLeft();
    await expect(firstLine("127.0.0.1", both, 1000)).rejects.toThrow();
    expect(
      await hostPortFree({ hostIP: "", hostPort: udp, containerPort: 53, protocol: "udp" }),
    ).toBe(true);
  }, 90_000);

  test("-p [::1]:PORT:80: published on the host's IPv6 loopback only", async () => {
    if (!hostDefault(6)) return; // no IPv6 on this host
    const port = await freeHostPort("tcp", "::1");
    u.ok([
      "run",
      "-d",
      "--name",
      "six",
      "--network",
      "pasta",
      "-p",
      `[::1]:${port}:80`,
      IMAGE,
      "nc",
      "-ll",
      "-p",
      "80",
      "-e",
      "echo",
      "hello over IPv6",
    ]);
    expect(await answer("::1", port)).toBe("hello over IPv6");
    await expect(firstLine("127.0.0.1", port, 1000)).rejects.toThrow();
    expect(u.ok(["port", "six"])).toContain(`80/tcp -> ::1:${port}`);
    u.ok(["rm", "-f", "six"]);
    await nothingLeft();
  }, 60_000);

  test("pasta ends with a container that exits on its own, with stop, and with an attached run", async () => {
    u.ok(["run", "-d", "--name", "brief", "--network", "pasta", IMAGE, "sh", "-c", "sleep 1"]);
    await nothingLeft();
    expect(u.ok(["ps", "-a", "--filter", "name=brief", "--format", "{{.Status}}"])).toMatch(
      /^Exited \(0\)/,
    );
    // Started again: a new pasta, gone again with the exit.
    u.ok(["start", "brief"]);
    await nothingLeft();
    u.ok(["rm", "brief"]);
    const port = await freeHostPort("tcp");
    u.ok([
      "run",
      "-d",
      "--name",
      "long",
      "--network",
      "pasta",
      "-p",
      `${port}:80`,
      IMAGE,
      "sleep",
      "600",
    ]);
    expect(pastaPids().length).toBe(1);
    u.ok(["stop", "-t", "1", "long"]);
    await nothingLeft();
    u.ok(["rm", "long"]);
    // Attached: the pivot process is the monitor; pasta goes with the container's exit.
    const r = u.pivot([
      "run",
      "--rm",
      "--network",
      "pasta",
      IMAGE,
      "sh",
      "-c",
      "ip -o link | grep -c UP",
    ]);
    expect(r.status).toBe(0);
    await nothingLeft();
  }, 90_000);

  test("refusals: an option the engine sets, a privileged host port, --ip", () => {
    const cases: [string[], string, string][] = [
      [["--network", "pasta:--netns,/tmp/x"], "pasta option --netns is set by the engine", "-p"],
      [["--network", "pasta:-f"], "pasta option -f is set by the engine", "pasta:--ipv4-only"],
      [
        ["--network", "pasta:--no-netns-q"],
        "pasta option --no-netns-q (--no-netns-quit) is set by the engine",
        "full names",
      ],
      [["--network", "pasta:-4f"], "pasta option -f is set by the engine", "pasta:-I,tap0"],
      [["--network", "pasta", "-p", "80:80"], "host port 80 is below 1024", "-p 8080:80"],
      [["--network", "pasta", "--ip", "10.0.2.5"], "--ip needs a network", "pasta"],
    ];
    for (const [flags, message, hint] of cases) {
      const r = u.pivot(["run", "--rm", ...flags, IMAGE, "true"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(new RegExp(`hint: .*${hint.replace(/[-/]/g, "\\$&")}`));
    }
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
    expect(pastaPids()).toEqual([]);
  });

  test("a start that fails (a host port in use, pasta refusing its options) leaves no process, state or mount", async () => {
    // A port of the test's own, listening on every address.
    const busy = Bun.listen({ hostname: "::", port: 0, socket: { data() {} } });
    try {
      const r = u.pivot([
        "run",
        "-d",
        "--name",
        "clash",
        "--network",
        "pasta",
        "-p",
        `${busy.port}:80`,
        IMAGE,
        "sleep",
        "600",
      ]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain(`host port ${busy.port}/tcp is already in use`);
    } finally {
      busy.stop(true);
    }
    // pasta itself exits 1 (an option it cannot parse): its message, attached and detached.
    for (const mode of [["--rm"], ["-d"]]) {
      const r = u.pivot(["run", ...mode, "--network", "pasta:-t,abc", IMAGE, "sleep", "600"]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("pasta exited (code 1) while setting up");
      expect(r.stderr).toContain("abc");
    }
    const ids = u.pivot(["ps", "-aq"]).stdout.split("\n").filter(Boolean);
    if (ids.length > 0) u.ok(["rm", "-f", ...ids]);
    await nothingLeft();
  }, 90_000);

  test("as root, --network pasta is refused with what to use instead", () => {
    const root = mkdtempSync(join(tmpdir(), "pivot-pasta-root-"));
    try {
      const tar = join(root, "rootfs.tar");
      makeBusyboxTar(tar);
      expect(pivotCli(root, ["import", tar, "localhost/pasta-root"]).status).toBe(0);
      const r = pivotCli(root, [
        "run",
        "--rm",
        "--network",
        "pasta",
        "localhost/pasta-root",
        "true",
      ]);
      expect(r.status).toBe(125);
      expect(r.stderr).toContain("--network pasta: pasta is for rootless containers");
      expect(r.stderr).toContain("hint: as root, use --network bridge");
      expect(r.stderr.trim().split("\n").length).toBe(2);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("the monitor SIGKILLed: slirp4netns and pasta still end", () => {
  afterEach(() => u.removeContainers(), 60_000);

  for (const network of ["slirp4netns", "pasta"] as const) {
    const helpers = network === "pasta" ? () => [...pastaPids(), ...watcherPids()] : slirpPids;

    test(`${network}, detached: conmon, the exit FIFO's only writer, killed; ${network} goes by itself; rm -f leaves nothing`, async () => {
      const port = await freeHostPort("tcp");
      u.ok([
        "run",
        "-d",
        "--name",
        "held",
        "--network",
        network,
        "-p",
        `${port}:80`,
        IMAGE,
        "nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "echo",
        "up",
      ]);
      expect(await answer("127.0.0.1", port)).toBe("up");
      expect(helpers().length).toBe(network === "pasta" ? 2 : 1);
      const conmon = monitorPid("held");
      expect(readFileSync(`/proc/${conmon}/comm`, "utf8").trim()).toBe("conmon");
      expect(u.pids()).toContain(conmon); // the test user's: started by this test
      process.kill(conmon, "SIGKILL");
      // No pivot command in between: the backstop alone ends it.
      await until(`${network} to end after its monitor's SIGKILL`, () => helpers().length === 0);
      await expect(firstLine("127.0.0.1", port, 1000)).rejects.toThrow();
      u.ok(["rm", "-f", "held"]);
      await nothingLeft();
    }, 90_000);

    test(`${network}, attached: the pivot holding the exit FIFO killed; ${network} goes by itself; rm -f leaves nothing`, async () => {
      const log = join(u.work, `attached-${network}.log`);
      const child = u.attached(
        ["--name", "held", "--network", network, IMAGE, "sh", "-c", "echo started; exec sleep 600"],
        log,
      );
      try {
        await until("the attached container to start", () =>
          readFileSync(log, "utf8").includes("started"),
        );
        expect(helpers().length).toBe(network === "pasta" ? 2 : 1);
        // The monitor is the pivot inside the user namespace (the one setpriv started re-runs
        // itself under unshare): state.json names it.
        const holder = monitorPid("held");
        expect(u.pids()).toContain(holder);
        expect(readFileSync(`/proc/${holder}/cmdline`, "utf8")).toContain(PIVOT_CLI);
        process.kill(holder, "SIGKILL");
        await until(`${network} to end after its monitor's SIGKILL`, () => helpers().length === 0);
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      u.ok(["rm", "-f", "held"]);
      await nothingLeft();
    }, 90_000);
  }
});

// Where the backstop cannot act, recovery (run first by `pivot ps`) ends the helper of a
// container that no longer runs, by the pid and start time the engine recorded.
describe("recovery: a slirp4netns or pasta its backstop missed is ended by pivot ps", () => {
  afterEach(() => u.removeContainers(), 60_000);

  /** The helper's state as the engine recorded it (<runRoot>/NETWORK/<id>.json). */
  const helperState = (network: string, id: string) =>
    JSON.parse(readFileSync(join(runRoot(), network, `${id}.json`), "utf8")) as {
      pid: number;
      startTime: string;
      watcherPid?: number;
    };
  /** A process of the test's user, alive (not a zombie) with this start time. */
  const running = (pid: number, startTime?: string): boolean => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return f[0] !== "Z" && (startTime === undefined || f[19] === startTime);
    } catch {
      return false;
    }
  };

  for (const network of ["slirp4netns", "pasta"] as const) {
    test(`${network}, detached: the backstop defeated, then conmon and the container killed; pivot ps ends ${network}; rm leaves nothing`, async () => {
      const port = await freeHostPort("tcp");
      const id = u
        .ok([
          "run",
          "-d",
          "--name",
          "left",
          "--network",
          network,
          "-p",
          `${port}:80`,
          IMAGE,
          "nc",
          "-ll",
          "-p",
          "80",
          "-e",
          "echo",
          "up",
        ])
        .trim();
      expect(await answer("127.0.0.1", port)).toBe("up");
      const rs = JSON.parse(
        readFileSync(join(u.store, "containers", id, "state.json"), "utf8"),
      ) as { monitorPid: number; pid: number };
      const helper = helperState(network, id);
      for (const pid of [rs.monitorPid, rs.pid, helper.pid]) expect(u.pids()).toContain(pid);
      // The backstop out of the way: pasta's watcher killed first (it never sees the FIFO's
      // end); slirp4netns stopped (it cannot poll its --exit-fd). Then the monitor and the
      // container's process, as kill -9 of everything would.
      if (network === "pasta") {
        const w = helper.watcherPid!;
        expect(readFileSync(`/proc/${w}/cmdline`, "utf8")).toContain("pivot-pasta-watch");
        process.kill(w, "SIGKILL");
      } else {
        process.kill(helper.pid, "SIGSTOP");
      }
      process.kill(rs.monitorPid, "SIGKILL");
      process.kill(rs.pid, "SIGKILL");
      await until(
        "conmon and the container to end",
        () => !running(rs.monitorPid) && !running(rs.pid),
      );
      await Bun.sleep(1000);
      expect(running(helper.pid, helper.startTime)).toBe(true); // left behind
      const ps = u.ok(["ps", "-a", "--filter", "name=left", "--format", "{{.Status}}"]);
      expect(ps).toMatch(/^Exited \(255\)/);
      await until(`${network} to end`, () => !running(helper.pid, helper.startTime), 10_000);
      expect(readdirSync(join(runRoot(), network))).toEqual([]);
      u.ok(["rm", "left"]);
      await nothingLeft();
    }, 90_000);
  }

  test("pasta, attached: the pivot killed between pasta's start and the container's state.json; pivot ps ends pasta, not before", async () => {
    // The window: the attached pivot is stopped as soon as pasta's state appears, before it
    // writes state.json; then everything of the user's but pasta is killed, the watcher before
    // the pivot holding its FIFO (so it never sees its end), the pivot last.
    const pastaDir = join(runRoot(), "pasta");
    for (let attempt = 0; ; attempt++) {
      const log = join(u.work, `window-${attempt}.log`);
      const child = u.attached(
        [
          "--name",
          "window",
          "--network",
          "pasta",
          IMAGE,
          "sh",
          "-c",
          "echo started; exec sleep 600",
        ],
        log,
      );
      const exited = new Promise<void>((res) => child.on("exit", () => res()));
      let stopped = 0;
      try {
        // The pivot inside the user namespace: the child of the one setpriv started.
        let inner = 0;
        const end = Date.now() + 30_000;
        while (!inner && Date.now() < end) {
          for (const pid of u.pids()) {
            try {
              const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
              const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
              if (
                ppid === child.pid &&
                readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(PIVOT_CLI)
              )
                inner = pid;
            } catch {}
          }
        }
        expect(inner).toBeGreaterThan(0);
        let file = "";
        while (!file && Date.now() < end) {
          try {
            file = readdirSync(pastaDir).find((n) => n.endsWith(".json")) ?? "";
          } catch {}
        }
        process.kill(inner, "SIGSTOP");
        stopped = inner;
        expect(file).not.toBe("");
        const id = file.slice(0, 64);
        if (existsSync(join(u.store, "containers", id, "state.json"))) {
          // Too late: the container started. Again, up to five times.
          if (attempt >= 4)
            throw new Error("the window between pasta's start and state.json was never caught");
          continue;
        }
        const helper = helperState("pasta", id);
        for (const pid of u.pids()) {
          if (pid !== helper.pid && pid !== inner) process.kill(pid, "SIGKILL");
        }
        process.kill(inner, "SIGKILL");
        await exited;
        await until("every process but pasta to end", () =>
          u.pids().every((p) => p === helper.pid || !running(p)),
        );
        await Bun.sleep(1000);
        expect(running(helper.pid, helper.startTime)).toBe(true); // no backstop ended it
        expect(
          u.ok(["ps", "-a", "--filter", "name=window", "--format", "{{.Status}}"]).trim(),
        ).toBe("Created");
        await until("pasta to end", () => !running(helper.pid, helper.startTime), 10_000);
        expect(readdirSync(pastaDir)).toEqual([]);
        u.ok(["rm", "-f", "window"]);
        await nothingLeft();
        return;
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        if (stopped) {
          try {
            process.kill(stopped, "SIGKILL");
          } catch {}
        }
        await exited;
        u.pivot(["rm", "-f", "window"]);
      }
    }
  }, 180_000);
});

// Without a network the monitor saw the exit only after rm -f had taken the container's
// directory (ENOENT on its exit file, exit 125), every time here; with pasta, whose end rm -f
// waits for, seldom.
for (const network of ["none", "pasta"] as const) {
  test(`--network ${network}: an attached run removed with rm -f from another shell ends quietly with 137; nothing left`, async () => {
    const log = join(u.work, `attached-rm-${network}.log`);
    const child = u.attached(
      ["--name", "gone", "--network", network, IMAGE, "sh", "-c", "echo started; exec sleep 600"],
      log,
    );
    const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
    try {
      await until("the attached container to start", () =>
        readFileSync(log, "utf8").includes("started"),
      );
      expect(pastaPids().length).toBe(network === "pasta" ? 1 : 0);
      expect(u.pivot(["rm", "-f", "gone"])).toEqual({ status: 0, stdout: "gone\n", stderr: "" });
      expect(await exited).toBe(137);
      const out = readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => !l.startsWith("pivot: warning: cgroups:"));
      expect(out).toEqual(["started", ""]);
      expect(u.ok(["ps", "-aq"])).toBe("");
      await nothingLeft();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      u.pivot(["rm", "-f", "gone"]);
    }
  }, 90_000);
}
