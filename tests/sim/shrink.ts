/**
 * `deno task sim --shrink …`: reduce a failing run to the fewest steps that still break the
 * same invariant, and print the replay command of that smaller run with its operation log.
 *
 * ```
 * run as given ─► fails? (else: nothing to shrink) ─► its invariant I, its step F
 * fewest steps: binary search n in [1, F] for the smallest `--steps n` that breaks I
 * fewest of those: delta debugging (ddmin) over the steps kept: drop a chunk (`--drop`),
 *   keep the drop when I still breaks, halve the chunks when no drop does
 * ─► `replay: deno task sim … --steps n --drop …` and that run's report
 * ```
 *
 * Every trial is a fresh process of the simulation (memory mode replays byte for byte, so a
 * trial's verdict is the run's). Each step draws from its own stream: a dropped step leaves
 * the others' draws alone, though what they do can change with the state they meet. Trials
 * are bounded ({@link MAX_TRIALS}).
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url).pathname;
/** The flags of the `sim` task (deno.json holds them once). */
export async function simFlags(): Promise<string[]> {
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const parts: string[] = denoJson.tasks.sim.split(/\s+/);
  return parts.slice(2, parts.indexOf("tests/sim/main.ts"));
}
/** At most this many runs of the simulation per shrink. */
export const MAX_TRIALS = 150;

/** What one trial showed. */
interface Verdict {
  /** The first violation's invariant, when the run broke one. */
  invariant?: string;
  /** Its step (a quiescent check between steps s and s + 1 is s + 0.5). */
  step?: number;
  stdout: string;
}

/** `1-3,5,9-12` for [1, 2, 3, 5, 9, 10, 11, 12] (sorted, unique). */
export function formatSteps(steps: readonly number[]): string {
  const out: string[] = [];
  const s = [...new Set(steps)].sort((a, b) => a - b);
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(",");
}

/** The inverse of {@link formatSteps}; undefined for malformed text or more than `max`. */
export function parseSteps(text: string, max: number): number[] | undefined {
  const out = new Set<number>();
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^(\d{1,9})(?:-(\d{1,9}))?$/.exec(part);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a < 1 || b < a || b > max) return undefined;
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

async function trial(args: string[]): Promise<Verdict> {
  const flags = await simFlags();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT}deno.json`, ...flags, `${ROOT}tests/sim/main.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const lines = stdout.split("\n");
  const at = lines.findIndex((l) => l.startsWith("sim: VIOLATION at step"));
  if (at < 0) return { stdout };
  const m = /^ {2}step ([\d.]+) \[([^\]]+)\]/.exec(lines[at + 1] ?? "");
  return m ? { invariant: m[2]!, step: Number(m[1]), stdout } : { invariant: "?", stdout };
}

/**
 * Shrink the run `args` describes (the simulation's options without `--shrink`; `steps`
 * its `--steps`, `drop` its `--drop`). Returns the exit code: 0 shrunk, 1 nothing to shrink.
 */
export async function shrink(
  args: string[],
  steps: number,
  drop: readonly number[],
  progress: (line: string) => void,
): Promise<number> {
  const started = performance.now();
  let trials = 0;
  const run = async (n: number, dropped: readonly number[]): Promise<Verdict> => {
    trials++;
    const d = dropped.filter((s) => s <= n);
    return await trial([
      ...args,
      "--steps",
      String(n),
      ...(d.length ? ["--drop", formatSteps(d)] : []),
    ]);
  };
  const first = await run(steps, drop);
  if (first.invariant === undefined) {
    console.log(`sim: --shrink: this run breaks no invariant in ${steps} steps: nothing to shrink`);
    return 1;
  }
  const invariant = first.invariant;
  progress(`shrink: the run breaks ${invariant} at step ${first.step ?? steps}`);
  const breaks = (v: Verdict) => v.invariant === invariant;

  // 1. the fewest steps: a shorter run is a prefix of the longer one
  let hi = Math.max(1, Math.min(steps, Math.floor(first.step ?? steps)));
  let best = first;
  let lo = 1;
  while (lo < hi && trials < MAX_TRIALS) {
    const mid = Math.floor((lo + hi) / 2);
    const v = await run(mid, drop);
    progress(`shrink: --steps ${mid}: ${breaks(v) ? "breaks it" : "passes"} (trial ${trials})`);
    if (breaks(v)) {
      hi = mid;
      best = v;
    } else lo = mid + 1;
  }
  const n = hi;

  // 2. the fewest of those steps (ddmin over the steps still run)
  const dropped = new Set(drop.filter((s) => s <= n));
  let kept = Array.from({ length: n }, (_, i) => i + 1).filter((s) => !dropped.has(s));
  let chunks = 2;
  while (kept.length >= 2 && trials < MAX_TRIALS) {
    const size = Math.ceil(kept.length / chunks);
    let reduced = false;
    for (let i = 0; i < kept.length && trials < MAX_TRIALS; i += size) {
      const chunk = new Set(kept.slice(i, i + size));
      const rest = kept.filter((s) => !chunk.has(s));
      if (rest.length === 0) continue;
      const last = rest.at(-1)!;
      const all = Array.from({ length: last }, (_, k) => k + 1).filter((s) => !rest.includes(s));
      const v = await run(last, all);
      progress(
        `shrink: ${rest.length} steps (${formatSteps(rest)}): ${
          breaks(v) ? "breaks it" : "passes"
        } (trial ${trials})`,
      );
      if (breaks(v)) {
        kept = rest;
        best = v;
        chunks = Math.max(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (chunks >= kept.length) break;
      chunks = Math.min(chunks * 2, kept.length);
    }
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `sim: shrunk: ${invariant} breaks with ${kept.length} of ${steps} steps (${trials} trials, ${secs}s${
      trials >= MAX_TRIALS ? `, stopped at the ${MAX_TRIALS}-trial bound` : ""
    })`,
  );
  // the smallest failing run's own report: its replay line (with --drop) and operation log
  console.log(best.stdout.trimEnd());
  return 0;
}
