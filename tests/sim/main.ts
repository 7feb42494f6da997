/**
 * `deno task sim --seed N --steps M [--clients K]`: one seeded simulation run. Progress on
 * stderr; on success the last stdout line is
 * `sim: seed N, M steps, K clients, 0 violations`; on a violation the seed, step,
 * invariant and the operation log, and exit code 1.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { installSyncSubtle } from "./sync_subtle.ts";
import { startTrace } from "./vclock.ts";
import { formatSteps, parseSteps, shrink } from "./shrink.ts";
import { FAULT_FAMILIES, runSim, type SimResult, STEP_KINDS, SUITES } from "./sim.ts";

/** Usage text. */
export const USAGE = `Usage: deno task sim --seed N --steps M [--clients K] [options]

Seeded randomized multi-client simulation of qpq group life cycles against a real
server process: groups (both suites), DMs, invites, removals, leaves, self-updates,
messages, edits, deletions, reactions, read receipts, admin grants and revokes, a
non-admin's removal and a non-author's edit (both refused), concurrent commits,
clients offline and crashing, lost answers, doubled pushes, server SIGTERM/SIGKILL.
Checks at every quiescent point: members agree on epoch, authenticator, roster and
admins (= the model); every message shown exactly once, in its sender's order, to
exactly the members of its time, with its latest edit or deletion and reactions;
receipts only on own messages, from readers; nobody stuck. The summary counts each
check that ran; an operation tried 3+ times whose check never ran fails the run.

Options:
  --seed N          seed (default: random, printed)
  --steps M         steps to run (default 100)
  --clients K       clients (default 12)
  --check-every N   quiescent check every N steps (default 20; always at the end)
  --mode M          memory (default): the server's services in this process, clients on
                    a simulated network (delay, loss, cuts mid-frame, duplicates,
                    partitions; a tap checks every frame the server sends), virtual
                    time; process: a real server process over QUIC, real time,
                    SIGTERM/SIGKILL
  --no-faults       operations only, no faults
  --suites S        suites of new groups: both (default), xwing or x25519
  --store S         client state: mixed (default: every third client on encrypted
                    SQLite files, the others in memory), file or memory
  --skip K,K        never choose these steps (explore past a known bug); kinds:
                    ${STEP_KINDS.join(" ")}
                    (invite, remove and leave also leave the two-commit step)
  --weight K=W,…    replace the weight of these step kinds where they apply (defaults
                    in sim.ts #chooseKind; send is 28, powercut 2): e.g. the CI's
                    storage and clock run, --weight powercut=12,crash=10,clock=8
  --drop S,S-S      do not run these steps (the others keep their own random streams)
  --shrink          reduce this failing run to the fewest steps that still break the
                    same invariant (fewest --steps, then --drop by delta debugging; memory
                    mode; one fresh run per trial) and print its replay command and log
  --big-group N     one create step in four makes a group of N members (default: 2–4)
  --fail-on K       a synthetic violation at the first step of kind K (tests --shrink)
  --keep-going      do not stop at the first check that finds a violation
  --verbose         print every step on stderr
  --print-log       print the operation log on stdout also when no invariant broke
  --help            this text

QPQ_SIM_DIR=DIR     where the run's files go (default /dev/shm when it can be written —
                    Deno needs --allow-all for it, the task has it — else the temp dir:
                    an fsync on a real disk only costs time here)
QPQ_SIM_TRACE=FILE  (memory mode) write every timer fired, with its virtual time and
                    where it was set, to FILE: diff two runs' files to see where a
                    replay parts`;

function fail(msg: string): never {
  console.error(`sim: ${msg}\n\n${USAGE}`);
  Deno.exit(2);
}

function int(v: string | undefined, name: string, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!/^[0-9]+$/.test(v)) fail(`--${name} needs a non-negative integer`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) fail(`--${name} must be at least ${min}`);
  return n;
}

