/**
 * Group state <-> bytes, for the client store. The encoding is versioned (a magic and a
 * version byte first), deterministic (the same state always gives the same bytes) and
 * bounded (every length is checked; decoding garbage throws ValidationError).
 *
 * Layout, version 1 (integers big-endian; `bytes` = u32 length + data):
 *
 * ```
 * "QMLS" u8 version=1 u16 suite
 * u32 N, N x bytes(node)                  node table: each distinct ratchet-tree node once
 * state(current)
 * u8 hasPending, [state(pending)]
 *
 * state := bytes(groupContext) bytes(keySchedule) secretTree tree
 *          bytes(privatePath) bytes(signaturePrivateKey) bytes(unappliedProposals)
 *          bytes(confirmationTag) u16 H, H x past-epoch bytes(groupActiveState)
 * past-epoch := u64 epoch bytes(resumptionPsk) secretTree tree
 *               bytes(senderDataSecret) bytes(groupContext)
 * tree := u32 width, width x u32 (0 = blank, i = node i of the table)
 * secretTree := u32 width, width x bytes(secretTreeNode)
 * ```
 *
 * Version 2 is version 1 with the secret trees of the current state and of its past epochs
 * kept outside the bytes, as {@link GroupStateSecret}s (one per secret-tree node and epoch:
 * the ratchets an application message advances); `secretTree` is then `u32 width` alone.
 * The pending state (an own commit awaiting the server) keeps its trees inside. A stored
 * version-2 state is its bytes plus its secrets; {@link encodeGroupStateChange} says what
 * to write when a state replaces another (for an application message sent or received:
 * one secret, the sender's, and no bytes).
 *
 * Leaf values (`node`, `groupContext`, ...) use the RFC 9420 TLS encodings as ts-mls
 * writes them. The node table keeps one copy of each node shared by the current tree and
 * the trees retained for past epochs, which would otherwise multiply the size of large
 * groups' states. A change to any part bumps the version byte; old versions stay
 * decodable (tests/fixtures/mls holds golden files).
 *
 * The bytes hold every group secret and our identity private key: store them encrypted.
 *
 * @module
 */

import type { ClientState, RatchetTree } from "ts-mls";
import type { Node } from "ts-mls";
import { encode } from "ts-mls/codec/tlsEncoder.js";
import { decodeGroupContext, groupContextEncoder } from "ts-mls/groupContext.js";
import { decodeKeySchedule, keyScheduleEncoder } from "ts-mls/keySchedule.js";
import { decodeSecretTreeNode, secretTreeNodeEncoder } from "ts-mls/secretTree.js";
import type { SecretTree } from "ts-mls";
import { decodeNode, nodeEncoder } from "ts-mls/ratchetTree.js";
import { decodePrivateKeyPath, privateKeyPathEncoder } from "ts-mls/privateKeyPath.js";
import { decodeUnappliedProposals, unappliedProposalsEncoder } from "ts-mls/unappliedProposals.js";
import { decodeGroupActiveState, groupActiveStateEncoder } from "ts-mls/groupActiveState.js";
import type { EpochReceiverData } from "ts-mls";
import { ValidationError } from "../errors.ts";
import { MAX_MLS_STATE_BYTES, MAX_MLS_TREE_NODES } from "../limits.ts";
import { decodeExact, Reader, Writer } from "./_codec.ts";
import {
  CLIENT_CONFIG,
  ED25519_KEY_BYTES,
  type InnerState,
  membersOf,
  type MlsGroupState,
  prunePrivatePath,
  SUITE_IDS,
  suiteFromId,
  unwrapState,
  wrapState,
} from "./_state.ts";
import type { MlsSuiteName } from "./provider.ts";

/** Current version of the group state encoding (2: secret trees kept outside). */
export const GROUP_STATE_VERSION = 2;

/**
 * One secret-tree node of a version-2 group state, stored beside its bytes: node `node`
 * of the tree of epoch `epoch` (the current one or a past one kept for late messages).
 * SECRET: it holds the ratchet secrets of that node.
 */
export interface GroupStateSecret {
  /** The epoch whose secret tree holds the node. */
  readonly epoch: number;
  /** The node index in that tree. */
  readonly node: number;
  /** The node's encoding (its handshake and application ratchets). */
  readonly value: Uint8Array;
}

/**
 * What to store when a state replaces another (see {@link encodeGroupStateChange}): apply
 * `all` or `drop`, then `put`, and store `state` unless it is undefined (unchanged).
 */
