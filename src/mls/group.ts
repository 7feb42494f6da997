/**
 * qpq MLS groups: pure functions from state (+ input) to a new state (+ output).
 * No I/O: the caller persists each returned state before sending what it produced, and
 * zeroes `consumed` secrets once the new state is safely stored.
 *
 * Own commits are staged, not applied:
 *
 * ```
 *   addMembers / removeMembers / selfUpdate
 *        |  state.hasPendingCommit = true, outbound.commit (+ welcome)
 *        v
 *   persist state, send commit ------> server accepts? ---- yes --> mergePendingCommit(state)
 *                                            |                     (new epoch; send welcome)
 *                                            no (epoch_conflict)
 *                                            v
 *                                   discardPendingCommit(state), then processMessage() the
 *                                   winning commit and retry
 * ```
 *
 * While a commit is pending, application messages can still be sent and received;
 * handshake messages (commits, proposals) are refused with UsageError code
 * "epoch_conflict" until the pending commit is merged or discarded.
 *
 * Consumed secrets: a result's `consumed` array holds key material that the old state
 * references. Zero it (bytes.zeroize) only after the new state is persisted; if you drop
 * a result (for example because `verifyRoster` refused an added member), do NOT zero
 * `consumed` and keep using the old state.
 *
 * @module
 */

import type { ClientState, KeyPackage, LeafNode, Proposal, RatchetTree } from "ts-mls";
import {
  createApplicationMessage,
  createCommit,
  createGroup as mlsCreateGroup,
  createProposal,
  decodeMlsMessage,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  joinGroup,
  makePskIndex,
  mlsExporter,
  processPrivateMessage,
} from "ts-mls";
import type { IncomingMessageCallback } from "ts-mls";
import { decodeRatchetTree, nodeEncoder } from "ts-mls/ratchetTree.js";
import { encode } from "ts-mls/codec/tlsEncoder.js";
import { unprotectPrivateMessage } from "ts-mls/messageProtection.js";
import { consumeRatchet } from "ts-mls/secretTree.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { constantTimeEqual, zeroize } from "../bytes.ts";
import { QpqError, UsageError, ValidationError } from "../errors.ts";
import { joinGroupRfc, TS_MLS_UNMERGED_BUG, welcomeSignerLeaf } from "./_join.ts";
import {
  MAX_KEY_PACKAGE_LIFETIME_SECONDS,
  MAX_MESSAGE_BYTES,
  MAX_MLS_ADDS_PER_COMMIT,
  MAX_MLS_EXPORT_BYTES,
  MAX_MLS_GROUP_ID_BYTES,
  MAX_MLS_MESSAGE_BYTES,
  MAX_MLS_TREE_NODES,
  MAX_MLS_WELCOME_BYTES,
} from "../limits.ts";
import { decodeExact, encodeVectorFlat } from "./_codec.ts";
import {
  CLIENT_CONFIG,
  type InnerState,
  isMlsSuiteName,
  mapMlsError,
  type MemberInfo,
  memberOfLeaf,
  membersOf,
  type MlsGroupState,
  suiteImpl,
  unwrapState,
  wrapState,
} from "./_state.ts";
import {
  checkIdentity,
  checkUsername,
  type DecodedPrivatePackage,
  decodePrivatePackage,
  type SignatureKeyPair,
  verifyKeyPackageBytes,
} from "./key_package.ts";
import { DEFAULT_SUITE, getCiphersuite, type MlsSuiteName } from "./provider.ts";
import {
  decodeGroupSettings,
  encodeGroupSettings,
  GROUP_SETTINGS_EXTENSION,
  type GroupSettings,
} from "./settings.ts";

export type { MemberInfo, MlsGroupState };

/** Options of {@link createGroup}. */
export interface CreateGroupOptions {
  /** MLS group id (1 .. MAX_MLS_GROUP_ID_BYTES bytes), unique per group. */
  readonly groupId: Uint8Array;
  /** Our username. */
  readonly username: string;
  /** Our Ed25519 identity key pair. */
  readonly identity: SignatureKeyPair;
  /** Cipher suite (default: X-Wing). */
  readonly suite?: MlsSuiteName;
  /**
   * Roles and settings (the qpq group settings extension); without them the group is a
   * legacy group where every member is an admin (DMs).
   */
  readonly settings?: GroupSettings;
}

/** Messages an own commit produced, to send through the server. */
export interface CommitOutbound {
  /** The MLSMessage(PrivateMessage) commit for the current members. */
  readonly commit: Uint8Array;
  /** The MLSMessage(Welcome) for the added members, when members were added. */
  readonly welcome?: Uint8Array;
  /**
   * The new epoch's ratchet tree (RFC 9420 §12.4.3.3 encoding), returned when it is not
   * inside the Welcome (`ratchetTreeInWelcome: false`); the joiners need it.
   */
  readonly ratchetTree?: Uint8Array;
}

/** Result of staging an own commit. */
export interface StagedCommit {
  /** The state with the commit pending; persist it before sending. */
  readonly state: MlsGroupState;
  /** What to send. */
  readonly outbound: CommitOutbound;
  /** Members this commit adds (leaf index in the new epoch). */
  readonly added: MemberInfo[];
  /** Members this commit removes. */
  readonly removed: MemberInfo[];
  /**
   * Always empty: the secrets a staged commit consumes stay in the current state until
   * {@link mergePendingCommit} returns them.
   */
  readonly consumed: Uint8Array[];
}

