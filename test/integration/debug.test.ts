// Explainable containers with real containers (root): debug mounts, debug path and --dry-run, on a
// two-layer image whose second layer overwrites a file of the first, deletes another (whiteout)
// and makes a directory opaque. Images are built without network.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineMountReport, explainPath } from "../../src/engine/debug.ts";
import type { ContainerHandle } from "../../src/engine/engine.ts";
import {
  busyboxLayer,
  IMAGE,
  killAndWaitFor,
  makeTestEngine,
  mountsUnder,
  type TestEngine,
} from "../fixtures/engine.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";
import { isRoot, pivotCli, runtime } from "../helpers.ts";

const LAYERED = "localhost/layered:test";

let t: TestEngine;
let hostDir: string;
let c: ContainerHandle;
const diffIds: string[] = [];

const pivot = (args: string[]) => pivotCli(t.root, args);

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  hostDir = mkdtempSync(join(tmpdir(), "pivot-debug-bind-"));
  chmodSync(hostDir, 0o755);
  writeFileSync(join(hostDir, "f"), "from the host\n");
  // Layer 1: busybox plus /etc/motd, /etc/old, /opt/dir/{a,b}.
  const layer1 = busyboxLayer(t.root, (src) => {
    writeFileSync(join(src, "etc/motd"), "one\n");
    writeFileSync(join(src, "etc/old"), "old\n");
    mkdirSync(join(src, "opt/dir"), { recursive: true });
    writeFileSync(join(src, "opt/dir/a"), "a\n");
    writeFileSync(join(src, "opt/dir/b"), "b\n");
  });
  // Layer 2: /etc/motd changed, /etc/old deleted, /opt/dir opaque with a new file c.
  const layer2 = buildTar([
    { name: "etc/", type: "dir" },
    { name: "etc/motd", content: "two!\n", mode: 0o600, uid: 7, gid: 8 },
    { name: "etc/.wh.old", content: "" },
    { name: "opt/", type: "dir" },
    { name: "opt/dir/", type: "dir" },
    { name: "opt/dir/.wh..wh..opq", content: "" },
    { name: "opt/dir/c", content: "c\n" },
  ]);
  const image = await buildTestImage(await t.engine.images(), [layer1, layer2], {
    gzip: false,
    refs: [LAYERED],
    createdBy: [
      "ADD busybox rootfs with motd, old, opt/dir",
      "RUN change motd; rm old; opaque opt/dir",
    ],
    config: { config: { Cmd: ["sh"], Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] } },
  });
  diffIds.push(...image.layers.map((l) => l.diffId));
  c = await t.engine.run({
    image: LAYERED,
    name: "layered",
    cmd: ["sh", "-c", "echo upper > /etc/fresh; exec sleep 120"],
    mounts: [{ type: "bind", source: hostDir, target: "/data" }],
  });
  // The shell writes /etc/fresh before it execs sleep.
  for (
    let i = 0;
    i < 100 && !existsSync(join(t.engine.inspect(c.id).rootfs.upperdir, "etc/fresh"));
    i++
  )
    await Bun.sleep(20);
}, 60_000);

