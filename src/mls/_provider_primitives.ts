/**
 * Fast synchronous primitives behind the qpq ts-mls provider: hashes, HMAC, HKDF, AEAD,
 * Ed25519, X25519 and X-Wing. Everything here is built on Deno's synchronous `node:crypto`
 * (OpenSSL) except ML-KEM-768, which comes from `@noble/post-quantum`.
 *
 * Private to src/mls.
 *
 * @module
 */

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type KeyObject,
  randomFillSync,
  sign as nodeSign,
  timingSafeEqual,
  verify as nodeVerify,
} from "node:crypto";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { createSHA256, createSHA384, createSHA512, type IHasher } from "hash-wasm";

/** Hash algorithm names as ts-mls spells them. */
export type HashName = "SHA-256" | "SHA-384" | "SHA-512";

/** AEAD algorithm names as ts-mls spells them. */
export type AeadName = "AES128GCM" | "AES256GCM" | "CHACHA20POLY1305";

const NODE_HASH: Record<HashName, string> = {
  "SHA-256": "sha256",
  "SHA-384": "sha384",
  "SHA-512": "sha512",
};

/** Output length in bytes of each hash. */
export const HASH_LENGTH: Record<HashName, number> = {
  "SHA-256": 32,
  "SHA-384": 48,
  "SHA-512": 64,
};

// The GCM overload of createCipheriv also fits ChaCha20-Poly1305 (same options and methods).
const NODE_AEAD: Record<AeadName, "aes-128-gcm"> = {
  AES128GCM: "aes-128-gcm",
  AES256GCM: "aes-256-gcm" as "aes-128-gcm",
  CHACHA20POLY1305: "chacha20-poly1305" as "aes-128-gcm",
};

/** Key length in bytes of each AEAD. */
export const AEAD_KEY_LENGTH: Record<AeadName, number> = {
  AES128GCM: 16,
  AES256GCM: 32,
  CHACHA20POLY1305: 32,
};

/** Nonce length in bytes of every supported AEAD. */
export const AEAD_NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

/** A plain Uint8Array view of a node Buffer (no copy, no Buffer-specific semantics). */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Digest of `data` with node:crypto (used where no {@link HashFns} is at hand). */
export function digest(h: HashName, data: Uint8Array): Uint8Array {
  return plain(createHash(NODE_HASH[h]).update(data).digest());
}

/**
 * Hash, HMAC and HKDF for one hash function, run synchronously in a hash-wasm instance
 * (a WebAssembly SHA-2 is 1.5-2x faster than node:crypto's per call for the short inputs
 * MLS hashes, and its HMAC avoids node's JavaScript HMAC wrapper and Buffer copies).
 */
export interface HashFns {
  readonly name: HashName;
  readonly length: number;
  digest(data: Uint8Array): Uint8Array;
  hmac(key: Uint8Array, data: Uint8Array): Uint8Array;
  verifyHmac(key: Uint8Array, mac: Uint8Array, data: Uint8Array): boolean;
  /** HKDF-Extract (RFC 5869); an empty salt equals a zero salt of hash length. */
  extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  /** HKDF-Expand (RFC 5869). */
  expand(prk: Uint8Array, info: Uint8Array, len: number): Uint8Array;
}

const WASM_FACTORY: Record<HashName, () => Promise<IHasher>> = {
  "SHA-256": createSHA256,
  "SHA-384": createSHA384,
  "SHA-512": createSHA512,
};

