/**
 * The full-size fuzz run: mutated frames against a live server (its own worker thread,
 * real QUIC, real SQLite) while honest users keep working, and every decoder of peer
 * bytes in a second worker, with progress lines and a summary.
 *
 * ```
 * client worker: fuzz connections ──QUIC──► server worker ◄──QUIC── main: honest alice/bob
 * decoder worker: frames, FrameReader, KeyPackage, MLS messages/Welcome/tree/state,
 *                 envelope, OPAQUE server steps, delivery records (watchdog on hangs)
 * ```
 *
 * Usage:
 *   deno run --unstable-net --allow-net=127.0.0.1,localhost --allow-read --allow-write \
 *     --allow-env --allow-sys=hostname scripts/fuzz.ts --frames 1000000 [--seed N] \
 *     [--decoder-cases N] [--max-seconds N] [--connections 4] [--streams 4] [--window 32]
 *
 * Exit code 1 when anything crashed, hung or an honest call failed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fmtStats, latencyStats } from "../tests/_support/fuzz.ts";
import { type FuzzReport, runDecoderFuzz } from "../tests/_support/fuzz_runner.ts";
import {
  type LiveFuzzReport,
  setupLiveFuzz,
  startHonestTraffic,
} from "../tests/_support/fuzz_live.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    frames: { type: "string", default: "1000000" },
    seed: { type: "string", default: "1" },
    "decoder-cases": { type: "string" },
    "max-seconds": { type: "string" },
    connections: { type: "string", default: "4" },
    streams: { type: "string", default: "4" },
    window: { type: "string", default: "32" },
  },
});
const frames = Number(values.frames);
const seed = Number(values.seed);
const decoderCases = Number(values["decoder-cases"] ?? Math.max(10_000, Math.round(frames / 5)));
const maxMs = values["max-seconds"] ? Number(values["max-seconds"]) * 1000 : Infinity;

const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const t0 = performance.now();
const elapsed = () => performance.now() - t0;

// ---- server on its own thread
const server = new Worker(new URL("./_fuzz_server.ts", import.meta.url).href, { type: "module" });
type ServerMsg =
  | { type: "ready"; addr: string; certPem: string }
  | { type: "mem"; usage: Deno.MemoryUsage }
  | { type: "closed" };
const waiters: ((m: ServerMsg) => void)[] = [];
server.onmessage = (e: MessageEvent<ServerMsg>) => waiters.shift()?.(e.data);
const nextServerMsg = () => new Promise<ServerMsg>((r) => waiters.push(r));
const ready = await nextServerMsg();
if (ready.type !== "ready") throw new Error("server worker did not start");

let maxRss = Deno.memoryUsage().rss;
let maxServerHeap = 0;
const sampleMemory = async () => {
  server.postMessage({ type: "mem" });
  const m = await nextServerMsg();
  if (m.type === "mem") {
    maxRss = Math.max(maxRss, m.usage.rss);
    maxServerHeap = Math.max(maxServerHeap, m.usage.heapUsed);
  }
};

const setup = await setupLiveFuzz(ready.addr, ready.certPem);
console.log(
  `fuzz: seed ${seed}, ${frames} frames to ${ready.addr} (${values.connections} connections x ` +
    `${values.streams} streams, window ${values.window}), ${decoderCases} decoder cases`,
);

// ---- decoders in their own worker
let decoder: FuzzReport | undefined;
const decoding = runDecoderFuzz({
  seed,
  cases: decoderCases,
  hangMs: 10_000,
  onProgress: (r) => (decoder = r),
}).then((r) => (decoder = r));

// ---- live fuzz + honest traffic
const honest = startHonestTraffic(setup, 20);
let live: LiveFuzzReport | undefined;
const progress = setInterval(() => {
  void sampleMemory();
  const l = live;
  const d = decoder;
  const rate = l ? Math.round(l.sent / (l.durationMs / 1000)) : 0;
  console.log(
    `[${(elapsed() / 1000).toFixed(0)} s] frames ${l?.sent ?? 0} (${rate}/s), answered ${
      l?.answered ?? 0
    }, internal ${l?.byCode["internal"] ?? 0}, stalls ${l?.stalls ?? 0} | decoder cases ${
      d?.cases ?? 0
    }, crashes ${d?.crashes ?? 0}, hangs ${d?.hangs ?? 0} | max rss ${mb(maxRss)}`,
  );
}, 5000);
const client = new Worker(new URL("./_fuzz_client.ts", import.meta.url).href, {
  type: "module",
});
live = await new Promise<LiveFuzzReport>((resolve, reject) => {
  client.onmessage = (e: MessageEvent<{ type: string; report: LiveFuzzReport }>) => {
    live = e.data.report;
    if (e.data.type === "done") resolve(e.data.report);
  };
  client.onerror = (e) => {
    e.preventDefault();
    reject(new Error(`fuzz client worker failed: ${e.message}`));
  };
  client.postMessage({
    addr: setup.addr,
    certPem: setup.certPem,
    fuzzToken: setup.fuzzToken,
    fuzzChannel: setup.fuzzChannel,
    maxMs,
    options: {
      seed,
      frames,
      connections: Number(values.connections),
      streamsPerConnection: Number(values.streams),
      window: Number(values.window),
    },
  });
});
client.terminate();
const h = await honest.stop();
await sampleMemory();
const decoded = await decoding;
clearInterval(progress);

// ---- after the storm: the server still answers and holds only the honest connections
const after: number[] = [];
for (let i = 0; i < 20; i++) after.push((await setup.alice.ping()).rttMs);
const health = await setup.alice.call({ kind: "health" }, "health");
await setup.close();
server.postMessage({ type: "close" });
await nextServerMsg();
server.terminate();

// ---- summary
const byCode = Object.entries(live.byCode).sort((a, b) => b[1] - a[1]);
const internal = live.byCode["internal"] ?? 0;
console.log("\n==== summary ====");
console.log(
  `live: ${live.sent} frames in ${(live.durationMs / 1000).toFixed(1)} s ` +
    `(${Math.round(live.sent / (live.durationMs / 1000))}/s), ${live.answered} answered, ` +
    `${live.streamsOpened} streams opened, ${live.streamsEnded} ended by the server, ` +
    `${live.pushes} pushes, stalls ${live.stalls}`,
);
console.log(`live answers by code: ${byCode.map(([k, v]) => `${k}=${v}`).join(" ")}`);
console.log(
  `decoders: ${decoded.cases} cases in ${(decoded.durationMs / 1000).toFixed(1)} s, ` +
    `crashes ${decoded.crashes}, hangs ${decoded.hangs}`,
);
for (const [name, t] of Object.entries(decoded.targets)) {
  console.log(
    `  ${name.padEnd(28)} ${
      String(t.cases).padStart(7)
    } cases, ok ${t.ok} (modified ${t.okModified}), ` +
      `max ${t.maxMs.toFixed(1)} ms, rejects ${JSON.stringify(t.rejects)}, causes ${
        JSON.stringify(t.causes)
      }`,
  );
}
for (const p of decoded.problems) {
  console.log(`  ${p.kind} ${p.target} seed ${p.seed} case ${p.index}: ${p.error}`);
}
console.log(
  `honest during the run: ping ${fmtStats(h.ping)}; enqueue ${fmtStats(h.enqueue)}; ` +
    `fetch ${fmtStats(h.fetch)}; failures ${h.failures}${
      h.firstFailure ? ` (${h.firstFailure})` : ""
    }, delivered ${h.delivered}`,
);
console.log(
  `after: ping ${
    fmtStats(latencyStats(after))
  }, server connectedClients ${health.connectedClients}`,
);
const crashes = internal + decoded.crashes;
const hangs = live.stalls + decoded.hangs;
console.log(
  `frames=${live.sent} decoderCases=${decoded.cases} crashes=${crashes} hangs=${hangs} ` +
    `maxRss=${mb(maxRss)} maxServerHeap=${mb(maxServerHeap)} seconds=${
      (elapsed() / 1000).toFixed(0)
    }${live.sent < frames ? ` (stopped at --max-seconds before ${frames} frames)` : ""}`,
);
Deno.exit(crashes === 0 && hangs === 0 && h.failures === 0 ? 0 : 1);
