/**
 * The inbox part of the client: how each delivered message changes a conversation. The
 * receiver (receiver.ts) hands messages over one at a time in queue order; this decides
 * what each means.
 *
 * ```
 * welcome     ─► join (never over a group with others in it; over a broken or left one: yes)
 * commit      ─► apply; added members checked against the directory; cannot apply ─► BROKEN
 *                of an epoch we have passed (the server's history is not ours) ─► BROKEN
 * application ─► decrypt ─► content ─► history (cannot decrypt ─► an "unreadable" entry)
 * proposal    ─► kept; a member's leave is committed after the sync (Groups.maintain)
 * rejoin      ─► a member's fresh KeyPackage, checked; re-added after the sync
 * KeyPackage notice (server, no channel) ─► refill and rotate the last resort after the sync
 * restore notice (server, no channel) ─► one line; our kept sent messages queued again
 *   (the restored server has not got those sent after its backup; it drops the others)
 * an application message sent again (after a restore) that we have: its keys are used up,
 *   decrypting fails, and the unreadable placeholder has its id: not stored, not shown
 * from someone not a contact (consent.ts): the same, but the conversation is a request:
 *   its messages are stored and not shown; a blocked user's Welcome is dropped and their
 *   messages are not stored (who invited is the Welcome's MLS signer, not the server's claim)
 * any of them in a group we are leaving ─► followed silently until our removal ("left")
 * ```
 *
 * @module
 */
import {
  checkCredentialBinding,
  type GroupSettings,
  groupSettings,
  joinFromWelcome,
  listMembers,
  type MlsGroupState,
  parseKeyPackage,
  processMessage,
  verifyRoster,
} from "../mls/mod.ts";
import {
  decodeRestoreNotice,
  type DeliveredMessage,
  NOTICE_KEY_PACKAGES,
  NOTICE_RESTORED,
} from "../wire/mod.ts";
import { MAX_REQUEST_MESSAGES_SHOWN, READD_RESEND_MS, SENT_KEEP_MS } from "../limits.ts";
import { failRemoved, notSentText, type Outbox, REMOVED_FAILURE, restoredFrom } from "./outbox.ts";
import type { Groups } from "./groups.ts";
import { constantTimeEqual, toHex } from "../bytes.ts";
import { ValidationError } from "../errors.ts";
import { zeroize } from "../bytes.ts";
import type { Conversation, GroupMeta, OutboxEntry, StoredMessage } from "../store/client/mod.ts";
import type { ClientContext } from "./_context.ts";
import {
  aloneIn,
  commitRef,
  isTransient,
  markBroken,
  reason,
  rememberCommit,
  saveGroup,
} from "./_group_state.ts";
import type { Consent } from "./consent.ts";
import type { Contacts } from "./contacts.ts";
import { decodeContent, type DecodedContent } from "./content.ts";
import { applyChange, type ChangeResult } from "./changes.ts";
import { applyReceipt } from "./receipts.ts";
import { relabelGroup, upsertChannel } from "./conversations.ts";
import { isGroupName } from "../names.ts";
import { uuidToString } from "./ids.ts";
import type { KeyPackages } from "./key_packages.ts";
import type { ClientEvent } from "./events.ts";
import type { Session } from "./session.ts";
import { listAllChannels } from "./_channels.ts";

/** Applies delivered messages to conversations. */
export class Inbox {
  #ctx: ClientContext;
  #session: Session;
  #contacts: Contacts;
  #keyPackages: KeyPackages;
  #groups: Pick<Groups, "noteRejoin" | "noteRestore">;
  #outbox: Pick<Outbox, "noteRestore">;
  #consent: Consent;
  /** DM requests that got messages since the last {@link reportRequests}. */
  #requestsGrown = new Set<string>();
  #ignored = 0;
  /** Delivered receipts due: conversation id ─► ids of the texts stored. */
  #delivered = new Map<string, string[]>();
  /** Receipts received (any member's, applied or not): for the cost figures. */
  receiptsReceived = 0;
  /**
   * Our messages failed by our removal from a group (channel ─► when, and their queue
   * entries): a re-add within READD_RESEND_MS queues them again.
   */
  #failedByRemoval = new Map<string, { at: number; entries: OutboxEntry[] }>();

