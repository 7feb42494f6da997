/**
 * Backups and restores of the server database (`qpq server backup`, `qpq server restore`).
 *
 * ```
 * backup  ─► SQLite online backup into FILE (0600, new file only, one step = one read
 *            transaction while the server serves) ─► integrity check, qpq database, schema, opens with db_key
 *
 * restore ─► take <db_path>.lock (a running server holds it: refused)
 *         ─► check FILE (integrity, qpq database, schema not newer, opens with db_key;
 *            without db_key: its secrets key file, FILE.key or the data dir's, opens it)
 *         ─► read the accounts of the database it replaces (read-only)
 *         ─► copy to <db_path>.restoring (0600) ─► open (migrations) ─► mark restored:
 *            queues moved past the backup, a notice at the head of every queue; names of
 *            the replaced database's accounts the backup lacks reserved for their identity keys
 *         ─► keep the database it replaces (and its -wal/-shm) as <db_path>.replaced-<time>
 *         ─► rename the copy into place ─► release the lock
 * ```
 *
 * @module
 */
import {
  type DatabaseFileInfo,
  FileLock,
  type ReservedName,
  type RestoreMark,
  SECRETS_KEY_FILE,
  SqliteServerStore,
} from "../store/server/mod.ts";
import { QpqError, StorageError, UsageError } from "../errors.ts";
import type { ServerConfig } from "./config.ts";
import { restoreNoticeRecord } from "./_delivery_record.ts";

/**
 * The secrets key file of a server without db_key: `server-secrets.key` in the data dir. It
 * seals the OPAQUE server setup in the database (see `src/store/server/_secrets_key.ts`).
 */
export function secretsKeyPath(config: { dataDir: string }): string {
  const d = config.dataDir;
  return d.endsWith("/") ? d + SECRETS_KEY_FILE : `${d}/${SECRETS_KEY_FILE}`;
}

/** What {@link backupDatabase} wrote. */
export interface BackupResult {
  /** The backup file. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** When the snapshot was taken (ms). */
  takenAt: number;
  /** Its schema version and sealing. */
  info: DatabaseFileInfo;
  /**
   * The secrets key file a restore of this backup needs (a server without db_key), kept
   * out of the backup; undefined when it needs none (db_key, or an older database).
   */
  secretsKeyFile: string | undefined;
  /** Where `withKey` copied the key file (`<out>.key`). */
  keyCopy: string | undefined;
}

/** What {@link restoreDatabase} did. */
export interface RestoreResult {
  /** The database now in place. */
  dbPath: string;
  /** Where the database it replaced was kept, if there was one. */
  keptAs: string | undefined;
  /** The backup's schema version and sealing (before migrations). */
  info: DatabaseFileInfo;
  /** The restore mark written into the database. */
  mark: RestoreMark;
  /** The secrets key file the restored database opens with (no db_key). */
  secretsKeyFile: string | undefined;
  /** Where the key file it replaced was kept (a `<backup>.key` installed over another one). */
  keyKeptAs: string | undefined;
  /**
   * Names of accounts the replaced database had and the backup lacks, now reserved for
   * their identity keys; undefined when there was no database to replace or it could not
   * be read ({@link reserveSkipped} says why).
   */
  reserved: number | undefined;
  /** Why no names were reserved from the replaced database (it could not be read). */
  reserveSkipped?: string;
}

/** Options of {@link backupDatabase}. */
export interface BackupOptions {
  /** Called before a copy that may take a while (a large database). */
  onProgress?: (text: string) => void;
  /** Clock (ms), for tests. */
  now?: () => number;
  /**
   * Also copy the secrets key file (no db_key) to `<out>.key` (0600): a backup that can be
   * restored on its own, and that gives the OPAQUE secret to whoever holds both files.
   */
  withKey?: boolean;
}

/** A database this large prints a line before the copy starts (bytes). */
const LONG_COPY_BYTES = 64 * 1024 * 1024;

function fileDatabase(config: ServerConfig, what: string): void {
  if (config.storeBackend === "memory") {
    throw new UsageError(`Cannot ${what}: store_backend is "memory" (nothing is kept)`);
  }
}

function sizeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}

/**
 * Write a consistent copy of the configured database to `out` while the server runs.
 * Sealed values stay sealed (no key needed to copy); with a db_key configured the copy
 * must open with it. A copy that fails its checks is removed.
 *
 * @throws {UsageError} `out` exists, or the memory backend
 * @throws {StorageError} the database cannot be read, the copy not written or checked
 */
