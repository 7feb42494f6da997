/**
 * The LocalState contract, run against both ways of opening the one store: ClientStore on a
 * real state file and SQLite database in a temp directory (small Argon2id parameters), and
 * MemoryLocalState (ClientStore.inMemory: SQLite :memory:). Every method, reopening, transactions (commit, rollback on throw,
 * nesting), idempotency, errors and byte copies. What only one of them does (files, locks,
 * migration, handles) is tested in client_store_test.ts and at the end of this file.
 */

import { randomBytes, utf8 } from "../src/bytes.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../src/crypto/mod.ts";
import { UsageError } from "../src/errors.ts";
import {
  type ClientMetaInit,
  ClientStore,
  type Conversation,
  type GroupRecord,
  type KeyPackageRecord,
  type LocalState,
  MemoryLocalState,
  type OutboxEntry,
  type StoredMessage,
} from "../src/store/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_support/assert.ts";

const FAST = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
const PASSWORD = "local state contract";
const T0 = 1_700_000_000_000;

function initialMeta(username = "alice"): ClientMetaInit {
  const kp = IdentityKeyPair.generate();
  return {
    username,
    server: "localhost:4433",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  };
}

/** One open local state, a way to reopen it (a new process) and to clean up. */
interface Harness {
  state: LocalState;
  /** Close the current state and open the same data again. */
  reopen(): Promise<LocalState>;
  cleanup(): Promise<void>;
}

interface Impl {
  name: "ClientStore" | "MemoryLocalState";
  open(meta: ClientMetaInit): Promise<Harness>;
}

const IMPLS: Impl[] = [
  {
    name: "ClientStore",
    async open(meta) {
      const dir = await Deno.makeTempDir({ prefix: "qpq-local-state-" });
      const path = `${dir}/s.bin`;
      const h: Harness = {
        state: await ClientStore.open(path, PASSWORD, {
          create: true,
          initialMeta: meta,
          kdf: FAST,
        }),
        async reopen() {
          await h.state.close();
          h.state = await ClientStore.open(path, PASSWORD);
          return h.state;
        },
        async cleanup() {
          await h.state.close();
          await Deno.remove(dir, { recursive: true });
        },
      };
      return h;
    },
  },
  {
    name: "MemoryLocalState",
    open(meta) {
      const h: Harness = {
        state: new MemoryLocalState(meta),
        async reopen() {
          await h.state.close();
          h.state = (h.state as MemoryLocalState).reopen();
          return h.state;
        },
        cleanup: () => h.state.close(),
      };
      return Promise.resolve(h);
    },
  },
];

/** Register one contract test for every implementation: "<Impl>.<what>". */
function contract(what: string, fn: (h: Harness, meta: ClientMetaInit) => Promise<void>): void {
  for (const impl of IMPLS) {
    Deno.test(`${impl.name}.${what}`, async () => {
      const meta = initialMeta();
      const h = await impl.open(meta);
      try {
        await fn(h, meta);
      } finally {
        await h.cleanup();
      }
    });
  }
}

function group(channelId: string, extra: Partial<GroupRecord> = {}): GroupRecord {
  return {
    channelId,
    state: utf8(`state of ${channelId}`),
    lastUpdateMs: T0,
    leaves: [],
    ...extra,
  };
}

function keyPackage(ref: string, extra: Partial<KeyPackageRecord> = {}): KeyPackageRecord {
  return {
    ref,
    suite: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
    lastResort: false,
    privatePackage: utf8(`private ${ref}`),
    ...extra,
  };
}

function conv(id: string, name: string, createdAt = T0, kind: Conversation["kind"] = "dm") {
  return { id, kind, name, peer: "bob", createdAt } satisfies Conversation;
}

function msg(conversationId: string, messageId: string, body: string, at = T0): StoredMessage {
  return {
    conversationId,
    messageId,
    sender: "bob",
    body,
    sentAt: at,
    receivedAt: at + 5,
    direction: "in",
  };
}

function outbox(messageId: string, at = T0): OutboxEntry {
  return {
    messageId,
    conversationId: "c1",
    request: utf8(`request ${messageId}`),
    createdAt: at,
    attempts: 0,
  };
}

function usage(fn: () => unknown, code?: string): UsageError {
  const e = assertThrows(fn, UsageError) as UsageError;
  if (code !== undefined) assertEquals(e.code, code);
  return e;
}

// ------------------------------------------------------------------------------ meta

contract("meta returns the initial record and updateMeta patches it", async (h, meta) => {
  const s = h.state;
  assertEquals(s.meta.version, 1);
  assertEquals(s.meta.username, meta.username);
  assertEquals(s.meta.identitySeed, meta.identitySeed);
  assertEquals(s.meta.identityPublic, meta.identityPublic);
  assert(!("sessionToken" in s.meta));
  const token = randomBytes(32);
  s.updateMeta({ sessionToken: token, sessionExpiresAt: T0, deviceId: "dev-1" });
  assertEquals(s.meta.sessionToken, token);
  assertEquals(s.meta.deviceId, "dev-1");
  usage(() => s.updateMeta({ identitySeed: new Uint8Array(5) }));
  usage(() => s.updateMeta({ username: "" }));
  assertEquals(s.meta.sessionToken, token, "a refused patch changes nothing");
  s.updateMeta({ sessionToken: undefined, server: "h:1" });
  assert(!("sessionToken" in s.meta));
  assertEquals(s.meta.sessionExpiresAt, T0);
  const r = await h.reopen();
  assertEquals(r.meta.server, "h:1");
  assertEquals(r.meta.deviceId, "dev-1");
  assert(!("sessionToken" in r.meta));
  // Inspecting the meta never shows the seed.
  assertStringIncludes(Deno.inspect(r.meta), "[redacted]");
  assertStringIncludes(JSON.stringify(r.meta), "[redacted]");
});

