/**
 * The qpq ts-mls crypto provider against ts-mls's default provider: same outputs on random
 * inputs, and groups whose members use different providers work both ways.
 */

import assert from "node:assert/strict";
import {
  acceptAll,
  type CiphersuiteImpl,
  type CiphersuiteName,
  createApplicationMessage,
  createCommit,
  createGroup,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  generateKeyPackage,
  joinGroup,
  processMessage,
  processPrivateMessage,
} from "ts-mls";
import {
  DEFAULT_SUITE,
  getCiphersuite,
  getCiphersuiteFor,
  MLS_SUITES,
  type MlsSuiteName,
} from "../src/mls/provider.ts";
import { randomBytes, toHex, utf8 } from "../src/bytes.ts";

const EQUALITY_SUITES: CiphersuiteName[] = [
  ...MLS_SUITES,
  "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
  "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
];

async function impls(name: CiphersuiteName): Promise<[CiphersuiteImpl, CiphersuiteImpl]> {
  return [await getCiphersuiteFor(name, "qpq"), await getCiphersuiteFor(name, "default")];
}

function randomLength(max: number): number {
  return randomBytes(2).reduce((a, b) => a * 256 + b, 0) % (max + 1);
}

Deno.test("getCiphersuite caches one impl per suite", async () => {
  assert.ok(MLS_SUITES.includes(DEFAULT_SUITE));
  for (const name of MLS_SUITES) {
    const a = await getCiphersuite(name);
    assert.equal(a, await getCiphersuite(name));
    assert.equal(a.name, name);
  }
});

for (const name of EQUALITY_SUITES) {
  Deno.test(`qpqCryptoProvider hash and kdf equal the default provider's (${name})`, async () => {
    const [q, d] = await impls(name);
    assert.equal(q.kdf.size, d.kdf.size);
    for (let i = 0; i < 25; i++) {
      const data = randomBytes(randomLength(300));
      // WebCrypto (the default provider) refuses empty HMAC keys; MLS never uses one.
      const key = randomBytes(1 + randomLength(200));
      assert.equal(toHex(await q.hash.digest(data)), toHex(await d.hash.digest(data)));
      const mac = await q.hash.mac(key, data);
      assert.equal(toHex(mac), toHex(await d.hash.mac(key, data)));
      assert.equal(await q.hash.verifyMac(key, mac, data), true);
      assert.equal(await d.hash.verifyMac(key, mac, data), true);
      const bad = mac.slice();
      bad[0]! ^= 1;
      assert.equal(await q.hash.verifyMac(key, bad, data), false);
      // The default provider (@hpke/core) takes an empty salt or one of hash length only.
      const salt = randomBytes(i % 2 === 0 ? 0 : q.kdf.size);
      const prk = await q.kdf.extract(salt, data);
      assert.equal(toHex(prk), toHex(await d.kdf.extract(salt, data)));
      const len = 1 + randomLength(3 * q.kdf.size);
      assert.equal(
        toHex(await q.kdf.expand(prk, key, len)),
        toHex(await d.kdf.expand(prk, key, len)),
      );
    }
  });

  Deno.test(`qpqCryptoProvider aead and signatures equal the default provider's (${name})`, async () => {
    const [q, d] = await impls(name);
    assert.equal(q.hpke.keyLength, d.hpke.keyLength);
    assert.equal(q.hpke.nonceLength, d.hpke.nonceLength);
    for (let i = 0; i < 20; i++) {
      const key = randomBytes(q.hpke.keyLength);
      const nonce = randomBytes(q.hpke.nonceLength);
      const aad = randomBytes(randomLength(64));
      const pt = randomBytes(randomLength(300));
      const ct = await q.hpke.encryptAead(key, nonce, aad, pt);
      assert.equal(toHex(ct), toHex(await d.hpke.encryptAead(key, nonce, aad, pt)));
      assert.equal(toHex(await d.hpke.decryptAead(key, nonce, aad, ct)), toHex(pt));
      assert.equal(toHex(await q.hpke.decryptAead(key, nonce, aad, ct)), toHex(pt));
      const tampered = ct.slice();
      tampered[tampered.length - 1]! ^= 1;
      await assert.rejects(q.hpke.decryptAead(key, nonce, aad, tampered));
    }
    for (const [signer, verifier] of [[q, d], [d, q], [q, q]] as const) {
      const { signKey, publicKey } = await signer.signature.keygen();
      const msg = randomBytes(randomLength(500));
      const sig = await signer.signature.sign(signKey, msg);
      assert.equal(await verifier.signature.verify(publicKey, msg, sig), true);
      const other = utf8("another message").slice();
      assert.equal(await verifier.signature.verify(publicKey, other, sig), false);
      if (name.endsWith("Ed25519")) {
        // Ed25519 is deterministic: both providers must give the same bytes.
        assert.equal(toHex(await verifier.signature.sign(signKey, msg)), toHex(sig));
      }
    }
  });

  Deno.test(`qpqCryptoProvider hpke interoperates with the default provider (${name})`, async () => {
    const [q, d] = await impls(name);
    const ikm = randomBytes(q.kdf.size);
    const kq = await q.hpke.deriveKeyPair(ikm);
    const kd = await d.hpke.deriveKeyPair(ikm);
    const pub = await q.hpke.exportPublicKey(kq.publicKey);
    const priv = await q.hpke.exportPrivateKey(kq.privateKey);
    assert.equal(toHex(pub), toHex(await d.hpke.exportPublicKey(kd.publicKey)));
    assert.equal(toHex(priv), toHex(await d.hpke.exportPrivateKey(kd.privateKey)));
    const info = randomBytes(40);
    const aad = randomBytes(20);
    for (const [sealer, opener] of [[q, d], [d, q]] as const) {
      const pt = randomBytes(randomLength(200));
      const sealed = await sealer.hpke.seal(await sealer.hpke.importPublicKey(pub), pt, info, aad);
      const openKey = await opener.hpke.importPrivateKey(priv);
      assert.equal(
        toHex(await opener.hpke.open(openKey, sealed.enc, sealed.ct, info, aad)),
        toHex(pt),
      );
      await assert.rejects(opener.hpke.open(openKey, sealed.enc, sealed.ct, randomBytes(40), aad));
      const ctx = randomBytes(16);
      const ex = await sealer.hpke.exportSecret(
        await sealer.hpke.importPublicKey(pub),
        ctx,
        32,
        info,
      );
      assert.equal(
        toHex(await opener.hpke.importSecret(openKey, ctx, ex.enc, 32, info)),
        toHex(ex.secret),
      );
    }
  });
}

