/**
 * `qpq invite <group> <user…>`: add members to a group in one MLS commit.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { eprintln, println } from "./_args.ts";
import { membershipLines } from "./_membership.ts";

/** Usage text. */
export const USAGE = `Usage: qpq invite <group> <user>... --username NAME [--password PW]

Add users to a group: their KeyPackages are fetched and checked against their published
identity keys, one commit adds them all, and each receives a Welcome to join with.
"Invited ..." is printed only once the server accepted the commit; a commit another
member's change beat is retried after catching up. Exit code 1 when nobody was added (all
members already) or the server refused.`;

/** Run `qpq invite`. */
export const run = clientCommand({
  name: "invite",
  usage: USAGE,
  positionals: { min: 2 },
  async run(client, { values, positionals }) {
    const [group, ...users] = positionals as [string, ...string[]];
    const change = await client.invite(group, users, (done, total) => {
      if (total >= 5 && !values.json) eprintln(`fetching KeyPackages: ${done}/${total}`);
    });
    const conv = client.conversation(group);
    if (values.json) {
      println(JSON.stringify({
        type: "invited",
        conversation: conv.name,
        users: change.done,
        already: change.already,
        byOthers: change.byOthers,
      }));
    } else for (const line of membershipLines("invite", conv.name, change)) println(line);
    return 0;
  },
});
