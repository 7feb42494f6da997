/**
 * The client conversation database (`<statePath>.db`): schema and opening.
 *
 * Every column is either an HMAC lookup hash (`*_h`, 32 bytes), a sealed value (`sealed_*`,
 * `data`) or a local insertion counter (`seq`). No name, id, timestamp or body is stored in
 * the clear; what the file does reveal is row counts, value sizes, which messages belong to
 * the same (unnamed) conversation, and insertion order.
 *
 * Durability: WAL journal, `synchronous = FULL` (every COMMIT is fsynced before the call
 * returns), foreign keys on.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { ClientKeys } from "./_client_keys.ts";
import { DamagedStateError } from "./_client_state_file.ts";

/** Schema version recorded in `PRAGMA user_version`. */
export const CLIENT_SCHEMA_VERSION = 1;

const SCHEMA_V1 = `
CREATE TABLE state_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE kv (
  k_h BLOB PRIMARY KEY,
  sealed_key BLOB NOT NULL,
  sealed_value BLOB NOT NULL
) STRICT;
CREATE TABLE conversations (
  id_h BLOB PRIMARY KEY,
  name_h BLOB NOT NULL UNIQUE,
  data BLOB NOT NULL
) STRICT;
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id_h BLOB NOT NULL UNIQUE,
  conv_h BLOB NOT NULL REFERENCES conversations (id_h),
  data BLOB NOT NULL
) STRICT;
CREATE INDEX messages_by_conversation ON messages (conv_h, seq);
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id_h BLOB NOT NULL UNIQUE,
  data BLOB NOT NULL
) STRICT;
`;

function applyPragmas(db: DatabaseSync): void {
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON");
}

/**
 * Create and initialise a new database at `path` (which must not exist yet), then close it.
 * The file is created with mode 0600 first so SQLite's side files inherit it.
 */
export function createClientDb(path: string, keys: ClientKeys): void {
  Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
  const db = new DatabaseSync(path);
  try {
    applyPragmas(db);
    db.exec("BEGIN IMMEDIATE");
    db.exec(SCHEMA_V1);
    db.prepare("INSERT INTO state_meta (key, value) VALUES ('check', ?)").run(keys.dbCheck());
    db.exec(`PRAGMA user_version = ${CLIENT_SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } finally {
    db.close();
  }
}

/**
 * Open an existing database and verify it belongs to these keys before writing anything.
 *
 * @throws {DamagedStateError} when it is not a qpq client database for these keys
 */
export function openClientDb(path: string, keys: ClientKeys): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 5000 });
    const version = Number(db.prepare("PRAGMA user_version").get()?.user_version ?? -1);
    if (version !== CLIENT_SCHEMA_VERSION) throw new DamagedStateError("unknown schema version");
    const row = db.prepare("SELECT value FROM state_meta WHERE key = 'check'").get();
    const stored = row?.value instanceof Uint8Array ? row.value : undefined;
    if (!ClientKeys.checkMatches(stored, keys.dbCheck())) {
      throw new DamagedStateError("database check value differs");
    }
    applyPragmas(db);
    return db;
  } catch (e) {
    try {
      db?.close();
    } catch { /* already failing */ }
    if (e instanceof DamagedStateError) throw e;
    throw new DamagedStateError("database unreadable", { cause: e });
  }
}
