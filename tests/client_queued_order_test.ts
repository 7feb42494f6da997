/**
 * Nothing overtakes a queued message of its conversation (found by the simulation, seed
 * 4020). A sender's MLS messages carry consecutive generations of its ratchet; a member
 * keeps the keys of at most 10 skipped generations (ts-mls), so a message that arrives
 * more than 10 generations late is unreadable for everyone. With twelve messages queued
 * offline, the sync that brought the sender back sent its delivered receipt for what it
 * received first (a later generation), then the queue: the first messages arrived
 * "Desired gen in the past". Real server over QUIC, real clients.
 *
 * @module
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import { linkedClient, type TestUser, testUser } from "./_support/clients.ts";
import { decodeFrame } from "../src/wire/mod.ts";
import { toHex } from "../src/bytes.ts";
import { AuthError } from "../src/errors.ts";

const QUEUED = 12;

Deno.test("client: messages queued offline go out before the receipt of what the sender receives on its return, and every member reads them", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-queued-order-" });
  const net = { offline: false };
  const { client: ann } = await linkedClient(
    ts,
    dir,
    "ann",
    (_req, real) => real(),
    () => net.offline,
  );
  const others: TestUser[] = [];
  try {
    await ann.register();
    others.push(await testUser(ts, dir, "bob"));
    const bob = others[0]!;
    await bob.client.createGroup("g");
    await bob.client.invite("#g", ["ann"]);
    await ann.sync();

    net.offline = true;
    await ann.disconnect();
    const texts = Array.from({ length: QUEUED }, (_, i) => `queued ${i + 1}`);
    for (const t of texts) assertEquals((await ann.send("#g", t)).status, "pending");
    await bob.client.send("#g", "are you there?");

    net.offline = false;
    await ann.sync(); // receives bob's message (a delivered receipt is due), sends the queue
    assertEquals(ann.pendingCount(), 0, "nothing left queued");
    await bob.client.sync();
    const unreadable = bob.events.flatMap((e) => e.kind === "unreadable" ? [e.reason] : []);
    assertEquals(unreadable, [], "bob reads every queued message");
    assertEquals(bob.received(), texts, "each shown once, in order");
  } finally {
    await ann.close().catch(() => {});
    for (const o of others) await o.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: a queued message the server refuses for now holds only its own conversation; another conversation's queue goes out (sim seed 5015)", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-queued-hold-" });
  const net = { offline: false };
  // the server refuses #g's enqueues "for now" (as it does a message of an epoch the group
  // has left, which nothing can encrypt again while the sender's leave is pending)
  const refused = { channel: "" };
  const { client: ann } = await linkedClient(
    ts,
    dir,
    "ann",
    (req, real) => {
      if (refused.channel && req.kind === "enqueue") {
        // an encoded request (the outbox's) or a request object
        const r = "bytes" in req ? decodeFrame(req.bytes as Uint8Array) : undefined;
        const channel = r?.type === "request" && r.request.kind === "enqueue"
          ? r.request.channelId
          : "channelId" in req
          ? req.channelId as Uint8Array
          : undefined;
        if (channel && toHex(channel) === refused.channel) {
          return Promise.reject(
            new AuthError("Too many messages: try again later", { code: "rate_limited" }),
          );
        }
      }
      return real();
    },
    () => net.offline,
  );
  let bob: TestUser | undefined;
  try {
    await ann.register();
    bob = await testUser(ts, dir, "bob");
    await bob.client.createGroup("g");
    await bob.client.invite("#g", ["ann"]);
    await ann.sync();
    await ann.dm("bob");
    await ann.send("@bob", "hello");
    await bob.client.sync();

    net.offline = true;
    await ann.disconnect();
    assertEquals((await ann.send("#g", "to the group")).status, "pending");
    assertEquals((await ann.send("@bob", "to bob")).status, "pending");
    refused.channel = ann.conversation("#g").id;

    net.offline = false;
    await ann.flushOutbox();
    assertEquals(ann.pendingCount(), 1, "only the refused group message waits");
    await bob.client.sync();
    assertEquals(bob.received().filter((t) => t.startsWith("to ")), ["to bob"]);
  } finally {
    await ann.close().catch(() => {});
    await bob?.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: a message queued in an epoch the group has left goes out before the sender's leave, encrypted again (sim seed 5015)", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-queued-leave-" });
  const net = { offline: false };
  const { client: ann } = await linkedClient(
    ts,
    dir,
    "ann",
    (_req, real) => real(),
    () => net.offline,
  );
  const others: TestUser[] = [];
  try {
    await ann.register();
    others.push(await testUser(ts, dir, "bob"), await testUser(ts, dir, "cat"));
    const [bob, cat] = others as [TestUser, TestUser];
    await bob.client.createGroup("g");
    await bob.client.invite("#g", ["ann", "cat"]);
    await ann.sync();
    await cat.client.sync();

    net.offline = true;
    await ann.disconnect();
    assertEquals((await ann.send("#g", "before I go")).status, "pending");
    await bob.client.update("#g"); // the group moves on: ann's message is of an old epoch
    net.offline = false;
    // the leave waits behind the message queued before it (and says so), then both go out
    const said = await ann.leave("#g").then(String, (e: Error) => e.message);
    assert(said === "asked" || said.includes("sent after the messages queued before it"), said);
    await ann.flushOutbox();
    assertEquals(ann.pendingCount(), 0, "the message and the leave went out");
    await bob.client.sync(); // reads the message, commits ann's leave
    await cat.client.sync();
    const unreadable = bob.events.flatMap((e) => e.kind === "unreadable" ? [e.reason] : []);
    assertEquals(unreadable, [], "bob reads it");
    assertEquals(bob.received(), ["before I go"]);
    assertEquals(bob.client.members("#g").sort(), ["bob", "cat"]);
  } finally {
    await ann.close().catch(() => {});
    for (const o of others) await o.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: a message composed while another of its conversation is on the way goes out after it, not left queued (bench/delivery_cpu_bench.ts hang)", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-queued-beside-" });
  // ann's first enqueue is held on the way until her second message is queued too: the
  // two deliveries overlap, as a send and the delivered receipt of a timer did in the bench
  const gate = { held: false, release: () => {} };
  const { client: ann } = await linkedClient(ts, dir, "ann", async (req, real) => {
    if (req.kind === "enqueue" && !gate.held) {
      gate.held = true;
      while (ann.pendingCount() < 2) await new Promise((r) => setTimeout(r, 5));
    }
    return await real();
  });
  const others: TestUser[] = [];
  try {
    await ann.register();
    others.push(await testUser(ts, dir, "bob"));
    const bob = others[0]!;
    await bob.client.createGroup("g");
    await bob.client.invite("#g", ["ann"]);
    await ann.sync();

    const [first, second] = await Promise.all([ann.send("#g", "one"), ann.send("#g", "two")]);
    assert(gate.held, "the first delivery was held while the second was queued");
    assertEquals(ann.pendingCount(), 0, "nothing left queued");
    for (const m of [first, second]) {
      assertEquals(ann.findMessage("#g", m.messageId).status, "sent", m.body);
    }
    await bob.client.sync();
    assertEquals(bob.received(), ["one", "two"], "each shown once, in order");
  } finally {
    await ann.close().catch(() => {});
    for (const o of others) await o.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
