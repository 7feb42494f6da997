/**
 * Sealed-envelope cost against raw X-Wing as the baseline.
 *
 * Groups `seal` and `open` each show:
 * - noble `ml_kem768_x25519` encapsulate / decapsulate (baseline: the library X-Wing),
 * - qpq's own X-Wing (`xwingEncapsulate` / `XWingSecretKey.decapsulate`),
 * - `sealEnvelope` / `openEnvelope` (100-byte plaintext), which add HKDF and the AEAD.
 *
 * The envelope's overhead over raw X-Wing is envelope ÷ qpq X-Wing; run with
 * `deno bench --allow-read bench/envelope_bench.ts`.
 */

import { ml_kem768_x25519 } from "@noble/post-quantum/hybrid.js";
import {
  generateEnvelopeKeyPair,
  openEnvelope,
  sealEnvelope,
  xwingEncapsulate,
} from "../src/crypto/mod.ts";

const { publicKey, secretKey } = generateEnvelopeKeyPair();
const seed = secretKey.exportSeed();
const noblePk = ml_kem768_x25519.getPublicKey(seed);
const plaintext = new Uint8Array(100).fill(7);
const aad = new Uint8Array(16);
const envelope = sealEnvelope(publicKey, plaintext, aad);
const nobleCt = ml_kem768_x25519.encapsulate(noblePk).cipherText;
const ourCt = xwingEncapsulate(publicKey).cipherText;

Deno.bench({
  name: "noble ml_kem768_x25519.encapsulate",
  group: "seal",
  baseline: true,
  fn: () => {
    ml_kem768_x25519.encapsulate(noblePk);
  },
});
Deno.bench({
  name: "qpq xwingEncapsulate",
  group: "seal",
  fn: () => {
    xwingEncapsulate(publicKey);
  },
});
Deno.bench({
  name: "sealEnvelope (100 B)",
  group: "seal",
  fn: () => {
    sealEnvelope(publicKey, plaintext, aad);
  },
});

Deno.bench({
  name: "noble ml_kem768_x25519.decapsulate",
  group: "open",
  baseline: true,
  fn: () => {
    ml_kem768_x25519.decapsulate(nobleCt, seed);
  },
});
Deno.bench({
  name: "qpq XWingSecretKey.decapsulate",
  group: "open",
  fn: () => {
    secretKey.decapsulate(ourCt);
  },
});
Deno.bench({
  name: "openEnvelope (100 B)",
  group: "open",
  fn: () => {
    openEnvelope(secretKey, envelope, aad);
  },
});
