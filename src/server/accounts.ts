/**
 * Authentication Service: OPAQUE registration and login, session tokens, and the identity
 * key directory. The server never sees a password: only OPAQUE messages and the
 * registration record.
 *
 * ```
 * register: registerStart(user, req, invite) ─► response ─► registerFinish(record, idKey)
 * login:    loginStart(user, KE1) ─► KE2 + loginId ─► loginFinish(loginId, KE3) ─► token
 *           (unknown user, wrong password, replayed KE3: the same "Login failed" error)
 * later:    resume(token) binds a new connection; logout revokes the token
 * ```
 *
 * @module
 */
import {
  issueSession,
  LOGIN_FAILED_MESSAGE,
  loginFinish,
  LoginRateLimiter,
  loginStart,
  type OpaqueServerSetup,
  registrationFinish,
  registrationStart,
  ServerLoginState,
} from "../auth/mod.ts";
import type { ServerStore } from "../store/mod.ts";
import { sha256 } from "../crypto/mod.ts";
import { constantTimeEqual, randomBytes, utf8 } from "../bytes.ts";
import { AuthError, UsageError, ValidationError } from "../errors.ts";
import {
  IDENTITY_KEY_BYTES,
  OPAQUE_KE1_BYTES,
  OPAQUE_KE3_BYTES,
  OPAQUE_REGISTRATION_REQUEST_BYTES,
  PENDING_LOGIN_TTL_MS,
  SESSION_TOKEN_BYTES,
} from "../limits.ts";
import type { ConnectionState, HandlerTable, ServerContext } from "./context.ts";
import { checkUsernameSyntax } from "./_names.ts";

/** The user a connection is logged in as; {@link AuthError} when it is not. */
export function requireUser(conn: ConnectionState): string {
  if (conn.username === undefined) {
    throw new AuthError("Not logged in: log in first", { code: "auth" });
  }
  return conn.username;
}

/** Per-connection session token, kept only in memory so logout can revoke it. */
const TOKENS = new WeakMap<ConnectionState, Uint8Array>();

/** Handlers of the Authentication Service and identity directory. */
export function accountHandlers(
  ctx: ServerContext,
  store: ServerStore,
  setup: OpaqueServerSetup,
  limiter = new LoginRateLimiter(),
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

  return {
    async registerStart(req) {
      requireInvite(req.authToken);
      const username = checkUsernameSyntax(req.username);
      if (await store.getUser(username)) {
        throw new UsageError(`Username ${username} is already registered`, { code: "conflict" });
      }
      // the OPAQUE library ignores trailing bytes: insist on the exact length here
      if (req.request.length !== OPAQUE_REGISTRATION_REQUEST_BYTES) {
        throw new ValidationError("Invalid registration request");
      }
      const response = await registrationStart(setup, username, req.request);
      return { kind: "registerStarted", data: response };
    },

    async registerFinish(req, conn) {
      requireInvite(req.authToken);
      const username = checkUsernameSyntax(req.username);
      if (req.identityKey.length !== IDENTITY_KEY_BYTES) {
        throw new ValidationError(`Identity key must be ${IDENTITY_KEY_BYTES} bytes`);
      }
      const record = await registrationFinish(req.record);
      await store.createUser(username, record);
      await store.setIdentityKey(username, req.identityKey);
      ctx.log.info("user registered", { conn: conn.id, user: username });
      return { kind: "ok" };
    },

    async loginStart(req, conn) {
      const username = checkUsernameSyntax(req.username);
      if (req.request.length !== OPAQUE_KE1_BYTES) {
        throw new ValidationError("Invalid login request");
      }
      await limiter.check(username, `conn:${conn.id}`);
      const record = await store.getRegistrationRecord(username);
      const { response, serverState } = await loginStart(setup, username, req.request, record);
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
      if (!pending || pending.username !== req.username) throw failed();
      // after the take: a malformed KE3 also uses up the pending login
      if (req.finish.length !== OPAQUE_KE3_BYTES) throw failed();
      const result = await loginFinish(ServerLoginState.fromBytes(pending.state), req.finish);
      pending.state.fill(0);
      if (result.kind !== "ok") throw failed();
      result.sessionKey.fill(0);
      if (!(await store.getUser(pending.username))) throw failed();
      await limiter.succeeded(pending.username);
      const session = await issueSession(store, pending.username, {
        ttlMs: ctx.config.sessionTtlSeconds * 1000,
      });
      conn.username = pending.username;
      TOKENS.set(conn, session.token.slice());
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
      conn.username = info.username;
      TOKENS.set(conn, req.token.slice());
      return {
        kind: "session",
        token: new Uint8Array(0),
        expiresAtMs: info.expiresAt,
        username: info.username,
      };
    },

    async logout(_req, conn) {
      requireUser(conn);
      const token = TOKENS.get(conn);
      if (token) await store.revokeSession(token);
      TOKENS.delete(conn);
      ctx.log.info("logout", { conn: conn.id, user: conn.username });
      conn.username = undefined;
      return { kind: "ok" };
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
