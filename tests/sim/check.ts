/**
 * The invariants, checked at quiescent points (every online client synced until nothing is
 * left). They read only the clients' public API (members, epochInfo, history,
 * listConversations) and the message events each user was shown.
 *
 * ```
 * agreement       current members of a conversation agree on epoch, epoch authenticator and
 *                 roster, and the roster is the model's
 * server roster   the server fans out to exactly the model's members
 * conversations   a client lists exactly the conversations it is a member of, none broken
 * messages        each message: exactly once to those who must see it (history and event),
 *                 at most once to those who may, never to anyone else; right conversation,
 *                 right sender; each sender's messages in the order they were sent
 * ```
 *
 * @module
 */
import type { Actor, SeenMessage } from "./actor.ts";
import type { ServerLink } from "../../src/client/connection.ts";
import { fromHex } from "../../src/bytes.ts";
import { type GroupModel, type Model, refFor } from "./model.ts";

/** What the checks need from the simulation. */
export interface CheckContext {
  model: Model;
  actors: readonly Actor[];
  /** Report a broken invariant. */
  violate(invariant: string, detail: string): void;
  /** Count a check that ran (printed in the summary; see the vacuity rule in sim.ts). */
  count(k: string, n?: number): void;
}

/** A client's history of a conversation, as {@link Actor.history} gives it. */
export type HistoryReader = (a: Actor, ref: string) => SeenMessage[];

/**
 * Read each (client, conversation) history once: the checks of one quiescent point run
 * synchronously one after the other, so nothing a client shows changes in between, and a
 * check per changed message no longer reads every member's whole history again.
 */
export function historyReader(): HistoryReader {
  const memo = new Map<Actor, Map<string, SeenMessage[]>>();
  return (a, ref) => {
    let m = memo.get(a);
    if (!m) memo.set(a, m = new Map());
    let h = m.get(ref);
    if (!h) m.set(ref, h = a.history(ref));
    return h;
  };
}

function errText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Actors whose client runs and has a network. */
export function onlineActors(ctx: CheckContext): Actor[] {
  return ctx.actors.filter((a) => !a.offline && !a.seams.dead);
}

interface View {
  members: string[];
  epoch: string;
  authenticator: string;
}

/** A member's view of a conversation, or the error its client gave. */
export function viewOf(a: Actor, g: GroupModel): View | { error: string } {
  try {
    const ref = refFor(g, a.name);
    const members = [...a.client.members(ref)].sort();
    const info = a.client.epochInfo(ref);
    return { members, epoch: String(info.epoch), authenticator: info.authenticator };
  } catch (e) {
    return { error: errText(e) };
  }
}

/** The roster most online clients holding the group report (undefined: nobody holds it). */
export function observedRoster(ctx: CheckContext, g: GroupModel): Set<string> | undefined {
  const tally = new Map<string, { n: number; members: string[] }>();
  for (const a of onlineActors(ctx)) {
    if (!g.ever.has(a.name)) continue;
    if (!a.client.listConversations().some((c) => c.name === refFor(g, a.name))) continue;
    const v = viewOf(a, g);
    if ("error" in v) continue;
    const k = v.members.join(",");
    const t = tally.get(k) ?? { n: 0, members: v.members };
    t.n++;
    tally.set(k, t);
  }
  let best: { n: number; members: string[] } | undefined;
  for (const t of tally.values()) if (!best || t.n > best.n) best = t;
  return best ? new Set(best.members) : undefined;
}

/** Members agree with each other and with the model. */
export function checkAgreement(ctx: CheckContext): void {
  for (const g of ctx.model.groups.values()) {
    const online = onlineActors(ctx).filter((a) => g.roster.has(a.name));
    const views: { who: string; view: View }[] = [];
    for (const a of online) {
      const v = viewOf(a, g);
      if ("error" in v) {
        // a user in doubt (its own leave or a removal not yet seen settled) may be gone
        if (g.doubt.has(a.name)) continue;
        ctx.violate(
          "member-has-group",
          `${a.name} is a member of ${g.key} (model roster ${
            fmt(g.roster)
          }) but its client says: ${v.error}`,
        );
        continue;
      }
      views.push({ who: a.name, view: v });
    }
    const first = views[0];
    for (const { who, view } of views.slice(1)) {
      if (
        view.epoch !== first!.view.epoch || view.authenticator !== first!.view.authenticator ||
        view.members.join(",") !== first!.view.members.join(",")
      ) {
        ctx.violate(
          "epoch-agreement",
          `${g.key}: ${first!.who} has epoch ${first!.view.epoch} auth ${
            first!.view.authenticator.slice(0, 12)
          } roster [${first!.view.members}], ${who} has epoch ${view.epoch} auth ${
            view.authenticator.slice(0, 12)
          } roster [${view.members}]`,
        );
      }
    }
    const expected = [...g.roster].sort();
    const open = new Set(g.doubt.keys());
    for (const { who, view } of views) {
      const a = view.members.filter((u) => !open.has(u)).join(",");
      const b = expected.filter((u) => !open.has(u)).join(",");
      if (a !== b) {
        ctx.violate(
          "roster-model",
          `${g.key}: ${who} sees roster [${view.members}], the model says [${expected}]${
            open.size ? ` (in doubt: ${[...open]})` : ""
          }`,
        );
        break;
      }
    }
  }
}

