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
import { fromUtf8, utf8 } from "../../bytes.ts";
import { isCanonicalUsername, usernameSkeleton } from "../../names.ts";
import type { Sealer } from "../sealing.ts";
import { keyPackageRowKey, lengthPrefixed, orderedPair } from "./_common.ts";

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
  /**
   * Work SQL cannot do (it needs the db_key: sealed values, lookup hashes), run after `sql`
   * in the same transaction. Returns notices for the operator.
   */
  run?: (db: DatabaseSync, sealer: Sealer) => string[];
  /**
   * True when the migration rebuilds a table others reference (SQLite's "make a new table,
   * copy, drop the old, rename"): foreign keys are off while it runs, outside its
   * transaction as SQLite requires, and `PRAGMA foreign_key_check` must find nothing
   * before it commits.
   */
  rebuildsTables?: boolean;
}

/** The name of an account as case-insensitive usernames see it (NFKC + lower case). */
function folded(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}

/**
 * Migration 3: one canonical (lower-case) form per username, and look-alike skeletons.
 *
 * - An account whose stored name is already canonical keeps it. Every other account
 *   (`Bob`) gets its lower-case form (`bob`) when that is free, oldest first, or else the
 *   reserved form `bob~2` (`~3`, …), which nobody can register; a notice says so.
 * - A renamed account moves to the new name's lookup hash everywhere it is referenced
 *   (sessions, KeyPackages, memberships, queues, DM channel refs, channel creators); its
 *   sealed values are sealed again for the new row; its original spelling is kept as its
 *   OPAQUE identifier so its password still works. Nothing is deleted except pending
 *   logins (seconds-long OPAQUE handshakes).
 * - Each account gets its skeleton, oldest first; a later account whose skeleton is taken
 *   (an existing look-alike) keeps its name with no skeleton, so the unique index holds.
 *   Renamed `name~N` accounts have none either.
 * - Names that are not valid usernames even in lower case (only possible through the store
 *   API directly) are left as they are.
 */
function canonicalUsernames(db: DatabaseSync, sealer: Sealer): string[] {
  db.exec("PRAGMA defer_foreign_keys = ON");
  const users = db.prepare(
    "SELECT uid, username, created_at FROM users ORDER BY created_at, rowid",
  ).all().map((r) => {
    const uid = r.uid as Uint8Array;
    return {
      uid,
      name: fromUtf8(sealer.open("users.username", uid, r.username as Uint8Array)),
      createdAt: r.created_at as number,
    };
  });
  const target = new Map<Uint8Array, string>();
  const taken = new Set<string>();
  for (const u of users) {
    if (isCanonicalUsername(u.name) || !isCanonicalUsername(folded(u.name))) {
      target.set(u.uid, u.name);
      taken.add(u.name);
    }
  }
  const notices: string[] = [];
  for (const u of users) {
    if (target.has(u.uid)) continue;
    const c = folded(u.name);
    let t = c;
    for (let n = 2; taken.has(t); n++) t = `${c}~${n}`;
    taken.add(t);
    target.set(u.uid, t);
    if (t !== c) {
      notices.push(
        `account "${u.name}" (registered ${
          new Date(u.createdAt).toISOString()
        }) is now "${t}": usernames are case-insensitive and "${c}" is another account; ` +
          `tell its owner to log in with --username ${t} (same password)`,
      );
    }
  }
  const skeletons = new Set<string>();
  const renamed = new Map<string, string>();
  for (const u of users) {
    const t = target.get(u.uid)!;
    let skeleton: Uint8Array | null = null;
    if (isCanonicalUsername(t) && !t.includes("~")) {
      const k = usernameSkeleton(t);
      if (!skeletons.has(k)) {
        skeletons.add(k);
        skeleton = sealer.lookup("skeleton", utf8(k));
      }
    }
    if (t === u.name) {
      db.prepare("UPDATE users SET skeleton_ref = ? WHERE uid = ?").run(skeleton, u.uid);
      continue;
    }
    renamed.set(u.name, t);
    moveUser(db, sealer, u, t, skeleton);
  }
  if (renamed.size > 0) fixChannels(db, sealer, renamed);
  return notices;
}

