/**
 * `qpq update [<group>]`: self-update (fresh MLS path secrets).
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq update [<conversation>] --username NAME [--password PW]

Commit a self-update: new key material for you in the group, so a past compromise of your
device stops reaching new messages (post-compromise security). Without a conversation,
every group whose last own change is older than a day is updated (the REPL does this by
itself).`;

/** Run `qpq update`. */
export const run = clientCommand({
  name: "update",
  usage: USAGE,
  positionals: { max: 1 },
  async run(client, { values, positionals }) {
    const ref = positionals[0];
    const done = ref === undefined
      ? await client.selfUpdateDue()
      : (await client.update(ref), [client.conversation(ref).name]);
    if (values.json) println(JSON.stringify({ type: "updated", conversations: done }));
    else println(done.length ? `Updated ${done.join(", ")}` : "Nothing to update");
    return 0;
  },
});
