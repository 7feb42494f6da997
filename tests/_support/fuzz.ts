/**
 * Fuzz support shared by tests/fuzz_test.ts, tests/adversarial_test.ts and scripts/fuzz.ts:
 * a seeded PRNG, structure-aware mutators (Cap'n Proto segment tables and pointers, TLS /
 * QUIC length fields, splices of two inputs), the recorded frame corpus, a reference model
 * of the length-prefixed framing, outcome classification, raw QUIC streams, cheap OPAQUE
 * accounts and latency statistics.
 *
 * ```
 * corpus (tests/fixtures/frames/*.frame, fresh MLS/OPAQUE/envelope bytes)
 *   ─► mutate(caseRng(seed, target, i)) ─► decoder ─► value | QpqError (ok) | other (crash)
 * ```
 *
 * Every case is a pure function of (seed, target, index), so a crash report names what is
 * needed to replay it.
 *
 * @module
 */
import { QpqError } from "../../src/errors.ts";
import { connectQuic, parseHostPort } from "../../src/transport/quic.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../../src/auth/mod.ts";
import { FrameReader, openFrame, type Response } from "../../src/wire/mod.ts";
import type { ServerConnection } from "../../src/client/connection.ts";

// ------------------------------------------------------------------ PRNG

/** Seeded PRNG (xoshiro128**): deterministic, fast, good enough for fuzzing. */
export class Rng {
  #s: Uint32Array;

  constructor(seed: number) {
    // splitmix32 expands the seed into four non-zero words
    this.#s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0 || 1;
    }
  }

  /** Next 32-bit unsigned integer. */
  u32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** n random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** FNV-1a of a string, to derive per-target seeds. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The PRNG of case `index` of `target` under `seed`. */
export function caseRng(seed: number, target: string, index: number): Rng {
  return new Rng((seed ^ hashString(target) ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
}

// ------------------------------------------------------------------ mutators

const INTERESTING_U8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0];
const INTERESTING_U32 = [
  0,
  1,
  2,
  7,
  8,
  0x7f,
  0xff,
  0x100,
  0x3fff,
  0x4000,
  0x7fff,
  0xffff,
  0x10000,
  0x100000,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

/** Names of the mutation operators (reported in stats). */
export const MUTATIONS = [
  "bitflip",
  "byte",
  "insert",
  "delete",
  "truncate",
  "extend",
  "splice",
  "duplicate",
  "u16",
  "u32",
  "varint",
  "segments",
  "pointer",
  "swapWords",
  "random",
] as const;

/** One mutation operator name. */
export type MutationName = typeof MUTATIONS[number];

function setU32(b: Uint8Array, at: number, v: number, little: boolean): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, v >>> 0, little);
}

function withInsert(b: Uint8Array, at: number, piece: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length + piece.length);
  out.set(b.subarray(0, at));
  out.set(piece, at);
  out.set(b.subarray(at), at + piece.length);
  return out;
}

/** Offset where a Cap'n Proto message's segment data starts (from its table), or 8. */
function capnpHeaderBytes(b: Uint8Array): number {
  if (b.length < 8) return 0;
  const count = (new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) + 1) >>> 0;
  if (count > 64) return 8;
  let h = 4 + 4 * count;
  h += h % 8;
  return Math.min(h, b.length - (b.length % 8));
}

