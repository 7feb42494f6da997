/**
 * The content part of the client: what the plaintext of an MLS application message is —
 * the schema's versioned `Content` (src/wire: `encodeContent` / `decodeContent`), with
 * message ids as their text form. Messages written by builds before the schema type (JSON
 * `{t, ts, id}`) are still read.
 *
 * Every kind of content goes the same way (docs/architecture.md, "Compose path"):
 *
 * ```
 * Groups.compose(conv, body) ─► encodeContent ─► encrypt ─► outbox entry (+ the Content
 *   bytes, re-encrypted as they are after an epoch change) ─► server
 * server ─► Inbox ─► decrypt ─► decodeContent ─► one case per body kind
 *   (text: a history row; reaction, edit, deletion: applied to their target, changes.ts)
 * ```
 *
 * @module
 */
import { decodeContent as decodeWire, encodeContent as encodeWire } from "../wire/mod.ts";
import { CONTENT_VERSION, type ContentBody } from "../wire/mod.ts";
import { fromHex, fromUtf8 } from "../bytes.ts";
import { UsageError, ValidationError } from "../errors.ts";
import { uuidToString } from "./ids.ts";

/**
 * What a message says: one kind of content. Message ids are in their text form
 * (`uuidToString`); `target` is a message of the same conversation.
 */
export type Body =
  /** A text, perhaps answering `replyTo`. */
  | { kind: "text"; text: string; replyTo?: string }
  /** The sender's reaction to `target` (replaces theirs); `emoji` "" withdraws it. */
  | { kind: "reaction"; target: string; emoji: string }
  /** The author's new text of `target`. */
  | { kind: "edit"; target: string; text: string }
  /** The author deletes `target` for everyone. */
  | { kind: "deletion"; target: string }
  /** The sender got (`read` false) or read these messages (never shown as a message). */
  | { kind: "receipt"; targets: string[]; read: boolean }
  /** The sender is typing (sent ephemeral only: shown a few seconds, never stored). */
  | { kind: "typing"; active: boolean };

/** A kind of content. */
export type BodyKind = Body["kind"];

/** Content as the sender composes it. */
export interface MessageContent {
  /** The sender's message id (16 bytes, UUIDv7): the same everywhere, for deduplication. */
  messageId: Uint8Array;
  /** When the sender sent it (ms, the sender's clock). */
  sentAtMs: number;
  /** What it says. */
  body: Body;
}

/** Decoded content, with the message id as a string. */
export interface DecodedContent {
  messageId: string;
  sentAtMs: number;
  body: Body;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The 16 bytes of a message id in text form. @throws UsageError when it is not one */
export function messageIdBytes(id: string): Uint8Array {
  if (!UUID.test(id)) throw new UsageError("Not a message id");
  return fromHex(id.replaceAll("-", ""));
}

/** Encode content for encryption. */
export function encodeContent(c: MessageContent): Uint8Array {
  const b = c.body;
  let body: ContentBody;
  let replyTo: Uint8Array | undefined;
  switch (b.kind) {
    case "text":
      body = { kind: "text", text: b.text };
      if (b.replyTo) replyTo = messageIdBytes(b.replyTo);
      break;
    case "reaction":
      body = { kind: "reaction", target: messageIdBytes(b.target), emoji: b.emoji };
      break;
    case "edit":
      body = { kind: "edit", target: messageIdBytes(b.target), text: b.text };
      break;
    case "deletion":
      body = { kind: "deletion", target: messageIdBytes(b.target) };
      break;
    case "receipt":
      body = { kind: "receipt", targets: b.targets.map(messageIdBytes), read: b.read };
      break;
    case "typing":
      body = { kind: "typing", active: b.active };
      break;
  }
  return encodeWire({
    version: CONTENT_VERSION,
    messageId: c.messageId,
    sentAtMs: c.sentAtMs,
    body,
    ...(replyTo ? { replyTo } : {}),
  });
}

/** Decode decrypted content. @throws ValidationError when it is not qpq content */
export function decodeContent(bytes: Uint8Array): DecodedContent {
  if (bytes[0] === 0x7b) return decodeLegacy(bytes); // "{": JSON from older builds
  const c = decodeWire(bytes);
  const b = c.body;
  let body: Body;
  switch (b.kind) {
    case "text":
      body = { kind: "text", text: b.text };
      if (c.replyTo) body.replyTo = uuidToString(c.replyTo);
      break;
    case "reaction":
      body = { kind: "reaction", target: uuidToString(b.target), emoji: b.emoji };
      break;
    case "edit":
      body = { kind: "edit", target: uuidToString(b.target), text: b.text };
      break;
    case "deletion":
      body = { kind: "deletion", target: uuidToString(b.target) };
      break;
    case "receipt":
      body = { kind: "receipt", targets: b.targets.map(uuidToString), read: b.read };
      break;
    case "typing":
      body = { kind: "typing", active: b.active };
      break;
  }
  return {
    messageId: c.messageId.length === 16 ? uuidToString(c.messageId) : "",
    sentAtMs: c.sentAtMs,
    body,
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
    body: { kind: "text", text: o.t },
    sentAtMs: typeof o.ts === "number" && Number.isFinite(o.ts) ? o.ts : 0,
    messageId: typeof o.id === "string" ? o.id : "",
  };
}
