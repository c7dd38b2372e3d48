/**
 * Round trips with skopeo (Debian package `skopeo`): it reads Pivot's store
 * as an OCI layout, and what it writes (docker-archive, oci-archive, into the
 * store's layout) Pivot loads. Skipped where skopeo is not installed.
 */
import { describe, expect, test } from "bun:test";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadImages } from "../../src/image/load.ts";
import { ImageStore } from "../../src/image/store.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { storeForEachTest } from "../fixtures/image-store.ts";
import { buildTar, sha256 } from "../fixtures/image-tar.ts";

const haveSkopeo = spawnSync("skopeo", ["--version"]).status === 0;

let work: string;
let store: ImageStore;

storeForEachTest("pivot-interop-", (s) => ({ dir: work, store } = s), "store");

const base = buildTar([
  { name: "bin/", type: "dir" },
  { name: "bin/tool", content: "tool", mode: 0o755 },
  { name: "etc/old", content: "old" },
]);
const top = buildTar([{ name: "etc/.wh.old" }, { name: "etc/new", content: "new" }]);

function skopeo(...args: string[]): string {
  return execFileSync("skopeo", ["--insecure-policy", ...args], { encoding: "utf8" });
}

describe.skipIf(!haveSkopeo)("interoperability with skopeo", () => {
  test("skopeo reads the store as an OCI layout", async () => {
    const img = await buildTestImage(store, [base, top], { refs: ["busybox"] });
    const info = JSON.parse(
      skopeo("inspect", `oci:${store.root}:docker.io/library/busybox:latest`),
    );
    expect(info.Layers).toEqual(img.layers.map((l) => l.descriptor.digest));
    const config = JSON.parse(
      skopeo("inspect", "--config", `oci:${store.root}:docker.io/library/busybox:latest`),
    );
    expect(config.rootfs.diff_ids).toEqual([sha256(base), sha256(top)]);
  });

  for (const format of ["docker-archive", "oci-archive"] as const) {
    test(`store → skopeo ${format} → load into a new store`, async () => {
      const img = await buildTestImage(store, [base, top], { refs: ["alice/app:1"] });
      const file = join(work, `${format}.tar`);
      const dest =
        format === "docker-archive"
          ? `docker-archive:${file}:alice/app:1`
          : `oci-archive:${file}:docker.io/alice/app:1`;
      skopeo("copy", "-q", `oci:${store.root}:docker.io/alice/app:1`, dest);
      const other = await ImageStore.open(join(work, "other"));
      const result = await loadImages(other, file);
      expect(result.format).toBe(format);
      const loaded = await other.resolve("alice/app:1");
      expect(loaded.layers.map((l) => l.diffId)).toEqual(img.layers.map((l) => l.diffId));
      const [l0, l1] = await other.ensureImageLayers(loaded);
      expect(readFileSync(join(l0!.diffPath, "bin/tool"), "utf8")).toBe("tool");
      expect(readFileSync(join(l1!.diffPath, "etc/new"), "utf8")).toBe("new");
    });
  }

  test("skopeo writes into the store's layout; Pivot resolves and unpacks it", async () => {
    const src = await ImageStore.open(join(work, "src"));
    await buildTestImage(src, [base, top], { refs: ["busybox:1"] });
    const file = join(work, "d.tar");
    skopeo(
      "copy",
      "-q",
      `oci:${src.root}:docker.io/library/busybox:1`,
      `docker-archive:${file}:busybox:1`,
    );
    skopeo("copy", "-q", `docker-archive:${file}`, `oci:${store.root}:docker.io/library/busybox:2`);
    const img = await store.resolve("busybox:2");
    const layers = await store.ensureImageLayers(img);
    expect(layers.map((l) => l.diffId)).toEqual([sha256(base), sha256(top)]);
  });
});
