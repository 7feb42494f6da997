/**
 * Live-server fuzzing: mutated frames over real QUIC streams to a running server, from
 * several connections and streams, while an honest pair of users keeps pinging,
 * enqueueing and fetching on their own connections. Used by tests/fuzz_test.ts (small)
 * and scripts/fuzz.ts (a million frames).
 *
 * ```
 * setup: register alice, bob (honest, one DM) and fuzz (a group channel of its own)
 * corpus: recorded request frames, channel ids rebased onto the fuzz channel, logout left out
 * fuzz streams: [resume(fuzz token)] then batches of `window` mutated frames, one answer each;
 *   now and then a stream attack (oversize prefix, truncation) that ends the stream
 * honest: ping, enqueue (alice -> bob), fetch + ack (bob), latencies recorded
 * ```
 *
 * @module
 */
import { connectServer, type ServerConnection } from "../../src/client/connection.ts";
import { decodeFrame, encodeFrame, type Frame, lengthPrefixed } from "../../src/wire/mod.ts";
import { randomBytes } from "../../src/bytes.ts";
import { connectQuic, parseHostPort } from "../../src/transport/quic.ts";
import { MAX_FRAME_BYTES, WIRE_VERSION } from "../../src/limits.ts";
import { ed25519 } from "@noble/curves/ed25519.js";
import {
  type LatencyStats,
  latencyStats,
  loginUser,
  mutate,
  openRawStream,
  registerUser,
  responseCode,
  Rng,
} from "./fuzz.ts";

/** Users and channels made by {@link setupLiveFuzz}. */
export interface LiveSetup {
  addr: string;
  certPem: string;
  /** Honest connections, logged in. */
  alice: ServerConnection;
  bob: ServerConnection;
  /** The alice-bob DM channel id. */
  dm: Uint8Array;
  /** Session token of the fuzz user. */
  fuzzToken: Uint8Array;
  /** The fuzz user's own group channel (the fuzz user is its only member). */
  fuzzChannel: Uint8Array;
  close(): Promise<void>;
}

const PASSWORD = "fuzz test password";

async function account(addr: string, certPem: string, name: string) {
  const conn = await connectServer({ server: addr, caCertPem: certPem });
  await registerUser(conn, name, PASSWORD, ed25519.getPublicKey(ed25519.utils.randomSecretKey()));
  const token = await loginUser(conn, name, PASSWORD);
  return { conn, token };
}

/** Register the honest and the fuzz users and make their channels. */
export async function setupLiveFuzz(addr: string, certPem: string): Promise<LiveSetup> {
  const alice = await account(addr, certPem, "alice");
  const bob = await account(addr, certPem, "bob");
  const fuzz = await account(addr, certPem, "fuzz");
  const dm = await alice.conn.call({ kind: "createDm", username: "bob" }, "channel");
  const group = await fuzz.conn.call({ kind: "createGroup", name: "fuzzing" }, "channel");
  await fuzz.conn.close();
  return {
    addr,
    certPem,
    alice: alice.conn,
    bob: bob.conn,
    dm: dm.channelId,
    fuzzToken: fuzz.token,
    fuzzChannel: group.channelId,
    async close() {
      await alice.conn.close();
      await bob.conn.close();
    },
  };
}

/**
 * The live corpus: recorded request frames with channel ids moved onto the fuzz channel
 * (so mutations reach the handlers behind the membership check), plus a few response
 * frames (which the server must refuse). Logout is left out: it would revoke the fuzz
 * session every few frames.
 */
export function liveCorpus(
  recorded: Map<string, Uint8Array>,
  fuzzChannel: Uint8Array,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [name, bytes] of recorded) {
    if (name === "request_logout") continue;
    const f = decodeFrame(bytes);
    if (f.type !== "request") {
      if (name === "response_messages" || name === "push" || name === "response_ok") {
        out.push(bytes);
      }
      continue;
    }
    const r = f.request as Record<string, unknown>;
    if ("channelId" in r) r.channelId = fuzzChannel;
    out.push(encodeFrame(f as Frame));
  }
  return out;
}

/** Options of {@link runLiveFuzz}. */
export interface LiveFuzzOptions {
  seed: number;
  /** Frames to send in total. */
  frames: number;
  connections: number;
  streamsPerConnection: number;
  /** Frames written per batch before reading their answers. */
  window: number;
  /** Probability of a stream attack per batch (ends the stream). */
  streamAttackRate?: number;
  /** Stop early when this returns true (checked before each batch). */
  shouldStop?: () => boolean;
  onProgress?: (r: LiveFuzzReport) => void;
}

/** What the server answered. */
export interface LiveFuzzReport {
  sent: number;
  answered: number;
  /** Answers by error code, or `ok:<kind>`. */
  byCode: Record<string, number>;
  pushes: number;
  streamsOpened: number;
  /** Streams the server ended (oversize, truncated, or a framing error). */
  streamsEnded: number;
  /** Batches whose answers did not all arrive within 20 s (must be 0). */
  stalls: number;
  durationMs: number;
}

