/**
 * `checkDatabase`: what `qpq server --check` finds about a server database without changing
 * it — SQLite's integrity and foreign-key checks, whether it is a qpq database this build
 * can open with the given db_key, and a migration dry run on a private copy.
 *
 * ```
 * file? ─► SQLite header? ─► connection (read-only through a running server's WAL, else
 *   to a private copy, so that no -wal/-shm appear beside the file)
 *   ─► integrity_check, foreign_key_check ─► meta + schema_version ─► newer than us?
 *   ─► db_key opens it? ─► migrations to run? ─► copy (SQLite's online backup, one snapshot)
 *   ─► open the copy as the server would (migrates it) ─► report, delete the copy
 * ```
 *
 * @module
 */
import { backup, DatabaseSync } from "node:sqlite";
import { fromUtf8 } from "../../bytes.ts";
import { QpqError } from "../../errors.ts";
import { Sealer } from "../sealing.ts";
import { type MigrationPlan, planMigrations, readSchemaVersion } from "./migrations.ts";
import { SqliteServerStore, verifySealing } from "./sqlite_server_store.ts";
import { SECRETS_CHECK_META, SECRETS_SEAL_META, secretsSealerFor } from "./_secrets_key.ts";

/** Options of {@link checkDatabase}. */
export interface CheckDatabaseOptions {
  /** The server's db_key (absent or empty: not sealed). */
  dbKey?: string | undefined;
  /** Without db_key: the secrets key file the server would open it with (never created). */
  secretsKeyFile?: string | undefined;
}

/** What {@link checkDatabase} found. */
export interface DatabaseCheck {
  /** True when the server can open the database as it is (migrating it if needed). */
  ok: boolean;
  /** One line per problem (empty when ok). */
  problems: string[];
  /** One line per check that passed, in order. */
  findings: string[];
  /** The database's schema version (0 when unknown). */
  schemaVersion: number;
  /** Accounts in the database. */
  accounts: number;
  /** The migrations a start would run (undefined when it could not be told). */
  plan: MigrationPlan | undefined;
  /** What the dry run's migrations say an operator must act on. */
  notices: string[];
}

const SQLITE_HEADER = "SQLite format 3\0";

/** The SQLite error text of `e`, one line. */
function reason(e: unknown): string {
  const line = (m: string) => m.split("\n")[0] ?? "";
  if (e instanceof QpqError && e.cause instanceof Error) {
    return `${e.message} (${line(e.cause.message)})`;
  }
  return line(e instanceof Error ? e.message : String(e));
}

function damaged(path: string, what: string): string {
  return `${path} is damaged (${what}): restore it from a backup, see docs/operations.md`;
}

/**
 * Check the server database at `path` without changing it (safe while a server is running
 * on it): integrity, foreign keys, that it is a qpq database no newer than this build, that
 * `dbKey` opens it, and which migrations a start would run — run for real on a private copy
 * in a temp directory, which is deleted afterwards.
 */
