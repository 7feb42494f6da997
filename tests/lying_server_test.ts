/**
 * A malicious server: real clients talk to a real `qpq server` through a lying proxy that
 * holds the server's certificate and key and rewrites frames (tests/_support/lying_server.ts).
 * Each attack must be refused with a clear warning or error, and leave the client's state
 * intact: what MLS authenticates (senders, inviters, rosters, keys) wins over what the server
 * claims.
 */
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import {
  onDelivered,
  type Rewrite,
  startLyingServer,
  swapIdentityKeys,
} from "./_support/lying_server.ts";
import { FAST_KDF, type TestUser, testUser } from "./_support/clients.ts";
import { type ClientEvent, QpqClient } from "../src/client/client.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { ValidationError } from "../src/errors.ts";
import type { DeliveredMessage, Frame } from "../src/wire/mod.ts";
import { fromHex, toHex } from "../src/bytes.ts";
import { connectServer } from "../src/client/connection.ts";
import { uuidv7 } from "../src/client/ids.ts";
import {
  addMembers,
  createKeyPackage,
  decodeGroupState,
  DEFAULT_SUITE,
  type GroupStateSecret,
  SUITE_IDS,
} from "../src/mls/mod.ts";
import { ed25519 } from "@noble/curves/ed25519.js";

/** A group state as the client stores it (its bytes and the secrets beside them). */
const decodeStored = (r: { state: Uint8Array; secrets?: GroupStateSecret[] }) =>
  decodeGroupState(r.state, r.secrets);

async function withLyingServer(
  fn: (
    ts: TestServer,
    lie: Awaited<ReturnType<typeof startLyingServer>>,
    dir: string,
  ) => Promise<void>,
): Promise<void> {
  const ts = await startTestServer();
  const lie = await startLyingServer(ts);
  const dir = await Deno.makeTempDir({ prefix: "qpq-lying-" });
  try {
    await fn(ts, lie, dir);
  } finally {
    await lie.close();
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rewrite each delivered message (fetch pages and pushes) going to the client. */
function eachDelivered(f: (m: DeliveredMessage) => DeliveredMessage): Rewrite {
  return onDelivered((ms) => ms.map(f));
}

/** Open `u`'s state again as a second client instance (a restart) through `server`. */
async function reopen(
  u: TestUser,
  dir: string,
  server: { addr: string; certPem: string },
  acceptFrom: "anyone" | "contacts" = "anyone",
): Promise<{ client: QpqClient; events: ClientEvent[] }> {
  await u.client.close();
  const store = await openLocalStore(`${dir}/${u.name}.bin`, `pw-${u.name}`, {
    create: false,
    username: u.name,
    server: server.addr,
    kdf: FAST_KDF,
  });
  const events: ClientEvent[] = [];
  const client = QpqClient.create({
    store,
    password: `pw-${u.name}`,
    caCertPem: server.certPem,
    server: server.addr,
    acceptFrom,
    onEvent: (e) => events.push(e),
    timeoutMs: 5_000,
  });
  return { client, events };
}

function warnings(events: ClientEvent[]): string[] {
  return events.flatMap((e) => e.kind === "warning" ? [e.text] : []);
}

Deno.test("lying server: a swapped identity key is refused, the pinned key stays", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    await alice.client.dm("bob"); // pins bob's key
    const realKey = alice.client.store.pinnedKey("bob")!;
    assertEquals(toHex(realKey), toHex(bob.client.identityPublicKey));
    const a = await reopen(alice, dir, lie);
    const fake = ed25519.getPublicKey(ed25519.utils.randomSecretKey());
    lie.rewrite = swapIdentityKeys(fake);
    await assertRejects(
      () => a.client.verify("bob"),
      ValidationError,
      "The server now reports a different identity key for bob",
    );
    const g = await a.client.createGroup("team");
    await assertRejects(
      () => a.client.invite(g.name, ["bob"]),
      ValidationError,
      "different identity key",
    );
    assertEquals(a.client.members(g.name), ["alice"], "nobody was added");
    assertEquals(toHex(a.client.store.pinnedKey("bob")!), toHex(realKey), "the pin is unchanged");
    await a.client.close();
    await bob.client.close();
  });
});

