/**
 * The production {@link ServerStore} on `node:sqlite`.
 *
 * Durability without a disk sync on the event loop: `node:sqlite` is synchronous, so a
 * COMMIT with `synchronous = FULL` would stall every connection for one fsync. Instead the
 * connection runs in WAL mode with `synchronous = NORMAL` (a COMMIT only writes its frames
 * to the WAL file, no fsync; SQLite stays consistent after a power cut and syncs the WAL
 * itself before each checkpoint), and the store fsyncs the WAL file off the event loop
 * (`Deno.FsFile.syncData`, a thread of the runtime). Group commit, one rule for every call:
 *
 * ```
 * calls of one event-loop turn ─► ONE transaction (a SAVEPOINT each) ─► COMMIT (no fsync)
 *        ─► committed = n ─► fsync of the WAL in flight? wait for it : start one
 * fsync(WAL) done covering n ─► answers of batches ≤ n released (then notify: pushes)
 * calls arriving while an fsync is in flight ─► their own transaction at once ─► the NEXT
 *        fsync covers every batch committed meanwhile: one fsync per group, not per call
 * a read (#call) ─► its result waits for the fsync of every batch committed before it, so
 *        nothing leaves the store (a pushed message, a seq, a dedupe answer) before it is
 *        durable; when nothing is waiting it returns at once
 * ```
 *
 * So an answer (and every push) is sent only after its data is on disk, exactly as with
 * FULL, and a message acknowledged to a sender survives a power cut. Acks alone wait for
 * no fsync (losing one in a crash only means a redelivery, dropped by sequence number);
 * their frames reach the disk with the next fsync. `busy_timeout` lets several processes
 * share the file; every mutating call is one SAVEPOINT of one `BEGIN IMMEDIATE … COMMIT`
 * transaction, so a call that throws changed nothing.
 * Prepared statements are cached per SQL text. On `":memory:"` the same code runs on a
 * private in-memory database: the one implementation of every rule, at memory speed.
 *
 * Opening order, so that a wrong key writes nothing:
 *
 * ```
 * writable? ─► open file ─► SQLite header? ─► read meta (seal mode, check value) and schema
 *   version ─► quick_check ─► verify db_key ─► WAL + pragmas ─► migrations ─► record seal
 *   mode and check value (new DB only)
 * ```
 *
 * Start-up errors name the path and tell apart what an operator does about them: a data
 * dir that cannot be written (read-only mount, permissions: fix the mount, the database is
 * fine), a damaged database (SQLite file failing `quick_check`: restore a backup), and a
 * foreign file (not SQLite, or SQLite without our tables: wrong `db_path`).
 *
 * With a `db_key`, see `sealing.ts` for what is sealed and hashed.
 *
 * @module
 */

import { backup, DatabaseSync, type SQLInputValue } from "node:sqlite";
import { type Row, Statements } from "../_statements.ts";
import { concat, constantTimeEqual, fromUtf8, toHex, utf8 } from "../../bytes.ts";
import { QpqError, StorageError, UsageError, ValidationError } from "../../errors.ts";
import {
  blocksFull,
  channelFull,
  checkChannelId,
  checkCipherSuite,
  checkCommit,
  checkCount,
  checkDistinct,
  checkEnqueue,
  checkGroupName,
  checkIdentityKey,
  checkKeyPackage,
  checkKeyPackageBatch,
  checkUsername,
  closedError,
  dmRosterFixed,
  epochConflict,
  groupsFull,
  heldFull,
  keyPackageRowKey,
  keyPackagesFull,
  lengthPrefixed,
  newChannelId,
  notAMember,
  orderedPair,
  queueFull,
  resolveLimits,
  senderQuotaFull,
  unknownChannel,
  unknownUser,
} from "./_common.ts";
import { migrate, readSchemaVersion, SCHEMA_VERSION } from "./migrations.ts";
import { MAX_HEAL_EPOCH_JUMP, RESTORE_SEQ_GAP } from "../../limits.ts";
import { Sealer, type SealMode } from "../sealing.ts";
import {
  type ChannelInfo,
  type ChannelKind,
  type ChannelListQuery,
  type CommitParams,
  type ConsumedKeyPackage,
  type CreateGroupParams,
  type Delivery,
  type DmResult,
  type EnqueueParams,
  type EnqueueResult,
  type FetchPageOptions,
  InProcessNotifier,
  type KeyPackageInput,
  type KeyPackageQuery,
  type MemberChannel,
  type Notifier,
  pageLength,
  type PendingLogin,
  type PurgeResult,
  type QueuedMessage,
  type QueuedPage,
  type RegistrationRecord,
  type ServerStore,
  type ServerStoreOptions,
  type SessionInfo,
  type StoreLimits,
  type UserInfo,
} from "./server_store.ts";
import { usernameSkeleton } from "../../names.ts";
import {
  createSecretsKey,
  readSecretsKey,
  SECRETS_CHECK_META,
  SECRETS_SEAL_META,
  SECRETS_SEAL_MODE,
  secretsSealerFor,
  syncDir,
} from "./_secrets_key.ts";
import {
  CHECKPOINT_BUSY_TIMEOUT_MS,
  CHECKPOINT_EVERY_COMMITS,
  STORAGE_PROBE_BYTES,
  STORAGE_PROBE_INTERVAL_MS,
  WAL_BACKSTOP_PAGES,
} from "../../limits.ts";
import { Checkpointer } from "./_checkpointer.ts";
import {
  classifyStorageError,
  describeStorageError,
  notWritableReason,
  type StorageEvent,
  storageFailure,
  type StorageHealth,
  StorageHealthTracker,
} from "./_storage_health.ts";

/** Options of {@link SqliteServerStore.open}. */
export interface SqliteServerStoreOptions extends ServerStoreOptions {
  /** How long a writer waits for another process's lock (ms, default 5000). */
  busyTimeoutMs?: number;
  /**
   * `true` (default): every COMMIT is fsynced (off the event loop, shared by the batches
   * committed meanwhile) before a call's promise resolves, so an acknowledged message
   * survives a power cut. `false`: commits reach the OS at once (surviving a crash
   * of the server process, not of the machine) and the disk at checkpoints; several times
   * the throughput on slow disks.
   */
  fsync?: boolean;
  /**
   * Told when the store starts failing (once per kind of failure, with the SQLite error)
   * and when it can write again (with the count): the server logs these. No secrets.
   */
  onStorageEvent?: (e: StorageEvent) => void;
  /**
   * Without `dbKey`: the secrets key file that seals the `secrets` table (the OPAQUE server
   * setup), see `_secrets_key.ts`. A database that records sealed secrets refuses to open
   * when the file is missing or another database's. Unset: secrets as they are (plain in a
   * database that never had a key file; unreadable, not replaced, in one that has).
   */
  secretsKeyFile?: string;
  /** Create {@link secretsKeyFile} when it is missing and the database does not need it (default true). */
  createSecretsKeyFile?: boolean;
  /**
   * How the WAL file reaches the disk (default `file.syncData()`). Tests pass one that
   * fails, as a failing disk does, to see that no answer covered by it says "stored".
   */
  syncData?: (file: Deno.FsFile) => Promise<void>;
  /**
   * Called once the database is open, before any request (tests and the simulation: e.g.
   * `PRAGMA max_page_count` to fill the disk, as SQLite's own SQLITE_FULL does).
   */
  onOpen?: (db: DatabaseSync) => void;
  /**
   * Who checkpoints the WAL: "worker" (default: a worker thread, off the event loop, see
   * `_checkpointer.ts`) or "sqlite" (SQLite's automatic checkpoint inside a COMMIT, on this
   * thread). The simulation takes "sqlite": a real thread would make its runs depend on
   * real time, and its simulated disk sees every write of the one connection.
   */
  checkpoints?: "worker" | "sqlite";
}

/**
 * The path of a private in-memory database: nothing is written to disk and everything is
 * lost on close. The same rules as a file, at memory speed (tests, the "memory" backend).
 */
export const MEMORY_PATH = ":memory:";

/** What {@link SqliteServerStore.inspectFile} found in a database file. */
export interface DatabaseFileInfo {
  /** Schema version of the file. */
  schemaVersion: number;
  /** True when its values are sealed under a db_key. */
  sealed: boolean;
  /** When `qpq server backup` took this copy (ms), when it is one. */
  backupTakenAt: number | undefined;
  /** How many restores the database has been through. */
  restoreGeneration: number;
  /** True when its secrets are sealed with a secrets key file (a database without db_key). */
  secretsKeyFile: boolean;
}

/** What a restored database tells each user (see {@link SqliteServerStore.markRestored}). */
export interface RestoreNoticeInfo {
  /** Restores of this database so far, this one included (1 = the first). */
  generation: number;
  /** When the backup was taken (ms), when known. */
  backupTakenAt: number | undefined;
  /** The last sequence number of the user's queue in the backup (0: none). */
  queueHighWater: number;
}

/** Parameters of {@link SqliteServerStore.markRestored}. */
export interface MarkRestoredParams {
  /** The stored payload of the notice put at the head of each user's queue. */
  notice: (info: RestoreNoticeInfo) => Uint8Array;
}

/** An account a restore lost: its name stays reserved for the owner of its identity key. */
export interface ReservedName {
  username: string;
  /** The account's identity key (undefined: it had published none). */
  identityKey?: Uint8Array;
}

/** What {@link SqliteServerStore.markRestored} did. */
export interface RestoreMark {
  /** Restores of this database so far, this one included. */
  generation: number;
  /** When the backup was taken (ms), when known. */
  backupTakenAt: number | undefined;
  /** Every queue's next sequence number now (past anything handed out since the backup). */
  seqFloor: number;
  /** Users told (one notice each). */
  users: number;
}

/** A mutating call waiting for the next group commit. */
interface PendingOp {
  fn: () => unknown;
  /** False for calls whose loss in a crash is harmless (acks): no fsync of their own. */
  durable: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Most calls sharing one transaction. */
const MAX_BATCH = 256;

/** Answers waiting for the fsync that covers their batch. */
/** What `#append` wrote: the result, and when (absent for a duplicate: nothing new). */
interface Appended extends EnqueueResult {
  receivedAt?: number;
}

interface SyncWaiter {
  /** The batch number (`#committed` after its COMMIT) the fsync must cover. */
  upTo: number;
  release: () => void;
  fail: (e: QpqError) => void;
}

/** Counters of {@link SqliteServerStore.durability} (tests, the bench). */
export interface DurabilityStats {
  /** Batches with a durable call committed so far. */
  committed: number;
  /** Every batch up to this one is on disk (fsynced). */
  synced: number;
  /** WAL fsyncs completed. */
  syncs: number;
  /** WAL checkpoints completed off the event loop (`_checkpointer.ts`). */
  checkpoints: number;
}

interface ChannelRow {
  id: string;
  kind: string;
  name: Uint8Array | null;
  created_by: Uint8Array;
  created_at: number;
  epoch: number;
}

const CHANNEL_COLUMNS = "c.id, c.kind, c.name, c.created_by, c.created_at, c.epoch";

/** A new name refused because an existing account's name looks the same. */
function lookAlike(username: string): UsageError {
  return new UsageError(
    `Username ${username} looks too much like an existing account: choose another`,
    { code: "conflict" },
  );
}

function readMeta(db: DatabaseSync): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
    .get();
  if (exists === undefined) return out;
  for (const r of db.prepare("SELECT key, value FROM meta").all()) {
    out.set(String(r.key), r.value as Uint8Array);
  }
  return out;
}

