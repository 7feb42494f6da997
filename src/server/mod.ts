/**
 * The qpq server: configuration, TLS, services and the accept loop.
 *
 * @module
 */
export * from "./config.ts";
export * from "./server.ts";
export type * from "./context.ts";
export {
  GENERATED_CERT,
  GENERATED_KEY,
  loadServerCertificate,
  type ServerCertificate,
} from "./tls.ts";
export { createServices } from "./services.ts";