Deno.test("lying server: a message's claimed sender is ignored; the MLS sender is shown", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    await testUser(ts, dir, "carol").then((c) => c.client.close());
    await alice.client.dm("bob");
    await alice.client.send("@bob", "hello from alice");
    const b = await reopen(bob, dir, lie);
    lie.rewrite = eachDelivered((m) => ({ ...m, sender: "carol" }));
    await b.client.sync();
    const got = b.events.flatMap((e) => e.kind === "message" ? [e.message] : []);
    assertEquals(got.map((m) => [m.sender, m.body]), [["alice", "hello from alice"]]);
    const joined = b.events.flatMap((e) => e.kind === "joined" ? [e.inviter] : []);
    assertEquals(joined, ["alice"], "the inviter is the Welcome's signer, not the claimed sender");
    await b.client.close();
    await alice.client.close();
  });
});

Deno.test("lying server: a DM filed under another user's name is refused", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const mallory = await testUser(ts, dir, "mallory");
    const bob = await testUser(ts, dir, "bob");
    const alice = await testUser(ts, dir, "alice");
    await mallory.client.dm("bob");
    const b = await reopen(bob, dir, lie);
    // The server says the DM is with alice, a contact bob trusts.
    lie.rewrite = (frame, direction) => {
      if (direction !== "toClient" || frame.type !== "response") return undefined;
      if (frame.response.kind !== "channels") {
        return eachDelivered((m) => ({ ...m, sender: "alice" }))(frame, direction);
      }
      const channels = frame.response.channels.map((c) =>
        c.channelKind === "dm"
          ? { ...c, members: c.members.map((u) => u === "mallory" ? "alice" : u) }
          : c
      );
      return [{ ...frame, response: { ...frame.response, channels } } as Frame];
    };
    await b.client.sync();
    assert(
      warnings(b.events).some((w) => w.includes("its members do not match the conversation")),
      warnings(b.events).join("\n"),
    );
    assertEquals(b.client.listConversations().filter((c) => c.kind === "dm"), [], "no DM filed");
    assertEquals(b.events.filter((e) => e.kind === "joined"), []);
    await b.client.close();
    await alice.client.close();
    await mallory.client.close();
  });
});

Deno.test("lying server: a replayed old commit is ignored and the group goes on", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    const carol = await testUser(ts, dir, "carol");
    const b = await reopen(bob, dir, lie);
    let oldCommit: DeliveredMessage | undefined;
    lie.rewrite = eachDelivered((m) => {
      if (m.messageKind === "commit") oldCommit ??= m;
      return m;
    });
    const g = await alice.client.createGroup("team");
    await alice.client.invite(g.name, ["bob"]);
    await b.client.sync();
    await alice.client.invite(g.name, ["carol"]);
    await b.client.sync();
    assert(oldCommit, "bob saw the commit adding carol");
    // From now on the server replaces what it delivers to bob by that old commit, once.
    let replayed = false;
    lie.rewrite = eachDelivered((m) => {
      if (replayed || m.messageKind !== "application") return m;
      replayed = true;
      return { ...oldCommit!, seq: m.seq };
    });
    await alice.client.send(g.name, "lost to the replay");
    await b.client.sync();
    assert(replayed);
    await alice.client.send(g.name, "after the replay");
    await b.client.sync();
    const got = b.events.flatMap((e) => e.kind === "message" ? [e.message.body] : []);
    assertEquals(got, ["after the replay"]);
    assertEquals(b.client.epochInfo(g.name), alice.client.epochInfo(g.name));
    assertEquals(b.client.listConversations().filter((c) => c.broken !== undefined), []);
    // a replay of a commit bob applied is told apart from another history (issue 12): the
    // group never broke (and healed by a re-add) on the way
    assertEquals(b.events.filter((e) => e.kind === "broken" || e.kind === "rejoined"), []);
    await b.client.close();
    await alice.client.close();
    await carol.client.close();
  });
});

