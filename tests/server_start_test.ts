/**
 * A server that cannot start leaves nothing behind and keeps one format per stream (issue
 * 21, part 1): "address in use" is found before a certificate or a database is written, and
 * once the server logged JSON on stderr, its failure is one more JSON line there.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq, startServerProcess } from "./_support/cli.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("qpq server on a QUIC address in use: one line, and no certificate or database written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-start-" });
  const first = await startServerProcess(`${dir}/first`, "127.0.0.1:0");
  try {
    const r = await runQpq(["server", "--listen", first.addr, "--data-dir", `${dir}/second`]);
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr, `qpq: Cannot listen on ${first.addr} (QUIC): address already in use\n`);
    assertEquals(r.stdout, "");
    assert(!(await exists(`${dir}/second`)), "the second server wrote its data dir");
  } finally {
    await first.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq server failing after it logged: stderr stays JSON lines, stdout plain", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-start-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const health = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
  try {
    const r = await runQpq([
      "server",
      "--listen",
      "127.0.0.1:0",
      "--health-listen",
      health,
      "--data-dir",
      `${dir}/data`,
    ]);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert(lines.length >= 2, `expected the server's log before the failure:\n${r.stderr}`);
    const records = lines.map((l) => {
      try {
        return JSON.parse(l) as { level: string; msg: string; code?: string };
      } catch {
        throw new Error(`a plain line among the JSON log lines: ${l}\n${r.stderr}`);
      }
    });
    const last = records.at(-1)!;
    assertEquals([last.level, last.code], ["error", "transport"]);
    assertStringIncludes(last.msg, `Cannot listen on ${health} (health): address already in use`);
    for (const l of r.stdout.split("\n").filter((l) => l)) assert(!l.startsWith("{"), r.stdout);
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});
