// The library (`new Engine()`) in an ordinary user's program (issue #7). A running Node or Bun
// process cannot enter a user namespace (unshare(CLONE_NEWUSER) refuses a multi-threaded
// caller), so outside one the methods that need it fail at once with one error naming the
// method and `pivot unshare`, touching nothing; the others work; and under `pivot unshare` the
// same program runs, exports and removes containers. The throwaway user comes from
// test/fixtures/rootless-user.ts.
import { afterEach, describe, expect, test } from "bun:test";
import { chownSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mountsUnder } from "../fixtures/engine.ts";
import { ROOTLESS_IMAGE, rootlessUserForFile, until } from "../fixtures/rootless-user.ts";
import { BUN, REPO } from "../helpers.ts";

const u = rootlessUserForFile("pivlb");

/** Writes a program of the user's that imports the engine as a library; returns its path. */
function program(name: string, body: string): string {
  const dir = u.dir("programs");
  const file = join(dir, name);
  writeFileSync(
    file,
    `import { Engine } from ${JSON.stringify(join(REPO, "src/engine/engine.ts"))};\n${body}`,
  );
  chownSync(file, u.uid, u.gid);
  return file;
}

describe("the library in an ordinary user's program", () => {
  afterEach(() => u.removeContainers(), 60_000);

  test("outside the user namespace: what needs it is refused at once with the hint, touching nothing; the rest works", async () => {
    u.ok(["run", "-d", "--name", "up", ROOTLESS_IMAGE, "sh", "-c", "echo hello; exec sleep 600"]);
    u.ok(["run", "--name", "done", ROOTLESS_IMAGE, "sh", "-c", "echo bye > /bye"]);
    u.ok(["run", "-d", "--name", "k", ROOTLESS_IMAGE, "sleep", "600"]);
    await until("the container's output", () => u.ok(["logs", "up"]).includes("hello"));
    const before = readdirSync(join(u.store, "containers")).sort();
    const dir = u.dir("programs"); // the host's side of copyTo and copyFrom
    const file = program(
      "outside.ts",
      `
const e = new Engine({ warn: () => {} });
const out: Record<string, unknown> = {};
const refused = async (name: string, call: () => unknown) => {
  try {
    await call();
    out[name] = "worked";
  } catch (err) {
    out[name] = { message: (err as Error).message, hint: (err as { hint?: string }).hint };
  }
};
const opts = { image: ${JSON.stringify(ROOTLESS_IMAGE)}, cmd: ["true"], name: "made" };
await refused("create", () => e.create(opts));
await refused("dryRun", () => e.dryRun(opts));
await refused("run", () => e.run(opts));
await refused("run detached", () => e.run({ ...opts, detach: true }));
await refused("start", () => e.start("done"));
await refused("startAttached", () => e.startAttached("done"));
await refused("startAndAttach", () => e.startAndAttach("done"));
await refused("remove", () => e.remove("done", { force: true }));
await refused("cleanup", () => e.cleanup("done"));
await refused("recover", () => e.recover());
await refused("startRestartable", () => e.startRestartable());
await refused("export", () => e.export("up"));
await refused("export stopped", () => e.export("done"));
await refused("archive", () => e.archive("up", "/etc"));
await refused("copyFrom", () => e.copyFrom("done", "/bye", ${JSON.stringify(join(dir, "bye"))}));
await refused("copyTo", () => e.copyTo("done", ${JSON.stringify(join(dir, "outside.ts"))}, "/"));
await refused("extractArchive", () => e.extractArchive("done", "/", (async function* () {})()));
await refused("diff", () => e.diff("done"));
await refused("commit", () => e.commit("done", { ref: "localhost/made:x" }));
await refused("prune", () => e.prune());
await refused("pruneVolumes", () => e.pruneVolumes({ all: true }));
e.createVolume("vol");
await refused("removeVolume", () => e.removeVolume("vol"));
await refused("attach", () => e.attach("up", { stdio: "pipe", noStdin: true }));
await refused("pause", () => e.pause("up"));
await refused("unpause", () => e.unpause("up"));
// What works outside: reading state, logs, signals, exec (the CLI runs it outside too).
out.inspect = e.inspect("up").state.status;
out.list = (await e.list({ all: true })).map((c) => c.name).sort();
let logs = "";
for await (const l of e.logs("up")) logs += (l as { text?: string }).text ?? "";
out.logs = logs;
const ex = await e.exec("up", { cmd: ["cat", "/proc/self/uid_map"], stdio: "pipe" });
let exOut = "";
for await (const c of ex.stdout!) exOut += c;
out.exec = { code: await ex.wait(), out: exOut.trim().split(/\\s+/) };
out.volumes = e.listVolumes().map((v) => v.name);
e.kill("k");
out.killed = await e.wait("k");
await e.rename("done", "renamed");
out.renamed = e.inspect("renamed").name;
await e.rename("renamed", "done");
await e.stop("up", { timeout: 1 });
out.stopped = e.inspect("up").state.status;
out.wait = await e.wait("up");
console.log(JSON.stringify(out));
`,
    );
    const r = u.run([BUN, file]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    const refusedNames = [
      ["create", "create"],
      ["dryRun", "dryRun"],
      ["run", "run"],
      ["run detached", "run"],
      ["start", "start"],
      ["startAttached", "startAttached"],
      ["startAndAttach", "startAndAttach"],
      ["remove", "remove"],
      ["cleanup", "cleanup"],
      ["recover", "recover"],
      ["startRestartable", "startRestartable"],
      ["export", "export"],
      ["export stopped", "export"],
      ["archive", "archive"],
      ["copyFrom", "copyFrom"],
      ["copyTo", "copyTo"],
      ["extractArchive", "extractArchive"],
      ["diff", "diff"],
      ["commit", "commit"],
      ["prune", "prune"],
      ["pruneVolumes", "pruneVolumes"],
      ["removeVolume", "removeVolume"],
      ["attach", "attach"],
      ["pause", "pause"],
      ["unpause", "unpause"],
    ];
    for (const [call, method] of refusedNames) {
      const got = out[call!] as { message: string; hint: string };
      expect(got).not.toBe("worked");
      expect(got.message).toBe(
        `Engine.${method} needs the rootless engine's user namespace, which this process is not in (a running Node or Bun process cannot enter one: it has threads)`,
      );
      expect(got.hint).toContain("`pivot unshare bun app.ts`");
    }
    expect(out.inspect).toBe("running");
    expect(out.list).toEqual(["done", "k", "up"]);
    // (The log also holds the runtime's cgroup warning: conmon logs its stderr.)
    expect(out.logs).toEndWith("hello\n");
    // exec joins the container's user namespace from outside: the nested identity map.
    expect(out.exec).toEqual({ code: 0, out: ["0", "0", "1", "1", "1", "65536"] });
    expect(out.volumes).toEqual(["vol"]);
    expect(out.killed).toBe(137);
    expect(out.renamed).toBe("renamed");
    expect(out.stopped).toBe("exited");
    expect(out.wait).toBe(137);
    // Nothing was touched: the same containers, no new one, nothing half-removed, no mount,
    // no file copied out; the pivot command still sees and exports them.
    expect(readdirSync(join(u.store, "containers")).sort()).toEqual(before);
    expect(existsSync(join(dir, "bye"))).toBe(false);
    expect(mountsUnder(u.work)).toEqual([]);
    expect(u.ok(["ps", "-a", "--format", "{{.Names}}"]).trim().split("\n").sort()).toEqual([
      "done",
      "k",
      "up",
    ]);
    const tar = join(dir, "done.tar");
    u.ok(["export", "-o", tar, "done"]);
    expect(u.run(["tar", "-xOf", tar, "./bye"]).stdout).toBe("bye\n");
    expect(u.ok(["volume", "ls", "-q"]).trim()).toBe("vol");
    u.ok(["rm", "-f", "up", "done", "k"]);
    u.ok(["volume", "rm", "vol"]);
    await until("the user's processes to end", () => u.pids().length === 0);
  }, 120_000);

  test("under `pivot unshare`, as the hint says, the same program runs, exports and removes containers", async () => {
    const file = program(
      "inside.ts",
      `
const e = new Engine({ warn: () => {} });
const out: Record<string, unknown> = {};
const h = await e.run({
  image: ${JSON.stringify(ROOTLESS_IMAGE)},
  cmd: ["sh", "-c", "id -u; stat -c %u /owned/f"],
  autoRemove: true,
});
let text = "";
for await (const c of h.stdout!) text += c;
out.attached = { code: await h.wait(), text };
await e.run({
  image: ${JSON.stringify(ROOTLESS_IMAGE)},
  name: "bg",
  cmd: ["sh", "-c", "echo mine > /mine; echo ready; exec sleep 600"],
  detach: true,
});
for (let i = 0; i < 200; i++) {
  let logs = "";
  for await (const l of e.logs("bg")) logs += (l as { text?: string }).text ?? "";
  if (logs.includes("ready")) break;
  await Bun.sleep(50);
}
const chunks: Buffer[] = [];
for await (const c of await e.export("bg")) chunks.push(c as Buffer);
const tar = Buffer.concat(chunks);
out.exported = { ustar: tar.subarray(257, 262).toString(), mine: tar.includes("./mine") };
out.diff = (await e.diff("bg")).map((c) => \`\${c.kind} \${c.path}\`);
await e.remove("bg", { force: true });
out.left = (await e.list({ all: true })).map((c) => c.name);
console.log(JSON.stringify(out));
`,
    );
    const r = u.pivot(["unshare", BUN, file]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.attached).toEqual({ code: 0, text: "0\n1000\n" });
    expect(out.exported).toEqual({ ustar: "ustar", mine: true });
    expect(out.diff).toContain("A /mine");
    expect(out.left).toEqual([]);
    await until("the user's processes to end", () => u.pids().length === 0);
    expect(mountsUnder(u.work)).toEqual([]);
    expect(readdirSync(join(u.store, "containers"))).toEqual([]);
  }, 120_000);
});
