/**
 * `qpq list`: list conversations.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq list --username NAME [--password PW]

List your conversations (after receiving what is waiting).`;

/** Run `qpq list`. */
export const run = clientCommand({
  name: "list",
  usage: USAGE,
  async run(client, { values }) {
    await client.sync();
    const convs = client.listConversations();
    if (values.json) {
      println(
        JSON.stringify({
          type: "list",
          conversations: convs.map((c) => ({
            name: c.name,
            kind: c.kind,
            ...(c.broken !== undefined ? { broken: c.broken } : {}),
          })),
        }),
      );
    } else if (convs.length === 0) {
      println("No conversations yet: try qpq dm <user> or qpq create-group <name>");
    } else {
      for (const c of convs) {
        println(
          c.broken === undefined
            ? `${visible(c.name)}\t${c.kind}`
            : `${visible(c.name)}\t${c.kind}\tbroken: ${
              visible(c.broken)
            } (waiting to be re-added)`,
        );
      }
    }
    return 0;
  },
});
