/**
 * Small rules over a conversation's GroupRecord shared by the groups and inbox parts.
 *
 * @module
 */
import type { MlsGroupState } from "../mls/mod.ts";
import { QpqError, retryLater } from "../errors.ts";
import { toHex } from "../bytes.ts";
import { sha256 } from "../crypto/mod.ts";
import { MAX_REMEMBERED_COMMITS } from "../limits.ts";
import type { Conversation, GroupMeta, GroupRecord } from "../store/client/mod.ts";
import type { GroupFields } from "./group_states.ts";
import type { ClientContext } from "./_context.ts";

/** Errors that say "not now", never "this message is bad": the message is kept. */
export function isTransient(e: unknown): boolean {
  return retryLater(e);
}

/** The reason to show for an error. */
export function reason(e: unknown): string {
  return e instanceof QpqError ? e.message : "unexpected error";
}

/** Store a group's new state (and record changes), through the one owner of states. */
export function saveGroup(
  ctx: ClientContext,
  record: GroupFields,
  state: MlsGroupState,
  patch: Partial<GroupRecord> = {},
): void {
  ctx.groups.save(record, state, patch);
}

/** Mark a conversation broken (once) and report it. */
export function markBroken(
  ctx: ClientContext,
  conv: Conversation,
  record: GroupFields,
  why: string,
): void {
  if (record.broken) return;
  // the state stays as stored (a rejoin replaces it); its summary still names the suite
  ctx.groups.update({
    channelId: record.channelId,
    lastUpdateMs: record.lastUpdateMs,
    leaves: [],
    broken: why,
    ...(record.summary ? { summary: record.summary } : {}),
  });
  // a request (consent.ts) shows nothing before it is accepted, a broken state neither
  if (conv.requestFrom === undefined) ctx.emit({ kind: "broken", conversation: conv, reason: why });
}

/** The record without an own commit awaiting the server. */
export function withoutPending<R extends GroupFields>(r: R): Omit<R, "pendingCommit"> {
  const { pendingCommit: _, ...rest } = r;
  return rest;
}

/** True when the record is a working group with nobody but us in it (from its summary). */
export function aloneIn(ctx: ClientContext, r: GroupMeta): boolean {
  const s = ctx.groups.summary(r);
  return s !== undefined && !s.pendingCommit && s.members.length === 1;
}

/** The short hash by which a commit (its MLS message bytes) is remembered. */
export function commitRef(payload: Uint8Array): string {
  return toHex(sha256(payload).subarray(0, 16));
}

/** The record's remembered commits with `payload` added (the oldest dropped past the limit). */
export function rememberCommit(r: GroupFields, payload: Uint8Array): string[] {
  return [...(r.recentCommits ?? []), commitRef(payload)].slice(-MAX_REMEMBERED_COMMITS);
}
