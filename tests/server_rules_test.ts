/**
 * The server's authorization rules, one test each, as a member who bends them would try:
 * real clients set the scene (a group with a real MLS state), then a raw connection with a
 * member's session sends the request a hostile client would. Each is refused with its exact
 * code and message, and nothing changed: roster, epoch and queues stay as they were.
 */
import { assertEquals } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { fromHex, randomBytes } from "../src/bytes.ts";
import { QpqError } from "../src/errors.ts";
import {
  createKeyPackage,
  decodeGroupState,
  type GroupStateSecret,
  selfUpdate,
} from "../src/mls/mod.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import type { Request } from "../src/wire/mod.ts";
import { loginUser, registerUser } from "./_support/fuzz.ts";

/** A group state as the client stores it (its bytes and the secrets beside them). */
const decodeStored = (r: { state: Uint8Array; secrets?: GroupStateSecret[] }) =>
  decodeGroupState(r.state, r.secrets);

/** The channel id a scene's commit request is for. */
function commitChannel(commit: Scene["commit"]): Uint8Array {
  const r = commit({});
  return r.kind === "commit" ? r.channelId : new Uint8Array(0);
}

/** A member's raw connection, logged in with its session. */
async function rawAs(ts: TestServer, u: TestUser): Promise<ServerConnection> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  await conn.call({ kind: "resume", token: u.client.store.meta.sessionToken! }, "session");
  return conn;
}

/** `code: message` of a refused call ("ok" when it was accepted). */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    if (e instanceof QpqError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

interface Scene {
  ts: TestServer;
  alice: TestUser;
  bob: TestUser;
  dave: TestUser;
  conn: ServerConnection;
  channelId: Uint8Array;
  /** A valid MLS commit of bob's for the group's current epoch. */
  commit: (fields: Partial<Request & { kind: "commit" }>) => Request;
  enqueue: (fields: Partial<Request & { kind: "enqueue" }>) => Request;
}

/** alice's group #team with bob; dave is registered and not in it. */
async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-rules-" });
  const alice = await testUser(ts, dir, "alice");
  const bob = await testUser(ts, dir, "bob");
  const dave = await testUser(ts, dir, "dave");
  const conn = await rawAs(ts, bob);
  try {
    await alice.client.createGroup("team");
    await alice.client.invite("#team", ["bob"]);
    await bob.client.sync();
    const hex = bob.client.conversation("#team").channelId!;
    const state = decodeStored(bob.client.store.group(hex)!);
    const staged = await selfUpdate(state);
    const channelId = fromHex(hex);
    const epoch = Number(state.epoch);
    await fn({
      ts,
      alice,
      bob,
      dave,
      conn,
      channelId,
      commit: (f) => ({
        kind: "commit",
        channelId,
        epoch,
        messageId: randomBytes(16),
        payload: staged.outbound.commit,
        add: [],
        remove: [],
        welcomes: [],
        welcome: new Uint8Array(0),
        welcomeFor: [],
        ...f,
      } as Request),
      enqueue: (f) => ({
        kind: "enqueue",
        channelId,
        messageId: randomBytes(16),
        payload: randomBytes(64),
        messageKind: "application",
        epoch,
        recipients: [],
        ...f,
      } as Request),
    });
    // nothing a refused request did is visible: the roster and the epoch are as before
    const info = (await conn.call({ kind: "listChannels" }, "channels")).channels.find((c) =>
      c.name === "team"
    )!;
    assertEquals([...info.members].sort(), ["alice", "bob"]);
    assertEquals(info.epoch, epoch);
    const daveConn = await rawAs(ts, dave);
    const daves = await daveConn.call({ kind: "fetch", afterSeq: 0, limit: 10 }, "messages");
    await daveConn.close();
    assertEquals(daves.messages.filter((m) => m.messageKind !== "application"), []);
  } finally {
    await conn.close();
    for (const u of [alice, bob, dave]) await u.client.close();
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("server: a non-member cannot read the roster, enqueue or commit (same answer as no channel)", async () => {
  await withScene(async ({ ts, dave, commit, enqueue }) => {
    const d = await rawAs(ts, dave);
    try {
      for (
        const [req, expect] of [
          [{ kind: "members", channelId: commitChannel(commit) }, "memberList"],
          [enqueue({}), "enqueued"],
          [commit({}), "committed"],
        ] as const
      ) {
        assertEquals(
          await refusal(d.call(req as Request, expect)),
          "forbidden: Not a member of this conversation",
          req.kind,
        );
      }
    } finally {
      await d.close();
    }
  });
});

Deno.test("server: enqueue to a recipient outside the conversation is refused for all", async () => {
  await withScene(async ({ conn, enqueue }) => {
    assertEquals(
      await refusal(conn.call(enqueue({ recipients: ["alice", "dave"] }), "enqueued")),
      "usage: dave is not a member of this conversation",
    );
  });
});

Deno.test("server: commits and Welcomes never go through enqueue (it skips the epoch order)", async () => {
  await withScene(async ({ conn, enqueue }) => {
    for (const messageKind of ["commit", "welcome"] as const) {
      assertEquals(
        await refusal(conn.call(enqueue({ messageKind }), "enqueued")),
        "usage: Commits and Welcomes go through the commit request",
        messageKind,
      );
    }
  });
});

Deno.test("server: a commit removing a non-member is refused", async () => {
  await withScene(async ({ conn, commit }) => {
    assertEquals(
      await refusal(conn.call(commit({ remove: ["dave"] }), "committed")),
      "usage: dave is not a member of this conversation",
    );
  });
});

Deno.test("server: a Welcome only for a user the commit adds (not a non-member, not a member)", async () => {
  await withScene(async ({ conn, commit }) => {
    const welcome = randomBytes(200);
    for (const u of ["dave", "alice"]) {
      assertEquals(
        await refusal(conn.call(commit({ welcome, welcomeFor: [u] }), "committed")),
        "validation: A Welcome may only be for a user the commit adds",
        u,
      );
    }
  });
});

Deno.test("server: adding an existing member without removing them, or an unknown user, is refused", async () => {
  await withScene(async ({ conn, commit }) => {
    assertEquals(
      await refusal(conn.call(commit({ add: ["alice"] }), "committed")),
      "conflict: Cannot add alice: already a member (a re-add must also remove them)",
    );
    assertEquals(
      await refusal(conn.call(commit({ add: ["nobody"] }), "committed")),
      "not_found: Unknown user nobody",
    );
  });
});

Deno.test("server: a commit that is not an MLS commit of this group and epoch is refused", async () => {
  await withScene(async ({ bob, conn, commit }) => {
    assertEquals(
      await refusal(conn.call(commit({ epoch: 7 }), "committed")),
      "validation: Commit payload is not an MLS commit of this group and epoch",
    );
    assertEquals(
      await refusal(conn.call(commit({ payload: randomBytes(300) }), "committed")),
      "validation: MLS message does not decode",
    );
    // a real commit of another group of bob's, in its own epoch, sent as #team's
    const other = await bob.client.createGroup("other");
    const otherState = decodeStored(bob.client.store.group(other.channelId!)!);
    const foreign = await selfUpdate(otherState);
    assertEquals(
      await refusal(
        conn.call(
          commit({ payload: foreign.outbound.commit, epoch: Number(otherState.epoch) }),
          "committed",
        ),
      ),
      "validation: Commit payload is not an MLS commit of this group and epoch",
    );
  });
});

Deno.test("server: KeyPackage uploads are capped per batch and per user", async () => {
  const ts = await startTestServer();
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    const identity = IdentityKeyPair.generate();
    await registerUser(conn, "kp", "kp password", identity.publicKey);
    await loginUser(conn, "kp", "kp password");
    // the batch cap answers before any package is parsed: 101 bytes of junk each
    const junk = Array.from({ length: 101 }, () => ({ data: randomBytes(101) }));
    assertEquals(
      await refusal(
        conn.call(
          { kind: "uploadKeyPackages", packages: junk, lastResort: new Uint8Array(0) },
          "ok",
        ),
      ),
      "too_large: At most 100 KeyPackages per upload",
    );
    const make = async (n: number) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const kp = await createKeyPackage({
          username: "kp",
          identity: { privateKey: identity.exportPrivateKey(), publicKey: identity.publicKey },
          suite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
          lifetimeSeconds: 3600,
        });
        out.push({ data: kp.publicPackage });
      }
      return out;
    };
    for (let i = 0; i < 5; i++) {
      await conn.call({
        kind: "uploadKeyPackages",
        packages: await make(100),
        lastResort: new Uint8Array(0),
      }, "keyPackageCount");
    }
    assertEquals(
      (await conn.call({ kind: "countKeyPackages" }, "keyPackageCount")).count,
      500,
    );
    const over = await refusal(
      conn.call({
        kind: "uploadKeyPackages",
        packages: await make(1),
        lastResort: new Uint8Array(0),
      }, "keyPackageCount"),
    );
    assertEquals(over.split(":")[0], "quota", over);
    assertEquals(
      (await conn.call({ kind: "countKeyPackages" }, "keyPackageCount")).count,
      500,
    );
  } finally {
    await conn.close();
    await ts.close();
  }
});

