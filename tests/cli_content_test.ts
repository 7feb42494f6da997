/**
 * Replies, reactions, edits and deletes (issue 21 part 2) through the `qpq` command, with
 * real processes, a real server and real state files: what each member's history, recv and
 * `--json` show; that a member's edit or deletion of someone else's message is refused by
 * the receivers (the MLS sender must be the author); and that an edit queued offline, while
 * the group moved on, is encrypted again in the current epoch and arrives.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, runQpq, untimed, withCliUsers } from "./_support/cli.ts";
import { openLocalStore } from "../src/client/open_store.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** History lines of `user` in `conv`, without times (`[1] [#team] alice: hi` kept whole). */
async function history(
  qpq: (user: string, ...args: string[]) => Promise<CliResult>,
  user: string,
  conv: string,
): Promise<string[]> {
  return ok(await qpq(user, "history", conv)).trimEnd().split("\n").filter((l) =>
    !l.startsWith("── ")
  ).map((l) => l.replace(/^[0-9]{2}:[0-9]{2} /, "").replace(/ ✓{1,3}$/, "")); // receipts: cli_receipts_test
}

Deno.test("qpq: replies, reactions, edits and deletes reach every member, shown and in --json", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["alice", "bob", "carol"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob", "carol"));
    ok(await qpq("bob", "join"));
    ok(await qpq("carol", "join"));
    ok(await qpq("alice", "send", "--group", "team", "lunch at noon?"));
    assertEquals(ok(await qpq("bob", "recv")), "[#team] alice: lunch at noon?\n");
    assertEquals(await history(qpq, "bob", "#team"), ["[1] [#team] alice: lunch at noon?"]);

    // a reply names the message by its number in history, and quotes it
    const sent = JSON.parse(
      ok(await qpq("bob", "send", "--group", "team", "--reply-to", "1", "yes!", "--json")),
    );
    assertEquals(sent.type, "sent");
    assertEquals(
      ok(await qpq("alice", "recv")),
      "[#team] bob: (↪ [1] alice: lunch at noon?) yes!\n",
    );
    const aliceId = JSON.parse(ok(await qpq("alice", "history", "#team", "--json")).split("\n")[0]!)
      .messageId;
    // ... or by its id
    ok(await qpq("carol", "recv"));
    ok(await qpq("carol", "send", "--group", "team", "--reply-to", aliceId, "me too"));

    // reactions: one per member, aggregated, the same one again withdraws it
    ok(await qpq("bob", "react", "--group", "team", "1", "👍"));
    ok(await qpq("carol", "react", "--group", "team", "1", "👍"));
    const got = ok(await qpq("alice", "recv"));
    assertStringIncludes(got, "[#team] carol: (↪ [1] alice: lunch at noon?) me too\n");
    assertStringIncludes(got, "* bob reacted 👍 to [1] alice: lunch at noon? in #team\n");
    assertEquals(
      (await history(qpq, "alice", "#team"))[0],
      "[1] [#team] alice: lunch at noon?  👍 2",
    );
    ok(await qpq("carol", "react", "--group", "team", "1", "👍")); // toggled off
    ok(await qpq("alice", "recv"));
    assertEquals(
      (await history(qpq, "alice", "#team"))[0],
      "[1] [#team] alice: lunch at noon?  👍 1",
    );

    // an edit by the author: "(edited)" everywhere, the reply's quote follows it
    const edited = ok(await qpq("alice", "edit", "--group", "team", "1", "lunch at one?"));
    assertStringIncludes(edited, "edited: [1] [#team] alice: lunch at one? (edited)  👍 1");
    assertEquals(
      ok(await qpq("bob", "recv")),
      [
        "* carol reacted 👍 to [1] alice: lunch at noon? in #team",
        "* carol withdrew a reaction to [1] in #team",
        "* alice edited [1] in #team: lunch at one?",
        "",
      ].join("\n"),
    );
    assertEquals(await history(qpq, "bob", "#team"), [
      "[1] [#team] alice: lunch at one? (edited)  👍 1",
      "[2] [#team] bob: (↪ [1] alice: lunch at one?) yes!",
      "[3] [#team] carol: (↪ [1] alice: lunch at one?) me too",
    ]);
    const json = ok(await qpq("bob", "history", "#team", "--json")).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(json[0].index, 1);
    assertEquals(json[0].edited, true);
    assert(json[0].editedAt > 0);
    assertEquals(json[0].reactions.map((r: { user: string; emoji: string }) => [r.user, r.emoji]), [
      ["bob", "👍"],
    ]);
    assertEquals(json[1].replyTo, aliceId);

    // bob deletes his own reply for everyone
    ok(await qpq("bob", "delete", "--group", "team", "2"));
    for (const u of ["alice", "carol"]) {
      const r = JSON.parse(
        ok(await qpq(u, "recv", "--json")).trim().split("\n").filter((l) => l.includes('"changed"'))
          .at(-1)!,
      );
      assertEquals([r.type, r.change, r.by, r.deleted, r.body], [
        "changed",
        "deletion",
        "bob",
        true,
        "",
      ]);
      assertEquals((await history(qpq, u, "#team"))[1], "[2] [#team] bob: (message deleted)");
    }
    assertEquals((await history(qpq, "bob", "#team"))[1], "[2] [#team] bob: (message deleted)");

    // what the sender cannot do is refused in one line, nothing sent
    const notMine = await qpq("bob", "edit", "--group", "team", "1", "mine now");
    assertEquals(notMine.code, 2);
    assertStringIncludes(notMine.stderr, "Only its author can edit a message");
    const gone = await qpq("bob", "react", "--group", "team", "9", "👍");
    assertStringIncludes(gone.stderr, "No message 9 in #team");
    const long = await qpq("bob", "react", "--group", "team", "1", "👍👍👍👍");
    assertStringIncludes(long.stderr, "A reaction is at most 3 characters");
  });
});

