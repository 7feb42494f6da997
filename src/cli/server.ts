/**
 * `qpq server`: run the server until SIGINT/SIGTERM; `qpq server backup|restore` are
 * dispatched to their own modules.
 *
 * @module
 */
import { parseCommand, println } from "./_args.ts";
import { startServer } from "../server/mod.ts";
import { readServerConfig } from "./_server_config.ts";
import { formatHostPort } from "../transport/quic.ts";
import { createServices } from "../server/services.ts";
import { createLogger } from "../log.ts";
import { exitCodeFor, toQpqError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq server [--config FILE] [--listen HOST:PORT] [--data-dir DIR]
                  [--health-listen HOST:PORT]
       qpq server backup --out FILE      copy the database while the server runs
       qpq server restore FILE           put a backup in place (server stopped)
       qpq server --check [--config FILE] [--data-dir DIR]

Run the qpq server (Authentication Service + Delivery Service) until SIGINT or SIGTERM.
On first start without tls_cert/tls_key it writes a self-signed certificate into the data
directory and prints its SHA-256 fingerprint; give clients that file with --ca-cert.

Options:
  --config FILE            TOML config file (every key with its env var, flag and
                           default: docs/operations.md, section 2)
  --listen HOST:PORT       QUIC address (default 0.0.0.0:7000)
  --data-dir DIR           data directory (default ./data)
  --health-listen ADDR     also serve plain-HTTP GET /health on ADDR
  --check                  do not serve: check the database this configuration opens
                           (integrity, foreign keys, db_key, schema, a migration dry
                           run on a copy) without changing it, also while a server runs
                           on it; one line per finding, exit 0 when the server can
                           start on it, 1 with the reason when not
  -h, --help               show this help

Environment: QPQ_AUTH_TOKEN, QPQ_DB_KEY, QPQ_PRODUCTION=1, QPQ_LOG=debug|info|warn|error
(QPQ_LOG wins over log_level), QPQ_CONFIG (the config file when --config is not given)
Precedence: flags > environment > config file > defaults.`;

/** Subcommands of `qpq server`, loaded when used. */
const SUBCOMMANDS: Record<string, () => Promise<{ run(args: string[]): Promise<number> }>> = {
  backup: () => import("./server_backup.ts"),
  restore: () => import("./server_restore.ts"),
};

/** Run `qpq server` (or one of its subcommands). */
export async function run(args: string[]): Promise<number> {
  const sub = args[0] !== undefined && Object.hasOwn(SUBCOMMANDS, args[0])
    ? SUBCOMMANDS[args[0]]
    : undefined;
  if (sub) return (await sub()).run(args.slice(1));
  const p = parseCommand("server", args, {
    config: { type: "string" },
    listen: { type: "string" },
    "data-dir": { type: "string" },
    "health-listen": { type: "string" },
    check: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const config = await readServerConfig(p.values, {
    listen: p.values.listen,
    healthListen: p.values["health-listen"],
  });
  if (p.values.check) return (await import("./server_check.ts")).runCheck(config);
  // stderr carries one format: once the server logged a JSON line, a failure to start is
  // one more JSON line (level "error"), not a plain `qpq: …` line after it
  let logged = false;
  const enc = new TextEncoder();
  const log = createLogger({
    level: config.logLevel,
    write: (line) => {
      logged = true;
      try {
        Deno.stderr.writeSync(enc.encode(line + "\n"));
      } catch { /* stderr closed */ }
    },
  });
  let server;
  try {
    server = await startServer(config, { services: createServices, log });
  } catch (e) {
    if (!logged) throw e; // the one line main prints
    const err = toQpqError(e);
    const cause = err.code === "internal" && err.cause instanceof Error ? err.cause : undefined;
    log.error(cause ? `internal error: ${cause.message.split("\n")[0]}` : err.message, {
      code: err.code,
    });
    return exitCodeFor(err);
  }
  // before the lines below: whoever waits for them may signal at once
  const stop = () => void server.close();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const cert = server.certificate;
  println(`qpq server listening on ${formatHostPort(server.addr)} (QUIC, ALPN qpq/1)`);
  println(
    `certificate: ${cert.certPath}${
      cert.generated ? (cert.createdNow ? " (generated now)" : " (generated)") : ""
    }`,
  );
  println(`SHA-256 fingerprint: ${cert.fingerprint}`);
  if (server.healthAddr) println(`health on http://${formatHostPort(server.healthAddr)}/health`);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  println("qpq server stopped");
  return 0;
}
