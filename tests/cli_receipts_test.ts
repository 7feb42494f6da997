/**
 * Delivery and read receipts (issue 21 part 2) through the `qpq` command, with real
 * processes, a real server and real state files: a delivered receipt when a member's
 * device stores the message, a read receipt when they read the conversation; marks on our
 * own messages (✓ sent, ✓✓ delivered to all, ✓✓✓ read by all), `qpq receipts N`, every
 * field in `--json`; read receipts off; none to a request or to a blocked user.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

type Qpq = (user: string, ...args: string[]) => Promise<CliResult>;

/** `user`'s history of `conv` as JSON lines. */
async function historyJson(qpq: Qpq, user: string, conv: string) {
  return ok(await qpq(user, "history", conv, "--json")).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
}

/** The last history line of `user` in `conv`, without its time. */
async function lastLine(qpq: Qpq, user: string, conv: string): Promise<string> {
  return ok(await qpq(user, "history", conv)).trimEnd().split("\n").at(-1)!
    .replace(/^[0-9]{2}:[0-9]{2} /, "");
}

Deno.test("qpq: delivered and read receipts across three users; marks, qpq receipts, --json; read receipts off", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["alice", "bob", "carol"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob", "carol"));
    ok(await qpq("bob", "join"));
    ok(await qpq("carol", "join"));
    ok(await qpq("alice", "send", "--group", "team", "one"));
    ok(await qpq("alice", "send", "--group", "team", "two"));
    ok(await qpq("alice", "recv"));
    assertEquals(await lastLine(qpq, "alice", "#team"), "[2] [#team] alice: two ✓");

    // bob's device stores both (recv: delivered, and shown = read); carol turned read receipts off
    ok(await qpq("carol", "receipts", "off"));
    ok(await qpq("bob", "recv"));
    ok(await qpq("alice", "recv"));
    let j = await historyJson(qpq, "alice", "#team");
    assertEquals(j[1].receiptState, "sent"); // carol's device has not got it yet
    assertEquals(j[1].receipts.map((r: { user: string }) => r.user), ["bob"]);
    assert(j[1].receipts[0].deliveredAt > 0 && j[1].receipts[0].readAt > 0);

    ok(await qpq("carol", "recv"));
    ok(await qpq("alice", "recv"));
    j = await historyJson(qpq, "alice", "#team");
    assertEquals(j[1].receiptState, "delivered"); // carol: delivered, never read
    const carol = j[1].receipts.find((r: { user: string }) => r.user === "carol");
    assert(carol.deliveredAt > 0 && carol.readAt === undefined, JSON.stringify(carol));
    assertEquals(await lastLine(qpq, "alice", "#team"), "[2] [#team] alice: two ✓✓");
    const who = ok(await qpq("alice", "receipts", "--group", "team", "2"));
    assertStringIncludes(who, "Receipts (delivered):");
    assertStringIncludes(who, "  bob: read ");
    assertStringIncludes(who, "  carol: delivered ");

    // carol turns them on again: her next read sends one; now read by all
    ok(await qpq("carol", "receipts", "on"));
    ok(await qpq("alice", "send", "--group", "team", "three"));
    ok(await qpq("bob", "recv"));
    ok(await qpq("carol", "recv"));
    ok(await qpq("alice", "recv"));
    assertEquals(await lastLine(qpq, "alice", "#team"), "[3] [#team] alice: three ✓✓✓");
    // receipts are no messages: nothing new in history, nothing unread
    assertEquals((await historyJson(qpq, "alice", "#team")).length, 3);
    assertEquals((await historyJson(qpq, "bob", "#team")).length, 3);
    assertStringIncludes(ok(await qpq("alice", "list")), "#team");
    assert(!ok(await qpq("alice", "list")).includes("unread"));
  });
});

Deno.test("qpq: no receipt to a request (an unaccepted DM) or to a blocked user", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["alice", "bob"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "send", "--to", "bob", "hello stranger"));
    ok(await qpq("bob", "recv")); // stored as a request: no receipt
    ok(await qpq("alice", "recv"));
    let j = await historyJson(qpq, "alice", "@bob");
    assertEquals(j[0].receipts, []);
    ok(await qpq("bob", "accept", "alice"));
    ok(await qpq("alice", "send", "--to", "bob", "now?"));
    ok(await qpq("bob", "recv"));
    ok(await qpq("alice", "recv"));
    j = await historyJson(qpq, "alice", "@bob");
    assertEquals(j[1].receipts.map((r: { user: string }) => r.user), ["bob"]);
    // blocked: alice's messages are not stored by bob, and nothing goes back
    ok(await qpq("bob", "block", "alice"));
    ok(await qpq("alice", "send", "--to", "bob", "still there?"));
    ok(await qpq("bob", "recv"));
    ok(await qpq("alice", "recv"));
    j = await historyJson(qpq, "alice", "@bob");
    assertEquals(j[2].receipts, []);
  });
});
