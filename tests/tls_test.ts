/**
 * A real certificate end to end: an operator's CA issues the server certificate, `qpq server`
 * runs in production mode with `tls_cert`/`tls_key` from its config file, and clients that
 * trust that CA register, log in and ping; a client trusting another CA is refused with one
 * line before anything is sent.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { runQpq, startServerProcess } from "./_support/cli.ts";
import { makeTestPki } from "./_support/pki.ts";
import { randomBytes, toBase64, toHex } from "../src/bytes.ts";

Deno.test("qpq server with a CA-issued tls_cert/tls_key in production mode serves clients that trust the CA", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-tls-" });
  const pki = await makeTestPki();
  await Deno.writeTextFile(`${dir}/ca.pem`, pki.caPem);
  await Deno.writeTextFile(`${dir}/server.pem`, pki.serverCertPem);
  await Deno.writeTextFile(`${dir}/server.key`, pki.serverKeyPem, { mode: 0o600 });
  await Deno.writeTextFile(
    `${dir}/qpq.toml`,
    `tls_cert = "${dir}/server.pem"\ntls_key = "${dir}/server.key"\n`,
  );
  const token = toHex(randomBytes(24));
  const server = await startServerProcess(`${dir}/data`, "127.0.0.1:0", {
    extra: ["--config", `${dir}/qpq.toml`],
    env: { QPQ_PRODUCTION: "1", QPQ_AUTH_TOKEN: token, QPQ_DB_KEY: toBase64(randomBytes(32)) },
  });
  try {
    const port = server.addr.split(":").pop()!;
    const as = (user: string, ca: string) => ({
      cwd: dir,
      env: { QPQ_PASSWORD: `pw-${user}-long enough`, QPQ_AUTH_TOKEN: token, QPQ_CA_CERT: ca },
    });
    // by name and by address, both in the certificate
    for (const host of ["localhost", "127.0.0.1"]) {
      const ping = await runQpq(["ping", "--server", `${host}:${port}`], as("x", `${dir}/ca.pem`));
      assertEquals(ping.code, 0, ping.stderr);
      assert(ping.stdout.includes("ms"), ping.stdout);
    }
    const reg = await runQpq(
      ["register-user", "--username", "alice", "--server", `localhost:${port}`],
      as("alice", `${dir}/ca.pem`),
    );
    assertEquals(reg.code, 0, reg.stderr);
    const who = await runQpq(
      ["whoami", "--username", "alice", "--server", `localhost:${port}`],
      as("alice", `${dir}/ca.pem`),
    );
    assertEquals(who.code, 0, who.stderr);
    assert(who.stdout.includes("alice"), who.stdout);

    // another CA (here: the server's own generated kind of certificate) is refused
    const other = await makeTestPki();
    await Deno.writeTextFile(`${dir}/other-ca.pem`, other.caPem);
    const refused = await runQpq(
      ["ping", "--server", `localhost:${port}`],
      as("x", `${dir}/other-ca.pem`),
    );
    assertEquals(refused.code, 1, refused.stdout);
    const lines = refused.stderr.trim().split("\n");
    assertEquals(lines.length, 1, refused.stderr);
    assert(/^qpq: .*certificate/i.test(lines[0]!), lines[0]);
  } finally {
    assertEquals(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});
