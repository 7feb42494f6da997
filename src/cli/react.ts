/**
 * `qpq react`: react to a message (again with the same emoji: withdraw it).
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
  `Usage: qpq react (--to USER | --group NAME) MESSAGE EMOJI --username NAME [--password PW]

React to MESSAGE with EMOJI (at most a few characters), for every member. Each member has
one reaction per message: a new one replaces yours; the same one again withdraws it.

Options:
${CONVERSATION_USAGE}`;

/** Run `qpq react`. */
export const run = clientCommand({
  name: "react",
  usage: USAGE,
  options: CONVERSATION_OPTIONS,
  positionals: { min: 2, max: 2 },
  session: false,
  offline: true,
  async run(client, { values, positionals }) {
    const ref = conversationOf(client, values);
    const m = await client.react(ref, positionals[0]!, positionals[1]!, { receiveFirst: true });
    printChanged(client, ref, "reacted", m, values.json);
    return 0;
  },
});
