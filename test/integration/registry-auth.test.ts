/**
 * Authentication and TLS against the real registry: docker-registry with a
 * certificate from a CA the test makes and htpasswd (Basic) auth; and
 * docker-registry with token auth, a token server of the test issuing JWTs
 * (the Bearer flow from the WWW-Authenticate challenge: realm, service, scope).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importRootfs } from "../../src/image/create.ts";
import { ImageStore, type StoredImage } from "../../src/image/store.ts";
import { RegistryAuthError, RegistryConnectionError } from "../../src/registry/errors.ts";
import { login, logout } from "../../src/registry/login.ts";
import { pullImage } from "../../src/registry/pull.ts";
import { pushImage } from "../../src/registry/push.ts";
import {
  haveHtpasswd,
  haveOpenssl,
  haveRegistry,
  makeHtpasswd,
  makeTlsMaterial,
  startRegistry,
  startTokenServer,
  type TestRegistry,
  type TokenServer,
} from "../fixtures/registry.ts";

const isRoot = process.getuid?.() === 0;
const usable = haveRegistry && haveOpenssl && isRoot;

let work: string;
let src: StoredImage;
let store: ImageStore;

async function setup(prefix: string) {
  work = await mkdtemp(join(tmpdir(), prefix));
  execFileSync(join(import.meta.dir, "../../scripts/make-busybox-rootfs.sh"), [
    join(work, "rootfs"),
  ]);
  execFileSync("tar", ["-C", join(work, "rootfs"), "-czf", join(work, "rootfs.tar.gz"), "."]);
  store = await ImageStore.open(join(work, "src"));
  src = await importRootfs(store, join(work, "rootfs.tar.gz"));
}

describe.skipIf(!usable || !haveHtpasswd)("registry with TLS (a test CA) and htpasswd", () => {
  let reg: TestRegistry;
  let certsDir: string;
  let authFile: string;

  beforeAll(async () => {
    await setup("pivot-registry-tls-");
    const tls = makeTlsMaterial(work);
    makeHtpasswd(join(work, "htpasswd"), "alice", "s3cret");
    reg = await startRegistry(join(work), {
      tls: { certificate: tls.cert, key: tls.key },
      htpasswd: join(work, "htpasswd"),
    });
    certsDir = join(work, "certs.d");
    mkdirSync(join(certsDir, reg.host), { recursive: true });
    await copyFile(tls.ca, join(certsDir, reg.host, "ca.crt"));
    authFile = join(work, "auth.json");
    await store.tag(src.id, `${reg.host}/team/busybox:1`);
  });

  afterAll(async () => {
    await reg?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test("an untrusted certificate is refused, with the certs.d directory to use", async () => {
    const err = await pushImage(store, `${reg.host}/team/busybox:1`, undefined, {
      certsDirs: [join(work, "empty-certs.d")],
      authFile,
      retry: { retries: 0 },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryConnectionError);
    expect((err as Error).message).toContain(`certs.d/${reg.host}/ca.crt`);
  });

  test("without credentials: 401 says anonymous access and where credentials were looked for", async () => {
    const err = await pushImage(store, `${reg.host}/team/busybox:1`, undefined, {
      certsDirs: [certsDir],
      authFile,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    const msg = (err as Error).message;
    expect(msg).toContain("HTTP 401");
    expect(msg).toContain(`anonymous access (no credentials found in ${authFile} (missing))`);
    expect(msg).toContain(`pivot login ${reg.host}`);
  });

  test("login with a wrong password fails naming the user; nothing is stored", async () => {
    const err = await login(
      reg.host,
      { username: "alice", password: "wrong" },
      {
        certsDirs: [certsDir],
        authFile,
      },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain('user "alice" from the credentials given');
    expect(() => readFileSync(authFile)).toThrow();
  });

  test("login stores Docker config.json credentials; push and pull use them; logout removes them", async () => {
    const where = await login(
      reg.host,
      { username: "alice", password: "s3cret" },
      {
        certsDirs: [certsDir],
        authFile,
      },
    );
    expect(where).toBe(authFile);
    const saved = JSON.parse(readFileSync(authFile, "utf8"));
    expect(saved.auths[reg.host].auth).toBe(Buffer.from("alice:s3cret").toString("base64"));

    const pushed = await pushImage(store, `${reg.host}/team/busybox:1`, undefined, {
      certsDirs: [certsDir],
      authFile,
    });
    expect(pushed.digest).toBe(src.manifestDigest);
    const dst = await ImageStore.open(join(work, "dst"));
    const pulled = await pullImage(dst, `${reg.host}/team/busybox:1`, {
      certsDirs: [certsDir],
      authFile,
    });
    expect(pulled.image.id).toBe(src.id);

    expect(await logout(reg.host, { authFile })).toBe(true);
    expect(JSON.parse(readFileSync(authFile, "utf8")).auths[reg.host]).toBeUndefined();
    expect(await logout(reg.host, { authFile })).toBe(false);
  });

  test("tlsVerify=false: HTTPS without verification, by explicit choice", async () => {
    const dst = await ImageStore.open(join(work, "noverify"));
    const pulled = await pullImage(dst, `${reg.host}/team/busybox:1`, {
      certsDirs: [join(work, "empty-certs.d")],
      tlsVerify: false,
      credentials: { username: "alice", password: "s3cret" },
    });
    expect(pulled.image.id).toBe(src.id);
  });

  test("a wrong password in the auth file: the error names the user and the file", async () => {
    writeFileSync(
      authFile,
      JSON.stringify({
        auths: { [`https://${reg.host}`]: { auth: Buffer.from("alice:nope").toString("base64") } },
      }),
    );
    const dst = await ImageStore.open(join(work, "wrong"));
    const err = await pullImage(dst, `${reg.host}/team/busybox:1`, {
      certsDirs: [certsDir],
      authFile,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain(`user "alice" from ${authFile}`);
    expect(await dst.listImages()).toEqual([]);
    expect(await readdir(join(dst.root, "blobs/sha256"))).toEqual([]);
  });
});

describe.skipIf(!usable)("registry with token auth (Bearer)", () => {
  let reg: TestRegistry;
  let tokens: TokenServer;
  let dockerConfigDir: string;
  const opts = () => ({ insecureRegistries: [reg.host], certsDirs: [join(work, "no-certs")] });

  beforeAll(async () => {
    await setup("pivot-registry-token-");
    tokens = await startTokenServer(work, { bob: "hunter2" });
    reg = await startRegistry(join(work), {
      token: {
        realm: tokens.realm,
        service: tokens.service,
        issuer: tokens.issuer,
        rootcertbundle: tokens.certPath,
      },
    });
    // Credentials as `docker login` writes them, found through $DOCKER_CONFIG.
    dockerConfigDir = join(work, "docker");
    mkdirSync(dockerConfigDir);
    writeFileSync(
      join(dockerConfigDir, "config.json"),
      JSON.stringify({
        auths: { [reg.host]: { auth: Buffer.from("bob:hunter2").toString("base64") } },
      }),
    );
    await store.tag(src.id, `${reg.host}/public/busybox:1`);
    await store.tag(src.id, `${reg.host}/private/busybox:1`);
  });

  afterAll(async () => {
    await reg?.stop();
    await tokens?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test("anonymous push is refused: the token has no push access", async () => {
    const err = await pushImage(store, `${reg.host}/public/busybox:1`, undefined, {
      ...opts(),
      authFile: join(work, "none.json"),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain("anonymous access");
    const last = tokens.requests.at(-1)!;
    expect(last.authorization).toBeUndefined();
    expect(last.scopes).toContain("repository:public/busybox:pull,push");
  });

  test("credentials from $DOCKER_CONFIG: Bearer tokens per scope, push and pull", async () => {
    const saved = process.env.DOCKER_CONFIG;
    const savedPivot = process.env.PIVOT_AUTH_FILE;
    process.env.DOCKER_CONFIG = dockerConfigDir;
    process.env.PIVOT_AUTH_FILE = join(work, "pivot-auth-missing.json");
    try {
      for (const repo of ["public", "private"]) {
        const pushed = await pushImage(store, `${reg.host}/${repo}/busybox:1`, undefined, opts());
        expect(pushed.digest).toBe(src.manifestDigest);
      }
      const bobs = tokens.requests.filter((r) => r.account === "bob");
      expect(bobs.some((r) => r.scopes.includes("repository:private/busybox:pull,push"))).toBe(
        true,
      );
      const dst = await ImageStore.open(join(work, "dst-private"));
      const pulled = await pullImage(dst, `${reg.host}/private/busybox:1`, opts());
      expect(pulled.image.id).toBe(src.id);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
      if (savedPivot === undefined) delete process.env.PIVOT_AUTH_FILE;
      else process.env.PIVOT_AUTH_FILE = savedPivot;
    }
  });

  test("anonymous pull: allowed for public/, refused for private/ naming what was tried", async () => {
    const none = { ...opts(), authFile: join(work, "none.json") };
    const dst = await ImageStore.open(join(work, "dst-anon"));
    const pulled = await pullImage(dst, `${reg.host}/public/busybox:1`, none);
    expect(pulled.image.id).toBe(src.id);
    const err = await pullImage(dst, `${reg.host}/private/busybox:1`, none).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain(
      `anonymous access (no credentials found in ${join(work, "none.json")} (missing))`,
    );
  });

  test("wrong credentials: the token server's 401 names the user", async () => {
    const dst = await ImageStore.open(join(work, "dst-wrong"));
    const err = await pullImage(dst, `${reg.host}/private/busybox:1`, {
      ...opts(),
      credentials: { username: "bob", password: "wrong" },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain('user "bob" from the credentials given');
    expect((err as Error).message).toContain("wrong user name or password");
  });

  test("login against the token server; then the auth file is enough", async () => {
    const authFile = join(work, "pivot-auth.json");
    await login(reg.host, { username: "bob", password: "hunter2" }, { ...opts(), authFile });
    const dst = await ImageStore.open(join(work, "dst-login"));
    const pulled = await pullImage(dst, `${reg.host}/private/busybox:1`, { ...opts(), authFile });
    expect(pulled.image.id).toBe(src.id);
    const err = await login(
      reg.host,
      { username: "bob", password: "nope" },
      { ...opts(), authFile },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
  });
});
