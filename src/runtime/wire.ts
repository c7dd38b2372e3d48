// The wire format between the TypeScript side and the C launcher, defined once.
//
// Both directions use the same framing on one socket (the launcher's fd 3):
//   message := u32 length (LE) + payload
//   payload := u16 code + u16 argc + argc × arg
//   arg     := 'i' + i64 (LE)  |  's' + u32 length + bytes
// A plan is one message per step, then an END message. The launcher answers with events.
// `bun scripts/gen-wire-header.ts` writes native/wire.h from the tables below, and a test
// checks that the committed header matches, so the two sides cannot drift apart.

/** Steps of a launch plan, replayed in order by the launcher. */
export const Op = {
  /** Join an existing namespace: (path, nstype clone flag). */
  JoinNamespace: 1,
  /** Fork the setup child; the launcher then only supervises: (cloneFlags, normally 0; a cgroup v2
   *  directory to create it in with clone3's CLONE_INTO_CGROUP, or "" for the launcher's own). */
  ForkSetup: 2,
  /** Stop and ask the TypeScript side to act, then wait for its answer: (syncPoint). */
  Sync: 3,
  /** unshare(2) the given clone flags: (flags). */
  Unshare: 4,
  /** Write the time namespace offsets: (monotonicSec, monotonicNsec, boottimeSec, boottimeNsec). */
  TimeOffsets: 5,
  /** Fork the container's init process as a sibling (CLONE_PARENT); the setup child reports its pid and exits. */
  ForkInit: 6,
  /** setresuid/setresgid to 0 inside a new user namespace so later steps act as its root. */
  BecomeNamespaceRoot: 7,
  /** mount(2): (source, target, fstype, flags, data). Targets beginning with the rootfs are plain paths. */
  Mount: 8,
  /** Mount with the target resolved inside the root filesystem (no escape through symlinks):
   *  (rootfs, pathInRoot, source, fstype, flags, data, kernelFs: the KernelFs bits of the
   *  filesystems the target may be on; a target on procfs or sysfs not allowed there is refused). */
  MountInRoot: 9,
  /** As MountInRoot, but no component of the target may be a symlink (proc and sysfs, as runc
   *  requires: procfs mounted through a link chain the next mounts hide would be unmasked):
   *  (rootfs, pathInRoot, source, fstype, flags, data, kernelFs). */
  MountInRootNoSymlinks: 49,
  /** A bind mount in one step, its destination resolved once: open the target inside the root
   *  filesystem (refused on procfs or sysfs unless kernelFs allows it), make a detached copy of
   *  the source (open_tree, OPEN_TREE_CLONE, with its submounts when recursive), set its mount
   *  attributes (mount_setattr: MOUNT_ATTR_* values, recursively when recursive), attach it on
   *  the opened target (move_mount), then set each propagation through the same fd (MS_PRIVATE,
   *  MS_SLAVE, MS_SHARED or MS_UNBINDABLE, recursively with MS_REC). No path is resolved twice:
   *  a directory swapped for a symlink meanwhile cannot make the attributes land elsewhere:
   *  (rootfs, pathInRoot, source, recursive 0/1, attrSet, attrClr, kernelFs, propagation...). */
  BindInRoot: 52,
  /** Create a directory and its parents inside the root filesystem: (rootfs, pathInRoot, mode). */
  MkdirInRoot: 10,
  /** Create an empty file (and parent dirs) inside the root filesystem, for a file bind mount: (rootfs, pathInRoot). */
  TouchInRoot: 11,
  /** Create a device node inside the root filesystem: (rootfs, pathInRoot, mode incl. type bits, major, minor, uid, gid). */
  MknodInRoot: 12,
  /** Create a symbolic link inside the root filesystem: (rootfs, pathInRoot, linkTarget). */
  SymlinkInRoot: 13,
  /** pivot_root into the rootfs and detach the old root: (rootfs). */
  PivotRoot: 14,
  /** Move the rootfs onto / and chroot (for --no-pivot): (rootfs). */
  MoveRoot: 15,
  /** chroot(2) into the rootfs, for a container without a mount namespace of its own: (rootfs). */
  Chroot: 60,
  /** Join a new session keyring, so the container does not share the caller's keys: (name). */
  NewSessionKeyring: 61,
  /** Bring the loopback interface of the current network namespace up, as runc and crun do. */
  LoopbackUp: 62,
  /** Move this process, which must be single-threaded, into a cgroup v1 directory by writing "0"
   *  (the calling thread) to its tasks file: the kernel skips the lock that a move of another
   *  process takes, and so the RCU grace period it waits for: (cgroupDir). */
  JoinCgroup: 63,
  /** umount2(2): (target, flags, e.g. MNT_DETACH). */
  Unmount: 64,
  /** With WaitForInit: once the init has exited, before reporting it, the launcher unmounts this
   *  path in its own (the caller's) mount namespace, the engine's overlay of the container; a
   *  failure is left for the caller, who finds the mount still there: (target, flags). */
  UnmountAfterExit: 66,
  /** With WaitForInit: the launcher reports Event.Executed once the init has exec'd its program
   *  (or died): the end of a close-on-exec pipe only the init holds. Poststart hooks wait for it. */
  ReportExec: 65,
  /** Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory; missing paths are skipped: (path). */
  MaskPath: 16,
  /** Bind a path onto itself read-only; missing paths are skipped: (path). */
  ReadonlyPath: 17,
  /** sethostname(2): (name). */
  SetHostname: 18,
  /** setdomainname(2): (name). */
  SetDomainname: 19,
  /** Write a value to a file, e.g. a sysctl under /proc/sys or oom_score_adj: (path, value). */
  WriteFile: 20,
  /** setrlimit(2): (resource, soft, hard). */
  SetRlimit: 21,
  /** Open a pty, send its master over the console socket, make it the controlling terminal and stdio: (consoleSocketSlot, rows, cols). */
  SetupTerminal: 22,
  /** Connect to a unix socket path and keep the fd in a slot: (slot, path). */
  ConnectSocket: 23,
  /** Create a fifo and keep an O_PATH fd to it in a slot: (slot, path). */
  MakeFifo: 24,
  /** Report readiness, then block until the exec fifo is opened for reading: (fifoSlot). */
  WaitExecFifo: 25,
  /** Set supplementary groups: (gid...). */
  SetGroups: 26,
  /** Set the uid and gid, keeping capabilities across the switch: (uid, gid). */
  SetUser: 27,
  /** Set the effective, permitted, inheritable and ambient capability sets, as 64-bit masks. */
  SetCapabilities: 28,
  /** prctl(PR_SET_NO_NEW_PRIVS). */
  NoNewPrivileges: 29,
  /** umask(2): (mask). */
  Umask: 30,
  /** chdir(2): (dir). */
  Chdir: 31,
  /** Run a hook program with the state from the last sync reply on stdin, killing it after the timeout (0: none): (timeoutSec, path, argc, args..., env...). */
  RunHook: 32,
  /** setsid(2), making the process a session leader. */
  NewSession: 33,
  /** execve the program FindExecutable found: (argc, args..., env...). */
  Exec: 34,
  /** Make every mount under a path private/slave/shared/unbindable: (path, propagationFlags). */
  Propagation: 35,
  /** Drop every capability not in the mask from the bounding set: (mask). */
  SetBoundingSet: 36,
  /** Make the mount holding a path private: the mount at the path, else at the nearest parent
   *  directory that is a mount point (mount(2) says EINVAL for the others), as runc's
   *  rootfsParentMountPrivate: (path). */
  PrivateMountOf: 38,
  /** Find the program as execvp would, in the container's PATH, so a missing one fails at create: (name, PATH). */
  FindExecutable: 37,
  /** The launcher waits for the init process, forwards signals to it and reports its exit. */
  WaitForInit: 39,
  /** Start building a seccomp filter (libseccomp's seccomp_init): (defaultAction as SECCOMP_RET_* incl. errno). */
  SeccompInit: 40,
  /** Add an architecture to the filter being built; the native one is already there: (libseccomp arch name). */
  SeccompArch: 41,
  /** Set a libseccomp filter attribute (enum scmp_filter_attr): (attribute, value, optional: 1 ignores a failure). */
  SeccompAttr: 42,
  /** Add a rule; a name unknown to this kernel and libseccomp is skipped:
   *  (syscall, action, conditionCount, then index, op (enum scmp_compare), value, valueTwo per condition). */
  SeccompRule: 43,
  /** Load the filter being built into the kernel and free it; with a listener slot (else -1), send the
   *  notification fd over it, with the listener state from the last sync reply: (listenerSlot). */
  SeccompLoad: 44,
  /** Export the filter being built as BPF and report it with Event.SeccompProgram; loads nothing. */
  SeccompExport: 47,
  /** Load a BPF program exported earlier, without libseccomp: (kernel SECCOMP_FILTER_FLAG_* flags,
   *  the program's bytes, struct sock_filter[]). */
  SeccompLoadProgram: 48,
  /** Not a step (it takes no index): report Event.Trace after every step, for `--trace`. Sent first:
   *  (the runtime's clock when it sent the plan, µs: performance.now() × 1000). */
  Trace: 45,
  /** Not a step (it takes no index): report Event.SealedCopy, the device and inode of the sealed
   *  copy of itself that the launcher runs from, so that the runtime can keep that copy and
   *  verify it is the one it opened (see keepSealedCopy in launcher.ts). Sent first: (). */
  ReportSealedCopy: 53,
  /** prctl(PR_SET_DUMPABLE): (0 or 1). Not dumpable, /proc/PID/exe and the like are closed to the
   *  container's other processes; execve makes the program dumpable again. */
  SetDumpable: 46,
  /** Open a directory inside the root filesystem and keep the fd in a slot, so its contents stay
   *  readable after a mount covers it (tmpcopyup): (slot, rootfs, pathInRoot). */
  OpenDirInRoot: 50,
  /** Copy the tree of the directory in a slot (files, directories, symlinks, nodes, with owners,
   *  modes and times) into a directory inside the root filesystem, then close the slot: (slot, rootfs, pathInRoot). */
  CopyDirInRoot: 51,
  /** In the launcher, as the host's root: a detached copy of a bind source, id-mapped through a
   *  helper user namespace that the launcher makes with these maps ("containerID hostID size"
   *  lines, written verbatim, as runc does); the mount fd goes in a slot:
   *  (slot, source, recursiveBind 0/1, recursiveIdmap 0/1, uidMap, gidMap, propagation, attrSet,
   *  attrClr): the copy's propagation (MS_SLAVE or MS_PRIVATE: never left in its source's peer
   *  group) and its MOUNT_ATTR_* attributes (read-only, nosuid, ...: set before it is attached, so
   *  no remount by path follows), set recursively with a recursive bind. */
  OpenIdmappedTree: 70,
  /** Attach the detached mount in a slot (OpenIdmappedTree) on a path inside the root
   *  filesystem (refused on procfs or sysfs unless kernelFs allows it), set each propagation
   *  through the slot's fd as BindInRoot does, then close the slot:
   *  (slot, rootfs, pathInRoot, kernelFs, propagation...). */
  MoveMountInRoot: 71,
  /** As the host's root, before any process joins the cgroup: load an eBPF device program
   *  (BPF_PROG_TYPE_CGROUP_DEVICE, bytes of struct bpf_insn), attach it to a cgroup v2 directory
   *  with BPF_F_ALLOW_MULTI, then detach the programs attached there before, so that it replaces
   *  them; a rejected program fails with the verifier's log: (cgroupDir, instructions, license). */
  AttachDeviceFilter: 80,
  /** The end of the plan. */
  End: 99,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Events the launcher sends back. */
export const Event = {
  /** A sync point was reached: (syncPoint, pid of the process that waits). */
  Sync: 1,
  /** The container's init process exists: (pid). */
  InitPid: 2,
  /** A step failed: (stepIndex, errno, detail). */
  Error: 3,
  /** The init is set up and waits on the exec fifo: (). */
  Ready: 4,
  /** The init process exited: (waitStatus). */
  Exited: 5,
  /** A hook failed: (stepIndex, exitStatus, output). */
  HookFailed: 6,
  /** With Op.Trace: a step is done: (stepIndex, or -1 for the launcher's main() and -2 for the plan
   *  read; the time on the runtime's clock, µs, as Op.Trace gave it). */
  Trace: 7,
  /** After Op.SeccompExport: (kernel filter flags, the BPF program in hex, libseccomp's version,
   *  the path of its library). */
  SeccompProgram: 8,
  /** After Op.ReportExec: the init has exec'd its program, or ended: (). */
  Executed: 9,
  /** After Op.ReportSealedCopy: (st_dev, st_ino and F_GET_SEALS of the launcher's
   *  /proc/self/exe, a sealed memfd). */
  SealedCopy: 10,
} as const;
export type EventCode = (typeof Event)[keyof typeof Event];

/**
 * Kernel filesystems a mount step's target may be on (its kernelFs argument, a bit mask). The
 * launcher refuses a target it finds on procfs or sysfs (fstatfs of the opened target) unless the
 * step allows it: a symlink in the image (/dev -> /proc) must not put a mount over the kernel's
 * files. Which mounts may is decided in plan.ts.
 */
export const KernelFs = {
  Proc: 1,
  Sys: 2,
} as const;

/** Points where the launcher stops and the TypeScript side acts. */
export const SyncPoint = {
  /** The setup child exists (in its new user namespace, if any): write id maps, and join the
   *  cgroups the setup child could not join itself (a cgroup v2 on a kernel without clone3). */
  SetupChildCreated: 1,
  /** Mounts are done, before pivot_root: run prestart and createRuntime hooks. */
  BeforePivot: 2,
  /** The init is set up and waits to be started by the process that created it (`run`: no
   *  exec fifo, which only a separate `start` process needs). Implies Event.Ready. */
  Start: 3,
} as const;

/**
 * Answers to a sync event. Continue may carry the container state JSON for hooks the launcher
 * runs, then the state for a seccomp listener (the runtime-spec's container process state).
 */
export const Reply = {
  Continue: 1,
  Abort: 2,
} as const;

export type Arg = bigint | number | string | Uint8Array;

export interface Message {
  code: number;
  args: Arg[];
}

const TAG_INT = 0x69; // 'i'
const TAG_STR = 0x73; // 's'

/** Largest message either side accepts; a plan step is far smaller. */
export const MAX_MESSAGE_BYTES = 1 << 20;

export function encodeMessage(code: number, args: readonly Arg[]): Buffer {
  return encodeMessages([{ code, args }]);
}

/**
 * Messages one after another in a single buffer (a plan is one write): sized first, then written
 * in place. A buffer per argument and a concat cost ~1 ms for a plan of a hundred steps, each a
 * fresh allocation in code that runs once per process.
 */
export function encodeMessages(
  messages: readonly { code: number; args: readonly Arg[] }[],
): Buffer {
  let total = 0;
  for (const { args } of messages) total += messageSize(args);
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const { code, args } of messages) {
    const start = at;
    out.writeUInt16LE(code, at + 4);
    out.writeUInt16LE(args.length, at + 6);
    at += 8;
    for (const arg of args) {
      if (typeof arg === "number" || typeof arg === "bigint") {
        out[at] = TAG_INT;
        out.writeBigInt64LE(BigInt(arg), at + 1);
        at += 9;
      } else {
        out[at] = TAG_STR;
        let length: number;
        if (typeof arg === "string") length = out.write(arg, at + 5, "utf8");
        else {
          out.set(arg, at + 5);
          length = arg.length;
        }
        out.writeUInt32LE(length, at + 1);
        at += 5 + length;
      }
    }
    out.writeUInt32LE(at - start - 4, start);
  }
  return out;
}

