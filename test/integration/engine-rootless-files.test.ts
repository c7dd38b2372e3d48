// The rootless engine's files of running containers (issue #7): `pivot export` of a running
// container as an ordinary user, run in the container's monitor's user namespace (as `pivot cp`
// is) and reading the overlay where the monitor's mount namespace has it. The throwaway user,
// its store and image come from test/fixtures/rootless-user.ts.
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chownSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mountsUnder } from "../fixtures/engine.ts";
import { ROOTLESS_IMAGE, rootlessUserForFile, until } from "../fixtures/rootless-user.ts";
import { BUN, PIVOT_CLI } from "../helpers.ts";

const u = rootlessUserForFile("pivrf");

/** `tar -tvf FILE --numeric-owner` as lines. */
const listing = (file: string): string[] =>
  spawnSync("tar", ["-tvf", file, "--numeric-owner"], { encoding: "utf8" })
    .stdout.trim()
    .split("\n");
/** The listing line of `name` (./name) in the tar. */
const entry = (lines: string[], name: string) => lines.find((l) => l.endsWith(` ./${name}`));
const entryStartingWith = (lines: string[], name: string) =>
  lines.find((l) => l.includes(` ./${name} -> `));
const member = (file: string, name: string) =>
  spawnSync("tar", ["-xOf", file, `./${name}`], { encoding: "utf8" }).stdout;

describe("rootless export of a running container", () => {
  afterEach(() => u.removeContainers(), 60_000);

  test("detached (conmon): files written after start, their owners as the container sees them; no volume, no mount, no link followed", async () => {
    const out = u.dir("export-out");
    const data = u.dir("export-data");
    const secret = join(u.work, "export-secret");
    writeFileSync(secret, "host-secret\n", { mode: 0o600 });
    chownSync(secret, u.uid, u.gid);
    // After `run -d` returns and the test has seen it running: a file of the image's 1000, a
    // directory of 33, a file changed in the image's, one removed, a file in a bind mount (not
    // exported), and links out of the container to a host file the user may read.
    u.ok([
      "run",
      "-d",
      "--name",
      "live",
      "-v",
      `${data}:/data`,
      ROOTLESS_IMAGE,
      "sh",
      "-c",
      [
        "while [ ! -e /go ]; do sleep 0.1; done",
        "echo late > /late && chown 1000:1000 /late",
        "mkdir /www && echo page > /www/index && chown -R 33:33 /www",
        "echo changed >> /owned/f && rm /bin/vi",
        "echo volume > /data/in-volume",
        `ln -s ${secret} /abs && ln -s /../../../..${secret} /rel`,
        "echo written; exec sleep 600",
      ].join("; "),
    ]);
    expect(u.ok(["ps", "--format", "{{.Names}} {{.Status}}"])).toMatch(/^live Up /m);
    // The trigger goes in through cp, which joins the monitor's namespace as export does.
    const go = join(out, "go");
    writeFileSync(go, "");
    chownSync(go, u.uid, u.gid);
    u.ok(["cp", go, "live:/go"]);
    await until("the container's writes", () => u.ok(["logs", "live"]).includes("written"));

    // To a file (-o) and to stdout.
    const file = join(out, "live.tar");
    u.ok(["export", "-o", file, "live"]);
    expect(readFileSync(file).subarray(257, 262).toString()).toBe("ustar");
    const streamed = join(out, "streamed.tar");
    const r = u.run(["sh", "-c", `exec ${BUN} ${PIVOT_CLI} export live > ${streamed}`]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    for (const tar of [file, streamed]) {
      const lines = listing(tar);
      expect(entry(lines, "late")).toMatch(/^-rw-r--r-- 1000\/1000 /);
      expect(member(tar, "late")).toBe("late\n");
      expect(entry(lines, "www/index")).toMatch(/^-\S+ 33\/33 /);
      expect(member(tar, "www/index")).toBe("page\n");
      expect(entry(lines, "owned/f")).toMatch(/^-\S+ 1000\/1000 /);
      expect(member(tar, "owned/f")).toBe("a thousand\nchanged\n");
      expect(entry(lines, "bin/busybox")).toMatch(/^-\S+ 0\/0 /);
      expect(entry(lines, "bin/vi")).toBeUndefined();
      // The root filesystem without the container's mounts: the bind mount's target is an empty
      // directory, /proc and /dev have nothing of the container's kernel views.
      expect(entry(lines, "data/in-volume")).toBeUndefined();
      expect(lines.some((l) => l.includes(" ./proc/self"))).toBe(false);
      expect(lines.some((l) => l.includes(" ./dev/null"))).toBe(false);
      // Links are archived as links, never followed to the host's file.
      expect(entryStartingWith(lines, "abs")).toContain(`./abs -> ${secret}`);
      expect(entryStartingWith(lines, "rel")).toContain(`./rel -> /../../../..${secret}`);
      expect(readFileSync(tar, "latin1")).not.toContain("host-secret");
    }
    expect(listing(streamed).map((l) => l.split(" ").pop())).toEqual(
      listing(file).map((l) => l.split(" ").pop()),
    );
    expect(readFileSync(join(data, "in-volume"), "utf8")).toBe("volume\n");
    // The export ran in the monitor's namespace: the overlay was never mounted on the host.
    expect(mountsUnder(u.work)).toEqual([]);
    // Still running, still the same process.
    expect(u.ok(["exec", "live", "cat", "/late"])).toBe("late\n");

    u.ok(["rm", "-f", "live"]);
    await until("the user's processes to end", () => u.pids().length === 0);
    expect(mountsUnder(u.work)).toEqual([]);
    rmSync(secret, { force: true });
  }, 120_000);

  test("attached (the pivot that runs it is the monitor), and stopped again afterwards", async () => {
    const out = u.dir("attached-out");
    const log = join(out, "run.log");
    // An attached run in the background: its pivot, in its own user and mount namespace, is the
    // container's monitor and has the overlay mounted.
    const child = u.attached(
      [
        ...["--name", "att", ROOTLESS_IMAGE, "sh", "-c"],
        "echo attached > /mine && chown 1000:1000 /mine && echo written && exec sleep 600",
      ],
      log,
    );
    try {
      await until("the attached container's write", () =>
        readFileSync(log, "utf8").includes("written"),
      );
      const info = JSON.parse(u.ok(["inspect", "att"]));
      expect((Array.isArray(info) ? info[0] : info).state.monitor).toBe("inline");
      const file = join(out, "att.tar");
      u.ok(["export", "-o", file, "att"]);
      expect(entry(listing(file), "mine")).toMatch(/^-rw-r--r-- 1000\/1000 /);
      expect(member(file, "mine")).toBe("attached\n");
      expect(mountsUnder(u.work)).toEqual([]);

      // Stopped: exported from the overlay mounted for the while, as before; the same file.
      u.ok(["stop", "-t", "1", "att"]);
      await until("the attached pivot to exit", () => child.exitCode !== null);
      const stopped = join(out, "stopped.tar");
      u.ok(["export", "-o", stopped, "att"]);
      expect(member(stopped, "mine")).toBe("attached\n");
      expect(entry(listing(stopped), "mine")).toMatch(/^-rw-r--r-- 1000\/1000 /);
      expect(mountsUnder(u.work)).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    u.ok(["rm", "-f", "att"]);
    await until("the user's processes to end", () => u.pids().length === 0);
  }, 120_000);
});
