/**
 * Syntax of user and group names as the server accepts them from clients: 1–32
 * characters of letters, digits, `.`, `_` and `-`, starting with a letter or digit.
 * Case is kept; names compare exactly.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { fromHex, toHex } from "../bytes.ts";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** Check a username; throws {@link ValidationError} with a message a person can act on. */
export function checkUsernameSyntax(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new ValidationError(
      `Invalid username "${name.slice(0, 40)}": use 1-32 letters, digits, '.', '_' or '-'`,
    );
  }
  return name;
}

/** Check a group name (same rules as usernames). */
export function checkGroupNameSyntax(name: string): string {
  if (!NAME_RE.test(name)) {
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