/** The SQLite server store. Create with {@link SqliteServerStore.open}. */
export class SqliteServerStore implements ServerStore {
  readonly notifier: Notifier;
  /**
   * What the migrations run by this open did that an operator must act on (accounts
   * renamed by migration 3); the server logs each at warn when it starts.
   */
  migrationNotices: readonly string[] = [];
  readonly #db: DatabaseSync;
  readonly #sealer: Sealer;
  /** Seals the `secrets` rows when they are not sealed by `#sealer` (no db_key, a key file). */
  #secrets: Sealer | undefined;
  /** True when the secrets are sealed with a key file this store was not given. */
  #secretsLocked = false;
  readonly #clock: () => number;
  readonly #lim: StoreLimits;
  readonly #sql: Statements;
  #batch: PendingOp[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The WAL file, fsynced off the event loop (a file database with fsync on). */
  #wal: Deno.FsFile | undefined;
  /** Batches with a durable call committed (COMMIT done, maybe not yet on disk). */
  #committed = 0;
  /** Every batch up to this number is on disk. */
  #synced = 0;
  #syncs = 0;
  #syncing = false;
  #waiters: SyncWaiter[] = [];
  readonly #health: StorageHealthTracker;
  #lastProbe = 0;
  readonly #syncData: (file: Deno.FsFile) => Promise<void>;
  /** The database file whose WAL the checkpoint worker checkpoints (a file database). */
  #path: string | undefined;
  #checkpointer: Checkpointer | undefined;
  /** The checkpoint under way, if any. */
  #checkpointRound: Promise<void> | undefined;
  /** Batches committed since the last checkpoint started. */
  #sinceCheckpoint = 0;
  #checkpoints = 0;
  /** True while the checkpoint's TRUNCATE step runs: batches wait (requests do not). */
  #paused = false;
  /** The worker failed: SQLite's automatic checkpoint again. */
  #noCheckpointer = false;

  private constructor(db: DatabaseSync, sealer: Sealer, options: SqliteServerStoreOptions) {
    this.#db = db;
    this.#sql = new Statements(db);
    this.#sealer = sealer;
    this.notifier = options.notifier ?? new InProcessNotifier();
    this.#clock = options.clock ?? Date.now;
    this.#lim = resolveLimits(options.limits);
    this.#health = new StorageHealthTracker(options.onStorageEvent);
    this.#syncData = options.syncData ?? ((f) => f.syncData());
  }

