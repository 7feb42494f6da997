/**
 * What the Delivery Service may read of an MLS message without any key: the cleartext
 * header of a PrivateMessage (group id, epoch, content type). The server uses it to refuse
 * a commit whose header does not match the channel and epoch it claims, so a member cannot
 * advance the server's epoch with bytes that are not a commit of that group.
 *
 * @module
 */
import { decodeMlsMessage } from "ts-mls";
import { ValidationError } from "../errors.ts";
import { decodeExact } from "./_codec.ts";

/** The cleartext header of an MLS PrivateMessage. */
export interface PrivateMessageHeader {
  /** MLS group id. */
  groupId: Uint8Array;
  /** Epoch the message was sent in. */
  epoch: bigint;
  /** "application", "proposal" or "commit". */
  contentType: string;
}

/**
 * Decode the header of an MLSMessage carrying a PrivateMessage.
 *
 * @throws ValidationError when the bytes are not an MLS 1.0 PrivateMessage
 */
export function readPrivateMessageHeader(bytes: Uint8Array): PrivateMessageHeader {
  const msg = decodeExact(decodeMlsMessage, bytes, "MLS message");
  if (msg.version !== "mls10" || msg.wireformat !== "mls_private_message") {
    throw new ValidationError("Not an MLS 1.0 PrivateMessage");
  }
  const p = msg.privateMessage;
  return { groupId: p.groupId, epoch: p.epoch, contentType: String(p.contentType) };
}
