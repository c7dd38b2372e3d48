/*
 * pivot-launcher: executes a launch plan compiled by Pivot's TypeScript side.
 *
 * It holds no policy. It reads the plan (a list of steps, see src/runtime/wire.ts) from the
 * control socket, replays the steps in order, and reports back on the same socket: the init's
 * pid, sync points where the TypeScript side acts (id maps, cgroups, hooks), readiness, the
 * exit status, and, for a failed step, the step's index, errno and a detail string.
 *
 * Processes:
 *   launcher ──ForkSetup──▶ setup child ──ForkInit (CLONE_PARENT)──▶ container init
 * The setup child exists so a new user namespace can be mapped by the parent before the other
 * namespaces are created (they are then owned by it), and so that init, forked after
 * unshare(CLONE_NEWPID), is PID 1 of the new PID namespace while being the launcher's child.
 *
 * Usage: pivot-launcher CONTROL_FD
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define MAX_ARGS 4096
#define MAX_SLOTS 64

struct arg {
  int is_int;
  int64_t i;
  char *s; /* NUL-terminated copy */
  uint32_t len;
};

struct step {
  int code;
  int argc;
  struct arg *args;
};

static int control_fd = -1;
static struct step *steps;
static int nsteps;
static int current_step = -1;
static int slots[MAX_SLOTS];
static int wait_for_init;
/* Op.ReportExec: the init holds the write end (close-on-exec) until it execs; the launcher waits
 * for its end of file and reports Event.Executed. */
static int report_exec;
/* Op.UnmountAfterExit: unmounted by the launcher once the init has exited (best effort). */
static const char *unmount_after_exit;
static int unmount_after_exit_flags;
static int exec_pipe[2] = {-1, -1};
static int init_pid_pipe[2] = {-1, -1};
static pid_t init_pid;
static char resolved_exec[4096];
static int host_proc_fd = -1;
static char *hook_state = "";     /* the container state for hooks, from the last sync reply */
static char *listener_state = ""; /* the state for a seccomp listener, from the last sync reply */
static int trace;                 /* OP_TRACE: report the time after every step (--trace) */
static int64_t main_us;           /* when main() began, for the trace */
static int64_t trace_offset_us;   /* the runtime's clock (sent with OP_TRACE) minus now_us() then */

/* ---------- wire ---------- */

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Encodes a message of integer and string args; fmt is a string of 'i' and 's'. */
static void send_event(int code, const char *fmt, ...) {
  char buf[8192];
  size_t at = 8;
  va_list ap;
  va_start(ap, fmt);
  int argc = 0;
  for (const char *f = fmt; *f; f++, argc++) {
    if (*f == 'i') {
      int64_t v = va_arg(ap, int64_t);
      if (at + 9 > sizeof buf) break;
      buf[at] = WIRE_TAG_INT;
      memcpy(buf + at + 1, &v, 8);
      at += 9;
    } else {
      const char *s = va_arg(ap, const char *);
      uint32_t len = (uint32_t)strlen(s);
      if (at + 5 + len > sizeof buf) len = (uint32_t)(sizeof buf - at - 5);
      buf[at] = WIRE_TAG_STR;
      memcpy(buf + at + 1, &len, 4);
      memcpy(buf + at + 5, s, len);
      at += 5 + len;
    }
  }
  va_end(ap);
  uint32_t len = (uint32_t)(at - 4);
  uint16_t c = (uint16_t)code, n = (uint16_t)argc;
  memcpy(buf, &len, 4);
  memcpy(buf + 4, &c, 2);
  memcpy(buf + 6, &n, 2);
  write_full(control_fd, buf, at);
}

