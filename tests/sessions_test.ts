/**
 * Issue 18: `logoutEverywhere` and the password change, against a real QUIC server with a
 * real SQLite file (raw requests and the OPAQUE client steps), and through spawned `qpq`
 * processes (`qpq logout --everywhere`, `qpq passwd`).
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { type CliResult, runQpq, withCliUsers } from "./_support/cli.ts";
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
import { AuthError, type QpqError } from "../src/errors.ts";
import { randomBytes } from "../src/bytes.ts";
import type { Push } from "../src/wire/mod.ts";
import { ClientStore } from "../src/store/client/mod.ts";
import { PASSWORD_CHANGES_PER_WINDOW } from "../src/limits.ts";
import { FAST_KDF, testUser } from "./_support/clients.ts";
import { startLyingServer } from "./_support/lying_server.ts";
import { registerUser } from "./_support/fuzz.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { QpqClient } from "../src/client/client.ts";
import { StorageError, TransportError, UsageError } from "../src/errors.ts";

const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

function connect(ts: TestServer, onPush?: (p: Push, id: number) => void) {
  return connectServer({ server: ts.addr, caCertPem: ts.certPem, onPush });
}

function register(conn: ServerConnection, username: string, password: string) {
  return registerUser(conn, username, password, IdentityKeyPair.generate().publicKey);
}

/** OPAQUE login (start and finish); the session token. */
async function login(conn: ServerConnection, username: string, password: string) {
  const proof = await loginProof(conn, username, password);
  return (await conn.call(
    { kind: "loginFinish", username, finish: proof.finish, loginId: proof.loginId },
    "session",
  )).token;
}

/** loginStart and the client's KE3 for `password` (KE3 not sent). */
async function loginProof(conn: ServerConnection, username: string, password: string) {
  const start = await clientLoginStart(password);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, password, started.response, {
    keyStretching: FAST,
  });
  // a wrong password fails on the client: send a KE3 of the right length all the same
  const finish = fin.kind === "ok" ? fin.finishRequest : randomBytes(64);
  return { loginId: started.loginId, finish };
}

/** The whole password change on `conn`, proving `current`; the server's answer. */
async function changePassword(
  conn: ServerConnection,
  username: string,
  current: string,
  next: string,
) {
  const proof = await loginProof(conn, username, current);
  const reg = await clientRegistrationStart(next);
  const started = await conn.call({
    kind: "changePasswordStart",
    loginId: proof.loginId,
    finish: proof.finish,
    request: reg.request,
  }, "passwordChangeStarted");
  const fin = await clientRegistrationFinish(reg.state, next, started.response, {
    keyStretching: FAST,
  });
  return await conn.call(
    { kind: "changePasswordFinish", changeId: started.changeId, record: fin.record },
    "passwordChanged",
  );
}

async function refused(
  p: () => Promise<unknown>,
  code: string,
): Promise<QpqError> {
  const e = await assertRejects(p, AuthError) as QpqError;
  assertEquals(e.code, code, e.message);
  return e;
}

async function withServer(fn: (ts: TestServer) => Promise<void>) {
  const ts = await startTestServer();
  try {
    await fn(ts);
  } finally {
    await ts.close();
  }
}

