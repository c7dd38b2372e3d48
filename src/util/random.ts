// Random bytes from the Web Crypto global (Node 20+ and Bun), not node:crypto: under Bun, importing
// node:crypto costs ~4 ms of start-up, which every engine command paid for ids and temporary names.

export function randomBytesArray(n: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** `n` random bytes as lowercase hex (2n characters). */
export function randomHex(n: number): string {
  return Buffer.from(randomBytesArray(n)).toString("hex");
}
