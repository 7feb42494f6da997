/**
 * What a store in a worker thread would add to every call (issue 19, docs/architecture.md,
 * "Why the store is not in a worker thread"): a Deno `Worker` message round trip carrying an
 * enqueue's arguments (a 150-byte payload) and result, beside the store call it would carry
 * (an enqueue, fetch and ack on `:memory:`, all SQL, no disk). Both in one run.
 *
 *   deno bench --allow-read --allow-write bench/worker_bench.ts
 *
 * 2026-12-06, loaded 2-core machine (load average 7-9), one run: the 3 store calls 531 µs
 * (p75 246 µs), 3 Worker round trips 351 µs (p75 267 µs): message passing would cost about as
 * much as the SQL it takes off the event loop, and add its latency to every call.
 *
 * @module
 */
import { MEMORY_PATH, SqliteServerStore } from "../src/store/server/mod.ts";
import { randomBytes } from "../src/bytes.ts";

const worker = new Worker(new URL("./_worker_echo.ts", import.meta.url), { type: "module" });
const pending = new Map<number, () => void>();
worker.onmessage = (e: MessageEvent<{ id: number }>) => {
  pending.get(e.data.id)?.();
  pending.delete(e.data.id);
};
let next = 0;
const payload = randomBytes(150);
function viaWorker(): Promise<void> {
  const id = ++next;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    worker.postMessage({
      id,
      op: "enqueue",
      args: [{
        sender: "alice",
        messageId: `m${id}`,
        channelId: null,
        payload,
        recipients: ["bob"],
      }],
    });
  });
}

const store = await SqliteServerStore.open(MEMORY_PATH);
for (const u of ["alice", "bob"]) await store.createUser(u, randomBytes(192));
let ids = 0;

Deno.bench({
  name: "store enqueue + fetch + ack on :memory: (3 calls, the SQL a delivery runs)",
  group: "store call vs message passing",
  baseline: true,
  async fn() {
    const r = await store.enqueue({
      sender: "alice",
      messageId: `s${++ids}`,
      channelId: null,
      payload,
      recipients: ["bob"],
    });
    const seq = r.deliveries[0]!.seq;
    await store.fetchPage("bob", seq - 1, { limit: 1 });
    await store.ack("bob", seq);
  },
});

Deno.bench({
  name: "Worker message round trip x3 (what a store in a worker adds to the same 3 calls)",
  group: "store call vs message passing",
  async fn() {
    for (let i = 0; i < 3; i++) await viaWorker();
  },
});

globalThis.addEventListener("unload", () => {
  worker.terminate();
  void store.close();
});