Deno.test("qpqCryptoProvider hpke private keys redact themselves", async () => {
  const q = await getCiphersuite("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519");
  const { privateKey } = await q.hpke.generateKeyPair();
  const raw = toHex(await q.hpke.exportPrivateKey(privateKey));
  const shown = Deno.inspect(privateKey) + JSON.stringify(privateKey);
  assert.ok(shown.includes("redacted"));
  assert.ok(!shown.includes(raw));
  assert.ok(!shown.includes(raw.slice(0, 16)));
});

async function member(name: string, cs: CiphersuiteImpl) {
  return await generateKeyPackage(
    { credentialType: "basic", identity: utf8(name) },
    defaultCapabilities(),
    defaultLifetime,
    [],
    cs,
  );
}

async function exchange(suite: MlsSuiteName, creator: CiphersuiteImpl, joiner: CiphersuiteImpl) {
  const alice = await member("alice", creator);
  const bob = await member("bob", joiner);
  let a = await createGroup(utf8("g"), alice.publicPackage, alice.privatePackage, [], creator);
  const commit = await createCommit({ state: a, cipherSuite: creator }, {
    extraProposals: [{ proposalType: "add", add: { keyPackage: bob.publicPackage } }],
  });
  a = commit.newState;
  assert.ok(commit.welcome !== undefined);
  let b = await joinGroup(
    commit.welcome,
    bob.publicPackage,
    bob.privatePackage,
    emptyPskIndex,
    joiner,
    a.ratchetTree,
  );
  assert.equal(toHex(b.keySchedule.epochAuthenticator), toHex(a.keySchedule.epochAuthenticator));
  for (let i = 0; i < 3; i++) {
    const text = utf8(`hello ${suite} ${i}`);
    const m1 = await createApplicationMessage(a, text, creator);
    a = m1.newState;
    const r1 = await processPrivateMessage(b, m1.privateMessage, emptyPskIndex, joiner);
    assert.equal(r1.kind, "applicationMessage");
    if (r1.kind === "applicationMessage") assert.equal(toHex(r1.message), toHex(text));
    b = r1.newState;
    const m2 = await createApplicationMessage(b, text, joiner);
    b = m2.newState;
    const r2 = await processPrivateMessage(a, m2.privateMessage, emptyPskIndex, creator);
    assert.equal(r2.kind, "applicationMessage");
    if (r2.kind === "applicationMessage") assert.equal(toHex(r2.message), toHex(text));
    a = r2.newState;
  }
  // A commit with an update path from the joiner (new HPKE keys, path secrets encrypted
  // by one provider and decrypted by the other), then one more message on the new epoch.
  const c2 = await createCommit({ state: b, cipherSuite: joiner }, {});
  b = c2.newState;
  assert.ok(
    c2.commit.wireformat === "mls_public_message" || c2.commit.wireformat === "mls_private_message",
  );
  const r3 = await processMessage(c2.commit, a, emptyPskIndex, acceptAll, creator);
  assert.equal(r3.kind, "newState");
  a = r3.newState;
  assert.equal(a.groupContext.epoch, b.groupContext.epoch);
  assert.equal(toHex(a.keySchedule.epochAuthenticator), toHex(b.keySchedule.epochAuthenticator));
  const m3 = await createApplicationMessage(a, utf8("after commit"), creator);
  const r4 = await processPrivateMessage(b, m3.privateMessage, emptyPskIndex, joiner);
  assert.equal(r4.kind, "applicationMessage");
}

for (const suite of MLS_SUITES) {
  Deno.test(`qpqCryptoProvider groups interoperate with the default provider (${suite})`, async () => {
    const [q, d] = await impls(suite);
    await exchange(suite, q, d);
    await exchange(suite, d, q);
  });
}
