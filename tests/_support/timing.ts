/**
 * Test support: speed checks without wall-clock bounds. A test never asserts "under N ms"
 * (that fails on a slow or busy machine and passes a regression on a fast one); it measures a
 * baseline in the same run and bounds the ratio — linear work against half the work, a
 * refusal against an honest decode of the same size, a request under attack against the same
 * request before it. Absolute speed goals live in bench/.
 *
 * @module
 */
import { assert } from "./assert.ts";

/** Median wall time of `fn` over `runs` runs, in ms (after one untimed warm-up run). */
export async function medianMs(fn: () => unknown, runs = 5): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/**
 * Fastest wall times of `fn` and of `baseline`, run alternately `runs` times each after one
 * warm-up of each, in ms. Noise (a garbage collection, another process) only ever adds time,
 * so the fastest run is the steadiest estimate of the work itself, and alternating spreads a
 * busy moment over both sides instead of one.
 */
export async function pairedMinMs(
  fn: () => unknown,
  baseline: () => unknown,
  runs = 7,
): Promise<[number, number]> {
  await fn();
  await baseline();
  let best = Infinity;
  let bestBaseline = Infinity;
  for (let i = 0; i < runs; i++) {
    let t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
    t0 = performance.now();
    await baseline();
    bestBaseline = Math.min(bestBaseline, performance.now() - t0);
  }
  return [best, bestBaseline];
}

/**
 * Assert `ms <= ratio * baselineMs + slackMs`. The slack absorbs timer granularity and
 * scheduling noise when both times are tiny.
 */
export function assertRatio(
  label: string,
  ms: number,
  baselineMs: number,
  ratio: number,
  slackMs = 5,
): void {
  assert(
    ms <= ratio * baselineMs + slackMs,
    `${label}: ${ms.toFixed(1)} ms, more than ${ratio}× the baseline ${
      baselineMs.toFixed(1)
    } ms (+${slackMs} ms)`,
  );
}
