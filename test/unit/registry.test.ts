/**
 * The pure parts of the registry client: WWW-Authenticate parsing, platform
 * selection, manifest parsing, config.json credentials, progress rendering,
 * endpoint (TLS / insecure) resolution; and the store's streaming layer entry
 * point, fed by hand to show it unpacks while the stream is still arriving.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { DigestMismatchError, LayerUnpackError } from "../../src/image/errors.ts";
import type { ImageStore } from "../../src/image/store.ts";
import { type ImageIndex, MediaType } from "../../src/image/types.ts";
import {
  configKey,
  credentialFiles,
  decodeAuthEntry,
  describeCredentials,
  getCredentials,
  normalizeConfigKey,
  parseChallenges,
  removeCredentials,
  storeCredentials,
} from "../../src/registry/auth.ts";
import { resolveEndpoint } from "../../src/registry/hosts.ts";
import { parseRetryAfter } from "../../src/registry/http.ts";
import { normalizeRegistry } from "../../src/registry/login.ts";
import {
  ManifestFormatError,
  normalizePlatform,
  parseManifest,
  parsePlatform,
  selectManifest,
} from "../../src/registry/manifest.ts";
import { formatBytes, LineProgress, renderRow, TtyProgress } from "../../src/registry/progress.ts";
import { storeForEachTest } from "../fixtures/image-store.ts";
import { buildTar, sha256 } from "../fixtures/image-tar.ts";

describe("WWW-Authenticate challenges", () => {
  test("Bearer with realm, service, scope", () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
      ),
    ).toEqual([
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:library/busybox:pull",
        },
      },
    ]);
  });

  test("several challenges, commas inside quotes, escapes, unquoted values, odd spacing", () => {
    const got = parseChallenges(
      'Basic realm="Registry, the \\"best\\"" , Bearer realm=https://t.example/token ,service = reg, scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"',
    );
    expect(got).toEqual([
      { scheme: "basic", params: { realm: 'Registry, the "best"' } },
      {
        scheme: "bearer",
        params: {
          realm: "https://t.example/token",
          service: "reg",
          scope: "repository:a/b:pull,push repository:c:pull",
          error: "insufficient_scope",
        },
      },
    ]);
  });

  test("scheme case, a bare scheme, empty and junk input", () => {
    expect(parseChallenges("BASIC REALM=x")).toEqual([{ scheme: "basic", params: { realm: "x" } }]);
    expect(parseChallenges("Negotiate")).toEqual([{ scheme: "negotiate", params: {} }]);
    expect(parseChallenges("")).toEqual([]);
    expect(parseChallenges(',,, "x"')).toEqual([]);
  });

  test("Retry-After: seconds or an HTTP date", () => {
    expect(parseRetryAfter("120")).toBe(120);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    const inAMinute = new Date(Date.now() + 60_000).toUTCString();
    expect(parseRetryAfter(inAMinute)).toBeGreaterThanOrEqual(58);
  });
});

describe("platforms", () => {
  const index = (
    platforms: ({ os: string; architecture: string; variant?: string } | undefined)[],
    mediaType: string = MediaType.ociManifest,
  ): ImageIndex => ({
    schemaVersion: 2,
    manifests: platforms.map((platform, i) => ({
      mediaType,
      digest: `sha256:${String(i).repeat(64)}`,
      size: 100,
      ...(platform ? { platform } : {}),
    })),
  });

  test("parse and normalize", () => {
    expect(parsePlatform("linux/arm64")).toEqual({
      os: "linux",
      architecture: "arm64",
      variant: "v8",
    });
    expect(parsePlatform("linux/arm/v6")).toEqual({
      os: "linux",
      architecture: "arm",
      variant: "v6",
    });
    expect(parsePlatform("linux/x86_64")).toEqual({ os: "linux", architecture: "amd64" });
    expect(parsePlatform("arm")).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(normalizePlatform({ os: "linux", architecture: "aarch64", variant: "8" })).toEqual({
      os: "linux",
      architecture: "arm64",
      variant: "v8",
    });
    expect(() => parsePlatform("linux/")).toThrow(/OS\/ARCH/);
  });

  test("exact os/arch/variant; arm64 without variant is v8", () => {
    const idx = index([
      { os: "linux", architecture: "amd64" },
      { os: "linux", architecture: "arm", variant: "v6" },
      { os: "linux", architecture: "arm", variant: "v7" },
      { os: "linux", architecture: "arm64" },
      { os: "windows", architecture: "amd64" },
    ]);
    expect(selectManifest(idx, { os: "linux", architecture: "amd64" })?.digest).toBe(
      idx.manifests[0]!.digest,
    );
    expect(selectManifest(idx, { os: "linux", architecture: "arm", variant: "v7" })?.digest).toBe(
      idx.manifests[2]!.digest,
    );
    expect(selectManifest(idx, { os: "linux", architecture: "arm64", variant: "v8" })?.digest).toBe(
      idx.manifests[3]!.digest,
    );
    expect(selectManifest(idx, { os: "windows", architecture: "amd64" })?.digest).toBe(
      idx.manifests[4]!.digest,
    );
    expect(selectManifest(idx, { os: "linux", architecture: "s390x" })).toBeUndefined();
  });

  test("arm v7 runs v6 and v5 (the highest lower variant wins), not v8", () => {
    const idx = index([
      { os: "linux", architecture: "arm", variant: "v5" },
      { os: "linux", architecture: "arm", variant: "v6" },
    ]);
    expect(selectManifest(idx, { os: "linux", architecture: "arm", variant: "v7" })?.digest).toBe(
      idx.manifests[1]!.digest,
    );
    expect(selectManifest(idx, { os: "linux", architecture: "arm", variant: "v5" })?.digest).toBe(
      idx.manifests[0]!.digest,
    );
    const v8only = index([{ os: "linux", architecture: "arm", variant: "v8" }]);
    expect(
      selectManifest(v8only, { os: "linux", architecture: "arm", variant: "v7" }),
    ).toBeUndefined();
  });

  test("attestations and nested indexes are skipped; Docker manifest lists work the same", () => {
    const idx = index([
      { os: "unknown", architecture: "unknown" },
      { os: "linux", architecture: "amd64" },
    ]);
    expect(selectManifest(idx, { os: "linux", architecture: "amd64" })?.digest).toBe(
      idx.manifests[1]!.digest,
    );
    const nested = index([{ os: "linux", architecture: "amd64" }], MediaType.ociIndex);
    expect(selectManifest(nested, { os: "linux", architecture: "amd64" })).toBeUndefined();
    const docker = index([{ os: "linux", architecture: "amd64" }], MediaType.dockerManifest);
    expect(selectManifest(docker, { os: "linux", architecture: "amd64" })).toBeDefined();
  });
});

describe("manifest parsing", () => {
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.dockerManifest,
    config: { mediaType: MediaType.dockerConfig, digest: `sha256:${"a".repeat(64)}`, size: 10 },
    layers: [
      { mediaType: MediaType.dockerLayerGzip, digest: `sha256:${"b".repeat(64)}`, size: 20 },
    ],
  };

  test("media type from Content-Type, else from the document, else from its fields", () => {
    const data = Buffer.from(JSON.stringify(manifest));
    expect(parseManifest(data, `${MediaType.dockerManifest}; charset=utf-8`).kind).toBe("manifest");
    expect(parseManifest(data, "application/json").mediaType).toBe(MediaType.dockerManifest);
    const { mediaType: _, ...bare } = manifest;
    expect(parseManifest(Buffer.from(JSON.stringify(bare))).mediaType).toBe(MediaType.ociManifest);
    const list = { schemaVersion: 2, manifests: [] };
    expect(parseManifest(Buffer.from(JSON.stringify(list))).kind).toBe("index");
  });

  test("refused: schema 1, unknown types, contradictions, bad descriptors, not JSON", () => {
    const bad = (doc: unknown, ct?: string) => () =>
      parseManifest(Buffer.from(typeof doc === "string" ? doc : JSON.stringify(doc)), ct);
    expect(bad({ schemaVersion: 1, fsLayers: [] })).toThrow(/schema 1/);
    expect(bad(manifest, "application/vnd.example+json")).toThrow(/unknown manifest media type/);
    expect(bad(manifest, MediaType.ociManifest)).toThrow(/says .* but the document says/);
    expect(
      bad({ ...manifest, layers: [{ mediaType: "x", digest: "sha256:short", size: 1 }] }),
    ).toThrow(ManifestFormatError);
    expect(bad({ ...manifest, config: { ...manifest.config, size: -1 } })).toThrow(/valid size/);
    expect(bad("{nope")).toThrow(/not valid JSON/);
  });
});

describe("credentials in Docker's config.json format", () => {
  let dir: string;
  const env: Record<string, string | undefined> = {};
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pivot-creds-"));
    for (const k of ["DOCKER_CONFIG", "PIVOT_AUTH_FILE", "XDG_CONFIG_HOME"])
      env[k] = process.env[k];
    process.env.DOCKER_CONFIG = join(dir, "docker");
    process.env.PIVOT_AUTH_FILE = join(dir, "pivot", "auth.json");
    mkdirSync(join(dir, "docker"));
  });
  afterEach(async () => {
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(dir, { recursive: true, force: true });
  });

  test("keys: Docker Hub's historical URL, schemes and paths stripped", () => {
    expect(configKey("docker.io")).toBe("https://index.docker.io/v1/");
    expect(configKey("localhost:5000")).toBe("localhost:5000");
    expect(normalizeConfigKey("https://index.docker.io/v1/")).toBe("docker.io");
    expect(normalizeConfigKey("http://localhost:5000/v2/")).toBe("localhost:5000");
    expect(normalizeConfigKey("quay.io")).toBe("quay.io");
    expect(normalizeRegistry(undefined)).toBe("docker.io");
    expect(normalizeRegistry("https://registry-1.docker.io")).toBe("docker.io");
    expect(normalizeRegistry("localhost:5000")).toBe("localhost:5000");
  });

  test("auth, username/password and identitytoken entries", () => {
    expect(decodeAuthEntry({ auth: Buffer.from("a:b:c").toString("base64") })).toEqual({
      username: "a",
      password: "b:c",
    });
    expect(decodeAuthEntry({ username: "u", password: "p" })).toEqual({
      username: "u",
      password: "p",
    });
    expect(
      decodeAuthEntry({ identitytoken: "tok", auth: Buffer.from("<token>:").toString("base64") }),
    ).toEqual({
      username: "<token>",
      password: "",
      identityToken: "tok",
    });
    expect(decodeAuthEntry({})).toBeUndefined();
  });

  test("Pivot's file first, then $DOCKER_CONFIG/config.json; `tried` says where was looked", async () => {
    writeFileSync(
      join(dir, "docker", "config.json"),
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: Buffer.from("hub:pw").toString("base64") },
          "reg.example:5000": { auth: Buffer.from("docker:pw").toString("base64") },
        },
      }),
    );
    expect(credentialFiles()).toEqual([
      join(dir, "pivot", "auth.json"),
      join(dir, "docker", "config.json"),
    ]);
    const hub = await getCredentials("docker.io");
    expect(hub).toEqual({
      username: "hub",
      password: "pw",
      source: join(dir, "docker", "config.json"),
    });

    await storeCredentials("reg.example:5000", { username: "pivot", password: "pw2" });
    const saved = JSON.parse(readFileSync(join(dir, "pivot", "auth.json"), "utf8"));
    expect(saved.auths["reg.example:5000"].auth).toBe(Buffer.from("pivot:pw2").toString("base64"));
    expect((await getCredentials("reg.example:5000"))?.username).toBe("pivot");

    const tried: string[] = [];
    expect(await getCredentials("other.example", {}, tried)).toBeUndefined();
    expect(tried).toEqual([
      `${join(dir, "pivot", "auth.json")} (no entry for other.example)`,
      `${join(dir, "docker", "config.json")} (no entry for other.example)`,
    ]);
    expect(describeCredentials(undefined, tried)).toContain(
      "anonymous access (no credentials found in",
    );
    expect(describeCredentials(hub, [])).toBe(
      `user "hub" from ${join(dir, "docker", "config.json")}`,
    );

    expect(await removeCredentials("reg.example:5000")).toBe(true);
    expect((await getCredentials("reg.example:5000"))?.username).toBe("docker");
  });

  test("a credential helper that is not installed is reported, then the next file is read", async () => {
    writeFileSync(
      join(dir, "pivot-auth.json"),
      JSON.stringify({ credsStore: "pivot-test-missing-helper" }),
    );
    const tried: string[] = [];
    expect(
      await getCredentials("x.example", { authFile: join(dir, "pivot-auth.json") }, tried),
    ).toBeUndefined();
    expect(tried[0]).toContain("docker-credential-pivot-test-missing-helper");
  });

  test("a file that is not JSON is an error naming it", async () => {
    writeFileSync(join(dir, "bad.json"), "{");
    await expect(getCredentials("x.example", { authFile: join(dir, "bad.json") })).rejects.toThrow(
      /bad\.json is not valid JSON/,
    );
  });
});

describe("endpoints", () => {
  test("docker.io is served by registry-1.docker.io; HTTPS verified unless opted out", async () => {
    const none = { certsDirs: [], registriesConfig: "/dev/null/none" };
    const dir = await mkdtemp(join(tmpdir(), "pivot-ep-"));
    try {
      writeFileSync(
        join(dir, "registries.json"),
        JSON.stringify({ insecureRegistries: ["legacy:5000"] }),
      );
      const opts = {
        certsDirs: [join(dir, "certs.d")],
        registriesConfig: join(dir, "registries.json"),
      };
      const hub = await resolveEndpoint("docker.io", opts);
      expect(hub.apiHost).toBe("registry-1.docker.io");
      expect(hub.insecure).toBe(false);
      expect((await resolveEndpoint("legacy:5000", opts)).insecure).toBe(true);
      expect((await resolveEndpoint("other:5000", { ...opts, tlsVerify: false })).insecure).toBe(
        true,
      );
      expect(
        (await resolveEndpoint("other:5000", { ...opts, insecureRegistries: ["other:5000"] }))
          .insecure,
      ).toBe(true);
      await expect(resolveEndpoint("x", none)).rejects.toThrow();

      mkdirSync(join(dir, "certs.d", "reg:443"), { recursive: true });
      writeFileSync(
        join(dir, "certs.d", "reg:443", "ca.crt"),
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
      );
      writeFileSync(join(dir, "certs.d", "reg:443", "client.cert"), "cert");
      writeFileSync(join(dir, "certs.d", "reg:443", "client.key"), "key");
      const ep = await resolveEndpoint("reg:443", opts);
      expect(ep.ca?.at(-1)).toContain("BEGIN CERTIFICATE");
      expect(ep.ca!.length).toBeGreaterThan(1); // the system's roots stay trusted
      expect(ep.cert).toBe("cert");
      expect(ep.key).toBe("key");
      expect(ep.insecure).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("progress", () => {
  test("a bar like docker pull's", () => {
    expect(
      renderRow({ id: "abc", status: "Downloading", total: 2_000_000, current: 1_000_000 }, 80),
    ).toMatch(/^abc: Downloading \[=+> +\] 1\.00MB\/2\.00MB$/);
    expect(renderRow({ id: "abc", status: "Pull complete", total: 10, current: 10 })).toBe(
      "abc: Pull complete",
    );
    // A narrow terminal: the bar goes, the numbers stay, nothing wraps.
    const narrow = renderRow(
      { id: "abcdef123456", status: "Downloading", total: 2_000_000, current: 1_000_000 },
      40,
    );
    expect(narrow).toBe("abcdef123456: Downloading 1.00MB/2.00MB");
    expect(
      renderRow({ id: "abc", status: "Downloading", total: 2_000_000, current: 0 }, 200).length,
    ).toBeLessThan(200);
    expect(formatBytes(999)).toBe("999B");
    expect(formatBytes(1536)).toBe("1.54kB");
  });

  test("lines when not a terminal; redrawn bars on one", () => {
    let out = "";
    const sink = { write: (s: string) => (out += s) };
    const lines = new LineProgress(sink);
    lines.message("Pulling from x");
    lines.status("abc", "Downloading", 2000);
    lines.bytes();
    lines.status("abc", "Pull complete");
    expect(out).toBe("Pulling from x\nabc: Downloading (2.00kB)\nabc: Pull complete\n");

    out = "";
    const tty = new TtyProgress(sink, { intervalMs: 0 });
    tty.status("a", "Downloading", 100);
    tty.status("b", "Waiting");
    tty.message("hello");
    tty.close();
    expect(out).toContain("\x1b[2Ka: Downloading");
    expect(out).toContain("\x1b[2A\rhello\x1b[K\n"); // back over both bars, the message above them
  });
});

describe.skipIf(process.getuid?.() !== 0)("store: a layer unpacked while it streams", () => {
  let dir: string;
  let store: ImageStore;
  storeForEachTest("pivot-stream-", (s) => ({ dir, store } = s));

  const tar = buildTar([
    { name: "first", content: "1".repeat(100_000) },
    { name: "second", content: "2".repeat(100_000) },
  ]);
  const data = zlib.gzipSync(tar);

  test("the first file is on disk before the stream has ended", async () => {
    let sawFirst = false;
    const half = data.length >> 1;
    const source = async function* () {
      yield data.subarray(0, half);
      await new Promise((r) => setTimeout(r, 200));
      // The unpacker has had the first half: the first file is in the temporary layer dir.
      const temps = readdirSync(join(dir, "layers/sha256")).filter((n) => n.startsWith(".tmp"));
      sawFirst =
        temps.length === 1 && existsSync(join(dir, "layers/sha256", temps[0]!, "diff", "first"));
      yield data.subarray(half);
    };
    const layer = await store.putLayerStream(source(), {
      digest: sha256(data),
      size: data.length,
      diffId: sha256(tar),
      mediaType: MediaType.ociLayerGzip,
    });
    expect(sawFirst).toBe(true);
    expect(readFileSync(join(layer.diffPath, "second"), "utf8")).toBe("2".repeat(100_000));
    expect(readFileSync(store.blobPath(sha256(data))).equals(data)).toBe(true);
  });

  test("wrong size, wrong digest, hostile content: nothing kept, the right error", async () => {
    const put = (bytes: Buffer, size = data.length) =>
      store
        .putLayerStream(
          (async function* () {
            yield bytes;
          })(),
          {
            digest: sha256(data),
            size,
            diffId: sha256(tar),
          },
        )
        .catch((e: unknown) => e);
    expect(await put(Buffer.concat([data, Buffer.from("x")]))).toBeInstanceOf(DigestMismatchError);
    const flipped = Buffer.from(data);
    flipped[100] = flipped[100]! ^ 1;
    expect(await put(flipped)).toBeInstanceOf(DigestMismatchError);
    // Content that matches its digest but is not a valid layer: the unpacker's error.
    const junk = zlib.gzipSync(Buffer.from("not a tar archive, not at all".repeat(40)));
    const e = await store
      .putLayerStream(
        (async function* () {
          yield junk;
        })(),
        { digest: sha256(junk), size: junk.length, diffId: sha256(tar) },
      )
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(LayerUnpackError);
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
    expect(readdirSync(join(dir, "blobs/sha256"))).toEqual([]);
    expect(readdirSync(join(dir, "layers/sha256"))).toEqual([]);
  });
});
