// `pivot healthcheck run CONTAINER` (podman's command): the container's health check once, its
// result recorded; exits 0 when it passed, 1 when it failed (printing the health then, as podman
// prints "unhealthy"), 125 when it cannot run (no check, not running).
import type { Engine } from "../engine/engine.ts";
import { parseArgs, UsageError } from "./args.ts";
import { writeOut } from "./output.ts";

const USAGE = "usage: pivot healthcheck run CONTAINER";

export async function healthcheckCommand(engine: Engine, args: string[]): Promise<number> {
  const p = parseArgs(args, [{ name: "help" }, { name: "timer", value: true }], 2);
  if (p.flags.has("help")) {
    writeOut(`${USAGE}\n`);
    return 0;
  }
  const [sub, ref] = p.positionals;
  if (sub !== "run" || ref === undefined || p.rest.length > 0)
    throw new UsageError(sub !== "run" ? `unknown healthcheck command ${sub ?? ""}` : USAGE, {
      hint: USAGE,
    });
  // pivot-timer's periodic check (health-timer.ts): quiet, its exit code the timer's.
  const timerRun = p.flags.get("timer")?.[0];
  if (timerRun !== undefined) process.exit(await engine.healthcheckTimer(ref, timerRun));
  const { passed, health } = await engine.healthcheckRun(ref);
  if (!passed) writeOut(`${health.Status}\n`);
  // Ended here: a child of a timed-out check that left its process group may still hold the
  // output pipes, which would keep this process waiting for nothing.
  process.exit(passed ? 0 : 1);
}
