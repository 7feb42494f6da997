/**
 * Storage failures of the server store: what kind each is, and the store's health. No I/O:
 * the store reports every outcome here, and whoever opened the store (the server) is told
 * of each change of state through one callback and writes the log line.
 *
 * ```
 *            SQLite error (full, damaged, read-only, I/O…)
 *   ok ───────────────────────────────────────────────► degraded   "failed" event (once)
 *    ▲                                                   │  │ more errors: counted only
 *    └─ the probe's 1 MiB write commits (not "damaged") ─┘  │ another kind: "failed" again
 *       "recovered" event with the count                    ▼
 * ```
 *
 * @module
 */
import { QpqError, StorageError } from "../../errors.ts";

/**
 * What kind of storage failure: `full` (no space: SQLITE_FULL, ENOSPC), `damaged`
 * (SQLITE_CORRUPT, SQLITE_NOTADB met while serving), `read_only` (SQLITE_READONLY, EROFS,
 * permission), `io` (any other SQLite or file-system failure).
 */
export type StorageFault = "full" | "damaged" | "read_only" | "io";

/** The store's health as health requests report it. */
export interface StorageHealth {
  /** `ok`, or `degraded` while the store cannot write (or its file is damaged). */
  readonly status: "ok" | "degraded";
  /** Set when degraded: the kind of failure. */
  readonly fault?: StorageFault;
  /** Set when degraded: a short reason for people, e.g. "storage: disk full". */
  readonly reason?: string;
  /** Failures counted since the store last became degraded (0 when ok). */
  readonly failures: number;
}

/** A change of the store's health, told once per change (never once per failure). */
export type StorageEvent =
  | {
    kind: "failed";
    fault: StorageFault;
    /** The short reason health reports. */
    reason: string;
    /** The SQLite (or OS) error text and code: no values, no secrets. */
    detail: string;
  }
  | {
    kind: "recovered";
    /** How many failures were counted while degraded. */
    failures: number;
  };

const REASONS: Record<StorageFault, string> = {
  full: "storage: disk full",
  damaged: "storage: database damaged",
  read_only: "storage: read-only",
  io: "storage: I/O error",
};

/** SQLite primary result codes (the low byte of an extended code). */
const SQLITE_PERM = 3;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

/**
 * The kind of a failure thrown by SQLite or the file system, or undefined for one of our
 * own errors (a refusal such as "not a member" is no storage failure). `node:sqlite`
 * gives the result code (`errcode`) only on some paths, so the message decides too.
 */
export function classifyStorageError(e: unknown): StorageFault | undefined {
  if (e instanceof QpqError) {
    return e.code === "storage_full" ? "full" : undefined;
  }
  const err = e as { errcode?: unknown; message?: unknown } | null;
  const code = typeof err?.errcode === "number" ? err.errcode & 0xff : undefined;
  const msg = String(err?.message ?? e);
  if (
    code === SQLITE_FULL || /database or disk is full|no space left on device|ENOSPC/i.test(msg) ||
    e instanceof Error && (e as { code?: unknown }).code === "ENOSPC"
  ) return "full";
  if (
    code === SQLITE_CORRUPT || code === SQLITE_NOTADB ||
    /database disk image is malformed|file is not a database/i.test(msg)
  ) return "damaged";
  if (
    code === SQLITE_READONLY || code === SQLITE_PERM ||
    /readonly database|read-only file system|EROFS|permission denied/i.test(msg)
  ) return "read_only";
  if (code === SQLITE_IOERR || code === SQLITE_CANTOPEN) return "io";
  return "io";
}

/** The error a client is answered with for a storage failure: never a path, never a value. */
export function storageFailure(fault: StorageFault, cause: unknown): StorageError {
  if (fault === "full") {
    return new StorageError(
      "The server's disk is full: nothing was stored; try again later",
      { code: "storage_full", cause },
    );
  }
  return new StorageError("Database operation failed", { cause });
}

/**
 * Why the file system refused a write, in a few words ("read-only file system",
 * "permission denied"), or undefined for any other failure.
 */
export function notWritableReason(e: unknown): string | undefined {
  const msg = String((e as Error)?.message ?? e);
  if (/os error 30|read-only file system/i.test(msg)) return "read-only file system";
  if (/os error 13|os error 1\b|permission denied|operation not permitted/i.test(msg)) {
    return "permission denied";
  }
  if (e instanceof Deno.errors.NotCapable) return "no --allow-write for it";
  return undefined;
}

/** The error text and code, cut short: enough to act on, nothing from our rows. */
export function describeStorageError(e: unknown): string {
  const err = e as { errcode?: unknown; errstr?: unknown; message?: unknown } | null;
  const msg = String(err?.message ?? e).replace(/\s+/g, " ").slice(0, 200);
  return typeof err?.errcode === "number" ? `${msg} (SQLite code ${err.errcode})` : msg;
}

/**
 * The health state machine (see the module diagram). The store calls {@link failed} for
 * every storage failure and {@link wrote} after every committed write.
 */
export class StorageHealthTracker {
  #fault: StorageFault | undefined;
  #failures = 0;
  readonly #onEvent: (e: StorageEvent) => void;

  constructor(onEvent: (e: StorageEvent) => void = () => {}) {
    this.#onEvent = onEvent;
  }

  /** The current health. */
  get health(): StorageHealth {
    const fault = this.#fault;
    if (fault === undefined) return { status: "ok", failures: 0 };
    return { status: "degraded", fault, reason: REASONS[fault], failures: this.#failures };
  }

  /** Record one failure; tells the observer only when the kind of failure changes. */
  failed(fault: StorageFault, cause: unknown): void {
    this.#failures++;
    // damaged stays damaged: a file with a bad page does not heal by itself
    if (fault === this.#fault || this.#fault === "damaged") return;
    this.#fault = fault;
    this.#emit({
      kind: "failed",
      fault,
      reason: REASONS[fault],
      detail: describeStorageError(cause),
    });
  }

  /** The probe's write committed: the store can write again (damaged stays degraded). */
  wrote(): void {
    if (this.#fault === undefined || this.#fault === "damaged") return;
    const failures = this.#failures;
    this.#fault = undefined;
    this.#failures = 0;
    this.#emit({ kind: "recovered", failures });
  }

  #emit(e: StorageEvent): void {
    try {
      this.#onEvent(e);
    } catch { /* an observer's failure must not turn into a storage failure */ }
  }
}
