/**
 * The hot frames read and written directly on the bytes, without capnp-es objects: ping,
 * ack, fetch, subscribe and enqueue requests; ok, error, pong, enqueued and messages
 * responses; pushes. Every other frame, and any frame of an unusual shape, goes through
 * capnp-es (codec.ts) as before.
 *
 * The same field tables drive both (messages.ts), walked in the same order; what this file
 * adds is each hot struct's layout (where schemas/qpq.capnp's compiler put each field, as
 * the generated `_gen/qpq.ts` reads it). The bytes written are capnp-es's, byte for byte:
 * one segment, objects allocated in table order exactly where capnp-es's bump allocator
 * puts them (tests/wire_direct_test.ts compares both encoders on random frames and the
 * recorded ones, and both decoders on valid, mutated and hostile frames).
 *
 * ```
 * encode: Frame value ─► layout of each struct? no: capnp-es  ─► same bytes
 *                        yes: bump-allocate words in table order into a reused arena
 * decode: bytes ─► size cap, segment table, pointer walk (codec.ts, unchanged)
 *   ─► one segment, near pointers, byte/pointer/composite lists as the schema says,
 *      structs at least the schema's size? no: capnp-es decides (result or error)
 *   ─► yes: fields read in table order, with the same content budget and errors
 * ```
 *
 * Reading trusts nothing the pointer walk did not check: every object read here was
 * bounds-checked by `validateMessage` (codec.ts calls it first), and every pointer's kind
 * and element size is checked here before it is followed.
 *
 * @module
 */
import type { FieldKind, Frame, StructDesc, UnionDesc } from "./messages.ts";
import { PUSH, REQUEST, RESPONSE } from "./messages.ts";
import { ValidationError } from "../errors.ts";
import { MAX_FRAME_BYTES } from "../limits.ts";
import { type Budget, spend } from "./_budget.ts";

/** Where a struct's fields are: byte offset (bit offset for bool) or pointer index. */
interface Layout {
  readonly dataWords: number;
  readonly pointers: number;
  readonly at: { readonly [field: string]: number };
}

const MESSAGE_LAYOUT: Layout = {
  dataWords: 4,
  pointers: 5,
  at: {
    seq: 0,
    channelId: 0,
    sender: 1,
    messageId: 2,
    payload: 3,
    messageKind: 8,
    epoch: 16,
    sentAtMs: 24,
    channelName: 4,
    channelKind: 10,
    serverNotice: 12,
  },
};

/** Layouts of the hot members of the Request union (capnp-es `_gen/qpq.ts` getters). */
const REQUEST_LAYOUTS: { readonly [kind: string]: Layout } = {
  ping: { dataWords: 1, pointers: 1, at: { clientTimeMs: 0, payload: 0 } },
  enqueue: {
    dataWords: 2,
    pointers: 4,
    at: {
      channelId: 0,
      messageId: 1,
      payload: 2,
      messageKind: 0,
      epoch: 8,
      recipients: 3,
      ephemeral: 16,
    },
  },
  fetch: { dataWords: 2, pointers: 0, at: { afterSeq: 0, limit: 8 } },
  ack: { dataWords: 1, pointers: 0, at: { uptoSeq: 0 } },
  subscribe: { dataWords: 1, pointers: 0, at: { afterSeq: 0 } },
};

/** Layouts of the hot members of the Response union. */
const RESPONSE_LAYOUTS: { readonly [kind: string]: Layout } = {
  error: { dataWords: 0, pointers: 2, at: { code: 0, message: 1 } },
  pong: { dataWords: 2, pointers: 1, at: { clientTimeMs: 0, serverTimeMs: 8, payload: 0 } },
  enqueued: { dataWords: 1, pointers: 0, at: { duplicate: 0, recipients: 4 } },
  messages: { dataWords: 1, pointers: 1, at: { messages: 0, more: 0 } },
};

const PUSH_LAYOUT: Layout = { dataWords: 0, pointers: 1, at: { messages: 0 } };

/** Layout of the struct of each list-of-struct table used by a hot struct. */
const LIST_LAYOUTS = new Map<StructDesc, Layout>([[PUSH.messages.list, MESSAGE_LAYOUT]]);

