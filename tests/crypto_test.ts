/**
 * Behaviour of src/crypto beyond the third-party vectors: identity keys and their redaction,
 * fingerprints, AEAD failure modes, sealed envelopes and every way opening one can fail,
 * and Argon2id.
 */

import assert from "node:assert/strict";
import { argon2id as nobleArgon2id } from "@noble/hashes/argon2.js";
import { hkdf as nobleHkdf } from "@noble/hashes/hkdf.js";
import { sha256 as nobleSha256, sha512 } from "@noble/hashes/sha2.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { concat, fromHex, randomBytes, toBase64, toHex, utf8 } from "../src/bytes.ts";
import { CryptoError } from "../src/errors.ts";
import {
  DEFAULT_ARGON2ID_PARAMS,
  deriveKeyFromPassword,
  ENVELOPE_OVERHEAD_BYTES,
  envelopeSecretKeyFromSeed,
  fingerprint,
  generateEnvelopeKeyPair,
  hkdfSha256,
  hmacSha256,
  IdentityKeyPair,
  openEnvelope,
  openXChaCha,
  parseArgon2idParams,
  safetyNumber,
  sealEnvelope,
  sealXChaCha,
  sha256,
  verifySignature,
  xchachaSeal,
  XWingSecretKey,
} from "../src/crypto/mod.ts";
import { MAX_ENVELOPE_PLAINTEXT_BYTES } from "../src/limits.ts";

function assertNoSecret(text: string, secret: Uint8Array, what: string): void {
  const lowerHex = toHex(secret);
  assert.ok(!text.toLowerCase().includes(lowerHex), `${what} leaks the secret (hex)`);
  assert.ok(!text.includes(toBase64(secret)), `${what} leaks the secret (base64)`);
  assert.ok(!text.includes(Array.from(secret).join(", ")), `${what} leaks the secret (array)`);
}

// ---------------------------------------------------------------- identity

Deno.test("IdentityKeyPair round-trips through its private key bytes and signs verifiably", () => {
  const kp = IdentityKeyPair.generate();
  const priv = kp.exportPrivateKey();
  assert.equal(priv.length, 32);
  assert.equal(kp.publicKey.length, 32);
  const again = IdentityKeyPair.fromBytes(priv, kp.publicKey);
  assert.equal(toHex(again.publicKey), toHex(kp.publicKey));
  // The public key derivation agrees with an independent Ed25519 implementation.
  assert.equal(toHex(ed25519.getPublicKey(priv)), toHex(kp.publicKey));
  const msg = utf8("hello qpq");
  const sig = kp.sign(msg);
  assert.equal(sig.length, 64);
  // Ed25519 is deterministic: noble produces the same signature from the same seed.
  assert.equal(toHex(ed25519.sign(msg, priv)), toHex(sig));
  assert.equal(verifySignature(kp.publicKey, msg, sig), true);
  assert.equal(verifySignature(again.publicKey, msg, again.sign(msg)), true);
  assert.throws(
    () => IdentityKeyPair.fromBytes(priv, IdentityKeyPair.generate().publicKey),
    CryptoError,
  );
  assert.throws(() => IdentityKeyPair.fromBytes(priv.subarray(1)), CryptoError);
  assert.throws(() => IdentityKeyPair.fromBytes(new Uint8Array(33)), CryptoError);
});

Deno.test("verifySignature returns false for any bad input and never throws", () => {
  const kp = IdentityKeyPair.generate();
  const msg = utf8("message");
  const sig = kp.sign(msg);
  const other = IdentityKeyPair.generate();
  assert.equal(verifySignature(other.publicKey, msg, sig), false);
  assert.equal(verifySignature(kp.publicKey, utf8("messagf"), sig), false);
  for (let i = 0; i < 64; i += 7) {
    const bad = sig.slice();
    bad[i]! ^= 0x80;
    assert.equal(verifySignature(kp.publicKey, msg, bad), false, `sig byte ${i}`);
  }
  assert.equal(verifySignature(kp.publicKey, msg, sig.subarray(1)), false);
  assert.equal(verifySignature(kp.publicKey, msg, concat(sig, new Uint8Array(1))), false);
  assert.equal(verifySignature(kp.publicKey.subarray(1), msg, sig), false);
  assert.equal(verifySignature(new Uint8Array(32).fill(0xff), msg, sig), false);
  assert.equal(verifySignature(new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)), false);
  const junk = [null, undefined, "x", 5, {}, [1, 2]] as unknown as Uint8Array[];
  for (const j of junk) {
    assert.equal(verifySignature(j, msg, sig), false);
    assert.equal(verifySignature(kp.publicKey, j, sig), false);
    assert.equal(verifySignature(kp.publicKey, msg, j), false);
  }
  for (let i = 0; i < 50; i++) {
    assert.equal(verifySignature(randomBytes(32), randomBytes(i), randomBytes(64)), false);
  }
});

