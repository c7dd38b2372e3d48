// The `pivot` command line over the engine, as a subprocess, with real containers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  constants as fsConstants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findConmon } from "../../src/engine/monitor.ts";
import {
  CONFIGURED,
  IMAGE,
  makeTestEngine,
  mountsUnder,
  type TestEngine,
} from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-cli-scratch-"));
  chmodSync(scratch, 0o755); // readable by the container's user nobody
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const pivot = (args: string[], input?: string) => pivotCli(t.root, args, { input });

describe.skipIf(!isRoot)("pivot CLI", () => {
  test("run --rm: output and exit code pass through", () => {
    const r = pivot(["run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    expect(r).toEqual({ status: 5, stdout: "out\n", stderr: "err\n" });
  });

  test("run --rm into a reader that goes away (`yes | head -1`): the container's stdout breaks too, the run ends and leaves nothing", () => {
    // Before: the attached run went on reading the container's stdout into the log for good.
    const started = Date.now();
    const r = spawnSync(
      "sh",
      ["-c", `${BUN} ${PIVOT_CLI} --root ${t.root} run --rm ${IMAGE} yes | head -1`],
      { encoding: "utf8", timeout: 20_000 },
    );
    expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: "y\n" });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(pivot(["ps", "-aq"]).stdout).toBe("");
  });

  test("run flags: -e, --env-file, -w, -u, -v, --hostname, -l, combined -i", () => {
    const envFile = join(scratch, "env");
    writeFileSync(envFile, "# settings\nFROM_FILE=yes\n");
    writeFileSync(join(scratch, "in"), "bound\n");
    const r = pivot(
      [
        "run",
        "--rm",
        "-i",
        "-e",
        "A=1",
        "--env-file",
        envFile,
        "-w",
        "/w",
        "-u",
        "nobody",
        "-v",
        `${scratch}:/mnt:ro`,
        "--hostname",
        "clihost",
        "-l",
        "k=v",
        IMAGE,
        "sh",
        "-c",
        'read line; echo "$line|$A|$FROM_FILE|$(pwd)|$(id -u)|$(hostname)|$(cat /mnt/in)"',
      ],
      "typed\n",
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("typed|1|yes|/w|65534|clihost|bound\n");
    expect(r.status).toBe(0);
  });

  test("system info: the store and run roots; as root, not rootless and no id mappings", () => {
    const r = pivot(["system", "info"]);
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.slice(0, 4)).toEqual([
      `Root: ${t.root}`,
      `Run Root: ${join(t.root, "run")}`,
      "Rootless: false",
      "ID Mappings: none (the host's ids)",
    ]);
    expect(lines[4]).toStartWith("Storage Driver: ");
  });

  test("Docker's longer names: image ls/tag/history/rm/build, system events; builder prune keeps what a kept image was built through", () => {
    expect(pivot(["image", "tag", IMAGE, "localhost/alias:1"]).status).toBe(0);
    expect(pivot(["image", "ls", "--format", "json"]).stdout).toContain("localhost/alias");
    expect(pivot(["image", "history", "-q", "localhost/alias:1"]).status).toBe(0);
    expect(pivot(["image", "rm", "localhost/alias:1"]).stdout).toContain("localhost/alias:1");
    const events = pivot([
      "system",
      "events",
      "--since",
      "1m",
      "--until",
      "0s",
      "--filter",
      "type=image",
      "--format",
      "{{.Action}}",
    ]);
    expect(events.stdout).toContain("tag\n");
    // image build, then the cache: a tagged image's records are not dangling; untagged, they are.
    const dir = mkdtempSync(join(tmpdir(), "pivot-cli-builder-"));
    try {
      writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE}\nRUN echo built > /built\n`);
      const built = pivot([
        "image",
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "localhost/built:1",
        dir,
      ]);
      expect(built.status).toBe(0);
      const records = () => readdirSync(join(t.root, "build-cache")).length;
      const cached = records();
      expect(cached).toBeGreaterThan(0);
      const keep = pivot(["builder", "prune", "-f"]);
      expect(keep.status).toBe(0);
      expect(records()).toBe(cached);
      expect(pivot(["rmi", "localhost/built:1"]).status).toBe(0);
      const dangling = pivot(["builder", "prune", "-f"]);
      expect(dangling.stdout).toContain("Deleted build cache objects:");
      expect(records()).toBe(0);
      // Without -f it asks, and a "no" removes nothing.
      expect(pivot(["builder", "prune", "-a"], "n\n").stdout).toContain(
        "WARNING! This will remove all build cache.",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(pivot(["builder", "nope"]).stderr).toContain('unknown builder command "nope"');
  }, 120_000);

  test("inspect NAME finds a container, else an image, a volume or a network, as Docker's; --type says which", () => {
    expect(pivot(["volume", "create", "insp-vol"]).status).toBe(0);
    expect(pivot(["create", "--name", "insp-ctr", IMAGE, "true"]).status).toBe(0);
    try {
      const imageId = pivot(["image", "inspect", "-f", "{{.Id}}", IMAGE]).stdout.trim();
      // One command, three kinds, in the order asked.
      const r = pivot(["inspect", "--format", "json", "insp-ctr", IMAGE, "insp-vol"]);
      expect(r.status).toBe(0);
      const [ctr, image, vol] = r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(ctr!.Name).toBe("/insp-ctr");
      expect(image!.Id).toBe(imageId);
      expect(image!.RepoTags).toEqual([IMAGE]);
      expect(vol!.name).toBe("insp-vol");
      // A map of its kind in a template: an image's Config.Labels misses a key as <no value>.
      expect(pivot(["inspect", "-f", "{{.Config.Labels.nope}}", IMAGE]).stdout).toBe(
        "<no value>\n",
      );
      expect(pivot(["inspect", "--type", "image", "-f", "{{.Id}}", IMAGE]).stdout.trim()).toBe(
        imageId,
      );
      const wrongType = pivot(["inspect", "--type", "image", "insp-vol"]);
      expect(wrongType.status).toBe(125);
      expect(wrongType.stderr).toContain("no such image: insp-vol");
      const none = pivot(["inspect", "nothing-by-this-name"]);
      expect(none.status).toBe(125);
      expect(none.stderr).toContain("no such object: nothing-by-this-name");
      expect(pivot(["inspect", "--type", "pod", "x"]).stderr).toContain(
        "--type pod: not a kind of object",
      );
    } finally {
      pivot(["rm", "-f", "insp-ctr"]);
      pivot(["volume", "rm", "insp-vol"]);
    }
  });

  test("errors are one line with a hint, exit 125", () => {
    const missing = pivot(["run", "--pull", "never", "--rm", "localhost/nope:1", "true"]);
    expect(missing.status).toBe(125);
    expect(missing.stderr).toMatch(/not found/);
    expect(missing.stderr).toMatch(/hint:/);
    const created = pivot(["create", "--name", "dup", IMAGE, "true"]);
    expect(created.status).toBe(0);
    expect(created.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const dup = pivot(["create", "--name", "dup", IMAGE, "true"]);
    expect(dup.status).toBe(125);
    expect(dup.stderr).toMatch(/name "dup" is already in use/);
    expect(pivot(["rm", "dup"]).status).toBe(0);
    const bad = pivot(["run", "--rm", "-v", "relative/path:/x", IMAGE, "true"]);
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/invalid volume name/);
  });

  test("volume create, ls, inspect, rm; a named volume persists across runs", () => {
    expect(pivot(["volume", "create", "clivol"]).stdout).toBe("clivol\n");
    expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).toContain("clivol");
    const info = JSON.parse(pivot(["volume", "inspect", "clivol"]).stdout) as {
      mountpoint: string;
    }[];
    expect(info[0]!.mountpoint).toBe(join(t.root, "volumes", "clivol", "_data"));
    expect(
      pivot(["run", "--rm", "-v", "clivol:/v", IMAGE, "sh", "-c", "echo 42 > /v/n"]).status,
    ).toBe(0);
    expect(readFileSync(join(info[0]!.mountpoint, "n"), "utf8")).toBe("42\n");
    expect(pivot(["run", "--rm", "-v", "clivol:/v", IMAGE, "cat", "/v/n"]).stdout).toBe("42\n");
    expect(pivot(["volume", "rm", "clivol"]).status).toBe(0);
    expect(pivot(["volume", "inspect", "clivol"]).status).toBe(125);
  });

  test("volume inspect: Docker's fields (Driver and Scope local, Labels and Options objects), then Pivot's", () => {
    expect(pivot(["volume", "create", "-l", "tier=db", "dockvol"]).status).toBe(0);
    try {
      const [v] = JSON.parse(pivot(["volume", "inspect", "dockvol"]).stdout) as Record<
        string,
        unknown
      >[];
      expect(Object.keys(v!).slice(0, 7)).toEqual([
        "CreatedAt",
        "Driver",
        "Labels",
        "Mountpoint",
        "Name",
        "Options",
        "Scope",
      ]);
      expect(v).toMatchObject({
        Driver: "local",
        Labels: { tier: "db" },
        Mountpoint: join(t.root, "volumes", "dockvol", "_data"),
        Name: "dockvol",
        Options: {},
        Scope: "local",
        mountpoint: join(t.root, "volumes", "dockvol", "_data"),
      });
      expect(v!.CreatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const fields = pivot([
        "volume",
        "inspect",
        "-f",
        '{{.Driver}} {{.Scope}} {{.Options.nope}} {{index .Labels "tier"}}',
        "dockvol",
      ]);
      expect(fields).toEqual({ status: 0, stdout: "local local <no value> db\n", stderr: "" });
      // `pivot inspect NAME` shows the same object.
      expect(pivot(["inspect", "-f", "{{.Driver}}", "dockvol"]).stdout).toBe("local\n");
    } finally {
      pivot(["volume", "rm", "dockvol"]);
    }
  });

  test("image prune asks first, as Docker's and the other prunes: n keeps the images, y removes", () => {
    expect(pivot(["create", "--name", "prune-src", IMAGE, "true"]).status).toBe(0);
    const dangling = pivot(["commit", "prune-src"]).stdout.trim(); // an image without a name
    expect(pivot(["rm", "prune-src"]).status).toBe(0);
    try {
      const ask = (warning: string) =>
        `WARNING! ${warning}\nAre you sure you want to continue? [y/N] `;
      expect(pivot(["image", "prune"], "n\n")).toEqual({
        status: 0,
        stdout: ask("This will remove all dangling images."),
        stderr: "",
      });
      expect(pivot(["image", "prune", "-a"], "n\n").stdout).toBe(
        ask("This will remove all images without at least one container associated to them."),
      );
      expect(pivot(["image", "inspect", "-f", "{{.Id}}", dangling]).stdout).toBe(`${dangling}\n`);
      const yes = pivot(["image", "prune"], "y\n");
      expect(yes.stdout).toContain(`deleted: ${dangling}\n`);
      expect(pivot(["image", "inspect", dangling]).status).not.toBe(0);
    } finally {
      pivot(["rmi", "-f", dangling]);
    }
  }, 60_000);

  test("inspect --format: Go templates over containers, images and volumes (Docker's field names work)", () => {
    const created = pivot([
      "create",
      "--name",
      "fmt",
      "-l",
      "role=web",
      "-v",
      `${scratch}:/h:ro`,
      "--tmpfs",
      "/t",
      IMAGE,
      "true",
    ]);
    expect(created.stderr).toBe("");
    const id = created.stdout.trim();
    try {
      expect(
        pivot(["inspect", "--format", '{{.Id}} {{.State.Status}} {{index .Labels "role"}}', "fmt"]),
      ).toEqual({ status: 0, stdout: `${id} created web\n`, stderr: "" });
      // Docker's State (Pivot's own is .state, matched exactly).
      expect(JSON.parse(pivot(["inspect", "-f", "{{json .State}}", "fmt"]).stdout)).toMatchObject({
        Status: "created",
        Running: false,
        ExitCode: 0,
      });
      expect(JSON.parse(pivot(["inspect", "-f", "{{json .state}}", "fmt"]).stdout)).toMatchObject({
        status: "created",
        running: false,
      });
      expect(pivot(["inspect", "-f", "json", "fmt"]).stdout.split("\n")).toHaveLength(2);
      expect(
        pivot([
          "inspect",
          "-f",
          "{{.NetworkSettings.IPAddress}}|{{len .NetworkSettings.Networks}}",
          "fmt",
        ]).stdout,
      ).toBe("|0\n");
      expect(
        pivot([
          "inspect",
          "-f",
          "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}};{{end}}",
          "fmt",
        ]).stdout,
      ).toBe(`bind ${scratch} /h false;tmpfs  /t true;\n`);
      const bad = pivot(["inspect", "-f", "{{.State.Nope}}", "fmt"]);
      expect(bad.status).toBe(125);
      expect(bad.stderr).toContain("can't evaluate field Nope in .State: it has Status");
      expect(pivot(["image", "inspect", "-f", "{{len .RootFS.Layers}}", IMAGE]).stdout).toBe("1\n");
      pivot(["volume", "create", "fmtvol"]);
      expect(pivot(["volume", "inspect", "--format", "{{.Name}}", "fmtvol"]).stdout).toBe(
        "fmtvol\n",
      );
      // Images' and volumes' maps as containers': a missing key is <no value>; a missing field
      // is still an error.
      expect(
        pivot([
          "image",
          "inspect",
          "-f",
          "{{.Config.Labels.nope}} {{.GraphDriver.Data.nope}}",
          IMAGE,
        ]),
      ).toEqual({ status: 0, stdout: "<no value> <no value>\n", stderr: "" });
      expect(pivot(["volume", "inspect", "-f", "{{.Labels.nope}}", "fmtvol"])).toEqual({
        status: 0,
        stdout: "<no value>\n",
        stderr: "",
      });
      expect(pivot(["image", "inspect", "-f", "{{.Config.Nope}}", IMAGE]).stderr).toContain(
        "can't evaluate field Nope",
      );
    } finally {
      pivot(["rm", "fmt"]);
      pivot(["volume", "rm", "fmtvol"]);
    }
  });

  test("history: a committed image's layers, newest first, its id on top; -q, --format json", () => {
    expect(pivot(["run", "--name", "hist", IMAGE, "sh", "-c", "echo x > /f"]).status).toBe(0);
    try {
      expect(pivot(["commit", "-m", "added f", "hist", "localhost/hist:1"]).status).toBe(0);
      const table = pivot(["history", "localhost/hist:1"]);
      expect(table.stderr).toBe("");
      const lines = table.stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(/^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
      expect(lines).toHaveLength(3);
      expect(lines[1]).toMatch(/^[0-9a-f]{12}\s+.*pivot commit hist\s+\S+\s+added f$/);
      expect(lines[2]).toMatch(/^<missing>\s/);
      const json = pivot(["image", "history", "--format", "json", "localhost/hist:1"])
        .stdout.trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as { id: string; size: number; comment: string });
      const id = pivot(["image", "inspect", "-f", "{{.Id}}", "localhost/hist:1"]).stdout.trim();
      expect(json.map((r) => r.id)).toEqual([id, "<missing>"]);
      expect(json[0]!.size).toBeGreaterThan(0);
      expect(json[0]!.comment).toBe("added f");
      expect(pivot(["history", "-q", "localhost/hist:1"]).stdout).toBe(
        `${id.slice(7, 19)}\n<missing>\n`,
      );
    } finally {
      pivot(["rm", "hist"]);
      pivot(["rmi", "localhost/hist:1"]);
    }
  });

  test("system prune -f [--volumes] [-a]: stopped containers, dangling images, unused anonymous volumes; what is used stays", async () => {
    const own = await makeTestEngine(); // a root of its own: prune takes everything unused
    const cli = (args: string[]) => pivotCli(own.root, args);
    try {
      expect(cli(["run", "--name", "stopped", IMAGE, "sh", "-c", "echo x > /y"]).status).toBe(0);
      expect(cli(["create", "--name", "kept-volume", "-v", "/anon", IMAGE]).status).toBe(0);
      const dangling = cli(["commit", "stopped"]).stdout.trim();
      expect(dangling).toMatch(/^sha256:/);
      const running = cli(["run", "-d", "--name", "running", "-v", "/inuse", IMAGE, "sleep", "60"]);
      expect(running.status).toBe(0);
      const r = cli(["system", "prune", "-f", "--volumes"]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toContain("Deleted Containers:\n");
      expect(r.stdout).toContain(`Deleted Images:\n${dangling}\n`);
      expect(r.stdout).toContain("Deleted Volumes:\n");
      expect(r.stdout).toMatch(/Total reclaimed space: \S+\n$/);
      expect(cli(["ps", "-a", "--format", "{{.Names}}"]).stdout).toBe("running\n");
      // The running container's anonymous volume and the tagged images stay.
      expect(cli(["volume", "ls", "-q"]).stdout.trim().split("\n")).toHaveLength(1);
      // IMAGE and CONFIGURED, the test engine's two tagged images.
      expect(cli(["images", "-q"]).stdout.trim().split("\n")).toHaveLength(2);
      expect(cli(["rm", "-f", "running"]).status).toBe(0);
      const all = cli(["system", "prune", "-f", "-a"]);
      expect(all.stdout).toContain("Deleted Images:\n");
      expect(cli(["images", "-q"]).stdout).toBe("");
    } finally {
      await own.cleanup();
    }
  });

  test("--volumes-from: another container's volumes and binds at the same places, :ro, kept by rm -v", () => {
    const host = mkdtempSync(join(scratch, "vf-"));
    writeFileSync(join(host, "h"), "from the host\n");
    const data = pivot([
      "create",
      "--name",
      "vf-data",
      "-v",
      "/anon",
      "-v",
      "vfnamed:/named",
      "-v",
      `${host}:/bind:ro`,
      IMAGE,
    ]);
    expect(data.stderr).toBe("");
    try {
      const rw = pivot([
        "run",
        "--rm",
        "--volumes-from",
        "vf-data",
        IMAGE,
        "sh",
        "-c",
        "echo a > /anon/a; echo n > /named/n; cat /bind/h; touch /bind/x || echo bind-ro",
      ]);
      expect(rw.stdout).toBe("from the host\nbind-ro\n");
      const ro = pivot([
        "run",
        "--rm",
        "--volumes-from",
        "vf-data:ro",
        IMAGE,
        "sh",
        "-c",
        "cat /anon/a /named/n; touch /anon/y || echo anon-ro",
      ]);
      expect(ro.stdout).toBe("a\nn\nanon-ro\n");
      const dup = pivot([
        "run",
        "--rm",
        "--volumes-from",
        "vf-data",
        "-v",
        `${host}:/named`,
        IMAGE,
        "true",
      ]);
      expect(dup.status).toBe(125);
      expect(dup.stderr).toContain("duplicate mount point /named");
      expect(pivot(["run", "--rm", "--volumes-from", "nosuch", IMAGE, "true"]).stderr).toContain(
        "--volumes-from nosuch: no such container nosuch",
      );
      // The --rm runs removed their anonymous volumes, never vf-data's.
      expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).toContain("vfnamed");
      expect(JSON.parse(pivot(["inspect", "vf-data"]).stdout)[0].volumes).toHaveLength(2);
      const anon = pivot([
        "inspect",
        "-f",
        "{{range .Volumes}}{{if .anonymous}}{{.name}}{{end}}{{end}}",
        "vf-data",
      ]).stdout.trim();
      expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).toContain(anon);
    } finally {
      pivot(["rm", "-v", "vf-data"]);
      pivot(["volume", "rm", "vfnamed"]);
    }
  });

  test("--volumes-from of a container that used --volumes-from: its binds too, read-only as it had them", () => {
    const host = mkdtempSync(join(scratch, "vf-chain-"));
    writeFileSync(join(host, "h"), "from the host\n");
    expect(
      pivot(["create", "--name", "vf-a", "-v", "/anon", "-v", `${host}:/bind`, IMAGE]).stderr,
    ).toBe("");
    try {
      expect(pivot(["create", "--name", "vf-b", "--volumes-from", "vf-a:ro", IMAGE]).stderr).toBe(
        "",
      );
      // As Docker: vf-b's mount points, as vf-b has them (read-only).
      const r = pivot([
        "run",
        "--rm",
        "--volumes-from",
        "vf-b",
        IMAGE,
        "sh",
        "-c",
        "cat /bind/h; touch /bind/x || echo bind-ro; touch /anon/x || echo anon-ro",
      ]);
      expect(r.stdout).toBe("from the host\nbind-ro\nanon-ro\n");
      expect(existsSync(join(host, "x"))).toBe(false);
    } finally {
      pivot(["rm", "-v", "vf-b"]);
      pivot(["rm", "-v", "vf-a"]);
    }
  });

  test("rm -v of a --volumes-from donor keeps the anonymous volumes another container uses; the last user's rm -v removes them", () => {
    expect(pivot(["create", "--name", "vf-donor", "-v", "/anon", IMAGE]).stderr).toBe("");
    const anon = pivot([
      "inspect",
      "-f",
      "{{range .Volumes}}{{.name}}{{end}}",
      "vf-donor",
    ]).stdout.trim();
    try {
      const user = pivot([
        "run",
        "-d",
        "--name",
        "vf-user",
        "--volumes-from",
        "vf-donor",
        IMAGE,
        "sleep",
        "60",
      ]);
      expect(user.stderr).toBe("");
      expect(pivot(["exec", "vf-user", "sh", "-c", "echo kept > /anon/f"]).status).toBe(0);
      expect(pivot(["rm", "-v", "vf-donor"]).status).toBe(0);
      expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).toContain(anon);
      expect(pivot(["exec", "vf-user", "cat", "/anon/f"]).stdout).toBe("kept\n");
      pivot(["stop", "-t", "0", "vf-user"]);
      const again = pivot(["start", "vf-user"]);
      expect(again.stderr).toBe("");
      expect(pivot(["exec", "vf-user", "cat", "/anon/f"]).stdout).toBe("kept\n");
      // The last container using it: its rm -v removes it, as Docker's does.
      expect(pivot(["rm", "-f", "-v", "vf-user"]).status).toBe(0);
      expect(pivot(["volume", "ls", "-q"]).stdout.split("\n")).not.toContain(anon);
    } finally {
      pivot(["rm", "-f", "-v", "vf-user"]);
      pivot(["rm", "-v", "vf-donor"]);
      pivot(["volume", "rm", anon]);
    }
  });

  test("a SIGTERM to an attached run before its container exists does not end it half-way: the container is made, runs, gets the signal, and nothing is left", async () => {
    // The run stops on its --env-file, a FIFO, before anything is made: the signal comes then.
    const fifo = join(scratch, "env-fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const child = spawn(
      BUN,
      [
        PIVOT_CLI,
        "--root",
        t.root,
        "run",
        "--rm",
        "--env-file",
        fifo,
        IMAGE,
        "sh",
        "-c",
        'trap "echo got TERM; exit 3" TERM; echo started; sleep 5 & wait',
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d;
    });
    const exited = new Promise<{ code: number | null; signal: string | null }>((res) =>
      child.on("exit", (code, signal) => res({ code, signal })),
    );
    try {
      const wchan = () => {
        try {
          return readFileSync(`/proc/${child.pid}/wchan`, "utf8");
        } catch {
          return "";
        }
      };
      for (let i = 0; i < 500 && wchan() !== "wait_for_partner"; i++) await Bun.sleep(20);
      expect(wchan()).toBe("wait_for_partner"); // blocked opening the FIFO
      child.kill("SIGTERM");
      await Bun.sleep(200);
      // Opened without blocking: a reader is there unless the signal ended the run.
      try {
        const fd = openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
        writeSync(fd, "A=1\n");
        closeSync(fd);
      } catch {}
      const end = await exited;
      // Before: killed by the signal itself, nothing printed, whatever was made left for later.
      expect(end.signal).toBeNull();
      expect(err).toBe("");
      expect(out.startsWith("started\n")).toBe(true);
      // Forwarded once it runs; a shell that had not set its trap yet would ignore it (PID 1).
      if (out === "started\ngot TERM\n") expect(end.code).toBe(3);
      else expect(end.code).toBe(0);
      expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("stop from another shell of an attached --rm run returns once the run has ended, not after a second timeout", async () => {
    const name = "attached-stop";
    // sleep as PID 1 ignores SIGTERM: stop -t 1 kills it after a second, and the run removes it.
    const child = spawn(
      BUN,
      [PIVOT_CLI, "--root", t.root, "run", "--rm", "--name", name, IMAGE, "sleep", "600"],
      {
        stdio: "ignore",
      },
    );
    const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
    try {
      for (let i = 0; i < 400; i++) {
        if (pivot(["inspect", "--format", "{{.State.Status}}", name]).stdout === "running\n") break;
        await Bun.sleep(50);
      }
      const started = performance.now();
      expect(pivot(["stop", "-t", "1", name])).toEqual({
        status: 0,
        stdout: `${name}\n`,
        stderr: "",
      });
      // A second for the timeout, then the kill: it once waited 10 s more for a removed container.
      expect(performance.now() - started).toBeLessThan(6000);
      expect(await exited).toBe(137);
      expect(pivot(["ps", "-a", "--filter", `name=${name}`, "-q"]).stdout).toBe("");
    } finally {
      if (child.exitCode === null) pivot(["rm", "-f", name]);
      await exited;
    }
  }, 60_000);

  test("rm -f from another shell of an attached run: the run ends quietly with 137; nothing left", async () => {
    // Twice: as it comes, and with the attached pivot stopped (SIGSTOP) while rm -f runs, so
    // it records the exit only after the container's directory is gone (the order a rootless
    // run always had: ENOENT on <dir>/exit and exit 125).
    for (const pauseMonitor of [false, true]) {
      const name = pauseMonitor ? "attached-paused" : "attached";
      const out = join(scratch, `${name}.out`);
      const err = join(scratch, `${name}.err`);
      const [o, e] = [openSync(out, "w"), openSync(err, "w")];
      let child: ChildProcess;
      try {
        child = spawn(
          BUN,
          [
            PIVOT_CLI,
            "--root",
            t.root,
            "run",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            "echo started; exec sleep 600",
          ],
          { stdio: ["ignore", o, e] },
        );
      } finally {
        closeSync(o);
        closeSync(e);
      }
      const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
      try {
        for (let i = 0; i < 400 && !readFileSync(out, "utf8").includes("started"); i++)
          await Bun.sleep(50);
        expect(readFileSync(out, "utf8")).toBe("started\n");
        const id = (JSON.parse(pivot(["inspect", name]).stdout) as { id: string }[])[0]!.id;
        const dir = join(t.root, "containers", id);
        const state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as {
          monitorPid: number;
          cgroupPaths?: Record<string, string>;
        };
        expect(state.monitorPid).toBe(child.pid!); // the attached pivot is the monitor
        if (pauseMonitor) process.kill(child.pid!, "SIGSTOP");
        const rm = pivot(["rm", "-f", name]);
        expect(rm).toEqual({ status: 0, stdout: `${name}\n`, stderr: "" });
        expect(existsSync(dir)).toBe(false);
        if (pauseMonitor) process.kill(child.pid!, "SIGCONT");
        expect(await exited).toBe(137);
        // Docker keeps a removed container's exit code a while for `wait`; so does Pivot.
        expect(pivot(["wait", id]).stdout).toBe("137\n");
        expect(readFileSync(out, "utf8")).toBe("started\n");
        expect(readFileSync(err, "utf8")).toBe("");
        expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
        expect(mountsUnder(dir)).toEqual([]);
        for (const p of Object.values(state.cgroupPaths ?? {})) expect(existsSync(p)).toBe(false);
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(child.pid!, "SIGCONT");
            process.kill(child.pid!, "SIGKILL");
          } catch {}
          await exited;
        }
        pivot(["rm", "-f", name]);
      }
    }
  }, 60_000);

  test.skipIf(!hasConmon)("run -d, ps, logs, exec, stop, ps -a, rm", () => {
    const run = pivot(["run", "-d", "--name", "web", IMAGE, "sh", "-c", "echo ready; sleep 30"]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const id = run.stdout.trim();
    const ps = pivot(["ps"]);
    expect(ps.stdout).toMatch(/CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+NAMES/);
    expect(ps.stdout).toContain(id.slice(0, 12));
    expect(ps.stdout).toMatch(/Up .* web\n/);
    let logs = "";
    for (let i = 0; i < 50 && logs !== "ready\n"; i++) {
      logs = pivot(["logs", "web"]).stdout;
      if (logs !== "ready\n") Bun.sleepSync(50);
    }
    expect(logs).toBe("ready\n");
    expect(pivot(["logs", "-t", "web"]).stdout).toMatch(/^\d{4}-\d\d-\d\dT\S+ ready\n$/);
    const ex = pivot(["exec", "-e", "X=from-exec", "web", "sh", "-c", "echo $X; exit 3"]);
    expect(ex).toEqual({ status: 3, stdout: "from-exec\n", stderr: "" });
    expect(pivot(["stop", "-t", "1", "web"]).status).toBe(0);
    expect(pivot(["ps", "-a"]).stdout).toMatch(/Exited \(137\) .* web\n/);
    expect(pivot(["ps", "-q"]).stdout).toBe("");
    expect(pivot(["wait", "web"]).stdout).toBe("137\n");
    expect(pivot(["inspect", "web"]).stdout).toContain(`"exitCode": 137`);
    expect(pivot(["rm", "web"]).stdout).toBe("web\n");
    expect(pivot(["ps", "-a", "-q"]).stdout).toBe("");
  });

  test.skipIf(!hasConmon)(
    "logs -f follows: a line shows while the container runs, the next once written, and it ends when the container does",
    async () => {
      // The container prints its second line only once told to, after the first was seen.
      const program = "echo first; until [ -e /tmp/go ]; do sleep 0.1; done; echo second";
      expect(pivot(["run", "-d", "--name", "ticker", IMAGE, "sh", "-c", program]).status).toBe(0);
      const follower = spawn(BUN, [PIVOT_CLI, "--root", t.root, "logs", "-f", "ticker"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      follower.stdout!.on("data", (d) => {
        out += d;
      });
      let exitCode: number | null | undefined;
      const exited = new Promise<void>((resolve) =>
        follower.on("exit", (code) => {
          exitCode = code;
          resolve();
        }),
      );
      try {
        for (let i = 0; i < 200 && !out.includes("first\n") && exitCode === undefined; i++)
          await Bun.sleep(50);
        expect({ exitCode, out }).toEqual({ exitCode: undefined, out: "first\n" });
        expect(pivot(["exec", "ticker", "touch", "/tmp/go"]).status).toBe(0);
        await exited;
        expect({ exitCode, out }).toEqual({ exitCode: 0, out: "first\nsecond\n" });
      } finally {
        follower.kill("SIGKILL");
        pivot(["rm", "-f", "ticker"]);
      }
    },
    30_000,
  );

  test.skipIf(!hasConmon)(
    "restart runs the container again, its log kept; logs --tail and --since pick the last and the recent lines",
    async () => {
      const run = pivot(["run", "-d", "--name", "again", IMAGE, "sh", "-c", "echo up; sleep 30"]);
      expect(run.status).toBe(0);
      const logsAre = async (want: string) => {
        let logs = "";
        for (let i = 0; i < 100 && logs !== want; i++) {
          logs = pivot(["logs", "again"]).stdout;
          if (logs !== want) await Bun.sleep(50);
        }
        expect(logs).toBe(want);
      };
      try {
        await logsAre("up\n");
        const state = () => JSON.parse(pivot(["inspect", "again"]).stdout)[0].state;
        const before = state();
        expect(pivot(["restart", "-t", "1", "again"])).toEqual({
          status: 0,
          stdout: "again\n",
          stderr: "",
        });
        await logsAre("up\nup\n");
        expect(pivot(["ps", "-q", "--no-trunc"]).stdout).toBe(run.stdout);
        const after = state();
        expect(after.running).toBe(true);
        expect(after.pid).not.toBe(before.pid);
        expect(pivot(["logs", "--tail", "1", "again"]).stdout).toBe("up\n");
        expect(pivot(["logs", "--tail", "0", "again"]).stdout).toBe("");
        const stamped = pivot(["logs", "-t", "again"]).stdout.trim().split("\n");
        expect(stamped).toHaveLength(2);
        const secondTime = stamped[1]!.split(" ")[0]!;
        expect(pivot(["logs", "-t", "--since", secondTime, "again"]).stdout).toBe(
          `${stamped[1]}\n`,
        );
      } finally {
        pivot(["rm", "-f", "again"]);
      }
    },
    30_000,
  );

  test("logs of a long log through a pipe: all of it, in order, to a slow reader; `| head -1` ends it", () => {
    const lines = 200_000;
    const cli = `${BUN} ${PIVOT_CLI} --root ${t.root}`;
    const shell = (script: string) => {
      const r = spawnSync("bash", ["-c", `set -o pipefail; ${script}`], {
        encoding: "utf8",
        timeout: 60_000,
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    try {
      // stderr's lines first; the pause lets the monitor log them all before stdout's begin.
      const program = `seq 1 ${lines} >&2; sleep 0.5; seq 1 ${lines}`;
      expect(
        shell(`${cli} run --name longlog ${IMAGE} sh -c '${program}' >/dev/null 2>&1`).status,
      ).toBe(0);
      // The reader starts late: the pipe fills, and the writer waits instead of buffering the log.
      const all = shell(`${cli} logs longlog 2>/dev/null | (sleep 0.5; md5sum)`);
      const expected = spawnSync("sh", ["-c", `seq 1 ${lines} | md5sum`], { encoding: "utf8" });
      expect(all).toEqual({ status: 0, stdout: expected.stdout, stderr: "" });
      // stderr's lines come out first, each line on the fd it was logged from.
      const both = shell(`${cli} logs longlog 2>&1 | sed -n '1p;${lines}p;${lines + 1}p;$p'`);
      expect(both).toEqual({ status: 0, stdout: `1\n${lines}\n1\n${lines}\n`, stderr: "" });
      const head = shell(`${cli} logs longlog 2>/dev/null | head -1`);
      expect(head).toEqual({ status: 0, stdout: "1\n", stderr: "" });
    } finally {
      pivot(["rm", "-f", "longlog"]);
    }
  });
});

// Each `pivot run` flag of the engine issue, asserted by what it does inside the container and
// outside it (the library-level tests are in engine.test.ts; these go through the command line).
describe.skipIf(!isRoot)("pivot run flags: their effects", () => {
  /** The container's one-line JSON inspect record (state, config). */
  const inspect = (name: string) =>
    (JSON.parse(pivot(["inspect", name]).stdout) as Record<string, unknown>[])[0]!;

  /** Waits until the container's log is `want` (a detached container's first lines). */
  async function logsAre(name: string, want: string): Promise<void> {
    let logs = "";
    for (let i = 0; i < 200 && logs !== want; i++) {
      logs = pivot(["logs", name]).stdout;
      if (logs !== want) await Bun.sleep(50);
    }
    expect(logs).toBe(want);
  }

  test("--entrypoint replaces the image's Entrypoint and drops its Cmd; an empty one clears it", () => {
    // CONFIGURED: Entrypoint ["sh", "-c"], Cmd ['echo "$GREETING from ..."'].
    expect(pivot(["run", "--rm", CONFIGURED]).stdout).toBe("hello from /srv/app as 65534:65534\n");
    // The image's Cmd is not passed to the new entrypoint: echo prints an empty line.
    expect(pivot(["run", "--rm", "--entrypoint", "echo", CONFIGURED])).toEqual({
      status: 0,
      stdout: "\n",
      stderr: "",
    });
    expect(pivot(["run", "--rm", "--entrypoint", "echo", CONFIGURED, "a", "b"]).stdout).toBe(
      "a b\n",
    );
    // With the entrypoint cleared, the command runs by itself (under `sh -c` it would print "").
    expect(pivot(["run", "--rm", "--entrypoint", "", CONFIGURED, "echo", "alone"]).stdout).toBe(
      "alone\n",
    );
  });

  test("--mount type=bind (readonly), type=volume and type=tmpfs (tmpfs-size, tmpfs-mode)", () => {
    const src = mkdtempSync(join(scratch, "mount-"));
    writeFileSync(join(src, "f"), "from host\n");
    const name = "mounts";
    try {
      const r = pivot([
        "run",
        "--name",
        name,
        "--mount",
        `type=bind,source=${src},target=/b,readonly`,
        "--mount",
        "type=volume,source=mountvol,target=/v",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=2m,tmpfs-mode=1770",
        IMAGE,
        "sh",
        "-c",
        "cat /b/f; touch /b/new 2>/dev/null || echo b-refused; echo vol > /v/f; " +
          "stat -c %a /t; grep ' /t ' /proc/mounts; touch /t/ok && echo t-ok",
      ]);
      expect(r.stderr).toBe("");
      const lines = r.stdout.split("\n");
      expect(lines.slice(0, 3)).toEqual(["from host", "b-refused", "1770"]);
      expect(lines[3]).toMatch(/^tmpfs \/t tmpfs rw,.*size=2048k/);
      expect(lines.slice(4)).toEqual(["t-ok", ""]);
      expect(existsSync(join(src, "new"))).toBe(false);
      // The volume is the named one, on the host, kept after the container.
      const vol = JSON.parse(pivot(["volume", "inspect", "mountvol"]).stdout) as {
        mountpoint: string;
      }[];
      expect(readFileSync(join(vol[0]!.mountpoint, "f"), "utf8")).toBe("vol\n");
      const mounts = inspect(name).volumes as { target: string; name?: string }[];
      expect(mounts.find((m) => m.target === "/v")?.name).toBe("mountvol");
    } finally {
      pivot(["rm", "-f", name]);
      pivot(["volume", "rm", "mountvol"]);
      rmSync(src, { recursive: true, force: true });
    }
  });

  test.skipIf(!hasConmon)(
    "-v propagation: a mount the host makes under the source later reaches rslave and rshared binds, not the default (rprivate)",
    () => {
      const src = mkdtempSync(join(scratch, "prop-"));
      const sub = join(src, "sub");
      const modes = ["rslave", "rshared", ""] as const;
      const names = modes.map((m) => `prop-${m || "default"}`);
      try {
        mkdirSync(sub);
        // The source must be a shared mount for the host's later mounts to propagate.
        expect(spawnSync("mount", ["--bind", src, src]).status).toBe(0);
        expect(spawnSync("mount", ["--make-shared", src]).status).toBe(0);
        modes.forEach((mode, i) => {
          const v = mode ? `${src}:/m:${mode}` : `${src}:/m`;
          expect(
            pivot(["run", "-d", "--name", names[i]!, "-v", v, IMAGE, "sleep", "300"]).status,
          ).toBe(0);
        });
        expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "late", sub]).status).toBe(0);
        writeFileSync(join(sub, "f"), "late mount\n");
        const seen = names.map((n) => pivot(["exec", n, "sh", "-c", "cat /m/sub/f 2>&1"]).stdout);
        expect(seen).toEqual([
          "late mount\n",
          "late mount\n",
          "cat: can't open '/m/sub/f': No such file or directory\n",
        ]);
      } finally {
        pivot(["rm", "-f", ...names]);
        for (const m of mountsUnder(src).reverse()) spawnSync("umount", ["-l", m]);
        rmSync(src, { recursive: true, force: true });
      }
      expect(mountsUnder(src)).toEqual([]);
    },
    60_000,
  );

  test("-v SRC:DST:rshared goes both ways: the container's mount reaches the host; a source on a mount that is not shared is refused", () => {
    const src = mkdtempSync(join(scratch, "bidir-"));
    const inner = join(src, "inner");
    try {
      mkdirSync(inner);
      // A mount point of its own, private first (whatever the host's / is), then shared.
      expect(spawnSync("mount", ["--bind", src, src]).status).toBe(0);
      expect(spawnSync("mount", ["--make-private", src]).status).toBe(0);
      const refused = pivot(["run", "--rm", "-v", `${src}:/m:rshared`, IMAGE, "true"]);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toContain(`${src} is on the mount ${src}, which is not shared`);
      expect(spawnSync("mount", ["--make-shared", src]).status).toBe(0);
      const r = pivot([
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        `${src}:/m:rshared`,
        IMAGE,
        "sh",
        "-c",
        "mount -t tmpfs -o size=1m inside /m/inner && echo from the container > /m/inner/f",
      ]);
      expect(r).toEqual({ status: 0, stdout: "", stderr: "" });
      // The container is gone; its tmpfs stays in the host's mount table, under the source.
      expect(readFileSync(join(inner, "f"), "utf8")).toBe("from the container\n");
      expect(mountsUnder(src)).toEqual([src, inner]);
    } finally {
      for (const m of mountsUnder(src).reverse()) spawnSync("umount", ["-l", m]);
      rmSync(src, { recursive: true, force: true });
    }
    expect(mountsUnder(src)).toEqual([]);
  }, 60_000);

  test.skipIf(!hasConmon)(
    "--stop-signal, the image's StopSignal and kill -s: the signal the container's trap gets",
    async () => {
      const waiting = (sig: string, code: number) =>
        `trap "echo got-${sig}; exit ${code}" ${sig}; echo ready; while :; do sleep 0.1; done`;
      const names = ["sig-flag", "sig-image", "sig-override", "sig-kill"];
      try {
        // --stop-signal: stop sends USR1 (sh as PID 1 has no TERM handler; it would be KILLed).
        expect(
          pivot([
            "run",
            "-d",
            "--name",
            "sig-flag",
            "--stop-signal",
            "USR1",
            IMAGE,
            "sh",
            "-c",
            waiting("USR1", 9),
          ]).status,
        ).toBe(0);
        // The image's StopSignal (SIGUSR1 in CONFIGURED, whose entrypoint is sh -c).
        expect(
          pivot(["run", "-d", "--name", "sig-image", CONFIGURED, waiting("USR1", 8)]).status,
        ).toBe(0);
        // --stop-signal wins over the image's.
        expect(
          pivot([
            "run",
            "-d",
            "--name",
            "sig-override",
            "--stop-signal",
            "USR2",
            CONFIGURED,
            waiting("USR2", 7),
          ]).status,
        ).toBe(0);
        expect(
          pivot(["run", "-d", "--name", "sig-kill", IMAGE, "sh", "-c", waiting("HUP", 6)]).status,
        ).toBe(0);
        for (const n of names) await logsAre(n, "ready\n");
        for (const n of ["sig-flag", "sig-image", "sig-override"]) {
          expect(pivot(["stop", "-t", "30", n]).status).toBe(0);
        }
        expect(pivot(["kill", "-s", "HUP", "sig-kill"])).toEqual({
          status: 0,
          stdout: "sig-kill\n",
          stderr: "",
        });
        expect(pivot(["wait", ...names]).stdout).toBe("9\n8\n7\n6\n");
        expect(names.map((n) => pivot(["logs", n]).stdout)).toEqual([
          "ready\ngot-USR1\n",
          "ready\ngot-USR1\n",
          "ready\ngot-USR2\n",
          "ready\ngot-HUP\n",
        ]);
      } finally {
        pivot(["rm", "-f", ...names]);
      }
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "--stop-timeout: stop waits that long for the stop signal's effect, then SIGKILLs",
    async () => {
      // The TERM trap needs 3 s to finish: a 1 s timeout cuts it short, a 30 s one does not.
      const program =
        'trap "echo term; sleep 3; exit 7" TERM; echo ready; while :; do sleep 0.1; done';
      const names = ["short-stop", "long-stop"];
      try {
        for (const [name, timeout] of [
          ["short-stop", "1"],
          ["long-stop", "30"],
        ] as const) {
          expect(
            pivot([
              "run",
              "-d",
              "--name",
              name,
              "--stop-timeout",
              timeout,
              IMAGE,
              "sh",
              "-c",
              program,
            ]).status,
          ).toBe(0);
        }
        for (const n of names) await logsAre(n, "ready\n");
        // No -t: the container's own timeout applies.
        for (const n of names) expect(pivot(["stop", n]).status).toBe(0);
        expect(pivot(["wait", ...names]).stdout).toBe("137\n7\n");
        for (const n of names) expect(pivot(["logs", n]).stdout).toBe("ready\nterm\n");
      } finally {
        pivot(["rm", "-f", ...names]);
      }
    },
    60_000,
  );

  test("--cap-drop and --cap-add: chown is refused without CAP_CHOWN and allowed with it alone", () => {
    const program =
      "touch /tmp/f; chown 1:1 /tmp/f && echo chowned; grep ^CapEff: /proc/self/status";
    const dropped = pivot(["run", "--rm", "--cap-drop", "CHOWN", IMAGE, "sh", "-c", program]);
    expect(dropped.stderr).toBe("chown: /tmp/f: Operation not permitted\n");
    expect(dropped.stdout).toBe("CapEff:\t00000000a80425fa\n"); // Docker's defaults minus bit 0
    const only = pivot([
      "run",
      "--rm",
      "--cap-drop",
      "ALL",
      "--cap-add",
      "CHOWN",
      IMAGE,
      "sh",
      "-c",
      program,
    ]);
    expect(only).toEqual({ status: 0, stdout: "chowned\nCapEff:\t0000000000000001\n", stderr: "" });
    const added = pivot([
      "run",
      "--rm",
      "--cap-add",
      "NET_ADMIN",
      IMAGE,
      "sh",
      "-c",
      "ip link set lo down && echo down",
    ]);
    expect(added.stdout).toBe("down\n");
    expect(pivot(["run", "--rm", IMAGE, "sh", "-c", "ip link set lo down"]).stderr).toMatch(
      /Operation not permitted/,
    );
  });

  test("--security-opt seccomp=PROFILE, seccomp=unconfined and no-new-privileges", () => {
    const profile = join(scratch, "no-mkdir.json");
    writeFileSync(
      profile,
      JSON.stringify({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
      }),
    );
    const program = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d && echo made";
    const filtered = pivot([
      "run",
      "--rm",
      "--security-opt",
      `seccomp=${profile}`,
      IMAGE,
      "sh",
      "-c",
      program,
    ]);
    expect(filtered.stdout).toBe("NoNewPrivs:\t0\nSeccomp:\t2\n");
    expect(filtered.stderr).toBe(
      "mkdir: can't create directory '/tmp/d': Operation not permitted\n",
    );
    const open = pivot([
      "run",
      "--rm",
      "--security-opt",
      "seccomp=unconfined",
      "--security-opt",
      "no-new-privileges",
      IMAGE,
      "sh",
      "-c",
      program,
    ]);
    expect(open).toEqual({ status: 0, stdout: "NoNewPrivs:\t1\nSeccomp:\t0\nmade\n", stderr: "" });
  });

  test("--privileged: every capability this host has, no seccomp, no masked paths; mount works", () => {
    const hostBounding = /^CapBnd:\s+(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1];
    const program =
      "grep -E '^(CapEff|Seccomp):' /proc/self/status; mkdir /x; mount -t tmpfs none /x && echo mounted; " +
      "grep -c ' /proc/timer_list ' /proc/self/mountinfo; true";
    const r = pivot(["run", "--rm", "--privileged", IMAGE, "sh", "-c", program]);
    expect(r).toEqual({
      status: 0,
      stdout: `CapEff:\t${hostBounding}\nSeccomp:\t0\nmounted\n0\n`,
      stderr: "",
    });
    // Unprivileged, the same program is refused the mount and sees /proc/timer_list masked.
    const plain = pivot(["run", "--rm", IMAGE, "sh", "-c", program]);
    expect(plain.stdout).toBe("CapEff:\t00000000a80425fb\nSeccomp:\t2\n1\n");
  });

  test.skipIf(!hasConmon)(
    "--memory, --cpus, --pids-limit: the limits in the container's cgroup, seen inside and on the host; fork fails past the pids limit",
    () => {
      const name = "limited";
      // cgroup v2's files first, else v1's (inside, the container's own cgroup is the root).
      const inside =
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; " +
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us); " +
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max";
      try {
        const run = pivot([
          "run",
          "-d",
          "--name",
          name,
          "--memory",
          "64m",
          "--cpus",
          "0.5",
          "--pids-limit",
          "5",
          IMAGE,
          "sleep",
          "300",
        ]);
        expect(run.status).toBe(0);
        const id = run.stdout.trim();
        expect(pivot(["exec", name, "sh", "-c", inside]).stdout).toBe(
          "67108864\n50000 100000\n5\n",
        );
        // On the host: the same values in the container's cgroup directories.
        const { cgroupPaths = {} } = JSON.parse(
          readFileSync(join(t.root, "containers", id, "state.json"), "utf8"),
        ) as { cgroupPaths?: Record<string, string> };
        const host = (v1: string, file: string, v2: string) => {
          const unified = cgroupPaths[""] ?? cgroupPaths.unified;
          const dir = cgroupPaths[v1];
          return readFileSync(dir ? join(dir, file) : join(unified!, v2), "utf8").trim();
        };
        expect(host("memory", "memory.limit_in_bytes", "memory.max")).toBe("67108864");
        expect(host("cpu", "cpu.cfs_quota_us", "cpu.max").split(" ")[0]).toBe("50000");
        expect(host("pids", "pids.max", "pids.max")).toBe("5");
        // sleep is one process; an exec'd shell and its children hit the limit of 5.
        const forks = pivot([
          "exec",
          name,
          "sh",
          "-c",
          "for i in 1 2 3 4 5 6 7 8; do sleep 300 >/dev/null 2>&1 & done",
        ]);
        expect(forks.stderr).toMatch(/can't fork/);
      } finally {
        pivot(["rm", "-f", name]);
      }
    },
    60_000,
  );

  test.skipIf(!hasConmon)(
    "exec -d, -u, -w: a background process, the user and the working directory",
    async () => {
      const name = "exec-opts";
      try {
        expect(pivot(["run", "-d", "--name", name, IMAGE, "sleep", "300"]).status).toBe(0);
        expect(
          pivot(["exec", "-u", "nobody", "-w", "/tmp", name, "sh", "-c", "id -u; pwd; touch mine"]),
        ).toEqual({
          status: 0,
          stdout: "65534\n/tmp\n",
          stderr: "",
        });
        expect(pivot(["exec", name, "stat", "-c", "%u", "/tmp/mine"]).stdout).toBe("65534\n");
        // -d: exec returns at once; the process goes on and writes its file after it is told to.
        const d = pivot([
          "exec",
          "-d",
          name,
          "sh",
          "-c",
          "until [ -e /tmp/go ]; do sleep 0.1; done; echo done > /tmp/bg",
        ]);
        expect(d).toEqual({ status: 0, stdout: "", stderr: "" });
        expect(
          pivot(["exec", name, "sh", "-c", "ps -o args | grep -c '^sh -c until'"]).stdout,
        ).toBe("1\n");
        expect(pivot(["exec", name, "touch", "/tmp/go"]).status).toBe(0);
        let bg = "";
        for (let i = 0; i < 100 && bg !== "done\n"; i++) {
          bg = pivot(["exec", name, "cat", "/tmp/bg"]).stdout;
          if (bg !== "done\n") await Bun.sleep(50);
        }
        expect(bg).toBe("done\n");
      } finally {
        pivot(["rm", "-f", name]);
      }
    },
    60_000,
  );

  test("rm -v removes a container's anonymous volumes; rm without -v keeps them, and named volumes stay", () => {
    const vols = () => pivot(["volume", "ls", "-q"]).stdout.split("\n").filter(Boolean);
    const before = vols();
    try {
      expect(pivot(["create", "--name", "anon-kept", "-v", "/data", IMAGE, "true"]).status).toBe(0);
      expect(
        pivot(["create", "--name", "anon-gone", "-v", "/data", "-v", "rmvnamed:/n", IMAGE, "true"])
          .status,
      ).toBe(0);
      const anonOf = (n: string) =>
        (inspect(n).volumes as { target: string; name: string }[]).find(
          (v) => v.target === "/data",
        )!.name;
      const kept = anonOf("anon-kept");
      const gone = anonOf("anon-gone");
      expect(vols()).toEqual(expect.arrayContaining([kept, gone, "rmvnamed"]));
      expect(pivot(["rm", "anon-kept"]).status).toBe(0);
      expect(pivot(["rm", "-v", "anon-gone"]).status).toBe(0);
      expect(vols().sort()).toEqual([...before, kept, "rmvnamed"].sort());
    } finally {
      pivot(["rm", "-f", "anon-kept", "anon-gone"]);
      for (const v of vols()) if (!before.includes(v)) pivot(["volume", "rm", v]);
    }
  });

  test("--pull: never and missing use the image in the store; always pulls it even so", () => {
    // A name whose registry (127.0.0.1, port 9) is never there: a pull fails, no network is used.
    const ref = "127.0.0.1:9/pull/busybox:1";
    expect(pivot(["tag", IMAGE, ref]).status).toBe(0);
    try {
      for (const policy of ["never", "missing"]) {
        expect(pivot(["run", "--rm", "--pull", policy, ref, "echo", policy])).toEqual({
          status: 0,
          stdout: `${policy}\n`,
          stderr: "",
        });
      }
      const always = pivot(["run", "--rm", "--pull", "always", ref, "echo", "ran"]);
      expect(always.status).toBe(125);
      expect(always.stdout).toBe("");
      expect(always.stderr).toMatch(
        /^pivot: image 127\.0\.0\.1:9\/pull\/busybox:1 is not in the local store and pulling it failed/,
      );
      expect(pivot(["run", "--rm", "--pull", "sometimes", ref, "true"]).stderr).toMatch(
        /--pull sometimes: use always, missing or never/,
      );
      expect(pivot(["ps", "-aq"]).stdout).toBe("");
    } finally {
      pivot(["rmi", ref]);
    }
  });
});
