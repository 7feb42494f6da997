/**
 * Symmetric primitives qpq calls directly: AEADs, HKDF, HMAC and SHA-256.
 *
 * Every AEAD here runs on the native `node:crypto` ciphers (about ten times faster than pure
 * JavaScript). XChaCha20-Poly1305 is composed from noble's `hchacha` (the 24-byte-nonce
 * subkey derivation that `node:crypto` lacks) and the native IETF ChaCha20-Poly1305 with the
 * nonce `0x00000000 ‖ n[16..24]`, exactly as draft-irtf-cfrg-xchacha defines it; the
 * Wycheproof XChaCha20-Poly1305 vectors pin that composition byte for byte.
 *
 * All functions are pure (no I/O) and throw {@link CryptoError} on any failure: wrong key or
 * nonce length, a modified ciphertext, tag or associated data. A failed open never returns
 * partial plaintext.
 *
 * @module
 */

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomFillSync,
} from "node:crypto";
import { hchacha } from "@noble/ciphers/chacha.js";
import { CryptoError } from "../errors.ts";

/** Key length of ChaCha20-Poly1305, XChaCha20-Poly1305 and AES-256-GCM (bytes). */
export const AEAD_KEY_BYTES = 32;
/** Authentication tag length of every AEAD here (bytes). */
export const AEAD_TAG_BYTES = 16;
/** Nonce length of the IETF ChaCha20-Poly1305 and AES-GCM functions (bytes). */
export const AEAD_NONCE_BYTES = 12;
/** Nonce length of XChaCha20-Poly1305 (bytes); random nonces of this size never collide. */
export const XCHACHA_NONCE_BYTES = 24;
/** SHA-256 output length (bytes). */
export const SHA256_BYTES = 32;
/** Largest HKDF-SHA256 output (255 blocks of 32 bytes, RFC 5869). */
export const HKDF_SHA256_MAX_BYTES = 255 * SHA256_BYTES;

const EMPTY = new Uint8Array(0);
/** "expand 32-byte k" as little-endian words. */
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);
/** Node limits the HKDF info parameter to this many bytes; longer infos use our own expand. */
const NODE_HKDF_MAX_INFO = 1024;

type NodeAead = "chacha20-poly1305" | "aes-128-gcm" | "aes-256-gcm";

function checkLength(what: string, b: Uint8Array, n: number): void {
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw new CryptoError(`Invalid ${what} length: expected ${n} bytes`);
  }
}

function nodeSeal(
  alg: NodeAead,
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  prefix: Uint8Array | undefined,
): Uint8Array {
  const pre = prefix?.length ?? 0;
  const out = new Uint8Array(pre + plaintext.length + AEAD_TAG_BYTES);
  if (prefix !== undefined) out.set(prefix, 0);
  try {
    // The cast only picks the AEAD overload; GCM and ChaCha20-Poly1305 share its options.
    const c = createCipheriv(alg as "chacha20-poly1305", key, nonce, {
      authTagLength: AEAD_TAG_BYTES,
    });
    if (aad.length > 0) c.setAAD(aad, { plaintextLength: plaintext.length });
    const body = c.update(plaintext);
    const tail = c.final();
    out.set(body, pre);
    out.set(tail, pre + body.length);
    out.set(c.getAuthTag(), pre + plaintext.length);
    return out;
  } catch (e) {
    throw new CryptoError("Encryption failed", { cause: e });
  }
}

function nodeOpen(
  alg: NodeAead,
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertextAndTag: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  if (!(ciphertextAndTag instanceof Uint8Array) || ciphertextAndTag.length < AEAD_TAG_BYTES) {
    throw new CryptoError("Cannot decrypt: ciphertext too short");
  }
  const ctLen = ciphertextAndTag.length - AEAD_TAG_BYTES;
  const out = new Uint8Array(ctLen);
  let body: Uint8Array | undefined;
  try {
    const d = createDecipheriv(alg as "chacha20-poly1305", key, nonce, {
      authTagLength: AEAD_TAG_BYTES,
    });
    d.setAuthTag(ciphertextAndTag.subarray(ctLen));
    if (aad.length > 0) d.setAAD(aad, { plaintextLength: ctLen });
    body = d.update(ciphertextAndTag.subarray(0, ctLen));
    const tail = d.final();
    out.set(body, 0);
    out.set(tail, body.length);
    return out;
  } catch (e) {
    throw new CryptoError("Cannot decrypt: authentication failed", { cause: e });
  } finally {
    body?.fill(0);
  }
}

