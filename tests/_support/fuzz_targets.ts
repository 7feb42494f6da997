/**
 * The decoders of peer bytes that the fuzz harness drives, each with its seed corpus:
 * recorded frames (tests/fixtures/frames/) and fresh, real protocol bytes (OPAQUE
 * messages, MLS KeyPackages, Welcomes, commits, application messages, group states,
 * envelopes, delivery records, message contents) made at setup.
 *
 * A target returns normally or throws. The harness accepts a {@link QpqError} (not
 * `InternalError`, unless the target stores trusted bytes) and counts anything else as a
 * crash. Oracles that make a target fail loudly:
 * - frames and message contents: decode ─► encode ─► decode ─► encode gives the same
 *   bytes (canonical codec)
 * - framing: FrameReader yields exactly the reference split, whatever the chunking, and
 *   ends with the right error (too_large, transport, timeout)
 * - envelope: a modified input is never accepted; OPAQUE KE3: a modified MAC never is
 *
 * @module
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import {
  decodeContent,
  decodeFrame,
  decodeRestoreNotice,
  encodeContent,
  encodeFrame,
  encodeRestoreNotice,
  FrameReader,
  lengthPrefixed,
} from "../../src/wire/mod.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  decodeGroupState,
  encodeGroupState,
  encryptMessage,
  joinFromWelcome,
  leaveGroup,
  mergePendingCommit,
  type MlsSuiteName,
  parseKeyPackage,
  processMessage,
  readPrivateMessageHeader,
  selfUpdate,
  type SignatureKeyPair,
} from "../../src/mls/mod.ts";
import { generateEnvelopeKeyPair, openEnvelope, sealEnvelope } from "../../src/crypto/mod.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  createServerSetup,
  loginFinish,
  loginStart,
  registrationFinish,
  registrationStart,
  ServerLoginState,
} from "../../src/auth/mod.ts";
import { decodeRecord, encodeRecord } from "../../src/server/_delivery_record.ts";
import { constantTimeEqual, randomBytes, utf8 } from "../../src/bytes.ts";
import { QpqError } from "../../src/errors.ts";
import { MAX_FRAME_BYTES } from "../../src/limits.ts";
import { type InputShape, randomChunks, referenceFraming, type Rng, TEST_KSF } from "./fuzz.ts";

/** One fuzzed decoder. */
export interface FuzzTarget {
  /** Stable name (part of every case's seed). */
  readonly name: string;
  /** Which mutators fit the input. */
  readonly shape: InputShape;
  /** Valid inputs to mutate. */
  readonly corpus: Uint8Array[];
  /** The store's own bytes: an `InternalError` is the documented answer to damage. */
  readonly allowInternal?: boolean;
  /** Relative share of cases (cheap decoders get more). */
  readonly weight: number;
  /** Decode `input`; `rng` is the case's PRNG for targets that need more randomness. */
  run(input: Uint8Array, rng: Rng): unknown;
}

const XWING: MlsSuiteName = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";
const X25519: MlsSuiteName = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

function signer(): SignatureKeyPair {
  const privateKey = ed25519.utils.randomSecretKey();
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && constantTimeEqual(a, b);
}

function isOriginal(input: Uint8Array, corpus: readonly Uint8Array[]): boolean {
  return corpus.some((c) => same(c, input));
}

// ------------------------------------------------------------------ frames and framing

function frameTarget(frames: Uint8Array[]): FuzzTarget {
  return {
    name: "wire.decodeFrame",
    shape: "capnp",
    corpus: frames,
    weight: 40,
    run(input) {
      const f = decodeFrame(input);
      const once = encodeFrame(f);
      const twice = encodeFrame(decodeFrame(once));
      if (!same(once, twice)) throw new Error("codec oracle: re-encoding is not stable");
      return f;
    },
  };
}

