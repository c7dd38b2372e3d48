/**
 * Registry authentication: WWW-Authenticate challenges (RFC 7235), and
 * credentials kept in Docker's config.json format — in Pivot's own file
 * ($PIVOT_AUTH_FILE or ~/.config/pivot/auth.json) and read also from Docker's
 * ($DOCKER_CONFIG/config.json or ~/.docker/config.json), including its
 * credential helpers (docker-credential-NAME get).
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { DEFAULT_DOMAIN } from "../image/reference.ts";
import { childProcess } from "../util/child-process.ts";
import { RegistryError } from "./errors.ts";

export interface Challenge {
  /** Lower-cased: "bearer", "basic". */
  scheme: string;
  /** Parameter names lower-cased: realm, service, scope, error. */
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header value, which may hold several challenges:
 * `Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"`,
 * `Basic realm="x", Bearer realm="y"`. Quoted strings may contain commas and
 * backslash escapes.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const token = () => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  const bare = () => {
    const start = i;
    while (i < n && header[i] !== "," && header[i] !== " " && header[i] !== "\t") i++;
    return header.slice(start, i);
  };
  const quoted = () => {
    // at the opening quote
    i++;
    let s = "";
    while (i < n && header[i] !== '"') {
      if (header[i] === "\\" && i + 1 < n) i++;
      s += header[i];
      i++;
    }
    i++; // closing quote
    return s;
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (header[i] === ",") {
      i++;
      continue;
    }
    if (header[i] === '"') {
      quoted(); // a stray quoted string: skip it
      continue;
    }
    const start = i;
    const name = token();
    if (name === "") {
      i++; // skip a stray character
      continue;
    }
    skipWs();
    if (header[i] === "=" && current !== undefined) {
      // An auth-param of the current challenge (or a token68 ending in '=').
      i++;
      skipWs();
      // Unquoted values should be tokens; accept anything up to a comma or
      // space (some servers send realm=https://... unquoted).
      const value = header[i] === '"' ? quoted() : bare();
      current.params[name.toLowerCase()] = value;
      continue;
    }
    if (header[i] === "=") {
      // a parameter before any scheme: ignore it
      while (i < n && header[i] !== ",") i++;
      continue;
    }
    // A new challenge; its auth-params follow. (A token68, as in `Negotiate abc==`,
    // parses as a harmless parameter.)
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
    if (i === start) i++;
  }
  return out;
}

/** Scopes of the distribution token spec: `repository:library/busybox:pull,push`. */
export function repositoryScope(repository: string, actions: string[]): string {
  return `repository:${repository}:${actions.join(",")}`;
}

// ---- credentials ----

export interface Credentials {
  username: string;
  /** Password or, with username "<token>", an identity (refresh) token. */
  password: string;
  /** An OAuth2 refresh token (config.json `identitytoken`). */
  identityToken?: string;
  /** Where they came from, for error messages: a file, or a helper. */
  source: string;
}

export interface CredentialOptions {
  /** Use only this auth file (Docker config.json format) for reading and writing. */
  authFile?: string;
  /** Credentials given directly (e.g. --creds user:pass); take precedence over files. */
  credentials?: { username: string; password: string };
}

/** Pivot's own credentials file. */
export function pivotAuthFile(): string {
  if (process.env.PIVOT_AUTH_FILE) return process.env.PIVOT_AUTH_FILE;
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "pivot", "auth.json");
}

/** Docker's config.json. */
export function dockerConfigFile(): string {
  const dir = process.env.DOCKER_CONFIG || join(homedir(), ".docker");
  return join(dir, "config.json");
}

/** The files credentials are read from, in order. */
export function credentialFiles(options: CredentialOptions = {}): string[] {
  if (options.authFile !== undefined) return [options.authFile];
  return [pivotAuthFile(), dockerConfigFile()];
}

/** The key config.json uses for a registry (Docker Hub keeps its historical URL). */
export function configKey(registry: string): string {
  return registry === DEFAULT_DOMAIN ? "https://index.docker.io/v1/" : registry;
}

/** Normalizes a config.json key (`https://host/v1/`, `http://host`, `host`) to host[:port]. */
export function normalizeConfigKey(key: string): string {
  let k = key.replace(/^[a-z]+:\/\//i, "");
  const slash = k.indexOf("/");
  if (slash >= 0) k = k.slice(0, slash);
  if (k === "index.docker.io" || k === "registry-1.docker.io") return DEFAULT_DOMAIN;
  return k;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [other: string]: unknown;
}

async function readConfig(path: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    const parsed = JSON.parse(text) as DockerConfig;
    if (parsed === null || typeof parsed !== "object") throw new Error("not an object");
    return parsed;
  } catch (e) {
    throw new RegistryError(
      path,
      `credentials file ${path} is not valid JSON (${(e as Error).message})`,
      {
        hint: "fix or remove the file",
      },
    );
  }
}