export async function backupDatabase(
  config: ServerConfig,
  out: string,
  options: BackupOptions = {},
): Promise<BackupResult> {
  fileDatabase(config, "back up");
  const keyFile = config.dbKey ? undefined : secretsKeyPath(config);
  const keyCopy = options.withKey ? `${out}.key` : undefined;
  if (options.withKey && keyFile === undefined) {
    throw new UsageError(
      "--with-key copies the secrets key file of a server without db_key; with db_key, keep the db_key apart from the backups instead",
    );
  }
  if (keyCopy !== undefined && sizeOf(keyCopy) !== undefined) {
    throw new UsageError(`${keyCopy} exists: a backup never replaces a file, choose another name`);
  }
  const size = sizeOf(config.dbPath);
  if (size === undefined) {
    throw new StorageError(`Cannot back up ${config.dbPath}: no such database`);
  }
  if (size + (sizeOf(`${config.dbPath}-wal`) ?? 0) > LONG_COPY_BYTES) {
    options.onProgress?.(
      `copying ${config.dbPath} (${
        mib(size)
      } plus its journal) to ${out}; the server keeps serving`,
    );
  }
  const { takenAt, bytes } = await SqliteServerStore.backupTo(config.dbPath, out, {
    ...(options.now ? { now: options.now } : {}),
  });
  let info: DatabaseFileInfo;
  try {
    info = SqliteServerStore.inspectFile(out, {
      ...(config.dbKey ? { dbKey: config.dbKey, verifyKey: true } : {}),
      ...(keyCopy !== undefined && keyFile !== undefined ? { secretsKeyFile: keyFile } : {}),
    });
    if (keyCopy !== undefined && info.secretsKeyFile) await copyPrivate(keyFile!, keyCopy);
  } catch (e) {
    try {
      Deno.removeSync(out);
    } catch { /* keep the first error */ }
    throw new StorageError(`The backup ${out} failed its check and was removed: ${msg(e)}`, {
      cause: e,
    });
  }
  return {
    path: out,
    bytes,
    takenAt,
    info,
    secretsKeyFile: info.secretsKeyFile ? keyFile : undefined,
    keyCopy: info.secretsKeyFile ? keyCopy : undefined,
  };
}

/**
 * Put the backup `file` in place of the configured database. Refused while a server uses
 * the database (it holds `<db_path>.lock`). The database it replaces is kept, renamed, with
 * its journal files. The restored database is marked (see
 * {@link SqliteServerStore.markRestored}) so that clients learn of the restore and no
 * sequence number handed out since the backup is used again.
 *
 * @throws {UsageError} a server is running on the database, or the memory backend
 * @throws {StorageError} the backup is damaged, foreign, newer, or needs another db_key
 */
