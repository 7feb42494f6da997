/**
 * Checks of the local-state records ({@link ClientStore} refuses bad inputs with these
 * errors), plus the meta record's redacted view.
 *
 * @module
 */

import { toHex, utf8, zeroize } from "../../bytes.ts";
import { ED25519_PUBLIC_KEY_BYTES, ED25519_SEED_BYTES } from "../../crypto/mod.ts";
import { StorageError, UsageError } from "../../errors.ts";
import {
  MAX_CLIENT_ID_BYTES,
  MAX_CLIENT_REASON_BYTES,
  MAX_REACTIONS_PER_MESSAGE,
  MAX_RECEIPTS_PER_MESSAGE,
  MAX_REMEMBERED_COMMITS,
} from "../../limits.ts";
import type { MetaFields } from "./_client_state_file.ts";
import type {
  ClientMeta,
  ClientMetaInit,
  ClientMetaPatch,
  ConsentStatus,
  Conversation,
  ConversationKind,
  GroupRecord,
  GroupSecretChanges,
  GroupSummary,
  KeyPackageRecord,
  MessageDirection,
  MessageStatus,
  OutboxEntry,
  StoredMessage,
} from "./local_state.ts";

/** Every conversation kind. */
export const KINDS: readonly ConversationKind[] = ["dm", "group", "self"];
/** Every message direction. */
export const DIRECTIONS: readonly MessageDirection[] = ["in", "out"];
/** Every message status. */
export const STATUSES: readonly MessageStatus[] = ["pending", "sent", "delivered", "failed"];

// ---- errors

/** Any call on a closed local state. */
export function closedError(): UsageError {
  return new UsageError("Local state is closed");
}

/** A conversation name another conversation already uses. */
export function nameConflict(name: string): UsageError {
  return new UsageError(`Conversation name ${name} is already used`, { code: "conflict" });
}

/** A message for a conversation that does not exist. */
export function unknownConversation(id: string): UsageError {
  return new UsageError(`Unknown conversation ${id}`, { code: "not_found" });
}

/** A stored value that does not open (tampered with, or moved to another row). */
export function damagedRecord(cause?: unknown): StorageError {
  return new StorageError(
    "Local state is damaged: a stored record cannot be decrypted",
    cause === undefined ? {} : { cause },
  );
}

/** An async transaction callback. */
export function asyncTransaction(): UsageError {
  return new UsageError("Transaction callbacks must be synchronous");
}

/** Closing inside a transaction. */
export function closeInTransaction(): UsageError {
  return new UsageError("Cannot close state inside a transaction");
}

// ---- checks

function textOk(s: unknown, max: number, allowEmpty = false): s is string {
  return typeof s === "string" && (allowEmpty || s.length > 0) && utf8(s).length <= max;
}

/** 1 to MAX_CLIENT_ID_BYTES bytes of text. */
export function checkId(what: string, s: unknown): void {
  if (!textOk(s, MAX_CLIENT_ID_BYTES)) {
    throw new UsageError(`Invalid ${what}: expected 1 to ${MAX_CLIENT_ID_BYTES} bytes of text`);
  }
}

/** A finite number. */
export function checkTime(what: string, t: unknown): void {
  if (typeof t !== "number" || !Number.isFinite(t)) {
    throw new UsageError(`Invalid ${what}: expected a finite number`);
  }
}

function checkBytes(what: string, b: unknown): void {
  if (!(b instanceof Uint8Array)) throw new UsageError(`Invalid ${what}: expected bytes`);
}

/** A meta record (new or patched). */
export function checkMeta(m: ClientMetaInit | MetaFields): void {
  checkId("username", m.username);
  if (!textOk(m.server, MAX_CLIENT_ID_BYTES, true)) throw new UsageError("Invalid server address");
  if (!(m.identitySeed instanceof Uint8Array) || m.identitySeed.length !== ED25519_SEED_BYTES) {
    throw new UsageError(`Invalid identity seed: expected ${ED25519_SEED_BYTES} bytes`);
  }
  if (
    !(m.identityPublic instanceof Uint8Array) ||
    m.identityPublic.length !== ED25519_PUBLIC_KEY_BYTES
  ) {
    throw new UsageError(`Invalid identity public key: expected ${ED25519_PUBLIC_KEY_BYTES} bytes`);
  }
  if (m.sessionToken !== undefined) checkBytes("session token", m.sessionToken);
  if (m.sessionExpiresAt !== undefined) checkTime("session expiry", m.sessionExpiresAt);
  if (m.deviceId !== undefined) checkId("device id", m.deviceId);
}

