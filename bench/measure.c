/*
 * measure: runs commands one after another and reports, per command, the wall time and the
 * user+system cpu time and peak RSS of its whole process tree (wait4's rusage covers every
 * descendant the command reaped). Built and used by bench/runtime.ts; not part of Pivot.
 *
 * It makes itself a child subreaper, like containerd's shim and podman's conmon, so a container
 * init whose runtime has exited is reparented here. The word "@wait" stands for "wait until the
 * process whose pid is in PIDFILE exits"; its rusage is the container process's own.
 *
 * usage: measure PIDFILE ERRFILE CMD ARGS... [--- CMD ARGS... | --- @wait]...
 * Output, one line per command: "wall_ns user_us sys_us maxrss_kb status".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long us(struct timeval tv) { return (long long)tv.tv_sec * 1000000LL + tv.tv_usec; }

struct acc {
  long long user, sys, maxrss;
};

static void add(struct acc *a, const struct rusage *ru) {
  a->user += us(ru->ru_utime);
  a->sys += us(ru->ru_stime);
  if (ru->ru_maxrss > a->maxrss) a->maxrss = ru->ru_maxrss;
}

/* Children reaped so far, so "@wait" finds a container process that exited early. */
static pid_t reaped[256];
static int reaped_status[256];
static int nreaped;

/* Reaps children until `target` exits (or, with target 0, until none is left to reap now). */
static int reap(pid_t target, struct acc *a, long long deadline) {
  for (int k = 0; k < nreaped; k++)
    if (target && reaped[k] == target) return reaped_status[k];
  for (;;) {
    struct rusage ru;
    int st;
    pid_t r = wait4(-1, &st, WNOHANG, &ru);
    if (r > 0) {
      add(a, &ru);
      if (nreaped < 256) {
        reaped[nreaped] = r;
        reaped_status[nreaped++] = st;
      }
      if (r == target) return st;
      continue;
    }
    if (target == 0) return 0;
    if (now_ns() > deadline) return -1;
    /* Not exited yet, or not yet reparented to us: look again shortly. */
    struct timespec nap = {0, 200000};
    nanosleep(&nap, NULL);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: measure PIDFILE ERRFILE CMD ARGS... [--- CMD ARGS...]...\n");
    return 2;
  }
  const char *pidfile = argv[1], *errfile = argv[2];
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  /* A session of its own: a runtime that signals its process group cannot take the benchmark down. */
  setsid();
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int err = open(errfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (devnull < 0 || err < 0) {
    perror("measure: open");
    return 2;
  }
  int i = 3;
  while (i < argc) {
    int start = i;
    while (i < argc && strcmp(argv[i], "---") != 0) i++;
    argv[i < argc ? i : argc] = NULL;
    char **cmd = argv + start;
    struct acc a = {0, 0, 0};
    long long t0 = now_ns();
    int status;
    if (strcmp(cmd[0], "@wait") == 0) {
      pid_t pid = 0;
      FILE *f = fopen(pidfile, "r");
      if (!f || fscanf(f, "%d", &pid) != 1) pid = 0;
      if (f) fclose(f);
      status = pid > 0 ? reap(pid, &a, t0 + 10000000000LL) : -1;
    } else {
      pid_t pid = fork();
      if (pid < 0) {
        perror("measure: fork");
        return 2;
      }
      if (pid == 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(err, 2);
        execvp(cmd[0], cmd);
        fprintf(stderr, "measure: exec %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
      }
      struct rusage ru;
      while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
      }
      add(&a, &ru);
    }
    long long wall = now_ns() - t0;
    /* Orphans that exited meanwhile (none are expected) count towards this command. */
    reap(0, &a, 0);
    printf("%lld %lld %lld %lld %d\n", wall, a.user, a.sys, a.maxrss, status);
    fflush(stdout);
    i++;
  }
  return 0;
}
