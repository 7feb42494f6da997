/**
 * `qpq chat <conversation>`: the interactive loop fixed to one conversation.
 *
 * @module
 */
import { exclusive } from "./_control.ts";
import { CLIENT_FLAGS_USAGE, CLIENT_OPTIONS, parseCommand, println } from "./_args.ts";
import { type ClientFlags, formatMessage, openClient, serveOthers } from "./_client.ts";
import { Interactive } from "./_interactive.ts";
import { offlineLine, startSession } from "./repl.ts";
import { QUICK_CONNECT_MS } from "../limits.ts";

/** Usage text. */
export const USAGE = `Usage: qpq chat <conversation> --username NAME [--password PW]

Chat in one conversation (@user or #group; a bare name that is both is refused): shows
its recent history, then every line you
type is sent there and its new messages appear as they arrive. Slash commands of the repl
work too, except those that switch conversations. Without the server it starts offline,
as the repl does.`;

/** Run `qpq chat`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("chat", args, CLIENT_OPTIONS, { min: 1, max: 1 });
  if (!p) {
    println(`${USAGE}\n\n${CLIENT_FLAGS_USAGE}`);
    return 0;
  }
  let ui: Interactive | undefined;
  const client = await openClient(p.values as ClientFlags, {
    onEvent: (e) => ui?.onEvent(e),
    connectTimeoutMs: QUICK_CONNECT_MS,
  });
  // other qpq commands of this state run through this process meanwhile
  const control = serveOthers(client);
  try {
    const online = await exclusive(client, () => startSession(client, undefined));
    if (!online) println(offlineLine(client));
    const ref = p.positionals[0]!;
    // a bare name that is both a user and a group is refused: say @user or #group
    const conv = await client.resolve(ref);
    ui = new Interactive(client, { fixed: conv });
    for (const m of client.history(conv.name, 10)) println(formatMessage(conv, m, client.store));
    const code = await ui.run();
    await client.sync().catch(() => {});
    return code;
  } finally {
    await control?.close();
    await client.close();
  }
}
