/**
 * The load runner: N simulated clients (real QUIC, OPAQUE, MLS) in groups of a given size
 * send M messages each; every delivery is checked by message id, so the report counts
 * lost and duplicated messages exactly, beside throughput and send→receive latency.
 *
 * ```
 * setup: register+login+KeyPackage (bounded concurrency) ─► groups formed by one commit each
 * send:  each client paces its M messages ─► enqueue (resent on failure, same id)
 * drain: wait until every acknowledged message reached every other member, or time out
 * ```
 *
 * @module
 */
import type { DeliveredMessage } from "../wire/mod.ts";
import type { MlsSuiteName } from "../mls/mod.ts";
import { toHex } from "../bytes.ts";
import { SimClient } from "./sim_client.ts";

/** Options of {@link runLoad}. */
export interface LoadOptions {
  server: string;
  caCertPem: string | undefined;
  authToken: string;
  /** Simulated clients (each one QUIC connection). */
  clients: number;
  /** Members per group (2 = DM-shaped). */
  groupSize: number;
  /** Messages each client sends. */
  messages: number;
  /** Total send rate in messages/s (0 = as fast as acknowledgements allow). */
  rate: number;
  /** Which receivers decrypt: none, one per group, or all. */
  decrypt: "none" | "sample" | "all";
  suite: MlsSuiteName;
  /** How long to wait for the last deliveries (ms). */
  drainMs: number;
  /** Prefix for user and group names (unique per run). */
  prefix?: string;
  /** Progress lines. */
  onProgress?: (line: string) => void;
  /** Called once when half of the messages were sent (fault injection). */
  midway?: () => Promise<void>;
}

/** What a run measured. */
export interface LoadReport {
  clients: number;
  groups: number;
  groupSize: number;
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
  /** Groups whose members ended with different epoch authenticators. */
  groupsOutOfStep: number;
  firstErrors: string[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function pool<T>(
  items: T[],
  limit: number,
  fn: (t: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

/** Run one load test against a server. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const progress = o.onProgress ?? (() => {});
  const prefix = o.prefix ?? `l${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
  const groupCount = Math.floor(o.clients / o.groupSize);
  const sendTimes = new Map<string, number>();
  const acked = new Set<string>();
  const seen = new Map<string, number>(); // recipient|id -> count
  const latencies: number[] = [];
  let errors = 0;
  const firstErrors: string[] = [];
  const recordError = (what: string, e: unknown) => {
    errors++;
    if (firstErrors.length < 5) {
      firstErrors.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const observer = {
    received(recipient: string, m: DeliveredMessage, at: number) {
      if (m.messageKind !== "application") return;
      const id = toHex(m.messageId);
      const key = `${recipient}|${id}`;
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      const t0 = sendTimes.get(id);
      if (n === 1 && t0 !== undefined) latencies.push(at - t0);
    },
    error: recordError,
  };

  const t0 = performance.now();
  const clients: SimClient[] = [];
  for (let i = 0; i < groupCount * o.groupSize; i++) {
    const g = Math.floor(i / o.groupSize);
    clients.push(
      new SimClient({
        server: o.server,
        caCertPem: o.caCertPem,
        username: `${prefix}-${i}`,
        authToken: o.authToken,
        observer,
        decrypt: o.decrypt === "all" || (o.decrypt === "sample" && i % o.groupSize === 1 && g >= 0),
        suite: o.suite,
      }),
    );
  }
  let done = 0;
  await pool(clients, 8, async (c) => {
    await c.setup(1);
    if (++done % 50 === 0 || done === clients.length) {
      progress(`setup: ${done}/${clients.length} clients registered`);
    }
  });
  const groups: { hex: string; members: SimClient[] }[] = [];
  await pool(Array.from({ length: groupCount }, (_, g) => g), 4, async (g) => {
    const members = clients.slice(g * o.groupSize, (g + 1) * o.groupSize);
    const hex = await members[0]!.createGroupWith(
      `${prefix}-g${g}`,
      members.slice(1).map((m) => m.username),
    );
    groups.push({ hex, members });
  });
  const joinDeadline = Date.now() + 60_000;
  while (groups.some((g) => g.members.some((m) => !m.inGroup(g.hex)))) {
    if (Date.now() > joinDeadline) {
      throw new Error("Members did not receive their Welcome within 60 s");
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const setupSeconds = (performance.now() - t0) / 1000;
  progress(
    `setup: ${groups.length} groups of ${o.groupSize} formed in ${setupSeconds.toFixed(1)} s`,
  );

  const total = groups.length * o.groupSize * o.messages;
  let sent = 0;
  let midwayDone = !o.midway;
  const interval = o.rate > 0 ? (groups.length * o.groupSize) / o.rate * 1000 : 0;
  const ticker = setInterval(
    () => progress(`send: ${sent}/${total} sent, ${latencies.length} delivered`),
    1000,
  );
  const s0 = performance.now();
  try {
    await Promise.all(groups.flatMap((g) =>
      g.members.map(async (c, ci) => {
        if (interval) await new Promise((r) => setTimeout(r, (interval * ci) / o.groupSize));
        for (let k = 0; k < o.messages; k++) {
          const start = performance.now();
          try {
            const id = await c.send(g.hex, `m${k} from ${c.username}`, (idHex) =>
              sendTimes.set(idHex, performance.now()));
            acked.add(id);
          } catch (e) {
            recordError("send", e);
          }
          sent++;
          if (!midwayDone && sent >= total / 2) {
            midwayDone = true;
            await o.midway!().catch((e) =>
              recordError("midway", e)
            );
          }
          if (interval) {
            const wait = interval - (performance.now() - start);
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          }
        }
      })
    ));
    const sendSeconds = (performance.now() - s0) / 1000;
    const expected = acked.size * (o.groupSize - 1);
    const deadline = Date.now() + o.drainMs;
    const deliveredAcked = () => {
      let n = 0;
      for (const [key] of seen) if (acked.has(key.slice(key.indexOf("|") + 1))) n++;
      return n;
    };
    while (deliveredAcked() < expected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(clients.map((c) => c.drain()));
    const elapsed = (performance.now() - s0) / 1000;
    const delivered = deliveredAcked();
    let duplicated = 0;
    for (const n of seen.values()) if (n > 1) duplicated += n - 1;
    let outOfStep = 0;
    for (const g of groups) {
      const auths = new Set(g.members.map((m) => m.authenticator(g.hex)));
      if (auths.size !== 1) outOfStep++;
    }
    latencies.sort((a, b) => a - b);
    return {
      clients: clients.length,
      groups: groups.length,
      groupSize: o.groupSize,
      setupSeconds,
      sendSeconds,
      sent,
      acknowledged: acked.size,
      expectedDeliveries: expected,
      delivered,
      lost: expected - delivered,
      duplicated,
      errors,
      deliveredPerSecond: latencies.length / Math.max(elapsed, 1e-9),
      p50Ms: percentile(latencies, 0.5),
      p95Ms: percentile(latencies, 0.95),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies[latencies.length - 1] ?? 0,
      reconnects: clients.reduce((n, c) => n + c.reconnects, 0),
      groupsOutOfStep: outOfStep,
      firstErrors,
    };
  } finally {
    clearInterval(ticker);
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  }
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
    ["groups out of step", String(r.groupsOutOfStep)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `| ${k.padEnd(w)} | ${v} |`);
  if (r.firstErrors.length) lines.push(...r.firstErrors.map((e) => `  error: ${e}`));
  return lines.join("\n");
}
