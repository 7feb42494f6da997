/**
 * The server's storage: the {@link ServerStore} contract, its one implementation
 * {@link SqliteServerStore} (a file in production, `":memory:"` for tests and the "memory"
 * backend), the numbered migrations, the {@link Notifier} that wakes recipients, and the
 * at-rest sealing used when a `db_key` is configured.
 *
 * ```ts
 * const store = await SqliteServerStore.open("qpq.db", { dbKey });
 * const { deliveries } = await store.enqueue({ sender, messageId, channelId, payload, recipients });
 * const page = await store.fetch("bob", 0);
 * await store.ack("bob", page.at(-1)!.seq);
 * ```
 *
 * @module
 */

export * from "./server_store.ts";
export {
  type DatabaseFileInfo,
  type DurabilityStats,
  type MarkRestoredParams,
  MEMORY_PATH,
  type ReservedName,
  type RestoreMark,
  type RestoreNoticeInfo,
  SqliteServerStore,
  type SqliteServerStoreOptions,
} from "./sqlite_server_store.ts";
export { FileLock } from "../_file_lock.ts";
export { SECRETS_KEY_FILE } from "./_secrets_key.ts";
export {
  classifyStorageError,
  notWritableReason,
  type StorageEvent,
  type StorageFault,
  type StorageHealth,
} from "./_storage_health.ts";
export {
  migrate,
  type Migration,
  type MigrationPlan,
  MIGRATIONS,
  type MigrationStep,
  planMigrations,
  readSchemaVersion,
  SCHEMA_VERSION,
} from "./migrations.ts";
export { type LookupLabel, Sealer, type SealMode } from "../sealing.ts";
export { checkDatabase, type CheckDatabaseOptions, type DatabaseCheck } from "./check.ts";
