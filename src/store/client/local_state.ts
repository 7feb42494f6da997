/**
 * The client's local state as typed records: {@link LocalState}. One interface, two
 * implementations: the encrypted SQLite store on disk ({@link ClientStore}) and
 * {@link MemoryLocalState} (tests and the simulation: thousands of clients, no disk).
 * The client's logic only sees this interface.
 *
 * ```
 * LocalState
 *   meta            identity, server, session (the state file on disk)
 *   cursor          last queue sequence number processed and stored
 *   groups          one GroupRecord per conversation we are (or were) in:
 *                     MLS state, own commit awaiting the server, pending leaves,
 *                     last self-update, broken reason, rejoin request time
 *   keyPackages     private parts of our uploaded KeyPackages (per suite, last resort)
 *   contacts        identity keys pinned on first use
 *   conversations   what the user sees and names (DMs, groups, the notepad)
 *   messages        the history (incoming, outgoing, unreadable placeholders)
 *   outbox          encoded requests not yet acknowledged by the server
 * ```
 *
 * Every method is synchronous and atomic; {@link LocalState.transaction} groups several
 * into one all-or-nothing change (nested calls join the outer one).
 *
 * @module
 */

import type {
  ClientMeta,
  ClientMetaPatch,
  Conversation,
  MessageStatus,
  OutboxEntry,
  StoredMessage,
} from "./client_store.ts";

/** One conversation's MLS group as this device holds it. */
export interface GroupRecord {
  /** Server channel id (hex), the key of the record. */
  channelId: string;
  /** The encoded MLS group state (`encodeGroupState`). */
  state: Uint8Array;
  /**
   * Our own commit, staged in `state` and not yet answered by the server: the exact
   * encoded request frame, resent as is after a crash or a lost answer.
   */
  pendingCommit?: Uint8Array;
  /** When we last committed in this group (ms): drives the periodic self-update. */
  lastUpdateMs: number;
  /** Members whose leave proposal we received and still have to commit. */
  leaves: string[];
  /**
   * Set when the group state cannot advance (it cannot be read, or a commit of the group
   * cannot be applied): the reason shown by `qpq list`. The rest of the account works.
   */
  broken?: string;
  /** When we last asked the group to re-add us (ms), while broken. */
  rejoinRequestedMs?: number;
}

/** The private part of one of our KeyPackages. */
export interface KeyPackageRecord {
  /** KeyPackage reference (hex), the key of the record. */
  ref: string;
  /** MLS cipher suite name of the package. */
  suite: string;
  /** A last-resort package is kept after use (the server hands it out again). */
  lastResort: boolean;
  /** `createKeyPackage().privatePackage`. */
  privatePackage: Uint8Array;
}

/** The local state of one account on one device. */
export interface LocalState {
  /** A copy of the meta record (identity, server, session). */
  readonly meta: ClientMeta;
  /** Change the meta record (atomically; not part of {@link transaction}). */
  updateMeta(patch: ClientMetaPatch): void;
  /** Run `fn` as one all-or-nothing change; `fn` must be synchronous. Calls may nest. */
  transaction<T>(fn: () => T): T;

  /** Last queue sequence number processed (0 at first). */
  cursor(): number;
  /** Record the last processed queue sequence number. */
  setCursor(seq: number): void;

  /** The group record of a channel (hex id), or undefined. */
  group(channelId: string): GroupRecord | undefined;
  /** Insert or replace a group record. */
  putGroup(record: GroupRecord): void;
  /** Delete a group record (we left or were removed); true when it existed. */
  deleteGroup(channelId: string): boolean;
  /** Every group record. */
  listGroups(): GroupRecord[];

  /** Store the private part of a KeyPackage we upload. */
  putKeyPackage(record: KeyPackageRecord): void;
  /** Every stored KeyPackage private part. */
  listKeyPackages(): KeyPackageRecord[];
  /** Delete one (a Welcome used it); true when it existed. */
  deleteKeyPackage(ref: string): boolean;

  /** The identity key pinned for a user, or undefined. */
  pinnedKey(username: string): Uint8Array | undefined;
  /** Pin a user's identity key (first use). */
  pinKey(username: string, key: Uint8Array): void;

  /** Insert or replace a conversation (UsageError "conflict" when the name is taken). */
  upsertConversation(c: Conversation): void;
  /** The conversation with this id. */
  getConversation(id: string): Conversation | undefined;
  /** The conversation with this display name. */
  findConversationByName(name: string): Conversation | undefined;
  /** Every conversation, oldest first. */
  listConversations(): Conversation[];

  /** Store a message; false (and no change) when its id is already stored. */
  addMessage(m: StoredMessage): boolean;
  /** True when a message with this id is stored. */
  hasMessage(messageId: string): boolean;
  /** The newest `count` messages of a conversation, oldest first (local order). */
  history(conversationId: string, count: number): StoredMessage[];
  /** Set the status of a stored message; false when unknown. */
  setMessageStatus(messageId: string, status: MessageStatus): boolean;

  /** Queue an encoded request; false when its message id is queued already. */
  addOutbox(e: OutboxEntry): boolean;
  /** Every queued request, oldest first. */
  listOutbox(): OutboxEntry[];
  /** Remove a queued request; false when it was not queued. */
  removeOutbox(messageId: string): boolean;
  /** Count one more attempt; the new count, or undefined when not queued. */
  bumpOutbox(messageId: string): number | undefined;

  /** Close (and zero what it holds). */
  close(): Promise<void>;
}