/** Options of {@link addMembers}. */
export interface AddMembersOptions {
  /**
   * Put the ratchet tree inside the Welcome. Default: only while the tree is small (up to
   * 256 leaves, about 350 KiB with X-Wing, which grows by about 1.4 KiB per member);
   * otherwise the Welcome goes without it and `outbound.ratchetTree` must reach the
   * joiners another way. `true` fails for trees beyond about 4,000 members (ts-mls's
   * encoder recursion limit).
   */
  readonly ratchetTreeInWelcome?: boolean;
  /** Current time in Unix seconds for KeyPackage lifetime checks (default: the clock). */
  readonly now?: number;
  /**
   * Re-add: a KeyPackage of a current member replaces that member's leaf (remove + add in
   * the same commit), for a member whose state broke and who asked to be re-added. A
   * KeyPackage the member's leaf already uses is refused (UsageError "conflict"): the
   * re-add happened already.
   */
  readonly replaceExisting?: boolean;
}

/** Result of merging or processing a commit. */
export interface CommitApplied {
  /** The state in the new epoch. */
  readonly state: MlsGroupState;
  /** The new epoch. */
  readonly epoch: bigint;
  /** Members added by the commit. */
  readonly added: MemberInfo[];
  /** Members removed by the commit (including members who left). */
  readonly removed: MemberInfo[];
  /** Old-epoch secrets to zero after persisting `state`. */
  readonly consumed: Uint8Array[];
}

/** Result of {@link encryptMessage} and {@link leaveGroup}. */
export interface Encrypted {
  /** The state with the sending ratchet advanced; persist before sending. */
  readonly state: MlsGroupState;
  /** The MLSMessage(PrivateMessage) to send. */
  readonly outbound: Uint8Array;
  /** Used message keys to zero after persisting `state`. */
  readonly consumed: Uint8Array[];
}

/** A decrypted application message. */
export interface ApplicationReceived {
  readonly kind: "application";
  readonly state: MlsGroupState;
  /** Who sent it (from the ratchet tree of the message's epoch). */
  readonly sender: MemberInfo;
  /** The epoch it was sent in. */
  readonly epoch: bigint;
  readonly plaintext: Uint8Array;
  readonly consumed: Uint8Array[];
}

/** A commit by another member, applied. */
export interface CommitReceived extends CommitApplied {
  readonly kind: "commit";
  /** Who committed. */
  readonly committer: MemberInfo;
  /** The group's new settings, when the commit changed them. */
  readonly settings?: GroupSettings;
  /** Usernames among `removed` who asked to leave (their own remove proposal). */
  readonly left: string[];
}

/** A proposal by another member, stored until someone commits it. */
export interface ProposalReceived {
  readonly kind: "proposal";
  readonly state: MlsGroupState;
  /** Who proposed. */
  readonly proposer: MemberInfo;
  /** "remove" (only of the proposer itself: a leave) or "update". */
  readonly proposal: "remove" | "update";
  readonly consumed: Uint8Array[];
}

/** A commit removed us; `state.removed` is true and the group can no longer be used. */
export interface RemovedReceived {
  readonly kind: "removed";
  readonly state: MlsGroupState;
  /** Who committed our removal. */
  readonly committer: MemberInfo;
  readonly consumed: Uint8Array[];
}

/**
 * A handshake message (commit or proposal) from an epoch the group has already left: it
 * lost the race to another member's commit and can never apply. Normal in a busy group;
 * the state is unchanged.
 */
export interface StaleReceived {
  readonly kind: "stale";
  readonly state: MlsGroupState;
  /** The epoch it was made in. */
  readonly epoch: bigint;
  readonly consumed: Uint8Array[];
}

/** Everything {@link processMessage} can return. */
export type ProcessedMessage =
  | ApplicationReceived
  | CommitReceived
  | ProposalReceived
  | RemovedReceived
  | StaleReceived;

/** Options of {@link joinFromWelcome}. */
export interface JoinOptions {
  /** The ratchet tree when the Welcome does not carry it (`outbound.ratchetTree`). */
  readonly ratchetTree?: Uint8Array;
}

/** Result of {@link joinFromWelcome}. */
export interface Joined {
  /** The new member state; run `verifyRoster` on it before persisting. */
  readonly state: MlsGroupState;
  /** Ref of the KeyPackage the Welcome used: delete its private package (unless last resort). */
  readonly keyPackageRef: Uint8Array;
  /** Index into `privatePackages` of the one used. */
  readonly used: number;
  /**
   * Username of the member who signed the Welcome (its GroupInfo signer): who invited us.
   * Authenticated by MLS; the server's `sender` field is only a claim.
   */
  readonly inviter: string;
}

// ---------------------------------------------------------------------------------------

/**
 * Largest tree (in nodes) that `addMembers` puts inside the Welcome by default: 511 nodes
 * is 256 leaves, about 350 KiB with X-Wing, within MAX_MESSAGE_BYTES.
 */
const AUTO_TREE_IN_WELCOME_NODES = 511;

function live(state: MlsGroupState): InnerState {
  const s = unwrapState(state);
  if (s.current.groupActiveState.kind === "removedFromGroup") {
    throw new UsageError("We were removed from this group", { code: "forbidden" });
  }
  return s;
}

function noPending(s: InnerState): void {
  if (s.pending !== undefined) {
    throw new UsageError("An own commit is already pending: merge or discard it first", {
      code: "epoch_conflict",
    });
  }
}

function welcomeBytes(welcome: NonNullable<Awaited<ReturnType<typeof createCommit>>["welcome"]>) {
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome });
}

