/**
 * Syntax of user and group names as the server accepts them from clients. Usernames follow
 * the shared rule of `src/names.ts` (case-insensitive, one canonical form); group names are
 * 1–32 characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit
 * (case is kept).
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { fromHex, toHex } from "../bytes.ts";
import { canonicalNewUsername, canonicalUsername, isGroupName } from "../names.ts";

/** A username from a client in its canonical form; {@link ValidationError} when invalid. */
export function checkUsernameSyntax(name: string): string {
  return canonicalUsername(name);
}

/** A username for a new account (the reserved `name~N` form refused), canonical. */
export function checkNewUsernameSyntax(name: string): string {
  return canonicalNewUsername(name);
}

/** Check a group name (same rules as usernames). */
export function checkGroupNameSyntax(name: string): string {
  if (!isGroupName(name)) {
    throw new ValidationError(
      `Invalid group name "${name.slice(0, 40)}": use 1-32 letters, digits, '.', '_' or '-'`,
    );
  }
  return name;
}

/** Channel ids travel as bytes and are stored as lowercase hex. */
export function channelIdToStore(id: Uint8Array): string {
  if (id.length < 1 || id.length > 32) throw new ValidationError("Invalid channel id");
  return toHex(id);
}

/** Inverse of {@link channelIdToStore}. */
export function channelIdToWire(id: string): Uint8Array {
  return fromHex(id);
}

/** Message ids travel as 1–32 bytes (16 for UUIDv7) and are stored as hex. */
export function messageIdToStore(id: Uint8Array): string {
  if (id.length < 1 || id.length > 32) throw new ValidationError("Invalid message id");
  return toHex(id);
}
