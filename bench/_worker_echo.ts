/**
 * The worker of bench/worker_bench.ts: answers each message at once with an answer the size
 * of a store's enqueue result, so a round trip is what message passing alone costs.
 *
 * @module
 */
/// <reference lib="deno.worker" />

self.onmessage = (e: MessageEvent<{ id: number }>) => {
  self.postMessage({ id: e.data.id, v: { deliveries: [{ recipient: "bob", seq: e.data.id }] } });
};
