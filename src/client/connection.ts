/**
 * A client's connection to a qpq server: one QUIC connection and one long-lived
 * bidirectional stream carrying concurrent requests and server pushes.
 *
 * @module
 */
import { certificateToPem } from "../transport/cert.ts";
import { connectQuic, noAnswer, parseHostPort } from "../transport/quic.ts";

export { noAnswer };
import {
  type Push,
  type Request,
  type ResponseKind,
  type ResponseOf,
  RpcClient,
} from "../wire/mod.ts";
import { type QpqError, TransportError, UsageError } from "../errors.ts";
import { CLOSE_REASON_WAIT_MS } from "../limits.ts";

/** Options for {@link connectServer}. */
export interface ConnectOptions {
  /** `HOST:PORT` of the server. */
  server: string;
  /** PEM certificate text to pin (the server's own certificate). */
  caCertPem?: string | undefined;
  /** Name the certificate must be valid for (default: the host). */
  serverName?: string | undefined;
  /** Request timeout (ms); also the handshake's unless {@link connectTimeoutMs} is set. */
  timeoutMs?: number | undefined;
  /** How long the QUIC handshake may take (ms; default {@link timeoutMs}, else 10 s). */
  connectTimeoutMs?: number | undefined;
  /** Local address to send from (default: chosen by the system). */
  localHostname?: string | undefined;
  /** Called with each server push. */
  onPush?: ((push: Push, subscriptionId: number) => void) | undefined;
  /** Called when the connection drops. */
  onClose?: ((error: QpqError | undefined) => void) | undefined;
}

/**
 * What the client needs of a server connection. {@link ServerConnection} is the real one;
 * the simulation wraps it to inject faults (lost answers, repeated pushes).
 */
export interface ServerLink {
  /** The server address. */
  readonly server: string;
  /** Send one request and wait for its answer. */
  call<K extends ResponseKind>(
    request: Request,
    expect: K,
    options?: { timeoutMs?: number; requestId?: number },
  ): Promise<ResponseOf<K>>;
  /** Close the connection. */
  close(): Promise<void>;
}

/** How the client opens a {@link ServerLink} (default {@link connectServer}). */
export type Connector = (options: ConnectOptions) => Promise<ServerLink>;

/** An open connection to a server. */
export class ServerConnection implements ServerLink {
  #conn: Deno.QuicConn;
  #rpc: RpcClient;
  /** The server address this connection went to. */
  readonly server: string;

  constructor(server: string, conn: Deno.QuicConn, rpc: RpcClient) {
    this.server = server;
    this.#conn = conn;
    this.#rpc = rpc;
  }

  /**
   * Send one request; see {@link RpcClient.call}. When the server closed the connection
   * with a reason ("not logged in within 10 s", "server busy"), the error says it.
   */
  async call<K extends ResponseKind>(
    request: Request,
    expect: K,
    options: { timeoutMs?: number; requestId?: number } = {},
  ): Promise<ResponseOf<K>> {
    try {
      return await this.#rpc.call(request, expect, options);
    } catch (e) {
      throw await this.#explain(e);
    }
  }

  /** A connection-lost error with the reason the server gave for closing, if it gave one. */
  async #explain(e: unknown): Promise<unknown> {
    if (!(e instanceof TransportError) || e.code !== "transport") return e;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const info = await Promise.race([
      this.#conn.closed.catch(() => undefined),
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), CLOSE_REASON_WAIT_MS)),
    ]).finally(() => clearTimeout(timer));
    const reason = info?.reason.slice(0, 120);
    if (!reason || reason === "bye") return e;
    return new TransportError(`The server closed the connection: ${reason}`, {
      code: "unavailable",
      cause: e,
    });
  }

  /** Allocate a request id (for subscriptions). */
  nextRequestId(): number {
    return this.#rpc.nextRequestId();
  }

  /** Measure one ping round trip (ms, sub-millisecond resolution). */
  async ping(): Promise<{ rttMs: number; serverTimeMs: number }> {
    const t0 = performance.now();
    const pong = await this.call(
      { kind: "ping", clientTimeMs: Date.now(), payload: new Uint8Array(0) },
      "pong",
    );
    return { rttMs: performance.now() - t0, serverTimeMs: pong.serverTimeMs };
  }

  /** Resolves when the connection's stream has ended. */
  get done(): Promise<void> {
    return this.#rpc.done;
  }

  /** Close the stream and the connection. */
  async close(): Promise<void> {
    await this.#rpc.close().catch(() => {});
    try {
      this.#conn.close({ closeCode: 0, reason: "bye" });
    } catch { /* already closed */ }
  }
}

/** Read a certificate file (PEM or DER) for pinning. */
export async function readCaCert(path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : "not readable";
    throw new UsageError(`Cannot read CA certificate ${path}: ${why}`);
  }
  return certificateToPem(bytes, `CA certificate ${path}`);
}

/** Connect to a server and open the request stream. */
export async function connectServer(options: ConnectOptions): Promise<ServerConnection> {
  const addr = parseHostPort(options.server, "server address");
  const conn = await connectQuic({
    ...addr,
    caCertPem: options.caCertPem,
    serverName: options.serverName,
    timeoutMs: options.connectTimeoutMs ?? options.timeoutMs,
    localHostname: options.localHostname,
  });
  let stream: Deno.QuicBidirectionalStream;
  try {
    stream = await conn.createBidirectionalStream();
  } catch (e) {
    conn.close({ closeCode: 0, reason: "stream failed" });
    throw new TransportError(`Cannot open a stream to ${options.server}`, { cause: e });
  }
  const rpc = new RpcClient(
    stream,
    {
      timeoutMs: options.timeoutMs,
      onPush: options.onPush,
      onClose: options.onClose,
    } as ConstructorParameters<typeof RpcClient>[1],
  );
  return new ServerConnection(options.server, conn, rpc);
}
