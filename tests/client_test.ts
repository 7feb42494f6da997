/**
 * QpqClient in process against a real server (QUIC on loopback, SQLite in a temp dir):
 * racing DM creation, a network failure during send, epoch conflicts, the leave flow, the
 * local notepad and KeyPackage refill. Local stores use cheap Argon2id parameters.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { KEY_PACKAGE_BATCH } from "../src/client/client.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import { type QpqError, UsageError } from "../src/errors.ts";
import { toHex } from "../src/bytes.ts";
import { NOTICE_KEY_PACKAGES } from "../src/wire/mod.ts";
import { DEFAULT_SUITE, SUITE_IDS } from "../src/mls/mod.ts";
import { startServerProcess } from "./_support/cli.ts";

const user = testUser;

/** A server, a temp dir for client states, and cleanup of both. */
async function withServer(fn: (ts: TestServer, dir: string) => Promise<void>): Promise<void> {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-client-" });
  try {
    await fn(ts, dir);
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function closeAll(...users: TestUser[]): Promise<void> {
  for (const u of users) await u.client.close();
}

/** A raw, logged-in connection with `u`'s session token (to look at the server directly). */
async function rawSession(ts: { addr: string; certPem: string }, u: TestUser) {
  const conn: ServerConnection = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  await conn.call({ kind: "resume", token: u.client.store.meta.sessionToken! }, "session");
  return conn;
}

async function health(ts: { addr: string; certPem: string }) {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    return await conn.call({ kind: "health" }, "health");
  } finally {
    await conn.close();
  }
}

async function group(owner: TestUser, name: string, ...others: TestUser[]): Promise<void> {
  await owner.client.createGroup(name);
  await owner.client.invite(`#${name}`, others.map((o) => o.client.username));
  for (const o of others) await o.client.sync();
}

Deno.test("QpqClient.dm called by both sides at once makes one MLS group; both can talk", async () => {
  await withServer(async (ts, dir) => {
    // a few pairs: the race goes either way (or not at all) depending on timing
    for (let i = 0; i < 3; i++) {
      const a = await user(ts, dir, `a${i}`);
      const b = await user(ts, dir, `b${i}`);
      const [ca, cb] = await Promise.all([a.client.dm(`b${i}`), b.client.dm(`a${i}`)]);
      assertEquals([ca.name, cb.name], [`@b${i}`, `@a${i}`]);
      await Promise.all([a.client.sync(), b.client.sync()]);
      const ea = a.client.epochInfo(`@b${i}`);
      const eb = b.client.epochInfo(`@a${i}`);
      assertEquals(ea, eb, "both sides in the same group and epoch");
      assertEquals(a.client.members(`@b${i}`).sort(), [`a${i}`, `b${i}`]);
      assertEquals(b.client.members(`@a${i}`).sort(), [`a${i}`, `b${i}`]);
      assertEquals(a.client.listConversations().filter((c) => c.kind === "dm").length, 1);
      assertEquals(b.client.listConversations().filter((c) => c.kind === "dm").length, 1);
      await a.client.send(`@b${i}`, "ping from a");
      await b.client.sync(); // a send does not receive first (issue 19: no round trip)
      await b.client.send(`@a${i}`, "pong from b");
      await a.client.sync();
      assertEquals(b.received(), ["ping from a"]);
      assertEquals(a.received(), ["pong from b"]);
      assertEquals(a.client.epochInfo(`@b${i}`), b.client.epochInfo(`@a${i}`));
      await closeAll(a, b);
    }
  });
});

// The server runs as a process here: in one process Deno.QuicEndpoint.close() does not
// release the UDP port (Deno 2.9.6), so a server cannot come back on the same port.
Deno.test("QpqClient.send during a network failure queues; flushOutbox after restart delivers once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-client-" });
  const dataDir = `${dir}/server`;
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const addr = server.addr;
  const ts = { addr, certPem: await Deno.readTextFile(`${dataDir}/server-cert.pem`) };
  try {
    const alice = await user(ts, dir, "alice", { timeoutMs: 1_500 });
    const bob = await user(ts, dir, "bob", { timeoutMs: 1_500 });
    await alice.client.dm("bob");
    await bob.client.sync();
    await server.stop();

    const m = await alice.client.send("@bob", "sent while the server was down");
    assertEquals(m.status, "pending");
    assertEquals(alice.client.pendingCount(), 1);
    assertEquals(alice.client.connected, false);
    // another attempt while still down keeps it queued, once
    assertEquals(await alice.client.flushOutbox(), 0);
    assertEquals(alice.client.pendingCount(), 1);

    server = await startServerProcess(dataDir, addr);
    assertEquals(await alice.client.flushOutbox(), 1);
    assertEquals(alice.client.pendingCount(), 0);
    assertEquals(await alice.client.flushOutbox(), 0);
    const out = alice.client.history("@bob");
    assertEquals(out.map((x) => [x.body, x.status]), [["sent while the server was down", "sent"]]);

    await bob.client.sync();
    await bob.client.sync();
    assertEquals(bob.received(), ["sent while the server was down"]);
    assertEquals(bob.client.history("@alice").length, 1);
    await bob.client.close(); // sends his delivered receipt first
    await alice.client.sync(); // which alice takes
    assertEquals((await health(ts)).queueDepth, 0, "the server queue is drained");
    await closeAll(alice);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("QpqClient commits racing at one epoch: one wins, the other re-syncs and retries", async () => {
  await withServer(async (ts, dir) => {
    const alice = await user(ts, dir, "alice");
    const bob = await user(ts, dir, "bob");
    const carol = await user(ts, dir, "carol");
    await group(alice, "team", bob, carol);
    const start = alice.client.epochInfo("#team").epoch;
    for (let round = 0; round < 2; round++) {
      await Promise.all([bob.client.update("#team"), carol.client.update("#team")]);
    }
    await Promise.all([alice, bob, carol].map((u) => u.client.sync()));
    const infos = [alice, bob, carol].map((u) => u.client.epochInfo("#team"));
    assertEquals(infos[0]!.epoch, start + 4n, "all four commits applied");
    assertEquals(infos[1], infos[0]);
    assertEquals(infos[2], infos[0]);
    // the group still works after the retries
    await carol.client.send("#team", "after the race");
    await Promise.all([alice, bob].map((u) => u.client.sync()));
    assertEquals(alice.received(), ["after the race"]);
    assertEquals(bob.received(), ["after the race"]);
    await closeAll(alice, bob, carol);
  });
});

Deno.test("QpqClient.leave: another member's next sync commits the removal; the conversation is gone", async () => {
  await withServer(async (ts, dir) => {
    const alice = await user(ts, dir, "alice");
    const bob = await user(ts, dir, "bob");
    const carol = await user(ts, dir, "carol");
    await group(alice, "team", bob, carol);
    await bob.client.send("#team", "before carol leaves");
    // asked, not done: MLS lets nobody commit their own removal (issue 12)
    assertEquals(await carol.client.leave("#team"), "asked");
    assert(!carol.client.listConversations().some((c) => c.name === "#team"));
    assertThrows(
      () => carol.client.members("#team"),
      UsageError,
      "You asked to leave #team: waiting for another member to commit it",
    );
    await assertRejects(() => carol.client.send("#team", "still here?"), UsageError);

    const before = alice.client.epochInfo("#team").epoch;
    await alice.client.sync(); // processes the proposal, then commits it
    assertEquals(alice.client.members("#team").sort(), ["alice", "bob"]);
    assertEquals(alice.client.epochInfo("#team").epoch, before + 1n);
    await bob.client.sync(); // gets the proposal and alice's commit: nothing left to commit
    assertEquals(bob.client.members("#team").sort(), ["alice", "bob"]);
    assertEquals(bob.client.epochInfo("#team"), alice.client.epochInfo("#team"));
    await alice.client.sync();
    assertEquals(alice.client.epochInfo("#team").epoch, before + 1n, "one removal commit");

    await alice.client.send("#team", "carol is gone");
    await bob.client.sync();
    await carol.client.sync();
    assertEquals(bob.received(), ["carol is gone"]);
    assertEquals(carol.received(), ["before carol leaves"]);
    assert(!carol.client.listConversations().some((c) => c.name === "#team"));
    assertEquals(
      carol.events.flatMap((e) => e.kind === "left" ? [`${e.conversation.name} by ${e.by}`] : []),
      ["#team by alice"],
      "carol is told when her leave is done",
    );
    await closeAll(alice, bob, carol);
  });
});

Deno.test("QpqClient self-DM notepad stays local: no connection, no server queue", async () => {
  await withServer(async (ts, dir) => {
    const alice = await user(ts, dir, "alice");
    await alice.client.disconnect();
    const h0 = await health(ts);
    const conv = await alice.client.dm("alice");
    assertEquals([conv.kind, conv.name], ["self", "@alice"]);
    await alice.client.send("@alice", "note to self: buy milk");
    await alice.client.send("alice", "second note");
    assertEquals(alice.client.connected, false, "the notepad never connects");
    assertEquals(alice.client.pendingCount(), 0);
    assertEquals(alice.client.history("@alice").map((m) => m.body), [
      "note to self: buy milk",
      "second note",
    ]);
    assertEquals(alice.client.members("@alice"), ["alice"]);
    const h1 = await health(ts);
    assertEquals(h1.queueDepth, h0.queueDepth);
    assertEquals(h1.queueDepth, 0);
    await closeAll(alice);
  });
});

Deno.test("QpqClient refills its KeyPackages on the server after they run low", async () => {
  await withServer(async (ts, dir) => {
    const alice = await user(ts, dir, "alice");
    const bob = await user(ts, dir, "bob");
    const count = async () => {
      const conn = await rawSession(ts, alice);
      try {
        // the default suite's stock (the client keeps one per supported suite)
        return (await conn.call(
          { kind: "countKeyPackagesForSuite", cipherSuite: SUITE_IDS[DEFAULT_SUITE] },
          "keyPackageCount",
        )).count;
      } finally {
        await conn.close();
      }
    };
    assertEquals(await count(), KEY_PACKAGE_BATCH);
    // bob's raw session takes 16 of alice's KeyPackages (as 16 invitations would)
    const raw = await rawSession(ts, bob);
    try {
      for (let i = 0; i < KEY_PACKAGE_BATCH - 4; i++) {
        await raw.call({ kind: "fetchKeyPackage", username: "alice" }, "keyPackage");
      }
    } finally {
      await raw.close();
    }
    assertEquals(await count(), 4);
    // a real invitation takes one more; alice's next sync joins and tops the stock up
    await bob.client.dm("alice");
    assertEquals(await count(), 3);
    await alice.client.sync();
    assertEquals(await count(), KEY_PACKAGE_BATCH);
    assertEquals(alice.client.members("@bob").sort(), ["alice", "bob"]);
    // a sync with plenty left does not upload more
    await bob.client.send("@alice", "hi");
    await alice.client.sync();
    assertEquals(await count(), KEY_PACKAGE_BATCH);
    await closeAll(alice, bob);
  });
});

Deno.test("QpqClient refills and rotates its last resort when the server says its KeyPackages were drained", async () => {
  const ts = await startTestServer({ file: { key_package_fetches_per_target: 25 } });
  const dir = await Deno.makeTempDir({ prefix: "qpq-client-" });
  try {
    const alice = await user(ts, dir, "alice");
    const mallory = await user(ts, dir, "mallory");
    const lastResorts = () =>
      alice.client.store.listKeyPackages().filter((k) => k.lastResort && k.suite === DEFAULT_SUITE)
        .map((k) => k.ref);
    const before = lastResorts();
    assertEquals(before.length, 1);
    // mallory drains alice: the batch, then the last resort again and again, then refused
    const raw = await rawSession(ts, mallory);
    const got: string[] = [];
    let refused = "";
    for (let i = 0; i < 30 && refused === ""; i++) {
      try {
        const kp = await raw.call({ kind: "fetchKeyPackage", username: "alice" }, "keyPackage");
        got.push(toHex(kp.data));
      } catch (e) {
        refused = (e as QpqError).code;
      }
    }
    await raw.close();
    assertEquals(got.length, 25);
    assertEquals(refused, "rate_limited");
    assertEquals(new Set(got.slice(KEY_PACKAGE_BATCH)).size, 1, "the last resort, repeated");
    // alice's queue holds one notice (not one per fetch), from the server, with no channel
    const look = await rawSession(ts, alice);
    const queued = await look.call({ kind: "fetch", afterSeq: 0, limit: 500 }, "messages");
    await look.close();
    const notices = queued.messages.filter((m) => m.serverNotice === NOTICE_KEY_PACKAGES);
    assertEquals(notices.length, 1);
    assertEquals(notices[0]!.channelId.length, 0);
    assertEquals(notices[0]!.sender, "alice");
    // alice's next sync refills the batch and replaces the last resort that was handed out
    await alice.client.sync();
    const count = async () => {
      const conn = await rawSession(ts, alice);
      try {
        return (await conn.call(
          { kind: "countKeyPackagesForSuite", cipherSuite: SUITE_IDS[DEFAULT_SUITE] },
          "keyPackageCount",
        )).count;
      } finally {
        await conn.close();
      }
    };
    assertEquals(await count(), KEY_PACKAGE_BATCH);
    const after = lastResorts();
    assertEquals(after.length, 2, "a new last resort; the old private part kept for Welcomes");
    assert(after.some((r) => !before.includes(r)));
    assertEquals(alice.warnings(), []);
    await closeAll(alice, mallory);
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