/** XChaCha20 subkey = HChaCha20(key, nonce[0..16]). */
function hchachaSubkey(key: Uint8Array, nonce: Uint8Array): Uint8Array {
  const k = new Uint32Array(8);
  const n = new Uint32Array(4);
  const out = new Uint32Array(8);
  new Uint8Array(k.buffer).set(key);
  new Uint8Array(n.buffer).set(nonce.subarray(0, 16));
  hchacha(SIGMA, k, n, out);
  k.fill(0);
  return new Uint8Array(out.buffer);
}

/** The IETF ChaCha20-Poly1305 nonce that XChaCha uses: four zero bytes ‖ nonce[16..24]. */
function xchachaInnerNonce(nonce: Uint8Array): Uint8Array {
  const n = new Uint8Array(AEAD_NONCE_BYTES);
  n.set(nonce.subarray(16, 24), 4);
  return n;
}

/**
 * XChaCha20-Poly1305 encryption with an explicit 24-byte nonce.
 *
 * @returns `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong key or nonce length
 */
export function xchachaSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  checkLength("nonce", nonce, XCHACHA_NONCE_BYTES);
  const sub = hchachaSubkey(key, nonce);
  try {
    return nodeSeal("chacha20-poly1305", sub, xchachaInnerNonce(nonce), plaintext, aad, undefined);
  } finally {
    sub.fill(0);
  }
}

/**
 * XChaCha20-Poly1305 decryption with an explicit 24-byte nonce.
 *
 * @param ciphertextAndTag `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong length or failed authentication
 */
export function xchachaOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertextAndTag: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  checkLength("nonce", nonce, XCHACHA_NONCE_BYTES);
  const sub = hchachaSubkey(key, nonce);
  try {
    return nodeOpen("chacha20-poly1305", sub, xchachaInnerNonce(nonce), ciphertextAndTag, aad);
  } finally {
    sub.fill(0);
  }
}

/**
 * Encrypt with XChaCha20-Poly1305 under a fresh random nonce.
 *
 * Random 24-byte nonces make nonce reuse negligible (2^-96 after 2^48 messages), so one key
 * may seal any number of messages.
 *
 * @returns `nonce (24) ‖ ciphertext ‖ tag (16)`
 * @throws {CryptoError} on a wrong key length
 */
export function sealXChaCha(
  key: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  const nonce = new Uint8Array(XCHACHA_NONCE_BYTES);
  randomFillSync(nonce);
  const sub = hchachaSubkey(key, nonce);
  try {
    return nodeSeal("chacha20-poly1305", sub, xchachaInnerNonce(nonce), plaintext, aad, nonce);
  } finally {
    sub.fill(0);
  }
}

/**
 * Decrypt the output of {@link sealXChaCha}.
 *
 * @throws {CryptoError} when the input is too short, the key is wrong, or anything
 *   (nonce, ciphertext, tag, associated data) was modified
 */
export function openXChaCha(
  key: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  if (!(sealed instanceof Uint8Array) || sealed.length < XCHACHA_NONCE_BYTES + AEAD_TAG_BYTES) {
    throw new CryptoError("Cannot decrypt: ciphertext too short");
  }
  const nonce = sealed.subarray(0, XCHACHA_NONCE_BYTES);
  const sub = hchachaSubkey(key, nonce);
  try {
    return nodeOpen(
      "chacha20-poly1305",
      sub,
      xchachaInnerNonce(nonce),
      sealed.subarray(XCHACHA_NONCE_BYTES),
      aad,
    );
  } finally {
    sub.fill(0);
  }
}

/**
 * IETF ChaCha20-Poly1305 (RFC 8439) encryption with an explicit 12-byte nonce.
 *
 * The caller guarantees the nonce is never reused under the same key.
 *
 * @returns `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong key or nonce length
 */
export function chachaSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  checkLength("nonce", nonce, AEAD_NONCE_BYTES);
  return nodeSeal("chacha20-poly1305", key, nonce, plaintext, aad, undefined);
}

