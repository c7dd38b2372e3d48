// Which engine commands want JavaScriptCore's JIT, and how they get it.
//
// The front door (native/front-door.c, installed as `pivot`) starts the compiled program with the
// JIT off: most commands are all start-up (a few files, a launcher), which runs faster without it
// (docs/benchmarks.md, "Session 12"). The commands that move data through JavaScript (a pull, a tar
// stream, a log read line by line) run ~1.6x slower without it, and so run the program again with
// the JIT on: an execve of the same program, arguments and pid, before anything is done. Started
// without the door (the program itself, the sources), the JIT is on and the compiled program's
// scaled policy is set back to normal for the same commands (src/util/jit.ts).
import { startupOver } from "../util/jit.ts";

/** Set by the front door when it, not the caller, turned the JIT off (BUN_JSC_useJIT=0). */
const DOOR_TURNED_JIT_OFF = "PIVOT_DOOR_JIT_OFF";

/** Commands whose work is a stream of data through JavaScript, whatever their arguments. */
const LONG_WORK = new Set([
  "pull",
  "push",
  "load",
  "save",
  "import",
  "export",
  "build",
  "commit",
  "cp",
  "diff",
  "logs",
]);

/** Groups whose subcommand says it: `image pull`, `container cp`, `builder build`. */
const GROUPS = new Set(["image", "container", "builder"]);

/**
 * Whether `pivot COMMAND ARGS` does long work in JavaScript from its start (`run` and `create`
 * only when they pull, which ensureImage says with longWorkAhead).
 */
export function wantsTheJit(command: string, args: readonly string[] = []): boolean {
  if (GROUPS.has(command)) {
    const sub = args.find((a) => !a.startsWith("-"));
    return sub !== undefined && LONG_WORK.has(sub);
  }
  return LONG_WORK.has(command);
}

/** The arguments to run again with the JIT on, when the door turned it off; else null. */
let commandLine: string[] | null = null;

/**
 * At the start of `pivot`: the door's mark, and the JIT setting it made, leave the environment (the
 * processes this one starts begin as they would have), and the arguments are kept for a re-run.
 */
export function noteCommandLine(argv: readonly string[]): void {
  commandLine = null;
  if (process.env[DOOR_TURNED_JIT_OFF] !== "1") return;
  delete process.env[DOOR_TURNED_JIT_OFF];
  delete process.env.BUN_JSC_useJIT;
  commandLine = [...argv];
}

/**
 * Long work in JavaScript begins: with the JIT. A program the door started without it is replaced
 * by itself with it (same pid and stdio, but no descriptor beyond 0-2: Bun marks those it inherits
 * close-on-exec, so the door keeps the JIT on for a caller that passes any; nothing may be held
 * that an exec loses, so call this before a lock, a container or output exists); otherwise the
 * normal policy is set.
 */
export function longWorkAhead(): void {
  const execve = (process as { execve?: (file: string, args: string[], env: object) => never })
    .execve;
  if (commandLine && execve) {
    try {
      execve(process.execPath, [process.argv0, ...commandLine], process.env);
    } catch {
      // The program cannot run again (its file replaced by a rebuild, say): on without the JIT.
    }
  }
  startupOver();
}

export { startupOver };