/** Print a result; returns the exit code. */
export function report(r: SimResult, replayArgs: string, printLog = false): number {
  if (r.violations.length === 0 && printLog) {
    console.log("operation log:");
    for (const l of r.log) console.log(`  ${l}`);
  }
  if (r.violations.length > 0) {
    const first = r.violations[0]!;
    console.log(`sim: VIOLATION at step ${first.step} (seed ${r.seed})`);
    for (const v of r.violations.slice(0, 30)) {
      console.log(`  step ${v.step} [${v.invariant}] ${v.detail}`);
    }
    if (r.violations.length > 30) console.log(`  … ${r.violations.length - 30} more`);
    console.log(`replay: deno task sim ${replayArgs}`);
    console.log("operation log:");
    for (const l of r.log) console.log(`  ${l}`);
    for (const l of r.diagnostics) console.log(l);
  }
  const stats = Object.entries(r.stats).sort().map(([k, v]) => `${k}=${v}`).join(" ");
  const stepsMs = r.elapsedMs - (r.stats["setup-ms"] ?? 0);
  console.error(
    `sim: ${(r.elapsedMs / 1000).toFixed(1)}s, ${
      (r.steps / (r.elapsedMs / 1000)).toFixed(2)
    } steps/s (${(r.steps / (stepsMs / 1000)).toFixed(2)} after setup); ${stats}`,
  );
  const fired = Object.keys(FAULT_FAMILIES).map((k) => `${k}=${r.stats[`fault.${k}`] ?? 0}`);
  console.log(`sim: faults fired: ${fired.join(" ")}`);
  console.log(
    `sim: ${r.stats["messages-in-doubt"] ?? 0} messages in doubt (of ${r.stats.messages ?? 0})`,
  );
  // what the content and role checks proved (each must have run when its operation did)
  const fam = (k: string) => `${k}=${r.stats[`op.${k}`] ?? 0}`;
  const ran = Object.entries(r.stats).filter(([k]) => k.startsWith("check."))
    .sort().map(([k, v]) => `${k.slice(6)}=${v}`).join(" ");
  console.log(
    `sim: operations ${
      ["edit", "delete", "react", "read", "admin", "badremove", "badedit"].map(fam).join(" ")
    }; checks ${ran || "none"}`,
  );
  console.log(
    `sim: seed ${r.seed}, ${r.steps} steps, ${r.clients} clients, ${r.violations.length} violations`,
  );
  return r.violations.length > 0 ? 1 : 0;
}