  constructor(
    ctx: ClientContext,
    parts: {
      session: Session;
      contacts: Contacts;
      keyPackages: KeyPackages;
      consent: Consent;
      /** Told of rejoin requests and of a restore notice (the groups are built first). */
      groups: Pick<Groups, "noteRejoin" | "noteRestore">;
      /** Told of a restore notice: the kept sent messages were queued again. */
      outbox: Pick<Outbox, "noteRestore">;
    },
  ) {
    this.#ctx = ctx;
    this.#session = parts.session;
    this.#contacts = parts.contacts;
    this.#keyPackages = parts.keyPackages;
    this.#consent = parts.consent;
    this.#groups = parts.groups;
    this.#outbox = parts.outbox;
  }

  /**
   * Apply one delivered message. `done` (record the queue position) runs inside the same
   * transaction as the state change. Throws only for transient failures (the message is
   * then kept and tried again); a bad message is isolated to its conversation.
   */
  async receive(m: DeliveredMessage, done: () => void): Promise<void> {
    if (m.seq === 0) return await this.#ephemeral(m); // never stored, never a queue position
    const s = this.#ctx.state;
    if (m.serverNotice === NOTICE_KEY_PACKAGES && m.channelId.length === 0) {
      this.#keyPackages.noticed(); // refilled and rotated after this sync
      return s.transaction(done);
    }
    if (m.serverNotice === NOTICE_RESTORED && m.channelId.length === 0) {
      let takenAt = 0; // a notice we cannot read still says that a restore happened
      try {
        takenAt = decodeRestoreNotice(m.payload).backupTakenAtMs;
      } catch { /* the time stays unknown */ }
      // with the queue position: a crash cannot lose the resend nor repeat it
      s.transaction(() => {
        s.requeueSent(this.#ctx.now() - SENT_KEEP_MS);
        done();
      });
      this.#outbox.noteRestore(takenAt);
      this.#groups.noteRestore(takenAt);
      this.#ctx.emit({
        kind: "warning",
        text: `${restoredFrom(takenAt)}: messages sent to you after it may be missing`,
      });
      return;
    }
    const hex = toHex(m.channelId);
    if (m.messageKind === "welcome") return await this.#welcome(m, hex, done);
    const groups = this.#ctx.groups;
    const record = groups.meta(hex);
    const conv = s.getConversation(hex);
    if (!record || !conv) return s.transaction(done); // a group we left or never joined
    if (record.broken) {
      if (m.messageKind === "application") this.#unreadable(conv, m, record.broken, done);
      else s.transaction(done);
      return;
    }
    if (record.leavingEpoch !== undefined) return await this.#whileLeaving(record, m, done);
    let state: MlsGroupState;
    try {
      state = groups.open(record);
    } catch (e) {
      const why = `its state cannot be read: ${reason(e)}`;
      s.transaction(() => markBroken(this.#ctx, conv, record, why));
      if (m.messageKind === "application") return this.#unreadable(conv, m, why, done);
      return s.transaction(done);
    }
    if (m.messageKind === "rejoin") {
      await this.#noteRejoin(conv, state, m);
      return s.transaction(done);
    }
    let r;
    let settingsBefore: GroupSettings | undefined;
    try {
      settingsBefore = m.messageKind === "commit" ? groupSettings(state) : undefined;
      r = await processMessage(state, m.payload);
    } catch (e) {
      groups.forget(hex); // whatever the failed step touched, the next one decodes afresh
      if (isTransient(e)) throw e;
      if (m.messageKind === "application") {
        return this.#unreadable(conv, m, reason(e), done);
      }
      if (m.messageKind === "commit") {
        s.transaction(() => {
          // the roles rule (src/mls/settings.ts) says why, in one line
          const why = e instanceof ValidationError && e.code === "forbidden"
            ? `${e.message.replace(/^Refused a change: /, `refused a change by ${m.sender}: `)}`
            : `a change by ${m.sender} cannot be applied`;
          markBroken(this.#ctx, conv, record, why);
          done();
        });
        return;
      }
      this.#ctx.emit({
        kind: "warning",
        text: `Ignored a ${m.messageKind} from ${m.sender} in ${conv.name}: ${reason(e)}`,
      });
      return s.transaction(done);
    }
    switch (r.kind) {
      case "application": {
        let content;
        try {
          content = decodeContent(r.plaintext);
        } catch (e) {
          s.transaction(() => saveGroup(this.#ctx, record, r.state));
          return this.#unreadable(conv, m, reason(e), done, r.sender.username);
        }
        if (this.#consent.blocked(r.sender.username)) {
          // sent before the block reached the server: dropped, not stored
          return s.transaction(() => {
            saveGroup(this.#ctx, record, r.state);
            done();
          });
        }
        return this.#content(conv, record, r.state, m, content, r.sender.username, done);
      }
      case "commit": {
        try {
          for (const a of r.added) checkCredentialBinding(a, await this.#contacts.key(a.username));
        } catch (e) {
          if (isTransient(e)) throw e;
          // a member added someone whose key the directory does not vouch for: we do not
          // follow the group there
          s.transaction(() => {
            markBroken(this.#ctx, conv, record, `a change by ${m.sender} added an unverified key`);
            done();
          });
          return;
        }
        const gone = new Set(r.removed.map((x) => x.username));
        // an admin renamed the group (a peer's name: shown only when it is a group name)
        const rename = r.settings && r.settings.name !== (settingsBefore?.name ?? "") &&
            isGroupName(r.settings.name)
          ? r.settings.name
          : undefined;
        let shown = conv;
        s.transaction(() => {
          saveGroup(this.#ctx, record, r.state, {
            leaves: record.leaves.filter((u) => !gone.has(u)),
            recentCommits: rememberCommit(record, m.payload),
          });
          if (rename !== undefined) shown = relabelGroup(s, conv, rename);
          // sharing an accepted group makes contacts
          if (conv.requestFrom === undefined) {
            this.#consent.befriend(r.added.map((a) => a.username));
          }
          done();
        });
        if (conv.requestFrom !== undefined) return; // a request shows nothing
        if (r.settings) {
          this.#ctx.emit({
            kind: "settings",
            conversation: shown,
            by: r.committer.username,
            before: settingsBefore,
            after: r.settings,
            ...(shown.name !== conv.name ? { renamedFrom: conv.name } : {}),
          });
        }
        const left = new Set(r.left);
        const readded = r.added.filter((a) => gone.has(a.username)).map((a) => a.username);
        const added = r.added.map((a) => a.username).filter((u) => !readded.includes(u));
        const removed = r.removed.map((a) => a.username).filter((u) =>
          !left.has(u) && !readded.includes(u)
        );
        if (added.length || removed.length || left.size) {
          this.#ctx.emit({
            kind: "members",
            conversation: conv,
            added,
            removed,
            left: [...left],
            by: r.committer.username,
          });
        }
        return;
      }
      case "removed": {
        let unsent = 0;
        s.transaction(() => {
          groups.delete(hex);
          // our messages, kept to send after all if a re-add follows soon (written on a
          // state from before a removal we had not received yet)
          const ours = s.listOutbox(conv.id).filter((e) =>
            e.content !== undefined && s.getMessage(e.messageId)?.direction === "out"
          );
          if (ours.length > 0) {
            this.#failedByRemoval.set(hex, { at: this.#ctx.now(), entries: ours });
          }
          // what we queued for it can never go out now: failed, never pending forever
          unsent = failRemoved(s, conv.id);
          done();
        });
        if (conv.requestFrom !== undefined) return; // a request shows nothing
        this.#ctx.emit({ kind: "removed", conversation: conv, by: r.committer.username });
        if (unsent > 0) {
          this.#ctx.emit({ kind: "warning", text: notSentText(conv.name, REMOVED_FAILURE) });
        }
        return;
      }
      case "stale":
        if (m.messageKind === "commit" && !this.#applied(record, m.payload)) {
          // The server accepts one commit per epoch, in order: a commit of an epoch this
          // device has passed, other than a replay of one it applied or made, comes from a
          // history that is not ours (the server was restored from a backup, or lies). Following our own line would fork the group
          // (the server's roster and ours would differ at one epoch number): the
          // conversation is broken, and the rejoin asks a member on the server's line to
          // re-add us.
          s.transaction(() => {
            markBroken(
              this.#ctx,
              conv,
              record,
              `the server's history differs from this device's: a change for epoch ${r.epoch} came after epoch ${state.epoch}`,
            );
            done();
          });
          return;
        }
        return s.transaction(done);
      case "proposal":
        s.transaction(() => {
          // Someone asked to leave: commit it after this sync (a commit syncs first). Kept
          // in the record so a crash before the commit does not forget it.
          const leaves = r.proposal === "remove" && !record.leaves.includes(r.proposer.username)
            ? [...record.leaves, r.proposer.username]
            : record.leaves;
          saveGroup(this.#ctx, record, r.state, { leaves });
          done();
        });
        return;
    }
  }

  /**
   * An ephemeral message (seq 0: pushed to the subscriptions online, stored nowhere on the
   * server; docs/protocol.md "ephemeral"): a typing indicator. It is decrypted like any
   * application message (its generation is spent: the group state is saved) and reported
   * as an event; nothing else of it stays — no history, no unread count, no queue position,
   * no ack, no receipt. Anything else (a commit, a text, what we cannot read, a request's,
   * a blocked user's) is dropped without a word: ephemeral is best effort.
   */
  async #ephemeral(m: DeliveredMessage): Promise<void> {
    if (m.messageKind !== "application" || m.channelId.length === 0) return;
    const hex = toHex(m.channelId);
    const groups = this.#ctx.groups;
    const record = groups.meta(hex);
    const conv = this.#ctx.state.getConversation(hex);
    if (!record || !conv || record.broken || record.leavingEpoch !== undefined) return;
    if (conv.requestFrom !== undefined) return; // a request shows nothing
    let r;
    try {
      r = await processMessage(groups.open(record), m.payload);
    } catch {
      groups.forget(hex);
      return;
    }
    if (r.kind !== "application") {
      groups.forget(hex); // only an application message may come this way: nothing applied
      return;
    }
    let body;
    try {
      body = decodeContent(r.plaintext).body;
    } catch {
      body = undefined;
    }
    this.#ctx.state.transaction(() => saveGroup(this.#ctx, record, r.state));
    const from = r.sender.username;
    if (body?.kind !== "typing") return; // only typing comes this way: a text is not stored
    if (from === this.#ctx.username || this.#consent.blocked(from)) return;
    this.#ctx.emit({ kind: "typing", conversation: conv, from, active: body.active });
  }

  /** A commit this device applied or made (one of the last few): a replay. */
  #applied(record: GroupMeta, payload: Uint8Array): boolean {
    return (record.recentCommits ?? []).includes(commitRef(payload));
  }