Deno.test("IdentityKeyPair never shows its private key in inspect, console or JSON output", () => {
  const kp = IdentityKeyPair.generate();
  const priv = kp.exportPrivateKey();
  const outputs = {
    inspect: Deno.inspect(kp),
    inspectDeep: Deno.inspect({ nested: { kp } }, { depth: 10, showHidden: true }),
    json: JSON.stringify(kp),
    jsonNested: JSON.stringify({ a: [kp] }),
    template: `${String(Deno.inspect(kp))}`,
  };
  for (const [what, text] of Object.entries(outputs)) assertNoSecret(text, priv, what);
  assert.ok(outputs.inspect.includes(toHex(kp.publicKey)));
  assert.ok(outputs.inspect.includes("redacted"));
  assert.deepEqual(JSON.parse(outputs.json), {
    type: "IdentityKeyPair",
    publicKey: toHex(kp.publicKey),
    privateKey: "[redacted]",
  });
});

Deno.test("fingerprint follows its documented definition and is stable", () => {
  const pub = IdentityKeyPair.generate().publicKey;
  const fp = fingerprint(pub);
  assert.match(fp, /^(\d{5} ){11}\d{5}$/);
  assert.equal(fingerprint(pub.slice()), fp);
  // Independent re-derivation from docs/crypto.md with noble's SHA-512.
  const h = sha512(concat(utf8("qpq identity fingerprint v1\0"), pub));
  const groups: string[] = [];
  for (let g = 0; g < 12; g++) {
    let v = 0n;
    for (let i = 0; i < 5; i++) v = (v << 8n) | BigInt(h[g * 5 + i]!);
    groups.push((v % 100000n).toString().padStart(5, "0"));
  }
  assert.equal(fp, groups.join(" "));
  assert.notEqual(fingerprint(IdentityKeyPair.generate().publicKey), fp);
  assert.throws(() => fingerprint(pub.subarray(1)), CryptoError);
});

Deno.test("safetyNumber is symmetric and binds both names and keys", () => {
  const a = IdentityKeyPair.generate().publicKey;
  const b = IdentityKeyPair.generate().publicKey;
  const sn = safetyNumber(a, "alice", b, "bob");
  assert.match(sn, /^(\d{5} ){11}\d{5}$/);
  assert.equal(safetyNumber(b, "bob", a, "alice"), sn);
  assert.notEqual(safetyNumber(a, "alice", b, "bobby"), sn);
  assert.notEqual(safetyNumber(a, "mallory", b, "bob"), sn);
  assert.notEqual(safetyNumber(IdentityKeyPair.generate().publicKey, "alice", b, "bob"), sn);
  // Names are NFC-normalised: composed and decomposed "é" agree.
  assert.equal(
    safetyNumber(a, "jos\u00e9", b, "bob"),
    safetyNumber(a, "jose\u0301", b, "bob"),
  );
  // Each user's half is the same in every conversation they take part in.
  const c = IdentityKeyPair.generate().publicKey;
  const halvesAB = sn.split(" ");
  const halvesAC = safetyNumber(a, "alice", c, "carol").split(" ");
  const aliceAB = [halvesAB.slice(0, 6).join(" "), halvesAB.slice(6).join(" ")];
  const aliceAC = [halvesAC.slice(0, 6).join(" "), halvesAC.slice(6).join(" ")];
  assert.ok(aliceAB.some((h) => aliceAC.includes(h)));
  assert.throws(() => safetyNumber(a.subarray(2), "a", b, "b"), CryptoError);
});

// ---------------------------------------------------------------- symmetric

