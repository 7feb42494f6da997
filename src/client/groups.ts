/**
 * The groups part of the client: every conversation is an MLS group. Creating, inviting,
 * removing, leaving and self-updating go through one commit protocol; after each sync it
 * commits members' leaves, re-adds members who asked, and asks to be re-added where this
 * device's state broke. (What each delivered message does is inbox.ts.)
 *
 * ```
 * own commit:  sync ─► stage ─► [state + exact request] stored ─► send ─┬─ committed ─► merge
 *                                                                      ├─ epoch_conflict ─►
 *                                                                      │   discard, sync, retry
 *                                                                      └─ no answer ─► kept:
 *                                                                          resent as is later
 * leave:       proposal ─► [leaving state + queued request] stored ─► sent; the state follows
 *              the group until our removal, and the proposal is made again if it went stale
 * broken:      reported once; the rest of the account works; application messages become
 *              "unreadable" placeholders; we send a rejoin request (a fresh KeyPackage) ─►
 *              any member re-adds us (remove stale leaf + add, one commit) ─► Welcome ─►
 *              the conversation works again
 * ```
 *
 * @module
 */
import {
  addMembers,
  changeSettings,
  checkCredentialBinding,
  createGroup,
  DEFAULT_SUITE,
  discardPendingCommit,
  encryptMessage,
  epochAuthenticator,
  type GroupSettings,
  groupSettings,
  isAdmin,
  leaveGroup,
  leavingMembers,
  listMembers,
  mergePendingCommit,
  type MlsGroupState,
  type MlsSuiteName,
  parseKeyPackage,
  removeMembers,
  selfUpdate,
  type StagedCommit,
  SUITE_IDS,
  validDisappearing,
  withdrawOwnProposals,
} from "../mls/mod.ts";
import {
  decodeFrame,
  type EncodedRequest,
  encodedRequest,
  encodeRequestOnce,
  type Request,
} from "../wire/mod.ts";
import { constantTimeEqual, fromHex, toHex, zeroize } from "../bytes.ts";
import {
  InternalError,
  QpqError,
  retryLater,
  TransportError,
  UsageError,
  ValidationError,
} from "../errors.ts";
import type {
  Conversation,
  GroupMeta,
  GroupRecord,
  LocalState,
  StoredMessage,
} from "../store/client/mod.ts";
import type { GroupFields } from "./group_states.ts";
import type { ClientContext } from "./_context.ts";
import type { Contacts } from "./contacts.ts";
import { type Body, encodeContent } from "./content.ts";
import { type Change, type ChangeResult, planChange } from "./changes.ts";
import {
  isTransient,
  markBroken,
  reason,
  rememberCommit,
  saveGroup,
  withoutPending,
} from "./_group_state.ts";
import { findConversation, ownGroupNamed, relabelGroup, upsertChannel } from "./conversations.ts";
import { checkGroupName } from "../names.ts";
import { uuidToString, uuidv7 } from "./ids.ts";
import type { KeyPackages } from "./key_packages.ts";
import { failRemoved, notSentText, type Outbox, REMOVED_FAILURE, restoredFrom } from "./outbox.ts";
import type { Session } from "./session.ts";
import { listAllChannels } from "./_channels.ts";

import { COMMIT_RETRIES, REJOIN_RETRY_MS, SELF_UPDATE_INTERVAL_MS } from "../limits.ts";
import { narrowSend, receiptRecipients } from "./receipts.ts";
export { REJOIN_RETRY_MS, SELF_UPDATE_INTERVAL_MS };

/** What an own commit changes on the server's roster. */
interface Roster {
  add?: string[];
  remove?: string[];
  /** Send the commit's Welcome to the users in `add`. */
  welcome?: boolean;
}

/**
 * Builds an own commit from the current state (`attempt` counts the tries after epoch
 * conflicts, from 0), or returns undefined when there is nothing left to do.
 */
type MakeCommit = (
  state: MlsGroupState,
  attempt: number,
) => Promise<{ staged: StagedCommit; roster: Roster } | undefined>;

/** What `invite` or `remove` did, user by user: a success is only what the server accepted. */
export interface MembershipChange {
  /** Changed by our commit, which the server accepted. */
  done: string[];
  /** Nothing to do when we started: already members (invite), not members (remove). */
  already: string[];
  /** Changed meanwhile by another member's commit that came first: ours was superseded. */
  byOthers: string[];
}

/**
 * What `leave` did: `left` — out at once (nobody else was in the group, or a broken group
 * was forgotten on this device); `asked` — the server accepted our leave proposal, and we
 * stay a member until another member's client commits it (MLS lets nobody commit their
 * own removal).
 */
export type LeaveOutcome = "left" | "asked";

/** What {@link Groups.rename} did. */
export interface Renamed {
  /** The conversation under its new label. */
  conversation: Conversation;
  /** False when the group already had that name. */
  changed: boolean;
  /** Its label before. */
  previousName: string;
}

/** What {@link Groups.compose} queued: the request, and what it stored or changed. */
export interface Composed {
  /** The id of the queued message (of any kind). */
  messageId: string;
  request: EncodedRequest;
  /** A text's new history entry. */
  message?: StoredMessage;
  /** A change's target as it is now (a reaction, edit or deletion). */
  changed?: StoredMessage;
}

/** A change of one's own, as {@link Groups.compose} queues it: refused in words otherwise. */
function ownChange(r: ChangeResult, change: Change): ChangeResult {
  switch (r.kind) {
    case "unknown":
      throw new UsageError("No such message in this conversation", { code: "not_found" });
    case "refused":
      throw new UsageError(
        `Only its author can ${change.kind === "edit" ? "edit" : "delete"} a message`,
      );
    case "unchanged":
      if (r.message.deleted) throw new UsageError("That message was deleted");
      if (change.kind === "reaction") {
        throw new UsageError("That message has as many reactions as it can hold");
      }
      return r;
    default:
      return r;
  }
}

/** Rejoin requests received: channel → user → KeyPackage (committed after a sync). */
type RejoinRequests = Map<string, Map<string, Uint8Array>>;

/** Conversations as MLS groups. */
export class Groups {
  #ctx: ClientContext;
  #session: Session;
  #contacts: Contacts;
  #keyPackages: KeyPackages;
  #outbox: Outbox;
  #sync: () => Promise<number>;
  /** Rejoin requests the inbox checked: channel ─► user ─► KeyPackage (see {@link noteRejoin}). */
  #rejoins: RejoinRequests = new Map();
  /** A restore notice was applied (when the backup was taken): groups to check after the sync. */
  #restored: number | undefined;
  /** The restore check running (it heals groups the server has behind ours). */
  #restoreCheck: Promise<void> | undefined;
  /**
   * The groups with a disappearing timer (conversation id ─► seconds), as read from the
   * records at `version` (the store's {@link LocalState.recordsVersion}): a timer changes
   * only with a commit, which writes its group's record.
   */
  #timers: { version: number; seconds: Map<string, number> } | undefined;
  /** The records version at which {@link maintain} last found nothing to do. */
  #idleAt: number | undefined;
  /** The records version at which no record held a pending commit to resolve. */
  #noPendingAt: number | undefined;

  constructor(
    ctx: ClientContext,
    parts: {
      session: Session;
      contacts: Contacts;
      keyPackages: KeyPackages;
      outbox: Outbox;
      /** Catch up with the server (the receiver's fetch: it is built after this part). */
      sync: () => Promise<number>;
    },
  ) {
    this.#ctx = ctx;
    this.#session = parts.session;
    this.#contacts = parts.contacts;
    this.#keyPackages = parts.keyPackages;
    this.#outbox = parts.outbox;
    this.#sync = parts.sync;
  }

  /**
   * A member asked to be re-added to `channelId` with `keyPackage` (checked by the inbox:
   * theirs, signed by their pinned identity key): committed by the next {@link maintain},
   * the newest request of a user replacing an older one.
   */
  noteRejoin(channelId: string, user: string, keyPackage: Uint8Array): void {
    const byUser = this.#rejoins.get(channelId) ?? new Map<string, Uint8Array>();
    byUser.set(user, keyPackage);
    this.#rejoins.set(channelId, byUser);
  }