/** Apply one named mutation. `other` is a second input for splices. */
export function applyMutation(
  rng: Rng,
  op: MutationName,
  input: Uint8Array,
  other: Uint8Array,
): Uint8Array {
  let b: Uint8Array = input.slice();
  const n = b.length;
  switch (op) {
    case "bitflip": {
      if (n === 0) return rng.bytes(1);
      const flips = 1 + rng.int(4);
      for (let i = 0; i < flips; i++) b[rng.int(n)]! ^= 1 << rng.int(8);
      return b;
    }
    case "byte":
      if (n === 0) return new Uint8Array([rng.pick(INTERESTING_U8)]);
      b[rng.int(n)] = rng.chance(0.5) ? rng.pick(INTERESTING_U8) : rng.int(256);
      return b;
    case "insert": {
      const piece = rng.chance(0.5)
        ? rng.bytes(1 + rng.int(16))
        : new Uint8Array(1 + rng.int(64)).fill(rng.pick(INTERESTING_U8));
      return withInsert(b, rng.int(n + 1), piece);
    }
    case "delete": {
      if (n === 0) return b;
      const at = rng.int(n);
      const len = 1 + rng.int(Math.min(32, n - at));
      return new Uint8Array([...b.subarray(0, at), ...b.subarray(at + len)]);
    }
    case "truncate":
      return b.slice(0, rng.int(n + 1));
    case "extend": {
      const extra = rng.chance(0.5)
        ? new Uint8Array(8 * (1 + rng.int(4)))
        : rng.bytes(1 + rng.int(24));
      return withInsert(b, n, extra);
    }
    case "splice": {
      // head of one input, tail of another: both halves are well formed on their own
      const cut = rng.int(n + 1);
      const from = rng.int(other.length + 1);
      const out = new Uint8Array(cut + other.length - from);
      out.set(b.subarray(0, cut));
      out.set(other.subarray(from), cut);
      return out;
    }
    case "duplicate": {
      if (n === 0) return b;
      const at = rng.int(n);
      const len = 1 + rng.int(Math.min(64, n - at));
      return withInsert(b, rng.int(n + 1), b.slice(at, at + len));
    }
    case "u16": {
      if (n < 2) return b;
      const at = rng.int(n - 1);
      const v = rng.pick(INTERESTING_U32) & 0xffff;
      new DataView(b.buffer).setUint16(at, v, rng.chance(0.5));
      return b;
    }
    case "u32": {
      if (n < 4) return b;
      const at = rng.chance(0.5) ? rng.int(n - 3) : Math.min(n - 4, 4 * rng.int(n >> 2));
      const base = rng.pick(INTERESTING_U32);
      const v = rng.chance(0.3) ? base + rng.int(3) - 1 : base;
      setU32(b, at, v, rng.chance(0.5));
      return b;
    }
    case "varint": {
      // MLS vectors use QUIC variable-length integers: make one claim a huge length
      if (n < 4) return b;
      const at = rng.int(n - 3);
      const forms = [[0x3f], [0x7f, 0xff], [0xbf, 0xff, 0xff, 0xff], [0xc0, 0, 0, 1], [0x40, 0x00]];
      b.set(rng.pick(forms), at);
      return b;
    }
    case "segments": {
      // Cap'n Proto segment table: count (u32 LE) then one size (u32 LE, words) each
      if (n < 8) return b;
      const count = new DataView(b.buffer).getUint32(0, true) + 1;
      const slot = rng.int(Math.min(count, 64) + 1);
      const at = slot === 0 ? 0 : 4 * slot;
      if (at + 4 > n) return b;
      const cur = new DataView(b.buffer).getUint32(at, true);
      const choices = [0, 1, 63, 64, 0xffffffff, cur + 1, cur - 1, cur * 2, cur >>> 1];
      setU32(b, at, rng.pick(choices), true);
      return b;
    }
    case "pointer": {
      // a 64-bit word in the segment data: struct/list/far pointer fields
      const h = capnpHeaderBytes(b);
      const words = (n - h) >> 3;
      if (words <= 0) return b;
      const at = h + 8 * rng.int(words);
      const dv = new DataView(b.buffer);
      const lo = dv.getUint32(at, true);
      const hi = dv.getUint32(at + 4, true);
      switch (rng.int(5)) {
        case 0: // pointer kind
          dv.setUint32(at, (lo & ~3) | rng.int(4), true);
          break;
        case 1: { // offset: far forward, backward, or self-referencing
          const off = rng.pick([-1, -2, 1, 0x1fffffff, -0x20000000, rng.int(64) - 32]);
          dv.setUint32(at, ((off << 2) | (lo & 3)) >>> 0, true);
          break;
        }
        case 2: // list: element size and count
          dv.setUint32(at + 4, ((rng.int(0x1fffffff) << 3) | rng.int(8)) >>> 0, true);
          break;
        case 3: // struct: data words and pointer count
          dv.setUint32(at + 4, (rng.pick(INTERESTING_U32) & 0xffff) | (hi & 0xffff0000), true);
          dv.setUint32(
            at + 4,
            (dv.getUint32(at + 4, true) & 0xffff) | (rng.int(0x10000) << 16),
            true,
          );
          break;
        default: // far pointer into a segment that may not exist
          dv.setUint32(at, ((rng.int(0x1000) << 3) | 2 | (rng.int(2) << 2)) >>> 0, true);
          dv.setUint32(at + 4, rng.int(8), true);
      }
      return b;
    }
    case "swapWords": {
      const words = n >> 3;
      if (words < 2) return b;
      const i = 8 * rng.int(words);
      const j = 8 * rng.int(words);
      const tmp = b.slice(i, i + 8);
      b.copyWithin(i, j, j + 8);
      b.set(tmp, j);
      return b;
    }
    case "random":
      b = rng.bytes(rng.chance(0.5) ? n : rng.int(2 * n + 16));
      return b;
  }
}

