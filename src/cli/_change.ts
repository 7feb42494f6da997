/**
 * The shared part of `qpq react`, `qpq edit` and `qpq delete`: which conversation
 * (`--to USER` or `--group NAME`), which message (its `[N]` in `qpq history`, or its id),
 * and one line (or a JSON object) saying what was done.
 *
 * @module
 */
import { messageJson, numberedMessage } from "./_client.ts";
import { println } from "./_args.ts";
import { UsageError } from "../errors.ts";
import type { QpqClient } from "../client/client.ts";
import type { StoredMessage } from "../client/local.ts";

/** The options naming the conversation. */
export const CONVERSATION_OPTIONS = {
  to: { type: "string" },
  group: { type: "string" },
} as const;

/** Usage lines for the options of {@link CONVERSATION_OPTIONS} and a message ref. */
export const CONVERSATION_USAGE = `  --to USER      the DM with USER; --to #NAME is the group NAME
  --group NAME   the group NAME
MESSAGE is the number history shows before it ([3] -> 3) or its messageId (--json).`;

/** The conversation named by `--to` / `--group` (exactly one). */
export function conversationOf(
  client: QpqClient,
  values: Record<string, unknown>,
): string {
  const to = values.to as string | undefined;
  const group = values.group as string | undefined;
  if ((to === undefined) === (group === undefined)) {
    throw new UsageError("Choose one of --to USER or --group NAME");
  }
  if (group !== undefined) return client.conversation(`#${group.replace(/^#/, "")}`).name;
  return client.conversation(to!.startsWith("#") ? to! : `@${to!.replace(/^@/, "")}`).name;
}

/** Print what a change did: the message as it is now. */
export function printChanged(
  client: QpqClient,
  ref: string,
  what: string,
  m: StoredMessage,
  json: boolean | undefined,
): void {
  const conv = client.conversation(ref);
  const queued = client.pendingCount() > 0;
  if (json) {
    println(JSON.stringify({ ...messageJson(conv, m, client.store), type: what, queued }));
  } else {
    println(`${what}${queued ? " (queued)" : ""}: ${numberedMessage(conv, m, client.store)}`);
  }
}
