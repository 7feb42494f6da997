/**
 * Authentication Service: OPAQUE registration and login, session tokens, and the identity
 * key directory. The server never sees a password: only OPAQUE messages and the
 * registration record.
 *
 * ```
 * register: registerStart(user, req, invite) ─► response ─► registerFinish(record, idKey)
 * login:    loginStart(user, KE1) ─► KE2 + loginId ─► loginFinish(loginId, KE3) ─► token
 *           (unknown user, wrong password, replayed KE3: the same "Login failed" error)
 * later:    resume(token) binds a new connection; logout revokes the token;
 *           logoutEverywhere revokes every session of the account
 * password: (logged in) loginStart(user, KE1) ─► KE2 + loginId
 *           ─► changePasswordStart(loginId, KE3 of the current password, new reg request)
 *           ─► reg response + changeId (this connection only, PENDING_PASSWORD_CHANGE_TTL_MS)
 *           ─► changePasswordFinish(changeId, new record)
 *           ─► record replaced + every session ended + a fresh token, in one transaction
 * ```
 *
 * A connection stays logged in only while its session does: every request checks the
 * session's expiry, and logout ends the session on every connection bound to the same
 * token (their push subscriptions stop too), not only on the one that asked;
 * logoutEverywhere and a password change end it on every connection of the account.
 * A stolen session token alone cannot change the password: the change needs the current
 * password's OPAQUE proof on the same connection.
 *
 * @module
 */
import {
  issueSession,
  LOGIN_FAILED_MESSAGE,
  loginFinish,
  LoginRateLimiter,
  loginStart,
  newSessionToken,
  type OpaqueServerSetup,
  registrationFinish,
  registrationStart,
  ServerLoginState,
  SlidingWindowLimiter,
} from "../auth/mod.ts";
import type { ServerStore } from "../store/server/mod.ts";
import { sha256 } from "../crypto/mod.ts";
import { constantTimeEqual, randomBytes, toHex, utf8 } from "../bytes.ts";
import { AuthError, UsageError, ValidationError } from "../errors.ts";
import {
  IDENTITY_KEY_BYTES,
  OPAQUE_KE1_BYTES,
  OPAQUE_KE3_BYTES,
  OPAQUE_REGISTRATION_REQUEST_BYTES,
  PASSWORD_CHANGE_WINDOW_MS,
  PASSWORD_CHANGES_PER_WINDOW,
  PENDING_LOGIN_TTL_MS,
  PENDING_PASSWORD_CHANGE_TTL_MS,
  SESSION_TOKEN_BYTES,
} from "../limits.ts";
import type { ConnectionState, HandlerTable, ServerContext } from "./context.ts";
import { checkNewUsernameSyntax, checkUsernameSyntax } from "./_names.ts";

/**
 * The user a connection is logged in as; {@link AuthError} when it is not, or when its
 * session has expired (the connection is then logged out).
 */
export function requireUser(conn: ConnectionState): string {
  if (conn.username === undefined) {
    throw new AuthError("Not logged in: log in first", { code: "auth" });
  }
  const bound = BOUND.get(conn);
  if (bound !== undefined && Date.now() >= bound.expiresAt) {
    unbind(conn, false);
    throw new AuthError("Session expired or revoked: log in again", { code: "auth" });
  }
  return conn.username;
}

/** True when `typed` names `canonical` (any case); false for an invalid name. */
function sameUser(canonical: string, typed: string): boolean {
  try {
    return checkUsernameSyntax(typed) === canonical;
  } catch {
    return false;
  }
}

/** The session a connection is logged in with (the token is kept in memory for logout). */
interface BoundSession {
  token: Uint8Array;
  expiresAt: number;
  /** Key of {@link BY_TOKEN}. */
  key: string;
  /** Every connection bound to the same token (shared with them). */
  peers: Set<ConnectionState>;
  /** Removes the connection from `peers` when it closes. */
  onClose: () => void;
}

const BOUND = new WeakMap<ConnectionState, BoundSession>();
/** Connections per token, by SHA-256 of the token, for logout. Per process. */
const BY_TOKEN = new Map<string, Set<ConnectionState>>();

