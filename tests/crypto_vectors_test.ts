/**
 * Wycheproof conformance for the classical primitives qpq calls: X25519, Ed25519 verify,
 * AES-GCM, ChaCha20-Poly1305, XChaCha20-Poly1305 and HKDF-SHA256, all through src/crypto.
 * Vectors are read in place from ../shared/test-vectors/ beside the checkout.
 */

import assert from "node:assert/strict";
import { fromHex, toHex } from "../src/bytes.ts";
import { CryptoError } from "../src/errors.ts";
import {
  aesGcmOpen,
  aesGcmSeal,
  chachaOpen,
  chachaSeal,
  hkdfExpandSha256,
  hkdfExtractSha256,
  hkdfSha256,
  openXChaCha,
  verifySignature,
  x25519,
  xchachaOpen,
  xchachaSeal,
} from "../src/crypto/mod.ts";
import { readVectorJson } from "./_support/vectors.ts";

interface Tally {
  total: number;
  [k: string]: number;
}

function tally(): Tally {
  return { total: 0 };
}

function bump(t: Tally, k: string): void {
  t.total++;
  t[k] = (t[k] ?? 0) + 1;
}

function throwsCrypto(f: () => unknown, what: string): void {
  assert.throws(f, CryptoError, what);
}

Deno.test("x25519 matches every Wycheproof x25519 vector", () => {
  const data = readVectorJson("wycheproof/x25519_test.json");
  const t = tally();
  for (const g of data.testGroups) {
    for (const tc of g.tests) {
      const id = `tcId ${tc.tcId}`;
      const priv = fromHex(tc.private);
      const pub = fromHex(tc.public);
      const expected: string = tc.shared;
      let got: string | undefined;
      try {
        got = toHex(x25519(priv, pub));
      } catch (e) {
        assert.ok(e instanceof CryptoError, `${id}: non-CryptoError ${e}`);
      }
      if (tc.result === "valid") {
        assert.equal(got, expected, id);
        bump(t, "valid");
      } else if (tc.result === "acceptable") {
        if (got === undefined) {
          // Our only rejection is the all-zero shared secret (low-order public key).
          assert.equal(expected, "00".repeat(32), `${id}: rejected a non-zero result`);
          bump(t, "acceptableRejected");
        } else {
          assert.equal(got, expected, id);
          bump(t, "acceptableComputed");
        }
      } else {
        assert.equal(got, undefined, `${id}: invalid case accepted`);
        bump(t, "invalid");
      }
    }
  }
  assert.equal(t.total, data.numberOfTests);
  assert.ok(t.valid! > 200 && (t.acceptableRejected ?? 0) > 0, JSON.stringify(t));
  console.log("x25519", t);
});

Deno.test("verifySignature matches every Wycheproof Ed25519 vector", () => {
  const data = readVectorJson("wycheproof/ed25519_test.json");
  const t = tally();
  for (const g of data.testGroups) {
    const pk = fromHex(g.publicKey.pk);
    for (const tc of g.tests) {
      const ok = verifySignature(pk, fromHex(tc.msg), fromHex(tc.sig));
      assert.equal(ok, tc.result === "valid", `tcId ${tc.tcId} (${tc.comment}) ${tc.flags}`);
      bump(t, tc.result);
    }
  }
  assert.equal(t.total, data.numberOfTests);
  assert.ok(t.valid! > 0 && t.invalid! > 0);
  console.log("ed25519", t);
});

// deno-lint-ignore no-explicit-any
type AeadCase = any;
interface AeadApi {
  seal(key: Uint8Array, iv: Uint8Array, msg: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, iv: Uint8Array, ct: Uint8Array, aad: Uint8Array): Uint8Array;
}

/**
 * Runs one Wycheproof AEAD file: supported groups must match exactly (valid) or be rejected
 * (invalid); unsupported parameter groups must be refused by both seal and open.
 */
