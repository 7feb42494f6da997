/**
 * Client bench, each group with its baseline in the same run:
 *
 * - send→recv round trip through a real in-process server (QUIC on loopback, SQLite):
 *   `QpqClient.send` then the recipient's `sync`, in a 2-member and a 100-member group,
 *   beside a bare qpq ping round trip.
 * - receive one application message: the recipient's `sync` alone (the send happens
 *   outside the timed part), in the 2-member group (baseline) and in the big group, and
 *   the bytes the recipient's store writes per received message (counted by the store:
 *   `ClientStore.bytesWritten`, every value handed to a writing SQLite statement),
 *   printed after the run.
 *
 * Baseline (issue 19), commit c5126c8 (states decoded once per run, each saved whole), one
 * run on the shared 2-core machine, QPQ_BENCH_BIG_GROUP=100,
 * `--filter "/member group|ping/"`:
 *
 * | bench                                         | c5126c8          |
 * | --------------------------------------------- | ---------------- |
 * | qpq ping round trip                           | 0.48 ms          |
 * | 2-member group: send + recipient sync         | 19.0 ms (39.5×)  |
 * | 100-member group: send + one recipient's sync | 50.4 ms (104.8×) |
 * | 2-member group: receive one                   | 9.0 ms           |
 * | 100-member group: receive one                 | 12.8 ms (1.43×)  |
 * | bytes written per received message, 2 / 100   | 4.7 / 172.0 KiB  |
 *
 * After (f74360a: a received message writes the ratchet it moved), back to back with
 * a97eab3 (= c5126c8 + the byte counter) on a busier machine, same command:
 *
 * | bench                                         | a97eab3          | f74360a          |
 * | --------------------------------------------- | ---------------- | ---------------- |
 * | qpq ping round trip                           | 1.3 ms           | 1.0 ms           |
 * | 2-member group: send + recipient sync         | 24.6 ms (19.4×)  | 45.3 ms (43.4×)  |
 * | 100-member group: send + one recipient's sync | 85.6 ms (67.3×)  | 56.7 ms (54.3×)  |
 * | 2-member group: receive one                   | 12.1 ms          | 15.7 ms          |
 * | 100-member group: receive one                 | 20.0 ms (1.65×)  | 17.5 ms (1.11×)  |
 * | bytes written per received message, 2 / 100   | 4.7 / 172.0 KiB  | 0.7 / 0.7 KiB    |
 *
 * The times are round trips and fsyncs on a shared machine (noise of ±50 % between runs);
 * the client's own cost without the network is in bench/group_states_bench.ts.
 *
 * A send without the sync before it (0b002f2: the server answers epoch_conflict when the
 * sender is behind), back to back with 0b002f2's parent c6ac402, same command (run 1); run 2
 * with QPQ_BENCH_BIG_GROUP=10, new / old / new in a row:
 *
 * | bench                                  | c6ac402 | 0b002f2 | c6ac402 | 0b002f2 (×2)  |
 * | -------------------------------------- | ------- | ------- | ------- | ------------- |
 * | qpq ping round trip                    | 0.95 ms | 0.39 ms | 1.1 ms  | 1.3 / 0.61 ms |
 * | 2-member group: send + recipient sync  | 34.9 ms | 23.1 ms | 35.2 ms | 28.5 / 37.5   |
 * | 100 (run 1) / 10 (run 2) members: same | 49.7 ms | 25.1 ms | 43.1 ms | 29.1 / 27.5   |
 * | 2-member group: receive one            | 8.6 ms  | 6.0 ms  | 10.6 ms | 8.2 / 8.4     |
 *
 * One fetch round trip fewer per send (about 5–20 ms here, within the noise of one run);
 * still 20–60× a ping: what is left is the sender's enqueue (a durable commit on the server)
 * and the recipient's fetch, decrypt, store and ack.
 * - first run: creating a local state with the default Argon2id parameters (OWASP
 *   minimum) beside the bare Argon2id derivation.
 * - REPL start: spawning `qpq repl` on an existing state until its banner line, beside
 *   spawning `qpq --version` (Deno start-up and module loading). Needs --allow-run;
 *   skipped without it.
 *
 *   deno bench --unstable-net --allow-net=127.0.0.1,localhost --allow-read --allow-write \
 *     --allow-env --allow-sys=hostname --allow-run bench/client_bench.ts
 *
 * The 100-member group: 100 accounts are registered one by one (cheap Argon2id for their
 * local state; each registration makes 21 X-Wing KeyPackages, about 1 s), the owner adds
 * 99 in one commit; only the measured recipient joins (the others' queues just fill up,
 * as for members who are offline). QPQ_BENCH_BIG_GROUP=N builds a smaller one.
 *
 * @module
 */
