/**
 * Runs the MLS interop test vectors (github.com/mlswg/mls-implementations, format in
 * `README-upstream.md` beside the files) through ts-mls with either crypto provider.
 *
 * Pure: the caller reads and parses each JSON file and passes the parsed array in; this
 * module does no I/O. Every case of a file is run (or skipped as unsupported when ts-mls
 * has no implementation of its cipher suite) and every mismatch is collected, so one run
 * reports the whole picture.
 *
 * ```
 * vector file JSON -> runVectorFile(file, cases, { provider }) -> VectorReport
 *                      per case: suite supported? -> checks -> passed | failed(reason)
 * ```
 *
 * @module
 */

import {
  type CiphersuiteImpl,
  defaultCryptoProvider,
  getCiphersuiteImpl,
  type GroupContext,
  type PrivateKeyPackage,
} from "ts-mls";
import {
  type CiphersuiteId,
  getCiphersuiteFromId,
  getCiphersuiteNameFromId,
} from "ts-mls/crypto/ciphersuite.js";
import { refhash } from "ts-mls/crypto/hash.js";
import { deriveSecret, deriveTreeSecret, expandWithLabel } from "ts-mls/crypto/kdf.js";
import { decryptWithLabel, encryptWithLabel } from "ts-mls/crypto/hpke.js";
import { signWithLabel, verifyWithLabel } from "ts-mls/crypto/signature.js";
import {
  leafToNodeIndex,
  left,
  nodeToLeafIndex,
  nodeWidth,
  parent,
  right,
  root,
  sibling,
  toLeafIndex,
  toNodeIndex,
} from "ts-mls/treemath.js";
import { determineLength } from "ts-mls/codec/variableLength.js";
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import { decodeCommit, encodeCommit } from "ts-mls/commit.js";
import {
  decodeAdd,
  decodeExternalInit,
  decodeGroupContextExtensions,
  decodeProposal,
  decodePSK,
  decodeReinit,
  decodeRemove,
  decodeUpdate,
  encodeAdd,
  encodeExternalInit,
  encodeGroupContextExtensions,
  encodeProposal,
  encodePSK,
  encodeReinit,
  encodeRemove,
  encodeUpdate,
} from "ts-mls/proposal.js";
import {
  addLeafNode,
  decodeRatchetTree,
  encodeRatchetTree,
  getHpkePublicKey,
  type RatchetTree,
  removeLeafNode,
  resolution,
  updateLeafNode,
} from "ts-mls/ratchetTree.js";
import { decodeGroupSecrets, encodeGroupSecrets } from "ts-mls/groupSecrets.js";
import { expandSenderDataKey, expandSenderDataNonce } from "ts-mls/sender.js";
import { createSecretTree, deriveKey, deriveNonce, ratchetUntil } from "ts-mls/secretTree.js";
import { encodeGroupContext } from "ts-mls/groupContext.js";
import { initializeEpoch, mlsExporter } from "ts-mls/keySchedule.js";
import { computePskSecret, type PreSharedKeyID } from "ts-mls/presharedkey.js";
import { decodeAuthenticatedContent } from "ts-mls/authenticatedContent.js";
import { createConfirmedHash, createInterimHash } from "ts-mls/transcriptHash.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decryptGroupInfo, decryptGroupSecrets } from "ts-mls/welcome.js";
import { verifyGroupInfoConfirmationTag, verifyGroupInfoSignature } from "ts-mls/groupInfo.js";
import { treeHash, treeHashRoot } from "ts-mls/treeHash.js";
import { verifyParentHashes } from "ts-mls/parentHash.js";
import { verifyLeafNodeSignature } from "ts-mls/leafNode.js";
import { applyUpdatePath, createUpdatePath, decodeUpdatePath } from "ts-mls/updatePath.js";
import { applyUpdatePathSecret } from "ts-mls/createCommit.js";
import { toPrivateKeyPath } from "ts-mls/privateKeyPath.js";
import { getCommitSecret } from "ts-mls/pathSecrets.js";
import { protectApplicationData, unprotectPrivateMessage } from "ts-mls/messageProtection.js";
import { protectProposalPublic, unprotectPublicMessage } from "ts-mls/messageProtectionPublic.js";
import { defaultKeyRetentionConfig } from "ts-mls/keyRetentionConfig.js";
import { defaultPaddingConfig } from "ts-mls/paddingConfig.js";
import { joinGroup, makePskIndex } from "ts-mls/clientState.js";
import { processPrivateMessage, processPublicMessage } from "ts-mls/processMessages.js";
import { bytesToBase64 } from "ts-mls/util/byteArray.js";
import { constantTimeEqual, fromHex, toHex } from "../../src/bytes.ts";
import { qpqCryptoProvider } from "../../src/mls/provider.ts";

/** The 16 vector files of the MLS interop suite, by base name. */
export const VECTOR_FILES = [
  "tree-math",
  "crypto-basics",
  "secret-tree",
  "message-protection",
  "key-schedule",
  "psk_secret",
  "transcript-hashes",
  "welcome",
  "tree-operations",
  "tree-validation",
  "treekem",
  "messages",
  "deserialization",
  "passive-client-welcome",
  "passive-client-handling-commit",
  "passive-client-random",
] as const;

/** One of {@link VECTOR_FILES}. */
export type VectorFileName = typeof VECTOR_FILES[number];