/** Members of `after` that are not (same leaf, same key) in `before`, and vice versa. */
function diffMembers(before: ClientState, after: ClientState): {
  added: MemberInfo[];
  removed: MemberInfo[];
} {
  const added: MemberInfo[] = [];
  const removed: MemberInfo[] = [];
  const a = before.ratchetTree;
  const b = after.ratchetTree;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i += 2) {
    const x = a[i];
    const y = b[i];
    const lx = x?.nodeType === "leaf" ? x.leaf : undefined;
    const ly = y?.nodeType === "leaf" ? y.leaf : undefined;
    if (lx === ly) continue;
    if (lx !== undefined && ly !== undefined && sameMember(lx, ly)) continue; // an update
    if (lx !== undefined) removed.push(memberOfLeaf(lx, i / 2));
    if (ly !== undefined) added.push(memberOfLeaf(ly, i / 2));
  }
  return { added, removed };
}

function sameMember(a: LeafNode, b: LeafNode): boolean {
  return a.credential.credentialType === "basic" && b.credential.credentialType === "basic" &&
    constantTimeEqual(a.credential.identity, b.credential.identity) &&
    constantTimeEqual(a.signaturePublicKey, b.signaturePublicKey);
}

const encodeNode = encode(nodeEncoder);
const BLANK = Uint8Array.of(0);

/** RFC 9420 §12.4.3.3 ratchet tree encoding (`optional<Node> ratchet_tree<V>`). */
function encodeTree(tree: RatchetTree): Uint8Array {
  let last = tree.length - 1;
  while (last >= 0 && tree[last] === undefined) last--;
  return encodeVectorFlat(tree.slice(0, last + 1), (n) => {
    if (n === undefined) return BLANK;
    const b = encodeNode(n);
    const out = new Uint8Array(b.length + 1);
    out[0] = 1;
    out.set(b, 1);
    return out;
  });
}

function leafAt(tree: RatchetTree, leafIndex: number): LeafNode {
  const node = tree[leafIndex * 2];
  if (node?.nodeType !== "leaf") throw new ValidationError("Sender is not a group member");
  return node.leaf;
}

async function ownKeyPackage(
  username: string,
  identity: SignatureKeyPair,
  suite: MlsSuiteName,
) {
  const id = checkUsername(username);
  const signKey = checkIdentity(identity);
  const cs = await getCiphersuite(suite);
  const now = BigInt(Math.floor(Date.now() / 1000));
  const kp = await generateKeyPackageWithKey(
    { credentialType: "basic", identity: id },
    {
      versions: ["mls10"],
      ciphersuites: [suite],
      extensions: [GROUP_SETTINGS_EXTENSION],
      proposals: [],
      credentials: ["basic"],
    },
    { notBefore: now, notAfter: now + BigInt(MAX_KEY_PACKAGE_LIFETIME_SECONDS) },
    [],
    { signKey, publicKey: identity.publicKey.slice() },
    cs,
  );
  return { kp, cs };
}

// ---------------------------------------------------------------------------------------

/**
 * Create a group with us as its only member (epoch 0).
 *
 * @throws UsageError for a bad group id, username, identity key pair or suite
 */
export async function createGroup(opts: CreateGroupOptions): Promise<MlsGroupState> {
  const suite = opts.suite ?? DEFAULT_SUITE;
  if (!isMlsSuiteName(suite)) throw new UsageError("Unsupported MLS cipher suite");
  if (
    !(opts.groupId instanceof Uint8Array) || opts.groupId.length === 0 ||
    opts.groupId.length > MAX_MLS_GROUP_ID_BYTES
  ) {
    throw new UsageError("MLS group id must be 1 to 255 bytes");
  }
  try {
    const { kp, cs } = await ownKeyPackage(opts.username, opts.identity, suite);
    const current = await mlsCreateGroup(
      opts.groupId.slice(),
      kp.publicPackage,
      kp.privatePackage,
      opts.settings === undefined ? [] : [{
        extensionType: GROUP_SETTINGS_EXTENSION,
        extensionData: encodeGroupSettings(opts.settings),
      }],
      cs,
      CLIENT_CONFIG,
    );
    zeroize(kp.privatePackage.initPrivateKey);
    return wrapState({ suite, current, pending: undefined });
  } catch (e) {
    throw mapMlsError(e, "Cannot create group", false);
  }
}

/**
 * Stage one commit adding every KeyPackage (each verified with `parseKeyPackage` rules
 * against the group's suite). Check each added member's key against the directory
 * (`checkCredentialBinding` on `added`) before sending.
 *
 * @param state the group state (no commit pending)
 * @param keyPackages MLSMessage(KeyPackage) bytes, one per new member
 * @throws ValidationError for a bad KeyPackage; UsageError for an existing or repeated member
 */
