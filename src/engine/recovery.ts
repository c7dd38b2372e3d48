// Recovery after crashed pivot processes, killed monitors and reboots (`ps`/`list` run it first,
// `rm` and create for one container): what each leaves behind and how it goes is described in
// docs/architecture.md, "State: files, locks, atomic renames".
import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { unmountOverlay } from "../image/overlay.ts";
import { stopUserModeNetwork, userModeNetworkStates } from "./container-network.ts";
import { monitorAlive, rt, type Status, status } from "./container-runtime.ts";
import type { ContainerRecord } from "./container-store.ts";
import type { EngineContext } from "./context.ts";
import { ensureHealthTimer } from "./health-timer.ts";
import { cleanupLocked, removeLocked } from "./lifecycle.ts";

/** Mount points in this mount namespace. */
function mountPoints(): string[] {
  let text = "";
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {}
  return text
    .split("\n")
    .map((l) =>
      (l.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    )
    .filter((p) => p !== "");
}

/**
 * Cleans what crashed pivot processes, killed monitors and reboots leave (`ps` runs it first):
 * directories of creates and removes that died half-way (their lock is free), exited
 * containers whose monitor did not clean up (runtime state, cgroups, overlay mount, network),
 * starts that died after the runtime made the process but before state.json (undone: the
 * container stays Created; a `run --rm`'s is removed), and a rootless container's slirp4netns or pasta left running when
 * nothing runs the container.
 * Returns the ids it cleaned.
 */
export async function recover(ctx: EngineContext): Promise<string[]> {
  const store = ctx.containers;
  const cleaned: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(store.containersDir);
  } catch {
    return cleaned;
  }
  for (const e of entries) {
    const removing = /^\.removing-([0-9a-f]{64})$/.exec(e);
    const id = removing ? removing[1]! : /^[0-9a-f]{64}$/.test(e) ? e : null;
    if (!id) continue;
    if (!removing && existsSync(join(store.dir(id), "container.json"))) continue;
    if (await recoverOrphan(ctx, id, join(store.containersDir, e))) cleaned.push(id);
  }
  const mounted = new Set(mountPoints());
  const helpers = userModeNetworkStates(ctx);
  const sandboxes = new Set(ctx.rootless ? [] : ctx.networks.sandboxes());
  const known = new Set<string>();
  for (const id of store.ids()) {
    known.add(id);
    let r: ContainerRecord;
    let st: Status;
    try {
      r = store.load(id);
      st = status(ctx, id);
    } catch {
      continue;
    }
    // Its periodic health checks, if their timer is gone (health-timer.ts).
    if (st.status === "running") ensureHealthTimer(ctx, id, r);
    if (st.status === "created" && r.createdByRun && r.options.autoRemove) {
      // A run --rm that died before its start completed (it holds the lock until then): nobody
      // will start this container or remove it, so it goes as its run's end would have taken it.
      const removed = await store
        .withLock(
          id,
          async () => {
            if (store.runState(id) || status(ctx, id).status !== "created") return false;
            await removeLocked(ctx, id, { force: true });
            return true;
          },
          100,
        )
        .catch(() => false);
      if (removed) cleaned.push(id);
      continue;
    }
    if (st.status === "created" && rt(ctx, id).store.exists(id)) {
      // The runtime has a process for a container the engine never recorded as started: a start
      // whose pivot died before state.json (it holds the lock until then, so a free lock means
      // that). Undone as a failed start is: the process killed, cgroups, network and mount
      // released; it stays Created.
      const undone = await store
        .withLock(
          id,
          async () => {
            if (store.runState(id) || !rt(ctx, id).store.exists(id)) return false;
            await cleanupLocked(ctx, id, { keepOnFailure: true });
            return true;
          },
          100,
        )
        .catch(() => false);
      if (undone) cleaned.push(id);
      continue;
    }
    if (st.status === "created" && sandboxes.has(id)) {
      if (await releaseAbandonedStart(ctx, id)) cleaned.push(id);
      continue;
    }
    if (st.status !== "exited") continue;
    const rs = store.runState(id);
    if (rs && monitorAlive(rs.monitorPid, rs.monitorStart)) continue; // its cleanup is coming
    const stale =
      mounted.has(r.overlay.target) ||
      rt(ctx, id).store.exists(id) ||
      Object.values(rs?.cgroupPaths ?? {}).some((p) => existsSync(p)) ||
      helpers.has(id);
    if (!stale) continue;
    await store
      .withLock(id, () => cleanupLocked(ctx, id, {}), 2000)
      .catch((err) =>
        ctx.warn(`cleaning up container ${id.slice(0, 12)}: ${(err as Error).message}`),
      );
    cleaned.push(id);
  }
  // A slirp4netns or pasta whose container no longer runs, left where its backstop could not act
  // (pasta's watcher killed with the monitor; the engine killed between pasta's start and the
  // watcher's, or before the container's state.json): ended by its recorded pid and start time,
  // unless the engine process that started it, or the container's monitor, still runs.
  for (const [id, h] of userModeNetworkStates(ctx)) {
    if (h.starting) continue;
    const ended = await store
      .withLock(
        id,
        async () => {
          if (existsSync(join(store.dir(id), "container.json"))) {
            const st = status(ctx, id);
            if (st.status !== "exited" && st.status !== "created") return false;
            const rs = store.runState(id);
            if (rs && monitorAlive(rs.monitorPid, rs.monitorStart)) return false;
            // A start killed after its process was created but before state.json: the runtime
            // knows that process, which may run on.
            let rtStatus = "";
            try {
              rtStatus = rt(ctx, id).state(id).status;
            } catch {}
            if (rtStatus === "running" || rtStatus === "created" || rtStatus === "paused")
              return false;
          }
          if (userModeNetworkStates(ctx).get(id)?.starting !== false) return false;
          await stopUserModeNetwork(ctx, id);
          return true;
        },
        100,
      )
      .catch(() => false);
    if (ended && !cleaned.includes(id)) cleaned.push(id);
  }
  // Runtime state of containers the engine no longer has (a remove that died half-way).
  for (const id of ctx.runtime.store.ids()) {
    if (known.has(id) || existsSync(join(store.dir(id), "container.json"))) continue;
    await store.withLock(id, () => ctx.runtime.delete(id, true), 100).catch(() => {});
  }
  // The networks (NetworkManager.recover): attachments a killed ADD left, namespaces without a
  // record, and Pivot's rules made what the attachments need (a crash between a batch and its
  // record, or someone flushing them). Nothing when no container is on a network and none of
  // Pivot's rules is installed; else the network lock and one iptables-save (~2.5 ms).
  if (!ctx.rootless)
    await ctx.networks
      .recover()
      .catch((err) => ctx.warn(`recovering the networks' state: ${(err as Error).message}`));
  return cleaned;
}

