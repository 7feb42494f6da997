/**
 * Ephemeral enqueues (typing indicators, issue 21): the server forwards them only to the
 * recipients' live subscriptions (pushed with seq 0, never acked), stores nothing (no
 * queue row, no duplicate record), and bounds them: members only, application only, a
 * size cap and a rate limit per connection; a blocker gets none. Over QUIC with a real
 * SQLite file, like tests/server_test.ts.
 */
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import type { ServerConnection } from "../src/client/connection.ts";
import { rawUser as user } from "./_support/raw_user.ts";
import { AuthError, type QpqError, UsageError, ValidationError } from "../src/errors.ts";
import { randomBytes, utf8 } from "../src/bytes.ts";
import type { DeliveredMessage } from "../src/wire/mod.ts";
import { MAX_EPHEMERAL_BYTES, MAX_EPHEMERAL_PER_WINDOW } from "../src/limits.ts";

function enqueue(
  conn: ServerConnection,
  channelId: Uint8Array,
  payload: Uint8Array,
  ephemeral: boolean,
  messageId = randomBytes(16),
) {
  return conn.call({
    kind: "enqueue",
    channelId,
    messageId,
    payload,
    messageKind: "application",
    epoch: 0,
    recipients: [],
    ephemeral,
  }, "enqueued");
}

async function refused(p: () => Promise<unknown>, cls: new (m: string) => QpqError, code: string) {
  const e = await assertRejects(p, cls) as QpqError;
  assertEquals(e.code, code, e.message);
}

async function withUsers(
  fn: (
    a: ServerConnection,
    b: ServerConnection,
    c: ServerConnection,
    pushed: DeliveredMessage[],
    ch: Uint8Array,
  ) => Promise<void>,
) {
  const ts = await startTestServer({});
  const pushed: DeliveredMessage[] = [];
  try {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob", (p) => pushed.push(...p.messages));
    const carol = await user(ts, "carol");
    const ch = (await alice.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
    await bob.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    try {
      await fn(alice, bob, carol, pushed, ch);
    } finally {
      for (const c of [alice, bob, carol]) await c.close();
    }
  } finally {
    await ts.close();
  }
  await Deno.remove(ts.dataDir, { recursive: true }).catch(() => {});
}

const settle = () => new Promise((r) => setTimeout(r, 150));

Deno.test("ephemeral enqueue reaches a live subscription with seq 0 and is stored nowhere", async () => {
  await withUsers(async (alice, bob, _carol, pushed, ch) => {
    const id = randomBytes(16);
    const r = await enqueue(alice, ch, utf8("typing"), true, id);
    assertEquals(r, { kind: "enqueued", duplicate: false, recipients: 1 });
    await settle();
    assertEquals(pushed.length, 1);
    assertEquals(pushed[0]!.seq, 0, "not in a queue");
    assertEquals(new TextDecoder().decode(pushed[0]!.payload), "typing");
    assertEquals(pushed[0]!.sender, "alice");
    // nothing in bob's queue, and no duplicate record: the same id stored for real is new
    assertEquals(
      (await bob.call({ kind: "fetch", afterSeq: 0, limit: 0 }, "messages")).messages,
      [],
    );
    const stored = await enqueue(alice, ch, utf8("a message"), false, id);
    assertEquals(stored.duplicate, false, "the ephemeral one left no record");
    await settle();
    assertEquals(pushed.length, 2);
    assert(pushed[1]!.seq > 0, "a stored message has a queue number");
  });
});

Deno.test("ephemeral enqueue to a user not subscribed reaches nobody and stays out of the queue", async () => {
  await withUsers(async (alice, _bob, carol, _pushed, _ch) => {
    const ch = (await alice.call({ kind: "createDm", username: "carol" }, "channel")).channelId;
    assertEquals((await enqueue(alice, ch, utf8("typing"), true)).recipients, 0);
    assertEquals(
      (await carol.call({ kind: "fetch", afterSeq: 0, limit: 0 }, "messages")).messages,
      [],
    );
  });
});

Deno.test("ephemeral enqueue is bounded: members only, application only, size cap, rate limit, not to a blocker", async () => {
  await withUsers(async (alice, bob, carol, pushed, ch) => {
    await refused(() => enqueue(carol, ch, utf8("typing"), true), AuthError, "forbidden");
    await refused(
      () => enqueue(alice, ch, new Uint8Array(MAX_EPHEMERAL_BYTES + 1), true),
      ValidationError,
      "too_large",
    );
    await refused(
      () =>
        alice.call({
          kind: "enqueue",
          channelId: ch,
          messageId: randomBytes(16),
          payload: utf8("x"),
          messageKind: "proposal",
          epoch: 0,
          recipients: [],
          ephemeral: true,
        }, "enqueued"),
      UsageError,
      "usage",
    );
    await bob.call({ kind: "block", username: "alice" }, "ok");
    assertEquals((await enqueue(alice, ch, utf8("typing"), true)).recipients, 0);
    await settle();
    assertEquals(pushed.length, 0, "a blocker gets no typing indicator");
    // the blocked one counts (the refused ones were refused before the limit): fill the window
    for (let i = 1; i < MAX_EPHEMERAL_PER_WINDOW; i++) await enqueue(alice, ch, utf8("t"), true);
    await refused(() => enqueue(alice, ch, utf8("typing"), true), AuthError, "rate_limited");
  });
});

Deno.test("ephemeral enqueue reaches only the subscriptions of its own server (two in one process)", async () => {
  await withUsers(async (_alice, _bob, _carol, pushed, _ch) => {
    // a second server in the same process, with its own alice and bob (not subscribed)
    const ts2 = await startTestServer({});
    try {
      const alice2 = await user(ts2, "alice");
      const bob2 = await user(ts2, "bob");
      const ch2 = (await alice2.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
      assertEquals((await enqueue(alice2, ch2, utf8("typing"), true)).recipients, 0);
      await settle();
      assertEquals(pushed, [], "the first server's bob got nothing");
      for (const c of [alice2, bob2]) await c.close();
    } finally {
      await ts2.close();
    }
    await Deno.remove(ts2.dataDir, { recursive: true }).catch(() => {});
  });
});
