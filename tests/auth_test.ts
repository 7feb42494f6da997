/**
 * Auth tests: the OPAQUE adapter (RFC 9807 vectors where the library allows, full
 * round trips, failure indistinguishability), session tokens on a real store, and the
 * login rate limiter.
 */

import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { fromHex, randomBytes, toHex, utf8 } from "../src/bytes.ts";
import { AuthError, CryptoError, ValidationError } from "../src/errors.ts";
import { LOGIN_ATTEMPTS_PER_CONNECTION, LOGIN_ATTEMPTS_PER_USER } from "../src/limits.ts";
import {
  authenticateSession,
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  createServerSetup,
  endSession,
  issueSession,
  type KeyStretching,
  LOGIN_FAILED_MESSAGE,
  loginFinish,
  LoginRateLimiter,
  loginStart,
  newSessionToken,
  OPAQUE_SESSION_KEY_BYTES,
  OpaqueServerSetup,
  registrationFinish,
  registrationStart,
  ServerLoginState,
  SlidingWindowLimiter,
} from "../src/auth/mod.ts";
import { MEMORY_PATH, SqliteServerStore } from "../src/store/server/mod.ts";

/** Cheap argon2id so most tests stay fast; one test uses the production default. */
const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

const VECTORS = new URL("../../shared/test-vectors/opaque/vectors.json", import.meta.url);

interface OpaqueVector {
  config: Record<string, string>;
  inputs: Record<string, string>;
  outputs: Record<string, string>;
}

async function register(
  setup: OpaqueServerSetup,
  username: string,
  password: string,
  keyStretching: KeyStretching = FAST,
) {
  const start = await clientRegistrationStart(password);
  const response = await registrationStart(setup, username, start.request);
  const fin = await clientRegistrationFinish(start.state, password, response, { keyStretching });
  return { ...fin, record: await registrationFinish(fin.record) };
}

async function login(
  setup: OpaqueServerSetup,
  username: string,
  password: string,
  record: Uint8Array | undefined,
  keyStretching: KeyStretching = FAST,
) {
  const c1 = await clientLoginStart(password);
  const s1 = await loginStart(setup, username, c1.request, record);
  const c2 = await clientLoginFinish(c1.state, password, s1.response, { keyStretching });
  return { c1, s1, c2 };
}

Deno.test("registrationStart reproduces the RFC 9807 vectors' registration response", async () => {
  let text: string;
  try {
    text = await Deno.readTextFile(VECTORS);
  } catch (e) {
    throw new Error(
      `OPAQUE test vectors missing at ${VECTORS.pathname}: shared/test-vectors must sit beside the repo`,
      { cause: e },
    );
  }
  const vectors = JSON.parse(text) as OpaqueVector[];
  // The library implements ristretto255 + SHA-512 + 3DH; only those vectors apply.
  const mine = vectors.filter((v) =>
    v.config.Group === "ristretto255" && v.config.OPRF === "ristretto255-SHA512" &&
    v.config.Name === "3DH"
  );
  const real = mine.filter((v) => v.config.Fake === "False");
  assert(real.length >= 2, "expected the ristretto255 vectors in vectors.json");
  for (const v of mine) {
    // ServerSetup serialization: oprf_seed (64) ‖ server private key (32) ‖ the public key
    // used for unknown users (32, a valid group element: taken from a fresh setup).
    const bytes = new Uint8Array(128);
    bytes.set(fromHex(v.inputs.oprf_seed!), 0);
    bytes.set(fromHex(v.inputs.server_private_key!), 64);
    bytes.set((await createServerSetup()).toBytes().subarray(96), 96);
    const setup = await OpaqueServerSetup.fromBytes(bytes);
    assertEquals(toHex(setup.publicKey()), v.inputs.server_public_key);
    if (v.config.Fake === "True") continue;
    const username = new TextDecoder().decode(fromHex(v.inputs.credential_identifier!));
    const response = await registrationStart(
      setup,
      username,
      fromHex(v.outputs.registration_request!),
    );
    assertEquals(toHex(response), v.outputs.registration_response);
  }
});

