/**
 * The server's storage contract: what the request handlers may ask of the database.
 *
 * Every method is async and self-contained, so one call serves one request and a
 * networked implementation (PostgreSQL shared by several server nodes) can replace
 * {@link ./sqlite_server_store.ts | SqliteServerStore} without touching the handlers. No
 * method relies on state that must live in one process; the only per-process piece is
 * the {@link Notifier} used to wake connected recipients, and it sits behind an
 * interface so a shared bus can replace it.
 *
 * Delivery pipeline (one transaction from check to COMMIT, then notify):
 *
 * ```
 * enqueue / commitAndFanOut
 *   │  size cap ─► duplicate (sender, messageId)? ─► return the original seqs
 *   │  [commit] sender is a member ─► epoch == channel epoch
 *   │           ─► roster add/remove ─► channel epoch = epoch + 1
 *   │  per recipient: user exists ─► queue depth < cap ─► sender's share < its cap
 *   │                 ─► seq = next seq of that queue
 *   ▼
 * COMMIT ─► notifier.notify(recipient) for each recipient ─► return seqs
 *
 * fetch(recipient, afterSeq) ─► messages with seq > afterSeq, ascending, paged
 * ack(recipient, uptoSeq)    ─► deletes deliveries with seq <= uptoSeq
 * ```
 *
 * Usernames are opaque strings here (the handlers validate their syntax); the store checks
 * only byte lengths. All times are milliseconds since the Unix epoch, read from the
 * store's clock option unless passed in.
 *
 * @module
 */

import * as limits from "../../limits.ts";
import type { StorageHealth } from "./_storage_health.ts";

/** Store-wide limits; defaults come from `src/limits.ts`, tests may lower them. */
export interface StoreLimits {
  /** Largest payload of one delivery message (bytes). */
  maxMessageBytes: number;
  /** Most undelivered messages in one recipient queue. */
  maxQueueMessages: number;
  /**
   * Most undelivered messages one sender may hold in another user's queue. A commit may
   * go up to twice this, so a sender at the cap can still change the group (e.g. remove
   * the member who does not read).
   */
  maxSenderMessages: number;
  /** Most undelivered payload bytes one sender may hold in another user's queue (commits: twice). */
  maxSenderBytes: number;
  /** How long an undelivered message is kept (ms). */
  messageRetentionMs: number;
  /** Most messages returned by one fetch. */
  maxFetchPage: number;
  /** Most batch KeyPackages stored per user, all suites together (last resorts are extra). */
  maxKeyPackagesPerUser: number;
  /** Largest single KeyPackage (bytes). */
  maxKeyPackageBytes: number;
  /** Most KeyPackages in one upload. */
  maxKeyPackageBatch: number;
  /** Most members of one channel. */
  maxChannelMembers: number;
  /** Most users one account may block. */
  maxBlocksPerUser: number;
  /** Most channels one user is on, joined; past it an add is a held invitation. */
  maxGroupsPerUser: number;
  /** Most held invitations of one user; past it an add is refused (`quota`). */
  maxHeldInvitationsPerUser: number;
}

/** The limits used when a store is opened without overrides. */
export const DEFAULT_STORE_LIMITS: Readonly<StoreLimits> = Object.freeze({
  maxMessageBytes: limits.MAX_MESSAGE_BYTES,
  maxQueueMessages: limits.MAX_QUEUE_MESSAGES,
  maxSenderMessages: limits.MAX_SENDER_QUEUE_MESSAGES,
  maxSenderBytes: limits.MAX_SENDER_QUEUE_BYTES,
  messageRetentionMs: limits.MESSAGE_RETENTION_SECONDS * 1000,
  maxFetchPage: limits.MAX_FETCH_PAGE,
  maxKeyPackagesPerUser: limits.MAX_KEY_PACKAGES_PER_USER,
  maxKeyPackageBytes: limits.MAX_KEY_PACKAGE_BYTES,
  maxKeyPackageBatch: limits.MAX_KEY_PACKAGE_BATCH,
  maxChannelMembers: limits.MAX_CHANNEL_MEMBERS,
  maxBlocksPerUser: limits.MAX_BLOCKS_PER_USER,
  maxGroupsPerUser: limits.MAX_GROUPS_PER_USER,
  maxHeldInvitationsPerUser: limits.MAX_HELD_INVITATIONS_PER_USER,
});

