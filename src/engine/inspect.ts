// What `pivot inspect` and `pivot ps` show: a container's record and its derived state.
import { join } from "node:path";
import type { PortMapping } from "../network/ports.ts";
import { isUserModeNetwork, userModePorts } from "./container-network.ts";
import { status } from "./container-runtime.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { healthOf } from "./health-record.ts";
import { remove } from "./lifecycle.ts";
import { recover } from "./recovery.ts";
import { readRestartState } from "./restart-state.ts";
import { outsideUserNamespace } from "./rootless.ts";
import type { ContainerInfo, ContainerMount, NetworkSettings } from "./types.ts";

export function inspect(ctx: EngineContext, ref: string): ContainerInfo {
  const store = ctx.containers;
  const id = store.resolveId(ref);
  const r = store.load(id);
  const st = status(ctx, id);
  const rs = store.runState(id);
  const restart = readRestartState(ctx, id);
  const stopped = st.status === "exited" || st.status === "restarting";
  const health = healthOf(ctx, id, r, rs);
  return {
    id,
    name: r.name,
    image: r.image,
    imageId: r.imageId,
    created: r.created,
    command: r.command,
    options: r.options,
    state: {
      status: st.status,
      running: st.status === "running" || st.status === "paused" || st.status === "restarting",
      restarting: st.status === "restarting",
      pid: st.pid,
      exitCode: st.exitCode,
      startedAt: rs?.startedAt ?? null,
      finishedAt: stopped
        ? (rs?.finishedAt ?? store.exitTime(id) ?? restart.pending?.finishedAt ?? null)
        : null,
      monitor: rs?.monitor ?? null,
      monitorPid: rs?.monitorPid ?? 0,
      ...(restart.error ? { error: restart.error } : {}),
      ...(health ? { health: health.Status } : {}),
    },
    restartPolicy: {
      name: r.options.restart?.policy ?? "no",
      maximumRetryCount: r.options.restart?.maxRetries ?? 0,
    },
    restartCount: restart.count,
    rootfs: {
      lowerdirs: r.overlay.lowerdirs.map((l) => (l.startsWith("/") ? l : join(r.overlay.cwd, l))),
      upperdir: r.overlay.upperdir,
      workdir: r.overlay.workdir,
      merged: r.overlay.target,
    },
    volumes: r.volumes,
    labels: r.labels,
    dir: store.dir(id),
    logPath: join(store.dir(id), "ctr.log"),
    ports: publishedPorts(ctx, id, r),
    mounts: mountsOf(ctx, r),
    networkSettings: networkSettingsOf(ctx, id, r, st.status),
  };
}

/** Its volumes, binds and tmpfs mounts, as Docker's inspect lists them (Mounts). */
function mountsOf(ctx: EngineContext, r: ContainerRecord): ContainerMount[] {
  const specs = [...(r.options.mounts ?? []), ...(r.inheritedMounts ?? [])];
  const out: ContainerMount[] = [];
  for (const m of specs) {
    if (m.type === "volume") continue; // below, with the volume's name as made at create
    out.push({
      type: m.type,
      source: m.type === "bind" ? (m.source ?? "") : "",
      destination: m.target,
      mode: m.readOnly ? "ro" : "",
      rw: !m.readOnly,
      propagation: m.type === "bind" ? (m.propagation ?? "rprivate") : "",
    });
  }
  for (const v of r.volumes) {
    const spec = specs.find((m) => m.type === "volume" && m.target === v.target);
    out.push({
      type: "volume",
      name: v.name,
      source: join(ctx.volumes.root, v.name, "_data"),
      destination: v.target,
      mode: spec?.readOnly ? "ro" : "",
      rw: !spec?.readOnly,
      propagation: "",
    });
  }
  return out;
}

/**
 * Its addresses, as Docker's inspect shows them (NetworkSettings): per network while it is on one
 * (running), with the first network's address also at the top, as Docker's default bridge has it.
 */
function networkSettingsOf(
  ctx: EngineContext,
  id: string,
  r: ContainerRecord,
  state: string,
): NetworkSettings {
  const n = r.options.network;
  // Only a container on a network of the engine's has addresses of its own (and only then is
  // the network manager loaded: ps lists every container through here).
  const onNetwork =
    n !== undefined &&
    n !== "none" &&
    n !== "host" &&
    !n.startsWith("container:") &&
    !isUserModeNetwork(r.options);
  const attached =
    onNetwork && (state === "running" || state === "paused") ? ctx.networks.attachments(id) : [];
  const networks: NetworkSettings["networks"] = {};
  for (const a of attached) {
    networks[a.network] = {
      ipAddress: a.ip,
      ipPrefixLen: a.prefixLength,
      gateway: a.gateway,
      macAddress: a.mac,
      aliases: a.aliases,
    };
  }
  const first = attached[0];
  return {
    ipAddress: first?.ip ?? "",
    ipPrefixLen: first?.prefixLength ?? 0,
    gateway: first?.gateway ?? "",
    macAddress: first?.mac ?? "",
    networks,
  };
}

/** Published ports: the host ports chosen while on a network, else as configured. */
function publishedPorts(ctx: EngineContext, id: string, r: ContainerRecord): PortMapping[] {
  if (!r.options.publish?.length) return [];
  if (isUserModeNetwork(r.options)) return userModePorts(ctx, id, r.options) ?? r.options.publish;
  const attached = ctx.networks.attachments(id);
  return attached.length > 0 ? attached.flatMap((a) => a.ports) : r.options.publish;
}

/**
 * Containers, newest first; running ones only unless `all`. Exited --rm containers are removed
 * (and what crashes left is cleaned first), except by a rootless process outside the user
 * namespace, which only leaves them out.
 */
export async function list(
  ctx: EngineContext,
  options: { all?: boolean } = {},
): Promise<ContainerInfo[]> {
  // Rootless outside the user namespace (the library in a plain user's program): read only.
  const clean = !(ctx.rootless && outsideUserNamespace());
  if (clean) await recover(ctx);
  const out: ContainerInfo[] = [];
  for (const id of ctx.containers.ids()) {
    let info: ContainerInfo;
    try {
      info = inspect(ctx, id);
    } catch {
      continue;
    }
    if (info.state.status === "exited" && info.options.autoRemove) {
      if (clean) await remove(ctx, id, { force: true }).catch(() => {});
      continue;
    }
    if (options.all || info.state.running) out.push(info);
  }
  return out.sort((a, b) => b.created.localeCompare(a.created));
}
