/**
 * `qpq receipts`: who got and read one of our messages; or turn read receipts on or off.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { CONVERSATION_OPTIONS, CONVERSATION_USAGE, conversationOf } from "./_change.ts";
import { receiptState } from "../client/receipts.ts";
import { receiptLines } from "./_lines.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq receipts (--to USER | --group NAME) MESSAGE --username NAME [--password PW]
       qpq receipts on|off --username NAME [--password PW]

List who got (delivered) and who read one of our messages, each member with the time
their device says. Or turn sending read receipts on or off (kept in the local state; on
by default; delivered receipts are always sent, but never to a request or a blocked user).

Options:
${CONVERSATION_USAGE}`;

/** Run `qpq receipts`. */
export const run = clientCommand({
  name: "receipts",
  usage: USAGE,
  options: CONVERSATION_OPTIONS,
  positionals: { min: 1, max: 1 },
  session: false,
  run(client, { values, positionals }) {
    const arg = positionals[0]!;
    if (arg === "on" || arg === "off") {
      client.setReadReceipts(arg === "on");
      if (values.json) println(JSON.stringify({ type: "receipts", readReceipts: arg === "on" }));
      else println(`Read receipts ${arg}`);
      return Promise.resolve(0);
    }
    const ref = conversationOf(client, values);
    const m = client.findMessage(ref, arg);
    if (values.json) {
      const others = client.members(ref).filter((u) => u !== client.username);
      println(JSON.stringify({
        type: "receipts",
        messageId: m.messageId,
        receiptState: m.direction === "out" ? receiptState(m, others) : undefined,
        receipts: m.receipts ?? [],
      }));
    } else for (const line of receiptLines(client, ref, m)) println(line);
    return Promise.resolve(0);
  },
});
