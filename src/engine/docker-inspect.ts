// `pivot inspect` as `docker inspect` shows a container: Docker's ContainerJSON fields, with
// Docker's names and zero values (Id, Created, Path, Args, State, Image, Name, Config, HostConfig,
// GraphDriver, Mounts, NetworkSettings, ...), followed by inspect()'s own fields (id, state,
// options, ...), which scripts and programs written for Pivot read. The maps among Docker's fields
// (Labels, ExposedPorts, PortBindings, Networks, ...) are marked as Go maps for --format: a
// missing key there is <no value>, as in Docker's templates (src/util/go-template.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ImageConfig } from "../image/types.ts";
import { asGoMap, withNilKinds } from "../util/go-template.ts";
import { hostnameOf, parseSize } from "./config.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { healthOf } from "./health-record.ts";
import type { HealthState } from "./health-status.ts";
import { inspect } from "./inspect.ts";
import type { ContainerInfo, ContainerOptions } from "./types.ts";

/** State.Health, Docker's, once a container with a health check has started. */
function healthField(ctx: EngineContext, id: string, r: ContainerRecord): { Health?: HealthState } {
  const health = healthOf(ctx, id, r, ctx.containers.runState(id));
  return health ? { Health: health } : {};
}

/** Go's zero time, which Docker shows for a time that never was (StartedAt of a new container). */
export const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

type StringMap = Record<string, string>;
type PortBindings = Record<string, { HostIp: string; HostPort: string }[] | null>;

/** Docker's container inspect object (api/types ContainerJSON), the part Pivot fills. */
export interface DockerContainerJSON {
  Id: string;
  Created: string;
  Path: string;
  Args: string[];
  State: {
    Status: string;
    Running: boolean;
    Paused: boolean;
    Restarting: boolean;
    OOMKilled: boolean;
    Dead: boolean;
    Pid: number;
    ExitCode: number;
    Error: string;
    StartedAt: string;
    FinishedAt: string;
    Health?: HealthState;
  };
  /** The image's ID (sha256:...); Config.Image is the reference as given. */
  Image: string;
  ResolvConfPath: string;
  HostnamePath: string;
  HostsPath: string;
  LogPath: string;
  /** The name with Docker's leading "/". */
  Name: string;
  RestartCount: number;
  Driver: string;
  Platform: string;
  MountLabel: string;
  ProcessLabel: string;
  ExecIDs: string[] | null;
  HostConfig: Record<string, unknown> & {
    Binds: string[] | null;
    NetworkMode: string;
    PortBindings: PortBindings;
    RestartPolicy: { Name: string; MaximumRetryCount: number };
    AutoRemove: boolean;
  };
  GraphDriver: { Name: string; Data: StringMap };
  Mounts: {
    Type: string;
    Name?: string;
    Source: string;
    Destination: string;
    Driver?: string;
    Mode: string;
    RW: boolean;
    Propagation: string;
  }[];
  Config: Record<string, unknown> & {
    Hostname: string;
    User: string;
    Env: string[];
    Cmd: string[] | null;
    Image: string;
    Entrypoint: string[] | null;
    Labels: StringMap;
  };
  NetworkSettings: {
    Ports: PortBindings;
    IPAddress: string;
    IPPrefixLen: number;
    Gateway: string;
    MacAddress: string;
    Networks: Record<
      string,
      {
        Aliases: string[] | null;
        MacAddress: string;
        Gateway: string;
        IPAddress: string;
        IPPrefixLen: number;
      }
    >;
  };
}

/** `pivot inspect`'s object: Docker's fields, then inspect()'s own. */
export type DockerInspect = DockerContainerJSON & ContainerInfo;

export async function inspectDocker(ctx: EngineContext, ref: string): Promise<DockerInspect> {
  const info = inspect(ctx, ref);
  const r = ctx.containers.load(info.id);
  const image = await imageConfigOf(ctx, r.imageId);
  return { ...dockerContainerJSON(ctx, info, r, image), ...info };
}