// Frame { version u16 @0, body which u16 @2, requestId u64 @8; body pointer 0 }
const FRAME_DATA_WORDS = 2;
const FRAME_POINTERS = 1;
// Request and Response: { which u16 @0; member pointer 0 }
const UNION_DATA_WORDS = 1;
const UNION_POINTERS = 1;
const BODY_REQUEST = 0;
const BODY_RESPONSE = 1;
const BODY_PUSH = 2;

/** Discriminant of each union member (schema order, as the tables list them). */
function indexOf(desc: UnionDesc): Map<string, number> {
  return new Map(Object.keys(desc).map((k, i) => [k, i]));
}
const REQUEST_INDEX = indexOf(REQUEST);
const RESPONSE_INDEX = indexOf(RESPONSE);
const REQUEST_KINDS = Object.keys(REQUEST);
const RESPONSE_KINDS = Object.keys(RESPONSE);

/** Whether `layout` covers every field of `desc` (and the list structs it names). */
function covers(desc: StructDesc, layout: Layout): boolean {
  for (const [field, kind] of Object.entries(desc)) {
    if (!(field in layout.at)) return false;
    const k = typeof kind === "object" && "optional" in kind ? kind.optional : kind;
    if (typeof k === "object" && "struct" in k) return false;
    if (typeof k === "object" && "list" in k && k.list !== "text" && !LIST_LAYOUTS.has(k.list)) {
      return false;
    }
  }
  return true;
}

for (const [kind, layout] of Object.entries(REQUEST_LAYOUTS)) {
  if (REQUEST[kind as keyof typeof REQUEST] === "void") throw new Error(`${kind} is void`);
  if (!covers(REQUEST[kind as keyof typeof REQUEST] as StructDesc, layout)) {
    throw new Error(`direct layout of request ${kind} misses a field`);
  }
}
for (const [kind, layout] of Object.entries(RESPONSE_LAYOUTS)) {
  if (!covers(RESPONSE[kind as keyof typeof RESPONSE] as StructDesc, layout)) {
    throw new Error(`direct layout of response ${kind} misses a field`);
  }
}

/** The layout of a frame's body struct, or null when the member is void, undefined when not hot. */
function bodyLayout(
  desc: UnionDesc,
  layouts: { readonly [kind: string]: Layout },
  kind: string,
): Layout | null | undefined {
  const member = desc[kind];
  if (member === undefined) return undefined;
  if (member === "void") return null;
  return layouts[kind];
}

// ------------------------------------------------------------------ encode

/** Size of the arena encodes start from; a bigger frame grows it. */
const ARENA_BYTES = 4096;
/** Largest grown arena kept for the next encode. */
const MAX_KEPT_ARENA_BYTES = 64 * 1024;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * A single-segment message under construction: words bump-allocated from 0 (word 0 is the
 * root pointer), as capnp-es's single-segment arena allocates them.
 */
class Builder {
  bytes: Uint8Array = new Uint8Array(ARENA_BYTES);
  dv: DataView = new DataView(this.bytes.buffer);
  /** Words allocated so far. */
  words = 0;

  /** Allocate `n` zeroed words; returns the first. */
  alloc(n: number): number {
    const at = this.words;
    const need = (at + n) * 8;
    if (need > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.bytes.subarray(0, at * 8));
      this.bytes = grown;
      this.dv = new DataView(grown.buffer);
    }
    this.words = at + n;
    return at;
  }

  /** Write a struct pointer at word `p` to a struct at word `target`. */
  structPointer(p: number, target: number, dataWords: number, pointers: number): void {
    this.dv.setUint32(p * 8, ((target - p - 1) << 2) >>> 0, true);
    this.dv.setUint32(p * 8 + 4, (dataWords | (pointers << 16)) >>> 0, true);
  }

  /** Write a list pointer at word `p` to a list at word `target`. */
  listPointer(p: number, target: number, elementSize: number, count: number): void {
    this.dv.setUint32(p * 8, (((target - p - 1) << 2) | 1) >>> 0, true);
    this.dv.setUint32(p * 8 + 4, (elementSize | (count << 3)) >>> 0, true);
  }

  /** Zero what was used, so the next encode starts from zeroed memory. */
  reset(): void {
    if (this.bytes.length > MAX_KEPT_ARENA_BYTES) {
      this.bytes = new Uint8Array(ARENA_BYTES);
      this.dv = new DataView(this.bytes.buffer);
    } else {
      this.bytes.fill(0, 0, this.words * 8);
    }
    this.words = 0;
  }
}

