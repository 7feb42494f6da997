/**
 * The payload of a restore notice (`Message.serverNotice` 2), as the schema's
 * `RestoreNotice` struct: when the backup was taken and the last sequence number of the
 * queue in it. The server writes it when `qpq server restore` marks a database; the client
 * reads it as untrusted bytes from the server, with the frame decoder's caps.
 *
 * @module
 */
import * as $ from "capnp-es";
import * as gen from "./_gen/qpq.ts";
import { MAX_NESTING_DEPTH } from "../limits.ts";
import { QpqError, ValidationError } from "../errors.ts";
import { checkSegmentTable, validateMessage } from "./_validate.ts";

/** What a restore notice says. */
export interface RestoreNoticeValue {
  /** When the backup was taken (ms since the epoch, 0 = unknown). */
  backupTakenAtMs: number;
  /** The last sequence number of the recipient's queue in the backup (0 = none). */
  backupQueueSeq: number;
}

/** A restore notice is a few words; anything larger is not one. */
const MAX_NOTICE_BYTES = 1024;
const WHAT = "restore notice";

// capnp-es generated classes are used dynamically for the internal limits.
// deno-lint-ignore no-explicit-any
type Dyn = any;

/** Encode a restore notice (the server). */
export function encodeRestoreNotice(n: RestoreNoticeValue): Uint8Array {
  const msg = new $.Message();
  const root = msg.initRoot(gen.RestoreNotice);
  root.backupTakenAtMs = BigInt(n.backupTakenAtMs);
  root.backupQueueSeq = BigInt(n.backupQueueSeq);
  return new Uint8Array(msg.toArrayBuffer());
}

/**
 * Decode a restore notice made by {@link encodeRestoreNotice} (untrusted: from the server).
 *
 * @throws {ValidationError} for anything malformed or out of range
 */
export function decodeRestoreNotice(bytes: Uint8Array): RestoreNoticeValue {
  if (bytes.length > MAX_NOTICE_BYTES) {
    throw new ValidationError(`Malformed ${WHAT}: too large`);
  }
  try {
    checkSegmentTable(bytes, WHAT);
    validateMessage(bytes, MAX_NESTING_DEPTH, WHAT);
    const msg = new $.Message(bytes, false);
    (msg as Dyn)._capnp.traversalLimit = 2 * MAX_NOTICE_BYTES;
    const root: Dyn = msg.getRoot(gen.RestoreNotice);
    const num = (v: bigint): number => {
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new ValidationError(`Malformed ${WHAT}: number out of range`);
      }
      return Number(v);
    };
    return {
      backupTakenAtMs: num(root.backupTakenAtMs as bigint),
      backupQueueSeq: num(root.backupQueueSeq as bigint),
    };
  } catch (e) {
    if (e instanceof QpqError) throw e;
    throw new ValidationError(`Malformed ${WHAT}: invalid Cap'n Proto content`, { cause: e });
  }
}
