/**
 * Group life cycle through the `qpq` command, as a person types it (issue 9): the
 * remove-then-leave sequence that once locked the creator out, a leave shown as a leave,
 * `list` marking a broken conversation, `send --all` going past what it cannot send to.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): CliResult {
  assertEquals(r.code, 0, r.stderr);
  return r;
}

Deno.test("qpq: create, invite two, remove one, another leaves: the creator's recv, list, send work", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["p1", "p2", "p3"]) ok(await qpq(u, "register-user"));
    ok(await qpq("p1", "create-group", "g"));
    ok(await qpq("p1", "invite", "g", "p2", "p3"));
    ok(await qpq("p2", "recv"));
    ok(await qpq("p3", "recv"));
    ok(await qpq("p1", "remove", "g", "p3"));
    ok(await qpq("p2", "leave", "g"));
    const r = ok(await qpq("p1", "recv"));
    assertEquals(r.stderr, "", "no warning");
    assertStringIncludes(r.stdout, "* p2 left #g");
    ok(await qpq("p1", "members", "g"));
    assertStringIncludes(ok(await qpq("p1", "list")).stdout, "#g");
    // the account keeps receiving DMs
    ok(await qpq("p3", "send", "--to", "p1", "still here"));
    assertStringIncludes(ok(await qpq("p1", "recv")).stdout, "[p3] still here");
  });
});

Deno.test("qpq send --all reports each conversation it skips and sends to the rest", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["ann", "ben"]) ok(await qpq(u, "register-user"));
    ok(await qpq("ann", "create-group", "solo")); // nobody else in it: cannot be sent to
    ok(await qpq("ann", "send", "--to", "ben", "first"));
    const r = await qpq("ann", "send", "--all", "to everyone");
    assertEquals(r.code, 1, "something was skipped");
    assertStringIncludes(r.stdout, "sent to @ben");
    assertStringIncludes(r.stderr, "skipped #solo: Nobody else is in #solo yet");
    assert(!r.stderr.includes("Usage"), r.stderr);
    // ann is not ben's contact: her DM is a request until ben accepts it (issue 10)
    assertEquals(ok(await qpq("ben", "recv")).stdout, "request from @ann: 1 message\n");
    const got = ok(await qpq("ben", "accept", "@ann")).stdout;
    assertEquals(got, "* joined @ann (invited by ann)\n[ann] first\n[ann] to everyone\n");
  });
});
