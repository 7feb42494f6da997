/**
 * A wave of idle connections against a fresh `qpq server` on 127.0.0.1 (loopback only):
 * start the server, measure its RSS, open N connections that ping once and then only send
 * QUIC keep-alives, measure at the peak, close them all, and measure again (twice, with a
 * second wave between, so a leak shows as growth and allocator retention as a plateau).
 *
 * ```
 * deno run --unstable-net --allow-net=127.0.0.1 --allow-read --allow-write --allow-run \
 *   --allow-env scripts/idle_wave.ts [--count 2000] [--defaults]
 * ```
 *
 * By default the server is configured so one source may hold the whole wave (per-source
 * budget and share raised to N, login deadline 120 s): that measures memory per
 * connection. With `--defaults` it runs with the shipped limits, showing how many idle
 * connections one address can hold (the per-source budget).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startServerProcess } from "../tests/_support/cli.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";

const MAX_COUNT = 10_000;
const { values: args } = parseArgs({
  args: Deno.args,
  options: { count: { type: "string" }, defaults: { type: "boolean" } },
});
const count = Number(args.count ?? 2000);
if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
  throw new Error(`--count must be a whole number from 1 to ${MAX_COUNT}`);
}

const dir = await Deno.makeTempDir({ prefix: "qpq-idle-wave-" });
const config = args.defaults ? "" : [
  `max_unauthenticated_connections = ${count + 10}`,
  `max_connections = ${Math.max(10_000, count + 10)}`,
  `max_unauthenticated_per_source = ${count + 10}`,
  `login_deadline_ms = 120000`,
].join("\n");
await Deno.writeTextFile(`${dir}/qpq.toml`, `health_listen = "127.0.0.1:0"\n${config}\n`);
const server = await startServerProcess(`${dir}/data`, "127.0.0.1:0", {
  extra: ["--config", `${dir}/qpq.toml`],
  env: { QPQ_LOG: "error" },
});
const pid = server.child.pid;
const certPem = await Deno.readTextFile(`${dir}/data/cert.pem`).catch(() => undefined);

/** The server's resident set size in MB (/proc). */
async function rssMb(): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return Math.round(kb / 102.4) / 10;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const open = async (): Promise<ServerConnection | undefined> => {
  try {
    const c = await connectServer({ server: server.addr, caCertPem: certPem, timeoutMs: 30_000 });
    try {
      await c.ping();
      return c;
    } catch {
      await c.close();
      return undefined; // refused (a limit) or closed
    }
  } catch {
    return undefined;
  }
};

/** One wave: open `count` connections 50 at a time, hold them, close them. */
async function wave(label: string) {
  const t0 = performance.now();
  const held: ServerConnection[] = [];
  let refused = 0;
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, count - i) }, open));
    for (const c of batch) c ? held.push(c) : refused++;
  }
  const openS = (performance.now() - t0) / 1000;
  await sleep(1_000);
  const peak = await rssMb();
  await Promise.all(held.map((c) => c.close()));
  await sleep(3_000);
  const after = await rssMb();
  console.log(
    `${label}: ${held.length} held, ${refused} refused, opened in ${openS.toFixed(1)} s; ` +
      `RSS at peak ${peak} MB, 3 s after closing ${after} MB`,
  );
  return { held: held.length, peak, after };
}

try {
  // warm up the code paths once, so "before" is a server that has served a connection
  (await open())?.close();
  await sleep(1_000);
  const before = await rssMb();
  console.log(`server pid ${pid} on ${server.addr}: RSS before ${before} MB`);
  const first = await wave("wave 1");
  const second = await wave("wave 2");
  await sleep(5_000);
  const settled = await rssMb();
  const perConn = first.held > 0 ? ((first.peak - before) * 1024 / first.held).toFixed(0) : "-";
  console.log(
    `per held connection ≈ ${perConn} KB at peak; after two waves and 5 s more: ${settled} MB ` +
      `(before ${before}, wave 2 peak ${second.peak})`,
  );
} finally {
  await server.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
