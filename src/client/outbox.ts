/**
 * The outbox part of the client: requests stored locally before they go out, sent as the
 * exact bytes stored (encoded once), retried with the same message id (the server keeps
 * one copy) until the server answers.
 *
 * ```
 * queue (in the caller's transaction) ─► deliver ─┬─ enqueued ─► removed, message "sent"
 *                                                 ├─ quota / rate limit ─► kept (later)
 *                                                 ├─ refused ─► removed, error
 *                                                 └─ no server ─► kept (next command)
 * ```
 *
 * @module
 */
import { type EncodedRequest, encodedRequest } from "../wire/mod.ts";
import { QpqError, TransportError } from "../errors.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";

/** Refusals that may pass: the message stays queued. */
const TEMPORARY_REFUSALS = new Set(["quota", "rate_limited", "unavailable", "timeout"]);
/** Delays between tries of one delivery over a dropping connection (ms). */
const RETRY_DELAYS_MS = [0, 200, 800];

/** Queued requests. */
export class Outbox {
  #ctx: ClientContext;
  #session: Session;

  constructor(ctx: ClientContext, session: Session) {
    this.#ctx = ctx;
    this.#session = session;
  }

  /** Messages waiting to be sent. */
  pendingCount(): number {
    return this.#ctx.state.listOutbox().length;
  }

  /**
   * Send one queued request. A dropped connection is retried; an unreachable server
   * leaves it queued (false); a refusal removes it and throws (retrying cannot succeed).
   */
  async deliver(messageId: string, request: EncodedRequest): Promise<boolean> {
    const state = this.#ctx.state;
    for (const d of RETRY_DELAYS_MS) {
      if (d) await new Promise((r) => setTimeout(r, d));
      try {
        if (!this.#session.connected) await this.#session.ensure();
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        await this.#session.disconnect();
        break; // no server: do not wait for another connect timeout
      }
      try {
        await this.#session.call(request, "enqueued");
        state.transaction(() => {
          state.removeOutbox(messageId);
          state.setMessageStatus(messageId, "sent");
        });
        return true;
      } catch (e) {
        if (
          !(e instanceof TransportError) && e instanceof QpqError && TEMPORARY_REFUSALS.has(e.code)
        ) {
          state.bumpOutbox(messageId);
          this.#ctx.emit({ kind: "warning", text: `Message kept in the queue: ${e.message}` });
          return false;
        }
        if (!(e instanceof TransportError)) {
          state.removeOutbox(messageId);
          throw e;
        }
        state.bumpOutbox(messageId);
        await this.#session.disconnect();
      }
    }
    return false;
  }

  /**
   * Send everything still queued (oldest first). Returns how many went out. A queued
   * message the server refuses is dropped from the queue with a warning.
   */
  async flush(): Promise<number> {
    let sent = 0;
    for (const e of this.#ctx.state.listOutbox()) {
      let ok: boolean;
      try {
        ok = await this.deliver(e.messageId, encodedRequest("enqueue", e.request));
      } catch (err) {
        if (err instanceof TransportError || !(err instanceof QpqError)) throw err;
        this.#ctx.emit({
          kind: "warning",
          text: `A queued message was refused by the server: ${err.message}`,
        });
        continue;
      }
      if (ok) sent++;
      else break;
    }
    return sent;
  }
}
