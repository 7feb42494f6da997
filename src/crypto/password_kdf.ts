/**
 * Password-based key derivation with Argon2id (RFC 9106), via the WebAssembly build in
 * `hash-wasm`. Used to encrypt local state at rest and to derive the server's `db_key`.
 *
 * The parameters are a plain JSON-serialisable object so a state file can record the exact
 * cost it was written with and a later build can still open it after the defaults change.
 * Defaults are the OWASP minimum for Argon2id: m = 19 MiB, t = 2, p = 1.
 *
 * @module
 */

import { argon2id } from "hash-wasm";
import { utf8 } from "../bytes.ts";
import { CryptoError } from "../errors.ts";
import {
  MAX_ARGON2_ITERATIONS,
  MAX_ARGON2_MEMORY_KIB,
  MAX_ARGON2_PARALLELISM,
  MIN_PASSWORD_SALT_BYTES,
} from "../limits.ts";

/** Argon2id cost parameters, as recorded next to what they protect. */
export interface Argon2idParams {
  /** Always `"argon2id"`. */
  algorithm: "argon2id";
  /** Argon2 version; always `0x13` (19). */
  version: 19;
  /** Memory cost in KiB. */
  memoryKiB: number;
  /** Number of passes over memory (t). */
  iterations: number;
  /** Lanes (p). */
  parallelism: number;
}

/** Default Argon2id parameters: the OWASP minimum (19 MiB, 2 passes, 1 lane). */
export const DEFAULT_ARGON2ID_PARAMS: Readonly<Argon2idParams> = Object.freeze({
  algorithm: "argon2id",
  version: 19,
  memoryKiB: 19 * 1024,
  iterations: 2,
  parallelism: 1,
});

/** Length of keys from {@link deriveKeyFromPassword} (bytes). */
export const PASSWORD_KEY_BYTES = 32;

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * Check parameters read back from storage: the right algorithm and version, and costs
 * within the Argon2 minimums and qpq's maximums (so a crafted file cannot exhaust memory).
 *
 * @throws {CryptoError} when `value` is not acceptable Argon2id parameters
 */
export function parseArgon2idParams(value: unknown): Argon2idParams {
  if (typeof value !== "object" || value === null) {
    throw new CryptoError("Invalid password KDF parameters");
  }
  const v = value as Record<string, unknown>;
  if (v.algorithm !== "argon2id" || v.version !== 19) {
    throw new CryptoError("Unsupported password KDF algorithm");
  }
  if (!isInt(v.parallelism, 1, MAX_ARGON2_PARALLELISM)) {
    throw new CryptoError("Invalid password KDF parallelism");
  }
  if (!isInt(v.memoryKiB, 8 * v.parallelism, MAX_ARGON2_MEMORY_KIB)) {
    throw new CryptoError("Invalid password KDF memory cost");
  }
  if (!isInt(v.iterations, 1, MAX_ARGON2_ITERATIONS)) {
    throw new CryptoError("Invalid password KDF iteration count");
  }
  return {
    algorithm: "argon2id",
    version: 19,
    memoryKiB: v.memoryKiB,
    iterations: v.iterations,
    parallelism: v.parallelism,
  };
}

/**
 * Derive a 32-byte key from a password with Argon2id.
 *
 * A string password is NFC-normalised and UTF-8 encoded first, so the same typed password
 * gives the same key on every platform.
 *
 * @param salt at least 16 random bytes, stored beside the parameters
 * @param params cost parameters; {@link DEFAULT_ARGON2ID_PARAMS} when omitted
 * @throws {CryptoError} on a short salt or invalid parameters
 */
export async function deriveKeyFromPassword(
  password: string | Uint8Array,
  salt: Uint8Array,
  params: Argon2idParams = DEFAULT_ARGON2ID_PARAMS,
): Promise<Uint8Array> {
  const p = parseArgon2idParams(params);
  if (!(salt instanceof Uint8Array) || salt.length < MIN_PASSWORD_SALT_BYTES) {
    throw new CryptoError(`Password salt must be at least ${MIN_PASSWORD_SALT_BYTES} bytes`);
  }
  const pw = typeof password === "string" ? utf8(password.normalize("NFC")) : password;
  if (!(pw instanceof Uint8Array)) throw new CryptoError("Invalid password type");
  try {
    return await argon2id({
      password: pw,
      salt,
      memorySize: p.memoryKiB,
      iterations: p.iterations,
      parallelism: p.parallelism,
      hashLength: PASSWORD_KEY_BYTES,
      outputType: "binary",
    });
  } catch (e) {
    throw new CryptoError("Password key derivation failed", { cause: e });
  } finally {
    if (pw !== password) pw.fill(0);
  }
}
