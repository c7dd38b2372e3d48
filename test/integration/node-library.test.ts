// The library under Node.js: a Node program imports the built library (dist/, as
// `tsc -p tsconfig.build.json` makes it) and runs real containers with it, as the README's examples
// do. Under Node the launcher starts through node:child_process and the container's pipes are node
// streams (Bun.spawn and web streams under Bun): code that only a Node program runs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { cleanupRoot, isRoot, makeBundle, REPO, rm, tempDir } from "../helpers.ts";

if (!isRoot) throw new Error("the integration tests run real containers and need root");

const DIST = join(REPO, "dist/index.js");

/** The newest modification time of the files under DIR. */
function newestUnder(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** dist/ built from the sources as they are (scripts/test.sh builds it before the tests). */
function ensureFreshDist(): void {
  if (existsSync(DIST) && statSync(DIST).mtimeMs >= newestUnder(join(REPO, "src"))) return;
  const tsc = join(REPO, "node_modules/.bin/tsc");
  const r = spawnSync(tsc, ["-p", join(REPO, "tsconfig.build.json")], {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed: ${r.stdout}${r.stderr}`);
}

/** Runs SOURCE as an ES module under Node; its stdout and stderr, and its exit status. */
function node(work: string, name: string, source: string) {
  const script = join(work, name);
  writeFileSync(script, source);
  return spawnSync("node", [script], { encoding: "utf8", timeout: 60_000 });
}

describe("the library under Node.js", () => {
  let work: string;
  let te: TestEngine;
  let runtimeRoot: string;

  beforeAll(async () => {
    ensureFreshDist();
    work = tempDir();
    runtimeRoot = join(work, "runtime");
    te = await makeTestEngine();
  });

  afterAll(async () => {
    await te?.cleanup();
    if (runtimeRoot) cleanupRoot(runtimeRoot);
    if (work) rm(work);
  });

  test("Runtime.run: the exit code, and the container's output through node streams", () => {
    const bundle = makeBundle(join(work, "bundle"), (s) => {
      s.process!.args = ["sh", "-c", 'echo "pid $$ in $(hostname)"; exit 7'];
    });
    const r = node(
      work,
      "runtime.mjs",
      `import { Runtime } from ${JSON.stringify(DIST)};
const runtime = new Runtime({ root: ${JSON.stringify(runtimeRoot)} });
let out = "";
let outputEnded;
const code = await runtime.run("node-job", {
  bundle: ${JSON.stringify(bundle)},
  stdio: ["ignore", "pipe", "inherit"],
  onLaunch: (pipes) => {
    outputEnded = (async () => { for await (const chunk of pipes.stdout) out += chunk; })();
  },
});
// run() resolves at the exit, as a child process's "exit" event: the output may still be on its way.
await outputEnded;
console.log(JSON.stringify({ node: process.version, code, out, left: await runtime.list() }));
`,
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.node).toMatch(/^v\d+/);
    expect(result).toMatchObject({ code: 7, out: "pid 1 in pivot\n", left: [] });
  });

  test("the README's engine example: attached output, exec, logs, a detached container under conmon", () => {
    const r = node(
      work,
      "engine.mjs",
      `import { Engine } from ${JSON.stringify(DIST)};
const engine = new Engine({ root: ${JSON.stringify(te.root)}, warn: () => {} });
const c = await engine.run({ image: ${JSON.stringify(IMAGE)}, cmd: ["sh", "-c", "echo hi; exit 3"], autoRemove: true, network: "none" });
let out = "";
c.stdout?.on("data", (d) => { out += d; });
const code = await c.wait();

const web = await engine.run({ image: ${JSON.stringify(IMAGE)}, name: "node-web", cmd: ["sh", "-c", "echo started; exec sleep 60"], detach: true, network: "none" });
const ps = await engine.exec("node-web", { cmd: ["cat", "/proc/1/cmdline"], stdio: "pipe" });
let execOut = "";
ps.stdout?.on("data", (d) => { execOut += d; });
const execCode = await ps.wait();
let logs = "";
for await (const line of engine.logs("node-web")) logs += line.text;
const status = engine.inspect("node-web").state.status;
await engine.stop("node-web", { timeout: 1 });
await engine.remove("node-web");
const left = (await engine.list({ all: true })).map((x) => x.name);
console.log(JSON.stringify({ code, out, webId: web.id, execCode, execOut, logs, status, left }));
`,
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({
      code: 3,
      out: "hi\n",
      execCode: 0,
      execOut: "sleep\u000060\u0000",
      logs: "started\n",
      status: "running",
      left: [],
    });
  });
});