/** Which channels of a user {@link ServerStore.listChannels} lists, and from where. */
export interface ChannelListQuery {
  /** Only channels with an id after this one (the last of the previous page). */
  after?: string;
  /** At most this many (default: all). */
  limit?: number;
  /** Held invitations instead of joined channels. */
  held?: boolean;
}

/**
 * Wakes connections waiting for new messages. `notify` is called after a delivery has
 * been committed and is on disk, with the message as it now sits in the recipient's queue
 * (so a push needs no read of the queue: what the store just wrote is what it sends);
 * without it, subscribers fetch from the store.
 */
export interface Notifier {
  /** Tell every subscriber of `userId` that its queue grew (by `message`). Never throws. */
  notify(userId: string, message?: QueuedMessage): void;
  /** Call `cb` whenever `userId` is notified; returns the unsubscribe function. */
  subscribe(userId: string, cb: (message?: QueuedMessage) => void): () => void;
}

/** Options shared by every {@link ServerStore} implementation. */
export interface ServerStoreOptions {
  /**
   * Seal secrets and payloads at rest and hash lookups under keys derived from this string.
   * A database created with a key can only be opened with the same key, and vice versa.
   */
  dbKey?: string;
  /** Where committed deliveries are announced (default: a new {@link InProcessNotifier}). */
  notifier?: Notifier;
  /** Current time in ms since the epoch (default `Date.now`). */
  clock?: () => number;
  /** Lower or raise individual limits (tests). */
  limits?: Partial<StoreLimits>;
}

/** A registered user as the store knows it. */
export interface UserInfo {
  /** The username. */
  username: string;
  /** Registration time (ms). */
  createdAt: number;
  /** Published Ed25519 identity public key, if any. */
  identityKey: Uint8Array | undefined;
}

/** What OPAQUE needs to answer a login. */
export interface RegistrationRecord {
  /** The OPAQUE registration record. */
  record: Uint8Array;
  /**
   * The user identifier the account was registered with in OPAQUE (its OPRF key depends
   * on it): the username, except for an account registered before usernames were
   * case-insensitive, whose original spelling (`Bob`) is kept here.
   */
  identifier: string;
}

/** A valid session found by its token. */
export interface SessionInfo {
  /** Whose session it is. */
  username: string;
  /** When it stops being valid (ms). */
  expiresAt: number;
}

/** A started OPAQUE login waiting for its finish message. */
export interface PendingLogin {
  /** The username the login is for (possibly unknown to the store: no enumeration). */
  username: string;
  /** The serialized server login state (secret). */
  state: Uint8Array;
}

/** One KeyPackage to publish. */
export interface KeyPackageInput {
  /** The KeyPackageRef (hash) identifying it; unique per user. */
  ref: Uint8Array;
  /** Its MLS cipher suite id (1..65535), read by the caller from the KeyPackage. */
  cipherSuite: number;
  /** The encoded KeyPackage. */
  data: Uint8Array;
  /** Expiry (ms); consumers never receive an expired package. */
  notAfter: number;
}

/** Which KeyPackages a call is about. */
export interface KeyPackageQuery {
  /** Only this MLS cipher suite; 0 or absent: any suite. */
  cipherSuite?: number;
}

/** A KeyPackage handed out by {@link ServerStore.consumeKeyPackage}. */
export interface ConsumedKeyPackage extends KeyPackageInput {
  /** True when this is the user's last-resort package (kept, may be handed out again). */
  lastResort: boolean;
}

/** Channel kinds: a two-person direct message or a named group. */
export type ChannelKind = "dm" | "group";

/** A channel's metadata. */
export interface ChannelInfo {
  /** Unique id (caller-chosen or 32 hex characters). */
  id: string;
  /** "dm" or "group". */
  kind: ChannelKind;
  /** Globally unique name for groups; undefined for DMs. */
  name: string | undefined;
  /** Who created it. */
  createdBy: string;
  /** Creation time (ms). */
  createdAt: number;
  /** The epoch the next accepted commit must carry. */
  epoch: number;
}

