/// <reference lib="deno.worker" />
/**
 * Worker for scripts/fuzz.ts: the fuzzing clients on their own thread, so the honest
 * users on the main thread measure the server, not a busy client event loop.
 *
 * @module
 */
import { loadFrameCorpus } from "../tests/_support/fuzz.ts";
import { liveCorpus, type LiveFuzzOptions, runLiveFuzz } from "../tests/_support/fuzz_live.ts";

/** What the main thread sends. */
interface Start {
  addr: string;
  certPem: string;
  fuzzToken: Uint8Array;
  fuzzChannel: Uint8Array;
  maxMs: number;
  options: Omit<LiveFuzzOptions, "onProgress" | "shouldStop">;
}

self.onmessage = async (e: MessageEvent<Start>) => {
  const m = e.data;
  const corpus = liveCorpus(await loadFrameCorpus(), m.fuzzChannel);
  const t0 = performance.now();
  const report = await runLiveFuzz(m, corpus, {
    ...m.options,
    shouldStop: () => performance.now() - t0 > m.maxMs,
    onProgress: (r) => self.postMessage({ type: "progress", report: r }),
  });
  self.postMessage({ type: "done", report, corpus: corpus.length });
};