/* Reports the failing step with errno and a detail, then exits. */
__attribute__((noreturn, format(printf, 2, 3))) static void fail(int err, const char *fmt, ...) {
  char detail[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  send_event(EV_ERROR, "iis", (int64_t)current_step, (int64_t)err, detail);
  _exit(1);
}

static struct step read_message(void) {
  uint32_t len;
  if (read_full(control_fd, &len, 4) < 0) fail(EPIPE, "control socket closed while reading the plan");
  if (len < 4 || len > WIRE_MAX_MESSAGE) fail(EPROTO, "bad message length %u", len);
  unsigned char *p = malloc(len);
  if (!p) fail(ENOMEM, "out of memory");
  if (read_full(control_fd, p, len) < 0) fail(EPIPE, "control socket closed mid-message");
  struct step st;
  uint16_t code, argc;
  memcpy(&code, p, 2);
  memcpy(&argc, p + 2, 2);
  st.code = code;
  st.argc = argc;
  st.args = calloc(argc ? argc : 1, sizeof(struct arg));
  if (!st.args) fail(ENOMEM, "out of memory");
  uint32_t at = 4;
  for (int i = 0; i < argc; i++) {
    if (at + 1 > len) fail(EPROTO, "truncated message");
    if (p[at] == WIRE_TAG_INT) {
      if (at + 9 > len) fail(EPROTO, "truncated message");
      st.args[i].is_int = 1;
      memcpy(&st.args[i].i, p + at + 1, 8);
      at += 9;
    } else if (p[at] == WIRE_TAG_STR) {
      uint32_t slen;
      if (at + 5 > len) fail(EPROTO, "truncated message");
      memcpy(&slen, p + at + 1, 4);
      if (slen > len - at - 5) fail(EPROTO, "truncated message");
      st.args[i].s = malloc(slen + 1);
      if (!st.args[i].s) fail(ENOMEM, "out of memory");
      memcpy(st.args[i].s, p + at + 5, slen);
      st.args[i].s[slen] = 0;
      st.args[i].len = slen;
      at += 5 + slen;
    } else {
      fail(EPROTO, "bad argument tag %d", p[at]);
    }
  }
  free(p);
  return st;
}

/* The monotonic clock: trace times are reported on the runtime's clock (trace_offset_us). */
static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Op.ReportSealedCopy (the launcher's own binary, below). */
static void report_sealed_copy(void);

static void read_plan(void) {
  int cap = 64;
  steps = malloc(sizeof(struct step) * (size_t)cap);
  for (;;) {
    struct step st = read_message();
    if (st.code == OP_END) break;
    if (st.code == OP_TRACE) { /* a flag, not a step: step indexes stay the plan's */
      trace = 1;
      /* (the runtime's clock when it sent the plan, µs): the two clocks are tied here, so the
         times reported are the runtime's, off by no more than the plan's time in transit. */
      if (st.argc >= 1 && st.args[0].is_int) trace_offset_us = st.args[0].i - now_us();
      send_event(EV_TRACE, "ii", (int64_t)-1, main_us + trace_offset_us);
      continue;
    }
    if (st.code == OP_REPORT_SEALED_COPY) { /* a request, not a step */
      report_sealed_copy();
      continue;
    }
    if (nsteps == cap) {
      cap *= 2;
      steps = realloc(steps, sizeof(struct step) * (size_t)cap);
      if (!steps) fail(ENOMEM, "out of memory");
    }
    steps[nsteps++] = st;
  }
}

static int64_t I(struct step *st, int i) {
  if (i >= st->argc || !st->args[i].is_int) fail(EPROTO, "step %d: argument %d is not an integer", current_step, i);
  return st->args[i].i;
}

static const char *S(struct step *st, int i) {
  if (i >= st->argc || st->args[i].is_int) fail(EPROTO, "step %d: argument %d is not a string", current_step, i);
  return st->args[i].s;
}

/* A NULL-terminated vector of `n` strings starting at argument `from`. */
static char **string_vector(struct step *st, int from, int n) {
  if (n < 0 || n > MAX_ARGS || from + n > st->argc) fail(EPROTO, "bad vector in step %d", current_step);
  char **v = calloc((size_t)n + 1, sizeof(char *));
  if (!v) fail(ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) v[i] = (char *)S(st, from + i);
  return v;
}

/* ---------- paths inside the root filesystem ---------- */

/* The container's root, opened by path once and reused by the in-root steps that follow each
 * other (each names it by path; opening it again for every step, and for every component of a
 * mkdir -p, was most of the syscalls of the mount phase). main() holds it only through a run of
 * in-root steps, and drops it after every step that may change what the path names: a mount, bind
 * or move_mount in the root (it may be onto the root itself, or propagate there). Any other step
 * (a mount or unmount by path, a fork, unshare, setns, pivot_root, a sync point or hook, where
 * anything may be mounted) drops it before it runs. So the fd always names what the path named
 * when it was opened, in a run of steps that mounted nothing, and no step but those in the root
 * sees it open (it is close-on-exec as well). */
static const char *root_path; /* the step's argument it was opened from (the plan outlives it) */
static int root_fd = -1;

static int open_root(const char *rootfs) {
  if (root_fd >= 0 && strcmp(root_path, rootfs) == 0) return root_fd;
  if (root_fd >= 0) close(root_fd);
  root_fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) fail(errno, "open root filesystem %s", rootfs);
  root_path = rootfs;
  return root_fd;
}

static void forget_root(void) {
  if (root_fd < 0) return;
  close(root_fd);
  root_fd = -1;
  root_path = NULL;
}

/* How a step uses the cached root: not at all (it is dropped before), in-root steps that create
 * files and directories but mount nothing (kept), and in-root steps that mount (dropped after). */
enum { ROOT_UNUSED, ROOT_KEPT, ROOT_DROPPED_AFTER };

static int root_use(int code) {
  switch (code) {
    case OP_MKDIR_IN_ROOT:
    case OP_TOUCH_IN_ROOT:
    case OP_MKNOD_IN_ROOT:
    case OP_SYMLINK_IN_ROOT:
    case OP_OPEN_DIR_IN_ROOT:
    case OP_COPY_DIR_IN_ROOT: return ROOT_KEPT;
    case OP_MOUNT_IN_ROOT:
    case OP_MOUNT_IN_ROOT_NO_SYMLINKS:
    case OP_BIND_IN_ROOT:
    case OP_MOVE_MOUNT_IN_ROOT: return ROOT_DROPPED_AFTER;
    default: return ROOT_UNUSED;
  }
}

static int open_in_root(const char *rootfs, const char *path, int flags, mode_t mode) {
  int root = open_root(rootfs);
  struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = (flags & O_CREAT) ? mode : 0,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* A path inside the root that must not go through any symlink: O_PATH, no link followed. */
static int open_in_root_no_symlinks(const char *rootfs, const char *path) {
  int root = open_root(rootfs);
  struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS};
  return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* mkdir -p's common case, in two or three calls: the parent resolves inside the root by the
 * kernel (RESOLVE_IN_ROOT, as the walk below resolves it: links followed inside the root, none of
 * them magic), and the last component is a directory or is made one. Where the parent resolves,
 * the walk would have made nothing on the way and reached the same directory. Anything else (a
 * parent missing, a last component that is a link or not a directory, an error) is left to the
 * walk, from the start, which then does and reports what it always did; nothing was made. */
static int mkdir_in_root_quick(const char *rootfs, const char *path, mode_t mode) {
  size_t n = strlen(path);
  while (n > 0 && path[n - 1] == '/') n--;
  size_t start = n;
  while (start > 0 && path[start - 1] != '/') start--;
  size_t len = n - start;
  char prefix[4096], last[256];
  if (len == 0 || len >= sizeof last || start >= sizeof prefix) return 0;
  memcpy(last, path + start, len);
  last[len] = 0;
  if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0) return 0;
  memcpy(prefix, path, start);
  prefix[start] = 0;
  int parent = open_in_root(rootfs, prefix[0] ? prefix : "/", O_PATH | O_DIRECTORY, 0);
  if (parent < 0) return 0;
  struct stat sb;
  int done = 0;
  if (fstatat(parent, last, &sb, AT_SYMLINK_NOFOLLOW) == 0) done = S_ISDIR(sb.st_mode);
  else if (errno == ENOENT) done = mkdirat(parent, last, mode) == 0 || errno == EEXIST;
  close(parent);
  return done;
}

/* mkdir -p inside the root, like runc's securejoin: components are resolved one at a time; a
 * symlink on the way is followed by hand, with absolute targets taken relative to the root and
 * ".." never climbing above it, and missing directories are created where the link points. */
static void mkdir_in_root(const char *rootfs, const char *path, mode_t mode) {
  char current[4096] = "/"; /* the resolved prefix, inside the root */
  char pending[8192];       /* the components still to walk */
  if (strlen(path) >= sizeof pending) fail(ENAMETOOLONG, "%s", path);
  if (mkdir_in_root_quick(rootfs, path, mode)) return;
  strcpy(pending, path);
  int links = 0;
  while (pending[0]) {
    char *p = pending;
    while (*p == '/') p++;
    char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    char comp[256];
    if (len >= sizeof comp) fail(ENAMETOOLONG, "component of %s", path);
    memcpy(comp, p, len);
    comp[len] = 0;
    memmove(pending, p + len, strlen(p + len) + 1);
    if (len == 0 || strcmp(comp, ".") == 0) continue;
    if (strcmp(comp, "..") == 0) {
      char *last = strrchr(current, '/');
      if (last && last != current) *last = 0;
      else strcpy(current, "/");
      continue;
    }
    int dir = open_in_root(rootfs, current, O_PATH | O_DIRECTORY, 0);
    if (dir < 0) fail(errno, "open %s inside %s", current, rootfs);
    struct stat sb;
    if (fstatat(dir, comp, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT) fail(errno, "stat %s/%s inside %s", current, comp, rootfs);
      if (mkdirat(dir, comp, mode) < 0 && errno != EEXIST) fail(errno, "mkdir %s/%s inside %s", current, comp, rootfs);
    } else if (S_ISLNK(sb.st_mode)) {
      if (++links > 40) fail(ELOOP, "resolving %s inside %s", path, rootfs);
      char target[4096];
      ssize_t n = readlinkat(dir, comp, target, sizeof target - 1);
      if (n < 0) fail(errno, "readlink %s/%s inside %s", current, comp, rootfs);
      target[n] = 0;
      size_t tlen = strlen(target), plen = strlen(pending);
      if (tlen + plen + 2 >= sizeof pending) fail(ENAMETOOLONG, "resolving %s", path);
      /* pending := target + "/" + pending */
      memmove(pending + tlen + 1, pending, plen + 1);
      memcpy(pending, target, tlen);
      pending[tlen] = '/';
      if (target[0] == '/') strcpy(current, "/");
      close(dir);
      continue;
    } else if (!S_ISDIR(sb.st_mode)) {
      fail(ENOTDIR, "%s/%s inside %s is not a directory", current, comp, rootfs);
    }
    close(dir);
    if (strlen(current) + len + 2 >= sizeof current) fail(ENAMETOOLONG, "%s", path);
    if (strcmp(current, "/") != 0) strcat(current, "/");
    strcat(current, comp);
  }
}

/* Opens the parent directory of `path` inside the root (creating it) and returns the base name. */
static int parent_in_root(const char *rootfs, const char *path, const char **base) {
  static char dir[4096];
  if (strlen(path) >= sizeof dir) fail(ENAMETOOLONG, "%s", path);
  strcpy(dir, path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    *base = path + (slash - dir) + 1;
  } else {
    *base = path;
    dir[0] = 0;
  }
  /* A parent that opens already needs no mkdir -p (it would make nothing and end there). */
  int fd = open_in_root(rootfs, dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
  if (fd >= 0) return fd;
  if (dir[0]) mkdir_in_root(rootfs, dir, 0755);
  fd = open_in_root(rootfs, dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
  if (fd < 0) fail(errno, "open %s inside %s", dir, rootfs);
  return fd;
}

/* ---------- steps ---------- */

static void sync_with_parent(int point) {
  send_event(EV_SYNC, "ii", (int64_t)point, (int64_t)getpid());
  struct step reply = read_message();
  if (reply.code != REPLY_CONTINUE) _exit(1);
  if (reply.argc > 0 && !reply.args[0].is_int) hook_state = reply.args[0].s;
  if (reply.argc > 1 && !reply.args[1].is_int) listener_state = reply.args[1].s;
}

/* SyncPoint.Start: the init, set up, waits for the runtime that created it to start it. Its
 * seccomp filter may be loaded already (noNewPrivileges): one send and one read, no getpid and no
 * allocation, which a profile could deny (the exec fifo's wait is an open and a write). */
static void wait_to_be_started(void) {
  send_event(EV_SYNC, "ii", (int64_t)SYNC_START, (int64_t)0);
  unsigned char reply[8];
  uint32_t len = 0;
  uint16_t code = 0;
  if (read_full(control_fd, &len, 4) < 0 || len != 4 || read_full(control_fd, reply, 4) < 0) _exit(1);
  memcpy(&code, reply, 2);
  if (code != REPLY_CONTINUE) _exit(1);
}

static pid_t clone_process(unsigned long flags) {
  pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  return pid;
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* clone3(2)'s arguments (linux/sched.h's struct clone_args, which glibc's headers may lack). */
struct pivot_clone_args {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

/* fork(2), but the child is created inside a cgroup v2 directory: it never has to be moved there,
 * and so never waits for the lock that moving a process takes. Where clone3 is missing or filtered
 * (ENOSYS: Docker's and podman's default seccomp profiles answer so without CAP_SYS_ADMIN), the
 * child is forked as usual and moves itself, writing "0" to the cgroup's cgroup.procs. */
static pid_t clone_into_cgroup(unsigned long flags, const char *cgroup_dir) {
  int dir = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) fail(errno, "open the cgroup %s", cgroup_dir);
  struct pivot_clone_args args = {
      .flags = flags | CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)dir};
  pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  int err = errno;
  /* Closed in the child too: a host directory left open until exec could become the container's
   * working directory through process.cwd = /proc/self/fd/N (CVE-2024-21626). */
  close(dir);
  if (pid < 0 && err == ENOSYS) {
    pid = clone_process(flags);
    if (pid != 0) return pid;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_dir) >= (int)sizeof path)
      fail(ENAMETOOLONG, "join the cgroup %s", cgroup_dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) fail(errno, "join the cgroup %s (clone3 is not available)", cgroup_dir);
    close(fd);
    return 0;
  }
  errno = err;
  return pid;
}

static void do_join_cgroup(const char *dir) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/tasks", dir) >= (int)sizeof path) fail(ENAMETOOLONG, "join the cgroup %s", dir);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) fail(errno, "join the cgroup %s (write 0 to its tasks file)", dir);
  close(fd);
}

/* A directory's identity: its mount as well as its inode. The container's root directory can be
 * reached through a host mount of the same filesystem (same device and inode, other mount), from
 * where ".." leads out: only the mount tells them apart. */
struct dir_id {
  uint64_t mnt_id, ino;
  uint32_t dev_major, dev_minor;
};

static int dir_id_of(int dirfd, const char *path, struct dir_id *id) {
  struct statx stx;
  if (statx(dirfd, path, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_MNT_ID, &stx) < 0) return -1;
  if (!(stx.stx_mask & STATX_MNT_ID)) {
    errno = ENOSYS; /* before Linux 5.8: fail closed */
    return -1;
  }
  *id = (struct dir_id){stx.stx_mnt_id, stx.stx_ino, stx.stx_dev_major, stx.stx_dev_minor};
  return 0;
}

static int same_dir(const struct dir_id *a, const struct dir_id *b) {
  return a->mnt_id == b->mnt_id && a->ino == b->ino && a->dev_major == b->dev_major &&
         a->dev_minor == b->dev_minor;
}

/* Whether walking ".." from the working directory reaches the process's root directory, on its
 * own mount. From a directory outside it, ".." climbs to the top of the mount namespace, whose
 * ".." is itself, without meeting the root. */
