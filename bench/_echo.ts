/**
 * The raw QUIC echo every transport figure is compared with: a server that sends each
 * length-prefixed frame straight back, and a client with one long-lived stream. No qpq
 * code on the path except the framing.
 *
 * @module
 */
import { connectQuic, generateSelfSignedCertificate, listenQuic } from "../src/transport/mod.ts";
import { FrameReader, lengthPrefixed } from "../src/wire/mod.ts";

/** A connected raw echo pair. */
export interface RawEcho {
  /** One round trip of `payload`. */
  roundTrip(payload: Uint8Array): Promise<void>;
  /** `n` round trips in flight at once on the one stream: `n` frames out, then `n` back. */
  roundTrips(payload: Uint8Array, n: number): Promise<void>;
  /** Tear everything down. */
  close(): void;
}

/** Start an echo server on loopback and connect to it. */
export async function startRawEcho(): Promise<RawEcho> {
  const alpn = "qpq-echo";
  const pair = await generateSelfSignedCertificate();
  const server = listenQuic({ hostname: "127.0.0.1", port: 0, ...pair, alpn: [alpn] });
  (async () => {
    for await (const conn of server.connections()) {
      (async () => {
        for await (const stream of conn.incomingBidirectionalStreams) {
          const reader = new FrameReader(stream.readable);
          const writer = stream.writable.getWriter();
          (async () => {
            for (let f = await reader.next(); f; f = await reader.next()) {
              await writer.write(lengthPrefixed(f));
            }
          })().catch(() => {});
        }
      })().catch(() => {});
    }
  })();
  const conn = await connectQuic({
    hostname: "127.0.0.1",
    port: server.addr.port,
    caCertPem: pair.certPem,
    alpn: [alpn],
    serverName: "localhost",
  });
  const stream = await conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const reader = new FrameReader(stream.readable);
  return {
    async roundTrip(payload) {
      await writer.write(lengthPrefixed(payload));
      await reader.next();
    },
    async roundTrips(payload, n) {
      const frame = lengthPrefixed(payload);
      const sent = Array.from({ length: n }, () => writer.write(frame));
      for (let i = 0; i < n; i++) await reader.next();
      await Promise.all(sent);
    },
    close() {
      conn.close({ closeCode: 0, reason: "" });
      server.close(true);
    },
  };
}
