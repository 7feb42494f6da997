/**
 * What the Delivery Service may read of an MLS message without any key: the cleartext
 * header of a PrivateMessage (group id, epoch, content type), and the cipher suite of a
 * KeyPackage. The server uses the first to refuse a commit whose header does not match the
 * channel and epoch it claims, so a member cannot advance the server's epoch with bytes
 * that are not a commit of that group; the second to file KeyPackages per suite.
 *
 * @module
 */
import { decodeMlsMessage } from "ts-mls";
import { ValidationError } from "../errors.ts";
import { decodeExact } from "./_codec.ts";
import { suiteFromId } from "./_state.ts";

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
 * Whether `bytes` start as an MLS 1.0 PrivateMessage does (`u16 version = 1 (mls10) |
 * u16 wire format = 2 (mls_private_message)`): a check of four bytes, for a caller that
 * passes anything else on, before the decode of {@link readPrivateMessageHeader} (whose
 * error, thrown for every such payload, cost more than the rest of its request).
 */
export function looksLikePrivateMessage(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 1 && bytes[2] === 0 &&
    bytes[3] === 2;
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

/**
 * The MLS cipher suite id of a KeyPackage (TLS-encoded MLSMessage), read from its header
 * without verifying anything else:
 *
 * ```
 * u16 version (1 = mls10) | u16 wire format (5 = mls_key_package)
 * | KeyPackage: u16 version (1 = mls10) | u16 cipher suite | …
 * ```
 *
 * @throws ValidationError when the bytes are too short, not an MLS 1.0 KeyPackage, or name
 *   a suite qpq does not offer
 */
export function readKeyPackageSuite(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8) {
    throw new ValidationError("KeyPackage is too short");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint16(0) !== 1 || dv.getUint16(2) !== 5 || dv.getUint16(4) !== 1) {
    throw new ValidationError("Message is not an MLS 1.0 KeyPackage");
  }
  const suite = dv.getUint16(6);
  if (suiteFromId(suite) === undefined) {
    throw new ValidationError(`KeyPackage uses an unsupported cipher suite (${suite})`);
  }
  return suite;
}