export interface GroupStateChange {
  /** The new encoding (version 2), or undefined when only secrets changed. */
  readonly state: Uint8Array | undefined;
  /** Delete every stored secret of the state first (there is no base to change). */
  readonly all: boolean;
  /** Delete every stored secret of these epochs first. */
  readonly drop: number[];
  /** Secrets to store, each replacing the one of the same epoch and node. */
  readonly put: GroupStateSecret[];
}

const MAGIC = Uint8Array.of(0x51, 0x4d, 0x4c, 0x53); // "QMLS"
/** Past epochs a state may carry (the retention setting is lower; this is a sanity cap). */
const MAX_PAST_EPOCHS = 16;
/** Largest single field (a secret tree of 32,768 leaves is about 9 MiB). */
const MAX_FIELD_BYTES = 64 * 1024 * 1024;
/** Largest single encoded node (an X-Wing leaf is about 1.4 KiB). */
const MAX_NODE_BYTES = 64 * 1024;

class NodeTable {
  readonly ids = new Map<Node, number>();
  readonly nodes: Node[] = [];

  ref(n: Node | undefined): number {
    if (n === undefined) return 0;
    let id = this.ids.get(n);
    if (id === undefined) {
      this.nodes.push(n);
      id = this.nodes.length;
      this.ids.set(n, id);
    }
    return id;
  }
}

function collectTree(t: NodeTable, tree: RatchetTree): number[] {
  return tree.map((n) => t.ref(n));
}

interface PlannedState {
  cs: ClientState;
  tree: number[];
  past: { epoch: bigint; data: EpochReceiverData; tree: number[] }[];
}

function plan(t: NodeTable, cs: ClientState): PlannedState {
  const tree = collectTree(t, cs.ratchetTree);
  const epochs = [...cs.historicalReceiverData.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const past = epochs.map((epoch) => {
    const data = cs.historicalReceiverData.get(epoch)!;
    return { epoch, data, tree: collectTree(t, data.ratchetTree) };
  });
  return { cs, tree, past };
}

function writeTree(w: Writer, tree: number[]): void {
  w.u32(tree.length);
  const b = new Uint8Array(tree.length * 4);
  const v = new DataView(b.buffer);
  for (let i = 0; i < tree.length; i++) v.setUint32(i * 4, tree[i]!);
  w.raw(b);
}

const encodeSecretNode = encode(secretTreeNodeEncoder);

/** Secret tree as u32 count + one `bytes` per node (ts-mls's vector encoder recurses). */
function writeSecretTree(w: Writer, t: SecretTree): void {
  w.u32(t.length);
  for (const n of t) w.bytes(encodeSecretNode(n));
}

function readSecretTree(r: Reader): SecretTree {
  const n = r.u32();
  if (n > MAX_MLS_TREE_NODES || n * 4 > r.remaining) {
    throw new ValidationError("Group state secret tree is too large");
  }
  const out: SecretTree = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = decodeExact(decodeSecretTreeNode, r.bytes(MAX_NODE_BYTES), "Group state secret");
  }
  return out;
}

/** `external`: the secret trees are written as their width alone (version 2, current). */
function writeState(w: Writer, p: PlannedState, external: boolean): void {
  const cs = p.cs;
  const trees = (t: SecretTree) => external ? w.u32(t.length) : writeSecretTree(w, t);
  w.bytes(encode(groupContextEncoder)(cs.groupContext));
  w.bytes(encode(keyScheduleEncoder)(cs.keySchedule));
  trees(cs.secretTree);
  writeTree(w, p.tree);
  w.bytes(encode(privateKeyPathEncoder)(cs.privatePath));
  w.bytes(cs.signaturePrivateKey);
  w.bytes(encode(unappliedProposalsEncoder)(cs.unappliedProposals));
  w.bytes(cs.confirmationTag);
  w.u16(p.past.length);
  for (const e of p.past) {
    w.u64(e.epoch);
    w.bytes(e.data.resumptionPsk);
    trees(e.data.secretTree);
    writeTree(w, e.tree);
    w.bytes(e.data.senderDataSecret);
    w.bytes(encode(groupContextEncoder)(e.data.groupContext));
  }
  w.bytes(encode(groupActiveStateEncoder)(cs.groupActiveState));
}

/**
 * Serialize a group state (including a pending commit) as one self-contained value
 * (version 1: every secret tree inside). The client store keeps version 2 instead (see
 * {@link encodeGroupStateChange}).
 *
 * @returns versioned bytes; SECRET (they hold the group's keys and our identity key)
 */
