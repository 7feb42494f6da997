/**
 * Message ids: UUIDv7 (RFC 9562) — 48-bit Unix milliseconds, version 7, 74 random bits —
 * so ids sort by creation time and never repeat.
 *
 * @module
 */
import { toHex } from "../bytes.ts";

/** A new 16-byte UUIDv7. */
export function uuidv7(now = Date.now()): Uint8Array {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let t = now;
  for (let i = 5; i >= 0; i--) {
    b[i] = t % 256;
    t = Math.floor(t / 256);
  }
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  return b;
}

/** Canonical text form `xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx`. */
export function uuidToString(b: Uint8Array): string {
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
