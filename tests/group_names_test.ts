/**
 * Group names are labels, not a server-wide namespace (issue 21): a group is its random id;
 * two unrelated groups may carry the same name, and nobody learns that a name is in use.
 * A user's own groups are looked up case-insensitively, a second own group of the same name
 * (any case) is refused, and a name that matches several groups is refused in one line
 * listing each with its `~id` suffix. The server schema lost its unique name index in one
 * migration, checked on the golden databases of earlier schemas.
 */
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_support/assert.ts";
import { UsageError } from "../src/errors.ts";
import { pickGroup } from "../src/client/conversations.ts";
import type { Conversation } from "../src/store/client/mod.ts";
import { type CliResult, withCliUsers } from "./_support/cli.ts";
import { startTestServer } from "./_support/server.ts";
import { toHex } from "../src/bytes.ts";
import {
  migrate,
  readSchemaVersion,
  SCHEMA_VERSION,
  Sealer,
  SqliteServerStore,
} from "../src/store/server/mod.ts";
import { DatabaseSync } from "node:sqlite";
import { copyGolden, GOLDEN, GOLDEN_DB_KEY } from "./_support/golden.ts";
import { testUser } from "./_support/clients.ts";

function ok(r: CliResult): CliResult {
  assertEquals(r.code, 0, r.stderr);
  return r;
}

/** The `~xxxx` suffixes of `#name` in a `list` output, in order. */
function suffixes(list: string, name: string): string[] {
  return [...list.matchAll(new RegExp(`#${name}~([0-9a-f]+)`, "g"))].map((m) => m[1]!);
}

Deno.test("qpq create-group: another user's group of the same name is another group; a second own one (any case) is refused; #Team2 is #team2", async () => {
  await withCliUsers(async (qpq) => {
    for (const u of ["alice", "mallory", "bob"]) ok(await qpq(u, "register-user"));
    assertEquals(
      ok(await qpq("alice", "create-group", "team2")).stdout.split(" (")[0],
      "Group #team2 created",
    );
    // an unrelated user's team2: created, and nothing says alice has one
    const m = ok(await qpq("mallory", "create-group", "team2"));
    assertEquals(m.stdout.split(" (")[0], "Group #team2 created");
    assertEquals(m.stderr, "");
    assert(!/exists|taken|alice/i.test(m.stdout + m.stderr), m.stdout + m.stderr);
    assertEquals(
      ok(await qpq("mallory", "members", "#team2")).stdout.split("\n")[0],
      "#team2: mallory (admin)",
    );

    // alice's second team2, in any case: she is told she has one (nothing is created)
    for (const name of ["Team2", "#TEAM2", "team2"]) {
      const r = await qpq("alice", "create-group", name);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assertEquals(r.stderr, "qpq: You already have a group #team2: choose another name\n");
    }
    // her group is found by any case
    ok(await qpq("alice", "invite", "#Team2", "bob"));
    assertEquals(ok(await qpq("bob", "recv")).stdout, "alice invites you to #team2\n");
    assertEquals(
      ok(await qpq("bob", "accept", "#Team2")).stdout,
      "* joined #team2 (invited by alice)\n",
    );
    ok(await qpq("alice", "send", "--to", "#TEAM2", "hello team"));
    assertEquals(ok(await qpq("bob", "recv")).stdout, "[#team2] alice: hello team\n");
    const members = ok(await qpq("alice", "members", "#Team2")).stdout;
    assertEquals(members.split("\n")[0], "#team2: alice (admin), bob");
    assertEquals(ok(await qpq("alice", "members", "team2")).stdout, members);

    // mallory invites bob to hers: the two told apart by their id suffix from now on
    ok(await qpq("mallory", "invite", "#team2", "bob"));
    const invite = ok(await qpq("bob", "recv")).stdout;
    const theirs = /^mallory invites you to #team2~([0-9a-f]{4})\n$/.exec(invite)?.[1];
    assert(theirs !== undefined, invite);
    // the only request named team2 (any case) is mallory's
    assertEquals(
      ok(await qpq("bob", "accept", "#TEAM2")).stdout,
      `* joined #team2~${theirs} (invited by mallory)\n`,
    );
    const list = ok(await qpq("bob", "list")).stdout;
    const ids = suffixes(list, "team2");
    assertEquals(ids.length, 2, list);
    assert(ids.includes(theirs), list);
    const alices = ids.find((x) => x !== theirs)!;
    // a bare name of both, in any case and either form, is refused in one line naming each
    for (const [ref, how] of [["#team2", "--to"], ["#Team2", "--to"], ["team2", "--group"]]) {
      const r = await qpq("bob", "send", how!, ref!, "which?");
      assertEquals(r.code, 2, r.stdout + r.stderr);
      assertEquals(
        r.stderr,
        `qpq: #${ref!.replace(/^#/, "")} matches several groups: say which (${
          ids.map((x) => `#team2~${x}`).join(", ")
        })\n`,
      );
    }
    // the suffixed form picks one, in any case
    ok(await qpq("bob", "send", "--to", `#Team2~${alices}`, "to alice's"));
    ok(await qpq("bob", "send", "--group", `team2~${theirs}`, "to mallory's"));
    assertEquals(ok(await qpq("alice", "recv")).stdout, "[#team2] bob: to alice's\n");
    assertEquals(ok(await qpq("mallory", "recv")).stdout, "[#team2] bob: to mallory's\n");
  });
});