/** Which ts-mls crypto provider runs the vectors. */
export type VectorProvider = "qpq" | "default";

/** Options of {@link runVectorFile}. */
export interface RunVectorsOptions {
  /** Crypto provider; default "qpq". */
  provider?: VectorProvider;
  /** Run only the cases whose index this returns true for (the rest count as skipped). */
  select?: (index: number) => boolean;
}

/** What one vector file gave. */
export interface VectorReport {
  file: VectorFileName;
  provider: VectorProvider;
  /** Cases in the file. */
  total: number;
  /** Cases run and passed. */
  passed: number;
  /** Cases run and failed; see `failures`. */
  failed: number;
  /** Cases whose cipher suite ts-mls cannot run. */
  unsupported: number;
  /** Cases left out by `select`. */
  skipped: number;
  /** Distinct cipher suite ids counted in `unsupported`. */
  unsupportedSuites: number[];
  /** Cipher suite ids of the cases that ran. */
  suitesRun: number[];
  /** One line per failed case: index, suite and the first mismatch. */
  failures: string[];
}

class Mismatch extends Error {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Mismatch(what);
}

function eqBytes(actual: Uint8Array, expectedHex: string, what: string): void {
  const expected = fromHex(expectedHex);
  if (!constantTimeEqual(actual, expected)) {
    throw new Mismatch(`${what}: got ${toHex(actual)}, want ${expectedHex}`);
  }
}

function hex(s: string): Uint8Array {
  return fromHex(s);
}

function decoded<T>(r: [T, number] | undefined, what: string): T {
  if (r === undefined) throw new Mismatch(`Cannot decode ${what}`);
  return r[0];
}

/** Decode the full input and re-encode it to the same bytes. */
function roundTrip<T>(
  bytesHex: string,
  dec: (b: Uint8Array, off: number) => [T, number] | undefined,
  enc: (t: T) => Uint8Array,
  what: string,
): T {
  const input = hex(bytesHex);
  const r = dec(input, 0);
  if (r === undefined) throw new Mismatch(`Cannot decode ${what}`);
  check(r[1] === input.length, `${what}: decoder consumed ${r[1]} of ${input.length} bytes`);
  eqBytes(enc(r[0]), bytesHex, `${what} re-encoding`);
  return r[0];
}

const implCache = new Map<string, Promise<CiphersuiteImpl | undefined>>();

/** The impl for a suite id, or undefined when ts-mls cannot run that suite here. */
function implFor(id: number, provider: VectorProvider): Promise<CiphersuiteImpl | undefined> {
  const key = `${provider}:${id}`;
  let p = implCache.get(key);
  if (p === undefined) {
    const cs = getCiphersuiteFromId(id as CiphersuiteId);
    p = cs === undefined
      ? Promise.resolve(undefined)
      : getCiphersuiteImpl(cs, provider === "qpq" ? qpqCryptoProvider : defaultCryptoProvider)
        .catch(() => undefined);
    implCache.set(key, p);
  }
  return p;
}

function groupContext(
  suite: number,
  groupId: string,
  epoch: number | bigint,
  treeHashHex: string | Uint8Array,
  confirmedHex: string,
): GroupContext {
  return {
    version: "mls10",
    cipherSuite: getCiphersuiteNameFromId(suite as CiphersuiteId),
    groupId: hex(groupId),
    epoch: BigInt(epoch),
    treeHash: typeof treeHashHex === "string" ? hex(treeHashHex) : treeHashHex,
    confirmedTranscriptHash: hex(confirmedHex),
    extensions: [],
  };
}

/** Seal to `pub` and open with `priv`: true when the two are one key pair. */
async function hpkePairMatches(
  pub: Uint8Array,
  priv: Uint8Array,
  impl: CiphersuiteImpl,
): Promise<boolean> {
  const pt = impl.rng.randomBytes(16);
  const info = new TextEncoder().encode("qpq key pair check");
  const { ct, enc } = await impl.hpke.seal(await impl.hpke.importPublicKey(pub), pt, info);
  try {
    const out = await impl.hpke.open(await impl.hpke.importPrivateKey(priv), enc, ct, info);
    return constantTimeEqual(out, pt);
  } catch {
    return false;
  }
}

async function signaturePairMatches(
  pub: Uint8Array,
  priv: Uint8Array,
  impl: CiphersuiteImpl,
): Promise<boolean> {
  const msg = impl.rng.randomBytes(32);
  return impl.signature.verify(pub, msg, await impl.signature.sign(priv, msg));
}

// ---------------------------------------------------------------------------------------
// Vector shapes (only the fields read here).

interface TreeMathCase {
  n_leaves: number;
  n_nodes: number;
  root: number;
  left: (number | null)[];
  right: (number | null)[];
  parent: (number | null)[];
  sibling: (number | null)[];
}

interface CryptoBasicsCase {
  cipher_suite: number;
  ref_hash: { label: string; value: string; out: string };
  expand_with_label: {
    secret: string;
    label: string;
    context: string;
    length: number;
    out: string;
  };
  derive_secret: { secret: string; label: string; out: string };
  derive_tree_secret: {
    secret: string;
    label: string;
    generation: number;
    length: number;
    out: string;
  };
  sign_with_label: {
    priv: string;
    pub: string;
    content: string;
    label: string;
    signature: string;
  };
  encrypt_with_label: {
    priv: string;
    pub: string;
    label: string;
    context: string;
    plaintext: string;
    kem_output: string;
    ciphertext: string;
  };
}

