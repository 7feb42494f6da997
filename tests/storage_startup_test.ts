/**
 * Start-up errors of the server store that a person can act on, one line naming the path,
 * from the spawned `qpq server`: a read-only data dir holding a good database, a damaged
 * database, a foreign file; and corruption met while serving, logged with the path.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { runQpq } from "./_support/cli.ts";
import { withTmpfs } from "./_support/tmpfs.ts";
import { SqliteServerStore } from "../src/store/server/mod.ts";
import { type StorageEvent, StorageHealthTracker } from "../src/store/server/_storage_health.ts";
import { classifyStorageError } from "../src/store/server/mod.ts";
import { logStorageEvent } from "../src/server/services.ts";
import { createLogger } from "../src/log.ts";
import { startTestServer } from "./_support/server.ts";
import { generateSelfSignedCertificate } from "../src/transport/mod.ts";

/** `qpq server` on DIR: it must refuse to start; its exit code and stderr. */
async function refusedStart(dataDir: string): Promise<{ code: number; stderr: string }> {
  const r = await runQpq(["server", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    timeoutMs: 30_000,
  });
  assert(!r.stdout.includes("listening on"), `the server started:\n${r.stdout}`);
  return { code: r.code, stderr: r.stderr };
}

/** A real qpq database with some users and messages in DIR/qpq.db (and a certificate). */
async function makeDatabase(dir: string, messages = 300): Promise<string> {
  const path = `${dir}/qpq.db`;
  const s = await SqliteServerStore.open(path);
  for (const u of ["alice", "bob"]) await s.createUser(u, new Uint8Array(64));
  const payload = new Uint8Array(1000).fill(1);
  await Promise.all(
    Array.from({ length: messages }, (_, i) =>
      s.enqueue({
        sender: "alice",
        messageId: `m${i}`,
        channelId: null,
        payload,
        recipients: ["bob"],
      })),
  );
  await s.close();
  // checkpoint into the main file, so the damage below is not hidden by the WAL
  const db = new DatabaseSync(path);
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
  return path;
}

/** Overwrite the root page of the messages table: a page start-up itself never reads. */
async function damageMessagesPage(path: string): Promise<void> {
  const db = new DatabaseSync(path);
  const root = Number(
    db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").get()!.rootpage,
  );
  const pageSize = Number(db.prepare("PRAGMA page_size").get()!.page_size);
  db.close();
  const f = await Deno.open(path, { write: true });
  try {
    await f.seek((root - 1) * pageSize, Deno.SeekMode.Start);
    await f.write(new Uint8Array(pageSize).fill(0xa5));
  } finally {
    f.close();
  }
}

Deno.test("qpq server on a read-only data dir holding a good database: one line naming the dir, exit 2, not 'not a qpq database'", async () => {
  await withTmpfs(16 << 20, async (fs) => {
    const data = `${fs.dir}/data`;
    await Deno.mkdir(data, { mode: 0o700 });
    await makeDatabase(data, 10);
    // no certificate yet: the one to generate cannot be written either
    await fs.remount("ro");
    const noCert = await refusedStart(data);
    assertEquals(noCert.code, 2, noCert.stderr);
    assertEquals(
      noCert.stderr,
      `qpq: Cannot write to the data dir ${data} (read-only file system): the generated certificate ${data}/server-cert.pem needs it writable\n`,
    );
    // with its certificate (written by a start before): the database is what cannot be written
    await fs.remount("rw");
    const pki = await generateSelfSignedCertificate();
    await Deno.writeTextFile(`${data}/server-key.pem`, pki.keyPem, { mode: 0o600 });
    await Deno.writeTextFile(`${data}/server-cert.pem`, pki.certPem);
    await fs.remount("ro");
    const r = await refusedStart(data);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(
      r.stderr,
      `qpq: Cannot write to the data dir ${data} (read-only file system): the database ${data}/qpq.db needs it writable\n`,
    );
    await fs.remount("rw");
  });
});

Deno.test("qpq server on a damaged database: 'is damaged: restore it from a backup' with the path, exit 2; a foreign file keeps its own words", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-damaged-" });
  try {
    const path = await makeDatabase(dir);
    await damageMessagesPage(path);
    const r = await refusedStart(dir);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(
      r.stderr,
      `qpq: Database ${path} is damaged: restore it from a backup, see docs/operations.md\n`,
    );
    // foreign: not SQLite at all, and SQLite without our tables
    for (const make of ["junk", "sqlite"]) {
      await Deno.remove(path);
      for (const f of [`${path}-wal`, `${path}-shm`]) await Deno.remove(f).catch(() => {});
      if (make === "junk") await Deno.writeTextFile(path, "these are not the pages you seek\n");
      else {
        const db = new DatabaseSync(path);
        db.exec("CREATE TABLE recipes (name TEXT)");
        db.close();
      }
      const f = await refusedStart(dir);
      assertEquals(f.code, 2, f.stderr);
      assertEquals(
        f.stderr,
        `qpq: Cannot open database ${path}: it is not a qpq server database (check db_path and data_dir)\n`,
        make,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corruption met while serving: classified damaged, logged at error once with the path, health stays degraded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-damaged-serving-" });
  try {
    const path = await makeDatabase(dir);
    await damageMessagesPage(path);
    // the real SQLite error of reading the damaged page
    const db = new DatabaseSync(path);
    let caught: unknown;
    try {
      db.prepare("SELECT * FROM messages").all();
    } catch (e) {
      caught = e;
    } finally {
      db.close();
    }
    assert(caught !== undefined, "reading the damaged page failed");
    assertEquals(classifyStorageError(caught), "damaged");
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ write: (l) => lines.push(JSON.parse(l)) });
    const events: StorageEvent[] = [];
    const t = new StorageHealthTracker((e) => {
      events.push(e);
      logStorageEvent(log, e, path);
    });
    t.failed("damaged", caught);
    t.failed("damaged", caught);
    t.failed("full", new Error("database or disk is full"));
    t.wrote(); // a damaged file does not heal by a write
    assertEquals(t.health.status, "degraded");
    assertEquals(t.health.reason, "storage: database damaged");
    assertEquals(t.health.failures, 3);
    assertEquals(events.length, 1);
    assertEquals(lines.length, 1);
    assertEquals(lines[0]!.level, "error");
    assertEquals(
      lines[0]!.msg,
      `Database ${path} is damaged: restore it from a backup, see docs/operations.md`,
    );
    assertStringIncludes(String(lines[0]!.error), "malformed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a data dir open to other users (0755, made by someone else) is warned about at start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-loose-" });
  try {
    await Deno.chmod(dir, 0o755);
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ write: (l) => lines.push(JSON.parse(l)) });
    const ts = await startTestServer({ dataDir: dir, log });
    await ts.close();
    const warned = lines.filter((l) => l.msg === "data dir is open to other users: chmod 700 it");
    assertEquals(warned.length, 1, JSON.stringify(lines));
    assertEquals(warned[0]!.dir, dir);
    assertEquals(warned[0]!.mode, "755");
    // one the server made itself is 0700 and not warned about
    const lines2: string[] = [];
    const own = await startTestServer({
      dataDir: `${dir}/own`,
      log: createLogger({ write: (l) => lines2.push(l) }),
    });
    await own.close();
    assertEquals((await Deno.stat(`${dir}/own`)).mode! & 0o777, 0o700);
    assert(!lines2.some((l) => l.includes("open to other users")), lines2.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
