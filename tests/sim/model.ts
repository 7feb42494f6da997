/**
 * The simulation's model: who should be in which conversation, over time, and what every
 * message sent should look like to everyone. Independent of the client under test: it is
 * changed only by the outcomes of operations (succeeded, refused, or in doubt).
 *
 * Time is the step number; the quiescent check after step s runs at time s + 0.5.
 *
 * ```
 * membership changes   (time, user, in/out) per group  ─► member throughout [a, b]?
 * doubt                an operation whose outcome is unknown (lost answer, crash, server
 *                      down) makes its targets "in doubt" from its time until a check sees
 *                      the outcome; messages in that window may or may not reach them
 * message              accepted in window [a, b] (a = sent, b = seen "sent" by its sender)
 *                      must see it:   members throughout [a, b], never in doubt, not sender
 *                      may see it:    anyone who was a member or in doubt during [a, b]
 *                      nobody else
 * ```
 *
 * @module
 */

/** One conversation of the model (a group or a DM). */
export interface GroupModel {
  /** "#name" for groups, "dm:a:b" (sorted) for DMs. */
  key: string;
  kind: "group" | "dm";
  /** Group name (without #), or "" for DMs. */
  name: string;
  /** DM peers (sorted), for DMs. */
  pair?: [string, string];
  suite: string;
  /** Members now. */
  roster: Set<string>;
  /** Membership changes, in time order. */
  changes: { t: number; user: string; member: boolean }[];
  /** Users whose membership is in doubt now, with the client whose operation caused it. */
  doubt: Map<string, { owner: string; since: number }>;
  /** Closed doubt windows. */
  doubtWindows: { user: string; from: number; to: number }[];
  /** Everyone who was ever a member or in doubt. */
  ever: Set<string>;
  /** Admins (groups; the creator first): who may remove others and change roles. */
  admins: Set<string>;
  /** A role change's outcome is unknown: settled at the next check. */
  adminDoubt: boolean;
  /** When each user marked the conversation read (markRead: read receipts). */
  reads: Map<string, number[]>;
}

/**
 * A change to a message (an edit or deletion by its author, a reaction by anyone). Changes
 * by one user to one message are made at increasing times of that user's clock (the
 * simulation waits when it would not be), so "later wins" is the model's order.
 * ```
 * fixed at the first check after it with its author online (its outbox flushed):
 *   must show it:  members (having the message) throughout [t, check], never in doubt,
 *                  the author too; and its author, who applied it when composing
 *   may show it:   anyone who was a member or in doubt meanwhile
 * ```
 */
export interface ChangeModel {
  kind: "edit" | "deletion" | "reaction";
  by: string;
  /** The edit's text, the reaction's emoji ("" = withdrawn), "" for a deletion. */
  value: string;
  t: number;
  /** The operation succeeded (else its outcome is unknown: nobody must show it). */
  taken: boolean;
  must?: Set<string>;
  may?: Set<string>;
}

/** One message sent (or attempted) in the simulation. */
export interface MessageModel {
  text: string;
  group: string;
  sender: string;
  /** Position in the sender's sequence of messages to this group. */
  seq: number;
  /** Time send() was called. */
  sentAt: number;
  /**
   * pending: not seen "sent" yet (queued, or the outcome is unknown);
   * sent: accepted by the server (seen "sent" in the sender's history);
   * dropped: never stored (send failed before it was queued);
   * refused: stored but never seen "sent" (refused at last; it may have got through
   * before an answer was lost, so it may be shown, at most once).
   */
  state: "pending" | "sent" | "dropped" | "refused";
  /** Time the sender's history showed it "sent". */
  acceptedBy?: number;
  /** send() resolved: the client took the message (it must go out or say why). */
  taken?: boolean;
  /** The sender's local roster when it was encrypted without reaching the server. */
  encRoster?: Set<string>;
  /** Who must show it exactly once and who may show it (at most once); set once sent. */
  must?: Set<string>;
  may?: Set<string>;
  /** Its message id (learnt from the sender's history when a change targets it). */
  id?: string;
  /** Edits, deletions and reactions, in the order they were made. */
  changes?: ChangeModel[];
}

/** The reference to a conversation as `user` names it. */
export function refFor(g: GroupModel, user: string): string {
  if (g.kind === "group") return `#${g.name}`;
  const [a, b] = g.pair!;
  return `@${a === user ? b : a}`;
}

/** The model of every conversation and message. */
export class Model {
  readonly groups = new Map<string, GroupModel>();
  readonly messages = new Map<string, MessageModel>();
  /** Messages by id (those a change targets) and by an edit's text. */
  readonly byId = new Map<string, MessageModel>();
  readonly edits = new Map<string, MessageModel>();
  #seqs = new Map<string, number>();