let spare: Builder | undefined = new Builder();

function writeU64(b: Builder, at: number, v: unknown): void {
  const n = v as number;
  if (Number.isSafeInteger(n) && n >= 0) {
    b.dv.setUint32(at, n % 0x1_0000_0000, true);
    b.dv.setUint32(at + 4, Math.floor(n / 0x1_0000_0000), true);
  } else {
    b.dv.setBigUint64(at, BigInt(n), true); // as capnp-es: BigInt() throws, setBigUint64 wraps
  }
}

/** Allocate a Text (UTF-8 and a NUL) and point word `p` at it. */
function writeText(b: Builder, p: number, s: string): void {
  // at most 3 bytes per UTF-16 unit; allocate the exact size after encoding
  const max = s.length * 3 + 1;
  const start = b.words;
  b.alloc((max + 7) >>> 3);
  const { written } = textEncoder.encodeInto(s, b.bytes.subarray(start * 8, start * 8 + max - 1));
  const words = (written + 1 + 7) >>> 3;
  // give back the words the text did not use (they are still zero)
  b.words = start + words;
  b.listPointer(p, start, 2, written + 1);
}

function writeData(b: Builder, p: number, bytes: Uint8Array): void {
  const at = b.alloc((bytes.length + 7) >>> 3);
  b.bytes.set(bytes, at * 8);
  b.listPointer(p, at, 2, bytes.length);
}

function writeStruct(
  b: Builder,
  s: number,
  layout: Layout,
  desc: StructDesc,
  value: Record<string, unknown>,
): void {
  for (const field in desc) writeField(b, s, layout, field, desc[field]!, value[field]);
}

function writeField(
  b: Builder,
  s: number,
  layout: Layout,
  field: string,
  kind: FieldKind,
  v: unknown,
): void {
  const at = layout.at[field]!;
  const data = s * 8;
  const ptr = s + layout.dataWords + at;
  switch (kind) {
    case "text":
      writeText(b, ptr, v as string);
      return;
    case "data": {
      const bytes = v as Uint8Array;
      if (bytes.length > 0) writeData(b, ptr, bytes);
      return;
    }
    case "u64":
      writeU64(b, data + at, v);
      return;
    case "u32":
      b.dv.setUint32(data + at, v as number, true);
      return;
    case "u16":
      b.dv.setUint16(data + at, v as number, true);
      return;
    case "bool": {
      const i = data + (at >>> 3);
      const mask = 1 << (at & 7);
      b.bytes[i] = v ? b.bytes[i]! | mask : b.bytes[i]! & ~mask;
      return;
    }
  }
  if ("optional" in kind) {
    // as codec.ts: an empty optional Text stays a null pointer
    if (v !== undefined && !(kind.optional === "text" && v === "")) {
      writeField(b, s, layout, field, kind.optional, v);
    }
    return;
  }
  if ("enum" in kind) {
    const i = kind.enum.indexOf(v as string);
    if (i < 0) throw new ValidationError(`Field ${field} has an unknown value`);
    b.dv.setUint16(data + at, i, true);
    return;
  }
  if ("struct" in kind) throw new Error("no direct layout for a struct field");
  const items = v as unknown[];
  if (items.length === 0) return; // as codec.ts: an empty list stays a null pointer
  if (kind.list === "text") {
    const list = b.alloc(items.length);
    b.listPointer(ptr, list, 6, items.length);
    for (let i = 0; i < items.length; i++) writeText(b, list + i, items[i] as string);
    return;
  }
  const el = LIST_LAYOUTS.get(kind.list)!;
  const per = el.dataWords + el.pointers;
  const tag = b.alloc(1 + per * items.length);
  b.listPointer(ptr, tag, 7, per * items.length);
  b.dv.setUint32(tag * 8, (items.length << 2) >>> 0, true);
  b.dv.setUint32(tag * 8 + 4, (el.dataWords | (el.pointers << 16)) >>> 0, true);
  for (let i = 0; i < items.length; i++) {
    writeStruct(b, tag + 1 + i * per, el, kind.list, items[i] as Record<string, unknown>);
  }
}

