/**
 * A request encoded once: {@link encodeRequestOnce} builds the frame when the request is
 * made (the client's outbox keeps these bytes, sealed, across restarts) and every send —
 * the first and each retry — only writes the connection's request id into a copy.
 *
 * ```
 * frame bytes:  segment table | root pointer | Frame data: version u16 … requestId u64 @8 | …
 *                                              ^ data section found through the root pointer
 * ```
 *
 * @module
 */
import { encodeFrame } from "./codec.ts";
import type { Request } from "./messages.ts";
import { ValidationError } from "../errors.ts";
import { WIRE_VERSION } from "../limits.ts";

/** A request frame encoded once, sent as is (with the connection's request id). */
export interface EncodedRequest {
  /** What the request is (the client retries only some kinds after a re-login). */
  readonly kind: Request["kind"];
  /** The frame, with request id 0. */
  readonly bytes: Uint8Array;
}

/** Byte offset of `requestId` in the data section of `Frame` (see src/wire/_gen). */
const REQUEST_ID_OFFSET = 8;

/** Encode a request frame once (request id 0). */
export function encodeRequestOnce(request: Request): EncodedRequest {
  return {
    kind: request.kind,
    bytes: encodeFrame({ version: WIRE_VERSION, requestId: 0, type: "request", request }),
  };
}

/** Wrap frame bytes made by {@link encodeRequestOnce} (e.g. read back from the outbox). */
export function encodedRequest(kind: Request["kind"], bytes: Uint8Array): EncodedRequest {
  dataOffset(bytes); // refuse bytes that are not a frame before they are kept
  return { kind, bytes };
}

/** Where the root struct's data section starts in an encoded frame. */
function dataOffset(bytes: Uint8Array): number {
  const bad = () => new ValidationError("Encoded request is not a frame");
  if (bytes.length < 16) throw bad();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const segments = view.getUint32(0, true) + 1;
  const header = (4 + 4 * segments + 7) & ~7;
  if (segments > 64 || header + 8 > bytes.length) throw bad();
  const lo = view.getUint32(header, true);
  if ((lo & 3) !== 0) throw bad(); // the root must be a struct pointer
  const offsetWords = (lo | 0) >> 2;
  const dataWords = view.getUint16(header + 4, true);
  const start = header + 8 + offsetWords * 8;
  if (dataWords * 8 < REQUEST_ID_OFFSET + 8 || start < header + 8) throw bad();
  if (start + dataWords * 8 > bytes.length) throw bad();
  return start;
}

/** A copy of the frame carrying `requestId`. */
export function withRequestId(encoded: EncodedRequest, requestId: number): Uint8Array {
  return framedWithRequestId(encoded, requestId).subarray(4);
}

/**
 * The frame carrying `requestId` as it goes on a stream: its 4-byte big-endian length, then
 * the bytes of {@link withRequestId}, in one copy.
 */
export function framedWithRequestId(encoded: EncodedRequest, requestId: number): Uint8Array {
  const bytes = encoded.bytes;
  const out = new Uint8Array(4 + bytes.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, bytes.length);
  out.set(bytes, 4);
  view.setBigUint64(4 + dataOffset(bytes) + REQUEST_ID_OFFSET, BigInt(requestId), true);
  return out;
}