export function encodeGroupState(state: MlsGroupState): Uint8Array {
  return encodeVersion(unwrapState(state), 1);
}

function encodeVersion(s: InnerState, version: 1 | 2): Uint8Array {
  const t = new NodeTable();
  const cur = plan(t, s.current);
  const pend = s.pending === undefined ? undefined : plan(t, s.pending.state);
  const w = new Writer().raw(MAGIC).u8(version).u16(SUITE_IDS[s.suite]);
  w.u32(t.nodes.length);
  for (const n of t.nodes) w.bytes(encode(nodeEncoder)(n));
  writeState(w, cur, version === 2);
  if (pend === undefined) {
    w.u8(0);
  } else {
    w.u8(1);
    writeState(w, pend, false);
  }
  return w.finish();
}

/** The secret trees of a state's current epoch and of its past epochs, by epoch. */
function secretTrees(cs: ClientState): Map<number, SecretTree> {
  const out = new Map<number, SecretTree>([[Number(cs.groupContext.epoch), cs.secretTree]]);
  for (const [e, d] of cs.historicalReceiverData) out.set(Number(e), d.secretTree);
  return out;
}

function secretsOf(epoch: number, tree: SecretTree, only?: SecretTree): GroupStateSecret[] {
  const out: GroupStateSecret[] = [];
  for (let i = 0; i < tree.length; i++) {
    if (only !== undefined && only[i] === tree[i]) continue;
    out.push({ epoch, node: i, value: encodeSecretNode(tree[i]!) });
  }
  return out;
}

/** True when two states differ in nothing but their secret trees (compared by identity). */
function sameButSecrets(a: InnerState, b: InnerState): boolean {
  if (a.suite !== b.suite || a.pending?.state !== b.pending?.state) return false;
  const x = a.current as unknown as Record<string, unknown>;
  const y = b.current as unknown as Record<string, unknown>;
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  for (const k of keys) {
    if (k === "secretTree" || k === "historicalReceiverData") continue;
    if (x[k] !== y[k]) return false;
  }
  const hx = a.current.historicalReceiverData;
  const hy = b.current.historicalReceiverData;
  if (hx.size !== hy.size) return false;
  for (const [e, d] of hx) {
    const o = hy.get(e);
    if (
      o === undefined || o.ratchetTree !== d.ratchetTree || o.groupContext !== d.groupContext ||
      o.resumptionPsk !== d.resumptionPsk || o.senderDataSecret !== d.senderDataSecret
    ) return false;
  }
  return true;
}

/**
 * What to store so that the stored form of `base` (its version-2 bytes and secrets)
 * becomes `next`'s: only the secret-tree nodes that are not the same objects, the epochs
 * gone, and the bytes only when more than the secret trees changed. Without `base` (or
 * when the stored form is not version 2): everything, replacing all stored secrets.
 * Comparing by identity is exact because states are immutable values: an operation
 * copies what it changes. An application message sent or received changes one node.
 *
 * @returns SECRET values (the bytes hold the group's keys, the secrets its ratchets)
 */
export function encodeGroupStateChange(
  next: MlsGroupState,
  base?: MlsGroupState,
): GroupStateChange {
  const n = unwrapState(next);
  const trees = secretTrees(n.current);
  if (base === undefined) {
    const put = [...trees].flatMap(([e, t]) => secretsOf(e, t));
    return { state: encodeVersion(n, 2), all: true, drop: [], put };
  }
  const b = unwrapState(base);
  const before = secretTrees(b.current);
  const drop: number[] = [];
  const put: GroupStateSecret[] = [];
  for (const [e, t] of trees) {
    const old = before.get(e);
    if (old !== undefined && old.length === t.length) {
      put.push(...secretsOf(e, t, old));
      continue;
    }
    if (old !== undefined) drop.push(e);
    put.push(...secretsOf(e, t));
  }
  for (const e of before.keys()) if (!trees.has(e)) drop.push(e);
  const state = sameButSecrets(n, b) ? undefined : encodeVersion(n, 2);
  return { state, all: false, drop, put };
}

