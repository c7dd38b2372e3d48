// The CNI protocol from the runtime's side: exec a plugin with CNI_* variables and its network
// configuration on stdin, read the result (or the error) as JSON from its stdout. Network
// configuration lists are run plugin by plugin, each given the previous one's result.
// Spec: https://github.com/containernetworking/cni/blob/main/SPEC.md
import { accessSync, constants as fsConstants } from "node:fs";
import { join } from "node:path";
import { PivotError } from "../errors.ts";
import { childProcess } from "../util/child-process.ts";
import { CNI_VERSION, DEFAULT_CNI_PATH } from "./cni-defaults.ts";

export { CNI_VERSION, DEFAULT_CNI_PATH };

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

/** One plugin's configuration: `type` names the executable; the rest is the plugin's own. */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

/** A network configuration list (a .conflist): plugins chained in order. */
export interface NetworkConfList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: PluginConf[];
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniIPConfig {
  /** An index into `interfaces`. */
  interface?: number;
  /** CIDR notation: the address and the prefix length of its subnet. */
  address: string;
  gateway?: string;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/** What identifies one attachment for the plugins (CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME). */
export interface RuntimeConf {
  containerId: string;
  /** Path of the network namespace; may be empty for DEL when it is gone. */
  netns: string;
  ifName: string;
  /** CNI_ARGS as key/value pairs. */
  args?: Record<string, string>;
  /** Values for the capabilities the plugins declare (e.g. portMappings, ips). */
  capabilityArgs?: Record<string, unknown>;
}

/** A plugin failed: its CNI error code (see the spec's table) and message, or how it died. */
export class CniError extends PivotError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly cniCode: number,
    readonly msg: string,
    readonly details?: string,
    hint?: string,
  ) {
    super(
      `CNI plugin ${plugin} ${command} failed (code ${cniCode}): ${msg}${details ? ` (${details})` : ""}`,
      hint === undefined ? {} : { hint },
    );
  }
}

export interface InvokeOptions {
  /** Directories searched for plugin executables (CNI_PATH). */
  cniPath?: string[];
  /** Kill the plugin after this long (default 60 s). */
  timeoutMs?: number;
}

/** A plugin executable in the CNI path, or a CniError naming the package to install. */
export function findPlugin(type: string, cniPath: string[] = DEFAULT_CNI_PATH): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) {
    throw new CniError(type, "ADD", 4, `invalid plugin type "${type}"`);
  }
  for (const dir of cniPath) {
    const path = join(dir, type);
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {}
  }
  throw new CniError(
    type,
    "ADD",
    4,
    `plugin "${type}" not found in ${cniPath.join(":")}`,
    undefined,
    "install Debian's containernetworking-plugins (apt-get install containernetworking-plugins)",
  );
}

const PLUGIN_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Executes one plugin. Resolves with its parsed stdout (a result for ADD, a version object for
 * VERSION, null when it prints nothing, as DEL and CHECK usually do); rejects with CniError.
 */
export function invokePlugin(
  conf: PluginConf & { cniVersion: string; name: string },
  command: CniCommand,
  rt: RuntimeConf,
  options: InvokeOptions = {},
): Promise<unknown> {
  const cniPath = options.cniPath ?? DEFAULT_CNI_PATH;
  let path: string;
  try {
    path = findPlugin(conf.type, cniPath);
  } catch (err) {
    return Promise.reject(err);
  }
  const env: Record<string, string> = {
    PATH: PLUGIN_ENV_PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_PATH: cniPath.join(":"),
  };
  if (rt.args && Object.keys(rt.args).length > 0) {
    env.CNI_ARGS = Object.entries(rt.args)
      .map(([k, v]) => `${k}=${v}`)
      .join(";");
  }
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(path, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new CniError(conf.type, command, 999, `timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new CniError(conf.type, command, 999, `could not be started: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let parsed: unknown = null;
      const text = stdout.trim();
      if (text) {
        try {
          parsed = JSON.parse(text);
        } catch {
          if (code === 0) {
            reject(
              new CniError(conf.type, command, 999, `printed invalid JSON: ${text.slice(0, 200)}`),
            );
            return;
          }
        }
      }
      if (code === 0) {
        resolve(parsed);
        return;
      }
      const e = (parsed ?? {}) as { code?: number; msg?: string; details?: string };
      const how = signal ? `killed by ${signal}` : `exited with status ${code}`;
      reject(
        new CniError(
          conf.type,
          command,
          typeof e.code === "number" ? e.code : 999,
          e.msg ?? (stderr.trim() || text || how),
          e.details || undefined,
        ),
      );
    });
    child.stdin.on("error", () => {});
    child.stdin.end(JSON.stringify(conf));
  });
}

/**
 * The configuration one plugin of a list receives: the list's name and cniVersion, runtimeConfig
 * for the capabilities it declares, and the previous plugin's result.
 */
export function pluginStdin(
  list: NetworkConfList,
  plugin: PluginConf,
  rt: RuntimeConf,
  prevResult: CniResult | null,
): PluginConf & { cniVersion: string; name: string } {
  const conf: PluginConf & { cniVersion: string; name: string } = {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
  };
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on && rt.capabilityArgs && cap in rt.capabilityArgs) {
      runtimeConfig[cap] = rt.capabilityArgs[cap];
    }
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  else delete conf.runtimeConfig;
  if (prevResult) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}

