/**
 * Lines that a command and the REPL both print (`qpq receipts N` and `/receipts N`,
 * `qpq rename` and `/rename`), kept apart from the command files so that the REPL does
 * not import them (a command imports `_client.ts`, whose forwarding imports the command table).
 *
 * @module
 */
import type { QpqClient } from "../client/mod.ts";
import type { StoredMessage } from "../store/client/mod.ts";
import { receiptState } from "../client/receipts.ts";
import { UsageError } from "../errors.ts";
import { visible } from "./_terminal.ts";

/** The lines `qpq receipts` and the REPL's `/receipts N` print for our message `m`. */
export function receiptLines(client: QpqClient, ref: string, m: StoredMessage): string[] {
  if (m.direction !== "out") throw new UsageError("Receipts are kept for your own messages only");
  const others = client.members(ref).filter((u) => u !== client.username);
  const by = new Map((m.receipts ?? []).map((r) => [r.user, r]));
  const out = [`Receipts (${receiptState(m, others)}):`];
  for (const u of others) {
    const r = by.get(u);
    const what = r?.readAt !== undefined
      ? `read ${new Date(r.readAt).toLocaleString()}`
      : r?.deliveredAt !== undefined
      ? `delivered ${new Date(r.deliveredAt).toLocaleString()}`
      : "not yet";
    out.push(`  ${visible(u)}: ${what}`);
  }
  return out;
}

/** The line for our own rename (receivers print "* alice renamed #team to #crew"). */
export function renamedLine(me: string, from: string, to: string, changed: boolean): string {
  return changed
    ? `* ${visible(me)} renamed ${visible(from)} to ${visible(to)}`
    : `* ${visible(to)} already has that name`;
}
