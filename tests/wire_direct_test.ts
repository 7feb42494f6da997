/**
 * The hot frames' codec on the bytes (src/wire/_direct.ts) against capnp-es (codec.ts's
 * `encodeFrameCapnp` / `openCapnp`): the same bytes out for every frame, the same value or
 * the same refusal in for valid, mutated and hostile frames.
 */
import { assert, assertEquals, assertInstanceOf, assertThrows } from "./_support/assert.ts";
import {
  decodeFrame,
  encodeFrame,
  encodeFramePrefixed,
  type FieldKind,
  type Frame,
  openFrame,
  PUSH,
  REQUEST,
  RESPONSE,
  type StructDesc,
} from "../src/wire/mod.ts";
import { encodeFrameCapnp, openCapnp } from "../src/wire/codec.ts";
import { decodeDirect, encodeDirect, readHeaderDirect } from "../src/wire/_direct.ts";
import { checkSegmentTable, validateMessage } from "../src/wire/_validate.ts";
import { ValidationError } from "../src/errors.ts";
import { MAX_FRAME_BYTES } from "../src/limits.ts";
import { loadFrameCorpus, mutate, Rng } from "./_support/fuzz.ts";

const rng = new Rng(0x5eed_0019);
const rnd = (n: number) => rng.int(n);

const TEXTS = ["", "a", "alice", "名前", "😀 x", "\ud800 lone", "x".repeat(300), "é".repeat(4)];

function sampleField(kind: FieldKind): unknown {
  switch (kind) {
    case "text":
      return TEXTS[rnd(TEXTS.length)];
    case "data":
      return crypto.getRandomValues(new Uint8Array([0, 1, 7, 8, 9, 16, 100, 5000][rnd(8)]!));
    case "u64":
      return [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER][rnd(7)];
    case "u32":
      return [0, 1, 2 ** 31, 2 ** 32 - 1, rnd(2 ** 32)][rnd(5)];
    case "u16":
      return [0, 1, 65535, rnd(65536)][rnd(4)];
    case "bool":
      return rnd(2) === 1;
  }
  if ("optional" in kind) return rnd(3) === 0 ? undefined : sampleField(kind.optional);
  if ("enum" in kind) return kind.enum[rnd(kind.enum.length)];
  if ("struct" in kind) return sampleStruct(kind.struct);
  return Array.from(
    { length: [0, 1, 2, 5][rnd(4)]! },
    () => kind.list === "text" ? sampleField("text") : sampleStruct(kind.list),
  );
}

function sampleStruct(desc: StructDesc): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(desc)) {
    const x = sampleField(v);
    if (x !== undefined) out[k] = x;
  }
  return out;
}

const HOT_REQUESTS = ["ping", "enqueue", "fetch", "ack", "subscribe"];
const HOT_RESPONSES = ["ok", "error", "pong", "enqueued", "messages"];

/** A frame of every kind (hot or not), with random values. */
function sampleFrames(): Frame[] {
  const frames: Frame[] = [];
  const id = () => [0, 1, 77, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER][rnd(5)]!;
  const version = () => [1, 0, 9, 65535][rnd(4)]!;
  for (const [kind, desc] of Object.entries(REQUEST)) {
    const request = desc === "void" ? { kind } : { kind, ...sampleStruct(desc) };
    frames.push({ version: version(), requestId: id(), type: "request", request } as Frame);
  }
  for (const [kind, desc] of Object.entries(RESPONSE)) {
    const response = desc === "void" ? { kind } : { kind, ...sampleStruct(desc) };
    frames.push({ version: version(), requestId: id(), type: "response", response } as Frame);
  }
  frames.push(
    { version: version(), requestId: id(), type: "push", push: sampleStruct(PUSH) } as Frame,
  );
  return frames;
}

/** The frames read and written on the bytes: the hot ones, and every void member. */
function isHot(f: Frame): boolean {
  if (f.type === "push") return true;
  if (f.type === "request") {
    return HOT_REQUESTS.includes(f.request.kind) || REQUEST[f.request.kind] === "void";
  }
  return HOT_RESPONSES.includes(f.response.kind) || RESPONSE[f.response.kind] === "void";
}

type Outcome = { frame: Frame } | { error: string };

function outcome(fn: () => Frame): Outcome {
  try {
    return { frame: fn() };
  } catch (e) {
    assertInstanceOf(e, ValidationError);
    return { error: (e as Error).message };
  }
}

/**
 * openFrame (the direct reader for hot frames) and capnp-es give the same value or the
 * same refusal, on bytes the structural checks accept; a refusal by those checks is shared.
 */
