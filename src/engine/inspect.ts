// What `pivot inspect` and `pivot ps` show: a container's record and its derived state.
import { join } from "node:path";
import type { PortMapping } from "../network/ports.ts";
import { isUserModeNetwork, userModePorts } from "./container-network.ts";
import { status } from "./container-runtime.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { remove } from "./lifecycle.ts";
import { recover } from "./recovery.ts";
import { readRestartState } from "./restart-state.ts";
import { outsideUserNamespace } from "./rootless.ts";
import type { ContainerInfo } from "./types.ts";

export function inspect(ctx: EngineContext, ref: string): ContainerInfo {
  const store = ctx.containers;
  const id = store.resolveId(ref);
  const r = store.load(id);
  const st = status(ctx, id);
  const rs = store.runState(id);
  const restart = readRestartState(ctx, id);
  const stopped = st.status === "exited" || st.status === "restarting";
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
