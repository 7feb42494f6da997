/**
 * A lightweight simulated client for load and crash tests: real QUIC connection, real
 * OPAQUE registration and login (with cheap key stretching), real MLS groups — but its
 * state lives in memory, so hundreds fit in one process. It reconnects by itself (resume
 * with its session token, subscribe from its cursor) and resends unacknowledged sends
 * with the same message id, which the server stores once.
 *
 * @module
 */
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../auth/mod.ts";
import { IdentityKeyPair } from "../crypto/mod.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  encryptMessage,
  epochAuthenticator,
  joinFromWelcome,
  mergePendingCommit,
  type MlsGroupState,
  type MlsSuiteName,
  processMessage,
} from "../mls/mod.ts";
import type { DeliveredMessage, Push, Request } from "../wire/mod.ts";
import { connectServer, type ServerConnection } from "../client/connection.ts";
import { uuidv7 } from "../client/ids.ts";
import { toHex } from "../bytes.ts";
import { QpqError, TransportError } from "../errors.ts";

/** Cheap OPAQUE key stretching for simulated users (never for real accounts). */
export const SIM_KSF: KeyStretching = {
  argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 },
};

/** Where a simulated client reports what it sees. */
export interface SimObserver {
  /** A message arrived (before dedupe by the observer). */
  received(recipient: string, m: DeliveredMessage, at: number): void;
  /** Something failed. */
  error(what: string, e: unknown): void;
}

/** Options of {@link SimClient}. */
export interface SimClientOptions {
  server: string;
  caCertPem: string | undefined;
  username: string;
  authToken: string;
  observer: SimObserver;
  /** Decrypt application messages (costs CPU; proves ciphertexts are real MLS). */
  decrypt: boolean;
  suite: MlsSuiteName;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One simulated user with one connection. */
export class SimClient {
  readonly username: string;
  #o: SimClientOptions;
  #password = toHex(crypto.getRandomValues(new Uint8Array(12)));
  #identity = IdentityKeyPair.generate();
  #conn: ServerConnection | undefined;
  #token: Uint8Array | undefined;
  #cursor = 0;
  #keyPackages: Uint8Array[] = [];
  #groups = new Map<string, MlsGroupState>();
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  #reconnecting: Promise<void> | undefined;
  /** Completed reconnects (after a server restart). */
  reconnects = 0;

  constructor(options: SimClientOptions) {
    this.#o = options;
    this.username = options.username;
  }

  #signer() {
    return { publicKey: this.#identity.publicKey, privateKey: this.#identity.exportPrivateKey() };
  }

