/**
 * Joining from a Welcome when ts-mls 1.6.4 refuses a valid ratchet tree.
 *
 * ts-mls bug (to report upstream): `validateRatchetTree` (clientState.js) checks that every
 * non-blank node on the direct path of an unmerged leaf L of a parent P has EXACTLY P's
 * unmerged_leaves list, over L's whole direct path. RFC 9420 §7.9.2 asks less: every
 * non-blank node strictly between L and P lists L. An ordinary history trips it:
 *
 * ```
 * 5 members, leaf 0 removed and refilled; c1 (leaf 4) commits an update: nodes 9, 11, 7 keyed
 * c2 (leaf 1) adds a member into blank leaf 5: nodes 9 and 11 list [5] as unmerged, and
 * c2's UpdatePath re-keys 7 (its common ancestor with leaf 5): 7 lists []
 * ─► the tree is valid, yet ts-mls's joinGroup throws "non-blank intermediate node must
 *    list leaf node in its unmerged_leaves" and the new member can never join.
 * ```
 * (found by the simulation, seed 1; reproduced with ts-mls's own default provider in
 * tests/mls_lifecycle_test.ts).
 *
 * {@link joinGroupRfc} performs the join as ts-mls does, built from its exported parts, with
 * the tree check of RFC 9420 §7.9.2 (and every other check of `validateRatchetTree`: leaf
 * signatures and credentials, unique keys, credential support, parent hashes, tree hash).
 * group.ts uses it only after ts-mls's own `joinGroup` failed with exactly that error.
 *
 * @module
 */
import type {
  CiphersuiteImpl,
  ClientConfig,
  ClientState,
  GroupContext,
  KeyPackage,
  PrivateKeyPackage,
  RatchetTree,
  Welcome,
} from "ts-mls";
import { emptyPskIndex } from "ts-mls";
import { extensionsSupportedByCapabilities } from "ts-mls/extension.js";
import {
  ratchetTreeFromExtension,
  verifyGroupInfoConfirmationTag,
  verifyGroupInfoSignature,
} from "ts-mls/groupInfo.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { deriveKeySchedule } from "ts-mls/keySchedule.js";
import { verifyLeafNodeSignature, verifyLeafNodeSignatureKeyPackage } from "ts-mls/leafNode.js";
import { verifyParentHashes } from "ts-mls/parentHash.js";
import { pathToRoot } from "ts-mls/pathSecrets.js";
import { mergePrivateKeyPaths, toPrivateKeyPath } from "ts-mls/privateKeyPath.js";
import { accumulatePskSecret } from "ts-mls/pskIndex.js";
import { findLeafIndex } from "ts-mls/ratchetTree.js";
import { createSecretTree } from "ts-mls/secretTree.js";
import { treeHashRoot } from "ts-mls/treeHash.js";
import {
  directPath,
  leafToNodeIndex,
  leafWidth,
  toLeafIndex,
  toNodeIndex,
} from "ts-mls/treemath.js";
import { firstCommonAncestor } from "ts-mls/updatePath.js";
import { decryptGroupInfo, decryptGroupSecrets } from "ts-mls/welcome.js";
import { constantTimeEqual, toHex, zeroize } from "../bytes.ts";
import { CryptoError, ValidationError } from "../errors.ts";

/** The message of ts-mls's over-strict unmerged-leaves check (see the module doc). */
export const TS_MLS_UNMERGED_BUG = "non-blank intermediate node must list leaf node";

/**
 * RFC 9420 §7.9.2 and §12.4.3.1 checks of a received ratchet tree. Returns the first
 * problem, or undefined when the tree is valid for `groupContext`.
 */
