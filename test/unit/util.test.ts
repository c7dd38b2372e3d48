// Small helpers: random ids without node:crypto, writes to a file descriptor without a stream.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
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
    Bun.write(
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
});
