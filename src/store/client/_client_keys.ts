/**
 * The keys of one client state, derived once per open from the password.
 *
 * ```
 * password ─Argon2id(salt, params)─▶ state key (32 B) ─HKDF-SHA256(salt "qpq/client-state/v1")─┐
 *      ┌──────────────────────────────────────────────────────────────────────────────────────┘
 *      ├─ "qpq client meta key v1"  → XChaCha20-Poly1305 key of the meta record (state file)
 *      ├─ "qpq client value key v1" → XChaCha20-Poly1305 key of every database value
 *      ├─ "qpq client index key v1" → HMAC-SHA256 key of every database lookup column
 *      ├─ "qpq client check key v1" → HMAC-SHA256 key of the two key-check values
 *      └─ "qpq client control key v1" → HMAC-SHA256 key of the local control socket's
 *                                        challenge answers (src/cli/_control.ts)
 * ```
 *
 * The Argon2id salt is random per state file, so two states with the same password share
 * no key, and a database moved next to another state file fails its check value.
 *
 * A state in memory (SQLite `:memory:`, {@link ClientKeys.inMemory}) has no file to protect:
 * its keys seal nothing (a value is stored as a copy of itself) and its lookup column is the
 * label and the value, not an HMAC; the same store code runs above them, without the
 * cryptographic cost per value (tests, the simulation, the load tool run thousands).
 *
 * @module
 */

import { concat, constantTimeEqual, utf8, zeroize } from "../../bytes.ts";
import {
  type Argon2idParams,
  deriveKeyFromPassword,
  hkdfSha256,
  hmacSha256,
  openXChaCha,
  sealXChaCha,
} from "../../crypto/mod.ts";
import { InternalError } from "../../errors.ts";

const HKDF_SALT = utf8("qpq/client-state/v1");
const STATE_CHECK_INPUT = utf8("qpq client state check v1");
const DB_CHECK_INPUT = utf8("qpq client db check v1");
const SEP = new Uint8Array([0]);

/**
 * Domain of a lookup hash or a sealed value; part of the HMAC input and of the AAD. One label
 * per table and sealed column, so a value copied to another column or table never opens.
 * "kv" and "kv-key" are only read (schema version 1, while migrating).
 */
export type ClientLabel =
  | "kv"
  | "kv-key"
  | "cursor"
  | "group"
  | "group-state"
  | "group-commit"
  | "group-secret"
  | "group-secret-slot"
  | "group-secret-epoch"
  | "key-package"
  | "key-package-private"
  | "contact"
  | "consent"
  | "conversation"
  | "conversation-name"
  | "message"
  | "outbox";

/** Subkeys of one open client state. Redacts itself; {@link ClientKeys.destroy} zeroes it. */
export class ClientKeys {
  #meta: Uint8Array;
  #value: Uint8Array;
  #index: Uint8Array;
  #check: Uint8Array;
  #control: Uint8Array;
  #destroyed = false;
  /** True for {@link ClientKeys.inMemory}: no sealing, no keyed hash. */
  readonly #plain: boolean;

  private constructor(stateKey: Uint8Array, plain = false) {
    this.#plain = plain;
    const k = (info: string) => hkdfSha256(stateKey, HKDF_SALT, utf8(info), 32);
    this.#meta = k("qpq client meta key v1");
    this.#value = k("qpq client value key v1");
    this.#index = k("qpq client index key v1");
    this.#check = k("qpq client check key v1");
    this.#control = k("qpq client control key v1");
  }

  /** Run Argon2id on the password and split the result into subkeys. */
  static async derive(
    password: string | Uint8Array,
    salt: Uint8Array,
    params: Argon2idParams,
  ): Promise<ClientKeys> {
    const stateKey = await deriveKeyFromPassword(password, salt, params);
    try {
      return new ClientKeys(stateKey);
    } finally {
      zeroize(stateKey);
    }
  }

  /**
   * The state key a password unlocks: for a version-1 state (no `slots`) the Argon2id output
   * itself; for version 2 the key in whichever slot the Argon2id output opens. Undefined
   * when no slot opens (a wrong password). The caller zeroes the result.
   */
  static async stateKey(
    password: string | Uint8Array,
    salt: Uint8Array,
    params: Argon2idParams,
    slots?: { sealed: Uint8Array[]; aad: Uint8Array },
  ): Promise<Uint8Array | undefined> {
    const derived = await deriveKeyFromPassword(password, salt, params);
    if (slots === undefined) return derived;
    try {
      for (const slot of slots.sealed) {
        try {
          const key = openXChaCha(derived, slot, slots.aad);
          if (key.length === 32) return key;
          zeroize(key);
        } catch { /* another password's slot */ }
      }
      return undefined;
    } finally {
      zeroize(derived);
    }
  }

