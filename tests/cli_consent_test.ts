/**
 * Consent through the `qpq` command (issue 10): a stranger's DMs and invitations are one
 * line each until accepted (`requests`, `accept`), `block` drops them for good (the
 * stranger's commands still succeed), `join` accepts everything as it always did, and
 * mistakes are one line with exit code 1.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

Deno.test("qpq requests, accept, block, unblock: one line per request, nothing more until accepted", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["bob", "mallory", "alice"]) ok(await qpq(u, "register-user"));
    ok(await qpq("mallory", "send", "--to", "bob", "buy now"));
    ok(await qpq("mallory", "send", "--to", "bob", "\u001b]0;pwned\u0007last chance"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob"));
    ok(await qpq("alice", "send", "--group", "team", "welcome bob"));
    assertEquals(
      ok(await qpq("bob", "recv")),
      // both of mallory's messages counted (the first alone was, until issue 12)
      "alice invites you to #team\nrequest from @mallory: 2 messages\n",
    );
    assertEquals(ok(await qpq("bob", "list")).includes("mallory"), false);
    assertEquals(
      ok(await qpq("bob", "requests")),
      "request from @mallory: 2 messages\nalice invites you to #team: 1 message\n",
    );
    const json = ok(await qpq("bob", "requests", "--json")).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(json.map((j) => [j.type, j.conversation, j.from, j.messages]), [
      ["request", "@mallory", "mallory", 2],
      ["request", "#team", "alice", 1],
    ]);
    const hist = await qpq("bob", "history", "@mallory");
    assertEquals(hist.code, 1);
    assertEquals(
      hist.stderr,
      "qpq: @mallory is a request from mallory: qpq accept mallory to read it\n",
    );
    assertEquals(
      ok(await qpq("bob", "accept", "#team")),
      "* joined #team (invited by alice)\n[#team] alice: welcome bob\n",
    );
    assertEquals(
      ok(await qpq("bob", "block", "@mallory")),
      "Blocked @mallory (dropped 1 request)\n",
    );
    assertEquals(ok(await qpq("bob", "requests")), "No requests\n");
    // mallory is not told: her commands still succeed, and nothing reaches bob
    ok(await qpq("mallory", "send", "--to", "bob", "are you there?"));
    ok(await qpq("mallory", "create-group", "trap"));
    ok(await qpq("mallory", "invite", "trap", "bob"));
    assertEquals(ok(await qpq("bob", "recv")), "");
    assertEquals(ok(await qpq("bob", "block")), "blocked @mallory\n");
    assertEquals(
      ok(await qpq("bob", "unblock", "mallory")),
      "Unblocked @mallory (1 message sent while blocked was dropped; asked to be added again to 1 conversation)\n",
    );
    assertEquals(ok(await qpq("bob", "block")), "No blocked users\n");
    // one-line errors
    for (
      const [args, code, err] of [
        [["accept", "nobody"], 1, "qpq: No request from nobody: see qpq requests\n"],
        [["block", "bob"], 2, "qpq: Cannot block yourself\n"],
        [["block", "ghost"], 1, "qpq: Unknown user ghost\n"],
      ] as const
    ) {
      const r = await qpq("bob", ...args);
      assertEquals([r.code, r.stderr], [code, err], args.join(" "));
    }
  });
});

Deno.test("qpq join accepts every request, as join always did", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["ann", "ben"]) ok(await qpq(u, "register-user"));
    ok(await qpq("ann", "send", "--to", "ben", "hello"));
    ok(await qpq("ann", "create-group", "g"));
    ok(await qpq("ann", "invite", "g", "ben"));
    // received by requests itself: each listed once, with its count
    assertEquals(
      ok(await qpq("ben", "requests")),
      "request from @ann: 1 message\nann invites you to #g\n",
    );
    assertEquals(
      ok(await qpq("ben", "join")),
      "* joined @ann (invited by ann)\n[ann] hello\n* joined #g (invited by ann)\n",
    );
    assertEquals(ok(await qpq("ben", "requests")), "No requests\n");
    // ann is a contact now: her next invitation is joined at once
    ok(await qpq("ann", "create-group", "h"));
    ok(await qpq("ann", "invite", "h", "ben"));
    assertEquals(ok(await qpq("ben", "recv")), "* joined #h (invited by ann)\n");
    assert(ok(await qpq("ben", "list")).includes("#h"));
  });
});

Deno.test("qpq requests lists held invitations; accept --decline and accept answer them", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["bob", "alice"]) ok(await qpq(u, "register-user"));
    ok(await qpq("bob", "create-group", "mine"));
    ok(await qpq("alice", "create-group", "one"));
    ok(await qpq("alice", "invite", "one", "bob"));
    ok(await qpq("alice", "create-group", "two"));
    ok(await qpq("alice", "invite", "two", "bob")); // bob is at the cap (2): held
    ok(await qpq("bob", "recv"));
    assertEquals(
      ok(await qpq("bob", "requests")),
      "alice invites you to #one\nheld: #two (2 members)\n",
    );
    const full = await qpq("bob", "accept", "#two");
    assertEquals([full.code, full.stderr.startsWith("qpq: You are in 2 conversations")], [1, true]);
    assertEquals(ok(await qpq("bob", "accept", "--decline", "#two")), "Declined #two\n");
    assertEquals(ok(await qpq("bob", "requests")), "alice invites you to #one\n");
  }, { file: { max_groups_per_user: 2 } });
});