/** The container's image config, read from its blob; {} once the image is gone. */
async function imageConfigOf(
  ctx: EngineContext,
  imageId: string,
): Promise<NonNullable<ImageConfig["config"]>> {
  try {
    const store = await ctx.images();
    const config = JSON.parse(readFileSync(store.blobPath(imageId), "utf8")) as ImageConfig;
    return config.config ?? {};
  } catch {
    return {};
  }
}

/** The environment as Docker's Config.Env has it: the image's and the user's, as resolved at create. */
function configEnv(
  dir: string,
  image: NonNullable<ImageConfig["config"]>,
  options: ContainerOptions,
): string[] {
  const keyOf = (e: string) => e.split("=")[0]!;
  const keys = new Set([...(image.Env ?? []), ...(options.env ?? [])].map(keyOf));
  try {
    const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as {
      process?: { env?: string[] };
    };
    return (spec.process?.env ?? []).filter((e) => keys.has(keyOf(e)));
  } catch {
    return [...(image.Env ?? []), ...(options.env ?? []).filter((e) => e.includes("="))];
  }
}

function entrypointOf(
  image: NonNullable<ImageConfig["config"]>,
  options: ContainerOptions,
): string[] | null {
  const e = options.entrypoint;
  if (e === undefined) return image.Entrypoint?.length ? image.Entrypoint : null;
  const list = typeof e === "string" ? (e === "" ? [] : [e]) : e;
  return list.length ? list : null;
}

function cmdOf(
  image: NonNullable<ImageConfig["config"]>,
  options: ContainerOptions,
): string[] | null {
  if (options.cmd?.length) return options.cmd;
  if (options.entrypoint !== undefined) return null; // --entrypoint drops the image's Cmd
  return image.Cmd?.length ? image.Cmd : null;
}

function portKey(p: { containerPort: number; protocol: string }): string {
  return `${p.containerPort}/${p.protocol}`;
}

function portBindings(
  ports: readonly { hostIP: string; hostPort: number; containerPort: number; protocol: string }[],
): PortBindings {
  const out: PortBindings = {};
  for (const p of ports) {
    const list = out[portKey(p)] ?? [];
    list.push({ HostIp: p.hostIP, HostPort: p.hostPort ? String(p.hostPort) : "" });
    out[portKey(p)] = list;
  }
  return asGoMap(out);
}

/** Docker's map[string]struct{} (ExposedPorts, Volumes) of KEYS. */
function set(keys: Iterable<string>): Record<string, object> {
  const out: Record<string, object> = {};
  for (const k of keys) out[k] = {};
  return asGoMap(out);
}

function size(value: string | number | undefined): number {
  if (value === undefined) return 0;
  try {
    return parseSize(value);
  } catch {
    return 0;
  }
}

