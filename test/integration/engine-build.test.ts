// `pivot build`: Dockerfiles built with real containers from the busybox test image, through the
// CLI and the library; what a failed or cancelled build leaves (nothing), and a hostile build
// context (paths and symlinks out of it).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDeadBuilds } from "../../src/engine/build/leftovers.ts";
import { pruneImages } from "../../src/engine/images.ts";
import {
  BUILD_RUN_LABEL,
  newBuildRun,
  removeBuildRun,
  writeBuildRun,
} from "../../src/image/build-runs.ts";
import { buildContext } from "../fixtures/build-context.ts";
import {
  IMAGE,
  makeTestEngine,
  mountsUnder,
  runCollect,
  type TestEngine,
} from "../fixtures/engine.ts";
import { hostState, makeNetworkTestEngine } from "../fixtures/network.ts";
import { BUN, isRoot, PIVOT_CLI, pivotCli } from "../helpers.ts";

let t: TestEngine;
/** Build contexts and a host directory outside them, removed at the end. */
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-build-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const cli = (args: string[], timeoutMs = 120_000) => pivotCli(t.root, args, { timeoutMs });

/** A build context directory with FILES (path → content) under the scratch directory. */
const context = (name: string, files: Record<string, string>) => buildContext(scratch, name, files);

/** The images in the store, by short id and names. */
async function imageNames(): Promise<string[]> {
  const images = await (await t.engine.images()).listImages();
  return images.map((i) => (i.names.length ? i.names.join(",") : i.id)).sort();
}

/** What a build must leave behind: no container, mount, temp dir or image but the fixtures' (and KEEP). */
async function expectNothingLeft(keep: string[] = []): Promise<void> {
  expect(await t.engine.list({ all: true })).toEqual([]);
  expect(mountsUnder(t.root)).toEqual([]);
  expect(readdirSync(join(t.root, "tmp")).filter((n) => !n.startsWith("."))).toEqual([]);
  expect(await imageNames()).toEqual(
    ["localhost/busybox:configured", "localhost/busybox:test", ...keep].sort(),
  );
}

// Each test starts from the fixtures' two images, whatever the one before left when it failed.
afterEach(async () => {
  if (!t) return;
  for (const c of await t.engine.list({ all: true }))
    await t.engine.remove(c.id, { force: true }).catch(() => {});
  const store = await t.engine.images();
  for (const image of await store.listImages()) {
    if (image.names.some((n) => n.includes("localhost/busybox:"))) continue;
    await store.removeManifest(image.manifestDigest).catch(() => {});
  }
});