function sameDecode(bytes: Uint8Array): "direct" | "capnp" | "refused" {
  try {
    checkSegmentTable(bytes);
    validateMessage(bytes);
  } catch {
    assertThrows(() => decodeFrame(bytes), ValidationError);
    return "refused";
  }
  const viaCapnp = outcome(() => openCapnp(bytes).decode());
  const viaOpen = outcome(() => openFrame(bytes).decode());
  assertEquals(viaOpen, viaCapnp);
  // the header too: read on the bytes, or by capnp-es
  const h1 = outcome(() => ({ ...openFrame(bytes), decode: undefined }) as unknown as Frame);
  const h2 = outcome(() => ({ ...openCapnp(bytes), decode: undefined }) as unknown as Frame);
  assertEquals(h1, h2);
  let direct: Frame | undefined;
  try {
    const head = readHeaderDirect(bytes);
    direct = head === undefined ? undefined : decodeDirect(bytes, head);
  } catch {
    return "direct"; // refused by the direct reader, with capnp-es's error (checked above)
  }
  return direct === undefined ? "capnp" : "direct";
}

Deno.test("direct encoder writes capnp-es's bytes for every frame, hot ones directly", () => {
  let direct = 0;
  for (let round = 0; round < 60; round++) {
    for (const frame of sampleFrames()) {
      const capnp = encodeFrameCapnp(frame, 0);
      assertEquals(
        encodeFrame(frame),
        capnp,
        `${frame.type} ${JSON.stringify(frame).slice(0, 80)}`,
      );
      assertEquals(encodeFramePrefixed(frame), encodeFrameCapnp(frame, 4));
      const d = encodeDirect(frame, 0);
      assertEquals(d !== undefined, isHot(frame), "hot frames take the direct path");
      if (d !== undefined) direct++;
      // and the direct reader reads it back as capnp-es does
      assertEquals(sameDecode(capnp), isHot(frame) ? "direct" : "capnp");
      assertEquals(decodeFrame(capnp), openCapnp(capnp).decode());
    }
  }
  assert(direct > 500);
});

Deno.test("direct encoder: a push of many messages grows past the arena; the next encode is clean", () => {
  const messages = Array.from({ length: 40 }, (_, i) => ({
    seq: i + 1,
    channelId: new Uint8Array(16).fill(i),
    sender: "alice",
    messageId: new Uint8Array(16).fill(255 - i),
    payload: new Uint8Array(3000).fill(i),
    messageKind: "application",
    epoch: i,
    sentAtMs: 1_700_000_000_000 + i,
  }));
  const big = { version: 1, requestId: 0, type: "push", push: { messages } } as Frame;
  assertEquals(encodeFrame(big), encodeFrameCapnp(big, 0));
  const small: Frame = {
    version: 1,
    requestId: 3,
    type: "request",
    request: { kind: "ack", uptoSeq: 9 },
  };
  assertEquals(encodeFrame(small), encodeFrameCapnp(small, 0));
  assertEquals(encodeFrame(big), encodeFrameCapnp(big, 0));
  assertEquals(encodeFrame(small), encodeFrameCapnp(small, 0));
});

Deno.test("direct encoder refuses what capnp-es refuses: unknown enum value, too large", () => {
  const bad = {
    version: 1,
    requestId: 1,
    type: "request",
    request: {
      kind: "enqueue",
      channelId: new Uint8Array(16),
      messageId: new Uint8Array(16),
      payload: new Uint8Array(1),
      messageKind: "nope",
      epoch: 0,
      recipients: [],
    },
  } as unknown as Frame;
  assertThrows(() => encodeFrame(bad), ValidationError, "unknown value");
  assertThrows(() => encodeFrameCapnp(bad, 0), ValidationError, "unknown value");
  const huge = {
    version: 1,
    requestId: 1,
    type: "request",
    request: { kind: "ping", clientTimeMs: 0, payload: new Uint8Array(MAX_FRAME_BYTES) },
  } as Frame;
  const e = assertThrows(() => encodeFrame(huge), ValidationError);
  assertEquals((e as ValidationError).code, "too_large");
  assertThrows(() => encodeFrameCapnp(huge, 0), ValidationError, "too large");
});

Deno.test("direct reader agrees with capnp-es on the recorded frames and their mutations", async () => {
  const corpus = [...(await loadFrameCorpus()).values()];
  const hot = sampleFrames().filter(isHot).map((f) => encodeFrameCapnp(f, 0));
  const inputs = [...corpus, ...hot];
  const seen = { direct: 0, capnp: 0, refused: 0 };
  for (const bytes of corpus) sameDecode(bytes);
  for (let i = 0; i < 30000; i++) {
    const input = inputs[rnd(inputs.length)]!;
    seen[sameDecode(mutate(rng, input, inputs, "capnp"))]++;
  }
  // each path is exercised: read directly, handed to capnp-es, refused by the walk
  assert(seen.direct > 1000 && seen.capnp > 100 && seen.refused > 1000, JSON.stringify(seen));
});

/** A ping request frame's bytes and the word offsets of its objects (see layout below). */
function pingBytes(payload = new Uint8Array([1, 2, 3])): Uint8Array {
  return encodeFrameCapnp({
    version: 1,
    requestId: 5,
    type: "request",
    request: { kind: "ping", clientTimeMs: 7, payload },
  }, 0);
}
// words of a ping frame: 0 root ptr | 1-2 Frame data | 3 Frame.body ptr | 4 Request data |
// 5 Request member ptr | 6 Ping data | 7 Ping.payload ptr | 8 payload
const word = (w: number) => 8 + 8 * w;

