// Pivot's library entry point: the runtime and engine as a typed API for Bun and Node programs.
export const PIVOT_VERSION = "0.1.0";
