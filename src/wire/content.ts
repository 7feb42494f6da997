/**
 * Message content: what the plaintext of an MLS application message is, as the schema's
 * `Content` struct (schemas/qpq.capnp). The server never sees it; members encode it before
 * encrypting and decode it after decrypting, so the decoder treats its input as untrusted
 * bytes from a peer, with the same caps as the frame decoder.
 *
 * ```
 * encodeContent: MessageContent ─► checks (version, 16-byte id, time) ─► capnp ─► size cap
 * decodeContent: bytes ─(size cap, segment table, pointer walk: bounds, depth, amplification)─►
 *   capnp Content ─► version 1? ─► body member known? ─► MessageContent
 * ```
 *
 * An unknown body member (a newer sender's attachment, say) or a newer version is a
 * {@link ValidationError} with code "unsupported_version" and the text "Message content type
 * is not supported: upgrade qpq", never a guess and never a crash.
 *
 * @module
 */
import * as $ from "capnp-es";
import * as gen from "./_gen/qpq.ts";
import {
  MAX_MESSAGE_BYTES,
  MAX_NESTING_DEPTH,
  MAX_REACTION_BYTES,
  MAX_REACTION_GRAPHEMES,
  MAX_RECEIPT_TARGETS,
} from "../limits.ts";
import { QpqError, UsageError, ValidationError } from "../errors.ts";
import { checkSegmentTable, validateMessage } from "./_validate.ts";

/** The content version this build writes and reads. */
export const CONTENT_VERSION = 1;

/** Length of a message id: a UUIDv7 (bytes). */
export const CONTENT_MESSAGE_ID_BYTES = 16;

/**
 * The body of a message: one member of the schema's `Content.body` union. `target` is the
 * 16-byte id of a message of the same conversation.
 */
export type ContentBody =
  | { kind: "text"; text: string }
  /** One member's reaction (replaces their earlier one); `emoji` "" withdraws it. */
  | { kind: "reaction"; target: Uint8Array; emoji: string }
  /** The author's new text of `target`. */
  | { kind: "edit"; target: Uint8Array; text: string }
  /** The author deletes `target` for everyone. */
  | { kind: "deletion"; target: Uint8Array }
  /** The sender got (`read` false) or read these messages: 1 to MAX_RECEIPT_TARGETS ids. */
  | { kind: "receipt"; targets: Uint8Array[]; read: boolean }
  /** The sender is typing (`active`) or stopped: sent ephemeral only, never stored. */
  | { kind: "typing"; active: boolean };

/** Every body kind this build writes and reads. */
export type ContentKind = ContentBody["kind"];

/** The plaintext of one application message. */
export interface MessageContent {
  /** Content version: {@link CONTENT_VERSION}. */
  version: number;
  /** The 16-byte UUIDv7 the sender chose (the same id the server deduplicates on). */
  messageId: Uint8Array;
  /** The sender's clock when sending (ms since the Unix epoch). */
  sentAtMs: number;
  /** What the message says. */
  body: ContentBody;
  /** A text's answer to this message id (16 bytes); absent or empty = none. */
  replyTo?: Uint8Array;
}

const WHAT = "message content";

// capnp-es generated classes are used dynamically for the internal limits.
// deno-lint-ignore no-explicit-any
type Dyn = any;

/** The error for a body member or version this build does not know. */
function unsupported(): ValidationError {
  return new ValidationError("Message content type is not supported: upgrade qpq", {
    code: "unsupported_version",
  });
}

/**
 * Encode message content to one unpacked Cap'n Proto message.
 *
 * @throws {UsageError} for a malformed value (version, id length, time, body kind) and,
 *   with code "too_large", when the encoding exceeds MAX_MESSAGE_BYTES
 */