contract("updateMeta is not part of a transaction", async (h) => {
  const s = h.state;
  assertThrows(() =>
    s.transaction(() => {
      s.updateMeta({ deviceId: "kept" });
      s.setCursor(9);
      throw new Error("boom");
    })
  );
  assertEquals(s.meta.deviceId, "kept");
  assertEquals(s.cursor(), 0);
  await Promise.resolve();
});

// ---------------------------------------------------------------------------- cursor

contract("cursor starts at 0 and returns what setCursor stored", async (h) => {
  assertEquals(h.state.cursor(), 0);
  h.state.setCursor(17);
  h.state.setCursor(42);
  assertEquals(h.state.cursor(), 42);
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) usage(() => h.state.setCursor(bad));
  assertEquals(h.state.cursor(), 42);
  assertEquals((await h.reopen()).cursor(), 42);
  h.state.setCursor(0);
  assertEquals(h.state.cursor(), 0);
});

// ---------------------------------------------------------------------------- groups

contract("putGroup stores every field exactly and replaces by channel id", async (h) => {
  const s = h.state;
  const full = group("aa", {
    state: randomBytes(3000),
    pendingCommit: randomBytes(200),
    lastUpdateMs: T0 + 7,
    leaves: ["carol", "dave"],
    broken: "Cannot apply commit: epoch mismatch",
    rejoinRequestedMs: T0 + 9,
  });
  s.putGroup(full);
  s.putGroup(group("bb"));
  assertEquals(s.group("aa"), full);
  assertEquals(s.group("bb"), group("bb"));
  assert(!("pendingCommit" in s.group("bb")!), "absent optional fields stay absent");
  assertEquals(s.group("cc"), undefined);
  // Replacing drops what the new record does not have.
  const next = group("aa", { state: utf8("epoch 2"), lastUpdateMs: T0 + 8 });
  s.putGroup(next);
  assertEquals(s.group("aa"), next);
  s.putGroup(full);
  const r = await h.reopen();
  assertEquals(r.group("aa"), full);
  assertEquals(r.listGroups(), [full, group("bb")]);
});

contract(
  "group secrets: stored beside the state, changed one by one under the state tag, gone with the group",
  async (h) => {
    const s = h.state;
    const sec = (epoch: number, node: number, v: number) => ({
      epoch,
      node,
      value: new Uint8Array(40).fill(v),
    });
    const g = group("aa", { state: utf8("split state") });
    const t1 = s.putGroup({ ...g, secrets: [sec(2, 1, 1), sec(2, 0, 1), sec(1, 0, 1)] });
    assertEquals(s.group("aa")?.secrets, [sec(1, 0, 1), sec(2, 0, 1), sec(2, 1, 1)], "sorted");
    assert(!("secrets" in s.groupMeta("aa")!), "the meta row has no secrets");
    // a change under the stored tag: one secret replaced, a new tag, state and fields kept
    const t2 = s.putGroupSecrets("aa", t1, { put: [sec(2, 1, 9)] })!;
    assert(t2 !== undefined && t2 !== t1);
    assertEquals(s.groupMeta("aa")?.stateTag, t2);
    assertEquals(s.group("aa"), { ...g, secrets: [sec(1, 0, 1), sec(2, 0, 1), sec(2, 1, 9)] });
    // under another tag: nothing changes
    assertEquals(s.putGroupSecrets("aa", t1, { put: [sec(2, 1, 7)] }), undefined);
    assertEquals(s.putGroupSecrets("zz", t2, { put: [] }), undefined);
    assertEquals(s.group("aa")?.secrets?.[2], sec(2, 1, 9));
    // rolled back with its transaction
    try {
      s.transaction(() => {
        s.putGroupSecrets("aa", t2, { put: [sec(2, 0, 5)] });
        throw new Error("roll back");
      });
    } catch { /* expected */ }
    assertEquals(s.group("aa")?.secrets?.[1], sec(2, 0, 1));
    assertEquals(s.groupMeta("aa")?.stateTag, t2);
    // putGroup with a change: an epoch dropped, one added; without: all replaced
    s.putGroup(g, { drop: [1], put: [sec(3, 0, 3)] });
    assertEquals(s.group("aa")?.secrets, [sec(2, 0, 1), sec(2, 1, 9), sec(3, 0, 3)]);
    s.putGroup(g, { all: true, put: [sec(4, 0, 4)] });
    assertEquals(s.group("aa")?.secrets, [sec(4, 0, 4)]);
    assertEquals((await h.reopen()).group("aa")?.secrets, [sec(4, 0, 4)]);
    const r = h.state;
    assert(r.putGroupMeta({ ...g, leaves: ["x"] }));
    assertEquals(r.group("aa")?.secrets, [sec(4, 0, 4)], "putGroupMeta keeps them");
    r.putGroup(g);
    assertEquals(r.group("aa"), g, "a record without secrets replaces them all");
    r.putGroup({ ...g, secrets: [sec(1, 1, 1)] });
    assert(r.deleteGroup("aa"));
    r.putGroup(g);
    assertEquals(r.group("aa"), g, "deleting a group deletes its secrets");
    assertThrows(() => r.putGroup({ ...g, secrets: [sec(1, 1, 1), sec(1, 1, 2)] }), UsageError);
    assertThrows(() => r.putGroup({ ...g, secrets: [sec(1, 1, 1)] }, { put: [] }), UsageError);
    assertThrows(() => r.putGroupSecrets("aa", "t", { put: [sec(-1, 0, 1)] }), UsageError);
  },
);

