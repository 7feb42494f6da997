/**
 * Server store tests: one contract suite run against SqliteServerStore on a real SQLite
 * file in a temp dir and on a private `:memory:` database, then file-only tests for
 * persistence, db_key handling and at-rest secrecy.
 */

import {
  assert,
  assertEquals,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "./_support/assert.ts";
import { fromHex, randomBytes, toHex, utf8 } from "../src/bytes.ts";
import { QpqError, StorageError, UsageError } from "../src/errors.ts";
import {
  InProcessNotifier,
  MEMORY_PATH,
  MIGRATIONS,
  readSchemaVersion,
  SCHEMA_VERSION,
  Sealer,
  type ServerStore,
  type ServerStoreOptions,
  SqliteServerStore,
} from "../src/store/server/mod.ts";
import {
  clientRegistrationFinish,
  clientRegistrationStart,
  createServerSetup,
  registrationStart,
} from "../src/auth/mod.ts";
import { DatabaseSync } from "node:sqlite";
import { keyPackageRowKey, lengthPrefixed } from "../src/store/server/_common.ts";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

/** A controllable clock. */
class Clock {
  now = T0;
  readonly fn = () => this.now;
}

interface Ctx {
  clock: Clock;
  /** Open (or reopen) the implementation under test with extra options. */
  open(extra?: ServerStoreOptions): Promise<ServerStore>;
}

interface Impl {
  name: string;
  setup(): Promise<
    { open: (o: ServerStoreOptions) => Promise<ServerStore>; done: () => Promise<void> }
  >;
}

const IMPLS: Impl[] = [
  {
    name: "SqliteServerStore(:memory:)",
    setup: () =>
      Promise.resolve({
        open: (o) => SqliteServerStore.open(MEMORY_PATH, o),
        done: () => Promise.resolve(),
      }),
  },
  {
    name: "SqliteServerStore(file)",
    setup: async () => {
      const dir = await Deno.makeTempDir({ prefix: "qpq_store_" });
      return {
        open: (o) => SqliteServerStore.open(`${dir}/server.db`, o),
        done: () => Deno.remove(dir, { recursive: true }),
      };
    },
  },
];

/** Register `fn` once per implementation as "<Impl>.<method> <does what>". */
function contract(title: string, fn: (s: ServerStore, ctx: Ctx) => Promise<void>): void {
  for (const impl of IMPLS) {
    Deno.test(`${impl.name}.${title}`, async () => {
      const { open, done } = await impl.setup();
      const clock = new Clock();
      const opened: ServerStore[] = [];
      const ctx: Ctx = {
        clock,
        open: async (extra = {}) => {
          const s = await open({ clock: clock.fn, ...extra });
          opened.push(s);
          return s;
        },
      };
      try {
        await fn(await ctx.open(), ctx);
      } finally {
        for (const s of opened) await s.close();
        await done();
      }
    });
  }
}

async function users(s: ServerStore, ...names: string[]): Promise<void> {
  for (const n of names) await s.createUser(n, utf8(`record of ${n}`));
}

/** MLS cipher suite ids (src/mls SUITE_IDS): X-Wing and X25519. */
const XWING = 83;
const X25519 = 1;

function kp(i: number, notAfter = T0 + 24 * HOUR, cipherSuite = XWING) {
  return { ref: utf8(`ref-${i}`), cipherSuite, data: utf8(`keypackage-${i}`), notAfter };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof QpqError) return `${e.name}:${e.code}`;
    throw e;
  }
  throw new Error("expected a rejection");
}

// ---------------------------------------------------------------------------------------
// Contract suite
// ---------------------------------------------------------------------------------------

contract("createUser stores users and refuses a taken or invalid username", async (s) => {
  await s.createUser("alice", utf8("rec-a"));
  assertEquals((await s.getRegistrationRecord("alice"))?.record, utf8("rec-a"));
  const u = await s.getUser("alice");
  assertEquals(u, { username: "alice", createdAt: T0, identityKey: undefined });
  assertEquals(await code(s.createUser("alice", utf8("other"))), "UsageError:conflict");
  assertEquals((await s.getRegistrationRecord("alice"))?.record, utf8("rec-a"));
  assertEquals(await s.getUser("bob"), undefined);
  assertEquals(await s.getRegistrationRecord("bob"), undefined);
  assertEquals(await code(s.createUser("", utf8("x"))), "ValidationError:validation");
  assertEquals(await code(s.createUser("x".repeat(65), utf8("x"))), "ValidationError:validation");
});

contract("setIdentityKey publishes, refuses a silent replacement and validates", async (s) => {
  await users(s, "alice");
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  assertEquals(await s.getIdentityKey("alice"), undefined);
  await s.setIdentityKey("alice", k1);
  await s.setIdentityKey("alice", k1); // same key again is fine
  assertEquals(await s.getIdentityKey("alice"), k1);
  assertEquals(await code(s.setIdentityKey("alice", k2)), "UsageError:conflict");
  assertEquals(await s.getIdentityKey("alice"), k1);
  await s.setIdentityKey("alice", k2, { replace: true });
  assertEquals((await s.getUser("alice"))?.identityKey, k2);
  assertEquals(
    await code(s.setIdentityKey("alice", randomBytes(31))),
    "ValidationError:validation",
  );
  assertEquals(await code(s.setIdentityKey("nobody", k1)), "UsageError:not_found");
});

contract("getOrCreateSecret creates a secret once and returns it afterwards", async (s) => {
  const first = await s.getOrCreateSecret("opaque_setup", () => utf8("secret-1"));
  const second = await s.getOrCreateSecret("opaque_setup", () => utf8("secret-2"));
  assertEquals(first, utf8("secret-1"));
  assertEquals(second, utf8("secret-1"));
  assertEquals(await s.getOrCreateSecret("other", () => utf8("x")), utf8("x"));
});

contract("lookupSession finds valid sessions only and revokeSession logs out", async (s, ctx) => {
  await users(s, "alice", "bob");
  const t1 = randomBytes(32);
  const t2 = randomBytes(32);
  const t3 = randomBytes(32);
  await s.createSession(t1, "alice", T0 + HOUR);
  await s.createSession(t2, "alice", T0 + 2 * HOUR);
  await s.createSession(t3, "bob", T0 + 2 * HOUR);
  assertEquals(await s.lookupSession(t1), { username: "alice", expiresAt: T0 + HOUR });
  assertEquals(await s.lookupSession(randomBytes(32)), undefined);
  assertEquals(
    await code(s.createSession(randomBytes(32), "nobody", T0 + HOUR)),
    "UsageError:not_found",
  );
  ctx.clock.now = T0 + HOUR; // expiry is exclusive
  assertEquals(await s.lookupSession(t1), undefined);
  assertEquals((await s.lookupSession(t2))?.username, "alice");
  assertEquals(await s.revokeSession(t2), true);
  assertEquals(await s.revokeSession(t2), false);
  assertEquals(await s.lookupSession(t2), undefined);
  const t4 = randomBytes(32);
  await s.createSession(t4, "bob", T0 + 3 * HOUR);
  assertEquals(await s.revokeUserSessions("bob"), 2);
  assertEquals(await s.lookupSession(t3), undefined);
  assertEquals((await s.purgeExpired()).sessions, 1); // t1, expired but never looked up
});

contract("takePendingLogin returns a pending login once and never after expiry", async (s, ctx) => {
  const id1 = randomBytes(16);
  const id2 = randomBytes(16);
  await s.savePendingLogin(id1, { username: "ghost", state: utf8("state-1") }, T0 + 1000);
  await s.savePendingLogin(id2, { username: "alice", state: utf8("state-2") }, T0 + 1000);
  assertEquals(await s.takePendingLogin(id1), { username: "ghost", state: utf8("state-1") });
  assertEquals(await s.takePendingLogin(id1), undefined);
  ctx.clock.now = T0 + 1000;
  assertEquals(await s.takePendingLogin(id2), undefined);
});

