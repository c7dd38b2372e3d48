/**
 * `pivot login` / `pivot logout`: credentials checked against the registry,
 * then kept in Pivot's auth file (Docker's config.json format) or the
 * credential helper it names.
 */
import { DEFAULT_DOMAIN, splitDockerDomain } from "../image/reference.ts";
import { type CredentialOptions, removeCredentials, storeCredentials } from "./auth.ts";
import { type ClientOptions, RegistryClient } from "./client.ts";

export interface LoginOptions extends ClientOptions {
  /** Store without checking them against the registry first. */
  noVerify?: boolean;
}

/** A registry argument as users type it: `localhost:5000`, `https://quay.io`, `docker.io`, none. */
export function normalizeRegistry(input: string | undefined): string {
  if (input === undefined || input === "") return DEFAULT_DOMAIN;
  const bare = input.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "");
  if (bare === "index.docker.io" || bare === "registry-1.docker.io") return DEFAULT_DOMAIN;
  // A bare name without dots or port would be a Docker Hub repository, not a registry.
  return splitDockerDomain(`${bare}/x`)[0];
}

/** Checks the credentials with the registry and stores them. Returns where they were stored. */
export async function login(
  registry: string | undefined,
  credentials: { username: string; password: string },
  options: LoginOptions = {},
): Promise<string> {
  const host = normalizeRegistry(registry);
  if (!options.noVerify) {
    const client = new RegistryClient(host, { ...options, credentials });
    try {
      await client.checkLogin();
    } finally {
      client.close();
    }
  }
  return storeCredentials(host, credentials, options);
}

/** Removes stored credentials. Returns whether there were any. */
export async function logout(
  registry: string | undefined,
  options: CredentialOptions = {},
): Promise<boolean> {
  return removeCredentials(normalizeRegistry(registry), options);
}
