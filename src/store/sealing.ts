/**
 * At-rest protection of the server database when a `db_key` is configured.
 *
 * ```
 * db_key (string) ──HKDF-SHA256(salt "qpq/server-store/v1")──┬─ info "seal"   → 32-byte AEAD key
 *                                                              ├─ info "lookup" → 32-byte HMAC key
 *                                                              └─ info "check"  → 32-byte HMAC key
 * ```
 *
 * - Every secret or payload value is sealed with XChaCha20-Poly1305 (random 24-byte nonce)
 *   and bound to its row: the associated data is `label ‖ 0x00 ‖ row key`, so a sealed value
 *   moved to another row or column no longer opens.
 * - Every value the store looks rows up by (usernames and their look-alike skeletons, channel
 *   names, session tokens) goes through HMAC-SHA256 under the lookup key, so the file holds
 *   no username or token.
 * - A check value `HMAC(check key, "qpq store check v1")` written at creation turns a wrong key
 *   into one clear error at open, before anything is written.
 *
 * Without a `db_key` the {@link Sealer} is the identity on values, usernames are stored as
 * their UTF-8 bytes and tokens as SHA-256(token): readable for debugging, yet a stolen file
 * still does not reveal live session tokens. The `secrets` table (the OPAQUE server setup,
 * which would allow an offline dictionary attack on every password) is sealed all the same,
 * under a key file beside the database ({@link Sealer.fromSecretsKey}).
 *
 * @module
 */

import { hkdfSha256, hmacSha256, openXChaCha, sealXChaCha, sha256 } from "../crypto/aead.ts";
import { concat, constantTimeEqual, utf8, zeroize } from "../bytes.ts";
import { StorageError } from "../errors.ts";

const SALT = utf8("qpq/server-store/v1");
const SECRETS_SALT = utf8("qpq/server-secrets/v1");
const CHECK_INPUT = utf8("qpq store check v1");
const SEP = new Uint8Array([0]);
/** Most memoized name lookups per store (the cache is simply emptied when full). */
const NAME_CACHE_SIZE = 10_000;

/** Sealing mode recorded in the database: it must match how the store is opened. */
export type SealMode = "plain" | "sealed-v1";

/** Which lookup a keyed hash is for; part of the hash input (domain separation). */
export type LookupLabel =
  | "user"
  | "channel"
  | "token"
  | "dm"
  | "login"
  | "message"
  | "skeleton";

/**
 * Seals values and derives lookup keys for one store. Holds keys, so it redacts itself
 * when inspected and can be {@link Sealer.destroy | destroyed} (zeroing its keys).
 */
export class Sealer {
  #sealKey: Uint8Array | undefined;
  #lookupKey: Uint8Array | undefined;
  #checkKey: Uint8Array | undefined;
  #destroyed = false;
  #names = new Map<string, Uint8Array>();

  private constructor(
    sealKey: Uint8Array | undefined,
    lookupKey: Uint8Array | undefined,
    checkKey: Uint8Array | undefined,
  ) {
    this.#sealKey = sealKey;
    this.#lookupKey = lookupKey;
    this.#checkKey = checkKey;
  }

  /** A sealer that stores values as they are (no `db_key`). */
  static plain(): Sealer {
    return new Sealer(undefined, undefined, undefined);
  }

  /**
   * Derive the sealing, lookup and check keys from a `db_key` string.
   *
   * @throws {StorageError} when the key is empty
   */
  static fromDbKey(dbKey: string): Sealer {
    if (dbKey.length === 0) throw new StorageError("Cannot open database: db_key is empty");
    const ikm = utf8(dbKey);
    try {
      return new Sealer(
        hkdfSha256(ikm, SALT, utf8("qpq server store seal key v1"), 32),
        hkdfSha256(ikm, SALT, utf8("qpq server store lookup key v1"), 32),
        hkdfSha256(ikm, SALT, utf8("qpq server store check key v1"), 32),
      );
    } finally {
      zeroize(ikm);
    }
  }

