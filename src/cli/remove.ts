/**
 * `qpq remove <group> <user>`: remove a member from a group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq remove <group> <user>... --username NAME [--password PW]

Remove members from a group with an MLS commit: the group moves to a new epoch whose keys
the removed members never learn, and the server stops delivering to them.`;

/** Run `qpq remove`. */
export const run = clientCommand({
  name: "remove",
  usage: USAGE,
  positionals: { min: 2 },
  async run(client, { values, positionals }) {
    const [group, ...users] = positionals as [string, ...string[]];
    await client.remove(group, users);
    const conv = client.conversation(group);
    println(
      values.json
        ? JSON.stringify({ type: "removed", conversation: conv.name, users })
        : `Removed ${users.join(", ")} from ${conv.name}`,
    );
    return 0;
  },
});
