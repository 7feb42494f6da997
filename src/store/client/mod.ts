/**
 * The client's local state: the {@link LocalState} interface the client logic uses, its
 * encrypted SQLite implementation {@link ClientStore} (state file + database on disk) and
 * the in-memory {@link MemoryLocalState} (tests, the simulation).
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
  MessageStatus,
  OutboxEntry,
  StoredMessage,
} from "./local_state.ts";
export { MemoryLocalState } from "./memory_local_state.ts";
