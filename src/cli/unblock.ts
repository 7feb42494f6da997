/**
 * `qpq unblock <user>`: undo a block.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";
import { unblockedLine } from "./_membership.ts";

/** Usage text. */
export const USAGE = `Usage: qpq unblock <@user> --username NAME [--password PW]

Unblock a user: the server delivers their messages and invitations again, and says how
many it dropped during the block (those are gone). They are a contact again if you share a
conversation you accepted; else their next DM or invitation arrives as a request. A DM or
group they opened during the block asks its members to add you again.`;

/** Run `qpq unblock`. */
export const run = clientCommand({
  name: "unblock",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const user = positionals[0]!.replace(/^@/, "");
    const r = await client.unblock(user);
    println(
      values.json
        ? JSON.stringify({ type: "unblock", user, dropped: r.dropped, repairing: r.repairing })
        : `Unblocked @${visible(user)}${unblockedLine(r)}`,
    );
    return 0;
  },
});
