/**
 * Typing indicators (issue 21) between real clients over QUIC: an MLS application message
 * sent as an ephemeral enqueue (seq 0, pushed to live subscriptions, stored nowhere). The
 * receiver reports it as a `typing` event and keeps nothing of it: no history, no unread
 * count, no queue position, no ack. The sender queues nothing, sends nothing offline, to a
 * request or to a user it blocked, and at most one per TYPING_INTERVAL_MS per conversation.
 * Whatever else comes that way (a text) is never stored.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import { connectServer } from "../src/client/connection.ts";
import type { ClientEvent } from "../src/client/client.ts";
import { GroupStates } from "../src/client/group_states.ts";
import { decodeContent, encodeContent } from "../src/client/content.ts";
import { uuidv7 } from "../src/client/ids.ts";
import { encryptMessage } from "../src/mls/mod.ts";
import { fromHex } from "../src/bytes.ts";

async function queueDepth(ts: TestServer): Promise<number> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    return Number((await conn.call({ kind: "health" }, "health")).queueDepth);
  } finally {
    await conn.close();
  }
}

type Typing = Extract<ClientEvent, { kind: "typing" }>;
const typings = (u: TestUser): Typing[] => u.events.filter((e): e is Typing => e.kind === "typing");

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Let pushes in flight arrive (for checking that something did not). */
const settle = () => new Promise((r) => setTimeout(r, 400));

Deno.test("QpqClient.typing: bob sees alice typing; nothing stored, acked or counted", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-typing-" });
  const users: TestUser[] = [];
  try {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    const carol = await testUser(ts, dir, "carol");
    const eve = await testUser(ts, dir, "eve", { acceptFrom: "contacts" });
    users.push(alice, bob, carol, eve);
    await alice.client.dm("bob");
    await alice.client.send("@bob", "first");
    await bob.client.sync();
    await bob.client.subscribe();
    await alice.client.subscribe();
    await bob.client.markRead("@alice");

    // what the first exchange still has in flight (bob's receipts on their way to alice, her
    // ack of them) settles first: a snapshot taken meanwhile moved under load (a CI run)
    await alice.client.sync();
    let depth = await queueDepth(ts);
    for (let i = 0; i < 20; i++) {
      await settle();
      const now = await queueDepth(ts);
      if (now === depth) break;
      depth = now;
    }
    const cursor = bob.client.store.cursor();
    const historyBob = bob.client.history("@bob", 50).length;
    const historyAlice = alice.client.history("@bob", 50).length;

    assert(await alice.client.typing("@bob"), "sent");
    await until("bob sees alice typing", () => typings(bob).length === 1);
    const t = typings(bob)[0]!;
    assertEquals([t.from, t.conversation.name, t.active], ["alice", "@alice", true]);

    // rate limit: a second one within TYPING_INTERVAL_MS is not sent
    assertEquals(await alice.client.typing("@bob"), false);
    await settle();
    assertEquals(typings(bob).length, 1, "one per interval");

    // nothing of it stayed anywhere
    assertEquals(await queueDepth(ts), depth, "the server queued nothing");
    assertEquals(bob.client.store.cursor(), cursor, "no queue position, no ack");
    assertEquals(bob.client.history("@bob", 50).length, historyBob, "bob stored nothing");
    assertEquals(bob.client.unread("@alice"), 0, "nothing unread");
    assertEquals(alice.client.history("@bob", 50).length, historyAlice, "alice stored nothing");
    assertEquals(alice.client.pendingCount(), 0, "nothing queued");
    assertEquals(typings(alice).length, 0, "not to ourselves");

    // the ratchet generation it used is a gap the next message crosses
    await alice.client.send("@bob", "second");
    await until("second", () => bob.received().includes("second"));
    assertEquals(bob.received(), ["first", "second"]);
    assertEquals(bob.warnings(), []);

    // a group: alice blocked carol, so carol gets no typing from her; bob does
    await alice.client.createGroup("team");
    await alice.client.invite("#team", ["bob", "carol"]);
    await bob.client.sync();
    await carol.client.sync();
    await carol.client.subscribe();
    await alice.client.block("carol");
    const before = typings(bob).length;
    assert(await alice.client.typing("#team"), "sent to the group");
    await until("bob sees alice typing in #team", () => typings(bob).length === before + 1);
    assertEquals(typings(bob).at(-1)!.conversation.name, "#team");
    await settle();
    assertEquals(typings(carol), [], "a blocked member gets none");
    // and carol's typing is not shown to alice, who blocked her
    assert(await carol.client.typing("#team"));
    await until("bob sees carol", () => typings(bob).some((e) => e.from === "carol"));
    await settle();
    assertEquals(typings(alice).filter((e) => e.from === "carol"), [], "from a blocked user");

    // a request (eve has not accepted alice): eve shows nothing, and sends nothing back
    await alice.client.dm("eve");
    await alice.client.send("@eve", "hello stranger");
    await eve.client.sync();
    await eve.client.subscribe();
    assertEquals(eve.client.requests().length, 1);
    assert(await alice.client.typing("@eve"));
    await settle();
    assertEquals(typings(eve), [], "a request shows no typing");
    assertEquals(await eve.client.typing("@alice"), false, "never to a request");

    // to a blocked DM peer: nothing is sent
    await bob.client.block("alice");
    assertEquals(await bob.client.typing("@alice"), false, "never to a blocked peer");

    // offline: nothing
    await bob.client.disconnect();
    assertEquals(await bob.client.typing("#team"), false, "not when offline");
  } finally {
    for (const u of users) await u.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typing content: round trip, never queued by the compose path", () => {
  const c = encodeContent({
    messageId: uuidv7(),
    sentAtMs: 1,
    body: { kind: "typing", active: true },
  });
  assertEquals(decodeContent(c).body, { kind: "typing", active: true });
  const off = encodeContent({
    messageId: uuidv7(),
    sentAtMs: 1,
    body: { kind: "typing", active: false },
  });
  assertEquals(decodeContent(off).body, { kind: "typing", active: false });
});