contract(
  "consumeKeyPackage never hands out a package twice under 50 concurrent calls",
  async (s) => {
    await users(s, "alice");
    await s.addKeyPackages("alice", Array.from({ length: 40 }, (_, i) => kp(i)));
    await s.setLastResortKeyPackage("alice", { ...kp(999), data: utf8("last-resort") });
    assertEquals(await s.countKeyPackages("alice"), 40);
    const got = await Promise.all(Array.from({ length: 50 }, () => s.consumeKeyPackage("alice")));
    const batch = got.filter((g) => g !== undefined && !g.lastResort).map((g) => toHex(g!.ref));
    assertEquals(batch.length, 40);
    assertEquals(new Set(batch).size, 40);
    const last = got.filter((g) => g?.lastResort);
    assertEquals(last.length, 10);
    for (const l of last) assertEquals(l!.data, utf8("last-resort"));
    assertEquals(await s.countKeyPackages("alice"), 0);
  },
);

contract("consumeKeyPackage serves the batch first, then the kept last resort", async (s, ctx) => {
  await users(s, "alice", "bob");
  assertEquals(await s.consumeKeyPackage("alice"), undefined);
  await s.setLastResortKeyPackage("alice", { ...kp(100), data: utf8("lr") });
  assertEquals((await s.consumeKeyPackage("alice"))?.lastResort, true);
  assertEquals((await s.consumeKeyPackage("alice"))?.lastResort, true); // not deleted
  await s.addKeyPackages("alice", [kp(1), kp(2, T0 + 10)]);
  assertEquals(await s.countKeyPackages("alice"), 2);
  const first = await s.consumeKeyPackage("alice");
  assertEquals(first, { ...kp(1), lastResort: false });
  ctx.clock.now = T0 + 10; // kp(2) expired: skipped, last resort served
  assertEquals(await s.countKeyPackages("alice"), 0);
  assertEquals((await s.consumeKeyPackage("alice"))?.data, utf8("lr"));
  assertEquals((await s.purgeExpired()).keyPackages, 1);
  ctx.clock.now = T0 + 24 * HOUR; // last resort expired too
  assertEquals(await s.consumeKeyPackage("alice"), undefined);
  assertEquals(await code(s.consumeKeyPackage("nobody")), "UsageError:not_found");
  assertEquals(await s.countKeyPackages("bob"), 0);
});

contract(
  "addKeyPackages ignores repeated refs and enforces size and count caps",
  async (_s, ctx) => {
    const s = await ctx.open({ limits: { maxKeyPackagesPerUser: 5, maxKeyPackageBytes: 32 } });
    await users(s, "alice");
    assertEquals(await s.addKeyPackages("alice", [kp(1), kp(2), kp(3)]), 3);
    assertEquals(await s.addKeyPackages("alice", [kp(1), kp(2), kp(4)]), 4);
    assertEquals(await code(s.addKeyPackages("alice", [kp(5), kp(6)])), "UsageError:quota");
    assertEquals(await s.countKeyPackages("alice"), 4); // the refused batch wrote nothing
    const big = { ...kp(7), data: new Uint8Array(33) };
    assertEquals(await code(s.addKeyPackages("alice", [big])), "ValidationError:too_large");
    assertEquals(await code(s.setLastResortKeyPackage("alice", big)), "ValidationError:too_large");
    const many = Array.from({ length: 101 }, (_, i) => kp(i));
    assertEquals(await code(s.addKeyPackages("alice", many)), "ValidationError:too_large");
    assertEquals(await code(s.addKeyPackages("nobody", [kp(1)])), "UsageError:not_found");
    for (const cipherSuite of [0, -1, 65536, 1.5]) {
      assertEquals(
        await code(s.addKeyPackages("alice", [{ ...kp(8), cipherSuite }])),
        "ValidationError:validation",
      );
    }
    assertEquals(
      await code(s.consumeKeyPackage("alice", { cipherSuite: -1 })),
      "ValidationError:validation",
    );
  },
);

contract("consumeKeyPackage and countKeyPackages keep each cipher suite apart", async (s, ctx) => {
  await users(s, "alice");
  await s.addKeyPackages("alice", [
    kp(1),
    kp(2, T0 + 24 * HOUR, X25519),
    kp(3),
    kp(4, T0 + 10, X25519),
  ]);
  assertEquals(await s.countKeyPackages("alice"), 4);
  assertEquals(await s.countKeyPackages("alice", { cipherSuite: 0 }), 4);
  assertEquals(await s.countKeyPackages("alice", { cipherSuite: XWING }), 2);
  assertEquals(await s.countKeyPackages("alice", { cipherSuite: X25519 }), 2);
  assertEquals(await s.countKeyPackages("alice", { cipherSuite: 7 }), 0);
  // one last resort per suite: a second one of the same suite replaces the first
  await s.setLastResortKeyPackage("alice", { ...kp(90), data: utf8("lr-xwing-old") });
  await s.setLastResortKeyPackage("alice", { ...kp(91), data: utf8("lr-xwing") });
  await s.setLastResortKeyPackage("alice", {
    ...kp(92, T0 + 24 * HOUR, X25519),
    data: utf8("lr-x25519"),
  });
  const x = await s.consumeKeyPackage("alice", { cipherSuite: X25519 });
  assertEquals(x, { ...kp(2, T0 + 24 * HOUR, X25519), lastResort: false });
  ctx.clock.now = T0 + 10; // kp(4) expired: the X25519 batch is empty, its last resort follows
  assertEquals(await s.countKeyPackages("alice", { cipherSuite: X25519 }), 0);
  const lr = await s.consumeKeyPackage("alice", { cipherSuite: X25519 });
  assertEquals([lr?.data, lr?.cipherSuite, lr?.lastResort], [utf8("lr-x25519"), X25519, true]);
  // X-Wing still has its batch, oldest first, then its own last resort
  assertEquals((await s.consumeKeyPackage("alice", { cipherSuite: XWING }))?.data, kp(1).data);
  assertEquals((await s.consumeKeyPackage("alice", { cipherSuite: XWING }))?.data, kp(3).data);
  const lrx = await s.consumeKeyPackage("alice", { cipherSuite: XWING });
  assertEquals([lrx?.data, lrx?.cipherSuite, lrx?.lastResort], [utf8("lr-xwing"), XWING, true]);
  assertEquals(await s.consumeKeyPackage("alice", { cipherSuite: 7 }), undefined);
  assertEquals((await s.consumeKeyPackage("alice"))?.lastResort, true); // any suite
});

contract(
  "enqueue assigns monotonic per-recipient seqs and fetch pages in order",
  async (_s, ctx) => {
    const s = await ctx.open({ limits: { maxFetchPage: 3 } });
    await users(s, "alice", "bob", "carol");
    const r1 = await s.enqueue({
      sender: "alice",
      messageId: "m1",
      channelId: null,
      payload: utf8("p1"),
      recipients: ["bob", "carol"],
    });
    assertEquals(r1, {
      duplicate: false,
      deliveries: [{ recipient: "bob", seq: 1 }, { recipient: "carol", seq: 1 }],
    });
    for (let i = 2; i <= 7; i++) {
      const r = await s.enqueue({
        sender: "alice",
        messageId: `m${i}`,
        channelId: "chan",
        payload: utf8(`p${i}`),
        recipients: ["bob"],
      });
      assertEquals(r.deliveries, [{ recipient: "bob", seq: i }]);
    }
    assertEquals(await s.queueDepth("bob"), 7);
    assertEquals(await s.totalQueueDepth(), 8);
    const page1 = await s.fetch("bob", 0, 100); // capped at maxFetchPage
    assertEquals(page1.map((m) => m.seq), [1, 2, 3]);
    assertEquals(page1[0], {
      seq: 1,
      sender: "alice",
      messageId: "m1",
      channelId: null,
      payload: utf8("p1"),
      receivedAt: T0,
    });
    assertEquals(page1[1]?.channelId, "chan");
    assertEquals((await s.fetch("bob", 3, 2)).map((m) => m.seq), [4, 5]);
    assertEquals((await s.fetch("bob", 5)).map((m) => m.payload), [utf8("p6"), utf8("p7")]);
    assertEquals(await s.fetch("bob", 7), []);
    assertEquals(await s.ack("bob", 4), 4);
    assertEquals(await s.ack("bob", 4), 0);
    assertEquals(await s.queueDepth("bob"), 3);
    assertEquals((await s.fetch("bob", 0)).map((m) => m.seq), [5, 6, 7]);
    assertEquals((await s.fetch("carol", 0)).map((m) => m.payload), [utf8("p1")]);
    await s.ack("bob", 7);
    // Seqs keep growing after a queue drains.
    const r8 = await s.enqueue({
      sender: "carol",
      messageId: "m8",
      channelId: null,
      payload: utf8("p8"),
      recipients: ["bob"],
    });
    assertEquals(r8.deliveries, [{ recipient: "bob", seq: 8 }]);
    assertEquals(await s.fetch("nobody", 0), []);
  },
);

