/**
 * `qpq leave <group>`: leave a group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { leaveLine } from "./_membership.ts";

/** Usage text. */
export const USAGE = `Usage: qpq leave <group> --username NAME [--password PW]

Leave a group. MLS lets nobody commit their own removal: a remove proposal goes to the
members and the next member online commits it. Prints "Asked to leave #g: ..." once the
server accepted the proposal (you stay a member until that commit; the group is no longer
listed here), or "Left #g" when nobody else was in it. A proposal the server refuses is
withdrawn: one line says so, you stay a member, and the exit code is 1.`;

/** Run `qpq leave`. */
export const run = clientCommand({
  name: "leave",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const name = client.conversation(positionals[0]!).name;
    const outcome = await client.leave(positionals[0]!);
    println(
      values.json
        ? JSON.stringify({ type: outcome === "left" ? "left" : "leave_asked", conversation: name })
        : leaveLine(name, outcome),
    );
    return 0;
  },
});
