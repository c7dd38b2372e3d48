/*
 * pivot-runtime's front door: runs the compiled Pivot program beside it (OUTDIR/pivot, which serves
 * each command by the name it runs as) with JavaScriptCore's JIT off.
 *
 * containerd, conmon and podman start the runtime several times per container, and every one of
 * its commands is short: the JIT's own set-up at start and its compiles of code that runs once cost
 * more than they save (docs/benchmarks.md, "Session 7": ~1 ms of every command, 2-3 ms of a `run`).
 * Bun reads JavaScriptCore's options from the environment only when it starts, so they are set
 * here, before the exec. The engine (`pivot`) is not started this way: it pumps a container's
 * output through JavaScript, which needs the JIT (src/cli/jit.ts).
 *
 * It holds no policy: the arguments go through unchanged but for argv[0], which becomes
 * "pivot-runtime" (the program serves the command named by argv[0], and this is the runtime's door
 * whatever name it is installed under: a link named runc works), and a caller's own BUN_JSC_useJIT
 * is kept.
 *
 *   scripts/build-binary.sh installs it as OUTDIR/pivot-runtime.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char *no_args[] = {NULL, NULL};
  if (argc < 1) argv = no_args; /* started with an empty argv: room for argv[0] */
  /* This file's own path (links resolved: /usr/local/bin/pivot-runtime is a link to it). */
  char program[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", program, sizeof program);
  char *slash = NULL;
  if (n > 0 && (size_t)n < sizeof program - sizeof "pivot") slash = memrchr(program, '/', (size_t)n);
  if (slash == NULL) {
    fprintf(stderr, "pivot-runtime: cannot find its own path in /proc/self/exe: %s\n",
            n < 0 ? strerror(errno) : "path too long");
    return 127;
  }
  strcpy(slash + 1, "pivot");
  if (setenv("BUN_JSC_useJIT", "0", 0) != 0) {
    fprintf(stderr, "pivot-runtime: setenv: %s\n", strerror(errno));
    return 127;
  }
  argv[0] = (char *)"pivot-runtime";
  execv(program, argv);
  fprintf(stderr,
          "pivot-runtime: cannot run %s: %s\n"
          "  hint: it is made beside this file by scripts/build-binary.sh; run it again\n",
          program, strerror(errno));
  return 127;
}
