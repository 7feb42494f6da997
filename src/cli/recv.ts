/**
 * `qpq recv`: print what is waiting; optionally keep following.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq recv [--follow] [--wait SECONDS] --username NAME [--password PW]

Receive and print waiting messages ([alice] hi for DMs, [#team] alice: hi for groups).
Each message is stored locally before it is acknowledged to the server, so it is printed
once and never lost.

Options:
  --follow         keep printing messages as they arrive (server push) until Ctrl-C
  --wait SECONDS   keep receiving for this long, then exit`;

/** Run `qpq recv`. */
export const run = clientCommand({
  name: "recv",
  usage: USAGE,
  options: { follow: { type: "boolean" }, wait: { type: "string" } },
  async run(client, { values }) {
    const wait = values.wait === undefined ? undefined : Number(values.wait);
    if (wait !== undefined && !(wait >= 0 && wait <= 86_400)) {
      throw new UsageError("--wait takes seconds from 0 to 86400");
    }
    await client.sync();
    if (!values.follow && wait === undefined) return 0;
    await client.subscribe();
    await client.sync();
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      Deno.addSignalListener("SIGINT", stop);
      if (wait !== undefined && !values.follow) setTimeout(stop, wait * 1000);
    });
    await client.sync();
    return 0;
  },
});
