/**
 * The qpq crypto provider for ts-mls, and the cached `CiphersuiteImpl` per cipher suite.
 *
 * ts-mls's default provider awaits a WebCrypto call (key import, then the operation) for
 * every primitive. The qpq provider computes the same values synchronously with
 * `node:crypto` (SHA-2, HMAC, HKDF, AES-GCM, ChaCha20-Poly1305, Ed25519, X25519) and
 * `@noble/post-quantum` (ML-KEM-768 inside X-Wing), caches imported public keys, and
 * returns already-resolved promises:
 *
 * ```
 * hash, kdf           -> node:crypto, every suite
 * signature Ed25519   -> node:crypto KeyObjects (cached); other algorithms -> ts-mls default
 *                        (P-521 signing keys left-padded to 66 bytes first)
 * hpke X25519, X-Wing -> RFC 9180 base mode in _provider_hpke.ts; other KEMs -> ts-mls
 *                        default HPKE with the fast AEAD for encryptAead/decryptAead
 * ```
 *
 * Outputs are byte-for-byte those of the default provider (tests/mls_provider_test.ts and
 * the MLS interop vectors check it), so members using either provider share groups.
 *
 * @module
 */

import {
  type Ciphersuite,
  type CiphersuiteImpl,
  type CiphersuiteName,
  type CryptoProvider,
  defaultCryptoProvider,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type Hash,
  type Hpke,
  type Kdf,
  type Rng,
  type Signature,
} from "ts-mls";
import { CryptoError } from "ts-mls/mlsError.js";
import {
  type AeadName,
  aeadOpen,
  aeadSeal,
  ed25519Keygen,
  ed25519Sign,
  ed25519Verify,
  getHashFns,
  type HashFns,
  type HashName,
  random,
} from "./_provider_primitives.ts";
import { isFastKem, makeFastHpke } from "./_provider_hpke.ts";

/** The MLS cipher suites qpq offers. */
export type MlsSuiteName =
  | "MLS_256_XWING_AES256GCM_SHA512_Ed25519"
  | "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

/** The cipher suite new groups use unless told otherwise: X-Wing (ML-KEM-768 + X25519). */
export const DEFAULT_SUITE: MlsSuiteName = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";

/** Every suite name in {@link MlsSuiteName}. */
export const MLS_SUITES: readonly MlsSuiteName[] = [
  "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
  "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
];

/** True when `name` is one of the suites qpq offers. */
export function isMlsSuiteName(name: string): name is MlsSuiteName {
  return (MLS_SUITES as readonly string[]).includes(name);
}

function hkdfHash(kdf: string): HashName {
  switch (kdf) {
    case "HKDF-SHA256":
      return "SHA-256";
    case "HKDF-SHA384":
      return "SHA-384";
    case "HKDF-SHA512":
      return "SHA-512";
  }
  throw new CryptoError(`Unsupported KDF ${kdf}`);
}

/** Run `f` and hand back its value (or its throw) as a settled promise. */
function settle<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

function makeHash(h: HashFns): Hash {
  return {
    digest: (data) => settle(() => h.digest(data)),
    mac: (key, data) => settle(() => h.hmac(key, data)),
    verifyMac: (key, mac, data) => settle(() => h.verifyHmac(key, mac, data)),
  };
}

function makeKdf(h: HashFns): Kdf {
  return {
    extract: (salt, ikm) => settle(() => h.extract(salt, ikm)),
    expand: (prk, info, len) => settle(() => h.expand(prk, info, len)),
    size: h.length,
  };
}

const ed25519Signature: Signature = {
  sign: (signKey, message) => settle(() => ed25519Sign(signKey, message)),
  verify: (publicKey, message, signature) =>
    settle(() => ed25519Verify(publicKey, message, signature)),
  keygen: () => settle(ed25519Keygen),
};

const fastRng: Rng = { randomBytes: random };

