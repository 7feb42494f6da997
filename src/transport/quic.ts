/**
 * QUIC transport on Deno's built-in QUIC (`--unstable-net`): TLS 1.3, ALPN `qpq/1`.
 * Bytes only: this layer opens and accepts connections and streams; it knows nothing of
 * frames or messages.
 *
 * @module
 */
import { ALPN, CONNECT_TIMEOUT_MS, QUIC_IDLE_TIMEOUT_MS, QUIC_KEEPALIVE_MS } from "../limits.ts";
import { TransportError, UsageError } from "../errors.ts";

/** A host and port. */
export interface HostPort {
  /** Host name or IP literal (IPv6 without brackets). */
  hostname: string;
  /** UDP port. */
  port: number;
}

/** Parse `HOST:PORT` or `[V6]:PORT`; throws {@link UsageError} on anything else. */
export function parseHostPort(s: string, what = "address"): HostPort {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:\s]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`Invalid ${what} "${s}": expected HOST:PORT, e.g. 127.0.0.1:7000`);
  }
  return { hostname: m[1]!, port };
}

/** Format a {@link HostPort} as `HOST:PORT` (bracketing IPv6). */
export function formatHostPort(a: HostPort): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** Options for {@link listenQuic}. */
export interface ListenQuicOptions extends HostPort {
  /** Certificate chain, PEM. */
  certPem: string;
  /** Private key, PEM. */
  keyPem: string;
  /** ALPN protocols (default [`qpq/1`]). */
  alpn?: string[];
  /** Incoming bidirectional streams per connection. */
  maxStreams?: number;
}

/** A listening QUIC endpoint. */
export interface QuicServer {
  /** The bound address (port resolved when 0 was asked). */
  readonly addr: HostPort;
  /** Incoming connections, handshake complete. Ends when {@link close} is called. */
  connections(): AsyncIterable<Deno.QuicConn>;
  /** Stop accepting; with `closeConnections`, close the endpoint and every connection. */
  close(closeConnections?: boolean): void;
}

/**
 * A UDP address bound for QUIC, not serving yet ({@link bindQuic}): a server binds before
 * it writes a certificate or opens a database, so "address in use" leaves nothing behind.
 */
export interface QuicBinding {
  /** The bound address (port resolved when 0 was asked). */
  readonly addr: HostPort;
  /** Serve QUIC on the bound address. */
  listen(options: Omit<ListenQuicOptions, keyof HostPort>): QuicServer;
  /** Release the address (when the server does not start after all). */
  close(): void;
}

/** Bind a UDP address for QUIC. Throws {@link TransportError} when the address is taken. */
export function bindQuic(addr: HostPort): QuicBinding {
  let endpoint: Deno.QuicEndpoint;
  try {
    endpoint = new Deno.QuicEndpoint({ hostname: addr.hostname, port: addr.port });
  } catch (e) {
    throw new TransportError(
      `Cannot listen on ${formatHostPort(addr)} (QUIC): ${describeNetError(e)}`,
      { cause: e },
    );
  }
  const bound = { hostname: endpoint.addr.hostname, port: endpoint.addr.port };
  return {
    addr: bound,
    listen: (options) => serveQuic(endpoint, bound, options),
    close() {
      try {
        endpoint.close();
      } catch { /* closed already */ }
    },
  };
}

/** Listen for QUIC connections. Throws {@link TransportError} when the address is taken. */
export function listenQuic(options: ListenQuicOptions): QuicServer {
  const binding = bindQuic(options);
  try {
    return binding.listen(options);
  } catch (e) {
    binding.close();
    throw e;
  }
}

function serveQuic(
  endpoint: Deno.QuicEndpoint,
  addr: HostPort,
  options: Omit<ListenQuicOptions, keyof HostPort>,
): QuicServer {
  let listener: Deno.QuicListener;
  try {
    listener = endpoint.listen({
      alpnProtocols: options.alpn ?? [ALPN],
      cert: options.certPem,
      key: options.keyPem,
      maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
      maxConcurrentBidirectionalStreams: options.maxStreams ?? 100,
      maxConcurrentUnidirectionalStreams: 0,
    });
  } catch (e) {
    throw new TransportError(
      `Cannot listen on ${formatHostPort(addr)} (QUIC): ${describeNetError(e)}`,
      { cause: e },
    );
  }
  let stopped = false;
  return {
    addr,
    async *connections() {
      while (!stopped) {
        let incoming: Deno.QuicIncoming;
        try {
          incoming = await listener.incoming();
        } catch {
          return;
        }
        // Handshakes run concurrently; a failing one never stops the accept loop.
        const conn = await incoming.accept<false>().catch(() => undefined);
        if (conn) yield conn;
      }
    },
    close(closeConnections = false) {
      stopped = true;
      try {
        listener.stop();
      } catch { /* already stopped */ }
      if (closeConnections) endpoint.close({ closeCode: 0, reason: "server shutting down" });
    },
  };
}

