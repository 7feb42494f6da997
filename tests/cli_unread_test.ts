/**
 * Timestamps and unread counts (issue 21 part 2) through the `qpq` command: history shows
 * each message's local time and a line where a day begins; `list` counts what arrived
 * since a conversation was last read; reading it (history, recv, the REPL, chat) clears it.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { type CliResult, spawnQpq, untimed, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

Deno.test("qpq list counts unread messages, history shows times and day lines and reads them", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    for (const u of ["alice", "bob", "carol"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "send", "--to", "bob", "one"));
    ok(await qpq("carol", "create-group", "team"));
    ok(await qpq("carol", "invite", "team", "bob"));
    ok(await qpq("bob", "join"));
    ok(await qpq("bob", "recv"));
    // printed is read: nothing unread
    assertEquals(ok(await qpq("bob", "list")), "@alice\tdm\n#team\tgroup\n");

    // bob chats in #team; alice's two DMs arrive meanwhile and are stored, not shown
    const chat = spawnQpq(["chat", "#team", "--username", "bob"], {
      cwd: dir,
      env: env("bob"),
      stdin: true,
    });
    const w = chat.stdin.getWriter();
    ok(await qpq("alice", "send", "--to", "bob", "two"));
    ok(await qpq("alice", "send", "--to", "bob", "three"));
    ok(await qpq("carol", "send", "--group", "team", "in the open chat"));
    await w.write(new TextEncoder().encode("/sync\n/quit\n"));
    await w.close();
    const out = await chat.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const shown = new TextDecoder().decode(out.stdout);
    assert(shown.includes("[#team] carol: in the open chat"), shown);
    assert(!shown.includes("two"), "chat shows only its conversation");

    assertEquals(ok(await qpq("bob", "list")), "@alice\tdm\t2 unread\n#team\tgroup\n");
    const json = ok(await qpq("bob", "list", "--json"));
    assertEquals(
      JSON.parse(json).conversations.map((c: { name: string; unread: number }) => [
        c.name,
        c.unread,
      ]),
      [["@alice", 2], ["#team", 0]],
    );

    const history = ok(await qpq("bob", "history", "@alice")).trimEnd().split("\n");
    assert(history[0]!.startsWith("── "), `a day line first: ${history[0]}`);
    assertEquals(untimed(history), ["[alice] one", "[alice] two", "[alice] three"]);
    const now = new Date();
    const hhmm = (d: Date) =>
      `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    const sent = history.at(-1)!.slice(0, 5);
    const before = new Date(now.getTime() - 60_000);
    assert([hhmm(now), hhmm(before)].includes(sent), `sent at ${sent}, now ${hhmm(now)}`);
    const times = ok(await qpq("bob", "history", "@alice", "--json")).trim().split("\n")
      .map((l) => JSON.parse(l));
    for (const m of times) {
      assert(m.sentAt > 0 && m.receivedAt >= m.sentAt - 60_000, JSON.stringify(m));
    }
    // history read it
    assertEquals(ok(await qpq("bob", "list")), "@alice\tdm\n#team\tgroup\n");
  });
});
