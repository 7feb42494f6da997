/**
 * `qpq server --check`: check the server database the same configuration would open,
 * without changing it (see `checkDatabase`), and say whether the server can start on it.
 *
 * @module
 */
import { eprintln, println } from "./_args.ts";
import { visible } from "./_terminal.ts";
import type { ServerConfig } from "../server/mod.ts";
import { checkDatabase } from "../store/server/check.ts";
import { secretsKeyPath } from "../server/backup.ts";

/** Run the check for `config`; resolves to the exit code (0 fine, 1 a problem). */
export async function runCheck(config: ServerConfig): Promise<number> {
  if (config.storeBackend === "memory") {
    eprintln('qpq: store_backend is "memory": there is no database to check');
    return 1;
  }
  const path = config.dbPath;
  println(`checking ${visible(path)}`);
  const r = await checkDatabase(path, {
    dbKey: config.dbKey,
    ...(config.dbKey ? {} : { secretsKeyFile: secretsKeyPath(config) }),
  });
  for (const f of r.findings) println(f);
  for (const n of r.notices) println(`notice: ${visible(n)}`);
  if (!r.ok) {
    for (const p of r.problems) eprintln(`qpq: ${visible(p)}`);
    return 1;
  }
  const plan = r.plan!;
  const migration = plan.steps.length === 0
    ? "no migration needed"
    : `would migrate schema ${plan.from} → ${plan.to}: ${
      plan.steps.map((s) => `${s.version} "${s.name}"`).join(", ")
    }${plan.renumbered ? " (its history is renumbered to this build's)" : ""}`;
  println(
    `ok: schema ${r.schemaVersion}, ${r.accounts} account${
      r.accounts === 1 ? "" : "s"
    }, integrity ok, ${migration}`,
  );
  return 0;
}
