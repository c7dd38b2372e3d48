// The instructions that change only the image's config (ENV, LABEL, USER, EXPOSE, VOLUME,
// STOPSIGNAL, CMD, ENTRYPOINT, HEALTHCHECK): pure functions from an instruction and the config so
// far to the fields it sets. The builder (builder.ts) makes the image and its history entry.
import { PivotError } from "../../errors.ts";
import type { HealthConfig, ImageConfig } from "../../image/types.ts";
import { parseHealthDuration, parseHealthRetries } from "../health-config.ts";
import {
  DockerfileError,
  expandWord,
  expandWords,
  type Instruction,
  type Lookup,
  parseJsonArray,
  parseKeyValues,
} from "./dockerfile.ts";

export type RuntimeConfig = NonNullable<ImageConfig["config"]>;

/** Env entries (KEY=VALUE) as an ordered map. */
export function envMap(env: string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env ?? []) {
    const eq = e.indexOf("=");
    if (eq < 0) m.set(e, "");
    else m.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return m;
}

/** The instructions configChange handles. */
export const CONFIG_INSTRUCTIONS = new Set([
  "ENV",
  "LABEL",
  "USER",
  "EXPOSE",
  "VOLUME",
  "STOPSIGNAL",
  "CMD",
  "ENTRYPOINT",
  "HEALTHCHECK",
]);

/** HEALTHCHECK's flags (Docker's), each `--name=value`. */
export const HEALTHCHECK_FLAGS = [
  "interval",
  "timeout",
  "start-period",
  "start-interval",
  "retries",
];

/**
 * The config fields INST sets, given the config so far; `shell` runs the shell forms of CMD and
 * ENTRYPOINT. (ENTRYPOINT's reset of an inherited CMD is the builder's: it knows the stage.)
 */
export function configChange(
  inst: Instruction,
  config: RuntimeConfig,
  lookup: Lookup,
  shell: string[],
  esc = "\\",
): Partial<RuntimeConfig> {
  const one = () => expandWord(inst.args.trim(), lookup, esc);
  switch (inst.keyword) {
    case "ENV": {
      const env = envMap(config.Env);
      for (const [k, v] of parseKeyValues(inst.args, lookup, "ENV")) {
        env.delete(k); // a changed variable moves to the end, as Docker orders them
        env.set(k, v);
      }
      return { Env: [...env].map(([k, v]) => `${k}=${v}`) };
    }
    case "LABEL": {
      const labels = { ...(config.Labels ?? {}) };
      for (const [k, v] of parseKeyValues(inst.args, lookup, "LABEL")) labels[k] = v;
      return { Labels: labels };
    }
    case "USER": {
      const user = one();
      if (user === "") throw new DockerfileError("USER needs a user name or id");
      return { User: user };
    }
    case "STOPSIGNAL": {
      const signal = one();
      if (signal === "") throw new DockerfileError("STOPSIGNAL needs a signal name or number");
      return { StopSignal: signal };
    }
    case "EXPOSE":
      return {
        ExposedPorts: exposedPorts(config.ExposedPorts, expandWords(inst.args, lookup, esc)),
      };
    case "VOLUME": {
      const paths = inst.json ?? expandWords(inst.args, lookup, esc);
      if (paths.length === 0) throw new DockerfileError("VOLUME needs at least one path");
      const volumes = { ...(config.Volumes ?? {}) };
      for (const p of paths) {
        if (p.trim() === "") throw new DockerfileError("VOLUME: empty path");
        volumes[p] = {};
      }
      return { Volumes: volumes };
    }
    case "CMD":
      return { Cmd: inst.json ?? [...shell, inst.args] };
    case "ENTRYPOINT":
      return { Entrypoint: inst.json ?? [...shell, inst.args] };
    case "HEALTHCHECK":
      return { Healthcheck: healthcheck(inst) };
    default:
      throw new DockerfileError(`${inst.keyword} does not change the config`);
  }
}

/** EXPOSE's ports (PORT, PORT/udp, FIRST-LAST[/proto]) added to those of the config so far. */
export function exposedPorts(
  before: Record<string, object> | undefined,
  ports: string[],
): Record<string, object> {
  const out = { ...(before ?? {}) };
  for (const p of ports) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
    if (!m)
      throw new DockerfileError(`EXPOSE: invalid port "${p}"`, {
        hint: "give PORT, PORT/tcp, PORT/udp or FIRST-LAST",
      });
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (first < 1 || last > 65535 || last < first)
      throw new DockerfileError(`EXPOSE: invalid port range "${p}"`);
    for (let n = first; n <= last; n++) out[`${n}/${(m[3] ?? "tcp").toLowerCase()}`] = {};
  }
  return out;
}

/**
 * HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D] [--retries=N]
 * CMD command | CMD ["exec", "form"] | NONE, parsed as Docker's: the shell form is one
 * CMD-SHELL string, not expanded (Docker substitutes no variables in HEALTHCHECK); unset options
 * stay unset (the defaults are applied when it runs), and NONE ignores them, as Docker does.
 */
export function healthcheck(inst: Instruction): HealthConfig {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(inst.args);
  if (!m)
    throw new DockerfileError("HEALTHCHECK needs CMD and a command, or NONE", {
      hint: "e.g. HEALTHCHECK --interval=30s CMD wget -q -O- http://localhost/ || exit 1",
    });
  const type = m[1]!.toUpperCase();
  const rest = m[2]!.trim();
  if (type === "NONE") {
    if (rest !== "") throw new DockerfileError("HEALTHCHECK NONE takes no arguments");
    return { Test: ["NONE"] };
  }
  if (type !== "CMD")
    throw new DockerfileError(`unknown type "${m[1]}" in HEALTHCHECK (try CMD)`, {
      hint: "HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE",
    });
  const json = parseJsonArray(rest);
  const command = json ?? (rest === "" ? [] : [rest]);
  if (command.length === 0) throw new DockerfileError("missing command after HEALTHCHECK CMD");
  const out: HealthConfig = { Test: [json ? "CMD" : "CMD-SHELL", ...command] };
  const f = inst.flags;
  try {
    const durations = [
      ["interval", "Interval"],
      ["timeout", "Timeout"],
      ["start-period", "StartPeriod"],
      ["start-interval", "StartInterval"],
    ] as const;
    for (const [flag, field] of durations) {
      if (f[flag] === undefined) continue;
      const ns = parseHealthDuration(`--${flag}`, f[flag]);
      if (ns !== 0) out[field] = ns;
    }
    if (f.retries !== undefined) {
      const n = parseHealthRetries("--retries", f.retries);
      if (n !== 0) out.Retries = n;
    }
  } catch (err) {
    if (!(err instanceof PivotError)) throw err;
    throw new DockerfileError(`HEALTHCHECK ${err.message}`, {
      hint: err.hint ?? "durations look like 30s, 1m30s or 500ms; --retries is a whole number",
    });
  }
  return out;
}
