/**
 * The server end to end: a real QUIC server on loopback with a real SQLite file
 * (tests/_support/server.ts), spoken to with raw requests over `connectServer` and the
 * OPAQUE client steps, so every check goes through the wire, the RPC layer, the handlers
 * and the store exactly as a client's requests do.
 */
import {
  assert,
  assertEquals,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
} from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { writeSchemaTwoDb } from "./_support/legacy_db.ts";
import { runQpq } from "./_support/cli.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
  LOGIN_FAILED_MESSAGE,
} from "../src/auth/mod.ts";
import { IdentityKeyPair } from "../src/crypto/identity.ts";
import { createKeyPackage } from "../src/mls/mod.ts";
import {
  AuthError,
  type QpqError,
  StorageError,
  UsageError,
  ValidationError,
} from "../src/errors.ts";
import { randomBytes, toBase64, toHex, utf8 } from "../src/bytes.ts";
import type { DeliveredMessage, Push } from "../src/wire/mod.ts";

/** Cheap client-side key stretching (the server never sees it). */
const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };
/** A fast MLS suite for the KeyPackages these tests upload. */
const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

interface Pushes {
  messages: DeliveredMessage[];
  subscriptionIds: number[];
  /** Resolves once at least `n` messages were pushed. */
  waitFor(n: number, timeoutMs?: number): Promise<DeliveredMessage[]>;
}

function pushCollector(): Pushes & { onPush: (p: Push, id: number) => void } {
  const messages: DeliveredMessage[] = [];
  const subscriptionIds: number[] = [];
  let wake: () => void = () => {};
  return {
    messages,
    subscriptionIds,
    onPush(p, id) {
      messages.push(...p.messages);
      subscriptionIds.push(id);
      wake();
    },
    async waitFor(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${n} pushed messages, got ${messages.length}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
      return messages;
    },
  };
}

function connect(ts: TestServer, onPush?: (p: Push, id: number) => void) {
  return connectServer({ server: ts.addr, caCertPem: ts.certPem, onPush });
}

/** Register over the wire; returns the identity key pair published at registration. */
async function register(
  conn: ServerConnection,
  username: string,
  password: string,
  authToken = "devtoken",
): Promise<IdentityKeyPair> {
  const identity = IdentityKeyPair.generate();
  const start = await clientRegistrationStart(password);
  const started = await conn.call(
    { kind: "registerStart", username, request: start.request, authToken },
    "registerStarted",
  );
  const fin = await clientRegistrationFinish(start.state, password, started.data, {
    keyStretching: FAST,
  });
  await conn.call({
    kind: "registerFinish",
    username,
    record: fin.record,
    authToken,
    identityKey: identity.publicKey,
  }, "ok");
  return identity;
}

/** Both login messages as sent, and the session the server issued. */
async function login(conn: ServerConnection, username: string, password: string) {
  const start = await clientLoginStart(password);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, password, started.response, {
    keyStretching: FAST,
  });
  if (fin.kind !== "ok") throw new Error("client-side login failed");
  const finish = { kind: "loginFinish", username, finish: fin.finishRequest } as const;
  const session = await conn.call({ ...finish, loginId: started.loginId }, "session");
  return { session, finish: { ...finish, loginId: started.loginId } };
}

/** Register and log in on a fresh connection. */
async function user(ts: TestServer, username: string, onPush?: (p: Push, id: number) => void) {
  const conn = await connect(ts, onPush);
  const password = `pw of ${username}`;
  const identity = await register(conn, username, password);
  const { session } = await login(conn, username, password);
  return { conn, identity, password, token: session.token };
}

async function dm(conn: ServerConnection, peer: string): Promise<Uint8Array> {
  return (await conn.call({ kind: "createDm", username: peer }, "channel")).channelId;
}

function send(conn: ServerConnection, channelId: Uint8Array, payload: Uint8Array, id?: Uint8Array) {
  return conn.call({
    kind: "enqueue",
    channelId,
    messageId: id ?? randomBytes(16),
    payload,
    messageKind: "application",
    epoch: 0,
    recipients: [],
  }, "enqueued");
}

async function fetchAll(conn: ServerConnection, afterSeq = 0) {
  return (await conn.call({ kind: "fetch", afterSeq, limit: 0 }, "messages")).messages;
}

/** Expect a QpqError of `cls` with `code`; returns it. */
async function refused(
  p: () => Promise<unknown>,
  cls: new (message: string) => QpqError,
  code: string,
): Promise<QpqError> {
  const e = await assertRejects(p, cls) as QpqError;
  assertEquals(e.code, code, e.message);
  return e;
}

/** Remove a test's temp dir (left in place when the test failed, for a look). */
function removeDir(dir: string): Promise<void> {
  return Deno.remove(dir, { recursive: true }).catch(() => {});
}

async function withServer(
  fn: (ts: TestServer) => Promise<void>,
  options: Parameters<typeof startTestServer>[0] = {},
) {
  const ts = await startTestServer(options);
  try {
    await fn(ts);
  } finally {
    await ts.close();
  }
  await removeDir(ts.dataDir);
}

Deno.test("registerStart/registerFinish then loginStart/loginFinish issue a session over QUIC", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    const identity = await register(conn, "alice", "correct horse");
    // not logged in yet: registration alone does not bind the connection
    await refused(
      () => conn.call({ kind: "countKeyPackages" }, "keyPackageCount"),
      AuthError,
      "auth",
    );
    const before = Date.now();
    const { session } = await login(conn, "alice", "correct horse");
    assertEquals(session.username, "alice");
    assertEquals(session.token.length, 32);
    assert(session.expiresAtMs > before + 6 * 24 * 3600_000, "default TTL is days");
    const key = await conn.call({ kind: "fetchIdentityKey", username: "alice" }, "identityKey");
    assertEquals(toHex(key.key), toHex(identity.publicKey));
    // same name again: conflict
    const other = await connect(ts);
    await refused(() => register(other, "alice", "x"), UsageError, "conflict");
    await other.close();
    await conn.close();
  });
});

