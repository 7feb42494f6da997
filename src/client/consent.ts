/**
 * Consent: who may start a conversation with us. A DM or an invitation from someone who is
 * not a contact arrives as a request; nothing of it is shown until the user accepts.
 *
 * ```
 * Welcome from X ─► X blocked?   ─► dropped (not joined)
 *                ─► X a contact, acceptFrom "anyone", or join() running ─► joined, shown
 *                ─► otherwise    ─► joined in the background, conversation.requestFrom = X
 *                                   one "request" event; its messages are stored, not shown
 * accept(X | #g) ─► requestFrom cleared; X and the members become contacts;
 *                   "joined" + every held message, in order
 * block(X)       ─► server drops X's messages and Welcomes to us (and counts them); X's
 *                   requests are hidden, a requested group is left, a requested DM kept
 *                   (hidden, its MLS state current, so it can go on after an unblock)
 * unblock(X)     ─► the server delivers again and says how many it dropped; X is a contact
 *                   again when we share an accepted conversation, else a stranger
 * ```
 *
 * Contacts are made by writing to someone (a DM, an invitation), by sharing a group the
 * user accepted or created (its members and everyone added to it later), by accepting and
 * by `join`. The MLS side of a request runs exactly like an accepted conversation's (the
 * same receive path keeps its state current, key packages are used, commits applied), so
 * accepting later needs no network and shows the messages in order.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { MAX_REQUEST_MESSAGES_SHOWN } from "../limits.ts";
import type { Conversation, StoredMessage } from "../store/client/mod.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";
import { parseUsername, pickGroup } from "./conversations.ts";

/** Whose DMs and invitations are shown at once: contacts only (default) or anyone. */
export type AcceptFrom = "contacts" | "anyone";

/** A conversation waiting for the user's consent. */
export interface ConversationRequest {
  /** The conversation (a DM or a group). */
  conversation: Conversation;
  /** Who invited us. */
  from: string;
  /** Messages held so far (at most {@link MAX_REQUEST_MESSAGES_SHOWN} counted). */
  messages: number;
}

/** Who is a contact, who is blocked, and the requests in between. */
export class Consent {
  #ctx: ClientContext;
  #session: Session;
  #acceptFrom: AcceptFrom;
  #members: (conv: Conversation) => string[];
  #joining = 0;

  constructor(
    ctx: ClientContext,
    parts: {
      session: Session;
      acceptFrom: AcceptFrom;
      members: (conv: Conversation) => string[];
    },
  ) {
    this.#ctx = ctx;
    this.#session = parts.session;
    this.#acceptFrom = parts.acceptFrom;
    this.#members = parts.members;
  }

  /** True when a Welcome from `inviter` is joined and shown at once. */
  admits(inviter: string): boolean {
    return this.#acceptFrom === "anyone" || this.#joining > 0 ||
      this.#ctx.state.consent(inviter) === "contact";
  }

  /** True when the user blocked `user`. */
  blocked(user: string): boolean {
    return this.#ctx.state.consent(user) === "blocked";
  }

