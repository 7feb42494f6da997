/**
 * `qpq server backup` during traffic, `qpq server restore`, and what clients make of it:
 * the exact restore lines, the messages the restore lost sent again, nothing lost or shown
 * twice, no "expired" count. The server runs as a process (a restart on the same port
 * needs a new process, see client_test.ts), the clients in process over QUIC.
 *
 * @module
 */
import { MAX_HEAL_EPOCH_JUMP } from "../src/limits.ts";
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq, startServerProcess } from "./_support/cli.ts";
import { type TestUser, testUser } from "./_support/clients.ts";
import { type RestoreNoticeInfo, SqliteServerStore } from "../src/store/server/mod.ts";
import { fromUtf8, utf8 } from "../src/bytes.ts";
import { QpqError } from "../src/errors.ts";

const RESTORED = "the server was restored from a backup";

async function closeAll(...users: TestUser[]): Promise<void> {
  for (const u of users) await u.client.close();
}

/** `qpq server <args>` for the data directory `dataDir`; fails the test on a crash. */
async function serverCmd(dataDir: string, args: string[], env: Record<string, string> = {}) {
  const r = await runQpq(["server", ...args, "--data-dir", dataDir], { env });
  assert(!r.stderr.includes("at "), `a stack trace: ${r.stderr}`);
  return r;
}

