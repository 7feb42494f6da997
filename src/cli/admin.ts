/**
 * `qpq admin grant|revoke <group> <user>`: change who is an admin of a group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { UsageError } from "../errors.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq admin grant|revoke <group> <user> --username NAME [--password PW]

Make a member an admin of a group, or no longer one. Admins remove members, grant and
revoke admin and change the group's settings; every member's client checks this from the
group's MLS state, so a change by a non-admin is refused by all of them. The creator of a
group is its first admin; the last admin cannot be revoked.`;

/** Run `qpq admin`. */
export const run = clientCommand({
  name: "admin",
  usage: USAGE,
  positionals: { min: 3, max: 3 },
  async run(client, { values, positionals }) {
    const [verb, group, user] = positionals as [string, string, string];
    if (verb !== "grant" && verb !== "revoke") {
      throw new UsageError(
        "Say `qpq admin grant <group> <user>` or `qpq admin revoke <group> <user>`",
      );
    }
    const changed = await client.setAdmin(group, user, verb === "grant");
    const conv = client.conversation(group);
    if (values.json) {
      println(
        JSON.stringify({
          type: "admin",
          conversation: conv.name,
          user,
          admin: verb === "grant",
          changed,
        }),
      );
    } else {
      const what = verb === "grant" ? "is an admin" : "is not an admin";
      println(`${visible(user)} ${what} of ${visible(conv.name)}${changed ? "" : " already"}`);
    }
    return 0;
  },
});
