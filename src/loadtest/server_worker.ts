/**
 * A qpq server in a Web Worker: the load tool runs the server on its own thread (its own
 * core) while its clients run on other worker threads (client_worker.ts).
 *
 * Messages in: `{ type: "start", dataDir }`, `{ type: "cpu" }`, `{ type: "close" }`.
 * Messages out: `{ type: "started", addr, certPem }`, `{ type: "cpu", ms, lagP99Ms, lagMaxMs }`
 * (this thread's CPU time so far, and how late a 20 ms timer on its event loop ran since the
 * last "cpu": a synchronous SQLite commit and fsync stall the loop without using CPU),
 * `{ type: "closed" }`, `{ type: "error", message }`.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { resolveConfig, startServer } from "../server/mod.ts";
import { createServices } from "../server/services.ts";
import { createLogger } from "../log.ts";
import { formatHostPort } from "../transport/quic.ts";
import type { RunningServer } from "../server/server.ts";
import { threadCpuMs } from "./_cpu.ts";

let server: RunningServer | undefined;

/** Period of the event-loop lag probe (ms). */
const PROBE_MS = 20;
/** How late each probe tick ran (ms) since the last "cpu" message. */
let lags: number[] = [];
let probe: ReturnType<typeof setInterval> | undefined;

function startProbe(): void {
  let due = performance.now() + PROBE_MS;
  probe = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - due));
    due = now + PROBE_MS;
  }, PROBE_MS);
}

self.onmessage = async (e: MessageEvent) => {
  const msg = e.data as { type: string; dataDir?: string; fsync?: boolean };
  try {
    if (msg.type === "start") {
      const config = resolveConfig(
        { listen: "127.0.0.1:0", dataDir: msg.dataDir! },
        msg.fsync === false ? { fsync: false } : {},
        {},
      );
      server = await startServer(config, {
        services: createServices,
        log: createLogger({ level: "error" }),
      });
      self.postMessage({
        type: "started",
        addr: formatHostPort(server.addr),
        certPem: server.certificate.certPem,
      });
      startProbe();
    } else if (msg.type === "cpu") {
      const sorted = lags.sort((a, b) => a - b);
      lags = [];
      self.postMessage({
        type: "cpu",
        ms: threadCpuMs(),
        lagP99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
        lagMaxMs: sorted[sorted.length - 1] ?? 0,
      });
    } else if (msg.type === "close") {
      clearInterval(probe);
      await server?.close();
      self.postMessage({ type: "closed" });
    }
  } catch (err) {
    self.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
};
