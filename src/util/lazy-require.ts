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
// node:net and node:dgram (~4 ms together): only port checks and slirp4netns's API socket use them.
export const net = lazyRequire<typeof import("node:net")>("node:net");
export const dgram = lazyRequire<typeof import("node:dgram")>("node:dgram");
// node:tty (~5 ms): only for isatty() in the few commands that behave differently on a terminal.
// node:os (~0.5 ms with its constants table): kill's signal names, a kernel release, getpwuid.
export const tty = lazyRequire<typeof import("node:tty")>("node:tty");
export const os = lazyRequire<typeof import("node:os")>("node:os");
// node:stream (~2.3 ms): only for a library caller's stdio streams and image archives; `pivot run`
// reads the container's output from the launcher's pipes without it.
export const stream = lazyRequire<typeof import("node:stream")>("node:stream");
