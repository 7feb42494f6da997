/**
 * The qpq server: accepts QUIC connections, serves each bidirectional stream with the RPC
 * layer and dispatches requests to the service handlers.
 *
 * ```
 * QUIC listener ─▶ connection ─▶ bidi stream ─▶ serveStream ─▶ dispatch[kind](req, conn)
 *                      │                                          │
 *                      └─ ConnectionState (login, subscriptions)  └─ Response / QpqError
 * ```
 *
 * Shutdown: stop accepting, stop reading new requests, let in-flight requests finish
 * (bounded by SHUTDOWN_GRACE_MS), close connections, close services.
 *
 * @module
 */
import { bindQuic, type QuicServer } from "../transport/quic.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../transport/quic.ts";
import { type RequestKind, SendBudget, serveStream } from "../wire/mod.ts";
import { TransportError, UsageError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import {
  MAX_STREAMS_PER_CONNECTION,
  MESSAGE_BYTES_WARN_BELOW,
  REFUSED_CONNECTION_MS,
  SHUTDOWN_DRAIN_MS,
  SHUTDOWN_GRACE_MS,
} from "../limits.ts";
import { DEV_AUTH_TOKEN, type ServerConfig } from "./config.ts";
import { GENERATED_KEY } from "./tls.ts";
import type { Condition, ConnectionState, HandlerTable, ServerContext } from "./context.ts";
import { loadServerCertificate, type ServerCertificate } from "./tls.ts";
import { pingHandlers } from "./ping.ts";
import { Admission, sourceOf } from "./_admission.ts";

/** A service: handlers plus lifecycle hooks. */
export interface Service {
  /** Request handlers this service answers. */
  handlers: HandlerTable;
  /** Total queued messages, for health. */
  queueDepth?(): Promise<number>;
  /** `degraded` with a reason while it cannot do its work, for health. */
  condition?(): Promise<Condition>;
  /** Called when a connection closes. */
  onDisconnect?(conn: ConnectionState): void;
  /** Release resources at shutdown. */
  close?(): Promise<void> | void;
  /** Where it serves plain-HTTP health, if it does (the port resolved when 0 was asked). */
  healthAddr?: HostPort;
}

/** Builds the services of a server (the store-backed ones come from server/services.ts). */
export type ServiceFactory = (ctx: ServerContext) => Promise<Service[]> | Service[];

/** Options for {@link startServer}. */
export interface StartServerOptions {
  /** Logger (default: JSON lines on stderr at the configured level). */
  log?: Logger;
  /** Extra services besides ping/health. */
  services?: ServiceFactory;
  /**
   * Deadline for a client to finish a frame it started (ms, default FRAME_READ_TIMEOUT_MS);
   * tests shorten it to watch a trickling stream get cut off.
   */
  frameTimeoutMs?: number;
}

/** A running server. */
export interface RunningServer {
  /** Bound QUIC address. */
  readonly addr: HostPort;
  /** The certificate it presents. */
  readonly certificate: ServerCertificate;
  /** Bound address of the plain-HTTP health endpoint (`health_listen`), if configured. */
  readonly healthAddr: HostPort | undefined;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Graceful shutdown. */
  close(): Promise<void>;
}

/** Start a server from a resolved configuration. */
export async function startServer(
  config: ServerConfig,
  options: StartServerOptions = {},
): Promise<RunningServer> {
  const log = options.log ?? createLogger({ level: config.logLevel });
  const listenAddr = parseHostPort(config.listen, "listen address");
  // the address first: a server that cannot have it writes no certificate and no database
  const binding = bindQuic(listenAddr);
  let certificate: ServerCertificate;
  try {
    certificate = await loadServerCertificate(config);
  } catch (e) {
    binding.close();
    throw e;
  }
  const stats = { connections: 0, requests: 0 };
  const services: Service[] = [];
  const ctx: ServerContext = {
    config,
    log,
    startedAt: Date.now(),
    stats,
    queueDepth: async () => {
      let n = 0;
      for (const s of services) n += s.queueDepth ? await s.queueDepth() : 0;
      return n;
    },
    condition: async () => {
      const reasons: string[] = [];
      for (const s of services) {
        const c = await s.condition?.();
        if (c?.status === "degraded") reasons.push(c.reason);
      }
      return reasons.length === 0
        ? { status: "ok", reason: "" }
        : { status: "degraded", reason: reasons.join("; ") };
    },
  };
  services.push({ handlers: pingHandlers(ctx) });
  try {
    services.push(...(options.services ? await options.services(ctx) : []));
  } catch (e) {
    for (const s of services) await s.close?.();
    binding.close();
    throw e;
  }

  const dispatch: HandlerTable = {};
  for (const s of services) Object.assign(dispatch, s.handlers);

  let quic: QuicServer;
  try {
    quic = binding.listen({
      certPem: certificate.certPem,
      keyPem: certificate.keyPem,
      maxStreams: MAX_STREAMS_PER_CONNECTION,
    });
  } catch (e) {
    for (const s of services) await s.close?.();
    binding.close();
    // rustls says "keys may not be consistent: KeyMismatch": name the two files instead
    if (/KeyMismatch|keys may not be consistent/.test(String((e as Error)?.message ?? e))) {
      const keyPath = config.tlsKey ?? `${config.dataDir}/${GENERATED_KEY}`;
      throw new UsageError(
        `TLS certificate ${certificate.certPath} and key ${keyPath} do not match: use the key the certificate was issued for`,
      );
    }
    throw e;
  }

  const stopReading = new AbortController();
  const connections = new Set<Deno.QuicConn>();
  const connectionTasks = new Set<Promise<void>>();
  let nextConnId = 1;
  // Slots: strangers (not logged in) per source and in all, then everyone (_admission.ts).
  const admission = new Admission<Deno.QuicConn>({
    maxConnections: config.maxConnections,
    maxUnauthenticated: config.maxUnauthenticatedConnections,
    maxUnauthenticatedPerSource: config.maxUnauthenticatedPerSource,
  });
  let evictedConnections = 0;
  const deadlineReason = `not logged in within ${config.loginDeadlineMs / 1000} s`;

  const serveConnection = async (conn: Deno.QuicConn) => {
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    const source = sourceOf(remoteAddr.hostname);
    // A connection not logged in is closed at its deadline; the server learns of login,
    // resume and logout from the accounts service setting `username`.
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const startDeadline = () => {
      clearTimeout(deadline);
      deadline = setTimeout(() => {
        log.debug("login deadline passed", { conn: state.id });
        try {
          conn.close({ closeCode: 4, reason: deadlineReason });
        } catch { /* already closed */ }
      }, config.loginDeadlineMs);
    };
    let username: string | undefined;
    const state: ConnectionState = {
      id: nextConnId++,
      remote: formatHostPort(remoteAddr),
      source,
      get username() {
        return username;
      },
      set username(name: string | undefined) {
        const was = username;
        username = name;
        if (was === undefined && name !== undefined) {
          clearTimeout(deadline);
          admission.loggedIn(conn);
        } else if (was !== undefined && name === undefined) {
          admission.loggedOut(conn);
          startDeadline();
        }
      },
      sessionHash: undefined,
      cleanups: new Set(),
    };
    const admitted = admission.admit(conn, source);
    if (admitted.kind !== "admitted") {
      // Over a cap: every request is answered `unavailable`, and the connection is closed
      // soon after (it is not counted among the served ones).
      refusedConnections++;
      if (refusedConnections % 100 === 1) {
        log.warn("connection limit reached", {
          limit: admitted.kind === "busy" ? "max_connections" : "max_unauthenticated_per_source",
          max: admitted.kind === "busy"
            ? config.maxConnections
            : config.maxUnauthenticatedPerSource,
          refused: refusedConnections,
        });
      }
      return await refuseConnection(conn, admitted.kind === "busy" ? busy() : sourceFull());
    }
    if (admitted.evicted !== undefined) {
      // strangers hold their whole share: the oldest of them makes room
      evictedConnections++;
      if (evictedConnections % 100 === 1) {
        log.warn("connections not logged in at their limit: closing the oldest", {
          max: config.maxUnauthenticatedConnections,
          closed: evictedConnections,
        });
      }
      try {
        admitted.evicted.close({ closeCode: 2, reason: "server busy" });
      } catch { /* already closed */ }
    }
    connections.add(conn);
    startDeadline();
    log.debug("connection opened", { conn: state.id, remote: state.remote });
    // A peer that sends requests and does not read the answers is cut off.
    const budget = new SendBudget(config.maxUnsentBytes, (pending) => {
      log.warn("slow reader cut off", { conn: state.id, unsent: pending });
      try {
        conn.close({ closeCode: 1, reason: "too much unread data" });
      } catch { /* already closed */ }
    });
    const streams = new Set<Promise<void>>();
    try {
      const reader = conn.incomingBidirectionalStreams.getReader();
      const onStop = () => reader.cancel().catch(() => {});
      stopReading.signal.addEventListener("abort", onStop, { once: true });
      try {
        while (true) {
          const { value: stream, done } = await reader.read();
          if (done) break;
          const task = serveStream(stream, (req, sctx) => {
            stats.requests++;
            const h = dispatch[req.kind as RequestKind] as
              | ((r: typeof req, c: ConnectionState, s: typeof sctx) => Promise<never>)
              | undefined;
            if (!h) {
              return Promise.reject(
                new UsageError(`This server does not handle ${req.kind} requests`, {
                  code: "unavailable",
                }),
              );
            }
            const answer = h(req, state, sctx);
            // registration then login: a registered connection gets the time again
            if (req.kind === "registerFinish") {
              answer.then(() => state.username === undefined && startDeadline(), () => {});
            }
            return answer;
          }, {
            log,
            signal: stopReading.signal,
            sendBudget: budget,
            ...(options.frameTimeoutMs ? { frameTimeoutMs: options.frameTimeoutMs } : {}),
          }).catch((e) =>
            log.debug("stream ended with error", { conn: state.id, error: String(e) })
          );
          // Health counts a connection while it has a request stream open: a client ends
          // its stream when it is done (and waits for the server's end of it), but a CLI
          // process exiting right after may never get its CONNECTION_CLOSE out, which would
          // leave the connection counted until the QUIC idle timeout.
          if (streams.size === 0) stats.connections++;
          streams.add(task);
          task.finally(() => {
            streams.delete(task);
            if (streams.size === 0) stats.connections--;
          });
        }
      } catch {
        // connection closed
      } finally {
        stopReading.signal.removeEventListener("abort", onStop);
      }
      await Promise.allSettled(streams);
    } finally {
      clearTimeout(deadline);
      for (const c of state.cleanups) c();
      for (const s of services) s.onDisconnect?.(state);
      admission.remove(conn);
      connections.delete(conn);
      log.debug("connection closed", { conn: state.id });
    }
  };

  let refusedConnections = 0;
  const busy = () =>
    new TransportError(
      `Server busy: it serves its maximum of ${config.maxConnections} connections; try again later`,
      { code: "unavailable" },
    );
  const sourceFull = () =>
    new TransportError(
      `Too many connections not logged in from your address (at most ${config.maxUnauthenticatedPerSource}): log in on them or close some, then try again`,
      { code: "unavailable" },
    );
  /** Answer each request on a connection over a cap with `refusal`, then close it. */
  const refuseConnection = async (conn: Deno.QuicConn, refusal: TransportError) => {
    const timer = setTimeout(() => {
      try {
        conn.close({ closeCode: 2, reason: "server busy" });
      } catch { /* already closed */ }
    }, REFUSED_CONNECTION_MS);
    try {
      const reader = conn.incomingBidirectionalStreams.getReader();
      while (true) {
        const { value: stream, done } = await reader.read();
        if (done) break;
        void serveStream(stream, () => Promise.reject(refusal), { maxInflight: 1 }).catch(() => {});
      }
    } catch {
      // closed
    } finally {
      clearTimeout(timer);
    }
  };

  const acceptLoop = (async () => {
    for await (const conn of quic.connections()) {
      const t = serveConnection(conn).catch((e) =>
        log.warn("connection failed", { error: String(e) })
      );
      connectionTasks.add(t);
      t.finally(() => connectionTasks.delete(t));
    }
  })();

  log.info("server listening", {
    listen: formatHostPort(quic.addr),
    fingerprint: certificate.fingerprint,
    cert: certificate.certPath,
  });
  if (config.authToken === DEV_AUTH_TOKEN) {
    log.warn(
      "development invite token in use: anyone who knows it can register; set QPQ_AUTH_TOKEN",
    );
  }
  if (config.maxMessageBytes < MESSAGE_BYTES_WARN_BELOW) {
    log.warn(
      `max_message_bytes = ${config.maxMessageBytes} is too small for groups: an invitation into a group of three needs over 12 KB and they grow with the group (at least ${MESSAGE_BYTES_WARN_BELOW} recommended)`,
    );
  }

  let closing: Promise<void> | undefined;
  let resolveFinished!: () => void;
  const finished = new Promise<void>((r) => (resolveFinished = r));
  const close = () => {
    closing ??= (async () => {
      log.info("server shutting down", { connections: stats.connections });
      quic.close(false);
      stopReading.abort();
      const grace = new Promise((r) => setTimeout(r, SHUTDOWN_GRACE_MS));
      await Promise.race([Promise.allSettled([...connectionTasks]), grace]);
      // Closing a QUIC connection drops unsent data: give final responses a moment to
      // reach clients before the connections go.
      await new Promise((r) => setTimeout(r, SHUTDOWN_DRAIN_MS));
      for (const c of connections) {
        try {
          c.close({ closeCode: 0, reason: "server shutting down" });
        } catch { /* already closed */ }
      }
      quic.close(true);
      await acceptLoop.catch(() => {});
      for (const s of services) await s.close?.();
      log.info("server stopped");
      resolveFinished();
    })();
    return closing;
  };

  const healthAddr = services.find((s) => s.healthAddr !== undefined)?.healthAddr;
  return { addr: quic.addr, certificate, healthAddr, finished, close };
}
