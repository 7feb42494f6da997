/**
 * `qpq ping`: measure round trips to a server over QUIC.
 *
 * @module
 */
import { env, parseCommand, println } from "./_args.ts";
import { connectServer, readCaCert } from "../client/connection.ts";
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE = `Usage: qpq ping [--server HOST:PORT] [--ca-cert FILE] [--count N] [--json]

Connect to a qpq server over QUIC and print the round-trip time of each ping.

Options:
  --server HOST:PORT   server address (env QPQ_SERVER, default 127.0.0.1:7000)
  --ca-cert FILE       pin the server certificate, PEM or DER (env QPQ_CA_CERT)
  --count N            number of pings (default 1)
  --json               one JSON object per line
  -h, --help           show this help`;

/** Run `qpq ping`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("ping", args, {
    server: { type: "string" },
    "ca-cert": { type: "string" },
    count: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const count = Number(p.values.count ?? "1");
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw new UsageError("--count must be a whole number from 1 to 1000000");
  }
  const server = p.values.server ?? env("QPQ_SERVER") ?? "127.0.0.1:7000";
  const caPath = p.values["ca-cert"] ?? env("QPQ_CA_CERT");
  const caCertPem = caPath ? await readCaCert(caPath) : undefined;
  const t0 = performance.now();
  const conn = await connectServer({ server, caCertPem });
  const connectMs = performance.now() - t0;
  try {
    const rtts: number[] = [];
    for (let i = 0; i < count; i++) {
      const { rttMs } = await conn.ping();
      rtts.push(rttMs);
      if (p.values.json) {
        println(
          JSON.stringify({ server, seq: i + 1, rttMs: round(rttMs), connectMs: round(connectMs) }),
        );
      } else {
        println(`pong from ${server}: seq=${i + 1} time=${rttMs.toFixed(2)} ms`);
      }
    }
    if (count > 1 && !p.values.json) {
      const sorted = [...rtts].sort((a, b) => a - b);
      const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
      println(
        `${count} pings: min ${sorted[0]!.toFixed(2)} / avg ${avg.toFixed(2)} / max ${
          sorted[sorted.length - 1]!.toFixed(2)
        } ms (handshake ${connectMs.toFixed(1)} ms)`,
      );
    }
  } finally {
    await conn.close();
  }
  return 0;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
