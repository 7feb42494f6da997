/**
 * Small things that confused a new user (issue 21, part 1), each through the real entry
 * point: config errors that say where and what was meant, and the rest below.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import {
  type CliResult,
  runQpq,
  spawnQpq,
  startServerProcess,
  withCliUsers,
} from "./_support/cli.ts";

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

/** `qpq send --to bob` as alice with raw bytes on standard input. */
async function sendBytes(
  env: Record<string, string>,
  dir: string,
  bytes: Uint8Array,
): Promise<CliResult> {
  const child = spawnQpq(["send", "--to", "bob", "--username", "alice"], {
    cwd: dir,
    env,
    stdin: true,
  });
  const w = child.stdin.getWriter();
  await w.write(bytes);
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("qpq send refuses binary standard input (NUL, not UTF-8) with a hint", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    for (const u of ["alice", "bob"]) assertEquals((await qpq(u, "register-user")).code, 0);
    const nul = await sendBytes(env("alice"), dir, new Uint8Array([0x68, 0x69, 0x00, 0x01]));
    assertEquals(nul.code, 2, nul.stderr);
    assertStringIncludes(nul.stderr, "Standard input is binary (a NUL byte at offset 2)");
    assertStringIncludes(nul.stderr, "base64");
    const latin1 = await sendBytes(env("alice"), dir, new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
    assertEquals(latin1.code, 2, latin1.stderr);
    assertStringIncludes(latin1.stderr, "Standard input is not UTF-8 text");
    // nothing went out; text still does
    const text = await sendBytes(env("alice"), dir, new TextEncoder().encode("café ✓\n"));
    assertEquals(text.code, 0, text.stderr);
    const got = await qpq("bob", "accept", "@alice");
    assertEquals(got.code, 0, got.stderr);
    assertEquals(got.stdout.split("\n").filter((l) => l.startsWith("[alice]")), ["[alice] café ✓"]);
  });
});
