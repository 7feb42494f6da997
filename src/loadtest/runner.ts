/**
 * The load runner: N real clients ({@link QpqClient}: QUIC, OPAQUE, MLS, the same code a
 * user runs) over in-memory local state, in groups of a given size, send M messages each.
 * Every delivery is matched by message id (the id `send` returns is the id the receiver's
 * "message" event carries), so the report counts lost and duplicated messages exactly,
 * beside throughput and send→receive latency.
 *
 * ```
 * setup: account (registered and logged in with cheap OPAQUE stretching: _accounts.ts)
 *        ─► client over MemoryLocalState resumes that session, uploads KeyPackages,
 *        subscribes (8 at a time)
 *        ─► per group: createGroup + invite (one commit) ─► members sync (join from Welcome)
 * send:  each client paces its M messages ─► client.send (flush outbox, sync, encrypt,
 *        store, enqueue); a message the server did not take stays in the client's outbox
 * drain: flush outboxes ─► acknowledged = outgoing messages stored as "sent"
 *        ─► wait until each reached every other member (pushed and decrypted), or until
 *        none arrived for drainMs (what is missing then is lost)
 * ```
 *
 * Latency is from the moment `send` is called to the receiver's "message" event: it
 * includes everything the client does before the message goes out (its sync before
 * sending, encryption, the local store), the server, push and the receiver's decryption.
 *
 * @module
 */
import type { MlsSuiteName } from "../mls/mod.ts";
import { QpqClient } from "../client/client.ts";
import type { ClientEvent } from "../client/events.ts";
import { connectServer } from "../client/connection.ts";
import { IdentityKeyPair } from "../crypto/mod.ts";
import { MemoryLocalState } from "../store/client/mod.ts";
import { toHex, zeroize } from "../bytes.ts";
import { createAccount } from "./_accounts.ts";

/** Options of {@link runLoad}. */
export interface LoadOptions {
  server: string;
  caCertPem: string | undefined;
  authToken: string;
  /** Clients (each a {@link QpqClient} with one QUIC connection). */
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
  /** Each client's request timeout (ms; default: the client's own). */
  timeoutMs?: number;
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
  /** Client warnings about faults it recovered from (see {@link runLoad}). */
  recovered: number;
}

/**
 * Warnings of the client that report a fault it recovers from by itself: a lost connection,
 * a receive interrupted by it (the messages stay on the server and are fetched again), a
 * message kept queued. The lost, duplicated and out-of-step counts check that it did
 * recover; these are counted apart. Every other warning counts as an error. (The client's
 * warnings carry text only, so they are told apart by it.)
 */
const RECOVERED_WARNINGS = [
  /^Connection to the server lost/,
  /^Receive failed: /,
  /^Message kept in the queue/,
];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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

/** One load client: the real client and what the runner counts of it. */
interface Member {
  username: string;
  client: QpqClient;
  /** Successful connects (the first one is not a reconnect). */
  connects: number;
}

