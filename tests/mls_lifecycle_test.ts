/**
 * Group life-cycle regressions in src/mls: every sequence here once broke a member's state
 * (issue 9). Each step stores and reloads the state, as the client does, so a state that
 * cannot be saved fails here and not on a user's disk.
 */

import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromUtf8, randomBytes, toHex, utf8 } from "../src/bytes.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  decodeGroupState,
  encodeGroupState,
  encryptMessage,
  epochAuthenticator,
  joinFromWelcome,
  leaveGroup,
  listMembers,
  mergePendingCommit,
  type MlsGroupState,
  type MlsSuiteName,
  type ProcessedMessage,
  processMessage,
  removeMembers,
  selfUpdate,
  type SignatureKeyPair,
} from "../src/mls/mod.ts";
import { MlsGroupState as StateClass, unwrapState } from "../src/mls/_state.ts";

const SUITES: MlsSuiteName[] = [
  "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
  "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
];

interface User {
  name: string;
  identity: SignatureKeyPair;
}

function user(name: string): User {
  const privateKey = ed25519.utils.randomSecretKey();
  return { name, identity: { privateKey, publicKey: ed25519.getPublicKey(privateKey) } };
}

/** Save and load, as the client does after every step. */
function reload(s: MlsGroupState): MlsGroupState {
  return decodeGroupState(encodeGroupState(s));
}

function kind<K extends ProcessedMessage["kind"]>(
  r: ProcessedMessage,
  k: K,
): Extract<ProcessedMessage, { kind: K }> {
  assert.equal(r.kind, k);
  return r as Extract<ProcessedMessage, { kind: K }>;
}

async function kp(u: User, suite: MlsSuiteName) {
  return await createKeyPackage({
    username: u.name,
    identity: u.identity,
    suite,
    lifetimeSeconds: 86_400,
  });
}

/** p1 creates a group with p2..pn; returns every member's reloaded state. */
async function group(suite: MlsSuiteName, n: number) {
  const users = Array.from({ length: n }, (_, i) => user(`p${i + 1}`));
  const first = await createGroup({
    groupId: randomBytes(16),
    username: users[0]!.name,
    identity: users[0]!.identity,
    suite,
  });
  const kps = await Promise.all(users.slice(1).map((u) => kp(u, suite)));
  const staged = await addMembers(first, kps.map((k) => k.publicPackage));
  const states = [reload(mergePendingCommit(staged.state).state)];
  for (const [i, u] of users.slice(1).entries()) {
    const j = await joinFromWelcome(staged.outbound.welcome!, [kps[i]!.privatePackage], u.identity);
    states.push(reload(j.state));
  }
  return { users, states };
}

/** Apply a commit made by `states[from]` to every other listed member. */
async function commitFrom(
  states: (MlsGroupState | undefined)[],
  from: number,
  staged: { state: MlsGroupState; outbound: { commit: Uint8Array } },
) {
  states[from] = reload(mergePendingCommit(staged.state).state);
  for (const [i, s] of states.entries()) {
    if (i === from || s === undefined) continue;
    const r = await processMessage(s, staged.outbound.commit);
    states[i] = r.kind === "removed" ? undefined : reload(r.state);
  }
}

function agree(states: (MlsGroupState | undefined)[]) {
  const live = states.filter((s): s is MlsGroupState => s !== undefined);
  const auth = live.map((s) => toHex(epochAuthenticator(s)));
  assert.ok(auth.every((a) => a === auth[0]), "members disagree on the epoch authenticator");
  const rosters = live.map((s) => listMembers(s).map((m) => m.username).sort().join(","));
  assert.ok(rosters.every((r) => r === rosters[0]), "members disagree on the roster");
}

async function chat(states: (MlsGroupState | undefined)[]) {
  for (const [i, s] of states.entries()) {
    if (s === undefined) continue;
    const enc = await encryptMessage(s, utf8(`hi from ${i}`));
    states[i] = reload(enc.state);
    for (const [j, t] of states.entries()) {
      if (j === i || t === undefined) continue;
      const r = kind(await processMessage(t, enc.outbound), "application");
      assert.equal(fromUtf8(r.plaintext), `hi from ${i}`);
      states[j] = reload(r.state);
    }
  }
}

