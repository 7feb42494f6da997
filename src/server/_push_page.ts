/**
 * The page a push sends from what the store announced, without reading the queue back.
 *
 * ```
 * notify(recipient, message) ─► announced (per subscription, at most MAX_FETCH_PAGE)
 * pump ─► announcedPage: drop seq <= cursor ─► seq == cursor + 1? ─► the consecutive run,
 *         within the page bounds (pageLength, the rule fetchPage uses)
 *                                               └─ no (a gap): undefined ─► fetch the queue
 * ```
 *
 * @module
 */
import { pageLength, type QueuedMessage, type QueuedPage } from "../store/server/mod.ts";
import { utf8 } from "../bytes.ts";
import { MAX_FETCH_PAGE, MAX_FETCH_PAGE_BYTES, MESSAGE_ENVELOPE_BYTES } from "../limits.ts";

/**
 * The next push page from the messages the store announced (as they sit in the queue, on
 * disk), when they continue the queue right after `cursor`: a run of consecutive sequence
 * numbers from `cursor + 1` (per-queue numbers grow by one per delivery, so nothing lies
 * between), within the page bounds. Announced messages at or below the cursor (pushed
 * meanwhile by a fetch) are dropped. Undefined when the queue must be read instead: nothing
 * announced, or a gap (the subscription started behind, or announcements were dropped).
 */
export function announcedPage(announced: QueuedMessage[], cursor: number): QueuedPage | undefined {
  while (announced.length > 0 && announced[0]!.seq <= cursor) announced.shift();
  if (announced[0]?.seq !== cursor + 1) return undefined;
  let run = 1;
  while (run < announced.length && announced[run]!.seq === announced[run - 1]!.seq + 1) run++;
  const sizes = announced.slice(0, run).map((m) =>
    utf8(m.sender).length + m.messageId.length + m.payload.length
  );
  const take = pageLength(sizes, MAX_FETCH_PAGE, MAX_FETCH_PAGE_BYTES, MESSAGE_ENVELOPE_BYTES);
  const messages = announced.splice(0, take);
  // more after these: the rest of the run, or a gap that a read of the queue fills
  return { messages, more: announced.length > 0 };
}
