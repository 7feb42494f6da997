/**
 * Upgrade of a version-1 client database (the string-keyed `kv` table) to version 2 (typed
 * records). {@link ClientStore.open} runs it right after the password and database checks,
 * under the state lock, and writes through the store's own methods, so a migrated record is
 * exactly what the store writes itself.
 *
 * ```
 * kv key (value)                        version 2 record
 * cursor (decimal text)             ─►  cursor
 * group:<channel> (MLS state)       ─►  GroupRecord.state
 * pcommit:<channel> (request frame) ─►  GroupRecord.pendingCommit
 * upd:<channel> (decimal ms)        ─►  GroupRecord.lastUpdateMs (0 when absent)
 * leave:<conversation>:<user> ("1") ─►  GroupRecord.leaves of the conversation's channel
 * kp:<ref> / kplr:<ref> (private)   ─►  KeyPackageRecord { suite: "", lastResort }
 * dir:<username> (identity key)     ─►  pinned key
 * ```
 *
 * The suite of a migrated KeyPackage is unknown: it is stored as "" (the client tries such a
 * package for any suite). `pcommit`, `upd` and `leave` rows of a channel without a group
 * state are dropped (the version-1 client ignored them too), as is any key of no kind above
 * (no release wrote one). A number that does not parse counts as absent.
 *
 * One transaction: create the new tables, write every record, drop `kv`, set
 * `user_version = 2`. A crash or an error anywhere in it leaves the version-1 database as it
 * was (SQLite rolls the transaction back); the error is a {@link StorageError}.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { fromUtf8, utf8, zeroize } from "../../bytes.ts";
import { StorageError } from "../../errors.ts";
import {
  COLUMNS_ADDED_IN_V4,
  COLUMNS_ADDED_IN_V6,
  TABLES_ADDED_IN_V2,
  TABLES_ADDED_IN_V3,
  TABLES_ADDED_IN_V5,
} from "./_client_db.ts";
import type { ClientKeys } from "./_client_keys.ts";
import { byString, damagedRecord } from "./_records.ts";
import type { GroupRecord, KeyPackageRecord, LocalState } from "./local_state.ts";

/** What the kv rows of a version-1 database hold, by kind. */
interface V1Rows {
  cursor?: number | undefined;
  groups: Map<string, Uint8Array>;
  pendingCommits: Map<string, Uint8Array>;
  lastUpdates: Map<string, number>;
  leaves: { conversationId: string; user: string }[];
  keyPackages: KeyPackageRecord[];
  contacts: Map<string, Uint8Array>;
}

/**
 * Convert the kv rows of a version-1 database into version-2 records, in one transaction.
 *
 * @throws {StorageError} when a row does not open or a record cannot be written (nothing
 *   is changed then)
 */