Deno.test("loginFinish agrees with the client on the session key (default key stretching)", async () => {
  const setup = await createServerSetup();
  const reg = await register(setup, "alice", "correct horse", "memory-constrained");
  const { s1, c2 } = await login(setup, "alice", "correct horse", reg.record, "memory-constrained");
  assert(c2.kind === "ok", "client login failed");
  const s2 = await loginFinish(s1.serverState, c2.finishRequest);
  assert(s2.kind === "ok", "server login failed");
  assertEquals(s2.sessionKey.length, OPAQUE_SESSION_KEY_BYTES);
  assertEquals(toHex(s2.sessionKey), toHex(c2.sessionKey));
  assertEquals(toHex(c2.exportKey), toHex(reg.exportKey));
  assertEquals(toHex(c2.serverPublicKey), toHex(setup.publicKey()));
  assertEquals(toHex(reg.serverPublicKey), toHex(setup.publicKey()));
});

Deno.test("clientLoginFinish fails for a wrong password and the server refuses a forged finish", async () => {
  const setup = await createServerSetup();
  const reg = await register(setup, "alice", "right password");
  const { s1, c2 } = await login(setup, "alice", "wrong password", reg.record);
  assert(c2.kind === "failed");
  assertEquals([c2.error.code, c2.error.message], ["auth", LOGIN_FAILED_MESSAGE]);
  // A client that ignores its own failure and sends garbage gets the same error.
  for (const forged of [randomBytes(64), new Uint8Array(0), randomBytes(3)]) {
    const s2 = await loginFinish(s1.serverState, forged);
    assert(s2.kind === "failed");
    assert(s2.error instanceof AuthError);
    assertEquals([s2.error.code, s2.error.message], ["auth", LOGIN_FAILED_MESSAGE]);
  }
  // Key stretching other than at registration is as good as a wrong password.
  const other = await login(setup, "alice", "right password", reg.record, {
    argon2id: { memoryKiB: 512, iterations: 1, parallelism: 1 },
  });
  assertEquals(other.c2.kind, "failed");
});

Deno.test("loginStart for an unknown user fails exactly like a wrong password", async () => {
  const setup = await createServerSetup();
  const reg = await register(setup, "alice", "pw-alice");
  const known = await login(setup, "alice", "not it", reg.record);
  const unknown = await login(setup, "nobody", "not it", undefined);
  assertEquals(unknown.s1.response.length, known.s1.response.length);
  assert(known.c2.kind === "failed" && unknown.c2.kind === "failed");
  assertEquals(
    [unknown.c2.error.name, unknown.c2.error.code, unknown.c2.error.message],
    [known.c2.error.name, known.c2.error.code, known.c2.error.message],
  );
  // Server side: a KE3 from some other, valid login does not open the dummy state.
  const good = await login(setup, "alice", "pw-alice", reg.record);
  assert(good.c2.kind === "ok");
  const r1 = await loginFinish(unknown.s1.serverState, good.c2.finishRequest);
  const r2 = await loginFinish(known.s1.serverState, good.c2.finishRequest);
  assert(r1.kind === "failed" && r2.kind === "failed");
  assertEquals(r1.error.message, r2.error.message);
});

Deno.test("registrationFinish and registrationStart reject malformed input", async () => {
  const setup = await createServerSetup();
  const reg = await register(setup, "alice", "pw");
  assertEquals(await registrationFinish(reg.record), reg.record);
  await assertRejects(() => registrationFinish(new Uint8Array(192).fill(0xff)), ValidationError);
  await assertRejects(() => registrationFinish(reg.record.subarray(1)), ValidationError);
  await assertRejects(() => registrationStart(setup, "alice", randomBytes(5)), ValidationError);
  await assertRejects(() => registrationStart(setup, "alice", new Uint8Array(0)), ValidationError);
  await assertRejects(
    () => loginStart(setup, "alice", randomBytes(5), reg.record),
    ValidationError,
  );
  await assertRejects(() => OpaqueServerSetup.fromBytes(randomBytes(12)), CryptoError);
});

Deno.test("ServerLoginState survives a round trip through a store between requests", async () => {
  const setup = await OpaqueServerSetup.fromBytes((await createServerSetup()).toBytes());
  const store = await SqliteServerStore.open(MEMORY_PATH);
  await store.createUser("alice", (await register(setup, "alice", "pw")).record);
  const c1 = await clientLoginStart("pw");
  const s1 = await loginStart(
    setup,
    "alice",
    c1.request,
    (await store.getRegistrationRecord("alice"))?.record,
  );
  const loginId = randomBytes(16);
  await store.savePendingLogin(
    loginId,
    { username: "alice", state: s1.serverState.toBytes() },
    Date.now() + 60_000,
  );
  const c2 = await clientLoginFinish(c1.state, "pw", s1.response, { keyStretching: FAST });
  assert(c2.kind === "ok");
  const pending = await store.takePendingLogin(loginId);
  assert(pending !== undefined);
  const s2 = await loginFinish(ServerLoginState.fromBytes(pending.state), c2.finishRequest);
  assert(s2.kind === "ok");
  assertEquals(toHex(s2.sessionKey), toHex(c2.sessionKey));
  await store.close();
});

