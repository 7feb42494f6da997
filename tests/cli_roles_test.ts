/**
 * Group roles (issue 21 part 2) through the `qpq` command, with real processes, a real
 * server and real state files: the creator is an admin; a non-admin's `remove` is refused
 * before anything is sent; a Remove commit forged by a non-admin at the library level (a
 * modified client) is refused by every other member from MLS; granting admin lets the member
 * remove; `members` shows the roles.
 */
import { assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { GroupStates } from "../src/client/group_states.ts";
import {
  changeSettings,
  groupSettings,
  type MlsGroupState,
  removeMembers,
  type StagedCommit,
} from "../src/mls/mod.ts";
import { encodeRequestOnce } from "../src/wire/mod.ts";
import { uuidv7 } from "../src/client/ids.ts";
import { fromHex } from "../src/bytes.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Three users in #team made by alice. */
async function team(qpq: (user: string, ...args: string[]) => Promise<CliResult>) {
  for (const u of ["alice", "bob", "carol"]) ok(await qpq(u, "register-user"));
  ok(await qpq("alice", "create-group", "team"));
  ok(await qpq("alice", "invite", "team", "bob", "carol"));
  ok(await qpq("bob", "join"));
  ok(await qpq("carol", "join"));
}

Deno.test("qpq: a non-admin's remove is refused before sending; granted admin, it works", async () => {
  await withCliUsers(async (qpq) => {
    await team(qpq);
    assertStringIncludes(ok(await qpq("bob", "members", "#team")), "alice (admin), bob, carol");
    const json = JSON.parse(ok(await qpq("carol", "members", "#team", "--json")));
    assertEquals(json.admins, ["alice"]);

    const r = await qpq("bob", "remove", "team", "alice");
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr, "qpq: Only admins of #team can remove members\n");
    const g = await qpq("bob", "admin", "grant", "team", "carol");
    assertEquals(g.code, 1);
    assertEquals(g.stderr, "qpq: Only admins of #team can grant admin\n");
    // nothing was sent: everyone is still at the same epoch with alice in it
    assertStringIncludes(ok(await qpq("alice", "members", "#team")), "alice (admin), bob, carol");

    assertEquals(
      ok(await qpq("alice", "admin", "grant", "team", "bob")),
      "bob is an admin of #team\n",
    );
    assertStringIncludes(
      ok(await qpq("carol", "members", "#team")),
      "alice (admin), bob (admin), carol",
    );
    ok(await qpq("bob", "remove", "team", "carol"));
    assertStringIncludes(
      ok(await qpq("alice", "members", "#team")),
      "alice (admin), bob (admin)\n",
    );
    const rv = await qpq("bob", "admin", "revoke", "team", "alice");
    assertEquals(ok(rv), "alice is not an admin of #team\n");
    const last = await qpq("bob", "admin", "revoke", "team", "bob");
    assertEquals(last.code, 1);
    assertStringIncludes(last.stderr, "bob is the last admin of #team");
    // alice, no longer admin, is refused too
    const ar = await qpq("alice", "remove", "team", "bob");
    assertEquals(ar.stderr, "qpq: Only admins of #team can remove members\n");
  });
});

/**
 * carol's client is modified: it builds a commit with the MLS library (`make`) and stores it
 * as a pending commit, which her next run sends to the server.
 */
async function forge(
  dir: string,
  make: (state: MlsGroupState) => Promise<StagedCommit>,
  remove: string[],
  group = "#team",
  user = "carol",
): Promise<void> {
  const store = await openLocalStore(`${dir}/qpq-${user}.bin`, `pw-${user}`, {
    create: false,
    username: user,
    server: "",
  });
  const groups = new GroupStates(store);
  const conv = store.findConversationByName(group)!;
  const meta = groups.meta(conv.channelId!)!;
  const state = groups.open(meta);
  const staged = await make(state);
  const request = encodeRequestOnce({
    kind: "commit",
    channelId: fromHex(meta.channelId),
    epoch: Number(state.epoch),
    messageId: uuidv7(),
    payload: staged.outbound.commit,
    add: [],
    remove,
    welcomes: [],
    welcome: new Uint8Array(0),
    welcomeFor: [],
  });
  groups.save(meta, staged.state, { pendingCommit: request.bytes });
  await store.close();
}

