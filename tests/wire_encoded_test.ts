/** Tests for src/wire/encoded.ts: a request encoded once and sent with any request id. */
import assert from "node:assert/strict";
import { decodeFrame, encodedRequest, encodeRequestOnce, withRequestId } from "../src/wire/mod.ts";
import { ValidationError } from "../src/errors.ts";
import { randomBytes } from "../src/bytes.ts";

Deno.test("withRequestId sends an encoded request with the connection's id, nothing else changed", () => {
  for (const size of [0, 10, 100_000, 600_000]) {
    const enc = encodeRequestOnce({
      kind: "enqueue",
      channelId: randomBytes(16),
      messageId: randomBytes(16),
      payload: randomBytes(size),
      messageKind: "application",
      epoch: 7,
      recipients: [],
    });
    for (const id of [1, 2, 0xffff_ffff, Number.MAX_SAFE_INTEGER]) {
      const frame = decodeFrame(withRequestId(enc, id));
      assert.equal(frame.requestId, id);
      assert.equal(frame.type, "request");
      const back = decodeFrame(enc.bytes);
      assert.equal(back.requestId, 0, "the stored bytes are not changed");
      if (frame.type === "request" && back.type === "request") {
        assert.deepEqual(frame.request, back.request);
      }
    }
  }
});

Deno.test("encodedRequest refuses bytes that are not a frame", () => {
  for (const b of [new Uint8Array(0), new Uint8Array(15), randomBytes(64).fill(0xff)]) {
    assert.throws(() => encodedRequest("enqueue", b), ValidationError);
  }
});
