/**
 * Error paths, resume and retries, against a faulty registry of the test
 * (test/fixtures/fake-registry.ts): truncated, corrupt and oversized
 * responses, wrong digests, unknown media types, 401/403/404/429/5xx,
 * blob redirects, chunked and retried uploads. After every failure the store
 * must hold nothing of the failed pull: no image, no blob, no layer, no
 * temporary file.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DigestMismatchError } from "../../src/image/errors.ts";
import { ImageStore } from "../../src/image/store.ts";
import { MediaType } from "../../src/image/types.ts";
import {
  ManifestTooLargeError,
  RateLimitError,
  RegistryAuthError,
  RegistryError,
  RegistryNotFoundError,
  TruncatedStreamError,
  UnsupportedMediaTypeError,
} from "../../src/registry/errors.ts";
import { pullImage } from "../../src/registry/pull.ts";
import { pushImage } from "../../src/registry/push.ts";
import { type FakeImage, FakeRegistry, makeFakeImage, sha256 } from "../fixtures/fake-registry.ts";
import { buildTestImage } from "../fixtures/image-build.ts";
import { buildTar } from "../fixtures/image-tar.ts";

const isRoot = process.getuid?.() === 0;

let work: string;
let fake: FakeRegistry;
let store: ImageStore;
let image: FakeImage;
const big = randomBytes(256 << 10);

function opts(extra: Record<string, unknown> = {}) {
  return {
    insecureRegistries: [fake.host],
    certsDirs: [join(work, "no-certs")],
    authFile: join(work, "auth.json"),
    retry: { retries: 3, baseDelayMs: 10, maxDelayMs: 50 },
    ...extra,
  };
}

/**
 * The store holds nothing of the failed pull: no image, no blob or layer of
 * `layers` (default all; layers finished before the failure may stay, they
 * are complete), no temporary file.
 */
async function expectEmpty(s: ImageStore, layers = image.layers): Promise<void> {
  expect(await s.listImages()).toEqual([]);
  expect(readdirSync(join(s.root, "tmp"))).toEqual([]);
  for (const l of layers) {
    expect(await s.hasBlob(l.digest)).toBe(false);
    expect(await s.hasLayer(l.diffId)).toBe(false);
  }
  expect(readdirSync(join(s.root, "layers/sha256")).filter((n) => n.startsWith(".tmp"))).toEqual(
    [],
  );
}

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "pivot-faults-"));
  fake = new FakeRegistry();
  await fake.start();
  image = makeFakeImage([
    buildTar([
      { name: "etc/", type: "dir" },
      { name: "etc/hello", content: "hello\n" },
    ]),
    buildTar([{ name: "big.bin", content: big }]),
  ]);
  fake.addImage("test/app", "1", image);
  store = await ImageStore.open(join(work, "store"));
});