  /**
   * The sealer of the `secrets` table of a database without `db_key`: keys derived from
   * the 32 random bytes of the server's secrets key file (`server-secrets.key`), so that a
   * copy of the database alone does not hold the OPAQUE server setup. Only
   * {@link seal}, {@link open}, {@link checkValue} and {@link verifyCheck} are meant for it.
   *
   * @throws {StorageError} when the key is not 32 bytes
   */
  static fromSecretsKey(key: Uint8Array): Sealer {
    if (key.length !== 32) {
      throw new StorageError("Cannot open database: the secrets key is not 32 bytes");
    }
    return new Sealer(
      hkdfSha256(key, SECRETS_SALT, utf8("qpq server secrets seal key v1"), 32),
      hkdfSha256(key, SECRETS_SALT, utf8("qpq server secrets lookup key v1"), 32),
      hkdfSha256(key, SECRETS_SALT, utf8("qpq server secrets check key v1"), 32),
    );
  }

  /** The mode recorded in the database for this sealer. */
  get mode(): SealMode {
    return this.#sealKey === undefined ? "plain" : "sealed-v1";
  }

  /** True when values are encrypted at rest. */
  get sealed(): boolean {
    return this.#sealKey !== undefined;
  }

  /** The value stored at creation that lets {@link verifyCheck} recognise the key. */
  checkValue(): Uint8Array {
    this.#alive();
    if (this.#checkKey === undefined) return new Uint8Array(0);
    return hmacSha256(this.#checkKey, CHECK_INPUT);
  }

  /**
   * Compare a stored check value with this sealer's, in constant time.
   *
   * @throws {StorageError} "Cannot open database: wrong db_key" when they differ
   */
  verifyCheck(stored: Uint8Array): void {
    const mine = this.checkValue();
    if (!constantTimeEqual(mine, stored)) {
      throw new StorageError("Cannot open database: wrong db_key");
    }
  }

  /**
   * Seal `plaintext` for the row identified by `label` and `rowKey`.
   * In plain mode returns a copy of `plaintext`.
   */
  seal(label: string, rowKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
    this.#alive();
    if (this.#sealKey === undefined) return plaintext.slice();
    return sealXChaCha(this.#sealKey, plaintext, aad(label, rowKey));
  }

  /**
   * Open a value sealed by {@link seal} for the same `label` and `rowKey`.
   *
   * @throws {StorageError} when the value was modified or moved to another row
   */
  open(label: string, rowKey: Uint8Array, stored: Uint8Array): Uint8Array {
    this.#alive();
    if (this.#sealKey === undefined) return stored.slice();
    try {
      return openXChaCha(this.#sealKey, stored, aad(label, rowKey));
    } catch (e) {
      throw new StorageError("Cannot read database: a stored value failed authentication", {
        cause: e,
      });
    }
  }

  /**
   * The bytes a row is looked up by. With a key: HMAC-SHA256(lookup key, label ‖ 0 ‖ value).
   * Without: the value itself, except tokens, which become SHA-256(label ‖ 0 ‖ token).
   */
  lookup(label: LookupLabel, value: Uint8Array): Uint8Array {
    this.#alive();
    if (this.#lookupKey === undefined) {
      return label === "token" || label === "login"
        ? sha256(utf8(label), SEP, value)
        : value.slice();
    }
    return hmacSha256(this.#lookupKey, utf8(label), SEP, value);
  }

  /**
   * {@link lookup} of a username or channel name, memoized (bounded) because every call
   * that names a user needs it and HMAC calls through `node:crypto` cost ~15 µs each.
   * The returned bytes are shared: never modify them.
   */
  lookupName(label: "user" | "channel", name: string): Uint8Array {
    this.#alive();
    const key = label + "\0" + name;
    let v = this.#names.get(key);
    if (v === undefined) {
      if (this.#names.size >= NAME_CACHE_SIZE) this.#names.clear();
      v = this.lookup(label, utf8(name));
      this.#names.set(key, v);
    }
    return v;
  }

  /** Zero the keys; any later use throws {@link StorageError}. */
  destroy(): void {
    zeroize(this.#sealKey, this.#lookupKey, this.#checkKey);
    this.#names.clear();
    this.#destroyed = true;
  }

  #alive(): void {
    if (this.#destroyed) throw new StorageError("Cannot use store: it is closed");
  }

  /** Redacted: never shows key material. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Sealer { mode: "${this.mode}", keys: [redacted] }`;
  }

  /** Redacted JSON form. */
  toJSON(): { mode: SealMode; keys: string } {
    return { mode: this.mode, keys: "[redacted]" };
  }
}

function aad(label: string, rowKey: Uint8Array): Uint8Array {
  return concat(utf8(label), SEP, rowKey);
}