afterAll(async () => {
  if (c) await killAndWaitFor(t.engine, c);
  await t?.cleanup();
  if (hostDir) rmSync(hostDir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("debug path", () => {
  test("a file changed in layer 2: provided by layer 2, layer 1's version shadowed", async () => {
    const p = await explainPath(t.engine, "layered", "/etc/motd");
    expect(p.exists).toBe(true);
    expect(p.effective).toMatchObject({ type: "file", mode: "0600", uid: 7, gid: 8, size: 5 });
    expect(p.readOnly).toBe(false);
    expect(p.layers!.map((l) => `${l.name} ${l.state}`)).toEqual([
      "upper absent",
      "init absent",
      "layer 2 provides",
      "layer 1 shadowed",
    ]);
    expect(p.layers![2]).toMatchObject({
      diffId: diffIds[1],
      createdBy: "RUN change motd; rm old; opaque opt/dir",
    });
    expect(p.layers![3]!.entry).toMatchObject({ type: "file", size: 4 });
    expect(p.verdict).toContain("provided by layer 2");
    expect(p.verdict).toContain("shadowing layer 1");
  });

  test("a file deleted in layer 2: the whiteout, and the hidden version below", async () => {
    const p = await explainPath(t.engine, "layered", "/etc/old");
    expect(p.exists).toBe(false);
    expect(p.layers!.map((l) => `${l.name} ${l.state}`)).toEqual([
      "upper absent",
      "init absent",
      "layer 2 whiteout",
      "layer 1 shadowed",
    ]);
    expect(p.layers![2]!.entry?.type).toBe("whiteout");
    expect(p.verdict).toContain("removed by layer 2");
  });

  test("an opaque directory: layer 1's files under it are hidden, layer 2's shown", async () => {
    const a = await explainPath(t.engine, "layered", "/opt/dir/a");
    expect(a.exists).toBe(false);
    expect(a.layers!.map((l) => l.state)).toEqual(["absent", "absent", "absent", "shadowed"]);
    expect(a.layers![3]!.reason).toContain("/opt/dir is opaque in layer 2");
    const d = await explainPath(t.engine, "layered", "/opt/dir");
    expect(d.layers![2]!.entry).toMatchObject({ type: "directory", opaque: true });
    const cc = await explainPath(t.engine, "layered", "/opt/dir/c");
    expect(cc.verdict).toContain("provided by layer 2");
  });

  test("a file written by the container is in the upper layer; symlinks resolve inside", async () => {
    const p = await explainPath(t.engine, "layered", "/etc/fresh");
    expect(p.layers![0]).toMatchObject({ name: "upper", state: "provides" });
    // /bin/sh -> busybox: the link itself is reported; a path through links resolves in the root.
    const sh = await explainPath(t.engine, "layered", "/bin/sh");
    expect(sh.effective?.type).toBe("symlink");
    const up = await explainPath(t.engine, "layered", "/../../../etc/motd");
    expect(up.path).toBe("/etc/motd");
  });

  test("a bind volume shows its host path; a masked path shows as masked", async () => {
    const p = await explainPath(t.engine, "layered", "/data/f");
    expect(p.hostPath).toBe(join(hostDir, "f"));
    expect(p.mount.origin.text).toContain(`host path ${hostDir}`);
    expect(p.effective?.size).toBe(14);
    const m = await explainPath(t.engine, "layered", "/proc/keys");
    expect(m.mount.origin.kind).toBe("masked");
    expect(m.verdict).toContain("masked");
    const ro = await explainPath(t.engine, "layered", "/proc/sys/kernel");
    expect(ro.readOnly).toBe(true);
  });

  test("pivot debug path: text and JSON", () => {
    const text = pivot(["debug", "path", "layered", "/etc/old"]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain("whiteout");
    expect(text.stdout).toContain("layer 1");
    const json = pivot(["debug", "path", "--format", "json", "layered", "/etc/motd"]);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout).layers[2].state).toBe("provides");
  });
});

describe.skipIf(!isRoot)("debug mounts", () => {
  test("the root's layers with diff ids and history, the volume, masked paths, host-only mounts", async () => {
    const r = await engineMountReport(t.engine, "layered");
    const root = r.mounts.find((m) => m.mountPoint === "/")!;
    expect(root.origin.kind).toBe("rootfs");
    expect(root.origin.layers!.map((l) => [l.name, l.diffId, l.createdBy])).toEqual([
      ["upper", undefined, undefined],
      ["init", undefined, undefined],
      ["layer 2", diffIds[1], "RUN change motd; rm old; opaque opt/dir"],
      ["layer 1", diffIds[0], "ADD busybox rootfs with motd, old, opt/dir"],
    ]);
    const data = r.mounts.find((m) => m.mountPoint === "/data")!;
    expect(data.origin).toMatchObject({ kind: "mount", hostPath: hostDir });
    expect(data.propagation).toBe("private");
    const hosts = r.mounts.find((m) => m.mountPoint === "/etc/hosts")!;
    expect(hosts.origin.generated).toBe("/etc/hosts");
    expect(r.mounts.find((m) => m.mountPoint === "/proc/acpi")?.origin.kind).toBe("masked");
    expect(r.mounts.find((m) => m.mountPoint === "/proc/sys")?.origin.kind).toBe("readonly");
    expect(r.mounts.find((m) => m.mountPoint === "/proc")?.origin.text).toContain("proc");
    expect(r.mounts.every((m) => m.origin.kind !== "other")).toBe(true);
    expect(r.hostOnly.some((m) => m.mountPoint === "/")).toBe(true);
  });

  test("pivot debug mounts and pivot-runtime debug mounts", () => {
    const text = pivot(["debug", "mounts", "layered"]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain("<- masked path /proc/acpi");
    expect(text.stdout).toContain(`host path ${hostDir}`);
    expect(text.stdout).toContain("RUN change motd");
    const json = JSON.parse(pivot(["debug", "mounts", "--format", "json", "layered"]).stdout);
    expect(json.mounts[0].origin.layers).toHaveLength(4);
    const rt = runtime(join(t.root, "run/runtime"), ["debug", "mounts", c.id]);
    expect(rt.status).toBe(0);
    expect(rt.stdout).toContain("root filesystem: overlay at root.path");
    expect(rt.stdout).toMatch(/<- mounts\[\d+\]: recursive bind of host path /);
    expect(rt.stdout).toContain("masked path /proc/keys (linux.maskedPaths): /dev/null");
    expect(rt.stdout).toContain("host mounts the container does not have");
    const gone = runtime(join(t.root, "run/runtime"), ["debug", "mounts", "nosuch"]);
    expect(gone.status).not.toBe(0);
  });
});

describe.skipIf(!isRoot)("dry run", () => {
  test("pivot run/create --dry-run prints the plan and creates nothing", () => {
    const containers = join(t.root, "containers");
    const before = readdirSync(containers).sort();
    const mountsBefore = mountsUnder(t.root).sort();
    const text = pivot([
      "run",
      "--dry-run",
      "--name",
      "dry",
      "-v",
      "dryvol:/v",
      IMAGE,
      "echo",
      "hi",
    ]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain("pivot_root into");
    expect(text.stdout).toContain("mask /proc/acpi");
    expect(text.stdout).toContain("exec echo hi");
    const json = pivot(["create", "--dry-run", "--format", "json", IMAGE]);
    expect(json.status).toBe(0);
    const plan = JSON.parse(json.stdout) as { steps: { op: string; text: string }[] };
    expect(plan.steps.some((s) => s.op === "PivotRoot")).toBe(true);
    const shell = pivot(["run", "--dry-run", "--format", "shell", IMAGE, "true"]);
    expect(shell.status).toBe(0);
    expect(shell.stdout.startsWith("#!/bin/sh\n")).toBe(true);
    // Nothing made: no container directory, name, volume, mount or cgroup.
    expect(readdirSync(containers).sort()).toEqual(before);
    expect(existsSync(join(t.root, "names", "dry"))).toBe(false);
    expect(t.engine.listVolumes().map((v) => v.name)).not.toContain("dryvol");
    expect(mountsUnder(t.root).sort()).toEqual(mountsBefore);
    const cgroup = /bind the container's cgroup (\S+) on/.exec(text.stdout)?.[1];
    if (cgroup) expect(existsSync(cgroup)).toBe(false);
    const missing = pivot(["run", "--dry-run", "localhost/nosuch:image"]);
    expect(missing.status).not.toBe(0);
  });
});
