/**
 * Lists that grow with other people's actions (issue 18), against a real server (QUIC on
 * loopback, SQLite): a member's commit may name anyone in `add`, so strangers can put a
 * victim on many large groups. The channel list is paged, so it always fits in a frame,
 * and past `max_groups_per_user` an add waits as a held invitation the victim can accept
 * (once under the cap) or decline.
 */
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { clientLoginFinish, clientLoginStart, type KeyStretching } from "../src/auth/mod.ts";
import { IdentityKeyPair } from "../src/crypto/identity.ts";
import { randomBytes } from "../src/bytes.ts";
import { QpqError } from "../src/errors.ts";
import { registerUser } from "./_support/fuzz.ts";

const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

/** Register `username` on `conn` (no login). */
function register(conn: ServerConnection, username: string): Promise<void> {
  return registerUser(conn, username, `pw of ${username}`, IdentityKeyPair.generate().publicKey);
}

/** Register and log in `username` on a fresh connection. */
async function rawUser(ts: TestServer, username: string): Promise<ServerConnection> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  await register(conn, username);
  const password = `pw of ${username}`;
  const start = await clientLoginStart(password);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, password, started.response, {
    keyStretching: FAST,
  });
  if (fin.kind !== "ok") throw new Error("client-side login failed");
  await conn.call(
    { kind: "loginFinish", username, finish: fin.finishRequest, loginId: started.loginId },
    "session",
  );
  return conn;
}

/** An MLSMessage(PrivateMessage) whose cleartext header says "commit of this group and epoch". */
function fakeCommitPayload(groupId: Uint8Array, epoch: number): Uint8Array {
  const v = (b: Uint8Array) => [b.length, ...b];
  const e = new Uint8Array(8);
  new DataView(e.buffer).setBigUint64(0, BigInt(epoch));
  return Uint8Array.from([
    0,
    1,
    0,
    2,
    ...v(groupId),
    ...e,
    3,
    ...v(new Uint8Array(0)),
    ...v(randomBytes(16)),
    ...v(randomBytes(48)),
  ]);
}

/**
 * The attack: `mallory` creates `groups` groups and, with one commit each (no MLS behind
 * it: the server only reads the header), puts `victim` and `fillers` on them. The fillers'
 * junk Welcomes are never queued (they blocked mallory), so only the victim gets the commit.
 */
async function floodGroups(
  mallory: ServerConnection,
  victim: string,
  fillers: string[],
  groups: number,
): Promise<void> {
  for (let i = 0; i < groups; i++) {
    const g = await mallory.call(
      { kind: "createGroup", name: `flood-${i}` },
      "channel",
    );
    await mallory.call({
      kind: "commit",
      channelId: g.channelId,
      epoch: 0,
      messageId: randomBytes(16),
      payload: fakeCommitPayload(g.channelId, 0),
      add: [victim, ...fillers],
      remove: [],
      welcomes: [],
      welcome: randomBytes(16),
      welcomeFor: fillers,
    }, "committed");
  }
}