export async function addMembers(
  state: MlsGroupState,
  keyPackages: readonly Uint8Array[],
  opts: AddMembersOptions = {},
): Promise<StagedCommit> {
  const s = live(state);
  noPending(s);
  if (keyPackages.length === 0) throw new UsageError("No KeyPackages to add");
  if (keyPackages.length > MAX_MLS_ADDS_PER_COMMIT) {
    throw new UsageError("Too many members in one commit", { code: "too_large" });
  }
  const current = new Map(membersOf(s.current).map((m) => [m.username, m]));
  const existing = new Set(current.keys());
  const own = s.current.privatePath.leafIndex;
  // members whose leave proposal we hold: the commit removes them, so they can be added
  // again in it (invited right after they left)
  const leaving = pendingRemovals(s.current);
  const proposals: Proposal[] = [];
  const kps: KeyPackage[] = [];
  for (const bytes of keyPackages) {
    const { parsed, keyPackage } = await verifyKeyPackageBytes(
      bytes,
      opts.now === undefined ? { suite: s.suite } : { suite: s.suite, now: opts.now },
    );
    const old = current.get(parsed.username);
    if (old !== undefined && leaving.has(old.leafIndex) && existing.has(parsed.username)) {
      // removed by its pending proposal; nothing more to propose
    } else if (
      old !== undefined && opts.replaceExisting === true && existing.has(parsed.username)
    ) {
      const leaf = leafAt(s.current.ratchetTree, old.leafIndex);
      if (old.leafIndex === own) throw new UsageError("Cannot re-add ourselves");
      if (constantTimeEqual(leaf.hpkePublicKey, keyPackage.leafNode.hpkePublicKey)) {
        throw new UsageError("Member already uses this KeyPackage", { code: "conflict" });
      }
      proposals.push({ proposalType: "remove", remove: { removed: old.leafIndex } });
    } else if (existing.has(parsed.username)) {
      throw new UsageError("User is already a member of the group", { code: "conflict" });
    }
    existing.add(parsed.username);
    current.delete(parsed.username);
    kps.push(keyPackage);
    proposals.push({ proposalType: "add", add: { keyPackage } });
  }
  const treeInWelcome = opts.ratchetTreeInWelcome ??
    s.current.ratchetTree.length + 2 * keyPackages.length <= AUTO_TREE_IN_WELCOME_NODES;
  const cs = await suiteImpl(s);
  let res;
  try {
    res = await createCommit(
      { state: s.current, cipherSuite: cs },
      { extraProposals: proposals, ratchetTreeExtension: treeInWelcome },
    );
  } catch (e) {
    throw mapMlsError(e, "Cannot add members", false);
  }
  if (res.welcome === undefined) throw new ValidationError("Commit produced no Welcome");
  const { added, removed } = diffMembers(s.current, res.newState);
  const outbound: CommitOutbound = treeInWelcome
    ? { commit: encodeMlsMessage(res.commit), welcome: welcomeBytes(res.welcome) }
    : {
      commit: encodeMlsMessage(res.commit),
      welcome: welcomeBytes(res.welcome),
      ratchetTree: encodeTree(res.newState.ratchetTree),
    };
  return {
    state: wrapState({
      suite: s.suite,
      current: s.current,
      pending: { state: res.newState, consumed: res.consumed },
    }),
    outbound,
    added,
    removed,
    consumed: [],
  };
}

/** Leaves removed by proposals we hold (a member's leave), which our next commit applies. */
function pendingRemovals(cs: ClientState): Set<number> {
  const out = new Set<number>();
  for (const p of Object.values(cs.unappliedProposals)) {
    if (p.proposal.proposalType === "remove") out.add(p.proposal.remove.removed);
  }
  return out;
}

/**
 * Members who asked to leave and whose removal our next commit applies (their leave
 * proposals are pending here).
 */
export function leavingMembers(state: MlsGroupState): string[] {
  const cs = unwrapState(state).current;
  const leaving = pendingRemovals(cs);
  return membersOf(cs).filter((m) => leaving.has(m.leafIndex)).map((m) => m.username);
}

/**
 * Stage one commit removing the named members (with a path update, so they cannot read
 * anything sent after it).
 *
 * @throws UsageError for an unknown name, ourselves, or a repeated name
 */
export async function removeMembers(
  state: MlsGroupState,
  usernames: readonly string[],
): Promise<StagedCommit> {
  const s = live(state);
  noPending(s);
  if (usernames.length === 0) throw new UsageError("No members to remove");
  const byName = new Map(membersOf(s.current).map((m) => [m.username, m]));
  const own = s.current.privatePath.leafIndex;
  const seen = new Set<string>();
  const proposals: Proposal[] = [];
  // A member whose leave proposal we hold is removed by that proposal (every commit
  // includes the proposals received): proposing it again would make the commit invalid.
  const leaving = pendingRemovals(s.current);
  for (const name of usernames) {
    const m = byName.get(name);
    if (m === undefined) {
      throw new UsageError("User is not a member of the group", { code: "not_found" });
    }
    if (m.leafIndex === own) throw new UsageError("Cannot remove ourselves: use leaveGroup");
    if (seen.has(name)) throw new UsageError("User is listed twice");
    seen.add(name);
    if (leaving.has(m.leafIndex)) continue;
    proposals.push({ proposalType: "remove", remove: { removed: m.leafIndex } });
  }
  return await stageCommit(s, proposals, "Cannot remove members");
}

/**
 * Stage an empty commit with a path update: fresh keys for our leaf and path (post-
 * compromise security). It also commits every proposal received so far (for example a
 * member's leave), which is how the group completes a leave: see {@link leaveGroup}.
 */
export async function selfUpdate(state: MlsGroupState): Promise<StagedCommit> {
  const s = live(state);
  noPending(s);
  return await stageCommit(s, [], "Cannot update own keys");
}

async function stageCommit(
  s: InnerState,
  proposals: Proposal[],
  what: string,
): Promise<StagedCommit> {
  const cs = await suiteImpl(s);
  let res;
  try {
    res = await createCommit({ state: s.current, cipherSuite: cs }, { extraProposals: proposals });
  } catch (e) {
    throw mapMlsError(e, what, false);
  }
  const { added, removed } = diffMembers(s.current, res.newState);
  return {
    state: wrapState({
      suite: s.suite,
      current: s.current,
      pending: { state: res.newState, consumed: res.consumed },
    }),
    outbound: { commit: encodeMlsMessage(res.commit) },
    added,
    removed,
    consumed: [],
  };
}

/**
 * The server accepted our pending commit: move to the new epoch.
 *
 * @throws UsageError when no commit is pending
 */
