/**
 * Ed25519 identity keys, fingerprints and safety numbers.
 *
 * Signing and verification run on the synchronous native `node:crypto` Ed25519 (tens of
 * thousands of operations per second, far ahead of pure-JavaScript Ed25519). Private keys are
 * 32-byte RFC 8032 seeds; public keys are the raw 32-byte encodings.
 *
 * Fingerprints and safety numbers are decimal, in groups of five digits, in the style of
 * Signal safety numbers:
 *
 * ```
 * fingerprint(pub)  = digits60(SHA-512("qpq identity fingerprint v1" ‖ 0x00 ‖ pub))
 * half(pub, name)   = digits30(SHA-512("qpq safety number v1" ‖ 0x00 ‖ u16(len name) ‖ name ‖ pub))
 * safetyNumber(...) = the two halves sorted, then concatenated (so it is symmetric)
 * digitsN(h)        = for each 5-byte big-endian chunk c of h: (c mod 100000) as 5 digits
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, type KeyObject, randomFillSync, sign, verify } from "node:crypto";
import { constantTimeEqual, toHex, utf8, zeroize } from "../bytes.ts";
import { CryptoError } from "../errors.ts";
import { ed25519PrivateKey, ed25519PublicKey, exportRawPublic } from "./_node.ts";

/** Ed25519 private key (seed) length in bytes. */
export const ED25519_SEED_BYTES = 32;
/** Ed25519 public key length in bytes. */
export const ED25519_PUBLIC_KEY_BYTES = 32;
/** Ed25519 signature length in bytes. */
export const ED25519_SIGNATURE_BYTES = 64;

const FINGERPRINT_LABEL = utf8("qpq identity fingerprint v1\0");
const SAFETY_NUMBER_LABEL = utf8("qpq safety number v1\0");
const REDACTED = "[redacted]";
/** Most imported public keys kept for {@link verifySignature}; a re-import costs ~10 µs. */
const PUBLIC_KEY_CACHE_SIZE = 256;
const publicKeyCache = new Map<string, KeyObject>();

function importPublicCached(pub: Uint8Array): KeyObject {
  const id = toHex(pub);
  const hit = publicKeyCache.get(id);
  if (hit !== undefined) return hit;
  const key = ed25519PublicKey(pub);
  if (publicKeyCache.size >= PUBLIC_KEY_CACHE_SIZE) {
    const oldest = publicKeyCache.keys().next();
    if (oldest.done !== true) publicKeyCache.delete(oldest.value);
  }
  publicKeyCache.set(id, key);
  return key;
}

/**
 * An Ed25519 identity key pair. Holds the private key; it never appears in
 * `Deno.inspect`, `console.log` or `JSON.stringify` output.
 */
export class IdentityKeyPair {
  #seed: Uint8Array;
  #key: KeyObject;
  #publicKey: Uint8Array;

  private constructor(seed: Uint8Array, key: KeyObject, publicKey: Uint8Array) {
    this.#seed = seed;
    this.#key = key;
    this.#publicKey = publicKey;
  }

  /** Generate a fresh key pair from the platform CSPRNG. */
  static generate(): IdentityKeyPair {
    const seed = new Uint8Array(ED25519_SEED_BYTES);
    randomFillSync(seed);
    return IdentityKeyPair.fromBytes(seed);
  }

  /**
   * Rebuild a key pair from its 32-byte private seed. The seed is copied.
   *
   * @param publicKey when given, must match the seed (checked in constant time)
   * @throws {CryptoError} on a wrong length or a public key that does not match
   */
  static fromBytes(privateKey: Uint8Array, publicKey?: Uint8Array): IdentityKeyPair {
    if (!(privateKey instanceof Uint8Array) || privateKey.length !== ED25519_SEED_BYTES) {
      throw new CryptoError("Invalid identity private key length");
    }
    const seed = privateKey.slice();
    let key: KeyObject;
    try {
      key = ed25519PrivateKey(seed);
    } catch (e) {
      zeroize(seed);
      throw new CryptoError("Invalid identity private key", { cause: e });
    }
    const pub = exportRawPublic(key);
    if (publicKey !== undefined && !constantTimeEqual(pub, publicKey)) {
      zeroize(seed);
      throw new CryptoError("Identity public key does not match the private key");
    }
    return new IdentityKeyPair(seed, key, pub);
  }

