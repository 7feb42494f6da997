/**
 * User paths through the `qpq` command that no other test walks: login/logout, verify (and a
 * changed key refused in one line), update, leave, chat, demo-group. Each spawns the real
 * entry point against a real server, as a person would type it.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, runQpq, spawnQpq, withCliUsers } from "./_support/cli.ts";
import { startLyingServer, swapIdentityKeys } from "./_support/lying_server.ts";
import { ed25519 } from "@noble/curves/ed25519.js";

function ok(r: CliResult): CliResult {
  assertEquals(r.code, 0, r.stderr);
  return r;
}

/** A failed command: exit 1 and exactly one stderr line. */
function oneLine(r: CliResult): string {
  assertEquals(r.code, 1, r.stdout);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  return lines[0]!;
}

Deno.test("qpq logout, whoami, login: the session goes and comes back; a wrong password is one line", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    assertStringIncludes(ok(await qpq("alice", "whoami")).stdout, "session: valid until");
    assertEquals(ok(await qpq("alice", "logout")).stdout, "Logged out alice\n");
    assertStringIncludes(ok(await qpq("alice", "whoami")).stdout, "session: none");
    const login = ok(await qpq("alice", "login"));
    assert(
      /^Logged in as alice on \S+ \(session valid until \S+\)\n$/.test(login.stdout),
      login.stdout,
    );
    assertStringIncludes(ok(await qpq("alice", "whoami")).stdout, "session: valid until");
    ok(await qpq("alice", "logout"));
    const wrong = await runQpq(["login", "--username", "alice"], {
      cwd: dir,
      env: { ...env("alice"), QPQ_PASSWORD: "not her password" },
    });
    // the local state is sealed under the password: that refuses it first, before the server
    assertEquals(oneLine(wrong), "qpq: Cannot open state: wrong password or damaged file");
  });
});

Deno.test("qpq verify: both sides see one safety number; a key the server swapped is refused in one line", async () => {
  await withCliUsers(async (qpq, { ts, dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    const a = ok(await qpq("alice", "verify", "@bob")).stdout.split("\n");
    const b = ok(await qpq("bob", "verify", "alice")).stdout.split("\n");
    assertEquals(a[0], "safety number with bob:");
    assertEquals(b[0], "safety number with alice:");
    assert(/^ {2}[0-9 ]{20,}$/.test(a[1]!), a[1]);
    assertEquals(a[1], b[1], "one number for both");
    const bobFingerprint = ok(await qpq("bob", "whoami")).stdout.split("\n")[1];
    assertEquals(`identity fingerprint: ${a[2]!.split(": ")[1]}`, bobFingerprint);

    const lie = await startLyingServer(ts);
    try {
      const fake = ed25519.getPublicKey(ed25519.utils.randomSecretKey());
      lie.rewrite = swapIdentityKeys(fake);
      const r = await runQpq(["verify", "bob", "--username", "alice"], {
        cwd: dir,
        env: { ...env("alice"), QPQ_SERVER: lie.addr },
      });
      assertEquals(
        oneLine(r),
        "qpq: The server now reports a different identity key for bob: compare safety numbers (qpq verify bob)",
      );
    } finally {
      await lie.close();
    }
    // still the real key afterwards
    assertEquals(ok(await qpq("alice", "verify", "bob")).stdout.split("\n")[1], a[1]);
  });
});

Deno.test("qpq update and leave: the group goes on after a self-update; a leaver is gone for the others", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["alice", "bob", "carol"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "g"));
    ok(await qpq("alice", "invite", "#g", "bob", "carol"));
    ok(await qpq("bob", "join"));
    ok(await qpq("carol", "join"));
    assertEquals(ok(await qpq("bob", "update", "#g")).stdout, "Updated #g\n");
    assertEquals(ok(await qpq("bob", "update")).stdout, "Nothing to update\n");
    ok(await qpq("alice", "send", "--group", "g", "after the update"));
    assertStringIncludes(ok(await qpq("bob", "recv")).stdout, "[#g] alice: after the update");
    assertStringIncludes(ok(await qpq("carol", "recv")).stdout, "[#g] alice: after the update");
    assertEquals(
      ok(await qpq("carol", "leave", "#g")).stdout,
      "Asked to leave #g: you stay a member until another member's client commits it\n",
    );
    assertStringIncludes(ok(await qpq("alice", "recv")).stdout, "* carol left #g");
    assertEquals(
      ok(await qpq("carol", "recv")).stdout,
      "* you left #g (alice committed your leave)\n",
    );
    assertEquals(
      ok(await qpq("alice", "members", "#g")).stdout.split("\n")[0],
      "#g: alice (admin), bob",
    );
    ok(await qpq("alice", "send", "--to", "#g", "without carol")); // --to takes a #group too
    assertStringIncludes(ok(await qpq("bob", "recv")).stdout, "[#g] alice: without carol");
    assert(!ok(await qpq("carol", "recv")).stdout.includes("without carol"));
  });
});