  /** After our leave: follow the group's changes until our removal; show nothing. */
  async #whileLeaving(record: GroupMeta, m: DeliveredMessage, done: () => void) {
    const s = this.#ctx.state;
    const groups = this.#ctx.groups;
    if (m.messageKind !== "commit" && m.messageKind !== "proposal") return s.transaction(done);
    let r;
    try {
      r = await processMessage(groups.open(record), m.payload);
    } catch (e) {
      groups.forget(record.channelId);
      if (isTransient(e)) throw e;
      // we cannot follow the group any more: we were leaving anyway
      return s.transaction(() => {
        groups.delete(record.channelId);
        done();
      });
    }
    s.transaction(() => {
      if (r.kind === "removed") {
        groups.delete(record.channelId);
        failRemoved(s, record.channelId, "you left");
      } else if (r.kind === "proposal") {
        // another member asks to leave too: kept, so that if everyone asks, one of us
        // commits the others' leaves (groups.ts maintain)
        const leaves = r.proposal === "remove" && !record.leaves.includes(r.proposer.username)
          ? [...record.leaves, r.proposer.username]
          : record.leaves;
        saveGroup(this.#ctx, record, r.state, { leaves });
      } else if (r.kind !== "stale" && r.kind !== "application") {
        saveGroup(this.#ctx, record, r.state);
      }
      done();
    });
    // `leave` said "asked": this is when it is done
    const conv = s.getConversation(record.channelId);
    if (r.kind === "removed" && conv && conv.requestFrom === undefined) {
      this.#ctx.emit({ kind: "left", conversation: conv, by: r.committer.username });
    }
  }

  /**
   * Decrypted content from `author` (the MLS sender): one case per body kind. The group's
   * new state is saved in the same transaction as what the content changes.
   */
  #content(
    conv: Conversation,
    record: GroupMeta,
    state: MlsGroupState,
    m: DeliveredMessage,
    content: DecodedContent,
    author: string,
    done: () => void,
  ): void {
    const s = this.#ctx.state;
    const body = content.body;
    const sentAt = content.sentAtMs || m.sentAtMs;
    switch (body.kind) {
      case "text": {
        const message: StoredMessage = {
          conversationId: conv.id,
          messageId: content.messageId || uuidToString(m.messageId),
          sender: author,
          body: body.text,
          sentAt,
          receivedAt: this.#ctx.now(),
          direction: "in",
          status: "delivered",
          ...(body.replyTo ? { replyTo: body.replyTo } : {}),
        };
        let fresh = false;
        s.transaction(() => {
          saveGroup(this.#ctx, record, state);
          fresh = s.addMessage(message);
          done();
        });
        if (fresh) {
          this.#show(conv, { kind: "message", conversation: conv, message });
          this.#noteDelivered(conv, author, message.messageId);
        }
        return;
      }
      case "receipt": {
        // the MLS sender is a member of this group (its key decrypted it); our own
        // messages only, never shown, never counted as unread
        this.receiptsReceived++;
        s.transaction(() => {
          saveGroup(this.#ctx, record, state);
          applyReceipt(s, conv, author, body.targets, body.read, sentAt);
          done();
        });
        return;
      }
      case "typing":
        // sent ephemeral only: one in a queued message is a peer's mistake, ignored
        s.transaction(() => {
          saveGroup(this.#ctx, record, state);
          done();
        });
        return;
      case "reaction":
      case "edit":
      case "deletion": {
        let r!: ChangeResult;
        s.transaction(() => {
          saveGroup(this.#ctx, record, state);
          r = applyChange(s, conv, author, body, sentAt);
          done();
        });
        if (r.kind === "refused") {
          this.#ignored++;
          this.#ctx.emit({
            kind: "warning",
            text: `Ignored ${
              body.kind === "edit" ? "an edit" : "a deletion"
            } from ${author} in ${conv.name}: ${r.why}`,
          });
        } else if (r.kind === "unknown") {
          this.#ignored++; // a change of a message this device has not got: dropped
        } else if (r.kind === "applied" && conv.requestFrom === undefined) {
          this.#ctx.emit({
            kind: "changed",
            conversation: conv,
            message: r.message,
            change: body.kind,
            by: author,
            ...(body.kind === "reaction" ? { emoji: body.emoji } : {}),
          });
        }
        return;
      }
    }
  }

