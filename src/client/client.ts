/**
 * QpqClient: a messenger account on one device. It ties the local encrypted store, the
 * server connection, OPAQUE login and MLS groups together.
 *
 * ```
 * open ─► connect ─► resume(token) ─┬─► ok
 *                                   └─► login (OPAQUE) ─► new token in the state file
 * send(conv, text): sync ─► MLS encrypt ─► [state + history + outbox] in one transaction
 *                   ─► enqueue ─► outbox entry removed   (network down: stays queued)
 * receive: fetch after cursor (server order) ─► welcome→join | commit→apply |
 *          application→decrypt ─► [group state + message + cursor] in one transaction
 *          ─► ack up to the cursor (only after it is stored locally)
 * own commit: stage ─► persist ─► send ─► merge | epoch_conflict ─► discard, sync, retry
 * ```
 *
 * @module
 */
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
} from "../auth/mod.ts";
import { fingerprint, IdentityKeyPair, safetyNumber } from "../crypto/mod.ts";
import {
  addMembers,
  checkCredentialBinding,
  createGroup,
  createKeyPackage,
  decodeGroupState,
  DEFAULT_SUITE,
  discardPendingCommit,
  encodeGroupState,
  encryptMessage,
  epochAuthenticator,
  joinFromWelcome,
  leaveGroup,
  listMembers,
  mergePendingCommit,
  type MlsGroupState,
  type MlsSuiteName,
  processMessage,
  removeMembers,
  selfUpdate,
  type StagedCommit,
  verifyRoster,
} from "../mls/mod.ts";
import {
  type ChannelInfo,
  decodeFrame,
  type DeliveredMessage,
  encodeFrame,
  type Push,
  type Request,
} from "../wire/mod.ts";
import { constantTimeEqual, fromHex, fromUtf8, toHex, utf8, zeroize } from "../bytes.ts";
import { AuthError, QpqError, TransportError, UsageError, ValidationError } from "../errors.ts";
import { MAX_FETCH_PAGE, WIRE_VERSION } from "../limits.ts";
import {
  type Connector,
  connectServer,
  type ServerLink as ServerConnection,
} from "./connection.ts";
import { uuidToString, uuidv7 } from "./ids.ts";
import type { Conversation, LocalStore, StoredMessage } from "./local.ts";

/** KeyPackages uploaded at registration and kept on the server. */
export const KEY_PACKAGE_BATCH = 20;
/** Refill when the server holds fewer than this many. */
export const KEY_PACKAGE_REFILL_BELOW = 5;
/** KeyPackage lifetime (seconds). */
export const KEY_PACKAGE_LIFETIME_SECONDS = 30 * 24 * 3600;
/** How often an own commit is retried after an epoch conflict. */
const COMMIT_RETRIES = 5;

const KV_CURSOR = "cursor";
const KV_GROUP = "group:";
const KV_KEY_PACKAGE = "kp:";
const KV_LAST_RESORT = "kplr:";
const KV_PENDING_COMMIT = "pcommit:";
const KV_DIRECTORY = "dir:";
const KV_LAST_UPDATE = "upd:";
/** Groups get a self-update when our last commit in them is older than this. */
export const SELF_UPDATE_INTERVAL_MS = 24 * 3600 * 1000;
/** Requests of the login flow itself: never retried after a re-login. */
const SESSION_KINDS = new Set([
  "registerStart",
  "registerFinish",
  "loginStart",
  "loginFinish",
  "resume",
  "logout",
]);
/** Refusals that may pass: the message stays queued. */
const TEMPORARY_REFUSALS = new Set(["quota", "rate_limited", "unavailable", "timeout"]);
/** `leave:<conversation id>:<user>`: a leave proposal we still have to commit. */
const KV_LEAVE = "leave:";

/** Something the client reports while it works (joins, incoming messages, progress). */
export type ClientEvent =
  | { kind: "message"; conversation: Conversation; message: StoredMessage }
  | { kind: "joined"; conversation: Conversation; inviter: string }
  | { kind: "members"; conversation: Conversation; added: string[]; removed: string[]; by: string }
  | { kind: "removed"; conversation: Conversation; by: string }
  | { kind: "progress"; text: string }
  | { kind: "warning"; text: string };

/** Options of {@link QpqClient.create}. */
export interface QpqClientOptions {
  /** The opened local store (its meta names the user and the server). */
  store: LocalStore;
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
  /** How to open a server connection (default: QUIC); the simulation wraps it. */
  connect?: Connector | undefined;
}

/** Options of {@link QpqClient.register}. */
export interface RegisterOptions {
  /** The server's invite token (default `devtoken`). */
  authToken?: string | undefined;
}

/** Plain content of an application message. */
interface Content {
  /** Text. */
  t: string;
  /** Sent at (ms). */
  ts: number;
  /** Message id (uuid string) chosen by the sender. */
  id: string;
}

function conversationName(c: ChannelInfo, me: string): string {
  if (c.channelKind === "group") return `#${c.name}`;
  const peer = c.members.find((m) => m !== me) ?? me;
  return `@${peer}`;
}

function encodeRequest(request: Request): Uint8Array {
  return encodeFrame({ version: WIRE_VERSION, requestId: 0, type: "request", request });
}

function isConflict(e: unknown): boolean {
  return e instanceof QpqError && e.code === "epoch_conflict";
}