  /** A copy of the 32-byte public key. */
  get publicKey(): Uint8Array {
    return this.#publicKey.slice();
  }

  /** A copy of the 32-byte private seed. Store it encrypted; zero the copy when done. */
  exportPrivateKey(): Uint8Array {
    return this.#seed.slice();
  }

  /** Sign `message`; returns the 64-byte Ed25519 signature. */
  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, message, this.#key));
  }

  /** Zero the private seed held by this object. The object must not be used afterwards. */
  destroy(): void {
    zeroize(this.#seed);
  }

  /** JSON form: the public key in hex and a redacted private key. */
  toJSON(): { type: string; publicKey: string; privateKey: string } {
    return { type: "IdentityKeyPair", publicKey: toHex(this.#publicKey), privateKey: REDACTED };
  }

  /** Deno.inspect / console.log form, without the private key. */
  [Symbol.for("Deno.customInspect")](): string {
    return this.#describe();
  }

  /** node:util inspect form, without the private key. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.#describe();
  }

  #describe(): string {
    return `IdentityKeyPair { publicKey: ${toHex(this.#publicKey)}, privateKey: ${REDACTED} }`;
  }
}

/**
 * Verify an Ed25519 signature (RFC 8032, with canonical S and strict point decoding as the
 * Wycheproof vectors require). Never throws: any malformed input yields `false`.
 */
export function verifySignature(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (
    !(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_BYTES ||
    !(message instanceof Uint8Array) ||
    !(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES
  ) {
    return false;
  }
  try {
    return verify(null, message, importPublicCached(publicKey), signature);
  } catch {
    return false;
  }
}

function digits(h: Uint8Array, groups: number): string[] {
  const out: string[] = [];
  for (let g = 0; g < groups; g++) {
    let v = 0;
    for (let i = 0; i < 5; i++) v = v * 256 + h[g * 5 + i]!;
    out.push(String(v % 100000).padStart(5, "0"));
  }
  return out;
}

function checkPublicKey(pub: Uint8Array): void {
  if (!(pub instanceof Uint8Array) || pub.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new CryptoError("Invalid identity public key length");
  }
}

/**
 * A human-checkable fingerprint of one identity key: 60 decimal digits in 12 groups of 5,
 * separated by spaces, e.g. `"05321 77650 … 10293"`.
 *
 * @throws {CryptoError} when `publicKey` is not 32 bytes
 */
export function fingerprint(publicKey: Uint8Array): string {
  checkPublicKey(publicKey);
  const h = createHash("sha512").update(FINGERPRINT_LABEL).update(publicKey).digest();
  return digits(h, 12).join(" ");
}

function safetyHalf(publicKey: Uint8Array, name: string): string[] {
  checkPublicKey(publicKey);
  const n = utf8(name.normalize("NFC"));
  if (n.length > 0xffff) throw new CryptoError("Identity name too long");
  const len = Buffer.alloc(2);
  len.writeUInt16BE(n.length);
  const h = createHash("sha512").update(SAFETY_NUMBER_LABEL).update(len).update(n).update(
    publicKey,
  ).digest();
  return digits(h, 6);
}

/**
 * The safety number two users compare to check they hold each other's real identity keys:
 * 60 digits in 12 groups of 5. Symmetric: swapping (A) and (B) gives the same string. Each
 * half binds one user's name (NFC-normalised) and key.
 *
 * @throws {CryptoError} when a public key is not 32 bytes
 */
export function safetyNumber(
  publicKeyA: Uint8Array,
  nameA: string,
  publicKeyB: Uint8Array,
  nameB: string,
): string {
  const a = safetyHalf(publicKeyA, nameA);
  const b = safetyHalf(publicKeyB, nameB);
  const [first, second] = a.join("") <= b.join("") ? [a, b] : [b, a];
  return [...first, ...second].join(" ");
}