function bind(conn: ConnectionState, username: string, token: Uint8Array, expiresAt: number) {
  // a second login on the same connection replaces the first session; a different user's
  // login must not inherit the first user's push subscriptions
  unbind(conn, conn.username !== undefined && conn.username !== username);
  const key = toHex(sha256(token));
  let peers = BY_TOKEN.get(key);
  if (peers === undefined) BY_TOKEN.set(key, peers = new Set());
  peers.add(conn);
  const onClose = () => unbind(conn, false);
  BOUND.set(conn, { token: token.slice(), expiresAt, key, peers, onClose });
  conn.cleanups.add(onClose);
  conn.username = username;
}

/**
 * Log a connection out. With `stopPushes` its other cleanups (push subscriptions) run as
 * well, so a logged-out connection receives nothing more.
 */
function unbind(conn: ConnectionState, stopPushes: boolean): void {
  const b = BOUND.get(conn);
  if (b !== undefined) {
    BOUND.delete(conn);
    conn.cleanups.delete(b.onClose);
    b.peers.delete(conn);
    if (b.peers.size === 0) BY_TOKEN.delete(b.key);
    b.token.fill(0);
  }
  conn.username = undefined;
  if (stopPushes) { for (const c of [...conn.cleanups]) c(); }
}

/** A password change between its start and finish: per connection. */
interface PendingChange {
  username: string;
  changeId: Uint8Array;
  expiresAt: number;
}
const CHANGES = new WeakMap<ConnectionState, PendingChange>();