export function migrateV1(db: DatabaseSync, keys: ClientKeys, into: LocalState): void {
  const plain: Uint8Array[] = [];
  try {
    into.transaction(() => {
      db.exec(TABLES_ADDED_IN_V2);
      db.exec(TABLES_ADDED_IN_V5); // the groups' secrets and tags, as this build writes them
      const rows = readKv(db, keys, plain);
      if (rows.cursor !== undefined) into.setCursor(rows.cursor);
      for (const g of groupRecords(rows, into)) into.putGroup(g);
      for (const k of rows.keyPackages) into.putKeyPackage(k);
      for (const [user, key] of rows.contacts) into.pinKey(user, key);
      db.exec("DROP TABLE kv");
      db.exec("PRAGMA user_version = 2");
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError("Cannot upgrade local state to schema version 2", { cause: e });
  } finally {
    zeroize(...plain);
  }
}

function readKv(db: DatabaseSync, keys: ClientKeys, plain: Uint8Array[]): V1Rows {
  const rows: V1Rows = {
    groups: new Map(),
    pendingCommits: new Map(),
    lastUpdates: new Map(),
    leaves: [],
    keyPackages: [],
    contacts: new Map(),
  };
  for (const r of db.prepare("SELECT k_h, sealed_key, sealed_value FROM kv").all()) {
    const h = r.k_h;
    if (!(h instanceof Uint8Array)) throw damagedRecord();
    const key = fromUtf8(open(keys, "kv-key", r.sealed_key, h));
    const value = open(keys, "kv", r.sealed_value, h);
    plain.push(value);
    const [kind, rest] = split(key);
    switch (kind) {
      case "cursor":
        if (rest === undefined) rows.cursor = decimal(value);
        break;
      case "group":
        if (rest !== undefined) rows.groups.set(rest, value);
        break;
      case "pcommit":
        if (rest !== undefined) rows.pendingCommits.set(rest, value);
        break;
      case "upd": {
        const ms = decimal(value);
        if (rest !== undefined && ms !== undefined) rows.lastUpdates.set(rest, ms);
        break;
      }
      case "leave": {
        const [conversationId, user] = split(rest ?? "");
        if (user !== undefined) rows.leaves.push({ conversationId, user });
        break;
      }
      case "kp":
      case "kplr":
        if (rest !== undefined) {
          rows.keyPackages.push({
            ref: rest,
            suite: "",
            lastResort: kind === "kplr",
            privatePackage: value,
          });
        }
        break;
      case "dir":
        if (rest !== undefined) rows.contacts.set(rest, value);
        break;
    }
  }
  return rows;
}

function groupRecords(rows: V1Rows, into: LocalState): GroupRecord[] {
  const out = new Map<string, GroupRecord>();
  for (const [channelId, state] of rows.groups) {
    const g: GroupRecord = {
      channelId,
      state,
      lastUpdateMs: rows.lastUpdates.get(channelId) ?? 0,
      leaves: [],
    };
    const pending = rows.pendingCommits.get(channelId);
    if (pending !== undefined) g.pendingCommit = pending;
    out.set(channelId, g);
  }
  for (const { conversationId, user } of rows.leaves) {
    const channelId = into.getConversation(conversationId)?.channelId ?? conversationId;
    const g = out.get(channelId);
    if (g !== undefined && !g.leaves.includes(user)) g.leaves.push(user);
  }
  for (const g of out.values()) g.leaves.sort(byString);
  return [...out.values()];
}

/** "kind:rest" at the first colon; [key, undefined] when there is none. */
function split(key: string): [string, string | undefined] {
  const i = key.indexOf(":");
  return i < 0 ? [key, undefined] : [key.slice(0, i), key.slice(i + 1)];
}

function decimal(value: Uint8Array): number | undefined {
  const text = fromUtf8(value);
  if (!/^\d{1,16}$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

function open(
  keys: ClientKeys,
  label: "kv" | "kv-key",
  sealed: unknown,
  h: Uint8Array,
): Uint8Array {
  if (!(sealed instanceof Uint8Array)) throw damagedRecord();
  try {
    return keys.open(label, sealed, h);
  } catch (e) {
    throw damagedRecord(e);
  }
}

/**
 * Upgrade a version-2 database to version 3: add the `consent` table and mark every user
 * whose identity key is pinned a contact. Before version 3 every DM and invitation was
 * accepted at once, so everyone this account has a pinned key for is someone it already
 * talks with (a DM peer or a member of a group it is in): an upgraded user sees no request
 * for an existing conversation. Conversations stored before carry no `requestFrom`, so they
 * all read as accepted. The consent row reuses the contact row's lookup hash (the username
 * itself is not stored in the contacts table, so a migrated record has none: only blocked
 * users are ever listed by name). One transaction; on error nothing changes.
 *
 * @throws {StorageError} when the upgrade cannot be written
 */
export function migrateV2(db: DatabaseSync, keys: ClientKeys, into: LocalState): void {
  try {
    into.transaction(() => {
      db.exec(TABLES_ADDED_IN_V3);
      const insert = db.prepare("INSERT INTO consent (name_h, data) VALUES (?, ?)");
      for (const r of db.prepare("SELECT name_h FROM contacts").all()) {
        const h = r.name_h;
        if (!(h instanceof Uint8Array)) throw damagedRecord();
        const sealed = keys.seal("consent", utf8(JSON.stringify({ status: "contact" })), h);
        insert.run(h, sealed);
      }
      db.exec("PRAGMA user_version = 3");
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError("Cannot upgrade local state to schema version 3", { cause: e });
  }
}

/**
 * Version 3 → 4: the state tag column. Rows keep a NULL tag (read as ""), which no decoded
 * copy carries; their summaries are filled in by the client when it first opens them.
 */
export function migrateV3(db: DatabaseSync, into: LocalState): void {
  try {
    into.transaction(() => {
      const columns = db.prepare("PRAGMA table_info(groups)").all().map((c) => c.name);
      if (!columns.includes("tag")) db.exec(COLUMNS_ADDED_IN_V4); // not there after migrateV1
      db.exec("PRAGMA user_version = 4");
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError("Cannot upgrade local state to schema version 4", { cause: e });
  }
}

/**
 * Version 4 to 5, in one transaction: the tables of split group states' secrets and of the
 * state tags, each tag moved there from its `groups` row. Stored states stay as they are
 * (whole, version-1 encodings, read as before); each is split at its next save
 * (src/client/group_states.ts).
 */
export function migrateV4(db: DatabaseSync, into: LocalState): void {
  try {
    into.transaction(() => {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
      if (!tables.some((t) => t.name === "group_secrets")) db.exec(TABLES_ADDED_IN_V5);
      const columns = db.prepare("PRAGMA table_info(groups)").all().map((c) => c.name);
      if (columns.includes("tag")) {
        db.exec(
          "INSERT INTO group_tags (group_h, tag) SELECT id_h, tag FROM groups WHERE tag IS NOT NULL",
        );
        db.exec("ALTER TABLE groups DROP COLUMN tag");
      }
      db.exec("PRAGMA user_version = 5");
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError("Cannot upgrade local state to schema version 5", { cause: e });
  }
}

/**
 * Version 5 to 6, in one transaction: the outbox's `conv_h` column. Each row (queued or
 * kept sent) is opened once, its conversation's lookup hash written beside it, and its
 * value sealed again with that hash in its associated data (as a message row is: moved to
 * another conversation's hash, it no longer opens). The sealed JSON itself is unchanged.
 *
 * @throws {StorageError} when a row does not open or the upgrade cannot be written
 *   (nothing is changed then)
 */
export function migrateV5(db: DatabaseSync, keys: ClientKeys, into: LocalState): void {
  const plain: Uint8Array[] = [];
  try {
    into.transaction(() => {
      db.exec(COLUMNS_ADDED_IN_V6);
      const update = db.prepare("UPDATE outbox SET conv_h = ?, data = ? WHERE id_h = ?");
      for (const r of db.prepare("SELECT id_h, data FROM outbox").all()) {
        const h = r.id_h;
        if (!(h instanceof Uint8Array) || !(r.data instanceof Uint8Array)) throw damagedRecord();
        let value: Uint8Array;
        try {
          value = keys.open("outbox", r.data, h);
        } catch (e) {
          throw damagedRecord(e);
        }
        plain.push(value);
        const conversationId = (JSON.parse(fromUtf8(value)) as { conversationId?: unknown })
          ?.conversationId;
        if (typeof conversationId !== "string") throw damagedRecord();
        const convH = keys.lookup("conversation", utf8(conversationId));
        update.run(convH, keys.seal("outbox", value, h, convH), h);
      }
      db.exec("PRAGMA user_version = 6");
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError("Cannot upgrade local state to schema version 6", { cause: e });
  } finally {
    zeroize(...plain);
  }
}