/** Options for {@link connectQuic}. */
export interface ConnectQuicOptions extends HostPort {
  /** PEM certificate(s) to trust; pin the server's own certificate here. */
  caCertPem?: string | undefined;
  /** Name the certificate must be valid for (default: hostname). */
  serverName?: string | undefined;
  /** ALPN protocols (default [`qpq/1`]). */
  alpn?: string[] | undefined;
  /** Handshake timeout in ms (default {@link CONNECT_TIMEOUT_MS}). */
  timeoutMs?: number | undefined;
  /** Local address to send from (default: chosen by the system), e.g. 127.0.0.2. */
  localHostname?: string | undefined;
}

/** The error of a server that did not answer the handshake within `ms` (code "unavailable"). */
export function noAnswer(where: string, ms: number): TransportError {
  return new TransportError(`Cannot reach server at ${where}: no answer within ${ms / 1000} s`, {
    code: "unavailable",
  });
}

/** Connect to a QUIC server and complete the TLS handshake. */
export async function connectQuic(options: ConnectQuicOptions): Promise<Deno.QuicConn> {
  const where = formatHostPort(options);
  const pinned = { pinned: options.caCertPem !== undefined && options.caCertPem !== "" };
  const timeoutMs = options.timeoutMs ?? CONNECT_TIMEOUT_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // a local address asked for gets its own endpoint, closed with the connection
  const endpoint = options.localHostname
    ? new Deno.QuicEndpoint({ hostname: options.localHostname, port: 0 })
    : undefined;
  const connecting = Deno.connectQuic<false>({
    hostname: options.hostname,
    port: options.port,
    serverName: options.serverName ?? options.hostname,
    alpnProtocols: options.alpn ?? [ALPN],
    ...(options.caCertPem ? { caCerts: [options.caCertPem] } : {}),
    keepAliveInterval: QUIC_KEEPALIVE_MS,
    maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
    ...(endpoint ? { endpoint } : {}),
  });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(noAnswer(where, timeoutMs)), timeoutMs);
  });
  try {
    const conn = await Promise.race([connecting, timeout]);
    await Promise.race([conn.handshake, timeout]);
    if (endpoint) {
      conn.closed.finally(() => endpoint.close()).catch(() => {});
    }
    return conn;
  } catch (e) {
    endpoint?.close();
    if (e instanceof TransportError) {
      connecting.then((c) => c.close({ closeCode: 0, reason: "timeout" }), () => {});
      throw e;
    }
    throw new TransportError(`Cannot connect to ${where}: ${describeNetError(e, pinned)}`, {
      code: "unavailable",
      cause: e,
    });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Turn a Deno/rustls error into a short human phrase. `pinned`: a certificate to trust was
 * given (else the system's roots were used, and an unknown issuer means `--ca-cert` is missing).
 */
export function describeNetError(e: unknown, options: { pinned?: boolean } = {}): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (
    /UnknownIssuer|BadSignature|invalid peer certificate|NotValidForName|not valid for name/i.test(
      msg,
    )
  ) {
    if (/not valid for name|NotValidForName/i.test(msg)) {
      return "the server certificate is not valid for this host name";
    }
    return options.pinned
      ? "the server certificate is not the one in --ca-cert (give the file the server printed at start as `certificate: …`)"
      : "the server certificate is not trusted: pass --ca-cert FILE (or QPQ_CA_CERT) with the server's certificate, the file it printed at start as `certificate: DATA_DIR/server-cert.pem`";
  }
  if (/CaUsedAsEndEntity/.test(msg)) return "the server certificate is a CA certificate";
  if (/AddrInUse|address already in use/i.test(msg)) return "address already in use";
  if (/AddrNotAvailable|cannot assign/i.test(msg)) return "address not available on this machine";
  if (/PermissionDenied|permission/i.test(msg)) return "permission denied";
  if (/timed out|TimedOut/i.test(msg)) return "no answer (is the server running?)";
  if (/alpn|no_application_protocol|\b120\b/i.test(msg)) return "the server does not speak qpq/1";
  if (/refused|ConnectionRefused/i.test(msg)) return "connection refused (is the server running?)";
  const first = msg.split("\n")[0] ?? msg;
  return first.length > 160 ? first.slice(0, 160) + "…" : first;
}
