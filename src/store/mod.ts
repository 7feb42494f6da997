/**
 * Server-side storage (in `server/`): the {@link ServerStore} contract, its SQLite
 * implementation (a file in production, `":memory:"` for tests), the {@link Notifier} that
 * wakes recipients, and the at-rest sealing used when a `db_key` is configured.
 *
 * ```ts
 * const store = await SqliteServerStore.open("qpq.db", { dbKey });
 * const { deliveries } = await store.enqueue({ sender, messageId, channelId, payload, recipients });
 * const page = await store.fetch("bob", 0);
 * await store.ack("bob", page.at(-1)!.seq);
 * ```
 *
 * (The client-side store lives beside it in `client/`: `ClientStore`, also in memory as `MemoryLocalState`.)
 *
 * @module
 */

export * from "./server/mod.ts";
export * from "./client/mod.ts";