async function withServer(
  file: Record<string, string | number | boolean>,
  fn: (ts: TestServer, dir: string) => Promise<void>,
): Promise<void> {
  const ts = await startTestServer({ file: { fsync: false, ...file } });
  const dir = await Deno.makeTempDir({ prefix: "qpq-lists-" });
  try {
    await fn(ts, dir);
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("listChannels: a victim put on 400 large groups still joins a friend's group (paged list)", async () => {
  await withServer({}, async (ts, dir) => {
    const users: TestUser[] = [];
    const conns: ServerConnection[] = [];
    try {
      const victim = await testUser(ts, dir, "victim");
      const alice = await testUser(ts, dir, "alice");
      users.push(victim, alice);
      const mallory = await rawUser(ts, "mallory");
      conns.push(mallory);
      // 70 members of 32-character names in each of 400 groups: about 1.3 MiB of list
      const letters = "acdefhjkpqstwxyz"; // no look-alikes among them (the server refuses those)
      const fillers = Array.from(
        { length: 70 },
        (_, i) => `${letters[i >> 4]}${letters[i & 15]}${"abcdefghjk".repeat(3)}`,
      );
      for (const f of fillers) {
        // each filler blocks mallory: on the rosters, but sent nothing (keeps the test fast)
        const c = await rawUser(ts, f);
        await c.call({ kind: "block", username: "mallory" }, "ok");
        await c.close();
      }
      await floodGroups(mallory, "victim", fillers, 400);
      await victim.client.sync(); // the flood's commits: of groups it never joined, ignored
      await alice.client.createGroup("friends");
      await alice.client.invite("#friends", ["victim"]);
      await alice.client.send("#friends", "hello victim");
      // before the fix: the Welcome's listChannels answer exceeds the frame: `internal`
      await victim.client.sync();
      assert(
        victim.events.some((e) => e.kind === "joined" && e.conversation.name === "#friends"),
        `victim did not join: ${victim.warnings().join("; ")}`,
      );
      assertEquals(victim.received(), ["hello victim"]);
      // mallory's pages (on all 400): every channel once, each page within a frame
      const pages: number[] = [];
      let after: Uint8Array = new Uint8Array(0);
      for (;;) {
        const r = await mallory.call(
          { kind: "listChannelsPage", after, held: false },
          "channels",
        );
        pages.push(r.channels.length);
        after = r.channels.at(-1)!.channelId;
        if (!r.more) break;
      }
      assertEquals(pages.reduce((a, b) => a + b, 0), 400);
      assert(pages.length >= 2, `one page of ${pages[0]}`);
    } finally {
      for (const c of conns) await c.close().catch(() => {});
      for (const u of users) await u.client.close().catch(() => {});
    }
  });
});

Deno.test("max_groups_per_user: an add past the cap is a held invitation, accepted once under it or declined", async () => {
  await withServer({ max_groups_per_user: 3 }, async (ts, dir) => {
    const users: TestUser[] = [];
    try {
      const victim = await testUser(ts, dir, "victim");
      const alice = await testUser(ts, dir, "alice");
      users.push(victim, alice);
      await victim.client.createGroup("own1");
      await victim.client.createGroup("own2");
      await alice.client.createGroup("one");
      await alice.client.invite("#one", ["victim"]);
      await victim.client.sync();
      assert(victim.events.some((e) => e.kind === "joined" && e.conversation.name === "#one"));
      const joinedBefore = victim.events.filter((e) => e.kind === "joined").length;
      // victim is at the cap: the next two invitations are held, nothing of them arrives
      await alice.client.createGroup("two");
      await alice.client.invite("#two", ["victim"]);
      await alice.client.send("#two", "in two");
      await alice.client.createGroup("three");
      await alice.client.invite("#three", ["victim"]);
      await victim.client.sync();
      assertEquals(victim.events.filter((e) => e.kind === "joined").length, joinedBefore);
      assertEquals(victim.received(), []);
      assertEquals((await victim.client.invitations()).map((i) => i.name).sort(), ["three", "two"]);
      // the victim creates no group past the cap either
      const e = await assertRejects(() => victim.client.createGroup("mine"), QpqError);
      assertEquals(e.code, "quota");
      // accepting while at the cap is refused; declining takes it off the roster
      const full = await assertRejects(
        () => victim.client.answerInvitation("#two", true),
        QpqError,
      );
      assertEquals(full.code, "quota");
      await victim.client.answerInvitation("#three", false);
      assertEquals((await victim.client.invitations()).map((i) => i.name), ["two"]);
      // under the cap (removed from #one), accepting asks the members to add the victim
      await alice.client.remove("#one", ["victim"]);
      await victim.client.sync();
      await victim.client.answerInvitation("#two", true);
      assertEquals(await victim.client.invitations(), []);
      await alice.client.sync(); // the rejoin request: alice re-adds the victim
      await alice.client.send("#two", "welcome in");
      await victim.client.sync();
      assert(
        victim.events.some((e) => e.kind === "joined" && e.conversation.name === "#two"),
        `victim did not join #two: ${victim.warnings().join("; ")}`,
      );
      assertEquals(victim.received(), ["welcome in"]);
    } finally {
      for (const u of users) await u.client.close().catch(() => {});
    }
  });
});

Deno.test("listChannelsPage: at most 500 channels a page, then the rest after the cursor", async () => {
  await withServer({}, async (ts) => {
    const mallory = await rawUser(ts, "mallory");
    try {
      for (let i = 0; i < 501; i++) {
        await mallory.call({ kind: "createGroup", name: `g-${i}` }, "channel");
      }
      const first = await mallory.call(
        { kind: "listChannelsPage", after: new Uint8Array(0), held: false },
        "channels",
      );
      assertEquals([first.channels.length, first.more], [500, true]);
      const rest = await mallory.call(
        { kind: "listChannelsPage", after: first.channels.at(-1)!.channelId, held: false },
        "channels",
      );
      assertEquals([rest.channels.length, rest.more], [1, false]);
      // the v1.0 request answers the first page
      const old = await mallory.call({ kind: "listChannels" }, "channels");
      assertEquals(old.channels.length, 500);
    } finally {
      await mallory.close();
    }
  });
});