contract(
  "recordsVersion moves with what listings derive from, not with a message, a ratchet or a counter",
  (h) => {
    const s = h.state;
    const moves = (what: string, fn: () => unknown, expected = true) => {
      const v = s.recordsVersion;
      try {
        fn();
      } catch { /* a rolled back transaction */ }
      assertEquals(s.recordsVersion !== v, expected, what);
    };
    s.upsertConversation(conv("aa", "@bob"));
    const t1 = s.putGroup(group("aa", { secrets: [] }));
    const fields = { channelId: "aa", lastUpdateMs: T0, leaves: [] as string[] };
    moves("putGroup", () => s.putGroup(group("aa")));
    const t2 = s.groupMeta("aa")!.stateTag;
    assert(t2 !== t1);
    moves("a ratchet", () => s.putGroupSecrets("aa", t2, { put: [] }), false);
    moves("a message", () => s.addMessage(msg("aa", "m1", "hi")), false);
    moves("the cursor", () => s.setCursor(7), false);
    s.groupMeta("aa"); // read: the store knows the fields before the next write
    moves(
      "counters",
      () => s.putGroupMeta({ ...fields, narrowSends: { epoch: 1, count: 2 } }),
      false,
    );
    s.groupMeta("aa");
    moves("leaves", () => s.putGroupMeta({ ...fields, leaves: ["carol"] }));
    s.groupMeta("aa");
    moves("broken", () => s.putGroupMeta({ ...fields, broken: "why" }));
    s.groupMeta("aa");
    moves("a pending commit", () => s.putGroupMeta({ ...fields, pendingCommit: utf8("commit") }));
    s.groupMeta("aa");
    moves(
      "the same again",
      () => s.putGroupMeta({ ...fields, pendingCommit: utf8("commit") }),
      false,
    );
    s.groupMeta("aa");
    moves("resolved", () => s.putGroupMeta(fields));
    moves("a conversation", () => s.upsertConversation(conv("aa", "@bob2")));
    s.getConversation("aa");
    moves("read", () => s.markRead("aa"), false);
    moves("a rollback", () =>
      s.transaction(() => {
        s.addMessage(msg("aa", "m2", "hi"));
        throw new Error("roll back");
      }));
    moves("a group deleted", () => s.deleteGroup("aa"));
    return Promise.resolve();
  },
);

contract("listGroups is sorted by channel id and deleteGroup reports what it did", async (h) => {
  const s = h.state;
  for (const id of ["c3", "a1", "b2"]) s.putGroup(group(id));
  assertEquals(s.listGroups().map((g) => g.channelId), ["a1", "b2", "c3"]);
  assert(s.deleteGroup("b2"));
  assert(!s.deleteGroup("b2"));
  assert(!s.deleteGroup("zz"));
  assertEquals(s.group("b2"), undefined);
  assertEquals((await h.reopen()).listGroups().map((g) => g.channelId), ["a1", "c3"]);
});

contract(
  "groupMeta reads a record without its state; putGroup gives each state a new tag",
  async (h) => {
    const s = h.state;
    const summary = {
      epoch: 3,
      suite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
      members: ["alice", "bob"],
      pendingCommit: false,
      pendingProposals: 1,
    };
    const full = group("aa", { state: randomBytes(500), leaves: ["carol"], summary });
    const t1 = s.putGroup(full);
    const m1 = s.groupMeta("aa")!;
    assertEquals(m1.stateTag, t1);
    assert(!("state" in m1), "the state is not read");
    const { state: _, ...fields } = full;
    assertEquals(m1, { ...fields, stateTag: t1 });
    assertEquals(s.group("aa"), full, "the summary is stored with the record");
    // the same bytes again still get a new tag: a tag names one write, not a value
    const t2 = s.putGroup(full);
    assert(t2 !== t1);
    assertEquals(s.groupMeta("aa")?.stateTag, t2);
    // putGroupMeta changes the fields, never the state nor its tag
    assert(s.putGroupMeta({ ...fields, leaves: [], broken: "why", stateTag: "ignored" } as never));
    assertEquals(s.group("aa"), { ...full, leaves: [], broken: "why" });
    assertEquals(s.groupMeta("aa")?.stateTag, t2);
    assert(!s.putGroupMeta({ ...fields, channelId: "zz" }), "no record, no change");
    assertEquals(s.groupMeta("zz"), undefined);
    // a rolled back write leaves the tag that is stored
    try {
      s.transaction(() => {
        s.putGroup(group("aa"));
        throw new Error("roll back");
      });
    } catch { /* expected */ }
    assertEquals(s.groupMeta("aa")?.stateTag, t2);
    s.putGroup(group("bb"));
    const r = await h.reopen();
    assertEquals(r.listGroupMeta().map((m) => [m.channelId, m.stateTag !== ""]), [
      ["aa", true],
      ["bb", true],
    ]);
    assertEquals(r.groupMeta("aa")?.stateTag, t2);
    usage(() => r.putGroup(group("cc", { summary: { ...summary, epoch: -1 } })));
  },
);

contract("putGroup refuses invalid records", async (h) => {
  const s = h.state;
  const bad: Partial<GroupRecord>[] = [
    { channelId: "" },
    { state: "x" as unknown as Uint8Array },
    { pendingCommit: [1] as unknown as Uint8Array },
    { lastUpdateMs: NaN },
    { leaves: "carol" as unknown as string[] },
    { leaves: [""] },
    { broken: "" },
    { broken: "x".repeat(5000) },
    { rejoinRequestedMs: Infinity },
  ];
  for (const b of bad) usage(() => s.putGroup(group("aa", b)));
  assertEquals(s.listGroups(), []);
  await Promise.resolve();
});

// ---------------------------------------------------------------------- key packages

contract("putKeyPackage stores records listed by ref, with an unknown suite allowed", async (h) => {
  const s = h.state;
  const a = keyPackage("02ab");
  const b = keyPackage("01cd", { suite: "", lastResort: true });
  s.putKeyPackage(a);
  s.putKeyPackage(b);
  assertEquals(s.listKeyPackages(), [b, a]);
  const a2 = keyPackage("02ab", { privatePackage: utf8("replaced") });
  s.putKeyPackage(a2);
  assertEquals(s.listKeyPackages(), [b, a2]);
  assert(s.deleteKeyPackage("01cd"));
  assert(!s.deleteKeyPackage("01cd"));
  assertEquals((await h.reopen()).listKeyPackages(), [a2]);
  usage(() => h.state.putKeyPackage(keyPackage("")));
  usage(() => h.state.putKeyPackage(keyPackage("x", { lastResort: 1 as unknown as boolean })));
  usage(() => h.state.putKeyPackage(keyPackage("x", { suite: 7 as unknown as string })));
  usage(() => h.state.putKeyPackage(keyPackage("x", { privatePackage: "p" as never })));
});

