/**
 * Names through the `qpq` command, as a person types them (issue 10): usernames in any
 * case are one account, invalid names never touch the file system, a registration the
 * server refuses leaves no state behind, an old state named `qpq-Bob.bin` keeps working,
 * and `@user` / `#group` are never ambiguous.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, readUntil, runQpq, spawnQpq } from "./_support/cli.ts";
import { FAST_KDF } from "./_support/clients.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { writeSchemaTwoDb } from "./_support/legacy_db.ts";

interface Cli {
  /** Run `qpq args --username user` in `cwd` (default: the test's main directory). */
  qpq(user: string, args: string[], opts?: { cwd?: string; password?: string }): Promise<CliResult>;
  /** The test's directory (holds ca.pem and, below `work/`, the states). */
  root: string;
  /** The working directory of the commands. */
  work: string;
  ts: TestServer;
}

async function withCli(fn: (cli: Cli) => Promise<void>): Promise<void> {
  const ts = await startTestServer();
  const root = await Deno.makeTempDir({ prefix: "qpq-cli-names-" });
  const work = `${root}/a/b/work`;
  await Deno.mkdir(work, { recursive: true });
  await Deno.writeTextFile(`${root}/ca.pem`, ts.certPem);
  const qpq: Cli["qpq"] = (user, args, opts = {}) =>
    runQpq([...args, "--username", user], {
      cwd: opts.cwd ?? work,
      env: {
        QPQ_SERVER: ts.addr,
        QPQ_CA_CERT: `${root}/ca.pem`,
        QPQ_PASSWORD: opts.password ?? `pw-${user.toLowerCase()}`,
      },
    });
  try {
    await fn({ qpq, root, work, ts });
  } finally {
    await ts.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** Every file below `dir`, relative to it, sorted. */
async function files(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory) out.push(...await files(`${dir}/${e.name}`, `${rel}/`));
    else out.push(rel);
  }
  return out.sort();
}

function ok(r: CliResult): CliResult {
  assertEquals(r.code, 0, r.stderr);
  return r;
}

