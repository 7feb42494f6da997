/**
 * `qpq bench-load`: the load tool.
 *
 * @module
 */
import { env, eprintln, parseCommand, println } from "./_args.ts";
import { readCaCert } from "../client/connection.ts";
import { formatReport, type LoadOptions, runLoad, type ServerSample } from "../loadtest/runner.ts";
import { procCpuMs } from "../loadtest/_cpu.ts";
import { UsageError } from "../errors.ts";
import type { MlsSuiteName } from "../mls/mod.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq bench-load [--server HOST:PORT --ca-cert FILE] [--clients N] [--group-size G]
                      [--messages M] [--rate R] [--workers W] [--suite xwing|x25519]

Run N real clients (the client a user runs, one QUIC connection each, in MLS groups of G
members, with its local state in memory) sending M messages each, and report delivered
messages/s, send-to-receive latency percentiles (from the call to send to the message
shown, decrypted, at the receiver), errors, and — checked by message id — lost and
duplicated messages. Without --server it starts a server on its own thread with a fresh
SQLite database in a temporary directory. Accounts are registered with cheap OPAQUE key
stretching (the default would cost about 1.8 s of CPU per account); everything after
that is the client as users run it. Every receiver decrypts every message: --decrypt
(which chose the receivers of the old simulated client) is gone.

The clients run on W worker threads (whole groups to each), so one JavaScript thread is
not the ceiling. CPU time from the first send to the end of the drain is reported for the
clients (their worker threads), the server (its thread when started here, or the process
given by --server-pid, from /proc) and the whole load process; for a server started
here also how late its event loop ran (a synchronous commit stalls it without CPU).

Options:
  --server HOST:PORT   target an existing server (registration needs --auth-token)
  --ca-cert FILE       its certificate
  --auth-token TOKEN   invite token (env QPQ_AUTH_TOKEN, default devtoken)
  --clients N          clients (default 100)
  --group-size G       members per group; 2 = DM-shaped (default 10)
  --messages M         messages per client (default 20)
  --rate R             total messages/s to offer, 0 = closed loop (default 0)
  --workers W          client worker threads (default: the number of cores; at most one
                       per group; the clients need about 3× the server's CPU per delivery)
  --server-pid PID     with --server: the server's process id, to report its CPU time
                       (Deno reads /proc only with --allow-all: deno run -A main.ts …)
  --suite SUITE        xwing (default) or x25519
  --fsync on|off       the started server fsyncs every commit (on, default) or not
  --json               the report as one JSON object
  -h, --help           show this help`;

function int(v: string | undefined, def: number, name: string, min: number, max: number): number {
  const n = v === undefined ? def : Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/** Start a server on a worker thread; resolves with its address and certificate. */
export async function startWorkerServer(
  dataDir: string,
  fsync = true,
): Promise<
  { addr: string; certPem: string; sample(): Promise<ServerSample>; close(): Promise<void> }
> {
  const worker = new Worker(new URL("../loadtest/server_worker.ts", import.meta.url), {
    type: "module",
  });
  const next = () =>
    new Promise<Record<string, string | number | undefined>>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
  const started = next();
  worker.postMessage({ type: "start", dataDir, fsync });
  const s = await started;
  if (s.type !== "started") throw new UsageError(`Cannot start the server: ${s.message}`);
  return {
    addr: String(s.addr),
    certPem: String(s.certPem),
    async sample() {
      const reply = next();
      worker.postMessage({ type: "cpu" });
      const r = await reply;
      return {
        cpuMs: Number(r.ms),
        lagMs: { p99: Number(r.lagP99Ms), max: Number(r.lagMaxMs) },
      };
    },
    async close() {
      const closed = next();
      worker.postMessage({ type: "close" });
      await closed;
      worker.terminate();
    },
  };
}

/** Run `qpq bench-load`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("bench-load", args, {
    server: { type: "string" },
    "ca-cert": { type: "string" },
    "auth-token": { type: "string" },
    clients: { type: "string" },
    "group-size": { type: "string" },
    messages: { type: "string" },
    rate: { type: "string" },
    workers: { type: "string" },
    "server-pid": { type: "string" },
    suite: { type: "string" },
    fsync: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const v = p.values;
  const clients = int(v.clients, 100, "clients", 2, 20_000);
  const groupSize = int(v["group-size"], 10, "group-size", 2, 1000);
  if (groupSize > clients) throw new UsageError("--group-size cannot exceed --clients");
  const suites: Record<string, MlsSuiteName> = {
    xwing: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
    x25519: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
  };
  const suite = suites[v.suite ?? "xwing"];
  if (!suite) throw new UsageError("--suite takes xwing or x25519");
  const cores = navigator.hardwareConcurrency || 1;
  const workers = int(v.workers, cores, "workers", 1, 256);
  if (v["server-pid"] !== undefined && !v.server) {
    throw new UsageError("--server-pid needs --server (a started server is measured itself)");
  }
  const serverPid = v["server-pid"] === undefined
    ? undefined
    : int(v["server-pid"], 0, "server-pid", 1, 2 ** 31 - 1);
  let target: { addr: string; certPem: string | undefined; close?: () => Promise<void> };
  let serverProbe: LoadOptions["serverProbe"];
  let ownDir: string | undefined;
  if (v.server) {
    const ca = v["ca-cert"] ?? env("QPQ_CA_CERT");
    target = { addr: v.server, certPem: ca ? await readCaCert(ca) : undefined };
    if (serverPid !== undefined) {
      if (procCpuMs(serverPid) === undefined) {
        throw new UsageError(
          `Cannot read /proc/${serverPid}/stat (Deno reads /proc only with --allow-all: ` +
            `deno run -A main.ts bench-load …)`,
        );
      }
      serverProbe = {
        sample: () => Promise.resolve({ cpuMs: procCpuMs(serverPid) }),
        source: `process ${serverPid}, /proc/${serverPid}/stat`,
      };
    } else {
      serverProbe = {
        sample: () => Promise.resolve({ cpuMs: undefined }),
        source: "not measured (give --server-pid)",
      };
    }
  } else {
    const dir = ownDir = await Deno.makeTempDir({ prefix: "qpq-load-" });
    if (v.fsync !== undefined && !["on", "off"].includes(v.fsync)) {
      throw new UsageError("--fsync takes on or off");
    }
    const started = target = await startWorkerServer(dir, v.fsync !== "off");
    serverProbe = {
      sample: () => started.sample(),
      source:
        "its thread in this process (getrusage of that thread; the whole process includes it)",
    };
    eprintln(`server: started on its own thread at ${target.addr} (SQLite in ${dir})`);
  }
  try {
    const report = await runLoad({
      server: target.addr,
      caCertPem: target.certPem,
      authToken: v["auth-token"] ?? env("QPQ_AUTH_TOKEN") ?? "devtoken",
      clients,
      groupSize,
      messages: int(v.messages, 20, "messages", 1, 1_000_000),
      rate: int(v.rate, 0, "rate", 0, 10_000_000),
      suite,
      workers,
      drainMs: 30_000,
      onProgress: (line) => eprintln(line),
      ...(serverProbe ? { serverProbe } : {}),
    });
    println(v.json ? JSON.stringify(report) : formatReport(report));
    return report.lost === 0 && report.duplicated === 0 && report.errors === 0 ? 0 : 1;
  } finally {
    await target.close?.();
    if (ownDir) await Deno.remove(ownDir, { recursive: true }).catch(() => {});
  }
}