  /**
   * Open (creating if needed) the database at `path`, or a private in-memory one when
   * `path` is {@link MEMORY_PATH} (no WAL and no fsync there: there is no file).
   *
   * @throws {StorageError} "Cannot open database: wrong db_key" and similar one-line errors
   *   when the key does not match how the database was created; nothing is written then
   */
  static open(path: string, options: SqliteServerStoreOptions = {}): Promise<SqliteServerStore> {
    let db: DatabaseSync | undefined;
    let sealer: Sealer | undefined;
    let secrets: Sealer | undefined;
    let notices: string[] = [];
    try {
      sealer = options.dbKey === undefined ? Sealer.plain() : Sealer.fromDbKey(options.dbKey);
      if (path !== MEMORY_PATH) {
        checkWritable(path);
        ownerOnly(path);
        if (!hasSqliteHeader(path)) throw foreignFile(path);
      }
      try {
        db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 5000 });
      } catch (e) {
        throw new StorageError("Cannot open database: the file cannot be opened", { cause: e });
      }
      // 1. Read-only checks.
      let meta: Map<string, Uint8Array>;
      let version: number;
      try {
        meta = readMeta(db);
        version = readSchemaVersion(db);
        if (path !== MEMORY_PATH) quickCheck(db, path);
      } catch (e) {
        if (e instanceof QpqError) throw e;
        // an SQLite file (the header said so) that cannot be read is damaged
        if (classifyStorageError(e) === "damaged") throw damaged(path, e);
        throw new StorageError(`Cannot open database ${path}: ${describeStorageError(e)}`, {
          cause: e,
        });
      }
      if (version === 0 && meta.size === 0 && hasTables(db)) throw foreignFile(path);
      const mode = meta.get("seal_mode");
      if (mode !== undefined) verifySealing(sealer, fromUtf8(mode), meta.get("seal_check"));
      else if (version > 0) {
        throw new StorageError("Cannot open database: it has no sealing record");
      }
      // the secrets key file (no db_key): required when the database says so, else made
      const secretsSealed = meta.get(SECRETS_SEAL_META) !== undefined;
      let sealSecretsNow = false;
      const keyFile = options.secretsKeyFile;
      if (!sealer.sealed && path !== MEMORY_PATH && keyFile !== undefined) {
        if (secretsSealed) secrets = secretsSealerFor(keyFile, meta.get(SECRETS_CHECK_META));
        else {
          let key = readSecretsKey(keyFile);
          if (key === undefined && options.createSecretsKeyFile !== false) {
            key = createSecretsKey(keyFile);
          }
          if (key !== undefined) {
            secrets = Sealer.fromSecretsKey(key);
            key.fill(0);
            sealSecretsNow = true;
          }
        }
      }
      // 2. Writes. A private in-memory database has no journal file and nothing to fsync.
      const inMemory = path === MEMORY_PATH;
      const fsync = !inMemory && options.fsync !== false;
      if (!inMemory) {
        db.exec("PRAGMA journal_mode = WAL");
        // FULL while opening (migrations, sealing: synchronous, before any request)
        db.exec(`PRAGMA synchronous = ${fsync ? "FULL" : "NORMAL"}`);
      }
      db.exec("PRAGMA foreign_keys = ON");
      notices = migrate(db, options.clock?.() ?? Date.now(), sealer).notices;
      if (mode === undefined) {
        const ins = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
        db.exec("BEGIN IMMEDIATE");
        ins.run("seal_mode", utf8(sealer.mode));
        ins.run("seal_check", sealer.checkValue());
        db.exec("COMMIT");
      }
      if (sealSecretsNow) sealSecrets(db, secrets!, !inMemory);
      const store = new SqliteServerStore(db, sealer, options);
      store.#secrets = secrets;
      store.#secretsLocked = !sealer.sealed && secretsSealed && secrets === undefined;
      store.migrationNotices = notices;
      if (fsync) {
        // from here on COMMIT writes the WAL and the store fsyncs it off the event loop
        store.#wal = Deno.openSync(`${path}-wal`, {
          read: true,
          write: true,
          create: true,
          mode: 0o600,
        });
        syncDir(path);
        db.exec("PRAGMA synchronous = NORMAL");
      }
      if (!inMemory && options.checkpoints !== "sqlite") {
        // checkpoints off the event loop (_checkpointer.ts); SQLite's own only as a backstop
        db.exec(`PRAGMA wal_autocheckpoint = ${WAL_BACKSTOP_PAGES}`);
        store.#path = path;
      }
      options.onOpen?.(db);
      return Promise.resolve(store);
    } catch (e) {
      try {
        if (db?.isTransaction) db.exec("ROLLBACK");
        db?.close();
      } catch { /* already failing */ }
      sealer?.destroy();
      secrets?.destroy();
      const err = e instanceof QpqError
        ? e
        : new StorageError("Cannot open database: the file cannot be opened", { cause: e });
      return Promise.reject(err);
    }
  }

  /**
   * Check a database file without writing to it: SQLite's integrity check, that it is a
   * qpq server database, a schema not newer than this build, and, when `verifyKey` is set,
   * that it opens with `dbKey` (absent: a database created without db_key). Never needs
   * the key to read what it reports.
   *
   * @throws {StorageError} one line naming what is wrong (damaged, foreign, newer, key)
   */
  static inspectFile(
    path: string,
    options: { dbKey?: string; verifyKey?: boolean; secretsKeyFile?: string } = {},
  ): DatabaseFileInfo {
    let db: DatabaseSync | undefined;
    let sealer: Sealer | undefined;
    try {
      try {
        Deno.statSync(path);
        db = new DatabaseSync(path, { readOnly: true });
      } catch (e) {
        throw new StorageError(
          e instanceof Deno.errors.NotFound ? "no such file" : "the file cannot be opened",
          { cause: e },
        );
      }
      let integrity: string;
      try {
        // the first finding only, on one line (a row may hold several lines)
        const rows = db.prepare("PRAGMA integrity_check(5)").all();
        const found = rows.flatMap((r) => String(r.integrity_check).split("\n"))
          .map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("***"));
        integrity = found.length === 1 && found[0] === "ok"
          ? "ok"
          : `${found.length} finding(s), first: ${found[0] ?? "unknown"}`;
      } catch (e) {
        // SQLite could not even check it: damaged if it starts like an SQLite file
        if (hasSqliteHeader(path) && Deno.statSync(path).size > 0) {
          const why = e instanceof Error ? e.message.split("\n")[0]!.slice(0, 120) : "unreadable";
          throw new StorageError(`it is damaged (SQLite: ${why})`, { cause: e });
        }
        throw new StorageError("not a qpq server database (nor any SQLite database)", {
          cause: e,
        });
      }
      if (integrity !== "ok") {
        throw new StorageError(
          `it is damaged (SQLite integrity check: ${integrity.slice(0, 160)})`,
        );
      }
      let meta: Map<string, Uint8Array>;
      let version: number;
      try {
        meta = readMeta(db);
        version = readSchemaVersion(db);
      } catch (e) {
        throw new StorageError("not a qpq server database", { cause: e });
      }
      const mode = meta.get("seal_mode");
      if (mode === undefined || version === 0) {
        throw new StorageError("not a qpq server database");
      }
      if (version > SCHEMA_VERSION) {
        throw new StorageError(
          `it has schema version ${version}, newer than this qpq (${SCHEMA_VERSION})`,
        );
      }
      if (options.verifyKey) {
        sealer = options.dbKey ? Sealer.fromDbKey(options.dbKey) : Sealer.plain();
        verifySealing(sealer, fromUtf8(mode), meta.get("seal_check"));
      }
      if (options.secretsKeyFile !== undefined && meta.get(SECRETS_SEAL_META) !== undefined) {
        secretsSealerFor(options.secretsKeyFile, meta.get(SECRETS_CHECK_META)).destroy();
      }
      const num = (key: string): number | undefined => {
        const v = meta.get(key);
        const n = v === undefined ? NaN : Number(fromUtf8(v));
        return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
      };
      return {
        schemaVersion: version,
        sealed: fromUtf8(mode) !== "plain",
        backupTakenAt: num("backup_taken_at"),
        restoreGeneration: num("restore_generation") ?? 0,
        secretsKeyFile: meta.get(SECRETS_SEAL_META) !== undefined,
      };
    } finally {
      try {
        db?.close();
      } catch { /* already failing */ }
      sealer?.destroy();
    }
  }

  /**
   * Write a consistent copy of the database at `path` into `out` while other processes
   * (the running server) keep using it: SQLite's online backup in one step (one read
   * transaction), so the copy is one committed state, WAL included, sealed values copied as
   * they are (no key needed). `out` is created with mode 0600 and never replaces an existing file; the
   * copy records when it was taken (meta `backup_taken_at`). A failed copy is removed.
   *
   * @returns the time of the snapshot (ms) and the size of the copy (bytes)
   * @throws {UsageError} when `out` exists
   * @throws {StorageError} when the database cannot be read or the copy written
   */
  static async backupTo(
    path: string,
    out: string,
    options: { now?: () => number; busyTimeoutMs?: number } = {},
  ): Promise<{ takenAt: number; bytes: number }> {
    try {
      Deno.openSync(out, { write: true, createNew: true, mode: 0o600 }).close();
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        throw new UsageError(`${out} exists: a backup never replaces a file, choose another name`);
      }
      throw new StorageError(`Cannot create ${out}: ${errorName(e)}`, { cause: e });
    }
    let src: DatabaseSync | undefined;
    let dst: DatabaseSync | undefined;
    let done = false;
    try {
      try {
        src = new DatabaseSync(path, { readOnly: true, timeout: options.busyTimeoutMs ?? 5000 });
        if (readMeta(src).get("seal_mode") === undefined) {
          throw new StorageError(`Cannot back up ${path}: not a qpq server database`);
        }
      } catch (e) {
        if (e instanceof QpqError) throw e;
        throw new StorageError(`Cannot back up ${path}: the database cannot be opened`, {
          cause: e,
        });
      }
      const takenAt = (options.now ?? Date.now)();
      try {
        // every page in one step: one read transaction, so one committed state (a copy
        // in steps restarts whenever the server writes in between). VACUUM INTO would
        // need ATTACH, which Deno disables without full permissions.
        await backup(src, out, { rate: -1 });
      } catch (e) {
        throw new StorageError(`Cannot write ${out}: ${errorName(e)}`, { cause: e });
      }
      dst = new DatabaseSync(out);
      // one self-contained file: no -wal beside it to lose when it is copied away
      dst.exec("PRAGMA journal_mode = DELETE");
      dst.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('backup_taken_at', ?)")
        .run(utf8(String(takenAt)));
      dst.close();
      dst = undefined;
      Deno.chmodSync(out, 0o600);
      done = true;
      return { takenAt, bytes: Deno.statSync(out).size };
    } finally {
      try {
        src?.close();
        dst?.close();
      } catch { /* already failing */ }
      if (!done) {
        for (const f of [out, `${out}-journal`, `${out}-wal`, `${out}-shm`]) {
          try {
            Deno.removeSync(f);
          } catch { /* not there */ }
        }
      }
    }
  }

  /**
   * Mark this database (just put back from a backup, not yet served) as restored, in one
   * transaction: every queue's next sequence number moves {@link RESTORE_SEQ_GAP} past the
   * highest in the backup and past the current time in microseconds, so numbers handed out
   * after the backup (which clients may have seen), even in the life of an earlier restore,
   * are never reused; every user gets a notice (`params.notice`) at the head of its
   * queue saying what the restore rewound; meta records the restore generation and when.
   */
  markRestored(params: MarkRestoredParams): Promise<RestoreMark> {
    return this.#tx(() => {
      const meta = (key: string): number | undefined => {
        const v = this.#get("SELECT value FROM meta WHERE key = ?", key)?.value;
        const n = v instanceof Uint8Array ? Number(fromUtf8(v)) : NaN;
        return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
      };
      const setMeta = (key: string, value: number) =>
        this.#run(
          "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
          key,
          utf8(String(value)),
        );
      const generation = (meta("restore_generation") ?? 0) + 1;
      const backupTakenAt = meta("backup_taken_at");
      const top = Number(this.#get("SELECT COALESCE(MAX(next_seq), 1) AS n FROM queues")!.n);
      // past the backup's numbers, and past the restore time in microseconds: a second
      // restore from an older backup still moves past the numbers of the first one's life
      const seqFloor = Math.max(top + RESTORE_SEQ_GAP, this.#clock() * 1000);
      const id = new Uint8Array(16);
      id.set(utf8("qpqrst"));
      new DataView(id.buffer).setBigUint64(8, BigInt(seqFloor));
      const users = this.#all("SELECT uid, username FROM users ORDER BY uid");
      for (const u of users) {
        const uid = u.uid as Uint8Array;
        const q = this.#get("SELECT next_seq FROM queues WHERE recipient = ?", uid);
        const queueHighWater = Number(q?.next_seq ?? 1) - 1;
        this.#run(
          "INSERT INTO queues (recipient, next_seq, depth) VALUES (?, ?, 0) " +
            "ON CONFLICT (recipient) DO UPDATE SET next_seq = excluded.next_seq",
          uid,
          seqFloor,
        );
        const username = this.#openUsername(uid, u.username as Uint8Array);
        const p = {
          sender: username,
          messageId: toHex(id),
          channelId: null,
          payload: params.notice({ generation, backupTakenAt, queueHighWater }),
          recipients: [username],
        };
        this.#append(p, this.#dedupeRef(p), false, true);
      }
      // every channel is as it was in the backup: each may be healed once (issue 21)
      this.#run("DELETE FROM restored_channels");
      this.#run("INSERT INTO restored_channels (channel_id, epoch) SELECT id, epoch FROM channels");
      setMeta("restore_generation", generation);
      setMeta("restored_at", this.#clock());
      setMeta("restore_seq_floor", seqFloor);
      this.#run("DELETE FROM meta WHERE key = 'backup_taken_at'");
      if (backupTakenAt !== undefined) setMeta("restored_backup_taken_at", backupTakenAt);
      return { generation, backupTakenAt, seqFloor, users: users.length };
    });
  }

  /** True when values are sealed at rest (opened with a db_key). */
  get sealed(): boolean {
    return this.#sealer.sealed;
  }

  /**
   * Close the file after committing calls already made and syncing them to disk; later
   * calls throw.
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#noCheckpointer = true; // no checkpoint starts from here on
      const round = this.#checkpointRound;
      const finish = () => {
        while (this.#batch.length > 0) this.#flush();
        this.#closed = true;
        return new Promise<void>((resolve) => {
          this.#afterSync(this.#committed, resolve, () => resolve());
        });
      };
      // a checkpoint under way ends first (its pause, then the calls it held back)
      this.#closing = (round === undefined ? finish() : round.then(finish)).then(async () => {
        await this.#checkpointer?.close().catch(() => {});
        this.#checkpointer = undefined;
      }).then(() => {
        this.#sql.clear();
        try {
          this.#wal?.close();
          this.#db.close();
        } finally {
          this.#sealer.destroy();
          this.#secrets?.destroy();
        }
      });
    }
    return this.#closing;
  }

  /** How many batches are committed and how many are on disk (tests, the bench). */
  durability(): DurabilityStats {
    return {
      committed: this.#committed,
      synced: this.#synced,
      syncs: this.#syncs,
      checkpoints: this.#checkpoints,
    };
  }

  /**
   * One checkpoint of the WAL off the event loop (see `_checkpointer.ts`): PASSIVE while
   * batches go on, then TRUNCATE with batches paused, so the next COMMIT starts the WAL over
   * (from an empty file: a burst that outran the worker does not leave the file large).
   * A failing worker hands checkpoints back to SQLite.
   */
  #checkpoint(): void {
    if (this.#checkpointRound !== undefined || this.#path === undefined) return;
    if (this.#noCheckpointer || this.#closed || this.#closing !== undefined) return;
    this.#sinceCheckpoint = 0;
    const path = this.#path;
    this.#checkpointRound = (async () => {
      try {
        this.#checkpointer ??= await Checkpointer.start(path, CHECKPOINT_BUSY_TIMEOUT_MS);
        await this.#checkpointer.checkpoint("PASSIVE");
        this.#paused = true;
        try {
          await this.#checkpointer.checkpoint("TRUNCATE");
        } finally {
          this.#paused = false;
          if (this.#batch.length > 0) setImmediate(() => this.#flush());
        }
        this.#checkpoints++;
      } catch {
        this.#noCheckpointer = true;
        const c = this.#checkpointer;
        this.#checkpointer = undefined;
        await c?.close().catch(() => {});
        try {
          if (!this.#closed) this.#db.exec("PRAGMA wal_autocheckpoint = 1000");
        } catch { /* the next COMMIT reports a failing database */ }
      } finally {
        this.#checkpointRound = undefined;
      }
    })();
  }

  /**
   * Call `release` once every batch up to `upTo` is on disk (at once when it is), or
   * `fail` when the fsync covering it failed. Starts an fsync when none is in flight.
   */
  #afterSync(upTo: number, release: () => void, fail: (e: QpqError) => void): void {
    if (this.#synced >= upTo) {
      release();
      return;
    }
    this.#waiters.push({ upTo, release, fail });
    this.#startSync();
  }

  /**
   * One fsync of the WAL, covering every batch committed before it starts; when it ends,
   * the answers it covers are released and, if batches were committed meanwhile, the next
   * one starts. At most one is in flight: calls arriving during it form the next group.
   */
  #startSync(): void {
    const wal = this.#wal;
    if (this.#syncing || wal === undefined || this.#synced >= this.#committed) return;
    this.#syncing = true;
    const target = this.#committed;
    const settle = (err: QpqError | undefined) => {
      this.#syncing = false;
      this.#syncs++;
      // after a failed fsync the kernel may have dropped the pages: those answers fail
      // (the senders retry; duplicates are found by message id), later batches sync anew
      this.#synced = Math.max(this.#synced, target);
      while (this.#waiters.length > 0 && this.#waiters[0]!.upTo <= target) {
        const w = this.#waiters.shift()!;
        if (err === undefined) w.release();
        else w.fail(err);
      }
      this.#startSync();
    };
    this.#syncData(wal).then(() => settle(undefined), (e) => settle(this.#fail(e)));
  }

  // ---- health ----

  storageHealth(): StorageHealth {
    return this.#health.health;
  }

  async checkStorage(): Promise<StorageHealth> {
    const h = this.#health.health;
    if (h.status === "ok" || h.fault === "damaged" || this.#closed) return h;
    const now = this.#clock();
    if (now - this.#lastProbe < STORAGE_PROBE_INTERVAL_MS) return h;
    this.#lastProbe = now;
    // A real write of STORAGE_PROBE_BYTES, committed like any call, then removed. Not a
    // one-row write: after a failed commit SQLite reuses the WAL space that commit took,
    // so a tiny write succeeds on a full disk while a message does not (health would
    // flap and the failure be logged again and again).
    try {
      await this.#tx(() =>
        this.#run(
          "INSERT OR REPLACE INTO meta (key, value) VALUES ('storage_probe', zeroblob(?))",
          STORAGE_PROBE_BYTES,
        )
      );
      await this.#tx(() => this.#run("DELETE FROM meta WHERE key = 'storage_probe'"));
      this.#health.wrote();
    } catch { /* counted by the tracker */ }
    return this.#health.health;
  }

  /** A failure of SQLite (or the file system) counted and turned into the client's error. */
  #fail(e: unknown): QpqError {
    if (e instanceof QpqError) return e;
    const fault = classifyStorageError(e) ?? "io";
    this.#health.failed(fault, e);
    return storageFailure(fault, e);
  }

  // ---- plumbing ----

  #get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.#sql.get(sql, ...args);
  }

  #all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.#sql.all(sql, ...args);
  }

  #run(sql: string, ...args: SQLInputValue[]): number {
    return this.#sql.run(sql, ...args);
  }

  /**
   * Run `fn` synchronously as one read; wraps SQLite failures in StorageError. Its result
   * is released once every batch committed before it is on disk: it may have read them.
   */
  #call<T>(fn: () => T): Promise<T> {
    let v: T;
    try {
      if (this.#closed) throw closedError();
      v = fn();
    } catch (e) {
      return Promise.reject(this.#fail(e));
    }
    if (this.#synced >= this.#committed) return Promise.resolve(v);
    return new Promise<T>((resolve, reject) =>
      this.#afterSync(this.#committed, () => resolve(v), reject)
    );
  }

  /**
   * Run `fn` atomically and durably: resolves only after the COMMIT that contains it is on
   * disk (the WAL fsync covering it, see the module doc; acks: after the COMMIT).
   *
   * Group commit: calls made in the same event-loop turn (from any request) share one
   * `BEGIN IMMEDIATE … COMMIT`, and every batch committed while an fsync is in flight
   * shares the next fsync; each call runs inside its own SAVEPOINT, so a call that throws
   * is rolled back alone and the others still commit.
   */
  #tx<T>(fn: () => T, durable = true): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      this.#batch.push({ fn, durable, resolve: resolve as (v: unknown) => void, reject });
      // A macrotask, not a microtask: requests that arrived in the same I/O turn (from
      // any connection) join the batch, so under load one fsync serves many calls.
      // setImmediate, not setTimeout(0): timers are clamped to >= 1 ms (4 ms when nested),
      // which added ~2.3 ms to every mutating call; setImmediate runs right after the
      // current I/O turn (~35 µs).
      if (this.#batch.length === 1) setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    if (this.#paused && !this.#closed) return; // resumed by the checkpoint (#checkpoint)
    const batch = this.#batch.splice(0, MAX_BATCH);
    if (this.#batch.length > 0) queueMicrotask(() => this.#flush());
    if (batch.length === 0) return;
    if (this.#closed) {
      for (const op of batch) op.reject(closedError());
      return;
    }
    const db = this.#db;
    const outcomes: ({ ok: true; v: unknown } | { ok: false; e: QpqError })[] = [];
    // A batch of only non-durable calls (acks) waits for no fsync: its frames reach the
    // disk with the next one. Losing an ack in a crash only means a redelivery, which
    // clients drop by sequence number and message id.
    const durable = this.#wal !== undefined && batch.some((op) => op.durable);
    let wrote = false;
    // a batch of one call (a quiet server: most of them) needs no savepoint: the
    // transaction is the call, and a call that throws rolls it back
    const single = batch.length === 1;
    try {
      db.exec("BEGIN IMMEDIATE");
      for (const op of batch) {
        if (!single) db.exec("SAVEPOINT op");
        try {
          const v = op.fn();
          if (!single) db.exec("RELEASE op");
          outcomes.push({ ok: true, v });
          wrote = true;
        } catch (e) {
          if (!single) {
            // SQLite may roll the whole transaction back itself (SQLITE_FULL, IOERR, NOMEM):
            // the batch is lost, and this error, not "no such savepoint", says why
            if (!db.isTransaction) throw e;
            db.exec("ROLLBACK TO op");
            db.exec("RELEASE op");
          } else if (db.isTransaction) db.exec("ROLLBACK");
          outcomes.push({ ok: false, e: this.#fail(e) });
        }
      }
      if (db.isTransaction) db.exec("COMMIT");
      // degraded and something committed: maybe there is space again; the probe says
      if (wrote && this.#health.health.status === "degraded") void this.checkStorage();
      if (wrote && ++this.#sinceCheckpoint >= CHECKPOINT_EVERY_COMMITS) this.#checkpoint();
    } catch (e) {
      // BEGIN, a savepoint or COMMIT itself failed: nothing of this batch is stored.
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch { /* the original error is the one to report */ }
      const err = this.#fail(e);
      for (const op of batch) op.reject(err);
      return;
    }
    const release = () =>
      batch.forEach((op, i) => {
        const o = outcomes[i]!;
        if (o.ok) op.resolve(o.v);
        else op.reject(o.e);
      });
    if (!durable) {
      release();
      return;
    }
    if (!wrote) {
      // every call threw: nothing committed, but their errors may tell of batches not yet on
      // disk (as a read's result may), so they leave once those are
      this.#afterSync(this.#committed, release, release);
      return;
    }
    // answers leave only once the batch is on disk
    this.#afterSync(++this.#committed, release, (e) =>
      batch.forEach((op, i) => {
        const o = outcomes[i]!;
        op.reject(o.ok ? e : o.e);
      }));
  }

  #uid(username: string): Uint8Array {
    return this.#sealer.lookupName("user", username);
  }

  #userExists(uid: Uint8Array): boolean {
    return this.#get("SELECT 1 FROM users WHERE uid = ?", uid) !== undefined;
  }

  #requireUser(username: string): Uint8Array {
    checkUsername(username);
    const uid = this.#uid(username);
    if (!this.#userExists(uid)) throw unknownUser();
    return uid;
  }

  #openUsername(uid: Uint8Array, sealed: Uint8Array): string {
    return fromUtf8(this.#sealer.open("users.username", uid, sealed));
  }

  #channelInfo(r: Row): ChannelInfo {
    const row = r as unknown as ChannelRow;
    const id = row.id;
    const rowKey = utf8(id);
    return {
      id,
      kind: row.kind as ChannelKind,
      name: row.name === null
        ? undefined
        : fromUtf8(this.#sealer.open("channels.name", rowKey, row.name)),
      createdBy: fromUtf8(this.#sealer.open("channels.created_by", rowKey, row.created_by)),
      createdAt: row.created_at,
      epoch: row.epoch,
    };
  }

  // ---- secrets ----

  getOrCreateSecret(name: string, create: () => Uint8Array): Promise<Uint8Array> {
    return this.#tx(() => {
      if (this.#secretsLocked) {
        throw new StorageError(
          "Cannot read the server secrets: they are sealed with a secrets key file this store was opened without",
        );
      }
      const sealer = this.#secrets ?? this.#sealer;
      const rowKey = utf8(name);
      const r = this.#get("SELECT value FROM secrets WHERE name = ?", name);
      if (r !== undefined) return sealer.open("secrets.value", rowKey, r.value as Uint8Array);
      const v = create();
      this.#run(
        "INSERT INTO secrets (name, value) VALUES (?, ?)",
        name,
        sealer.seal("secrets.value", rowKey, v),
      );
      return v.slice();
    });
  }

  // ---- users ----

  /** The skeleton lookup bytes of a username (see `src/names.ts`). */
  #skeletonRef(username: string): Uint8Array {
    return this.#sealer.lookup("skeleton", utf8(usernameSkeleton(username)));
  }

  /** Throw "conflict" when `username` or a look-alike of it is registered. */
  #checkNewUsername(username: string): { uid: Uint8Array; skeleton: Uint8Array } {
    checkUsername(username);
    const uid = this.#uid(username);
    if (this.#userExists(uid)) {
      throw new UsageError(`Username ${username} is already registered`, { code: "conflict" });
    }
    const skeleton = this.#skeletonRef(username);
    if (this.#get("SELECT 1 FROM users WHERE skeleton_ref = ?", skeleton) !== undefined) {
      throw lookAlike(username);
    }
    // a name lost in a restore is kept for its owner: look-alikes of it are refused too
    if (
      this.#get("SELECT 1 FROM reserved_names WHERE skeleton_ref = ? AND uid != ?", skeleton, uid)
    ) {
      throw lookAlike(username);
    }
    return { uid, skeleton };
  }

  /**
   * A name lost in a restore (see {@link reserveNames}) is registered again only with the
   * identity key it had: its owner's state takes it back, nobody else gets it.
   */
  #checkReserved(username: string, uid: Uint8Array, identityKey: Uint8Array | undefined): void {
    const r = this.#get("SELECT identity_key FROM reserved_names WHERE uid = ?", uid);
    if (r === undefined) return;
    const kept = r.identity_key as Uint8Array | null;
    const theirs = kept === null
      ? undefined
      : this.#sealer.open("reserved_names.identity_key", uid, kept);
    if (
      theirs === undefined || identityKey === undefined || !constantTimeEqual(theirs, identityKey)
    ) {
      throw new UsageError(`Username ${username} is already registered`, { code: "conflict" });
    }
    this.#run("DELETE FROM reserved_names WHERE uid = ?", uid);
  }

  checkNewUsername(username: string): Promise<void> {
    return this.#call(() => {
      this.#checkNewUsername(username);
    });
  }

  createUser(
    username: string,
    registrationRecord: Uint8Array,
    options: { identityKey?: Uint8Array } = {},
  ): Promise<void> {
    return this.#tx(() => {
      const { uid, skeleton } = this.#checkNewUsername(username);
      this.#checkReserved(username, uid, options.identityKey);
      try {
        this.#run(
          "INSERT INTO users (uid, username, record, identity_key, created_at, skeleton_ref) " +
            "VALUES (?, ?, ?, NULL, ?, ?)",
          uid,
          this.#sealer.seal("users.username", uid, utf8(username)),
          this.#sealer.seal("users.record", uid, registrationRecord),
          this.#clock(),
          skeleton,
        );
      } catch (e) {
        // another process registered the same or a look-alike name between check and insert
        if (/UNIQUE/.test(String(e))) throw lookAlike(username);
        throw e;
      }
    });
  }

  reserveNames(accounts: readonly ReservedName[]): Promise<number> {
    return this.#tx(() => {
      let n = 0;
      for (const a of accounts) {
        const uid = this.#uid(a.username);
        if (this.#userExists(uid)) continue; // the backup has it: nothing was lost
        if (this.#get("SELECT 1 FROM reserved_names WHERE uid = ?", uid)) continue;
        this.#run(
          "INSERT INTO reserved_names (uid, skeleton_ref, identity_key, reserved_at) " +
            "VALUES (?, ?, ?, ?)",
          uid,
          this.#skeletonRef(a.username),
          a.identityKey === undefined
            ? null
            : this.#sealer.seal("reserved_names.identity_key", uid, a.identityKey),
          this.#clock(),
        );
        n++;
      }
      return n;
    });
  }

  isReserved(username: string): Promise<boolean> {
    return this.#call(() =>
      this.#get("SELECT 1 FROM reserved_names WHERE uid = ?", this.#uid(username)) !== undefined
    );
  }

  /**
   * Every account of the database at `path` with its identity key, read without opening
   * it as a store (read-only: no migration, no lock): what a restore replacing it would
   * lose. StorageError when it cannot be read.
   */
  static readAccounts(path: string, options: { dbKey?: string } = {}): ReservedName[] {
    let db: DatabaseSync | undefined;
    const sealer = options.dbKey ? Sealer.fromDbKey(options.dbKey) : Sealer.plain();
    try {
      db = new DatabaseSync(path, { readOnly: true });
      const meta = readMeta(db);
      verifySealing(
        sealer,
        fromUtf8(meta.get("seal_mode") ?? new Uint8Array()),
        meta.get("seal_check"),
      );
      return db.prepare("SELECT uid, username, identity_key FROM users").all().map((r) => {
        const uid = r.uid as Uint8Array;
        const ik = r.identity_key as Uint8Array | null;
        return {
          username: fromUtf8(sealer.open("users.username", uid, r.username as Uint8Array)),
          ...(ik === null ? {} : { identityKey: sealer.open("users.identity_key", uid, ik) }),
        };
      });
    } catch (e) {
      if (e instanceof QpqError) throw e;
      throw new StorageError("Cannot read the accounts of the database", { cause: e });
    } finally {
      db?.close();
      sealer.destroy();
    }
  }

  getUser(username: string): Promise<UserInfo | undefined> {
    return this.#call(() => {
      const uid = this.#uid(username);
      const r = this.#get("SELECT identity_key, created_at FROM users WHERE uid = ?", uid);
      if (r === undefined) return undefined;
      const ik = r.identity_key as Uint8Array | null;
      return {
        username,
        createdAt: r.created_at as number,
        identityKey: ik === null ? undefined : this.#sealer.open("users.identity_key", uid, ik),
      };
    });
  }

  getRegistrationRecord(username: string): Promise<RegistrationRecord | undefined> {
    return this.#call(() => {
      const uid = this.#uid(username);
      const r = this.#get("SELECT record, opaque_id FROM users WHERE uid = ?", uid);
      if (r === undefined) return undefined;
      const id = r.opaque_id as Uint8Array | null;
      return {
        record: this.#sealer.open("users.record", uid, r.record as Uint8Array),
        identifier: id === null
          ? username
          : fromUtf8(this.#sealer.open("users.opaque_id", uid, id)),
      };
    });
  }

  setIdentityKey(
    username: string,
    key: Uint8Array,
    options: { replace?: boolean } = {},
  ): Promise<void> {
    return this.#tx(() => {
      checkIdentityKey(key);
      const uid = this.#uid(username);
      const r = this.#get("SELECT identity_key FROM users WHERE uid = ?", uid);
      if (r === undefined) throw unknownUser();
      const old = r.identity_key as Uint8Array | null;
      if (old !== null && !options.replace) {
        const prev = this.#sealer.open("users.identity_key", uid, old);
        if (!constantTimeEqual(prev, key)) {
          throw new UsageError("A different identity key is already published", {
            code: "conflict",
          });
        }
      }
      this.#run(
        "UPDATE users SET identity_key = ? WHERE uid = ?",
        this.#sealer.seal("users.identity_key", uid, key),
        uid,
      );
    });
  }

  async getIdentityKey(username: string): Promise<Uint8Array | undefined> {
    return (await this.getUser(username))?.identityKey;
  }

  // ---- logins and sessions ----

  savePendingLogin(loginId: Uint8Array, login: PendingLogin, expiresAt: number): Promise<void> {
    return this.#tx(() => {
      checkUsername(login.username);
      const ref = this.#sealer.lookup("login", loginId);
      this.#run(
        "INSERT OR REPLACE INTO pending_logins (login_ref, username, state, expires_at) VALUES (?, ?, ?, ?)",
        ref,
        this.#sealer.seal("pending_logins.username", ref, utf8(login.username)),
        this.#sealer.seal("pending_logins.state", ref, login.state),
        expiresAt,
      );
    });
  }

  takePendingLogin(loginId: Uint8Array): Promise<PendingLogin | undefined> {
    return this.#tx(() => {
      const ref = this.#sealer.lookup("login", loginId);
      const r = this.#get(
        "SELECT username, state, expires_at FROM pending_logins WHERE login_ref = ?",
        ref,
      );
      if (r === undefined) return undefined;
      this.#run("DELETE FROM pending_logins WHERE login_ref = ?", ref);
      if ((r.expires_at as number) <= this.#clock()) return undefined;
      return {
        username: fromUtf8(
          this.#sealer.open("pending_logins.username", ref, r.username as Uint8Array),
        ),
        state: this.#sealer.open("pending_logins.state", ref, r.state as Uint8Array),
      };
    });
  }

  createSession(token: Uint8Array, username: string, expiresAt: number): Promise<void> {
    return this.#tx(() => {
      const uid = this.#requireUser(username);
      this.#run(
        "INSERT OR REPLACE INTO sessions (token_ref, uid, expires_at) VALUES (?, ?, ?)",
        this.#sealer.lookup("token", token),
        uid,
        expiresAt,
      );
    });
  }

  lookupSession(token: Uint8Array): Promise<SessionInfo | undefined> {
    return this.#call(() => {
      const ref = this.#sealer.lookup("token", token);
      const r = this.#get(
        "SELECT s.token_ref, s.uid, s.expires_at, u.username FROM sessions s " +
          "JOIN users u ON u.uid = s.uid WHERE s.token_ref = ? AND s.expires_at > ?",
        ref,
        this.#clock(),
      );
      // The index lookup found it; compare the full hash in constant time all the same.
      if (r === undefined || !constantTimeEqual(r.token_ref as Uint8Array, ref)) return undefined;
      return {
        username: this.#openUsername(r.uid as Uint8Array, r.username as Uint8Array),
        expiresAt: r.expires_at as number,
      };
    });
  }

  revokeSession(token: Uint8Array): Promise<boolean> {
    return this.#tx(() =>
      this.#run("DELETE FROM sessions WHERE token_ref = ?", this.#sealer.lookup("token", token)) >
        0
    );
  }

  revokeUserSessions(username: string): Promise<number> {
    return this.#tx(() => this.#run("DELETE FROM sessions WHERE uid = ?", this.#uid(username)));
  }

  replaceRegistrationRecord(
    username: string,
    record: Uint8Array,
    next: { token: Uint8Array; expiresAt: number; current?: Uint8Array },
  ): Promise<number> {
    return this.#tx(() => {
      const uid = this.#requireUser(username);
      // the new record is registered under the username: a legacy spelling goes with it
      this.#run(
        "UPDATE users SET record = ?, opaque_id = NULL WHERE uid = ?",
        this.#sealer.seal("users.record", uid, record),
        uid,
      );
      if (next.current !== undefined) {
        this.#run(
          "DELETE FROM sessions WHERE token_ref = ? AND uid = ?",
          this.#sealer.lookup("token", next.current),
          uid,
        );
      }
      const ended = this.#run("DELETE FROM sessions WHERE uid = ?", uid);
      this.#run(
        "INSERT INTO sessions (token_ref, uid, expires_at) VALUES (?, ?, ?)",
        this.#sealer.lookup("token", next.token),
        uid,
        next.expiresAt,
      );
      return ended;
    });
  }

  // ---- key packages ----

  /** Unexpired batch packages of `uid` (of one suite, or all when `suite` is 0). */
  #countKp(uid: Uint8Array, suite: number): number {
    const r = suite === 0
      ? this.#get(
        "SELECT COUNT(*) AS n FROM key_packages WHERE uid = ? AND not_after > ?",
        uid,
        this.#clock(),
      )
      : this.#get(
        "SELECT COUNT(*) AS n FROM key_packages WHERE uid = ? AND cipher_suite = ? AND not_after > ?",
        uid,
        suite,
        this.#clock(),
      );
    return Number(r?.n ?? 0);
  }

  addKeyPackages(username: string, packages: readonly KeyPackageInput[]): Promise<number> {
    return this.#tx(() => {
      checkKeyPackageBatch(packages, this.#lim);
      const uid = this.#requireUser(username);
      let added = 0;
      for (const p of packages) {
        added += this.#run(
          "INSERT OR IGNORE INTO key_packages (uid, ref, data, not_after, cipher_suite) " +
            "VALUES (?, ?, ?, ?, ?)",
          uid,
          p.ref,
          this.#sealer.seal("key_packages.data", keyPackageRowKey(uid, p.ref), p.data),
          p.notAfter,
          p.cipherSuite,
        );
      }
      // Every stored row counts toward the cap (expired ones until purged), all suites.
      const total = Number(
        this.#get("SELECT COUNT(*) AS n FROM key_packages WHERE uid = ?", uid)?.n ?? 0,
      );
      if (added > 0 && total > this.#lim.maxKeyPackagesPerUser) throw keyPackagesFull(this.#lim);
      return this.#countKp(uid, 0);
    });
  }

  setLastResortKeyPackage(username: string, pkg: KeyPackageInput): Promise<void> {
    return this.#tx(() => {
      checkKeyPackage(pkg, this.#lim);
      const uid = this.#requireUser(username);
      // Sealed under the user (as before migration 2): a row moved to another suite of the
      // same user is not detected here; members refuse a KeyPackage of the wrong suite.
      this.#run(
        "INSERT OR REPLACE INTO last_resort_key_packages (uid, cipher_suite, ref, data, not_after) " +
          "VALUES (?, ?, ?, ?, ?)",
        uid,
        pkg.cipherSuite,
        pkg.ref,
        this.#sealer.seal("last_resort_key_packages.data", uid, pkg.data),
        pkg.notAfter,
      );
    });
  }

  consumeKeyPackage(
    username: string,
    query: KeyPackageQuery = {},
  ): Promise<ConsumedKeyPackage | undefined> {
    return this.#tx(() => {
      const suite = query.cipherSuite ?? 0;
      checkCipherSuite(suite, true);
      const uid = this.#requireUser(username);
      const now = this.#clock();
      const r = suite === 0
        ? this.#get(
          "SELECT id, ref, data, not_after, cipher_suite FROM key_packages " +
            "WHERE uid = ? AND not_after > ? ORDER BY id LIMIT 1",
          uid,
          now,
        )
        : this.#get(
          "SELECT id, ref, data, not_after, cipher_suite FROM key_packages " +
            "WHERE uid = ? AND cipher_suite = ? AND not_after > ? ORDER BY id LIMIT 1",
          uid,
          suite,
          now,
        );
      if (r !== undefined) {
        this.#run("DELETE FROM key_packages WHERE id = ?", r.id as number);
        const ref = r.ref as Uint8Array;
        return {
          ref,
          cipherSuite: r.cipher_suite as number,
          data: this.#sealer.open(
            "key_packages.data",
            keyPackageRowKey(uid, ref),
            r.data as Uint8Array,
          ),
          notAfter: r.not_after as number,
          lastResort: false,
        };
      }
      const lr = suite === 0
        ? this.#get(
          "SELECT ref, data, not_after, cipher_suite FROM last_resort_key_packages " +
            "WHERE uid = ? AND not_after > ? ORDER BY cipher_suite LIMIT 1",
          uid,
          now,
        )
        : this.#get(
          "SELECT ref, data, not_after, cipher_suite FROM last_resort_key_packages " +
            "WHERE uid = ? AND cipher_suite = ? AND not_after > ?",
          uid,
          suite,
          now,
        );
      if (lr === undefined) return undefined;
      return {
        ref: lr.ref as Uint8Array,
        cipherSuite: lr.cipher_suite as number,
        data: this.#sealer.open("last_resort_key_packages.data", uid, lr.data as Uint8Array),
        notAfter: lr.not_after as number,
        lastResort: true,
      };
    });
  }

  countKeyPackages(username: string, query: KeyPackageQuery = {}): Promise<number> {
    return this.#call(() => {
      const suite = query.cipherSuite ?? 0;
      checkCipherSuite(suite, true);
      return this.#countKp(this.#requireUser(username), suite);
    });
  }

  // ---- channels ----

  #channelRow(id: string): Row | undefined {
    return this.#get(`SELECT ${CHANNEL_COLUMNS} FROM channels c WHERE c.id = ?`, id);
  }

  #requireChannel(id: string): ChannelInfo {
    const r = this.#channelRow(id);
    if (r === undefined) throw unknownChannel();
    return this.#channelInfo(r);
  }

  #memberCount(id: string): number {
    return Number(
      this.#get("SELECT COUNT(*) AS n FROM members WHERE channel_id = ?", id)?.n ?? 0,
    );
  }

  #isMemberUid(id: string, uid: Uint8Array): boolean {
    return this.#get(
      "SELECT 1 FROM members WHERE channel_id = ? AND uid = ? AND held = 0",
      id,
      uid,
    ) !== undefined;
  }

  #isHeldUid(id: string, uid: Uint8Array): boolean {
    return this.#get(
      "SELECT 1 FROM members WHERE channel_id = ? AND uid = ? AND held = 1",
      id,
      uid,
    ) !== undefined;
  }

  /** Channels the user is on, joined (held = 0) or held (held = 1). */
  #channelCount(uid: Uint8Array, held: 0 | 1): number {
    return Number(
      this.#get("SELECT COUNT(*) AS n FROM members WHERE uid = ? AND held = ?", uid, held)?.n ??
        0,
    );
  }

  /**
   * Put a user on a channel's roster inside the caller's transaction: joined while under
   * `maxGroupsPerUser`, else held (an invitation that waits), refused past the held cap.
   */
  #addMember(id: string, uid: Uint8Array, username: string): void {
    if (this.#get("SELECT 1 FROM members WHERE channel_id = ? AND uid = ?", id, uid)) return;
    let held = 0;
    if (this.#channelCount(uid, 0) >= this.#lim.maxGroupsPerUser) {
      if (this.#channelCount(uid, 1) >= this.#lim.maxHeldInvitationsPerUser) {
        throw heldFull(username, this.#lim);
      }
      held = 1;
    }
    this.#run("INSERT INTO members (channel_id, uid, held) VALUES (?, ?, ?)", id, uid, held);
  }

  createGroupChannel(params: CreateGroupParams): Promise<ChannelInfo> {
    return this.#tx(() => {
      checkGroupName(params.name);
      const id = params.id ?? newChannelId();
      checkChannelId(id);
      const epoch = params.epoch ?? 0;
      checkCount("epoch", epoch);
      const creator = this.#requireUser(params.creator);
      if (this.#channelCount(creator, 0) >= this.#lim.maxGroupsPerUser) {
        throw groupsFull(this.#lim);
      }
      // a group is its id; its name is a label that other groups may carry too (issue 21)
      if (this.#get("SELECT 1 FROM channels WHERE id = ?", id) !== undefined) {
        throw new UsageError("Channel already exists", { code: "conflict" });
      }
      const rowKey = utf8(id);
      const createdAt = this.#clock();
      this.#run(
        "INSERT INTO channels (id, kind, name, dm_ref, created_by, created_at, epoch) " +
          "VALUES (?, 'group', ?, NULL, ?, ?, ?)",
        id,
        this.#sealer.seal("channels.name", rowKey, utf8(params.name)),
        this.#sealer.seal("channels.created_by", rowKey, utf8(params.creator)),
        createdAt,
        epoch,
      );
      this.#run("INSERT INTO members (channel_id, uid) VALUES (?, ?)", id, creator);
      return {
        id,
        kind: "group",
        name: params.name,
        createdBy: params.creator,
        createdAt,
        epoch,
      };
    });
  }

  getOrCreateDm(a: string, b: string): Promise<DmResult> {
    return this.#tx(() => {
      checkUsername(a);
      checkUsername(b);
      if (a === b) throw new UsageError("Cannot open a direct message channel with yourself");
      const ua = this.#requireUser(a);
      const ub = this.#requireUser(b);
      const [x, y] = orderedPair(a, b);
      const dmRef = this.#sealer.lookup("dm", lengthPrefixed(x, y));
      const found = this.#get(
        `SELECT ${CHANNEL_COLUMNS} FROM channels c WHERE c.dm_ref = ?`,
        dmRef,
      );
      if (found !== undefined) return { channel: this.#channelInfo(found), created: false };
      const id = newChannelId();
      const rowKey = utf8(id);
      const createdAt = this.#clock();
      this.#run(
        "INSERT INTO channels (id, kind, name, dm_ref, created_by, created_at, epoch) " +
          "VALUES (?, 'dm', NULL, ?, ?, ?, 0)",
        id,
        dmRef,
        this.#sealer.seal("channels.created_by", rowKey, utf8(a)),
        createdAt,
      );
      // the asker must be under the cap; the peer may get a held invitation instead
      if (this.#channelCount(ua, 0) >= this.#lim.maxGroupsPerUser) throw groupsFull(this.#lim);
      this.#run("INSERT INTO members (channel_id, uid) VALUES (?, ?)", id, ua);
      this.#addMember(id, ub, b);
      return {
        channel: { id, kind: "dm", name: undefined, createdBy: a, createdAt, epoch: 0 },
        created: true,
      };
    });
  }

  getChannel(channelId: string): Promise<ChannelInfo | undefined> {
    return this.#call(() => {
      const r = this.#channelRow(channelId);
      return r === undefined ? undefined : this.#channelInfo(r);
    });
  }

  listChannels(username: string, query: ChannelListQuery = {}): Promise<ChannelInfo[]> {
    return this.#call(() =>
      this.#all(
        `SELECT ${CHANNEL_COLUMNS} FROM members m JOIN channels c ON c.id = m.channel_id ` +
          "WHERE m.uid = ? AND m.held = ? AND c.id > ? ORDER BY c.id LIMIT ?",
        this.#uid(username),
        query.held ? 1 : 0,
        query.after ?? "",
        query.limit ?? -1,
      ).map((r) => this.#channelInfo(r))
    );
  }

  answerInvitation(channelId: string, username: string, accept: boolean): Promise<void> {
    return this.#tx(() => {
      const uid = this.#uid(username);
      if (!this.#isHeldUid(channelId, uid)) {
        throw new UsageError("No invitation to this conversation is waiting", {
          code: "not_found",
        });
      }
      if (!accept) {
        this.#run("DELETE FROM members WHERE channel_id = ? AND uid = ?", channelId, uid);
        return;
      }
      if (this.#channelCount(uid, 0) >= this.#lim.maxGroupsPerUser) throw groupsFull(this.#lim);
      this.#run("UPDATE members SET held = 0 WHERE channel_id = ? AND uid = ?", channelId, uid);
    });
  }

  listMembers(channelId: string): Promise<string[]> {
    return this.#call(() => {
      this.#requireChannel(channelId);
      return this.#members(channelId);
    });
  }

  /** The roster of a channel, sorted (held invitations included). */
  #members(channelId: string): string[] {
    return this.#names(this.#rosterRows(channelId));
  }

  /** Every member row of a channel (uid, sealed username, held), held invitations included. */
  #rosterRows(channelId: string): Row[] {
    return this.#all(
      "SELECT u.uid, u.username, m.held FROM members m JOIN users u ON u.uid = m.uid " +
        "WHERE m.channel_id = ?",
      channelId,
    );
  }

  #names(rows: readonly Row[]): string[] {
    return rows.map((r) => this.#openUsername(r.uid as Uint8Array, r.username as Uint8Array))
      .sort();
  }

  channelOfMember(channelId: string, username: string): Promise<MemberChannel | undefined> {
    return this.#call(() => {
      const r = this.#channelRow(channelId);
      if (r === undefined) return undefined;
      // the roster read says whether `username` is on it (not held): no query of its own
      const uid = this.#uid(username);
      const rows = this.#rosterRows(channelId);
      const me = rows.find((row) => constantTimeEqual(row.uid as Uint8Array, uid));
      if (me === undefined || Number(me.held) !== 0) return undefined;
      return { channel: this.#channelInfo(r), members: this.#names(rows) };
    });
  }

  isMember(channelId: string, username: string): Promise<boolean> {
    return this.#call(() => this.#isMemberUid(channelId, this.#uid(username)));
  }

  /** Apply a roster change inside the caller's transaction, enforcing the member cap. */
  #changeRoster(c: ChannelInfo, add: readonly string[], remove: readonly string[]): void {
    if (add.length === 0 && remove.length === 0) return;
    if (c.kind !== "group") throw dmRosterFixed();
    checkDistinct("member", add);
    checkDistinct("member", remove);
    for (const u of remove) {
      this.#run("DELETE FROM members WHERE channel_id = ? AND uid = ?", c.id, this.#uid(u));
    }
    for (const u of add) this.#addMember(c.id, this.#requireUser(u), u);
    if (add.length > 0 && this.#memberCount(c.id) > this.#lim.maxChannelMembers) {
      throw channelFull(this.#lim);
    }
  }

  addMembers(channelId: string, usernames: readonly string[]): Promise<void> {
    return this.#tx(() => this.#changeRoster(this.#requireChannel(channelId), usernames, []));
  }

  removeMembers(channelId: string, usernames: readonly string[]): Promise<void> {
    return this.#tx(() => this.#changeRoster(this.#requireChannel(channelId), [], usernames));
  }

  async commitAndFanOut(params: CommitParams): Promise<EnqueueResult> {
    const r = await this.#tx(() => {
      checkCommit(params, this.#lim);
      const ref = this.#dedupeRef(params);
      const dup = this.#duplicate(ref);
      if (dup !== undefined) return dup;
      const c = this.#requireChannel(params.channelId);
      if (!this.#isMemberUid(c.id, this.#uid(params.sender))) throw notAMember();
      if (params.epoch !== c.epoch && !(params.heal && this.#healable(c, params.epoch))) {
        throw epochConflict(c.epoch, params.epoch);
      }
      // any accepted commit ends the heal of a restored channel: server and group agree
      this.#run("DELETE FROM restored_channels WHERE channel_id = ?", c.id);
      this.#changeRoster(c, params.rosterAdd ?? [], params.rosterRemove ?? []);
      this.#run("UPDATE channels SET epoch = ? WHERE id = ?", params.epoch + 1, c.id);
      return this.#append(params, ref, true);
    });
    return this.#notify(r, params);
  }

  /**
   * A channel marked by the restore (no commit accepted since), and a commit past its epoch.
   * @throws {ValidationError} for a jump past MAX_HEAL_EPOCH_JUMP: refused in words, never
   *   as an epoch conflict (its member would retry, take it as healed by someone else and
   *   say nothing)
   */
  #healable(c: ChannelInfo, epoch: number): boolean {
    const r = this.#get("SELECT epoch FROM restored_channels WHERE channel_id = ?", c.id);
    if (r === undefined || epoch <= c.epoch) return false;
    if (epoch - c.epoch > MAX_HEAL_EPOCH_JUMP) {
      throw new ValidationError(
        `A repair may move a conversation at most ${MAX_HEAL_EPOCH_JUMP} epochs past the ` +
          `server's (${c.epoch} to ${epoch})`,
      );
    }
    return true;
  }

  // ---- delivery queues ----

  #dedupeRef(p: { sender: string; messageId: string }): Uint8Array {
    return this.#sealer.lookup("message", lengthPrefixed(p.sender, p.messageId));
  }

  #duplicate(ref: Uint8Array): EnqueueResult | undefined {
    const r = this.#get("SELECT fanout FROM messages WHERE dedupe_ref = ?", ref);
    if (r === undefined) return undefined;
    const fan = JSON.parse(
      fromUtf8(this.#sealer.open("messages.fanout", ref, r.fanout as Uint8Array)),
    ) as [string, number][];
    return { deliveries: fan.map(([recipient, seq]) => ({ recipient, seq })), duplicate: true };
  }

  /**
   * Write the message and its deliveries inside the caller's transaction. `unlimited`
   * (a restore notice): no queue or sender quota, the notice must reach every queue.
   */
  #append(p: EnqueueParams, ref: Uint8Array, commit = false, unlimited = false): Appended {
    const now = this.#clock();
    const deliveries: Delivery[] = [];
    const queues: { uid: Uint8Array; next: number; depth: number }[] = [];
    const senderUid = this.#uid(p.sender);
    const size = p.payload.length;
    // a commit may use twice the sender's share: refusing it would stall the group
    const share = commit ? 2 : 1;
    for (const recipient of p.recipients) {
      checkUsername(recipient);
      const uid = this.#uid(recipient);
      // one read per recipient: the user exists, its queue, and whether it is held
      const q = this.#get(
        "SELECT q.next_seq, q.depth, " +
          "(SELECT m.held FROM members m WHERE m.channel_id = ? AND m.uid = u.uid) AS held " +
          "FROM users u LEFT JOIN queues q ON q.recipient = u.uid WHERE u.uid = ?",
        p.channelId,
        uid,
      );
      if (q === undefined) throw unknownUser();
      // a held invitation gets nothing of its channel (not even the Welcome) until accepted
      if (p.channelId !== null && Number(q.held) === 1) continue;
      const next = (q.next_seq as number | null) ?? 1;
      const depth = (q.depth as number | null) ?? 0;
      if (depth >= this.#lim.maxQueueMessages && !unlimited) throw queueFull(this.#lim);
      const held = this.#get(
        "SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM deliveries " +
          "WHERE recipient = ? AND sender_uid = ?",
        uid,
        senderUid,
      );
      if (
        !unlimited && (Number(held?.n ?? 0) + 1 > share * this.#lim.maxSenderMessages ||
          Number(held?.b ?? 0) + size > share * this.#lim.maxSenderBytes)
      ) {
        throw senderQuotaFull(recipient, this.#lim);
      }
      queues.push({ uid, next, depth });
      deliveries.push({ recipient, seq: next });
    }
    const fanout = utf8(JSON.stringify(deliveries.map((d) => [d.recipient, d.seq])));
    const body = concat(lengthPrefixed(p.sender, p.messageId), p.payload);
    const res = this.#sql.prepare(
      "INSERT INTO messages (dedupe_ref, channel_id, body, fanout, created_at) " +
        "VALUES (?, ?, ?, ?, ?)",
    ).run(
      ref,
      p.channelId,
      this.#sealer.seal("messages.body", ref, body),
      this.#sealer.seal("messages.fanout", ref, fanout),
      now,
    );
    const msgId = Number(res.lastInsertRowid);
    for (const q of queues) {
      this.#run(
        "INSERT INTO deliveries (recipient, seq, message, created_at, sender_uid, bytes) " +
          "VALUES (?, ?, ?, ?, ?, ?)",
        q.uid,
        q.next,
        msgId,
        now,
        senderUid,
        size,
      );
      this.#run(
        "INSERT INTO queues (recipient, next_seq, depth) VALUES (?, ?, ?) " +
          "ON CONFLICT (recipient) DO UPDATE SET next_seq = excluded.next_seq, depth = excluded.depth",
        q.uid,
        q.next + 1,
        q.depth + 1,
      );
    }
    return { deliveries, duplicate: false, receivedAt: now };
  }

  /**
   * Tell the notifier about each delivery (after the COMMIT is on disk: `#tx` resolved), with
   * the message as queued, so a push sends it without reading the queue back.
   */
  #notify(r: Appended, p: EnqueueParams): EnqueueResult {
    const { deliveries, duplicate, receivedAt } = r;
    if (!duplicate && receivedAt !== undefined) {
      for (const d of deliveries) {
        this.notifier.notify(d.recipient, {
          seq: d.seq,
          sender: p.sender,
          messageId: p.messageId,
          channelId: p.channelId,
          payload: p.payload,
          receivedAt,
        });
      }
    }
    return { deliveries, duplicate };
  }

  async enqueue(params: EnqueueParams): Promise<EnqueueResult> {
    const r = await this.#tx(() => {
      checkEnqueue(params, this.#lim, false);
      const ref = this.#dedupeRef(params);
      return this.#duplicate(ref) ?? this.#append(params, ref);
    });
    return this.#notify(r, params);
  }

  findDuplicate(sender: string, messageId: string): Promise<EnqueueResult | undefined> {
    return this.#call(() => this.#duplicate(this.#dedupeRef({ sender, messageId })));
  }

  async fetch(recipient: string, afterSeq: number, limit?: number): Promise<QueuedMessage[]> {
    return (await this.fetchPage(recipient, afterSeq, limit === undefined ? {} : { limit }))
      .messages;
  }

  fetchPage(
    recipient: string,
    afterSeq: number,
    options: FetchPageOptions = {},
  ): Promise<QueuedPage> {
    return this.#call(() => {
      checkCount("sequence number", afterSeq);
      const n = Math.min(options.limit ?? this.#lim.maxFetchPage, this.#lim.maxFetchPage);
      checkCount("limit", n);
      const maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
      const overhead = options.rowOverheadBytes ?? 0;
      const uid = this.#uid(recipient);
      // past retention a message is gone, whether or not the purge has run yet
      const cutoff = this.#clock() - this.#lim.messageRetentionMs;
      // sizes first (length() of a BLOB does not read it), then only the page's bodies
      const sizes = this.#all(
        "SELECT d.seq, length(m.body) AS n FROM deliveries d JOIN messages m ON m.id = d.message " +
          "WHERE d.recipient = ? AND d.seq > ? AND d.created_at > ? ORDER BY d.seq LIMIT ?",
        uid,
        afterSeq,
        cutoff,
        n + 1,
      );
      const take = pageLength(sizes.map((r) => Number(r.n ?? 0)), n, maxBytes, overhead);
      if (take === 0) return { messages: [], more: false };
      const rows = this.#all(
        "SELECT d.seq, m.dedupe_ref, m.channel_id, m.body, m.created_at " +
          "FROM deliveries d JOIN messages m ON m.id = d.message " +
          "WHERE d.recipient = ? AND d.seq > ? AND d.seq <= ? AND d.created_at > ? ORDER BY d.seq",
        uid,
        afterSeq,
        sizes[take - 1]!.seq as number,
        cutoff,
      );
      const messages = rows.map((r) => {
        const ref = r.dedupe_ref as Uint8Array;
        const body = this.#sealer.open("messages.body", ref, r.body as Uint8Array);
        const [sender, messageId, payload] = splitBody(body);
        return {
          seq: r.seq as number,
          sender,
          messageId,
          channelId: r.channel_id as string | null,
          payload,
          receivedAt: r.created_at as number,
        };
      });
      return { messages, more: sizes.length > take };
    });
  }

  setBlocked(blocker: string, blocked: string, on: boolean): Promise<number> {
    return this.#tx(() => {
      const a = this.#requireUser(blocker);
      const b = this.#requireUser(blocked);
      if (!on) {
        const row = this.#get("SELECT dropped FROM blocks WHERE blocker = ? AND blocked = ?", a, b);
        this.#run("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", a, b);
        return Number(row?.dropped ?? 0);
      }
      if (this.#get("SELECT 1 FROM blocks WHERE blocker = ? AND blocked = ?", a, b)) return 0;
      const n = Number(this.#get("SELECT count(*) AS n FROM blocks WHERE blocker = ?", a)!.n);
      if (n >= this.#lim.maxBlocksPerUser) throw blocksFull(this.#lim);
      this.#run(
        "INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?)",
        a,
        b,
        this.#clock(),
      );
      return 0;
    });
  }

  async dropForBlockers(sender: string, recipients: readonly string[]): Promise<string[]> {
    // nearly every message reaches nobody who blocked its sender: a read says so without a
    // transaction of its own (and the fsync it would wait for) on each enqueue
    const found = await this.blockersOf(sender, recipients);
    if (found.length === 0) return [];
    return this.#tx(() => {
      const s = this.#uid(sender);
      return found.filter((r) => {
        const changed = this.#run(
          "UPDATE blocks SET dropped = dropped + 1 WHERE blocker = ? AND blocked = ?",
          this.#uid(r),
          s,
        );
        return changed > 0;
      });
    });
  }

  blockersOf(sender: string, recipients: readonly string[]): Promise<string[]> {
    return this.#call(() => {
      const s = this.#uid(sender);
      return recipients.filter((r) =>
        this.#get("SELECT 1 FROM blocks WHERE blocker = ? AND blocked = ?", this.#uid(r), s) !==
          undefined
      );
    });
  }

  ack(recipient: string, uptoSeq: number): Promise<number> {
    return this.#tx(() => {
      checkCount("sequence number", uptoSeq);
      const uid = this.#uid(recipient);
      const msgs = this.#all(
        "DELETE FROM deliveries WHERE recipient = ? AND seq <= ? RETURNING message",
        uid,
        uptoSeq,
      );
      const n = msgs.length;
      if (n === 0) return 0;
      this.#run("UPDATE queues SET depth = depth - ? WHERE recipient = ?", n, uid);
      // Drop payloads nobody still needs; the row stays for idempotency until retention.
      for (const m of msgs) {
        this.#run(
          "UPDATE messages SET body = NULL WHERE id = ?1 AND body IS NOT NULL " +
            "AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message = ?1)",
          m.message as number,
        );
      }
      return n;
    }, false);
  }

  queueDepth(recipient: string): Promise<number> {
    return this.#call(() =>
      Number(
        this.#get("SELECT depth FROM queues WHERE recipient = ?", this.#uid(recipient))?.depth ?? 0,
      )
    );
  }

  totalQueueDepth(): Promise<number> {
    return this.#call(() =>
      Number(this.#get("SELECT COALESCE(SUM(depth), 0) AS n FROM queues")?.n ?? 0)
    );
  }

  purgeExpired(now?: number): Promise<PurgeResult> {
    return this.#tx(() => {
      const t = now ?? this.#clock();
      const cutoff = t - this.#lim.messageRetentionMs;
      let deliveries = 0;
      for (
        const r of this.#all(
          "SELECT recipient, COUNT(*) AS n FROM deliveries WHERE created_at <= ? GROUP BY recipient",
          cutoff,
        )
      ) {
        this.#run(
          "UPDATE queues SET depth = depth - ? WHERE recipient = ?",
          r.n as number,
          r.recipient as Uint8Array,
        );
        deliveries += Number(r.n);
      }
      this.#run("DELETE FROM deliveries WHERE created_at <= ?", cutoff);
      return {
        deliveries,
        messages: this.#run(
          "DELETE FROM messages WHERE created_at <= ? " +
            "AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message = messages.id)",
          cutoff,
        ),
        sessions: this.#run("DELETE FROM sessions WHERE expires_at <= ?", t),
        pendingLogins: this.#run("DELETE FROM pending_logins WHERE expires_at <= ?", t),
        keyPackages: this.#run("DELETE FROM key_packages WHERE not_after <= ?", t),
      };
    });
  }

  /** Redacted: never shows keys or the file's contents. */
  [Symbol.for("Deno.customInspect")](): string {
    return `SqliteServerStore { sealed: ${this.#sealer.sealed}, closed: ${this.#closed} }`;
  }
}

