/**
 * `qpq accept <user|#group>`: accept a request and show what it holds.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";

/** Usage text. */
export const USAGE = `Usage: qpq accept <@user|#group> --username NAME [--password PW]

Accept a request (see qpq requests): "@user" accepts every DM and invitation from that
user, "#group" one invitation; a bare name means a user, else a group. The sender (and
the group's members) become contacts, the conversation is listed from now on, and the
messages it held are printed in order.`;

/** Run `qpq accept`. */
export const run = clientCommand({
  name: "accept",
  usage: USAGE,
  // what is accepted is printed in full below: no request line for it on the way
  shows: (e) => e.kind !== "request",
  positionals: { min: 1, max: 1 },
  async run(client, { positionals }) {
    await client.sync();
    // "* joined …" and each held message are printed as events
    client.accept(positionals[0]!);
    return 0;
  },
});