function readTree(r: Reader, nodes: Node[]): RatchetTree {
  const width = r.u32();
  if (width > MAX_MLS_TREE_NODES) throw new ValidationError("Group state tree is too large");
  // A complete tree has 2^k - 1 nodes.
  if (width === 0 || ((width + 1) & width) !== 0) {
    throw new ValidationError("Group state tree has a bad width");
  }
  const raw = r.raw(width * 4);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tree: RatchetTree = new Array(width);
  for (let i = 0; i < width; i++) {
    const id = v.getUint32(i * 4);
    if (id === 0) {
      tree[i] = undefined;
      continue;
    }
    const n = nodes[id - 1];
    if (n === undefined) throw new ValidationError("Group state tree refers to a missing node");
    if ((n.nodeType === "leaf") !== (i % 2 === 0)) {
      throw new ValidationError("Group state tree has a node in the wrong place");
    }
    tree[i] = n;
  }
  return tree;
}

/** Where the secret trees of a version-2 state are: epoch → node → encoded node. */
type ExternalSecrets = Map<number, Map<number, Uint8Array>>;

function readExternalTree(r: Reader, secrets: ExternalSecrets, epoch: bigint): SecretTree {
  const width = r.u32();
  if (width > MAX_MLS_TREE_NODES) throw new ValidationError("Group state secret tree is too large");
  const stored = secrets.get(Number(epoch));
  if (stored === undefined || stored.size !== width) {
    throw new ValidationError("Group state secrets do not match its tree");
  }
  secrets.delete(Number(epoch));
  const out: SecretTree = new Array(width);
  for (let i = 0; i < width; i++) {
    const v = stored.get(i);
    if (v === undefined) throw new ValidationError("Group state secrets do not match its tree");
    out[i] = decodeExact(decodeSecretTreeNode, v.slice(), "Group state secret");
  }
  return out;
}

function readState(
  r: Reader,
  nodes: Node[],
  suite: MlsSuiteName,
  secrets?: ExternalSecrets,
): ClientState {
  const f = (_what: string) => r.bytes(MAX_FIELD_BYTES).slice();
  const groupContext = decodeExact(decodeGroupContext, f("context"), "Group state context");
  const keySchedule = decodeExact(decodeKeySchedule, f("keys"), "Group state key schedule");
  const trees = (epoch: bigint) =>
    secrets === undefined ? readSecretTree(r) : readExternalTree(r, secrets, epoch);
  const secretTree = trees(groupContext.epoch);
  const ratchetTree = readTree(r, nodes);
  const privatePath = decodeExact(decodePrivateKeyPath, f("path"), "Group state private path");
  for (const k of Object.keys(privatePath.privateKeys)) {
    const i = Number(k);
    if (!Number.isSafeInteger(i) || i < 0) {
      throw new ValidationError("Group state has a bad path key");
    }
  }
  const signaturePrivateKey = f("sig");
  const unappliedProposals = decodeExact(
    decodeUnappliedProposals,
    f("proposals"),
    "Group state proposals",
  );
  const confirmationTag = f("tag");
  const pastCount = r.u16();
  if (pastCount > MAX_PAST_EPOCHS) throw new ValidationError("Group state has too many epochs");
  const historicalReceiverData = new Map<bigint, EpochReceiverData>();
  let last = -1n;
  for (let i = 0; i < pastCount; i++) {
    const epoch = r.u64();
    if (epoch <= last || epoch >= groupContext.epoch) {
      throw new ValidationError("Group state past epochs are out of order");
    }
    last = epoch;
    const resumptionPsk = f("psk");
    const st = trees(epoch);
    const rt = readTree(r, nodes);
    const senderDataSecret = f("sd");
    const gc = decodeExact(decodeGroupContext, f("context"), "Group state context");
    if (gc.epoch !== epoch || gc.cipherSuite !== suite || st.length !== rt.length) {
      throw new ValidationError("Group state past epoch is inconsistent");
    }
    historicalReceiverData.set(epoch, {
      resumptionPsk,
      secretTree: st,
      ratchetTree: rt,
      senderDataSecret,
      groupContext: gc,
    });
  }
  const groupActiveState = decodeExact(
    decodeGroupActiveState,
    f("active"),
    "Group state activity",
  );
  // States saved before the ts-mls workaround may hold keys of nodes the tree lost: drop
  // them here (prunePrivatePath) instead of refusing the state, so such accounts heal.
  const cs: ClientState = prunePrivatePath({
    groupContext,
    keySchedule,
    secretTree,
    ratchetTree,
    privatePath,
    signaturePrivateKey,
    unappliedProposals,
    confirmationTag,
    historicalReceiverData,
    groupActiveState,
    clientConfig: CLIENT_CONFIG,
  });
  checkState(cs, suite);
  return cs;
}

