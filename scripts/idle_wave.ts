/**
 * Waves of idle connections against a fresh qpq server on 127.0.0.1 (loopback only): the
 * server runs in a child process (this script with `--serve`), which reports its RSS and
 * V8 heap; the parent opens N connections that ping once and then only send QUIC
 * keep-alives, measures at the peak, closes them all, waits until the server counts none,
 * and measures again. Two waves, so a leak shows as growth and allocator retention as a
 * plateau. Bounded: at most 10,000 connections, 50 opened at a time.
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
import { startTestServer } from "../tests/_support/server.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";

const MAX_COUNT = 10_000;
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    count: { type: "string" },
    defaults: { type: "boolean" },
    serve: { type: "boolean" },
  },
});
const count = Number(args.count ?? 2000);
if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
  throw new Error(`--count must be a whole number from 1 to ${MAX_COUNT}`);
}

const MB = 1024 * 1024;
const mb = (n: number) => Math.round(n / MB * 10) / 10;

/** What the server child reports per line of stdin. */
interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  connectedClients: number;
}

if (args.serve) await serve();
else await drive();

/** Child: a server on 127.0.0.1:0; each stdin line is answered with a {@link Memory} line. */
async function serve() {
  const file: Record<string, number | string> = args.defaults ? {} : {
    max_connections: Math.max(10_000, count + 10),
    max_unauthenticated_connections: count + 10,
    max_unauthenticated_per_source: count + 10,
    login_deadline_ms: 120_000,
  };
  const ts = await startTestServer({ file: { ...file, health_listen: "127.0.0.1:0" } });
  const health = `http://127.0.0.1:${ts.server.healthAddr!.port}/health`;
  const out = (s: string) => Deno.stdout.write(new TextEncoder().encode(s + "\n"));
  await out(JSON.stringify({ addr: ts.addr, certPem: ts.certPem }));
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  for await (const chunk of lines) {
    for (const cmd of chunk.split("\n").filter(Boolean)) {
      if (cmd === "quit") {
        await ts.close();
        return;
      }
      // "gc": collect first (the heap figure is then what is live, not what is garbage)
      if (cmd === "gc") (globalThis as { gc?: () => void }).gc?.();
      const m = Deno.memoryUsage();
      const h = await (await fetch(health)).json();
      await out(JSON.stringify({ ...m, connectedClients: h.connectedClients } as Memory));
    }
  }
}

/** Parent: start the child, run two waves, print the figures. */
async function drive() {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--v8-flags=--expose-gc",
      "--unstable-net",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys=hostname,networkInterfaces",
      new URL(import.meta.url).pathname,
      "--serve",
      `--count=${count}`,
      ...(args.defaults ? ["--defaults"] : []),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  let buf = "";
  const line = async (): Promise<string> => {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("server child exited");
      buf += value;
    }
    const i = buf.indexOf("\n");
    const l = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return l;
  };
  const ask = async (cmd: "mem" | "gc"): Promise<Memory> => {
    await writer.write(new TextEncoder().encode(cmd + "\n"));
    return JSON.parse(await line());
  };
  const show = (m: Memory) =>
    `RSS ${mb(m.rss)} MB (V8 heap used ${mb(m.heapUsed)} of ${mb(m.heapTotal)}, external ${
      mb(m.external)
    })`;
  const { addr, certPem } = JSON.parse(await line()) as { addr: string; certPem: string };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let lastRefusal = "";
  const open = async (): Promise<ServerConnection | undefined> => {
    let c: ServerConnection | undefined;
    try {
      c = await connectServer({ server: addr, caCertPem: certPem, timeoutMs: 30_000 });
      await c.ping();
      return c;
    } catch (e) {
      lastRefusal = (e as Error).message; // refused (a limit) or closed
      await c?.close();
      return undefined;
    }
  };

  const wave = async (label: string) => {
    const t0 = performance.now();
    const held: ServerConnection[] = [];
    let refused = 0;
    for (let i = 0; i < count; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, count - i) }, open));
      for (const c of batch) c ? held.push(c) : refused++;
    }
    const openS = (performance.now() - t0) / 1000;
    const peak = await ask("mem");
    console.log(
      `${label}: ${held.length} held (${peak.connectedClients} counted), ${refused} refused, ` +
        `opened in ${openS.toFixed(1)} s; at peak ${show(peak)}`,
    );
    if (refused > 0) console.log(`  last refusal: ${lastRefusal}`);
    await Promise.all(held.map((c) => c.close()));
    let after = await ask("mem");
    for (let i = 0; i < 100 && after.connectedClients > 0; i++) {
      await sleep(100);
      after = await ask("mem");
    }
    await sleep(2_000);
    after = await ask("gc");
    console.log(`  all closed (${after.connectedClients} counted), after a GC: ${show(after)}`);
    return { held: held.length, peak, after };
  };

  try {
    (await open())?.close(); // warm up the code paths once
    await sleep(1_000);
    const before = await ask("gc");
    console.log(`server on ${addr}: before ${show(before)}`);
    const first = await wave("wave 1");
    await wave("wave 2");
    await sleep(5_000);
    const settled = await ask("gc");
    const per = (m: number) => first.held > 0 ? (m / 1024 / first.held).toFixed(0) : "-";
    console.log(
      `per held connection at peak: RSS ≈ ${per(first.peak.rss - before.rss)} KB, V8 heap ≈ ${
        per(first.peak.heapUsed - before.heapUsed)
      } KB; 5 s after wave 2: ${show(settled)}`,
    );
  } finally {
    await writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await writer.close().catch(() => {});
    await child.status;
  }
}
