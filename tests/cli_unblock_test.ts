/**
 * Block, then unblock, through the `qpq` command (issue 21): the DM goes on both ways, the
 * blocker is told how many messages the block dropped, a DM opened during the block is
 * repaired, and people who share a group stay contacts.
 */
import { assertEquals } from "./_support/assert.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

Deno.test("qpq unblock: a requested DM goes on both ways and the block's drops are counted", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["bob", "alice"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "send", "--to", "bob", "hi bob"));
    assertEquals(ok(await qpq("bob", "recv")), "request from @alice: 1 message\n");
    assertEquals(ok(await qpq("bob", "block", "alice")), "Blocked @alice (dropped 1 request)\n");
    ok(await qpq("alice", "send", "--to", "bob", "while blocked 1"));
    ok(await qpq("alice", "send", "--to", "bob", "while blocked 2"));
    assertEquals(
      ok(await qpq("bob", "unblock", "alice")),
      "Unblocked @alice (2 messages sent while blocked were dropped)\n",
    );
    ok(await qpq("alice", "send", "--to", "bob", "after unblock"));
    ok(await qpq("bob", "recv"));
    assertEquals(ok(await qpq("bob", "requests")), "request from @alice: 2 messages\n");
    assertEquals(
      ok(await qpq("bob", "accept", "alice")),
      "* joined @alice (invited by alice)\n[alice] hi bob\n[alice] after unblock\n",
    );
    assertEquals(ok(await qpq("bob", "send", "--to", "alice", "hi alice")), "sent to @alice\n");
    assertEquals(ok(await qpq("alice", "recv")), "[bob] hi alice\n");
    ok(await qpq("alice", "send", "--to", "bob", "and again"));
    assertEquals(ok(await qpq("bob", "recv")), "[alice] and again\n");
  });
});

Deno.test("qpq unblock: a DM opened during the block is repaired, later messages arrive", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["bob", "alice"]) ok(await qpq(u, "register-user"));
    ok(await qpq("bob", "block", "alice"));
    ok(await qpq("alice", "send", "--to", "bob", "during the block"));
    assertEquals(ok(await qpq("bob", "recv")), "");
    const json = JSON.parse(ok(await qpq("bob", "unblock", "alice", "--json")));
    assertEquals(json, { type: "unblock", user: "alice", dropped: 1, repairing: 1 });
    // before alice re-adds him, bob's own DM says so in one line (it made a group of its
    // own at epoch 0, which the server refused: "its copy of the group is not at epoch 0")
    const early = await qpq("bob", "send", "--to", "alice", "too early");
    assertEquals([early.code, early.stdout], [1, ""]);
    assertEquals(
      early.stderr,
      "qpq: You are not in the DM with alice yet: asked alice to add you again; try once they were online\n",
    );
    ok(await qpq("alice", "send", "--to", "bob", "after unblock"));
    // bob wrote to alice (or tried): she is a contact, the repaired DM is joined at once
    assertEquals(
      ok(await qpq("bob", "recv")),
      "* joined @alice (invited by alice)\n[alice] after unblock\n",
    );
    assertEquals(ok(await qpq("bob", "send", "--to", "alice", "hi alice")), "sent to @alice\n");
    assertEquals(ok(await qpq("alice", "recv")), "[bob] hi alice\n");
  });
});

Deno.test("qpq unblock: members of a shared group stay contacts, their DM is no request", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["bob", "alice"]) ok(await qpq(u, "register-user"));
    ok(await qpq("bob", "create-group", "team"));
    ok(await qpq("bob", "invite", "team", "alice"));
    ok(await qpq("alice", "recv"));
    ok(await qpq("bob", "block", "alice"));
    assertEquals(ok(await qpq("bob", "unblock", "alice")), "Unblocked @alice\n");
    ok(await qpq("alice", "send", "--to", "bob", "hi bob"));
    assertEquals(
      ok(await qpq("bob", "recv")),
      "* joined @alice (invited by alice)\n[alice] hi bob\n",
    );
    ok(await qpq("alice", "send", "--group", "team", "in the team"));
    assertEquals(ok(await qpq("bob", "recv")), "[#team] alice: in the team\n");
  });
});