/** The default HPKE with its AEAD calls replaced by the synchronous ones. */
function withFastAead(base: Hpke, aead: AeadName): Hpke {
  const wrap = <T>(f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(new CryptoError(`${e}`));
    }
  };
  return {
    open: (...a) => base.open(...a),
    seal: (...a) => base.seal(...a),
    importPrivateKey: (k) => base.importPrivateKey(k),
    importPublicKey: (k) => base.importPublicKey(k),
    exportPublicKey: (k) => base.exportPublicKey(k),
    exportPrivateKey: (k) => base.exportPrivateKey(k),
    exportSecret: (...a) => base.exportSecret(...a),
    importSecret: (...a) => base.importSecret(...a),
    deriveKeyPair: (ikm) => base.deriveKeyPair(ikm),
    generateKeyPair: () => base.generateKeyPair(),
    encryptAead: (key, nonce, aad, pt) =>
      wrap(() => aeadSeal(aead, key, nonce, aad ?? new Uint8Array(0), pt)),
    decryptAead: (key, nonce, aad, ct) =>
      wrap(() => aeadOpen(aead, key, nonce, aad ?? new Uint8Array(0), ct)),
    keyLength: base.keyLength,
    nonceLength: base.nonceLength,
  };
}

/**
 * P-521 private scalars may arrive one byte short (a leading zero dropped, as in the MLS
 * interop vectors; see mlswg/mls-implementations#176). ts-mls pads P-521 HPKE keys but not
 * signature keys, and @noble/curves rejects 65-byte scalars, so pad them here.
 */
function withPaddedP521Keys(base: Signature): Signature {
  const pad = (k: Uint8Array): Uint8Array => {
    if (k.length >= 66) return k;
    const out = new Uint8Array(66);
    out.set(k, 66 - k.length);
    return out;
  };
  return {
    sign: (signKey, message) => base.sign(pad(signKey), message),
    verify: (publicKey, message, signature) => base.verify(publicKey, message, signature),
    keygen: () => base.keygen(),
  };
}

async function buildImpl(cs: Ciphersuite): Promise<CiphersuiteImpl> {
  const kdfHash = await getHashFns(hkdfHash(cs.hpke.kdf));
  const hash = await getHashFns(cs.hash);
  const fastSignature = cs.signature === "Ed25519";
  const kem = cs.hpke.kem;
  // Only the parts the fast path lacks come from the default provider.
  const base = fastSignature && isFastKem(kem)
    ? undefined
    : await defaultCryptoProvider.getCiphersuiteImpl(cs);
  const hpke = isFastKem(kem)
    ? makeFastHpke({
      kem,
      kdf: kdfHash,
      sha256: await getHashFns("SHA-256"),
      aead: cs.hpke.aead,
    })
    : withFastAead((base as CiphersuiteImpl).hpke, cs.hpke.aead);
  return {
    hash: makeHash(hash),
    kdf: makeKdf(kdfHash),
    signature: fastSignature || base === undefined
      ? ed25519Signature
      : cs.signature === "P521"
      ? withPaddedP521Keys(base.signature)
      : base.signature,
    hpke,
    rng: fastRng,
    name: cs.name,
  };
}

/**
 * The qpq `CryptoProvider` for ts-mls: pass it to `getCiphersuiteImpl(cs, qpqCryptoProvider)`.
 * Suites whose KEM or signature it does not accelerate fall back to ts-mls's default
 * implementation for those parts only.
 */
export const qpqCryptoProvider: CryptoProvider = {
  getCiphersuiteImpl: buildImpl,
};

const cache = new Map<MlsSuiteName, Promise<CiphersuiteImpl>>();

/**
 * The ts-mls `CiphersuiteImpl` for `name` on the qpq provider, built once per process and
 * cached.
 *
 * @param name one of the suites in {@link MlsSuiteName}
 * @returns the cipher suite implementation to pass to ts-mls group functions
 */
export function getCiphersuite(name: MlsSuiteName): Promise<CiphersuiteImpl> {
  let impl = cache.get(name);
  if (impl === undefined) {
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name), qpqCryptoProvider);
    cache.set(name, impl);
  }
  return impl;
}

/**
 * The `CiphersuiteImpl` for any ts-mls suite name, on the qpq provider (or on ts-mls's
 * default provider when `provider` is `"default"`; used by benchmarks and interop tests).
 * Not cached.
 */
export function getCiphersuiteFor(
  name: CiphersuiteName,
  provider: "qpq" | "default" = "qpq",
): Promise<CiphersuiteImpl> {
  return getCiphersuiteImpl(
    getCiphersuiteFromName(name),
    provider === "qpq" ? qpqCryptoProvider : defaultCryptoProvider,
  );
}
