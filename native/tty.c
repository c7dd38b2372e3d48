/*
 * pivot-tty: joins the user's terminal (or pipes) to a container's pseudo-terminal.
 *
 * Node cannot receive a file descriptor over a unix socket (SCM_RIGHTS) nor speak SOCK_SEQPACKET,
 * so this small program does the byte copying. It holds no policy: the engine decides which mode,
 * which socket and which keys.
 *
 *   pivot-tty console SOCKET [--ready-fd N] [--no-stdin]
 *     Listens on SOCKET (the runtime's --console-socket), receives the pty master, then copies
 *     stdin → master and master → stdout until the container's side of the terminal is closed.
 *     "ready\n" is written to fd N once SOCKET listens.
 *   pivot-tty attach SOCKET [--ctl FIFO] [--detach-keys KEYS] [--no-stdin] [--ready-fd N]
 *     Connects to conmon's attach socket (SOCK_SEQPACKET; each packet it sends starts with a byte
 *     naming the stream: 2 stdout, 3 stderr), copies stdin to it and its packets to stdout/stderr.
 *     Window sizes go to conmon's control fifo as "1 ROWS COLS\n". KEYS (default ctrl-p,ctrl-q;
 *     "" for none) typed on stdin detach.
 *
 * Both modes: when stdin is a terminal (and is read), it is put in raw mode (restored on exit),
 * so Ctrl-C reaches the container as a byte; the window size is copied to the container at the
 * start and on every SIGWINCH. SIGINT and SIGQUIT are ignored (the caller forwards signals).
 * Exit status: 0 when the container's side closed, 3 when detached, 1 on an error, 2 on usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_DETACHED 3

static struct termios saved;
static int raw_fd = -1;
static int sig_pipe[2] = {-1, -1};

static void restore_terminal(void) {
  if (raw_fd >= 0) {
    tcsetattr(raw_fd, TCSADRAIN, &saved);
    raw_fd = -1;
  }
}

static void die(const char *what) {
  int e = errno;
  restore_terminal();
  fprintf(stderr, "pivot-tty: %s: %s\n", what, strerror(e));
  exit(1);
}

static void on_signal(int sig) {
  int e = errno;
  unsigned char b = (unsigned char)sig;
  if (write(sig_pipe[1], &b, 1) < 0) { /* the pipe is full: a signal is already pending */
  }
  errno = e;
}

static void setup_signals(void) {
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGWINCH, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
}

static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, -1);
        continue;
      }
      return -1;
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The user's window size: from whichever of stdout, stdin, stderr is a terminal. */
static int user_winsize(struct winsize *ws) {
  for (int fd = 1; fd <= 3; fd++) {
    int f = fd == 3 ? 2 : fd == 2 ? 0 : 1;
    if (ioctl(f, TIOCGWINSZ, ws) == 0 && ws->ws_row > 0 && ws->ws_col > 0) return 0;
  }
  return -1;
}

static void make_raw(void) {
  if (!isatty(0)) return;
  if (tcgetattr(0, &saved) < 0) die("tcgetattr");
  struct termios raw = saved;
  cfmakeraw(&raw);
  raw_fd = 0;
  if (tcsetattr(0, TCSADRAIN, &raw) < 0) die("tcsetattr");
  atexit(restore_terminal);
}

/* Parses "ctrl-p,ctrl-q" (Docker's syntax: ctrl-X, or a single character) into bytes. */
static size_t parse_keys(const char *spec, unsigned char *out, size_t max) {
  size_t n = 0;
  char *copy = strdup(spec);
  if (!copy) die("strdup");
  for (char *tok = strtok(copy, ","); tok && n < max; tok = strtok(NULL, ",")) {
    if (strncmp(tok, "ctrl-", 5) == 0 && strlen(tok) == 6) {
      char c = tok[5];
      if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
      if (c >= 'a' && c <= 'z') out[n++] = (unsigned char)(c - 'a' + 1);
      else if (c == '@') out[n++] = 0;
      else if (c == '[') out[n++] = 27;
      else if (c == '\\') out[n++] = 28;
      else if (c == ']') out[n++] = 29;
      else if (c == '^') out[n++] = 30;
      else if (c == '_') out[n++] = 31;
      else {
        fprintf(stderr, "pivot-tty: invalid detach key %s\n", tok);
        exit(2);
      }
    } else if (strlen(tok) == 1) {
      out[n++] = (unsigned char)tok[0];
    } else {
      fprintf(stderr, "pivot-tty: invalid detach key %s\n", tok);
      exit(2);
    }
  }
  free(copy);
  return n;
}

