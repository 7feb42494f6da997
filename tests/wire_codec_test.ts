import { assert, assertEquals, assertInstanceOf, assertThrows } from "./_support/assert.ts";
import {
  decodeFrame,
  encodeFrame,
  type FieldKind,
  type Frame,
  openFrame,
  PUSH,
  REQUEST,
  RESPONSE,
  type StructDesc,
} from "../src/wire/mod.ts";
import { ValidationError } from "../src/errors.ts";
import { MAX_FRAME_BYTES } from "../src/limits.ts";
import { capnpAvailable, generateWireCode } from "../scripts/_gen_lib.ts";

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

function sampleField(kind: FieldKind): unknown {
  switch (kind) {
    case "text":
      return ["", "alice", "名前", "x".repeat(rnd(300))][rnd(4)];
    case "data":
      return crypto.getRandomValues(new Uint8Array(rnd(200)));
    case "u64":
      return [0, 1, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER][rnd(4)];
    case "u32":
      return rnd(2 ** 32);
    case "u16":
      return rnd(2 ** 16);
    case "bool":
      return rnd(2) === 1;
  }
  if ("optional" in kind) return sampleField(kind.optional);
  if ("enum" in kind) return kind.enum[rnd(kind.enum.length)];
  if ("struct" in kind) return sampleStruct(kind.struct);
  return Array.from(
    { length: rnd(4) },
    () => kind.list === "text" ? sampleField("text") : sampleStruct(kind.list),
  );
}

function sampleStruct(desc: StructDesc): Record<string, unknown> {
  return Object.fromEntries(Object.entries(desc).map(([k, v]) => [k, sampleField(v)]));
}

function sampleFrames(): Frame[] {
  const frames: Frame[] = [];
  let id = 1;
  for (const [kind, desc] of Object.entries(REQUEST)) {
    const request = desc === "void" ? { kind } : { kind, ...sampleStruct(desc) };
    frames.push({ version: 1, requestId: id++, type: "request", request } as Frame);
  }
  for (const [kind, desc] of Object.entries(RESPONSE)) {
    const response = desc === "void" ? { kind } : { kind, ...sampleStruct(desc) };
    frames.push({ version: 1, requestId: id++, type: "response", response } as Frame);
  }
  frames.push({ version: 1, requestId: id++, type: "push", push: sampleStruct(PUSH) } as Frame);
  return frames;
}

Deno.test("encodeFrame/decodeFrame round-trip every request, response and push kind", () => {
  for (let round = 0; round < 20; round++) {
    for (const frame of sampleFrames()) {
      assertEquals(decodeFrame(encodeFrame(frame)), frame);
    }
  }
  assertEquals(Object.keys(REQUEST).length, 22);
  assertEquals(Object.keys(RESPONSE).length, 16);
});

Deno.test("openFrame reads the header without decoding an unknown body", () => {
  const bytes = encodeFrame({
    version: 9,
    requestId: 42,
    type: "request",
    request: { kind: "health" },
  });
  const opened = openFrame(bytes);
  assertEquals(opened.version, 9);
  assertEquals(opened.requestId, 42);
});

Deno.test("decodeFrame turns random bytes into ValidationError, never a crash", () => {
  for (let i = 0; i < 5000; i++) {
    const len = [0, 1, 7, 8, 16, 64, 256][rnd(7)]! + 8 * rnd(8);
    const bytes = crypto.getRandomValues(new Uint8Array(len));
    if (rnd(2) === 0 && len >= 8) bytes.set([0, 0, 0, 0], 0); // plausible single-segment header
    try {
      decodeFrame(bytes);
    } catch (e) {
      assertInstanceOf(e, ValidationError);
    }
  }
});

Deno.test("decodeFrame on mutated valid frames gives a frame or a ValidationError", () => {
  const frames = sampleFrames().map(encodeFrame);
  let rejected = 0;
  for (let i = 0; i < 20000; i++) {
    const bytes = frames[rnd(frames.length)]!.slice();
    const flips = 1 + rnd(4);
    for (let f = 0; f < flips; f++) bytes[rnd(bytes.length)] = rnd(256);
    try {
      decodeFrame(bytes);
    } catch (e) {
      assertInstanceOf(e, ValidationError);
      rejected++;
    }
  }
  assert(rejected > 0, "some mutations must be rejected");
});

Deno.test("decodeFrame refuses a pointer bomb within the traversal limit", () => {
  // A list of 2^29-1 zero-sized structs costs no bytes but must not be walked forever.
  const frame = encodeFrame({
    version: 1,
    requestId: 1,
    type: "request",
    request: {
      kind: "uploadKeyPackages",
      packages: [{ data: new Uint8Array(1) }],
      lastResort: new Uint8Array(0),
    },
  });
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) {
    const b = frame.slice();
    for (let j = 8; j < b.length; j++) if (rnd(8) === 0) b[j] = 0xff;
    try {
      decodeFrame(b);
    } catch (e) {
      assertInstanceOf(e, ValidationError);
    }
  }
  assert(performance.now() - t0 < 5000, "decoding hostile frames must stay fast");
});

Deno.test("openFrame rejects oversize frames and bad segment tables", () => {
  const e1 = assertThrows(() => openFrame(new Uint8Array(MAX_FRAME_BYTES + 8)), ValidationError);
  assertEquals((e1 as ValidationError).code, "too_large");
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, 1_000_000, true);
  assertThrows(() => openFrame(b), ValidationError, "too many segments");
  const c = new Uint8Array(16);
  new DataView(c.buffer).setUint32(4, 99, true);
  assertThrows(() => openFrame(c), ValidationError, "bad segment table");
});

Deno.test("encodeFrame refuses unknown enum values and request kinds", () => {
  assertThrows(
    () =>
      encodeFrame({
        version: 1,
        requestId: 1,
        type: "request",
        request: { kind: "nope" } as never,
      }),
    ValidationError,
  );
});

Deno.test({
  name: "src/wire/_gen matches schemas/qpq.capnp (needs the capnp compiler)",
  ignore: !(await capnpAvailable()),
  async fn() {
    const fresh = await generateWireCode();
    const committed = await Deno.readTextFile(new URL("../src/wire/_gen/qpq.ts", import.meta.url));
    assertEquals(committed, fresh, "run `deno task gen` and commit src/wire/_gen");
  },
});