/**
 * Encode `frame` directly when it is one of the hot frames: the bytes of codec.ts's
 * capnp-es encoder (after `prefix` bytes holding the big-endian length when 4), or
 * undefined for any other frame.
 *
 * @throws {ValidationError} as the capnp-es encoder does (unknown enum value, too large)
 */
export function encodeDirect(frame: Frame, prefix: 0 | 4): Uint8Array | undefined {
  let layout: Layout | null | undefined;
  let desc: StructDesc | undefined;
  let which: number;
  let member = 0;
  if (frame.type === "request") {
    layout = bodyLayout(REQUEST, REQUEST_LAYOUTS, frame.request.kind);
    if (layout === undefined) return undefined;
    desc = REQUEST[frame.request.kind] as StructDesc;
    which = BODY_REQUEST;
    member = REQUEST_INDEX.get(frame.request.kind)!;
  } else if (frame.type === "response") {
    layout = bodyLayout(RESPONSE, RESPONSE_LAYOUTS, frame.response.kind);
    if (layout === undefined) return undefined;
    desc = RESPONSE[frame.response.kind] as StructDesc;
    which = BODY_RESPONSE;
    member = RESPONSE_INDEX.get(frame.response.kind)!;
  } else if (frame.type === "push") {
    layout = PUSH_LAYOUT;
    desc = PUSH;
    which = BODY_PUSH;
  } else {
    return undefined;
  }
  const b = spare ?? new Builder();
  spare = undefined;
  try {
    b.alloc(1); // the root pointer
    const root = b.alloc(FRAME_DATA_WORDS + FRAME_POINTERS);
    b.structPointer(0, root, FRAME_DATA_WORDS, FRAME_POINTERS);
    b.dv.setUint16(root * 8, frame.version, true);
    writeU64(b, root * 8 + 8, frame.requestId);
    b.dv.setUint16(root * 8 + 2, which, true);
    const bodyPtr = root + FRAME_DATA_WORDS;
    let target: number;
    if (which === BODY_PUSH) {
      target = b.alloc(layout!.dataWords + layout!.pointers);
      b.structPointer(bodyPtr, target, layout!.dataWords, layout!.pointers);
    } else {
      const union = b.alloc(UNION_DATA_WORDS + UNION_POINTERS);
      b.structPointer(bodyPtr, union, UNION_DATA_WORDS, UNION_POINTERS);
      b.dv.setUint16(union * 8, member, true);
      if (layout === null) return finish(b, prefix);
      target = b.alloc(layout!.dataWords + layout!.pointers);
      b.structPointer(union + UNION_DATA_WORDS, target, layout!.dataWords, layout!.pointers);
    }
    const value = frame.type === "request"
      ? frame.request
      : frame.type === "response"
      ? frame.response
      : frame.push;
    writeStruct(b, target, layout!, desc, value as unknown as Record<string, unknown>);
    return finish(b, prefix);
  } finally {
    b.reset();
    spare = b;
  }
}

/** The stream framing of the one segment (count - 1 = 0, its size in words), after `prefix`. */
function finish(b: Builder, prefix: 0 | 4): Uint8Array {
  const size = 8 + b.words * 8;
  if (size > MAX_FRAME_BYTES) {
    throw new ValidationError("Message is too large to send", { code: "too_large" });
  }
  const out = new Uint8Array(prefix + size);
  const dv = new DataView(out.buffer);
  if (prefix === 4) dv.setUint32(0, size, false);
  dv.setUint32(prefix + 4, b.words, true);
  out.set(b.bytes.subarray(0, b.words * 8), prefix + 8);
  return out;
}

// ------------------------------------------------------------------ decode

/** Thrown inside the reader when the frame's shape is not the plain one: capnp-es decides. */
const UNUSUAL = Symbol("unusual frame shape");

/** A struct located in the frame: its data section's byte offset, and its sizes. */
interface At {
  data: number;
  dataWords: number;
  pointers: number;
}

