/**
 * Crash tests: the server is SIGKILLed under load and restarted, and a client process is
 * SIGKILLed mid-send. Afterwards every acknowledged message reached every recipient
 * exactly once and the groups are still in step. Bounded size here; full size with
 * QPQ_CRASH_FULL=1 (see docs/results.md).
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { runQpq, spawnQpq, startServerProcess } from "./_support/cli.ts";
import { formatReport, runLoad } from "../src/loadtest/runner.ts";

const FULL = Deno.env.get("QPQ_CRASH_FULL") === "1";

Deno.test({
  name: "server SIGKILL under load: acknowledged messages delivered exactly once, groups in step",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qpq-crash-" });
    let srv = await startServerProcess(dir, "127.0.0.1:0");
    const certPem = await Deno.readTextFile(`${dir}/server-cert.pem`);
    const addr = srv.addr;
    let kills = 0;
    try {
      const report = await runLoad({
        server: addr,
        caCertPem: certPem,
        authToken: "devtoken",
        clients: FULL ? 200 : 12,
        groupSize: FULL ? 10 : 4,
        messages: FULL ? 50 : 12,
        rate: FULL ? 2000 : 150,
        workers: 2, // the groups split over two client threads, the kill seen by both
        suite: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
        drainMs: 60_000,
        midway: async () => {
          await new Promise((r) => setTimeout(r, Math.random() * 200));
          await srv.kill();
          kills++;
          srv = await startServerProcess(dir, addr);
        },
      });
      console.log(formatReport(report));
      assertEquals(kills, 1);
      assert(report.reconnects > 0, "clients must have reconnected after the kill");
      assertEquals(report.acknowledged, report.sent, "every send is eventually acknowledged");
      assertEquals(report.lost, 0, "lost");
      assertEquals(report.duplicated, 0, "duplicated");
      assertEquals(report.groupsOutOfStep, 0, "groups out of step");
      assertEquals(report.errors, 0, report.firstErrors.join("; "));
    } finally {
      await srv.kill();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "client SIGKILL mid-send: the message is delivered at most once, and exactly once when stored",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qpq-crash-" });
    const srv = await startServerProcess(`${dir}/server`, "127.0.0.1:0");
    const common = ["--server", srv.addr, "--ca-cert", `${dir}/server/server-cert.pem`];
    const as = (user: string) => ({ cwd: dir, env: { QPQ_PASSWORD: `pw-${user}-secret` } });
    const aliceHistory = () =>
      runQpq(["history", "@bob", "--count", "100", "--username", "alice", ...common], as("alice"));
    try {
      for (const u of ["alice", "bob"]) {
        const r = await runQpq(["register-user", "--username", u, ...common], as(u));
        assertEquals(r.code, 0, r.stderr);
      }
      const dm = await runQpq(["dm", "bob", "--username", "alice", ...common], as("alice"));
      assertEquals(dm.code, 0, dm.stderr);
      // alice is a stranger to bob until he accepts her DM
      const join = await runQpq(["join", "--username", "bob", ...common], as("bob"));
      assertEquals(join.code, 0, join.stderr);
      // How long one whole send takes on this machine now: the kills are spread over that
      // span (early ones cut the send off, late ones let it finish), whatever the load.
      const t0 = performance.now();
      const whole = await runQpq(
        ["send", "--to", "bob", "warm-up", "--username", "alice", ...common],
        as("alice"),
      );
      assertEquals(whole.code, 0, whole.stderr);
      const span = performance.now() - t0;
      // Kills are spread over 1.3 × the warm-up span; on a loaded machine (CI on 2 cores)
      // every one of them can land before the message is stored, so extra rounds follow,
      // each waiting longer, until one send finished or was stored (at most 6 more).
      const planned = FULL ? 20 : 4;
      let rounds = planned;
      let killedRounds = 0;
      let finishedRounds = 0;
      for (let k = 0; k < rounds; k++) {
        const child = spawnQpq([
          "send",
          "--to",
          "bob",
          `crash-${k}`,
          "--username",
          "alice",
          ...common,
        ], as("alice"));
        const wait = k < planned
          ? span * 1.3 * (k + 0.5) / planned
          : span * (1.3 + 0.7 * (k - planned + 1));
        await new Promise((r) => setTimeout(r, wait));
        try {
          child.kill("SIGKILL");
        } catch { /* already finished */ }
        const out = await child.output();
        if (out.signal === "SIGKILL") killedRounds++;
        else finishedRounds++;
        if (k === rounds - 1 && finishedRounds === 0 && rounds < planned + 6) {
          const h = await aliceHistory();
          if (!h.stdout.includes(" crash-")) rounds++;
        }
      }
      // A run in which every send finished before the kill tests nothing.
      assert(killedRounds > 0, `no send of ${rounds} was cut off by SIGKILL`);
      // any later command of alice's flushes her outbox first
      const flush = await runQpq(["recv", "--username", "alice", ...common], as("alice"));
      assertEquals(flush.code, 0, flush.stderr);
      const got = await runQpq(["recv", "--username", "bob", ...common], as("bob"));
      assertEquals(got.code, 0, got.stderr);
      const again = await runQpq(["recv", "--username", "bob", ...common], as("bob"));
      assertEquals(again.stdout, "", "a second recv repeats nothing");
      const sentHistory = await aliceHistory();
      // Whole lines only: `crash-1` must not match `crash-10`.
      // (without the receipt marks of our own messages: ✓ sent … ✓✓✓ read)
      const historyLines = sentHistory.stdout.split("\n").map((l) => l.replace(/ ✓{1,3}$/, ""));
      let delivered = 0;
      for (let k = 0; k < rounds; k++) {
        const line = `[alice] crash-${k}`;
        const n = got.stdout.split("\n").filter((l) => l === line).length;
        assert(n <= 1, `crash-${k} delivered ${n} times`);
        delivered += n;
        const stored = historyLines.some((l) => l.endsWith(` crash-${k}`) || l === line);
        assertEquals(
          n,
          stored ? 1 : 0,
          `crash-${k}: stored by alice=${stored}, delivered ${n} times`,
        );
      }
      assert(delivered > 0, `none of ${rounds} messages arrived: the test proves nothing`);
    } finally {
      await srv.kill();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
