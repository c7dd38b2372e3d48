// Explainable containers, the test points with real containers (root):
// - debug path and debug mounts name the right layer of a three-layer image for a file added in
//   layer 1, one changed in layer 2 and one deleted in layer 3 (the image built without network);
// - `pivot-runtime --trace run`: the steps of the table add up to the wall time measured around
//   the command, less the process's start-up before its time origin and its exit.
// (The dry run's shell script against pivot-runtime's mount table is in runtime.test.ts.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { engineMountReport, explainPath, type PathReport } from "../../src/engine/debug.ts";
import type { ContainerHandle } from "../../src/engine/engine.ts";
import {
  busyboxLayer,
  killAndWaitFor,
  makeTestEngine,
  type TestEngine,
} from "../fixtures/engine.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";
import {
  BUN,
  cleanupRoot,
  isRoot,
  makeBundle,
  pivotCli,
  RUNTIME_CLI,
  runtime,
  tempDir,
} from "../helpers.ts";

const STORY = "localhost/story:test";
const CREATED_BY = [
  "ADD busybox rootfs with /srv/added, /srv/changed, /srv/deleted",
  "RUN echo changed in layer 2 > /srv/changed; chmod 640; chown 5:6",
  "RUN rm /srv/deleted",
];

let t: TestEngine;
let c: ContainerHandle;
const diffIds: string[] = [];

const pivot = (args: string[]) => pivotCli(t.root, args);

/** Layer names with their verdicts, top first: ["upper absent", "init absent", "layer 3 absent", ...]. */
function states(p: PathReport): string[] {
  return p.layers!.map((l) => `${l.name} ${l.state}`);
}

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  // Layer 1: busybox plus three files in /srv.
  const layer1 = busyboxLayer(t.root, (src) => {
    mkdirSync(join(src, "srv"), { recursive: true });
    writeFileSync(join(src, "srv/added"), "added in layer 1\n");
    writeFileSync(join(src, "srv/changed"), "layer 1\n");
    writeFileSync(join(src, "srv/deleted"), "layer 1\n");
  });
  // Layer 2 changes /srv/changed (content, mode, owner) and /srv/deleted; layer 3 deletes
  // /srv/deleted, so that the file it removes exists in two layers below.
  const layer2 = buildTar([
    { name: "srv/", type: "dir" },
    { name: "srv/changed", content: "changed in layer 2\n", mode: 0o640, uid: 5, gid: 6 },
    { name: "srv/deleted", content: "layer 2\n" },
  ]);
  const layer3 = buildTar([
    { name: "srv/", type: "dir" },
    { name: "srv/.wh.deleted", content: "" },
  ]);
  const image = await buildTestImage(await t.engine.images(), [layer1, layer2, layer3], {
    gzip: false,
    refs: [STORY],
    createdBy: CREATED_BY,
    config: { config: { Cmd: ["sh"], Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] } },
  });
  diffIds.push(...image.layers.map((l) => l.diffId));
  c = await t.engine.run({ image: STORY, name: "story", cmd: ["sleep", "120"] });
  // debug needs the container's init running; it is once run() has returned.
}, 60_000);

afterAll(async () => {
  if (c) await killAndWaitFor(t.engine, c);
  await t?.cleanup();
});