/** What the file says about `channels`: columns, the columns each index covers, dangling references. */
function channelsSchema(path: string): { columns: string[]; indexed: string[]; fk: unknown[] } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const indexes = db.prepare("SELECT name FROM pragma_index_list('channels')").all();
    return {
      columns: db.prepare("SELECT name FROM pragma_table_info('channels')").all()
        .map((r) => String(r.name)),
      indexed: indexes.flatMap((i) =>
        db.prepare("SELECT name FROM pragma_index_info(?)").all(String(i.name))
          .map((r) => String(r.name))
      ).sort(),
      fk: db.prepare("PRAGMA foreign_key_check").all(),
    };
  } finally {
    db.close();
  }
}

/** The sealed `name` of each group channel in the file. */
function sealedNames(path: string): string[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare("SELECT name FROM channels WHERE kind = 'group' ORDER BY id").all()
      .map((r) => toHex(r.name as Uint8Array));
  } finally {
    db.close();
  }
}

Deno.test("createGroup over the wire: two users' groups of one name are two groups, answered alike; the file keeps no name lookup", async () => {
  const ts = await startTestServer({
    file: { db_key: "group names test db_key" },
    keepDataDir: true,
  });
  const dir = await Deno.makeTempDir({ prefix: "qpq-group-names-" });
  try {
    const made = [];
    for (const [user, name] of [["ann", "ops"], ["ben", "ops"], ["cid", "OPS"]]) {
      const u = await testUser(ts, dir, user!);
      try {
        made.push(await u.client.createGroup(name!));
        assertEquals(u.client.listConversations().filter((c) => c.kind === "group").length, 1);
      } finally {
        await u.client.close();
      }
    }
    // the same answer for each but the id: nothing tells that the name was in use
    assertEquals(made.map((c) => c.name), ["#ops", "#ops", "#OPS"]);
    assertEquals(new Set(made.map((c) => c.channelId)).size, 3);
    assert(made.every((c) => /^[0-9a-f]{32}$/.test(c.channelId ?? "")));
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
  try {
    const path = `${ts.dataDir}/qpq.db`;
    const schema = channelsSchema(path);
    assert(!schema.columns.includes("name_ref"), schema.columns.join());
    assert(!schema.indexed.includes("name"), schema.indexed.join());
    assertEquals(schema.indexed, ["dm_ref", "id"]);
    // each label sealed under its own row: equal names do not look equal at rest
    const names = sealedNames(path);
    assertEquals(names.length, 3);
    assertEquals(new Set(names).size, 3);
  } finally {
    await Deno.remove(ts.dataDir, { recursive: true });
  }
});

for (const g of GOLDEN) {
  Deno.test(`migration 8 on the golden schema ${g.version}${g.sealed ? " (sealed)" : ""} database: the unique name index is gone, #team keeps its id, name and members`, async () => {
    const dir = await copyGolden(g.file);
    const path = `${dir}/qpq.db`;
    try {
      const before = channelsSchema(path);
      assert(before.columns.includes("name_ref"), "the old schema has the unique name lookup");
      const opts = g.sealed ? { dbKey: GOLDEN_DB_KEY } : {};
      const s = await SqliteServerStore.open(path, opts);
      try {
        const [team] = (await s.listChannels("bob")).filter((c) => c.kind === "group");
        assertEquals(team?.name, "team");
        assertEquals(await s.listMembers(team!.id), ["alice", "bob", "carol"]);
        // dave, in no group of alice's, creates his own team (and Team): both are new groups
        const mine = await s.createGroupChannel({ name: "team", creator: "dave" });
        const upper = await s.createGroupChannel({ name: "Team", creator: "dave" });
        assert(mine.id !== team!.id && upper.id !== team!.id && mine.id !== upper.id);
        assertEquals(await s.listMembers(mine.id), ["dave"]);
        assertEquals((await s.getChannel(team!.id))?.name, "team");
        // the DM is still found by its pair, not made twice
        const dm = await s.getOrCreateDm("alice", "bob");
        assertEquals(dm.created, false);
      } finally {
        await s.close();
      }
      const after = channelsSchema(path);
      assertEquals(after.columns, before.columns.filter((c) => c !== "name_ref"));
      assertEquals(after.indexed, ["dm_ref", "id"]);
      assertEquals(after.fk, []);
      // opened again: nothing left to migrate
      const again = await SqliteServerStore.open(path, g.sealed ? { dbKey: GOLDEN_DB_KEY } : {});
      assertEquals(again.migrationNotices, []);
      assertEquals((await again.listChannels("dave")).length, 2);
      await again.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("migrate rebuilds channels with foreign keys off only while it runs; a dangling member row stops it", async () => {
  const dir = await copyGolden(GOLDEN.find((g) => g.version === 4 && !g.sealed)!.file);
  try {
    const db = new DatabaseSync(`${dir}/qpq.db`);
    try {
      db.exec("PRAGMA foreign_keys = ON");
      const sealer = Sealer.plain();
      migrate(db, 1, sealer);
      sealer.destroy();
      assertEquals(db.prepare("PRAGMA foreign_keys").get()?.foreign_keys, 1, "enforced again");
      assertEquals(readSchemaVersion(db), SCHEMA_VERSION);
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // a roster row of a channel that is not there (only writable with foreign keys off)
  const broken = await copyGolden(GOLDEN.find((g) => g.version === 4 && !g.sealed)!.file);
  try {
    const db = new DatabaseSync(`${broken}/qpq.db`);
    db.exec("PRAGMA foreign_keys = OFF");
    db.prepare("INSERT INTO members (channel_id, uid) VALUES ('ff', CAST('dave' AS BLOB))").run();
    db.close();
    const err = await assertRejects(() => SqliteServerStore.open(`${broken}/qpq.db`));
    assertStringIncludes(err.message, "Cannot migrate database to schema version 8");
    assertEquals(
      channelsSchema(`${broken}/qpq.db`).columns.includes("name_ref"),
      true,
      "rolled back",
    );
  } finally {
    await Deno.remove(broken, { recursive: true });
  }
});

Deno.test("pickGroup finds a group by its name in any case or its ~id prefix; several are refused in one line, each with its suffix", () => {
  const group = (name: string, channelId: string): Conversation => ({
    id: channelId,
    kind: "group",
    name,
    channelId,
    createdAt: 0,
  });
  const solo = [group("#team2", "aa11".repeat(8))];
  for (const ref of ["#team2", "#Team2", "#TEAM2", "#team2~aa", "#TEAM2~AA11"]) {
    assertEquals(pickGroup(solo, ref)?.id, solo[0]!.id, ref);
  }
  assertEquals(pickGroup(solo, "#team3"), undefined);
  assertEquals(pickGroup(solo, "#team2~bb"), undefined);
  // two of one name in different cases, stored before look-alikes were suffixed: the list
  // gives each the suffix that picks it
  const two = [group("#team2", "aa11".repeat(8)), group("#Team2", "bb22".repeat(8))];
  const err = assertThrows(() => pickGroup(two, "#TEAM2"), UsageError);
  assertEquals(err.message, "#TEAM2 matches several groups: say which (#team2~aa11, #Team2~bb22)");
  assertEquals(pickGroup(two, "#team2~bb22")?.id, two[1]!.id);
  assertEquals(pickGroup(two, "#team2~aa")?.id, two[0]!.id);
});