static int cwd_inside_root(void) {
  struct dir_id root, cur, up;
  if (dir_id_of(AT_FDCWD, "/", &root) < 0) fail(errno, "stat /");
  int fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(errno, "open the working directory");
  for (int depth = 0; depth < 4096; depth++) {
    if (dir_id_of(fd, "", &cur) < 0) fail(errno, "stat the working directory");
    if (same_dir(&cur, &root)) {
      close(fd);
      return 1;
    }
    int parent = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0) fail(errno, "open .. of the working directory");
    close(fd);
    fd = parent;
    if (dir_id_of(fd, "", &up) < 0) fail(errno, "stat the working directory");
    if (same_dir(&up, &cur)) break;
  }
  close(fd);
  return 0;
}

/* chdir, then check that the working directory is inside the process's root: a path through a
 * magic link (/proc/self/fd/N of a host directory still open before exec) could otherwise leave
 * the process in a host directory, from which ".." walks the host's tree (CVE-2024-21626). The
 * kernel's getcwd names such a directory "(unreachable)/..."; glibc's fails with ENOENT. */
static void do_chdir(const char *dir) {
  char cwd[PATH_MAX];
  if (chdir(dir) < 0) fail(errno, "chdir to the working directory %s", dir);
  long n = syscall(SYS_getcwd, cwd, sizeof cwd);
  if (n < 0 && errno != EPERM && errno != EACCES && errno != ENOSYS)
    fail(errno == ERANGE ? ENAMETOOLONG : errno, "check the working directory %s", dir);
  if (n <= 0) {
    /* The kernel's getcwd never fails with those, nor returns 0: a seccomp filter already loaded
     * denies or fakes it (the runtime-tools suite's profile does). Walk ".." instead. */
    if (!cwd_inside_root()) fail(EXDEV, "chdir to the working directory %s", dir);
    return;
  }
  if (cwd[0] != '/') fail(EXDEV, "chdir to the working directory %s", dir);
}

static void forward_signal(int sig) {
  if (init_pid > 0) kill(init_pid, sig);
}

/* The launcher after forking the setup child: reap it, then optionally wait for init. */
__attribute__((noreturn)) static void supervise(pid_t setup) {
  int status;
  close(init_pid_pipe[1]);
  if (wait_for_init) {
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
    struct sigaction sa = {.sa_handler = forward_signal};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  }
  if (read_full(init_pid_pipe[0], &init_pid, sizeof init_pid) < 0) init_pid = 0;
  while (waitpid(setup, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(1);
  if (!wait_for_init || init_pid <= 0) _exit(0);
  if (report_exec) {
    char byte;
    for (;;) {
      ssize_t n = read(exec_pipe[0], &byte, 1);
      if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    send_event(EV_EXECUTED, "");
  }
  for (;;) {
    pid_t r = waitpid(init_pid, &status, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) _exit(1);
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;
  }
  /* Before the exit is reported, so the caller finds it done; a failure it finds undone. */
  if (unmount_after_exit) umount2(unmount_after_exit, unmount_after_exit_flags);
  send_event(EV_EXITED, "i", (int64_t)status);
  _exit(0);
}

static void set_cloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

static void do_fork_setup(struct step *st) {
  if (pipe2(init_pid_pipe, O_CLOEXEC) < 0) fail(errno, "pipe");
  if (report_exec && pipe2(exec_pipe, O_CLOEXEC) < 0) fail(errno, "pipe");
  const char *cgroup_dir = st->argc > 1 ? S(st, 1) : "";
  pid_t pid = cgroup_dir[0] ? clone_into_cgroup((unsigned long)I(st, 0), cgroup_dir)
                            : clone_process((unsigned long)I(st, 0));
  if (pid < 0 && cgroup_dir[0]) fail(errno, "fork the setup process into the cgroup %s", cgroup_dir);
  if (pid < 0) fail(errno, "fork the setup process (clone flags 0x%llx)", (unsigned long long)I(st, 0));
  if (pid > 0) {
    if (report_exec) close(exec_pipe[1]);
    supervise(pid);
  }
  close(init_pid_pipe[0]);
  if (report_exec) close(exec_pipe[0]);
}

static void do_fork_init(void) {
  pid_t pid = clone_process(CLONE_PARENT);
  if (pid < 0) fail(errno, "fork the container's init process");
  if (pid > 0) {
    /* The setup child: hand init's pid to the launcher and the TypeScript side, then leave. */
    write(init_pid_pipe[1], &pid, sizeof pid);
    send_event(EV_INIT_PID, "i", (int64_t)pid);
    _exit(0);
  }
  close(init_pid_pipe[1]);
}

static void do_time_offsets(struct step *st) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "monotonic %lld %lld\nboottime %lld %lld\n", (long long)I(st, 0),
                   (long long)I(st, 1), (long long)I(st, 2), (long long)I(st, 3));
  int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, buf, (size_t)n) != n) fail(errno, "write /proc/self/timens_offsets");
  close(fd);
}

static const char *nullable(const char *s) { return s[0] ? s : NULL; }

/* The opened mount point, where the image's symlinks have been followed, may be on procfs or
 * sysfs only if the step allows it (kernelFs, KERNEL_FS_* bits): a mount there hides the kernel's
 * files, or what the masked and read-only paths protect. */
static void check_mount_point_fs(int fd, const char *rootfs, const char *path, int64_t allowed) {
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) fail(errno, "statfs mount point %s inside %s", path, rootfs);
  const char *fs = NULL;
  if (sf.f_type == PROC_SUPER_MAGIC && !(allowed & KERNEL_FS_PROC)) fs = "procfs";
  if (sf.f_type == SYSFS_MAGIC && !(allowed & KERNEL_FS_SYS)) fs = "sysfs";
  if (!fs) return;
  /* Where it resolved, for the message: the host's path, shown inside the root. */
  char link[64], where[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, where, sizeof where - 1);
  where[n > 0 ? n : 0] = 0;
  size_t rlen = strlen(rootfs);
  const char *inside = where;
  if (n > 0 && strncmp(where, rootfs, rlen) == 0 && (where[rlen] == '/' || where[rlen] == 0))
    inside = where[rlen] ? where + rlen : "/";
  fail(EACCES, "mount point %s inside %s is on %s%s%s%s: a mount there would hide the kernel's own files", path, rootfs,
       fs, inside[0] ? " (it resolves to " : "", inside, inside[0] ? ")" : "");
}

static void do_mount_in_root(struct step *st, int no_symlinks) {
  const char *rootfs = S(st, 0), *path = S(st, 1), *source = S(st, 2), *fstype = S(st, 3);
  unsigned long flags = (unsigned long)I(st, 4);
  const char *data = S(st, 5);
  int fd = no_symlinks ? open_in_root_no_symlinks(rootfs, path) : open_in_root(rootfs, path, O_PATH, 0);
  if (fd < 0 && errno == ELOOP && no_symlinks)
    fail(errno, "open mount point %s inside %s: a component of the path is a symlink", path, rootfs);
  if (fd < 0) fail(errno, "open mount point %s inside %s", path, rootfs);
  check_mount_point_fs(fd, rootfs, path, I(st, 6));
  char target[64];
  snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
  if (mount(nullable(source), target, nullable(fstype), flags, nullable(data)) < 0) {
    int err = errno;
    /* A read-only remount inside a user namespace must keep locked flags; retry with them. */
    if (err == EPERM && (flags & MS_REMOUNT)) {
      struct statvfs sv;
      if (fstatvfs(fd, &sv) == 0) {
        unsigned long locked = sv.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
        if (mount(nullable(source), target, nullable(fstype), flags | locked, nullable(data)) == 0) {
          close(fd);
          return;
        }
      }
    }
    fail(err, "mount %s on %s (inside %s) type %s", source[0] ? source : "none", path, rootfs,
         fstype[0] ? fstype : "bind");
  }
  close(fd);
}

static void do_touch_in_root(struct step *st) {
  const char *rootfs = S(st, 0), *path = S(st, 1);
  const char *base;
  int parent = parent_in_root(rootfs, path, &base);
  close(parent);
  /* An existing file is left alone, as runc does: opening it for writing would copy it up into
   * an overlay's upper directory (a change the container did not make, in diff and commit), and
   * would block on a FIFO. */
  int fd = open_in_root(rootfs, path, O_PATH, 0);
  if (fd >= 0) {
    struct stat sb;
    int isdir = fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode);
    close(fd);
    if (isdir) fail(EISDIR, "%s inside %s is a directory, but a file is mounted there", path, rootfs);
    return;
  }
  fd = open_in_root(rootfs, path, O_WRONLY | O_CREAT | O_NOCTTY, 0644);
  if (fd < 0 && errno == EISDIR) fail(EISDIR, "%s inside %s is a directory, but a file is mounted there", path, rootfs);
  if (fd < 0) fail(errno, "create %s inside %s", path, rootfs);
  close(fd);
}

static void do_mknod_in_root(struct step *st) {
  const char *rootfs = S(st, 0), *path = S(st, 1), *base;
  int parent = parent_in_root(rootfs, path, &base);
  dev_t dev = makedev((unsigned)I(st, 3), (unsigned)I(st, 4));
  /* The mode exactly as asked, from the start: a chmod by name afterwards would follow a symlink
   * put there meanwhile (fchmodat has no working AT_SYMLINK_NOFOLLOW before Linux 6.6). */
  mode_t old_umask = umask(0);
  if (mknodat(parent, base, (mode_t)I(st, 2), dev) < 0) {
    if (errno != EEXIST) fail(errno, "mknod %s inside %s", path, rootfs);
    if (unlinkat(parent, base, 0) < 0 || mknodat(parent, base, (mode_t)I(st, 2), dev) < 0)
      fail(errno, "replace %s inside %s with a device node", path, rootfs);
  }
  umask(old_umask);
  if (fchownat(parent, base, (uid_t)I(st, 5), (gid_t)I(st, 6), AT_SYMLINK_NOFOLLOW) < 0)
    fail(errno, "chown %s inside %s", path, rootfs);
  close(parent);
}