function framingTarget(frames: Uint8Array[]): FuzzTarget {
  const streams: Uint8Array[] = [];
  for (let i = 0; i < frames.length; i++) {
    const parts = [frames[i]!, frames[(i * 7 + 3) % frames.length]!].slice(0, 1 + (i % 2));
    const all = parts.map(lengthPrefixed);
    const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of all) {
      out.set(p, o);
      o += p.length;
    }
    streams.push(out);
  }
  return {
    name: "wire.FrameReader",
    shape: "bytes",
    corpus: streams,
    weight: 10,
    async run(input, rng) {
      const max = rng.chance(0.3) ? rng.int(input.length + 8) : MAX_FRAME_BYTES;
      const stall = rng.chance(0.25);
      const chunks = randomChunks(rng, input);
      const readable = new ReadableStream<Uint8Array>({
        pull(c) {
          const next = chunks.shift();
          if (next !== undefined) c.enqueue(next);
          else if (!stall) c.close();
          // stalled: never enqueue again, never close
        },
      });
      const reader = new FrameReader(readable, { maxFrameBytes: max, frameTimeoutMs: 10 });
      const want = referenceFraming(input, max);
      const got: Uint8Array[] = [];
      let error: unknown;
      let idle = false;
      try {
        while (true) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const idleWait = new Promise<"idle">((r) => (timer = setTimeout(() => r("idle"), 60)));
          const f = await Promise.race([reader.next(), idleWait]).finally(() =>
            clearTimeout(timer)
          );
          if (f === "idle") {
            idle = true;
            break;
          }
          if (f === null) break;
          got.push(f);
        }
      } catch (e) {
        error = e;
      } finally {
        await reader.cancel();
      }
      const fail = (why: string) => {
        throw new Error(`framing oracle: ${why} (stall=${stall}, max=${max}, len=${input.length})`);
      };
      if (got.length !== want.frames.length) {
        fail(`${got.length} frames where ${want.frames.length} were expected`);
      }
      got.forEach((f, i) => same(f, want.frames[i]!) || fail(`frame ${i} differs`));
      const code = error instanceof QpqError ? error.code : undefined;
      if (error !== undefined && code === undefined) throw error;
      const expected = want.end === "clean"
        ? (stall ? "idle" : "end")
        : want.end === "too_large"
        ? "too_large"
        : stall
        ? "timeout"
        : "transport";
      const actual = idle ? "idle" : code ?? "end";
      if (actual !== expected) fail(`ended with ${actual} where ${expected} was expected`);
      if (error !== undefined) throw error;
      return got.length;
    },
  };
}

function contentTarget(): FuzzTarget {
  const corpus = ["", "hi", "名前 ✓ \u202e rtl", "line one\nline two", "x".repeat(700)].map((
    text,
    i,
  ) =>
    encodeContent({
      version: 1,
      messageId: randomBytes(16),
      sentAtMs: 1_767_225_600_000 + i,
      body: { kind: "text", text },
    })
  );
  return {
    name: "wire.decodeContent",
    shape: "capnp",
    corpus,
    weight: 10,
    run(input) {
      const c = decodeContent(input);
      const once = encodeContent(c);
      const twice = encodeContent(decodeContent(once));
      if (!same(once, twice)) throw new Error("content oracle: re-encoding is not stable");
      return c;
    },
  };
}

function restoreNoticeTarget(): FuzzTarget {
  const corpus = [[0, 0], [1_767_225_600_000, 12], [Number.MAX_SAFE_INTEGER, 1e15]].map((
    [t, q],
  ) => encodeRestoreNotice({ backupTakenAtMs: t!, backupQueueSeq: q! }));
  return {
    name: "wire.decodeRestoreNotice",
    shape: "capnp",
    corpus,
    weight: 2,
    run(input) {
      const n = decodeRestoreNotice(input);
      const again = decodeRestoreNotice(encodeRestoreNotice(n));
      if (
        again.backupTakenAtMs !== n.backupTakenAtMs || again.backupQueueSeq !== n.backupQueueSeq
      ) {
        throw new Error("restore notice oracle: a round trip changed it");
      }
      return n;
    },
  };
}

// ------------------------------------------------------------------ MLS

interface MlsFixture {
  suite: MlsSuiteName;
  bob: SignatureKeyPair;
  bobPrivate: Uint8Array;
  bobState: Awaited<ReturnType<typeof joinFromWelcome>>["state"];
  keyPackages: Uint8Array[];
  welcome: Uint8Array;
  welcomeNoTree: Uint8Array;
  ratchetTree: Uint8Array;
  messages: Uint8Array[];
  states: Uint8Array[];
}

