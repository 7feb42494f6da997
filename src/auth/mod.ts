/**
 * Authentication: OPAQUE password login (the only importer of the OPAQUE library),
 * session tokens and login rate limiting. Server handlers call the server step functions
 * per request; the client uses the client step functions of the same adapter.
 *
 * @module
 */

export * from "./opaque.ts";
export * from "./session.ts";
export * from "./rate_limit.ts";