Deno.test("qpq chat: typed lines are sent to the conversation; EOF ends it", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    ok(await qpq("bob", "send", "--to", "alice", "hi alice"));
    const child = spawnQpq(["chat", "@bob", "--username", "alice"], {
      cwd: dir,
      env: env("alice"),
      stdin: true,
    });
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("hello from chat\nsecond line typed\n"));
    await w.close();
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertStringIncludes(stdout, "[bob] hi alice");
    const got = ok(await qpq("bob", "recv")).stdout;
    assertStringIncludes(got, "[alice] hello from chat");
    assertStringIncludes(got, "[alice] second line typed");
  });
});

Deno.test("qpq demo-group: two new users form a group and talk both ways", async () => {
  await withCliUsers(async (_qpq, { ts, dir }) => {
    const r = await runQpq([
      "demo-group",
      "--server",
      ts.addr,
      "--ca-cert",
      `${dir}/ca.pem`,
      "--dir",
      `${dir}/demo`,
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.trim().split("\n").length >= 4, r.stdout);
    assert(/alice-\w+/.test(r.stdout) && /bob-\w+/.test(r.stdout), r.stdout);
  });
});

Deno.test("QPQ_USERNAME and QPQ_CONFIG stand in for --username and --config; the flags win", async () => {
  await withCliUsers(async (_qpq, { dir, env }) => {
    const run = (args: string[], extra: Record<string, string>) =>
      runQpq(args, { cwd: dir, env: { ...env("alice"), ...extra } });
    ok(await run(["register-user"], { QPQ_USERNAME: "alice" }));
    assertStringIncludes(ok(await run(["whoami"], { QPQ_USERNAME: "alice" })).stdout, "alice on");
    // the flag beats the variable (bob has no state here: the flag was read)
    const bob = await run(["whoami", "--username", "bob"], { QPQ_USERNAME: "alice" });
    assertEquals([bob.code, bob.stderr], [
      1, // not a usage mistake (issue 21): 2 is for those only
      "qpq: No local state at qpq-bob.bin: qpq register-user creates an account; for an existing one, point --state at the file it was registered with\n",
    ]);
    // QPQ_CONFIG names the server's config file; --config beats it
    await Deno.writeTextFile(`${dir}/bad.toml`, "no_such_key = 1\n");
    await Deno.writeTextFile(`${dir}/worse.toml`, "listen = 7\n");
    const viaEnv = await runQpq(["server"], { cwd: dir, env: { QPQ_CONFIG: `${dir}/bad.toml` } });
    assertEquals(viaEnv.code, 2);
    assertStringIncludes(viaEnv.stderr, `Unknown key "no_such_key" in ${dir}/bad.toml`);
    const viaFlag = await runQpq(["server", "--config", `${dir}/worse.toml`], {
      cwd: dir,
      env: { QPQ_CONFIG: `${dir}/bad.toml` },
    });
    assertEquals(viaFlag.code, 2);
    assertEquals(
      viaFlag.stderr,
      `qpq: Key "listen" in ${dir}/worse.toml line 1 must be a string\n`,
    );
  });
});

Deno.test("a second state file for an existing account is refused in one line and never makes a second identity (issue 21)", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    const fp = ok(await qpq("alice", "whoami")).stdout.split("\n")[1]!;
    const other = `${dir}/other`;
    await Deno.mkdir(other);
    const at = (args: string[], stdin?: string) =>
      runQpq(args, { cwd: other, env: env("alice"), ...(stdin === undefined ? {} : { stdin }) });
    const serverFp = fp.split(": ")[1]!.slice(0, 17);
    // login in a folder without her state logs in and says where the identity lives, in
    // one line, exit code 1 (no usage mistake); it said "No local state", exit code 2
    const login = await at(["login", "--username", "alice"]);
    assertEquals(login.code, 1, login.stderr);
    assert(
      oneLine(login).startsWith(
        `qpq: alice's identity lives in another state file (fingerprint ${serverFp}…`,
      ),
      login.stderr,
    );
    assertStringIncludes(login.stderr, "use --state FILE");
    // a command that needs the state says there is none, exit code 1
    const list = await at(["list", "--username", "alice"]);
    assertEquals(list.code, 1, list.stderr);
    assertStringIncludes(oneLine(list), "No local state at qpq-alice.bin");
    // a login of an account that does not exist explains, leaving no state either
    const ghost = await at(["login", "--username", "ghost"]);
    assertEquals(ghost.code, 1, ghost.stderr);
    assertStringIncludes(oneLine(ghost), "Cannot log in as ghost on ");
    assertStringIncludes(ghost.stderr, "qpq register-user creates one");
    // a repl there created a new identity for the account, and reported online
    const r = await at(["repl", "--username", "alice"], "/quit\n");
    const line = oneLine(r);
    assertStringIncludes(line, "alice's identity lives in another state file");
    assertStringIncludes(line, serverFp, "the server's fingerprint");
    assertStringIncludes(line, "--state FILE");
    assertEquals(
      [...Deno.readDirSync(other)].map((e) => e.name).filter((n) => n.startsWith("qpq-")),
      [],
      "no state with a new identity left behind",
    );
    // her own state is untouched: same identity, still logs in
    assertEquals(ok(await qpq("alice", "whoami")).stdout.split("\n")[1], fp);
    ok(await qpq("alice", "login"));
  });
});
