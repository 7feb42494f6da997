/**
 * qpq's MLS layer (RFC 9420), the only importer of ts-mls: KeyPackages, groups, the
 * credential policy and group state storage. Everything here is pure: functions take a
 * state value and return a new one plus what to send; the caller persists and sends.
 *
 * ```
 *  createKeyPackage ──upload──> server ──parseKeyPackage (strict)──> stored
 *  createGroup ─> addMembers ─> (send commit+welcome) ─> mergePendingCommit
 *                                     │ welcome
 *                                     v
 *                    joinFromWelcome ─> verifyRoster ─> encryptMessage / processMessage
 * ```
 *
 * Cipher suites: X-Wing (ML-KEM-768 + X25519) by default, X25519 selectable per group.
 *
 * @module
 */

export {
  checkCredentialBinding,
  type CredentialBinding,
  type DirectoryLookup,
  listMembers,
  type MemberInfo,
  verifyRoster,
} from "./credential.ts";
export {
  type CreatedKeyPackage,
  createKeyPackage,
  type CreateKeyPackageOptions,
  LAST_RESORT_EXTENSION,
  type ParsedKeyPackage,
  parseKeyPackage,
  type ParseKeyPackageOptions,
  type SignatureKeyPair,
} from "./key_package.ts";
export {
  addMembers,
  type AddMembersOptions,
  type ApplicationReceived,
  changeSettings,
  type CommitApplied,
  type CommitOutbound,
  type CommitReceived,
  createGroup,
  type CreateGroupOptions,
  discardPendingCommit,
  type Encrypted,
  encryptMessage,
  epoch,
  epochAuthenticator,
  exportRatchetTree,
  exportSecret,
  groupSettings,
  isAdmin,
  type Joined,
  joinFromWelcome,
  type JoinOptions,
  leaveGroup,
  leavingMembers,
  members,
  mergePendingCommit,
  type ProcessedMessage,
  processMessage,
  type ProposalReceived,
  type RemovedReceived,
  removeMembers,
  selfUpdate,
  type StagedCommit,
  type StaleReceived,
  withdrawOwnProposals,
} from "./group.ts";
export {
  decodeGroupSettings,
  encodeGroupSettings,
  GROUP_SETTINGS_EXTENSION,
  type GroupSettings,
  validDisappearing,
} from "./settings.ts";
export { isMlsSuiteName, MlsGroupState, SUITE_IDS, suiteFromId } from "./_state.ts";
export {
  decodeGroupState,
  encodeGroupState,
  encodeGroupStateChange,
  GROUP_STATE_VERSION,
  type GroupStateChange,
  type GroupStateSecret,
  peekGroupStateSuite,
} from "./state_codec.ts";
export { DEFAULT_SUITE, type MlsSuiteName } from "./provider.ts";
export {
  looksLikePrivateMessage,
  type PrivateMessageHeader,
  readKeyPackageSuite,
  readPrivateMessageHeader,
} from "./header.ts";
