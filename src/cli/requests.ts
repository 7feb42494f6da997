/**
 * `qpq requests`: DMs and invitations from people who are not contacts.
 *
 * @module
 */
import { clientCommand, requestJson, requestLine } from "./_client.ts";
import { visible } from "./_terminal.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq requests --username NAME [--password PW]

Receive what is waiting, then list the DMs and group invitations from people who are not
your contacts, one line each ("request from @mallory: 2 messages", "mallory invites you
to #x"). Nothing of a request is shown until you accept it (qpq accept) and none of it
reaches you once you block its sender (qpq block). People you wrote to, invited or share
a group with are contacts: their DMs and invitations are shown at once.

Invitations the server holds (you are in as many conversations as it allows:
max_groups_per_user) follow, "held: #x (3 members)": nothing of them reaches you until
you accept one (qpq accept #x, once under the limit) or decline it (qpq accept --decline #x).`;

/** Run `qpq requests`. */
export const run = clientCommand({
  name: "requests",
  usage: USAGE,
  // the list below has the current count of each request: no line per request on the way
  shows: (e) => e.kind !== "request",
  async run(client, { values }) {
    await client.sync();
    const rs = client.requests();
    if (values.json) {
      for (const r of rs) println(JSON.stringify(requestJson(r.conversation, r.from, r.messages)));
    } else if (rs.length === 0) println("No requests");
    else for (const r of rs) println(requestLine(r.conversation, r.from, r.messages));
    for (const h of await client.invitations()) {
      const name = h.kind === "group" ? `#${h.name}` : h.channelId;
      if (values.json) {
        println(
          JSON.stringify({
            type: "held",
            conversation: name,
            kind: h.kind,
            id: h.channelId,
            members: h.members.length,
          }),
        );
      } else println(`held: ${visible(name)} (${h.members.length} members)`);
    }
    return 0;
  },
});