// -------------------------------------------------------------------------- contacts

contract("pinKey pins a key per user and a later pin replaces it", async (h) => {
  const s = h.state;
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  assertEquals(s.pinnedKey("bob"), undefined);
  s.pinKey("bob", k1);
  s.pinKey("carol", k2);
  assertEquals(s.pinnedKey("bob"), k1);
  s.pinKey("bob", k2);
  assertEquals((await h.reopen()).pinnedKey("bob"), k2);
  assertEquals(h.state.pinnedKey("carol"), k2);
  usage(() => h.state.pinKey("", k1));
  usage(() => h.state.pinKey("dave", "key" as unknown as Uint8Array));
});

contract("setConsent records contacts and blocks per user, and forgets them", async (h) => {
  const s = h.state;
  assertEquals(s.consent("bob"), undefined);
  s.setConsent("bob", "contact");
  s.setConsent("mallory", "blocked");
  s.setConsent("eve", "blocked");
  s.setConsent("carol", "contact");
  s.setConsent("carol", undefined);
  s.setConsent("nobody", undefined); // forgetting a stranger is a no-op
  const r = await h.reopen();
  assertEquals(r.consent("bob"), "contact");
  assertEquals(r.consent("mallory"), "blocked");
  assertEquals(r.consent("carol"), undefined);
  assertEquals(r.listBlocked(), ["eve", "mallory"]);
  r.setConsent("eve", "contact");
  assertEquals(r.listBlocked(), ["mallory"]);
  usage(() => r.setConsent("", "contact"));
  usage(() => r.setConsent("dave", "friend" as unknown as "contact"));
});

contract("a conversation keeps who its request is from until it is replaced without", async (h) => {
  const s = h.state;
  s.upsertConversation({ ...conv("c1", "@mallory"), requestFrom: "mallory" });
  assertEquals((await h.reopen()).getConversation("c1")?.requestFrom, "mallory");
  h.state.upsertConversation(conv("c1", "@mallory"));
  assertEquals(h.state.getConversation("c1"), conv("c1", "@mallory"));
  usage(() => h.state.upsertConversation({ ...conv("c2", "x"), requestFrom: "" }));
});

// --------------------------------------------------------------------- conversations

contract("upsertConversation replaces by id and refuses a name another one uses", async (h) => {
  const s = h.state;
  const gid = randomBytes(16);
  s.upsertConversation(conv("c2", "zed", T0 + 5));
  s.upsertConversation(conv("c1", "bob", T0));
  s.upsertConversation({ ...conv("c1", "bobby", T0), channelId: "ch", groupId: gid });
  assertEquals(s.findConversationByName("bob"), undefined);
  assertEquals(s.findConversationByName("bobby"), {
    ...conv("c1", "bobby", T0),
    channelId: "ch",
    groupId: gid,
  });
  usage(() => s.upsertConversation(conv("c3", "zed")), "conflict");
  s.upsertConversation(conv("c3", "bob", T0 + 5)); // the old name is free again
  assertEquals(s.listConversations().map((c) => c.id), ["c1", "c3", "c2"]);
  usage(() => s.upsertConversation({ ...conv("c4", "x"), kind: "nope" as "dm" }));
  usage(() => s.upsertConversation(conv("", "x")));
  const r = await h.reopen();
  assertEquals(r.getConversation("c1")?.groupId, gid);
  assertEquals(r.getConversation("nope"), undefined);
  assertEquals(r.listConversations().map((c) => c.name), ["bobby", "bob", "zed"]);
});

// -------------------------------------------------------------------------- messages

contract("addMessage is idempotent on messageId and needs a known conversation", async (h) => {
  const s = h.state;
  s.upsertConversation(conv("c1", "bob"));
  assert(s.addMessage(msg("c1", "m1", "first")));
  assert(!s.addMessage(msg("c1", "m1", "first")));
  assert(!s.addMessage(msg("c1", "m1", "a different body")));
  assertEquals(s.history("c1", 10), [msg("c1", "m1", "first")]);
  usage(() => s.addMessage(msg("nope", "m2", "x")), "not_found");
  usage(() => s.addMessage(msg("c1", "", "x")));
  usage(() => s.addMessage({ ...msg("c1", "m3", "x"), direction: "up" as "in" }));
  usage(() => s.addMessage({ ...msg("c1", "m3", "x"), unreadable: "yes" as unknown as boolean }));
  assert(s.hasMessage("m1"));
  assert(!s.hasMessage("m2"));
  assertEquals(s.getMessage("m1")?.messageId, "m1");
  assertEquals(s.getMessage("m2"), undefined);
  assert((await h.reopen()).hasMessage("m1"));
  assert(!h.state.addMessage(msg("c1", "m1", "after reopen")));
});

contract("history returns the newest count messages oldest first", async (h) => {
  const s = h.state;
  s.upsertConversation(conv("c1", "bob"));
  s.upsertConversation(conv("c2", "carol"));
  for (let i = 0; i < 30; i++) {
    s.addMessage(msg(i % 3 === 0 ? "c2" : "c1", `m${i}`, `body ${i}`, T0 - i));
  }
  const c1 = [...Array(30).keys()].filter((i) => i % 3 !== 0).map((i) => `body ${i}`);
  assertEquals(s.history("c1", 5).map((m) => m.body), c1.slice(-5));
  assertEquals(s.history("c1", 1000).map((m) => m.body), c1);
  assertEquals(s.history("c2", 2).map((m) => m.messageId), ["m24", "m27"]);
  assertEquals(s.history("c1", 0), []);
  assertEquals(s.history("unknown", 5), []);
  usage(() => s.history("c1", -1));
  usage(() => s.history("c1", 1.5));
  assertEquals((await h.reopen()).history("c1", 3).map((m) => m.body), c1.slice(-3));
});

