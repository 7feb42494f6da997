/**
 * The server's operations side: health over QUIC and plain HTTP, graceful shutdown of a
 * spawned `qpq server` under SIGTERM with a client connected, and structured logs that
 * carry no password, token or key.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import { readUntil, spawnQpq } from "./_support/cli.ts";
import { registerUser } from "./_support/fuzz.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../src/auth/mod.ts";
import { IdentityKeyPair } from "../src/crypto/identity.ts";
import { randomBytes, toBase64, toHex, utf8 } from "../src/bytes.ts";
import { VERSION } from "../src/version.ts";
import { MESSAGE_BYTES_WARN_BELOW, WIRE_VERSION } from "../src/limits.ts";
import type { QpqError } from "../src/errors.ts";
import { DatabaseSync } from "node:sqlite";
import { resolveConfig, startServer } from "../src/server/mod.ts";
import { createLogger, silentLogger } from "../src/log.ts";
import { createServices } from "../src/server/services.ts";
import { generateSelfSignedCertificate } from "../src/transport/cert.ts";

const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

async function register(conn: ServerConnection, username: string, pw: string, token: string) {
  const start = await clientRegistrationStart(pw);
  const started = await conn.call(
    { kind: "registerStart", username, request: start.request, authToken: token },
    "registerStarted",
  );
  const fin = await clientRegistrationFinish(start.state, pw, started.data, {
    keyStretching: FAST,
  });
  await conn.call({
    kind: "registerFinish",
    username,
    record: fin.record,
    authToken: token,
    identityKey: IdentityKeyPair.generate().publicKey,
  }, "ok");
}

/** Log in; returns the session token, or undefined when the password is wrong. */
async function login(conn: ServerConnection, username: string, pw: string) {
  const start = await clientLoginStart(pw);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, pw, started.response, { keyStretching: FAST });
  if (fin.kind !== "ok") return undefined;
  const s = await conn.call(
    { kind: "loginFinish", username, finish: fin.finishRequest, loginId: started.loginId },
    "session",
  );
  return s.token;
}

function enqueue(conn: ServerConnection, channelId: Uint8Array, payload: Uint8Array) {
  return conn.call({
    kind: "enqueue",
    channelId,
    messageId: randomBytes(16),
    payload,
    messageKind: "application",
    epoch: 0,
    recipients: [],
  }, "enqueued");
}

/** Remove a test's temp dir (left in place when the test failed, for a look). */
function removeDir(dir: string): Promise<void> {
  return Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** Start `qpq server` on a temp dir; resolves once it printed its fingerprint. */
async function spawnServer(env: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "qpq-ops-" });
  const child = spawnQpq(["server", "--listen", "127.0.0.1:0", "--data-dir", `${dir}/data`], {
    cwd: dir,
    env,
  });
  const stderr = new Response(child.stderr).text();
  const { lines, reader } = await readUntil(child.stdout, (l) => l.startsWith("SHA-256"));
  const addr = /listening on (\S+)/.exec(lines.join("\n"))![1]!;
  const certPem = await Deno.readTextFile(`${dir}/data/server-cert.pem`);
  const rest = (async () => {
    const out = [...lines];
    let buf = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
    }
    return [...out, ...buf.split("\n").filter((l) => l !== "")];
  })();
  return { child, addr, certPem, stderr, stdout: rest, dir };
}

