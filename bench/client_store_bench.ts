/**
 * Client store costs, each group with its baseline:
 * - unlock: hash-wasm Argon2id at the OWASP minimum (m = 19 MiB, t = 2, p = 1) called
 *   directly (baseline) beside `ClientStore.open` of an existing state with the default
 *   parameters, and the first run (`create`: Argon2id + new database + state file);
 * - one message: a raw node:sqlite INSERT in its own WAL + synchronous=FULL transaction
 *   (baseline) beside `addMessage` (HMAC lookups, XChaCha20-Poly1305 seal, conversation
 *   check, one transaction);
 * - 100 messages in one transaction: the same without the per-commit fsync, so the
 *   sealing overhead shows;
 * - history of 50: a raw SELECT of the newest 50 rows (baseline) beside `history(c, 50)`;
 * - queued before, N = 100 requests queued in 10 conversations: `listOutbox()` (every
 *   entry unsealed and parsed: what `Outbox.queuedBefore` and `pendingCount` cost before
 *   the outbox had typed columns, client schema 6) as the baseline beside
 *   `Outbox.queuedBefore` of the newest entry and of a conversation, and `pendingCount`
 *   (SQL on the `conv_h` column and the queue's `seq`: nothing unsealed);
 * - each group also shows `MemoryLocalState` (the same store on SQLite `:memory:`, unsealed,
 *   which the simulation runs thousands of): what the encryption and the disk cost.
 *
 * Run with `deno bench --allow-read --allow-write bench/client_store_bench.ts`.
 */

import { DatabaseSync } from "node:sqlite";
import { argon2id } from "hash-wasm";
import { randomBytes } from "../src/bytes.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../src/crypto/mod.ts";
import { ClientContext } from "../src/client/_context.ts";
import { Outbox } from "../src/client/outbox.ts";
import { Session } from "../src/client/session.ts";
import {
  ClientStore,
  type ClientStoreOpenOptions,
  type LocalState,
  MemoryLocalState,
} from "../src/store/mod.ts";

const dir = Deno.makeTempDirSync({ prefix: "qpq-client-store-bench-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* best effort */ }
});

const PASSWORD = "correct horse battery staple";
const kp = IdentityKeyPair.generate();
const createOptions: ClientStoreOpenOptions = {
  create: true,
  initialMeta: {
    username: "alice",
    server: "localhost:4433",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  },
};
const BODY = "x".repeat(100);

// ---- unlock

const salt = randomBytes(16);
const unlockPath = `${dir}/unlock.bin`;
await (await ClientStore.open(unlockPath, PASSWORD, createOptions)).close();
let created = 0;

Deno.bench({
  name: "hash-wasm argon2id m=19MiB t=2 p=1",
  group: "unlock",
  baseline: true,
  n: 10,
  warmup: 1,
  fn: async () => {
    await argon2id({
      password: PASSWORD,
      salt,
      memorySize: DEFAULT_ARGON2ID_PARAMS.memoryKiB,
      iterations: DEFAULT_ARGON2ID_PARAMS.iterations,
      parallelism: DEFAULT_ARGON2ID_PARAMS.parallelism,
      hashLength: 32,
      outputType: "binary",
    });
  },
});
Deno.bench({
  name: "ClientStore.open (existing state, default params)",
  group: "unlock",
  n: 10,
  warmup: 1,
  fn: async () => {
    await (await ClientStore.open(unlockPath, PASSWORD)).close();
  },
});
Deno.bench({
  name: "ClientStore.open create (first run, default params)",
  group: "unlock",
  n: 10,
  warmup: 1,
  fn: async () => {
    await (await ClientStore.open(`${dir}/new-${created++}.bin`, PASSWORD, createOptions)).close();
  },
});

// ---- messages

function rawDb(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec(
    "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, conv TEXT, " +
      "sender TEXT, body TEXT, sent_at INTEGER, received_at INTEGER, direction TEXT)",
  );
  db.exec("CREATE INDEX by_conv ON messages (conv, seq)");
  return db;
}

const raw = rawDb(`${dir}/raw.db`);
const rawInsert = raw.prepare(
  "INSERT INTO messages (id, conv, sender, body, sent_at, received_at, direction) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
);
const rawHistory = raw.prepare(
  "SELECT * FROM (SELECT * FROM messages WHERE conv = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
);
const store = await ClientStore.open(`${dir}/store.bin`, PASSWORD, {
  ...createOptions,
  kdf: { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 },
});
const memory = new MemoryLocalState(createOptions.initialMeta!);
for (const s of [store, memory]) {
  s.upsertConversation({ id: "c1", kind: "dm", name: "bob", peer: "bob", createdAt: 0 });
}
let n = 0;

function rawAdd(): void {
  const id = `m${n++}`;
  rawInsert.run(id, "c1", "bob", BODY, Date.now(), Date.now(), "in");
}

