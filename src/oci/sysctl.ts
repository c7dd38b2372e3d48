// Which kernel namespace a sysctl belongs to. Only those can be set for one container: any other
// is the host kernel's, and writing it from a container changes it for every process (runc and
// Docker refuse them; so does Pivot, in the runtime's validation and in the engine's flags).

/** The IPC namespace's sysctls (besides fs.mqueue.*). */
const IPC_SYSCTLS = new Set([
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
]);

export type SysctlNamespace = "ipc" | "network" | "uts";

/**
 * The namespace that makes sysctl KEY a container's own; null: it belongs to the whole host. KEY
 * may be written with slashes (net/ipv4/ip_forward), as runc accepts it.
 */
export function sysctlNamespace(name: string): SysctlNamespace | null {
  const key = name.replaceAll("/", ".");
  if (IPC_SYSCTLS.has(key) || key.startsWith("fs.mqueue.")) return "ipc";
  if (key.startsWith("net.")) return "network";
  if (key === "kernel.domainname" || key === "kernel.hostname") return "uts";
  return null;
}

/**
 * Why sysctl KEY cannot be set in a container whose namespaces (new or joined) are NAMESPACES, or
 * null when it can. `hostnameField` names the field that sets the hostname instead.
 */
export function sysctlProblem(
  key: string,
  namespaces: ReadonlySet<string>,
  hostnameField: string,
): string | null {
  const ns = sysctlNamespace(key);
  if (ns === null) {
    return `"${key}" is not in a namespace of its own: setting it would change the host's kernel for every process`;
  }
  if (!namespaces.has(ns)) {
    return `"${key}" belongs to the ${ns} namespace, which this container shares with the host`;
  }
  if (key.replaceAll("/", ".") === "kernel.hostname")
    return `"kernel.hostname" is set with ${hostnameField} instead`;
  return null;
}