static void do_symlink_in_root(struct step *st) {
  const char *rootfs = S(st, 0), *path = S(st, 1), *target = S(st, 2), *base;
  int parent = parent_in_root(rootfs, path, &base);
  if (symlinkat(target, parent, base) < 0 && errno != EEXIST) fail(errno, "symlink %s -> %s inside %s", path, target, rootfs);
  close(parent);
}

/* ---------- tmpcopyup: a tmpfs mounted over a directory gets the directory's former contents ---------- */

static void do_open_dir_in_root(struct step *st) {
  int slot = (int)I(st, 0);
  if (slot < 0 || slot >= MAX_SLOTS) fail(EPROTO, "bad slot %d", slot);
  int fd = open_in_root(S(st, 1), S(st, 2), O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) fail(errno, "open %s inside %s", S(st, 2), S(st, 1));
  slots[slot] = fd;
}

/* Owner, then mode (chown clears set-id bits), then times, as the source has them. */
static void copy_attributes(int to, const char *name, const struct stat *sb, const char *path) {
  if (fchownat(to, name, sb->st_uid, sb->st_gid, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "chown %s", path);
  if (!S_ISLNK(sb->st_mode) && fchmodat(to, name, sb->st_mode & 07777, 0) < 0) fail(errno, "chmod %s", path);
  struct timespec times[2] = {sb->st_atim, sb->st_mtim};
  utimensat(to, name, times, AT_SYMLINK_NOFOLLOW);
}

static void copy_file(int from, int to, const char *name, const char *path) {
  int in = openat(from, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) fail(errno, "open %s", path);
  int out = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) fail(errno, "create %s", path);
  char buf[65536];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, "read %s", path);
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(out, buf + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail(errno, "write %s", path);
      done += w;
    }
  }
  close(in);
  close(out);
}

static void copy_tree(int from, int to, const char *where) {
  int dup_fd = dup(from);
  DIR *dir = dup_fd < 0 ? NULL : fdopendir(dup_fd);
  if (!dir) fail(errno, "read the directory %s", where);
  rewinddir(dir);
  struct dirent *e;
  while ((e = readdir(dir))) {
    const char *name = e->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", where, name);
    struct stat sb;
    if (fstatat(from, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "stat %s", path);
    if (S_ISDIR(sb.st_mode)) {
      if (mkdirat(to, name, 0700) < 0) fail(errno, "mkdir %s", path);
      int f = openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      int t = openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (f < 0 || t < 0) fail(errno, "open %s", path);
      copy_tree(f, t, path);
      close(f);
      close(t);
    } else if (S_ISREG(sb.st_mode)) {
      copy_file(from, to, name, path);
    } else if (S_ISLNK(sb.st_mode)) {
      char target[4096];
      ssize_t n = readlinkat(from, name, target, sizeof target - 1);
      if (n < 0) fail(errno, "readlink %s", path);
      target[n] = 0;
      if (symlinkat(target, to, name) < 0) fail(errno, "symlink %s", path);
    } else if (mknodat(to, name, sb.st_mode, sb.st_rdev) < 0) {
      fail(errno, "mknod %s", path);
    }
    copy_attributes(to, name, &sb, path);
  }
  closedir(dir);
}

static void do_copy_dir_in_root(struct step *st) {
  int slot = (int)I(st, 0);
  const char *rootfs = S(st, 1), *path = S(st, 2);
  if (slot < 0 || slot >= MAX_SLOTS || slots[slot] < 0) fail(EPROTO, "bad slot %d", slot);
  int to = open_in_root(rootfs, path, O_RDONLY | O_DIRECTORY, 0);
  if (to < 0) fail(errno, "open %s inside %s", path, rootfs);
  copy_tree(slots[slot], to, path);
  struct stat sb;
  if (fstat(slots[slot], &sb) < 0) fail(errno, "stat %s", path);
  if (fchown(to, sb.st_uid, sb.st_gid) < 0) fail(errno, "chown %s", path);
  if (fchmod(to, sb.st_mode & 07777) < 0) fail(errno, "chmod %s", path);
  close(to);
  close(slots[slot]);
  slots[slot] = -1;
}

/* ---------- id-mapped bind mounts (kernel 5.12+) ----------
 * The launcher, still the host's root, makes a detached copy of the source (open_tree with
 * OPEN_TREE_CLONE) and id-maps it (mount_setattr with MOUNT_ATTR_IDMAP), which needs
 * CAP_SYS_ADMIN over the source's filesystem: the container's root in its own user namespace
 * has not. The mapping comes from a helper user namespace made here and dropped once the mount
 * holds it. The container's init later attaches the mount with move_mount. */
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
struct pivot_mount_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static void write_proc_file(pid_t pid, const char *name, const char *value) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  size_t n = strlen(value);
  if (fd < 0 || write(fd, value, n) != (ssize_t)n) fail(errno, "write %s of the id-mapping helper", path);
  close(fd);
}

/* A user namespace with these maps, as an fd: a child unshares it and waits until it is opened. */
static int helper_userns(const char *uid_map, const char *gid_map) {
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0) fail(errno, "pipe");
  pid_t pid = fork();
  if (pid < 0) fail(errno, "fork the id-mapping helper");
  if (pid == 0) {
    close(ready[0]);
    close(done[1]);
    char c = unshare(CLONE_NEWUSER) == 0 ? 'u' : 'e';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    (void)!read(done[0], &c, 1); /* until the parent closes it */
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char c = 0;
  if (read(ready[0], &c, 1) != 1 || c != 'u') {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail(EPERM, "the id-mapping helper could not create a user namespace");
  }
  close(ready[0]);
  write_proc_file(pid, "uid_map", uid_map);
  write_proc_file(pid, "gid_map", gid_map);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int err = errno;
  close(done[1]);
  waitpid(pid, NULL, 0);
  if (fd < 0) fail(err, "open %s", path);
  return fd;
}

static void do_open_idmapped_tree(struct step *st) {
  int slot = (int)I(st, 0);
  const char *source = S(st, 1);
  int rec_bind = (int)I(st, 2), rec_idmap = (int)I(st, 3);
  if (slot < 0 || slot >= MAX_SLOTS) fail(EPROTO, "bad slot %d", slot);
  int userns = helper_userns(S(st, 4), S(st, 5));
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec_bind ? AT_RECURSIVE : 0));
  if (tree < 0) fail(errno, "open_tree(OPEN_TREE_CLONE) of %s", source);
  struct pivot_mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (rec_idmap ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0) {
    int err = errno;
    if (err == ENOSYS) fail(err, "mount_setattr of %s: this kernel has no id-mapped mounts (5.12 or later needed)", source);
    if (err == EINVAL)
      fail(err, "mount_setattr(MOUNT_ATTR_IDMAP) of %s: its filesystem (or one mounted beneath it) does not support id-mapped mounts", source);
    fail(err, "mount_setattr(MOUNT_ATTR_IDMAP) of %s", source);
  }
  close(userns);
  /* A detached copy of a shared source stays in the source's peer group; the plan says what it
   * becomes instead (a slave, or private). */
  /* Its attributes (read-only, nosuid, ...) too, before anything can see it. */
  struct pivot_mount_attr prop = {
      .attr_set = (uint64_t)I(st, 7), .attr_clr = (uint64_t)I(st, 8), .propagation = (uint64_t)I(st, 6)};
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (rec_bind ? AT_RECURSIVE : 0), &prop, sizeof prop) < 0)
    fail(errno, "set the propagation and attributes (set 0x%llx, cleared 0x%llx) of the id-mapped copy of %s",
         (unsigned long long)prop.attr_set, (unsigned long long)prop.attr_clr, source);
  slots[slot] = tree;
}

/* Propagation changes, arguments `from` on (MS_* flags, with MS_REC for the submounts too), on
 * the mount an fd holds: no path is looked up again. */
static void set_propagations(struct step *st, int from, int mount_fd, const char *path) {
  for (int i = from; i < st->argc; i++) {
    uint64_t flags = (uint64_t)I(st, i);
    struct pivot_mount_attr attr = {.propagation = flags & ~(uint64_t)MS_REC};
    if (syscall(SYS_mount_setattr, mount_fd, "", AT_EMPTY_PATH | ((flags & MS_REC) ? AT_RECURSIVE : 0), &attr,
                sizeof attr) < 0)
      fail(errno, "set the propagation of %s (flags 0x%llx)", path, (unsigned long long)flags);
  }
}

