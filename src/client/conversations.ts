/**
 * Conversation names: `@user` for a DM, `#group` for a group, `@me` for the local
 * notepad. Pure functions over the local state.
 *
 * @module
 */
import type { ChannelInfo } from "../wire/mod.ts";
import { toHex } from "../bytes.ts";
import { UsageError } from "../errors.ts";
import type { Conversation, LocalState } from "../store/client/mod.ts";

/** The display name of a channel for `me`. */
export function channelName(c: ChannelInfo, me: string): string {
  if (c.channelKind === "group") return `#${c.name}`;
  const peer = c.members.find((m) => m !== me) ?? me;
  return `@${peer}`;
}

/** The notepad (a DM with ourselves, kept locally). */
export function selfConversation(state: LocalState, me: string, now: number): Conversation {
  const existing = state.getConversation("self");
  if (existing) return existing;
  const c: Conversation = { id: "self", kind: "self", name: `@${me}`, createdAt: now };
  state.upsertConversation(c);
  return c;
}

/** Find a conversation by "@user", "#group", "user" or "group". */
export function findConversation(
  state: LocalState,
  me: string,
  ref: string,
  now: number,
): Conversation {
  const candidates = ref.startsWith("@") || ref.startsWith("#") ? [ref] : [`#${ref}`, `@${ref}`];
  for (const name of candidates) {
    if (name === `@${me}`) return selfConversation(state, me, now);
    const c = state.findConversationByName(name);
    if (c) return c;
  }
  throw new UsageError(`No conversation ${ref}: see qpq list`, { code: "not_found" });
}

/** Record (or refresh) the conversation of a server channel. */
export function upsertChannel(
  state: LocalState,
  me: string,
  c: ChannelInfo,
  now: number,
): Conversation {
  const hex = toHex(c.channelId);
  const prev = state.getConversation(hex);
  const conv: Conversation = {
    id: hex,
    kind: c.channelKind,
    name: channelName(c, me),
    ...(c.channelKind === "dm" ? { peer: c.members.find((m) => m !== me) ?? "" } : {}),
    channelId: hex,
    createdAt: prev?.createdAt ?? now,
    ...(prev?.requestFrom !== undefined ? { requestFrom: prev.requestFrom } : {}),
  };
  state.upsertConversation(conv);
  return conv;
}
