// `run`/`create`'s health check flags, as Docker's CLI reads them: --health-cmd (CMD-SHELL),
// --health-interval/-timeout/-start-period/-start-interval (Go durations), --health-retries,
// --no-healthcheck (["NONE"], refused beside any of the others). Unset fields take the image's.
import {
  type HealthConfig,
  parseHealthDuration,
  parseHealthRetries,
} from "../engine/health-config.ts";
import { boolFlag, type FlagSpec, flag, type Parsed, UsageError } from "./args.ts";

const DURATIONS = [
  ["health-interval", "Interval"],
  ["health-timeout", "Timeout"],
  ["health-start-period", "StartPeriod"],
  ["health-start-interval", "StartInterval"],
] as const;

export const HEALTH_FLAGS: FlagSpec[] = [
  { name: "health-cmd", value: true },
  ...DURATIONS.map(([name]) => ({ name, value: true })),
  { name: "health-retries", value: true },
  { name: "no-healthcheck" },
];

/** The health check the flags give; undefined when none is given (the image's applies). */
export function healthOptions(p: Parsed): HealthConfig | undefined {
  const h: HealthConfig = {};
  const cmd = flag(p, "health-cmd");
  if (cmd !== undefined && cmd !== "") h.Test = ["CMD-SHELL", cmd];
  for (const [name, field] of DURATIONS) {
    const v = flag(p, name);
    if (v === undefined) continue;
    const ns = parseHealthDuration(`--${name}`, v);
    if (ns !== 0) h[field] = ns;
  }
  const retries = flag(p, "health-retries");
  if (retries !== undefined) {
    const n = parseHealthRetries("--health-retries", retries);
    if (n !== 0) h.Retries = n;
  }
  const given = Object.keys(h).length > 0;
  if (boolFlag(p, "no-healthcheck")) {
    if (given) throw new UsageError("--no-healthcheck conflicts with --health-* options");
    return { Test: ["NONE"] };
  }
  return given ? h : undefined;
}