/**
 * A reader of one validated single-segment frame (`bytes` from its segment table on; the
 * segment starts at byte 8).
 */
class Reader {
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  readonly budget: Budget;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.budget = { left: bytes.length };
  }

  /** Byte offset of word `w` of the segment. */
  word(w: number): number {
    return 8 + w * 8;
  }

  /** The struct word `p` points at, at least `dataWords` and `pointers` big. */
  struct(p: number, dataWords: number, pointers: number): At {
    const lo = this.dv.getUint32(this.word(p), true);
    const hi = this.dv.getUint32(this.word(p) + 4, true);
    // null (capnp-es reads a zero struct), not a struct, or too small: capnp-es decides
    if ((lo === 0 && hi === 0) || (lo & 3) !== 0) throw UNUSUAL;
    const dw = hi & 0xffff;
    const pc = hi >>> 16;
    if (dw < dataWords || pc < pointers) throw UNUSUAL;
    const target = p + 1 + (lo >> 2);
    return { data: this.word(target), dataWords: dw, pointers: pc };
  }

  /**
   * The list word `p` points at: [byte offset of its content, count], or undefined when
   * null. Anything but a near list of `elementSize`: capnp-es decides.
   */
  list(p: number, elementSize: number): [number, number] | undefined {
    const lo = this.dv.getUint32(this.word(p), true);
    const hi = this.dv.getUint32(this.word(p) + 4, true);
    if (lo === 0 && hi === 0) return undefined;
    if ((lo & 3) !== 1 || (hi & 7) !== elementSize) throw UNUSUAL;
    return [this.word(p + 1 + (lo >> 2)), hi >>> 3];
  }

  text(p: number): string {
    const l = this.list(p, 2);
    if (l === undefined) return "";
    // capnp-es reads a zero-length Text as length -1 (and throws): it decides
    if (l[1] === 0) throw UNUSUAL;
    const s = textDecoder.decode(this.bytes.subarray(l[0], l[0] + l[1] - 1));
    spend(this.budget, s.length); // UTF-16 units never outnumber the UTF-8 bytes
    return s;
  }

  readStruct(
    at: At,
    layout: Layout,
    desc: StructDesc,
    out: Record<string, unknown>,
  ): Record<string, unknown> {
    for (const field in desc) out[field] = this.readField(at, layout, field, desc[field]!);
    return out;
  }

  readField(at: At, layout: Layout, field: string, kind: FieldKind): unknown {
    const o = layout.at[field]!;
    const ptr = (at.data - 8) / 8 + at.dataWords + o;
    switch (kind) {
      case "text":
        return this.text(ptr);
      case "data": {
        const l = this.list(ptr, 2);
        if (l === undefined) return new Uint8Array(0);
        spend(this.budget, l[1]);
        return this.bytes.slice(l[0], l[0] + l[1]);
      }
      case "u64": {
        const lo = this.dv.getUint32(at.data + o, true);
        const hi = this.dv.getUint32(at.data + o + 4, true);
        if (hi >= 0x20_0000) throw new ValidationError(`Field ${field} is out of range`);
        return hi * 0x1_0000_0000 + lo;
      }
      case "u32":
        return this.dv.getUint32(at.data + o, true);
      case "u16":
        return this.dv.getUint16(at.data + o, true);
      case "bool":
        return (this.bytes[at.data + (o >>> 3)]! & (1 << (o & 7))) !== 0;
    }
    if ("optional" in kind) return this.readField(at, layout, field, kind.optional);
    if ("enum" in kind) {
      const name = kind.enum[this.dv.getUint16(at.data + o, true)];
      if (name === undefined) throw new ValidationError(`Field ${field} has an unknown value`);
      return name;
    }
    if ("struct" in kind) throw UNUSUAL;
    const out: unknown[] = [];
    if (kind.list === "text") {
      const l = this.list(ptr, 6);
      if (l === undefined) return out;
      spend(this.budget, 8 * l[1]); // each element takes at least one word
      const first = (l[0] - 8) / 8;
      for (let i = 0; i < l[1]; i++) out.push(this.text(first + i));
      return out;
    }
    const el = LIST_LAYOUTS.get(kind.list)!;
    const l = this.list(ptr, 7);
    if (l === undefined) return out;
    const tag = l[0];
    const tagLo = this.dv.getUint32(tag, true);
    const tagHi = this.dv.getUint32(tag + 4, true);
    const n = tagLo >>> 2;
    const dw = tagHi & 0xffff;
    const pc = tagHi >>> 16;
    if (dw < el.dataWords || pc < el.pointers) throw UNUSUAL;
    spend(this.budget, 8 * n);
    for (let i = 0; i < n; i++) {
      const e: At = { data: tag + 8 + i * (dw + pc) * 8, dataWords: dw, pointers: pc };
      out.push(this.readStruct(e, el, kind.list, {}));
    }
    return out;
  }
}

