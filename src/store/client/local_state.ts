/**
 * The client's local state as typed records: {@link LocalState}. One implementation,
 * {@link ClientStore}: encrypted SQLite on disk, or on SQLite `:memory:` without sealing
 * ({@link MemoryLocalState} = `ClientStore.inMemory`: tests, the simulation, the load tool).
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
 *   consent         who is a contact (may start a conversation) and who is blocked
 *   conversations   what the user sees and names (DMs, groups, the notepad)
 *   messages        the history (incoming, outgoing, unreadable placeholders)
 *   outbox          encoded requests not yet acknowledged by the server, and the
 *                   recently acknowledged ones (kept to resend after a server restore)
 * ```
 *
 * Every method is synchronous and atomic; {@link LocalState.transaction} groups several
 * into one all-or-nothing change (nested calls join the outer one). Both implementations
 * check their inputs the same way and throw the same errors: `UsageError` for an invalid
 * value, a taken conversation name (code "conflict"), a message for an unknown conversation
 * (code "not_found") or any use after {@link LocalState.close}; `StorageError` when the
 * storage itself fails. Values go in and come out as copies: changing a returned or passed
 * `Uint8Array` or array never changes what is stored. Lists are in a stable order (groups by
 * channel id, KeyPackages by ref) so that a seeded run replays the same way.
 *
 * @module
 */

/** The client's identity and session, kept in the sealed meta record of the state file. */
export interface ClientMeta {
  /** Record version; always 1. */
  readonly version: 1;
  /** Account name on the server. */
  readonly username: string;
  /** Server address as the user gave it (e.g. "localhost:4433"). */
  readonly server: string;
  /** Ed25519 identity private seed (32 bytes, secret). */
  readonly identitySeed: Uint8Array;
  /** Ed25519 identity public key (32 bytes). */
  readonly identityPublic: Uint8Array;
  /** Current session token (secret), when logged in. */
  readonly sessionToken?: Uint8Array;
  /** When the session token expires (ms since the epoch). */
  readonly sessionExpiresAt?: number;
  /** Device id assigned by the server, if any. */
  readonly deviceId?: string;
}

/** The meta record of a state being created: {@link ClientMeta} without `version`. */
export type ClientMetaInit = Omit<ClientMeta, "version">;

/**
 * Changes for {@link LocalState.updateMeta}. A key that is absent is kept; an optional key
 * present with the value `undefined` is removed (e.g. `{ sessionToken: undefined }` logs out).
 */
export interface ClientMetaPatch {
  /** New account name. */
  username?: string;
  /** New server address. */
  server?: string;
  /** New identity seed (32 bytes). */
  identitySeed?: Uint8Array;
  /** New identity public key (32 bytes). */
  identityPublic?: Uint8Array;
  /** New session token, or `undefined` to remove it. */
  sessionToken?: Uint8Array | undefined;
  /** New expiry, or `undefined` to remove it. */
  sessionExpiresAt?: number | undefined;
  /** New device id, or `undefined` to remove it. */
  deviceId?: string | undefined;
}

/** What a conversation is: a direct message, a group, or notes to self. */
export type ConversationKind = "dm" | "group" | "self";

/** A conversation as the client shows it. */
export interface Conversation {
  /** Local, stable id (unique). */
  id: string;
  /** Kind of conversation. */
  kind: ConversationKind;
  /** Display name used to pick it in the REPL (unique among conversations). */
  name: string;
  /** The other user of a DM. */
  peer?: string;
  /** Server channel id, once known. */
  channelId?: string;
  /** MLS group id. */
  groupId?: Uint8Array;
  /** Creation time (ms since the epoch). */
  createdAt: number;
  /**
   * A request: someone who is not a contact invited us (a DM or a group) and the user has
   * not accepted yet. The user who sent the Welcome. The group state is kept current and
   * messages are stored, but nothing is shown until the user accepts.
   */
  requestFrom?: string;
  /**
   * How far the user has read, as the store's own position of the last message read (see
   * {@link LocalState.markRead}); only ever grows: a copy read before a `markRead` that is
   * stored again keeps the newer mark.
   */
  readSeq?: number;
}

