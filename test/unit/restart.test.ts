// Restart policies, the pure parts: `--restart` parsing and validation, Docker's restart rule,
// the backoff, and the STATUS text of a restarting container.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ContainerRecord } from "../../src/engine/container-store.ts";
import type { EngineContext } from "../../src/engine/context.ts";
import { EngineError } from "../../src/engine/errors.ts";
import { statusText } from "../../src/engine/listing.ts";
import {
  checkRestartOptions,
  isManuallyStopped,
  markManualStop,
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

  test("with --rm, and without conmon (looked for only when a policy needs it)", () => {
    const yes = () => true;
    const no = () => false;
    expect(() =>
      checkRestartOptions({ image: "x", autoRemove: true, restart: { policy: "on-failure" } }, yes),
    ).toThrow("Conflicting options: --restart and --rm");
    expect(() =>
      checkRestartOptions({ image: "x", autoRemove: true, restart: { policy: "no" } }, yes),
    ).not.toThrow();
    expect(() => checkRestartOptions({ image: "x", restart: { policy: "always" } }, no)).toThrow(
      "restart policies need conmon",
    );
    let asked = false;
    expect(() =>
      checkRestartOptions({ image: "x" }, () => {
        asked = true;
        return false;
      }),
    ).not.toThrow();
    expect(asked).toBe(false);
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
  // A monitor killed before it recorded the exit: no time, and no dangling "ago".
  const unknown = { state: { status: "exited", exitCode: 255, finishedAt: null } };
  expect(statusText(unknown as unknown as ContainerInfo, now)).toBe("Exited (255)");
});

describe("the manual-stop mark", () => {
  const record = (policy: "no" | "always") =>
    ({ name: "web", options: { image: "x", restart: { policy } } }) as unknown as ContainerRecord;
  const ctxOf = (dir: string) => ({ containers: { dir: () => dir } }) as unknown as EngineContext;

  test("is made for a container with a policy, not for one without", () => {
    const dir = mkdtempSync(join(tmpdir(), "pivot-mark-"));
    try {
      expect(markManualStop(ctxOf(dir), "id", record("no"))).toBe(false);
      expect(existsSync(join(dir, "manually-stopped"))).toBe(false);
      expect(markManualStop(ctxOf(dir), "id", record("always"))).toBe(true);
      expect(isManuallyStopped(ctxOf(dir), "id")).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Everything that makes stop, kill and rm -f win over a restart rests on it: a mark that cannot
  // be written is an error naming the path, the errno and what to do, never a silent success.
  test("that cannot be written is an EngineError (a file where the directory should be: ENOTDIR)", () => {
    const work = mkdtempSync(join(tmpdir(), "pivot-mark-"));
    const dir = join(work, "container");
    writeFileSync(dir, "");
    try {
      let err: unknown;
      try {
        markManualStop(ctxOf(dir), "id", record("always"));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EngineError);
      const e = err as EngineError;
      expect(e.message).toBe(
        `cannot mark container web as stopped by hand: ${join(dir, "manually-stopped")}: ENOTDIR (not a directory)`,
      );
      expect(e.code).toBe("ENOTDIR");
      expect(e.hint).toContain("nothing was signalled");
      expect(e.hint).toContain(`Make ${dir} writable`);
      // No policy: nothing to mark, nothing to fail.
      expect(markManualStop(ctxOf(dir), "id", record("no"))).toBe(false);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  test.skipIf(process.getuid?.() !== 0)("on a read-only bind mount (EROFS), as root", () => {
    const dir = mkdtempSync(join(tmpdir(), "pivot-mark-"));
    const run = (...args: string[]) => {
      const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    };
    mkdirSync(join(dir, "c"));
    run("mount", "--bind", join(dir, "c"), join(dir, "c"));
    try {
      run("mount", "-o", "remount,bind,ro", join(dir, "c"));
      expect(() => markManualStop(ctxOf(join(dir, "c")), "id", record("always"))).toThrow(
        /manually-stopped: EROFS \(read-only file system\)$/,
      );
      expect(isManuallyStopped(ctxOf(join(dir, "c")), "id")).toBe(false);
    } finally {
      run("umount", join(dir, "c"));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