function runAead(file: string, api: AeadApi, supported: (g: AeadCase) => boolean): Tally {
  const data = readVectorJson(file);
  const t = tally();
  for (const g of data.testGroups) {
    assert.equal(g.tagSize, 128);
    for (const tc of g.tests) {
      const id = `${file} tcId ${tc.tcId}`;
      const key = fromHex(tc.key);
      const iv = fromHex(tc.iv);
      const msg = fromHex(tc.msg);
      const aad = fromHex(tc.aad);
      const ctTag = fromHex(tc.ct + tc.tag);
      if (!supported(g)) {
        throwsCrypto(() => api.seal(key, iv, msg, aad), `${id}: unsupported seal`);
        throwsCrypto(() => api.open(key, iv, ctTag, aad), `${id}: unsupported open`);
        bump(t, tc.result === "valid" ? "refusedUnsupportedValid" : "refusedUnsupportedInvalid");
        continue;
      }
      if (tc.result === "valid") {
        assert.equal(toHex(api.seal(key, iv, msg, aad)), tc.ct + tc.tag, id);
        assert.equal(toHex(api.open(key, iv, ctTag, aad)), tc.msg, id);
        bump(t, "valid");
      } else {
        throwsCrypto(() => api.open(key, iv, ctTag, aad), `${id}: invalid accepted`);
        bump(t, "invalid");
      }
    }
  }
  assert.equal(t.total, data.numberOfTests);
  return t;
}

Deno.test("aesGcmSeal and aesGcmOpen match Wycheproof AES-GCM (128/256-bit keys, 96-bit IVs)", () => {
  const t = runAead(
    "wycheproof/aes_gcm_test.json",
    { seal: aesGcmSeal, open: aesGcmOpen },
    (g) => (g.keySize === 128 || g.keySize === 256) && g.ivSize === 96,
  );
  assert.ok(t.valid! >= 70 && t.invalid! >= 50, JSON.stringify(t));
  console.log("aes-gcm", t);
});

Deno.test("chachaSeal and chachaOpen match Wycheproof ChaCha20-Poly1305", () => {
  const t = runAead(
    "wycheproof/chacha20_poly1305_test.json",
    { seal: chachaSeal, open: chachaOpen },
    (g) => g.ivSize === 96,
  );
  assert.ok(t.valid! > 200 && t.invalid! >= 60, JSON.stringify(t));
  console.log("chacha20-poly1305", t);
});

Deno.test("xchachaSeal, xchachaOpen and openXChaCha match Wycheproof XChaCha20-Poly1305", () => {
  let sealedChecked = 0;
  const t = runAead(
    "wycheproof/xchacha20_poly1305_test.json",
    {
      seal: xchachaSeal,
      open: (key, iv, ct, aad) => {
        // The random-nonce format nonce ‖ ct ‖ tag must agree with the explicit-nonce form.
        if (iv.length === 24) {
          const sealed = new Uint8Array(24 + ct.length);
          sealed.set(iv);
          sealed.set(ct, 24);
          let a: string | undefined;
          let b: string | undefined;
          try {
            a = toHex(openXChaCha(key, sealed, aad));
          } catch (e) {
            assert.ok(e instanceof CryptoError);
          }
          try {
            b = toHex(xchachaOpen(key, iv, ct, aad));
          } catch (e) {
            assert.ok(e instanceof CryptoError);
          }
          assert.equal(a, b);
          sealedChecked++;
        }
        return xchachaOpen(key, iv, ct, aad);
      },
    },
    (g) => g.ivSize === 192,
  );
  assert.ok(t.valid! > 200 && t.invalid! >= 60, JSON.stringify(t));
  assert.ok(sealedChecked > 300);
  console.log("xchacha20-poly1305", t);
});

Deno.test("hkdfSha256 matches every Wycheproof HKDF-SHA256 vector", () => {
  const data = readVectorJson("wycheproof/hkdf_sha256_test.json");
  const t = tally();
  for (const g of data.testGroups) {
    for (const tc of g.tests) {
      const id = `tcId ${tc.tcId}`;
      const ikm = fromHex(tc.ikm);
      const salt = fromHex(tc.salt);
      const info = fromHex(tc.info);
      if (tc.result === "valid") {
        assert.equal(toHex(hkdfSha256(ikm, salt, info, tc.size)), tc.okm, id);
        const prk = hkdfExtractSha256(salt, ikm);
        assert.equal(toHex(hkdfExpandSha256(prk, info, tc.size)), tc.okm, `${id} split`);
        bump(t, "valid");
      } else {
        throwsCrypto(() => hkdfSha256(ikm, salt, info, tc.size), id);
        bump(t, "invalid");
      }
    }
  }
  assert.equal(t.total, data.numberOfTests);
  assert.ok(t.valid! > 80 && t.invalid! > 0);
  console.log("hkdf-sha256", t);
});
