/**
 * What every request handler gets: the server-wide context and the per-connection state.
 *
 * @module
 */
import type { SqliteServerStoreOptions } from "../store/server/sqlite_server_store.ts";
import type { Logger } from "../log.ts";
import type { Request, RequestKind, Response, StreamContext } from "../wire/mod.ts";
import type { ServerConfig } from "./config.ts";

/** Counters reported by health. */
export interface ServerStats {
  /**
   * Client connections with a request stream open (a client that ended its stream is done;
   * one that vanished without a word counts until the QUIC idle timeout).
   */
  connections: number;
  /** Requests handled since start. */
  requests: number;
}

/** Server-wide state shared by handlers. */
export interface ServerContext {
  /** Resolved configuration (contains secrets: never log it). */
  readonly config: ServerConfig;
  /** Structured logger. */
  readonly log: Logger;
  /** Start time (ms since epoch). */
  readonly startedAt: number;
  /** Live counters. */
  readonly stats: ServerStats;
  /** Total messages waiting in queues (for health); filled in by the store. */
  queueDepth(): Promise<number>;
  /**
   * `degraded` with a reason while a service cannot do its work (the store cannot write);
   * filled in by the store-backed services.
   */
  condition(): Promise<Condition>;
  /**
   * Schedules the server's own deferred work (the first push of a subscription, a slowed
   * login's wait); default the runtime's `setTimeout`. The in-process simulation passes
   * virtual time.
   */
  readonly defer?: ((fn: () => void, ms: number) => void) | undefined;
  /**
   * Runs the server's periodic work (the purge of what expired) every `ms` and returns what
   * stops it; default the runtime's `setInterval`, unref'd. The in-process simulation passes
   * virtual time, so that the purge runs at the same moments in every run of a seed.
   */
  readonly every?: ((fn: () => void, ms: number) => () => void) | undefined;
  /**
   * The store's disk seams (the in-process simulation: a durable image taken at each fsync
   * for power cuts, a disk that fills); unset in production.
   */
  readonly storeSeams?:
    | Pick<
      SqliteServerStoreOptions,
      "syncData" | "onOpen" | "checkpoints"
    >
    | undefined;
}

/** What health reports beside the numbers. */
export interface Condition {
  /** `ok`, or `degraded` while the store cannot write. */
  status: "ok" | "degraded";
  /** Why degraded, e.g. "storage: disk full"; "" when ok. */
  reason: string;
}

/** State of one client connection. */
export interface ConnectionState {
  /** Server-local connection id (for logs and rate limits). */
  readonly id: number;
  /** Remote address, for logs. */
  readonly remote: string;
  /** The remote's source for per-address limits: its IPv4 address, or its IPv6 /64. */
  readonly source: string;
  /**
   * Logged-in user, once login or resume succeeded. The server watches it: setting it ends
   * the connection's login deadline and its count as a stranger; clearing it (logout,
   * session ended) starts both again.
   */
  username: string | undefined;
  /** Hash of the session token bound to this connection. */
  sessionHash: Uint8Array | undefined;
  /** Called when the connection closes (subscriptions unregister here). */
  readonly cleanups: Set<() => void>;
}

/** Handler for one request kind. */
export type Handler<K extends RequestKind> = (
  request: Extract<Request, { kind: K }>,
  conn: ConnectionState,
  stream: StreamContext,
) => Promise<Response>;

/** A set of handlers contributed by one service. */
export type HandlerTable = { [K in RequestKind]?: Handler<K> };
