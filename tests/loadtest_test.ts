/**
 * The load tool as a user runs it (`qpq bench-load`, spawned): its real clients spread over
 * worker threads, their counts merged exactly, CPU reported apart for clients and server.
 * (The crash test drives the same runner under a server SIGKILL.)
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { runQpq } from "./_support/cli.ts";

Deno.test({
  name: "bench-load --workers 2 delivers a small load exactly once and merges the workers",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const r = await runQpq([
      "bench-load",
      "--clients",
      "8",
      "--group-size",
      "4",
      "--messages",
      "3",
      "--workers",
      "2",
      "--suite",
      "x25519",
      "--json",
    ], { timeoutMs: 120_000 });
    assertEquals(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assertEquals(report.workers, 2);
    assertEquals(report.clients, 8);
    assertEquals(report.groups, 2);
    assertEquals(report.sent, 24);
    assertEquals(report.acknowledged, 24);
    // every message reaches the 3 other members of its group, whichever worker it is on
    assertEquals(report.expectedDeliveries, 72);
    assertEquals(report.delivered, 72);
    assertEquals(report.lost, 0);
    assertEquals(report.duplicated, 0);
    assertEquals(report.errors, 0, report.firstErrors.join("; "));
    assertEquals(report.groupsOutOfStep, 0);
    assert(report.p50Ms > 0 && report.p50Ms <= report.p99Ms && report.p99Ms <= report.maxMs);
    assert(report.cpu.clientsMs > 0, "client worker threads' CPU measured");
    // thread times are counted in 10 ms ticks: a tiny run may show the server at 0
    assert(report.cpu.serverMs >= 0, "the started server's thread CPU measured");
    assert(report.cpu.serverLagMs.max >= report.cpu.serverLagMs.p99, "server lag sampled");
    assert(report.cpu.processMs >= report.cpu.clientsMs, "the process includes its workers");
    assert(r.stderr.includes("setup: 8/8 clients registered"), r.stderr);
    assert(r.stderr.includes("formed in") && r.stderr.includes("(2 client workers)"), r.stderr);
  },
});

Deno.test("bench-load refuses a bad --workers or --server-pid in one line", async () => {
  for (
    const [args, text] of [
      [["--workers", "0"], "--workers must be a whole number from 1 to 256"],
      [["--server-pid", "12"], "--server-pid needs --server"],
    ] as const
  ) {
    const r = await runQpq(["bench-load", ...args]);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert(r.stderr.includes(text), r.stderr);
  }
});

Deno.test("bench-load --help names --workers and the CPU it reports", async () => {
  const r = await runQpq(["bench-load", "--help"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.includes("--workers W"), r.stdout);
  assert(r.stdout.includes("--server-pid PID"), r.stdout);
  assert(r.stdout.includes("worker threads"), r.stdout);
});