Deno.test("server: a full queue refuses the whole fan-out with quota, and takes again once read", async () => {
  const ts = await startTestServer({ file: { max_queue_messages: 3 } });
  const dir = await Deno.makeTempDir({ prefix: "qpq-rules-" });
  const alice = await testUser(ts, dir, "alice");
  const bob = await testUser(ts, dir, "bob");
  const conn = await rawAs(ts, alice);
  try {
    const dm = await conn.call({ kind: "createDm", username: "bob" }, "channel");
    const send = () =>
      conn.call({
        kind: "enqueue",
        channelId: dm.channelId,
        messageId: randomBytes(16),
        payload: randomBytes(10),
        messageKind: "application",
        epoch: 0,
        recipients: [],
      }, "enqueued");
    for (let i = 0; i < 3; i++) await send();
    const full = await refusal(send());
    assertEquals(full.split(":")[0], "quota", full);
    const bobConn = await rawAs(ts, bob);
    const got = await bobConn.call({ kind: "fetch", afterSeq: 0, limit: 10 }, "messages");
    assertEquals(got.messages.length, 3, "the refused fourth is not there");
    await bobConn.call({ kind: "ack", uptoSeq: got.messages.at(-1)!.seq }, "ok");
    await bobConn.close();
    assertEquals(await refusal(send()), "ok");
  } finally {
    await conn.close();
    for (const u of [alice, bob]) await u.client.close();
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a message past retention is never delivered, and the reader is told", async () => {
  const ts = await startTestServer({ file: { retention_seconds: 1 } });
  const dir = await Deno.makeTempDir({ prefix: "qpq-rules-" });
  const alice = await testUser(ts, dir, "alice");
  const bob = await testUser(ts, dir, "bob");
  try {
    await alice.client.dm("bob");
    await bob.client.sync(); // joined
    await alice.client.send("@bob", "too old");
    // retention is a rule about time: the only way to test it is to let a second pass
    await new Promise((r) => setTimeout(r, 1_200));
    await alice.client.send("@bob", "fresh");
    await bob.client.sync();
    assertEquals(bob.received(), ["fresh"]);
    assertEquals(bob.warnings(), ["1 message(s) expired on the server before delivery"]);
  } finally {
    for (const u of [alice, bob]) await u.client.close();
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