Deno.test("qpq: a Remove commit forged by a non-admin is refused by the other members", async () => {
  await withCliUsers(async (qpq, { dir }) => {
    await team(qpq);
    await forge(dir, (s) => removeMembers(s, ["bob"]), ["bob"]);
    ok(await qpq("carol", "recv")); // sends it: the server knows nothing of roles
    const r = await qpq("alice", "recv");
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(
      r.stderr,
      "refused a change by carol: carol is not an admin and removed a member",
    );
    // not applied: bob is still a member in alice's group state
    assertStringIncludes(ok(await qpq("alice", "list")), "broken: refused a change by carol");
    // (bob himself is cut off by the server, which follows the commit's roster: see
    // docs/threat-model.md, "Roles")
  });
});

Deno.test("qpq: a settings change forged by a non-admin is refused by every other member", async () => {
  await withCliUsers(async (qpq, { dir }) => {
    await team(qpq);
    await forge(dir, (s) => {
      const now = groupSettings(s)!;
      return changeSettings(s, { ...now, admins: ["carol"] });
    }, []);
    ok(await qpq("carol", "recv"));
    for (const u of ["alice", "bob"]) {
      const r = await qpq(u, "recv");
      assertEquals(r.code, 0, r.stderr);
      assertStringIncludes(
        r.stderr,
        "refused a change by carol: carol is not an admin and changed the group's settings",
      );
    }
  });
});

Deno.test("qpq: an admin's disappearing timer deletes expired messages on every member", async () => {
  await withCliUsers(async (qpq) => {
    await team(qpq);
    const bad = await qpq("alice", "disappear", "team", "10s");
    assertEquals(bad.code, 2, bad.stderr);
    const nb = await qpq("bob", "disappear", "team", "1m");
    assertEquals(nb.stderr, "qpq: Only admins of #team can set disappearing messages\n");
    assertEquals(
      ok(await qpq("alice", "disappear", "team", "30s")),
      "Disappearing messages in #team: 30s\n",
    );
    ok(await qpq("bob", "recv"));
    ok(await qpq("carol", "recv"));
    assertStringIncludes(ok(await qpq("carol", "members", "#team")), "disappearing messages: 30s");
    const json = JSON.parse(ok(await qpq("bob", "members", "#team", "--json")));
    assertEquals(json.disappearingSeconds, 30);
    ok(await qpq("bob", "send", "--group", "team", "soon gone"));
    // it arrives (recv shows it; on this loaded machine a command may take seconds, so the
    // 30 s minimum leaves no room for a history check of each member before it expires)
    assertStringIncludes(ok(await qpq("alice", "recv")), "soon gone");
    await new Promise((r) => setTimeout(r, 31_000));
    for (const u of ["alice", "bob", "carol"]) {
      const h = ok(await qpq(u, "history", "#team"));
      assertEquals(h.includes("soon gone"), false, `${u}: ${h}`);
    }
  });
});

Deno.test("qpq: an admin sets the topic; every member sees the line and members shows it", async () => {
  await withCliUsers(async (qpq) => {
    await team(qpq);
    const nb = await qpq("bob", "describe", "team", "mine now");
    assertEquals(nb.code, 1);
    assertEquals(nb.stderr, "qpq: Only admins of #team can change the topic\n");
    assertEquals(
      ok(await qpq("alice", "describe", "team", "lunch \u202eat noon")),
      "Topic of #team: lunch \\u202eat noon\n",
    );
    ok(await qpq("alice", "admin", "grant", "team", "bob"));
    const got = ok(await qpq("carol", "recv"));
    assertStringIncludes(got, "* alice set the topic of #team: lunch \\u202eat noon\n");
    assertStringIncludes(got, "* alice made bob an admin of #team");
    assertStringIncludes(ok(await qpq("bob", "members", "#team")), "topic: lunch \\u202eat noon");
    const json = JSON.parse(ok(await qpq("carol", "members", "#team", "--json")));
    assertEquals([json.description, json.admins], ["lunch \u202eat noon", ["alice", "bob"]]);
  });
});