export async function validateTreeRfc(
  tree: RatchetTree,
  groupContext: GroupContext,
  config: ClientConfig,
  cs: CiphersuiteImpl,
): Promise<string | undefined> {
  const hpkeKeys = new Set<string>();
  const signatureKeys = new Set<string>();
  const credentialTypes = new Set<string>();
  const width = leafWidth(tree.length);
  if (groupContext.extensions.some((e) => e.extensionType === "required_capabilities")) {
    return "Group requires capabilities qpq does not check"; // qpq groups never set it
  }
  for (const [i, n] of tree.entries()) {
    if (n === undefined) continue;
    const isLeafSlot = i % 2 === 0;
    if ((n.nodeType === "leaf") !== isLeafSlot) return "Ratchet tree is not structurally sound";
    if (n.nodeType === "leaf") {
      const leaf = n.leaf;
      const hk = toHex(leaf.hpkePublicKey);
      const sk = toHex(leaf.signaturePublicKey);
      if (hpkeKeys.has(hk)) return "HPKE keys are not unique";
      if (signatureKeys.has(sk)) return "Signature keys are not unique";
      hpkeKeys.add(hk);
      signatureKeys.add(sk);
      credentialTypes.add(leaf.credential.credentialType);
      const signed = leaf.leafNodeSource === "key_package"
        ? await verifyLeafNodeSignatureKeyPackage(leaf, cs.signature)
        : await verifyLeafNodeSignature(leaf, groupContext.groupId, i / 2, cs.signature);
      if (!signed) return "A leaf node signature does not verify";
      if (
        !(await config.authService.validateCredential(leaf.credential, leaf.signaturePublicKey))
      ) {
        return "A leaf node credential is not valid";
      }
      if (!extensionsSupportedByCapabilities(leaf.extensions, leaf.capabilities)) {
        return "A leaf node has an extension it does not list in its capabilities";
      }
      continue;
    }
    const hk = toHex(n.parent.hpkePublicKey);
    if (hpkeKeys.has(hk)) return "HPKE keys are not unique";
    hpkeKeys.add(hk);
    for (const unmerged of n.parent.unmergedLeaves) {
      const leafNode = leafToNodeIndex(toLeafIndex(unmerged));
      const path = directPath(leafNode, width);
      const at = path.indexOf(toNodeIndex(i));
      // an unmerged leaf must be a non-blank descendant …
      if (at < 0 || tree[leafNode]?.nodeType !== "leaf") {
        return "An unmerged leaf is not a non-blank descendant";
      }
      // … listed by every non-blank node strictly between it and this node
      for (const between of path.slice(0, at)) {
        const b = tree[between];
        if (b === undefined) continue;
        if (b.nodeType !== "parent" || !b.parent.unmergedLeaves.includes(unmerged)) {
          return "An intermediate node does not list an unmerged leaf below it";
        }
      }
    }
  }
  for (const n of tree) {
    if (n?.nodeType !== "leaf") continue;
    for (const t of credentialTypes) {
      if (!n.leaf.capabilities.credentials.includes(t as never)) {
        return "A member does not support another member's credential type";
      }
    }
  }
  if (!(await verifyParentHashes(tree, cs.hash))) return "Parent hashes do not verify";
  if (!constantTimeEqual(groupContext.treeHash, await treeHashRoot(tree, cs.hash))) {
    return "Tree hash does not match the group context";
  }
  return undefined;
}

/**
 * Leaf index of the member whose signature the Welcome's GroupInfo carries: the inviter.
 * Call only after a join with the same inputs succeeded (that join verified the signature
 * with that leaf's key, so the index is authenticated, unlike the server's `sender` field).
 *
 * @throws ValidationError when the Welcome does not decrypt
 */
export async function welcomeSignerLeaf(
  welcome: Welcome,
  keyPackage: KeyPackage,
  initPrivateKey: Uint8Array,
  cs: CiphersuiteImpl,
): Promise<number> {
  const ref = await makeKeyPackageRef(keyPackage, cs.hash);
  const initKey = await cs.hpke.importPrivateKey(initPrivateKey);
  const secrets = await decryptGroupSecrets(initKey, ref, welcome, cs.hpke);
  if (secrets === undefined) throw new ValidationError("Welcome secrets do not decrypt");
  const [pskSecret] = await accumulatePskSecret([], emptyPskIndex, cs, new Uint8Array(cs.kdf.size));
  const gi = await decryptGroupInfo(welcome, secrets.joinerSecret, pskSecret, cs);
  zeroize(secrets.joinerSecret);
  if (gi === undefined) throw new ValidationError("Welcome group info does not decrypt");
  return gi.signer;
}

