/**
 * An in-memory {@link ServerStore} for tests and benchmarks: same semantics and errors as
 * the SQLite store, nothing persisted. Every method validates fully before it mutates
 * and never awaits in between, so each call is atomic under concurrent use.
 *
 * The `dbKey` option is accepted and ignored (there is nothing at rest to seal).
 *
 * @module
 */

import { toHex, utf8 } from "../bytes.ts";
import { sha256 } from "../crypto/aead.ts";
import { UsageError } from "../errors.ts";
import {
  channelFull,
  checkChannelId,
  checkCommit,
  checkCount,
  checkDistinct,
  checkEnqueue,
  checkGroupName,
  checkIdentityKey,
  checkKeyPackage,
  checkKeyPackageBatch,
  checkUsername,
  closedError,
  dmRosterFixed,
  epochConflict,
  keyPackagesFull,
  newChannelId,
  notAMember,
  orderedPair,
  queueFull,
  resolveLimits,
  unknownChannel,
  unknownUser,
} from "./_common.ts";
import {
  type ChannelInfo,
  type CommitParams,
  type ConsumedKeyPackage,
  type CreateGroupParams,
  type Delivery,
  type DmResult,
  type EnqueueParams,
  type EnqueueResult,
  InProcessNotifier,
  type KeyPackageInput,
  type Notifier,
  type PendingLogin,
  type PurgeResult,
  type QueuedMessage,
  type ServerStore,
  type ServerStoreOptions,
  type SessionInfo,
  type StoreLimits,
  type UserInfo,
} from "./server_store.ts";

interface MemUser {
  record: Uint8Array;
  identityKey: Uint8Array | undefined;
  createdAt: number;
}

interface MemChannel {
  info: ChannelInfo;
  members: Set<string>;
}

interface MemMessage {
  sender: string;
  messageId: string;
  channelId: string | null;
  payload: Uint8Array;
  receivedAt: number;
}

interface MemQueue {
  nextSeq: number;
  entries: { seq: number; msg: MemMessage }[];
}

interface MemKeyPackages {
  batch: KeyPackageInput[];
  lastResort: KeyPackageInput | undefined;
}

function copyKp(p: KeyPackageInput): KeyPackageInput {
  return { ref: p.ref.slice(), data: p.data.slice(), notAfter: p.notAfter };
}

function tokenKey(token: Uint8Array): string {
  return toHex(sha256(utf8("token"), token));
}

/** The in-memory server store. */
export class MemoryServerStore implements ServerStore {
  readonly notifier: Notifier;
  readonly #clock: () => number;
  readonly #lim: StoreLimits;
  #closed = false;

  #secrets = new Map<string, Uint8Array>();
  #users = new Map<string, MemUser>();
  #pending = new Map<string, PendingLogin & { expiresAt: number }>();
  #sessions = new Map<string, SessionInfo>();
  #kps = new Map<string, MemKeyPackages>();
  #channels = new Map<string, MemChannel>();
  #groupNames = new Map<string, string>();
  #dms = new Map<string, string>();
  #sent = new Map<string, { deliveries: Delivery[]; createdAt: number }>();
  #queues = new Map<string, MemQueue>();

