/**
 * ML-KEM-768 (FIPS 203) input checks that qpq runs itself rather than trusting the library.
 *
 * - {@link checkMlKemEncapsulationKey}: FIPS 203 §7.2 type and modulus check: every 12-bit
 *   coefficient of the encoded vector t̂ must be below q = 3329, which is the same as
 *   `ByteEncode12(ByteDecode12(ek)) == ek`.
 * - {@link checkMlKemDecapsulationKey}: FIPS 203 §7.3 type and hash check:
 *   `H(dk[384k : 768k+32]) == dk[768k+32 : 768k+64]`.
 *
 * Both are pure, run in microseconds and never throw.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { constantTimeEqual } from "../bytes.ts";

/** ML-KEM-768 module rank k. */
const K = 3;
/** The ML-KEM prime q. */
const Q = 3329;
/** ML-KEM-768 encapsulation key length (bytes). */
export const ML_KEM_768_ENCAPSULATION_KEY_BYTES = 384 * K + 32;
/** ML-KEM-768 decapsulation key length (bytes). */
export const ML_KEM_768_DECAPSULATION_KEY_BYTES = 768 * K + 96;
/** ML-KEM-768 ciphertext length (bytes). */
export const ML_KEM_768_CIPHERTEXT_BYTES = 1088;

/**
 * FIPS 203 §7.2 encapsulation key check for ML-KEM-768: right length and every encoded
 * coefficient reduced modulo q. Returns false for any invalid key; never throws.
 */
export function checkMlKemEncapsulationKey(ek: Uint8Array): boolean {
  if (!(ek instanceof Uint8Array) || ek.length !== ML_KEM_768_ENCAPSULATION_KEY_BYTES) {
    return false;
  }
  // Coefficients are packed two per three bytes, little-endian 12-bit values.
  // Accumulate without branching on secret-independent (public) data anyway.
  let bad = 0;
  for (let i = 0; i < 384 * K; i += 3) {
    const b0 = ek[i]!;
    const b1 = ek[i + 1]!;
    const b2 = ek[i + 2]!;
    const c0 = b0 | ((b1 & 0x0f) << 8);
    const c1 = (b1 >> 4) | (b2 << 4);
    bad |= ((Q - 1 - c0) | (Q - 1 - c1)) >>> 31;
  }
  return bad === 0;
}

/**
 * FIPS 203 §7.3 decapsulation key check for ML-KEM-768: right length and the embedded
 * hash H(ek) matching the embedded encapsulation key. Returns false for any invalid key;
 * never throws.
 */
export function checkMlKemDecapsulationKey(dk: Uint8Array): boolean {
  if (!(dk instanceof Uint8Array) || dk.length !== ML_KEM_768_DECAPSULATION_KEY_BYTES) {
    return false;
  }
  const ek = dk.subarray(384 * K, 768 * K + 32);
  const h = dk.subarray(768 * K + 32, 768 * K + 64);
  const computed = new Uint8Array(createHash("sha3-256").update(ek).digest());
  return constantTimeEqual(computed, h);
}
