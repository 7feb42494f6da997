/**
 * qpq library API: connect to a server, the wire message types and the error family.
 * Server internals and the CLI are not part of this API.
 *
 * @module
 */
export * from "./src/errors.ts";
export { VERSION } from "./src/version.ts";
export {
  type ConnectOptions,
  connectServer,
  readCaCert,
  ServerConnection,
} from "./src/client/connection.ts";
export type * from "./src/wire/messages.ts";
