// Signal names and numbers as `kill` accepts them: "KILL", "SIGKILL", "9".
import { PivotError } from "../errors.ts";
import { os } from "../util/lazy-require.ts";

/** node:os's table, read on first use: most commands never name a signal. */
const byName = () => os().constants.signals as Record<string, number>;

/** Parses a signal given by name (with or without SIG) or number. */
export function parseSignal(signal: string | number): number {
  if (typeof signal === "number") return checkNumber(signal, String(signal));
  const s = signal.trim().toUpperCase();
  if (/^\d+$/.test(s)) return checkNumber(Number(s), signal);
  const name = s.startsWith("SIG") ? s : `SIG${s}`;
  const rt = /^SIGRTMIN(?:\+(\d+))?$/.exec(name) ?? /^SIGRTMAX(?:-(\d+))?$/.exec(name);
  if (rt) return name.startsWith("SIGRTMIN") ? 34 + Number(rt[1] ?? 0) : 64 - Number(rt[1] ?? 0);
  const n = byName()[name];
  if (n === undefined) {
    throw new PivotError(`unknown signal "${signal}"`, {
      hint: "use a name such as TERM or KILL, or a number",
    });
  }
  return n;
}

function checkNumber(n: number, original: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new PivotError(`invalid signal number "${original}"`);
  return n;
}

export function signalName(n: number): string {
  for (const [name, value] of Object.entries(byName())) if (value === n) return name;
  return String(n);
}