/** The encoded size of one message; refuses a string with a NUL byte and an oversized message. */
function messageSize(args: readonly Arg[]): number {
  let size = 8;
  for (const arg of args) {
    if (typeof arg === "number" || typeof arg === "bigint") size += 9;
    else if (typeof arg === "string") {
      if (arg.includes("\0")) {
        throw new Error(`string argument contains a NUL byte: ${JSON.stringify(arg)}`);
      }
      size += 5 + Buffer.byteLength(arg, "utf8");
    } else size += 5 + arg.length;
  }
  if (size > MAX_MESSAGE_BYTES) throw new Error(`message too large (${size} bytes)`);
  return size;
}

/** Decode one payload (without the length prefix). Integers decode as numbers when safe. */
export function decodePayload(payload: Buffer): Message {
  if (payload.length < 4) throw new Error("truncated message");
  const code = payload.readUInt16LE(0);
  const argc = payload.readUInt16LE(2);
  const args: Arg[] = [];
  let at = 4;
  for (let i = 0; i < argc; i++) {
    const tag = payload[at];
    if (tag === TAG_INT) {
      const v = payload.readBigInt64LE(at + 1);
      args.push(
        v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(v)
          : v,
      );
      at += 9;
    } else if (tag === TAG_STR) {
      const len = payload.readUInt32LE(at + 1);
      args.push(payload.toString("utf8", at + 5, at + 5 + len));
      at += 5 + len;
    } else {
      throw new Error(`bad argument tag ${tag} at byte ${at}`);
    }
    if (at > payload.length) throw new Error("truncated message");
  }
  return { code, args };
}

