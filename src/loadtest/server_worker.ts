/**
 * A qpq server in a Web Worker: the load tool runs the server on its own thread (its own
 * core) while its clients run on other worker threads (client_worker.ts).
 *
 * Messages in: `{ type: "start", dataDir }`, `{ type: "cpu" }`, `{ type: "close" }`.
 * Messages out: `{ type: "started", addr, certPem }`, `{ type: "cpu", ms }` (this thread's
 * CPU time so far), `{ type: "closed" }`, `{ type: "error", message }`.
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
    } else if (msg.type === "cpu") {
      self.postMessage({ type: "cpu", ms: threadCpuMs() });
    } else if (msg.type === "close") {
      await server?.close();
      self.postMessage({ type: "closed" });
    }
  } catch (err) {
    self.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
};
