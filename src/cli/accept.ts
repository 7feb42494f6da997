/**
 * `qpq accept <user|#group>`: accept a request and show what it holds.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { visible } from "./_terminal.ts";
import { println } from "./_args.ts";
import type { QpqClient } from "../client/client.ts";

/** True when `ref` names one of the requests waiting on this device. */
function hasRequest(client: QpqClient, ref: string): boolean {
  return client.requests().some((r) =>
    r.conversation.name === ref || r.from === ref.replace(/^@/, "")
  );
}

/** Usage text. */
export const USAGE = `Usage: qpq accept <@user|#group> --username NAME [--password PW]

Accept a request (see qpq requests): "@user" accepts every DM and invitation from that
user, "#group" one invitation; a bare name means a user, else a group. The sender (and
the group's members) become contacts, the conversation is listed from now on, and the
messages it held are printed in order.

A held invitation (qpq requests: "held: #x") is accepted by the server once you are under
its limit of conversations; the members are then asked to add you (it arrives as any
invitation). --decline takes you off a held invitation instead.

Options:
  --decline   decline the held invitation #group (or channel id)`;

/** Run `qpq accept`. */
export const run = clientCommand({
  name: "accept",
  usage: USAGE,
  // what is accepted is printed in full below: no request line for it on the way
  shows: (e) => e.kind !== "request",
  positionals: { min: 1, max: 1 },
  options: { decline: { type: "boolean" } },
  async run(client, { positionals, values }) {
    const ref = positionals[0]!;
    await client.sync();
    if (values.decline) {
      await client.answerInvitation(ref, false);
      println(`Declined ${visible(ref)}`);
      return 0;
    }
    // not a request of ours but a held invitation: ask the server to let us in
    const held = (await client.invitations()).some((h) =>
      h.channelId === ref.toLowerCase() || (h.kind === "group" && `#${h.name}` === ref)
    );
    if (held && !hasRequest(client, ref)) {
      await client.answerInvitation(ref, true);
      println(`Accepted ${visible(ref)}: the members are asked to add you`);
      return 0;
    }
    // "* joined …" and each held message are printed as events
    client.accept(ref);
    return 0;
  },
});
