/**
 * Conversation names: `@user` for a DM, `#group` for a group, `@me` for the local
 * notepad. Pure functions over the local state.
 *
 * ```
 * "@dave"  ─► the DM with dave only          "#team"  ─► a group only
 * "dave"   ─► the DM or the group, refused when both exist ("dave is both @dave and #dave")
 * ```
 *
 * Usernames are case-insensitive (`@Dave` is `@dave`, see `src/names.ts`). A group is its
 * channel id; its name is a label kept as created, which unrelated groups may share (the
 * server keeps no name unique), so `#team`, `#Team` and `#tearn` can all be ours: groups
 * whose names look alike (same skeleton) are told apart by a suffix of their channel id,
 * `#team~3f2a`, in the stored name and so in every listing, message line, event and
 * prompt. A group name is looked up case-insensitively among our own conversations
 * (`#Team` is `#team`); the suffixed name is accepted as input, and a name matching several
 * groups is refused in one line listing each with its suffix. We never create a second
 * group of a name we already have (any case): {@link ownGroupNamed}.
 *
 * @module
 */
import type { ChannelInfo } from "../wire/mod.ts";
import { toHex } from "../bytes.ts";
import { UsageError, ValidationError } from "../errors.ts";
import { canonicalUsername, usernameSkeleton } from "../names.ts";
import type { Conversation, LocalState } from "../store/client/mod.ts";

/**
 * The canonical username of what a person typed (`@Bob` → `bob`).
 *
 * @throws {UsageError} when it is not a valid username
 */
export function parseUsername(input: string): string {
  try {
    return canonicalUsername(input.replace(/^@/, ""));
  } catch (e) {
    if (e instanceof ValidationError) throw new UsageError(e.message);
    throw e;
  }
}

/** The canonical username of `input`, or undefined when it is not one. */
function asUsername(input: string): string | undefined {
  try {
    return canonicalUsername(input);
  } catch {
    return undefined;
  }
}

