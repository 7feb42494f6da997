/**
 * The client's local, encrypted-at-rest store (state file + SQLite conversation store):
 * re-exported from src/store so the client names one place.
 *
 * @module
 */
export {
  type ClientMeta,
  clientStatePaths,
  ClientStore as LocalStore,
  type Conversation,
  type LocalState,
  LockedError,
  type MessageReaction,
  type OutboxEntry,
  STATE_OPEN_FAILED_MESSAGE,
  type StoredMessage,
} from "../store/client/mod.ts";
