/**
 * Tests for src/client/changes.ts (reactions, edits, deletions applied to a stored message)
 * on the real client store, and for the content kinds on the wire: who may change what,
 * in which conversation, later wins, every count and size bounded.
 */
import { assertEquals, assertThrows } from "./_support/assert.ts";
import { applyChange, reactionCounts } from "../src/client/changes.ts";
import { decodeContent, encodeContent } from "../src/client/content.ts";
import { uuidToString, uuidv7 } from "../src/client/ids.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import { UsageError, ValidationError } from "../src/errors.ts";
import { MAX_REACTIONS_PER_MESSAGE } from "../src/limits.ts";
import {
  type Conversation,
  MemoryLocalState,
  type StoredMessage,
} from "../src/store/client/mod.ts";
import { checkReaction } from "../src/wire/mod.ts";

const T0 = 1_700_000_000_000;

function setup() {
  const kp = IdentityKeyPair.generate();
  const s = new MemoryLocalState({
    username: "bob",
    server: "localhost:4433",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  });
  const team: Conversation = { id: "team", kind: "group", name: "#team", createdAt: T0 };
  const other: Conversation = { id: "other", kind: "group", name: "#other", createdAt: T0 };
  s.upsertConversation(team);
  s.upsertConversation(other);
  const m: StoredMessage = {
    conversationId: team.id,
    messageId: uuidToString(uuidv7(T0)),
    sender: "alice",
    body: "the plan",
    sentAt: T0,
    receivedAt: T0,
    direction: "in",
    status: "delivered",
  };
  s.addMessage(m);
  return { s, team, other, m };
}

Deno.test("applyChange: only the author (the MLS sender) edits or deletes; anyone reacts", () => {
  const { s, team, m } = setup();
  const edit = { kind: "edit" as const, target: m.messageId, text: "forged" };
  assertEquals(applyChange(s, team, "mallory", edit, T0 + 1), {
    kind: "refused",
    why: "not their message",
  });
  assertEquals(
    applyChange(s, team, "mallory", { kind: "deletion", target: m.messageId }, T0 + 2).kind,
    "refused",
  );
  assertEquals(s.getMessage(m.messageId)!.body, "the plan", "never applied");
  assertEquals(
    applyChange(s, team, "alice", { ...edit, text: "the new plan" }, T0 + 3).kind,
    "applied",
  );
  assertEquals(s.getMessage(m.messageId)!.body, "the new plan");
  assertEquals(s.getMessage(m.messageId)!.editedAt, T0 + 3);
  const react = { kind: "reaction" as const, target: m.messageId, emoji: "👍" };
  assertEquals(applyChange(s, team, "mallory", react, T0 + 4).kind, "applied");
  assertEquals(reactionCounts(s.getMessage(m.messageId)!), [{ emoji: "👍", count: 1 }]);
});

Deno.test("applyChange: a change of a message of another conversation, or unknown, is dropped", () => {
  const { s, other, m } = setup();
  for (
    const c of [
      { kind: "edit" as const, target: m.messageId, text: "x" },
      { kind: "deletion" as const, target: m.messageId },
      { kind: "reaction" as const, target: m.messageId, emoji: "👍" },
    ]
  ) {
    assertEquals(applyChange(s, other, "alice", c, T0 + 1).kind, "unknown");
  }
  const unknown = { kind: "deletion" as const, target: uuidToString(uuidv7()) };
  assertEquals(applyChange(s, other, "alice", unknown, T0 + 1).kind, "unknown");
  const kept = s.getMessage(m.messageId)!;
  assertEquals([kept.body, kept.deleted, kept.reactions], ["the plan", undefined, undefined]);
});

Deno.test("applyChange: later wins by the sender's clock; a deletion is final", () => {
  const { s, team, m } = setup();
  const react = (emoji: string, at: number, who = "carol") =>
    applyChange(s, team, who, { kind: "reaction", target: m.messageId, emoji }, at).kind;
  assertEquals(react("🎉", T0 + 10), "applied");
  assertEquals(react("👍", T0 + 5), "unchanged", "an older one delivered late");
  assertEquals(react("", T0 + 11), "applied", "withdrawn");
  assertEquals(react("👍", T0 + 10), "unchanged", "older than the withdrawal");
  assertEquals(reactionCounts(s.getMessage(m.messageId)!), []);
  const edit = (text: string, at: number) =>
    applyChange(s, team, "alice", { kind: "edit", target: m.messageId, text }, at).kind;
  assertEquals(edit("two", T0 + 20), "applied");
  assertEquals(edit("one", T0 + 15), "unchanged");
  assertEquals(s.getMessage(m.messageId)!.body, "two");
  assertEquals(
    applyChange(s, team, "alice", { kind: "deletion", target: m.messageId }, T0 + 30).kind,
    "applied",
  );
  const gone = s.getMessage(m.messageId)!;
  assertEquals([gone.body, gone.deleted, gone.editedAt, gone.reactions], [
    "",
    true,
    undefined,
    undefined,
  ]);
  assertEquals(edit("back", T0 + 40), "unchanged");
  assertEquals(react("👍", T0 + 40), "unchanged");
  assertEquals(s.getMessage(m.messageId)!.body, "");
});

Deno.test("applyChange keeps at most MAX_REACTIONS_PER_MESSAGE members' reactions", () => {
  const { s, team, m } = setup();
  for (let i = 0; i < MAX_REACTIONS_PER_MESSAGE + 5; i++) {
    applyChange(s, team, `u${i}`, { kind: "reaction", target: m.messageId, emoji: "👍" }, T0 + i);
  }
  assertEquals(s.getMessage(m.messageId)!.reactions!.length, MAX_REACTIONS_PER_MESSAGE);
});

Deno.test("Content kinds round-trip through the schema; reactions are bounded on both ends", () => {
  const target = uuidToString(uuidv7());
  for (
    const body of [
      { kind: "text" as const, text: "yes", replyTo: target },
      { kind: "reaction" as const, target, emoji: "👍🏽" },
      { kind: "reaction" as const, target, emoji: "" },
      { kind: "edit" as const, target, text: "new text" },
      { kind: "deletion" as const, target },
    ]
  ) {
    const id = uuidv7();
    assertEquals(decodeContent(encodeContent({ messageId: id, sentAtMs: T0, body })), {
      messageId: uuidToString(id),
      sentAtMs: T0,
      body,
    });
  }
  for (const ok of ["👍", "🇫🇷", "👨‍👩‍👧‍👦", "+1", "❤️"]) checkReaction(ok);
  for (const bad of ["👍👍👍👍", "a b", "x\u0007", "long", "🇫".repeat(40)]) {
    assertThrows(() => checkReaction(bad), UsageError);
    assertThrows(() => checkReaction(bad, ValidationError), ValidationError);
  }
  assertThrows(
    () =>
      encodeContent({
        messageId: uuidv7(),
        sentAtMs: T0,
        body: { kind: "reaction", target, emoji: "🙂🙂🙂🙂" },
      }),
    UsageError,
  );
});
