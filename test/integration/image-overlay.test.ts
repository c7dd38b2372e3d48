import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { appendFile, mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  isMountPoint,
  mountImageRootfs,
  mountOverlay,
  type OverlayPlan,
  overlaySupported,
  planOverlay,
  unmountOverlay,
  volatileOverlay,
} from "../../src/image/overlay.ts";
import { ImageStore } from "../../src/image/store.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";

let root: string;
let store: ImageStore;
const mounted: string[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "pivot-overlay-"));
  store = await ImageStore.open(join(root, "store"));
});

afterEach(async () => {
  for (const target of mounted.splice(0)) await unmountOverlay(target, { lazy: true });
  await rm(root, { recursive: true, force: true });
});

async function mount(
  image: Parameters<typeof mountImageRootfs>[1],
  name: string,
): Promise<OverlayPlan> {
  const containerDir = join(root, "containers", name);
  const plan = planOverlay(store.root, await store.ensureImageLayers(image), containerDir);
  mounted.push(plan.target);
  return mountImageRootfs(store, image, containerDir);
}

const canMount = process.getuid?.() === 0 && (await overlaySupported());

describe.skipIf(!canMount)("OverlayFS root filesystems", () => {
  const lower = buildTar([
    { name: "etc/", type: "dir" },
    { name: "etc/removed", content: "gone in layer 2\n" },
    { name: "etc/kept", content: "from layer 1\n" },
    { name: "etc/edit-me", content: "original\n" },
    { name: "opaque/", type: "dir" },
    { name: "opaque/old1", content: "1" },
    { name: "opaque/old2", content: "2" },
    { name: "bin/busybox", content: "not really busybox", mode: 0o755 },
  ]);
  const upper = buildTar([
    { name: "etc/.wh.removed" },
    { name: "etc/added", content: "from layer 2\n" },
    { name: "opaque/.wh..wh..opq" },
    { name: "opaque/new", content: "new" },
  ]);

  test("a 2-layer image: whiteouts, opaque dirs, copy-on-write", async () => {
    const image = await buildTestImage(store, [lower, upper], { refs: ["twolayer"] });
    const plan = await mount(image, "c1");
    try {
      expect(await isMountPoint(plan.target)).toBe(true);
      expect(plan.lowerdirs.length).toBe(2);
      const m = plan.target;
      expect(readdirSync(join(m, "etc")).sort()).toEqual(["added", "edit-me", "kept"]);
      expect(existsSync(join(m, "etc/removed"))).toBe(false);
      expect(readdirSync(join(m, "opaque"))).toEqual(["new"]);
      expect(readFileSync(join(m, "etc/kept"), "utf8")).toBe("from layer 1\n");
      expect(readFileSync(join(m, "etc/added"), "utf8")).toBe("from layer 2\n");

      // Copy-on-write: the change lands in upperdir, the shared layer is untouched.
      await appendFile(join(m, "etc/edit-me"), "changed\n");
      await writeFile(join(m, "etc/brand-new"), "container file\n");
      await unlink(join(m, "etc/kept"));
      const layer1 = (await store.ensureImageLayers(image))[0]!.diffPath;
      expect(readFileSync(join(layer1, "etc/edit-me"), "utf8")).toBe("original\n");
      expect(existsSync(join(layer1, "etc/kept"))).toBe(true);
      expect(readFileSync(join(plan.upperdir, "etc/edit-me"), "utf8")).toBe("original\nchanged\n");
      expect(readFileSync(join(plan.upperdir, "etc/brand-new"), "utf8")).toBe("container file\n");
      const wh = lstatSync(join(plan.upperdir, "etc/kept"));
      expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);

      // A second container of the same image shares the layers and sees none of it.
      const plan2 = await mount(image, "c2");
      expect(readFileSync(join(plan2.target, "etc/edit-me"), "utf8")).toBe("original\n");
      expect(existsSync(join(plan2.target, "etc/kept"))).toBe(true);
      expect(readdirSync(join(store.root, "layers/sha256")).length).toBe(2);
    } finally {
      await unmountOverlay(plan.target);
    }
    expect(await isMountPoint(plan.target)).toBe(false);
    // Unmounting twice is fine.
    await unmountOverlay(plan.target);
  });

  test("an image of 130 layers mounts (short links keep options under a page)", async () => {
    const layers = Array.from({ length: 130 }, (_, i) =>
      buildTar([{ name: `layers/l${String(i).padStart(3, "0")}`, content: `${i}` }]),
    );
    const image = await buildTestImage(store, layers, { gzip: false });
    const plan = await mount(image, "many");
    try {
      expect(plan.options.length).toBeLessThan(4096);
      expect(readdirSync(join(plan.target, "layers")).length).toBe(130);
      expect(readFileSync(join(plan.target, "layers/l129"), "utf8")).toBe("129");
    } finally {
      await unmountOverlay(plan.target);
    }
  });

  test("overlayfs's xattrs carried by a layer do not hide the layer beneath (rootful and userxattr)", async () => {
    const base = buildTar([
      { name: "dir/", type: "dir" },
      { name: "dir/from-lower", content: "layer 1\n" },
    ]);
    // A hostile layer: its directory entry says it is opaque, in both namespaces overlayfs reads.
    const hostile = buildTar([
      {
        name: "dir/",
        type: "dir",
        pax: {
          "SCHILY.xattr.user.overlay.opaque": "y",
          "SCHILY.xattr.trusted.overlay.opaque": "y",
        },
      },
      { name: "dir/from-upper", content: "layer 2\n" },
    ]);
    const image = await buildTestImage(store, [base, hostile]);
    const layers = await store.ensureImageLayers(image);
    const { mountOverlay } = await import("../../src/image/overlay.ts");
    // The root engine's mount, and the rootless engine's (userxattr: user.overlay.* is overlayfs's).
    for (const [name, extra] of [
      ["rootful", ""],
      ["userxattr", ",userxattr"],
    ] as const) {
      const plan = planOverlay(store.root, layers, join(root, "containers", name));
      plan.options += extra;
      mounted.push(plan.target);
      await mountOverlay(plan);
      try {
        expect(readdirSync(join(plan.target, "dir")).sort()).toEqual(["from-lower", "from-upper"]);
      } finally {
        await unmountOverlay(plan.target);
      }
    }
  });

  test("mount failure is reported with the target and a hint", async () => {
    const image = await buildTestImage(store, [lower]);
    const plan = planOverlay(store.root, await store.ensureImageLayers(image), join(root, "bad"));
    // Overlay cannot use an overlay as upperdir: mount one, then try to put upper inside it.
    const first = await mount(image, "outer");
    const nested = { ...plan, upperdir: join(first.target, "u"), workdir: join(first.target, "w") };
    nested.options = plan.options
      .replace(plan.upperdir, nested.upperdir)
      .replace(plan.workdir, nested.workdir);
    const { mountOverlay } = await import("../../src/image/overlay.ts");
    mounted.push(nested.target);
    await expect(mountOverlay(nested)).rejects.toThrow(/overlay .*bad\/merged: mount failed/);
  });
});

