/**
 * The tap on the simulated link: every frame the server sends passes here before the
 * network may lose it. From the answers the server gave (a channel created, a commit
 * accepted) the ledger keeps each channel's roster at every epoch, independently of any
 * client; every message frame is then judged against it:
 *
 * ```
 * channel answer (createGroup, createDm)  ─► roster(c, epoch) = its members (first time)
 * committed answer to commit(c, e, +A, -R) ─► roster(c, e+1) = roster(c, e) - R + A,
 *                                             added(c, e) = A
 * messages (fetch answer or push) to u     ─► application of epoch e: u in roster(c, e')
 *                                             for some e' >= e, else a violation
 *                                             Welcome of epoch e: u in added(c, e), else one
 * ```
 *
 * The latest roster is also what settles a doubt (a change whose answer was lost): what
 * the server acknowledged, not what most clients say.
 *
 * @module
 */
import type { Frame, Request } from "../../src/wire/messages.ts";
import { toHex } from "../../src/bytes.ts";

/** The fields of a delivered message the ledger judges. */
type Judged = { channelId: Uint8Array; messageKind: string; epoch: number; sender: string };

interface Channel {
  /** Model key: "#name" or "dm:a:b". */
  key: string;
  rosters: Map<number, Set<string>>;
  added: Map<number, Set<string>>;
  latest: number;
}

/** A frame the server should not have sent. */
export interface TapViolation {
  invariant: string;
  detail: string;
}

/** What the server acknowledged, from the frames it sent. */
export class Ledger {
  readonly #channels = new Map<string, Channel>();
  readonly #byKey = new Map<string, Channel>();
  /** Frames judged and frames that could not be (channel unknown to the ledger). */
  checked = 0;
  unknown = 0;
  /** Frames the server sent, by kind. */
  readonly frames: Record<string, number> = {};
  /** Violations found since the simulation last took them. */
  readonly violations: TapViolation[] = [];
  /**
   * Welcomes the server pushed before its answer to the commit that adds them went out (the
   * push may come first): judged when that answer is seen, by channel and epoch.
   */
  readonly #early = new Map<string, { to: string; m: Judged }[]>();

  /**
   * A frame the server sent to the connection of `to` (in answer to `request`, if one;
   * `replay`: to a copy of a request the network doubled, an answer no client reads).
   */
  sent(to: string | undefined, request: Request | undefined, frame: Frame, replay = false): void {
    if (frame.type === "response") {
      const r = frame.response;
      this.frames[r.kind] = (this.frames[r.kind] ?? 0) + 1;
      if (r.kind === "channel") {
        const id = toHex(r.channelId);
        if (!this.#channels.has(id)) {
          const key = r.channelKind === "group"
            ? `#${r.name}`
            : `dm:${[...r.members].sort().join(":")}`;
          const c: Channel = {
            key,
            rosters: new Map([[r.epoch, new Set(r.members)]]),
            added: new Map(),
            latest: r.epoch,
          };
          this.#channels.set(id, c);
          // a doubled createGroup makes a second channel of that name that nobody uses (its
          // answer goes nowhere): its messages are judged by id, the name stays the one the
          // client was answered (seed 4012: doubts settled against the orphan's roster)
          if (!replay) this.#byKey.set(key, c);
        }
      } else if (r.kind === "committed" && request?.kind === "commit") {
        const c = this.#channels.get(toHex(request.channelId));
        const e = request.epoch;
        const base = c?.rosters.get(e);
        if (c && base && !c.rosters.has(e + 1)) {
          const next = new Set([...base].filter((u) => !request.remove.includes(u)));
          for (const u of request.add) next.add(u);
          c.rosters.set(e + 1, next);
          c.added.set(e, new Set(request.add));
          c.latest = Math.max(c.latest, e + 1);
          const early = this.#early.get(`${toHex(request.channelId)}:${e}`) ?? [];
          this.#early.delete(`${toHex(request.channelId)}:${e}`);
          for (const w of early) this.#judge(w.to, w.m);
        }
      } else if (r.kind === "messages" && to !== undefined) {
        for (const m of r.messages) this.#judge(to, m);
      }
    } else if (frame.type === "push") {
      const p = frame.push;
      this.frames.push = (this.frames.push ?? 0) + 1;
      if (to !== undefined) {
        for (const m of p.messages) this.#judge(to, m);
      }
    }
  }

  #judge(
    to: string,
    m: { channelId: Uint8Array; messageKind: string; epoch: number; sender: string },
  ): void {
    if (m.channelId.length === 0) return; // a server notice
    const c = this.#channels.get(toHex(m.channelId));
    if (!c) {
      this.unknown++;
      return;
    }
    this.checked++;
    if (m.messageKind === "application") {
      for (const [e, roster] of c.rosters) if (e >= m.epoch && roster.has(to)) return;
      this.violations.push({
        invariant: "server-delivers-to-members",
        detail: `the server sent ${to} an application message of ${c.key} at epoch ${m.epoch} ` +
          `from ${m.sender}; ${to} is not a member at that epoch or later (roster then ${
            fmt(c.rosters.get(m.epoch))
          })`,
      });
    } else if (m.messageKind === "welcome") {
      if (c.added.get(m.epoch)?.has(to)) return;
      if (!c.added.has(m.epoch)) {
        // no answer to a commit of that epoch seen yet: judged when it is
        const k = `${toHex(m.channelId)}:${m.epoch}`;
        this.#early.set(k, [...(this.#early.get(k) ?? []), { to, m }]);
        return;
      }
      this.violations.push({
        invariant: "server-welcomes-added",
        detail: `the server sent ${to} a Welcome into ${c.key} (epoch ${m.epoch}); ` +
          `the commit it acknowledged added ${fmt(c.added.get(m.epoch))}`,
      });
    }
  }

  /**
   * The members of the conversation `key` at the latest epoch the server acknowledged
   * (undefined: the server never created it).
   */
  roster(key: string): Set<string> | undefined {
    const c = this.#byKey.get(key);
    if (!c) return undefined;
    // a DM's server roster holds both users from the start; its MLS group (the
    // conversation) exists once its first commit was acknowledged
    if (key.startsWith("dm:") && c.latest === 0) return new Set();
    return c.rosters.get(c.latest);
  }

  /** The latest acknowledged epoch of `key`. */
  epoch(key: string): number | undefined {
    return this.#byKey.get(key)?.latest;
  }
}

function fmt(s: Set<string> | undefined): string {
  return s ? `[${[...s].sort()}]` : "unknown";
}
