/**
 * Consent: a user blocks (or unblocks) another. The server then drops the blocked user's
 * application messages (DMs and groups) and Welcomes on their way to the blocker
 * (delivery.ts), so they take no room in the blocker's queue. Commits, proposals and
 * rejoin requests still go through: a member who skipped them would fall out of a group
 * both share. The blocked user is not told: both the block and each dropped message are
 * answered as if nothing happened (see docs/threat-model.md, "Hostile peers"). Each block
 * counts what it dropped; unblock tells the blocker that count.
 *
 * @module
 */
import type { ServerStore } from "../store/server/mod.ts";
import { UsageError } from "../errors.ts";
import type { HandlerTable } from "./context.ts";
import { requireUser } from "./accounts.ts";
import { checkUsernameSyntax } from "./_names.ts";

/** Handlers of `block` and `unblock`. */
export function consentHandlers(store: ServerStore): HandlerTable {
  const change = async (blocker: string, username: string, on: boolean) => {
    const user = checkUsernameSyntax(username);
    if (user === blocker) throw new UsageError("Cannot block yourself");
    if (!(await store.getUser(user))) {
      throw new UsageError(`Unknown user ${user}`, { code: "not_found" });
    }
    return await store.setBlocked(blocker, user, on);
  };
  return {
    async block(req, conn) {
      await change(requireUser(conn), req.username, true);
      return { kind: "ok" };
    },
    async unblock(req, conn) {
      const dropped = await change(requireUser(conn), req.username, false);
      return { kind: "unblocked", count: Math.min(dropped, 0xffff_ffff) };
    },
  };
}