Deno.test("loginFinish fails with the same code and message for a wrong password and an unknown user", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    await register(conn, "alice", "right password");
    const attempt = async (username: string, password: string) => {
      const start = await clientLoginStart(password);
      const started = await conn.call(
        { kind: "loginStart", username, request: start.request },
        "loginStarted",
      );
      const fin = await clientLoginFinish(start.state, password, started.response, {
        keyStretching: FAST,
      });
      // the client cannot open the envelope in either case
      assertEquals(fin.kind, "failed");
      // an attacker sends a KE3 anyway: the server must fail both the same way
      const e = await refused(
        () =>
          conn.call({
            kind: "loginFinish",
            username,
            finish: randomBytes(64),
            loginId: started.loginId,
          }, "session"),
        AuthError,
        "auth",
      );
      return { message: e.message, ke2Length: started.response.length };
    };
    const wrong = await attempt("alice", "wrong password");
    const unknown = await attempt("nobody", "wrong password");
    assertEquals(wrong.message, LOGIN_FAILED_MESSAGE);
    assertEquals(unknown, wrong);
    await conn.close();
  });
});

Deno.test("registerStart and registerFinish refuse a missing or wrong auth token", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    for (const token of ["", "wrong", "devtoken2"]) {
      const e = await refused(() => register(conn, "mallory", "pw", token), AuthError, "forbidden");
      assertStringIncludes(e.message, "auth token");
    }
    // registerStart with the right token does not let registerFinish skip it
    const start = await clientRegistrationStart("pw");
    const started = await conn.call(
      { kind: "registerStart", username: "mallory", request: start.request, authToken: "devtoken" },
      "registerStarted",
    );
    const fin = await clientRegistrationFinish(start.state, "pw", started.data, {
      keyStretching: FAST,
    });
    await refused(
      () =>
        conn.call({
          kind: "registerFinish",
          username: "mallory",
          record: fin.record,
          authToken: "nope",
          identityKey: IdentityKeyPair.generate().publicKey,
        }, "ok"),
      AuthError,
      "forbidden",
    );
    // nothing was created: logging in fails, registering with the right token works
    await assertRejects(() => login(conn, "mallory", "pw"));
    await register(conn, "mallory", "pw");
    await login(conn, "mallory", "pw");
    await conn.close();
  }, { env: { QPQ_AUTH_TOKEN: "devtoken" } });
});

Deno.test("resume refuses a session token once session_ttl_seconds have passed, and bound connections are logged out", async () => {
  await withServer(async (ts) => {
    const { conn, token } = await user(ts, "alice");
    const c2 = await connect(ts);
    const s = await c2.call({ kind: "resume", token }, "session");
    assertEquals(s.username, "alice");
    assert(s.expiresAtMs <= Date.now() + 1000, "expiry follows session_ttl_seconds");
    await c2.call({ kind: "listChannels" }, "channels");
    await new Promise((r) => setTimeout(r, Math.max(0, s.expiresAtMs - Date.now()) + 100));
    const c3 = await connect(ts);
    const e = await refused(() => c3.call({ kind: "resume", token }, "session"), AuthError, "auth");
    assertStringIncludes(e.message, "expired");
    await refused(() => c3.call({ kind: "listChannels" }, "channels"), AuthError, "auth");
    // the connections that logged in or resumed while the session was valid lose it too
    for (const c of [conn, c2]) {
      const e2 = await refused(
        () => c.call({ kind: "listChannels" }, "channels"),
        AuthError,
        "auth",
      );
      assertStringIncludes(e2.message, "expired");
    }
    // logging in again on the same connection works
    await login(conn, "alice", "pw of alice");
    await conn.call({ kind: "listChannels" }, "channels");
    for (const c of [conn, c2, c3]) await c.close();
  }, { file: { session_ttl_seconds: 1 } });
});

Deno.test("logout revokes the session: resume is refused and other connections on the token are logged out", async () => {
  await withServer(async (ts) => {
    const { conn, token } = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const ch = await dm(bob.conn, "alice");
    // a second connection resumes the same session and subscribes
    const pushes = pushCollector();
    const c2 = await connect(ts, pushes.onPush);
    assertEquals((await c2.call({ kind: "resume", token }, "session")).username, "alice");
    await c2.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    await send(bob.conn, ch, utf8("before logout"));
    await pushes.waitFor(1);
    // bob's own session is untouched by alice's logout
    const bob2 = await connect(ts);
    await bob2.call({ kind: "resume", token: bob.token }, "session");
    await conn.call({ kind: "logout" }, "ok");
    await refused(() => conn.call({ kind: "listChannels" }, "channels"), AuthError, "auth");
    await refused(() => c2.call({ kind: "listChannels" }, "channels"), AuthError, "auth");
    await send(bob.conn, ch, utf8("after logout"));
    await new Promise((r) => setTimeout(r, 150));
    assertEquals(pushes.messages.length, 1, "a logged-out connection gets no more pushes");
    await bob2.call({ kind: "listChannels" }, "channels");
    for (const c of [c2, bob.conn, bob2]) await c.close();
    const c3 = await connect(ts);
    await refused(() => c3.call({ kind: "resume", token }, "session"), AuthError, "auth");
    // a token of the wrong length is refused the same way
    await refused(
      () => c3.call({ kind: "resume", token: token.slice(1) }, "session"),
      AuthError,
      "auth",
    );
    await c3.close();
    await conn.close();
  });
});

Deno.test("loginFinish replayed with the same loginId and KE3 is refused", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    await register(conn, "alice", "pw");
    const { finish } = await login(conn, "alice", "pw");
    const eve = await connect(ts);
    const e = await refused(() => eve.call(finish, "session"), AuthError, "auth");
    assertEquals(e.message, LOGIN_FAILED_MESSAGE);
    // the replay did not bind eve's connection
    await refused(() => eve.call({ kind: "listChannels" }, "channels"), AuthError, "auth");
    await eve.close();
    await conn.close();
  });
});

