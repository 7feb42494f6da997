/**
 * The secrets key file of a server database without `db_key` (`server-secrets.key` in the
 * data dir): 32 random bytes written as 64 hex digits and a newline, mode 0600, created once
 * (never replaced). It seals the `secrets` table (the OPAQUE server setup), so a copy of the
 * database or of a backup alone cannot be used for an offline dictionary attack on the
 * passwords. The database records that its secrets are sealed and a check value of the key
 * (meta `secrets_seal`, `secrets_check`), so a missing or foreign key file is one clear error.
 *
 * ```
 * open, no db_key ─► meta says sealed? ─yes─► read key file (missing: refuse) ─► check value?
 *                        └─no (new or older database)─► read or create key file ─► seal rows
 * ```
 *
 * @module
 */
import { constantTimeEqual, fromHex, toHex } from "../../bytes.ts";
import { StorageError } from "../../errors.ts";
import { Sealer } from "../sealing.ts";

/** File name of the secrets key inside the data dir. */
export const SECRETS_KEY_FILE = "server-secrets.key";
/** Meta key recording that the secrets are sealed with a key file, and how. */
export const SECRETS_SEAL_META = "secrets_seal";
/** The value of {@link SECRETS_SEAL_META}. */
export const SECRETS_SEAL_MODE = "key-file-v1";
/** Meta key of the key's check value. */
export const SECRETS_CHECK_META = "secrets_check";

const KEY_TEXT = /^([0-9a-f]{64})\n?$/;

function errorName(e: unknown): string {
  return e instanceof Error ? e.name : "failed";
}

/**
 * The key in the file at `path`, or undefined when there is no such file.
 *
 * @throws {StorageError} when it cannot be read or is not a secrets key file
 */
export function readSecretsKey(path: string): Uint8Array | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new StorageError(`Cannot read the secrets key file ${path}: ${errorName(e)}`, {
      cause: e,
    });
  }
  const m = KEY_TEXT.exec(text);
  if (m === null) {
    throw new StorageError(`Cannot open database: ${path} is not a qpq secrets key file`);
  }
  return fromHex(m[1]!);
}

/**
 * Create the key file at `path` (0600 whatever the umask, written and fsynced under a
 * temporary name, then linked into place so an existing file is never replaced). When
 * another process created it first, its key is returned.
 *
 * @throws {StorageError} when it cannot be written
 */
export function createSecretsKey(path: string): Uint8Array {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  try {
    const f = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      f.writeSync(new TextEncoder().encode(`${toHex(key)}\n`));
      f.syncSync();
    } finally {
      f.close();
    }
    Deno.chmodSync(tmp, 0o600);
    try {
      Deno.linkSync(tmp, path);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      key.fill(0);
      const theirs = readSecretsKey(path);
      if (theirs === undefined) throw e;
      return theirs;
    }
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError(`Cannot write the secrets key file ${path}: ${errorName(e)}`, {
      cause: e,
    });
  } finally {
    try {
      Deno.removeSync(tmp);
    } catch { /* not there */ }
  }
  syncDir(path);
  return key;
}

/** fsync the directory holding `path`, so that the new file survives a power cut. */
export function syncDir(path: string): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch { /* best effort: the file itself is fsynced */ }
}

/** The error for a database whose secrets are sealed with a key file that is not there. */
export function missingSecretsKey(path: string): StorageError {
  return new StorageError(
    `Cannot open database: its OPAQUE secret is sealed with a key file and ${path} is missing: ` +
      "put back the server-secrets.key kept with this database (see docs/operations.md)",
  );
}

/**
 * The sealer of the secrets of a database whose meta records {@link SECRETS_SEAL_MODE},
 * from the key file at `path`.
 *
 * @throws {StorageError} when the file is missing or holds another database's key
 */
export function secretsSealerFor(path: string, check: Uint8Array | undefined): Sealer {
  const key = readSecretsKey(path);
  if (key === undefined) throw missingSecretsKey(path);
  const sealer = Sealer.fromSecretsKey(key);
  key.fill(0);
  if (!constantTimeEqual(sealer.checkValue(), check ?? new Uint8Array(0))) {
    sealer.destroy();
    throw new StorageError(
      `Cannot open database: the secrets key file ${path} belongs to another database`,
    );
  }
  return sealer;
}
