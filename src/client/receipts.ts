/**
 * Delivery and read receipts. One receipt names up to MAX_RECEIPT_TARGETS message ids of
 * one conversation, so a batch of messages costs one receipt per member, not one per
 * message.
 *
 * ```
 * a text stored (inbox) ─► its id collected ─► after the batch: one "delivered" receipt
 *   per conversation (none to a request or to a blocked user), sent only to the authors
 *   of the messages it names (at most MAX_NARROW_SENDS such sends per epoch between two
 *   to everyone: a member who misses them must ratchet over them)
 * a conversation read (markRead) ─► its unread texts ─► one "read" receipt (unless off)
 * receipt from X (the MLS sender) ─► for each id: our message of this conversation? and
 *   X a member, not us ─► X's entry on it (delivered / read, earliest kept); else ignored
 * shown on our messages: ✓ sent · ✓✓ delivered to every member · ✓✓✓ read by every member
 * ```
 *
 * @module
 */
import { MAX_NARROW_SENDS, MAX_RECEIPTS_PER_MESSAGE } from "../limits.ts";
import type { Conversation, GroupRecord, LocalState, StoredMessage } from "../store/client/mod.ts";

/** Apply `author`'s receipt for `targets` (inside the caller's transaction); how many changed. */
export function applyReceipt(
  state: LocalState,
  conv: Conversation,
  author: string,
  targets: string[],
  read: boolean,
  at: number,
): number {
  let n = 0;
  for (const id of targets) {
    const m = state.getMessage(id);
    // only our own messages of this conversation; never our own receipt
    if (!m || m.conversationId !== conv.id || m.direction !== "out" || m.sender === author) {
      continue;
    }
    const receipts = [...(m.receipts ?? [])];
    const i = receipts.findIndex((r) => r.user === author);
    const old = i >= 0 ? receipts[i]! : { user: author };
    const next = { ...old };
    if (next.deliveredAt === undefined) next.deliveredAt = at; // read implies delivered
    if (read && next.readAt === undefined) next.readAt = at;
    if (next.deliveredAt === old.deliveredAt && next.readAt === old.readAt) continue;
    if (i >= 0) receipts[i] = next;
    else if (receipts.length >= MAX_RECEIPTS_PER_MESSAGE) continue;
    else receipts.push(next);
    state.updateMessage({ ...m, receipts });
    n++;
  }
  return n;
}

/** How far one of our messages got among `others` (the members but us). */
export type ReceiptState = "pending" | "sent" | "delivered" | "read";

/** The state of our message `m` for the members `others` (every other member). */
export function receiptState(m: StoredMessage, others: string[]): ReceiptState {
  if (m.status === "pending" || m.status === "failed") return "pending";
  if (others.length === 0) return "sent";
  const by = new Map((m.receipts ?? []).map((r) => [r.user, r]));
  if (others.every((u) => by.get(u)?.readAt !== undefined)) return "read";
  if (others.every((u) => by.get(u)?.deliveredAt !== undefined)) return "delivered";
  return "sent";
}

/** The compact mark of a {@link ReceiptState}: "" pending, ✓ sent, ✓✓ delivered, ✓✓✓ read. */
export function receiptMark(s: ReceiptState): string {
  return s === "read" ? "✓✓✓" : s === "delivered" ? "✓✓" : s === "sent" ? "✓" : "";
}

/**
 * Who a receipt for `targets` goes to: the authors of the messages it names who are still
 * members, without us (empty: everyone).
 */
export function receiptRecipients(
  s: LocalState,
  memberList: string[],
  targets: string[],
  me: string,
): string[] {
  const members = new Set(memberList);
  const authors = new Set<string>();
  for (const id of targets) {
    const sender = s.getMessage(id)?.sender;
    if (sender !== undefined && sender !== me && members.has(sender)) authors.add(sender);
  }
  // to every other member anyway: no saving, and no narrow send counted
  if (authors.size >= members.size - 1) return [];
  return [...authors].sort();
}

/**
 * The group record's narrow-send count after one more send in `epoch`: `narrow`
 * (it skips some members) counts one more unless the bound is reached, which makes it a
 * send to everyone (count 0, as after any send to everyone). The result is the patch to
 * save with the state: a count of 0 means "send to everyone".
 */
export function narrowSend(
  record: Pick<GroupRecord, "narrowSends">,
  epoch: number,
  narrow: boolean,
): { narrowSends: { epoch: number; count: number } } {
  const count = record.narrowSends?.epoch === epoch ? record.narrowSends.count : 0;
  const next = !narrow || count + 1 >= MAX_NARROW_SENDS ? 0 : count + 1;
  return { narrowSends: { epoch, count: next } };
}