Deno.test("sealXChaCha matches noble XChaCha20-Poly1305 and openXChaCha rejects any change", () => {
  const key = randomBytes(32);
  for (const size of [0, 1, 63, 64, 65, 1000, 65536]) {
    const pt = randomBytes(size);
    const aad = randomBytes(size % 40);
    const sealed = sealXChaCha(key, pt, aad);
    assert.equal(sealed.length, 24 + size + 16);
    const nonce = sealed.subarray(0, 24);
    assert.equal(toHex(sealed.subarray(24)), toHex(xchacha20poly1305(key, nonce, aad).encrypt(pt)));
    assert.equal(toHex(xchachaSeal(key, nonce, pt, aad)), toHex(sealed.subarray(24)));
    assert.equal(toHex(openXChaCha(key, sealed, aad)), toHex(pt));
    for (const i of [0, 23, 24, sealed.length - 17, sealed.length - 1]) {
      if (i < 0 || i >= sealed.length) continue;
      const bad = sealed.slice();
      bad[i]! ^= 1;
      assert.throws(() => openXChaCha(key, bad, aad), CryptoError, `size ${size} byte ${i}`);
    }
    assert.throws(() => openXChaCha(randomBytes(32), sealed, aad), CryptoError);
    assert.throws(() => openXChaCha(key, sealed, concat(aad, new Uint8Array(1))), CryptoError);
    assert.throws(() => openXChaCha(key, sealed.subarray(0, sealed.length - 1), aad), CryptoError);
  }
  assert.notEqual(
    toHex(sealXChaCha(key, new Uint8Array(8))),
    toHex(sealXChaCha(key, new Uint8Array(8))),
  );
  assert.throws(() => openXChaCha(key, new Uint8Array(39)), CryptoError);
  assert.throws(() => sealXChaCha(key.subarray(1), new Uint8Array(1)), CryptoError);
});

Deno.test("hkdfSha256, hmacSha256 and sha256 agree with noble for long and short inputs", () => {
  for (const infoLen of [0, 10, 1024, 1025, 3000]) {
    const ikm = randomBytes(32);
    const salt = randomBytes(infoLen % 50);
    const info = randomBytes(infoLen);
    for (const len of [0, 1, 32, 33, 100]) {
      assert.equal(
        toHex(hkdfSha256(ikm, salt, info, len)),
        toHex(nobleHkdf(nobleSha256, ikm, salt, info, len)),
        `info ${infoLen} len ${len}`,
      );
    }
  }
  const data = randomBytes(1000);
  assert.equal(toHex(sha256(data.subarray(0, 10), data.subarray(10))), toHex(nobleSha256(data)));
  assert.equal(hmacSha256(randomBytes(32), data).length, 32);
  assert.throws(
    () => hkdfSha256(new Uint8Array(32), new Uint8Array(0), new Uint8Array(0), 8161),
    CryptoError,
  );
});

// ---------------------------------------------------------------- envelope

Deno.test("sealEnvelope and openEnvelope round-trip with and without aad", () => {
  const { publicKey, secretKey } = generateEnvelopeKeyPair();
  for (const size of [0, 1, 100, 4096, 65536]) {
    const pt = randomBytes(size);
    const env = sealEnvelope(publicKey, pt);
    assert.equal(env.length, size + ENVELOPE_OVERHEAD_BYTES);
    assert.equal(env[0], 1);
    assert.equal(env[1], 1);
    assert.equal(toHex(openEnvelope(secretKey, env)), toHex(pt));
    const aad = utf8(`context ${size}`);
    const env2 = sealEnvelope(publicKey, pt, aad);
    assert.equal(toHex(openEnvelope(secretKey, env2, aad)), toHex(pt));
    assert.notEqual(toHex(env2), toHex(sealEnvelope(publicKey, pt, aad)));
  }
  // A key rebuilt from its exported seed opens the same envelopes.
  const env = sealEnvelope(publicKey, utf8("persisted"));
  const restored = envelopeSecretKeyFromSeed(secretKey.exportSeed());
  assert.equal(toHex(restored.publicKey), toHex(publicKey));
  assert.equal(new TextDecoder().decode(openEnvelope(restored, env)), "persisted");
});

