// Docker's health checks, the pure part: Go's durations (HEALTHCHECK --interval=1m30s, the
// `--health-*` flags), the defaults Docker's daemon applies, the effective config of a container
// (its options over its image's, as moby merges them), and the history text of HEALTHCHECK.
import type { HealthConfig } from "../image/types.ts";
import { EngineError } from "./errors.ts";

export type { HealthConfig };

const NS_PER_MS = 1_000_000;
const SECOND = 1_000_000_000;

/** Docker's defaults for a zero or absent field (moby daemon/health.go). */
export const HEALTH_DEFAULTS = {
  interval: 30 * SECOND,
  timeout: 30 * SECOND,
  startPeriod: 0,
  startInterval: 5 * SECOND,
  retries: 3,
} as const;

/** The shortest non-zero duration Docker accepts (container.MinimumDuration). */
export const MINIMUM_DURATION = NS_PER_MS;

/** The output of a check that is kept (Docker's maxOutputLen), and how many results. */
export const MAX_OUTPUT_BYTES = 4096;
export const MAX_LOG_ENTRIES = 5;

const UNITS: Record<string, number> = {
  ns: 1,
  us: 1_000,
  µs: 1_000,
  μs: 1_000,
  ms: NS_PER_MS,
  s: SECOND,
  m: 60 * SECOND,
  h: 3600 * SECOND,
};

