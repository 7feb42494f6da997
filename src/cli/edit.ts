/**
 * `qpq edit`: change the text of one of your messages, for every member.
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
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq edit (--to USER | --group NAME) MESSAGE TEXT --username NAME [--password PW]

Replace the text of MESSAGE (one of yours) with TEXT for every member; it shows "(edited)".
Members refuse an edit of a message its sender did not write.

Options:
${CONVERSATION_USAGE}`;

/** Run `qpq edit`. */
export const run = clientCommand({
  name: "edit",
  usage: USAGE,
  options: CONVERSATION_OPTIONS,
  positionals: { min: 2, max: 2 },
  session: false,
  offline: true,
  async run(client, { values, positionals }) {
    const ref = conversationOf(client, values);
    const text = positionals[1]!;
    if (text.length === 0) throw new UsageError("Nothing to send: the text is empty");
    const m = await client.edit(ref, positionals[0]!, text, { receiveFirst: true });
    printChanged(client, ref, "edited", m, values.json);
    return 0;
  },
});
