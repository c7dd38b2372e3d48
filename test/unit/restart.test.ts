// Restart policies, the pure parts: `--restart` parsing and validation, Docker's restart rule,
// the backoff, and the STATUS text of a restarting container.
import { describe, expect, test } from "bun:test";
import { EngineError } from "../../src/engine/errors.ts";
import { statusText } from "../../src/engine/listing.ts";
import {
  checkRestartOptions,
  nextBackoff,
  parseRestartPolicy,
  shouldRestart,
} from "../../src/engine/restart-state.ts";
import type { ContainerInfo } from "../../src/engine/types.ts";

describe("--restart", () => {
  test("Docker's forms", () => {
    expect(parseRestartPolicy("no")).toEqual({ policy: "no" });
    expect(parseRestartPolicy("")).toEqual({ policy: "no" });
    expect(parseRestartPolicy("always")).toEqual({ policy: "always" });
    expect(parseRestartPolicy("unless-stopped")).toEqual({ policy: "unless-stopped" });
    expect(parseRestartPolicy("on-failure")).toEqual({ policy: "on-failure" });
    expect(parseRestartPolicy("on-failure:5")).toEqual({ policy: "on-failure", maxRetries: 5 });
    expect(parseRestartPolicy("on-failure:0")).toEqual({ policy: "on-failure", maxRetries: 0 });
  });

  test("what Docker refuses", () => {
    for (const [text, message] of [
      ["sometimes", 'unknown policy "sometimes"'],
      ["Always", 'unknown policy "Always"'],
      [":3", "no policy before the colon"],
      ["on-failure:", "must be a whole number"],
      ["on-failure:1.5", "must be a whole number"],
      ["on-failure:-2", "cannot be negative"],
      ["always:1", "can only be used with on-failure, not always"],
      ["unless-stopped:2", "can only be used with on-failure"],
      ["no:1", "can only be used with on-failure"],
    ] as const) {
      expect(() => parseRestartPolicy(text)).toThrow(message);
      expect(() => parseRestartPolicy(text)).toThrow(EngineError);
    }
  });

  test("with --rm, and without conmon", () => {
    expect(() =>
      checkRestartOptions(
        { image: "x", autoRemove: true, restart: { policy: "on-failure" } },
        true,
      ),
    ).toThrow("Conflicting options: --restart and --rm");
    expect(() =>
      checkRestartOptions({ image: "x", autoRemove: true, restart: { policy: "no" } }, true),
    ).not.toThrow();
    expect(() => checkRestartOptions({ image: "x", restart: { policy: "always" } }, false)).toThrow(
      "restart policies need conmon",
    );
    expect(() => checkRestartOptions({ image: "x" }, false)).not.toThrow();
  });
});

describe("restart rule (moby's restartmanager)", () => {
  test("on-failure: non-zero exits only, up to max-retries (0: no limit)", () => {
    const p = { policy: "on-failure", maxRetries: 2 } as const;
    expect(shouldRestart(p, 3, 0, false)).toBe(true);
    expect(shouldRestart(p, 3, 1, false)).toBe(true);
    expect(shouldRestart(p, 3, 2, false)).toBe(false);
    expect(shouldRestart(p, 0, 0, false)).toBe(false);
    expect(shouldRestart({ policy: "on-failure" }, 1, 1000, false)).toBe(true);
  });

  test("always and unless-stopped: any exit; nothing after a manual stop", () => {
    for (const policy of ["always", "unless-stopped"] as const) {
      expect(shouldRestart({ policy }, 0, 50, false)).toBe(true);
      expect(shouldRestart({ policy }, 137, 0, false)).toBe(true);
      expect(shouldRestart({ policy }, 137, 0, true)).toBe(false);
    }
    expect(shouldRestart({ policy: "on-failure" }, 1, 0, true)).toBe(false);
    expect(shouldRestart({ policy: "no" }, 1, 0, false)).toBe(false);
  });

  test("backoff: 100 ms doubled to a minute, back to 100 ms after a 10 s run", () => {
    const steps: number[] = [];
    let d = 0;
    for (let i = 0; i < 12; i++) {
      d = nextBackoff(d, 50);
      steps.push(d);
    }
    expect(steps).toEqual([
      100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000,
    ]);
    expect(nextBackoff(60_000, 9_999)).toBe(60_000);
    expect(nextBackoff(60_000, 10_000)).toBe(100);
  });
});

test("STATUS of a restarting container, as Docker's", () => {
  const now = Date.parse("2024-01-01T00:00:10Z");
  const c = {
    state: { status: "restarting", exitCode: 3, finishedAt: "2024-01-01T00:00:08Z" },
  } as unknown as ContainerInfo;
  expect(statusText(c, now)).toBe("Restarting (3) 2 seconds ago");
});
