// Errors that say what failed, on which object, why, and what to do.

export interface ErrorDetails {
  /** What was being done, e.g. "create container abc". */
  what?: string;
  /** A hint for the user: what to do about it. */
  hint?: string;
  /** The errno name, when the error came from the kernel. */
  code?: string;
  cause?: unknown;
}

export class PivotError extends Error {
  readonly hint?: string;
  readonly code?: string;

  constructor(message: string, details: ErrorDetails = {}) {
    super(details.what ? `${details.what}: ${message}` : message, { cause: details.cause });
    this.name = new.target.name;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.code !== undefined) this.code = details.code;
  }
}

/** config.json is not valid; `jsonPath` names the offending field, e.g. "process.args[0]". */
export class ConfigError extends PivotError {
  constructor(
    readonly jsonPath: string,
    problem: string,
    hint?: string,
  ) {
    super(`${jsonPath}: ${problem}`, hint === undefined ? {} : { hint });
  }
}

/** Something the config asks for that Pivot does not support yet. */
export class NotSupportedError extends PivotError {}

/** A container id that does not exist, is invalid or is already taken. */
export class ContainerIdError extends PivotError {}

/** A step of the launch plan failed inside the launcher. */
export class LaunchError extends PivotError {
  constructor(
    message: string,
    readonly step: number,
    readonly errno: number,
    details: ErrorDetails = {},
  ) {
    super(message, details);
  }
}

/** Formats an error for a terminal: message, then the hint on its own line. */
export function formatError(err: unknown): string {
  if (err instanceof PivotError)
    return err.hint ? `${err.message}\n  hint: ${err.hint}` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
