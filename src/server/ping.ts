/**
 * Ping and health: liveness and a short status report.
 *
 * @module
 */
import { VERSION } from "../version.ts";
import { WIRE_VERSION } from "../limits.ts";
import { ValidationError } from "../errors.ts";
import type { HandlerTable, ServerContext } from "./context.ts";
import type { Response } from "../wire/mod.ts";

/** The health report, one for QUIC `health` and HTTP `GET /health`. */
export type HealthReport = Extract<Response, { kind: "health" }>;

/**
 * What health says: version, uptime, open connections, queued messages, and `ok` or
 * `degraded` with the reason (while degraded, asking tries one tiny write so that health
 * turns `ok` as soon as the store can write again).
 */
export async function healthReport(ctx: ServerContext): Promise<HealthReport> {
  const { status, reason } = await ctx.condition();
  return {
    kind: "health",
    version: VERSION,
    wireVersion: WIRE_VERSION,
    uptimeSeconds: Math.floor((Date.now() - ctx.startedAt) / 1000),
    connectedClients: ctx.stats.connections,
    queueDepth: await ctx.queueDepth(),
    status,
    reason,
  };
}

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
    health() {
      return healthReport(ctx);
    },
  };
}
