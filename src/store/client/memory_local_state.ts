/**
 * {@link MemoryLocalState}: the {@link LocalState} of one account held in memory, for
 * tests and the simulation (thousands of clients, no disk, no password derivation).
 *
 * It behaves like {@link ClientStore} for everything the client can observe: the same input
 * checks and errors, the same orders, all-or-nothing transactions that nest, idempotent
 * `addMessage`/`addOutbox`, and values copied on the way in and out (a caller can never
 * change what is stored through an array it passed or got back). What it does not do:
 * encrypt, persist or lock.
 *
 * Handles and crashes. The data lives as long as the object that created it; a handle is
 * one "process" using it:
 *
 * ```
 * const disk = new MemoryLocalState(initialMeta);   // the first handle, open
 * clientA = new Client(disk)          ─► crash: drop clientA without close
 * const again = disk.reopen()          ─► a new open handle over the same data;
 * clientB = new Client(again)              every earlier handle is closed now, so a late
 *                                          write of the dead clientA throws "closed"
 * await again.close()                  ─► data kept; again.reopen() opens it once more
 * ```
 *
 * Transactions keep an undo log (one closure per change, dropped when the outermost
 * transaction returns), so a transaction costs nothing in proportion to the stored data.
 *
 * @module
 */

import { UsageError } from "../../errors.ts";
import type { MetaFields } from "./_client_state_file.ts";
import {
  applyGroupSecrets,
  asyncTransaction,
  byCreation,
  byString,
  checkConsent,
  checkContact,
  checkConversation,
  checkCount,
  checkCursor,
  checkGroup,
  checkGroupSecrets,
  checkKeyPackage,
  checkMessage,
  checkMeta,
  checkOutbox,
  checkStatus,
  checkTime,
  closedError,
  closeInTransaction,
  copyConversation,
  copyGroup,
  copyKeyPackage,
  copyMessage,
  copyMeta,
  copyOutbox,
  metaOf,
  nameConflict,
  newStateTag,
  patchedMeta,
  redactedMeta,
  unknownConversation,
  zeroMeta,
} from "./_records.ts";
import type {
  ClientMeta,
  ClientMetaInit,
  ClientMetaPatch,
  ConsentStatus,
  Conversation,
  GroupMeta,
  GroupRecord,
  GroupSecretChanges,
  KeyPackageRecord,
  LocalState,
  MessageStatus,
  OutboxEntry,
  StoredMessage,
} from "./local_state.ts";

/** Everything one account stores; shared by the handles of one {@link MemoryLocalState}. */
interface Data {
  meta: MetaFields;
  cursor: { seq: number };
  groups: Map<string, { record: GroupRecord; tag: string }>;
  keyPackages: Map<string, KeyPackageRecord>;
  contacts: Map<string, Uint8Array>;
  consent: Map<string, ConsentStatus>;
  conversations: Map<string, Conversation>;
  /** Conversation name → id. */
  names: Map<string, string>;
  /** Message id → the stored message (also in its conversation's timeline). */
  messages: Map<string, StoredMessage>;
  /** Conversation id → its messages in the order stored. */
  timelines: Map<string, StoredMessage[]>;
  outbox: Map<string, { seq: number; entry: OutboxEntry }>;
  outboxSeq: number;
  /** Undo closures of the open transaction, oldest first. */
  undo: (() => void)[];
  /** Nesting depth of the open transaction (0: none). */
  depth: number;
  /** The one open handle, if any. */
  handle: MemoryLocalState | undefined;
}

/**
 * The local state of one account, in memory. `new MemoryLocalState(initialMeta)` makes the
 * data and a first open handle; {@link reopen} makes the next handle after a (simulated)
 * crash or a {@link close}. Holds the identity seed, so it redacts itself when inspected.
 */
export class MemoryLocalState implements LocalState {
  static #adopt: Data | undefined;
  readonly #d: Data;
  #closed = false;