import { QpqClient } from "../src/client/client.ts";
import { connectServer } from "../src/client/connection.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { DEFAULT_ARGON2ID_PARAMS, deriveKeyFromPassword } from "../src/crypto/mod.ts";
import type { ClientStore } from "../src/store/client/mod.ts";
import { readUntil, runQpq, spawnQpq } from "../tests/_support/cli.ts";
import { startTestServer } from "../tests/_support/server.ts";

const FAST_KDF = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
/** Size of the big group; QPQ_BENCH_BIG_GROUP shrinks it (building 100 takes ~100 s). */
const BIG_GROUP = Math.max(3, Number(Deno.env.get("QPQ_BENCH_BIG_GROUP") ?? 100) || 100);

const ts = await startTestServer();
const dir = await Deno.makeTempDir({ prefix: "qpq-client-bench-" });

/** Each account's store: it counts the bytes it hands SQLite ({@link ClientStore.bytesWritten}). */
const stores = new Map<string, ClientStore>();

async function account(name: string): Promise<QpqClient> {
  const store = await openLocalStore(`${dir}/${name}.bin`, `pw-${name}`, {
    create: true,
    username: name,
    server: ts.addr,
    kdf: FAST_KDF,
  });
  stores.set(name, store as ClientStore);
  const c = QpqClient.create({
    store,
    password: `pw-${name}`,
    caCertPem: ts.certPem,
    acceptFrom: "anyone",
  });
  await c.register();
  return c;
}

// ---- 2-member group
const alice = await account("alice");
const bob = await account("bob");
await alice.createGroup("duo");
await alice.invite("#duo", ["bob"]);
await bob.sync();

// ---- 100-member group (built once)
const t0 = performance.now();
const owner = await account("owner");
const reader = await account("reader");
const others: string[] = [];
// one at a time: client and server share this thread, and parallel registrations starve
// the server's handshakes
for (let i = 0; i < BIG_GROUP - 2; i++) {
  // letters, not digits: m6 and m8 look alike (see src/names.ts)
  const name = `m${[...String(i)].map((d) => "abcdefghjk"[Number(d)]).join("")}`;
  const c = await account(name);
  await c.close();
  others.push(name);
}
await owner.createGroup("big");
await owner.invite("#big", ["reader", ...others]);
await reader.sync();
if (reader.members("#big").length !== BIG_GROUP) throw new Error("big group not built");
console.error(
  `built the ${BIG_GROUP}-member group in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

const ping = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
let n = 0;

Deno.bench({
  name: "qpq ping round trip (baseline)",
  group: "send→recv",
  baseline: true,
  async fn() {
    await ping.ping();
  },
});

Deno.bench({
  name: "2-member group: send + recipient sync",
  group: "send→recv",
  async fn() {
    await alice.send("#duo", `message ${n++}`);
    if ((await bob.sync()) !== 1) throw new Error("not received");
  },
});

Deno.bench({
  name: `${BIG_GROUP}-member group: send + one recipient's sync`,
  group: "send→recv",
  async fn() {
    await owner.send("#big", `message ${n++}`);
    if ((await reader.sync()) !== 1) throw new Error("not received");
  },
});

