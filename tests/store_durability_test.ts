/**
 * Group commit off the event loop (issue 19): on a real SQLite file with fsync on, every
 * answer and every read that saw a write is released only after the WAL fsync that covers
 * it, calls arriving while an fsync is in flight share the next one, and closing syncs what
 * was committed. The SIGKILL side of the promise is tests/crash_test.ts.
 */

import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { utf8 } from "../src/bytes.ts";
import { StorageError } from "../src/errors.ts";
import { InProcessNotifier, SqliteServerStore } from "../src/store/server/mod.ts";
import type { DatabaseSync } from "node:sqlite";

/** The next turn of the event loop after the store's batch (setImmediate) has run. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

async function withStore(
  fn: (s: SqliteServerStore, path: string) => Promise<void>,
  options: { syncData?: (file: Deno.FsFile) => Promise<void> } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "qpq_durable_" });
  const path = `${dir}/server.db`;
  const s = await SqliteServerStore.open(path, options);
  try {
    for (const n of ["alice", "bob"]) await s.createUser(n, utf8(`record of ${n}`));
    await fn(s, path);
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
}

let ids = 0;
const message = () => ({
  sender: "alice",
  messageId: `m${++ids}`,
  channelId: null,
  payload: utf8("hello"),
  recipients: ["bob"],
});

Deno.test("SqliteServerStore.enqueue answers only after the WAL fsync covering its batch", async () => {
  await withStore(async (s) => {
    for (let i = 0; i < 5; i++) {
      const before = s.durability().committed;
      const r = await s.enqueue(message());
      const d = s.durability();
      assertEquals(r.duplicate, false);
      assert(d.committed > before, "the enqueue was committed");
      assert(d.synced > before, `answered at synced ${d.synced}, its batch is ${before + 1}`);
    }
  });
});

Deno.test("SqliteServerStore reads that saw a batch not yet on disk wait for its fsync", async () => {
  // the fsync is held until the read has been asked: on a fast or loaded disk it could
  // otherwise end within the turn and the test would prove nothing
  let hold = false;
  let release = () => {};
  const syncData = async (f: Deno.FsFile) => {
    if (hold) await new Promise<void>((r) => release = r);
    await f.syncData();
  };
  await withStore(async (s) => {
    hold = true;
    const sent = s.enqueue(message());
    await nextTurn(); // the batch is committed, its fsync is in flight
    const seen = s.durability().committed;
    assert(seen > s.durability().synced, "the fsync is still in flight");
    const read = s.fetchPage("bob", 0);
    await nextTurn();
    hold = false;
    release();
    const page = await read;
    assertEquals(page.messages.length, 1, "the read saw the committed message");
    assert(
      s.durability().synced >= seen,
      "a message is never handed out (pushed, fetched) before it is on disk",
    );
    await sent;
  }, { syncData });
});

Deno.test("SqliteServerStore calls arriving during an fsync share the next one, never one more than the batches", async () => {
  await withStore(async (s, path) => {
    const start = s.durability();
    const calls = [s.enqueue(message())];
    await nextTurn(); // first batch committed, its fsync in flight
    for (let i = 0; i < 10; i++) {
      calls.push(s.enqueue(message()));
      await nextTurn(); // each call its own batch
    }
    await Promise.all(calls);
    const d = s.durability();
    const batches = d.committed - start.committed;
    const syncs = d.syncs - start.syncs;
    assertEquals(batches, 11);
    // never more fsyncs than batches; fewer when a batch commits while an fsync is in flight
    // (on a fast or memory-backed disk each fsync may end within the turn: then one each)
    assert(syncs >= 1 && syncs <= batches, `${syncs} fsyncs for ${batches} batches`);
    // closing syncs what is committed; everything is there after a reopen
    const last = s.enqueue(message());
    await s.close();
    await last;
    const again = await SqliteServerStore.open(path);
    try {
      assertEquals(await again.queueDepth("bob"), 12);
    } finally {
      await again.close();
    }
  });
});

Deno.test("SqliteServerStore a failed WAL fsync fails every answer and read it covers, and announces nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq_durable_" });
  const notifier = new InProcessNotifier();
  let failing = false;
  const s = await SqliteServerStore.open(`${dir}/server.db`, {
    notifier,
    // the disk fails as an EIO does, after a while: fsync reports the error
    syncData: (f) =>
      failing
        ? new Promise((_, reject) => setTimeout(() => reject(new Error("EIO: I/O error")), 20))
        : f.syncData(),
  });
  try {
    for (const n of ["alice", "bob"]) await s.createUser(n, utf8(`record of ${n}`));
    const announced: number[] = [];
    notifier.subscribe("bob", (m) => announced.push(m?.seq ?? -1));
    failing = true;
    const m = message();
    const sent = assertRejects(() => s.enqueue(m), StorageError);
    await nextTurn(); // committed, its fsync in flight
    assert(s.durability().committed > s.durability().synced, "the fsync is in flight");
    // a read that saw the batch waits for the same fsync, and fails with it
    const read = assertRejects(() => s.fetchPage("bob", 0), StorageError);
    const [e] = await Promise.all([sent, read]);
    assertEquals(e.code, "storage");
    assertEquals(announced, [], "no push of a message whose fsync failed");
    // the disk works again: the sender's retry finds the message (stored, now synced)
    failing = false;
    const retry = await s.enqueue(m);
    assertEquals(retry.duplicate, true);
    const next = await s.enqueue(message());
    assertEquals(next.duplicate, false);
    assertEquals(announced, [next.deliveries[0]!.seq], "announced once on disk, with its seq");
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteServerStore checkpoints its WAL off the event loop: the WAL stays bounded, every message stays", async () => {
  await withStore(async (s, path) => {
    const payload = new Uint8Array(3000).fill(1);
    const n = 2000;
    let acked = 0;
    for (let i = 1; i <= n; i++) {
      await s.enqueue({ ...message(), payload });
      // an ack now and then, as recipients do: the queue keeps its last 50 or so
      if (i % 100 === 0) await s.ack("bob", acked = i - 50);
    }
    const { checkpoints } = s.durability();
    assert(checkpoints >= 5, `checkpoints: ${checkpoints}`);
    // SQLite's own checkpoint is off (but for a backstop far above this): without the
    // worker's, the WAL would hold every page written (2,000 messages of 3 KB: 20+ MB)
    const wal = (await Deno.stat(`${path}-wal`)).size;
    assert(wal < 8 * 1024 * 1024, `WAL of ${wal} bytes`);
    // nothing lost: what was not acknowledged is all there, in order
    const left = await s.fetch("bob", 0, 2000);
    assertEquals(
      left.map((m) => m.seq),
      Array.from({ length: n - acked }, (_, k) => acked + 1 + k),
    );
  });
});

Deno.test("SqliteServerStore.close during a checkpoint waits for it; the file opens again with everything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq_durable_" });
  const path = `${dir}/server.db`;
  try {
    const s = await SqliteServerStore.open(path);
    for (const n of ["alice", "bob"]) await s.createUser(n, utf8(`record of ${n}`));
    // one call per batch: enough batches for a checkpoint to start, then close at once
    for (let i = 0; i < 130; i++) await s.enqueue(message());
    const pending = [s.enqueue(message()), s.enqueue(message())];
    await s.close();
    await Promise.all(pending);
    const again = await SqliteServerStore.open(path);
    try {
      assertEquals((await again.fetch("bob", 0, 500)).length, 132);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteServerStore a full disk that rolls back the whole batch answers storage_full, not a database error (sim seed 5024)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq_durable_" });
  let db: DatabaseSync | undefined;
  const s = await SqliteServerStore.open(`${dir}/server.db`, { onOpen: (d) => db = d });
  try {
    for (const n of ["alice", "bob"]) await s.createUser(n, utf8(`record of ${n}`));
    // the disk fills: no new page (as tests/sim/disk.ts does); SQLite then rolls back the
    // whole transaction, so the call's savepoint is gone
    const { page_count } = db!.prepare("PRAGMA page_count").get() as { page_count: number };
    db!.exec(`PRAGMA max_page_count = ${page_count}`);
    // two calls in one turn share one batch (a SAVEPOINT each): the second fills the disk
    const small = s.enqueue(message());
    const big = s.enqueue({ ...message(), payload: new Uint8Array(256 * 1024) });
    for (const call of [small, big]) {
      const e = await assertRejects(() => call, StorageError);
      // before: "no such savepoint: op" was reported, as an I/O error ("storage")
      assertEquals(e.code, "storage_full");
    }
    assert(!db!.isTransaction, "nothing of the batch is left open");
    db!.exec("PRAGMA max_page_count = 1073741823");
    assertEquals((await s.enqueue(message())).duplicate, false, "space again: it stores");
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});
