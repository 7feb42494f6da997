/**
 * The simulation's only source of randomness: xoshiro128** seeded through splitmix32.
 * Every choice (operations, targets, message texts, fault points, delays) comes from
 * here, so a seed names one history. {@link Prng.fork} derives an independent stream
 * (one per step): a step's choices do not shift when an earlier step draws more or fewer
 * numbers than it did in another run.
 *
 * @module
 */

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A small deterministic PRNG (xoshiro128**). */
export class Prng {
  #s: Uint32Array;

  /** A generator for `seed` (any safe integer) and an optional stream label. */
  constructor(seed: number, label = "") {
    const st = { s: (seed % 0x100000000) ^ Math.floor(seed / 0x100000000) };
    for (let i = 0; i < label.length; i++) {
      st.s = Math.imul(st.s ^ label.charCodeAt(i), 0x01000193);
    }
    this.#s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) this.#s[i] = splitmix32(st);
    if (this.#s.every((x) => x === 0)) this.#s[0] = 1;
  }

  /** The next 32 random bits. */
  next(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.next() / 0x100000000;
  }

  /** A uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(0, items.length - 1)]!;
  }

  /** Up to `n` distinct elements, in random order. */
  sample<T>(items: readonly T[], n: number): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a.slice(0, Math.max(0, Math.min(n, a.length)));
  }

  /** A key chosen with the given weights (non-negative; at least one positive). */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = (Object.entries(weights) as [K, number][]).filter(([, w]) => w > 0);
    const total = entries.reduce((a, [, w]) => a + w, 0);
    let x = this.float() * total;
    for (const [k, w] of entries) {
      x -= w;
      if (x < 0) return k;
    }
    return entries[entries.length - 1]![0];
  }

  /** An independent generator derived from this one's seed and `label`. */
  static fork(seed: number, label: string): Prng {
    return new Prng(seed, label);
  }
}
