/**
 * One HTTP(S) exchange over node:http/node:https (which Bun implements too;
 * unlike the global fetch they take per-request CAs and client certificates).
 * Response bodies stay streams; request bodies may be buffers or streams.
 */
import * as http from "node:http";
import * as https from "node:https";

export interface TlsSettings {
  ca?: string[] | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  rejectUnauthorized: boolean;
}

export type BodySource = Uint8Array | (() => AsyncIterable<Uint8Array>);

export interface SendOptions {
  method: string;
  headers: Record<string, string>;
  body?: BodySource | undefined;
  tls?: TlsSettings | undefined;
  agents?: Agents | undefined;
  /** Socket idle timeout (no bytes either way for this long). */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export function makeAgents(tls: TlsSettings | undefined): Agents {
  return {
    http: new http.Agent({ keepAlive: true, maxSockets: 32 }),
    https: new https.Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(tls?.ca ? { ca: tls.ca } : {}),
      ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}),
      rejectUnauthorized: tls?.rejectUnauthorized ?? true,
    }),
  };
}

export function destroyAgents(agents: Agents): void {
  agents.http.destroy();
  agents.https.destroy();
}

/** Sends a request; resolves with the response once its headers arrived. */
export function send(url: URL, options: SendOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === "https:";
    const mod = secure ? https : http;
    const headers: Record<string, string> = { ...options.headers };
    if (options.body instanceof Uint8Array) headers["content-length"] = String(options.body.length);
    const reqOptions: https.RequestOptions = {
      method: options.method,
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      headers,
    };
    if (options.agents) reqOptions.agent = secure ? options.agents.https : options.agents.http;
    if (secure && options.tls) {
      if (options.tls.ca) reqOptions.ca = options.tls.ca;
      if (options.tls.cert) {
        reqOptions.cert = options.tls.cert;
        reqOptions.key = options.tls.key;
      }
      reqOptions.rejectUnauthorized = options.tls.rejectUnauthorized;
    }
    let settled = false;
    const req = mod.request(reqOptions, (res) => {
      settled = true;
      options.signal?.removeEventListener("abort", onAbort);
      // The abort must still end a body being read.
      if (options.signal) {
        const onBodyAbort = () => res.destroy(abortError(options.signal!));
        options.signal.addEventListener("abort", onBodyAbort, { once: true });
        res.once("close", () => options.signal!.removeEventListener("abort", onBodyAbort));
      }
      resolve(res);
    });
    const onAbort = () => req.destroy(abortError(options.signal!));
    if (options.signal) {
      if (options.signal.aborted) {
        req.destroy(abortError(options.signal));
      } else {
        options.signal.addEventListener("abort", onAbort, { once: true });
      }
    }
    req.setTimeout(options.timeoutMs ?? 60_000, () => {
      const e = new Error(
        `no data for ${Math.round((options.timeoutMs ?? 60_000) / 1000)} s`,
      ) as NodeJS.ErrnoException;
      e.code = "ETIMEDOUT";
      req.destroy(e);
    });
    req.on("error", (e) => {
      options.signal?.removeEventListener("abort", onAbort);
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    const body = options.body;
    if (body === undefined) {
      req.end();
    } else if (body instanceof Uint8Array) {
      req.end(body);
    } else {
      (async () => {
        for await (const chunk of body()) {
          if (req.destroyed) return;
          if (!req.write(chunk)) {
            await new Promise<void>((r) => {
              const done = () => {
                req.off("drain", done);
                req.off("close", done);
                r();
              };
              req.on("drain", done);
              req.on("close", done);
            });
          }
        }
        req.end();
      })().catch((e: unknown) => req.destroy(e as Error));
    }
  });
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error("the operation was aborted") as NodeJS.ErrnoException;
  e.name = "AbortError";
  e.code = "ABORT_ERR";
  return e;
}

/** Reads a whole (small) body; `limit` bounds it, `onTooLarge` builds the error. */
export async function readBody(
  res: http.IncomingMessage,
  limit: number,
  onTooLarge: (size: number | undefined) => Error,
): Promise<Buffer> {
  const announced = res.headers["content-length"];
  if (announced !== undefined && Number(announced) > limit) {
    res.destroy();
    throw onTooLarge(Number(announced));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw onTooLarge(undefined);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Discards a body we do not need, so the connection can be reused. */
export function discard(res: http.IncomingMessage): void {
  res.resume();
  res.on("error", () => {});
}

/** Network errors worth another try (the next attempt may well succeed). */
export function isTransientNetworkError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err !== "object") return false;
  if (err.name === "AbortError" || err.code === "ABORT_ERR") return false;
  const code = err.code ?? "";
  if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ALTNAME|ERR_SSL|EPROTO/.test(code)) return false;
  if (
    [
      "ECONNRESET",
      "ECONNREFUSED",
      "ETIMEDOUT",
      "EPIPE",
      "ENETUNREACH",
      "EHOSTUNREACH",
      "EAI_AGAIN",
      "UND_ERR_SOCKET",
      "ERR_STREAM_PREMATURE_CLOSE",
      "ConnectionClosed",
      "ConnectionRefused",
    ].includes(code)
  ) {
    return true;
  }
  return /socket hang up|aborted|premature close|ECONNRESET|closed/i.test(err.message ?? "");
}

/** Seconds from a Retry-After header (delta-seconds or HTTP date). */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === "") return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

export function header(res: http.IncomingMessage, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