contract("setMessageStatus changes only the status and keeps the unreadable flag", async (h) => {
  const s = h.state;
  s.upsertConversation(conv("c1", "bob"));
  const out: StoredMessage = { ...msg("c1", "m1", "hi"), direction: "out", status: "pending" };
  const lost: StoredMessage = { ...msg("c1", "m2", ""), unreadable: true };
  const plain: StoredMessage = { ...msg("c1", "m3", "ok"), unreadable: false };
  s.addMessage(out);
  s.addMessage(lost);
  s.addMessage(plain);
  assert(s.setMessageStatus("m1", "delivered"));
  assert(s.setMessageStatus("m2", "sent"));
  assert(!s.setMessageStatus("m404", "sent"));
  usage(() => s.setMessageStatus("m1", "read" as "sent"));
  const want = [{ ...out, status: "delivered" }, { ...lost, status: "sent" }, plain];
  assertEquals(s.history("c1", 10), want);
  assertEquals((await h.reopen()).history("c1", 10), want);
  assert(!("unreadable" in h.state.history("c1", 10)[0]!));
});

// ---------------------------------------------------------------------------- outbox

contract(
  "addOutbox lists oldest first, is idempotent and counts attempts until removed",
  async (h) => {
    const s = h.state;
    assert(s.addOutbox(outbox("b", T0 + 1)));
    assert(s.addOutbox(outbox("a", T0 + 2)));
    assert(!s.addOutbox(outbox("b", T0 + 3)));
    assertEquals(s.listOutbox(), [outbox("b", T0 + 1), outbox("a", T0 + 2)]);
    assertEquals(s.bumpOutbox("a"), 1);
    assertEquals(s.bumpOutbox("a"), 2);
    assertEquals(s.bumpOutbox("zz"), undefined);
    usage(() => s.addOutbox({ ...outbox("c"), attempts: -1 }));
    usage(() => s.addOutbox({ ...outbox("c"), request: "r" as unknown as Uint8Array }));
    const r = await h.reopen();
    assertEquals(r.listOutbox(), [outbox("b", T0 + 1), { ...outbox("a", T0 + 2), attempts: 2 }]);
    assert(r.removeOutbox("b"));
    assert(!r.removeOutbox("b"));
    assert(r.addOutbox(outbox("b", T0 + 4)), "a removed entry can be queued again, last");
    assertEquals(r.listOutbox().map((e) => e.messageId), ["a", "b"]);
  },
);

contract(
  "keepSent keeps acknowledged requests out of the queue, bounded; requeueSent queues them again last",
  async (h) => {
    const s = h.state;
    const limits = { count: 3, bytes: 1 << 20 };
    for (const id of ["k1", "q1", "k2", "k3", "k4"]) assert(s.addOutbox(outbox(id)));
    // the first kept one is the only entry at first: its new place must still be found
    assert(s.keepSent("k1", T0 + 1, limits));
    assert(!s.keepSent("k1", T0 + 1, limits), "kept already: not queued");
    assert(!s.keepSent("zz", T0 + 1, limits));
    for (const [i, id] of ["k2", "k3", "k4"].entries()) assert(s.keepSent(id, T0 + 2 + i, limits));
    assertEquals(s.listOutbox().map((e) => e.messageId), ["q1"]);
    // the newest three are kept (k1, the oldest, is gone)
    assertEquals(s.listSent().map((e) => [e.messageId, e.sentAt]), [
      ["k2", T0 + 2],
      ["k3", T0 + 3],
      ["k4", T0 + 4],
    ]);
    const r = await h.reopen();
    assertEquals(r.listSent().map((e) => e.messageId), ["k2", "k3", "k4"]);
    // a byte bound (counted as stored: sealed on disk, the request in memory)
    assert(r.addOutbox(outbox("k5")));
    assert(r.keepSent("k5", T0 + 5, { count: 10, bytes: 1 }));
    assertEquals(r.listSent(), [], "over the byte bound: none kept");
    assert(r.addOutbox(outbox("k6")));
    assert(r.keepSent("k6", T0 + 6, limits));
    assertEquals(r.requeueSent(T0 + 6), 1, "sent before `since`: forgotten");
    assertEquals(r.listSent(), []);
    assertEquals(r.listOutbox().map((e) => [e.messageId, e.resend, e.sentAt]), [
      ["q1", undefined, undefined],
      ["k6", true, undefined],
    ]);
    // kept and queued again, twice over: places stay distinct
    assert(r.keepSent("k6", T0 + 7, limits));
    assert(r.keepSent("q1", T0 + 8, limits));
    assertEquals(r.requeueSent(0), 2);
    assertEquals(r.listOutbox().map((e) => e.messageId), ["k6", "q1"]);
    assert(r.keepSent("q1", T0 + 9, limits));
    assert(r.keepSent("k6", T0 + 9, limits));
    assertEquals(r.listSent().map((e) => e.messageId), ["q1", "k6"]);
    assert(r.removeOutbox("q1"), "removeOutbox removes a kept one too");
    assertEquals(r.listSent().map((e) => e.messageId), ["k6"]);
  },
);

