/**
 * `qpq server backup --out FILE`: a consistent copy of the server database, taken while
 * the server runs.
 *
 * @module
 */
import { eprintln, parseCommand, println } from "./_args.ts";
import { readServerConfig, SERVER_CONFIG_OPTIONS, SERVER_CONFIG_USAGE } from "./_server_config.ts";
import { backupDatabase } from "../server/backup.ts";
import { UsageError } from "../errors.ts";

/** Usage text. */
export const USAGE =
  `Usage: qpq server backup --out FILE [--with-key] [--config FILE] [--data-dir DIR]

Copy the server database to FILE while the server keeps serving: one consistent state,
its journal included, compacted. Sealed values stay sealed (no db_key is needed to copy);
with a db_key configured the copy must open with it. FILE is created with mode 0600 and
must not exist. The copy is integrity-checked; one line says what was written.
Keep the db_key apart from the backups. Without a db_key the OPAQUE server secret in the
copy is sealed with the data dir's server-secrets.key, which is not copied: keep a copy of
it apart (a restore on another machine needs it), or pass --with-key. Restore with
qpq server restore FILE.

Options:
  --out FILE               the backup file to create (required, never replaced)
  --with-key               also copy server-secrets.key to FILE.key (0600; whoever holds
                           both files can attack the passwords offline)
${SERVER_CONFIG_USAGE}
  -h, --help               show this help

Environment: QPQ_CONFIG, QPQ_DB_KEY (as for qpq server).`;

/** Run `qpq server backup`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("server backup", args, {
    ...SERVER_CONFIG_OPTIONS,
    out: { type: "string" },
    "with-key": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const out = p.values.out;
  if (out === undefined || out === "") {
    throw new UsageError("Missing --out FILE (see qpq server backup --help)");
  }
  const config = await readServerConfig(p.values);
  const r = await backupDatabase(config, out, {
    onProgress: (t) => eprintln(`qpq: ${t}`),
    withKey: p.values["with-key"] === true,
  });
  const key = r.keyCopy !== undefined
    ? `; the secrets key file is copied to ${r.keyCopy}: keep both as safely as the server`
    : r.secretsKeyFile !== undefined
    ? `; its OPAQUE secret is sealed with ${r.secretsKeyFile}, not in the backup: keep a copy of that file apart, a restore on another machine needs it (or use --with-key)`
    : "";
  println(
    `backup written: ${r.path} (${formatBytes(r.bytes)}, schema ${r.info.schemaVersion}, ${
      r.info.sealed ? "sealed" : "not sealed"
    }, taken ${formatUtc(r.takenAt)}, integrity ok)${key}`,
  );
  return 0;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** `2026-11-28 14:00:05 UTC`. */
export function formatUtc(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}
