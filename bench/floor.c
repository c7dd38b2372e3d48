/*
 * floor: the kernel floor of the library path. Runs COUNT containers of /bin/true one after the
 * other, each doing exactly what the benchmark bundle's config.json asks (bench/engine.ts's
 * bundle: `pivot-runtime spec` defaults, args ["/bin/true"], no terminal) and nothing else, in
 * the cheapest way a C program can: no config to parse, every path computed once, one syscall
 * per step where the kernel allows it. Built and run by bench/floor.ts; not part of Pivot.
 *
 * usage: floor MODE --count N --rootfs DIR [--cg VERSION:NAME:PARENT]... [--phases]
 *              [-- CMD ARGS...]
 *   MODE            full            cgroups, namespaces, mounts, devices, pivot_root, masks,
 *                                   read-only paths, rlimits, capabilities, no_new_privs, exec
 *                   full-no-cgroup  the same without the container's cgroups (no mkdir, devices
 *                                   rules, join or rmdir; /sys/fs/cgroup binds PARENT instead)
 *                   ns-only         clone into the config's six namespaces, exec in the host's root
 *                   bare            fork and exec, no namespaces (the process cost alone)
 *   --cg V:NAME:PARENT  a cgroup hierarchy (V 1 or 2) whose mount point's last component is NAME;
 *                   each container's cgroup is PARENT/c (PARENT is made if missing, and kept)
 *   --phases        also print to stderr where a container's time goes (mean ms per phase,
 *                   from clock_gettime at each phase's end, the child's written to a shared page)
 *   -- CMD ARGS     run CMD (an absolute path) instead of /bin/true, to look at the container
 *                   from inside
 *
 * Output, one line: "wall_ns user_us sys_us" of the loop (this process and its reaped children;
 * work the kernel defers to its own threads, such as a network namespace's teardown, is not in it).
 * Every call is checked; a failure names the call and the path and exits 1, after removing the
 * cgroup of the container that failed. Paths the default masks and read-only paths name that this
 * kernel does not have (ENOENT) are skipped, as every runtime does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CG 16
#define MAX_PATH 512

enum mode { FULL, FULL_NO_CGROUP, NS_ONLY, BARE };

struct hierarchy {
  int version;
  char name[64];          /* its directory under the container's /sys/fs/cgroup */
  char parent[MAX_PATH];  /* PARENT */
  char dir[MAX_PATH];     /* PARENT/c, the container's cgroup */
  char procs[MAX_PATH];   /* PARENT/c/cgroup.procs */
  char inside[MAX_PATH];  /* ROOTFS/sys/fs/cgroup/NAME */
  int devices;            /* has devices.allow: the device rules go here */
};

static struct hierarchy cg[MAX_CG];
static int ncg;
static enum mode mode;
static char **cmd;
static int last_cap;
/* Set in the parent while a container's cgroup exists: a failure removes it. */
static int have_cgroup;

/* --phases: the end of each phase, the parent's and the child's, in a page both see. */
enum phase {
  T_START, T_MKDIR, T_DEVRULES, T_CHILD, T_JOIN, T_CGROUPNS, T_NETUTS, T_ROOT, T_MOUNTS,
  T_CGMOUNT, T_DEVNODES, T_PIVOT, T_MASKS, T_CAPS, T_WAITED, T_RMDIR, T_N
};
static const char *phase_names[T_N] = {
    "", "mkdir cgroups", "device rules", "clone3 (to the child's first step)", "join v1 cgroups",
    "unshare cgroupns", "loopback + hostname", "rslave + bind rootfs", "proc, /dev, devpts, shm, mqueue, sysfs",
    "/sys/fs/cgroup (tmpfs, binds, ro)", "mknod + symlinks", "pivot_root + detach", "masks, read-only paths, ro root",
    "rlimit, caps, no_new_privs", "execve to reaped (exec, exit, namespaces torn down)", "rmdir cgroups"};
static volatile long long *stamps;
static double phase_sum[T_N];

static long long now_ns(void);
static inline void stamp(enum phase p) {
  if (stamps) stamps[p] = now_ns();
}

