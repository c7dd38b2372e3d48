/**
 * A client of one registry over the OCI distribution API (and Docker's
 * registry API v2, the same protocol): manifests, blobs, uploads, tags.
 *
 * It pings /v2/ first to learn the authentication the registry wants (and,
 * for registries explicitly allowed to be insecure, whether it speaks HTTPS
 * at all), then attaches a Bearer token per scope (fetched from the realm
 * the WWW-Authenticate challenge names, with the user's credentials if there
 * are any) or Basic credentials. Idempotent requests are retried with
 * exponential backoff on network errors, 5xx and 429 (waiting what
 * Retry-After says, up to a bound); blob downloads resume with Range
 * requests where they broke off.
 */
import type { IncomingMessage } from "node:http";
import { Digester, parseDigest } from "../image/digest.ts";
import { DigestMismatchError, ImageError } from "../image/errors.ts";
import type { Descriptor } from "../image/types.ts";
import {
  type Challenge,
  type CredentialOptions,
  type Credentials,
  describeCredentials,
  getCredentials,
  parseChallenges,
  repositoryScope,
} from "./auth.ts";
import {
  ManifestTooLargeError,
  RateLimitError,
  RegistryAuthError,
  RegistryConnectionError,
  RegistryError,
  RegistryNotFoundError,
  TruncatedStreamError,
  UnsupportedMediaTypeError,
} from "./errors.ts";
import { type RegistryEndpoint, type RegistryHostOptions, resolveEndpoint } from "./hosts.ts";
import {
  type Agents,
  type BodySource,
  destroyAgents,
  discard,
  header,
  isTransientNetworkError,
  makeAgents,
  parseRetryAfter,
  readBody,
  send,
  type TlsSettings,
} from "./http.ts";
import {
  MANIFEST_MEDIA_TYPES,
  MAX_MANIFEST_SIZE,
  type ManifestFormatError,
  type ParsedManifest,
  parseManifest,
} from "./manifest.ts";

export interface RetryOptions {
  /** Tries after the first one (default 4). */
  retries?: number;
  /** First backoff delay; doubled each time, with jitter (default 500 ms). */
  baseDelayMs?: number;
  /** Longest backoff delay (default 10 s). */
  maxDelayMs?: number;
  /** A 429 asking to wait longer than this fails at once, saying how long (default 30 s). */
  maxRetryAfterSeconds?: number;
}

export interface ClientOptions extends RegistryHostOptions, CredentialOptions {
  retry?: RetryOptions;
  /** Socket idle timeout (default 60 s). */
  timeoutMs?: number;
  userAgent?: string;
  signal?: AbortSignal;
}

export interface ManifestResponse {
  /** The bytes exactly as served (their digest is the manifest's digest). */
  data: Buffer;
  digest: string;
  mediaType: string;
  parsed: ParsedManifest;
}

interface RequestSpec {
  method: string;
  /** A path (/v2/...) or an absolute URL (upload locations, redirects). */
  url: string;
  scopes: string[];
  what: string;
  /** Shown in 404 errors: "manifest", "blob", "repository". */
  kind?: string;
  /** Shown in 404 errors. */
  reference?: string;
  headers?: Record<string, string>;
  body?: BodySource;
  /** Retry on network errors, 5xx, 429 (only for requests safe to repeat). */
  idempotent?: boolean;
  followRedirects?: boolean;
  /** Statuses handed back to the caller instead of raising an error. */
  accept: number[];
}

const USER_AGENT = "pivot/0.1 (+https://github.com/pivot)";
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

export class RegistryClient {
  readonly registry: string;
  private readonly options: ClientOptions;
  private endpoint: RegistryEndpoint | undefined;
  private agents: Agents | undefined;
  private scheme: "https" | "http" = "https";
  private pinged: Promise<void> | undefined;
  /** The challenge /v2/ answered with; null when it needs no authentication. */
  private challenge: Challenge | null = null;
  private creds: Promise<Credentials | undefined> | undefined;
  private readonly credsTried: string[] = [];
  private readonly tokens = new Map<string, { token: string; expires: number }>();

