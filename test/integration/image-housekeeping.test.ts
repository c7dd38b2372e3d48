// Image housekeeping with real containers (root): rmi, prune, garbage collection that keeps the
// layers of containers, system df, and the CLI's images/tag/inspect/save/load/import, with
// skopeo reading what `pivot save` writes.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  collectEngineGarbage,
  pruneImages,
  removeImage,
  systemDf,
} from "../../src/engine/images.ts";
import { createImage, importRootfs } from "../../src/image/create.ts";
import { ImageStore } from "../../src/image/store.ts";
import { IMAGE, makeTestEngine, runCollect, type TestEngine } from "../fixtures/engine.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli, REPO } from "../helpers.ts";

setDefaultTimeout(60_000);
const haveSkopeo = spawnSync("skopeo", ["--version"]).status === 0;

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-housekeeping-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const pivot = (args: string[], root = t.root) => pivotCli(root, args, { timeoutMs: 60_000 });

describe.skipIf(!isRoot)("image housekeeping", () => {
  test("a running container's layers survive rmi -f of its image until the container is removed", async () => {
    const store = await t.engine.images();
    const image = await importVariant("localhost/doomed:1", "doomed");
    const diffId = image.layers[0]!.diffId;
    const c = await t.engine.run({
      image: "localhost/doomed:1",
      cmd: ["sleep", "60"],
      detach: true,
    });
    // Without -f: refused, naming the container.
    await expect(removeImage(t.engine, "localhost/doomed:1")).rejects.toThrow(
      /container [0-9a-f]{12} .*uses it/,
    );
    const r = await removeImage(t.engine, "localhost/doomed:1", { force: true });
    expect(r.events).toEqual([{ Untagged: "localhost/doomed:1" }, { Deleted: image.id }]);
    expect(r.gc?.layers).toEqual([]);
    // The image is gone, its blobs too; the layer stays and the container still works.
    await expect(store.resolve("localhost/doomed:1")).rejects.toThrow();
    expect(await store.hasBlob(image.manifestDigest)).toBe(false);
    expect(await store.hasLayer(diffId)).toBe(true);
    expect((await collectEngineGarbage(t.engine)).layers).toEqual([]);
    const e = await t.engine.exec(c.id, { cmd: ["cat", "/marker"] });
    let out = "";
    e.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    expect(await e.wait()).toBe(0);
    expect(out).toBe("doomed\n");
    await t.engine.remove(c.id, { force: true });
    const gc = await collectEngineGarbage(t.engine);
    expect(gc.layers).toEqual([diffId]);
    expect(await store.hasLayer(diffId)).toBe(false);
    expect(existsSync(join(t.root, "l", diffId.slice(7, 23)))).toBe(false);
  });

  test("rmi: several names untag one at a time; by ID needs -f; prune removes dangling, -a unused", async () => {
    const store = await t.engine.images();
    const img = await importVariant("localhost/x:1", "x");
    await store.tag("localhost/x:1", "localhost/x:2");
    expect((await removeImage(t.engine, "localhost/x:1")).events).toEqual([
      { Untagged: "localhost/x:1" },
    ]);
    await store.tag("localhost/x:2", "localhost/x:3");
    await expect(removeImage(t.engine, img.id.slice(7, 19))).rejects.toThrow(/must be forced/);
    await store.untag("localhost/x:3");
    const created = await t.engine.create({ image: "localhost/x:2" });
    await store.untag("localhost/x:2"); // dangling now, but a container uses it
    let p = await pruneImages(t.engine);
    expect(p.deleted).toEqual([]);
    await t.engine.remove(created.id);
    p = await pruneImages(t.engine);
    expect(p.deleted.map((d) => d.id)).toEqual([img.id]);
    expect(p.gc.layers).toEqual([img.layers[0]!.diffId]);
    // -a: every image no container uses (tagged ones too).
    const y = await importVariant("localhost/y:1", "y");
    const keep = await t.engine.create({ image: IMAGE });
    p = await pruneImages(t.engine, { all: true });
    const ids = p.deleted.map((d) => d.id);
    expect(ids).toContain(y.id);
    expect(ids).not.toContain((await store.resolve(IMAGE)).id);
    await t.engine.remove(keep.id);
  });

  test("system df: shared and unique sizes, containers' upper dirs, volumes", async () => {
    const c = await runCollect(t.engine, {
      image: IMAGE,
      cmd: ["sh", "-c", "head -c 100000 /dev/zero > /big"],
      mounts: [{ type: "volume", source: "dfvol", target: "/v" }],
    });
    expect(c.code).toBe(0);
    // Another image with the same layer and its own config.
    const store = await t.engine.images();
    const base = await store.resolve(IMAGE);
    const sharer = await createImage(store, {
      layers: base.layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
      config: { config: { Cmd: ["true"] } },
      refs: ["localhost/sharer:1"],
    });
    const df = await systemDf(t.engine);
    const busybox = df.images.filter((i) => i.names.includes("localhost/busybox:test"));
    expect(busybox.length).toBe(1);
    // localhost/sharer:1 has the same layer: all of it is shared.
    expect(busybox[0]!.sharedSize).toBe(busybox[0]!.size);
    expect(busybox[0]!.uniqueSize).toBe(0);
    expect(df.totals.images.size).toBe(busybox[0]!.size);
    const mine = df.containers.find((x) => x.id === c.id)!;
    expect(mine.size).toBeGreaterThanOrEqual(100_000);
    expect(df.volumes.find((v) => v.name === "dfvol")?.links).toBe(1);
    await t.engine.remove(c.id, { force: true });
    t.engine.removeVolume("dfvol");
    await store.removeManifest(sharer.manifestDigest);
  });

  test("CLI: images (table, json), tag, image inspect, rmi refusal, system df", () => {
    expect(pivot(["tag", IMAGE, "alice/app:1"]).status).toBe(0);
    const table = pivot(["images"]).stdout.split("\n");
    expect(table[0]).toMatch(/^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$/);
    expect(table.some((l) => /^alice\/app +1 +[0-9a-f]{12} +.* ago +[\d.]+MB$/.test(l))).toBe(true);
    const json = pivot(["images", "--format", "json"])
      .stdout.trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(json.find((j) => j.Repository === "alice/app")?.Tag).toBe("1");
    const inspect = JSON.parse(pivot(["image", "inspect", "alice/app:1"]).stdout);
    expect(inspect[0].RepoTags).toContain("alice/app:1");
    expect(inspect[0].RootFS.Layers.length).toBe(1);
    expect(inspect[0].Id).toMatch(/^sha256:/);
    expect(pivot(["create", "--name", "user1", "alice/app:1"]).status).toBe(0);
    // IMAGE names the image too: this only untags.
    expect(pivot(["rmi", "alice/app:1"]).stdout).toBe("Untagged: alice/app:1\n");
    const last = pivot(["rmi", IMAGE]);
    expect(last.status).toBe(1);
    expect(last.stderr).toMatch(/container [0-9a-f]{12} \(user1, created\) uses it/);
    const df = JSON.parse(pivot(["system", "df", "--format", "json"]).stdout);
    expect(df.totals.containers.total).toBe(1);
    expect(pivot(["system", "df", "-v"]).stdout).toMatch(/SHARED SIZE +UNIQUE SIZE/);
    expect(pivot(["rm", "user1"]).status).toBe(0);
  });

  test("CLI: import from stdin with -m and -c, then run it", () => {
    const tar = join(scratch, "rootfs.tar");
    const src = join(scratch, "rootfs");
    execFileSync(join(REPO, "scripts/make-busybox-rootfs.sh"), [src]);
    execFileSync("tar", ["-C", src, "--numeric-owner", "-cf", tar, "."]);
    const r = spawnSync(
      "sh",
      [
        "-c",
        `"${BUN}" "${PIVOT_CLI}" --root "${t.root}" import -m hello -c 'CMD ["echo","imported"]' - localhost/imported:1 < "${tar}"`,
      ],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const run = pivot(["run", "--rm", "localhost/imported:1"]);
    expect(run.stdout).toBe("imported\n");
    const inspect = JSON.parse(pivot(["image", "inspect", "localhost/imported:1"]).stdout);
    expect(inspect[0].Comment).toBe("hello");
    expect(pivot(["rmi", "localhost/imported:1"]).status).toBe(0);
  });

  for (const format of ["docker-archive", "oci-archive"] as const) {
    test.skipIf(!haveSkopeo)(
      `CLI: save --format ${format} → skopeo copies it → load into a new root → run`,
      async () => {
        const file = join(scratch, `${format}.tar`);
        expect(pivot(["tag", IMAGE, "docker.io/alice/saved:2"]).status).toBe(0);
        const s = pivot(["save", "--format", format, "-o", file, "alice/saved:2"]);
        expect(s.stderr).toBe("");
        expect(s.status).toBe(0);
        const source =
          format === "docker-archive"
            ? `docker-archive:${file}`
            : `oci-archive:${file}:docker.io/alice/saved:2`;
        const info = JSON.parse(
          execFileSync("skopeo", ["--insecure-policy", "inspect", source], { encoding: "utf8" }),
        );
        const img = await (await t.engine.images()).resolve("alice/saved:2");
        expect(info.Layers.length).toBe(1);
        if (format === "docker-archive") expect(info.RepoTags).toEqual([]);
        // skopeo copies the archive into a fresh OCI layout and back into an archive of its own.
        const layout = join(scratch, `${format}-layout`);
        execFileSync("skopeo", [
          "--insecure-policy",
          "copy",
          "-q",
          source,
          `oci:${layout}:docker.io/alice/saved:2`,
        ]);
        const again = join(scratch, `${format}-again.tar`);
        execFileSync("skopeo", [
          "--insecure-policy",
          "copy",
          "-q",
          `oci:${layout}:docker.io/alice/saved:2`,
          format === "docker-archive"
            ? `docker-archive:${again}:alice/saved:2`
            : `oci-archive:${again}:docker.io/alice/saved:2`,
        ]);
        const root = join(scratch, `${format}-root`);
        for (const archive of [file, again]) {
          const l = pivot(["load", "-i", archive], root);
          expect(l.status).toBe(0);
          expect(l.stdout).toContain("Loaded image: alice/saved:2");
          const loaded = await (await ImageStore.open(root)).resolve("alice/saved:2");
          // Pivot's own archive keeps the config byte for byte (the same image ID); skopeo
          // re-serializes it when it converts to Docker's format, so only the layers compare.
          if (archive === file) expect(loaded.id).toBe(img.id);
          expect(loaded.layers.map((x) => x.diffId)).toEqual(img.layers.map((x) => x.diffId));
        }
        const run = pivot(["run", "--rm", "alice/saved:2", "cat", "/etc/passwd"], root);
        expect(run.status).toBe(0);
        expect(run.stdout).toContain("root:");
        expect(pivot(["rmi", "alice/saved:2"]).status).toBe(0);
        rmSync(root, { recursive: true, force: true });
      },
    );
  }
});

/** A busybox image whose layer is its own (a /marker file): nothing else shares it. */
async function importVariant(ref: string, marker: string) {
  const src = join(scratch, `src-${marker}`);
  const tar = join(scratch, `${marker}.tar`);
  execFileSync(join(REPO, "scripts/make-busybox-rootfs.sh"), [src]);
  writeFileSync(join(src, "marker"), `${marker}\n`);
  execFileSync("tar", ["-C", src, "--numeric-owner", "-cf", tar, "."]);
  const image = await importRootfs(await t.engine.images(), tar, {
    refs: [ref],
    config: { config: { Cmd: ["sh"], Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] } },
  });
  rmSync(src, { recursive: true, force: true });
  rmSync(tar, { force: true });
  return image;
}
