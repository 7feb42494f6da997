/**
 * A queued message leaves only on its group's current epoch (issue 20, found by the
 * simulation): one queued offline while the group moved four epochs on and a member's leave
 * proposal waits for a commit must go out encrypted in the epoch the members are at — the
 * proposal committed first — or wait; never as it was (members keep three past epochs'
 * keys: it would arrive "MLS message epoch is too old", an unreadable placeholder). Real
 * server over QUIC, real clients.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import { linkedClient, type TestUser, testUser } from "./_support/clients.ts";
import type { ClientEvent, QpqClient } from "../src/client/client.ts";
import { TransportError } from "../src/errors.ts";

const TEXT = "hello from the train";

/** What the sender's network lets through. */
interface Network {
  /** No connection at all. */
  offline: boolean;
  /** Commits are lost on the way (everything else goes through). */
  commitsLost: boolean;
  /** Enqueue requests ann made (counted by the link). */
  enqueues?: number;
}

/**
 * ann (behind `net`), bob and cat in bob's group #g; ann queues {@link TEXT} offline; bob
 * commits four updates; cat asks to leave (the proposal waits: nobody synced since). Then
 * `fn` runs with ann back online (`offline` false) and the epoch ann's message was queued in.
 */
async function queuedBehind(
  net: Network,
  fn: (ann: QpqClient, bob: TestUser, annEvents: ClientEvent[], queuedAt: bigint) => Promise<void>,
): Promise<void> {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-queued-" });
  const lost = () => Promise.reject(new TransportError("network down (test)"));
  // offline the connection attempt fails at once (no timeout to wait)
  const { client: ann, events } = await linkedClient(
    ts,
    dir,
    "ann",
    (req, real) => {
      if (req.kind === "enqueue") net.enqueues = (net.enqueues ?? 0) + 1;
      return net.commitsLost && req.kind === "commit" ? lost() : real();
    },
    () => net.offline,
  );
  const others: TestUser[] = [];
  try {
    await ann.register();
    others.push(await testUser(ts, dir, "bob"), await testUser(ts, dir, "cat"));
    const [bob, cat] = others;
    await bob!.client.createGroup("g");
    await bob!.client.invite("#g", ["ann", "cat"]);
    await ann.sync();
    await cat!.client.sync();
    const queuedAt = ann.epochInfo("#g").epoch;

    net.offline = true;
    await ann.disconnect();
    assertEquals((await ann.send("#g", TEXT)).status, "pending");
    assertEquals(ann.pendingCount(), 1, "queued while offline");
    for (let i = 0; i < 4; i++) await bob!.client.update("#g");
    assertEquals(await cat!.client.leave("#g"), "asked");
    assertEquals(bob!.client.epochInfo("#g").epoch, queuedAt + 4n);

    net.offline = false;
    await fn(ann, bob!, events, queuedAt);
    assert(!events.some((e) => e.kind === "broken"));
    assertEquals(bob!.events.filter((e) => e.kind === "unreadable"), [], "nothing unreadable");
    assertEquals(ann.pendingCount(), 0, "nothing left queued");
  } finally {
    await ann.close().catch(() => {});
    for (const o of others) await o.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** bob was shown ann's message once and keeps it once. */
function readOnce(bob: TestUser): void {
  const unreadable = bob.events.flatMap((e) => e.kind === "unreadable" ? [e.reason] : []);
  assertEquals(unreadable, [], "bob, four epochs ahead, can read it");
  assertEquals(bob.received(), [TEXT], "shown once");
  const kept = bob.client.history("#g").filter((m) => m.direction === "in");
  assertEquals(kept.map((m) => [m.sender, m.body]), [["ann", TEXT]]);
}

Deno.test("client: a message queued before the group moved on while a leave waits is sent after the leave is committed, in the current epoch", async () => {
  await queuedBehind({ offline: false, commitsLost: false }, async (ann, bob, _, queuedAt) => {
    assertEquals(await ann.flushOutbox(), 1);
    assertEquals(ann.pendingCount(), 0);
    const mine = ann.history("#g").filter((m) => m.direction === "out");
    assertEquals(mine.map((m) => [m.body, m.status]), [[TEXT, "sent"]]);
    await bob.client.sync();
    readOnce(bob);
    // ann committed cat's leave first (MLS encrypts nothing while a proposal waits)
    assertEquals(ann.epochInfo("#g").epoch, queuedAt + 5n);
    assertEquals(ann.members("#g").sort(), ["ann", "bob"]);
    assertEquals(ann.epochInfo("#g"), bob.client.epochInfo("#g"));
    assertEquals(bob.client.members("#g").sort(), ["ann", "bob"]);
  });
});

Deno.test("client: a message queued before the group moved on waits while the waiting leave cannot be committed, then goes out once", async () => {
  const net: Network = { offline: false, commitsLost: true };
  await queuedBehind(net, async (ann, bob, _, queuedAt) => {
    // the leave cannot be committed: the message is held, not sent in the epoch it was made
    const before = net.enqueues ?? 0;
    assertEquals(await ann.flushOutbox(), 0, "held, not sent in the epoch it was made");
    assertEquals(net.enqueues ?? 0, before, "held by the client: not even offered to the server");
    assertEquals(ann.pendingCount(), 1);
    await bob.client.sync(); // bob commits cat's leave meanwhile
    assertEquals(bob.received(), [], "nothing reached bob");
    net.commitsLost = false;
    // ann's kept commit of the leave lost the race to bob's; ann follows bob's, then sends
    assertEquals(await ann.flushOutbox(), 1);
    assertEquals(ann.pendingCount(), 0);
    assertEquals(ann.epochInfo("#g").epoch, queuedAt + 5n);
    await bob.client.sync();
    readOnce(bob);
    assertEquals(ann.epochInfo("#g"), bob.client.epochInfo("#g"));
  });
});

// Issue 19: a send makes no sync round trip first; it leaves on the epoch the sender has.
// The server refuses an application message of an epoch its channel has left
// (`epoch_conflict`), so a sender one epoch behind (bob added dan since) catches up, encrypts
// it again and sends it: dan, added in the new epoch, holds no key of the old one and would
// otherwise see only "MLS message epoch is too old".
Deno.test("client: a sender one epoch behind sends without syncing first and every current member reads it", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-behind-" });
  const users: TestUser[] = [];
  try {
    for (const n of ["ann", "bob", "dan"]) users.push(await testUser(ts, dir, n));
    const [ann, bob, dan] = users as [TestUser, TestUser, TestUser];
    await bob.client.createGroup("g");
    await bob.client.invite("#g", ["ann"]);
    await ann.client.sync();
    const before = ann.client.epochInfo("#g").epoch;
    await bob.client.invite("#g", ["dan"]); // ann does not hear of it (no sync, no push)
    await dan.client.sync();
    assertEquals(bob.client.epochInfo("#g").epoch, before + 1n);
    assertEquals(ann.client.epochInfo("#g").epoch, before, "ann is one epoch behind");

    await ann.client.send("#g", TEXT);
    assertEquals(ann.client.pendingCount(), 0, "sent, nothing left queued");
    assertEquals(ann.client.epochInfo("#g"), bob.client.epochInfo("#g"), "ann caught up");
    assertEquals(ann.warnings(), [], "catching up is no warning");
    for (const u of [bob, dan]) {
      await u.client.sync();
      const unreadable = u.events.flatMap((e) => e.kind === "unreadable" ? [e.reason] : []);
      assertEquals(unreadable, [], `${u.name} can read it`);
      assertEquals(u.received(), [TEXT], `${u.name} was shown it once`);
    }
    const mine = ann.client.history("#g").filter((m) => m.direction === "out");
    assertEquals(mine.map((m) => [m.body, m.status]), [[TEXT, "sent"]]);
  } finally {
    for (const u of users) await u.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