/** Send mutated frames to the server of `setup` until `frames` have been sent. */
export async function runLiveFuzz(
  setup: Pick<LiveSetup, "addr" | "certPem" | "fuzzToken">,
  corpus: readonly Uint8Array[],
  options: LiveFuzzOptions,
): Promise<LiveFuzzReport> {
  const report: LiveFuzzReport = {
    sent: 0,
    answered: 0,
    byCode: {},
    pushes: 0,
    streamsOpened: 0,
    streamsEnded: 0,
    stalls: 0,
    durationMs: 0,
  };
  const started = performance.now();
  let lastProgress = started;
  const resume = encodeFrame({
    version: WIRE_VERSION,
    requestId: 0,
    type: "request",
    request: { kind: "resume", token: setup.fuzzToken },
  });
  const count = (code: string) => (report.byCode[code] = (report.byCode[code] ?? 0) + 1);

  const more = () => report.sent < options.frames && !(options.shouldStop?.() ?? false);
  const streamLoop = async (conn: Deno.QuicConn, rng: Rng) => {
    while (more()) {
      const s = await openRawStream(setup.addr, setup.certPem, conn);
      report.streamsOpened++;
      await s.writer.write(lengthPrefixed(resume));
      let ended = false;
      // the resume answer (and pushes) come first
      for (let r = await s.next();; r = await s.next()) {
        if (r === null) {
          ended = true;
          break;
        }
        if (r.response !== undefined) break;
        report.pushes++;
      }
      while (!ended && more()) {
        const n = Math.min(options.window, options.frames - report.sent);
        if (rng.chance(options.streamAttackRate ?? 0.01)) {
          // a framing attack: the stream cannot resynchronise, the server ends it
          const f = lengthPrefixed(rng.pick(corpus));
          const attack = rng.chance(0.5)
            ? new Uint8Array([0xff, 0xff, 0xff, 0xff]) // announces > MAX_FRAME_BYTES
            : f.subarray(0, 1 + rng.int(f.length - 1));
          await s.writer.write(attack).catch(() => {});
          await s.writer.close().catch(() => {});
          report.sent++;
          for (let r = await s.next(); r !== null; r = await s.next()) {
            if (r.response === undefined) continue;
            report.answered++;
            count(responseCode(r.response));
          }
          ended = true;
          break;
        }
        const batch: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const m = mutate(rng, rng.pick(corpus), corpus, "capnp");
          batch.push(lengthPrefixed(m.length > MAX_FRAME_BYTES ? m.subarray(0, 64) : m));
        }
        const bytes = new Uint8Array(batch.reduce((k, b) => k + b.length, 0));
        let o = 0;
        for (const b of batch) {
          bytes.set(b, o);
          o += b.length;
        }
        try {
          await s.writer.write(bytes);
        } catch {
          ended = true;
          break;
        }
        report.sent += n;
        let got = 0;
        const deadline = setTimeout(() => {
          report.stalls++;
          s.close();
        }, 20_000);
        try {
          while (got < n) {
            const r = await s.next();
            if (r === null) {
              ended = true;
              break;
            }
            if (r.response === undefined) {
              report.pushes++;
              continue;
            }
            got++;
            report.answered++;
            count(responseCode(r.response));
          }
        } finally {
          clearTimeout(deadline);
        }
        const now = performance.now();
        if (options.onProgress && now - lastProgress > 2000) {
          lastProgress = now;
          report.durationMs = now - started;
          options.onProgress(report);
        }
      }
      report.streamsEnded += ended ? 1 : 0;
      s.close();
    }
  };

  const conns: Deno.QuicConn[] = [];
  const tasks: Promise<void>[] = [];
  for (let c = 0; c < options.connections; c++) {
    const conn = await connectQuic({
      hostname: "127.0.0.1",
      port: parseHostPort(setup.addr).port,
      caCertPem: setup.certPem,
      serverName: "localhost",
    });
    conns.push(conn);
    for (let k = 0; k < options.streamsPerConnection; k++) {
      const rng = new Rng((options.seed ^ Math.imul(c * 131 + k + 1, 0x9e3779b1)) >>> 0);
      tasks.push(streamLoop(conn, rng));
    }
  }
  await Promise.all(tasks);
  for (const c of conns) {
    try {
      c.close({ closeCode: 0, reason: "fuzz done" });
    } catch { /* gone */ }
  }
  report.durationMs = performance.now() - started;
  return report;
}

/** Latencies of the honest users' calls during a run. */
export interface HonestReport {
  ping: LatencyStats;
  enqueue: LatencyStats;
  fetch: LatencyStats;
  /** Calls that failed (must be 0). */
  failures: number;
  firstFailure: string | undefined;
  delivered: number;
}

/**
 * Run honest traffic until `stop()`: alice pings and enqueues to the DM, bob fetches and
 * acks, one round every `intervalMs`.
 */
export function startHonestTraffic(
  setup: LiveSetup,
  intervalMs = 20,
): { stop(): Promise<HonestReport> } {
  const ping: number[] = [];
  const enq: number[] = [];
  const fetch: number[] = [];
  let failures = 0;
  let firstFailure: string | undefined;
  let delivered = 0;
  let cursor = 0;
  let running = true;
  const timed = async <T>(into: number[], f: () => Promise<T>): Promise<T | undefined> => {
    const t0 = performance.now();
    try {
      const v = await f();
      into.push(performance.now() - t0);
      return v;
    } catch (e) {
      failures++;
      firstFailure ??= String(e);
      into.push(Infinity);
      return undefined;
    }
  };
  const loop = (async () => {
    while (running) {
      await timed(ping, () => setup.alice.ping());
      await timed(enq, () =>
        setup.alice.call({
          kind: "enqueue",
          channelId: setup.dm,
          messageId: randomBytes(16),
          payload: randomBytes(200),
          messageKind: "application",
          epoch: 0,
          recipients: [],
        }, "enqueued"));
      const page = await timed(
        fetch,
        () => setup.bob.call({ kind: "fetch", afterSeq: cursor, limit: 100 }, "messages"),
      );
      const last = page?.messages[page.messages.length - 1];
      if (last) {
        delivered += page!.messages.length;
        cursor = last.seq;
        await setup.bob.call({ kind: "ack", uptoSeq: cursor }, "ok").catch(() => failures++);
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return {
        ping: latencyStats(ping),
        enqueue: latencyStats(enq),
        fetch: latencyStats(fetch),
        failures,
        firstFailure,
        delivered,
      };
    },
  };
}
