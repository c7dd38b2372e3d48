// The engine's error class: every error a user can cause, with a hint (the CLI exits 125).
import { PivotError } from "../errors.ts";

export class EngineError extends PivotError {}