/**
 * The server's roster of each conversation (what it fans messages out to) is the model's:
 * a member the server still delivers to after leaving, or one it does not deliver to, is
 * a violation even when the clients agree among themselves. Asked on a raw connection
 * with the session of an online member.
 */
export async function checkServerRoster(
  ctx: CheckContext,
  connect: () => Promise<ServerLink>,
): Promise<void> {
  const conns = new Map<string, ServerLink>();
  try {
    for (const g of ctx.model.groups.values()) {
      const asker = onlineActors(ctx).find((a) => g.roster.has(a.name) && !g.doubt.has(a.name));
      if (!asker) continue;
      let channelId: string | undefined;
      try {
        channelId = asker.client.conversation(refFor(g, asker.name)).channelId;
      } catch {
        continue; // reported by the agreement check
      }
      if (!channelId) continue;
      let conn = conns.get(asker.name);
      try {
        if (!conn) {
          conn = await connect();
          conns.set(asker.name, conn);
          const token = asker.client.store.meta.sessionToken;
          if (!token) continue;
          await conn.call({ kind: "resume", token }, "session");
        }
        const list = await conn.call(
          { kind: "members", channelId: fromHex(channelId) },
          "memberList",
        );
        const seen = [...list.members].sort();
        const open = new Set(g.doubt.keys());
        const a = seen.filter((u) => !open.has(u)).join(",");
        const b = [...g.roster].sort().filter((u) => !open.has(u)).join(",");
        if (a !== b) {
          ctx.violate(
            "server-roster",
            `${g.key}: the server delivers to [${seen}], the model roster is ${fmt(g.roster)}`,
          );
        }
      } catch (e) {
        ctx.violate("server-roster", `${g.key}: cannot read the server's roster: ${errText(e)}`);
      }
    }
  } finally {
    for (const c of conns.values()) await c.close().catch(() => {});
  }
}

/** Each online client lists exactly the conversations it is in, and none is broken. */
export function checkConversations(ctx: CheckContext): void {
  for (const a of onlineActors(ctx)) {
    const listed = a.client.listConversations() as {
      name: string;
      kind: string;
      broken?: string;
    }[];
    const names = new Set<string>();
    for (const c of listed) {
      if (c.kind === "self") continue;
      names.add(c.name);
      const g = groupByRef(ctx.model, a.name, c.name);
      if (!g || (!g.roster.has(a.name) && !g.doubt.has(a.name))) {
        ctx.violate(
          "ghost-conversation",
          `${a.name} lists ${c.name}${
            g ? "" : " (unknown to the model)"
          } but is not a member (model roster ${g ? fmt(g.roster) : "-"})`,
        );
      }
      if (c.broken) {
        ctx.violate("conversation-broken", `${a.name}: ${c.name} is broken: ${c.broken}`);
      }
    }
    for (const g of ctx.model.groupsOf(a.name)) {
      if (g.doubt.size > 0) continue;
      const ref = refFor(g, a.name);
      if (!names.has(ref)) {
        ctx.violate(
          "member-has-group",
          `${a.name} is a member of ${g.key} (model) but does not list ${ref}`,
        );
      }
    }
  }
}

/** The model group a client's conversation name refers to. */
export function groupByRef(model: Model, user: string, ref: string): GroupModel | undefined {
  if (ref.startsWith("#")) return model.groups.get(ref);
  if (ref.startsWith("@")) {
    const peer = ref.slice(1);
    const pair = [user, peer].sort();
    return model.groups.get(`dm:${pair[0]}:${pair[1]}`);
  }
  return undefined;
}

function fmt(s: Set<string>): string {
  return `[${[...s].sort()}]`;
}

