/**
 * `qpq send`: send a message to a DM, a group, or every conversation.
 *
 * @module
 */
import { SERVED } from "./_control.ts";
import { clientCommand, readStdinText } from "./_client.ts";
import { eprintln, println } from "./_args.ts";
import { QpqError, TransportError, UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq send (--to USER | --group NAME | --all) [--reply-to MSG] [MESSAGE] --username NAME [--password PW]

Send MESSAGE (or, without it, standard input: UTF-8 text, binary is refused) end-to-end
encrypted. The message is kept locally and queued first: if the server cannot be reached
it stays queued and goes out with the next command that reaches the server, never twice.

Options:
  --to USER      the DM with USER (created if needed); --to #NAME is the group NAME
  --group NAME   the group NAME
  --all          every conversation
  --reply-to MSG a reply to MSG: the number history shows before it ([3] -> 3) or its
                 messageId (--json); not with --all`;

/** Run `qpq send`. */
export const run = clientCommand({
  name: "send",
  usage: USAGE,
  options: {
    to: { type: "string" },
    group: { type: "string" },
    all: { type: "boolean" },
    "reply-to": { type: "string" },
  },
  positionals: { max: 1 },
  // through a running REPL too: read here, passed on as the message
  stdinPositional: true,
  // client.send connects by itself and keeps the message queued when the server is down
  session: false,
  // an absent server is told within QUICK_CONNECT_MS: the message is then queued
  offline: true,
  async run(client, { values, positionals }) {
    const targets = [values.to, values.group, values.all].filter((v) =>
      v !== undefined && v !== false
    );
    if (targets.length !== 1) {
      throw new UsageError("Choose one of --to USER, --group NAME or --all");
    }
    const replyTo = values["reply-to"] as string | undefined;
    if (replyTo !== undefined && values.all) {
      throw new UsageError("--reply-to answers one message: use --to or --group");
    }
    let text = positionals[0];
    if (text === undefined) {
      if (SERVED.getStore() !== undefined) {
        // run by the REPL for another process, which passes its stdin as the positional:
        // the REPL's own stdin is the person's, never read here
        throw new UsageError("Give the message as an argument");
      }
      text = await readStdinText();
    }
    if (text.length === 0) throw new UsageError("Nothing to send: the message is empty");
    const refs: string[] = [];
    const to = values.to as string | undefined;
    if (to?.startsWith("#")) refs.push(client.conversation(to).name);
    else if (to) refs.push((await client.dm(to)).name);
    else if (values.group) refs.push(`#${(values.group as string).replace(/^#/, "")}`);
    else {
      refs.push(
        ...client.listConversations().filter((c) => c.kind !== "self").map((c) => c.name),
      );
    }
    if (refs.length === 0) throw new UsageError("No conversations to send to");
    let skipped = 0;
    for (const ref of refs) {
      let m;
      try {
        // a one-shot send shows what was waiting first (and sends on the epoch it brings)
        m = await client.send(ref, text, {
          receiveFirst: true,
          ...(replyTo !== undefined ? { replyTo } : {}),
        });
      } catch (e) {
        // --all goes on past a conversation it cannot send to, and says which
        if (!values.all || !(e instanceof QpqError) || e instanceof TransportError) throw e;
        skipped++;
        if (values.json) {
          println(JSON.stringify({ type: "skipped", conversation: ref, reason: e.message }));
        } else eprintln(`skipped ${ref}: ${e.message}`);
        continue;
      }
      const queued = client.pendingCount() > 0;
      if (values.json) {
        println(
          JSON.stringify({ type: "sent", conversation: ref, messageId: m.messageId, queued }),
        );
      } else if (queued) {
        // refused for now (disk full, quota): the warning line already said why
        if (client.queueRefusal() === undefined) eprintln(`queued for ${ref} (server unreachable)`);
      } else println(`sent to ${ref}`);
    }
    if (skipped > 0) return 1;
    return 0;
  },
});
