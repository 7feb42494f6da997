/**
 * Rehearsed upgrades: a golden server database of every earlier schema version
 * (tests/fixtures/server/, made by the qpq of its time, see the README there), plain and
 * sealed under a db_key, is opened by this build's real server (QUIC on loopback), which
 * migrates it; then the accounts log in over OPAQUE with their passwords and everything the
 * old server held is read back over the wire.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";
import { connectServer, type ServerConnection } from "../src/client/connection.ts";
import { clientLoginFinish, clientLoginStart } from "../src/auth/mod.ts";
import { toHex } from "../src/bytes.ts";
import { planMigrations, SCHEMA_VERSION, SqliteServerStore } from "../src/store/server/mod.ts";
import { DatabaseSync } from "node:sqlite";
import { copyGolden, GOLDEN, GOLDEN_DB_KEY } from "./_support/golden.ts";

/** Log in over OPAQUE (the client's default key stretching, as the old clients used). */
async function login(ts: TestServer, username: string): Promise<ServerConnection> {
  const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
  const password = `golden pw ${username}`;
  const start = await clientLoginStart(password);
  const started = await conn.call(
    { kind: "loginStart", username, request: start.request },
    "loginStarted",
  );
  const fin = await clientLoginFinish(start.state, password, started.response);
  assertEquals(fin.kind, "ok", `${username}: client-side login`);
  if (fin.kind !== "ok") throw new Error("unreachable");
  const session = await conn.call({
    kind: "loginFinish",
    username,
    finish: fin.finishRequest,
    loginId: started.loginId,
  }, "session");
  assertEquals(session.username, username);
  return conn;
}

/** What the server tells bob, in a form to compare across opens. */
async function bobsView(ts: TestServer) {
  const bob = await login(ts, "bob");
  try {
    const channels = (await bob.call({ kind: "listChannels" }, "channels")).channels
      .map((c) => ({
        id: toHex(c.channelId),
        kind: c.channelKind,
        name: c.name,
        members: [...c.members].sort(),
      }))
      .sort((a, b) => a.kind.localeCompare(b.kind));
    const messages = (await bob.call({ kind: "fetch", afterSeq: 0, limit: 0 }, "messages"))
      .messages.map((m) => ({
        seq: Number(m.seq),
        channel: toHex(m.channelId),
        sender: m.sender,
        id: toHex(m.messageId),
        kind: m.messageKind,
        bytes: m.payload.length,
      }));
    return { channels, messages };
  } finally {
    await bob.close();
  }
}

/**
 * Sender and message id (hex) of each message queued for bob, in queue order, as the old
 * server wrote them into a plain database: `messages.body` is `u32 length ‖ sender ‖ u32
 * length ‖ message id ‖ payload`, unsealed.
 */
function bobsQueueInFile(path: string): [string, string][] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare(
      "SELECT m.body FROM deliveries d JOIN messages m ON m.id = d.message " +
        "WHERE d.recipient = ? ORDER BY d.seq",
    ).all(new TextEncoder().encode("bob")).map((r) => {
      const body = r.body as Uint8Array;
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      const text = (at: number): [string, number] => {
        const n = view.getUint32(at);
        return [new TextDecoder().decode(body.subarray(at + 4, at + 4 + n)), at + 4 + n];
      };
      const [sender, next] = text(0);
      return [sender, text(next)[0]];
    });
  } finally {
    db.close();
  }
}

/** The stored `secrets` row of the OPAQUE server setup, as the file holds it. */
function opaqueSetupInFile(path: string): Uint8Array {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const r = db.prepare("SELECT value FROM secrets WHERE name = 'opaque-server-setup'").get();
    return (r!.value as Uint8Array).slice();
  } finally {
    db.close();
  }
}

function schemaRows(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return JSON.stringify({
      versions: db.prepare("SELECT version, name, applied_at FROM schema_version").all(),
      schema: db.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all(),
      integrity: db.prepare("PRAGMA integrity_check").all(),
      foreignKeys: db.prepare("PRAGMA foreign_key_check").all(),
      plan: planMigrations(db).steps,
    });
  } finally {
    db.close();
  }
}

