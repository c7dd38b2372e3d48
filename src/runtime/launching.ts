// What creating and exec'ing a container needs beyond the state files: the config's validation,
// the plan compiler, the launcher client, seccomp and the eBPF device program. Runtime loads this
// module on first use (runtime.ts), so `state`, `start`, `kill` and `delete`, which containerd and
// podman run several times per container, start without it: ~4 ms of cpu less per command
// (perf stat, compiled binary, measured here).

export { applyResources, cgroupDeviceFilter, updateResources } from "../cgroups/limits.ts";
export { parseConfig, validateProcess, validateSpec } from "../oci/validate.ts";
export { listenerState } from "../security/seccomp.ts";
export { SeccompCache } from "../security/seccomp-cache.ts";
export { attachDeviceFilter, deviceFilterStep } from "./cgroup-devices.ts";
export { chdirStep, mountSteps } from "./host-plan.ts";
export { exitCodeOf, launch, launcherPath, spawnLauncher } from "./launcher.ts";
export { compileContainerPlan, compileExecPlan } from "./plan.ts";