function makeHashFns(h: HashName, w: IHasher): HashFns {
  const hl = HASH_LENGTH[h];
  const block = w.blockSize;
  const ipad = new Uint8Array(block);
  const opad = new Uint8Array(block);
  const counter = new Uint8Array(1);

  const hashOnce = (data: Uint8Array): Uint8Array => {
    w.init();
    w.update(data);
    return w.digest("binary");
  };

  // HMAC(key, parts...) = H(opad ^ key || H(ipad ^ key || parts...)); parts avoid concatenation.
  const hmacParts = (key: Uint8Array, a: Uint8Array, b?: Uint8Array, c?: Uint8Array) => {
    const k = key.length > block ? hashOnce(key) : key;
    ipad.fill(0x36);
    opad.fill(0x5c);
    for (let i = 0; i < k.length; i++) {
      ipad[i]! ^= k[i]!;
      opad[i]! ^= k[i]!;
    }
    w.init();
    w.update(ipad);
    w.update(a);
    if (b !== undefined) w.update(b);
    if (c !== undefined) w.update(c);
    const inner = w.digest("binary");
    w.init();
    w.update(opad);
    w.update(inner);
    const out = w.digest("binary");
    inner.fill(0);
    ipad.fill(0);
    opad.fill(0);
    if (k !== key) k.fill(0);
    return out;
  };

  const hmac = (key: Uint8Array, data: Uint8Array) => hmacParts(key, data);

  return {
    name: h,
    length: hl,
    digest: hashOnce,
    hmac,
    verifyHmac(key, mac, data) {
      const expected = hmac(key, data);
      return expected.length === mac.length && timingSafeEqual(expected, mac);
    },
    extract: (salt, ikm) => hmacParts(salt, ikm),
    expand(prk, info, len) {
      if (len > 255 * hl) throw new RangeError("HKDF output length too large");
      if (len <= hl) {
        counter[0] = 1;
        const t = hmacParts(prk, info, counter);
        if (len === hl) return t;
        const out = t.slice(0, len);
        t.fill(0);
        return out;
      }
      const out = new Uint8Array(len);
      let prev: Uint8Array = new Uint8Array(0);
      for (let i = 1, off = 0; off < len; i++, off += hl) {
        counter[0] = i;
        const t = hmacParts(prk, prev, info, counter);
        prev.fill(0);
        prev = t;
        out.set(t.subarray(0, Math.min(hl, len - off)), off);
      }
      prev.fill(0);
      return out;
    },
  };
}

const hashFnsCache = new Map<HashName, Promise<HashFns>>();

/** The {@link HashFns} for `h`; the WebAssembly instance is created once per process. */
export function getHashFns(h: HashName): Promise<HashFns> {
  let p = hashFnsCache.get(h);
  if (p === undefined) {
    p = WASM_FACTORY[h]().then((w) => makeHashFns(h, w));
    hashFnsCache.set(h, p);
  }
  return p;
}

/** AEAD seal: ciphertext with the 16-byte tag appended. */
export function aeadSeal(
  a: AeadName,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const c = createCipheriv(NODE_AEAD[a], key, nonce, { authTagLength: TAG_LENGTH });
  if (aad.length > 0) c.setAAD(aad);
  const body = c.update(plaintext);
  const fin = c.final();
  const tag = c.getAuthTag();
  const out = new Uint8Array(body.length + fin.length + TAG_LENGTH);
  out.set(body, 0);
  out.set(fin, body.length);
  out.set(tag, body.length + fin.length);
  return out;
}

/** AEAD open; throws when the tag does not verify. */
export function aeadOpen(
  a: AeadName,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  if (ciphertext.length < TAG_LENGTH) throw new Error("Ciphertext too short");
  const d = createDecipheriv(NODE_AEAD[a], key, nonce, { authTagLength: TAG_LENGTH });
  d.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_LENGTH));
  if (aad.length > 0) d.setAAD(aad);
  const body = d.update(ciphertext.subarray(0, ciphertext.length - TAG_LENGTH));
  const fin = d.final();
  if (fin.length === 0) return plain(body);
  const out = new Uint8Array(body.length + fin.length);
  out.set(body, 0);
  out.set(fin, body.length);
  return out;
}

/** Fresh random bytes from the OS CSPRNG. */
export function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  randomFillSync(out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Key objects for Ed25519 and X25519, cached.

// deno-fmt-ignore
const ED25519_PKCS8 = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
);
// deno-fmt-ignore
const ED25519_SPKI = Uint8Array.of(
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
);
// deno-fmt-ignore
const X25519_PKCS8 = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
);
// deno-fmt-ignore
const X25519_SPKI = Uint8Array.of(
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
);

function withPrefix(prefix: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + key.length);
  out.set(prefix, 0);
  out.set(key, prefix.length);
  return out;
}

