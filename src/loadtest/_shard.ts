/**
 * One shard of a load run: the real clients of some whole groups, on one thread. The
 * coordinator ({@link runLoad} in runner.ts) gives each worker thread one shard; since a
 * shard owns whole groups, every message it sends is delivered only to its own clients,
 * so it matches sends and deliveries by message id by itself and its lost and duplicated
 * counts add up exactly across shards.
 *
 * ```
 * setup: account (registered and logged in with cheap OPAQUE stretching: _accounts.ts)
 *        ─► client over MemoryLocalState resumes that session, uploads KeyPackages,
 *        subscribes (8 at a time)
 *        ─► per group: createGroup + invite (one commit) ─► members sync (join from Welcome)
 *        ─► ready ─► (every shard ready) ─► go
 * send:  each client paces its M messages ─► client.send (flush outbox, sync, encrypt,
 *        store, enqueue); a message the server did not take stays in the client's outbox
 * drain: flush outboxes ─► acknowledged = outgoing messages stored as "sent"
 *        ─► wait until each reached every other member (pushed and decrypted), or until
 *        none arrived for drainMs (what is missing then is lost)
 *        ─► report ─► (the coordinator took its CPU samples) ─► close the clients
 * ```
 *
 * Latency is from the moment `send` is called to the receiver's "message" event (both on
 * this thread's clock): it includes everything the client does before the message goes
 * out (its sync before sending, encryption, the local store), the server, push and the
 * receiver's decryption.
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
import { threadCpuMs } from "./_cpu.ts";

/** What a shard runs: everything is plain data (it crosses to a worker thread). */
export interface ShardOptions {
  server: string;
  caCertPem: string | undefined;
  authToken: string;
  /** The run's global group indices this shard owns (names and start offsets use them). */
  groupIndices: number[];
  /** Groups in the whole run (start times are spread over all of them). */
  totalGroups: number;
  groupSize: number;
  messages: number;
  /** Total send rate of the whole run in messages/s (0 = closed loop). */
  rate: number;
  suite: MlsSuiteName;
  drainMs: number;
  timeoutMs?: number | undefined;
  prefix: string;
  /** Report progress after every send (the coordinator waits for the midway point). */
  eager?: boolean;
}

/** Progress a shard reports while it runs (cumulative counts). */
export interface ShardProgress {
  registered: number;
  sent: number;
  delivered: number;
}

/** How a shard talks to its coordinator. */
export interface ShardHooks {
  /** Called often with the counts so far (the caller throttles what it forwards). */
  progress(p: ShardProgress): void;
  /** Setup is done; resolves when every shard is ready and sending starts. */
  ready(setupMs: number): Promise<void>;
  /**
   * The shard's report, while its clients are still open; resolves when they may close (the
   * coordinator takes its CPU samples first, so closing is not counted).
   */
  finished(report: ShardReport): Promise<void>;
}