Deno.test("health over QUIC reports version, uptime, connected clients and queue depth", async () => {
  const ts = await startTestServer();
  try {
    const a = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    const h0 = await a.call({ kind: "health" }, "health");
    assertEquals(h0.status, "ok");
    assertEquals(h0.version, VERSION);
    assertEquals(h0.wireVersion, WIRE_VERSION);
    assertEquals(h0.connectedClients, 1);
    assertEquals(h0.queueDepth, 0);
    assert(h0.uptimeSeconds >= 0 && h0.uptimeSeconds < 60);

    const b = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    await register(a, "alice", "pa", "devtoken");
    await register(b, "bob", "pb", "devtoken");
    await login(a, "alice", "pa");
    const ch = (await a.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
    for (let i = 0; i < 3; i++) await enqueue(a, ch, utf8(`m${i}`));
    const h1 = await b.call({ kind: "health" }, "health");
    assertEquals(h1.connectedClients, 2);
    assertEquals(h1.queueDepth, 3);
    await b.close();
    // the server notices the closed connection
    const deadline = Date.now() + 3000;
    let h2 = await a.call({ kind: "health" }, "health");
    while (h2.connectedClients !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      h2 = await a.call({ kind: "health" }, "health");
    }
    assertEquals(h2.connectedClients, 1);
    await a.close();
  } finally {
    await ts.close();
  }
  await removeDir(ts.dataDir);
});

Deno.test("health_listen serves GET /health as JSON with status ok and 404 elsewhere", async () => {
  // port 0: the OS picks a free port and the server says which (no pick-then-close race)
  const ts = await startTestServer({ file: { health_listen: "127.0.0.1:0" } });
  const port = ts.server.healthAddr!.port;
  assert(port > 0);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`);
    assertEquals(res.status, 200);
    assertStringIncludes(res.headers.get("content-type") ?? "", "application/json");
    const body = await res.json();
    assertEquals(body.status, "ok");
    assertEquals(body.version, VERSION);
    assertEquals(body.wireVersion, WIRE_VERSION);
    assertEquals(body.queueDepth, 0);
    assertEquals(typeof body.uptimeSeconds, "number");
    assertEquals(typeof body.connectedClients, "number");
    // nothing secret in it: exactly these keys
    assertEquals(
      Object.keys(body).sort(),
      ["connectedClients", "queueDepth", "status", "uptimeSeconds", "version", "wireVersion"],
    );
    for (const path of ["/", "/healthz", "/health/x", "/metrics"]) {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      assertEquals(r.status, 404, path);
      await r.body?.cancel();
    }
  } finally {
    await ts.close();
  }
  // closed with the server
  let refused = false;
  try {
    const r = await fetch(`http://127.0.0.1:${port}/health`);
    await r.body?.cancel();
  } catch {
    refused = true;
  }
  assert(refused, "the health endpoint stops with the server");
  await removeDir(ts.dataDir);
});

Deno.test("qpq server stops cleanly on SIGTERM with a subscribed client connected", async () => {
  const s = await spawnServer({});
  let closedWith: QpqError | undefined | "open" = "open";
  const conn = await connectServer({
    server: s.addr,
    caCertPem: s.certPem,
    onClose: (e) => (closedWith = e),
  });
  try {
    await register(conn, "alice", "pw", "devtoken");
    assert(await login(conn, "alice", "pw"));
    await conn.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    const h = await conn.call({ kind: "health" }, "health");
    assertEquals(h.connectedClients, 1);
    const t0 = performance.now();
    s.child.kill("SIGTERM");
    const status = await s.child.status;
    const ms = performance.now() - t0;
    assertEquals(status.code, 0);
    assert(ms < 4000, `shutdown took ${ms.toFixed(0)} ms`);
    const out = await s.stdout;
    assertEquals(out.at(-1), "qpq server stopped", out.join("\n"));
    const err = await s.stderr;
    assertStringIncludes(err, `"msg":"server shutting down"`);
    assertStringIncludes(err, `"msg":"server stopped"`);
    // the client learns that the connection is gone
    await Promise.race([conn.done, new Promise((r) => setTimeout(r, 3000))]);
    assert(closedWith !== "open", "client saw the connection close");
  } finally {
    await conn.close();
    try {
      s.child.kill("SIGKILL");
    } catch { /* exited */ }
  }
  await removeDir(s.dir);
});

