/**
 * The client's local state: the {@link LocalState} interface the client logic uses, its
 * one implementation {@link ClientStore} (encrypted state file + database on disk, or SQLite
 * `:memory:` unsealed: {@link MemoryLocalState}, for tests, the simulation, the load tool).
 *
 * ```ts
 * const store = await ClientStore.open("qpq-alice.bin", password, { create: true, initialMeta });
 * store.transaction(() => {
 *   store.putGroup({ channelId, state, lastUpdateMs: Date.now(), leaves: [] });
 *   store.setCursor(seq);
 * });
 * await store.close();
 * ```
 *
 * @module
 */

export * from "./client_store.ts";
export { LockedError } from "../_file_lock.ts";
export type {
  ClientMeta,
  ClientMetaInit,
  ClientMetaPatch,
  ConsentStatus,
  Conversation,
  ConversationKind,
  GroupMeta,
  GroupRecord,
  GroupSummary,
  KeyPackageRecord,
  LocalState,
  MessageDirection,
  MessageReaction,
  MessageReceipt,
  MessageStatus,
  OutboxEntry,
  StoredMessage,
  TransactionOptions,
} from "./local_state.ts";
export { MemoryLocalState } from "./memory_local_state.ts";
