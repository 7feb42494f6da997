/**
 * What the Delivery Service stores per queued message, opaque to the store: the message
 * kind, the sender's epoch, the ciphertext, and for a commit that adds members the MLS
 * Welcome together with the users it is for. One stored record serves every recipient of
 * a commit atomically; at fetch time each recipient gets the part meant for it.
 *
 * ```
 * u8 version(1) | u8 kind | u64 epoch | u16 n | n × (u16 len, utf8 username)
 * | u32 len, payload | u32 len, welcome [| u16 server notice]
 * ```
 *
 * The trailing notice number is written only for a server notice (see `serverNotice` in
 * the schema); records without it (all older ones) are messages.
 *
 * @module
 */
import { encodeRestoreNotice, type MessageKind, NOTICE_RESTORED } from "../wire/mod.ts";
import { fromUtf8, utf8 } from "../bytes.ts";
import { InternalError } from "../errors.ts";

const KINDS: readonly MessageKind[] = ["application", "commit", "welcome", "proposal", "rejoin"];
const VERSION = 1;

/** A stored delivery record. */
export interface DeliveryRecord {
  kind: MessageKind;
  epoch: number;
  payload: Uint8Array;
  /** Users who receive `welcome` instead of `payload`. */
  welcomeFor: string[];
  welcome: Uint8Array;
  /** A server notice to the queue's owner (`serverNotice` on the wire); absent or 0: a message. */
  notice?: number;
}

/** Encode a record for the store. */
export function encodeRecord(r: DeliveryRecord): Uint8Array {
  const names = r.welcomeFor.map(utf8);
  const notice = r.notice ?? 0;
  const size = 2 + 8 + 2 + names.reduce((n, b) => n + 2 + b.length, 0) + 4 + r.payload.length +
    4 + r.welcome.length + (notice > 0 ? 2 : 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let o = 0;
  out[o++] = VERSION;
  out[o++] = KINDS.indexOf(r.kind);
  dv.setBigUint64(o, BigInt(r.epoch));
  o += 8;
  dv.setUint16(o, names.length);
  o += 2;
  for (const n of names) {
    dv.setUint16(o, n.length);
    out.set(n, o + 2);
    o += 2 + n.length;
  }
  for (const part of [r.payload, r.welcome]) {
    dv.setUint32(o, part.length);
    out.set(part, o + 4);
    o += 4 + part.length;
  }
  if (notice > 0) dv.setUint16(o, notice);
  return out;
}

/** Decode a record written by {@link encodeRecord}; the store is trusted, so damage is a bug. */
export function decodeRecord(b: Uint8Array): DeliveryRecord {
  try {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let o = 0;
    if (b[o++] !== VERSION) throw new Error("version");
    const kind = KINDS[b[o++]!];
    if (kind === undefined) throw new Error("kind");
    const epoch = Number(dv.getBigUint64(o));
    o += 8;
    const n = dv.getUint16(o);
    o += 2;
    const welcomeFor: string[] = [];
    for (let i = 0; i < n; i++) {
      const len = dv.getUint16(o);
      welcomeFor.push(fromUtf8(b.subarray(o + 2, o + 2 + len)));
      o += 2 + len;
    }
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 2; i++) {
      const len = dv.getUint32(o);
      if (o + 4 + len > b.length) throw new Error("length");
      parts.push(b.slice(o + 4, o + 4 + len));
      o += 4 + len;
    }
    const notice = o + 2 <= b.length ? dv.getUint16(o) : 0;
    return {
      kind,
      epoch,
      welcomeFor,
      payload: parts[0]!,
      welcome: parts[1]!,
      ...(notice > 0 ? { notice } : {}),
    };
  } catch (e) {
    throw new InternalError("Stored delivery record is damaged", { cause: e });
  }
}

/**
 * The record of a restore notice (`serverNotice` 2) for one queue: its payload is the
 * schema's `RestoreNotice` (when the backup was taken, the queue's last number in it),
 * delivered as is.
 */
export function restoreNoticeRecord(backupTakenAt: number, queueSeq: number): Uint8Array {
  return encodeRecord({
    kind: "application",
    epoch: 0,
    payload: encodeRestoreNotice({ backupTakenAtMs: backupTakenAt, backupQueueSeq: queueSeq }),
    welcomeFor: [],
    welcome: new Uint8Array(0),
    notice: NOTICE_RESTORED,
  });
}
