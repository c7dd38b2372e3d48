// seccomp: linux.seccomp is validated here and compiled into plain rules that the launcher hands
// to libseccomp one by one (see Op.SeccompInit ... Op.SeccompLoad in src/runtime/wire.ts).
//
// Everything that is a decision lives here, following runc's libcontainer/seccomp: the kernel
// value of each action (with its errno), which flags become which libseccomp attributes, that a
// rule repeating the default action is dropped, and that conditions naming the same argument
// twice become separate rules. The launcher only resolves names and calls libseccomp; a syscall
// name this kernel and libseccomp do not know is skipped there, as runc does.
import { ConfigError, NotSupportedError } from "../errors.ts";
import type { State } from "../oci/spec.ts";

/** Actions of the runtime-spec, as the kernel's SECCOMP_RET_* values (libseccomp's SCMP_ACT_*). */
export const SeccompActionValue: Record<string, number> = {
  SCMP_ACT_KILL: 0x0000_0000,
  SCMP_ACT_KILL_THREAD: 0x0000_0000,
  SCMP_ACT_KILL_PROCESS: 0x8000_0000,
  SCMP_ACT_TRAP: 0x0003_0000,
  SCMP_ACT_ERRNO: 0x0005_0000,
  SCMP_ACT_TRACE: 0x7ff0_0000,
  SCMP_ACT_LOG: 0x7ffc_0000,
  SCMP_ACT_ALLOW: 0x7fff_0000,
  SCMP_ACT_NOTIFY: 0x7fc0_0000,
};

/** Actions whose low 16 bits carry errnoRet. */
const ACTIONS_WITH_ERRNO = new Set(["SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"]);

/** EPERM: the errno of SCMP_ACT_ERRNO (and the data of SCMP_ACT_TRACE) when errnoRet is left out. */
const DEFAULT_ERRNO = 1;

/** The kernel caps a filter's errno at MAX_ERRNO. */
const MAX_ERRNO = 4095;

/** Comparison operators, as libseccomp's enum scmp_compare. */
export const SeccompOperator: Record<string, number> = {
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
};

/** Architectures of the runtime-spec, as libseccomp's names for seccomp_arch_resolve_name(). */
export const SeccompArchName: Record<string, string> = {
  SCMP_ARCH_X86: "x86",
  SCMP_ARCH_X86_64: "x86_64",
  SCMP_ARCH_X32: "x32",
  SCMP_ARCH_ARM: "arm",
  SCMP_ARCH_AARCH64: "aarch64",
  SCMP_ARCH_MIPS: "mips",
  SCMP_ARCH_MIPS64: "mips64",
  SCMP_ARCH_MIPS64N32: "mips64n32",
  SCMP_ARCH_MIPSEL: "mipsel",
  SCMP_ARCH_MIPSEL64: "mipsel64",
  SCMP_ARCH_MIPSEL64N32: "mipsel64n32",
  SCMP_ARCH_PPC: "ppc",
  SCMP_ARCH_PPC64: "ppc64",
  SCMP_ARCH_PPC64LE: "ppc64le",
  SCMP_ARCH_S390: "s390",
  SCMP_ARCH_S390X: "s390x",
  SCMP_ARCH_PARISC: "parisc",
  SCMP_ARCH_PARISC64: "parisc64",
  SCMP_ARCH_RISCV64: "riscv64",
  SCMP_ARCH_LOONGARCH64: "loongarch64",
};

/** libseccomp's enum scmp_filter_attr (the launcher checks these numbers at compile time). */
export const SeccompAttribute = {
  CTL_NNP: 3,
  CTL_TSYNC: 4,
  CTL_LOG: 6,
  CTL_SSB: 7,
  CTL_OPTIMIZE: 8,
  CTL_WAITKILL: 10,
} as const;

/** Filter flags of the runtime-spec (and runc's TSYNC), as the libseccomp attribute that sets them. */
export const SeccompFlagAttribute: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: SeccompAttribute.CTL_TSYNC,
  SECCOMP_FILTER_FLAG_LOG: SeccompAttribute.CTL_LOG,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: SeccompAttribute.CTL_SSB,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: SeccompAttribute.CTL_WAITKILL,
};

