/**
 * Folder-private: a tiny bounded binary writer and reader (big-endian, length-prefixed)
 * used by the private KeyPackage and group state encodings. Every read checks bounds and
 * throws ValidationError; nothing here allocates more than the input holds.
 *
 * @module
 */

import { ValidationError } from "../errors.ts";

/** Appends big-endian integers and length-prefixed byte strings. */
export class Writer {
  #chunks: Uint8Array[] = [];
  #length = 0;

  /** Append raw bytes. */
  raw(b: Uint8Array): this {
    this.#chunks.push(b);
    this.#length += b.length;
    return this;
  }

  /** Append one byte. */
  u8(n: number): this {
    return this.raw(Uint8Array.of(n & 0xff));
  }

  /** Append a 16-bit unsigned integer. */
  u16(n: number): this {
    return this.raw(Uint8Array.of((n >>> 8) & 0xff, n & 0xff));
  }

  /** Append a 32-bit unsigned integer. */
  u32(n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n >>> 0);
    return this.raw(b);
  }

  /** Append a 64-bit unsigned integer. */
  u64(n: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n));
    return this.raw(b);
  }

  /** Append a 32-bit length then the bytes. */
  bytes(b: Uint8Array): this {
    return this.u32(b.length).raw(b);
  }

  /** Concatenate everything written. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let o = 0;
    for (const c of this.#chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** Reads what {@link Writer} wrote; every overrun is a ValidationError. */
export class Reader {
  readonly #b: Uint8Array;
  readonly #view: DataView;
  readonly #what: string;
  #o = 0;

  /** Read `b`; `what` names the structure in error messages. */
  constructor(b: Uint8Array, what: string) {
    this.#b = b;
    this.#view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.#what = what;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.#b.length - this.#o;
  }

  #need(n: number): void {
    if (n > this.remaining) throw new ValidationError(`${this.#what} is truncated`);
  }

  /** Read one byte. */
  u8(): number {
    this.#need(1);
    return this.#b[this.#o++]!;
  }

  /** Read a 16-bit unsigned integer. */
  u16(): number {
    this.#need(2);
    const n = this.#view.getUint16(this.#o);
    this.#o += 2;
    return n;
  }

  /** Read a 32-bit unsigned integer. */
  u32(): number {
    this.#need(4);
    const n = this.#view.getUint32(this.#o);
    this.#o += 4;
    return n;
  }

  /** Read a 64-bit unsigned integer. */
  u64(): bigint {
    this.#need(8);
    const n = this.#view.getBigUint64(this.#o);
    this.#o += 8;
    return n;
  }

  /** Read `n` raw bytes (a view into the input). */
  raw(n: number): Uint8Array {
    this.#need(n);
    const out = this.#b.subarray(this.#o, this.#o + n);
    this.#o += n;
    return out;
  }

  /** Read a 32-bit length then that many bytes, refusing lengths above `max`. */
  bytes(max: number): Uint8Array {
    const n = this.u32();
    if (n > max) throw new ValidationError(`${this.#what} has an oversized field`);
    return this.raw(n);
  }

  /** Throw unless everything was read. */
  end(): void {
    if (this.remaining !== 0) throw new ValidationError(`${this.#what} has trailing bytes`);
  }
}

/**
 * Decode `bytes` with a ts-mls decoder, requiring that it consumes them exactly.
 * Any failure (undefined, thrown codec error, leftover bytes) is a ValidationError.
 */
export function decodeExact<T>(
  decoder: (b: Uint8Array, offset: number) => [T, number] | undefined,
  bytes: Uint8Array,
  what: string,
): T {
  let r: [T, number] | undefined;
  try {
    r = decoder(bytes, 0);
  } catch (e) {
    throw new ValidationError(`${what} does not decode`, { cause: e });
  }
  if (r === undefined) throw new ValidationError(`${what} does not decode`);
  if (r[1] !== bytes.length) throw new ValidationError(`${what} has trailing bytes`);
  return r[0];
}

/** MLS variable-length integer (RFC 9420 §2.1.2) for a vector length below 2^30. */
function mlsVarint(n: number): Uint8Array {
  if (n < 0x40) return Uint8Array.of(n);
  if (n < 0x4000) return Uint8Array.of(0x40 | (n >>> 8), n & 0xff);
  if (n < 0x40000000) {
    return Uint8Array.of(0x80 | (n >>> 24), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }
  throw new ValidationError("Vector is too long to encode");
}

/**
 * Encode a vector of items as MLS `T items<V>` without recursion. ts-mls's own vector
 * encoder nests one closure per element and overflows the call stack near 10,000
 * elements, which large groups' trees reach.
 */
export function encodeVectorFlat<T>(
  items: readonly T[],
  encodeItem: (t: T) => Uint8Array,
): Uint8Array {
  const w = new Writer();
  const parts: Uint8Array[] = new Array(items.length);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    const p = encodeItem(items[i]!);
    parts[i] = p;
    total += p.length;
  }
  w.raw(mlsVarint(total));
  for (const p of parts) w.raw(p);
  return w.finish();
}
