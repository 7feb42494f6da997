/**
 * Transport: QUIC connections and TLS certificates. Bytes only.
 *
 * @module
 */
export * from "./quic.ts";
export * from "./cert.ts";