/** The one line for a file that is not ours: the operator points db_path elsewhere. */
function foreignFile(path: string): UsageError {
  return new UsageError(
    `Cannot open database ${path}: it is not a qpq server database (check db_path and data_dir)`,
  );
}

/** The one line for a damaged database: never the words of a foreign file (not deleted). */
function damaged(path: string, cause?: unknown): UsageError {
  return new UsageError(
    `Database ${path} is damaged: restore it from a backup, see docs/operations.md`,
    { cause },
  );
}

/**
 * Refuse at once, naming the path, when the database or its directory (where SQLite keeps
 * the WAL and shared-memory files) cannot be written: SQLite would otherwise open the file
 * read-only and fail later with words that suggest a foreign or damaged file. Other
 * failures (a missing parent directory) are left to SQLite's open, which reports them.
 */
function checkWritable(path: string): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  try {
    Deno.openSync(path, { create: true, write: true, mode: 0o600 }).close();
  } catch (e) {
    const why = notWritableReason(e);
    if (why === "read-only file system") {
      throw new UsageError(
        `Cannot write to the data dir ${dir} (${why}): the database ${path} needs it writable`,
        { cause: e },
      );
    }
    if (why !== undefined) {
      throw new UsageError(`Cannot write to the database ${path} (${why})`, { cause: e });
    }
    return;
  }
  try {
    Deno.removeSync(Deno.makeTempFileSync({ dir, prefix: ".qpq-write-test-" }));
  } catch (e) {
    const why = notWritableReason(e) ?? String((e as Error)?.message ?? e);
    throw new UsageError(
      `Cannot write to the data dir ${dir} (${why}): the database ${path} needs it writable`,
      { cause: e },
    );
  }
}

