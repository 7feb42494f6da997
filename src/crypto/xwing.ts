/**
 * X-Wing, the hybrid X25519 + ML-KEM-768 KEM of draft-connolly-cfrg-xwing-kem, assembled for
 * speed from three native or audited parts:
 *
 * - ML-KEM-768 from `@noble/post-quantum` (`ml_kem768`, the same primitive that noble's own
 *   `ml_kem768_x25519` X-Wing uses), with the recipient's public matrix pre-expanded once
 *   (`ml_kem768.prepare`) so decapsulation skips the matrix sampling;
 * - X25519 from native `node:crypto` (about 7x faster than pure JavaScript);
 * - SHA3-256 for the combiner from native `node:crypto`; SHAKE256 seed expansion from noble.
 *
 * ```
 * keygen(seed32):      (d ‖ z ‖ skX) = SHAKE256(seed, 96)
 *                      (ekM, dkM)    = ML-KEM-768.KeyGen(d, z);  pkX = X25519(skX, 9)
 *                      pk = ekM ‖ pkX (1216 bytes); sk = seed (32 bytes)
 * encaps(pk, eseed64): (ssM, ctM)    = ML-KEM-768.Encaps(ekM, eseed[0..32])
 *                      ekX = eseed[32..64];  ctX = X25519(ekX, 9);  ssX = X25519(ekX, pkX)
 *                      ss = SHA3-256(ssM ‖ ssX ‖ ctX ‖ pkX ‖ "\.//^\");  ct = ctM ‖ ctX
 * decaps(ct, sk):      ssM = ML-KEM-768.Decaps(dkM, ctM);  ssX = X25519(skX, ctX);  same ss
 * ```
 *
 * Byte-for-byte conformance with the draft is pinned by the RustCrypto X-Wing vectors and
 * cross-checked against noble's `ml_kem768_x25519` in tests. One deliberate difference: an
 * X25519 share that yields the all-zero shared secret (a low-order point, never produced by
 * an honest party) is rejected with {@link CryptoError} instead of being hashed.
 *
 * Encapsulation first runs the FIPS 203 §7.2 modulus check on the ML-KEM part of the public
 * key ({@link checkMlKemEncapsulationKey}).
 *
 * @module
 */

import { createHash, diffieHellman, type KeyObject, randomFillSync } from "node:crypto";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { shake256 } from "@noble/hashes/sha3.js";
import { toHex, zeroize } from "../bytes.ts";
import { CryptoError } from "../errors.ts";
import { exportRawPublic, x25519PrivateKey, x25519PublicKey } from "./_node.ts";
import {
  checkMlKemEncapsulationKey,
  ML_KEM_768_CIPHERTEXT_BYTES,
  ML_KEM_768_ENCAPSULATION_KEY_BYTES,
} from "./ml_kem.ts";

/** X-Wing secret key (seed) length in bytes. */
export const XWING_SECRET_KEY_BYTES = 32;
/** X-Wing public key length in bytes: ML-KEM-768 key (1184) ‖ X25519 key (32). */
export const XWING_PUBLIC_KEY_BYTES = ML_KEM_768_ENCAPSULATION_KEY_BYTES + 32;
/** X-Wing ciphertext length in bytes: ML-KEM-768 ciphertext (1088) ‖ X25519 share (32). */
export const XWING_CIPHERTEXT_BYTES = ML_KEM_768_CIPHERTEXT_BYTES + 32;
/** X-Wing shared secret length in bytes. */
export const XWING_SHARED_SECRET_BYTES = 32;
/** Length of the encapsulation randomness (`eseed`) in bytes. */
export const XWING_ENCAPS_SEED_BYTES = 64;

/** The X-Wing combiner label `\.//^\`. */
const XWING_LABEL = new Uint8Array([0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c]);

/** The part of noble's prepared ML-KEM key (public matrix pre-expanded) used here. */
interface PreparedMlKem {
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
  clean(): void;
}

function combine(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHash("sha3-256").update(ssM).update(ssX).update(ctX).update(pkX).update(XWING_LABEL)
      .digest(),
  );
}