/** A queue sequence number. */
export function checkCursor(seq: unknown): void {
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) {
    throw new UsageError("Invalid cursor: expected a non-negative integer");
  }
}

/** A history length. */
export function checkCount(count: unknown): void {
  if (!Number.isSafeInteger(count) || (count as number) < 0) {
    throw new UsageError("Invalid history count: expected a non-negative integer");
  }
}

/** A message status. */
export function checkStatus(status: unknown): void {
  if (!STATUSES.includes(status as MessageStatus)) throw new UsageError("Invalid message status");
}

/** A conversation. */
export function checkConversation(c: Conversation): void {
  checkId("conversation id", c.id);
  if (!KINDS.includes(c.kind)) throw new UsageError("Invalid conversation kind");
  checkId("conversation name", c.name);
  if (c.peer !== undefined) checkId("peer", c.peer);
  if (c.channelId !== undefined) checkId("channel id", c.channelId);
  if (c.groupId !== undefined) checkBytes("group id", c.groupId);
  checkTime("creation time", c.createdAt);
  if (c.requestFrom !== undefined) checkId("request sender", c.requestFrom);
  if (c.readSeq !== undefined && (!Number.isSafeInteger(c.readSeq) || c.readSeq < 0)) {
    throw new UsageError("Invalid read position");
  }
}

/** The consent statuses, as stored. */
export const CONSENT_STATUSES: readonly ConsentStatus[] = ["contact", "blocked"];

/** A consent record. */
export function checkConsent(username: string, status: ConsentStatus | undefined): void {
  checkId("username", username);
  if (status !== undefined && !CONSENT_STATUSES.includes(status)) {
    throw new UsageError("Invalid consent status");
  }
}

/** A message. */
export function checkMessage(m: StoredMessage): void {
  checkId("conversation id", m.conversationId);
  checkId("message id", m.messageId);
  checkId("sender", m.sender);
  if (typeof m.body !== "string") throw new UsageError("Invalid message body: expected text");
  checkTime("send time", m.sentAt);
  checkTime("receive time", m.receivedAt);
  if (!DIRECTIONS.includes(m.direction)) throw new UsageError("Invalid message direction");
  if (m.status !== undefined) checkStatus(m.status);
  if (m.unreadable !== undefined && typeof m.unreadable !== "boolean") {
    throw new UsageError("Invalid unreadable flag: expected a boolean");
  }
  if (m.replyTo !== undefined) checkId("replied-to message id", m.replyTo);
  if (m.editedAt !== undefined) checkTime("edit time", m.editedAt);
  if (m.deleted !== undefined && typeof m.deleted !== "boolean") {
    throw new UsageError("Invalid deleted flag: expected a boolean");
  }
  if (m.reactions !== undefined) {
    if (!Array.isArray(m.reactions) || m.reactions.length > MAX_REACTIONS_PER_MESSAGE) {
      throw new UsageError("Invalid reactions");
    }
    for (const r of m.reactions) {
      checkId("reacting member", r.user);
      if (typeof r.emoji !== "string") throw new UsageError("Invalid reaction: expected text");
      checkTime("reaction time", r.at);
    }
  }
  if (m.receipts !== undefined) {
    if (!Array.isArray(m.receipts) || m.receipts.length > MAX_RECEIPTS_PER_MESSAGE) {
      throw new UsageError("Invalid receipts");
    }
    for (const r of m.receipts) {
      checkId("receipt member", r.user);
      if (r.deliveredAt !== undefined) checkTime("delivery time", r.deliveredAt);
      if (r.readAt !== undefined) checkTime("read time", r.readAt);
    }
  }
}

/** An outbox entry. */
export function checkOutbox(e: OutboxEntry): void {
  checkId("message id", e.messageId);
  checkId("conversation id", e.conversationId);
  checkBytes("request", e.request);
  checkTime("creation time", e.createdAt);
  if (!Number.isSafeInteger(e.attempts) || e.attempts < 0) {
    throw new UsageError("Invalid attempt count");
  }
  if (e.sentAt !== undefined) checkTime("sent time", e.sentAt);
  if (e.resend !== undefined && typeof e.resend !== "boolean") {
    throw new UsageError("Invalid resend flag: expected a boolean");
  }
  if (e.content !== undefined) checkBytes("content", e.content);
}