Deno.test("uploadKeyPackages refuses packages with another user's credential or key", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const pkg = (username: string, identity: IdentityKeyPair) =>
      createKeyPackage({
        username,
        identity: { publicKey: identity.publicKey, privateKey: identity.exportPrivateKey() },
        suite: SUITE,
        lifetimeSeconds: 3600,
      });
    // bob uploads a package whose credential says alice (signed with alice's key)
    const aliceKp = await pkg("alice", alice.identity);
    const e1 = await refused(
      () =>
        bob.conn.call({
          kind: "uploadKeyPackages",
          packages: [{ data: aliceKp.publicPackage }],
          lastResort: new Uint8Array(0),
        }, "keyPackageCount"),
      ValidationError,
      "validation",
    );
    assertStringIncludes(e1.message, "username");
    // bob's name but a key that is not bob's identity key
    const forged = await pkg("bob", IdentityKeyPair.generate());
    await refused(
      () =>
        bob.conn.call({
          kind: "uploadKeyPackages",
          packages: [],
          lastResort: forged.publicPackage,
        }, "keyPackageCount"),
      ValidationError,
      "validation",
    );
    // garbage is a validation error too, and nothing of a refused batch is stored
    const good = await pkg("bob", bob.identity);
    await refused(
      () =>
        bob.conn.call({
          kind: "uploadKeyPackages",
          packages: [{ data: good.publicPackage }, { data: randomBytes(200) }],
          lastResort: new Uint8Array(0),
        }, "keyPackageCount"),
      ValidationError,
      "validation",
    );
    assertEquals(
      (await bob.conn.call({ kind: "countKeyPackages" }, "keyPackageCount")).count,
      0,
    );
    await refused(
      () => alice.conn.call({ kind: "fetchKeyPackage", username: "bob" }, "keyPackage"),
      UsageError,
      "not_found",
    );
    const ok = await bob.conn.call({
      kind: "uploadKeyPackages",
      packages: [{ data: good.publicPackage }],
      lastResort: new Uint8Array(0),
    }, "keyPackageCount");
    assertEquals(ok.count, 1);
    await alice.conn.close();
    await bob.conn.close();
  });
});

Deno.test("fetchKeyPackage under 20 concurrent calls from several connections hands each package out once, then the last resort", async () => {
  await withServer(async (ts) => {
    const bob = await user(ts, "bob");
    const kp = bob.identity;
    const make = (lastResort: boolean) =>
      createKeyPackage({
        username: "bob",
        identity: { publicKey: kp.publicKey, privateKey: kp.exportPrivateKey() },
        suite: SUITE,
        lifetimeSeconds: 3600,
        lastResort,
      });
    const normal = await Promise.all(Array.from({ length: 12 }, () => make(false)));
    const lastResort = await make(true);
    const up = await bob.conn.call({
      kind: "uploadKeyPackages",
      packages: normal.map((p) => ({ data: p.publicPackage })),
      lastResort: lastResort.publicPackage,
    }, "keyPackageCount");
    assertEquals(up.count, 12);

    const fetchers = await Promise.all(["a1", "a2", "a3", "a4"].map((u) => user(ts, u)));
    const got = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          fetchers[i % fetchers.length]!.conn.call(
            { kind: "fetchKeyPackage", username: "bob" },
            "keyPackage",
          ),
      ),
    );
    const hex = got.map((g) => toHex(g.data));
    const lrHex = toHex(lastResort.publicPackage);
    const normals = hex.filter((h) => h !== lrHex);
    assertEquals(normals.length, 12, "every normal package handed out");
    assertEquals(new Set(normals).size, 12, "no normal package handed out twice");
    assertEquals(
      [...normals].sort(),
      normal.map((p) => toHex(p.publicPackage)).sort(),
    );
    assertEquals(hex.filter((h) => h === lrHex).length, 8, "the rest get the last resort");
    assertEquals((await bob.conn.call({ kind: "countKeyPackages" }, "keyPackageCount")).count, 0);
    for (const f of [bob, ...fetchers]) await f.conn.close();
  });
});

Deno.test("enqueue, fetch and ack deliver DM payloads in order and ack removes them", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const ch = await dm(alice.conn, "bob");
    assertEquals(toHex(await dm(bob.conn, "alice")), toHex(ch), "one DM channel per pair");
    const payloads = [0, 1, 2].map((i) => utf8(`ciphertext ${i}`));
    for (const p of payloads) {
      const r = await send(alice.conn, ch, p);
      assertEquals(r, { kind: "enqueued", duplicate: false, recipients: 1 });
    }
    const msgs = await fetchAll(bob.conn);
    assertEquals(msgs.map((m) => toHex(m.payload)), payloads.map(toHex));
    assertEquals(msgs.map((m) => m.sender), ["alice", "alice", "alice"]);
    assert(msgs.every((m) => toHex(m.channelId) === toHex(ch) && m.messageKind === "application"));
    assert(msgs[0]!.seq < msgs[1]!.seq && msgs[1]!.seq < msgs[2]!.seq, "sequence order");
    assertEquals(await fetchAll(alice.conn), [], "the sender gets no copy");
    // paging: limit 1, afterSeq
    const page = await bob.conn.call({ kind: "fetch", afterSeq: 0, limit: 1 }, "messages");
    assertEquals(page.messages.length, 1);
    assert(page.more);
    await bob.conn.call({ kind: "ack", uptoSeq: msgs[1]!.seq }, "ok");
    assertEquals((await fetchAll(bob.conn)).map((m) => m.seq), [msgs[2]!.seq]);
    await bob.conn.call({ kind: "ack", uptoSeq: msgs[2]!.seq }, "ok");
    assertEquals(await fetchAll(bob.conn), []);
    await alice.conn.close();
    await bob.conn.close();
  });
});

Deno.test("subscribe pushes new messages to a second connection, in order", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const ch = await dm(alice.conn, "bob");
    await send(alice.conn, ch, utf8("before subscribe"));
    // bob's second device-connection resumes the session and subscribes
    const pushes = pushCollector();
    const bob2 = await connect(ts, pushes.onPush);
    await bob2.call({ kind: "resume", token: bob.token }, "session");
    const subId = bob2.nextRequestId();
    await bob2.call({ kind: "subscribe", afterSeq: 0 }, "ok", { requestId: subId });
    await pushes.waitFor(1);
    for (let i = 0; i < 5; i++) await send(alice.conn, ch, utf8(`live ${i}`));
    const got = await pushes.waitFor(6);
    await new Promise((r) => setTimeout(r, 100)); // any extra (repeated) push would land now
    assertEquals(
      pushes.messages.map((m) => new TextDecoder().decode(m.payload)),
      ["before subscribe", "live 0", "live 1", "live 2", "live 3", "live 4"],
    );
    assert(pushes.subscriptionIds.every((id) => id === subId), "pushes carry the subscription id");
    assert(got.every((m, i) => i === 0 || m.seq > got[i - 1]!.seq));
    // the push does not ack: the queue still holds everything until bob acks
    assertEquals((await fetchAll(bob.conn)).length, 6);
    await bob2.call({ kind: "ack", uptoSeq: got[5]!.seq }, "ok");
    assertEquals(await fetchAll(bob.conn), []);
    for (const c of [alice.conn, bob.conn, bob2]) await c.close();
  });
});

