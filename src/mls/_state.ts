/**
 * Folder-private: the opaque {@link MlsGroupState} value and the ts-mls state it wraps,
 * the client configuration every qpq group uses, and error mapping from ts-mls.
 *
 * @module
 */

import type { CiphersuiteImpl, ClientConfig, ClientState, Credential, LeafNode } from "ts-mls";
import { defaultKeyPackageEqualityConfig, defaultPaddingConfig } from "ts-mls";
import { MlsError } from "ts-mls/mlsError.js";
import { CryptoError, InternalError, QpqError, UsageError, ValidationError } from "../errors.ts";
import {
  MAX_KEY_PACKAGE_LIFETIME_SECONDS,
  MAX_USERNAME_BYTES,
  MLS_RETAINED_EPOCHS,
} from "../limits.ts";
import { fromUtf8 } from "../bytes.ts";
import { canonicalUsername } from "../names.ts";
import { getCiphersuite, type MlsSuiteName } from "./provider.ts";

/** Numeric MLS cipher suite ids of the suites qpq offers. */
export const SUITE_IDS: Readonly<Record<MlsSuiteName, number>> = {
  MLS_256_XWING_AES256GCM_SHA512_Ed25519: 83,
  MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: 1,
};

/** True when `name` is one of the suites qpq offers. */
export function isMlsSuiteName(name: string): name is MlsSuiteName {
  return Object.hasOwn(SUITE_IDS, name);
}

/** The suite whose numeric id is `id`, or undefined. */
export function suiteFromId(id: number): MlsSuiteName | undefined {
  for (const [name, n] of Object.entries(SUITE_IDS)) {
    if (n === id) return name as MlsSuiteName;
  }
  return undefined;
}

/**
 * Decode a basic-credential identity as a qpq username: strict UTF-8, 1 to
 * MAX_USERNAME_BYTES bytes, a valid username (`src/names.ts`), returned in its canonical
 * form: a credential written before usernames were case-insensitive (`Bob`) reads as
 * `bob`, and is then checked against bob's directory key like any other. Returns undefined
 * when invalid.
 */
export function usernameFromIdentity(identity: Uint8Array): string | undefined {
  if (identity.length === 0 || identity.length > MAX_USERNAME_BYTES) return undefined;
  try {
    return canonicalUsername(fromUtf8(identity));
  } catch {
    return undefined;
  }
}

/** The username of a credential, or undefined when it is not a valid qpq credential. */
export function usernameOfCredential(c: Credential): string | undefined {
  if (c.credentialType !== "basic") return undefined;
  return usernameFromIdentity(c.identity);
}

/** Ed25519 public keys are 32 bytes. */
export const ED25519_KEY_BYTES = 32;

/**
 * The ts-mls client configuration of every qpq group. The authentication service only
 * checks the credential's form (basic, valid username, 32-byte key); binding the key to
 * the directory is the caller's job via `verifyRoster` / `checkCredentialBinding`.
 */
export const CLIENT_CONFIG: ClientConfig = {
  keyRetentionConfig: {
    retainKeysForGenerations: 10,
    retainKeysForEpochs: MLS_RETAINED_EPOCHS,
    maximumForwardRatchetSteps: 1000,
  },
  lifetimeConfig: {
    maximumTotalLifetime: BigInt(MAX_KEY_PACKAGE_LIFETIME_SECONDS),
    validateLifetimeOnReceive: false,
  },
  keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
  paddingConfig: defaultPaddingConfig,
  authService: {
    validateCredential(credential: Credential, signaturePublicKey: Uint8Array): Promise<boolean> {
      return Promise.resolve(
        usernameOfCredential(credential) !== undefined &&
          signaturePublicKey.length === ED25519_KEY_BYTES,
      );
    },
  },
};

/** An own commit created but not yet accepted by the server. */
export interface PendingCommit {
  /** The state to adopt once the server accepts the commit. */
  readonly state: ClientState;
  /** Secrets to zero once the pending state is merged (empty after a reload). */
  readonly consumed: Uint8Array[];
}

/** What an {@link MlsGroupState} holds. */
export interface InnerState {
  readonly suite: MlsSuiteName;
  readonly current: ClientState;
  readonly pending: PendingCommit | undefined;
}

const inner = new WeakMap<MlsGroupState, InnerState>();

/**
 * One member's view of one MLS group: an opaque, immutable value. Every operation returns
 * a new state; persist it with `encodeGroupState` before sending what the operation
 * produced. Holds secrets: it redacts itself when printed or JSON-serialized.
 */
export class MlsGroupState {
  /** The group's cipher suite. */
  readonly suite: MlsSuiteName;
  /** The MLS group id. */
  readonly groupId: Uint8Array;
  /** The current (merged) epoch. */
  readonly epoch: bigint;
  /** Our leaf index in the ratchet tree. */
  readonly ownLeafIndex: number;
  /** True while an own commit awaits the server's answer. */
  readonly hasPendingCommit: boolean;
  /** True once a commit removed us from the group; the state can then only be read. */
  readonly removed: boolean;
  /**
   * Proposals received and not yet committed (e.g. a member's leave). MLS allows no
   * application message until a commit includes them.
   */
  readonly pendingProposals: number;

