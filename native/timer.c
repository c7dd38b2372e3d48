// pivot-timer: runs a command again and again while a process lives; the engine's periodic
// health checks (src/engine/health-timer.ts decides everything: what runs, how often, when to
// stop). No policy here:
//
//   pivot-timer PID START_TIME LOCK_FILE FIRST_MS EVERY_MS FAST_CODE FAST_MS STOP_CODE -- ARGV...
//
// While process PID (whose start time, field 22 of /proc/PID/stat, is START_TIME: a reused pid is
// not it) lives: take LOCK_FILE (flock, waiting while another process holds it) and write this
// process's pid into it, then wait FIRST_MS, run ARGV and wait for it; an exit code of STOP_CODE
// ends the timer, FAST_CODE makes the next wait FAST_MS, any other EVERY_MS. The end of PID is
// seen at once (a pidfd polled during every wait), so the timer never outlives it by more than
// one run of ARGV. Exits 0 when it ends, 2 on bad arguments.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int number(const char *text, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < 0)
    return -1;
  *out = v;
  return 0;
}

// Field 22 of /proc/PID/stat (after the command name, which may hold spaces and parentheses).
static int start_time(pid_t pid, char *out, size_t size) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  // After ") ": field 3 (state) onwards; field 22 is the 20th of them.
  p += 2;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (p == NULL)
      return -1;
    p++;
  }
  size_t len = strcspn(p, " ");
  if (len == 0 || len >= size)
    return -1;
  memcpy(out, p, len);
  out[len] = '\0';
  return 0;
}

// Waits MS milliseconds; 1 when the watched process ended meanwhile.
static int ended_within(int pidfd, long long ms) {
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  while (ms > 0) {
    int slice = ms > 1000000 ? 1000000 : (int)ms;
    int r = poll(&p, 1, slice);
    if (r > 0)
      return 1;
    if (r < 0 && errno != EINTR)
      return 1;
    if (r == 0)
      ms -= slice;
  }
  return 0;
}

// Runs ARGV and returns its exit code (128+N for signal N; -1 when it could not run).
static int run(char **argv) {
  pid_t child = fork();
  if (child < 0)
    return -1;
  if (child == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// Takes the lock on FD, waiting while another process holds it; 1 when PIDFD's process ended
// first.
static int lock_while_alive(int fd, int pidfd) {
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR)
      return 1;
    if (ended_within(pidfd, 100))
      return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  long long pid, first, every, fast_code, fast, stop_code;
  if (argc < 11 || strcmp(argv[9], "--") != 0 || number(argv[1], &pid) != 0 || pid <= 0 ||
      number(argv[4], &first) != 0 || number(argv[5], &every) != 0 ||
      number(argv[6], &fast_code) != 0 || number(argv[7], &fast) != 0 ||
      number(argv[8], &stop_code) != 0) {
    fprintf(stderr, "usage: pivot-timer PID START_TIME LOCK_FILE FIRST_MS EVERY_MS FAST_CODE "
                    "FAST_MS STOP_CODE -- ARGV...\n");
    return 2;
  }
  // The pidfd first, then the start time: the pidfd then names the process whose start was read.
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  char now[64];
  if (pidfd < 0 || start_time((pid_t)pid, now, sizeof now) != 0 || strcmp(now, argv[2]) != 0)
    return 0;
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  int lock = open(argv[3], O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0 || lock_while_alive(lock, pidfd))
    return 0;
  char mine[32];
  int len = snprintf(mine, sizeof mine, "%d\n", (int)getpid());
  if (ftruncate(lock, 0) != 0 || pwrite(lock, mine, (size_t)len, 0) != len)
    return 0;
  signal(SIGPIPE, SIG_IGN);
  long long wait_ms = first;
  for (;;) {
    if (ended_within(pidfd, wait_ms))
      return 0;
    int code = run(argv + 10);
    if (code == stop_code)
      return 0;
    wait_ms = code == fast_code ? fast : every;
  }
}
