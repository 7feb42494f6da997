/**
 * The contacts part of the client: identity keys from the server's directory, pinned on
 * first use. If the server later reports another key for someone we know, that is refused
 * (a compromised or mistaken directory); `qpq verify` shows the safety number to compare
 * in person.
 *
 * @module
 */
import { fingerprint, safetyNumber } from "../crypto/mod.ts";
import { constantTimeEqual } from "../bytes.ts";
import { QpqError, UsageError, ValidationError } from "../errors.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";

/** Directory keys, pinned. */
export class Contacts {
  #ctx: ClientContext;
  #session: Session;
  #cache = new Map<string, Uint8Array>();

  constructor(ctx: ClientContext, session: Session) {
    this.#ctx = ctx;
    this.#session = session;
  }

  /**
   * The identity key of `username` (undefined: no such user).
   *
   * @throws ValidationError when it differs from the key pinned earlier
   */
  async key(username: string): Promise<Uint8Array | undefined> {
    const hit = this.#cache.get(username);
    if (hit) return hit;
    let key: Uint8Array;
    try {
      key = (await this.#session.call({ kind: "fetchIdentityKey", username }, "identityKey")).key;
    } catch (e) {
      if (e instanceof QpqError && e.code === "not_found") return undefined;
      throw e;
    }
    const pinned = this.#ctx.state.pinnedKey(username);
    if (pinned && !constantTimeEqual(pinned, key)) {
      throw new ValidationError(
        `The server now reports a different identity key for ${username}: compare safety numbers (qpq verify ${username})`,
      );
    }
    if (!pinned) this.#ctx.state.pinKey(username, key);
    this.#cache.set(username, key);
    return key;
  }

  /** True when the directory knows `username` (nothing is pinned). */
  async exists(username: string): Promise<boolean> {
    if (this.#cache.has(username) || this.#ctx.state.pinnedKey(username)) return true;
    await this.#session.ensure();
    try {
      await this.#session.call({ kind: "fetchIdentityKey", username }, "identityKey");
      return true;
    } catch (e) {
      if (e instanceof QpqError && e.code === "not_found") return false;
      throw e;
    }
  }

  /** The safety number shared with `username` and their key's fingerprint. */
  async verify(username: string): Promise<{ safetyNumber: string; fingerprint: string }> {
    const user = username.replace(/^@/, "");
    await this.#session.ensure();
    const key = await this.key(user);
    if (!key) throw new UsageError(`Unknown user ${user}`, { code: "not_found" });
    return {
      safetyNumber: safetyNumber(this.#ctx.identity.publicKey, this.#ctx.username, key, user),
      fingerprint: fingerprint(key),
    };
  }
}
