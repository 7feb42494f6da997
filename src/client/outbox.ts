/**
 * The outbox part of the client: requests stored locally before they go out, sent as the
 * exact bytes stored (encoded once), retried with the same message id (the server keeps
 * one copy) until the server answers.
 *
 * ```
 * queue (in the caller's transaction) ─► deliver ─┬─ enqueued ─► message "sent"; a message
 *                                                 │   of ours kept (bounded) for a restore,
 *                                                 │   anything else removed
 *                                                 ├─ epoch_conflict ─► kept; the caller
 *                                                 │   syncs: encrypted again, sent
 *                                                 ├─ quota / rate limit / ─► kept (later)
 *                                                 │  server disk full
 *                                                 ├─ refused ─► removed, message "failed"
 *                                                 │   (why kept), error; "not a member":
 *                                                 │   `Not sent to #team: you were removed`
 *                                                 └─ no server ─► kept (next command)
 * server restored (notice) ─► kept ones queued again ─► flush: the server answers
 *   "duplicate" for those the backup has; the others were lost and are counted, one line
 * ```
 *
 * @module
 */
import { type EncodedRequest, encodedRequest } from "../wire/mod.ts";
import { QpqError, refusedForNow, TransportError } from "../errors.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";
import { decodeContent } from "./content.ts";
import { SENT_KEEP_BYTES, SENT_KEEP_MESSAGES } from "../limits.ts";
import type { LocalState } from "../store/client/mod.ts";

/** Options of {@link Outbox.deliver}. */
export interface DeliverOptions {
  /**
   * The request is content of ours (of any kind, composed by `Groups.compose`): kept once
   * sent, to send again after a server restore. Without it: when its history row is ours.
   */
  content?: boolean;
  /**
   * Keep content once sent (default true): false for a receipt, a courtesy that is not sent
   * again after a restore, so it neither counts as a message of ours nor pushes one of them
   * out of the bounded kept set.
   */
  keep?: boolean;
}

/** A queued entry's content is a receipt (not kept once sent: see {@link DeliverOptions}). */
function isReceipt(content: Uint8Array): boolean {
  try {
    return decodeContent(content).body.kind === "receipt";
  } catch {
    return false;
  }
}

/** Why a message queued by a member the conversation has since removed was not sent. */
export const REMOVED_FAILURE = "you were removed";

/** The one line telling the user a message of theirs to `name` will never go out. */
export function notSentText(name: string, failure: string): string {
  return `Not sent to ${name}: ${failure}`;
}

/**
 * Take a request out of the queue for good: its message (ours) becomes "failed" with
 * `failure` (terminal, shown in history), never pending forever. Runs in one transaction.
 */
export function failQueued(state: LocalState, messageId: string, failure: string): void {
  state.transaction(() => {
    state.removeOutbox(messageId);
    if (state.getMessage(messageId)?.direction === "out") {
      state.setMessageStatus(messageId, "failed", failure);
    }
  });
}

/**
 * This device was removed from `conversationId` (it processed its removal, or the server
 * said it is not a member): every request still queued for it fails with `failure`.
 * Returns how many of them were messages of ours (the caller tells the user, one line).
 */
export function failRemoved(
  state: LocalState,
  conversationId: string,
  failure = REMOVED_FAILURE,
): number {
  let n = 0;
  state.transaction(() => {
    for (const e of state.listOutbox(conversationId)) {
      if (state.getMessage(e.messageId)?.direction === "out") n++;
      failQueued(state, e.messageId, failure);
    }
  });
  return n;
}

/** Why a refused message stays queued, in words a user can act on (one line). */
function heldText(e: QpqError): string {
  if (e.code === "storage_full") {
    return "Message kept in the queue: the server's disk is full; it will be sent when the server has space";
  }
  return `Message kept in the queue: ${e.message}`;
}
/** Delays between tries of one delivery over a dropping connection (ms). */
const RETRY_DELAYS_MS = [0, 200, 800];

/** Queued requests. */
export class Outbox {
  #ctx: ClientContext;
  #session: Session;
  /** How much of what the server acknowledged is kept for a restore. */
  #keep: { count: number; bytes: number };
  /** The flush running now, if any: flushes run one at a time. */
  #flushing: Promise<number> | undefined;
  /** The deliveries on the way now (a send's, a receipt's, a flush's). */
  #onTheWay = new Set<Promise<unknown>>();
  /** A restore was noticed: messages sent again that the server did not have. */
  #restore: { takenAt: number; resent: number; refused: number } | undefined;
  #refusal: string | undefined;
  #behind = false;

