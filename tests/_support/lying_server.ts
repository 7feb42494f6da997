/**
 * Test support: a lying server. A QUIC proxy in front of a real `qpq server` that holds the
 * server's own certificate and key (as a malicious operator would), decodes every frame in
 * both directions and lets a test rewrite, drop, repeat or inject frames. Clients connect to
 * it exactly as to the real server; the real server does the honest work underneath.
 *
 * ```
 * client ──QUIC──► LyingServer ──QUIC──► qpq server
 *                  rewrite(frame, direction) → frames to forward (0, 1 or more)
 * ```
 *
 * @module
 */
import { connectQuic, listenQuic, parseHostPort } from "../../src/transport/quic.ts";
import {
  decodeFrame,
  type DeliveredMessage,
  encodeFrame,
  type Frame,
  FrameReader,
  lengthPrefixed,
} from "../../src/wire/mod.ts";
import { GENERATED_CERT, GENERATED_KEY } from "../../src/server/tls.ts";

/** Which way a frame travels. */
export type Direction = "toServer" | "toClient";

/**
 * A test's lie: given a decoded frame, the frames to forward instead. Return `undefined`
 * to forward it unchanged, `[]` to drop it.
 */
export type Rewrite = (frame: Frame, direction: Direction) => Frame[] | undefined;

/**
 * A lie about what is delivered: `f` gets the messages of every fetch page and push going to
 * the client and returns what the client gets instead (dropped, changed, reordered, added).
 */
export function onDelivered(f: (messages: DeliveredMessage[]) => DeliveredMessage[]): Rewrite {
  return (frame, direction) => {
    if (direction !== "toClient") return undefined;
    if (frame.type === "push") return [{ ...frame, push: { messages: f(frame.push.messages) } }];
    if (frame.type === "response" && frame.response.kind === "messages") {
      return [{ ...frame, response: { ...frame.response, messages: f(frame.response.messages) } }];
    }
    return undefined;
  };
}

/** A lie about the directory: every identity key the server reports is `key`. */
export function swapIdentityKeys(key: Uint8Array): Rewrite {
  return (frame, direction) =>
    direction === "toClient" && frame.type === "response" &&
      frame.response.kind === "identityKey"
      ? [{ ...frame, response: { ...frame.response, key } }]
      : undefined;
}

/** A running lying server. */
export interface LyingServer {
  /** Address clients connect to. */
  addr: string;
  /** The real server's certificate (clients pin it, as they would the real server). */
  certPem: string;
  /** The current lie; `undefined` forwards everything unchanged. */
  rewrite: Rewrite | undefined;
  /** Every frame that passed (after rewriting), in order, with its direction. */
  log: { direction: Direction; frame: Frame }[];
  close(): Promise<void>;
}

/** Start a lying server in front of the real server `upstream` (its data dir holds the key). */
export async function startLyingServer(
  upstream: { addr: string; dataDir: string; certPem: string },
): Promise<LyingServer> {
  const certPem = await Deno.readTextFile(`${upstream.dataDir}/${GENERATED_CERT}`);
  const keyPem = await Deno.readTextFile(`${upstream.dataDir}/${GENERATED_KEY}`);
  const listener = listenQuic({ hostname: "127.0.0.1", port: 0, certPem, keyPem, maxStreams: 512 });
  const conns = new Set<Deno.QuicConn>();
  const tasks = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };

  const self: LyingServer = {
    addr: `127.0.0.1:${listener.addr.port}`,
    certPem: upstream.certPem,
    rewrite: undefined,
    log: [],
    async close() {
      listener.close(true);
      for (const c of conns) {
        try {
          c.close({ closeCode: 0, reason: "lying server closed" });
        } catch { /* closed */ }
      }
      await Promise.allSettled([...tasks]);
    },
  };

  async function pump(
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
    direction: Direction,
  ): Promise<void> {
    const reader = new FrameReader(readable);
    const writer = writable.getWriter();
    try {
      while (true) {
        const bytes = await reader.next();
        if (bytes === null) break;
        const frame = decodeFrame(bytes);
        const out = self.rewrite?.(frame, direction) ?? [frame];
        for (const f of out) {
          self.log.push({ direction, frame: f });
          await writer.write(lengthPrefixed(encodeFrame(f)));
        }
      }
      await writer.close();
    } catch {
      try {
        await writer.abort();
      } catch { /* gone */ }
    }
  }

  async function serve(client: Deno.QuicConn): Promise<void> {
    conns.add(client);
    let server: Deno.QuicConn | undefined;
    try {
      server = await connectQuic({ ...parseHostPort(upstream.addr), caCertPem: upstream.certPem });
      conns.add(server);
      const streams = client.incomingBidirectionalStreams.getReader();
      while (true) {
        const { value: down, done } = await streams.read();
        if (done) break;
        const up = await server.createBidirectionalStream();
        track(pump(down.readable, up.writable, "toServer"));
        track(pump(up.readable, down.writable, "toClient"));
      }
    } catch {
      /* a connection closed */
    } finally {
      for (const c of [client, server]) {
        if (!c) continue;
        conns.delete(c);
        try {
          c.close({ closeCode: 0, reason: "lying server: peer gone" });
        } catch { /* closed */ }
      }
    }
  }

  track((async () => {
    for await (const c of listener.connections()) track(serve(c));
  })());
  return self;
}