Deno.test("OpaqueServerSetup and login states redact themselves", async () => {
  const setup = await createServerSetup();
  const secretHex = toHex(setup.toBytes());
  const c1 = await clientLoginStart("pw");
  const s1 = await loginStart(setup, "x", c1.request, undefined);
  for (const obj of [setup, s1.serverState, c1.state]) {
    const shown = Deno.inspect(obj) + JSON.stringify(obj) + JSON.stringify({ obj });
    assert(shown.includes("redacted"), shown);
    assert(!shown.includes(secretHex.slice(0, 16)));
  }
});

Deno.test("newSessionToken returns distinct 32-byte tokens", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const t = newSessionToken();
    assertEquals(t.length, 32);
    seen.add(toHex(t));
  }
  assertEquals(seen.size, 100);
});

Deno.test("issueSession tokens authenticate until expiry or endSession", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq_auth_" });
  let now = 1_700_000_000_000;
  const store = await SqliteServerStore.open(`${dir}/s.db`, { dbKey: "k", clock: () => now });
  try {
    await store.createUser("alice", utf8("record"));
    const a = await issueSession(store, "alice", { now, ttlMs: 1000 });
    const b = await issueSession(store, "alice", { now });
    assertEquals(a.token.length, 32);
    assertEquals(await authenticateSession(store, a.token), "alice");
    assertEquals(await authenticateSession(store, a.token.subarray(1)), undefined);
    assertEquals(await authenticateSession(store, randomBytes(32)), undefined);
    now += 1000;
    assertEquals(await authenticateSession(store, a.token), undefined);
    assertEquals(await authenticateSession(store, b.token), "alice");
    assertEquals(await endSession(store, b.token), true);
    assertEquals(await authenticateSession(store, b.token), undefined);
    assertEquals(await endSession(store, b.token), false);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SlidingWindowLimiter refuses past the limit and allows again after the window", async () => {
  let now = 0;
  const rl = new SlidingWindowLimiter({ limit: 3, windowMs: 1000, clock: () => now });
  for (let i = 0; i < 3; i++) {
    assertEquals((await rl.hit("k")).allowed, true);
    now += 100;
  }
  const refused = await rl.hit("k");
  assertEquals(refused, { allowed: false, remaining: 0, retryAfterMs: 700 });
  assertEquals((await rl.hit("other")).allowed, true);
  now = 1000; // the first attempt (t=0) left the window
  assertEquals((await rl.hit("k")).allowed, true);
  assertEquals((await rl.hit("k")).allowed, false);
  await rl.reset("k");
  assertEquals((await rl.hit("k")).allowed, true);
});

Deno.test("SlidingWindowLimiter evicts the least recently used key past maxKeys", async () => {
  const rl = new SlidingWindowLimiter({ limit: 1, windowMs: 1000, clock: () => 0, maxKeys: 2 });
  await rl.hit("a");
  await rl.hit("b");
  await rl.hit("a"); // refused, but now most recent
  await rl.hit("c"); // evicts b
  assertEquals(rl.size, 2);
  assertEquals((await rl.hit("a")).allowed, false);
  assertEquals((await rl.hit("b")).allowed, true);
});

Deno.test("LoginRateLimiter trips per user and per connection with rate_limited", async () => {
  const now = 5_000;
  const rl = new LoginRateLimiter({ clock: () => now });
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER; i++) await rl.check("alice", `conn-${i}`);
  const e = await assertRejects(() => rl.check("alice", "conn-new"), AuthError);
  assertEquals(e.code, "rate_limited");
  assert(!e.message.includes("alice"));
  // Unknown and other users are limited on their own counters.
  await rl.check("bob", "conn-x");
  await rl.succeeded("alice");
  await rl.check("alice", "conn-y");
  // One connection trying many usernames.
  const rl2 = new LoginRateLimiter({ clock: () => now });
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_CONNECTION; i++) await rl2.check(`user-${i}`, "conn");
  const e2 = await assertRejects(() => rl2.check("fresh-user", "conn"), AuthError);
  assertEquals(e2.code, "rate_limited");
  // The refused connection did not use up fresh-user's allowance.
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER; i++) await rl2.check("fresh-user", `c${i}`);
});