  constructor(
    ctx: ClientContext,
    session: Session,
    keep: { count: number; bytes: number } = {
      count: SENT_KEEP_MESSAGES,
      bytes: SENT_KEEP_BYTES,
    },
  ) {
    this.#ctx = ctx;
    this.#session = session;
    this.#keep = keep;
  }

  /**
   * Why the last delivery left its message queued although the server answered (the
   * warning it emitted); undefined after a success or when the server could not be reached.
   */
  get refusal(): string | undefined {
    return this.#refusal;
  }

  /**
   * The last delivery left its message queued because the server's channel is at a later
   * epoch than the one it was encrypted in: a sync catches up and sends it again.
   */
  get behind(): boolean {
    return this.#behind;
  }

  /** Messages waiting to be sent. */
  pendingCount(): number {
    return this.#ctx.state.outboxCount();
  }

  /**
   * Send one queued request. A dropped connection is retried; an unreachable server
   * leaves it queued (false); a refusal removes it and throws (retrying cannot succeed).
   */
  async deliver(
    messageId: string,
    request: EncodedRequest,
    opts: DeliverOptions = {},
  ): Promise<boolean> {
    // one composed while an older one of its conversation is on the way waits for it: it
    // found it queued and stayed queued for a flush that never came (a member's message
    // composed while its delivered receipt was on the way stayed pending until the next
    // sync; found by bench/delivery_cpu_bench.ts, which then waited for ever)
    while (this.queuedBefore(messageId) && this.#onTheWay.size > 0) {
      await Promise.allSettled([...this.#onTheWay]);
    }
    if (this.queuedBefore(messageId)) {
      // it waits behind them: the next flush sends them in order
      this.#refusal = undefined;
      this.#behind = false;
      return false;
    }
    return (await this.#deliver(messageId, request, opts)) !== false;
  }

  /**
   * True when an older entry of the same conversation is still queued before `messageId`
   * (or, without one, when anything of `conversationId` is queued). A message never
   * overtakes an older one of its conversation: their MLS generations would reach the
   * members out of order, and a member keeps the keys of only a few skipped generations
   * (ts-mls: 10) — the older messages would arrive unreadable. (Found by the simulation,
   * seed 4020: twelve messages queued offline, then the delivered receipt of the sync that
   * brought the sender back went out first.)
   */
  queuedBefore(messageId: string | undefined, conversationId?: string): boolean {
    // SQL on the store's typed columns: no entry is opened (this runs on every send)
    return this.#ctx.state.queuedBefore(messageId, conversationId);
  }

  /** {@link deliver}, saying whether the server had the message already. */
  #deliver(
    messageId: string,
    request: EncodedRequest,
    opts: DeliverOptions,
  ): Promise<"stored" | "duplicate" | false> {
    const p = this.#deliverOnce(messageId, request, opts);
    this.#onTheWay.add(p);
    const gone = () => this.#onTheWay.delete(p);
    p.then(gone, gone);
    return p;
  }

  async #deliverOnce(
    messageId: string,
    request: EncodedRequest,
    opts: DeliverOptions,
  ): Promise<"stored" | "duplicate" | false> {
    const state = this.#ctx.state;
    this.#refusal = undefined;
    this.#behind = false;
    for (const d of RETRY_DELAYS_MS) {
      if (d) await this.#ctx.sleep(d);
      try {
        if (!this.#session.connected) await this.#session.ensure();
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        await this.#session.disconnect();
        break; // no server: do not wait for another connect timeout
      }
      try {
        const ans = await this.#session.call(request, "enqueued");
        const now = this.#ctx.now();
        // not durable: a power cut that undoes it leaves the request queued, and it is sent
        // again under its id (the server keeps one copy: "duplicate")
        state.transaction(() => {
          // a message of ours (not a leave proposal) is kept to resend after a restore
          const ours = opts.content
            ? opts.keep ?? true
            : state.getMessage(messageId)?.direction === "out";
          if (ours) {
            state.keepSent(messageId, now, this.#keep);
          } else state.removeOutbox(messageId);
          state.setMessageStatus(messageId, "sent");
        }, { durable: false });
        return ans.duplicate ? "duplicate" : "stored";
      } catch (e) {
        if (refusedForNow(e)) { // a refusal that may pass: the message stays queued
          state.bumpOutbox(messageId);
          if (e.code === "epoch_conflict") {
            // the group moved on: the next sync catches up and encrypts it again (no warning)
            this.#behind = true;
            return false;
          }
          this.#refusal = heldText(e);
          this.#ctx.emit({ kind: "warning", text: this.#refusal });
          return false;
        }
        if (!(e instanceof TransportError)) {
          const why = e instanceof QpqError && e.code === "forbidden"
            ? REMOVED_FAILURE
            : e instanceof Error
            ? e.message
            : "refused";
          failQueued(state, messageId, why);
          throw e;
        }
        state.bumpOutbox(messageId);
        await this.#session.disconnect();
      }
    }
    return false;
  }

  /**
   * Send everything still queued (oldest first) but the requests of the conversations in
   * `held` (their group is not at an epoch they may leave on yet: they wait, in order).
   * Returns how many went out. A queued message the server refuses is dropped from the
   * queue with a warning; one it refuses for now holds the rest of its conversation only.
   */
  async flush(held: ReadonlySet<string> = new Set()): Promise<number> {
    while (this.#flushing) await this.#flushing.catch(() => {});
    this.#flushing = this.#flush(held);
    try {
      return await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #flush(held: ReadonlySet<string>): Promise<number> {
    let sent = 0;
    const waiting = new Set(held);
    for (const e of this.#ctx.state.listOutbox()) {
      if (waiting.has(e.conversationId)) continue;
      let ok: "stored" | "duplicate" | false;
      try {
        ok = await this.#deliver(e.messageId, encodedRequest("enqueue", e.request), {
          content: e.content !== undefined,
          keep: e.content === undefined || !isReceipt(e.content),
        });
      } catch (err) {
        if (err instanceof TransportError || !(err instanceof QpqError)) throw err;
        if (e.resend && this.#restore) {
          this.#restore.refused++; // e.g. a DM opened since the backup: counted, one line
          continue;
        }
        if (err.code === "forbidden") {
          // not a member any more: whatever else is queued for it cannot go out either
          failRemoved(this.#ctx.state, e.conversationId);
          const name = this.#ctx.state.getConversation(e.conversationId)?.name;
          if (name !== undefined) {
            this.#ctx.emit({ kind: "warning", text: notSentText(name, REMOVED_FAILURE) });
            continue;
          }
        }
        this.#ctx.emit({
          kind: "warning",
          text: `A queued message was refused by the server: ${err.message}`,
        });
        continue;
      }
      if (!ok) {
        // the server refused it for now (the group moved on, a limit, a full disk): only its
        // conversation waits, the others' queues go on (seed 5015: one stale message of a
        // group being left held every other conversation's queue for good); no server: stop
        if (!this.#session.connected) break;
        waiting.add(e.conversationId);
        continue;
      }
      sent++;
      // sent again after a restore: new to the server = the restore had lost it
      if (e.resend && ok === "stored" && this.#restore) this.#restore.resent++;
    }
    const r = this.#restore;
    if (r && !this.#ctx.state.listOutbox().some((e) => e.resend)) {
      this.#restore = undefined;
      const parts: string[] = [];
      const why = "(their conversations changed since)";
      if (r.resent > 0) parts.push(`${r.resent} message(s) you sent since were sent again`);
      if (r.refused > 0) {
        parts.push(
          r.resent > 0
            ? `${r.refused} could not be ${why}`
            : `${r.refused} message(s) you sent since could not be sent again ${why}`,
        );
      }
      if (parts.length > 0) {
        this.#ctx.emit({
          kind: "warning",
          text: `${restoredFrom(r.takenAt)}: ${parts.join("; ")}`,
        });
      }
    }
    return sent;
  }

  /**
   * The server was restored from a backup taken at `takenAt` (ms, 0 = unknown) and the
   * kept messages were queued again (in the notice's transaction): the next
   * {@link flush} sends them and says how many the restore had lost.
   */
  noteRestore(takenAt: number): void {
    this.#restore = { takenAt, resent: 0, refused: 0 };
  }

  /** True while messages queued again after a restore wait to go out. */
  get restorePending(): boolean {
    return this.#restore !== undefined;
  }
}

/** `the server was restored from a backup (taken 2026-11-28 14:00 UTC)`: the start of both lines. */
export function restoredFrom(takenAt: number): string {
  const d = new Date(takenAt);
  const when = takenAt > 0 && Number.isFinite(d.getTime())
    ? `taken ${d.toISOString().slice(0, 16).replace("T", " ")} UTC`
    : "taken at an unknown time";
  return `the server was restored from a backup (${when})`;
}
