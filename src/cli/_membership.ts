/**
 * What `invite`, `remove`, `leave` and `unblock` print (the commands and the REPL alike): success only
 * for what the server accepted, and one line for each user the command did not change
 * itself.
 *
 * @module
 */
import { visible } from "./_terminal.ts";
import type { LeaveOutcome, MembershipChange, UnblockResult } from "../client/client.ts";

/** The lines describing an invite or remove the server accepted (or that others made). */
export function membershipLines(
  op: "invite" | "remove",
  conv: string,
  change: MembershipChange,
): string[] {
  const lines: string[] = [];
  const list = (users: string[]) => users.join(", ");
  const one = (users: string[], single: string, plural: string) =>
    `${list(users)} ${users.length === 1 ? single : plural}`;
  if (change.done.length > 0) {
    lines.push(
      op === "invite"
        ? `Invited ${list(change.done)} to ${conv}`
        : `Removed ${list(change.done)} from ${conv}`,
    );
  }
  if (change.byOthers.length > 0) {
    lines.push(
      op === "invite"
        ? `${
          one(change.byOthers, "is", "are")
        } in ${conv} already: another member's change came first`
        : `${
          one(change.byOthers, "is", "are")
        } no longer in ${conv}: another member's change came first`,
    );
  }
  if (change.already.length > 0) {
    lines.push(
      op === "invite"
        ? `${one(change.already, "was already a member", "were already members")} of ${conv}`
        : `${one(change.already, "was not a member", "were not members")} of ${conv}`,
    );
  }
  return lines;
}

/** The line for a leave: done, or asked and waiting for another member's commit. */
export function leaveLine(conv: string, outcome: LeaveOutcome): string {
  return outcome === "left"
    ? `Left ${conv}`
    : `Asked to leave ${conv}: you stay a member until another member's client commits it`;
}

/**
 * What follows "Unblocked @user" (the command and the REPL alike): how many messages the
 * block dropped, and the conversations that ask to be re-added; "" when neither.
 */
export function unblockedLine(r: UnblockResult): string {
  const parts: string[] = [];
  if (r.dropped > 0) {
    parts.push(
      `${r.dropped} message${r.dropped === 1 ? "" : "s"} sent while blocked ${
        r.dropped === 1 ? "was" : "were"
      } dropped`,
    );
  }
  if (r.repairing > 0) {
    parts.push(
      `asked to be added again to ${r.repairing} conversation${r.repairing === 1 ? "" : "s"}`,
    );
  }
  return parts.length === 0 ? "" : ` (${parts.join("; ")})`;
}

/** `#team: alice (admin), bob`: a roster with its admins marked (none for a DM or a legacy group). */
export function rosterLine(conv: string, members: readonly string[], admins?: readonly string[]) {
  const shown = members.map((m) => admins?.includes(m) ? `${visible(m)} (admin)` : visible(m));
  return `${visible(conv)}: ${shown.join(", ")}`;
}