Deno.test("subscribe behind a queue while sends race it: every message pushed once, in queue order", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const ch = await dm(alice.conn, "bob");
    for (let i = 0; i < 3; i++) await send(alice.conn, ch, utf8(`queued ${i}`));
    const pushes = pushCollector();
    const bob2 = await connect(ts, pushes.onPush);
    await bob2.call({ kind: "resume", token: bob.token }, "session");
    // the subscription starts behind (3 queued) while new messages are committed and
    // announced (racing it, then right after it): what is announced is pushed only once the
    // queue has been read up to it
    const sub = bob2.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    const racing = Array.from({ length: 5 }, (_, i) => send(alice.conn, ch, utf8(`racing ${i}`)));
    await sub;
    const after = Array.from({ length: 5 }, (_, i) => send(alice.conn, ch, utf8(`after ${i}`)));
    await Promise.all([...racing, ...after]);
    const got = await pushes.waitFor(13);
    await new Promise((r) => setTimeout(r, 100)); // any extra (repeated) push would land now
    assertEquals(pushes.messages.length, 13, "each message once");
    const text = pushes.messages.map((m) => new TextDecoder().decode(m.payload));
    assertEquals(text.slice(0, 3), ["queued 0", "queued 1", "queued 2"]);
    assertEquals(new Set(text).size, 13);
    assert(got.every((m, i) => i === 0 || m.seq === got[i - 1]!.seq + 1), "queue order, no gap");
    assertEquals((await fetchAll(bob.conn)).map((m) => m.seq), got.map((m) => m.seq));
    for (const c of [alice.conn, bob.conn, bob2]) await c.close();
  });
});

Deno.test("enqueue with the same messageId again is a duplicate and delivered once", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const ch = await dm(alice.conn, "bob");
    const id = randomBytes(16);
    const first = await send(alice.conn, ch, utf8("hello"), id);
    assertEquals(first.duplicate, false);
    const again = await Promise.all([
      send(alice.conn, ch, utf8("hello"), id),
      send(alice.conn, ch, utf8("hello"), id),
    ]);
    assert(again.every((r) => r.duplicate && r.recipients === 1), JSON.stringify(again));
    const msgs = await fetchAll(bob.conn);
    assertEquals(msgs.length, 1);
    assertEquals(toHex(msgs[0]!.messageId), toHex(id));
    // the same id from another sender is another message
    await send(bob.conn, ch, utf8("hi"), id);
    assertEquals((await fetchAll(alice.conn)).length, 1);
    await alice.conn.close();
    await bob.conn.close();
  });
});

Deno.test("enqueue, members and fetch of another pair's channel are refused with forbidden", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const carol = await user(ts, "carol");
    const ch = await dm(alice.conn, "bob");
    await send(alice.conn, ch, utf8("for bob only"));
    const e1 = await refused(() => send(carol.conn, ch, utf8("intrusion")), AuthError, "forbidden");
    const e2 = await refused(
      () => carol.conn.call({ kind: "members", channelId: ch }, "memberList"),
      AuthError,
      "forbidden",
    );
    // an unknown channel looks exactly like a channel one is not in
    const e3 = await refused(
      () => carol.conn.call({ kind: "members", channelId: randomBytes(16) }, "memberList"),
      AuthError,
      "forbidden",
    );
    assertEquals(e1.message, e2.message);
    assertEquals(e2.message, e3.message);
    // commits into it are refused the same way
    await refused(
      () =>
        carol.conn.call({
          kind: "commit",
          channelId: ch,
          epoch: 0,
          messageId: randomBytes(16),
          payload: randomBytes(32),
          add: [],
          remove: [],
          welcomes: [],
        }, "committed"),
      AuthError,
      "forbidden",
    );
    // fetch is per user: carol's queue has nothing of alice and bob's, even after seq 0
    assertEquals(await fetchAll(carol.conn), []);
    assertEquals((await fetchAll(bob.conn)).length, 1, "bob's message was not consumed");
    assertEquals(
      (await alice.conn.call({ kind: "members", channelId: ch }, "memberList")).members.sort(),
      ["alice", "bob"],
    );
    const list = await carol.conn.call({ kind: "listChannels" }, "channels");
    assertEquals(list.channels, []);
    for (const u of [alice, bob, carol]) await u.conn.close();
  });
});

/** An MLSMessage(PrivateMessage) whose cleartext header says "commit of this group and epoch". */
function fakeCommitPayload(groupId: Uint8Array, epoch: number): Uint8Array {
  const v = (b: Uint8Array) => [b.length, ...b]; // MLS varint length (< 64 bytes here)
  const e = new Uint8Array(8);
  new DataView(e.buffer).setBigUint64(0, BigInt(epoch));
  return Uint8Array.from([
    0,
    1, // mls10
    0,
    2, // mls_private_message
    ...v(groupId),
    ...e,
    3, // content type: commit
    ...v(new Uint8Array(0)), // authenticated data
    ...v(randomBytes(16)), // encrypted sender data
    ...v(randomBytes(48)), // ciphertext
  ]);
}

