/**
 * Storage failures seen and survived: a server whose data dir fills up (a small tmpfs) logs
 * the failure once, reports `degraded` over HTTP and QUIC, keeps serving reads, answers
 * sends with `storage_full` (the client keeps the message queued), and is `ok` again and
 * delivers once space is back.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq } from "./_support/cli.ts";
import { startTestServer } from "./_support/server.ts";
import { fillDisk, withTmpfs } from "./_support/tmpfs.ts";
import { createLogger } from "../src/log.ts";

/** Poll `probe` (event-free: the server has no push for health) until it holds, bounded. */
async function waitFor(what: string, probe: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("disk full: logged once, health degraded (HTTP 503, qpq health), send stays queued, reads go on; space back: ok, delivered", async () => {
  await withTmpfs(8 << 20, async ({ dir }) => {
    const logLines: Record<string, unknown>[] = [];
    const log = createLogger({ level: "info", write: (l) => logLines.push(JSON.parse(l)) });
    const ts = await startTestServer({
      dataDir: `${dir}/data`,
      file: { health_listen: "127.0.0.1:0" },
      log,
    });
    const home = await Deno.makeTempDir({ prefix: "qpq-full-clients-" });
    try {
      await Deno.writeTextFile(`${home}/ca.pem`, ts.certPem);
      const qpq = (user: string, ...args: string[]) =>
        runQpq([...args, "--username", user], {
          cwd: home,
          env: { QPQ_SERVER: ts.addr, QPQ_CA_CERT: `${home}/ca.pem`, QPQ_PASSWORD: `pw-${user}` },
        });
      const ok = async (user: string, ...args: string[]) => {
        const r = await qpq(user, ...args);
        assertEquals(r.code, 0, `${user} ${args.join(" ")}: ${r.stderr}`);
        return r;
      };
      const health = async () => {
        const res = await fetch(`http://127.0.0.1:${ts.server.healthAddr!.port}/health`);
        return { status: res.status, body: await res.json() };
      };
      for (const u of ["alice", "bob"]) await ok(u, "register-user");
      await ok("alice", "send", "--to", "bob", "first");
      await ok("bob", "accept", "alice");
      await ok("alice", "send", "--to", "bob", "before the disk filled");
      assertEquals((await health()).status, 200);

      const filled = await fillDisk(`${dir}/filler`);
      assert(filled > 0);

      // a send: refused with storage_full, kept queued, one honest line, no "sent"
      const full = await qpq("alice", "send", "--to", "bob", "while the disk was full");
      assertEquals(full.code, 0, full.stderr);
      assertEquals(full.stdout, "", "never 'sent' while the server could not store it");
      assertEquals(
        full.stderr,
        "qpq: warning: Message kept in the queue: the server's disk is full; it will be sent when the server has space\n",
      );
      const who = await ok("alice", "whoami", "--json");
      assertEquals(JSON.parse(who.stdout).queued, 1, "the message is still queued");

      // health: degraded with the reason, HTTP 503 and `qpq health` exit 1
      const h = await health();
      assertEquals(h.status, 503);
      assertEquals(h.body.status, "degraded");
      assertEquals(h.body.reason, "storage: disk full");
      const qh = await runQpq(["health", "--server", ts.addr, "--ca-cert", `${home}/ca.pem`]);
      assertEquals(qh.code, 1, qh.stderr);
      assertStringIncludes(qh.stdout, `server ${ts.addr}: degraded (storage: disk full)`);

      // reads go on: bob fetches what was stored before (its ack cannot be stored: no matter)
      const read = await ok("bob", "recv");
      assertStringIncludes(read.stdout, "before the disk filled");
      // a second refused send: counted, not logged again
      const again = await qpq("alice", "send", "--to", "bob", "still full");
      assertEquals(again.code, 0, again.stderr);

      // space back: health turns ok by itself (a probe write), the queue goes out
      await Deno.remove(`${dir}/filler`);
      await waitFor("health ok", async () => (await health()).status === 200);
      assertEquals((await health()).body.status, "ok");
      await ok("alice", "recv"); // any command that reaches the server sends the queue
      assertEquals(JSON.parse((await ok("alice", "whoami", "--json")).stdout).queued, 0);
      const got = await ok("bob", "recv");
      assertStringIncludes(got.stdout, "while the disk was full");
      assertStringIncludes(got.stdout, "still full");

      // the log: one error with the cause, one recovery with the count; nothing else at error
      const errors = logLines.filter((l) => l.level === "error");
      assertEquals(errors.length, 1, JSON.stringify(errors));
      assertEquals(errors[0]!.msg, "storage failure");
      assertEquals(errors[0]!.reason, "storage: disk full");
      assertStringIncludes(String(errors[0]!.error), "database or disk is full");
      const recovered = logLines.filter((l) => l.msg === "storage recovered");
      assertEquals(recovered.length, 1);
      assert(Number(recovered[0]!.failures) >= 2, JSON.stringify(recovered));
    } finally {
      await ts.close();
      await Deno.remove(home, { recursive: true });
    }
  });
});