export function encodeContent(c: MessageContent): Uint8Array {
  if (!Number.isInteger(c.version) || c.version < 1 || c.version > 0xffff) {
    throw new UsageError("Message content version must be 1 to 65535");
  }
  if (!(c.messageId instanceof Uint8Array) || c.messageId.length !== CONTENT_MESSAGE_ID_BYTES) {
    throw new UsageError(`Message id must be ${CONTENT_MESSAGE_ID_BYTES} bytes`);
  }
  if (!Number.isSafeInteger(c.sentAtMs) || c.sentAtMs < 0) {
    throw new UsageError("Message time must be a non-negative integer");
  }
  if (c.replyTo !== undefined && c.replyTo.length !== 0) {
    checkId(c.replyTo, "Replied-to message id", UsageError);
  }
  const msg = new $.Message();
  const root = msg.initRoot(gen.Content);
  root.version = c.version;
  root._initMessageId(c.messageId.length).copyBuffer(c.messageId);
  root.sentAtMs = BigInt(c.sentAtMs);
  writeBody(root.body, c.body);
  if (c.replyTo !== undefined && c.replyTo.length > 0) {
    root._initReplyTo(c.replyTo.length).copyBuffer(c.replyTo);
  }
  const out = new Uint8Array(msg.toArrayBuffer());
  if (out.length > MAX_MESSAGE_BYTES) {
    throw new UsageError(`Message is too large: at most ${MAX_MESSAGE_BYTES} bytes`, {
      code: "too_large",
    });
  }
  return out;
}

/**
 * Decode message content made by {@link encodeContent} (untrusted: a peer's plaintext).
 *
 * @throws {ValidationError} for anything malformed ("too_large" past MAX_MESSAGE_BYTES),
 *   and with code "unsupported_version" for a newer version or an unknown body member
 */
export function decodeContent(bytes: Uint8Array): MessageContent {
  if (!(bytes instanceof Uint8Array)) throw new ValidationError("Message content is not bytes");
  if (bytes.length > MAX_MESSAGE_BYTES) {
    throw new ValidationError("Message content exceeds the size limit", { code: "too_large" });
  }
  checkSegmentTable(bytes, WHAT);
  guard(() => validateMessage(bytes, MAX_NESTING_DEPTH, WHAT));
  return guard(() => {
    const msg = new $.Message(bytes, false);
    (msg as Dyn)._capnp.traversalLimit = 2 * MAX_MESSAGE_BYTES;
    const root: Dyn = msg.getRoot(gen.Content);
    root._capnp.depthLimit = MAX_NESTING_DEPTH;
    const version = root.version as number;
    if (version > CONTENT_VERSION) throw unsupported();
    if (version !== CONTENT_VERSION) {
      throw new ValidationError(`Malformed ${WHAT}: version ${version}`);
    }
    const messageId = (root.messageId as $.Data).toUint8Array().slice();
    if (messageId.length !== CONTENT_MESSAGE_ID_BYTES) {
      throw new ValidationError(
        `Malformed ${WHAT}: message id must be ${CONTENT_MESSAGE_ID_BYTES} bytes`,
      );
    }
    const sentAt = root.sentAtMs as bigint;
    if (sentAt > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ValidationError(`Malformed ${WHAT}: time out of range`);
    }
    const replyTo = (root.replyTo as $.Data).toUint8Array().slice();
    if (replyTo.length !== 0) checkId(replyTo, `Malformed ${WHAT}: replied-to message id`);
    return {
      version,
      messageId,
      sentAtMs: Number(sentAt),
      body: readBody(root.body),
      ...(replyTo.length > 0 ? { replyTo } : {}),
    };
  });
}

// ---------------------------------------------------------------- one place per body kind

/** Write `body` into the union (a new kind: one case here and one in {@link readBody}). */
function writeBody(u: Dyn, body: ContentBody): void {
  switch (body?.kind) {
    case "text":
      if (typeof body.text !== "string") break;
      u.text = body.text;
      return;
    case "reaction": {
      checkId(body.target, "Reacted-to message id", UsageError);
      checkReaction(body.emoji, UsageError);
      const r = u._initReaction();
      r._initTarget(16).copyBuffer(body.target);
      r.emoji = body.emoji;
      return;
    }
    case "edit": {
      checkId(body.target, "Edited message id", UsageError);
      if (typeof body.text !== "string") break;
      const e = u._initEdit();
      e._initTarget(16).copyBuffer(body.target);
      e.text = body.text;
      return;
    }
    case "deletion": {
      checkId(body.target, "Deleted message id", UsageError);
      u._initDeletion()._initTarget(16).copyBuffer(body.target);
      return;
    }
    case "receipt": {
      checkTargets(body.targets, UsageError);
      const r = u._initReceipt();
      const all = new Uint8Array(body.targets.length * CONTENT_MESSAGE_ID_BYTES);
      body.targets.forEach((t, i) => all.set(t, i * CONTENT_MESSAGE_ID_BYTES));
      r._initTargets(all.length).copyBuffer(all);
      r.read = body.read === true;
      return;
    }
    case "typing":
      u._initTyping().active = body.active === true;
      return;
  }
  throw new UsageError("Message content body is not a known kind");
}