static void fail(const char *call, const char *path) {
  int e = errno;
  char buf[MAX_PATH + 128];
  int n = snprintf(buf, sizeof buf, "floor: %s %s: %s\n", call, path ? path : "", strerror(e));
  if (write(2, buf, (size_t)n) < 0) n = 0;
  if (have_cgroup)
    for (int i = 0; i < ncg; i++) rmdir(cg[i].dir);
  _exit(1);
}

static void join_path(char *out, const char *a, const char *b) {
  if ((size_t)snprintf(out, MAX_PATH, "%s%s", a, b) >= MAX_PATH) {
    errno = ENAMETOOLONG;
    fail("path", a);
  }
}

/* ---------- what the config asks, as paths computed once ---------- */

static char r_root[MAX_PATH], r_proc[MAX_PATH], r_dev[MAX_PATH], r_pts[MAX_PATH],
    r_shm[MAX_PATH], r_mqueue[MAX_PATH], r_sys[MAX_PATH], r_cgroup[MAX_PATH];

/* linux.devices is empty: the default devices every runtime makes, c MAJOR:MINOR, mode 0666. */
static const struct {
  const char *name;
  unsigned major, minor;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
               {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
#define NDEV (sizeof devices / sizeof devices[0])
static char r_devnode[NDEV][MAX_PATH];

static const struct {
  const char *target, *name;
} links[] = {{"/proc/self/fd", "fd"},
             {"/proc/self/fd/0", "stdin"},
             {"/proc/self/fd/1", "stdout"},
             {"/proc/self/fd/2", "stderr"},
             {"pts/ptmx", "ptmx"}};
#define NLINK (sizeof links / sizeof links[0])
static char r_link[NLINK][MAX_PATH];

/* linux.maskedPaths; the directories get a read-only tmpfs, the files /dev/null. */
static const struct {
  const char *path;
  int dir;
} masked[] = {{"/proc/acpi", 1},      {"/proc/asound", 1},       {"/proc/kcore", 0},
              {"/proc/keys", 0},      {"/proc/latency_stats", 0}, {"/proc/timer_list", 0},
              {"/proc/timer_stats", 0}, {"/proc/sched_debug", 0},  {"/sys/firmware", 1},
              {"/proc/scsi", 1}};
static const char *readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                 "/proc/sysrq-trigger"};

/* The device cgroup: linux.resources.devices denies everything; the defaults are allowed. */
static const char *device_rules[] = {"c *:* m",   "b *:* m",     "c 1:3 rwm", "c 1:8 rwm",
                                     "c 1:7 rwm", "c 5:0 rwm",   "c 1:5 rwm", "c 1:9 rwm",
                                     "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"};

static char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "TERM=xterm", NULL};
static char *true_argv[] = {"/bin/true", NULL};

/* process.capabilities: bounding = effective = permitted = these; inheritable empty. */
#define KEEP_CAPS ((1u << CAP_KILL) | (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_AUDIT_WRITE))

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                       const char *data) {
  if (mount(src, dst, type, flags, data) < 0) fail("mount", dst);
}

static void must_mkdir(const char *path) {
  if (mkdir(path, 0755) < 0) fail("mkdir", path);
}

/* ---------- the container process ---------- */

static void set_caps_and_exec(void) {
  stamp(T_MASKS);
  struct rlimit nofile = {1024, 1024};
  if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) fail("setrlimit", "RLIMIT_NOFILE");
  for (int c = 0; c <= last_cap; c++) {
    if (c < 32 && (KEEP_CAPS & (1u << c))) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) fail("prctl PR_CAPBSET_DROP", NULL);
  }
  /* user: uid 0, gid 0 (what the process already is), no additional groups. */
  if (setgroups(0, NULL) < 0) fail("setgroups", NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("prctl PR_SET_NO_NEW_PRIVS", NULL);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {{KEEP_CAPS, KEEP_CAPS, 0}, {0, 0, 0}};
  if (syscall(SYS_capset, &hdr, data) < 0) fail("capset", NULL);
  /* The ambient set the config lists cannot be raised with an empty inheritable set (runc and
   * Pivot leave it empty too). */
  stamp(T_CAPS);
  execve(cmd[0], cmd, env);
  fail("execve", cmd[0]);
}