function setWord(b: Uint8Array, w: number, lo: number, hi: number): Uint8Array {
  const out = b.slice();
  const dv = new DataView(out.buffer);
  dv.setUint32(word(w), lo >>> 0, true);
  dv.setUint32(word(w) + 4, hi >>> 0, true);
  return out;
}

Deno.test("direct reader on hostile hot frames: capnp-es's answer, never another", () => {
  const ok = pingBytes();
  assertEquals(sameDecode(ok), "direct");
  const cases: [string, Uint8Array][] = [
    // the Ping struct claims no pointer section: smaller than the schema's
    ["struct too small", setWord(ok, 5, 0, 1)],
    // the Ping pointer is a list pointer
    ["struct pointer is a list", setWord(ok, 5, 1, 2 | (8 << 3))],
    // payload: a list of pointers (element size 6), of 16-bit elements, of composite
    ["data of pointers", setWord(ok, 7, 1, 6 | (1 << 3))],
    ["data of u16", setWord(ok, 7, 1, 3 | (1 << 3))],
    ["data composite", setWord(ok, 7, 1, 7 | (0 << 3))],
    // payload pointing past the end (the pointer walk refuses it)
    ["data out of bounds", setWord(ok, 7, 1, 2 | (100 << 3))],
    // a far pointer in place of the Ping pointer
    ["far pointer", setWord(ok, 5, 2 | (8 << 3), 0)],
    // a null member pointer: capnp-es reads a zero struct
    ["null member", setWord(ok, 5, 0, 0)],
    // Request discriminant past the union, and a void member
    ["unknown request", setWord(ok, 4, 999, 0)],
    ["void request", setWord(ok, 4, 1, 0)],
    // Frame.body discriminant 3 (no such member)
    ["unknown body", setWord(ok, 1, 1 | (3 << 16), 0)],
    // requestId past 2^53 - 1
    ["requestId out of range", setWord(ok, 2, 0, 0x20_0000)],
    // clientTimeMs past 2^53 - 1, and 2^53 exactly
    ["u64 out of range", setWord(ok, 6, 0, 0xffff_ffff)],
    ["u64 2^53", setWord(ok, 6, 0, 0x20_0000)],
    // the segment table says two segments
    [
      "two segments",
      (() => {
        const b = ok.slice();
        b[0] = 1;
        return b;
      })(),
    ],
  ];
  for (const [name, bytes] of cases) {
    try {
      sameDecode(bytes);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`);
    }
  }
  // and the direct reader does refuse these, with capnp-es's words
  assertThrows(() => decodeFrame(setWord(ok, 2, 0, 0x20_0000)), ValidationError, "out of range");
  assertThrows(() => decodeFrame(setWord(ok, 6, 0, 0xffff_ffff)), ValidationError, "out of range");
  assertThrows(() => decodeFrame(setWord(ok, 6, 0, 0x20_0000)), ValidationError, "out of range");
  assertEquals(
    (decodeFrame(setWord(ok, 6, 0xffff_ffff, 0x1f_ffff)) as { request: { clientTimeMs: number } })
      .request.clientTimeMs,
    Number.MAX_SAFE_INTEGER,
  );
  assertThrows(() => decodeFrame(setWord(ok, 7, 1, 2 | (100 << 3))), ValidationError);
});

Deno.test("direct reader: shared pointers cannot multiply a frame (the content budget)", () => {
  // an enqueue of a 2,000-byte payload and a 2,000-byte recipient name
  const frame: Frame = {
    version: 1,
    requestId: 1,
    type: "request",
    request: {
      kind: "enqueue",
      channelId: new Uint8Array(0),
      messageId: new Uint8Array(0),
      payload: new Uint8Array(2000).fill(7),
      messageKind: "application",
      epoch: 0,
      recipients: ["y".repeat(2000), "a"],
    },
  };
  const b = encodeFrameCapnp(frame, 0);
  assertEquals(sameDecode(b), "direct");
  // words: 0 root | 1-3 Frame | 4-5 Request | 6-7 Enqueue data | 8-11 Enqueue pointers
  // (channelId, messageId, payload, recipients) | payload | the list's 2 pointers | texts
  const dv = new DataView(b.buffer);
  const at = (w: number) => [dv.getUint32(word(w), true), dv.getUint32(word(w) + 4, true)];
  // messageId points at the payload's bytes: 2 x 2,000 bytes out of a 4 KB frame
  const [pLo, pHi] = at(10);
  const sharedData = setWord(b, 9, pLo! + (1 << 2), pHi!);
  // the second recipient points at the first one's text
  const list = 11 + 1 + (at(11)[0]! >> 2);
  const [tLo, tHi] = at(list);
  const sharedText = setWord(b, list + 1, tLo! - (1 << 2), tHi!);
  for (const shared of [sharedData, sharedText]) {
    // the pointer walk lets each object be visited about twice; the budget of bytes does not
    assertEquals(sameDecode(shared), "direct");
    assertThrows(() => decodeFrame(shared), ValidationError, "content larger than the frame");
  }
});
