/**
 * `qpq logout`: revoke the session on the server and forget the token.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq logout --username NAME [--password PW]

Revoke the session token on the server and delete it from the local state.`;

/** Run `qpq logout`. */
export const run = clientCommand({
  name: "logout",
  usage: USAGE,
  session: false,
  async run(client, { values }) {
    await client.logout();
    println(
      values.json
        ? JSON.stringify({ type: "logout", username: client.username })
        : `Logged out ${client.username}`,
    );
    return 0;
  },
});
