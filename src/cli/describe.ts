/**
 * `qpq describe <group> <text>`: set a group's topic (admins only).
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq describe <group> <text> --username NAME [--password PW]

Set a group's description (its topic, at most 512 bytes; "" clears it). Only admins may:
every member's client refuses the change from anyone else. \`members\` shows the topic.`;

/** Run `qpq describe`. */
export const run = clientCommand({
  name: "describe",
  usage: USAGE,
  positionals: { min: 2 },
  async run(client, { values, positionals }) {
    const [group, ...words] = positionals as [string, ...string[]];
    const text = words.join(" ");
    const changed = await client.describe(group, text);
    const conv = client.conversation(group);
    if (values.json) {
      println(
        JSON.stringify({ type: "settings", conversation: conv.name, description: text, changed }),
      );
    } else println(`Topic of ${visible(conv.name)}: ${visible(text)}`);
    return 0;
  },
});