Deno.test("logoutEverywhere ends every session of the account, on every connection, pushes too", async () => {
  await withServer(async (ts) => {
    const a1 = await connect(ts);
    await register(a1, "alice", "pw-a");
    const t1 = await login(a1, "alice", "pw-a");
    // a second device: its own login, subscribed to pushes
    const pushes: Push[] = [];
    const a2 = await connect(ts, (p) => pushes.push(p));
    const t2 = await login(a2, "alice", "pw-a");
    await a2.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    const bob = await connect(ts);
    await register(bob, "bob", "pw-b");
    const tb = await login(bob, "bob", "pw-b");

    assertEquals(await a1.call({ kind: "logoutEverywhere" }, "loggedOut"), {
      kind: "loggedOut",
      count: 2,
    });
    // both connections of alice are logged out, whatever their token
    for (const c of [a1, a2]) {
      await refused(() => c.call({ kind: "listChannels" }, "channels"), "auth");
    }
    // and neither token resumes anywhere
    const fresh = await connect(ts);
    for (const token of [t1, t2]) {
      await refused(() => fresh.call({ kind: "resume", token }, "session"), "auth");
    }
    // bob is untouched: his connection and his token
    await bob.call({ kind: "listChannels" }, "channels");
    assertEquals((await fresh.call({ kind: "resume", token: tb }, "session")).username, "bob");
    // a2's subscription ended with its session: bob's DM to alice is not pushed to it
    const ch = (await bob.call({ kind: "createDm", username: "alice" }, "channel")).channelId;
    await bob.call({
      kind: "enqueue",
      channelId: ch,
      messageId: randomBytes(16),
      payload: new Uint8Array([1]),
      messageKind: "application",
      epoch: 0,
      recipients: [],
    }, "enqueued");
    await bob.call({ kind: "listChannels" }, "channels"); // the enqueue is committed
    await new Promise((r) => setTimeout(r, 150));
    assertEquals(pushes.length, 0, "a logged-out connection gets no pushes");
    // logging in again works
    await login(a1, "alice", "pw-a");
    for (const c of [a1, a2, bob, fresh]) await c.close();
  });
});

Deno.test("changePassword: the old password no longer logs in, the new one does, other sessions end", async () => {
  await withServer(async (ts) => {
    const a1 = await connect(ts);
    await register(a1, "alice", "old-pw");
    const t1 = await login(a1, "alice", "old-pw");
    const a2 = await connect(ts);
    const t2 = await login(a2, "alice", "old-pw");

    const changed = await changePassword(a1, "alice", "old-pw", "new-pw");
    assertEquals(changed.sessionsEnded, 1, "the other device's session");
    assertEquals(changed.token.length, 32);
    // this connection stays logged in (on the fresh token), the other one is logged out
    await a1.call({ kind: "listChannels" }, "channels");
    await refused(() => a2.call({ kind: "listChannels" }, "channels"), "auth");
    const fresh = await connect(ts);
    for (const token of [t1, t2]) {
      await refused(() => fresh.call({ kind: "resume", token }, "session"), "auth");
    }
    assertEquals(
      (await fresh.call({ kind: "resume", token: changed.token }, "session")).username,
      "alice",
    );
    const e = await assertRejects(() => login(a2, "alice", "old-pw"), AuthError);
    assertEquals(e.message, LOGIN_FAILED_MESSAGE);
    await login(a2, "alice", "new-pw");
    for (const c of [a1, a2, fresh]) await c.close();
  });
});

