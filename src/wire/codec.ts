/**
 * Frame codec: typed {@link Frame} values to Cap'n Proto bytes and back. This is the only
 * place that touches capnp-es objects. Decoding is done once, at the edge, with size,
 * segment, traversal and nesting caps; anything malformed becomes a {@link ValidationError}.
 *
 * ```
 * bytes --(size cap, segment table, pointer walk: bounds, depth, amplification)-->
 *   capnp Message --(field tables, content budget)--> Frame
 * ```
 *
 * @module
 */
import * as $ from "capnp-es";
import * as gen from "./_gen/qpq.ts";
import {
  type FieldKind,
  type Frame,
  PUSH,
  REQUEST,
  RESPONSE,
  type StructDesc,
  type UnionDesc,
} from "./messages.ts";
import { MAX_FRAME_BYTES, MAX_NESTING_DEPTH, MAX_TRAVERSAL_WORDS } from "../limits.ts";
import { QpqError, ValidationError } from "../errors.ts";
import { checkSegmentTable, validateMessage } from "./_validate.ts";
import { type Budget, spend } from "./_budget.ts";
import { decodeDirect, encodeDirect, readHeaderDirect } from "./_direct.ts";

// capnp-es generated classes are walked by field name; this alias is the dynamic view.
// deno-lint-ignore no-explicit-any
type Dyn = any;

function cap(name: string): string {
  return name[0]!.toUpperCase() + name.slice(1);
}

function whichName(name: string): string {
  return name.replace(/([A-Z])/g, "_$1").toUpperCase();
}

/** Union member names by discriminant value, derived from the generated `*_Which` tables. */
function unionIndex(desc: UnionDesc, which: Record<string, number>): string[] {
  const out: string[] = [];
  for (const [member, fields] of Object.entries(desc)) {
    if (fields !== "void" && "kind" in fields) {
      throw new Error(`wire table member ${member} has a field named kind, which is the union tag`);
    }
    const v = which[whichName(member)];
    if (v === undefined) throw new Error(`wire table member ${member} missing from schema`);
    out[v] = member;
  }
  return out;
}

const REQUEST_BY_INDEX = unionIndex(REQUEST, gen.Request_Which);
const RESPONSE_BY_INDEX = unionIndex(RESPONSE, gen.Response_Which);

function toSafeNumber(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ValidationError(`Field ${field} is out of range`);
  }
  return Number(v);
}

/** One field of a struct table, with the name of its capnp-es initializer. */
interface FieldEntry {
  readonly field: string;
  readonly kind: FieldKind;
  /** `_initName`: the capnp-es method that allocates a pointer field. */
  readonly init: string;
}

const FIELDS = new WeakMap<StructDesc, readonly FieldEntry[]>();

/** The fields of a table in schema order, listed once per table (not on every frame). */
function fieldsOf(desc: StructDesc): readonly FieldEntry[] {
  let fields = FIELDS.get(desc);
  if (fields === undefined) {
    fields = Object.entries(desc).map(([field, kind]) => ({
      field,
      kind,
      init: `_init${cap(field)}`,
    }));
    FIELDS.set(desc, fields);
  }
  return fields;
}

// ------------------------------------------------------------------ encode

function writeStruct(target: Dyn, desc: StructDesc, value: Record<string, unknown>): void {
  for (const f of fieldsOf(desc)) writeField(target, f.field, f.init, f.kind, value[f.field]);
}