for (const suite of SUITES) {
  Deno.test(`group: remove then leave in a group of three keeps every state loadable (${suite})`, async () => {
    const { states: s } = await group(suite, 3);
    const states: (MlsGroupState | undefined)[] = s;
    // p1 removes p3
    await commitFrom(states, 0, await removeMembers(states[0]!, ["p3"]));
    assert.equal(states[2], undefined);
    // p2 leaves: its proposal reaches p1, who commits it
    const leave = await leaveGroup(states[1]!);
    states[1] = reload(leave.state);
    states[0] = reload(kind(await processMessage(states[0]!, leave.outbound), "proposal").state);
    const up = await selfUpdate(states[0]!);
    assert.deepEqual(up.removed.map((m) => m.username), ["p2"]);
    // a fourth view: p2's leave as seen by a member who did not commit it is a leave
    await commitFrom(states, 0, up);
    assert.equal(states[1], undefined);
    assert.deepEqual(listMembers(states[0]!).map((m) => m.username), ["p1"]);
    // p1's group still works: invite someone new and talk
    const p4 = user("p4");
    const k4 = await kp(p4, suite);
    const add = await addMembers(states[0]!, [k4.publicPackage]);
    states[0] = reload(mergePendingCommit(add.state).state);
    states.push(
      reload(
        (await joinFromWelcome(add.outbound.welcome!, [k4.privatePackage], p4.identity)).state,
      ),
    );
    agree(states);
    await chat(states);
  });
}

Deno.test("group: no private key of a node the tree lost is kept (RFC 9420 §7.9)", async () => {
  const { states: s } = await group(SUITES[1]!, 4);
  const states: (MlsGroupState | undefined)[] = s;
  await commitFrom(states, 0, await removeMembers(states[0]!, ["p4", "p3"]));
  for (const st of states) {
    if (st === undefined) continue;
    const cs = unwrapState(st).current;
    for (const k of Object.keys(cs.privatePath.privateKeys)) {
      const i = Number(k);
      assert.ok(i < cs.ratchetTree.length, `key for node ${i} past the tree`);
      assert.ok(cs.ratchetTree[i] !== undefined, `key for blank node ${i}`);
    }
  }
});

Deno.test("decodeGroupState heals a state saved with a stale path key (saved by older builds)", async () => {
  const { states } = await group(SUITES[1]!, 2);
  const inner = unwrapState(states[0]!);
  const cs = inner.current;
  // what ts-mls 1.6.4 left behind before the workaround: a key for a node past the tree
  const stale = {
    ...cs,
    privatePath: {
      ...cs.privatePath,
      privateKeys: { ...cs.privatePath.privateKeys, [cs.ratchetTree.length + 2]: randomBytes(32) },
    },
  };
  const broken = new StateClass({ suite: inner.suite, current: stale, pending: undefined });
  const healed = decodeGroupState(encodeGroupState(broken));
  const keys = Object.keys(unwrapState(healed).current.privatePath.privateKeys).map(Number);
  assert.ok(keys.every((k) => k < cs.ratchetTree.length));
  // and it still talks to the other member
  const enc = await encryptMessage(healed, utf8("still here"));
  const r = kind(await processMessage(states[1]!, enc.outbound), "application");
  assert.equal(fromUtf8(r.plaintext), "still here");
});

Deno.test("group: remove and re-add the same user", async () => {
  const suite = SUITES[0]!;
  const { users, states: s } = await group(suite, 3);
  const states: (MlsGroupState | undefined)[] = s;
  await commitFrom(states, 0, await removeMembers(states[0]!, ["p2"]));
  assert.equal(states[1], undefined);
  const k2 = await kp(users[1]!, suite);
  const add = await addMembers(states[0]!, [k2.publicPackage]);
  await commitFrom(states, 0, add);
  states[1] = reload(
    (await joinFromWelcome(add.outbound.welcome!, [k2.privatePackage], users[1]!.identity)).state,
  );
  agree(states);
  await chat(states);
});