describe.skipIf(!isRoot)("debug on a three-layer image: added, changed, deleted", () => {
  test("added in layer 1: provided by layer 1, the layers above do not have it", async () => {
    const p = await explainPath(t.engine, "story", "/srv/added");
    expect(p.exists).toBe(true);
    expect(states(p)).toEqual([
      "upper absent",
      "init absent",
      "layer 3 absent",
      "layer 2 absent",
      "layer 1 provides",
    ]);
    expect(p.layers![4]).toMatchObject({ diffId: diffIds[0], createdBy: CREATED_BY[0] });
    expect(p.verdict).toStartWith("provided by layer 1 (");
    expect(p.verdict).not.toContain("shadowing");
    expect(p.effective).toMatchObject({ type: "file", size: 17 });
  });

  test("changed in layer 2: provided by layer 2 with its owner and mode, layer 1's shadowed", async () => {
    const p = await explainPath(t.engine, "story", "/srv/changed");
    expect(p.exists).toBe(true);
    expect(states(p)).toEqual([
      "upper absent",
      "init absent",
      "layer 3 absent",
      "layer 2 provides",
      "layer 1 shadowed",
    ]);
    expect(p.layers![3]).toMatchObject({ diffId: diffIds[1], createdBy: CREATED_BY[1] });
    expect(p.verdict).toContain("provided by layer 2");
    expect(p.verdict).toContain("shadowing layer 1");
    // What the container sees is layer 2's version: owner, mode and size from the layer entry.
    expect(p.effective).toMatchObject({ type: "file", mode: "0640", uid: 5, gid: 6, size: 19 });
    expect(p.layers![3]!.entry).toMatchObject({ type: "file", mode: 0o640, uid: 5, gid: 6 });
    expect(p.layers![4]!.entry).toMatchObject({ type: "file", size: 8 });
  });

  test("deleted in layer 3: the whiteout in layer 3, both older versions shadowed", async () => {
    const p = await explainPath(t.engine, "story", "/srv/deleted");
    expect(p.exists).toBe(false);
    expect(p.effective).toBeNull();
    expect(states(p)).toEqual([
      "upper absent",
      "init absent",
      "layer 3 whiteout",
      "layer 2 shadowed",
      "layer 1 shadowed",
    ]);
    expect(p.layers![2]).toMatchObject({ diffId: diffIds[2], createdBy: CREATED_BY[2] });
    expect(p.layers![2]!.entry?.type).toBe("whiteout");
    expect(p.verdict).toContain("removed by layer 3");
    // And the container agrees: the file is not there.
    expect(existsSync(`/proc/${p.container.pid}/root/srv/deleted`)).toBe(false);
  });

  test("the layer directories named are the ones holding each version", async () => {
    // debug path names a directory per layer; the file the container reads is the provider's,
    // byte for byte, and each lower version is where the report says it is.
    const changed = await explainPath(t.engine, "story", "/srv/changed");
    const pid = changed.container.pid;
    const seen = readFileSync(`/proc/${pid}/root/srv/changed`, "utf8");
    expect(seen).toBe("changed in layer 2\n");
    expect(readFileSync(join(changed.layers![3]!.dir, "srv/changed"), "utf8")).toBe(seen);
    expect(readFileSync(join(changed.layers![4]!.dir, "srv/changed"), "utf8")).toBe("layer 1\n");
    const deleted = await explainPath(t.engine, "story", "/srv/deleted");
    const wh = lstatSync(join(deleted.layers![2]!.dir, "srv/deleted"));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(readFileSync(join(deleted.layers![3]!.dir, "srv/deleted"), "utf8")).toBe("layer 2\n");
  });

  test("debug mounts: the root's layers in order, with diff ids, history and directories", async () => {
    const r = await engineMountReport(t.engine, "story");
    const root = r.mounts.find((m) => m.mountPoint === "/")!;
    expect(root.origin.kind).toBe("rootfs");
    const layers = root.origin.layers!;
    expect(layers.map((l) => [l.name, l.diffId, l.createdBy])).toEqual([
      ["upper", undefined, undefined],
      // The store's init layer: the mount points (/etc/hosts, /proc, ...) every container gets.
      ["init", undefined, undefined],
      ["layer 3", diffIds[2], CREATED_BY[2]],
      ["layer 2", diffIds[1], CREATED_BY[1]],
      ["layer 1", diffIds[0], CREATED_BY[0]],
    ]);
    // The directories are the ones debug path walked, and the ones the overlay was mounted with.
    const changed = await explainPath(t.engine, "story", "/srv/changed");
    expect(layers.map((l) => l.dir)).toEqual(changed.layers!.map((l) => l.dir));
    expect(readdirSync(join(layers[1]!.dir, "etc")).sort()).toEqual([
      "hostname",
      "hosts",
      "resolv.conf",
    ]);
    expect(existsSync(join(layers[2]!.dir, "srv/.wh.deleted"))).toBe(false); // unpacked as 0/0
    expect(lstatSync(join(layers[2]!.dir, "srv/deleted")).isCharacterDevice()).toBe(true);
    expect(existsSync(join(layers[3]!.dir, "srv/added"))).toBe(false);
    expect(existsSync(join(layers[4]!.dir, "srv/added"))).toBe(true);
  });

  test("pivot debug path and pivot debug mounts (text and JSON) name the same layers", () => {
    const added = pivot(["debug", "path", "story", "/srv/added"]);
    expect(added.status).toBe(0);
    expect(added.stdout).toContain(`provided by layer 1 (${diffIds[0]!.slice(0, 19)}`);
    const changed = pivot(["debug", "path", "story", "/srv/changed"]);
    expect(changed.stdout).toContain(`provided by layer 2 (${diffIds[1]!.slice(0, 19)}`);
    expect(changed.stdout).toContain("shadowing layer 1");
    expect(changed.stdout).toContain("mode 0640, owner 5:6");
    const deleted = pivot(["debug", "path", "story", "/srv/deleted"]);
    expect(deleted.stdout).toContain(`not there: removed by layer 3 (${diffIds[2]!.slice(0, 19)}`);
    const json = JSON.parse(
      pivot(["debug", "path", "--format", "json", "story", "/srv/deleted"]).stdout,
    ) as PathReport;
    expect(states(json)).toEqual([
      "upper absent",
      "init absent",
      "layer 3 whiteout",
      "layer 2 shadowed",
      "layer 1 shadowed",
    ]);
    const mounts = pivot(["debug", "mounts", "story"]);
    expect(mounts.status).toBe(0);
    expect(mounts.stdout).toContain("overlay of image localhost/story:test (3 layers)");
    const order = ["layer 3", "layer 2", "layer 1"].map((n) => mounts.stdout.indexOf(`  ${n}  `));
    expect(order.every((i) => i > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    for (const line of CREATED_BY) expect(mounts.stdout).toContain(line);
  });
});

/** One row of the --trace table. */
interface TraceRow {
  at: number;
  took: number;
  what: string;
}

function parseTrace(stderr: string): TraceRow[] {
  const rows: TraceRow[] = [];
  for (const line of stderr.split("\n")) {
    const m = /^\s+(\d+\.\d\d)\s+(\d+\.\d\d)\s\s(.*)$/.exec(line);
    if (m) rows.push({ at: Number(m[1]), took: Number(m[2]), what: m[3]! });
  }
  return rows;
}

/** Wall time of a command, measured around it the way the test measures the traced run. */
function timed(args: string[]): { ms: number; status: number; stdout: string; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(BUN, args, { encoding: "utf8", timeout: 30_000 });
  return {
    ms: performance.now() - t0,
    status: r.status ?? -1,
    stdout: r.stdout,
    stderr: r.stderr,
  };
}

describe.skipIf(!isRoot)("--trace", () => {
  let dir: string;
  let bundle: string;
  let root: string;

  beforeAll(() => {
    if (!isRoot) return;
    dir = tempDir("pivot-trace-");
    bundle = makeBundle(join(dir, "bundle"), (s) => {
      s.process!.args = ["true"];
    });
    root = join(dir, "root");
  });

  afterAll(() => {
    if (root) cleanupRoot(root);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the steps add up to the wall time measured around pivot-runtime --trace run", () => {
    // What the table cannot contain: the process's start before its time origin (fork, exec,
    // Bun's own start-up) and its end after the last row (writing the table, exit), plus this
    // test's spawn and wait. A process that does nothing (`bun -e 0`) costs the same start and
    // exit, so the gap must stay within a few of those plus scheduling slack. Noise only ever
    // adds time, so the smallest gap of three runs is compared; every run must be consistent.
    const idle = Math.min(...[0, 1, 2].map(() => timed(["-e", "0"]).ms));
    const tolerance = 2 * idle + 30;
    const gaps: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = timed([RUNTIME_CLI, "--root", root, "--trace", "run", "--bundle", bundle, `t${i}`]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr).toStartWith("pivot-runtime --trace run (wall time in ms;");
      const rows = parseTrace(r.stderr);
      const whats = rows.map((x) => x.what);
      expect(rows.length).toBeGreaterThan(20);
      expect(whats[0]).toBe("main() reached: runtime start-up and module loading");
      expect(whats.at(-1)).toBe("run done");
      // Each row took the time since the previous one (rounded to 0.01 ms), none negative.
      let prev = 0;
      for (const row of rows) {
        expect(row.took).toBeGreaterThanOrEqual(0);
        expect(Math.abs(row.took - (row.at - prev))).toBeLessThanOrEqual(0.011);
        prev = row.at;
      }
      const sum = rows.reduce((s, x) => s + x.took, 0);
      const last = rows.at(-1)!.at;
      expect(Math.abs(sum - last)).toBeLessThanOrEqual(0.005 * rows.length + 0.01);
      // The launcher's clock (its reports, converted) agrees with the runtime's: its rows sit
      // between the runtime's marks, in the order things happen.
      const at = (prefix: string) => whats.findIndex((w) => w.startsWith(prefix));
      // The launcher is started first and receives its plan once it is compiled.
      expect(at("launcher: main() reached")).toBeLessThan(at("launcher: plan read"));
      expect(at("plan compiled")).toBeLessThan(at("launcher: plan read"));
      expect(at("launcher: plan read")).toBeLessThan(at("setup: namespaces"));
      expect(at("setup: namespaces")).toBeLessThan(at("init: pivot_root"));
      // run starts its own container: the init waits at the Start sync point, not on a fifo.
      expect(at("init: pivot_root")).toBeLessThan(at("ready: the init waits to be started"));
      expect(at("ready: the init waits to be started")).toBeLessThan(
        at("start: the init released"),
      );
      expect(at("start: the init released")).toBeLessThan(at("exit: the launcher reported"));
      expect(at("exit: the launcher reported")).toBeLessThan(at("deleted: cgroup and state"));
      // The table never claims more time than passed.
      expect(sum).toBeLessThan(r.ms);
      gaps.push(r.ms - sum);
    }
    if (Math.min(...gaps) > tolerance) {
      throw new Error(
        `the trace leaves ${gaps.map((g) => g.toFixed(1)).join(", ")} ms of the wall time unaccounted; at most ${tolerance.toFixed(1)} ms expected (an idle bun process: ${idle.toFixed(1)} ms)`,
      );
    }
    // Nothing left behind by the three runs.
    expect(runtime(root, ["list", "-q"]).stdout.trim()).toBe("");
  }, 60_000);
});

describe.skipIf(!isRoot)("pivot run --trace", () => {
  test("the engine's steps and the runtime's on one clock, in order, adding up", () => {
    const before = pivot(["ps", "-a", "-q"]).stdout;
    const r = pivot(["run", "--trace", "--rm", STORY, "echo", "traced"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("traced\n");
    expect(r.stderr).toStartWith("pivot run (wall time in ms;");
    const rows = parseTrace(r.stderr);
    const whats = rows.map((x) => x.what);
    let prev = 0;
    for (const row of rows) {
      expect(Math.abs(row.took - (row.at - prev))).toBeLessThanOrEqual(0.011);
      prev = row.at;
    }
    const at = (prefix: string) => {
      const i = whats.findIndex((w) => w.startsWith(prefix));
      expect(`${prefix}: ${i >= 0}`).toBe(`${prefix}: true`);
      return i;
    };
    // Create, then the runtime's run inside the engine's start, then the clean-up of --rm.
    expect(at("engine: image resolved")).toBeLessThan(at("engine: name claimed, root filesystem"));
    expect(at("engine: config composed")).toBeLessThan(at("engine: monitor ready"));
    expect(at("engine: monitor ready")).toBeLessThan(at("plan compiled"));
    // The runtime takes the config the engine composed in memory, not from config.json again.
    expect(at("engine: monitor ready")).toBeLessThan(at("config validated (given in memory"));
    expect(at("init: pivot_root")).toBeLessThan(at("exit: the launcher reported"));
    expect(at("deleted: cgroup and state")).toBeLessThan(at("engine: output drained"));
    // The network's release and the unmount run at once: each ends before the directory goes.
    for (const released of ["engine: cgroups and network released", "engine: root filesystem"]) {
      expect(at("engine: output drained")).toBeLessThan(at(released));
      expect(at(released)).toBeLessThan(at("engine: container directory removed"));
    }
    expect(whats.at(-1)).toBe("engine: container directory removed");
    // --rm: no container is left (the story container of the other tests remains).
    expect(pivot(["ps", "-a", "-q"]).stdout).toBe(before);
  }, 60_000);
});
