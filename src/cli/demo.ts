/**
 * `qpq demo`: the quick start. Starts a server on loopback with its own data directory
 * (generating a certificate on first start), connects to it over QUIC with that
 * certificate pinned, and prints round-trip times.
 *
 * @module
 */
import { parseCommand, println } from "./_args.ts";
import { resolveConfig, startServer } from "../server/mod.ts";
import { createServices } from "../server/services.ts";
import { connectServer } from "../client/connection.ts";
import { formatHostPort } from "../transport/quic.ts";
import { createLogger } from "../log.ts";
import { UsageError } from "../errors.ts";
import { runGroupDemo } from "./_group_demo.ts";

/** Usage text. */
export const USAGE = `Usage: qpq demo [--data-dir DIR] [--pings N]

Start a qpq server on 127.0.0.1 (random port) with data in DIR (default ./data-demo),
connect to it over QUIC pinning its certificate, print ping round-trip times, then
run the two-party group demo (as qpq demo-group) against it.

Options:
  --data-dir DIR   server data directory (default ./data-demo)
  --pings N        number of pings (default 5)
  -h, --help       show this help`;

/** Run `qpq demo`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("demo", args, {
    "data-dir": { type: "string" },
    pings: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const pings = Number(p.values.pings ?? "5");
  if (!Number.isInteger(pings) || pings < 1 || pings > 10_000) {
    throw new UsageError("--pings must be a whole number from 1 to 10000");
  }
  const config = resolveConfig(
    { listen: "127.0.0.1:0", dataDir: p.values["data-dir"] ?? "data-demo" },
    {},
    {},
  );
  const server = await startServer(config, {
    services: createServices,
    log: createLogger({ level: "warn" }),
  });
  const addr = formatHostPort(server.addr);
  println(`server: listening on ${addr}`);
  println(
    `server: certificate ${server.certificate.certPath} (${
      server.certificate.createdNow ? "generated now" : "reused"
    })`,
  );
  println(`server: SHA-256 fingerprint ${server.certificate.fingerprint}`);
  try {
    const t0 = performance.now();
    const conn = await connectServer({ server: addr, caCertPem: server.certificate.certPem });
    println(
      `client: QUIC + TLS 1.3 handshake with pinned certificate in ${
        (performance.now() - t0).toFixed(1)
      } ms`,
    );
    try {
      const rtts: number[] = [];
      for (let i = 1; i <= pings; i++) {
        const { rttMs } = await conn.ping();
        rtts.push(rttMs);
        println(`client: ping ${i}: round trip ${rttMs.toFixed(3)} ms`);
      }
      const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
      println(`client: ${pings} pings, average round trip ${avg.toFixed(3)} ms`);
    } finally {
      await conn.close();
    }
    println("");
    println("group demo (two clients, MLS over the server):");
    const dir = await Deno.makeTempDir({ prefix: "qpq-demo-" });
    try {
      await runGroupDemo({
        server: addr,
        caCertPem: server.certificate.certPem,
        dir,
        print: (line) => println(line ? `  ${line}` : ""),
      });
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  } finally {
    await server.close();
  }
  println("server: stopped");
  return 0;
}
