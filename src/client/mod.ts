/**
 * The qpq client: the {@link QpqClient} facade, its events and types, the encrypted local
 * state it runs on, and the server connection it uses.
 *
 * @module
 */
export {
  type AcceptFrom,
  type ClientEvent,
  type ConversationRequest,
  type HeldInvitation,
  KEY_PACKAGE_BATCH,
  type LeaveOutcome,
  type ListedConversation,
  type MembershipChange,
  QpqClient,
  type QpqClientOptions,
  type RegisterOptions,
  type Renamed,
  type UnblockResult,
} from "./client.ts";
export { openLocalStore, type OpenLocalStoreOptions } from "./open_store.ts";
export {
  type ConnectOptions,
  type Connector,
  connectServer,
  readCaCert,
  ServerConnection,
  type ServerLink,
} from "./connection.ts";
