/**
 * `qpq login`: log in with OPAQUE and keep the session token (encrypted) in the state.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq login --username NAME [--password PW]

Log in with OPAQUE (the password never leaves this machine) and store the session token
in the encrypted local state. Other commands log in by themselves when needed.`;

/** Run `qpq login`. */
export const run = clientCommand({
  name: "login",
  usage: USAGE,
  session: false,
  async run(client, { values }) {
    await client.login();
    const until = new Date(client.store.meta.sessionExpiresAt ?? 0).toISOString();
    if (values.json) {
      println(JSON.stringify({ type: "login", username: client.username, expiresAt: until }));
    } else {println(
        `Logged in as ${client.username} on ${client.server} (session valid until ${until})`,
      );}
    return 0;
  },
});