  /** The subkeys of a state key (the caller keeps and zeroes `stateKey`). */
  static fromStateKey(stateKey: Uint8Array): ClientKeys {
    return new ClientKeys(stateKey);
  }

  /**
   * Keys of a state in memory: random subkeys (for the check values) that seal nothing; see
   * the module doc. Never used for a state on disk.
   */
  static inMemory(): ClientKeys {
    const stateKey = crypto.getRandomValues(new Uint8Array(32));
    try {
      return new ClientKeys(stateKey, true);
    } finally {
      zeroize(stateKey);
    }
  }

  /** A key slot: `stateKey` sealed under Argon2id(password, salt), bound to `aad`. */
  static async wrap(
    password: string | Uint8Array,
    salt: Uint8Array,
    params: Argon2idParams,
    stateKey: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const kek = await deriveKeyFromPassword(password, salt, params);
    try {
      return sealXChaCha(kek, stateKey, aad);
    } finally {
      zeroize(kek);
    }
  }

  /** HMAC-SHA256 under the control key (the local control socket's proofs). */
  controlMac(...parts: Uint8Array[]): Uint8Array {
    return hmacSha256(this.#alive(this.#control), ...parts);
  }

  /** Key-check value stored in the state header. */
  stateCheck(): Uint8Array {
    return hmacSha256(this.#alive(this.#check), STATE_CHECK_INPUT);
  }

  /** Key-check value stored in the database. */
  dbCheck(): Uint8Array {
    return hmacSha256(this.#alive(this.#check), DB_CHECK_INPUT);
  }

  /** Constant-time comparison of a stored check value with `expected`. */
  static checkMatches(stored: Uint8Array | undefined, expected: Uint8Array): boolean {
    return stored !== undefined && constantTimeEqual(stored, expected);
  }

  /** Seal the meta record; `header` (the state file header) is the associated data. */
  sealMeta(header: Uint8Array, plaintext: Uint8Array): Uint8Array {
    return sealXChaCha(this.#alive(this.#meta), plaintext, header);
  }

  /** Open the meta record. @throws {CryptoError} when it was modified or the key is wrong */
  openMeta(header: Uint8Array, sealed: Uint8Array): Uint8Array {
    return openXChaCha(this.#alive(this.#meta), sealed, header);
  }

  /** Keyed hash used as the on-disk lookup column for `value` in domain `label`. */
  lookup(label: ClientLabel, value: Uint8Array): Uint8Array {
    if (this.#plain) return concat(utf8(label), SEP, value);
    return hmacSha256(this.#alive(this.#index), utf8(label), SEP, value);
  }

  /** Seal a database value bound to its table (`label`) and row (`rowKey` parts). */
  seal(label: ClientLabel, plaintext: Uint8Array, ...rowKey: Uint8Array[]): Uint8Array {
    if (this.#plain) return this.#alive(plaintext).slice();
    return sealXChaCha(this.#alive(this.#value), plaintext, aad(label, rowKey));
  }

  /** Open a database value sealed by {@link seal} for the same label and row. */
  open(label: ClientLabel, sealed: Uint8Array, ...rowKey: Uint8Array[]): Uint8Array {
    if (this.#plain) return this.#alive(sealed).slice();
    return openXChaCha(this.#alive(this.#value), sealed, aad(label, rowKey));
  }

  /** Zero every subkey; later use throws. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    zeroize(this.#meta, this.#value, this.#index, this.#check, this.#control);
  }

  #alive(k: Uint8Array): Uint8Array {
    if (this.#destroyed) throw new InternalError("Client state keys used after close");
    return k;
  }

  /** Redacted JSON form. */
  toJSON(): string {
    return "[ClientKeys: redacted]";
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "ClientKeys { [redacted] }";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "ClientKeys { [redacted] }";
  }
}

function aad(label: ClientLabel, rowKey: Uint8Array[]): Uint8Array {
  return concat(utf8(label), SEP, ...rowKey);
}
