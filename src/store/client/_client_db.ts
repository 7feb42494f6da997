/**
 * The client conversation database (`<statePath>.db`): schema, opening and versions.
 *
 * Every column is either an HMAC lookup hash (`*_h`, 32 bytes), a sealed value (`data`,
 * `state`, `pending`, `private`) or a local insertion counter (`seq`). No name, id,
 * timestamp or body is stored in the clear; what the file does reveal is row counts, value
 * sizes, which messages belong to the same (unnamed) conversation, and insertion order.
 *
 * ```
 * version 1   state_meta, kv (string keys: cursor, group:…, pcommit:…, upd:…, leave:…,
 *             kp:…, kplr:…, dir:…), conversations, messages, outbox
 * version 2   state_meta, cursor, groups, key_packages, contacts, conversations, messages,
 *             outbox (kv converted into typed records by _client_migrate.ts, then dropped)
 * version 3   + consent (who is a contact, who is blocked; keyed like contacts, so the
 *             upgrade marks every user with a pinned key a contact: _client_migrate.ts)
 * version 4   + groups.tag (a random value, new with every stored group state: a decoded
 *             copy kept in memory is current while the tag is unchanged); the sealed group
 *             record may hold a summary (epoch, suite, roster), which the client fills in
 *             for older records (src/client/group_states.ts)
 * version 5   + group_secrets: the secrets of a split group state, one row per ratchet-tree
 *             node and epoch, changed one row at a time (an application message sent or
 *             received changes the sender's); keyed by HMACs of (channel, epoch, node) and
 *             (channel, epoch), sealed with both. The state tag moves from groups.tag to
 *             its own small table group_tags: a tag changes with every message, and
 *             SQLite rewrites a whole row (a big group's state blob with it) to change
 *             one column
 * version 6   + outbox.conv_h: the lookup hash of the queued request's conversation, the
 *             same as its messages' `conv_h` (and bound into the sealed value as theirs
 *             is), so "is anything of this conversation queued before it" and "how many
 *             are queued" are SQL on `(conv_h, seq)` and open no entry; filled in for the
 *             rows of earlier builds by _client_migrate.ts
 * ```
 *
 * Durability: WAL journal, `synchronous = FULL` (every COMMIT is fsynced before the call
 * returns; a transaction run `{ durable: false }` commits at `NORMAL`, see
 * `ClientStore.transaction`), foreign keys on.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../../errors.ts";
import { ClientKeys } from "./_client_keys.ts";
import { DamagedStateError } from "./_client_state_file.ts";

/** Schema version recorded in `PRAGMA user_version` by this build. */
export const CLIENT_SCHEMA_VERSION = 6;

/** Oldest schema version this build opens (and upgrades). */
export const OLDEST_CLIENT_SCHEMA_VERSION = 1;