interface SecretTreeCase {
  cipher_suite: number;
  sender_data: { sender_data_secret: string; ciphertext: string; key: string; nonce: string };
  encryption_secret: string;
  leaves: {
    generation: number;
    handshake_key: string;
    handshake_nonce: string;
    application_key: string;
    application_nonce: string;
  }[][];
}

interface MessageProtectionCase {
  cipher_suite: number;
  group_id: string;
  epoch: number;
  tree_hash: string;
  confirmed_transcript_hash: string;
  signature_priv: string;
  signature_pub: string;
  encryption_secret: string;
  sender_data_secret: string;
  membership_key: string;
  proposal: string;
  proposal_priv: string;
  proposal_pub: string;
  commit: string;
  commit_priv: string;
  commit_pub: string;
  application: string;
  application_priv: string;
}

interface KeyScheduleCase {
  cipher_suite: number;
  group_id: string;
  initial_init_secret: string;
  epochs: {
    tree_hash: string;
    commit_secret: string;
    psk_secret: string;
    confirmed_transcript_hash: string;
    group_context: string;
    joiner_secret: string;
    welcome_secret: string;
    init_secret: string;
    sender_data_secret: string;
    encryption_secret: string;
    exporter_secret: string;
    epoch_authenticator: string;
    external_secret: string;
    confirmation_key: string;
    membership_key: string;
    resumption_psk: string;
    external_pub: string;
    exporter: { label: string; context: string; length: number; secret: string };
  }[];
}

interface PskSecretCase {
  cipher_suite: number;
  psks: { psk_id: string; psk: string; psk_nonce: string }[];
  psk_secret: string;
}

interface TranscriptCase {
  cipher_suite: number;
  confirmation_key: string;
  authenticated_content: string;
  interim_transcript_hash_before: string;
  confirmed_transcript_hash_after: string;
  interim_transcript_hash_after: string;
}

interface WelcomeCase {
  cipher_suite: number;
  init_priv: string;
  signer_pub: string;
  key_package: string;
  welcome: string;
}

interface TreeOperationsCase {
  cipher_suite: number;
  tree_before: string;
  proposal: string;
  proposal_sender: number;
  tree_hash_before: string;
  tree_after: string;
  tree_hash_after: string;
}

interface TreeValidationCase {
  cipher_suite: number;
  tree: string;
  group_id: string;
  resolutions: number[][];
  tree_hashes: string[];
}

interface TreeKemCase {
  cipher_suite: number;
  group_id: string;
  epoch: number;
  confirmed_transcript_hash: string;
  ratchet_tree: string;
  leaves_private: {
    index: number;
    encryption_priv: string;
    signature_priv: string;
    path_secrets: { node: number; path_secret: string }[];
  }[];
  update_paths: {
    sender: number;
    update_path: string;
    path_secrets: (string | null)[];
    commit_secret: string;
    tree_hash_after: string;
  }[];
}

type MessagesCase = Record<string, string>;

interface DeserializationCase {
  vlbytes_header: string;
  length: number;
}

interface PassiveCase {
  cipher_suite: number;
  external_psks: { psk_id: string; psk: string }[];
  key_package: string;
  signature_priv: string;
  encryption_priv: string;
  init_priv: string;
  welcome: string;
  ratchet_tree: string | null;
  initial_epoch_authenticator: string;
  epochs: { proposals: string[]; commit: string; epoch_authenticator: string }[];
}

// ---------------------------------------------------------------------------------------
// One function per file. Each throws Mismatch (or whatever ts-mls throws) on failure.

function treeMath(c: TreeMathCase): void {
  check(nodeWidth(c.n_leaves) === c.n_nodes, "n_nodes");
  check(root(c.n_leaves) === c.root, "root");
  for (let i = 0; i < c.n_nodes; i++) {
    const n = toNodeIndex(i);
    const isLeaf = i % 2 === 0;
    const l = c.left[i] ?? null;
    const r = c.right[i] ?? null;
    if (l === null) check(isLeaf, `left[${i}] is null but node is not a leaf`);
    else check(left(n) === l, `left[${i}]`);
    if (r === null) check(isLeaf, `right[${i}] is null but node is not a leaf`);
    else check(right(n) === r, `right[${i}]`);
    const p = c.parent[i] ?? null;
    if (p === null) check(i === c.root, `parent[${i}] is null but node is not the root`);
    else check(parent(n, c.n_leaves) === p, `parent[${i}]`);
    const s = c.sibling[i] ?? null;
    if (s === null) check(i === c.root, `sibling[${i}] is null but node is not the root`);
    else check(sibling(n, c.n_leaves) === s, `sibling[${i}]`);
  }
}