static void container(void) {
  have_cgroup = 0;
  stamp(T_CHILD);
  if (mode == BARE || mode == NS_ONLY) {
    execve(cmd[0], cmd, env);
    fail("execve", cmd[0]);
  }
  if (mode == FULL) {
    /* Join the v1 hierarchies (the v2 one was joined by clone3), then the cgroup namespace. */
    for (int i = 0; i < ncg; i++) {
      if (cg[i].version != 1) continue;
      int fd = open(cg[i].procs, O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("open", cg[i].procs);
      if (write(fd, "0", 1) != 1) fail("write", cg[i].procs);
    }
    stamp(T_JOIN);
    if (unshare(CLONE_NEWCGROUP) < 0) fail("unshare", "CLONE_NEWCGROUP");
  }
  stamp(T_CGROUPNS);
  /* network: loopback up. */
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket", "AF_INET");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("ioctl SIOCGIFFLAGS", "lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("ioctl SIOCSIFFLAGS", "lo");
  /* hostname */
  if (sethostname("pivot", 5) < 0) fail("sethostname", "pivot");
  stamp(T_NETUTS);
  /* root: / rslave (no rootfsPropagation), the rootfs bound on itself. */
  must_mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL);
  must_mount(r_root, r_root, NULL, MS_BIND | MS_REC, NULL);
  stamp(T_ROOT);
  /* mounts */
  must_mount("proc", r_proc, "proc", 0, NULL);
  must_mount("tmpfs", r_dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  must_mkdir(r_pts);
  must_mount("devpts", r_pts, "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5");
  must_mkdir(r_shm);
  must_mount("shm", r_shm, "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k");
  must_mkdir(r_mqueue);
  must_mount("mqueue", r_mqueue, "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  must_mount("sysfs", r_sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  stamp(T_MOUNTS);
  /* /sys/fs/cgroup (type cgroup, ro) on a v1 or hybrid host: a tmpfs, each hierarchy's cgroup of
   * the container bound in it, then all of it read-only, nosuid, nodev, noexec in one call. */
  must_mount("tmpfs", r_cgroup, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755");
  for (int i = 0; i < ncg; i++) {
    must_mkdir(cg[i].inside);
    must_mount(mode == FULL ? cg[i].dir : cg[i].parent, cg[i].inside, NULL, MS_BIND, NULL);
  }
  struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                      MOUNT_ATTR_NOEXEC};
  if (mount_setattr(AT_FDCWD, r_cgroup, AT_RECURSIVE, &ro, sizeof ro) < 0)
    fail("mount_setattr", r_cgroup);
  stamp(T_CGMOUNT);
  /* devices (umask is 0: no chmod after mknod; root made them: no chown) and the links. */
  for (size_t i = 0; i < NDEV; i++)
    if (mknod(r_devnode[i], S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) < 0)
      fail("mknod", r_devnode[i]);
  for (size_t i = 0; i < NLINK; i++)
    if (symlink(links[i].target, r_link[i]) < 0) fail("symlink", r_link[i]);
  stamp(T_DEVNODES);
  /* pivot_root, the old root detached (it is a slave already: / was made rslave above). */
  if (chdir(r_root) < 0) fail("chdir", r_root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root", r_root);
  if (umount2(".", MNT_DETACH) < 0) fail("umount2", "old root");
  if (chdir("/") < 0) fail("chdir", "/");
  stamp(T_PIVOT);
  /* maskedPaths */
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
    int r = masked[i].dir ? mount("tmpfs", masked[i].path, "tmpfs", MS_RDONLY, NULL)
                          : mount("/dev/null", masked[i].path, NULL, MS_BIND, NULL);
    if (r < 0 && errno != ENOENT) fail("mount (mask)", masked[i].path);
  }
  /* readonlyPaths */
  for (size_t i = 0; i < sizeof readonly / sizeof readonly[0]; i++) {
    if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      fail("mount (bind)", readonly[i]);
    }
    must_mount(NULL, readonly[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  }
  /* root.readonly */
  must_mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  set_caps_and_exec();
}

/* ---------- the parent ---------- */

static void remove_cgroup(void) {
  for (int i = 0; i < ncg; i++)
    if (rmdir(cg[i].dir) < 0 && errno != ENOENT) fail("rmdir", cg[i].dir);
  have_cgroup = 0;
}

static void write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail("open", path);
  if (write(fd, value, strlen(value)) != (ssize_t)strlen(value)) fail("write", path);
  if (close(fd) < 0) fail("close", path);
}

static void one(void) {
  uint64_t flags = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  int cgfd = -1;
  stamp(T_START);
  if (mode == BARE) flags = 0;
  if (mode == NS_ONLY || mode == FULL_NO_CGROUP) flags |= CLONE_NEWCGROUP;
  if (mode == FULL) {
    have_cgroup = 1;
    for (int i = 0; i < ncg; i++)
      if (mkdir(cg[i].dir, 0755) < 0) {
        int e = errno;
        for (int k = 0; k < i; k++) rmdir(cg[k].dir);
        have_cgroup = 0;
        errno = e;
        fail("mkdir", cg[i].dir);
      }
    stamp(T_MKDIR);
    for (int i = 0; i < ncg; i++) {
      if (!cg[i].devices) continue;
      char path[MAX_PATH];
      join_path(path, cg[i].dir, "/devices.deny");
      write_file(path, "a");
      join_path(path, cg[i].dir, "/devices.allow");
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("open", path);
      for (size_t k = 0; k < sizeof device_rules / sizeof device_rules[0]; k++)
        if (write(fd, device_rules[k], strlen(device_rules[k])) != (ssize_t)strlen(device_rules[k]))
          fail("write", path);
      if (close(fd) < 0) fail("close", path);
    }
    stamp(T_DEVRULES);
    /* Created in the v2 hierarchy by clone3 itself (the v1 ones are joined by the child). */
    for (int i = 0; i < ncg && cgfd < 0; i++) {
      if (cg[i].version != 2) continue;
      cgfd = open(cg[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (cgfd < 0) fail("open", cg[i].dir);
      flags |= CLONE_INTO_CGROUP;
      args.cgroup = (uint64_t)cgfd;
    }
  }
  args.flags = flags;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) fail("clone3", NULL);
  if (pid == 0) container();
  if (cgfd >= 0 && close(cgfd) < 0) fail("close", "cgroup");
  int status;
  if (waitpid((pid_t)pid, &status, 0) < 0) fail("waitpid", NULL);
  stamp(T_WAITED);
  if (mode == FULL) remove_cgroup();
  stamp(T_RMDIR);
  if (stamps && mode == FULL)
    for (int p = 1; p < T_N; p++) phase_sum[p] += (double)(stamps[p] - stamps[p - 1]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "floor: the container exited with status 0x%x\n", (unsigned)status);
    exit(1);
  }
}

/* Reads PATH into VALUE (at most SIZE-1 bytes); returns the length. */
static ssize_t read_file(const char *path, char *value, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open", path);
  ssize_t n = read(fd, value, size - 1);
  if (n < 0) fail("read", path);
  if (close(fd) < 0) fail("close", path);
  value[n] = 0;
  return n;
}

/* v1 cpuset: a cgroup's cpus and mems start empty; copied from the parent, as Pivot does. */
static void init_cpuset(const char *dir, int depth) {
  static const char *files[] = {"/cpuset.cpus", "/cpuset.mems"};
  char path[MAX_PATH], up[MAX_PATH], value[256];
  for (int k = 0; k < 2; k++) {
    join_path(path, dir, files[k]);
    if (read_file(path, value, sizeof value) > 1) continue;
    if (depth > 8) {
      errno = EINVAL;
      fail("cpuset (empty up to the root)", path);
    }
    join_path(up, dir, "/..");
    init_cpuset(up, depth + 1);
    join_path(up, dir, "/..");
    strncat(up, files[k], MAX_PATH - strlen(up) - 1);
    read_file(up, value, sizeof value);
    write_file(path, value);
  }
}

/* PARENT exists; on cpuset, with cpus and mems set and copied into every new child by the
 * kernel (cgroup.clone_children), so that a container's cgroup needs no writes. */
static void prepare_parent(struct hierarchy *h) {
  if (mkdir(h->parent, 0755) < 0 && errno != EEXIST) fail("mkdir", h->parent);
  char path[MAX_PATH];
  join_path(path, h->parent, "/cpuset.cpus");
  if (access(path, F_OK) != 0) return;
  init_cpuset(h->parent, 0);
  join_path(path, h->parent, "/cgroup.clone_children");
  write_file(path, "1");
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_us(int who, int user) {
  struct rusage ru;
  getrusage(who, &ru);
  struct timeval tv = user ? ru.ru_utime : ru.ru_stime;
  return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: floor full|full-no-cgroup|ns-only|bare --count N --rootfs DIR "
          "[--cg VERSION:NAME:PARENT]... [--phases] [-- CMD ARGS...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "full")) mode = FULL;
  else if (!strcmp(argv[1], "full-no-cgroup")) mode = FULL_NO_CGROUP;
  else if (!strcmp(argv[1], "ns-only")) mode = NS_ONLY;
  else if (!strcmp(argv[1], "bare")) mode = BARE;
  else usage();
  long count = 1;
  const char *rootfs = NULL;
  cmd = true_argv;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--count") && i + 1 < argc) count = atol(argv[++i]);
    else if (!strcmp(argv[i], "--rootfs") && i + 1 < argc) rootfs = argv[++i];
    else if (!strcmp(argv[i], "--phases")) {
      void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (page == MAP_FAILED) fail("mmap", "--phases");
      stamps = page;
    }
    else if (!strcmp(argv[i], "--cg") && i + 1 < argc && ncg < MAX_CG) {
      char *spec = argv[++i], *a = strchr(spec, ':'), *b = a ? strchr(a + 1, ':') : NULL;
      if (!b || b - a - 1 >= (long)sizeof cg[ncg].name) usage();
      struct hierarchy *h = &cg[ncg++];
      h->version = atoi(spec);
      memcpy(h->name, a + 1, (size_t)(b - a - 1));
      join_path(h->parent, b + 1, "");
    } else if (!strcmp(argv[i], "--") && i + 1 < argc) {
      cmd = &argv[i + 1];
      break;
    } else usage();
  }
  if (count < 1 || ((mode == FULL || mode == FULL_NO_CGROUP) && (!rootfs || ncg == 0))) usage();
  if (mode == FULL || mode == FULL_NO_CGROUP) {
    join_path(r_root, rootfs, "");
    join_path(r_proc, rootfs, "/proc");
    join_path(r_dev, rootfs, "/dev");
    join_path(r_pts, rootfs, "/dev/pts");
    join_path(r_shm, rootfs, "/dev/shm");
    join_path(r_mqueue, rootfs, "/dev/mqueue");
    join_path(r_sys, rootfs, "/sys");
    join_path(r_cgroup, rootfs, "/sys/fs/cgroup");
    for (size_t i = 0; i < NDEV; i++) {
      join_path(r_devnode[i], r_dev, "/");
      strncat(r_devnode[i], devices[i].name, MAX_PATH - strlen(r_devnode[i]) - 1);
    }
    for (size_t i = 0; i < NLINK; i++) {
      join_path(r_link[i], r_dev, "/");
      strncat(r_link[i], links[i].name, MAX_PATH - strlen(r_link[i]) - 1);
    }
    for (int i = 0; i < ncg; i++) {
      struct hierarchy *h = &cg[i];
      char path[MAX_PATH];
      prepare_parent(h);
      join_path(h->dir, h->parent, "/c");
      join_path(h->procs, h->dir, "/cgroup.procs");
      join_path(path, r_cgroup, "/");
      join_path(h->inside, path, h->name);
      join_path(path, h->parent, "/devices.allow");
      h->devices = access(path, F_OK) == 0;
    }
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
    if (!f || fscanf(f, "%d", &last_cap) != 1) fail("read", "/proc/sys/kernel/cap_last_cap");
    fclose(f);
    umask(0);
  }
  long long t0 = now_ns();
  long long u0 = cpu_us(RUSAGE_SELF, 1) + cpu_us(RUSAGE_CHILDREN, 1);
  long long s0 = cpu_us(RUSAGE_SELF, 0) + cpu_us(RUSAGE_CHILDREN, 0);
  for (long i = 0; i < count; i++) one();
  long long t1 = now_ns();
  long long u1 = cpu_us(RUSAGE_SELF, 1) + cpu_us(RUSAGE_CHILDREN, 1);
  long long s1 = cpu_us(RUSAGE_SELF, 0) + cpu_us(RUSAGE_CHILDREN, 0);
  printf("%lld %lld %lld\n", t1 - t0, u1 - u0, s1 - s0);
  if (stamps && mode == FULL)
    for (int p = 1; p < T_N; p++)
      fprintf(stderr, "%.3f %s\n", phase_sum[p] / 1e6 / (double)count, phase_names[p]);
  return 0;
}
