/**
 * Auth tests: the OPAQUE adapter (RFC 9807 vectors where the library allows, full
 * round trips, failure indistinguishability), session tokens on a real store, and the
 * login rate limiter.
 */

import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { fromHex, randomBytes, toHex, utf8 } from "../src/bytes.ts";
import { AuthError, CryptoError, ValidationError } from "../src/errors.ts";
import {
  LOGIN_ATTEMPTS_PER_SOURCE,
  LOGIN_ATTEMPTS_PER_USER,
  LOGIN_UNKNOWN_SOURCE_BURST,
  LOGIN_UNKNOWN_SOURCE_REFILL_MS,
} from "../src/limits.ts";
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
  TokenBucketLimiter,
} from "../src/auth/mod.ts";
import { MEMORY_PATH, SqliteServerStore } from "../src/store/server/mod.ts";
import { accountHandlers } from "../src/server/accounts.ts";
import { resolveConfig } from "../src/server/config.ts";
import type { ServerContext } from "../src/server/context.ts";
import { silentLogger } from "../src/log.ts";

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

Deno.test("SlidingWindowLimiter: a table full of made-up names evicts the least recently used, never refuses everyone", async () => {
  let now = 0;
  const rl = new SlidingWindowLimiter({ limit: 3, windowMs: 1000, clock: () => now, maxKeys: 5 });
  for (let i = 0; i < 3; i++) assertEquals((await rl.hit("victim")).allowed, true);
  assertEquals((await rl.hit("victim")).allowed, false);
  // fewer fresh keys than the table holds: the lockout holds
  for (let i = 0; i < 4; i++) assertEquals((await rl.hit(`fresh-${i}`)).allowed, true);
  assertEquals((await rl.hit("victim")).allowed, false, "still locked: it was used last");
  // an attacker cycles 1,000 fresh usernames: every one is let in (issue 18: the old
  // limiter refused every new key once 5 live keys filled it, locking out every user)
  const fresh: boolean[] = [];
  for (let i = 0; i < 1000; i++) {
    now += 0.5;
    fresh.push((await rl.hit(`flood-${i}`)).allowed);
  }
  assertEquals(fresh.filter((a) => a).length, 1000);
  assertEquals(rl.size, 5);
  assertEquals((await rl.hit("a-real-user")).allowed, true);
});

Deno.test("LoginRateLimiter: per user and source, per source, and a shared allowance for unknown sources", async () => {
  let now = 5_000;
  const slept: number[] = [];
  const rl = new LoginRateLimiter({
    clock: () => now,
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  });
  // failures from one source lock the user out of that source only
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER; i++) await rl.checkUser("alice", "10.0.0.1");
  const e = await assertRejects(() => rl.checkUser("alice", "10.0.0.1"), AuthError);
  assertEquals(e.code, "rate_limited");
  assert(!e.message.includes("alice"));
  await rl.checkUser("alice", "10.0.0.2");
  await rl.checkUser("bob", "10.0.0.1");
  // one source spraying usernames hits the per-source limit, whatever the connection
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_SOURCE; i++) await rl.checkSource("10.9.9.9");
  assertEquals(
    (await assertRejects(() => rl.checkSource("10.9.9.9"), AuthError)).code,
    "rate_limited",
  );
  await rl.checkSource("10.9.9.8");
  // a login that succeeds gives its attempt back: an office behind one NAT logs in freely
  for (let i = 0; i < 3 * LOGIN_ATTEMPTS_PER_SOURCE; i++) {
    await rl.checkSource("10.7.7.7");
    await rl.succeeded(`worker${i}`, "10.7.7.7");
  }
  // carol logs in from her laptop; then strangers from many addresses spend the allowance
  // unknown sources share for her account
  await rl.succeeded("carol", "192.0.2.7");
  let allowed = 0;
  for (let i = 0; i < 100; i++) {
    try {
      await rl.checkUser("carol", `198.51.100.${i}`);
      allowed++;
    } catch (err) {
      assertEquals((err as AuthError).code, "rate_limited");
    }
  }
  assertEquals(allowed, LOGIN_UNKNOWN_SOURCE_BURST);
  // her laptop is never held back by them
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER; i++) await rl.checkUser("carol", "192.0.2.7");
  assertEquals(slept, []);
  // an unknown source is slowed down, not refused, when the next attempt is near
  now += LOGIN_UNKNOWN_SOURCE_REFILL_MS - 3_000;
  await rl.checkUser("carol", "203.0.113.1");
  assertEquals(slept.length, 1);
  assert(slept[0]! > 2_000 && slept[0]! <= 3_000, String(slept[0]));
});