function checkState(cs: ClientState, suite: MlsSuiteName): void {
  const bad = (what: string) => new ValidationError(`Group state is inconsistent: ${what}`);
  if (cs.groupContext.cipherSuite !== suite) throw bad("suite");
  if (cs.groupContext.version !== "mls10") throw bad("version");
  if (cs.secretTree.length !== cs.ratchetTree.length) throw bad("secret tree width");
  if (cs.signaturePrivateKey.length !== ED25519_KEY_BYTES) throw bad("signature key");
  const own = cs.privatePath.leafIndex;
  if (!Number.isSafeInteger(own) || own < 0 || own * 2 >= cs.ratchetTree.length) {
    throw bad("own leaf");
  }
  if (
    cs.groupActiveState.kind !== "removedFromGroup" &&
    cs.ratchetTree[own * 2]?.nodeType !== "leaf"
  ) {
    throw bad("own leaf");
  }
  membersOf(cs); // every leaf must carry a valid qpq credential
}

/**
 * The cipher suite recorded in the header of an encoded group state, without decoding the
 * rest: a client whose state for a group cannot be read still knows which suite to ask
 * the group to re-add it with. Undefined when the header itself is not readable.
 */
export function peekGroupStateSuite(bytes: Uint8Array): MlsSuiteName | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.length < 7) return undefined;
  if (MAGIC.some((b, i) => bytes[i] !== b)) return undefined;
  return suiteFromId((bytes[5]! << 8) | bytes[6]!);
}

/**
 * Decode bytes from {@link encodeGroupState} (version 1), or the bytes and secrets of a
 * version-2 state stored by {@link encodeGroupStateChange} (every secret of the state,
 * none more). The input is copied, so the caller may zero it afterwards.
 *
 * @throws ValidationError (code "unsupported_version" for an unknown version) on any
 *   malformed, truncated, oversized or inconsistent input
 */
export function decodeGroupState(
  bytes: Uint8Array,
  secrets: readonly GroupStateSecret[] = [],
): MlsGroupState {
  if (!(bytes instanceof Uint8Array)) throw new ValidationError("Group state is not bytes");
  if (bytes.length > MAX_MLS_STATE_BYTES) {
    throw new ValidationError("Group state is too large", { code: "too_large" });
  }
  const r = new Reader(bytes.slice(), "Group state");
  const magic = r.raw(4);
  if (magic.some((b, i) => b !== MAGIC[i])) throw new ValidationError("Not a qpq group state");
  const version = r.u8();
  if (version !== 1 && version !== 2) {
    throw new ValidationError("Group state version is not supported", {
      code: "unsupported_version",
    });
  }
  let external: ExternalSecrets | undefined;
  if (version === 2) {
    external = new Map();
    for (const x of secrets) {
      const byNode = external.get(x.epoch) ?? new Map<number, Uint8Array>();
      if (byNode.has(x.node) || !(x.value instanceof Uint8Array)) {
        throw new ValidationError("Group state secrets do not match its tree");
      }
      byNode.set(x.node, x.value);
      external.set(x.epoch, byNode);
    }
  } else if (secrets.length > 0) {
    throw new ValidationError("Group state secrets do not match its tree");
  }
  const suite = suiteFromId(r.u16());
  if (suite === undefined) throw new ValidationError("Group state has an unknown suite");
  const count = r.u32();
  // Each node takes at least 5 bytes, which bounds `count` by the input size.
  if (count > MAX_MLS_TREE_NODES * (MAX_PAST_EPOCHS + 2) || count * 5 > r.remaining) {
    throw new ValidationError("Group state has too many nodes");
  }
  const nodes: Node[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push(decodeExact(decodeNode, r.bytes(MAX_NODE_BYTES), "Group state node"));
  }
  try {
    const current = readState(r, nodes, suite, external);
    if (external !== undefined && external.size > 0) {
      throw new ValidationError("Group state secrets do not match its tree");
    }
    const flag = r.u8();
    if (flag > 1) throw new ValidationError("Group state has a bad pending flag");
    let inner: InnerState;
    if (flag === 1) {
      const p = readState(r, nodes, suite);
      if (p.groupContext.epoch !== current.groupContext.epoch + 1n) {
        throw new ValidationError("Group state pending commit has the wrong epoch");
      }
      inner = { suite, current, pending: { state: p, consumed: [] } };
    } else {
      inner = { suite, current, pending: undefined };
    }
    r.end();
    return wrapState(inner);
  } catch (e) {
    if (e instanceof ValidationError) throw e;
    throw new ValidationError("Group state is corrupt", { cause: e });
  }
}