/** Above this many rules libseccomp builds a binary tree instead of a linear list (as runc does). */
const OPTIMIZE_ABOVE = 32;

/** Linux system calls have at most six arguments. */
const MAX_ARG_INDEX = 5;

const UINT64_MAX = (1n << 64n) - 1n;

export interface SeccompCondition {
  index: number;
  /** libseccomp's enum scmp_compare. */
  op: number;
  value: bigint;
  valueTwo: bigint;
}

export interface SeccompRule {
  syscall: string;
  /** The kernel action value, errno included. */
  action: number;
  conditions: SeccompCondition[];
  /** For people: e.g. `mkdir -> SCMP_ACT_ERRNO(1)`. */
  text: string;
}

export interface SeccompAttributeSetting {
  attribute: number;
  value: number;
  /** A failure to set it is ignored (an optimisation or runc's implicit default). */
  optional: boolean;
  text: string;
}

/** A profile ready for the launcher. */
export interface CompiledSeccomp {
  defaultAction: number;
  defaultText: string;
  /** libseccomp architecture names, e.g. "x86_64". */
  architectures: string[];
  attributes: SeccompAttributeSetting[];
  rules: SeccompRule[];
  /** Some rule uses SCMP_ACT_NOTIFY. */
  usesNotify: boolean;
  listenerPath?: string;
  listenerMetadata?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

function expectString(v: unknown, path: string): string {
  if (typeof v !== "string") throw new ConfigError(path, `must be a string, got ${describe(v)}`);
  return v;
}

function expectArray(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new ConfigError(path, `must be an array, got ${describe(v)}`);
  return v;
}

function expectInteger(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ConfigError(path, `must be an integer, got ${describe(v)}`);
  }
  if (v < min || v > max)
    throw new ConfigError(path, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

/** An argument value: a uint64. JSON numbers above 2^53 have lost precision, so they are refused. */
function expectUint64(v: unknown, path: string): bigint {
  if (typeof v === "bigint") {
    if (v < 0n || v > UINT64_MAX) throw new ConfigError(path, "must be a 64-bit unsigned integer");
    return v;
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(
      path,
      `must be a non-negative integer, got ${typeof v === "number" ? v : describe(v)}`,
    );
  }
  if (!Number.isSafeInteger(v)) {
    throw new ConfigError(
      path,
      `${v} is above 2^53 and cannot be read exactly from JSON`,
      "use a smaller value, or express the check with SCMP_CMP_MASKED_EQ on fewer bits",
    );
  }
  return BigInt(v);
}

function actionName(v: unknown, path: string): string {
  const name = expectString(v, path);
  if (SeccompActionValue[name] === undefined) {
    throw new ConfigError(
      path,
      `unknown seccomp action "${name}"`,
      `use one of ${Object.keys(SeccompActionValue).join(", ")}`,
    );
  }
  return name;
}

/** The kernel value of an action and its errno, and how people read it. */
function actionValue(
  name: string,
  errnoRet: unknown,
  errnoPath: string,
): { value: number; text: string } {
  const base = SeccompActionValue[name]!;
  if (!ACTIONS_WITH_ERRNO.has(name)) {
    if (errnoRet !== undefined) {
      throw new ConfigError(
        errnoPath,
        `${name} does not return an errno`,
        "errnoRet only goes with SCMP_ACT_ERRNO and SCMP_ACT_TRACE",
      );
    }
    return { value: base, text: name };
  }
  const errno =
    errnoRet === undefined ? DEFAULT_ERRNO : expectInteger(errnoRet, errnoPath, 0, MAX_ERRNO);
  // base | errno without JavaScript's signed 32-bit bitwise operators.
  return { value: base + errno, text: `${name}(${errno})` };
}

const OP_SYMBOL: Record<string, string> = {
  SCMP_CMP_NE: "!=",
  SCMP_CMP_LT: "<",
  SCMP_CMP_LE: "<=",
  SCMP_CMP_EQ: "==",
  SCMP_CMP_GE: ">=",
  SCMP_CMP_GT: ">",
};

function conditionText(c: SeccompCondition): string {
  const op = Object.keys(SeccompOperator).find((k) => SeccompOperator[k] === c.op) ?? "";
  if (op === "SCMP_CMP_MASKED_EQ") return `arg${c.index} & ${c.value} == ${c.valueTwo}`;
  return `arg${c.index} ${OP_SYMBOL[op] ?? op} ${c.value}`;
}

/**
 * Validates linux.seccomp and compiles it; null when the profile disables seccomp (no default
 * action and no syscalls, as runc reads it). Errors name the JSON path of the offending field.
 */
export function compileSeccomp(raw: unknown, jsonPath = "linux.seccomp"): CompiledSeccomp | null {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) throw new ConfigError(jsonPath, `must be an object, got ${describe(raw)}`);
  const syscalls =
    raw.syscalls === undefined || raw.syscalls === null
      ? []
      : expectArray(raw.syscalls, `${jsonPath}.syscalls`);
  if ((raw.defaultAction === undefined || raw.defaultAction === "") && syscalls.length === 0) {
    return null;
  }
  const defaultName = actionName(raw.defaultAction, `${jsonPath}.defaultAction`);
  const def = actionValue(defaultName, raw.defaultErrnoRet, `${jsonPath}.defaultErrnoRet`);
  if (defaultName === "SCMP_ACT_NOTIFY") {
    throw new ConfigError(
      `${jsonPath}.defaultAction`,
      "SCMP_ACT_NOTIFY cannot be the default action",
      "the launcher must still be able to write to the runtime after the filter is loaded",
    );
  }

  const architectures: string[] = [];
  if (raw.architectures !== undefined && raw.architectures !== null) {
    expectArray(raw.architectures, `${jsonPath}.architectures`).forEach((a, i) => {
      const path = `${jsonPath}.architectures[${i}]`;
      const name = SeccompArchName[expectString(a, path)];
      if (name === undefined) {
        throw new ConfigError(
          path,
          `unknown architecture "${String(a)}"`,
          "architectures look like SCMP_ARCH_X86_64",
        );
      }
      if (!architectures.includes(name)) architectures.push(name);
    });
  }

  const attributes: SeccompAttributeSetting[] = [
    // libseccomp sets no_new_privs on load by default; process.noNewPrivileges decides instead.
    { attribute: SeccompAttribute.CTL_NNP, value: 0, optional: false, text: "no_new_privs off" },
  ];
  if (raw.flags === undefined || raw.flags === null) {
    // runc's default when no flags are given: do not force the SSB mitigation on the container.
    attributes.push({
      attribute: SeccompAttribute.CTL_SSB,
      value: 1,
      optional: true,
      text: "SECCOMP_FILTER_FLAG_SPEC_ALLOW (default)",
    });
  } else {
    expectArray(raw.flags, `${jsonPath}.flags`).forEach((f, i) => {
      const path = `${jsonPath}.flags[${i}]`;
      const attribute = SeccompFlagAttribute[expectString(f, path)];
      if (attribute === undefined) {
        throw new ConfigError(
          path,
          `unknown seccomp flag "${String(f)}"`,
          `use one of ${Object.keys(SeccompFlagAttribute).join(", ")}`,
        );
      }
      attributes.push({ attribute, value: 1, optional: false, text: String(f) });
    });
  }

  let listenerPath: string | undefined;
  if (raw.listenerPath !== undefined) {
    listenerPath = expectString(raw.listenerPath, `${jsonPath}.listenerPath`);
    if (!listenerPath.startsWith("/")) {
      throw new ConfigError(`${jsonPath}.listenerPath`, "must be an absolute path");
    }
  }
  let listenerMetadata: string | undefined;
  if (raw.listenerMetadata !== undefined) {
    listenerMetadata = expectString(raw.listenerMetadata, `${jsonPath}.listenerMetadata`);
  }

  const rules: SeccompRule[] = [];
  let usesNotify = false;
  syscalls.forEach((entry, i) => {
    const at = `${jsonPath}.syscalls[${i}]`;
    if (!isObject(entry)) throw new ConfigError(at, `must be an object, got ${describe(entry)}`);
    const names = expectArray(entry.names, `${at}.names`).map((n, j) => {
      const name = expectString(n, `${at}.names[${j}]`);
      if (!/^[a-z0-9_]+$/.test(name)) {
        throw new ConfigError(`${at}.names[${j}]`, `"${name}" is not a system call name`);
      }
      return name;
    });
    const name = actionName(entry.action, `${at}.action`);
    const action = actionValue(name, entry.errnoRet, `${at}.errnoRet`);
    const args =
      entry.args === undefined || entry.args === null ? [] : expectArray(entry.args, `${at}.args`);
    const conditions = args.map((a, j): SeccompCondition => {
      const ap = `${at}.args[${j}]`;
      if (!isObject(a)) throw new ConfigError(ap, `must be an object, got ${describe(a)}`);
      const opName = expectString(a.op, `${ap}.op`);
      const op = SeccompOperator[opName];
      if (op === undefined) {
        throw new ConfigError(
          `${ap}.op`,
          `unknown operator "${opName}"`,
          `use one of ${Object.keys(SeccompOperator).join(", ")}`,
        );
      }
      return {
        index: expectInteger(a.index, `${ap}.index`, 0, MAX_ARG_INDEX),
        op,
        value: expectUint64(a.value, `${ap}.value`),
        valueTwo: a.valueTwo === undefined ? 0n : expectUint64(a.valueTwo, `${ap}.valueTwo`),
      };
    });
    if (name === "SCMP_ACT_NOTIFY") {
      usesNotify = true;
      // The init sends the notification fd with sendmsg and then writes to the runtime: a listener
      // that must first receive the fd could never answer those (runc refuses write, too).
      const stuck = names.find((n) => n === "write" || n === "sendmsg");
      if (stuck) {
        throw new ConfigError(
          `${at}.names`,
          `SCMP_ACT_NOTIFY cannot be used for ${stuck}`,
          "the container's init needs it to hand the notification fd to the listener",
        );
      }
    }
    // A rule with the default action changes nothing, and libseccomp refuses it.
    if (action.value === def.value) return;
    // Conditions on the same argument cannot be ANDed by libseccomp: like runc, each one then
    // becomes a rule of its own (so they are ORed).
    const indexes = conditions.map((c) => c.index);
    const repeated = indexes.some((x, k) => indexes.indexOf(x) !== k);
    const groups = repeated ? conditions.map((c) => [c]) : [conditions];
    for (const syscall of names) {
      for (const group of groups) {
        const cond = group.length ? ` if ${group.map(conditionText).join(" && ")}` : "";
        rules.push({
          syscall,
          action: action.value,
          conditions: group,
          text: `${syscall} -> ${action.text}${cond}`,
        });
      }
    }
  });
  if (usesNotify && listenerPath === undefined) {
    throw new ConfigError(
      `${jsonPath}.listenerPath`,
      "is missing; SCMP_ACT_NOTIFY needs a listener to send the notification fd to",
    );
  }
  if (rules.length > OPTIMIZE_ABOVE) {
    attributes.push({
      attribute: SeccompAttribute.CTL_OPTIMIZE,
      value: 2,
      optional: true,
      text: "binary tree optimisation",
    });
  }
  const out: CompiledSeccomp = {
    defaultAction: def.value,
    defaultText: def.text,
    architectures,
    attributes,
    rules,
    usesNotify,
  };
  if (listenerPath !== undefined) out.listenerPath = listenerPath;
  if (listenerMetadata !== undefined) out.listenerMetadata = listenerMetadata;
  return out;
}

/**
 * What the listener of a profile with SCMP_ACT_NOTIFY receives with the notification fd: the
 * runtime-spec's container process state, whose `fds` names the fd passed along.
 */
export function listenerState(
  compiled: CompiledSeccomp,
  pid: number,
  state: State,
  ociVersion: string,
): string {
  return JSON.stringify({
    ociVersion,
    fds: ["seccompFd"],
    pid,
    metadata: compiled.listenerMetadata ?? "",
    state,
  });
}

/** `exec` cannot hand a notification fd to the listener: refused clearly instead of hanging. */
export function rejectNotifyForExec(compiled: CompiledSeccomp | null): void {
  if (compiled?.usesNotify) {
    throw new NotSupportedError(
      "exec: the container's seccomp profile uses SCMP_ACT_NOTIFY, which Pivot supports for the container's init only",
      {
        hint: "run the program as the container's process, or use another action for these syscalls",
      },
    );
  }
}