/** Run one load test against a server. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const progress = o.onProgress ?? (() => {});
  const prefix = o.prefix ?? `l${toHex(crypto.getRandomValues(new Uint8Array(3)))}`;
  const groupCount = Math.floor(o.clients / o.groupSize);
  /** Message id → when `send` was called for it. */
  const sendStarts = new Map<string, number>();
  /** recipient|message id → how many "message" events showed it. */
  const seen = new Map<string, number>();
  /** recipient|message id → when it was first shown. */
  const firstSeen = new Map<string, number>();
  /** Message ids the server took (known once sending is over). */
  let acked: Set<string> | undefined;
  /** First deliveries of acknowledged messages. */
  let deliveredAcked = 0;
  let errors = 0;
  let recovered = 0;
  const firstErrors: string[] = [];
  const recordError = (what: string, e: unknown) => {
    errors++;
    if (firstErrors.length < 5) {
      firstErrors.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const onEvent = (recipient: string, e: ClientEvent) => {
    const at = performance.now();
    switch (e.kind) {
      case "message": {
        const key = `${recipient}|${e.message.messageId}`;
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        if (n === 1) {
          firstSeen.set(key, at);
          if (acked?.has(e.message.messageId)) deliveredAcked++;
        }
        return;
      }
      case "unreadable":
        return recordError(`${recipient} unreadable`, e.reason);
      case "broken":
        return recordError(`${recipient} broken`, e.reason);
      case "removed":
        return recordError(`${recipient} removed`, `by ${e.by}`);
      case "warning":
        if (RECOVERED_WARNINGS.some((r) => r.test(e.text))) recovered++;
        else recordError(recipient, e.text);
        return;
    }
  };

  const t0 = performance.now();
  const timeoutMs = o.timeoutMs;
  const members: Member[] = [];
  /** One real client over in-memory state, logged in to a new account. */
  const makeMember = async (username: string): Promise<Member> => {
    const password = toHex(crypto.getRandomValues(new Uint8Array(12)));
    const identity = IdentityKeyPair.generate();
    const seed = identity.exportPrivateKey();
    let store: MemoryLocalState;
    try {
      const session = await createAccount(username, password, {
        server: o.server,
        caCertPem: o.caCertPem,
        authToken: o.authToken,
        identityPublic: identity.publicKey,
        timeoutMs,
      });
      store = new MemoryLocalState({
        username,
        server: o.server,
        identitySeed: seed,
        identityPublic: identity.publicKey,
        sessionToken: session.token,
        sessionExpiresAt: session.expiresAtMs,
      });
      zeroize(session.token);
    } finally {
      zeroize(seed);
      identity.destroy();
    }
    const m: Member = { username, client: undefined!, connects: 0 };
    m.client = QpqClient.create({
      store,
      password,
      caCertPem: o.caCertPem,
      server: o.server,
      timeoutMs,
      acceptFrom: "anyone", // load accounts are strangers to each other: no requests
      keepSent: { count: 0, bytes: 0 }, // no server restore in a load run: keep nothing sent
      onEvent: (e) => onEvent(username, e),
      connect: async (options) => {
        const conn = await connectServer(options);
        m.connects++;
        return conn;
      },
    });
    return m;
  };
  const conversationRef = (g: number) => `#${prefix}-g${letterTag(g)}`;
  try {
    const count = groupCount * o.groupSize;
    let done = 0;
    await pool(Array.from({ length: count }, (_, i) => i), 8, async (i) => {
      const m = await makeMember(`${prefix}-${letterTag(i)}`);
      members[i] = m;
      await m.client.ensureSession(); // resumes the session made above
      await m.client.refillKeyPackages(true);
      await m.client.subscribe();
      if (++done % 50 === 0 || done === count) {
        progress(`setup: ${done}/${count} clients registered`);
      }
    });
    const groups: { ref: string; members: Member[] }[] = [];
    await pool(Array.from({ length: groupCount }, (_, g) => g), 4, async (g) => {
      const ms = members.slice(g * o.groupSize, (g + 1) * o.groupSize);
      await ms[0]!.client.createGroup(`${prefix}-g${letterTag(g)}`, o.suite);
      await ms[0]!.client.invite(conversationRef(g), ms.slice(1).map((m) => m.username));
      groups.push({ ref: conversationRef(g), members: ms });
    });
    // Joining: the Welcome is usually pushed and applied already; sync fetches what was not.
    await pool(groups.flatMap((g) => g.members.slice(1)), 8, (m) => m.client.sync().then(() => {}));
    const joinDeadline = Date.now() + 60_000;
    const inGroup = (m: Member, ref: string) => {
      try {
        return m.client.members(ref).length === o.groupSize;
      } catch {
        return false;
      }
    };
    while (groups.some((g) => g.members.some((m) => !inGroup(m, g.ref)))) {
      if (Date.now() > joinDeadline) {
        throw new Error("Members did not join their group from its Welcome within 60 s");
      }
      await sleep(20);
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
      () => progress(`send: ${sent}/${total} sent, ${firstSeen.size} delivered`),
      1000,
    );
    const s0 = performance.now();
    try {
      // Start times spread evenly over one interval (members of a group interval/groupSize
      // apart, the groups in between), so the offered rate is smooth, not bursts.
      const clientCount = groups.length * o.groupSize;
      await Promise.all(groups.flatMap((g, gi) =>
        g.members.map(async (m, ci) => {
          if (interval) await sleep((interval * (ci * groups.length + gi)) / clientCount);
          for (let k = 0; k < o.messages; k++) {
            const start = performance.now();
            try {
              const message = await m.client.send(g.ref, `m${k} from ${m.username}`);
              sendStarts.set(message.messageId, start);
            } catch (e) {
              recordError("send", e);
            }
            sent++;
            if (!midwayDone && sent >= total / 2) {
              midwayDone = true;
              await o.midway!().catch((e) => recordError("midway", e));
            }
            if (interval) {
              const wait = interval - (performance.now() - start);
              if (wait > 0) await sleep(wait);
            }
          }
        })
      ));
      const sendSeconds = (performance.now() - s0) / 1000;
      const deadline = Date.now() + o.drainMs;
      // A message the server did not take (it was down) waits in its client's outbox.
      await Promise.all(members.map(async (m) => {
        while (m.client.pendingCount() > 0 && Date.now() < deadline) {
          await m.client.flushOutbox().catch(() => {});
          if (m.client.pendingCount() > 0) await sleep(100);
        }
      }));
      // Acknowledged: stored by the server, which the client records as "sent".
      const ids = new Set<string>();
      for (const g of groups) {
        for (const m of g.members) {
          for (const h of m.client.history(g.ref, o.messages * o.groupSize * 2)) {
            if (h.direction === "out" && h.status === "sent") ids.add(h.messageId);
          }
        }
      }
      acked = ids;
      for (const key of firstSeen.keys()) {
        if (ids.has(key.slice(key.indexOf("|") + 1))) deliveredAcked++;
      }
      const expected = ids.size * (o.groupSize - 1);
      // Wait while deliveries still arrive: lost means none came for drainMs.
      let last = deliveredAcked;
      let lastChange = Date.now();
      const cap = Date.now() + 10 * o.drainMs;
      while (deliveredAcked < expected && Date.now() - lastChange < o.drainMs && Date.now() < cap) {
        await sleep(50);
        if (deliveredAcked !== last) {
          last = deliveredAcked;
          lastChange = Date.now();
        }
      }
      const elapsed = (performance.now() - s0) / 1000;
      const delivered = deliveredAcked;
      let duplicated = 0;
      for (const n of seen.values()) if (n > 1) duplicated += n - 1;
      let outOfStep = 0;
      for (const g of groups) {
        const auths = new Set(g.members.map((m) => {
          try {
            return m.client.epochInfo(g.ref).authenticator;
          } catch {
            return undefined;
          }
        }));
        if (auths.size !== 1 || auths.has(undefined)) outOfStep++;
      }
      const latencies: number[] = [];
      for (const [key, at] of firstSeen) {
        const start = sendStarts.get(key.slice(key.indexOf("|") + 1));
        if (start !== undefined) latencies.push(at - start);
      }
      latencies.sort((a, b) => a - b);
      return {
        clients: members.length,
        groups: groups.length,
        groupSize: o.groupSize,
        setupSeconds,
        sendSeconds,
        sent,
        acknowledged: ids.size,
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
        reconnects: members.reduce((n, m) => n + Math.max(0, m.connects - 1), 0),
        groupsOutOfStep: outOfStep,
        firstErrors,
        recovered,
      };
    } finally {
      clearInterval(ticker);
    }
  } finally {
    await Promise.all(members.map((m) => m?.client.close().catch(() => {})));
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
  if (r.recovered) {
    lines.push(
      `  recovered: ${r.recovered} client warnings (connection lost, receive retried, kept queued)`,
    );
  }
  return lines.join("\n");
}

/**
 * `n` in letters (`16` → `bg`) for user and group names: numbered names must not look alike
 * under the username skeleton (`6` and `8` both read as `b`), or registrations are refused.
 */
function letterTag(n: number): string {
  return [...String(n)].map((d) => "abcdefghjk"[Number(d)]).join("");
}