/** Whether a message was received or sent by this client. */
export type MessageDirection = "in" | "out";

/**
 * Delivery state of an outgoing message: "failed" is terminal (it will never go out, e.g.
 * its sender was removed from the conversation first; {@link StoredMessage.failure} says why).
 */
export type MessageStatus = "pending" | "sent" | "delivered" | "failed";

/** A message in the local history. */
export interface StoredMessage {
  /** Conversation it belongs to (must exist). */
  conversationId: string;
  /** Globally unique message id; storing it twice is a no-op. */
  messageId: string;
  /** Username of the author. */
  sender: string;
  /** Message text (empty for an unreadable placeholder). */
  body: string;
  /** When the author sent it (ms since the epoch). */
  sentAt: number;
  /** When this client stored it (ms since the epoch). */
  receivedAt: number;
  /** Received or sent. */
  direction: MessageDirection;
  /** Delivery state (outgoing messages). */
  status?: MessageStatus;
  /** Why a "failed" message was not sent, in words for the user ("you were removed"). */
  failure?: string;
  /**
   * A placeholder for a message this device could not decrypt, shown as such (stored and
   * returned as given).
   */
  unreadable?: boolean;
  /** The id of the message this one answers (a reply). */
  replyTo?: string;
  /** When its author last edited it (the edit's send time, their clock); absent = never. */
  editedAt?: number;
  /** Deleted for everyone by its author: `body` is empty. */
  deleted?: boolean;
  /**
   * Members' reactions, one per member (an `emoji` of "" is a withdrawn one, kept for its
   * time so an older reaction arriving later does not come back); at most
   * MAX_REACTIONS_PER_MESSAGE.
   */
  reactions?: MessageReaction[];
  /**
   * Of our own messages: each member's delivered and read receipt (one entry per member;
   * times by the member's clock); at most MAX_RECEIPTS_PER_MESSAGE.
   */
  receipts?: MessageReceipt[];
}

/** One member's receipt for one of our messages. */
export interface MessageReceipt {
  /** Who got it. */
  user: string;
  /** When it was stored on their device (ms, their clock). */
  deliveredAt?: number;
  /** When they read it (ms, their clock); absent = not yet, or read receipts are off. */
  readAt?: number;
}

/** One member's reaction to a stored message. */
export interface MessageReaction {
  /** Who reacted. */
  user: string;
  /** The reaction ("" = withdrawn). */
  emoji: string;
  /** When they sent it (their clock): a newer one replaces it. */
  at: number;
}

/** A request waiting to be (re)sent to the server. */
export interface OutboxEntry {
  /** Message id of the request (unique in the outbox). */
  messageId: string;
  /** Conversation it belongs to. */
  conversationId: string;
  /** The encoded request, resent as is. */
  request: Uint8Array;
  /** When it was queued (ms since the epoch). */
  createdAt: number;
  /** How many times sending was attempted. */
  attempts: number;
  /**
   * Acknowledged by the server at this time (ms): kept (see {@link LocalState.keepSent}) to
   * be sent again if the server is restored from a backup that does not have it.
   */
  sentAt?: number;
  /** Queued again after a server restore (see {@link LocalState.requeueSent}). */
  resend?: boolean;
  /**
   * The plaintext `Content` bytes of an application message (any kind): what is encrypted
   * again, under the same id, when the group left the epoch of `request`. Absent for other
   * requests and for entries queued by older builds (their text is the message row's).
   */
  content?: Uint8Array;
}