export function mergePendingCommit(state: MlsGroupState): CommitApplied {
  const s = unwrapState(state);
  if (s.pending === undefined) throw new UsageError("No commit is pending");
  const next = s.pending.state;
  const { added, removed } = diffMembers(s.current, next);
  return {
    state: wrapState({ suite: s.suite, current: next, pending: undefined }),
    epoch: next.groupContext.epoch,
    added,
    removed,
    consumed: s.pending.consumed,
  };
}

/**
 * The server refused our pending commit: drop it and stay in the current epoch. The
 * handshake key the commit was encrypted with is burned so that it is never reused, and
 * the abandoned epoch's key schedule is zeroed (the old state value must not be used
 * again).
 *
 * @throws UsageError when no commit is pending
 */
export async function discardPendingCommit(
  state: MlsGroupState,
): Promise<{ state: MlsGroupState; consumed: Uint8Array[] }> {
  const s = unwrapState(state);
  if (s.pending === undefined) throw new UsageError("No commit is pending");
  const cs = await suiteImpl(s);
  const own = s.current.privatePath.leafIndex;
  const r = await consumeRatchet(s.current.secretTree, own * 2, "commit", cs);
  zeroize(r.key, r.nonce);
  // The abandoned epoch's key schedule is fresh (shared with nothing): wipe it now.
  zeroize(...Object.values(s.pending.state.keySchedule));
  return {
    state: wrapState({
      suite: s.suite,
      current: { ...s.current, secretTree: r.newTree },
      pending: undefined,
    }),
    consumed: r.consumed,
  };
}

/**
 * Join a group from a Welcome with one of our stored private KeyPackages.
 *
 * @param welcome MLSMessage(Welcome) bytes
 * @param privatePackages candidate private packages (`createKeyPackage().privatePackage`)
 * @param identity our Ed25519 identity key pair (it signs in the group)
 * @throws ValidationError when the Welcome is bad or none of the packages fits it
 */
export async function joinFromWelcome(
  welcome: Uint8Array,
  privatePackages: readonly Uint8Array[],
  identity: SignatureKeyPair,
  opts: JoinOptions = {},
): Promise<Joined> {
  if (!(welcome instanceof Uint8Array) || welcome.length > MAX_MLS_WELCOME_BYTES) {
    throw new ValidationError("Welcome is too large", { code: "too_large" });
  }
  const msg = decodeExact(decodeMlsMessage, welcome, "Welcome");
  if (msg.version !== "mls10" || msg.wireformat !== "mls_welcome") {
    throw new ValidationError("Message is not an MLS 1.0 Welcome");
  }
  const w = msg.welcome;
  const suite = w.cipherSuite;
  if (!isMlsSuiteName(suite)) throw new ValidationError("Welcome uses an unsupported suite");
  let tree: RatchetTree | undefined;
  if (opts.ratchetTree !== undefined) {
    if (opts.ratchetTree.length > MAX_MLS_WELCOME_BYTES) {
      throw new ValidationError("Ratchet tree is too large", { code: "too_large" });
    }
    tree = decodeExact(decodeRatchetTree, opts.ratchetTree.slice(), "Ratchet tree");
    if (tree.length > MAX_MLS_TREE_NODES) {
      throw new ValidationError("Ratchet tree is too large", { code: "too_large" });
    }
  }
  const cs = await getCiphersuite(suite);
  // Find which of our packages the Welcome addresses.
  let chosen: DecodedPrivatePackage | undefined;
  let used = -1;
  let ref: Uint8Array | undefined;
  for (let i = 0; i < privatePackages.length && chosen === undefined; i++) {
    const p = decodePrivatePackage(privatePackages[i]!);
    if (p.suite !== suite) {
      zeroize(p.initPrivateKey, p.hpkePrivateKey);
      continue;
    }
    const r = await makeKeyPackageRef(p.keyPackage, cs.hash);
    if (w.secrets.some((x) => constantTimeEqual(x.newMember, r))) {
      chosen = p;
      used = i;
      ref = r;
    } else {
      zeroize(p.initPrivateKey, p.hpkePrivateKey);
    }
  }
  if (chosen === undefined || ref === undefined) {
    throw new ValidationError("Welcome is not for any of our KeyPackages");
  }
  const signKey = checkIdentity(identity);
  if (!constantTimeEqual(chosen.keyPackage.leafNode.signaturePublicKey, identity.publicKey)) {
    zeroize(signKey, chosen.initPrivateKey, chosen.hpkePrivateKey);
    throw new UsageError("KeyPackage was made with another identity key");
  }
  let current: ClientState;
  try {
    current = await joinGroup(
      w,
      chosen.keyPackage,
      {
        initPrivateKey: chosen.initPrivateKey,
        hpkePrivateKey: chosen.hpkePrivateKey,
        signaturePrivateKey: signKey,
      },
      emptyPskIndex,
      cs,
      tree,
      undefined,
      CLIENT_CONFIG,
    );
  } catch (e) {
    // ts-mls 1.6.4 refuses some valid trees (see _join.ts): join with the RFC's tree check
    const bug = e instanceof Error && e.message.includes(TS_MLS_UNMERGED_BUG);
    try {
      if (!bug) throw e;
      current = await joinGroupRfc(
        w,
        chosen.keyPackage,
        {
          initPrivateKey: chosen.initPrivateKey,
          hpkePrivateKey: chosen.hpkePrivateKey,
          signaturePrivateKey: signKey,
        },
        cs,
        tree,
        CLIENT_CONFIG,
      );
    } catch (e2) {
      zeroize(signKey, chosen.initPrivateKey, chosen.hpkePrivateKey);
      if (e2 instanceof QpqError) throw e2;
      throw mapMlsError(e2, "Cannot join group", true);
    }
  }
  let signerLeaf;
  try {
    signerLeaf = await welcomeSignerLeaf(w, chosen.keyPackage, chosen.initPrivateKey, cs);
  } finally {
    zeroize(chosen.initPrivateKey);
  }
  if (current.ratchetTree.length > MAX_MLS_TREE_NODES) {
    throw new ValidationError("Ratchet tree is too large", { code: "too_large" });
  }
  const all = membersOf(current);
  const names = new Set(all.map((m) => m.username));
  if (names.size !== all.length) throw new ValidationError("Group lists one username twice");
  const inviter = all.find((m) => m.leafIndex === signerLeaf);
  if (inviter === undefined) throw new ValidationError("Welcome signer is not a member");
  return {
    state: wrapState({ suite, current, pending: undefined }),
    keyPackageRef: ref,
    used,
    inviter: inviter.username,
  };
}

