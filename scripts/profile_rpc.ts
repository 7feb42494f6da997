/**
 * Where a round trip spends its CPU: a ping loop or a delivery loop (enqueue -> push -> ack,
 * the setup of bench/server_bench.ts) with client and server in this one process, V8's
 * sampling profiler on for the measured loop, the profile written as a `.cpuprofile` and its
 * top functions by self time printed (scripts/cpuprofile_top.ts).
 *
 *   deno run -A --unstable-net scripts/profile_rpc.ts [--mode echo|ping|deliver|deliver16] \
 *     [--n 5000] [--store sql|memory] [--out /tmp/prof/rpc.cpuprofile] [--top 30] [--profile 0]
 *
 * `--profile 0` measures wall and CPU time per operation without the profiler. `echo` is the raw QUIC echo of the benches (the baseline); `deliver16` keeps 16 deliveries in flight (as the bench's "in flight" group).
 *
 * @module
 */
import { Session } from "node:inspector/promises";
import { cpuUsage } from "node:process";
import { world } from "../bench/_delivery.ts";
import { startRawEcho } from "../bench/_echo.ts";
import { connectServer } from "../src/client/connection.ts";
import { startTestServer } from "../tests/_support/server.ts";
import { type CpuProfile, formatTop, summarize } from "./cpuprofile_top.ts";

const args: Record<string, string> = {
  mode: "ping",
  n: "5000",
  store: "sql",
  out: "/tmp/prof/rpc.cpuprofile",
  top: "30",
  profile: "1",
};
for (let i = 0; i < Deno.args.length; i += 2) {
  const k = Deno.args[i]!.replace(/^--/, "");
  if (!(k in args) || Deno.args[i + 1] === undefined) throw new Error(`Unknown option: ${k}`);
  args[k] = Deno.args[i + 1]!;
}
const n = Number(args.n);

let loop: (count: number) => Promise<void>;
let close: () => Promise<void>;
if (args.mode === "echo") {
  const echo = await startRawEcho();
  const payload = new Uint8Array(48);
  loop = async (count) => {
    for (let i = 0; i < count; i++) await echo.roundTrip(payload);
  };
  close = () => Promise.resolve(echo.close());
} else if (args.mode === "ping") {
  const qpq = await startTestServer();
  const client = await connectServer({ server: qpq.addr, caCertPem: qpq.certPem });
  loop = async (count) => {
    for (let i = 0; i < count; i++) await client.ping();
  };
  close = async () => {
    await client.close();
    await qpq.close();
  };
} else {
  const w = await world(args.store === "memory" ? "memory" : "sql");
  loop = args.mode === "deliver16"
    ? async (count) => {
      for (let i = 0; i < count / 16; i++) await w.deliverMany(16);
    }
    : async (count) => {
      for (let i = 0; i < count; i++) await w.deliver();
    };
  close = () => Promise.resolve(w.close());
}
await loop(Math.max(16, Math.floor(n / 10))); // warm up (JIT, SQLite page cache)

const profiling = args.profile !== "0";
const session = new Session();
if (profiling) {
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
}
const cpu0 = cpuUsage();
const t0 = performance.now();
await loop(n);
const wall = performance.now() - t0;
const cpu = cpuUsage(cpu0);
const perOp = (us: number) => (us / n).toFixed(1);
const figures = `${args.mode} x${n}: wall ${perOp(wall * 1000)} µs/op, CPU ${
  perOp(cpu.user + cpu.system)
} µs/op (user ${perOp(cpu.user)}, system ${perOp(cpu.system)}; profiler ${
  profiling ? "on" : "off"
})`;
if (profiling) {
  const { profile } = await session.post("Profiler.stop");
  await Deno.mkdir(new URL(".", `file://${args.out!}`).pathname, { recursive: true });
  await Deno.writeTextFile(args.out!, JSON.stringify(profile));
  console.log(
    `${figures}\nprofile: ${args.out!}\n` +
      formatTop(summarize(profile as unknown as CpuProfile), Number(args.top)),
  );
} else {
  console.log(figures);
}
await close();