/** Which mutations suit an input: `capnp` adds segment/pointer edits, `tls` varint edits. */
export type InputShape = "capnp" | "tls" | "bytes";

const OPS_BY_SHAPE: Record<InputShape, readonly MutationName[]> = {
  capnp: MUTATIONS.filter((m) => m !== "varint"),
  tls: MUTATIONS.filter((m) => m !== "segments" && m !== "pointer"),
  bytes: MUTATIONS.filter((m) => m !== "segments" && m !== "pointer" && m !== "varint"),
};

/** 1 to 4 stacked mutations of `input` (fewer is likelier); `others` feed splices. */
export function mutate(
  rng: Rng,
  input: Uint8Array,
  others: readonly Uint8Array[],
  shape: InputShape = "bytes",
): Uint8Array {
  const ops = OPS_BY_SHAPE[shape];
  const rounds = rng.chance(0.6) ? 1 : 2 + rng.int(3);
  let b = input;
  for (let i = 0; i < rounds; i++) {
    const other = others.length > 0 ? rng.pick(others) : input;
    b = applyMutation(rng, rng.pick(ops), b, other);
    if (b.length > 2 * input.length + 4096) b = b.subarray(0, 2 * input.length + 4096);
  }
  return b;
}

// ------------------------------------------------------------------ corpus

/** The recorded frames: file stem (`request_ping`, `push`, ...) to Cap'n Proto bytes. */
export async function loadFrameCorpus(
  dir = new URL("../fixtures/frames/", import.meta.url),
): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".frame")) {
      out.set(e.name.slice(0, -".frame".length), await Deno.readFile(new URL(e.name, dir)));
    }
  }
  if (out.size === 0) {
    throw new Error(
      `No recorded frames in ${dir.pathname}: run scripts/record_frames.ts to create them`,
    );
  }
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)));
}

// ------------------------------------------------------------------ outcomes

/** How one call ended. */
export type Outcome =
  | { kind: "ok" }
  | { kind: "reject"; code: string }
  | { kind: "crash"; error: string };

/**
 * Classify a thrown value: a {@link QpqError} is a clean rejection (an `InternalError`
 * only when `allowInternal`, since for peer input it means a bug); anything else
 * (TypeError, RangeError, a library's own error) is a crash.
 */
