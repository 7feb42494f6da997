/**
 * qpq's pure cryptographic core. No I/O, no sockets, no storage: bytes in, bytes out.
 *
 * - Identity: Ed25519 key pairs ({@link IdentityKeyPair}), {@link verifySignature},
 *   human-checkable {@link fingerprint} and symmetric {@link safetyNumber}.
 * - Symmetric: XChaCha20-Poly1305 with random nonces ({@link sealXChaCha} /
 *   {@link openXChaCha}), raw ChaCha20-Poly1305 and AES-GCM, HKDF / HMAC / SHA-256.
 * - Post-quantum: X-Wing KEM ({@link XWingSecretKey}, {@link xwingEncapsulate}) with the
 *   FIPS 203 ML-KEM key checks, and sealed envelopes ({@link sealEnvelope} /
 *   {@link openEnvelope}).
 * - Passwords: Argon2id ({@link deriveKeyFromPassword}).
 *
 * ```
 * password ──Argon2id──▶ state key ──XChaCha20-Poly1305──▶ state at rest
 * recipient pk ──X-Wing──▶ ss ──HKDF-SHA256──▶ key ──ChaCha20-Poly1305──▶ envelope
 * ```
 *
 * Every failure is a {@link CryptoError}; see docs/crypto.md for formats and rationale.
 *
 * @module
 */

export { CryptoError } from "../errors.ts";
export {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  aesGcmOpen,
  aesGcmSeal,
  chachaOpen,
  chachaSeal,
  HKDF_SHA256_MAX_BYTES,
  hkdfExpandSha256,
  hkdfExtractSha256,
  hkdfSha256,
  hmacSha256,
  openXChaCha,
  sealXChaCha,
  sha256,
  SHA256_BYTES,
  XCHACHA_NONCE_BYTES,
  xchachaOpen,
  xchachaSeal,
} from "./aead.ts";
export {
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SEED_BYTES,
  ED25519_SIGNATURE_BYTES,
  fingerprint,
  IdentityKeyPair,
  safetyNumber,
  verifySignature,
} from "./identity.ts";
export {
  checkMlKemDecapsulationKey,
  checkMlKemEncapsulationKey,
  ML_KEM_768_CIPHERTEXT_BYTES,
  ML_KEM_768_DECAPSULATION_KEY_BYTES,
  ML_KEM_768_ENCAPSULATION_KEY_BYTES,
} from "./ml_kem.ts";
export {
  x25519,
  XWING_CIPHERTEXT_BYTES,
  XWING_ENCAPS_SEED_BYTES,
  XWING_PUBLIC_KEY_BYTES,
  XWING_SECRET_KEY_BYTES,
  XWING_SHARED_SECRET_BYTES,
  xwingEncapsulate,
  type XWingEncapsulation,
  XWingSecretKey,
} from "./xwing.ts";
export {
  ENVELOPE_OVERHEAD_BYTES,
  ENVELOPE_SUITE_XWING_CHACHA,
  ENVELOPE_VERSION,
  type EnvelopeKeyPair,
  envelopeSecretKeyFromSeed,
  generateEnvelopeKeyPair,
  openEnvelope,
  sealEnvelope,
} from "./envelope.ts";
export {
  type Argon2idParams,
  DEFAULT_ARGON2ID_PARAMS,
  deriveKeyFromPassword,
  parseArgon2idParams,
  PASSWORD_KEY_BYTES,
} from "./password_kdf.ts";