/** A messenger account on one device. */
export class QpqClient {
  #store: LocalStore;
  #password: string;
  #conn: ServerConnection | undefined;
  #options: QpqClientOptions;
  #identity: IdentityKeyPair;
  #syncing: Promise<number> | undefined;
  #subscribed = false;
  /** The connection our session is bound to (resume or login done on it). */
  #sessionConn: ServerConnection | undefined;
  #directory = new Map<string, Uint8Array>();
  /** Serializes every load-modify-save of MLS group state (push-driven sync vs send/commit). */
  #lock: Promise<void> = Promise.resolve();
  /** Set by {@link subscribe}: keep server push alive across reconnects until close. */
  #wantPush = false;
  #closing = false;
  #resubscribeTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(options: QpqClientOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#password = options.password;
    const m = options.store.meta;
    this.#identity = IdentityKeyPair.fromBytes(m.identitySeed, m.identityPublic);
  }

  /** A client over an opened store; call {@link connect} (or use {@link open}) next. */
  static create(options: QpqClientOptions): QpqClient {
    return new QpqClient(options);
  }

  /** Our username. */
  get username(): string {
    return this.#store.meta.username;
  }

  /** The server address in use. */
  get server(): string {
    return this.#options.server ?? this.#store.meta.server;
  }

  /** Our Ed25519 identity public key. */
  get identityPublicKey(): Uint8Array {
    return this.#identity.publicKey;
  }

  /** The local store. */
  get store(): LocalStore {
    return this.#store;
  }

  /** True while connected. */
  get connected(): boolean {
    return this.#conn !== undefined;
  }

  #emit(e: ClientEvent): void {
    this.#options.onEvent?.(e);
  }

  /** Run `fn` alone: no other group-state update interleaves with it. Not re-entrant. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.then(() => {}, () => {});
    return run;
  }

  #signer() {
    return { publicKey: this.#identity.publicKey, privateKey: this.#identity.exportPrivateKey() };
  }

  // ------------------------------------------------------------------ connection

  /** Connect to the server (without logging in). */
  async connect(): Promise<void> {
    if (this.#conn) return;
    let conn: ServerConnection | undefined = undefined;
    conn = await (this.#options.connect ?? connectServer)({
      server: this.server,
      caCertPem: this.#options.caCertPem,
      timeoutMs: this.#options.timeoutMs,
      onPush: (push) => this.#onPush(push),
      onClose: () => {
        // a connection we already replaced (or dropped on purpose) must not clear the new one
        if (conn === undefined || this.#conn !== conn) return;
        this.#conn = undefined;
        this.#subscribed = false;
        if (this.#wantPush && !this.#closing) {
          this.#emit({ kind: "warning", text: "Connection to the server lost: reconnecting" });
          this.#resubscribeLater(1_000);
        }
      },
    });
    this.#conn = conn;
  }

  /** Reconnect, subscribe again and catch up, retrying with back-off until it works. */
  #resubscribeLater(delayMs: number): void {
    if (this.#resubscribeTimer !== undefined || this.#closing) return;
    this.#resubscribeTimer = setTimeout(async () => {
      this.#resubscribeTimer = undefined;
      if (!this.#wantPush || this.#closing || this.#subscribed) return;
      try {
        await this.subscribe();
        await this.sync();
        this.#emit({ kind: "progress", text: "Reconnected" });
      } catch {
        if (!this.#subscribed) this.#resubscribeLater(Math.min(delayMs * 2, 30_000));
      }
    }, delayMs);
  }

  #rpc(): Pick<ServerConnection, "call"> {
    const conn = this.#conn;
    if (!conn) {
      throw new TransportError("Not connected to the server", { code: "unavailable" });
    }
    return {
      call: async (request, expect, options) => {
        try {
          return await conn.call(request, expect, options);
        } catch (e) {
          // The server ended this connection's session (expiry, logout elsewhere): log in
          // again once and repeat the request.
          if (!(e instanceof AuthError && e.code === "auth") || SESSION_KINDS.has(request.kind)) {
            throw e;
          }
          this.#sessionConn = undefined;
          await this.ensureSession();
          return await this.#conn!.call(request, expect, options);
        }
      },
    };
  }

  /** Close the connection (the store stays open; the caller closes it). */
  async disconnect(): Promise<void> {
    const c = this.#conn;
    this.#conn = undefined;
    this.#subscribed = false;
    await c?.close();
  }

  /** Register this account on the server (identity key included) and log in. */
  async register(options: RegisterOptions = {}): Promise<void> {
    await this.connect();
    const authToken = options.authToken ?? "devtoken";
    const start = await clientRegistrationStart(this.#password);
    const started = await this.#rpc().call(
      { kind: "registerStart", username: this.username, request: start.request, authToken },
      "registerStarted",
    );
    const fin = await clientRegistrationFinish(start.state, this.#password, started.data);
    zeroize(fin.exportKey);
    await this.#rpc().call({
      kind: "registerFinish",
      username: this.username,
      record: fin.record,
      authToken,
      identityKey: this.#identity.publicKey,
    }, "ok");
    await this.login();
    await this.refillKeyPackages(true);
  }

  /** OPAQUE login; stores the new session token. */
  async login(): Promise<void> {
    await this.connect();
    const start = await clientLoginStart(this.#password);
    const started = await this.#rpc().call(
      { kind: "loginStart", username: this.username, request: start.request },
      "loginStarted",
    );
    const fin = await clientLoginFinish(start.state, this.#password, started.response);
    if (fin.kind !== "ok") throw fin.error;
    zeroize(fin.sessionKey, fin.exportKey);
    const session = await this.#rpc().call(
      {
        kind: "loginFinish",
        username: this.username,
        finish: fin.finishRequest,
        loginId: started.loginId,
      },
      "session",
    );
    await this.#store.updateMeta({
      sessionToken: session.token,
      sessionExpiresAt: session.expiresAtMs,
    });
    this.#sessionConn = this.#conn;
    // Registration writes the account and the identity key separately: if a crash came
    // between them, publish the key now.
    try {
      await this.#rpc().call({ kind: "fetchIdentityKey", username: this.username }, "identityKey");
    } catch (e) {
      if (!(e instanceof QpqError && e.code === "not_found")) throw e;
      await this.#rpc().call({ kind: "publishIdentityKey", key: this.#identity.publicKey }, "ok");
    }
  }

  /**
   * Connect and make sure the connection is logged in: resume the stored session, or log
   * in with the password when it is missing, expired or revoked.
   */
  async ensureSession(): Promise<void> {
    await this.#ensureLoggedIn();
    // a new connection of a subscribed client subscribes again (push survives reconnects)
    if (this.#wantPush && !this.#subscribed && this.#conn) {
      try {
        await this.#conn.call({ kind: "subscribe", afterSeq: this.#cursor() }, "ok");
        this.#subscribed = true;
      } catch {
        this.#resubscribeLater(1_000);
      }
    }
  }

  async #ensureLoggedIn(): Promise<void> {
    await this.connect();
    const m = this.#store.meta;
    // one resume per connection, not one per operation
    if (this.#sessionConn === this.#conn && (m.sessionExpiresAt ?? 0) > Date.now()) return;
    if (m.sessionToken && m.sessionToken.length > 0 && (m.sessionExpiresAt ?? 0) > Date.now()) {
      try {
        await this.#rpc().call({ kind: "resume", token: m.sessionToken }, "session");
        this.#sessionConn = this.#conn;
        return;
      } catch (e) {
        if (!(e instanceof AuthError)) throw e;
      }
    }
    await this.login();
  }

  /** Revoke the session on the server and forget the token locally. */
  async logout(): Promise<void> {
    try {
      await this.ensureSession();
      await this.#rpc().call({ kind: "logout" }, "ok");
    } finally {
      this.#sessionConn = undefined;
      await this.#store.updateMeta({ sessionToken: undefined, sessionExpiresAt: undefined });
    }
  }

  /** Upload KeyPackages until the server holds a full batch (and a last-resort one). */
  async refillKeyPackages(force = false): Promise<number> {
    const have = (await this.#rpc().call({ kind: "countKeyPackages" }, "keyPackageCount")).count;
    if (!force && have >= KEY_PACKAGE_REFILL_BELOW) return have;
    const need = Math.max(0, KEY_PACKAGE_BATCH - have);
    const packages: { data: Uint8Array }[] = [];
    const signer = this.#signer();
    for (let i = 0; i < need; i++) {
      const kp = await createKeyPackage({
        username: this.username,
        identity: signer,
        lifetimeSeconds: KEY_PACKAGE_LIFETIME_SECONDS,
      });
      this.#store.putKv(KV_KEY_PACKAGE + toHex(kp.ref), kp.privatePackage);
      packages.push({ data: kp.publicPackage });
    }
    let lastResort: Uint8Array = new Uint8Array(0);
    if (this.#store.listKv(KV_LAST_RESORT).length === 0) {
      const kp = await createKeyPackage({
        username: this.username,
        identity: signer,
        lifetimeSeconds: KEY_PACKAGE_LIFETIME_SECONDS,
        lastResort: true,
      });
      this.#store.putKv(KV_LAST_RESORT + toHex(kp.ref), kp.privatePackage);
      lastResort = kp.publicPackage;
    }
    zeroize(signer.privateKey);
    const res = await this.#rpc().call(
      { kind: "uploadKeyPackages", packages, lastResort },
      "keyPackageCount",
    );
    return res.count;
  }

  // ------------------------------------------------------------------ directory

  /**
   * The directory's identity key for a user, pinned on first use: if the server later
   * reports another key for someone we already know, that is refused (a compromised or
   * mistaken directory), and `verify` shows the safety number to compare in person.
   */
  async #directoryKey(username: string): Promise<Uint8Array | undefined> {
    const hit = this.#directory.get(username);
    if (hit) return hit;
    let key: Uint8Array;
    try {
      key = (await this.#rpc().call({ kind: "fetchIdentityKey", username }, "identityKey")).key;
    } catch (e) {
      if (e instanceof QpqError && e.code === "not_found") return undefined;
      throw e;
    }
    const pinned = this.#store.getKv(KV_DIRECTORY + username);
    if (pinned && !constantTimeEqual(pinned, key)) {
      throw new ValidationError(
        `The server now reports a different identity key for ${username}: compare safety numbers (qpq verify ${username})`,
      );
    }
    if (!pinned) this.#store.putKv(KV_DIRECTORY + username, key);
    this.#directory.set(username, key);
    return key;
  }

  /**
   * The safety number shared with `username` (the same on both sides) and their key's
   * fingerprint: read them to each other to rule out a lying server.
   */
  async verify(username: string): Promise<{ safetyNumber: string; fingerprint: string }> {
    const user = username.replace(/^@/, "");
    await this.ensureSession();
    const key = await this.#directoryKey(user);
    if (!key) throw new UsageError(`Unknown user ${user}`, { code: "not_found" });
    return {
      safetyNumber: safetyNumber(this.identityPublicKey, this.username, key, user),
      fingerprint: fingerprint(key),
    };
  }

  /**
   * Commit a self-update in every group whose last own commit is older than `maxAgeMs`
   * (post-compromise security: fresh path secrets). Returns the groups updated.
   */
  async selfUpdateDue(maxAgeMs = SELF_UPDATE_INTERVAL_MS): Promise<string[]> {
    const done: string[] = [];
    for (const c of this.listConversations()) {
      if (c.kind === "self" || !c.channelId) continue;
      const last = this.#store.getKv(KV_LAST_UPDATE + c.channelId);
      if (last && Date.now() - Number(fromUtf8(last)) < maxAgeMs) continue;
      await this.update(c.name);
      done.push(c.name);
    }
    return done;
  }

  // ------------------------------------------------------------------ groups

  #loadGroup(channelHex: string): MlsGroupState | undefined {
    const b = this.#store.getKv(KV_GROUP + channelHex);
    return b ? decodeGroupState(b) : undefined;
  }

  #saveGroup(channelHex: string, state: MlsGroupState): void {
    this.#store.putKv(KV_GROUP + channelHex, encodeGroupState(state));
  }

  /** Find a conversation by "@user", "#group", "user" or "group". */
  conversation(ref: string): Conversation {
    const me = this.username;
    const candidates = ref.startsWith("@") || ref.startsWith("#") ? [ref] : [`#${ref}`, `@${ref}`];
    for (const name of candidates) {
      if (name === `@${me}`) return this.#selfConversation();
      const c = this.#store.findConversationByName(name);
      if (c) return c;
    }
    throw new UsageError(`No conversation ${ref}: see qpq list`, { code: "not_found" });
  }

  #selfConversation(): Conversation {
    const existing = this.#store.getConversation("self");
    if (existing) return existing;
    const c: Conversation = {
      id: "self",
      kind: "self",
      name: `@${this.username}`,
      createdAt: Date.now(),
    };
    this.#store.upsertConversation(c);
    return c;
  }

  /**
   * Local conversations we are in: groups and DMs we left or were removed from stay in the
   * history (see {@link history}) but are not listed.
   */
  listConversations(): Conversation[] {
    return this.#store.listConversations().filter((c) =>
      c.kind === "self" || (c.channelId !== undefined && this.#store.getKv(KV_GROUP + c.channelId))
    );
  }

  /** Open (or find) the DM with `peer`; the self-DM is a local notepad. */
  async dm(peer: string): Promise<Conversation> {
    const user = peer.replace(/^@/, "");
    if (user === this.username) return this.#selfConversation();
    const existing = this.#store.findConversationByName(`@${user}`);
    if (existing && existing.channelId && this.#loadGroup(existing.channelId)) return existing;
    await this.ensureSession();
    const channel = await this.#rpc().call({ kind: "createDm", username: user }, "channel");
    const hex = toHex(channel.channelId);
    const conv = this.#upsertChannel(channel);
    if (this.#loadGroup(hex)) return conv;
    // The peer may have created the group already: its Welcome is then in our queue.
    await this.sync();
    if (this.#loadGroup(hex)) return conv;
    const state = await createGroup({
      groupId: channel.channelId,
      username: this.username,
      identity: this.#signer(),
      suite: DEFAULT_SUITE,
    });
    this.#saveGroup(hex, state);
    try {
      await this.#addToGroup(conv, [user]);
    } catch (e) {
      // A DM group without the peer would be reused by every later dm(): drop it (unless
      // the conflict retries already left us in the peer's group), so the next try starts over.
      const state = this.#loadGroup(hex);
      if (state && !listMembers(state).some((m) => m.username === user)) {
        this.#store.deleteKv(KV_GROUP + hex);
      }
      throw e;
    }
    return conv;
  }

  /** Create a group; we are its first member. */
  async createGroup(name: string, suite: MlsSuiteName = DEFAULT_SUITE): Promise<Conversation> {
    const n = name.replace(/^#/, "");
    await this.ensureSession();
    const channel = await this.#rpc().call({ kind: "createGroup", name: n }, "channel");
    const state = await createGroup({
      groupId: channel.channelId,
      username: this.username,
      identity: this.#signer(),
      suite,
    });
    const hex = toHex(channel.channelId);
    this.#store.transaction(() => {
      this.#saveGroup(hex, state);
      this.#store.putKv(KV_LAST_UPDATE + hex, utf8(String(Date.now())));
      this.#upsertChannel(channel);
    });
    return this.conversation(`#${n}`);
  }

  #upsertChannel(c: ChannelInfo): Conversation {
    const hex = toHex(c.channelId);
    const prev = this.#store.getConversation(hex);
    const conv: Conversation = {
      id: hex,
      kind: c.channelKind,
      name: conversationName(c, this.username),
      ...(c.channelKind === "dm" ? { peer: c.members.find((m) => m !== this.username) ?? "" } : {}),
      channelId: hex,
      createdAt: prev?.createdAt ?? Date.now(),
    };
    this.#store.upsertConversation(conv);
    return conv;
  }

  #groupOf(conv: Conversation): { hex: string; state: MlsGroupState } {
    if (conv.kind === "self" || !conv.channelId) {
      throw new UsageError("The notepad has no members to change");
    }
    const state = this.#loadGroup(conv.channelId);
    if (!state) {
      throw new UsageError(`You are not a member of ${conv.name}`, { code: "not_found" });
    }
    return { hex: conv.channelId, state };
  }

  /** Invite users to a group: one commit adds them all; they join from the Welcome. */
  async invite(
    ref: string,
    users: string[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<void> {
    const conv = this.conversation(ref);
    if (conv.kind !== "group") {
      throw new UsageError("Invite works on groups: use dm for one person");
    }
    await this.ensureSession();
    await this.#addToGroup(conv, users.map((u) => u.replace(/^@/, "")), onProgress);
  }

  async #addToGroup(
    conv: Conversation,
    users: string[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<void> {
    const packages: Uint8Array[] = [];
    for (const u of users) {
      const kp = await this.#rpc().call({ kind: "fetchKeyPackage", username: u }, "keyPackage");
      packages.push(kp.data);
      onProgress?.(packages.length, users.length);
    }
    await this.#commit(conv, async (state) => {
      // After an epoch conflict and re-sync some may be members already (two sides opening
      // the same DM at once: we joined the peer's group): add only the others.
      const present = new Set(listMembers(state).map((m) => m.username));
      const missing = users.flatMap((u, i) => present.has(u) ? [] : [{ u, kp: packages[i]! }]);
      if (missing.length === 0) return undefined;
      const staged = await addMembers(state, missing.map((m) => m.kp));
      for (const m of staged.added) {
        checkCredentialBinding(m, await this.#directoryKey(m.username));
      }
      return { staged, roster: { add: missing.map((m) => m.u), welcome: true } };
    });
  }

  /** Remove users from a group; they cannot read anything sent afterwards. */
  async remove(ref: string, users: string[]): Promise<void> {
    const conv = this.conversation(ref);
    if (conv.kind !== "group") throw new UsageError("Remove works on groups");
    await this.ensureSession();
    const names = users.map((u) => u.replace(/^@/, ""));
    await this.#commit(conv, async (state) => ({
      staged: await removeMembers(state, names),
      roster: { remove: names },
    }));
  }

  /** Commit a self-update (new path secrets: post-compromise security). */
  async update(ref: string): Promise<void> {
    const conv = this.conversation(ref);
    await this.ensureSession();
    await this.#commit(conv, async (state) => ({ staged: await selfUpdate(state), roster: {} }));
  }

  /**
   * Stage, persist, send and merge an own commit, re-syncing and retrying on an epoch
   * conflict. `make` builds the commit (and its roster change) from the current state each
   * attempt, or returns undefined when there is nothing left to do.
   */
  async #commit(
    conv: Conversation,
    make: (state: MlsGroupState) => Promise<
      | { staged: StagedCommit; roster: { add?: string[]; remove?: string[]; welcome?: boolean } }
      | undefined
    >,
  ): Promise<void> {
    for (let attempt = 0;; attempt++) {
      await this.sync();
      const retry = await this.#exclusive(async () => {
        const { hex, state } = this.#groupOf(conv);
        const made = await make(state);
        if (!made) return false;
        const { staged, roster } = made;
        const welcome = roster.welcome && staged.outbound.welcome
          ? staged.outbound.welcome
          : undefined;
        const request: Request = {
          kind: "commit",
          channelId: fromHex(hex),
          epoch: Number(state.epoch),
          messageId: uuidv7(),
          payload: staged.outbound.commit,
          add: roster.add ?? [],
          remove: [
            ...new Set([...(roster.remove ?? []), ...staged.removed.map((m) => m.username)]),
          ],
          welcomes: [],
          welcome: welcome ?? new Uint8Array(0),
          welcomeFor: welcome ? (roster.add ?? []) : [],
        };
        // Staged state and the exact request are stored together before anything is sent:
        // after a crash or a lost answer the same request is sent again (the server keeps
        // one copy), so the outcome is never guessed.
        this.#store.transaction(() => {
          this.#saveGroup(hex, staged.state);
          this.#store.putKv(KV_PENDING_COMMIT + hex, encodeRequest(request));
        });
        const outcome = await this.#pushCommit(hex, request);
        if (outcome !== "accepted") {
          if (isConflict(outcome) && attempt < COMMIT_RETRIES) return true;
          throw outcome;
        }
        return false;
      });
      if (!retry) return;
    }
  }

  /**
   * Send a stored own commit until the server answers. Accepted (also as a duplicate of an
   * earlier try): the pending commit is merged. Refused: it is discarded and the error
   * returned. Unreachable: it stays pending (resolved by the next sync) and this throws.
   */
  async #pushCommit(hex: string, request: Request): Promise<"accepted" | QpqError> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (attempt > 0) {
          await this.disconnect();
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
        if (!this.#conn) await this.ensureSession();
        await this.#rpc().call(request, "committed");
        const state = this.#loadGroup(hex);
        this.#store.transaction(() => {
          if (state?.hasPendingCommit) {
            const merged = mergePendingCommit(state);
            this.#saveGroup(hex, merged.state);
            merged.consumed.forEach((c) => zeroize(c));
          }
          this.#store.deleteKv(KV_PENDING_COMMIT + hex);
          this.#store.putKv(KV_LAST_UPDATE + hex, utf8(String(Date.now())));
        });
        return "accepted";
      } catch (e) {
        if (e instanceof TransportError || !(e instanceof QpqError)) {
          lastError = e;
          continue;
        }
        const state = this.#loadGroup(hex);
        if (state?.hasPendingCommit) {
          const back = await discardPendingCommit(state);
          this.#store.transaction(() => {
            this.#saveGroup(hex, back.state);
            this.#store.deleteKv(KV_PENDING_COMMIT + hex);
          });
        } else this.#store.deleteKv(KV_PENDING_COMMIT + hex);
        return e;
      }
    }
    throw new TransportError(
      "Server unreachable: the group change is kept and completed when the server is back",
      { code: "unavailable", cause: lastError },
    );
  }

  /** Finish own commits left pending by a crash or a lost connection (before receiving). */
  async #resolvePendingCommits(): Promise<void> {
    for (const key of this.#store.listKv(KV_PENDING_COMMIT)) {
      const hex = key.slice(KV_PENDING_COMMIT.length);
      const bytes = this.#store.getKv(key);
      const frame = bytes ? decodeFrame(bytes) : undefined;
      if (!frame || frame.type !== "request" || !this.#loadGroup(hex)?.hasPendingCommit) {
        this.#store.deleteKv(key);
        continue;
      }
      await this.#exclusive(() => this.#pushCommit(hex, frame.request));
    }
  }

  /** Members of a conversation, from the local MLS state (verified against the directory). */
  members(ref: string): string[] {
    const conv = this.conversation(ref);
    if (conv.kind === "self") return [this.username];
    return listMembers(this.#groupOf(conv).state).map((m) => m.username);
  }

  /** The MLS epoch and epoch authenticator of a conversation (both sides must agree). */
  epochInfo(ref: string): { epoch: bigint; authenticator: string } {
    const { state } = this.#groupOf(this.conversation(ref));
    return { epoch: state.epoch, authenticator: toHex(epochAuthenticator(state)) };
  }

  /** Leave a group: propose our removal; another member commits it. */
  async leave(ref: string): Promise<void> {
    const conv = this.conversation(ref);
    if (conv.kind !== "group") throw new UsageError("Leave works on groups");
    await this.ensureSession();
    await this.sync();
    await this.#exclusive(async () => {
      const { hex, state } = this.#groupOf(conv);
      const enc = await leaveGroup(state);
      await this.#rpc().call({
        kind: "enqueue",
        channelId: fromHex(hex),
        messageId: uuidv7(),
        payload: enc.outbound,
        messageKind: "proposal",
        epoch: Number(state.epoch),
        recipients: [],
      }, "enqueued");
      this.#store.transaction(() => {
        this.#store.deleteKv(KV_GROUP + hex);
      });
      enc.consumed.forEach((c) => zeroize(c));
    });
  }

  // ------------------------------------------------------------------ sending

  /**
   * Send a text message. It is stored locally and queued before it goes out, so nothing
   * is lost when the network fails: queued messages go out on the next {@link flushOutbox}
   * (every command that reaches the server flushes first). When the server cannot be
   * reached the message is encrypted with the state we have and stays queued: check
   * {@link pendingCount}.
   */
  async send(ref: string, text: string): Promise<StoredMessage> {
    const conv = this.conversation(ref);
    const id = uuidv7();
    const now = Date.now();
    const message: StoredMessage = {
      conversationId: conv.id,
      messageId: uuidToString(id),
      sender: this.username,
      body: text,
      sentAt: now,
      receivedAt: now,
      direction: "out",
      status: conv.kind === "self" ? "delivered" : "pending",
    };
    if (conv.kind === "self") {
      this.#store.addMessage(message);
      return message;
    }
    let online = true;
    try {
      await this.ensureSession();
      await this.flushOutbox();
      await this.sync();
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      online = false;
      await this.disconnect();
    }
    const request = await this.#exclusive(async () => {
      const { hex, state } = this.#groupOf(conv);
      if (state.hasPendingCommit) {
        throw new UsageError("A group change is still pending: try again");
      }
      if (listMembers(state).length < 2) {
        throw new UsageError(`Nobody else is in ${conv.name} yet: invite someone first`);
      }
      const content: Content = { t: text, ts: now, id: message.messageId };
      const enc = await encryptMessage(state, utf8(JSON.stringify(content)));
      const request: Request = {
        kind: "enqueue",
        channelId: fromHex(hex),
        messageId: id,
        payload: enc.outbound,
        messageKind: "application",
        epoch: Number(state.epoch),
        recipients: [],
      };
      const encoded = encodeFrame({
        version: WIRE_VERSION,
        requestId: 0,
        type: "request",
        request,
      });
      this.#store.transaction(() => {
        this.#saveGroup(hex, enc.state);
        this.#store.addMessage(message);
        this.#store.addOutbox({
          messageId: message.messageId,
          conversationId: conv.id,
          request: encoded,
          createdAt: now,
          attempts: 0,
        });
      });
      enc.consumed.forEach((c) => zeroize(c));
      return request;
    });
    if (online) await this.#deliver(message.messageId, request);
    return message;
  }

  /**
   * Send one queued request. A dropped connection is retried (same message id: the server
   * keeps one copy); an unreachable server leaves it queued (false); a refusal by the
   * server removes it from the queue and throws (retrying could never succeed).
   */
  async #deliver(messageId: string, request: Request): Promise<boolean> {
    const delays = [0, 200, 800];
    for (const d of delays) {
      if (d) await new Promise((r) => setTimeout(r, d));
      try {
        if (!this.#conn) await this.ensureSession();
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        await this.disconnect();
        break; // no server: do not wait for another connect timeout
      }
      try {
        await this.#rpc().call(request, "enqueued");
        this.#store.transaction(() => {
          this.#store.removeOutbox(messageId);
          this.#store.setMessageStatus(messageId, "sent");
        });
        return true;
      } catch (e) {
        if (
          !(e instanceof TransportError) && e instanceof QpqError && TEMPORARY_REFUSALS.has(e.code)
        ) {
          // a recipient's queue is full or the server is busy: keep it for later
          this.#store.bumpOutbox(messageId);
          this.#emit({ kind: "warning", text: `Message kept in the queue: ${e.message}` });
          return false;
        }
        if (!(e instanceof TransportError)) {
          this.#store.removeOutbox(messageId);
          throw e;
        }
        this.#store.bumpOutbox(messageId);
        await this.disconnect();
      }
    }
    return false;
  }

  /**
   * Send everything still queued (oldest first). Returns how many went out. A queued
   * message the server refuses is dropped from the queue with a warning.
   */
  async flushOutbox(): Promise<number> {
    let sent = 0;
    for (const e of this.#store.listOutbox()) {
      const frame = decodeFrame(e.request);
      if (frame.type !== "request") {
        this.#store.removeOutbox(e.messageId);
        continue;
      }
      let ok: boolean;
      try {
        ok = await this.#deliver(e.messageId, frame.request);
      } catch (err) {
        if (err instanceof TransportError || !(err instanceof QpqError)) throw err;
        this.#emit({
          kind: "warning",
          text: `A queued message was refused by the server: ${err.message}`,
        });
        continue;
      }
      if (ok) sent++;
      else break;
    }
    return sent;
  }

  /** Messages waiting to be sent. */
  pendingCount(): number {
    return this.#store.listOutbox().length;
  }

  // ------------------------------------------------------------------ receiving

  /** Fetch and process everything waiting on the server, in server order. Returns the count. */
  async sync(): Promise<number> {
    this.#syncing ??= this.#syncLoop().finally(() => (this.#syncing = undefined));
    const n = await this.#syncing;
    await this.#commitLeaves();
    return n;
  }

  /**
   * Commit the removal of members who asked to leave. Runs after a sync, never inside one
   * (a commit syncs first). When another member committed it first, nothing is left to do.
   */
  async #commitLeaves(): Promise<void> {
    for (const key of this.#store.listKv(KV_LEAVE)) {
      if (!this.#store.getKv(key)) continue; // done by a nested sync meanwhile
      const [convId = "", user = ""] = key.slice(KV_LEAVE.length).split(":");
      this.#store.deleteKv(key);
      const conv = this.#store.getConversation(convId);
      if (!conv?.channelId || !this.#loadGroup(conv.channelId)) continue;
      await this.#commit(conv, async (state) => {
        if (!listMembers(state).some((m) => m.username === user)) return undefined;
        return { staged: await selfUpdate(state), roster: { remove: [user] } };
      }).catch((e) =>
        this.#emit({
          kind: "warning",
          text: `Could not commit ${user}'s leave: ${(e as Error).message}`,
        })
      );
    }
  }

  #cursor(): number {
    const b = this.#store.getKv(KV_CURSOR);
    return b ? Number(fromUtf8(b)) : 0;
  }

  async #syncLoop(): Promise<number> {
    await this.ensureSession();
    await this.#resolvePendingCommits();
    let total = 0;
    while (true) {
      const cursor = this.#cursor();
      const page = await this.#rpc().call({
        kind: "fetch",
        afterSeq: cursor,
        limit: MAX_FETCH_PAGE,
      }, "messages");
      if (page.messages.length === 0) break;
      const first = page.messages[0]!.seq;
      if (first > cursor + 1 && cursor > 0) {
        this.#emit({
          kind: "warning",
          text: `${first - cursor - 1} message(s) expired on the server before delivery`,
        });
      }
      for (const m of page.messages) {
        await this.#exclusive(() => this.#processDelivered(m));
        total++;
      }
      await this.#rpc().call({ kind: "ack", uptoSeq: this.#cursor() }, "ok");
      if (!page.more) break;
    }
    if (total > 0) await this.refillKeyPackages().catch(() => {});
    return total;
  }

  async #processDelivered(m: DeliveredMessage): Promise<void> {
    const cursor = utf8(String(m.seq));
    try {
      await this.#process(m, cursor);
    } catch (e) {
      // A message we cannot process must not block the queue forever: record and move on.
      const why = e instanceof QpqError ? e.message : "unexpected error";
      this.#emit({ kind: "warning", text: `Dropped a ${m.messageKind} from ${m.sender}: ${why}` });
      this.#store.putKv(KV_CURSOR, cursor);
    }
  }

  async #process(m: DeliveredMessage, cursor: Uint8Array): Promise<void> {
    const hex = toHex(m.channelId);
    if (m.messageKind === "welcome") {
      await this.#join(m, hex, cursor);
      return;
    }
    const state = this.#loadGroup(hex);
    const conv = this.#store.getConversation(hex);
    if (!state || !conv) {
      this.#store.putKv(KV_CURSOR, cursor);
      return; // a group we left or never joined
    }
    const r = await processMessage(state, m.payload);
    if (r.kind === "application") {
      const content = JSON.parse(fromUtf8(r.plaintext)) as Content;
      const message: StoredMessage = {
        conversationId: conv.id,
        messageId: typeof content.id === "string" ? content.id : uuidToString(m.messageId),
        sender: r.sender.username,
        body: String(content.t),
        sentAt: Number(content.ts) || m.sentAtMs,
        receivedAt: Date.now(),
        direction: "in",
        status: "delivered",
      };
      let fresh = false;
      this.#store.transaction(() => {
        this.#saveGroup(hex, r.state);
        fresh = this.#store.addMessage(message);
        this.#store.putKv(KV_CURSOR, cursor);
      });
      if (fresh) this.#emit({ kind: "message", conversation: conv, message });
    } else if (r.kind === "commit") {
      for (const a of r.added) checkCredentialBinding(a, await this.#directoryKey(a.username));
      this.#store.transaction(() => {
        this.#saveGroup(hex, r.state);
        this.#store.putKv(KV_CURSOR, cursor);
      });
      if (r.added.length || r.removed.length) {
        this.#emit({
          kind: "members",
          conversation: conv,
          added: r.added.map((a) => a.username),
          removed: r.removed.map((a) => a.username),
          by: r.committer.username,
        });
      }
    } else if (r.kind === "stale") {
      // a commit or proposal that lost the race to another member's commit: nothing to do
      this.#store.putKv(KV_CURSOR, cursor);
    } else if (r.kind === "removed") {
      this.#store.transaction(() => {
        this.#store.deleteKv(KV_GROUP + hex);
        this.#store.putKv(KV_CURSOR, cursor);
      });
      this.#emit({ kind: "removed", conversation: conv, by: r.committer.username });
    } else {
      this.#store.transaction(() => {
        this.#saveGroup(hex, r.state);
        // Someone asked to leave: commit it once this sync is over (a commit syncs first).
        // Kept in the store so a crash before the commit does not forget it.
        if (r.proposal === "remove") {
          this.#store.putKv(`${KV_LEAVE}${conv.id}:${r.proposer.username}`, utf8("1"));
        }
        this.#store.putKv(KV_CURSOR, cursor);
      });
    }
  }

  async #join(m: DeliveredMessage, hex: string, cursor: Uint8Array): Promise<void> {
    const keys = [...this.#store.listKv(KV_KEY_PACKAGE), ...this.#store.listKv(KV_LAST_RESORT)];
    const privates = keys.map((k) => this.#store.getKv(k)!);
    const joined = await joinFromWelcome(m.payload, privates, this.#signer());
    if (toHex(joined.state.groupId) !== hex) {
      throw new ValidationError("Welcome is for another group than the channel it came on");
    }
    await verifyRoster(joined.state, (u) => this.#directoryKey(u));
    const channels = await this.#rpc().call({ kind: "listChannels" }, "channels");
    const info = channels.channels.find((c) => toHex(c.channelId) === hex);
    if (!info) throw new ValidationError("Welcome for a channel we are not a member of");
    const usedKey = keys[joined.used]!;
    let conv!: Conversation;
    this.#store.transaction(() => {
      this.#saveGroup(hex, joined.state);
      conv = this.#upsertChannel(info);
      if (usedKey.startsWith(KV_KEY_PACKAGE)) this.#store.deleteKv(usedKey);
      this.#store.putKv(KV_CURSOR, cursor);
      this.#store.putKv(KV_LAST_UPDATE + hex, utf8(String(Date.now()))); // fresh keys on join
    });
    this.#emit({ kind: "joined", conversation: conv, inviter: m.sender });
  }

  /** Subscribe to server push: new messages are processed as they arrive. */
  async subscribe(): Promise<void> {
    this.#wantPush = true;
    await this.ensureSession();
    if (this.#subscribed) return;
    await this.#rpc().call({ kind: "subscribe", afterSeq: this.#cursor() }, "ok");
    this.#subscribed = true;
  }

  #onPush(_push: Push): void {
    // The pushed messages are a wake-up; fetching from the cursor keeps server order,
    // fills any gap and never processes a message twice.
    this.sync().catch((e) =>
      this.#emit({ kind: "warning", text: `Receive failed: ${(e as Error).message}` })
    );
  }

  /** Message history of a conversation (oldest first). */
  history(ref: string, count = 20): StoredMessage[] {
    return this.#store.history(this.conversation(ref).id, count);
  }

  /** Close the connection and the store. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#wantPush = false;
    clearTimeout(this.#resubscribeTimer);
    await this.disconnect();
    this.#identity.destroy();
    await this.#store.close();
  }
}
