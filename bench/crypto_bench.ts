/**
 * Primitive speeds with their pure-JavaScript baselines in the same group:
 * - Ed25519 sign / verify: qpq (native node:crypto) vs noble `ed25519` (baseline);
 * - XChaCha20-Poly1305 seal / open at 100 B and 64 KiB: qpq (noble hchacha + native
 *   ChaCha20-Poly1305) vs noble `xchacha20poly1305` (baseline);
 * - Argon2id at the default parameters (19 MiB, t=2, p=1), the cost of one unlock: qpq
 *   (hash-wasm WebAssembly) vs noble `argon2idAsync` (baseline).
 *
 * Run with `deno bench --allow-read bench/crypto_bench.ts`.
 */

import { ed25519 } from "@noble/curves/ed25519.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { argon2idAsync } from "@noble/hashes/argon2.js";
import {
  DEFAULT_ARGON2ID_PARAMS,
  deriveKeyFromPassword,
  IdentityKeyPair,
  openXChaCha,
  sealXChaCha,
  verifySignature,
  xchachaSeal,
} from "../src/crypto/mod.ts";

const kp = IdentityKeyPair.generate();
const seed = kp.exportPrivateKey();
const pub = kp.publicKey;
const msg = new Uint8Array(100).fill(1);
const sig = kp.sign(msg);

Deno.bench({
  name: "noble ed25519.sign",
  group: "ed25519 sign",
  baseline: true,
  fn: () => {
    ed25519.sign(msg, seed);
  },
});
Deno.bench({
  name: "qpq IdentityKeyPair.sign",
  group: "ed25519 sign",
  fn: () => {
    kp.sign(msg);
  },
});
Deno.bench({
  name: "noble ed25519.verify",
  group: "ed25519 verify",
  baseline: true,
  fn: () => {
    ed25519.verify(sig, msg, pub);
  },
});
Deno.bench({
  name: "qpq verifySignature",
  group: "ed25519 verify",
  fn: () => {
    verifySignature(pub, msg, sig);
  },
});

const key = new Uint8Array(32).fill(9);
const nonce = new Uint8Array(24).fill(3);
const aad = new Uint8Array(16);
for (const [label, size] of [["100 B", 100], ["64 KiB", 65536]] as const) {
  const pt = new Uint8Array(size).fill(5);
  const sealed = sealXChaCha(key, pt, aad);
  const nobleCt = xchacha20poly1305(key, nonce, aad).encrypt(pt);
  Deno.bench({
    name: `noble xchacha20poly1305 encrypt ${label}`,
    group: `xchacha seal ${label}`,
    baseline: true,
    fn: () => {
      xchacha20poly1305(key, nonce, aad).encrypt(pt);
    },
  });
  Deno.bench({
    name: `qpq sealXChaCha ${label}`,
    group: `xchacha seal ${label}`,
    fn: () => {
      sealXChaCha(key, pt, aad);
    },
  });
  Deno.bench({
    name: `qpq xchachaSeal (explicit nonce) ${label}`,
    group: `xchacha seal ${label}`,
    fn: () => {
      xchachaSeal(key, nonce, pt, aad);
    },
  });
  Deno.bench({
    name: `noble xchacha20poly1305 decrypt ${label}`,
    group: `xchacha open ${label}`,
    baseline: true,
    fn: () => {
      xchacha20poly1305(key, nonce, aad).decrypt(nobleCt);
    },
  });
  Deno.bench({
    name: `qpq openXChaCha ${label}`,
    group: `xchacha open ${label}`,
    fn: () => {
      openXChaCha(key, sealed, aad);
    },
  });
}

const salt = new Uint8Array(16).fill(4);
const password = "correct horse battery staple";
Deno.bench({
  name: "noble argon2idAsync (m=19 MiB t=2 p=1)",
  group: "argon2id",
  baseline: true,
  n: 3,
  warmup: 0,
  fn: async () => {
    await argon2idAsync(password, salt, { m: 19 * 1024, t: 2, p: 1, dkLen: 32 });
  },
});
Deno.bench({
  name: "qpq deriveKeyFromPassword (Argon2id m=19 MiB t=2 p=1)",
  group: "argon2id",
  n: 10,
  warmup: 1,
  fn: async () => {
    await deriveKeyFromPassword(password, salt, DEFAULT_ARGON2ID_PARAMS);
  },
});
