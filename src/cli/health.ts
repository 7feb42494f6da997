/**
 * `qpq health`: ask a server for its status over QUIC.
 *
 * @module
 */
import { env, parseCommand, println } from "./_args.ts";
import { connectServer, readCaCert } from "../client/connection.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq health [--server HOST:PORT] [--ca-cert FILE] [--json]

Print a server's status (ok, or degraded with the reason, e.g. its disk is full), version,
uptime, connected clients and queued messages. Exit code 0 when ok, 1 when degraded.

Options:
  --server HOST:PORT   server address (env QPQ_SERVER, default 127.0.0.1:7000)
  --ca-cert FILE       pin the server certificate, PEM or DER (env QPQ_CA_CERT)
  --json               one JSON object
  -h, --help           show this help`;

/** Run `qpq health`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("health", args, {
    server: { type: "string" },
    "ca-cert": { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const server = p.values.server ?? env("QPQ_SERVER") ?? "127.0.0.1:7000";
  const caPath = p.values["ca-cert"] ?? env("QPQ_CA_CERT");
  const conn = await connectServer({
    server,
    caCertPem: caPath ? await readCaCert(caPath) : undefined,
  });
  try {
    const h = await conn.call({ kind: "health" }, "health");
    const { kind: _, ...fields } = h;
    if (p.values.json) println(JSON.stringify({ server, ...fields }));
    else {
      const why = h.reason === "" ? "" : ` (${visible(h.reason)})`;
      println(`server ${visible(server)}: ${visible(h.status)}${why}`);
      println(`version ${visible(h.version)} (wire v${h.wireVersion}), up ${h.uptimeSeconds} s`);
      println(`connected clients ${h.connectedClients}, queued messages ${h.queueDepth}`);
    }
    return h.status === "ok" ? 0 : 1;
  } finally {
    await conn.close();
  }
}
