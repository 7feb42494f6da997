/**
 * qpq library API: what a program needs to run a qpq server or be a qpq client.
 *
 * ```ts
 * import { createServices, openLocalStore, QpqClient, resolveConfig, startServer } from "./mod.ts";
 * const server = await startServer(resolveConfig({ listen: "127.0.0.1:0", dataDir }, {}, {}), {
 *   services: createServices,
 * });
 * const store = await openLocalStore("alice.qpq", password, { create: true, username, server });
 * const alice = QpqClient.create({ store, password, caCertPem: server.certificate.certPem });
 * await alice.register();
 * await alice.dm("bob");
 * await alice.send("@bob", "hi");
 * ```
 *
 * The CLI, the stores' and the server's internals are not part of this API.
 *
 * @module
 */
export * from "./src/errors.ts";
export { VERSION } from "./src/version.ts";
export * from "./src/client/mod.ts";
export {
  createServices,
  resolveConfig,
  type RunningServer,
  type ServerConfig,
  startServer,
  type StartServerOptions,
} from "./src/server/mod.ts";
export { type Argon2idParams, DEFAULT_ARGON2ID_PARAMS } from "./src/crypto/mod.ts";
export type * from "./src/wire/messages.ts";
