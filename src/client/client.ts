/**
 * QpqClient: a messenger account on one device, a thin facade over parts with one job each.
 *
 * ```
 *              QpqClient (this file: names, the public API)
 *   ┌──────────┬──────────┬─────────┬──────────┬──────────┬─────────┐
 *   Session    Contacts   KeyPackages  Groups    Inbox      Receiver   Outbox
 *   login,     pinned     uploads,     commands, what each  one path   queued
 *   resume,    directory  private      commits,  delivered  for push   requests
 *   push       keys       parts        leaves,   message    and fetch  (encoded
 *                                      re-adds   does                  once)
 *   └──────────┴──────────┴─── ClientContext: LocalState, identity, clock, events, lock
 * ```
 *
 * @module
 */
import type { KeyStretching } from "../auth/mod.ts";
import { IdentityKeyPair } from "../crypto/mod.ts";
import { DEFAULT_SUITE, type GroupSettings, type MlsSuiteName } from "../mls/mod.ts";
import { QpqError, TransportError, UsageError } from "../errors.ts";
import type { Conversation, LocalState, StoredMessage } from "../store/client/mod.ts";
import { ClientContext, type Timers } from "./_context.ts";
import type { Connector } from "./connection.ts";
import { type AcceptFrom, Consent, type ConversationRequest } from "./consent.ts";
import { Contacts } from "./contacts.ts";
import {
  canonicalizeLocalNames,
  findConversation,
  parseUsername,
  selfConversation,
} from "./conversations.ts";
import type { ClientEvent } from "./events.ts";
import {
  type Composed,
  Groups,
  type LeaveOutcome,
  type MembershipChange,
  type Renamed,
  SELF_UPDATE_INTERVAL_MS,
} from "./groups.ts";
import { Inbox } from "./inbox.ts";
import type { Body } from "./content.ts";
import { applyChange } from "./changes.ts";
import { checkReaction } from "../wire/mod.ts";
import { uuidToString, uuidv7 } from "./ids.ts";
import { KeyPackages } from "./key_packages.ts";
import { Outbox } from "./outbox.ts";
import { Receiver } from "./receiver.ts";
import { Session } from "./session.ts";
import { listAllChannels } from "./_channels.ts";
import { fromHex, toHex } from "../bytes.ts";
import {
  DELIVERED_RECEIPT_EVERY_MS,
  EXPIRE_EVERY_MS,
  MAX_GROUP_DESCRIPTION_BYTES,
  MAX_RECEIPT_TARGETS,
  TYPING_INTERVAL_MS,
  UNREAD_CAP,
} from "../limits.ts";

export type { ClientEvent } from "./events.ts";
export type { AcceptFrom, ConversationRequest } from "./consent.ts";
export type { LeaveOutcome, MembershipChange, Renamed } from "./groups.ts";
export {
  KEY_PACKAGE_BATCH,
  KEY_PACKAGE_LIFETIME_SECONDS,
  KEY_PACKAGE_REFILL_BELOW,
} from "./key_packages.ts";
export { SELF_UPDATE_INTERVAL_MS };

/** Options of the sending calls ({@link QpqClient.send}, `react`, `edit`, `deleteMessage`). */
export interface SendOptions {
  /** Receive what is waiting before sending (as `qpq send` does). */
  receiveFirst?: boolean;
}

/** What a sending call stored or changed. */
type Sent = Pick<Composed, "message" | "changed">;

/** Options of {@link QpqClient.create}. */
export interface QpqClientOptions {
  /** The opened local state (its meta names the user and the server). */
  store: LocalState;
  /** The password (for OPAQUE login when the session token is gone). */
  password: string;
  /** PEM certificate to pin. */
  caCertPem?: string | undefined;
  /** Server address override (default: the one in the state). */
  server?: string | undefined;
  /** Event sink. */
  onEvent?: ((e: ClientEvent) => void) | undefined;
  /** Request timeout (ms). */
  timeoutMs?: number | undefined;
  /**
   * How long a connect waits for the server's handshake (ms; default the request timeout,
   * else `CONNECT_TIMEOUT_MS`). `QUICK_CONNECT_MS` makes what works offline quick to tell
   * that the server is not there (a QUIC server that is gone never answers).
   */
  connectTimeoutMs?: number | undefined;
  /** How to open a server connection (default: QUIC); the simulation wraps it. */
  connect?: Connector | undefined;
  /** The clock (ms since the epoch; default `Date.now`). */
  now?: (() => number) | undefined;
  /** The timers of back-offs and reconnects (default the runtime's; the simulation's are virtual). */
  timers?: Timers | undefined;
  /**
   * Whose DMs and invitations are shown at once: `"contacts"` (default; anyone else's
   * arrive as requests, see {@link QpqClient.requests}) or `"anyone"` (every Welcome is
   * accepted, as before requests existed: tools and tests that are not about consent).
   */
  acceptFrom?: AcceptFrom | undefined;
  /**
   * How many of our acknowledged messages (and bytes) are kept to send again after a server
   * restore (default `SENT_KEEP_MESSAGES`, `SENT_KEEP_BYTES` of limits.ts); `{ count: 0,
   * bytes: 0 }` keeps none (the load tool: thousands of clients in one process).
   */
  keepSent?: { count: number; bytes: number } | undefined;
  /**
   * OPAQUE key stretching at registration and login (default the library's
   * "memory-constrained" argon2id); the same for every registration and login of the
   * account. Cheap parameters are for tests and tools that register many accounts (the
   * simulation, the load tool): the same code path at a fraction of its CPU.
   */
  keyStretching?: KeyStretching | undefined;
}