contract("enqueue is idempotent on (sender, messageId)", async (s) => {
  await users(s, "alice", "bob", "carol");
  const p = {
    sender: "alice",
    messageId: "same",
    channelId: null,
    payload: utf8("hello"),
    recipients: ["bob", "carol"],
  };
  const first = await s.enqueue(p);
  await s.enqueue({ ...p, messageId: "other", recipients: ["bob"] });
  const again = await s.enqueue(p);
  assertEquals(again, { deliveries: first.deliveries, duplicate: true });
  assertEquals(await s.queueDepth("bob"), 2);
  assertEquals(await s.queueDepth("carol"), 1);
  // Still a duplicate after every recipient acknowledged it.
  await s.ack("bob", 2);
  await s.ack("carol", 1);
  assertEquals((await s.enqueue(p)).duplicate, true);
  assertEquals(await s.totalQueueDepth(), 0);
  // Another sender may reuse the id.
  assertEquals((await s.enqueue({ ...p, sender: "carol", recipients: ["bob"] })).duplicate, false);
});

contract(
  "enqueue enforces the size and queue caps and writes nothing when refused",
  async (_s, ctx) => {
    const s = await ctx.open({ limits: { maxMessageBytes: 16, maxQueueMessages: 3 } });
    await users(s, "alice", "bob", "carol");
    const base = { sender: "alice", channelId: null, recipients: ["bob"] } as const;
    assertEquals(
      await code(s.enqueue({ ...base, messageId: "big", payload: new Uint8Array(17) })),
      "ValidationError:too_large",
    );
    await s.enqueue({ ...base, messageId: "ok16", payload: new Uint8Array(16) });
    await s.enqueue({ ...base, messageId: "b", payload: utf8("b") });
    await s.enqueue({ ...base, messageId: "c", payload: utf8("c") });
    // bob is full: a message to carol and bob is refused as a whole.
    assertEquals(
      await code(
        s.enqueue({ ...base, messageId: "d", payload: utf8("d"), recipients: ["carol", "bob"] }),
      ),
      "UsageError:quota",
    );
    assertEquals(await s.queueDepth("carol"), 0);
    assertEquals(await s.queueDepth("bob"), 3);
    // Refused messages are not remembered as sent.
    await s.ack("bob", 1);
    assertEquals(
      (await s.enqueue({
        ...base,
        messageId: "d",
        payload: utf8("d"),
        recipients: ["carol", "bob"],
      }))
        .duplicate,
      false,
    );
    assertEquals(
      await code(
        s.enqueue({ ...base, messageId: "e", payload: utf8("e"), recipients: ["nobody"] }),
      ),
      "UsageError:not_found",
    );
    assertEquals(
      await code(
        s.enqueue({ ...base, messageId: "f", payload: utf8("f"), recipients: ["bob", "bob"] }),
      ),
      "UsageError:usage",
    );
    assertEquals(
      await code(s.enqueue({ ...base, messageId: "g", payload: utf8("g"), recipients: [] })),
      "UsageError:usage",
    );
    assertEquals(await s.totalQueueDepth(), 4);
  },
);

contract(
  "a sender holds at most its share of a queue; a commit may use twice that, all or nothing",
  async (_s, ctx) => {
    const s = await ctx.open({ limits: { maxSenderMessages: 2, maxSenderBytes: 1000 } });
    await users(s, "alice", "bob", "carol");
    const g = await s.createGroupChannel({ name: "g", creator: "alice" });
    await s.addMembers(g.id, ["bob", "carol"]);
    const msg = (messageId: string, recipients: string[], payload = utf8("m")) =>
      s.enqueue({ sender: "alice", channelId: g.id, messageId, payload, recipients });
    await msg("1", ["bob"]);
    await msg("2", ["bob"]);
    assertEquals(await code(msg("3", ["bob"])), "UsageError:quota");
    // the share is per (sender, recipient): carol and other senders are unaffected
    await msg("4", ["carol"]);
    await s.enqueue({
      sender: "carol",
      channelId: g.id,
      messageId: "c1",
      payload: utf8("c"),
      recipients: ["bob"],
    });
    // refused for bob means refused for everyone: no recipient gets half a fan-out
    assertEquals(await code(msg("5", ["carol", "bob"])), "UsageError:quota");
    assertEquals(await s.queueDepth("carol"), 1);
    // a commit may go to twice the share, so alice can still change the group ...
    const commit = (epoch: number, messageId: string) =>
      s.commitAndFanOut({
        sender: "alice",
        channelId: g.id,
        epoch,
        messageId,
        payload: utf8("commit"),
        recipients: ["bob", "carol"],
      });
    await commit(0, "k0");
    await commit(1, "k1");
    // ... and no further; refused for bob, it reaches nobody and the epoch stays
    assertEquals(await code(commit(2, "k2")), "UsageError:quota");
    assertEquals((await s.getChannel(g.id))?.epoch, 2);
    assertEquals(await s.queueDepth("carol"), 3);
    // bytes count too (twice the share for a commit)
    await s.ack("bob", 100);
    assertEquals(await code(msg("6", ["bob"], new Uint8Array(1001))), "UsageError:quota");
    await msg("7", ["bob"], new Uint8Array(1000));
    await commit(2, "k2");
    assertEquals(
      await code(
        s.commitAndFanOut({
          sender: "alice",
          channelId: g.id,
          epoch: 3,
          messageId: "k3",
          payload: new Uint8Array(995),
          recipients: ["bob"],
        }),
      ),
      "UsageError:quota",
    );
    // reading frees the share
    await s.ack("bob", 100);
    await msg("8", ["bob"]);
  },
);

contract("purgeExpired drops messages past retention and forgets their ids", async (_s, ctx) => {
  const s = await ctx.open({ limits: { messageRetentionMs: 10 * HOUR } });
  await users(s, "alice", "bob");
  const p = { sender: "alice", channelId: null, recipients: ["bob"] } as const;
  await s.enqueue({ ...p, messageId: "old", payload: utf8("old") });
  ctx.clock.now = T0 + 5 * HOUR;
  await s.enqueue({ ...p, messageId: "new", payload: utf8("new") });
  assertEquals(
    await s.purgeExpired(T0 + 10 * HOUR),
    { deliveries: 1, messages: 1, sessions: 0, pendingLogins: 0, keyPackages: 0 },
  );
  assertEquals((await s.fetch("bob", 0)).map((m) => m.messageId), ["new"]);
  assertEquals(await s.queueDepth("bob"), 1);
  assertEquals(await s.totalQueueDepth(), 1);
  // A resend of a purged id is a new message.
  assertEquals(
    (await s.enqueue({ ...p, messageId: "old", payload: utf8("again") })).duplicate,
    false,
  );
  assertEquals((await s.enqueue({ ...p, messageId: "new", payload: utf8("x") })).duplicate, true);
});

contract("enqueue notifies recipients only after a successful store", async (_s, ctx) => {
  const notifier = new InProcessNotifier();
  const s = await ctx.open({ notifier, limits: { maxQueueMessages: 1 } });
  await users(s, "alice", "bob");
  const seen: string[] = [];
  const unsub = notifier.subscribe("bob", () => seen.push("bob"));
  const p = { sender: "alice", channelId: null, recipients: ["bob"], payload: utf8("x") } as const;
  await s.enqueue({ ...p, messageId: "1" });
  assertEquals(seen, ["bob"]);
  await s.enqueue({ ...p, messageId: "1" }); // duplicate: no new notification
  await code(s.enqueue({ ...p, messageId: "2" })); // quota: none either
  assertEquals(seen, ["bob"]);
  unsub();
  assertEquals(notifier.subscribedUsers, 0);
});