const TABLES_V1_AND_V2 = `
CREATE TABLE state_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
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

/** The tables version 2 adds (the typed records that replace kv). */
export const TABLES_ADDED_IN_V2 = `
CREATE TABLE cursor (id INTEGER PRIMARY KEY CHECK (id = 0), data BLOB NOT NULL) STRICT;
CREATE TABLE groups (
  id_h BLOB PRIMARY KEY,
  state BLOB NOT NULL,
  pending BLOB,
  data BLOB NOT NULL
) STRICT;
CREATE TABLE key_packages (
  ref_h BLOB PRIMARY KEY,
  data BLOB NOT NULL,
  private BLOB NOT NULL
) STRICT;
CREATE TABLE contacts (name_h BLOB PRIMARY KEY, data BLOB NOT NULL) STRICT;
`;

/** The table version 3 adds: consent records, keyed by the same hash as `contacts`. */
export const TABLES_ADDED_IN_V3 = `
CREATE TABLE consent (name_h BLOB PRIMARY KEY, data BLOB NOT NULL) STRICT;
`;

/** The column version 4 adds: the state tag of each group record (version 5 moves it). */
export const COLUMNS_ADDED_IN_V4 = `
ALTER TABLE groups ADD COLUMN tag TEXT;
`;

/** The table version 5 adds: the secrets of split group states (see the module doc). */
export const TABLES_ADDED_IN_V5 = `
CREATE TABLE group_secrets (
  group_h BLOB NOT NULL REFERENCES groups (id_h) ON DELETE CASCADE,
  slot_h BLOB NOT NULL,
  epoch_h BLOB NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (group_h, slot_h)
) STRICT;
CREATE INDEX group_secrets_by_epoch ON group_secrets (group_h, epoch_h);
CREATE TABLE group_tags (
  group_h BLOB PRIMARY KEY REFERENCES groups (id_h) ON DELETE CASCADE,
  tag TEXT NOT NULL
) STRICT;
`;

/**
 * The column version 6 adds (and its index): the conversation of each outbox row. A new
 * database gets it the same way (one definition of the table): every row written since
 * has it; the upgrade fills in older rows before it sets version 6.
 */
export const COLUMNS_ADDED_IN_V6 = `
ALTER TABLE outbox ADD COLUMN conv_h BLOB;
CREATE INDEX outbox_by_conversation ON outbox (conv_h, seq);
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
    initClientDb(db, keys);
  } finally {
    db.close();
  }
}

/**
 * A new, initialised database in memory (SQLite `:memory:`), open: the same schema as a file
 * (see `ClientStore.inMemory`). Gone when closed.
 */
export function createMemoryClientDb(keys: ClientKeys): DatabaseSync {
  const db = new DatabaseSync(":memory:");
  try {
    initClientDb(db, keys);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

function initClientDb(db: DatabaseSync, keys: ClientKeys): void {
  applyPragmas(db);
  db.exec("BEGIN IMMEDIATE");
  db.exec(TABLES_V1_AND_V2);
  db.exec(TABLES_ADDED_IN_V2);
  db.exec(TABLES_ADDED_IN_V3);
  db.exec(TABLES_ADDED_IN_V5);
  db.exec(COLUMNS_ADDED_IN_V6);
  db.prepare("INSERT INTO state_meta (key, value) VALUES ('check', ?)").run(keys.dbCheck());
  db.exec(`PRAGMA user_version = ${CLIENT_SCHEMA_VERSION}`);
  db.exec("COMMIT");
}

/** An open database and the schema version it had when opened. */
export interface OpenedClientDb {
  /** The connection (pragmas applied). */
  db: DatabaseSync;
  /** {@link CLIENT_SCHEMA_VERSION}, or an older one the caller must upgrade first. */
  version: number;
}

/**
 * Open an existing database and verify it belongs to these keys before writing anything.
 *
 * @throws {StorageError} (one line) when its schema version is newer than this build's
 * @throws {DamagedStateError} when it is not a qpq client database for these keys
 */
export function openClientDb(path: string, keys: ClientKeys): OpenedClientDb {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 5000 });
    const version = Number(db.prepare("PRAGMA user_version").get()?.user_version ?? -1);
    if (version > CLIENT_SCHEMA_VERSION) {
      throw new StorageError(
        `Cannot open state: its database has schema version ${version}, newer than this qpq ` +
          `reads (${CLIENT_SCHEMA_VERSION}); update qpq`,
      );
    }
    if (!Number.isSafeInteger(version) || version < OLDEST_CLIENT_SCHEMA_VERSION) {
      throw new DamagedStateError("unknown schema version");
    }
    const row = db.prepare("SELECT value FROM state_meta WHERE key = 'check'").get();
    const stored = row?.value instanceof Uint8Array ? row.value : undefined;
    if (!ClientKeys.checkMatches(stored, keys.dbCheck())) {
      throw new DamagedStateError("database check value differs");
    }
    applyPragmas(db);
    return { db, version };
  } catch (e) {
    try {
      db?.close();
    } catch { /* already failing */ }
    if (e instanceof DamagedStateError || e instanceof StorageError) throw e;
    throw new DamagedStateError("database unreadable", { cause: e });
  }
}
