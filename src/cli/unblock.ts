/**
 * `qpq unblock <user>`: undo a block.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq unblock <@user> --username NAME [--password PW]

Unblock a user: the server delivers their messages and invitations again. They are not a
contact: their next DM or invitation arrives as a request. What they sent while blocked is
gone.`;

/** Run `qpq unblock`. */
export const run = clientCommand({
  name: "unblock",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const user = positionals[0]!.replace(/^@/, "");
    await client.unblock(user);
    println(
      values.json ? JSON.stringify({ type: "unblock", user }) : `Unblocked @${visible(user)}`,
    );
    return 0;
  },
});
