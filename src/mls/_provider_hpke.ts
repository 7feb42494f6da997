/**
 * HPKE (RFC 9180) base mode, single shot, over the synchronous primitives of
 * `_provider_primitives.ts`, shaped as ts-mls's `Hpke` interface. KEMs: DHKEM(X25519,
 * HKDF-SHA256) and X-Wing; KDFs: HKDF-SHA256/384/512; AEADs: AES-128/256-GCM,
 * ChaCha20-Poly1305.
 *
 * ```
 * Encap(pkR) -> shared_secret, enc
 * KeySchedule(mode_base, shared_secret, info) -> key, base_nonce, exporter_secret
 * Seal = AEAD(key, base_nonce, aad, pt)   Export = LabeledExpand(exporter_secret, "sec", ctx, L)
 * ```
 *
 * Private to src/mls.
 *
 * @module
 */

import type { Hpke, PrivateKey, PublicKey } from "ts-mls";
import { CryptoError } from "ts-mls/mlsError.js";
import {
  AEAD_KEY_LENGTH,
  AEAD_NONCE_LENGTH,
  type AeadName,
  aeadOpen,
  aeadSeal,
  type HashFns,
  random,
  x25519,
  x25519Public,
  XWING,
  xwingDecap,
  xwingDeriveSecret,
  xwingEncap,
  xwingPublic,
} from "./_provider_primitives.ts";

/** The KEMs this HPKE implements, as ts-mls names them. */
export type FastKemName = "DHKEM-X25519-HKDF-SHA256" | "X-Wing";

/** True when the fast HPKE handles this KEM. */
export function isFastKem(kem: string): kem is FastKemName {
  return kem === "DHKEM-X25519-HKDF-SHA256" || kem === "X-Wing";
}

const KEM_ID: Record<FastKemName, number> = {
  "DHKEM-X25519-HKDF-SHA256": 0x0020,
  "X-Wing": 0x647a,
};
const KDF_ID: Record<HashFns["name"], number> = { "SHA-256": 1, "SHA-384": 2, "SHA-512": 3 };
const AEAD_ID: Record<AeadName, number> = { AES128GCM: 1, AES256GCM: 2, CHACHA20POLY1305: 3 };

const te = new TextEncoder();
const HPKE_V1 = te.encode("HPKE-v1");
const EMPTY = new Uint8Array(0);

function cat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

/** HPKE LabeledExtract / LabeledExpand bound to one suite_id. */
class Labeled {
  readonly #h: HashFns;
  readonly #prefix: Uint8Array;
  constructor(h: HashFns, suiteId: Uint8Array) {
    this.#h = h;
    this.#prefix = cat(HPKE_V1, suiteId);
  }
  extract(salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
    return this.#h.extract(salt, cat(this.#prefix, te.encode(label), ikm));
  }
  expand(prk: Uint8Array, label: string, info: Uint8Array, len: number): Uint8Array {
    return this.#h.expand(prk, cat(u16(len), this.#prefix, te.encode(label), info), len);
  }
}

const KEY_TAG = Symbol("qpqHpkeKey");

/**
 * An HPKE key held as raw bytes. It stands in for the `CryptoKey` ts-mls's types name, and
 * only this module reads its bytes. Private keys redact themselves when inspected.
 */
class HpkeKey {
  readonly type: "public" | "private";
  readonly algorithm: { name: string };
  readonly extractable = true;
  readonly usages: string[] = [];
  readonly [KEY_TAG]: Uint8Array;
  constructor(kem: FastKemName, type: "public" | "private", bytes: Uint8Array) {
    this.type = type;
    this.algorithm = { name: kem };
    this[KEY_TAG] = bytes;
  }
  toJSON(): unknown {
    return { type: this.type, algorithm: this.algorithm.name, key: "[redacted]" };
  }
  [Symbol.for("Deno.customInspect")](): string {
    return `HpkeKey { type: ${this.type}, algorithm: ${this.algorithm.name}, key: [redacted] }`;
  }
}