async function cryptoBasics(c: CryptoBasicsCase, impl: CiphersuiteImpl): Promise<void> {
  const r = c.ref_hash;
  eqBytes(await refhash(r.label, hex(r.value), impl.hash), r.out, "ref_hash");
  const e = c.expand_with_label;
  eqBytes(
    await expandWithLabel(hex(e.secret), e.label, hex(e.context), e.length, impl.kdf),
    e.out,
    "expand_with_label",
  );
  const d = c.derive_secret;
  eqBytes(await deriveSecret(hex(d.secret), d.label, impl.kdf), d.out, "derive_secret");
  const t = c.derive_tree_secret;
  eqBytes(
    await deriveTreeSecret(hex(t.secret), t.label, t.generation, t.length, impl.kdf),
    t.out,
    "derive_tree_secret",
  );
  const s = c.sign_with_label;
  check(
    await verifyWithLabel(hex(s.pub), s.label, hex(s.content), hex(s.signature), impl.signature),
    "sign_with_label: vector signature does not verify",
  );
  const ours = await signWithLabel(hex(s.priv), s.label, hex(s.content), impl.signature);
  check(
    await verifyWithLabel(hex(s.pub), s.label, hex(s.content), ours, impl.signature),
    "sign_with_label: own signature does not verify",
  );
  const x = c.encrypt_with_label;
  const priv = await impl.hpke.importPrivateKey(hex(x.priv));
  const pub = await impl.hpke.importPublicKey(hex(x.pub));
  eqBytes(
    await decryptWithLabel(
      priv,
      x.label,
      hex(x.context),
      hex(x.kem_output),
      hex(x.ciphertext),
      impl.hpke,
    ),
    x.plaintext,
    "encrypt_with_label: decrypt vector",
  );
  const sealed = await encryptWithLabel(pub, x.label, hex(x.context), hex(x.plaintext), impl.hpke);
  eqBytes(
    await decryptWithLabel(priv, x.label, hex(x.context), sealed.enc, sealed.ct, impl.hpke),
    x.plaintext,
    "encrypt_with_label: decrypt own",
  );
}

async function secretTree(c: SecretTreeCase, impl: CiphersuiteImpl): Promise<void> {
  const sd = c.sender_data;
  eqBytes(
    await expandSenderDataKey(impl, hex(sd.sender_data_secret), hex(sd.ciphertext)),
    sd.key,
    "sender_data key",
  );
  eqBytes(
    await expandSenderDataNonce(impl, hex(sd.sender_data_secret), hex(sd.ciphertext)),
    sd.nonce,
    "sender_data nonce",
  );
  const tree = await createSecretTree(c.leaves.length, hex(c.encryption_secret), impl.kdf);
  const config = { ...defaultKeyRetentionConfig, maximumForwardRatchetSteps: 1 << 20 };
  for (const [leaf, gens] of c.leaves.entries()) {
    const node = tree[leafToNodeIndex(toLeafIndex(leaf))];
    if (node === undefined) throw new Mismatch(`No secret tree node for leaf ${leaf}`);
    for (const g of gens) {
      for (const kind of ["handshake", "application"] as const) {
        const [s] = await ratchetUntil(node[kind], g.generation, config, impl.kdf);
        check(s.generation === g.generation, `${kind} generation`);
        eqBytes(
          await deriveKey(s.secret, s.generation, impl),
          g[`${kind}_key`],
          `leaf ${leaf} gen ${g.generation} ${kind}_key`,
        );
        eqBytes(
          await deriveNonce(s.secret, s.generation, impl),
          g[`${kind}_nonce`],
          `leaf ${leaf} gen ${g.generation} ${kind}_nonce`,
        );
      }
    }
  }
}

async function messageProtection(c: MessageProtectionCase, impl: CiphersuiteImpl): Promise<void> {
  const gc = groupContext(
    c.cipher_suite,
    c.group_id,
    c.epoch,
    c.tree_hash,
    c.confirmed_transcript_hash,
  );
  const sigPub = hex(c.signature_pub);
  const sigPriv = hex(c.signature_priv);
  const membershipKey = hex(c.membership_key);
  const senderDataSecret = hex(c.sender_data_secret);
  const retention = defaultKeyRetentionConfig;

  // Public messages from the vector.
  for (const [field, want] of [["proposal_pub", "proposal"], ["commit_pub", "commit"]] as const) {
    const m = decoded(decodeMlsMessage(hex(c[field]), 0), field);
    check(m.wireformat === "mls_public_message", `${field} wire format`);
    if (m.wireformat !== "mls_public_message") return;
    const ac = await unprotectPublicMessage(membershipKey, gc, [], m.publicMessage, impl, sigPub);
    if (want === "proposal") {
      check(ac.content.contentType === "proposal", `${field} content type`);
      if (ac.content.contentType === "proposal") {
        eqBytes(encodeProposal(ac.content.proposal), c.proposal, `${field} proposal`);
      }
    } else {
      check(ac.content.contentType === "commit", `${field} content type`);
      if (ac.content.contentType === "commit") {
        eqBytes(encodeCommit(ac.content.commit), c.commit, `${field} commit`);
      }
    }
  }

  // Private messages from the vector (each against a fresh secret tree).
  for (const field of ["application_priv", "proposal_priv", "commit_priv"] as const) {
    const m = decoded(decodeMlsMessage(hex(c[field]), 0), field);
    check(m.wireformat === "mls_private_message", `${field} wire format`);
    if (m.wireformat !== "mls_private_message") return;
    const st = await createSecretTree(2, hex(c.encryption_secret), impl.kdf);
    const { content } = await unprotectPrivateMessage(
      senderDataSecret,
      m.privateMessage,
      st,
      [],
      gc,
      retention,
      impl,
      sigPub,
    );
    const fc = content.content;
    if (field === "application_priv") {
      check(fc.contentType === "application", `${field} content type`);
      if (fc.contentType === "application") {
        eqBytes(fc.applicationData, c.application, `${field} application data`);
      }
    } else if (field === "proposal_priv") {
      check(fc.contentType === "proposal", `${field} content type`);
      if (fc.contentType === "proposal") {
        eqBytes(encodeProposal(fc.proposal), c.proposal, `${field} proposal`);
      }
    } else {
      check(fc.contentType === "commit", `${field} content type`);
      if (fc.contentType === "commit") {
        eqBytes(encodeCommit(fc.commit), c.commit, `${field} commit`);
      }
    }
  }

  // Protect with this provider, unprotect again: application (private), proposal (public).
  const st = await createSecretTree(2, hex(c.encryption_secret), impl.kdf);
  const prot = await protectApplicationData(
    sigPriv,
    senderDataSecret,
    hex(c.application),
    new Uint8Array(0),
    gc,
    st,
    1,
    defaultPaddingConfig,
    impl,
  );
  const st2 = await createSecretTree(2, hex(c.encryption_secret), impl.kdf);
  const back = await unprotectPrivateMessage(
    senderDataSecret,
    prot.privateMessage,
    st2,
    [],
    gc,
    retention,
    impl,
    sigPub,
  );
  check(back.content.content.contentType === "application", "own application content type");
  if (back.content.content.contentType === "application") {
    eqBytes(back.content.content.applicationData, c.application, "own application round trip");
  }
  const proposal = decoded(decodeProposal(hex(c.proposal), 0), "proposal");
  const pub = await protectProposalPublic(
    sigPriv,
    membershipKey,
    gc,
    new Uint8Array(0),
    proposal,
    1,
    impl,
  );
  const pubBack = await unprotectPublicMessage(
    membershipKey,
    gc,
    [],
    pub.publicMessage,
    impl,
    sigPub,
  );
  check(pubBack.content.contentType === "proposal", "own public proposal content type");
  if (pubBack.content.contentType === "proposal") {
    eqBytes(encodeProposal(pubBack.content.proposal), c.proposal, "own public proposal round trip");
  }
}