  /** A new group with its creator as the only member. */
  addGroup(name: string, suite: string, creator: string, t: number): GroupModel {
    const g: GroupModel = {
      key: `#${name}`,
      kind: "group",
      name,
      suite,
      roster: new Set(),
      changes: [],
      doubt: new Map(),
      doubtWindows: [],
      ever: new Set(),
      admins: new Set([creator]),
      adminDoubt: false,
      reads: new Map(),
    };
    this.groups.set(g.key, g);
    this.setMember(g, creator, true, t);
    return g;
  }

  /** The DM of two users, created (with nobody in it) when missing. */
  dm(a: string, b: string, suite: string): GroupModel {
    const pair = [a, b].sort() as [string, string];
    const key = `dm:${pair[0]}:${pair[1]}`;
    let g = this.groups.get(key);
    if (!g) {
      g = {
        key,
        kind: "dm",
        name: "",
        pair,
        suite,
        roster: new Set(),
        changes: [],
        doubt: new Map(),
        doubtWindows: [],
        ever: new Set(),
        admins: new Set(pair),
        adminDoubt: false,
        reads: new Map(),
      };
      this.groups.set(key, g);
    }
    return g;
  }

  /** Record a membership change (no-op when nothing changes). */
  setMember(g: GroupModel, user: string, member: boolean, t: number): void {
    g.ever.add(user);
    if (g.roster.has(user) === member) return;
    if (member) g.roster.add(user);
    else g.roster.delete(user);
    g.changes.push({ t, user, member });
  }

  /** Mark `user`'s membership in `g` unknown from `t` (owner: whose operation it was). */
  addDoubt(g: GroupModel, user: string, owner: string, t: number): void {
    g.ever.add(user);
    if (!g.doubt.has(user)) g.doubt.set(user, { owner, since: t });
  }

  /**
   * `user` reported leaving `g` and is offline at `t`: MLS lets nobody commit their own
   * removal, and a leave another commit made stale is proposed again only online, so the
   * leaver is in doubt from `t` until back — unless the server already acknowledged a commit
   * that took it off (`server`: the roster of the latest commit the server acknowledged, when
   * known): then the leave is done and nothing is in doubt. (A doubt opened there kept the
   * sender of a message queued while every other member left from looking alone: seeds 6199,
   * 7008.) Returns whether a doubt was opened.
   */
  leaverOffline(
    g: GroupModel,
    user: string,
    t: number,
    server: ReadonlySet<string> | undefined,
  ): boolean {
    if (g.roster.has(user) || g.doubt.has(user)) return false;
    if (server !== undefined && !server.has(user)) return false;
    this.addDoubt(g, user, user, t);
    return true;
  }

  /** Close a doubt at `t` with the membership observed. */
  resolveDoubt(g: GroupModel, user: string, member: boolean, t: number): void {
    const d = g.doubt.get(user);
    if (!d) return;
    g.doubt.delete(user);
    g.doubtWindows.push({ user, from: d.since, to: t });
    this.setMember(g, user, member, t);
  }

  /** Was `user` a member just before time `a`? */
  memberBefore(g: GroupModel, user: string, a: number): boolean {
    let m = false;
    for (const c of g.changes) {
      if (c.t >= a) break;
      if (c.user === user) m = c.member;
    }
    return m;
  }

  /**
   * When `user` was last taken out of `g` before `t`, if a re-add made them a member again
   * before `t` (undefined otherwise).
   */
  lastRemovalBefore(g: GroupModel, user: string, t: number): number | undefined {
    if (!this.memberBefore(g, user, t)) return undefined;
    let at: number | undefined;
    for (const c of g.changes) {
      if (c.t >= t) break;
      if (c.user === user && !c.member) at = c.t;
    }
    return at;
  }

  /** Member before `a` and no change of `user` at any time in [a, b]. */
  memberThroughout(g: GroupModel, user: string, a: number, b: number): boolean {
    if (!this.memberBefore(g, user, a)) return false;
    return !g.changes.some((c) => c.user === user && c.t >= a && c.t <= b);
  }

  /** A member at any moment of [a, b] (or just before a). */
  memberAnyTime(g: GroupModel, user: string, a: number, b: number): boolean {
    if (this.memberBefore(g, user, a)) return true;
    return g.changes.some((c) => c.user === user && c.member && c.t >= a && c.t <= b);
  }

