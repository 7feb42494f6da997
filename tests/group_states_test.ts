/**
 * GroupStates, the one owner of the client's MLS group states, over a real client store:
 * what a message writes (only the ratchet it moved), and the promises that must survive a
 * restart (a new process over the same files): a sender never reuses a generation, a used
 * key is gone from disk. The last test drives real clients through a real server.
 *
 * @module
 */
import { fromUtf8, toHex, utf8 } from "../src/bytes.ts";
import { GroupStates } from "../src/client/group_states.ts";
import {
  decodeGroupState,
  encryptMessage,
  type MlsGroupState,
  processMessage,
} from "../src/mls/mod.ts";
import { ClientStore } from "../src/store/mod.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { FAST_KDF, testUser } from "./_support/clients.ts";
import { startTestServer } from "./_support/server.ts";

const MLS_FIXTURES = new URL("./fixtures/mls/", import.meta.url);
const CH = "c4".repeat(16);
const mls = (n: string) => Deno.readFileSync(new URL(n, MLS_FIXTURES));

/** A state file in `dir` holding `state` for channel CH, closed again. */
async function stored(dir: string, name: string, state: MlsGroupState): Promise<string> {
  const path = `${dir}/${name}.bin`;
  const kp = IdentityKeyPair.generate();
  const s = await ClientStore.open(path, "pw", {
    create: true,
    kdf: FAST_KDF,
    initialMeta: {
      username: name,
      server: "localhost:4433",
      identitySeed: kp.exportPrivateKey(),
      identityPublic: kp.publicKey,
    },
  });
  new GroupStates(s).save({ channelId: CH, lastUpdateMs: 0, leaves: [] }, state);
  await s.close();
  return path;
}