Deno.test("openEnvelope rejects tampered, truncated, wrong-version, wrong-suite, wrong-aad and wrong-recipient envelopes", () => {
  const { publicKey, secretKey } = generateEnvelopeKeyPair();
  const pt = utf8("the secret message, long enough to have a body");
  const aad = utf8("aad");
  const env = sealEnvelope(publicKey, pt, aad);
  const cases: [string, Uint8Array, Uint8Array][] = [];
  const flip = (i: number, bit = 1): Uint8Array => {
    const b = env.slice();
    b[i]! ^= bit;
    return b;
  };
  cases.push(["version 2", flip(0, 3), aad]);
  cases.push(["version 0", flip(0, 1), aad]);
  cases.push(["suite 0", flip(1, 1), aad]);
  for (const i of [2, 500, 1089, 1090, 1121]) {
    cases.push([`KEM ciphertext byte ${i}`, flip(i), aad]);
  }
  for (const i of [1122, 1130, env.length - 17]) cases.push([`AEAD body byte ${i}`, flip(i), aad]);
  for (const i of [env.length - 16, env.length - 1]) cases.push([`tag byte ${i}`, flip(i), aad]);
  for (const n of [0, 1, 2, 100, 1121, 1122, 1137, env.length - 1]) {
    cases.push([`truncated to ${n}`, env.subarray(0, n), aad]);
  }
  cases.push(["extended by one byte", concat(env, new Uint8Array(1)), aad]);
  cases.push(["wrong aad", env, utf8("aaD")]);
  cases.push(["missing aad", env, new Uint8Array(0)]);
  for (const [what, bytes, a] of cases) {
    assert.throws(() => openEnvelope(secretKey, bytes, a), CryptoError, what);
  }
  const other = generateEnvelopeKeyPair();
  assert.throws(() => openEnvelope(other.secretKey, env, aad), CryptoError, "wrong recipient");
  assert.equal(toHex(openEnvelope(secretKey, env, aad)), toHex(pt));
  assert.ok(cases.length >= 20);
});

Deno.test("sealEnvelope and openEnvelope enforce size limits before parsing", () => {
  const { publicKey, secretKey } = generateEnvelopeKeyPair();
  const huge = new Uint8Array(MAX_ENVELOPE_PLAINTEXT_BYTES + 1);
  assert.throws(() => sealEnvelope(publicKey, huge), CryptoError);
  const hugeEnv = new Uint8Array(MAX_ENVELOPE_PLAINTEXT_BYTES + ENVELOPE_OVERHEAD_BYTES + 1);
  hugeEnv[0] = 1;
  hugeEnv[1] = 1;
  assert.throws(() => openEnvelope(secretKey, hugeEnv), CryptoError);
  assert.throws(() => sealEnvelope(publicKey.subarray(1), new Uint8Array(1)), CryptoError);
  assert.throws(
    () => openEnvelope({} as unknown as XWingSecretKey, new Uint8Array(2000)),
    CryptoError,
  );
});

Deno.test("openEnvelope turns random bytes into CryptoError, never a crash or plaintext", () => {
  const { secretKey } = generateEnvelopeKeyPair();
  let n = 0;
  for (let i = 0; i < 150; i++) {
    const len = i < 50 ? i * 30 : ENVELOPE_OVERHEAD_BYTES + ((i * 37) % 400);
    const bytes = randomBytes(len);
    if (i % 2 === 0 && len >= 2) {
      bytes[0] = 1;
      bytes[1] = 1;
    }
    try {
      openEnvelope(secretKey, bytes);
      assert.fail(`random input of ${len} bytes opened`);
    } catch (e) {
      assert.ok(e instanceof CryptoError, `input ${i}: ${e}`);
      assert.ok(!/[0-9a-f]{32}/.test((e as Error).message), "error message carries bytes");
    }
    n++;
  }
  assert.equal(n, 150);
});

Deno.test("XWingSecretKey never shows its seed in inspect, console or JSON output", () => {
  const sk = XWingSecretKey.generate();
  const seed = sk.exportSeed();
  const outputs = [
    Deno.inspect(sk),
    Deno.inspect({ k: sk }, { depth: 10, showHidden: true }),
    JSON.stringify(sk),
    JSON.stringify({ k: [sk] }),
    Deno.inspect(generateEnvelopeKeyPair(), { depth: 10 }),
  ];
  for (const [i, text] of outputs.entries()) assertNoSecret(text, seed, `output ${i}`);
  assert.ok(outputs[0]!.includes("redacted"));
});

