// Container logs without containers: the log settings' checks, LogWriter's size limit, and the
// reader's tail, chunking and following of a log that starts over.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logConfigOf, parseLogOptFlags } from "../../src/engine/log-config.ts";
import { readLogs } from "../../src/engine/log-reader.ts";
import { formatLogLines, LogWriter } from "../../src/engine/monitor.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), "pivot-logs-unit-"));
  dirs.push(d);
  return d;
}

const T = "2026-11-29T10:00:00.000000000+00:00";
const logLines = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `${T} stdout F line ${from + i}\n`).join("");

async function collect(path: string, options: Parameters<typeof readLogs>[1] = {}) {
  const out: string[] = [];
  for await (const e of readLogs(path, options)) out.push(e.text);
  return out;
}

describe("logConfigOf", () => {
  test("defaults, json-file taken for k8s-file, sizes", () => {
    expect(logConfigOf({})).toEqual({ driver: "k8s-file" });
    expect(logConfigOf({ logDriver: "json-file", logOptions: { "max-size": "10m" } })).toEqual({
      driver: "k8s-file",
      maxSize: 10 * 1024 * 1024,
    });
    expect(logConfigOf({ logOptions: { "max-size": "-1", "max-file": "1" } })).toEqual({
      driver: "k8s-file",
    });
    expect(logConfigOf({ logDriver: "none" })).toEqual({ driver: "none" });
  });
  test("refuses what it cannot do", () => {
    // A string from a command line: Object's own properties are no drivers either.
    const driver = (d: string) => ({ logDriver: d }) as Parameters<typeof logConfigOf>[0];
    expect(() => logConfigOf(driver("journald"))).toThrow('unknown log driver "journald"');
    expect(() => logConfigOf(driver("constructor"))).toThrow('unknown log driver "constructor"');
    expect(() => logConfigOf({ logOptions: { "max-file": "2" } })).toThrow("only one log file");
    expect(() => logConfigOf({ logOptions: { tag: "x" } })).toThrow('unknown log option "tag"');
    expect(() => logConfigOf({ logOptions: { "max-size": "0" } })).toThrow("above 0");
    expect(() => logConfigOf({ logDriver: "none", logOptions: { "max-size": "1k" } })).toThrow(
      "takes no options",
    );
  });
  test("--log-opt KEY=VALUE, the value may hold '='", () => {
    expect(parseLogOptFlags(["max-size=1k", "labels=a=b"])).toEqual({
      "max-size": "1k",
      labels: "a=b",
    });
    expect(() => parseLogOptFlags(["=1k"])).toThrow(`invalid --log-opt "=1k"`);
  });
});

describe("LogWriter", () => {
  test("starts over in a new file rather than grow past max-size, lines kept whole", () => {
    const path = join(scratch(), "ctr.log");
    const w = new LogWriter(path, { driver: "k8s-file", maxSize: 1000 });
    for (let i = 0; i < 100; i++) w.write("stdout", `message number ${i}\n`);
    w.close();
    const text = readFileSync(path, "utf8");
    expect(statSync(path).size).toBeLessThanOrEqual(1000);
    expect(text.endsWith(" stdout F message number 99\n")).toBe(true);
    for (const line of text.trimEnd().split("\n"))
      expect(line).toMatch(/ stdout F message number \d+$/);
  });
  test("counts what the file held already (a restarted container appends)", () => {
    const path = join(scratch(), "ctr.log");
    const old = `${T} stdout F old output\n`;
    writeFileSync(path, old.repeat(Math.floor(990 / old.length)));
    const w = new LogWriter(path, { driver: "k8s-file", maxSize: 1000 });
    w.write("stderr", "one more line\n");
    w.close();
    expect(readFileSync(path, "utf8")).toMatch(/^\S+ stderr F one more line\n$/);
  });
  test("a character split across two reads of the pipe is logged whole, as conmon logs it", async () => {
    const path = join(scratch(), "ctr.log");
    const w = new LogWriter(path);
    const bytes = Buffer.from("héllo wörld\n");
    // Split inside the two-byte é, then inside ö: each read ends mid-character.
    w.write("stdout", bytes.subarray(0, 2));
    w.write("stdout", bytes.subarray(2, 9));
    w.write("stdout", bytes.subarray(9));
    // Output that ends inside a character: what there is, at the close.
    w.write("stderr", Buffer.from("é").subarray(0, 1));
    w.close();
    expect((await collect(path)).join("")).toBe("héllo wörld\n\ufffd");
  });
  test("the none driver writes nothing", () => {
    const path = join(scratch(), "ctr.log");
    const w = new LogWriter(path, { driver: "none" });
    w.write("stdout", "hi\n");
    w.close();
    expect(() => statSync(path)).toThrow();
  });
});

describe("readLogs", () => {
  test("--tail finds the last lines from the end, a partial last line left for later", async () => {
    const path = join(scratch(), "ctr.log");
    writeFileSync(path, `${logLines(0, 50)}${T} stdout F unfinish`);
    expect(await collect(path, { tail: 2 })).toEqual(["line 48\n", "line 49\n"]);
    expect(await collect(path, { tail: 0 })).toEqual([]);
    expect((await collect(path, { tail: 500 })).length).toBe(50);
    expect((await collect(path)).length).toBe(50);
  });
  test("a log of several chunks, a multi-byte character across a chunk's edge", async () => {
    const path = join(scratch(), "ctr.log");
    // Lines of 1000 bytes + "é" (2 bytes): over 3 MiB, so chunk edges fall everywhere.
    const body = `${"a".repeat(1000)}é`;
    const count = 3200;
    writeFileSync(path, Array.from({ length: count }, () => `${T} stdout F ${body}\n`).join(""));
    const texts = await collect(path);
    expect(texts.length).toBe(count);
    expect(texts.every((t) => t === `${body}\n`)).toBe(true);
    expect(await collect(path, { tail: 1 })).toEqual([`${body}\n`]);
  });
  test("following goes on in the new file renamed into the log's place", async () => {
    const dir = scratch();
    const path = join(dir, "ctr.log");
    writeFileSync(path, logLines(0, 3));
    let step = 0;
    const seen: string[] = [];
    for await (const e of readLogs(path, {
      follow: true,
      pollMs: 5,
      done: () => step >= 3,
    })) {
      seen.push(e.text.trim());
      if (e.text === "line 2\n") {
        // The rest of the old file, then a new file that grows past the old one's size.
        writeFileSync(path, logLines(3, 4), { flag: "a" });
        writeFileSync(join(dir, "next"), logLines(4, 40));
        renameSync(join(dir, "next"), path);
        step = 3;
      }
    }
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => `line ${i}`));
  });
  test("formatLogLines and readLogs agree on partial lines", async () => {
    const path = join(scratch(), "ctr.log");
    writeFileSync(path, formatLogLines("stdout", "a\nb", T) + formatLogLines("stdout", "c\n", T));
    expect(await collect(path)).toEqual(["a\n", "b", "c\n"]);
  });
});
