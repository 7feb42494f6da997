/**
 * Tests for src/client/receipts.ts on the real client store, and for the receipt content
 * kind on the wire: a receipt applies only to our own messages of its conversation (never
 * someone else's, never one of another conversation, never our own receipt), read implies
 * delivered, the earliest time is kept, the marks, and the bounds of a receipt.
 */
import { assert, assertEquals, assertThrows } from "./_support/assert.ts";
import {
  applyReceipt,
  narrowSend,
  receiptMark,
  receiptRecipients,
  receiptState,
} from "../src/client/receipts.ts";
import { decodeContent, encodeContent } from "../src/client/content.ts";
import { uuidToString, uuidv7 } from "../src/client/ids.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import { UsageError } from "../src/errors.ts";
import {
  DELIVERED_RECEIPT_EVERY_MS,
  MAX_NARROW_SENDS,
  MAX_RECEIPT_TARGETS,
} from "../src/limits.ts";
import { testUser } from "./_support/clients.ts";
import { startTestServer } from "./_support/server.ts";
import {
  type Conversation,
  MemoryLocalState,
  type StoredMessage,
} from "../src/store/client/mod.ts";

const T0 = 1_700_000_000_000;

function setup() {
  const kp = IdentityKeyPair.generate();
  const s = new MemoryLocalState({
    username: "alice",
    server: "localhost:4433",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  });
  const team: Conversation = { id: "team", kind: "group", name: "#team", createdAt: T0 };
  const other: Conversation = { id: "other", kind: "group", name: "#other", createdAt: T0 };
  s.upsertConversation(team);
  s.upsertConversation(other);
  const msg = (sender: string, direction: "in" | "out", conv = team): StoredMessage => {
    const m: StoredMessage = {
      conversationId: conv.id,
      messageId: uuidToString(uuidv7()),
      sender,
      body: "x",
      sentAt: T0,
      receivedAt: T0,
      direction,
      status: direction === "out" ? "sent" : "delivered",
    };
    s.addMessage(m);
    return m;
  };
  return { s, team, other, msg };
}

Deno.test("applyReceipt: only our own messages of this conversation; read implies delivered", () => {
  const { s, team, other, msg } = setup();
  const mine = msg("alice", "out");
  const theirs = msg("carol", "in");
  const elsewhere = msg("alice", "out", other);
  const ids = [mine.messageId, theirs.messageId, elsewhere.messageId];
  assertEquals(applyReceipt(s, team, "bob", ids, false, T0 + 1), 1);
  assertEquals(s.getMessage(theirs.messageId)!.receipts, undefined, "not ours: ignored");
  assertEquals(s.getMessage(elsewhere.messageId)!.receipts, undefined, "other conversation");
  assertEquals(s.getMessage(mine.messageId)!.receipts, [{ user: "bob", deliveredAt: T0 + 1 }]);
  assertEquals(applyReceipt(s, team, "alice", [mine.messageId], true, T0 + 2), 0, "our own");
  assertEquals(applyReceipt(s, team, "bob", [mine.messageId], true, T0 + 3), 1);
  assertEquals(applyReceipt(s, team, "bob", [mine.messageId], true, T0 + 9), 0, "earliest kept");
  assertEquals(s.getMessage(mine.messageId)!.receipts, [
    { user: "bob", deliveredAt: T0 + 1, readAt: T0 + 3 },
  ]);
  assertEquals(applyReceipt(s, team, "carol", [mine.messageId], true, T0 + 4), 1);
  const m = s.getMessage(mine.messageId)!;
  assertEquals(m.receipts![1], { user: "carol", deliveredAt: T0 + 4, readAt: T0 + 4 });
  assertEquals(receiptState(m, ["bob", "carol"]), "read");
  assertEquals(receiptState(m, ["bob", "carol", "dave"]), "sent");
  assertEquals(receiptMark("read"), "✓✓✓");
  assertEquals(
    receiptMark(receiptState({ ...m, receipts: [{ user: "bob", deliveredAt: 1 }] }, ["bob"])),
    "✓✓",
  );
  assertEquals(receiptMark(receiptState({ ...m, status: "pending" }, ["bob"])), "");
});

Deno.test("receipt content: many ids in one, bounded", () => {
  const ids = Array.from({ length: MAX_RECEIPT_TARGETS }, () => uuidToString(uuidv7()));
  const bytes = encodeContent({
    messageId: uuidv7(),
    sentAtMs: T0,
    body: { kind: "receipt", targets: ids, read: true },
  });
  assertEquals(decodeContent(bytes).body, { kind: "receipt", targets: ids, read: true });
  console.log(`a receipt for ${ids.length} messages: ${bytes.length} bytes of content`);
  assertThrows(
    () =>
      encodeContent({
        messageId: uuidv7(),
        sentAtMs: T0,
        body: { kind: "receipt", targets: [...ids, ids[0]!], read: false },
      }),
    UsageError,
  );
  assertThrows(
    () =>
      encodeContent({
        messageId: uuidv7(),
        sentAtMs: T0,
        body: { kind: "receipt", targets: [], read: false },
      }),
    UsageError,
  );
});

