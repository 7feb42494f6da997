/**
 * Ping and health: liveness and a short status report.
 *
 * @module
 */
import { VERSION } from "../version.ts";
import { WIRE_VERSION } from "../limits.ts";
import { ValidationError } from "../errors.ts";
import type { HandlerTable, ServerContext } from "./context.ts";

/** Largest ping payload echoed back. */
const MAX_PING_PAYLOAD = 4096;

/** Handlers for `ping` and `health`. */
export function pingHandlers(ctx: ServerContext): HandlerTable {
  return {
    ping(req) {
      if (req.payload.length > MAX_PING_PAYLOAD) {
        throw new ValidationError(`Ping payload exceeds ${MAX_PING_PAYLOAD} bytes`, {
          code: "too_large",
        });
      }
      return Promise.resolve({
        kind: "pong",
        clientTimeMs: req.clientTimeMs,
        serverTimeMs: Date.now(),
        payload: req.payload,
      });
    },
    async health() {
      return {
        kind: "health",
        version: VERSION,
        wireVersion: WIRE_VERSION,
        uptimeSeconds: Math.floor((Date.now() - ctx.startedAt) / 1000),
        connectedClients: ctx.stats.connections,
        queueDepth: await ctx.queueDepth(),
        status: "ok",
      };
    },
  };
}