/** A group record. */
export function checkGroup(g: GroupRecord): void {
  checkId("channel id", g.channelId);
  checkBytes("group state", g.state);
  if (g.pendingCommit !== undefined) checkBytes("pending commit", g.pendingCommit);
  checkTime("last update time", g.lastUpdateMs);
  if (!Array.isArray(g.leaves)) throw new UsageError("Invalid leaves: expected a list of users");
  for (const u of g.leaves) checkId("leaving member", u);
  if (g.broken !== undefined && !textOk(g.broken, MAX_CLIENT_REASON_BYTES)) {
    throw new UsageError(
      `Invalid broken reason: expected 1 to ${MAX_CLIENT_REASON_BYTES} bytes of text`,
    );
  }
  if (g.rejoinRequestedMs !== undefined) checkTime("rejoin request time", g.rejoinRequestedMs);
  if (
    g.leavingEpoch !== undefined && (!Number.isSafeInteger(g.leavingEpoch) || g.leavingEpoch < 0)
  ) {
    throw new UsageError("Invalid leaving epoch: expected a non-negative integer");
  }
  if (
    g.narrowSends !== undefined &&
    !(Number.isSafeInteger(g.narrowSends.epoch) && g.narrowSends.epoch >= 0 &&
      Number.isSafeInteger(g.narrowSends.count) && g.narrowSends.count >= 0)
  ) {
    throw new UsageError("Invalid narrow send count: expected an epoch and a count");
  }
  if (
    g.recentCommits !== undefined &&
    (!Array.isArray(g.recentCommits) || g.recentCommits.length > MAX_REMEMBERED_COMMITS ||
      !g.recentCommits.every((h) => typeof h === "string" && /^[0-9a-f]{32}$/.test(h)))
  ) {
    throw new UsageError("Invalid recent commits: expected a short list of hashes");
  }
  if (g.summary !== undefined) checkSummary(g.summary);
  if (g.secrets !== undefined) checkGroupSecrets({ put: g.secrets });
}

/** A change of a group's secrets: whole epochs and nodes, bytes, each (epoch, node) once. */
export function checkGroupSecrets(c: GroupSecretChanges): void {
  const index = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  if (
    typeof c !== "object" || c === null || !Array.isArray(c.put) ||
    (c.all !== undefined && typeof c.all !== "boolean") ||
    (c.drop !== undefined && (!Array.isArray(c.drop) || !c.drop.every(index)))
  ) {
    throw new UsageError("Invalid group secrets");
  }
  const seen = new Set<string>();
  for (const x of c.put) {
    if (typeof x !== "object" || x === null || !index(x.epoch) || !index(x.node)) {
      throw new UsageError("Invalid group secret: expected an epoch and a node index");
    }
    checkBytes("group secret", x.value);
    const key = `${x.epoch}:${x.node}`;
    if (seen.has(key)) throw new UsageError("Invalid group secrets: a node given twice");
    seen.add(key);
  }
}

/** A group summary: an epoch, a suite name, usernames, a flag and a count. */
function checkSummary(s: GroupSummary): void {
  if (
    typeof s !== "object" || s === null || !Number.isSafeInteger(s.epoch) || s.epoch < 0 ||
    !textOk(s.suite, MAX_CLIENT_ID_BYTES) || !Array.isArray(s.members) ||
    typeof s.pendingCommit !== "boolean" || !Number.isSafeInteger(s.pendingProposals) ||
    s.pendingProposals < 0
  ) {
    throw new UsageError("Invalid group summary");
  }
  for (const u of s.members) checkId("member", u);
}

/** A fresh state tag (see `GroupMeta`): 96 random bits, hex. */
export function newStateTag(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(12)));
}

/** A KeyPackage record ("" is a valid suite: unknown, from a migrated state). */
export function checkKeyPackage(k: KeyPackageRecord): void {
  checkId("KeyPackage ref", k.ref);
  if (!textOk(k.suite, MAX_CLIENT_ID_BYTES, true)) throw new UsageError("Invalid cipher suite");
  if (typeof k.lastResort !== "boolean") {
    throw new UsageError("Invalid last-resort flag: expected a boolean");
  }
  checkBytes("KeyPackage private part", k.privatePackage);
}

