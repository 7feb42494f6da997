/**
 * Issue 18: strangers cannot lock anyone out. A connection that does not log in is closed
 * at its deadline; connections not logged in are budgeted per source address and may hold
 * only a share of `max_connections`, so a logged-in user still gets in. Real QUIC on
 * loopback, a real SQLite store.
 *
 * @module
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { loginUser, registerUser } from "./_support/fuzz.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { connectQuic, parseHostPort } from "../src/transport/quic.ts";
import { Admission, sourceOf } from "../src/server/_admission.ts";
import { QpqError } from "../src/errors.ts";
import { FrameReader, lengthPrefixed } from "../src/wire/framing.ts";
import { FRAME_READ_CHUNK_BYTES, FRAME_READ_IDLE_BYTES } from "../src/limits.ts";
import { ed25519 } from "@noble/curves/ed25519.js";

const PASSWORD = "correct horse battery staple";

function connect(srv: TestServer): Promise<ServerConnection> {
  return connectServer({ server: srv.addr, caCertPem: srv.certPem });
}

function identityKey(): Uint8Array {
  return ed25519.getPublicKey(ed25519.utils.randomSecretKey());
}

/** A registered, logged-in connection and its session token. */
async function newUser(srv: TestServer, name: string) {
  const conn = await connect(srv);
  await registerUser(conn, name, PASSWORD, identityKey());
  const token = await loginUser(conn, name, PASSWORD);
  return { conn, token };
}

/** Resolves with what `p` gave, or "still open" after `ms` (a liveness bound, not a speed one). */
function within<T>(p: Promise<T>, ms: number): Promise<T | "still open"> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<"still open">((r) => timer = setTimeout(() => r("still open"), ms)),
  ]);
}

/** The code and message a request failed with ("ok" when it did not). */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return e instanceof QpqError ? `${e.code}: ${e.message}` : String(e);
  }
}

