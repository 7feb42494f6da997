/**
 * Test support: the golden server databases of every earlier schema version
 * (tests/fixtures/server/README.md says how they were made and what they hold).
 *
 * @module
 */

/** The db_key the sealed fixtures were made with. */
export const GOLDEN_DB_KEY = "golden db_key for the qpq upgrade tests";
/** Every golden database: its schema version and whether it is sealed. */
export const GOLDEN = [1, 2, 3, 4].flatMap((version) =>
  [false, true].map((sealed) => ({
    version,
    sealed,
    file: new URL(`../fixtures/server/v${version}${sealed ? "_sealed" : ""}.db`, import.meta.url),
  }))
);

/** A private copy of a golden database at `<dir>/qpq.db`. */
export async function copyGolden(file: URL): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "qpq-upgrade-" });
  await Deno.copyFile(file, `${dir}/qpq.db`);
  return dir;
}
