/**
 * The one runner of fixed-seed simulation runs for the test files (tests/sim_test.ts,
 * tests/sim_sweep_test.ts): `deno task sim` as a process, its last line must say 0
 * violations, and the checks and counters a run names must have fired.
 *
 * @module
 */
import { assert } from "../_support/assert.ts";
import { type CliResult, finish } from "../_support/cli.ts";
import { simFlags } from "./shrink.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** One run of the simulation a test asks for. */
export interface Run {
  seed: number;
  steps: number;
  clients: number;
  mode: "memory" | "process";
  /** Checks of the summary's "checks" list that must have run at least once. */
  checks?: string[];
  /** More options of `deno task sim` (e.g. `--weight`). */
  args?: string[];
  /** Counters of the summary (stderr) that must reach at least these values. */
  atLeast?: Record<string, number>;
}

const FLAGS = await simFlags();

/** Run `deno task sim` with `args`; its exit code, stdout and stderr. */
export async function sim(
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT}deno.json`, ...FLAGS, `${ROOT}tests/sim/main.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  return await finish(child, 240_000);
}

/** A test of `run`: it fails unless every invariant held and what it names ran. */
export function simTest(run: Run): void {
  Deno.test({
    name: `simulation (${run.mode}) seed ${run.seed}, ${run.steps} steps, ${run.clients} clients${
      run.args ? ` ${run.args.join(" ")}` : ""
    }: every invariant holds`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const out = await sim([
        "--seed",
        String(run.seed),
        "--steps",
        String(run.steps),
        "--clients",
        String(run.clients),
        "--mode",
        run.mode,
        ...(run.args ?? []),
      ]);
      const last = out.stdout.trimEnd().split("\n").at(-1) ?? "";
      const expected =
        `sim: seed ${run.seed}, ${run.steps} steps, ${run.clients} clients, 0 violations`;
      assert(
        out.code === 0 && last === expected,
        `simulation failed (exit ${out.code}):\n${out.stdout}\n--- stderr (tail) ---\n${
          out.stderr.split("\n").slice(-20).join("\n")
        }`,
      );
      // "sim: operations …; checks admins=45 delete=4 …": each named check ran
      const line = out.stdout.split("\n").find((l) => l.startsWith("sim: operations")) ?? "";
      const ran = new Map(
        [...(line.split("checks ")[1] ?? "").matchAll(/([a-z-]+)=(\d+)/g)].map((m) => [
          m[1]!,
          Number(m[2]),
        ]),
      );
      for (const c of run.checks ?? []) {
        assert((ran.get(c) ?? 0) > 0, `check ${c} never ran at seed ${run.seed}: ${line}`);
      }
      // "sim: 12.3s, … steps/s …; big-groups=1 checks=2 …" on stderr
      const summary = out.stderr.split("\n").find((l) => /^sim: [0-9.]+s, /.test(l)) ?? "";
      for (const [k, min] of Object.entries(run.atLeast ?? {})) {
        const n = Number(new RegExp(`[ ;]${k}=(\\d+)`).exec(summary)?.[1] ?? 0);
        assert(n >= min, `${k}=${n} at seed ${run.seed}, wanted at least ${min}: ${summary}`);
      }
    },
  });
}
