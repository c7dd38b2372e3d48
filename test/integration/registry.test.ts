/**
 * Pull and push against a real registry: Debian's docker-registry (the CNCF
 * distribution server, v2.8) started on 127.0.0.1 over plain HTTP, which
 * Pivot uses only with an explicit opt-in. Images are built from Debian's
 * busybox-static, pushed from one store and pulled into another; skopeo
 * pushes and pulls the other way. Skipped where docker-registry is missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registryCommand } from "../../src/cli/registry.ts";
import { createImage, importRootfs } from "../../src/image/create.ts";
import { ImageStore, type StoredImage } from "../../src/image/store.ts";
import { hostPlatform, MediaType } from "../../src/image/types.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import {
  RegistryConnectionError,
  RegistryError,
  RegistryNotFoundError,
} from "../../src/registry/errors.ts";
import type { ProgressReporter } from "../../src/registry/progress.ts";
import { pullImage } from "../../src/registry/pull.ts";
import { pushImage, pushIndex } from "../../src/registry/push.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";
import {
  haveRegistry,
  haveSkopeo,
  startRegistry,
  type TestRegistry,
} from "../fixtures/registry.ts";

const isRoot = process.getuid?.() === 0;
const haveNode = spawnSync("node", ["--version"]).status === 0;

let work: string;
let reg: TestRegistry;
let src: ImageStore;
let busybox: StoredImage;
let opts: { insecureRegistries: string[]; certsDirs: string[] };

/** Everything in an unpacked tree: type, mode, owner, content hash or link target. */
function treeListing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = rel === "" ? dir : join(dir, rel);
    for (const name of readdirSync(abs).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const st = lstatSync(join(dir, r));
      const base = `${r} ${st.mode.toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out.push(`${base} -> ${readlinkSync(join(dir, r))}`);
      else if (st.isFile())
        out.push(
          `${base} ${createHash("sha256")
            .update(readFileSync(join(dir, r)))
            .digest("hex")}`,
        );
      else out.push(base);
      if (st.isDirectory()) walk(r);
    }
  };
  walk("");
  return out;
}

class RecordingProgress implements ProgressReporter {
  lines: string[] = [];
  message(text: string) {
    this.lines.push(text);
  }
  status(id: string, status: string) {
    this.lines.push(`${id}: ${status}`);
  }
  bytes() {}
  close() {}
}

describe.skipIf(!haveRegistry || !isRoot)(
  "registry: plain HTTP docker-registry on loopback",
  () => {
    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), "pivot-registry-"));
      reg = await startRegistry(join(work));
      // No certs.d of the host machine may change what the tests see.
      opts = { insecureRegistries: [reg.host], certsDirs: [join(work, "no-certs")] };
      execFileSync(join(import.meta.dir, "../../scripts/make-busybox-rootfs.sh"), [
        join(work, "rootfs"),
      ]);
      execFileSync("tar", ["-C", join(work, "rootfs"), "-czf", join(work, "rootfs.tar.gz"), "."]);
      src = await ImageStore.open(join(work, "src"));
      busybox = await importRootfs(src, join(work, "rootfs.tar.gz"), {
        refs: [`${reg.host}/test/busybox:1`],
        config: { config: { Cmd: ["/bin/sh"] } },
      });
    });

    afterAll(async () => {
      await reg?.stop();
      await rm(work, { recursive: true, force: true });
    });

    test("plain HTTP is used only with an explicit opt-in", async () => {
      const store = await ImageStore.open(join(work, "optin"));
      const err = await pullImage(store, `${reg.host}/test/busybox:1`, {
        certsDirs: opts.certsDirs,
        retry: { retries: 0 },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryConnectionError);
      expect((err as Error).message).toContain("does not speak TLS");
      expect((err as Error).message).toContain("tlsVerify=false");
    });

    test("push busybox, pull it into a second store: same digests, same files", async () => {
      const pushProgress = new RecordingProgress();
      const pushed = await pushImage(src, `${reg.host}/test/busybox:1`, undefined, {
        ...opts,
        progress: pushProgress,
      });
      expect(pushed.digest).toBe(busybox.manifestDigest);
      expect(pushed.blobs.map((b) => b.status)).toEqual(["pushed", "pushed"]);
      expect(pushProgress.lines).toContain(
        `${busybox.layers[0]!.descriptor.digest.slice(7, 19)}: Pushed`,
      );

      const dst = await ImageStore.open(join(work, "dst"));
      const progress = new RecordingProgress();
      const events: string[] = [];
      dst.onEvent = (action, _id, attributes) => events.push(`${action} ${attributes.name}`);
      const pulled = await pullImage(dst, `${reg.host}/test/busybox:1`, { ...opts, progress });
      // Docker's pull is one event, no `tag` for the name it sets.
      expect(events).toEqual([`pull ${reg.host}/test/busybox:1`]);
      dst.onEvent = undefined;
      expect(pulled.digest).toBe(busybox.manifestDigest);
      expect(pulled.image.id).toBe(busybox.id);
      expect(pulled.layers.map((l) => l.status)).toEqual(["pulled"]);
      expect(progress.lines.at(-1)).toBe(
        `Status: Downloaded newer image for ${reg.host}/test/busybox:1`,
      );

      const again = await dst.resolve(`${reg.host}/test/busybox:1`);
      expect(again.manifestDigest).toBe(busybox.manifestDigest);
      const [a] = await src.ensureImageLayers(busybox);
      const [b] = await dst.ensureImageLayers(again);
      const listing = treeListing(b!.diffPath);
      expect(listing).toEqual(treeListing(a!.diffPath));
      expect(listing.some((l) => l.startsWith("bin/busybox "))).toBe(true);
      expect(listing).toContain("bin/sh 120777 0:0 -> busybox");
      // Nothing left in the temporary directories.
      expect(await readdir(join(dst.root, "tmp"))).toEqual([]);
    });

    test("a second pull finds everything in the store; pull by digest; HEAD gives the digest", async () => {
      const dst = await ImageStore.open(join(work, "dst"));
      const progress = new RecordingProgress();
      const pulled = await pullImage(dst, `${reg.host}/test/busybox:1`, { ...opts, progress });
      expect(pulled.layers.map((l) => l.status)).toEqual(["exists"]);
      expect(progress.lines.at(-1)).toBe(
        `Status: Image is up to date for ${reg.host}/test/busybox:1`,
      );

      const byDigest = await ImageStore.open(join(work, "bydigest"));
      const p2 = await pullImage(
        byDigest,
        `${reg.host}/test/busybox@${busybox.manifestDigest}`,
        opts,
      );
      expect(p2.image.id).toBe(busybox.id);
      expect((await byDigest.resolve(busybox.manifestDigest)).id).toBe(busybox.id);

      const client = new RegistryClient(reg.host, opts);
      try {
        const head = await client.headManifest("test/busybox", "1");
        expect(head?.digest).toBe(busybox.manifestDigest);
        expect(head?.mediaType).toBe(MediaType.ociManifest);
        expect(await client.headManifest("test/busybox", "nope")).toBeUndefined();
        expect(await client.listTags("test/busybox")).toEqual(["1"]);
      } finally {
        client.close();
      }
    });

    test("a missing tag or repository: the error names the reference and the registry", async () => {
      const store = await ImageStore.open(join(work, "missing"));
      const err = await pullImage(store, `${reg.host}/test/busybox:nope`, opts).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RegistryNotFoundError);
      expect((err as Error).message).toContain(
        `manifest ${reg.host}/test/busybox:nope not found in registry ${reg.host}`,
      );
      const err2 = await pullImage(store, `${reg.host}/no/such:1`, opts).catch((e: unknown) => e);
      expect(err2).toBeInstanceOf(RegistryNotFoundError);
      expect((await store.listImages()).length).toBe(0);
    });

    test("a multi-layer image: chunked upload, parallel pull, cross-repository mount", async () => {
      const big = randomBytes(3 << 20); // incompressible: three PATCH chunks of 1 MiB and more
      const layers = [
        buildTar([
          { name: "etc/", type: "dir" },
          { name: "etc/os-release", content: "NAME=pivot-test\n" },
        ]),
        buildTar([
          { name: "data/", type: "dir" },
          { name: "data/big.bin", content: big },
        ]),
        buildTar([{ name: "etc/.wh.os-release" }, { name: "etc/hostname", content: "pivot\n" }]),
        buildTar([
          { name: "usr/", type: "dir" },
          { name: "usr/link", type: "symlink", linkname: "../etc/hostname" },
        ]),
      ];
      const built = await buildTestImage(src, layers, { refs: [`${reg.host}/test/multi:v1`] });
      // The busybox layer at the bottom: a real five-layer image.
      const image = await createImage(src, {
        layers: [
          { descriptor: busybox.layers[0]!.descriptor, diffId: busybox.layers[0]!.diffId },
          ...built.layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
        ],
        refs: [`${reg.host}/test/multi:v1`],
        config: { created: "2024-01-01T00:00:00Z" },
      });
      const pushed = await pushImage(src, `${reg.host}/test/multi:v1`, undefined, {
        ...opts,
        chunkSize: 1 << 20,
        tags: ["latest"],
      });
      expect(pushed.digest).toBe(image.manifestDigest);
      // Nothing of it is in test/multi yet, and the image has no other name on this registry to
      // mount from: all six blobs (five layers, the config) are uploaded.
      expect(pushed.blobs.filter((b) => b.status === "pushed").length).toBe(6);

      // Another repository: every blob is mounted from test/multi.
      const mounted = await pushImage(
        src,
        `${reg.host}/test/multi:v1`,
        `${reg.host}/other/copy:1`,
        {
          ...opts,
          mountFrom: ["test/multi"],
        },
      );
      expect(mounted.blobs.map((b) => b.status)).toEqual(Array(6).fill("mounted"));
      expect(mounted.digest).toBe(image.manifestDigest);

      const dst = await ImageStore.open(join(work, "multi-dst"));
      // A fresh store: all five layers come over the network, three at a time.
      const pulled = await pullImage(dst, `${reg.host}/other/copy:1`, { ...opts, concurrency: 3 });
      expect(pulled.layers.map((l) => l.status)).toEqual(Array(5).fill("pulled"));
      expect(pulled.image.layers.map((l) => l.diffId)).toEqual(image.layers.map((l) => l.diffId));
      const records = await dst.ensureImageLayers(pulled.image);
      expect(readFileSync(join(records[2]!.diffPath, "data/big.bin")).equals(big)).toBe(true);
      expect(lstatSync(join(records[3]!.diffPath, "etc/os-release")).isCharacterDevice()).toBe(
        true,
      );
      expect(readlinkSync(join(records[4]!.diffPath, "usr/link"))).toBe("../etc/hostname");

      // The extra tag points at the same manifest.
      const client = new RegistryClient(reg.host, opts);
      try {
        expect((await client.headManifest("test/multi", "latest"))?.digest).toBe(
          image.manifestDigest,
        );
      } finally {
        client.close();
      }

      // The same image under another name, into the store that has busybox's layer already.
      const dst2 = await ImageStore.open(join(work, "dst"));
      const p2 = await pullImage(dst2, `${reg.host}/test/multi:latest`, opts);
      expect(p2.layers.map((l) => l.status)).toEqual([
        "exists",
        "pulled",
        "pulled",
        "pulled",
        "pulled",
      ]);
    });

    test("an index with two platforms: the host's by default, another with platform", async () => {
      const host = hostPlatform();
      const other =
        host.architecture === "arm64"
          ? { os: "linux", architecture: "amd64" }
          : { os: "linux", architecture: "arm64", variant: "v8" };
      const layerHost = buildTar([{ name: "arch", content: host.architecture }]);
      const layerOther = buildTar([{ name: "arch", content: other.architecture }]);
      const imgHost = await buildTestImage(src, [layerHost], { refs: ["plat/host:1"] });
      const otherBase = await buildTestImage(src, [layerOther], { refs: [] });
      const imgOther = await createImage(src, {
        layers: otherBase.layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
        config: {
          architecture: other.architecture,
          os: "linux",
          ...(other.variant ? { variant: other.variant } : {}),
          created: "2024-01-01T00:00:00Z",
        },
        refs: ["plat/other:1"],
      });
      const result = await pushIndex(
        src,
        `${reg.host}/test/multiarch:1`,
        [{ image: imgHost.manifestDigest }, { image: imgOther.manifestDigest }],
        opts,
      );
      const client = new RegistryClient(reg.host, opts);
      try {
        const got = await client.getManifest("test/multiarch", "1");
        expect(got.digest).toBe(result.digest);
        expect(got.parsed.kind).toBe("index");
      } finally {
        client.close();
      }

      const a = await ImageStore.open(join(work, "plat-a"));
      const pa = await pullImage(a, `${reg.host}/test/multiarch:1`, opts);
      expect(pa.digest).toBe(result.digest);
      expect(pa.manifestDigest).toBe(imgHost.manifestDigest);
      const [la] = await a.ensureImageLayers(pa.image);
      expect(readFileSync(join(la!.diffPath, "arch"), "utf8")).toBe(host.architecture);

      const b = await ImageStore.open(join(work, "plat-b"));
      const platform = `linux/${other.architecture}${other.variant ? `/${other.variant}` : ""}`;
      const pb = await pullImage(b, `${reg.host}/test/multiarch:1`, { ...opts, platform });
      expect(pb.manifestDigest).toBe(imgOther.manifestDigest);
      expect(pb.image.config.architecture).toBe(other.architecture);
      const [lb] = await b.ensureImageLayers(pb.image);
      expect(readFileSync(join(lb!.diffPath, "arch"), "utf8")).toBe(other.architecture);

      const err = await pullImage(b, `${reg.host}/test/multiarch:1`, {
        ...opts,
        platform: "linux/s390x",
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as Error).message).toContain("has no image for linux/s390x");
      expect((err as Error).message).toContain(platform);
    });

    test.skipIf(!haveNode)("the library pulls and pushes under Node too", async () => {
      await pushImage(src, `${reg.host}/test/busybox:1`, undefined, opts);
      // Bundled for Node by Bun (node: built-ins stay imports; a Bun API would fail under Node).
      const out = join(work, "node-lib");
      const build = spawnSync(
        process.execPath,
        [
          "build",
          "--target=node",
          "--format=esm",
          `--outdir=${out}`,
          join(import.meta.dir, "../fixtures/registry-node-entry.ts"),
        ],
        { encoding: "utf8" },
      );
      expect(build.status).toBe(0);
      const script = join(work, "node-pull.mjs");
      writeFileSync(
        script,
        `import { ImageStore, pullImage, pushImage } from ${JSON.stringify(join(out, "registry-node-entry.js"))};
const [storeDir, ref, dest, insecure] = process.argv.slice(2);
const opts = { insecureRegistries: [insecure], certsDirs: [] };
const store = await ImageStore.open(storeDir);
const pulled = await pullImage(store, ref, opts);
const [layer] = await store.ensureImageLayers(pulled.image);
const pushed = await pushImage(store, ref, dest, opts);
console.log(JSON.stringify({ node: process.version, digest: pulled.digest, diffPath: layer.diffPath, pushed: pushed.digest }));
`,
      );
      const run = spawnSync(
        "node",
        [
          script,
          join(work, "node-store"),
          `${reg.host}/test/busybox:1`,
          `${reg.host}/test/from-node:1`,
          reg.host,
        ],
        { encoding: "utf8" },
      );
      expect(run.stderr).toBe("");
      const result = JSON.parse(run.stdout);
      expect(result.node).toMatch(/^v\d+/);
      expect(result.digest).toBe(busybox.manifestDigest);
      expect(result.pushed).toBe(busybox.manifestDigest);
      const [orig] = await src.ensureImageLayers(busybox);
      expect(treeListing(result.diffPath)).toEqual(treeListing(orig!.diffPath));
    });

    test("the CLI's pull, push, login and logout commands", async () => {
      // The commands write to fd 1 directly (src/cli/output.ts): each runs in a process of its
      // own, whose stdout is read here.
      const script = join(work, "cli.ts");
      writeFileSync(
        script,
        `const { registryCommand } = await import(${JSON.stringify(join(import.meta.dir, "../../src/cli/registry.ts"))});
         const { ImageStore } = await import(${JSON.stringify(join(import.meta.dir, "../../src/image/store.ts"))});
         const [command, store, ...args] = process.argv.slice(2);
         process.exitCode = await registryCommand(command, args, () => ImageStore.open(store));`,
      );
      const cli = (command: string, store: string, args: string[]) => {
        const r = spawnSync(process.execPath, [script, command, join(work, store), ...args], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
        });
        expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
        return r.stdout;
      };
      const authFile = join(work, "cli-auth.json");
      const common = [`--cert-dir=${join(work, "no-certs")}`, `--authfile=${authFile}`];
      const tls = "--tls-verify=false";
      const pushed = cli("push", "src", [
        tls,
        "-q",
        ...common,
        `${reg.host}/test/busybox:1`,
        `${reg.host}/cli/busybox:2`,
      ]);
      expect(pushed).toBe(`${busybox.manifestDigest}\n`);
      const ref = `${reg.host}/cli/busybox:2`;
      expect(cli("pull", "cli", [tls, "-q", ...common, ref])).toBe(`${ref}\n`);
      const cliStore = await ImageStore.open(join(work, "cli"));
      expect((await cliStore.resolve(ref)).id).toBe(busybox.id);
      // Without -q: the progress lines, then the reference, in that order on the same pipe.
      const lines = cli("pull", "cli-progress", [tls, ...common, ref])
        .trimEnd()
        .split("\n");
      expect(lines.length).toBeGreaterThan(2);
      expect(lines[0]).toContain("Pulling from cli/busybox");
      expect(lines.at(-1)).toBe(ref);
      expect(lines.slice(0, -1)).not.toContain(ref);
      // No authentication on this registry: login checks /v2/ and stores.
      expect(cli("login", "cli", [tls, "-u", "u", "-p", "p", ...common, reg.host])).toContain(
        `Login Succeeded (${reg.host}, credentials in ${authFile})`,
      );
      expect(cli("logout", "cli", [`--authfile=${authFile}`, reg.host])).toBe(
        `Removed login credentials for ${reg.host}\n`,
      );
      await expect(registryCommand("pull", [...common], async () => cliStore)).rejects.toThrow(
        /usage: pivot pull/,
      );
    });

    describe.skipIf(!haveSkopeo)("with skopeo", () => {
      const skopeo = (...args: string[]) =>
        execFileSync("skopeo", ["--insecure-policy", ...args], { encoding: "utf8", stdio: "pipe" });

      test("pushed by Pivot, copied by skopeo: same manifest and layers", async () => {
        await pushImage(src, `${reg.host}/test/busybox:1`, undefined, opts);
        const info = JSON.parse(
          skopeo("inspect", "--tls-verify=false", `docker://${reg.host}/test/busybox:1`),
        );
        expect(info.Digest).toBe(busybox.manifestDigest);
        expect(info.Layers).toEqual(busybox.layers.map((l) => l.descriptor.digest));
        skopeo(
          "copy",
          "-q",
          "--src-tls-verify=false",
          `docker://${reg.host}/test/busybox:1`,
          `oci:${join(work, "skopeo-oci")}:x`,
        );
        const index = JSON.parse(readFileSync(join(work, "skopeo-oci/index.json"), "utf8"));
        expect(index.manifests[0].digest).toBe(busybox.manifestDigest);
      });

      test("pushed by skopeo as Docker schema 2, pulled by Pivot", async () => {
        skopeo(
          "copy",
          "-q",
          "--dest-tls-verify=false",
          "--format",
          "v2s2",
          `oci:${src.root}:${reg.host}/test/busybox:1`,
          `docker://${reg.host}/skopeo/busybox:v2s2`,
        );
        const client = new RegistryClient(reg.host, opts);
        try {
          const m = await client.getManifest("skopeo/busybox", "v2s2");
          expect(m.mediaType).toBe(MediaType.dockerManifest);
        } finally {
          client.close();
        }
        const dst = await ImageStore.open(join(work, "from-skopeo"));
        const pulled = await pullImage(dst, `${reg.host}/skopeo/busybox:v2s2`, opts);
        expect(pulled.image.manifest.mediaType).toBe(MediaType.dockerManifest);
        const [l] = await dst.ensureImageLayers(pulled.image);
        const [orig] = await src.ensureImageLayers(busybox);
        expect(treeListing(l!.diffPath)).toEqual(treeListing(orig!.diffPath));
      });
    });
  },
);
