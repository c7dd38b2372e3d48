// Docker's health rules without containers: what a result does to the status (health-status.ts),
// the output kept, and the run flags (src/cli/health-flags.ts).
import { describe, expect, test } from "bun:test";
import { parseArgs } from "../../src/cli/args.ts";
import { HEALTH_FLAGS, healthOptions } from "../../src/cli/health-flags.ts";
import {
  type HealthResult,
  LimitedOutput,
  nextHealth,
  startingHealth,
} from "../../src/engine/health-status.ts";

const started = "2026-01-01T00:00:00.000Z";
const at = (s: number, code: number): HealthResult => {
  const t = new Date(Date.parse(started) + s * 1000).toISOString();
  return { Start: t, End: t, ExitCode: code, Output: `${code}` };
};

describe("nextHealth (moby's handleProbeResult)", () => {
  test("failures count from the first; retries of them make it unhealthy; a success heals", () => {
    const h = { Test: ["CMD", "x"], Retries: 2 };
    let s = nextHealth(startingHealth(), at(1, 1), h, started);
    expect([s.Status, s.FailingStreak]).toEqual(["starting", 1]);
    s = nextHealth(s, at(2, 7), h, started);
    expect([s.Status, s.FailingStreak]).toEqual(["unhealthy", 2]);
    s = nextHealth(s, at(3, 0), h, started);
    expect([s.Status, s.FailingStreak]).toEqual(["healthy", 0]);
    s = nextHealth(s, at(4, 1), h, started);
    expect([s.Status, s.FailingStreak]).toEqual(["healthy", 1]);
    expect(s.Log.map((l) => l.ExitCode)).toEqual([1, 7, 0, 1]);
  });

  test("within the start period a starting container's failures do not count; after it they do", () => {
    const h = { Test: ["CMD", "x"], StartPeriod: 10e9 };
    let s = nextHealth(startingHealth(), at(5, 1), h, started);
    expect([s.Status, s.FailingStreak]).toEqual(["starting", 0]);
    for (const t of [11, 12, 13]) s = nextHealth(s, at(t, 1), h, started);
    // Docker's default of 3 retries.
    expect([s.Status, s.FailingStreak]).toEqual(["unhealthy", 3]);
    // Once healthy, the start period no longer forgives.
    const healthy = nextHealth(startingHealth(), at(1, 0), h, started);
    expect(nextHealth(healthy, at(2, 1), h, started).FailingStreak).toBe(1);
  });

  test("the log keeps the last 5 results", () => {
    let s = startingHealth();
    for (let i = 0; i < 7; i++) s = nextHealth(s, at(i, i % 2), { Test: ["CMD", "x"] }, started);
    expect(s.Log.map((l) => l.Start)).toEqual([2, 3, 4, 5, 6].map((i) => at(i, 0).Start));
  });

  test("output: the first 4096 bytes, then ...", () => {
    const o = new LimitedOutput();
    o.write(new TextEncoder().encode("a".repeat(4000)));
    o.write(new TextEncoder().encode("b".repeat(200)));
    expect(o.text()).toBe(`${"a".repeat(4000)}${"b".repeat(96)}...`);
  });
});

describe("--health-* flags", () => {
  const parse = (args: string[]) => healthOptions(parseArgs(args, HEALTH_FLAGS));

  test("each flag sets its field only; none given: the image's check", () => {
    expect(parse([])).toBeUndefined();
    expect(
      parse([
        "--health-cmd",
        "curl -f http://x/",
        "--health-interval=1m",
        "--health-timeout",
        "2s",
        "--health-start-period",
        "0s",
        "--health-start-interval",
        "500ms",
        "--health-retries",
        "5",
      ]),
    ).toEqual({
      Test: ["CMD-SHELL", "curl -f http://x/"],
      Interval: 60e9,
      Timeout: 2e9,
      StartInterval: 500e6,
      Retries: 5,
    });
    expect(parse(["--no-healthcheck"])).toEqual({ Test: ["NONE"] });
  });

  test("Docker's refusals", () => {
    expect(() => parse(["--no-healthcheck", "--health-retries", "2"])).toThrow(
      "--no-healthcheck conflicts with --health-* options",
    );
    expect(() => parse(["--health-interval", "1"])).toThrow('invalid duration "1"');
    expect(() => parse(["--health-retries", "two"])).toThrow('invalid number "two"');
  });
});