Deno.test("lying server: acks dropped, everything delivered again, nothing shown twice", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    await alice.client.dm("bob");
    await alice.client.send("@bob", "one");
    await alice.client.send("@bob", "two");
    const dropAcks: Rewrite = (frame, direction) =>
      direction === "toServer" && frame.type === "request" && frame.request.kind === "ack"
        ? [{ ...frame, request: { kind: "ack", uptoSeq: 0 } }]
        : undefined;
    let b = await reopen(bob, dir, lie);
    lie.rewrite = dropAcks;
    await b.client.sync();
    const first = b.events.flatMap((e) => e.kind === "message" ? [e.message.body] : []);
    assertEquals(first, ["one", "two"]);
    // A restart: the server delivers the whole queue again.
    await b.client.close();
    b = await reopen({ ...bob, client: b.client }, dir, lie);
    await b.client.sync();
    assertEquals(b.events.filter((e) => e.kind === "message" || e.kind === "joined"), []);
    assertEquals(b.client.history("@alice").map((m) => m.body), ["one", "two"]);
    await b.client.close();
    await alice.client.close();
  });
});

/**
 * A malicious member colluding with the server: commits, from `u`'s own group state, the
 * addition of `forged` (usernames whose KeyPackages it signs with keys of its own) and of
 * `real` KeyPackages, and sends it with a Welcome for all of them.
 */
async function forgeAdd(
  ts: { addr: string; certPem: string },
  u: TestUser,
  ref: string,
  forged: string[],
  real: string[] = [],
): Promise<void> {
  const conv = u.client.conversation(ref);
  const state = decodeStored(u.client.store.group(conv.channelId!)!);
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  try {
    await conn.call({ kind: "resume", token: u.client.store.meta.sessionToken! }, "session");
    const kps: Uint8Array[] = [];
    for (const name of forged) {
      const fake = ed25519.utils.randomSecretKey();
      const kp = await createKeyPackage({
        username: name,
        identity: { privateKey: fake, publicKey: ed25519.getPublicKey(fake) },
        suite: DEFAULT_SUITE,
        lifetimeSeconds: 3600,
      });
      kps.push(kp.publicPackage);
    }
    for (const name of real) {
      const r = await conn.call(
        { kind: "fetchKeyPackage", username: name, cipherSuite: SUITE_IDS[DEFAULT_SUITE] },
        "keyPackage",
      );
      kps.push(r.data);
    }
    const staged = await addMembers(state, kps);
    const add = [...forged, ...real];
    await conn.call({
      kind: "commit",
      channelId: fromHex(conv.channelId!),
      epoch: Number(state.epoch),
      messageId: uuidv7(),
      payload: staged.outbound.commit,
      add,
      remove: [],
      welcomes: [],
      welcome: staged.outbound.welcome!,
      welcomeFor: add,
    }, "committed");
  } finally {
    await conn.close();
  }
}

Deno.test("malicious member: a commit adding a key the directory does not vouch for breaks the group for us, visibly", async () => {
  await withLyingServer(async (ts, _lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const mallory = await testUser(ts, dir, "mallory");
    const carol = await testUser(ts, dir, "carol");
    const g = await alice.client.createGroup("team");
    await alice.client.invite(g.name, ["mallory"]);
    await mallory.client.sync();
    await forgeAdd(ts, mallory, "#team", ["carol"]);
    await alice.client.sync();
    const listed = alice.client.listConversations().find((c) => c.name === "#team");
    assertEquals(listed?.broken, "a change by mallory added an unverified key");
    await carol.client.sync(); // her KeyPackages do not fit the forged Welcome
    assertEquals(carol.client.listConversations().filter((c) => c.kind === "group"), []);
    for (const u of [alice, mallory, carol]) await u.client.close();
  });
});