  /** Internal: build with {@link wrapState}. */
  constructor(s: InnerState) {
    this.suite = s.suite;
    this.groupId = s.current.groupContext.groupId.slice();
    this.epoch = s.current.groupContext.epoch;
    this.ownLeafIndex = s.current.privatePath.leafIndex;
    this.hasPendingCommit = s.pending !== undefined;
    this.removed = s.current.groupActiveState.kind === "removedFromGroup";
    this.pendingProposals = Object.keys(s.current.unappliedProposals).length;
    inner.set(this, s);
    Object.freeze(this);
  }

  /** Redacted JSON form: never the secrets. */
  toJSON(): Record<string, unknown> {
    return {
      type: "MlsGroupState",
      suite: this.suite,
      epoch: this.epoch.toString(),
      secrets: "[redacted]",
    };
  }

  [Symbol.for("Deno.customInspect")](): string {
    return `MlsGroupState { suite: ${this.suite}, epoch: ${this.epoch}, secrets: [redacted] }`;
  }
}

/**
 * Drop private path keys for nodes the tree no longer has: past its end (the tree shrank
 * when the rightmost members were removed) or blank. RFC 9420 §7.9 requires deleting the
 * private keys of blanked nodes; ts-mls 1.6.4 keeps them in `privatePath.privateKeys`
 * after `createCommit`/`processPrivateMessage` truncate or blank nodes (upstream bug: see
 * docs/mls-version.md). Left in place they make a stored state look inconsistent
 * (a key for node 3 of a 3-node tree) and keep secrets that should be gone.
 */
export function prunePrivatePath(cs: ClientState): ClientState {
  const keys = cs.privatePath.privateKeys;
  let stale = false;
  for (const k of Object.keys(keys)) {
    const i = Number(k);
    if (!(i < cs.ratchetTree.length) || cs.ratchetTree[i] === undefined) stale = true;
  }
  if (!stale) return cs;
  const kept: Record<number, Uint8Array> = {};
  for (const [k, v] of Object.entries(keys)) {
    const i = Number(k);
    if (i < cs.ratchetTree.length && cs.ratchetTree[i] !== undefined) kept[i] = v;
  }
  return { ...cs, privatePath: { ...cs.privatePath, privateKeys: kept } };
}

/** Wrap ts-mls state into an opaque {@link MlsGroupState} (stale private keys dropped). */
export function wrapState(s: InnerState): MlsGroupState {
  const current = prunePrivatePath(s.current);
  const pending = s.pending === undefined
    ? undefined
    : { ...s.pending, state: prunePrivatePath(s.pending.state) };
  return new MlsGroupState({ suite: s.suite, current, pending });
}

/** The ts-mls state behind an {@link MlsGroupState}; UsageError for a foreign object. */
export function unwrapState(state: MlsGroupState): InnerState {
  const s = inner.get(state);
  if (s === undefined) throw new UsageError("Not an MLS group state made by qpq");
  return s;
}

/** The cipher suite implementation of a state. */
export function suiteImpl(s: InnerState): Promise<CiphersuiteImpl> {
  return getCiphersuite(s.suite);
}

/** One member of a group as seen in its ratchet tree. */
export interface MemberInfo {
  /** The member's username (its basic credential identity). */
  readonly username: string;
  /** The member's Ed25519 identity public key (32 bytes), its leaf signature key. */
  readonly signaturePublicKey: Uint8Array;
  /** The member's leaf index. */
  readonly leafIndex: number;
}

/** Members of a ts-mls state, in leaf order. Leaves with invalid credentials throw. */
export function membersOf(cs: ClientState): MemberInfo[] {
  const out: MemberInfo[] = [];
  const tree = cs.ratchetTree;
  for (let i = 0; i < tree.length; i += 2) {
    const node = tree[i];
    if (node === undefined) continue;
    if (node.nodeType !== "leaf") throw new ValidationError("Ratchet tree is malformed");
    out.push(memberOfLeaf(node.leaf, i / 2));
  }
  return out;
}

/** A {@link MemberInfo} from one leaf node. */
export function memberOfLeaf(leaf: LeafNode, leafIndex: number): MemberInfo {
  const username = usernameOfCredential(leaf.credential);
  if (username === undefined || leaf.signaturePublicKey.length !== ED25519_KEY_BYTES) {
    throw new ValidationError("Group member has an invalid credential");
  }
  return { username, signaturePublicKey: leaf.signaturePublicKey.slice(), leafIndex };
}

/**
 * Turn anything ts-mls (or WebCrypto) threw into a QpqError. `peerInput` says whether the
 * failing operation was processing bytes from a peer (then failures are the peer's fault).
 */
export function mapMlsError(e: unknown, what: string, peerInput: boolean): QpqError {
  if (e instanceof QpqError) return e;
  const detail = e instanceof MlsError ? `: ${e.message}` : "";
  if (e instanceof MlsError) {
    switch (e.name) {
      case "CryptoVerificationError":
      case "CryptoError":
        return new CryptoError(`${what}${detail}`, { cause: e });
      case "UsageError":
        return peerInput
          ? new ValidationError(`${what}${detail}`, { cause: e })
          : new UsageError(`${what}${detail}`, { cause: e });
      case "ValidationError":
      case "CodecError":
        return new ValidationError(`${what}${detail}`, { cause: e });
    }
  }
  if (peerInput) {
    // WebCrypto OperationError (bad AEAD tag) and the like.
    if (e instanceof DOMException || (e instanceof Error && /tag|decrypt/i.test(e.message))) {
      return new CryptoError(what, { cause: e });
    }
    return new ValidationError(what, { cause: e });
  }
  return new InternalError(what, { cause: e });
}