export function classify(e: unknown, allowInternal = false): Outcome {
  if (e instanceof QpqError && (e.code !== "internal" || allowInternal)) {
    return { kind: "reject", code: e.code };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const cause = err.cause instanceof Error
    ? ` (cause: ${err.cause.name}: ${err.cause.message})`
    : "";
  const at = (err.stack ?? "").split("\n").slice(1, 4).map((l) => l.trim()).join(" | ");
  return { kind: "crash", error: `${err.name}: ${err.message}${cause} at ${at}` };
}

// ------------------------------------------------------------------ framing reference

/** What a correct frame reader yields for a byte stream, whatever the chunking. */
export interface FramingExpectation {
  frames: Uint8Array[];
  end: "clean" | "too_large" | "partial";
}

/** Reference split of a stream of 4-byte big-endian length-prefixed frames. */
export function referenceFraming(stream: Uint8Array, maxFrameBytes: number): FramingExpectation {
  const frames: Uint8Array[] = [];
  const dv = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  let o = 0;
  while (true) {
    const left = stream.length - o;
    if (left === 0) return { frames, end: "clean" };
    if (left < 4) return { frames, end: "partial" };
    const len = dv.getUint32(o);
    if (len > maxFrameBytes) return { frames, end: "too_large" };
    if (left < 4 + len) return { frames, end: "partial" };
    frames.push(stream.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
}

/** Split `bytes` into random chunks (some empty, some one byte, some large). */
export function randomChunks(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < bytes.length) {
    const mode = rng.int(4);
    const len = mode === 0 ? 1 : mode === 1 ? rng.int(8) : mode === 2 ? rng.int(200) : bytes.length;
    out.push(bytes.slice(o, o + len));
    o += len;
  }
  return out;
}

// ------------------------------------------------------------------ raw streams

/** A raw QUIC stream to a server: write any bytes, read response frames. */
export interface RawStream {
  conn: Deno.QuicConn;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Next response (or push) frame decoded; `null` when the server ended the stream. */
  next(): Promise<{ requestId: number; response: Response | undefined } | null>;
  close(): void;
}

/** Open a QUIC connection (or reuse `conn`) and one bidi stream on it. */
export async function openRawStream(
  addr: string,
  certPem: string,
  conn?: Deno.QuicConn,
): Promise<RawStream> {
  const c = conn ?? await connectQuic({
    hostname: "127.0.0.1",
    port: parseHostPort(addr).port,
    caCertPem: certPem,
    serverName: "localhost",
  });
  const stream = await c.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const reader = new FrameReader(stream.readable);
  return {
    conn: c,
    writer,
    async next() {
      let bytes: Uint8Array | null;
      try {
        bytes = await reader.next();
      } catch {
        return null; // reset by the server
      }
      if (bytes === null) return null;
      const f = openFrame(bytes).decode();
      return { requestId: f.requestId, response: f.type === "response" ? f.response : undefined };
    },
    close() {
      writer.close().catch(() => {});
      reader.cancel().catch(() => {});
      if (!conn) {
        try {
          c.close({ closeCode: 0, reason: "bye" });
        } catch { /* gone */ }
      }
    },
  };
}

/** Error code of a response, or its kind when it is not an error. */
export function responseCode(r: Response | undefined): string {
  if (r === undefined) return "push";
  return r.kind === "error" ? r.code : `ok:${r.kind}`;
}

// ------------------------------------------------------------------ accounts

/** Cheap password stretching for tests (the server cannot tell). */
export const TEST_KSF: KeyStretching = {
  argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 },
};

/** Register `username` (with invite token `devtoken`) on an open connection. */
export async function registerUser(
  conn: ServerConnection,
  username: string,
  password: string,
  identityKey: Uint8Array,
): Promise<void> {
  const start = await clientRegistrationStart(password);
  const started = await conn.call(
    { kind: "registerStart", username, request: start.request, authToken: "devtoken" },
    "registerStarted",
  );
  const fin = await clientRegistrationFinish(start.state, password, started.data, {
    keyStretching: TEST_KSF,
  });
  await conn.call({
    kind: "registerFinish",
    username,
    record: fin.record,
    authToken: "devtoken",
    identityKey,
  }, "ok");
}

/** The two messages of an OPAQUE login, for tests that replay or reorder them. */
export async function loginMessages(
  conn: ServerConnection,
  username: string,
  password: string,
): Promise<{ finish: Uint8Array; loginId: Uint8Array }> {
  const start = await clientLoginStart(password);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, password, started.response, {
    keyStretching: TEST_KSF,
  });
  if (fin.kind !== "ok") throw fin.error;
  return { finish: fin.finishRequest, loginId: started.loginId };
}

/** Log in on `conn`; returns the session token. */
export async function loginUser(
  conn: ServerConnection,
  username: string,
  password: string,
): Promise<Uint8Array> {
  const m = await loginMessages(conn, username, password);
  const session = await conn.call(
    { kind: "loginFinish", username, finish: m.finish, loginId: m.loginId },
    "session",
  );
  return session.token;
}

// ------------------------------------------------------------------ latency

/** Latency summary in ms. */
export interface LatencyStats {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Percentiles of a list of durations. */
export function latencyStats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { count: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? 0 };
}

/** Round to 0.1 ms for printing. */
export function fmtStats(s: LatencyStats): string {
  const r = (x: number) => Math.round(x * 10) / 10;
  return `n=${s.count} p50=${r(s.p50)}ms p99=${r(s.p99)}ms max=${r(s.max)}ms`;
}

/**
 * Ping `conn` every `intervalMs` until stopped; `stop()` returns the round-trip times.
 * A failed ping is recorded as `Infinity`, so a bound on p99/max catches it.
 */
export function startPinger(
  conn: ServerConnection,
  intervalMs = 20,
): { stop(): Promise<number[]> } {
  const samples: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        samples.push((await conn.ping()).rttMs);
      } catch {
        samples.push(Infinity);
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}