static void do_move_mount_in_root(struct step *st) {
  int slot = (int)I(st, 0);
  const char *rootfs = S(st, 1), *path = S(st, 2);
  if (slot < 0 || slot >= MAX_SLOTS || slots[slot] < 0) fail(EPROTO, "bad slot %d", slot);
  int target = open_in_root(rootfs, path, O_PATH, 0);
  if (target < 0) fail(errno, "open mount point %s inside %s", path, rootfs);
  check_mount_point_fs(target, rootfs, path, I(st, 3));
  if (syscall(SYS_move_mount, slots[slot], "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    fail(errno, "move_mount the id-mapped mount onto %s inside %s", path, rootfs);
  set_propagations(st, 4, slots[slot], path);
  close(target);
  close(slots[slot]);
  slots[slot] = -1;
}

/* A bind mount in one step (Op.BindInRoot): the destination is opened once, inside the root; a
 * detached copy of the source gets its attributes before it is attached there, and its
 * propagation after, through the same fd. */
static void do_bind_in_root(struct step *st) {
  const char *rootfs = S(st, 0), *path = S(st, 1), *source = S(st, 2);
  int recursive = (int)I(st, 3);
  struct pivot_mount_attr attr = {.attr_set = (uint64_t)I(st, 4), .attr_clr = (uint64_t)I(st, 5)};
  int target = open_in_root(rootfs, path, O_PATH, 0);
  if (target < 0) fail(errno, "open mount point %s inside %s", path, rootfs);
  check_mount_point_fs(target, rootfs, path, I(st, 6));
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (tree < 0) fail(errno, "open_tree(OPEN_TREE_CLONE) of the bind source %s", source);
  if ((attr.attr_set || attr.attr_clr) &&
      syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0)
    fail(errno, "set the attributes of the bind of %s (mount_setattr: set 0x%llx, cleared 0x%llx%s)", source,
         (unsigned long long)attr.attr_set, (unsigned long long)attr.attr_clr, recursive ? ", submounts too" : "");
  if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    fail(errno, "bind %s on %s inside %s (move_mount)", source, path, rootfs);
  set_propagations(st, 7, tree, path);
  close(tree);
  close(target);
}

/* The mount holding PATH made private, in this mount namespace: mount(2) refuses (EINVAL) a
 * directory that is not a mount point, so each parent is tried up to "/". */
static void do_private_mount_of(const char *path) {
  char p[PATH_MAX];
  if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) fail(ENAMETOOLONG, "%s", path);
  for (;;) {
    if (mount(NULL, p, NULL, MS_PRIVATE, NULL) == 0) return;
    if (errno != EINVAL || strcmp(p, "/") == 0) fail(errno, "make the mount holding %s private", path);
    char *slash = strrchr(p, '/');
    if (slash == p) p[1] = '\0';
    else *slash = '\0';
  }
}

static void do_pivot_root(const char *rootfs) {
  int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0) fail(errno, "open /");
  int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (newroot < 0) fail(errno, "open root filesystem %s", rootfs);
  if (fchdir(newroot) < 0) fail(errno, "chdir %s", rootfs);
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail(errno, "pivot_root to %s", rootfs);
  /* The old root is now stacked on /; make it a slave so unmounting it cannot propagate to the host. */
  if (fchdir(oldroot) < 0) fail(errno, "chdir to the old root");
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) fail(errno, "make the old root a slave mount");
  if (umount2(".", MNT_DETACH) < 0) fail(errno, "detach the old root");
  if (chdir("/") < 0) fail(errno, "chdir /");
  close(oldroot);
  close(newroot);
}

static void do_move_root(const char *rootfs) {
  if (chdir(rootfs) < 0) fail(errno, "chdir %s", rootfs);
  if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0) fail(errno, "move %s onto /", rootfs);
  if (chroot(".") < 0) fail(errno, "chroot %s", rootfs);
  if (chdir("/") < 0) fail(errno, "chdir /");
}

static void do_mask_path(const char *path) {
  /* After pivot_root, so a symlink resolves inside the container's root, as before. */
  int target = open(path, O_PATH | O_CLOEXEC);
  if (target < 0) {
    if (errno == ENOENT) return;
    fail(errno, "open masked path %s", path);
  }
  struct stat sb;
  if (fstat(target, &sb) < 0) fail(errno, "stat masked path %s", path);
  if (S_ISDIR(sb.st_mode)) {
    close(target);
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0") < 0) fail(errno, "mask directory %s with a read-only tmpfs", path);
    return;
  }
  /* The container's /dev/null, which the image may have made a symlink (to core_pattern, say)
   * where /dev is not a fresh tmpfs: bound only if it is the null device itself (as runc). */
  int null_fd = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat nb;
  if (null_fd < 0 || fstat(null_fd, &nb) < 0) fail(errno, "open /dev/null to mask %s", path);
  if (!S_ISCHR(nb.st_mode) || major(nb.st_rdev) != 1 || minor(nb.st_rdev) != 3)
    fail(EPERM, "mask %s: the container's /dev/null is not the null device (1:3)", path);
  /* From the checked fd onto the opened target (a detached copy attached there): no path is
   * resolved twice, and /proc/self/fd needs a /proc the config may not have. */
  int tree = (int)syscall(SYS_open_tree, null_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  if (tree < 0) fail(errno, "mask %s: open_tree of /dev/null", path);
  if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    fail(errno, "mask %s with /dev/null", path);
  close(tree);
  close(null_fd);
  close(target);
}

static void do_readonly_path(const char *path) {
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (errno == ENOENT) return;
    fail(errno, "bind %s onto itself", path);
  }
  struct statvfs sv;
  unsigned long keep = 0;
  if (statvfs(path, &sv) == 0) keep = sv.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC);
  if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | keep, NULL) < 0)
    fail(errno, "remount %s read-only", path);
}

static void do_write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) fail(errno, "open %s", path);
  size_t n = strlen(value);
  if (write(fd, value, n) != (ssize_t)n) fail(errno, "write %s", path);
  close(fd);
}

/* Sends an fd over a unix socket (SCM_RIGHTS) with a message beside it; `what` names it in errors. */
static void send_fd(int sock, int fd, const char *message, const char *what) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = (void *)message, .iov_len = strlen(message)};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) fail(errno, "send %s", what);
}

static void do_setup_terminal(struct step *st) {
  int sock = slots[I(st, 0)];
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail(errno, "open /dev/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(errno, "unlock the pty");
  int n;
  if (ioctl(master, TIOCGPTN, &n) < 0) fail(errno, "get the pty number");
  char name[64];
  snprintf(name, sizeof name, "/dev/pts/%d", n);
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) fail(errno, "open %s", name);
  if (I(st, 1) > 0 && I(st, 2) > 0) {
    struct winsize ws = {.ws_row = (unsigned short)I(st, 1), .ws_col = (unsigned short)I(st, 2)};
    ioctl(slave, TIOCSWINSZ, &ws);
  }
  send_fd(sock, master, name, "the pty master over the console socket");
  close(master);
  close(sock);
  if (setsid() < 0 && errno != EPERM) fail(errno, "setsid");
  if (ioctl(slave, TIOCSCTTY, 0) < 0) fail(errno, "make %s the controlling terminal", name);
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0) fail(errno, "dup2 the pty onto fd %d", i);
  if (slave > 2) close(slave);
}

static void do_connect_socket(struct step *st) {
  const char *path = S(st, 1);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) fail(ENAMETOOLONG, "console socket path %s", path);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(errno, "socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) fail(errno, "connect to console socket %s", path);
  slots[I(st, 0)] = fd;
}

static void do_make_fifo(struct step *st) {
  const char *path = S(st, 1);
  if (mkfifo(path, 0622) < 0) fail(errno, "mkfifo %s", path);
  /* mkfifo applies the umask; the container's user, whoever it is, must be able to open it for writing. */
  if (chmod(path, 0622) < 0) fail(errno, "chmod %s", path);
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) fail(errno, "open %s", path);
  slots[I(st, 0)] = fd;
  /* The host's /proc, kept open so the fifo can be reopened for writing through
   * /proc/self/fd even where the container has no /proc of its own (no mount namespace). */
  host_proc_fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (host_proc_fd < 0) fail(errno, "open /proc");
}

static void do_wait_exec_fifo(struct step *st) {
  char path[64];
  snprintf(path, sizeof path, "self/fd/%d", slots[I(st, 0)]);
  send_event(EV_READY, "");
  /* Blocks until `start` opens the fifo for reading. */
  int fd = openat(host_proc_fd, path, O_WRONLY | O_CLOEXEC);
  close(host_proc_fd);
  if (fd < 0) fail(errno, "open the exec fifo");
  if (write(fd, "0", 1) != 1) fail(errno, "write the exec fifo");
  /* fd stays open (close-on-exec): `start` sees end of file on the fifo once the program is
   * exec'd, the moment poststart hooks may run. */
  close(slots[I(st, 0)]);
}

static void do_set_groups(struct step *st) {
  gid_t groups[MAX_ARGS];
  int n = st->argc > MAX_ARGS ? MAX_ARGS : st->argc;
  for (int i = 0; i < n; i++) groups[i] = (gid_t)I(st, i);
  if (setgroups((size_t)n, groups) < 0) fail(errno, "setgroups");
}

static void do_set_user(struct step *st) {
  uid_t uid = (uid_t)I(st, 0);
  gid_t gid = (gid_t)I(st, 1);
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(errno, "prctl(PR_SET_KEEPCAPS)");
  if (setresgid(gid, gid, gid) < 0) fail(errno, "setgid %u", gid);
  if (setresuid(uid, uid, uid) < 0) fail(errno, "setuid %u", uid);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) fail(errno, "prctl(PR_SET_KEEPCAPS)");
}

static int last_cap(void) {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  char buf[16] = {0};
  if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) return CAP_LAST_CAP;
  close(fd);
  return atoi(buf);
}