/** The first 16 bytes of every SQLite 3 database file. */
const SQLITE_HEADER = utf8("SQLite format 3\0");

/** True for an empty file (a new database) or one that starts like an SQLite database. */
function hasSqliteHeader(path: string): boolean {
  const f = Deno.openSync(path, { read: true });
  try {
    const head = new Uint8Array(16);
    let n = 0;
    while (n < 16) {
      const r = f.readSync(head.subarray(n));
      if (r === null) break;
      n += r;
    }
    return n === 0 || (n === 16 && constantTimeEqual(head, SQLITE_HEADER));
  } finally {
    f.close();
  }
}

/** True when the file has any table (an SQLite file of another program, if not ours). */
function hasTables(db: DatabaseSync): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").get() !==
    undefined;
}

/**
 * `PRAGMA quick_check` at start-up: a damaged page anywhere is found now, with words an
 * operator acts on, not as "Database operation failed" at some later request. Measured
 * at 0.1 s warm and 1.5 s cold for a 94 MB database of 100,000 sealed messages.
 */
function quickCheck(db: DatabaseSync, path: string): void {
  const rows = db.prepare("PRAGMA quick_check").all();
  if (rows.length !== 1 || String(rows[0]?.quick_check) !== "ok") throw damaged(path);
}

/**
 * Make the database file (and a journal left from before) readable by its owner only,
 * whatever the umask: created 0600 before SQLite opens it, an existing one narrowed to 0600.
 * SQLite gives the WAL and shared-memory files it creates later the database file's mode.
 * Failures are left to SQLite's open, which reports them.
 */
