import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import { connectServer } from "../src/client/connection.ts";
import { connectQuic, generateSelfSignedCertificate, parseHostPort } from "../src/transport/mod.ts";
import {
  type BidiStream,
  encodeFrame,
  FrameReader,
  FrameWriter,
  lengthPrefixed,
  openFrame,
  type Response,
  RpcClient,
  serveStream,
} from "../src/wire/mod.ts";
import { TransportError, ValidationError } from "../src/errors.ts";
import { MAX_FRAME_BYTES } from "../src/limits.ts";
import { resolveConfig, startServer } from "../src/server/mod.ts";
import { silentLogger } from "../src/log.ts";

Deno.test("connectServer pings a real server over QUIC with the pinned certificate", async () => {
  const srv = await startTestServer();
  try {
    const conn = await connectServer({ server: srv.addr, caCertPem: srv.certPem });
    const { rttMs } = await conn.ping();
    assert(rttMs > 0 && rttMs < 5000);
    const health = await conn.call({ kind: "health" }, "health");
    assertEquals(health.status, "ok");
    assertEquals(health.connectedClients, 1);
    await conn.close();
  } finally {
    await srv.close();
  }
});

Deno.test("connectQuic refuses another self-signed certificate for the same name", async () => {
  const srv = await startTestServer();
  try {
    const other = await generateSelfSignedCertificate();
    const err = await assertRejects(
      () => connectServer({ server: srv.addr, caCertPem: other.certPem }),
      TransportError,
    );
    assertStringIncludes(err.message, "not the one in --ca-cert");
    assert(!err.message.includes("\n"), "one line");
    await assertRejects(() => connectServer({ server: srv.addr }), TransportError, "certificate");
  } finally {
    await srv.close();
  }
});

Deno.test("connectQuic refuses a server that does not speak qpq/1", async () => {
  const srv = await startTestServer();
  try {
    const { port } = parseHostPort(srv.addr);
    await assertRejects(
      () =>
        connectQuic({
          hostname: "127.0.0.1",
          port,
          caCertPem: srv.certPem,
          serverName: "localhost",
          alpn: ["h3"],
        }),
      TransportError,
    );
  } finally {
    await srv.close();
  }
});

Deno.test("connectServer to a port with no server fails with one line", async () => {
  const srv = await startTestServer();
  const addr = srv.addr;
  await srv.close();
  const err = await assertRejects(
    () => connectServer({ server: addr, caCertPem: srv.certPem, timeoutMs: 1500 }),
    TransportError,
  );
  assert(!err.message.includes("\n"));
  assertStringIncludes(err.message, addr);
});

Deno.test("startServer keeps its generated certificate across a restart", async () => {
  const first = await startTestServer({ keepDataDir: true });
  const fp = first.server.certificate.fingerprint;
  assert(first.server.certificate.createdNow);
  const keyInfo = await Deno.stat(`${first.dataDir}/server-key.pem`);
  assertEquals(keyInfo.mode! & 0o777, 0o600);
  await first.close();
  const second = await startTestServer({ dataDir: first.dataDir });
  try {
    assertEquals(second.server.certificate.fingerprint, fp);
    assert(!second.server.certificate.createdNow);
    const conn = await connectServer({ server: second.addr, caCertPem: first.certPem });
    await conn.ping();
    await conn.close();
  } finally {
    await second.close();
    await Deno.remove(first.dataDir, { recursive: true });
  }
});

Deno.test("RpcClient runs many concurrent requests on one connection", async () => {
  const srv = await startTestServer();
  try {
    const conn = await connectServer({ server: srv.addr, caCertPem: srv.certPem });
    const results = await Promise.all(
      Array.from(
        { length: 300 },
        (_, i) =>
          conn.call({ kind: "ping", clientTimeMs: i, payload: new Uint8Array([i & 255]) }, "pong"),
      ),
    );
    results.forEach((r, i) => {
      assertEquals(r.clientTimeMs, i);
      assertEquals(r.payload, new Uint8Array([i & 255]));
    });
    await conn.close();
  } finally {
    await srv.close();
  }
});

async function rawStream(addr: string, certPem: string) {
  const { port } = parseHostPort(addr);
  const conn = await connectQuic({
    hostname: "127.0.0.1",
    port,
    caCertPem: certPem,
    serverName: "localhost",
  });
  const stream = await conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const reader = new FrameReader(stream.readable);
  const next = async (): Promise<{ requestId: number; response: Response } | null> => {
    const bytes = await reader.next();
    if (!bytes) return null;
    const f = openFrame(bytes).decode();
    assert(f.type === "response");
    return { requestId: f.requestId, response: f.response };
  };
  return { conn, writer, next };
}

const ping = (id: number, version = 1) =>
  encodeFrame({
    version,
    requestId: id,
    type: "request",
    request: { kind: "ping", clientTimeMs: id, payload: new Uint8Array(0) },
  });

