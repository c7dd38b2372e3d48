// The eBPF device program (cgroups/devicefilter.ts) as a launcher step: the first step of a
// container's plan (run by the launcher as the host's root, before the setup process exists and
// joins the cgroup), or a plan of its own for `update`. The program stays attached after the
// launcher exits: an attachment lives as long as the cgroup.

import type { DeviceFilter } from "../cgroups/devicefilter.ts";
import { runHostSteps } from "./host-plan.ts";
import type { PlanStep } from "./plan.ts";
import { Op } from "./wire.ts";

export function deviceFilterStep(filter: DeviceFilter): PlanStep {
  return {
    op: Op.AttachDeviceFilter,
    args: [filter.dir, filter.program, filter.license],
    text: `attach the eBPF device program (${filter.summary}; ${filter.program.length / 8} instructions) to ${filter.dir}, replacing any before it`,
  };
}

/** Runs the launcher on a plan of the one step: `update` replacing a container's program. */
export function attachDeviceFilter(filter: DeviceFilter): Promise<void> {
  return runHostSteps([deviceFilterStep(filter)]);
}
