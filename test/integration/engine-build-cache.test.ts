// `pivot build`'s cache: a second build of the same Dockerfile runs no step, and what invalidates
// a step (a COPY source's content or mode, a build arg a RUN uses, --no-cache, a cached image
// gone from the store, a stage's result for COPY --from). Every RUN that matters reports to an
// HTTP server of this process (the build's RUN containers share the host's network), so that a
// step that ran is seen from outside the build, not only in its output.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pruneBuilder, pruneImages } from "../../src/engine/images.ts";
import { buildContext } from "../fixtures/build-context.ts";
import {
  CONFIGURED,
  IMAGE,
  makeTestEngine,
  mountsUnder,
  type TestEngine,
} from "../fixtures/engine.ts";
import { isRoot, pivotCli, REPO } from "../helpers.ts";

let t: TestEngine;
let scratch: string;
let server: ReturnType<typeof Bun.serve> | undefined;
/** The paths the build's RUN steps fetched from the server, in order. */
const hits: string[] = [];

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-build-cache-"));
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      hits.push(new URL(req.url).pathname);
      return new Response("ok\n");
    },
  });
});

afterAll(async () => {
  server?.stop(true);
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// Each test starts from the fixtures' images and an empty build cache, whatever the one before left.
afterEach(async () => {
  hits.length = 0;
  if (!t) return;
  for (const c of await t.engine.list({ all: true }))
    await t.engine.remove(c.id, { force: true }).catch(() => {});
  const store = await t.engine.images();
  for (const image of await store.listImages()) {
    if (image.names.some((n) => n.includes("localhost/busybox:"))) continue;
    await store.removeManifest(image.manifestDigest).catch(() => {});
  }
  rmSync(join(t.root, "build-cache"), { recursive: true, force: true });
});

/** A RUN line that fetches /NAME from the test's server (a step that ran, seen from outside). */
const report = (name: string) =>
  `RUN wget -q -O /dev/null http://127.0.0.1:${server!.port}/${name}`;

/** A build context directory with FILES (path → content) under the scratch directory. */
const context = (name: string, files: Record<string, string>) => buildContext(scratch, name, files);

/** Builds DIR with the library (the server answers meanwhile); its output and image. */
async function build(
  dir: string,
  options: { tag?: string; buildArgs?: Record<string, string>; noCache?: boolean } = {},
) {
  const out: string[] = [];
  const image = await t.engine.build({
    context: dir,
    tag: options.tag ?? "localhost/cached:1",
    network: "host",
    ...(options.buildArgs ? { buildArgs: options.buildArgs } : {}),
    ...(options.noCache ? { noCache: true } : {}),
    onOutput: (s) => out.push(s),
  });
  const text = out.join("");
  return { image, text, lines: text.split("\n") };
}

/** The output's steps (by their Step line) that used the cache. */
function cachedSteps(lines: string[]): string[] {
  const out: string[] = [];
  lines.forEach((l, i) => {
    if (l === " ---> Using cache") out.push(lines[i - 1]!.replace(/^Step \d+\/\d+ : /, ""));
  });
  return out;
}

function records(): string[] {
  const dir = join(t.root, "build-cache");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function imageNames(): Promise<string[]> {
  const images = await (await t.engine.images()).listImages();
  return images.map((i) => (i.names.length ? i.names.join(",") : i.id)).sort();
}

describe.skipIf(!isRoot)("pivot build's cache", () => {
  test("a second build of the same Dockerfile runs no step, uses the cache for each and makes the same image", async () => {
    const dir = context("same", {
      "f.txt": "content\n",
      Dockerfile: `FROM ${IMAGE}
ARG WHO=someone
ENV GREETING=hello
WORKDIR /app
COPY f.txt ./
${report("same-run")}
RUN date +%s%N > /stamp
CMD ["cat", "/stamp"]
`,
    });
    const first = await build(dir);
    expect(hits).toEqual(["/same-run"]);
    expect(cachedSteps(first.lines)).toEqual([]);
    expect(first.lines.filter((l) => /^ ---> Running in /.test(l))).toHaveLength(2);

    const second = await build(dir);
    // Nothing ran: no request, no container, every step after FROM from the cache.
    expect(hits).toEqual(["/same-run"]);
    expect(second.text).not.toContain("Running in");
    expect(cachedSteps(second.lines)).toEqual([
      "ARG WHO=someone",
      "ENV GREETING=hello",
      "WORKDIR /app",
      "COPY f.txt ./",
      report("same-run"),
      "RUN date +%s%N > /stamp",
      'CMD ["cat", "/stamp"]',
    ]);
    expect(second.image.id).toBe(first.image.id);
    expect(second.lines).toContain(`Successfully built ${first.image.id.slice(7, 19)}`);
    expect(second.lines).toContain("Successfully tagged localhost/cached:1");

    // The cached intermediate images are not listed; nothing else is left.
    expect(await imageNames()).toEqual(
      ["localhost/busybox:configured", "localhost/busybox:test", "localhost/cached:1"].sort(),
    );
    expect(await t.engine.list({ all: true })).toEqual([]);
    expect(mountsUnder(t.root)).toEqual([]);
    expect(records()).toHaveLength(7);

    // The result's name removed: its record still finds it, and the build names it again.
    expect(pivotCli(t.root, ["rmi", "localhost/cached:1"]).status).toBe(0);
    const third = await build(dir);
    expect(hits).toEqual(["/same-run"]);
    expect(third.image.id).toBe(first.image.id);
    expect(third.image.names).toEqual(["localhost/cached:1"]);
  }, 180_000);

  test("a COPY source's content or mode invalidates that step and every one after it; its mtime does not", async () => {
    const dir = context("copy", {
      "f.txt": "one\n",
      "other.txt": "stays\n",
      Dockerfile: `FROM ${IMAGE}
${report("copy-before")}
COPY other.txt /other.txt
COPY f.txt /f.txt
${report("copy-after")}
`,
    });
    await build(dir);
    expect(hits).toEqual(["/copy-before", "/copy-after"]);

    // Only the mtime changed: all cached.
    utimesSync(join(dir, "f.txt"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    const touched = await build(dir);
    expect(hits).toEqual(["/copy-before", "/copy-after"]);
    expect(cachedSteps(touched.lines)).toHaveLength(4);

    writeFileSync(join(dir, "f.txt"), "two\n");
    const changed = await build(dir);
    expect(cachedSteps(changed.lines)).toEqual([
      report("copy-before"),
      "COPY other.txt /other.txt",
    ]);
    expect(hits).toEqual(["/copy-before", "/copy-after", "/copy-after"]);
    const r = pivotCli(t.root, ["run", "--rm", "localhost/cached:1", "cat", "/f.txt"]);
    expect(r.stdout).toBe("two\n");

    // The same content again, another mode: the copied file differs, so the step runs.
    chmodSync(join(dir, "f.txt"), 0o755);
    const mode = await build(dir);
    expect(cachedSteps(mode.lines)).toEqual([report("copy-before"), "COPY other.txt /other.txt"]);
    expect(hits).toHaveLength(4);
    const ls = pivotCli(t.root, ["run", "--rm", "localhost/cached:1", "ls", "-l", "/f.txt"]);
    expect(ls.stdout).toMatch(/^-rwxr-xr-x /);
  }, 180_000);

  test("COPY's key is that of the bytes copied: a file changed and changed back around the copy cannot put other content under its key", async () => {
    // Whoever writes the context rewrites f.txt each time a read of it ends: a build that read it
    // for a digest, again to copy it and again for a digest read "A", copied "B" and recorded B's
    // image under A's key, which the next build of "A" then used.
    const dir = context("changed-back", {
      "f.txt": "A\n",
      Dockerfile: `FROM ${IMAGE}\nCOPY f.txt /f.txt\n`,
    });
    const changer = join(scratch, "read-changer");
    if (!existsSync(changer)) {
      const cc = spawnSync(
        "cc",
        ["-O2", "-o", changer, join(REPO, "test/fixtures/read-changer.c")],
        {
          encoding: "utf8",
        },
      );
      expect(cc.stderr).toBe("");
    }
    const child = spawn(changer, [join(dir, "f.txt"), "B\n", "A\n"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          if (d.toString().includes("ready")) resolve();
        });
        child.on("exit", (code) => reject(new Error(`read-changer exited with ${code}`)));
      });
      await build(dir);
    } finally {
      child.kill("SIGKILL");
    }
    const content = (tag: string) => pivotCli(t.root, ["run", "--rm", tag, "cat", "/f.txt"]).stdout;
    // What the first build copied, read once: "A".
    expect(content("localhost/cached:1")).toBe("A\n");
    // The context says "A" again: the cache's image for it holds "A".
    writeFileSync(join(dir, "f.txt"), "A\n");
    const again = await build(dir, { tag: "localhost/cached:2" });
    expect(cachedSteps(again.lines)).toEqual(["COPY f.txt /f.txt"]);
    expect(content("localhost/cached:2")).toBe("A\n");
    writeFileSync(join(dir, "f.txt"), "B\n");
    const other = await build(dir, { tag: "localhost/cached:3" });
    expect(cachedSteps(other.lines)).toEqual([]);
    expect(content("localhost/cached:3")).toBe("B\n");
  }, 180_000);

  test("a build arg a RUN uses invalidates it; the same value again is cached", async () => {
    const dir = context("args", {
      Dockerfile: `FROM ${IMAGE}\nARG V\n${report("arg-$V")}\n`,
    });
    await build(dir, { buildArgs: { V: "1" } });
    const again = await build(dir, { buildArgs: { V: "1" } });
    expect(hits).toEqual(["/arg-1"]);
    expect(cachedSteps(again.lines)).toEqual(["ARG V", report("arg-$V")]);
    const other = await build(dir, { buildArgs: { V: "2" } });
    expect(hits).toEqual(["/arg-1", "/arg-2"]);
    // The ARG line itself is the same: cached; its RUN is not.
    expect(cachedSteps(other.lines)).toEqual(["ARG V"]);
    // Back to the first value: that RUN's record is still there.
    await build(dir, { buildArgs: { V: "1" } });
    expect(hits).toEqual(["/arg-1", "/arg-2"]);
  }, 180_000);

  test("--no-cache runs every step (pivot build's flag); the next build uses what it made", async () => {
    const dir = context("nocache", {
      Dockerfile: `FROM ${IMAGE}\nENV X=1\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n`,
    });
    const cli = (args: string[]) =>
      pivotCli(t.root, ["build", "-t", "localhost/cached:1", "--network", "none", ...args, dir], {
        timeoutMs: 120_000,
      });
    const idOf = (stdout: string) => /^Successfully built ([0-9a-f]{12})$/m.exec(stdout)?.[1];
    const stamp = () =>
      pivotCli(t.root, ["run", "--rm", "localhost/cached:1", "cat", "/stamp"]).stdout;
    const first = cli([]);
    expect(first.status).toBe(0);
    const s1 = stamp();
    const cached = cli([]);
    expect(cached.stdout.split("\n").filter((l) => l === " ---> Using cache")).toHaveLength(2);
    expect(idOf(cached.stdout)).toBe(idOf(first.stdout));

    const fresh = cli(["--no-cache"]);
    expect(fresh.stderr).toBe("");
    expect(fresh.status).toBe(0);
    expect(fresh.stdout).not.toContain("Using cache");
    expect(fresh.stdout).toMatch(/^ ---> Running in [0-9a-f]{12}$/m);
    expect(idOf(fresh.stdout)).not.toBe(idOf(first.stdout));
    const s2 = stamp();
    expect(s2).not.toBe(s1);

    const after = cli([]);
    expect(after.stdout).not.toContain("Running in");
    expect(idOf(after.stdout)).toBe(idOf(fresh.stdout));
    expect(stamp()).toBe(s2);
  }, 180_000);

  test("a cached image gone from the store makes its step miss; prune removes the record; prune -a empties the cache, system prune keeps what a tagged image was built through", async () => {
    const dir = context("gone", {
      Dockerfile: `FROM ${IMAGE}\n${report("gone-1")}\n${report("gone-2")}\nLABEL x=y\n`,
    });
    const first = await build(dir);
    expect(hits).toEqual(["/gone-1", "/gone-2"]);
    expect(records()).toHaveLength(3);
    // The second RUN's image loses its manifest (as a collection by a pivot without the cache
    // would leave it): found from the first RUN's image's history.
    const store = await t.engine.images();
    const recs = records().map((k) => ({
      key: k,
      ...(JSON.parse(readFileSync(join(t.root, "build-cache", k), "utf8")) as {
        manifest: { digest: string };
        id: string;
      }),
    }));
    const chain: string[] = [];
    for (const r of recs) {
      const image = await store.inspectManifest(r.manifest as never);
      chain[(image.config.history?.length ?? 0) - 2] = r.key;
    }
    const second = recs.find((r) => r.key === chain[1])!;
    expect(second).toBeDefined();
    unlinkSync(store.blobPath(second.manifest.digest));

    const again = await build(dir);
    expect(cachedSteps(again.lines)).toEqual([report("gone-1")]);
    expect(hits).toEqual(["/gone-1", "/gone-2", "/gone-2"]);
    expect(again.image.id).not.toBe(first.image.id);
    // The RUN's record written again for its key, naming the new image; the LABEL after it has
    // a new parent, so a new key (the earlier chain's record stays, its image in the store).
    expect(records()).toHaveLength(4);

    // A record naming nothing in the store, and one that is not a record: prune removes both.
    const bogus = "0".repeat(64);
    writeFileSync(
      join(t.root, "build-cache", bogus),
      JSON.stringify({
        manifest: {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: `sha256:${"1".repeat(64)}`,
          size: 100,
        },
        id: `sha256:${"2".repeat(64)}`,
      }),
    );
    writeFileSync(join(t.root, "build-cache", "f".repeat(64)), "not json");
    const prune = pivotCli(t.root, ["image", "prune", "-f"]);
    expect(prune.status).toBe(0);
    expect(prune.stdout).toContain(`Deleted build cache objects:\n${bogus}\n${"f".repeat(64)}\n`);
    expect(records()).toHaveLength(4);
    // The cached images stay: the build still needs nothing to run.
    await build(dir);
    expect(hits).toHaveLength(3);

    // image prune -a: the cache goes, and its images with it (the tagged result too: unused).
    // In this process: a CLI's collection would keep what this live writer wrote a moment ago.
    // The fixtures' images are kept by containers of theirs.
    const keep = [
      await t.engine.create({ image: IMAGE, cmd: ["true"] }),
      await t.engine.create({ image: CONFIGURED, cmd: ["true"] }),
    ];
    const all = await pruneImages(t.engine, { all: true }).finally(async () => {
      for (const c of keep) await t.engine.remove(c.id, { force: true });
    });
    expect(all.buildCache).toHaveLength(4);
    expect(records()).toEqual([]);
    expect(existsSync(store.blobPath(first.image.manifestDigest))).toBe(false);
    await build(dir);
    expect(hits).toHaveLength(5);
    expect(records()).toHaveLength(3);
    // system prune, as Docker's, removes only the dangling cache: the tagged result was built
    // through all three records, so they stay (system prune -a would empty it, as image prune -a).
    const sys = pivotCli(t.root, ["system", "prune", "-f"]);
    expect(sys.status).toBe(0);
    expect(sys.stdout).not.toContain("Deleted build cache objects:");
    expect(records()).toHaveLength(3);
    await build(dir);
    expect(hits).toHaveLength(5);
  }, 180_000);

  test("system df counts the build cache; system prune removes only its dangling records (those no kept image was built through)", async () => {
    const dir = context("df", {
      "f.txt": "one\n",
      Dockerfile: `FROM ${IMAGE}\nCOPY f.txt /f.txt\n${report("df")}\n`,
    });
    type Totals = { total: number; active: number; size: number; reclaimable: number };
    const df = (): Totals =>
      JSON.parse(pivotCli(t.root, ["system", "df", "--format", "json"]).stdout).totals.buildCache;
    await build(dir);
    const first = df();
    expect(first).toMatchObject({ total: 2, active: 2, reclaimable: 0 });
    expect(first.size).toBeGreaterThan(0);
    expect(pivotCli(t.root, ["system", "df"]).stdout).toMatch(/^Build Cache +2 +2 +\S+ +0B$/m);

    // Another content: the tag moves to the new result, and the first build's records are
    // dangling (its result is an untagged image).
    writeFileSync(join(dir, "f.txt"), "two\n");
    await build(dir);
    const second = df();
    expect(second).toMatchObject({ total: 4, active: 2 });
    expect(second.reclaimable).toBeGreaterThan(0);
    const sys = pivotCli(t.root, ["system", "prune", "-f"]);
    expect(sys.status).toBe(0);
    expect(sys.stdout).toMatch(/Deleted build cache objects:\n[0-9a-f]{64}\n[0-9a-f]{64}\n\n/);
    expect(records()).toHaveLength(2);
    expect(df()).toMatchObject({ total: 2, active: 2, reclaimable: 0 });
    // What stays is the cache of the tagged image: its build runs nothing.
    await build(dir);
    expect(hits).toEqual(["/df", "/df"]);
  }, 180_000);

  test("builder prune frees what the records it removes held: their images' layers go", async () => {
    const dir = context("builder-prune", {
      Dockerfile: `FROM ${IMAGE}\nRUN echo built > /built\n`,
    });
    const { image } = await build(dir);
    const layer = image.layers.at(-1)!.diffId.slice(7);
    const layers = () => readdirSync(join(t.root, "layers", "sha256"));
    expect(layers()).toContain(layer);
    // Untagged: its records are dangling, and nothing else holds the RUN's layer.
    expect(pivotCli(t.root, ["rmi", "localhost/cached:1"]).status).toBe(0);
    expect(layers()).toContain(layer); // the records keep it
    // In this process: another's collection keeps what this one (a writer) wrote in the last minute.
    expect((await pruneBuilder(t.engine)).length).toBeGreaterThan(0);
    expect(records()).toEqual([]);
    expect(layers()).not.toContain(layer);
  }, 120_000);

  test("COPY --from a stage rebuilt with the same files (new mtimes, new layers) uses the cache", async () => {
    // The first stage's RUN runs again for another build arg, writing the same /out.txt anew:
    // keyed by the stage's layers, the COPY --from and every step after it ran again.
    const dir = context("rebuilt-stage", {
      Dockerfile: `FROM ${IMAGE} AS builder
ARG V
RUN echo "$V" > /v && echo same > /out.txt
FROM ${IMAGE}
${report("rebuilt-before")}
COPY --from=builder /out.txt /out.txt
${report("rebuilt-after")}
`,
    });
    await build(dir, { buildArgs: { V: "1" } });
    expect(hits).toEqual(["/rebuilt-before", "/rebuilt-after"]);
    const again = await build(dir, { buildArgs: { V: "2" } });
    expect(again.text).toContain("Running in"); // the stage's RUN, for V=2
    expect(cachedSteps(again.lines)).toEqual([
      "ARG V",
      report("rebuilt-before"),
      "COPY --from=builder /out.txt /out.txt",
      report("rebuilt-after"),
    ]);
    expect(hits).toEqual(["/rebuilt-before", "/rebuilt-after"]);
    const r = pivotCli(t.root, ["run", "--rm", "localhost/cached:1", "cat", "/out.txt"]);
    expect(r.stdout).toBe("same\n");
  }, 180_000);

  test("multi-stage: stages are cached apart; COPY --from is keyed by the content it copies", async () => {
    const dir = context("stages", {
      "src.txt": "source 1\n",
      "other.txt": "other 1\n",
      Dockerfile: `FROM ${IMAGE} AS builder
COPY src.txt /src.txt
${report("builder")}
RUN cp /src.txt /out.txt
FROM ${IMAGE}
COPY other.txt /other.txt
${report("final-before")}
COPY --from=builder /out.txt /out.txt
${report("final-after")}
`,
    });
    await build(dir);
    expect(hits).toEqual(["/builder", "/final-before", "/final-after"]);
    const same = await build(dir);
    expect(hits).toHaveLength(3);
    expect(cachedSteps(same.lines)).toHaveLength(7);

    // The second stage's own source: the first stage stays cached.
    writeFileSync(join(dir, "other.txt"), "other 2\n");
    const second = await build(dir);
    expect(hits.slice(3)).toEqual(["/final-before", "/final-after"]);
    expect(cachedSteps(second.lines)).toEqual([
      "COPY src.txt /src.txt",
      report("builder"),
      "RUN cp /src.txt /out.txt",
    ]);

    // The first stage's source: it runs again, and so does the COPY --from of its result (and
    // what follows), but not the second stage's steps before it.
    writeFileSync(join(dir, "src.txt"), "source 2\n");
    const first = await build(dir);
    expect(hits.slice(5)).toEqual(["/builder", "/final-after"]);
    expect(cachedSteps(first.lines)).toEqual(["COPY other.txt /other.txt", report("final-before")]);
    const r = pivotCli(t.root, ["run", "--rm", "localhost/cached:1", "cat", "/out.txt"]);
    expect(r.stdout).toBe("source 2\n");
  }, 180_000);

  test("a record whose image lost its config (a collection cut short) is a miss that lists nothing broken", async () => {
    // The record's image was listed in index.json before it was checked: a manifest whose config
    // is gone then broke every listing (the build's tag, its cleanup, `pivot images`).
    const dir = context("broken", { Dockerfile: `FROM ${IMAGE}\n${report("broken")}\n` });
    const first = await build(dir);
    const store = await t.engine.images();
    await store.removeManifest(first.image.manifestDigest); // only the record keeps it
    unlinkSync(store.blobPath(first.image.id));
    const again = await build(dir);
    expect(cachedSteps(again.lines)).toEqual([]);
    expect(hits).toEqual(["/broken", "/broken"]);
    const listed = (await store.readIndex()).manifests.map((d) => d.digest);
    expect(listed).not.toContain(first.image.manifestDigest);
    expect(await imageNames()).toContain("localhost/cached:1");
  }, 180_000);

  test("a cached image another build listed and took out again meanwhile: the next step still runs from it", async () => {
    // Build A lists a cached image while it uses it and takes it out of index.json at its end.
    // Build B, which found it listed (A's), had nothing of its own keeping it there: its next
    // RUN's container, created from the image by id, failed with "not in the local store".
    const dir = context("shared", { Dockerfile: `FROM ${IMAGE}\nRUN echo one > /one\n` });
    const first = await build(dir);
    const store = await t.engine.images();
    const desc = (await store.readIndex()).manifests.find(
      (d) => d.digest === first.image.manifestDigest,
    )!;
    await store.removeManifest(desc.digest); // only the record keeps it now
    await store.addImage({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size }); // A's
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${IMAGE}\nRUN echo one > /one\nRUN cat /one > /two\n`,
    );
    const index = join(t.root, "index.json");
    // Builds DIR while A ends (the image leaves index.json) when B's output starts with WHEN.
    const buildMeanwhile = async (tag: string, when: string) => {
      const out: string[] = [];
      const image = await t.engine.build({
        context: dir,
        tag,
        network: "host",
        onOutput: (text) => {
          out.push(text);
          if (!text.startsWith(when)) return;
          const idx = JSON.parse(readFileSync(index, "utf8"));
          idx.manifests = idx.manifests.filter((d: { digest: string }) => d.digest !== desc.digest);
          writeFileSync(index, `${JSON.stringify(idx, null, 2)}\n`);
        },
      });
      return { image, cached: cachedSteps(out.join("").split("\n")) };
    };
    const b = await buildMeanwhile("localhost/cached:2", "Step 3/3");
    expect(b.cached).toEqual(["RUN echo one > /one"]);
    const r = pivotCli(t.root, ["run", "--rm", b.image.id, "cat", "/two"]);
    expect(r.stdout).toBe("one\n");
    // The cached image as the build's result: tagged all the same.
    await store.addImage({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size }); // A's
    writeFileSync(join(dir, "Dockerfile"), `FROM ${IMAGE}\nRUN echo one > /one\n`);
    const c = await buildMeanwhile("localhost/cached:3", " ---> Using cache");
    expect(c.cached).toEqual(["RUN echo one > /one"]);
    expect(c.image.manifestDigest).toBe(desc.digest);
    expect((await store.resolve("localhost/cached:3")).manifestDigest).toBe(desc.digest);
    expect(mountsUnder(t.root)).toEqual([]);
  }, 180_000);
});
