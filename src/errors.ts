/**
 * One error family for all of qpq. Every error carries a stable `code` that crosses the
 * wire (as code + message) and maps to a CLI exit code. Messages are sentence case with
 * no trailing period and never contain secrets.
 *
 * Who is at fault decides the class:
 * - {@link ValidationError}: a peer sent bad data
 * - {@link UsageError}: the caller erred (bad flag, unknown user, not a member)
 * - {@link AuthError}: authentication or authorization failed
 * - {@link CryptoError}: a cryptographic check failed (tampered, wrong key)
 * - {@link StorageError}: the local or server store failed
 * - {@link TransportError}: the network failed (server down, certificate refused)
 * - {@link InternalError}: a bug in qpq
 *
 * @module
 */

/** Stable error codes. Never renumber or rename: they cross the wire. */
export const ERROR_CODES = [
  "validation",
  "usage",
  "auth",
  "forbidden",
  "not_found",
  "conflict",
  "epoch_conflict",
  "rate_limited",
  "too_large",
  "quota",
  "crypto",
  "storage",
  "transport",
  "timeout",
  "unsupported_version",
  "unavailable",
  "internal",
  "storage_full",
] as const;

/** A stable, wire-visible error code. */
export type ErrorCode = typeof ERROR_CODES[number];

/** True when `s` is a known {@link ErrorCode}. */
export function isErrorCode(s: string): s is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(s);
}

/** Options for every {@link QpqError}. */
export interface QpqErrorOptions {
  /** The underlying error, kept for debugging; never printed to users. */
  cause?: unknown;
}

/** Base class of every error qpq raises on purpose. */
export class QpqError extends Error {
  /** Stable code; see {@link ERROR_CODES}. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: QpqErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** A peer (client or server) sent bytes or values that do not validate. */
export class ValidationError extends QpqError {
  constructor(message: string, options: QpqErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? "validation", message, options);
  }
}

/** The caller made a mistake: bad argument, unknown name, wrong state for the request. */
export class UsageError extends QpqError {
  constructor(message: string, options: QpqErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? "usage", message, options);
  }
}

/** Authentication or authorization failed. */
export class AuthError extends QpqError {
  constructor(message: string, options: QpqErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? "auth", message, options);
  }
}

/** A cryptographic operation failed (bad tag, wrong key, invalid public key). */
export class CryptoError extends QpqError {
  constructor(message: string, options: QpqErrorOptions = {}) {
    super("crypto", message, options);
  }
}

/** The store (SQLite, state file) failed. */
export class StorageError extends QpqError {
  constructor(message: string, options: QpqErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? "storage", message, options);
  }
}

/** The network or QUIC connection failed. */
export class TransportError extends QpqError {
  constructor(message: string, options: QpqErrorOptions & { code?: ErrorCode } = {}) {
    super(options.code ?? "transport", message, options);
  }
}

/** A bug in qpq. */
export class InternalError extends QpqError {
  constructor(message: string, options: QpqErrorOptions = {}) {
    super("internal", message, options);
  }
}

/**
 * Rebuild an error received from the wire (code + message) as the right subclass.
 * Unknown codes become {@link InternalError} with the message kept.
 */
export function errorFromWire(code: string, message: string): QpqError {
  if (!isErrorCode(code)) return new InternalError(message);
  switch (code) {
    case "validation":
    case "too_large":
    case "unsupported_version":
      return new ValidationError(message, { code });
    case "usage":
    case "not_found":
    case "conflict":
    case "epoch_conflict":
    case "quota":
      return new UsageError(message, { code });
    case "auth":
    case "forbidden":
    case "rate_limited":
      return new AuthError(message, { code });
    case "crypto":
      return new CryptoError(message);
    case "storage":
    case "storage_full":
      return new StorageError(message, { code });
    case "transport":
    case "timeout":
    case "unavailable":
      return new TransportError(message, { code });
    case "internal":
      return new InternalError(message);
  }
}

/** Wrap anything thrown into a {@link QpqError}; foreign errors become `internal`. */
export function toQpqError(e: unknown): QpqError {
  if (e instanceof QpqError) return e;
  return new InternalError("Unexpected internal error", { cause: e });
}

/** Process exit code for an error: 2 for usage mistakes, 1 for everything else. */
export function exitCodeFor(e: QpqError): number {
  return e instanceof UsageError && e.code === "usage" ? 2 : 1;
}

/**
 * Error codes that say "not now", never "this is wrong": what failed may pass if tried
 * again later (the client keeps the message, the queued request, the ack). The one list:
 * {@link retryLater} and {@link refusedForNow} are the one rule built on it.
 */
export const RETRY_LATER_CODES: ReadonlySet<string> = new Set([
  "epoch_conflict", // the group moved on: catch up, then again
  "storage", // a local or server database error
  "storage_full", // the server's disk is full
  "unavailable", // the server is starting, stopping or overloaded
  "timeout",
  "quota", // a queue or mailbox is full until its owner reads
  "rate_limited",
]);

/** Try again later: the network failed, or a refusal that may pass ({@link RETRY_LATER_CODES}). */
export function retryLater(e: unknown): boolean {
  return e instanceof TransportError ||
    (e instanceof QpqError && RETRY_LATER_CODES.has(e.code));
}

/** The server (or the store) answered "not now": {@link retryLater}, but not a network failure. */
export function refusedForNow(e: unknown): e is QpqError {
  return !(e instanceof TransportError) && e instanceof QpqError && RETRY_LATER_CODES.has(e.code);
}