Deno.test("commit: the second commit for the same epoch gets epoch_conflict", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const carol = await user(ts, "carol");
    const g = await alice.conn.call({ kind: "createGroup", name: "team" }, "channel");
    assertEquals(g.epoch, 0);
    const commit = (conn: ServerConnection, epoch: number, add: string[]) =>
      conn.call({
        kind: "commit",
        channelId: g.channelId,
        epoch,
        messageId: randomBytes(16),
        payload: fakeCommitPayload(g.channelId, epoch),
        add,
        remove: [],
        welcomes: add.map((username) => ({ username, payload: utf8("welcome") })),
      }, "committed");
    assertEquals((await commit(alice.conn, 0, ["bob"])).recipients, 1);
    // bob (now a member) and alice race for epoch 1; then a stale epoch-0 commit
    const [a, b] = await Promise.allSettled([
      commit(alice.conn, 1, ["carol"]),
      commit(bob.conn, 1, []),
    ]);
    const winners = [a, b].filter((r) => r.status === "fulfilled");
    const losers = [a, b].filter((r) => r.status === "rejected");
    assertEquals(winners.length, 1);
    assertEquals(losers.length, 1);
    const err = (losers[0] as PromiseRejectedResult).reason as QpqError;
    assertEquals(err.code, "epoch_conflict");
    await refused(() => commit(alice.conn, 0, []), UsageError, "epoch_conflict");
    const info = await alice.conn.call({ kind: "listChannels" }, "channels");
    assertEquals(info.channels[0]!.epoch, 2);
    // bob got the welcome for epoch 0 and whichever epoch-1 commit won (if not his own)
    const bobMsgs = await fetchAll(bob.conn);
    assertEquals(bobMsgs[0]!.messageKind, "welcome");
    assertEquals(bobMsgs.length, a.status === "fulfilled" ? 2 : 1);
    for (const u of [alice, bob, carol]) await u.conn.close();
  });
});

Deno.test("commit: a payload that is not an MLS commit of this group and epoch is refused", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const g = await alice.conn.call({ kind: "createGroup", name: "team" }, "channel");
    const send = (payload: Uint8Array) =>
      alice.conn.call({
        kind: "commit",
        channelId: g.channelId,
        epoch: 0,
        messageId: randomBytes(16),
        payload,
        add: [],
        remove: [],
        welcomes: [],
      }, "committed");
    for (
      const bad of [
        randomBytes(64),
        fakeCommitPayload(randomBytes(16), 0),
        fakeCommitPayload(g.channelId, 5),
      ]
    ) {
      await refused(() => send(bad), ValidationError, "validation");
    }
    const info = await alice.conn.call({ kind: "listChannels" }, "channels");
    assertEquals(info.channels[0]!.epoch, 0, "a refused commit does not move the epoch");
    assertEquals((await send(fakeCommitPayload(g.channelId, 0))).duplicate, false);
    await alice.conn.close();
  });
});

/** A group of alice and the given members, each added by one commit with a Welcome. */
async function groupWith(
  alice: { conn: ServerConnection },
  members: string[],
): Promise<{ channelId: Uint8Array; epoch: number }> {
  const g = await alice.conn.call({ kind: "createGroup", name: "team" }, "channel");
  await alice.conn.call({
    kind: "commit",
    channelId: g.channelId,
    epoch: 0,
    messageId: randomBytes(16),
    payload: fakeCommitPayload(g.channelId, 0),
    add: members,
    remove: [],
    welcomes: [],
    welcome: utf8("welcome-0"),
    welcomeFor: members,
  }, "committed");
  return { channelId: g.channelId, epoch: 1 };
}

Deno.test("commit: a Welcome may only go to users the commit adds; a member is re-added only with their removal", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const carol = await user(ts, "carol");
    const { channelId } = await groupWith(alice, ["bob", "carol"]);
    type Commit = { add: string[]; remove: string[]; welcomeFor?: string[]; legacy?: string[] };
    const commit = (epoch: number, c: Commit, ch = channelId) =>
      alice.conn.call({
        kind: "commit",
        channelId: ch,
        epoch,
        messageId: randomBytes(16),
        payload: fakeCommitPayload(ch, epoch),
        add: c.add,
        remove: c.remove,
        welcomes: (c.legacy ?? []).map((username) => ({ username, payload: utf8("legacy") })),
        ...(c.welcomeFor ? { welcome: utf8(`welcome-${epoch}`), welcomeFor: c.welcomeFor } : {}),
      }, "committed");
    const epochOf = async (ch: Uint8Array) =>
      (await alice.conn.call({ kind: "listChannels" }, "channels")).channels
        .find((c) => toHex(c.channelId) === toHex(ch))!.epoch;
    // a Welcome to an existing member (a fork into a look-alike group), in both forms
    for (
      const c of [{ add: [], remove: [], welcomeFor: ["bob"] }, {
        add: [],
        remove: [],
        legacy: ["bob"],
      }]
    ) {
      const e = await refused(() => commit(1, c), ValidationError, "validation");
      assertEquals(e.message, "A Welcome may only be for a user the commit adds");
    }
    // nor to a user who is neither added nor a member
    await refused(
      () => commit(1, { add: [], remove: [], welcomeFor: ["ts-nobody"] }),
      ValidationError,
      "validation",
    );
    // adding an existing member without removing the stale one
    for (
      const c of [{ add: ["bob"], remove: [], welcomeFor: ["bob"] }, {
        add: ["bob"],
        remove: [],
        legacy: ["bob"],
      }]
    ) {
      const e = await refused(() => commit(1, c), UsageError, "conflict");
      assertEquals(e.message, "Cannot add bob: already a member (a re-add must also remove them)");
    }
    assertEquals(await epochOf(channelId), 1, "refused commits do not move the epoch");
    // re-add bob (he asked to rejoin): remove the stale leaf, add the fresh one; same roster
    assertEquals(
      (await commit(1, { add: ["bob"], remove: ["bob"], welcomeFor: ["bob"] })).recipients,
      2,
    );
    assertEquals(
      (await commit(2, { add: ["carol"], remove: ["carol"], legacy: ["carol"] })).recipients,
      2,
    );
    assertEquals(await epochOf(channelId), 3);
    assertEquals(
      (await alice.conn.call({ kind: "members", channelId }, "memberList")).members.sort(),
      ["alice", "bob", "carol"],
    );
    // bob: the first Welcome, the re-add Welcome (not the commit), then carol's re-add commit
    const got = (await fetchAll(bob.conn)).map((m) => [m.messageKind, m.epoch]);
    assertEquals(got, [["welcome", 0], ["welcome", 1], ["commit", 2]]);
    const carolGot = (await fetchAll(carol.conn)).map((m) => [m.messageKind, m.epoch]);
    assertEquals(carolGot, [["welcome", 0], ["commit", 1], ["welcome", 2]]);
    // a DM's roster holds both users from the start: its first commit adds the peer
    const ch = await dm(alice.conn, "bob");
    assertEquals(
      (await commit(0, { add: ["bob"], remove: [], welcomeFor: ["bob"] }, ch)).recipients,
      1,
    );
    // later, the peer is re-added only with its removal (its roster cannot change otherwise)
    await refused(
      () => commit(1, { add: ["bob"], remove: [], welcomeFor: ["bob"] }, ch),
      UsageError,
      "conflict",
    );
    assertEquals(
      (await commit(1, { add: ["bob"], remove: ["bob"], welcomeFor: ["bob"] }, ch)).recipients,
      1,
    );
    await refused(
      () => commit(2, { add: ["carol"], remove: [], welcomeFor: ["carol"] }, ch),
      UsageError,
      "usage",
    );
    assertEquals(
      (await alice.conn.call({ kind: "members", channelId: ch }, "memberList")).members.sort(),
      ["alice", "bob"],
    );
    for (const u of [alice, bob, carol]) await u.conn.close();
  });
});

