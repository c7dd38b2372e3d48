/**
 * Image references with Docker's normalization rules (the grammar and rules of
 * github.com/distribution/reference):
 *
 *   busybox                 → docker.io/library/busybox:latest
 *   alice/app:1             → docker.io/alice/app:1
 *   localhost/app           → localhost/app:latest
 *   registry:5000/app       → registry:5000/app:latest
 *   quay.io/a/b@sha256:...  → quay.io/a/b@sha256:...   (no tag added)
 */

import { parseDigest } from "./digest.ts";
import { InvalidDigestError, InvalidReferenceError } from "./errors.ts";

export const DEFAULT_DOMAIN = "docker.io";
export const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
export const OFFICIAL_REPO_PREFIX = "library/";
export const DEFAULT_TAG = "latest";
export const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar, as in distribution/reference's regexp.go.
const alphanumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const ipv6address = "\\[(?:[a-fA-F0-9:]+)\\]";
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const namePat = `(?:${domainAndPort}/)?${remoteName}`;
const tagPat = "[\\w][\\w.-]{0,127}";
const digestPat = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

const REFERENCE_RE = new RegExp(`^(${namePat})(?::(${tagPat}))?(?:@(${digestPat}))?$`);
const DOMAIN_RE = new RegExp(`^${domainAndPort}$`);
const TAG_RE = new RegExp(`^${tagPat}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;
// What users type most (`busybox`, `debian:12`): one path component and an optional tag, parsed
// without the full grammar, whose first use compiles REFERENCE_RE (~0.3 ms of every `pivot run`).
const OFFICIAL_NAME_RE = new RegExp(`^(${pathComponent})(?::(${tagPat}))?$`);

export interface ImageReference {
  /** Registry host with optional port, e.g. `docker.io`, `localhost:5000`. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  readonly path: string;
  /** `domain/path`, e.g. `docker.io/library/busybox`. */
  readonly name: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

/** Parses a reference written the way a user types it and normalizes it like Docker. */
export function parseReference(
  input: string,
  options: { defaultTag?: boolean } = {},
): ImageReference {
  const defaultTag = options.defaultTag ?? true;
  if (input === "") throw new InvalidReferenceError(input, "the name is empty");
  const official = OFFICIAL_NAME_RE.exec(input);
  if (official && !IDENTIFIER_RE.test(input)) {
    const path = OFFICIAL_REPO_PREFIX + official[1]!;
    const tag = official[2] ?? (defaultTag ? DEFAULT_TAG : undefined);
    if (`${DEFAULT_DOMAIN}/${path}`.length <= NAME_TOTAL_LENGTH_MAX)
      return makeReference(DEFAULT_DOMAIN, path, tag, undefined);
  }
  if (IDENTIFIER_RE.test(input)) {
    throw new InvalidReferenceError(
      input,
      "64-character hexadecimal strings are image IDs, not repository names",
      "to use an image by ID, pass it where an image ID is accepted, or write sha256:<ID>",
    );
  }
  const [domain, remainder] = splitDockerDomain(input);
  const tagSep = remainder.indexOf(":");
  const repoPart = tagSep >= 0 ? remainder.slice(0, tagSep) : remainder;
  if (repoPart.toLowerCase() !== repoPart) {
    throw new InvalidReferenceError(
      input,
      `repository name ${JSON.stringify(repoPart)} must be lowercase`,
    );
  }
  const ref = parseFull(`${domain}/${remainder}`, input);
  if (defaultTag && ref.tag === undefined && ref.digest === undefined) {
    return makeReference(ref.domain, ref.path, DEFAULT_TAG, undefined);
  }
  return ref;
}

/**
 * Parses a reference that must already be in canonical form
 * (`docker.io/library/busybox:latest`, not `busybox`), as stored in image
 * indexes. Nothing is added or normalized.
 */
export function parseNamed(input: string): ImageReference {
  const ref = parseReference(input, { defaultTag: false });
  if (formatReference(ref) !== input) {
    throw new InvalidReferenceError(
      input,
      `not in canonical form (the canonical form is ${formatReference(ref)})`,
    );
  }
  return ref;
}

function parseFull(input: string, shownAs: string): ImageReference {
  const m = REFERENCE_RE.exec(input);
  if (!m) {
    if (input === "") throw new InvalidReferenceError(shownAs, "the name is empty");
    if (REFERENCE_RE.test(input.toLowerCase())) {
      throw new InvalidReferenceError(shownAs, "repository name must be lowercase");
    }
    throw new InvalidReferenceError(shownAs, "invalid reference format");
  }
  const name = m[1]!;
  const tag = m[2];
  const digest = m[3];
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidReferenceError(
      shownAs,
      `repository name is ${name.length} characters long, the limit is ${NAME_TOTAL_LENGTH_MAX}`,
    );
  }
  if (digest !== undefined) {
    try {
      parseDigest(digest);
    } catch (e) {
      const reason = e instanceof InvalidDigestError ? e.message.split("\n")[0]! : String(e);
      throw new InvalidReferenceError(shownAs, reason);
    }
  }
  const slash = name.indexOf("/");
  const first = slash >= 0 ? name.slice(0, slash) : "";
  // A canonical name always has a domain; anything whose first component
  // cannot be a domain is not canonical.
  if (slash < 0 || !DOMAIN_RE.test(first)) {
    throw new InvalidReferenceError(
      shownAs,
      `registry ${JSON.stringify(first)} is not a valid host name with optional :port`,
    );
  }
  return makeReference(first, name.slice(slash + 1), tag, digest);
}

function makeReference(
  domain: string,
  path: string,
  tag: string | undefined,
  digest: string | undefined,
): ImageReference {
  return { domain, path, name: `${domain}/${path}`, tag, digest };
}

/**
 * Splits a user-typed name into registry and remainder: the first component is
 * a registry only if it contains `.` or `:`, is `localhost`, or has uppercase
 * letters (which repository paths cannot have).
 */
export function splitDockerDomain(name: string): [string, string] {
  const i = name.indexOf("/");
  let domain: string;
  let remainder: string;
  const first = i >= 0 ? name.slice(0, i) : "";
  if (i === -1 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes("/")) {
    remainder = OFFICIAL_REPO_PREFIX + remainder;
  }
  return [domain, remainder];
}

/** The full form: `docker.io/library/busybox:latest`, `a/b:t@sha256:...`. */
export function formatReference(ref: ImageReference): string {
  let s = ref.name;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The repository name as Docker shows it: `busybox`, `alice/app`, `quay.io/a/b`. */
export function familiarName(ref: ImageReference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return ref.name;
  if (ref.path.startsWith(OFFICIAL_REPO_PREFIX)) {
    const rest = ref.path.slice(OFFICIAL_REPO_PREFIX.length);
    if (!rest.includes("/")) return rest;
  }
  return ref.path;
}

/** The whole reference as Docker shows it: `busybox:latest`, `quay.io/a/b@sha256:...`. */
export function familiarString(ref: ImageReference): string {
  let s = familiarName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Whether `tag` is a valid tag on its own (`[\w][\w.-]{0,127}`). */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** The same repository with another tag (and no digest). */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!isValidTag(tag)) throw new InvalidReferenceError(`${ref.name}:${tag}`, "invalid tag");
  return makeReference(ref.domain, ref.path, tag, undefined);
}
