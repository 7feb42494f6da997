/**
 * The client state file: format, meta record codec and atomic replacement.
 *
 * ```
 * offset  size  field
 * 0       4     magic "QPQS"
 * 4       1     format version (1)
 * 5       2     L, big-endian: length of the KDF parameters
 * 7       L     Argon2id parameters as canonical JSON (see password_kdf.ts)
 * 7+L     1     S: salt length (16..64)
 * 8+L     S     Argon2id salt
 * 8+L+S   32    key check: HMAC-SHA256(check key, "qpq client state check v1")
 * 40+L+S  4     M, big-endian: length of the sealed meta record
 * 44+L+S  M     XChaCha20-Poly1305(meta key, meta record, AAD = every byte before M)
 *               (end of file: trailing bytes make the file damaged)
 * ```
 *
 * Format version 2 (written by a password change, `qpq passwd`): the state key is random
 * (or, for a state first written as version 1, the Argon2id output of its first password)
 * and is kept wrapped under each password that opens the state, so changing the password
 * rewrites only this file (one atomic rename) and the database keeps its keys:
 *
 * ```
 * 0       4     magic "QPQS"
 * 4       1     format version (2)
 * 5       2+L+1+S  KDF parameters and salt, as in version 1
 * 8+L+S   1     N: key slots (1..2; 2 only while a password change is under way)
 * 9+L+S   72·N  each: XChaCha20-Poly1305(Argon2id(password, salt), state key,
 *               AAD = every byte before N)
 * …       32    key check, then M and the sealed meta, as in version 1
 * ```
 *
 * The meta record is a deterministic tag-length-value encoding (no JSON, so no secret ever
 * becomes an immutable JavaScript string):
 *
 * ```
 * u8 record version (1), then fields in increasing tag order, each at most once:
 *   u8 tag ‖ u32 big-endian length ‖ bytes
 *   1 username (UTF-8)   2 server (UTF-8)   3 identity seed (32)   4 identity public key
 *   5 session token      6 session expiry (float64 BE, ms)         7 device id (UTF-8)
 * ```
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { concat, fromUtf8, toHex, utf8, zeroize } from "../../bytes.ts";
import { type Argon2idParams, ED25519_SEED_BYTES } from "../../crypto/mod.ts";

/** First four bytes of every state file. */
export const STATE_MAGIC = "QPQS";
/** Current state file format version (of a new state). */
export const STATE_FORMAT_VERSION = 1;
/** Format version with wrapped state keys (after a password change). */
export const STATE_FORMAT_WRAPPED = 2;
/** Bytes of one key slot: nonce, sealed 32-byte state key, tag. */
export const KEY_SLOT_BYTES = 24 + 32 + 16;
/** Most key slots in a version-2 header. */
export const MAX_KEY_SLOTS = 2;
/** Salt length written by new state files (bytes). */
export const STATE_SALT_BYTES = 16;
const MAX_SALT_BYTES = 64;
const MAX_KDF_JSON_BYTES = 512;
const CHECK_BYTES = 32;
const META_RECORD_VERSION = 1;

/** Thrown by the decoders here; the store turns it into its one "damaged" message. */
export class DamagedStateError extends Error {
  override name = "DamagedStateError";
}

/** The parsed fixed part of a state file. */
export interface StateHeader {
  /** Argon2id parameters as recorded (unvalidated JSON value). */
  kdf: unknown;
  /** Argon2id salt. */
  salt: Uint8Array;
  /** Stored key-check value. */
  check: Uint8Array;
  /** Version 2: the wrapped state keys, and their AAD (the header bytes before them). */
  slots?: { sealed: Uint8Array[]; aad: Uint8Array };
  /** The raw header bytes (magic through check): the AAD of the sealed meta. */
  bytes: Uint8Array;
}

/** Everything held by the meta record. */
export interface MetaFields {
  username: string;
  server: string;
  identitySeed: Uint8Array;
  identityPublic: Uint8Array;
  sessionToken?: Uint8Array;
  sessionExpiresAt?: number;
  deviceId?: string;
}