/** Options of {@link QpqClient.register}. */
export interface RegisterOptions {
  /** The server's invite token (default `devtoken`). */
  authToken?: string | undefined;
}

/** A conversation as listed: broken ones say why. */
/** A held invitation: a conversation others added us to while we were at the server's cap. */
export interface HeldInvitation {
  /** Channel id, hex. */
  channelId: string;
  /** "dm" or "group". */
  kind: "dm" | "group";
  /** The group's name ("" for a DM); from the server, sanitize before showing. */
  name: string;
  /** Its roster as the server has it (us included). */
  members: string[];
}

/** What {@link QpqClient.unblock} did. */
export interface UnblockResult {
  /** The user's messages the server dropped during the block (not delivered, gone). */
  dropped: number;
  /** Conversations with them we asked to be added to again (Welcomes dropped meanwhile). */
  repairing: number;
}

/** A conversation as listed: a broken one carries the reason; `unread` is capped (see {@link UNREAD_CAP}). */
export type ListedConversation = Conversation & { broken?: string; unread: number };

export { UNREAD_CAP };
export type { Timers };

/** A messenger account on one device. */
export class QpqClient {
  #ctx: ClientContext;
  #session: Session;
  #contacts: Contacts;
  #keyPackages: KeyPackages;
  #outbox: Outbox;
  #receiver: Receiver;
  #groups: Groups;
  #consent: Consent;
  #inbox: Inbox;
  /** Receipts composed by this client (delivered and read), for the cost figures. */
  #receiptsSent = 0;
  /** Read receipts being sent: {@link close} waits for them. */
  #receipting = new Set<Promise<void>>();
  #maintaining: Promise<void> | undefined;
  #maintainAgain = false;

