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

// ------------------------------------------------------------------ encode

function writeStruct(target: Dyn, desc: StructDesc, value: Record<string, unknown>): void {
  for (const [field, kind] of Object.entries(desc)) {
    writeField(target, field, kind, value[field]);
  }
}

function writeField(target: Dyn, field: string, kind: FieldKind, v: unknown): void {
  switch (kind) {
    case "text":
      target[field] = v as string;
      return;
    case "data": {
      const bytes = v as Uint8Array;
      if (bytes.length > 0) target[`_init${cap(field)}`](bytes.length).copyBuffer(bytes);
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
      writeField(target, field, kind.optional, v);
    }
    return;
  }
  if ("enum" in kind) {
    const i = kind.enum.indexOf(v as string);
    if (i < 0) throw new ValidationError(`Field ${field} has an unknown value`);
    target[field] = i;
  } else if ("struct" in kind) {
    writeStruct(target[`_init${cap(field)}`](), kind.struct, v as Record<string, unknown>);
  } else {
    const items = v as unknown[];
    // Like empty Data: an empty list stays a null pointer (read back as empty), so a
    // decoded frame re-encodes to the same bytes whether or not the peer set the field.
    if (items.length === 0) return;
    const list = target[`_init${cap(field)}`](items.length);
    for (let i = 0; i < items.length; i++) {
      if (kind.list === "text") list.set(i, items[i] as string);
      else writeStruct(list.get(i), kind.list, items[i] as Record<string, unknown>);
    }
  }
}

function writeUnion(target: Dyn, desc: UnionDesc, value: { kind: string }): void {
  const member = desc[value.kind];
  if (member === undefined) throw new ValidationError(`Unknown message kind ${value.kind}`);
  if (member === "void") target[value.kind] = true;
  else writeStruct(target[`_init${cap(value.kind)}`](), member, value as Record<string, unknown>);
}

/** Encode a frame to one unpacked Cap'n Proto message. */
export function encodeFrame(frame: Frame): Uint8Array {
  const msg = new $.Message();
  const root = msg.initRoot(gen.Frame);
  root.version = frame.version;
  root.requestId = BigInt(frame.requestId);
  const body: Dyn = root.body;
  if (frame.type === "request") writeUnion(body._initRequest(), REQUEST, frame.request);
  else if (frame.type === "response") writeUnion(body._initResponse(), RESPONSE, frame.response);
  else writeStruct(body._initPush(), PUSH, frame.push);
  const out = new Uint8Array(msg.toArrayBuffer());
  if (out.length > MAX_FRAME_BYTES) {
    throw new ValidationError("Message is too large to send", { code: "too_large" });
  }
  return out;
}

// ------------------------------------------------------------------ decode

/**
 * What one decode may still produce, in bytes. In a well-formed frame every Data and Text
 * value, list element and struct occupies its own bytes of the frame, so all of them
 * together fit in the frame's size. Pointers that share a target (a list of elements all
 * pointing at one large blob, a list of zero-size structs claiming 2^29 elements) would
 * otherwise turn a small frame into gigabytes of copies or seconds of CPU: the budget
 * refuses such a frame as soon as it outgrows itself.
 */
interface Budget {
  left: number;
}

function spend(budget: Budget, bytes: number): void {
  budget.left -= bytes;
  if (budget.left < 0) {
    throw new ValidationError("Malformed frame: content larger than the frame (shared pointers)");
  }
}

function readStruct(source: Dyn, desc: StructDesc, budget: Budget): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, kind] of Object.entries(desc)) {
    out[field] = readField(source, field, kind, budget);
  }
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
  return member === "void" ? { kind } : { kind, ...readStruct(source[kind], member, budget) };
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
  return guard(() => {
    const msg = new $.Message(bytes, false);
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