/** Encode the header for new state: magic, version, KDF params, salt, check value. */
export function encodeStateHeader(
  kdf: Argon2idParams,
  salt: Uint8Array,
  check: Uint8Array,
): Uint8Array {
  const json = utf8(JSON.stringify({
    algorithm: kdf.algorithm,
    version: kdf.version,
    memoryKiB: kdf.memoryKiB,
    iterations: kdf.iterations,
    parallelism: kdf.parallelism,
  }));
  const fixed = new Uint8Array(7);
  fixed.set(utf8(STATE_MAGIC), 0);
  fixed[4] = STATE_FORMAT_VERSION;
  new DataView(fixed.buffer).setUint16(5, json.length);
  return concat(fixed, json, new Uint8Array([salt.length]), salt, check);
}

/**
 * The first part of a version-2 header (magic through salt): the AAD of its key slots.
 */
export function encodeWrappedHeaderPrefix(kdf: Argon2idParams, salt: Uint8Array): Uint8Array {
  const v1 = encodeStateHeader(kdf, salt, new Uint8Array(0));
  const out = v1.slice();
  out[4] = STATE_FORMAT_WRAPPED;
  return out;
}

/** A version-2 header: prefix, the key slots, the check value. */
export function encodeWrappedStateHeader(
  prefix: Uint8Array,
  slots: Uint8Array[],
  check: Uint8Array,
): Uint8Array {
  if (slots.length < 1 || slots.length > MAX_KEY_SLOTS) throw new RangeError("key slots");
  for (const s of slots) if (s.length !== KEY_SLOT_BYTES) throw new RangeError("key slot size");
  return concat(prefix, new Uint8Array([slots.length]), ...slots, check);
}

/** The whole file: header ‖ u32 length ‖ sealed meta. */
export function encodeStateFile(header: Uint8Array, sealedMeta: Uint8Array): Uint8Array {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, sealedMeta.length);
  return concat(header, len, sealedMeta);
}

/**
 * Split a state file into its header and sealed meta.
 *
 * @throws {DamagedStateError} on any structural problem
 */
export function parseStateFile(file: Uint8Array): { header: StateHeader; sealedMeta: Uint8Array } {
  const r = new Reader(file);
  if (fromLatin1(r.take(4)) !== STATE_MAGIC) throw new DamagedStateError("bad magic");
  const version = r.u8();
  if (version !== STATE_FORMAT_VERSION && version !== STATE_FORMAT_WRAPPED) {
    throw new DamagedStateError("unknown format version");
  }
  const jsonLen = r.u16();
  if (jsonLen > MAX_KDF_JSON_BYTES) throw new DamagedStateError("KDF parameters too long");
  let kdf: unknown;
  try {
    kdf = JSON.parse(fromUtf8(r.take(jsonLen)));
  } catch {
    throw new DamagedStateError("KDF parameters unreadable");
  }
  const saltLen = r.u8();
  if (saltLen < STATE_SALT_BYTES || saltLen > MAX_SALT_BYTES) {
    throw new DamagedStateError("bad salt length");
  }
  const salt = r.take(saltLen);
  let slots: StateHeader["slots"];
  if (version === STATE_FORMAT_WRAPPED) {
    const aad = file.subarray(0, r.offset);
    const n = r.u8();
    if (n < 1 || n > MAX_KEY_SLOTS) throw new DamagedStateError("bad key slot count");
    const sealed: Uint8Array[] = [];
    for (let i = 0; i < n; i++) sealed.push(r.take(KEY_SLOT_BYTES));
    slots = { sealed, aad };
  }
  const check = r.take(CHECK_BYTES);
  const headerEnd = r.offset;
  const sealedMeta = r.take(r.u32());
  if (!r.done) throw new DamagedStateError("trailing bytes");
  const header: StateHeader = { kdf, salt, check, bytes: file.subarray(0, headerEnd) };
  if (slots !== undefined) header.slots = slots;
  return { header, sealedMeta };
}

/** Encode the meta record (see the module doc). The caller zeroes the result. */
export function encodeMeta(m: MetaFields): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([META_RECORD_VERSION])];
  const field = (tag: number, b: Uint8Array) => {
    const h = new Uint8Array(5);
    h[0] = tag;
    new DataView(h.buffer).setUint32(1, b.length);
    parts.push(h, b);
  };
  field(1, utf8(m.username));
  field(2, utf8(m.server));
  field(3, m.identitySeed);
  field(4, m.identityPublic);
  if (m.sessionToken !== undefined) field(5, m.sessionToken);
  if (m.sessionExpiresAt !== undefined) {
    const t = new Uint8Array(8);
    new DataView(t.buffer).setFloat64(0, m.sessionExpiresAt);
    field(6, t);
  }
  if (m.deviceId !== undefined) field(7, utf8(m.deviceId));
  return concat(...parts);
}