function keyBytes(k: unknown, kem: FastKemName, type: "public" | "private"): Uint8Array {
  if (!(k instanceof HpkeKey) || k.type !== type || k.algorithm.name !== kem) {
    throw new CryptoError(`Expected an ${kem} ${type} key from this provider`);
  }
  return k[KEY_TAG];
}

interface KemOps {
  readonly secretLength: number;
  readonly publicLength: number;
  readonly privateLength: number;
  encap(pk: Uint8Array): { sharedSecret: Uint8Array; enc: Uint8Array };
  decap(sk: Uint8Array, enc: Uint8Array): Uint8Array;
  publicOf(sk: Uint8Array): Uint8Array;
  derive(ikm: Uint8Array): Uint8Array;
}

function dhkemX25519(sha256: HashFns): KemOps {
  const kemLabels = new Labeled(
    sha256,
    cat(te.encode("KEM"), u16(KEM_ID["DHKEM-X25519-HKDF-SHA256"])),
  );
  const extractAndExpand = (dh: Uint8Array, kemContext: Uint8Array): Uint8Array => {
    const prk = kemLabels.extract(EMPTY, "eae_prk", dh);
    const ss = kemLabels.expand(prk, "shared_secret", kemContext, 32);
    prk.fill(0);
    return ss;
  };
  return {
    secretLength: 32,
    publicLength: 32,
    privateLength: 32,
    encap(pkR) {
      const skE = random(32);
      const enc = x25519Public(skE);
      const dh = x25519(skE, pkR);
      skE.fill(0);
      const sharedSecret = extractAndExpand(dh, cat(enc, pkR));
      dh.fill(0);
      return { sharedSecret, enc };
    },
    decap(skR, enc) {
      if (enc.length !== 32) throw new Error("Invalid X25519 enc length");
      const dh = x25519(skR, enc);
      const ss = extractAndExpand(dh, cat(enc, x25519Public(skR)));
      dh.fill(0);
      return ss;
    },
    publicOf: x25519Public,
    derive(ikm) {
      // RFC 9180 section 7.1.3: X25519 private keys need no rejection sampling.
      const prk = kemLabels.extract(EMPTY, "dkp_prk", ikm);
      const sk = kemLabels.expand(prk, "sk", EMPTY, 32);
      prk.fill(0);
      return sk;
    },
  };
}

function xwingKem(): KemOps {
  return {
    secretLength: XWING.sharedSecretLength,
    publicLength: XWING.publicKeyLength,
    privateLength: XWING.privateKeyLength,
    encap: xwingEncap,
    decap: xwingDecap,
    publicOf: xwingPublic,
    derive: xwingDeriveSecret,
  };
}

/** Parameters of {@link makeFastHpke}. */
export interface FastHpkeParams {
  kem: FastKemName;
  /** The HPKE KDF's hash functions. */
  kdf: HashFns;
  /** SHA-256 functions, for DHKEM(X25519, HKDF-SHA256). */
  sha256: HashFns;
  aead: AeadName;
}

