/**
 * The content part of the client: what the plaintext of an MLS application message is —
 * the schema's versioned `Content` (src/wire: `encodeContent` / `decodeContent`). Messages
 * written by builds before the schema type (JSON `{t, ts, id}`) are still read.
 *
 * @module
 */
import { decodeContent as decodeWire, encodeContent as encodeWire } from "../wire/mod.ts";
import { CONTENT_VERSION } from "../wire/mod.ts";
import { fromUtf8 } from "../bytes.ts";
import { ValidationError } from "../errors.ts";
import { uuidToString } from "./ids.ts";

/** What a message says, as the sender wrote it. */
export interface MessageContent {
  /** The sender's message id (16 bytes, UUIDv7): the same everywhere, for deduplication. */
  messageId: Uint8Array;
  /** When the sender sent it (ms, the sender's clock). */
  sentAtMs: number;
  /** The text. */
  text: string;
}

/** Encode content for encryption. */
export function encodeContent(c: MessageContent): Uint8Array {
  return encodeWire({
    version: CONTENT_VERSION,
    messageId: c.messageId,
    sentAtMs: c.sentAtMs,
    body: { kind: "text", text: c.text },
  });
}

/** Decoded content, with the message id as a string. */
export interface DecodedContent {
  messageId: string;
  sentAtMs: number;
  text: string;
}

/** Decode decrypted content. @throws ValidationError when it is not qpq content */
export function decodeContent(bytes: Uint8Array): DecodedContent {
  if (bytes[0] === 0x7b) return decodeLegacy(bytes); // "{": JSON from older builds
  const c = decodeWire(bytes);
  return {
    messageId: c.messageId.length === 16 ? uuidToString(c.messageId) : "",
    sentAtMs: c.sentAtMs,
    text: c.body.text,
  };
}

function decodeLegacy(bytes: Uint8Array): DecodedContent {
  let v: unknown;
  try {
    v = JSON.parse(fromUtf8(bytes));
  } catch (e) {
    throw new ValidationError("Message content is not readable", { cause: e });
  }
  const o = v as Record<string, unknown>;
  if (typeof v !== "object" || v === null || typeof o.t !== "string") {
    throw new ValidationError("Message content is not readable");
  }
  return {
    text: o.t,
    sentAtMs: typeof o.ts === "number" && Number.isFinite(o.ts) ? o.ts : 0,
    messageId: typeof o.id === "string" ? o.id : "",
  };
}