contract(
  "keepSent's bounds count what is kept after a kept one is removed or a transaction rolled back",
  // deno-lint-ignore require-await
  async (h) => {
    const s = h.state;
    const limits = { count: 3, bytes: 1 << 20 };
    for (const id of ["k1", "k2", "k3", "k4", "k5"]) assert(s.addOutbox(outbox(id)));
    for (const [i, id] of ["k1", "k2", "k3"].entries()) assert(s.keepSent(id, T0 + i, limits));
    assert(s.removeOutbox("k2"));
    assert(s.keepSent("k4", T0 + 4, limits));
    assertEquals(s.listSent().map((e) => e.messageId), ["k1", "k3", "k4"], "room for k4");
    assertThrows(() =>
      s.transaction(() => {
        assert(s.removeOutbox("k3"));
        throw new Error("rolled back");
      })
    );
    assertEquals(s.listSent().map((e) => e.messageId), ["k1", "k3", "k4"]);
    assert(s.keepSent("k5", T0 + 5, limits));
    assertEquals(s.listSent().map((e) => e.messageId), ["k3", "k4", "k5"], "k3 still counted");
    // a kept one is not queued: no attempt counted, its row (sized in the totals) untouched
    assertEquals(s.bumpOutbox("k3"), undefined);
    assertEquals(s.listSent().map((e) => e.attempts), [0, 0, 0]);
  },
);

// ---------------------------------------------------------------------- transactions

/** Writes one of everything on top of `base` (a conversation "g" must exist). */
function writeAll(s: LocalState, tag: string): void {
  s.setCursor(100);
  s.putGroup(group("g", { state: utf8(`epoch ${tag}`), leaves: ["carol"] }));
  s.putGroup(group(`new-${tag}`));
  s.putKeyPackage(keyPackage(`kp-${tag}`));
  s.pinKey("bob", utf8(`key ${tag}`));
  s.setConsent("bob", "blocked");
  s.setConsent("carol", undefined);
  s.upsertConversation({ ...conv(`c-${tag}`, `name-${tag}`), requestFrom: "eve" });
  s.upsertConversation({ ...conv("g", `renamed-${tag}`), kind: "group" });
  s.addMessage(msg("g", `m-${tag}`, "hi"));
  s.setMessageStatus("m0", "delivered");
  s.addOutbox({ ...outbox(`o-${tag}`), conversationId: "g" });
  s.bumpOutbox("o0");
  s.removeOutbox("o1");
  s.deleteKeyPackage("kp0");
  s.deleteGroup("gone");
}

/** Everything a LocalState shows (but the meta). */
function dump(s: LocalState): unknown {
  return {
    cursor: s.cursor(),
    groups: s.listGroups(),
    keyPackages: s.listKeyPackages(),
    bob: s.pinnedKey("bob"),
    consent: [s.consent("bob"), s.consent("carol"), s.listBlocked()],
    conversations: s.listConversations(),
    byName: s.listConversations().map((c) => s.findConversationByName(c.name)),
    history: s.listConversations().map((c) => s.history(c.id, 100)),
    outbox: s.listOutbox(),
  };
}

function base(s: LocalState): void {
  s.setCursor(5);
  s.upsertConversation({ ...conv("g", "friends"), kind: "group" });
  s.putGroup(group("g", { state: utf8("epoch 1") }));
  s.putGroup(group("gone"));
  s.putKeyPackage(keyPackage("kp0"));
  s.pinKey("bob", utf8("key 0"));
  s.setConsent("bob", "contact");
  s.setConsent("carol", "contact");
  s.addMessage({ ...msg("g", "m0", "zero"), direction: "out", status: "pending" });
  s.addOutbox({ ...outbox("o0"), conversationId: "g" });
  s.addOutbox({ ...outbox("o1"), conversationId: "g" });
}

contract("transaction undoes every kind of change when its callback throws", async (h) => {
  const s = h.state;
  base(s);
  const before = dump(s);
  const boom = new Error("boom");
  const thrown = assertThrows(() =>
    s.transaction(() => {
      writeAll(s, "x");
      throw boom;
    })
  );
  assert(thrown === boom, "the callback's error is rethrown as is");
  assertEquals(dump(s), before);
  assert(!s.hasMessage("m-x"));
  assertEquals(s.findConversationByName("name-x"), undefined);
  assertEquals(s.findConversationByName("friends")?.id, "g");
  // A failing call (a taken name) inside rolls back the whole group too.
  usage(() =>
    s.transaction(() => {
      writeAll(s, "y");
      s.upsertConversation(conv("other", "name-y"));
    }), "conflict");
  assertEquals(dump(s), before);
  assertEquals(dump(await h.reopen()), before);
});

/** What the store reads once per received message (kept in memory by ClientStore). */
function hot(s: LocalState): unknown {
  return {
    cursor: s.cursor(),
    group: s.groupMeta("g"),
    gone: s.groupMeta("gone"),
    fresh: s.groupMeta("new-x"),
    conversation: s.getConversation("g"),
    other: s.getConversation("c-x"),
    consent: [s.consent("bob"), s.consent("carol")],
    messages: [s.getMessage("m0"), s.getMessage("m-x")],
  };
}

contract("transaction: rows read inside one rolled back are read as stored again", async (h) => {
  const s = h.state;
  base(s);
  const before = hot(s); // read (and kept) before
  assertThrows(() =>
    s.transaction(() => {
      writeAll(s, "x");
      const inside = hot(s) as { cursor: number; messages: unknown[] };
      assertEquals(inside.cursor, 100, "a read inside sees the transaction's writes");
      assert(inside.messages[1] !== undefined);
      throw new Error("boom");
    })
  );
  assertEquals(hot(s), before);
  // and a tag moved by a group's secrets in a rolled back transaction is not kept
  const tag = s.groupMeta("g")!.stateTag;
  assertThrows(() =>
    s.transaction(() => {
      assert(s.putGroupSecrets("g", tag, { put: [] }) !== undefined);
      throw new Error("boom");
    })
  );
  assertEquals(s.groupMeta("g")!.stateTag, tag);
  assert(s.putGroupSecrets("g", tag, { put: [] }) !== undefined, "the stored tag is the old one");
  // a copy handed out and changed by the caller changes nothing stored
  const m = s.getMessage("m0")!;
  m.body = "changed";
  s.getConversation("g")!.name = "changed";
  s.groupMeta("g")!.leaves.push("changed");
  assertEquals(s.getMessage("m0")!.body, "zero");
  assertEquals(s.getConversation("g")!.name, "friends");
  assertEquals(s.groupMeta("g")!.leaves, []);
  // a tag moved by secrets alone is this handle's (kept in memory, not written): a handle
  // opened again shows the row's tag, never the moved one; everything else as it was
  const moved = s.groupMeta("g")!.stateTag;
  const now = hot(s) as { group: { stateTag: string } };
  const again = hot(await h.reopen()) as { group: { stateTag: string } };
  assert(again.group.stateTag !== moved && again.group.stateTag === tag);
  assertEquals(again, { ...now, group: { ...now.group, stateTag: tag } });
});

