/**
 * `qpq register-user`: create a local identity and register it on the server.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { env, println } from "./_args.ts";
import { fingerprint } from "../crypto/mod.ts";

/** Usage text. */
export const USAGE = `Usage: qpq register-user --username NAME [--password PW] [--auth-token TOKEN]

Create a local state (new Ed25519 identity, encrypted with your password), register the
account on the server with OPAQUE (the password never leaves this machine), publish the
identity key and upload KeyPackages so others can add you to groups.

Options:
  --auth-token TOKEN   the server's invite token (env QPQ_AUTH_TOKEN, default devtoken)`;

/** Run `qpq register-user`. */
export const run = clientCommand({
  name: "register-user",
  usage: USAGE,
  options: { "auth-token": { type: "string" } },
  create: true,
  session: false,
  async run(client, { values }) {
    const authToken = (values["auth-token"] as string | undefined) ?? env("QPQ_AUTH_TOKEN") ??
      "devtoken";
    await client.register({ authToken });
    if (values.json) {
      println(
        JSON.stringify({ type: "registered", username: client.username, server: client.server }),
      );
    } else {
      println(`Registered ${client.username} on ${client.server}`);
      println(`identity fingerprint: ${fingerprint(client.identityPublicKey)}`);
    }
    return 0;
  },
});
