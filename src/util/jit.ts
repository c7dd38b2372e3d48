// The JIT's policy in the compiled binary. scripts/build-binary.sh builds it with JavaScriptCore's
// tier-up thresholds scaled up (--compile-jit-policy): a command's start-up is code that runs
// once, and compiling it is work for nothing on a machine whose other core is busy with the
// container (docs/benchmarks.md, "Session 7"). Long work in JavaScript (a container's output
// pumped to the terminal and the log, a tar stream, a pull, a layer unpacked) wants the normal
// policy back: under the scaled one a function called a million times stays in the interpreter,
// ~20x slower. src/cli/jit.ts says which commands keep the scaled policy for how long.

/**
 * Sets the JIT's normal policy: start-up is over, or long work begins. A no-op outside Bun, and
 * where the policy is normal already (from the sources, in a program importing the library).
 */
export function startupOver(): void {
  (
    globalThis as { Bun?: { unsafe?: { setJITPolicy?: (scale: number) => void } } }
  ).Bun?.unsafe?.setJITPolicy?.(1);
}