/** Go's time.ParseDuration ("1m30s", "1.5s", "500ms", "0") in nanoseconds; null: invalid. */
export function parseGoDuration(text: string): number | null {
  let s = text;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1;
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") return null;
  let total = 0;
  while (s !== "") {
    const m = /^(\d*)(?:\.(\d*))?([a-zµμ]+)/.exec(s);
    if (!m || (m[1] === "" && (m[2] ?? "") === "")) return null;
    const unit = UNITS[m[3]!];
    if (unit === undefined) return null;
    total += Number(m[1] || 0) * unit;
    if (m[2]) total += Math.round(Number(`0.${m[2]}`) * unit);
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/** Go's Duration.String(): "0s", "500ms", "1.5s", "5m0s", "1h0m0s". */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return "0s";
  const sign = ns < 0 ? "-" : "";
  let u = Math.abs(ns);
  if (u < SECOND) {
    if (u < 1_000) return `${sign}${u}ns`;
    if (u < NS_PER_MS) return `${sign}${decimal(u, 1_000, 3)}µs`;
    return `${sign}${decimal(u, NS_PER_MS, 6)}ms`;
  }
  const h = Math.floor(u / (3600 * SECOND));
  u -= h * 3600 * SECOND;
  const m = Math.floor(u / (60 * SECOND));
  u -= m * 60 * SECOND;
  const s = `${decimal(u, SECOND, 9)}s`;
  if (h > 0) return `${sign}${h}h${m}m${s}`;
  if (m > 0) return `${sign}${m}m${s}`;
  return sign + s;
}

function decimal(value: number, unit: number, digits: number): string {
  const whole = Math.floor(value / unit);
  const rest = value - whole * unit;
  if (rest === 0) return String(whole);
  return `${whole}.${String(rest).padStart(digits, "0").replace(/0+$/, "")}`;
}

/**
 * A duration option's text (HEALTHCHECK --interval=..., --health-timeout ...) in nanoseconds, as
 * Docker checks it: Go's syntax, 0 meaning the default, else at least 1ms and not negative.
 */
export function parseHealthDuration(name: string, text: string): number {
  const ns = parseGoDuration(text);
  if (ns === null)
    throw new EngineError(`${name}: invalid duration "${text}"`, {
      hint: 'give a number with a unit: "30s", "1m30s", "500ms" (ns, us, ms, s, m, h)',
    });
  if (ns < 0) throw new EngineError(`${name} cannot be negative (${text})`);
  if (ns !== 0 && ns < MINIMUM_DURATION)
    throw new EngineError(`${name} cannot be less than 1ms (${text})`);
  return ns;
}

/** --retries / --health-retries: a whole number, not negative (0: the default, 3). */
export function parseHealthRetries(name: string, text: string): number {
  if (!/^[+-]?\d+$/.test(text.trim()))
    throw new EngineError(`${name}: invalid number "${text}"`, {
      hint: "give how many consecutive failures make the container unhealthy, e.g. 3",
    });
  const n = Number(text);
  if (n < 0) throw new EngineError(`${name} cannot be negative (${n})`);
  if (n > 2 ** 31 - 1) throw new EngineError(`${name}: ${text} is out of range`);
  return n;
}

/** Refuses what Docker's daemon refuses in a container's health config. */
export function checkHealthConfig(h: HealthConfig): void {
  const durations: [string, number | undefined][] = [
    ["Interval", h.Interval],
    ["Timeout", h.Timeout],
    ["StartPeriod", h.StartPeriod],
    ["StartInterval", h.StartInterval],
  ];
  for (const [name, v] of durations) {
    if (v === undefined || v === 0) continue;
    if (!Number.isInteger(v) || v < MINIMUM_DURATION)
      throw new EngineError(`${name} in Healthcheck cannot be less than 1ms`);
  }
  if (h.Retries !== undefined && (!Number.isInteger(h.Retries) || h.Retries < 0))
    throw new EngineError("Retries in Healthcheck cannot be negative");
  const kind = h.Test?.[0];
  if (h.Test !== undefined && h.Test.length > 0) {
    if (kind !== "NONE" && kind !== "CMD" && kind !== "CMD-SHELL")
      throw new EngineError(`unknown health check type ${kind}`, {
        hint: 'Test starts with "CMD", "CMD-SHELL" or "NONE"',
      });
    if (kind !== "NONE" && h.Test.length < 2)
      throw new EngineError(`the health check ${kind} has no command`);
  }
}

/**
 * The health check a container runs: its own options over its image's, field by field (moby's
 * merge: an unset field takes the image's), null when there is none or it is ["NONE"].
 */
export function effectiveHealthcheck(
  user: HealthConfig | undefined,
  image: HealthConfig | undefined,
): HealthConfig | null {
  const merged = mergeHealthcheck(user, image);
  if (!merged?.Test || merged.Test.length === 0 || merged.Test[0] === "NONE") return null;
  return merged;
}

/** Docker's Config.Healthcheck of a container: its options over its image's (moby's merge). */
export function mergeHealthcheck(
  user: HealthConfig | undefined,
  image: HealthConfig | undefined,
): HealthConfig | undefined {
  if (user === undefined) return image;
  if (image === undefined) return user;
  const out: HealthConfig = { ...user };
  if (!user.Test || user.Test.length === 0) setIf(out, "Test", image.Test);
  for (const k of ["Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"] as const)
    if (!user[k]) setIf(out, k, image[k]);
  return out;
}

function setIf<K extends keyof HealthConfig>(o: HealthConfig, k: K, v: HealthConfig[K]): void {
  if (v !== undefined) o[k] = v;
}

/** A field with Docker's default for zero or absent, in milliseconds. */
export function healthTimings(h: HealthConfig): {
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  startIntervalMs: number;
  retries: number;
} {
  const ms = (v: number | undefined, d: number) => Math.max(1, Math.round((v || d) / NS_PER_MS));
  return {
    intervalMs: ms(h.Interval, HEALTH_DEFAULTS.interval),
    timeoutMs: ms(h.Timeout, HEALTH_DEFAULTS.timeout),
    startPeriodMs: Math.round((h.StartPeriod || HEALTH_DEFAULTS.startPeriod) / NS_PER_MS),
    startIntervalMs: ms(h.StartInterval, HEALTH_DEFAULTS.startInterval),
    retries: h.Retries && h.Retries > 0 ? h.Retries : HEALTH_DEFAULTS.retries,
  };
}

/**
 * The history line of HEALTHCHECK as Docker's classic builder writes it: Go's %q of the
 * *HealthConfig, `HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "5m0s" "3s" "0s" "0s" '\x03'}`.
 */
export function healthHistoryText(h: HealthConfig): string {
  const test = (h.Test ?? []).map(goQuote).join(" ");
  const d = (v: number | undefined) => goQuote(formatGoDuration(v ?? 0));
  return `HEALTHCHECK &{[${test}] ${d(h.Interval)} ${d(h.Timeout)} ${d(h.StartPeriod)} ${d(h.StartInterval)} ${goQuoteRune(h.Retries ?? 0)}}`;
}

const GO_ESCAPES: Record<string, string> = {
  "\x07": "\\a",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\v": "\\v",
};

function goEscape(ch: string, quote: string): string {
  if (ch === quote || ch === "\\") return `\\${ch}`;
  if (GO_ESCAPES[ch]) return GO_ESCAPES[ch];
  const cp = ch.codePointAt(0)!;
  if (ch === " " || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch)) return ch;
  if (cp < 0x80) return `\\x${cp.toString(16).padStart(2, "0")}`;
  if (cp < 0x10000) return `\\u${cp.toString(16).padStart(4, "0")}`;
  return `\\U${cp.toString(16).padStart(8, "0")}`;
}

/** Go's strconv.Quote. */
export function goQuote(s: string): string {
  return `"${[...s].map((c) => goEscape(c, '"')).join("")}"`;
}

/** Go's %q of an integer: a quoted character, `'\x03'` for 3. */
export function goQuoteRune(n: number): string {
  return `'${goEscape(String.fromCodePoint(n), "'")}'`;
}