static void do_set_bounding_set(struct step *st) {
  uint64_t keep = (uint64_t)I(st, 0);
  int last = last_cap();
  for (int c = 0; c <= last && c < 64; c++)
    if (!(keep & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
      fail(errno, "drop capability %d from the bounding set", c);
}

static void do_set_capabilities(struct step *st) {
  uint64_t eff = (uint64_t)I(st, 0), perm = (uint64_t)I(st, 1), inh = (uint64_t)I(st, 2), amb = (uint64_t)I(st, 3);
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2] = {
      {.effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh},
      {.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(perm >> 32), .inheritable = (uint32_t)(inh >> 32)},
  };
  if (syscall(SYS_capset, &hdr, data) < 0) fail(errno, "capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) fail(errno, "clear ambient capabilities");
  int last = last_cap();
  for (int c = 0; c <= last && c < 64; c++)
    if ((amb & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      fail(errno, "raise ambient capability %d", c);
}

/* ---------- seccomp ----------
 * The TypeScript side compiles linux.seccomp (src/security/seccomp.ts) into the kernel values of
 * actions and libseccomp's enum numbers; these checks keep the two sides in agreement. */
_Static_assert(SCMP_FLTATR_CTL_NNP == 3 && SCMP_FLTATR_CTL_TSYNC == 4 && SCMP_FLTATR_CTL_LOG == 6 &&
                   SCMP_FLTATR_CTL_SSB == 7 && SCMP_FLTATR_CTL_OPTIMIZE == 8,
               "libseccomp filter attributes differ from src/security/seccomp.ts");
_Static_assert(SCMP_CMP_NE == 1 && SCMP_CMP_LT == 2 && SCMP_CMP_LE == 3 && SCMP_CMP_EQ == 4 && SCMP_CMP_GE == 5 &&
                   SCMP_CMP_GT == 6 && SCMP_CMP_MASKED_EQ == 7,
               "libseccomp comparison operators differ from src/security/seccomp.ts");
_Static_assert(SCMP_ACT_KILL_PROCESS == 0x80000000U && SCMP_ACT_KILL_THREAD == 0 && SCMP_ACT_TRAP == 0x00030000U &&
                   SCMP_ACT_ERRNO(0) == 0x00050000U && SCMP_ACT_TRACE(0) == 0x7ff00000U && SCMP_ACT_LOG == 0x7ffc0000U &&
                   SCMP_ACT_ALLOW == 0x7fff0000U && SCMP_ACT_NOTIFY == 0x7fc00000U,
               "libseccomp actions differ from src/security/seccomp.ts");

static scmp_filter_ctx seccomp_ctx;

static scmp_filter_ctx seccomp_filter(void) {
  if (!seccomp_ctx) fail(EPROTO, "no seccomp filter is being built (SeccompInit is missing)");
  return seccomp_ctx;
}

static void do_seccomp_init(struct step *st) {
  uint32_t def = (uint32_t)I(st, 0);
  if (seccomp_ctx) seccomp_release(seccomp_ctx);
  seccomp_ctx = seccomp_init(def);
  if (!seccomp_ctx) fail(EINVAL, "seccomp_init with default action 0x%x", def);
  /* Report the kernel's errno instead of libseccomp's generic ECANCELED; older versions lack it. */
  seccomp_attr_set(seccomp_ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
}

static void do_seccomp_arch(struct step *st) {
  const char *name = S(st, 0);
  uint32_t arch = seccomp_arch_resolve_name(name);
  if (arch == 0) {
    const struct scmp_version *v = seccomp_version();
    fail(EINVAL, "libseccomp %u.%u.%u does not know the architecture %s", v->major, v->minor, v->micro, name);
  }
  int rc = seccomp_arch_add(seccomp_filter(), arch);
  if (rc == -EDOM) fail(EDOM, "add the architecture %s to the seccomp filter: its byte order differs from this host's", name);
  if (rc < 0 && rc != -EEXIST) fail(-rc, "add the architecture %s to the seccomp filter", name);
}

static void do_seccomp_attr(struct step *st) {
  int attr = (int)I(st, 0);
  int rc = seccomp_attr_set(seccomp_filter(), (enum scmp_filter_attr)attr, (uint32_t)I(st, 1));
  if (rc < 0 && !I(st, 2)) {
    const struct scmp_version *v = seccomp_version();
    fail(-rc, "set seccomp filter attribute %d (libseccomp %u.%u.%u)", attr, v->major, v->minor, v->micro);
  }
}

static void do_seccomp_rule(struct step *st) {
  const char *name = S(st, 0);
  uint32_t action = (uint32_t)I(st, 1);
  int n = (int)I(st, 2);
  if (n < 0 || n > 6 || st->argc != 3 + 4 * n) fail(EPROTO, "bad seccomp rule for %s", name);
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return; /* not a system call on this kernel's architectures: skipped, as runc does */
  struct scmp_arg_cmp cmp[6];
  for (int i = 0; i < n; i++) {
    cmp[i] = (struct scmp_arg_cmp){.arg = (unsigned)I(st, 3 + 4 * i),
                                   .op = (enum scmp_compare)I(st, 4 + 4 * i),
                                   .datum_a = (scmp_datum_t)I(st, 5 + 4 * i),
                                   .datum_b = (scmp_datum_t)I(st, 6 + 4 * i)};
  }
  int rc = seccomp_rule_add_array(seccomp_filter(), action, nr, (unsigned)n, cmp);
  if (rc < 0) fail(-rc, "add the seccomp rule for %s (action 0x%x, %d conditions)", name, action, n);
}

/* Sends the seccomp notification fd to the listener with the state as the message (runtime-spec
 * "Seccomp notify": the fds array of the state names it "seccompFd"). */
static void send_notify_fd(int sock, int fd) {
  send_fd(sock, fd, listener_state, "the seccomp notification fd to the listener");
}

static void do_seccomp_load(struct step *st) {
  int slot = (int)I(st, 0);
  int rc = seccomp_load(seccomp_filter());
  if (rc < 0) fail(-rc, "load the seccomp filter");
  if (slot >= 0 && slot < MAX_SLOTS) {
    int fd = seccomp_notify_fd(seccomp_ctx);
    if (fd < 0) fail(-fd, "get the seccomp notification fd");
    send_notify_fd(slots[slot], fd);
    close(fd);
    close(slots[slot]);
    slots[slot] = -1;
  }
  seccomp_release(seccomp_ctx);
  seccomp_ctx = NULL;
}

/* Exports the filter being built as classic BPF (what seccomp_load would hand the kernel) and
 * reports it with the kernel filter flags its attributes stand for, and libseccomp's version and
 * file, so that the TypeScript side can cache it (src/security/seccomp-cache.ts). Loads nothing. */
static void do_seccomp_export(void) {
  scmp_filter_ctx ctx = seccomp_filter();
  int fd = (int)syscall(SYS_memfd_create, "pivot-seccomp", 1U /* MFD_CLOEXEC */);
  if (fd < 0) fail(errno, "create a memfd for the seccomp filter");
  int rc = seccomp_export_bpf(ctx, fd);
  if (rc < 0) fail(-rc, "export the seccomp filter");
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || size > 4096 * 8 || size % 8 != 0) fail(EINVAL, "the exported seccomp filter has %lld bytes", (long long)size);
  unsigned char *bpf = malloc((size_t)size);
  char *hex = malloc((size_t)size * 2 + 1);
  if (!bpf || !hex) fail(ENOMEM, "out of memory");
  if (pread(fd, bpf, (size_t)size, 0) != size) fail(EIO, "read the exported seccomp filter");
  close(fd);
  for (off_t i = 0; i < size; i++) snprintf(hex + 2 * i, 3, "%02x", bpf[i]);
  /* The flags seccomp_load passes for these attributes (libseccomp's sys_filter_load); a failed
   * optional attribute reads 0. WAITKILL (10) is unknown before libseccomp 2.6: 0 then. */
  uint32_t v, flags = 0;
  if (seccomp_attr_get(ctx, SCMP_FLTATR_CTL_TSYNC, &v) == 0 && v) flags |= 1U;     /* SECCOMP_FILTER_FLAG_TSYNC */
  if (seccomp_attr_get(ctx, SCMP_FLTATR_CTL_LOG, &v) == 0 && v) flags |= 2U;       /* SECCOMP_FILTER_FLAG_LOG */
  if (seccomp_attr_get(ctx, SCMP_FLTATR_CTL_SSB, &v) == 0 && v) flags |= 4U;       /* SECCOMP_FILTER_FLAG_SPEC_ALLOW */
  if (seccomp_attr_get(ctx, (enum scmp_filter_attr)10, &v) == 0 && v) flags |= 32U; /* ..._WAIT_KILLABLE_RECV */
  const struct scmp_version *ver = seccomp_version();
  char version[64];
  snprintf(version, sizeof version, "%u.%u.%u", ver->major, ver->minor, ver->micro);
  /* The library's file, for the cache key: an upgraded libseccomp compiles afresh. */
  char lib[4096] = "";
  FILE *maps = fopen("/proc/self/maps", "re");
  if (maps) {
    char line[4096 + 128];
    while (fgets(line, sizeof line, maps)) {
      char *path = strchr(line, '/');
      if (path && strstr(path, "/libseccomp.so")) {
        path[strcspn(path, "\n")] = 0;
        snprintf(lib, sizeof lib, "%s", path);
        break;
      }
    }
    fclose(maps);
  }
  /* send_event caps a message at 8 KiB: this one is framed here. */
  size_t hexlen = (size_t)size * 2, vlen = strlen(version), llen = strlen(lib);
  size_t total = 8 + 9 + (5 + hexlen) + (5 + vlen) + (5 + llen);
  char *buf = malloc(total);
  if (!buf) fail(ENOMEM, "out of memory");
  size_t at = 8;
  int64_t f64 = flags;
  buf[at] = WIRE_TAG_INT;
  memcpy(buf + at + 1, &f64, 8);
  at += 9;
  const char *strs[3] = {hex, version, lib};
  size_t lens[3] = {hexlen, vlen, llen};
  for (int i = 0; i < 3; i++) {
    uint32_t l = (uint32_t)lens[i];
    buf[at] = WIRE_TAG_STR;
    memcpy(buf + at + 1, &l, 4);
    memcpy(buf + at + 5, strs[i], l);
    at += 5 + l;
  }
  uint32_t len = (uint32_t)(at - 4);
  uint16_t c = EV_SECCOMP_PROGRAM, n = 4;
  memcpy(buf, &len, 4);
  memcpy(buf + 4, &c, 2);
  memcpy(buf + 6, &n, 2);
  write_full(control_fd, buf, at);
  free(buf);
  free(hex);
  free(bpf);
}

/* Loads a filter compiled earlier (do_seccomp_export) as it is: (flags, BPF bytes). The flags are
 * the kernel's SECCOMP_FILTER_FLAG_*; no_new_privs stays as the plan sets it, as with libseccomp. */
static void do_seccomp_load_program(struct step *st) {
  unsigned flags = (unsigned)I(st, 0);
  if (st->argc < 2 || st->args[1].is_int) fail(EPROTO, "bad seccomp program step");
  uint32_t len = st->args[1].len;
  if (len == 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
    fail(EINVAL, "a seccomp program of %u bytes", len);
  struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)),
                            .filter = (struct sock_filter *)(void *)st->args[1].s};
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (rc > 0) fail(ESRCH, "load the seccomp filter: thread %ld could not be synchronised (TSYNC)", rc);
  if (rc < 0) fail(errno, "load the seccomp filter (flags 0x%x)", flags);
}

static void do_run_hook(struct step *st) {
  int timeout = (int)I(st, 0);
  const char *input = hook_state, *path = S(st, 1);
  int argc = (int)I(st, 2);
  char **argv = string_vector(st, 3, argc);
  char **envp = string_vector(st, 3 + argc, st->argc - 3 - argc);
  int in[2];
  if (pipe2(in, O_CLOEXEC) < 0) fail(errno, "pipe");
  pid_t pid = fork();
  if (pid < 0) fail(errno, "fork for hook %s", path);
  if (pid == 0) {
    dup2(in[0], 0);
    execve(path, argc ? argv : (char *[]){(char *)path, NULL}, envp);
    _exit(127);
  }
  close(in[0]);
  write(in[1], input, strlen(input));
  close(in[1]);
  int status = 0;
  struct timespec start, now, nap = {0, 1000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    pid_t r = waitpid(pid, &status, timeout > 0 ? WNOHANG : 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) fail(errno, "wait for hook %s", path);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (timeout > 0 && now.tv_sec - start.tv_sec >= timeout) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail(ETIMEDOUT, "hook %s timed out after %d seconds", path, timeout);
    }
    nanosleep(&nap, NULL);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) fail(ENOENT, "hook %s could not be executed", path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(ECANCELED, "hook %s failed with %s %d", path, WIFEXITED(status) ? "exit status" : "signal",
         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static void do_find_executable(struct step *st) {
  const char *name = S(st, 0), *pathenv = S(st, 1);
  struct stat sb;
  if (strchr(name, '/')) {
    if (stat(name, &sb) < 0) fail(errno, "executable %s", name);
    if (S_ISDIR(sb.st_mode)) fail(EISDIR, "executable %s is a directory", name);
    snprintf(resolved_exec, sizeof resolved_exec, "%s", name);
    return;
  }
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", pathenv);
  int denied = 0;
  for (char *save, *dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    snprintf(resolved_exec, sizeof resolved_exec, "%s/%s", dir[0] ? dir : ".", name);
    if (stat(resolved_exec, &sb) == 0 && S_ISREG(sb.st_mode)) {
      if (access(resolved_exec, X_OK) == 0) return;
      denied = 1;
    }
  }
  fail(denied ? EACCES : ENOENT, "executable %s not found in PATH %s", name, pathenv);
}

static void do_exec(struct step *st) {
  int argc = (int)I(st, 0);
  char **argv = string_vector(st, 1, argc);
  char **envp = string_vector(st, 1 + argc, st->argc - 1 - argc);
  /* Give the program a clean signal state. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  execve(resolved_exec[0] ? resolved_exec : argv[0], argv, envp);
  fail(errno, "exec %s", resolved_exec[0] ? resolved_exec : argv[0]);
}

/* ---------- cgroup v2 device program ---------- */

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

/* Loads the instructions as a BPF_PROG_TYPE_CGROUP_DEVICE program; on failure, loads again with the
 * verifier's log and reports its end. RLIMIT_MEMLOCK is raised for the load only (kernels before 5.11
 * charge programs to it) and put back, so the container does not inherit it. */
static int load_device_program(const struct arg *insns, const char *license) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)insns->s;
  attr.insn_cnt = insns->len / 8;
  attr.license = (uint64_t)(uintptr_t)license;
  struct rlimit old, unlimited = {RLIM_INFINITY, RLIM_INFINITY};
  int restore = getrlimit(RLIMIT_MEMLOCK, &old) == 0 && setrlimit(RLIMIT_MEMLOCK, &unlimited) == 0;
  int fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
  int err = errno;
  if (fd < 0) {
    static char log[1 << 16];
    log[0] = 0;
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = sizeof log;
    attr.log_level = 1;
    if (sys_bpf(BPF_PROG_LOAD, &attr) >= 0) log[0] = 0; /* cannot happen: the same program */
    size_t n = strlen(log);
    while (n > 0 && log[n - 1] == '\n') log[--n] = 0;
    const char *tail = n > 3000 ? log + n - 3000 : log;
    if (restore) setrlimit(RLIMIT_MEMLOCK, &old);
    fail(err, "load the device program (%u instructions) with BPF_PROG_LOAD%s%s", insns->len / 8,
         n ? "; the verifier says: " : "", tail);
  }
  if (restore) setrlimit(RLIMIT_MEMLOCK, &old);
  return fd;
}

/* Op.AttachDeviceFilter: (cgroupDir, instructions, license). The new program is attached before the
 * old ones are detached, so the cgroup is never without one (both apply for that instant). */
static void do_attach_device_filter(struct step *st) {
  const char *dir = S(st, 0);
  S(st, 1);
  const struct arg *insns = &st->args[1];
  const char *license = S(st, 2);
  if (insns->len == 0 || insns->len % 8 != 0) fail(EINVAL, "a device program of %u bytes is not whole instructions", insns->len);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) fail(errno, "open the cgroup %s", dir);
  uint32_t ids[64];
  union bpf_attr q;
  memset(&q, 0, sizeof q);
  q.query.target_fd = (uint32_t)dirfd;
  q.query.attach_type = BPF_CGROUP_DEVICE;
  q.query.prog_ids = (uint64_t)(uintptr_t)ids;
  q.query.prog_cnt = 64;
  if (sys_bpf(BPF_PROG_QUERY, &q) < 0) fail(errno, "list the device programs attached to %s (BPF_PROG_QUERY)", dir);
  uint32_t old = q.query.prog_cnt;
  int prog = load_device_program(insns, license);
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.target_fd = (uint32_t)dirfd;
  a.attach_bpf_fd = (uint32_t)prog;
  a.attach_type = BPF_CGROUP_DEVICE;
  a.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) fail(errno, "attach the device program to %s (BPF_PROG_ATTACH)", dir);
  for (uint32_t i = 0; i < old; i++) {
    union bpf_attr g;
    memset(&g, 0, sizeof g);
    g.prog_id = ids[i];
    int ofd = (int)sys_bpf(BPF_PROG_GET_FD_BY_ID, &g);
    if (ofd < 0 && errno == ENOENT) continue; /* detached and freed meanwhile */
    if (ofd < 0) fail(errno, "open the old device program %u of %s (BPF_PROG_GET_FD_BY_ID)", ids[i], dir);
    union bpf_attr d;
    memset(&d, 0, sizeof d);
    d.target_fd = (uint32_t)dirfd;
    d.attach_bpf_fd = (uint32_t)ofd;
    d.attach_type = BPF_CGROUP_DEVICE;
    if (sys_bpf(BPF_PROG_DETACH, &d) < 0 && errno != ENOENT)
      fail(errno, "detach the old device program %u from %s (BPF_PROG_DETACH)", ids[i], dir);
    close(ofd);
  }
  /* The attachment holds the program: it lives as long as the cgroup, not this process. */
  close(prog);
  close(dirfd);
}

static void do_loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(errno, "socket for configuring lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) fail(errno, "read the flags of lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) fail(errno, "bring lo up");
  close(fd);
}