async function mlsFixture(suite: MlsSuiteName): Promise<MlsFixture> {
  const alice = signer();
  const bob = signer();
  const kp = (lastResort = false) =>
    createKeyPackage({ username: "bob", identity: bob, suite, lifetimeSeconds: 86400, lastResort });
  const bobKp = await kp();
  const lastResort = await kp(true);
  const a0 = await createGroup({
    groupId: randomBytes(16),
    username: "alice",
    identity: alice,
    suite,
  });
  const staged = await addMembers(a0, [bobKp.publicPackage]);
  const a1 = mergePendingCommit(staged.state).state;
  const joined = await joinFromWelcome(staged.outbound.welcome!, [bobKp.privatePackage], bob);
  const noTree = await addMembers(a0, [bobKp.publicPackage], { ratchetTreeInWelcome: false });
  const app = await encryptMessage(a1, utf8(JSON.stringify({ t: "hello", ts: 1, id: "x" })));
  const update = await selfUpdate(a1);
  const leave = await leaveGroup(a1);
  return {
    suite,
    bob,
    bobPrivate: bobKp.privatePackage,
    bobState: joined.state,
    keyPackages: [bobKp.publicPackage, lastResort.publicPackage],
    welcome: staged.outbound.welcome!,
    welcomeNoTree: noTree.outbound.welcome!,
    ratchetTree: noTree.outbound.ratchetTree!,
    messages: [app.outbound, update.outbound.commit, leave.outbound],
    states: [encodeGroupState(a1), encodeGroupState(joined.state), encodeGroupState(staged.state)],
  };
}

function mlsTargets(fx: MlsFixture[], recordedKps: Uint8Array[]): FuzzTarget[] {
  const out: FuzzTarget[] = [{
    name: "mls.parseKeyPackage",
    shape: "tls",
    corpus: [...fx.flatMap((f) => f.keyPackages), ...recordedKps],
    weight: 6,
    run: (input) => parseKeyPackage(input),
  }, {
    // the server reads this header of every commit (delivery.ts)
    name: "mls.readPrivateMessageHeader",
    shape: "tls",
    corpus: fx.flatMap((f) => f.messages),
    weight: 4,
    run: (input) => readPrivateMessageHeader(input),
  }, {
    name: "mls.decodeGroupState",
    shape: "tls",
    corpus: fx.flatMap((f) => f.states),
    weight: 4,
    run: (input) => decodeGroupState(input),
  }];
  for (const f of fx) {
    const tag = f.suite === XWING ? "xwing" : "x25519";
    out.push({
      name: `mls.processMessage.${tag}`,
      shape: "tls",
      corpus: f.messages,
      weight: 6,
      run: (input) => processMessage(f.bobState, input),
    }, {
      name: `mls.joinFromWelcome.${tag}`,
      shape: "tls",
      corpus: [f.welcome],
      weight: 3,
      run: (input) => joinFromWelcome(input, [f.bobPrivate], f.bob),
    }, {
      name: `mls.ratchetTree.${tag}`,
      shape: "tls",
      corpus: [f.ratchetTree],
      weight: 2,
      run: (input) =>
        joinFromWelcome(f.welcomeNoTree, [f.bobPrivate], f.bob, { ratchetTree: input }),
    });
  }
  return out;
}

// ------------------------------------------------------------------ crypto and auth

function envelopeTarget(): FuzzTarget {
  const { publicKey, secretKey } = generateEnvelopeKeyPair();
  const aad = utf8("qpq fuzz");
  const corpus = [0, 10, 300].map((n) => sealEnvelope(publicKey, randomBytes(n), aad));
  return {
    name: "crypto.openEnvelope",
    shape: "bytes",
    corpus,
    weight: 5,
    run(input) {
      const out = openEnvelope(secretKey, input, aad);
      if (!isOriginal(input, corpus)) {
        throw new Error("envelope oracle: a modified envelope opened");
      }
      return out;
    },
  };
}