contract("getOrCreateDm is unique per unordered pair with exactly two members", async (s) => {
  await users(s, "alice", "bob", "carol");
  const a = await s.getOrCreateDm("alice", "bob");
  assertEquals(a.created, true);
  assertEquals(a.channel.kind, "dm");
  assertEquals(a.channel.name, undefined);
  const b = await s.getOrCreateDm("bob", "alice");
  assertEquals(b, { channel: a.channel, created: false });
  assertNotEquals((await s.getOrCreateDm("alice", "carol")).channel.id, a.channel.id);
  assertEquals(await s.listMembers(a.channel.id), ["alice", "bob"]);
  assert(await s.isMember(a.channel.id, "bob"));
  assert(!(await s.isMember(a.channel.id, "carol")));
  assertEquals(await code(s.addMembers(a.channel.id, ["carol"])), "UsageError:usage");
  assertEquals(await code(s.removeMembers(a.channel.id, ["bob"])), "UsageError:usage");
  assertEquals(await code(s.getOrCreateDm("alice", "alice")), "UsageError:usage");
  assertEquals(await code(s.getOrCreateDm("alice", "nobody")), "UsageError:not_found");
  // DMs are two-member MLS groups: commits are ordered by epoch, the roster is fixed.
  const dmCommit = {
    channelId: a.channel.id,
    epoch: 0,
    sender: "alice",
    messageId: "c",
    payload: utf8("c"),
    recipients: ["bob"],
  };
  assertEquals(
    await code(s.commitAndFanOut({ ...dmCommit, rosterAdd: ["carol"] })),
    "UsageError:usage",
  );
  assertEquals(await s.queueDepth("bob"), 0);
  assertEquals((await s.commitAndFanOut(dmCommit)).deliveries, [{ recipient: "bob", seq: 1 }]);
  assertEquals(
    await code(s.commitAndFanOut({ ...dmCommit, sender: "bob", messageId: "d" })),
    "UsageError:epoch_conflict",
  );
  assertEquals(
    await code(s.commitAndFanOut({ ...dmCommit, sender: "carol", messageId: "e", epoch: 1 })),
    "AuthError:forbidden",
  );
  assertEquals(await s.listMembers(a.channel.id), ["alice", "bob"]);
  assertEquals(await s.getChannel(a.channel.id), { ...a.channel, epoch: 1 });
});

contract("createGroupChannel: names are labels, not unique; roster", async (_s, ctx) => {
  const s = await ctx.open({ limits: { maxChannelMembers: 3 } });
  await users(s, "alice", "bob", "carol", "dave");
  const g = await s.createGroupChannel({ name: "general", creator: "alice" });
  assertEquals(g.kind, "group");
  assertEquals(g.name, "general");
  assertEquals(g.createdBy, "alice");
  assertEquals(g.epoch, 0);
  assertEquals(g.id.length, 32);
  // another user's group of the same name (any case) is another group (issue 21)
  const same = await s.createGroupChannel({ name: "general", creator: "bob" });
  const upper = await s.createGroupChannel({ name: "General", creator: "alice" });
  assert(same.id !== g.id && upper.id !== g.id && upper.id !== same.id);
  assertEquals((await s.getChannel(same.id))?.name, "general");
  assertEquals(await s.listMembers(same.id), ["bob"]);
  assertEquals(
    await code(s.createGroupChannel({ name: "x", creator: "bob", id: g.id })),
    "UsageError:conflict",
  );
  assertEquals(
    await code(s.createGroupChannel({ name: "y", creator: "nobody" })),
    "UsageError:not_found",
  );
  assertEquals(
    await code(s.createGroupChannel({ name: "", creator: "bob" })),
    "ValidationError:validation",
  );
  const g2 = await s.createGroupChannel({ name: "ops", creator: "bob", id: "abcd", epoch: 7 });
  assertEquals((await s.getChannel("abcd"))?.epoch, 7);
  assertEquals(await s.getChannel(g.id), g);
  await s.addMembers(g.id, ["bob", "carol"]);
  await s.addMembers(g.id, ["bob"]); // already a member: ignored
  assertEquals(await s.listMembers(g.id), ["alice", "bob", "carol"]);
  assertEquals(await code(s.addMembers(g.id, ["dave"])), "UsageError:quota");
  assertEquals(await code(s.addMembers(g.id, ["nobody"])), "UsageError:not_found");
  await s.removeMembers(g.id, ["carol", "dave"]);
  assertEquals(await s.listMembers(g.id), ["alice", "bob"]);
  assertEquals((await s.listChannels("bob")).map((c) => c.id), [g.id, g2.id, same.id].sort());
  assertEquals(await s.listChannels("carol"), []);
  assertEquals(await code(s.listMembers("missing")), "UsageError:not_found");
});

contract(
  "commitAndFanOut accepts one commit per epoch atomically with fan-out and roster",
  async (s) => {
    await users(s, "alice", "bob", "carol", "dave");
    const g = await s.createGroupChannel({ name: "team", creator: "alice" });
    await s.addMembers(g.id, ["bob"]);
    const c1 = {
      channelId: g.id,
      epoch: 0,
      sender: "alice",
      messageId: "commit-1",
      payload: utf8("commit 0->1"),
      recipients: ["bob"],
      rosterAdd: ["carol"],
    };
    const r1 = await s.commitAndFanOut(c1);
    assertEquals(r1, { duplicate: false, deliveries: [{ recipient: "bob", seq: 1 }] });
    assertEquals((await s.getChannel(g.id))?.epoch, 1);
    assertEquals(await s.listMembers(g.id), ["alice", "bob", "carol"]);
    // A competing commit for epoch 0 is refused and leaves no trace.
    const racing = {
      channelId: g.id,
      epoch: 0,
      sender: "bob",
      messageId: "commit-race",
      payload: utf8("bob's commit"),
      recipients: ["alice", "carol"],
      rosterAdd: ["dave"],
      rosterRemove: ["carol"],
    };
    const err = await assertRejects(() => s.commitAndFanOut(racing), UsageError);
    assertEquals(err.code, "epoch_conflict");
    assertEquals(await s.queueDepth("alice"), 0);
    assertEquals(await s.queueDepth("carol"), 0);
    assertEquals(await s.listMembers(g.id), ["alice", "bob", "carol"]);
    assertEquals((await s.getChannel(g.id))?.epoch, 1);
    // The same id is usable later (the refused commit was not recorded as sent).
    const r2 = await s.commitAndFanOut({ ...racing, epoch: 1 });
    assertEquals(r2.deliveries, [{ recipient: "alice", seq: 1 }, { recipient: "carol", seq: 1 }]);
    assertEquals(await s.listMembers(g.id), ["alice", "bob", "dave"]);
    // Epochs ahead of the channel are refused too.
    assertEquals(
      await code(s.commitAndFanOut({ ...c1, messageId: "x", epoch: 5, rosterAdd: [] })),
      "UsageError:epoch_conflict",
    );
    // A retransmitted accepted commit returns its original result, not a conflict.
    assertEquals(await s.commitAndFanOut(c1), { ...r1, duplicate: true });
    // Non-members may not commit; removed members neither.
    assertEquals(
      await code(
        s.commitAndFanOut({ ...c1, sender: "carol", messageId: "y", epoch: 2, rosterAdd: [] }),
      ),
      "AuthError:forbidden",
    );
    // A commit whose fan-out hits a full queue changes neither epoch nor roster.
    assertEquals(
      await code(
        s.commitAndFanOut({
          ...c1,
          messageId: "z",
          epoch: 2,
          recipients: ["nobody"],
          rosterAdd: ["carol"],
        }),
      ),
      "UsageError:not_found",
    );
    assertEquals((await s.getChannel(g.id))?.epoch, 2);
    assertEquals(await s.listMembers(g.id), ["alice", "bob", "dave"]);
    assertEquals(
      await code(s.commitAndFanOut({ ...c1, channelId: "missing", messageId: "w" })),
      "UsageError:not_found",
    );
  },
);

