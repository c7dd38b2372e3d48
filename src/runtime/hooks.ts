// Running OCI hooks from the runtime's side: the state JSON on stdin, a timeout, clear failures.
import { PivotError } from "../errors.ts";
import type { Hook, State } from "../oci/spec.ts";
import { childProcess } from "../util/child-process.ts";

export class HookError extends PivotError {}

/** Runs one hook; rejects if it cannot start, exits non-zero or outlives its timeout. */
export function runHook(hook: Hook, state: State, kind: string, index: number): Promise<void> {
  const label = `${kind} hook ${index} (${hook.path})`;
  return new Promise((resolve, reject) => {
    const argv = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
    const child = childProcess().spawn(hook.path, argv.slice(1), {
      argv0: argv[0],
      env: Object.fromEntries(
        (hook.env ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]),
      ),
      stdio: ["pipe", "inherit", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const timer = hook.timeout
      ? setTimeout(() => {
          child.kill("SIGKILL");
          reject(new HookError(`${label} timed out after ${hook.timeout} seconds`));
        }, hook.timeout * 1000)
      : null;
    child.on("error", (err) => {
      if (timer) clearTimeout(timer);
      reject(
        new HookError(`${label} could not be started: ${err.message}`, {
          hint: "check the hook's path in config.json",
        }),
      );
    });
    child.on("exit", (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve();
      else {
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        reject(new HookError(`${label} ${how}${stderr ? `: ${stderr.trim()}` : ""}`));
      }
    });
    child.stdin?.on("error", () => {});
    child.stdin?.end(JSON.stringify(state));
  });
}

/** Runs hooks in order; the first failure stops the rest. */
export async function runHooks(
  hooks: Hook[] | undefined,
  state: State,
  kind: string,
): Promise<void> {
  for (const [i, hook] of (hooks ?? []).entries()) await runHook(hook, state, kind, i);
}

/** Runs hooks whose failure is only a warning (poststart, poststop). */
export async function runHooksWarnOnly(
  hooks: Hook[] | undefined,
  state: State,
  kind: string,
  warn: (message: string) => void,
): Promise<void> {
  for (const [i, hook] of (hooks ?? []).entries()) {
    try {
      await runHook(hook, state, kind, i);
    } catch (err) {
      warn((err as Error).message);
    }
  }
}
