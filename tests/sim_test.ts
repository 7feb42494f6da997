/**
 * The seeded multi-client simulation (tests/sim, `deno task sim`) on a fixed set of seeds,
 * each a spawned run against a real server process: every invariant must hold (0
 * violations). A failure shows the simulation's report: the seed, the step, the invariant
 * and the operation log that replays it. Bounded for CI (about two minutes on two cores);
 * QPQ_SIM_SEEDS=1,2,3 QPQ_SIM_STEPS=200 QPQ_SIM_CLIENTS=12 runs other or longer histories.
 */
import { assert } from "./_support/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** The flags of the `sim` task (deno.json holds them once). */
async function simFlags(): Promise<string[]> {
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const parts: string[] = denoJson.tasks.sim.split(/\s+/);
  return parts.slice(2, parts.indexOf("tests/sim/main.ts"));
}

const envSeeds = Deno.env.get("QPQ_SIM_SEEDS");
const STEPS = Number(Deno.env.get("QPQ_SIM_STEPS") ?? 60);
const CLIENTS = Number(Deno.env.get("QPQ_SIM_CLIENTS") ?? 6);
const RUNS: { seed: number; steps: number; clients: number }[] = envSeeds
  ? envSeeds.split(",").map((s) => ({ seed: Number(s), steps: STEPS, clients: CLIENTS }))
  : [
    { seed: 1, steps: STEPS, clients: CLIENTS },
    { seed: 2, steps: STEPS, clients: CLIENTS },
    { seed: 3, steps: STEPS, clients: CLIENTS },
  ];
const FLAGS = await simFlags();

for (const run of RUNS) {
  Deno.test({
    name:
      `simulation seed ${run.seed}, ${run.steps} steps, ${run.clients} clients: every invariant holds`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--config",
          `${ROOT}deno.json`,
          ...FLAGS,
          `${ROOT}tests/sim/main.ts`,
          "--seed",
          String(run.seed),
          "--steps",
          String(run.steps),
          "--clients",
          String(run.clients),
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* finished */ }
      }, 240_000);
      const out = await child.output();
      clearTimeout(timer);
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      const last = stdout.trimEnd().split("\n").at(-1) ?? "";
      const expected =
        `sim: seed ${run.seed}, ${run.steps} steps, ${run.clients} clients, 0 violations`;
      assert(
        out.code === 0 && last === expected,
        `simulation failed (exit ${out.code}):\n${stdout}\n--- stderr (tail) ---\n${
          stderr.split("\n").slice(-20).join("\n")
        }`,
      );
    },
  });
}