async function keySchedule(c: KeyScheduleCase, impl: CiphersuiteImpl): Promise<void> {
  let initSecret = hex(c.initial_init_secret);
  for (const [i, e] of c.epochs.entries()) {
    const gc = groupContext(
      c.cipher_suite,
      c.group_id,
      i,
      e.tree_hash,
      e.confirmed_transcript_hash,
    );
    eqBytes(encodeGroupContext(gc), e.group_context, `epoch ${i} group_context`);
    const r = await initializeEpoch(
      initSecret,
      hex(e.commit_secret),
      gc,
      hex(e.psk_secret),
      impl.kdf,
    );
    const ks = r.keySchedule;
    eqBytes(r.joinerSecret, e.joiner_secret, `epoch ${i} joiner_secret`);
    eqBytes(r.welcomeSecret, e.welcome_secret, `epoch ${i} welcome_secret`);
    eqBytes(r.encryptionSecret, e.encryption_secret, `epoch ${i} encryption_secret`);
    eqBytes(ks.initSecret, e.init_secret, `epoch ${i} init_secret`);
    eqBytes(ks.senderDataSecret, e.sender_data_secret, `epoch ${i} sender_data_secret`);
    eqBytes(ks.exporterSecret, e.exporter_secret, `epoch ${i} exporter_secret`);
    eqBytes(ks.epochAuthenticator, e.epoch_authenticator, `epoch ${i} epoch_authenticator`);
    eqBytes(ks.externalSecret, e.external_secret, `epoch ${i} external_secret`);
    eqBytes(ks.confirmationKey, e.confirmation_key, `epoch ${i} confirmation_key`);
    eqBytes(ks.membershipKey, e.membership_key, `epoch ${i} membership_key`);
    eqBytes(ks.resumptionPsk, e.resumption_psk, `epoch ${i} resumption_psk`);
    const kp = await impl.hpke.deriveKeyPair(ks.externalSecret);
    eqBytes(
      await impl.hpke.exportPublicKey(kp.publicKey),
      e.external_pub,
      `epoch ${i} external_pub`,
    );
    eqBytes(
      await mlsExporter(
        ks.exporterSecret,
        e.exporter.label,
        hex(e.exporter.context),
        e.exporter.length,
        impl,
      ),
      e.exporter.secret,
      `epoch ${i} exporter`,
    );
    initSecret = ks.initSecret;
  }
}

async function pskSecret(c: PskSecretCase, impl: CiphersuiteImpl): Promise<void> {
  const psks: [PreSharedKeyID, Uint8Array][] = c.psks.map((p) => [
    { psktype: "external", pskId: hex(p.psk_id), pskNonce: hex(p.psk_nonce) },
    hex(p.psk),
  ]);
  eqBytes(await computePskSecret(psks, impl), c.psk_secret, "psk_secret");
}

async function transcriptHashes(c: TranscriptCase, impl: CiphersuiteImpl): Promise<void> {
  const ac = decoded(decodeAuthenticatedContent(hex(c.authenticated_content), 0), "content");
  if (ac.content.contentType !== "commit" || ac.auth.contentType !== "commit") {
    throw new Mismatch("Authenticated content is not a commit");
  }
  const tag = ac.auth.confirmationTag;
  check(
    await impl.hash.verifyMac(hex(c.confirmation_key), tag, hex(c.confirmed_transcript_hash_after)),
    "confirmation tag does not verify",
  );
  const confirmed = await createConfirmedHash(
    hex(c.interim_transcript_hash_before),
    { wireformat: ac.wireformat, content: ac.content, signature: ac.auth.signature },
    impl.hash,
  );
  eqBytes(confirmed, c.confirmed_transcript_hash_after, "confirmed_transcript_hash_after");
  eqBytes(
    await createInterimHash(confirmed, tag, impl.hash),
    c.interim_transcript_hash_after,
    "interim_transcript_hash_after",
  );
}