/** The look-alike key of a group name (the username skeleton rule, applied to groups). */
function groupKey(name: string): string {
  return usernameSkeleton(name.replace(/^#/, "").replace(/~[0-9a-f]+$/i, ""));
}

/** The display name of a channel for `me` (before any look-alike suffix). */
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

/** Group conversations whose name looks like `#name` (suffix ignored), by stored name. */
function lookAlikeGroups(state: LocalState, name: string): Conversation[] {
  const key = groupKey(name);
  return state.listConversations().filter((c) => c.kind === "group" && groupKey(c.name) === key);
}

/** A group's name without `#` and id suffix, in lower case: what a lookup compares. */
function baseName(name: string): string {
  return name.replace(/^#/, "").replace(/~[0-9a-f]+$/i, "").toLowerCase();
}

/**
 * The group `#name` (any case) or `#name~suffix`; undefined when none. When several groups
 * look alike, only the suffixed form picks one: anything else is refused in one line that
 * lists each with its suffix.
 */
function findGroup(state: LocalState, ref: string): Conversation | undefined {
  return pickGroup(state.listConversations(), ref);
}

/**
 * {@link findGroup} among `conversations` (e.g. the requests only): the group `ref` names,
 * undefined when none.
 *
 * @throws {UsageError} when it names several: one line listing each with its `~id` suffix
 */
export function pickGroup(
  conversations: readonly Conversation[],
  ref: string,
): Conversation | undefined {
  const key = groupKey(ref);
  const similar = conversations.filter((c) => c.kind === "group" && groupKey(c.name) === key);
  const m = /^(.*)~([0-9a-f]+)$/i.exec(ref);
  const hits = m
    ? similar.filter((c) => (c.channelId ?? "").startsWith(m[2]!.toLowerCase()))
    : similar.filter((c) => baseName(c.name) === baseName(ref));
  if (hits.length > 1 || (!m && similar.length > 1)) {
    const names = similar.map((c) =>
      c.channelId === undefined || /~[0-9a-f]+$/.test(c.name)
        ? c.name
        : suffixed(c.name, c.channelId, similar)
    );
    throw new UsageError(`${ref} matches several groups: say which (${names.join(", ")})`);
  }
  return hits[0];
}

/**
 * Our own group named `name` in any case (`#Team2` finds `#team2` and `#team2~3f2a`), or
 * undefined. Only our local conversations are searched: nothing is asked of the server, so
 * neither it nor anyone else learns what names are in use.
 */
export function ownGroupNamed(state: LocalState, name: string): Conversation | undefined {
  const base = baseName(name);
  return state.listConversations().find((c) => c.kind === "group" && baseName(c.name) === base);
}

/** Options of {@link findConversation}. */
export interface FindConversationOptions {
  /**
   * True when a bare name is known to be a user (e.g. the directory has it): then a bare
   * name that is also a group is refused even without a local DM.
   */
  isUser?: boolean;
}

/**
 * Find a conversation by `@user` (a DM only), `#group` (a group only) or a bare name. A
 * bare name that is both a user we know (a DM, a pinned contact, ourselves, or
 * `options.isUser`) and a group is refused: `dave is both @dave and #dave: say which`.
 */
export function findConversation(
  state: LocalState,
  me: string,
  ref: string,
  now: number,
  options: FindConversationOptions = {},
): Conversation {
  if (ref.startsWith("#")) {
    const g = findGroup(state, ref);
    if (g) return g;
    throw new UsageError(`No conversation ${ref}: see qpq list`, { code: "not_found" });
  }
  const bare = !ref.startsWith("@");
  const user = asUsername(ref.replace(/^@/, ""));
  if (!bare && user === undefined) parseUsername(ref); // throws the one-line reason
  let dm: Conversation | undefined;
  if (user !== undefined) {
    dm = user === me ? selfConversation(state, me, now) : state.findConversationByName(`@${user}`);
  }
  if (!bare) {
    if (dm) return dm;
    throw new UsageError(`No conversation ${ref}: see qpq list`, { code: "not_found" });
  }
  const group = findGroup(state, `#${ref}`);
  const known = dm !== undefined || options.isUser === true ||
    (user !== undefined && state.pinnedKey(user) !== undefined);
  if (group && known) {
    throw new UsageError(`${ref} is both @${user} and ${group.name}: say which`);
  }
  const hit = group ?? dm;
  if (hit) return hit;
  throw new UsageError(`No conversation ${ref}: see qpq list`, { code: "not_found" });
}

/** `#name~xxxx`: the group's name with the first hex digits of its channel id. */
function suffixed(name: string, channelId: string, others: readonly Conversation[]): string {
  const base = name.replace(/~[0-9a-f]+$/, "");
  for (let n = 4; n < channelId.length; n += 2) {
    const s = `${base}~${channelId.slice(0, n)}`;
    if (!others.some((c) => c.name === s)) return s;
  }
  return `${base}~${channelId}`;
}

/**
 * The label of group `hex` named `name` (`#team`): with its id suffix when another of our
 * groups looks alike — and then that one gets its suffix too, from now on.
 */
function groupLabel(state: LocalState, hex: string, name: string): string {
  const similar = lookAlikeGroups(state, name).filter((x) => x.id !== hex);
  if (similar.length === 0) return name;
  const label = suffixed(name, hex, similar);
  for (const other of similar) {
    if (other.channelId === undefined || /~[0-9a-f]+$/.test(other.name)) continue;
    state.upsertConversation({
      ...other,
      name: suffixed(other.name, other.channelId, [...similar, { ...other, name: label }]),
    });
  }
  return label;
}

/**
 * Give a group conversation the name an admin set (`name` without `#`, a valid group name)
 * inside the caller's transaction: its label follows, with an id suffix when it looks like
 * another of our groups (as at creation). Returns the conversation as stored now.
 */
export function relabelGroup(state: LocalState, conv: Conversation, name: string): Conversation {
  if (conv.kind !== "group" || conv.channelId === undefined) return conv;
  if (conv.name.replace(/^#/, "").replace(/~[0-9a-f]+$/i, "") === name) return conv;
  const next = { ...conv, name: groupLabel(state, conv.id, `#${name}`) };
  state.upsertConversation(next);
  return next;
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
  let name = channelName(c, me);
  if (c.channelKind === "group") name = groupLabel(state, hex, name);
  const conv: Conversation = {
    id: hex,
    kind: c.channelKind,
    name,
    ...(c.channelKind === "dm" ? { peer: c.members.find((m) => m !== me) ?? "" } : {}),
    channelId: hex,
    createdAt: prev?.createdAt ?? now,
    ...(prev?.requestFrom !== undefined ? { requestFrom: prev.requestFrom } : {}),
  };
  state.upsertConversation(conv);
  return conv;
}

/**
 * Bring a local state from before case-insensitive usernames to canonical names: our own
 * name, DM peers and names (`@Bob` → `@bob`) and their pinned keys. A state whose names
 * are canonical is left untouched. Pins of users known only from groups cannot be found by
 * name (the store keeps only a hash of it) and are pinned again on first use.
 */
export function canonicalizeLocalNames(state: LocalState): void {
  const me = asUsername(state.meta.username);
  const changes: (() => void)[] = [];
  if (me !== undefined && me !== state.meta.username) state.updateMeta({ username: me });
  for (const c of state.listConversations()) {
    if (c.kind === "self" && me !== undefined && c.name !== `@${me}`) {
      changes.push(() => state.upsertConversation({ ...c, name: `@${me}` }));
    }
    if (c.kind !== "dm" || c.peer === undefined) continue;
    const peer = asUsername(c.peer);
    if (peer === undefined || (peer === c.peer && c.name === `@${peer}`)) continue;
    const old = c.peer;
    changes.push(() => {
      const pin = state.pinnedKey(old);
      if (pin !== undefined && state.pinnedKey(peer) === undefined) state.pinKey(peer, pin);
      // another DM already named @peer (two accounts that collided): keep this one as it is
      if (state.findConversationByName(`@${peer}`) === undefined) {
        state.upsertConversation({ ...c, peer, name: `@${peer}` });
      }
    });
  }
  if (changes.length > 0) state.transaction(() => changes.forEach((f) => f()));
}