  /** Create an empty store. */
  constructor(options: ServerStoreOptions = {}) {
    this.notifier = options.notifier ?? new InProcessNotifier();
    this.#clock = options.clock ?? Date.now;
    this.#lim = resolveLimits(options.limits);
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  // ---- secrets ----

  getOrCreateSecret(name: string, create: () => Uint8Array): Promise<Uint8Array> {
    return run(() => {
      this.#open();
      let v = this.#secrets.get(name);
      if (v === undefined) {
        v = create().slice();
        this.#secrets.set(name, v);
      }
      return v.slice();
    });
  }

  // ---- users ----

  createUser(username: string, registrationRecord: Uint8Array): Promise<void> {
    return run(() => {
      this.#open();
      checkUsername(username);
      if (this.#users.has(username)) {
        throw new UsageError("Username is already taken", { code: "conflict" });
      }
      this.#users.set(username, {
        record: registrationRecord.slice(),
        identityKey: undefined,
        createdAt: this.#clock(),
      });
    });
  }

  getUser(username: string): Promise<UserInfo | undefined> {
    return run(() => {
      this.#open();
      const u = this.#users.get(username);
      if (u === undefined) return undefined;
      return { username, createdAt: u.createdAt, identityKey: u.identityKey?.slice() };
    });
  }

  getRegistrationRecord(username: string): Promise<Uint8Array | undefined> {
    return run(() => {
      this.#open();
      return this.#users.get(username)?.record.slice();
    });
  }

  setIdentityKey(
    username: string,
    key: Uint8Array,
    options: { replace?: boolean } = {},
  ): Promise<void> {
    return run(() => {
      this.#open();
      checkIdentityKey(key);
      const u = this.#users.get(username);
      if (u === undefined) throw unknownUser();
      if (u.identityKey !== undefined && !options.replace && toHex(u.identityKey) !== toHex(key)) {
        throw new UsageError("A different identity key is already published", {
          code: "conflict",
        });
      }
      u.identityKey = key.slice();
    });
  }

  getIdentityKey(username: string): Promise<Uint8Array | undefined> {
    return run(() => {
      this.#open();
      return this.#users.get(username)?.identityKey?.slice();
    });
  }

  // ---- logins and sessions ----

  savePendingLogin(loginId: Uint8Array, login: PendingLogin, expiresAt: number): Promise<void> {
    return run(() => {
      this.#open();
      checkUsername(login.username);
      this.#pending.set(toHex(loginId), {
        username: login.username,
        state: login.state.slice(),
        expiresAt,
      });
    });
  }

  takePendingLogin(loginId: Uint8Array): Promise<PendingLogin | undefined> {
    return run(() => {
      this.#open();
      const k = toHex(loginId);
      const p = this.#pending.get(k);
      if (p === undefined) return undefined;
      this.#pending.delete(k);
      if (p.expiresAt <= this.#clock()) return undefined;
      return { username: p.username, state: p.state };
    });
  }

  createSession(token: Uint8Array, username: string, expiresAt: number): Promise<void> {
    return run(() => {
      this.#open();
      if (!this.#users.has(username)) throw unknownUser();
      this.#sessions.set(tokenKey(token), { username, expiresAt });
    });
  }

  lookupSession(token: Uint8Array): Promise<SessionInfo | undefined> {
    return run(() => {
      this.#open();
      const s = this.#sessions.get(tokenKey(token));
      if (s === undefined || s.expiresAt <= this.#clock()) return undefined;
      return { ...s };
    });
  }

  revokeSession(token: Uint8Array): Promise<boolean> {
    return run(() => {
      this.#open();
      return this.#sessions.delete(tokenKey(token));
    });
  }

  revokeUserSessions(username: string): Promise<number> {
    return run(() => {
      this.#open();
      let n = 0;
      for (const [k, s] of this.#sessions) {
        if (s.username === username) {
          this.#sessions.delete(k);
          n++;
        }
      }
      return n;
    });
  }

  // ---- key packages ----

  #kpOf(username: string): MemKeyPackages {
    if (!this.#users.has(username)) throw unknownUser();
    let k = this.#kps.get(username);
    if (k === undefined) {
      k = { batch: [], lastResort: undefined };
      this.#kps.set(username, k);
    }
    return k;
  }

  addKeyPackages(username: string, packages: readonly KeyPackageInput[]): Promise<number> {
    return run(() => {
      this.#open();
      checkKeyPackageBatch(packages, this.#lim);
      const k = this.#kpOf(username);
      const have = new Set(k.batch.map((p) => toHex(p.ref)));
      const fresh: KeyPackageInput[] = [];
      for (const p of packages) {
        const r = toHex(p.ref);
        if (have.has(r)) continue;
        have.add(r);
        fresh.push(copyKp(p));
      }
      if (k.batch.length + fresh.length > this.#lim.maxKeyPackagesPerUser) {
        throw keyPackagesFull(this.#lim);
      }
      k.batch.push(...fresh);
      return this.#countKp(k);
    });
  }

  setLastResortKeyPackage(username: string, pkg: KeyPackageInput): Promise<void> {
    return run(() => {
      this.#open();
      checkKeyPackage(pkg, this.#lim);
      this.#kpOf(username).lastResort = copyKp(pkg);
    });
  }

  consumeKeyPackage(username: string): Promise<ConsumedKeyPackage | undefined> {
    return run(() => {
      this.#open();
      const k = this.#kpOf(username);
      const now = this.#clock();
      const i = k.batch.findIndex((p) => p.notAfter > now);
      if (i >= 0) {
        const [p] = k.batch.splice(i, 1);
        return { ...p!, lastResort: false };
      }
      if (k.lastResort !== undefined && k.lastResort.notAfter > now) {
        return { ...copyKp(k.lastResort), lastResort: true };
      }
      return undefined;
    });
  }

  #countKp(k: MemKeyPackages): number {
    const now = this.#clock();
    return k.batch.filter((p) => p.notAfter > now).length;
  }

  countKeyPackages(username: string): Promise<number> {
    return run(() => {
      this.#open();
      return this.#countKp(this.#kpOf(username));
    });
  }

  // ---- channels ----

  #channel(id: string): MemChannel {
    const c = this.#channels.get(id);
    if (c === undefined) throw unknownChannel();
    return c;
  }

  createGroupChannel(params: CreateGroupParams): Promise<ChannelInfo> {
    return run(() => {
      this.#open();
      checkGroupName(params.name);
      const id = params.id ?? newChannelId();
      checkChannelId(id);
      const epoch = params.epoch ?? 0;
      checkCount("epoch", epoch);
      if (!this.#users.has(params.creator)) throw unknownUser();
      if (this.#groupNames.has(params.name) || this.#channels.has(id)) {
        throw new UsageError("Channel already exists", { code: "conflict" });
      }
      const info: ChannelInfo = {
        id,
        kind: "group",
        name: params.name,
        createdBy: params.creator,
        createdAt: this.#clock(),
        epoch,
      };
      this.#channels.set(id, { info, members: new Set([params.creator]) });
      this.#groupNames.set(params.name, id);
      return { ...info };
    });
  }

  getOrCreateDm(a: string, b: string): Promise<DmResult> {
    return run(() => {
      this.#open();
      checkUsername(a);
      checkUsername(b);
      if (a === b) throw new UsageError("Cannot open a direct message channel with yourself");
      if (!this.#users.has(a) || !this.#users.has(b)) throw unknownUser();
      const [x, y] = orderedPair(a, b);
      const key = JSON.stringify([x, y]);
      const existing = this.#dms.get(key);
      if (existing !== undefined) {
        return { channel: { ...this.#channel(existing).info }, created: false };
      }
      const info: ChannelInfo = {
        id: newChannelId(),
        kind: "dm",
        name: undefined,
        createdBy: a,
        createdAt: this.#clock(),
        epoch: 0,
      };
      this.#channels.set(info.id, { info, members: new Set([x, y]) });
      this.#dms.set(key, info.id);
      return { channel: { ...info }, created: true };
    });
  }

  getChannel(channelId: string): Promise<ChannelInfo | undefined> {
    return run(() => {
      this.#open();
      const c = this.#channels.get(channelId);
      return c === undefined ? undefined : { ...c.info };
    });
  }

  findGroupByName(name: string): Promise<ChannelInfo | undefined> {
    return run(() => {
      this.#open();
      const id = this.#groupNames.get(name);
      return id === undefined ? undefined : { ...this.#channel(id).info };
    });
  }

  listChannels(username: string): Promise<ChannelInfo[]> {
    return run(() => {
      this.#open();
      const out: ChannelInfo[] = [];
      for (const c of this.#channels.values()) {
        if (c.members.has(username)) out.push({ ...c.info });
      }
      return out.sort((p, q) => (p.id < q.id ? -1 : p.id > q.id ? 1 : 0));
    });
  }

  listMembers(channelId: string): Promise<string[]> {
    return run(() => {
      this.#open();
      return [...this.#channel(channelId).members].sort();
    });
  }

  isMember(channelId: string, username: string): Promise<boolean> {
    return run(() => {
      this.#open();
      return this.#channels.get(channelId)?.members.has(username) ?? false;
    });
  }

  /** Validate a roster change without applying it. */
  #checkRoster(c: MemChannel, add: readonly string[], remove: readonly string[]): void {
    if (add.length === 0 && remove.length === 0) return;
    if (c.info.kind !== "group") throw dmRosterFixed();
    checkDistinct("member", add);
    checkDistinct("member", remove);
    let size = c.members.size;
    for (const u of add) {
      if (!this.#users.has(u)) throw unknownUser();
      if (!c.members.has(u)) size++;
    }
    for (const u of remove) if (c.members.has(u) && !add.includes(u)) size--;
    if (size > this.#lim.maxChannelMembers) throw channelFull(this.#lim);
  }

  #applyRoster(c: MemChannel, add: readonly string[], remove: readonly string[]): void {
    for (const u of remove) c.members.delete(u);
    for (const u of add) c.members.add(u);
  }

  addMembers(channelId: string, usernames: readonly string[]): Promise<void> {
    return run(() => {
      this.#open();
      const c = this.#channel(channelId);
      this.#checkRoster(c, usernames, []);
      this.#applyRoster(c, usernames, []);
    });
  }

  removeMembers(channelId: string, usernames: readonly string[]): Promise<void> {
    return run(() => {
      this.#open();
      const c = this.#channel(channelId);
      this.#checkRoster(c, [], usernames);
      this.#applyRoster(c, [], usernames);
    });
  }

  commitAndFanOut(params: CommitParams): Promise<EnqueueResult> {
    return run(() => {
      this.#open();
      checkCommit(params, this.#lim);
      const dup = this.#sent.get(sentKey(params));
      if (dup !== undefined) {
        return { deliveries: dup.deliveries.map((d) => ({ ...d })), duplicate: true };
      }
      const c = this.#channel(params.channelId);
      if (!c.members.has(params.sender)) throw notAMember();
      if (params.epoch !== c.info.epoch) throw epochConflict(c.info.epoch, params.epoch);
      const add = params.rosterAdd ?? [];
      const remove = params.rosterRemove ?? [];
      this.#checkRoster(c, add, remove);
      this.#checkQueues(params.recipients);
      // All checks passed: mutate.
      this.#applyRoster(c, add, remove);
      c.info.epoch = params.epoch + 1;
      return this.#append(params);
    }).then((r) => this.#notify(r));
  }

  // ---- delivery queues ----

  #checkQueues(recipients: readonly string[]): void {
    for (const r of recipients) {
      if (!this.#users.has(r)) throw unknownUser();
      const q = this.#queues.get(r);
      if (q !== undefined && q.entries.length >= this.#lim.maxQueueMessages) {
        throw queueFull(this.#lim);
      }
    }
  }

  #append(p: EnqueueParams): EnqueueResult {
    const now = this.#clock();
    const msg: MemMessage = {
      sender: p.sender,
      messageId: p.messageId,
      channelId: p.channelId,
      payload: p.payload.slice(),
      receivedAt: now,
    };
    const deliveries: Delivery[] = [];
    for (const r of p.recipients) {
      let q = this.#queues.get(r);
      if (q === undefined) {
        q = { nextSeq: 1, entries: [] };
        this.#queues.set(r, q);
      }
      const seq = q.nextSeq++;
      q.entries.push({ seq, msg });
      deliveries.push({ recipient: r, seq });
    }
    this.#sent.set(sentKey(p), { deliveries: deliveries.map((d) => ({ ...d })), createdAt: now });
    return { deliveries, duplicate: false };
  }

  #notify(r: EnqueueResult): EnqueueResult {
    if (!r.duplicate) { for (const d of r.deliveries) this.notifier.notify(d.recipient); }
    return r;
  }

  enqueue(params: EnqueueParams): Promise<EnqueueResult> {
    return run(() => {
      this.#open();
      checkEnqueue(params, this.#lim, false);
      const dup = this.#sent.get(sentKey(params));
      if (dup !== undefined) {
        return { deliveries: dup.deliveries.map((d) => ({ ...d })), duplicate: true };
      }
      this.#checkQueues(params.recipients);
      return this.#append(params);
    }).then((r) => this.#notify(r));
  }

  fetch(recipient: string, afterSeq: number, limit?: number): Promise<QueuedMessage[]> {
    return run(() => {
      this.#open();
      checkCount("sequence number", afterSeq);
      const n = Math.min(limit ?? this.#lim.maxFetchPage, this.#lim.maxFetchPage);
      checkCount("limit", n);
      const q = this.#queues.get(recipient);
      if (q === undefined) return [];
      const out: QueuedMessage[] = [];
      for (const e of q.entries) {
        if (out.length >= n) break;
        if (e.seq <= afterSeq) continue;
        out.push({
          seq: e.seq,
          sender: e.msg.sender,
          messageId: e.msg.messageId,
          channelId: e.msg.channelId,
          payload: e.msg.payload.slice(),
          receivedAt: e.msg.receivedAt,
        });
      }
      return out;
    });
  }

  ack(recipient: string, uptoSeq: number): Promise<number> {
    return run(() => {
      this.#open();
      checkCount("sequence number", uptoSeq);
      const q = this.#queues.get(recipient);
      if (q === undefined) return 0;
      const before = q.entries.length;
      q.entries = q.entries.filter((e) => e.seq > uptoSeq);
      return before - q.entries.length;
    });
  }

  queueDepth(recipient: string): Promise<number> {
    return run(() => {
      this.#open();
      return this.#queues.get(recipient)?.entries.length ?? 0;
    });
  }

  totalQueueDepth(): Promise<number> {
    return run(() => {
      this.#open();
      let n = 0;
      for (const q of this.#queues.values()) n += q.entries.length;
      return n;
    });
  }

  purgeExpired(now?: number): Promise<PurgeResult> {
    return run(() => {
      this.#open();
      const t = now ?? this.#clock();
      const cutoff = t - this.#lim.messageRetentionMs;
      const res: PurgeResult = {
        deliveries: 0,
        sessions: 0,
        keyPackages: 0,
        pendingLogins: 0,
        messages: 0,
      };
      for (const q of this.#queues.values()) {
        const before = q.entries.length;
        q.entries = q.entries.filter((e) => e.msg.receivedAt > cutoff);
        res.deliveries += before - q.entries.length;
      }
      for (const [k, m] of this.#sent) {
        if (m.createdAt <= cutoff) {
          this.#sent.delete(k);
          res.messages++;
        }
      }
      for (const [k, s] of this.#sessions) {
        if (s.expiresAt <= t) {
          this.#sessions.delete(k);
          res.sessions++;
        }
      }
      for (const [k, p] of this.#pending) {
        if (p.expiresAt <= t) {
          this.#pending.delete(k);
          res.pendingLogins++;
        }
      }
      for (const k of this.#kps.values()) {
        const before = k.batch.length;
        k.batch = k.batch.filter((p) => p.notAfter > t);
        res.keyPackages += before - k.batch.length;
      }
      return res;
    });
  }
}

function sentKey(p: { sender: string; messageId: string }): string {
  return JSON.stringify([p.sender, p.messageId]);
}

/** Run a synchronous body as a promise, turning a throw into a rejection. */
function run<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}