Deno.test("qpq: an admin renames a group; every member relabels it; a non-admin's rename is refused locally and a forged one by every member", async () => {
  await withCliUsers(async (qpq, { dir }) => {
    await team(qpq);
    // bob has a group of his own named crew: the two look alike on his device from now on
    ok(await qpq("bob", "create-group", "crew"));
    ok(await qpq("alice", "create-group", "other"));
    const nb = await qpq("bob", "rename", "team", "mine");
    assertEquals([nb.code, nb.stderr], [1, "qpq: Only admins of #team can rename the group\n"]);
    const bad = await qpq("alice", "rename", "team", "no spaces!");
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "Invalid group name");
    const taken = await qpq("alice", "rename", "team", "Other");
    assertEquals(taken.stderr, "qpq: You already have a group #other: choose another name\n");
    assertEquals(
      ok(await qpq("alice", "rename", "team", "crew")),
      "* alice renamed #team to #crew\n",
    );
    assertStringIncludes(ok(await qpq("alice", "list")), "#crew");
    // who joins later sees the name the admin set, not the one the server was told
    ok(await qpq("dave", "register-user"));
    ok(await qpq("alice", "invite", "crew", "dave"));
    ok(await qpq("dave", "join"));
    const daves = ok(await qpq("dave", "list"));
    assertStringIncludes(daves, "#crew");
    assertEquals(daves.includes("#team"), false, daves);

    const got = ok(await qpq("carol", "recv", "--json"));
    const ev = got.split("\n").filter((l) => l.includes('"renamedFrom"')).map((l) => JSON.parse(l));
    assertEquals(ev.length, 1, got);
    assertEquals([ev[0].conversation, ev[0].renamedFrom, ev[0].name, ev[0].by], [
      "#crew",
      "#team",
      "crew",
      "alice",
    ]);
    const list = ok(await qpq("carol", "list"));
    assertStringIncludes(list, "#crew");
    assertEquals(list.includes("#team"), false, list);
    // on bob's device two groups are named crew: both carry their id suffix
    const line = ok(await qpq("bob", "recv"));
    const m = line.match(/^\* alice renamed #team to (#crew~[0-9a-f]+)$/m);
    assertEquals(m !== null, true, line);
    const bobs = ok(await qpq("bob", "list")).split("\n").filter((l) => l.includes("#crew~"));
    assertEquals(bobs.length, 2, bobs.join("\n"));
    // the new name is how members address it (any case; bob says which with the suffix)
    ok(await qpq("carol", "send", "--group", "CREW", "hello crew"));
    assertStringIncludes(ok(await qpq("alice", "recv")), "[#crew] carol: hello crew");
    ok(await qpq("bob", "send", "--group", m![1]!, "me too"));
    assertStringIncludes(ok(await qpq("alice", "recv")), "[#crew] bob: me too");

    // alice, an admin, sets a name that is no group name (a modified client): the settings
    // change applies, but no member shows that name
    await forge(
      dir,
      (s) => {
        const now = groupSettings(s)!;
        return changeSettings(s, { ...now, name: "x\u202e\ny" });
      },
      [],
      "#crew",
      "alice",
    );
    ok(await qpq("alice", "recv"));
    const quiet = ok(await qpq("bob", "recv"));
    assertEquals(quiet.includes("renamed"), false, quiet);
    assertEquals(
      ok(await qpq("bob", "list")).split("\n").filter((l) => l.includes("#crew~")).length,
      2,
    );
    assertStringIncludes(ok(await qpq("carol", "recv")), "changed the settings of #crew");
    assertStringIncludes(ok(await qpq("carol", "list")), "#crew");

    // carol, not an admin, forges a rename: every other member refuses it
    await forge(
      dir,
      (s) => {
        const now = groupSettings(s)!;
        return changeSettings(s, { ...now, name: "evil" });
      },
      [],
      "#crew",
    );
    ok(await qpq("carol", "recv"));
    for (const u of ["alice", "bob"]) {
      const r = await qpq(u, "recv");
      assertEquals(r.code, 0, r.stderr);
      assertStringIncludes(
        r.stderr,
        "refused a change by carol: carol is not an admin and changed the group's settings",
      );
      const l = ok(await qpq(u, "list"));
      assertEquals(l.includes("evil"), false, l);
    }
  });
});
