// A container's health on disk: <dir>/health.json, the latest run's (Docker's State.Health and
// the run it belongs to), written under <dir>/health.lock by a temporary file renamed over the
// old, so concurrent checks each count once. A record of an earlier run reads as "starting" with
// that run's log. Light on purpose: inspect and ps read it for every container.
import { join } from "node:path";
import { withFileLock } from "../image/lock.ts";
import {
  type ContainerRecord,
  type RunState,
  readJson,
  writeJsonAtomic,
} from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { containerAttributes, emitEvent } from "./events.ts";
import { effectiveHealthcheck, type HealthConfig } from "./health-config.ts";
import {
  type HealthResult,
  type HealthState,
  nextHealth,
  startingHealth,
} from "./health-status.ts";

interface HealthFile extends HealthState {
  runId: string;
}

/** The check a container runs (its options over its image's, kept at create), null: none. */
export function healthcheckOf(r: ContainerRecord): HealthConfig | null {
  return effectiveHealthcheck(r.healthcheck, undefined);
}

/** The health of the container's latest run; null when it has no check or never started. */
export function healthOf(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  rs: RunState | null,
): HealthState | null {
  if (rs === null || healthcheckOf(r) === null) return null;
  const f = readJson<HealthFile>(join(ctx.containers.dir(id), "health.json"));
  if (f === null) return startingHealth();
  if (f.runId !== rs.runId) return startingHealth(f.Log);
  return { Status: f.Status, FailingStreak: f.FailingStreak, Log: f.Log };
}

/**
 * RESULT of a check of run RS recorded (Docker's rule, nextHealth), unless the container was
 * started again meanwhile: that result is dropped, as Docker drops a cancelled probe's. A new
 * status is an event.
 */
export function recordHealth(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  rs: RunState,
  h: HealthConfig,
  result: HealthResult,
): Promise<HealthState> {
  const dir = ctx.containers.dir(id);
  return withFileLock(
    join(dir, "health.lock"),
    async () => {
      const now = ctx.containers.runState(id);
      const prev = healthOf(ctx, id, r, now) ?? startingHealth();
      if (now?.runId !== rs.runId) return prev;
      const next = nextHealth(prev, result, h, rs.startedAt);
      writeJsonAtomic(join(dir, "health.json"), { runId: rs.runId, ...next } satisfies HealthFile);
      // Docker's event of a change of status, "health_status: healthy".
      if (next.Status !== prev.Status)
        emitEvent(ctx, "container", `health_status: ${next.Status}`, id, containerAttributes(r));
      return next;
    },
    { what: `the health of container ${r.name}`, timeoutMs: 30_000 },
  );
}