async function main(args: string[]): Promise<number> {
  let p;
  try {
    p = parseArgs({
      args,
      options: {
        seed: { type: "string" },
        steps: { type: "string" },
        clients: { type: "string" },
        "check-every": { type: "string" },
        "no-faults": { type: "boolean" },
        suites: { type: "string" },
        store: { type: "string" },
        skip: { type: "string" },
        drop: { type: "string" },
        shrink: { type: "boolean" },
        "fail-on": { type: "string" },
        "big-group": { type: "string" },
        weight: { type: "string" },
        "keep-going": { type: "boolean" },
        verbose: { type: "boolean" },
        "print-log": { type: "boolean" },
        mode: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const v = p.values;
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const seed = v.seed === undefined
    ? crypto.getRandomValues(new Uint32Array(1))[0]!
    : int(v.seed, "seed", 0, 0);
  const steps = int(v.steps, "steps", 100);
  const clients = int(v.clients, "clients", 12, 2);
  const checkEvery = int(v["check-every"], "check-every", 20);
  const faults = !v["no-faults"];
  const suiteFlag = v.suites ?? "both";
  const suites = { both: SUITES, xwing: [SUITES[0]], x25519: [SUITES[1]] }[suiteFlag];
  if (!suites) fail(`--suites must be both, xwing or x25519`);
  const skip = v.skip ? v.skip.split(",").map((k) => k.trim()).filter(Boolean) : [];
  for (const k of skip) {
    if (!(STEP_KINDS as readonly string[]).includes(k)) fail(`--skip: unknown step kind ${k}`);
  }
  const weights: Record<string, number> = {};
  for (const kv of v.weight ? v.weight.split(",").map((x) => x.trim()).filter(Boolean) : []) {
    const [k, w] = kv.split("=");
    if (!(STEP_KINDS as readonly string[]).includes(k ?? "")) {
      fail(`--weight: unknown step kind ${k}`);
    }
    const n = Number(w);
    if (!Number.isFinite(n) || n < 0 || n > 1000) fail(`--weight: ${kv} needs a weight 0–1000`);
    weights[k!] = n;
  }
  const drop = v.drop === undefined ? [] : parseSteps(v.drop, steps);
  if (drop === undefined) fail(`--drop needs step numbers or ranges within 1–${steps}, e.g. 3,7-9`);
  const bigGroup = v["big-group"] === undefined
    ? undefined
    : Math.min(int(v["big-group"], "big-group", 2, 2), clients);
  const failOn = v["fail-on"];
  if (failOn !== undefined && !(STEP_KINDS as readonly string[]).includes(failOn)) {
    fail(`--fail-on: unknown step kind ${failOn}`);
  }
  const store = v.store ?? "mixed";
  if (store !== "mixed" && store !== "file" && store !== "memory") {
    fail("--store must be mixed, file or memory");
  }
  const mode = v.mode ?? "memory";
  if (mode !== "memory" && mode !== "process") fail("--mode must be memory or process");
  if (v.shrink) {
    if (mode !== "memory") fail("--shrink needs --mode memory (a run that replays)");
    // the same run without the options shrink sets itself
    const keep = args.filter((a, i) =>
      !["--shrink", "--steps", "--drop", "--print-log", "--verbose", "--keep-going"].includes(a) &&
      !["--steps", "--drop"].includes(args[i - 1] ?? "") && !/^--(steps|drop)=/.test(a)
    );
    if (v.seed === undefined) keep.push("--seed", String(seed));
    return await shrink(keep, steps, drop, (l) => console.error(l));
  }
  // real-time WebCrypto completions reordered work from run to run (sync_subtle.ts)
  if (mode === "memory") installSyncSubtle();
  // a replay that parts: diff two runs' timer traces (vclock.ts)
  const traceFile = Deno.env.get("QPQ_SIM_TRACE");
  const trace = traceFile ? startTrace() : [];
  console.error(
    `sim: seed ${seed}, ${steps} steps, ${clients} clients, ${mode}${faults ? "" : ", no faults"}`,
  );
  let r: SimResult;
  try {
    r = await runSim({
      seed,
      steps,
      clients,
      checkEvery,
      faults,
      suites,
      store,
      skip,
      drop,
      ...(failOn ? { failOn } : {}),
      ...(bigGroup ? { bigGroup } : {}),
      weights,
      keepGoing: v["keep-going"] ?? false,
      mode,
      verbose: v.verbose ?? false,
      progress: (l) => console.error(l),
    });
  } catch (e) {
    console.error(
      `sim: the run failed outside the client operations (seed ${seed}): ${
        e instanceof Error ? e.stack ?? e.message : String(e)
      }`,
    );
    return 2;
  }
  const replay = [
    `--seed ${seed}`,
    // the same --steps: a run stops at its first check with a violation, and a run cut
    // at that step would end with the final check instead (a longer settle), which may
    // pass (seed 5039 --steps 150 --clients 9: a violation at check 20; --steps 20 passed)
    `--steps ${steps}`,
    `--clients ${clients}`,
    checkEvery !== 20 ? `--check-every ${checkEvery}` : "",
    faults ? "" : "--no-faults",
    suiteFlag !== "both" ? `--suites ${suiteFlag}` : "",
    store !== "mixed" ? `--store ${store}` : "",
    skip.length ? `--skip ${skip.join(",")}` : "",
    drop.length ? `--drop ${formatSteps(drop)}` : "",
    failOn ? `--fail-on ${failOn}` : "",
    bigGroup ? `--big-group ${bigGroup}` : "",
    v.weight ? `--weight ${Object.entries(weights).map(([k, w]) => `${k}=${w}`).join(",")}` : "",
    mode !== "memory" ? `--mode ${mode}` : "",
  ].filter(Boolean).join(" ");
  if (traceFile) Deno.writeTextFileSync(traceFile, trace.join("\n") + "\n");
  return report(r, replay, v["print-log"] ?? false);
}

if (import.meta.main) {
  // dead client instances may leave timers behind: exit explicitly
  Deno.exit(await main(Deno.args));
}