contract(
  "transaction commits every change together and returns the callback's value",
  async (h) => {
    const s = h.state;
    base(s);
    const n = s.transaction(() => {
      writeAll(s, "x");
      return 42;
    });
    assertEquals(n, 42);
    const after = dump(s);
    assertEquals(s.cursor(), 100);
    assertEquals(s.group("g")?.leaves, ["carol"]);
    assertEquals(s.group("gone"), undefined);
    assertEquals(s.listOutbox().map((e) => [e.messageId, e.attempts]), [["o0", 1], ["o-x", 0]]);
    assertEquals(s.history("g", 5).map((m) => [m.messageId, m.status]), [
      ["m0", "delivered"],
      ["m-x", undefined],
    ]);
    assertEquals(dump(await h.reopen()), after);
  },
);

contract("transaction nests: a caught inner throw undoes only the inner changes", async (h) => {
  const s = h.state;
  s.upsertConversation({ ...conv("g", "friends"), kind: "group" });
  s.transaction(() => {
    s.setCursor(1);
    try {
      s.transaction(() => {
        s.setCursor(2);
        s.putGroup(group("inner"));
        s.addMessage(msg("g", "m-inner", "x"));
        throw new Error("inner");
      });
    } catch { /* handled */ }
    s.transaction(() => s.putGroup(group("kept")));
    s.addMessage(msg("g", "m-outer", "y"));
  });
  assertEquals(s.cursor(), 1);
  assertEquals(s.listGroups().map((g) => g.channelId), ["kept"]);
  assertEquals(s.history("g", 5).map((m) => m.messageId), ["m-outer"]);
  // An inner transaction that succeeded is still undone by the outer one failing.
  assertThrows(() =>
    s.transaction(() => {
      s.transaction(() => s.setCursor(3));
      throw new Error("outer");
    })
  );
  assertEquals(s.cursor(), 1);
  assertEquals((await h.reopen()).cursor(), 1);
});

contract("transaction refuses an async callback and undoes its synchronous part", async (h) => {
  const s = h.state;
  usage(
    // deno-lint-ignore require-await
    () => s.transaction(async () => s.setCursor(8)),
  );
  assertEquals(s.cursor(), 0);
  assertEquals((await h.reopen()).cursor(), 0);
});

// ------------------------------------------------------------------------ byte copies

contract("values are copied on the way in and out", async (h) => {
  const s = h.state;
  const state = utf8("group state");
  const pending = utf8("pending");
  const leaves = ["carol"];
  s.putGroup(group("g", { state, pendingCommit: pending, leaves }));
  const priv = utf8("private");
  s.putKeyPackage(keyPackage("r", { privatePackage: priv }));
  const key = utf8("identity key");
  s.pinKey("bob", key);
  const gid = utf8("group id");
  s.upsertConversation({ ...conv("c1", "bob"), groupId: gid });
  const request = utf8("request");
  s.addOutbox({ ...outbox("o"), request });
  const msgIn = msg("c1", "m1", "hi");
  s.addMessage(msgIn);
  for (const b of [state, pending, priv, key, gid, request]) b.fill(0);
  leaves.push("mallory");
  msgIn.body = "changed";

  const g = s.group("g")!;
  assertEquals(g.state, utf8("group state"));
  assertEquals(g.pendingCommit, utf8("pending"));
  assertEquals(g.leaves, ["carol"]);
  g.state.fill(0);
  g.pendingCommit!.fill(0);
  g.leaves.push("mallory");
  s.listGroups()[0]!.state.fill(0);
  s.listKeyPackages()[0]!.privatePackage.fill(0);
  s.pinnedKey("bob")!.fill(0);
  s.getConversation("c1")!.groupId!.fill(0);
  s.findConversationByName("bob")!.groupId!.fill(0);
  s.listConversations()[0]!.groupId!.fill(0);
  s.listOutbox()[0]!.request.fill(0);
  s.history("c1", 1)[0]!.body = "changed";
  s.meta.identitySeed.fill(0);

  assertEquals(
    s.group("g"),
    group("g", {
      state: utf8("group state"),
      pendingCommit: utf8("pending"),
      leaves: ["carol"],
    }),
  );
  assertEquals(s.listKeyPackages()[0]!.privatePackage, utf8("private"));
  assertEquals(s.pinnedKey("bob"), utf8("identity key"));
  assertEquals(s.getConversation("c1")!.groupId, utf8("group id"));
  assertEquals(s.listOutbox()[0]!.request, utf8("request"));
  assertEquals(s.history("c1", 1)[0]!.body, "hi");
  assert(s.meta.identitySeed.some((b) => b !== 0), "the meta is a copy");
  await Promise.resolve();
});

// ---------------------------------------------------------------------------- close

