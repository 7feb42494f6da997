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
      const asker = onlineActors(ctx).find((a) => g.roster.has(a.name));
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
export function checkMessages(ctx: CheckContext, now: number): number {
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
        hist = a.history(refFor(g, a.name));
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
        const m = model.messages.get(h.body);
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
  for (const m of model.messages.values()) {
    const g = model.groups.get(m.group)!;
    const sender = ctx.actors.find((x) => x.name === m.sender)!;
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
      const crashed = a.crashSteps.some((s) => s >= m.sentAt);
      if (rule === "may" || (rule === "must" && !synced)) excused = true;
      const where = `${m.text} (${m.sender} -> ${g.key}, sent at ${m.sentAt}${
        m.acceptedBy !== undefined && m.acceptedBy !== m.sentAt
          ? `, accepted by ${m.acceptedBy}`
          : ""
      })`;
      if (h > 1 || e > 1) {
        ctx.violate("shown-once", `${a.name} shows ${where} ${h} times in history, ${e} events`);
      } else if (rule === "never" && (h > 0 || e > 0)) {
        ctx.violate(
          "only-members-read",
          `${a.name} shows ${where} but was not a member when it was sent (${
            m.state === "dropped" ? "the message was never sent" : "roster then " + rosterAt(g, m)
          })`,
        );
      } else if (rule === "must" && synced) {
        if (h !== 1) {
          const u = unreadable.get(key(a.name, g.key)) ?? 0;
          ctx.violate(
            "members-read",
            `${a.name} does not show ${where}, though a member throughout${
              u ? ` (${u} unreadable placeholder(s) in its history of ${g.key})` : ""
            }`,
          );
        } else if (e !== 1 && crashed) {
          excused = true;
        } else if (e !== 1) {
          ctx.violate(
            "members-read",
            `${a.name} stored ${where} but was never shown it (no message event)`,
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