/** Decodes one auths entry. */
export function decodeAuthEntry(
  entry: AuthEntry,
): { username: string; password: string; identityToken?: string } | undefined {
  let username = entry.username ?? "";
  let password = entry.password ?? "";
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (entry.identitytoken) return { username, password, identityToken: entry.identitytoken };
  if (username === "" && password === "") return undefined;
  return { username, password };
}

/**
 * The credentials for `registry`, from the first file (or its credential
 * helper) that has them. `tried` collects where was looked, for errors.
 */
export async function getCredentials(
  registry: string,
  options: CredentialOptions = {},
  tried: string[] = [],
): Promise<Credentials | undefined> {
  if (options.credentials) {
    return { ...options.credentials, source: "the credentials given" };
  }
  for (const file of credentialFiles(options)) {
    const config = await readConfig(file);
    if (config === undefined) {
      tried.push(`${file} (missing)`);
      continue;
    }
    const helper =
      Object.entries(config.credHelpers ?? {}).find(
        ([k]) => normalizeConfigKey(k) === registry,
      )?.[1] ?? config.credsStore;
    if (helper) {
      const fromHelper = await helperGet(helper, registry).catch((e: Error) => {
        tried.push(`docker-credential-${helper} (${e.message})`);
        return undefined;
      });
      if (fromHelper) return fromHelper;
      if (config.credHelpers?.[configKey(registry)] !== undefined) continue;
    }
    const entry = Object.entries(config.auths ?? {}).find(
      ([k]) => normalizeConfigKey(k) === registry,
    )?.[1];
    const decoded = entry ? decodeAuthEntry(entry) : undefined;
    if (decoded) return { ...decoded, source: file };
    tried.push(`${file} (no entry for ${registry})`);
  }
  return undefined;
}

function runHelper(helper: string, action: string, input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(`docker-credential-${helper}`, [action], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString("utf8");
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error((out || err).trim() || `exit status ${code}`));
    });
    child.stdin.end(input);
  });
}

async function helperGet(helper: string, registry: string): Promise<Credentials | undefined> {
  let out: string;
  try {
    out = await runHelper(helper, "get", configKey(registry));
  } catch (e) {
    if (/credentials not found/i.test((e as Error).message)) return undefined;
    throw e;
  }
  const parsed = JSON.parse(out) as { Username?: string; Secret?: string };
  if (!parsed.Secret) return undefined;
  const source = `docker-credential-${helper}`;
  if (parsed.Username === "<token>") {
    return { username: "", password: "", identityToken: parsed.Secret, source };
  }
  return { username: parsed.Username ?? "", password: parsed.Secret, source };
}

/** Describes credentials for error messages without revealing the secret. */
export function describeCredentials(creds: Credentials | undefined, tried: string[]): string {
  if (creds === undefined) {
    return tried.length > 0
      ? `anonymous access (no credentials found in ${tried.join(", ")})`
      : "anonymous access";
  }
  if (creds.identityToken) return `an identity token from ${creds.source}`;
  return `user ${JSON.stringify(creds.username)} from ${creds.source}`;
}

/** Writes credentials for `registry` to the auth file (or its credential helper). Returns where. */
export async function storeCredentials(
  registry: string,
  creds: { username: string; password: string },
  options: CredentialOptions = {},
): Promise<string> {
  const file = options.authFile ?? pivotAuthFile();
  const config = (await readConfig(file)) ?? {};
  const helper = config.credHelpers?.[configKey(registry)] ?? config.credsStore;
  if (helper) {
    await runHelper(
      helper,
      "store",
      JSON.stringify({
        ServerURL: configKey(registry),
        Username: creds.username,
        Secret: creds.password,
      }),
    );
    return `docker-credential-${helper}`;
  }
  config.auths ??= {};
  for (const k of Object.keys(config.auths)) {
    if (normalizeConfigKey(k) === registry) delete config.auths[k];
  }
  config.auths[configKey(registry)] = {
    auth: Buffer.from(`${creds.username}:${creds.password}`).toString("base64"),
  };
  await writeConfig(file, config);
  return file;
}

/** Removes credentials for `registry` from the auth file. Returns whether there were any. */
export async function removeCredentials(
  registry: string,
  options: CredentialOptions = {},
): Promise<boolean> {
  const file = options.authFile ?? pivotAuthFile();
  const config = await readConfig(file);
  if (config === undefined) return false;
  const helper = config.credHelpers?.[configKey(registry)] ?? config.credsStore;
  let removed = false;
  if (helper) {
    try {
      await runHelper(helper, "erase", configKey(registry));
      removed = true;
    } catch {}
  }
  for (const k of Object.keys(config.auths ?? {})) {
    if (normalizeConfigKey(k) === registry) {
      delete config.auths![k];
      removed = true;
    }
  }
  if (removed) await writeConfig(file, config);
  return removed;
}

async function writeConfig(file: string, config: DockerConfig): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp-${process.pid}`;
  await writeFile(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await rename(temp, file);
}