/** ts-mls `Hpke` over the fast primitives, for the KEM, KDF and AEAD in `params`. */
export function makeFastHpke(params: FastHpkeParams): Hpke {
  const { kem: kemName, kdf, aead } = params;
  const kem = kemName === "X-Wing" ? xwingKem() : dhkemX25519(params.sha256);
  const labels = new Labeled(
    kdf,
    cat(te.encode("HPKE"), u16(KEM_ID[kemName]), u16(KDF_ID[kdf.name]), u16(AEAD_ID[aead])),
  );
  const nk = AEAD_KEY_LENGTH[aead];
  const nh = kdf.length;
  const pskIdHash = labels.extract(EMPTY, "psk_id_hash", EMPTY);

  const keySchedule = (sharedSecret: Uint8Array, info: Uint8Array) => {
    const infoHash = labels.extract(EMPTY, "info_hash", info);
    const context = cat(Uint8Array.of(0), pskIdHash, infoHash);
    const secret = labels.extract(sharedSecret, "secret", EMPTY);
    const key = labels.expand(secret, "key", context, nk);
    const nonce = labels.expand(secret, "base_nonce", context, AEAD_NONCE_LENGTH);
    return {
      key,
      nonce,
      exporter: () => labels.expand(secret, "exp", context, nh),
      done: () => secret.fill(0),
    };
  };

  const wrap = <T>(f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(e instanceof CryptoError ? e : new CryptoError(`${e}`));
    }
  };

  const mkPublic = (b: Uint8Array) => new HpkeKey(kemName, "public", b) as unknown as PublicKey;
  const mkPrivate = (b: Uint8Array) => new HpkeKey(kemName, "private", b) as unknown as PrivateKey;

  return {
    open(privateKey, kemOutput, ciphertext, info, aad) {
      return wrap(() => {
        const ss = kem.decap(keyBytes(privateKey, kemName, "private"), kemOutput);
        const ks = keySchedule(ss, info);
        ss.fill(0);
        ks.done();
        try {
          return aeadOpen(aead, ks.key, ks.nonce, aad ?? EMPTY, ciphertext);
        } finally {
          ks.key.fill(0);
        }
      });
    },
    seal(publicKey, plaintext, info, aad) {
      return wrap(() => {
        const { sharedSecret, enc } = kem.encap(keyBytes(publicKey, kemName, "public"));
        const ks = keySchedule(sharedSecret, info);
        sharedSecret.fill(0);
        ks.done();
        const ct = aeadSeal(aead, ks.key, ks.nonce, aad ?? EMPTY, plaintext);
        ks.key.fill(0);
        return { ct, enc };
      });
    },
    exportSecret(publicKey, exporterContext, length, info) {
      return wrap(() => {
        const { sharedSecret, enc } = kem.encap(keyBytes(publicKey, kemName, "public"));
        const ks = keySchedule(sharedSecret, info);
        sharedSecret.fill(0);
        ks.key.fill(0);
        const exp = ks.exporter();
        ks.done();
        const secret = labels.expand(exp, "sec", exporterContext, length);
        exp.fill(0);
        return { enc, secret };
      });
    },
    importSecret(privateKey, exporterContext, kemOutput, length, info) {
      return wrap(() => {
        const ss = kem.decap(keyBytes(privateKey, kemName, "private"), kemOutput);
        const ks = keySchedule(ss, info);
        ss.fill(0);
        ks.key.fill(0);
        const exp = ks.exporter();
        ks.done();
        const secret = labels.expand(exp, "sec", exporterContext, length);
        exp.fill(0);
        return secret;
      });
    },
    importPrivateKey(k) {
      return wrap(() => {
        if (k.length !== kem.privateLength) {
          throw new CryptoError("Invalid HPKE private key length");
        }
        return mkPrivate(k.slice());
      });
    },
    importPublicKey(k) {
      return wrap(() => {
        if (k.length !== kem.publicLength) throw new CryptoError("Invalid HPKE public key length");
        return mkPublic(k.slice());
      });
    },
    exportPublicKey(k) {
      return wrap(() => keyBytes(k, kemName, "public").slice());
    },
    exportPrivateKey(k) {
      return wrap(() => keyBytes(k, kemName, "private").slice());
    },
    encryptAead(key, nonce, aad, plaintext) {
      return wrap(() => aeadSeal(aead, key, nonce, aad ?? EMPTY, plaintext));
    },
    decryptAead(key, nonce, aad, ciphertext) {
      return wrap(() => aeadOpen(aead, key, nonce, aad ?? EMPTY, ciphertext));
    },
    deriveKeyPair(ikm) {
      return wrap(() => {
        const sk = kem.derive(ikm);
        return { privateKey: mkPrivate(sk), publicKey: mkPublic(kem.publicOf(sk)) };
      });
    },
    generateKeyPair() {
      return wrap(() => {
        const sk = random(kem.privateLength);
        return { privateKey: mkPrivate(sk), publicKey: mkPublic(kem.publicOf(sk)) };
      });
    },
    keyLength: nk,
    nonceLength: AEAD_NONCE_LENGTH,
  };
}
