/**
 * Rate limiting: logins per user, per source and per account, and any other per-key allowance
 * (KeyPackage fetches per requester and per target use {@link TokenBucketLimiter}).
 *
 * {@link RateLimiter} is the interface (async, so a limiter shared by several server
 * nodes, e.g. on the database, can replace the in-memory one); {@link SlidingWindowLimiter}
 * is an exact sliding-window log kept in memory: a key may make `limit` attempts in any
 * `windowMs` interval. Memory is bounded: at most `limit` timestamps per key and at most
 * `maxKeys` keys. Keys whose attempts have all left the window are forgotten first; when
 * every key is still inside its window, the least recently used key is evicted (a table
 * full of made-up names never refuses everyone: issue 18). Evicting a key resets its
 * count, but a key stays recent while it is being attacked, so resetting one takes
 * `maxKeys` attempts on other keys in between, which the per-source limits bound.
 *
 * Unknown usernames are limited exactly like known ones, so the limiter reveals nothing
 * about which users exist.
 *
 * @module
 */

import { AuthError } from "../errors.ts";
import {
  LOGIN_ATTEMPTS_PER_SOURCE,
  LOGIN_ATTEMPTS_PER_USER,
  LOGIN_KNOWN_SOURCE_MS,
  LOGIN_KNOWN_SOURCES_PER_USER,
  LOGIN_SLOWDOWN_MAX_MS,
  LOGIN_UNKNOWN_SOURCE_BURST,
  LOGIN_UNKNOWN_SOURCE_REFILL_MS,
  LOGIN_WINDOW_MS,
  MAX_RATE_LIMIT_KEYS,
} from "../limits.ts";

/** The outcome of one attempt. */
export interface RateDecision {
  /** True when the attempt may go ahead (it has been counted). */
  allowed: boolean;
  /** Attempts left in the current window after this one. */
  remaining: number;
  /** When refused: how long until the next attempt would be allowed (ms); else 0. */
  retryAfterMs: number;
}

/** Counts attempts per key. */
export interface RateLimiter {
  /** Count one attempt for `key` (only if allowed) and say whether it is allowed. */
  hit(key: string): Promise<RateDecision>;
  /** Forget `key` (e.g. after a successful login). */
  reset(key: string): Promise<void>;
}

/** Options of {@link SlidingWindowLimiter}. */
export interface SlidingWindowOptions {
  /** Attempts allowed per window. */
  limit: number;
  /** Window length (ms). */
  windowMs: number;
  /** Current time (ms, default `Date.now`). */
  clock?: () => number;
  /** Most keys tracked (default {@link MAX_RATE_LIMIT_KEYS}); past it the least recently used goes. */
  maxKeys?: number;
}

/** In-memory exact sliding-window limiter. */
export class SlidingWindowLimiter implements RateLimiter {
  readonly #limit: number;
  readonly #window: number;
  readonly #clock: () => number;
  readonly #maxKeys: number;
  /** key -> attempt times, oldest first; Map order = by last counted attempt, oldest first. */
  #hits = new Map<string, number[]>();

  constructor(options: SlidingWindowOptions) {
    if (!Number.isSafeInteger(options.limit) || options.limit < 1) {
      throw new RangeError("limit must be a positive integer");
    }
    if (!(options.windowMs > 0)) throw new RangeError("windowMs must be positive");
    this.#limit = options.limit;
    this.#window = options.windowMs;
    this.#clock = options.clock ?? Date.now;
    this.#maxKeys = options.maxKeys ?? MAX_RATE_LIMIT_KEYS;
  }

