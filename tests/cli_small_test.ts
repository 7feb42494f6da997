/**
 * Small things that confused a new user (issue 21, part 1), each through the real entry
 * point: config errors that say where and what was meant, and the rest below.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq, startServerProcess } from "./_support/cli.ts";

Deno.test("qpq server: a config error names its line; an unknown key gets a did-you-mean", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-small-" });
  try {
    await Deno.writeTextFile(
      `${dir}/typo.toml`,
      `listen = "127.0.0.1:0"\n\nmax_mesage_bytes = 9\n`,
    );
    const r = await runQpq(["server", "--config", `${dir}/typo.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, `Unknown key "max_mesage_bytes" in ${dir}/typo.toml line 3`);
    assertStringIncludes(r.stderr, `did you mean "max_message_bytes"?`);
    await Deno.writeTextFile(`${dir}/type.toml`, `# a comment\nfsync = "yes"\n`);
    const t = await runQpq(["server", "--config", `${dir}/type.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(t.code, 2, t.stderr);
    assertStringIncludes(t.stderr, `Key "fsync" in ${dir}/type.toml line 2 must be true or false`);
    await Deno.writeTextFile(`${dir}/bad.toml`, `listen = "x"\nfsync = = true\n`);
    const b = await runQpq(["server", "--config", `${dir}/bad.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(b.code, 2, b.stderr);
    assertEquals(b.stderr.trim().split("\n").length, 1, b.stderr);
    assertStringIncludes(b.stderr, `Cannot parse config ${dir}/bad.toml line 2: `);
    // nothing written for a configuration that was refused
    assert(!(await Deno.stat(`${dir}/d`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq ping without --ca-cert says what to pass, and where the server keeps it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-small-" });
  const server = await startServerProcess(`${dir}/data`, "127.0.0.1:0");
  try {
    const r = await runQpq(["ping", "--server", server.addr], { cwd: dir });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, "not trusted: pass --ca-cert FILE");
    assertStringIncludes(r.stderr, "server-cert.pem");
    assert(!r.stderr.includes("pinned"), r.stderr);
    const ok = await runQpq([
      "ping",
      "--server",
      server.addr,
      "--ca-cert",
      `${dir}/data/server-cert.pem`,
    ]);
    assertEquals(ok.code, 0, ok.stderr);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