/** Parameters of {@link ServerStore.createGroupChannel}. */
export interface CreateGroupParams {
  /** Globally unique group name (1..MAX_GROUP_NAME_BYTES bytes). */
  name: string;
  /** The creating user, who becomes the first member. */
  creator: string;
  /** Channel id (e.g. the MLS group id in hex); random when omitted. */
  id?: string;
  /** The epoch the first commit will carry (default 0). */
  epoch?: number;
}

/** Result of {@link ServerStore.getOrCreateDm}. */
export interface DmResult {
  /** The DM channel for the pair. */
  channel: ChannelInfo;
  /** True when this call created it. */
  created: boolean;
}

/** Parameters of {@link ServerStore.enqueue}. */
export interface EnqueueParams {
  /** Authenticated sender. */
  sender: string;
  /** Sender-chosen unique id: the idempotency key together with `sender`. */
  messageId: string;
  /** Channel the message belongs to, or null (e.g. a Welcome sent outside a channel). */
  channelId: string | null;
  /** Opaque ciphertext. */
  payload: Uint8Array;
  /** Distinct registered users whose queues receive it. */
  recipients: readonly string[];
}

/** Parameters of {@link ServerStore.commitAndFanOut}. */
export interface CommitParams extends EnqueueParams {
  /** The channel: a group, or a DM (whose MLS group also has epochs; no roster change). */
  channelId: string;
  /** The epoch the commit was made in; must equal the channel's current epoch. */
  epoch: number;
  /** Users added to the roster by this commit. */
  rosterAdd?: readonly string[];
  /** Users removed from the roster by this commit. */
  rosterRemove?: readonly string[];
  /**
   * A heal after a restore (issue 21): `epoch` is past the channel's, which a restore put
   * back as it was in the backup and nothing has committed to since. Accepted once per
   * restored channel: the epoch jumps to `epoch + 1`, the roster changes as given.
   * Anything else is an `epoch_conflict` as for any commit not at the current epoch.
   */
  heal?: boolean;
}

/** One recipient's copy of an enqueued message. */
export interface Delivery {
  /** The recipient. */
  recipient: string;
  /** Its position in the recipient's queue (monotonic per queue, starting at 1). */
  seq: number;
}

/** Result of {@link ServerStore.enqueue} and {@link ServerStore.commitAndFanOut}. */
export interface EnqueueResult {
  /** One entry per recipient, in the order given. */
  deliveries: Delivery[];
  /** True when (sender, messageId) was already stored and nothing new was written. */
  duplicate: boolean;
}

/** One message in a recipient's queue. */
export interface QueuedMessage {
  /** Position in the recipient's queue. */
  seq: number;
  /** Who sent it. */
  sender: string;
  /** The sender's message id. */
  messageId: string;
  /** Its channel, or null. */
  channelId: string | null;
  /** Opaque ciphertext. */
  payload: Uint8Array;
  /** When the server accepted it (ms). */
  receivedAt: number;
}

/** Bounds of one {@link ServerStore.fetchPage}. */
export interface FetchPageOptions {
  /** Most messages (default and cap: maxFetchPage). */
  limit?: number;
  /**
   * Most bytes: the stored size of each message plus `rowOverheadBytes` each, summed. The
   * first message is returned whatever its size, so one maximal message is never stuck.
   */
  maxBytes?: number;
  /** Bytes counted per message on top of its stored size (default 0). */
  rowOverheadBytes?: number;
}

/** A channel as one of its members sees it: {@link ServerStore.channelOfMember}. */
export interface MemberChannel {
  /** The channel. */
  channel: ChannelInfo;
  /** Its roster, sorted. */
  members: string[];
}

/**
 * How many of a page's messages go in it: at most `limit`, their sizes plus
 * `overheadBytes` each summed within `maxBytes`, and always the first (one maximal message
 * is never stuck). The one rule of {@link ServerStore.fetchPage} and of pushes.
 */