/**
 * Every message: shown to the right people the right number of times, in the right
 * conversation, from the right sender, in the sender's order. `now` is the check time.
 * Returns how many messages are in doubt: a check of theirs was excused (a receiver may
 * but need not show it: in doubt or joining/leaving meanwhile; offline; the message
 * refused or dropped).
 */
export function checkMessages(
  ctx: CheckContext,
  now: number,
  history: HistoryReader = historyReader(),
): number {
  let doubts = 0;
  const { model } = ctx;
  /** count of (actor, text) in histories; direction out counted apart. */
  const inCount = new Map<string, number>();
  const outCount = new Map<string, number>();
  const unreadable = new Map<string, number>();
  const key = (a: string, t: string) => `${a}\u0000${t}`;
  for (const a of ctx.actors) {
    if (a.seams.dead) continue;
    for (const g of model.groups.values()) {
      if (g.kind === "dm" && !g.pair!.includes(a.name)) continue; // "@peer" is another DM
      let hist: SeenMessage[];
      try {
        hist = history(a, refFor(g, a.name));
      } catch (e) {
        ctx.violate("history-readable", `${a.name} cannot read ${g.key}: ${errText(e)}`);
        continue;
      }
      const lastSeq = new Map<string, { seq: number; text: string }>();
      for (const h of hist) {
        if (h.unreadable) {
          unreadable.set(key(a.name, g.key), (unreadable.get(key(a.name, g.key)) ?? 0) + 1);
          continue;
        }
        const m = model.lookup(h.messageId, h.body);
        if (!m) {
          ctx.violate(
            "phantom-message",
            `${a.name} shows "${h.body.slice(0, 40)}" from ${h.sender} in ${g.key}: nobody sent it`,
          );
          continue;
        }
        if (m.group !== g.key) {
          ctx.violate(
            "wrong-conversation",
            `${a.name} shows ${m.text} in ${g.key}; it was sent to ${m.group}`,
          );
          continue;
        }
        if (h.sender !== m.sender) {
          ctx.violate(
            "wrong-sender",
            `${a.name} shows ${m.text} as from ${h.sender}; ${m.sender} sent it`,
          );
        }
        if (h.direction === "out") {
          if (m.sender !== a.name) {
            ctx.violate(
              "wrong-sender",
              `${a.name} shows ${m.text} as its own; ${m.sender} sent it`,
            );
          }
          outCount.set(key(a.name, m.text), (outCount.get(key(a.name, m.text)) ?? 0) + 1);
        } else {
          inCount.set(key(a.name, m.text), (inCount.get(key(a.name, m.text)) ?? 0) + 1);
        }
        const prev = lastSeq.get(m.sender);
        if (prev && prev.seq >= m.seq) {
          ctx.violate(
            "sender-order",
            `${a.name} shows ${m.sender}'s ${m.text} after ${prev.text} in ${g.key}; it was sent before`,
          );
        }
        lastSeq.set(m.sender, { seq: m.seq, text: m.text });
      }
    }
  }
  const byName = new Map(ctx.actors.map((a) => [a.name, a]));
  // the last step each client crashed at (a crash at or after a send excuses a missing event)
  const lastCrash = new Map(ctx.actors.map((a) => [a, Math.max(-Infinity, ...a.crashSteps)]));
  for (const m of model.messages.values()) {
    const g = model.groups.get(m.group)!;
    const sender = byName.get(m.sender)!;
    let excused = m.state === "refused" || m.state === "dropped";
    if (!sender.seams.dead) {
      const own = outCount.get(key(m.sender, m.text)) ?? 0;
      if (own > 1 || (m.state === "sent" && own !== 1)) {
        ctx.violate(
          "shown-once",
          `sender ${m.sender} shows its own ${m.text} ${own} times in ${g.key}`,
        );
      }
    }
    for (const a of ctx.actors) {
      if (a.name === m.sender || a.seams.dead) continue;
      const h = inCount.get(key(a.name, m.text)) ?? 0;
      const e = a.shown.get(m.text) ?? 0;
      const synced = !a.offline;
      let rule: "must" | "may" | "never" | "pending";
      if (m.state === "pending") rule = "pending";
      else if (m.state === "dropped") rule = "never";
      else if (m.must?.has(a.name)) rule = "must";
      else if (m.may?.has(a.name)) rule = "may";
      else rule = "never";
      const crashed = (lastCrash.get(a) ?? -Infinity) >= m.sentAt;
      if (rule === "may" || (rule === "must" && !synced)) excused = true;
      // (built only for a violation: this loop runs for every message and client)
      const where = () =>
        `${m.text} (${m.sender} -> ${g.key}, sent at ${m.sentAt}${
          m.acceptedBy !== undefined && m.acceptedBy !== m.sentAt
            ? `, accepted by ${m.acceptedBy}`
            : ""
        })`;
      if (h > 1 || e > 1) {
        ctx.violate("shown-once", `${a.name} shows ${where()} ${h} times in history, ${e} events`);
      } else if (rule === "never" && (h > 0 || e > 0)) {
        ctx.violate(
          "only-members-read",
          `${a.name} shows ${where()} but was not a member when it was sent (${
            m.state === "dropped" ? "the message was never sent" : "roster then " + rosterAt(g, m)
          })`,
        );
      } else if (rule === "must" && synced) {
        if (h !== 1) {
          const u = unreadable.get(key(a.name, g.key)) ?? 0;
          ctx.violate(
            "members-read",
            `${a.name} does not show ${where()}, though a member throughout${
              u ? ` (${u} unreadable placeholder(s) in its history of ${g.key})` : ""
            }`,
          );
        } else if (e !== 1 && crashed) {
          excused = true;
        } else if (e !== 1) {
          ctx.violate(
            "members-read",
            `${a.name} stored ${where()} but was never shown it (no message event)`,
          );
        }
      }
    }
    if (excused) doubts++;
  }
  void now;
  return doubts;
}