static void run_step(struct step *st) {
  switch (st->code) {
    case OP_JOIN_NAMESPACE: {
      int fd = open(S(st, 0), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail(errno, "open namespace %s", S(st, 0));
      if (setns(fd, (int)I(st, 1)) < 0) fail(errno, "join namespace %s", S(st, 0));
      close(fd);
      break;
    }
    case OP_FORK_SETUP: do_fork_setup(st); break;
    case OP_SYNC:
      if (I(st, 0) == SYNC_START) wait_to_be_started();
      else sync_with_parent((int)I(st, 0));
      break;
    case OP_UNSHARE:
      if (unshare((int)I(st, 0)) < 0) fail(errno, "unshare namespaces (flags 0x%llx)", (unsigned long long)I(st, 0));
      break;
    case OP_TIME_OFFSETS: do_time_offsets(st); break;
    case OP_FORK_INIT: do_fork_init(); break;
    case OP_BECOME_NAMESPACE_ROOT:
      if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) fail(errno, "become root of the new user namespace");
      break;
    case OP_MOUNT:
      if (mount(nullable(S(st, 0)), S(st, 1), nullable(S(st, 2)), (unsigned long)I(st, 3), nullable(S(st, 4))) < 0)
        fail(errno, "mount %s on %s", S(st, 0)[0] ? S(st, 0) : "none", S(st, 1));
      break;
    case OP_MOUNT_IN_ROOT: do_mount_in_root(st, 0); break;
    case OP_MOUNT_IN_ROOT_NO_SYMLINKS: do_mount_in_root(st, 1); break;
    case OP_MKDIR_IN_ROOT: mkdir_in_root(S(st, 0), S(st, 1), (mode_t)I(st, 2)); break;
    case OP_TOUCH_IN_ROOT: do_touch_in_root(st); break;
    case OP_MKNOD_IN_ROOT: do_mknod_in_root(st); break;
    case OP_SYMLINK_IN_ROOT: do_symlink_in_root(st); break;
    case OP_PIVOT_ROOT: do_pivot_root(S(st, 0)); break;
    case OP_MOVE_ROOT: do_move_root(S(st, 0)); break;
    case OP_LOOPBACK_UP: do_loopback_up(); break;
    case OP_JOIN_CGROUP: do_join_cgroup(S(st, 0)); break;
    case OP_UNMOUNT:
      if (umount2(S(st, 0), (int)I(st, 1)) < 0) fail(errno, "unmount %s", S(st, 0));
      break;
    case OP_NEW_SESSION_KEYRING:
      /* KEYCTL_JOIN_SESSION_KEYRING = 1 */
      if (syscall(SYS_keyctl, 1, S(st, 0)) < 0) fail(errno, "join a new session keyring %s", S(st, 0));
      break;
    case OP_CHROOT:
      if (chroot(S(st, 0)) < 0 || chdir("/") < 0) fail(errno, "chroot %s", S(st, 0));
      break;
    case OP_MASK_PATH: do_mask_path(S(st, 0)); break;
    case OP_READONLY_PATH: do_readonly_path(S(st, 0)); break;
    case OP_SET_HOSTNAME:
      if (sethostname(S(st, 0), strlen(S(st, 0))) < 0) fail(errno, "sethostname %s", S(st, 0));
      break;
    case OP_SET_DOMAINNAME:
      if (setdomainname(S(st, 0), strlen(S(st, 0))) < 0) fail(errno, "setdomainname %s", S(st, 0));
      break;
    case OP_WRITE_FILE: do_write_file(S(st, 0), S(st, 1)); break;
    case OP_SET_RLIMIT: {
      struct rlimit rl = {.rlim_cur = (rlim_t)I(st, 1), .rlim_max = (rlim_t)I(st, 2)};
      if (setrlimit((int)I(st, 0), &rl) < 0) fail(errno, "setrlimit %d", (int)I(st, 0));
      break;
    }
    case OP_SETUP_TERMINAL: do_setup_terminal(st); break;
    case OP_CONNECT_SOCKET: do_connect_socket(st); break;
    case OP_MAKE_FIFO: do_make_fifo(st); break;
    case OP_WAIT_EXEC_FIFO: do_wait_exec_fifo(st); break;
    case OP_SET_GROUPS: do_set_groups(st); break;
    case OP_SET_USER: do_set_user(st); break;
    case OP_SET_CAPABILITIES: do_set_capabilities(st); break;
    case OP_SET_BOUNDING_SET: do_set_bounding_set(st); break;
    case OP_NO_NEW_PRIVILEGES:
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
      break;
    case OP_UMASK: umask((mode_t)I(st, 0)); break;
    case OP_CHDIR: do_chdir(S(st, 0)); break;
    case OP_RUN_HOOK: do_run_hook(st); break;
    case OP_NEW_SESSION:
      if (setsid() < 0 && errno != EPERM) fail(errno, "setsid");
      break;
    case OP_FIND_EXECUTABLE: do_find_executable(st); break;
    case OP_EXEC: do_exec(st); break;
    case OP_PROPAGATION:
      if (mount(NULL, S(st, 0), NULL, (unsigned long)I(st, 1), NULL) < 0)
        fail(errno, "set mount propagation of %s", S(st, 0));
      break;
    case OP_PRIVATE_MOUNT_OF: do_private_mount_of(S(st, 0)); break;
    case OP_WAIT_FOR_INIT: wait_for_init = 1; break;
    case OP_UNMOUNT_AFTER_EXIT:
      unmount_after_exit = S(st, 0);
      unmount_after_exit_flags = (int)I(st, 1);
      break;
    case OP_REPORT_EXEC: report_exec = 1; break;
    case OP_OPEN_DIR_IN_ROOT: do_open_dir_in_root(st); break;
    case OP_COPY_DIR_IN_ROOT: do_copy_dir_in_root(st); break;
    case OP_OPEN_IDMAPPED_TREE: do_open_idmapped_tree(st); break;
    case OP_MOVE_MOUNT_IN_ROOT: do_move_mount_in_root(st); break;
    case OP_BIND_IN_ROOT: do_bind_in_root(st); break;
    case OP_SET_DUMPABLE:
      if (prctl(PR_SET_DUMPABLE, (unsigned long)I(st, 0), 0, 0, 0) < 0) fail(errno, "prctl(PR_SET_DUMPABLE)");
      break;
    case OP_SECCOMP_INIT: do_seccomp_init(st); break;
    case OP_SECCOMP_ARCH: do_seccomp_arch(st); break;
    case OP_SECCOMP_ATTR: do_seccomp_attr(st); break;
    case OP_SECCOMP_RULE: do_seccomp_rule(st); break;
    case OP_SECCOMP_LOAD: do_seccomp_load(st); break;
    case OP_SECCOMP_EXPORT: do_seccomp_export(); break;
    case OP_SECCOMP_LOAD_PROGRAM: do_seccomp_load_program(st); break;
    case OP_TRACE: trace = 1; break;
    case OP_REPORT_SEALED_COPY: fail(EPROTO, "ReportSealedCopy is a request read_plan answers, not a step");
    case OP_ATTACH_DEVICE_FILTER: do_attach_device_filter(st); break;
    default: fail(EPROTO, "unknown step code %d", st->code);
  }
}

