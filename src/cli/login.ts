/**
 * `qpq login`: log in with OPAQUE and keep the session token (encrypted) in the state.
 *
 * @module
 */
import { clientCommand, createdState } from "./_client.ts";
import { println } from "./_args.ts";
import { AuthError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq login --username NAME [--password PW]

Log in with OPAQUE (the password never leaves this machine) and store the session token
in the encrypted local state. Other commands log in by themselves when needed. Without a
local state (another folder, another --state), the login still runs and says where the
account's identity lives: qpq keeps one identity per account (no second devices yet).`;

/** Run `qpq login`. */
export const run = clientCommand({
  name: "login",
  usage: USAGE,
  session: false,
  create: true,
  discardCreated: true,
  async run(client, { values }) {
    try {
      await client.login();
    } catch (e) {
      // no local state: the account is not found here, whatever the server says
      if (!createdState(client) || !(e instanceof AuthError && e.code === "auth")) throw e;
      throw new AuthError(
        `Cannot log in as ${client.username} on ${client.server}: wrong password, or no such account (qpq register-user creates one); no local state was found for it here`,
        { code: "auth", cause: e },
      );
    }
    const until = new Date(client.store.meta.sessionExpiresAt ?? 0).toISOString();
    if (values.json) {
      println(JSON.stringify({ type: "login", username: client.username, expiresAt: until }));
    } else {println(
        `Logged in as ${client.username} on ${client.server} (session valid until ${until})`,
      );}
    return 0;
  },
});
