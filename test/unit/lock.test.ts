import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { breakIfStale, isAlive, withFileLock } from "../../src/image/lock.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "pivot-lock-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A PID that is not running: a child that has exited and been reaped. */
function deadPid(): number {
  const child = Bun.spawnSync(["sh", "-c", "echo $$"]);
  return Number(child.stdout.toString().trim());
}

describe("file locks", () => {
  test("the lock file holds the owner's PID while held, and is gone after", async () => {
    const path = join(dir, "a.lock");
    const seen = await withFileLock(path, async () => Bun.file(path).text());
    expect(seen).toBe(`${process.pid}\n`);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("callers queue: their critical sections never overlap", async () => {
    const path = join(dir, "q.lock");
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 5 }, () =>
        withFileLock(path, async () => {
          inside++;
          most = Math.max(most, inside);
          await Bun.sleep(5);
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
  });

  test("a lock whose owner is dead is taken over", async () => {
    const path = join(dir, "dead.lock");
    writeFileSync(path, `${deadPid()}\n`);
    expect(await withFileLock(path, async () => "taken", { timeoutMs: 2000 })).toBe("taken");
  });

  test("an empty lock file (its writer killed before the PID) is taken over once old", async () => {
    const path = join(dir, "empty.lock");
    writeFileSync(path, "");
    const old = new Date(Date.now() - 10_000);
    utimesSync(path, old, old);
    expect(await withFileLock(path, async () => "taken", { timeoutMs: 2000 })).toBe("taken");
  });

  test("breaking an old empty lock never removes a fresh (still empty) one taken meanwhile", async () => {
    const path = join(dir, "race.lock");
    writeFileSync(path, "");
    const old = new Date(Date.now() - 10_000);
    utimesSync(path, old, old);
    // Judged stale; before it is moved aside, another breaker removes it and a third process
    // takes the lock, its file created and not written yet: empty too, as the stale one was.
    await breakIfStale(path, () => {
      rmSync(path);
      writeFileSync(path, "");
    });
    // The fresh lock is put back, not removed: its holder still holds it.
    expect(Date.now() - statSync(path).mtimeMs).toBeLessThan(5000);
    expect(readdirSync(dir)).toEqual(["race.lock"]);
  });

  test("breaking a dead owner's lock never removes a fresh one that got its inode and clock tick", async () => {
    const path = join(dir, "reuse.lock");
    writeFileSync(path, `${deadPid()}\n`);
    // ext4 hands a freed inode to the next file made in the directory, and its timestamps have the
    // kernel's tick (~4 ms): a lock taken within the tick its dead owner's lock was written in
    // has the same inode and modification time. The tick is stood for by a time set on both.
    const tick = new Date(1_700_000_000_000);
    utimesSync(path, tick, tick);
    const staleIno = statSync(path).ino;
    let freshIno = -1;
    await breakIfStale(path, () => {
      rmSync(path); // another breaker's removal
      writeFileSync(path, "1\n"); // and a live process's fresh lock
      utimesSync(path, tick, tick);
      freshIno = statSync(path).ino;
    });
    if (freshIno !== staleIno) console.warn("the inode was not reused: nothing shown here");
    // The fresh lock is put back: its holder still holds it.
    expect(readFileSync(path, "utf8")).toBe("1\n");
    expect(readdirSync(dir)).toEqual(["reuse.lock"]);
  });

  test("a lock held by a live process times out, naming the holder and what to do", async () => {
    const path = join(dir, "held.lock");
    writeFileSync(path, "1\n"); // PID 1 is always alive
    await expect(
      withFileLock(path, async () => "never", { timeoutMs: 300, what: "the test" }),
    ).rejects.toThrow(/timed out waiting for the lock on the test .*held by PID 1\)\n {2}hint: /);
  });
});

describe("leftovers of killed processes", () => {
  test("private PID files of dead processes are removed; a live process's are kept", async () => {
    const path = join(dir, "left.lock");
    // Taken once before: this process has looked for leftovers of this lock already.
    await withFileLock(path, async () => {});
    const dead = deadPid();
    // What a process killed between writing its PID file and unlinking it leaves behind, and
    // one killed while it moved a stale lock aside.
    writeFileSync(`${path}.${dead}-k3j4h5`, `${dead}\n`);
    writeFileSync(`${path}.stale-${dead}-abc12`, `${dead}\n`);
    // A live process's (PID 1): it may be about to link it.
    writeFileSync(`${path}.1-zz9`, "1\n");
    // Not this lock's: another lock's file, and a name that only starts like ours.
    writeFileSync(join(dir, `other.lock.${dead}-abc`), `${dead}\n`);
    writeFileSync(`${path}.${dead}-x.bak`, "");
    // A stale lock: the leftovers go when a process takes it over (its owner died).
    writeFileSync(path, `${dead}\n`);
    expect(await withFileLock(path, async () => "taken", { timeoutMs: 2000 })).toBe("taken");
    expect(readdirSync(dir).sort()).toEqual(
      [`left.lock.${dead}-x.bak`, "left.lock.1-zz9", `other.lock.${dead}-abc`].sort(),
    );
  });

  test("a process's first use of a free lock removes them too", async () => {
    const path = join(dir, "free.lock");
    const dead = deadPid();
    writeFileSync(`${path}.${dead}-q1w2e3`, `${dead}\n`);
    expect(await withFileLock(path, async () => "taken", { timeoutMs: 2000 })).toBe("taken");
    expect(readdirSync(dir)).toEqual([]);
  });
});

test("a zombie owner counts as dead: its lock is broken", async () => {
  // sh backgrounds `true` and execs sleep, which never reaps it: `true` stays a zombie.
  const parent = Bun.spawn(["sh", "-c", "true & exec sleep 5"]);
  try {
    let zombie = 0;
    for (let i = 0; i < 200 && !zombie; i++) {
      await Bun.sleep(10);
      for (const task of readdirSync(`/proc/${parent.pid}/task`)) {
        let children = "";
        try {
          children = readFileSync(`/proc/${parent.pid}/task/${task}/children`, "utf8");
        } catch {}
        for (const c of children.trim().split(" ").filter(Boolean).map(Number)) {
          const stat = readFileSync(`/proc/${c}/stat`, "utf8");
          if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") zombie = c;
        }
      }
    }
    expect(zombie).toBeGreaterThan(0);
    expect(isAlive(zombie)).toBe(false);
    expect(isAlive(parent.pid)).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "pivot-lock-zombie-"));
    try {
      const lock = join(dir, "x.lock");
      writeFileSync(lock, `${zombie}\n`);
      expect(await withFileLock(lock, async () => "taken", { timeoutMs: 2000 })).toBe("taken");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    parent.kill("SIGKILL");
    await parent.exited;
  }
});