// ---------------------------------------------------------------- Argon2id

const FAST = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };

Deno.test("deriveKeyFromPassword matches noble Argon2id and the RFC 9106 reference holds", async () => {
  // The reference implementation itself, against RFC 9106 §5.3 (secret and associated data).
  const rfc = nobleArgon2id(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), {
    t: 3,
    m: 32,
    p: 4,
    key: new Uint8Array(8).fill(3),
    personalization: new Uint8Array(12).fill(4),
    dkLen: 32,
  });
  assert.equal(toHex(rfc), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
  // Ours (hash-wasm) against the reference on several parameter sets.
  for (const [m, t, p] of [[64, 1, 1], [256, 2, 1], [512, 1, 4], [1024, 3, 2]] as const) {
    const salt = randomBytes(16);
    const params = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: m, iterations: t, parallelism: p };
    const ours = await deriveKeyFromPassword("correct horse", salt, params);
    const ref = nobleArgon2id(utf8("correct horse"), salt, { m, t, p, dkLen: 32 });
    assert.equal(toHex(ours), toHex(ref), `m=${m} t=${t} p=${p}`);
  }
});

Deno.test("deriveKeyFromPassword is deterministic and sensitive to every input", async () => {
  const salt = fromHex("000102030405060708090a0b0c0d0e0f");
  const base = toHex(await deriveKeyFromPassword("pässword", salt, FAST));
  assert.equal(base.length, 64);
  assert.equal(toHex(await deriveKeyFromPassword("pässword", salt.slice(), { ...FAST })), base);
  // NFC: the decomposed spelling is the same password.
  assert.equal(toHex(await deriveKeyFromPassword("pa\u0308ssword", salt, FAST)), base);
  const variants = [
    await deriveKeyFromPassword("password", salt, FAST),
    await deriveKeyFromPassword("pässword", randomBytes(16), FAST),
    await deriveKeyFromPassword("pässword", salt, { ...FAST, memoryKiB: 512 }),
    await deriveKeyFromPassword("pässword", salt, { ...FAST, iterations: 2 }),
    await deriveKeyFromPassword("pässword", salt, { ...FAST, parallelism: 2 }),
  ];
  for (const v of variants) assert.notEqual(toHex(v), base);
  const defaults = await deriveKeyFromPassword("pässword", salt);
  assert.equal(defaults.length, 32);
  assert.equal(
    toHex(defaults),
    toHex(await deriveKeyFromPassword("pässword", salt, DEFAULT_ARGON2ID_PARAMS)),
  );
});

Deno.test("parseArgon2idParams round-trips JSON and refuses unsafe or foreign parameters", async () => {
  assert.deepEqual(
    parseArgon2idParams(JSON.parse(JSON.stringify(DEFAULT_ARGON2ID_PARAMS))),
    DEFAULT_ARGON2ID_PARAMS,
  );
  assert.ok(DEFAULT_ARGON2ID_PARAMS.memoryKiB >= 19 * 1024);
  assert.ok(DEFAULT_ARGON2ID_PARAMS.iterations >= 2);
  const bad: unknown[] = [
    null,
    "argon2id",
    { ...DEFAULT_ARGON2ID_PARAMS, algorithm: "argon2i" },
    { ...DEFAULT_ARGON2ID_PARAMS, version: 16 },
    { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 4 },
    { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 1e12 },
    { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 1.5 },
    { ...DEFAULT_ARGON2ID_PARAMS, iterations: 0 },
    { ...DEFAULT_ARGON2ID_PARAMS, iterations: 1000 },
    { ...DEFAULT_ARGON2ID_PARAMS, parallelism: 0 },
    { ...DEFAULT_ARGON2ID_PARAMS, parallelism: "1" },
  ];
  for (const b of bad) assert.throws(() => parseArgon2idParams(b), CryptoError, JSON.stringify(b));
  await assert.rejects(deriveKeyFromPassword("pw", new Uint8Array(15), FAST), CryptoError);
});