/** A pinned identity key. */
export function checkContact(username: string, key: Uint8Array): void {
  checkId("username", username);
  checkBytes("identity key", key);
}

/** Compare strings by code unit (the order of every sorted list). */
export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Oldest first, then by name (the order of `listConversations`). */
export function byCreation(a: Conversation, b: Conversation): number {
  return a.createdAt - b.createdAt || byString(a.name, b.name);
}

// ---- meta

/** Copy bytes; a non-byte value is passed through for checkMeta to refuse. */
function copyBytes(b: Uint8Array): Uint8Array {
  return b instanceof Uint8Array ? b.slice() : b;
}

/** Copy of a meta record (fresh byte arrays). */
export function copyMeta(m: ClientMetaInit | MetaFields): MetaFields {
  const out: MetaFields = {
    username: m.username,
    server: m.server,
    identitySeed: copyBytes(m.identitySeed),
    identityPublic: copyBytes(m.identityPublic),
  };
  if (m.sessionToken !== undefined) out.sessionToken = copyBytes(m.sessionToken);
  if (m.sessionExpiresAt !== undefined) out.sessionExpiresAt = m.sessionExpiresAt;
  if (m.deviceId !== undefined) out.deviceId = m.deviceId;
  return out;
}

/** Zero the secrets of a meta record. */
export function zeroMeta(m: MetaFields): void {
  zeroize(m.identitySeed, m.sessionToken);
}

/**
 * The meta record after `patch`, checked (a fresh copy; `m` is unchanged).
 *
 * @throws {UsageError} on an invalid value
 */
export function patchedMeta(m: MetaFields, patch: ClientMetaPatch): MetaFields {
  const next = copyMeta(m);
  if (patch.username !== undefined) next.username = patch.username;
  if (patch.server !== undefined) next.server = patch.server;
  if (patch.identitySeed !== undefined) {
    zeroize(next.identitySeed);
    next.identitySeed = copyBytes(patch.identitySeed);
  }
  if (patch.identityPublic !== undefined) next.identityPublic = copyBytes(patch.identityPublic);
  if ("sessionToken" in patch) {
    zeroize(next.sessionToken);
    delete next.sessionToken;
    if (patch.sessionToken !== undefined) next.sessionToken = copyBytes(patch.sessionToken);
  }
  if ("sessionExpiresAt" in patch) {
    delete next.sessionExpiresAt;
    if (patch.sessionExpiresAt !== undefined) next.sessionExpiresAt = patch.sessionExpiresAt;
  }
  if ("deviceId" in patch) {
    delete next.deviceId;
    if (patch.deviceId !== undefined) next.deviceId = patch.deviceId;
  }
  try {
    checkMeta(next);
  } catch (e) {
    zeroMeta(next);
    throw e;
  }
  return next;
}

function metaView(this: ClientMeta): Record<string, unknown> {
  const v: Record<string, unknown> = {
    version: this.version,
    username: this.username,
    server: this.server,
    identityPublic: toHex(this.identityPublic),
    identitySeed: "[redacted]",
  };
  if (this.sessionToken !== undefined) v.sessionToken = "[redacted]";
  if (this.sessionExpiresAt !== undefined) v.sessionExpiresAt = this.sessionExpiresAt;
  if (this.deviceId !== undefined) v.deviceId = this.deviceId;
  return v;
}

function metaInspect(this: ClientMeta): string {
  const v = metaView.call(this);
  const body = Object.entries(v).map(([k, x]) =>
    `${k}: ${typeof x === "string" && !x.startsWith("[") ? JSON.stringify(x) : String(x)}`
  );
  return `ClientMeta { ${body.join(", ")} }`;
}

/** Prototype of every meta object handed out: redacts secrets when shown or serialised. */
const META_PROTO = Object.freeze({
  toJSON: metaView,
  [Symbol.for("Deno.customInspect")]: metaInspect,
  [Symbol.for("nodejs.util.inspect.custom")]: metaInspect,
});

/** A frozen copy of the meta record that redacts its secrets when inspected or serialised. */
export function redactedMeta(m: MetaFields): ClientMeta {
  const c = copyMeta(m);
  return Object.freeze(
    Object.assign(Object.create(META_PROTO) as object, { version: 1 }, c),
  ) as ClientMeta;
}
