/** Tests for src/client/content.ts: message content is the schema's Content type. */
import { assertEquals, assertThrows } from "./_support/assert.ts";
import { decodeContent, encodeContent } from "../src/client/content.ts";
import { uuidToString, uuidv7 } from "../src/client/ids.ts";
import { utf8 } from "../src/bytes.ts";
import { ValidationError } from "../src/errors.ts";

Deno.test("encodeContent writes the schema's Content and decodeContent reads it back", () => {
  const id = uuidv7();
  const bytes = encodeContent({
    messageId: id,
    sentAtMs: 1_700_000_000_123,
    body: { kind: "text", text: "hi ✓\nthere" },
  });
  assertEquals(bytes[0], 0, "a Cap'n Proto message (segment table), not JSON");
  assertEquals(decodeContent(bytes), {
    messageId: uuidToString(id),
    sentAtMs: 1_700_000_000_123,
    body: { kind: "text", text: "hi ✓\nthere" },
  });
});

Deno.test("decodeContent still reads the JSON content of older builds", () => {
  assertEquals(decodeContent(utf8(JSON.stringify({ t: "old", ts: 5, id: "x" }))), {
    body: { kind: "text", text: "old" },
    sentAtMs: 5,
    messageId: "x",
  });
});

Deno.test("decodeContent refuses what is not content", () => {
  for (const b of [utf8("{"), utf8('{"t":1}'), new Uint8Array([0, 0, 0, 0]), utf8("hello")]) {
    assertThrows(() => decodeContent(b), ValidationError);
  }
});
