/**
 * Hybrid KEM conformance: qpq's X-Wing (src/crypto/xwing.ts) against the RustCrypto X-Wing
 * vectors (draft-connolly-cfrg-xwing-kem) and noble's MLKEM768X25519 vectors, and noble's
 * own `ml_kem768_x25519` / KitchenSink presets against theirs. Read in place from
 * ../shared/test-vectors/.
 */

import assert from "node:assert/strict";
import { KitchenSink_ml_kem768_x25519, ml_kem768_x25519 } from "@noble/post-quantum/hybrid.js";
import { fromHex, randomBytes, toHex } from "../src/bytes.ts";
import { CryptoError } from "../src/errors.ts";
import { xwingEncapsulate, XWingSecretKey } from "../src/crypto/mod.ts";
import { readVectorJson } from "./_support/vectors.ts";

interface HybridVector {
  seed: string;
  eseed?: string;
  randomness?: string;
  pk: string;
  sk: string;
  ct: string;
  ss: string;
}

function checkOurXWing(file: string): number {
  const vectors: HybridVector[] = readVectorJson(file);
  let n = 0;
  for (const v of vectors) {
    const id = `${file} #${n}`;
    const sk = XWingSecretKey.fromSeed(fromHex(v.seed));
    assert.equal(toHex(sk.publicKey), v.pk, `${id} pk`);
    assert.equal(toHex(sk.exportSeed()), v.sk, `${id} sk`);
    const enc = xwingEncapsulate(fromHex(v.pk), fromHex(v.eseed ?? v.randomness!));
    assert.equal(toHex(enc.cipherText), v.ct, `${id} ct`);
    assert.equal(toHex(enc.sharedSecret), v.ss, `${id} ss (encaps)`);
    assert.equal(toHex(sk.decapsulate(fromHex(v.ct))), v.ss, `${id} ss (decaps)`);
    // noble's ml_kem768_x25519 is the same construction, byte for byte.
    const nk = ml_kem768_x25519.keygen(fromHex(v.seed));
    assert.equal(toHex(nk.publicKey), v.pk, `${id} noble pk`);
    assert.equal(toHex(ml_kem768_x25519.decapsulate(fromHex(v.ct), nk.secretKey)), v.ss);
    n++;
  }
  return n;
}

Deno.test("xwingEncapsulate and XWingSecretKey match the X-Wing draft vectors", () => {
  const n = checkOurXWing("hybrid/x-wing.json");
  assert.equal(n, 3);
  console.log("x-wing.json cases", n);
});

Deno.test("xwingEncapsulate and XWingSecretKey match noble's MLKEM768X25519 (X-Wing) vectors", () => {
  const n = checkOurXWing("hybrid/MLKEM768X25519.json");
  assert.equal(n, 10);
  console.log("MLKEM768X25519.json cases", n);
});

Deno.test("noble KitchenSink_ml_kem768_x25519 matches its KitchenSink vectors", () => {
  // qpq does not use KitchenSink; this only records that the library's preset conforms.
  const vectors: HybridVector[] = readVectorJson(
    "hybrid/KitchenSink-MLKEM768-X25519-SHAKE256-HKDF-SHA256.json",
  );
  let n = 0;
  for (const v of vectors) {
    const { publicKey, secretKey } = KitchenSink_ml_kem768_x25519.keygen(fromHex(v.seed));
    assert.equal(toHex(publicKey), v.pk);
    assert.equal(toHex(secretKey), v.sk);
    const enc = KitchenSink_ml_kem768_x25519.encapsulate(publicKey, fromHex(v.randomness!));
    assert.equal(toHex(enc.cipherText), v.ct);
    assert.equal(toHex(enc.sharedSecret), v.ss);
    assert.equal(toHex(KitchenSink_ml_kem768_x25519.decapsulate(enc.cipherText, secretKey)), v.ss);
    n++;
  }
  assert.equal(n, 3);
});

Deno.test("XWingSecretKey agrees with noble ml_kem768_x25519 on random and tampered ciphertexts", () => {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const seed = randomBytes(32);
    const ours = XWingSecretKey.fromSeed(seed);
    const theirs = ml_kem768_x25519.keygen(seed);
    assert.equal(toHex(ours.publicKey), toHex(theirs.publicKey));
    // Ours to theirs and theirs to ours.
    const a = xwingEncapsulate(theirs.publicKey);
    assert.equal(
      toHex(ml_kem768_x25519.decapsulate(a.cipherText, theirs.secretKey)),
      toHex(a.sharedSecret),
    );
    const b = ml_kem768_x25519.encapsulate(theirs.publicKey);
    assert.equal(toHex(ours.decapsulate(b.cipherText)), toHex(b.sharedSecret));
    // A flipped ML-KEM byte triggers implicit rejection; both must derive the same value.
    const tampered = b.cipherText.slice();
    tampered[i * 100]! ^= 0x01;
    const ourReject = toHex(ours.decapsulate(tampered));
    assert.equal(ourReject, toHex(ml_kem768_x25519.decapsulate(tampered, theirs.secretKey)));
    assert.notEqual(ourReject, toHex(b.sharedSecret));
    n++;
  }
  assert.equal(n, 8);
});

Deno.test("XWingSecretKey.decapsulate rejects wrong lengths and low-order X25519 shares", () => {
  const sk = XWingSecretKey.generate();
  const { cipherText } = xwingEncapsulate(sk.publicKey);
  assert.throws(() => sk.decapsulate(cipherText.subarray(1)), CryptoError);
  assert.throws(() => sk.decapsulate(new Uint8Array(1121)), CryptoError);
  const lowOrder = cipherText.slice();
  lowOrder.fill(0, 1088); // u = 0: a low-order point, X25519 result all zero
  assert.throws(() => sk.decapsulate(lowOrder), CryptoError);
  const badPk = sk.publicKey;
  badPk.fill(0, 1184);
  assert.throws(() => xwingEncapsulate(badPk), CryptoError);
  assert.throws(() => xwingEncapsulate(sk.publicKey.subarray(1)), CryptoError);
  assert.throws(() => xwingEncapsulate(sk.publicKey, new Uint8Array(63)), CryptoError);
});
