/**
 * Group settings: a qpq GroupContext extension (type {@link GROUP_SETTINGS_EXTENSION}) that
 * every member holds in its MLS state, so roles are enforced by each member's client and
 * not by the server.
 *
 * Wire format (extension_data, version 1, big-endian):
 *
 * ```
 *   u8  version = 1
 *   u16 admin_count (1..MAX_GROUP_ADMINS)      admin_count x { u8 len; utf8 username }
 *   u8  name_len    (0..64)                     utf8 name
 *   u16 desc_len    (0..512)                    utf8 description
 *   u32 disappearing_seconds (0 = off, else 30 s .. 4 weeks)
 * ```
 *
 * Admins are listed by username (the MLS basic credential identity). A group without the
 * extension (created before roles existed, and every DM) is a legacy group: every member is
 * an admin, as before.
 *
 * @module
 */

import { ValidationError } from "../errors.ts";
import {
  MAX_DISAPPEARING_SECONDS,
  MAX_GROUP_ADMINS,
  MAX_GROUP_DESCRIPTION_BYTES,
  MAX_GROUP_SETTINGS_NAME_BYTES,
  MIN_DISAPPEARING_SECONDS,
} from "../limits.ts";
import { usernameFromIdentity } from "./_state.ts";

/** Extension type of qpq's group settings (MLS private-use range 0xF000..0xFFFF). */
export const GROUP_SETTINGS_EXTENSION = 0xf0a1;

/** A group's roles and settings, as every member's MLS state holds them. */
export interface GroupSettings {
  /** Usernames of the admins (sorted, no repeats). */
  readonly admins: readonly string[];
  /** The group's name ("" when the server's label is the name). */
  readonly name: string;
  /** The group's description (topic). */
  readonly description: string;
  /** Disappearing-message timer in seconds; 0 is off. */
  readonly disappearingSeconds: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** True when `s` is a valid timer value (0 or within the bounds). */
export function validDisappearing(s: number): boolean {
  return Number.isInteger(s) &&
    (s === 0 || (s >= MIN_DISAPPEARING_SECONDS && s <= MAX_DISAPPEARING_SECONDS));
}

/**
 * Encode settings as extension data.
 *
 * @throws ValidationError when a field is out of bounds
 */
export function encodeGroupSettings(s: GroupSettings): Uint8Array {
  const admins = [...new Set(s.admins)].sort();
  if (admins.length === 0 || admins.length > MAX_GROUP_ADMINS) {
    throw new ValidationError("A group needs 1 to 256 admins");
  }
  const ids = admins.map((a) => {
    const b = enc.encode(a);
    if (usernameFromIdentity(b) !== a) throw new ValidationError("Admin is not a valid username");
    return b;
  });
  const name = enc.encode(s.name);
  if (name.length > MAX_GROUP_SETTINGS_NAME_BYTES) {
    throw new ValidationError("Group name is too long");
  }
  const desc = enc.encode(s.description);
  if (desc.length > MAX_GROUP_DESCRIPTION_BYTES) {
    throw new ValidationError("Group description is too long (at most 512 bytes)");
  }
  if (!validDisappearing(s.disappearingSeconds)) {
    throw new ValidationError("Disappearing timer must be off or 30 seconds to 4 weeks");
  }
  const len = 1 + 2 + ids.reduce((n, b) => n + 1 + b.length, 0) + 1 + name.length + 2 +
    desc.length + 4;
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  let o = 0;
  out[o++] = 1;
  v.setUint16(o, ids.length);
  o += 2;
  for (const b of ids) {
    out[o++] = b.length;
    out.set(b, o);
    o += b.length;
  }
  out[o++] = name.length;
  out.set(name, o);
  o += name.length;
  v.setUint16(o, desc.length);
  o += 2;
  out.set(desc, o);
  o += desc.length;
  v.setUint32(o, s.disappearingSeconds);
  return out;
}

/**
 * Decode extension data strictly (exact length, bounds, valid usernames, sorted admins).
 *
 * @throws ValidationError on any failure
 */
export function decodeGroupSettings(data: Uint8Array): GroupSettings {
  const bad = (why: string) => new ValidationError(`Group settings are malformed: ${why}`);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > data.length) throw bad("truncated");
  };
  const text = (n: number) => {
    need(n);
    let t;
    try {
      t = dec.decode(data.subarray(o, o + n));
    } catch {
      throw bad("not UTF-8");
    }
    o += n;
    return t;
  };
  need(1);
  if (data[o++] !== 1) throw bad("unknown version");
  need(2);
  const count = v.getUint16(o);
  o += 2;
  if (count === 0 || count > MAX_GROUP_ADMINS) throw bad("admin count");
  const admins: string[] = [];
  for (let i = 0; i < count; i++) {
    need(1);
    const n = data[o++]!;
    need(n);
    const id = data.subarray(o, o + n);
    const u = usernameFromIdentity(id);
    if (u === undefined) throw bad("admin username");
    o += n;
    if (admins.length > 0 && admins[admins.length - 1]! >= u) throw bad("admins not sorted");
    admins.push(u);
  }
  need(1);
  const nameLen = data[o++]!;
  if (nameLen > MAX_GROUP_SETTINGS_NAME_BYTES) throw bad("name too long");
  const name = text(nameLen);
  need(2);
  const descLen = v.getUint16(o);
  o += 2;
  if (descLen > MAX_GROUP_DESCRIPTION_BYTES) throw bad("description too long");
  const description = text(descLen);
  need(4);
  const disappearingSeconds = v.getUint32(o);
  o += 4;
  if (!validDisappearing(disappearingSeconds)) throw bad("timer out of bounds");
  if (o !== data.length) throw bad("trailing bytes");
  return { admins, name, description, disappearingSeconds };
}