Deno.test("malicious member: a Welcome naming a member with a forged key is refused", async () => {
  await withLyingServer(async (ts, _lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const mallory = await testUser(ts, dir, "mallory");
    const bob = await testUser(ts, dir, "bob");
    await mallory.client.createGroup("friends");
    // "alice" in the roster, with mallory's key: bob would believe alice is in the group
    await forgeAdd(ts, mallory, "#friends", ["alice"], ["bob"]);
    await bob.client.sync();
    assert(
      bob.warnings().some((w) =>
        w.startsWith("Ignored a Welcome from mallory") && w.includes("does not match the directory")
      ),
      bob.warnings().join("\n"),
    );
    assertEquals(bob.client.listConversations().filter((c) => c.kind === "group"), []);
    for (const u of [alice, mallory, bob]) await u.client.close();
  });
});

Deno.test("lying server: a Welcome to another group delivered on a channel's name is refused", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const mallory = await testUser(ts, dir, "mallory");
    const bob = await testUser(ts, dir, "bob");
    const b = await reopen(bob, dir, lie);
    // alice invites bob to #bank; the lying server keeps her Welcome back and delivers
    // mallory's Welcome to her own group as the one for #bank instead: bob would write to
    // mallory's group under the name #bank
    const target: { bank?: Uint8Array } = {};
    const lieAbout = (ms: DeliveredMessage[]) =>
      ms.filter((m) => m.messageKind !== "welcome" || m.sender === "mallory").map((m) =>
        m.messageKind === "welcome" && target.bank ? { ...m, channelId: target.bank } : m
      );
    lie.rewrite = onDelivered(lieAbout);
    await alice.client.createGroup("bank");
    await alice.client.invite("#bank", ["bob"]);
    await b.client.sync();
    target.bank = fromHex(alice.client.conversation("#bank").channelId!);
    await mallory.client.createGroup("mine");
    await mallory.client.invite("#mine", ["bob"]);
    await b.client.sync();
    assert(
      warnings(b.events).some((w) =>
        w.includes("Welcome is for another group than the channel it came on")
      ),
      warnings(b.events).join("\n"),
    );
    assertEquals(b.client.listConversations().filter((c) => c.kind === "group"), []);
    for (const c of [b.client, alice.client, mallory.client]) await c.close();
  });
});

Deno.test("lying server: a stranger's invitation under a contact's name is still a request from the stranger", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const mallory = await testUser(ts, dir, "mallory");
    const bob = await testUser(ts, dir, "bob");
    await bob.client.dm("alice"); // alice is bob's contact, mallory is not
    const b = await reopen(bob, dir, lie, "contacts");
    lie.rewrite = eachDelivered((m) => m.sender === "mallory" ? { ...m, sender: "alice" } : m);
    await mallory.client.createGroup("trap");
    await mallory.client.invite("#trap", ["bob"]);
    await b.client.sync();
    const requests = b.events.flatMap((e) => e.kind === "request" ? [e.from] : []);
    assertEquals(requests, ["mallory"]);
    assertEquals(b.events.filter((e) => e.kind === "joined"), []);
    for (const c of [b.client, alice.client, mallory.client]) await c.close();
  });
});

Deno.test("lying server: deliveries in reverse order are each shown once, none lost", async () => {
  await withLyingServer(async (ts, lie, dir) => {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    await alice.client.dm("bob");
    await bob.client.sync(); // joined
    const b = await reopen(bob, dir, lie);
    for (const t of ["one", "two", "three"]) await alice.client.send("@bob", t);
    // every page and push arrives back to front
    lie.rewrite = onDelivered((ms) => [...ms].reverse());
    await b.client.sync();
    await b.client.sync();
    const got = b.events.flatMap((e) => e.kind === "message" ? [e.message.body] : []);
    assertEquals([...got].sort(), ["one", "three", "two"], "each exactly once");
    assertEquals(b.events.filter((e) => e.kind === "unreadable"), []);
    assertEquals(b.client.history("@alice").map((m) => m.body).sort(), ["one", "three", "two"]);
    for (const c of [b.client, alice.client]) await c.close();
  });
});
