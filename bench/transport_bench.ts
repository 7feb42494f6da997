/**
 * Transport bench: a raw QUIC echo round trip (length-prefixed bytes on one long-lived
 * stream, no qpq code on the path) beside a qpq ping round trip (Cap'n Proto frame, RPC
 * layer, dispatch) on the same machine in the same run. Target: ping >= 80% of raw echo
 * round trips per second.
 *
 *   deno bench --unstable-net --allow-net=127.0.0.1,localhost --allow-read --allow-write \
 *     --allow-env --allow-sys=hostname,networkInterfaces bench/transport_bench.ts
 *
 * Figures. 2026-11-26, quiet machine: raw echo 5,074/s, ping 2,779/s (55 %). 2026-12-07, the
 * RPC path cut down (encode into the length-prefixed buffer from one reused arena, decode a
 * single-segment frame from one copy, one deadline timer per client, the frame reader's buffer
 * reused), load average 6-8 from other jobs, base (7ad4d54) and after alternating, 2 runs each
 * of this bench: the averages are useless here (echo 1,038-4,798/s between runs); the fastest
 * round trip: echo 66-81 µs -> 57-58 µs, ping 166-193 µs -> 101-136 µs. CPU per round trip
 * (scripts/profile_rpc.ts --mode echo|ping --profile 0, client and server in one process, 4 runs
 * each): echo 104-158 µs either way, ping 214-352 µs -> 190-229 µs: ping/echo 0.45-0.52 ->
 * 0.52-0.68 in CPU. Goal (>= 80 %) not met; see README, "Ping".
 *
 * @module
 */
import { startRawEcho } from "./_echo.ts";
import { encodeFramePrefixed, type Frame, lengthPrefixed, openFrame } from "../src/wire/mod.ts";
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

// ---- the codec alone: one ping frame, what each side of a round trip does twice ----

const pingFrame: Frame = {
  version: 1,
  requestId: 7,
  type: "request",
  request: { kind: "ping", clientTimeMs: Date.now(), payload: new Uint8Array(0) },
};
const pingBytes = encodeFramePrefixed(pingFrame).slice(4);

Deno.bench({
  name: "length prefix + copy of a ping frame (no codec)",
  group: "frame codec",
  baseline: true,
  fn() {
    lengthPrefixed(pingBytes);
  },
});

Deno.bench({
  name: "encode a ping frame with its length prefix",
  group: "frame codec",
  fn() {
    encodeFramePrefixed(pingFrame);
  },
});

Deno.bench({
  name: "decode a ping frame (segment table, pointer walk, fields)",
  group: "frame codec",
  fn() {
    openFrame(pingBytes).decode();
  },
});

globalThis.addEventListener("unload", () => {
  client.close();
  qpq.close();
  echo.close();
});
