/**
 * Session tokens: what a client presents after an OPAQUE login instead of re-running it.
 *
 * A token is {@link SESSION_TOKEN_BYTES} random bytes given to the client once. The server
 * keeps only a hash of it (SHA-256, or HMAC-SHA256 under a key derived from the db_key
 * when the store is sealed; the store does the hashing), with its user and expiry.
 * Lookups go by that hash and the store compares the full hash in constant time, so
 * neither a stolen database nor response timing yields a usable token.
 *
 * ```
 * loginFinish ok ─► issueSession ─► token to client (once)
 * request + token ─► authenticateSession ─► username | undefined (expired, revoked, unknown)
 * logout ─► endSession (revoked at once, on every server node sharing the store)
 * ```
 *
 * @module
 */

import { randomBytes } from "../bytes.ts";
import { SESSION_TOKEN_BYTES, SESSION_TTL_SECONDS } from "../limits.ts";

/** The subset of the server store that sessions need (a `ServerStore` satisfies it). */
export interface SessionStore {
  /** Store a session for `token` (the store keeps only a hash). */
  createSession(token: Uint8Array, username: string, expiresAt: number): Promise<void>;
  /** The unexpired session for `token`, if any. */
  lookupSession(token: Uint8Array): Promise<{ username: string; expiresAt: number } | undefined>;
  /** Delete the session; true if it existed. */
  revokeSession(token: Uint8Array): Promise<boolean>;
}

/** A freshly issued session. */
export interface IssuedSession {
  /** The bearer token (secret): send it to the client once and zero it. */
  token: Uint8Array;
  /** Expiry (ms since the epoch). */
  expiresAt: number;
}

/** Options of {@link issueSession}. */
export interface IssueSessionOptions {
  /** Current time (ms, default `Date.now()`). */
  now?: number;
  /** Lifetime (ms, default {@link SESSION_TTL_SECONDS}). */
  ttlMs?: number;
}

/** A new random session token of {@link SESSION_TOKEN_BYTES} bytes. */
export function newSessionToken(): Uint8Array {
  return randomBytes(SESSION_TOKEN_BYTES);
}

/** Create and store a session for `username` after a successful login. */
export async function issueSession(
  store: SessionStore,
  username: string,
  options: IssueSessionOptions = {},
): Promise<IssuedSession> {
  const token = newSessionToken();
  const expiresAt = (options.now ?? Date.now()) + (options.ttlMs ?? SESSION_TTL_SECONDS * 1000);
  await store.createSession(token, username, expiresAt);
  return { token, expiresAt };
}

/**
 * The user a token belongs to, or undefined when it is malformed, unknown, expired or
 * revoked. Malformed tokens never reach the store.
 */
export async function authenticateSession(
  store: SessionStore,
  token: Uint8Array,
): Promise<string | undefined> {
  if (!(token instanceof Uint8Array) || token.length !== SESSION_TOKEN_BYTES) return undefined;
  return (await store.lookupSession(token))?.username;
}

/** Log out: revoke the token's session. True if it existed. */
export function endSession(store: SessionStore, token: Uint8Array): Promise<boolean> {
  if (!(token instanceof Uint8Array) || token.length !== SESSION_TOKEN_BYTES) {
    return Promise.resolve(false);
  }
  return store.revokeSession(token);
}
