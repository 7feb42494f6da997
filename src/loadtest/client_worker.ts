/**
 * A worker thread of the load tool running one shard of its real clients
 * ({@link runShard}): the coordinator (runner.ts) spreads whole groups over several of
 * these so one JavaScript thread is not the ceiling.
 *
 * ```
 * in:  { type: "run", options }  ─►  out: { type: "progress", … } (often)
 *                                   out: { type: "ready", setupMs }
 * in:  { type: "go" }            ─►  out: { type: "progress", … } (every 250 ms)
 *                                   out: { type: "report", report }   (latencies transferred)
 * in:  { type: "close" }         ─►  out: { type: "closed" }           (clients closed)
 * any time, instead:                 out: { type: "error", message }
 * ```
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { runShard, type ShardOptions } from "./_shard.ts";

let go: (() => void) | undefined;
let close: (() => void) | undefined;

self.onmessage = async (e: MessageEvent) => {
  const msg = e.data as
    | { type: "run"; options: ShardOptions }
    | { type: "go" }
    | { type: "close" };
  if (msg.type === "go") {
    go?.();
    return;
  }
  if (msg.type === "close") {
    close?.();
    return;
  }
  try {
    await runShard(msg.options, {
      progress: (p) => self.postMessage({ type: "progress", ...p }),
      ready: (setupMs) => {
        const started = new Promise<void>((resolve) => go = resolve);
        self.postMessage({ type: "ready", setupMs });
        return started;
      },
      finished: (report) => {
        const closing = new Promise<void>((resolve) => close = resolve);
        self.postMessage({ type: "report", report }, [report.latencies.buffer as ArrayBuffer]);
        return closing;
      },
    });
    self.postMessage({ type: "closed" });
  } catch (err) {
    self.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
};