export function pageLength(
  sizes: readonly number[],
  limit: number,
  maxBytes: number,
  overheadBytes: number,
): number {
  let take = 0;
  let bytes = 0;
  while (take < Math.min(limit, sizes.length)) {
    const size = sizes[take]! + overheadBytes;
    if (take > 0 && bytes + size > maxBytes) break;
    bytes += size;
    take++;
  }
  return take;
}

/** A page of one queue. */
export interface QueuedPage {
  /** Messages with seq > afterSeq, ascending. */
  messages: QueuedMessage[];
  /** True when more messages follow this page. */
  more: boolean;
}

/** How many rows {@link ServerStore.purgeExpired} removed. */
export interface PurgeResult {
  /** Undelivered messages past retention (queue entries). */
  deliveries: number;
  /** Expired sessions. */
  sessions: number;
  /** Expired batch KeyPackages. */
  keyPackages: number;
  /** Pending logins past their deadline. */
  pendingLogins: number;
  /** Idempotency records past retention. */
  messages: number;
}

/**
 * The server database. Implementation: `SqliteServerStore`, on a file (production) or on
 * `":memory:"` (tests, the "memory" backend); the contract test suite runs on both.
 *
 * Errors: `ValidationError` for oversized or malformed values ("too_large" for payloads
 * and KeyPackages), `UsageError` with code "not_found", "conflict", "quota" or
 * "epoch_conflict", `AuthError` "forbidden" for a non-member committing, `StorageError`
 * when the database itself fails. A call that throws has changed nothing.
 */
export interface ServerStore {
  /** The notifier told about committed deliveries. */
  readonly notifier: Notifier;

  /** Close the store; later calls throw `StorageError`. Idempotent. */
  close(): Promise<void>;

  // ---- health ----

  /** Whether the store can write, and why not (see `_storage_health.ts`). */
  storageHealth(): StorageHealth;

  /**
   * {@link storageHealth}, after trying one tiny write when degraded (at most every
   * `STORAGE_PROBE_INTERVAL_MS`), so health recovers without traffic once space is back.
   */
  checkStorage(): Promise<StorageHealth>;

  // ---- server secrets ----

  /**
   * Return the secret stored under `name`, creating it with `create()` if absent. Two
   * racing callers get the same value (the first insert wins).
   */
  getOrCreateSecret(name: string, create: () => Uint8Array): Promise<Uint8Array>;

  // ---- users ----

  /**
   * Register a user. Throws `UsageError` "conflict" if the username is taken or its
   * look-alike skeleton (`src/names.ts`) is an existing account's; a unique index on the
   * skeleton keeps this true under concurrent registrations.
   */
  createUser(
    username: string,
    registrationRecord: Uint8Array,
    options?: { identityKey?: Uint8Array },
  ): Promise<void>;
  /**
   * Reserve the names of accounts a restore lost (those not in this database): each is
   * registered again only by `createUser` with the identity key it had; look-alikes are
   * refused. Resolves to how many were reserved.
   */
  reserveNames(
    accounts: readonly { username: string; identityKey?: Uint8Array }[],
  ): Promise<number>;
  /** True when `username` is reserved by {@link reserveNames} (not registered again yet). */
  isReserved(username: string): Promise<boolean>;
  /** Throw what {@link createUser} would for a taken or look-alike name; nothing else. */
  checkNewUsername(username: string): Promise<void>;
  /** The user's metadata, or undefined. */
  getUser(username: string): Promise<UserInfo | undefined>;
  /** The OPAQUE registration record, or undefined for an unknown user. */
  getRegistrationRecord(username: string): Promise<RegistrationRecord | undefined>;
  /**
   * Publish the user's 32-byte identity key. Replacing a different existing key needs
   * `{ replace: true }`, else `UsageError` "conflict". Unknown user: "not_found".
   */
  setIdentityKey(username: string, key: Uint8Array, options?: { replace?: boolean }): Promise<void>;
  /** The user's identity key, or undefined (unknown user or none published). */
  getIdentityKey(username: string): Promise<Uint8Array | undefined>;

  // ---- logins and sessions ----

