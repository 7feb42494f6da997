/**
 * `qpq list`: list conversations.
 *
 * @module
 */
import { clientCommand, unreadText } from "./_client.ts";
import { println } from "./_args.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq list --username NAME [--password PW]

List your conversations (after receiving what is waiting), each with how many messages
arrived since you last read it (history, recv, the REPL or chat read a conversation).
Offline (no answer from the server within a moment) it lists what this device has, and
a warning line says so.`;

/** Run `qpq list`. */
export const run = clientCommand({
  name: "list",
  usage: USAGE,
  offline: true,
  async run(client, { values, online }) {
    if (online) await client.sync();
    const convs = client.listConversations();
    if (values.json) {
      println(
        JSON.stringify({
          type: "list",
          ...(online ? {} : { offline: true }),
          conversations: convs.map((c) => ({
            name: c.name,
            kind: c.kind,
            unread: c.unread,
            ...(c.broken !== undefined ? { broken: c.broken } : {}),
          })),
        }),
      );
    } else if (convs.length === 0) {
      println("No conversations yet: try qpq dm <user> or qpq create-group <name>");
    } else {
      for (const c of convs) {
        const unread = c.unread > 0 ? `\t${unreadText(c.unread)}` : "";
        println(
          c.broken === undefined
            ? `${visible(c.name)}\t${c.kind}${unread}`
            : `${visible(c.name)}\t${c.kind}${unread}\tbroken: ${
              visible(c.broken)
            } (waiting to be re-added)`,
        );
      }
    }
    return 0;
  },
});
