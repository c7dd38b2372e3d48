// The config.json that `spec` writes: runc's defaults, so bundles behave the same under both.
import { type Mount, OCI_VERSION, type Spec } from "./spec.ts";

/** runc's /dev mounts, shared by `spec` and the engine's configs (fresh objects each call). */
export const devMounts = {
  dev: (): Mount => ({
    destination: "/dev",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
  }),
  pts: (): Mount => ({
    destination: "/dev/pts",
    type: "devpts",
    source: "devpts",
    options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
  }),
  shm: (): Mount => ({
    destination: "/dev/shm",
    type: "tmpfs",
    source: "shm",
    options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
  }),
  mqueue: (): Mount => ({
    destination: "/dev/mqueue",
    type: "mqueue",
    source: "mqueue",
    options: ["nosuid", "noexec", "nodev"],
  }),
};

/** /proc paths made read-only in unprivileged containers: runc's `spec` and Docker's are the same. */
export const READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

const DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

export function defaultSpec(options: { rootless?: boolean; args?: string[] } = {}): Spec {
  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: options.args ?? ["sh"],
      env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
      cwd: "/",
      capabilities: {
        bounding: [...DEFAULT_CAPS],
        effective: [...DEFAULT_CAPS],
        permitted: [...DEFAULT_CAPS],
        ambient: [...DEFAULT_CAPS],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: true },
    hostname: "pivot",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      devMounts.dev(),
      devMounts.pts(),
      devMounts.shm(),
      devMounts.mqueue(),
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      {
        destination: "/sys/fs/cgroup",
        type: "cgroup",
        source: "cgroup",
        options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
      },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: "rwm" }] },
      namespaces: [
        { type: "pid" },
        { type: "network" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "cgroup" },
      ],
      // runc's list and order; the engine's (engine/config.ts) is Docker's, which masks two more.
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
  if (options.rootless) {
    const linux = spec.linux!;
    linux.namespaces = [
      { type: "pid" },
      { type: "ipc" },
      { type: "uts" },
      { type: "mount" },
      { type: "cgroup" },
      { type: "user" },
    ];
    linux.uidMappings = [{ containerID: 0, hostID: process.getuid?.() ?? 0, size: 1 }];
    linux.gidMappings = [{ containerID: 0, hostID: process.getgid?.() ?? 0, size: 1 }];
    delete linux.resources;
    spec.mounts = spec.mounts!.filter(
      (m) =>
        m.destination !== "/sys" &&
        m.destination !== "/dev/pts" &&
        m.destination !== "/sys/fs/cgroup",
    );
    spec.mounts.push(
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
      },
      {
        destination: "/sys",
        type: "none",
        source: "/sys",
        options: ["rbind", "nosuid", "noexec", "nodev", "ro"],
      },
    );
  }
  return spec;
}
