// Where a container's output is kept (--log-driver) and how large its log may grow (--log-opt).
// The one log format is conmon's k8s-file (monitor.ts); Docker's json-file is taken for it, as
// podman does, so that Docker command lines work. A size limit is conmon's --log-size-max: a log
// that would grow past it starts over in a new file (Docker's json-file with max-file=1 does
// the same); both monitors, conmon and the attached one (LogWriter), apply it.
import { ContainerConfigError, parseSize } from "./config.ts";
import type { ContainerOptions } from "./types.ts";

export interface LogConfig {
  /** "k8s-file": ctr.log in the container's directory; "none": no log at all. */
  driver: "k8s-file" | "none";
  /** Bytes the log may hold before it starts over; undefined: no limit. */
  maxSize?: number;
}

/** The drivers accepted, by the names people pass. */
const DRIVERS: Record<string, LogConfig["driver"]> = {
  "k8s-file": "k8s-file",
  "json-file": "k8s-file",
  none: "none",
};

const KNOWN_OPTIONS = ["max-size", "max-file"];

/** The container's log settings, checked: a mistake is refused at create, before anything exists. */
export function logConfigOf(
  options: Pick<ContainerOptions, "logDriver" | "logOptions">,
): LogConfig {
  // A string from a command line or an untyped caller: checked, not trusted.
  const asked: string = options.logDriver ?? "k8s-file";
  const driver = Object.hasOwn(DRIVERS, asked) ? DRIVERS[asked] : undefined;
  if (driver === undefined) {
    throw new ContainerConfigError(`unknown log driver "${asked}"`, {
      hint: "use k8s-file (the default; json-file is taken for it) or none",
    });
  }
  const opts = options.logOptions ?? {};
  const keys = Object.keys(opts);
  if (driver === "none") {
    if (keys.length) {
      throw new ContainerConfigError(`--log-opt ${keys[0]}: the none log driver takes no options`);
    }
    return { driver };
  }
  for (const key of keys) {
    if (!KNOWN_OPTIONS.includes(key)) {
      throw new ContainerConfigError(`unknown log option "${key}" for the ${asked} log driver`, {
        hint: `the options there are: ${KNOWN_OPTIONS.join(", ")}`,
      });
    }
  }
  const maxFile = opts["max-file"];
  if (maxFile !== undefined && maxFile !== "1") {
    throw new ContainerConfigError(`--log-opt max-file=${maxFile}: only one log file is kept`, {
      hint: "leave max-file out (or make it 1): with max-size, the log starts over when full",
    });
  }
  const size = opts["max-size"];
  if (size === undefined || size === "-1") return { driver };
  const maxSize = parseSize(size);
  if (!(maxSize > 0)) {
    throw new ContainerConfigError(`--log-opt max-size=${size}: the size must be above 0`, {
      hint: "e.g. max-size=10m; -1 (or leaving it out) means no limit",
    });
  }
  return { driver, maxSize };
}

/** Parses the --log-opt KEY=VALUE flags into Docker's LogConfig.Config map. */
export function parseLogOptFlags(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq <= 0) {
      throw new ContainerConfigError(`invalid --log-opt "${value}"`, {
        hint: "write it as KEY=VALUE, e.g. --log-opt max-size=10m",
      });
    }
    out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}
