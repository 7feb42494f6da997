/**
 * Test support: a server database at schema version 2 (before case-insensitive usernames),
 * written as a build of that schema did, with real OPAQUE records so that its accounts can
 * log in after the migration.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { MIGRATIONS, Sealer } from "../../src/store/server/mod.ts";
import {
  clientRegistrationFinish,
  clientRegistrationStart,
  createServerSetup,
  type KeyStretching,
  registrationStart,
} from "../../src/auth/mod.ts";
import { IdentityKeyPair } from "../../src/crypto/identity.ts";
import { utf8 } from "../../src/bytes.ts";

/**
 * Write `<dataDir>/qpq.db` at schema 2 (not sealed) with the given accounts, each
 * registered in OPAQUE under its exact spelling, oldest first, with its identity key (a
 * new one when not given: a client state of the account must then not log in, issue 21).
 *
 * @param keyStretching what the accounts' clients use (`undefined`: the client default,
 *   as the `qpq` command uses)
 */
export async function writeSchemaTwoDb(
  dataDir: string,
  accounts: readonly { name: string; password: string; identityKey?: Uint8Array }[],
  keyStretching: KeyStretching | undefined,
): Promise<void> {
  const setup = await createServerSetup();
  const sealer = Sealer.plain();
  const db = new DatabaseSync(`${dataDir}/qpq.db`);
  try {
    db.exec(MIGRATIONS[0]!.sql + MIGRATIONS[1]!.sql);
    db.exec(
      "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, " +
        "applied_at INTEGER NOT NULL) STRICT; " +
        "INSERT INTO schema_version VALUES (1, 'initial schema', 0), (2, 'KeyPackages', 0)",
    );
    db.prepare("INSERT INTO meta VALUES ('seal_mode', ?), ('seal_check', ?)")
      .run(utf8(sealer.mode), sealer.checkValue());
    db.prepare("INSERT INTO secrets VALUES ('opaque-server-setup', ?)").run(
      sealer.seal("secrets.value", utf8("opaque-server-setup"), setup.toBytes()),
    );
    for (const [i, { name, password, identityKey }] of accounts.entries()) {
      const start = await clientRegistrationStart(password);
      const response = await registrationStart(setup, name, start.request);
      const fin = await clientRegistrationFinish(
        start.state,
        password,
        response,
        keyStretching === undefined ? {} : { keyStretching },
      );
      const uid = sealer.lookupName("user", name);
      db.prepare("INSERT INTO users VALUES (?, ?, ?, ?, ?)").run(
        uid,
        sealer.seal("users.username", uid, utf8(name)),
        sealer.seal("users.record", uid, fin.record),
        identityKey ?? IdentityKeyPair.generate().publicKey,
        1_700_000_000_000 + i,
      );
    }
  } finally {
    db.close();
    sealer.destroy();
  }
}