function ownerOnly(path: string): void {
  try {
    Deno.openSync(path, { create: true, write: true, mode: 0o600 }).close();
  } catch {
    return;
  }
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      Deno.chmodSync(f, 0o600);
    } catch { /* absent, or not ours to change */ }
  }
}

/**
 * Seal every `secrets` row of a database without db_key with the key file's sealer and
 * record it (meta), in one transaction. The plain bytes are overwritten, not only unlinked
 * (`secure_delete`), and a file database is checkpointed, so that neither the file nor its
 * WAL keeps them.
 */
function sealSecrets(db: DatabaseSync, secrets: Sealer, file: boolean): void {
  db.exec("PRAGMA secure_delete = ON");
  db.exec("BEGIN IMMEDIATE");
  try {
    const rows = db.prepare("SELECT name, value FROM secrets").all();
    const upd = db.prepare("UPDATE secrets SET value = ? WHERE name = ?");
    for (const r of rows) {
      const name = String(r.name);
      const plain = r.value as Uint8Array;
      upd.run(secrets.seal("secrets.value", utf8(name), plain), name);
      plain.fill(0);
    }
    const ins = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    ins.run(SECRETS_SEAL_META, utf8(SECRETS_SEAL_MODE));
    ins.run(SECRETS_CHECK_META, secrets.checkValue());
    db.exec("COMMIT");
  } catch (e) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw e;
  } finally {
    db.exec("PRAGMA secure_delete = OFF");
  }
  if (file) db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