/** Run `fn` in a "new process": the state opened afresh, nothing kept in memory. */
async function restart<T>(path: string, fn: (g: GroupStates, s: ClientStore) => Promise<T>) {
  const s = await ClientStore.open(path, "pw");
  try {
    return await fn(new GroupStates(s), s);
  } finally {
    await s.close();
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qpq-group-states-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("GroupStates stores the sender's ratchet with the send: after a restart the next message takes the next generation", async () => {
  await withDir(async (dir) => {
    const alice = await stored(dir, "alice", decodeGroupState(mls("xwing_alice.state")));
    let bob = decodeGroupState(mls("xwing_bob.state"));
    for (const text of ["one", "two", "three"]) {
      // compose: encrypt, then store the new state (in the send's transaction) before
      // anything leaves; the process then dies
      const outbound = await restart(alice, async (groups, s) => {
        const meta = groups.meta(CH)!;
        const enc = await encryptMessage(groups.open(meta), utf8(text));
        const before = s.bytesWritten;
        s.transaction(() => groups.save(meta, enc.state));
        assert(s.bytesWritten - before < 1024, "the sender's ratchet, not the state");
        return enc.outbound;
      });
      // a generation used twice would not decrypt: its key is gone at the recipient
      const r = await processMessage(bob, outbound);
      assert(r.kind === "application");
      assertEquals(fromUtf8(r.plaintext), text);
      bob = r.state;
    }
  });
});

Deno.test("GroupStates stores a received message's ratchet: after a restart its key is gone from disk (RFC 9420 §9.2)", async () => {
  await withDir(async (dir) => {
    const bob = await stored(dir, "bob", decodeGroupState(mls("xwing_bob.state")));
    const message = mls("xwing_message_alice.bin");
    await restart(bob, async (groups, s) => {
      const meta = groups.meta(CH)!;
      const r = await processMessage(groups.open(meta), message);
      assert(r.kind === "application");
      assertEquals(fromUtf8(r.plaintext), "stored by an older qpq build");
      s.transaction(() => {
        groups.save(meta, r.state);
        s.setCursor(1); // with the message's queue position, before the ack
      });
    });
    await restart(bob, async (groups, s) => {
      assertEquals(s.cursor(), 1);
      // the stored state can no longer decrypt it: the used key was deleted
      await assertRejects(() => processMessage(groups.open(groups.meta(CH)!), message));
    });
  });
});

Deno.test("QpqClient: a received application message writes the sender's ratchet and not the state, before the ack", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-group-states-" });
  try {
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob");
    await alice.client.createGroup("duo");
    await alice.client.invite("#duo", ["bob"]);
    await bob.client.sync();
    await alice.client.send("#duo", "warm up"); // the first save after the join is whole
    assertEquals(await bob.client.sync(), 1);
    const ch = bob.client.conversation("#duo").channelId!;
    const store = bob.client.store as ClientStore;
    for (const text of ["hello", "again"]) {
      const before = store.group(ch)!;
      await alice.client.send("#duo", text);
      const written = store.bytesWritten;
      assertEquals(await bob.client.sync(), 1);
      const after = store.group(ch)!;
      assertEquals(toHex(after.state), toHex(before.state), "the state's bytes are unchanged");
      const moved = after.secrets!.filter((x, i) =>
        toHex(x.value) !== toHex(before.secrets![i]!.value)
      );
      // alice's ratchet (node 0), stored with the message; bob's own (node 2) moves only if
      // his delivered receipt for it went out before this read
      assert(moved.some((x) => x.node === 0), "alice's ratchet, stored with the message");
      assert(moved.every((x) => x.node === 0 || x.node === 2), "no other secret is written");
      assert(store.bytesWritten - written < 4096, "at most 4 KiB per received message");
    }
    assertEquals(bob.received(), ["warm up", "hello", "again"]);
    await alice.client.close();
    await bob.client.close();
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resolves when `ok()` holds, polling; fails after `ms`. */
async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("QpqClient: a pushed batch of application messages lists no group nor conversation; a record changed (a timer set) is listed again and expiry still follows each receive", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-group-states-" });
  try {
    let skew = 0; // bob's clock ahead of alice's
    const alice = await testUser(ts, dir, "alice");
    const bob = await testUser(ts, dir, "bob", { now: () => Date.now() + skew });
    await alice.client.createGroup("duo");
    await alice.client.invite("#duo", ["bob"]);
    await bob.client.sync();
    await bob.client.subscribe();
    const store = bob.client.store as ClientStore;
    const listed = { groups: 0, conversations: 0 };
    const listGroupMeta = store.listGroupMeta.bind(store);
    const listConversations = store.listConversations.bind(store);
    store.listGroupMeta = () => (listed.groups++, listGroupMeta());
    store.listConversations = () => (listed.conversations++, listConversations());
    await alice.client.send("#duo", "warm up"); // the first after the join: a whole save
    await until("warm up", () => bob.received().length === 1);
    await new Promise((r) => setTimeout(r, 300)); // what the batch left to do is done
    await bob.client.sync(); // its first look for pending commits since the warm up
    const before = { ...listed };
    for (const text of ["one", "two", "three"]) {
      await alice.client.send("#duo", text);
      await until(text, () => bob.received().at(-1) === text);
    }
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(listed, before, "no listing after a batch that changed no record");
    await bob.client.sync(); // nothing pending, nothing to maintain: no listing either
    assertEquals(listed, before, "no listing in a sync that changed no record");
    // a commit (a disappearing timer) changes bob's record: listed again, the timer seen
    assert(await alice.client.setDisappearing("#duo", 30));
    await until("the timer at bob", () => listed.conversations > before.conversations);
    await new Promise((r) => setTimeout(r, 300));
    skew = 60_000; // bob's clock a minute on: what alice sends now is already expired
    await alice.client.send("#duo", "gone at once");
    await until("gone at once", () => bob.received().at(-1) === "gone at once");
    await until(
      "expired after the receive",
      () => !bob.client.history("#duo", 50).some((m) => m.body === "gone at once"),
      3_000,
    );
    await alice.client.close();
    await bob.client.close();
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
