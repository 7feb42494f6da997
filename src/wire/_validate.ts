/**
 * Structural validation of a Cap'n Proto message before capnp-es reads it: every pointer
 * reachable from the root is followed on the raw bytes (schema-agnostic) and checked for
 * bounds, nesting depth and amplification. capnp-es trusts composite-list tags: a list
 * claiming 2^29 zero-size elements made it allocate hundreds of megabytes and spin for
 * seconds "upgrading" the elements to the reader's struct size, from a 264-byte frame. Here
 * each object costs at least one word per visit (zero-size elements included) against a
 * budget proportional to the message, as in the reference implementation's traversal
 * limit, so the work done for a frame is bounded by its size.
 *
 * ```
 * root pointer ─► struct: bounds ─► its pointers (depth + 1)
 *              ─► list: bounds; composite: tag count × element size ≤ list words
 *              ─► far: landing pad in an existing segment (never far to far)
 *              ─► capability: refused (qpq has none)
 * every visit: budget -= max(1, words); budget = 2 × message words + 64
 * ```
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { MAX_NESTING_DEPTH } from "../limits.ts";

/** Bits per element of each non-composite list element size (0..6). */
const ELEMENT_BITS = [0, 1, 8, 16, 32, 64, 64] as const;

/** Most segments accepted in one message; qpq writers always produce few. */
const MAX_SEGMENTS = 64;

/**
 * Check the segment table of an unpacked Cap'n Proto message: a whole number of words,
 * at most MAX_SEGMENTS segments, and segment sizes that add up to exactly the message.
 *
 * @param what what the bytes are, for the error text ("frame", "message content")
 * @throws {ValidationError} when the table is inconsistent
 */
export function checkSegmentTable(bytes: Uint8Array, what = "frame"): void {
  if (bytes.length < 8 || bytes.length % 8 !== 0) {
    throw new ValidationError(`Malformed ${what}: not a Cap'n Proto message`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true) + 1;
  if (count > MAX_SEGMENTS) throw new ValidationError(`Malformed ${what}: too many segments`);
  let header = 4 + 4 * count;
  header += header % 8;
  if (header > bytes.length) throw new ValidationError(`Malformed ${what}: bad segment table`);
  let total = header;
  for (let i = 0; i < count; i++) total += dv.getUint32(4 + 4 * i, true) * 8;
  if (total !== bytes.length) throw new ValidationError(`Malformed ${what}: bad segment table`);
}

/**
 * Check that `bytes` (a message whose segment table is already known to be consistent)
 * is a well-formed pointer structure within bounds, depth and traversal budget.
 *
 * @param what what the bytes are, for the error text ("frame", "message content")
 * @throws {ValidationError} on the first problem found
 */
export function validateMessage(
  bytes: Uint8Array,
  maxDepth = MAX_NESTING_DEPTH,
  what = "frame",
): void {
  const fail = (why: string): never => {
    throw new ValidationError(`Malformed ${what}: ${why}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true) + 1;
  let offset = 4 + 4 * count;
  offset += offset % 8;
  const starts: number[] = [];
  const sizes: number[] = [];
  for (let i = 0; i < count; i++) {
    starts.push(offset);
    sizes.push(dv.getUint32(4 + 4 * i, true));
    offset += sizes[i]! * 8;
  }
  let budget = 2 * ((bytes.length - starts[0]!) / 8) + 64;
  const charge = (words: number) => {
    budget -= words;
    if (budget < 0) fail("content larger than the frame (shared or zero-size pointers)");
  };
  const lo = (s: number, w: number) => dv.getUint32(starts[s]! + w * 8, true);
  const hi = (s: number, w: number) => dv.getUint32(starts[s]! + w * 8 + 4, true);

  const object = (s: number, target: number, type: number, b: number, depth: number): void => {
    if (depth > maxDepth) fail("nesting too deep");
    const words = sizes[s]!;
    if (target < 0) fail("pointer out of bounds");
    if (type === 0) {
      const dataWords = b & 0xffff;
      const pointers = b >>> 16;
      if (target + dataWords + pointers > words) fail("struct out of bounds");
      charge(Math.max(1, dataWords + pointers));
      for (let k = 0; k < pointers; k++) pointer(s, target + dataWords + k, depth + 1);
      return;
    }
    const elementSize = b & 7;
    const n = b >>> 3;
    if (elementSize === 7) {
      // composite: n is the content's word count; the tag word says elements and size
      if (target + 1 + n > words) fail("list out of bounds");
      const tagLo = lo(s, target);
      const tagHi = hi(s, target);
      if ((tagLo & 3) !== 0) fail("bad composite list tag");
      const elements = tagLo >> 2;
      const dataWords = tagHi & 0xffff;
      const pointers = tagHi >>> 16;
      const per = dataWords + pointers;
      if (elements < 0) fail("bad composite list tag");
      if (elements > 0 && per === 0) fail("zero-size list elements");
      if (elements * per > n) fail("list elements overrun the list");
      charge(1 + Math.max(n, elements));
      for (let e = 0; e < elements; e++) {
        const base = target + 1 + e * per + dataWords;
        for (let k = 0; k < pointers; k++) pointer(s, base + k, depth + 1);
      }
      return;
    }
    const bits = ELEMENT_BITS[elementSize]!;
    const listWords = Math.ceil((n * bits) / 64);
    if (target + listWords > words) fail("list out of bounds");
    charge(Math.max(1, listWords, bits === 0 ? n : 0));
    if (elementSize === 6) { for (let k = 0; k < n; k++) pointer(s, target + k, depth + 1); }
  };

  const pointer = (s: number, w: number, depth: number): void => {
    const a = lo(s, w);
    const b = hi(s, w);
    if (a === 0 && b === 0) return;
    const type = a & 3;
    if (type === 3) fail("capability pointers are not used by qpq");
    if (type !== 2) return object(s, w + 1 + (a >> 2), type, b, depth);
    // far pointer: a landing pad in segment b
    charge(1);
    const double = (a & 4) !== 0;
    const pad = a >>> 3;
    if (b >= count) fail("far pointer to a missing segment");
    if (pad + (double ? 2 : 1) > sizes[b]!) fail("far pointer out of bounds");
    if (!double) {
      if ((lo(b, pad) & 3) === 2) fail("far pointer to a far pointer");
      return pointer(b, pad, depth);
    }
    const padLo = lo(b, pad);
    const target = hi(b, pad);
    if ((padLo & 7) !== 2) fail("bad double-far landing pad");
    if (target >= count) fail("far pointer to a missing segment");
    const tagLo = lo(b, pad + 1);
    if ((tagLo & 3) >= 2) fail("bad double-far landing pad");
    return object(target, padLo >>> 3, tagLo & 3, hi(b, pad + 1), depth);
  };

  if (sizes[0]! < 1) fail("empty message");
  pointer(0, 0, 0);
}