  /**
   * At some moment of [a, b] `user` was the group's only member, nobody else in doubt: a
   * message of theirs still queued then had nobody to go to (the server refuses it, "no
   * recipients", and the client shows it failed), although they stayed a member.
   */
  aloneDuring(g: GroupModel, user: string, a: number, b: number): boolean {
    // a doubt settled "not a member" of someone who was not one (an invitation that did not
    // happen) changes no membership: its end is a moment too (seed 7053)
    const moments = [
      a,
      ...g.changes.filter((c) => c.t >= a && c.t <= b).map((c) => c.t),
      ...g.doubtWindows.filter((w) => w.to >= a && w.to <= b).map((w) => w.to),
    ];
    return moments.some((t) =>
      [...g.ever].every((u) => {
        if (u === user) return true;
        // membership just after the changes at t
        const member = g.changes.filter((c) => c.user === u && c.t <= t).at(-1)?.member ?? false;
        // in doubt at t (a doubt settled at t is over: the change at t says how)
        const open = g.doubt.get(u);
        const doubt = (open !== undefined && open.since <= t) ||
          g.doubtWindows.some((w) => w.user === u && w.from <= t && w.to > t);
        return !member && !doubt;
      })
    );
  }

  /** Was `user` in doubt at some moment of [a, b]? */
  doubtDuring(g: GroupModel, user: string, a: number, b: number): boolean {
    const open = g.doubt.get(user);
    if (open && open.since <= b) return true;
    return g.doubtWindows.some((w) => w.user === user && w.from <= b && w.to >= a);
  }

  /** Register a message at send time; returns it (state pending). */
  newMessage(text: string, group: GroupModel, sender: string, t: number): MessageModel {
    const k = `${group.key}|${sender}`;
    const seq = (this.#seqs.get(k) ?? 0) + 1;
    this.#seqs.set(k, seq);
    const m: MessageModel = { text, group: group.key, sender, seq, sentAt: t, state: "pending" };
    this.messages.set(text, m);
    return m;
  }

  /**
   * The sender's history shows `m` as sent at time `b`: fix who must and who may see it.
   * A message that waited in the outbox was encrypted with the sender's state of then:
   * only members of that roster can read it.
   */
  accept(m: MessageModel, b: number): void {
    const g = this.groups.get(m.group)!;
    const a = m.sentAt;
    m.state = "sent";
    m.acceptedBy = b;
    const must = new Set<string>();
    const may = new Set<string>();
    for (const u of g.ever) {
      if (u === m.sender) continue;
      const inDoubt = this.doubtDuring(g, u, a, b);
      const throughout = this.memberThroughout(g, u, a, b);
      const enc = m.encRoster ? m.encRoster.has(u) : true;
      const senderStable = this.memberThroughout(g, m.sender, a, b);
      if (throughout && !inDoubt && enc && senderStable) must.add(u);
      else if (inDoubt || this.memberAnyTime(g, u, a, b)) may.add(u);
    }
    m.must = must;
    m.may = may;
  }

  /** The sender never saw `m` accepted: nobody must show it, those in the group may. */
  refuse(m: MessageModel, b: number): void {
    const g = this.groups.get(m.group)!;
    m.state = "refused";
    m.must = new Set();
    m.may = new Set(
      [...g.ever].filter((u) =>
        u !== m.sender &&
        (this.memberAnyTime(g, u, m.sentAt, b) || this.doubtDuring(g, u, m.sentAt, b))
      ),
    );
  }

  /** The message with id `id`, or whose text (or an edit's text) is `body`. */
  lookup(id: string | undefined, body: string): MessageModel | undefined {
    return (id ? this.byId.get(id) : undefined) ?? this.messages.get(body) ??
      this.edits.get(body);
  }

  /** Record a change of `m` (its id known) at time `t`. */
  addChange(m: MessageModel, id: string, c: ChangeModel): void {
    m.id = id;
    this.byId.set(id, m);
    (m.changes ??= []).push(c);
    if (c.kind === "edit") this.edits.set(c.value, m);
  }

  /** Fix who must and who may show change `c` of `m`, at check time `b`. */
  fixChange(m: MessageModel, c: ChangeModel, b: number): void {
    const g = this.groups.get(m.group)!;
    const must = new Set<string>();
    const may = new Set<string>();
    const byStable = c.taken && this.memberThroughout(g, c.by, c.t, b) &&
      !this.doubtDuring(g, c.by, c.t, b);
    if (c.taken) must.add(c.by);
    for (const u of g.ever) {
      if (u === c.by) continue;
      const throughout = this.memberThroughout(g, u, c.t, b) && !this.doubtDuring(g, u, c.t, b);
      if (byStable && throughout) must.add(u);
      else if (this.memberAnyTime(g, u, c.t, b) || this.doubtDuring(g, u, c.t, b)) may.add(u);
    }
    c.must = must;
    c.may = may;
  }

  /** Messages of `sender` not resolved yet. */
  pendingOf(sender: string): MessageModel[] {
    return [...this.messages.values()].filter((m) => m.sender === sender && m.state === "pending");
  }

  /** Groups `user` is a member of now (model). */
  groupsOf(user: string): GroupModel[] {
    return [...this.groups.values()].filter((g) => g.roster.has(user));
  }
}