/** Latin-1 string of the bytes: a cheap, exact Map key. */
function mapKey(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/**
 * A small bounded cache. When full it is emptied: simple, and correct for the working sets
 * MLS has (a few hundred member keys per group, one own signing key).
 */
class KeyCache {
  readonly #max: number;
  readonly #map = new Map<string, KeyObject>();
  constructor(max: number) {
    this.#max = max;
  }
  get(k: string): KeyObject | undefined {
    return this.#map.get(k);
  }
  set(k: string, v: KeyObject): void {
    if (this.#map.size >= this.#max) this.#map.clear();
    this.#map.set(k, v);
  }
}

/** Public keys are not secret: cache by their bytes. */
const edPublicCache = new KeyCache(4096);
/** Private keys are cached by a SHA-256 of their bytes, so no secret is kept as a string. */
const edPrivateCache = new KeyCache(64);

function edPublicKey(pub: Uint8Array): KeyObject {
  const k = mapKey(pub);
  let ko = edPublicCache.get(k);
  if (ko === undefined) {
    ko = createPublicKey({
      key: withPrefix(ED25519_SPKI, pub) as Buffer,
      format: "der",
      type: "spki",
    });
    edPublicCache.set(k, ko);
  }
  return ko;
}

/**
 * Fast path: the same signing-key array object ts-mls passes on every message. The entry
 * keeps a copy of the bytes to notice a zeroed or reused array; it lives no longer than
 * the array itself.
 */
const edPrivateByArray = new WeakMap<Uint8Array, { copy: Uint8Array; key: KeyObject }>();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]! ^ b[i]!;
  return acc === 0;
}

function edPrivateKey(signKey: Uint8Array): KeyObject {
  const hit = edPrivateByArray.get(signKey);
  if (hit !== undefined && sameBytes(hit.copy, signKey)) return hit.key;
  // ts-mls's default provider hands out PKCS#8 (48 bytes); noble and the vectors use raw 32.
  let der: Uint8Array;
  if (signKey.length === 32) der = withPrefix(ED25519_PKCS8, signKey);
  else if (signKey.length === 48) der = signKey;
  else throw new Error("Invalid Ed25519 signing key length");
  const k = mapKey(digest("SHA-256", der));
  let ko = edPrivateCache.get(k);
  if (ko === undefined) {
    ko = createPrivateKey({ key: der as Buffer, format: "der", type: "pkcs8" });
    if (ko.asymmetricKeyType !== "ed25519") throw new Error("Not an Ed25519 key");
    edPrivateCache.set(k, ko);
  }
  if (der !== signKey) der.fill(0);
  if (hit !== undefined) hit.copy.fill(0);
  edPrivateByArray.set(signKey, { copy: signKey.slice(), key: ko });
  return ko;
}

/** Ed25519 signature of `message` (RFC 8032, pure). */
export function ed25519Sign(signKey: Uint8Array, message: Uint8Array): Uint8Array {
  return plain(nodeSign(null, message, edPrivateKey(signKey)));
}

/** Ed25519 verification; false (never a throw) for malformed keys or signatures. */
export function ed25519Verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return nodeVerify(null, message, edPublicKey(publicKey), signature);
  } catch {
    return false;
  }
}

/** A fresh Ed25519 key pair: 32-byte raw private key and 32-byte public key. */
export function ed25519Keygen(): { signKey: Uint8Array; publicKey: Uint8Array } {
  const signKey = random(32);
  return { signKey, publicKey: ed25519PublicFromPrivate(signKey) };
}

/** The Ed25519 public key of a raw 32-byte private key. */
export function ed25519PublicFromPrivate(signKey: Uint8Array): Uint8Array {
  const spki = createPublicKey(edPrivateKey(signKey)).export({ format: "der", type: "spki" });
  return plain(spki).slice(ED25519_SPKI.length);
}

const xPublicCache = new KeyCache(4096);

function xPublicKey(pub: Uint8Array): KeyObject {
  const k = mapKey(pub);
  let ko = xPublicCache.get(k);
  if (ko === undefined) {
    ko = createPublicKey({
      key: withPrefix(X25519_SPKI, pub) as Buffer,
      format: "der",
      type: "spki",
    });
    xPublicCache.set(k, ko);
  }
  return ko;
}