/**
 * IETF ChaCha20-Poly1305 (RFC 8439) decryption with an explicit 12-byte nonce.
 *
 * @param ciphertextAndTag `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong length or failed authentication
 */
export function chachaOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertextAndTag: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  checkLength("key", key, AEAD_KEY_BYTES);
  checkLength("nonce", nonce, AEAD_NONCE_BYTES);
  return nodeOpen("chacha20-poly1305", key, nonce, ciphertextAndTag, aad);
}

function gcmAlgorithm(key: Uint8Array): NodeAead {
  if (key instanceof Uint8Array && key.length === 32) return "aes-256-gcm";
  if (key instanceof Uint8Array && key.length === 16) return "aes-128-gcm";
  throw new CryptoError("Invalid key length: expected 16 or 32 bytes");
}

/**
 * AES-GCM encryption (AES-256, or AES-128 for 16-byte keys) with an explicit 12-byte nonce
 * and a 16-byte tag. Other nonce lengths are refused: they go through GHASH and weaken GCM.
 *
 * @returns `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong key or nonce length
 */
export function aesGcmSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  const alg = gcmAlgorithm(key);
  checkLength("nonce", nonce, AEAD_NONCE_BYTES);
  return nodeSeal(alg, key, nonce, plaintext, aad, undefined);
}

/**
 * AES-GCM decryption with an explicit 12-byte nonce and a 16-byte tag.
 *
 * @param ciphertextAndTag `ciphertext ‖ tag`
 * @throws {CryptoError} on a wrong length or failed authentication
 */
export function aesGcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertextAndTag: Uint8Array,
  aad: Uint8Array = EMPTY,
): Uint8Array {
  const alg = gcmAlgorithm(key);
  checkLength("nonce", nonce, AEAD_NONCE_BYTES);
  return nodeOpen(alg, key, nonce, ciphertextAndTag, aad);
}

/** SHA-256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** HMAC-SHA256 of the concatenation of `parts` under `key` (any length). */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/**
 * HKDF-Extract with SHA-256 (RFC 5869 §2.2). An empty salt means 32 zero bytes.
 *
 * @returns the 32-byte pseudorandom key
 */
export function hkdfExtractSha256(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return hmacSha256(salt.length === 0 ? new Uint8Array(SHA256_BYTES) : salt, ikm);
}

function checkHkdfLength(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > HKDF_SHA256_MAX_BYTES) {
    throw new CryptoError(`Invalid HKDF output length: must be 0 to ${HKDF_SHA256_MAX_BYTES}`);
  }
}

/**
 * HKDF-Expand with SHA-256 (RFC 5869 §2.3).
 *
 * @param prk a pseudorandom key of at least 32 bytes, usually from {@link hkdfExtractSha256}
 * @throws {CryptoError} when `length` exceeds 8160 bytes or `prk` is shorter than 32 bytes
 */
export function hkdfExpandSha256(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  checkHkdfLength(length);
  if (prk.length < SHA256_BYTES) throw new CryptoError("Invalid HKDF pseudorandom key length");
  const out = new Uint8Array(length);
  let t: Uint8Array = EMPTY;
  const counter = new Uint8Array(1);
  for (let off = 0, i = 1; off < length; off += SHA256_BYTES, i++) {
    counter[0] = i;
    const next = hmacSha256(prk, t, info, counter);
    t.fill(0);
    t = next;
    out.set(t.subarray(0, Math.min(SHA256_BYTES, length - off)), off);
  }
  t.fill(0);
  return out;
}

/**
 * HKDF with SHA-256 (RFC 5869): extract-then-expand `length` bytes.
 *
 * Uses the native `hkdfSync` when it can (infos up to 1024 bytes) and the equivalent
 * HMAC-based extract/expand otherwise.
 *
 * @throws {CryptoError} when `length` exceeds 8160 bytes
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  checkHkdfLength(length);
  if (length === 0) return new Uint8Array(0);
  if (info.length <= NODE_HKDF_MAX_INFO) {
    return new Uint8Array(hkdfSync("sha256", ikm, salt, info, length));
  }
  const prk = hkdfExtractSha256(salt, ikm);
  try {
    return hkdfExpandSha256(prk, info, length);
  } finally {
    prk.fill(0);
  }
}
