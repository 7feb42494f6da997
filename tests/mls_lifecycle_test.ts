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
import type { ClientState, Proposal } from "ts-mls";

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

/**
 * The history the simulation found (seed 1): a member re-invited into a blank leaf under
 * nodes another member had re-keyed. ts-mls 1.6.4's joinGroup refuses the (valid) tree.
 */
async function reinviteHistory(suite: MlsSuiteName) {
  const u = Object.fromEntries(["c0", "c1", "c2", "c3", "c4", "c5"].map((n) => [n, user(n)]));
  const st: Record<string, MlsGroupState | undefined> = {};
  st.c4 = await createGroup({
    groupId: randomBytes(16),
    username: "c4",
    identity: u.c4!.identity,
    suite,
  });
  type Staged = Awaited<ReturnType<typeof selfUpdate>>;
  type Kp = Awaited<ReturnType<typeof kp>>;
  async function apply(by: string, staged: Staged, joiners: Record<string, Kp> = {}) {
    st[by] = reload(mergePendingCommit(staged.state).state);
    for (const [n, s] of Object.entries(st)) {
      if (n === by || !s || joiners[n]) continue;
      const r = await processMessage(s, staged.outbound.commit);
      st[n] = r.kind === "removed" ? undefined : reload(r.state);
    }
    for (const [n, k] of Object.entries(joiners)) {
      st[n] = reload(
        (await joinFromWelcome(staged.outbound.welcome!, [k.privatePackage], u[n]!.identity))
          .state,
      );
    }
  }
  let k: Record<string, Kp> = { c2: await kp(u.c2!, suite), c3: await kp(u.c3!, suite) };
  k.c5 = await kp(u.c5!, suite);
  await apply("c4", await addMembers(st.c4!, Object.values(k).map((x) => x.publicPackage)), k);
  await apply("c3", await removeMembers(st.c3!, ["c4"]));
  k = { c0: await kp(u.c0!, suite), c1: await kp(u.c1!, suite) };
  await apply("c5", await addMembers(st.c5!, Object.values(k).map((x) => x.publicPackage)), k);
  await apply("c1", await selfUpdate(st.c1!));
  k = { c4: await kp(u.c4!, suite) };
  await apply("c2", await addMembers(st.c2!, [k.c4!.publicPackage]), k);
  return st;
}

for (const suite of SUITES) {
  Deno.test(`joinFromWelcome: a member re-invited under re-keyed nodes joins (ts-mls 1.6.4 bug worked around, ${suite})`, async () => {
    const st = await reinviteHistory(suite);
    const states = Object.values(st);
    agree(states);
    await chat(states);
    // and the one who joined through the workaround can commit
    const i = Object.keys(st).indexOf("c4");
    await commitFrom(states, i, await selfUpdate(states[i]!));
    agree(states);
    await chat(states);
  });
}

Deno.test("ts-mls 1.6.4 joinGroup alone refuses that valid tree (upstream bug; drop src/mls/_join.ts when this fails)", async () => {
  const ts = await import("ts-mls");
  const cs = await ts.getCiphersuiteImpl(
    ts.getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"),
  );
  const make = (n: string) =>
    ts.generateKeyPackage(
      { credentialType: "basic", identity: utf8(n) },
      ts.defaultCapabilities(),
      ts.defaultLifetime,
      [],
      cs,
    );
  type Made = Awaited<ReturnType<typeof make>>;
  const kps: Record<string, Made> = {};
  for (const n of ["c0", "c1", "c2", "c3", "c4", "c5"]) kps[n] = await make(n);
  const st: Record<string, ClientState | undefined> = {};
  st.c4 = await ts.createGroup(utf8("g"), kps.c4!.publicPackage, kps.c4!.privatePackage, [], cs);
  const add = (n: string): Proposal => ({
    proposalType: "add",
    add: { keyPackage: kps[n]!.publicPackage },
  });
  const leafOf = (s: ClientState, n: string) =>
    s.ratchetTree.findIndex((x) =>
      x?.nodeType === "leaf" &&
      fromUtf8((x.leaf.credential as { identity: Uint8Array }).identity) === n
    ) / 2;
  async function commit(by: string, proposals: Proposal[], joiners: string[] = []) {
    const r = await ts.createCommit({ state: st[by]!, cipherSuite: cs }, {
      extraProposals: proposals,
      ratchetTreeExtension: true,
    });
    st[by] = r.newState;
    for (const n of Object.keys(st)) {
      if (n === by || !st[n] || joiners.includes(n)) continue;
      const msg = r.commit as { privateMessage: Parameters<typeof ts.processPrivateMessage>[1] };
      const p = await ts.processPrivateMessage(st[n]!, msg.privateMessage, ts.emptyPskIndex, cs);
      if (p.kind !== "newState") throw new Error("unexpected");
      st[n] = p.newState.groupActiveState.kind === "removedFromGroup" ? undefined : p.newState;
    }
    for (const n of joiners) {
      st[n] = await ts.joinGroup(
        r.welcome!,
        kps[n]!.publicPackage,
        kps[n]!.privatePackage,
        ts.emptyPskIndex,
        cs,
      );
    }
  }
  await commit("c4", [add("c2"), add("c3"), add("c5")], ["c2", "c3", "c5"]);
  await commit("c3", [{ proposalType: "remove", remove: { removed: leafOf(st.c3!, "c4") } }]);
  await commit("c5", [add("c0"), add("c1")], ["c0", "c1"]);
  await commit("c1", []);
  kps.c4 = await make("c4");
  await assert.rejects(
    () => commit("c2", [add("c4")], ["c4"]),
    (e: unknown) => (e as Error).message.includes("must list leaf node in its unmerged_leaves"),
  );
});