function xPrivateKey(sk: Uint8Array): KeyObject {
  const der = withPrefix(X25519_PKCS8, sk);
  try {
    return createPrivateKey({ key: der as Buffer, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

/** X25519(sk, pk); throws when the result is all zero (small-order point). */
export function x25519(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  if (sk.length !== 32 || pk.length !== 32) throw new Error("Invalid X25519 key length");
  const out = plain(diffieHellman({ privateKey: xPrivateKey(sk), publicKey: xPublicKey(pk) }));
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i]!;
  if (acc === 0) throw new Error("X25519 produced the all-zero value");
  return out;
}

/** X25519 public key of a 32-byte private key. */
export function x25519Public(sk: Uint8Array): Uint8Array {
  if (sk.length !== 32) throw new Error("Invalid X25519 key length");
  const spki = createPublicKey(xPrivateKey(sk)).export({ format: "der", type: "spki" });
  return plain(spki).slice(X25519_SPKI.length);
}

// ---------------------------------------------------------------------------------------
// X-Wing (draft-connolly-cfrg-xwing-kem): ML-KEM-768 + X25519, SHA3-256 combiner.

/** X-Wing sizes in bytes. */
export const XWING = {
  publicKeyLength: 1216,
  privateKeyLength: 32,
  encLength: 1120,
  sharedSecretLength: 32,
} as const;

// "\.//^\"
const XWING_LABEL = Uint8Array.of(0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c);

interface XWingExpanded {
  skM: Uint8Array;
  skX: Uint8Array;
  pkM: Uint8Array;
  pkX: Uint8Array;
}

function xwingExpand(sk: Uint8Array): XWingExpanded {
  if (sk.length !== XWING.privateKeyLength) throw new Error("Invalid X-Wing private key length");
  const expanded = plain(createHash("shake256", { outputLength: 96 }).update(sk).digest());
  const m = ml_kem768.keygen(expanded.subarray(0, 64));
  const skX = expanded.slice(64, 96);
  expanded.fill(0);
  return { skM: m.secretKey, skX, pkM: m.publicKey, pkX: x25519Public(skX) };
}

function xwingCombine(
  ssM: Uint8Array,
  ssX: Uint8Array,
  ctX: Uint8Array,
  pkX: Uint8Array,
): Uint8Array {
  return plain(
    createHash("sha3-256").update(ssM).update(ssX).update(ctX).update(pkX).update(XWING_LABEL)
      .digest(),
  );
}

/** X-Wing public key (1216 bytes) of a 32-byte seed private key. */
export function xwingPublic(sk: Uint8Array): Uint8Array {
  const e = xwingExpand(sk);
  const pk = new Uint8Array(XWING.publicKeyLength);
  pk.set(e.pkM, 0);
  pk.set(e.pkX, e.pkM.length);
  e.skM.fill(0);
  e.skX.fill(0);
  return pk;
}

/** X-Wing DeriveKeyPair (as @hpke/hybridkem-x-wing): sk = SHAKE256(ikm, 32). */
export function xwingDeriveSecret(ikm: Uint8Array): Uint8Array {
  return plain(createHash("shake256", { outputLength: 32 }).update(ikm).digest());
}

/** X-Wing encapsulation to `pk`. */
export function xwingEncap(pk: Uint8Array): { sharedSecret: Uint8Array; enc: Uint8Array } {
  if (pk.length !== XWING.publicKeyLength) throw new Error("Invalid X-Wing public key length");
  const pkM = pk.subarray(0, 1184);
  const pkX = pk.subarray(1184);
  const ekX = random(32);
  const ctX = x25519Public(ekX);
  const ssX = x25519(ekX, pkX);
  ekX.fill(0);
  const m = ml_kem768.encapsulate(pkM);
  const enc = new Uint8Array(XWING.encLength);
  enc.set(m.cipherText, 0);
  enc.set(ctX, m.cipherText.length);
  const sharedSecret = xwingCombine(m.sharedSecret, ssX, ctX, pkX);
  m.sharedSecret.fill(0);
  ssX.fill(0);
  return { sharedSecret, enc };
}

/** X-Wing decapsulation with the 32-byte seed private key. */
export function xwingDecap(sk: Uint8Array, enc: Uint8Array): Uint8Array {
  if (enc.length !== XWING.encLength) throw new Error("Invalid X-Wing ciphertext length");
  const e = xwingExpand(sk);
  const ctM = enc.subarray(0, 1088);
  const ctX = enc.subarray(1088);
  const ssM = ml_kem768.decapsulate(ctM, e.skM);
  const ssX = x25519(e.skX, ctX);
  const ss = xwingCombine(ssM, ssX, ctX, e.pkX);
  ssM.fill(0);
  ssX.fill(0);
  e.skM.fill(0);
  e.skX.fill(0);
  return ss;
}