/** What one shard measured. */
export interface ShardReport {
  clients: number;
  groups: number;
  /** From go to the end of the send loop / of the drain (ms, this thread's clock). */
  sendMs: number;
  elapsedMs: number;
  sent: number;
  acknowledged: number;
  expectedDeliveries: number;
  delivered: number;
  duplicated: number;
  errors: number;
  firstErrors: string[];
  recovered: number;
  reconnects: number;
  /** Receipts (delivered and read) the clients composed from go to the end of the drain. */
  receipts: number;
  /** Receipts the clients received meanwhile (deliveries of receipts). */
  receiptDeliveries: number;
  groupsOutOfStep: number;
  /** Send→receive latency of every first delivery (ms, unsorted). */
  latencies: Float64Array;
  /** CPU time of this thread from go to the end of the drain (ms). */
  cpuMs: number;
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

/**
 * `n` in letters (`16` → `bg`) for user and group names: numbered names must not look alike
 * under the username skeleton (`6` and `8` both read as `b`), or registrations are refused.
 */
export function letterTag(n: number): string {
  return [...String(n)].map((d) => "abcdefghjk"[Number(d)]).join("");
}

/** Run one shard: set up its groups, wait for go, send, drain, count, report, close. */
export async function runShard(o: ShardOptions, hooks: ShardHooks): Promise<void> {
  const { prefix, groupSize } = o;
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
  let registered = 0;
  let sent = 0;
  const firstErrors: string[] = [];
  const recordError = (what: string, e: unknown) => {
    errors++;
    if (firstErrors.length < 5) {
      firstErrors.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const report = () => hooks.progress({ registered, sent, delivered: firstSeen.size });
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
  const groupName = (g: number) => `${prefix}-g${letterTag(g)}`;
  try {
    // Client c of the run is member c % groupSize of group floor(c / groupSize).
    const indices = o.groupIndices.flatMap((g) =>
      Array.from({ length: groupSize }, (_, k) => g * groupSize + k)
    );
    await pool(indices, 8, async (c, i) => {
      const m = await makeMember(`${prefix}-${letterTag(c)}`);
      members[i] = m;
      await m.client.ensureSession(); // resumes the session made above
      await m.client.refillKeyPackages(true);
      await m.client.subscribe();
      registered++;
      report();
    });
    /** gi: the group's global index. */
    const groups: { ref: string; gi: number; members: Member[] }[] = [];
    await pool(o.groupIndices, 4, async (gi, j) => {
      const ms = members.slice(j * groupSize, (j + 1) * groupSize);
      await ms[0]!.client.createGroup(groupName(gi), o.suite);
      await ms[0]!.client.invite(`#${groupName(gi)}`, ms.slice(1).map((m) => m.username));
      groups.push({ ref: `#${groupName(gi)}`, gi, members: ms });
    });
    // Joining: the Welcome is usually pushed and applied already; sync fetches what was not.
    await pool(groups.flatMap((g) => g.members.slice(1)), 8, (m) => m.client.sync().then(() => {}));
    const joinDeadline = Date.now() + 60_000;
    const inGroup = (m: Member, ref: string) => {
      try {
        return m.client.members(ref).length === groupSize;
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
    await hooks.ready(performance.now() - t0);

    const cpu0 = threadCpuMs();
    const receipts0 = members.reduce((n, m) => n + m.client.receiptsSent, 0);
    const receiptsIn0 = members.reduce((n, m) => n + m.client.receiptsReceived, 0);
    const clientCount = o.totalGroups * groupSize;
    const interval = o.rate > 0 ? clientCount / o.rate * 1000 : 0;
    const ticker = setInterval(report, 250);
    const s0 = performance.now();
    try {
      // Start times spread evenly over one interval (members of a group interval/groupSize
      // apart, the groups in between, over the whole run), so the offered rate is smooth,
      // not bursts.
      await Promise.all(groups.flatMap((g) =>
        g.members.map(async (m, ci) => {
          if (interval) await sleep((interval * (ci * o.totalGroups + g.gi)) / clientCount);
          for (let k = 0; k < o.messages; k++) {
            const start = performance.now();
            try {
              const message = await m.client.send(g.ref, `m${k} from ${m.username}`);
              sendStarts.set(message.messageId, start);
            } catch (e) {
              recordError("send", e);
            }
            sent++;
            if (o.eager) report();
            if (interval) {
              const wait = interval - (performance.now() - start);
              if (wait > 0) await sleep(wait);
            }
          }
        })
      ));
      const sendMs = performance.now() - s0;
      report();
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
          for (const h of m.client.history(g.ref, o.messages * groupSize * 2)) {
            if (h.direction === "out" && h.status === "sent") ids.add(h.messageId);
          }
        }
      }
      acked = ids;
      for (const key of firstSeen.keys()) {
        if (ids.has(key.slice(key.indexOf("|") + 1))) deliveredAcked++;
      }
      const expected = ids.size * (groupSize - 1);
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
      const elapsedMs = performance.now() - s0;
      const cpu1 = threadCpuMs();
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
      await hooks.finished({
        clients: members.length,
        groups: groups.length,
        sendMs,
        elapsedMs,
        sent,
        acknowledged: ids.size,
        expectedDeliveries: expected,
        delivered: deliveredAcked,
        duplicated,
        errors,
        firstErrors,
        recovered,
        reconnects: members.reduce((n, m) => n + Math.max(0, m.connects - 1), 0),
        receipts: members.reduce((n, m) => n + m.client.receiptsSent, 0) - receipts0,
        receiptDeliveries: members.reduce((n, m) => n + m.client.receiptsReceived, 0) -
          receiptsIn0,
        groupsOutOfStep: outOfStep,
        latencies: Float64Array.from(latencies),
        cpuMs: cpu1 - cpu0,
      });
    } finally {
      clearInterval(ticker);
    }
  } finally {
    await Promise.all(members.map((m) => m?.client.close().catch(() => {})));
  }
}