Deno.test("a connection that never logs in is closed at login_deadline_ms, pings or not; a logged-in one stays", async () => {
  const srv = await startTestServer({ file: { login_deadline_ms: 1_000 } });
  const bob = await newUser(srv, "bob");
  try {
    // a silent connection (QUIC keep-alives only) and one that pings all the time
    const silent = await connectQuic({ ...parseHostPort(srv.addr), caCertPem: srv.certPem });
    const pinger = await connect(srv);
    let pinging = true;
    let last = "ok";
    const pings = (async () => {
      while (pinging && (last = await outcome(pinger.ping())) === "ok") {
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const info = await within(silent.closed, 30_000);
    assert(info !== "still open", "the silent connection is still open after 30 s");
    assertEquals(info.reason, "not logged in within 1 s");
    assertEquals(await within(pinger.done, 30_000), undefined, "the pinging one is closed too");
    await pings; // its next ping fails: the connection is gone
    pinging = false;
    // the client says why, in one line
    assertEquals(last, "unavailable: The server closed the connection: not logged in within 1 s");
    // bob logged in before both: his connection outlived their deadline and works
    const me = await bob.conn.call({ kind: "fetchIdentityKey", username: "bob" }, "identityKey");
    assertEquals(me.username, "bob");
    // logging out makes it a stranger again, with a new deadline
    await bob.conn.call({ kind: "logout" }, "ok");
    assertEquals(await within(bob.conn.done, 30_000), undefined, "closed after logout");
    await pinger.close();
  } finally {
    await bob.conn.close();
    await srv.close();
  }
});

Deno.test("ping, health, and registration then login on one connection fit the login deadline", async () => {
  const deadline = 4_000;
  const srv = await startTestServer({ file: { login_deadline_ms: deadline } });
  try {
    const c = await connect(srv);
    const opened = Date.now();
    assertEquals(await outcome(c.ping()), "ok");
    assertEquals((await c.call({ kind: "health" }, "health")).status, "ok");
    await registerUser(c, "carol", PASSWORD, identityKey());
    // registering starts the time again: logging in after the first deadline still works
    const wait = opened + deadline * 3 / 4 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    assertEquals(await outcome(loginUser(c, "carol", PASSWORD)), "ok");
    await new Promise((r) => setTimeout(r, deadline / 2));
    const me = await c.call({ kind: "fetchIdentityKey", username: "carol" }, "identityKey");
    assertEquals(me.username, "carol");
    await c.close();
  } finally {
    await srv.close();
  }
});

Deno.test("max_unauthenticated_per_source refuses the next connection not logged in from that address, clearly; logging in frees its place", async () => {
  const srv = await startTestServer({ file: { max_unauthenticated_per_source: 3 } });
  const bob = await newUser(srv, "bob");
  const strangers: ServerConnection[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = await connect(srv);
      assertEquals(await outcome(c.ping()), "ok");
      strangers.push(c);
    }
    const fourth = await connect(srv);
    const refused = await outcome(fourth.ping());
    assertEquals(
      refused,
      "unavailable: Too many connections not logged in from your address (at most 3): log in on them or close some, then try again",
    );
    await fourth.close();
    // one of the three logs in: it is no stranger any more, so another fits
    await strangers[0]!.call({ kind: "resume", token: bob.token }, "session");
    const fifth = await connect(srv);
    assertEquals(await outcome(fifth.ping()), "ok");
    strangers.push(fifth);
  } finally {
    for (const c of strangers) await c.close();
    await bob.conn.close();
    await srv.close();
  }
});

Deno.test("strangers holding their whole share of max_connections do not keep a logged-in user out", async () => {
  const srv = await startTestServer({
    file: { max_connections: 8, max_unauthenticated_connections: 4 },
  });
  const bob = await newUser(srv, "bob");
  await bob.conn.close();
  const strangers: ServerConnection[] = [];
  try {
    // as many strangers as the server has slots: on a server without a share they fill it
    for (let i = 0; i < 8; i++) {
      const c = await connect(srv);
      assertEquals(await outcome(c.ping()), "ok");
      strangers.push(c);
    }
    const mine = await connect(srv);
    assertEquals(await outcome(mine.call({ kind: "resume", token: bob.token }, "session")), "ok");
    const me = await mine.call({ kind: "fetchIdentityKey", username: "bob" }, "identityKey");
    assertEquals(me.username, "bob");
    // the oldest strangers made room: at most the share of them is still served
    let open = 0;
    for (const c of strangers) if ((await outcome(c.ping())) === "ok") open++;
    assert(open <= 4, `${open} strangers still served`);
    await mine.close();
  } finally {
    for (const c of strangers) await c.close();
    await srv.close();
  }
});

Deno.test("Admission counts strangers per source and in all; logged-in connections only in all", () => {
  const a = new Admission<string>({
    maxConnections: 4,
    maxUnauthenticated: 2,
    maxUnauthenticatedPerSource: 1,
  });
  assertEquals(a.admit("a1", "10.0.0.1"), { kind: "admitted", evicted: undefined });
  assertEquals(a.admit("a2", "10.0.0.1"), { kind: "source_full" });
  assertEquals(a.admit("b1", "10.0.0.2"), { kind: "admitted", evicted: undefined });
  // the share is full: the oldest stranger goes
  assertEquals(a.admit("c1", "10.0.0.3"), { kind: "admitted", evicted: "a1" });
  a.loggedIn("b1");
  a.loggedIn("c1");
  assertEquals([a.size, a.strangers], [2, 0]);
  assertEquals(a.admit("d1", "10.0.0.4").kind, "admitted");
  assertEquals(a.admit("e1", "10.0.0.5").kind, "admitted");
  a.loggedIn("d1");
  a.loggedIn("e1");
  assertEquals(a.admit("f1", "10.0.0.6"), { kind: "busy" }, "every slot logged in");
  a.loggedOut("e1");
  assertEquals([a.size, a.strangers, a.strangersFrom("10.0.0.5")], [4, 1, 1]);
  a.remove("e1");
  a.remove("b1");
  assertEquals([a.size, a.strangers, a.strangersFrom("10.0.0.5")], [2, 0, 0]);
});

Deno.test("sourceOf: an IPv4 address (also IPv4-mapped), an IPv6 address by its /64", () => {
  assertEquals(sourceOf("203.0.113.7"), "203.0.113.7");
  assertEquals(sourceOf("::ffff:203.0.113.7"), "203.0.113.7");
  assertEquals(sourceOf("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:0db8:0001:0002:ffff::1"), "2001:db8:1:2::/64");
  assertEquals(sourceOf("2001:db8::1"), "2001:db8:0:0::/64");
  assertEquals(sourceOf("2001:db8::1"), sourceOf("2001:db8:0:0:ab::"));
  assertEquals(sourceOf("::1"), "0:0:0:0::/64");
  assertEquals(sourceOf("fe80::1%eth0"), "fe80:0:0:0::/64");
});

Deno.test("FrameReader on a byte stream waits for a frame with a small buffer, then reads no further than the frame", async () => {
  // what a QUIC stream is: a byte stream that fills the reader's buffer (an idle stream's
  // pending read holds it; Deno's default of 64 KiB was 40% of an idle connection's memory)
  const frame = lengthPrefixed(new Uint8Array(100_000).fill(7));
  const asked: number[] = [];
  let sent = 0;
  const stream = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const view = controller.byobRequest!.view!;
      asked.push(view.byteLength);
      const n = Math.min(view.byteLength, frame.length - sent, 30_000);
      if (n === 0) {
        controller.close();
        return controller.byobRequest!.respond(0);
      }
      new Uint8Array(view.buffer, view.byteOffset, n).set(frame.subarray(sent, sent + n));
      sent += n;
      controller.byobRequest!.respond(n);
    },
  });
  const reader = new FrameReader(stream);
  const got = await reader.next();
  assertEquals(got?.length, 100_000);
  assertEquals(asked[0], FRAME_READ_IDLE_BYTES, "waiting for a frame");
  assert(asked.slice(1).every((n) => n <= FRAME_READ_CHUNK_BYTES), String(asked));
  assertEquals(asked.at(-1), 4 + 100_000 - FRAME_READ_IDLE_BYTES - 3 * 30_000, "the rest");
  assertEquals(await reader.next(), null);
  assertEquals(asked.at(-1), FRAME_READ_IDLE_BYTES, "waiting again");
});
