// Which engine commands keep the compiled binary's scaled JIT policy (src/util/jit.ts), and for
// how long. Unpacking a layer and pulling set the normal policy themselves, whatever the command.

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
  "update",
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
  // Start-up until the container runs; they call startupOver() then (and before a pull).
  "run",
  "exec",
]);

/** Whether `pivot COMMAND` keeps the scaled policy past its first step. */
export function isShortCommand(command: string): boolean {
  return SHORT_COMMANDS.has(command);
}

export { startupOver } from "../util/jit.ts";