test("planOverlay: top layer first, relative short links, upper/work under the container", () => {
  const layers = ["a", "b", "c"].map((x) => ({
    diffId: `sha256:${x.repeat(64)}`,
    diffPath: `/s/layers/sha256/${x.repeat(64)}/diff`,
    link: x.repeat(16),
    size: 1,
  }));
  const plan = planOverlay("/s", layers, "/run/c1");
  expect(plan.lowerdirs).toEqual([
    `l/${"c".repeat(16)}`,
    `l/${"b".repeat(16)}`,
    `l/${"a".repeat(16)}`,
  ]);
  expect(plan.options).toBe(
    `lowerdir=l/${"c".repeat(16)}:l/${"b".repeat(16)}:l/${"a".repeat(16)},upperdir=/run/c1/upper,workdir=/run/c1/work`,
  );
  expect(plan.cwd).toBe("/s");
  expect(plan.target).toBe("/run/c1/merged");
  expect(() => planOverlay("/s", layers, "/run/c:1")).toThrow(/cannot carry/);
  expect(planOverlay("/s", [], "/run/c1").lowerdirs).toEqual(["/run/c1/empty"]);
});

test("planOverlay: the init layer above the image's layers, in the options only; none for copy", () => {
  const layers = ["a", "b"].map((x) => ({
    diffId: `sha256:${x.repeat(64)}`,
    diffPath: `/s/layers/sha256/${x.repeat(64)}/diff`,
    link: x.repeat(16),
    size: 1,
  }));
  const plan = planOverlay("/s", layers, "/run/c1", undefined, "overlay", "init");
  expect(plan.initdir).toBe("init");
  expect(plan.lowerdirs).toEqual([`l/${"b".repeat(16)}`, `l/${"a".repeat(16)}`]);
  expect(plan.options).toStartWith(`lowerdir=init:l/${"b".repeat(16)}:l/${"a".repeat(16)},`);
  const copy = planOverlay("/s", layers, "/run/c1", undefined, "copy", "init");
  expect(copy.initdir).toBeUndefined();
  expect(copy.options).toStartWith(`lowerdir=l/${"b".repeat(16)}:`);
});

