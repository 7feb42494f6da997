/**
 * The store-backed services of a full server (Authentication Service, KeyPackage
 * directory, Delivery Service, channels), built from the configuration: opens the store
 * (SQLite, sealed under db_key when set), loads or creates the OPAQUE server setup,
 * starts the retention purge and the optional HTTP health endpoint.
 *
 * @module
 */
import { createServerSetup, OpaqueServerSetup } from "../auth/mod.ts";
import { MEMORY_PATH, type ServerStore, SqliteServerStore } from "../store/server/mod.ts";
import { describeNetError, parseHostPort } from "../transport/quic.ts";
import { StorageError, TransportError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { WIRE_VERSION } from "../limits.ts";
import type { Service } from "./server.ts";
import type { ServerContext } from "./context.ts";
import { accountHandlers } from "./accounts.ts";
import { keyPackageHandlers } from "./key_packages.ts";
import { deliveryHandlers } from "./delivery.ts";
import { consentHandlers } from "./consent.ts";
import { lockDatabase } from "./backup.ts";

/** How often expired messages, sessions and KeyPackages are purged (ms). */
const PURGE_INTERVAL_MS = 60_000;

/**
 * Open the configured store. A file database is locked (`<db_path>.lock`) until `release`:
 * `qpq server restore` refuses to replace a database in use.
 */
export async function openStore(
  ctx: ServerContext,
): Promise<{ store: ServerStore; release: () => void }> {
  const c = ctx.config;
  const options = {
    ...(c.dbKey ? { dbKey: c.dbKey } : {}),
    fsync: c.fsync,
    limits: {
      maxMessageBytes: c.maxMessageBytes + 4096, // room for the delivery record header
      maxQueueMessages: c.maxQueueMessages,
      maxSenderMessages: c.maxSenderMessages,
      maxSenderBytes: c.maxSenderBytes,
      messageRetentionMs: c.retentionSeconds * 1000,
    },
  };
  if (c.storeBackend === "memory") {
    return { store: await SqliteServerStore.open(MEMORY_PATH, options), release: () => {} };
  }
  await Deno.mkdir(c.dataDir, { recursive: true, mode: 0o700 });
  // held while the server runs: `qpq server restore` refuses to replace a database in use.
  // A lock file that cannot be created (a read-only data dir) is left to the store's open
  // to report; a restore could not write there either.
  let lock: { release(): void } = { release() {} };
  try {
    lock = lockDatabase(c.dbPath);
  } catch (e) {
    if (!(e instanceof StorageError)) throw e;
  }
  let store: SqliteServerStore;
  try {
    store = await SqliteServerStore.open(c.dbPath, options);
  } catch (e) {
    lock.release();
    throw e;
  }

  // e.g. accounts renamed by migration 3 (case-insensitive usernames): the operator must
  // tell their owners the new name (docs/operations.md)
  for (const notice of store.migrationNotices) ctx.log.warn("database migration", { notice });
  return { store, release: () => lock.release() };
}

/** Build the services for a configured server. */
export async function createServices(ctx: ServerContext): Promise<Service[]> {
  const { store, release } = await openStore(ctx);
  try {
    const fresh = (await createServerSetup()).toBytes();
    const setupBytes = await store.getOrCreateSecret("opaque-server-setup", () => fresh);
    fresh.fill(0);
    const setup = await OpaqueServerSetup.fromBytes(setupBytes);
    setupBytes.fill(0);
    const purge = setInterval(() => {
      store.purgeExpired().catch((e) => ctx.log.warn("purge failed", { error: String(e) }));
    }, PURGE_INTERVAL_MS);
    Deno.unrefTimer(purge);
    const http = ctx.config.healthListen
      ? startHealthHttp(ctx, store, ctx.config.healthListen)
      : undefined;
    return [{
      handlers: {
        ...accountHandlers(ctx, store, setup),
        ...keyPackageHandlers(ctx, store),
        ...deliveryHandlers(ctx, store),
        ...consentHandlers(store),
      },
      queueDepth: () => store.totalQueueDepth(),
      ...(http?.addr.transport === "tcp"
        ? { healthAddr: { hostname: http.addr.hostname, port: http.addr.port } }
        : {}),
      async close() {
        clearInterval(purge);
        await http?.shutdown();
        try {
          await store.close();
        } finally {
          release();
        }
      },
    }];
  } catch (e) {
    await store.close();
    release();
    throw e;
  }
}

/** Plain-HTTP `GET /health` for load balancers: JSON, no secrets, 503 when the store fails. */
function startHealthHttp(ctx: ServerContext, store: ServerStore, listen: string): Deno.HttpServer {
  const { hostname, port } = parseHostPort(listen, "health_listen address");
  try {
    return Deno.serve({ hostname, port, onListen: () => {} }, async (req) => {
      if (new URL(req.url).pathname !== "/health") {
        return new Response("not found\n", { status: 404 });
      }
      try {
        const body = {
          status: "ok",
          version: VERSION,
          wireVersion: WIRE_VERSION,
          uptimeSeconds: Math.floor((Date.now() - ctx.startedAt) / 1000),
          connectedClients: ctx.stats.connections,
          queueDepth: await store.totalQueueDepth(),
        };
        return Response.json(body);
      } catch {
        return Response.json({ status: "store unavailable" }, { status: 503 });
      }
    });
  } catch (e) {
    throw new TransportError(`Cannot listen on ${listen} (health): ${describeNetError(e)}`, {
      cause: e,
    });
  }
}