  hit(key: string): Promise<RateDecision> {
    const now = this.#clock();
    const since = now - this.#window;
    const known = this.#hits.get(key);
    if (known === undefined && this.#hits.size >= this.#maxKeys) {
      this.#dropExpired(since);
      // Still full of keys inside their window: the least recently used one goes (never
      // refuse everyone because made-up names filled the table).
      if (this.#hits.size >= this.#maxKeys) this.#hits.delete(this.#hits.keys().next().value!);
    }
    const times = (known ?? []).filter((t) => t > since);
    if (times.length >= this.#limit) {
      // a refused attempt also makes the key recent: a key under attack is never the one
      // evicted, so its lockout is not reset
      this.#hits.delete(key);
      this.#hits.set(key, times);
      return Promise.resolve({
        allowed: false,
        remaining: 0,
        retryAfterMs: times[0]! + this.#window - now,
      });
    }
    times.push(now);
    this.#hits.delete(key); // re-inserted: the most recent attempt is last
    this.#hits.set(key, times);
    return Promise.resolve({
      allowed: true,
      remaining: this.#limit - times.length,
      retryAfterMs: 0,
    });
  }

  /**
   * Forget keys whose every attempt has left the window (their state equals a fresh key's).
   * Keys are ordered by their last counted attempt, so the expired ones are at the front.
   */
  #dropExpired(since: number): void {
    for (const [k, times] of this.#hits) {
      if (times.length > 0 && times[times.length - 1]! > since) break;
      this.#hits.delete(k);
    }
  }

  reset(key: string): Promise<void> {
    this.#hits.delete(key);
    return Promise.resolve();
  }

  /** Keys currently tracked (for tests and health). */
  get size(): number {
    return this.#hits.size;
  }
}

/** Options of {@link TokenBucketLimiter}. */
export interface TokenBucketOptions {
  /** Attempts allowed at once (the bucket's size). */
  burst: number;
  /** Time to refill an empty bucket (ms): `burst` attempts per `refillMs` on average. */
  refillMs: number;
  /** Current time (ms, default `Date.now`). */
  clock?: () => number;
  /** Most keys tracked (default {@link MAX_RATE_LIMIT_KEYS}); past it the least recently used goes. */
  maxKeys?: number;
}

/**
 * In-memory token bucket: up to `burst` attempts at once, refilled evenly over `refillMs`.
 * Two numbers per key, so large allowances (a member adding hundreds of people) cost no
 * more memory than small ones. Like {@link SlidingWindowLimiter}, full buckets (whose state
 * equals a fresh key's) are forgotten first, and when all `maxKeys` keys are still
 * refilling the least recently used one is evicted.
 */