function writeField(target: Dyn, field: string, init: string, kind: FieldKind, v: unknown): void {
  switch (kind) {
    case "text":
      target[field] = v as string;
      return;
    case "data": {
      const bytes = v as Uint8Array;
      if (bytes.length > 0) target[init](bytes.length).copyBuffer(bytes);
      return;
    }
    case "u64":
      target[field] = BigInt(v as number);
      return;
    case "u32":
    case "u16":
    case "bool":
      target[field] = v;
      return;
  }
  if ("optional" in kind) {
    // like empty Data and lists, an empty optional Text stays a null pointer (read back as
    // ""), so a decoded frame re-encodes to the same bytes whether or not it was set
    if (v !== undefined && !(kind.optional === "text" && v === "")) {
      writeField(target, field, init, kind.optional, v);
    }
    return;
  }
  if ("enum" in kind) {
    const i = kind.enum.indexOf(v as string);
    if (i < 0) throw new ValidationError(`Field ${field} has an unknown value`);
    target[field] = i;
  } else if ("struct" in kind) {
    writeStruct(target[init](), kind.struct, v as Record<string, unknown>);
  } else {
    const items = v as unknown[];
    // Like empty Data: an empty list stays a null pointer (read back as empty), so a
    // decoded frame re-encodes to the same bytes whether or not the peer set the field.
    if (items.length === 0) return;
    const list = target[init](items.length);
    for (let i = 0; i < items.length; i++) {
      if (kind.list === "text") list.set(i, items[i] as string);
      else writeStruct(list.get(i), kind.list, items[i] as Record<string, unknown>);
    }
  }
}

/** `_initMember` of each union member, named once. */
const UNION_INIT = new Map<string, string>();

function writeUnion(target: Dyn, desc: UnionDesc, value: { kind: string }): void {
  const member = desc[value.kind];
  if (member === undefined) throw new ValidationError(`Unknown message kind ${value.kind}`);
  if (member === "void") {
    target[value.kind] = true;
    return;
  }
  let init = UNION_INIT.get(value.kind);
  if (init === undefined) UNION_INIT.set(value.kind, init = `_init${cap(value.kind)}`);
  writeStruct(target[init](), member, value as Record<string, unknown>);
}

/** Encode a frame to one unpacked Cap'n Proto message. */
export function encodeFrame(frame: Frame): Uint8Array {
  return encodeDirect(frame, 0) ?? encodeFrameCapnp(frame, 0);
}

/**
 * Encode through capnp-es objects, whatever the frame (the hot frames go on the bytes
 * directly: `_direct.ts`, which writes these same bytes). Tests compare the two.
 */
export function encodeFrameCapnp(frame: Frame, prefix: 0 | 4): Uint8Array {
  return withMessage((msg) => serialize(buildFrame(msg, frame), prefix));
}

/**
 * Encode a frame as it goes on a stream: its 4-byte big-endian length, then the unpacked
 * Cap'n Proto message (the bytes of {@link encodeFrame}) in the same buffer.
 */
export function encodeFramePrefixed(frame: Frame): Uint8Array {
  return encodeDirect(frame, 4) ?? encodeFrameCapnp(frame, 4);
}

/** Size of the arena buffer encodes start from; a bigger frame grows it. */
const ARENA_BYTES = 4096;
/** Largest grown arena kept for the next encode (a bigger one is dropped after use). */
const MAX_KEPT_ARENA_BYTES = 64 * 1024;
/** The arena buffer of the next encode, all zero; undefined while an encode holds it. */
let spareArena: ArrayBuffer | undefined = new ArrayBuffer(ARENA_BYTES);

/**
 * Run `build` on a new message whose single-segment arena is the spare buffer, and zero
 * what it used afterwards so the next encode starts from zeroed memory again, as Cap'n
 * Proto's allocator requires. Encoding is synchronous, so one buffer serves every encode;
 * capnp-es's own `new Message()` allocated (and zeroed) 4 KiB per frame, the largest cost
 * of encoding a small frame. The arena object is capnp-es's single-segment arena
 * (`kind` 0, `buffer`), which it recognizes by its `kind` (capnp-es 0.0.16; the recorded
 * frames' test proves the bytes unchanged).
 */
function withMessage<T>(build: (msg: $.Message) => T): T {
  const arena = { kind: 0, buffer: spareArena ?? new ArrayBuffer(ARENA_BYTES) };
  spareArena = undefined;
  const msg = new $.Message(arena as unknown as ArrayBuffer);
  // given an arena, capnp-es takes its whole buffer as content already written: keep only
  // the root pointer's word (what a new message allocates first)
  (msg as Dyn)._capnp.segments[0].byteLength = 8;
  try {
    return build(msg);
  } finally {
    const used = ((msg as Dyn)._capnp.segments[0]?.byteLength ?? 0) as number;
    if (arena.buffer.byteLength <= MAX_KEPT_ARENA_BYTES) {
      new Uint8Array(arena.buffer, 0, used).fill(0);
      spareArena = arena.buffer;
    } else {
      spareArena = new ArrayBuffer(ARENA_BYTES);
    }
  }
}