Deno.test("Inbox: a text that comes as an ephemeral message (seq 0) is never stored", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-typing-" });
  const users: TestUser[] = [];
  try {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    users.push(alice, bob);
    await alice.client.dm("bob");
    await alice.client.send("@bob", "first");
    await bob.client.sync();
    await bob.client.subscribe();
    const history = bob.client.history("@alice", 50).length;
    const cursor = bob.client.store.cursor();

    // a modified client of alice's: a text, encrypted in the group, sent ephemeral
    const conv = alice.client.conversation("@bob");
    const groups = new GroupStates(alice.client.store);
    const record = groups.meta(conv.channelId!)!;
    const content = encodeContent({
      messageId: uuidv7(),
      sentAtMs: Date.now(),
      body: { kind: "text", text: "sneaky" },
    });
    const state = groups.open(record);
    const enc = await encryptMessage(state, content);
    const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    try {
      await conn.call({ kind: "resume", token: alice.client.store.meta.sessionToken! }, "session");
      const r = await conn.call({
        kind: "enqueue",
        channelId: fromHex(conv.channelId!),
        messageId: uuidv7(),
        payload: enc.outbound,
        messageKind: "application",
        epoch: Number(state.epoch),
        recipients: [],
        ephemeral: true,
      }, "enqueued");
      assertEquals(r.recipients, 1, "bob's subscription got it");
    } finally {
      await conn.close();
    }
    await settle();
    await settle();
    assertEquals(bob.received(), ["first"], "not shown");
    assertEquals(bob.client.history("@alice", 50).length, history, "not stored");
    assertEquals(bob.client.unread("@alice"), 1, "the first only");
    assertEquals(bob.client.store.cursor(), cursor);
    assertEquals(typings(bob), []);
  } finally {
    for (const u of users) await u.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