/**
 * Join from a Welcome as ts-mls's `joinGroup` does (no PSKs, no resumption: qpq uses
 * neither), with {@link validateTreeRfc} as the tree check.
 *
 * @throws ValidationError or CryptoError when the Welcome is not valid for us
 */
export async function joinGroupRfc(
  welcome: Welcome,
  keyPackage: KeyPackage,
  privateKeys: PrivateKeyPackage,
  cs: CiphersuiteImpl,
  ratchetTree: RatchetTree | undefined,
  config: ClientConfig,
): Promise<ClientState> {
  const ref = await makeKeyPackageRef(keyPackage, cs.hash);
  const initKey = await cs.hpke.importPrivateKey(privateKeys.initPrivateKey);
  const secrets = await decryptGroupSecrets(initKey, ref, welcome, cs.hpke);
  if (secrets === undefined) throw new ValidationError("Welcome secrets do not decrypt");
  if (secrets.psks.length > 0) throw new ValidationError("Welcome asks for PSKs qpq does not use");
  const [pskSecret] = await accumulatePskSecret([], emptyPskIndex, cs, new Uint8Array(cs.kdf.size));
  const gi = await decryptGroupInfo(welcome, secrets.joinerSecret, pskSecret, cs);
  if (gi === undefined) throw new ValidationError("Welcome group info does not decrypt");
  if (gi.groupContext.cipherSuite !== keyPackage.cipherSuite) {
    throw new ValidationError("Welcome is for another cipher suite than our KeyPackage");
  }
  if (
    !extensionsSupportedByCapabilities(gi.groupContext.extensions, keyPackage.leafNode.capabilities)
  ) {
    throw new ValidationError("Group uses extensions our KeyPackage does not support");
  }
  const tree = ratchetTreeFromExtension(gi) ?? ratchetTree;
  if (tree === undefined) throw new ValidationError("Welcome carries no ratchet tree");
  const signer = tree[leafToNodeIndex(toLeafIndex(gi.signer))];
  if (signer?.nodeType !== "leaf") throw new ValidationError("Welcome signer is not a member");
  if (
    !(await config.authService.validateCredential(
      signer.leaf.credential,
      signer.leaf.signaturePublicKey,
    ))
  ) {
    throw new ValidationError("Welcome signer's credential is not valid");
  }
  if (!(await verifyGroupInfoSignature(gi, signer.leaf.signaturePublicKey, cs.signature))) {
    throw new CryptoError("Welcome group info signature does not verify");
  }
  const bad = await validateTreeRfc(tree, gi.groupContext, config, cs);
  if (bad !== undefined) throw new ValidationError(`Welcome ratchet tree: ${bad}`);
  const own = findLeafIndex(tree, keyPackage.leafNode);
  if (own === undefined) throw new ValidationError("Welcome tree does not hold our leaf");
  const leafKeys = {
    leafIndex: own,
    privateKeys: { [leafToNodeIndex(own)]: privateKeys.hpkePrivateKey },
  };
  const ancestor = firstCommonAncestor(tree, own, toLeafIndex(gi.signer));
  const privatePath = secrets.pathSecret === undefined ? leafKeys : mergePrivateKeyPaths(
    await toPrivateKeyPath(
      await pathToRoot(tree, ancestor, secrets.pathSecret, cs.kdf),
      own,
      cs,
    ),
    leafKeys,
  );
  const [keySchedule, encryptionSecret] = await deriveKeySchedule(
    secrets.joinerSecret,
    pskSecret,
    gi.groupContext,
    cs.kdf,
  );
  if (!(await verifyGroupInfoConfirmationTag(gi, secrets.joinerSecret, pskSecret, cs))) {
    throw new CryptoError("Welcome confirmation tag does not verify");
  }
  const secretTree = await createSecretTree(leafWidth(tree.length), encryptionSecret, cs.kdf);
  zeroize(encryptionSecret, secrets.joinerSecret);
  return {
    groupContext: gi.groupContext,
    ratchetTree: tree,
    privatePath,
    signaturePrivateKey: privateKeys.signaturePrivateKey,
    confirmationTag: gi.confirmationTag,
    unappliedProposals: {},
    keySchedule,
    secretTree,
    historicalReceiverData: new Map(),
    groupActiveState: { kind: "active" },
    clientConfig: config,
  };
}