afterEach(async () => {
  await fake.stop();
  await rm(work, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("registry faults", () => {
  test("a stream cut midway is resumed with a Range request", async () => {
    const layer = image.layers[1]!;
    fake.truncate = { digest: layer.digest, at: layer.data.length >> 1, times: 1 };
    const pulled = await pullImage(store, `${fake.host}/test/app:1`, opts());
    expect(pulled.manifestDigest).toBe(image.manifestDigest);
    const ranges = fake.requests.filter((r) => r.url.endsWith(layer.digest) && r.headers.range);
    expect(ranges.length).toBe(1);
    expect(ranges[0]!.headers.range).toMatch(/^bytes=\d+-$/);
    const [, l1] = await store.ensureImageLayers(pulled.image);
    expect(readFileSync(join(l1!.diffPath, "big.bin")).equals(big)).toBe(true);
  });

  test("a server that ignores Range: the part already read is skipped", async () => {
    const layer = image.layers[1]!;
    fake.truncate = { digest: layer.digest, at: layer.data.length >> 1, times: 1 };
    fake.ignoreRange = true;
    const pulled = await pullImage(store, `${fake.host}/test/app:1`, opts());
    const [, l1] = await store.ensureImageLayers(pulled.image);
    expect(readFileSync(join(l1!.diffPath, "big.bin")).equals(big)).toBe(true);
  });

  test("a stream that keeps breaking: TruncatedStreamError, nothing half-stored", async () => {
    const layer = image.layers[1]!;
    fake.truncate = { digest: layer.digest, at: 1000, times: 100 };
    const err = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TruncatedStreamError);
    expect((err as Error).message).toContain(
      `blob test/app@${layer.digest}: the stream ended after`,
    );
    expect((err as Error).message).toContain(`of ${layer.data.length} bytes`);
    await expectEmpty(store, [layer]);
  });

  test("a corrupt blob: digest mismatch, nothing stored", async () => {
    fake.corrupt = image.layers[1]!.digest;
    const err = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toContain(`expected ${image.layers[1]!.digest}`);
    expect((err as Error).message).toContain("layer 2/2");
    await expectEmpty(store, [image.layers[1]!]);
  });

  test("a manifest whose digest is not the one asked for", async () => {
    const other = makeFakeImage([buildTar([{ name: "x", content: "x" }])]);
    fake.manifestOverride = { body: other.manifest };
    const err = await pullImage(
      store,
      `${fake.host}/test/app@${image.manifestDigest}`,
      opts(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toContain(
      `expected ${image.manifestDigest}, got ${other.manifestDigest}`,
    );
    await expectEmpty(store);
  });

  test("a Docker-Content-Digest header that contradicts the manifest", async () => {
    fake.manifestOverride = { body: image.manifest, digestHeader: sha256(Buffer.from("other")) };
    const err = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toContain("Docker-Content-Digest");
  });

  test("an oversized manifest, announced or not", async () => {
    const huge = Buffer.alloc(5 << 20, 0x20);
    for (const chunked of [false, true]) {
      fake.manifestOverride = { body: huge, chunked };
      const err = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ManifestTooLargeError);
      expect((err as Error).message).toMatch(/(over|larger than) the limit of 4194304 bytes/);
    }
    await expectEmpty(store);
  });

  test("unknown media types: schema 1, an artifact config, a foreign layer type", async () => {
    fake.manifestOverride = {
      body: Buffer.from(JSON.stringify({ schemaVersion: 1, name: "x", tag: "1", fsLayers: [] })),
      contentType: "application/vnd.docker.distribution.manifest.v1+prettyjws",
    };
    const e1 = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(UnsupportedMediaTypeError);
    expect((e1 as Error).message).toContain(
      "application/vnd.docker.distribution.manifest.v1+prettyjws",
    );

    const m = JSON.parse(image.manifest.toString());
    m.config.mediaType = "application/vnd.cncf.helm.config.v1+json";
    fake.manifestOverride = { body: Buffer.from(JSON.stringify(m)) };
    const e2 = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(UnsupportedMediaTypeError);
    expect((e2 as Error).message).toContain("helm");

    const m3 = JSON.parse(image.manifest.toString());
    m3.layers[0].mediaType = "application/vnd.example.layer.v1.tar+xz";
    fake.manifestOverride = { body: Buffer.from(JSON.stringify(m3)) };
    const e3 = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(e3).toBeInstanceOf(UnsupportedMediaTypeError);
    await expectEmpty(store);
  });

  test("429 with a long Retry-After fails at once, saying how long to wait", async () => {
    fake.statusFaults.push({ match: /manifests/, status: 429, headers: { "retry-after": "120" } });
    const t0 = Date.now();
    const err = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).retryAfter).toBe(120);
    expect((err as Error).message).toContain("retry after 120 s");
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test("429 with a short Retry-After, 503 and 500: retried, the pull succeeds", async () => {
    fake.statusFaults.push(
      { match: /^GET .*manifests/, status: 429, headers: { "retry-after": "1" }, times: 1 },
      { match: /^GET .*blobs\/sha256/, status: 503, times: 1 },
      { match: /^GET .*blobs\/sha256/, status: 500, times: 1 },
    );
    const pulled = await pullImage(store, `${fake.host}/test/app:1`, opts());
    expect(pulled.manifestDigest).toBe(image.manifestDigest);
  });

  test("401 and 403 name the credentials tried; 404 names reference and registry", async () => {
    fake.basicAuth = { user: "u", password: "p" };
    const e1 = await pullImage(store, `${fake.host}/test/app:1`, opts()).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(RegistryAuthError);
    expect((e1 as Error).message).toContain("HTTP 401");
    expect((e1 as Error).message).toContain("anonymous access");

    fake.basicAuth = undefined;
    fake.statusFaults.push({ match: /manifests/, status: 403, times: 2 });
    const e2 = await pullImage(
      store,
      `${fake.host}/test/app:1`,
      opts({ credentials: { username: "u", password: "p" } }),
    ).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(RegistryAuthError);
    expect((e2 as Error).message).toContain("denied by");
    expect((e2 as Error).message).toContain('user "u" from the credentials given');

    const e3 = await pullImage(store, `${fake.host}/test/nope:1`, opts()).catch((e: unknown) => e);
    expect(e3).toBeInstanceOf(RegistryNotFoundError);
    expect((e3 as Error).message).toContain(
      `${fake.host}/test/nope:1 not found in registry ${fake.host}`,
    );
    await expectEmpty(store);
  });

  test("blobs redirected to another server: followed, without the registry's credentials", async () => {
    const storage = new FakeRegistry();
    await storage.start();
    try {
      for (const [d, data] of fake.blobs) storage.blobs.set(d, data);
      fake.redirectBlobsTo = `http://${storage.host}`;
      fake.basicAuth = { user: "u", password: "p" };
      const pulled = await pullImage(
        store,
        `${fake.host}/test/app:1`,
        opts({ credentials: { username: "u", password: "p" } }),
      );
      expect(pulled.manifestDigest).toBe(image.manifestDigest);
      expect(storage.requests.length).toBe(3); // config and two layers
      expect(storage.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
    } finally {
      await storage.stop();
    }
  });

  test("an upload location on another server gets no credentials", async () => {
    const elsewhere = new FakeRegistry();
    await elsewhere.start();
    try {
      const src = await ImageStore.open(join(work, "src"));
      await buildTestImage(src, [buildTar([{ name: "p", content: "x" }])], {
        refs: [`${fake.host}/push/app:1`],
      });
      fake.basicAuth = { user: "u", password: "p" };
      fake.uploadLocationBase = `http://${elsewhere.host}`;
      // The other server knows no such upload: the push fails, naming it (the config and the
      // layer upload side by side: which one's id comes first varies).
      await expect(
        pushImage(
          src,
          `${fake.host}/push/app:1`,
          undefined,
          opts({ credentials: { username: "u", password: "p" } }),
        ),
      ).rejects.toThrow(/upload\/\d+.* not found/);
      expect(elsewhere.requests.length).toBeGreaterThan(0);
      expect(elsewhere.requests.map((r) => r.headers.authorization)).toEqual(
        elsewhere.requests.map(() => undefined),
      );
    } finally {
      await elsewhere.stop();
    }
  });

  test("push: monolithic PUT, or PATCH chunks with Content-Range; a failed upload starts over", async () => {
    const src = await ImageStore.open(join(work, "src"));
    const payload = randomBytes(10_000);
    const img = await buildTestImage(src, [buildTar([{ name: "p", content: payload }])], {
      refs: [`${fake.host}/push/app:1`],
    });
    const layer = img.layers[0]!.descriptor;
    fake.statusFaults.push({ match: /^PATCH \/upload/, status: 500, times: 1 });
    const r = await pushImage(src, `${fake.host}/push/app:1`, undefined, opts({ chunkSize: 4096 }));
    expect(r.digest).toBe(img.manifestDigest);
    const patches = fake.requests.filter((q) => q.method === "PATCH");
    // One failed PATCH, then ceil(size/4096) chunks in a new session.
    const chunks = Math.ceil(layer.size / 4096);
    expect(patches.length).toBe(1 + chunks);
    expect(patches.slice(1).map((p) => p.headers["content-range"])).toEqual(
      Array.from(
        { length: chunks },
        (_, i) => `${i * 4096}-${Math.min(layer.size, (i + 1) * 4096) - 1}`,
      ),
    );
    expect(fake.requests.some((q) => q.method === "DELETE")).toBe(true);
    expect(fake.blobs.get(layer.digest)?.length).toBe(layer.size);
    // The config (small) went in one PUT with its body.
    const config = img.manifest.config;
    const puts = fake.requests.filter(
      (q) => q.method === "PUT" && q.url.includes(encodeURIComponent(config.digest)),
    );
    expect(puts.length).toBe(1);
    expect(puts[0]!.bodyLength).toBe(config.size);
    expect(
      fake.manifests.get("push/app:1")?.data.equals(await src.readBlob(img.manifestDigest)),
    ).toBe(true);
    expect(fake.manifests.get("push/app:1")?.mediaType).toBe(MediaType.ociManifest);

    // Pushed again: every blob exists (HEAD), nothing uploaded.
    const before = fake.requests.length;
    const again = await pushImage(src, `${fake.host}/push/app:1`, undefined, opts());
    expect(again.blobs.map((b) => b.status)).toEqual(["exists", "exists"]);
    expect(
      fake.requests.slice(before).filter((q) => q.method === "POST" || q.method === "PATCH"),
    ).toEqual([]);
  });

  test("a registry that is not one: a clear error", async () => {
    fake.statusFaults.push({ match: /^GET \/v2\/$/, status: 500, body: "oops" });
    const err = await pullImage(
      store,
      `${fake.host}/test/app:1`,
      opts({ retry: { retries: 0 } }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toContain("answered GET /v2/ with HTTP 500");
  });
});