async function authTargets(recorded: Map<string, Uint8Array>): Promise<FuzzTarget[]> {
  const setup = await createServerSetup();
  const password = "fuzz password";
  const reg = await clientRegistrationStart(password);
  const regResponse = await registrationStart(setup, "alice", reg.request);
  const fin = await clientRegistrationFinish(reg.state, password, regResponse, {
    keyStretching: TEST_KSF,
  });
  const record = await registrationFinish(fin.record);
  const ke1 = await clientLoginStart(password);
  const started = await loginStart(setup, "alice", ke1.request, record);
  const ke3 = await clientLoginFinish(ke1.state, password, started.response, {
    keyStretching: TEST_KSF,
  });
  if (ke3.kind !== "ok") throw new Error("fuzz setup: OPAQUE login failed");
  const stateBytes = started.serverState.toBytes();
  const field = (name: string, key: string): Uint8Array[] => {
    const bytes = recorded.get(name);
    if (!bytes) return [];
    const f = decodeFrame(bytes);
    return f.type === "request" ? [(f.request as unknown as Record<string, Uint8Array>)[key]!] : [];
  };
  return [{
    name: "auth.registrationStart",
    shape: "bytes",
    corpus: [reg.request, ...field("request_registerStart", "request")],
    weight: 3,
    run: (input) => registrationStart(setup, "alice", input),
  }, {
    name: "auth.registrationFinish",
    shape: "bytes",
    corpus: [fin.record, ...field("request_registerFinish", "record")],
    weight: 3,
    run: (input) => registrationFinish(input),
  }, {
    name: "auth.loginStart",
    shape: "bytes",
    corpus: [ke1.request, ...field("request_loginStart", "request")],
    weight: 2,
    run: (input) => loginStart(setup, "alice", input, record),
  }, {
    name: "auth.loginFinish",
    shape: "bytes",
    corpus: [ke3.finishRequest],
    weight: 3,
    async run(input) {
      const r = await loginFinish(ServerLoginState.fromBytes(stateBytes), input);
      // The library ignores bytes after the 64-byte MAC (the server checks the exact
      // length at its edge); any change to the MAC itself must fail.
      const mac = ke3.finishRequest;
      if (
        r.kind === "ok" && !(input.length >= mac.length && same(input.subarray(0, mac.length), mac))
      ) {
        throw new Error("OPAQUE oracle: a modified KE3 was accepted");
      }
      if (r.kind !== "ok") throw r.error;
      return r;
    },
  }];
}

function deliveryRecordTarget(): FuzzTarget {
  const corpus = [
    encodeRecord({
      kind: "application",
      epoch: 3,
      payload: randomBytes(200),
      welcomeFor: [],
      welcome: new Uint8Array(0),
    }),
    encodeRecord({
      kind: "commit",
      epoch: 7,
      payload: randomBytes(120),
      welcomeFor: ["bob", "carol.x"],
      welcome: randomBytes(300),
    }),
  ];
  return {
    name: "server.decodeRecord",
    shape: "bytes",
    corpus,
    allowInternal: true,
    weight: 5,
    run: (input) => decodeRecord(input),
  };
}

/** Build every target (a second or so: MLS groups in both suites, an OPAQUE login). */
export async function buildTargets(recorded: Map<string, Uint8Array>): Promise<FuzzTarget[]> {
  const frames = [...recorded.values()];
  const upload = recorded.get("request_uploadKeyPackages");
  const recordedKps: Uint8Array[] = [];
  if (upload) {
    const f = decodeFrame(upload);
    if (f.type === "request" && f.request.kind === "uploadKeyPackages") {
      recordedKps.push(
        ...f.request.packages.map((p) => p.data),
        f.request.lastResort,
        ...(f.request.lastResorts ?? []).map((p) => p.data),
      );
    }
  }
  const fx = [await mlsFixture(XWING), await mlsFixture(X25519)];
  return [
    frameTarget(frames),
    framingTarget(frames),
    contentTarget(),
    restoreNoticeTarget(),
    ...mlsTargets(fx, recordedKps),
    envelopeTarget(),
    ...(await authTargets(recorded)),
    deliveryRecordTarget(),
  ];
}
