/**
 * The load runner: N real clients (`QpqClient`: QUIC, OPAQUE, MLS, the same code a
 * user runs) over in-memory local state, in groups of a given size, send M messages each.
 * Every delivery is matched by message id (the id `send` returns is the id the receiver's
 * "message" event carries), so the report counts lost and duplicated messages exactly,
 * beside throughput, send→receive latency and CPU time.
 *
 * The clients run on worker threads (client_worker.ts), so one JavaScript thread is not the
 * ceiling: whole groups are dealt round-robin to the workers, each worker runs its shard
 * (_shard.ts: setup, send, drain, count) and the coordinator here only starts them
 * together, forwards progress and merges their reports.
 *
 * ```
 * coordinator                       worker 1 … W (groups g with g % W = w)
 *   run(options) ──────────────────► register, log in, subscribe, form groups
 *   (all ready) ◄──────────────────── ready
 *   CPU snapshot, go ──────────────► send (paced or closed loop), drain
 *   merge ◄────────────────────────── report: counts, latencies, thread CPU
 *   CPU snapshot, close ───────────► close the clients
 * ```
 *
 * Lost and duplicated stay exact: a group lives on one worker, so every message a worker
 * sends is received only by its own clients and matched there. Latencies are measured on
 * one thread's clock (sender and receivers share the worker) and merged before the
 * percentiles are taken. CPU is measured from go to the last report: each worker's own
 * thread (getrusage of that thread, read on it), the server (whatever
 * {@link LoadOptions.serverProbe} samples) and the whole process.
 *
 * @module
 */
import type { MlsSuiteName } from "../mls/mod.ts";
import { toHex } from "../bytes.ts";
import type { ShardOptions, ShardProgress, ShardReport } from "./_shard.ts";
import { processCpuMs } from "./_cpu.ts";

/** Options of {@link runLoad}. */
export interface LoadOptions {
  server: string;
  caCertPem: string | undefined;
  authToken: string;
  /** Clients (each a `QpqClient` with one QUIC connection). */
  clients: number;
  /** Members per group (2 = DM-shaped). */
  groupSize: number;
  /** Messages each client sends. */
  messages: number;
  /** Total send rate in messages/s (0 = each client sends as soon as its last send returned). */
  rate: number;
  suite: MlsSuiteName;
  /** How long the drain waits without any new delivery before counting the rest lost (ms). */
  drainMs: number;
  /** Worker threads the clients are spread over (default 1; at most one per group). */
  workers?: number;
  /** Each client's request timeout (ms; default: the client's own). */
  timeoutMs?: number;
  /** Prefix for user and group names (unique per run). */
  prefix?: string;
  /** Progress lines. */
  onProgress?: (line: string) => void;
  /** Called once when half of the messages were sent (fault injection). */
  midway?: () => Promise<void>;
  /**
   * How to sample the server (its CPU time, and where it can tell, how late its event loop
   * ran since the last sample) and what is sampled, for the report.
   */
  serverProbe?: { sample(): Promise<ServerSample>; source: string };
}

/** One sample of the server ({@link LoadOptions.serverProbe}). */
export interface ServerSample {
  /** CPU time so far (ms), if measurable. */
  cpuMs: number | undefined;
  /** How late a 20 ms timer on the server's event loop ran since the last sample (ms). */
  lagMs?: { p99: number; max: number };
}

/** CPU time spent from the start of sending to the end of the drain. */
export interface LoadCpu {
  /** The send and drain window CPU is measured over (s). */
  seconds: number;
  /** The client worker threads together (ms), each measured on itself. */
  clientsMs: number;
  /** The server (ms), if measurable; {@link serverSource} says what. */
  serverMs: number | undefined;
  serverSource: string;
  /** How late the server's event loop ran over the window (a stall uses no CPU), if known. */
  serverLagMs: { p99: number; max: number } | undefined;
  /** The whole load process (ms), every thread: clients, coordinator, runtime helpers. */
  processMs: number;
}