/**
 * Decode a meta record; byte fields are fresh copies.
 *
 * @throws {DamagedStateError} when the record is malformed
 */
export function decodeMeta(b: Uint8Array): MetaFields {
  const r = new Reader(b);
  if (r.u8() !== META_RECORD_VERSION) throw new DamagedStateError("unknown meta version");
  const f = new Map<number, Uint8Array>();
  let last = 0;
  while (!r.done) {
    const tag = r.u8();
    if (tag <= last || tag > 7) throw new DamagedStateError("bad meta tag");
    last = tag;
    f.set(tag, r.take(r.u32()).slice());
  }
  const need = (tag: number) => {
    const v = f.get(tag);
    if (v === undefined) throw new DamagedStateError("missing meta field");
    return v;
  };
  try {
    const out: MetaFields = {
      username: fromUtf8(need(1)),
      server: fromUtf8(need(2)),
      identitySeed: need(3),
      identityPublic: need(4),
    };
    if (out.identitySeed.length !== ED25519_SEED_BYTES) {
      throw new DamagedStateError("bad identity seed");
    }
    const token = f.get(5);
    if (token !== undefined) out.sessionToken = token;
    const exp = f.get(6);
    if (exp !== undefined) {
      if (exp.length !== 8) throw new DamagedStateError("bad session expiry");
      out.sessionExpiresAt = new DataView(exp.buffer, exp.byteOffset, 8).getFloat64(0);
    }
    const dev = f.get(7);
    if (dev !== undefined) out.deviceId = fromUtf8(dev);
    return out;
  } catch (e) {
    for (const v of f.values()) zeroize(v);
    if (e instanceof DamagedStateError) throw e;
    throw new DamagedStateError("bad meta text");
  }
}

/** A fresh, unused temporary path next to `path`. */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${toHex(crypto.getRandomValues(new Uint8Array(6)))}`;
}

/**
 * Replace `path` with `data` atomically: write a temporary file in the same directory,
 * fsync it, rename it over `path`, then fsync the directory (where the platform allows).
 * A crash leaves either the old file or the new one, plus at most a stray temporary file.
 */
export function writeFileAtomicSync(path: string, data: Uint8Array): void {
  const tmp = tempPathFor(path);
  const f = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    try {
      let off = 0;
      while (off < data.length) off += f.writeSync(data.subarray(off));
      f.syncSync();
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone or never written */ }
    throw e;
  }
  syncDirectory(dirname(path));
}

/** fsync a directory so a rename in it is durable; silently skipped where unsupported. */
export function syncDirectory(dir: string): void {
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch { /* not supported here (e.g. Windows); the rename is still atomic */ }
}

/**
 * Remove temporary files a crash left next to `statePath` (state and database temporaries
 * and their SQLite side files). Returns how many were removed.
 */
export function removeStrayTempFiles(statePath: string): number {
  const dir = dirname(statePath);
  const base = basename(statePath);
  const prefixes = [`${base}.tmp-`, `${base}.db.tmp-`];
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile || !prefixes.some((p) => e.name.startsWith(p))) continue;
    try {
      Deno.removeSync(join(dir, e.name));
      n++;
    } catch { /* removed concurrently or not ours to remove */ }
  }
  return n;
}

function fromLatin1(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

class Reader {
  #b: Uint8Array;
  #o = 0;
  constructor(b: Uint8Array) {
    this.#b = b;
  }
  get offset(): number {
    return this.#o;
  }
  get done(): boolean {
    return this.#o === this.#b.length;
  }
  take(n: number): Uint8Array {
    if (n > this.#b.length - this.#o) throw new DamagedStateError("truncated");
    const out = this.#b.subarray(this.#o, this.#o + n);
    this.#o += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  u16(): number {
    const b = this.take(2);
    return (b[0]! << 8) | b[1]!;
  }
  u32(): number {
    const b = this.take(4);
    return ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!;
  }
}
