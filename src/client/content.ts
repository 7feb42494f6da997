/**
 * The content part of the client: what the plaintext of an MLS application message is.
 *
 * @module
 */
import { fromUtf8, utf8 } from "../bytes.ts";
import { ValidationError } from "../errors.ts";

/** What a message says, as the sender wrote it. */
export interface MessageContent {
  /** The sender's message id (UUID string): the same on every device, for deduplication. */
  messageId: string;
  /** When the sender sent it (ms, the sender's clock). */
  sentAtMs: number;
  /** The text. */
  text: string;
}

/** Encode content for encryption. */
export function encodeContent(c: MessageContent): Uint8Array {
  return utf8(JSON.stringify({ t: c.text, ts: c.sentAtMs, id: c.messageId }));
}

/** Decode decrypted content. @throws ValidationError when it is not qpq content */
export function decodeContent(bytes: Uint8Array): MessageContent {
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