/** What a run measured. */
export interface LoadReport {
  clients: number;
  groups: number;
  groupSize: number;
  workers: number;
  setupSeconds: number;
  sendSeconds: number;
  sent: number;
  acknowledged: number;
  expectedDeliveries: number;
  delivered: number;
  lost: number;
  duplicated: number;
  errors: number;
  deliveredPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  reconnects: number;
  /** Receipts the clients composed (delivered and read). */
  receipts: number;
  /** Receipts the clients received: the deliveries receipts cost the server. */
  receiptDeliveries: number;
  /** Groups whose members ended with different epoch authenticators. */
  groupsOutOfStep: number;
  firstErrors: string[];
  /** Client warnings about faults it recovered from (connection lost, receive retried). */
  recovered: number;
  cpu: LoadCpu;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** A message from a client worker (client_worker.ts). */
type WorkerMessage =
  | ({ type: "progress" } & ShardProgress)
  | { type: "ready"; setupMs: number }
  | { type: "report"; report: ShardReport }
  | { type: "closed" }
  | { type: "error"; message: string };

/** Run one load test against a server. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const progress = o.onProgress ?? (() => {});
  const prefix = o.prefix ?? `l${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
  const groupCount = Math.floor(o.clients / o.groupSize);
  const count = groupCount * o.groupSize;
  const total = count * o.messages;
  const w = Math.max(1, Math.min(o.workers ?? 1, groupCount));
  const t0 = performance.now();
  const workers: Worker[] = [];
  const state = Array.from({ length: w }, () => ({ registered: 0, sent: 0, delivered: 0 }));
  const sum = (k: keyof ShardProgress) => state.reduce((n, s) => n + s[k], 0);
  let failed: (e: Error) => void = () => {};
  const failure = new Promise<never>((_, reject) => failed = reject);
  failure.catch(() => {});
  const ready: Promise<number>[] = [];
  const reports: Promise<ShardReport>[] = [];
  const closed: Promise<void>[] = [];
  let shown = 0;
  let midwayDone = !o.midway;
  let midway: Promise<void> = Promise.resolve();
  let midwayError: unknown;
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    for (let i = 0; i < w; i++) {
      const worker = new Worker(new URL("./client_worker.ts", import.meta.url), {
        type: "module",
      });
      workers.push(worker);
      let onReady: (ms: number) => void = () => {};
      let onReport: (r: ShardReport) => void = () => {};
      let onClosed: () => void = () => {};
      ready.push(new Promise((r) => onReady = r));
      reports.push(new Promise((r) => onReport = r));
      closed.push(new Promise((r) => onClosed = r));
      worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
        const m = e.data;
        switch (m.type) {
          case "progress": {
            state[i] = { registered: m.registered, sent: m.sent, delivered: m.delivered };
            const registered = sum("registered");
            if (Math.floor(registered / 50) > Math.floor(shown / 50) || registered === count) {
              if (registered !== shown) {
                progress(`setup: ${registered}/${count} clients registered`);
              }
              shown = registered;
            }
            if (!midwayDone && sum("sent") >= total / 2) {
              midwayDone = true;
              midway = o.midway!().catch((err) => midwayError = err);
            }
            return;
          }
          case "ready":
            return onReady(m.setupMs);
          case "report":
            return onReport(m.report);
          case "closed":
            return onClosed();
          case "error":
            return failed(new Error(m.message));
        }
      };
      worker.onerror = (e) => {
        e.preventDefault();
        failed(new Error(e.message));
      };
      const options: ShardOptions = {
        server: o.server,
        caCertPem: o.caCertPem,
        authToken: o.authToken,
        groupIndices: Array.from({ length: groupCount }, (_, g) => g).filter((g) => g % w === i),
        totalGroups: groupCount,
        groupSize: o.groupSize,
        messages: o.messages,
        rate: o.rate,
        suite: o.suite,
        drainMs: o.drainMs,
        timeoutMs: o.timeoutMs,
        prefix,
        eager: o.midway !== undefined,
      };
      worker.postMessage({ type: "run", options });
    }
    await Promise.race([Promise.all(ready), failure]);
    const setupSeconds = (performance.now() - t0) / 1000;
    progress(
      `setup: ${groupCount} groups of ${o.groupSize} formed in ${setupSeconds.toFixed(1)} s` +
        ` (${w} client worker${w === 1 ? "" : "s"})`,
    );
    const server0 = (await o.serverProbe?.sample())?.cpuMs;
    const process0 = processCpuMs();
    const s0 = performance.now();
    ticker = setInterval(
      () => progress(`send: ${sum("sent")}/${total} sent, ${sum("delivered")} delivered`),
      1000,
    );
    for (const worker of workers) worker.postMessage({ type: "go" });
    const shards = await Promise.race([Promise.all(reports), failure]);
    const seconds = (performance.now() - s0) / 1000;
    const process1 = processCpuMs();
    const end = await o.serverProbe?.sample();
    const server1 = end?.cpuMs;
    // The clients close gracefully (an external server sees their connections end).
    for (const worker of workers) worker.postMessage({ type: "close" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(closed),
      failure,
      new Promise((r) => timer = setTimeout(r, 10_000)),
    ]);
    clearTimeout(timer);
    await midway;
    const add = (f: (r: ShardReport) => number) => shards.reduce((n, r) => n + f(r), 0);
    const latencies = new Float64Array(add((r) => r.latencies.length));
    let at = 0;
    for (const r of shards) {
      latencies.set(r.latencies, at);
      at += r.latencies.length;
    }
    latencies.sort();
    const errors = add((r) => r.errors) + (midwayError === undefined ? 0 : 1);
    const firstErrors = [
      ...(midwayError === undefined ? [] : [`midway: ${errorText(midwayError)}`]),
      ...shards.flatMap((r) => r.firstErrors),
    ].slice(0, 5);
    const expected = add((r) => r.expectedDeliveries);
    const delivered = add((r) => r.delivered);
    const elapsed = Math.max(...shards.map((r) => r.elapsedMs)) / 1000;
    return {
      clients: add((r) => r.clients),
      groups: add((r) => r.groups),
      groupSize: o.groupSize,
      workers: w,
      setupSeconds,
      sendSeconds: Math.max(...shards.map((r) => r.sendMs)) / 1000,
      sent: add((r) => r.sent),
      acknowledged: add((r) => r.acknowledged),
      expectedDeliveries: expected,
      delivered,
      lost: expected - delivered,
      duplicated: add((r) => r.duplicated),
      errors,
      deliveredPerSecond: latencies.length / Math.max(elapsed, 1e-9),
      p50Ms: percentile(latencies, 0.5),
      p95Ms: percentile(latencies, 0.95),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies[latencies.length - 1] ?? 0,
      reconnects: add((r) => r.reconnects),
      receipts: add((r) => r.receipts),
      receiptDeliveries: add((r) => r.receiptDeliveries),
      groupsOutOfStep: add((r) => r.groupsOutOfStep),
      firstErrors,
      recovered: add((r) => r.recovered),
      cpu: {
        seconds,
        clientsMs: add((r) => r.cpuMs),
        serverMs: server0 === undefined || server1 === undefined ? undefined : server1 - server0,
        serverSource: o.serverProbe?.source ?? "not measured",
        serverLagMs: end?.lagMs,
        processMs: process1 - process0,
      },
    };
  } finally {
    clearInterval(ticker);
    for (const worker of workers) worker.terminate();
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The report as a text table. */
export function formatReport(r: LoadReport): string {
  const rows: [string, string][] = [
    ["clients (QUIC connections)", String(r.clients)],
    ["groups × size", `${r.groups} × ${r.groupSize}`],
    ["setup (register, login, groups)", `${r.setupSeconds.toFixed(1)} s`],
    ["messages sent / acknowledged", `${r.sent} / ${r.acknowledged}`],
    ["deliveries expected / done", `${r.expectedDeliveries} / ${r.delivered}`],
    ["delivered messages/s", r.deliveredPerSecond.toFixed(0)],
    [
      "send→receive p50 / p95 / p99",
      `${r.p50Ms.toFixed(1)} / ${r.p95Ms.toFixed(1)} / ${r.p99Ms.toFixed(1)} ms`,
    ],
    ["max latency", `${r.maxMs.toFixed(1)} ms`],
    ["lost", String(r.lost)],
    ["duplicated", String(r.duplicated)],
    ["errors", String(r.errors)],
    ["reconnects", String(r.reconnects)],
    [
      "receipts sent / delivered",
      `${r.receipts} / ${r.receiptDeliveries} (${
        (r.receiptDeliveries / Math.max(r.delivered, 1)).toFixed(2)
      } receipt deliveries per message delivery)`,
    ],
    ["groups out of step", String(r.groupsOutOfStep)],
    ["client worker threads", String(r.workers)],
    [`CPU, clients (worker threads)`, cpuText(r.cpu.clientsMs, r)],
    ["CPU, server", cpuText(r.cpu.serverMs, r)],
    ...(r.cpu.serverLagMs
      ? [[
        "server event-loop lag p99 / max",
        `${r.cpu.serverLagMs.p99.toFixed(0)} / ${r.cpu.serverLagMs.max.toFixed(0)} ms`,
      ] as [string, string]]
      : []),
    ["CPU, whole load process", cpuText(r.cpu.processMs, r)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `| ${k.padEnd(w)} | ${v} |`);
  if (r.firstErrors.length) lines.push(...r.firstErrors.map((e) => `  error: ${e}`));
  if (r.recovered) {
    lines.push(
      `  recovered: ${r.recovered} client warnings (connection lost, receive retried, kept queued)`,
    );
  }
  lines.push(
    `  CPU from the first send to the end of the drain (${r.cpu.seconds.toFixed(1)} s); ` +
      `server: ${r.cpu.serverSource}`,
  );
  return lines.join("\n");
}

/** `ms` of CPU as seconds, cores busy over the window, and ms per delivery. */
function cpuText(ms: number | undefined, r: LoadReport): string {
  if (ms === undefined) return "not measured";
  const perDelivery = r.delivered ? ` · ${(ms / r.delivered).toFixed(3)} ms per delivery` : "";
  return `${(ms / 1000).toFixed(1)} s · ${(ms / 1000 / Math.max(r.cpu.seconds, 1e-9)).toFixed(2)}` +
    ` cores${perDelivery}`;
}