Deno.test("enqueue rejoin: a member's fresh KeyPackage reaches the other members, in groups and DMs", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const carol = await user(ts, "carol");
    const dave = await user(ts, "dave");
    const { channelId } = await groupWith(alice, ["bob", "carol"]);
    const fresh = await createKeyPackage({
      username: "bob",
      identity: { publicKey: bob.identity.publicKey, privateKey: bob.identity.exportPrivateKey() },
      suite: SUITE,
      lifetimeSeconds: 3600,
    });
    const rejoin = (conn: ServerConnection, ch: Uint8Array, payload = fresh.publicPackage) =>
      conn.call({
        kind: "enqueue",
        channelId: ch,
        messageId: randomBytes(16),
        payload,
        messageKind: "rejoin",
        epoch: 1,
        recipients: [],
      }, "enqueued");
    assertEquals((await rejoin(bob.conn, channelId)).recipients, 2);
    for (const u of [alice, carol]) {
      const last = (await fetchAll(u.conn)).at(-1)!;
      assertEquals([last.messageKind, last.sender], ["rejoin", "bob"]);
      assertEquals(last.payload, fresh.publicPackage);
    }
    assertEquals((await fetchAll(bob.conn)).map((m) => m.messageKind), ["welcome"], "not to bob");
    // only members may ask, and the size cap applies
    await refused(() => rejoin(dave.conn, channelId), AuthError, "forbidden");
    await refused(
      () => rejoin(bob.conn, channelId, new Uint8Array(2049)),
      ValidationError,
      "too_large",
    );
    // in a DM too: the peer whose state broke asks the other to re-add it
    const ch = await dm(bob.conn, "alice");
    assertEquals((await rejoin(bob.conn, ch)).recipients, 1);
    const last = (await fetchAll(alice.conn)).at(-1)!;
    assertEquals([last.messageKind, toHex(last.channelId)], ["rejoin", toHex(ch)]);
    for (const u of [alice, bob, carol, dave]) await u.conn.close();
  }, { file: { max_message_bytes: 2048 } });
});

Deno.test("KeyPackages are filed per cipher suite: fetch and count by suite, one last resort per suite", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const XWING = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";
    const make = (suite: typeof SUITE | typeof XWING, lastResort = false) =>
      createKeyPackage({
        username: "bob",
        identity: {
          publicKey: bob.identity.publicKey,
          privateKey: bob.identity.exportPrivateKey(),
        },
        suite,
        lifetimeSeconds: 3600,
        lastResort,
      });
    const x25519 = [await make(SUITE), await make(SUITE)];
    const xwing = await make(XWING);
    const lrXwing = await make(XWING, true);
    const lrX25519 = await make(SUITE, true);
    // two last resorts of one suite in one upload are refused
    await refused(
      () =>
        bob.conn.call({
          kind: "uploadKeyPackages",
          packages: [],
          lastResort: lrXwing.publicPackage,
          lastResorts: [{ data: lrXwing.publicPackage }],
        }, "keyPackageCount"),
      ValidationError,
      "validation",
    );
    const up = await bob.conn.call({
      kind: "uploadKeyPackages",
      packages: [...x25519, xwing].map((k) => ({ data: k.publicPackage })),
      lastResort: lrXwing.publicPackage, // the v1.0 field, filed under its own suite
      lastResorts: [{ data: lrX25519.publicPackage }],
    }, "keyPackageCount");
    assertEquals(up.count, 3);
    const count = async (cipherSuite?: number) =>
      (await bob.conn.call(
        cipherSuite === undefined
          ? { kind: "countKeyPackages" }
          : { kind: "countKeyPackagesForSuite", cipherSuite },
        "keyPackageCount",
      )).count;
    assertEquals([await count(), await count(0), await count(1), await count(83)], [3, 3, 2, 1]);
    await refused(() => count(7), ValidationError, "validation");
    const fetch = async (cipherSuite?: number) =>
      toHex(
        (await alice.conn.call(
          {
            kind: "fetchKeyPackage",
            username: "bob",
            ...(cipherSuite === undefined ? {} : { cipherSuite }),
          },
          "keyPackage",
        )).data,
      );
    const hex = (k: { publicPackage: Uint8Array }) => toHex(k.publicPackage);
    assertEquals(await fetch(83), hex(xwing));
    assertEquals(await fetch(83), hex(lrXwing), "X-Wing batch empty: its last resort");
    assertEquals([await fetch(1), await fetch(1)].sort(), x25519.map(hex).sort());
    assertEquals(await fetch(1), hex(lrX25519), "X25519 batch empty: its last resort");
    assertEquals(await fetch(), hex(lrXwing), "no suite named: the default suite first");
    await refused(() => fetch(7), ValidationError, "validation");
    assertEquals([await count(1), await count(83)], [0, 0]);
    await alice.conn.close();
    await bob.conn.close();
  });
});