  // ---------------------------------------------------------------- reading state

  /** Find a conversation by "@user", "#group", "user" or "group". */
  conversation(ref: string): Conversation {
    return findConversation(this.#ctx.state, this.#ctx.username, ref, this.#ctx.now());
  }

  /** Why a conversation is broken, or undefined when it works. */
  brokenReason(conv: Conversation): string | undefined {
    return conv.channelId ? this.#ctx.groups.meta(conv.channelId)?.broken : undefined;
  }

  /** Conversations we are in (the notepad, DMs and groups; broken ones too). */
  list(): Conversation[] {
    // small rows only: no state is unsealed or decoded to list
    const groups = new Map(this.#ctx.groups.list().map((g) => [g.channelId, g]));
    return this.#ctx.state.listConversations().filter((c) => {
      if (c.kind === "self") return true;
      const g = c.channelId === undefined ? undefined : groups.get(c.channelId);
      return g !== undefined && g.leavingEpoch === undefined;
    });
  }

  /** The record and decoded state of a conversation we can use; UsageError otherwise. */
  #open(conv: Conversation): { record: GroupMeta; state: MlsGroupState } {
    if (conv.kind === "self" || !conv.channelId) {
      throw new UsageError("The notepad has no members to change");
    }
    const record = this.#ctx.groups.meta(conv.channelId);
    if (!record) {
      throw new UsageError(`You are not a member of ${conv.name}`, { code: "not_found" });
    }
    if (record.leavingEpoch !== undefined) {
      throw new UsageError(
        `You asked to leave ${conv.name}: waiting for another member to commit it`,
        { code: "not_found" },
      );
    }
    if (record.broken) {
      throw new UsageError(
        `${conv.name} is broken (${record.broken}): waiting for a member to re-add you`,
        { code: "conflict" },
      );
    }
    let state: MlsGroupState;
    try {
      state = this.#ctx.groups.open(record);
    } catch (e) {
      this.#markBroken(conv, record, `its state cannot be read: ${reason(e)}`);
      throw new UsageError(`${conv.name} is broken: waiting for a member to re-add you`, {
        code: "conflict",
      });
    }
    return { record, state };
  }

  /** Members of a conversation, from the local MLS state. */
  members(conv: Conversation): string[] {
    if (conv.kind === "self") return [this.#ctx.username];
    return listMembers(this.#open(conv).state).map((m) => m.username);
  }

  /**
   * The roles and settings of a group from its MLS state; undefined for a legacy group
   * or a DM (every member is an admin).
   */
  settings(conv: Conversation): GroupSettings | undefined {
    if (conv.kind === "self") return undefined;
    return groupSettings(this.#open(conv).state);
  }

  /** Refuse locally, before anything is sent, what receivers would refuse from us. */
  #mustBeAdmin(conv: Conversation, state: MlsGroupState, what: string): void {
    if (!isAdmin(state, this.#ctx.username)) {
      throw new UsageError(`Only admins of ${conv.name} can ${what}`, { code: "forbidden" });
    }
  }

  /**
   * Change a group's settings (admins only: refused here in one line, and by every member
   * from MLS): `what` names the action for the refusal ("change the topic"). Resolves false
   * when nothing changed.
   */
  async changeSettings(
    conv: Conversation,
    what: string,
    patch: (now: GroupSettings) => GroupSettings,
  ): Promise<boolean> {
    if (conv.kind !== "group") throw new UsageError("Settings exist in groups only");
    await this.#session.ensure();
    return await this.#settingsCommit(conv, (state) => {
      this.#mustBeAdmin(conv, state, what);
      const now = groupSettings(state);
      if (now === undefined) {
        throw new UsageError(`${conv.name} has no settings (made before roles existed)`, {
          code: "conflict",
        });
      }
      const next = patch(now);
      if (
        next.description === now.description &&
        next.disappearingSeconds === now.disappearingSeconds && next.name === now.name &&
        next.admins.join() === now.admins.join()
      ) return undefined;
      return next;
    });
  }

  /**
   * Commit a settings change: `build` gives the new settings from the current state, or
   * undefined when there is nothing to change. Members' leaves we hold go first, in a
   * commit of their own: a settings commit that also removes someone is unreadable to the
   * other members (ts-mls encrypts its path under the wrong group context; see
   * `changeSettings` in src/mls). Resolves true when the settings commit was accepted.
   */
  async #settingsCommit(
    conv: Conversation,
    build: (state: MlsGroupState) => GroupSettings | undefined,
  ): Promise<boolean> {
    for (let round = 0;; round++) {
      let leavesFirst = false;
      const changed = await this.#commit(conv, async (state) => {
        leavesFirst = false;
        const next = build(state);
        if (next === undefined) return undefined;
        // past the retries the settings commit is tried, and refused, as it is
        leavesFirst = leavingMembers(state).length > 0 && round < COMMIT_RETRIES;
        if (leavesFirst) return { staged: await selfUpdate(state), roster: {} };
        return { staged: await changeSettings(state, next), roster: {} };
      });
      if (!leavesFirst) return changed;
    }
  }

  /**
   * Rename a group (admins only, like every settings change: refused here and by every
   * member from MLS): the new name goes into the group's settings, and every member's
   * client — ours now — relabels the conversation (`#crew`, with an id suffix when it
   * looks like another of our groups). The server's label stays what the group was created
   * as: names are labels, the group is its id. Resolves the conversation as it is now and
   * whether the name changed.
   *
   * @throws {ValidationError} for a name create-group would refuse
   * @throws {UsageError} "conflict" when another of our groups has that name
   */
  async rename(conv: Conversation, name: string): Promise<Renamed> {
    const n = checkGroupName(name);
    if (conv.kind !== "group") throw new UsageError("Only groups can be renamed");
    const mine = ownGroupNamed(this.#ctx.state, n);
    if (mine !== undefined && mine.id !== conv.id) {
      throw new UsageError(`You already have a group ${mine.name}: choose another name`, {
        code: "conflict",
      });
    }
    const changed = await this.changeSettings(conv, "rename the group", (s) => ({
      ...s,
      name: n,
    }));
    const s = this.#ctx.state;
    let now = s.getConversation(conv.id) ?? conv;
    s.transaction(() => {
      now = relabelGroup(s, now, n);
    });
    return { conversation: now, changed, previousName: conv.name };
  }

  /**
   * Grant (`grant` true) or revoke admin of `user` in a group: a settings commit. The last
   * admin cannot be revoked (a group would have nobody to manage it).
   */
  async setAdmin(conv: Conversation, user: string, grant: boolean): Promise<boolean> {
    if (conv.kind !== "group") throw new UsageError("Admins exist in groups only");
    await this.#session.ensure();
    return await this.#settingsCommit(conv, (state) => {
      this.#mustBeAdmin(conv, state, grant ? "grant admin" : "revoke admin");
      const now = groupSettings(state);
      if (now === undefined) {
        throw new UsageError(`${conv.name} has no roles (made before roles existed)`, {
          code: "conflict",
        });
      }
      if (grant && !listMembers(state).some((m) => m.username === user)) {
        throw new UsageError(`${user} is not a member of ${conv.name}`, { code: "not_found" });
      }
      const has = now.admins.includes(user);
      if (grant === has) return undefined;
      const admins = grant ? [...now.admins, user] : now.admins.filter((a) => a !== user);
      if (admins.length === 0) {
        throw new UsageError(
          `${user} is the last admin of ${conv.name}: grant someone else first`,
          {
            code: "conflict",
          },
        );
      }
      return { ...now, admins };
    });
  }

  /**
   * Set a group's disappearing-message timer (seconds, 0 = off; admins only): a settings
   * commit. Resolves false when it was already so.
   */
  async setDisappearing(conv: Conversation, seconds: number): Promise<boolean> {
    if (conv.kind !== "group") throw new UsageError("Disappearing messages are set in groups");
    if (!validDisappearing(seconds)) {
      throw new UsageError("Disappearing timer must be off or 30 seconds to 4 weeks");
    }
    await this.#session.ensure();
    return await this.#settingsCommit(conv, (state) => {
      this.#mustBeAdmin(conv, state, "set disappearing messages");
      const now = groupSettings(state);
      if (now === undefined) {
        throw new UsageError(`${conv.name} has no roles (made before roles existed)`, {
          code: "conflict",
        });
      }
      if (now.disappearingSeconds === seconds) return undefined;
      return { ...now, disappearingSeconds: seconds };
    });
  }

  /**
   * Disappearing messages: delete, in every group with a timer, the messages older than it
   * (run on start, after each receive and periodically). Returns how many went.
   */
  expire(): number {
    let n = 0;
    for (const [id, secs] of this.#disappearing()) {
      n += this.#ctx.state.expireMessages(id, this.#ctx.now() - secs * 1000);
    }
    return n;
  }

  /** The groups with a disappearing timer, listed again only when a record changed. */
  #disappearing(): Map<string, number> {
    const version = this.#ctx.state.recordsVersion;
    if (this.#timers?.version === version) return this.#timers.seconds;
    const seconds = new Map<string, number>();
    for (const c of this.#ctx.state.listConversations()) {
      if (c.kind !== "group" || !c.channelId) continue;
      const meta = this.#ctx.groups.meta(c.channelId);
      if (!meta) continue;
      let secs = 0;
      try {
        secs = groupSettings(this.#ctx.groups.open(meta))?.disappearingSeconds ?? 0;
      } catch {
        continue;
      }
      if (secs > 0) seconds.set(c.id, secs);
    }
    this.#timers = { version, seconds };
    return seconds;
  }

  /** The MLS epoch and epoch authenticator of a conversation. */
  epochInfo(conv: Conversation): { epoch: bigint; authenticator: string } {
    const { state } = this.#open(conv);
    return { epoch: state.epoch, authenticator: toHex(epochAuthenticator(state)) };
  }

  #save(record: GroupFields, state: MlsGroupState, patch: Partial<GroupRecord> = {}): void {
    saveGroup(this.#ctx, record, state, patch);
  }

  #markBroken(conv: Conversation, record: GroupFields, why: string): void {
    markBroken(this.#ctx, conv, record, why);
  }

  // ---------------------------------------------------------------- creating

  /** Create a group; we are its first member. */
  async createGroup(name: string, suite: MlsSuiteName = DEFAULT_SUITE): Promise<Conversation> {
    const n = name.replace(/^#/, "");
    // names are labels, not unique on the server: only a second one of our own is refused
    const mine = ownGroupNamed(this.#ctx.state, n);
    if (mine !== undefined) {
      throw new UsageError(
        `You already have a group ${mine.name}: choose another name`,
        { code: "conflict" },
      );
    }
    await this.#session.ensure();
    const channel = await this.#session.call({ kind: "createGroup", name: n }, "channel");
    const signer = this.#ctx.signer();
    const state = await createGroup({
      groupId: channel.channelId,
      username: this.#ctx.username,
      identity: signer,
      suite,
      // the creator is the first admin (src/mls/settings.ts)
      settings: { admins: [this.#ctx.username], name: "", description: "", disappearingSeconds: 0 },
    }).finally(() => zeroize(signer.privateKey));
    const hex = toHex(channel.channelId);
    let conv!: Conversation;
    this.#ctx.state.transaction(() => {
      this.#ctx.groups.save({ channelId: hex, lastUpdateMs: this.#ctx.now(), leaves: [] }, state);
      conv = upsertChannel(this.#ctx.state, this.#ctx.username, channel, this.#ctx.now());
    });
    return conv;
  }

  /** Open (or find) the DM with `user` (not ourselves: that is the notepad). */
  async dm(user: string): Promise<Conversation> {
    const state = this.#ctx.state;
    const groups = this.#ctx.groups;
    const existing = state.findConversationByName(`@${user}`);
    if (existing?.channelId && groups.meta(existing.channelId)) return existing;
    await this.#session.ensure();
    const channel = await this.#session.call({ kind: "createDm", username: user }, "channel");
    const hex = toHex(channel.channelId);
    const conv = upsertChannel(state, this.#ctx.username, channel, this.#ctx.now());
    if (groups.meta(hex)) return conv;
    // The peer may have created the group already: its Welcome is then in our queue.
    await this.#sync();
    if (groups.meta(hex)) return conv;
    if (channel.epoch > 0) {
      // The peer made the DM's group and we never joined it (its Welcome was dropped during
      // a block, or our copy is gone): a group of our own would be refused at epoch 0.
      await this.askToBeAdded(channel.channelId);
      throw new UsageError(
        `You are not in the DM with ${user} yet: asked ${user} to add you again; try once they were online`,
        { code: "conflict" },
      );
    }
    const signer = this.#ctx.signer();
    const mls = await createGroup({
      groupId: channel.channelId,
      username: this.#ctx.username,
      identity: signer,
      suite: DEFAULT_SUITE,
    }).finally(() => zeroize(signer.privateKey));
    groups.save({ channelId: hex, lastUpdateMs: this.#ctx.now(), leaves: [] }, mls);
    try {
      await this.#add(conv, [user]);
    } catch (e) {
      // A DM group without the peer would be reused by every later dm(): drop it (unless
      // the conflict retries already left us in the peer's group), so the next try starts over.
      // Not while our commit adding the peer awaits its answer: the server may have accepted
      // it (the peer joins from its Welcome), and the next sync resends it to learn which.
      const record = groups.meta(hex);
      const st = record && !record.broken && record.pendingCommit === undefined
        ? groups.summary(record)
        : undefined;
      if (st && !st.members.includes(user)) groups.delete(hex);
      throw e;
    }
    return conv;
  }

  // ---------------------------------------------------------------- membership

  /** Invite users to a group: one commit adds them all; they join from the Welcome. */
  async invite(
    conv: Conversation,
    users: string[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<MembershipChange> {
    if (conv.kind !== "group") {
      throw new UsageError("Invite works on groups: use dm for one person");
    }
    await this.#session.ensure();
    const change = await this.#add(conv, users, onProgress);
    if (change.done.length === 0 && change.byOthers.length === 0) {
      const who = change.already.join(", ");
      throw new UsageError(
        `${who} ${
          change.already.length === 1 ? "is already a member" : "are already members"
        } of ${conv.name}`,
        { code: "conflict" },
      );
    }
    return change;
  }

  async #add(
    conv: Conversation,
    users: string[],
    onProgress?: (done: number, total: number) => void,
  ): Promise<MembershipChange> {
    const change: MembershipChange = { done: [], already: [], byOthers: [] };
    const suite = this.#suiteOf(conv);
    const packages: Uint8Array[] = [];
    for (const u of users) {
      const kp = await this.#session.call(
        { kind: "fetchKeyPackage", username: u, cipherSuite: SUITE_IDS[suite] },
        "keyPackage",
      );
      // the server hands out KeyPackages: each must be the user's we asked for, signed by
      // the identity key the directory (and our pin) has for them
      const parsed = await parseKeyPackage(kp.data, { suite });
      const key = await this.#contacts.key(u);
      if (parsed.username !== u || !key || !constantTimeEqual(parsed.signaturePublicKey, key)) {
        throw new ValidationError(`The server gave a KeyPackage that is not ${u}'s`);
      }
      packages.push(kp.data);
      onProgress?.(packages.length, users.length);
    }
    // One commit adds them all, unless the server refuses it as too large (a commit and
    // its Welcome grow by about 5 KiB per X-Wing member, and the Welcome carries the whole
    // tree): then the adds go in halves, each its own commit, down to one per commit.
    let size = users.length;
    for (let i = 0; i < users.length;) {
      const part = users.slice(i, i + size);
      const kps = packages.slice(i, i + size);
      const sub: MembershipChange = { done: [], already: [], byOthers: [] };
      try {
        await this.#commit(conv, async (state, attempt) => {
          // After an epoch conflict and re-sync some may be members already (two sides
          // opening the same DM at once: we joined the peer's group): add only the others.
          // A member who just asked to leave is not staying: adding them again re-adds them.
          const leaving = new Set(leavingMembers(state));
          const present = new Set(
            listMembers(state).map((m) => m.username).filter((u) => !leaving.has(u)),
          );
          sortOut(sub, part, (u) => present.has(u), attempt);
          const missing = part.flatMap((u, j) => present.has(u) ? [] : [{ u, kp: kps[j]! }]);
          if (missing.length === 0) return undefined;
          const staged = await addMembers(state, missing.map((m) => m.kp));
          for (const m of staged.added) {
            checkCredentialBinding(m, await this.#contacts.key(m.username));
          }
          return { staged, roster: { add: missing.map((m) => m.u), welcome: true } };
        });
      } catch (e) {
        if (e instanceof QpqError && e.code === "too_large") {
          if (size > 1) {
            size = Math.ceil(size / 2);
            continue;
          }
          throw new QpqError(
            "too_large",
            `${change.done.length > 0 ? `Added ${change.done.join(", ")} to ${conv.name}; ` : ""}` +
              `adding ${part[0]} to ${conv.name} needs a bigger message than the server takes ` +
              `(${e.message}): ask its operator to raise max_message_bytes`,
            { cause: e },
          );
        }
        if (change.done.length > 0 && e instanceof QpqError) {
          throw new QpqError(
            e.code,
            `Added ${change.done.join(", ")} to ${conv.name}, not ${
              users.slice(i).join(", ")
            }: ${e.message}`,
            { cause: e },
          );
        }
        throw e;
      }
      change.done.push(...sub.done);
      change.already.push(...sub.already);
      change.byOthers.push(...sub.byOthers);
      i += part.length;
    }
    return change;
  }

  #suiteOf(conv: Conversation): MlsSuiteName {
    const record = conv.channelId ? this.#ctx.groups.meta(conv.channelId) : undefined;
    return (record && this.#ctx.groups.suite(record)) ?? DEFAULT_SUITE;
  }

  /**
   * Remove users from a group; they cannot read anything sent afterwards. Members are
   * what the local MLS state says (the one roster `members` shows too).
   */
  async remove(conv: Conversation, users: string[]): Promise<MembershipChange> {
    if (conv.kind !== "group") throw new UsageError("Remove works on groups");
    await this.#session.ensure();
    const change: MembershipChange = { done: [], already: [], byOthers: [] };
    await this.#commit(conv, async (state, attempt) => {
      const present = new Set(listMembers(state).map((m) => m.username));
      sortOut(change, users, (u) => !present.has(u), attempt);
      const names = users.filter((u) => present.has(u));
      if (names.length === 0) return undefined;
      this.#mustBeAdmin(conv, state, "remove members");
      return { staged: await removeMembers(state, names), roster: { remove: names } };
    });
    if (change.done.length === 0 && change.byOthers.length === 0) {
      const who = change.already.join(", ");
      throw new UsageError(
        `${who} ${
          change.already.length === 1 ? "is not a member" : "are not members"
        } of ${conv.name}`,
        { code: "not_found" },
      );
    }
    return change;
  }

  /** Commit a self-update (new path secrets: post-compromise security). */
  async update(conv: Conversation): Promise<void> {
    await this.#session.ensure();
    await this.#commit(conv, async (state) => ({ staged: await selfUpdate(state), roster: {} }));
  }

  /**
   * Leave a group: propose our removal; another member commits it (MLS lets nobody commit
   * their own removal), so a leave the server accepted is `asked`, not done. The group
   * disappears from our list at once, but its state is kept (hidden) until the removal is
   * committed: if another commit wins the race and our proposal goes stale, it is made
   * again. A proposal the server refuses is withdrawn: we stay a member, as before.
   */
  async leave(conv: Conversation): Promise<LeaveOutcome> {
    if (conv.kind !== "group") throw new UsageError("Leave works on groups");
    await this.#session.ensure();
    await this.#sync();
    const outcome = await this.#ctx.exclusive(async (): Promise<LeaveOutcome | "alone"> => {
      const record = this.#ctx.groups.meta(conv.channelId ?? "");
      if (record?.broken) {
        // nothing can be sent in a group we cannot read: just forget it locally
        this.#ctx.groups.delete(record.channelId);
        return "left";
      }
      const { record: open, state } = this.#open(conv);
      if (listMembers(state).length === 1) return "alone";
      await this.#proposeLeave(open, state);
      return "asked";
    });
    if (outcome !== "alone") return outcome;
    return await this.#leaveAlone(conv);
  }

  /**
   * The last member leaves. Nobody is left to commit a leave proposal, but the server's
   * roster must not keep us (it would list the group, route to it, count it): a
   * self-update commit whose roster change takes us off it, then the group is forgotten
   * here. If someone was added meanwhile, it is an ordinary leave.
   */
  async #leaveAlone(conv: Conversation): Promise<LeaveOutcome> {
    const me = this.#ctx.username;
    let alone = false;
    await this.#commit(conv, async (state) => {
      alone = listMembers(state).length === 1;
      if (!alone) return undefined;
      return { staged: await selfUpdate(state), roster: { remove: [me] } };
    });
    if (!alone) return await this.leave(conv);
    // the accepted commit forgot the group (#pushCommit: it removes us)
    return "left";
  }

  /**
   * We asked to leave and so did every other member: nobody would ever commit anyone's
   * leave. Withdraw ours, commit theirs, then leave as the last member (a concurrent
   * commit of another leaver that removes us instead grants our leave as well).
   */
  async #commitOthersLeaves(conv: Conversation): Promise<void> {
    const channelId = conv.channelId ?? "";
    await this.#ctx.exclusive(() => {
      const now = this.#ctx.groups.meta(channelId);
      if (now?.leavingEpoch === undefined) return Promise.resolve();
      const { leavingEpoch: _, ...rest } = now;
      this.#save(rest, withdrawOwnProposals(this.#ctx.groups.open(now)));
      return Promise.resolve();
    });
    try {
      await this.#commit(conv, async (state) => ({ staged: await selfUpdate(state), roster: {} }));
    } catch (e) {
      // removed by another leaver's commit first: our leave is granted, nothing to do
      if (!this.#ctx.groups.meta(channelId)) return;
      if (!(e instanceof QpqError)) throw e;
    }
    if (this.#ctx.groups.meta(channelId)) await this.leave(conv);
  }

  /**
   * Make our leave proposal and store it with the hidden "leaving" state and as a queued
   * request in one transaction, then send it: a lost answer or a crash resends the same
   * request (the server keeps one copy), so the group never sees a leave we forgot.
   */
  async #proposeLeave(record: GroupMeta, current: MlsGroupState): Promise<void> {
    // what is queued for this group from an earlier epoch goes out before the leave,
    // encrypted again now: once our proposal is pending nothing can encrypt it, and the
    // server refuses it for good (seed 5015: the leave waited behind it forever)
    const again = await this.#encryptQueuedAgain(record.channelId, current);
    const state = again.state;
    const enc = await leaveGroup(state);
    const id = uuidv7();
    const request = encodeRequestOnce({
      kind: "enqueue",
      channelId: fromHex(record.channelId),
      messageId: id,
      payload: enc.outbound,
      messageKind: "proposal",
      epoch: Number(state.epoch),
      recipients: [],
    });
    const s = this.#ctx.state;
    s.transaction(() => {
      requeue(s, again.redone);
      // others' leaves stay recorded: if every member asks, one of us commits theirs
      this.#save(record, enc.state, { leavingEpoch: Number(state.epoch) });
      s.addOutbox({
        messageId: uuidToString(id),
        conversationId: record.channelId,
        request: request.bytes,
        createdAt: this.#ctx.now(),
        attempts: 0,
      });
    });
    enc.consumed.forEach((c) => zeroize(c));
    again.consumed.forEach((c) => zeroize(c));
    let sent: boolean;
    try {
      sent = await this.#outbox.deliver(uuidToString(id), request);
    } catch (e) {
      if (e instanceof TransportError || !(e instanceof QpqError)) throw e;
      // Refused (the outbox dropped the request): we stay a member, in the state the
      // proposal left (its handshake key stays used), without the proposal.
      const now = this.#ctx.groups.meta(record.channelId);
      if (now?.leavingEpoch !== undefined && !now.broken) {
        const { leavingEpoch: _, ...rest } = now;
        this.#save(rest, withdrawOwnProposals(this.#ctx.groups.open(now)));
      }
      const name = s.getConversation(record.channelId)?.name ?? "the group";
      throw new QpqError(
        e.code,
        `The server refused the leave of ${name}: ${e.message}; you are still a member`,
        { cause: e },
      );
    }
    if (!sent) {
      // Unreachable, answered with a temporary refusal (full disk, rate limit: the outbox
      // warned why), or waiting behind messages queued before it (sent in order).
      throw new TransportError(
        this.#outbox.queuedBefore(uuidToString(id))
          ? "The leave is kept and sent after the messages queued before it"
          : this.#outbox.refusal === undefined
          ? "Server unreachable: the leave is kept and sent when the server is back"
          : "The server could not take the leave yet: it is kept and sent later",
        { code: "unavailable" },
      );
    }
  }

  /**
   * Commit a self-update in every working group whose last own commit is older than
   * `maxAgeMs`. Returns the groups updated.
   */
  async selfUpdateDue(maxAgeMs = SELF_UPDATE_INTERVAL_MS): Promise<string[]> {
    const done: string[] = [];
    for (const c of this.list()) {
      // a request (consent.ts) sends nothing on its own: no sign of life to a stranger
      if (c.kind === "self" || !c.channelId || c.requestFrom !== undefined) continue;
      const record = this.#ctx.groups.meta(c.channelId);
      if (!record || record.broken) continue;
      if (this.#ctx.now() - record.lastUpdateMs < maxAgeMs) continue;
      await this.update(c);
      done.push(c.name);
    }
    return done;
  }

  // ---------------------------------------------------------------- sending

  /**
   * The one send path for every kind of content: encrypt `body` and queue it in one
   * transaction with what it changes locally (a text: its history entry; a reaction, edit
   * or deletion: its target, as every receiver changes it, changes.ts); the caller
   * delivers it. The outbox entry keeps the Content bytes, so a queued message of any kind
   * is encrypted again after an epoch change ({@link refreshQueued}).
   *
   * `offline` (the server cannot be reached): composed even while a change of ours waits
   * for the server's answer. It is encrypted in the epoch the group has and queued; a
   * flush comes after a fetch, which settles the change first (resolvePendingCommits:
   * made, a later epoch; or beaten), and encrypts it again in the epoch the group is at
   * then ({@link refreshQueued}): a message written after a remove never reaches the one
   * removed. Online, such a change is completed first (the caller syncs) and one still
   * waiting is refused "try again".
   *
   * @throws {UsageError} for a change the receivers would not apply (no such message in
   *   this conversation, someone else's message to edit or delete, a deleted one)
   */
  async compose(conv: Conversation, body: Body, offline = false): Promise<Composed> {
    for (let attempt = 0;; attempt++) {
      const made = await this.#compose(conv, body, attempt < 2, offline);
      if (made) return made;
      await this.#commitProposals(conv);
    }
  }

  /**
   * A member's leave is waiting for a commit (MLS sends nothing until then): commit every
   * proposal waiting in the group. True when our commit made it (false: nothing waited).
   */
  #commitProposals(conv: Conversation): Promise<boolean> {
    return this.#commit(conv, async (state) => {
      if (state.pendingProposals === 0) return undefined;
      return { staged: await selfUpdate(state), roster: {} };
    });
  }

  async #compose(
    conv: Conversation,
    body: Body,
    mayDefer: boolean,
    offline: boolean,
  ): Promise<Composed | undefined> {
    if (body.kind === "typing") {
      throw new InternalError("A typing indicator is never queued: Groups.typing sends it");
    }
    return await this.#ctx.exclusive(async () => {
      const { record, state } = this.#open(conv);
      if (state.pendingProposals > 0 && mayDefer) return undefined;
      if (state.hasPendingCommit && !offline) {
        throw new UsageError("A group change is still pending: try again", {
          code: "conflict",
        });
      }
      if (listMembers(state).length < 2) {
        throw new UsageError(`Nobody else is in ${conv.name} yet: invite someone first`);
      }
      const id = uuidv7();
      const now = this.#ctx.now();
      const messageId = uuidToString(id);
      const s = this.#ctx.state;
      let message: StoredMessage | undefined;
      let change: ChangeResult | undefined;
      if (body.kind === "text") {
        message = {
          conversationId: conv.id,
          messageId,
          sender: this.#ctx.username,
          body: body.text,
          sentAt: now,
          receivedAt: now,
          direction: "out",
          status: "pending",
          ...(body.replyTo ? { replyTo: body.replyTo } : {}),
        };
      } else if (body.kind !== "receipt") {
        change = ownChange(planChange(s, conv, this.#ctx.username, body, now), body);
      }
      // a receipt matters only to the authors of the messages it names: to them alone
      // (a receipt in a group of 100 would otherwise cost 99 deliveries), within the
      // bound on sends that skip members (MAX_NARROW_SENDS); everything else to everyone
      const to = body.kind === "receipt"
        ? receiptRecipients(
          s,
          listMembers(state).map((m) => m.username),
          body.targets,
          this.#ctx.username,
        )
        : [];
      const narrow = narrowSend(record, Number(state.epoch), to.length > 0);
      const content = encodeContent({ messageId: id, sentAtMs: now, body });
      const enc = await encryptMessage(state, content);
      const request = encodeRequestOnce({
        kind: "enqueue",
        channelId: fromHex(record.channelId),
        messageId: id,
        payload: enc.outbound,
        messageKind: "application",
        epoch: Number(state.epoch),
        recipients: narrow.narrowSends.count > 0 ? to : [],
      });
      s.transaction(() => {
        this.#save(record, enc.state, narrow);
        if (message) s.addMessage(message);
        if (change?.kind === "applied") s.updateMessage(change.message);
        s.addOutbox({
          messageId,
          conversationId: conv.id,
          request: request.bytes,
          createdAt: now,
          attempts: 0,
          content,
        });
      });
      enc.consumed.forEach((c) => zeroize(c));
      return {
        messageId,
        request,
        ...(message ? { message } : {}),
        ...(change?.kind === "applied" ? { changed: change.message } : {}),
      };
    });
  }

  /**
   * Send a typing indicator to the members of `conv` online now, except `except` (those we
   * blocked): encrypted like any content — a generation of our ratchet is used up, so the
   * state is saved — and sent as an ephemeral enqueue (pushed to live subscriptions, stored
   * nowhere, docs/protocol.md "ephemeral"). Best effort: no outbox entry, no history, no
   * retry; nothing is sent while a group change waits. Resolves how many connections it
   * reached.
   *
   * ```
   * typing ─► encrypt (state saved: the generation is spent) ─► enqueue{ephemeral} ─► done
   * ```
   */
  async typing(conv: Conversation, active: boolean, except: string[] = []): Promise<number> {
    const made = await this.#ctx.exclusive(async () => {
      const { record, state } = this.#open(conv);
      if (state.hasPendingCommit || state.pendingProposals > 0) return undefined;
      // not ahead of queued messages: their generations would be overtaken (Outbox)
      if (this.#outbox.queuedBefore(undefined, record.channelId)) return undefined;
      const me = this.#ctx.username;
      const others = listMembers(state).map((m) => m.username).filter((u) => u !== me);
      const to = others.filter((u) => !except.includes(u));
      if (to.length === 0) return undefined;
      // reaching only who is online, it is a narrow send; at the bound it waits for a
      // receipt or a message to everyone
      const narrow = narrowSend(record, Number(state.epoch), true);
      if (narrow.narrowSends.count === 0) return undefined;
      const id = uuidv7();
      const content = encodeContent({
        messageId: id,
        sentAtMs: this.#ctx.now(),
        body: { kind: "typing", active },
      });
      const enc = await encryptMessage(state, content);
      this.#ctx.state.transaction(() => this.#save(record, enc.state, narrow));
      enc.consumed.forEach((c) => zeroize(c));
      return {
        channelId: fromHex(record.channelId),
        messageId: id,
        payload: enc.outbound,
        epoch: Number(state.epoch),
        // everyone (empty) unless someone is left out
        recipients: to.length === others.length ? [] : to,
      };
    });
    if (made === undefined) return 0;
    const r = await this.#session.call({
      kind: "enqueue",
      ...made,
      messageKind: "application",
      ephemeral: true,
    }, "enqueued");
    return r.recipients;
  }

  /**
   * Make every queued message ready to leave on its group's current epoch: one encrypted
   * in an epoch the group has since left (composed offline while others committed) is
   * encrypted again in the current epoch, under the same message id, before it goes out —
   * members keep only a few past epochs' keys, so the old ciphertext could arrive
   * unreadable. Where a member's proposal waits (MLS encrypts nothing until it is
   * committed), it is committed first, as {@link compose} does. Returns the conversations
   * whose queued requests must wait (the proposals could not be committed yet, or an own
   * commit awaits the server's answer): the outbox holds all of them, in order, until a
   * later flush finds the group current. The queue keeps its order.
   */
  async refreshQueued(): Promise<Set<string>> {
    const s = this.#ctx.state;
    const held = new Set<string>();
    if (s.outboxCount() === 0) return held;
    const waiting = new Set<string>();
    for (const q of this.#staleQueued()) {
      if (q.state.pendingProposals > 0 && !q.state.hasPendingCommit) waiting.add(q.channelId);
    }
    for (const channelId of waiting) {
      const conv = s.getConversation(channelId);
      if (!conv) continue;
      // a failure holds the group's messages (below); the next flush tries again
      await this.#commitProposals(conv).catch((e) => {
        if (!(e instanceof QpqError)) throw e;
        if (isTransient(e)) return;
        this.#ctx.emit({
          kind: "warning",
          text: `A queued message to ${conv.name} waits: ${reason(e)}`,
        });
      });
    }
    await this.#ctx.exclusive(async () => {
      const redone = new Map<string, Uint8Array>();
      const states = new Map<string, { record: GroupMeta; state: MlsGroupState }>();
      const consumed: Uint8Array[] = [];
      for (const q of this.#staleQueued()) {
        if (held.has(q.conversationId)) continue;
        // the Content as composed; an entry of an older build has its text in the row
        let content = q.content;
        if (!content) {
          const m = s.getMessage(q.messageId);
          if (!m || m.direction !== "out") continue; // nothing to encrypt again: as it was
          content = encodeContent({
            messageId: q.request.messageId,
            sentAtMs: m.sentAt,
            body: { kind: "text", text: m.body },
          });
        }
        const g = states.get(q.channelId) ?? q;
        if (g.state.pendingProposals > 0 || g.state.hasPendingCommit) {
          held.add(q.conversationId); // never sent in an epoch the group has left
          continue;
        }
        const again = await encryptAgain(g.state, q.request, content);
        // zeroed once the new states are stored: the kept state must stay usable till then
        consumed.push(...again.consumed);
        states.set(q.channelId, { record: g.record, state: again.state });
        redone.set(q.messageId, again.request);
      }
      if (redone.size === 0) return;
      s.transaction(() => {
        for (const { record, state } of states.values()) this.#save(record, state);
        requeue(s, redone);
      });
      consumed.forEach((c) => zeroize(c));
    });
    return held;
  }

  /**
   * Queued application messages of working groups encrypted in an epoch before the
   * group's current one, oldest first, each with its group's stored record and state.
   */
  /**
   * The queued application messages of `channelId` encrypted in an epoch before `state`'s,
   * encrypted again in `state` (when it has no proposal or commit pending; else as they
   * were). Returns the state after them, their new requests by message id, and the used
   * secrets to zero once the new state is stored.
   */
  async #encryptQueuedAgain(
    channelId: string,
    state: MlsGroupState,
  ): Promise<{ state: MlsGroupState; redone: Map<string, Uint8Array>; consumed: Uint8Array[] }> {
    const redone = new Map<string, Uint8Array>();
    const consumed: Uint8Array[] = [];
    if (state.pendingProposals > 0 || state.hasPendingCommit) return { state, redone, consumed };
    for (const e of this.#ctx.state.listOutbox(channelId)) {
      if (!e.content) continue; // an older build's entry: as it was
      const frame = decodeFrame(e.request);
      if (frame.type !== "request" || frame.request.kind !== "enqueue") continue;
      const request = frame.request;
      if (request.messageKind !== "application" || request.epoch >= Number(state.epoch)) continue;
      const again = await encryptAgain(state, request, e.content);
      state = again.state;
      consumed.push(...again.consumed);
      redone.set(e.messageId, again.request);
    }
    return { state, redone, consumed };
  }

  #staleQueued(): {
    messageId: string;
    /** The outbox entry's conversation (what the outbox holds by). */
    conversationId: string;
    channelId: string;
    request: Extract<Request, { kind: "enqueue" }>;
    /** The Content bytes to encrypt again (absent: an older build's text entry). */
    content?: Uint8Array;
    record: GroupMeta;
    state: MlsGroupState;
  }[] {
    const s = this.#ctx.state;
    const groups = new Map<string, { record: GroupMeta; state: MlsGroupState } | undefined>();
    const stale = [];
    for (const e of s.listOutbox()) {
      const frame = decodeFrame(e.request);
      if (frame.type !== "request" || frame.request.kind !== "enqueue") continue;
      const request = frame.request;
      if (request.messageKind !== "application") continue;
      const channelId = toHex(request.channelId);
      if (!groups.has(channelId)) {
        const record = this.#ctx.groups.meta(channelId);
        // a broken group cannot encrypt, a leaving one sends nothing new: as it was
        groups.set(
          channelId,
          !record || record.broken || record.leavingEpoch !== undefined
            ? undefined
            : { record, state: this.#ctx.groups.open(record) },
        );
      }
      const g = groups.get(channelId);
      if (!g || Number(g.state.epoch) <= request.epoch) continue;
      stale.push({
        messageId: e.messageId,
        conversationId: e.conversationId,
        channelId,
        request,
        ...(e.content ? { content: e.content } : {}),
        ...g,
      });
    }
    return stale;
  }

  // ---------------------------------------------------------------- the commit protocol

  /**
   * Stage, persist, send and merge an own commit, re-syncing and retrying on an epoch
   * conflict. `make` builds the commit from the current state each attempt, or returns
   * undefined when there is nothing left to do. Only a commit the server accepted is
   * merged (then this returns true); a refused one is discarded and thrown. A conflict that
   * catching up does not resolve (the server's channel is not at any epoch this device
   * reaches: it was restored from a backup, or it lies) is thrown at once, not retried.
   */
  async #commit(conv: Conversation, make: MakeCommit, heal = false): Promise<boolean> {
    let conflictAt: bigint | undefined;
    let committed = false;
    for (let attempt = 0;; attempt++) {
      await this.#sync();
      // after a restore notice our groups heal first: a commit of ours past the server's
      // epoch would be taken as the heal, without the roster change that heals
      if (!heal) await this.#afterRestore();
      const retry = await this.#ctx.exclusive(async () => {
        const { record, state } = this.#open(conv);
        if (conflictAt !== undefined && state.epoch === conflictAt) {
          throw new QpqError(
            "epoch_conflict",
            `The server refused the change of ${conv.name}: its copy of the group is not at ` +
              `epoch ${state.epoch} like this device's (was it restored from a backup?)`,
          );
        }
        const made = await make(state, attempt);
        if (!made) return false;
        const { staged, roster } = made;
        const welcome = roster.welcome && staged.outbound.welcome
          ? staged.outbound.welcome
          : undefined;
        const request: Request = {
          kind: "commit",
          channelId: fromHex(record.channelId),
          epoch: Number(state.epoch),
          messageId: uuidv7(),
          payload: staged.outbound.commit,
          add: roster.add ?? [],
          // everyone this commit removes: named, and the leaves it applies — also a leaver
          // it adds again (the same key back in the same leaf reads as "unchanged")
          remove: [
            ...new Set([
              ...(roster.remove ?? []),
              ...staged.removed.map((m) => m.username),
              ...leavingMembers(state),
            ]),
          ],
          welcomes: [],
          welcome: welcome ?? new Uint8Array(0),
          welcomeFor: welcome ? (roster.add ?? []) : [],
        };
        const encoded = encodeRequestOnce(request);
        // Staged state and the exact request are stored together before anything is sent:
        // after a crash or a lost answer the same bytes are sent again (the server keeps
        // one copy), so the outcome is never guessed.
        this.#save(record, staged.state, { pendingCommit: encoded.bytes });
        const outcome = await this.#pushCommit(record.channelId, encoded);
        if (outcome !== "accepted") {
          if (outcome.code === "epoch_conflict" && attempt < COMMIT_RETRIES) {
            conflictAt = state.epoch;
            return true;
          }
          throw outcome;
        }
        committed = true;
        // members removed without being named were leaves we committed
        const named = new Set(roster.remove ?? []);
        const left = staged.removed.map((m) => m.username).filter((u) => !named.has(u));
        if (left.length > 0) {
          this.#ctx.emit({
            kind: "members",
            conversation: conv,
            added: [],
            removed: [],
            left,
            by: this.#ctx.username,
          });
        }
        return false;
      });
      if (!retry) return committed;
    }
  }

  /**
   * Send a stored own commit until the server answers. Accepted (also as a duplicate of an
   * earlier try): merged. Refused: discarded and the error returned. Unreachable: it stays
   * pending (resolved by the next sync) and this throws.
   */
  async #pushCommit(channelId: string, request: EncodedRequest): Promise<"accepted" | QpqError> {
    const groups = this.#ctx.groups;
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (attempt > 0) {
          await this.#session.disconnect();
          await this.#ctx.sleep(200 * attempt);
        }
        if (!this.#session.connected) await this.#session.ensure();
        await this.#session.call(request, "committed");
      } catch (e) {
        if (e instanceof TransportError || !(e instanceof QpqError)) {
          lastError = e;
          continue;
        }
        const record = groups.meta(channelId);
        if (record) {
          const state = groups.open(record);
          const rest = withoutPending(record);
          if (state.hasPendingCommit) {
            const back = await discardPendingCommit(state);
            this.#save(rest, back.state);
          } else groups.update(rest);
        }
        return e;
      }
      const record = groups.meta(channelId);
      if (record && commitRequest(request).remove.includes(this.#ctx.username)) {
        // our leave as the last member (#leaveAlone): the server's roster no longer has us,
        // so the group is forgotten here too — also when the answer comes only after
        // a crash or a lost answer, through resolvePendingCommits (sim seed 5036: it was
        // merged and kept, listed for good although the server had let us go)
        groups.delete(channelId);
        return "accepted";
      }
      if (record) {
        const state = groups.open(record);
        const next: GroupFields = {
          ...withoutPending(record),
          lastUpdateMs: this.#ctx.now(),
          recentCommits: rememberCommit(record, commitPayload(request)),
        };
        if (state.hasPendingCommit) {
          const merged = mergePendingCommit(state);
          this.#save(next, merged.state);
          merged.consumed.forEach((c) => zeroize(c));
        } else groups.update(next);
      }
      return "accepted";
    }
    throw new TransportError(
      "Server unreachable: the group change is kept and completed when the server is back",
      { code: "unavailable", cause: lastError },
    );
  }

  /** Finish own commits left pending by a crash or a lost connection (before receiving). */
  async resolvePendingCommits(): Promise<void> {
    // a pending commit is stored with its state (putGroup): none since the last look, none now
    const version = this.#ctx.state.recordsVersion;
    if (this.#noPendingAt === version) return;
    const records = this.#ctx.groups.list();
    if (records.every((r) => !r.pendingCommit || r.broken)) {
      this.#noPendingAt = version;
      return;
    }
    for (const record of records) {
      if (!record.pendingCommit || record.broken) continue;
      const request = encodedRequest("commit", record.pendingCommit);
      await this.#ctx.exclusive(async () => {
        const current = this.#ctx.groups.meta(record.channelId);
        if (!current?.pendingCommit) return;
        const outcome = await this.#pushCommit(record.channelId, request);
        if (outcome === "accepted") return;
        // The command that made it said the change was kept: say what became of it.
        const name = this.#ctx.state.getConversation(record.channelId)?.name ?? "a group";
        this.#ctx.emit({
          kind: "warning",
          text: outcome.code === "epoch_conflict"
            ? `A change of ${name} that waited for the server was not made: another member's change came first; make it again if it is still needed`
            : `A change of ${name} that waited for the server was refused: ${outcome.message}`,
        });
      });
    }
  }

  // ---------------------------------------------------------------- after a sync

  /**
   * Work a sync leaves behind, never inside one (commits sync first): commit members'
   * leaves, re-add members who asked, ask to be re-added where we are broken. Failures are
   * warnings: one conversation never stops the others.
   */
  async maintain(): Promise<void> {
    const s = this.#ctx.state;
    await this.#afterRestore();
    // nothing was left to do and no record changed since: nothing to list (a receive
    // batch of application messages changes no record)
    const version = s.recordsVersion;
    if (this.#idleAt === version && this.#rejoins.size === 0) return;
    this.#idleAt = undefined;
    let work = this.#rejoins.size > 0;
    const groups = this.#ctx.groups;
    for (const record of groups.list()) {
      const conv = s.getConversation(record.channelId);
      if (!conv) continue;
      if (record.leavingEpoch !== undefined || record.broken || record.leaves.length > 0) {
        work = true;
      }
      if (record.leavingEpoch !== undefined) {
        let everyoneLeaving = false;
        await this.#ctx.exclusive(async () => {
          const now = groups.meta(record.channelId);
          if (now?.leavingEpoch === undefined) return;
          const st = groups.open(now);
          // our proposal went stale (another commit came first): ask again in this epoch
          if (Number(st.epoch) > now.leavingEpoch && !st.hasPendingCommit) {
            await this.#proposeLeave(now, st);
            return;
          }
          const me = this.#ctx.username;
          const others = listMembers(st).map((m) => m.username).filter((u) => u !== me);
          if (!st.hasPendingCommit && others.every((u) => now.leaves.includes(u))) {
            everyoneLeaving = true;
          }
        }).catch((e) =>
          this.#ctx.emit({
            kind: "warning",
            text: `Could not repeat the leave of ${conv.name}: ${reason(e)}`,
          })
        );
        if (everyoneLeaving) {
          await this.#commitOthersLeaves(conv).catch((e) =>
            this.#ctx.emit({
              kind: "warning",
              text: `Could not complete the leave of ${conv.name}: ${reason(e)}`,
            })
          );
        }
        continue;
      }
      if (record.broken) {
        await this.#askRejoin(conv, record).catch((e) => {
          if (e instanceof QpqError && e.code === "forbidden") {
            // the server says we are not in this conversation any more: we were removed
            // by a change we could not read
            const unsent = this.#ctx.state.transaction(() => {
              groups.delete(record.channelId);
              return failRemoved(this.#ctx.state, conv.id);
            });
            this.#ctx.emit({ kind: "removed", conversation: conv, by: "a member" });
            if (unsent > 0) {
              this.#ctx.emit({ kind: "warning", text: notSentText(conv.name, REMOVED_FAILURE) });
            }
            return;
          }
          this.#ctx.emit({
            kind: "warning",
            text: `Could not ask ${conv.name} to re-add you: ${reason(e)}`,
          });
        });
        continue;
      }
      for (const user of record.leaves) {
        // kept while the server cannot be reached (the commit was not even made, or it waits
        // as our pending commit) or refuses it for now (full disk, database error): the next
        // maintain commits it; forgetting it here left the leaver on the roster for good
        // (sim seed 2: a power cut, then nobody committed it; seed 5024: a full disk)
        const later = await this.#commit(conv, async (state) => {
          if (!listMembers(state).some((x) => x.username === user)) return undefined;
          return { staged: await selfUpdate(state), roster: {} };
        }).then(() => false, (e) => {
          this.#ctx.emit({
            kind: "warning",
            text: `Could not commit ${user}'s leave: ${reason(e)}`,
          });
          return retryLater(e);
        });
        if (later) continue;
        const now = groups.meta(record.channelId);
        if (now) groups.update(now, { leaves: now.leaves.filter((u) => u !== user) });
      }
      const asks = this.#rejoins.get(record.channelId);
      this.#rejoins.delete(record.channelId);
      for (const [user, kp] of asks ?? []) {
        await this.#commit(conv, async (state) => {
          if (!listMembers(state).some((x) => x.username === user)) return undefined;
          let staged;
          try {
            staged = await addMembers(state, [kp], { replaceExisting: true });
          } catch (e) {
            if (e instanceof QpqError && e.code === "conflict") return undefined; // done already
            throw e;
          }
          return { staged, roster: { add: [user], remove: [user], welcome: true } };
        }).catch((e) =>
          this.#ctx.emit({ kind: "warning", text: `Could not re-add ${user}: ${reason(e)}` })
        );
      }
    }
    if (!work && s.recordsVersion === version) this.#idleAt = version;
  }

  /**
   * The server was restored from a backup taken at `backupTakenAt` (ms, 0 = unknown): after
   * this sync, heal our groups that changed since (the server has an older epoch of them):
   * a self-update at our epoch that brings the server's roster up to our MLS group's, which
   * the server accepts once per restored channel (issue 21). A group the server does not
   * list for us (created since, or we were added since) is said in one line.
   */
  noteRestore(backupTakenAt: number): void {
    this.#restored = backupTakenAt;
  }

  /** Run the restore check if a notice asked for one, or wait for the one running. */
  #afterRestore(): Promise<void> {
    if (this.#restoreCheck === undefined && this.#restored !== undefined) {
      this.#restoreCheck = this.#checkAfterRestore().catch((e) =>
        this.#ctx.emit({
          kind: "warning",
          text: `Could not compare the groups with the restored server: ${reason(e)}`,
        })
      ).finally(() => this.#restoreCheck = undefined);
    }
    return this.#restoreCheck ?? Promise.resolve();
  }

  async #checkAfterRestore(): Promise<void> {
    const takenAt = this.#restored;
    if (takenAt === undefined) return;
    this.#restored = undefined;
    const channels = await listAllChannels(this.#session);
    const epochs = new Map(channels.map((c) => [toHex(c.channelId), c.epoch]));
    const s = this.#ctx.state;
    for (const record of this.#ctx.groups.list()) {
      const conv = s.getConversation(record.channelId);
      if (!conv || record.broken || record.leavingEpoch !== undefined) continue;
      const ours = this.#ctx.groups.summary(record)?.epoch;
      if (ours === undefined) continue; // unreadable: broken at its next use
      const theirs = epochs.get(record.channelId);
      if (theirs !== undefined && theirs >= ours) continue;
      if (theirs === undefined) {
        // a DM opened since, a group created since or that added us since: for the last,
        // a member the backup's roster has heals it (and we get its commit)
        this.#ctx.emit({
          kind: "warning",
          text: `${restoredFrom(takenAt)}: ${conv.name} changed since then and the server ` +
            (conv.kind === "group"
              ? "does not list it for you: a member it lists brings it up to date, or create it again"
              : "has it as it was; create it again"),
        });
        continue;
      }
      const healed = await this.#heal(conv, record.channelId).catch((e) => {
        this.#ctx.emit({
          kind: "warning",
          text: `${restoredFrom(takenAt)}: ${conv.name} changed since then and the server ` +
            `has it as it was; bringing it up to date failed (${reason(e)}): create it again`,
        });
        return false;
      });
      if (healed) {
        this.#ctx.emit({
          kind: "warning",
          text: `${restoredFrom(takenAt)}: ${conv.name} changed since then; ` +
            "the server's copy was brought up to date",
        });
      }
    }
  }

  /**
   * Heal a channel the restore put back at an older epoch: a self-update commit at our
   * epoch whose roster change makes the server's roster our MLS group's. Another member's
   * heal that came first (an epoch conflict, then caught up) leaves nothing to do.
   */
  #heal(conv: Conversation, channelId: string): Promise<boolean> {
    return this.#commit(conv, async (state, attempt) => {
      if (attempt > 0) return undefined; // a member's commit came first: healed by them
      const answer = await this.#session.call(
        { kind: "members", channelId: fromHex(channelId) },
        "memberList",
      );
      const server = new Set(answer.members);
      const mls = new Set(listMembers(state).map((m) => m.username));
      return {
        staged: await selfUpdate(state),
        roster: {
          add: [...mls].filter((u) => !server.has(u)),
          remove: [...server].filter((u) => !mls.has(u)),
        },
      };
    }, true);
  }

  /**
   * Ask the members of a channel we are on the roster of, but not in (a held invitation
   * just accepted), to add us: the rejoin request with a fresh KeyPackage, the same one a
   * member whose state broke sends. A member's re-add commit brings the Welcome.
   */
  async askToBeAdded(channelId: Uint8Array): Promise<void> {
    const kp = await this.#keyPackages.make(DEFAULT_SUITE);
    await this.#session.call({
      kind: "enqueue",
      channelId,
      messageId: uuidv7(),
      payload: kp,
      messageKind: "rejoin",
      epoch: 0,
      recipients: [],
    }, "enqueued");
  }

  async #askRejoin(conv: Conversation, record: GroupMeta): Promise<void> {
    const now = this.#ctx.now();
    if (
      record.rejoinRequestedMs !== undefined && now - record.rejoinRequestedMs < REJOIN_RETRY_MS
    ) {
      return;
    }
    const suite = this.#ctx.groups.suite(record) ?? DEFAULT_SUITE;
    const kp = await this.#keyPackages.make(suite);
    await this.#session.call({
      kind: "enqueue",
      channelId: fromHex(record.channelId),
      messageId: uuidv7(),
      payload: kp,
      messageKind: "rejoin",
      epoch: 0,
      recipients: [],
    }, "enqueued");
    const current = this.#ctx.groups.meta(record.channelId);
    if (current?.broken) this.#ctx.groups.update(current, { rejoinRequestedMs: now });
    this.#ctx.emit({
      kind: "progress",
      text: `Asked the members of ${conv.name} to re-add you`,
    });
  }

  /** Used by the outbox owner: deliver a composed message. */
  deliver(messageId: string, request: EncodedRequest): Promise<boolean> {
    return this.#outbox.deliver(messageId, request);
  }
}

