/**
 * `qpq server restore FILE`: put a backup in place of the server database (server stopped).
 *
 * @module
 */
import { parseCommand, println } from "./_args.ts";
import { readServerConfig, SERVER_CONFIG_OPTIONS, SERVER_CONFIG_USAGE } from "./_server_config.ts";
import { restoreDatabase } from "../server/backup.ts";
import { formatUtc } from "./server_backup.ts";

/** Usage text. */
export const USAGE = `Usage: qpq server restore FILE [--config FILE] [--data-dir DIR]

Put the backup FILE (from qpq server backup) in place of the server database. The server
must be stopped: a running server holds the database and the restore is refused. FILE is
checked first (integrity, a qpq database, a schema this qpq reads, opens with the
configured db_key). The database it replaces is kept beside it, renamed
<db>.replaced-<time> (with its -wal/-shm), never deleted. The restored database is marked
so that clients learn of the restore and say so in one line, and sequence numbers move
past anything handed out since the backup. Without a db_key the backup's OPAQUE secret
opens with the data dir's server-secrets.key or with FILE.key (from backup --with-key),
which then goes into the data dir (a different key file there is kept, renamed).
Accounts of the replaced database that the backup lacks (registered after it) keep their
names: nobody else can register them, and their owners take them back with qpq
register-user from the state file that holds their identity. Then start the server.

Options:
${SERVER_CONFIG_USAGE}
  -h, --help               show this help

Environment: QPQ_CONFIG, QPQ_DB_KEY (as for qpq server).`;

/** Run `qpq server restore`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("server restore", args, {
    ...SERVER_CONFIG_OPTIONS,
    help: { type: "boolean", short: "h" },
  }, { min: 1, max: 1 });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const file = p.positionals[0]!;
  const config = await readServerConfig(p.values);
  const r = await restoreDatabase(config, file);
  const taken = r.mark.backupTakenAt === undefined
    ? "taken at an unknown time"
    : `taken ${formatUtc(r.mark.backupTakenAt)}`;
  println(
    `restored ${r.dbPath} from ${file} (${taken}, schema ${r.info.schemaVersion}, ${
      r.info.sealed ? "sealed" : "not sealed"
    }, ${r.mark.users} user(s) notified)${
      r.keptAs ? `; the replaced database is kept as ${r.keptAs}` : ""
    }${r.keyKeptAs ? `; the replaced secrets key file is kept as ${r.keyKeptAs}` : ""}${
      r.reserved
        ? `; ${r.reserved} account name(s) lost since the backup kept for their owners`
        : ""
    }${
      r.reserveSkipped
        ? `; names of accounts lost since the backup are not kept (the replaced database ${r.reserveSkipped})`
        : ""
    }`,
  );
  return 0;
}