Deno.test("LoginRateLimiter: guesses at one account from any number of unknown sources are bounded per day", async () => {
  let now = 0;
  const rl = new LoginRateLimiter({ clock: () => now, sleep: () => Promise.resolve() });
  let guesses = 0;
  let source = 0;
  for (; now < 24 * 3600_000; now += 1_000) {
    // a new address every second, each trying as fast as it may
    try {
      await rl.checkUser("victim", `s${source++}`);
      guesses++;
    } catch { /* refused */ }
  }
  const bound = LOGIN_UNKNOWN_SOURCE_BURST + 24 * 3600_000 / LOGIN_UNKNOWN_SOURCE_REFILL_MS;
  assert(guesses <= bound, `${guesses} guesses > ${bound}`);
  assert(guesses >= bound - 2, `${guesses}: the allowance refills`);
});

Deno.test("loginStart (handler, sealed store) takes the same time for known and unknown users: medians within 25%", async () => {
  const store = await SqliteServerStore.open(MEMORY_PATH, { dbKey: "k".repeat(32) });
  try {
    const setup = await createServerSetup();
    const reg = await register(setup, "alice", "pw");
    await store.createUser("alice", reg.record);
    const ctx: ServerContext = {
      config: resolveConfig({}, {}, {}),
      log: silentLogger,
      startedAt: 0,
      stats: { connections: 0, requests: 0 },
      queueDepth: () => Promise.resolve(0),
      condition: () => Promise.resolve({ status: "ok", reason: "" }),
    };
    const unlimited = new SlidingWindowLimiter({ limit: 1e9, windowMs: 1 });
    const handlers = accountHandlers(
      ctx,
      store,
      setup,
      new LoginRateLimiter({
        perUser: unlimited,
        perSource: new TokenBucketLimiter({ burst: 1e9, refillMs: 1 }),
        unknownSources: new TokenBucketLimiter({ burst: 1e9, refillMs: 1 }),
      }),
    );
    const conn = {
      id: 1,
      remote: "",
      source: "",
      username: undefined,
      sessionHash: undefined,
      cleanups: new Set<() => void>(),
    };
    const ke1 = (await clientLoginStart("pw")).request;
    const time = async (username: string) => {
      const t0 = performance.now();
      await handlers.loginStart!({ kind: "loginStart", username, request: ke1 }, conn, {} as never);
      return performance.now() - t0;
    };
    for (let i = 0; i < 20; i++) await time(i % 2 ? "alice" : "nobody"); // warm up
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 300; i++) { // interleaved, so machine load hits both alike
      known.push(await time("alice"));
      unknown.push(await time(`nobody${i}`));
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
    const k = median(known);
    const u = median(unknown);
    console.log(
      `loginStart median: known ${k.toFixed(3)} ms, unknown ${u.toFixed(3)} ms, ratio ${
        (u / k).toFixed(3)
      }`,
    );
    assert(u / k > 0.8 && u / k < 1.25, `ratio ${u / k}`);
  } finally {
    await store.close();
  }
});

Deno.test("TokenBucketLimiter allows a burst, refills evenly, forgets full buckets first, then the least recently used", async () => {
  let now = 0;
  const rl = new TokenBucketLimiter({ burst: 3, refillMs: 300, clock: () => now, maxKeys: 2 });
  for (let i = 0; i < 3; i++) assertEquals((await rl.hit("a")).allowed, true);
  const refused = await rl.hit("a");
  assertEquals(refused, { allowed: false, remaining: 0, retryAfterMs: 100 });
  now = 100; // one token back
  assertEquals((await rl.hit("a")).allowed, true);
  assertEquals((await rl.hit("a")).allowed, false);
  assertEquals((await rl.hit("b")).allowed, true);
  assertEquals((await rl.hit("a")).allowed, false, "refused, and now the most recent");
  // full of buckets still refilling: a new key is admitted (never refuse everyone) and the
  // least recently used bucket ("b": "a" is under attack and stays) makes room
  assertEquals((await rl.hit("c")).allowed, true);
  assertEquals(rl.size, 2);
  assertEquals((await rl.hit("a")).allowed, false, "a's count survived: it was used most recently");
  now = 1000; // every bucket full again: forgotten to make room
  assertEquals((await rl.hit("d")).allowed, true);
  assert(rl.size <= 2);
});

Deno.test("TokenBucketLimiter.reserve slows down before it refuses, and the average rate holds", async () => {
  let now = 0;
  const rl = new TokenBucketLimiter({ burst: 2, refillMs: 2000, clock: () => now });
  assertEquals(rl.reserve("u", 1500).delayMs, 0);
  assertEquals(rl.reserve("u", 1500).delayMs, 0);
  const slow = rl.reserve("u", 1500);
  assertEquals([slow.allowed, slow.delayMs], [true, 1000]);
  const refused = rl.reserve("u", 1500);
  assertEquals(refused.allowed, false, "the next one would wait 2 s, over the bound");
  now = 3000; // 3 tokens back: 1 owed, 2 available... capped at burst
  assertEquals(rl.reserve("u", 0).allowed, true);
  assertEquals((await rl.hit("u")).allowed, true);
});
