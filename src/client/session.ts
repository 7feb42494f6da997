/**
 * The session part of the client: one server connection, logged in. Resumes the stored
 * session token once per connection, logs in again with OPAQUE when it is missing,
 * expired or revoked, repeats a request the server refused because the session ended,
 * and keeps server push alive across reconnects.
 *
 * ```
 * ensure ─► connect ─► same connection already logged in? ─► done
 *                   └► resume(token) ─ok─► done
 *                          └ refused ─► login (OPAQUE) ─► new token in the meta record
 * call(request) ─► auth error (session ended elsewhere) ─► login ─► call once more
 * changePassword ─► loginStart + KE3 (current password) + new registration request
 *   ─► state opens with both passwords ─► changePasswordFinish ─► new token
 *   ─► state opens with the new one only (a lost answer: both, until the next login)
 * connection lost while subscribed ─► back-off ─► connect + ensure + subscribe
 * keepOnline (the REPL offline) ──────► the same loop, at once
 *   subscribed again (by the loop or a command) ─► "Online: connected to …" + onReconnected
 * connect while another connect is under way ─► waits for it, at most its own deadline
 * ```
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
import type { EncodedRequest, Push, Request, ResponseKind, ResponseOf } from "../wire/mod.ts";
import { constantTimeEqual, zeroize } from "../bytes.ts";
import { fingerprint } from "../crypto/mod.ts";
import { AuthError, QpqError, retryLater, TransportError } from "../errors.ts";
import type { ClientContext } from "./_context.ts";
import { type Connector, connectServer, noAnswer, type ServerLink } from "./connection.ts";

/** Requests of the login flow itself: never repeated after a re-login. */
const SESSION_KINDS = new Set([
  "registerStart",
  "registerFinish",
  "loginStart",
  "loginFinish",
  "resume",
  "logout",
  "logoutEverywhere",
  "changePasswordStart",
  "changePasswordFinish",
]);

import {
  CONNECT_TIMEOUT_MS,
  QUICK_CONNECT_MS,
  RESUBSCRIBE_FIRST_MS,
  RESUBSCRIBE_MAX_MS,
} from "../limits.ts";

/** Options of {@link Session}. */
export interface SessionOptions {
  /** The password (OPAQUE login when the token is gone). */
  password: string;
  /** Server address override (default: the one in the state). */
  server?: string | undefined;
  /** PEM certificate to pin. */
  caCertPem?: string | undefined;
  /** Request timeout (ms). */
  timeoutMs?: number | undefined;
  /**
   * How long a connect waits for the server's handshake (ms; default the request timeout,
   * else `CONNECT_TIMEOUT_MS`). What works offline sets `QUICK_CONNECT_MS`: an absent server
   * is then told in well under a second.
   */
  connectTimeoutMs?: number | undefined;
  /** How to open a connection (default QUIC). */
  connect?: Connector | undefined;
  /** OPAQUE key stretching (default the library's; tests and tools pass cheap ones). */
  keyStretching?: KeyStretching | undefined;
  /** Server pushes (the receiver). */
  onPush: (push: Push) => void;
  /** After a lost connection came back and push was renewed (the receiver catches up). */
  onReconnected: () => Promise<unknown>;
  /** The queue position to subscribe after. */
  cursor: () => number;
}

/** One logged-in server connection. */
export class Session {
  #ctx: ClientContext;
  #o: SessionOptions;
  #conn: ServerLink | undefined;
  /** The connection our session is bound to (resume or login done on it). */
  #sessionConn: ServerLink | undefined;
  #wantPush = false;
  #subscribed = false;
  #closing = false;
  #timer: unknown;
  /** The connect under way (one at a time: a second caller waits for it). */
  #connecting: Promise<void> | undefined;
  /** Push is wanted but the server could not be reached: say so when it is back. */
  #offline = false;
  /** The last reason going online failed other than the network (warned once). */
  #offlineReason: string | undefined;

  constructor(ctx: ClientContext, options: SessionOptions) {
    this.#ctx = ctx;
    this.#o = options;
  }