contract("commitAndFanOut lets exactly one of many concurrent commits win an epoch", async (s) => {
  // letters, not digits: u6 and u8 look alike (both read as "ub")
  const names = Array.from({ length: 10 }, (_, i) => `u${"abcdefghjk"[i]}`);
  await users(s, ...names);
  const g = await s.createGroupChannel({ name: "race", creator: names[0]! });
  await s.addMembers(g.id, names.slice(1));
  const results = await Promise.allSettled(names.map((n) =>
    s.commitAndFanOut({
      channelId: g.id,
      epoch: 0,
      sender: n,
      messageId: `commit-by-${n}`,
      payload: utf8(n),
      recipients: names.filter((m) => m !== n),
    })
  ));
  const ok = results.filter((r) => r.status === "fulfilled");
  assertEquals(ok.length, 1);
  for (const r of results) {
    if (r.status === "rejected") assertEquals((r.reason as UsageError).code, "epoch_conflict");
  }
  assertEquals(await s.totalQueueDepth(), 9);
});

contract("close makes later calls fail with StorageError", async (s) => {
  await s.close();
  await s.close();
  await assertRejects(() => s.getUser("alice"), StorageError);
});

// ---------------------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------------------

async function tempDb(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "qpq_store_" });
  return { dir, path: `${dir}/server.db` };
}

/**
 * A schema-1 server database (before KeyPackages per suite), written as a build of that
 * schema did: Alice with three batch KeyPackages and a last resort whose stored bytes start
 * with the given MLS headers.
 */
function schemaOneDb(path: string, dbKey: string | undefined, headers: string[]): void {
  const sealer = dbKey === undefined ? Sealer.plain() : Sealer.fromDbKey(dbKey);
  const db = new DatabaseSync(path);
  try {
    db.exec(MIGRATIONS[0]!.sql);
    db.exec(
      "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, " +
        "applied_at INTEGER NOT NULL) STRICT",
    );
    db.prepare("INSERT INTO schema_version VALUES (1, 'initial schema', ?)").run(T0);
    const meta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
    meta.run("seal_mode", utf8(sealer.mode));
    meta.run("seal_check", sealer.checkValue());
    const uid = sealer.lookupName("user", "alice");
    db.prepare("INSERT INTO users VALUES (?, ?, ?, NULL, ?)").run(
      uid,
      sealer.seal("users.username", uid, utf8("alice")),
      sealer.seal("users.record", uid, utf8("record")),
      T0,
    );
    // Row keys as the store writes them are irrelevant here: the migration reads only
    // plain bytes, and the test reads the column. Sealed rows are sealed all the same.
    const data = (i: number) => sealer.seal("test", uid, fromHex(headers[i]! + "00ff"));
    const ins = db.prepare(
      "INSERT INTO key_packages (uid, ref, data, not_after) VALUES (?, ?, ?, ?)",
    );
    for (let i = 0; i < 3; i++) ins.run(uid, utf8(`ref-${i}`), data(i), T0 + HOUR);
    db.prepare("INSERT INTO last_resort_key_packages VALUES (?, ?, ?, ?)").run(
      uid,
      utf8("ref-lr"),
      data(3),
      T0 + HOUR,
    );
  } finally {
    db.close();
    sealer.destroy();
  }
}