export async function checkDatabase(
  path: string,
  options: CheckDatabaseOptions = {},
): Promise<DatabaseCheck> {
  const out: DatabaseCheck = {
    ok: false,
    problems: [],
    findings: [],
    schemaVersion: 0,
    accounts: 0,
    plan: undefined,
    notices: [],
  };
  const fail = (line: string) => {
    out.problems.push(line);
    return out;
  };
  let header: Uint8Array;
  try {
    const stat = await Deno.stat(path);
    if (!stat.isFile) return fail(`${path} is not a file`);
    const file = await Deno.open(path, { read: true });
    try {
      header = new Uint8Array(16);
      const n = await file.read(header);
      header = header.subarray(0, n ?? 0);
    } finally {
      file.close();
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fail(`${path} does not exist`);
    return fail(`${path} cannot be read: ${reason(e)}`);
  }
  if (header.length === 0) return fail(`${path} is empty: not a qpq server database`);
  if (fromUtf8(header) !== SQLITE_HEADER) {
    return fail(`${path} is not an SQLite database: not a qpq server database`);
  }

  let tempDir: string | undefined;
  const scratch = async () => tempDir ??= await Deno.makeTempDir({ prefix: "qpq-check-" });
  let db: DatabaseSync;
  try {
    db = await openForCheck(path, scratch);
  } catch (e) {
    if (tempDir !== undefined) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    return fail(`${path} cannot be opened: ${reason(e)}`);
  }
  const sealer = options.dbKey ? Sealer.fromDbKey(options.dbKey) : Sealer.plain();
  try {
    let integrity: string[];
    try {
      integrity = db.prepare("PRAGMA integrity_check").all().map((r) => String(r.integrity_check));
    } catch (e) {
      return fail(damaged(path, reason(e)));
    }
    if (integrity.length !== 1 || integrity[0] !== "ok") {
      const more = integrity.length > 1 ? ` and ${integrity.length - 1} more` : "";
      return fail(damaged(path, `${integrity[0]}${more}`));
    }
    out.findings.push("integrity: ok");
    const broken = db.prepare("PRAGMA foreign_key_check").all();
    if (broken.length > 0) {
      const r = broken[0]!;
      return fail(damaged(
        path,
        `${broken.length} broken reference(s), first: ${r.table} row ${r.rowid} → ${r.parent}`,
      ));
    }
    out.findings.push("foreign keys: ok");

    let meta: Map<string, Uint8Array>;
    try {
      meta = new Map(
        db.prepare("SELECT key, value FROM meta").all().map((r) => [
          String(r.key),
          r.value as Uint8Array,
        ]),
      );
      out.schemaVersion = readSchemaVersion(db);
      out.accounts = Number(db.prepare("SELECT COUNT(*) AS n FROM users").get()!.n);
    } catch {
      return fail(`${path} is an SQLite database but not a qpq server database`);
    }
    const mode = meta.get("seal_mode");
    if (mode === undefined) return fail(`${path} has no sealing record: not a qpq server database`);
    try {
      out.plan = planMigrations(db);
    } catch (e) {
      return fail(`${path}: ${reason(e)}: run the newer qpq, or restore a backup made before`);
    }
    try {
      verifySealing(sealer, fromUtf8(mode), meta.get("seal_check"));
    } catch (e) {
      return fail(`${path}: ${reason(e)}`);
    }
    out.findings.push(sealer.sealed ? "db_key: opens it" : "db_key: none, not sealed");
    const keyFile = options.secretsKeyFile;
    if (!sealer.sealed && keyFile !== undefined) {
      if (meta.get(SECRETS_SEAL_META) === undefined) {
        out.findings.push(
          `secrets key file: not used yet, the next start seals the OPAQUE secret with ${keyFile}`,
        );
      } else {
        try {
          secretsSealerFor(keyFile, meta.get(SECRETS_CHECK_META)).destroy();
        } catch (e) {
          return fail(`${path}: ${reason(e)}`);
        }
        out.findings.push(`secrets key file: ${keyFile} opens the OPAQUE secret`);
      }
    }
    out.findings.push(`schema: ${out.schemaVersion}, ${out.accounts} account(s)`);
    if (out.plan.steps.length === 0) {
      out.ok = true;
      return out;
    }
    const dryRun = await migrateCopy(db, `${await scratch()}/qpq.db`, options.dbKey);
    if (dryRun.error !== undefined) {
      return fail(`${path}: the migration dry run failed: ${dryRun.error}`);
    }
    out.notices = dryRun.notices;
    out.findings.push("migration dry run (on a copy): ok");
    out.ok = true;
    return out;
  } finally {
    db.close();
    sealer.destroy();
    if (tempDir !== undefined) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  }
}

/**
 * A connection that creates no file beside the database. With its `-wal` and `-shm` there
 * (a server has it open, or stopped without a checkpoint): a read-only connection, which
 * uses them. Otherwise the database file (and a `-wal`, if any) is copied into a private
 * temp directory and read there, since even a read-only connection would create a `-shm`
 * (and with WAL a `-wal`) of its own beside it, owned by whoever ran the check (root, say),
 * which the server's user then could not open. (SQLite's `immutable` URI would avoid the
 * copy, but Deno's node:sqlite takes no URI under a permission allow-list; nor does it
 * allow `VACUUM INTO`, so the copy for the dry run is made with the online backup API.)
 */
async function openForCheck(
  path: string,
  scratch: () => Promise<string>,
): Promise<DatabaseSync> {
  const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
  const wal = await exists(`${path}-wal`);
  if (wal && await exists(`${path}-shm`)) {
    return new DatabaseSync(path, { readOnly: true, timeout: 5000 });
  }
  const copy = `${await scratch()}/snapshot.db`;
  await Deno.copyFile(path, copy);
  if (wal) await Deno.copyFile(`${path}-wal`, `${copy}-wal`);
  return new DatabaseSync(copy, { timeout: 5000 });
}

/**
 * Copy the database behind `db` (one consistent snapshot) to `copy` (in the private temp
 * directory, deleted after) and open the copy as the server does, which migrates it.
 */
async function migrateCopy(
  db: DatabaseSync,
  copy: string,
  dbKey: string | undefined,
): Promise<{ notices: string[]; error?: string }> {
  try {
    await backup(db, copy);
    const store = await SqliteServerStore.open(
      copy,
      dbKey ? { dbKey, fsync: false } : {
        fsync: false,
      },
    );
    const notices = [...store.migrationNotices];
    await store.close();
    return { notices };
  } catch (e) {
    return { notices: [], error: reason(e) };
  }
}