Deno.test("changePassword needs the session and a fresh proof of the current password", async () => {
  await withServer(async (ts) => {
    const a1 = await connect(ts);
    await register(a1, "alice", "old-pw");
    const token = await login(a1, "alice", "old-pw");
    const bob = await connect(ts);
    await register(bob, "bob", "pw-b");
    await login(bob, "bob", "pw-b");

    // not logged in: refused before anything else
    const anon = await connect(ts);
    const reg = await clientRegistrationStart("evil");
    const proof0 = await loginProof(anon, "alice", "old-pw");
    await refused(() =>
      anon.call({
        kind: "changePasswordStart",
        loginId: proof0.loginId,
        finish: proof0.finish,
        request: reg.request,
      }, "passwordChangeStarted"), "auth");

    // a thief with the token (resumed on their own connection) but not the password
    const thief = await connect(ts);
    await thief.call({ kind: "resume", token }, "session");
    const wrong = await loginProof(thief, "alice", "a guess");
    let e = await refused(() =>
      thief.call({
        kind: "changePasswordStart",
        loginId: wrong.loginId,
        finish: wrong.finish,
        request: reg.request,
      }, "passwordChangeStarted"), "forbidden");
    assertStringIncludes(e.message, "current password is wrong");
    // nor a proof of someone else's password (bob's own login, on the thief's connection)
    const bobs = await loginProof(thief, "bob", "pw-b");
    await refused(() =>
      thief.call({
        kind: "changePasswordStart",
        loginId: bobs.loginId,
        finish: bobs.finish,
        request: reg.request,
      }, "passwordChangeStarted"), "forbidden");
    // finish without a start on this connection: refused
    e = await refused(() =>
      thief.call(
        { kind: "changePasswordFinish", changeId: randomBytes(16), record: randomBytes(192) },
        "passwordChanged",
      ), "forbidden");
    assertStringIncludes(e.message, "start again");
    // a start on a1 cannot be finished on the thief's connection
    const proof = await loginProof(a1, "alice", "old-pw");
    const started = await a1.call({
      kind: "changePasswordStart",
      loginId: proof.loginId,
      finish: proof.finish,
      request: reg.request,
    }, "passwordChangeStarted");
    const fin = await clientRegistrationFinish(reg.state, "evil", started.response, {
      keyStretching: FAST,
    });
    await refused(() =>
      thief.call(
        { kind: "changePasswordFinish", changeId: started.changeId, record: fin.record },
        "passwordChanged",
      ), "forbidden");
    // nothing changed: the old password still logs in, the token still works
    await login(bob, "alice", "old-pw");
    await thief.call({ kind: "listChannels" }, "channels");
    for (const c of [a1, bob, anon, thief]) await c.close();
  });
});

Deno.test("changePasswordStart is rate limited per account", async () => {
  await withServer(async (ts) => {
    const a = await connect(ts);
    await register(a, "alice", "pw");
    await login(a, "alice", "pw");
    const reg = await clientRegistrationStart("next");
    for (let i = 0; i < PASSWORD_CHANGES_PER_WINDOW; i++) {
      const p = await loginProof(a, "alice", `guess ${i}`);
      await refused(() =>
        a.call(
          {
            kind: "changePasswordStart",
            loginId: p.loginId,
            finish: p.finish,
            request: reg.request,
          },
          "passwordChangeStarted",
        ), "forbidden");
    }
    const p = await loginProof(a, "alice", "pw");
    const e = await refused(() =>
      a.call(
        { kind: "changePasswordStart", loginId: p.loginId, finish: p.finish, request: reg.request },
        "passwordChangeStarted",
      ), "rate_limited");
    assertStringIncludes(e.message, "Too many password changes");
    await a.close();
  });
});

// ------------------------------------------------------------------ the local state

/** Does the state at `path` open with `password`? */
async function opens(path: string, password: string): Promise<boolean> {
  try {
    await (await ClientStore.open(path, password)).close();
    return true;
  } catch (e) {
    if (e instanceof StorageError) return false;
    throw e;
  }
}

