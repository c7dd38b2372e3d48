// Node built-in modules loaded on first use. Under Bun, importing node:child_process or node:crypto
// costs milliseconds of start-up (child_process brings in the stream machinery), which commands
// that never use them (state, start, delete, kill, a run without a seccomp profile) should not pay.
import { createRequire } from "node:module";

export function lazyRequire<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= createRequire(import.meta.url)(id) as T;
    return loaded;
  };
}

export const crypto = lazyRequire<typeof import("node:crypto")>("node:crypto");