  /** Keep a started login's server state until `expiresAt` under an unguessable `loginId`. */
  savePendingLogin(loginId: Uint8Array, login: PendingLogin, expiresAt: number): Promise<void>;
  /** Remove and return a pending login; undefined if absent or expired. */
  takePendingLogin(loginId: Uint8Array): Promise<PendingLogin | undefined>;
  /** Store a session for `token` (only a hash of it is kept). */
  createSession(token: Uint8Array, username: string, expiresAt: number): Promise<void>;
  /** The session for `token` if it exists and has not expired. */
  lookupSession(token: Uint8Array): Promise<SessionInfo | undefined>;
  /** Revoke one session (logout); true if it existed. */
  revokeSession(token: Uint8Array): Promise<boolean>;
  /** Revoke all of a user's sessions; returns how many. */
  revokeUserSessions(username: string): Promise<number>;
  /**
   * Change a user's password, in one transaction: replace the OPAQUE registration record
   * (registered under the username itself), revoke every session of the user, and store
   * the session `next` for the device that changed it. Returns how many sessions were
   * revoked, not counting `current` (the changing device's own old token, revoked too).
   * Unknown user: `UsageError` "not_found", nothing changed.
   */
  replaceRegistrationRecord(
    username: string,
    record: Uint8Array,
    next: { token: Uint8Array; expiresAt: number; current?: Uint8Array },
  ): Promise<number>;

  // ---- key packages ----

  /**
   * Add a batch of KeyPackages. Refs already stored for the user are ignored. Throws
   * `ValidationError` "too_large" for an oversized package or batch and `UsageError` "quota"
   * when the user's total would exceed the cap. Returns the user's new count.
   */
  addKeyPackages(username: string, packages: readonly KeyPackageInput[]): Promise<number>;
  /** Set (replace) the user's last-resort KeyPackage of `pkg.cipherSuite`. */
  setLastResortKeyPackage(username: string, pkg: KeyPackageInput): Promise<void>;
  /**
   * Atomically take the oldest unexpired batch KeyPackage of the suite asked for (deleted:
   * never handed out twice), or when none is left, the unexpired last-resort one of that
   * suite (not deleted). Undefined if neither. Any suite when none is asked for.
   */
  consumeKeyPackage(
    username: string,
    query?: KeyPackageQuery,
  ): Promise<ConsumedKeyPackage | undefined>;
  /** Unexpired batch KeyPackages left for the user (of one suite if asked; last resorts not counted). */
  countKeyPackages(username: string, query?: KeyPackageQuery): Promise<number>;

  // ---- channels ----

  /**
   * Create a group; the creator is its first member. "conflict" if the id is taken. The name
   * is a label: any number of groups may carry the same one (a group is its id).
   */
  createGroupChannel(params: CreateGroupParams): Promise<ChannelInfo>;
  /** The DM channel of an unordered pair of distinct users, created on first use. */
  getOrCreateDm(a: string, b: string): Promise<DmResult>;
  /** A channel by id, or undefined. */
  getChannel(channelId: string): Promise<ChannelInfo | undefined>;
  /**
   * A channel and its roster (as {@link listMembers}) in one read when `username` is a
   * member of it (a held invitation is not); undefined for an unknown channel alike.
   */
  channelOfMember(channelId: string, username: string): Promise<MemberChannel | undefined>;
  /**
   * Channels the user is a member of (or, with `held`, invited to and held), ordered by id,
   * from `after`, at most `limit`.
   */
  listChannels(username: string, query?: ChannelListQuery): Promise<ChannelInfo[]>;
  /** Members of a channel (held invitations included: the roster), sorted. "not_found" for an unknown channel. */
  listMembers(channelId: string): Promise<string[]>;
  /** True when `username` is a member of the channel (a held invitation is not). */
  isMember(channelId: string, username: string): Promise<boolean>;
  /**
   * Accept (joined, if under the groups cap, else `quota`) or decline (off the roster) the
   * held invitation of `username` to a channel; `not_found` when there is none.
   */
  answerInvitation(channelId: string, username: string, accept: boolean): Promise<void>;
  /** Add members to a group (existing members ignored); "quota" past the member cap. */
  addMembers(channelId: string, usernames: readonly string[]): Promise<void>;
  /** Remove members from a group (non-members ignored). */
  removeMembers(channelId: string, usernames: readonly string[]): Promise<void>;
  /**
   * Accept a commit for `epoch` and enqueue its fan-out and roster change in one
   * transaction. Works on groups and DMs; a roster change on a DM is a `UsageError`. The first commit for an epoch wins; any other commit whose epoch is not the
   * channel's current epoch gets `UsageError` "epoch_conflict" and nothing is written. A
   * repeated (sender, messageId) returns the original result with `duplicate: true`.
   */
  commitAndFanOut(params: CommitParams): Promise<EnqueueResult>;