Deno.test("receiptRecipients: the authors named, still members, not us; everyone when that is all", () => {
  const { s, msg } = setup();
  const fromCarol = msg("carol", "in");
  const fromDave = msg("dave", "in");
  const fromGone = msg("erin", "in");
  const mine = msg("alice", "out");
  const members = ["alice", "bob", "carol", "dave"];
  const ids = (...ms: StoredMessage[]) => ms.map((m) => m.messageId);
  assertEquals(receiptRecipients(s, members, ids(fromCarol), "alice"), ["carol"]);
  assertEquals(
    receiptRecipients(s, members, ids(fromDave, fromCarol, fromGone, mine), "alice"),
    ["carol", "dave"],
    "sorted, without a former member or us",
  );
  assertEquals(receiptRecipients(s, ["alice", "carol"], ids(fromCarol), "alice"), [], "a DM");
  assertEquals(
    receiptRecipients(s, members, ["00000000-0000-0000-0000-000000000000"], "alice"),
    [],
  );
});

Deno.test("narrowSend: counts sends that skip members per epoch, and the bound makes one go to everyone", () => {
  let r: { narrowSends?: { epoch: number; count: number } } = {};
  for (let i = 1; i < MAX_NARROW_SENDS; i++) {
    r = narrowSend(r, 7, true);
    assertEquals(r.narrowSends, { epoch: 7, count: i });
  }
  // the next one would leave someone MAX_NARROW_SENDS generations behind: to everyone
  r = narrowSend(r, 7, true);
  assertEquals(r.narrowSends, { epoch: 7, count: 0 });
  assertEquals(narrowSend({ narrowSends: { epoch: 7, count: 5 } }, 7, false).narrowSends, {
    epoch: 7,
    count: 0,
  }, "a send to everyone clears it");
  assertEquals(narrowSend({ narrowSends: { epoch: 7, count: 5 } }, 8, true).narrowSends, {
    epoch: 8,
    count: 1,
  }, "a new epoch starts its ratchets again");
  // the bound leaves room under ts-mls's limit on generations a receiver skips
  assert(MAX_NARROW_SENDS < 1000);
});

/** Wait until `ok()` holds (polling), or fail after `ms`. */
async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("QpqClient sends delivered receipts of pushed messages at most once per interval per conversation, also when synced; close sends what is held", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-receipts-" });
  let clock = Date.now(); // bob's clock: the interval passes when the test says so
  try {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob", { now: () => clock });
    await alice.client.createGroup("duo");
    await alice.client.invite("#duo", ["bob"]);
    await bob.client.sync();
    await bob.client.subscribe();
    /** Whether alice's message `text` has bob's delivered receipt, after her sync. */
    const has = async (text: string) => {
      await alice.client.sync();
      const m = alice.client.history("#duo", 20).find((h) => h.body === text)!;
      return (m.receipts ?? []).some((r) => r.user === "bob" && r.deliveredAt !== undefined);
    };
    /** Whether it gets it within a few seconds (a receipt sent is on its way). */
    const delivered = async (text: string) => {
      for (let i = 0; i < 50; i++) {
        if (await has(text)) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    await alice.client.send("#duo", "one");
    await until(() => bob.client.receiptsSent === 1, "the first receipt, sent at once");
    assert(await delivered("one"));
    // pushed within the interval: held, then one receipt names both
    await alice.client.send("#duo", "two");
    await alice.client.send("#duo", "three");
    await until(() => bob.received().length === 3, "two and three");
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(bob.client.receiptsSent, 1, "held while the interval runs");
    assert(!(await has("two")));
    clock += DELIVERED_RECEIPT_EVERY_MS;
    await until(() => bob.client.receiptsSent === 2, "one receipt for both when it is due");
    assert(await delivered("two") && await delivered("three"));
    // a sync within the interval holds it as well (a client syncing in a loop composed,
    // sealed and sent one receipt per sync), and sends it once the interval has passed
    await alice.client.send("#duo", "four");
    await until(() => bob.received().length === 4, "four");
    assertEquals(bob.client.receiptsSent, 2);
    for (let i = 0; i < 3; i++) await bob.client.sync();
    assertEquals(bob.client.receiptsSent, 2, "a sync holds it while the interval runs");
    clock += DELIVERED_RECEIPT_EVERY_MS;
    await bob.client.sync();
    assertEquals(bob.client.receiptsSent, 3);
    assert(await delivered("four"));
    // and so does close
    await alice.client.send("#duo", "five");
    await until(() => bob.received().length === 5, "five");
    assertEquals(bob.client.receiptsSent, 3);
    await bob.client.close();
    assert(await delivered("five"));
    await alice.client.close();
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