  /** Make these users contacts (not ourselves, not someone blocked). */
  befriend(users: Iterable<string>): void {
    const s = this.#ctx.state;
    s.transaction(() => {
      for (const u of users) {
        if (u === this.#ctx.username || s.consent(u) !== undefined) continue;
        s.setConsent(u, "contact");
      }
    });
  }

  /** Run `fn` (a sync) with every Welcome it receives accepted: `join`. */
  async joining<T>(fn: () => Promise<T>): Promise<T> {
    this.#joining++;
    try {
      return await fn();
    } finally {
      this.#joining--;
    }
  }

  /** Requests waiting for the user, oldest first; those of blocked users are not listed. */
  requests(): ConversationRequest[] {
    const s = this.#ctx.state;
    return s.listConversations().flatMap((c) => {
      const from = c.requestFrom;
      if (from === undefined || this.blocked(from)) return [];
      const g = c.channelId === undefined ? undefined : this.#ctx.groups.meta(c.channelId);
      if (g === undefined || g.leavingEpoch !== undefined) return [];
      return [{
        conversation: c,
        from,
        messages: s.history(c.id, MAX_REQUEST_MESSAGES_SHOWN).length,
      }];
    });
  }

  /**
   * The requests `ref` names: "#group" (that group), "@user" (everything from them) or a
   * bare name (a user's, else a group's). UsageError "not_found" when there is none.
   */
  find(ref: string): ConversationRequest[] {
    const all = this.requests();
    const name = ref.replace(/^[@#]/, "");
    // a group's name in any case, or with its `~id` suffix (several: refused with the list)
    const group = ref.startsWith("@") ? undefined : pickGroup(
      all.map((r) => r.conversation),
      `#${name}`,
    );
    const byGroup = all.filter((r) => r.conversation.id === group?.id);
    let user: string | undefined;
    try {
      if (!ref.startsWith("#")) user = parseUsername(name);
    } catch { /* not a username: a group's name only */ }
    const byUser = user === undefined ? [] : all.filter((r) => r.from === user);
    if (byUser.length > 0 && byGroup.length > 0) {
      throw new UsageError(`${name} is both @${name} and #${name}: say which`);
    }
    const found = byUser.length > 0 ? byUser : byGroup;
    if (found.length === 0) {
      throw new UsageError(`No request from ${ref}: see qpq requests`, { code: "not_found" });
    }
    return found;
  }

  /**
   * Accept requests: the conversations are shown from now on, their inviters and members
   * become contacts, and the held messages are reported ("joined", then each message in
   * the order stored).
   */
  accept(requests: ConversationRequest[]): Conversation[] {
    const s = this.#ctx.state;
    const out: Conversation[] = [];
    for (const r of requests) {
      const { requestFrom: _, ...conv } = r.conversation;
      let members: string[] = [];
      try {
        members = this.#members(conv);
      } catch { /* a broken group: its members are not readable */ }
      s.transaction(() => {
        s.upsertConversation(conv);
        this.befriend([r.from, ...members]);
      });
      out.push(conv);
      this.#ctx.emit({ kind: "joined", conversation: conv, inviter: r.from });
      for (const m of s.history(conv.id, MAX_REQUEST_MESSAGES_SHOWN)) this.#show(conv, m);
    }
    return out;
  }

  #show(conversation: Conversation, message: StoredMessage): void {
    if (message.unreadable) {
      this.#ctx.emit({
        kind: "unreadable",
        conversation,
        message,
        reason: "it could not be decrypted",
      });
    } else {
      this.#ctx.emit({ kind: "message", conversation, message });
    }
  }

  /**
   * Block a user: the server drops their messages and Welcomes to us from now on, and the
   * client drops what still arrives. Returns their requests, which the caller leaves.
   */
  async block(user: string): Promise<ConversationRequest[]> {
    this.#checkOther(user);
    const pending = this.requests().filter((r) => r.from === user);
    await this.#session.call({ kind: "block", username: user }, "ok");
    this.#ctx.state.setConsent(user, "blocked");
    return pending;
  }

  /**
   * Unblock a user: a contact again when we share an accepted conversation with them (people
   * who share a group are contacts), else a stranger (their next DM is a request). Resolves
   * to how many of their messages the server dropped during the block.
   */
  async unblock(user: string): Promise<number> {
    this.#checkOther(user);
    const { count } = await this.#session.call({ kind: "unblock", username: user }, "unblocked");
    if (this.blocked(user)) {
      this.#ctx.state.setConsent(user, this.#sharesConversation(user) ? "contact" : undefined);
    }
    return count;
  }

  /** True when `user` is a member of a conversation of ours that is not a request. */
  #sharesConversation(user: string): boolean {
    return this.#ctx.state.listConversations().some((c) => {
      if (c.requestFrom !== undefined || c.channelId === undefined) return false;
      try {
        return this.#members(c).includes(user);
      } catch {
        return false; // a broken group: its members are not readable
      }
    });
  }

  /** The users blocked on this device, sorted. */
  listBlocked(): string[] {
    return this.#ctx.state.listBlocked();
  }

  #checkOther(user: string): void {
    if (user === "") throw new UsageError("A username is required");
    if (user === this.#ctx.username) throw new UsageError("Cannot block yourself");
  }
}