  // ---- delivery queues ----

  /**
   * Store a message for each recipient and return its per-recipient seqs, after COMMIT.
   * Idempotent on (sender, messageId) while the message is retained.
   */
  enqueue(params: EnqueueParams): Promise<EnqueueResult>;

  /**
   * The result of an earlier `enqueue` or `commitAndFanOut` of (sender, messageId), while
   * it is retained; undefined when there was none. Lets a sender who has since left the
   * channel learn that its resent request was stored the first time.
   */
  findDuplicate(sender: string, messageId: string): Promise<EnqueueResult | undefined>;
  /** Up to `limit` (capped by maxFetchPage) messages with seq > afterSeq, ascending. */
  fetch(recipient: string, afterSeq: number, limit?: number): Promise<QueuedMessage[]>;
  /**
   * A page of messages with seq > afterSeq, ascending, bounded by count and by bytes (at
   * least one message when any is queued), and whether more follow. Only the page's
   * payloads are read into memory.
   */
  fetchPage(recipient: string, afterSeq: number, options?: FetchPageOptions): Promise<QueuedPage>;
  /** Delete the recipient's messages with seq <= uptoSeq; returns how many. */
  ack(recipient: string, uptoSeq: number): Promise<number>;
  // ---- consent ----

  /**
   * `blocker` blocks (`on`) or unblocks `blocked`; idempotent. "not_found" when either user
   * is unknown, "quota" past `maxBlocksPerUser`. Resolves to how many messages the block
   * dropped (counted by {@link dropForBlockers}) when it ends now, else 0.
   */
  setBlocked(blocker: string, blocked: string, on: boolean): Promise<number>;
  /** Those of `recipients` who blocked `sender` (in the order given). */
  blockersOf(sender: string, recipients: readonly string[]): Promise<string[]>;
  /**
   * Those of `recipients` who blocked `sender` (in the order given), each block counting
   * one more message dropped: a message from `sender` that is not delivered to them.
   */
  dropForBlockers(sender: string, recipients: readonly string[]): Promise<string[]>;

  /** Undelivered messages in one queue. */
  queueDepth(recipient: string): Promise<number>;
  /** Undelivered messages in all queues (health). */
  totalQueueDepth(): Promise<number>;
  /** Remove everything expired at `now` (default: the store's clock). */
  purgeExpired(now?: number): Promise<PurgeResult>;
}

/** A notifier for one process: subscribers are callbacks in this process. */
export class InProcessNotifier implements Notifier {
  #subs = new Map<string, Set<(message?: QueuedMessage) => void>>();

  notify(userId: string, message?: QueuedMessage): void {
    const set = this.#subs.get(userId);
    if (set === undefined) return;
    for (const cb of [...set]) {
      try {
        cb(message);
      } catch {
        // A failing subscriber must not break delivery to the others.
      }
    }
  }

  subscribe(userId: string, cb: (message?: QueuedMessage) => void): () => void {
    let set = this.#subs.get(userId);
    if (set === undefined) {
      set = new Set();
      this.#subs.set(userId, set);
    }
    set.add(cb);
    return () => {
      const s = this.#subs.get(userId);
      if (s === undefined) return;
      s.delete(cb);
      if (s.size === 0) this.#subs.delete(userId);
    };
  }

  /** Number of users with at least one subscriber (for tests and health). */
  get subscribedUsers(): number {
    return this.#subs.size;
  }
}