/** A one-line refusal: non-zero exit, `qpq: ...` containing `text`, no stack or usage. */
function refusedWith(r: CliResult, text: string): void {
  assert(r.code !== 0, `expected a refusal, got: ${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertStringIncludes(lines[0]!, text);
}

Deno.test("qpq refuses an invalid username before touching the file system, in every command", async () => {
  await withCli(async ({ qpq, root }) => {
    const before = await files(root);
    const bad = [
      "x/../../pwned",
      "../pwned",
      "/tmp/pwned",
      "a".repeat(300),
      "a b",
      "bob~2/..",
      "ａ/ｂ", // full-width letters fold to ASCII, the slash stays
      "\u0430lice", // Cyrillic a
    ];
    const commands = [["register-user"], ["login"], ["whoami"], ["send", "--to", "x", "hi"], [
      "repl",
    ]];
    // every name through one command, and the path traversal through every command
    const runs = [
      ...bad.map((name, i) => [name, commands[i % commands.length]!] as const),
      ...commands.map((cmd) => [bad[0]!, cmd] as const),
    ];
    for (const [name, cmd] of runs) {
      const r = await qpq(name, [...cmd]);
      refusedWith(r, "Invalid username");
      assertEquals(r.code, 2, r.stderr);
    }
    assertEquals(await files(root), before, "no file created inside or outside");
  });
});

Deno.test("qpq register-user refused by the server (taken, look-alike, bad token) leaves no state behind", async () => {
  await withCli(async ({ qpq, work }) => {
    ok(await qpq("bob", ["register-user"]));
    const other = `${work}/../other`;
    await Deno.mkdir(other);
    refusedWith(await qpq("BOB", ["register-user"], { cwd: other }), "already registered");
    refusedWith(await qpq("b0b", ["register-user"], { cwd: other }), "looks too much like");
    refusedWith(await qpq("b.ob", ["register-user"], { cwd: other }), "looks too much like");
    refusedWith(
      await qpq("carol", ["register-user", "--auth-token", "wrong"], { cwd: other }),
      "auth token",
    );
    assertEquals(await files(other), [], "no state left by a refused registration");
    // nothing blocks the next try, even with another password
    const r = ok(await qpq("carol", ["register-user"], { cwd: other, password: "another" }));
    assertStringIncludes(r.stdout, "Registered carol");
    ok(await qpq("carol", ["login"], { cwd: other, password: "another" }));
  });
});

Deno.test("qpq usernames in any case are one account: Alice registers alice, BOB is bob", async () => {
  await withCli(async ({ qpq, work }) => {
    assertStringIncludes(ok(await qpq("Alice", ["register-user"])).stdout, "Registered alice");
    ok(await qpq("bob", ["register-user"]));
    assertEquals((await files(work)).filter((f) => f.endsWith(".bin")), [
      "qpq-alice.bin",
      "qpq-bob.bin",
    ]);
    assertStringIncludes(ok(await qpq("ALICE", ["send", "--to", "BOB", "hi"])).stdout, "@bob");
    assertStringIncludes(ok(await qpq("Bob", ["join"])).stdout, "[alice] hi"); // a request: join accepts
    assertStringIncludes(ok(await qpq("bob", ["whoami"])).stdout, "bob on");
    const v = ok(await qpq("alice", ["verify", "@BOB"])).stdout;
    assertEquals(v, ok(await qpq("alice", ["verify", "bob"])).stdout);
  });
});

Deno.test("qpq opens a state an older qpq wrote for Bob (qpq-Bob.bin, meta Bob) as bob", async () => {
  await withCli(async ({ qpq, work, ts }) => {
    // the state file as an older qpq created it: named and owned as typed
    const store = await openLocalStore(`${work}/qpq-Bob.bin`, "pw-bob", {
      create: true,
      username: "Bob",
      server: ts.addr,
      kdf: FAST_KDF,
    });
    await store.close();
    assertStringIncludes(ok(await qpq("Bob", ["register-user"])).stdout, "Registered bob");
    assertStringIncludes(ok(await qpq("BOB", ["whoami"])).stdout, "bob on");
    ok(await qpq("carol", ["register-user"]));
    ok(await qpq("carol", ["send", "--to", "Bob", "found you"]));
    assertStringIncludes(ok(await qpq("bob", ["join"])).stdout, "[carol] found you");
    assertEquals(
      (await files(work)).filter((f) => f.endsWith(".bin")),
      ["qpq-Bob.bin", "qpq-carol.bin"],
    );
  });
});

Deno.test("qpq: a group named after a contact cannot catch words meant for them", async () => {
  await withCli(async ({ qpq, work, root, ts }) => {
    const env = { QPQ_SERVER: ts.addr, QPQ_CA_CERT: `${root}/ca.pem` };
    for (const u of ["mallory", "carol", "dave"]) ok(await qpq(u, ["register-user"]));
    // mallory creates #dave and adds carol
    ok(await qpq("mallory", ["create-group", "dave"]));
    ok(await qpq("mallory", ["invite", "dave", "carol"]));
    ok(await qpq("carol", ["recv"]));
    // carol has never written to dave: the directory knows dave, so `chat dave` is refused
    refusedWith(await qpq("carol", ["chat", "dave"]), "dave is both @dave and #dave: say which");
    // once carol has a DM with dave, every command refuses the bare name
    ok(await qpq("carol", ["send", "--to", "dave", "hi dave"]));
    for (const cmd of [["history", "dave"], ["members", "dave"], ["leave", "dave"]]) {
      refusedWith(await qpq("carol", cmd), "dave is both @dave and #dave: say which");
    }
    assertStringIncludes(ok(await qpq("carol", ["history", "@dave"])).stdout, "hi dave");
    // the REPL too: /switch refuses the bare name, @dave and #dave pick one each
    const repl = await runQpq(["repl", "--username", "carol"], {
      cwd: work,
      env: { ...env, QPQ_PASSWORD: "pw-carol" },
      stdin: "/switch dave\n/switch #dave\n/switch @dave\n/quit\n",
    });
    assertStringIncludes(repl.stdout + repl.stderr, "dave is both @dave and #dave: say which");
    assertStringIncludes(repl.stdout, "* now talking in #dave");
    assertStringIncludes(repl.stdout, "* now talking in @dave");
    assertStringIncludes(ok(await qpq("carol", ["members", "#dave"])).stdout, "mallory");
    assertStringIncludes(ok(await qpq("dave", ["join"])).stdout, "[carol] hi dave");
    assert(!ok(await qpq("mallory", ["recv"])).stdout.includes("hi dave"));
  });
});

Deno.test("qpq: groups whose names look alike carry an id suffix in list, prompts and lines", async () => {
  await withCli(async ({ qpq }) => {
    for (const u of ["ann", "eve", "carol"]) ok(await qpq(u, ["register-user"]));
    ok(await qpq("ann", ["create-group", "team"]));
    ok(await qpq("ann", ["invite", "team", "carol"]));
    ok(await qpq("eve", ["create-group", "Tearn"]));
    ok(await qpq("eve", ["invite", "Tearn", "carol"]));
    ok(await qpq("ann", ["send", "--group", "team", "from ann"]));
    ok(await qpq("eve", ["send", "--group", "Tearn", "from eve"]));
    const got = ok(await qpq("carol", ["join"])).stdout;
    const names = ok(await qpq("carol", ["list"])).stdout.match(/#[A-Za-z]+~[0-9a-f]{4}/g) ?? [];
    assertEquals(names.length, 2, "both groups listed with a suffix");
    const team = names.find((n) => n.startsWith("#team~"))!;
    const tearn = names.find((n) => n.startsWith("#Tearn~"))!;
    assertStringIncludes(got, `[${team}] ann: from ann`);
    assertStringIncludes(got, `[${tearn}] eve: from eve`);
    refusedWith(await qpq("carol", ["history", "#team"]), "matches several groups");
    assertStringIncludes(ok(await qpq("carol", ["history", team])).stdout, "from ann");
    assert(!ok(await qpq("carol", ["history", team])).stdout.includes("from eve"));
  });
});

Deno.test("qpq: an account renamed by the server (Bob -> bob~2) logs in with its old state and password", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "qpq-renamed-" });
  const work = await Deno.makeTempDir({ prefix: "qpq-renamed-work-" });
  // Bob's state, whose identity the old server registered
  const store = await openLocalStore(`${work}/qpq-Bob.bin`, "pw-bob", {
    create: true,
    username: "Bob",
    server: "127.0.0.1:1",
    kdf: FAST_KDF,
  });
  const identityKey = store.meta.identityPublic;
  await store.close();
  await writeSchemaTwoDb(dataDir, [
    { name: "Bob", password: "pw-bob", identityKey },
    { name: "bob", password: "pw-other" },
  ], undefined);
  const ts = await startTestServer({ dataDir });
  try {
    await Deno.writeTextFile(`${work}/ca.pem`, ts.certPem);
    const qpq = (user: string, args: string[], password: string) =>
      runQpq([...args, "--username", user], {
        cwd: work,
        env: { QPQ_SERVER: ts.addr, QPQ_CA_CERT: `${work}/ca.pem`, QPQ_PASSWORD: password },
      });
    assertStringIncludes(ok(await qpq("bob~2", ["login"], "pw-bob")).stdout, "Logged in as bob~2");
    assertStringIncludes(ok(await qpq("bob~2", ["whoami"], "pw-bob")).stdout, "bob~2 on");
    // the old name is the other account now: Bob's state is not its state
    refusedWith(await qpq("bob", ["login"], "pw-bob"), "belongs to bob~2, not bob");
  } finally {
    await ts.close();
    await Deno.remove(work, { recursive: true });
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("qpq server logs at warn, when it migrates, each account it renamed and what to tell its owner", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-renamed-log-" });
  await Deno.mkdir(`${dir}/data`);
  await writeSchemaTwoDb(`${dir}/data`, [
    { name: "Bob", password: "a" },
    { name: "bob", password: "b" },
    { name: "Carol", password: "c" },
  ], undefined);
  const start = async () => {
    const server = spawnQpq(["server", "--listen", "127.0.0.1:0", "--data-dir", `${dir}/data`], {
      cwd: dir,
    });
    await readUntil(server.stdout, (l) => l.startsWith("SHA-256 fingerprint"));
    // at once: the server handles SIGTERM from its first line on (it once died with 143)
    server.kill("SIGTERM");
    assertEquals((await server.status).code, 0);
    return new TextDecoder().decode(
      new Uint8Array(await new Response(server.stderr).arrayBuffer()),
    ).split("\n").filter((l) => l.includes("database migration")).map((l) => JSON.parse(l));
  };
  try {
    const lines = await start();
    assertEquals(lines.length, 1, "one rename: Carol became carol without a collision");
    assertEquals(lines[0].level, "warn");
    assertStringIncludes(lines[0].notice, '"Bob"');
    assertStringIncludes(lines[0].notice, "--username bob~2");
    assertEquals(await start(), [], "said once, when migrating");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