/**
 * Encrypt an application message for the group (current epoch).
 *
 * @throws UsageError when proposals await a commit (see {@link leaveGroup}) or we were removed
 */
export async function encryptMessage(
  state: MlsGroupState,
  plaintext: Uint8Array,
): Promise<Encrypted> {
  const s = live(state);
  if (plaintext.length > MAX_MESSAGE_BYTES) {
    throw new UsageError("Message is too large", { code: "too_large" });
  }
  const cs = await suiteImpl(s);
  let res;
  try {
    res = await createApplicationMessage(s.current, plaintext, cs);
  } catch (e) {
    throw mapMlsError(e, "Cannot encrypt message", false);
  }
  return {
    state: wrapState({ suite: s.suite, current: res.newState, pending: s.pending }),
    outbound: encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_private_message",
      privateMessage: res.privateMessage,
    }),
    consumed: res.consumed,
  };
}

/**
 * Propose our own removal. MLS does not let a member commit its own removal, so this
 * returns a remove proposal to send to the group; any other member then commits it
 * (their client sees `{ kind: "proposal", proposal: "remove" }` from `processMessage` and
 * should call {@link selfUpdate}, which commits all received proposals). Until that
 * commit, members cannot send application messages (MLS forbids it while proposals are
 * outstanding). The leaving client should keep its state until it processes the commit
 * (`{ kind: "removed" }`), or simply delete it and stop fetching the group.
 */
export async function leaveGroup(state: MlsGroupState): Promise<Encrypted> {
  const s = live(state);
  noPending(s);
  const cs = await suiteImpl(s);
  let res;
  try {
    res = await createProposal(s.current, false, {
      proposalType: "remove",
      remove: { removed: s.current.privatePath.leafIndex },
    }, cs);
  } catch (e) {
    throw mapMlsError(e, "Cannot leave group", false);
  }
  return {
    state: wrapState({ suite: s.suite, current: res.newState, pending: undefined }),
    outbound: encodeMlsMessage(res.message),
    consumed: res.consumed,
  };
}

/**
 * The server refused our leave proposal: forget it, so that our next commit does not carry
 * our own removal (which MLS forbids). Only the proposal goes: the handshake key it used
 * stays consumed (the state keeps the ratchet as {@link leaveGroup} left it).
 */
export function withdrawOwnProposals(state: MlsGroupState): MlsGroupState {
  const s = unwrapState(state);
  const own = s.current.privatePath.leafIndex;
  const kept = Object.fromEntries(
    Object.entries(s.current.unappliedProposals).filter(([, p]) => p.senderLeafIndex !== own),
  );
  return wrapState({
    suite: s.suite,
    current: { ...s.current, unappliedProposals: kept },
    pending: s.pending,
  });
}

interface Captured {
  sender: number | undefined;
  proposal: "remove" | "update" | undefined;
  /** Leaves removed by a commit through their own remove proposal. */
  selfRemoved: Set<number>;
  /** Why the commit was refused by the roles rule (see {@link roleRefusal}). */
  refusal?: string;
  /** The settings a commit sets, when it changes them. */
  newSettings?: GroupSettings | undefined;
}

/** The settings a group context holds; undefined for a legacy group (everyone is an admin). */
function settingsOf(gc: ClientState["groupContext"]): GroupSettings | undefined {
  const ext = gc.extensions.find((e) => e.extensionType === GROUP_SETTINGS_EXTENSION);
  return ext === undefined ? undefined : decodeGroupSettings(ext.extensionData);
}

/**
 * The roles rule, applied by every receiver to every commit against the settings BEFORE
 * it: removing another member or changing the group context extensions takes an admin; a
 * settings change must keep valid settings. Returns why the commit is refused, or
 * undefined when it is allowed.
 */
function roleRefusal(
  current: ClientState,
  committer: number,
  proposals: readonly { proposal: Proposal; senderLeafIndex: number | undefined }[],
  captured: Captured,
): string | undefined {
  let settings: GroupSettings | undefined;
  try {
    settings = settingsOf(current.groupContext);
  } catch {
    return "the group's settings are unreadable";
  }
  let name: string | undefined;
  try {
    name = memberOfLeaf(leafAt(current.ratchetTree, committer), committer).username;
  } catch {
    return "its committer is not a member";
  }
  const admin = settings === undefined || settings.admins.includes(name);
  // a member re-added in the same commit (a rejoin or a heal: its old leaf goes, a fresh
  // KeyPackage of the same user comes in) is not removed: any member may do that
  const readded = new Set<string>();
  for (const p of proposals) {
    if (p.proposal.proposalType !== "add") continue;
    try {
      readded.add(memberOfLeaf(p.proposal.add.keyPackage.leafNode, -1).username);
    } catch { /* an invalid KeyPackage is refused by the MLS checks */ }
  }
  const replaced = (leaf: number): boolean => {
    try {
      return readded.has(memberOfLeaf(leafAt(current.ratchetTree, leaf), leaf).username);
    } catch {
      return false;
    }
  };
  for (const p of proposals) {
    const q = p.proposal;
    if (
      q.proposalType === "remove" && q.remove.removed !== p.senderLeafIndex && !admin &&
      !replaced(q.remove.removed)
    ) {
      return `${name} is not an admin and removed a member`;
    }
    if (q.proposalType === "group_context_extensions") {
      if (!admin) return `${name} is not an admin and changed the group's settings`;
      const exts = q.groupContextExtensions.extensions;
      const ours = exts.filter((e) => e.extensionType === GROUP_SETTINGS_EXTENSION);
      if (exts.length !== ours.length || ours.length !== 1) {
        return "it changes the group's extensions to something qpq does not allow";
      }
      try {
        captured.newSettings = decodeGroupSettings(ours[0]!.extensionData);
      } catch {
        return "its new group settings are malformed";
      }
    }
  }
  return undefined;
}

