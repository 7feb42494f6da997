/**
 * Numbered schema migrations of the server database.
 *
 * Each migration runs once, inside its own transaction, and records itself in
 * `schema_version`. Migrations are append-only: never edit or renumber a released one;
 * add a new one that transforms the old data instead. A database whose version is newer
 * than this build knows is refused before anything is written.
 *
 * Column conventions (see `sealing.ts`): `*_ref` and `uid` columns hold lookup hashes
 * (or plain UTF-8 usernames without a db_key); BLOB value columns hold sealed values.
 * `messages.body` is one sealed `len ‖ sender ‖ len ‖ message id ‖ payload` (one AEAD call
 * per message instead of three), set to NULL once every recipient has acknowledged it;
 * the row itself stays until retention so that a resend stays idempotent.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { StorageError } from "../../errors.ts";

/**
 * SQL for the MLS cipher suite of a stored KeyPackage row (`data`), for migration 2: the
 * header of plain bytes saying suite 1 (X25519) gives 1; anything else is X-Wing (83), the
 * only other suite qpq offers (sealed bytes cannot be read by SQL).
 */
const SUITE_FROM_DATA = `CASE
        WHEN (SELECT value FROM meta WHERE key = 'seal_mode') = CAST('plain' AS BLOB)
          AND hex(substr(data, 1, 8)) = '0001000500010001'
        THEN 1
        ELSE 83 END`;

/** One schema migration. */
export interface Migration {
  /** 1, 2, 3, … with no gaps. */
  version: number;
  /** Short description kept in `schema_version`. */
  name: string;
  /** The statements to run. */
  sql: string;
}

