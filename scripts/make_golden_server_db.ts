/**
 * Builds one golden server database (tests/fixtures/server/README.md) with the server and
 * the clients of an OLD checkout: run it from the root of that checkout
 *
 *   cd /tmp/golden-vN && deno run -A --unstable-net /path/to/make_golden_server_db.ts <out dir> [db_key]
 *
 * It starts that checkout's real server (QUIC on loopback, SQLite in a temp data dir,
 * sealed under `db_key` when given), drives four of that checkout's `QpqClient`s through
 * it, closes everything and copies the checkpointed `qpq.db` to `<out dir>/qpq.db`. It
 * uses only APIs every checkout since de7fb52 has (`startTestServer`, `openLocalStore`,
 * `QpqClient.create/register/dm/createGroup/invite/send/sync/close`); options a checkout
 * does not know are ignored.
 *
 * What the database then holds (checked by tests/upgrade_test.ts):
 * - accounts alice, bob, carol, dave, password `golden pw <name>` (the client's default
 *   OPAQUE key stretching), each with its identity key, its last-resort KeyPackage and
 *   two more KeyPackages;
 * - a DM alice–bob: "dm 1" (read and acknowledged by bob), then "dm 2", "dm 3" (queued
 *   for bob, unacknowledged);
 * - a group #team of alice, bob, carol: "team 1" (read by carol, not by bob);
 * - dave: no conversation, nothing queued.
 */
import { DatabaseSync } from "node:sqlite";

// The old checkout's own modules, from the directory this runs in (so this file type-checks
// here and runs against any checkout; their types are that checkout's).
const root = new URL(`file://${Deno.cwd()}/`);
const load = (path: string) => import(new URL(path, root).href);
const { startTestServer } = await load("tests/_support/server.ts");
const { QpqClient } = await load("src/client/client.ts");
const { openLocalStore } = await load("src/client/open_store.ts");
const { DEFAULT_ARGON2ID_PARAMS } = await load("src/crypto/mod.ts");

/** What this script uses of an old checkout's `QpqClient`. */
interface OldClient {
  register(): Promise<void>;
  dm(peer: string): Promise<{ name: string }>;
  createGroup(name: string): Promise<{ name: string }>;
  invite(group: string, users: string[]): Promise<unknown>;
  send(conversation: string, text: string): Promise<unknown>;
  sync(): Promise<unknown>;
  close(): Promise<void>;
}

const out = Deno.args[0];
if (out === undefined) throw new Error("usage: make_golden_server_db.ts <out dir> [db_key]");
const dbKey = Deno.args[1];
const dataDir = await Deno.makeTempDir({ prefix: "qpq-golden-server-" });
const stateDir = await Deno.makeTempDir({ prefix: "qpq-golden-states-" });
const ts = await startTestServer({
  dataDir,
  file: dbKey === undefined ? {} : { db_key: dbKey },
});
const kdf = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };

async function user(name: string): Promise<OldClient> {
  const password = `golden pw ${name}`;
  const store = await openLocalStore(`${stateDir}/${name}.bin`, password, {
    create: true,
    username: name,
    server: ts.addr,
    kdf,
  });
  const client: OldClient = QpqClient.create({
    store,
    password,
    caCertPem: ts.certPem,
    timeoutMs: 10_000,
    acceptFrom: "anyone",
  });
  await client.register();
  return client;
}

const alice = await user("alice");
const bob = await user("bob");
const carol = await user("carol");
const dave = await user("dave");

const dm = await alice.dm("bob");
await alice.send(dm.name, "dm 1");
await bob.sync(); // joins the DM, reads and acknowledges "dm 1"
await alice.send(dm.name, "dm 2");
await alice.send(dm.name, "dm 3");

const team = await alice.createGroup("team");
await alice.invite(team.name, ["bob", "carol"]);
await carol.sync(); // joins #team
await alice.send(team.name, "team 1");
await carol.sync(); // reads "team 1"
// bob stays away: his Welcome to #team, "dm 2", "dm 3" and "team 1" stay queued

for (const c of [alice, bob, carol, dave]) await c.close();
await ts.close();
await Deno.mkdir(out, { recursive: true });
await Deno.copyFile(`${dataDir}/qpq.db`, `${out}/qpq.db`);
// Small enough to check in: keep each account's oldest and newest KeyPackage (as if the
// others had been fetched), then rewrite the file with 1 KiB pages. Neither changes what
// the schema or the rows mean.
const db = new DatabaseSync(`${out}/qpq.db`);
db.exec(
  "DELETE FROM key_packages WHERE id NOT IN (SELECT MIN(id) FROM key_packages GROUP BY uid " +
    "UNION SELECT MAX(id) FROM key_packages GROUP BY uid)",
);
db.exec("PRAGMA journal_mode = DELETE; PRAGMA page_size = 1024; VACUUM; PRAGMA journal_mode = WAL");
db.close();
for (const d of [dataDir, stateDir]) await Deno.remove(d, { recursive: true });
console.log(`wrote ${out}/qpq.db`);
