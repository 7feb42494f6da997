/**
 * The delivery setup shared by bench/server_bench.ts and scripts/profile_rpc.ts: a real
 * server (SQLite file, with or without fsync, or the in-memory store) with alice (sender),
 * bob (subscribed to pushes) and carol (not subscribed), logged in on their own connections.
 *
 * @module
 */
import type { Push } from "../src/wire/mod.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../src/auth/mod.ts";
import { IdentityKeyPair } from "../src/crypto/identity.ts";
import { randomBytes } from "../src/bytes.ts";
import { startTestServer, type TestServer } from "../tests/_support/server.ts";

/** Payload of each delivered message. */
export const PAYLOAD_BYTES = 100;

const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };
const benchDir = Deno.env.get("QPQ_BENCH_DIR");
const payload = randomBytes(PAYLOAD_BYTES);

/** A new user, registered and logged in on its own connection. */
export async function loggedIn(
  qpq: TestServer,
  username: string,
  onPush?: (p: Push) => void,
): Promise<ServerConnection> {
  const conn = await connectServer({ server: qpq.addr, caCertPem: qpq.certPem, onPush });
  const pw = `bench ${username}`;
  const rs = await clientRegistrationStart(pw);
  const r1 = await conn.call(
    { kind: "registerStart", username, request: rs.request, authToken: "devtoken" },
    "registerStarted",
  );
  const rf = await clientRegistrationFinish(rs.state, pw, r1.data, { keyStretching: FAST });
  await conn.call({
    kind: "registerFinish",
    username,
    record: rf.record,
    authToken: "devtoken",
    identityKey: IdentityKeyPair.generate().publicKey,
  }, "ok");
  const ls = await clientLoginStart(pw);
  const l1 = await conn.call({ kind: "loginStart", username, request: ls.request }, "loginStarted");
  const lf = await clientLoginFinish(ls.state, pw, l1.response, { keyStretching: FAST });
  if (lf.kind !== "ok") throw new Error("bench login failed");
  await conn.call(
    { kind: "loginFinish", username, finish: lf.finishRequest, loginId: l1.loginId },
    "session",
  );
  return conn;
}

/**
 * A server with alice (sender), bob (subscribed to pushes) and carol (not subscribed),
 * and DM channels alice-bob and alice-carol.
 */
export async function world(storeBackend: "sql" | "memory", fsync = true) {
  let dataDir: string | undefined;
  if (benchDir && storeBackend === "sql") {
    dataDir = `${benchDir}/qpq-bench-${Date.now()}`;
    await Deno.mkdir(dataDir, { recursive: true });
  }
  const qpq = await startTestServer({
    ...(dataDir ? { dataDir } : {}),
    file: { store_backend: storeBackend, ...(fsync ? {} : { fsync: false }) },
  });
  // pushed messages not yet claimed, and waiters for the next one
  const pushed: { seq: number }[] = [];
  const waiters: ((m: { seq: number }) => void)[] = [];
  // told the last seq of each push (the real client acks once per applied push)
  let onBatch: ((lastSeq: number) => void) | undefined;
  const onPush = (p: Push) => {
    for (const m of p.messages) {
      const w = waiters.shift();
      if (w) w(m);
      else pushed.push(m);
    }
    const last = p.messages.at(-1);
    if (last !== undefined) onBatch?.(last.seq);
  };
  const alice = await loggedIn(qpq, "alice");
  const bob = await loggedIn(qpq, "bob", onPush);
  const carol = await loggedIn(qpq, "carol");
  const dmBob = (await alice.call({ kind: "createDm", username: "bob" }, "channel")).channelId;
  const dmCarol = (await alice.call({ kind: "createDm", username: "carol" }, "channel")).channelId;
  await bob.call({ kind: "subscribe", afterSeq: 0 }, "ok");
  const enqueue = (channelId: Uint8Array) =>
    alice.call({
      kind: "enqueue",
      channelId,
      messageId: randomBytes(16),
      payload,
      messageKind: "application",
      epoch: 0,
      recipients: [],
    }, "enqueued");
  const nextPush = (): Promise<{ seq: number }> => {
    const m = pushed.shift();
    return m ? Promise.resolve(m) : new Promise((r) => waiters.push(r));
  };
  return {
    qpq,
    alice,
    carol,
    dmCarol,
    enqueue,
    /** One delivery: A enqueues, B gets the push, B acks. */
    async deliver() {
      const [, m] = await Promise.all([enqueue(dmBob), nextPush()]);
      await bob.call({ kind: "ack", uptoSeq: m.seq }, "ok");
    },
    /**
     * `k` deliveries in flight: A sends `k` enqueues at once, B acks each push it gets
     * (up to its last seq, as the client does); done when every message was pushed and
     * every enqueue and ack answered.
     */
    async deliverMany(k: number) {
      const acks: Promise<unknown>[] = [];
      onBatch = (seq) => acks.push(bob.call({ kind: "ack", uptoSeq: seq }, "ok"));
      const sends = Array.from({ length: k }, () => enqueue(dmBob));
      for (let i = 0; i < k; i++) await nextPush();
      onBatch = undefined;
      await Promise.all([...sends, ...acks]);
    },
    close() {
      for (const c of [alice, bob, carol]) void c.close();
      void qpq.close();
    },
  };
}

