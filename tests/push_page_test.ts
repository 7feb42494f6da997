/**
 * Pushes from what the store announced (issue 19): a push page is taken from the messages
 * the store announced with its notify only when they continue the queue right after the
 * subscription's cursor; a gap (a subscription that started behind, dropped announcements)
 * means the queue is read instead, so no message is skipped or pushed twice. The same
 * page bounds as a fetch. The whole path over QUIC: tests/server_test.ts (subscribe).
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { announcedPage } from "../src/server/_push_page.ts";
import { MAX_FETCH_PAGE, MAX_FETCH_PAGE_BYTES } from "../src/limits.ts";
import type { QueuedMessage } from "../src/store/server/mod.ts";

const msg = (seq: number, bytes = 10): QueuedMessage => ({
  seq,
  sender: "alice",
  messageId: `m${seq}`,
  channelId: null,
  payload: new Uint8Array(bytes),
  receivedAt: 0,
});
const seqs = (ms: QueuedMessage[] | undefined) => ms?.map((m) => m.seq);

Deno.test("announcedPage takes the run that continues the queue after the cursor", () => {
  const announced = [msg(4), msg(5), msg(6)];
  const page = announcedPage(announced, 3);
  assertEquals(seqs(page?.messages), [4, 5, 6]);
  assertEquals(page?.more, false);
  assertEquals(announced, [], "taken out");
});

Deno.test("announcedPage reads the queue instead when the announcements do not follow the cursor", () => {
  // a subscription that started behind: messages 1..3 are in the queue, not announced
  const announced = [msg(4), msg(5)];
  assertEquals(announcedPage(announced, 0), undefined);
  assertEquals(seqs(announced), [4, 5], "kept for after the read of the queue");
  // the read pushed up to 4: the rest continues it
  assertEquals(seqs(announcedPage(announced, 4)?.messages), [5]);
  assertEquals(announcedPage([], 7), undefined, "nothing announced");
});

Deno.test("announcedPage stops at a gap inside the run; the queue fills it", () => {
  const announced = [msg(1), msg(2), msg(4)];
  const page = announcedPage(announced, 0);
  assertEquals(seqs(page?.messages), [1, 2]);
  assert(page?.more, "more follows: the gap is read from the queue");
  assertEquals(announcedPage(announced, 2), undefined);
});

Deno.test("announcedPage drops what a read of the queue already pushed", () => {
  const announced = [msg(2), msg(3), msg(4)];
  assertEquals(seqs(announcedPage(announced, 3)?.messages), [4]);
});

Deno.test("announcedPage keeps a push within the page bounds of a fetch", () => {
  const many = Array.from({ length: MAX_FETCH_PAGE + 5 }, (_, i) => msg(i + 1));
  const first = announcedPage(many, 0);
  assertEquals(first?.messages.length, MAX_FETCH_PAGE);
  assert(first?.more);
  assertEquals(seqs(announcedPage(many, MAX_FETCH_PAGE)?.messages)?.length, 5);
  // bytes: two messages of more than half the page go one per push, a huge one alone
  const half = Math.ceil(MAX_FETCH_PAGE_BYTES / 2);
  const big = [msg(1, half), msg(2, half), msg(3, 2 * MAX_FETCH_PAGE_BYTES)];
  assertEquals(seqs(announcedPage(big, 0)?.messages), [1]);
  assertEquals(seqs(announcedPage(big, 1)?.messages), [2]);
  assertEquals(seqs(announcedPage(big, 2)?.messages), [3], "one maximal message is never stuck");
});
