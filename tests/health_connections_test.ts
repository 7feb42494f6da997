/**
 * Health counts only open connections: clients that closed (in-process) or whose process
 * exited right after its command (the CLI) are not counted, without waiting for the QUIC
 * idle timeout.
 *
 * @module
 */
import { assertEquals } from "./_support/assert.ts";
import { runQpq } from "./_support/cli.ts";
import { startTestServer } from "./_support/server.ts";
import { connectServer } from "../src/client/connection.ts";
import { QUIC_IDLE_TIMEOUT_MS } from "../src/limits.ts";

/** connectedClients over plain HTTP (which is no QUIC connection itself). */
async function connected(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/health`);
  return (await res.json()).connectedClients;
}

/** Wait until connectedClients is `n`; bounded well below the QUIC idle timeout. */
async function until(port: number, n: number): Promise<number> {
  const deadline = Date.now() + QUIC_IDLE_TIMEOUT_MS / 5;
  let got = await connected(port);
  while (got !== n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    got = await connected(port);
  }
  return got;
}

Deno.test("connectedClients counts open connections only: 3 clients, then 0 once they closed or their process exited", async () => {
  const ts = await startTestServer({ file: { health_listen: "127.0.0.1:0" } });
  const port = ts.server.healthAddr!.port;
  const dir = await Deno.makeTempDir({ prefix: "qpq-conns-" });
  try {
    await Deno.writeTextFile(`${dir}/ca.pem`, ts.certPem);
    assertEquals(await connected(port), 0);
    const conns = await Promise.all(
      [0, 1, 2].map(() => connectServer({ server: ts.addr, caCertPem: ts.certPem })),
    );
    for (const c of conns) await c.ping();
    assertEquals(await connected(port), 3);
    await Promise.all(conns.map((c) => c.close()));
    assertEquals(await until(port, 0), 0, "closed in-process clients are not counted");
    // CLI processes: each connects, asks, and exits at once
    const runs = await Promise.all(
      [0, 1, 2].map(() =>
        runQpq(["ping", "--server", ts.addr, "--ca-cert", `${dir}/ca.pem`], { cwd: dir })
      ),
    );
    for (const r of runs) assertEquals(r.code, 0, r.stderr);
    assertEquals(await until(port, 0), 0, "exited CLI processes are not counted");
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
