/**
 * Issue 18: no stranger can lock a user's logins. Real QUIC on loopback with each party
 * sending from its own address (127.0.0.2–12, which `deno task test` may bind), a real
 * SQLite store, default limits.
 *
 * @module
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { loginUser, registerUser } from "./_support/fuzz.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { clientLoginStart } from "../src/auth/opaque.ts";
import { QpqError } from "../src/errors.ts";
import {
  LOGIN_ATTEMPTS_PER_USER,
  LOGIN_UNKNOWN_SOURCE_BURST,
  OPAQUE_KE1_BYTES,
} from "../src/limits.ts";
import { ed25519 } from "@noble/curves/ed25519.js";

const PASSWORD = "correct horse battery staple";

function connect(srv: TestServer, from: string): Promise<ServerConnection> {
  return connectServer({ server: srv.addr, caCertPem: srv.certPem, localHostname: from });
}

async function register(srv: TestServer, name: string): Promise<void> {
  const c = await connect(srv, "127.0.0.1");
  try {
    await registerUser(c, name, PASSWORD, ed25519.getPublicKey(ed25519.utils.randomSecretKey()));
  } finally {
    await c.close();
  }
}

/** The code of a loginStart for `username` with `request` (or "ok"). */
async function start(conn: ServerConnection, username: string, request?: Uint8Array) {
  try {
    request ??= (await clientLoginStart("a guess")).request;
    await conn.call({ kind: "loginStart", username, request }, "loginStarted");
    return "ok";
  } catch (e) {
    if (e instanceof QpqError) return e.code;
    throw e;
  }
}

/** Logs `username` in from `from`; returns the error code, or "ok". */
async function logIn(srv: TestServer, username: string, from: string): Promise<string> {
  const c = await connect(srv, from);
  try {
    assertEquals((await loginUser(c, username, PASSWORD)).length, 32);
    return "ok";
  } catch (e) {
    if (e instanceof QpqError) return e.code;
    throw e;
  } finally {
    await c.close();
  }
}

Deno.test("login requests that fail to decode cost the named user nothing", async () => {
  const srv = await startTestServer();
  try {
    await register(srv, "victim");
    const x = await connect(srv, "127.0.0.12");
    // 96 bytes (the right length) that are no OPAQUE KE1: once counted against the victim
    // before they were decoded, so 10 a minute locked her out everywhere
    const junk = new Uint8Array(OPAQUE_KE1_BYTES).fill(0xff);
    const codes: string[] = [];
    for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER + 5; i++) {
      codes.push(await start(x, "victim", junk));
    }
    assert(codes.every((c) => c === "validation"), codes.join(","));
    await x.close();
    // she logs in, from her own address and even from the attacker's
    assertEquals(await logIn(srv, "victim", "127.0.0.2"), "ok");
    assertEquals(await logIn(srv, "victim", "127.0.0.12"), "ok");
  } finally {
    await srv.close();
  }
});

Deno.test("guesses from one address never lock the user's logins from another", async () => {
  const srv = await startTestServer();
  try {
    await register(srv, "victim");
    const x = await connect(srv, "127.0.0.11");
    const codes: string[] = [];
    for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER + 3; i++) codes.push(await start(x, "victim"));
    assertEquals(codes.filter((c) => c === "ok").length, LOGIN_ATTEMPTS_PER_USER);
    assertEquals(codes.at(-1), "rate_limited", "the guessing address is held back");
    await x.close();
    assertEquals(await logIn(srv, "victim", "127.0.0.11"), "rate_limited", "still, from there");
    assertEquals(await logIn(srv, "victim", "127.0.0.2"), "ok", "her laptop is not");
  } finally {
    await srv.close();
  }
});

Deno.test("an address the user logged in from passes while strangers from many addresses have spent the account's allowance", async () => {
  const srv = await startTestServer();
  try {
    await register(srv, "victim");
    assertEquals(await logIn(srv, "victim", "127.0.0.2"), "ok");
    // strangers on five addresses guess as fast as each may
    const tries = await Promise.all(["127.0.0.4", "127.0.0.5", "127.0.0.6"].map(async (from) => {
      const c = await connect(srv, from);
      const r: string[] = [];
      for (let i = 0; i < LOGIN_ATTEMPTS_PER_USER; i++) r.push(await start(c, "victim"));
      await c.close();
      return r;
    }));
    const all = tries.flat();
    // guesses from every unknown address together: the account's shared allowance (the
    // next comes back in a minute, past the slow-down bound, so the rest are refused)
    assertEquals(all.filter((c) => c === "ok").length, LOGIN_UNKNOWN_SOURCE_BURST);
    assertEquals(
      all.filter((c) => c === "rate_limited").length,
      all.length - LOGIN_UNKNOWN_SOURCE_BURST,
    );
    const fresh = await connect(srv, "127.0.0.7");
    assertEquals(await start(fresh, "victim"), "rate_limited", "a fresh address too");
    await fresh.close();
    // the victim, from the address she logged in from before, is not held back at all
    const t0 = performance.now();
    assertEquals(await logIn(srv, "victim", "127.0.0.2"), "ok");
    assert(performance.now() - t0 < 5_000);
    // another account is untouched by all this
    await register(srv, "dave");
    assertEquals(await logIn(srv, "dave", "127.0.0.8"), "ok");
  } finally {
    await srv.close();
  }
});