Deno.test("qpq server logs at debug level carry no password, token or key", async () => {
  const authToken = "log-scan-auth-" + toHex(randomBytes(8));
  const dbKey = toBase64(randomBytes(32));
  const s = await spawnServer({ QPQ_LOG: "debug", QPQ_AUTH_TOKEN: authToken, QPQ_DB_KEY: dbKey });
  const password = "log-scan-password-" + toHex(randomBytes(6));
  const wrongPassword = "log-scan-wrong-" + toHex(randomBytes(6));
  const marker = "LOG-SCAN-MARKER-" + toHex(randomBytes(8));
  const tokens: Uint8Array[] = [];
  try {
    const a = await connectServer({ server: s.addr, caCertPem: s.certPem });
    const b = await connectServer({ server: s.addr, caCertPem: s.certPem });
    await register(a, "logalice", password, authToken);
    await register(b, "logbob", password, authToken);
    // a refused registration and a failed login are logged paths too
    await register(b, "logeve", password, "wrong-" + authToken).catch(() => {});
    assertEquals(await login(a, "logalice", wrongPassword), undefined);
    tokens.push((await login(a, "logalice", password))!);
    tokens.push((await login(b, "logbob", password))!);
    const ch = (await a.call({ kind: "createDm", username: "logbob" }, "channel")).channelId;
    await enqueue(a, ch, utf8(marker));
    const c = await connectServer({ server: s.addr, caCertPem: s.certPem });
    await c.call({ kind: "resume", token: tokens[0]! }, "session");
    await c.call({ kind: "logout" }, "ok");
    for (const x of [a, b, c]) await x.close();
  } finally {
    s.child.kill("SIGTERM");
  }
  assertEquals((await s.child.status).code, 0);
  const log = await s.stderr;
  const lines = log.trim().split("\n");
  for (const l of lines) JSON.parse(l); // every line is one JSON object
  // the log is really written at debug level, so the scan below covers something
  for (const msg of ["user registered", "login", "logout", "connection opened"]) {
    assert(lines.some((l) => JSON.parse(l).msg === msg), `log has "${msg}"`);
  }
  const needles: [string, string][] = [
    ["password", password],
    ["wrong password", wrongPassword],
    ["auth token", authToken],
    ["db_key", dbKey],
    ["payload", marker],
  ];
  for (const t of tokens) {
    needles.push(["token (hex)", toHex(t)], ["token (base64)", toBase64(t)]);
    needles.push(["token (base64url)", toBase64(t).replace(/\+/g, "-").replace(/\//g, "_")]);
  }
  for (const [what, needle] of needles) {
    assert(!log.includes(needle.replace(/=+$/, "")), `${what} appears in the server log`);
  }
  await removeDir(s.dir);
});

Deno.test("restoring a backup rewinds queue sequence numbers; the documented next_seq bump lets clients resume", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-restore-" });
  const env = { QPQ_DB_KEY: toBase64(randomBytes(32)) };
  const start = () => startTestServer({ dataDir, env });
  const session = async (addr: string, certPem: string, u: string) => {
    const c = await connectServer({ server: addr, caCertPem: certPem });
    await login(c, u, `pw ${u}`);
    return c;
  };
  const received = async (c: ServerConnection, afterSeq: number) =>
    (await c.call({ kind: "fetch", afterSeq, limit: 0 }, "messages")).messages;

  // before the backup: bob has received and acknowledged message 1
  let ts = await start();
  let a = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  let b = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  await register(a, "alice", "pw alice", "devtoken");
  await register(b, "bob", "pw bob", "devtoken");
  await login(a, "alice", "pw alice");
  await login(b, "bob", "pw bob");
  const ch = (await a.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
  await enqueue(a, ch, utf8("one"));
  let cursor = (await received(b, 0))[0]!.seq;
  await b.call({ kind: "ack", uptoSeq: cursor }, "ok");
  await a.close();
  await b.close();
  await ts.close();
  const backup = await Deno.readFile(`${dataDir}/qpq.db`); // stop + copy

  // after the backup: two more, received and acknowledged; bob's cursor moves on
  ts = await start();
  a = await session(ts.addr, ts.certPem, "alice");
  b = await session(ts.addr, ts.certPem, "bob");
  await enqueue(a, ch, utf8("two"));
  await enqueue(a, ch, utf8("three"));
  cursor = (await received(b, cursor)).at(-1)!.seq;
  await b.call({ kind: "ack", uptoSeq: cursor }, "ok");
  await a.close();
  await b.close();
  await ts.close();

  const restore = async (bump: boolean) => {
    await Deno.writeFile(`${dataDir}/qpq.db`, backup);
    if (bump) {
      const db = new DatabaseSync(`${dataDir}/qpq.db`);
      db.exec("UPDATE queues SET next_seq = next_seq + 1000000"); // as in docs/operations.md
      db.close();
    }
    const s = await start();
    const sa = await session(s.addr, s.certPem, "alice");
    const sb = await session(s.addr, s.certPem, "bob");
    await enqueue(sa, ch, utf8("after restore"));
    const got = await received(sb, cursor); // bob fetches from where he was
    await sa.close();
    await sb.close();
    await s.close();
    return got.map((m) => new TextDecoder().decode(m.payload));
  };
  assertEquals(await restore(false), [], "without the bump the new message hides below the cursor");
  assertEquals(await restore(true), ["after restore"]);
  await removeDir(dataDir);
});

Deno.test("startServer warns at start when it runs with the development invite token, not otherwise", async () => {
  for (
    const [env, warned] of [[{}, true], [
      { QPQ_AUTH_TOKEN: "an-invite-token-of-our-own" },
      false,
    ]] as const
  ) {
    const lines: string[] = [];
    const dataDir = await Deno.makeTempDir({ prefix: "qpq-test-" });
    const config = resolveConfig(
      { listen: "127.0.0.1:0", dataDir },
      { store_backend: "memory" },
      env,
    );
    const server = await startServer(config, {
      log: createLogger({ write: (l) => lines.push(l) }),
    });
    await server.close();
    await Deno.remove(dataDir, { recursive: true });
    const warn = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    assertEquals(
      warn.some((l) => /development invite token/.test(l.msg)),
      warned,
      lines.join("\n"),
    );
  }
});

Deno.test("startServer warns at start when max_message_bytes is too small for MLS handshakes (issue 21)", async () => {
  for (const [bytes, warned] of [[1000, true], [MESSAGE_BYTES_WARN_BELOW, false]] as const) {
    const lines: string[] = [];
    const dataDir = await Deno.makeTempDir({ prefix: "qpq-test-" });
    const config = resolveConfig(
      { listen: "127.0.0.1:0", dataDir },
      { store_backend: "memory", max_message_bytes: bytes },
      { QPQ_AUTH_TOKEN: "an-invite-token-of-our-own" },
    );
    const server = await startServer(config, {
      log: createLogger({ write: (l) => lines.push(l) }),
    });
    await server.close();
    await Deno.remove(dataDir, { recursive: true });
    const warn = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    assertEquals(
      warn.some((l) => l.msg.startsWith(`max_message_bytes = ${bytes} is too small for groups`)),
      warned,
      lines.join("\n"),
    );
  }
});

Deno.test("the server's files are its owner's alone under umask 022: data dir 0700, database, WAL and key 0600", async () => {
  const ts = await startTestServer();
  try {
    // a write, so the WAL and shared-memory files exist
    const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    await registerUser(conn, "perm", "perm password", IdentityKeyPair.generate().publicKey);
    await conn.close();
    const mode = async (f: string) => (await Deno.stat(`${ts.dataDir}${f}`)).mode! & 0o777;
    assertEquals(await mode(""), 0o700);
    for (const f of ["/qpq.db", "/qpq.db-wal", "/qpq.db-shm", "/server-key.pem"]) {
      assertEquals((await mode(f)).toString(8), "600", f);
    }
  } finally {
    await ts.close();
  }
});

Deno.test("a database left world-readable by an older qpq (0644) is its owner's alone (0600) after the next start", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-perm-upgrade-" });
  try {
    let ts = await startTestServer({ dataDir });
    await ts.close();
    await Deno.chmod(`${dataDir}/qpq.db`, 0o644);
    ts = await startTestServer({ dataDir });
    try {
      const mode = (await Deno.stat(`${dataDir}/qpq.db`)).mode! & 0o777;
      assertEquals(mode.toString(8), "600");
    } finally {
      await ts.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("start-up errors name what is wrong: a mismatched certificate and key, a port in use (QUIC and health alike)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-startup-" });
  try {
    const a = await generateSelfSignedCertificate();
    const b = await generateSelfSignedCertificate();
    await Deno.writeTextFile(`${dir}/cert.pem`, a.certPem);
    await Deno.writeTextFile(`${dir}/key.pem`, b.keyPem);
    const mismatched = resolveConfig(
      { listen: "127.0.0.1:0", dataDir: `${dir}/data` },
      { tls_cert: `${dir}/cert.pem`, tls_key: `${dir}/key.pem`, store_backend: "memory" },
      {},
    );
    const e1 = await assertRejects(() => startServer(mismatched, { log: silentLogger }));
    assertEquals(
      (e1 as Error).message,
      `TLS certificate ${dir}/cert.pem and key ${dir}/key.pem do not match: use the key the certificate was issued for`,
    );
    // the QUIC port of a running server, and a TCP port taken by someone else
    const ts = await startTestServer();
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const quicPort = ts.server.addr.port;
      const busy = resolveConfig(
        { listen: `127.0.0.1:${quicPort}`, dataDir: `${dir}/d2` },
        { store_backend: "memory" },
        {},
      );
      const e2 = await assertRejects(() => startServer(busy, { log: silentLogger }));
      assertEquals(
        (e2 as Error).message,
        `Cannot listen on 127.0.0.1:${quicPort} (QUIC): address already in use`,
      );
      const httpPort = (tcp.addr as Deno.NetAddr).port;
      const health = resolveConfig(
        { listen: "127.0.0.1:0", dataDir: `${dir}/d3`, healthListen: `127.0.0.1:${httpPort}` },
        { store_backend: "memory" },
        {},
      );
      const e3 = await assertRejects(() =>
        startServer(health, { log: silentLogger, services: createServices })
      );
      assertEquals(
        (e3 as Error).message,
        `Cannot listen on 127.0.0.1:${httpPort} (health): address already in use`,
      );
    } finally {
      tcp.close();
      await ts.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
