/**
 * Folder-private checks shared by the server store implementations, so that both reject
 * the same inputs with the same errors.
 *
 * @module
 */

import { concat, randomBytes, toHex, utf8 } from "../../bytes.ts";
import { AuthError, StorageError, UsageError, ValidationError } from "../../errors.ts";
import * as limits from "../../limits.ts";
import {
  type CommitParams,
  DEFAULT_STORE_LIMITS,
  type EnqueueParams,
  type KeyPackageInput,
  type StoreLimits,
} from "./server_store.ts";

/** Defaults overlaid with the caller's overrides. */
export function resolveLimits(partial: Partial<StoreLimits> | undefined): StoreLimits {
  return { ...DEFAULT_STORE_LIMITS, ...partial };
}

function checkText(what: string, s: unknown, max: number): asserts s is string {
  if (typeof s !== "string") throw new ValidationError(`Invalid ${what}: not a string`);
  const n = utf8(s).length;
  if (n === 0 || n > max) throw new ValidationError(`Invalid ${what}: must be 1 to ${max} bytes`);
}

/** A username the store accepts (1..MAX_USERNAME_BYTES bytes). */
export function checkUsername(u: string): void {
  checkText("username", u, limits.MAX_USERNAME_BYTES);
}

/** A group name the store accepts. */
export function checkGroupName(n: string): void {
  checkText("group name", n, limits.MAX_GROUP_NAME_BYTES);
}

/** A channel id the store accepts. */
export function checkChannelId(id: string): void {
  checkText("channel id", id, limits.MAX_CHANNEL_ID_BYTES);
}

/** A non-negative safe integer. */
export function checkCount(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ValidationError(`Invalid ${what}: must be a non-negative integer`);
  }
}

/** A random channel id: 32 hex characters. */
export function newChannelId(): string {
  return toHex(randomBytes(16));
}

/** A 32-byte identity key. */
export function checkIdentityKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== limits.IDENTITY_KEY_BYTES) {
    throw new ValidationError(
      `Invalid identity key: must be ${limits.IDENTITY_KEY_BYTES} bytes`,
    );
  }
}

/** One KeyPackage within the size limits. */
export function checkKeyPackage(p: KeyPackageInput, lim: StoreLimits): void {
  if (!(p.ref instanceof Uint8Array) || p.ref.length === 0 || p.ref.length > 64) {
    throw new ValidationError("Invalid KeyPackage ref: must be 1 to 64 bytes");
  }
  if (!(p.data instanceof Uint8Array) || p.data.length === 0) {
    throw new ValidationError("Invalid KeyPackage: empty");
  }
  if (p.data.length > lim.maxKeyPackageBytes) {
    throw new ValidationError(`KeyPackage too large: at most ${lim.maxKeyPackageBytes} bytes`, {
      code: "too_large",
    });
  }
  checkCount("KeyPackage expiry", p.notAfter);
  checkCipherSuite(p.cipherSuite, false);
}

/** An MLS cipher suite id: 1..65535, or 0 (any) where `anyAllowed`. */
export function checkCipherSuite(suite: number, anyAllowed: boolean): void {
  if (!Number.isInteger(suite) || suite < (anyAllowed ? 0 : 1) || suite > 0xffff) {
    throw new ValidationError("Invalid cipher suite: must be an MLS cipher suite id");
  }
}

/** A KeyPackage batch within the size limits. */
export function checkKeyPackageBatch(ps: readonly KeyPackageInput[], lim: StoreLimits): void {
  if (ps.length > lim.maxKeyPackageBatch) {
    throw new ValidationError(
      `Too many KeyPackages in one upload: at most ${lim.maxKeyPackageBatch}`,
      { code: "too_large" },
    );
  }
  for (const p of ps) checkKeyPackage(p, lim);
}

/** Static checks of an enqueue (before any lookup). */
export function checkEnqueue(p: EnqueueParams, lim: StoreLimits, allowNoRecipients: boolean) {
  checkUsername(p.sender);
  checkText("message id", p.messageId, limits.MAX_MESSAGE_ID_BYTES);
  if (p.channelId !== null) checkChannelId(p.channelId);
  if (!(p.payload instanceof Uint8Array)) throw new ValidationError("Invalid payload: not bytes");
  if (p.payload.length > lim.maxMessageBytes) {
    throw new ValidationError(`Message too large: at most ${lim.maxMessageBytes} bytes`, {
      code: "too_large",
    });
  }
  if (p.recipients.length === 0 && !allowNoRecipients) {
    throw new UsageError("Cannot deliver: no recipients");
  }
  if (p.recipients.length > lim.maxChannelMembers) {
    throw new UsageError(`Cannot deliver: more than ${lim.maxChannelMembers} recipients`, {
      code: "quota",
    });
  }
  checkDistinct("recipient", p.recipients);
}

