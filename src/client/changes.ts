/**
 * Changes to a stored message: a reaction, an edit, a deletion for everyone. One
 * implementation for both ends: the sender applies its own change when it composes it,
 * every receiver when it arrives (inbox.ts), so every member's history ends the same.
 *
 * ```
 * change(target, author = the MLS sender, at = its send time)
 *   target not in this conversation (or unreadable) ─► "unknown": dropped (nothing kept)
 *   edit / deletion by anyone but the target's author ─► "refused" (never applied)
 *   deleted target ─► "unchanged" (a deletion is final)
 *   edit older than the last applied edit, reaction older than the member's last ─► "unchanged"
 *   else ─► "applied": the target row is rewritten (body, editedAt, deleted, reactions)
 * ```
 *
 * The author is the MLS sender of the application message (authenticated by the group),
 * never a name inside the content. Later wins by the author's clock, so a change delivered
 * twice or out of order (a resend after a server restore) leaves the same result.
 *
 * @module
 */
import { MAX_REACTIONS_PER_MESSAGE } from "../limits.ts";
import type { Conversation, LocalState, StoredMessage } from "../store/client/mod.ts";
import type { Body } from "./content.ts";

/** A change: every body kind but text. */
export type Change = Exclude<Body, { kind: "text" } | { kind: "receipt" } | { kind: "typing" }>;

/** What {@link applyChange} did. */
export type ChangeResult =
  | { kind: "applied"; message: StoredMessage }
  | { kind: "unchanged"; message: StoredMessage }
  | { kind: "unknown" }
  | { kind: "refused"; why: string };

/**
 * Apply `change` by `author` sent at `at` to its target in `conv` (inside the caller's
 * transaction): {@link planChange}, and the target rewritten when it is "applied".
 */
export function applyChange(
  state: LocalState,
  conv: Conversation,
  author: string,
  change: Change,
  at: number,
): ChangeResult {
  const r = planChange(state, conv, author, change, at);
  if (r.kind === "applied") state.updateMessage(r.message);
  return r;
}

/** What `change` would do to its target (nothing is written). */
export function planChange(
  state: LocalState,
  conv: Conversation,
  author: string,
  change: Change,
  at: number,
): ChangeResult {
  const target = state.getMessage(change.target);
  if (!target || target.conversationId !== conv.id || target.unreadable) return { kind: "unknown" };
  if (change.kind !== "reaction" && author !== target.sender) {
    return { kind: "refused", why: `not their message` };
  }
  if (target.deleted) return { kind: "unchanged", message: target };
  let next: StoredMessage;
  switch (change.kind) {
    case "edit":
      if (target.editedAt !== undefined && target.editedAt >= at) {
        return { kind: "unchanged", message: target };
      }
      next = { ...target, body: change.text, editedAt: at };
      break;
    case "deletion":
      next = { ...target, body: "", deleted: true };
      delete next.editedAt;
      delete next.reactions;
      delete next.replyTo;
      break;
    case "reaction": {
      const reactions = [...(target.reactions ?? [])];
      const i = reactions.findIndex((r) => r.user === author);
      if (i >= 0 && reactions[i]!.at >= at) return { kind: "unchanged", message: target };
      if (i < 0 && reactions.length >= MAX_REACTIONS_PER_MESSAGE) {
        return { kind: "unchanged", message: target };
      }
      const r = { user: author, emoji: change.emoji, at };
      if (i >= 0) reactions[i] = r;
      else reactions.push(r);
      next = { ...target, reactions };
      break;
    }
  }
  return { kind: "applied", message: next };
}

/** Reactions as shown: each emoji with how many members chose it, most first. */
export function reactionCounts(m: StoredMessage): { emoji: string; count: number }[] {
  const counts = new Map<string, number>();
  for (const r of m.reactions ?? []) {
    if (r.emoji) counts.set(r.emoji, (counts.get(r.emoji) ?? 0) + 1);
  }
  return [...counts].map(([emoji, count]) => ({ emoji, count })).sort((a, b) => b.count - a.count);
}
