/** Content digests as used by OCI: `<algorithm>:<encoded>`. node:crypto is loaded on first hash. */
import type { Hash } from "node:crypto";
import { crypto } from "../util/lazy-require.ts";
import { InvalidDigestError } from "./errors.ts";

export type DigestAlgorithm = "sha256" | "sha512";

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** `algorithm:hex` */
  digest: string;
}

/** Parses and validates `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase hex only). */
export function parseDigest(digest: string): ParsedDigest {
  const colon = digest.indexOf(":");
  if (colon <= 0) throw new InvalidDigestError(digest, "missing '<algorithm>:' prefix");
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm !== "sha256" && algorithm !== "sha512") {
    throw new InvalidDigestError(digest, `unsupported algorithm ${JSON.stringify(algorithm)}`);
  }
  const want = HEX_LENGTH[algorithm];
  if (hex.length !== want || !/^[0-9a-f]+$/.test(hex)) {
    throw new InvalidDigestError(
      digest,
      `${algorithm} digests have exactly ${want} lowercase hex characters`,
    );
  }
  return { algorithm, hex, digest };
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** An incremental hasher that also counts bytes. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hash: Hash;
  size = 0;
  constructor(algorithm: DigestAlgorithm = "sha256") {
    this.algorithm = algorithm;
    this.hash = crypto().createHash(algorithm);
  }
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }
  /** `algorithm:hex`; may be called once. */
  digest(): string {
    return `${this.algorithm}:${this.hash.digest("hex")}`;
  }
}

/**
 * The digest of a whole buffer, without node:crypto: under Bun, importing it costs ~4 ms of
 * start-up, and `pivot run` verifies its image's manifest and config on every start. Bun's own
 * hasher where there is one (synchronous), else the Web Crypto global (Node 20+). Streams still
 * use Digester.
 */
export async function digestOfBuffer(
  data: Uint8Array,
  algorithm: DigestAlgorithm = "sha256",
): Promise<string> {
  const bunHasher = (globalThis as { Bun?: { CryptoHasher: BunCryptoHasher } }).Bun?.CryptoHasher;
  if (bunHasher) return `${algorithm}:${new bunHasher(algorithm).update(data).digest("hex")}`;
  return webCryptoDigest(data, algorithm);
}

/** digestOfBuffer through Web Crypto (what Node uses; exported for its test under Bun). */
export async function webCryptoDigest(
  data: Uint8Array,
  algorithm: DigestAlgorithm = "sha256",
): Promise<string> {
  const name = algorithm === "sha256" ? "SHA-256" : "SHA-512";
  const hash = await globalThis.crypto.subtle.digest(name, data);
  return `${algorithm}:${Buffer.from(hash).toString("hex")}`;
}

/** The part of Bun's CryptoHasher used here (not imported: this module must load under Node). */
type BunCryptoHasher = new (
  algorithm: string,
) => { update(data: Uint8Array): { digest(encoding: "hex"): string } };

export function sha256Of(data: Uint8Array | string): string {
  return `sha256:${crypto().createHash("sha256").update(data).digest("hex")}`;
}
