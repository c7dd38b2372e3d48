// Root filesystems without OverlayFS: fuse-overlayfs and the per-container copy, forced with
// planOverlay's driver argument and PIVOT_STORAGE_DRIVER (this kernel has OverlayFS, so the
// automatic choice cannot be seen falling back here). Needs root; fuse-overlayfs needs the
// Debian package and /dev/fuse.
import {
  afterAll,
  afterEach,
  beforeAll,
  describe,
  expect,
  setDefaultTimeout,
  test,
} from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { appendFile, mkdtemp, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  findFuseOverlayfs,
  isMountPoint,
  mountOverlay,
  type OverlayPlan,
  planOverlay,
  type RootfsDriver,
  rootfsDriver,
  unmountOverlay,
} from "../../src/image/overlay.ts";
import { ImageStore } from "../../src/image/store.ts";
import { IMAGE, makeTestEngine, runCollect, type TestEngine } from "../fixtures/engine.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";
import { isRoot } from "../helpers.ts";

setDefaultTimeout(60_000);

const haveFuse = findFuseOverlayfs() !== null && existsSync("/dev/fuse");
const drivers: RootfsDriver[] = ["fuse-overlayfs", "copy"];

const lower = buildTar([
  { name: "etc/", type: "dir" },
  { name: "etc/removed", content: "gone in layer 2\n" },
  { name: "etc/kept", content: "from layer 1\n" },
  { name: "etc/edit-me", content: "original\n" },
  { name: "opaque/", type: "dir" },
  { name: "opaque/old1", content: "1" },
  { name: "becomes-file/", type: "dir" },
  { name: "becomes-file/child", content: "c" },
  { name: "link", type: "symlink", linkname: "/etc" },
  { name: "hard1", content: "shared inode\n" },
  { name: "hard2", type: "hardlink", linkname: "hard1" },
]);
const upper = buildTar([
  { name: "etc/.wh.removed" },
  { name: "etc/added", content: "from layer 2\n" },
  { name: "opaque/.wh..wh..opq" },
  { name: "opaque/new", content: "new" },
  { name: "becomes-file", content: "now a file\n" },
  // A directory where layer 1 had a symlink to the host's /etc: nothing may go through it.
  { name: "link/", type: "dir" },
  { name: "link/inside", content: "inside\n" },
  // A new version of one name of a hardlinked pair: the other keeps the old content.
  { name: "hard1", content: "changed\n" },
]);

let root: string;
const mounted: string[] = [];

