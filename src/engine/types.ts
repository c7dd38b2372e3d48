// The engine's public types: container options (what `pivot run` flags become), records, handles.
import type { HealthConfig } from "../image/types.ts";
import type { PortMapping } from "../network/ports.ts";
import type { HealthStatus } from "./health-status.ts";

/** A bind mount, a named (or anonymous) volume, or a tmpfs. */
export interface MountSpec {
  type: "bind" | "volume" | "tmpfs";
  /** Host path (bind) or volume name (volume; none for an anonymous volume). */
  source?: string;
  /** Absolute path in the container. */
  target: string;
  readOnly?: boolean;
  /** Bind propagation: rprivate (default), private, rshared, shared, rslave, slave. */
  propagation?: string;
  /** Bind: the host path must exist (--mount); -v creates a missing directory. */
  mustExist?: boolean;
  /** Do not fill a new volume with the image's content at the target. */
  noCopy?: boolean;
  tmpfsSize?: number;
  tmpfsMode?: number;
  /** Extra mount(8) options for a tmpfs (size=64m, mode=1777, exec, ...). */
  tmpfsOptions?: string[];
}

/**
 * What happens when a container's process exits (`--restart`, Docker's policies): "no" (the
 * default), "on-failure" (a non-zero exit, at most `maxRetries` times; 0 or unset: no limit),
 * "always" and "unless-stopped" (any exit). `pivot stop`, `kill` and `rm -f` end the restarts
 * until the next `pivot start`. Needs conmon; not with `autoRemove`.
 */
export interface RestartPolicy {
  policy: "no" | "on-failure" | "always" | "unless-stopped";
  maxRetries?: number;
}