function rosterAt(g: GroupModel, m: { sentAt: number }): string {
  const members = [...g.ever].filter((u) => {
    let inside = false;
    for (const c of g.changes) {
      if (c.t >= m.sentAt) break;
      if (c.user === u) inside = c.member;
    }
    return inside;
  });
  return `[${members.sort()}]`;
}

/** What a member may show of a message given its changes: the acceptable values. */
function acceptable(
  changes: { c: { must?: Set<string>; may?: Set<string> }; value: string }[],
  initial: string,
  u: string,
): { ok: Set<string>; floor: number } {
  let j = -1;
  changes.forEach((x, i) => {
    if (x.c.must?.has(u)) j = i;
  });
  const ok = new Set<string>([j < 0 ? initial : changes[j]!.value]);
  for (let i = j + 1; i < changes.length; i++) {
    const x = changes[i]!;
    // not fixed yet (its author was offline at every check since): anyone may have it
    if (!x.c.must || x.c.must.has(u) || x.c.may?.has(u)) ok.add(x.value);
  }
  return { ok, floor: j };
}

/**
 * Edits, deletions and reactions, against the model: every member that has a changed message
 * shows its author's latest edit (or "deleted") and each member's latest reaction, unless
 * it may have missed the change (joined, left or in doubt meanwhile: then a later one it
 * may have got, never an older one than it must have); a reaction by anyone the model does
 * not know is a violation. Members that never had the message have no row for it (the
 * message check counts a row found by an edit's text as the message's own).
 * Changes are fixed at the first check with their author online (`now`).
 */
