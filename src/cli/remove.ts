/**
 * `qpq remove <group> <user>`: remove a member from a group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { membershipLines } from "./_membership.ts";

/** Usage text. */
export const USAGE = `Usage: qpq remove <group> <user>... --username NAME [--password PW]

Remove members from a group with an MLS commit: the group moves to a new epoch whose keys
the removed members never learn, and the server stops delivering to them. "Removed ..." is
printed only once the server accepted the commit; a commit another member's change beat is
retried after catching up, and a user that change removed already is named as such. Exit
code 1 when nobody was removed or the server refused.`;

/** Run `qpq remove`. */
export const run = clientCommand({
  name: "remove",
  usage: USAGE,
  positionals: { min: 2 },
  async run(client, { values, positionals }) {
    const [group, ...users] = positionals as [string, ...string[]];
    const change = await client.remove(group, users);
    const conv = client.conversation(group);
    if (values.json) {
      println(JSON.stringify({
        type: "removed",
        conversation: conv.name,
        users: change.done,
        already: change.already,
        byOthers: change.byOthers,
      }));
    } else for (const line of membershipLines("remove", conv.name, change)) println(line);
    return 0;
  },
});