Deno.test("serveStream answers garbage, wrong-version, oversize and truncated frames and keeps serving", async () => {
  const srv = await startTestServer();
  const honest = await connectServer({ server: srv.addr, caCertPem: srv.certPem });
  try {
    const raw = await rawStream(srv.addr, srv.certPem);
    // garbage inside a well-formed length prefix: error, the stream goes on
    await raw.writer.write(lengthPrefixed(crypto.getRandomValues(new Uint8Array(40))));
    const e1 = await raw.next();
    assertEquals(e1?.response.kind, "error");
    assertEquals((e1?.response as { code: string }).code, "validation");
    // wrong wire version: error naming the version, with the request id
    await raw.writer.write(lengthPrefixed(ping(77, 9)));
    const e2 = await raw.next();
    assertEquals(e2?.requestId, 77);
    assertEquals((e2?.response as { code: string }).code, "unsupported_version");
    assertStringIncludes((e2?.response as { message: string }).message, "version 9");
    // the same stream still serves
    await raw.writer.write(lengthPrefixed(ping(5)));
    assertEquals((await raw.next())?.response.kind, "pong");
    // oversize announcement: error, then the stream is closed
    const big = new Uint8Array(4);
    new DataView(big.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
    await raw.writer.write(big);
    const e3 = await raw.next();
    assertEquals((e3?.response as { code: string }).code, "too_large");
    assertEquals(await raw.next(), null);
    raw.conn.close();

    // truncated frame then end of stream: the server drops that stream only
    const raw2 = await rawStream(srv.addr, srv.certPem);
    const p = lengthPrefixed(ping(9));
    await raw2.writer.write(p.subarray(0, p.length - 5));
    await raw2.writer.close();
    const e4 = await raw2.next();
    assertEquals(e4?.response.kind, "error");
    raw2.conn.close();

    // an honest client on another connection was never disturbed
    await honest.ping();
    const h = await honest.call({ kind: "health" }, "health");
    assertEquals(h.status, "ok");
  } finally {
    await honest.close();
    await srv.close();
  }
});

function pipePair(): [BidiStream, BidiStream] {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  return [{ readable: a.readable, writable: b.writable }, {
    readable: b.readable,
    writable: a.writable,
  }];
}

Deno.test("serveStream cuts off a peer that trickles a frame past the deadline", async () => {
  const [client, server] = pipePair();
  const served = serveStream(server, () => Promise.resolve({ kind: "ok" }), {
    frameTimeoutMs: 150,
  });
  const writer = client.writable.getWriter();
  const reader = new FrameReader(client.readable);
  const frame = lengthPrefixed(ping(1));
  const t0 = performance.now();
  await writer.write(frame.subarray(0, 3)); // one byte a second would never finish
  const reply = await reader.next();
  assert(reply !== null);
  const f = openFrame(reply).decode();
  assert(f.type === "response" && f.response.kind === "error");
  assertEquals((f.response as { code: string }).code, "timeout");
  assert(performance.now() - t0 < 2000);
  await served;
  await writer.close().catch(() => {});
});

Deno.test("RpcClient times out a request the server never answers", async () => {
  const [client, server] = pipePair();
  const rpc = new RpcClient(client, { timeoutMs: 100 });
  const sreader = new FrameReader(server.readable);
  const got = sreader.next();
  await assertRejects(
    () => rpc.call({ kind: "health" }, "health"),
    TransportError,
    "did not answer",
  );
  assert(await got !== null);
  await server.writable.close();
  await rpc.close();
});

Deno.test("RpcClient times out each call at its own deadline, answered calls in between", async () => {
  // one timer serves every call: armed for the earliest deadline, moved earlier when a
  // call with a shorter timeout comes after a longer one, re-armed after each expiry
  const [client, server] = pipePair();
  const rpc = new RpcClient(client, { timeoutMs: 5_000 });
  const sreader = new FrameReader(server.readable);
  const swriter = new FrameWriter(server.writable);
  const t0 = performance.now();
  const long = rpc.call({ kind: "health" }, "health", { timeoutMs: 400 });
  const longFailed = assertRejects(() => long, TransportError, "within 0.4 s");
  const short = rpc.call({ kind: "health" }, "health", { timeoutMs: 100 });
  await assertRejects(() => short, TransportError, "within 0.1 s");
  const shortMs = performance.now() - t0;
  assert(shortMs >= 99 && shortMs < 350, `short call failed after ${shortMs} ms`);
  // a call answered in time resolves, and does not disturb the long one's deadline
  const answered = rpc.call({ kind: "ping", clientTimeMs: 1, payload: new Uint8Array(0) }, "ok");
  for (let i = 0; i < 3; i++) await sreader.next();
  await swriter.write({ version: 1, requestId: 3, type: "response", response: { kind: "ok" } });
  await answered;
  await longFailed;
  const longMs = performance.now() - t0;
  assert(longMs >= 399 && longMs < 1500, `long call failed after ${longMs} ms`);
  await swriter.close();
  await rpc.close();
});

Deno.test("RpcClient rejects a response of an unexpected kind", async () => {
  const [client, server] = pipePair();
  const served = serveStream(server, () => Promise.resolve({ kind: "ok" }));
  const rpc = new RpcClient(client);
  await assertRejects(() => rpc.call({ kind: "health" }, "health"), ValidationError, "expected");
  await rpc.close();
  await served;
});

Deno.test("server.close finishes in-flight requests before stopping", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-test-" });
  const config = resolveConfig({ listen: "127.0.0.1:0", dataDir }, {}, {});
  const server = await startServer(config, {
    log: silentLogger,
    services: () => [{
      handlers: {
        listChannels: async () => {
          await new Promise((r) => setTimeout(r, 300));
          return { kind: "channels", channels: [] };
        },
      },
    }],
  });
  const conn = await connectServer({
    server: `127.0.0.1:${server.addr.port}`,
    caCertPem: server.certificate.certPem,
  });
  const slow = conn.call({ kind: "listChannels" }, "channels");
  await new Promise((r) => setTimeout(r, 50));
  const closing = server.close();
  const result = await slow;
  assertEquals(result.channels, []);
  await closing;
  await conn.close();
});
