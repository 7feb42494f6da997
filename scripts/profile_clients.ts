/**
 * Where the load tool's real clients spend their CPU: one shard of clients on this thread
 * (the server on a worker thread, as `deno task load` runs it), V8's sampling profiler on
 * from "go" to the end of the drain, the profile written as a `.cpuprofile` (Chrome
 * DevTools format) and its top functions by self time printed (scripts/cpuprofile_top.ts).
 *
 *   deno run -A --unstable-net scripts/profile_clients.ts [--clients 20] [--group-size 10] \
 *     [--messages 20] [--out /tmp/prof/clients.cpuprofile] [--top 25]
 *
 * The client CPU per delivery it prints is this thread's CPU time over the profiled window
 * divided by the deliveries (what the load tool reports as "CPU, clients"); the profiler's
 * own overhead is included.
 *
 * @module
 */
import { Session } from "node:inspector/promises";
import { runShard } from "../src/loadtest/_shard.ts";
import { threadCpuMs } from "../src/loadtest/_cpu.ts";
import { type CpuProfile, formatTop, summarize } from "./cpuprofile_top.ts";

const args: Record<string, string> = {
  clients: "20",
  "group-size": "10",
  messages: "20",
  out: "/tmp/prof/clients.cpuprofile",
  top: "25",
  suite: "xwing",
};
for (let i = 0; i < Deno.args.length; i += 2) {
  const k = Deno.args[i]!.replace(/^--/, "");
  if (!(k in args) || Deno.args[i + 1] === undefined) throw new Error(`Unknown option: ${k}`);
  args[k] = Deno.args[i + 1]!;
}
const groupSize = Number(args["group-size"]!);
const groups = Math.floor(Number(args.clients) / groupSize);

const dataDir = await Deno.makeTempDir({ prefix: "qpq-profile-" });
const server = new Worker(new URL("../src/loadtest/server_worker.ts", import.meta.url), {
  type: "module",
});
const started = await new Promise<{ addr: string; certPem: string }>((resolve, reject) => {
  server.onmessage = (e) => e.data.type === "started" ? resolve(e.data) : reject(e.data);
  server.postMessage({ type: "start", dataDir, fsync: true });
});

const session = new Session();
session.connect();
await session.post("Profiler.enable");
await session.post("Profiler.setSamplingInterval", { interval: 100 });
let cpu0 = 0;
let summary = "";
await runShard({
  server: started.addr,
  caCertPem: started.certPem,
  authToken: "devtoken",
  groupIndices: Array.from({ length: groups }, (_, g) => g),
  totalGroups: groups,
  groupSize,
  messages: Number(args.messages),
  rate: 0,
  suite: args.suite === "x25519"
    ? "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
    : "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
  drainMs: 3000,
  prefix: `p${Date.now().toString(36)}`,
}, {
  progress: () => {},
  ready: async () => {
    await session.post("Profiler.start");
    cpu0 = threadCpuMs();
  },
  finished: async (report) => {
    const cpu = threadCpuMs() - cpu0;
    const { profile } = await session.post("Profiler.stop");
    await Deno.mkdir(new URL(".", `file://${args.out!}`).pathname, { recursive: true });
    await Deno.writeTextFile(args.out!, JSON.stringify(profile));
    summary = `deliveries ${report.delivered}/${report.expectedDeliveries}, lost ` +
      `${report.expectedDeliveries - report.delivered}, duplicated ${report.duplicated}, ` +
      `errors ${report.errors}${report.firstErrors.length ? ` (${report.firstErrors[0]})` : ""}\n` +
      `client CPU ${(cpu / 1000).toFixed(2)} s, ${
        (cpu / Math.max(1, report.delivered)).toFixed(3)
      } ` +
      `ms per delivery (profiler on), ${
        (cpu / Math.max(1, report.sent)).toFixed(3)
      } ms per sent\n` +
      `profile: ${args.out!}\n` +
      formatTop(summarize(profile as unknown as CpuProfile), Number(args.top));
  },
});
console.log(summary);
server.postMessage({ type: "close" });
await new Promise<void>((r) => {
  server.onmessage = (e) => e.data.type === "closed" && r();
});
server.terminate();
await Deno.remove(dataDir, { recursive: true });