export function checkChanges(
  ctx: CheckContext,
  now: number,
  history: HistoryReader = historyReader(),
): void {
  const { model } = ctx;
  const byId = new Map<SeenMessage[], Map<string, SeenMessage>>();
  const rowOf = (a: Actor, ref: string, id: string) => {
    const h = history(a, ref);
    let ids = byId.get(h);
    if (!ids) {
      ids = new Map();
      // the first row of an id, as find() would give it
      for (const r of h) {
        if (r.messageId !== undefined && !ids.has(r.messageId)) ids.set(r.messageId, r);
      }
      byId.set(h, ids);
    }
    return ids.get(id);
  };
  const online = new Set(onlineActors(ctx).map((a) => a.name));
  for (const m of model.messages.values()) {
    if (!m.changes || !m.id) continue;
    for (const c of m.changes) {
      if (!c.must && online.has(c.by)) model.fixChange(m, c, now);
    }
    const g = model.groups.get(m.group)!;
    const author = m.changes.filter((c) => c.kind !== "reaction");
    const authorVals = author.map((c) => ({
      c,
      value: c.kind === "deletion" ? "(deleted)" : c.value,
    }));
    const reactors = new Map<string, { c: typeof m.changes[number]; value: string }[]>();
    for (const c of m.changes) {
      if (c.kind !== "reaction") continue;
      reactors.set(c.by, [...(reactors.get(c.by) ?? []), { c, value: c.value }]);
    }
    for (const a of onlineActors(ctx)) {
      if (g.kind === "dm" && !g.pair!.includes(a.name)) continue;
      const row = rowOf(a, refFor(g, a.name), m.id);
      if (!row) continue;
      const shown = row.deleted ? "(deleted)" : row.body;
      const { ok, floor } = acceptable(authorVals, m.text, a.name);
      if (!ok.has(shown)) {
        ctx.violate(
          "change-reaches-members",
          `${a.name} shows ${m.sender}'s ${m.text} in ${g.key} as "${
            shown.slice(0, 40)
          }"; the model allows [${[...ok].join(", ")}] (changes ${
            author.map((c) => `${c.kind}@${c.t}${c.taken ? "" : "?"}`).join(" ")
          })`,
        );
      } else if (floor >= 0) {
        ctx.count(`check.${author[floor]!.kind === "edit" ? "edit" : "delete"}`);
      }
      if (row.deleted) continue; // a deletion clears the reactions
      const rows = new Map((row.reactions ?? []).map((r) => [r.user, r.emoji]));
      for (const u of rows.keys()) {
        if (!reactors.has(u)) {
          ctx.violate(
            "reactions-model",
            `${a.name} shows a reaction by ${u} on ${m.text} in ${g.key}; ${u} never reacted to it`,
          );
        }
      }
      for (const [u, list] of reactors) {
        const r = acceptable(list, "", a.name);
        const emoji = rows.get(u) ?? "";
        if (!r.ok.has(emoji)) {
          ctx.violate(
            "reactions-model",
            `${a.name} shows ${u}'s reaction on ${m.text} in ${g.key} as "${emoji}"; the model allows [${
              [...r.ok].map((e) => `"${e}"`).join(", ")
            }]`,
          );
        } else if (r.floor >= 0) ctx.count("check.reaction");
      }
    }
  }
}

/**
 * Receipts mark only the holder's own messages; each comes from someone who could read the
 * message, and a read receipt from someone who marked the conversation read after it was sent.
 */
export function checkReceipts(
  ctx: CheckContext,
  history: HistoryReader = historyReader(),
): void {
  const { model } = ctx;
  for (const a of onlineActors(ctx)) {
    for (const g of model.groups.values()) {
      if (g.kind === "dm" && !g.pair!.includes(a.name)) continue;
      for (const h of history(a, refFor(g, a.name))) {
        if (!h.receipts || h.receipts.length === 0) continue;
        const m = model.lookup(h.messageId, h.body);
        if (h.direction !== "out" || h.sender !== a.name) {
          ctx.violate(
            "receipt-own-only",
            `${a.name} holds receipts by [${h.receipts.map((r) => r.user)}] on ${h.sender}'s ${
              h.body.slice(0, 30)
            } in ${g.key}: not its own message`,
          );
          continue;
        }
        if (!m || m.state !== "sent") continue;
        for (const r of h.receipts) {
          const could = m.must?.has(r.user) || m.may?.has(r.user);
          if (r.user === a.name || !could) {
            ctx.violate(
              "receipt-from-reader",
              `${a.name}'s ${m.text} in ${g.key} has a receipt by ${r.user}, who could not read it`,
            );
            continue;
          }
          ctx.count("check.receipt-delivered");
          if (r.readAt === undefined) continue;
          const reads = g.reads.get(r.user) ?? [];
          if (!reads.some((t) => t >= m.sentAt)) {
            ctx.violate(
              "read-receipt-after-read",
              `${a.name}'s ${m.text} in ${g.key} is read by ${r.user}, who never marked ${g.key} read after it was sent`,
            );
          } else ctx.count("check.receipt-read");
        }
      }
    }
  }
}

/**
 * Each member's admin list (MLS group context) is the model's; a role change in doubt is
 * settled first from it (members agree on the epoch authenticator, which covers the group
 * context, so any one member's view is the group's).
 */
export function checkAdmins(ctx: CheckContext): void {
  for (const g of ctx.model.groups.values()) {
    if (g.kind !== "group" || g.doubt.size > 0) continue;
    const members = onlineActors(ctx).filter((a) => g.roster.has(a.name));
    for (const a of members) {
      let admins: string[];
      try {
        admins = [...(a.client.settings(refFor(g, a.name))?.admins ?? [])].sort();
      } catch {
        continue; // reported by the agreement check
      }
      if (g.adminDoubt) {
        g.admins = new Set(admins);
        g.adminDoubt = false;
      }
      const want = [...g.admins].sort();
      if (admins.join(",") !== want.join(",")) {
        ctx.violate(
          "admins-model",
          `${g.key}: ${a.name} lists admins [${admins}], the model says [${want}]`,
        );
      } else ctx.count("check.admins");
    }
  }
}
