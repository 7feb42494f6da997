/**
 * Delivery-queue throughput of the server store: one enqueue (1 KiB payload) + fetch + ack
 * per iteration, so iter/s is messages delivered per second in one process. The baseline
 * is the same SqliteServerStore on a private `:memory:` database: the same SQL and rules
 * with no file, so each file row's ratio is what the disk costs (WAL writes and one fsync
 * per COMMIT with `synchronous = FULL`), without and with a db_key (sealing + keyed
 * hashes). A second group fans one message out to 10 recipients; a third sends 100
 * messages at once, which the store commits together (group commit: one fsync for the
 * batch); a fourth is the write of a fan-out to 200 recipients alone.
 *
 * Run with `deno bench --allow-read --allow-write bench/server_store_bench.ts`.
 */

import { randomBytes } from "../src/bytes.ts";
import { MEMORY_PATH, type ServerStore, SqliteServerStore } from "../src/store/server/mod.ts";

const dir = Deno.makeTempDirSync({ prefix: "qpq_store_bench_" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* best effort */ }
});

const payload = randomBytes(1024);
// letters, not digits: member-6 and member-8 look alike (see src/names.ts)
const RECIPIENTS = Array.from({ length: 10 }, (_, i) => `member-${"abcdefghjk"[i]}`);
/** A large group's other members, for the fan-out write. */
const CROWD = Array.from(
  { length: 200 },
  (_, i) => `crowd-${"abcdefghjk"[Math.floor(i / 20)]}${"abcdefghjkmnpqrstuvw"[i % 20]}`,
);

async function prepare(s: ServerStore): Promise<ServerStore> {
  for (const u of ["alice", "bob", ...RECIPIENTS, ...CROWD]) {
    await s.createUser(u, randomBytes(192));
  }
  return s;
}

/** The in-memory row: no file, so no disk in the measurement. */
const BASELINE = "SqliteServerStore :memory:";

const stores: [string, ServerStore][] = [
  [BASELINE, await prepare(await SqliteServerStore.open(MEMORY_PATH))],
  ["SqliteServerStore file", await prepare(await SqliteServerStore.open(`${dir}/plain.db`))],
  [
    "SqliteServerStore file with db_key",
    await prepare(await SqliteServerStore.open(`${dir}/sealed.db`, { dbKey: "bench key" })),
  ],
];

let counter = 0;

for (const [name, s] of stores) {
  Deno.bench({
    name: `${name} enqueue+fetch+ack`,
    group: "deliver 1 KiB to 1 recipient",
    baseline: name === BASELINE,
    fn: async () => {
      const id = `m${counter++}`;
      const r = await s.enqueue({
        sender: "alice",
        messageId: id,
        channelId: null,
        payload,
        recipients: ["bob"],
      });
      const seq = r.deliveries[0]!.seq;
      const page = await s.fetch("bob", seq - 1, 1);
      if (page.length !== 1) throw new Error("message not fetched");
      await s.ack("bob", seq);
    },
  });
}

for (const [name, s] of stores) {
  Deno.bench({
    name: `${name} enqueue to 10, each fetch+ack`,
    group: "deliver 1 KiB to 10 recipients",
    baseline: name === BASELINE,
    fn: async () => {
      const r = await s.enqueue({
        sender: "alice",
        messageId: `f${counter++}`,
        channelId: "group",
        payload,
        recipients: RECIPIENTS,
      });
      for (const d of r.deliveries) {
        await s.fetch(d.recipient, d.seq - 1, 1);
        await s.ack(d.recipient, d.seq);
      }
    },
  });
}

for (const [name, s] of stores) {
  Deno.bench({
    name: `${name} 100 concurrent enqueues, then fetch+ack`,
    group: "100 senders at once (group commit)",
    baseline: name === BASELINE,
    fn: async () => {
      const rs = await Promise.all(Array.from({ length: 100 }, () =>
        s.enqueue({
          sender: "alice",
          messageId: `c${counter++}`,
          channelId: null,
          payload,
          recipients: ["bob"],
        })));
      const last = rs[rs.length - 1]!.deliveries[0]!.seq;
      const page = await s.fetch("bob", last - 100, 100);
      if (page.length !== 100) throw new Error("messages not fetched");
      await s.ack("bob", last);
    },
  });
}

// The fan-out write alone: one enqueue to 200 recipients (a group of 201); the queues are
// emptied every 100 messages, outside the measurement. Issue 19 tried batching its reads
// and writes (IN lists and multi-row INSERTs of up to 64 rows instead of six statements
// per recipient): 7.1 -> 7.7 ms CPU per enqueue to 200 and 0.41 -> 0.59 ms to 10 on
// :memory:, i.e. no gain: per-statement overhead is not the cost. Per recipient, the
// sender-quota count over the queue (O(messages of that sender queued)) and the inserts
// into `deliveries` with its four indexes are (about 20 and 24 µs of ~35 µs here).
for (const [name, s] of stores) {
  let sent = 0;
  Deno.bench({
    name: `${name} enqueue to 200 recipients`,
    group: "fan-out write: 1 KiB to 200 recipients",
    baseline: name === BASELINE,
    fn: async (b) => {
      b.start();
      const r = await s.enqueue({
        sender: "alice",
        messageId: `g${counter++}`,
        channelId: null,
        payload,
        recipients: CROWD,
      });
      b.end();
      if (++sent % 100 === 0) {
        for (const d of r.deliveries) await s.ack(d.recipient, d.seq);
      }
    },
  });
}
