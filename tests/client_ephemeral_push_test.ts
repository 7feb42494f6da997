/**
 * A push of an ephemeral message (seq 0, issue 21 typing) reaches a QpqClient that does not
 * handle ephemeral messages: it is skipped as a repeat (seq ≤ cursor), never acked, never
 * stored or shown, and the queue goes on; the server's queues hold nothing of it.
 */
import { assertEquals } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { testUser } from "./_support/clients.ts";
import { rawUser } from "./_support/raw_user.ts";
import { connectServer } from "../src/client/connection.ts";
import { randomBytes, utf8 } from "../src/bytes.ts";

async function queueDepth(ts: TestServer): Promise<number> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    return Number((await conn.call({ kind: "health" }, "health")).queueDepth);
  } finally {
    await conn.close();
  }
}

Deno.test("QpqClient skips a pushed ephemeral message (seq 0) and the server stores none", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-ephemeral-" });
  try {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    const mallory = await rawUser(ts, "mallory");
    try {
      await alice.client.dm("bob");
      await alice.client.send("@bob", "first");
      await bob.client.sync();
      await bob.client.subscribe();
      const before = await queueDepth(ts);
      const ch = (await mallory.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
      const r = await mallory.call({
        kind: "enqueue",
        channelId: ch,
        messageId: randomBytes(16),
        payload: utf8("not even MLS"),
        messageKind: "application",
        epoch: 0,
        recipients: [],
        ephemeral: true,
      }, "enqueued");
      assertEquals(r.recipients, 1, "bob's live subscription got it");
      assertEquals(await queueDepth(ts), before, "nothing queued");
      await alice.client.send("@bob", "second");
      const deadline = Date.now() + 5000;
      while (!bob.received().includes("second") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(bob.received(), ["first", "second"]);
      assertEquals(bob.warnings(), []);
    } finally {
      await mallory.close();
      for (const u of [alice, bob]) await u.client.close().catch(() => {});
    }
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
