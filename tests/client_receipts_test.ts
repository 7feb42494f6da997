/**
 * Tests for src/client/receipts.ts on the real client store, and for the receipt content
 * kind on the wire: a receipt applies only to our own messages of its conversation (never
 * someone else's, never one of another conversation, never our own receipt), read implies
 * delivered, the earliest time is kept, the marks, and the bounds of a receipt.
 */
import { assertEquals, assertThrows } from "./_support/assert.ts";
import { applyReceipt, receiptMark, receiptState } from "../src/client/receipts.ts";
import { decodeContent, encodeContent } from "../src/client/content.ts";
import { uuidToString, uuidv7 } from "../src/client/ids.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import { UsageError } from "../src/errors.ts";
import { MAX_RECEIPT_TARGETS } from "../src/limits.ts";
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
