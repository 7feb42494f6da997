/**
 * `deno task mutate [--only id,id] [--quick] [--list]`: the mutation runner. For each entry
 * of {@link MUTANTS} (tests/mutate/mutants.ts) it copies the project into one scratch
 * directory, replaces the entry's `find` text by its `replace` text in its file, type-checks
 * the mutant (one that does not compile is *invalid*, reported and not counted), runs the
 * entry's test files with `--fail-fast`, and restores the file. A mutant the tests fail on is
 * *killed*; one they pass is *survived* — a security or integrity check that no test guards.
 * The last stdout line is `mutate: N mutants, K killed, S survived, I invalid`; the exit code is
 * 1 when anything survived or was invalid, 2 on a usage error or a stale list entry.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type Mutant, MUTANTS } from "./mutants.ts";

/** Usage text. */
export const USAGE = `Usage: deno task mutate [options]

Applies each mutation in tests/mutate/mutants.ts (one security or integrity check
removed or weakened) to a scratch copy of the project, type-checks it, runs its tests
with --fail-fast and says whether a test killed it. Every mutant must be killed.

Options:
  --only ID,ID     run only these mutants
  --quick          run only the mutants marked quick (the CI subset)
  --list           print the mutants and exit
  --timeout S      seconds before a mutant's test run counts as killed by a hang (default 600)
  --keep           keep the scratch copy (its path is printed)
  --no-baseline    skip running each test set on the unmutated copy first (a kill then
                   may be a test that fails anyway)
  --help           this text

Exit code: 0 when every mutant was killed, 1 when one survived or did not compile,
2 on a usage error, an entry whose text no longer occurs exactly once, or tests that
fail on the unmutated copy.`;

const ROOT = new URL("../../", import.meta.url).pathname;

/** The `deno test` flags of `deno task test` (kept in one place: deno.json). */
async function testFlags(): Promise<string[]> {
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const parts = (denoJson.tasks.test as string).split(/\s+/);
  return parts.slice(2, parts.indexOf("tests/"));
}

function occurrences(text: string, find: string): number {
  let n = 0;
  for (let i = text.indexOf(find); i >= 0; i = text.indexOf(find, i + 1)) n++;
  return n;
}

async function run(
  args: string[],
  cwd: string,
  timeoutMs: number,
): Promise<{ code: number; output: string; timedOut: boolean }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr), timedOut };
}

/**
 * Copy the tracked files of the working tree (as they are now) into `dir`, and link
 * `dir/../shared` to the checkout's `../shared` (the conformance vectors the tests read in
 * place): without it every vector test would fail and count as a kill.
 */