describe.skipIf(!isRoot)("pivot build", () => {
  test("FROM ARG ENV WORKDIR COPY RUN USER CMD LABEL EXPOSE: the image runs with its files, env, workdir, user and command", async () => {
    const dir = context("app", {
      "hello.txt": "hello from the context\n",
      "src/main.sh": "echo main\n",
      "src/sub/data": "data\n",
      "src/notes.md": "left out by .dockerignore\n",
      ".dockerignore": "**/*.md\n",
      Dockerfile: `# a comment
ARG BASE=${IMAGE}
FROM \${BASE}
ARG GREETING="hi there"
ARG UNUSED
ENV APP_HOME=/srv/app \\
    MODE="prod mode"
WORKDIR $APP_HOME
COPY hello.txt ./
COPY src \${APP_HOME}/src/
RUN echo "$GREETING in $MODE" > greeting && chown -R nobody /srv/app && ls src > listing
USER nobody
LABEL org.example.built="by pivot" version=1
EXPOSE 8080 53/udp
CMD ["sh", "-c", "echo \\"$(cat greeting)|$(cat hello.txt)|$(pwd)|$(id -u):$(id -g)|$APP_HOME|$(cat listing | tr '\\\\n' ,)|$GREETING\\""]
`,
    });
    const r = cli([
      "build",
      "-t",
      "localhost/app:1",
      "--build-arg",
      "GREETING=bonjour",
      "--network",
      "none",
      dir,
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("Step 1/13 : ARG BASE=localhost/busybox:test");
    expect(lines).toContain(
      'Step 9/13 : RUN echo "$GREETING in $MODE" > greeting && chown -R nobody /srv/app && ls src > listing',
    );
    expect(lines.some((l) => /^ ---> Running in [0-9a-f]{12}$/.test(l))).toBe(true);
    const built = /^Successfully built ([0-9a-f]{12})$/m.exec(r.stdout);
    expect(built).not.toBeNull();
    expect(lines).toContain("Successfully tagged localhost/app:1");
    // Every step ends with the image it made.
    expect(lines.filter((l) => /^ ---> [0-9a-f]{12}$/.test(l))).toHaveLength(12);

    const run = cli(["run", "--rm", "localhost/app:1"]);
    expect(run.stderr).toBe("");
    // ARGs are in RUN's environment, not in the image's.
    expect(run.stdout).toBe(
      "bonjour in prod mode|hello from the context|/srv/app|65534:65534|/srv/app|main.sh,sub,|\n",
    );

    const image = await (await t.engine.images()).resolve("localhost/app:1");
    expect(image.id.slice(7, 19)).toBe(built![1]!);
    const config = image.config.config!;
    expect(config.Env).toEqual([
      "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
      "APP_HOME=/srv/app",
      "MODE=prod mode",
    ]);
    expect(config.WorkingDir).toBe("/srv/app");
    expect(config.User).toBe("nobody");
    expect(config.Labels).toEqual({ "org.example.built": "by pivot", version: "1" });
    expect(config.ExposedPorts).toEqual({ "8080/tcp": {}, "53/udp": {} });
    expect(config.Cmd?.[0]).toBe("sh");

    // History: one row per instruction after FROM; config-only ones made no layer.
    const rows = (image.config.history ?? [])
      .slice(1)
      .map((h) => [h.created_by, h.empty_layer === true]);
    expect(rows).toEqual([
      ['/bin/sh -c #(nop)  ARG GREETING="hi there"', true],
      ["/bin/sh -c #(nop)  ARG UNUSED", true],
      ['/bin/sh -c #(nop)  ENV APP_HOME=/srv/app MODE="prod mode"', true],
      ["/bin/sh -c #(nop) WORKDIR /srv/app", false],
      [
        expect.stringMatching(/^\/bin\/sh -c #\(nop\) COPY file:[0-9a-f]{64} in \/srv\/app\/ $/),
        false,
      ],
      [
        expect.stringMatching(
          /^\/bin\/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in \/srv\/app\/src\/ $/,
        ),
        false,
      ],
      [
        '|1 GREETING=bonjour /bin/sh -c echo "$GREETING in $MODE" > greeting && chown -R nobody /srv/app && ls src > listing',
        false,
      ],
      ["/bin/sh -c #(nop)  USER nobody", true],
      ['/bin/sh -c #(nop)  LABEL org.example.built="by pivot" version=1', true],
      ["/bin/sh -c #(nop)  EXPOSE 8080 53/udp", true],
      [expect.stringMatching(/^\/bin\/sh -c #\(nop\) {2}CMD \["sh"/), true],
    ]);
    expect(image.layers).toHaveLength(5);
    const history = cli(["history", "--no-trunc", "localhost/app:1"]);
    expect(history.status).toBe(0);
    expect(history.stdout).toMatch(/\/bin\/sh -c #\(nop\) +USER nobody/);

    // Only the result stays: the intermediate images and containers are gone.
    await expectNothingLeft(["localhost/app:1"]);
    expect(cli(["rmi", "localhost/app:1"]).status).toBe(0);
  }, 180_000);

  test("a failing RUN fails the build with Docker's message and leaves nothing behind", async () => {
    const dir = context("fails", {
      "f.txt": "x\n",
      Dockerfile: `FROM ${IMAGE}\nCOPY f.txt /f.txt\nRUN echo before-failing && exit 3\nCMD ["true"]\n`,
    });
    const r = cli(["build", "-t", "localhost/fails:1", "--network", "none", dir]);
    // docker build's exit code for a failed build.
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("before-failing");
    expect(r.stderr).toContain(
      "The command '/bin/sh -c echo before-failing && exit 3' returned a non-zero code: 3",
    );
    expect(cli(["ps", "-a", "-q"]).stdout).toBe("");
    expect(cli(["images", "-q"]).stdout.trim().split("\n")).toHaveLength(2);
    await expectNothingLeft();
  }, 120_000);

  test("the library: Engine.build returns the image; -q prints only its id; -f - reads stdin", async () => {
    const dir = context("lib", {
      Dockerfile: `FROM ${IMAGE}\nRUN mkdir /made && echo "ran via $http_proxy" > /made/it\nENTRYPOINT ["cat"]\nCMD ["/made/it"]\n`,
    });
    const out: string[] = [];
    const image = await t.engine.build({
      context: dir,
      tag: "localhost/lib:1",
      network: "none",
      // Docker's predefined proxy args: in RUN's environment without an ARG, not in the history.
      buildArgs: { http_proxy: "http://proxy.invalid:3128" },
      onOutput: (s) => out.push(s),
    });
    expect(out.join("")).toContain(`Successfully built ${image.id.slice(7, 19)}`);
    expect(out.join("")).not.toContain("[Warning]");
    expect(image.config.config?.Entrypoint).toEqual(["cat"]);
    expect(JSON.stringify(image.config)).not.toContain("proxy.invalid");
    const r = await runCollect(t.engine, { image: "localhost/lib:1", autoRemove: true });
    expect(r.stdout).toBe("ran via http://proxy.invalid:3128\n");

    // The Dockerfile from stdin (-f -), as docker's; its RUN's build args in the history sorted
    // as Docker's (|2 ALPHA=a ZED=z), not in their declaration order.
    const q = pivotCli(t.root, ["build", "-q", "--network", "none", "-f", "-", dir], {
      input: `FROM ${IMAGE}\nARG ZED=z\nARG ALPHA=a\nRUN echo from-stdin > /it\n`,
      timeoutMs: 120_000,
    });
    expect(q.status).toBe(0);
    expect(q.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    // Untagged, as docker's: dangling until tagged or pruned.
    const untagged = await (await t.engine.images()).resolve(q.stdout.trim());
    expect(untagged.names).toEqual([]);
    expect(untagged.config.history?.at(-1)?.created_by).toBe(
      "|2 ALPHA=a ZED=z /bin/sh -c echo from-stdin > /it",
    );
    await (await t.engine.images()).removeManifest(untagged.manifestDigest);
    expect(cli(["rmi", "localhost/lib:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("ADD extracts a local tar archive; COPY --chown, wildcards and the JSON form; SHELL; ENTRYPOINT drops the base CMD", async () => {
    const dir = context("add", {
      "a.conf": "a\n",
      "b.conf": "b\n",
      "c.txt": "c\n",
      "with space.txt": "spaced\n",
      "payload/inner/file": "inside the archive\n",
    });
    const tar = spawnSync("tar", [
      "-C",
      join(dir, "payload"),
      "-czf",
      join(dir, "payload.tar.gz"),
      ".",
    ]);
    expect(tar.status).toBe(0);
    rmSync(join(dir, "payload"), { recursive: true });
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${IMAGE}
ADD payload.tar.gz /opt/
COPY --chown=nobody:nogroup *.conf /etc/app/
ARG NAME="with space.txt"
COPY ["$NAME", "/spaced/"]
SHELL ["/bin/sh", "-e", "-c"]
RUN test "$(stat -c %U:%G /etc/app/a.conf)" = nobody:nogroup && cat /opt/inner/file /etc/app/*.conf "/spaced/with space.txt" > /all
ENTRYPOINT ["cat"]
`,
    );
    const r = cli(["build", "-t", "localhost/add:1", "--network", "none", dir]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const image = await (await t.engine.images()).resolve("localhost/add:1");
    // ENTRYPOINT without a CMD of this Dockerfile drops the base image's ["sh"].
    expect(image.config.config?.Cmd ?? null).toBeNull();
    const run = await runCollect(t.engine, {
      image: "localhost/add:1",
      cmd: ["/all"],
      autoRemove: true,
    });
    expect(run.stdout).toBe("inside the archive\na\nb\nspaced\n");
    expect(run.stderr).toBe("");
  }, 120_000);

  test("multi-stage: COPY --from a stage by name and index, FROM an earlier stage, --target", async () => {
    const dir = context("stages", {
      Dockerfile: `ARG WHO=builder
FROM ${IMAGE} AS build
ARG WHO
RUN mkdir -p /out/sub && echo "made by $WHO" > /out/artifact && echo deep > /out/sub/f && ln -s /etc/passwd /out/link
FROM build AS test
RUN test -f /out/artifact && echo tested > /tested
FROM ${IMAGE}
COPY --from=build /out/ /app/
COPY --from=1 /tested /app/tested
COPY --from=${IMAGE} /bin/busybox /app/busybox-copy
CMD ["sh", "-c", "cat /app/artifact /app/sub/f /app/tested; readlink /app/link; ls /out 2>&1 | head -1"]
`,
    });
    const r = cli(["build", "-t", "localhost/stages:1", "--network", "none", dir]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const run = cli(["run", "--rm", "localhost/stages:1"]);
    expect(run.stdout).toBe(
      "made by builder\ndeep\ntested\n/etc/passwd\nls: /out: No such file or directory\n",
    );
    const image = await (await t.engine.images()).resolve("localhost/stages:1");
    // The last stage's layers only: busybox's and its three COPYs.
    expect(image.layers).toHaveLength(4);
    // Only the result stays: the other stages' images went with the intermediate ones.
    await expectNothingLeft(["localhost/stages:1"]);

    const target = cli(["build", "-q", "--target", "build", "--network", "none", dir]);
    expect(target.status).toBe(0);
    const built = await (await t.engine.images()).resolve(target.stdout.trim());
    expect(built.layers).toHaveLength(2);
    expect(built.config.history?.at(-1)?.created_by).toContain("/bin/sh -c mkdir -p /out/sub");
  }, 120_000);

  test("COPY cannot read outside the context: ../ is refused, symlinks out are copied as links or resolved inside", async () => {
    const outside = join(scratch, "outside");
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, "secret"), "TOP-SECRET\n");
    const dir = context("hostile", { "ok.txt": "ok\n" });
    symlinkSync(join(outside, "secret"), join(dir, "evil"));
    symlinkSync(outside, join(dir, "outdir"));
    symlinkSync("../outside", join(dir, "updir"));
    mkdirSync(join(dir, "tree"));
    symlinkSync(join(outside, "secret"), join(dir, "tree", "evil"));
    const build = (name: string, dockerfile: string) => {
      writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE}\n${dockerfile}`);
      return cli(["build", "-t", `localhost/${name}:1`, "--network", "none", dir]);
    };

    const up = build("up", "COPY ../outside/secret /secret\n");
    expect(up.status).not.toBe(0);
    expect(up.stderr).toContain("forbidden path outside the build context: ../outside/secret");
    for (const source of ["outdir/secret", "updir/secret", "outdir/*"]) {
      const r = build("through", `COPY ${source} /got/\n`);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`${source}: no such file or directory in the build context`);
    }

    // The links themselves are copied, as links: the secret is not.
    const links = build(
      "links",
      'COPY evil ok.txt /got/\nCOPY tree /tree/\nCMD ["sh", "-c", "readlink /got/evil; readlink /tree/evil; cat /got/evil /tree/evil; cat /got/ok.txt"]\n',
    );
    expect(links.stderr).toBe("");
    expect(links.status).toBe(0);
    const run = await runCollect(t.engine, { image: "localhost/links:1", autoRemove: true });
    expect(run.stdout).toBe(`${join(outside, "secret")}\n${join(outside, "secret")}\nok\n`);
    expect(run.stdout + run.stderr).not.toContain("TOP-SECRET");
    expect(cli(["rmi", "localhost/links:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("the image's symlinks keep COPY, ADD and --from inside its root; a hostile archive fails the build, writing nothing out", async () => {
    const out = join(scratch, "host-dest");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "secret"), "HOST-SECRET\n");
    const dir = context("image-links", { "f.txt": "copied\n", x: "pwn\n" });
    // An archive with a symlink out and a file through it, and a name climbing out.
    symlinkSync(out, join(dir, "sl"));
    const tar = (args: string[]) => spawnSync("tar", ["-C", dir, ...args]).status;
    expect(tar(["-cf", join(dir, "evil.tar"), "sl"])).toBe(0);
    expect(tar(["-rf", join(dir, "evil.tar"), "--transform", "s,^x$,sl/x,", "x"])).toBe(0);
    expect(tar(["-rPf", join(dir, "evil.tar"), "--transform", "s,^x$,../../escape,", "x"])).toBe(0);
    rmSync(join(dir, "sl"));
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${IMAGE} AS base
RUN ln -s ${out} /app && ln -s ../../../../../../../..${out} /up && ln -s ${out}/secret /file && ln -s ${out}/secret /dangling
COPY f.txt /app/
COPY f.txt /up/in-up
COPY f.txt /file
WORKDIR /app/wd
COPY f.txt ./
FROM ${IMAGE}
COPY --from=base ${out}/ /fromout/
COPY --from=base /app /dangling /up /fromlinks/
CMD ["sh", "-c", "ls /fromout /fromout/wd /fromlinks; readlink /fromlinks/dangling"]
`,
    );
    const r = cli(["build", "-t", "localhost/imagelinks:1", "--network", "none", dir]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    // Nothing landed on the host: the links resolved inside the image's root.
    expect(readdirSync(out)).toEqual(["secret"]);
    expect(existsSync(join(scratch, "escape"))).toBe(false);
    const run = cli(["run", "--rm", "localhost/imagelinks:1"]);
    expect(run.stdout).not.toContain("HOST-SECRET");
    expect(run.stdout).toBe(
      `/fromlinks:\napp\ndangling\nup\n\n/fromout:\nf.txt\nin-up\nwd\n\n/fromout/wd:\nf.txt\n${out}/secret\n`,
    );
    expect(cli(["rmi", "localhost/imagelinks:1"]).status).toBe(0);
    // ADD of the hostile archive fails the build, as Docker's (it was copied as a plain file).
    const add = pivotCli(t.root, ["build", "--network", "none", "-f", "-", dir], {
      input: `FROM ${IMAGE}\nRUN ln -s ${out} /app\nADD evil.tar /app/\n`,
      timeoutMs: 60_000,
    });
    expect(add.stderr).toContain('entry "sl/x"');
    expect(add.status).not.toBe(0);
    expect(readdirSync(out)).toEqual(["secret"]);
    expect(existsSync(join(scratch, "escape"))).toBe(false);
    // What is no tar archive at all (a gzip of a text) is copied as it is.
    expect(spawnSync("gzip", ["-k", join(dir, "f.txt")]).status).toBe(0);
    const plain = pivotCli(t.root, ["build", "--network", "none", "-f", "-", dir], {
      input: `FROM ${IMAGE}\nADD f.txt.gz /n/\nRUN test -f /n/f.txt.gz\n`,
      timeoutMs: 60_000,
    });
    expect(plain.stderr).toBe("");
    expect(plain.status).toBe(0);
    await (await t.engine.images()).removeManifest(
      (await (await t.engine.images()).resolve(plain.stdout.match(/Successfully built (\w+)/)![1]!))
        .manifestDigest,
    );
    await expectNothingLeft();
  }, 120_000);

  test("special files of the context (fifo, device node, symlink loops) are archived, never read", async () => {
    const dir = context("special", { "ok.txt": "ok\n" });
    expect(spawnSync("mkfifo", [join(dir, "fifo")]).status).toBe(0);
    expect(spawnSync("mknod", [join(dir, "zero"), "c", "1", "5"]).status).toBe(0);
    symlinkSync("loop-b", join(dir, "loop-a"));
    symlinkSync("loop-a", join(dir, "loop-b"));
    symlinkSync(".", join(dir, "self"));
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${IMAGE}\nCOPY . /ctx/\nCOPY fifo zero self/ok.txt /one/\nCMD ["sh", "-c", "cd /ctx && ls -l fifo zero self loop-a | cut -c1 && cat self/ok.txt /one/ok.txt && ls -l /one/fifo | cut -c1"]\n`,
    );
    const r = cli(["build", "-t", "localhost/special:1", "--network", "none", dir], 60_000);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const run = cli(["run", "--rm", "localhost/special:1"]);
    expect(run.stdout).toBe("p\nl\nl\nc\nok\nok\np\n");
    // A source through the loop fails, at once.
    const loop = pivotCli(t.root, ["build", "--network", "none", "-f", "-", dir], {
      input: `FROM ${IMAGE}\nCOPY loop-a/x /\n`,
      timeoutMs: 60_000,
    });
    expect(loop.stderr).toContain("too many symlinks");
    expect(loop.status).not.toBe(0);
    expect(cli(["rmi", "localhost/special:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("a COPY or COPY --from that fails leaves no container, mount, temp dir or image", async () => {
    const dir = context("copy-fails", { "f.txt": "f\n" });
    const fails = (steps: string, message: string) => {
      writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE} AS one\nRUN true\n${steps}`);
      const r = cli(["build", "-t", "localhost/fails:1", "--network", "none", dir]);
      expect(r.stderr).toContain(message);
      expect(r.status).not.toBe(0);
    };
    fails(
      `FROM ${IMAGE}\nCOPY --from=one /not-there /x\n`,
      "/not-there: no such file or directory in --from=one",
    );
    fails("COPY --chown=no-such-user f.txt /x\n", "no no-such-user in the image's /etc/passwd");
    fails("COPY f.txt /bin/sh/x/\n", "is not a directory in the image");
    fails(
      `FROM ${IMAGE}\nCOPY --from=one --chmod=99 /bin /x/\n`,
      "--chmod=99 is not an octal mode",
    );
    await expectNothingLeft();
  }, 120_000);

  test("ADD streams a big local archive: the build's memory does not grow with its size", async () => {
    const dir = context("big-archive", { "payload/f": "in the archive\n" });
    expect(
      spawnSync("tar", ["-C", join(dir, "payload"), "-cf", join(dir, "big.tar"), "f"]).status,
    ).toBe(0);
    rmSync(join(dir, "payload"), { recursive: true });
    // 1 GiB: the archive, then zeros (sparse, read as tar's end-of-archive blocks).
    expect(spawnSync("truncate", ["-s", "1G", join(dir, "big.tar")]).status).toBe(0);
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${IMAGE}\nADD big.tar /big/\nCMD ["cat", "/big/f"]\n`,
    );
    const r = spawnSync(
      "/usr/bin/time",
      [
        "-f",
        "maxrss=%M",
        BUN,
        PIVOT_CLI,
        "--root",
        t.root,
        "build",
        "-t",
        "localhost/big:1",
        "--network",
        "none",
        dir,
      ],
      { encoding: "utf8", timeout: 110_000 },
    );
    expect(r.status).toBe(0);
    const rssKiB = Number(/maxrss=(\d+)/.exec(r.stderr)?.[1]);
    // Read whole into memory for the history's hash, it took more than the archive's 1 GiB.
    expect(rssKiB).toBeLessThan(600 * 1024);
    expect(cli(["run", "--rm", "localhost/big:1"]).stdout).toBe("in the archive\n");
    expect(cli(["rmi", "localhost/big:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("a context's Dockerfile that is a fifo or a symlink out of it is refused, never read", async () => {
    const dir = context("dockerfile-special", {});
    const outside = context("dockerfile-outside", {
      Dockerfile: `FROM ${IMAGE}\nLABEL leaked=outside\n`,
    });
    spawnSync("mkfifo", [join(dir, "Dockerfile")]);
    // A fifo: reading it blocked the build for ever (until someone opened it for writing).
    const fifo = await Promise.race([
      t.engine.build({ context: dir, network: "none" }).then(
        () => "built",
        (e: Error) => e.message,
      ),
      Bun.sleep(10_000).then(() => "still reading after 10 s"),
    ]);
    expect(fifo).toContain("Dockerfile is not a regular file of the build context");
    rmSync(join(dir, "Dockerfile"));
    // A symlink to a host file: resolved inside the context (there is no such file there).
    symlinkSync(join(outside, "Dockerfile"), join(dir, "Dockerfile"));
    const link = await t.engine.build({ context: dir, network: "none" }).then(
      () => "built",
      (e: Error) => e.message,
    );
    expect(link).toContain("cannot read the Dockerfile");
    await expectNothingLeft();
  }, 60_000);

  test("Dockerfile errors name the line; unsupported forms are refused before anything is made", async () => {
    const dir = context("errors", {});
    const build = (dockerfile: string) => {
      writeFileSync(join(dir, "Dockerfile"), dockerfile);
      return cli(["build", "--network", "none", dir]);
    };
    const unknown = build(`FROM ${IMAGE}\nRUN true\nFROBNICATE now\n`);
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toContain("unknown instruction FROBNICATE");
    expect(unknown.stderr).toContain("line 3");
    const mount = build(`FROM ${IMAGE}\nRUN --mount=type=cache,target=/c true\n`);
    expect(mount.stderr).toContain("RUN --mount");
    expect(mount.stderr).toContain("is not supported by pivot build");
    writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE} AS one\nRUN true\n`);
    const target = cli(["build", "--target", "two", "--network", "none", dir]);
    expect(target.stderr).toContain("has no stage named two");
    const missing = build("FROM localhost/not-here:1\n");
    expect(missing.stderr).toContain("image localhost/not-here:1 is not in the local store");
    const noFrom = build("RUN true\n");
    expect(noFrom.stderr).toContain("RUN before FROM");
    const missingFile = build(`FROM ${IMAGE}\nCOPY nothing.txt /\n`);
    expect(missingFile.stderr).toContain(
      "nothing.txt: no such file or directory in the build context",
    );
    await expectNothingLeft();
  }, 120_000);

  test("image prune and system prune during a build leave the images it made: a later COPY --from still finds its stage", async () => {
    // The first stage's image is untagged and no container uses it while the second stage's RUN
    // runs: prune took it out and collection its layer (in this process no writer's mark keeps
    // it), and the COPY --from failed.
    const dir = context("prune-during", {
      Dockerfile: `FROM ${IMAGE} AS one
RUN echo built > /built
FROM ${IMAGE}
RUN echo started && sleep 2
COPY --from=one /built /built
`,
    });
    let pruned: Promise<string[]> | undefined;
    const image = await t.engine.build({
      context: dir,
      tag: "localhost/prune-during:1",
      network: "none",
      onOutput: (text) => {
        if (pruned !== undefined || !/^started$/m.test(text)) return;
        // `system prune`'s containers and images, then `image prune`'s.
        pruned = (async () => {
          const containers = await t.engine.prune();
          const images = await pruneImages(t.engine, { buildCache: "dangling" });
          const again = await pruneImages(t.engine);
          return [...containers.removed, ...[...images.deleted, ...again.deleted].map((d) => d.id)];
        })();
      },
    });
    expect(await pruned).toEqual([]);
    const r = await runCollect(t.engine, {
      image: image.id,
      cmd: ["cat", "/built"],
      autoRemove: true,
    });
    expect(r.stdout).toBe("built\n");
    expect(cli(["rmi", "localhost/prune-during:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("image prune -a during a build leaves the image it builds on (FROM's), before it has made any", async () => {
    // The fixtures' images are kept by containers (prune -a removes every unused image).
    for (const image of [IMAGE, "localhost/busybox:configured"])
      await t.engine.create({ image, cmd: ["true"] });
    const base = await t.engine.create({ image: IMAGE, cmd: ["true"] });
    await t.engine.commit(base.id, { ref: "localhost/prune-base:1" });
    await t.engine.remove(base.id);
    const dir = context("prune-base", {
      Dockerfile: "FROM localhost/prune-base:1\nCOPY f /f\n",
      f: "f\n",
    });
    let pruned: string | undefined;
    const image = await t.engine.build({
      context: dir,
      tag: "localhost/prune-base-built:1",
      onOutput: (text) => {
        // Blocking: the build waits at the COPY's start while the prune runs (another process).
        if (/^Step 2\/2/m.test(text)) pruned = cli(["image", "prune", "-a", "-f"]).stdout;
      },
    });
    expect(pruned).toBeDefined();
    expect(pruned).not.toContain("prune-base:1");
    const r = await runCollect(t.engine, { image: image.id, cmd: ["cat", "/f"], autoRemove: true });
    expect(r.stdout).toBe("f\n");
  }, 120_000);

  test("a build's intermediate images come and go without image events: the result's tag only, as Docker's", async () => {
    const dir = context("events", { Dockerfile: `FROM ${IMAGE}\nENV A=1\nRUN true\nENV B=2\n` });
    await Bun.sleep(20); // after the events of the test before (its images' removal)
    const since = new Date();
    // Twice: the second build's cache hits are listed for it and taken out again.
    for (let i = 0; i < 2; i++)
      await t.engine.build({ context: dir, tag: "localhost/events:1", network: "none" });
    const seen: string[] = [];
    const filters = { type: ["image"] };
    for await (const e of t.engine.events({ since, until: new Date(), filters }))
      seen.push(`${e.Action} ${e.Actor.Attributes.name}`);
    expect(seen).toEqual(["tag localhost/events:1", "tag localhost/events:1"]);
  }, 120_000);

  test("container prune leaves the created (never started) containers of a running build, not a dead one's", async () => {
    // A COPY's container, as a build records it before creating it; the build is this process.
    const name = "pivot-build-0123456789ab";
    const c = await t.engine.create({ image: IMAGE, name, cmd: ["true"] });
    const store = await t.engine.images();
    const run = newBuildRun("00112233aabbccdd");
    run.containers.push(name);
    await writeBuildRun(store, run);
    try {
      expect((await t.engine.prune()).removed).toEqual([]);
      // The same record with another start time: a dead build's (the pid reused), pruned.
      await writeBuildRun(store, { ...run, startTime: "1" });
      expect((await t.engine.prune()).removed).toEqual([c.id]);
    } finally {
      removeBuildRun(store, run.id);
    }
  }, 60_000);

  test("a dead build's record removes only what is provably its own: not a container merely named like a build's, nor an untagged image a container uses or that it did not list", async () => {
    const store = await t.engine.images();
    const run = { ...newBuildRun("0011223344556677"), startTime: "1" }; // dead: another start
    // The build's own container (labelled with its id), and a user's named like one.
    const own = await t.engine.create({
      image: IMAGE,
      name: "pivot-build-bbbbbbbbbbbb",
      cmd: ["true"],
      labels: { [BUILD_RUN_LABEL]: run.id },
    });
    const named = await t.engine.create({
      image: IMAGE,
      name: "pivot-build-aaaaaaaaaaaa",
      cmd: ["true"],
    });
    // A user's untagged image, a container created from it (a cache hit a record may list).
    const base = await t.engine.create({ image: IMAGE, cmd: ["true"] });
    const untagged = await t.engine.commit(base.id);
    const user = await t.engine.create({ image: untagged.id, cmd: ["true"] });
    // And one of its own: untagged, unused, removed (an intermediate: no image event).
    const spare = await t.engine.commit(base.id);
    // A cache hit that was listed before the build (not among what it listed): a user's.
    const listedBefore = await t.engine.commit(base.id);
    const descOf = async (digest: string) => {
      const d = (await store.readIndex()).manifests.find((m) => m.digest === digest)!;
      return { mediaType: d.mediaType, digest: d.digest, size: d.size };
    };
    run.containers.push("pivot-build-bbbbbbbbbbbb", "pivot-build-aaaaaaaaaaaa");
    for (const image of [untagged, spare, listedBefore])
      run.images.push(await descOf(image.manifestDigest));
    run.made.push(untagged.manifestDigest, spare.manifestDigest);
    await writeBuildRun(store, run);
    try {
      await Bun.sleep(20);
      const since = new Date();
      expect(await removeDeadBuilds(t.engine, store)).toEqual([run.id]);
      const left = (await t.engine.list({ all: true })).map((c) => c.id).sort();
      expect(left).toEqual([named.id, base.id, user.id].sort());
      expect(left).not.toContain(own.id);
      expect((await store.resolve(untagged.manifestDigest)).id).toBe(untagged.id);
      expect(await store.resolve(spare.manifestDigest).catch(() => null)).toBeNull();
      expect((await store.resolve(listedBefore.manifestDigest)).id).toBe(listedBefore.id);
      const filters = { type: ["image"] };
      const events = [];
      for await (const e of t.engine.events({ since, until: new Date(), filters })) events.push(e);
      expect(events).toEqual([]);
    } finally {
      removeBuildRun(store, run.id);
    }
  }, 60_000);

  test("a SIGKILLed build's containers, mounts, directory and images are removed by the next prune or build; a running build's are not", async () => {
    const dir = context("killed", {
      Dockerfile: `FROM ${IMAGE} AS one
RUN echo built > /built
FROM ${IMAGE}
COPY --from=one /built /built
RUN echo started && sleep 60
`,
    });
    const runs = () => readdirSync(join(t.root, "builds"));
    /** A CLI build of DIR SIGKILLed in its last RUN; its id (its record's name). */
    const killedBuild = async (): Promise<string> => {
      const child = spawn(
        BUN,
        [
          PIVOT_CLI,
          "--root",
          t.root,
          "build",
          "-t",
          "localhost/killed:1",
          "--network",
          "none",
          dir,
        ],
        { stdio: ["ignore", "pipe", "ignore"] },
      );
      try {
        let stdout = "";
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (d: Buffer) => {
            stdout += d.toString();
            if (/^started$/m.test(stdout)) resolve();
          });
          child.on("exit", (code) => reject(new Error(`the build exited with ${code}: ${stdout}`)));
        });
        const id = runs()[0]!;
        child.kill("SIGKILL");
        await new Promise((resolve) => child.on("exit", resolve));
        // What it left: its RUN's container, still running, its record and images; and a mount
        // in its directory, as a kill during COPY --from leaves one.
        expect((await t.engine.list({ all: true })).map((c) => c.state.running)).toEqual([true]);
        expect(runs()).toEqual([id]);
        expect((await imageNames()).length).toBeGreaterThan(2);
        const merged = join(t.root, "tmp", `build-${id}`, "from-test", "merged");
        mkdirSync(merged, { recursive: true });
        expect(spawnSync("mount", ["-t", "tmpfs", "none", merged]).status).toBe(0);
        return id;
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
    };

    // `image prune` removes it all.
    await killedBuild();
    const pruned = cli(["image", "prune", "-f"]);
    expect(pruned.status).toBe(0);
    expect(runs()).toEqual([]);
    await expectNothingLeft();

    // The next build removes it before it starts, and a prune while that build runs (another
    // process) leaves the running build's container and images.
    const killed = await killedBuild();
    const live = context("alive", {
      Dockerfile: `FROM ${IMAGE}\nRUN echo one > /one\nRUN echo started && sleep 2 && cat /one\n`,
    });
    let atStart: string[] = [];
    let prune: ReturnType<typeof cli> | undefined;
    await t.engine.build({
      context: live,
      tag: "localhost/alive:1",
      network: "none",
      onOutput: (text) => {
        if (prune !== undefined || !/^started$/m.test(text)) return;
        atStart = runs();
        prune = cli(["image", "prune", "-f"]);
      },
    });
    expect(atStart).toHaveLength(1);
    expect(atStart).not.toContain(killed);
    expect(prune?.status).toBe(0);
    expect(prune?.stdout).not.toContain("deleted:");
    expect(runs()).toEqual([]);
    expect(cli(["rmi", "localhost/alive:1"]).status).toBe(0);
    await expectNothingLeft();
  }, 120_000);

  test("Ctrl-C during a RUN kills it and removes everything the build made", async () => {
    const dir = context("cancel", {
      Dockerfile: `FROM ${IMAGE}\nENV A=1\nRUN echo started && sleep 60\n`,
    });
    const child = spawn(
      BUN,
      [PIVOT_CLI, "--root", t.root, "build", "-t", "localhost/cancel:1", "--network", "none", dir],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    try {
      const started = new Promise<void>((resolve) => {
        child.stdout.on("data", (d: Buffer) => {
          stdout += d.toString();
          if (/^started$/m.test(stdout)) resolve();
        });
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((resolve) =>
        child.on("exit", (code) => resolve(code)),
      );
      await started;
      expect(await t.engine.list({ all: true })).toHaveLength(1);
      child.kill("SIGINT");
      expect(await exited).toBe(130);
      expect(stderr).toContain("the build was cancelled");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await expectNothingLeft();
    expect(existsSync(join(dir, "Dockerfile"))).toBe(true);
  }, 120_000);

  test("Ctrl-C during the last step (a long ADD) cancels the build: no image, exit 130", async () => {
    const dir = context("cancel-last", { "payload/f": "f\n" });
    expect(
      spawnSync("tar", ["-C", join(dir, "payload"), "-cf", join(dir, "big.tar"), "f"]).status,
    ).toBe(0);
    rmSync(join(dir, "payload"), { recursive: true });
    // Zeros after the archive: seconds of reading.
    expect(spawnSync("truncate", ["-s", "1G", join(dir, "big.tar")]).status).toBe(0);
    writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE}\nADD big.tar /big/\n`);
    const child = spawn(
      BUN,
      [
        PIVOT_CLI,
        "--root",
        t.root,
        "build",
        "-t",
        "localhost/cancel-last:1",
        "--network",
        "none",
        dir,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    try {
      const started = new Promise<void>((resolve) => {
        child.stdout.on("data", (d: Buffer) => {
          stdout += d.toString();
          if (stdout.includes("Step 2/2 : ADD")) resolve();
        });
      });
      child.stderr.resume();
      const exited = new Promise<number | null>((resolve) =>
        child.on("exit", (code) => resolve(code)),
      );
      await started;
      await Bun.sleep(300);
      child.kill("SIGINT");
      expect(await exited).toBe(130);
      expect(stdout).not.toContain("Successfully built");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await expectNothingLeft();
  }, 120_000);
});

describe.skipIf(!isRoot)("pivot build on a network", () => {
  test("RUN joins the default bridge network unless told otherwise, and nothing of it stays", async () => {
    const tag = `b${process.pid % 100000}`;
    const net = await makeNetworkTestEngine(tag, 217);
    try {
      const dir = mkdtempSync(join(tmpdir(), "pivot-build-net-"));
      try {
        writeFileSync(
          join(dir, "Dockerfile"),
          `FROM ${IMAGE}\nRUN ip -4 -o addr show eth0 | awk '{print $4}' > /address\nCMD ["cat", "/address"]\n`,
        );
        const image = await net.engine.build({ context: dir, tag: "localhost/net:1" });
        const run = await runCollect(net.engine, { image: image.id, autoRemove: true });
        // An address of the test's default network (10.217.B.0/24), not loopback only.
        expect(run.stdout).toMatch(/^10\.217\.\d+\.\d+\/24\n$/);
        expect(await net.engine.list({ all: true })).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      await net.cleanup();
    }
    const state = hostState();
    for (const trace of net.traces) expect(state).not.toContain(trace);
  }, 120_000);
});
