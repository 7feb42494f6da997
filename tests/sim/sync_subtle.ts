/**
 * In memory mode, WebCrypto's digest, HMAC and AES-GCM (used by ts-mls and HPKE) are
 * replaced by @noble's pure implementations, so their promises resolve as microtasks of the
 * call, never as a real thread-pool completion some real time later. A completion in real
 * time let the virtual clock jump (nothing moved for a few turns) or let another client's
 * work run first, differently from run to run: with 12 clients a seed diverged after about
 * 40 steps. The results are the same bytes (the algorithms are standard); other algorithms
 * and key formats go to the real WebCrypto. Test-only: never installed outside tests/sim.
 *
 * @module
 */
import { gcm } from "@noble/ciphers/aes.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";

type Hash = Parameters<typeof hmac>[0];
const HASHES: Record<string, Hash> = {
  "SHA-256": sha256,
  "SHA-384": sha384,
  "SHA-512": sha512,
};

/** A key the shim made: raw bytes and what they are for. */
interface ShimKey {
  readonly shim: "hmac" | "aes-gcm";
  readonly raw: Uint8Array<ArrayBuffer>;
  readonly hash?: Hash;
}

const KEYS = new WeakSet<object>();

function bytes(d: BufferSource): Uint8Array<ArrayBuffer> {
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
  return new Uint8Array(d as ArrayBuffer).slice();
}

function out(u: Uint8Array): ArrayBuffer {
  return u.slice().buffer as ArrayBuffer;
}

function algName(a: AlgorithmIdentifier | { name: string }): string {
  return (typeof a === "string" ? a : a.name).toUpperCase();
}

function hashOf(h: unknown): Hash | undefined {
  const name = typeof h === "string" ? h : (h as { name?: string } | undefined)?.name;
  return name ? HASHES[name.toUpperCase()] : undefined;
}

function isShim(k: unknown): k is ShimKey {
  return typeof k === "object" && k !== null && KEYS.has(k);
}

let installed = false;

/** Install the shim on `crypto.subtle` (idempotent). */
export function installSyncSubtle(): void {
  if (installed) return;
  installed = true;
  const s = crypto.subtle as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const real = {
    digest: s.digest!.bind(s),
    importKey: s.importKey!.bind(s),
    sign: s.sign!.bind(s),
    verify: s.verify!.bind(s),
    encrypt: s.encrypt!.bind(s),
    decrypt: s.decrypt!.bind(s),
  };
  s.digest = (alg, data) => {
    const h = hashOf(alg);
    if (!h) return real.digest(alg, data);
    return Promise.resolve(out(h(bytes(data as BufferSource))));
  };
  s.importKey = (format, raw, alg, ...rest) => {
    const name = algName(alg as AlgorithmIdentifier);
    if (format === "raw" && name === "HMAC") {
      const hash = hashOf((alg as { hash?: unknown }).hash);
      if (hash) {
        const k: ShimKey = { shim: "hmac", raw: bytes(raw as BufferSource), hash };
        KEYS.add(k);
        return Promise.resolve(k);
      }
    }
    if (format === "raw" && name === "AES-GCM") {
      const k: ShimKey = { shim: "aes-gcm", raw: bytes(raw as BufferSource) };
      KEYS.add(k);
      return Promise.resolve(k);
    }
    return real.importKey(format, raw, alg, ...rest);
  };
  s.sign = (alg, key, data) => {
    if (!isShim(key) || key.shim !== "hmac") return real.sign(alg, key, data);
    return Promise.resolve(out(hmac(key.hash!, key.raw, bytes(data as BufferSource))));
  };
  s.verify = (alg, key, sig, data) => {
    if (!isShim(key) || key.shim !== "hmac") return real.verify(alg, key, sig, data);
    const want = hmac(key.hash!, key.raw, bytes(data as BufferSource));
    const got = bytes(sig as BufferSource);
    let diff = want.length ^ got.length;
    for (let i = 0; i < want.length; i++) diff |= want[i]! ^ (got[i] ?? 0);
    return Promise.resolve(diff === 0);
  };
  const aead = (enc: boolean) => (params: unknown, key: unknown, data: unknown) => {
    if (!isShim(key) || key.shim !== "aes-gcm") {
      return enc ? real.encrypt(params, key, data) : real.decrypt(params, key, data);
    }
    const p = params as AesGcmParams;
    const c = gcm(
      key.raw,
      bytes(p.iv),
      p.additionalData ? bytes(p.additionalData) : undefined,
    );
    try {
      const r = enc
        ? c.encrypt(bytes(data as BufferSource))
        : c.decrypt(bytes(data as BufferSource));
      return Promise.resolve(out(r));
    } catch {
      return Promise.reject(new DOMException("Decryption failed", "OperationError"));
    }
  };
  s.encrypt = aead(true);
  s.decrypt = aead(false);
}