/** One conversation's MLS group as this device holds it. */
export interface GroupRecord {
  /** Server channel id (hex), the key of the record. */
  channelId: string;
  /** The encoded MLS group state (`encodeGroupState`, or the bytes of a split one). */
  state: Uint8Array;
  /**
   * The secrets kept beside `state` (a split state: its ratchets, changed one by one as
   * messages are sent and received, see {@link LocalState.putGroupSecrets}). Absent when
   * there are none. As given to {@link LocalState.putGroup}: they replace every stored one.
   */
  secrets?: GroupSecret[];
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
  /**
   * We asked to leave: the epoch our leave proposal was made in. The state is kept until
   * a member commits our removal, and the proposal is made again if the group moved to a
   * new epoch without it (another commit won the race).
   */
  leavingEpoch?: number;
  /**
   * Hashes (hex) of the last commits applied or made here, newest last, at most
   * `MAX_REMEMBERED_COMMITS`: tells a replayed commit from another history's.
   */
  recentCommits?: string[];
  /**
   * Our application messages of `epoch` since the last we sent to every member that went
   * to only some (receipts to their authors, typing indicators to who is online): bounded
   * by `MAX_NARROW_SENDS` so every member can still ratchet over the ones it missed.
   */
  narrowSends?: { epoch: number; count: number };
  /**
   * What the client read from the MLS state when it stored it (epoch, suite, roster): lets
   * listing, maintenance and self-update checks work without decoding the state. Absent in
   * records stored by builds before client schema version 4 (the client fills it in once).
   */
  summary?: GroupSummary;
}

/**
 * One secret stored beside a group's state: node `node` of the ratchet (secret) tree of
 * epoch `epoch`, as the MLS layer encoded it. Secret. Unique per (epoch, node).
 */
export interface GroupSecret {
  /** The epoch of the tree. */
  epoch: number;
  /** The node index in the tree. */
  node: number;
  /** The encoded node. */
  value: Uint8Array;
}

/**
 * A change of the secrets stored beside a group's state, applied in this order: `all` or
 * `drop` delete, then `put` stores (replacing the secret of the same epoch and node).
 */
export interface GroupSecretChanges {
  /** Delete every stored secret of the group first. */
  all?: boolean;
  /** Delete every stored secret of these epochs first. */
  drop?: number[];
  /** Secrets to store. */
  put: GroupSecret[];
}

/** The small facts of a stored MLS group state, kept beside it (see {@link GroupRecord}). */
export interface GroupSummary {
  /** The current (merged) MLS epoch. */
  epoch: number;
  /** The group's MLS cipher suite name. */
  suite: string;
  /** The members' usernames, in leaf order. */
  members: string[];
  /** An own commit is staged in the state (awaiting the server). */
  pendingCommit: boolean;
  /** Proposals received and not yet committed. */
  pendingProposals: number;
}

/**
 * A group record without its MLS state, read without unsealing the state. `stateTag`
 * changes with every {@link LocalState.putGroup} (a new random value each time) and
 * {@link LocalState.putGroupSecrets}: a decoded copy of the state read under the same tag
 * is still the stored one. A tag names a write through this handle: the one a change of
 * secrets alone makes is kept in memory (not written), so a handle opened again shows the
 * tag of the last {@link LocalState.putGroup}.
 */
export type GroupMeta = Omit<GroupRecord, "state"> & { stateTag: string };

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

/**
 * What the user decided about another user: a `contact` may start conversations with us
 * (their DMs and invitations are shown at once); a `blocked` user's are dropped. No record:
 * a stranger, whose DMs and invitations arrive as requests.
 */
export type ConsentStatus = "contact" | "blocked";

/** Options of {@link LocalState.transaction}. */
export interface TransactionOptions {
  /** False: a power cut may undo this change (whole); it is redone anyway. Default true. */
  durable?: boolean;
}

