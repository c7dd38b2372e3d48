// Small helpers: random ids without node:crypto, writes to a file descriptor without a stream.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomHex } from "../../src/util/random.ts";
import { writeAllSync } from "../../src/util/write-fd.ts";

describe("randomHex", () => {
  test("n bytes as 2n lowercase hex characters, different each time", () => {
    const ids = new Set(Array.from({ length: 100 }, () => randomHex(32)));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(randomHex(3)).toMatch(/^[0-9a-f]{6}$/);
  });
});

describe("writeAllSync", () => {
  const dir = mkdtempSync(join(tmpdir(), "pivot-write-fd-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("writes all of a string and of bytes, in order", () => {
    const path = join(dir, "out");
    const fd = openSync(path, "w");
    const big = "x".repeat(1 << 20);
    writeAllSync(fd, "a\n");
    writeAllSync(fd, new TextEncoder().encode(big));
    writeAllSync(fd, "ü\n");
    closeSync(fd);
    expect(readFileSync(path, "utf8")).toBe(`a\n${big}ü\n`);
  });

  test("a reader that went away ends the write quietly", () => {
    // `head -c 1` reads one byte and exits; the writer's next writes get EPIPE.
    const script = join(dir, "writer.ts");
    writeFileSync(
      script,
      `const { writeAllSync } = await import(${JSON.stringify(join(import.meta.dir, "../../src/util/write-fd.ts"))});
       for (let i = 0; i < 64; i++) writeAllSync(1, "y".repeat(65536));
       writeAllSync(2, "done");`,
    );
    const r = Bun.spawnSync(
      [
        "bash",
        "-c",
        `"$0" "$1" | head -c 1 >/dev/null; echo "status=\${PIPESTATUS[0]}"`,
        process.execPath,
        script,
      ],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    expect(r.stderr.toString()).toBe("done");
    expect(r.stdout.toString().trim()).toBe("status=0");
  });

  test("a non-blocking pipe whose reader is behind is waited for, not spun on", () => {
    // Touching process.stdout makes a pipe on fd 1 non-blocking under Bun (and the flag stays
    // on the pipe, for every process that shares it): writes then fail with EAGAIN while the
    // reader sleeps. 8 MiB against a reader that starts after a second: the writer waits.
    const script = join(dir, "nonblocking.ts");
    writeFileSync(
      script,
      `const { writeAllSync } = await import(${JSON.stringify(join(import.meta.dir, "../../src/util/write-fd.ts"))});
       process.stdout;
       const flags = require("node:fs").readFileSync("/proc/self/fdinfo/1", "utf8");
       const nonblocking = (parseInt(/flags:\\s+(\\d+)/.exec(flags)[1], 8) & 0o4000) !== 0;
       const t = process.cpuUsage();
       writeAllSync(1, "w".repeat(8 << 20));
       const u = process.cpuUsage(t);
       writeAllSync(2, JSON.stringify({ nonblocking, cpuMs: (u.user + u.system) / 1000 }));`,
    );
    const r = Bun.spawnSync(
      ["bash", "-c", `"$0" "$1" | { sleep 1; wc -c; }`, process.execPath, script],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    expect(r.stdout.toString().trim()).toBe(String(8 << 20));
    const report = JSON.parse(r.stderr.toString()) as { nonblocking: boolean; cpuMs: number };
    expect(report.nonblocking).toBe(true);
    // Spinning on EAGAIN for that second costs most of it in cpu; waiting, a few ms.
    expect(report.cpuMs).toBeLessThan(250);
  });
});