contract("close makes every later call throw and is idempotent", async (h) => {
  const s = h.state;
  s.upsertConversation(conv("c1", "bob"));
  let inside: Promise<void> | undefined;
  s.transaction(() => {
    inside = s.close();
  });
  await assertRejects(() => inside!, UsageError, "inside a transaction");
  await s.close();
  await s.close();
  const calls: (() => unknown)[] = [
    () => s.meta,
    () => s.updateMeta({ deviceId: "d" }),
    () => s.transaction(() => 1),
    () => s.cursor(),
    () => s.setCursor(1),
    () => s.group("g"),
    () => s.putGroup(group("g")),
    () => s.deleteGroup("g"),
    () => s.listGroups(),
    () => s.putKeyPackage(keyPackage("r")),
    () => s.listKeyPackages(),
    () => s.deleteKeyPackage("r"),
    () => s.pinnedKey("bob"),
    () => s.pinKey("bob", utf8("k")),
    () => s.consent("bob"),
    () => s.setConsent("bob", "contact"),
    () => s.listBlocked(),
    () => s.upsertConversation(conv("c2", "carol")),
    () => s.getConversation("c1"),
    () => s.findConversationByName("bob"),
    () => s.listConversations(),
    () => s.addMessage(msg("c1", "m1", "x")),
    () => s.hasMessage("m1"),
    () => s.history("c1", 1),
    () => s.setMessageStatus("m1", "sent"),
    () => s.addOutbox(outbox("o")),
    () => s.listOutbox(),
    () => s.removeOutbox("o"),
    () => s.bumpOutbox("o"),
  ];
  for (const call of calls) assertStringIncludes(usage(call).message, "closed");
  const r = await h.reopen();
  assertEquals(r.getConversation("c1"), conv("c1", "bob"));
});

// ------------------------------------------------------------- MemoryLocalState only

Deno.test("MemoryLocalState.reopen keeps the data and closes every earlier handle", async () => {
  const meta = initialMeta();
  const first = new MemoryLocalState(meta);
  first.upsertConversation(conv("c1", "bob"));
  first.setCursor(3);
  // A crash: the first handle is dropped without close; a new client reopens the data.
  const second = first.reopen();
  assert(first.closed, "the crashed handle is closed");
  assertStringIncludes(usage(() => first.setCursor(4)).message, "closed");
  assertEquals(second.cursor(), 3);
  assertEquals(second.meta.username, meta.username);
  // A clean close keeps the data too.
  second.pinKey("bob", utf8("k"));
  await second.close();
  const third = second.reopen();
  assertEquals(third.pinnedKey("bob"), utf8("k"));
  assertEquals(third.getConversation("c1"), conv("c1", "bob"));
  assert(!third.closed);
  // Not inside a transaction.
  usage(() => third.transaction(() => third.reopen()));
  assert(!third.closed);
});

Deno.test("MemoryLocalState refuses an invalid initial meta and redacts itself", () => {
  usage(() => new MemoryLocalState({ ...initialMeta(), identitySeed: new Uint8Array(3) }));
  const meta = initialMeta();
  const s = new MemoryLocalState(meta);
  const shown = [Deno.inspect(s, { depth: 10 }), JSON.stringify(s), Deno.inspect(s.meta)].join();
  assert(!shown.includes(meta.identitySeed.join(",")), "the seed leaked");
  assertStringIncludes(Deno.inspect(s), `statePath: ":memory:"`);
});

Deno.test("MemoryLocalState is the one store on :memory:: no file, no password to change", async () => {
  const meta = initialMeta();
  const s = new MemoryLocalState(meta);
  assert(s instanceof ClientStore, "no second implementation");
  assertEquals(s.statePath, ":memory:");
  assertEquals(s.passwordCount, 1);
  await s.changePassword("a", ["b"]); // nothing seals it: no change, no file
  assertEquals(s.meta.username, meta.username);
  usage(() => s.transaction(() => s.reopen()));
  await s.close();
  assertEquals(s.reopen().meta.username, meta.username);
});

Deno.test("MemoryLocalState keeps thousands of client states apart", () => {
  const meta = initialMeta();
  const make = (n: number) => {
    const states: MemoryLocalState[] = [];
    for (let i = 0; i < n; i++) {
      const s = new MemoryLocalState(meta);
      s.transaction(() => {
        s.upsertConversation(conv("c1", "bob"));
        s.addMessage(msg("c1", `m${i}`, "hi"));
        s.setCursor(i);
      });
      states.push(s);
    }
    return states;
  };
  const states = make(5000);
  assertEquals(states[4999]!.cursor(), 4999);
  assertEquals(states[0]!.cursor(), 0, "no state shares another's data");
  assertEquals(states[0]!.getMessage("m0")?.body, "hi");
  assertEquals(states[0]!.getMessage("m1"), undefined);
  // its speed: bench/client_store_bench.ts (MemoryLocalState, i.e. ClientStore on :memory:)
});

contract(
  "markRead and unreadCount: what arrived since the last read, kept across a reopen",
  async (h) => {
    const s = h.state;
    s.upsertConversation(conv("c1", "@bob"));
    s.upsertConversation(conv("c2", "@carol"));
    assertEquals(s.unreadCount("c1", 99), 0);
    for (const id of ["m1", "m2", "m3"]) s.addMessage(msg("c1", id, id));
    s.addMessage(msg("c2", "n1", "n1"));
    assertEquals([s.unreadCount("c1", 99), s.unreadCount("c2", 99)], [3, 1]);
    assertEquals(s.unreadCount("c1", 1), 2, "above the cap: cap + 1");
    s.markRead("c1");
    assertEquals([s.unreadCount("c1", 99), s.unreadCount("c2", 99)], [0, 1]);
    // a copy read before the mark, stored again, does not take the mark back
    const stale = conv("c1", "@bob");
    s.upsertConversation(stale);
    assertEquals(s.unreadCount("c1", 99), 0);
    s.addMessage(msg("c1", "m4", "m4"));
    assertEquals(s.unreadCount("c1", 99), 1);
    const again = await h.reopen();
    assertEquals([again.unreadCount("c1", 99), again.unreadCount("c2", 99)], [1, 1]);
    again.markRead("c2");
    assertEquals(again.unreadCount("c2", 99), 0);
    assertEquals(again.unreadCount("nope", 99), 0);
    usage(() => again.markRead("nope"));
  },
);
