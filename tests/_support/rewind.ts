/**
 * Test support: rewind a stopped server to an earlier copy of its database, the way
 * docs/operations.md restores a backup (WAL files removed, every queue moved past what was
 * delivered since). The clients are not rewound: what they committed since is unknown to
 * the server.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/** Copy the database of a stopped server (`dataDir/qpq.db`) to `to`. */
export async function copyDatabase(dataDir: string, to: string): Promise<void> {
  await Deno.copyFile(`${dataDir}/qpq.db`, to);
}

/** Put the copy `from` back as the stopped server's database, as a restore does. */
export async function restoreDatabase(dataDir: string, from: string): Promise<void> {
  for (const f of ["qpq.db-wal", "qpq.db-shm"]) {
    await Deno.remove(`${dataDir}/${f}`).catch(() => {});
  }
  await Deno.copyFile(from, `${dataDir}/qpq.db`);
  const db = new DatabaseSync(`${dataDir}/qpq.db`);
  try {
    db.exec("UPDATE queues SET next_seq = next_seq + 1000000");
  } finally {
    db.close();
  }
}