/** Splits a byte stream into messages. */
export class MessageReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Message[] {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const out: Message[] = [];
    while (this.buffered.length >= 4) {
      const len = this.buffered.readUInt32LE(0);
      if (len > MAX_MESSAGE_BYTES) throw new Error(`message too large (${len} bytes)`);
      if (this.buffered.length < 4 + len) break;
      out.push(decodePayload(this.buffered.subarray(4, 4 + len)));
      this.buffered = this.buffered.subarray(4 + len);
    }
    return out;
  }
}

/** The C header for the tables above (see scripts/gen-wire-header.ts). */
export function renderWireHeader(): string {
  const lines = [
    "/* Generated from src/runtime/wire.ts by scripts/gen-wire-header.ts. Do not edit. */",
    "#ifndef PIVOT_WIRE_H",
    "#define PIVOT_WIRE_H",
    "",
  ];
  const table = (prefix: string, entries: Record<string, number>) => {
    for (const [name, value] of Object.entries(entries)) {
      lines.push(`#define ${prefix}_${snake(name)} ${value}`);
    }
    lines.push("");
  };
  table("OP", Op);
  table("EV", Event);
  table("SYNC", SyncPoint);
  table("REPLY", Reply);
  table("KERNEL_FS", KernelFs);
  lines.push(`#define WIRE_TAG_INT ${TAG_INT}`, `#define WIRE_TAG_STR ${TAG_STR}`);
  lines.push(`#define WIRE_MAX_MESSAGE ${MAX_MESSAGE_BYTES}`, "", "#endif", "");
  return lines.join("\n");
}

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

export function opName(code: number): string {
  for (const [name, value] of Object.entries(Op)) if (value === code) return name;
  return `op${code}`;
}