Deno.test("validateTreeRfc accepts that tree and refuses one whose unmerged leaves are wrong", async () => {
  const { validateTreeRfc } = await import("../src/mls/_join.ts");
  const { CLIENT_CONFIG, suiteImpl } = await import("../src/mls/_state.ts");
  const st = await reinviteHistory(SUITES[1]!);
  const inner = unwrapState(st.c4!);
  const cs = await suiteImpl(inner);
  const tree = inner.current.ratchetTree;
  const ctx = inner.current.groupContext;
  assert.equal(await validateTreeRfc(tree, ctx, CLIENT_CONFIG, cs), undefined);
  const unmerged = (t: typeof tree, i: number, leaves: number[]) => {
    const n = t[i];
    if (n?.nodeType !== "parent") throw new Error(`node ${i} is not a parent`);
    t[i] = { nodeType: "parent", parent: { ...n.parent, unmergedLeaves: leaves } };
  };
  // the root lists leaf 0 as unmerged, but node 3 (non-blank, between them) does not
  const p = tree.findIndex((n) => n?.nodeType === "parent" && n.parent.unmergedLeaves.includes(0));
  const root = (tree.length - 1) / 2;
  assert.ok(p > 0 && p < root, "a non-blank node below the root lists leaf 0");
  const bad = tree.slice();
  unmerged(bad, p, []);
  const rootNode = bad[root];
  if (rootNode?.nodeType !== "parent") throw new Error("root is blank");
  unmerged(bad, root, [...rootNode.parent.unmergedLeaves, 0]);
  assert.equal(
    await validateTreeRfc(bad, ctx, CLIENT_CONFIG, cs),
    "An intermediate node does not list an unmerged leaf below it",
  );
  // an unmerged leaf that is not below the node
  const far = tree.slice();
  unmerged(far, p, [7]);
  assert.equal(
    await validateTreeRfc(far, ctx, CLIENT_CONFIG, cs),
    "An unmerged leaf is not a non-blank descendant",
  );
  // and the hashes bind everything else
  assert.equal(
    await validateTreeRfc(tree, { ...ctx, treeHash: randomBytes(32) }, CLIENT_CONFIG, cs),
    "Tree hash does not match the group context",
  );
});

Deno.test("leavingMembers and pendingProposals tell who asked to leave and that a commit is due", async () => {
  const { leavingMembers } = await import("../src/mls/mod.ts");
  const { states } = await group(SUITES[1]!, 3);
  assert.equal(states[0]!.pendingProposals, 0);
  assert.deepEqual(leavingMembers(states[0]!), []);
  const leave = await leaveGroup(states[2]!);
  const p1 = reload(kind(await processMessage(states[0]!, leave.outbound), "proposal").state);
  assert.equal(p1.pendingProposals, 1);
  assert.deepEqual(leavingMembers(p1), ["p3"]);
  // MLS sends nothing until the proposal is committed; the commit applies it
  await assert.rejects(() => encryptMessage(p1, utf8("too early")));
  const up = await selfUpdate(p1);
  const after = mergePendingCommit(up.state).state;
  assert.equal(after.pendingProposals, 0);
  assert.deepEqual(listMembers(after).map((m) => m.username).sort(), ["p1", "p2"]);
});
