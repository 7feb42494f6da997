/**
 * A typing indicator (issue 21) is an MLS application message that is never stored: it
 * consumes a generation of its sender's ratchet, and a member who was offline never gets
 * it. Such a member must still decrypt the sender's next stored message: ts-mls ratchets
 * forward over the missed generations, up to `maximumForwardRatchetSteps` (1000, in
 * src/mls/_state.ts). Past that the next message cannot be read, so the client must send
 * far fewer ephemeral messages than that between two stored ones.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromUtf8, randomBytes, utf8 } from "../src/bytes.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  encryptMessage,
  joinFromWelcome,
  mergePendingCommit,
  type MlsGroupState,
  processMessage,
} from "../src/mls/mod.ts";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" as const;

function identity() {
  const privateKey = ed25519.utils.randomSecretKey();
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

async function pair(): Promise<[MlsGroupState, MlsGroupState]> {
  const a = await createGroup({
    groupId: randomBytes(16),
    username: "alice",
    identity: identity(),
    suite: SUITE,
  });
  const bobId = identity();
  const kp = await createKeyPackage({
    username: "bob",
    identity: bobId,
    suite: SUITE,
    lifetimeSeconds: 86400,
  });
  const staged = await addMembers(a, [kp.publicPackage]);
  const merged = mergePendingCommit(staged.state);
  const b = await joinFromWelcome(staged.outbound.welcome!, [kp.privatePackage], bobId);
  return [merged.state, b.state];
}

/** alice sends `missed` messages bob never gets, then one he gets. */
async function afterGap(missed: number) {
  let [a, b] = await pair();
  for (let i = 0; i < missed; i++) a = (await encryptMessage(a, utf8("typing"))).state;
  const m = await encryptMessage(a, utf8("stored"));
  return { b, bytes: m.outbound };
}

Deno.test("processMessage decrypts a message after 200 missed ephemeral ones of its sender", async () => {
  const { b, bytes } = await afterGap(200);
  const r = await processMessage(b, bytes);
  assert.equal(r.kind, "application");
  if (r.kind === "application") assert.equal(fromUtf8(r.plaintext), "stored");
});

Deno.test("processMessage cannot decrypt past 1000 missed generations (the bound the client stays under)", async () => {
  const { b, bytes } = await afterGap(1001);
  await assert.rejects(() => processMessage(b, bytes));
});