Deno.test("group: a leave proposal that arrives after the leaver was removed is stale", async () => {
  const { states: s } = await group(SUITES[1]!, 3);
  const states: (MlsGroupState | undefined)[] = s;
  const leave = await leaveGroup(states[2]!); // p3 asks to leave in epoch 1 …
  states[2] = reload(leave.state);
  await commitFrom(states, 0, await removeMembers(states[0]!, ["p3"])); // … p1 removes p3 first
  const r = await processMessage(states[1]!, leave.outbound);
  assert.equal(r.kind, "stale");
  agree(states);
  await chat(states);
});

Deno.test("group: a removal and a leave in flight at once (the proposal was received first)", async () => {
  const { states: s } = await group(SUITES[1]!, 3);
  const states: (MlsGroupState | undefined)[] = s;
  const leave = await leaveGroup(states[2]!);
  states[2] = reload(leave.state);
  for (const i of [0, 1]) {
    states[i] = reload(kind(await processMessage(states[i]!, leave.outbound), "proposal").state);
  }
  // p1 removes p3 explicitly while p3's own leave proposal is pending: one removal
  const rm = await removeMembers(states[0]!, ["p3"]);
  assert.deepEqual(rm.removed.map((m) => m.username), ["p3"]);
  await commitFrom(states, 0, rm);
  assert.equal(states[2], undefined);
  agree(states);
  await chat(states);
});

Deno.test("group: two members commit in the same epoch; the loser re-bases", async () => {
  const { states: s } = await group(SUITES[1]!, 3);
  const states: (MlsGroupState | undefined)[] = s;
  const a = await selfUpdate(states[0]!);
  const b = await removeMembers(states[1]!, ["p3"]);
  // the server accepts a's commit first; b discards its own and applies a's
  await commitFrom(states, 0, a);
  const { discardPendingCommit } = await import("../src/mls/mod.ts");
  const bBack = await discardPendingCommit(b.state);
  states[1] = reload(kind(await processMessage(bBack.state, a.outbound.commit), "commit").state);
  agree(states);
  await commitFrom(states, 1, await removeMembers(states[1]!, ["p3"]));
  agree(states);
  await chat(states);
});

Deno.test("processMessage tells a voluntary leave from a removal", async () => {
  const { states } = await group(SUITES[1]!, 4);
  const leave = await leaveGroup(states[3]!);
  let p1 = reload(kind(await processMessage(states[0]!, leave.outbound), "proposal").state);
  const p2 = reload(kind(await processMessage(states[1]!, leave.outbound), "proposal").state);
  const rm = await removeMembers(p1, ["p3"]); // p1 removes p3 and commits p4's leave
  p1 = mergePendingCommit(rm.state).state;
  const seen = kind(await processMessage(p2, rm.outbound.commit), "commit");
  assert.deepEqual(seen.removed.map((m) => m.username).sort(), ["p3", "p4"]);
  assert.deepEqual(seen.left, ["p4"]);
  assert.equal(seen.committer.username, "p1");
});

Deno.test("addMembers replaceExisting re-adds a member whose state broke, once", async () => {
  const suite = SUITES[0]!;
  const { users, states: s } = await group(suite, 3);
  const states: (MlsGroupState | undefined)[] = s;
  // p2 lost its state: it makes a fresh KeyPackage and p1 replaces its leaf
  const fresh = await kp(users[1]!, suite);
  const { peekGroupStateSuite } = await import("../src/mls/mod.ts");
  assert.equal(peekGroupStateSuite(encodeGroupState(states[1]!)), suite);
  states[1] = undefined;
  const re = await addMembers(states[0]!, [fresh.publicPackage], { replaceExisting: true });
  assert.ok(re.outbound.welcome, "a Welcome for the re-added member");
  await commitFrom(states, 0, re);
  states[1] = reload(
    (await joinFromWelcome(re.outbound.welcome!, [fresh.privatePackage], users[1]!.identity))
      .state,
  );
  agree(states);
  await chat(states);
  // the same KeyPackage again (a second member's late attempt) is refused
  await assert.rejects(
    () => addMembers(states[2]!, [fresh.publicPackage], { replaceExisting: true }),
    (e: unknown) => (e as { code?: string }).code === "conflict",
  );
});
