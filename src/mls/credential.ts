/**
 * Credential policy for qpq MLS groups.
 *
 * A member's MLS credential is a *basic* credential whose identity is the UTF-8 username,
 * and its leaf signature key is the member's Ed25519 identity public key (32 bytes). MLS
 * itself only proves that a leaf holds the private key for the key in the leaf; it is the
 * directory (the server's username -> identity key table, pinned by the client) that says
 * which key belongs to which username. The client must therefore check every leaf against
 * the directory:
 *
 * - before adding members (each KeyPackage, see `parseKeyPackage`),
 * - after joining from a Welcome (`verifyRoster` on the new state),
 * - after processing a commit that adds members (`checkCredentialBinding` on each `added`).
 *
 * Because states are values, a failed check simply means: do not persist the new state.
 *
 * @module
 */

import { constantTimeEqual } from "../bytes.ts";
import { ValidationError } from "../errors.ts";
import { type MemberInfo, membersOf, type MlsGroupState, unwrapState } from "./_state.ts";

export type { MemberInfo };

/** A member's claimed binding: username and leaf signature key. */
export interface CredentialBinding {
  /** The username in the member's basic credential. */
  readonly username: string;
  /** The Ed25519 public key in the member's leaf. */
  readonly signaturePublicKey: Uint8Array;
}

/**
 * Look up the directory's Ed25519 identity key for a username (undefined when unknown).
 * May be synchronous or asynchronous.
 */
export type DirectoryLookup = (
  username: string,
) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/**
 * Check that a member's leaf signature key is the directory's identity key for its
 * username, comparing in constant time.
 *
 * @param member the username and signature key found in the MLS leaf
 * @param directoryKey the directory's identity public key for that username, if any
 * @throws ValidationError when the directory has no key for the username or it differs
 */
export function checkCredentialBinding(
  member: CredentialBinding,
  directoryKey: Uint8Array | undefined,
): void {
  if (directoryKey === undefined) {
    throw new ValidationError("Group member is not in the directory");
  }
  if (!constantTimeEqual(member.signaturePublicKey, directoryKey)) {
    throw new ValidationError("Group member's key does not match the directory");
  }
}

/**
 * The members of a group (current epoch), in leaf order.
 *
 * @param state the group state
 * @returns username, signature key and leaf index of every non-blank leaf
 */
export function listMembers(state: MlsGroupState): MemberInfo[] {
  return membersOf(unwrapState(state).current);
}

/**
 * Check every leaf of the group against the directory (a username in two leaves fails too:
 * both cannot carry the directory's key).
 *
 * @param state the group state to check (for example just after joining)
 * @param lookup returns the directory's identity key for a username
 * @throws ValidationError on the first member whose binding fails
 */
export async function verifyRoster(state: MlsGroupState, lookup: DirectoryLookup): Promise<void> {
  // One username in two leaves: joinFromWelcome refuses it already, and two leaves of one
  // name cannot both carry the directory's key (MLS refuses two adds of one client).
  for (const m of listMembers(state)) checkCredentialBinding(m, await lookup(m.username));
}