/** What a container is made of: the settings of `pivot create`/`pivot run`. */
export interface ContainerOptions {
  /** Image reference or ID in the local store (busybox, localhost/busybox:test, sha256:...). */
  image: string;
  /** Replaces the image's Cmd. */
  cmd?: string[];
  /** Replaces the image's Entrypoint (and drops its Cmd); "" or [] clears it. */
  entrypoint?: string | string[];
  name?: string;
  /** KEY=VALUE entries (a bare KEY takes this process's value), after the image's Env. */
  env?: string[];
  workdir?: string;
  /** user, uid, user:group or uid:gid; names are looked up in the image. */
  user?: string;
  hostname?: string;
  /** Allocate a pseudo-terminal (needs conmon for detached containers). */
  tty?: boolean;
  /** Keep stdin open (-i). */
  stdin?: boolean;
  /** Bind mounts and volumes (-v, --mount, --tmpfs), parsed. */
  mounts?: MountSpec[];
  /** --volumes-from CONTAINER[:ro|:rw]: that container's volumes and binds, at the same places. */
  volumesFrom?: string[];
  readOnly?: boolean;
  labels?: Record<string, string>;
  /** Memory limit: bytes or "512m". */
  memory?: string | number;
  memorySwap?: string | number;
  cpus?: number | string;
  cpuShares?: number;
  pidsLimit?: number;
  capAdd?: string[];
  capDrop?: string[];
  privileged?: boolean;
  /** no-new-privileges, seccomp=PATH|unconfined. */
  securityOpt?: string[];
  stopSignal?: string;
  /**
   * The health check (`--health-*`, `--no-healthcheck`: Test ["NONE"]), field by field over the
   * image's HEALTHCHECK; durations in nanoseconds.
   */
  healthcheck?: HealthConfig;
  /** Seconds between the stop signal and SIGKILL (default 10). */
  stopTimeout?: number;
  /** Remove the container (and its anonymous volumes) when it exits. */
  autoRemove?: boolean;
  /**
   * "none" (default: a network namespace with loopback only), "host", "container:NAME" (the
   * network namespace, /etc/hosts and /etc/resolv.conf of another container, which must be
   * running when this one starts), or the name of a network ("bridge" is the default network),
   * which the container joins when it starts.
   */
  network?: string;
  /** -p: ports published on the host (needs a network). */
  publish?: PortMapping[];
  /** --network-alias: more names peers on the network resolve to this container. */
  networkAliases?: string[];
  /** --ip: a fixed address in the network's subnet. */
  ip?: string;
  /**
   * -P: publish every port the image EXPOSEs on a free host port (every host address, as -p
   * without one). Expanded into `publish` (host port 0) when the container is created.
   */
  publishAll?: boolean;
  /** --add-host NAME:IP: extra /etc/hosts lines. */
  addHosts?: string[];
  /** --dns: nameservers replacing the host's in /etc/resolv.conf. */
  dns?: string[];
  /** --dns-search: search domains replacing the host's. */
  dnsSearch?: string[];
  /** --dns-option: resolver options replacing the host's. */
  dnsOptions?: string[];
  /**
   * Path of another OCI runtime binary (runc, crun) to run the container with, through its
   * command line under conmon, as podman does; unset: Pivot's runtime, in-process.
   */
  runtime?: string;
  /** --init: tini (Debian's tini-static) as PID 1, the command as its child. */
  init?: boolean;
  /** --restart: restarted by its exit hook when its process exits (see RestartPolicy). */
  restart?: RestartPolicy;
  /** --ulimit: resource limits of the container's process (RLIMIT_<NAME>); -1 is unlimited. */
  ulimits?: Ulimit[];
  /** --device: host device nodes made in the container, with cgroup access to them. */
  devices?: DeviceMapping[];
  /** --sysctl: kernel parameters of the container's own ipc, network or uts namespace. */
  sysctls?: Record<string, string>;
  /** --shm-size: the size of /dev/shm, bytes or "128m" (default 64m). */
  shmSize?: string | number;
  /**
   * --pid: "host" shares the host's PID namespace, "container:NAME" another container's (which
   * must be running when this one starts); default: a new one.
   */
  pid?: "host" | "private" | `container:${string}`;
  /** --ipc: "host" shares the host's IPC namespace (default: a new one). */
  ipc?: "host" | "private";
  /** --uts: "host" shares the host's hostname (default: a new UTS namespace). */
  uts?: "host" | "private";
  /** --group-add: more groups for the process, by name (the image's /etc/group) or id. */
  groupAdd?: string[];
  /** --cpuset-cpus, --cpuset-mems: the CPUs and memory nodes it may use ("0-1", "0,2"). */
  cpusetCpus?: string;
  cpusetMems?: string;
  /** --oom-score-adj: the process's OOM killer adjustment, -1000 to 1000. */
  oomScoreAdj?: number;
  /**
   * --log-driver: "k8s-file" (the default: the container's output in its log, in conmon's
   * format; "json-file" is taken for it, as podman does) or "none" (no log; `logs` refuses).
   */
  logDriver?: "k8s-file" | "json-file" | "none";
  /**
   * --log-opt, Docker's LogConfig.Config: "max-size" (bytes or "10m": a log that would grow past
   * it starts over) and "max-file" (1 only: one file is kept).
   */
  logOptions?: Record<string, string>;
}

/** One --ulimit: NAME=SOFT[:HARD] (nofile=1024:2048). */
export interface Ulimit {
  /** As Docker names them: nofile, nproc, core, stack, memlock, ... */
  name: string;
  soft: number;
  hard: number;
}

/** One --device: HOST[:CONTAINER[:PERMISSIONS]]. */
export interface DeviceMapping {
  /** The device node on the host (a character or block device). */
  hostPath: string;
  /** Where it appears in the container (default: the host path). */
  containerPath: string;
  /** What the cgroup allows: some of r (read), w (write), m (mknod); default "rwm". */
  permissions: string;
}

export type ContainerStatus =
  | "created"
  | "running"
  | "paused"
  | "restarting"
  | "exited"
  | "removing";