  async #connect(): Promise<ServerConnection> {
    const conn = await connectServer({
      server: this.#o.server,
      caCertPem: this.#o.caCertPem,
      timeoutMs: 5_000,
      onPush: (push) => this.#onPush(push),
      onClose: () => {
        if (this.#conn === conn) this.#conn = undefined;
        if (!this.#closed) void this.reconnect();
      },
    });
    this.#conn = conn;
    return conn;
  }

  /** The live connection, reconnecting first when needed. */
  async conn(): Promise<ServerConnection> {
    while (!this.#conn) {
      if (this.#closed) throw new TransportError("Client closed");
      await this.reconnect();
    }
    return this.#conn;
  }

  /** Reconnect with backoff, resume the session and re-subscribe from the cursor. */
  reconnect(): Promise<void> {
    this.#reconnecting ??= (async () => {
      for (let delay = 50; !this.#closed; delay = Math.min(delay * 2, 1000)) {
        try {
          const conn = await this.#connect();
          if (this.#token) await conn.call({ kind: "resume", token: this.#token }, "session");
          await conn.call({ kind: "subscribe", afterSeq: this.#cursor }, "ok");
          this.reconnects++;
          return;
        } catch {
          this.#conn = undefined;
          await sleep(delay);
        }
      }
    })().finally(() => (this.#reconnecting = undefined));
    return this.#reconnecting;
  }

  /** Register, log in, upload `keyPackages` KeyPackages and subscribe. */
  async setup(keyPackages: number): Promise<void> {
    const conn = await this.#connect();
    const reg = await clientRegistrationStart(this.#password);
    const started = await conn.call({
      kind: "registerStart",
      username: this.username,
      request: reg.request,
      authToken: this.#o.authToken,
    }, "registerStarted");
    const fin = await clientRegistrationFinish(reg.state, this.#password, started.data, {
      keyStretching: SIM_KSF,
    });
    await conn.call({
      kind: "registerFinish",
      username: this.username,
      record: fin.record,
      authToken: this.#o.authToken,
      identityKey: this.#identity.publicKey,
    }, "ok");
    const login = await clientLoginStart(this.#password);
    const ls = await conn.call({
      kind: "loginStart",
      username: this.username,
      request: login.request,
    }, "loginStarted");
    const lf = await clientLoginFinish(login.state, this.#password, ls.response, {
      keyStretching: SIM_KSF,
    });
    if (lf.kind !== "ok") throw lf.error;
    const session = await conn.call({
      kind: "loginFinish",
      username: this.username,
      finish: lf.finishRequest,
      loginId: ls.loginId,
    }, "session");
    this.#token = session.token;
    const packages = [];
    for (let i = 0; i < keyPackages; i++) {
      const kp = await createKeyPackage({
        username: this.username,
        identity: this.#signer(),
        suite: this.#o.suite,
        lifetimeSeconds: 24 * 3600,
      });
      this.#keyPackages.push(kp.privatePackage);
      packages.push({ data: kp.publicPackage });
    }
    if (packages.length) {
      await conn.call(
        { kind: "uploadKeyPackages", packages, lastResort: new Uint8Array(0) },
        "keyPackageCount",
      );
    }
    await conn.call({ kind: "subscribe", afterSeq: 0 }, "ok");
  }

  /** Create a group channel and add `members` in one commit; returns the channel id (hex). */
  async createGroupWith(name: string, members: string[]): Promise<string> {
    const conn = await this.conn();
    const channel = await conn.call({ kind: "createGroup", name }, "channel");
    let state = await createGroup({
      groupId: channel.channelId,
      username: this.username,
      identity: this.#signer(),
      suite: this.#o.suite,
    });
    const hex = toHex(channel.channelId);
    if (members.length > 0) {
      const kps: Uint8Array[] = [];
      for (const m of members) {
        kps.push((await conn.call({ kind: "fetchKeyPackage", username: m }, "keyPackage")).data);
      }
      const staged = await addMembers(state, kps);
      await conn.call({
        kind: "commit",
        channelId: channel.channelId,
        epoch: 0,
        messageId: uuidv7(),
        payload: staged.outbound.commit,
        add: members,
        remove: [],
        welcomes: [],
        welcome: staged.outbound.welcome!,
        welcomeFor: members,
      }, "committed");
      state = mergePendingCommit(staged.state).state;
    }
    this.#groups.set(hex, state);
    return hex;
  }

  /** True once this client holds the group's state (after its Welcome arrived). */
  inGroup(hex: string): boolean {
    return this.#groups.has(hex);
  }

  /** Epoch authenticator of a group (hex), for in-step checks. */
  authenticator(hex: string): string | undefined {
    const s = this.#groups.get(hex);
    return s ? toHex(epochAuthenticator(s)) : undefined;
  }

  /**
   * Encrypt and send one message to a group; resends with the same id until the server
   * acknowledges. Resolves with the message id (hex) once acknowledged.
   */
  async send(hex: string, text: string, onEncrypted?: (idHex: string) => void): Promise<string> {
    // Group state is read-modify-written by sends and by received messages: both go
    // through one queue so a ratchet step is never lost (which would reuse a generation).
    const enc = await this.#serial(async () => {
      const state = this.#groups.get(hex);
      if (!state) throw new QpqError("usage", "Not in that group");
      const r = await encryptMessage(state, new TextEncoder().encode(text));
      this.#groups.set(hex, r.state);
      return { ...r, epoch: state.epoch };
    });
    const id = uuidv7();
    const idHex = toHex(id);
    onEncrypted?.(idHex);
    const request: Request = {
      kind: "enqueue",
      channelId: Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16))),
      messageId: id,
      payload: enc.outbound,
      messageKind: "application",
      epoch: Number(enc.epoch),
      recipients: [],
    };
    for (let attempt = 0;; attempt++) {
      try {
        const conn = await this.conn();
        await conn.call(request, "enqueued");
        return idHex;
      } catch (e) {
        if (!(e instanceof TransportError) || this.#closed || attempt > 200) throw e;
        this.#conn = undefined;
        await sleep(50);
      }
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.then(() => {}, () => {});
    return run;
  }

  #onPush(push: Push): void {
    const at = performance.now();
    this.#serial(() => this.#handle(push.messages, at)).catch((e) =>
      this.#o.observer.error("receive", e)
    );
  }

  async #handle(messages: DeliveredMessage[], at: number): Promise<void> {
    let last = this.#cursor;
    for (const m of messages) {
      if (m.seq <= this.#cursor) continue; // redelivered after a reconnect: already handled
      this.#cursor = m.seq;
      last = m.seq;
      const hex = toHex(m.channelId);
      if (m.messageKind === "welcome") {
        try {
          const joined = await joinFromWelcome(m.payload, this.#keyPackages, this.#signer());
          this.#groups.set(hex, joined.state);
        } catch (e) {
          this.#o.observer.error("join", e);
        }
        continue;
      }
      this.#o.observer.received(this.username, m, at);
      if (this.#o.decrypt && m.messageKind === "application") {
        const state = this.#groups.get(hex);
        if (state) {
          try {
            const r = await processMessage(state, m.payload);
            this.#groups.set(hex, r.state);
          } catch (e) {
            this.#o.observer.error("decrypt", e); // counted; the rest of the batch goes on
          }
        }
      }
    }
    if (last > 0 && this.#conn) {
      this.#conn.call({ kind: "ack", uptoSeq: last }, "ok").catch(() => {});
    }
  }

  /** Wait until everything received so far has been handled. */
  async drain(): Promise<void> {
    await this.#queue;
  }

  /** Close the connection for good. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#conn?.close();
    this.#identity.destroy();
  }
}