Deno.test("startServer on the same dataDir after close keeps users, sessions, queues and channels", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-restart-" });
  let token: Uint8Array;
  let channelId: Uint8Array;
  {
    const ts = await startTestServer({ dataDir });
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    token = alice.token;
    channelId = await dm(alice.conn, "bob");
    await send(alice.conn, channelId, utf8("survives a restart"));
    await alice.conn.close();
    await bob.conn.close();
    await ts.close();
  }
  const ts = await startTestServer({ dataDir });
  try {
    const c = await connect(ts);
    assertEquals((await c.call({ kind: "resume", token }, "session")).username, "alice");
    const list = await c.call({ kind: "listChannels" }, "channels");
    assertEquals(list.channels.map((x) => toHex(x.channelId)), [toHex(channelId)]);
    // bob logs in with his password: the OPAQUE setup and his record survived
    const b = await connect(ts);
    await login(b, "bob", "pw of bob");
    const msgs = await fetchAll(b);
    assertEquals(msgs.map((m) => new TextDecoder().decode(m.payload)), ["survives a restart"]);
    await c.close();
    await b.close();
  } finally {
    await ts.close();
  }
  await removeDir(dataDir);
});

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await allFiles(p));
    else if (e.isFile) out.push(p);
  }
  return out;
}

Deno.test("db_key: a restart with a wrong or missing key fails with one line and leaves the db unchanged", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-dbkey-" });
  const key = toBase64(randomBytes(32));
  {
    const ts = await startTestServer({ dataDir, env: { QPQ_DB_KEY: key } });
    const alice = await user(ts, "alice");
    await alice.conn.close();
    await ts.close();
  }
  const dbPath = `${dataDir}/qpq.db`;
  const snapshot = async () => {
    const files = (await allFiles(dataDir)).sort();
    return Promise.all(files.map(async (f) => `${f}:${toHex(await Deno.readFile(f))}`));
  };
  const before = await snapshot();
  assert(before.some((f) => f.startsWith(dbPath + ":")), "the database file exists");

  const wrong = await refused(
    () => startTestServer({ dataDir, file: { db_key: toBase64(randomBytes(32)) } }),
    StorageError,
    "storage",
  );
  assertEquals(wrong.message, "Cannot open database: wrong db_key");
  assert(!wrong.message.includes("\n"));
  assertEquals(await snapshot(), before, "a wrong key changes no file");

  const missing = await refused(() => startTestServer({ dataDir }), StorageError, "storage");
  assertEquals(missing.message, "Cannot open database: it is sealed and no db_key was given");
  assertEquals(await snapshot(), before, "a missing key changes no file");

  // the right key from the config file (instead of the environment) opens it
  const ts = await startTestServer({ dataDir, file: { db_key: key } });
  try {
    const c = await connect(ts);
    await login(c, "alice", "pw of alice");
    await c.close();
  } finally {
    await ts.close();
  }
  await removeDir(dataDir);
});

Deno.test("qpq server in production mode refuses a generated certificate: exit 2, one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-prod-" });
  const r = await runQpq(["server", "--listen", "127.0.0.1:0", "--data-dir", `${dir}/d`], {
    env: {
      QPQ_PRODUCTION: "1",
      QPQ_AUTH_TOKEN: toHex(randomBytes(24)),
      QPQ_DB_KEY: toBase64(randomBytes(32)),
    },
  });
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertEquals(
    lines[0],
    "qpq: Production mode refuses 1 setting: (1) a generated certificate (set tls_cert and tls_key)",
  );
  // refused before anything was written
  await assertRejects(() => Deno.stat(`${dir}/d`), Deno.errors.NotFound);
  await removeDir(dir);
});

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("server data dir holds no password, session token or payload bytes under db_key", async () => {
  const password = "Tr0ub4dor&3-scan-password-" + toHex(randomBytes(6));
  const marker = utf8("QPQ-MARKER-PAYLOAD-" + toHex(randomBytes(12)));
  const authToken = "scan-auth-token-" + toHex(randomBytes(8));
  const dbKey = toBase64(randomBytes(32));
  const ts = await startTestServer({
    env: { QPQ_DB_KEY: dbKey, QPQ_AUTH_TOKEN: authToken },
    keepDataDir: true, // scanned after close
  });
  const secrets: [string, Uint8Array][] = [];
  const scan = async (when: string) => {
    const files = await allFiles(ts.dataDir);
    assert(files.some((f) => f.endsWith("qpq.db")), "scanned the database");
    for (const f of files) {
      const bytes = await Deno.readFile(f);
      for (const [what, needle] of secrets) {
        assertEquals(indexOf(bytes, needle), -1, `${what} found in ${f} (${when})`);
      }
    }
    return files;
  };
  try {
    const conn = await connect(ts);
    await register(conn, "scanuser", password, authToken);
    const { session } = await login(conn, "scanuser", password);
    const bobConn = await connect(ts);
    await register(bobConn, "scanbob", "another password", authToken);
    const ch = await dm(conn, "scanbob");
    await send(conn, ch, marker);
    const t = session.token;
    secrets.push(
      ["password", utf8(password)],
      ["session token", t],
      ["session token (hex)", utf8(toHex(t))],
      ["session token (base64)", utf8(toBase64(t))],
      ["marker payload", marker],
      ["auth token", utf8(authToken)],
      ["db_key", utf8(dbKey)],
      ["username", utf8("scanuser")],
    );
    // while running: the WAL holds the latest writes
    const running = await scan("while running");
    assert(running.some((f) => f.endsWith("-wal")), "the WAL was scanned too");
    await conn.close();
    await bobConn.close();
  } finally {
    await ts.close();
  }
  await scan("after close");
  // the scan can find things: the payload is in the db when there is no db_key
  const plain = await startTestServer();
  try {
    const a = await user(plain, "pa");
    await user(plain, "pb");
    await send(a.conn, await dm(a.conn, "pb"), marker);
    let found = false;
    for (const f of await allFiles(plain.dataDir)) {
      if (indexOf(await Deno.readFile(f), marker) >= 0) found = true;
    }
    assert(found, "without db_key the payload is visible, so the scan above is meaningful");
    await a.conn.close();
  } finally {
    await plain.close();
  }
  await removeDir(ts.dataDir);
  await removeDir(plain.dataDir);
});

Deno.test("requests that need a login are refused with auth before one", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    for (
      const req of [
        { kind: "listChannels" },
        { kind: "fetch", afterSeq: 0, limit: 1 },
        { kind: "createDm", username: "x" },
        { kind: "countKeyPackages" },
      ] as const
    ) {
      await refused(() => conn.call(req, "ok"), AuthError, "auth");
    }
    assertNotEquals((await conn.ping()).rttMs, 0);
    await conn.close();
  });
});