export function validateConfList(list: NetworkConfList): void {
  if (!list.name || typeof list.name !== "string")
    throw new CniError("(list)", "ADD", 1, "the network configuration list has no name");
  if (!Array.isArray(list.plugins) || list.plugins.length === 0)
    throw new CniError("(list)", "ADD", 1, `network "${list.name}" has no plugins`);
  for (const p of list.plugins) {
    if (!p || typeof p.type !== "string")
      throw new CniError("(list)", "ADD", 1, `network "${list.name}": a plugin has no type`);
  }
}

export interface AddProgress {
  /** Called after each plugin's ADD with the result so far (to record it before the next). */
  onResult?: (index: number, result: CniResult) => void | Promise<void>;
}

/**
 * ADD through a list. Each plugin gets the previous result; the last result is returned. On a
 * failure the caller should DEL the whole list (as libcni's users do): plugins' DEL is idempotent.
 */
export async function addNetworkList(
  list: NetworkConfList,
  rt: RuntimeConf,
  options: InvokeOptions & AddProgress = {},
): Promise<CniResult> {
  validateConfList(list);
  let prev: CniResult | null = null;
  for (const [i, plugin] of list.plugins.entries()) {
    const out = await invokePlugin(pluginStdin(list, plugin, rt, prev), "ADD", rt, options);
    prev = parseResult(out, plugin.type);
    await options.onResult?.(i, prev);
  }
  return prev!;
}

/** CHECK through a list, with the result of the ADD (the spec requires it). */
export async function checkNetworkList(
  list: NetworkConfList,
  rt: RuntimeConf,
  prevResult: CniResult,
  options: InvokeOptions & { ignore?: (err: CniError) => boolean } = {},
): Promise<void> {
  validateConfList(list);
  if (list.disableCheck) return;
  for (const plugin of list.plugins) {
    try {
      await invokePlugin(pluginStdin(list, plugin, rt, prevResult), "CHECK", rt, options);
    } catch (err) {
      if (!(err instanceof CniError && options.ignore?.(err))) throw err;
    }
  }
}

/**
 * DEL through a list in reverse order. Every plugin is called even when one fails (so as much as
 * possible is released); the first error is thrown at the end. `prevResult` is the ADD's result
 * when known (null after a crash before any result was recorded).
 */
export async function delNetworkList(
  list: NetworkConfList,
  rt: RuntimeConf,
  prevResult: CniResult | null,
  options: InvokeOptions = {},
): Promise<void> {
  validateConfList(list);
  let first: unknown = null;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await invokePlugin(pluginStdin(list, plugin, rt, prevResult), "DEL", rt, options);
    } catch (err) {
      first ??= err;
    }
  }
  if (first) throw first;
}

/** Checks the shape of an ADD result (any CNI version ≥ 0.3 has interfaces/ips/routes). */
export function parseResult(out: unknown, plugin: string): CniResult {
  if (!out || typeof out !== "object") {
    throw new CniError(plugin, "ADD", 999, "returned no result");
  }
  const r = out as Record<string, unknown>;
  const result: CniResult = { cniVersion: String(r.cniVersion ?? CNI_VERSION) };
  if (r.interfaces !== undefined) {
    if (!Array.isArray(r.interfaces))
      throw new CniError(plugin, "ADD", 999, "result: interfaces is not an array");
    result.interfaces = r.interfaces.map((i: Record<string, unknown>) => {
      const iface: CniInterface = { name: String(i.name ?? "") };
      if (typeof i.mac === "string") iface.mac = i.mac;
      if (typeof i.sandbox === "string") iface.sandbox = i.sandbox;
      return iface;
    });
  }
  if (r.ips !== undefined) {
    if (!Array.isArray(r.ips))
      throw new CniError(plugin, "ADD", 999, "result: ips is not an array");
    result.ips = r.ips.map((ip: Record<string, unknown>) => {
      if (typeof ip.address !== "string" || !ip.address.includes("/"))
        throw new CniError(plugin, "ADD", 999, "result: an ip has no CIDR address");
      const c: CniIPConfig = { address: ip.address };
      if (typeof ip.interface === "number") c.interface = ip.interface;
      if (typeof ip.gateway === "string") c.gateway = ip.gateway;
      return c;
    });
  }
  if (Array.isArray(r.routes)) result.routes = r.routes as CniRoute[];
  if (r.dns && typeof r.dns === "object") result.dns = r.dns as CniResult["dns"];
  return result;
}

/** The container side of a result: the first address (per family) on a sandbox interface. */
export function containerAddresses(
  result: CniResult,
): { address: string; prefixLength: number; gateway?: string; mac?: string; family: 4 | 6 }[] {
  const out: {
    address: string;
    prefixLength: number;
    gateway?: string;
    mac?: string;
    family: 4 | 6;
  }[] = [];
  for (const ip of result.ips ?? []) {
    const iface = ip.interface === undefined ? undefined : result.interfaces?.[ip.interface];
    if (iface && iface.sandbox === undefined) continue;
    const [address, prefix] = ip.address.split("/") as [string, string];
    const entry: (typeof out)[number] = {
      address,
      prefixLength: Number(prefix),
      family: address.includes(":") ? 6 : 4,
    };
    if (ip.gateway) entry.gateway = ip.gateway;
    if (iface?.mac) entry.mac = iface.mac;
    out.push(entry);
  }
  return out;
}
