/**
 * `qpq join`: accept every pending invitation.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq join --username NAME [--password PW]

Receive what is waiting and join every group or DM you were invited to (their Welcome
messages), requests from people who are not contacts included (see qpq requests): their
inviters become contacts. Messages received on the way are stored and shown.`;

/** Run `qpq join`. */
export const run = clientCommand({
  name: "join",
  usage: USAGE,
  async run(client, { values }) {
    const before = new Set(client.listConversations().map((c) => c.id));
    await client.join();
    const joined = client.listConversations().filter((c) => !before.has(c.id) && c.kind !== "self");
    if (values.json) println(JSON.stringify({ type: "join", joined: joined.map((c) => c.name) }));
    // each join was printed as it happened ("* joined #team (invited by alice)")
    else if (joined.length === 0) println("No pending invitations");
    return 0;
  },
});
