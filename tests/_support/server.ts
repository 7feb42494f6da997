/**
 * Test and bench support: start a real qpq server on loopback with a temp data dir.
 *
 * @module
 */
import {
  resolveConfig,
  type RunningServer,
  type ServerConfig,
  startServer,
} from "../../src/server/mod.ts";
import { createServices } from "../../src/server/services.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { formatHostPort } from "../../src/transport/quic.ts";

/** A server started for a test. */
export interface TestServer {
  server: RunningServer;
  addr: string;
  dataDir: string;
  certPem: string;
  config: ServerConfig;
  close(): Promise<void>;
}

/** Start a server on 127.0.0.1:0 with a fresh temp data dir (or the given one). */
export async function startTestServer(
  options: {
    dataDir?: string;
    file?: Record<string, string | number | boolean>;
    env?: Record<string, string>;
    /** Keep a data dir this made when the server closes (a test reads it afterwards). */
    keepDataDir?: boolean;
    /** Where the server logs (default: nowhere). */
    log?: Logger;
  } = {},
): Promise<TestServer> {
  const made = options.dataDir === undefined;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "qpq-test-" });
  const config = resolveConfig(
    { listen: "127.0.0.1:0", dataDir },
    options.file ?? {},
    options.env ?? {},
  );
  const server = await startServer(config, {
    services: createServices,
    log: options.log ?? silentLogger,
  });
  return {
    server,
    addr: formatHostPort(server.addr),
    dataDir,
    certPem: server.certificate.certPem,
    config,
    async close() {
      await server.close();
      // a data dir this made goes with the server (one given by the test is the test's)
      if (made && !options.keepDataDir) {
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
    },
  };
}