async function welcome(c: WelcomeCase, impl: CiphersuiteImpl): Promise<void> {
  const w = decoded(decodeMlsMessage(hex(c.welcome), 0), "welcome");
  const k = decoded(decodeMlsMessage(hex(c.key_package), 0), "key package");
  if (w.wireformat !== "mls_welcome") throw new Mismatch("Not a welcome");
  if (k.wireformat !== "mls_key_package") throw new Mismatch("Not a key package");
  const ref = await makeKeyPackageRef(k.keyPackage, impl.hash);
  const priv = await impl.hpke.importPrivateKey(hex(c.init_priv));
  const secrets = await decryptGroupSecrets(priv, ref, w.welcome, impl.hpke);
  if (secrets === undefined) throw new Mismatch("Cannot decrypt group secrets");
  const pskSecret = new Uint8Array(impl.kdf.size);
  const gi = await decryptGroupInfo(w.welcome, secrets.joinerSecret, pskSecret, impl);
  if (gi === undefined) throw new Mismatch("Cannot decrypt group info");
  check(
    await verifyGroupInfoConfirmationTag(gi, secrets.joinerSecret, pskSecret, impl),
    "group info confirmation tag",
  );
  check(
    await verifyGroupInfoSignature(gi, hex(c.signer_pub), impl.signature),
    "group info signature",
  );
}

async function treeOperations(c: TreeOperationsCase, impl: CiphersuiteImpl): Promise<void> {
  const before = decoded(decodeRatchetTree(hex(c.tree_before), 0), "tree_before");
  eqBytes(await treeHashRoot(before, impl.hash), c.tree_hash_before, "tree_hash_before");
  const p = decoded(decodeProposal(hex(c.proposal), 0), "proposal");
  let after: RatchetTree;
  switch (p.proposalType) {
    case "add":
      after = addLeafNode(before, p.add.keyPackage.leafNode)[0];
      break;
    case "update":
      after = updateLeafNode(before, p.update.leafNode, toLeafIndex(c.proposal_sender));
      break;
    case "remove":
      after = removeLeafNode(before, toLeafIndex(p.remove.removed));
      break;
    default:
      throw new Mismatch(`Unexpected proposal type ${p.proposalType}`);
  }
  eqBytes(encodeRatchetTree(after), c.tree_after, "tree_after");
  eqBytes(await treeHashRoot(after, impl.hash), c.tree_hash_after, "tree_hash_after");
}

async function treeValidation(c: TreeValidationCase, impl: CiphersuiteImpl): Promise<void> {
  const tree = decoded(decodeRatchetTree(hex(c.tree), 0), "tree");
  for (const [i, h] of c.tree_hashes.entries()) {
    eqBytes(await treeHash(tree, toNodeIndex(i), impl.hash), h, `tree_hashes[${i}]`);
  }
  for (const [i, want] of c.resolutions.entries()) {
    const got = resolution(tree, toNodeIndex(i));
    check(
      got.length === want.length && got.every((v, j) => v === want[j]),
      `resolutions[${i}]: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`,
    );
  }
  check(await verifyParentHashes(tree, impl.hash), "parent hashes");
  for (const [i, n] of tree.entries()) {
    if (n?.nodeType === "leaf") {
      check(
        await verifyLeafNodeSignature(
          n.leaf,
          hex(c.group_id),
          nodeToLeafIndex(toNodeIndex(i)),
          impl.signature,
        ),
        `leaf node ${i} signature`,
      );
    }
  }
}

