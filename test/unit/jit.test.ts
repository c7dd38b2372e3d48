// The compiled binary's JIT (src/util/jit.ts, src/cli/jit.ts): which commands want it, and its
// policy, scaled up for a command's start-up and normal again before long work in JavaScript,
// observed through Bun.unsafe.setJITPolicy, replaced by a recorder for the test. The re-run with
// the JIT of a program the front door started without it: test/integration/binary.test.ts.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { longWorkAhead, noteCommandLine, wantsTheJit } from "../../src/cli/jit.ts";
import { unpackLayer } from "../../src/image/unpack.ts";
import { buildTar } from "../fixtures/image-tar.ts";

type Unsafe = { setJITPolicy: (scale: number) => void };
const unsafe = Bun.unsafe as unknown as Unsafe;
const original = unsafe.setJITPolicy;
let calls: number[];
let work: string;

beforeEach(() => {
  calls = [];
  unsafe.setJITPolicy = (scale: number) => {
    calls.push(scale);
  };
  work = mkdtempSync(join(tmpdir(), "pivot-jit-"));
});

afterEach(() => {
  unsafe.setJITPolicy = original;
  rmSync(work, { recursive: true, force: true });
});

test("unpacking a layer sets the normal policy, whichever command asked for it", async () => {
  const tar = join(work, "layer.tar");
  writeFileSync(tar, buildTar([{ name: "etc/x", content: "x\n" }]));
  await unpackLayer(tar, join(work, "layer"));
  expect(calls).toContain(1);
});

test("the commands moving data through JavaScript want the JIT; the short ones do not", () => {
  const wants = (line: string) => {
    const [command, ...args] = line.split(" ");
    return `${line}: ${wantsTheJit(command!, args)}`;
  };
  for (const c of ["create", "start", "stop", "rm", "ps", "inspect", "run", "exec", "events"])
    expect(wants(c)).toBe(`${c}: false`);
  for (const c of ["image ls", "image rm x", "container ls -a", "builder prune -f", "image"])
    expect(wants(c)).toBe(`${c}: false`);
  for (const c of ["pull", "push", "load", "save", "import", "export", "commit", "cp", "logs"])
    expect(wants(c)).toBe(`${c}: true`);
  for (const c of ["image pull x", "container cp a:/b c", "builder build .", "image --x load"])
    expect(wants(c)).toBe(`${c}: true`);
});

test("without the front door's mark, long work sets the normal policy and runs on", () => {
  noteCommandLine(["pull", "x"]); // no PIVOT_DOOR_JIT_OFF: nothing to run again
  longWorkAhead();
  expect(calls).toEqual([1]);
});

/**
 * Runs FN as a program the front door started (its mark and BUN_JSC_useJIT=0 in the environment),
 * then puts the environment back and forgets the command line: no later longWorkAhead in this
 * test process may run it again.
 */
function asStartedByTheDoor(fn: () => void): void {
  const saved = { mark: process.env.PIVOT_DOOR_JIT_OFF, jit: process.env.BUN_JSC_useJIT };
  try {
    process.env.PIVOT_DOOR_JIT_OFF = "1";
    process.env.BUN_JSC_useJIT = "0";
    fn();
  } finally {
    for (const [k, v] of [
      ["PIVOT_DOOR_JIT_OFF", saved.mark],
      ["BUN_JSC_useJIT", saved.jit],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    noteCommandLine([]);
  }
}

test("the front door's mark and its JIT setting leave the environment at start", () => {
  asStartedByTheDoor(() => {
    noteCommandLine(["ps"]);
    expect(process.env.PIVOT_DOOR_JIT_OFF).toBeUndefined();
    expect(process.env.BUN_JSC_useJIT).toBeUndefined();
  });
});

test("a run again that cannot happen (the program's file gone) goes on without the JIT", () => {
  const proc = process as unknown as { execve: (...args: unknown[]) => never };
  const realExecve = proc.execve;
  const tried: unknown[][] = [];
  proc.execve = (...args: unknown[]) => {
    tried.push(args);
    throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
  };
  try {
    asStartedByTheDoor(() => {
      noteCommandLine(["pull", "a b", ""]);
      expect(() => longWorkAhead()).not.toThrow();
      expect(tried.map((a) => a[1])).toEqual([[process.argv0, "pull", "a b", ""]]);
      expect(calls).toEqual([1]); // the normal policy, as a program started without the door
    });
  } finally {
    proc.execve = realExecve;
  }
});