export function dockerContainerJSON(
  ctx: EngineContext,
  info: ContainerInfo,
  r: ContainerRecord,
  image: NonNullable<ImageConfig["config"]>,
): DockerContainerJSON {
  const o = info.options;
  const st = info.state;
  const dir = info.dir;
  // --network container:NAME: NAME's /etc files, as bound.
  const joined = o.network?.startsWith("container:") ? o.network.slice(10) : undefined;
  let etcDir = dir;
  if (joined) {
    try {
      etcDir = ctx.containers.dir(ctx.containers.resolveId(joined));
    } catch {}
  }
  const mounts = o.mounts ?? [];
  const binds = mounts
    .filter((m) => m.type === "bind" || (m.type === "volume" && m.source))
    .map((m) => {
      const modes = [
        ...(m.readOnly ? ["ro"] : []),
        ...(m.propagation && m.propagation !== "rprivate" ? [m.propagation] : []),
      ];
      return `${m.source}:${m.target}${modes.length ? `:${modes.join(",")}` : ""}`;
    });
  const tmpfs: StringMap = {};
  for (const m of mounts) {
    if (m.type !== "tmpfs") continue;
    const opts = [...(m.tmpfsOptions ?? [])];
    if (m.tmpfsSize !== undefined && !opts.some((x) => x.startsWith("size=")))
      opts.push(`size=${m.tmpfsSize}`);
    if (m.tmpfsMode !== undefined && !opts.some((x) => x.startsWith("mode=")))
      opts.push(`mode=${m.tmpfsMode.toString(8)}`);
    if (m.readOnly && !opts.includes("ro")) opts.unshift("ro");
    tmpfs[m.target] = opts.join(",");
  }
  const exposed = new Set([
    ...Object.keys(image.ExposedPorts ?? {}),
    ...(o.publish ?? []).map(portKey),
  ]);
  const anonymous = info.volumes.filter((v) => v.anonymous).map((v) => v.target);
  const volumes = [...new Set([...Object.keys(image.Volumes ?? {}), ...anonymous])];
  const running = st.status === "running" || st.status === "paused";
  // While it runs: the published ports as bound (host ports chosen), and the exposed ones
  // unpublished (null), as Docker's NetworkSettings.Ports.
  const livePorts = portBindings(running ? (info.ports ?? []) : []);
  if (running) for (const p of exposed) if (!(p in livePorts)) livePorts[p] = null;
  const ns = info.networkSettings;
  const networks: DockerContainerJSON["NetworkSettings"]["Networks"] = {};
  for (const [name, n] of Object.entries(ns?.networks ?? {})) {
    networks[name] = withNilKinds(
      {
        Aliases: n.aliases.length ? n.aliases : null,
        MacAddress: n.macAddress,
        Gateway: n.gateway,
        IPAddress: n.ipAddress,
        IPPrefixLen: n.ipPrefixLen,
      },
      { Aliases: "list" },
    );
  }
  const hostConfig: DockerContainerJSON["HostConfig"] = {
    Binds: binds.length ? binds : null,
    ContainerIDFile: "",
    LogConfig: { Type: o.logDriver ?? "k8s-file", Config: asGoMap({ ...o.logOptions }, "") },
    NetworkMode: o.network ?? "none",
    PortBindings: portBindings(o.publish ?? []),
    RestartPolicy: {
      Name: info.restartPolicy.name,
      MaximumRetryCount: info.restartPolicy.maximumRetryCount,
    },
    AutoRemove: o.autoRemove ?? false,
    VolumesFrom: o.volumesFrom?.length ? o.volumesFrom : null,
    CapAdd: o.capAdd?.length ? o.capAdd : null,
    CapDrop: o.capDrop?.length ? o.capDrop : null,
    Dns: o.dns ?? [],
    DnsOptions: o.dnsOptions ?? [],
    DnsSearch: o.dnsSearch ?? [],
    ExtraHosts: o.addHosts?.length ? o.addHosts : null,
    GroupAdd: o.groupAdd?.length ? o.groupAdd : null,
    IpcMode: o.ipc === "host" ? "host" : "private",
    OomScoreAdj: o.oomScoreAdj ?? 0,
    PidMode: o.pid && o.pid !== "private" ? o.pid : "",
    Privileged: o.privileged ?? false,
    PublishAllPorts: o.publishAll ?? false,
    ReadonlyRootfs: o.readOnly ?? false,
    SecurityOpt: o.securityOpt?.length ? o.securityOpt : null,
    Tmpfs: asGoMap(tmpfs, ""),
    UTSMode: o.uts === "host" ? "host" : "",
    ShmSize: size(o.shmSize ?? "64m"),
    Sysctls: asGoMap({ ...(o.sysctls ?? {}) }, ""),
    Runtime: o.runtime ?? "pivot",
    CpuShares: o.cpuShares ?? 0,
    Memory: size(o.memory),
    NanoCpus: o.cpus === undefined ? 0 : Math.round(Number(o.cpus) * 1e9),
    CpusetCpus: o.cpusetCpus ?? "",
    CpusetMems: o.cpusetMems ?? "",
    Devices: o.devices?.length
      ? o.devices.map((d) => ({
          PathOnHost: d.hostPath,
          PathInContainer: d.containerPath,
          CgroupPermissions: d.permissions,
        }))
      : [],
    // -1: unlimited swap (not a size).
    MemorySwap: o.memorySwap === -1 || o.memorySwap === "-1" ? -1 : size(o.memorySwap),
    PidsLimit: o.pidsLimit ?? null,
    Ulimits: o.ulimits?.length
      ? o.ulimits.map((u) => ({ Name: u.name, Hard: u.hard, Soft: u.soft }))
      : null,
    Init: o.init ?? null,
  };
  // Go prints these nil lists and maps as [] and map[] (a nil pointer, PidsLimit, as <nil>).
  withNilKinds(hostConfig, {
    Binds: "list",
    VolumesFrom: "list",
    CapAdd: "list",
    CapDrop: "list",
    ExtraHosts: "list",
    GroupAdd: "list",
    SecurityOpt: "list",
    Ulimits: "list",
  });
  const config: DockerContainerJSON["Config"] = withNilKinds(
    {
      Hostname: hostnameOf(info.id, o),
      Domainname: "",
      User: o.user ?? image.User ?? "",
      Tty: o.tty ?? false,
      OpenStdin: o.stdin ?? false,
      ExposedPorts: set(exposed),
      Env: configEnv(dir, image, o),
      Cmd: cmdOf(image, o),
      Image: info.image,
      Volumes: volumes.length ? set(volumes) : null,
      WorkingDir: o.workdir ?? image.WorkingDir ?? "",
      Entrypoint: entrypointOf(image, o),
      OnBuild: null,
      Labels: asGoMap({ ...info.labels }, ""),
      StopSignal: r.stopSignal,
      ...(r.healthcheck ? { Healthcheck: r.healthcheck } : {}),
      ...(o.stopTimeout !== undefined ? { StopTimeout: o.stopTimeout } : {}),
    },
    { Cmd: "list", Entrypoint: "list", OnBuild: "list", Volumes: "map" },
  );
  const json: DockerContainerJSON = {
    Id: info.id,
    Created: info.created,
    Path: info.command[0] ?? "",
    Args: info.command.slice(1),
    State: {
      Status: st.status,
      Running: st.running,
      Paused: st.status === "paused",
      Restarting: st.restarting,
      OOMKilled: false,
      Dead: false,
      Pid: running ? st.pid : 0,
      ExitCode: st.exitCode ?? 0,
      Error: st.error ?? "",
      StartedAt: st.startedAt ?? GO_ZERO_TIME,
      FinishedAt: st.finishedAt ?? GO_ZERO_TIME,
      ...healthField(ctx, info.id, r),
    },
    Image: info.imageId,
    ResolvConfPath: join(etcDir, "resolv.conf"),
    HostnamePath: join(etcDir, "hostname"),
    HostsPath: join(etcDir, "hosts"),
    LogPath: info.logPath,
    Name: `/${info.name}`,
    RestartCount: info.restartCount,
    Driver: "overlay",
    Platform: "linux",
    MountLabel: "",
    ProcessLabel: "",
    ExecIDs: null,
    HostConfig: hostConfig,
    GraphDriver: {
      Name: "overlay",
      Data: asGoMap(
        {
          LowerDir: info.rootfs.lowerdirs.join(":"),
          MergedDir: info.rootfs.merged,
          UpperDir: info.rootfs.upperdir,
          WorkDir: info.rootfs.workdir,
        },
        "",
      ),
    },
    Mounts: (info.mounts ?? []).map((m) => ({
      Type: m.type,
      ...(m.type === "volume" ? { Name: m.name ?? "" } : {}),
      Source: m.source,
      Destination: m.destination,
      ...(m.type === "volume" ? { Driver: "local" } : {}),
      Mode: m.mode,
      RW: m.rw,
      Propagation: m.propagation,
    })),
    Config: config,
    NetworkSettings: {
      Ports: livePorts,
      IPAddress: ns?.ipAddress ?? "",
      IPPrefixLen: ns?.ipPrefixLen ?? 0,
      Gateway: ns?.gateway ?? "",
      MacAddress: ns?.macAddress ?? "",
      Networks: asGoMap(networks),
    },
  };
  return withNilKinds(json, { ExecIDs: "list" });
}