async function copyProject(dir: string): Promise<void> {
  try {
    await Deno.symlink(new URL("../../../shared", import.meta.url).pathname, `${dir}/../shared`);
  } catch { /* no shared/ beside the checkout: the vector tests say so */ }
  const ls = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  if (ls.code !== 0) throw new Error("git ls-files failed: run deno task mutate in a git checkout");
  const files = new TextDecoder().decode(ls.stdout).split("\0").filter((f) => f !== "");
  for (const f of files) {
    const to = `${dir}/${f}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    try {
      await Deno.copyFile(`${ROOT}${f}`, to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // deleted in the working tree
    }
  }
  // The npm packages are read only: share them instead of installing a second copy.
  try {
    await Deno.symlink(`${ROOT}node_modules`, `${dir}/node_modules`);
  } catch { /* no node_modules yet: deno creates one */ }
}

/** Outcome of one mutant. */
type Outcome = "killed" | "survived" | "invalid";

async function runMutant(
  m: Mutant,
  dir: string,
  flags: string[],
  timeoutMs: number,
): Promise<{ outcome: Outcome; detail: string }> {
  const path = `${dir}/${m.file}`;
  const original = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, original.replace(m.find, () => m.replace));
  try {
    const check = await run(["check", "--quiet", m.file, ...m.tests], dir, timeoutMs);
    if (check.code !== 0) {
      const first = check.output.split("\n").find((l) => /error/i.test(l)) ?? "";
      return { outcome: "invalid", detail: `does not type-check: ${first.trim()}` };
    }
    const t = await run(["test", ...flags, "--fail-fast", ...m.tests], dir, timeoutMs);
    if (t.timedOut) return { outcome: "killed", detail: "tests hung (timeout)" };
    if (t.code !== 0) {
      const failed = t.output.split("\n").find((l) => /\.\.\. FAILED/.test(l)) ?? "tests failed";
      return { outcome: "killed", detail: failed.trim() };
    }
    return { outcome: "survived", detail: `${m.tests.join(" ")} still pass` };
  } finally {
    await Deno.writeTextFile(path, original);
  }
}

async function main(args: string[]): Promise<number> {
  let p;
  try {
    p = parseArgs({
      args,
      options: {
        only: { type: "string" },
        quick: { type: "boolean" },
        list: { type: "boolean" },
        timeout: { type: "string" },
        keep: { type: "boolean" },
        "no-baseline": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    console.error(`mutate: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const v = p.values;
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const timeoutS = v.timeout === undefined ? 600 : Number(v.timeout);
  if (!Number.isInteger(timeoutS) || timeoutS < 1) {
    console.error(`mutate: --timeout needs a whole number of seconds\n\n${USAGE}`);
    return 2;
  }
  let selected = MUTANTS;
  if (v.only !== undefined) {
    const ids = v.only.split(",").filter((s) => s !== "");
    const unknown = ids.filter((id) => !MUTANTS.some((m) => m.id === id));
    if (unknown.length > 0) {
      console.error(`mutate: no mutant named ${unknown.join(", ")} (see --list)`);
      return 2;
    }
    selected = MUTANTS.filter((m) => ids.includes(m.id));
  }
  if (v.quick) selected = selected.filter((m) => m.quick === true);
  if (v.list) {
    for (const m of selected) {
      console.log(`${m.id}${m.quick ? " (quick)" : ""}  ${m.file}\n    ${m.why}`);
    }
    return 0;
  }

  // A stale entry (its text edited away) must fail loudly, not count as killed or invalid.
  const stale: string[] = [];
  for (const m of selected) {
    const n = occurrences(await Deno.readTextFile(`${ROOT}${m.file}`), m.find);
    if (n !== 1) stale.push(`${m.id}: its text occurs ${n} times in ${m.file} (must be once)`);
  }
  if (stale.length > 0) {
    for (const s of stale) console.error(`mutate: ${s}`);
    console.error("mutate: update tests/mutate/mutants.ts");
    return 2;
  }

  const flags = await testFlags();
  const parent = await Deno.makeTempDir({ prefix: "qpq-mutate-" });
  const dir = `${parent}/qpq`;
  await Deno.mkdir(dir);
  let killed = 0, survived = 0, invalid = 0;
  const started = Date.now();
  try {
    await copyProject(dir);
    if (v.keep) console.error(`mutate: scratch copy in ${dir}`);
    // A kill only counts if the same tests pass on the unmutated copy.
    if (!v["no-baseline"]) {
      const sets = [...new Set(selected.map((m) => m.tests.join(" ")))];
      for (const [i, set] of sets.entries()) {
        console.error(`mutate: baseline [${i + 1}/${sets.length}] ${set} …`);
        const t = await run(
          ["test", ...flags, "--fail-fast", ...set.split(" ")],
          dir,
          timeoutS * 1000,
        );
        if (t.code !== 0) {
          const failed = t.output.split("\n").find((l) => /\.\.\. FAILED/.test(l)) ?? "";
          console.error(
            `mutate: ${set} fail without any mutation (${failed.trim()}): fix them first`,
          );
          return 2;
        }
      }
    }
    for (const [i, m] of selected.entries()) {
      const t0 = Date.now();
      console.error(`mutate: [${i + 1}/${selected.length}] ${m.id} …`);
      const r = await runMutant(m, dir, flags, timeoutS * 1000);
      if (r.outcome === "killed") killed++;
      else if (r.outcome === "survived") survived++;
      else invalid++;
      const s = ((Date.now() - t0) / 1000).toFixed(0);
      console.log(`${r.outcome.padEnd(8)} ${m.id} (${s}s): ${r.detail}`);
    }
  } finally {
    if (!v.keep) await Deno.remove(parent, { recursive: true });
  }
  const mins = ((Date.now() - started) / 60_000).toFixed(1);
  console.error(`mutate: ${mins} min`);
  console.log(
    `mutate: ${selected.length} mutants, ${killed} killed, ${survived} survived, ${invalid} invalid`,
  );
  return survived + invalid > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