function x25519Shared(privateKey: KeyObject, publicKey: Uint8Array): Uint8Array {
  try {
    return new Uint8Array(diffieHellman({ privateKey, publicKey: x25519PublicKey(publicKey) }));
  } catch (e) {
    throw new CryptoError("X25519 key agreement failed: invalid public share", { cause: e });
  }
}

/**
 * X25519 (RFC 7748) of a 32-byte private scalar and a 32-byte public u-coordinate, on the
 * native implementation X-Wing uses here.
 *
 * @throws {CryptoError} on wrong lengths or when the result is all zero (low-order input)
 */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (privateKey.length !== 32 || publicKey.length !== 32) {
    throw new CryptoError("Invalid X25519 key length");
  }
  return x25519Shared(x25519PrivateKey(privateKey), publicKey);
}

/**
 * An X-Wing secret key: the 32-byte seed plus its expanded form (ML-KEM decapsulation key,
 * pre-expanded public matrix, X25519 key). Redacts itself in `Deno.inspect`, `console.log`
 * and `JSON.stringify`.
 */
export class XWingSecretKey {
  #seed: Uint8Array;
  #dkM: Uint8Array;
  #prepared: PreparedMlKem;
  #skX: KeyObject;
  #publicKey: Uint8Array;
  #publicKeyHash: Uint8Array;

  private constructor(
    seed: Uint8Array,
    dkM: Uint8Array,
    prepared: PreparedMlKem,
    skX: KeyObject,
    publicKey: Uint8Array,
  ) {
    this.#seed = seed;
    this.#dkM = dkM;
    this.#prepared = prepared;
    this.#skX = skX;
    this.#publicKey = publicKey;
    this.#publicKeyHash = new Uint8Array(createHash("sha256").update(publicKey).digest());
  }

  /** A fresh key from the platform CSPRNG. */
  static generate(): XWingSecretKey {
    const seed = new Uint8Array(XWING_SECRET_KEY_BYTES);
    randomFillSync(seed);
    try {
      return XWingSecretKey.fromSeed(seed);
    } finally {
      zeroize(seed);
    }
  }

  /**
   * Expand a 32-byte seed (the X-Wing secret key encoding). The seed is copied.
   *
   * @throws {CryptoError} when `seed` is not 32 bytes
   */
  static fromSeed(seed: Uint8Array): XWingSecretKey {
    if (!(seed instanceof Uint8Array) || seed.length !== XWING_SECRET_KEY_BYTES) {
      throw new CryptoError("Invalid X-Wing secret key length");
    }
    const expanded = shake256(seed, { dkLen: 96 });
    try {
      const { publicKey: ekM, secretKey: dkM } = ml_kem768.keygen(expanded.subarray(0, 64));
      const skX = x25519PrivateKey(expanded.subarray(64, 96));
      const pkX = exportRawPublic(skX);
      const publicKey = new Uint8Array(XWING_PUBLIC_KEY_BYTES);
      publicKey.set(ekM, 0);
      publicKey.set(pkX, ML_KEM_768_ENCAPSULATION_KEY_BYTES);
      return new XWingSecretKey(seed.slice(), dkM, ml_kem768.prepare(ekM), skX, publicKey);
    } finally {
      zeroize(expanded);
    }
  }

  /** A copy of the 1216-byte public key. */
  get publicKey(): Uint8Array {
    return this.#publicKey.slice();
  }

  /** SHA-256 of the public key (a copy): a stable public key id, cached at construction. */
  get publicKeyHash(): Uint8Array {
    return this.#publicKeyHash.slice();
  }

  /** A copy of the 32-byte seed. Store it encrypted; zero the copy when done. */
  exportSeed(): Uint8Array {
    return this.#seed.slice();
  }

