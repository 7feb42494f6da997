/**
 * Hybrid post-quantum sealed envelopes: anyone holding a recipient's X-Wing public key can
 * seal bytes that only the holder of the matching secret key can open.
 *
 * ```
 * envelope = version (1) ‖ suite (1) ‖ X-Wing ciphertext (1120) ‖ AEAD ciphertext (n + 16)
 *
 * (kemCt, ss) = X-Wing.Encaps(recipientPk)
 * key         = HKDF-SHA256(ikm  = ss,
 *                           salt = "qpq envelope v1",
 *                           info = "qpq envelope v1 key" ‖ version ‖ suite
 *                                  ‖ SHA-256(kemCt) ‖ SHA-256(recipientPk),
 *                           L    = 32)
 * aeadCt      = ChaCha20-Poly1305(key, nonce = 0^12, plaintext, aad)
 * ```
 *
 * Each envelope has its own single-use key (fresh X-Wing encapsulation randomness), so the
 * fixed all-zero nonce never repeats under one key, as in HPKE's single-shot mode. The key
 * binds the version, suite, KEM ciphertext and recipient public key; the caller's `aad` is
 * authenticated by the AEAD. Opening checks the size before parsing and turns every failure
 * (truncation, tampering, wrong version or suite, wrong recipient, wrong aad) into
 * {@link CryptoError}; it never returns unauthenticated plaintext.
 *
 * @module
 */

import { utf8, zeroize } from "../bytes.ts";
import { CryptoError } from "../errors.ts";
import { MAX_ENVELOPE_PLAINTEXT_BYTES } from "../limits.ts";
import { AEAD_TAG_BYTES, chachaOpen, chachaSeal, hkdfSha256, sha256 } from "./aead.ts";
import {
  XWING_CIPHERTEXT_BYTES,
  XWING_PUBLIC_KEY_BYTES,
  xwingEncapsulate,
  XWingSecretKey,
} from "./xwing.ts";

/** Envelope format version written by this build. */
export const ENVELOPE_VERSION = 1;
/** Suite 1: X-Wing KEM, HKDF-SHA256, ChaCha20-Poly1305. */
export const ENVELOPE_SUITE_XWING_CHACHA = 1;
/** Bytes an envelope adds to its plaintext: header (2) + KEM ciphertext (1120) + tag (16). */
export const ENVELOPE_OVERHEAD_BYTES = 2 + XWING_CIPHERTEXT_BYTES + AEAD_TAG_BYTES;

const HEADER_BYTES = 2;
const KDF_SALT = utf8("qpq envelope v1");
const KDF_INFO_LABEL = utf8("qpq envelope v1 key");
const ZERO_NONCE = new Uint8Array(12);

/** A recipient key pair for {@link sealEnvelope} / {@link openEnvelope}. */
export interface EnvelopeKeyPair {
  /** 1216-byte X-Wing public key; publish it. */
  publicKey: Uint8Array;
  /** Secret key (redacting); persist it with `exportSeed()` under encryption. */
  secretKey: XWingSecretKey;
}

/** Generate a fresh envelope recipient key pair. */
export function generateEnvelopeKeyPair(): EnvelopeKeyPair {
  const secretKey = XWingSecretKey.generate();
  return { publicKey: secretKey.publicKey, secretKey };
}

/**
 * Rebuild an envelope secret key from its 32-byte seed.
 *
 * @throws {CryptoError} when `seed` is not 32 bytes
 */
export function envelopeSecretKeyFromSeed(seed: Uint8Array): XWingSecretKey {
  return XWingSecretKey.fromSeed(seed);
}

/**
 * The envelope key. The KEM ciphertext and recipient key enter as SHA-256 digests so the
 * info stays short (one native HKDF call); the recipient's digest is cached in its key.
 */
