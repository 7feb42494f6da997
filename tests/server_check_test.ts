/**
 * `qpq server --check` through the spawned entry point: golden databases of every earlier
 * schema (would migrate, file unchanged byte for byte, no file created), a current one, a
 * damaged one, a foreign file, a missing one, a newer schema, a wrong db_key, and a
 * database a running server has open.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq } from "./_support/cli.ts";
import { startTestServer } from "./_support/server.ts";
import { copyGolden, GOLDEN, GOLDEN_DB_KEY } from "./_support/golden.ts";
import { SCHEMA_VERSION, SqliteServerStore } from "../src/store/server/mod.ts";
import { DatabaseSync } from "node:sqlite";
import { connectServer } from "../src/client/connection.ts";

function check(dataDir: string, dbKey?: string) {
  return runQpq(
    ["server", "--check", "--data-dir", dataDir],
    dbKey === undefined ? {} : { env: { QPQ_DB_KEY: dbKey } },
  );
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** A golden database migrated to the current schema by this build (plain). */
async function currentDb(): Promise<string> {
  const dir = await copyGolden(GOLDEN[0]!.file);
  await (await SqliteServerStore.open(`${dir}/qpq.db`)).close();
  return dir;
}

for (const g of GOLDEN) {
  Deno.test(`qpq server --check on schema ${g.version}${g.sealed ? " (sealed)" : ""}: would migrate, changes nothing`, async () => {
    const dir = await copyGolden(g.file);
    const before = await Deno.readFile(`${dir}/qpq.db`);
    const r = await check(dir, g.sealed ? GOLDEN_DB_KEY : undefined);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stderr, "");
    const last = r.stdout.trim().split("\n").at(-1)!;
    assertStringIncludes(
      last,
      `ok: schema ${g.version}, 4 accounts, integrity ok, would migrate schema ${g.version} → ${SCHEMA_VERSION}: `,
    );
    // v3 and v4 were numbered before "case-insensitive usernames" was merged in as 3
    const later = Array.from({ length: SCHEMA_VERSION - 5 }, (_, i) => 6 + i);
    const steps = [...{ 1: [2, 3, 4, 5], 2: [3, 4, 5], 3: [3, 5], 4: [3] }[g.version]!, ...later];
    assertEquals([...last.matchAll(/(\d+) "/g)].map((m) => Number(m[1])), steps, last);
    assertEquals(last.includes("renumbered"), g.version >= 3, last);
    assertStringIncludes(r.stdout, g.sealed ? "db_key: opens it" : "db_key: none, not sealed");
    assertStringIncludes(r.stdout, "migration dry run (on a copy): ok");
    assertEquals(await Deno.readFile(`${dir}/qpq.db`), before, "the database is unchanged");
    assertEquals(await files(dir), ["qpq.db"], "no -wal, -shm or copy left behind");
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("qpq server --check on a current database: ok, no migration needed", async () => {
  const dir = await currentDb();
  const r = await check(dir);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(
    r.stdout.trim().split("\n").at(-1),
    `ok: schema ${SCHEMA_VERSION}, 4 accounts, integrity ok, no migration needed`,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server --check while a server runs on the database: ok, and it keeps serving", async () => {
  const dir = await currentDb();
  const ts = await startTestServer({ dataDir: dir });
  try {
    const r = await check(dir);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "no migration needed");
    assert(
      await Deno.stat(`${dir}/qpq.db-wal`).then(() => true, () => false),
      "read through the server's WAL",
    );
    const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    assertEquals((await conn.call({ kind: "health" }, "health")).status, "ok");
    await conn.close();
  } finally {
    await ts.close();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server --check reads a -wal left without its -shm, and adds no file", async () => {
  // a server stopped without a checkpoint: the last account is only in qpq.db-wal
  const src = await currentDb();
  const db = new DatabaseSync(`${src}/qpq.db`);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0");
  db.prepare("INSERT INTO users (uid, username, record, created_at) VALUES (?, ?, ?, 0)")
    .run(new Uint8Array([101]), new Uint8Array([101]), new Uint8Array(1));
  const dir = await Deno.makeTempDir({ prefix: "qpq-check-" });
  for (const f of ["qpq.db", "qpq.db-wal"]) await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
  db.close();
  const before = [await Deno.readFile(`${dir}/qpq.db`), await Deno.readFile(`${dir}/qpq.db-wal`)];
  assert(before[1]!.length > 0, "the WAL holds the last account");
  const r = await check(dir);
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, `ok: schema ${SCHEMA_VERSION}, 5 accounts`);
  assertEquals(await files(dir), ["qpq.db", "qpq.db-wal"]);
  assertEquals(
    [await Deno.readFile(`${dir}/qpq.db`), await Deno.readFile(`${dir}/qpq.db-wal`)],
    before,
  );
  for (const d of [src, dir]) await Deno.remove(d, { recursive: true });
});

Deno.test("qpq server --check reports a damaged database in one line and exits 1", async () => {
  const dir = await currentDb();
  const path = `${dir}/qpq.db`;
  const bytes = await Deno.readFile(path);
  // overwrite the middle of the file (b-tree pages) with a pattern
  for (let i = bytes.length / 2; i < bytes.length / 2 + 3000; i++) bytes[i] = i & 0xff;
  await Deno.writeFile(path, bytes);
  const r = await check(dir);
  assertEquals(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assertStringIncludes(lines[0]!, `qpq: ${path} is damaged (`);
  assertStringIncludes(lines[0]!, "restore it from a backup, see docs/operations.md");
  assert(!r.stdout.includes("ok:"), r.stdout);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server --check reports an index that disagrees with its table, which reads fine otherwise", async () => {
  // the schema text of one index names another column of the same length: every query
  // still works, only SQLite's integrity_check sees that the index holds other values
  const dir = await currentDb();
  const path = `${dir}/qpq.db`;
  const bytes = await Deno.readFile(path);
  const from = "CREATE INDEX messages_created ON messages (created_at)";
  const at = new TextDecoder("latin1").decode(bytes).indexOf(from);
  assert(at > 0, "index statement found");
  bytes.set(new TextEncoder().encode(from.replace("created_at", "channel_id")), at);
  await Deno.writeFile(path, bytes);
  const r = await check(dir);
  assertEquals(r.code, 1, r.stdout);
  assertEquals(
    r.stderr.replace(/and \d+ more/, "and N more"),
    `qpq: ${path} is damaged (row 1 missing from index messages_created and N more): ` +
      "restore it from a backup, see docs/operations.md\n",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server --check reports a reference to a row that is gone (foreign_key_check)", async () => {
  const dir = await currentDb();
  const path = `${dir}/qpq.db`;
  const db = new DatabaseSync(path);
  db.exec("PRAGMA foreign_keys = OFF");
  db.prepare("INSERT INTO sessions VALUES (?, ?, 0)").run(new Uint8Array(32), new Uint8Array(8));
  db.close();
  const r = await check(dir);
  assertEquals(r.code, 1, r.stdout);
  assertStringIncludes(
    r.stderr,
    `qpq: ${path} is damaged (1 broken reference(s), first: sessions row `,
  );
  assertStringIncludes(r.stderr, "→ users)");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qpq server --check refuses a missing file, a foreign file, a newer schema and a wrong db_key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-check-" });
  const path = `${dir}/qpq.db`;
  const expect = async (r: Promise<{ code: number; stderr: string }>, text: string) => {
    const { code, stderr } = await r;
    assertEquals(code, 1, stderr);
    assertEquals(stderr, `qpq: ${path}${text}\n`);
  };
  await expect(check(dir), " does not exist");
  await Deno.writeTextFile(path, "name,email\nalice,a@example.org\n");
  await expect(check(dir), " is not an SQLite database: not a qpq server database");
  const other = new DatabaseSync(path.replace("qpq.db", "other.db"));
  other.exec("CREATE TABLE t (x)");
  other.close();
  await Deno.rename(path.replace("qpq.db", "other.db"), path);
  await expect(check(dir), " is an SQLite database but not a qpq server database");
  await Deno.remove(dir, { recursive: true });

  const sealed = await copyGolden(GOLDEN.find((g) => g.sealed)!.file);
  const r = await check(sealed, "not the db_key");
  assertEquals(r.code, 1);
  assertEquals(r.stderr, `qpq: ${sealed}/qpq.db: Cannot open database: wrong db_key\n`);
  await Deno.remove(sealed, { recursive: true });

  const newer = await currentDb();
  const db = new DatabaseSync(`${newer}/qpq.db`);
  db.prepare("INSERT INTO schema_version VALUES (?, 'from the future', 0)").run(SCHEMA_VERSION + 1);
  db.close();
  const n = await check(newer);
  assertEquals(n.code, 1);
  assertStringIncludes(
    n.stderr,
    `has schema version ${
      SCHEMA_VERSION + 1
    }, newer than this qpq (${SCHEMA_VERSION}): run the newer qpq`,
  );
  await Deno.remove(newer, { recursive: true });
});

Deno.test("qpq server --help describes --check", async () => {
  const r = await runQpq(["server", "--help"]);
  assertEquals(r.code, 0);
  assertStringIncludes(r.stdout, "qpq server --check");
  assertStringIncludes(r.stdout, "migration dry");
});