async function treeKem(c: TreeKemCase, impl: CiphersuiteImpl): Promise<void> {
  const tree = decoded(decodeRatchetTree(hex(c.ratchet_tree), 0), "ratchet_tree");
  const gc = groupContext(
    c.cipher_suite,
    c.group_id,
    c.epoch,
    await treeHashRoot(tree, impl.hash),
    c.confirmed_transcript_hash,
  );
  // Private state of each leaf: its encryption key plus the keys derived from path secrets.
  const paths = [];
  for (const leaf of c.leaves_private) {
    const node = tree[leafToNodeIndex(toLeafIndex(leaf.index))];
    if (node?.nodeType !== "leaf") throw new Mismatch(`No leaf at index ${leaf.index}`);
    check(
      await hpkePairMatches(node.leaf.hpkePublicKey, hex(leaf.encryption_priv), impl),
      `leaf ${leaf.index} encryption_priv`,
    );
    const secrets: Record<number, Uint8Array> = {};
    for (const ps of leaf.path_secrets) {
      secrets[ps.node] = hex(ps.path_secret);
      const kp = await impl.hpke.deriveKeyPair(
        await deriveSecret(hex(ps.path_secret), "node", impl.kdf),
      );
      const n = tree[ps.node];
      if (n === undefined) throw new Mismatch(`No node ${ps.node}`);
      eqBytes(
        await impl.hpke.exportPublicKey(kp.publicKey),
        toHex(getHpkePublicKey(n)),
        `node ${ps.node} public key from path secret`,
      );
    }
    const pk = await toPrivateKeyPath(secrets, leaf.index, impl);
    paths.push({
      ...pk,
      privateKeys: {
        ...pk.privateKeys,
        [leafToNodeIndex(toLeafIndex(leaf.index))]: hex(leaf.encryption_priv),
      },
    });
  }
  for (const up of c.update_paths) {
    const sender = toLeafIndex(up.sender);
    const path = decoded(decodeUpdatePath(hex(up.update_path), 0), "update_path");
    const updated = await applyUpdatePath(tree, sender, path, impl.hash);
    const th = await treeHashRoot(updated, impl.hash);
    eqBytes(th, up.tree_hash_after, `sender ${up.sender} tree_hash_after`);
    const gcAfter = { ...gc, treeHash: th };
    for (const pp of paths) {
      if (pp.leafIndex === up.sender) continue;
      const want = up.path_secrets[pp.leafIndex];
      const got = await applyUpdatePathSecret(tree, pp, sender, gcAfter, path, [], impl);
      if (want === null || want === undefined) throw new Mismatch("Missing path secret");
      eqBytes(got.pathSecret, want, `sender ${up.sender} path secret for leaf ${pp.leafIndex}`);
      eqBytes(
        await getCommitSecret(tree, got.nodeIndex, got.pathSecret, impl.kdf),
        up.commit_secret,
        `sender ${up.sender} commit secret at leaf ${pp.leafIndex}`,
      );
    }
    // A fresh update path from this provider must be decryptable by every other leaf.
    const senderPriv = c.leaves_private.find((l) => l.index === up.sender);
    if (senderPriv === undefined) continue;
    const [t2, newPath, newSecrets] = await createUpdatePath(
      updated,
      sender,
      gcAfter,
      hex(senderPriv.signature_priv),
      impl,
    );
    const rootSecret = newSecrets[newSecrets.length - 1];
    if (rootSecret === undefined) throw new Mismatch("No path secrets created");
    const newCommit = await deriveSecret(rootSecret.secret, "path", impl.kdf);
    const gcNew = { ...gc, treeHash: await treeHashRoot(t2, impl.hash), epoch: gc.epoch + 1n };
    for (const pp of paths) {
      if (pp.leafIndex === up.sender) continue;
      const got = await applyUpdatePathSecret(tree, pp, sender, gcNew, newPath, [], impl);
      const cs = await getCommitSecret(tree, got.nodeIndex, got.pathSecret, impl.kdf);
      check(constantTimeEqual(cs, newCommit), `own update path commit secret at ${pp.leafIndex}`);
    }
  }
}

function messages(c: MessagesCase): void {
  const field = (k: string): string => {
    const v = c[k];
    if (typeof v !== "string") throw new Mismatch(`Missing field ${k}`);
    return v;
  };
  const wire = {
    mls_welcome: "mls_welcome",
    mls_group_info: "mls_group_info",
    mls_key_package: "mls_key_package",
    public_message_application: "mls_public_message",
    public_message_proposal: "mls_public_message",
    public_message_commit: "mls_public_message",
    private_message: "mls_private_message",
  } as const;
  for (const [k, wf] of Object.entries(wire)) {
    const m = roundTrip(field(k), decodeMlsMessage, encodeMlsMessage, k);
    check(m.wireformat === wf, `${k} wire format ${m.wireformat}`);
    if (m.wireformat === "mls_public_message") {
      const want = k.slice("public_message_".length);
      check(m.publicMessage.content.contentType === want, `${k} content type`);
    }
  }
  roundTrip(field("ratchet_tree"), decodeRatchetTree, encodeRatchetTree, "ratchet_tree");
  roundTrip(field("group_secrets"), decodeGroupSecrets, encodeGroupSecrets, "group_secrets");
  roundTrip(field("add_proposal"), decodeAdd, encodeAdd, "add_proposal");
  roundTrip(field("update_proposal"), decodeUpdate, encodeUpdate, "update_proposal");
  roundTrip(field("remove_proposal"), decodeRemove, encodeRemove, "remove_proposal");
  roundTrip(field("pre_shared_key_proposal"), decodePSK, encodePSK, "pre_shared_key_proposal");
  roundTrip(field("re_init_proposal"), decodeReinit, encodeReinit, "re_init_proposal");
  roundTrip(
    field("external_init_proposal"),
    decodeExternalInit,
    encodeExternalInit,
    "external_init_proposal",
  );
  roundTrip(
    field("group_context_extensions_proposal"),
    decodeGroupContextExtensions,
    encodeGroupContextExtensions,
    "group_context_extensions_proposal",
  );
  roundTrip(field("commit"), decodeCommit, encodeCommit, "commit");
}

function deserialization(c: DeserializationCase): void {
  const { length, lengthFieldSize } = determineLength(hex(c.vlbytes_header), 0);
  check(length === c.length, `length: got ${length}, want ${c.length}`);
  check(lengthFieldSize === hex(c.vlbytes_header).length, "header size");
}