  constructor(registry: string, options: ClientOptions = {}) {
    this.registry = registry;
    this.options = options;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    if (this.agents) destroyAgents(this.agents);
    this.agents = undefined;
  }

  private get retry(): Required<RetryOptions> {
    return {
      retries: this.options.retry?.retries ?? 4,
      baseDelayMs: this.options.retry?.baseDelayMs ?? 500,
      maxDelayMs: this.options.retry?.maxDelayMs ?? 10_000,
      maxRetryAfterSeconds: this.options.retry?.maxRetryAfterSeconds ?? 30,
    };
  }

  private tls(): TlsSettings {
    const ep = this.endpoint!;
    return { ca: ep.ca, cert: ep.cert, key: ep.key, rejectUnauthorized: !ep.insecure };
  }

  /** The base URL of the API: https://host[:port] (http only when allowed and needed). */
  async baseUrl(): Promise<string> {
    await this.ping();
    return `${this.scheme}://${this.endpoint!.apiHost}`;
  }

  /** GET /v2/: learns the scheme (for insecure registries) and the auth challenge. */
  ping(): Promise<void> {
    this.pinged ??= this.doPing().catch((e: unknown) => {
      this.pinged = undefined;
      throw e;
    });
    return this.pinged;
  }

  private async doPing(): Promise<void> {
    this.endpoint = await resolveEndpoint(this.registry, this.options);
    this.agents = makeAgents(this.tls());
    const attempt = async (scheme: "https" | "http") => {
      const url = new URL(`${scheme}://${this.endpoint!.apiHost}/v2/`);
      return this.withRetries(`connecting to ${this.registry}`, true, async () => {
        const res = await send(url, this.sendOptions("GET", {}));
        return res;
      });
    };
    let res: IncomingMessage;
    try {
      res = await attempt("https");
    } catch (e) {
      // Plain HTTP only for registries the user named insecure, never silently.
      if (!this.endpoint.insecure || !looksLikePlainHttp(e)) throw this.connectionError(e, "https");
      this.scheme = "http";
      try {
        res = await attempt("http");
      } catch (e2) {
        throw this.connectionError(e2, "http");
      }
    }
    discard(res);
    if (res.statusCode === 401) {
      const challenges = parseChallenges(header(res, "www-authenticate") ?? "");
      this.challenge =
        challenges.find((c) => c.scheme === "bearer") ??
        challenges.find((c) => c.scheme === "basic") ??
        null;
      if (this.challenge === null) {
        throw new RegistryError(
          this.registry,
          `${this.registry} requires authentication of a kind Pivot does not speak (${header(res, "www-authenticate") ?? "no WWW-Authenticate header"})`,
          { status: 401, hint: "Pivot supports Bearer token and Basic authentication" },
        );
      }
    } else if (res.statusCode !== 200 && res.statusCode !== 404) {
      // 404: a proxy or server without /v2/; carry on and let the real requests tell.
      if (res.statusCode === 429)
        throw new RateLimitError(
          this.registry,
          `GET /v2/`,
          parseRetryAfter(res.headers["retry-after"]),
        );
      throw new RegistryError(
        this.registry,
        `${this.registry} answered GET /v2/ with HTTP ${res.statusCode}; is it a registry (OCI distribution API)?`,
        { status: res.statusCode ?? 0 },
      );
    }
  }

  private connectionError(e: unknown, scheme: string): Error {
    if (e instanceof ImageError) return e;
    return new RegistryConnectionError(
      this.registry,
      `${scheme}://${this.endpoint?.apiHost ?? this.registry}/v2/`,
      e,
    );
  }

  private sendOptions(method: string, headers: Record<string, string>, body?: BodySource) {
    return {
      method,
      headers: { "user-agent": this.options.userAgent ?? USER_AGENT, ...headers },
      body,
      tls: this.tls(),
      agents: this.agents,
      timeoutMs: this.options.timeoutMs,
      signal: this.options.signal,
    };
  }

