/**
 * `qpq passwd`: change the account's password. The current one (--password, QPQ_PASSWORD
 * or a prompt) opens the local state and proves itself to the server with a fresh OPAQUE
 * login; the new one (QPQ_NEW_PASSWORD, or asked twice on a terminal) replaces the OPAQUE
 * record and re-seals the local state. Every other session of the account ends.
 *
 * @module
 */
import { clientCommand, promptPassword } from "./_client.ts";
import { env, println } from "./_args.ts";
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq passwd --username NAME [--password CURRENT]

Change your password. The new one is asked twice on the terminal (QPQ_NEW_PASSWORD for
scripts). The server replaces your OPAQUE record and ends every other session of the
account (other devices log in again with the new password); this device stays logged in
and its local state opens with the new password only. Identity keys and messages stay.`;

/** The new password: QPQ_NEW_PASSWORD, or typed twice (the same both times). */
async function newPassword(): Promise<string> {
  const fromEnv = env("QPQ_NEW_PASSWORD");
  if (fromEnv !== undefined) return fromEnv;
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError("New password required: set QPQ_NEW_PASSWORD (no terminal to prompt on)");
  }
  const first = await promptPassword("New password: ");
  const again = await promptPassword("New password again: ");
  if (first !== again) throw new UsageError("The new passwords differ: nothing changed");
  return first;
}

/** Run `qpq passwd`. */
export const run = clientCommand({
  name: "passwd",
  usage: USAGE,
  async run(client, { values }) {
    const next = await newPassword();
    if (next.length === 0) throw new UsageError("Password must not be empty");
    const current = values.password ?? env("QPQ_PASSWORD");
    if (current !== undefined && current === next) {
      throw new UsageError("The new password is the current one: nothing changed");
    }
    const { sessionsEnded: n } = await client.changePassword(next);
    println(
      values.json
        ? JSON.stringify({ type: "passwd", username: client.username, sessionsEnded: n })
        : `Password changed for @${client.username} (${n} other session${
          n === 1 ? "" : "s"
        } ended)`,
    );
    return 0;
  },
});