test("the store's init layer: made once, whole, with its modes whatever the umask", () => {
  const old = process.umask(0o077);
  try {
    expect(store.initLayer()).toBe("init");
  } finally {
    process.umask(old);
  }
  const init = join(store.root, "init");
  const mode = (p: string) => lstatSync(join(init, p)).mode & 0o7777;
  expect(readdirSync(init).sort()).toEqual(["dev", "etc", "proc", "sys"]);
  expect(readdirSync(join(init, "etc")).sort()).toEqual(["hostname", "hosts", "resolv.conf"]);
  expect([mode("."), mode("etc"), mode("dev"), mode("proc"), mode("sys")]).toEqual([
    0o755, 0o755, 0o755, 0o755, 0o755,
  ]);
  expect([mode("etc/hosts"), mode("etc/hostname"), mode("etc/resolv.conf")]).toEqual([
    0o644, 0o644, 0o644,
  ]);
  expect(lstatSync(join(init, "etc/hosts")).size).toBe(0);
  // Made already: the same, and nothing left in tmp by either call.
  const ino = lstatSync(init).ino;
  expect(store.initLayer()).toBe("init");
  expect(lstatSync(init).ino).toBe(ino);
  expect(readdirSync(join(store.root, "tmp")).filter((n) => n.startsWith("init-"))).toEqual([]);
});

describe.skipIf(!canMount)("isMountPoint", () => {
  test("paths that mountinfo escapes (space, tab, newline, backslash); a prefix is not a match", async () => {
    const dir = join(root, "a b\tc\\d\ne");
    const sibling = join(root, "a b");
    mkdirSync(dir, { recursive: true });
    expect(await isMountPoint(dir)).toBe(false);
    const m = spawnSync("mount", ["-t", "tmpfs", "tmpfs", dir], { encoding: "utf8" });
    expect(m.stderr).toBe("");
    try {
      expect(await isMountPoint(dir)).toBe(true);
      expect(await isMountPoint(sibling)).toBe(false);
      expect(await isMountPoint(`${dir}/x`)).toBe(false);
    } finally {
      spawnSync("umount", [dir]);
    }
    expect(await isMountPoint(dir)).toBe(false);
  });
});

describe.skipIf(!canMount)("the init layer", () => {
  test("its mount points show in the merged tree, the image's files beside them; writes go up", async () => {
    const image = await buildTestImage(
      store,
      [
        buildTar([
          { name: "etc/", type: "dir" },
          { name: "etc/passwd", content: "root:x:0:0::/:/bin/sh\n" },
        ]),
      ],
      { refs: ["init-layer"] },
    );
    const plan = planOverlay(
      store.root,
      await store.ensureImageLayers(image),
      join(root, "containers", "init"),
      undefined,
      "overlay",
      store.initLayer(),
    );
    mounted.push(plan.target);
    await mountOverlay(plan);
    expect(readdirSync(join(plan.target, "etc")).sort()).toEqual([
      "hostname",
      "hosts",
      "passwd",
      "resolv.conf",
    ]);
    for (const d of ["dev", "proc", "sys"])
      expect(lstatSync(join(plan.target, d)).isDirectory()).toBe(true);
    // Nothing in the upper directory until the container writes.
    expect(readdirSync(plan.upperdir)).toEqual([]);
    await writeFile(join(plan.target, "etc/hosts"), "127.0.0.1 x\n");
    expect(readFileSync(join(plan.upperdir, "etc/hosts"), "utf8")).toBe("127.0.0.1 x\n");
    expect(lstatSync(join(store.root, "init/etc/hosts")).size).toBe(0);
  });
});

describe.skipIf(!canMount)("volatile overlays (--rm)", () => {
  test("mounted volatile; mounted again after an unmount, though overlay leaves its marker", async () => {
    const image = await buildTestImage(store, [buildTar([{ name: "etc/x", content: "x\n" }])], {
      refs: ["vol"],
    });
    const plan = volatileOverlay(
      planOverlay(store.root, await store.ensureImageLayers(image), join(root, "c")),
    );
    expect(plan.volatile).toBe(true);
    expect(plan.options).toEndWith(",volatile");
    mounted.push(plan.target);
    await mountOverlay(plan);
    const line = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((l) => l.split(" ")[4] === plan.target)!;
    expect(line).toMatch(/[ ,](fsync=)?volatile(,|$)/);
    await writeFile(join(plan.target, "etc/y"), "y\n");
    await unmountOverlay(plan.target);
    // The kernel refuses a mount while this is there; mountOverlay removes it first.
    const marker = join(plan.workdir, "work/incompat/volatile");
    expect(existsSync(marker)).toBe(true);
    await mountOverlay(plan);
    expect(readFileSync(join(plan.target, "etc/y"), "utf8")).toBe("y\n");
    expect(readFileSync(join(plan.target, "etc/x"), "utf8")).toBe("x\n");
  });
});