/** The one line a refused command prints, and its exit code. */
function refused(r: { code: number; stdout: string; stderr: string }, code: number, part: string) {
  assertEquals(r.code, code, r.stderr);
  assertEquals(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertStringIncludes(lines[0]!, part);
}

Deno.test("qpq server backup during traffic, restore: clients say what happened, lost messages are sent again, none twice", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-restore-" });
  const dataDir = `${dir}/data`;
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const addr = server.addr;
  const ts = { addr, certPem: await Deno.readTextFile(`${dataDir}/server-cert.pem`) };
  const backup = `${dir}/qpq-backup.db`;
  try {
    const [alice, bob, carol, dave, erin] = await Promise.all(
      ["alice", "bob", "carol", "dave", "erin"].map((n) =>
        testUser(ts, dir, n, { timeoutMs: 10_000 })
      ),
    );
    await alice!.client.dm("bob");
    await bob!.client.sync();
    await alice!.client.createGroup("team");
    await alice!.client.invite("#team", ["bob"]);
    await bob!.client.sync();
    await dave!.client.dm("erin");
    await erin!.client.sync();
    await alice!.client.send("@bob", "m1");
    await alice!.client.send("@bob", "m2");
    await bob!.client.sync();

    // traffic while the backup runs: dave writes to erin without pause
    let writing = true;
    const daveSent: string[] = [];
    const traffic = (async () => {
      for (let i = 0; writing || i < 5; i++) {
        await dave!.client.send("@erin", `d${i}`);
        daveSent.push(`d${i}`);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const b = await serverCmd(dataDir, ["backup", "--out", backup]);
    writing = false;
    await traffic;
    assertEquals(b.code, 0, b.stderr);
    const line =
      /^backup written: (\S+) \(\S+ \S+, schema \d+, not sealed, taken (\d{4}-\d\d-\d\d \d\d:\d\d):\d\d UTC, integrity ok\); its OPAQUE secret is sealed with (\S+), not in the backup: keep a copy of that file apart, a restore on another machine needs it \(or use --with-key\)\n$/
        .exec(b.stdout);
    assert(line, b.stdout);
    assertEquals(line[1], backup);
    assertEquals(line[3], `${dataDir}/server-secrets.key`);
    const taken = line[2]!;
    assertEquals(Deno.statSync(backup).mode! & 0o777, 0o600);

    // group changes the restore loses: a member added, a DM opened (and written to)
    await alice!.client.invite("#team", ["carol"]);
    await carol!.client.sync();
    await bob!.client.sync();
    await carol!.client.dm("alice");
    await carol!.client.send("@alice", "c1");

    // after the backup: bob fetches three of alice's messages,
    // answers, and alice (fetching that answer) sends two more that bob does not fetch
    for (const t of ["a1", "a2", "a3"]) await alice!.client.send("@bob", t);
    await bob!.client.sync();
    await bob!.client.send("@alice", "b1");
    await alice!.client.sync(); // a send does not fetch first (issue 19): alice reads c1, b1
    for (const t of ["a4", "a5"]) await alice!.client.send("@bob", t);
    await erin!.client.sync();
    assertEquals(bob!.received(), ["m1", "m2", "a1", "a2", "a3"]);
    assertEquals(alice!.received(), ["c1", "b1"]);

    // refused: a restore while the server runs, a backup over an existing file
    refused(await serverCmd(dataDir, ["restore", backup]), 2, "stop the server first");
    refused(await serverCmd(dataDir, ["backup", "--out", backup]), 2, "exists");
    assertEquals(await server.stop(), 0);

    // refused: a damaged backup, a file that is not one
    const damaged = `${dir}/damaged.db`;
    const bytes = await Deno.readFile(backup);
    for (let i = 4096 * 2; i < bytes.length; i += 4096) bytes.fill(0x5a, i + 100, i + 2000);
    await Deno.writeFile(damaged, bytes);
    const bad = await serverCmd(dataDir, ["restore", damaged]);
    // damaged, not "not a database"; SQLite's report is several lines: one line here
    refused(bad, 1, `Cannot restore from ${damaged}: it is damaged (SQLite`);
    assert(!bad.stderr.includes("^J"), bad.stderr);
    await Deno.writeTextFile(`${dir}/notes.db`, "not a database\n");
    refused(
      await serverCmd(dataDir, ["restore", `${dir}/notes.db`]),
      1,
      "not a qpq server database",
    );
    refused(
      await serverCmd(dataDir, ["restore", backup], { QPQ_DB_KEY: "k".repeat(32) }),
      1,
      "without db_key",
    );

    const r = await serverCmd(dataDir, ["restore", backup]);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, `restored ${dataDir}/qpq.db from ${backup} (taken ${taken}:`);
    assertStringIncludes(r.stdout, "5 user(s) notified");
    assertStringIncludes(r.stdout, `the replaced database is kept as ${dataDir}/qpq.db.replaced-`);
    assertEquals(Deno.statSync(`${dataDir}/qpq.db`).mode! & 0o777, 0o600);
    for (const ext of ["-wal", "-shm", ".restoring"]) {
      assert(!exists(`${dataDir}/qpq.db${ext}`), `no ${ext} left beside the restored database`);
    }

    server = await startServerProcess(dataDir, addr);
    await bob!.client.sync(); // the notice; b1 sent again
    await alice!.client.sync(); // the notice; b1 again (dropped: shown once); a1..a5 sent again
    await bob!.client.sync(); // a1..a3 again (dropped), a4, a5
    await dave!.client.sync();
    await erin!.client.sync();
    await dave!.client.sync();
    await erin!.client.sync();

    const restored = `${RESTORED} (taken ${taken} UTC)`;
    const notice = `${restored}: messages sent to you after it may be missing`;
    // #team (carol added since) is healed by bob, the first of its members to sync
    const team = `${restored}: #team changed since then; the server's copy was brought up to date`;
    const dm = (peer: string) =>
      `${restored}: @${peer} changed since then and the server has it as it was; create it again`;
    const aw = alice!.warnings();
    assertEquals(aw, [
      notice,
      dm("carol"),
      `${restored}: 5 message(s) you sent since were sent again`,
    ]);
    assertEquals(bob!.warnings(), [
      notice,
      team,
      `${restored}: 1 message(s) you sent since were sent again`,
    ]);
    await carol!.client.sync();
    const cw = carol!.warnings();
    assertEquals(cw[0], notice);
    assertEquals(cw[1], dm("alice"));
    assertEquals(cw.slice(2), [
      `${restored}: 1 message(s) you sent since could not be sent again ` +
      "(their conversations changed since)",
    ]);
    assertEquals(bob!.received(), ["m1", "m2", "a1", "a2", "a3", "a4", "a5"]);
    assertEquals(alice!.received(), ["c1", "b1"]);
    assertEquals(bob!.client.history("@alice").length, 8);
    // a1..a3 came again: their keys were used, decrypting failed, and nothing was shown
    for (const u of [alice!, bob!]) {
      assertEquals(u.events.filter((e) => e.kind === "unreadable"), []);
    }
    // the traffic during the backup: every message once, in order, whichever side of the
    // snapshot it fell
    assertEquals(erin!.received(), daveSent);
    for (const u of [dave!, erin!]) {
      assert(!u.warnings().some((w) => w.includes("expired")), u.warnings().join("\n"));
      assertEquals(u.warnings()[0], notice);
    }
    await closeAll(alice!, bob!, carol!, dave!, erin!);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("after a restore, a group changed since the backup heals: the member added since gets messages and sends, invite and remove work", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-restore-heal-" });
  const dataDir = `${dir}/data`;
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const addr = server.addr;
  const ts = { addr, certPem: await Deno.readTextFile(`${dataDir}/server-cert.pem`) };
  const backup = `${dir}/qpq-backup.db`;
  try {
    const [alice, bob, carol, dave, erin] = await Promise.all(
      ["alice", "bob", "carol", "dave", "erin"].map((n) =>
        testUser(ts, dir, n, { timeoutMs: 10_000 })
      ),
    );
    await alice!.client.createGroup("team");
    await alice!.client.invite("#team", ["bob", "dave"]);
    await bob!.client.sync();
    await dave!.client.sync();
    const b = await serverCmd(dataDir, ["backup", "--out", backup]);
    assertEquals(b.code, 0, b.stderr);
    const taken = /taken (\d{4}-\d\d-\d\d \d\d:\d\d):\d\d UTC/.exec(b.stdout)![1]!;
    // changed since the backup: carol added, dave removed
    await alice!.client.invite("#team", ["carol"]);
    await alice!.client.remove("#team", ["dave"]);
    for (const u of [carol!, bob!, dave!]) await u.client.sync();
    assertEquals(carol!.client.members("#team").sort(), ["alice", "bob", "carol"]);
    assertEquals(await server.stop(), 0);
    const r = await serverCmd(dataDir, ["restore", backup]);
    assertEquals(r.code, 0, r.stderr);

    server = await startServerProcess(dataDir, addr);
    // alice's first command is an invite: its sync brings the notice, and her client heals
    // #team (carol on the roster, dave off) before the invite's commit (which, sent first,
    // would have been taken as the heal without carol)
    const erinAdded = await alice!.client.invite("#team", ["erin"]);
    assertEquals(erinAdded.done, ["erin"]);
    await bob!.client.sync(); // the heal and the invite: nothing left to do
    await carol!.client.sync();
    await erin!.client.sync();
    const restored = `${RESTORED} (taken ${taken} UTC)`;
    assertEquals(alice!.warnings(), [
      `${restored}: messages sent to you after it may be missing`,
      `${restored}: #team changed since then; the server's copy was brought up to date`,
    ]);
    assertEquals(bob!.warnings(), [`${restored}: messages sent to you after it may be missing`]);

    await alice!.client.send("#team", "after the restore");
    await carol!.client.sync();
    assertEquals(carol!.received(), ["after the restore"]);
    await carol!.client.send("#team", "carol here");
    for (const u of [alice!, bob!, erin!]) await u.client.sync();
    assertEquals(alice!.received(), ["carol here"]);
    assertEquals(bob!.received(), ["after the restore", "carol here"]);
    assertEquals(erin!.received(), ["after the restore", "carol here"]);
    // dave is off the server's roster as in the group: nothing of the group reaches him
    await dave!.client.sync();
    assertEquals(dave!.received(), []);

    // invite and remove work on the healed group; all members agree on its epoch
    const removed = await alice!.client.remove("#team", ["carol"]);
    assertEquals(removed.done, ["carol"]);
    const added = await alice!.client.invite("#team", ["dave"]);
    assertEquals(added.done, ["dave"]);
    for (const u of [bob!, carol!, dave!, erin!]) await u.client.sync();
    assertEquals(bob!.client.members("#team").sort(), ["alice", "bob", "dave", "erin"]);
    assertEquals(
      bob!.client.epochInfo("#team").authenticator,
      alice!.client.epochInfo("#team").authenticator,
    );
    await closeAll(alice!, bob!, carol!, dave!, erin!);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq server backup of a sealed database needs no key; restore needs the right one; qpq recv says it once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-restore-sealed-" });
  const dataDir = `${dir}/data`;
  const key = { QPQ_DB_KEY: "a-long-enough-random-db-key-for-this-test" };
  let server = await startServerProcess(dataDir, "127.0.0.1:0", { env: key });
  // a CLI user: what `qpq recv` prints after the restore
  const cli = {
    QPQ_SERVER: server.addr,
    QPQ_CA_CERT: `${dataDir}/server-cert.pem`,
    QPQ_PASSWORD: "pw-zed",
  };
  const zed = (...args: string[]) => runQpq([...args, "--username", "zed"], { cwd: dir, env: cli });
  try {
    const reg = await zed("register-user");
    assertEquals(reg.code, 0, reg.stderr);
    const b = await serverCmd(dataDir, ["backup", "--out", `${dir}/b.db`]);
    assertEquals(b.code, 0, b.stderr);
    assertStringIncludes(b.stdout, ", sealed, ");
    const b2 = await serverCmd(dataDir, ["backup", "--out", `${dir}/b2.db`], key);
    assertEquals(b2.code, 0, b2.stderr);
    refused(
      await serverCmd(dataDir, ["backup", "--out", `${dir}/b3.db`], { QPQ_DB_KEY: "x".repeat(40) }),
      1,
      "wrong db_key",
    );
    assert(!exists(`${dir}/b3.db`), "a backup that failed its check is removed");
    assertEquals(await server.stop(), 0);
    refused(await serverCmd(dataDir, ["restore", `${dir}/b.db`]), 1, "no db_key");
    refused(
      await serverCmd(dataDir, ["restore", `${dir}/b.db`], { QPQ_DB_KEY: "x".repeat(40) }),
      1,
      "wrong db_key",
    );
    refused(await serverCmd(dataDir, ["restore", `${dir}/none.db`], key), 1, "no such file");
    const r = await serverCmd(dataDir, ["restore", `${dir}/b.db`], key);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, ", sealed, ");
    // the restored database works with the key: a second restore keeps it aside
    const again = await serverCmd(dataDir, ["restore", `${dir}/b2.db`], key);
    assertEquals(again.code, 0, again.stderr);
    assertStringIncludes(again.stdout, "the replaced database is kept as");
    const taken = /taken (\d{4}-\d\d-\d\d \d\d:\d\d):\d\d UTC/.exec(again.stdout)?.[1];
    assert(taken, again.stdout);

    server = await startServerProcess(dataDir, cli.QPQ_SERVER, { env: key });
    const recv = await zed("recv");
    assertEquals(recv.code, 0, recv.stderr);
    assertEquals(
      recv.stderr,
      `qpq: warning: the server was restored from a backup (taken ${taken} UTC): ` +
        "messages sent to you after it may be missing\n",
    );
    assertEquals((await zed("recv")).stderr, "", "said once");
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq server backup without db_key: the key file stays out unless --with-key; a new machine restores only with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-restore-keyfile-" });
  const dataDir = `${dir}/data`;
  const server = await startServerProcess(dataDir, "127.0.0.1:0");
  const cli = {
    QPQ_SERVER: server.addr,
    QPQ_CA_CERT: `${dataDir}/server-cert.pem`,
    QPQ_PASSWORD: "pw-zed",
  };
  let key = "";
  try {
    const reg = await runQpq(["register-user", "--username", "zed"], { cwd: dir, env: cli });
    assertEquals(reg.code, 0, reg.stderr);
    const b = await serverCmd(dataDir, ["backup", "--out", `${dir}/b.db`]);
    assertEquals(b.code, 0, b.stderr);
    assertStringIncludes(b.stdout, `sealed with ${dataDir}/server-secrets.key, not in the backup`);
    assert(!exists(`${dir}/b.db.key`));
    const c = await serverCmd(dataDir, ["backup", "--out", `${dir}/c.db`, "--with-key"]);
    assertEquals(c.code, 0, c.stderr);
    assertStringIncludes(c.stdout, `the secrets key file is copied to ${dir}/c.db.key`);
    assertEquals(Deno.statSync(`${dir}/c.db.key`).mode! & 0o777, 0o600);
    key = await Deno.readTextFile(`${dataDir}/server-secrets.key`);
    assertEquals(await Deno.readTextFile(`${dir}/c.db.key`), key);
    refused(
      await serverCmd(dataDir, ["backup", "--out", `${dir}/d.db`, "--with-key"], {
        QPQ_DB_KEY: "x".repeat(40),
      }),
      2,
      "--with-key copies the secrets key file of a server without db_key",
    );
  } finally {
    assertEquals(await server.stop(), 0);
  }
  try {
    // a new machine: the backup alone is refused, with its key file it restores
    const fresh = `${dir}/new`;
    await Deno.mkdir(fresh, { mode: 0o700 });
    refused(await serverCmd(fresh, ["restore", `${dir}/b.db`]), 1, "server-secrets.key is missing");
    assert(!exists(`${fresh}/server-secrets.key`), "no key file made for a backup that needs one");
    const r = await serverCmd(fresh, ["restore", `${dir}/c.db`]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(await Deno.readTextFile(`${fresh}/server-secrets.key`), key);
    assertEquals(Deno.statSync(`${fresh}/server-secrets.key`).mode! & 0o777, 0o600);
    // the restored setup is the old one: zed's password still works on the new machine
    const again = await startServerProcess(fresh, "127.0.0.1:0");
    try {
      const login = await runQpq(["login", "--username", "zed"], {
        cwd: dir,
        env: { ...cli, QPQ_SERVER: again.addr, QPQ_CA_CERT: `${fresh}/server-cert.pem` },
      });
      assertEquals(login.code, 0, login.stderr);
    } finally {
      assertEquals(await again.stop(), 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("SqliteServerStore.markRestored moves every queue past the backup and past an earlier restore, one notice each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-mark-" });
  let now = 1_800_000_000_000;
  const clock = () => now;
  try {
    const path = `${dir}/qpq.db`;
    const s = await SqliteServerStore.open(path, { clock });
    for (const u of ["ann", "ben"]) await s.createUser(u, new Uint8Array(32));
    for (let i = 0; i < 3; i++) {
      await s.enqueue({
        sender: "ann",
        messageId: `m${i}`.padEnd(32, "0"),
        channelId: null,
        payload: new Uint8Array([i]),
        recipients: ["ben"],
      });
    }
    await s.close();
    const backup = `${dir}/old.db`;
    await SqliteServerStore.backupTo(path, backup, { now: clock });
    const notice = (n: RestoreNoticeInfo) => utf8(JSON.stringify(n));

    const restoreFrom = async (file: string) => {
      const copy = `${dir}/r${now}.db`;
      await Deno.copyFile(file, copy);
      const r = await SqliteServerStore.open(copy, { clock });
      const mark = await r.markRestored({ notice });
      const ben = await r.fetch("ben", 0);
      const ann = await r.fetch("ann", 0);
      await r.close();
      return { mark, ben, ann };
    };
    const first = await restoreFrom(backup);
    assertEquals(first.mark.generation, 1);
    assertEquals(first.mark.backupTakenAt, now);
    assert(first.mark.seqFloor > 3 + 1e9 - 1, "past the backup by the gap");
    assertEquals(first.ben.map((m) => m.seq), [1, 2, 3, first.mark.seqFloor]);
    assertEquals(
      JSON.parse(fromUtf8(first.ben[3]!.payload)),
      { generation: 1, backupTakenAt: now, queueHighWater: 3 },
    );
    assertEquals(first.ann.map((m) => m.seq), [first.mark.seqFloor], "a queue never used too");
    // later, a restore from the same (older) backup again: past the first restore's numbers
    now += 60_000;
    const second = await restoreFrom(backup);
    assert(second.mark.seqFloor > first.mark.seqFloor + 1e6, "past the first restore's life");
    const info = SqliteServerStore.inspectFile(`${dir}/r${now}.db`);
    assertEquals(info.restoreGeneration, 1, "the generation comes from the backup");
    assertEquals(info.backupTakenAt, undefined, "a restored database is no backup");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteServerStore: a heal (a commit past the epoch) is accepted once, only on a channel a restore put back and nothing committed to since", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-heal-" });
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      if (e instanceof QpqError) return e.code;
      throw e;
    }
    return "accepted";
  };
  try {
    const path = `${dir}/qpq.db`;
    const s = await SqliteServerStore.open(path);
    for (const u of ["ann", "ben", "cat", "dan"]) await s.createUser(u, new Uint8Array(32));
    const g = await s.createGroupChannel({ name: "g", creator: "ann" });
    const h = await s.createGroupChannel({ name: "h", creator: "ann" });
    await s.addMembers(g.id, ["ben"]);
    await s.addMembers(h.id, ["ben"]);
    let n = 0;
    const heal = (
      store: SqliteServerStore,
      channelId: string,
      epoch: number,
      rosterAdd: string[] = [],
    ) =>
      store.commitAndFanOut({
        sender: "ben",
        channelId,
        epoch,
        messageId: `h${n++}`.padEnd(32, "0"),
        payload: utf8("commit"),
        recipients: ["ann"],
        rosterAdd,
        heal: true,
      });
    // never restored: a commit past the epoch is an epoch conflict, heal or not
    assertEquals(await code(heal(s, g.id, 5, ["cat"])), "epoch_conflict");
    await s.close();
    await SqliteServerStore.backupTo(path, `${dir}/old.db`);
    const r = await SqliteServerStore.open(`${dir}/old.db`);
    await r.markRestored({ notice: () => new Uint8Array(0) });
    // restored: a jump past the bound is refused in words (it would let a member wedge the
    // channel; an epoch conflict would make its client retry and give up without a line)
    assertEquals(await code(heal(r, g.id, MAX_HEAL_EPOCH_JUMP + 1, ["cat"])), "validation");
    assertEquals((await r.getChannel(g.id))?.epoch, 0, "nothing moved");
    // one heal, then the channel is as any other
    assertEquals(await code(heal(r, g.id, 5, ["cat"])), "accepted");
    assertEquals((await r.getChannel(g.id))?.epoch, 6);
    assertEquals((await r.listMembers(g.id)).sort(), ["ann", "ben", "cat"]);
    assertEquals(await code(heal(r, g.id, 9, ["dan"])), "epoch_conflict", "a second heal");
    // a commit at the channel's epoch ends the heal too
    await r.commitAndFanOut({
      sender: "ann",
      channelId: h.id,
      epoch: 0,
      messageId: "c0".padEnd(32, "0"),
      payload: utf8("commit"),
      recipients: ["ben"],
    });
    assertEquals(await code(heal(r, h.id, 5, ["dan"])), "epoch_conflict");
    assertEquals((await r.listMembers(h.id)).sort(), ["ann", "ben"]);
    await r.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq server restore keeps the names of accounts registered after the backup for their owners (issue 21)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-restore-names-" });
  const dataDir = `${dir}/data`;
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const addr = server.addr;
  const env = (user: string) => ({
    QPQ_SERVER: addr,
    QPQ_CA_CERT: `${dataDir}/server-cert.pem`,
    QPQ_PASSWORD: `pw-${user}`,
  });
  const other = `${dir}/other`;
  await Deno.mkdir(other);
  const qpq = (user: string, args: string[], cwd = dir) =>
    runQpq([...args, "--username", user], { cwd, env: env(user) });
  const ok = (r: { code: number; stdout: string; stderr: string }) => {
    assertEquals(r.code, 0, r.stderr);
    return r.stdout;
  };
  try {
    ok(await qpq("alice", ["register-user"]));
    const backup = `${dir}/qpq-backup.db`;
    ok(await serverCmd(dataDir, ["backup", "--out", backup]));
    const fp = ok(await qpq("bob", ["register-user"])).split("\n")[1];
    assertEquals(await server.stop(), 0);
    const restore = ok(await serverCmd(dataDir, ["restore", backup]));
    assertStringIncludes(
      restore,
      "; 1 account name(s) lost since the backup kept for their owners",
    );
    server = await startServerProcess(dataDir, addr);
    // nobody else takes bob's name (it was registered anew by anyone), nor a look-alike
    refused(await qpq("bob", ["register-user"], other), 1, "Username bob is already registered");
    refused(
      await qpq("b0b", ["register-user"], other),
      1,
      "looks too much like an existing account",
    );
    // bob is told in one line what happened and how to get it back
    refused(
      await qpq("bob", ["login"]),
      1,
      "Account bob was lost when the server was restored from a backup: qpq register-user",
    );
    // his own state takes it back, with the identity he had
    assertEquals(ok(await qpq("bob", ["register-user"])).split("\n")[1], fp);
    ok(await qpq("alice", ["send", "--to", "bob", "welcome back"]));
    assertEquals(ok(await qpq("bob", ["recv"])), "request from @alice: 1 message\n");
    // taken back, the name is an account like any other
    refused(await qpq("bob", ["register-user"], other), 1, "Username bob is already registered");
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