function buildFrame(msg: $.Message, frame: Frame): $.Message {
  const root = msg.initRoot(gen.Frame);
  root.version = frame.version;
  root.requestId = BigInt(frame.requestId);
  const body: Dyn = root.body;
  if (frame.type === "request") writeUnion(body._initRequest(), REQUEST, frame.request);
  else if (frame.type === "response") writeUnion(body._initResponse(), RESPONSE, frame.response);
  else writeStruct(body._initPush(), PUSH, frame.push);
  return msg;
}

/**
 * The bytes of capnp-es's `toArrayBuffer` (stream framing: segment count - 1, each
 * segment's size in words, padded to a word; then the segments, each padded to a word),
 * after `prefix` bytes that hold the message's length (big-endian) when `prefix` is 4. One
 * buffer, written straight from the segments: `toArrayBuffer` and a separate length prefix
 * copied the frame twice more.
 */
function serialize(msg: $.Message, prefix: 0 | 4): Uint8Array {
  const segments = (msg as Dyn)._capnp.segments as { buffer: ArrayBuffer; byteLength: number }[];
  const head = 4 + segments.length * 4 + (1 - segments.length % 2) * 4;
  let size = head;
  for (const s of segments) size += padToWord(s.byteLength);
  if (size > MAX_FRAME_BYTES) {
    throw new ValidationError("Message is too large to send", { code: "too_large" });
  }
  const out = new Uint8Array(prefix + size);
  if (prefix === 4) setUint32(out, 0, size, false);
  setUint32(out, prefix, segments.length - 1, true);
  let o = prefix + head;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const words = padToWord(s.byteLength);
    setUint32(out, prefix + 4 + 4 * i, s.byteLength / 8, true);
    out.set(new Uint8Array(s.buffer, 0, words), o);
    o += words;
  }
  return out;
}

function setUint32(out: Uint8Array, at: number, v: number, littleEndian: boolean): void {
  for (let k = 0; k < 4; k++) out[at + (littleEndian ? k : 3 - k)] = (v >>> (8 * k)) & 0xff;
}

function padToWord(n: number): number {
  return (n + 7) & ~7;
}

// ------------------------------------------------------------------ decode

// the content budget (Budget, spend) is _budget.ts: one rule for this path and _direct.ts

function readStruct(
  source: Dyn,
  desc: StructDesc,
  budget: Budget,
  out: Record<string, unknown> = {},
): Record<string, unknown> {
  for (const f of fieldsOf(desc)) out[f.field] = readField(source, f.field, f.kind, budget);
  return out;
}

function readField(source: Dyn, field: string, kind: FieldKind, budget: Budget): unknown {
  switch (kind) {
    case "text": {
      const text = source[field] as string;
      spend(budget, text.length); // UTF-16 units never outnumber the UTF-8 bytes
      return text;
    }
    case "data": {
      const data = source[field] as $.Data;
      spend(budget, data.length);
      return data.toUint8Array().slice();
    }
    case "u64":
      return toSafeNumber(source[field] as bigint, field);
    case "u32":
    case "u16":
    case "bool":
      return source[field];
  }
  if ("optional" in kind) return readField(source, field, kind.optional, budget);
  if ("enum" in kind) {
    const name = kind.enum[source[field] as number];
    if (name === undefined) throw new ValidationError(`Field ${field} has an unknown value`);
    return name;
  }
  if ("struct" in kind) {
    spend(budget, 8);
    return readStruct(source[field], kind.struct, budget);
  }
  const list = source[field] as $.List<unknown>;
  spend(budget, 8 * list.length); // each element takes at least one word
  const out: unknown[] = [];
  for (let i = 0; i < list.length; i++) {
    if (kind.list === "text") {
      const text = list.get(i) as string;
      spend(budget, text.length);
      out.push(text);
    } else {
      out.push(readStruct(list.get(i), kind.list, budget));
    }
  }
  return out;
}