Deno.test("qpq: an edit or deletion of someone else's message is refused by every receiver", async () => {
  await withCliUsers(async (qpq, { dir }) => {
    for (const u of ["alice", "bob", "mallory"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob", "mallory"));
    ok(await qpq("bob", "join"));
    ok(await qpq("mallory", "join"));
    ok(await qpq("alice", "send", "--group", "team", "the plan: \u202eevil\u202c"));
    ok(await qpq("bob", "recv"));
    ok(await qpq("mallory", "recv"));

    // mallory's client is modified: its copy says she wrote alice's message
    const store = await openLocalStore(`${dir}/qpq-mallory.bin`, "pw-mallory", {
      create: false,
      username: "mallory",
      server: "",
    });
    const conv = store.findConversationByName("#team")!;
    const m = store.history(conv.id, 1)[0]!;
    store.updateMessage({ ...m, sender: "mallory" });
    await store.close();
    ok(await qpq("mallory", "edit", "--group", "team", "1", "the plan: give mallory the keys"));
    ok(await qpq("mallory", "delete", "--group", "team", "1"));

    for (const u of ["bob", "alice"]) {
      const r = await qpq(u, "recv");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "");
      assertStringIncludes(
        r.stderr,
        "qpq: warning: Ignored an edit from mallory in #team: not their message",
      );
      assertStringIncludes(
        r.stderr,
        "qpq: warning: Ignored a deletion from mallory in #team: not their message",
      );
      // hostile text stays escaped when printed; --json keeps it exact
      assertEquals(await history(qpq, u, "#team"), [
        "[1] [#team] alice: the plan: \\u202eevil\\u202c",
      ]);
      const json = JSON.parse(ok(await qpq(u, "history", "#team", "--json")).trim());
      assertEquals([json.body, json.edited, json.deleted], [
        "the plan: \u202eevil\u202c",
        undefined,
        undefined,
      ]);
    }
  });
});

Deno.test("qpq: an edit queued offline while the group moved on is encrypted again and arrives", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    for (const u of ["alice", "bob"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob"));
    ok(await qpq("bob", "join"));
    ok(await qpq("alice", "send", "--group", "team", "draft one"));
    ok(await qpq("bob", "recv"));

    // alice has no network: the edit and a reaction are queued in the epoch she has
    const offline = { ...env("alice"), QPQ_SERVER: "127.0.0.1:9" };
    const edit = await runQpq(
      ["edit", "--group", "team", "1", "final version", "--username", "alice"],
      { cwd: dir, env: offline },
    );
    assertEquals(edit.code, 0, edit.stderr);
    assertStringIncludes(edit.stdout, "edited (queued): [1] [#team] alice: final version (edited)");
    const react = await runQpq(
      ["react", "--group", "team", "1", "🎉", "--username", "alice"],
      { cwd: dir, env: offline },
    );
    assertEquals(react.code, 0, react.stderr);
    // meanwhile bob moves the group on by more epochs than members keep keys for
    for (let i = 0; i < 4; i++) ok(await qpq("bob", "update", "#team"));

    // back online: alice catches up, encrypts both again in the current epoch, sends them
    ok(await qpq("alice", "recv"));
    const got = await qpq("bob", "recv");
    assertEquals(got.code, 0, got.stderr);
    assert(!got.stdout.includes("cannot read") && !got.stderr.includes("cannot"), got.stderr);
    assertEquals(
      got.stdout,
      [
        "* alice edited [1] in #team: final version",
        "* alice reacted 🎉 to [1] alice: final version in #team",
        "",
      ].join("\n"),
    );
    assertEquals(untimed(ok(await qpq("bob", "history", "#team")).trimEnd().split("\n")), [
      "[#team] alice: final version (edited)  🎉 1",
    ]);
  });
});
