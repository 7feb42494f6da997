/**
 * Transport bench: a raw QUIC echo round trip (length-prefixed bytes on one long-lived
 * stream, no qpq code on the path) beside a qpq ping round trip (Cap'n Proto frame, RPC
 * layer, dispatch) on the same machine in the same run. Target: ping >= 80% of raw echo
 * round trips per second.
 *
 *   deno bench --unstable-net --allow-net=127.0.0.1,localhost --allow-read --allow-write \
 *     --allow-env --allow-sys=hostname,networkInterfaces bench/transport_bench.ts
 *
 * @module
 */
import { startRawEcho } from "./_echo.ts";
import { connectServer } from "../src/client/connection.ts";
import { startTestServer } from "../tests/_support/server.ts";

const echo = await startRawEcho();
const payload = new Uint8Array(48); // about the size of an encoded ping frame

const qpq = await startTestServer();
const client = await connectServer({ server: qpq.addr, caCertPem: qpq.certPem });

Deno.bench({
  name: "raw QUIC echo round trip (48 B, one stream)",
  group: "round trip",
  baseline: true,
  async fn() {
    await echo.roundTrip(payload);
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
  echo.close();
});
