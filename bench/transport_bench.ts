/**
 * Transport bench: a raw QUIC echo round trip (length-prefixed bytes on one long-lived
 * stream, no qpq code on the path) beside a qpq ping round trip (Cap'n Proto frame, RPC
 * layer, dispatch) on the same machine in the same run. Target: ping >= 80% of raw echo
 * round trips per second.
 *
 *   deno task bench bench/transport_bench.ts
 *
 * @module
 */
import { connectQuic, generateSelfSignedCertificate, listenQuic } from "../src/transport/mod.ts";
import { FrameReader, lengthPrefixed } from "../src/wire/mod.ts";
import { connectServer } from "../src/client/connection.ts";
import { startTestServer } from "../tests/_support/server.ts";

const ECHO_ALPN = "qpq-echo";
const pair = await generateSelfSignedCertificate();
const echoServer = listenQuic({ hostname: "127.0.0.1", port: 0, ...pair, alpn: [ECHO_ALPN] });
(async () => {
  for await (const conn of echoServer.connections()) {
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

const echoConn = await connectQuic({
  hostname: "127.0.0.1",
  port: echoServer.addr.port,
  caCertPem: pair.certPem,
  alpn: [ECHO_ALPN],
  serverName: "localhost",
});
const echoStream = await echoConn.createBidirectionalStream();
const echoWriter = echoStream.writable.getWriter();
const echoReader = new FrameReader(echoStream.readable);
const payload = new Uint8Array(48); // about the size of an encoded ping frame

const qpq = await startTestServer();
const client = await connectServer({ server: qpq.addr, caCertPem: qpq.certPem });

Deno.bench({
  name: "raw QUIC echo round trip (48 B, one stream)",
  group: "round trip",
  baseline: true,
  async fn() {
    await echoWriter.write(lengthPrefixed(payload));
    await echoReader.next();
  },
});

Deno.bench({
  name: "qpq ping round trip (Cap'n Proto + RPC)",
  group: "round trip",
  async fn() {
    await client.ping();
  },
});

globalThis.addEventListener("unload", () => {
  client.close();
  qpq.close();
  echoConn.close({ closeCode: 0, reason: "" });
  echoServer.close(true);
});