Deno.test("ClientStore.changePassword re-seals the state file only: data kept, old password refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-passwd-" });
  try {
    const path = `${dir}/s.bin`;
    const s = await openLocalStore(path, "one", {
      create: true,
      username: "alice",
      server: "x:1",
      kdf: FAST_KDF,
    });
    s.setCursor(42);
    await s.close();
    const db = await Deno.readFile(`${path}.db`);
    const s2 = await ClientStore.open(path, "one");
    await assertRejects(() => s2.changePassword("wrong", ["two"]), UsageError, "wrong");
    // while a change is under way both open it
    await s2.changePassword("one", ["one", "two"]);
    assertEquals(s2.passwordCount, 2);
    await s2.changePassword("two", ["two"]);
    assertEquals(s2.passwordCount, 1);
    s2.updateMeta({ deviceId: "still writable" });
    await s2.close();
    assertEquals(await Deno.readFile(`${path}.db`), db, "the database is not rewritten");
    assertEquals(await opens(path, "one"), false);
    const again = await ClientStore.open(path, "two");
    assertEquals(again.cursor(), 42);
    assertEquals(again.meta.deviceId, "still writable");
    assertEquals(again.passwordCount, 1);
    // and once more, from a version-2 file
    await again.changePassword("two", ["three"]);
    await again.close();
    assertEquals([await opens(path, "two"), await opens(path, "three")], [false, true]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a version-2 state with any byte of its header or key slots changed does not open", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-passwd-damage-" });
  try {
    const path = `${dir}/s.bin`;
    const s = await openLocalStore(path, "one", {
      create: true,
      username: "alice",
      server: "x:1",
      kdf: FAST_KDF,
    });
    await s.changePassword("one", ["two"]);
    await s.close();
    const good = await Deno.readFile(path);
    assertEquals(good[4], 2, "format version 2");
    const jsonLen = (good[5]! << 8) | good[6]!;
    const slotsAt = 8 + jsonLen + 16;
    // the slot count, a slot's nonce, ciphertext and tag, the key check, the meta
    for (
      const i of [slotsAt, slotsAt + 3, slotsAt + 40, slotsAt + 72, slotsAt + 80, good.length - 1]
    ) {
      const b = good.slice();
      b[i]! ^= 0x01;
      await Deno.writeFile(path, b);
      await assertRejects(
        () => ClientStore.open(path, "two"),
        StorageError,
        "wrong password or damaged file",
      );
    }
    await Deno.writeFile(path, good);
    assert(await opens(path, "two"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a password change whose answer is lost: the state opens with both, the next login keeps the one the server took", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-passwd-lost-" });
  const lie = await startLyingServer(ts);
  try {
    const alice = await testUser(lie, dir, "alice", { timeoutMs: 1_000 });
    lie.rewrite = (f, d) =>
      d === "toClient" && f.type === "response" && f.response.kind === "passwordChanged"
        ? []
        : undefined;
    await assertRejects(() => alice.client.changePassword("new-pw"), TransportError, "lost");
    assertEquals(alice.client.store.passwordCount, 2);
    await alice.client.close();
    const path = `${dir}/alice.bin`;
    assertEquals([await opens(path, "pw-alice"), await opens(path, "new-pw")], [true, true]);
    // the server did change it: the next login, with the new password, keeps only that one
    const store = await ClientStore.open(path, "new-pw");
    const client = QpqClient.create({ store, password: "new-pw", caCertPem: ts.certPem });
    await client.connect();
    await client.ensureSession();
    assertEquals(store.passwordCount, 1);
    await client.close();
    assertEquals([await opens(path, "pw-alice"), await opens(path, "new-pw")], [false, true]);
  } finally {
    await lie.close();
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ the qpq command

function ok(r: CliResult): CliResult {
  assertEquals(r.code, 0, r.stderr);
  return r;
}

/** A failed command: exit `code` (1; 2 for a usage mistake) and exactly one stderr line. */
function oneLine(r: CliResult, code = 1): string {
  assertEquals(r.code, code, r.stdout);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  return lines[0]!;
}

/** A copy of alice's state in `to` (a second device of the same account). */
async function copyState(dir: string, to: string, user: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const f of [`qpq-${user}.bin`, `qpq-${user}.bin.db`]) {
    await Deno.copyFile(`${dir}/${f}`, `${to}/${f}`);
  }
}

/** The session token a state holds (opened in process with its password). */
async function storedToken(path: string, password: string): Promise<Uint8Array | undefined> {
  const s = await ClientStore.open(path, password);
  try {
    return s.meta.sessionToken;
  } finally {
    await s.close();
  }
}

Deno.test("qpq logout --everywhere ends the sessions of both devices", async () => {
  await withCliUsers(async (qpq, { ts, dir, env }) => {
    ok(await qpq("alice", "register-user"));
    const dev2 = `${dir}/dev2`;
    await copyState(dir, dev2, "alice");
    const onDev2 = (...args: string[]) =>
      runQpq([...args, "--username", "alice"], { cwd: dev2, env: env("alice") });
    ok(await onDev2("login"));
    const token2 = await storedToken(`${dev2}/qpq-alice.bin`, "pw-alice");
    assert(token2 !== undefined);

    assertEquals(
      ok(await qpq("alice", "logout", "--everywhere")).stdout,
      "Logged out of every session of @alice (2 sessions ended)\n",
    );
    assertStringIncludes(ok(await qpq("alice", "whoami")).stdout, "session: none");
    // the second device's token is dead on the server: it must log in again
    const c = await connect(ts);
    await refused(() => c.call({ kind: "resume", token: token2 }, "session"), "auth");
    await c.close();
    // --json
    ok(await qpq("alice", "login"));
    assertEquals(JSON.parse(ok(await qpq("alice", "logout", "--everywhere", "--json")).stdout), {
      type: "logout",
      username: "alice",
      everywhere: true,
      sessions: 1,
    });
  });
});

Deno.test("qpq passwd: the new password opens the state and logs in, the old one neither; messages kept", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    ok(await qpq("alice", "dm", "@bob"));
    ok(await qpq("alice", "send", "--to", "bob", "before the change"));
    const dev2 = `${dir}/dev2`;
    await copyState(dir, dev2, "alice");
    ok(await runQpq(["login", "--username", "alice"], { cwd: dev2, env: env("alice") }));
    const newPw = { ...env("alice"), QPQ_NEW_PASSWORD: "the new one" };
    const as = (cwd: string, password: string, ...args: string[]) =>
      runQpq([...args, "--username", "alice"], {
        cwd,
        env: { ...env("alice"), QPQ_PASSWORD: password },
      });

    // no terminal and no QPQ_NEW_PASSWORD: one line, nothing changed
    assertEquals(
      oneLine(await qpq("alice", "passwd"), 2),
      "qpq: New password required: set QPQ_NEW_PASSWORD (no terminal to prompt on)",
    );
    const changed = ok(await runQpq(["passwd", "--username", "alice"], { cwd: dir, env: newPw }));
    assertEquals(changed.stdout, "Password changed for @alice (1 other session ended)\n");

    // the local state opens with the new password only
    assertEquals(
      oneLine(await as(dir, "pw-alice", "whoami")),
      "qpq: Cannot open state: wrong password or damaged file",
    );
    const history = ok(await as(dir, "the new one", "history", "@bob")).stdout;
    assertStringIncludes(history, "before the change");
    // this device is still logged in; a fresh OPAQUE login with the new password works
    assertStringIncludes(ok(await as(dir, "the new one", "whoami")).stdout, "session: valid");
    ok(await as(dir, "the new one", "login"));
    ok(await as(dir, "the new one", "send", "--to", "bob", "after the change"));
    // bob has not accepted alice yet: both of her messages arrived as one request
    assertEquals(ok(await qpq("bob", "recv")).stdout, "request from @alice: 2 messages\n");

    // the other device: its session ended, and the old password no longer logs in
    assertEquals(oneLine(await as(dev2, "pw-alice", "login")), `qpq: ${LOGIN_FAILED_MESSAGE}`);
    assertEquals(oneLine(await as(dev2, "pw-alice", "recv")), `qpq: ${LOGIN_FAILED_MESSAGE}`);
    // --json (the one other session: the token `qpq login` above replaced locally)
    assertEquals(
      JSON.parse(
        ok(
          await runQpq(["passwd", "--username", "alice", "--json"], {
            cwd: dir,
            env: { ...env("alice"), QPQ_PASSWORD: "the new one", QPQ_NEW_PASSWORD: "third" },
          }),
        ).stdout,
      ),
      { type: "passwd", username: "alice", sessionsEnded: 1 },
    );
    ok(await as(dir, "third", "whoami"));
  });
});