/**
 * A network namespace, connected (veth, address, published ports), of a container never started
 * whose lock is free: a start whose pivot died (SIGKILL, a signal to an attached run before it
 * forwards them) before the runtime had a process (else recover's case of runtime state).
 * Released as a failed start; it stays Created. True if it was released.
 */
async function releaseAbandonedStart(
  ctx: EngineContext,
  id: string,
  lockTimeoutMs = 100,
): Promise<boolean> {
  const store = ctx.containers;
  const abandoned = () =>
    existsSync(join(store.dir(id), "container.json")) &&
    !store.runState(id) &&
    !rt(ctx, id).store.exists(id) &&
    status(ctx, id).status === "created";
  // Looked at first without the lock: a start under way holds it, and is not waited for long.
  if (!abandoned()) return false;
  return store
    .withLock(
      id,
      async () => {
        if (!abandoned() || !ctx.networks.sandboxes().includes(id)) return false;
        await cleanupLocked(ctx, id, { keepOnFailure: true });
        return true;
      },
      lockTimeoutMs,
    )
    .catch(() => false);
}

/**
 * Before a start connects container SELF: the networks of abandoned starts (see
 * releaseAbandonedStart), which would hold the host ports and addresses it asks for until the
 * next `ps`.
 */
export async function releaseAbandonedStarts(ctx: EngineContext, self: string): Promise<void> {
  for (const id of ctx.networks.sandboxes()) {
    if (id !== self) await releaseAbandonedStart(ctx, id, 30);
  }
}

/**
 * Removes a container directory without container.json (a create that died) or one renamed
 * for removal (a remove that died), if no live process holds the container's lock.
 */
export async function recoverOrphan(
  ctx: EngineContext,
  id: string,
  path = ctx.containers.dir(id),
): Promise<boolean> {
  const store = ctx.containers;
  return store
    .withLock(
      id,
      async () => {
        if (path === store.dir(id) && existsSync(join(path, "container.json"))) return false;
        if (!existsSync(path)) return false;
        for (const m of mountPoints()
          .filter((p) => p.startsWith(`${path}/`))
          .reverse()) {
          await unmountOverlay(m).catch(() => unmountOverlay(m, { lazy: true }));
        }
        if (ctx.runtime.store.exists(id)) await ctx.runtime.delete(id, true).catch(() => {});
        rmSync(path, { recursive: true, force: true });
        try {
          for (const n of readdirSync(store.namesDir)) {
            if (store.nameOwner(n) === id) unlinkSync(join(store.namesDir, n));
          }
        } catch {}
        return true;
      },
      100,
    )
    .catch(() => false);
}

/**
 * A name asked for by create or rename whose owner has no container.json (a create that died):
 * that leftover is recovered first, so the name can be claimed.
 */
export async function recoverNameOwner(ctx: EngineContext, name: string): Promise<void> {
  const owner = ctx.containers.nameOwner(name);
  if (owner && !existsSync(join(ctx.containers.dir(owner), "container.json")))
    await recoverOrphan(ctx, owner);
}