/** The local state of one account on one device. */
export interface LocalState {
  /** A copy of the meta record (identity, server, session). */
  readonly meta: ClientMeta;
  /** Change the meta record (atomically; not part of {@link transaction}). */
  updateMeta(patch: ClientMetaPatch): void;
  /**
   * Run `fn` as one all-or-nothing change; `fn` must be synchronous. Calls may nest (the
   * outermost call's `durable` decides for all). By default the change is on disk when the
   * call returns. `{ durable: false }` is for a change that a power cut may undo, whole,
   * because it is redone anyway (a "sent" mark: the message is resent under its id and the
   * server keeps one copy; a read mark): its commit skips the wait for the disk, and the
   * next durable commit carries it to disk. Never for what must precede a network answer
   * (a ratchet before its ciphertext leaves, a received message before its ack).
   */
  transaction<T>(fn: () => T, opts?: TransactionOptions): T;
  /**
   * A number that moves with every write of a group's state ({@link putGroup}), of a
   * record's fields but its counters ({@link putGroupMeta} changing its pending commit,
   * leaves, broken, leaving or rejoin marks or summary; not its narrow sends, last update
   * time or remembered commits), a group deleted, a conversation written (but for how far
   * it was read: `readSeq`), and every
   * transaction rolled back; not with a change of secrets alone ({@link putGroupSecrets})
   * nor a message. What a caller derived from listing them (which groups have a
   * disappearing timer, which need maintenance) is current while it stays.
   */
  readonly recordsVersion: number;
  /**
   * How many passwords open the state (2 while a password change is under way); absent
   * for a state without a password (in memory).
   */
  readonly passwordCount?: number;
  /**
   * Re-seal the state so that exactly `unlockWith` (1 or 2 passwords) open it; absent for
   * a state without a password. See {@link ClientStore.changePassword}.
   */
  changePassword?(
    current: string | Uint8Array,
    unlockWith: readonly (string | Uint8Array)[],
  ): Promise<void>;

  /** Last queue sequence number processed (0 at first). */
  cursor(): number;
  /** Record the last processed queue sequence number. */
  setCursor(seq: number): void;

  /** The group record of a channel (hex id), or undefined. */
  group(channelId: string): GroupRecord | undefined;
  /**
   * Insert or replace a group record; returns its new state tag (see {@link GroupMeta}).
   * Without `secrets` the record's `secrets` replace every stored one; with it, that
   * change is applied to the stored ones instead (and `record.secrets` must be absent).
   */
  putGroup(record: GroupRecord, secrets?: GroupSecretChanges): string;
  /**
   * Change only the secrets of a group whose stored state tag is `baseTag` (what one
   * application message changes: a ratchet or two); returns the new state tag. Undefined,
   * and nothing changed, when there is no record or its tag is another.
   */
  putGroupSecrets(
    channelId: string,
    baseTag: string,
    secrets: GroupSecretChanges,
  ): string | undefined;
  /** The group record of a channel without its state (the state stays sealed), or undefined. */
  groupMeta(channelId: string): GroupMeta | undefined;
  /**
   * Replace everything of a stored group record but its state (and state tag); false (and
   * no change) when there is no record. Any `stateTag` field of `meta` is ignored.
   */
  putGroupMeta(meta: Omit<GroupRecord, "state">): boolean;
  /** Every group record without its state, by channel id. */
  listGroupMeta(): GroupMeta[];
  /** Delete a group record (we left or were removed); true when it existed. */
  deleteGroup(channelId: string): boolean;
  /** Every group record, by channel id. */
  listGroups(): GroupRecord[];

  /** Store the private part of a KeyPackage we upload (replacing one with the same ref). */
  putKeyPackage(record: KeyPackageRecord): void;
  /** Every stored KeyPackage private part, by ref. */
  listKeyPackages(): KeyPackageRecord[];
  /** Delete one (a Welcome used it); true when it existed. */
  deleteKeyPackage(ref: string): boolean;

  /** The identity key pinned for a user, or undefined. */
  pinnedKey(username: string): Uint8Array | undefined;
  /** Pin a user's identity key (first use), replacing an earlier pin. */
  pinKey(username: string, key: Uint8Array): void;

