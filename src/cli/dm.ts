/**
 * `qpq dm <user>`: open a direct-message conversation.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";

/** Usage text. */
export const USAGE = `Usage: qpq dm <user> --username NAME [--password PW]

Open a DM with <user>: a two-member MLS group on a server DM channel that only the two of
you can use. The other side joins it the next time it receives. "qpq dm <yourself>" is a
local notepad that never touches the server.`;

/** Run `qpq dm`. */
export const run = clientCommand({
  name: "dm",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const conv = await client.dm(positionals[0]!);
    println(
      values.json
        ? JSON.stringify({ type: "conversation", name: conv.name, kind: conv.kind })
        : `DM ${conv.name} ready`,
    );
    return 0;
  },
});