/**
 * The header of a validated frame of the plain shape (one segment, a Frame struct at least
 * the schema's size), read on the bytes; undefined otherwise (capnp-es reads it).
 *
 * @throws {ValidationError} when the request id is past 2^53 - 1, as capnp-es's reader does
 */
export function readHeaderDirect(
  bytes: Uint8Array,
): { version: number; requestId: number } | undefined {
  if (bytes.length < 16 || bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) {
    return undefined;
  }
  const r = new Reader(bytes);
  let root: At;
  try {
    root = r.struct(0, FRAME_DATA_WORDS, FRAME_POINTERS);
  } catch (e) {
    if (e === UNUSUAL) return undefined;
    throw e;
  }
  const version = r.dv.getUint16(root.data, true);
  const lo = r.dv.getUint32(root.data + 8, true);
  const hi = r.dv.getUint32(root.data + 12, true);
  if (hi >= 0x20_0000) throw new ValidationError("Field requestId is out of range");
  return { version, requestId: hi * 0x1_0000_0000 + lo };
}

/**
 * Decode the body of a frame whose structure `validateMessage` accepted, directly, when it
 * is a hot frame of the plain shape (one segment, near pointers, the schema's kinds and at
 * least its sizes); undefined otherwise (capnp-es decodes it, or refuses it).
 *
 * @throws {ValidationError} as capnp-es's decode does (unknown union member or enum value,
 *   u64 out of range, content budget)
 */
export function decodeDirect(
  bytes: Uint8Array,
  head: { version: number; requestId: number },
): Frame | undefined {
  if (bytes.length < 16 || bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) {
    return undefined;
  }
  const r = new Reader(bytes);
  try {
    const root = r.struct(0, FRAME_DATA_WORDS, FRAME_POINTERS);
    const which = r.dv.getUint16(root.data + 2, true);
    const bodyPtr = (root.data - 8) / 8 + root.dataWords;
    if (which === BODY_PUSH) {
      const at = r.struct(bodyPtr, PUSH_LAYOUT.dataWords, PUSH_LAYOUT.pointers);
      const push = r.readStruct(at, PUSH_LAYOUT, PUSH, {});
      return { ...head, type: "push", push } as Frame;
    }
    if (which !== BODY_REQUEST && which !== BODY_RESPONSE) return undefined;
    const request = which === BODY_REQUEST;
    const union = r.struct(bodyPtr, UNION_DATA_WORDS, UNION_POINTERS);
    const kind = (request ? REQUEST_KINDS : RESPONSE_KINDS)[r.dv.getUint16(union.data, true)];
    if (kind === undefined) return undefined;
    const layout = request
      ? bodyLayout(REQUEST, REQUEST_LAYOUTS, kind)
      : bodyLayout(RESPONSE, RESPONSE_LAYOUTS, kind);
    if (layout === undefined) return undefined;
    let value: Record<string, unknown> = { kind };
    if (layout !== null) {
      const at = r.struct(
        (union.data - 8) / 8 + union.dataWords,
        layout.dataWords,
        layout.pointers,
      );
      const desc = ((request ? REQUEST : RESPONSE) as UnionDesc)[kind] as StructDesc;
      value = r.readStruct(at, layout, desc, value);
    }
    return (request
      ? { ...head, type: "request", request: value }
      : { ...head, type: "response", response: value }) as Frame;
  } catch (e) {
    if (e === UNUSUAL) return undefined;
    throw e;
  }
}
