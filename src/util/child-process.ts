// node:child_process, loaded on first use (see lazy-require.ts).
import { lazyRequire } from "./lazy-require.ts";

export const childProcess = lazyRequire<typeof import("node:child_process")>("node:child_process");