  /**
   * X-Wing decapsulation.
   *
   * A modified ML-KEM ciphertext yields an unrelated secret (implicit rejection), so callers
   * must authenticate what they derive from it.
   *
   * @throws {CryptoError} on a wrong ciphertext length or a low-order X25519 share
   */
  decapsulate(cipherText: Uint8Array): Uint8Array {
    if (!(cipherText instanceof Uint8Array) || cipherText.length !== XWING_CIPHERTEXT_BYTES) {
      throw new CryptoError("Invalid X-Wing ciphertext length");
    }
    const ctM = cipherText.subarray(0, ML_KEM_768_CIPHERTEXT_BYTES);
    const ctX = cipherText.subarray(ML_KEM_768_CIPHERTEXT_BYTES);
    const ssX = x25519Shared(this.#skX, ctX);
    let ssM: Uint8Array | undefined;
    try {
      ssM = this.#prepared.decapsulate(ctM, this.#dkM);
      return combine(ssM, ssX, ctX, this.#publicKey.subarray(ML_KEM_768_ENCAPSULATION_KEY_BYTES));
    } catch (e) {
      if (e instanceof CryptoError) throw e;
      throw new CryptoError("X-Wing decapsulation failed", { cause: e });
    } finally {
      zeroize(ssM, ssX);
    }
  }

  /** Zero the seed and expanded secrets held here. The key must not be used afterwards. */
  destroy(): void {
    zeroize(this.#seed, this.#dkM);
    this.#prepared.clean();
  }

  /** JSON form: a short public key id and a redacted secret. */
  toJSON(): { type: string; publicKeyHash: string; secretKey: string } {
    return { type: "XWingSecretKey", publicKeyHash: this.#publicKeyId(), secretKey: "[redacted]" };
  }

  /** Deno.inspect / console.log form, without secrets. */
  [Symbol.for("Deno.customInspect")](): string {
    return this.#describe();
  }

  /** node:util inspect form, without secrets. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.#describe();
  }

  #describe(): string {
    return `XWingSecretKey { publicKeyHash: ${this.#publicKeyId()}, secretKey: [redacted] }`;
  }

  #publicKeyId(): string {
    return toHex(this.#publicKeyHash.subarray(0, 8));
  }
}

/** Result of {@link xwingEncapsulate}. */
export interface XWingEncapsulation {
  /** 1120-byte ciphertext for the recipient. */
  cipherText: Uint8Array;
  /** 32-byte shared secret; zero it when done. */
  sharedSecret: Uint8Array;
}

/**
 * X-Wing encapsulation to `publicKey`.
 *
 * @param eseed 64 bytes of encapsulation randomness, only for known-answer tests; random
 *   when omitted
 * @throws {CryptoError} on a wrong public key length, an ML-KEM key failing the FIPS 203
 *   modulus check, or a low-order X25519 key
 */
export function xwingEncapsulate(publicKey: Uint8Array, eseed?: Uint8Array): XWingEncapsulation {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== XWING_PUBLIC_KEY_BYTES) {
    throw new CryptoError("Invalid X-Wing public key length");
  }
  const ekM = publicKey.subarray(0, ML_KEM_768_ENCAPSULATION_KEY_BYTES);
  const pkX = publicKey.subarray(ML_KEM_768_ENCAPSULATION_KEY_BYTES);
  if (!checkMlKemEncapsulationKey(ekM)) {
    throw new CryptoError("Invalid X-Wing public key: ML-KEM modulus check failed");
  }
  let seed: Uint8Array;
  if (eseed === undefined) {
    seed = new Uint8Array(XWING_ENCAPS_SEED_BYTES);
    randomFillSync(seed);
  } else if (eseed.length === XWING_ENCAPS_SEED_BYTES) {
    seed = eseed.slice();
  } else {
    throw new CryptoError("Invalid X-Wing encapsulation seed length");
  }
  let ssM: Uint8Array | undefined;
  let ssX: Uint8Array | undefined;
  try {
    const ekX = x25519PrivateKey(seed.subarray(32, 64));
    const ctX = exportRawPublic(ekX);
    ssX = x25519Shared(ekX, pkX);
    const m = ml_kem768.encapsulate(ekM, seed.subarray(0, 32));
    ssM = m.sharedSecret;
    const cipherText = new Uint8Array(XWING_CIPHERTEXT_BYTES);
    cipherText.set(m.cipherText, 0);
    cipherText.set(ctX, ML_KEM_768_CIPHERTEXT_BYTES);
    return { cipherText, sharedSecret: combine(ssM, ssX, ctX, pkX) };
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    throw new CryptoError("X-Wing encapsulation failed", { cause: e });
  } finally {
    zeroize(seed, ssM, ssX);
  }
}
