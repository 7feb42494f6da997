/**
 * Consent against a real server (QUIC on loopback, SQLite): a DM or an invitation from
 * someone who is not a contact is a request (nothing shown until accepted, the group state
 * kept current meanwhile), contacts are made by writing, inviting, sharing a group and
 * `join`, and a block makes the server drop the blocked user's messages and Welcomes.
 */
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import type { ClientEvent } from "../src/client/client.ts";
import { QpqError } from "../src/errors.ts";
import { connectServer } from "../src/client/connection.ts";

/** Messages waiting in every queue of the server (its health answer). */
async function queueDepth(ts: TestServer): Promise<number> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    return Number((await conn.call({ kind: "health" }, "health")).queueDepth);
  } finally {
    await conn.close();
  }
}

async function withUsers(
  names: string[],
  fn: (users: TestUser[], ts: TestServer) => Promise<void>,
): Promise<void> {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-consent-" });
  const users: TestUser[] = [];
  try {
    for (const n of names) users.push(await testUser(ts, dir, n, { acceptFrom: "contacts" }));
    await fn(users, ts);
  } finally {
    for (const u of users) await u.client.close().catch(() => {});
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Write to `peer` in the DM (opened first, as `qpq send --to` does). */
async function say(u: TestUser, peer: string, text: string): Promise<void> {
  await u.client.dm(peer);
  await u.client.send(`@${peer}`, text);
}

/** Everything but progress, as kind + conversation (+ body / from). */
function shown(events: ClientEvent[]): string[] {
  return events.flatMap((e) => {
    switch (e.kind) {
      case "message":
        return [`message ${e.conversation.name} ${e.message.sender}: ${e.message.body}`];
      case "request":
        return [`request ${e.conversation.name} from ${e.from} (${e.messages})`];
      case "joined":
        return [`joined ${e.conversation.name} by ${e.inviter}`];
      case "progress":
        return [];
      default:
        return [e.kind];
    }
  });
}

Deno.test("client: a stranger's DM is one request event until accepted, then every message in order", async () => {
  await withUsers(["bob", "mallory"], async ([bob, mallory]) => {
    await say(mallory!, "bob", "hi bob");
    await say(mallory!, "bob", "it is me");
    await say(mallory!, "bob", "answer!");
    await bob!.client.sync();
    // one event, counting all three (it counted the first alone until issue 12)
    assertEquals(shown(bob!.events), ["request @mallory from mallory (3)"]);
    assertEquals(bob!.client.listConversations().map((c) => c.name), []);
    assertEquals(
      bob!.client.requests().map((r) => [r.conversation.name, r.from, r.messages]),
      [["@mallory", "mallory", 3]],
    );
    const e = await assertRejects(
      () => Promise.resolve().then(() => bob!.client.history("@mallory")),
      QpqError,
    );
    assertEquals(e.code, "forbidden");
    bob!.events.length = 0;
    bob!.client.accept("mallory");
    assertEquals(shown(bob!.events), [
      "joined @mallory by mallory",
      "message @mallory mallory: hi bob",
      "message @mallory mallory: it is me",
      "message @mallory mallory: answer!",
    ]);
    assertEquals(bob!.client.requests(), []);
    assertEquals(bob!.client.store.consent("mallory"), "contact");
    // accepted: later messages show at once, and bob can answer
    await say(mallory!, "bob", "thanks");
    await bob!.client.sync();
    assertEquals(bob!.received().at(-1), "thanks");
    await say(bob!, "mallory", "welcome");
    await mallory!.client.sync();
    assertEquals(mallory!.received(), ["welcome"]);
  });
});

Deno.test("client: a group invitation from a stranger is kept current while pending and accepted later", async () => {
  await withUsers(["alice", "bob", "carol"], async ([alice, bob, carol]) => {
    await alice!.client.createGroup("x");
    await alice!.client.invite("#x", ["bob", "carol"]);
    await bob!.client.sync();
    await carol!.client.sync();
    assertEquals(shown(bob!.events), ["request #x from alice (0)"]);
    assertEquals(await bob!.client.selfUpdateDue(0), [], "a request sends nothing by itself");
    // carol accepts at once and writes; alice adds a commit; the group moves on meanwhile
    carol!.client.accept("#x");
    await carol!.client.send("#x", "carol here");
    await alice!.client.update("#x");
    await alice!.client.send("#x", "after the update");
    await bob!.client.sync();
    assertEquals(shown(bob!.events), ["request #x from alice (0)"], `nothing more shown`);
    assertEquals(bob!.client.requests().map((r) => r.messages), [2]);
    bob!.events.length = 0;
    bob!.client.accept("#x");
    assertEquals(shown(bob!.events), [
      "joined #x by alice",
      "message #x carol: carol here",
      "message #x alice: after the update",
    ]);
    // everyone agrees on the epoch: the pending state was kept current
    await carol!.client.sync();
    const views = [alice!, bob!, carol!].map((u) => u.client.epochInfo("#x"));
    assertEquals(views[1], views[0]);
    assertEquals(views[2], views[0]);
    // sharing the group made alice and carol bob's contacts: carol's DM shows at once
    assertEquals(bob!.client.store.consent("carol"), "contact");
    await say(carol!, "bob", "hello from carol");
    await bob!.client.sync();
    assertEquals(bob!.received().at(-1), "hello from carol");
    assertEquals(bob!.client.requests(), []);
  });
});

Deno.test("client: writing to someone makes them a contact; join accepts every request", async () => {
  await withUsers(["ann", "ben", "cat"], async ([ann, ben, cat]) => {
    await say(ann!, "ben", "hi ben"); // ben is ann's contact now
    await say(ben!, "ann", "hi ann"); // sends into ann's DM: accepts it on ben's side
    await ann!.client.sync();
    assertEquals(shown(ann!.events), ["message @ben ben: hi ann"]);
    assertEquals(ann!.client.requests(), []);
    // cat invites ann to a group and writes; ann's join accepts it like the old join did
    await cat!.client.createGroup("cats");
    await cat!.client.invite("#cats", ["ann"]);
    await cat!.client.send("#cats", "meow");
    ann!.events.length = 0;
    const joined = await ann!.client.join();
    assertEquals(joined.map((c) => c.name), []);
    assertEquals(shown(ann!.events), ["joined #cats by cat", "message #cats cat: meow"]);
    assertEquals(ann!.client.store.consent("cat"), "contact");
    // a request that was already pending is accepted by join too
    await ben!.client.createGroup("later");
    await ben!.client.invite("#later", ["cat"]);
    await cat!.client.sync();
    assertEquals(cat!.client.requests().map((r) => r.conversation.name), ["#later"]);
    assertEquals((await cat!.client.join()).map((c) => c.name), ["#later"]);
    assertEquals(cat!.client.requests(), []);
  });
});

Deno.test("client: a block makes the server drop the blocked user's DMs and invitations: the blocker's queue stays empty", async () => {
  await withUsers(["bob", "mallory", "alice"], async ([bob, mallory, alice], ts) => {
    await say(mallory!, "bob", "spam 1");
    await bob!.client.sync();
    assertEquals(bob!.client.requests().length, 1);
    assertEquals(await bob!.client.block("@mallory"), 1, "the pending DM is hidden");
    assertEquals(bob!.client.requests(), []);
    assertEquals(bob!.client.listBlocked(), ["mallory"]);
    await mallory!.client.sync();
    const before = await queueDepth(ts); // every queue, bob's included, is empty now
    // the sender is not told: every send succeeds
    for (let i = 0; i < 5; i++) await say(mallory!, "bob", `spam ${i + 2}`);
    await mallory!.client.createGroup("trap");
    await mallory!.client.invite("#trap", ["bob"]);
    await mallory!.client.send("#trap", "in the trap");
    assertEquals(await queueDepth(ts), before, "nothing reached bob's queue");
    bob!.events.length = 0;
    await bob!.client.sync();
    assertEquals(shown(bob!.events), []);
    assertEquals(bob!.client.requests(), []);
    // others are not affected
    await say(alice!, "bob", "hi bob");
    await bob!.client.sync();
    assertEquals(shown(bob!.events), ["request @alice from alice (1)"]);
    // in a group both share, a blocked member's messages are dropped, commits are not
    await alice!.client.createGroup("both");
    await alice!.client.invite("#both", ["bob", "mallory"]);
    await bob!.client.join();
    await mallory!.client.join();
    bob!.events.length = 0;
    await mallory!.client.send("#both", "you cannot block me here");
    await mallory!.client.update("#both");
    await alice!.client.send("#both", "alice in both");
    await bob!.client.sync();
    assertEquals(shown(bob!.events), ["message #both alice: alice in both"]);
    assertEquals(bob!.client.epochInfo("#both"), alice!.client.epochInfo("#both"));
    // unblocked: told what the block dropped (5 DMs, the trap's message and the one in
    // #both), and asking to be added to #trap (its Welcome was dropped); mallory shares
    // #both with bob, so she is a contact again (issue 21): her new invitation is joined
    assertEquals(await bob!.client.unblock("mallory"), { dropped: 7, repairing: 1 });
    assertEquals(bob!.client.listBlocked(), []);
    assertEquals(bob!.client.store.consent("mallory"), "contact");
    await mallory!.client.createGroup("again");
    await mallory!.client.invite("#again", ["bob"]);
    await bob!.client.sync();
    assertEquals(bob!.client.requests().map((r) => r.conversation.name), ["@mallory"]);
    assert(bob!.client.listConversations().some((c) => c.name === "#again"));
  });
});

Deno.test("client: opening the DM of a pending request accepts it and shows what it held", async () => {
  await withUsers(["bob", "carl"], async ([bob, carl]) => {
    await say(carl!, "bob", "are you there?");
    await bob!.client.sync();
    assertEquals(shown(bob!.events), ["request @carl from carl (1)"]);
    bob!.events.length = 0;
    const conv = await bob!.client.dm("carl");
    assertEquals([conv.name, conv.requestFrom], ["@carl", undefined]);
    assertEquals(shown(bob!.events), [
      "joined @carl by carl",
      "message @carl carl: are you there?",
    ]);
    assertEquals(bob!.client.requests(), []);
    assertEquals(bob!.client.listConversations().map((c) => c.name), ["@carl"]);
  });
});

Deno.test("client: a request whose group state breaks reports nothing until accepted", async () => {
  await withUsers(["bob", "dan"], async ([bob, dan]) => {
    await dan!.client.createGroup("y");
    await dan!.client.invite("#y", ["bob"]);
    await bob!.client.sync();
    const conv = bob!.client.conversation("#y");
    const rec = bob!.client.store.group(conv.channelId!)!;
    bob!.client.store.putGroup({ ...rec, state: rec.state.slice(0, 40) }); // damaged
    bob!.events.length = 0;
    await dan!.client.send("#y", "can you read this?");
    await bob!.client.sync();
    assertEquals(shown(bob!.events), [], "no broken warning, no unreadable line");
    assertEquals(bob!.client.requests().map((r) => [r.conversation.name, r.messages]), [["#y", 1]]);
    bob!.client.accept("#y");
    assertEquals(shown(bob!.events), ["joined #y by dan", "unreadable"]);
  });
});

Deno.test("client: what a user sent before being blocked, still queued, is never shown nor joined", async () => {
  await withUsers(["bob", "mallory"], async ([bob, mallory]) => {
    await say(mallory!, "bob", "queued before the block");
    await mallory!.client.createGroup("early");
    await mallory!.client.invite("#early", ["bob"]);
    await bob!.client.block("mallory"); // bob has not read his queue yet
    await bob!.client.sync();
    assertEquals(shown(bob!.events), []);
    assertEquals(bob!.client.requests(), []);
    assertEquals(bob!.client.store.listGroups(), [], "no Welcome of hers was joined");
    assertEquals(bob!.client.store.listConversations().filter((c) => c.kind !== "self"), []);
  });
});

Deno.test("client: block and DM refuse ourselves and a blocked peer with one-line errors", async () => {
  await withUsers(["bob", "mallory"], async ([bob]) => {
    await assertRejects(() => bob!.client.dm("nobody"), QpqError, "Unknown user nobody");
    assertEquals(bob!.client.store.consent("nobody"), undefined, "a failed dm makes no contact");
    await assertRejects(() => bob!.client.block("bob"), QpqError, "Cannot block yourself");
    await bob!.client.block("mallory");
    const e = await assertRejects(() => bob!.client.dm("mallory"), QpqError);
    assertEquals(e.message, "You blocked mallory: qpq unblock mallory first");
    const nobody = await assertRejects(() => bob!.client.block("nobody"), QpqError);
    assertEquals(nobody.code, "not_found");
    assert(
      (() => {
        try {
          bob!.client.accept("@mallory");
          return false;
        } catch (x) {
          return (x as QpqError).code === "not_found";
        }
      })(),
      "no request to accept",
    );
  });
});