  /** Runs `fn` again after transient network errors, with backoff. */
  private async withRetries<T>(
    what: string,
    idempotent: boolean,
    fn: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!idempotent || attempt >= this.retry.retries || !isTransientNetworkError(e)) throw e;
        await this.sleep(this.backoff(attempt));
        void what;
      }
    }
  }

  private backoff(attempt: number): number {
    const d = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** attempt);
    return d / 2 + Math.random() * (d / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const signal = this.options.signal;
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  // ---- authentication ----

  private credentials(): Promise<Credentials | undefined> {
    this.creds ??= getCredentials(this.registry, this.options, this.credsTried);
    return this.creds;
  }

  private async triedDescription(): Promise<string> {
    return describeCredentials(await this.credentials(), this.credsTried);
  }

  private async authorization(scopes: string[], fresh = false): Promise<string | undefined> {
    const ch = this.challenge;
    if (ch === null) return undefined;
    const creds = await this.credentials();
    if (ch.scheme === "basic") {
      if (!creds || creds.identityToken) return undefined;
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
    }
    const key = [...new Set(scopes)].sort().join(" ");
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expires > Date.now()) return `Bearer ${cached.token}`;
    const { token, expiresIn } = await this.fetchToken(ch, scopes, creds);
    this.tokens.set(key, { token, expires: Date.now() + Math.max(0, expiresIn - 10) * 1000 });
    return `Bearer ${token}`;
  }

  private async fetchToken(
    ch: Challenge,
    scopes: string[],
    creds: Credentials | undefined,
  ): Promise<{ token: string; expiresIn: number }> {
    const realm = ch.params.realm;
    if (!realm) {
      throw new RegistryError(this.registry, `${this.registry}'s Bearer challenge names no realm`, {
        hint: "the registry is misconfigured",
      });
    }
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError(
        this.registry,
        `${this.registry}'s token realm ${JSON.stringify(realm)} is not a URL`,
      );
    }
    if (url.protocol === "http:" && !this.endpoint!.insecure && creds) {
      throw new RegistryError(
        this.registry,
        `${this.registry} sends credentials to a plain-HTTP token realm ${realm}; refused`,
        {
          hint: "opt in with tlsVerify=false (or list the registry in insecureRegistries) if you trust this network",
        },
      );
    }
    const service = ch.params.service;
    const what = `token for ${scopes.join(" ") || "the registry"} from ${url.origin}${url.pathname}`;
    let res: IncomingMessage;
    if (creds?.identityToken) {
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: creds.identityToken,
        client_id: "pivot",
        ...(service ? { service } : {}),
        ...(scopes.length ? { scope: scopes.join(" ") } : {}),
      });
      const body = Buffer.from(form.toString());
      res = await this.withRetries(what, true, () =>
        send(
          url,
          this.sendOptions("POST", { "content-type": "application/x-www-form-urlencoded" }, body),
        ),
      ).catch((e: unknown) => {
        throw new RegistryConnectionError(this.registry, url.href, e);
      });
    } else {
      if (service) url.searchParams.set("service", service);
      for (const s of scopes) url.searchParams.append("scope", s);
      const headers: Record<string, string> = {};
      if (creds) {
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
      }
      res = await this.withRetries(what, true, () =>
        send(url, this.sendOptions("GET", headers)),
      ).catch((e: unknown) => {
        throw new RegistryConnectionError(this.registry, url.href, e);
      });
    }
    if (res.statusCode !== 200) {
      const detail = await errorDetail(res);
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new RegistryAuthError(
          this.registry,
          res.statusCode,
          what,
          await this.triedDescription(),
          detail,
        );
      }
      if (res.statusCode === 429) {
        throw new RateLimitError(
          this.registry,
          what,
          parseRetryAfter(res.headers["retry-after"]),
          detail,
        );
      }
      throw new RegistryError(
        this.registry,
        `${what}: HTTP ${res.statusCode}${detail ? `: ${detail}` : ""}`,
        {
          status: res.statusCode ?? 0,
        },
      );
    }
    const body = await readBody(
      res,
      1 << 20,
      () => new RegistryError(this.registry, `${what}: response too large`),
    );
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw new RegistryError(this.registry, `${what}: the token server sent no JSON`);
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token) throw new RegistryError(this.registry, `${what}: the token server sent no token`);
    return { token, expiresIn: typeof parsed.expires_in === "number" ? parsed.expires_in : 60 };
  }

  // ---- the request loop ----

  private async request(input: RequestSpec): Promise<IncomingMessage> {
    const spec = { ...input, scopes: [...input.scopes] };
    await this.ping();
    const base = `${this.scheme}://${this.endpoint!.apiHost}`;
    let url = new URL(spec.url, base);
    // Credentials go to the registry's own origin only: an absolute URL it hands out (an upload
    // Location, a Link to the next tags page) may name another host, or plain HTTP.
    const origin = new URL(base).origin;
    let method = spec.method;
    let body = spec.body;
    let redirects = 0;
    let reauthed = false;
    let fresh = false;
    let attempt = 0;
    for (;;) {
      const headers: Record<string, string> = { ...spec.headers };
      if (url.origin === origin) {
        const auth = await this.authorization(spec.scopes, fresh);
        fresh = false;
        if (auth) headers.authorization = auth;
      }
      let res: IncomingMessage;
      try {
        res = await send(url, this.sendOptions(method, headers, body));
      } catch (e) {
        if (spec.idempotent && attempt < this.retry.retries && isTransientNetworkError(e)) {
          await this.sleep(this.backoff(attempt++));
          continue;
        }
        if (e instanceof ImageError) throw e;
        throw new RegistryConnectionError(this.registry, `${method} ${url.href}`, e);
      }
      const status = res.statusCode ?? 0;
      if (spec.accept.includes(status)) return res;
      if (status === 401 && !reauthed && url.origin === origin) {
        // The token lacked a scope, expired, or the registry wants fresh credentials.
        const challenges = parseChallenges(header(res, "www-authenticate") ?? "");
        const ch =
          challenges.find((c) => c.scheme === "bearer") ??
          challenges.find((c) => c.scheme === "basic");
        discard(res);
        if (ch) {
          this.challenge = ch;
          reauthed = true;
          fresh = true;
          if (ch.scheme === "bearer" && ch.params.scope) {
            for (const s of ch.params.scope.split(" "))
              if (!spec.scopes.includes(s)) spec.scopes.push(s);
          }
          continue;
        }
      }
      if (spec.followRedirects && REDIRECTS.has(status)) {
        const location = header(res, "location");
        discard(res);
        if (!location || ++redirects > 5) {
          throw new RegistryError(
            this.registry,
            `${spec.what}: too many redirects or a redirect without Location`,
          );
        }
        url = new URL(location, url);
        if (url.protocol === "http:" && !this.endpoint!.insecure) {
          throw new RegistryError(
            this.registry,
            `${spec.what}: redirected to plain HTTP ${url.origin}; refused`,
            {
              hint: "opt in with tlsVerify=false if you trust this network",
            },
          );
        }
        if (status === 303) {
          method = "GET";
          body = undefined;
        }
        continue;
      }
      if (RETRY_STATUS.has(status) && spec.idempotent && attempt < this.retry.retries) {
        const after = parseRetryAfter(res.headers["retry-after"]);
        if (status !== 429 || after === undefined || after <= this.retry.maxRetryAfterSeconds) {
          discard(res);
          await this.sleep(after !== undefined ? after * 1000 : this.backoff(attempt));
          attempt++;
          continue;
        }
      }
      throw await this.statusError(res, spec);
    }
  }

  private async statusError(res: IncomingMessage, spec: RequestSpec): Promise<Error> {
    const status = res.statusCode ?? 0;
    const detail = await errorDetail(res);
    const what = spec.what;
    switch (status) {
      case 401:
      case 403:
        return new RegistryAuthError(
          this.registry,
          status,
          what,
          await this.triedDescription(),
          detail,
        );
      case 404:
        return new RegistryNotFoundError(
          this.registry,
          spec.reference ?? spec.url,
          spec.kind ?? "resource",
          detail,
        );
      case 429:
        return new RateLimitError(
          this.registry,
          what,
          parseRetryAfter(res.headers["retry-after"]),
          detail,
        );
      default:
        return new RegistryError(
          this.registry,
          `${what}: ${this.registry} answered HTTP ${status}${detail ? `: ${detail}` : ""}`,
          { status },
        );
    }
  }

  // ---- manifests ----

  /** A manifest as messages name it: registry/repository:tag or registry/repository@digest. */
  private manifestRef(repository: string, reference: string): string {
    return `${this.registry}/${repository}${reference.includes(":") ? "@" : ":"}${reference}`;
  }

  /** GET or HEAD a manifest by tag or digest (retried, redirects followed). */
  private requestManifest(
    method: "GET" | "HEAD",
    repository: string,
    reference: string,
    mediaTypes: readonly string[],
    statuses: number[],
  ): Promise<IncomingMessage> {
    const refText = this.manifestRef(repository, reference);
    return this.request({
      method,
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [repositoryScope(repository, ["pull"])],
      what: `manifest ${refText}`,
      kind: "manifest",
      reference: refText,
      headers: { accept: mediaTypes.join(", ") },
      idempotent: true,
      followRedirects: true,
      accept: statuses,
    });
  }

  /** GET a manifest or index by tag or digest; verifies its digest and size limit. */
  async getManifest(
    repository: string,
    reference: string,
    options: { maxSize?: number; accept?: readonly string[] } = {},
  ): Promise<ManifestResponse> {
    const limit = options.maxSize ?? MAX_MANIFEST_SIZE;
    const refText = this.manifestRef(repository, reference);
    const res = await this.requestManifest(
      "GET",
      repository,
      reference,
      options.accept ?? MANIFEST_MEDIA_TYPES,
      [200],
    );
    const data = await readBody(
      res,
      limit,
      (size) => new ManifestTooLargeError(this.registry, refText, size, limit),
    );
    const byDigest = reference.includes(":");
    const algorithm = byDigest ? parseDigest(reference).algorithm : "sha256";
    const d = new Digester(algorithm);
    d.update(data);
    const digest = d.digest();
    if (byDigest && digest !== reference) {
      throw new DigestMismatchError(`manifest ${refText} from ${this.registry}`, reference, digest);
    }
    const announced = header(res, "docker-content-digest");
    if (!byDigest && announced && announced.startsWith("sha256:") && announced !== digest) {
      throw new DigestMismatchError(
        `manifest ${refText} from ${this.registry} (Docker-Content-Digest header)`,
        announced,
        digest,
      );
    }
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(data, header(res, "content-type"));
    } catch (e) {
      const err = e as ManifestFormatError;
      if (err.mediaType !== undefined && !MANIFEST_MEDIA_TYPES.includes(err.mediaType)) {
        throw new UnsupportedMediaTypeError(this.registry, `manifest ${refText}`, err.mediaType);
      }
      throw new RegistryError(this.registry, `manifest ${refText}: ${err.message}`, {
        hint: "the registry sent something that is not a valid image manifest or index",
      });
    }
    return { data, digest, mediaType: parsed.mediaType, parsed };
  }

  /** HEAD a manifest: its digest, media type and size, or undefined if there is none. */
  async headManifest(
    repository: string,
    reference: string,
  ): Promise<
    | { digest: string | undefined; mediaType: string | undefined; size: number | undefined }
    | undefined
  > {
    const res = await this.requestManifest(
      "HEAD",
      repository,
      reference,
      MANIFEST_MEDIA_TYPES,
      [200, 404],
    );
    discard(res);
    if (res.statusCode === 404) return undefined;
    const len = header(res, "content-length");
    return {
      digest: header(res, "docker-content-digest"),
      mediaType: header(res, "content-type")?.split(";")[0],
      size: len === undefined ? undefined : Number(len),
    };
  }

  /** PUT a manifest under a tag or its digest; returns the digest the registry computed. */
  async putManifest(
    repository: string,
    reference: string,
    data: Uint8Array,
    mediaType: string,
  ): Promise<string> {
    const refText = this.manifestRef(repository, reference);
    const res = await this.request({
      method: "PUT",
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [repositoryScope(repository, ["pull", "push"])],
      what: `pushing manifest ${refText}`,
      kind: "repository",
      reference: refText,
      headers: { "content-type": mediaType },
      body: data,
      idempotent: true,
      accept: [200, 201, 202],
    });
    discard(res);
    const d = new Digester();
    d.update(data);
    const digest = d.digest();
    const said = header(res, "docker-content-digest");
    if (said && said !== digest) {
      throw new DigestMismatchError(
        `manifest ${refText} as stored by ${this.registry}`,
        digest,
        said,
      );
    }
    return digest;
  }

  async listTags(repository: string): Promise<string[]> {
    const tags: string[] = [];
    let url: string | undefined = `/v2/${repository}/tags/list`;
    while (url) {
      const res = await this.request({
        method: "GET",
        url,
        scopes: [repositoryScope(repository, ["pull"])],
        what: `repository ${this.registry}/${repository}`,
        kind: "repository",
        reference: `${this.registry}/${repository}`,
        idempotent: true,
        accept: [200],
      });
      const link = header(res, "link");
      const body = await readBody(
        res,
        16 << 20,
        () => new RegistryError(this.registry, "tag list too large"),
      );
      const parsed = JSON.parse(body.toString("utf8")) as { tags?: string[] | null };
      tags.push(...(parsed.tags ?? []));
      const next = link ? /<([^>]+)>;\s*rel="?next"?/.exec(link)?.[1] : undefined;
      url = next;
    }
    return tags;
  }

  // ---- blobs ----

  /** GET a small blob (an image config) whole, verified against its descriptor. */
  async getBlob(repository: string, desc: Descriptor, limit: number): Promise<Buffer> {
    if (desc.size > limit) {
      throw new RegistryError(
        this.registry,
        `blob ${desc.digest} is ${desc.size} bytes, over the limit of ${limit}`,
      );
    }
    const chunks: Buffer[] = [];
    for await (const c of this.blobStream(repository, desc)) chunks.push(Buffer.from(c));
    const data = Buffer.concat(chunks);
    const d = new Digester(parseDigest(desc.digest).algorithm);
    d.update(data);
    const actual = d.digest();
    if (actual !== desc.digest) {
      throw new DigestMismatchError(
        `blob ${repository}@${desc.digest} from ${this.registry}`,
        desc.digest,
        actual,
      );
    }
    return data;
  }

  /**
   * A blob's bytes as they arrive, `desc.size` of them exactly: a broken
   * connection or a body that ends early is resumed with a Range request
   * (or, if the server ignores Range, re-read with the part already seen
   * skipped), with backoff, up to the retry limit. The digest is for the
   * consumer to check (the store does while writing).
   */
  async *blobStream(
    repository: string,
    desc: Descriptor,
    onBytes?: (total: number) => void,
  ): AsyncGenerator<Uint8Array> {
    const what = `blob ${repository}@${desc.digest}`;
    let offset = 0;
    let failures = 0;
    let lastError: unknown;
    for (;;) {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await this.request({
        method: "GET",
        url: `/v2/${repository}/blobs/${desc.digest}`,
        scopes: [repositoryScope(repository, ["pull"])],
        what,
        kind: "blob",
        reference: `${this.registry}/${repository}@${desc.digest}`,
        headers,
        idempotent: true,
        followRedirects: true,
        accept: [200, 206],
      });
      let skip = 0;
      if (offset > 0) {
        if (res.statusCode === 206) {
          const start = /bytes (\d+)-/.exec(header(res, "content-range") ?? "")?.[1];
          if (start === undefined || Number(start) !== offset) {
            discard(res);
            throw new RegistryError(
              this.registry,
              `${what}: asked for bytes from ${offset}, got ${header(res, "content-range") ?? "no Content-Range"}`,
            );
          }
        } else {
          skip = offset; // the server ignores Range: read again from the start
        }
      }
      try {
        for await (const raw of res as AsyncIterable<Buffer>) {
          let chunk: Uint8Array = raw;
          if (skip > 0) {
            if (chunk.length <= skip) {
              skip -= chunk.length;
              continue;
            }
            chunk = chunk.subarray(skip);
            skip = 0;
          }
          if (offset + chunk.length > desc.size) {
            throw new DigestMismatchError(
              what,
              `${desc.size} bytes`,
              `more than ${desc.size} bytes`,
            );
          }
          offset += chunk.length;
          onBytes?.(offset);
          if (chunk.length > 0) yield chunk;
        }
      } catch (e) {
        if (e instanceof ImageError || !isTransientNetworkError(e)) {
          res.destroy();
          throw e instanceof ImageError ? e : new RegistryConnectionError(this.registry, what, e);
        }
        lastError = e;
      } finally {
        if (!res.complete) res.destroy();
      }
      if (offset === desc.size) return;
      if (failures >= this.retry.retries) {
        throw new TruncatedStreamError(this.registry, what, offset, desc.size, lastError);
      }
      await this.sleep(this.backoff(failures++));
    }
  }

  /** HEAD a blob: its size if the repository has it, else undefined. */
  async blobExists(
    repository: string,
    digest: string,
    scopes?: string[],
  ): Promise<number | undefined> {
    const res = await this.request({
      method: "HEAD",
      url: `/v2/${repository}/blobs/${digest}`,
      scopes: scopes ?? [repositoryScope(repository, ["pull"])],
      what: `blob ${repository}@${digest}`,
      idempotent: true,
      followRedirects: true,
      accept: [200, 404],
    });
    discard(res);
    if (res.statusCode === 404) return undefined;
    const len = header(res, "content-length");
    return len === undefined ? 0 : Number(len);
  }

  /**
   * Starts an upload, or mounts the blob from another repository of this
   * registry (no bytes sent). Returns the upload location, or "mounted".
   */
  async startUpload(
    repository: string,
    mount?: { digest: string; from: string },
  ): Promise<string | "mounted"> {
    const scopes = [repositoryScope(repository, ["pull", "push"])];
    let url = `/v2/${repository}/blobs/uploads/`;
    if (mount) {
      scopes.push(repositoryScope(mount.from, ["pull"]));
      url += `?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}`;
    }
    const res = await this.request({
      method: "POST",
      url,
      scopes,
      what: `starting an upload to ${this.registry}/${repository}`,
      kind: "repository",
      reference: `${this.registry}/${repository}`,
      headers: { "content-length": "0" },
      idempotent: true,
      accept: [201, 202],
    });
    discard(res);
    if (res.statusCode === 201 && mount) return "mounted";
    const location = header(res, "location");
    if (!location) {
      throw new RegistryError(
        this.registry,
        `starting an upload to ${repository}: no Location in the answer`,
      );
    }
    return new URL(location, await this.baseUrl()).href;
  }

  /** Uploads a whole blob with one PUT (the monolithic upload). */
  async putBlobMonolithic(
    repository: string,
    location: string,
    desc: { digest: string; size: number },
    body: () => AsyncIterable<Uint8Array>,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set("digest", desc.digest);
    const res = await this.request({
      method: "PUT",
      url: url.href,
      scopes: [repositoryScope(repository, ["pull", "push"])],
      what: `uploading blob ${desc.digest} to ${this.registry}/${repository}`,
      headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
      body,
      accept: [201, 204],
    });
    discard(res);
    this.checkUploaded(res, desc.digest, repository);
  }

  /** Uploads a blob in PATCH chunks of `chunkSize` bytes, then closes it with PUT. */
  async putBlobChunked(
    repository: string,
    location: string,
    desc: { digest: string; size: number },
    read: (start: number, end: number) => AsyncIterable<Uint8Array>,
    chunkSize: number,
  ): Promise<void> {
    let loc = location;
    const scopes = [repositoryScope(repository, ["pull", "push"])];
    const what = `uploading blob ${desc.digest} to ${this.registry}/${repository}`;
    for (let start = 0; start < desc.size; start += chunkSize) {
      const end = Math.min(desc.size, start + chunkSize);
      const res = await this.request({
        method: "PATCH",
        url: loc,
        scopes,
        what: `${what} (bytes ${start}-${end - 1})`,
        headers: {
          "content-type": "application/octet-stream",
          "content-length": String(end - start),
          "content-range": `${start}-${end - 1}`,
        },
        body: () => read(start, end),
        accept: [202, 204],
      });
      discard(res);
      const range = header(res, "range");
      const got = range ? /^(?:bytes=)?0-(\d+)$/.exec(range)?.[1] : undefined;
      if (range && got !== undefined && Number(got) !== end - 1) {
        throw new RegistryError(
          this.registry,
          `${what}: the registry has bytes 0-${got}, expected 0-${end - 1}`,
        );
      }
      const next = header(res, "location");
      if (next) loc = new URL(next, await this.baseUrl()).href;
    }
    const url = new URL(loc);
    url.searchParams.set("digest", desc.digest);
    const res = await this.request({
      method: "PUT",
      url: url.href,
      scopes,
      what,
      headers: { "content-length": "0" },
      accept: [201, 204],
    });
    discard(res);
    this.checkUploaded(res, desc.digest, repository);
  }

  private checkUploaded(res: IncomingMessage, digest: string, repository: string): void {
    const said = header(res, "docker-content-digest");
    if (said && said !== digest) {
      throw new DigestMismatchError(
        `blob uploaded to ${this.registry}/${repository}`,
        digest,
        said,
      );
    }
  }

  /** Cancels an upload (best effort). */
  async cancelUpload(repository: string, location: string): Promise<void> {
    try {
      const res = await this.request({
        method: "DELETE",
        url: location,
        scopes: [repositoryScope(repository, ["pull", "push"])],
        what: "cancelling an upload",
        accept: [200, 204, 404, 405],
      });
      discard(res);
    } catch {}
  }

  /** Checks that the credentials work (for login): GET /v2/ with authentication. */
  async checkLogin(): Promise<void> {
    await this.ping();
    if (this.challenge === null) return;
    const res = await this.request({
      method: "GET",
      url: "/v2/",
      scopes: [],
      what: `logging in to ${this.registry}`,
      idempotent: true,
      accept: [200],
    });
    discard(res);
  }
}

/** The text of a registry's error body: `MANIFEST_UNKNOWN: manifest unknown` etc. */
async function errorDetail(res: IncomingMessage): Promise<string | undefined> {
  let body: Buffer;
  try {
    body = await readBody(res, 64 << 10, () => new Error("too large"));
  } catch {
    return undefined;
  }
  const text = body.toString("utf8").trim();
  if (text === "") return undefined;
  try {
    const parsed = JSON.parse(text) as {
      errors?: { code?: string; message?: string; detail?: unknown }[];
      details?: string;
    };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return parsed.errors.map((e) => [e.code, e.message].filter((x) => x).join(": ")).join("; ");
    }
    if (typeof parsed.details === "string") return parsed.details;
  } catch {}
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function looksLikePlainHttp(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? "";
  return (
    code === "EPROTO" ||
    code === "ECONNRESET" ||
    /SSL|WRONG_VERSION|TLS/.test(code) ||
    /wrong version number|ssl|tls|handshake|socket hang up|packet length/i.test(err?.message ?? "")
  );
}
