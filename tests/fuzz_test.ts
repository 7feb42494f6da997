/**
 * Hostile input, part 1: fuzzing. Every decoder of peer bytes gets mutated real inputs
 * (recorded frames from tests/fixtures/frames/, fresh OPAQUE/MLS/envelope bytes) and must
 * return a value or throw a QpqError, never a TypeError/RangeError or a hang; then a real
 * server takes mutated frames over QUIC from several connections while honest users keep
 * working.
 *
 * Bounded for CI (fixed seed, a few thousand cases, about 15 s). The full-size run is
 * scripts/fuzz.ts (`--frames 1000000`). A failing case prints its target, seed and index;
 * `caseInput(target, seed, index)` in tests/_support/fuzz_runner.ts rebuilds its input.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import {
  caseRng,
  fmtStats,
  loadFrameCorpus,
  mutate,
  referenceFraming,
  type Rng,
} from "./_support/fuzz.ts";
import { type FuzzReport, runDecoderFuzz } from "./_support/fuzz_runner.ts";
import {
  liveCorpus,
  runLiveFuzz,
  setupLiveFuzz,
  startHonestTraffic,
} from "./_support/fuzz_live.ts";
import { startTestServer } from "./_support/server.ts";
import { decodeFrame, lengthPrefixed, REQUEST, RESPONSE } from "../src/wire/mod.ts";
import { MAX_FRAME_BYTES } from "../src/limits.ts";

const SEED = 20261126;

function printReport(r: FuzzReport): void {
  const rows = Object.entries(r.targets).map(([name, t]) =>
    `  ${name.padEnd(28)} ${String(t.cases).padStart(5)} cases, ${t.ok} ok, ` +
    `max ${t.maxMs.toFixed(1)} ms, rejects ${JSON.stringify(t.rejects)}`
  );
  console.log(
    `decoder fuzz seed ${r.seed}: ${r.cases} cases in ${(r.durationMs / 1000).toFixed(1)} s, ` +
      `crashes ${r.crashes}, hangs ${r.hangs}\n${rows.join("\n")}`,
  );
  for (const p of r.problems) {
    console.log(`  ${p.kind} ${p.target} seed ${p.seed} case ${p.index}: ${p.error}`);
  }
}

Deno.test("recorded frames cover every request and response kind and all decode", async () => {
  const corpus = await loadFrameCorpus();
  const kinds = new Set<string>();
  for (const [name, bytes] of corpus) {
    const f = decodeFrame(bytes);
    const kind = f.type === "request"
      ? `request_${f.request.kind}`
      : f.type === "response"
      ? `response_${f.response.kind}`
      : "push";
    assertEquals(kind, name, "file name names the frame's kind");
    kinds.add(kind);
  }
  for (const k of Object.keys(REQUEST)) assert(kinds.has(`request_${k}`), `no ${k} request`);
  for (const k of Object.keys(RESPONSE)) assert(kinds.has(`response_${k}`), `no ${k} response`);
  assert(kinds.has("push"));
  let total = 0;
  for (const b of corpus.values()) total += b.length;
  assert(total < 200 * 1024, `corpus is ${total} bytes`);
});

Deno.test("mutate is a pure function of seed, target and case index", async () => {
  const corpus = [...(await loadFrameCorpus()).values()];
  const run = (rng: Rng) => mutate(rng, rng.pick(corpus), corpus, "capnp");
  let changed = 0;
  for (let i = 0; i < 200; i++) {
    const a = run(caseRng(SEED, "t", i));
    const b = run(caseRng(SEED, "t", i));
    assertEquals(a, b);
    if (!corpus.some((c) => c.length === a.length && c.every((x, k) => x === a[k]))) changed++;
  }
  assert(changed > 180, `only ${changed} of 200 mutations changed their input`);
});

Deno.test("referenceFraming splits, and flags oversize and partial frames", () => {
  const a = lengthPrefixed(new Uint8Array([1, 2, 3]));
  const b = lengthPrefixed(new Uint8Array(0));
  const both = new Uint8Array([...a, ...b]);
  assertEquals(referenceFraming(both, MAX_FRAME_BYTES).frames.length, 2);
  assertEquals(referenceFraming(both, MAX_FRAME_BYTES).end, "clean");
  assertEquals(referenceFraming(both.subarray(0, 5), MAX_FRAME_BYTES).end, "partial");
  assertEquals(referenceFraming(both, 2).end, "too_large");
});

Deno.test("decoders of peer bytes return a value or throw a QpqError for 4,000 mutated inputs", async () => {
  const report = await runDecoderFuzz({ seed: SEED, cases: 4000, hangMs: 5000 });
  printReport(report);
  assertEquals(report.problems, []);
  assertEquals(report.crashes, 0);
  assertEquals(report.hangs, 0);
  const names = Object.keys(report.targets);
  for (
    const want of [
      "wire.decodeFrame",
      "wire.FrameReader",
      "mls.parseKeyPackage",
      "mls.processMessage.xwing",
      "mls.joinFromWelcome.xwing",
      "mls.decodeGroupState",
      "crypto.openEnvelope",
      "auth.registrationStart",
      "auth.loginStart",
      "auth.loginFinish",
      "server.decodeRecord",
    ]
  ) {
    assert(names.includes(want), `target ${want} missing`);
  }
  for (const [name, t] of Object.entries(report.targets)) {
    assert(t.cases >= 20, `${name}: ${t.cases} cases`);
    // the valid inputs pass and the mutated ones are mostly refused: the target is live
    assert(t.ok > 0, `${name}: no case succeeded`);
    assert(
      Object.values(t.rejects).reduce((a, b) => a + b, 0) > t.cases / 3,
      `${name}: few rejects`,
    );
  }
});

Deno.test("server keeps honest users served (p99 < 500 ms) under 4,000 mutated frames on 12 streams", async () => {
  const srv = await startTestServer();
  const setup = await setupLiveFuzz(srv.addr, srv.certPem);
  try {
    const corpus = liveCorpus(await loadFrameCorpus(), setup.fuzzChannel);
    const rss0 = Deno.memoryUsage().rss;
    let maxRss = rss0;
    const mem = setInterval(() => (maxRss = Math.max(maxRss, Deno.memoryUsage().rss)), 100);
    const honest = startHonestTraffic(setup, 10);
    const r = await runLiveFuzz(setup, corpus, {
      seed: SEED,
      frames: 4000,
      connections: 3,
      streamsPerConnection: 4,
      window: 16,
      streamAttackRate: 0.02,
    });
    const h = await honest.stop();
    clearInterval(mem);
    const growthMb = (maxRss - rss0) / 1e6;
    console.log(
      `live fuzz: ${r.sent} frames in ${
        (r.durationMs / 1000).toFixed(1)
      } s, ${r.answered} answered, ` +
        `${r.streamsOpened} streams (${r.streamsEnded} ended by the server), answers ${
          JSON.stringify(r.byCode)
        }\n  honest ping ${fmtStats(h.ping)}\n  honest enqueue ${fmtStats(h.enqueue)}\n` +
        `  honest fetch ${fmtStats(h.fetch)}\n  rss ${(rss0 / 1e6).toFixed(0)} MB, peak +${
          growthMb.toFixed(0)
        } MB`,
    );
    assertEquals(r.stalls, 0, "every batch was answered");
    // every frame gets one answer, except the few stream attacks the server cuts off
    assert(r.answered >= r.sent - r.streamsEnded, `${r.answered} answers for ${r.sent} frames`);
    assert(r.streamsEnded > 0, "stream attacks ran");
    assert((r.byCode["validation"] ?? 0) > r.sent / 3, "mutations reach the decoder");
    assert(Object.keys(r.byCode).filter((k) => k.startsWith("ok:")).length >= 5, "and handlers");
    assertEquals(r.byCode["internal"], undefined, "no request made the server fail");
    assertEquals(h.failures, 0, h.firstFailure);
    assert(h.ping.count >= 5 && h.delivered >= 5, "honest traffic ran");
    for (const s of [h.ping, h.enqueue, h.fetch]) assert(s.p99 < 500, fmtStats(s));
    assert(growthMb < 300, `server memory grew by ${growthMb.toFixed(0)} MB`);
    // the fuzz connections are gone from the server's books
    let clients = -1;
    for (let i = 0; i < 40 && clients !== 2; i++) {
      clients = (await setup.alice.call({ kind: "health" }, "health")).connectedClients;
      if (clients !== 2) await new Promise((res) => setTimeout(res, 50));
    }
    assertEquals(clients, 2, "only the honest connections remain");
  } finally {
    await setup.close();
    await srv.close();
  }
});
