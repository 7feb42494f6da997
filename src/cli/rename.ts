/**
 * `qpq rename <group> <new-name>`: rename a group (admins only).
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { renamedLine } from "./_lines.ts";

/** Usage text. */
export const USAGE = `Usage: qpq rename <group> <new-name> --username NAME [--password PW]

Rename a group (1-32 letters, digits, '.', '_' or '-', as for create-group). Only admins
may: every member's client refuses the change from anyone else, and shows the new name
(with an id suffix, #crew~3f2a, when it looks like another of its groups). The group is
its id: names are labels and may be shared by unrelated groups.`;

/** Run `qpq rename`. */
export const run = clientCommand({
  name: "rename",
  usage: USAGE,
  positionals: { min: 2, max: 2 },
  async run(client, { values, positionals }) {
    const [group, name] = positionals as [string, string];
    const r = await client.rename(group, name);
    if (values.json) {
      println(JSON.stringify({
        type: "settings",
        conversation: r.conversation.name,
        name: name.replace(/^#/, ""),
        renamedFrom: r.previousName,
        changed: r.changed,
      }));
    } else println(renamedLine(client.username, r.previousName, r.conversation.name, r.changed));
    return 0;
  },
});