Deno.test("SqliteServerStore.open migrates schema 1 KeyPackages to per-suite rows", async () => {
  const { dir } = await tempDb();
  // MLSMessage KeyPackage headers: mls10, key_package, mls10, suite (1 = X25519, 83 = X-Wing)
  const X25519_HEADER = "0001000500010001";
  const XWING_HEADER = "0001000500010053";
  const headers = [X25519_HEADER, XWING_HEADER, "deadbeef00010001", X25519_HEADER];
  try {
    for (const dbKey of [undefined, "migration key"]) {
      const path = `${dir}/${dbKey === undefined ? "plain" : "sealed"}.db`;
      schemaOneDb(path, dbKey, headers);
      const s = await SqliteServerStore.open(path, {
        clock: () => T0,
        ...(dbKey === undefined ? {} : { dbKey }),
      });
      await s.close();
      const db = new DatabaseSync(path);
      const suites = db.prepare("SELECT cipher_suite AS s FROM key_packages ORDER BY id").all()
        .map((r) => r.s);
      const lr = db.prepare("SELECT cipher_suite AS s FROM last_resort_key_packages").all()
        .map((r) => r.s);
      assertEquals(readSchemaVersion(db), SCHEMA_VERSION);
      db.close();
      // plain: read from the header (anything but suite 1 is X-Wing); sealed: X-Wing
      if (dbKey === undefined) {
        assertEquals(suites, [X25519, XWING, XWING]);
        assertEquals(lr, [X25519]);
        const s2 = await SqliteServerStore.open(path, { clock: () => T0 });
        assertEquals(await s2.countKeyPackages("alice", { cipherSuite: X25519 }), 1);
        const got = await s2.consumeKeyPackage("alice", { cipherSuite: X25519 });
        assertEquals(toHex(got!.data), X25519_HEADER + "00ff");
        const last = await s2.consumeKeyPackage("alice", { cipherSuite: X25519 });
        assertEquals([last?.lastResort, last?.ref], [true, utf8("ref-lr")]);
        await s2.close();
      } else {
        assertEquals(suites, [XWING, XWING, XWING]);
        assertEquals(lr, [XWING]);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function fill(s: ServerStore): Promise<{ token: Uint8Array; channelId: string }> {
  await users(s, "alice", "bob");
  await s.setIdentityKey("alice", new Uint8Array(32).fill(7));
  await s.addKeyPackages("bob", [kp(1), kp(2)]);
  await s.setLastResortKeyPackage("bob", kp(3));
  const token = randomBytes(32);
  await s.createSession(token, "alice", T0 + HOUR);
  const g = await s.createGroupChannel({ name: "general", creator: "alice" });
  await s.commitAndFanOut({
    channelId: g.id,
    epoch: 0,
    sender: "alice",
    messageId: "c1",
    payload: utf8("commit"),
    recipients: [],
    rosterAdd: ["bob"],
  });
  await s.enqueue({
    sender: "alice",
    messageId: "m1",
    channelId: g.id,
    payload: utf8("hello bob"),
    recipients: ["bob"],
  });
  await s.getOrCreateSecret("opaque_setup", () => utf8("setup"));
  return { token, channelId: g.id };
}

for (const dbKey of [undefined, "correct horse battery staple"]) {
  const label = dbKey === undefined ? "without db_key" : "with db_key";
  Deno.test(`SqliteServerStore.open reopens a file with everything kept (${label})`, async () => {
    const { dir, path } = await tempDb();
    const clock = new Clock();
    const opts = { clock: clock.fn, ...(dbKey === undefined ? {} : { dbKey }) };
    try {
      const s1 = await SqliteServerStore.open(path, opts);
      const { token, channelId } = await fill(s1);
      await s1.close();
      const s = await SqliteServerStore.open(path, opts);
      try {
        assertEquals(s.sealed, dbKey !== undefined);
        assertEquals((await s.getRegistrationRecord("alice"))?.record, utf8("record of alice"));
        assertEquals(await s.getIdentityKey("alice"), new Uint8Array(32).fill(7));
        assertEquals(await s.lookupSession(token), { username: "alice", expiresAt: T0 + HOUR });
        assertEquals(await s.countKeyPackages("bob"), 2);
        assertEquals((await s.consumeKeyPackage("bob"))?.data, utf8("keypackage-1"));
        assertEquals((await s.getChannel(channelId))?.epoch, 1);
        assertEquals((await s.getChannel(channelId))?.name, "general");
        assertEquals(await s.listMembers(channelId), ["alice", "bob"]);
        const msgs = await s.fetch("bob", 0);
        assertEquals(msgs.map((m) => [m.sender, m.messageId, m.payload]), [[
          "alice",
          "m1",
          utf8("hello bob"),
        ]]);
        assertEquals(await s.getOrCreateSecret("opaque_setup", () => utf8("new")), utf8("setup"));
        assertEquals(
          (await s.enqueue({
            sender: "alice",
            messageId: "m1",
            channelId,
            payload: utf8("x"),
            recipients: ["bob"],
          })).duplicate,
          true,
        );
        const db = new DatabaseSync(path);
        assertEquals(readSchemaVersion(db), SCHEMA_VERSION);
        db.close();
      } finally {
        await s.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("SqliteServerStore.open refuses a wrong db_key without changing the file", async () => {
  const { dir, path } = await tempDb();
  try {
    const s = await SqliteServerStore.open(path, { dbKey: "right key" });
    await fill(s);
    await s.close();
    const bytes = await Deno.readFile(path);
    const mtime = (await Deno.stat(path)).mtime?.getTime();
    const cases: [ServerStoreOptions, string][] = [
      [{ dbKey: "wrong key" }, "Cannot open database: wrong db_key"],
      [{}, "Cannot open database: it is sealed and no db_key was given"],
    ];
    for (const [opts, message] of cases) {
      const err = await assertRejects(() => SqliteServerStore.open(path, opts), StorageError);
      assertEquals(err.message, message);
      assertEquals(err.code, "storage");
    }
    assertEquals(await Deno.readFile(path), bytes);
    assertEquals((await Deno.stat(path)).mtime?.getTime(), mtime);
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith("-wal")),
      [],
    );
    // The right key still opens it.
    const again = await SqliteServerStore.open(path, { dbKey: "right key" });
    assertEquals((await again.getRegistrationRecord("bob"))?.record, utf8("record of bob"));
    await again.close();
    // A plain database refuses a key.
    const plain = `${dir}/plain.db`;
    await (await SqliteServerStore.open(plain)).close();
    const err = await assertRejects(
      () => SqliteServerStore.open(plain, { dbKey: "k" }),
      StorageError,
    );
    assertEquals(err.message, "Cannot open database: it was created without db_key");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteServerStore.open refuses a database newer than this build or not a database", async () => {
  const { dir, path } = await tempDb();
  try {
    await (await SqliteServerStore.open(path)).close();
    const db = new DatabaseSync(path);
    db.prepare("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', 0)")
      .run(SCHEMA_VERSION + 1);
    db.close();
    const err = await assertRejects(() => SqliteServerStore.open(path), StorageError);
    assert(err.message.includes("newer than this qpq"), err.message);
    const junk = `${dir}/junk.db`;
    await Deno.writeFile(junk, randomBytes(4096));
    const e2 = await assertRejects(() => SqliteServerStore.open(junk), UsageError);
    assertEquals(
      e2.message,
      `Cannot open database ${junk}: it is not a qpq server database (check db_path and data_dir)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteServerStore with db_key refuses a sealed value moved to another row", async () => {
  const { dir, path } = await tempDb();
  try {
    const s = await SqliteServerStore.open(path, { dbKey: "k" });
    await users(s, "alice", "mallory");
    await s.close();
    const db = new DatabaseSync(path);
    const rows = db.prepare("SELECT uid, record FROM users").all();
    db.prepare("UPDATE users SET record = ? WHERE uid = ?").run(
      rows[1]!.record as Uint8Array,
      rows[0]!.uid as Uint8Array,
    );
    db.close();
    const s2 = await SqliteServerStore.open(path, { dbKey: "k" });
    try {
      const results = await Promise.allSettled([
        s2.getRegistrationRecord("alice"),
        s2.getRegistrationRecord("mallory"),
      ]);
      const failed = results.filter((r) => r.status === "rejected");
      assertEquals(failed.length, 1);
      assert((failed[0] as PromiseRejectedResult).reason instanceof StorageError);
    } finally {
      await s2.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

async function fileBytes(path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const p of [path, `${path}-wal`]) {
    try {
      parts.push(await Deno.readFile(p));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return parts.reduce((a, b) => {
    const o = new Uint8Array(a.length + b.length);
    o.set(a);
    o.set(b, a.length);
    return o;
  }, new Uint8Array(0));
}

Deno.test("SqliteServerStore with db_key leaves no payload, record, token or username in the file", async () => {
  const { dir } = await tempDb();
  try {
    // A real password-derived OPAQUE record (cheap key stretching keeps the test fast).
    const setup = await createServerSetup();
    const reg = await clientRegistrationStart("hunter2 but longer");
    const record = (await clientRegistrationFinish(
      reg.state,
      "hunter2 but longer",
      await registrationStart(setup, "zelda-the-user", reg.request),
      { keyStretching: { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } } },
    )).record;
    const payload = utf8("PAYLOAD-MARKER-" + toHex(randomBytes(16)));
    const token = randomBytes(32);
    const setupBytes = setup.toBytes();
    const kpData = utf8("KEYPACKAGE-MARKER-" + toHex(randomBytes(16)));
    const secrets: [string, Uint8Array][] = [
      ["payload", payload],
      ["record", record.subarray(0, 48)],
      ["token", token],
      ["username", utf8("zelda-the-user")],
      ["opaque setup", setupBytes.subarray(0, 48)],
      ["key package", kpData],
    ];
    for (const dbKey of [undefined, "a db key"]) {
      const path = `${dir}/${dbKey === undefined ? "plain" : "sealed"}.db`;
      const s = await SqliteServerStore.open(path, dbKey === undefined ? {} : { dbKey });
      await s.getOrCreateSecret("opaque_setup", () => setupBytes);
      await s.createUser("zelda-the-user", record);
      await s.createUser("link", utf8("r"));
      await s.createSession(token, "zelda-the-user", Date.now() + HOUR);
      await s.addKeyPackages("zelda-the-user", [{
        ref: utf8("r1"),
        cipherSuite: XWING,
        data: kpData,
        notAfter: Date.now() + HOUR,
      }]);
      await s.enqueue({
        sender: "link",
        messageId: "m",
        channelId: null,
        payload,
        recipients: ["zelda-the-user"],
      });
      const whileOpen = await fileBytes(path);
      await s.close();
      const afterClose = await fileBytes(path);
      for (const [what, needle] of secrets) {
        const found = contains(whileOpen, needle) || contains(afterClose, needle);
        // Positive control: the scan finds every marker in the unsealed database, except
        // the token, which is stored hashed even there.
        const expected = dbKey === undefined && what !== "token";
        assertEquals(found, expected, `${what} ${expected ? "missing from" : "found in"} ${path}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Sealer redacts its keys when inspected or serialized", () => {
  const s = Sealer.fromDbKey("secret db key");
  const shown = Deno.inspect(s) + JSON.stringify(s);
  assert(shown.includes("redacted"));
  assert(!shown.includes("secret db key"));
  assertEquals(Sealer.plain().sealed, false);
  s.destroy();
  let threw = false;
  try {
    s.seal("x", new Uint8Array(0), new Uint8Array(1));
  } catch (e) {
    threw = e instanceof StorageError;
  }
  assert(threw, "a destroyed sealer must refuse to seal");
});

Deno.test("SqliteServerStore.consumeKeyPackage hands out each package once across two connections", async () => {
  const { dir, path } = await tempDb();
  try {
    const clock = new Clock();
    const a = await SqliteServerStore.open(path, { clock: clock.fn });
    const b = await SqliteServerStore.open(path, { clock: clock.fn });
    try {
      await users(a, "alice");
      await a.addKeyPackages("alice", Array.from({ length: 30 }, (_, i) => kp(i)));
      const got = await Promise.all(
        Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).consumeKeyPackage("alice")),
      );
      assertEquals(new Set(got.map((g) => toHex(g!.ref))).size, 30);
      assertEquals(await b.consumeKeyPackage("alice"), undefined);
    } finally {
      await a.close();
      await b.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

contract(
  "setBlocked blocks and unblocks idempotently; blockersOf names who blocked a sender",
  async (s, ctx) => {
    await users(s, "alice", "bob", "carol", "mallory");
    assertEquals(await s.blockersOf("mallory", ["alice", "bob", "carol"]), []);
    await s.setBlocked("alice", "mallory", true);
    await s.setBlocked("alice", "mallory", true); // again: no change, no error
    await s.setBlocked("carol", "mallory", true);
    assertEquals(await s.blockersOf("mallory", ["carol", "bob", "alice"]), ["carol", "alice"]);
    assertEquals(await s.blockersOf("alice", ["mallory"]), [], "a block goes one way");
    await s.setBlocked("carol", "mallory", false);
    await s.setBlocked("carol", "mallory", false);
    assertEquals(await s.blockersOf("mallory", ["alice", "bob", "carol"]), ["alice"]);
    assertEquals(await code(s.setBlocked("alice", "ghost", true)), "UsageError:not_found");
    assertEquals(await code(s.setBlocked("ghost", "alice", true)), "UsageError:not_found");
    // at most maxBlocksPerUser blocks per account
    const small = await ctx.open({ limits: { maxBlocksPerUser: 2 } });
    await users(small, "u1", "u2", "u3", "u4");
    await small.setBlocked("u1", "u2", true);
    await small.setBlocked("u1", "u3", true);
    assertEquals(await code(small.setBlocked("u1", "u4", true)), "UsageError:quota");
    await small.setBlocked("u1", "u3", true); // an existing block is not a new row
    await small.setBlocked("u1", "u2", false);
    await small.setBlocked("u1", "u4", true);
    assertEquals(await small.blockersOf("u4", ["u1"]), ["u1"]);
  },
);

contract(
  "dropForBlockers counts each dropped message per block; setBlocked(off) answers the count (issue 21)",
  async (s) => {
    await users(s, "alice", "bob", "mallory");
    await s.setBlocked("alice", "mallory", true);
    for (let i = 0; i < 3; i++) {
      assertEquals(await s.dropForBlockers("mallory", ["bob", "alice"]), ["alice"]);
    }
    assertEquals(await s.dropForBlockers("alice", ["mallory"]), [], "a block goes one way");
    assertEquals(await s.setBlocked("alice", "mallory", true), 0, "blocking again counts nothing");
    assertEquals(await s.setBlocked("alice", "mallory", false), 3);
    assertEquals(await s.setBlocked("alice", "mallory", false), 0, "no block, nothing dropped");
    await s.setBlocked("alice", "mallory", true);
    assertEquals(await s.setBlocked("alice", "mallory", false), 0, "a new block counts anew");
  },
);

contract(
  "reserveNames keeps a lost name for the holder of its identity key; look-alikes are refused (issue 21)",
  async (s) => {
    const key = new Uint8Array(32).fill(7);
    await users(s, "alice");
    assertEquals(
      await s.reserveNames([{ username: "alice" }, { username: "bob", identityKey: key }]),
      1,
      "alice is registered: nothing of hers was lost",
    );
    assertEquals([await s.isReserved("bob"), await s.isReserved("alice")], [true, false]);
    await s.checkNewUsername("bob"); // the owner must get through registerStart
    assertEquals(await code(s.checkNewUsername("b0b")), "UsageError:conflict");
    assertEquals(
      await code(s.createUser("bob", utf8("squatter"), { identityKey: new Uint8Array(32) })),
      "UsageError:conflict",
    );
    assertEquals(await code(s.createUser("bob", utf8("no key"))), "UsageError:conflict");
    assertEquals(await s.getUser("bob"), undefined);
    await s.createUser("bob", utf8("record of bob"), { identityKey: key });
    assertEquals(await s.isReserved("bob"), false, "taken back: an account like any other");
    assertEquals(
      await code(s.createUser("bob", utf8("again"), { identityKey: key })),
      "UsageError:conflict",
    );
  },
);

/**
 * A schema-2 server database written as a build of that schema did (usernames compared
 * exactly): `Bob` (oldest), `bob`, `Carol` and the look-alikes `al1ce` (older) and `alice`.
 * Bob has a session, KeyPackages and a queued message; Carol created a group with Bob and
 * has a DM with bob.
 */
function schemaTwoDb(path: string, dbKey: string | undefined, token: Uint8Array): string[] {
  const sealer = dbKey === undefined ? Sealer.plain() : Sealer.fromDbKey(dbKey);
  const db = new DatabaseSync(path);
  try {
    db.exec(MIGRATIONS[0]!.sql);
    db.exec(MIGRATIONS[1]!.sql);
    db.exec(
      "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, " +
        "applied_at INTEGER NOT NULL) STRICT",
    );
    db.prepare("INSERT INTO schema_version VALUES (1, 'initial schema', ?), (2, 'kp', ?)")
      .run(T0, T0);
    const meta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
    meta.run("seal_mode", utf8(sealer.mode));
    meta.run("seal_check", sealer.checkValue());
    const uid = (n: string) => sealer.lookupName("user", n).slice();
    const names = ["Bob", "bob", "Carol", "al1ce", "alice"];
    names.forEach((n, i) => {
      const u = uid(n);
      db.prepare("INSERT INTO users VALUES (?, ?, ?, ?, ?)").run(
        u,
        sealer.seal("users.username", u, utf8(n)),
        sealer.seal("users.record", u, utf8(`record of ${n}`)),
        sealer.seal("users.identity_key", u, new Uint8Array(32).fill(i + 1)),
        T0 + i,
      );
    });
    const bob = uid("Bob");
    const carol = uid("Carol");
    db.prepare("INSERT INTO sessions VALUES (?, ?, ?)")
      .run(sealer.lookup("token", token), bob, T0 + HOUR);
    const ref = utf8("ref-1");
    db.prepare(
      "INSERT INTO key_packages (uid, ref, data, not_after, cipher_suite) VALUES (?, ?, ?, ?, ?)",
    ).run(
      bob,
      ref,
      sealer.seal("key_packages.data", keyPackageRowKey(bob, ref), utf8("kp of Bob")),
      T0 + 24 * HOUR,
      XWING,
    );
    db.prepare("INSERT INTO last_resort_key_packages VALUES (?, ?, ?, ?, ?)").run(
      bob,
      XWING,
      utf8("ref-lr"),
      sealer.seal("last_resort_key_packages.data", bob, utf8("last resort of Bob")),
      T0 + 24 * HOUR,
    );
    const channel = db.prepare("INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?, ?, 0)");
    const g = "11".repeat(16);
    channel.run(
      g,
      "group",
      sealer.lookupName("channel", "team"),
      sealer.seal("channels.name", utf8(g), utf8("team")),
      null,
      sealer.seal("channels.created_by", utf8(g), utf8("Carol")),
      T0,
    );
    const dm = "22".repeat(16);
    const [x, y] = ["Carol", "bob"].sort();
    channel.run(
      dm,
      "dm",
      null,
      null,
      sealer.lookup("dm", lengthPrefixed(x!, y!)),
      sealer.seal("channels.created_by", utf8(dm), utf8("Carol")),
      T0,
    );
    const member = db.prepare("INSERT INTO members VALUES (?, ?)");
    member.run(g, carol);
    member.run(g, bob);
    member.run(dm, carol);
    member.run(dm, uid("bob"));
    const mref = sealer.lookup("message", lengthPrefixed("Carol", "m1"));
    const body = new Uint8Array([...lengthPrefixed("Carol", "m1"), ...utf8("hello Bob")]);
    db.prepare("INSERT INTO messages VALUES (1, ?, ?, ?, ?, ?)").run(
      mref,
      g,
      sealer.seal("messages.body", mref, body),
      sealer.seal("messages.fanout", mref, utf8(JSON.stringify([["Bob", 1]]))),
      T0,
    );
    db.prepare("INSERT INTO queues VALUES (?, 2, 1)").run(bob);
    db.prepare("INSERT INTO deliveries VALUES (?, 1, 1, ?)").run(bob, T0);
    return names;
  } finally {
    db.close();
    sealer.destroy();
  }
}

for (const dbKey of [undefined, "migration key"]) {
  const label = dbKey === undefined ? "without db_key" : "with db_key";
  Deno.test(`SqliteServerStore.open migrates schema 2 usernames to one canonical form (${label})`, async () => {
    const { dir, path } = await tempDb();
    const token = randomBytes(32);
    const opts = { clock: () => T0, ...(dbKey === undefined ? {} : { dbKey }) };
    try {
      schemaTwoDb(path, dbKey, token);
      const s = await SqliteServerStore.open(path, opts);
      try {
        // bob (already canonical) keeps its name; Bob, though older, becomes bob~2
        assertEquals(s.migrationNotices.length, 1);
        assert(s.migrationNotices[0]!.includes('"Bob"'));
        assert(s.migrationNotices[0]!.includes("--username bob~2"));
        for (const [name, key] of [["bob~2", 1], ["bob", 2], ["carol", 3], ["al1ce", 4]] as const) {
          assertEquals((await s.getUser(name))?.identityKey, new Uint8Array(32).fill(key));
        }
        assertEquals(await s.getUser("Bob"), undefined);
        assertEquals(await s.getUser("Carol"), undefined);
        // OPAQUE keeps the spelling each account registered with
        assertEquals(await s.getRegistrationRecord("bob~2"), {
          record: utf8("record of Bob"),
          identifier: "Bob",
        });
        assertEquals((await s.getRegistrationRecord("carol"))?.identifier, "Carol");
        assertEquals((await s.getRegistrationRecord("bob"))?.identifier, "bob");
        // everything of the renamed accounts followed them
        assertEquals((await s.lookupSession(token))?.username, "bob~2");
        assertEquals((await s.consumeKeyPackage("bob~2"))?.data, utf8("kp of Bob"));
        assertEquals((await s.consumeKeyPackage("bob~2"))?.data, utf8("last resort of Bob"));
        const queued = await s.fetch("bob~2", 0);
        assertEquals(queued.map((m) => [m.seq, m.sender]), [[1, "Carol"]]);
        assertEquals(queued[0]!.payload, utf8("hello Bob"));
        const channels = await s.listChannels("carol");
        assertEquals(channels.map((c) => [c.kind, c.createdBy]), [["group", "carol"], [
          "dm",
          "carol",
        ]]);
        assertEquals(await s.listMembers("11".repeat(16)), ["bob~2", "carol"]);
        const dm = await s.getOrCreateDm("carol", "bob");
        assertEquals([dm.created, dm.channel.id], [false, "22".repeat(16)]);
        // look-alikes: neither a new one nor the reserved form's base may register
        assertEquals(await code(s.checkNewUsername("a1ice")), "UsageError:conflict");
        assertEquals(await code(s.createUser("b0b", utf8("r"))), "UsageError:conflict");
        await s.createUser("dave", utf8("r"));
      } finally {
        await s.close();
      }
      // reopening applies nothing again and says nothing
      const again = await SqliteServerStore.open(path, opts);
      assertEquals(again.migrationNotices, []);
      await again.close();
      const db = new DatabaseSync(path);
      assertEquals(readSchemaVersion(db), SCHEMA_VERSION);
      // the skeleton index is unique: a second writer cannot slip a look-alike in
      const rows = db.prepare("SELECT uid, skeleton_ref FROM users").all();
      const withSkeleton = rows.filter((r) => r.skeleton_ref !== null);
      // bob, carol, al1ce, dave; bob~2 and alice (a younger look-alike of al1ce) have none
      assertEquals(withSkeleton.length, 4);
      let unique = "";
      try {
        db.prepare("UPDATE users SET skeleton_ref = ? WHERE uid = ?")
          .run(withSkeleton[0]!.skeleton_ref as Uint8Array, withSkeleton[1]!.uid as Uint8Array);
      } catch (e) {
        unique = String(e);
      }
      assertStringIncludes(unique, "UNIQUE");
      db.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const dbKey of [undefined, "migration key"]) {
  const label = dbKey === undefined ? "without db_key" : "with db_key";
  Deno.test(`SqliteServerStore.open migration 6 recomputes skeletons; older look-alikes stay (${label})`, async () => {
    const { dir, path } = await tempDb();
    const opts = { clock: () => T0, ...(dbKey === undefined ? {} : { dbKey }) };
    try {
      const s0 = await SqliteServerStore.open(path, opts);
      await s0.createUser("bob", utf8("record of bob"));
      await s0.createUser("carol", utf8("record of carol"));
      await s0.close();
      // what schema 5 let in: "bob." and "c4rol" beside bob and carol, under the old rule
      const sealer = dbKey === undefined ? Sealer.plain() : Sealer.fromDbKey(dbKey);
      const db = new DatabaseSync(path);
      for (const [i, [name, oldSkeleton]] of [["bob.", "bob."], ["c4rol", "c4rol"]].entries()) {
        const uid = sealer.lookupName("user", name!);
        db.prepare(
          "INSERT INTO users (uid, username, record, identity_key, created_at, skeleton_ref) " +
            "VALUES (?, ?, ?, NULL, ?, ?)",
        ).run(
          uid,
          sealer.seal("users.username", uid, utf8(name!)),
          sealer.seal("users.record", uid, utf8(`record of ${name}`)),
          T0 + 1 + i,
          sealer.lookup("skeleton", utf8(oldSkeleton!)),
        );
      }
      db.exec("DELETE FROM schema_version WHERE version >= 6");
      db.close();
      sealer.destroy();
      const s = await SqliteServerStore.open(path, opts);
      try {
        assertEquals(s.migrationNotices.length, 2, s.migrationNotices.join("\n"));
        assertStringIncludes(
          s.migrationNotices[0]!,
          '"bob." now looks like the older account "bob"',
        );
        assertStringIncludes(s.migrationNotices[1]!, '"c4rol" now looks like the older account');
        // both look-alikes keep their accounts
        for (const name of ["bob", "bob.", "carol", "c4rol"]) {
          assertEquals((await s.getRegistrationRecord(name))?.record, utf8(`record of ${name}`));
        }
        // new look-alikes of either are refused
        for (const name of ["b_ob", "bob-", "8ob", "car0l", "carol."]) {
          assertEquals(await code(s.createUser(name, utf8("r"))), "UsageError:conflict", name);
        }
        await s.createUser("dave", utf8("r"));
        assertEquals(await code(s.createUser("d4ve", utf8("r"))), "UsageError:conflict");
      } finally {
        await s.close();
      }
      const again = await SqliteServerStore.open(path, opts);
      assertEquals(again.migrationNotices, []);
      await again.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

contract("createUser refuses a look-alike of an existing name, also when racing", async (s) => {
  await s.createUser("alice", utf8("r"));
  for (const n of ["a1ice", "aIice", "alice", "al1ce", "a|ice"]) {
    assertEquals(await code(s.createUser(n, utf8("r"))), "UsageError:conflict", n);
  }
  await s.createUser("rnary", utf8("r"));
  assertEquals(await code(s.createUser("mary", utf8("r"))), "UsageError:conflict");
  // concurrent registrations of look-alikes: exactly one wins
  const results = await Promise.allSettled(
    ["w0lf", "vvolf", "wolf", "vv0lf", "w01f"].map((n) => s.createUser(n, utf8("r"))),
  );
  assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
  await s.createUser("bob", utf8("r"));
});

contract(
  "channelOfMember names members only: a held invitation is on the roster, not a member",
  async (_, ctx) => {
    const s = await ctx.open({ limits: { maxGroupsPerUser: 1 } });
    await users(s, "alice", "bob", "carol");
    await s.createGroupChannel({ name: "own", creator: "bob" }); // bob is at the cap
    const g = await s.createGroupChannel({ name: "g", creator: "alice" });
    await s.addMembers(g.id, ["bob", "carol"]);
    const seen = await s.channelOfMember(g.id, "alice");
    assertEquals(seen?.members, ["alice", "bob", "carol"]);
    assertEquals((await s.channelOfMember(g.id, "carol"))?.channel.id, g.id);
    // bob's invitation is held: he neither reads the roster nor sends to it
    assertEquals(await s.channelOfMember(g.id, "bob"), undefined);
    assertEquals(await s.isMember(g.id, "bob"), false);
    assertEquals(await s.channelOfMember(g.id, "mallory"), undefined);
    assertEquals(await s.channelOfMember("0".repeat(32), "alice"), undefined);
  },
);
