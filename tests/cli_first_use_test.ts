/**
 * First use, as a new user meets it (issue 21, part 1): passwords asked again when wrong and
 * twice when new (on a terminal), a new name registered only when the person says so, and
 * `demo-group` reusing its two demo accounts instead of leaving two more on each run.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { runQpq, withCliUsers } from "./_support/cli.ts";

Deno.test("qpq demo-group run twice in one dir reuses its two accounts and their group", async () => {
  await withCliUsers(async (_qpq, { ts, dir }) => {
    const demo = () =>
      runQpq([
        "demo-group",
        "--server",
        ts.addr,
        "--ca-cert",
        `${dir}/ca.pem`,
        "--dir",
        `${dir}/demo`,
      ]);
    const first = await demo();
    assertEquals(first.code, 0, first.stderr);
    const second = await demo();
    assertEquals(second.code, 0, second.stderr);
    const names = (out: string) => [...new Set(out.match(/(alice|bob)-[0-9a-f]{6}/g) ?? [])];
    assertEquals(names(first.stdout).length, 2, first.stdout);
    assertEquals(names(second.stdout), names(first.stdout), second.stdout);
    assert(!second.stdout.includes("registered"), second.stdout);
    assert(second.stdout.includes("Hi Alice, Bob here"), second.stdout);
  });
});
