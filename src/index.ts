// Pivot's library entry point: the runtime and engine as a typed API for Bun and Node programs.

export {
  parseMountFlag,
  parseTmpfsFlag,
  parseVolumeFlag,
} from "./engine/config.ts";
export {
  type BuildOptions,
  ContainerHandle,
  type CopyOptions,
  Engine,
  EngineError,
  type EngineOptions,
  type ExecOptions as EngineExecOptions,
  type RunOptions,
} from "./engine/engine.ts";
export {
  type Filters,
  matchesFilters,
  parseFilters,
  parseTemplate,
  psFields,
  renderTemplate,
} from "./engine/listing.ts";
export { OciRuntimeCli } from "./engine/oci-runtime.ts";
export { parseRestartPolicy } from "./engine/restart-state.ts";
export type {
  ContainerInfo,
  ContainerOptions,
  DockerVolume,
  LogEntry,
  MountSpec,
  RestartPolicy,
  StatsSample,
  TopResult,
  VolumeInfo,
} from "./engine/types.ts";
export { dockerVolume } from "./engine/volumes.ts";
export {
  ConfigError,
  ContainerIdError,
  LaunchError,
  NotSupportedError,
  PivotError,
} from "./errors.ts";
export { createImage, importRootfs } from "./image/create.ts";
export { loadImages } from "./image/load.ts";
export { familiarString, formatReference, parseReference } from "./image/reference.ts";
export { ImageStore } from "./image/store.ts";
export * as network from "./network/index.ts";
export { defaultSpec } from "./oci/default-spec.ts";
export type * from "./oci/spec.ts";
export { parseConfig, validateSpec } from "./oci/validate.ts";
export * as registry from "./registry/index.ts";
export type { PipedStdio, StdinPipe } from "./runtime/piped-stdio.ts";
export { compileContainerPlan, compileExecPlan, type Plan, type PlanStep } from "./runtime/plan.ts";
export {
  type CreateOptions,
  type ExecOptions,
  Runtime,
  type RuntimeOptions,
} from "./runtime/runtime.ts";
export { defaultSeccompProfile } from "./security/seccomp-default.ts";
export { PIVOT_VERSION } from "./version.ts";
