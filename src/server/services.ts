/**
 * The store-backed services of a full server (Authentication Service, KeyPackage
 * directory, Delivery Service, channels), built from the configuration: opens the store
 * (SQLite, sealed under db_key when set), loads or creates the OPAQUE server setup,
 * starts the retention purge and the optional HTTP health endpoint.
 *
 * @module
 */
import { createServerSetup, OpaqueServerSetup } from "../auth/mod.ts";
import {
  MEMORY_PATH,
  type ServerStore,
  SqliteServerStore,
  type StorageEvent,
} from "../store/server/mod.ts";
import { describeNetError, parseHostPort } from "../transport/quic.ts";
import { StorageError, TransportError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Service } from "./server.ts";
import { healthReport } from "./ping.ts";
import type { ServerContext } from "./context.ts";
import { accountHandlers } from "./accounts.ts";
import { keyPackageHandlers } from "./key_packages.ts";
import { deliveryHandlers } from "./delivery.ts";
import { consentHandlers } from "./consent.ts";
import { lockDatabase, secretsKeyPath } from "./backup.ts";

import { PURGE_INTERVAL_MS } from "../limits.ts";

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
    ...ctx.storeSeams,
    limits: {
      maxMessageBytes: c.maxMessageBytes + 4096, // room for the delivery record header
      maxQueueMessages: c.maxQueueMessages,
      maxSenderMessages: c.maxSenderMessages,
      maxSenderBytes: c.maxSenderBytes,
      messageRetentionMs: c.retentionSeconds * 1000,
      maxGroupsPerUser: c.maxGroupsPerUser,
    },
    onStorageEvent: (e: StorageEvent) =>
      logStorageEvent(ctx.log, e, c.storeBackend === "memory" ? MEMORY_PATH : c.dbPath),
  };
  if (c.storeBackend === "memory") {
    return { store: await SqliteServerStore.open(MEMORY_PATH, options), release: () => {} };
  }
  await Deno.mkdir(c.dataDir, { recursive: true, mode: 0o700 });
  // without db_key only the OPAQUE server setup is sealed at rest, with a key file kept in
  // the data dir (never in a backup unless asked): say so once
  const secretsKeyFile = c.dbKey ? undefined : secretsKeyPath(c);
  // made 0700 by us; one made by someone else may be open to other users: say so (the
  // files in it are 0600 whatever the umask, but their names and sizes show)
  const mode = (await Deno.stat(c.dataDir)).mode;
  if (mode !== null && (mode & 0o077) !== 0) {
    ctx.log.warn("data dir is open to other users: chmod 700 it", {
      dir: c.dataDir,
      mode: (mode & 0o777).toString(8),
    });
  }
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
    store = await SqliteServerStore.open(c.dbPath, {
      ...options,
      ...(secretsKeyFile !== undefined ? { secretsKeyFile } : {}),
    });
  } catch (e) {
    lock.release();
    throw e;
  }
  if (secretsKeyFile !== undefined) {
    ctx.log.warn(
      "no db_key: the database is not sealed at rest (set db_key or QPQ_DB_KEY); only the OPAQUE server secret is, with the key file",
      { keyFile: secretsKeyFile },
    );
  }

  // e.g. accounts renamed by migration 3 (case-insensitive usernames): the operator must
  // tell their owners the new name (docs/operations.md)
  for (const notice of store.migrationNotices) ctx.log.warn("database migration", { notice });
  return { store, release: () => lock.release() };
}

/** `setInterval` that does not keep the process alive; returns what stops it. */
function everyUnref(fn: () => void, ms: number): () => void {
  const timer = setInterval(fn, ms);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/** Build the services for a configured server. */
export async function createServices(ctx: ServerContext): Promise<Service[]> {
  const { store, release } = await openStore(ctx);
  let stopPurge = () => {};
  try {
    const fresh = (await createServerSetup()).toBytes();
    const setupBytes = await store.getOrCreateSecret("opaque-server-setup", () => fresh);
    fresh.fill(0);
    const setup = await OpaqueServerSetup.fromBytes(setupBytes);
    setupBytes.fill(0);
    stopPurge = (ctx.every ?? everyUnref)(() => {
      store.purgeExpired().catch((e) => {
        // a storage failure is logged once by the store's health, not once a minute here
        if (!(e instanceof StorageError)) ctx.log.warn("purge failed", { error: String(e) });
      });
    }, PURGE_INTERVAL_MS);
    const http = ctx.config.healthListen
      ? startHealthHttp(ctx, ctx.config.healthListen)
      : undefined;
    return [{
      handlers: {
        ...accountHandlers(ctx, store, setup),
        ...keyPackageHandlers(ctx, store),
        ...deliveryHandlers(ctx, store),
        ...consentHandlers(store),
      },
      queueDepth: () => store.totalQueueDepth(),
      async condition() {
        const h = await store.checkStorage();
        return h.status === "ok"
          ? { status: "ok", reason: "" }
          : { status: "degraded", reason: h.reason ?? "storage" };
      },
      ...(http?.addr.transport === "tcp"
        ? { healthAddr: { hostname: http.addr.hostname, port: http.addr.port } }
        : {}),
      async close() {
        stopPurge();
        await http?.shutdown();
        try {
          await store.close();
        } finally {
          release();
        }
      },
    }];
  } catch (e) {
    stopPurge();
    await store.close();
    release();
    throw e;
  }
}

/**
 * Log a change of the store's health: the first failure of a kind at error with its cause,
 * repeats not at all (the store counts them), the recovery once with the count.
 */
export function logStorageEvent(log: Logger, e: StorageEvent, dbPath: string): void {
  if (e.kind === "recovered") {
    log.warn("storage recovered", { failures: e.failures });
  } else if (e.fault === "damaged") {
    log.error(`Database ${dbPath} is damaged: restore it from a backup, see docs/operations.md`, {
      reason: e.reason,
      error: e.detail,
    });
  } else {
    log.error("storage failure", { reason: e.reason, error: e.detail, db: dbPath });
  }
}

/**
 * Plain-HTTP `GET /health` for load balancers: the health report as JSON, no secrets;
 * 503 while degraded (the store cannot write) or when the store cannot even be read.
 */
function startHealthHttp(ctx: ServerContext, listen: string): Deno.HttpServer {
  const { hostname, port } = parseHostPort(listen, "health_listen address");
  try {
    return Deno.serve({ hostname, port, onListen: () => {} }, async (req) => {
      if (new URL(req.url).pathname !== "/health") {
        return new Response("not found\n", { status: 404 });
      }
      try {
        const { kind: _, reason, ...body } = await healthReport(ctx);
        if (body.status === "ok") return Response.json(body);
        return Response.json({ ...body, reason }, { status: 503 });
      } catch {
        return Response.json({ status: "degraded", reason: "storage: cannot read the database" }, {
          status: 503,
        });
      }
    });
  } catch (e) {
    throw new TransportError(`Cannot listen on ${listen} (health): ${describeNetError(e)}`, {
      cause: e,
    });
  }
}
