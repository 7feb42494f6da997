/**
 * `qpq leave <group>`: leave a group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq leave <group> --username NAME [--password PW]

Leave a group: a remove proposal goes to the members, the next member online commits it,
and your local group keys are deleted now.`;

/** Run `qpq leave`. */
export const run = clientCommand({
  name: "leave",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const name = client.conversation(positionals[0]!).name;
    await client.leave(positionals[0]!);
    println(values.json ? JSON.stringify({ type: "left", conversation: name }) : `Left ${name}`);
    return 0;
  },
});