/** qpq's proposal policy: commits may add, remove and update; proposals only self-remove or update. */
function policy(captured: Captured, current: ClientState): IncomingMessageCallback {
  return (incoming) => {
    if (incoming.kind === "commit") {
      captured.sender = incoming.senderLeafIndex;
      if (incoming.senderLeafIndex === undefined) return "reject";
      const refusal = roleRefusal(current, incoming.senderLeafIndex, incoming.proposals, captured);
      if (refusal !== undefined) {
        captured.refusal = refusal;
        return "reject";
      }
      for (const p of incoming.proposals) {
        const t = p.proposal.proposalType;
        if (
          t !== "add" && t !== "remove" && t !== "update" && t !== "group_context_extensions"
        ) return "reject";
        if (
          p.proposal.proposalType === "remove" && p.proposal.remove.removed === p.senderLeafIndex
        ) {
          captured.selfRemoved.add(p.senderLeafIndex);
        }
      }
      return "accept";
    }
    const p = incoming.proposal;
    captured.sender = p.senderLeafIndex;
    if (p.senderLeafIndex === undefined) return "reject";
    if (p.proposal.proposalType === "update") {
      captured.proposal = "update";
      return "accept";
    }
    if (
      p.proposal.proposalType === "remove" && p.proposal.remove.removed === p.senderLeafIndex
    ) {
      captured.proposal = "remove";
      return "accept";
    }
    return "reject";
  };
}

/**
 * Process one MLS message from the group: decrypt an application message, apply another
 * member's commit, or store a proposal. Only PrivateMessages of this group are accepted.
 *
 * @param state the group state
 * @param bytes MLSMessage(PrivateMessage) bytes as delivered
 * @throws ValidationError for malformed, foreign or disallowed messages; CryptoError for
 *   messages that fail authentication; UsageError (code "epoch_conflict") for a commit or
 *   proposal while our own commit is pending
 */
export async function processMessage(
  state: MlsGroupState,
  bytes: Uint8Array,
): Promise<ProcessedMessage> {
  const s = live(state);
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw new ValidationError("MLS message is empty");
  }
  if (bytes.length > MAX_MLS_MESSAGE_BYTES) {
    throw new ValidationError("MLS message is too large", { code: "too_large" });
  }
  const msg = decodeExact(decodeMlsMessage, bytes, "MLS message");
  if (msg.version !== "mls10") throw new ValidationError("MLS message has the wrong version");
  if (msg.wireformat !== "mls_private_message") {
    throw new ValidationError("MLS message is not a PrivateMessage");
  }
  const pm = msg.privateMessage;
  const gc = s.current.groupContext;
  if (!constantTimeEqual(pm.groupId, gc.groupId)) {
    throw new ValidationError("MLS message is for another group");
  }
  if (pm.epoch > gc.epoch) throw new ValidationError("MLS message is from a future epoch");
  const cs = await suiteImpl(s);

  if (pm.contentType === "application") {
    const past = pm.epoch < gc.epoch;
    const rd = past ? s.current.historicalReceiverData.get(pm.epoch) : undefined;
    if (past && rd === undefined) throw new ValidationError("MLS message epoch is too old");
    const src = rd ?? {
      senderDataSecret: s.current.keySchedule.senderDataSecret,
      secretTree: s.current.secretTree,
      ratchetTree: s.current.ratchetTree,
      groupContext: gc,
    };
    let r;
    try {
      r = await unprotectPrivateMessage(
        src.senderDataSecret,
        pm,
        src.secretTree,
        src.ratchetTree,
        src.groupContext,
        s.current.clientConfig.keyRetentionConfig,
        cs,
      );
    } catch (e) {
      throw mapMlsError(e, "Cannot decrypt message", true);
    }
    const content = r.content.content;
    if (content.contentType !== "application" || content.sender.senderType !== "member") {
      throw new ValidationError("MLS message content does not match its type");
    }
    const sender = memberOfLeaf(
      leafAt(src.ratchetTree, content.sender.leafIndex),
      content.sender.leafIndex,
    );
    let current: ClientState;
    if (rd !== undefined) {
      const hist = new Map(s.current.historicalReceiverData);
      hist.set(pm.epoch, { ...rd, secretTree: r.tree });
      current = { ...s.current, historicalReceiverData: hist };
    } else {
      current = { ...s.current, secretTree: r.tree };
    }
    return {
      kind: "application",
      state: wrapState({ suite: s.suite, current, pending: s.pending }),
      sender,
      epoch: pm.epoch,
      plaintext: content.applicationData,
      consumed: r.consumed,
    };
  }

  if (s.pending !== undefined) {
    throw new UsageError("An own commit is pending: merge or discard it first", {
      code: "epoch_conflict",
    });
  }
  if (pm.epoch !== gc.epoch) return { kind: "stale", state, epoch: pm.epoch, consumed: [] };
  const captured: Captured = { sender: undefined, proposal: undefined, selfRemoved: new Set() };
  let res;
  try {
    res = await processPrivateMessage(
      s.current,
      pm,
      makePskIndex(s.current, {}),
      cs,
      policy(captured, s.current),
    );
  } catch (e) {
    throw mapMlsError(e, "Cannot process handshake message", true);
  }
  if (res.kind !== "newState") {
    throw new ValidationError("MLS message content does not match its type");
  }
  if (res.actionTaken === "reject" && captured.refusal !== undefined) {
    throw new ValidationError(`Refused a change: ${captured.refusal}`, { code: "forbidden" });
  }
  if (res.actionTaken === "reject") {
    throw new ValidationError("MLS message carries a proposal qpq does not allow");
  }
  const senderIndex = captured.sender;
  if (senderIndex === undefined) throw new ValidationError("Sender is not a group member");
  const who = memberOfLeaf(leafAt(s.current.ratchetTree, senderIndex), senderIndex);
  const next = res.newState;
  const wrapped = wrapState({ suite: s.suite, current: next, pending: undefined });
  if (pm.contentType === "proposal") {
    if (captured.proposal === undefined) throw new ValidationError("Proposal was not seen");
    return {
      kind: "proposal",
      state: wrapped,
      proposer: who,
      proposal: captured.proposal,
      consumed: res.consumed,
    };
  }
  if (next.groupActiveState.kind === "removedFromGroup") {
    return { kind: "removed", state: wrapped, committer: who, consumed: res.consumed };
  }
  const { added, removed } = diffMembers(s.current, next);
  return {
    kind: "commit",
    state: wrapped,
    epoch: next.groupContext.epoch,
    added,
    removed,
    committer: who,
    left: removed.filter((m) => captured.selfRemoved.has(m.leafIndex)).map((m) => m.username),
    ...(captured.newSettings ? { settings: captured.newSettings } : {}),
    consumed: res.consumed,
  };
}