function deriveKey(
  sharedSecret: Uint8Array,
  header: Uint8Array,
  kemCt: Uint8Array,
  recipientPkHash: Uint8Array,
): Uint8Array {
  const info = new Uint8Array(KDF_INFO_LABEL.length + HEADER_BYTES + 64);
  info.set(KDF_INFO_LABEL, 0);
  info.set(header, KDF_INFO_LABEL.length);
  info.set(sha256(kemCt), KDF_INFO_LABEL.length + HEADER_BYTES);
  info.set(recipientPkHash, KDF_INFO_LABEL.length + HEADER_BYTES + 32);
  return hkdfSha256(sharedSecret, KDF_SALT, info, 32);
}

/**
 * Seal `plaintext` to the holder of `recipientPublicKey`.
 *
 * @param aad associated data the opener must pass unchanged (not encrypted, not included)
 * @returns the envelope, {@link ENVELOPE_OVERHEAD_BYTES} longer than `plaintext`
 * @throws {CryptoError} on an invalid recipient key (length, ML-KEM modulus, low-order
 *   X25519) or a plaintext above `MAX_ENVELOPE_PLAINTEXT_BYTES`
 */
export function sealEnvelope(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  if (!(plaintext instanceof Uint8Array) || plaintext.length > MAX_ENVELOPE_PLAINTEXT_BYTES) {
    throw new CryptoError("Envelope plaintext too large");
  }
  if (
    !(recipientPublicKey instanceof Uint8Array) ||
    recipientPublicKey.length !== XWING_PUBLIC_KEY_BYTES
  ) {
    throw new CryptoError("Invalid envelope recipient public key length");
  }
  const header = new Uint8Array([ENVELOPE_VERSION, ENVELOPE_SUITE_XWING_CHACHA]);
  const { cipherText, sharedSecret } = xwingEncapsulate(recipientPublicKey);
  const key = deriveKey(sharedSecret, header, cipherText, sha256(recipientPublicKey));
  try {
    const body = chachaSeal(key, ZERO_NONCE, plaintext, aad);
    const out = new Uint8Array(HEADER_BYTES + cipherText.length + body.length);
    out.set(header, 0);
    out.set(cipherText, HEADER_BYTES);
    out.set(body, HEADER_BYTES + cipherText.length);
    return out;
  } finally {
    zeroize(sharedSecret, key);
  }
}

/**
 * Open an envelope made by {@link sealEnvelope} for `recipientSecretKey`.
 *
 * @throws {CryptoError} when the envelope is truncated, oversized, of an unknown version or
 *   suite, modified in any byte, sealed to another key, or `aad` differs
 */
export function openEnvelope(
  recipientSecretKey: XWingSecretKey,
  envelope: Uint8Array,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  if (!(recipientSecretKey instanceof XWingSecretKey)) {
    throw new CryptoError("Invalid envelope secret key");
  }
  if (!(envelope instanceof Uint8Array) || envelope.length < ENVELOPE_OVERHEAD_BYTES) {
    throw new CryptoError("Cannot open envelope: too short");
  }
  if (envelope.length > ENVELOPE_OVERHEAD_BYTES + MAX_ENVELOPE_PLAINTEXT_BYTES) {
    throw new CryptoError("Cannot open envelope: too large");
  }
  if (envelope[0] !== ENVELOPE_VERSION) {
    throw new CryptoError("Cannot open envelope: unsupported version");
  }
  if (envelope[1] !== ENVELOPE_SUITE_XWING_CHACHA) {
    throw new CryptoError("Cannot open envelope: unsupported suite");
  }
  const header = envelope.subarray(0, HEADER_BYTES);
  const kemCt = envelope.subarray(HEADER_BYTES, HEADER_BYTES + XWING_CIPHERTEXT_BYTES);
  const body = envelope.subarray(HEADER_BYTES + XWING_CIPHERTEXT_BYTES);
  const sharedSecret = recipientSecretKey.decapsulate(kemCt);
  const key = deriveKey(sharedSecret, header, kemCt, recipientSecretKey.publicKeyHash);
  try {
    return chachaOpen(key, ZERO_NONCE, body, aad);
  } catch (e) {
    throw new CryptoError("Cannot open envelope: authentication failed", { cause: e });
  } finally {
    zeroize(sharedSecret, key);
  }
}
