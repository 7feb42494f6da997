/**
 * The receiver part of the client: the one path every delivered message takes, whether the
 * server pushed it or we fetched it. Messages are applied one at a time in queue order;
 * the queue position (cursor) is stored in the same transaction as what the message
 * changed, and acknowledged to the server only after that.
 *
 * ```
 * push{messages} ─► buffer ─┐
 *                           ├─► in order from cursor+1 ─► Inbox.receive ─► [change + cursor]
 * fetch(after cursor) ──────┘     a gap (seq > cursor+1) ─► fetch fills it       ─► ack
 *                                 seq ≤ cursor (repeat) ─► skipped
 *                                 seq 0 (ephemeral: typing) ─► Inbox, nothing stored, no ack
 *                                 a gap in a fetched page: expired messages, one warning
 *                                 (not before a restore notice: the restore skipped them)
 * ```
 *
 * @module
 */
import { canonicalUsername } from "../names.ts";
import { MAX_FETCH_PAGE } from "../limits.ts";
import { type DeliveredMessage, NOTICE_RESTORED, type Push } from "../wire/mod.ts";
import { QpqError, refusedForNow, retryLater } from "../errors.ts";
import type { ClientContext } from "./_context.ts";
import type { Groups } from "./groups.ts";
import type { Inbox } from "./inbox.ts";
import type { Session } from "./session.ts";

/** Ordered processing of deliveries. */
export class Receiver {
  #ctx: ClientContext;
  #session: Session;
  readonly #groups: Pick<Groups, "resolvePendingCommits">;
  readonly #inbox: Inbox;
  #serial: Promise<unknown> = Promise.resolve();
  #pushed: DeliveredMessage[] = [];
  /** Called after messages were applied (the client commits what they left to do). */
  #after: (count: number) => void;

  /**
   * Built after the groups and inbox parts it hands messages to; `after` is told how many
   * were applied.
   */
  constructor(
    ctx: ClientContext,
    parts: {
      session: Session;
      /** Own commits awaiting the server's answer are resolved before each fetch. */
      groups: Pick<Groups, "resolvePendingCommits">;
      inbox: Inbox;
    },
    after: (count: number) => void,
  ) {
    this.#ctx = ctx;
    this.#session = parts.session;
    this.#groups = parts.groups;
    this.#inbox = parts.inbox;
    this.#after = after;
  }

  /** Last queue position processed. */
  cursor(): number {
    return this.#ctx.state.cursor();
  }

  /** Server push: apply the pushed messages directly (fetching only to fill a gap). */
  onPush(push: Push): void {
    this.#pushed.push(...push.messages);
    this.#one(() => this.#drainPushed()).then(
      (n) => n > 0 && this.#after(n),
      (e) =>
        this.#ctx.emit({
          kind: "warning",
          text: `Receive failed: ${e instanceof QpqError ? e.message : String(e)}`,
        }),
    );
  }

  /**
   * Acknowledge everything up to the stored cursor. A server that cannot store the ack (its
   * disk is full) must not stop the receiving: the messages are applied and the cursor is
   * stored here, so a redelivery is dropped by sequence number, and the next ack covers it.
   */
  async #ack(): Promise<void> {
    try {
      await this.#session.call({ kind: "ack", uptoSeq: this.cursor() }, "ok");
    } catch (e) {
      if (!refusedForNow(e)) throw e;
    }
  }

  /** Fetch and apply everything waiting on the server. Returns how many were applied. */
  fetch(): Promise<number> {
    return this.#one(() => this.#fetchAll());
  }

  /** One drain at a time, in call order. */
  #one<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn);
    this.#serial = run.then(() => {}, () => {});
    return run;
  }

  async #drainPushed(): Promise<number> {
    // a commit of ours whose answer was lost is completed first, as before a fetch: the
    // members' messages of the epoch it made were "from a future epoch", unreadable (sim
    // seed 21)
    await this.#groups.resolvePendingCommits();
    const batch = this.#pushed.splice(0).sort((a, b) => a.seq - b.seq);
    let cursor = this.cursor();
    let n = 0;
    for (const m of batch) {
      if (m.seq === 0) {
        await this.#ephemeral(m);
        continue;
      }
      if (m.seq <= cursor) continue; // delivered twice: applied already
      if (m.seq !== cursor + 1) return n + await this.#fetchAll(); // a gap: fetch fills it
      await this.#apply(m);
      n++;
      cursor = m.seq;
    }
    if (n > 0) await this.#ack();
    this.#inbox.reportRequests();
    return n;
  }

  async #fetchAll(): Promise<number> {
    await this.#session.ensure();
    await this.#groups.resolvePendingCommits();
    let total = 0;
    while (true) {
      const cursor = this.cursor();
      const page = await this.#session.call(
        { kind: "fetch", afterSeq: cursor, limit: MAX_FETCH_PAGE },
        "messages",
      );
      if (page.messages.length === 0) break;
      // in queue order whatever order the server sent them in (a lying server reordering a
      // page made the later ones look applied already: skipped, acknowledged, lost)
      const messages = [...page.messages].sort((a, b) => a.seq - b.seq);
      const first = messages[0]!.seq;
      // a restore notice follows the numbers the lost history used: none of them expired
      const restored = messages[0]!.serverNotice === NOTICE_RESTORED;
      if (first > cursor + 1 && cursor > 0 && !restored) {
        this.#ctx.emit({
          kind: "warning",
          text: `${first - cursor - 1} message(s) expired on the server before delivery`,
        });
      }
      for (const m of messages) {
        if (m.seq <= this.cursor()) continue;
        await this.#apply(m);
        total++;
      }
      await this.#ack();
      this.#inbox.reportRequests();
      if (!page.more) break;
    }
    this.#inbox.reportRequests(); // also what a push drain applied before a gap
    return total;
  }

  /**
   * An ephemeral message (seq 0, a typing indicator): to the inbox, which reports it and
   * stores nothing of it; no queue position, no ack. Best effort: a failure is no loss.
   */
  async #ephemeral(m: DeliveredMessage): Promise<void> {
    try {
      const sender = canonicalUsername(m.sender);
      await this.#ctx.exclusive(() => this.#inbox.receive({ ...m, sender }, () => {}));
    } catch { /* dropped: nothing was stored */ }
  }

  /** Apply one message. Transient failures stop the drain (the message is kept). */
  async #apply(m: DeliveredMessage): Promise<void> {
    const state = this.#ctx.state;
    const done = () => state.setCursor(m.seq);
    try {
      // the sender in canonical form: one queued before usernames were case-insensitive
      // says "Carol"; a sender that is no username at all is refused here
      const sender = canonicalUsername(m.sender);
      await this.#ctx.exclusive(() => this.#inbox.receive({ ...m, sender }, done));
    } catch (e) {
      if (retryLater(e)) throw e;
      // A message we cannot process must not block the queue forever: report and move on.
      const why = e instanceof QpqError ? e.message : "unexpected error";
      this.#ctx.emit({
        kind: "warning",
        text: `Dropped a ${m.messageKind} from ${m.sender}: ${why}`,
      });
      state.transaction(done);
    }
  }
}