/**
 * The group's roles and settings; undefined for a legacy group (no settings extension:
 * every member is an admin).
 *
 * @throws ValidationError when the stored settings are malformed
 */
export function groupSettings(state: MlsGroupState): GroupSettings | undefined {
  return settingsOf(live(state).current.groupContext);
}

/** True when `username` may remove others and change the settings (an admin, or legacy). */
export function isAdmin(state: MlsGroupState, username: string): boolean {
  const s = groupSettings(state);
  return s === undefined || s.admins.includes(username);
}

/**
 * Stage one commit replacing the group's settings (a GroupContextExtensions proposal).
 * Receivers apply it only when we are an admin per the settings before it; like
 * {@link removeMembers}, this builds the commit and leaves the local refusal to the caller
 * ({@link isAdmin}), so a test can forge what a modified client would send.
 *
 * A member's leave we hold cannot ride along: ts-mls 1.6.4 encrypts a commit's path
 * secrets under the group context with the old extensions, its receivers decrypt them
 * under the one with the new (RFC 9420 §12.4.2 provisional GroupContext; ts-mls issue
 * 742), and a removal makes the commit carry a path. Such a commit is unreadable to every
 * other member (sim seed 7007: the member broke and had to be re-added). Commit the
 * leaves first ({@link selfUpdate}, see {@link leavingMembers}).
 *
 * @throws ValidationError for out-of-bounds settings
 * @throws UsageError "conflict" while a member's leave is held
 */
export async function changeSettings(
  state: MlsGroupState,
  settings: GroupSettings,
): Promise<StagedCommit> {
  const s = live(state);
  noPending(s);
  if (pendingRemovals(s.current).size > 0) {
    throw new UsageError("Commit the members' leaves before changing the group's settings", {
      code: "conflict",
    });
  }
  const proposal: Proposal = {
    proposalType: "group_context_extensions",
    groupContextExtensions: {
      extensions: [{
        extensionType: GROUP_SETTINGS_EXTENSION,
        extensionData: encodeGroupSettings(settings),
      }],
    },
  };
  return await stageCommit(s, [proposal], "Cannot change the group's settings");
}

/** The current epoch. */
export function epoch(state: MlsGroupState): bigint {
  return unwrapState(state).current.groupContext.epoch;
}

/**
 * The epoch authenticator (RFC 9420 §8.7): equal across members exactly when they share
 * the epoch; compare it out of band to detect a split view. Returns a copy.
 */
export function epochAuthenticator(state: MlsGroupState): Uint8Array {
  return unwrapState(state).current.keySchedule.epochAuthenticator.slice();
}

/**
 * MLS-Exporter(label, context, length) of the current epoch (RFC 9420 §8.5).
 *
 * @throws UsageError for a length outside 1 .. MAX_MLS_EXPORT_BYTES
 */
export async function exportSecret(
  state: MlsGroupState,
  label: string,
  context: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const s = unwrapState(state);
  if (!Number.isSafeInteger(length) || length < 1 || length > MAX_MLS_EXPORT_BYTES) {
    throw new UsageError("Exported secret length is out of range");
  }
  const cs = await suiteImpl(s);
  return await mlsExporter(s.current.keySchedule.exporterSecret, label, context, length, cs);
}

/** The members of the current epoch, in leaf order. */
export function members(state: MlsGroupState): MemberInfo[] {
  return membersOf(unwrapState(state).current);
}

/** The current epoch's ratchet tree (RFC 9420 encoding), for joiners of large groups. */
export function exportRatchetTree(state: MlsGroupState): Uint8Array {
  return encodeTree(unwrapState(state).current.ratchetTree);
}