/** Move one account to the lookup hash of its new name `to` (see migration 3). */
function moveUser(
  db: DatabaseSync,
  sealer: Sealer,
  from: { uid: Uint8Array; name: string },
  to: string,
  skeleton: Uint8Array | null,
): void {
  const old = from.uid;
  const uid = sealer.lookupName("user", to).slice();
  const row = db.prepare("SELECT record, identity_key FROM users WHERE uid = ?").get(old)!;
  const reseal = (label: string, v: Uint8Array) =>
    sealer.seal(label, uid, sealer.open(label, old, v));
  const ik = row.identity_key as Uint8Array | null;
  db.prepare(
    "UPDATE users SET uid = ?, username = ?, record = ?, identity_key = ?, opaque_id = ?, " +
      "skeleton_ref = ? WHERE uid = ?",
  ).run(
    uid,
    sealer.seal("users.username", uid, utf8(to)),
    reseal("users.record", row.record as Uint8Array),
    ik === null ? null : reseal("users.identity_key", ik),
    sealer.seal("users.opaque_id", uid, utf8(from.name)),
    skeleton,
    old,
  );
  for (
    const sql of [
      "UPDATE sessions SET uid = ? WHERE uid = ?",
      "UPDATE members SET uid = ? WHERE uid = ?",
      "UPDATE queues SET recipient = ? WHERE recipient = ?",
      "UPDATE deliveries SET recipient = ? WHERE recipient = ?",
      // present when this migration runs after them (a renumbered history, see migrate)
      ...(hasColumn(db, "deliveries", "sender_uid")
        ? ["UPDATE deliveries SET sender_uid = ? WHERE sender_uid = ?"]
        : []),
      ...(hasTable(db, "blocks")
        ? [
          "UPDATE blocks SET blocker = ? WHERE blocker = ?",
          "UPDATE blocks SET blocked = ? WHERE blocked = ?",
        ]
        : []),
    ]
  ) db.prepare(sql).run(uid, old);
  for (const r of db.prepare("SELECT id, ref, data FROM key_packages WHERE uid = ?").all(old)) {
    const ref = r.ref as Uint8Array;
    const data = sealer.open("key_packages.data", keyPackageRowKey(old, ref), r.data as Uint8Array);
    db.prepare("UPDATE key_packages SET uid = ?, data = ? WHERE id = ?")
      .run(uid, sealer.seal("key_packages.data", keyPackageRowKey(uid, ref), data), r.id as number);
  }
  const lastResort = db.prepare(
    "SELECT cipher_suite, data FROM last_resort_key_packages WHERE uid = ?",
  ).all(old);
  for (const r of lastResort) {
    db.prepare(
      "UPDATE last_resort_key_packages SET uid = ?, data = ? WHERE uid = ? AND cipher_suite = ?",
    ).run(
      uid,
      reseal("last_resort_key_packages.data", r.data as Uint8Array),
      old,
      r.cipher_suite as number,
    );
  }
}

/** After renames: DM lookup refs from the members' new names, and channel creators. */
function fixChannels(db: DatabaseSync, sealer: Sealer, renamed: Map<string, string>): void {
  const channels = db.prepare("SELECT id, kind, created_by FROM channels").all();
  for (const c of channels) {
    const id = c.id as string;
    const rowKey = utf8(id);
    const creator = fromUtf8(
      sealer.open("channels.created_by", rowKey, c.created_by as Uint8Array),
    );
    const now = renamed.get(creator);
    if (now !== undefined) {
      db.prepare("UPDATE channels SET created_by = ? WHERE id = ?")
        .run(sealer.seal("channels.created_by", rowKey, utf8(now)), id);
    }
    if (c.kind !== "dm") continue;
    const members = db.prepare(
      "SELECT u.uid, u.username FROM members m JOIN users u ON u.uid = m.uid " +
        "WHERE m.channel_id = ?",
    ).all(id).map((r) =>
      fromUtf8(sealer.open("users.username", r.uid as Uint8Array, r.username as Uint8Array))
    );
    if (members.length !== 2) continue;
    const [x, y] = orderedPair(members[0]!, members[1]!);
    db.prepare("UPDATE channels SET dm_ref = ? WHERE id = ?")
      .run(sealer.lookup("dm", lengthPrefixed(x, y)), id);
  }
}

/**
 * Migration 6: every account's look-alike skeleton recomputed under the wider rule of
 * `src/names.ts` (separators dropped, digits read as letters, `nn`, `y`). Oldest first, as
 * in migration 3: an account whose new skeleton an older account already has keeps its
 * name and its logins, with no skeleton (the unique index holds); a notice names both when
 * it is a look-alike only under the new rule.
 * New registrations of look-alikes of either are refused from now on.
 */