  /** The finish options of OPAQUE (its key stretching). */
  #ksf(): { keyStretching?: KeyStretching } {
    return this.#o.keyStretching ? { keyStretching: this.#o.keyStretching } : {};
  }

  /** The server address in use. */
  get server(): string {
    return this.#o.server ?? this.#ctx.state.meta.server;
  }

  /** True while connected. */
  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /**
   * Connect (without logging in), waiting at most `timeoutMs` for the handshake (default
   * the session's `connectTimeoutMs`). While another connect is under way (the background
   * one of {@link keepOnline}) this one waits for it, for at most its own deadline.
   *
   * @throws TransportError (code "unavailable") when the server does not answer in time
   */
  async connect(options: { timeoutMs?: number | undefined } = {}): Promise<void> {
    if (this.#conn) return;
    const deadline = options.timeoutMs ?? this.#o.connectTimeoutMs;
    const pending = this.#connecting;
    if (pending) return await this.#within(pending, deadline);
    const attempt = this.#open(deadline);
    this.#connecting = attempt;
    try {
      await attempt;
    } finally {
      if (this.#connecting === attempt) this.#connecting = undefined;
    }
  }

  /** `pending`, or a TransportError when it takes longer than `ms`. */
  async #within(pending: Promise<void>, ms: number | undefined): Promise<void> {
    if (ms === undefined) return await pending;
    let timer: unknown;
    const late = new Promise<never>((_, reject) => {
      timer = this.#ctx.timers.setTimeout(() => reject(noAnswer(this.server, ms)), ms);
    });
    try {
      await Promise.race([pending, late]);
    } finally {
      this.#ctx.timers.clearTimeout(timer);
    }
  }

  async #open(deadline: number | undefined): Promise<void> {
    let conn: ServerLink | undefined = undefined;
    conn = await (this.#o.connect ?? connectServer)({
      server: this.server,
      caCertPem: this.#o.caCertPem,
      timeoutMs: this.#o.timeoutMs,
      connectTimeoutMs: deadline,
      onPush: (push) => this.#o.onPush(push),
      onClose: () => {
        // a connection we already replaced (or dropped on purpose) must not clear the new one
        if (conn === undefined || this.#conn !== conn) return;
        this.#conn = undefined;
        this.#subscribed = false;
        if (this.#wantPush && !this.#closing) {
          this.#offline = true;
          this.#ctx.emit({ kind: "warning", text: "Connection to the server lost: reconnecting" });
          this.#resubscribeLater(RESUBSCRIBE_FIRST_MS);
        }
      },
    });
    if (this.#closing) {
      await conn.close();
      throw new TransportError("The client is closing", { code: "unavailable" });
    }
    this.#conn = conn;
  }

  /** Close the connection (the local state stays open). */
  async disconnect(): Promise<void> {
    const c = this.#conn;
    this.#conn = undefined;
    this.#subscribed = false;
    await c?.close();
  }

  /**
   * Send one request on the current connection. When the server says the session ended
   * (expiry, logout elsewhere), log in again once and repeat it.
   *
   * @throws TransportError (code "unavailable") when not connected
   */
  async call<K extends ResponseKind>(
    request: Request | EncodedRequest,
    expect: K,
    options: { timeoutMs?: number } = {},
  ): Promise<ResponseOf<K>> {
    const conn = this.#conn;
    if (!conn) throw new TransportError("Not connected to the server", { code: "unavailable" });
    try {
      return await conn.call(request as Request, expect, options);
    } catch (e) {
      if (!(e instanceof AuthError && e.code === "auth") || SESSION_KINDS.has(request.kind)) {
        throw e;
      }
      this.#sessionConn = undefined;
      await this.ensure();
      const again = this.#conn as ServerLink | undefined;
      if (!again) throw new TransportError("Not connected to the server", { code: "unavailable" });
      return await again.call(request as Request, expect, options);
    }
  }

  /**
   * Connect and make sure the connection is logged in; a subscribed client subscribes
   * again on a new connection.
   */
  async ensure(): Promise<void> {
    await this.#loggedIn();
    if (this.#wantPush && !this.#subscribed && this.#conn) {
      try {
        await this.#conn.call({ kind: "subscribe", afterSeq: this.#o.cursor() }, "ok");
        this.#subscribed = true;
        this.#backOnline();
      } catch {
        this.#resubscribeLater(RESUBSCRIBE_FIRST_MS);
      }
    }
  }

  /**
   * Subscribed again after being offline (whoever connected: the background attempts or a
   * command): one progress line, then catch up (receive, send what is queued).
   */
  #backOnline(): void {
    if (!this.#offline) return;
    this.#offline = false;
    this.#offlineReason = undefined;
    this.#ctx.emit({ kind: "progress", text: `Online: connected to ${this.server}` });
    this.#o.onReconnected().catch((e) => {
      if (retryLater(e) || this.#closing) return; // the next connection catches up
      const reason = e instanceof QpqError ? e.message : String(e);
      this.#ctx.emit({ kind: "warning", text: `Catching up failed: ${reason}` });
    });
  }

  async #loggedIn(): Promise<void> {
    await this.connect();
    const m = this.#ctx.state.meta;
    const now = this.#ctx.now();
    if (this.#sessionConn === this.#conn && (m.sessionExpiresAt ?? 0) > now) return;
    if (m.sessionToken && m.sessionToken.length > 0 && (m.sessionExpiresAt ?? 0) > now) {
      try {
        await this.call({ kind: "resume", token: m.sessionToken }, "session");
        this.#sessionConn = this.#conn;
        return;
      } catch (e) {
        if (!(e instanceof AuthError)) throw e;
      }
    }
    await this.login();
  }

  /** Register the account (OPAQUE record and identity key), then log in. */
  async register(authToken: string): Promise<void> {
    await this.connect();
    const username = this.#ctx.username;
    const start = await clientRegistrationStart(this.#o.password);
    const started = await this.call(
      { kind: "registerStart", username, request: start.request, authToken },
      "registerStarted",
    );
    const fin = await clientRegistrationFinish(
      start.state,
      this.#o.password,
      started.data,
      this.#ksf(),
    );
    zeroize(fin.exportKey);
    await this.call({
      kind: "registerFinish",
      username,
      record: fin.record,
      authToken,
      identityKey: this.#ctx.identity.publicKey,
    }, "ok");
    await this.login();
  }

  /** OPAQUE login; the new session token goes into the meta record. */
  async login(): Promise<void> {
    await this.connect();
    const username = this.#ctx.username;
    const start = await clientLoginStart(this.#o.password);
    const started = await this.call(
      { kind: "loginStart", username, request: start.request },
      "loginStarted",
    );
    const fin = await clientLoginFinish(
      start.state,
      this.#o.password,
      started.response,
      this.#ksf(),
    );
    if (fin.kind !== "ok") throw fin.error;
    zeroize(fin.sessionKey, fin.exportKey);
    const session = await this.call(
      { kind: "loginFinish", username, finish: fin.finishRequest, loginId: started.loginId },
      "session",
    );
    this.#sessionConn = this.#conn;
    // The account's identity is the one this state holds, or this state is not the
    // account's (issue 21: a second state file made a second identity for the account,
    // whose invitations everyone refused). Checked before the token is kept.
    // Registration writes the account and the identity key separately: if a crash came
    // between them, publish the key now.
    let published: Uint8Array | undefined;
    try {
      published = (await this.call({ kind: "fetchIdentityKey", username }, "identityKey")).key;
    } catch (e) {
      if (!(e instanceof QpqError && e.code === "not_found")) throw e;
      await this.call({ kind: "publishIdentityKey", key: this.#ctx.identity.publicKey }, "ok");
    }
    if (published !== undefined && !constantTimeEqual(published, this.#ctx.identity.publicKey)) {
      await this.call({ kind: "logout" }, "ok").catch(() => {});
      this.#sessionConn = undefined;
      throw new AuthError(
        `${username}'s identity lives in another state file (fingerprint ${
          fingerprint(published).slice(0, 17)
        }…; this one's is ${
          fingerprint(this.#ctx.identity.publicKey).slice(0, 17)
        }…): use --state FILE with the file ${username} registered with, or run qpq where it is; qpq has no second devices yet`,
        { code: "conflict" },
      );
    }
    this.#ctx.state.updateMeta({
      sessionToken: session.token,
      sessionExpiresAt: session.expiresAtMs,
    });
    // a password change whose outcome was unknown left the state open to two passwords:
    // the one the server just accepted is the one to keep
    const state = this.#ctx.state;
    if ((state.passwordCount ?? 1) > 1 && state.changePassword) {
      await state.changePassword(this.#o.password, [this.#o.password]);
    }
  }

  /** Revoke the session on the server and forget the token locally. */
  async logout(): Promise<void> {
    try {
      await this.ensure();
      await this.call({ kind: "logout" }, "ok");
    } finally {
      this.#sessionConn = undefined;
      this.#ctx.state.updateMeta({ sessionToken: undefined, sessionExpiresAt: undefined });
    }
  }

  /**
   * End every session of the account on the server (every device), and forget the token
   * locally. Resolves to how many sessions the server ended.
   */
  async logoutEverywhere(): Promise<number> {
    try {
      await this.ensure();
      return (await this.call({ kind: "logoutEverywhere" }, "loggedOut")).count;
    } finally {
      this.#sessionConn = undefined;
      this.#ctx.state.updateMeta({ sessionToken: undefined, sessionExpiresAt: undefined });
    }
  }

  /**
   * Change the account's password to `next`: prove the current one with a fresh OPAQUE
   * login, register `next` in OPAQUE, and re-seal the local state under it. The server
   * ends every other session; this device gets a fresh token. Resolves to how many other
   * sessions ended.
   *
   * @throws {AuthError} code "forbidden" when the server refuses (wrong current password)
   * @throws {TransportError} when the server's last answer is lost: the state then opens
   *   with either password until the next login, which keeps the one the server accepts
   */
  async changePassword(next: string): Promise<{ sessionsEnded: number }> {
    await this.ensure();
    const username = this.#ctx.username;
    const current = this.#o.password;
    const state = this.#ctx.state;
    const start = await clientLoginStart(current);
    const started = await this.call(
      { kind: "loginStart", username, request: start.request },
      "loginStarted",
    );
    const fin = await clientLoginFinish(start.state, current, started.response, this.#ksf());
    if (fin.kind !== "ok") {
      throw new AuthError("Password change refused: the current password is wrong", {
        code: "forbidden",
      });
    }
    zeroize(fin.sessionKey, fin.exportKey);
    const reg = await clientRegistrationStart(next);
    const changing = await this.call({
      kind: "changePasswordStart",
      loginId: started.loginId,
      finish: fin.finishRequest,
      request: reg.request,
    }, "passwordChangeStarted");
    const record = await clientRegistrationFinish(
      reg.state,
      next,
      changing.response,
      this.#ksf(),
    );
    zeroize(record.exportKey);
    // the server may apply the change and its answer be lost: until we know, both open it
    await state.changePassword?.(current, [current, next]);
    let changed;
    try {
      changed = await this.call(
        { kind: "changePasswordFinish", changeId: changing.changeId, record: record.record },
        "passwordChanged",
      );
    } catch (e) {
      if (e instanceof QpqError && !(e instanceof TransportError)) {
        // refused: nothing changed on the server
        await state.changePassword?.(current, [current]);
        throw e;
      }
      throw new TransportError(
        "Password change: the server's answer was lost; log in with the new password " +
          "(or the old one if it is refused): the state opens with either until then",
        { code: "unavailable", cause: e },
      );
    }
    this.#o = { ...this.#o, password: next };
    state.updateMeta({ sessionToken: changed.token, sessionExpiresAt: changed.expiresAtMs });
    this.#sessionConn = this.#conn;
    await state.changePassword?.(next, [next]);
    return { sessionsEnded: changed.sessionsEnded };
  }

  /** Ask for server push from now on (renewed on every new connection until close). */
  async subscribe(): Promise<void> {
    this.#wantPush = true;
    await this.ensure();
    if (this.#subscribed) return;
    await this.call({ kind: "subscribe", afterSeq: this.#o.cursor() }, "ok");
    this.#subscribed = true;
    this.#backOnline();
  }

  /**
   * Receive server push from now on without waiting for the server: connect, log in and
   * subscribe in the background, at once and then with back-off while it cannot be
   * reached (each attempt waiting longer for the handshake). Once online (by these
   * attempts or a command's connect) a progress event says so and `onReconnected` catches
   * up. A refusal that is not "try later" (e.g. the account's identity differs) is told
   * once as a warning; the attempts go on.
   */
  keepOnline(): void {
    this.#wantPush = true;
    if (this.#subscribed) return;
    this.#offline = true;
    this.#resubscribeLater(0);
  }

  #resubscribeLater(delayMs: number): void {
    if (this.#timer !== undefined || this.#closing) return;
    this.#timer = this.#ctx.timers.setTimeout(async () => {
      this.#timer = undefined;
      if (!this.#wantPush || this.#closing || this.#subscribed) return;
      try {
        // a slow network gets longer each time: a fixed short deadline would never connect
        const patience = Math.min(Math.max(QUICK_CONNECT_MS, delayMs), CONNECT_TIMEOUT_MS);
        await this.connect({ timeoutMs: patience });
        await this.subscribe(); // then #backOnline catches up
      } catch (e) {
        if (!retryLater(e) && !this.#closing) {
          const reason = e instanceof QpqError ? e.message : String(e);
          if (reason !== this.#offlineReason) {
            this.#ctx.emit({ kind: "warning", text: `Still offline: ${reason}` });
          }
          this.#offlineReason = reason;
        }
        if (!this.#subscribed) {
          this.#resubscribeLater(
            Math.min(Math.max(delayMs * 2, RESUBSCRIBE_FIRST_MS), RESUBSCRIBE_MAX_MS),
          );
        }
      }
    }, delayMs);
  }

  /** Stop push and close the connection. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#wantPush = false;
    this.#ctx.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.disconnect();
  }
}
