// The JIT and a command's start-up. The compiled binary starts with JavaScriptCore's tier-up
// thresholds scaled up (scripts/build-binary.sh, --compile-jit-policy): a command's start-up is code
// that runs once, and compiling it is work for nothing on a machine whose other core is busy with
// the container (docs/benchmarks.md, "Session 7"). Work that runs long in JavaScript (a container's
// output pumped to the terminal and the log, a tar stream, a pull) wants the normal policy back:
// under the scaled one a function called a million times stays in the interpreter, ~20x slower.
// From the sources, and in a program that imports the library, the policy is Bun's own.

/**
 * Engine commands whose whole run is start-up: a few files and a launcher, no stream of data
 * through JavaScript. Every other command (pull, load, import, save, export, commit, cp, diff,
 * logs, stats, top, attach, ...) gets the normal policy before it starts.
 */
const SHORT_COMMANDS = new Set([
  "create",
  "start",
  "stop",
  "restart",
  "kill",
  "rm",
  "ps",
  "inspect",
  "wait",
  "rename",
  "pause",
  "unpause",
  "port",
  "container-cleanup",
  "mounts",
  "path",
  "volume",
  "network",
  "images",
  "rmi",
  "tag",
  "login",
  "logout",
  // Start-up until the container runs; they call startupOver() then.
  "run",
  "exec",
]);

/** Whether `pivot COMMAND` keeps the scaled policy past its first step. */
export function isShortCommand(command: string): boolean {
  return SHORT_COMMANDS.has(command);
}

/** Sets the JIT's normal policy: start-up is over (a no-op outside a compiled Bun binary). */
export function startupOver(): void {
  (
    globalThis as { Bun?: { unsafe?: { setJITPolicy?: (scale: number) => void } } }
  ).Bun?.unsafe?.setJITPolicy?.(1);
}