  /** A user's consent status, or undefined for a stranger. */
  consent(username: string): ConsentStatus | undefined;
  /** Set (or, with `undefined`, forget) a user's consent status. */
  setConsent(username: string, status: ConsentStatus | undefined): void;
  /** The users we blocked, sorted. */
  listBlocked(): string[];
  /** Whether read receipts are sent (on unless turned off with {@link setReadReceipts}). */
  readReceipts(): boolean;
  /** Turn sending read receipts on or off (kept in the state). */
  setReadReceipts(on: boolean): void;

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
  /** The stored message with this id, or undefined. */
  getMessage(messageId: string): StoredMessage | undefined;
  /**
   * A message's position in its conversation's local history: 1 for the first stored,
   * counting every stored message (deleted ones keep their place); undefined when unknown.
   */
  messageIndex(messageId: string): number | undefined;
  /** The message at {@link messageIndex} `index` of a conversation, or undefined. */
  messageAt(conversationId: string, index: number): StoredMessage | undefined;
  /** The newest `count` messages of a conversation, oldest first (local order). */
  history(conversationId: string, count: number): StoredMessage[];
  /**
   * Replace a stored message's content (an edit, a deletion, a reaction): the record with
   * its id gets `m` (its conversation unchanged); false when no such message.
   */
  updateMessage(m: StoredMessage): boolean;
  /** Set the status of a stored message (and why it failed); false when unknown. */
  setMessageStatus(messageId: string, status: MessageStatus, failure?: string): boolean;
  /**
   * Mark every message of a conversation stored so far as read. Not durable on its own (a
   * power cut may undo it, see {@link transaction}'s `durable`).
   */
  markRead(conversationId: string): void;
  /**
   * Disappearing messages: delete every message of a conversation sent (or, for one of ours
   * never sent, received) before `before` (ms since the epoch). Returns how many went.
   */
  expireMessages(conversationId: string, before: number): number;
  /**
   * Messages of a conversation stored after the last {@link markRead}, counted up to `cap`
   * (a count above it is returned as `cap + 1`: "99+").
   */
  unreadCount(conversationId: string, cap: number): number;

  /** Queue an encoded request; false when its message id is queued already. */
  addOutbox(e: OutboxEntry): boolean;
  /** Every queued request (only those of `conversationId`, when given), oldest first. */
  listOutbox(conversationId?: string): OutboxEntry[];
  /** How many requests are queued (kept sent ones not counted); opens no entry. */
  outboxCount(): number;
  /**
   * True when a request of the same conversation is queued before `messageId`, or, when
   * `messageId` is undefined or not queued, when anything of `conversationId` is queued
   * (false without one). Opens no entry: the store keeps each row's conversation as a
   * lookup hash beside it.
   */
  queuedBefore(messageId: string | undefined, conversationId?: string): boolean;
  /** Remove a queued request; false when it was not queued. */
  removeOutbox(messageId: string): boolean;
  /** Count one more attempt; the new count, or undefined when not queued (kept ones too). */
  bumpOutbox(messageId: string): number | undefined;
  /**
   * The server acknowledged a queued request: keep it (with `sentAt`), out of
   * {@link listOutbox}, to send again after a server restore. Only the newest `limits.count`
   * kept requests of at most `limits.bytes` in all are kept. False when it was not queued.
   */
  keepSent(messageId: string, sentAt: number, limits: { count: number; bytes: number }): boolean;
  /** The kept sent requests, oldest first. */
  listSent(): OutboxEntry[];
  /**
   * The server was restored from a backup: queue every kept request sent at or after
   * `since` again (last in the outbox, `resend` set, `sentAt` cleared) and forget older
   * ones. Returns how many were queued.
   */
  requeueSent(since: number): number;

  /**
   * Close this handle: later calls throw `UsageError`. {@link ClientStore} on disk zeroes its
   * keys and releases its lock; in memory it keeps the data (see `ClientStore.reopen`).
   */
  close(): Promise<void>;
}