Deno.test("commit: an accepted commit sent again (its answer was lost) is a duplicate, not a roster error", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    await user(ts, "bob");
    const g = await alice.conn.call({ kind: "createGroup", name: "team" }, "channel");
    const request = {
      kind: "commit" as const,
      channelId: g.channelId,
      epoch: 0,
      messageId: randomBytes(16),
      payload: fakeCommitPayload(g.channelId, 0),
      add: ["bob"],
      remove: [],
      welcomes: [],
      welcome: utf8("welcome-0"),
      welcomeFor: ["bob"],
    };
    assertEquals((await alice.conn.call(request, "committed")).duplicate, false);
    // bob is a member and the channel is at epoch 1 now: the same bytes again are the same
    // commit, answered as such
    assertEquals((await alice.conn.call(request, "committed")).duplicate, true);
    // a different commit of the old epoch lost the race
    await refused(
      () => alice.conn.call({ ...request, messageId: randomBytes(16) }, "committed"),
      UsageError,
      "epoch_conflict",
    );
    await alice.conn.close();
  });
});

Deno.test("enqueue: a message resent after its sender left the channel is answered as a duplicate", async () => {
  await withServer(async (ts) => {
    const alice = await user(ts, "alice");
    const bob = await user(ts, "bob");
    const { channelId } = await groupWith(alice, ["bob"]);
    const leave = {
      kind: "enqueue" as const,
      channelId,
      messageId: randomBytes(16),
      payload: utf8("bob's leave proposal"),
      messageKind: "proposal" as const,
      epoch: 1,
      recipients: [],
    };
    assertEquals((await bob.conn.call(leave, "enqueued")).duplicate, false);
    // alice commits bob's removal before bob's resend (his answer was lost)
    await alice.conn.call({
      kind: "commit",
      channelId,
      epoch: 1,
      messageId: randomBytes(16),
      payload: fakeCommitPayload(channelId, 1),
      add: [],
      remove: ["bob"],
      welcomes: [],
    }, "committed");
    assertEquals((await bob.conn.call(leave, "enqueued")).duplicate, true);
    // anything new from bob is refused, and looks like any channel he is not in
    await refused(
      () => bob.conn.call({ ...leave, messageId: randomBytes(16) }, "enqueued"),
      AuthError,
      "forbidden",
    );
    for (const u of [alice, bob]) await u.conn.close();
  });
});

Deno.test("usernames are case-insensitive: Bob registers bob, logs in as BOB, and bob or a look-alike is refused", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    await register(conn, "Bob", "pw of bob");
    const { session } = await login(conn, "BOB", "pw of bob");
    assertEquals(session.username, "bob");
    const key = await conn.call({ kind: "fetchIdentityKey", username: "bOb" }, "identityKey");
    assertEquals(key.username, "bob");
    const other = await connect(ts);
    for (const name of ["bob", "b0b", "ＢＯＢ"]) {
      const e = await refused(() => register(other, name, "x"), UsageError, "conflict");
      assertStringIncludes(e.message, name === "b0b" ? "looks too much like" : "already");
    }
    // the reserved form of renamed accounts cannot be registered
    await refused(() => register(other, "carol~2", "x"), ValidationError, "validation");
    await register(other, "Carol", "pw of carol");
    await login(other, "carol", "pw of carol");
    // a DM opened with any spelling is the same channel
    assertEquals(toHex(await dm(other, "BOB")), toHex(await dm(conn, "CAROL")));
    await other.close();
    await conn.close();
  });
});

Deno.test("look-alikes by separators and digits (bob., b.ob, 8ob, nnallory, mallorv, c4rol, d4ve) are refused", async () => {
  await withServer(async (ts) => {
    const conn = await connect(ts);
    for (const name of ["bob", "alice", "mallory", "carol", "dave"]) {
      await register(conn, name, `pw of ${name}`);
    }
    const lookAlikes = [
      ...["bob.", "bob-", "bob_", "bob..", "b.ob", "8ob", "6ob"],
      ...["alice.", "mallorv", "nnallory", "c4rol", "d4ve", "carol."],
    ];
    for (const name of lookAlikes) {
      const e = await refused(() => register(conn, name, "x"), UsageError, "conflict");
      assertStringIncludes(e.message, "looks too much like", name);
    }
    // other names still register
    await register(conn, "rob", "pw of rob");
    await conn.close();
  });
});

Deno.test("registrations of look-alike names racing on several connections: exactly one succeeds", async () => {
  await withServer(async (ts) => {
    const names = ["w0lf", "vvolf", "wolf", "WOLF", "vv0lf", "w01f"];
    const conns = await Promise.all(names.map(() => connect(ts)));
    const results = await Promise.allSettled(names.map((n, i) => register(conns[i]!, n, "pw")));
    assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assertEquals((r.reason as QpqError).code, "conflict");
    }
    await Promise.all(conns.map((c) => c.close()));
  });
});

Deno.test("accounts from before case-insensitive names still log in with their password after migration 3", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-names-" });
  // a schema-2 database as an old build wrote it: Bob (older), bob and Carol, each
  // registered in OPAQUE under the exact spelling
  await writeSchemaTwoDb(
    dataDir,
    ["Bob", "bob", "Carol"].map((name) => ({ name, password: `pw of ${name}` })),
    FAST,
  );
  const ts = await startTestServer({ dataDir });
  try {
    const c = await connect(ts);
    // bob (already lower case) keeps his name; the older Bob is now bob~2, same password
    assertEquals((await login(c, "bob", "pw of bob")).session.username, "bob");
    assertEquals((await login(c, "BOB~2", "pw of Bob")).session.username, "bob~2");
    assertEquals((await login(c, "carol", "pw of Carol")).session.username, "carol");
    assertEquals((await login(c, "CAROL", "pw of Carol")).session.username, "carol");
    // "Bob" now means bob: Bob's password does not open it
    await assertRejects(() => login(c, "Bob", "pw of Bob"));
    await c.close();
  } finally {
    await ts.close();
  }
  await removeDir(dataDir);
});