function readUnion(
  source: Dyn,
  desc: UnionDesc,
  byIndex: string[],
  what: string,
  budget: Budget,
): unknown {
  const kind = byIndex[source.which() as number];
  if (kind === undefined) throw new ValidationError(`Unknown ${what} type`);
  const member = desc[kind]!;
  return member === "void" ? { kind } : readStruct(source[kind], member, budget, { kind });
}

/** The header of a frame, readable even when the body is of an unknown version. */
export interface FrameHeader {
  /** Wire version the peer speaks. */
  version: number;
  /** Request id the frame belongs to. */
  requestId: number;
}

/** A frame opened for decoding: header first, body on demand. */
export interface OpenedFrame extends FrameHeader {
  /** Decode the body; throws {@link ValidationError} on malformed content. */
  decode(): Frame;
}

/**
 * Open a frame: validates the message structure and reads the header. Throws
 * {@link ValidationError} for anything that is not a well-formed qpq frame.
 */
export function openFrame(bytes: Uint8Array): OpenedFrame {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new ValidationError("Frame exceeds the size limit", { code: "too_large" });
  }
  checkSegmentTable(bytes);
  guard(() => validateMessage(bytes));
  // the hot frames are read on the bytes (_direct.ts); any other frame, or one of an
  // unusual shape, through capnp-es objects, which then decide
  const head = guard(() => readHeaderDirect(bytes));
  if (head === undefined) return openCapnp(bytes);
  return {
    ...head,
    decode: () => guard(() => decodeDirect(bytes, head) ?? openCapnp(bytes).decode()),
  };
}

/**
 * Open a frame through capnp-es objects (what {@link openFrame} does for frames it does not
 * read directly), on bytes whose structure was validated. Tests compare the two.
 */
export function openCapnp(bytes: Uint8Array): OpenedFrame {
  return guard(() => {
    const msg = messageOf(bytes);
    (msg as Dyn)._capnp.traversalLimit = MAX_TRAVERSAL_WORDS * 8;
    const root: Dyn = msg.getRoot(gen.Frame);
    root._capnp.depthLimit = MAX_NESTING_DEPTH;
    const version = root.version as number;
    const requestId = toSafeNumber(root.requestId as bigint, "requestId");
    return {
      version,
      requestId,
      decode: () =>
        guard(() => {
          const body: Dyn = root.body;
          const which = body.which() as number;
          const budget: Budget = { left: bytes.length };
          const head = { version, requestId };
          if (which === gen.Frame_Body_Which.REQUEST) {
            return {
              ...head,
              type: "request",
              request: readUnion(body.request, REQUEST, REQUEST_BY_INDEX, "request", budget),
            } as Frame;
          }
          if (which === gen.Frame_Body_Which.RESPONSE) {
            return {
              ...head,
              type: "response",
              response: readUnion(body.response, RESPONSE, RESPONSE_BY_INDEX, "response", budget),
            } as Frame;
          }
          if (which === gen.Frame_Body_Which.PUSH) {
            return { ...head, type: "push", push: readStruct(body.push, PUSH, budget) } as Frame;
          }
          throw new ValidationError("Unknown frame type");
        }),
    };
  });
}

/**
 * The capnp-es message of frame bytes whose segment table was checked. capnp-es copies the
 * whole frame and then each segment out of the copy; a single-segment frame (what every
 * qpq writer produces) is handed over as one copy of its segment instead.
 */
function messageOf(bytes: Uint8Array): $.Message {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== 0) return new $.Message(bytes, false);
  return new $.Message(bytes.slice(8, 8 + dv.getUint32(4, true) * 8).buffer, false, true);
}

/** Decode a whole frame (header and body). */
export function decodeFrame(bytes: Uint8Array): Frame {
  return openFrame(bytes).decode();
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof QpqError) throw e;
    throw new ValidationError("Malformed frame: invalid Cap'n Proto content", { cause: e });
  }
}
