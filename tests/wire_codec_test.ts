import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertThrows,
} from "./_support/assert.ts";
import {
  CONTENT_VERSION,
  decodeContent,
  decodeFrame,
  encodeContent,
  encodeFrame,
  encodeFramePrefixed,
  type FieldKind,
  type Frame,
  FrameReader,
  lengthPrefixed,
  type MessageContent,
  openFrame,
  PUSH,
  REQUEST,
  RESPONSE,
  type StructDesc,
} from "../src/wire/mod.ts";
import { UsageError, ValidationError } from "../src/errors.ts";
import { MAX_FRAME_BYTES, MAX_MESSAGE_BYTES } from "../src/limits.ts";
import { capnpAvailable, generateWireCode } from "../scripts/_gen_lib.ts";
import { loadFrameCorpus } from "./_support/fuzz.ts";

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
  assertEquals(Object.keys(REQUEST).length, 30);
  assertEquals(Object.keys(RESPONSE).length, 20);
});

/** SHA-256 of `bytes`, hex. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}

// tests/fixtures/frames_reencoded.json: the SHA-256 of encodeFrame(decodeFrame(f)) for each
// recorded frame f, as the encoder of 2026-12-07 (capnp-es's toArrayBuffer) wrote them.
Deno.test("encodeFrame writes the recorded frames' values byte for byte as before", async () => {
  const corpus = await loadFrameCorpus();
  const golden = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/frames_reencoded.json", import.meta.url)),
  ) as Record<string, string>;
  assertEquals(Object.keys(golden).sort(), [...corpus.keys()].sort());
  for (const [name, bytes] of corpus) {
    const frame = decodeFrame(bytes);
    assertEquals(await sha256Hex(encodeFrame(frame)), golden[name], name);
    // what goes on the stream: the 4-byte big-endian length, then the same bytes
    assertEquals(encodeFramePrefixed(frame), lengthPrefixed(encodeFrame(frame)), name);
  }
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

// ------------------------------------------------------------------ message content

function sampleContent(): MessageContent {
  return {
    version: CONTENT_VERSION,
    messageId: crypto.getRandomValues(new Uint8Array(16)),
    sentAtMs: [0, 1_767_225_600_000, Number.MAX_SAFE_INTEGER][rnd(3)]!,
    body: { kind: "text", text: ["", "hi", "名前 ✓\n\u202e", "x".repeat(rnd(5000))][rnd(4)]! },
  };
}

/** Byte offset of the root struct's data section in a single-segment message. */
function rootData(bytes: Uint8Array): number {
  return 16 + 8 * (new DataView(bytes.buffer, bytes.byteOffset).getInt32(8, true) >> 2);
}

Deno.test("encodeContent/decodeContent round-trip text content, also from a subarray", () => {
  for (let i = 0; i < 50; i++) {
    const c = sampleContent();
    const bytes = encodeContent(c);
    assertEquals(decodeContent(bytes), c);
    const padded = new Uint8Array(bytes.length + 13);
    padded.set(bytes, 5);
    assertEquals(decodeContent(padded.subarray(5, 5 + bytes.length)), c);
  }
});

Deno.test("decodeContent turns random and mutated bytes into ValidationError, never a crash", () => {
  const valid = Array.from({ length: 8 }, () => encodeContent(sampleContent()));
  let rejected = 0;
  for (let i = 0; i < 5000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      const len = [0, 1, 7, 8, 16, 64, 256][rnd(7)]! + 8 * rnd(8);
      bytes = crypto.getRandomValues(new Uint8Array(len));
      if (rnd(2) === 0 && len >= 8) bytes.set([0, 0, 0, 0], 0);
    } else {
      bytes = valid[rnd(valid.length)]!.slice();
      for (let f = 1 + rnd(4); f > 0; f--) bytes[rnd(bytes.length)] = rnd(256);
    }
    try {
      decodeContent(bytes);
    } catch (e) {
      assertInstanceOf(e, ValidationError);
      rejected++;
    }
  }
  assert(rejected > 2500);
});

Deno.test("decodeContent refuses an unknown body member or a newer version: upgrade qpq", () => {
  const bytes = encodeContent(sampleContent());
  const data = rootData(bytes);
  for (const which of [1, 100, 0x7fff]) { // 1: the reserved member; 100+: a newer sender's
    const b = bytes.slice();
    new DataView(b.buffer).setUint16(data + 2, which, true);
    const e = assertThrows(() => decodeContent(b), ValidationError) as ValidationError;
    assertEquals(e.message, "Message content type is not supported: upgrade qpq");
    assertEquals(e.code, "unsupported_version");
  }
  const v2 = encodeContent({ ...sampleContent(), version: 2 });
  assertEquals(
    (assertThrows(() => decodeContent(v2), ValidationError) as ValidationError).code,
    "unsupported_version",
  );
  const v0 = bytes.slice();
  new DataView(v0.buffer).setUint16(data, 0, true);
  assertThrows(() => decodeContent(v0), ValidationError, "version 0");
});

Deno.test("decodeContent and encodeContent enforce the id length and the size cap", () => {
  assertThrows(
    () => encodeContent({ ...sampleContent(), messageId: new Uint8Array(15) }),
    UsageError,
    "16 bytes",
  );
  assertThrows(() => encodeContent({ ...sampleContent(), sentAtMs: -1 }), UsageError);
  assertThrows(
    () => encodeContent({ ...sampleContent(), body: { kind: "file" } as never }),
    UsageError,
  );
  const big = {
    ...sampleContent(),
    body: { kind: "text" as const, text: "x".repeat(MAX_MESSAGE_BYTES) },
  };
  assertEquals(
    (assertThrows(() => encodeContent(big), UsageError) as UsageError).code,
    "too_large",
  );
  const huge = new Uint8Array(MAX_MESSAGE_BYTES + 8);
  const tooLarge = assertThrows(() => decodeContent(huge), ValidationError) as ValidationError;
  assertEquals(tooLarge.code, "too_large");
  // a Content whose id pointer is cleared (null): id of 0 bytes
  const bytes = encodeContent(sampleContent());
  const b = bytes.slice();
  b.fill(0, rootData(b) + 16, rootData(b) + 24);
  assertThrows(() => decodeContent(b), ValidationError, "message id");
});

Deno.test("FrameReader refuses an announced length over the cap before the body arrives", async () => {
  const announce = (n: number) => {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, n);
    return head;
  };
  let pulls = 0;
  // A header announcing one byte over the cap, then a body that never ends: the reader
  // must answer from the header alone.
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(announce(MAX_FRAME_BYTES + 1));
    },
    pull() {
      pulls++;
      return new Promise(() => {}); // nothing more, ever
    },
  });
  await assertRejects(
    () => new FrameReader(readable).next(),
    ValidationError,
    `Frame of ${MAX_FRAME_BYTES + 1} bytes exceeds the limit of ${MAX_FRAME_BYTES} bytes`,
  );
  assert(pulls <= 1, `read ${pulls} times past the header`);
  // exactly the cap is fine
  const ok = new FrameReader(
    new ReadableStream({
      start(c) {
        c.enqueue(lengthPrefixed(new Uint8Array(MAX_FRAME_BYTES)));
        c.close();
      },
    }),
  );
  assertEquals((await ok.next())?.length, MAX_FRAME_BYTES);
});
