/*
 * The commands' front door: runs the compiled Pivot program beside it (OUTDIR/pivot.bin, which
 * serves each command by the name it runs as) with JavaScriptCore's JIT off. Built twice:
 * OUTDIR/pivot-runtime runs it as "pivot-runtime", OUTDIR/pivot as "pivot" (PROGRAM_NAME).
 *
 * containerd, conmon and podman start the runtime several times per container, and people and
 * scripts run `pivot run`, `ps`, `rm`, ...: commands whose whole run is start-up. The JIT's own
 * set-up at start and its compiles of code that runs once cost more than they save
 * (docs/benchmarks.md: ~1 ms of every command, 1-3 ms of a `run`). Bun reads JavaScriptCore's
 * options from the environment only when it starts, so they are set here, before the exec.
 *
 * It holds no policy: the arguments go through unchanged but for argv[0], which becomes
 * PROGRAM_NAME (the program serves the command named by argv[0], whatever name this door is
 * installed under: a link named runc works), and a caller's own BUN_JSC_useJIT is kept. When it
 * turns the JIT off itself it says so in PIVOT_DOOR_JIT_OFF=1: the engine's commands that do long
 * work in JavaScript (pull, build, cp, logs, ...) then run the program again with the JIT on
 * (src/cli/jit.ts decides which).
 *
 * That run again loses every descriptor beyond 0-2 (Bun marks those it inherits close-on-exec as it
 * starts): `pivot import <(...)` or `pivot load -i /dev/fd/3` would open nothing, or Bun's own fd.
 * So the door that runs the program again (RUNS_AGAIN_WITH_JIT, `pivot`) leaves the JIT on when its
 * caller passed any: correct, at the short commands' ~1 ms. pivot-runtime, never run again, is
 * started with the JIT off whatever conmon or containerd pass it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PROGRAM_NAME
#error "build with -DPROGRAM_NAME='\"pivot\"' or '\"pivot-runtime\"'"
#endif
#define PROGRAM_FILE "pivot.bin"

#ifdef RUNS_AGAIN_WITH_JIT
/* Whether the caller passed descriptors beyond 0-2 (this door opens none of its own). */
static int passes_descriptors(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return 1; /* cannot tell: as if it did */
  int own = dirfd(d), found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    found = end != e->d_name && *end == '\0' && fd > 2 && fd != own;
  }
  closedir(d);
  return found;
}
#else
static int passes_descriptors(void) { return 0; }
#endif

int main(int argc, char **argv) {
  char *no_args[] = {NULL, NULL};
  if (argc < 1) argv = no_args; /* started with an empty argv: room for argv[0] */
  /* This file's own path (links resolved: /usr/local/bin/pivot-runtime is a link to it). */
  char program[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", program, sizeof program);
  char *slash = NULL;
  if (n > 0 && (size_t)n < sizeof program - sizeof PROGRAM_FILE) slash = memrchr(program, '/', (size_t)n);
  if (slash == NULL) {
    fprintf(stderr, "%s: cannot find its own path in /proc/self/exe: %s\n", PROGRAM_NAME,
            n < 0 ? strerror(errno) : "path too long");
    return 127;
  }
  strcpy(slash + 1, PROGRAM_FILE);
  if (getenv("BUN_JSC_useJIT") == NULL && !passes_descriptors() &&
      (setenv("BUN_JSC_useJIT", "0", 1) != 0 || setenv("PIVOT_DOOR_JIT_OFF", "1", 1) != 0)) {
    fprintf(stderr, "%s: setenv: %s\n", PROGRAM_NAME, strerror(errno));
    return 127;
  }
  argv[0] = (char *)PROGRAM_NAME;
  execv(program, argv);
  fprintf(stderr,
          "%s: cannot run %s: %s\n"
          "  hint: it is made beside this file by scripts/build-binary.sh; run it again\n",
          PROGRAM_NAME, program, strerror(errno));
  return 127;
}