export class TokenBucketLimiter implements RateLimiter {
  readonly #burst: number;
  readonly #perMs: number;
  readonly #clock: () => number;
  readonly #maxKeys: number;
  /** key -> tokens at `at`; Map order = by last counted attempt, oldest first. */
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: TokenBucketOptions) {
    if (!Number.isSafeInteger(options.burst) || options.burst < 1) {
      throw new RangeError("burst must be a positive integer");
    }
    if (!(options.refillMs > 0)) throw new RangeError("refillMs must be positive");
    this.#burst = options.burst;
    this.#perMs = options.burst / options.refillMs;
    this.#clock = options.clock ?? Date.now;
    this.#maxKeys = options.maxKeys ?? MAX_RATE_LIMIT_KEYS;
  }

  #tokens(b: { tokens: number; at: number }, now: number): number {
    return Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
  }

  hit(key: string): Promise<RateDecision> {
    const now = this.#clock();
    let b = this.#buckets.get(key);
    if (b === undefined && this.#buckets.size >= this.#maxKeys) this.#makeRoom(now);
    const tokens = b === undefined ? this.#burst : this.#tokens(b, now);
    if (tokens < 1) {
      const wait = Math.max(1, Math.ceil((1 - tokens) / this.#perMs));
      this.#buckets.delete(key); // refused, but recent: a bucket under attack is not evicted
      this.#buckets.set(key, b!);
      return Promise.resolve({ allowed: false, remaining: 0, retryAfterMs: wait });
    }
    b = { tokens: tokens - 1, at: now };
    this.#buckets.delete(key); // re-inserted: the most recent attempt is last
    this.#buckets.set(key, b);
    return Promise.resolve({ allowed: true, remaining: Math.floor(b.tokens), retryAfterMs: 0 });
  }

  /**
   * Like {@link hit}, but when the bucket is empty and its next attempt comes back within
   * `maxDelayMs`, the attempt is taken in advance and allowed after `delayMs`: callers
   * wait instead of being refused, and the average rate stays the same (an attempt taken
   * in advance is missing later).
   */
  reserve(key: string, maxDelayMs: number): RateDecision & { delayMs: number } {
    const now = this.#clock();
    const b = this.#buckets.get(key);
    if (b === undefined && this.#buckets.size >= this.#maxKeys) this.#makeRoom(now);
    const tokens = b === undefined ? this.#burst : this.#tokens(b, now);
    const delayMs = tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#perMs);
    if (delayMs > maxDelayMs) {
      if (b !== undefined) { // refused, but recent: a bucket under attack is not evicted
        this.#buckets.delete(key);
        this.#buckets.set(key, b);
      }
      return { allowed: false, remaining: 0, retryAfterMs: delayMs - maxDelayMs, delayMs: 0 };
    }
    this.#buckets.delete(key); // re-inserted: the most recent attempt is last
    this.#buckets.set(key, { tokens: tokens - 1, at: now });
    return {
      allowed: true,
      remaining: Math.max(0, Math.floor(tokens - 1)),
      retryAfterMs: 0,
      delayMs,
    };
  }

  /** Give one attempt back to `key` (an attempt that turned out well), up to the burst. */
  refund(key: string): void {
    const b = this.#buckets.get(key);
    if (b === undefined) return;
    const now = this.#clock();
    b.tokens = Math.min(this.#burst, this.#tokens(b, now) + 1);
    b.at = now;
  }

  /** Forget full buckets (their state equals a fresh key's), else the least recently used. */
  #makeRoom(now: number): void {
    for (const [k, old] of this.#buckets) {
      if (this.#tokens(old, now) < this.#burst) break;
      this.#buckets.delete(k);
    }
    if (this.#buckets.size >= this.#maxKeys) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
  }

  reset(key: string): Promise<void> {
    this.#buckets.delete(key);
    return Promise.resolve();
  }

  /** Keys currently tracked (for tests). */
  get size(): number {
    return this.#buckets.size;
  }
}

/** Options of {@link LoginRateLimiter}. */
export interface LoginRateLimiterOptions {
  /**
   * Per (user, source) limiter (default: {@link LOGIN_ATTEMPTS_PER_USER} per
   * {@link LOGIN_WINDOW_MS}).
   */
  perUser?: RateLimiter;
  /**
   * Per-source allowance (default: a token bucket of `perSourceLimit`, refilled over
   * {@link LOGIN_WINDOW_MS}); a login that succeeds gives its attempt back.
   */
  perSource?: TokenBucketLimiter;
  /** Burst of the default per-source allowance (default {@link LOGIN_ATTEMPTS_PER_SOURCE}). */
  perSourceLimit?: number;
  /**
   * The allowance unknown sources share per account (default: a token bucket of
   * {@link LOGIN_UNKNOWN_SOURCE_BURST}, one back per {@link LOGIN_UNKNOWN_SOURCE_REFILL_MS}).
   */
  unknownSources?: TokenBucketLimiter;
  /** Clock for the default limiters and the known sources. */
  clock?: () => number;
  /** Waits `ms` (default: a timer); a test may pass one that records the wait. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * The login limits (issue 18: no stranger can lock a user out):
 *
 * ```
 * loginStart from source S for user U
 *   ─► S out of login_attempts_per_source (30, refilled over a minute; a login
 *      that succeeds gives its attempt back: failed ones count)  ─► rate_limited
 *   ─► (decoded: a request that fails to decode stops here and costs U nothing)
 *   ─► (U, S) over LOGIN_ATTEMPTS_PER_USER a minute?       ─► rate_limited (only from S)
 *   ─► S known for U (a login from S succeeded lately)?    ─► go ahead
 *   ─► else U's shared unknown-source allowance: go ahead, or wait ≤ LOGIN_SLOWDOWN_MAX_MS
 *      for its next attempt, or rate_limited past that
 * ```
 *
 * Failures from one source never lock U's logins from another; a source U logged in from
 * is never held back by strangers; guesses from all unknown sources together are bounded
 * per account (burst + one a minute: at most 1,460 a day).
 */
export class LoginRateLimiter {
  readonly #user: RateLimiter;
  readonly #source: TokenBucketLimiter;
  readonly #unknown: TokenBucketLimiter;
  readonly #clock: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  /** user -> source -> last successful login (ms); Map order = least recently used first. */
  #known = new Map<string, Map<string, number>>();

  constructor(options: LoginRateLimiterOptions = {}) {
    const clock = options.clock ?? Date.now;
    this.#clock = clock;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#user = options.perUser ??
      new SlidingWindowLimiter({
        limit: LOGIN_ATTEMPTS_PER_USER,
        windowMs: LOGIN_WINDOW_MS,
        clock,
      });
    this.#source = options.perSource ??
      new TokenBucketLimiter({
        burst: options.perSourceLimit ?? LOGIN_ATTEMPTS_PER_SOURCE,
        refillMs: LOGIN_WINDOW_MS,
        clock,
      });
    this.#unknown = options.unknownSources ??
      new TokenBucketLimiter({
        burst: LOGIN_UNKNOWN_SOURCE_BURST,
        refillMs: LOGIN_UNKNOWN_SOURCE_BURST * LOGIN_UNKNOWN_SOURCE_REFILL_MS,
        clock,
      });
  }

  /**
   * Count one login attempt from `source`, before the request is decoded.
   *
   * @throws {AuthError} code "rate_limited" when the source is over its allowance
   */
  async checkSource(source: string): Promise<void> {
    const s = await this.#source.hit(source);
    if (!s.allowed) throw limited(s.retryAfterMs);
  }

  /**
   * Count one decoded login attempt for `username` from `source`; it may wait (an unknown
   * source while the account's shared allowance is empty).
   *
   * @throws {AuthError} code "rate_limited" when a limit is exhausted
   */
  async checkUser(username: string, source: string): Promise<void> {
    const u = await this.#user.hit(`${username}\u0000${source}`);
    if (!u.allowed) throw limited(u.retryAfterMs);
    if (this.isKnown(username, source)) return;
    const d = this.#unknown.reserve(username, LOGIN_SLOWDOWN_MAX_MS);
    if (!d.allowed) throw limited(d.retryAfterMs);
    if (d.delayMs > 0) await this.#sleep(d.delayMs);
  }

  /** True when a login of `username` from `source` succeeded within the known period. */
  isKnown(username: string, source: string): boolean {
    const at = this.#known.get(username)?.get(source);
    return at !== undefined && this.#clock() - at < LOGIN_KNOWN_SOURCE_MS;
  }

  /**
   * A login succeeded: the source gets its attempt back, and so does the account's shared
   * allowance when the source was unknown; the (user, source) count is cleared and the
   * source becomes known for the user.
   */
  async succeeded(username: string, source: string): Promise<void> {
    this.#source.refund(source);
    if (!this.isKnown(username, source)) this.#unknown.refund(username);
    await this.#user.reset(`${username}\u0000${source}`);
    let sources = this.#known.get(username);
    if (sources === undefined) {
      if (this.#known.size >= MAX_RATE_LIMIT_KEYS) {
        this.#known.delete(this.#known.keys().next().value!);
      }
      sources = new Map();
    }
    this.#known.delete(username); // re-inserted: most recently used last
    this.#known.set(username, sources);
    sources.delete(source);
    sources.set(source, this.#clock());
    if (sources.size > LOGIN_KNOWN_SOURCES_PER_USER) {
      sources.delete(sources.keys().next().value!);
    }
  }
}
function limited(retryAfterMs: number): AuthError {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AuthError(`Too many login attempts: try again in ${s} s`, { code: "rate_limited" });
}