/* ---------- the launcher's own binary (CVE-2019-5736) ---------- */

/* Every process that enters a container (the setup process, the init, a joining `exec`) runs this
 * binary until it execs the container's program, and a program that is, or whose #! interpreter
 * is, /proc/self/exe runs it again inside the container: dumpable then, with the container's
 * loader and libraries if the binary is dynamic, and /proc/PID/exe leads to it. A container
 * process could then open the host's launcher for writing once nothing executes it, and every
 * later container would run its code as root on the host. So the launcher runs from a sealed
 * copy of itself, as runc and youki do: a memfd that nothing can write to, made once per launcher
 * unless the caller started it from such a copy already (launcher.ts keeps one). A read-only mount
 * does not count: it can be made writable again, and a held fd then writes. */
#define SEALS_OF_A_COPY (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
/* Linux 6.3+: the mode's exec bits cannot change either. Without it the copy's owner, root, could
 * chmod it through /proc/PID/exe: harmless for a copy one launcher uses, but launcher.ts shares a
 * copy between launchers only when it has this seal. */
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

static int open_own_binary(void) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "open /proc/self/exe (the launcher's own binary; is /proc mounted?)");
  return fd;
}

static int is_sealed_copy(int fd) {
  int seals = fcntl(fd, F_GET_SEALS); /* EINVAL for anything but a memfd */
  return seals >= 0 && (seals & SEALS_OF_A_COPY) == SEALS_OF_A_COPY;
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* Copies /proc/self/exe into a sealed memfd and execs that, with the same arguments and fds. */
static void run_from_sealed_copy(char **argv) {
  int src = open_own_binary();
  if (is_sealed_copy(src)) {
    close(src);
    return;
  }
  /* MFD_EXEC: kernels with vm.memfd_noexec (6.3+) want it said; older ones refuse the flag. */
  int copy = (int)syscall(SYS_memfd_create, "pivot-launcher", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (copy < 0 && errno == EINVAL) copy = (int)syscall(SYS_memfd_create, "pivot-launcher", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0 && errno == EACCES) {
    char level[8] = "?";
    int f = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);
    if (f >= 0) {
      ssize_t n = read(f, level, sizeof level - 1);
      level[n > 0 ? n : 0] = 0;
      level[strcspn(level, "\n")] = 0;
      close(f);
    }
    fail(EACCES, "create an executable memfd for a sealed copy of the launcher's binary (CVE-2019-5736): "
                 "vm.memfd_noexec is %s, which forbids executable memfds; set it to 0 or 1 "
                 "(sysctl vm.memfd_noexec=1) for the pid namespace the runtime runs in", level);
  }
  if (copy < 0) fail(errno, "create a memfd for a sealed copy of the launcher's binary");
  struct stat st;
  if (fstat(src, &st) < 0) fail(errno, "stat the launcher's binary");
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = sendfile(copy, src, NULL, (size_t)(st.st_size - done));
    if (n <= 0) fail(n < 0 ? errno : EIO, "copy the launcher's binary into a memfd");
    done += n;
  }
  close(src);
  if (fcntl(copy, F_ADD_SEALS, SEALS_OF_A_COPY | F_SEAL_EXEC) < 0 &&
      (errno != EINVAL || fcntl(copy, F_ADD_SEALS, SEALS_OF_A_COPY) < 0))
    fail(errno, "seal the copy of the launcher's binary");
  extern char **environ;
  syscall(SYS_execveat, copy, "", argv, environ, AT_EMPTY_PATH);
  fail(errno, "exec the sealed copy of the launcher's binary");
}

/* Op.ReportSealedCopy: the device, inode and seals of the copy this launcher runs from. */
static void report_sealed_copy(void) {
  int fd = open_own_binary();
  struct stat sb;
  if (fstat(fd, &sb) < 0) fail(errno, "stat /proc/self/exe");
  int seals = fcntl(fd, F_GET_SEALS);
  close(fd);
  send_event(EV_SEALED_COPY, "iii", (int64_t)sb.st_dev, (int64_t)sb.st_ino, (int64_t)(seals < 0 ? 0 : seals));
}

int main(int argc, char **argv) {
  main_us = now_us();
  if (argc != 2) {
    fprintf(stderr, "usage: pivot-launcher CONTROL_FD\n(pivot-launcher is started by pivot-runtime; it is not meant to be run by hand)\n");
    return 2;
  }
  control_fd = atoi(argv[1]);
  if (fcntl(control_fd, F_GETFD) < 0) {
    fprintf(stderr, "pivot-launcher: control fd %s is not open\n", argv[1]);
    return 2;
  }
  /* Before the control fd is made close-on-exec: the sealed copy gets it too. */
  run_from_sealed_copy(argv);
  set_cloexec(control_fd);
  for (int i = 0; i < MAX_SLOTS; i++) slots[i] = -1;
  read_plan();
  if (trace) send_event(EV_TRACE, "ii", (int64_t)-2, now_us() + trace_offset_us);
  for (current_step = 0; current_step < nsteps; current_step++) {
    int use = root_use(steps[current_step].code);
    if (use == ROOT_UNUSED) forget_root();
    run_step(&steps[current_step]);
    if (use != ROOT_KEPT) forget_root();
    if (trace) send_event(EV_TRACE, "ii", (int64_t)current_step, now_us() + trace_offset_us);
  }
  /* A plan without Exec (e.g. a pure setup plan) ends here. */
  return 0;
}
