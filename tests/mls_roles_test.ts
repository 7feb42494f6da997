/**
 * Group roles in src/mls (issue 21 part 2): the settings extension's codec and bounds, and
 * the roles rule every receiver applies to a commit against the settings before it.
 */
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "../src/bytes.ts";
import { UsageError, ValidationError } from "../src/errors.ts";
import {
  addMembers,
  changeSettings,
  createGroup,
  createKeyPackage,
  decodeGroupSettings,
  encodeGroupSettings,
  type GroupSettings,
  groupSettings,
  isAdmin,
  joinFromWelcome,
  leaveGroup,
  mergePendingCommit,
  type MlsGroupState,
  processMessage,
  removeMembers,
  selfUpdate,
} from "../src/mls/mod.ts";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519" as const;
const BASE: GroupSettings = {
  admins: ["alice"],
  name: "",
  description: "",
  disappearingSeconds: 0,
};

function user(name: string) {
  const privateKey = ed25519.utils.randomSecretKey();
  return { name, identity: { privateKey, publicKey: ed25519.getPublicKey(privateKey) } };
}

/** alice (admin) with bob and carol; every member's state. */
async function team(settings: GroupSettings | null = BASE): Promise<MlsGroupState[]> {
  const [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
  const a = await createGroup({
    groupId: randomBytes(16),
    username: "alice",
    identity: alice!.identity,
    suite: SUITE,
    ...(settings ? { settings } : {}),
  });
  const kps = await Promise.all(
    [bob!, carol!].map((u) =>
      createKeyPackage({
        username: u.name,
        identity: u.identity,
        suite: SUITE,
        lifetimeSeconds: 86400,
      })
    ),
  );
  const staged = await addMembers(a, kps.map((k) => k.publicPackage));
  const states = [mergePendingCommit(staged.state).state];
  for (const [i, u] of [bob!, carol!].entries()) {
    states.push(
      (await joinFromWelcome(staged.outbound.welcome!, [kps[i]!.privatePackage], u.identity)).state,
    );
  }
  return states;
}

async function refused(state: MlsGroupState, commit: Uint8Array, why: string) {
  await assert.rejects(() => processMessage(state, commit), (e) => {
    assert.ok(e instanceof ValidationError);
    assert.equal(e.code, "forbidden");
    assert.match(e.message, new RegExp(why));
    return true;
  });
}

Deno.test("encodeGroupSettings round-trips and decodeGroupSettings refuses what is out of bounds", () => {
  const s: GroupSettings = {
    admins: ["bob", "alice"],
    name: "team",
    description: "lunch ☕",
    disappearingSeconds: 3600,
  };
  assert.deepEqual(decodeGroupSettings(encodeGroupSettings(s)), { ...s, admins: ["alice", "bob"] });
  for (
    const bad of [
      { ...s, admins: [] },
      { ...s, disappearingSeconds: 5 },
      { ...s, disappearingSeconds: 5 * 7 * 24 * 3600 },
      { ...s, description: "x".repeat(513) },
      { ...s, admins: ["Not A Name"] },
    ]
  ) assert.throws(() => encodeGroupSettings(bad), ValidationError);
  const ok = encodeGroupSettings(s);
  for (let n = 0; n < ok.length; n++) {
    assert.throws(() => decodeGroupSettings(ok.subarray(0, n)), ValidationError);
  }
  assert.throws(() => decodeGroupSettings(new Uint8Array([...ok, 0])), ValidationError);
  const v2 = ok.slice();
  v2[0] = 2;
  assert.throws(() => decodeGroupSettings(v2), ValidationError);
  for (let i = 0; i < 200; i++) {
    try {
      decodeGroupSettings(randomBytes(i % 40));
    } catch (e) {
      assert.ok(e instanceof ValidationError);
    }
  }
});

Deno.test("processMessage refuses a non-admin's Remove of another member and applies an admin's", async () => {
  const [a, b, c] = await team();
  assert.deepEqual(groupSettings(a!)?.admins, ["alice"]);
  assert.ok(isAdmin(c!, "alice") && !isAdmin(c!, "carol"));
  const rogue = await removeMembers(c!, ["alice"]);
  await refused(a!, rogue.outbound.commit, "carol is not an admin and removed a member");
  await refused(b!, rogue.outbound.commit, "carol is not an admin and removed a member");
  // an admin's removal is applied
  const ok = await removeMembers(a!, ["carol"]);
  const r = await processMessage(b!, ok.outbound.commit);
  assert.equal(r.kind, "commit");
});

Deno.test("processMessage refuses a non-admin's settings change; an admin's grant lets the member remove", async () => {
  const [a, b, c] = await team();
  const rogue = await changeSettings(c!, { ...BASE, admins: ["carol"] });
  await refused(
    a!,
    rogue.outbound.commit,
    "carol is not an admin and changed the group's settings",
  );
  await refused(
    b!,
    rogue.outbound.commit,
    "carol is not an admin and changed the group's settings",
  );

  const grant = await changeSettings(a!, { ...BASE, admins: ["alice", "bob"] });
  const a2 = mergePendingCommit(grant.state).state;
  const rb = await processMessage(b!, grant.outbound.commit);
  const rc = await processMessage(c!, grant.outbound.commit);
  assert.ok(rb.kind === "commit" && rc.kind === "commit");
  assert.deepEqual(rc.settings?.admins, ["alice", "bob"]);
  assert.ok(isAdmin(rc.state, "bob"));
  const byBob = await removeMembers(rb.state, ["carol"]);
  assert.equal((await processMessage(a2, byBob.outbound.commit)).kind, "commit");
});

Deno.test("processMessage treats a group without settings (legacy, DMs) as all admins", async () => {
  const [a, b, c] = await team(null);
  assert.equal(groupSettings(a!), undefined);
  assert.ok(isAdmin(b!, "carol"));
  const byCarol = await removeMembers(c!, ["alice"]);
  assert.equal((await processMessage(b!, byCarol.outbound.commit)).kind, "commit");
});

Deno.test("processMessage takes a non-admin's re-add of a member (old leaf out, same user's fresh KeyPackage in)", async () => {
  const [a, b, c] = await team();
  const bob = user("bob"); // bob's state broke; his new KeyPackage (same name) asks back in
  const kp = await createKeyPackage({
    username: "bob",
    identity: bob.identity,
    suite: SUITE,
    lifetimeSeconds: 86400,
  });
  const readd = await addMembers(c!, [kp.publicPackage], { replaceExisting: true });
  const r = await processMessage(a!, readd.outbound.commit);
  assert.equal(r.kind, "commit", "a rejoin is not a removal: any member may commit it");
  void b;
});

Deno.test("changeSettings refuses while a member's leave is held; committed after the leave, every member reads it (sim seed 7007)", async () => {
  let [a, b, c] = await team();
  const leave = await leaveGroup(c!);
  a = (await processMessage(a!, leave.outbound)).state;
  b = (await processMessage(b!, leave.outbound)).state;
  const grant = { ...BASE, admins: ["alice", "bob"] };
  // before: the commit carried carol's removal and a path whose secrets ts-mls encrypted
  // under the group context without the new settings; bob decrypts under the one with
  // them, and could not read it ("Cannot process handshake message")
  await assert.rejects(() => changeSettings(a!, grant), (e) => {
    assert.ok(e instanceof UsageError);
    assert.equal(e.code, "conflict");
    return true;
  });
  const leaves = await selfUpdate(a!);
  a = mergePendingCommit(leaves.state).state;
  const rb = await processMessage(b!, leaves.outbound.commit);
  assert.ok(rb.kind === "commit");
  assert.deepEqual(rb.removed.map((m) => m.username), ["carol"]);
  const staged = await changeSettings(a, grant);
  const r = await processMessage(rb.state, staged.outbound.commit);
  assert.ok(r.kind === "commit");
  assert.deepEqual(r.settings?.admins, ["alice", "bob"]);
});
