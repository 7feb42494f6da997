/**
 * `qpq verify <user>`: the safety number to compare with a contact.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { parseUsername } from "../client/conversations.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq verify <user> --username NAME [--password PW]

Show the safety number you share with <user> and their identity key fingerprint. Read the
safety number to each other (in person or on a call): if it matches, the server did not
swap their key. qpq pins each contact's key on first use and refuses a later change.`;

/** Run `qpq verify`. */
export const run = clientCommand({
  name: "verify",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const user = parseUsername(positionals[0]!);
    const v = await client.verify(user);
    if (values.json) println(JSON.stringify({ type: "verify", user, ...v }));
    else {
      println(`safety number with ${user}:`);
      println(`  ${v.safetyNumber}`);
      println(`${user}'s identity fingerprint: ${v.fingerprint}`);
    }
    return 0;
  },
});