/** Handlers of the Authentication Service and identity directory. */
export function accountHandlers(
  ctx: ServerContext,
  store: ServerStore,
  setup: OpaqueServerSetup,
  limiter = new LoginRateLimiter({
    perSourceLimit: ctx.config.loginAttemptsPerSource,
    // the slowdown of logins from unknown sources waits on the server's timers (virtual
    // time in the simulation: no real sleep there)
    sleep: (ms) => new Promise((r) => (ctx.defer ?? setTimeout)(r, ms)),
  }),
): HandlerTable {
  const digest = (s: string) => sha256(utf8(s));
  const expected = digest(ctx.config.authToken);
  const inviteOk = (token: string) => constantTimeEqual(digest(token), expected);
  const requireInvite = (token: string) => {
    if (!inviteOk(token)) {
      throw new AuthError("Registration refused: wrong or missing server auth token", {
        code: "forbidden",
      });
    }
  };

  // Connections logged in per user (this server only), for MAX_CONNECTIONS_PER_USER.
  const online = new Map<string, Set<ConnectionState>>();
  const onlineAs = new WeakMap<ConnectionState, string>();
  const withCleanup = new WeakSet<ConnectionState>();
  const leave = (conn: ConnectionState) => {
    const name = onlineAs.get(conn);
    if (name === undefined) return;
    onlineAs.delete(conn);
    const set = online.get(name);
    set?.delete(conn);
    if (set?.size === 0) online.delete(name);
  };
  /** Refuse (quota) a login or resume that would exceed the user's connection cap. */
  const admit = (conn: ConnectionState, username: string) => {
    const set = online.get(username);
    if (set !== undefined) {
      // logged out or logged in as someone else since
      for (const c of [...set]) if (c.username !== username) leave(c);
    }
    if (onlineAs.get(conn) === username && conn.username === username) return;
    const max = ctx.config.maxConnectionsPerUser;
    if ((online.get(username)?.size ?? 0) >= max) {
      throw new UsageError(
        `Too many connections for ${username} (${max}): close some, then try again`,
        { code: "quota" },
      );
    }
  };
  const track = (conn: ConnectionState, username: string) => {
    leave(conn);
    let set = online.get(username);
    if (set === undefined) online.set(username, set = new Set());
    set.add(conn);
    onlineAs.set(conn, username);
    if (!withCleanup.has(conn)) {
      withCleanup.add(conn);
      conn.cleanups.add(() => leave(conn));
    }
  };

  /** Log out every connection of `username` on this server (pushes stop), but `keep`. */
  const unbindUser = (username: string, keep?: ConnectionState) => {
    for (const c of [...(online.get(username) ?? [])]) {
      if (c !== keep && c.username === username) unbind(c, true);
    }
  };
  const changes = new SlidingWindowLimiter({
    limit: PASSWORD_CHANGES_PER_WINDOW,
    windowMs: PASSWORD_CHANGE_WINDOW_MS,
  });
  const changeRefused = (why: string) =>
    new AuthError(`Password change refused: ${why}`, { code: "forbidden" });

  return {
    async registerStart(req) {
      requireInvite(req.authToken);
      // the canonical form (`Bob` registers `bob`); taken or look-alike names are refused
      const username = checkNewUsernameSyntax(req.username);
      await store.checkNewUsername(username);
      // the OPAQUE library ignores trailing bytes: insist on the exact length here
      if (req.request.length !== OPAQUE_REGISTRATION_REQUEST_BYTES) {
        throw new ValidationError("Invalid registration request");
      }
      const response = await registrationStart(setup, username, req.request);
      return { kind: "registerStarted", data: response };
    },

    async registerFinish(req, conn) {
      requireInvite(req.authToken);
      const username = checkNewUsernameSyntax(req.username);
      if (req.identityKey.length !== IDENTITY_KEY_BYTES) {
        throw new ValidationError(`Identity key must be ${IDENTITY_KEY_BYTES} bytes`);
      }
      const record = await registrationFinish(req.record);
      // a name a restore lost is taken back only with the identity key it had (issue 21)
      await store.createUser(username, record, { identityKey: req.identityKey });
      await store.setIdentityKey(username, req.identityKey);
      ctx.log.info("user registered", { conn: conn.id, user: username });
      return { kind: "ok" };
    },

    async loginStart(req, conn) {
      const username = checkUsernameSyntax(req.username);
      if (req.request.length !== OPAQUE_KE1_BYTES) {
        throw new ValidationError("Invalid login request");
      }
      await limiter.checkSource(conn.source);
      const found = await store.getRegistrationRecord(username);
      if (found === undefined && await store.isReserved(username)) {
        // registering it is refused to all but its owner: no secret in saying so
        throw new UsageError(
          `Account ${username} was lost when the server was restored from a backup: qpq register-user with the state file that holds its identity takes it back`,
          { code: "not_found" },
        );
      }
      // OPAQUE binds the identifier the account registered with (an account from before
      // case-insensitive names keeps its original spelling there). It decodes the request
      // first: one that fails to decode costs the user nothing.
      const { response, serverState } = await loginStart(
        setup,
        found?.identifier ?? username,
        req.request,
        found?.record,
      );
      await limiter.checkUser(username, conn.source);
      const loginId = randomBytes(16);
      await store.savePendingLogin(
        loginId,
        { username, state: serverState.toBytes() },
        Date.now() + PENDING_LOGIN_TTL_MS,
      );
      return { kind: "loginStarted", response, loginId };
    },

    async loginFinish(req, conn) {
      const failed = () => new AuthError(LOGIN_FAILED_MESSAGE);
      const pending = req.loginId.length === 16
        ? await store.takePendingLogin(req.loginId)
        : undefined;
      // take = delete: a replayed KE3 finds nothing and fails like a wrong password
      if (!pending || !sameUser(pending.username, req.username)) throw failed();
      // after the take: a malformed KE3 also uses up the pending login
      if (req.finish.length !== OPAQUE_KE3_BYTES) throw failed();
      const result = await loginFinish(ServerLoginState.fromBytes(pending.state), req.finish);
      pending.state.fill(0);
      if (result.kind !== "ok") throw failed();
      result.sessionKey.fill(0);
      if (!(await store.getUser(pending.username))) throw failed();
      admit(conn, pending.username);
      await limiter.succeeded(pending.username, conn.source);
      const session = await issueSession(store, pending.username, {
        ttlMs: ctx.config.sessionTtlSeconds * 1000,
      });
      bind(conn, pending.username, session.token, session.expiresAt);
      track(conn, pending.username);
      ctx.log.info("login", { conn: conn.id, user: pending.username });
      return {
        kind: "session",
        token: session.token,
        expiresAtMs: session.expiresAt,
        username: pending.username,
      };
    },

    async resume(req, conn) {
      const info = req.token.length === SESSION_TOKEN_BYTES
        ? await store.lookupSession(req.token)
        : undefined;
      if (!info) {
        throw new AuthError("Session expired or revoked: log in again", { code: "auth" });
      }
      admit(conn, info.username);
      bind(conn, info.username, req.token, info.expiresAt);
      track(conn, info.username);
      return {
        kind: "session",
        token: new Uint8Array(0),
        expiresAtMs: info.expiresAt,
        username: info.username,
      };
    },

    async logout(_req, conn) {
      const user = requireUser(conn);
      const b = BOUND.get(conn);
      if (b !== undefined) await store.revokeSession(b.token);
      // the session ends everywhere it is in use on this server, pushes included
      for (const peer of b ? [...b.peers] : [conn]) unbind(peer, true);
      ctx.log.info("logout", { conn: conn.id, user });
      return { kind: "ok" };
    },

    async logoutEverywhere(_req, conn) {
      const user = requireUser(conn);
      const count = await store.revokeUserSessions(user);
      // every connection logged in as the user on this server, whatever its token
      unbindUser(user);
      ctx.log.info("logout everywhere", { conn: conn.id, user, sessions: count });
      return { kind: "loggedOut", count };
    },

    async changePasswordStart(req, conn) {
      const user = requireUser(conn);
      CHANGES.delete(conn);
      const hit = await changes.hit(user);
      if (!hit.allowed) {
        const s = Math.ceil(hit.retryAfterMs / 1000);
        throw new AuthError(`Too many password changes: try again in ${s} s`, {
          code: "rate_limited",
        });
      }
      // proof of the current password: a fresh OPAQUE login of this same account
      const pending = req.loginId.length === 16
        ? await store.takePendingLogin(req.loginId)
        : undefined;
      if (!pending || pending.username !== user || req.finish.length !== OPAQUE_KE3_BYTES) {
        throw changeRefused("the current password is wrong");
      }
      const proof = await loginFinish(ServerLoginState.fromBytes(pending.state), req.finish);
      pending.state.fill(0);
      if (proof.kind !== "ok") throw changeRefused("the current password is wrong");
      proof.sessionKey.fill(0);
      if (req.request.length !== OPAQUE_REGISTRATION_REQUEST_BYTES) {
        throw new ValidationError("Invalid registration request");
      }
      const response = await registrationStart(setup, user, req.request);
      const changeId = randomBytes(16);
      CHANGES.set(conn, {
        username: user,
        changeId: changeId.slice(),
        expiresAt: Date.now() + PENDING_PASSWORD_CHANGE_TTL_MS,
      });
      return { kind: "passwordChangeStarted", response, changeId };
    },

    async changePasswordFinish(req, conn) {
      const user = requireUser(conn);
      const pending = CHANGES.get(conn);
      CHANGES.delete(conn);
      if (
        pending === undefined || pending.username !== user || Date.now() >= pending.expiresAt ||
        req.changeId.length !== pending.changeId.length ||
        !constantTimeEqual(req.changeId, pending.changeId)
      ) {
        throw changeRefused("no password change started on this connection: start again");
      }
      const record = await registrationFinish(req.record);
      const token = newSessionToken();
      const expiresAt = Date.now() + ctx.config.sessionTtlSeconds * 1000;
      const current = BOUND.get(conn)?.token;
      const ended = await store.replaceRegistrationRecord(user, record, {
        token,
        expiresAt,
        ...(current ? { current } : {}),
      });
      // every other connection of the account is logged out; this one gets the new token
      unbindUser(user, conn);
      bind(conn, user, token, expiresAt);
      track(conn, user);
      ctx.log.info("password changed", { conn: conn.id, user, sessions: ended });
      return { kind: "passwordChanged", token, expiresAtMs: expiresAt, sessionsEnded: ended };
    },

    async publishIdentityKey(req, conn) {
      const me = requireUser(conn);
      if (req.key.length !== IDENTITY_KEY_BYTES) {
        throw new ValidationError(`Identity key must be ${IDENTITY_KEY_BYTES} bytes`);
      }
      await store.setIdentityKey(me, req.key);
      return { kind: "ok" };
    },

    async fetchIdentityKey(req, conn) {
      requireUser(conn);
      const username = checkUsernameSyntax(req.username);
      const key = await store.getIdentityKey(username);
      if (!key) throw new UsageError(`Unknown user ${username}`, { code: "not_found" });
      return { kind: "identityKey", username, key };
    },
  };
}