static int receive_master(const char *path, int ready_fd) {
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    die(path);
  }
  strcpy(addr.sun_path, path);
  unlink(path);
  if (bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind the console socket");
  chmod(path, 0600);
  if (listen(sock, 1) < 0) die("listen");
  if (ready_fd >= 0) {
    write_all(ready_fd, "ready\n", 6);
    close(ready_fd);
  }
  for (;;) {
    struct pollfd p[2] = {{.fd = sock, .events = POLLIN}, {.fd = sig_pipe[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents) {
      unsigned char s;
      while (read(sig_pipe[0], &s, 1) == 1)
        if (s == SIGTERM || s == SIGHUP) {
          unlink(path);
          exit(1);
        }
    }
    if (p[0].revents) break;
  }
  int conn = accept4(sock, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) die("accept");
  close(sock);
  unlink(path);
  char name[256] = {0};
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = name, .iov_len = sizeof name - 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("receive the pty master");
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
    fprintf(stderr, "pivot-tty: no terminal was sent over the console socket\n");
    exit(1);
  }
  int master;
  memcpy(&master, CMSG_DATA(c), sizeof master);
  close(conn);
  return master;
}

static int connect_attach(const char *path) {
  int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  /* A long path is reached through its directory's /proc/self/fd entry. */
  char *slash = strrchr(path, '/');
  int dirfd = -1;
  if (strlen(path) >= sizeof addr.sun_path && slash) {
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) die("strndup");
    dirfd = open(dir, O_PATH | O_CLOEXEC);
    free(dir);
    if (dirfd < 0) die("open the attach socket's directory");
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, slash + 1);
  } else if (strlen(path) < sizeof addr.sun_path) {
    strcpy(addr.sun_path, path);
  } else {
    errno = ENAMETOOLONG;
    die(path);
  }
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect to the attach socket");
  if (dirfd >= 0) close(dirfd);
  return sock;
}

/* The container's window size follows the user's: TIOCSWINSZ on the master, or conmon's fifo. */
static void send_size(int master, int ctl) {
  struct winsize ws;
  if (user_winsize(&ws) < 0) return;
  if (master >= 0) ioctl(master, TIOCSWINSZ, &ws);
  if (ctl >= 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "1 %u %u\n", ws.ws_row, ws.ws_col);
    if (write(ctl, line, (size_t)n) < 0) { /* conmon gone: the socket closes too */
    }
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: pivot-tty console SOCKET [--ready-fd N] [--no-stdin]\n"
          "       pivot-tty attach SOCKET [--ctl FIFO] [--detach-keys KEYS] [--no-stdin] [--ready-fd N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) usage();
  int attach = strcmp(argv[1], "attach") == 0;
  if (!attach && strcmp(argv[1], "console") != 0) usage();
  const char *path = argv[2];
  const char *ctl_path = NULL;
  const char *keys_spec = "ctrl-p,ctrl-q";
  int ready_fd = -1, use_stdin = 1;
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--ready-fd") == 0 && i + 1 < argc) ready_fd = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ctl") == 0 && i + 1 < argc) ctl_path = argv[++i];
    else if (strcmp(argv[i], "--detach-keys") == 0 && i + 1 < argc) keys_spec = argv[++i];
    else if (strcmp(argv[i], "--no-stdin") == 0) use_stdin = 0;
    else usage();
  }
  unsigned char keys[16];
  size_t nkeys = attach ? parse_keys(keys_spec, keys, sizeof keys) : 0;
  setup_signals();

  int master = -1, sock = -1, ctl = -1;
  if (attach) {
    sock = connect_attach(path);
    if (ctl_path) ctl = open(ctl_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (ready_fd >= 0) {
      write_all(ready_fd, "ready\n", 6);
      close(ready_fd);
    }
  } else {
    master = receive_master(path, ready_fd);
  }
  int out = attach ? sock : master; /* where the container's output comes from */
  if (use_stdin) make_raw();
  send_size(master, ctl);

  char buf[32768 + 1];
  size_t matched = 0; /* detach keys typed so far, held back */
  int stdin_open = use_stdin;
  for (;;) {
    struct pollfd p[3] = {
        {.fd = out, .events = POLLIN},
        {.fd = sig_pipe[0], .events = POLLIN},
        {.fd = stdin_open ? 0 : -1, .events = POLLIN},
    };
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents & POLLIN) {
      unsigned char s;
      while (read(sig_pipe[0], &s, 1) == 1) {
        if (s == SIGWINCH) send_size(master, ctl);
        else if (s == SIGTERM || s == SIGHUP) {
          restore_terminal();
          return 1;
        }
      }
    }
    if (p[0].revents) {
      ssize_t n = attach ? recv(out, buf, sizeof buf, 0) : read(out, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break; /* EIO: every holder of the pty's other side has closed it */
      if (attach) {
        if (n > 1 && write_all(buf[0] == 3 ? 2 : 1, buf + 1, (size_t)n - 1) < 0) break;
      } else if (write_all(1, buf, (size_t)n) < 0) {
        break;
      }
    }
    if (p[2].revents) {
      ssize_t n = read(0, buf, 4096);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        stdin_open = 0;
        if (attach) shutdown(sock, SHUT_WR); /* conmon closes the container's stdin */
        continue;
      }
      /* Pass everything but the detach keys; a broken sequence is passed as typed. */
      char fwd[4096 + 16];
      size_t m = 0;
      for (ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (nkeys && ch == keys[matched]) {
          if (++matched == nkeys) {
            if (m && write_all(out, fwd, m) < 0) break;
            restore_terminal();
            return EXIT_DETACHED;
          }
          continue;
        }
        if (matched) {
          memcpy(fwd + m, keys, matched);
          m += matched;
          matched = 0;
          if (nkeys && ch == keys[0]) {
            matched = 1;
            continue;
          }
        }
        fwd[m++] = (char)ch;
        if (m >= 4096) {
          if (write_all(out, fwd, m) < 0) break;
          m = 0;
        }
      }
      if (m && write_all(out, fwd, m) < 0) break;
    }
  }
  restore_terminal();
  return 0;
}