async function passiveClient(c: PassiveCase, impl: CiphersuiteImpl): Promise<void> {
  const k = decoded(decodeMlsMessage(hex(c.key_package), 0), "key_package");
  if (k.wireformat !== "mls_key_package") throw new Mismatch("Not a key package");
  const kp = k.keyPackage;
  check(
    await hpkePairMatches(kp.leafNode.hpkePublicKey, hex(c.encryption_priv), impl),
    "encryption_priv",
  );
  check(await hpkePairMatches(kp.initKey, hex(c.init_priv), impl), "init_priv");
  check(
    await signaturePairMatches(kp.leafNode.signaturePublicKey, hex(c.signature_priv), impl),
    "signature_priv",
  );
  const w = decoded(decodeMlsMessage(hex(c.welcome), 0), "welcome");
  if (w.wireformat !== "mls_welcome") throw new Mismatch("Not a welcome");
  const keys: PrivateKeyPackage = {
    hpkePrivateKey: hex(c.encryption_priv),
    initPrivateKey: hex(c.init_priv),
    signaturePrivateKey: hex(c.signature_priv),
  };
  const psks: Record<string, Uint8Array> = {};
  for (const p of c.external_psks) psks[bytesToBase64(hex(p.psk_id))] = hex(p.psk);
  const tree = c.ratchet_tree === null
    ? undefined
    : decoded(decodeRatchetTree(hex(c.ratchet_tree), 0), "ratchet_tree");
  let state = await joinGroup(w.welcome, kp, keys, makePskIndex(undefined, psks), impl, tree);
  eqBytes(
    state.keySchedule.epochAuthenticator,
    c.initial_epoch_authenticator,
    "initial_epoch_authenticator",
  );
  for (const [i, e] of c.epochs.entries()) {
    for (const msg of [...e.proposals, e.commit]) {
      const m = decoded(decodeMlsMessage(hex(msg), 0), `epoch ${i} message`);
      if (m.wireformat === "mls_private_message") {
        const r = await processPrivateMessage(
          state,
          m.privateMessage,
          makePskIndex(state, psks),
          impl,
        );
        state = r.newState;
      } else if (m.wireformat === "mls_public_message") {
        const r = await processPublicMessage(
          state,
          m.publicMessage,
          makePskIndex(state, psks),
          impl,
        );
        state = r.newState;
      } else {
        throw new Mismatch(`epoch ${i}: unexpected wire format ${m.wireformat}`);
      }
    }
    eqBytes(
      state.keySchedule.epochAuthenticator,
      e.epoch_authenticator,
      `epoch ${i} epoch_authenticator`,
    );
  }
}

type Runner = (c: never, impl: CiphersuiteImpl) => void | Promise<void>;

const RUNNERS: Record<VectorFileName, { suiteless: boolean; run: Runner }> = {
  "tree-math": { suiteless: true, run: treeMath },
  "crypto-basics": { suiteless: false, run: cryptoBasics },
  "secret-tree": { suiteless: false, run: secretTree },
  "message-protection": { suiteless: false, run: messageProtection },
  "key-schedule": { suiteless: false, run: keySchedule },
  "psk_secret": { suiteless: false, run: pskSecret },
  "transcript-hashes": { suiteless: false, run: transcriptHashes },
  "welcome": { suiteless: false, run: welcome },
  "tree-operations": { suiteless: false, run: treeOperations },
  "tree-validation": { suiteless: false, run: treeValidation },
  "treekem": { suiteless: false, run: treeKem },
  "messages": { suiteless: true, run: messages },
  "deserialization": { suiteless: true, run: deserialization },
  "passive-client-welcome": { suiteless: false, run: passiveClient },
  "passive-client-handling-commit": { suiteless: false, run: passiveClient },
  "passive-client-random": { suiteless: false, run: passiveClient },
};

/**
 * Run every (selected) case of one vector file.
 *
 * @param file which vector file `cases` came from
 * @param cases the parsed JSON of that file (an array of cases)
 * @returns counts and one line per failure; a case whose suite ts-mls cannot run is
 *   counted as unsupported, never as passed
 */
export async function runVectorFile(
  file: VectorFileName,
  cases: unknown,
  options: RunVectorsOptions = {},
): Promise<VectorReport> {
  if (!Array.isArray(cases)) throw new TypeError(`Vector file ${file} is not a JSON array`);
  const provider = options.provider ?? "qpq";
  const runner = RUNNERS[file];
  const report: VectorReport = {
    file,
    provider,
    total: cases.length,
    passed: 0,
    failed: 0,
    unsupported: 0,
    skipped: 0,
    unsupportedSuites: [],
    suitesRun: [],
    failures: [],
  };
  for (const [i, c] of cases.entries()) {
    if (options.select !== undefined && !options.select(i)) {
      report.skipped++;
      continue;
    }
    let impl: CiphersuiteImpl | undefined;
    let suite = 0;
    if (!runner.suiteless) {
      suite = Number((c as { cipher_suite?: unknown }).cipher_suite);
      impl = await implFor(suite, provider);
      if (impl === undefined) {
        report.unsupported++;
        if (!report.unsupportedSuites.includes(suite)) report.unsupportedSuites.push(suite);
        continue;
      }
      if (!report.suitesRun.includes(suite)) report.suitesRun.push(suite);
    }
    try {
      await runner.run(c as never, impl as CiphersuiteImpl);
      report.passed++;
    } catch (e) {
      report.failed++;
      const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      report.failures.push(`case ${i}${suite ? ` (suite ${suite})` : ""}: ${msg}`.slice(0, 500));
    }
  }
  return report;
}
