/// <reference lib="deno.worker" />
/**
 * Worker for scripts/fuzz.ts: runs the real server (tests/_support/server.ts: QUIC on
 * loopback, SQLite in a temp dir) on its own thread, so the fuzzing clients and the server
 * do not share one event loop. Answers `mem` with Deno.memoryUsage() and `close` by
 * shutting down.
 *
 * @module
 */
import { startTestServer } from "../tests/_support/server.ts";

const srv = await startTestServer();
self.postMessage({ type: "ready", addr: srv.addr, certPem: srv.certPem });
self.onmessage = async (e: MessageEvent<{ type: "mem" | "close" }>) => {
  if (e.data.type === "mem") {
    self.postMessage({ type: "mem", usage: Deno.memoryUsage() });
  } else {
    await srv.close();
    await Deno.remove(srv.dataDir, { recursive: true }).catch(() => {});
    self.postMessage({ type: "closed" });
  }
};
