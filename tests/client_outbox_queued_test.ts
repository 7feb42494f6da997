/**
 * `Outbox.queuedBefore` and `pendingCount` run on every send and typing indicator: they
 * are SQL on the outbox's typed `conv_h` column (client schema 6) and open no entry. Every
 * answer matches a model of the queue for many interleaved conversations, with kept sent
 * entries beside them, in memory and on a real state file, where it stays the same after
 * every entry's sealed value is destroyed on disk (an answer that opened one would throw).
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { randomBytes } from "../src/bytes.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../src/crypto/mod.ts";
import { StorageError } from "../src/errors.ts";
import { ClientContext } from "../src/client/_context.ts";
import { Outbox } from "../src/client/outbox.ts";
import { Session } from "../src/client/session.ts";
import { ClientStore, type LocalState, MemoryLocalState } from "../src/store/mod.ts";
import { assert, assertEquals, assertThrows } from "./_support/assert.ts";

const FAST = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
const PASSWORD = "queued before";
const kp = IdentityKeyPair.generate();

function open(path: string, create = false): Promise<ClientStore> {
  return ClientStore.open(path, PASSWORD, {
    kdf: FAST,
    ...(create
      ? {
        create: true,
        initialMeta: {
          username: "alice",
          server: "localhost:4433",
          identitySeed: kp.exportPrivateKey(),
          identityPublic: kp.publicKey,
        },
      }
      : {}),
  });
}

/** The client's outbox over `s` (no server is reached: only the queue is read). */
function outbox(s: LocalState): Outbox {
  const ctx = new ClientContext(s, kp, () => {}, () => 0);
  const session = new Session(ctx, {
    password: PASSWORD,
    onPush: () => {},
    onReconnected: () => Promise.resolve(),
    cursor: () => 0,
  });
  return new Outbox(ctx, session);
}

function queue(s: LocalState, messageId: string, conversationId: string): void {
  s.addOutbox({
    messageId,
    conversationId,
    request: randomBytes(64),
    createdAt: 0,
    attempts: 0,
  });
}

const CONVERSATIONS = ["c0", "c1", "c2", "c3", "c4", "c5", "kept-only", "none"];

/** Every answer of `o` against the model: `queued` in order, by conversation. */
function assertAnswers(o: Outbox, queued: [string, string][], kept: string[]): void {
  assertEquals(o.pendingCount(), queued.length, "kept sent entries are not pending");
  const seen = new Set<string>();
  for (const [id, conv] of queued) {
    assertEquals(o.queuedBefore(id), seen.has(conv), `queued before ${id} (${conv})`);
    // a conversation given beside a queued id does not change the answer: the id's own
    assertEquals(o.queuedBefore(id, "none"), seen.has(conv), `${id} beside another conversation`);
    seen.add(conv);
  }
  for (const conv of CONVERSATIONS) {
    const any = queued.some(([, c]) => c === conv);
    assertEquals(o.queuedBefore(undefined, conv), any, `anything of ${conv} queued`);
    assertEquals(o.queuedBefore("not-queued", conv), any, `an unknown id in ${conv}`);
  }
  for (const id of kept) {
    // a kept sent entry is out of the queue: as an unknown id
    assertEquals(o.queuedBefore(id), false, `kept ${id}`);
  }
  assertEquals(o.queuedBefore(undefined), false);
}

/**
 * Queue 60 entries over six conversations (interleaved unevenly) and keep some sent; the
 * queue as the model sees it: (id, conversation) in order, and the kept ids.
 */
function fill(s: LocalState): { queued: [string, string][]; kept: string[] } {
  const queued: [string, string][] = [];
  const kept: string[] = [];
  for (let i = 0; i < 60; i++) {
    const conv = `c${(i * 5 + Math.floor(i / 7)) % 6}`;
    queue(s, `m${i}`, conv);
    queued.push([`m${i}`, conv]);
  }
  // kept sent entries (seq < 0), one of a conversation with nothing queued
  for (const [id, conv] of [["k0", "kept-only"], ["k1", "c2"], ["k2", "c0"]]) {
    queue(s, id!, conv!);
    s.keepSent(id!, 1, { count: 10, bytes: 1 << 20 });
    kept.push(id!);
  }
  // the first entry of two conversations acknowledged and kept: the next one leads
  for (const conv of ["c1", "c4"]) {
    const at = queued.findIndex(([, c]) => c === conv);
    s.keepSent(queued[at]![0], 2, { count: 10, bytes: 1 << 20 });
    kept.push(queued[at]![0]);
    queued.splice(at, 1);
  }
  assertEquals(s.listOutbox().map((e) => e.messageId), queued.map(([id]) => id));
  for (const conv of CONVERSATIONS) {
    assertEquals(
      s.listOutbox(conv).map((e) => e.messageId),
      queued.flatMap(([id, c]) => c === conv ? [id] : []),
      `the queue of ${conv}`,
    );
  }
  return { queued, kept };
}

Deno.test("Outbox.queuedBefore and pendingCount answer for many conversations from the typed columns, in memory too", async () => {
  const s = new MemoryLocalState({
    username: "alice",
    server: "localhost:4433",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  });
  const { queued, kept } = fill(s);
  assertAnswers(outbox(s), queued, kept);
  await s.close();
});

Deno.test("Outbox.queuedBefore and pendingCount answer for many conversations from the typed columns, without opening an entry", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-outbox-queued-" });
  const path = `${dir}/s.bin`;
  try {
    const s = await open(path, true);
    const { queued, kept } = fill(s);
    assertAnswers(outbox(s), queued, kept);
    await s.close();

    // destroy every entry's sealed value: only the typed columns are left to answer from
    const db = new DatabaseSync(`${path}.db`);
    const damaged = db.prepare("UPDATE outbox SET data = randomblob(length(data))").run();
    db.close();
    assertEquals(Number(damaged.changes), queued.length + kept.length);
    const r = await open(path);
    try {
      assertThrows(() => r.listOutbox(), StorageError); // the damage is real
      assertAnswers(outbox(r), queued, kept);
    } finally {
      await r.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ClientStore outbox rows are sealed to their conversation's hash: moved to another conversation, they do not open", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-outbox-moved-" });
  const path = `${dir}/s.bin`;
  try {
    const s = await open(path, true);
    queue(s, "a1", "ca");
    queue(s, "b1", "cb");
    await s.close();
    const db = new DatabaseSync(`${path}.db`);
    const rows = db.prepare("SELECT seq, conv_h FROM outbox ORDER BY seq").all();
    assertEquals(rows.length, 2);
    assert(rows.every((r) => (r.conv_h as Uint8Array).length === 32), "HMACs, no ids");
    db.prepare("UPDATE outbox SET conv_h = ? WHERE seq = ?").run(rows[1]!.conv_h!, rows[0]!.seq!);
    db.close();
    const r = await open(path);
    try {
      assertThrows(() => r.listOutbox("cb"), StorageError); // a1, moved to cb's hash
      assertEquals(r.listOutbox("ca"), []);
    } finally {
      await r.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