export async function restoreDatabase(
  config: ServerConfig,
  file: string,
  options: { now?: () => number } = {},
): Promise<RestoreResult> {
  fileDatabase(config, "restore");
  const db = config.dbPath;
  let lock: FileLock;
  try {
    lock = lockDatabase(db);
  } catch (e) {
    if (e instanceof UsageError) {
      throw new UsageError(`Cannot restore: ${e.message}; stop the server first`);
    }
    throw e;
  }
  const tmp = `${db}.restoring`;
  try {
    let info: DatabaseFileInfo;
    try {
      info = SqliteServerStore.inspectFile(file, { dbKey: config.dbKey, verifyKey: true });
    } catch (e) {
      if (e instanceof QpqError) {
        throw new StorageError(`Cannot restore from ${file}: ${reason(e)}`, { cause: e });
      }
      throw e;
    }
    // without db_key: the secrets key file the backup's OPAQUE secret is sealed with, from
    // beside the backup (`--with-key`) or the one in the data dir; an older backup with the
    // secret in plain text is sealed now, with the data dir's (made if needed)
    const keyFile = config.dbKey ? undefined : secretsKeyPath(config);
    let keySource = keyFile;
    if (keyFile !== undefined && info.secretsKeyFile) {
      if (sizeOf(`${file}.key`) !== undefined) keySource = `${file}.key`;
      try {
        SqliteServerStore.inspectFile(file, { secretsKeyFile: keySource! });
      } catch (e) {
        if (!(e instanceof QpqError)) throw e;
        throw new StorageError(
          `Cannot restore from ${file}: ${reason(e)}; or put it beside the backup as ${file}.key`,
          { cause: e },
        );
      }
    }
    // the accounts of the database it replaces, read before anything changes; a database
    // that cannot be read (often why one restores) reserves nothing, and says so
    let lost: ReservedName[] | undefined;
    let reserveSkipped: string | undefined;
    if (sizeOf(db) !== undefined) {
      try {
        lost = SqliteServerStore.readAccounts(db, config.dbKey ? { dbKey: config.dbKey } : {});
      } catch (e) {
        if (!(e instanceof QpqError)) throw e;
        reserveSkipped = reason(e);
      }
    }
    // ours to remove: we hold the lock, so an earlier restore that stopped half-way left it
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) removeIfThere(f);
    await copyPrivate(file, tmp);
    const store = await SqliteServerStore.open(tmp, {
      ...(config.dbKey ? { dbKey: config.dbKey } : {}),
      ...(options.now ? { clock: options.now } : {}),
      ...(keySource !== undefined
        ? { secretsKeyFile: keySource, createSecretsKeyFile: keySource === keyFile }
        : {}),
    });
    let mark: RestoreMark;
    let reserved: number | undefined;
    try {
      mark = await store.markRestored({
        notice: (n) => restoreNoticeRecord(n.backupTakenAt ?? 0, n.queueHighWater),
      });
      // accounts of the database being replaced that the backup lacks (registered after
      // it): their names stay reserved for their identity keys (issue 21)
      if (lost !== undefined) reserved = await store.reserveNames(lost);
    } finally {
      await store.close();
    }
    // a key file from beside the backup goes into the data dir; one it replaces is kept
    let keyKeptAs: string | undefined;
    if (keyFile !== undefined && keySource !== keyFile) {
      const theirs = await Deno.readFile(keySource!);
      const ours = sizeOf(keyFile) === undefined ? undefined : await Deno.readFile(keyFile);
      if (ours === undefined || !sameBytes(ours, theirs)) {
        if (ours !== undefined) {
          keyKeptAs = `${keyFile}.replaced-${stamp((options.now ?? Date.now)())}`;
          Deno.renameSync(keyFile, keyKeptAs);
        }
        await copyPrivate(keySource!, keyFile);
      }
      theirs.fill(0);
      ours?.fill(0);
    }
    let keptAs: string | undefined;
    // the journal belongs to the database it was written for: kept beside it (even without
    // its database), never left where SQLite would apply it to the restored one
    const present = ["", "-wal", "-shm"].filter((ext) => sizeOf(db + ext) !== undefined);
    if (present.length > 0) {
      keptAs = `${db}.replaced-${stamp((options.now ?? Date.now)())}`;
      for (const ext of present) Deno.renameSync(db + ext, keptAs + ext);
    }
    Deno.renameSync(tmp, db);
    // closing the last connection checkpoints and removes the journal; should one remain,
    // it holds the restore mark and goes with the database
    if (sizeOf(`${tmp}-wal`)) Deno.renameSync(`${tmp}-wal`, `${db}-wal`);
    for (const ext of ["-wal", "-shm", "-journal"]) removeIfThere(tmp + ext);
    syncDir(db); // the renames survive a power cut, not only the file contents
    return {
      dbPath: db,
      keptAs,
      info,
      mark,
      secretsKeyFile: keyFile,
      keyKeptAs,
      reserved,
      ...(reserveSkipped === undefined ? {} : { reserveSkipped }),
    };
  } catch (e) {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) removeIfThere(f);
    throw e;
  } finally {
    lock.release();
  }
}

/**
 * Take the lock a running server holds on its database, so that `qpq server restore`
 * cannot replace it underneath (see {@link restoreDatabase}).
 */
export function lockDatabase(dbPath: string): FileLock {
  return FileLock.acquire(dbPath, dbPath, "Database");
}

async function copyPrivate(from: string, to: string): Promise<void> {
  const src = await Deno.open(from, { read: true });
  const dst = await Deno.open(to, { write: true, createNew: true, mode: 0o600 });
  try {
    await src.readable.pipeTo(dst.writable);
  } catch (e) {
    throw new StorageError(`Cannot copy ${from} to ${to}: ${msg(e)}`, { cause: e });
  }
  const f = await Deno.open(to, { read: true, write: true });
  try {
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.chmod(to, 0o600);
}

/** fsync the directory holding `path`, so that renames in it are durable. */
function syncDir(path: string): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* not there */ }
}

/** The message of a store check without its "Cannot open database: " prefix. */
function reason(e: QpqError): string {
  return e.message.replace(/^Cannot open database: /, "");
}

function msg(e: unknown): string {
  return e instanceof QpqError
    ? reason(e)
    : e instanceof Error
    ? e.message.split("\n")[0]!
    : "failed";
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** `20261128T140000Z` (UTC): sorts by time, no characters a shell must quote. */
function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}