/** Read the union (untrusted). An unknown member is "upgrade qpq". */
function readBody(u: Dyn): ContentBody {
  switch (u.which()) {
    case gen.Content_Body_Which.TEXT:
      return { kind: "text", text: u.text as string };
    case gen.Content_Body_Which.REACTION: {
      const r = u.reaction;
      const target = targetOf(r, "reaction");
      const emoji = r.emoji as string;
      checkReaction(emoji, ValidationError);
      return { kind: "reaction", target, emoji };
    }
    case gen.Content_Body_Which.EDIT: {
      const e = u.edit;
      return { kind: "edit", target: targetOf(e, "edit"), text: e.text as string };
    }
    case gen.Content_Body_Which.DELETION:
      return { kind: "deletion", target: targetOf(u.deletion, "deletion") };
    case gen.Content_Body_Which.RECEIPT: {
      const r = u.receipt;
      const all = (r.targets as $.Data).toUint8Array();
      const n = all.length / CONTENT_MESSAGE_ID_BYTES;
      if (!Number.isInteger(n) || n < 1 || n > MAX_RECEIPT_TARGETS) {
        throw new ValidationError(
          `Malformed ${WHAT}: a receipt names 1 to ${MAX_RECEIPT_TARGETS} messages`,
        );
      }
      const targets: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        targets.push(all.slice(i * CONTENT_MESSAGE_ID_BYTES, (i + 1) * CONTENT_MESSAGE_ID_BYTES));
      }
      return { kind: "receipt", targets, read: r.read === true };
    }
    case gen.Content_Body_Which.TYPING:
      return { kind: "typing", active: u.typing.active === true };
    default:
      throw unsupported();
  }
}

function checkTargets(
  targets: Uint8Array[],
  E: typeof UsageError | typeof ValidationError,
): void {
  if (!Array.isArray(targets) || targets.length < 1 || targets.length > MAX_RECEIPT_TARGETS) {
    throw new E(`A receipt names 1 to ${MAX_RECEIPT_TARGETS} messages`);
  }
  for (const t of targets) checkId(t, "Receipt message id", E);
}

function targetOf(s: Dyn, what: string): Uint8Array {
  const t = (s.target as $.Data).toUint8Array().slice();
  checkId(t, `Malformed ${WHAT}: ${what} target`);
  return t;
}

function checkId(
  id: Uint8Array,
  what: string,
  E: typeof UsageError | typeof ValidationError = ValidationError,
): void {
  if (!(id instanceof Uint8Array) || id.length !== CONTENT_MESSAGE_ID_BYTES) {
    throw new E(`${what} must be ${CONTENT_MESSAGE_ID_BYTES} bytes`);
  }
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * A reaction: "" (withdrawn) or 1 to {@link MAX_REACTION_GRAPHEMES} graphemes of at most
 * {@link MAX_REACTION_BYTES} bytes, no whitespace or control characters.
 */
export function checkReaction(
  emoji: string,
  E: typeof UsageError | typeof ValidationError = UsageError,
): void {
  if (typeof emoji !== "string") throw new E("A reaction must be text");
  if (emoji === "") return;
  if (new TextEncoder().encode(emoji).length > MAX_REACTION_BYTES) {
    throw new E(`A reaction is at most ${MAX_REACTION_BYTES} bytes`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\s\u0000-\u001f\u007f-\u009f]/u.test(emoji)) {
    throw new E("A reaction has no spaces or control characters");
  }
  let n = 0;
  for (const _ of graphemes.segment(emoji)) {
    if (++n > MAX_REACTION_GRAPHEMES) {
      throw new E(`A reaction is at most ${MAX_REACTION_GRAPHEMES} characters`);
    }
  }
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof QpqError) throw e;
    throw new ValidationError(`Malformed ${WHAT}: invalid Cap'n Proto content`, { cause: e });
  }
}
