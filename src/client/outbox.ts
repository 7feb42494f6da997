/**
 * The outbox part of the client: requests stored locally before they go out, sent as the
 * exact bytes stored (encoded once), retried with the same message id (the server keeps
 * one copy) until the server answers.
 *
 * ```
 * queue (in the caller's transaction) ─► deliver ─┬─ enqueued ─► removed, message "sent"
 *                                                 ├─ quota / rate limit / ─► kept (later)
 *                                                 │  server disk full
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
const TEMPORARY_REFUSALS = new Set([
  "quota",
  "rate_limited",
  "unavailable",
  "timeout",
  "storage_full",
]);

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
  #refusal: string | undefined;

  constructor(ctx: ClientContext, session: Session) {
    this.#ctx = ctx;
    this.#session = session;
  }

  /**
   * Why the last delivery left its message queued although the server answered (the
   * warning it emitted); undefined after a success or when the server could not be reached.
   */
  get refusal(): string | undefined {
    return this.#refusal;
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
    this.#refusal = undefined;
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
          this.#refusal = heldText(e);
          this.#ctx.emit({ kind: "warning", text: this.#refusal });
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