/** Static checks of a commit. */
export function checkCommit(p: CommitParams, lim: StoreLimits): void {
  checkEnqueue(p, lim, true);
  checkCount("epoch", p.epoch);
  const add = p.rosterAdd ?? [];
  const remove = p.rosterRemove ?? [];
  checkDistinct("member", add);
  checkDistinct("member", remove);
  for (const u of add) {
    if (remove.includes(u)) throw new UsageError("Cannot commit: a user is both added and removed");
  }
}

/** Every name valid and none repeated. */
export function checkDistinct(what: string, names: readonly string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    checkUsername(n);
    if (seen.has(n)) throw new UsageError(`Invalid ${what} list: repeated ${what}`);
    seen.add(n);
  }
}

/** The error for an unknown user. */
export function unknownUser(): UsageError {
  return new UsageError("Unknown user", { code: "not_found" });
}

/** The error for an unknown channel. */
export function unknownChannel(): UsageError {
  return new UsageError("Unknown channel", { code: "not_found" });
}

/** The error for a roster change on a DM. */
export function dmRosterFixed(): UsageError {
  return new UsageError("Cannot change the members of a direct message channel");
}

/** The error for a commit by a non-member. */
export function notAMember(): AuthError {
  return new AuthError("Cannot commit: not a member of the channel", { code: "forbidden" });
}

/** The error for a commit whose epoch is not the channel's. */
export function epochConflict(expected: number, got: number): UsageError {
  return new UsageError(
    got < expected
      ? `Commit refused: epoch ${got} already has an accepted commit`
      : `Commit refused: channel is at epoch ${expected}, not ${got}`,
    { code: "epoch_conflict" },
  );
}

/** The error for a full queue. */
export function queueFull(lim: StoreLimits): UsageError {
  return new UsageError(
    `Cannot deliver: a recipient queue is full (${lim.maxQueueMessages} messages)`,
    { code: "quota" },
  );
}

/** The error for a sender holding its share of a recipient's queue. */
export function senderQuotaFull(recipient: string, lim: StoreLimits): UsageError {
  const mib = Math.floor(lim.maxSenderBytes / (1024 * 1024));
  return new UsageError(
    `Cannot deliver: ${recipient} has not read ${lim.maxSenderMessages} messages or ${mib} MiB ` +
      "from you yet; try again once they have",
    { code: "quota" },
  );
}

/** The error for a user already on the most channels the server allows. */
export function groupsFull(lim: StoreLimits): UsageError {
  return new UsageError(
    `You are in ${lim.maxGroupsPerUser} conversations, the most this server allows; leave one first`,
    { code: "quota" },
  );
}

/** The error for an add of a user whose held invitations are at their cap. */
export function heldFull(user: string, lim: StoreLimits): UsageError {
  return new UsageError(
    `Cannot add ${user}: ${lim.maxHeldInvitationsPerUser} invitations are waiting for them already`,
    { code: "quota" },
  );
}

/** The error for a channel at its member cap. */
export function channelFull(lim: StoreLimits): UsageError {
  return new UsageError(`Channel is full: at most ${lim.maxChannelMembers} members`, {
    code: "quota",
  });
}

/** The error for a user past the KeyPackage cap. */
export function keyPackagesFull(lim: StoreLimits): UsageError {
  return new UsageError(
    `Too many KeyPackages stored: at most ${lim.maxKeyPackagesPerUser} per user`,
    { code: "quota" },
  );
}

/** The error for an account at its block cap. */
export function blocksFull(lim: StoreLimits): UsageError {
  return new UsageError(`Cannot block more than ${lim.maxBlocksPerUser} users`, {
    code: "quota",
  });
}

/** The error when an operation runs after close. */
export function closedError(): StorageError {
  return new StorageError("Cannot use store: it is closed");
}

/** Unambiguous encoding of several strings: each as 4-byte big-endian length ‖ UTF-8. */
export function lengthPrefixed(...parts: string[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    const b = utf8(p);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length);
    out.push(len, b);
  }
  return concat(...out);
}

/** The two members of a DM in canonical (sorted) order. */
export function orderedPair(a: string, b: string): [string, string] {
  return a < b ? [a, b] : [b, a];
}

/** The row key a sealed KeyPackage is bound to: `u32 len ‖ uid ‖ ref`. */
export function keyPackageRowKey(uid: Uint8Array, ref: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + uid.length + ref.length);
  new DataView(out.buffer).setUint32(0, uid.length);
  out.set(uid, 4);
  out.set(ref, 4 + uid.length);
  return out;
}