function recomputeSkeletons(db: DatabaseSync, sealer: Sealer): string[] {
  const users = db.prepare(
    "SELECT uid, username, skeleton_ref IS NOT NULL AS had FROM users ORDER BY created_at, rowid",
  ).all().map((r) => {
    const uid = r.uid as Uint8Array;
    const name = fromUtf8(sealer.open("users.username", uid, r.username as Uint8Array));
    return { uid, name, had: r.had === 1 };
  });
  db.exec("UPDATE users SET skeleton_ref = NULL");
  const owner = new Map<string, string>();
  const notices: string[] = [];
  const set = db.prepare("UPDATE users SET skeleton_ref = ? WHERE uid = ?");
  for (const u of users) {
    if (!isCanonicalUsername(u.name) || u.name.includes("~")) continue;
    const k = usernameSkeleton(u.name);
    const first = owner.get(k);
    if (first !== undefined) {
      // a look-alike already under the old rule had no skeleton and was told nothing then
      if (!u.had) continue;
      notices.push(
        `account "${u.name}" now looks like the older account "${first}" (wider look-alike ` +
          `rule): both keep their names; new look-alikes of them are refused`,
      );
      continue;
    }
    owner.set(k, u.name);
    set.run(sealer.lookup("skeleton", utf8(k)), u.uid);
  }
  return notices;
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
    // Case-insensitive usernames and look-alike skeletons: see canonicalUsernames above.
    // `skeleton_ref` is the lookup hash of the name's skeleton (src/names.ts), unique so
    // that two registrations racing for look-alike names cannot both succeed;
    // `opaque_id` (sealed, NULL = the username) is the OPAQUE identifier of an account
    // registered under a spelling other than its canonical name.
    version: 3,
    name: "case-insensitive usernames, look-alike skeletons",
    sql: `
      ALTER TABLE users ADD COLUMN skeleton_ref BLOB;
      ALTER TABLE users ADD COLUMN opaque_id BLOB;
      CREATE UNIQUE INDEX users_skeleton ON users (skeleton_ref);
      DELETE FROM pending_logins;
    `,
    run: canonicalUsernames,
  },
  {
    // Per-sender quota in a recipient's queue: who sent each delivery (the sender's uid)
    // and how many bytes it holds. Rows from before carry NULL and 0 and count for nobody
    // until they are read or expire.
    version: 4,
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
    version: 5,
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
  {
    // Look-alike skeletons under the wider rule (issues 18, 21): see recomputeSkeletons.
    version: 6,
    name: "wider look-alike skeletons",
    sql: "",
    run: recomputeSkeletons,
  },
  {
    // Held invitations (issue 18): a member row with held = 1 is a user added to the
    // channel while at max_groups_per_user. On the roster (it matches the MLS group), not a
    // member for requests, and never a recipient, until the user accepts it.
    version: 7,
    name: "held invitations",
    sql: "",
    run: addHeldColumn,
  },
  {
    // Group names are labels (issue 21): a group is its random id, and two unrelated groups
    // may carry the same name. `channels.name_ref` (the lookup hash of the name, UNIQUE
    // server-wide) is gone with its index, so creating a group neither refuses a name nor
    // tells anyone it is taken; the sealed `name` stays as the group's opaque label for
    // listings and Welcomes. SQLite cannot drop a UNIQUE column: the table is rebuilt.
    version: 8,
    name: "group names are labels",
    sql: `
      CREATE TABLE channels_v8 (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('dm', 'group')),
        name BLOB,
        dm_ref BLOB UNIQUE,
        created_by BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        CHECK ((kind = 'dm') = (dm_ref IS NOT NULL)),
        CHECK ((kind = 'group') = (name IS NOT NULL))
      ) STRICT;
      INSERT INTO channels_v8 (id, kind, name, dm_ref, created_by, created_at, epoch)
        SELECT id, kind, name, dm_ref, created_by, created_at, epoch FROM channels;
      DROP TABLE channels;
      ALTER TABLE channels_v8 RENAME TO channels;
    `,
    rebuildsTables: true,
  },
  {
    // Unblocking says how many messages the block dropped (issue 21): each block counts
    // the blocked user's messages the server did not deliver to the blocker.
    version: 9,
    name: "messages dropped while blocked",
    sql: "",
    run: addDroppedColumn,
  },
  {
    // Names of accounts a restore lost (issue 21): registered after the backup, gone from
    // the restored database. Kept for the holder of the identity key the account had (a
    // sealed copy), so nobody else takes the name; `uid` and `skeleton_ref` are lookup
    // references like `users.uid` and `users.skeleton_ref`.
    version: 10,
    name: "names reserved by a restore",
    sql: `
      CREATE TABLE IF NOT EXISTS reserved_names (
        uid BLOB PRIMARY KEY,
        skeleton_ref BLOB NOT NULL,
        identity_key BLOB,
        reserved_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS reserved_names_skeleton ON reserved_names (skeleton_ref);
    `,
  },
  {
    // Channels a restore put back as they were in the backup (issue 21): each accepts one
    // heal, a member's commit at a later epoch that brings the roster up to the MLS group
    // (see `commitAndFanOut`). `epoch` is the channel's epoch in the backup.
    version: 11,
    name: "channels a restore put back",
    sql: `
      CREATE TABLE IF NOT EXISTS restored_channels (
        channel_id TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL
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

/** Migration 7: `members.held` and its index (idempotent: a re-run finds them). */
function addHeldColumn(db: DatabaseSync): string[] {
  if (!hasColumn(db, "members", "held")) {
    db.exec("ALTER TABLE members ADD COLUMN held INTEGER NOT NULL DEFAULT 0");
  }
  db.exec("CREATE INDEX IF NOT EXISTS members_uid_held ON members (uid, held)");
  return [];
}

/** Migration 9: `blocks.dropped` (idempotent: a re-run finds it). */
function addDroppedColumn(db: DatabaseSync): string[] {
  if (!hasColumn(db, "blocks", "dropped")) {
    db.exec("ALTER TABLE blocks ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0");
  }
  return [];
}

function foreignKeysOn(db: DatabaseSync): boolean {
  return db.prepare("PRAGMA foreign_keys").get()?.foreign_keys === 1;
}

/** Inside a table rebuild: every reference still finds its row, else the migration fails. */
function checkForeignKeys(db: DatabaseSync): void {
  const broken = db.prepare("PRAGMA foreign_key_check").all();
  if (broken.length > 0) {
    throw new StorageError(`Table rebuild left ${broken.length} dangling references`);
  }
}

function hasColumn(db: DatabaseSync, table: string, column: string): boolean {
  return db.prepare("SELECT 1 FROM pragma_table_info(?) WHERE name = ?").get(table, column) !==
    undefined;
}

/** One row of `schema_version`. */
interface Applied {
  version: number;
  name: string;
  appliedAt: number;
}

/**
 * The migrations a database recorded under other numbers than this build's, or undefined
 * when its numbers are this build's (or its history is not one this build knows by name).
 *
 * Migrations 3–5 were merged from parallel branches and renumbered (commit c4110c3):
 * main-line builds from 1bdd570 to 89c88b7 recorded "sender and size of each delivery" as
 * 3 and "blocks" as 4, without "case-insensitive usernames". Read by number, such a
 * database would skip the usernames migration and fail on the next one ("duplicate column",
 * "table blocks already exists"). Read by name, the missing migrations are known.
 */
function renumberedHistory(db: DatabaseSync): Applied[] | undefined {
  if (!hasTable(db, "schema_version")) return undefined;
  const rows: Applied[] = db.prepare(
    "SELECT version, name, applied_at FROM schema_version ORDER BY version",
  ).all().map((r) => ({
    version: r.version as number,
    name: String(r.name),
    appliedAt: r.applied_at as number,
  }));
  const byName = new Map(MIGRATIONS.map((m) => [m.name, m]));
  if (rows.some((r) => !byName.has(r.name))) return undefined;
  if (rows.every((r) => MIGRATIONS[r.version - 1]?.name === r.name)) return undefined;
  return rows.map((r) => ({ ...r, version: byName.get(r.name)!.version }));
}

/** A step {@link migrate} would take (see {@link planMigrations}). */
export interface MigrationStep {
  /** The migration's number in this build. */
  version: number;
  /** Its name. */
  name: string;
}

/** What {@link migrate} would do to a database. Reads only. */
export interface MigrationPlan {
  /** The version the database records (0: new or empty). */
  from: number;
  /** The version it would have afterwards ({@link SCHEMA_VERSION}). */
  to: number;
  /** True when it recorded migrations under other numbers (see migrate). */
  renumbered: boolean;
  /** The migrations that would run, in order. */
  steps: MigrationStep[];
}

/**
 * What {@link migrate} would do, without writing.
 *
 * @throws {StorageError} when the database is newer than this build
 */
export function planMigrations(db: DatabaseSync): MigrationPlan {
  const from = readSchemaVersion(db);
  if (from > SCHEMA_VERSION) throw newerDatabase(from);
  const renumbered = renumberedHistory(db);
  const done = new Set(
    renumbered?.map((r) => r.name) ??
      MIGRATIONS.filter((m) => m.version <= from).map((m) => m.name),
  );
  return {
    from,
    to: SCHEMA_VERSION,
    renumbered: renumbered !== undefined,
    steps: MIGRATIONS.filter((m) => !done.has(m.name)).map((m) => ({
      version: m.version,
      name: m.name,
    })),
  };
}

function newerDatabase(version: number): StorageError {
  return new StorageError(
    `Cannot open database: it has schema version ${version}, newer than this qpq (${SCHEMA_VERSION})`,
  );
}

const CREATE_SCHEMA_VERSION = "CREATE TABLE IF NOT EXISTS schema_version (" +
  "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT";

/**
 * Bring a renumbered history (see renumberedHistory) to this build's numbers in one
 * transaction: run the migrations it lacks up to its newest one, in order, then record
 * every migration under its number here. Returns the versions run and the notices.
 */
function renumber(
  db: DatabaseSync,
  rows: Applied[],
  now: number,
  sealer: Sealer,
): { top: number; applied: number[]; notices: string[] } {
  const top = Math.max(...rows.map((r) => r.version));
  const done = new Map(rows.map((r) => [r.name, r.appliedAt]));
  const missing = MIGRATIONS.filter((m) => m.version <= top && !done.has(m.name));
  const notices: string[] = [];
  db.exec("BEGIN IMMEDIATE");
  try {
    for (const m of missing) {
      db.exec(m.sql);
      if (m.run !== undefined) notices.push(...m.run(db, sealer));
    }
    db.exec("DELETE FROM schema_version");
    const ins = db.prepare(
      "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
    );
    for (const m of MIGRATIONS) {
      if (m.version <= top) ins.run(m.version, m.name, done.get(m.name) ?? now);
    }
    db.exec("COMMIT");
  } catch (e) {
    db.exec("ROLLBACK");
    throw new StorageError(
      `Cannot migrate database: renumbering its schema history to version ${top} failed`,
      { cause: e },
    );
  }
  return { top, applied: missing.map((m) => m.version), notices };
}

/** The database's schema version (0 for a new, empty database). Reads only. */
export function readSchemaVersion(db: DatabaseSync): number {
  if (!hasTable(db, "schema_version")) return 0;
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_version").get() as
    | { v: number | null }
    | undefined;
  return row?.v ?? 0;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** The versions applied. */
  applied: number[];
  /** What an operator must act on (see {@link Migration.run}). */
  notices: string[];
}

/**
 * Apply every migration newer than the database, each in its own transaction. A database
 * that recorded migrations under other numbers (see renumberedHistory) first gets the
 * ones it lacks and this build's numbers, in one transaction.
 *
 * @param now time recorded as `applied_at` (ms)
 * @param sealer the database's sealing keys, for migrations that transform sealed values
 * @throws {StorageError} when the database is newer than this build or a migration fails
 */
export function migrate(db: DatabaseSync, now: number, sealer: Sealer): MigrateResult {
  let current = readSchemaVersion(db);
  if (current > SCHEMA_VERSION) throw newerDatabase(current);
  const applied: number[] = [];
  const notices: string[] = [];
  const renumbered = renumberedHistory(db);
  if (renumbered !== undefined) {
    const r = renumber(db, renumbered, now, sealer);
    current = r.top;
    applied.push(...r.applied);
    notices.push(...r.notices);
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    const fkOn = m.rebuildsTables === true && foreignKeysOn(db);
    if (fkOn) db.exec("PRAGMA foreign_keys = OFF");
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(CREATE_SCHEMA_VERSION);
      db.exec(m.sql);
      if (m.run !== undefined) notices.push(...m.run(db, sealer));
      if (m.rebuildsTables === true) checkForeignKeys(db);
      db.prepare("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)")
        .run(m.version, m.name, now);
      db.exec("COMMIT");
    } catch (e) {
      db.exec("ROLLBACK");
      throw new StorageError(`Cannot migrate database to schema version ${m.version}`, {
        cause: e,
      });
    } finally {
      if (fkOn) db.exec("PRAGMA foreign_keys = ON");
    }
    applied.push(m.version);
  }
  return { applied, notices };
}