// ---- receive one application message: the recipient's sync alone
const perMessage = new Map<string, { n: number; bytes: number }>();

async function receiveOne(
  b: Deno.BenchContext,
  from: QpqClient,
  to: QpqClient,
  group: string,
): Promise<void> {
  await from.send(group, `message ${n++}`);
  const tally = stores.get(to.username)!;
  const before = tally.bytesWritten;
  b.start();
  const got = await to.sync();
  b.end();
  if (got !== 1) throw new Error("not received");
  const m = perMessage.get(group) ?? { n: 0, bytes: 0 };
  m.n++;
  m.bytes += tally.bytesWritten - before;
  perMessage.set(group, m);
}

Deno.bench({
  name: "2-member group: receive one application message (baseline)",
  group: "receive one",
  baseline: true,
  async fn(b) {
    await receiveOne(b, alice, bob, "#duo");
  },
});

Deno.bench({
  name: `${BIG_GROUP}-member group: receive one application message`,
  group: "receive one",
  async fn(b) {
    await receiveOne(b, owner, reader, "#big");
  },
});

// ---- first run: Argon2id with the default parameters
const salt = crypto.getRandomValues(new Uint8Array(16));
let fresh = 0;

Deno.bench({
  name: "Argon2id derivation, default params (baseline)",
  group: "first run",
  baseline: true,
  n: 10,
  warmup: 1,
  async fn() {
    await deriveKeyFromPassword("correct horse battery staple", salt, DEFAULT_ARGON2ID_PARAMS);
  },
});

Deno.bench({
  name: "create a local state (identity + Argon2id + SQLite), default params",
  group: "first run",
  n: 10,
  warmup: 1,
  async fn() {
    const store = await openLocalStore(`${dir}/fresh${fresh++}.bin`, "correct horse", {
      create: true,
      username: "fresh",
      server: ts.addr,
    });
    await store.close();
  },
});

// ---- REPL start to banner (real processes)
const canRun = Deno.permissions.querySync({ name: "run" }).state === "granted";
const cert = `${dir}/server-cert.pem`;
await Deno.writeTextFile(cert, ts.certPem);
const replArgs = [
  "--username",
  "repluser",
  "--server",
  ts.addr,
  "--ca-cert",
  cert,
  "--state",
  `${dir}/repluser.bin`,
];
const replEnv = { QPQ_PASSWORD: "pw-repl" };
if (canRun) {
  const first = await runQpq(["register-user", ...replArgs], { env: replEnv });
  if (first.code !== 0) throw new Error(`register-user failed: ${first.stderr}`);
}

Deno.bench({
  name: "spawn qpq --version (baseline)",
  group: "repl start",
  baseline: true,
  ignore: !canRun,
  n: 5,
  warmup: 1,
  async fn() {
    const r = await runQpq(["--version"]);
    if (r.code !== 0) throw new Error(r.stderr);
  },
});

Deno.bench({
  name: "spawn qpq repl (existing state, default Argon2id) until its banner",
  group: "repl start",
  ignore: !canRun,
  n: 5,
  warmup: 1,
  async fn(b) {
    b.start();
    const child = spawnQpq(["repl", ...replArgs], { env: replEnv, stdin: true });
    const { reader } = await readUntil(child.stdout, (l) => l.startsWith("qpq repl: "));
    b.end();
    await child.stdin.close();
    while (!(await reader.read()).done) { /* drain */ }
    await child.stderr.cancel();
    await child.status;
  },
});

globalThis.addEventListener("unload", () => {
  for (const [group, m] of perMessage) {
    console.error(
      `bytes written to the recipient's store per received message in ${group}: ` +
        `${(m.bytes / m.n / 1024).toFixed(1)} KiB (${m.n} messages)`,
    );
  }
});

globalThis.addEventListener("unload", () => {
  // the bench runner exits after the last bench; nothing to await here
  try {
    Deno.removeSync(dir, { recursive: true });
    Deno.removeSync(ts.dataDir, { recursive: true });
  } catch { /* best effort */ }
});