  /**
   * A text from `author` was stored: a delivered receipt is due, sent after the batch
   * ({@link takeDelivered}), never to a request (not accepted) or a blocked user.
   */
  #noteDelivered(conv: Conversation, author: string, messageId: string): void {
    if (conv.requestFrom !== undefined || conv.kind === "self") return;
    if (this.#consent.blocked(author) || author === this.#ctx.username) return;
    const ids = this.#delivered.get(conv.id) ?? [];
    ids.push(messageId);
    this.#delivered.set(conv.id, ids);
  }

  /** The delivered receipts due (conversation id ─► message ids), emptied. */
  takeDelivered(): Map<string, string[]> {
    const d = this.#delivered;
    this.#delivered = new Map();
    return d;
  }

  /** Changes ignored so far: refused (not their message) or of an unknown message. */
  get ignoredChanges(): number {
    return this.#ignored;
  }

  #unreadable(
    conv: Conversation,
    m: DeliveredMessage,
    why: string,
    done: () => void,
    sender = m.sender,
  ): void {
    const message: StoredMessage = {
      conversationId: conv.id,
      messageId: uuidToString(m.messageId),
      sender,
      body: "",
      sentAt: m.sentAtMs,
      receivedAt: this.#ctx.now(),
      direction: "in",
      status: "delivered",
      unreadable: true,
    };
    let fresh = false;
    this.#ctx.state.transaction(() => {
      fresh = this.#ctx.state.addMessage(message);
      done();
    });
    if (fresh) this.#show(conv, { kind: "unreadable", conversation: conv, message, reason: why });
  }

  /**
   * Report a new message, unless its conversation is a request: then a DM is noted, and
   * reported as a request with its count by {@link reportRequests} once the batch is in
   * (a group's was reported at its Welcome).
   */
  #show(conv: Conversation, e: ClientEvent & { kind: "message" | "unreadable" }): void {
    const from = conv.requestFrom;
    if (from === undefined) return this.#ctx.emit(e);
    if (conv.kind === "dm") this.#requestsGrown.add(conv.id);
  }

  /**
   * One "request" event per DM request that got messages since the last call, with the
   * number it holds now: a stranger's three messages in one fetch read
   * `request from @x: 3 messages`, not a count of the first alone.
   */
  reportRequests(): void {
    const s = this.#ctx.state;
    for (const id of this.#requestsGrown) {
      const conv = s.getConversation(id);
      const from = conv?.requestFrom;
      if (conv === undefined || from === undefined || this.#consent.blocked(from)) continue;
      const messages = s.history(id, MAX_REQUEST_MESSAGES_SHOWN).length;
      this.#ctx.emit({ kind: "request", conversation: conv, from, messages });
    }
    this.#requestsGrown.clear();
  }

  async #welcome(m: DeliveredMessage, hex: string, done: () => void): Promise<void> {
    const s = this.#ctx.state;
    const existing = this.#ctx.groups.meta(hex);
    if (
      existing && !existing.broken && existing.leavingEpoch === undefined &&
      !aloneIn(this.#ctx, existing)
    ) {
      // A Welcome never replaces a working group state with other members in it (a member
      // could otherwise fork us into a look-alike group with the same id). A group with
      // nobody else in it may be replaced: both sides of a DM created one at once, and the
      // peer's commit won.
      const name = s.getConversation(hex)?.name ?? "a group";
      this.#ctx.emit({
        kind: "warning",
        text: `Ignored a Welcome to ${name} from ${m.sender}: you are already a member`,
      });
      return s.transaction(done);
    }
    if (this.#consent.blocked(m.sender)) {
      // sent before the block reached the server: not joined
      return s.transaction(done);
    }
    const held = this.#keyPackages.held();
    const signer = this.#ctx.signer();
    let joined;
    try {
      joined = await joinFromWelcome(m.payload, held.map((k) => k.privatePackage), signer);
      if (toHex(joined.state.groupId) !== hex) {
        throw new ValidationError("Welcome is for another group than the channel it came on");
      }
      await verifyRoster(joined.state, (u) => this.#contacts.key(u));
    } catch (e) {
      if (isTransient(e)) throw e;
      this.#ctx.emit({
        kind: "warning",
        text: `Ignored a Welcome from ${m.sender}: ${reason(e)}`,
      });
      return s.transaction(done);
    } finally {
      zeroize(signer.privateKey);
    }
    const channels = await listAllChannels(this.#session);
    let info = channels.find((c) => toHex(c.channelId) === hex);
    if (!info && m.channelKind !== undefined) {
      // Added and removed again before we read our queue: the server no longer lists the
      // channel for us, but what was sent while we were in is ours to read (the removal
      // follows in the queue).
      info = {
        channelId: m.channelId,
        channelKind: m.channelKind,
        name: m.channelName ?? "",
        members: [this.#ctx.username, joined.inviter],
        epoch: 0,
      };
    }
    // Who invited us is what MLS says (the Welcome's signer), never the server's `sender`.
    const inviter = joined.inviter;
    if (this.#consent.blocked(inviter)) return s.transaction(done); // under another name
    if (!info || (info.channelKind === "group" && info.name === "")) {
      this.#ctx.emit({
        kind: "warning",
        text: `Ignored a Welcome from ${inviter}: not a channel you are in`,
      });
      return s.transaction(done);
    }
    if (info.channelKind === "dm") {
      // A DM is shown under the peer's name: its group must hold exactly us and that peer,
      // or a lying server could file someone else's group under a contact's name.
      const roster = listMembers(joined.state).map((x) => x.username).sort();
      const expected = [...new Set([this.#ctx.username, ...info.members])].sort();
      if (roster.length !== 2 || roster.join("\n") !== expected.join("\n")) {
        this.#ctx.emit({
          kind: "warning",
          text: `Ignored a Welcome from ${inviter}: its members do not match the conversation`,
        });
        return s.transaction(done);
      }
    }
    // Consent: a conversation we had keeps its standing; a new one from someone who is not
    // a contact is a request (joined all the same, so accepting later needs nothing more).
    const before = s.getConversation(hex);
    const request = before ? before.requestFrom !== undefined : !this.#consent.admits(inviter);
    let conv!: Conversation;
    let again = 0;
    s.transaction(() => {
      // a new state over whatever was stored (a rejoin, a DM both sides created)
      this.#ctx.groups.save({
        channelId: hex,
        lastUpdateMs: this.#ctx.now(), // fresh keys on join
        leaves: [],
      }, joined.state);
      // a group an admin renamed is shown under its name (the server's label is the first)
      const named = groupSettings(joined.state)?.name ?? "";
      const label = info.channelKind === "group" && isGroupName(named)
        ? { ...info, name: named }
        : info;
      conv = upsertChannel(s, this.#ctx.username, label, this.#ctx.now());
      if (request && conv.requestFrom === undefined) {
        conv = { ...conv, requestFrom: inviter };
        s.upsertConversation(conv);
      }
      if (!request) this.#consent.befriend(listMembers(joined.state).map((x) => x.username));
      const used = held[joined.used];
      if (used) this.#keyPackages.used(used);
      again = this.#requeueAfterReadd(hex);
      done();
    });
    if (again > 0) {
      this.#ctx.emit({
        kind: "progress",
        text:
          `Added back to ${conv.name}: ${again} message(s) that failed when you were removed go out now`,
      });
    }
    if (request) {
      // a DM is reported at its first message, a group now
      if (conv.kind === "group" && !before) {
        this.#ctx.emit({ kind: "request", conversation: conv, from: inviter, messages: 0 });
      }
    } else if (existing?.broken) {
      this.#ctx.emit({ kind: "rejoined", conversation: conv, by: inviter });
    } else this.#ctx.emit({ kind: "joined", conversation: conv, inviter });
  }

  /**
   * Re-added to `channelId` (its Welcome is being stored): our messages our removal failed
   * within READD_RESEND_MS are queued again (status pending; the flush encrypts them again
   * in the epoch joined, refreshQueued; the sync that brought the Welcome, or the one that
   * follows a reconnect, flushes them). Returns how many.
   */
  #requeueAfterReadd(channelId: string): number {
    const failed = this.#failedByRemoval.get(channelId);
    this.#failedByRemoval.delete(channelId);
    if (!failed || this.#ctx.now() - failed.at > READD_RESEND_MS) return 0;
    const s = this.#ctx.state;
    let n = 0;
    for (const e of failed.entries) {
      const m = s.getMessage(e.messageId);
      if (m?.status !== "failed" || !s.addOutbox({ ...e, attempts: 0 })) continue;
      s.setMessageStatus(e.messageId, "pending");
      n++;
    }
    return n;
  }

  /** A member asks to be re-added: check the KeyPackage now, commit after the sync. */
  async #noteRejoin(conv: Conversation, state: MlsGroupState, m: DeliveredMessage) {
    try {
      if (!listMembers(state).some((x) => x.username === m.sender)) return;
      const parsed = await parseKeyPackage(m.payload, { suite: state.suite });
      if (parsed.username !== m.sender) {
        throw new ValidationError("Rejoin request carries someone else's KeyPackage");
      }
      const key = await this.#contacts.key(m.sender);
      if (!key || !constantTimeEqual(parsed.signaturePublicKey, key)) {
        throw new ValidationError("Rejoin request is not signed by the member's identity key");
      }
      this.#groups.noteRejoin(conv.channelId!, m.sender, m.payload);
    } catch (e) {
      if (isTransient(e)) throw e;
      this.#ctx.emit({
        kind: "warning",
        text: `Ignored a rejoin request from ${m.sender} in ${conv.name}: ${reason(e)}`,
      });
    }
  }
}
