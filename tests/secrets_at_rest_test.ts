/**
 * The OPAQUE server setup at rest without `db_key` (issue 18): sealed with the data dir's
 * `server-secrets.key` (0600), so a copy of the database or a backup alone cannot be used
 * for an offline dictionary attack on the passwords; an older database holding it in plain
 * text is sealed on its first start; a warn line says that there is no db_key.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_support/assert.ts";
import { startTestServer } from "./_support/server.ts";
import { registerUser } from "./_support/fuzz.ts";
import { copyGolden, GOLDEN } from "./_support/golden.ts";
import { connectServer } from "../src/client/connection.ts";
import { IdentityKeyPair } from "../src/crypto/identity.ts";
import { createLogger } from "../src/log.ts";
import { SqliteServerStore } from "../src/store/server/mod.ts";
import { checkDatabase } from "../src/store/server/check.ts";
import { StorageError } from "../src/errors.ts";
import { DatabaseSync } from "node:sqlite";

const SETUP = "opaque-server-setup";

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** The database file and its WAL, if any, as one byte string. */
async function dbBytes(path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const p of [path, `${path}-wal`]) {
    try {
      parts.push(await Deno.readFile(p));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The OPAQUE setup of the database in `dataDir`, read with its key file. */
async function setupOf(dataDir: string): Promise<Uint8Array> {
  const s = await SqliteServerStore.open(`${dataDir}/qpq.db`, {
    secretsKeyFile: `${dataDir}/server-secrets.key`,
    createSecretsKeyFile: false,
  });
  try {
    return await s.getOrCreateSecret(SETUP, () => {
      throw new Error("the server made no setup");
    });
  } finally {
    await s.close();
  }
}

/** Neither the whole setup nor any 16 bytes of it are in the file or its WAL. */
async function assertNotInFile(path: string, setup: Uint8Array): Promise<void> {
  assertEquals(setup.length, 128);
  const bytes = await dbBytes(path);
  for (let i = 0; i + 16 <= setup.length; i += 16) {
    assert(!contains(bytes, setup.subarray(i, i + 16)), `bytes ${i}..${i + 16} of the setup`);
  }
}

async function serverWithUser(dataDir: string, lines: string[], file = {}, user = "zoe") {
  const ts = await startTestServer({
    dataDir,
    file,
    log: createLogger({ write: (l) => lines.push(l) }),
  });
  try {
    const conn = await connectServer({ server: ts.addr, caCertPem: ts.certPem });
    await registerUser(conn, user, `${user} password`, IdentityKeyPair.generate().publicKey);
    await conn.close();
  } finally {
    await ts.close();
  }
}

Deno.test("without db_key the OPAQUE setup is sealed with a 0600 key file and a warn line says so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-secrets-" });
  try {
    const lines: string[] = [];
    await serverWithUser(`${dir}/plain`, lines);
    const key = await Deno.stat(`${dir}/plain/server-secrets.key`);
    assertEquals((key.mode! & 0o777).toString(8), "600");
    assertEquals(key.size, 65, "64 hex digits and a newline");
    const setup = await setupOf(`${dir}/plain`);
    await assertNotInFile(`${dir}/plain/qpq.db`, setup);
    const warn = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    const noKey = warn.filter((l) => /^no db_key/.test(l.msg));
    assertEquals(noKey.length, 1, lines.join("\n"));
    assertEquals(noKey[0].keyFile, `${dir}/plain/server-secrets.key`);

    // with a db_key everything is sealed under it: no key file, no such line
    const sealed: string[] = [];
    await serverWithUser(`${dir}/sealed`, sealed, { db_key: "a-long-enough-db-key-for-this-test" });
    assertEquals(sealed.filter((l) => l.includes("no db_key")), []);
    await assertRejects(() => Deno.stat(`${dir}/sealed/server-secrets.key`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a copy of the database without its key file does not yield the OPAQUE setup", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-secrets-copy-" });
  try {
    await serverWithUser(`${dir}/a`, []);
    await serverWithUser(`${dir}/b`, []); // another server, another key
    const setup = await setupOf(`${dir}/a`);
    await Deno.mkdir(`${dir}/stolen`);
    await Deno.copyFile(`${dir}/a/qpq.db`, `${dir}/stolen/qpq.db`);
    const path = `${dir}/stolen/qpq.db`;
    // the row itself is not the setup
    const db = new DatabaseSync(path, { readOnly: true });
    const row = db.prepare("SELECT value FROM secrets WHERE name = ?").get(SETUP)!;
    db.close();
    assertEquals((row.value as Uint8Array).length, setup.length + 40, "nonce ‖ ciphertext ‖ tag");
    assert(!contains(row.value as Uint8Array, setup.subarray(0, 16)));
    // opened without a key file: the setup is refused, never replaced by a new one
    const s = await SqliteServerStore.open(path);
    await assertRejects(
      () => s.getOrCreateSecret(SETUP, () => new Uint8Array(128)),
      StorageError,
      "sealed with a secrets key file",
    );
    await s.close();
    // with a missing key file or another server's: refused at open
    await assertRejects(
      () => SqliteServerStore.open(path, { secretsKeyFile: `${dir}/stolen/server-secrets.key` }),
      StorageError,
      "server-secrets.key is missing",
    );
    await assertRejects(
      () => SqliteServerStore.open(path, { secretsKeyFile: `${dir}/b/server-secrets.key` }),
      StorageError,
      "belongs to another database",
    );
    // a server started on the copy refuses, and makes no key file of its own
    const e = await assertRejects(
      () => startTestServer({ dataDir: `${dir}/stolen` }),
      StorageError,
    );
    assertStringIncludes(e.message, "is missing: put back the server-secrets.key");
    await assertRejects(() => Deno.stat(`${dir}/stolen/server-secrets.key`), Deno.errors.NotFound);
    // qpq server --check says the same
    const check = await checkDatabase(path, { secretsKeyFile: `${dir}/stolen/server-secrets.key` });
    assertEquals(check.ok, false);
    assertStringIncludes(check.problems.join("\n"), "server-secrets.key is missing");
    const good = await checkDatabase(`${dir}/a/qpq.db`, {
      secretsKeyFile: `${dir}/a/server-secrets.key`,
    });
    assertEquals(good.ok, true, good.problems.join("\n"));
    assert(good.findings.some((f) => f.includes("opens the OPAQUE secret")), good.findings.join());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an older database with the OPAQUE setup in plain text is sealed at its first start", async () => {
  const g = GOLDEN.find((g) => g.version === 4 && !g.sealed)!;
  const dataDir = await copyGolden(g.file);
  const path = `${dataDir}/qpq.db`;
  try {
    const db = new DatabaseSync(path, { readOnly: true });
    const plain = (db.prepare("SELECT value FROM secrets WHERE name = ?").get(SETUP)!
      .value as Uint8Array).slice();
    db.close();
    assertEquals(plain.length, 128);
    assert(contains(await dbBytes(path), plain), "the golden file holds it in plain text");
    const check = await checkDatabase(path, { secretsKeyFile: `${dataDir}/server-secrets.key` });
    assert(check.findings.some((f) => f.includes("the next start seals")), check.findings.join());
    await serverWithUser(dataDir, []);
    assertEquals(await setupOf(dataDir), plain, "the same setup: old passwords still work");
    await assertNotInFile(path, plain);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("sealing a database's plain OPAQUE setup overwrites the plain bytes in the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-secrets-overwrite-" });
  const path = `${dir}/qpq.db`;
  try {
    // as an older qpq left it: the setup in plain text, on a page with room to spare
    const setup = crypto.getRandomValues(new Uint8Array(128));
    const old = await SqliteServerStore.open(path);
    await old.getOrCreateSecret(SETUP, () => setup);
    // a row after it, so that the setup's old cell is not where the larger sealed one goes
    await old.getOrCreateSecret("another", () => new Uint8Array(32));
    await old.createUser("zoe", new Uint8Array(64));
    await old.close();
    assert(contains(await dbBytes(path), setup));
    const s = await SqliteServerStore.open(path, { secretsKeyFile: `${dir}/server-secrets.key` });
    assertEquals(await s.getOrCreateSecret(SETUP, () => new Uint8Array(128)), setup);
    await assertNotInFile(path, setup);
    await s.close();
    await assertNotInFile(path, setup);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