/** Throws the one-line StorageError when `sealer` does not match how the database was sealed. */
export function verifySealing(sealer: Sealer, mode: string, check: Uint8Array | undefined): void {
  const stored = mode as SealMode;
  if (stored === "plain") {
    if (sealer.sealed) {
      throw new StorageError("Cannot open database: it was created without db_key");
    }
    return;
  }
  if (stored !== "sealed-v1") {
    throw new StorageError("Cannot open database: unknown sealing mode");
  }
  if (!sealer.sealed) {
    throw new StorageError("Cannot open database: it is sealed and no db_key was given");
  }
  sealer.verifyCheck(check ?? new Uint8Array(0));
}

/** Inverse of the body layout written by `#append`: sender, message id, payload. */
function splitBody(body: Uint8Array): [string, string, Uint8Array] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let off = 0;
  const text = (): string => {
    if (off + 4 > body.length) throw new StorageError("Cannot read database: malformed message");
    const n = view.getUint32(off);
    off += 4;
    if (off + n > body.length) throw new StorageError("Cannot read database: malformed message");
    const s = fromUtf8(body.subarray(off, off + n));
    off += n;
    return s;
  };
  const sender = text();
  const messageId = text();
  return [sender, messageId, body.slice(off)];
}

/** The name of an error for a one-line message (no paths or contents of others). */
function errorName(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Error && /full|SQLITE_FULL/i.test(e.message)) return "the disk is full";
  return e instanceof Error ? e.message.split("\n")[0]!.slice(0, 200) : "failed";
}