/** All migrations, oldest first. */
export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: "initial schema",
    sql: `
      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
      ) STRICT;
      CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
      ) STRICT;
      CREATE TABLE users (
        uid BLOB PRIMARY KEY,
        username BLOB NOT NULL,
        record BLOB NOT NULL,
        identity_key BLOB,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE pending_logins (
        login_ref BLOB PRIMARY KEY,
        username BLOB NOT NULL,
        state BLOB NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX pending_logins_expires ON pending_logins (expires_at);
      CREATE TABLE sessions (
        token_ref BLOB PRIMARY KEY,
        uid BLOB NOT NULL REFERENCES users (uid),
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sessions_uid ON sessions (uid);
      CREATE INDEX sessions_expires ON sessions (expires_at);
      CREATE TABLE key_packages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid BLOB NOT NULL REFERENCES users (uid),
        ref BLOB NOT NULL,
        data BLOB NOT NULL,
        not_after INTEGER NOT NULL,
        UNIQUE (uid, ref)
      ) STRICT;
      CREATE INDEX key_packages_uid ON key_packages (uid, id);
      CREATE INDEX key_packages_not_after ON key_packages (not_after);
      CREATE TABLE last_resort_key_packages (
        uid BLOB PRIMARY KEY REFERENCES users (uid),
        ref BLOB NOT NULL,
        data BLOB NOT NULL,
        not_after INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('dm', 'group')),
        name_ref BLOB UNIQUE,
        name BLOB,
        dm_ref BLOB UNIQUE,
        created_by BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        CHECK ((kind = 'dm') = (dm_ref IS NOT NULL)),
        CHECK ((kind = 'group') = (name_ref IS NOT NULL))
      ) STRICT;
      CREATE TABLE members (
        channel_id TEXT NOT NULL REFERENCES channels (id),
        uid BLOB NOT NULL REFERENCES users (uid),
        PRIMARY KEY (channel_id, uid)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX members_uid ON members (uid, channel_id);
      CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        dedupe_ref BLOB NOT NULL UNIQUE,
        channel_id TEXT,
        body BLOB,
        fanout BLOB NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX messages_created ON messages (created_at);
      CREATE TABLE queues (
        recipient BLOB PRIMARY KEY,
        next_seq INTEGER NOT NULL,
        depth INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE deliveries (
        recipient BLOB NOT NULL,
        seq INTEGER NOT NULL,
        message INTEGER NOT NULL REFERENCES messages (id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (recipient, seq)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX deliveries_message ON deliveries (message);
      CREATE INDEX deliveries_created ON deliveries (created_at);
    `,
  },
  {
    // KeyPackages per MLS cipher suite: a `cipher_suite` column on both KeyPackage tables,
    // and one last-resort package per (user, suite) instead of per user. The suite of an
    // existing row is read from its bytes (MLSMessage: u16 version 1, u16 wire format 5 =
    // KeyPackage; KeyPackage: u16 version 1, u16 cipher suite) when the database is not
    // sealed; sealed rows (and anything unreadable) get X-Wing (83), the only suite
    // clients uploaded before. The suite is an index, not a secret: the signed KeyPackage
    // bytes carry the truth and members check the suite of what they add.
    version: 2,
    name: "KeyPackages per cipher suite",
    sql: `
      ALTER TABLE key_packages ADD COLUMN cipher_suite INTEGER NOT NULL DEFAULT 83;
      UPDATE key_packages SET cipher_suite = ${SUITE_FROM_DATA};
      CREATE INDEX key_packages_uid_suite ON key_packages (uid, cipher_suite, id);
      CREATE TABLE last_resort_key_packages_v2 (
        uid BLOB NOT NULL REFERENCES users (uid),
        cipher_suite INTEGER NOT NULL,
        ref BLOB NOT NULL,
        data BLOB NOT NULL,
        not_after INTEGER NOT NULL,
        PRIMARY KEY (uid, cipher_suite)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO last_resort_key_packages_v2 (uid, cipher_suite, ref, data, not_after)
        SELECT uid, ${SUITE_FROM_DATA}, ref, data, not_after FROM last_resort_key_packages;
      DROP TABLE last_resort_key_packages;
      ALTER TABLE last_resort_key_packages_v2 RENAME TO last_resort_key_packages;
    `,
  },
  {
    // Per-sender quota in a recipient's queue: who sent each delivery (the sender's uid)
    // and how many bytes it holds. Rows from before carry NULL and 0 and count for nobody
    // until they are read or expire.
    version: 3,
    name: "sender and size of each delivery",
    sql: `
      ALTER TABLE deliveries ADD COLUMN sender_uid BLOB;
      ALTER TABLE deliveries ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX deliveries_sender ON deliveries (recipient, sender_uid, bytes);
    `,
  },
  {
    // Blocks (issue 10, consent): who refuses whose DMs, application messages and
    // Welcomes. Both columns are user lookup references, like `members.uid`.
    version: 4,
    name: "blocks",
    sql: `
      CREATE TABLE blocks (
        blocker BLOB NOT NULL REFERENCES users (uid),
        blocked BLOB NOT NULL REFERENCES users (uid),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (blocker, blocked)
      ) STRICT, WITHOUT ROWID;
    `,
  },
]);

/** The schema version this build writes. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]!.version;

function hasTable(db: DatabaseSync, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined;
}

/** The database's schema version (0 for a new, empty database). Reads only. */
export function readSchemaVersion(db: DatabaseSync): number {
  if (!hasTable(db, "schema_version")) return 0;
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_version").get() as
    | { v: number | null }
    | undefined;
  return row?.v ?? 0;
}

/**
 * Apply every migration newer than the database, each in its own transaction.
 *
 * @param now time recorded as `applied_at` (ms)
 * @returns the versions applied
 * @throws {StorageError} when the database is newer than this build or a migration fails
 */
export function migrate(db: DatabaseSync, now: number = Date.now()): number[] {
  const current = readSchemaVersion(db);
  if (current > SCHEMA_VERSION) {
    throw new StorageError(
      `Cannot open database: it has schema version ${current}, newer than this qpq (${SCHEMA_VERSION})`,
    );
  }
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (" +
          "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
      );
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)")
        .run(m.version, m.name, now);
      db.exec("COMMIT");
    } catch (e) {
      db.exec("ROLLBACK");
      throw new StorageError(`Cannot migrate database to schema version ${m.version}`, {
        cause: e,
      });
    }
    applied.push(m.version);
  }
  return applied;
}
