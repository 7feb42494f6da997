/**
 * `qpq history <conversation>`: print stored messages.
 *
 * @module
 */
import { clientCommand, historyLines, messageJson, otherMembers } from "./_client.ts";
import { println } from "./_args.ts";
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq history <conversation> [--count N] --username NAME [--password PW]

Print the last N (default 20) messages of a conversation (@user or #group) from the
encrypted local history, each with the local time it was sent and a line where a new day
begins (--json: sentAt and receivedAt in ms). Each message shows its number in the
conversation ([3]), how send --reply-to, react, edit and delete name it; a reply quotes
what it answers, an edited message says "(edited)", a deleted one "(message deleted)", and
reactions follow it (👍 2). Our messages carry their receipts: ✓ sent, ✓✓ delivered to
every member, ✓✓✓ read by every member (--json: receiptState and receipts, each member's
deliveredAt and readAt; qpq receipts N lists them). Marks the conversation read (a read
receipt, unless turned off with qpq receipts off). Works offline.`;

/** Run `qpq history`. */
export const run = clientCommand({
  name: "history",
  usage: USAGE,
  options: { count: { type: "string" } },
  positionals: { min: 1, max: 1 },
  session: false,
  async run(client, { values, positionals }) {
    const count = Number(values.count ?? "20");
    if (!Number.isInteger(count) || count < 1 || count > 100_000) {
      throw new UsageError("--count must be 1 to 100000");
    }
    const conv = client.conversation(positionals[0]!);
    const messages = client.history(conv.name, count);
    const look = client.store;
    const others = otherMembers(client, conv);
    if (values.json) {
      for (const m of messages) println(JSON.stringify(messageJson(conv, m, look, others)));
    } else for (const line of historyLines(conv, messages, look, others)) println(line);
    await client.markRead(conv.name); // what history showed is read (a read receipt)
    return 0;
  },
});
