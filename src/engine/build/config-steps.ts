// The instructions that change only the image's config (ENV, LABEL, USER, EXPOSE, VOLUME,
// STOPSIGNAL, CMD, ENTRYPOINT): pure functions from an instruction and the config so far to the
// fields it sets. The builder (builder.ts) makes the image and its history entry.
import type { ImageConfig } from "../../image/types.ts";
import {
  DockerfileError,
  expandWord,
  expandWords,
  type Instruction,
  type Lookup,
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
]);

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
