/**
 * `qpq delete`: delete one of your messages for every member.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import {
  CONVERSATION_OPTIONS,
  CONVERSATION_USAGE,
  conversationOf,
  printChanged,
} from "./_change.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq delete (--to USER | --group NAME) MESSAGE --username NAME [--password PW]

Delete MESSAGE (one of yours) for everyone: its text leaves every member's history, which
shows "message deleted" in its place. Members refuse a deletion by anyone else.

Options:
${CONVERSATION_USAGE}`;

/** Run `qpq delete`. */
export const run = clientCommand({
  name: "delete",
  usage: USAGE,
  options: CONVERSATION_OPTIONS,
  positionals: { min: 1, max: 1 },
  session: false,
  offline: true,
  async run(client, { values, positionals }) {
    const ref = conversationOf(client, values);
    const m = await client.deleteMessage(ref, positionals[0]!, { receiveFirst: true });
    printChanged(client, ref, "deleted", m, values.json);
    return 0;
  },
});