for (const g of GOLDEN) {
  Deno.test(`upgrade from schema ${g.version}${g.sealed ? " (sealed)" : ""}: accounts log in, queues, channels and KeyPackages survive`, async () => {
    const dataDir = await copyGolden(g.file);
    // what the old server stored for bob, read from the file itself (plain ones only)
    const stored = g.sealed ? undefined : bobsQueueInFile(`${dataDir}/qpq.db`);
    const plainSetup = g.sealed ? undefined : opaqueSetupInFile(`${dataDir}/qpq.db`);
    const file = g.sealed ? { db_key: GOLDEN_DB_KEY } : {};
    const ts = await startTestServer({ dataDir, file });
    let first;
    try {
      first = await bobsView(ts);
      const [dm, team] = first.channels;
      assertEquals(dm?.kind, "dm");
      assertEquals(dm?.members, ["alice", "bob"]);
      assertEquals(team?.kind, "group");
      assertEquals(team?.name, "team");
      assertEquals(team?.members, ["alice", "bob", "carol"]);
      // bob never came back: "dm 2", "dm 3", his Welcome to #team and "team 1", in order
      assertEquals(
        first.messages.map((m) => [m.channel, m.sender, m.kind]),
        [
          [dm!.id, "alice", "application"],
          [dm!.id, "alice", "application"],
          [team!.id, "alice", "welcome"],
          [team!.id, "alice", "application"],
        ],
      );
      const seqs = first.messages.map((m) => m.seq);
      assertEquals(seqs, [...seqs].sort((a, b) => a - b));
      assertEquals(new Set(first.messages.map((m) => m.id)).size, 4, "distinct message ids");
      if (stored !== undefined) {
        assertEquals(
          first.messages.map((m) => [m.sender, m.id]),
          stored,
          "as the old server stored",
        );
      }
      assert(first.messages.every((m) => m.bytes > 0));

      // carol read everything; alice fetches dave's KeyPackages (two and the last resort)
      const carol = await login(ts, "carol");
      const carolQueue = await carol.call({ kind: "fetch", afterSeq: 0, limit: 0 }, "messages");
      assertEquals(carolQueue.messages.length, 0);
      await carol.close();
      const dave = await login(ts, "dave");
      assertEquals((await dave.call({ kind: "countKeyPackages" }, "keyPackageCount")).count, 2);
      await dave.close();
      const alice = await login(ts, "alice");
      const key = await alice.call({ kind: "fetchIdentityKey", username: "dave" }, "identityKey");
      assertEquals(key.key.length, 32);
      for (let i = 0; i < 3; i++) {
        const kp = await alice.call({ kind: "fetchKeyPackage", username: "dave" }, "keyPackage");
        assert(kp.data.length > 100, "a KeyPackage");
      }
      await alice.close();
    } finally {
      await ts.close();
    }

    const path = `${dataDir}/qpq.db`;
    // the OPAQUE setup an old server kept in plain text is sealed with the new key file
    if (plainSetup !== undefined) {
      assertEquals(plainSetup.length, 128);
      const after = opaqueSetupInFile(path);
      assert(after.length === 168 && toHex(after).indexOf(toHex(plainSetup.subarray(0, 16))) < 0);
      assertEquals((await Deno.stat(`${dataDir}/server-secrets.key`)).mode! & 0o777, 0o600);
    }
    const migrated = schemaRows(path);
    const parsed = JSON.parse(migrated);
    assertEquals(parsed.versions.map((r: { version: number }) => r.version).at(-1), SCHEMA_VERSION);
    assertEquals(parsed.integrity, [{ integrity_check: "ok" }]);
    assertEquals(parsed.foreignKeys, []);
    assertEquals(parsed.plan, []);

    // opening it again migrates nothing and changes no schema; the same data is served
    const store = await SqliteServerStore.open(path, g.sealed ? { dbKey: GOLDEN_DB_KEY } : {});
    assertEquals(store.migrationNotices, []);
    await store.close();
    assertEquals(schemaRows(path), migrated);
    const again = await startTestServer({ dataDir, file });
    try {
      const second = await bobsView(again);
      assertEquals(second, first);
    } finally {
      await again.close();
    }
    await Deno.remove(dataDir, { recursive: true });
  });
}

Deno.test("upgrade from the renumbered schema 4 moves a renamed account's deliveries and blocks too", async () => {
  // The golden schema-4 database (89c88b7: "sender and size" = 3, "blocks" = 4, no
  // case-insensitive usernames yet) with alice registered as "Alice", the sender of bob's
  // queue, whom bob blocks: the usernames migration, run after the other two, must move
  // her everywhere, or her deliveries lose their sender and the block dangles.
  const dir = await copyGolden(GOLDEN.find((g) => g.version === 4 && !g.sealed)!.file);
  const path = `${dir}/qpq.db`;
  const db = new DatabaseSync(path);
  const [old, now] = [new TextEncoder().encode("alice"), new TextEncoder().encode("Alice")];
  db.exec("PRAGMA foreign_keys = OFF");
  for (
    const sql of [
      "UPDATE users SET uid = ?2, username = ?2 WHERE uid = ?1",
      "UPDATE sessions SET uid = ?2 WHERE uid = ?1",
      "UPDATE members SET uid = ?2 WHERE uid = ?1",
      "UPDATE key_packages SET uid = ?2 WHERE uid = ?1",
      "UPDATE last_resort_key_packages SET uid = ?2 WHERE uid = ?1",
      "UPDATE queues SET recipient = ?2 WHERE recipient = ?1",
      "UPDATE deliveries SET recipient = ?2 WHERE recipient = ?1",
      "UPDATE deliveries SET sender_uid = ?2 WHERE sender_uid = ?1",
      "UPDATE channels SET created_by = ?2 WHERE created_by = ?1",
    ]
  ) db.prepare(sql).run(old, now);
  db.prepare("INSERT INTO blocks VALUES (?, ?, 0)").run(new TextEncoder().encode("bob"), now);
  const senders = () =>
    db.prepare("SELECT DISTINCT sender_uid AS s FROM deliveries").all().map((r) =>
      new TextDecoder().decode(r.s as Uint8Array)
    );
  assertEquals(senders(), ["Alice"]);
  db.close();

  const store = await SqliteServerStore.open(path);
  await store.close();
  const after = new DatabaseSync(path, { readOnly: true });
  try {
    assertEquals(
      after.prepare("SELECT DISTINCT sender_uid AS s FROM deliveries").all().map((r) =>
        new TextDecoder().decode(r.s as Uint8Array)
      ),
      ["alice"],
    );
    assertEquals(
      after.prepare("SELECT blocked FROM blocks").all().map((r) =>
        new TextDecoder().decode(r.blocked as Uint8Array)
      ),
      ["alice"],
    );
    assertEquals(after.prepare("PRAGMA foreign_key_check").all(), []);
  } finally {
    after.close();
  }
  await Deno.remove(dir, { recursive: true });
});