/**
 * Sort the users of an invite or remove at each attempt: `settled` ones need nothing from
 * our commit — so before we started (`already`, fixed at attempt 0) or meanwhile, by a
 * member's commit that beat ours (`byOthers`); the rest are what our commit changes.
 */
function sortOut(
  change: MembershipChange,
  users: string[],
  settled: (user: string) => boolean,
  attempt: number,
): void {
  if (attempt === 0) change.already = users.filter(settled);
  change.byOthers = users.filter((u) => settled(u) && !change.already.includes(u));
  change.done = users.filter((u) => !settled(u));
}

/** An encoded own `commit` request, decoded. */
function commitRequest(request: EncodedRequest): Extract<Request, { kind: "commit" }> {
  const frame = decodeFrame(request.bytes);
  if (frame.type !== "request" || frame.request.kind !== "commit") {
    throw new InternalError("A pending commit is not a commit request");
  }
  return frame.request;
}

/** The MLS commit inside an encoded own `commit` request. */
function commitPayload(request: EncodedRequest): Uint8Array {
  return commitRequest(request).payload;
}

/**
 * A queued application message's Content encrypted again in `state` (its group moved on):
 * the same request in the state's epoch. Returns the state after it, the new request bytes
 * and the used secrets (zero them once the new state is stored).
 */
async function encryptAgain(
  state: MlsGroupState,
  request: Extract<Request, { kind: "enqueue" }>,
  content: Uint8Array,
): Promise<{ state: MlsGroupState; request: Uint8Array; consumed: Uint8Array[] }> {
  const enc = await encryptMessage(state, content);
  const bytes = encodeRequestOnce({
    ...request,
    payload: enc.outbound,
    epoch: Number(state.epoch),
    // a receipt to its authors goes to everyone now: the new epoch's count of narrow
    // sends does not know it, and an author may have left since
    recipients: [],
  }).bytes;
  return { state: enc.state, request: bytes, consumed: enc.consumed };
}

/** Put the `redone` requests in place of the queued ones, every entry kept in its order. */
function requeue(s: LocalState, redone: ReadonlyMap<string, Uint8Array>): void {
  if (redone.size === 0) return;
  for (const e of s.listOutbox()) {
    s.removeOutbox(e.messageId);
    s.addOutbox({ ...e, request: redone.get(e.messageId) ?? e.request });
  }
}
