/**
 * `qpq block [user]`: block a user, or list the blocked ones.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq block [@user] --username NAME [--password PW]

Block a user: the server drops their DMs, group messages and invitations to you from now
on (they are not told), and their pending requests are dropped (a group they invited you
to is left). Without a user: list the users you blocked. Undo with qpq unblock.`;

/** Run `qpq block`. */
export const run = clientCommand({
  name: "block",
  usage: USAGE,
  positionals: { max: 1 },
  async run(client, { values, positionals }) {
    const user = positionals[0]?.replace(/^@/, "");
    if (user === undefined) {
      const blocked = client.listBlocked();
      if (values.json) println(JSON.stringify({ type: "blocked", users: blocked }));
      else if (blocked.length === 0) println("No blocked users");
      else for (const u of blocked) println(`blocked @${visible(u)}`);
      return 0;
    }
    const dropped = await client.block(user);
    if (values.json) println(JSON.stringify({ type: "block", user, droppedRequests: dropped }));
    else {
      println(
        `Blocked @${visible(user)}` +
          (dropped > 0 ? ` (dropped ${dropped} request${dropped === 1 ? "" : "s"})` : ""),
      );
    }
    return 0;
  },
});