/** How a recipient acks what is pushed to it. */
export type AckMode =
  /** one ack per push, up to its last seq (as the client does) */
  | "per-push"
  /** at most one ack in flight, up to the last seq pushed when it leaves (batched) */
  | "coalesced";

/**
 * A server with `pairs` sender/recipient pairs, each on its own connections with a DM
 * channel between them, the recipients subscribed: many clients at once, as a server
 * serves them.
 */
export async function crowd(storeBackend: "sql" | "memory", pairs: number, fsync = true) {
  let dataDir: string | undefined;
  if (benchDir && storeBackend === "sql") {
    dataDir = `${benchDir}/qpq-bench-crowd-${Date.now()}`;
    await Deno.mkdir(dataDir, { recursive: true });
  }
  const qpq = await startTestServer({
    ...(dataDir ? { dataDir } : {}),
    file: { store_backend: storeBackend, ...(fsync ? {} : { fsync: false }) },
  });
  interface Link {
    sender: ServerConnection;
    recipient: ServerConnection;
    dm: Uint8Array;
    setOnPush(f: (p: Push) => void): void;
  }
  const links: Link[] = [];
  for (let i = 0; i < pairs; i++) {
    let onPush: (p: Push) => void = () => {};
    const sender = await loggedIn(qpq, `sender${i}`);
    const recipient = await loggedIn(qpq, `recipient${i}`, (p) => onPush(p));
    const dm = (await sender.call({ kind: "createDm", username: `recipient${i}` }, "channel"))
      .channelId;
    await recipient.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    links.push({ sender, recipient, dm, setOnPush: (f: (p: Push) => void) => onPush = f });
  }
  /** `k` deliveries in flight on one pair; done when all were pushed and all acks answered. */
  const run = (link: Link, k: number, mode: AckMode): Promise<void> => {
    const { promise: allPushed, resolve } = Promise.withResolvers<void>();
    let got = 0;
    let lastSeq = 0;
    let acking: Promise<void> | undefined;
    const acks: Promise<unknown>[] = [];
    const ack = (): Promise<void> =>
      link.recipient.call({ kind: "ack", uptoSeq: lastSeq }, "ok").then(() => {});
    link.setOnPush((p) => {
      const last = p.messages.at(-1);
      if (last === undefined) return;
      lastSeq = Math.max(lastSeq, last.seq);
      got += p.messages.length;
      if (mode === "per-push") {
        acks.push(ack());
      } else if (acking === undefined) {
        // one ack in flight; what arrives meanwhile is acked by the next one, up to its seq
        const loop = async () => {
          let acked = 0;
          while (acked < lastSeq) {
            const upto = lastSeq;
            await link.recipient.call({ kind: "ack", uptoSeq: upto }, "ok");
            acked = upto;
          }
          acking = undefined;
        };
        acking = loop();
        acks.push(acking);
      }
      if (got >= k) resolve();
    });
    const sends = Array.from({ length: k }, () =>
      link.sender.call({
        kind: "enqueue",
        channelId: link.dm,
        messageId: randomBytes(16),
        payload,
        messageKind: "application",
        epoch: 0,
        recipients: [],
      }, "enqueued"));
    return allPushed.then(() => Promise.all([...sends, ...acks])).then(() => {});
  };
  return {
    qpq,
    pairs,
    /** `perPair` deliveries in flight on every pair at once (`pairs × perPair` in all). */
    async deliverMany(perPair: number, mode: AckMode = "per-push") {
      await Promise.all(links.map((l) => run(l, perPair, mode)));
    },
    close() {
      for (const l of links) {
        void l.sender.close();
        void l.recipient.close();
      }
      void qpq.close();
    },
  };
}