  private constructor(o: QpqClientOptions) {
    canonicalizeLocalNames(o.store);
    const m = o.store.meta;
    const identity = IdentityKeyPair.fromBytes(m.identitySeed, m.identityPublic);
    this.#ctx = new ClientContext(
      o.store,
      identity,
      (e) => o.onEvent?.(e),
      o.now ?? Date.now,
      o.timers,
    );
    // records of builds before client schema 4: their summaries, once, in one transaction
    this.#ctx.groups.fillSummaries();
    this.#session = new Session(this.#ctx, {
      password: o.password,
      server: o.server,
      caCertPem: o.caCertPem,
      timeoutMs: o.timeoutMs,
      connectTimeoutMs: o.connectTimeoutMs,
      connect: o.connect,
      keyStretching: o.keyStretching,
      onPush: (push) => this.#receiver.onPush(push),
      onReconnected: () => this.sync(),
      cursor: () => this.#ctx.state.cursor(),
    });
    this.#contacts = new Contacts(this.#ctx, this.#session);
    this.#keyPackages = new KeyPackages(this.#ctx, this.#session);
    this.#outbox = new Outbox(this.#ctx, this.#session, o.keepSent);
    this.#groups = new Groups(this.#ctx, {
      session: this.#session,
      contacts: this.#contacts,
      keyPackages: this.#keyPackages,
      outbox: this.#outbox,
      sync: () => this.#receiver.fetch(),
    });
    this.#consent = new Consent(this.#ctx, {
      session: this.#session,
      acceptFrom: o.acceptFrom ?? "contacts",
      members: (c) => this.#groups.members(c),
    });
    this.#inbox = new Inbox(this.#ctx, {
      session: this.#session,
      contacts: this.#contacts,
      keyPackages: this.#keyPackages,
      consent: this.#consent,
      groups: this.#groups,
      outbox: this.#outbox,
    });
    this.#receiver = new Receiver(
      this.#ctx,
      { session: this.#session, groups: this.#groups, inbox: this.#inbox },
      (n) => this.#afterReceive(n),
    );
    // disappearing messages: expired ones go on start, then every EXPIRE_EVERY_MS
    this.#expire();
  }

  #expireTimer: unknown;
  /** Delivered receipts held on the push path (conversation id ─► message ids). */
  #heldDelivered = new Map<string, string[]>();
  /** When a delivered receipt last went out, by conversation id. */
  #lastDelivered = new Map<string, number>();
  /** Sends the held delivered receipts when they are due. */
  #deliveredTimer: unknown;
  #closed = false;

  /** Delete expired messages now and schedule the next run on the client's timers. */
  #expire(): void {
    if (this.#closed) return;
    this.#ctx.timers.clearTimeout(this.#expireTimer);
    try {
      this.#groups.expire();
    } catch (e) {
      this.#ctx.emit({
        kind: "warning",
        text: `Expiring messages failed: ${(e as Error).message}`,
      });
    }
    this.#expireTimer = this.#ctx.timers.setTimeout(() => this.#expire(), EXPIRE_EVERY_MS);
  }

  /**
   * Set a group's disappearing-message timer in seconds (0 = off; admins only; checked by
   * every member's client from MLS). Resolves false when it was already so.
   */
  setDisappearing(ref: string, seconds: number): Promise<boolean> {
    return this.#groups.setDisappearing(this.conversation(ref), seconds);
  }

  /** A client over an opened local state; it connects when first needed. */
  static create(options: QpqClientOptions): QpqClient {
    return new QpqClient(options);
  }

  /** Our username. */
  get username(): string {
    return this.#ctx.username;
  }

  /** The server address in use. */
  get server(): string {
    return this.#session.server;
  }

  /** Our Ed25519 identity public key. */
  get identityPublicKey(): Uint8Array {
    return this.#ctx.identity.publicKey;
  }

  /** The local state. */
  get store(): LocalState {
    return this.#ctx.state;
  }

  /** True while connected. */
  get connected(): boolean {
    return this.#session.connected;
  }

  // ---------------------------------------------------------------- session

  /**
   * Connect to the server (without logging in), waiting at most `timeoutMs` for its
   * handshake (default the client's `connectTimeoutMs`).
   */
  connect(options: { timeoutMs?: number | undefined } = {}): Promise<void> {
    return this.#session.connect(options);
  }

  /** Close the connection (the local state stays open). */
  disconnect(): Promise<void> {
    return this.#session.disconnect();
  }

  /** Register this account (identity key included), log in, upload KeyPackages. */
  async register(options: RegisterOptions = {}): Promise<void> {
    await this.#session.register(options.authToken ?? "devtoken");
    await this.#keyPackages.refill(true);
  }

  /** OPAQUE login; stores the new session token. */
  login(): Promise<void> {
    return this.#session.login();
  }

  /** Connect and make sure the connection is logged in. */
  ensureSession(): Promise<void> {
    return this.#session.ensure();
  }

  /** Revoke the session on the server and forget the token locally. */
  logout(): Promise<void> {
    return this.#session.logout();
  }

  /**
   * End every session of this account on the server (all devices) and forget the token
   * here. Resolves to how many sessions the server ended.
   */
  logoutEverywhere(): Promise<number> {
    return this.#session.logoutEverywhere();
  }

  /**
   * Change the account's password (the one this client was opened with must be the
   * current one): a fresh OPAQUE login proves it, a new OPAQUE registration replaces it,
   * the local state is re-sealed under `next`, every other session ends. Identity keys
   * stay. Resolves to how many other sessions ended.
   */
  async changePassword(next: string): Promise<{ sessionsEnded: number }> {
    if (next.length === 0) throw new UsageError("Password must not be empty");
    return await this.#session.changePassword(next);
  }

  /** Subscribe to server push: new messages are processed as they arrive. */
  subscribe(): Promise<void> {
    return this.#session.subscribe();
  }

  /**
   * Go online in the background (the REPL started offline): connect, log in, subscribe
   * and {@link sync}, at once and then with back-off until the server answers; a
   * `progress` event ("Online: connected to …") says when. Returns at once.
   */
  keepOnline(): void {
    this.#session.keepOnline();
  }

  /** Upload KeyPackages until the server holds a full batch. */
  refillKeyPackages(force = false): Promise<number> {
    return this.#keyPackages.refill(force);
  }

  /** The safety number shared with `username` and their key's fingerprint. */
  verify(username: string): Promise<{ safetyNumber: string; fingerprint: string }> {
    let user: string;
    try {
      user = parseUsername(username);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#contacts.verify(user);
  }

  // ---------------------------------------------------------------- conversations

  /** Find a conversation by "@user", "#group", "user" or "group". */
  conversation(ref: string): Conversation {
    return this.#groups.conversation(ref);
  }

  /** Conversations we are in (requests not yet accepted are not listed); a broken one carries the reason. */
  listConversations(): ListedConversation[] {
    return this.#groups.list().filter((c) => c.requestFrom === undefined).map((c) => {
      const broken = this.#groups.brokenReason(c);
      const unread = this.#ctx.state.unreadCount(c.id, UNREAD_CAP);
      return broken === undefined ? { ...c, unread } : { ...c, broken, unread };
    });
  }

  /** Messages of a conversation stored since it was last read (capped, see {@link UNREAD_CAP}). */
  unread(ref: string): number {
    return this.#ctx.state.unreadCount(this.conversation(ref).id, UNREAD_CAP);
  }

  /**
   * Mark a conversation read up to its newest message (reading or answering it does). The
   * texts it marks read get one read receipt (unless read receipts are off, or the
   * conversation is a request): composed into the outbox here, sent now when connected
   * (else with the next command that goes online).
   */
  markRead(ref: string | Conversation): Promise<void> {
    const p = this.#markRead(ref);
    this.#receipting.add(p);
    p.catch(() => {}).finally(() => this.#receipting.delete(p));
    return p;
  }

  async #markRead(ref: string | Conversation): Promise<void> {
    // (up to the first await this runs in the caller's turn: the marking is done on return)
    const conv = typeof ref === "string" ? this.conversation(ref) : ref;
    const s = this.#ctx.state;
    const n = s.unreadCount(conv.id, UNREAD_CAP);
    const texts = n === 0
      ? []
      : s.history(conv.id, n).filter((m) =>
        m.direction === "in" && !m.unreadable && !m.deleted && m.sender !== this.username &&
        !this.#consent.blocked(m.sender)
      );
    s.markRead(conv.id);
    if (texts.length === 0 || !s.readReceipts() || !this.#receiptsAllowed(conv)) return;
    await this.#sendReceipt(conv, texts.map((m) => m.messageId), true);
  }

  /** Whether read receipts are sent (persisted; on by default). */
  get readReceipts(): boolean {
    return this.#ctx.state.readReceipts();
  }

  /** Turn sending read receipts on or off (delivered receipts are always sent). */
  setReadReceipts(on: boolean): void {
    this.#ctx.state.setReadReceipts(on);
  }

  /** Receipts this client composed (delivered and read). */
  get receiptsSent(): number {
    return this.#receiptsSent;
  }

  /** Receipts this client received (each one delivery the server made). */
  get receiptsReceived(): number {
    return this.#inbox.receiptsReceived;
  }

  /**
   * Receipts (and typing indicators) go to accepted conversations with someone else, never
   * to a blocked peer.
   */
  #receiptsAllowed(conv: Conversation): boolean {
    if (conv.kind === "self" || conv.requestFrom !== undefined) return false;
    return !(conv.peer !== undefined && this.#consent.blocked(conv.peer));
  }

  /**
   * The delivered receipts the messages received made due: one per conversation (per 100).
   * With `coalesce` (after a push or a sync) a conversation's receipt goes out at most every
   * DELIVERED_RECEIPT_EVERY_MS: ids due sooner are held, and a timer sends them then, in
   * one receipt with whatever came meanwhile; closing sends every held one now.
   *
   * ```
   * push ─► stored ─► ids due ─► last receipt of that conversation ≥ EVERY ago? ─ yes ─► send
   *                                                                           └ no ──► hold
   * timer (at last + EVERY), close ─► held + due ─► send
   * ```
   */
  async #sendDelivered(coalesce = false): Promise<void> {
    const due = this.#inbox.takeDelivered();
    for (const [convId, held] of this.#heldDelivered) {
      due.set(convId, [...held, ...(due.get(convId) ?? [])]);
    }
    this.#heldDelivered.clear();
    const now = this.#ctx.now();
    let wait: number | undefined;
    for (const [convId, ids] of due) {
      const last = this.#lastDelivered.get(convId);
      if (coalesce && last !== undefined && now - last < DELIVERED_RECEIPT_EVERY_MS) {
        this.#heldDelivered.set(convId, ids);
        const left = last + DELIVERED_RECEIPT_EVERY_MS - now;
        wait = wait === undefined ? left : Math.min(wait, left);
        continue;
      }
      const conv = this.#ctx.state.getConversation(convId);
      if (conv && this.#receiptsAllowed(conv)) {
        this.#lastDelivered.set(convId, now);
        await this.#sendReceipt(conv, ids, false);
      }
    }
    if (wait !== undefined && this.#deliveredTimer === undefined && !this.#closed) {
      this.#deliveredTimer = this.#ctx.timers.setTimeout(() => {
        this.#deliveredTimer = undefined;
        if (this.#closed) return;
        const p = this.#sendDelivered(true).catch((e) =>
          this.#ctx.emit({ kind: "warning", text: `Receive failed: ${(e as Error).message}` })
        );
        this.#receipting.add(p);
        p.finally(() => this.#receipting.delete(p));
      }, wait);
    }
  }

  /**
   * Receipts for `ids` (at most MAX_RECEIPT_TARGETS each) through the one compose path;
   * delivered at once when connected, else queued. One that cannot be composed now (the
   * group is changing, nobody else is left) is dropped: a receipt is a courtesy.
   */
  async #sendReceipt(conv: Conversation, ids: string[], read: boolean): Promise<void> {
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_TARGETS) {
      const targets = ids.slice(i, i + MAX_RECEIPT_TARGETS);
      try {
        const composed = await this.#groups.compose(conv, { kind: "receipt", targets, read });
        this.#receiptsSent++;
        if (this.#session.connected) {
          await this.#outbox.deliver(composed.messageId, composed.request, {
            content: true,
            keep: false,
          });
        }
      } catch (e) {
        if (e instanceof TransportError) {
          await this.#session.disconnect();
          return;
        }
        if (!(e instanceof QpqError)) throw e;
      }
    }
  }

  /**
   * The conversation to talk in for what a person typed: `#group` a group, `@user` the DM
   * (opened if needed), a bare name the group of that name or else the DM. A bare name
   * that is both a group and a user (the server's directory is asked) is refused, so a
   * group named after a contact cannot catch words meant for that contact.
   */
  async resolve(ref: string): Promise<Conversation> {
    if (ref.startsWith("#")) return this.conversation(ref);
    if (ref.startsWith("@")) return await this.dm(ref);
    let group: Conversation | undefined;
    try {
      group = this.conversation(`#${ref}`);
    } catch (e) {
      if (!(e instanceof QpqError && e.code === "not_found")) throw e;
    }
    if (group === undefined) return await this.dm(ref);
    let user: string;
    try {
      user = parseUsername(ref);
    } catch {
      return group; // not a possible username
    }
    const isUser = user === this.username || await this.#contacts.exists(user);
    return findConversation(this.#ctx.state, this.username, ref, this.#ctx.now(), { isUser });
  }

  /** Open (or find) the DM with `peer`; the self-DM is a local notepad. */
  async dm(peer: string): Promise<Conversation> {
    const user = parseUsername(peer);
    if (user === this.username) {
      return selfConversation(this.#ctx.state, this.username, this.#ctx.now());
    }
    if (this.#consent.blocked(user)) {
      throw new UsageError(`You blocked ${user}: qpq unblock ${user} first`, { code: "forbidden" });
    }
    // writing to someone makes them a contact (before the sync in Groups.dm: a DM they
    // opened at the same time is then joined, not held as a request)
    const stranger = this.#ctx.state.consent(user) === undefined;
    this.#consent.befriend([user]);
    try {
      return this.#accepted(await this.#groups.dm(user));
    } catch (e) {
      if (stranger) this.#ctx.state.setConsent(user, undefined); // e.g. no such user
      throw e;
    }
  }

  /** Create a group; we are its first member. */
  createGroup(name: string, suite: MlsSuiteName = DEFAULT_SUITE): Promise<Conversation> {
    return this.#groups.createGroup(name, suite);
  }

  /**
   * Invite users to a group in one commit. Resolves once the server accepted it, saying
   * who our commit added and who was a member already (before, or by another member's
   * commit meanwhile); throws when nobody was added or the server refused.
   */
  async invite(
    ref: string,
    users: string[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<MembershipChange> {
    const names = users.map(parseUsername);
    const conv = this.#accepted(this.conversation(ref));
    const change = await this.#groups.invite(conv, names, onProgress);
    this.#consent.befriend(names); // inviting someone makes them a contact
    return change;
  }

  /**
   * Remove users from a group; they cannot read anything sent afterwards. Resolves once
   * the server accepted the commit (see {@link invite} for what it says).
   */
  remove(ref: string, users: string[]): Promise<MembershipChange> {
    return this.#groups.remove(this.conversation(ref), users.map(parseUsername));
  }

  /** Commit a self-update (new path secrets: post-compromise security). */
  update(ref: string): Promise<void> {
    return this.#groups.update(this.conversation(ref));
  }

  /**
   * Leave a group: `asked` once the server accepted our leave proposal (another member
   * commits the removal), `left` when nothing was left to tell anyone.
   */
  leave(ref: string): Promise<LeaveOutcome> {
    return this.#groups.leave(this.conversation(ref));
  }

  /** Self-update every group whose last own commit is older than `maxAgeMs`. */
  selfUpdateDue(maxAgeMs = SELF_UPDATE_INTERVAL_MS): Promise<string[]> {
    return this.#groups.selfUpdateDue(maxAgeMs);
  }

  /** Members of a conversation, from the local MLS state. */
  members(ref: string): string[] {
    return this.#groups.members(this.conversation(ref));
  }

  /**
   * Roles and settings of a group from its MLS state (admins, name, description,
   * disappearing timer); undefined for a DM or a group made before roles (all are admins).
   */
  settings(ref: string): GroupSettings | undefined {
    return this.#groups.settings(this.conversation(ref));
  }

  /**
   * Grant or revoke admin of `user` in a group (admins only; refused locally first, and by
   * every member's client from MLS). Resolves false when nothing changed.
   */
  setAdmin(ref: string, user: string, grant: boolean): Promise<boolean> {
    return this.#groups.setAdmin(this.conversation(ref), user, grant);
  }

  /** Set a group's description (topic); admins only. Resolves false when unchanged. */
  describe(ref: string, text: string): Promise<boolean> {
    if (new TextEncoder().encode(text).length > MAX_GROUP_DESCRIPTION_BYTES) {
      throw new UsageError(`A topic has at most ${MAX_GROUP_DESCRIPTION_BYTES} bytes`);
    }
    return this.#groups.changeSettings(
      this.conversation(ref),
      "change the topic",
      (s) => ({ ...s, description: text }),
    );
  }

  /**
   * Rename a group (admins only; refused locally first, and by every member's client from
   * MLS). Every member's client relabels it; the name is checked as create-group checks it.
   */
  rename(ref: string, name: string): Promise<Renamed> {
    return this.#groups.rename(this.conversation(ref), name);
  }

  /** The MLS epoch and epoch authenticator of a conversation (members must agree). */
  epochInfo(ref: string): { epoch: bigint; authenticator: string } {
    return this.#groups.epochInfo(this.conversation(ref));
  }

  /** Message history of a conversation (oldest first); UsageError for a request. */
  history(ref: string, count = 20): StoredMessage[] {
    const conv = this.conversation(ref);
    if (conv.requestFrom !== undefined) {
      throw new UsageError(
        `${conv.name} is a request from ${conv.requestFrom}: qpq accept ${conv.requestFrom} to read it`,
        { code: "forbidden" },
      );
    }
    return this.#ctx.state.history(conv.id, count);
  }

  // ---------------------------------------------------------------- consent

  /** DMs and invitations from users who are not contacts, waiting for the user. */
  requests(): ConversationRequest[] {
    return this.#consent.requests();
  }

  /**
   * Accept requests: `"@user"` (every request of theirs), `"#group"`, or a bare name. The
   * conversations are listed from now on; "joined" and every held message are reported.
   */
  accept(ref: string): Conversation[] {
    return this.#consent.accept(this.#consent.find(ref));
  }

  /** Receive what is waiting and accept every request (the `join` command). */
  async join(): Promise<Conversation[]> {
    await this.#consent.joining(() => this.sync());
    return this.#consent.accept(this.#consent.requests());
  }

  /**
   * Block a user: the server drops their messages and invitations to us, their requests
   * are hidden (a requested group is left, a requested DM dropped). Returns how many
   * requests were dropped.
   */
  async block(user: string): Promise<number> {
    await this.#session.ensure();
    const dropped = await this.#consent.block(parseUsername(user));
    for (const r of dropped) {
      // A requested DM is kept, hidden: dropping its MLS state while the server keeps us
      // in the channel would lose every later message of it, and the DM with them after
      // an unblock (issue 21).
      if (r.conversation.kind !== "group") continue;
      try {
        await this.#groups.leave(r.conversation);
      } catch {
        this.#ctx.groups.delete(r.conversation.channelId!); // cannot leave cleanly
      }
    }
    return dropped.length;
  }

  /**
   * Invitations the server holds for us: groups (and DMs) others added us to while we
   * were in `max_groups_per_user` conversations. Nothing of them reaches us until accepted.
   */
  async invitations(): Promise<HeldInvitation[]> {
    await this.#session.ensure();
    const held = await listAllChannels(this.#session, { held: true });
    return held.map((c) => ({
      channelId: toHex(c.channelId),
      kind: c.channelKind,
      name: c.name,
      members: c.members,
    }));
  }

  /**
   * Accept (once under the server's cap) or decline a held invitation, by channel id (hex)
   * or group name. Accepting asks the members to add us again (a fresh KeyPackage): the
   * Welcome then arrives as any other, a request if the adder is not a contact.
   */
  async answerInvitation(ref: string, accept: boolean): Promise<HeldInvitation> {
    const name = ref.startsWith("#") ? ref.slice(1) : ref;
    const found = (await this.invitations()).filter((i) =>
      i.channelId === ref.toLowerCase() || (i.kind === "group" && i.name === name)
    );
    if (found.length !== 1) {
      throw new UsageError(
        found.length === 0
          ? `No invitation to ${ref} is waiting`
          : `${ref} names ${found.length} invitations: use the channel id`,
        { code: found.length === 0 ? "not_found" : "conflict" },
      );
    }
    const inv = found[0]!;
    const channelId = fromHex(inv.channelId);
    await this.#session.call({ kind: "answerInvitation", channelId, accept }, "ok");
    if (accept) await this.#groups.askToBeAdded(channelId);
    return inv;
  }

  /**
   * Unblock a user: a contact again if we share an accepted conversation, else a stranger.
   * Conversations with them we are in on the server but not in MLS (a DM or group they
   * opened during the block: its Welcome was dropped) ask their members to add us again.
   */
  async unblock(user: string): Promise<UnblockResult> {
    await this.#session.ensure();
    const name = parseUsername(user);
    const dropped = await this.#consent.unblock(name);
    let repairing = 0;
    for (const c of await listAllChannels(this.#session)) {
      if (!c.members.includes(name) || this.#ctx.groups.meta(toHex(c.channelId))) continue;
      await this.#groups.askToBeAdded(c.channelId);
      repairing++;
    }
    return { dropped, repairing };
  }

  /** Users blocked on this device, sorted. */
  listBlocked(): string[] {
    return this.#consent.listBlocked();
  }

  /** A conversation the user may write to: writing to a request accepts it. */
  #accepted(conv: Conversation): Conversation {
    if (conv.requestFrom === undefined) return conv;
    const r = this.#consent.requests().filter((x) => x.conversation.id === conv.id);
    if (r.length === 0) {
      throw new UsageError(`No conversation ${conv.name}: see qpq list`, { code: "not_found" });
    }
    return this.#consent.accept(r)[0]!;
  }

  // ---------------------------------------------------------------- sending

  /**
   * Send a text message. It is stored and queued before it goes out, so nothing is lost
   * when the network fails: queued messages go out with the next {@link flushOutbox}.
   * No round trip comes first (unless something is queued, or `receiveFirst` asks to
   * receive what is waiting, as `qpq send` does): the message leaves on the epoch the client
   * has; when the server answers that the group moved on (`epoch_conflict`) the client
   * catches up, encrypts it again under the same id and sends it. `replyTo` (a message of
   * the conversation, see {@link findMessage}) makes it a reply.
   */
  async send(
    ref: string,
    text: string,
    opts: SendOptions & { replyTo?: string } = {},
  ): Promise<StoredMessage> {
    const conv = this.#accepted(this.conversation(ref));
    const replyTo = opts.replyTo === undefined
      ? undefined
      : this.findMessage(conv.name, opts.replyTo).messageId;
    const sent = await this.#sendBody(conv, {
      kind: "text",
      text,
      ...(replyTo ? { replyTo } : {}),
    }, opts);
    return sent.message!;
  }

  /**
   * React to a message of a conversation (one reaction per member: it replaces ours).
   * Reacting again with the same emoji withdraws it (a toggle). Returns the message as it
   * is now.
   */
  async react(
    ref: string,
    target: string,
    emoji: string,
    opts: SendOptions = {},
  ): Promise<StoredMessage> {
    checkReaction(emoji);
    if (emoji === "") throw new UsageError("A reaction cannot be empty");
    const conv = this.#accepted(this.conversation(ref));
    const m = this.findMessage(conv.name, target);
    const mine = m.reactions?.find((r) => r.user === this.username)?.emoji;
    const sent = await this.#sendBody(conv, {
      kind: "reaction",
      target: m.messageId,
      emoji: mine === emoji ? "" : emoji,
    }, opts);
    return sent.changed!;
  }

  /** Replace the text of one of our messages, for every member (shown "(edited)"). */
  async edit(
    ref: string,
    target: string,
    text: string,
    opts: SendOptions = {},
  ): Promise<StoredMessage> {
    const conv = this.#accepted(this.conversation(ref));
    const m = this.findMessage(conv.name, target);
    const sent = await this.#sendBody(conv, { kind: "edit", target: m.messageId, text }, opts);
    return sent.changed!;
  }

  /** Delete one of our messages for every member (shown "message deleted"). */
  async deleteMessage(ref: string, target: string, opts: SendOptions = {}): Promise<StoredMessage> {
    const conv = this.#accepted(this.conversation(ref));
    const m = this.findMessage(conv.name, target);
    const sent = await this.#sendBody(conv, { kind: "deletion", target: m.messageId }, opts);
    return sent.changed!;
  }

  /**
   * Tell the members of a conversation who are online now that we are typing (`active`
   * false: we stopped). Best effort and cheap: nothing is queued, stored or retried, and
   * nothing is sent when offline, to the notepad, to a request (not accepted), to a DM
   * peer we blocked (nor, in a group, to members we blocked), or within
   * TYPING_INTERVAL_MS of the last one to this conversation (each one spends a generation
   * of our MLS ratchet: receivers tolerate gaps, the interval keeps them small). Resolves
   * whether one was sent; never throws for a refusal or a network failure.
   */
  async typing(ref: string | Conversation, active = true): Promise<boolean> {
    let conv: Conversation;
    try {
      conv = typeof ref === "string" ? this.conversation(ref) : ref;
    } catch {
      return false;
    }
    if (!this.#session.connected || !this.#receiptsAllowed(conv)) return false;
    const now = this.#ctx.now();
    const last = this.#typingSent.get(conv.id);
    if (last !== undefined && now - last < TYPING_INTERVAL_MS) return false;
    this.#typingSent.set(conv.id, now);
    try {
      await this.#groups.typing(conv, active, this.listBlocked());
      return true;
    } catch (e) {
      if (e instanceof QpqError) return false;
      throw e;
    }
  }

  /** When we last sent a typing indicator to each conversation (by id): the rate limit. */
  #typingSent = new Map<string, number>();

  /**
   * A message of a conversation named the way a user names it: its position in the
   * conversation's history (`3`, as `history` shows `[3]`) or its message id.
   *
   * @throws {UsageError} "not_found" when there is no such message
   */
  findMessage(ref: string, which: string): StoredMessage {
    const conv = this.conversation(ref);
    const w = which.trim().replace(/^\[(.*)\]$/, "$1");
    const m = /^[0-9]{1,9}$/.test(w)
      ? this.#ctx.state.messageAt(conv.id, Number(w))
      : this.#ctx.state.getMessage(w.toLowerCase());
    if (!m || m.conversationId !== conv.id) {
      throw new UsageError(`No message ${which} in ${conv.name}: see qpq history`, {
        code: "not_found",
      });
    }
    return m;
  }

  /** A message's position in its conversation's history (`[3]`), see {@link findMessage}. */
  messageIndex(messageId: string): number | undefined {
    return this.#ctx.state.messageIndex(messageId);
  }

  /**
   * The one way content of any kind leaves: composed (stored, queued, applied locally) by
   * `Groups.compose`, then delivered; a note to self is stored at once.
   */
  async #sendBody(conv: Conversation, body: Body, opts: SendOptions): Promise<Sent> {
    if (conv.kind === "self") return this.#noteToSelf(conv, body);
    let online = true;
    try {
      await this.#session.ensure();
      // what is queued goes out first, in order, and a change of this group kept while the
      // server did not answer is completed first (nothing can be encrypted while it is in
      // doubt: sim seed 8015); otherwise no round trip before the send: it leaves on the
      // epoch the client has, and the server says when the group moved on
      if (
        opts.receiveFirst || this.#outbox.pendingCount() > 0 ||
        this.#ctx.groups.meta(conv.id)?.pendingCommit !== undefined
      ) await this.sync();
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      online = false;
      await this.#session.disconnect();
    }
    // offline, it is queued even while a change of ours waits for the server: it goes out,
    // encrypted again if the change moved the epoch, once the server is back
    const composed = await this.#groups.compose(conv, body, !online);
    this.#ctx.state.markRead(conv.id); // answering a conversation reads it
    if (
      online &&
      !(await this.#outbox.deliver(composed.messageId, composed.request, { content: true })) &&
      this.#outbox.behind
    ) {
      // behind (epoch_conflict, kept queued): catch up; the sync encrypts it again, sends it
      try {
        await this.sync();
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        await this.#session.disconnect();
      }
    }
    return composed;
  }

  /** Content in the conversation with oneself: stored (or applied) here, never sent. */
  #noteToSelf(conv: Conversation, body: Body): Sent {
    const s = this.#ctx.state;
    const now = this.#ctx.now();
    const messageId = uuidToString(uuidv7());
    if (body.kind === "text") {
      const message: StoredMessage = {
        conversationId: conv.id,
        messageId,
        sender: this.username,
        body: body.text,
        sentAt: now,
        receivedAt: now,
        direction: "out",
        status: "delivered",
        ...(body.replyTo ? { replyTo: body.replyTo } : {}),
      };
      s.transaction(() => {
        s.addMessage(message);
        s.markRead(conv.id);
      });
      return { message };
    }
    if (body.kind === "receipt" || body.kind === "typing") return {}; // never to oneself
    let r!: ReturnType<typeof applyChange>;
    s.transaction(() => {
      r = applyChange(s, conv, this.username, body, now);
    });
    if (r.kind === "unknown" || r.kind === "refused") {
      throw new UsageError("No such message of yours in this conversation", { code: "not_found" });
    }
    return { changed: r.message };
  }

  /**
   * Send everything still queued (oldest first). Returns how many went out. Catches up
   * with the groups first, so a message composed offline goes out in the current epoch.
   */
  async flushOutbox(): Promise<number> {
    if (this.#outbox.pendingCount() === 0) return 0;
    try {
      await this.#receiver.fetch();
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      await this.#session.disconnect();
      return 0; // no server: everything stays queued
    }
    return await this.#flushQueued();
  }

  async #flushQueued(): Promise<number> {
    if (this.#outbox.pendingCount() === 0) return 0;
    // a message leaves only on its group's current epoch: the others wait
    const held = await this.#groups.refreshQueued();
    return await this.#outbox.flush(held);
  }

  /** Messages waiting to be sent. */
  pendingCount(): number {
    return this.#outbox.pendingCount();
  }

  /**
   * Why the last message sent stayed queued although the server answered (e.g. its disk is
   * full; already told as a warning event); undefined when it went out or the server could
   * not be reached.
   */
  queueRefusal(): string | undefined {
    return this.#outbox.refusal;
  }

  // ---------------------------------------------------------------- receiving

  /** Fetch and process everything waiting on the server; then finish what it left. */
  async sync(): Promise<number> {
    const n = await this.#receiver.fetch();
    await this.#maintain(n);
    // at most one delivered receipt per conversation per DELIVERED_RECEIPT_EVERY_MS, as
    // after a push: a client syncing in a loop composed, sealed and sent one per sync
    await this.#sendDelivered(true);
    await this.#flushQueued(); // what is still queued goes out as soon as the server is there
    return n;
  }

  #afterReceive(n: number): void {
    if (n > 0) this.#expire();
    this.#maintain(n)
      .then(() => this.#sendDelivered(true))
      // messages queued again after a server restore go out without waiting for a command
      .then(() => this.#outbox.restorePending ? this.#flushQueued() : 0)
      .catch((e) =>
        this.#ctx.emit({ kind: "warning", text: `Receive failed: ${(e as Error).message}` })
      );
  }

  /** Commit leaves, re-add members, ask to rejoin, refill KeyPackages: one run at a time. */
  async #maintain(received: number): Promise<void> {
    if (this.#maintaining) {
      this.#maintainAgain = true;
      return await this.#maintaining;
    }
    this.#maintaining = (async () => {
      do {
        this.#maintainAgain = false;
        await this.#groups.maintain();
      } while (this.#maintainAgain);
      if (received > 0) await this.#keyPackages.refillIfSpent().catch(() => {});
    })().finally(() => (this.#maintaining = undefined));
    return await this.#maintaining;
  }

  /** Close the connection and the local state. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#ctx.timers.clearTimeout(this.#expireTimer);
    this.#ctx.timers.clearTimeout(this.#deliveredTimer);
    await Promise.allSettled([...this.#receipting]);
    await this.#sendDelivered().catch(() => {}); // held and due ones: a courtesy, best effort
    await this.#session.close();
    this.#ctx.identity.destroy();
    await this.#ctx.state.close();
  }
}