  /**
   * New, empty data with this meta record (checked and copied, like `ClientStore.open`'s
   * `initialMeta`), and a first open handle on it.
   *
   * @throws {UsageError} when the meta record is invalid
   */
  constructor(initialMeta: ClientMetaInit) {
    const adopt = MemoryLocalState.#adopt;
    MemoryLocalState.#adopt = undefined;
    if (adopt !== undefined) {
      this.#d = adopt;
    } else {
      checkMeta(initialMeta);
      this.#d = {
        meta: copyMeta(initialMeta),
        cursor: { seq: 0 },
        groups: new Map(),
        keyPackages: new Map(),
        contacts: new Map(),
        consent: new Map(),
        conversations: new Map(),
        names: new Map(),
        messages: new Map(),
        timelines: new Map(),
        outbox: new Map(),
        outboxSeq: 0,
        undo: [],
        depth: 0,
        handle: undefined,
      };
    }
    this.#d.handle = this;
  }

  /**
   * A new open handle over the same data, as a restarted process would open the same state
   * file. Every earlier handle is closed from then on (even one never closed: a crashed
   * client's late writes throw `UsageError`). Works on a closed handle too.
   *
   * @throws {UsageError} inside a transaction
   */
  reopen(): MemoryLocalState {
    if (this.#d.depth > 0) throw new UsageError("Cannot reopen state inside a transaction");
    MemoryLocalState.#adopt = this.#d;
    return new MemoryLocalState(this.#d.meta);
  }

  /** True after {@link close} or once another handle was opened by {@link reopen}. */
  get closed(): boolean {
    return this.#closed || this.#d.handle !== this;
  }

  /** A copy of the meta record (secrets redacted when inspected or serialised). */
  get meta(): ClientMeta {
    this.#alive();
    return redactedMeta(this.#d.meta);
  }

  /** Change the meta record (atomically; not part of {@link transaction}). */
  updateMeta(patch: ClientMetaPatch): void {
    this.#alive();
    const next = patchedMeta(this.#d.meta, patch);
    zeroMeta(this.#d.meta);
    this.#d.meta = next;
  }

  /**
   * Run `fn` as one all-or-nothing change: when it throws, every change it made is undone
   * and the error rethrown. Calls may nest (an inner throw that is caught undoes only the
   * inner changes). `fn` must be synchronous; a returned promise is refused and undone.
   */
  transaction<T>(fn: () => T): T {
    this.#alive();
    const d = this.#d;
    const mark = d.undo.length;
    d.depth++;
    let out: T;
    try {
      out = fn();
      if (out instanceof Promise) {
        out.catch(() => {});
        throw asyncTransaction();
      }
    } catch (e) {
      d.depth--;
      while (d.undo.length > mark) d.undo.pop()!();
      throw e;
    }
    d.depth--;
    if (d.depth === 0) d.undo.length = 0;
    return out;
  }

  // ---- cursor

  /** Last queue sequence number processed (0 at first). */
  cursor(): number {
    this.#alive();
    return this.#d.cursor.seq;
  }

  /** Record the last processed queue sequence number. */
  setCursor(seq: number): void {
    checkCursor(seq);
    this.#write(() => {
      const c = this.#d.cursor;
      const old = c.seq;
      c.seq = seq;
      this.#d.undo.push(() => (c.seq = old));
    });
  }

  // ---- groups

  /** The group record of a channel (hex id), or undefined. */
  group(channelId: string): GroupRecord | undefined {
    this.#alive();
    const g = this.#d.groups.get(channelId);
    return g === undefined ? undefined : copyGroup(g.record);
  }

  /** Insert or replace a group record; returns its new state tag (see LocalState). */
  putGroup(record: GroupRecord, secrets?: GroupSecretChanges): string {
    checkGroup(record);
    if (secrets !== undefined) {
      checkGroupSecrets(secrets);
      if (record.secrets !== undefined) throw new UsageError("Invalid group secrets: given twice");
    }
    const tag = newStateTag();
    this.#write(() => {
      const stored = this.#d.groups.get(record.channelId)?.record.secrets;
      const next = secrets === undefined
        ? copyGroup(record)
        : copyGroup({ ...record, secrets: applyGroupSecrets(stored, secrets) });
      this.#set(this.#d.groups, record.channelId, { record: next, tag });
    });
    return tag;
  }

  /** Change only a group's secrets, when its tag is `baseTag` (see LocalState). */
  putGroupSecrets(
    channelId: string,
    baseTag: string,
    secrets: GroupSecretChanges,
  ): string | undefined {
    this.#alive();
    checkGroupSecrets(secrets);
    const g = this.#d.groups.get(channelId);
    if (g === undefined || g.tag !== baseTag) return undefined;
    const tag = newStateTag();
    const record = copyGroup({
      ...g.record,
      secrets: applyGroupSecrets(g.record.secrets, secrets),
    });
    this.#write(() => this.#set(this.#d.groups, channelId, { record, tag }));
    return tag;
  }

  /** The group record of a channel without its state, or undefined. */
  groupMeta(channelId: string): GroupMeta | undefined {
    this.#alive();
    const g = this.#d.groups.get(channelId);
    return g === undefined ? undefined : metaOf(g.record, g.tag);
  }

  /** Replace everything of a stored group record but its state; false when there is none. */
  putGroupMeta(meta: Omit<GroupRecord, "state">): boolean {
    this.#alive();
    const g = this.#d.groups.get(meta.channelId);
    if (g === undefined) return false;
    const { stateTag: _, ...rest } = meta as Partial<GroupMeta>;
    const record = {
      ...rest,
      channelId: meta.channelId,
      state: g.record.state,
      ...(g.record.secrets ? { secrets: g.record.secrets } : {}),
    } as GroupRecord;
    checkGroup(record);
    this.#write(() =>
      this.#set(this.#d.groups, meta.channelId, { record: copyGroup(record), tag: g.tag })
    );
    return true;
  }

  /** Delete a group record; true when it existed. */
  deleteGroup(channelId: string): boolean {
    return this.#write(() => this.#delete(this.#d.groups, channelId));
  }

  /** Every group record, by channel id. */
  listGroups(): GroupRecord[] {
    this.#alive();
    return [...this.#d.groups.values()]
      .sort((a, b) => byString(a.record.channelId, b.record.channelId))
      .map((g) => copyGroup(g.record));
  }

  /** Every group record without its state, by channel id. */
  listGroupMeta(): GroupMeta[] {
    this.#alive();
    return [...this.#d.groups.values()]
      .sort((a, b) => byString(a.record.channelId, b.record.channelId))
      .map((g) => metaOf(g.record, g.tag));
  }

  // ---- key packages

  /** Store the private part of a KeyPackage (replacing one with the same ref). */
  putKeyPackage(record: KeyPackageRecord): void {
    checkKeyPackage(record);
    this.#write(() => this.#set(this.#d.keyPackages, record.ref, copyKeyPackage(record)));
  }

  /** Every stored KeyPackage private part, by ref. */
  listKeyPackages(): KeyPackageRecord[] {
    this.#alive();
    return [...this.#d.keyPackages.values()]
      .sort((a, b) => byString(a.ref, b.ref))
      .map(copyKeyPackage);
  }

  /** Delete one; true when it existed. */
  deleteKeyPackage(ref: string): boolean {
    return this.#write(() => this.#delete(this.#d.keyPackages, ref));
  }

  // ---- contacts

  /** The identity key pinned for a user, or undefined. */
  pinnedKey(username: string): Uint8Array | undefined {
    this.#alive();
    return this.#d.contacts.get(username)?.slice();
  }

  /** Pin a user's identity key, replacing an earlier pin. */
  pinKey(username: string, key: Uint8Array): void {
    checkContact(username, key);
    this.#write(() => this.#set(this.#d.contacts, username, key.slice()));
  }

  // ---- consent

  /** A user's consent status, or undefined for a stranger. */
  consent(username: string): ConsentStatus | undefined {
    this.#alive();
    return this.#d.consent.get(username);
  }

  /** Set (or forget) a user's consent status. */
  setConsent(username: string, status: ConsentStatus | undefined): void {
    checkConsent(username, status);
    this.#write(() => {
      if (status === undefined) this.#delete(this.#d.consent, username);
      else this.#set(this.#d.consent, username, status);
    });
  }

  /** The users we blocked, sorted. */
  listBlocked(): string[] {
    this.#alive();
    return [...this.#d.consent].filter(([, v]) => v === "blocked").map(([k]) => k).sort(
      byString,
    );
  }

  // ---- conversations

  /** Insert or replace a conversation (UsageError "conflict" when the name is taken). */
  upsertConversation(c: Conversation): void {
    checkConversation(c);
    this.#write(() => {
      const d = this.#d;
      const owner = d.names.get(c.name);
      if (owner !== undefined && owner !== c.id) throw nameConflict(c.name);
      const prev = d.conversations.get(c.id);
      if (prev !== undefined && prev.name !== c.name) this.#delete(d.names, prev.name);
      this.#set(d.names, c.name, c.id);
      const readSeq = Math.max(c.readSeq ?? 0, prev?.readSeq ?? 0);
      this.#set(d.conversations, c.id, copyConversation(readSeq > 0 ? { ...c, readSeq } : c));
    });
  }

  /** The conversation with this id. */
  getConversation(id: string): Conversation | undefined {
    this.#alive();
    const c = this.#d.conversations.get(id);
    return c === undefined ? undefined : copyConversation(c);
  }

  /** The conversation with this display name. */
  findConversationByName(name: string): Conversation | undefined {
    this.#alive();
    const id = this.#d.names.get(name);
    const c = id === undefined ? undefined : this.#d.conversations.get(id);
    return c === undefined ? undefined : copyConversation(c);
  }

  /** Every conversation, oldest first (then by name). */
  listConversations(): Conversation[] {
    this.#alive();
    return [...this.#d.conversations.values()].sort(byCreation).map(copyConversation);
  }

  // ---- messages

  /** Store a message; false (and no change) when its id is already stored. */
  addMessage(m: StoredMessage): boolean {
    checkMessage(m);
    return this.#write(() => {
      const d = this.#d;
      if (!d.conversations.has(m.conversationId)) throw unknownConversation(m.conversationId);
      if (d.messages.has(m.messageId)) return false;
      const stored = copyMessage(m);
      this.#set(d.messages, m.messageId, stored);
      let timeline = d.timelines.get(m.conversationId);
      if (timeline === undefined) {
        timeline = [];
        this.#set(d.timelines, m.conversationId, timeline);
      }
      const t = timeline;
      t.push(stored);
      d.undo.push(() => t.pop());
      return true;
    });
  }

  /** The stored message with this id, or undefined. */
  getMessage(messageId: string): StoredMessage | undefined {
    this.#alive();
    const m = this.#d.messages.get(messageId);
    return m === undefined ? undefined : copyMessage(m);
  }

  /** True when a message with this id is stored. */
  hasMessage(messageId: string): boolean {
    this.#alive();
    return this.#d.messages.has(messageId);
  }

  /** The newest `count` messages of a conversation, oldest first (local order). */
  history(conversationId: string, count: number): StoredMessage[] {
    checkCount(count);
    this.#alive();
    if (count === 0) return [];
    return (this.#d.timelines.get(conversationId) ?? []).slice(-count).map(copyMessage);
  }

  /**
   * Mark every message of a conversation stored so far as read (the position is the length
   * of its timeline: messages are never taken out of one).
   */
  markRead(conversationId: string): void {
    this.#write(() => {
      const c = this.#d.conversations.get(conversationId);
      if (c === undefined) throw unknownConversation(conversationId);
      const last = this.#d.timelines.get(conversationId)?.length ?? 0;
      if (last > (c.readSeq ?? 0)) this.upsertConversation({ ...c, readSeq: last });
    });
  }

  /** Messages stored after the last {@link markRead}, counted up to `cap` (then `cap + 1`). */
  unreadCount(conversationId: string, cap: number): number {
    checkCount(cap);
    this.#alive();
    const c = this.#d.conversations.get(conversationId);
    if (c === undefined) return 0;
    const n = (this.#d.timelines.get(conversationId)?.length ?? 0) - (c.readSeq ?? 0);
    return Math.min(Math.max(n, 0), cap + 1);
  }

  /** Set the status of a stored message; false when unknown. */
  setMessageStatus(messageId: string, status: MessageStatus, failure?: string): boolean {
    checkStatus(status);
    return this.#write(() => {
      const m = this.#d.messages.get(messageId);
      if (m === undefined) return false;
      const old = m.status;
      const oldFailure = m.failure;
      m.status = status;
      if (status === "failed" && failure !== undefined) m.failure = failure;
      else delete m.failure;
      this.#d.undo.push(() => {
        if (old === undefined) delete m.status;
        else m.status = old;
        if (oldFailure === undefined) delete m.failure;
        else m.failure = oldFailure;
      });
      return true;
    });
  }

  // ---- outbox

  /** Queue an encoded request; false when its message id is queued already. */
  addOutbox(e: OutboxEntry): boolean {
    checkOutbox(e);
    return this.#write(() => {
      const d = this.#d;
      if (d.outbox.has(e.messageId)) return false;
      this.#set(d.outbox, e.messageId, { seq: ++d.outboxSeq, entry: copyOutbox(e) });
      return true;
    });
  }

  /** Every queued request, oldest first. */
  listOutbox(): OutboxEntry[] {
    this.#alive();
    return [...this.#d.outbox.values()].filter((q) => q.seq > 0).sort((a, b) => a.seq - b.seq)
      .map((q) => copyOutbox(q.entry));
  }

  /** Keep an acknowledged request to resend after a server restore. */
  keepSent(messageId: string, sentAt: number, limits: { count: number; bytes: number }): boolean {
    checkTime("sent time", sentAt);
    return this.#write(() => {
      const d = this.#d;
      const q = d.outbox.get(messageId);
      if (q === undefined || q.seq < 0) return false;
      const entry = { ...copyOutbox(q.entry), sentAt };
      delete entry.resend;
      // negative, the newest the lowest (as on disk)
      const low = Math.min(0, ...[...d.outbox.values()].map((k) => k.seq));
      this.#set(d.outbox, messageId, { seq: low - 1, entry });
      let count = 0;
      let bytes = 0;
      const kept = [...d.outbox.entries()].filter(([, k]) => k.seq < 0)
        .sort(([, a], [, b]) => a.seq - b.seq);
      for (const [id, k] of kept) {
        count++;
        bytes += k.entry.request.length;
        if (count > limits.count || bytes > limits.bytes) this.#delete(d.outbox, id);
      }
      return true;
    });
  }

  /** The kept sent requests, oldest first. */
  listSent(): OutboxEntry[] {
    this.#alive();
    return [...this.#d.outbox.values()].filter((q) => q.seq < 0).sort((a, b) => b.seq - a.seq)
      .map((q) => copyOutbox(q.entry));
  }

  /** Queue the kept requests sent since `since` again; forget older ones. */
  requeueSent(since: number): number {
    return this.#write(() => {
      const d = this.#d;
      let n = 0;
      const kept = [...d.outbox.entries()].filter(([, k]) => k.seq < 0)
        .sort(([, a], [, b]) => b.seq - a.seq);
      for (const [id, k] of kept) {
        if ((k.entry.sentAt ?? 0) < since) {
          this.#delete(d.outbox, id);
          continue;
        }
        const entry: OutboxEntry = { ...copyOutbox(k.entry), resend: true };
        delete entry.sentAt;
        this.#set(d.outbox, id, { seq: ++d.outboxSeq, entry });
        n++;
      }
      return n;
    });
  }

  /** Remove a queued request; false when it was not queued. */
  removeOutbox(messageId: string): boolean {
    return this.#write(() => this.#delete(this.#d.outbox, messageId));
  }

  /** Count one more attempt; the new count, or undefined when not queued. */
  bumpOutbox(messageId: string): number | undefined {
    return this.#write(() => {
      const q = this.#d.outbox.get(messageId);
      if (q === undefined) return undefined;
      const entry = { ...q.entry, attempts: q.entry.attempts + 1 };
      this.#set(this.#d.outbox, messageId, { seq: q.seq, entry });
      return entry.attempts;
    });
  }

  // ---- lifecycle

  /**
   * Close this handle: later calls on it throw `UsageError`. The data is kept (this is the
   * disk, not the process); {@link reopen} opens it again. Idempotent.
   */
  close(): Promise<void> {
    if (!this.closed && this.#d.depth > 0) return Promise.reject(closeInTransaction());
    this.#closed = true;
    return Promise.resolve();
  }

  /** `await using` closes the handle at scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Redacted JSON form (no meta). */
  toJSON(): { memory: true; closed: boolean } {
    return { memory: true, closed: this.closed };
  }

  [Symbol.for("Deno.customInspect")](): string {
    return `MemoryLocalState { closed: ${this.closed} }`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `MemoryLocalState { closed: ${this.closed} }`;
  }

  // ---- plumbing

  #alive(): void {
    if (this.closed) throw closedError();
  }

  /** One change, atomic on its own and undone with an enclosing transaction. */
  #write<T>(fn: () => T): T {
    return this.transaction(fn);
  }

  #set<K, V>(map: Map<K, V>, key: K, value: V): void {
    if (map.has(key)) {
      const old = map.get(key) as V;
      this.#d.undo.push(() => map.set(key, old));
    } else {
      this.#d.undo.push(() => map.delete(key));
    }
    map.set(key, value);
  }

  #delete<K, V>(map: Map<K, V>, key: K): boolean {
    if (!map.has(key)) return false;
    const old = map.get(key) as V;
    map.delete(key);
    this.#d.undo.push(() => map.set(key, old));
    return true;
  }
}
