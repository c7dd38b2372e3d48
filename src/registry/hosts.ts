/**
 * How a registry named in a reference is reached: which host serves its API
 * (docker.io → registry-1.docker.io), over HTTPS with which trusted CAs and
 * client certificates (certs.d directories, as Docker and podman lay them
 * out), and whether plain HTTP or unverified HTTPS is allowed — only for
 * registries explicitly named insecure, or with tlsVerify=false.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { DEFAULT_DOMAIN } from "../image/reference.ts";
import { RegistryError } from "./errors.ts";

/** Where per-registry CA and client certificates are looked for, first match wins. */
export const DEFAULT_CERTS_DIRS = [
  "/etc/pivot/certs.d",
  "/etc/containers/certs.d",
  "/etc/docker/certs.d",
];

/** Optional JSON file: {"insecureRegistries": ["host:port", ...]}. */
export const DEFAULT_REGISTRIES_CONFIG = "/etc/pivot/registries.json";

export interface RegistryHostOptions {
  /**
   * false: skip TLS verification and allow plain HTTP for the registries this
   * call talks to (podman's --tls-verify=false). Default true.
   */
  tlsVerify?: boolean;
  /** Registries (host[:port]) allowed over plain HTTP / unverified TLS (Docker's insecure-registries). */
  insecureRegistries?: string[];
  /** Directories holding <host[:port]>/ca.crt etc. Default DEFAULT_CERTS_DIRS (and $PIVOT_CERTS_DIR first). */
  certsDirs?: string[];
  /** Registries config file; default $PIVOT_REGISTRIES_CONFIG or /etc/pivot/registries.json (missing is fine). */
  registriesConfig?: string;
}

export interface RegistryEndpoint {
  /** The registry as written in references: docker.io, localhost:5000. */
  registry: string;
  /** The host[:port] its API is served at. */
  apiHost: string;
  /** Plain HTTP and unverified HTTPS allowed (explicit opt-in only). */
  insecure: boolean;
  /** Trusted CAs: the system's plus the registry's own, if it has a certs.d directory. */
  ca: string[] | undefined;
  /** Client certificate and key (certs.d/<host>/client.cert + client.key). */
  cert: string | undefined;
  key: string | undefined;
  /** The certs.d directory used, if any (shown in errors). */
  certsDir: string | undefined;
}

export async function resolveEndpoint(
  registry: string,
  options: RegistryHostOptions = {},
): Promise<RegistryEndpoint> {
  const apiHost = registry === DEFAULT_DOMAIN ? "registry-1.docker.io" : registry;
  const insecureList = [
    ...(options.insecureRegistries ?? []),
    ...(await readRegistriesConfig(options.registriesConfig)).insecureRegistries,
  ];
  const insecure = options.tlsVerify === false || insecureList.includes(registry);
  const dirs = options.certsDirs ?? [
    ...(process.env.PIVOT_CERTS_DIR ? [process.env.PIVOT_CERTS_DIR] : []),
    ...DEFAULT_CERTS_DIRS,
  ];
  let ca: string[] | undefined;
  let cert: string | undefined;
  let key: string | undefined;
  let certsDir: string | undefined;
  for (const base of dirs) {
    const dir = join(base, registry);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      continue;
    }
    certsDir = dir;
    const cas: string[] = [];
    for (const name of names) {
      if (name.endsWith(".crt")) cas.push(await readFile(join(dir, name), "utf8"));
      if (name.endsWith(".cert")) {
        const keyName = `${name.slice(0, -".cert".length)}.key`;
        if (!names.includes(keyName)) {
          throw new RegistryError(
            registry,
            `client certificate ${join(dir, name)} has no key ${join(dir, keyName)}`,
            { hint: "put the key beside the certificate, or remove the certificate" },
          );
        }
        cert = await readFile(join(dir, name), "utf8");
        key = await readFile(join(dir, keyName), "utf8");
      }
    }
    if (cas.length > 0) ca = [...rootCertificates, ...cas];
    break;
  }
  return { registry, apiHost, insecure, ca, cert, key, certsDir };
}

async function readRegistriesConfig(
  path: string | undefined,
): Promise<{ insecureRegistries: string[] }> {
  const file = path ?? process.env.PIVOT_REGISTRIES_CONFIG ?? DEFAULT_REGISTRIES_CONFIG;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (path !== undefined) throw e;
    return { insecureRegistries: [] };
  }
  let parsed: { insecureRegistries?: unknown };
  try {
    parsed = JSON.parse(text) as { insecureRegistries?: unknown };
  } catch (e) {
    throw new RegistryError(
      file,
      `registries config ${file} is not valid JSON (${(e as Error).message})`,
    );
  }
  const list = parsed.insecureRegistries;
  if (list !== undefined && (!Array.isArray(list) || list.some((x) => typeof x !== "string"))) {
    throw new RegistryError(
      file,
      `${file}: insecureRegistries must be a list of host[:port] strings`,
    );
  }
  return { insecureRegistries: (list as string[] | undefined) ?? [] };
}
