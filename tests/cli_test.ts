import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { readUntil, runQpq, spawnQpq } from "./_support/cli.ts";
import { generateSelfSignedCertificate } from "../src/transport/mod.ts";
import { COMMANDS } from "../src/cli/main.ts";

Deno.test("qpq --help lists every subcommand with a summary", async () => {
  const r = await runQpq(["--help"]);
  assertEquals(r.code, 0);
  for (const [name, c] of Object.entries(COMMANDS)) {
    assertStringIncludes(r.stdout, name);
    assertStringIncludes(r.stdout, c.summary);
  }
});

Deno.test("qpq <cmd> --help prints usage for every subcommand", async () => {
  for (const name of Object.keys(COMMANDS)) {
    const r = await runQpq([name, "--help"]);
    assertEquals(r.code, 0, `${name} --help exit code`);
    assertStringIncludes(r.stdout, `Usage: qpq ${name}`);
    assertEquals(r.stderr, "");
  }
});

Deno.test("qpq --version prints the version from deno.json", async () => {
  const meta = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const r = await runQpq(["--version"]);
  assertEquals(r.code, 0);
  assertEquals(r.stdout.trim(), `qpq ${meta.version}`);
});

Deno.test("qpq rejects an unknown command or flag with one line and exit 2", async () => {
  const cases: [string[], string][] = [
    [["frobnicate"], 'qpq: Unknown command "frobnicate" (see qpq --help)'],
    [["ping", "--bogus"], "qpq: Unknown option --bogus (see qpq ping --help)"],
    [["server", "--listen"], "qpq: Option --listen needs a value (see qpq server --help)"],
    [["--nope"], "qpq: Unknown option --nope (see qpq --help)"],
  ];
  for (const [args, line] of cases) {
    const r = await runQpq(args);
    assertEquals(r.code, 2, args.join(" "));
    assertEquals(r.stdout, "");
    assertEquals(r.stderr, `${line}\n`);
  }
});

Deno.test("qpq server + qpq ping: RTT printed; SIGTERM stops the server cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-cli-" });
  const server = spawnQpq(["server", "--listen", "127.0.0.1:0", "--data-dir", `${dir}/data`], {
    cwd: dir,
  });
  try {
    const { lines } = await readUntil(server.stdout, (l) => l.startsWith("SHA-256 fingerprint"));
    const addr = /listening on (\S+)/.exec(lines.join("\n"))![1]!;
    assertStringIncludes(lines.join("\n"), "(generated now)");
    const ok = await runQpq([
      "ping",
      "--server",
      addr,
      "--ca-cert",
      `${dir}/data/server-cert.pem`,
      "--count",
      "3",
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(ok.stdout.match(/time=\d+\.\d+ ms/g)?.length, 3, ok.stdout);
    const json = await runQpq([
      "ping",
      "--server",
      addr,
      "--ca-cert",
      `${dir}/data/server-cert.pem`,
      "--json",
    ]);
    assert(JSON.parse(json.stdout).rttMs > 0);
    const health = await runQpq([
      "health",
      "--server",
      addr,
      "--ca-cert",
      `${dir}/data/server-cert.pem`,
    ]);
    assertEquals(health.code, 0, health.stderr);
    assertStringIncludes(health.stdout, ": ok");

    // another certificate for the same name: refused, one line, non-zero
    const other = await generateSelfSignedCertificate();
    await Deno.writeTextFile(`${dir}/other.pem`, other.certPem);
    const bad = await runQpq(["ping", "--server", addr, "--ca-cert", `${dir}/other.pem`]);
    assertEquals(bad.code, 1);
    assertEquals(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    assertStringIncludes(bad.stderr, "the server certificate is not the one in --ca-cert");
    const missing = await runQpq(["ping", "--server", addr, "--ca-cert", `${dir}/nope.pem`]);
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "no such file");
  } finally {
    server.kill("SIGTERM");
    const status = await server.status;
    assertEquals(status.code, 0);
    await server.stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq ping to a dead server: one line, non-zero exit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-cli-" });
  const pair = await generateSelfSignedCertificate();
  await Deno.writeTextFile(`${dir}/ca.pem`, pair.certPem);
  const r = await runQpq(["ping", "--server", "127.0.0.1:9", "--ca-cert", `${dir}/ca.pem`]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assertStringIncludes(r.stderr, "127.0.0.1:9");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server refuses bad config with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-cli-" });
  await Deno.writeTextFile(`${dir}/bad.toml`, `listen = "0.0.0.0:7000"\nlisten_port = 3\n`);
  const r = await runQpq(["server", "--config", `${dir}/bad.toml`]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, `Unknown key "listen_port"`);
  const p = await runQpq(["server", "--data-dir", `${dir}/d`], { env: { QPQ_PRODUCTION: "1" } });
  assertEquals(p.code, 2);
  assertStringIncludes(p.stderr, "development auth_token");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq demo starts a server, pings it and stops", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-cli-" });
  const r = await runQpq(["demo", "--pings", "2", "--data-dir", `${dir}/d`]);
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, "SHA-256 fingerprint");
  assertEquals(r.stdout.match(/ping \d+: round trip \d+\.\d+ ms/g)?.length, 2, r.stdout);
  await Deno.remove(dir, { recursive: true });
});