/** What `inspect` shows. */
export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  imageId: string;
  created: string;
  /** The command as it runs: entrypoint + cmd. */
  command: string[];
  options: ContainerOptions;
  state: {
    status: ContainerStatus;
    /** Running or paused, or restarting (between two runs, as Docker counts it). */
    running: boolean;
    /** Exited and waiting for its restart policy's backoff, or being started again. */
    restarting: boolean;
    pid: number;
    exitCode: number | null;
    startedAt: string | null;
    finishedAt: string | null;
    /** "conmon" for detached containers, "inline" when a pivot process waits for it. */
    monitor: "conmon" | "inline" | null;
    monitorPid: number;
    /** Why the last restart failed (the container then stays exited). */
    error?: string;
    /** Its health check's status, once started (absent: no check, or never started). */
    health?: HealthStatus;
  };
  /** The restart policy (Docker's HostConfig.RestartPolicy). */
  restartPolicy: { name: RestartPolicy["policy"]; maximumRetryCount: number };
  /** Restarts by the policy since the container was last started by hand (Docker's RestartCount). */
  restartCount: number;
  /** The overlay root filesystem. */
  rootfs: { lowerdirs: string[]; upperdir: string; workdir: string; merged: string };
  /** Named and anonymous volumes the container uses. */
  volumes: { name: string; target: string; anonymous: boolean }[];
  labels: Record<string, string>;
  /** The container's directory: bundle (config.json), upper/work/merged, logs, exit file. */
  dir: string;
  logPath: string;
  /**
   * Published ports: while the container is on a network, with the host ports actually chosen
   * (-P, -p without a host port); otherwise as configured (host port 0 = chosen at start).
   */
  ports?: PortMapping[];
  /** Its volumes, binds and tmpfs mounts (Docker's Mounts). */
  mounts?: ContainerMount[];
  /** Its addresses on the engine's networks while it runs (Docker's NetworkSettings). */
  networkSettings?: NetworkSettings;
}

/** One of a container's mounts, in Docker's inspect fields. */
export interface ContainerMount {
  type: "bind" | "volume" | "tmpfs";
  /** The volume's name (volumes only). */
  name?: string;
  /** The host path (a bind's source, a volume's _data directory; "" for a tmpfs). */
  source: string;
  destination: string;
  /** "ro" when read-only, else "". */
  mode: string;
  rw: boolean;
  propagation: string;
}

/** A container's addresses, in Docker's inspect fields. */
export interface NetworkSettings {
  /** The first network's address ("" when on none). */
  ipAddress: string;
  ipPrefixLen: number;
  gateway: string;
  macAddress: string;
  networks: Record<
    string,
    {
      ipAddress: string;
      ipPrefixLen: number;
      gateway: string;
      macAddress: string;
      aliases: string[];
    }
  >;
}

export interface VolumeInfo {
  name: string;
  mountpoint: string;
  created: string;
  labels: Record<string, string>;
  anonymous: boolean;
  /** Docker's volume driver: Pivot's volumes are its "local" driver's, directories on the host. */
  driver: "local";
  /** Docker's: "local", seen by this engine only. */
  scope: "local";
  /** The driver's options (`volume create -o`): none here. */
  options: Record<string, string>;
}

/** A volume as Docker's `volume inspect` shows it (its API's Volume), then Pivot's own fields. */
export interface DockerVolume extends VolumeInfo {
  CreatedAt: string;
  Driver: "local";
  Labels: Record<string, string>;
  Mountpoint: string;
  Name: string;
  Options: Record<string, string>;
  Scope: "local";
}

export interface LogEntry {
  time: string;
  stream: "stdout" | "stderr";
  /** The text, with its newline when the line was complete. */
  text: string;
}

/** One reading of a running container's usage (`pivot stats`), from its cgroup and /proc. */
export interface StatsSample {
  id: string;
  name: string;
  /** When it was read (ms since the epoch). */
  read: number;
  /** CPU time the container used, in ns, and the host's total CPU time, in ns (/proc/stat). */
  cpuTotal: number;
  systemCpu: number;
  onlineCpus: number;
  /** Memory in use (without the inactive page cache, as Docker counts it) and the limit. */
  memoryUsage: number;
  memoryLimit: number;
  /** Bytes received and sent on the container's interfaces (loopback excluded). */
  netRx: number;
  netTx: number;
  /** Bytes read from and written to block devices. */
  blockRead: number;
  blockWrite: number;
  pids: number;
}

/** A process of a container as `pivot top` shows it: ps's header and one row per process. */
export interface TopResult {
  titles: string[];
  processes: string[][];
}