function storeAdd(s: LocalState = store): void {
  s.addMessage({
    conversationId: "c1",
    messageId: `m${n++}`,
    sender: "bob",
    body: BODY,
    sentAt: Date.now(),
    receivedAt: Date.now(),
    direction: "in",
  });
}

Deno.bench({
  name: "raw node:sqlite INSERT (own transaction)",
  group: "one message",
  baseline: true,
  fn: rawAdd,
});
Deno.bench({ name: "ClientStore.addMessage", group: "one message", fn: () => storeAdd() });
Deno.bench({
  name: "MemoryLocalState.addMessage",
  group: "one message",
  fn: () => storeAdd(memory),
});

Deno.bench({
  name: "raw node:sqlite 100 INSERTs in one transaction",
  group: "100 messages, one transaction",
  baseline: true,
  fn: () => {
    raw.exec("BEGIN IMMEDIATE");
    for (let i = 0; i < 100; i++) rawAdd();
    raw.exec("COMMIT");
  },
});
Deno.bench({
  name: "ClientStore.transaction of 100 addMessage",
  group: "100 messages, one transaction",
  fn: () => {
    store.transaction(() => {
      for (let i = 0; i < 100; i++) storeAdd();
    });
  },
});
Deno.bench({
  name: "MemoryLocalState.transaction of 100 addMessage",
  group: "100 messages, one transaction",
  fn: () => {
    memory.transaction(() => {
      for (let i = 0; i < 100; i++) storeAdd(memory);
    });
  },
});

Deno.bench({
  name: "raw node:sqlite SELECT newest 50",
  group: "history 50",
  baseline: true,
  fn: () => {
    if (rawHistory.all("c1", 50).length !== 50) throw new Error("short history");
  },
});
Deno.bench({
  name: "ClientStore.history(c, 50)",
  group: "history 50",
  fn: () => {
    if (store.history("c1", 50).length !== 50) throw new Error("short history");
  },
});
Deno.bench({
  name: "MemoryLocalState.history(c, 50)",
  group: "history 50",
  fn: () => {
    if (memory.history("c1", 50).length !== 50) throw new Error("short history");
  },
});

// ---- queued before

const QUEUED = 100;
const QUEUED_CONVERSATIONS = 10;
const queuedStore = await ClientStore.open(`${dir}/queued.bin`, PASSWORD, {
  ...createOptions,
  kdf: { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 },
});

/** An outbox over `s` with `QUEUED` requests (of 200 bytes) queued round-robin. */
function queuedOutbox(s: LocalState): Outbox {
  s.transaction(() => {
    for (let i = 0; i < QUEUED; i++) {
      s.addOutbox({
        messageId: `q${i}`,
        conversationId: `conv-${i % QUEUED_CONVERSATIONS}`,
        request: randomBytes(200),
        createdAt: i,
        attempts: 0,
        content: randomBytes(100),
      });
    }
  });
  const ctx = new ClientContext(s, kp, () => {}, Date.now);
  const session = new Session(ctx, {
    password: PASSWORD,
    onPush: () => {},
    onReconnected: () => Promise.resolve(),
    cursor: () => 0,
  });
  return new Outbox(ctx, session);
}
const queuedOnDisk = queuedOutbox(queuedStore);
const queuedInMemory = queuedOutbox(new MemoryLocalState(createOptions.initialMeta!));
const newest = `q${QUEUED - 1}`;

Deno.bench({
  name: `ClientStore.listOutbox() of ${QUEUED} (what queuedBefore read before schema 6)`,
  group: "queued before",
  baseline: true,
  fn: () => {
    if (queuedStore.listOutbox().length !== QUEUED) throw new Error("lost an entry");
  },
});
Deno.bench({
  name: `Outbox.queuedBefore(newest of ${QUEUED})`,
  group: "queued before",
  fn: () => {
    if (!queuedOnDisk.queuedBefore(newest)) throw new Error("nothing before the newest");
  },
});
Deno.bench({
  name: `Outbox.queuedBefore(undefined, conversation) of ${QUEUED}`,
  group: "queued before",
  fn: () => {
    if (!queuedOnDisk.queuedBefore(undefined, "conv-3")) throw new Error("none queued");
  },
});
Deno.bench({
  name: `Outbox.pendingCount() of ${QUEUED}`,
  group: "queued before",
  fn: () => {
    if (queuedOnDisk.pendingCount() !== QUEUED) throw new Error("lost an entry");
  },
});
Deno.bench({
  name: `MemoryLocalState: Outbox.queuedBefore(newest of ${QUEUED})`,
  group: "queued before",
  fn: () => {
    if (!queuedInMemory.queuedBefore(newest)) throw new Error("nothing before the newest");
  },
});
