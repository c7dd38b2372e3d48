// The engine's event file without containers: appends, the start-over past 1 MiB, readers from
// --since and live ones across it, Docker's filters and line format.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  formatEvent,
  parseEventFilters,
  parseTimeFlag,
  renderEventTemplate,
} from "../../src/cli/events.ts";
import { volumeMountAttributes } from "../../src/engine/container-events.ts";
import {
  type EngineEvent,
  emitEvent,
  eventsFile,
  matchesEventFilters,
  readEvents,
} from "../../src/engine/events.ts";
import type { MountSpec } from "../../src/engine/types.ts";
import { BUN } from "../helpers.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function runRoot(): { runRoot: string; warn: (m: string) => void; warnings: string[] } {
  const d = mkdtempSync(join(tmpdir(), "pivot-events-unit-"));
  dirs.push(d);
  const warnings: string[] = [];
  return { runRoot: d, warn: (m) => warnings.push(m), warnings };
}

const event = (over: Partial<EngineEvent> = {}): EngineEvent => ({
  Type: "container",
  Action: "start",
  Actor: { ID: "abc123", Attributes: { name: "web", image: "busybox", team: "a" } },
  scope: "local",
  time: 1,
  timeNano: 1_000_000_000,
  ...over,
});

describe("the event file", () => {
  test("past the size limit it starts over, and --since reads the previous file first", async () => {
    const ctx = runRoot();
    const since = new Date(Date.now() - 1000);
    const count = 5000; // ~1.4 MB of lines: one start-over
    for (let i = 0; i < count; i++)
      emitEvent(ctx, "container", "start", `id${i}`, { name: `c${i}`, pad: "x".repeat(150) });
    expect(existsSync(`${eventsFile(ctx.runRoot)}.1`)).toBe(true);
    expect(statSync(eventsFile(ctx.runRoot)).size).toBeLessThan(1 << 20);
    const ids: string[] = [];
    for await (const e of readEvents(ctx.runRoot, { since, until: new Date() }))
      ids.push(e.Actor.ID);
    expect(ids.length).toBe(count);
    expect(ids[0]).toBe("id0");
    expect(ids.at(-1)).toBe(`id${count - 1}`);
    expect(ctx.warnings).toEqual([]);
  });

  test("a live reader sees only what comes after it began, across a start-over", async () => {
    const ctx = runRoot();
    emitEvent(ctx, "container", "create", "before");
    const seen: string[] = [];
    const reader = (async () => {
      for await (const e of readEvents(ctx.runRoot, { pollMs: 5 })) {
        seen.push(e.Actor.ID);
        if (e.Actor.ID === "last") return;
      }
    })();
    await Bun.sleep(50);
    for (let i = 0; i < 4000; i++)
      emitEvent(ctx, "container", "start", `n${i}`, { pad: "y".repeat(250) });
    emitEvent(ctx, "container", "die", "last");
    await reader;
    expect(existsSync(`${eventsFile(ctx.runRoot)}.1`)).toBe(true);
    expect(seen[0]).toBe("n0");
    expect(seen.at(-1)).toBe("last");
    expect(seen).not.toContain("before");
  });

  test("writers in several processes start the file over once each time it fills, and say nothing (every event recorded)", async () => {
    const ctx = runRoot();
    const writer = `import { emitEvent } from ${JSON.stringify(join(import.meta.dir, "../../src/engine/events.ts"))};
const ctx = { runRoot: process.argv[1], warn: (m) => console.error(m) };
for (let i = 0; i < 3000; i++) emitEvent(ctx, "container", "start", process.argv[2] + "-" + i, { pad: "z".repeat(200) });`;
    const procs = ["a", "b", "c", "d", "e", "f"].map((who) =>
      Bun.spawn([BUN, "-e", writer, ctx.runRoot, who], { stdout: "ignore", stderr: "pipe" }),
    );
    try {
      const stderr = await Promise.all(procs.map((p) => new Response(p.stderr).text()));
      expect(await Promise.all(procs.map((p) => p.exited))).toEqual([0, 0, 0, 0, 0, 0]);
      // An append whose file another process had just renamed was recorded all the same.
      expect(stderr.join("")).toBe("");
    } finally {
      for (const p of procs) p.kill("SIGKILL");
    }
    const file = eventsFile(ctx.runRoot);
    // The kept file is a full one, not one a second rename put over it.
    expect(statSync(`${file}.1`).size).toBeGreaterThan(1 << 20);
    expect(existsSync(`${file}.lock`)).toBe(false);
  }, 60_000);

  test("a start-over another process is doing (its lock) is left to it; a lock left by a killed one is broken", () => {
    const ctx = runRoot();
    const file = eventsFile(ctx.runRoot);
    emitEvent(ctx, "container", "create", "first");
    writeFileSync(file, `${"x".repeat(1 << 20)}\n`, { flag: "a" });
    writeFileSync(`${file}.lock`, "");
    emitEvent(ctx, "container", "start", "second");
    expect(existsSync(`${file}.1`)).toBe(false);
    // Older than any start-over takes: its holder was killed. Broken, then the next write renames.
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${file}.lock`, old, old);
    emitEvent(ctx, "container", "stop", "third");
    expect(existsSync(`${file}.lock`)).toBe(false);
    emitEvent(ctx, "container", "die", "fourth");
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(existsSync(file)).toBe(false);
    expect(ctx.warnings).toEqual([]);
  });

  test("--until alone replays the recorded events up to it, as Docker's", async () => {
    const ctx = runRoot();
    emitEvent(ctx, "container", "create", "one");
    emitEvent(ctx, "container", "start", "one");
    const until = new Date();
    await Bun.sleep(5);
    emitEvent(ctx, "container", "die", "one"); // after it: left out
    const seen: string[] = [];
    for await (const e of readEvents(ctx.runRoot, { until })) seen.push(e.Action);
    expect(seen).toEqual(["create", "start"]);
  });

  test("an event that cannot be written is a warning, never a failure", () => {
    const ctx = runRoot();
    rmSync(ctx.runRoot, { recursive: true });
    // A file where the directory should be: the write fails.
    writeFileSync(ctx.runRoot, "not a directory");
    emitEvent(ctx, "volume", "create", "v1");
    expect(ctx.warnings.length).toBe(1);
    expect(ctx.warnings[0]).toContain("the volume create event was not recorded");
  });
});

describe("filters and format", () => {
  test("OR within a key, AND across keys; labels by key or key=value", () => {
    const e = event();
    const m = (f: Record<string, string[]>) => matchesEventFilters(e, f);
    expect(m({})).toBe(true);
    expect(m({ container: ["web"] })).toBe(true);
    expect(m({ container: ["abc"] })).toBe(true); // an id prefix
    expect(m({ container: ["db", "web"], event: ["start"] })).toBe(true);
    expect(m({ container: ["web"], event: ["die"] })).toBe(false);
    expect(m({ image: ["busybox"] })).toBe(true);
    expect(m({ label: ["team"] })).toBe(true);
    expect(m({ label: ["team=b"] })).toBe(false);
    expect(m({ label: ["constructor"] })).toBe(false); // own attributes only
    expect(m({ type: ["volume"] })).toBe(false);
  });
  test("container, volume and network filters take a prefix of the name too, image one without the tag, as Docker's", () => {
    const e = event({
      Actor: {
        ID: "abc123",
        Attributes: { name: "web-2", image: "docker.io/library/busybox:1.36" },
      },
      from: "docker.io/library/busybox:1.36",
    });
    const m = (f: Record<string, string[]>) => matchesEventFilters(e, f);
    expect(m({ container: ["web"] })).toBe(true); // Docker's fuzzy match
    expect(m({ container: ["db"] })).toBe(false);
    for (const image of ["busybox", "docker.io/library/busybox", "docker.io/library/busybox:1.36"])
      expect(m({ image: [image] })).toBe(true);
    expect(m({ image: ["busybox:latest"] })).toBe(false);
    expect(m({ image: ["bus"] })).toBe(false); // no prefix of an image's name
    const tagged = event({
      Type: "image",
      Action: "tag",
      Actor: { ID: "sha256:0123abcd", Attributes: { name: "localhost/app:2" } },
    });
    expect(matchesEventFilters(tagged, { image: ["localhost/app"] })).toBe(true);
    expect(matchesEventFilters(tagged, { image: ["sha256:0123"] })).toBe(true);
    expect(matchesEventFilters(tagged, { container: ["localhost/app"] })).toBe(false);
    const net = event({
      Type: "network",
      Action: "connect",
      Actor: { ID: "f00d", Attributes: { name: "backend-net", container: "abc123" } },
    });
    expect(matchesEventFilters(net, { network: ["backend"] })).toBe(true);
  });
  test("Docker's line and the flags' checks", () => {
    const line = formatEvent(event({ timeNano: Date.UTC(2026, 10, 29, 10, 0, 0, 123) * 1e6 }));
    expect(line).toMatch(
      /^2026-11-29T\d\d:\d\d:00\.123000000[+-]\d\d:\d\d container start abc123 \(image=busybox, name=web, team=a\)\n$/,
    );
    expect(parseEventFilters(["type=image", "event=pull", "event=tag"])).toEqual({
      type: ["image"],
      event: ["pull", "tag"],
    });
    expect(() => parseEventFilters(["since=1"])).toThrow("not a filter of events");
    expect(parseTimeFlag("since", "1764410000").getTime()).toBe(1764410000 * 1000);
    expect(Math.abs(parseTimeFlag("since", "10m").getTime() - (Date.now() - 600_000))).toBeLessThan(
      1000,
    );
    expect(() => parseTimeFlag("until", "soon")).toThrow("--until soon: not a time");
  });

  test("--format: every event has Docker's fields (a volume's ID, Status and From are empty), Attributes a map", () => {
    const volume = event({
      Type: "volume",
      Action: "create",
      Actor: { ID: "data", Attributes: { driver: "local" } },
    });
    expect(
      renderEventTemplate("{{.Type}} [{{.ID}}] [{{.Status}}] [{{.From}}] {{.Actor.ID}}", volume),
    ).toBe("volume [] [] [] data\n");
    expect(renderEventTemplate("{{.Actor.Attributes.name}}", volume)).toBe("<no value>\n");
    // json leaves the unset ones out, as Docker's omitempty does.
    expect(JSON.parse(renderEventTemplate("{{json .}}", volume))).toEqual(volume);
    const started = event({ status: "start", id: "abc123", from: "busybox" });
    expect(renderEventTemplate("{{.Status}} {{.ID}} {{.From}}", started)).toBe(
      "start abc123 busybox\n",
    );
  });

  test("time flags take Go's durations, as Docker's (1h30m, 1.5h, 500ms); 0 is Unix time 0", () => {
    const ago = (v: string, ms: number) =>
      expect(Math.abs(parseTimeFlag("since", v).getTime() - (Date.now() - ms))).toBeLessThan(1000);
    ago("1h30m", 5_400_000);
    ago("1.5h", 5_400_000);
    ago("90s", 90_000);
    ago("500ms", 500);
    ago("0s", 0);
    expect(parseTimeFlag("since", "0").getTime()).toBe(0);
    expect(parseTimeFlag("since", "1764410000.5").getTime()).toBe(1764410000500);
  });
});

describe("volume mount events", () => {
  const record = (
    mounts: MountSpec[],
    volumes = [{ name: "data", target: "/d", anonymous: false }],
  ) => ({
    volumes,
    options: { image: "busybox", mounts },
  });

  test('one per volume, with Docker\'s attribute keys; read-only from its -v, propagation ""', () => {
    const r = record([
      { type: "volume", source: "data", target: "/d", readOnly: true },
      { type: "bind", source: "/srv", target: "/s", propagation: "rshared" },
    ]);
    expect(volumeMountAttributes("c1", r)).toEqual([
      {
        name: "data",
        attributes: {
          container: "c1",
          destination: "/d",
          driver: "local",
          propagation: "",
          "read/write": "false",
        },
      },
    ]);
  });

  test("an image's volume (no -v) is read/write; a container without volumes has none", () => {
    const anonymous = [{ name: "f00", target: "/cache", anonymous: true }];
    expect(volumeMountAttributes("c1", record([], anonymous))[0]?.attributes["read/write"]).toBe(
      "true",
    );
    expect(volumeMountAttributes("c1", record([], []))).toEqual([]);
  });
});
