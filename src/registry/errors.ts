/**
 * Errors of registry operations. Each names the registry, the repository or
 * reference, what the registry answered and what the user can do.
 */
import { ImageError } from "../image/errors.ts";

export class RegistryError extends ImageError {
  readonly registry: string;
  /** HTTP status, when the error is a response. */
  readonly status: number | undefined;
  constructor(
    registry: string,
    message: string,
    options: { hint?: string; cause?: unknown; status?: number } = {},
  ) {
    super(message, options);
    this.registry = registry;
    this.status = options.status;
  }
}

/** 401 or 403: says which credentials were tried. */
export class RegistryAuthError extends RegistryError {
  /** e.g. `user "alice" from /root/.docker/config.json`, or `anonymous access`. */
  readonly triedCredentials: string;
  constructor(
    registry: string,
    status: number,
    what: string,
    tried: string,
    detail: string | undefined,
    hint?: string,
  ) {
    const verb = status === 403 ? "denied" : "unauthorized";
    super(
      registry,
      `${what}: ${verb} by ${registry} (HTTP ${status}${detail ? `: ${detail}` : ""}); tried ${tried}`,
      {
        status,
        hint:
          hint ??
          (status === 403
            ? "the credentials are valid but lack access to this repository; check the repository name and your permissions"
            : `log in with \`pivot login ${registry}\`, or check the user name and password`),
      },
    );
    this.triedCredentials = tried;
  }
}

/** 404 of a manifest, tag, repository or blob. */
export class RegistryNotFoundError extends RegistryError {
  readonly reference: string;
  constructor(registry: string, reference: string, what: string, detail?: string) {
    super(
      registry,
      `${what} ${reference} not found in registry ${registry}${detail ? ` (${detail})` : ""}`,
      {
        status: 404,
        hint: "check the name and tag (or digest), and that the image was pushed to this registry",
      },
    );
    this.reference = reference;
  }
}

/** 429: the registry's rate limit, with the time it asked to wait. */
export class RateLimitError extends RegistryError {
  /** Seconds the registry asked to wait (Retry-After), if it said. */
  readonly retryAfter: number | undefined;
  constructor(registry: string, what: string, retryAfter: number | undefined, detail?: string) {
    super(
      registry,
      `${what}: rate limit of ${registry} reached (HTTP 429${detail ? `: ${detail}` : ""})${
        retryAfter !== undefined ? `; the registry asks to retry after ${retryAfter} s` : ""
      }`,
      {
        status: 429,
        hint:
          retryAfter !== undefined
            ? `wait ${retryAfter} s and try again, or log in to get a higher limit`
            : "wait and try again, or log in to get a higher limit",
      },
    );
    this.retryAfter = retryAfter;
  }
}

/** A manifest larger than the limit (a registry must not make us buffer gigabytes). */
export class ManifestTooLargeError extends RegistryError {
  constructor(registry: string, reference: string, size: number | undefined, limit: number) {
    super(
      registry,
      `manifest ${reference} from ${registry} is ${size === undefined ? "larger than" : `${size} bytes, over`} the limit of ${limit} bytes`,
      { hint: "this is not an image manifest, or the registry is misbehaving" },
    );
  }
}

/** A manifest, index or layer of a media type Pivot does not handle. */
export class UnsupportedMediaTypeError extends RegistryError {
  readonly mediaType: string;
  constructor(registry: string, what: string, mediaType: string, hint?: string) {
    super(
      registry,
      `${what} has media type ${JSON.stringify(mediaType)}, which Pivot does not support`,
      {
        hint:
          hint ??
          "Pivot pulls OCI and Docker schema 2 images (manifests and indexes); schema 1 images must be converted (e.g. re-pushed with a recent docker or skopeo)",
      },
    );
    this.mediaType = mediaType;
  }
}

/** A response body that ended before its announced length. */
export class TruncatedStreamError extends RegistryError {
  constructor(registry: string, what: string, got: number, expected: number, cause?: unknown) {
    super(registry, `${what}: the stream ended after ${got} of ${expected} bytes`, {
      hint: "the connection was cut; try again (Pivot resumes with Range requests and retries before giving up)",
      cause,
    });
  }
}

/** A connection-level failure: DNS, refused, TLS, reset. */
export class RegistryConnectionError extends RegistryError {
  readonly code: string | undefined;
  constructor(registry: string, url: string, cause: unknown, hint?: string) {
    const err = cause as NodeJS.ErrnoException;
    const message = err?.message ?? String(cause);
    super(registry, `cannot reach ${url}: ${message}`, {
      hint: hint ?? connectionHint(registry, err?.code),
      cause,
    });
    this.code = err?.code;
  }
}

function connectionHint(registry: string, code: string | undefined): string {
  if (code === undefined) return "check the registry address and your network";
  if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ALTNAME/.test(code)) {
    return `the registry's TLS certificate is not trusted: put its CA certificate in /etc/pivot/certs.d/${registry}/ca.crt (or /etc/containers/certs.d, /etc/docker/certs.d), or opt in to no verification for this registry with tlsVerify=false`;
  }
  if (code === "ECONNREFUSED") return `nothing listens at ${registry}; is the registry running?`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN")
    return `cannot resolve ${registry}; check the name`;
  if (code === "EPROTO" || code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return `${registry} does not speak TLS; if it is a plain HTTP registry, opt in with tlsVerify=false (or list it in insecureRegistries)`;
  }
  return "check the registry address and your network";
}