afterEach(async () => {
  for (const target of mounted.splice(0)) await unmountOverlay(target, { lazy: true });
  if (root) await rm(root, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("root filesystems without OverlayFS", () => {
  for (const driver of drivers) {
    describe.skipIf(driver === "fuse-overlayfs" && !haveFuse)(driver, () => {
      async function setup(layers: Buffer[]) {
        root = await mkdtemp(join(tmpdir(), `pivot-${driver}-`));
        const store = await ImageStore.open(join(root, "store"));
        const image = await buildTestImage(store, layers);
        return { store, layers: await store.ensureImageLayers(image) };
      }
      async function mount(
        store: ImageStore,
        layers: Awaited<ReturnType<ImageStore["ensureImageLayers"]>>,
        name: string,
      ): Promise<OverlayPlan> {
        const plan = planOverlay(store.root, layers, join(root, name), undefined, driver);
        mounted.push(plan.target);
        await mountOverlay(plan);
        return plan;
      }

      test("whiteouts, opaque dirs, type changes, symlinks, hardlinks, writes kept apart", async () => {
        const { store, layers } = await setup([lower, upper]);
        const plan = await mount(store, layers, "c1");
        expect(plan.driver).toBe(driver);
        expect(await isMountPoint(plan.target)).toBe(driver === "fuse-overlayfs");
        const m = plan.target;
        expect(readdirSync(join(m, "etc")).sort()).toEqual(["added", "edit-me", "kept"]);
        expect(readdirSync(join(m, "opaque"))).toEqual(["new"]);
        expect(readFileSync(join(m, "becomes-file"), "utf8")).toBe("now a file\n");
        expect(lstatSync(join(m, "link")).isDirectory()).toBe(true);
        expect(readdirSync(join(m, "link"))).toEqual(["inside"]);
        expect(existsSync("/etc/inside")).toBe(false);
        expect(readFileSync(join(m, "hard1"), "utf8")).toBe("changed\n");
        expect(readFileSync(join(m, "hard2"), "utf8")).toBe("shared inode\n");

        await appendFile(join(m, "etc/edit-me"), "changed\n");
        await unlink(join(m, "etc/kept"));
        expect(readFileSync(join(layers[0]!.diffPath, "etc/edit-me"), "utf8")).toBe("original\n");
        expect(existsSync(join(layers[0]!.diffPath, "etc/kept"))).toBe(true);
        if (driver === "fuse-overlayfs") {
          // The same upper-layer format as the kernel's: diff and commit read it unchanged.
          expect(readFileSync(join(plan.upperdir, "etc/edit-me"), "utf8")).toBe(
            "original\nchanged\n",
          );
          const wh = lstatSync(join(plan.upperdir, "etc/kept"));
          expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
        }
        const plan2 = await mount(store, layers, "c2");
        expect(readFileSync(join(plan2.target, "etc/edit-me"), "utf8")).toBe("original\n");
        // Mounting again (a restart) keeps the container's changes.
        await unmountOverlay(plan.target);
        await mountOverlay(plan);
        expect(readFileSync(join(m, "etc/edit-me"), "utf8")).toBe("original\nchanged\n");
        expect(existsSync(join(m, "etc/kept"))).toBe(false);
      });

      test("130 layers", async () => {
        const many = Array.from({ length: 130 }, (_, i) =>
          buildTar([{ name: `layers/l${String(i).padStart(3, "0")}`, content: `${i}` }]),
        );
        const { store, layers } = await setup(many);
        const plan = await mount(store, layers, "many");
        expect(readdirSync(join(plan.target, "layers")).length).toBe(130);
        expect(readFileSync(join(plan.target, "layers/l129"), "utf8")).toBe("129");
      });
    });
  }

  test("rootfsDriver: overlay on this kernel; PIVOT_STORAGE_DRIVER forces one; a bad value is an error", () => {
    const saved = process.env.PIVOT_STORAGE_DRIVER;
    try {
      delete process.env.PIVOT_STORAGE_DRIVER;
      expect(rootfsDriver().driver).toBe("overlay");
      process.env.PIVOT_STORAGE_DRIVER = "copy";
      expect(rootfsDriver()).toEqual({ driver: "copy", reason: "PIVOT_STORAGE_DRIVER" });
      expect(planOverlay("/s", [], "/c").driver).toBe("copy");
      process.env.PIVOT_STORAGE_DRIVER = "aufs";
      expect(() => rootfsDriver()).toThrow(/unknown storage driver "aufs"/);
    } finally {
      if (saved === undefined) delete process.env.PIVOT_STORAGE_DRIVER;
      else process.env.PIVOT_STORAGE_DRIVER = saved;
    }
  });
});

describe.skipIf(!isRoot)("engine containers on the fallback drivers", () => {
  let t: TestEngine;
  beforeAll(async () => {
    t = await makeTestEngine();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  for (const driver of drivers) {
    test.skipIf(driver === "fuse-overlayfs" && !haveFuse)(
      `${driver}: run, write, restart, diff, remove`,
      async () => {
        const saved = process.env.PIVOT_STORAGE_DRIVER;
        process.env.PIVOT_STORAGE_DRIVER = driver;
        let id: string | undefined;
        try {
          const r = await runCollect(t.engine, {
            image: IMAGE,
            user: "nobody",
            cmd: ["sh", "-c", "cat /etc/passwd | head -1; id -u"],
          });
          expect(r.stdout).toBe("root:x:0:0:root:/root:/bin/sh\n65534\n");
          await t.engine.remove(r.id);
          const w = await runCollect(t.engine, {
            image: IMAGE,
            cmd: ["sh", "-c", "cat /written 2>/dev/null; echo data >> /written; rm -f /etc/group"],
          });
          id = w.id;
          expect(w.code).toBe(0);
          const record = JSON.parse(
            readFileSync(join(t.root, "containers", id, "container.json"), "utf8"),
          );
          expect(record.overlay.driver).toBe(driver);
          // Start again: the changes are still there.
          const again = await t.engine.startAttached(id);
          let out = "";
          again.stdout?.on("data", (d: Buffer) => {
            out += d.toString();
          });
          expect(await again.wait()).toBe(0);
          expect(out).toBe("data\n");
          if (driver === "fuse-overlayfs") {
            const changes = (await t.engine.diff(id)).map((c) => `${c.kind} ${c.path}`);
            expect(changes).toContain("A /written");
            expect(changes).toContain("D /etc/group");
          } else {
            expect(readFileSync(join(t.root, "containers", id, "merged/written"), "utf8")).toBe(
              "data\ndata\n",
            );
          }
        } finally {
          if (saved === undefined) delete process.env.PIVOT_STORAGE_DRIVER;
          else process.env.PIVOT_STORAGE_DRIVER = saved;
          if (id) await t.engine.remove(id, { force: true });
        }
        // No FUSE daemon or mount left behind.
        const left = spawnSync("grep", ["-c", t.root, "/proc/self/mountinfo"], {
          encoding: "utf8",
        });
        expect(left.stdout.trim()).toBe("0");
      },
    );
  }
});
