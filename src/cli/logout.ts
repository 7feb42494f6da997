/**
 * `qpq logout`: revoke the session on the server and forget the token; with
 * `--everywhere`, every session of the account (every device) ends.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq logout --username NAME [--password PW] [--everywhere]

Revoke the session token on the server and delete it from the local state.

Options:
  --everywhere   end every session of the account, on every device (each must log in
                 again with the password)`;

/** Run `qpq logout`. */
export const run = clientCommand({
  name: "logout",
  usage: USAGE,
  options: { everywhere: { type: "boolean" } },
  session: false,
  async run(client, { values }) {
    if (values.everywhere) {
      const n = await client.logoutEverywhere();
      println(
        values.json
          ? JSON.stringify({
            type: "logout",
            username: client.username,
            everywhere: true,
            sessions: n,
          })
          : `Logged out of every session of @${client.username} (${n} session${
            n === 1 ? "" : "s"
          } ended)`,
      );
      return 0;
    }
    await client.logout();
    println(
      values.json
        ? JSON.stringify({ type: "logout", username: client.username })
        : `Logged out ${client.username}`,
    );
    return 0;
  },
});
